//! The bad-input matrix (issue 7): every hostile or broken input `bind` can meet at
//! boot, through the built binary against a fixture root. For each: the one message a
//! user sees, the exit status (`bind` 0 always; `--strict` 1 for refused or failed, 2
//! for a config error), and the state afterwards: no `driver_override` left set on any
//! device, every device on the driver it had, a boot record under `run/vfio-early/`.
//!
//! The table in `tests/BAD-INPUT.md` is this file in prose; keep them together.
//!
//! Kernel text relied on: `driver_override` reads `(null)\n` when unset, and a write of
//! `"\n"` clears it; `driver` is a link into `bus/pci/drivers/<name>`; the host
//! driver's `unbind` file takes the address. Writes are made to fail for real, since
//! root ignores permission bits: a directory where the file should be (EISDIR), a
//! symlink to `/dev/full` (ENOSPC), a read-only bind mount in a private mount
//! namespace (EROFS), and a FIFO without a reader for an `unbind` that never returns.

// Helpers outside #[test] fns unwrap too: a fixture that cannot be built is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use testing::{seed_machine, Dev, TestSysfs};

const BIN: &str = env!("CARGO_BIN_EXE_vfio-early");
const CONFIG: &str = "etc/vfio-early.toml";

/// The seed machine after boot (GPU + HDMI audio in group 1 behind a root port, the
/// boot VGA in group 0, the south bridge functions in group 7), vfio-pci present, plus
/// an NVMe controller alone in group 5 and a NIC alone in group 6.
fn machine() -> TestSysfs {
    let t = seed_machine(true);
    t.driver("vfio-pci");
    t.add(
        &Dev::new("0000:03:00.0", (0x144d, 0xa808), 0x010802)
            .group(5)
            .driver("nvme"),
    );
    t.add(
        &Dev::new("0000:04:00.0", (0x8086, 0x10d3), 0x020000)
            .group(6)
            .driver("e1000e"),
    );
    t
}

fn bind(t: &TestSysfs, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--root")
        .arg(t.root())
        .arg("bind")
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("run vfio-early")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every device's `driver` link and `driver_override` text.
fn state(t: &TestSysfs) -> BTreeMap<String, (Option<String>, String)> {
    let dir = t.path("sys/bus/pci/devices");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let dev = t.path(&format!("sys/bus/pci/devices/{name}"));
        let driver = std::fs::read_link(dev.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let ov = read_bounded(&dev.join("driver_override"));
        out.insert(name, (driver, ov));
    }
    out
}

/// At most one page, as sysfs gives (a link to `/dev/full` reads forever).
fn read_bounded(p: &Path) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    match std::fs::File::open(p) {
        Ok(f) => {
            let _ = f.take(4096).read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        }
        Err(e) => format!("<{e}>"),
    }
}

/// Nothing half-done: every device on the driver it had before, no override set.
fn assert_untouched(t: &TestSysfs, before: &BTreeMap<String, (Option<String>, String)>) {
    let after = state(t);
    for (addr, (driver, ov)) in &after {
        assert_eq!(driver, &before[addr].0, "{addr} changed driver");
        let unset = ov == "(null)\n" || ov.trim().is_empty() || ov.starts_with('<');
        assert!(unset, "{addr}: driver_override left set: {ov:?}");
    }
}

fn record(t: &TestSysfs) -> Value {
    let text =
        std::fs::read_to_string(t.path("run/vfio-early/record.json")).expect("boot record written");
    serde_json::from_str(&text).expect("record is JSON")
}

/// Runs `bind` and `bind --strict` on a config; checks the exit statuses, that `needle`
/// is said exactly once (on stderr and in the kernel log; an info line only goes to the
/// kernel log unless `-v`), and that nothing was left half-done. Returns the stderr of
/// the plain run.
fn case(t: &TestSysfs, config: &[u8], needle: &str, strict_code: i32) -> String {
    said(t, config, needle, strict_code, true)
}

fn said(t: &TestSysfs, config: &[u8], needle: &str, strict_code: i32, on_stderr: bool) -> String {
    std::fs::write(t.path(CONFIG), config).unwrap();
    let before = state(t);
    let o = bind(t, &[]);
    let err = stderr(&o);
    let kmsg = t.read("dev/kmsg");
    assert_eq!(o.status.code(), Some(0), "bind never fails the boot: {err}");
    assert_eq!(
        err.matches(needle).count(),
        usize::from(on_stderr),
        "{needle:?} on stderr: {err}"
    );
    assert_eq!(
        kmsg.matches(needle).count(),
        1,
        "{needle:?} once in the kernel log: {kmsg}"
    );
    assert_untouched(t, &before);
    let o = bind(t, &["--strict"]);
    assert_eq!(
        o.status.code(),
        Some(strict_code),
        "--strict: {}",
        stderr(&o)
    );
    assert_untouched(t, &before);
    err
}

