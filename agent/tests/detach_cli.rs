//! `detach`, `reattach` and `hook libvirt` over fixture roots: the planner's refusals
//! leave everything untouched, the JSON is the bind plan's, the hook's argv is
//! libvirt's, and a device vfio-early did not detach is left alone.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use testing::{seed_machine, TestSysfs};

const BIN: &str = env!("CARGO_BIN_EXE_vfio-early");

fn run(t: &TestSysfs, args: &[&str]) -> Output {
    t.run(BIN, args)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the hook as libvirt does: four arguments, the domain XML on stdin.
fn hook(t: &TestSysfs, extra: &[&str], argv: [&str; 4], xml: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(t.root())
        .args(["hook", "libvirt"])
        .args(extra)
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A no-op operation may exit without reading: a closed pipe is fine then.
    let _ = child.stdin.take().expect("stdin").write_all(xml.as_bytes());
    child.wait_with_output().expect("wait")
}

fn domain(hostdevs: &str) -> String {
    format!(
        "<domain type='kvm'><name>win10</name><uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid>\
         <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{hostdevs}</devices></domain>"
    )
}

fn hostdev(bus: &str, function: &str, managed: &str) -> String {
    format!(
        "<hostdev mode='subsystem' type='pci' managed='{managed}'><source>\
         <address domain='0x0000' bus='{bus}' slot='0x00' function='{function}'/></source></hostdev>"
    )
}

fn keys(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    v.as_object().expect("object").keys().cloned().collect()
}

#[test]
fn the_detach_json_is_the_bind_plans_json() {
    let t = seed_machine(true);
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n");
    let bind = run(&t, &["bind", "--dry-run", "--json"]);
    let det = run(
        &t,
        &["detach", "--slot", "--dry-run", "--json", "0000:01:00.0"],
    );
    assert_eq!(det.status.code(), Some(0), "{}{}", out(&det), err(&det));
    let (b, d) = (keys(&out(&bind)), keys(&out(&det)));
    for k in &b {
        assert!(
            d.contains(k),
            "detach JSON lacks the bind plan's key {k}: {d:?}"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&out(&det)).unwrap();
    let actions: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["skip", "bind", "bind"], "{v}");
    assert_eq!(
        t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
        "(null)\n"
    );
}

#[test]
fn a_group_needing_more_is_refused_naming_it_and_left_untouched() {
    let t = seed_machine(true);
    t.driver("vfio-pci");
    let o = run(&t, &["detach", "0000:01:00.0"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let text = out(&o);
    assert!(
        text.contains("refused") && text.contains("0000:01:00.1"),
        "{text}"
    );
    assert!(text.contains("nothing was detached"), "{text}");
    for a in ["0000:01:00.0", "0000:01:00.1"] {
        assert_eq!(
            t.read(&format!("sys/bus/pci/devices/{a}/driver_override")),
            "(null)\n"
        );
    }
    assert_eq!(t.read("sys/bus/pci/drivers/radeon/unbind"), "");
    assert!(!t.path("run/vfio-early/detached.json").exists());
}

#[test]
fn no_such_device_is_a_usage_error() {
    let t = seed_machine(true);
    let o = run(&t, &["detach", "0000:42:00.0"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("no device at 0000:42:00.0"));
    let o = run(&t, &["detach", "../../0000:01:00.0"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn reattach_leaves_alone_a_device_it_never_detached() {
    let t = seed_machine(true);
    t.bind_link("0000:01:00.0", "vfio-pci");
    let o = run(&t, &["reattach", "0000:01:00.0"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("left alone"), "{}", out(&o));
    assert_eq!(t.read("sys/bus/pci/drivers/vfio-pci/unbind"), "");
    let o = run(
        &t,
        &["reattach", "--dry-run", "--json", "--force", "0000:01:00.0"],
    );
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["devices"][0]["action"], "reattach", "{v}");
}

#[test]
fn the_libvirt_hook_ignores_other_operations_and_refuses_a_partial_group() {
    let t = seed_machine(true);
    t.driver("vfio-pci");
    for (op, sub) in [
        ("start", "begin"),
        ("started", "begin"),
        ("stopped", "end"),
        ("migrate", "begin"),
    ] {
        let o = hook(&t, &[], ["win10", op, sub, "-"], "not xml at all");
        assert_eq!(o.status.code(), Some(0), "{op} {sub}: {}", err(&o));
    }
    // Only the display function, unmanaged: the group needs its audio function too.
    let xml = domain(&hostdev("0x01", "0x0", "no"));
    let o = hook(&t, &[], ["win10", "prepare", "begin", "-"], &xml);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("0000:01:00.1"), "{}", err(&o));
    assert_eq!(
        t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
        "(null)\n"
    );
    // managed='yes' hostdevs are libvirt's own unless the config says otherwise.
    let xml = domain(&hostdev("0x01", "0x0", "yes"));
    let o = hook(&t, &[], ["win10", "prepare", "begin", "-"], &xml);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    t.config("[handover]\nlibvirt_managed = true\n");
    let o = hook(&t, &[], ["win10", "prepare", "begin", "-"], &xml);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    // Both functions, as a dry run with JSON: the bind plan's document.
    let xml = domain(&(hostdev("1", "0", "no") + &hostdev("0x01", "0x1", "no")));
    let o = hook(
        &t,
        &["--dry-run", "--json"],
        ["win10", "prepare", "begin", "-"],
        &xml,
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["devices"].as_array().unwrap().len(), 3, "{v}");
    // A broken document on prepare is a refusal (libvirt must not start the domain).
    let o = hook(&t, &[], ["win10", "prepare", "begin", "-"], "<domain>");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("domain XML"), "{}", err(&o));
}

#[test]
fn detach_waits_for_the_lock_bind_holds_and_gives_up_within_its_bound() {
    let t = seed_machine(true);
    t.config("[bind]\ntimeout_ms = 50\n");
    let host = vfio_early::host::Host::new(t.root());
    let held = host.lock(std::time::Duration::from_secs(1)).expect("lock");
    let o = run(&t, &["detach", "--slot", "0000:01:00.0"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("holds the lock"), "{}", out(&o));
    assert_eq!(
        t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
        "(null)\n"
    );
    drop(held);
    let o = run(&t, &["bind", "--strict"]);
    assert!(!err(&o).contains("another vfio-early run"), "{}", err(&o));
}

#[test]
fn check_asks_the_kernel_only_on_the_live_system() {
    let t = seed_machine(true);
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n");
    t.bind_link("0000:01:00.0", "vfio-pci");
    t.bind_link("0000:01:00.1", "vfio-pci");
    t.file("dev/vfio/vfio", "");
    t.file("dev/vfio/1", "");
    let o = run(&t, &["check", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).expect("json");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "vfio group 1")
        .unwrap_or_else(|| panic!("no vfio group 1 finding: {v}"));
    assert_eq!(f["status"], "info", "{f}");
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("not the live system"),
        "{f}"
    );
}
