//! The arm64 facts: an Arm SMMU proven from the firmware's description and the
//! kernel, and MSI isolation from the GICv3 ITS.
//!
//! - **Firmware**: a direct `-kernel` (device tree) boot describes the PCIe host's
//!   translation with an `iommu-map` property on its node
//!   (`/sys/firmware/devicetree/base/pcie@.../iommu-map`); a UEFI/ACPI boot has an
//!   `IORT` table (read by the caller with the other ACPI tables).
//! - **Kernel**: `arm-smmu-v3`/`arm-smmu` units in `/sys/class/iommu` (named
//!   `smmu3.0x...`), the driver's probe line (`arm-smmu-v3 9050000.smmuv3: ias 44-bit,
//!   oas 44-bit ...`).
//! - **MSI isolation**: the ITS tags each MSI with the sending device's ID, which
//!   vfio_iommu_type1 counts as interrupt remapping. Its interrupt chips in
//!   `/proc/interrupts` are named `ITS-MSI` (PCI), `ITS-pMSI`, `ITS-fMSI`; the log says
//!   `ITS@0x...: allocated ... Devices` or `PCI/MSI: .../its@... domain created`. A GICv2
//!   (QEMU's `virt` default) has no ITS, and its `GICv2m` MSI frame isolates nothing.
//! - **Groups at probe**: on 6.1 arm64 the SMMU driver gives a PCI device its IOMMU
//!   group when a driver probes it (the firmware's stream ID is read then), so at boot,
//!   before coldplug, endpoints have no group yet ([`Facts::groups_at_probe`]).
//!
//! No VT-d or AMD-Vi words here; the SMMU's command-line switches (`iommu.passthrough`,
//! `arm-smmu-v3.disable_bypass`) are judged in `cmdline_check`.

use crate::host::Host;
use crate::report::{Finding, Status};

/// The device tree as the kernel exports it, relative to the host root.
pub(crate) const DEVICE_TREE: &str = "sys/firmware/devicetree/base";

/// What the host shows of an Arm SMMU and the ITS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Device-tree nodes (`pcie@10000000`) whose `iommu-map` puts PCI behind an IOMMU.
    pub dt_iommu_map: Vec<String>,
    /// Whether a device tree is exported at all (a DT boot).
    pub dt_visible: bool,
    /// Interrupt chips in `/proc/interrupts` whose name starts with `ITS`.
    pub its_chips: Vec<String>,
}

impl Facts {
    /// Reads the device tree's PCI hosts (top level and one level down, as on SoCs)
    /// and the ITS chips of `/proc/interrupts` (given, already read).
    pub fn gather(host: &Host, interrupts: Option<&str>) -> Self {
        let mut dt_iommu_map = Vec::new();
        let mut look = |dir: String, node: &str| {
            if is_pci_host(node) && host.exists(format!("{dir}/{node}/iommu-map")) {
                dt_iommu_map.push(node.to_owned());
            }
        };
        let top = host.list(DEVICE_TREE);
        for node in &top {
            look(DEVICE_TREE.to_owned(), node);
        }
        for bus in top.iter().filter(|n| is_bus(n)) {
            let dir = format!("{DEVICE_TREE}/{bus}");
            for node in host.list(&dir) {
                look(dir.clone(), &node);
            }
        }
        dt_iommu_map.sort();
        dt_iommu_map.dedup();
        Self {
            dt_iommu_map,
            dt_visible: host.exists(DEVICE_TREE),
            its_chips: interrupts.map(its_chips).unwrap_or_default(),
        }
    }

    /// Whether the firmware describes PCI behind an IOMMU in the device tree.
    pub fn dt_describes_iommu(&self) -> bool {
        !self.dt_iommu_map.is_empty()
    }
}

/// Whether this host gives PCI devices their IOMMU group only when a driver probes
/// them: an Arm SMMU unit is registered (6.1 reads a device's stream ID from the
/// firmware at probe). A driverless device without a group gets one when vfio-pci
/// takes it.
pub(crate) fn groups_at_probe(units: &[String]) -> bool {
    units.iter().any(|u| is_smmu_unit(u))
}

fn is_pci_host(node: &str) -> bool {
    node.starts_with("pcie@") || node.starts_with("pci@") || node == "pcie" || node == "pci"
}

fn is_bus(node: &str) -> bool {
    node == "soc" || node.starts_with("soc@") || node.starts_with("bus@")
}

/// The `ITS` interrupt chips named in `/proc/interrupts` (`ITS-MSI`, `ITS-pMSI`...).
pub(crate) fn its_chips(interrupts: &str) -> Vec<String> {
    let mut chips: Vec<String> = interrupts
        .lines()
        .flat_map(str::split_whitespace)
        .filter(|w| w.starts_with("ITS"))
        .map(str::to_owned)
        .collect();
    chips.sort();
    chips.dedup();
    chips
}

