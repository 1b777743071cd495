//! Fixture machines for the `check` and `groups` tests.
//!
//! Kernel log text here is real kernel output, quoted from boots of Debian's 6.1
//! kernel under QEMU (`/work/shared/qemu/RECIPES.md`) and from the seed guide's AMD
//! host; records use the `/dev/kmsg` format, device messages with their
//! `SUBSYSTEM=`/`DEVICE=` continuation lines as the kernel writes them.
#![allow(dead_code, clippy::unwrap_used)]

use testing::{Dev, TestSysfs};

/// `/dev/kmsg` records from text lines: (level, text, device address for the
/// dictionary). Sequence numbers start at `first_seq`.
pub fn kmsg(first_seq: u64, lines: &[(u8, &str, Option<&str>)]) -> String {
    let mut out = String::new();
    for (i, (level, text, dev)) in lines.iter().enumerate() {
        let seq = first_seq + i as u64;
        out.push_str(&format!("{level},{seq},{},-;{text}\n", 1000 + seq * 12_345));
        if let Some(d) = dev {
            out.push_str(&format!(" SUBSYSTEM=pci\n DEVICE=+pci:{d}\n"));
        }
    }
    out
}

pub const LINUX: (u8, &str, Option<&str>) = (
    5,
    "Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)",
    None,
);

/// An Intel VT-d boot (q35 + intel-iommu, `intel_iommu=on iommu=pt`).
pub fn intel_log() -> String {
    kmsg(
        0,
        &[
            LINUX,
            (6, "Command line: console=ttyS0 intel_iommu=on iommu=pt panic=-1", None),
            (6, "ACPI: DMAR 0x000000007FFE20C9 000050 (v01 BOCHS  BXPC     00000001 BXPC 00000001)", None),
            (6, "DMAR: IOMMU enabled", None),
            (6, "DMAR: Host address width 39", None),
            (6, "DMAR-IR: Enabled IRQ remapping in xapic mode", None),
            (6, "DMAR: Intel(R) Virtualization Technology for Directed I/O", None),
            (6, "pci 0000:00:03.0: Adding to iommu group 1", Some("0000:00:03.0")),
            (6, "AMD-Vi: AMD IOMMUv2 functionality not available on this system - This is not a bug.", None),
        ],
    )
}

/// An AMD-Vi boot (the seed guide's host: `iommu=on amd_iommu=on`).
pub fn amd_log() -> String {
    kmsg(
        0,
        &[
            LINUX,
            (5, "AMD-Vi: Unknown option - 'on'", None),
            (6, "AMD-Vi: Found IOMMU at 0000:00:00.2 cap 0x40", None),
            (6, "AMD-Vi: Interrupt remapping enabled", None),
            (6, "AMD-Vi: Lazy IO/TLB flushing enabled", None),
        ],
    )
}

/// A boot without an IOMMU, where the agent's bind failed.
pub fn no_iommu_log() -> String {
    kmsg(
        0,
        &[
            LINUX,
            (6, "Command line: console=ttyS0 panic=-1", None),
            (6, "AMD-Vi: AMD IOMMUv2 functionality not available on this system - This is not a bug.", None),
            (4, "vfio-pci: probe of 0000:00:03.0 failed with error -22", None),
        ],
    )
}

/// A long-running host: the ring buffer has rotated, no boot line is left.
pub fn rotated_log() -> String {
    kmsg(
        48_211,
        &[
            (6, "usb 1-1: USB disconnect, device number 2", None),
            (6, "e1000e 0000:00:03.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx", Some("0000:00:03.0")),
        ],
    )
}

pub const INTERRUPTS_IR: &str = "           CPU0       CPU1       \n  0:         45          0   IR-IO-APIC    2-edge      timer\n  9:          0          0   IR-IO-APIC    9-fasteoi   acpi\n 24:          0          0  IR-PCI-MSI 49152-edge      eth0\nNMI:          0          0   Non-maskable interrupts\n";
pub const INTERRUPTS_PLAIN: &str = "           CPU0       CPU1       \n  0:         45          0   IO-APIC    2-edge      timer\n  9:          0          0   IO-APIC    9-fasteoi   acpi\nNMI:          0          0   Non-maskable interrupts\n";

