//! Is the IOMMU really on? Evidence from independent sources, never a guess.
//!
//! - **Which IOMMU** comes from the firmware's ACPI tables: `DMAR` means Intel VT-d,
//!   `IVRS` AMD-Vi, `IORT` an Arm SMMU. Not from the CPU vendor: emulators (QEMU's
//!   `-cpu max` says `AuthenticAMD` with an Intel IOMMU) and some hosts disagree.
//! - **That it is on**: sysfs (`/sys/class/iommu/*` units, `/sys/kernel/iommu_groups`),
//!   and the kernel log: `DMAR: Intel(R) Virtualization Technology for Directed I/O`,
//!   `AMD-Vi: Found IOMMU`. `DMAR: IOMMU enabled` is only an echo of `intel_iommu=on`
//!   being parsed, and Intel boots also print `AMD-Vi: AMD IOMMUv2 functionality not
//!   available`: neither proves anything. The log may have rotated on a long-running
//!   host; sysfs alone then suffices.
//! - **Interrupt remapping**: `DMAR-IR: Enabled IRQ remapping in ... mode`, `AMD-Vi:
//!   Interrupt remapping enabled`, or the `IR-` interrupt chips in `/proc/interrupts`.
//!
//! Known failure lines of the log become findings with hints. The arm64 facts (the
//! device tree's `iommu-map`, the SMMU's lines, MSI isolation by the GICv3 ITS) live
//! in [`arm`].

pub use crate::acpi::Vendor;
use crate::acpi::ACPI_TABLES;

pub mod arm;

use crate::cmdline::Cmdline;
use crate::cmdline_check;
use crate::host::Host;
use crate::kmsg;
use crate::pci;
use crate::report::{Finding, Status};

/// The sysfs class of IOMMU units, relative to the host root.
pub(crate) const CLASS_IOMMU: &str = "sys/class/iommu";
/// What the kernel log says about the IOMMU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogEvidence {
    /// Whether the log could be read at all.
    pub readable: bool,
    /// Why not, when it could not.
    pub error: Option<String>,
    /// Whether it still starts at the boot (first record has sequence 0).
    pub from_boot: bool,
    /// Lines that prove the IOMMU came up.
    pub proof: Vec<String>,
    /// The vendor those lines name.
    pub vendor: Option<Vendor>,
    /// A line that proves interrupt remapping is on.
    pub irq_remap: Option<String>,
    /// A line saying interrupt remapping is off.
    pub irq_remap_off: Option<String>,
    /// `DMAR: IOMMU enabled` was seen (an echo of `intel_iommu=on`).
    pub cmdline_echo: bool,
    /// `Intel-IOMMU force enabled due to platform opt in` was seen.
    pub platform_opt_in: bool,
    /// Known failure lines, as findings.
    pub failures: Vec<Finding>,
    /// A line that shows the GICv3 ITS serving MSIs (arm64 MSI isolation).
    pub its: Option<String>,
    /// A line that shows a GICv2m frame serving MSIs (no isolation).
    pub gicv2m: Option<String>,
}

/// All the evidence gathered on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// ACPI tables present (`DMAR`, `IVRS`, `IORT`).
    pub acpi: Vec<Vendor>,
    /// Whether the ACPI tables directory exists at all (absent: no ACPI, or not mounted).
    pub acpi_visible: bool,
    /// IOMMU units in sysfs (`dmar0`, `ivhd0`...).
    pub units: Vec<String>,
    /// Number of IOMMU groups.
    pub groups: usize,
    /// The kernel log's part.
    pub log: LogEvidence,
    /// Interrupt chips in `/proc/interrupts` whose name starts with `IR-`.
    pub ir_chips: Vec<String>,
    /// Whether `/proc/interrupts` was readable.
    pub interrupts_readable: bool,
    /// The CPU, from `/proc/cpuinfo`: `vendor_id` (GenuineIntel, AuthenticAMD) as an
    /// IOMMU family, only to word advice when the firmware names none.
    pub cpu_vendor: Option<Vendor>,
    /// The CPU flag `hypervisor`: this is a virtual machine, whose IOMMU (if any) the
    /// hypervisor provides.
    pub hypervisor: bool,
    /// The arm64 facts: device tree, ITS chips.
    pub arm: arm::Facts,
}

/// The CPU vendor and the `hypervisor` flag of `/proc/cpuinfo` (its first CPU).
pub(crate) fn parse_cpuinfo(text: &str) -> (Option<Vendor>, bool) {
    let mut vendor = None;
    let mut hypervisor = false;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            if line.trim().is_empty() && vendor.is_some() {
                break;
            }
            continue;
        };
        match k.trim() {
            "vendor_id" => {
                vendor = match v.trim() {
                    "GenuineIntel" => Some(Vendor::Intel),
                    "AuthenticAMD" | "HygonGenuine" => Some(Vendor::Amd),
                    _ => None,
                };
            }
            "flags" => hypervisor = v.split_whitespace().any(|f| f == "hypervisor"),
            _ => {}
        }
    }
    (vendor, hypervisor)
}

