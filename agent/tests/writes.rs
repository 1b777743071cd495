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
use std::os::unix::fs::symlink;
use std::path::Path;

use testing::{changed, seed_with_nic, snapshot, TestSysfs};

fn bind(t: &TestSysfs, extra: &[&str]) -> std::process::Output {
    let args: Vec<&str> = std::iter::once("bind")
        .chain(extra.iter().copied())
        .collect();
    t.run(env!("CARGO_BIN_EXE_vfio-early"), &args)
}

const POOL: &str = "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

/// The seed machine after boot, vfio-pci present, a 2 MiB hugepage pool, and a second
/// card (a NIC in its own group) that is not selected.
fn machine() -> TestSysfs {
    let t = seed_with_nic();
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
        "run/vfio-early/lock",
        "run/vfio-early/log",
        "run/vfio-early/lock",
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
            "run/vfio-early/lock",
            "run/vfio-early/lock",
            "run/vfio-early/log",
            "run/vfio-early/lock",
            "dev/kmsg",
        ]);
        assert_eq!(got, want, "{config}");
    }
}

// --- with a fake kernel: the success path and the rollback of a bound device ---------

/// A stand-in for the kernel's PCI core, so a fixture can *bind*: the host drivers'
/// and vfio-pci's `unbind` files and `drivers_probe` are FIFOs read by a thread.
/// `unbind` removes the device's `driver` link; `drivers_probe` links a driverless
/// device to the driver its `driver_override` names, or, without an override, back
/// to its original driver. A device listed as `broken` is never taken by vfio-pci (the
/// QEMU scenario: an override that does not reach the kernel). Every write received is
/// logged, in order. Unlike the kernel, it acts a moment *after* a write returns.
struct FakeKernel {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(String, String)>>>,
}

