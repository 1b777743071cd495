//! Judging the kernel command line for passthrough, with each parameter's own
//! semantics as the kernel applies them.
//!
//! - `intel_iommu=`, `amd_iommu=` and `iommu=` are `__setup` handlers: every
//!   occurrence is handled in order, and each value is a comma list
//!   (`intel_iommu=on,igfx_off`). For the on/off switch the last word wins.
//!   `amd_iommu=on` and `iommu=on` are not valid values: the AMD parser logs
//!   `AMD-Vi: Unknown option - 'on'`, the generic one ignores it. Harmless, but worth
//!   saying, since guides keep recommending them.
//! - `vfio-pci.ids=` is a module parameter (`-` and `_` alike): the last one wins. It
//!   binds *every* device with that id, including an identical second card the host
//!   uses (the identical-GPU trap).
//! - `modprobe.blacklist=` accumulates over every occurrence (modprobe reads them all);
//!   `module_blacklist=` is the kernel's own list, the last one wins.
//! - `pcie_acs_override=` (an out-of-tree patch) makes the kernel pretend devices are
//!   isolated: the groups shown are then not real isolation.

use std::collections::BTreeSet;

use crate::acpi::Vendor;
use crate::cmdline::Cmdline;
#[cfg(feature = "tools")]
use crate::host::Host;
use crate::modules::normalize;
use crate::pci::{Device, PciAddress};
use crate::report::{Finding, Status};

/// What the command line judge needs to know of the machine.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The IOMMU family, from the firmware.
    pub vendor: Option<Vendor>,
    /// Whether the IOMMU is proven on (sysfs or log).
    pub iommu_on: bool,
    /// `CONFIG_INTEL_IOMMU_DEFAULT_ON` of the running kernel, when its config is known.
    pub intel_default_on: Option<bool>,
    /// The log said `Intel-IOMMU force enabled due to platform opt in`.
    pub platform_opt_in: bool,
    /// Every PCI device of the host.
    pub devices: &'a [Device],
    /// Devices the config hands to vfio-pci.
    pub configured: &'a [PciAddress],
}

/// The IOMMU switches of a command line, after the kernel's own processing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Switches {
    /// `intel_iommu=`: the last `on`/`off`.
    pub intel: Option<bool>,
    /// `amd_iommu=off` seen.
    pub amd_off: bool,
    /// `iommu=off` seen.
    pub iommu_off: bool,
    /// `iommu=pt` (not undone by a later `nopt`), or `iommu.passthrough=1`.
    pub passthrough: bool,
    /// Words of `amd_iommu=` the kernel does not know.
    pub amd_unknown: Vec<String>,
    /// Words of `intel_iommu=` the kernel does not know.
    pub intel_unknown: Vec<String>,
    /// `iommu=on` seen.
    pub iommu_on_word: bool,
}

impl Switches {
    /// The parameter that turns the IOMMU off, if any.
    pub(crate) fn disabled_by(&self) -> Option<&'static str> {
        if self.iommu_off {
            Some("iommu=off")
        } else if self.intel == Some(false) {
            Some("intel_iommu=off")
        } else if self.amd_off {
            Some("amd_iommu=off")
        } else {
            None
        }
    }
}

/// Every comma-separated word of every occurrence of `name`, in order.
fn words<'a>(c: &'a Cmdline, name: &str) -> Vec<&'a str> {
    c.all(name)
        .into_iter()
        .flatten()
        .flat_map(|v| v.split(','))
        .filter(|w| !w.is_empty())
        .collect()
}

const INTEL_WORDS: [&str; 10] = [
    "on",
    "off",
    "igfx_off",
    "forcedac",
    "strict",
    "sp_off",
    "sm_on",
    "sm_off",
    "tboot_noforce",
    "nobounce",
];
const AMD_WORDS: [&str; 9] = [
    "fullflush",
    "force_enable",
    "off",
    "force_isolation",
    "pgtbl_v1",
    "pgtbl_v2",
    "irtcachedis",
    "nohugepages",
    "v2_pgsizes_only",
];

