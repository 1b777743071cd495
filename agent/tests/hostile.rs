//! Hostile ground (issue 13): the built binary against fixture trees made to trap it,
//! FIFOs, sockets and devices where files belong, links that lead out of the tree, a
//! group the kernel's directories disagree on, a stalled group of eight functions, a
//! full `/run`, a second run. Every case snapshots every entry inside the root *and*
//! in a directory outside it (content, link target, kind; special files are never
//! opened) before and after, and names exactly what may change.
//!
//! Kernel text relied on: `driver_override` reads `(null)\n` when unset and takes `\n`
//! to clear; a device's `iommu_group` links to `sys/kernel/iommu_groups/N`, whose
//! `devices/` links back to every member, PCI or not (a platform device shows under
//! its own name, e.g. `MSFT0101:00`); the ISA bridge of a chipset has class 0x0601.

// Helpers outside #[test] fns unwrap too: a fixture that cannot be built is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testing::{changed, seed_machine, seed_with_nic, snapshot, Dev, TestSysfs};

const BIN: &str = env!("CARGO_BIN_EXE_vfio-early");
/// Past this a run counts as hung (the cases finish in well under a second; the stall
/// cases in their configured timeout).
const HUNG: Duration = Duration::from_secs(30);

/// A fixture root and a directory outside it holding files a link may point at.
struct World {
    t: TestSysfs,
    outside: tempfile::TempDir,
}

impl World {
    fn new(t: TestSysfs) -> Self {
        let outside = tempfile::tempdir().unwrap();
        for f in ["driver_override", "unbind", "kmsg", "record.json", "victim"] {
            std::fs::write(outside.path().join(f), "untouched\n").unwrap();
        }
        std::fs::create_dir_all(outside.path().join("run/vfio-early")).unwrap();
        std::fs::create_dir_all(outside.path().join("drv")).unwrap();
        std::fs::write(outside.path().join("drv/unbind"), "untouched\n").unwrap();
        Self { t, outside }
    }

    fn out(&self, rel: &str) -> PathBuf {
        self.outside.path().join(rel)
    }

    /// Runs the binary, snapshots before and after; returns the output and the changed
    /// paths inside the root. Panics when anything outside changed, or the run hung.
    fn run(&self, args: &[&str]) -> (Output, BTreeSet<String>) {
        let (inside, outside) = (snapshot(self.t.root()), snapshot(self.outside.path()));
        let o = run_bounded(self.t.root(), args, |_| {});
        let out_changed = changed(&outside, &snapshot(self.outside.path()));
        assert!(
            out_changed.is_empty(),
            "wrote outside the root: {out_changed:?}"
        );
        (o, changed(&inside, &snapshot(self.t.root())))
    }
}

