//! `vfio-early groups` against the seed guide's loop, on the same fixture tree.
//!
//! Builds a desktop-sized machine (48 PCI functions in 21 IOMMU groups, real ids,
//! the host's real `pci.ids` when present), then times:
//! - in process: load `pci.ids`, read every group, render (what `groups` does);
//! - the seed guide's loop (one `lspci -nns` per device), pointed at the fixture with
//!   `lspci -A linux-sysfs -O sysfs.path=ROOT/sys`, when `lspci` is installed.
//!
//! `VFIO_EARLY_BENCH_FIXTURE=DIR` keeps a copy of the fixture in DIR. The built
//! binary's figures, side by side with the seed loop on the guide's own desktop, come
//! from `tests/bench/run.sh`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testing::{Dev, TestSysfs};
use vfio_early::cmd::groups;
use vfio_early::host::Host;
use vfio_early::pciids::PciIds;

/// (address, vendor, device, class, group, driver)
type Function = (String, u16, u16, u32, u32, Option<&'static str>);

fn machine() -> Vec<Function> {
    let mut v: Vec<Function> = vec![
        (
            "0000:00:00.0".into(),
            0x8086,
            0x3e30,
            0x060000,
            0,
            Some("skl_uncore"),
        ),
        (
            "0000:00:01.0".into(),
            0x8086,
            0x1901,
            0x060400,
            1,
            Some("pcieport"),
        ),
        (
            "0000:01:00.0".into(),
            0x10de,
            0x1b80,
            0x030000,
            1,
            Some("vfio-pci"),
        ),
        (
            "0000:01:00.1".into(),
            0x10de,
            0x10f0,
            0x040300,
            1,
            Some("vfio-pci"),
        ),
        (
            "0000:00:02.0".into(),
            0x8086,
            0x3e92,
            0x030000,
            2,
            Some("i915"),
        ),
        ("0000:00:08.0".into(), 0x8086, 0x1911, 0x088000, 3, None),
        (
            "0000:00:12.0".into(),
            0x8086,
            0xa379,
            0x118000,
            4,
            Some("intel_pch_thermal"),
        ),
        (
            "0000:00:14.0".into(),
            0x8086,
            0xa36d,
            0x0c0330,
            5,
            Some("xhci_hcd"),
        ),
        ("0000:00:14.2".into(), 0x8086, 0xa36f, 0x050000, 5, None),
        (
            "0000:00:16.0".into(),
            0x8086,
            0xa360,
            0x078000,
            6,
            Some("mei_me"),
        ),
        (
            "0000:00:17.0".into(),
            0x8086,
            0xa352,
            0x010601,
            7,
            Some("ahci"),
        ),
        (
            "0000:00:1b.0".into(),
            0x8086,
            0xa340,
            0x060400,
            8,
            Some("pcieport"),
        ),
        (
            "0000:00:1c.0".into(),
            0x8086,
            0xa338,
            0x060400,
            9,
            Some("pcieport"),
        ),
        (
            "0000:00:1c.4".into(),
            0x8086,
            0xa33c,
            0x060400,
            10,
            Some("pcieport"),
        ),
        (
            "0000:00:1d.0".into(),
            0x8086,
            0xa330,
            0x060400,
            11,
            Some("pcieport"),
        ),
        ("0000:00:1f.0".into(), 0x8086, 0xa305, 0x060100, 12, None),
        (
            "0000:00:1f.3".into(),
            0x8086,
            0xa348,
            0x040300,
            12,
            Some("snd_hda_intel"),
        ),
        (
            "0000:00:1f.4".into(),
            0x8086,
            0xa323,
            0x0c0500,
            12,
            Some("i801_smbus"),
        ),
        ("0000:00:1f.5".into(), 0x8086, 0xa324, 0x0c8000, 12, None),
        (
            "0000:00:1f.6".into(),
            0x8086,
            0x15bc,
            0x020000,
            12,
            Some("e1000e"),
        ),
        (
            "0000:02:00.0".into(),
            0x144d,
            0xa808,
            0x010802,
            13,
            Some("nvme"),
        ),
        (
            "0000:03:00.0".into(),
            0x1b21,
            0x2142,
            0x0c0330,
            14,
            Some("xhci_hcd"),
        ),
        (
            "0000:04:00.0".into(),
            0x8086,
            0x1539,
            0x020000,
            15,
            Some("igb"),
        ),
        (
            "0000:05:00.0".into(),
            0x144d,
            0xa808,
            0x010802,
            16,
            Some("nvme"),
        ),
    ];
    // A second card behind a switch: 4 downstream ports, each with a device.
    v.push((
        "0000:06:00.0".into(),
        0x1002,
        0x1478,
        0x060400,
        17,
        Some("pcieport"),
    ));
    v.push((
        "0000:07:00.0".into(),
        0x1002,
        0x1479,
        0x060400,
        17,
        Some("pcieport"),
    ));
    v.push((
        "0000:08:00.0".into(),
        0x1002,
        0x73bf,
        0x030000,
        18,
        Some("amdgpu"),
    ));
    v.push((
        "0000:08:00.1".into(),
        0x1002,
        0xab28,
        0x040300,
        18,
        Some("snd_hda_intel"),
    ));
    v.push((
        "0000:08:00.2".into(),
        0x1002,
        0x73a6,
        0x0c0330,
        18,
        Some("xhci_hcd"),
    ));
    v.push((
        "0000:08:00.3".into(),
        0x1002,
        0x73a4,
        0x0c8000,
        18,
        Some("i2c-designware-pci"),
    ));
    // A multi-port NIC and a USB card in one group each.
    for f in 0..4u8 {
        v.push((
            format!("0000:09:00.{f}"),
            0x8086,
            0x1521,
            0x020000,
            19,
            Some("igb"),
        ));
    }
    for f in 0..8u8 {
        v.push((
            format!("0000:0a:00.{f}"),
            0x1912,
            0x0014,
            0x0c0330,
            20,
            Some("xhci_hcd"),
        ));
    }
    for f in 0..6u8 {
        v.push((
            format!("0000:0b:00.{f}"),
            0x1000,
            0x0097,
            0x010700,
            21,
            None,
        ));
    }
    v
}

/// 64 bytes of configuration space, as lspci reads it.
fn config_space(vendor: u16, device: u16, class: u32) -> Vec<u8> {
    let mut c = vec![0u8; 64];
    c[0..2].copy_from_slice(&vendor.to_le_bytes());
    c[2..4].copy_from_slice(&device.to_le_bytes());
    c[8] = 1; // revision
    c[9] = (class & 0xff) as u8;
    c[10] = ((class >> 8) & 0xff) as u8;
    c[11] = (class >> 16) as u8;
    c[14] = u8::from(class >> 8 == 0x0604); // header type 1 for bridges
    c
}

fn build() -> TestSysfs {
    let t = TestSysfs::new();
    for (addr, vendor, device, class, group, driver) in machine() {
        let mut d = Dev::new(&addr, (vendor, device), class).group(group);
        if let Some(drv) = driver {
            d = d.driver(drv);
        }
        t.add(&d);
        std::fs::write(
            t.path(&format!("sys/devices/pci0000:00/{addr}/config")),
            config_space(vendor, device, class),
        )
        .expect("config");
    }
    t.file("sys/firmware/acpi/tables/DMAR", "");
    match std::fs::read_to_string("/usr/share/misc/pci.ids")
        .or_else(|_| std::fs::read_to_string("/usr/share/hwdata/pci.ids"))
    {
        Ok(ids) => t.file("usr/share/hwdata/pci.ids", &ids),
        Err(_) => t.file("usr/share/hwdata/pci.ids", "8086  Intel Corporation\n"),
    };
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed()
            })
            .collect(),
    )
}

