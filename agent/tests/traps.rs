//! Host-level traps as plan warnings, in the terms a user sees: the same sentence from
//! `bind --dry-run` (JSON `warnings`), `config suggest` (stderr), `apply` (first, and
//! no rebuild over a boot that would differ from the plan) and `check` (a finding).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use testing::{Dev, TestSysfs};

const BIN: &str = env!("CARGO_BIN_EXE_vfio-early");
const CARD_A: &str = "[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n";

fn run(t: &TestSysfs, args: &[&str]) -> (i32, String, String) {
    let o = t.run(BIN, args);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// Two identical cards (a GPU and its audio each, own groups), the config selecting
/// card A, mkinitcpio installed with the vfio-early hook, `--root` not `/`.
fn twins() -> TestSysfs {
    let t = TestSysfs::new();
    for (slot, g) in [("01", 1), ("02", 2)] {
        t.add(
            &Dev::new(&format!("0000:{slot}:00.0"), (0x10de, 0x1b80), 0x030000)
                .group(g)
                .driver("nouveau"),
        );
        t.add(
            &Dev::new(&format!("0000:{slot}:00.1"), (0x10de, 0x10f0), 0x040300)
                .group(g)
                .driver("snd_hda_intel"),
        );
    }
    t.file("sys/firmware/acpi/tables/DMAR", "");
    t.file("sys/class/iommu/dmar0/x", "");
    t.config(CARD_A);
    for bin in ["usr/bin/vfio-early", "usr/bin/mkinitcpio"] {
        t.file(bin, "#!/bin/sh\nexit 0\n");
        fs::set_permissions(t.path(bin), fs::Permissions::from_mode(0o755)).unwrap();
    }
    t.file("usr/lib/initcpio/functions", "");
    t.file("usr/lib/initcpio/install/vfio-early", "");
    t.file(
        "etc/mkinitcpio.conf",
        "HOOKS=(base systemd vfio-early autodetect modconf kms block filesystems)\n",
    );
    t.file(&format!("lib/modules/{}/modules.dep", testing::RELEASE), "");
    t
}

/// The warnings of `bind --dry-run --json`, its `config suggest` stderr lines, its
/// `apply --dry-run` result, and the check findings: the four views of one trap.
struct Views {
    dry_run: Vec<String>,
    suggest_stderr: String,
    apply: (i32, String, String),
    check: serde_json::Value,
}

fn views(t: &TestSysfs) -> Views {
    let (code, out, _) = run(t, &["bind", "--dry-run", "--json"]);
    assert_eq!(code, 0, "warnings never change bind's exit code");
    let dry_run = json(&out)["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect();
    let (code, _, suggest_stderr) = run(t, &["config", "suggest", "0000:01:00.0"]);
    assert_eq!(
        code, 0,
        "warnings never change the exit code: {suggest_stderr}"
    );
    let apply = run(t, &["apply", "--dry-run"]);
    let (_, out, _) = run(t, &["check", "--json"]);
    Views {
        dry_run,
        suggest_stderr,
        apply,
        check: json(&out),
    }
}

/// Asserts one trap is shown alike everywhere: `needle` is in one dry-run warning,
/// and that whole warning is a `warning:` line of config suggest and apply, and the
/// finding `check_name` of check with `status`.
fn shown_alike(v: &Views, needle: &str, check_name: &str, status: &str) -> String {
    let w = v
        .dry_run
        .iter()
        .find(|w| w.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {:?}", v.dry_run))
        .clone();
    let line = format!("warning: {w}\n");
    assert!(
        v.suggest_stderr.contains(&line),
        "suggest: {}",
        v.suggest_stderr
    );
    assert!(
        v.apply.2.starts_with("warning: "),
        "apply warns first: {}",
        v.apply.2
    );
    assert!(v.apply.2.contains(&line), "apply: {}", v.apply.2);
    let f = v.check["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check_name && w.starts_with(f["detail"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("no {check_name} finding for {w:?}: {}", v.check));
    assert_eq!(f["status"], status, "{f}");
    w
}

#[test]
fn vfio_pci_ids_on_the_command_line_taking_the_identical_card() {
    let t = twins();
    t.cmdline("intel_iommu=on vfio-pci.ids=10de:1b80,10de:10f0\n");
    let v = views(&t);
    let w = shown_alike(
        &v,
        "vfio-pci.ids=10de:1b80 also takes 0000:02:00.0",
        "cmdline vfio-pci.ids",
        "fail",
    );
    assert!(w.contains("identical-device trap"), "{w}");
    shown_alike(
        &v,
        "vfio-pci.ids=10de:10f0 also takes 0000:02:00.1",
        "cmdline vfio-pci.ids",
        "fail",
    );
    // apply does not rebuild an image that would boot differently, unless --force.
    assert_eq!(v.apply.0, 1, "{}", v.apply.2);
    assert!(
        v.apply.2.contains("the initramfs was not rebuilt"),
        "{}",
        v.apply.2
    );
    assert!(!v.apply.1.contains("would run"), "{}", v.apply.1);
    let (code, out, _) = run(&t, &["apply", "--dry-run", "--force"]);
    assert_eq!(code, 0);
    assert!(out.contains("would run: mkinitcpio -P"), "{out}");
    assert_eq!(v.check["exit"], 1);
}

#[test]
fn options_vfio_pci_ids_in_modprobe_d_is_the_same_trap() {
    let t = twins();
    t.file(
        "etc/modprobe.d/vfio.conf",
        "options vfio-pci ids=10de:1b80\n",
    );
    let v = views(&t);
    let w = shown_alike(
        &v,
        "options vfio-pci ids=10de:1b80 in /etc/modprobe.d/vfio.conf also takes 0000:02:00.0",
        "modprobe.d vfio-pci ids",
        "fail",
    );
    assert!(
        w.contains("remove `options vfio-pci ids=` from /etc/modprobe.d/vfio.conf"),
        "{w}"
    );
    assert_eq!(v.apply.0, 1);
    // The command line overrides modprobe.d (modprobe applies it last).
    t.cmdline("vfio-pci.ids=10de:ffff\n");
    let v = views(&t);
    assert!(v.dry_run.is_empty(), "{:?}", v.dry_run);
}

#[test]
fn pcie_acs_override_is_a_caution_everywhere_groups_included() {
    let t = twins();
    t.cmdline("intel_iommu=on pcie_acs_override=downstream,multifunction\n");
    let v = views(&t);
    let w = shown_alike(
        &v,
        "pcie_acs_override=downstream,multifunction",
        "cmdline acs override",
        "warn",
    );
    assert!(w.contains("not real isolation"), "{w}");
    assert_eq!(v.apply.0, 0, "a caution does not stop apply: {}", v.apply.2);
    let (code, out, err) = run(&t, &["groups", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["warnings"][0], w.as_str());
    assert!(err.contains(&format!("warning: {w}\n")), "{err}");
}

#[test]
fn a_host_driver_that_wins_the_race() {
    for (what, setup) in [
        ("nouveau is built into the kernel", 0),
        ("rd.driver.pre=nouveau loads it before the hook", 1),
        (
            "force_drivers in /etc/dracut.conf.d/gpu.conf loads nouveau early",
            2,
        ),
    ] {
        let t = twins();
        match setup {
            0 => {
                t.file(
                    &format!("lib/modules/{}/modules.builtin", testing::RELEASE),
                    "kernel/drivers/gpu/drm/nouveau/nouveau.ko\n",
                );
            }
            1 => {
                t.cmdline("intel_iommu=on rd.driver.pre=nouveau\n");
            }
            _ => {
                t.file(
                    "etc/dracut.conf.d/gpu.conf",
                    "force_drivers+=\" nouveau \"\n",
                );
            }
        }
        let v = views(&t);
        let w = shown_alike(&v, what, "race 0000:01:00.0", "warn");
        assert!(
            w.starts_with("0000:01:00.0: a host driver wins the race"),
            "{w}"
        );
        assert!(
            w.contains("the agent will have to unbind it at boot"),
            "{w}"
        );
        assert_eq!(v.dry_run.len(), 1, "only the GPU's driver: {:?}", v.dry_run);
    }
}

#[test]
fn mkinitcpio_hooks_with_vfio_early_after_udev_or_kms() {
    let t = twins();
    t.file(
        "etc/mkinitcpio.conf",
        "HOOKS=(base udev autodetect kms vfio-early block filesystems)\n",
    );
    let v = views(&t);
    let w = shown_alike(
        &v,
        "put vfio-early after udev, kms",
        "mkinitcpio hooks",
        "fail",
    );
    assert!(w.contains("before 'udev', 'kms' and 'modconf'"), "{w}");
    assert_eq!(v.apply.0, 1, "{}", v.apply.2);
    assert!(v.apply.2.contains("not rebuilt"), "{}", v.apply.2);
}

/// An NVMe controller at 03:00.0 holding /, swap, and an LVM volume mounted at /home.
fn with_root_disk(t: &TestSysfs) {
    t.add(
        &Dev::new("0000:03:00.0", (0x144d, 0xa808), 0x010802)
            .group(3)
            .driver("nvme"),
    );
    let disk = "sys/devices/pci0000:00/0000:03:00.0/nvme/nvme0/nvme0n1";
    for p in ["nvme0n1p2", "nvme0n1p3", "nvme0n1p4"] {
        t.file(&format!("{disk}/{p}/partition"), "1\n");
    }
    t.file(&format!("{disk}/nvme0n1p3/holders/dm-0"), "");
    t.file("sys/devices/virtual/block/dm-0/dm/name", "vg-home\n");
    fs::create_dir_all(t.path("sys/block")).unwrap();
    symlink(
        "../devices/pci0000:00/0000:03:00.0/nvme/nvme0/nvme0n1",
        t.path("sys/block/nvme0n1"),
    )
    .unwrap();
    symlink("../devices/virtual/block/dm-0", t.path("sys/block/dm-0")).unwrap();
    t.file(
        "proc/self/mounts",
        "sysfs /sys sysfs rw 0 0\n/dev/nvme0n1p2 / ext4 rw 0 0\n/dev/mapper/vg-home /home ext4 rw 0 0\n",
    );
    t.file(
        "proc/swaps",
        "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p4 partition 1000 0 -2\n",
    );
}

#[test]
fn a_storage_controller_holding_the_root_filesystem() {
    let t = twins();
    with_root_disk(&t);
    t.config(&format!(
        "{CARD_A}[[device]]\naddress = \"0000:03:00.0\"\nallow_storage = true\n"
    ));
    let (code, out, _) = run(&t, &["bind", "--dry-run", "--json"]);
    assert_eq!(code, 0);
    let v = json(&out);
    let w = v["warnings"][0].as_str().unwrap();
    for held in [
        "/ on /dev/nvme0n1p2",
        "/home on /dev/mapper/vg-home",
        "swap /dev/nvme0n1p4",
    ] {
        assert!(w.contains(held), "{held}: {w}");
    }
    assert!(
        w.starts_with("0000:03:00.0 is a storage controller the host uses"),
        "{w}"
    );
    let (code, _, err) = run(&t, &["apply", "--dry-run"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with(&format!("warning: {w}\n")), "{err}");
    let (_, out, _) = run(&t, &["check", "--json"]);
    let c = json(&out);
    let f = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "storage 0000:03:00.0")
        .unwrap();
    assert_eq!(f["status"], "fail");
    // Without allow_storage the planner refuses it first: no trap, a refusal.
    t.config(&format!("{CARD_A}[[device]]\naddress = \"0000:03:00.0\"\n"));
    let (_, out, _) = run(&t, &["bind", "--dry-run", "--json"]);
    let v = json(&out);
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn a_clean_machine_has_no_warnings() {
    let t = twins();
    t.cmdline("intel_iommu=on\n");
    let v = views(&t);
    assert!(v.dry_run.is_empty(), "{:?}", v.dry_run);
    assert!(
        !v.suggest_stderr.contains("warning"),
        "{}",
        v.suggest_stderr
    );
    assert_eq!(v.apply.0, 0, "{}", v.apply.2);
    assert!(!v.apply.2.contains("warning"), "{}", v.apply.2);
}