/// A config error: said once with file:line:col, nothing done, recorded, strict exit 2.
fn config_error(config: &[u8], needle: &str, at: Option<&str>) {
    let t = machine();
    let err = case(&t, config, needle, 2);
    assert!(err.contains("nothing was changed"), "{err}");
    if let Some(at) = at {
        assert!(err.contains(&format!("{CONFIG}:{at}")), "{at}: {err}");
    }
    let r = record(&t);
    assert!(
        r["config_error"]
            .as_str()
            .is_some_and(|e| e.contains(needle)),
        "{r}"
    );
    assert_eq!(r["devices"], serde_json::json!([]));
    assert_eq!(
        t.read("sys/bus/pci/drivers_probe"),
        "",
        "no probe was written"
    );
    assert_eq!(
        t.read("sys/bus/pci/drivers/radeon/unbind"),
        "",
        "no unbind was written"
    );
}

// --- config errors: exit 2 with --strict ---------------------------------------------

#[test]
fn malformed_toml() {
    config_error(
        b"[[device]\naddress = \"0000:01:00.0\"\n",
        "unclosed array table",
        Some("1:"),
    );
}

#[test]
fn unknown_key() {
    config_error(
        b"[[device]]\naddress = \"0000:01:00.0\"\nfunctoins = \"slot\"\n",
        "functoins",
        Some("3:1:"),
    );
}

#[test]
fn wrong_type() {
    config_error(
        b"[[device]]\naddress = 0x0100\n",
        "invalid type: integer",
        Some("2:"),
    );
    config_error(
        b"[bind]\ntimeout_ms = \"3s\"\n",
        "invalid type: string",
        Some("2:"),
    );
}

#[test]
fn address_bad_syntax() {
    config_error(
        b"[[device]]\naddress = \"0000:01:00\"\n",
        "is not a PCI address",
        Some("2:11:"),
    );
    config_error(
        b"[[device]]\naddress = \"0000:1:00.0\"\n",
        "bad bus (two hex digits)",
        Some("2:11:"),
    );
}

#[test]
fn address_out_of_range() {
    config_error(
        b"[[device]]\naddress = \"0000:01:20.0\"\n",
        "device out of range (00-1f)",
        Some("2:11:"),
    );
    config_error(
        b"[[device]]\naddress = \"0000:01:00.8\"\n",
        "function out of range (0-7)",
        Some("2:11:"),
    );
}

#[test]
fn address_path_like() {
    for a in [
        "../../0000:01:00.0",
        "0000:01:00.0/../../../../etc",
        "/sys/bus/pci/devices/0000:01:00.0",
    ] {
        let toml = format!("[[device]]\naddress = \"{a}\"\n");
        config_error(toml.as_bytes(), "is not a PCI address", Some("2:11:"));
    }
}

#[test]
fn empty_config_selects_nothing() {
    let t = machine();
    let err = said(&t, b"", "selects no device; nothing to do", 0, false);
    assert_eq!(err, "", "nothing to say on the console");
    assert!(record(&t)["config_error"].is_null());
}

#[test]
fn config_with_zero_devices() {
    let t = machine();
    let err = said(
        &t,
        b"# nothing selected yet\n[bind]\ntimeout_ms = 500\n",
        "selects no device; nothing to do",
        0,
        false,
    );
    assert_eq!(err, "", "nothing to say on the console");
    assert_eq!(record(&t)["devices"], serde_json::json!([]));
}

#[test]
fn huge_config() {
    let mut big = b"[[device]]\naddress = \"0000:01:00.0\"\n".to_vec();
    big.resize(300 * 1024, b'#');
    config_error(&big, "is too large for a config (limit 262144)", None);
}

#[test]
fn binary_config() {
    // The first bytes of a real ELF header: not UTF-8.
    config_error(
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\xff\xfe\x03\x00>\x00",
        "is this a binary file?",
        Some("1:"),
    );
    // UTF-8, but with a NUL byte (a truncated or zero-filled file).
    config_error(
        b"[[device]]\naddress = \"0000:01:00.0\"\n\0\0\0\0",
        "contains a NUL byte",
        Some("3:1:"),
    );
}

// --- refusals: bind exit 0, --strict exit 1, nothing touched -------------------------