/// What one kernel log line says about the SMMU or the ITS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLine {
    /// The SMMU driver probed a unit: the IOMMU came up.
    SmmuProbed,
    /// The ITS is there and serves MSIs: MSI isolation.
    Its,
    /// A GICv2m frame serves MSIs: no isolation.
    Gicv2m,
}

/// Classifies one line of log text.
pub(crate) fn classify(t: &str) -> Option<LogLine> {
    let smmu = t.starts_with("arm-smmu-v3 ") || t.starts_with("arm-smmu ");
    if smmu && (t.contains(": ias ") || t.contains("probing hardware configuration")) {
        Some(LogLine::SmmuProbed)
    } else if (t.starts_with("ITS@") && t.contains(": allocated "))
        || (t.starts_with("PCI/MSI: ") && t.contains("its@") && t.ends_with("domain created"))
    {
        Some(LogLine::Its)
    } else if t.starts_with("GICv2m: ") {
        Some(LogLine::Gicv2m)
    } else {
        None
    }
}

/// Whether a sysfs IOMMU unit is an Arm SMMU (`smmu3.0x0000000009050000`).
pub(crate) fn is_smmu_unit(name: &str) -> bool {
    name.contains("smmu")
}

/// The hint for an Arm host whose kernel shows no SMMU.
pub(crate) fn why_off(facts: &Facts, iort: bool) -> (String, String) {
    if iort || facts.dt_describes_iommu() {
        let src = if iort {
            "the ACPI IORT table".to_owned()
        } else {
            format!(
                "the device tree ({} iommu-map)",
                facts.dt_iommu_map.join(", ")
            )
        };
        (
            format!("{src} puts PCI behind an Arm SMMU, but the kernel shows no SMMU unit and no group"),
            "check that the kernel has CONFIG_ARM_SMMU_V3 built in (vfio-early check-kconfig) and look \
             for arm-smmu-v3 errors in dmesg"
                .to_owned(),
        )
    } else if facts.dt_visible {
        (
            "the device tree has no iommu-map for the PCIe host: the firmware puts no SMMU in front of PCI"
                .to_owned(),
            "enable the SMMU in the firmware settings, or boot with a device tree that describes it \
             (QEMU: -M virt,iommu=smmuv3)"
                .to_owned(),
        )
    } else {
        (
            "no Arm SMMU in the firmware's description (no IORT table, no device-tree iommu-map)"
                .to_owned(),
            "enable the SMMU in the firmware settings (ACPI hosts describe it in the IORT table)"
                .to_owned(),
        )
    }
}

