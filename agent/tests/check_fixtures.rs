//! `check` and `groups` over fixture trees captured from real boots under QEMU
//! (`tests/fixtures/check-*`, each with a README saying how it was made).

use std::path::{Path, PathBuf};

use vfio_early::cmd::{check, groups};
use vfio_early::host::Host;
use vfio_early::record::{Action, DeviceOutcome, DeviceRecord, Record};
use vfio_early::report::{Finding, Status};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn find<'a>(f: &'a [Finding], check: &str) -> &'a Finding {
    f.iter()
        .find(|x| x.check == check)
        .unwrap_or_else(|| panic!("no {check} finding in {f:#?}"))
}

/// A config naming the card at 01:00 (both functions), outside the fixture tree.
fn card_config() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        f.path(),
        "[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n",
    )
    .expect("write config");
    f
}

#[test]
fn uefi_boot_efifb_in_the_configured_cards_bar() {
    let host = Host::new(fixture("check-uefi-intel-efifb"));
    let config = card_config();
    let out = check::check(&host, Some(config.path()));
    let f = &out.findings;

    // The IOMMU, from the real boot's evidence.
    assert!(find(f, "iommu vendor").detail.contains("DMAR"));
    let on = find(f, "iommu");
    assert_eq!(on.status, Status::Pass);
    assert!(
        on.detail.contains("dmar0") && on.detail.contains("Intel(R) Virtualization Technology"),
        "{}",
        on.detail
    );
    assert_eq!(find(f, "interrupt remapping").status, Status::Pass);
    assert_eq!(find(f, "cmdline iommu").status, Status::Pass);

    // The framebuffer: efifb at c0000000-c03e7fff in BAR 0 of 01:00.0.
    let fb = find(f, "framebuffer");
    assert_eq!(fb.status, Status::Fail, "{fb:?}");
    assert!(
        fb.detail.contains("efifb") && fb.detail.contains("0000:01:00.0"),
        "{}",
        fb.detail
    );
    assert!(
        fb.detail.contains("0xc0000000-0xc03e7fff, inside BAR 0"),
        "{}",
        fb.detail
    );
    assert_eq!(
        fb.hint.as_deref(),
        Some("add video=efifb:off to the kernel command line")
    );

    // Nothing bound it (a bare initramfs): the devices fail, and nothing ran at boot.
    assert_eq!(find(f, "device 0000:01:00.0").status, Status::Fail);
    assert!(find(f, "boot").detail.contains("did not run"));
    assert_eq!(out.exit_status(), 1);
}

#[test]
fn uefi_boot_groups() {
    let host = Host::new(fixture("check-uefi-intel-efifb"));
    let g = groups::collect(&host, None);
    assert!(g.iommu.on);
    assert_eq!(g.iommu.vendor, Some(vfio_early::iommu::Vendor::Intel));
    let card = g
        .groups
        .iter()
        .find(|x| {
            x.devices
                .iter()
                .any(|d| d.address.to_string() == "0000:01:00.0")
        })
        .unwrap();
    let members: Vec<String> = card.devices.iter().map(|d| d.address.to_string()).collect();
    assert_eq!(
        members,
        ["0000:01:00.0", "0000:01:00.1"],
        "QEMU root ports have ACS: the card is its own group"
    );
    // No driver loaded in that initramfs: a config selecting both functions hands it over.
    assert_eq!(
        card.handover,
        vfio_early::plan::Handover::Possible,
        "{:?}",
        card.blockers
    );
    let select: Vec<String> = card.select.iter().map(ToString::to_string).collect();
    assert_eq!(select, members);
    assert!(card.needs.is_empty());
}

#[test]
fn uefi_boot_amd_iommu() {
    let host = Host::new(fixture("check-uefi-amd"));
    let out = check::check(&host, Some(card_config().path()));
    let f = &out.findings;
    let vendor = find(f, "iommu vendor");
    assert!(
        vendor.detail.contains("AMD-Vi") && vendor.detail.contains("IVRS"),
        "{}",
        vendor.detail
    );
    let on = find(f, "iommu");
    assert_eq!(on.status, Status::Pass);
    assert!(
        on.detail
            .contains("pci 0000:00:01.0: AMD-Vi: Found IOMMU cap 0x40"),
        "{}",
        on.detail
    );
    let ir = find(f, "interrupt remapping");
    assert_eq!(ir.status, Status::Pass);
    // The seed guide's `iommu=on amd_iommu=on`: both said to be invalid, harmlessly.
    let amd = find(f, "cmdline amd_iommu");
    assert_eq!(amd.status, Status::Info);
    assert!(amd.detail.contains("AMD-Vi: Unknown option - 'on'"));
    assert_eq!(find(f, "cmdline iommu=").status, Status::Info);
    assert_eq!(find(f, "cmdline iommu").status, Status::Pass);
    assert_eq!(find(f, "framebuffer").status, Status::Fail);
}

