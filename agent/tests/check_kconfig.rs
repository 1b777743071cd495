//! The built `vfio-early check-kconfig` against the real configs in `tests/kconfig/`
//! and fixture roots: exit codes, JSON, fragment, default sources, `--cpu auto`.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/kconfig")
}

fn real(stem: &str) -> String {
    configs()
        .join(format!("{stem}.config"))
        .display()
        .to_string()
}

fn run(root: &Path, args: &[&str]) -> Output {
    let args: Vec<&str> = std::iter::once("check-kconfig")
        .chain(args.iter().copied())
        .collect();
    testing::run_at(env!("CARGO_BIN_EXE_vfio-early"), root, &args)
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// Exit status and verdict per real config, as `tests/kconfig/README.md` concludes.
#[test]
fn real_configs_exit_codes_and_verdicts() {
    let root = tempfile::tempdir().unwrap();
    for (stem, code, verdict) in [
        ("debian12_linux-6.1.192-2_amd64", 0, "pass"),
        ("arch_linux-6.17.5-arch1_x86_64", 0, "warn"),
        ("fedora-rawhide_6.18.0-0.rc3.fc44_x86_64", 0, "warn"),
        ("gentoo_5.15.32-gentoo-r1_adippl-kvm", 1, "fail"),
        ("gentoo_4.6.0-gentoo_x230", 1, "fail"),
        ("debian12_linux-6.1.192-3_arm64", 0, "pass"),
    ] {
        let human = run(root.path(), &[&real(stem)]);
        assert_eq!(human.status.code(), Some(code), "{stem}");
        let text = String::from_utf8(human.stdout).unwrap();
        assert!(!text.contains('\x1b'), "no colour when piped");
        assert!(
            text.starts_with(&format!("Kernel config: {}", real(stem))),
            "{text}"
        );
        let o = run(root.path(), &[&real(stem), "--json"]);
        assert_eq!(o.status.code(), Some(code), "{stem}");
        let v = json(&o);
        assert_eq!(v["verdict"], verdict, "{stem}");
        assert_eq!(v["schema"], 1);
        assert!(v["findings"].as_array().unwrap().len() > 30);
    }
}

/// Debian 12's arm64 config: exit 0 as shipped, exit 1 naming ARM_GIC_V3_ITS when it
/// is unset; `--cpu intel` on it says it does not apply.
#[test]
fn debian_arm64_config_and_the_its() {
    let root = tempfile::tempdir().unwrap();
    let stem = "debian12_linux-6.1.192-3_arm64";
    let ok = run(root.path(), &[&real(stem), "--cpu", "intel"]);
    assert_eq!(ok.status.code(), Some(0));
    let text = String::from_utf8(ok.stdout).unwrap();
    assert!(
        text.contains("CPU vendor: does not apply (arm64)"),
        "{text}"
    );
    assert!(
        text.contains("note: --cpu intel does not apply to this arm64 config"),
        "{text}"
    );
    assert!(text.contains("PASS    ARM_GIC_V3_ITS"), "{text}");
    let shipped = std::fs::read_to_string(configs().join(format!("{stem}.config"))).unwrap();
    let unset = shipped.replace(
        "CONFIG_ARM_GIC_V3_ITS=y\n",
        "# CONFIG_ARM_GIC_V3_ITS is not set\n",
    );
    assert_ne!(unset, shipped);
    write(root.path(), "noits.config", unset.as_bytes());
    let path = root.path().join("noits.config").display().to_string();
    let fail = run(root.path(), &[&path]);
    assert_eq!(fail.status.code(), Some(1));
    let text = String::from_utf8(fail.stdout).unwrap();
    assert!(text.contains("FAIL    ARM_GIC_V3_ITS"), "{text}");
    let j = json(&run(root.path(), &[&path, "--json"]));
    assert_eq!(j["verdict"], "fail");
    assert_eq!(j["cpu"], "n/a");
    let its = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["option"] == "ARM_GIC_V3_ITS")
        .unwrap();
    assert_eq!(
        (&its["status"], &its["state"]),
        (&Value::from("fail"), &Value::from("n"))
    );
}