/// Whether this host gives PCI devices their IOMMU group only when a driver probes
/// them (an Arm SMMU unit is registered): see [`arm::groups_at_probe`].
pub(crate) fn groups_at_probe(host: &Host) -> bool {
    arm::groups_at_probe(&host.list(CLASS_IOMMU))
}

/// Classifies kernel log records.
pub fn scan_log(records: &[kmsg::Record]) -> LogEvidence {
    let mut scan = LogScan::new();
    for r in records {
        scan.record(r.seq, &r.text);
    }
    scan.finish()
}

/// Reads the host's kernel log once, classifying each record as it is read (nothing
/// is kept but the evidence).
pub(crate) fn read_log(host: &Host) -> LogEvidence {
    let mut scan = LogScan::new();
    match kmsg::scan(host, |seq, text| scan.record(seq, text)) {
        Ok(()) => scan.finish(),
        Err(e) => LogEvidence {
            error: Some(e.to_string()),
            ..LogEvidence::default()
        },
    }
}

/// The phrases every log line is searched for, in the order of [`PHRASES`].
#[derive(Debug, Clone, Copy)]
enum Phrase {
    IntelUp,
    AmdFound,
    PlatformOptIn,
    IntelIr,
    AmdIr,
    IrNotEnabling,
    IrDisabled,
    IrFailed,
    FirmwareBug,
    NoIrSupport,
    ProbeOf,
}

const PHRASES: [&str; 11] = [
    "DMAR: Intel(R) Virtualization Technology for Directed I/O",
    "AMD-Vi: Found IOMMU",
    "force enabled due to platform opt in",
    "DMAR-IR: Enabled IRQ remapping",
    "AMD-Vi: Interrupt remapping enabled",
    "Not enabling interrupt remapping",
    "IRQ remapping was disabled",
    "Failed to enable irq remapping",
    "[Firmware Bug]",
    "No interrupt remapping support",
    "probe of ",
];

/// Which of [`PHRASES`] one line contains.
#[derive(Debug, Clone, Copy)]
struct Hits(u16);

impl Hits {
    fn has(self, p: Phrase) -> bool {
        self.0 & (1 << p as u16) != 0
    }
}

/// One pass over a log: the phrase finders are built once for all its lines.
#[derive(Debug)]
struct LogScan {
    finders: [memchr::memmem::Finder<'static>; PHRASES.len()],
    evidence: LogEvidence,
    first: bool,
}

impl LogScan {
    fn new() -> Self {
        Self {
            finders: PHRASES.map(memchr::memmem::Finder::new),
            evidence: LogEvidence {
                readable: true,
                ..LogEvidence::default()
            },
            first: true,
        }
    }

    fn record(&mut self, seq: u64, text: &str) {
        if std::mem::take(&mut self.first) {
            self.evidence.from_boot = seq == 0;
        }
        let mut hits = 0u16;
        for (i, f) in self.finders.iter().enumerate() {
            if f.find(text.as_bytes()).is_some() {
                hits |= 1 << i;
            }
        }
        classify(text, Hits(hits), &mut self.evidence);
    }