/// Reads the IOMMU switches.
pub fn iommu_switches(c: &Cmdline) -> Switches {
    let mut s = Switches::default();
    for w in words(c, "intel_iommu") {
        match w {
            "on" => s.intel = Some(true),
            "off" => s.intel = Some(false),
            w if INTEL_WORDS.contains(&w) => {}
            w => s.intel_unknown.push(w.to_owned()),
        }
    }
    for w in words(c, "amd_iommu") {
        // The kernel compares prefixes (strncmp), so `offline` would count as `off`.
        if w.starts_with("off") {
            s.amd_off = true;
        } else if !AMD_WORDS.iter().any(|k| w.starts_with(k)) {
            s.amd_unknown.push(w.to_owned());
        }
    }
    for w in words(c, "iommu") {
        match w {
            "off" => s.iommu_off = true,
            "pt" => s.passthrough = true,
            "nopt" => s.passthrough = false,
            "on" => s.iommu_on_word = true,
            _ => {}
        }
    }
    if let Some(Some(v)) = c.last("iommu.passthrough") {
        s.passthrough = matches!(v, "1" | "y" | "Y" | "on");
    }
    s
}

/// Every module named by `modprobe.blacklist=` (all occurrences) and the last
/// `module_blacklist=`, normalised (`-` as `_`).
pub fn blacklisted(c: &Cmdline) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = words(c, "modprobe.blacklist")
        .into_iter()
        .map(normalize)
        .collect();
    if let Some(Some(v)) = c.last("module_blacklist") {
        out.extend(v.split(',').filter(|w| !w.is_empty()).map(normalize));
    }
    out
}

/// Modules whose absence breaks passthrough.
const VFIO_MODULES: [&str; 6] = [
    "vfio",
    "vfio_pci",
    "vfio_pci_core",
    "vfio_iommu_type1",
    "vfio_virqfd",
    "iommufd",
];

/// One entry of `vfio-pci.ids`: vendor, device, optional subsystem (absent fields
/// match anything, as `PCI_ANY_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdEntry {
    /// Vendor, or any.
    pub vendor: Option<u16>,
    /// Device, or any.
    pub device: Option<u16>,
    /// Subsystem vendor, or any.
    pub sub_vendor: Option<u16>,
    /// Subsystem device, or any.
    pub sub_device: Option<u16>,
}

impl IdEntry {
    /// Parses `vendor:device[:subvendor[:subdevice[:class[:class_mask]]]]` as vfio-pci
    /// does (empty fields mean any); `None` when the kernel would reject it.
    pub fn parse(s: &str) -> Option<Self> {
        let f: Vec<&str> = s.split(':').collect();
        if f.len() < 2 || f.len() > 6 {
            return None;
        }
        let field = |i: usize| -> Option<Option<u16>> {
            match f.get(i) {
                None | Some(&"") => Some(None),
                Some(v) => u32::from_str_radix(v, 16)
                    .ok()
                    .and_then(|x| u16::try_from(x).ok())
                    .map(Some),
            }
        };
        Some(Self {
            vendor: field(0)?,
            device: field(1)?,
            sub_vendor: field(2)?,
            sub_device: field(3)?,
        })
    }

    /// Whether a device carries this id.
    pub fn matches(&self, d: &Device) -> bool {
        self.vendor.is_none_or(|v| v == d.vendor)
            && self.device.is_none_or(|v| v == d.device)
            && self.sub_vendor.is_none_or(|v| v == d.subsystem_vendor)
            && self.sub_device.is_none_or(|v| v == d.subsystem_device)
    }
}

/// How an `ids` entry traps the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdsTrap {
    /// It takes a device with the same id that the config does not select.
    Unconfigured,
    /// It takes the boot display.
    BootDisplay,
}

