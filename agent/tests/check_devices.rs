//! `check` on configured devices: driver, group, what the agent did at boot, the
//! boot framebuffer, image freshness, the identical-GPU trap, hugepages, exit codes.

mod check_support;

use check_support::*;
use testing::TestSysfs;
use vfio_early::cmd::check;
use vfio_early::host::Host;
use vfio_early::record::{Action, DeviceOutcome, DeviceRecord, Record};
use vfio_early::report::{self, Finding, Status};

fn find<'a>(f: &'a [Finding], check: &str) -> &'a Finding {
    f.iter()
        .find(|x| x.check == check)
        .unwrap_or_else(|| panic!("no {check} finding in {f:#?}"))
}

/// The Intel boot after a successful bind of the card at 01:00 (both functions).
fn bound_machine() -> TestSysfs {
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    t.file("dev/kmsg", &intel_log());
    t.cmdline("BOOT_IMAGE=/vmlinuz console=ttyS0 intel_iommu=on iommu=pt panic=-1\n");
    t.config(CARD_CONFIG);
    t.bind_link("0000:01:00.0", "vfio-pci");
    t.bind_link("0000:01:00.1", "vfio-pci");
    write_record(
        &t,
        CARD_CONFIG,
        &[("0000:01:00.0", None), ("0000:01:00.1", None)],
    );
    t
}

fn write_record(t: &TestSysfs, config: &str, devices: &[(&str, Option<&str>)]) {
    let host = Host::new(t.root());
    let mut r = Record::new(&host);
    r.config_path = "/etc/vfio-early.toml".into();
    r.config_text = Some(config.to_owned());
    r.iommu_verdict = Some("IOMMU Intel VT-d on (proof: sysfs + kernel log; 6 groups), interrupt remapping on; command line ok".into());
    for (a, before) in devices {
        r.devices.push(DeviceRecord {
            iommu_group: Some(4),
            driver_before: before.map(str::to_owned),
            driver_after: Some("vfio-pci".into()),
            outcome: DeviceOutcome::Bound,
            ..DeviceRecord::planned(a.parse().expect("address"), Action::Bind)
        });
    }
    r.save(&host).expect("save record");
}

#[test]
fn successful_bind_passes() {
    let t = bound_machine();
    let out = check::check(&Host::new(t.root()), None);
    let f = &out.findings;
    for addr in ["0000:01:00.0", "0000:01:00.1"] {
        let d = find(f, &format!("device {addr}"));
        assert_eq!(d.status, Status::Pass, "{d:?}");
        assert!(d.detail.contains("group 4 is usable"), "{}", d.detail);
        assert_eq!(find(f, &format!("boot {addr}")).status, Status::Pass);
    }
    let fb = find(f, "framebuffer");
    assert_eq!(fb.status, Status::Pass);
    assert!(
        fb.detail.contains("BOOTFB (in 0000:00:04.0)"),
        "{}",
        fb.detail
    );
    assert_eq!(find(f, "image").status, Status::Pass);
    assert!(find(f, "boot")
        .detail
        .contains("verdict at boot: IOMMU Intel VT-d on"));
    assert_eq!(out.exit_status(), 0, "{}", report::render_human(f, false));
    // The human rendering is aligned: every detail starts in the same column.
    let human = report::render_human(f, false);
    let width = f.iter().map(|x| x.check.chars().count()).max().unwrap();
    let col = 4 + 2 + width + 2;
    let mut rows = 0;
    for line in human.lines().take_while(|l| !l.is_empty()) {
        let b = line.as_bytes();
        assert_eq!(&b[col - 2..col], b"  ", "{line}");
        assert_ne!(b[col], b' ', "{line}");
        rows += 1;
    }
    assert!(rows >= f.len());
    println!("{human}");
}

