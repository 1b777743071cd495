//! SR-IOV over fixture trees: PF/VF relations read from sysfs, VFs selected by index
//! or address under the planner's rules, VFs made at boot (`[[sriov]]`), and what
//! `groups` and `check` show of them.
//!
//! The fixture's kernel text: a PF has `sriov_totalvfs`, `sriov_numvfs` and
//! `sriov_drivers_autoprobe` (1 by default), and a `virtfnN` link per VF; each VF has a
//! `physfn` link to its PF. Writing `sriov_numvfs` in a fixture only stores the value:
//! the VFs the "kernel" makes are added (with their links) beforehand, and a scan
//! shows the first `sriov_numvfs` of them, as the kernel would.

use std::process::Output;

use serde_json::Value;
use testing::{Dev, TestSysfs};
use vfio_early::cmd::groups;
use vfio_early::host::Host;
use vfio_early::pci::{self, Sriov};

const PF: &str = "0000:03:00.0";
const VFS: [&str; 4] = [
    "0000:03:10.0",
    "0000:03:10.2",
    "0000:03:10.4",
    "0000:03:10.6",
];
const IGB_ALIAS: &str = "alias pci:v00008086d000010C9sv*sd*bc*sc*i* igb\n\
    alias pci:v00008086d000010CAsv*sd*bc*sc*i* igbvf\n";