    fn finish(self) -> LogEvidence {
        self.evidence
    }
}

/// Reads one line of log text into the evidence.
fn classify(t: &str, hits: Hits, e: &mut LogEvidence) {
    let prove = |e: &mut LogEvidence, v: Vendor| {
        if e.proof.len() < 4 {
            e.proof.push(t.to_owned());
        }
        e.vendor.get_or_insert(v);
    };
    if hits.has(Phrase::IntelUp) {
        prove(e, Vendor::Intel);
    } else if hits.has(Phrase::AmdFound) || t.starts_with("perf/amd_iommu: Detected AMD IOMMU") {
        prove(e, Vendor::Amd);
    } else if t.trim_end() == "DMAR: IOMMU enabled" {
        e.cmdline_echo = true;
    } else if hits.has(Phrase::PlatformOptIn) {
        e.platform_opt_in = true;
    } else {
        match arm::classify(t) {
            Some(arm::LogLine::SmmuProbed) => prove(e, Vendor::Arm),
            Some(arm::LogLine::Its) => {
                e.its.get_or_insert_with(|| t.to_owned());
            }
            Some(arm::LogLine::Gicv2m) => {
                e.gicv2m.get_or_insert_with(|| t.to_owned());
            }
            None => {}
        }
    }
    if hits.has(Phrase::IntelIr) || hits.has(Phrase::AmdIr) {
        e.irq_remap.get_or_insert_with(|| t.to_owned());
    }
    if hits.has(Phrase::IrNotEnabling) || hits.has(Phrase::IrDisabled) || hits.has(Phrase::IrFailed)
    {
        e.irq_remap_off.get_or_insert_with(|| t.to_owned());
    }
    if let Some(f) = failure(t, hits) {
        if !e.failures.iter().any(|x| x.detail == f.detail) && e.failures.len() < 16 {
            e.failures.push(f);
        }
    }
}

/// A known failure line as a finding (the phrases decide; the few lines that have one
/// are looked at further).
fn failure(t: &str, hits: Hits) -> Option<Finding> {
    const CHECK: &str = "kernel log";
    if hits.has(Phrase::FirmwareBug)
        && (t.contains("DMAR") || t.contains("AMD-Vi") || t.contains("IOMMU"))
    {
        let hint = if t.contains("AMD-Vi") {
            "the firmware's IVRS table is wrong; update the firmware. For a missing IOAPIC/HPET entry \
             the kernel takes ivrs_ioapic[ID]=BDF / ivrs_hpet[ID]=BDF on the command line"
        } else {
            "the firmware's DMAR table is wrong; update the firmware (BIOS/UEFI). The kernel may have \
             turned off the IOMMU or interrupt remapping because of it"
        };
        return Some(Finding::new(CHECK, Status::Warn, t).hint(hint));
    }
    if hits.has(Phrase::NoIrSupport) {
        return Some(Finding::new(CHECK, Status::Fail, t).hint(
            "vfio refused a group because interrupts are not remapped: enable interrupt remapping \
             (x2APIC / IR in the firmware settings, no intremap=off); \
             vfio_iommu_type1.allow_unsafe_interrupts=1 works but lets a guest inject interrupts",
        ));
    }
    if t.starts_with("vfio-pci ") && t.contains("can't reserve") {
        return Some(Finding::new(CHECK, Status::Fail, t).hint(
            "something holds the BAR, usually the boot framebuffer (see the framebuffer check): \
             video=efifb:off or initcall_blacklist=sysfb_init on the kernel command line",
        ));
    }
    if hits.has(Phrase::ProbeOf) && t.contains("failed with error") {
        let hint = if t.contains("error -22") && t.starts_with("vfio-pci") {
            "vfio-pci gives -22 (EINVAL) when the device has no IOMMU group: the IOMMU is off \
             (see the iommu check)"
        } else {
            "the driver refused the device; the lines before this one in dmesg say why"
        };
        return Some(Finding::new(CHECK, Status::Fail, t).hint(hint));
    }
    None
}

/// The `IR-` chips named in `/proc/interrupts` (`IR-IO-APIC`, `IR-PCI-MSI`...).
pub(crate) fn ir_chips(interrupts: &str) -> Vec<String> {
    let mut chips: Vec<String> = interrupts
        .lines()
        .flat_map(str::split_whitespace)
        .filter(|w| w.starts_with("IR-"))
        .map(str::to_owned)
        .collect();
    chips.sort();
    chips.dedup();
    chips
}

impl Evidence {
    /// Gathers the evidence of a host, with its log records already read.
    pub fn gather(host: &Host, log: Result<&[kmsg::Record], String>) -> Self {
        Self {
            log: match log {
                Ok(records) => scan_log(records),
                Err(e) => LogEvidence {
                    error: Some(e),
                    ..LogEvidence::default()
                },
            },
            ..Self::from_sysfs(host)
        }
    }

    /// The firmware tables, sysfs and procfs; the log left unread.
    pub(crate) fn from_sysfs(host: &Host) -> Self {
        let mut ev = Self::from_sysfs_but_cpu(host);
        ev.read_cpuinfo(host);
        ev
    }

    /// The CPU's vendor and `hypervisor` flag from `/proc/cpuinfo`.
    fn read_cpuinfo(&mut self, host: &Host) {
        (self.cpu_vendor, self.hypervisor) = host
            .read("proc/cpuinfo")
            .map(|t| parse_cpuinfo(&t))
            .unwrap_or_default();
    }

    /// [`Evidence::from_sysfs`] without `/proc/cpuinfo`.
    fn from_sysfs_but_cpu(host: &Host) -> Self {
        let tables = host.list(ACPI_TABLES);
        let acpi = [Vendor::Intel, Vendor::Amd, Vendor::Arm]
            .into_iter()
            .filter(|v| tables.iter().any(|t| t == v.acpi_table()))
            .collect();
        let interrupts = host.read("proc/interrupts");
        Self {
            cpu_vendor: None,
            hypervisor: false,
            acpi,
            acpi_visible: host.exists(ACPI_TABLES),
            units: host.list(CLASS_IOMMU),
            groups: host
                .list(pci::IOMMU_GROUPS)
                .iter()
                .filter(|g| g.parse::<u32>().is_ok())
                .count(),
            log: LogEvidence::default(),
            ir_chips: interrupts.as_deref().map(ir_chips).unwrap_or_default(),
            interrupts_readable: interrupts.is_ok(),
            arm: arm::Facts::gather(host, interrupts.as_deref().ok()),
        }
    }

    /// Gathers everything, the log read in one pass.
    pub fn read(host: &Host) -> Self {
        Self {
            log: read_log(host),
            ..Self::from_sysfs(host)
        }
    }

    /// The boot's evidence: sysfs first, and the log (in one pass) only when sysfs
    /// leaves a question open ([`Evidence::sysfs_leaves_a_question`]).
    /// The CPU's vendor and flags only word why it is off and the fix
    /// ([`Evidence::why_off`]): with the IOMMU on, `/proc/cpuinfo` is not read (under
    /// QEMU TCG the kernel's text for `-cpu max` is a few milliseconds of the boot).
    pub fn read_lazily(host: &Host) -> Self {
        let mut ev = Self::from_sysfs_but_cpu(host);
        if ev.sysfs_leaves_a_question() {
            ev.log = read_log(host);
        }
        if !ev.is_on() {
            ev.read_cpuinfo(host);
        }
        ev
    }