#[test]
fn fragment_for_the_x230() {
    let root = tempfile::tempdir().unwrap();
    let o = run(
        root.path(),
        &[&real("gentoo_4.6.0-gentoo_x230"), "--fragment"],
    );
    assert_eq!(o.status.code(), Some(1));
    let frag = String::from_utf8(o.stdout).unwrap();
    let set: Vec<&str> = frag.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        set,
        ["CONFIG_IRQ_REMAP=y", "CONFIG_VFIO=m", "CONFIG_VFIO_PCI=m"],
        "{frag}"
    );
}

/// Without PATH the running kernel's config is found under the root, gzip included,
/// and `--cpu auto` reads the ACPI tables under the root.
#[test]
fn default_sources_and_auto_cpu() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let none = run(r, &[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no kernel config found"));

    write(r, "proc/sys/kernel/osrelease", b"6.17.5-arch1\n");
    let arch = std::fs::read(real("arch_linux-6.17.5-arch1_x86_64")).unwrap();
    write(r, "boot/config-6.17.5-arch1", &arch);
    let v = json(&run(r, &["--json"]));
    assert!(
        v["source"]
            .as_str()
            .unwrap()
            .ends_with("boot/config-6.17.5-arch1"),
        "{}",
        v["source"]
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(real("gentoo_5.15.32-gentoo-r1_adippl-kvm")).unwrap())
        .unwrap();
    write(r, "proc/config.gz", &gz.finish().unwrap());
    let o = run(r, &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert!(v["source"].as_str().unwrap().ends_with("proc/config.gz"));
    assert_eq!(v["kernel"]["release"], "5.15.32-gentoo-r1");
    // Another release than the running one: its /boot file, not /proc/config.gz.
    let v = json(&run(r, &["--json", "--kver", "6.17.5-arch1"]));
    assert!(
        v["source"].as_str().unwrap().ends_with("proc/config.gz"),
        "same release as running"
    );
    write(r, "proc/sys/kernel/osrelease", b"5.15.32-gentoo-r1\n");
    let v = json(&run(r, &["--json", "--kver", "6.17.5-arch1"]));
    assert!(
        v["source"]
            .as_str()
            .unwrap()
            .ends_with("boot/config-6.17.5-arch1"),
        "{}",
        v["source"]
    );

    let v = json(&run(r, &["--json", "--cpu", "auto"]));
    assert_eq!(v["cpu"], "any");
    write(r, "sys/firmware/acpi/tables/IVRS", b"IVRS");
    let v = json(&run(r, &["--json", "--cpu", "auto"]));
    assert_eq!(v["cpu"], "amd");
    let intel = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["option"] == "INTEL_IOMMU")
        .unwrap();
    assert_eq!(intel["status"], "n/a");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let root = tempfile::tempdir().unwrap();
    let o = run(root.path(), &["/nonexistent/.config"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/.config"));
    assert_eq!(run(root.path(), &["--cpu", "via"]).status.code(), Some(2));
    assert_eq!(
        run(
            root.path(),
            &["--json", "--fragment", &real("gentoo_4.6.0-gentoo_x230")]
        )
        .status
        .code(),
        Some(2)
    );
    // A damaged gzip stream is an I/O error, not an empty config.
    write(root.path(), "bad.gz", &[0x1f, 0x8b, 8, 0, 0, 0]);
    let bad = root.path().join("bad.gz").display().to_string();
    let o = run(root.path(), &[&bad]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("gzip"));
}

/// A headless config takes its version from --kver.
#[test]
fn kver_supplies_a_missing_header() {
    let root = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(real("arch_linux-6.17.5-arch1_x86_64")).unwrap();
    let headless: String = text
        .lines()
        .filter(|l| !l.contains("Kernel Configuration"))
        .map(|l| format!("{l}\n"))
        .collect();
    write(root.path(), "headless.config", headless.as_bytes());
    let path = root.path().join("headless.config").display().to_string();
    let v = json(&run(root.path(), &[&path, "--json"]));
    assert_eq!(v["kernel"]["version_source"], "unknown");
    let v = json(&run(
        root.path(),
        &[&path, "--json", "--kver", "6.17.5-arch1"],
    ));
    assert_eq!(v["kernel"]["version_source"], "kver");
    let v2 = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["option"] == "AMD_IOMMU_V2")
        .unwrap();
    assert_eq!(v2["status"], "n/a");
}