#[test]
fn uefi_boot_without_iommu() {
    let host = Host::new(fixture("check-uefi-none"));
    let out = check::check(&host, Some(card_config().path()));
    let f = &out.findings;
    assert_eq!(find(f, "iommu vendor").status, Status::Fail);
    let on = find(f, "iommu");
    assert_eq!(on.status, Status::Fail);
    assert!(on.detail.contains("no IOMMU table"), "{}", on.detail);
    assert!(on.hint.as_deref().unwrap().contains("firmware settings"));
    assert_eq!(out.exit_status(), 1);

    let g = groups::collect(&host, None);
    assert!(!g.iommu.on && g.groups.is_empty());
    assert!(groups::render(&g).starts_with("No IOMMU groups: the firmware has no IOMMU table"));
}

#[test]
fn real_boot_after_a_successful_bind_passes() {
    // The tree the VM left after `vfio-early bind` (its record and log lines included).
    let host = Host::new(fixture("check-uefi-intel-bound"));
    let out = check::check(&host, None);
    let f = &out.findings;
    for addr in ["0000:01:00.0", "0000:01:00.1"] {
        assert_eq!(find(f, &format!("device {addr}")).status, Status::Pass);
        let b = find(f, &format!("boot {addr}"));
        assert_eq!(b.status, Status::Pass, "{b:?}");
    }
    assert!(find(f, "boot")
        .detail
        .contains("IOMMU Intel VT-d on (proof: sysfs + kernel log; 5 groups)"));
    assert_eq!(
        find(f, "framebuffer").status,
        Status::Pass,
        "video=efifb:off was given"
    );
    assert_eq!(find(f, "image").status, Status::Pass);
    assert_eq!(out.exit_status(), 0, "{f:#?}");

    let g = groups::collect(&host, None);
    let card = g.groups.iter().find(|x| x.group == 4).unwrap();
    assert!(card.usable);
    assert!(card
        .devices
        .iter()
        .all(|d| d.driver.as_deref() == Some("vfio-pci")));
}

#[test]
fn real_boot_without_iommu_fails_with_the_right_hints() {
    let host = Host::new(fixture("check-uefi-none-refused"));
    let out = check::check(&host, None);
    let f = &out.findings;
    let on = find(f, "iommu");
    assert_eq!(on.status, Status::Fail);
    assert!(
        on.hint.as_deref().unwrap().contains("enable VT-d / AMD-Vi"),
        "{on:?}"
    );
    let b = find(f, "boot 0000:01:00.0");
    assert_eq!(b.status, Status::Fail);
    assert!(
        b.detail
            .contains("refused at boot: the kernel shows no IOMMU groups"),
        "{}",
        b.detail
    );
    assert!(find(f, "boot").detail.contains("IOMMU off"));
    assert_eq!(
        find(f, "framebuffer").hint.as_deref(),
        Some("add video=efifb:off to the kernel command line")
    );
    assert_eq!(out.exit_status(), 1);
}

#[test]
fn real_kmsg_records_parse_with_dictionaries() {
    let host = Host::new(fixture("check-uefi-amd"));
    let records = vfio_early::kmsg::read(&host).unwrap();
    assert!(records.len() > 300, "{}", records.len());
    assert!(vfio_early::kmsg::from_boot(&records));
    let found = records
        .iter()
        .find(|r| r.text.contains("AMD-Vi: Found IOMMU"))
        .unwrap();
    assert_eq!(found.text, "pci 0000:00:01.0: AMD-Vi: Found IOMMU cap 0x40");
    assert_eq!(found.get("SUBSYSTEM"), Some("pci"));
    assert_eq!(found.get("DEVICE"), Some("+pci:0000:00:01.0"));
    // Sequence numbers strictly increase, as the kernel numbers its records.
    assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn real_boot_with_a_rotated_log_still_proves_the_iommu_from_sysfs() {
    // The bound boot's tree, with the ring buffer rotated: only the last records left
    // (from the vfio module's banner on), none of the DMAR lines.
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture("check-uefi-intel-bound").join("."))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let kmsg = std::fs::read_to_string(dir.path().join("dev/kmsg")).unwrap();
    let start = kmsg.find("VFIO - User Level meta-driver").unwrap();
    let start = kmsg[..start].rfind('\n').map_or(0, |i| i + 1);
    std::fs::write(dir.path().join("dev/kmsg"), &kmsg[start..]).unwrap();
    assert!(!kmsg[start..].contains("DMAR"));

    let out = check::check(&Host::new(dir.path()), None);
    let on = find(&out.findings, "iommu");
    assert_eq!(on.status, Status::Pass);
    assert!(
        on.detail.contains("rotated") && on.detail.contains("dmar0"),
        "{}",
        on.detail
    );
    // The record still tells what the agent did.
    assert_eq!(
        find(&out.findings, "boot 0000:01:00.0").status,
        Status::Pass
    );
    assert_eq!(out.exit_status(), 0);
}

