//! Fixture trees shaped like the kernel's sysfs, for tests.
//!
//! [`TestSysfs`] writes the attribute files and symlinks exactly as the kernel shows
//! them: `sys/bus/pci/devices/<addr>` is a link into `sys/devices/pci0000:00/`, and
//! `driver`, `iommu_group` and each group's `devices/<addr>` are links. Attribute text
//! follows the kernel's format (`0x1002\n`, class `0x030000\n`, `driver_override`
//! reading `(null)\n`).
//!
//! A dev-dependency of the workspace (the product never links it): the library's unit
//! tests, the integration tests and the benchmarks build their trees with it. Records
//! built from values, without a tree, come from `vfio_early::pci::Device::new`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A fixture root on disk (deleted on drop).
#[derive(Debug)]
pub struct TestSysfs {
    dir: tempfile::TempDir,
}

/// One device to add.
#[derive(Debug, Clone)]
pub struct Dev {
    pub address: String,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    pub subsystem: (u16, u16),
    pub driver: Option<String>,
    pub group: Option<u32>,
    pub boot_vga: bool,
}

impl Dev {
    pub fn new(address: &str, id: (u16, u16), class: u32) -> Self {
        Self {
            address: address.to_owned(),
            vendor: id.0,
            device: id.1,
            class,
            subsystem: (0, 0),
            driver: None,
            group: None,
            boot_vga: false,
        }
    }
    pub fn driver(mut self, d: &str) -> Self {
        self.driver = Some(d.to_owned());
        self
    }
    pub fn group(mut self, g: u32) -> Self {
        self.group = Some(g);
        self
    }
    pub fn boot_vga(mut self) -> Self {
        self.boot_vga = true;
        self
    }
    pub fn subsystem(mut self, sv: u16, sd: u16) -> Self {
        self.subsystem = (sv, sd);
        self
    }
    /// The modalias the kernel derives from ids and class.
    pub fn modalias(&self) -> String {
        format!(
            "pci:v{:08X}d{:08X}sv{:08X}sd{:08X}bc{:02X}sc{:02X}i{:02X}",
            self.vendor,
            self.device,
            self.subsystem.0,
            self.subsystem.1,
            self.class >> 16,
            (self.class >> 8) & 0xff,
            self.class & 0xff
        )
    }
}

pub const RELEASE: &str = "6.1.0-test-amd64";

/// Runs a built `vfio-early` (`env!("CARGO_BIN_EXE_vfio-early")` in integration tests)
/// with `--root ROOT` and `NO_COLOR=1`, and waits for it.
pub fn run_at(bin: &str, root: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run vfio-early")
}

impl Default for TestSysfs {
    fn default() -> Self {
        Self::new()
    }
}