    /// Whether the log could add to the boot's verdict: sysfs and procfs tell whether
    /// the IOMMU is on (units, groups), which it is (firmware table, unit name), and
    /// whether interrupts are remapped (`IR-` chips) or isolated (ITS chips); the log's
    /// other lines only matter to `check`.
    pub fn sysfs_leaves_a_question(&self) -> bool {
        let on = !self.units.is_empty() || self.groups > 0;
        let which = !self.acpi.is_empty() || self.vendor_from_units().is_some();
        let interrupts = !self.ir_chips.is_empty() || !self.arm.its_chips.is_empty();
        !(on && which && interrupts)
    }

    /// The IOMMU family: from the firmware tables, else from the sysfs unit names,
    /// else from the log's proof lines.
    pub fn vendor(&self) -> Option<Vendor> {
        self.acpi
            .first()
            .copied()
            .or_else(|| self.vendor_from_units())
            .or(self.log.vendor)
    }

    fn vendor_from_units(&self) -> Option<Vendor> {
        self.units.iter().find_map(|u| {
            if u.starts_with("dmar") {
                Some(Vendor::Intel)
            } else if u.starts_with("ivhd") {
                Some(Vendor::Amd)
            } else if arm::is_smmu_unit(u) {
                Some(Vendor::Arm)
            } else {
                None
            }
        })
    }

    /// Where the vendor was read from.
    pub(crate) fn vendor_source(&self) -> &'static str {
        if !self.acpi.is_empty() {
            "ACPI table"
        } else if self.vendor_from_units().is_some() {
            "sysfs unit name"
        } else if self.log.vendor.is_some() {
            "kernel log"
        } else {
            "nothing"
        }
    }

    /// The sources that prove the IOMMU is on, each as a short phrase.
    pub fn proof(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.units.is_empty() {
            out.push(format!("sysfs class/iommu: {}", self.units.join(", ")));
        }
        if self.groups > 0 {
            out.push(format!("sysfs: {} IOMMU groups", self.groups));
        }
        if let Some(l) = self.log.proof.first() {
            out.push(format!("kernel log: \"{l}\""));
        }
        out
    }

    /// Whether any source proves the IOMMU is on.
    pub fn is_on(&self) -> bool {
        !self.units.is_empty() || self.groups > 0 || !self.log.proof.is_empty()
    }

    /// Interrupt remapping: `Some(true)` with the proof, `Some(false)` with the line
    /// that says it is off, `None` when nothing tells.
    pub(crate) fn irq_remapping(&self) -> (Option<bool>, String) {
        if self.is_arm() {
            let (on, f) = self.msi_isolation();
            return (on, f.detail);
        }
        if !self.ir_chips.is_empty() {
            return (
                Some(true),
                format!("/proc/interrupts: {}", self.ir_chips.join(", ")),
            );
        }
        if let Some(l) = &self.log.irq_remap {
            return (Some(true), format!("kernel log: \"{l}\""));
        }
        if let Some(l) = &self.log.irq_remap_off {
            return (Some(false), format!("kernel log: \"{l}\""));
        }
        if self.interrupts_readable {
            return (
                Some(false),
                "no IR- interrupt chip in /proc/interrupts".to_owned(),
            );
        }
        (
            None,
            "neither /proc/interrupts nor the log tells".to_owned(),
        )
    }