/// The QEMU harness's main config (card A by address and id, e1000e, the boot VGA).
fn harness_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/qemu/configs/main.toml")
}

/// One device of a record: address, group, action, driver before, outcome, reason.
type Recorded<'a> = (
    &'a str,
    Option<u32>,
    Action,
    Option<&'a str>,
    DeviceOutcome,
    &'a str,
);

/// A copy of a captured tree with the record the agent left at that boot (the
/// captures hold no `run/`): what its kernel log lines in the tree say it did.
fn with_harness_record(name: &str, devices: &[Recorded]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture(name).join("."))
        .arg(dir.path())
        .status()
        .expect("cp");
    assert!(status.success());
    let host = Host::new(dir.path());
    let mut r = Record::new(&host);
    for &(addr, group, action, before, outcome, reason) in devices {
        r.devices.push(DeviceRecord {
            iommu_group: group,
            reasons: vec![reason.to_owned()],
            driver_before: before.map(str::to_owned),
            driver_after: before.map(str::to_owned),
            outcome,
            ..DeviceRecord::planned(addr.parse().expect("address"), action)
        });
    }
    r.save(&host).expect("save record");
    dir
}

const VGA: &str = "the boot display (boot_vga = 1): taking it can leave the host without a \
                   screen; set allow_boot_vga = true to mean it";

#[test]
fn harness_intel_boot_after_the_agent() {
    let tree = with_harness_record(
        "qemu-intel-after",
        &[
            (
                "0000:00:02.0",
                Some(1),
                Action::Refuse,
                None,
                DeviceOutcome::Refused,
                VGA,
            ),
            (
                "0000:00:03.0",
                Some(2),
                Action::Bind,
                Some("e1000e"),
                DeviceOutcome::Bound,
                "selected",
            ),
            (
                "0000:01:00.0",
                Some(6),
                Action::Bind,
                None,
                DeviceOutcome::Bound,
                "selected",
            ),
            (
                "0000:01:00.1",
                Some(6),
                Action::Bind,
                None,
                DeviceOutcome::Bound,
                "selected",
            ),
        ],
    );
    let host = Host::new(tree.path());
    let out = check::check(&host, Some(&harness_config()));
    let f = &out.findings;
    assert_eq!(find(f, "iommu").status, Status::Pass);
    assert!(find(f, "iommu vendor").detail.contains("Intel VT-d"));
    assert_eq!(find(f, "interrupt remapping").status, Status::Pass);
    assert_eq!(find(f, "cmdline iommu").status, Status::Pass);
    for addr in ["0000:00:03.0", "0000:01:00.0", "0000:01:00.1"] {
        assert_eq!(
            find(f, &format!("device {addr}")).status,
            Status::Pass,
            "{addr}"
        );
    }
    // e1000e was bound before the hook because of rd.driver.pre=e1000e.
    let nic = find(f, "boot 0000:00:03.0");
    assert_eq!(nic.status, Status::Warn);
    assert!(
        nic.detail.contains("after unbinding e1000e")
            && nic.detail.contains("rd.driver.pre=e1000e"),
        "{}",
        nic.detail
    );
    assert_eq!(
        nic.hint.as_deref(),
        Some("remove e1000e from rd.driver.pre= on the kernel command line")
    );
    assert_eq!(find(f, "boot 0000:01:00.0").status, Status::Pass);
    // The boot VGA was refused: configured but not on vfio-pci.
    assert_eq!(find(f, "device 0000:00:02.0").status, Status::Fail);
    let vga = find(f, "boot 0000:00:02.0");
    assert_eq!(vga.status, Status::Fail);
    assert!(vga.detail.contains("boot_vga = 1"), "{}", vga.detail);
    assert_eq!(out.exit_status(), 1);
}