#[test]
fn framebuffer_in_a_configured_bar_fails_with_the_fix() {
    let t = bound_machine();
    framebuffer_on_card(&t);
    let out = check::check(&Host::new(t.root()), None);
    let fb = find(&out.findings, "framebuffer");
    assert_eq!(fb.status, Status::Fail);
    assert!(
        fb.detail.contains("BOOTFB") && fb.detail.contains("0000:01:00.0"),
        "{}",
        fb.detail
    );
    assert!(fb.detail.contains("BAR 0"), "{}", fb.detail);
    assert!(fb
        .hint
        .as_deref()
        .unwrap()
        .contains("initcall_blacklist=sysfb_init"));
    assert_eq!(out.exit_status(), 1);

    // As a non-root user reads /proc/iomem: every address zero, nesting kept.
    let hidden: String = t
        .read("proc/iomem")
        .lines()
        .map(|l| {
            let (range, name) = l.split_once(" : ").unwrap();
            let indent = &range[..range.len() - range.trim_start().len()];
            format!("{indent}00000000-00000000 : {name}\n")
        })
        .collect();
    t.file("proc/iomem", &hidden);
    let out = check::check(&Host::new(t.root()), None);
    let fb = find(&out.findings, "framebuffer");
    assert_eq!(fb.status, Status::Fail);
    assert!(fb.detail.contains("addresses hidden"), "{}", fb.detail);

    // An efifb region names its own switch.
    t.file(
        "proc/iomem",
        &t.read("proc/iomem").replace("BOOTFB", "efifb"),
    );
    let out = check::check(&Host::new(t.root()), None);
    assert!(find(&out.findings, "framebuffer")
        .hint
        .as_deref()
        .unwrap()
        .contains("video=efifb:off"));
}

#[test]
fn host_driver_unbound_at_boot_says_why() {
    // rd.driver.pre= loaded snd_hda_intel before the hook.
    let t = bound_machine();
    t.cmdline("intel_iommu=on rd.driver.pre=snd-hda-intel,e1000e\n");
    write_record(
        &t,
        CARD_CONFIG,
        &[
            ("0000:01:00.0", None),
            ("0000:01:00.1", Some("snd_hda_intel")),
        ],
    );
    let out = check::check(&Host::new(t.root()), None);
    let b = find(&out.findings, "boot 0000:01:00.1");
    assert_eq!(b.status, Status::Warn);
    assert!(b.detail.contains("rd.driver.pre"), "{}", b.detail);
    assert!(b
        .hint
        .as_deref()
        .unwrap()
        .contains("remove snd_hda_intel from rd.driver.pre="));

    // Built into the kernel.
    t.cmdline("intel_iommu=on\n");
    t.file(
        &format!("lib/modules/{}/modules.builtin", testing::RELEASE),
        "kernel/drivers/pci/pcie/portdrv.ko\nkernel/sound/pci/hda/snd-hda-intel.ko\n",
    );
    let out = check::check(&Host::new(t.root()), None);
    assert!(find(&out.findings, "boot 0000:01:00.1")
        .detail
        .contains("built into the kernel"));

    // mkinitcpio MODULES=.
    std::fs::remove_file(t.path(&format!("lib/modules/{}/modules.builtin", testing::RELEASE)))
        .unwrap();
    t.file(
        "etc/mkinitcpio.conf",
        "# vim:set ft=sh\nMODULES=(ext4 snd_hda_intel)\nHOOKS=(base udev)\n",
    );
    let out = check::check(&Host::new(t.root()), None);
    let b = find(&out.findings, "boot 0000:01:00.1");
    assert!(b.detail.contains("MODULES="), "{}", b.detail);
    assert!(b.hint.as_deref().unwrap().contains("mkinitcpio -P"));
}

#[test]
fn device_left_on_host_driver_or_in_unusable_group_fails() {
    let t = bound_machine();
    // Only the display function is configured; the audio function stays on the host.
    let one = "[[device]]\naddress = \"0000:01:00.0\"\n";
    t.config(one);
    t.bind_link("0000:01:00.1", "snd_hda_intel");
    write_record(&t, one, &[("0000:01:00.0", None)]);
    let out = check::check(&Host::new(t.root()), None);
    let d = find(&out.findings, "device 0000:01:00.0");
    assert_eq!(d.status, Status::Fail);
    assert!(
        d.detail.contains("0000:01:00.1") && d.detail.contains("snd_hda_intel"),
        "{}",
        d.detail
    );
    assert_eq!(out.exit_status(), 1);

    t.bind_link("0000:01:00.0", "bochs-drm");
    let out = check::check(&Host::new(t.root()), None);
    let d = find(&out.findings, "device 0000:01:00.0");
    assert_eq!(d.status, Status::Fail);
    assert!(d.detail.contains("bochs-drm"), "{}", d.detail);
}