/// A refusal or warning from the planner: said once, no write to any device.
fn refusal(config: &str, needle: &str) -> TestSysfs {
    let t = machine();
    case(&t, config.as_bytes(), needle, 1);
    assert_eq!(
        t.read("sys/bus/pci/drivers_probe"),
        "",
        "no probe was written"
    );
    for drv in ["radeon", "snd_hda_intel", "nvme", "e1000e"] {
        assert_eq!(
            t.read(&format!("sys/bus/pci/drivers/{drv}/unbind")),
            "",
            "{drv}: no unbind"
        );
    }
    assert_eq!(record(&t)["errors"], serde_json::json!([]));
    t
}

#[test]
fn device_absent() {
    refusal(
        "[[device]]\naddress = \"0000:09:00.0\"\n",
        "no device at 0000:09:00.0",
    );
    refusal(
        "[[device]]\nid = \"10de:1b80\"\n",
        "no device has id 10de:1b80",
    );
}

const ID_MISMATCH: &str = "[[device]]\naddress = \"0000:01:00.0\"\nid = \"10de:1b80\"\n";

#[test]
fn id_mismatch_at_the_address_touches_nothing() {
    // What holds today: refused in the plan and the record, nothing touched, strict 1.
    let t = machine();
    std::fs::write(t.path(CONFIG), ID_MISMATCH).unwrap();
    let before = state(&t);
    assert_eq!(bind(&t, &[]).status.code(), Some(0));
    assert_untouched(&t, &before);
    assert_eq!(t.read("sys/bus/pci/drivers/radeon/unbind"), "");
    let r = record(&t);
    let gpu = r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == "0000:01:00.0")
        .unwrap();
    assert_eq!(gpu["action"], "refuse", "{gpu}");
    assert!(
        gpu["reasons"]
            .to_string()
            .contains("not 10de:1b80; refusing rather than guessing"),
        "{gpu}"
    );
    assert_eq!(bind(&t, &["--strict"]).status.code(), Some(1));
}

#[test]

fn id_mismatch_at_the_address_is_said() {
    refusal(
        ID_MISMATCH,
        "the device at 0000:01:00.0 is 1002:6779:1458:21ac, not 10de:1b80; refusing rather than guessing",
    );
}

#[test]
fn group_not_usable() {
    let t = refusal(
        "[[device]]\naddress = \"0000:00:14.2\"\n",
        "0000:00:14.2 [1022:780d] refused:",
    );
    let r = record(&t);
    let azalia = r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == "0000:00:14.2")
        .unwrap();
    assert_eq!(azalia["action"], "refuse");
    assert!(
        azalia["reasons"]
            .to_string()
            .contains("stays with the host driver piix4_smbus"),
        "{azalia}"
    );
}

#[test]
fn boot_vga() {
    refusal(
        "[[device]]\naddress = \"0000:00:01.0\"\n",
        "the boot display (boot_vga = 1)",
    );
}

#[test]
fn storage_controller() {
    refusal(
        "[[device]]\nid = \"144d:a808\"\n",
        "a storage controller, possibly holding the root disk",
    );
}

#[test]
fn no_iommu() {
    let t = TestSysfs::new();
    t.driver("vfio-pci");
    t.add(&Dev::new("0000:01:00.0", (0x10de, 0x1b80), 0x030000).driver("nouveau"));
    case(
        &t,
        b"[[device]]\nid = \"10de:1b80\"\n",
        "the kernel shows no IOMMU groups",
        1,
    );
    assert_eq!(t.read("sys/bus/pci/drivers/nouveau/unbind"), "");
    let err = stderr(&bind(&t, &[]));
    assert!(err.contains("intel_iommu=on"), "the hint is given: {err}");
}

// --- failures while acting: bind exit 0, --strict exit 1, the group rolled back -------

const GPU_SLOT: &[u8] = b"[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n";
const NIC: &[u8] = b"[[device]]\naddress = \"0000:04:00.0\"\n[bind]\ntimeout_ms = 300\n";

#[test]
fn vfio_pci_missing_from_the_image() {
    let t = machine();
    std::fs::remove_dir_all(t.path("sys/bus/pci/drivers/vfio-pci")).unwrap();
    let err = case(
        &t,
        GPU_SLOT,
        "vfio-pci is not available, nothing was bound",
        1,
    );
    // A fixture root is not the live system: the agent may not load modules, and says so.
    assert!(
        err.contains("load module vfio-pci: not done") && err.contains("is not the live system"),
        "{err}"
    );
    assert_eq!(t.read("sys/bus/pci/drivers/radeon/unbind"), "");
    let r = record(&t);
    let outcomes: Vec<&str> = r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["outcome"].as_str())
        .collect();
    assert!(outcomes.contains(&"failed"), "{r}");
}