/// The MSI-isolation finding of an Arm host: the ITS, proven by its interrupt chips
/// or its log line, else not there.
pub(crate) fn msi_isolation(
    facts: &Facts,
    log_its: Option<&str>,
    log_gicv2m: Option<&str>,
    interrupts_readable: bool,
    iommu_on: bool,
) -> (Option<bool>, Finding) {
    const CHECK: &str = "msi isolation";
    if !facts.its_chips.is_empty() {
        let d = format!(
            "GICv3 ITS, per /proc/interrupts: {}",
            facts.its_chips.join(", ")
        );
        return (Some(true), Finding::new(CHECK, Status::Pass, d));
    }
    if let Some(l) = log_its {
        let d = format!("GICv3 ITS, per the kernel log: \"{l}\"");
        return (Some(true), Finding::new(CHECK, Status::Pass, d));
    }
    let why = match log_gicv2m {
        Some(l) => format!("MSIs go through a GICv2m frame (\"{l}\"), which does not isolate them"),
        None if interrupts_readable => "no ITS interrupt chip in /proc/interrupts".to_owned(),
        None => {
            let d = "unknown: neither /proc/interrupts nor the log shows an ITS";
            return (None, Finding::new(CHECK, Status::Info, d));
        }
    };
    if !iommu_on {
        return (
            Some(false),
            Finding::new(
                CHECK,
                Status::NotApplicable,
                format!("off ({why}): the IOMMU is off"),
            ),
        );
    }
    (
        Some(false),
        Finding::new(CHECK, Status::Warn, format!("off: {why}")).hint(
            "without the GICv3 ITS vfio refuses devices (\"No interrupt remapping support\") unless \
             vfio_iommu_type1.allow_unsafe_interrupts=1; the kernel needs CONFIG_ARM_GIC_V3_ITS and a GICv3 \
             with an ITS (QEMU: -M virt,gic-version=3)",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/interrupts` of the QEMU virt machine with gic-version=3 (6.1).
    const INTERRUPTS_GICV3: &str = "           CPU0
 11:       3541     GICv3  27 Level     arch_timer
 13:          0     GICv3  33 Level     uart-pl011
 20:          0     GICv3  74 Edge      arm-smmu-v3-evtq
 21:          0   ITS-MSI 8192 Edge      PCIe PME, aerdrv, pciehp
 24:          1   ITS-MSI 1048576 Edge      snd_hda_intel:card0
IPI0:         0       Rescheduling interrupts
";

    #[test]
    fn its_chips_from_interrupts() {
        assert_eq!(its_chips(INTERRUPTS_GICV3), ["ITS-MSI"]);
        assert!(
            its_chips(" 11: 35 GICv2 27 Level arch_timer\n 40: 0 GICv2m-MSI 0 Edge aerdrv\n")
                .is_empty()
        );
    }

    #[test]
    fn log_lines() {
        assert_eq!(
            classify("arm-smmu-v3 9050000.smmuv3: ias 44-bit, oas 44-bit (features 0x00088705)"),
            Some(LogLine::SmmuProbed)
        );
        assert_eq!(
            classify("arm-smmu 2b400000.iommu: probing hardware configuration..."),
            Some(LogLine::SmmuProbed)
        );
        // Allocation lines of the SMMU are not its proof; the probe line is.
        assert_eq!(
            classify("arm-smmu-v3 9050000.smmuv3: allocated 65536 entries for cmdq"),
            None
        );
        assert_eq!(
            classify("ITS@0x0000000008080000: allocated 8192 Devices @42590000 (indirect, esz 8, psz 64K, shr 1)"),
            Some(LogLine::Its)
        );
        assert_eq!(
            classify("PCI/MSI: /intc@8000000/its@8080000 domain created"),
            Some(LogLine::Its)
        );
        assert_eq!(classify("ITS [mem 0x08080000-0x0809ffff]"), None);
        assert_eq!(
            classify("GICv2m: range[mem 0x08020000-0x08020fff], SPI[80:143]"),
            Some(LogLine::Gicv2m)
        );
    }

    #[test]
    fn device_tree_iommu_map_on_the_pci_host() {
        let t = testing::TestSysfs::new();
        t.file(
            "sys/firmware/devicetree/base/pcie@10000000/iommu-map",
            "\0\0\0\0",
        );
        t.file(
            "sys/firmware/devicetree/base/pcie@10000000/compatible",
            "pci-host-ecam-generic",
        );
        t.file(
            "sys/firmware/devicetree/base/soc/pcie@40000000/iommu-map",
            "\0",
        );
        t.file(
            "sys/firmware/devicetree/base/pl011@9000000/compatible",
            "arm,pl011",
        );
        t.file(
            "sys/firmware/devicetree/base/smmuv3@9050000/compatible",
            "arm,smmu-v3",
        );
        let f = Facts::gather(&Host::new(t.root()), Some(INTERRUPTS_GICV3));
        assert_eq!(f.dt_iommu_map, ["pcie@10000000", "pcie@40000000"]);
        assert!(f.dt_visible && f.dt_describes_iommu());
        assert_eq!(f.its_chips, ["ITS-MSI"]);
        // No iommu-map: the firmware puts no SMMU in front of PCI.
        let bare = testing::TestSysfs::new();
        bare.file(
            "sys/firmware/devicetree/base/pcie@10000000/compatible",
            "pci-host-ecam-generic",
        );
        let f = Facts::gather(&Host::new(bare.root()), None);
        assert!(f.dt_visible && !f.dt_describes_iommu());
        let (why, fix) = why_off(&f, false);
        assert!(why.contains("no iommu-map"), "{why}");
        assert!(fix.contains("iommu=smmuv3"), "{fix}");
        for w in [why, fix] {
            assert!(
                !w.contains("VT-d") && !w.contains("AMD-Vi") && !w.contains("intel_iommu"),
                "{w}"
            );
        }
    }

    #[test]
    fn msi_isolation_from_the_its_or_not() {
        let its = Facts {
            its_chips: vec!["ITS-MSI".into()],
            ..Facts::default()
        };
        let (on, f) = msi_isolation(&its, None, None, true, true);
        assert_eq!((on, f.status), (Some(true), Status::Pass));
        assert!(f.detail.contains("ITS-MSI"), "{}", f.detail);
        let none = Facts::default();
        let (on, f) = msi_isolation(
            &none,
            Some("PCI/MSI: /intc@8000000/its@8080000 domain created"),
            None,
            false,
            true,
        );
        assert_eq!((on, f.status), (Some(true), Status::Pass));
        let (on, f) = msi_isolation(
            &none,
            None,
            Some("GICv2m: range[mem 0x08020000-0x08020fff], SPI[80:143]"),
            true,
            true,
        );
        assert_eq!((on, f.status), (Some(false), Status::Warn));
        assert!(f.detail.contains("GICv2m"), "{}", f.detail);
        let hint = f.hint.unwrap_or_default();
        assert!(
            hint.contains("CONFIG_ARM_GIC_V3_ITS") && hint.contains("gic-version=3"),
            "{hint}"
        );
        assert!(
            !hint.contains("x2APIC") && !hint.contains("intremap"),
            "{hint}"
        );
        let (on, f) = msi_isolation(&none, None, None, false, true);
        assert_eq!((on, f.status), (None, Status::Info));
    }
}
