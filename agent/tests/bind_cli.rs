//! The built binary against fixture trees: dry runs, a real run that must roll back,
//! the kill switch, bad configs.

use std::process::Output;

use serde_json::Value;
use testing::{seed_machine, Dev, TestSysfs};

fn run(t: &TestSysfs, args: &[&str]) -> Output {
    t.run(env!("CARGO_BIN_EXE_vfio-early"), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dry_json(t: &TestSysfs) -> Value {
    let o = run(t, &["bind", "--dry-run", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("JSON plan")
}

fn entry<'a>(plan: &'a Value, addr: &str) -> &'a Value {
    plan["devices"]
        .as_array()
        .expect("devices array")
        .iter()
        .find(|d| d["address"] == addr)
        .unwrap_or_else(|| panic!("{addr} missing: {plan}"))
}

const GPU_SLOT: &str = "[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n";

#[test]
fn dry_run_json_contract_on_the_seed_machine_in_both_states() {
    for booted in [true, false] {
        let t = seed_machine(booted);
        t.config(GPU_SLOT);
        let plan = dry_json(&t);
        assert_eq!(plan["version"], 1);
        let devices = plan["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 3, "{plan}");
        for d in devices {
            for key in ["address", "iommu_group", "action", "reasons"] {
                assert!(d.get(key).is_some(), "{key} missing in {d}");
            }
            assert!(d["reasons"].is_array());
        }
        assert_eq!(entry(&plan, "0000:01:00.0")["action"], "bind");
        assert_eq!(entry(&plan, "0000:01:00.1")["action"], "bind");
        assert_eq!(entry(&plan, "0000:00:02.0")["action"], "skip");
        assert_eq!(entry(&plan, "0000:01:00.0")["iommu_group"], 1);
        assert!(plan["hugepages"].is_array());
        // A dry run writes nothing: no record, no kernel log line, no override.
        assert!(!t.path("run/vfio-early").exists());
        assert_eq!(t.read("dev/kmsg"), "");
        assert_eq!(
            t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
            "(null)\n"
        );
    }
}

#[test]
fn dry_run_refuses_the_azalia_alone_naming_its_group() {
    for booted in [true, false] {
        let t = seed_machine(booted);
        t.config("[[device]]\naddress = \"0000:00:14.2\"\n");
        let plan = dry_json(&t);
        let why = entry(&plan, "0000:00:14.2")["reasons"].to_string();
        assert_eq!(entry(&plan, "0000:00:14.2")["action"], "refuse");
        for other in ["0000:00:14.0", "0000:00:14.1", "0000:00:14.3"] {
            assert!(why.contains(other), "{why}");
        }
        let human = stdout(&run(&t, &["bind", "--dry-run"]));
        assert!(
            human.contains("IOMMU group 7") && human.contains("refuse"),
            "{human}"
        );
        assert_eq!(
            run(&t, &["bind", "--dry-run", "--strict"]).status.code(),
            Some(1)
        );
    }
}

#[test]
fn real_run_on_a_plain_fixture_rolls_back_and_clears_every_override() {
    let t = seed_machine(true);
    t.driver("vfio-pci");
    t.config(GPU_SLOT);
    let o = run(&t, &["bind"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "bind never fails the boot: {}",
        stderr(&o)
    );
    for a in ["0000:01:00.0", "0000:01:00.1"] {
        let ov = t.read(&format!("sys/bus/pci/devices/{a}/driver_override"));
        assert_eq!(ov.trim(), "", "{a}: {ov:?}");
    }
    let kmsg = t.read("dev/kmsg");
    assert!(kmsg.lines().all(|l| l.contains("vfio-early: ")), "{kmsg}");
    assert!(kmsg.contains("rolled back"), "{kmsg}");
    assert!(
        kmsg.lines().any(|l| l.starts_with("<11>")),
        "an error-level record: {kmsg}"
    );
    let record: Value = serde_json::from_str(&t.read("run/vfio-early/record.json")).unwrap();
    let outcomes: Vec<&str> = record["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["outcome"].as_str())
        .collect();
    assert!(outcomes.contains(&"rolled-back"), "{record}");
    assert_eq!(record["config_text"], GPU_SLOT);
    assert_eq!(run(&t, &["bind", "--strict"]).status.code(), Some(1));
}

#[test]
fn second_run_on_a_bound_group_changes_nothing() {
    let t = TestSysfs::new();
    t.add(
        &Dev::new("0000:00:02.0", (0x1022, 0x1412), 0x060400)
            .group(1)
            .driver("pcieport"),
    );
    t.add(
        &Dev::new("0000:01:00.0", (0x1002, 0x6779), 0x030000)
            .group(1)
            .driver("vfio-pci"),
    );
    t.add(
        &Dev::new("0000:01:00.1", (0x1002, 0xaa98), 0x040300)
            .group(1)
            .driver("vfio-pci"),
    );
    t.aliases("alias pci:v00001002d00006779sv*sd*bc*sc*i* radeon\n");
    t.config(GPU_SLOT);
    let plan = dry_json(&t);
    assert_eq!(entry(&plan, "0000:01:00.0")["action"], "already-bound");
    let o = run(&t, &["bind", "--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
        "(null)\n"
    );
    assert_eq!(t.read("sys/bus/pci/drivers_probe"), "");
}

#[test]
fn kill_switch_touches_nothing_and_says_so_once() {
    for param in [
        "vfio_early=off",
        "vfio-early=0",
        "rd.vfio_early=0",
        "vfio_early=no",
    ] {
        let t = seed_machine(true);
        t.driver("vfio-pci");
        t.config(GPU_SLOT);
        t.cmdline(&format!("root=/dev/sda1 quiet {param}\n"));
        let o = run(&t, &["bind"]);
        assert_eq!(o.status.code(), Some(0));
        let kmsg = t.read("dev/kmsg");
        assert_eq!(kmsg.lines().count(), 1, "{kmsg}");
        assert!(
            kmsg.contains("disabled by") && kmsg.contains(param),
            "{kmsg}"
        );
        assert_eq!(
            t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
            "(null)\n"
        );
        assert_eq!(t.read("sys/bus/pci/drivers/radeon/unbind"), "");
    }
}

#[test]
fn malformed_config_names_the_line_and_the_boot_goes_on() {
    let t = seed_machine(true);
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nfunctoins = \"slot\"\n");
    let o = run(&t, &["bind"]);
    assert_eq!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(err.contains("etc/vfio-early.toml:3:"), "{err}");
    assert!(err.contains("functoins"), "{err}");
    assert!(t.read("dev/kmsg").contains("etc/vfio-early.toml:3:"));
    assert_eq!(
        t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
        "(null)\n"
    );
    assert_eq!(run(&t, &["bind", "--strict"]).status.code(), Some(2));
    let plan = dry_json(&t);
    assert!(
        plan["config_error"].as_str().unwrap().contains(":3:"),
        "{plan}"
    );
}

#[test]
fn missing_config_is_quiet_and_explicit_missing_config_is_an_error() {
    let t = seed_machine(true);
    let o = run(&t, &["bind", "--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(t.read("dev/kmsg").contains("no config"));
    // Testing a config that is not there is a config error.
    let o = run(&t, &["bind", "--dry-run", "--strict"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("etc/vfio-early.toml"), "{}", stderr(&o));
    assert_eq!(run(&t, &["bind", "--dry-run"]).status.code(), Some(0));
    let o = run(
        &t,
        &["bind", "--strict", "--config", "/nonexistent/vfio.toml"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/vfio.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn no_iommu_refuses_with_the_command_line_hint() {
    let t = TestSysfs::new();
    t.add(&Dev::new("0000:01:00.0", (0x10de, 0x1b80), 0x030000).driver("nouveau"));
    t.config("[[device]]\nid = \"10de:1b80\"\n");
    let plan = dry_json(&t);
    assert_eq!(entry(&plan, "0000:01:00.0")["action"], "refuse");
    assert!(entry(&plan, "0000:01:00.0")["reasons"]
        .to_string()
        .contains("intel_iommu=on"));
}

#[test]
fn usage_errors_exit_2() {
    let t = TestSysfs::new();
    assert_eq!(run(&t, &["bind", "--bogus"]).status.code(), Some(2));
    assert_eq!(
        run(&t, &["bind", "--json"]).status.code(),
        Some(2),
        "--json needs --dry-run"
    );
}

#[test]
fn verbose_traces_every_step_of_a_rollback_with_its_time() {
    let t = seed_machine(true);
    t.driver("vfio-pci");
    t.config(GPU_SLOT);
    let o = run(&t, &["bind", "-v"]);
    let err = stderr(&o);
    for step in [
        "0000:01:00.0: driver_override <- vfio-pci",
        "0000:01:00.0: unbinding from radeon",
        "0000:01:00.1: drivers_probe",
        "verifying the driver links of 2 device(s)",
        "rolling back 2 device(s)",
        "0000:01:00.0: clearing driver_override",
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(&format!(" ms {step}")))
            .unwrap_or_else(|| panic!("no step {step:?} in\n{err}"));
        // `vfio-early:  12.345 ms <step>`: the time since the start.
        let time = line["vfio-early:".len()..].trim_start();
        let (ms, _) = time.split_once(" ms ").expect("a time in ms");
        assert!(ms.parse::<f64>().is_ok(), "{line}");
    }
    // Without -v: no trace.
    let quiet = stderr(&run(&t, &["bind"]));
    assert!(!quiet.contains("driver_override <-"), "{quiet}");
    // -vv adds the polls of the driver links.
    let vv = stderr(&run(&t, &["bind", "-vv"]));
    assert!(vv.contains("waiting for 2 driver link(s)"), "{vv}");
}

#[test]
fn dry_run_shows_each_group_once() {
    let t = TestSysfs::new();
    for d in [
        Dev::new("0000:00:02.0", (0x8086, 0x1901), 0x060400)
            .group(1)
            .driver("pcieport"),
        Dev::new("0000:00:03.0", (0x8086, 0x10d3), 0x020000).group(2),
        Dev::new("0000:01:00.0", (0x10de, 0x1b80), 0x030000).group(1),
    ] {
        t.add(&d);
    }
    t.config("[[device]]\naddress = \"0000:00:03.0\"\n\n[[device]]\naddress = \"0000:01:00.0\"\n");
    let out = stdout(&run(&t, &["bind", "--dry-run"]));
    assert_eq!(out.matches("IOMMU group 1\n").count(), 1, "{out}");
    let g1 = out.find("IOMMU group 1\n").unwrap();
    let g2 = out.find("IOMMU group 2\n").unwrap();
    let bridge = out.find("0000:00:02.0").unwrap();
    let gpu = out.find("0000:01:00.0").unwrap();
    let nic = out.find("0000:00:03.0").unwrap();
    assert!(g1 < bridge && bridge < gpu && gpu < g2 && g2 < nic, "{out}");
}

#[test]
fn once_runs_the_first_boot_run_only() {
    let t = seed_machine(true);
    t.config(GPU_SLOT);
    t.cmdline("vfio_early=off\n");
    // The first run of the boot does the work (here: says it is switched off) ...
    assert_eq!(run(&t, &["bind", "--once"]).status.code(), Some(0));
    let kmsg = t.read("dev/kmsg");
    assert_eq!(
        kmsg.matches("disabled by vfio_early=off").count(),
        1,
        "{kmsg}"
    );
    // ... the backstop's later runs do nothing and say nothing.
    for _ in 0..3 {
        let o = run(&t, &["bind", "--once"]);
        assert_eq!(o.status.code(), Some(0));
        assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    }
    assert_eq!(t.read("dev/kmsg"), kmsg);
    // A run without --once (a person at the shell) always runs.
    run(&t, &["bind"]);
    assert_eq!(t.read("dev/kmsg").matches("disabled by").count(), 2);
}