/// Replaces a device attribute file by `what` (a directory, a link to /dev/full).
fn break_attr(t: &TestSysfs, addr: &str, attr: &str, make: impl Fn(&Path)) {
    let p = t.path(&format!("sys/devices/pci0000:00/{addr}/{attr}"));
    std::fs::remove_file(&p).unwrap();
    make(&p);
}

#[test]
fn sysfs_write_refused_directory_in_place_of_the_second_override() {
    // The second function of the group refuses its override: the first one's, already
    // set, must be cleared again, and nothing unbound.
    let t = machine();
    break_attr(&t, "0000:01:00.1", "driver_override", |p| {
        std::fs::create_dir(p).unwrap();
    });
    let err = case(
        &t,
        GPU_SLOT,
        "IOMMU group 1: 0000:01:00.1: setting driver_override failed",
        1,
    );
    assert!(err.contains("Is a directory"), "{err}");
    assert!(err.contains("the group was rolled back"), "{err}");
    assert_eq!(
        t.read("sys/bus/pci/devices/0000:01:00.0/driver_override")
            .trim(),
        ""
    );
    assert_eq!(
        t.read("sys/bus/pci/drivers/radeon/unbind"),
        "",
        "failed before any unbind"
    );
    let r = record(&t);
    for d in r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "bind")
    {
        assert_eq!(d["outcome"], "rolled-back", "{d}");
    }
}

#[test]
fn sysfs_write_refused_link_to_dev_full() {
    // The host driver's `unbind` is a link to /dev/full, outside the tree: it is not
    // written through (O_NOFOLLOW) after the override was set, so the override must be
    // cleared again and the device stay on its driver.
    let t = machine();
    let unbind = t.path("sys/bus/pci/drivers/e1000e/unbind");
    std::fs::remove_file(&unbind).unwrap();
    symlink("/dev/full", &unbind).unwrap();
    let err = case(&t, NIC, "0000:04:00.0: unbinding from e1000e failed", 1);
    assert!(
        err.contains("is a symbolic link; not written through"),
        "{err}"
    );
    assert!(err.contains("the group was rolled back"), "{err}");
    assert!(!err.contains("incompletely"), "{err}");
    assert_eq!(
        t.read("sys/bus/pci/devices/0000:04:00.0/driver_override")
            .trim(),
        ""
    );
}

#[test]
fn sysfs_write_refused_read_only_bind_mount() {
    let t = machine();
    let ov = t.path("sys/devices/pci0000:00/0000:04:00.0/driver_override");
    std::fs::write(t.path(CONFIG), NIC).unwrap();
    let before = state(&t);
    // A private mount namespace: the read-only bind mount exists only for this run.
    let script = format!(
        "mount --bind '{ov}' '{ov}' && mount -o remount,ro,bind '{ov}' '{ov}' && exec '{BIN}' --root '{root}' bind \"$@\"",
        ov = ov.display(),
        root = t.root().display()
    );
    let run = |extra: &[&str]| {
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
            .args(extra)
            .output()
    };
    let o = match run(&[]) {
        Ok(o) if o.status.code() != Some(0) && !stderr(&o).contains("vfio-early") => {
            println!(
                "skipped: unshare -m / mount not permitted here: {}",
                stderr(&o).trim()
            );
            return;
        }
        Err(e) => {
            println!("skipped: unshare not available: {e}");
            return;
        }
        Ok(o) => o,
    };
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(
        err.matches("0000:04:00.0: setting driver_override failed")
            .count(),
        1,
        "{err}"
    );
    assert!(err.contains("Read-only file system"), "{err}");
    assert_untouched(&t, &before);
    assert_eq!(t.read("sys/bus/pci/drivers/e1000e/unbind"), "");
    assert_eq!(run(&["--strict"]).unwrap().status.code(), Some(1));
}

#[test]
fn unbind_that_never_returns() {
    let t = machine();
    let unbind = t.path("sys/bus/pci/drivers/e1000e/unbind");
    std::fs::remove_file(&unbind).unwrap();
    nix::unistd::mkfifo(&unbind, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let err = case(&t, NIC, "0000:04:00.0: unbinding from e1000e failed", 1);
    assert!(
        err.contains("no answer after 300 ms (the write was abandoned)"),
        "{err}"
    );
    assert!(err.contains("the group was rolled back"), "{err}");
}