#[test]
fn stale_image_names_the_rebuild_command() {
    let t = bound_machine();
    write_record(
        &t,
        "[[device]]\naddress = \"0000:00:03.0\"\n",
        &[("0000:01:00.0", None), ("0000:01:00.1", None)],
    );
    t.file("usr/sbin/update-initramfs", "#!/bin/sh\n");
    t.file("usr/share/initramfs-tools/hook-functions", "");
    let out = check::check(&Host::new(t.root()), None);
    let img = find(&out.findings, "image");
    assert_eq!(img.status, Status::Warn);
    assert_eq!(
        img.hint.as_deref(),
        Some("rebuild the initramfs: vfio-early apply (runs update-initramfs -u)")
    );
    t.file("usr/bin/dracut", "#!/bin/bash\n");
    t.file("usr/lib/dracut/dracut-functions.sh", "");
    std::fs::remove_file(t.path("usr/sbin/update-initramfs")).unwrap();
    let out = check::check(&Host::new(t.root()), None);
    assert_eq!(
        find(&out.findings, "image").hint.as_deref(),
        Some("rebuild the initramfs: vfio-early apply (runs dracut --force)")
    );
    std::fs::remove_file(t.path("usr/bin/dracut")).unwrap();
    let out = check::check(&Host::new(t.root()), None);
    assert!(
        find(&out.findings, "image")
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("dracut -f / mkinitcpio -P"),
        "no generator found: every command is named"
    );
}

#[test]
fn without_record_the_agent_log_lines_are_counted_never_parsed() {
    let t = bound_machine();
    std::fs::remove_file(t.path("run/vfio-early/record.json")).unwrap();
    let out = check::check(&Host::new(t.root()), None);
    let boot = find(&out.findings, "boot");
    assert_eq!(boot.status, Status::Warn);
    assert!(boot.detail.contains("did not run"), "{}", boot.detail);
    assert_eq!(find(&out.findings, "image").status, Status::NotApplicable);

    // The binder's lines, one after unbinding a host driver: `check` says the agent ran,
    // and leaves what it did to the record.
    let mut log = intel_log();
    log.push_str(
        "14,9,2500000,-;vfio-early: 0000:01:00.0 [1234:1111] bound to vfio-pci, IOMMU group 4\n",
    );
    log.push_str("14,10,2600000,-;vfio-early: 0000:01:00.1 [8086:293e] bound to vfio-pci (was snd_hda_intel), IOMMU group 4\n");
    t.file("dev/kmsg", &log);
    t.cmdline("intel_iommu=on rd.driver.pre=snd_hda_intel\n");
    let out = check::check(&Host::new(t.root()), None);
    let boot = find(&out.findings, "boot");
    assert_eq!(boot.status, Status::Info);
    assert!(
        boot.detail.contains("2 vfio-early: lines"),
        "{}",
        boot.detail
    );
    for a in ["0000:01:00.0", "0000:01:00.1"] {
        let b = find(&out.findings, &format!("boot {a}"));
        assert_eq!(b.status, Status::Info, "{a}");
        assert!(b.detail.contains("no boot record"), "{}", b.detail);
    }

    // The same boot with its record: the driver taken from comes from the record.
    write_record(
        &t,
        CARD_CONFIG,
        &[
            ("0000:01:00.0", None),
            ("0000:01:00.1", Some("snd_hda_intel")),
        ],
    );
    let out = check::check(&Host::new(t.root()), None);
    assert_eq!(
        find(&out.findings, "boot 0000:01:00.0").status,
        Status::Pass
    );
    let b = find(&out.findings, "boot 0000:01:00.1");
    assert_eq!(b.status, Status::Warn);
    assert!(
        b.detail.contains("after unbinding snd_hda_intel")
            && b.detail
                .contains("rd.driver.pre=snd_hda_intel loads it before the hook"),
        "{}",
        b.detail
    );
}

#[test]
fn identical_gpu_trap_on_the_command_line() {
    // QEMU's two bochs-display devices share 1234:1111: vfio-pci.ids would take the
    // boot display at 00:04.0 as well.
    let t = bound_machine();
    t.cmdline("intel_iommu=on vfio-pci.ids=1234:1111,8086:293e\n");
    let out = check::check(&Host::new(t.root()), None);
    let trap: Vec<&Finding> = out
        .findings
        .iter()
        .filter(|x| x.check == "cmdline vfio-pci.ids")
        .collect();
    assert_eq!(trap.len(), 2, "{trap:#?}");
    assert_eq!(trap[0].status, Status::Fail);
    assert!(
        trap[0].detail.contains("0000:00:04.0"),
        "{}",
        trap[0].detail
    );
    assert_eq!(
        trap[1].status,
        Status::Info,
        "8086:293e is only the configured audio function"
    );
    assert_eq!(out.exit_status(), 1);
}

