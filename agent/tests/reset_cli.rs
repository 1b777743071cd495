//! Reset methods through the built binary over fixture trees: what `groups` and
//! `check` show (JSON and words) from each device's `reset_method`, and the config's
//! `reset_method` written at boot, read back and logged, or refused with its reason.

use std::process::Output;

use serde_json::Value;
use testing::{Dev, TestSysfs};

fn run(t: &TestSysfs, args: &[&str]) -> Output {
    t.run(env!("CARGO_BIN_EXE_vfio-early"), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const POLARIS: &str = "0000:01:00.0";
const AUDIO: &str = "0000:01:00.1";
const NIC: &str = "0000:03:00.0";
const LONE: &str = "0000:04:00.0";

/// A root port with a Polaris card behind it (display lists `bus`, audio nothing), a
/// NIC with `flr pm`, and a lone card the kernel found no reset for (no attribute).
fn machine(release: &str) -> TestSysfs {
    let t = TestSysfs::new();
    for d in [
        Dev::new("0000:00:02.0", (0x1022, 0x1412), 0x060400)
            .group(1)
            .driver("pcieport"),
        Dev::new(POLARIS, (0x1002, 0x67df), 0x030000).group(1),
        Dev::new(AUDIO, (0x1002, 0xaaf0), 0x040300).group(1),
        Dev::new(NIC, (0x8086, 0x10d3), 0x020000).group(2),
        Dev::new(LONE, (0x1234, 0x1111), 0x030000).group(3),
    ] {
        t.add(&d);
    }
    t.driver("vfio-pci");
    t.file("proc/sys/kernel/osrelease", &format!("{release}\n"));
    if release.starts_with('6') {
        t.file(
            &format!("sys/bus/pci/devices/{POLARIS}/reset_method"),
            "bus\n",
        );
        t.file(
            &format!("sys/bus/pci/devices/{NIC}/reset_method"),
            "flr pm\n",
        );
    }
    t
}

fn groups_json(t: &TestSysfs) -> Value {
    let o = run(t, &["groups", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("groups JSON")
}

fn reset_of<'a>(g: &'a Value, addr: &str) -> &'a Value {
    g["groups"]
        .as_array()
        .expect("groups array")
        .iter()
        .flat_map(|grp| grp["devices"].as_array().expect("devices array"))
        .find(|d| d["address"] == addr)
        .map(|d| &d["reset"])
        .unwrap_or_else(|| panic!("{addr} missing: {g}"))
}

#[test]
fn groups_shows_methods_and_flags_only_what_nothing_can_reset() {
    let t = machine("6.1.0-test");
    let g = groups_json(&t);
    let nic = reset_of(&g, NIC);
    assert_eq!(nic["methods"], serde_json::json!(["flr", "pm"]), "{nic}");
    assert_eq!(nic["resettable"], "device");
    assert!(nic.get("hint").is_none(), "{nic}");
    // The audio function lists nothing, but the card's display offers bus and the
    // group takes both: a bus reset of the whole slot.
    let audio = reset_of(&g, AUDIO);
    assert_eq!(audio["methods"], serde_json::json!([]), "{audio}");
    assert_eq!(audio["resettable"], "slot-bus");
    // Hidden attribute on 5.15+: none, and nothing else in the slot.
    let lone = reset_of(&g, LONE);
    assert_eq!(lone["methods"], serde_json::json!([]), "{lone}");
    assert_eq!(lone["resettable"], "no");
    assert!(
        lone["hint"].as_str().unwrap().contains("no reset"),
        "{lone}"
    );
    // The family table adds its advice whatever the kernel lists.
    let polaris = reset_of(&g, POLARIS);
    assert_eq!(polaris["resettable"], "device");
    assert!(
        polaris["family"].as_str().unwrap().contains("Polaris 10"),
        "{polaris}"
    );
    assert!(
        polaris["hint"].as_str().unwrap().contains("vendor-reset"),
        "{polaris}"
    );
    assert_eq!(reset_of(&g, "0000:00:02.0")["resettable"], "not-needed");

    let words = stdout(&run(&t, &["groups"]));
    // The line under the device's own.
    let reset_line = |a: &str| {
        let mut lines = words.lines();
        lines
            .find(|l| l.starts_with(&format!("\t{a} ")))
            .unwrap_or_else(|| panic!("{a}: {words}"));
        lines.next().unwrap_or_default().to_owned()
    };
    assert_eq!(reset_line(NIC), "\t\treset: flr pm", "{words}");
    assert_eq!(
        reset_line(AUDIO),
        "\t\treset: none (resettable by a bus reset of its whole slot)",
        "{words}"
    );
    assert_eq!(
        reset_line(LONE),
        "\t\treset: none (cannot be reset between VM runs)",
        "{words}"
    );
    assert_eq!(
        reset_line("0000:00:02.0"),
        format!("\t{POLARIS} VGA controller [0300]: [1002:67df] driver=none endpoint GPU 1"),
        "bridges need none: {words}"
    );
    assert!(words.contains("\t\treset hint: AMD Polaris 10"), "{words}");
}

#[test]
fn before_5_15_the_methods_are_unknown_and_nothing_is_flagged() {
    let t = machine("5.10.0-test");
    let g = groups_json(&t);
    for a in [NIC, LONE, AUDIO] {
        let r = reset_of(&g, a);
        assert!(r["methods"].is_null(), "{a}: {r}");
        assert_eq!(r["resettable"], "unknown", "{a}: {r}");
    }
    let words = stdout(&run(&t, &["groups"]));
    assert!(
        words.contains("\t\treset: unknown (the kernel does not say before 5.15)"),
        "{words}"
    );
    assert!(!words.contains("cannot be reset"), "{words}");
}

#[test]
fn check_reports_each_configured_devices_reset() {
    let t = machine("6.1.0-test");
    t.config(&format!(
        "[[device]]\naddress = \"{LONE}\"\n\n[[device]]\naddress = \"{POLARIS}\"\nfunctions = \"slot\"\n"
    ));
    let o = run(&t, &["check", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("check JSON");
    let find = |check: &str| {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check)
            .unwrap_or_else(|| panic!("{check}: {v}"))
            .clone()
    };
    let lone = find(&format!("reset {LONE}"));
    assert_eq!(lone["status"], "warn", "{lone}");
    assert!(lone["detail"]
        .as_str()
        .unwrap()
        .contains("cannot be reset between VM runs"));
    let audio = find(&format!("reset {AUDIO}"));
    assert_eq!(audio["status"], "pass", "{audio}");
    assert!(
        audio["detail"].as_str().unwrap().contains("whole slot"),
        "{audio}"
    );
    let polaris = find(&format!("reset {POLARIS}"));
    assert_eq!(polaris["status"], "warn", "{polaris}");
    assert!(
        polaris["hint"]
            .as_str()
            .unwrap()
            .contains("device_specific"),
        "{polaris}"
    );
    let words = stdout(&run(&t, &["check"]));
    assert!(words.contains(&format!("reset {LONE}")), "{words}");
}

#[test]
fn bind_writes_the_chosen_reset_method_reads_it_back_and_logs_it() {
    // The NIC already on vfio-pci: the run keeps it there, and keeps the method.
    let t = machine("6.1.0-test");
    t.bind_link(NIC, "vfio-pci");
    t.config(&format!(
        "[[device]]\naddress = \"{NIC}\"\nreset_method = [\"flr\"]\n"
    ));
    let o = run(&t, &["bind"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        t.read(&format!("sys/bus/pci/devices/{NIC}/reset_method")),
        "flr"
    );
    let kmsg = t.read("dev/kmsg");
    assert!(
        kmsg.contains(&format!("vfio-early: {NIC}: reset_method flr (was flr pm)")),
        "{kmsg}"
    );
    assert!(!kmsg.contains("restored"), "{kmsg}");
    let check = stdout(&run(&t, &["check"]));
    assert!(
        check.contains("reset_method is flr, as the config chooses"),
        "{check}"
    );
}

#[test]
fn a_rolled_back_bind_puts_the_reset_method_back() {
    // On a fixture no driver ever binds: the group is rolled back, and the method the
    // kernel listed before the write is written back.
    let t = machine("6.1.0-test");
    t.config(&format!(
        "[[device]]\naddress = \"{NIC}\"\nreset_method = [\"pm\"]\n"
    ));
    assert_eq!(run(&t, &["bind"]).status.code(), Some(0));
    let kmsg = t.read("dev/kmsg");
    assert!(
        kmsg.contains(&format!("vfio-early: {NIC}: reset_method pm (was flr pm)")),
        "{kmsg}"
    );
    assert!(
        kmsg.contains(&format!(
            "vfio-early: {NIC}: reset_method flr pm restored (not on vfio-pci)"
        )),
        "{kmsg}"
    );
    assert_eq!(
        t.read(&format!("sys/bus/pci/devices/{NIC}/reset_method")),
        "flr pm"
    );
}

#[test]
fn bind_refuses_reset_methods_the_kernel_cannot_take() {
    // device_specific without the vendor-reset module: not written, said why.
    let t = machine("6.1.0-test");
    let conf = format!(
        "[[device]]\naddress = \"{POLARIS}\"\nfunctions = \"slot\"\nreset_method = [\"device_specific\"]\n"
    );
    t.config(&conf);
    assert_eq!(run(&t, &["bind"]).status.code(), Some(0));
    assert_eq!(
        t.read(&format!("sys/bus/pci/devices/{POLARIS}/reset_method")),
        "bus\n"
    );
    let kmsg = t.read("dev/kmsg");
    assert!(
        kmsg.contains("device_specific needs the vendor_reset module"),
        "{kmsg}"
    );
    // The audio function (of the slot, not named by the entry) is left alone.
    assert!(!t
        .path(&format!("sys/bus/pci/devices/{AUDIO}/reset_method"))
        .exists());
    let record: Value = serde_json::from_str(&t.read("run/vfio-early/record.json")).unwrap();
    assert!(
        record["warnings"]
            .to_string()
            .contains("reset_method device_specific not set"),
        "{record}"
    );
    let check = stdout(&run(&t, &["check"]));
    assert!(
        check.contains("the config chooses reset_method device_specific; the kernel shows bus"),
        "{check}"
    );

    // With the module loaded, it is written (and, the card being rolled back on a
    // fixture, put back).
    let t = machine("6.1.0-test");
    t.config(&conf);
    t.file("sys/module/vendor_reset/refcnt", "0\n");
    assert_eq!(run(&t, &["bind"]).status.code(), Some(0));
    let kmsg = t.read("dev/kmsg");
    assert!(
        kmsg.contains(&format!(
            "vfio-early: {POLARIS}: reset_method device_specific (was bus)"
        )),
        "{kmsg}"
    );

    // A device the kernel found no method for, and a kernel without the attribute.
    for (release, addr, says) in [
        ("6.1.0-test", LONE, "offers no reset method for this device"),
        (
            "5.10.0-test",
            NIC,
            "Linux 5.10.0-test has no reset_method attribute (5.15+)",
        ),
    ] {
        let t = machine(release);
        t.config(&format!(
            "[[device]]\naddress = \"{addr}\"\nreset_method = [\"flr\"]\n"
        ));
        assert_eq!(run(&t, &["bind"]).status.code(), Some(0));
        assert!(!t
            .path(&format!("sys/bus/pci/devices/{addr}/reset_method"))
            .exists());
        let kmsg = t.read("dev/kmsg");
        assert!(
            kmsg.contains(&format!("{addr}: reset_method flr not set: ")) && kmsg.contains(says),
            "{kmsg}"
        );
    }
}

#[test]
fn advice_in_words_only_where_the_group_can_be_handed_over() {
    // The lone card shares its group with a host bridge's ISA function on lpc_ich: the
    // group is impossible, so its "no reset" hint is noise in words; the JSON keeps it.
    let t = machine("6.1.0-test");
    t.add(
        &Dev::new("0000:04:00.1", (0x8086, 0x3a16), 0x060100)
            .group(3)
            .driver("lpc_ich"),
    );
    let g = groups_json(&t);
    assert!(
        reset_of(&g, LONE)["hint"]
            .as_str()
            .is_some_and(|h| h.contains("no reset")),
        "{g}"
    );
    let words = stdout(&run(&t, &["groups"]));
    let group3 = words
        .split("IOMMU group ")
        .find(|s| s.starts_with("3:"))
        .unwrap_or_else(|| panic!("{words}"));
    assert!(group3.starts_with("3: impossible"), "{group3}");
    assert!(
        group3.contains("\t\treset: none (cannot be reset between VM runs)"),
        "{group3}"
    );
    assert!(!group3.contains("reset hint"), "{group3}");
    // A group that can be handed over keeps its advice.
    assert!(words.contains("\t\treset hint: AMD Polaris 10"), "{words}");
}