/// The seed guide's loop, with its paths pointed at the fixture.
fn seed_loop(root: &Path) -> String {
    let sys = root.join("sys");
    format!(
        "for iommu_group in $(find {sys}/kernel/iommu_groups/ -maxdepth 1 -mindepth 1 -type d); do \
         echo \"IOMMU group $(basename \"$iommu_group\")\"; \
         for device in $(ls -1 \"$iommu_group\"/devices/); do echo -n $'\\t'; \
         lspci -A linux-sysfs -O sysfs.path={sys}/bus/pci -nns \"$device\"; done; done",
        sys = sys.display()
    )
}

fn main() {
    let t = build();
    let host = Host::new(t.root());
    let n = machine().len();

    let mut out_len = 0;
    let inproc = time(50, || {
        let ids = PciIds::load(&host);
        let g = groups::collect(&host, ids.as_ref());
        out_len = groups::render(&g).len();
    });
    let ids_only = time(50, || {
        std::hint::black_box(PciIds::load(&host));
    });
    let no_ids = time(50, || {
        std::hint::black_box(groups::render(&groups::collect(&host, None)));
    });
    let devs = vfio_early::pci::scan(&host);
    let lookups = time(50, || {
        let ids = PciIds::load(&host).expect("pci.ids");
        for d in &devs {
            std::hint::black_box(ids.vendor(d.vendor));
            std::hint::black_box(ids.device_and_subsystem(
                d.vendor,
                d.device,
                d.subsystem_vendor,
                d.subsystem_device,
            ));
            std::hint::black_box(ids.subclass(d.class));
        }
    });
    println!("groups fixture: {n} devices, 21 groups");
    println!(
        "load pci.ids + name every device:               {:>9.3} ms",
        lookups.as_secs_f64() * 1e3
    );
    println!(
        "in-process groups (load pci.ids + read + render): {:>9.3} ms  ({out_len} bytes out)",
        inproc.as_secs_f64() * 1e3
    );
    println!(
        "  of which loading pci.ids:                     {:>9.3} ms",
        ids_only.as_secs_f64() * 1e3
    );
    println!(
        "  groups without names:                         {:>9.3} ms",
        no_ids.as_secs_f64() * 1e3
    );

    let script = seed_loop(t.root());
    let probe = Command::new("bash").arg("-c").arg(&script).output();
    match probe {
        Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).lines().count() > n => {
            let seed = time(5, || {
                let _ = Command::new("bash").arg("-c").arg(&script).output();
            });
            println!(
                "seed guide loop (lspci -nns per device):        {:>9.3} ms",
                seed.as_secs_f64() * 1e3
            );
            println!(
                "speed-up (in-process vs seed loop):             {:>9.1}x",
                seed.as_secs_f64() / inproc.as_secs_f64()
            );
        }
        Ok(o) => println!(
            "seed loop did not produce the listing (is lspci installed?): {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ),
        Err(e) => println!("seed loop not run: {e}"),
    }

    if let Some(dir) = std::env::var_os("VFIO_EARLY_BENCH_FIXTURE") {
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let status = Command::new("cp")
            .arg("-a")
            .arg(t.root().join("."))
            .arg(&dir)
            .status()
            .expect("cp");
        assert!(status.success(), "copying the fixture failed");
        println!("fixture kept in {}", Path::new(&dir).display());
    }
}