/// Whether one `ids` entry is a trap on these devices, and which devices it takes
/// that the config does not select: the one rule, which [`crate::traps`] words.
pub(crate) fn ids_entry_trap(
    id: &IdEntry,
    devices: &[Device],
    configured: &[PciAddress],
) -> Option<(IdsTrap, Vec<PciAddress>)> {
    let matching: Vec<&Device> = devices.iter().filter(|d| id.matches(d)).collect();
    let extra: Vec<&&Device> = matching
        .iter()
        .filter(|d| !configured.contains(&d.address))
        .collect();
    let addrs = || extra.iter().map(|d| d.address).collect();
    if matching.len() > 1 && !extra.is_empty() && !configured.is_empty() {
        Some((IdsTrap::Unconfigured, addrs()))
    } else if extra.iter().any(|d| d.boot_vga) {
        Some((IdsTrap::BootDisplay, addrs()))
    } else {
        None
    }
}

/// `pcie_acs_override=`: what it does and what to do, when it is given.
pub(crate) fn acs_override(c: &Cmdline) -> Option<(String, String)> {
    let v = c.last("pcie_acs_override")?;
    Some((
        format!(
            "pcie_acs_override={}: the kernel pretends devices are isolated; the IOMMU groups shown and planned are not real isolation",
            v.unwrap_or("")
        ),
        "devices in one real group can still reach each other's memory; prefer a slot with its own group"
            .to_owned(),
    ))
}

