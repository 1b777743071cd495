//! `groups` over fixture machines: names from pci.ids, usability, filters, JSON, and
//! the no-IOMMU answer.

mod check_support;

use check_support::*;
use testing::seed_machine;
use vfio_early::cmd::groups::{self, Args};
use vfio_early::host::Host;
use vfio_early::pciids::PciIds;
use vfio_early::plan::{Handover, OptIn};

/// Lines of pciutils' pci.ids for the seed guide's machine, verbatim.
const PCI_IDS: &str = "#\tList of PCI ID's\n\
1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\
\t6779  Caicos [Radeon HD 6450/7450/8450 / R5 230 OEM]\n\
\t\t1458 21ac  Radeon HD 6450\n\
\taa98  Caicos HDMI Audio [Radeon HD 6450 / 7450/8450/8490 OEM / R5 230/235/235X OEM]\n\
1022  Advanced Micro Devices, Inc. [AMD]\n\
\t1412  Family 15h (Models 10h-1fh) Processor Root Port\n\
\t780b  FCH SMBus Controller\n\
C 03  Display controller\n\
\t00  VGA compatible controller\n\
C 04  Multimedia controller\n\
\t03  Audio device\n\
C 06  Bridge\n\
\t04  PCI bridge\n\
\t\t00  Normal decode\n";

fn seed_with_ids(path: &str) -> testing::TestSysfs {
    let t = seed_machine(true);
    t.file(path, PCI_IDS);
    t.file("sys/firmware/acpi/tables/IVRS", "");
    t
}

#[test]
fn groups_with_names_drivers_and_usability() {
    let t = seed_with_ids("usr/share/hwdata/pci.ids");
    let host = Host::new(t.root());
    let ids = PciIds::load(&host).unwrap();
    let g = groups::collect(&host, Some(&ids));
    assert!(g.iommu.on);
    assert_eq!(g.iommu.vendor, Some(vfio_early::iommu::Vendor::Amd));
    let nums: Vec<u32> = g.groups.iter().map(|x| x.group).collect();
    assert_eq!(nums, [0, 1, 7]);
    let g1 = &g.groups[1];
    // The card is still on its host drivers: the normal state before any config, so
    // the group is possible (not impossible), and the planner says what to select.
    assert!(!g1.usable, "radeon and snd_hda_intel hold group 1");
    assert_eq!(g1.handover, Handover::Possible);
    let select: Vec<String> = g1.select.iter().map(ToString::to_string).collect();
    assert_eq!(select, ["0000:01:00.0", "0000:01:00.1"], "never the bridge");
    assert!(g1.needs.is_empty() && g1.blockers.is_empty());
    let gpu = &g1.devices[1];
    assert_eq!(
        gpu.vendor_name,
        Some("Advanced Micro Devices, Inc. [AMD/ATI]")
    );
    assert_eq!(
        gpu.device_name,
        Some("Caicos [Radeon HD 6450/7450/8450 / R5 230 OEM]")
    );
    assert_eq!(gpu.subsystem_name, Some("Radeon HD 6450"));
    assert_eq!(gpu.class_name, "VGA compatible controller");
    assert!(!gpu.bridge);
    assert!(g1.devices[0].bridge);
    // Group 0: the boot display (radeon would claim it): possible with the opt-in.
    assert_eq!(g.groups[0].handover, Handover::Possible);
    assert_eq!(g.groups[0].needs, [OptIn::AllowBootVga]);
    assert!(g.groups[0].devices[0].boot_vga);
    // Group 7, the chipset: its ISA bridge (0x0601, on lpc_ich) can never go to vfio-pci,
    // so the group cannot either.
    assert_eq!(g.groups[2].handover, Handover::Impossible);
    assert!(
        g.groups[2]
            .blockers
            .iter()
            .any(|b| b.contains("0000:00:14.3")),
        "{:?}",
        g.groups[2].blockers
    );

    let text = groups::render(&g);
    assert!(
        text.contains("IOMMU group 1: possible: a config selecting 0000:01:00.0, 0000:01:00.1 hands it to vfio-pci\n"),
        "{text}"
    );
    assert!(text.contains("IOMMU group 7: impossible"), "{text}");
    assert!(
        text.contains(
            "\t0000:01:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] \
             Caicos [Radeon HD 6450/7450/8450 / R5 230 OEM] [1002:6779] (Radeon HD 6450) driver=radeon endpoint GPU 2\n"
        ),
        "{text}"
    );
    assert!(text.contains("\t0000:00:02.0 PCI bridge [0604]:"), "{text}");
    assert!(text.contains("driver=pcieport bridge"), "{text}");
}