#[test]
fn config_error_exits_2_and_still_reports() {
    let t = bound_machine();
    t.config("[[device]]\naddress = \"0000:01:00\"\n");
    let out = check::check(&Host::new(t.root()), None);
    assert_eq!(out.exit_status(), 2);
    let c = find(&out.findings, "config");
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("vfio-early.toml:2:"), "{}", c.detail);
    assert_eq!(find(&out.findings, "iommu").status, Status::Pass);
    // An explicit config that does not exist is an error too.
    let out = check::check(&Host::new(t.root()), Some(&t.path("etc/nope.toml")));
    assert_eq!(out.exit_status(), 2);
    // A config that parses says so.
    t.config("[[device]]\naddress = \"0000:01:00.0\"\n");
    let out = check::check(&Host::new(t.root()), None);
    let c = find(&out.findings, "config");
    assert_eq!(c.status, Status::Pass);
    assert!(
        c.detail
            .ends_with("vfio-early.toml parses: 1 [[device]] and 0 [[hugepages]] entries"),
        "{}",
        c.detail
    );
}

#[test]
fn hugepages_versus_config() {
    let t = bound_machine();
    let config = format!("{CARD_CONFIG}\n[[hugepages]]\nsize = \"2M\"\ncount = 64\n");
    t.config(&config);
    write_record(
        &t,
        &config,
        &[("0000:01:00.0", None), ("0000:01:00.1", None)],
    );
    t.file(
        "proc/meminfo",
        "MemTotal:        8000000 kB\nMemFree:         7000000 kB\n",
    );
    t.file(
        "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        "64\n",
    );
    t.file(
        "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
        "0\n",
    );
    let out = check::check(&Host::new(t.root()), None);
    let h = find(&out.findings, "hugepages 2M");
    assert_eq!(h.status, Status::Pass, "{h:?}");
    t.file(
        "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        "40\n",
    );
    let out = check::check(&Host::new(t.root()), None);
    let h = find(&out.findings, "hugepages 2M");
    assert_eq!(h.status, Status::Warn, "{h:?}");
    assert!(
        h.detail.contains("40 reserved, config asks 64"),
        "{}",
        h.detail
    );
    assert!(h.hint.as_deref().unwrap().contains("hugepages="), "{h:?}");
}

#[test]
fn json_rendering_is_the_documented_schema() {
    let t = bound_machine();
    framebuffer_on_card(&t);
    let out = check::check(&Host::new(t.root()), None);
    let v: serde_json::Value = serde_json::from_str(&report::render_json(&out.findings)).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["exit"], 1);
    let arr = v["findings"].as_array().unwrap();
    assert_eq!(arr.len(), out.findings.len());
    for f in arr {
        let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["check", "detail", "hint", "status"]);
        assert!(["pass", "warn", "fail", "info", "n/a"].contains(&f["status"].as_str().unwrap()));
    }
    assert!(v["summary"]["fail"].as_u64().unwrap() >= 1);
}

#[test]
fn identical_gpu_trap_in_modprobe_d() {
    let t = bound_machine();
    t.file("etc/modprobe.d/vfio.conf", "# passthrough\noptions vfio-pci ids=1234:1111 disable_vga=1\nsoftdep bochs pre: vfio-pci\n");
    let out = check::check(&Host::new(t.root()), None);
    let trap = find(&out.findings, "modprobe.d vfio-pci ids");
    assert_eq!(trap.status, Status::Fail);
    assert!(
        trap.detail.contains("/etc/modprobe.d/vfio.conf") && trap.detail.contains("0000:00:04.0"),
        "{}",
        trap.detail
    );
    // The command line wins over modprobe.d.
    t.cmdline("intel_iommu=on vfio-pci.ids=8086:293e\n");
    let out = check::check(&Host::new(t.root()), None);
    assert!(out
        .findings
        .iter()
        .all(|f| f.check != "modprobe.d vfio-pci ids"));
    assert_eq!(
        find(&out.findings, "cmdline vfio-pci.ids").status,
        Status::Info
    );
}

#[test]
fn vfio_dma_backend_must_be_loaded() {
    let t = bound_machine();
    let out = check::check(&Host::new(t.root()), None);
    assert!(
        out.findings.iter().all(|f| f.check != "vfio modules"),
        "no sys/module: nothing said"
    );
    t.file(
        "sys/module/vfio/parameters/enable_unsafe_noiommu_mode",
        "N\n",
    );
    let out = check::check(&Host::new(t.root()), None);
    let m = find(&out.findings, "vfio modules");
    assert_eq!(m.status, Status::Warn);
    assert!(m
        .hint
        .as_deref()
        .unwrap()
        .contains("modprobe vfio_iommu_type1"));
    t.file(
        "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
        "N\n",
    );
    let out = check::check(&Host::new(t.root()), None);
    assert_eq!(find(&out.findings, "vfio modules").status, Status::Pass);
}