impl FakeKernel {
    fn start(t: &TestSysfs, drivers: &[&str], broken: &[&str]) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let root = t.root().to_path_buf();
        let devices: Vec<String> = std::fs::read_dir(t.path("sys/bus/pci/devices"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let link =
            |root: &Path, addr: &str| root.join(format!("sys/devices/pci0000:00/{addr}/driver"));
        let original: BTreeMap<String, Option<String>> = devices
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    std::fs::read_link(link(&root, a))
                        .ok()
                        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned()),
                )
            })
            .collect();
        // Unbind files first: each pass reads them before drivers_probe, as the agent
        // writes them in that order.
        let mut fifos: Vec<String> = drivers
            .iter()
            .map(|d| format!("sys/bus/pci/drivers/{d}/unbind"))
            .collect();
        fifos.push("sys/bus/pci/drivers_probe".to_owned());
        let mut ends = Vec::new();
        for rel in &fifos {
            let p = root.join(rel);
            std::fs::remove_file(&p).unwrap();
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
            let reader = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&p)
                .unwrap();
            // Our own writer end keeps reads at EAGAIN (not EOF) between the agent's writes.
            let keep = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            ends.push((rel.clone(), reader, keep));
        }
        let broken: Vec<String> = broken.iter().map(|s| (*s).to_owned()).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut received = Vec::new();
            let mut last_pass = false;
            // Reads what one FIFO holds now, as 12-character addresses: writes come
            // without separators ("0000:01:00.00000:01:00.1" when two land at once).
            let drain = |reader: &mut std::fs::File, rel: &str| -> Vec<String> {
                let mut buf = [0u8; 4096];
                let n = match reader.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                    Err(e) => panic!("{rel}: {e}"),
                };
                let text: String = String::from_utf8_lossy(&buf[..n])
                    .split_whitespace()
                    .collect();
                let chars: Vec<char> = text.chars().collect();
                chars.chunks(12).map(|c| c.iter().collect()).collect()
            };
            loop {
                let stop_now = stopping.load(std::sync::atomic::Ordering::SeqCst);
                // The probes first, then the unbinds: an unbind written before a probe is
                // in its FIFO by the time the probe can be read, and is applied first.
                let (probe_rel, probe_reader, _) = ends.last_mut().unwrap();
                let probe_rel = probe_rel.clone();
                let probes = drain(probe_reader, &probe_rel);
                let n = ends.len() - 1;
                for (rel, reader, _) in &mut ends[..n] {
                    let drv = rel
                        .strip_prefix("sys/bus/pci/drivers/")
                        .and_then(|r| r.strip_suffix("/unbind"))
                        .unwrap()
                        .to_owned();
                    for addr in drain(reader, rel) {
                        received.push((rel.clone(), addr.clone()));
                        let l = link(&root, &addr);
                        let on = std::fs::read_link(&l)
                            .ok()
                            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned());
                        if on.as_deref() == Some(drv.as_str()) {
                            std::fs::remove_file(&l).unwrap();
                        }
                    }
                }
                for addr in probes {
                    received.push((probe_rel.clone(), addr.clone()));
                    let l = link(&root, &addr);
                    if std::fs::symlink_metadata(&l).is_ok() {
                        continue;
                    }
                    let ov = std::fs::read_to_string(
                        root.join(format!("sys/devices/pci0000:00/{addr}/driver_override")),
                    )
                    .unwrap();
                    let to = match ov.trim() {
                        "" | "(null)" => original.get(&addr).cloned().flatten(),
                        "vfio-pci" if broken.contains(&addr) => None,
                        other => Some(other.to_owned()),
                    };
                    if let Some(to) = to {
                        symlink(format!("../../../bus/pci/drivers/{to}"), &l).unwrap();
                    }
                }
                if last_pass {
                    return received;
                }
                last_pass = stop_now;
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread after one more pass; returns every write received.
    fn stop(mut self) -> Vec<(String, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn driver_of(t: &TestSysfs, addr: &str) -> Option<String> {
    std::fs::read_link(t.path(&format!("sys/devices/pci0000:00/{addr}/driver")))
        .ok()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
}

fn received(paths: &[(&str, &str)]) -> Vec<(String, String)> {
    paths
        .iter()
        .map(|(p, a)| ((*p).to_owned(), (*a).to_owned()))
        .collect()
}

#[test]
fn a_bind_that_succeeds_writes_the_expected_files_in_order() {
    let t = machine();
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n");
    let kernel = FakeKernel::start(&t, &["radeon", "snd_hda_intel", "vfio-pci"], &[]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = snapshot(t.root());
    let o = bind(&t, &["--strict"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let writes = kernel.stop();
    assert_eq!(o.status.code(), Some(0), "{err}");
    // Each function unbound from its host driver, then probed (the order between
    // different FIFOs is only known per device).
    let mut sorted = writes.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        received(&[
            ("sys/bus/pci/drivers/radeon/unbind", "0000:01:00.0"),
            ("sys/bus/pci/drivers/snd_hda_intel/unbind", "0000:01:00.1"),
            ("sys/bus/pci/drivers_probe", "0000:01:00.0"),
            ("sys/bus/pci/drivers_probe", "0000:01:00.1"),
        ])
    );
    for a in ["0000:01:00.0", "0000:01:00.1"] {
        let at = |what: &str| {
            writes
                .iter()
                .position(|(p, x)| p.ends_with(what) && x == a)
                .unwrap()
        };
        assert!(at("/unbind") < at("drivers_probe"), "{a}: {writes:?}");
    }
    // Besides the FIFOs: the two overrides, the driver links the fake kernel moved,
    // the record and the log.
    let got: BTreeSet<String> = changed(&before, &snapshot(t.root()))
        .into_iter()
        .filter(|p| !p.ends_with("unbind") && !p.ends_with("drivers_probe"))
        .collect();
    let want = set(&[
        "sys/devices/pci0000:00/0000:01:00.0/driver_override",
        "sys/devices/pci0000:00/0000:01:00.1/driver_override",
        "sys/devices/pci0000:00/0000:01:00.0/driver",
        "sys/devices/pci0000:00/0000:01:00.1/driver",
        "run/vfio-early",
        "run/vfio-early/record.json",
        "run/vfio-early/lock",
        "run/vfio-early/log",
        "run/vfio-early/lock",
        "dev/kmsg",
    ]);
    assert_eq!(
        got,
        want,
        "\nunexpected: {:?}\nmissing: {:?}",
        got.difference(&want),
        want.difference(&got)
    );
    for a in ["0000:01:00.0", "0000:01:00.1"] {
        assert_eq!(driver_of(&t, a).as_deref(), Some("vfio-pci"), "{a}");
        assert_eq!(
            t.read(&format!("sys/bus/pci/devices/{a}/driver_override")),
            "vfio-pci"
        );
    }
    let kmsg = t.read("dev/kmsg");
    assert!(
        kmsg.contains("0000:01:00.0 [1002:6779] bound to vfio-pci (was radeon), IOMMU group 1"),
        "{kmsg}"
    );
    let r: serde_json::Value = serde_json::from_str(&t.read("run/vfio-early/record.json")).unwrap();
    let outcomes: Vec<&str> = r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["outcome"].as_str())
        .collect();
    // Every device says what became of it: the bridge was skipped, never "".
    assert_eq!(outcomes, ["skipped", "bound", "bound"], "{r}");
}

#[test]
fn when_the_second_function_never_binds_the_first_is_released_and_both_go_home() {
    // The fixture form of the QEMU rollback scenario: 0000:01:00.1's override is
    // accepted but vfio-pci never takes it. 0000:01:00.0, already on vfio-pci by then,
    // must be unbound from vfio-pci, both overrides cleared, and both devices probed
    // back onto their original drivers.
    let t = machine();
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n");
    let kernel = FakeKernel::start(
        &t,
        &["radeon", "snd_hda_intel", "vfio-pci"],
        &["0000:01:00.1"],
    );
    let o = bind(&t, &[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let writes = kernel.stop();
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(
        err.matches("IOMMU group 1: vfio-pci did not take every device (0000:01:00.1 is on no driver); the group was rolled back").count(),
        1,
        "{err}"
    );
    println!("{err}");
    // Both functions are off vfio-pci and back on their drivers. On a kernel, `unbind`
    // has taken effect when the write returns, so the agent's re-probe finds the device
    // free; the fake kernel acts a moment after a write, so when the agent looks too
    // early it must report the rollback as incomplete, naming the device, rather than
    // claim success.
    for (a, drv) in [
        ("0000:01:00.0", "radeon"),
        ("0000:01:00.1", "snd_hda_intel"),
    ] {
        let now = driver_of(&t, a);
        assert_ne!(now.as_deref(), Some("vfio-pci"), "{a}");
        assert!(
            now.as_deref() == Some(drv) || err.contains(&format!("{a} was on {drv} and is now on")),
            "{a} on {now:?}: {err}"
        );
    }
    for a in ["0000:01:00.0", "0000:01:00.1"] {
        assert_eq!(
            t.read(&format!("sys/bus/pci/devices/{a}/driver_override"))
                .trim(),
            "",
            "{a}"
        );
    }
    assert!(
        writes.contains(&(
            "sys/bus/pci/drivers/vfio-pci/unbind".to_owned(),
            "0000:01:00.0".to_owned()
        )),
        "{writes:?}"
    );
    assert!(
        !writes
            .iter()
            .any(|(_, a)| a != "0000:01:00.0" && a != "0000:01:00.1"),
        "only the group: {writes:?}"
    );
    assert_eq!(bind(&t, &["--dry-run"]).status.code(), Some(0));
}