/// Marks the IOMMU on: ACPI table, sysfs unit.
pub fn iommu_on(t: &TestSysfs, table: &str, unit: &str) {
    t.file(&format!("sys/firmware/acpi/tables/{table}"), "");
    t.file("sys/firmware/acpi/tables/FACP", "");
    t.file(&format!("sys/devices/virtual/iommu/{unit}/uevent"), "");
    std::fs::create_dir_all(t.path("sys/class/iommu")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../devices/virtual/iommu/{unit}"),
        t.path(&format!("sys/class/iommu/{unit}")),
    )
    .unwrap();
}

/// The machine of the QEMU Intel boot: host bridge, e1000e at 00:03.0, bochs-display
/// at 00:04.0 (boot display), the ICH9 functions in one group, and a GPU-like card
/// (display + audio) behind a root port at 00:07.0.
pub fn q35(with_groups: bool) -> TestSysfs {
    let t = TestSysfs::new();
    let g = |d: Dev, n: u32| if with_groups { d.group(n) } else { d };
    for d in [
        g(Dev::new("0000:00:00.0", (0x8086, 0x29c0), 0x060000), 0),
        g(
            Dev::new("0000:00:03.0", (0x8086, 0x10d3), 0x020000)
                .subsystem(0x8086, 0x0000)
                .driver("e1000e"),
            1,
        ),
        g(
            Dev::new("0000:00:04.0", (0x1234, 0x1111), 0x030000)
                .subsystem(0x1af4, 0x1100)
                .driver("bochs-drm")
                .boot_vga(),
            2,
        ),
        g(
            Dev::new("0000:00:07.0", (0x1b36, 0x000c), 0x060400).driver("pcieport"),
            3,
        ),
        g(
            Dev::new("0000:01:00.0", (0x1234, 0x1111), 0x030000).subsystem(0x1af4, 0x1100),
            4,
        ),
        g(
            Dev::new("0000:01:00.1", (0x8086, 0x293e), 0x040300).subsystem(0x1af4, 0x1100),
            4,
        ),
        g(
            Dev::new("0000:00:1f.0", (0x8086, 0x2918), 0x060100).driver("lpc_ich"),
            5,
        ),
        g(
            Dev::new("0000:00:1f.2", (0x8086, 0x2922), 0x010601).driver("ahci"),
            5,
        ),
        g(
            Dev::new("0000:00:1f.3", (0x8086, 0x2930), 0x0c0500).driver("i801_smbus"),
            5,
        ),
    ] {
        t.add(&d);
    }
    t.file(
        "sys/devices/pci0000:00/0000:01:00.0/resource",
        "0x00000000c0000000 0x00000000c0ffffff 0x0000000000042208\n\
0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
0x00000000c1000000 0x00000000c1000fff 0x0000000000040200\n\
0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
0x00000000c1010000 0x00000000c101ffff 0x0000000000046200\n",
    );
    t.file(
        "sys/devices/pci0000:00/0000:01:00.1/resource",
        "0x00000000c1020000 0x00000000c1023fff 0x0000000000040200\n",
    );
    t.file(
        "proc/iomem",
        concat!(
            "00000000-00000fff : Reserved\n",
            "00001000-0009ffff : System RAM\n",
            "00100000-7ffdffff : System RAM\n",
            "c0000000-febfffff : PCI Bus 0000:00\n",
            "  c0000000-c1ffffff : PCI Bus 0000:01\n",
            "    c0000000-c0ffffff : 0000:01:00.0\n",
            "    c1000000-c1000fff : 0000:01:00.0\n",
            "    c1020000-c1023fff : 0000:01:00.1\n",
            "  fd000000-fdffffff : 0000:00:04.0\n",
            "    fd000000-fd2fffff : BOOTFB\n",
        ),
    );
    t.file("proc/interrupts", INTERRUPTS_IR);
    t
}

/// Moves the boot framebuffer into the passthrough card's BAR 0 (a UEFI boot where
/// the firmware drew on the card that is to be passed through).
pub fn framebuffer_on_card(t: &TestSysfs) {
    t.file(
        "proc/iomem",
        concat!(
            "00000000-00000fff : Reserved\n",
            "00001000-0009ffff : System RAM\n",
            "c0000000-febfffff : PCI Bus 0000:00\n",
            "  c0000000-c1ffffff : PCI Bus 0000:01\n",
            "    c0000000-c0ffffff : 0000:01:00.0\n",
            "      c0000000-c02fffff : BOOTFB\n",
            "    c1000000-c1000fff : 0000:01:00.0\n",
            "  fd000000-fdffffff : 0000:00:04.0\n",
        ),
    );
}

pub const CARD_CONFIG: &str = "[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n";