/// Judges the command line. Check names start with `cmdline`. The traps (an `ids`
/// entry taking an unconfigured device, `pcie_acs_override=`) are the plan's
/// ([`crate::traps`]), not repeated here.
pub(crate) fn judge(c: &Cmdline, ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let sw = iommu_switches(c);
    judge_iommu(&sw, ctx, &mut out);
    if ctx.vendor == Some(Vendor::Arm) {
        out.extend(judge_arm(c));
    }
    judge_ids(c, ctx, &mut out);

    let bl = blacklisted(c);
    let vfio: Vec<&str> = VFIO_MODULES
        .iter()
        .copied()
        .filter(|m| bl.contains(*m))
        .collect();
    if !vfio.is_empty() {
        out.push(
            Finding::new(
                "cmdline blacklist",
                Status::Fail,
                format!(
                    "the command line blacklists {}: vfio-pci cannot load",
                    vfio.join(", ")
                ),
            )
            .hint("remove them from modprobe.blacklist= / module_blacklist="),
        );
    } else if !bl.is_empty() {
        out.push(Finding::new(
            "cmdline blacklist",
            Status::Info,
            format!(
                "blacklisted modules: {} (no vfio module among them)",
                bl.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }

    if let Some(p) = c.kill_switch() {
        out.push(
            Finding::new(
                "cmdline vfio_early",
                Status::Warn,
                format!("{p}: the agent is switched off"),
            )
            .hint(format!("remove {p} to let the agent bind devices at boot")),
        );
    }
    out
}

fn judge_iommu(sw: &Switches, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    const CHECK: &str = "cmdline iommu";
    if let Some(p) = sw.disabled_by() {
        out.push(
            Finding::new(CHECK, Status::Fail, format!("{p} turns the IOMMU off"))
                .hint(format!("remove {p}")),
        );
    } else {
        match ctx.vendor {
            Some(Vendor::Intel) => out.push(match sw.intel {
                Some(true) => Finding::new(CHECK, Status::Pass, "intel_iommu=on"),
                _ if ctx.intel_default_on == Some(true) => Finding::new(
                    CHECK,
                    Status::Pass,
                    "no intel_iommu=on needed: the kernel config enables VT-d by default (CONFIG_INTEL_IOMMU_DEFAULT_ON)",
                ),
                _ if ctx.platform_opt_in => Finding::new(
                    CHECK,
                    Status::Pass,
                    "no intel_iommu=on needed: the firmware opts in (\"force enabled due to platform opt in\")",
                ),
                _ if ctx.iommu_on => Finding::new(
                    CHECK,
                    Status::Pass,
                    "no intel_iommu=on, but the IOMMU is on: this kernel enables VT-d by default",
                ),
                _ => Finding::new(CHECK, Status::Fail, "intel_iommu=on is missing: this kernel leaves VT-d off by default")
                    .hint("add intel_iommu=on to the kernel command line"),
            }),
            Some(Vendor::Amd) => {
                out.push(Finding::new(CHECK, Status::Pass, "AMD-Vi is on by default (no amd_iommu=off)"));
            }
            Some(Vendor::Arm) => out.push(Finding::new(CHECK, Status::Pass, "Arm SMMU: no switch needed")),
            None if sw.intel == Some(true) && !ctx.iommu_on => out.push(
                Finding::new(CHECK, Status::Info, "intel_iommu=on is given, but the firmware has no DMAR table")
                    .hint("enable VT-d in the firmware settings"),
            ),
            None => {}
        }
    }
    if !sw.amd_unknown.is_empty() {
        let w = sw.amd_unknown.join(",");
        out.push(
            Finding::new(
                "cmdline amd_iommu",
                Status::Info,
                format!("amd_iommu={w} is not a valid value (the kernel logs \"AMD-Vi: Unknown option - '{w}'\"); harmless"),
            )
            .hint("drop it: AMD-Vi is on by default; amd_iommu= only takes off, fullflush, force_isolation, ..."),
        );
    }
    if !sw.intel_unknown.is_empty() {
        out.push(Finding::new(
            "cmdline intel_iommu",
            Status::Info,
            format!(
                "intel_iommu= has words the kernel ignores: {}",
                sw.intel_unknown.join(",")
            ),
        ));
    }
    if sw.iommu_on_word {
        out.push(
            Finding::new(
                "cmdline iommu=",
                Status::Info,
                "iommu=on is not a valid value (the kernel ignores it); harmless",
            )
            .hint("drop it; iommu= takes pt, off, force, soft, ..."),
        );
    }
    // arm64 has its own words for it (iommu.passthrough): iommu::arm::cmdline_findings.
    if (ctx.iommu_on || sw.passthrough) && ctx.vendor != Some(Vendor::Arm) {
        out.push(if sw.passthrough {
            Finding::new(
                "cmdline iommu=pt",
                Status::Pass,
                "iommu=pt: host devices skip DMA translation; devices given to vfio are still isolated",
            )
        } else {
            Finding::new("cmdline iommu=pt", Status::Info, "host devices use translated DMA (the safe default)")
                .hint("iommu=pt can speed up host I/O; it does not change isolation for vfio devices")
        });
    }
}

/// Command-line findings that only concern an Arm SMMU: `iommu.passthrough=1` (host DMA
/// untranslated; vfio's groups still isolate) and `arm-smmu-v3.disable_bypass=0` (streams
/// with no domain bypass the SMMU).
fn judge_arm(cmdline: &Cmdline) -> Vec<Finding> {
    let mut out = Vec::new();
    let passthrough = matches!(
        cmdline.last("iommu.passthrough"),
        Some(Some("1" | "y" | "Y" | "on"))
    );
    out.push(if passthrough {
        Finding::new(
            "cmdline iommu.passthrough",
            Status::Info,
            "iommu.passthrough=1: host devices bypass the SMMU (identity mapping); devices given to \
             vfio still get their own translated domain",
        )
        .hint("drop it to have host DMA translated too (iommu.passthrough=0 is the default)")
    } else {
        Finding::new(
            "cmdline iommu.passthrough",
            Status::Info,
            "host devices use translated DMA through the SMMU (the safe default)",
        )
        .hint("iommu.passthrough=1 can speed up host I/O; it does not change isolation for vfio devices")
    });
    if let Some(Some("0" | "n" | "N" | "off")) = cmdline.last("arm-smmu-v3.disable_bypass") {
        out.push(
            Finding::new(
                "cmdline arm-smmu-v3.disable_bypass",
                Status::Warn,
                "arm-smmu-v3.disable_bypass=0: streams the SMMU has no domain for bypass it, so a device no \
                 driver holds can DMA anywhere",
            )
            .hint("remove arm-smmu-v3.disable_bypass=0 (the default blocks unknown streams)"),
        );
    }
    out
}

fn judge_ids(c: &Cmdline, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    if let Some(Some(value)) = c.last("vfio_pci.ids") {
        out.extend(judge_ids_value(
            "cmdline vfio-pci.ids",
            "vfio-pci.ids",
            value,
            ctx,
        ));
    }
}

/// Judges a `vfio-pci` `ids` value against the host's devices: `check` names the
/// finding, `param` is how the value is shown (`vfio-pci.ids` on the command line,
/// `options vfio-pci ids` in modprobe.d). The entries that are traps (taking an
/// unconfigured identical device or the boot display) are left to
/// [`crate::traps`], which every view shows alike.
pub(crate) fn judge_ids_value(
    check: &str,
    param: &str,
    value: &str,
    ctx: &Context<'_>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let check = check.to_owned();
    for raw in value.split(',').filter(|w| !w.is_empty()) {
        let Some(id) = IdEntry::parse(raw) else {
            out.push(
                Finding::new(
                    check.clone(),
                    Status::Warn,
                    format!("{param} entry {raw:?} is malformed: vfio-pci skips it"),
                )
                .hint("write vendor:device in hex, e.g. 10de:1b80"),
            );
            continue;
        };
        if ids_entry_trap(&id, ctx.devices, ctx.configured).is_some() {
            // A trap: reported once, by the plan's traps (crate::traps), as every view
            // shows it.
            continue;
        }
        let matching: Vec<&Device> = ctx.devices.iter().filter(|d| id.matches(d)).collect();
        let extra: Vec<&&Device> = matching
            .iter()
            .filter(|d| !ctx.configured.contains(&d.address))
            .collect();
        let list = |ds: &[&&Device]| {
            ds.iter()
                .map(|d| d.address.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if matching.is_empty() {
            out.push(Finding::new(
                check.clone(),
                Status::Info,
                format!("{param}={raw}: no device here has that id"),
            ));
        } else if extra.is_empty() {
            out.push(Finding::new(
                check.clone(),
                Status::Info,
                format!("{param}={raw} takes only configured devices (redundant with the config)"),
            ));
        } else {
            let all: Vec<&&Device> = matching.iter().collect();
            out.push(Finding::new(
                check.clone(),
                Status::Info,
                format!("{param}={raw} takes {}", list(&all)),
            ));
        }
    }
    out
}

/// The running kernel's config and where it came from: `proc/config.gz`, else
/// `boot/config-<release>` (plain or gzip, parsed by the `kernel-config` crate).
#[cfg(feature = "tools")]
pub(crate) fn read_kernel_config(host: &Host) -> Option<(String, kernel_config::Config)> {
    let mut sources = vec!["proc/config.gz".to_owned()];
    if let Some(rel) = host.kernel_release() {
        sources.push(format!("boot/config-{rel}"));
    }
    sources.into_iter().find_map(|rel| {
        let bytes = host.read_bytes(&rel).ok()?;
        let config = kernel_config::Config::from_bytes(&bytes).ok()?;
        (!config.is_empty()).then(|| (format!("/{rel}"), config))
    })
}

/// `CONFIG_INTEL_IOMMU_DEFAULT_ON=y`, or `..._INTGPU_OFF=y` (on for everything but
/// the integrated GPU; Debian's choice).
#[cfg(feature = "tools")]
pub(crate) fn intel_on_by_default(config: &kernel_config::Config) -> bool {
    config.is_on("CONFIG_INTEL_IOMMU_DEFAULT_ON")
        || config.is_on("CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(addr: &str, id: (u16, u16), boot_vga: bool) -> Device {
        Device {
            boot_vga,
            ..Device::new(addr.parse().unwrap(), id, 0x030000, Some(1), None)
        }
    }

    fn ctx<'a>(
        vendor: Option<Vendor>,
        on: bool,
        devices: &'a [Device],
        configured: &'a [PciAddress],
    ) -> Context<'a> {
        Context {
            vendor,
            iommu_on: on,
            intel_default_on: None,
            platform_opt_in: false,
            devices,
            configured,
        }
    }

    fn status(f: &[Finding], check: &str) -> Option<Status> {
        f.iter().find(|x| x.check == check).map(|x| x.status)
    }

    #[test]
    fn intel_needs_on_unless_default() {
        let c = ctx(Some(Vendor::Intel), false, &[], &[]);
        let f = judge(&Cmdline::parse("quiet"), &c);
        assert_eq!(status(&f, "cmdline iommu"), Some(Status::Fail));
        let f = judge(&Cmdline::parse("intel_iommu=on,igfx_off"), &c);
        assert_eq!(status(&f, "cmdline iommu"), Some(Status::Pass));
        assert_eq!(
            status(&f, "cmdline intel_iommu"),
            None,
            "igfx_off is a known word"
        );
        let f = judge(&Cmdline::parse("intel_iommu=on intel_iommu=off"), &c);
        assert_eq!(
            status(&f, "cmdline iommu"),
            Some(Status::Fail),
            "last word wins"
        );
        let f = judge(&Cmdline::parse("intel_iommu=off,on"), &c);
        assert_eq!(status(&f, "cmdline iommu"), Some(Status::Pass));
        let on_by_default = Context {
            intel_default_on: Some(true),
            ..c
        };
        assert_eq!(
            status(&judge(&Cmdline::parse(""), &on_by_default), "cmdline iommu"),
            Some(Status::Pass)
        );
        let opt_in = Context {
            platform_opt_in: true,
            ..c
        };
        assert_eq!(
            status(&judge(&Cmdline::parse(""), &opt_in), "cmdline iommu"),
            Some(Status::Pass)
        );
    }

    #[test]
    fn invalid_on_values_are_harmless_and_off_fails() {
        let c = ctx(Some(Vendor::Amd), true, &[], &[]);
        let f = judge(&Cmdline::parse("iommu=on amd_iommu=on"), &c);
        assert_eq!(status(&f, "cmdline iommu"), Some(Status::Pass));
        assert_eq!(status(&f, "cmdline amd_iommu"), Some(Status::Info));
        assert!(f
            .iter()
            .any(|x| x.detail.contains("AMD-Vi: Unknown option - 'on'")));
        assert_eq!(status(&f, "cmdline iommu="), Some(Status::Info));
        assert_eq!(status(&f, "cmdline iommu=pt"), Some(Status::Info));
        for off in [
            "iommu=off",
            "amd_iommu=off",
            "iommu=pt,off",
            "amd_iommu=fullflush,off",
        ] {
            let f = judge(&Cmdline::parse(off), &c);
            assert_eq!(status(&f, "cmdline iommu"), Some(Status::Fail), "{off}");
        }
        let f = judge(&Cmdline::parse("iommu=pt"), &c);
        assert_eq!(status(&f, "cmdline iommu=pt"), Some(Status::Pass));
        assert!(!iommu_switches(&Cmdline::parse("iommu=pt iommu=nopt")).passthrough);
    }

    #[test]
    fn identical_gpu_trap() {
        let devs = [
            dev("0000:01:00.0", (0x10de, 0x1b80), false),
            dev("0000:02:00.0", (0x10de, 0x1b80), true),
        ];
        let configured = [devs[0].address];
        let c = ctx(Some(Vendor::Intel), true, &devs, &configured);
        let f = judge(&Cmdline::parse("intel_iommu=on vfio-pci.ids=10de:1b80"), &c);
        // The trap itself is the plan's (crate::traps), so check does not say it twice.
        assert_eq!(status(&f, "cmdline vfio-pci.ids"), None, "{f:?}");
        let id = IdEntry::parse("10de:1b80").unwrap();
        let (kind, extra) = ids_entry_trap(&id, &devs, &configured).unwrap();
        assert_eq!(kind, IdsTrap::Unconfigured);
        assert_eq!(extra, [devs[1].address]);
        // The last one wins: a later, narrower value replaces it.
        let f = judge(
            &Cmdline::parse("vfio_pci.ids=10de:1b80 vfio-pci.ids=10de:10f0"),
            &c,
        );
        assert!(f.iter().any(|x| x.detail.contains("10de:10f0: no device")));
        // Subsystem narrows the match.
        assert!(!IdEntry::parse("10de:1b80:1458:3702")
            .unwrap()
            .matches(&devs[0]));
        assert!(IdEntry::parse("10de::").unwrap().matches(&devs[0]));
        assert!(IdEntry::parse("10de").is_none());
        let f = judge(&Cmdline::parse("vfio-pci.ids=zz:1b80"), &c);
        assert_eq!(status(&f, "cmdline vfio-pci.ids"), Some(Status::Warn));
    }

    #[test]
    fn blacklist_accumulates() {
        let c = Cmdline::parse(
            "modprobe.blacklist=nouveau modprobe.blacklist=vfio-pci,radeon module_blacklist=x",
        );
        let bl = blacklisted(&c);
        assert!(
            bl.contains("vfio_pci")
                && bl.contains("nouveau")
                && bl.contains("radeon")
                && bl.contains("x")
        );
        let f = judge(&c, &ctx(None, true, &[], &[]));
        assert_eq!(status(&f, "cmdline blacklist"), Some(Status::Fail));
        let f = judge(
            &Cmdline::parse("modprobe.blacklist=nouveau"),
            &ctx(None, true, &[], &[]),
        );
        assert_eq!(status(&f, "cmdline blacklist"), Some(Status::Info));
    }

    #[test]
    fn acs_override_and_kill_switch_warn() {
        let f = judge(
            &Cmdline::parse("pcie_acs_override=downstream,multifunction vfio_early=off"),
            &ctx(None, true, &[], &[]),
        );
        assert_eq!(
            status(&f, "cmdline acs override"),
            None,
            "a trap: reported by crate::traps"
        );
        assert_eq!(status(&f, "cmdline vfio_early"), Some(Status::Warn));
    }

    #[test]
    fn smmu_switches_on_the_command_line() {
        let c = Cmdline::parse("console=ttyAMA0 iommu.passthrough=1 arm-smmu-v3.disable_bypass=0");
        let f = judge_arm(&c);
        let st: Vec<(&str, Status)> = f.iter().map(|f| (f.check.as_str(), f.status)).collect();
        assert_eq!(
            st,
            [
                ("cmdline iommu.passthrough", Status::Info),
                ("cmdline arm-smmu-v3.disable_bypass", Status::Warn)
            ]
        );
        assert!(
            f[0].detail.starts_with("iommu.passthrough=1"),
            "{}",
            f[0].detail
        );
        let f = judge_arm(&Cmdline::parse(
            "iommu.passthrough=0 arm_smmu_v3.disable_bypass=1",
        ));
        assert_eq!(f.len(), 1);
        assert!(f[0].detail.contains("the safe default"), "{}", f[0].detail);
        // - and _ are one in parameter names.
        assert_eq!(
            judge_arm(&Cmdline::parse("arm_smmu_v3.disable_bypass=0")).len(),
            2
        );
    }
}