fn run(t: &TestSysfs, args: &[&str]) -> Output {
    t.run(env!("CARGO_BIN_EXE_vfio-early"), args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An igb PF (group 3, on igb) with four VFs present in sysfs, `numvfs` of them made;
/// each VF in its own group (10..), or all in the PF's group with `shared`.
fn igb(numvfs: u16, shared: bool) -> TestSysfs {
    let t = TestSysfs::new();
    t.driver("vfio-pci");
    t.aliases(IGB_ALIAS);
    t.add(
        &Dev::new(PF, (0x8086, 0x10c9), 0x020000)
            .group(3)
            .driver("igb"),
    );
    t.sriov_pf(PF, 7, numvfs);
    for (i, vf) in VFS.iter().enumerate() {
        let g = if shared { 3 } else { 10 + i as u32 };
        t.add(&Dev::new(vf, (0x8086, 0x10ca), 0x020000).group(g));
        t.virtfn(PF, i as u16, vf);
    }
    t
}

fn dry_json(t: &TestSysfs) -> Value {
    let o = run(t, &["bind", "--dry-run", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("JSON plan")
}

fn action(plan: &Value, addr: &str) -> String {
    plan["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["address"] == addr)
        .map_or_else(
            || "absent".to_owned(),
            |d| d["action"].as_str().unwrap_or("").to_owned(),
        )
}

fn reasons(plan: &Value, addr: &str) -> String {
    plan["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["address"] == addr)
        .map(|d| d["reasons"].to_string())
        .unwrap_or_default()
}

#[test]
fn a_scan_gives_each_vf_its_pf_and_index_and_the_pf_its_counts() {
    let t = igb(2, false);
    let devices = pci::scan(&Host::new(t.root()));
    let pf = devices
        .iter()
        .find(|d| d.address.to_string() == PF)
        .unwrap();
    assert_eq!(
        pf.sriov,
        Some(Sriov::Pf {
            totalvfs: 7,
            numvfs: 2,
            drivers_autoprobe: Some(true),
            vfs: vec![VFS[0].parse().unwrap(), VFS[1].parse().unwrap()],
        })
    );
    let vf = |a: &str| {
        devices
            .iter()
            .find(|d| d.address.to_string() == a)
            .unwrap()
            .vf_of()
    };
    assert_eq!(vf(VFS[1]), Some((PF.parse().unwrap(), 1)));
    // Beyond sriov_numvfs the kernel has no VF: no relation is made up.
    assert_eq!(vf(VFS[2]), None);
}

#[test]
fn vf_indexes_under_the_pf_address_select_those_vfs_not_the_pf() {
    let t = igb(4, false);
    t.config(&format!(
        "[[device]]\naddress = \"{PF}\"\nvf = [0, 1]\n\n[[device]]\naddress = \"{}\"\n",
        VFS[3]
    ));
    let plan = dry_json(&t);
    for vf in [VFS[0], VFS[1], VFS[3]] {
        assert_eq!(action(&plan, vf), "bind", "{vf}: {plan}");
    }
    assert_eq!(action(&plan, VFS[2]), "absent", "{plan}");
    assert_eq!(action(&plan, PF), "absent", "the PF is not taken: {plan}");
}

#[test]
fn a_vf_index_the_pf_has_not_made_is_a_warning_with_the_counts() {
    let t = igb(2, false);
    t.config(&format!("[[device]]\naddress = \"{PF}\"\nvf = [1, 5]\n"));
    let plan = dry_json(&t);
    assert_eq!(action(&plan, VFS[1]), "bind", "{plan}");
    let w = plan["warnings"].to_string();
    assert!(w.contains("has no VF 5 (2 VFs made, at most 7"), "{w}");
    // A function that is no PF at all.
    let t = TestSysfs::new();
    t.add(&Dev::new("0000:00:03.0", (0x8086, 0x10d3), 0x020000).group(1));
    t.config("[[device]]\naddress = \"0000:00:03.0\"\nvf = [0]\n");
    let w = dry_json(&t)["warnings"].to_string();
    assert!(w.contains("is not an SR-IOV physical function"), "{w}");
}

/// VFs behind a device without ACS share their PF's group. The PF must keep its host
/// driver (it made them), so such a group can never go to vfio-pci: the VF is refused
/// naming the PF on igb, and selecting the PF too refuses the VF for that reason.
#[test]
fn vfs_in_their_pfs_group_are_refused_and_the_pf_keeps_its_driver() {
    let t = igb(4, true);
    t.config(&format!("[[device]]\naddress = \"{PF}\"\nvf = [0]\n"));
    let plan = dry_json(&t);
    assert_eq!(action(&plan, VFS[0]), "refuse", "{plan}");
    let why = reasons(&plan, VFS[0]);
    assert!(
        why.contains(&format!("{PF} (network controller, on igb)")),
        "{why}"
    );
    assert_ne!(action(&plan, PF), "bind", "{plan}");

    t.config(&format!(
        "[[device]]\naddress = \"{PF}\"\n\n[[device]]\naddress = \"{PF}\"\nvf = [0, 1, 2, 3]\n"
    ));
    let plan = dry_json(&t);
    let why = reasons(&plan, VFS[0]);
    assert_eq!(action(&plan, VFS[0]), "refuse", "{plan}");
    assert!(
        why.contains("unbinding it from that driver removes them"),
        "{why}"
    );
    // And groups says the group cannot be handed over while the VFs exist.
    let g = groups::collect(&Host::new(t.root()), None);
    let g3 = g.groups.iter().find(|g| g.group == 3).unwrap();
    assert_eq!(
        g3.handover,
        vfio_early::plan::Handover::Impossible,
        "{g3:?}"
    );
}

/// A PF whose driver has made VFs: unbinding that driver removes the VFs, so the PF
/// alone is refused while it has any, and planned like any card once it has none.
#[test]
fn a_pf_with_vfs_made_is_refused_alone_and_taken_without_them() {
    let t = igb(2, false);
    t.config(&format!("[[device]]\naddress = \"{PF}\"\n"));
    let plan = dry_json(&t);
    assert_eq!(action(&plan, PF), "refuse", "{plan}");
    let why = reasons(&plan, PF);
    assert!(
        why.contains("an SR-IOV physical function with 2 VFs made"),
        "{why}"
    );
    assert_eq!(action(&plan, VFS[0]), "absent", "{plan}");

    let t = igb(0, false);
    t.config(&format!("[[device]]\naddress = \"{PF}\"\n"));
    let plan = dry_json(&t);
    assert_eq!(action(&plan, PF), "bind", "{plan}");
}

#[test]
fn the_boot_makes_the_vfs_with_autoprobe_off_then_restores_it() {
    let t = igb(0, false);
    t.config(&format!(
        "[[sriov]]\naddress = \"{PF}\"\nvfs = 4\n\n[[device]]\naddress = \"{PF}\"\nvf = [0, 1]\n"
    ));
    let o = run(&t, &["bind"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let attr = |n: &str| t.read(&format!("sys/bus/pci/devices/{PF}/{n}"));
    assert_eq!(attr("sriov_numvfs"), "4");
    assert_eq!(
        attr("sriov_drivers_autoprobe"),
        "1",
        "restored after the bind"
    );
    let kmsg = t.read("dev/kmsg");
    assert!(
        kmsg.contains(&format!(
            "{PF}: made 4 VFs (sriov_numvfs read back 4): {}",
            VFS.join(", ")
        )),
        "{kmsg}"
    );
    let record: Value = serde_json::from_str(&t.read("run/vfio-early/record.json")).unwrap();
    let s = &record["sriov"][0];
    assert_eq!(s["outcome"], "made", "{record}");
    assert_eq!(s["numvfs"], 4);
    assert_eq!(s["autoprobe_was"], true);
    assert_eq!(s["vfs"][3], VFS[3]);
    // The second scan saw the new VFs: the selected ones were planned for vfio-pci.
    let planned: Vec<&str> = record["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "bind")
        .filter_map(|d| d["address"].as_str())
        .collect();
    assert_eq!(planned, [VFS[0], VFS[1]], "{record}");
    // The last VF without a driver was offered to its drivers after the restore.
    assert_eq!(t.read("sys/bus/pci/drivers_probe"), VFS[3]);
}

#[test]
fn an_existing_count_is_reported_and_kept() {
    let t = igb(2, false);
    t.config(&format!("[[sriov]]\naddress = \"{PF}\"\nvfs = 4\n"));
    let o = run(&t, &["bind"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        t.read(&format!("sys/bus/pci/devices/{PF}/sriov_numvfs")),
        "2\n",
        "never changed"
    );
    assert_eq!(
        t.read(&format!("sys/bus/pci/devices/{PF}/sriov_drivers_autoprobe")),
        "1\n"
    );
    let kmsg = t.read("dev/kmsg");
    assert!(
        kmsg.contains("has 2 VFs already, the config asks for 4: kept"),
        "{kmsg}"
    );
    let record: Value = serde_json::from_str(&t.read("run/vfio-early/record.json")).unwrap();
    assert_eq!(record["sriov"][0]["outcome"], "kept");
    // check says so, with the way to change it.
    let o = run(&t, &["check", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == format!("sriov {PF}"))
        .unwrap_or_else(|| panic!("no sriov finding: {v}"));
    assert_eq!(f["status"], "warn", "{f}");
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("2 of 7 VFs (config: 4)"),
        "{f}"
    );
}

#[test]
fn a_refused_count_puts_autoprobe_back() {
    let t = igb(0, false);
    // The kernel refusing the count (here: the attribute cannot be written).
    let numvfs = t.path(&format!("sys/devices/pci0000:00/{PF}/sriov_numvfs"));
    std::fs::remove_file(&numvfs).unwrap();
    std::fs::create_dir(&numvfs).unwrap();
    t.config(&format!("[[sriov]]\naddress = \"{PF}\"\nvfs = 2\n"));
    let o = run(&t, &["bind"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        t.read(&format!("sys/bus/pci/devices/{PF}/sriov_drivers_autoprobe")),
        "1"
    );
    let record: Value = serde_json::from_str(&t.read("run/vfio-early/record.json")).unwrap();
    assert_eq!(record["sriov"][0]["outcome"], "failed", "{record}");
}

#[test]
fn entries_the_kernel_cannot_carry_out_are_refused_with_the_reason() {
    let t = igb(0, false);
    t.config(&format!(
        "[[sriov]]\naddress = \"{PF}\"\nvfs = 8\n\n[[sriov]]\naddress = \"0000:09:00.0\"\nvfs = 1\n"
    ));
    let o = run(&t, &["bind"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let kmsg = t.read("dev/kmsg");
    assert!(
        kmsg.contains("can make at most 7 VFs (sriov_totalvfs), not 8"),
        "{kmsg}"
    );
    assert!(kmsg.contains("no device at 0000:09:00.0"), "{kmsg}");
    assert_eq!(
        t.read(&format!("sys/bus/pci/devices/{PF}/sriov_numvfs")),
        "0\n"
    );
}

#[test]
fn groups_and_check_show_the_pf_and_vf_relations() {
    let t = igb(4, false);
    t.bind_link(VFS[0], "vfio-pci");
    t.bind_link(VFS[3], "igbvf");
    t.config(&format!("[[sriov]]\naddress = \"{PF}\"\nvfs = 4\n"));
    let g = groups::collect(&Host::new(t.root()), None);
    let text = groups::render(&g);
    assert!(
        text.contains(&format!("\t{PF} ")) && text.contains("SR-IOV PF: 4 of 7 VFs"),
        "{text}"
    );
    assert!(text.contains(&format!("SR-IOV VF 2 of {PF}")), "{text}");
    let json = serde_json::to_string(&g).unwrap();
    assert!(
        json.contains(&format!(
            "\"sriov\":{{\"role\":\"vf\",\"pf\":\"{PF}\",\"index\":3}}"
        )),
        "{json}"
    );
    assert!(
        json.contains("\"role\":\"pf\",\"totalvfs\":7,\"numvfs\":4"),
        "{json}"
    );

    let o = run(&t, &["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.contains(&format!("sriov {PF}")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with("pass"), "{line}");
    assert!(
        line.contains("PF on igb, 4 of 7 VFs (config: 4)")
            && line.contains(&format!("VF 0 {} on vfio-pci", VFS[0]))
            && line.contains(&format!("VF 3 {} on igbvf", VFS[3])),
        "{line}"
    );
}