    /// The firmware switch to turn on, worded for this CPU's vendor.
    fn enable_words(&self) -> &'static str {
        match self.cpu_vendor {
            Some(Vendor::Intel) => {
                "enable VT-d (often \"Intel Virtualization Technology for Directed I/O\")"
            }
            Some(Vendor::Amd) => "enable the IOMMU (AMD-Vi, often \"IOMMU\" or \"AMD-Vi\")",
            _ => {
                "enable VT-d / AMD-Vi (often called \"IOMMU\" or \"Virtualization Technology for \
                 Directed I/O\")"
            }
        }
    }

    /// arm64's interrupt remapping: MSI isolation by the GICv3 ITS.
    pub(crate) fn msi_isolation(&self) -> (Option<bool>, Finding) {
        arm::msi_isolation(
            &self.arm,
            self.log.its.as_deref(),
            self.log.gicv2m.as_deref(),
            self.interrupts_readable,
            self.is_on(),
        )
    }

    /// Whether the firmware describes an Arm SMMU without ACPI: a device-tree boot
    /// whose PCIe host has an `iommu-map`, or no ACPI and a device tree at all.
    fn arm_firmware(&self) -> bool {
        self.arm.dt_describes_iommu() || (!self.acpi_visible && self.arm.dt_visible)
    }

    /// Whether this is an Arm host: an Arm SMMU, or no IOMMU at all on an Arm
    /// firmware (a device tree). Its advice and MSI isolation are arm64's.
    pub(crate) fn is_arm(&self) -> bool {
        match self.vendor() {
            Some(v) => v == Vendor::Arm,
            None => self.arm_firmware(),
        }
    }

    /// Why the IOMMU is off, and the fix, for a host where [`Evidence::is_on`] is false.
    pub(crate) fn why_off(&self, cmdline: &Cmdline) -> (String, String) {
        let off = cmdline_check::iommu_switches(cmdline);
        if let Some(p) = off.disabled_by() {
            return (
                format!("{p} on the kernel command line turns the IOMMU off"),
                format!("remove {p}"),
            );
        }
        if self.is_arm() {
            return arm::why_off(&self.arm, self.acpi.contains(&Vendor::Arm));
        }
        match self.vendor() {
            Some(Vendor::Intel) if off.intel != Some(true) => (
                "the firmware has a DMAR table (Intel VT-d) but the kernel did not enable it".to_owned(),
                "add intel_iommu=on to the kernel command line (or build the kernel with \
                 CONFIG_INTEL_IOMMU_DEFAULT_ON=y)"
                    .to_owned(),
            ),
            Some(v) => (
                format!(
                    "the firmware describes an {v} IOMMU ({}) but the kernel shows no IOMMU unit and no group",
                    v.acpi_table()
                ),
                format!(
                    "check that the kernel has {} support (vfio-early check-kconfig) and look for \
                     DMAR/AMD-Vi errors in dmesg",
                    match v {
                        Vendor::Intel => "CONFIG_INTEL_IOMMU",
                        Vendor::Amd => "CONFIG_AMD_IOMMU",
                        Vendor::Arm => "CONFIG_ARM_SMMU_V3",
                    }
                ),
            ),
            None if self.hypervisor => (
                "this is a virtual machine (CPU flag hypervisor) and its firmware has no DMAR or IVRS \
                 table: the hypervisor gives it no IOMMU"
                    .to_owned(),
                "give the virtual machine a virtual IOMMU from the hypervisor (QEMU: -machine \
                 q35,kernel-irqchip=split -device intel-iommu,intremap=on, or -device amd-iommu; on \
                 arm -machine virt,iommu=smmuv3); no setting inside the guest can add one"
                    .to_owned(),
            ),
            None if self.acpi_visible => (
                "the firmware has no IOMMU table (no DMAR or IVRS): the IOMMU is switched off in the \
                 firmware, or the machine has none"
                    .to_owned(),
                format!("{} in the firmware settings", self.enable_words()),
            ),
            None => (
                "no IOMMU unit, no IOMMU group, and no ACPI tables to tell which IOMMU the machine has".to_owned(),
                match self.cpu_vendor {
                    Some(Vendor::Intel) => format!(
                        "{} in the firmware settings, and add intel_iommu=on",
                        self.enable_words()
                    ),
                    Some(_) => format!("{} in the firmware settings", self.enable_words()),
                    None => format!(
                        "{} in the firmware settings; on Intel add intel_iommu=on",
                        self.enable_words()
                    ),
                },
            ),
        }
    }

    /// The findings about the IOMMU itself: which, whether on, interrupt remapping,
    /// and the log's failure lines.
    pub fn findings(&self, cmdline: &Cmdline) -> Vec<Finding> {
        let mut out = Vec::new();
        out.push(match self.vendor() {
            Some(v) if !self.acpi.is_empty() => {
                Finding::new("iommu vendor", Status::Pass, format!("{v}, from the ACPI {} table", v.acpi_table()))
            }
            Some(Vendor::Arm) if self.arm.dt_describes_iommu() => Finding::new(
                "iommu vendor",
                Status::Pass,
                format!(
                    "Arm SMMU, from the device tree ({} iommu-map) and the {}",
                    self.arm.dt_iommu_map.join(", "),
                    self.vendor_source()
                ),
            ),
            Some(v) => Finding::new(
                "iommu vendor",
                Status::Info,
                format!("{v}, from the {} (no ACPI DMAR/IVRS table visible)", self.vendor_source()),
            ),
            None if self.acpi_visible => Finding::new(
                "iommu vendor",
                Status::Fail,
                "no DMAR, IVRS or IORT table in /sys/firmware/acpi/tables: the firmware offers no IOMMU",
            )
,
            None if self.arm.dt_visible => Finding::new(
                "iommu vendor",
                Status::Info,
                "unknown: no ACPI tables, and the device tree puts no IOMMU in front of PCI (no iommu-map)",
            ),
            None => Finding::new("iommu vendor", Status::Info, "unknown: no ACPI tables visible"),
        });

        if self.is_on() {
            let mut detail = format!("on, proven by {}", self.proof().join("; "));
            if self.log.proof.is_empty() {
                detail.push_str(if self.log.readable && !self.log.from_boot {
                    " (the kernel log has rotated past the boot messages; sysfs suffices)"
                } else if self.log.readable {
                    " (the kernel log does not confirm it)"
                } else {
                    " (kernel log not readable)"
                });
            }
            out.push(Finding::new("iommu", Status::Pass, detail));
        } else {
            let (why, fix) = self.why_off(cmdline);
            let mut detail = format!("off: no IOMMU unit in sysfs, no IOMMU group; {why}");
            if self.log.cmdline_echo {
                detail.push_str(" (\"DMAR: IOMMU enabled\" in the log only echoes intel_iommu=on)");
            }
            out.push(Finding::new("iommu", Status::Fail, detail).hint(fix));
        }

        let (ir, source) = self.irq_remapping();
        out.push(match ir {
            _ if self.is_arm() => self.msi_isolation().1,
            Some(true) => Finding::new("interrupt remapping", Status::Pass, format!("on, per {source}")),
            Some(false) if self.is_on() => Finding::new("interrupt remapping", Status::Warn, format!("off: {source}"))
                .hint(
                    "without it vfio refuses devices unless vfio_iommu_type1.allow_unsafe_interrupts=1; \
                     enable x2APIC / interrupt remapping in the firmware and drop intremap=off",
                ),
            Some(false) => Finding::new("interrupt remapping", Status::NotApplicable, format!("off ({source}): the IOMMU is off")),
            None => Finding::new("interrupt remapping", Status::Info, format!("unknown: {source}")),
        });

        if let Some(e) = &self.log.error {
            out.push(
                Finding::new(
                    "kernel log",
                    Status::Info,
                    format!("not readable ({e}); judged from sysfs alone"),
                )
                .hint("run as root to include the kernel log (dmesg_restrict)"),
            );
        }
        out.extend(self.log.failures.iter().cloned());
        out
    }
}