#[test]
fn harness_amd_and_no_iommu_boots() {
    let amd = check::check(
        &Host::new(fixture("qemu-amd-after")),
        Some(&harness_config()),
    );
    assert!(find(&amd.findings, "iommu vendor")
        .detail
        .contains("AMD-Vi"));
    assert!(find(&amd.findings, "iommu")
        .detail
        .contains("AMD-Vi: Found IOMMU cap 0x40"));
    assert_eq!(
        find(&amd.findings, "device 0000:01:00.0").status,
        Status::Pass
    );

    // Without a record, the kernel log's lines are not read for what was done.
    let bare = check::check(
        &Host::new(fixture("qemu-intel-after")),
        Some(&harness_config()),
    );
    let nic = find(&bare.findings, "boot 0000:00:03.0");
    assert_eq!(nic.status, Status::Info);
    assert!(nic.detail.contains("no boot record"), "{}", nic.detail);
    assert!(find(&bare.findings, "boot")
        .detail
        .contains("vfio-early: lines"));

    let no_groups = "the kernel shows no IOMMU groups: the IOMMU is off or missing (enable \
                     VT-d/AMD-Vi in the firmware; on Intel add intel_iommu=on to the kernel \
                     command line)";
    let refused = |a| {
        (
            a,
            None,
            Action::Refuse,
            None,
            DeviceOutcome::Refused,
            no_groups,
        )
    };
    let tree = with_harness_record(
        "qemu-noiommu-after",
        &[
            refused("0000:00:02.0"),
            refused("0000:00:03.0"),
            refused("0000:01:00.0"),
            refused("0000:01:00.1"),
        ],
    );
    let none = check::check(&Host::new(tree.path()), Some(&harness_config()));
    let on = find(&none.findings, "iommu");
    assert_eq!(on.status, Status::Fail);
    assert!(on.hint.as_deref().unwrap().contains("firmware settings"));
    let card = find(&none.findings, "boot 0000:01:00.0");
    assert_eq!(card.status, Status::Fail);
    assert!(card.detail.contains("no IOMMU groups"), "{}", card.detail);
    assert_eq!(none.exit_status(), 1);
}

#[test]
fn harness_identical_cards_trap_and_groups() {
    // Card B (02:00.0) and the boot VGA (00:02.0) share 1234:1111 with card A.
    let host = Host::new(fixture("qemu-intel-before"));
    let topo = vfio_early::machine::read_topology(&host);
    let config = vfio_early::config::Config::parse(
        std::path::Path::new("t.toml"),
        b"[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n",
    )
    .unwrap();
    let plan = vfio_early::plan::plan(&config.devices, &topo);
    let facts = vfio_early::traps::Facts {
        cmdline: vfio_early::cmdline::Cmdline::parse(
            "intel_iommu=on vfio-pci.ids=1234:1111,8086:293e",
        ),
        ..Default::default()
    };
    let traps = vfio_early::traps::find(&plan, &topo, &facts);
    let f = vfio_early::cmd::check::trap_findings(&traps);
    let trap = f
        .iter()
        .find(|x| x.check == "cmdline vfio-pci.ids")
        .unwrap();
    assert_eq!(trap.status, Status::Fail);
    assert!(
        trap.detail.contains("0000:00:02.0") && trap.detail.contains("0000:02:00.0"),
        "the warning names every unconfigured device the ids take: {}",
        trap.detail
    );
    assert_eq!(
        traps.len(),
        2,
        "card B's audio shares 8086:293e too: {traps:?}"
    );

    // Before coldplug, with rd.driver.pre=e1000e: 00:03.0's group is held by e1000e.
    let g = groups::collect(&host, None);
    let nic = g
        .groups
        .iter()
        .find(|x| {
            x.devices
                .iter()
                .any(|d| d.address.to_string() == "0000:00:03.0")
        })
        .unwrap();
    // Not ready (e1000e holds it), and possible: select it and the agent unbinds e1000e.
    assert!(!nic.usable);
    assert_eq!(nic.handover, vfio_early::plan::Handover::Possible);
    assert_eq!(nic.select.len(), 1, "{:?}", nic.select);
    assert_eq!(nic.devices[0].driver.as_deref(), Some("e1000e"));
}