/// Runs `vfio-early --root ROOT ARGS` and waits at most [`HUNG`] (then kills it and
/// fails). `setup` adjusts the command (limits) before it starts.
fn run_bounded(root: &Path, args: &[&str], setup: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    setup(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > HUNG {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "vfio-early {args:?} hung; stderr: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| (*p).to_owned()).collect()
}

/// What any non-dry `bind` writes of its own.
const OWN: [&str; 5] = [
    "dev/kmsg",
    "run/vfio-early",
    "run/vfio-early/lock",
    "run/vfio-early/log",
    "run/vfio-early/record.json",
];

fn record(t: &TestSysfs) -> Value {
    serde_json::from_str(&t.read("run/vfio-early/record.json")).expect("record")
}

fn fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap();
}

const NIC: &str = "[[device]]\naddress = \"0000:04:00.0\"\n";
const NIC_OVR: &str = "sys/devices/pci0000:00/0000:04:00.0/driver_override";

/// Each special kind of file the config path can be, made at `path`; the socket's
/// listener is returned to keep it alive.
fn specials(path: &Path, kind: &str) -> Option<std::os::unix::net::UnixListener> {
    let _ = std::fs::remove_file(path);
    match kind {
        "fifo" => fifo(path),
        "socket" => return Some(std::os::unix::net::UnixListener::bind(path).unwrap()),
        "device" => symlink("/dev/zero", path).unwrap(),
        "loop" => symlink(path.file_name().unwrap(), path).unwrap(),
        "dir" => std::fs::create_dir(path).unwrap(),
        _ => unreachable!(),
    }
    None
}

const KINDS: [(&str, &str); 5] = [
    ("fifo", "is a FIFO, not a regular file"),
    ("socket", "is a socket, not a regular file"),
    ("device", "is a character device, not a regular file"),
    ("loop", "Too many levels of symbolic links"),
    ("dir", "is a directory, not a regular file"),
];

#[test]
fn a_config_that_exists_but_cannot_be_read_is_an_error_and_never_a_hang() {
    for (kind, words) in KINDS {
        let w = World::new(seed_with_nic());
        let _keep = specials(&w.t.path("etc/vfio-early.toml"), kind);
        let (o, changed) = w.run(&["bind"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{kind}: {err}");
        assert!(
            err.contains("error:") && err.contains(words),
            "{kind}: {err}"
        );
        assert!(!err.contains("no config"), "{kind}: {err}");
        let kmsg = w.t.read("dev/kmsg");
        assert!(
            kmsg.contains("<11>vfio-early:") && kmsg.contains(words),
            "{kind}: {kmsg}"
        );
        assert_eq!(changed, set(&OWN), "{kind}");
        assert!(record(&w.t)["config_error"]
            .as_str()
            .unwrap()
            .contains(words));

        let (o, _) = w.run(&["bind", "--strict"]);
        assert_eq!(o.status.code(), Some(2), "{kind}: --strict");
        let (o, changed) = w.run(&["bind", "--dry-run"]);
        assert!(stderr(&o).contains(words) || String::from_utf8_lossy(&o.stdout).contains(words));
        assert!(changed.is_empty(), "{kind}: a dry run wrote {changed:?}");
        let (o, _) = w.run(&["check"]);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(words),
            "{kind}: check"
        );
        // The same file named with --config.
        let cfg = w.t.path("etc/vfio-early.toml");
        let (o, changed) = w.run(&["bind", "--config", cfg.to_str().unwrap()]);
        assert!(stderr(&o).contains(words), "{kind}: --config");
        assert!(
            changed.contains("dev/kmsg") && changed.is_subset(&set(&OWN)),
            "{kind}: --config {changed:?}"
        );
    }
}

#[test]
fn only_a_missing_config_is_no_config() {
    let w = World::new(seed_with_nic());
    let (o, changed) = w.run(&["bind", "-v"]);
    assert!(stderr(&o).contains("no config at"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("error:"), "{}", stderr(&o));
    assert_eq!(changed, set(&OWN));
    // A dangling link is not "no config": something is there.
    symlink("nowhere.toml", w.t.path("etc/vfio-early.toml")).unwrap();
    let (o, _) = w.run(&["bind"]);
    assert!(stderr(&o).contains("error:"), "{}", stderr(&o));
}

#[test]
fn special_cmdline_kmsg_kconfig_pciids_and_record_are_refused_without_a_hang() {
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    fifo(&w.t.path("proc/cmdline"));
    fifo(&w.t.path("dev/kmsg"));
    // A dry run does not open the kernel log at all, so a FIFO there goes unnoticed.
    let (o, changed) = w.run(&["bind", "--dry-run"]);
    assert!(!stderr(&o).contains("kernel log"), "{}", stderr(&o));
    assert!(changed.is_empty(), "{changed:?}");
    let (o, changed) = w.run(&["bind"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("proc/cmdline: is a FIFO"), "{err}");
    assert!(
        err.contains("dev/kmsg: is a FIFO") && err.contains("nothing goes to the kernel log"),
        "{err}"
    );
    assert!(
        changed.is_subset(&set(&[
            "run/vfio-early",
            "run/vfio-early/lock",
            "run/vfio-early/log",
            "run/vfio-early/record.json",
            NIC_OVR,
            "sys/bus/pci/drivers/e1000e/unbind",
            "sys/bus/pci/drivers_probe",
        ])),
        "{changed:?}"
    );

    // check-kconfig PATH: a FIFO and a device, refused at once.
    for kind in ["fifo", "device"] {
        let p = w.t.path("config");
        let _ = specials(&p, kind);
        let (o, changed) = w.run(&["check-kconfig", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{kind}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("not a regular file"),
            "{kind}: {}",
            stderr(&o)
        );
        assert!(changed.is_empty());
    }
    // A 480 MB .config (sparse): refused from its size, never read.
    let big = w.t.path("big.config");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(480 << 20)
        .unwrap();
    let (o, _) = w.run(&["check-kconfig", big.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("503316480 bytes, more than the 67108864 bytes allowed"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(&big).unwrap();
    // pci.ids and record.json linked to /dev/zero: names fall back to numbers, the
    // record counts as absent.
    symlink("/dev/zero", w.t.path("usr/share/misc/pci.ids")).unwrap_or_else(|_| {
        std::fs::create_dir_all(w.t.path("usr/share/misc")).unwrap();
        symlink("/dev/zero", w.t.path("usr/share/misc/pci.ids")).unwrap();
    });
    let (o, changed) = w.run(&["groups"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0000:04:00.0"),
        "{}",
        stderr(&o)
    );
    assert!(changed.is_empty());
    std::fs::remove_file(w.t.path("run/vfio-early/record.json")).unwrap();
    symlink("/dev/zero", w.t.path("run/vfio-early/record.json")).unwrap();
    let (_, changed) = w.run(&["check"]);
    assert!(changed.is_empty());
}

#[test]
fn a_driver_override_linked_out_of_the_tree_is_not_written() {
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    std::fs::remove_file(w.t.path(NIC_OVR)).unwrap();
    symlink(w.out("driver_override"), w.t.path(NIC_OVR)).unwrap();
    let (o, changed) = w.run(&["bind"]);
    let err = stderr(&o);
    assert!(
        err.contains("driver_override: is a symbolic link; not written through"),
        "{err}"
    );
    assert!(err.contains("the group was rolled back"), "{err}");
    assert_eq!(changed, set(&OWN), "nothing in sys/ changed");
}

#[test]
fn a_driver_link_or_unbind_leading_out_is_refused_and_the_group_rolled_back() {
    // The device's `driver` link points at a directory outside the root.
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    let link = w.t.path("sys/devices/pci0000:00/0000:04:00.0/driver");
    std::fs::remove_file(&link).unwrap();
    symlink(w.out("drv"), &link).unwrap();
    let (o, changed) = w.run(&["bind"]);
    let err = stderr(&o);
    assert!(err.contains("a link on the way leads out of"), "{err}");
    assert!(
        err.contains("the group was rolled back") && !err.contains("incompletely"),
        "{err}"
    );
    assert_eq!(w.t.read(NIC_OVR), "\n", "override cleared again");
    let mut want = set(&OWN);
    want.insert(NIC_OVR.to_owned());
    assert_eq!(changed, want);

    // A relative link that climbs out past sys/.
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    let link = w.t.path("sys/devices/pci0000:00/0000:04:00.0/driver");
    std::fs::remove_file(&link).unwrap();
    let up = "../".repeat(
        w.t.path("sys/devices/pci0000:00/0000:04:00.0")
            .components()
            .count(),
    );
    symlink(format!("{up}{}", w.out("drv").display()), &link).unwrap();
    let (o, _) = w.run(&["bind"]);
    assert!(stderr(&o).contains("leads out of"), "{}", stderr(&o));

    // The host driver's unbind file itself is a link out.
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    let unbind = w.t.path("sys/bus/pci/drivers/e1000e/unbind");
    std::fs::remove_file(&unbind).unwrap();
    symlink(w.out("unbind"), &unbind).unwrap();
    let (o, _) = w.run(&["bind"]);
    assert!(
        stderr(&o).contains("unbind: is a symbolic link; not written through"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_linked_run_dir_sys_or_kmsg_is_refused() {
    // run/vfio-early links elsewhere: no record there, and the run says so.
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    symlink(w.out("run/vfio-early"), w.t.path("run/vfio-early")).unwrap();
    let (o, changed) = w.run(&["bind"]);
    let err = stderr(&o);
    assert!(
        err.contains("run/vfio-early: is not a directory (a link?)"),
        "{err}"
    );
    assert!(err.contains("could not write the boot record"), "{err}");
    assert!(err.contains("could not write the full log"), "{err}");
    assert!(
        !changed.iter().any(|c| c.starts_with("run/")),
        "{changed:?}"
    );

    // The old fixed temp name planted as a link: a unique name is used instead.
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    std::fs::create_dir_all(w.t.path("run/vfio-early")).unwrap();
    symlink(w.out("record.json"), w.t.path("run/vfio-early/record.tmp")).unwrap();
    symlink(w.out("victim"), w.t.path("run/vfio-early/log.tmp")).unwrap();
    let (o, _) = w.run(&["bind"]);
    assert!(record(&w.t)["devices"].is_array(), "{}", stderr(&o));
    let left: Vec<String> = std::fs::read_dir(w.t.path("run/vfio-early"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") && n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");

    // dev/kmsg links to a file outside (or the live log): not opened.
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    std::fs::remove_file(w.t.path("dev/kmsg")).unwrap();
    symlink(w.out("kmsg"), w.t.path("dev/kmsg")).unwrap();
    let (o, _) = w.run(&["bind"]);
    assert!(
        stderr(&o).contains("dev/kmsg: is a symbolic link"),
        "{}",
        stderr(&o)
    );

    // A root whose sys is the live /sys: refused before anything is read.
    let w = World::new(seed_with_nic());
    std::fs::rename(w.t.path("sys"), w.t.path("sys.fixture")).unwrap();
    symlink("/sys", w.t.path("sys")).unwrap();
    for args in [&["bind"][..], &["bind", "--dry-run"], &["groups"]] {
        let (o, changed) = w.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("is the running kernel's sysfs"),
            "{}",
            stderr(&o)
        );
        assert!(changed.is_empty(), "{changed:?}");
    }
}

#[test]
fn a_member_whose_link_disagrees_or_a_platform_member_refuses_the_whole_group() {
    for case in ["disagrees", "platform", "unlisted"] {
        let w = World::new(seed_with_nic());
        w.t.config("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n");
        let g1 = w.t.path("sys/kernel/iommu_groups/1/devices");
        match case {
            // The audio function's own link says group 9; group 1 still lists it.
            "disagrees" => {
                let l = w.t.path("sys/devices/pci0000:00/0000:01:00.1/iommu_group");
                std::fs::remove_file(&l).unwrap();
                std::fs::create_dir_all(w.t.path("sys/kernel/iommu_groups/9/devices")).unwrap();
                symlink("../../../kernel/iommu_groups/9", &l).unwrap();
            }
            "platform" => {
                std::fs::create_dir_all(w.t.path("sys/devices/platform/MSFT0101:00")).unwrap();
                symlink(
                    "../../../../devices/platform/MSFT0101:00",
                    g1.join("MSFT0101:00"),
                )
                .unwrap();
            }
            // The group directory does not list the audio function at all.
            _ => std::fs::remove_file(g1.join("0000:01:00.1")).unwrap(),
        }
        let (o, changed) = w.run(&["bind"]);
        let err = stderr(&o);
        assert!(
            err.contains("0000:01:00.0") && err.contains("refused"),
            "{case}: {err}"
        );
        assert!(
            err.contains("the kernel's group directory and the devices disagree"),
            "{case}: {err}"
        );
        assert_eq!(changed, set(&OWN), "{case}: nothing bound");
        let r = record(&w.t);
        for d in r["devices"].as_array().unwrap() {
            assert_ne!(d["action"], "bind", "{case}: {d}");
        }
        let (o, _) = w.run(&["groups", "--json"]);
        let g: Value = serde_json::from_slice(&o.stdout).unwrap();
        let one = g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == 1)
            .unwrap();
        assert_eq!(one["usable"], false, "{case}: {one}");
    }
}

#[test]
fn no_bridge_of_any_class_is_bound() {
    // functions = "slot" on the chipset's SMBus takes its ISA bridge (0x0601) along.
    let w = World::new(seed_machine(false));
    w.t.driver("vfio-pci");
    w.t.config("[[device]]\naddress = \"0000:00:14.0\"\nfunctions = \"slot\"\n");
    let (o, changed) = w.run(&["bind"]);
    let err = stderr(&o);
    assert!(
        err.contains("0000:00:14.3") && err.contains("a bridge (class 0x06xx"),
        "{err}"
    );
    assert!(
        !changed.iter().any(|c| c.ends_with("driver_override")),
        "{changed:?}"
    );
}

#[test]
fn a_pre_set_override_is_shown_and_restored_by_a_rollback() {
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    w.t.file(NIC_OVR, "pci-stub\n");
    let (o, changed) = w.run(&["bind", "--dry-run"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("driver_override is pci-stub now"), "{out}");
    assert!(changed.is_empty());
    let (o, _) = w.run(&["bind", "--dry-run", "--json"]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let nic = plan["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == "0000:04:00.0")
        .unwrap();
    assert_eq!(nic["driver_override"], "pci-stub");
    // A fixture never binds, so the group is rolled back: the override must read
    // pci-stub again, not be cleared.
    let (o, changed) = w.run(&["bind"]);
    assert!(stderr(&o).contains("rolled back"), "{}", stderr(&o));
    assert_eq!(w.t.read(NIC_OVR), "pci-stub");
    assert!(changed.contains("sys/bus/pci/drivers/e1000e/unbind"));
}

#[test]
fn a_stalled_group_of_eight_functions_costs_one_timeout() {
    let t = TestSysfs::new();
    t.driver("vfio-pci");
    for f in 0..8 {
        t.add(
            &Dev::new(&format!("0000:05:00.{f}"), (0x8086, 0x1520), 0x020000)
                .group(5)
                .driver("igbvf"),
        );
    }
    fifo(&t.path("sys/bus/pci/drivers/igbvf/unbind"));
    t.config(
        "[[device]]\naddress = \"0000:05:00.0\"\nfunctions = \"slot\"\n[bind]\ntimeout_ms = 400\n",
    );
    let w = World::new(t);
    let start = Instant::now();
    let (o, _) = w.run(&["bind"]);
    let took = start.elapsed();
    let err = stderr(&o);
    // One stall, not eight: the unbind file that stalled is never written again, and
    // the group's writes share one timeout.
    assert_eq!(err.matches("no answer after").count(), 1, "{err}");
    assert!(err.contains("the group was rolled back"), "{err}");
    assert!(
        took < Duration::from_millis(400 * 2) + Duration::from_secs(3),
        "{took:?}"
    );
    for f in 0..8 {
        let ovr = w.t.read(&format!(
            "sys/devices/pci0000:00/0000:05:00.{f}/driver_override"
        ));
        assert_eq!(ovr.trim(), "", "0000:05:00.{f}: {ovr:?}");
    }
}

#[test]
fn a_full_run_dir_is_reported_and_leaves_no_temp_file() {
    let w = World::new(seed_with_nic());
    // A config with a long comment makes the record larger than the limit.
    w.t.config(&format!("{NIC}# {}\n", "x".repeat(8000)));
    let before = snapshot(w.outside.path());
    let o = run_bounded(w.t.root(), &["bind"], |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // A write past RLIMIT_FSIZE fails with EFBIG, as a full tmpfs fails
                // with ENOSPC; the signal it also raises is ignored.
                nix::libc::signal(nix::libc::SIGXFSZ, nix::libc::SIG_IGN);
                let lim = nix::libc::rlimit {
                    rlim_cur: 4096,
                    rlim_max: 4096,
                };
                nix::libc::setrlimit(nix::libc::RLIMIT_FSIZE, &lim);
                Ok(())
            });
        }
    });
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("could not write the boot record"), "{err}");
    assert!(!w.t.path("run/vfio-early/record.json").exists());
    let left: Vec<String> = std::fs::read_dir(w.t.path("run/vfio-early"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(changed(&before, &snapshot(w.outside.path())).is_empty());
}

#[test]
fn a_second_run_waits_for_the_first() {
    let w = World::new(seed_with_nic());
    w.t.config(NIC);
    std::fs::create_dir_all(w.t.path("run/vfio-early")).unwrap();
    // This test holds the lock, as a first run would.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(w.t.path("run/vfio-early/lock"))
        .unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&lock);
    // SAFETY: a valid descriptor owned by `lock`.
    assert_eq!(unsafe { nix::libc::flock(fd, nix::libc::LOCK_EX) }, 0);
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(w.t.root())
        .arg("bind")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the second run did not wait"
    );
    assert!(
        !w.t.path("run/vfio-early/record.json").exists(),
        "nothing done while waiting"
    );
    drop(lock);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        !stderr(&o).contains("still holds the lock"),
        "{}",
        stderr(&o)
    );
    assert!(record(&w.t)["devices"].is_array());
}
