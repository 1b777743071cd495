//! The built binary: `check` and `groups` exit codes, JSON on stdout, NO_COLOR.

mod check_support;

use check_support::*;

fn run(root: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = testing::run_at(env!("CARGO_BIN_EXE_vfio-early"), root, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_exit_codes_0_1_2() {
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    t.file("dev/kmsg", &intel_log());
    t.cmdline("intel_iommu=on\n");
    let (code, out, _) = run(t.root(), &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pass  iommu "), "{out}");
    assert!(!out.contains('\x1b'), "NO_COLOR and not a tty: no colour");

    t.cmdline("intel_iommu=on iommu=off\n");
    let (code, out, _) = run(t.root(), &["check", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["exit"], 1);
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["check"] == "cmdline iommu" && f["status"] == "fail"));

    t.config("[[device]]\nadress = \"0000:01:00.0\"\n");
    let (code, out, _) = run(t.root(), &["check"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("vfio-early.toml:2:1"), "{out}");

    let (code, _, err) = run(t.root(), &["check", "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn groups_output_and_exit_codes() {
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    let (code, out, _) = run(t.root(), &["groups", "--gpu"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("IOMMU group 2: possible: a config selecting 0000:00:04.0 hands it to vfio-pci (its entries need allow_boot_vga = true)"),
        "{out}"
    );
    assert!(
        out.contains(
            "IOMMU group 4: possible: a config selecting 0000:01:00.0, 0000:01:00.1 hands"
        ),
        "{out}"
    );
    assert!(
        !out.contains("IOMMU group 5"),
        "--gpu keeps display groups only: {out}"
    );

    let (code, out, _) = run(t.root(), &["groups", "--json", "--device", "0000:01:00.1"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["groups"].as_array().unwrap().len(), 1);
    assert_eq!(v["groups"][0]["group"], 4);

    let (code, _, err) = run(t.root(), &["groups", "--group", "99"]);
    assert_eq!(code, 2, "a group that does not exist is a usage error");
    assert!(err.contains("no IOMMU group 99"), "{err}");
    let (code, _, _) = run(t.root(), &["groups", "--device", "0000:01:00"]);
    assert_eq!(code, 2, "a malformed address is a usage error");

    let off = q35(false);
    off.file("sys/firmware/acpi/tables/DMAR", "");
    let (code, out, _) = run(off.root(), &["groups"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("No IOMMU groups") && out.contains("intel_iommu=on"),
        "{out}"
    );
}
