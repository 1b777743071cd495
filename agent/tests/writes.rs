//! No writes outside what the agent owns (issue 7): `bind` against a fixture root
//! changes exactly the sysfs control files of the selected devices and of their host
//! drivers, `drivers_probe`, the hugepage count asked for, its own record and log
//! under `run/vfio-early/`, and the kernel log. Every file, link and directory of the
//! root is snapshotted (content and mtime) before and after.
//!
//! Kernel text relied on: a device's attributes live in `sys/devices/pci0000:00/<addr>/`
//! and `sys/bus/pci/devices/<addr>` links there; `driver` links into
//! `sys/bus/pci/drivers/<name>`, whose `unbind` file takes an address; the pool of
//! 2 MiB pages is `sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`.

// Helpers outside #[test] fns unwrap too: a fixture that cannot be built is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use vfio_early::testing::{seed_machine, Dev, TestSysfs};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { content: Vec<u8>, mtime: SystemTime },
    Link(std::path::PathBuf),
    Dir,
    Other,
}

/// Every entry under the root, by relative path, without following links.
fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let entry = if meta.file_type().is_symlink() {
                Entry::Link(std::fs::read_link(&p).unwrap())
            } else if meta.is_dir() {
                walk(root, &p, out);
                Entry::Dir
            } else if meta.is_file() {
                let mut content = Vec::new();
                std::fs::File::open(&p)
                    .unwrap()
                    .take(1 << 20)
                    .read_to_end(&mut content)
                    .unwrap();
                Entry::File {
                    content,
                    mtime: meta.modified().unwrap(),
                }
            } else {
                Entry::Other
            };
            out.insert(rel, entry);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Paths that differ between two snapshots (changed, created or removed).
fn changed(before: &BTreeMap<String, Entry>, after: &BTreeMap<String, Entry>) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

fn bind(t: &TestSysfs, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vfio-early"))
        .arg("--root")
        .arg(t.root())
        .arg("bind")
        .args(extra)
        .output()
        .expect("run vfio-early")
}

const POOL: &str = "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

/// The seed machine after boot, vfio-pci present, a 2 MiB hugepage pool, and a second
/// card (a NIC in its own group) that is not selected.
fn machine() -> TestSysfs {
    let t = seed_machine(true);
    t.driver("vfio-pci");
    t.add(
        &Dev::new("0000:04:00.0", (0x8086, 0x10d3), 0x020000)
            .group(6)
            .driver("e1000e"),
    );
    t.file(POOL, "0\n");
    t.file(
        "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
        "0\n",
    );
    t.file(
        "proc/meminfo",
        "MemTotal:       16303540 kB\nMemFree:        15000000 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n",
    );
    t
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| (*p).to_owned()).collect()
}

#[test]
fn bind_writes_only_the_selected_devices_hugepages_and_its_record() {
    let t = machine();
    t.config(
        "[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n\n[[hugepages]]\nsize = \"2M\"\ncount = 4\n",
    );
    // mtimes have a coarse clock on some filesystems: let it move.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = snapshot(t.root());
    let o = bind(&t, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after = snapshot(t.root());
    let got = changed(&before, &after);
    // The GPU and its audio function: override set (then cleared by the rollback a
    // fixture always ends in), each unbound from its host driver, probed; the pool;
    // the record and the full log; the kernel log.
    let want = set(&[
        "sys/devices/pci0000:00/0000:01:00.0/driver_override",
        "sys/devices/pci0000:00/0000:01:00.1/driver_override",
        "sys/bus/pci/drivers/radeon/unbind",
        "sys/bus/pci/drivers/snd_hda_intel/unbind",
        "sys/bus/pci/drivers_probe",
        POOL,
        "run/vfio-early",
        "run/vfio-early/record.json",
        "run/vfio-early/log",
        "dev/kmsg",
    ]);
    assert_eq!(
        got,
        want,
        "\nunexpected: {:?}\nmissing: {:?}",
        got.difference(&want),
        want.difference(&got)
    );
    // What was written, where it can be told.
    assert_eq!(t.read(POOL).trim(), "4");
    assert_eq!(t.read("sys/bus/pci/drivers/radeon/unbind"), "0000:01:00.0");
    assert_eq!(
        t.read("sys/bus/pci/drivers/snd_hda_intel/unbind"),
        "0000:01:00.1"
    );
    // The other function on snd_hda_intel (the Azalia in group 7) shares the driver
    // directory, but its own attributes were not touched.
    assert_eq!(
        t.read("sys/devices/pci0000:00/0000:00:14.2/driver_override"),
        "(null)\n"
    );
}

#[test]
fn dry_run_writes_nothing_at_all() {
    let t = machine();
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n\n[[hugepages]]\nsize = \"2M\"\ncount = 4\n");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = snapshot(t.root());
    let o = bind(&t, &["--dry-run"]);
    assert_eq!(o.status.code(), Some(0));
    let got = changed(&before, &snapshot(t.root()));
    assert!(got.is_empty(), "a dry run wrote {got:?}");
}

#[test]
fn a_refused_device_and_a_config_error_write_only_the_record_and_the_log() {
    for config in [
        // Refused: the Azalia's group holds devices on host drivers.
        "[[device]]\naddress = \"0000:00:14.2\"\n",
        // A config error.
        "[[device]]\naddress = \"../../0000:01:00.0\"\n",
        // The boot display.
        "[[device]]\naddress = \"0000:00:01.0\"\n",
    ] {
        let t = machine();
        t.config(config);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before = snapshot(t.root());
        assert_eq!(bind(&t, &[]).status.code(), Some(0));
        let got = changed(&before, &snapshot(t.root()));
        let want = set(&[
            "run/vfio-early",
            "run/vfio-early/record.json",
            "run/vfio-early/log",
            "dev/kmsg",
        ]);
        assert_eq!(got, want, "{config}");
    }
}