#[test]
fn binding_the_card_makes_its_group_usable() {
    let t = seed_with_ids("usr/share/misc/pci.ids");
    t.bind_link("0000:01:00.0", "vfio-pci");
    t.bind_link("0000:01:00.1", "vfio-pci");
    let g = groups::collect(&Host::new(t.root()), None);
    assert!(g.groups[1].usable, "{:?}", g.groups[1].blockers);
    assert_eq!(g.groups[1].handover, Handover::Ready);
    // Without pci.ids: numeric ids and the built-in class names.
    assert_eq!(g.groups[1].devices[1].vendor_name, None);
    assert_eq!(g.groups[1].devices[1].class_name, "VGA controller");
    let text = groups::render(&g);
    assert!(
        text.contains(
            "0000:01:00.0 VGA controller [0300]: [1002:6779] driver=vfio-pci endpoint GPU 2"
        ),
        "{text}"
    );
}

#[test]
fn filters() {
    let t = seed_with_ids("usr/share/hwdata/pci.ids");
    let host = Host::new(t.root());
    let all = || groups::collect(&host, None);
    let gpu = groups::filter(
        all(),
        &Args {
            gpu: true,
            ..Args::default()
        },
    )
    .unwrap();
    assert_eq!(
        gpu.groups.iter().map(|g| g.group).collect::<Vec<_>>(),
        [0, 1]
    );
    let seven = groups::filter(
        all(),
        &Args {
            group: Some(7),
            ..Args::default()
        },
    )
    .unwrap();
    assert_eq!(seven.groups.len(), 1);
    assert_eq!(seven.groups[0].devices.len(), 4);
    let dev = groups::filter(
        all(),
        &Args {
            device: Some("0000:01:00.1".parse().unwrap()),
            ..Args::default()
        },
    )
    .unwrap();
    assert_eq!(dev.groups[0].group, 1);
    assert!(groups::filter(
        all(),
        &Args {
            group: Some(9),
            ..Args::default()
        }
    )
    .unwrap_err()
    .to_string()
    .contains("no IOMMU group 9"));
    assert!(groups::filter(
        all(),
        &Args {
            device: Some("0000:05:00.0".parse().unwrap()),
            ..Args::default()
        }
    )
    .is_err());
}

#[test]
fn json_shape() {
    let t = seed_with_ids("usr/share/hwdata/pci.ids");
    let host = Host::new(t.root());
    let ids = PciIds::load(&host);
    let v = serde_json::to_value(groups::collect(&host, ids.as_ref())).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["iommu"]["on"], true);
    assert_eq!(v["iommu"]["vendor"], "amd");
    let d = &v["groups"][1]["devices"][1];
    assert_eq!(d["address"], "0000:01:00.0");
    assert_eq!(d["id"], "1002:6779");
    assert_eq!(d["subsystem"], "1458:21ac");
    assert_eq!(d["class"], "030000");
    assert_eq!(d["driver"], "radeon");
    assert_eq!(d["bridge"], false);
    assert!(d.get("display").is_none());
    assert_eq!(v["groups"][1]["usable"], false);
    assert_eq!(v["groups"][1]["handover"], "possible");
    assert_eq!(v["groups"][1]["select"][1], "0000:01:00.1");
    assert_eq!(v["groups"][1]["needs"], serde_json::json!([]));
    assert_eq!(v["groups"][0]["needs"][0], "allow_boot_vga");
    assert_eq!(d["gpu"], 2);
    assert!(
        v["groups"][1]["devices"][0].get("gpu").is_none(),
        "only GPUs carry a number"
    );
}

#[test]
fn without_iommu_says_why_and_how() {
    let t = q35(false);
    t.file("sys/firmware/acpi/tables/DMAR", "");
    t.file("dev/kmsg", &no_iommu_log());
    t.file("proc/interrupts", INTERRUPTS_PLAIN);
    t.cmdline("console=ttyS0 panic=-1\n");
    let g = groups::collect(&Host::new(t.root()), None);
    assert!(!g.iommu.on);
    assert!(g.groups.is_empty());
    assert!(g.iommu.reason.as_deref().unwrap().contains("DMAR"));
    assert!(g.iommu.fix.as_deref().unwrap().contains("intel_iommu=on"));
    let text = groups::render(&g);
    assert!(text.starts_with("No IOMMU groups: "), "{text}");
    assert!(text.contains("fix: add intel_iommu=on"), "{text}");

    t.cmdline("console=ttyS0 intel_iommu=on iommu=off\n");
    let g = groups::collect(&Host::new(t.root()), None);
    assert!(g.iommu.reason.as_deref().unwrap().contains("iommu=off"));
    assert_eq!(g.iommu.fix.as_deref(), Some("remove iommu=off"));
}