/// The one-line verdict `bind` logs at boot: IOMMU vendor and source of proof,
/// interrupt remapping, command-line problems. Error when the IOMMU is off, warning
/// when something else is wrong, info otherwise.
pub fn boot_verdict(
    host: &Host,
    cmdline: &Cmdline,
    devices: &[pci::Device],
) -> (log::Level, String) {
    let ev = Evidence::read_lazily(host);
    // The boot leaves the kernel config to `check`: with the IOMMU on, whether VT-d is
    // on by default changes no verdict (sysfs proves it on), and with it off the fix is
    // `intel_iommu=on` either way. Not reading it keeps the gzip and .config parsers
    // out of the boot agent and its time.
    let ctx = cmdline_check::Context {
        vendor: ev.vendor(),
        iommu_on: ev.is_on(),
        intel_default_on: None,
        platform_opt_in: ev.log.platform_opt_in,
        devices,
        configured: &[],
    };
    verdict(&ev, cmdline, &ctx)
}

/// [`boot_verdict`] over gathered evidence (pure).
pub fn verdict(
    ev: &Evidence,
    cmdline: &Cmdline,
    ctx: &cmdline_check::Context<'_>,
) -> (log::Level, String) {
    let mut level = log::Level::Info;
    let vendor = ev
        .vendor()
        .map_or_else(|| "unknown IOMMU".to_owned(), |v| v.to_string());
    let mut line = if ev.is_on() {
        let src: Vec<&str> = [
            (!ev.units.is_empty() || ev.groups > 0).then_some("sysfs"),
            (!ev.log.proof.is_empty()).then_some("kernel log"),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!(
            "IOMMU {vendor} on (proof: {}; {} groups)",
            src.join(" + "),
            ev.groups
        )
    } else {
        level = log::Level::Error;
        let (why, fix) = ev.why_off(cmdline);
        match ev.vendor() {
            Some(v) => format!("IOMMU off ({v}): {why}; fix: {fix}"),
            None => format!("IOMMU off: {why}; fix: {fix}"),
        }
    };
    let irq = if ev.is_arm() {
        "MSI isolation (GICv3 ITS)"
    } else {
        "interrupt remapping"
    };
    match ev.irq_remapping().0 {
        Some(true) => line.push_str(&format!(", {irq} on")),
        Some(false) if ev.is_on() => {
            line.push_str(&format!(", {irq} OFF"));
            if level > log::Level::Warn {
                level = log::Level::Warn;
            }
        }
        Some(false) => {}
        None => line.push_str(&format!(", {irq} unknown")),
    }
    let mut problems: Vec<String> = cmdline_check::judge(cmdline, ctx)
        .into_iter()
        .filter(|f| matches!(f.status, Status::Fail | Status::Warn))
        .map(|f| f.detail)
        .collect();
    problems.extend(cmdline_check::acs_override(cmdline).map(|(text, _)| text));
    if problems.is_empty() {
        line.push_str("; command line ok");
    } else {
        line.push_str("; command line: ");
        line.push_str(&problems.join("; "));
        if level > log::Level::Warn {
            level = log::Level::Warn;
        }
    }
    (level, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> LogEvidence {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("6,{i},{},-;{l}\n", i * 1000))
            .collect();
        scan_log(&kmsg::parse(&text))
    }

    #[test]
    fn echo_and_amd_v2_line_prove_nothing() {
        let e = log(&[
            "DMAR: IOMMU enabled",
            "AMD-Vi: AMD IOMMUv2 functionality not available on this system - This is not a bug.",
        ]);
        assert!(e.proof.is_empty());
        assert!(e.cmdline_echo);
        assert_eq!(e.vendor, None);
    }

    #[test]
    fn intel_and_amd_proof_lines() {
        let e = log(&[
            "DMAR: IOMMU enabled",
            "DMAR-IR: Enabled IRQ remapping in xapic mode",
            "DMAR: Intel(R) Virtualization Technology for Directed I/O",
        ]);
        assert_eq!(e.vendor, Some(Vendor::Intel));
        assert_eq!(
            e.irq_remap.as_deref(),
            Some("DMAR-IR: Enabled IRQ remapping in xapic mode")
        );
        let a = log(&[
            "AMD-Vi: Found IOMMU at 0000:00:00.2 cap 0x40",
            "AMD-Vi: Interrupt remapping enabled",
        ]);
        assert_eq!(a.vendor, Some(Vendor::Amd));
        assert!(a.irq_remap.is_some());
        let new = log(&["pci 0000:00:00.2: AMD-Vi: Found IOMMU cap 0x40"]);
        assert_eq!(new.vendor, Some(Vendor::Amd));
    }

    #[test]
    fn failure_lines_become_findings() {
        let e = log(&[
            "DMAR: [Firmware Bug]: No firmware reserved region can cover this RMRR [0x00000000bd800000-0x00000000bfffffff], contact BIOS vendor for fixes",
            "vfio-pci 0000:01:00.0: BAR 0: can't reserve [mem 0xc0000000-0xcfffffff 64bit pref]",
            "vfio-pci: probe of 0000:00:03.0 failed with error -22",
            "vfio_iommu_type1_attach_group: No interrupt remapping support.  Use the module param \"allow_unsafe_interrupts\" to enable VFIO IOMMU support on this platform",
            "vfio-pci: probe of 0000:00:03.0 failed with error -22",
        ]);
        let st: Vec<Status> = e.failures.iter().map(|f| f.status).collect();
        assert_eq!(
            st,
            [Status::Warn, Status::Fail, Status::Fail, Status::Fail],
            "duplicate dropped"
        );
        assert!(e.failures[1]
            .hint
            .as_deref()
            .unwrap()
            .contains("initcall_blacklist=sysfb_init"));
        assert!(e.failures[2]
            .hint
            .as_deref()
            .unwrap()
            .contains("no IOMMU group"));
        assert!(e.failures[3]
            .hint
            .as_deref()
            .unwrap()
            .contains("allow_unsafe_interrupts"));
    }

    #[test]
    fn the_boot_reads_the_cpu_only_to_word_an_iommu_that_is_off() {
        let t = testing::TestSysfs::new();
        t.file(
            "proc/cpuinfo",
            "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu hypervisor\n",
        );
        t.file("proc/interrupts", "           CPU0\n");
        let host = Host::new(t.root());
        // Off: the CPU words the fix.
        let off = Evidence::read_lazily(&host);
        assert!(!off.is_on());
        assert_eq!(
            (off.cpu_vendor, off.hypervisor),
            (Some(Vendor::Intel), true)
        );
        // On (a unit and a group in sysfs): not read, and the same verdict as with it.
        t.file("sys/class/iommu/dmar0/uevent", "");
        t.file("sys/kernel/iommu_groups/0/type", "DMA");
        let on = Evidence::read_lazily(&host);
        assert!(on.is_on());
        assert_eq!(on.cpu_vendor, None);
        let cmdline = Cmdline::parse("intel_iommu=on");
        let ctx = cmdline_check::Context {
            vendor: on.vendor(),
            iommu_on: true,
            intel_default_on: None,
            platform_opt_in: false,
            devices: &[],
            configured: &[],
        };
        assert_eq!(
            verdict(&on, &cmdline, &ctx),
            verdict(&Evidence::read(&host), &cmdline, &ctx)
        );
    }

    /// The QEMU virt machine (gic-version=3, iommu=smmuv3, direct -kernel boot):
    /// device tree, SMMUv3 unit, ITS chips. Every finding speaks arm64, none VT-d.
    #[test]
    fn arm_smmu_and_its_on_a_device_tree_host() {
        let t = testing::TestSysfs::new();
        t.file("sys/firmware/devicetree/base/pcie@10000000/iommu-map", "\0");
        t.file("sys/class/iommu/smmu3.0x0000000009050000/uevent", "");
        t.file("sys/kernel/iommu_groups/0/type", "DMA");
        t.file(
            "proc/interrupts",
            "           CPU0\n 21:          0   ITS-MSI 8192 Edge      PCIe PME, aerdrv\n",
        );
        let records = kmsg::parse(
            "6,0,0,-;ITS@0x0000000008080000: allocated 8192 Devices @42590000 (indirect, esz 8, psz 64K, shr 1)\n\
             6,1,1,-;arm-smmu-v3 9050000.smmuv3: ias 44-bit, oas 44-bit (features 0x00088705)\n",
        );
        let host = Host::new(t.root());
        let ev = Evidence::gather(&host, Ok(&records));
        assert_eq!(ev.vendor(), Some(Vendor::Arm));
        assert!(ev.is_on());
        assert_eq!(ev.log.vendor, Some(Vendor::Arm));
        assert!(ev.log.its.is_some());
        assert!(groups_at_probe(&host));
        let cmdline = Cmdline::parse("console=ttyAMA0");
        let f = ev.findings(&cmdline);
        let by = |c: &str| {
            f.iter()
                .find(|x| x.check == c)
                .unwrap_or_else(|| panic!("{c}: {f:?}"))
        };
        assert_eq!(by("iommu vendor").status, Status::Pass);
        assert!(by("iommu vendor")
            .detail
            .contains("device tree (pcie@10000000 iommu-map)"));
        assert_eq!(by("iommu").status, Status::Pass);
        assert!(by("iommu").detail.contains("smmu3.0x0000000009050000"));
        assert_eq!(by("msi isolation").status, Status::Pass);
        assert!(by("msi isolation").detail.contains("ITS-MSI"));
        assert!(f.iter().all(|x| x.check != "interrupt remapping"), "{f:?}");
        for x in &f {
            let words = format!("{} {}", x.detail, x.hint.as_deref().unwrap_or(""));
            assert!(
                !words.contains("VT-d") && !words.contains("AMD-Vi"),
                "{words}"
            );
        }
        let ctx = cmdline_check::Context {
            vendor: ev.vendor(),
            iommu_on: true,
            intel_default_on: None,
            platform_opt_in: false,
            devices: &[],
            configured: &[],
        };
        let (level, line) = verdict(&ev, &cmdline, &ctx);
        assert_eq!(level, log::Level::Info, "{line}");
        assert!(
            line.starts_with("IOMMU Arm SMMU on (proof: sysfs + kernel log"),
            "{line}"
        );
        assert!(line.contains("MSI isolation (GICv3 ITS) on"), "{line}");
    }

    /// A GICv2 machine (QEMU virt's default): the SMMU is on, MSIs are not isolated.
    /// An SMMU the kernel never shows: arm64 advice, no VT-d words.
    #[test]
    fn arm_without_its_and_without_smmu() {
        let t = testing::TestSysfs::new();
        t.file("sys/firmware/devicetree/base/pcie@10000000/iommu-map", "\0");
        t.file("sys/class/iommu/smmu3.0x0000000009050000/uevent", "");
        t.file("proc/interrupts", "  40:  0  GICv2m-MSI 0 Edge aerdrv\n");
        let records =
            kmsg::parse("6,0,0,-;GICv2m: range[mem 0x08020000-0x08020fff], SPI[80:143]\n");
        let ev = Evidence::gather(&Host::new(t.root()), Ok(&records));
        let f = ev.findings(&Cmdline::parse(""));
        let msi = f.iter().find(|x| x.check == "msi isolation").unwrap();
        assert_eq!(msi.status, Status::Warn, "{msi:?}");
        assert!(msi.detail.contains("GICv2m"), "{}", msi.detail);

        let off = testing::TestSysfs::new();
        off.file(
            "sys/firmware/devicetree/base/pcie@10000000/compatible",
            "pci-host-ecam-generic",
        );
        let ev = Evidence::gather(&Host::new(off.root()), Ok(&[]));
        assert!(!ev.is_on());
        let f = ev.findings(&Cmdline::parse(""));
        let iommu = f.iter().find(|x| x.check == "iommu").unwrap();
        assert_eq!(iommu.status, Status::Fail);
        assert!(iommu.detail.contains("no iommu-map"), "{}", iommu.detail);
        let words = format!("{} {}", iommu.detail, iommu.hint.as_deref().unwrap_or(""));
        assert!(
            !words.contains("VT-d") && !words.contains("AMD-Vi") && !words.contains("intel_iommu"),
            "{words}"
        );
    }

    #[test]
    fn cpuinfo_vendor_and_hypervisor() {
        let t = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme hypervisor lahf_lm\n\nprocessor\t: 1\n";
        assert_eq!(parse_cpuinfo(t), (Some(Vendor::Amd), true));
        let t = "vendor_id\t: GenuineIntel\nflags\t\t: fpu vme\n";
        assert_eq!(parse_cpuinfo(t), (Some(Vendor::Intel), false));
    }

    #[test]
    fn advice_fits_the_machine() {
        let cmdline = Cmdline::default();
        let vm = Evidence {
            acpi_visible: true,
            hypervisor: true,
            cpu_vendor: Some(Vendor::Amd),
            ..Evidence::default()
        };
        let (why, fix) = vm.why_off(&cmdline);
        assert!(why.contains("virtual machine"), "{why}");
        assert!(
            fix.contains("-device intel-iommu") && fix.contains("-device amd-iommu"),
            "{fix}"
        );
        assert!(!fix.contains("firmware settings"), "{fix}");
        let amd = Evidence {
            acpi_visible: true,
            cpu_vendor: Some(Vendor::Amd),
            ..Evidence::default()
        };
        let (_, fix) = amd.why_off(&cmdline);
        assert!(
            fix.contains("AMD-Vi") && !fix.contains("VT-d") && !fix.contains("intel"),
            "{fix}"
        );
        let (_, fix) = Evidence {
            acpi_visible: false,
            ..amd
        }
        .why_off(&cmdline);
        assert!(
            !fix.contains("intel_iommu"),
            "no Intel advice on AMD: {fix}"
        );
    }

    #[test]
    fn ir_chips_from_interrupts() {
        let t = "           CPU0       CPU1\n  0:         45          0   IO-APIC   2-edge      timer\n \
                 24:          0          0  IR-PCI-MSI 49152-edge      aerdrv\n 25:  1 0 IR-IO-APIC 9-fasteoi acpi\n";
        assert_eq!(ir_chips(t), ["IR-IO-APIC", "IR-PCI-MSI"]);
        assert!(ir_chips("  0: 45 0 IO-APIC 2-edge timer\n").is_empty());
    }
}
