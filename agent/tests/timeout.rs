//! Bounded time (issue 7): an `unbind` that never returns (a wedged driver) must not
//! hold the boot. A FIFO without a reader in place of the host driver's `unbind` file
//! blocks the writer's `open` for ever, as a stuck kernel write would; `bind` must give
//! up on it after `[bind] timeout_ms`, name the device that stalled, roll its IOMMU
//! group back, and go on with the other groups.
//!
//! The bounds asserted are the configured timeout plus a slack for a loaded machine;
//! they prove "returns", not "fast".

// Helpers outside #[test] fns unwrap too: a fixture that cannot be built is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use testing::{seed_machine, seed_with_nic, Dev, TestSysfs};

/// Time for everything but the stalled write: process start, sysfs reads, rollback.
const SLACK: Duration = Duration::from_secs(3);

fn fifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap();
}

fn timed_bind(t: &TestSysfs) -> (Output, Duration) {
    let start = Instant::now();
    let o = t.run(env!("CARGO_BIN_EXE_vfio-early"), &["bind"]);
    (o, start.elapsed())
}

fn record(t: &TestSysfs) -> Value {
    serde_json::from_str(&t.read("run/vfio-early/record.json")).expect("record")
}

fn device<'a>(r: &'a Value, addr: &str) -> &'a Value {
    r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == addr)
        .unwrap_or_else(|| panic!("{addr}: {r}"))
}

#[test]
fn a_stalled_unbind_in_the_second_function_rolls_the_group_back_within_the_timeout() {
    let t = seed_machine(true);
    t.driver("vfio-pci");
    // The GPU's audio function is on snd_hda_intel, whose unbind never returns.
    fifo(&t.path("sys/bus/pci/drivers/snd_hda_intel/unbind"));
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n\n[bind]\ntimeout_ms = 400\n");
    let (o, took) = timed_bind(&t);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        took >= Duration::from_millis(400),
        "it did wait for the write: {took:?}"
    );
    assert!(
        took < Duration::from_millis(400) + SLACK,
        "bind took {took:?} with timeout_ms = 400"
    );

    // Which device stalled, on the console and in the kernel log.
    let stalled = "0000:01:00.1: unbinding from snd_hda_intel failed";
    for (what, text) in [("stderr", err.to_string()), ("kmsg", t.read("dev/kmsg"))] {
        assert_eq!(text.matches(stalled).count(), 1, "{what}: {text}");
        assert!(
            text.contains("no answer after 400 ms (the write was abandoned)"),
            "{what}: {text}"
        );
        assert!(
            text.contains("IOMMU group 1:") && text.contains("the group was rolled back"),
            "{what}: {text}"
        );
    }
    // The group is rolled back: both overrides cleared, both devices marked so.
    let r = record(&t);
    for a in ["0000:01:00.0", "0000:01:00.1"] {
        assert_eq!(
            t.read(&format!("sys/bus/pci/devices/{a}/driver_override"))
                .trim(),
            "",
            "{a}"
        );
        assert_eq!(device(&r, a)["outcome"], "rolled-back", "{a}: {r}");
        assert!(
            device(&r, a)["error"]
                .as_str()
                .is_some_and(|e| e.contains(stalled)),
            "{a}: {r}"
        );
    }
    assert_eq!(
        t.read("sys/bus/pci/drivers/radeon/unbind"),
        "0000:01:00.0",
        "the first function went first"
    );
}

#[test]
fn each_stalled_group_costs_one_timeout_and_the_others_still_run() {
    let t = seed_with_nic();
    t.add(
        &Dev::new("0000:05:00.0", (0x8086, 0x1533), 0x020000)
            .group(8)
            .driver("igb"),
    );
    fifo(&t.path("sys/bus/pci/drivers/e1000e/unbind"));
    fifo(&t.path("sys/bus/pci/drivers/igb/unbind"));
    t.config(
        "[[device]]\naddress = \"0000:04:00.0\"\n[[device]]\naddress = \"0000:05:00.0\"\n\
         [[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n[bind]\ntimeout_ms = 300\n",
    );
    let (o, took) = timed_bind(&t);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        took < Duration::from_millis(2 * 300) + SLACK,
        "two stalls took {took:?}"
    );
    for (addr, drv) in [("0000:04:00.0", "e1000e"), ("0000:05:00.0", "igb")] {
        assert!(
            err.contains(&format!("{addr}: unbinding from {drv} failed")),
            "{err}"
        );
        assert_eq!(
            t.read(&format!("sys/bus/pci/devices/{addr}/driver_override"))
                .trim(),
            ""
        );
    }
    // The GPU group was still attempted after the stalls (and, on a fixture, rolled
    // back because no kernel binds it): its host drivers got their unbind writes.
    assert_eq!(t.read("sys/bus/pci/drivers/radeon/unbind"), "0000:01:00.0");
    let r = record(&t);
    assert_eq!(device(&r, "0000:01:00.0")["outcome"], "rolled-back", "{r}");
    assert_eq!(r["errors"].as_array().unwrap().len(), 3, "{r}");
}

#[test]
fn the_timeout_is_the_configured_one() {
    // Same stall, a longer bound: the message carries the configured value.
    let t = TestSysfs::new();
    t.driver("vfio-pci");
    t.add(
        &Dev::new("0000:04:00.0", (0x8086, 0x10d3), 0x020000)
            .group(6)
            .driver("e1000e"),
    );
    fifo(&t.path("sys/bus/pci/drivers/e1000e/unbind"));
    t.config("[[device]]\naddress = \"0000:04:00.0\"\n[bind]\ntimeout_ms = 900\n");
    let (o, took) = timed_bind(&t);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no answer after 900 ms"), "{err}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(900) + SLACK,
        "{took:?}"
    );
}
