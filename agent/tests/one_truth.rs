//! Issue "One truth", in the terms a user sees: every command judges a group through
//! the one planner (printed text, JSON, exit code).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod check_support;

use check_support::*;
use testing::{seed_machine, Dev, TestSysfs};

fn run(t: &TestSysfs, args: &[&str]) -> (i32, String, String) {
    let o = t.run(env!("CARGO_BIN_EXE_vfio-early"), args);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// An Intel desktop: the host bridge alone in group 0 (on skl_uncore), a root port
/// with a GPU and its audio in group 1, a NIC on a vfio variant driver sharing group 2
/// with a card on vfio-pci.
fn desktop() -> TestSysfs {
    let t = TestSysfs::new();
    for d in [
        Dev::new("0000:00:00.0", (0x8086, 0x3e30), 0x060000)
            .group(0)
            .driver("skl_uncore"),
        Dev::new("0000:00:01.0", (0x8086, 0x1901), 0x060400)
            .group(1)
            .driver("pcieport"),
        Dev::new("0000:01:00.0", (0x10de, 0x1b80), 0x030000)
            .group(1)
            .driver("nouveau"),
        Dev::new("0000:01:00.1", (0x10de, 0x10f0), 0x040300)
            .group(1)
            .driver("snd_hda_intel"),
        Dev::new("0000:03:00.0", (0x15b3, 0x101e), 0x020000)
            .group(2)
            .driver("mlx5_vfio_pci"),
        Dev::new("0000:03:00.1", (0x15b3, 0x101e), 0x020000)
            .group(2)
            .driver("vfio-pci"),
    ] {
        t.add(&d);
    }
    iommu_on(&t, "DMAR", "dmar0");
    t
}

#[test]
fn the_host_bridge_is_a_bridge_and_its_group_is_impossible_everywhere() {
    let t = desktop();
    let (code, out, _) = run(&t, &["groups"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "IOMMU group 0: impossible: only bridges (0000:00:00.0 (host bridge, on skl_uncore))"
        ),
        "{out}"
    );
    assert!(
        out.contains("driver=skl_uncore bridge"),
        "labelled a bridge: {out}"
    );
    let (_, out, _) = run(&t, &["groups", "--json", "--group", "0"]);
    let v = json(&out);
    assert_eq!(v["groups"][0]["handover"], "impossible");
    assert_eq!(v["groups"][0]["usable"], false);
    assert_eq!(v["groups"][0]["devices"][0]["bridge"], true);
    // config suggest and bind refuse it too, as a bridge.
    let (code, _, err) = run(&t, &["config", "suggest", "0000:00:00.0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a bridge (class 0x06xx"), "{err}");
    t.config("[[device]]\naddress = \"0000:00:00.0\"\n");
    let (code, out, _) = run(&t, &["bind", "--dry-run", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["devices"][0]["action"], "refuse");
}

#[test]
fn a_vfio_variant_driver_is_dma_safe_for_groups_and_the_planner() {
    let t = desktop();
    let (_, out, _) = run(&t, &["groups", "--json", "--group", "2"]);
    let v = json(&out);
    assert_eq!(v["groups"][0]["handover"], "ready", "{out}");
    assert_eq!(v["groups"][0]["usable"], true);
    // Selecting the vfio-pci function: the mlx5_vfio_pci sibling does not block it.
    t.config("[[device]]\naddress = \"0000:03:00.1\"\n");
    let (code, out, _) = run(&t, &["bind", "--dry-run", "--json", "--strict"]);
    assert_eq!(code, 0, "{out}");
    let v = json(&out);
    for d in v["devices"].as_array().unwrap() {
        assert_eq!(d["action"], "already-bound", "{d}");
    }
}

#[test]
fn a_card_on_its_host_drivers_is_possible_not_impossible() {
    let t = desktop();
    let (_, out, _) = run(&t, &["groups", "--group", "1"]);
    assert!(
        out.starts_with(
            "IOMMU group 1: possible: a config selecting 0000:01:00.0, 0000:01:00.1 hands it to vfio-pci\n"
        ),
        "{out}"
    );
    assert!(!out.contains("not usable"), "{out}");
    // What groups says to select is what config suggest proposes and the planner binds.
    let (code, out, err) = run(&t, &["config", "suggest", "--gpu", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("address = \"0000:01:00.0\""), "{out}");
    t.config(&out);
    let (_, out, _) = run(&t, &["bind", "--dry-run", "--json"]);
    let v = json(&out);
    let bound: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "bind")
        .map(|d| d["address"].as_str().unwrap())
        .collect();
    assert_eq!(bound, ["0000:01:00.0", "0000:01:00.1"]);
}

#[test]
fn gpu_numbers_and_filters_that_show_nothing_say_so() {
    let t = seed_machine(true);
    t.file("sys/firmware/acpi/tables/IVRS", "");
    let (code, out, _) = run(&t, &["groups", "--gpu"]);
    assert_eq!(code, 0);
    let gpu1 = out
        .lines()
        .find(|l| l.starts_with("\t0000:00:01.0"))
        .unwrap();
    let gpu2 = out
        .lines()
        .find(|l| l.starts_with("\t0000:01:00.0"))
        .unwrap();
    assert!(
        gpu1.ends_with(" GPU 1") && gpu2.ends_with(" GPU 2"),
        "{out}"
    );
    let (_, out, _) = run(&t, &["groups", "--gpu", "--json"]);
    assert_eq!(json(&out)["groups"][1]["devices"][1]["gpu"], 2);
    // config suggest --gpu 2 takes GPU 2.
    let (code, out, _) = run(&t, &["config", "suggest", "--gpu", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("address = \"0000:01:00.0\""), "{out}");

    let (code, out, err) = run(&t, &["groups", "--gpu", "--group", "7"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains("IOMMU group 7 has no display controller"),
        "{err}"
    );

    let (code, _, err) = run(&t, &["groups", "--device", "0000:09:00.0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no such device: no PCI device at 0000:09:00.0"),
        "{err}"
    );
    t.add(&Dev::new("0000:05:00.0", (0x8086, 0x1539), 0x020000).driver("igb"));
    let (code, _, err) = run(&t, &["groups", "--device", "0000:05:00.0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("0000:05:00.0 is not covered by the IOMMU"),
        "{err}"
    );

    let (code, _, err) = run(&t, &["config", "suggest"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--gpu N"), "{err}");
}

#[test]
fn no_iommu_exits_1_from_groups_and_config_suggest_alike() {
    let t = q35(false);
    t.file("sys/firmware/acpi/tables/IVRS", "");
    t.cmdline("amd_iommu=off\n");
    let (code, out, _) = run(&t, &["groups"]);
    assert_eq!(code, 1, "{out}");
    for args in [
        &["config", "suggest", "--gpu", "1"][..],
        &["config", "suggest", "0000:01:00.0"][..],
    ] {
        let (code, _, err) = run(&t, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("remove amd_iommu=off"), "{args:?}: {err}");
        assert!(
            !err.contains("intel_iommu"),
            "no Intel advice on AMD: {err}"
        );
        assert!(!err.contains("move the card"), "moving cannot help: {err}");
    }
    let (code, _, _) = run(&t, &["groups", "--bogus"]);
    assert_eq!(code, 2, "a usage error exits 2 in groups as in config");
    let (code, _, _) = run(&t, &["config", "suggest", "--bogus"]);
    assert_eq!(code, 2);
}

#[test]
fn json_exit_is_the_process_exit_code() {
    let t = desktop();
    let (code, out, _) = run(&t, &["check", "--json", "--config", "/nonexistent.toml"]);
    assert_eq!(code, 2, "a config that cannot be read is a config error");
    assert_eq!(json(&out)["exit"], 2);
    let (code, out, _) = run(&t, &["check", "--json"]);
    assert_eq!(json(&out)["exit"], code);
}