impl TestSysfs {
    pub fn new() -> Self {
        let t = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for d in [
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/kernel/iommu_groups",
            "proc/sys/kernel",
            "dev",
            "etc",
            "run",
        ] {
            fs::create_dir_all(t.root().join(d)).expect("mkdir");
        }
        t.file("sys/bus/pci/drivers_probe", "");
        t.file("proc/sys/kernel/osrelease", &format!("{RELEASE}\n"));
        t.file(
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n",
        );
        t.file("dev/kmsg", "");
        t
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a built `vfio-early` against this tree (see [`run_at`]).
    pub fn run(&self, bin: &str, args: &[&str]) -> std::process::Output {
        run_at(bin, self.root(), args)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Writes a file, creating parents.
    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
        self
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// Makes a driver directory with its `bind`/`unbind` files.
    pub fn driver(&self, name: &str) -> &Self {
        let d = format!("sys/bus/pci/drivers/{name}");
        self.file(&format!("{d}/bind"), "");
        self.file(&format!("{d}/unbind"), "");
        self
    }

    pub fn add(&self, dev: &Dev) -> &Self {
        let real = format!("sys/devices/pci0000:00/{}", dev.address);
        let attr = |name: &str, text: String| {
            self.file(&format!("{real}/{name}"), &text);
        };
        attr("vendor", format!("0x{:04x}\n", dev.vendor));
        attr("device", format!("0x{:04x}\n", dev.device));
        attr("subsystem_vendor", format!("0x{:04x}\n", dev.subsystem.0));
        attr("subsystem_device", format!("0x{:04x}\n", dev.subsystem.1));
        attr("class", format!("0x{:06x}\n", dev.class));
        attr("modalias", format!("{}\n", dev.modalias()));
        attr("driver_override", "(null)\n".to_owned());
        attr("numa_node", "-1\n".to_owned());
        if dev.class >> 8 == 0x0300 {
            attr("boot_vga", format!("{}\n", u8::from(dev.boot_vga)));
        }
        symlink(
            format!("../../../devices/pci0000:00/{}", dev.address),
            self.path(&format!("sys/bus/pci/devices/{}", dev.address)),
        )
        .expect("device link");
        if let Some(drv) = &dev.driver {
            self.bind_link(&dev.address, drv);
        }
        if let Some(g) = dev.group {
            let gdir = format!("sys/kernel/iommu_groups/{g}/devices");
            fs::create_dir_all(self.path(&gdir)).expect("group dir");
            symlink(
                format!("../../../kernel/iommu_groups/{g}"),
                self.path(&format!("{real}/iommu_group")),
            )
            .expect("group link");
            symlink(
                format!("../../../../devices/pci0000:00/{}", dev.address),
                self.path(&format!("{gdir}/{}", dev.address)),
            )
            .expect("group member link");
        }
        self
    }

    /// Points a device's `driver` link at a driver (creating the driver directory).
    pub fn bind_link(&self, address: &str, driver: &str) -> &Self {
        self.driver(driver);
        let link = self.path(&format!("sys/devices/pci0000:00/{address}/driver"));
        let _ = fs::remove_file(&link);
        symlink(format!("../../../bus/pci/drivers/{driver}"), link).expect("driver link");
        self
    }

    /// Makes a device an SR-IOV PF as the kernel shows one: `sriov_totalvfs`,
    /// `sriov_numvfs`, `sriov_drivers_autoprobe` (1, the kernel's default).
    pub fn sriov_pf(&self, address: &str, totalvfs: u16, numvfs: u16) -> &Self {
        let real = format!("sys/devices/pci0000:00/{address}");
        self.file(&format!("{real}/sriov_totalvfs"), &format!("{totalvfs}\n"));
        self.file(&format!("{real}/sriov_numvfs"), &format!("{numvfs}\n"));
        self.file(&format!("{real}/sriov_drivers_autoprobe"), "1\n");
        self
    }

    /// Links an added device as VF `index` of `pf`: the PF's `virtfnN` and the VF's
    /// `physfn`, as the kernel makes them.
    pub fn virtfn(&self, pf: &str, index: u16, vf: &str) -> &Self {
        symlink(
            format!("../{vf}"),
            self.path(&format!("sys/devices/pci0000:00/{pf}/virtfn{index}")),
        )
        .expect("virtfn link");
        symlink(
            format!("../{pf}"),
            self.path(&format!("sys/devices/pci0000:00/{vf}/physfn")),
        )
        .expect("physfn link");
        self
    }

    /// Adds `modules.alias` lines for the fixture kernel.
    pub fn aliases(&self, lines: &str) -> &Self {
        self.file(&format!("lib/modules/{RELEASE}/modules.alias"), lines)
    }

    pub fn config(&self, text: &str) -> &Self {
        self.file("etc/vfio-early.toml", text)
    }

    pub fn cmdline(&self, text: &str) -> &Self {
        self.file("proc/cmdline", text)
    }
}

/// The machine of the seed guide, after boot: group 1 is a root port, a Radeon HD 6450
/// and its HDMI audio; group 7 is SMBus, IDE, Azalia audio and an ISA bridge, each on
/// its host driver. With `booted = false` it is the same machine in the initramfs:
/// no endpoint driver loaded yet, `modules.alias` present.
pub fn seed_machine(booted: bool) -> TestSysfs {
    let t = TestSysfs::new();
    let drv = |d: Dev, name: &str| if booted { d.driver(name) } else { d };
    for d in [
        Dev::new("0000:00:02.0", (0x1022, 0x1412), 0x060400)
            .group(1)
            .driver("pcieport"),
        drv(
            Dev::new("0000:01:00.0", (0x1002, 0x6779), 0x030000)
                .group(1)
                .subsystem(0x1458, 0x21ac),
            "radeon",
        ),
        drv(
            Dev::new("0000:01:00.1", (0x1002, 0xaa98), 0x040300)
                .group(1)
                .subsystem(0x1458, 0xaa98),
            "snd_hda_intel",
        ),
        Dev::new("0000:00:01.0", (0x1002, 0x9992), 0x030000)
            .group(0)
            .boot_vga(),
        drv(
            Dev::new("0000:00:14.0", (0x1022, 0x780b), 0x0c0500).group(7),
            "piix4_smbus",
        ),
        drv(
            Dev::new("0000:00:14.1", (0x1022, 0x780c), 0x01018a).group(7),
            "pata_atiixp",
        ),
        drv(
            Dev::new("0000:00:14.2", (0x1022, 0x780d), 0x040300).group(7),
            "snd_hda_intel",
        ),
        drv(
            Dev::new("0000:00:14.3", (0x1022, 0x780e), 0x060100).group(7),
            "lpc_ich",
        ),
    ] {
        t.add(&d);
    }
    t.aliases(
        "# Aliases extracted from modules themselves.\n\
         alias pci:v00001002d00006779sv*sd*bc*sc*i* radeon\n\
         alias pci:v00001002d00009992sv*sd*bc*sc*i* radeon\n\
         alias pci:v*d*sv*sd*bc04sc03i00* snd_hda_intel\n\
         alias pci:v00001022d0000780Bsv*sd*bc*sc*i* i2c_piix4\n\
         alias pci:v00001022d0000780Csv*sd*bc*sc*i* pata_atiixp\n\
         alias pci:v00001022d0000780Esv*sd*bc*sc*i* lpc_ich\n",
    );
    t
}

/// The seed machine after boot ([`seed_machine`]) with vfio-pci present, plus a NIC
/// (8086:10d3 on e1000e) alone in group 6 at `0000:04:00.0`.
pub fn seed_with_nic() -> TestSysfs {
    let t = seed_machine(true);
    t.driver("vfio-pci");
    t.add(
        &Dev::new("0000:04:00.0", (0x8086, 0x10d3), 0x020000)
            .group(6)
            .driver("e1000e"),
    );
    t
}

/// One entry of a [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file: its first 4 MiB and its mtime (a write of the same text shows).
    File {
        /// The content.
        content: Vec<u8>,
        /// The modification time.
        mtime: SystemTime,
    },
    /// A symlink, by its target as written.
    Link(PathBuf),
    /// A directory.
    Dir,
    /// A FIFO, socket or device: never opened.
    Special(&'static str),
}

/// Every entry under `dir`, by relative path, without following links or opening
/// anything but regular files.
///
/// # Panics
/// When the tree cannot be read: a fixture that cannot be read is a failed test.
#[allow(clippy::unwrap_used)]
pub fn snapshot(dir: &Path) -> BTreeMap<String, Entry> {
    fn walk(top: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(top).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&p).unwrap();
            let ft = meta.file_type();
            let entry = if ft.is_symlink() {
                Entry::Link(fs::read_link(&p).unwrap())
            } else if ft.is_dir() {
                walk(top, &p, out);
                Entry::Dir
            } else if ft.is_file() {
                let mut content = Vec::new();
                fs::File::open(&p)
                    .unwrap()
                    .take(4 << 20)
                    .read_to_end(&mut content)
                    .unwrap();
                Entry::File {
                    content,
                    mtime: meta.modified().unwrap(),
                }
            } else if ft.is_fifo() {
                Entry::Special("fifo")
            } else if ft.is_socket() {
                Entry::Special("socket")
            } else {
                Entry::Special("device")
            };
            out.insert(rel, entry);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Paths that differ between two snapshots (changed, created or removed).
pub fn changed(
    before: &BTreeMap<String, Entry>,
    after: &BTreeMap<String, Entry>,
) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}
