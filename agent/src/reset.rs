//! Reset methods: whether the kernel can reset a device between two VM runs, and the
//! `reset_method` a config chooses.
//!
//! Since Linux 5.15 each PCI function shows the reset methods the kernel found for it,
//! in the order it tries them, in sysfs `reset_method` (`flr bus`, `pm`, ...). The
//! kernel hides the attribute when it found none, so on 5.15+ a missing file means
//! "none"; before 5.15 the file does not exist at all, and nothing is known. Root may
//! write a subset (in its own order) to that file, and `default` restores the
//! kernel's list.
//!
//! The functions of one card often list nothing of their own: a bus reset is only
//! offered to a function alone on its bus. VFIO still resets such a card with a hot
//! reset of the whole slot when every function of it is assigned to the same user. So
//! a device is flagged "cannot be reset between VM runs" only when it has no method of
//! its own and no function of its slot offers `bus` with the whole slot assigned.
//!
//! Some device families reset badly whatever the kernel lists (the AMD reset bug of
//! Polaris, Vega and Navi 10-14 GPUs): a data table ([`FAMILIES`],
//! `agent/data/reset-families.toml`) names them by id with the advice that helps
//! (gnif/vendor-reset and `reset_method = ["device_specific"]`).
//!
//! Layers: [`parse`] is a parser, [`read_all`] a reader (through the host seam),
//! [`Judge`] the domain's verdict that `groups` and `check` print, [`apply`] the
//! actor that writes the config's choice at boot, before binding.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::pci::{Device, PciAddress};

/// The attribute's name in a device's sysfs directory.
pub const ATTR: &str = "reset_method";

/// The module of gnif/vendor-reset, which provides `device_specific` for the AMD
/// reset-bug families.
pub const VENDOR_RESET_MODULE: &str = "vendor_reset";

/// One reset method, as the kernel names it (`drivers/pci/pci.c`,
/// `pci_reset_fn_methods`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `device_specific`: a quirk of the kernel or a module (vendor-reset).
    DeviceSpecific,
    /// `acpi`: the firmware's `_RST`.
    Acpi,
    /// `flr`: PCIe function-level reset.
    Flr,
    /// `af_flr`: the conventional-PCI advanced-features FLR.
    AfFlr,
    /// `pm`: D3hot to D0 power-management reset.
    Pm,
    /// `bus`: a secondary bus (or hotplug slot) reset.
    Bus,
    /// `cxl_bus`: the CXL bus reset.
    CxlBus,
    /// A name this build does not know (a newer kernel's), kept as shown.
    Other(String),
}

impl Method {
    /// The methods a config may name.
    pub const KNOWN: [&'static str; 7] = [
        "device_specific",
        "acpi",
        "flr",
        "af_flr",
        "pm",
        "bus",
        "cxl_bus",
    ];

    /// The kernel's name.
    pub fn name(&self) -> &str {
        match self {
            Self::DeviceSpecific => "device_specific",
            Self::Acpi => "acpi",
            Self::Flr => "flr",
            Self::AfFlr => "af_flr",
            Self::Pm => "pm",
            Self::Bus => "bus",
            Self::CxlBus => "cxl_bus",
            Self::Other(s) => s,
        }
    }

    /// A reset of the bus the device sits on (and so of every function on it).
    pub fn resets_bus(&self) -> bool {
        matches!(self, Self::Bus | Self::CxlBus)
    }

    fn from_word(w: &str) -> Self {
        match w {
            "device_specific" => Self::DeviceSpecific,
            "acpi" => Self::Acpi,
            "flr" => Self::Flr,
            "af_flr" => Self::AfFlr,
            "pm" => Self::Pm,
            "bus" => Self::Bus,
            "cxl_bus" => Self::CxlBus,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;

    /// A config's name: one of [`Method::KNOWN`].
    fn from_str(s: &str) -> Result<Self, String> {
        match Self::from_word(s) {
            Self::Other(_) => Err(format!(
                "{s:?} is not a reset method (one of {})",
                Self::KNOWN.join(", ")
            )),
            m => Ok(m),
        }
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Parses the text of `reset_method`: names separated by spaces, in the kernel's order.
pub fn parse(text: &str) -> Vec<Method> {
    text.split_whitespace().map(Method::from_word).collect()
}

/// What the kernel shows of a device's reset methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    /// No `reset_method` attribute and a kernel older than 5.15 (or of unknown
    /// release): nothing is known.
    Unknown,
    /// The kernel's list; empty when it hides the attribute (5.15+: none found).
    Listed(Vec<Method>),
}

impl Methods {
    /// The list, when known.
    pub fn listed(&self) -> Option<&[Method]> {
        match self {
            Self::Unknown => None,
            Self::Listed(m) => Some(m),
        }
    }
}

impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("unknown"),
            Self::Listed(m) if m.is_empty() => f.write_str("none"),
            Self::Listed(m) => f.write_str(&words(m)),
        }
    }
}

/// Names joined with spaces, as the kernel shows and takes them.
pub fn words(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::name)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a kernel of this release has the `reset_method` attribute (5.15+); `None`
/// when the release does not parse.
pub fn kernel_has_attr(release: &str) -> Option<bool> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some((major, minor) >= (5, 15))
}

/// What a device shows, from the text of its `reset_method` (`None`: no such file);
/// `has_attr` is [`kernel_has_attr`] of the running kernel.
fn of_text(text: Option<&str>, has_attr: Option<bool>) -> Methods {
    match text {
        Some(text) => Methods::Listed(parse(text)),
        None if has_attr == Some(true) => Methods::Listed(Vec::new()),
        None => Methods::Unknown,
    }
}

/// Reads one device's methods; `has_attr` is [`kernel_has_attr`] of the running kernel.
pub fn read(host: &Host, address: PciAddress, has_attr: Option<bool>) -> Methods {
    of_text(host.read_attr(address.attr(ATTR)).as_deref(), has_attr)
}

/// Reads one device's methods from its directory, opened by the scan
/// ([`crate::machine::read_topology_with`]: one more attribute of the same directory,
/// no path of its own).
#[cfg(feature = "tools")]
pub(crate) fn read_in(dir: &mut crate::host::AttrDir, has_attr: Option<bool>) -> Methods {
    of_text(dir.text(ATTR), has_attr)
}

/// Whether the running kernel has the attribute ([`kernel_has_attr`] of its release).
pub fn host_has_attr(host: &Host) -> Option<bool> {
    host.kernel_release().and_then(|r| kernel_has_attr(&r))
}

/// Reads the methods of every device, one per device in `devices`' order (host-side
/// views only: the boot scan does not).
pub fn read_all(host: &Host, devices: &[Device]) -> Vec<Methods> {
    let has_attr = host_has_attr(host);
    devices
        .iter()
        .map(|d| read(host, d.address, has_attr))
        .collect()
}

/// One family of devices known to need help to reset (a row of the data table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    /// The family's name.
    pub name: String,
    /// PCI vendor id (hex, four digits).
    pub vendor: String,
    /// PCI device ids (hex, four digits).
    pub devices: Vec<String>,
    /// What helps, in one sentence.
    pub advice: String,
    /// The module that provides the fix, when one does.
    #[serde(default)]
    pub module: Option<String>,
    /// The `reset_method` to set with that module loaded.
    #[serde(default)]
    pub method: Option<String>,
}

impl Family {
    /// Whether a device is of this family.
    pub fn matches(&self, vendor: u16, device: u16) -> bool {
        self.ids()
            .is_some_and(|(v, ds)| v == vendor && ds.contains(&device))
    }

    /// The vendor id and the device ids, parsed (`None` when the vendor is not hex;
    /// device ids that are not are left out).
    fn ids(&self) -> Option<(u16, Vec<u16>)> {
        let hex = |s: &str| u16::from_str_radix(s, 16).ok();
        Some((
            hex(&self.vendor)?,
            self.devices.iter().filter_map(|d| hex(d)).collect(),
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyTable {
    family: Vec<Family>,
}

/// The families table as shipped: data, not code.
pub const FAMILIES: &str = include_str!("../data/reset-families.toml");

/// Parses a families table.
///
/// # Errors
/// The TOML error, in words.
pub fn families(text: &str) -> Result<Vec<Family>, String> {
    toml::from_str::<FamilyTable>(text)
        .map(|t| t.family)
        .map_err(|e| e.to_string())
}

/// The shipped table (empty if it does not parse: a unit test makes sure it does).
pub fn builtin_families() -> Vec<Family> {
    families(FAMILIES).unwrap_or_default()
}

/// Whether a device can be reset between VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resettable {
    /// By a method of its own.
    Device,
    /// By a reset of its slot's bus (a function of the slot offers `bus`), with every
    /// function of the slot assigned together.
    SlotBus,
    /// Neither: it cannot be reset between VM runs.
    No,
    /// The kernel does not say (older than 5.15).
    Unknown,
    /// A bridge: never handed to a VM.
    NotNeeded,
}

impl Resettable {
    /// In words, for the views.
    pub fn words(self) -> &'static str {
        match self {
            Self::Device => "resettable",
            Self::SlotBus => "resettable by a bus reset of its whole slot",
            Self::No => "cannot be reset between VM runs",
            Self::Unknown => "the kernel does not say before 5.15",
            Self::NotNeeded => "a bridge, not reset for VMs",
        }
    }
}

/// The domain's verdict on one device's reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// What the kernel shows.
    pub methods: &'a Methods,
    /// Whether it can be reset between VM runs.
    pub resettable: Resettable,
    /// A family known to need help, with its advice.
    pub family: Option<&'a Family>,
}

/// What a device whose methods were not read shows.
static UNKNOWN: Methods = Methods::Unknown;

/// The reset verdicts of one machine's devices: the devices (sorted by address, as
/// [`crate::pci::scan`] gives them), their methods in the same order (from
/// [`read_all`] or the scan), and the family table with its ids parsed once. A
/// device's slot is its neighbours in that order, so judging every device of a big
/// machine stays linear.
#[derive(Debug)]
pub struct Judge<'a> {
    devices: &'a [Device],
    methods: &'a [Methods],
    families: Vec<(u16, Vec<u16>, &'a Family)>,
}

impl<'a> Judge<'a> {
    /// A judge over `devices` (sorted by address) with `methods[i]` those of
    /// `devices[i]`.
    pub fn new(devices: &'a [Device], methods: &'a [Methods], families: &'a [Family]) -> Self {
        debug_assert!(
            devices.is_sorted_by_key(|d| d.address),
            "devices sorted by address"
        );
        debug_assert_eq!(
            devices.len(),
            methods.len(),
            "one list of methods per device"
        );
        Self {
            devices,
            methods,
            families: families
                .iter()
                .filter_map(|f| f.ids().map(|(v, ds)| (v, ds, f)))
                .collect(),
        }
    }

    /// Where the device at `address` is in the devices (binary search).
    pub fn index(&self, address: PciAddress) -> Option<usize> {
        self.devices
            .binary_search_by_key(&address, |d| d.address)
            .ok()
    }

    fn methods_of(&self, i: usize) -> &'a Methods {
        self.methods.get(i).unwrap_or(&UNKNOWN)
    }

    /// The indices of the functions of `devices[i]`'s slot (its neighbours).
    fn slot(&self, i: usize) -> std::ops::Range<usize> {
        let at = self.devices[i].address;
        let same = |j: &usize| self.devices[*j].address.same_slot(&at);
        let start = (0..i).rev().take_while(same).last().unwrap_or(i);
        let end = (i + 1..self.devices.len())
            .take_while(same)
            .last()
            .unwrap_or(i);
        start..end + 1
    }

    /// Judges `devices[i]`: `assigned` tells which devices go to the VM together with
    /// it (its IOMMU group in `groups`, the planned devices in `check`).
    pub fn verdict(&self, i: usize, assigned: &dyn Fn(&Device) -> bool) -> Verdict<'a> {
        let dev = &self.devices[i];
        let own = self.methods_of(i);
        let family = self
            .families
            .iter()
            .find(|(v, ds, _)| *v == dev.vendor && ds.contains(&dev.device))
            .map(|(_, _, f)| *f);
        let resettable = if dev.is_bridge() {
            Resettable::NotNeeded
        } else {
            match own {
                Methods::Unknown => Resettable::Unknown,
                Methods::Listed(m) if !m.is_empty() => Resettable::Device,
                Methods::Listed(_) => {
                    let slot = self.slot(i);
                    let bus = slot.clone().any(|j| {
                        self.methods_of(j)
                            .listed()
                            .is_some_and(|m| m.iter().any(Method::resets_bus))
                    });
                    if bus && slot.clone().all(|j| assigned(&self.devices[j])) {
                        Resettable::SlotBus
                    } else {
                        Resettable::No
                    }
                }
            }
        };
        Verdict {
            methods: own,
            resettable,
            family,
        }
    }
}

/// What to do about a device that cannot be reset.
const NO_RESET_HINT: &str = "the kernel has no reset for it: a VM may find it as the last \
     one left it; assign every function of its card together, or expect to reboot between \
     VM runs";

/// The hint for a verdict: the family's advice, else what to do about a device that
/// cannot be reset.
pub fn hint(v: &Verdict<'_>) -> Option<std::borrow::Cow<'static, str>> {
    if let Some(f) = v.family {
        return Some(format!("{}: {}", f.name, f.advice).into());
    }
    (v.resettable == Resettable::No).then_some(NO_RESET_HINT.into())
}

/// Why a config's `reset_method` cannot be written to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The kernel has no such attribute at all (before 5.15).
    #[error("Linux {0} has no reset_method attribute (5.15+): the reset method cannot be chosen")]
    NoAttribute(String),
    /// The kernel found no method for the device, so it hides the attribute.
    #[error("the kernel offers no reset method for this device (no reset_method attribute), so none can be chosen")]
    NoMethods,
    /// `device_specific` without the module that provides it.
    #[error("device_specific needs the {VENDOR_RESET_MODULE} module (gnif/vendor-reset) loaded first; it is not")]
    NoModule,
    /// A method the device does not offer.
    #[error("{0} is not offered by this device (it offers {1})")]
    NotOffered(Method, String),
}

/// The domain's rule for writing `wanted` to a device that shows `now`: `Ok` when the
/// kernel can take it. `device_specific` is allowed when the device lists it or the
/// vendor-reset module is loaded (it adds the method at run time).
///
/// # Errors
/// The [`Refusal`].
pub fn may_write(
    now: &Methods,
    release: &str,
    wanted: &[Method],
    module_loaded: bool,
) -> Result<(), Refusal> {
    let listed = match now {
        Methods::Unknown => return Err(Refusal::NoAttribute(release.to_owned())),
        Methods::Listed(m) if m.is_empty() => return Err(Refusal::NoMethods),
        Methods::Listed(m) => m,
    };
    for w in wanted {
        if listed.contains(w) {
            continue;
        }
        if *w == Method::DeviceSpecific {
            if module_loaded {
                continue;
            }
            return Err(Refusal::NoModule);
        }
        return Err(Refusal::NotOffered(w.clone(), words(listed)));
    }
    Ok(())
}

/// What writing one device's `reset_method` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Written and read back as asked.
    Set {
        /// What it showed before.
        was: Methods,
        /// What it reads now.
        now: Vec<Method>,
    },
    /// Written, but it reads back otherwise.
    Differs {
        /// What it showed before.
        was: Methods,
        /// What was asked.
        wanted: Vec<Method>,
        /// What it reads now.
        now: Methods,
    },
    /// Not written, with the reason.
    Refused(Refusal),
    /// The write failed.
    Failed(String),
}

/// Writes `wanted` to a device's `reset_method` (confined, bounded by `timeout`) and
/// reads it back. The rule is [`may_write`]; nothing is written when it refuses.
pub fn apply(
    host: &Host,
    address: PciAddress,
    wanted: &[Method],
    timeout: std::time::Duration,
) -> Applied {
    let release = host.kernel_release().unwrap_or_default();
    let was = read(host, address, kernel_has_attr(&release));
    let module = host.exists(format!("sys/module/{VENDOR_RESET_MODULE}"));
    if let Err(r) = may_write(&was, &release, wanted, module) {
        return Applied::Refused(r);
    }
    if let Err(e) = host.write_bounded(address.attr(ATTR), &words(wanted), timeout) {
        return Applied::Failed(e.to_string());
    }
    match read(host, address, Some(true)) {
        Methods::Listed(now) if now == wanted => Applied::Set { was, now },
        now => Applied::Differs {
            was,
            wanted: wanted.to_vec(),
            now,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::Device;

    fn a(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn dev(addr: &str, class: u32) -> Device {
        Device::new(a(addr), (0x1002, 0x67df), class, Some(1), None)
    }

    fn listed(words: &str) -> Methods {
        Methods::Listed(parse(words))
    }

    /// The verdict on a lone device.
    fn alone(d: &Device, m: Methods, families: &[Family]) -> (Resettable, Option<String>, Methods) {
        let devices = [d.clone()];
        let methods = [m];
        let judge = Judge::new(&devices, &methods, families);
        let v = judge.verdict(0, &|_| true);
        (v.resettable, hint(&v).map(String::from), v.methods.clone())
    }

    #[test]
    fn parses_the_kernels_words_in_order_and_keeps_unknown_ones() {
        assert_eq!(parse("flr bus\n"), [Method::Flr, Method::Bus]);
        assert_eq!(parse("pm"), [Method::Pm]);
        assert_eq!(parse(""), []);
        assert_eq!(
            parse("device_specific acpi af_flr cxl_bus future"),
            [
                Method::DeviceSpecific,
                Method::Acpi,
                Method::AfFlr,
                Method::CxlBus,
                Method::Other("future".into())
            ]
        );
        assert_eq!("flr".parse::<Method>(), Ok(Method::Flr));
        assert!("future"
            .parse::<Method>()
            .unwrap_err()
            .contains("is not a reset method"));
        assert_eq!(listed("flr pm").to_string(), "flr pm");
        assert_eq!(Methods::Listed(vec![]).to_string(), "none");
        assert_eq!(Methods::Unknown.to_string(), "unknown");
    }

    #[test]
    fn the_attribute_exists_from_5_15() {
        assert_eq!(kernel_has_attr("5.15.0-91-generic"), Some(true));
        assert_eq!(kernel_has_attr("6.12.95+deb12-amd64"), Some(true));
        assert_eq!(kernel_has_attr("5.14.0-362.el9.x86_64"), Some(false));
        assert_eq!(kernel_has_attr("4.19.0"), Some(false));
        assert_eq!(kernel_has_attr("garbage"), None);
    }

    #[test]
    fn own_method_makes_a_device_resettable() {
        let d = dev("0000:03:00.0", 0x020000);
        let (resettable, hint, methods) = alone(&d, listed("flr pm"), &[]);
        assert_eq!(resettable, Resettable::Device);
        assert_eq!(methods, listed("flr pm"));
        assert_eq!(hint, None);
    }

    #[test]
    fn a_function_without_methods_is_reset_with_its_slot_only_when_all_are_assigned() {
        // Function 0 lists bus, function 1 lists nothing: the slot's bus reset covers
        // function 1 only when both go to the VM.
        let gpu = dev("0000:01:00.0", 0x030000);
        let audio = dev("0000:01:00.1", 0x040300);
        let devices = vec![gpu.clone(), audio.clone()];
        let m = vec![listed("bus"), Methods::Listed(vec![])];
        let judge = Judge::new(&devices, &m, &[]);
        assert_eq!(judge.index(audio.address), Some(1));
        let both = judge.verdict(1, &|_| true);
        assert_eq!(both.resettable, Resettable::SlotBus);
        let alone = judge.verdict(1, &|x| x.address == audio.address);
        assert_eq!(alone.resettable, Resettable::No);
        assert!(hint(&alone).unwrap().contains("no reset"));
    }

    #[test]
    fn a_slot_is_its_neighbours_and_no_further() {
        // Three slots side by side: 01:00 (bus on .0), 01:01 (nothing), 02:00 (bus).
        let devices = vec![
            dev("0000:01:00.0", 0x020000),
            dev("0000:01:00.1", 0x020000),
            dev("0000:01:01.0", 0x020000),
            dev("0000:01:01.1", 0x020000),
            dev("0000:02:00.0", 0x020000),
        ];
        let none = || Methods::Listed(vec![]);
        let m = vec![listed("bus"), none(), none(), none(), listed("bus")];
        let judge = Judge::new(&devices, &m, &[]);
        let all = |_: &Device| true;
        let got: Vec<Resettable> = (0..devices.len())
            .map(|i| judge.verdict(i, &all).resettable)
            .collect();
        assert_eq!(
            got,
            [
                Resettable::Device,
                Resettable::SlotBus,
                Resettable::No,
                Resettable::No,
                Resettable::Device
            ]
        );
        // The slot's other function counts too: with 01:00.0 kept back, 01:00.1 is not
        // reset.
        let not_first = |d: &Device| d.address != devices[0].address;
        assert_eq!(judge.verdict(1, &not_first).resettable, Resettable::No);
        assert_eq!(judge.index(a("0000:01:02.0")), None);
        // Methods missing for a device (a list shorter than the devices) say unknown.
        let short = vec![listed("bus")];
        let devices2 = &devices[..2];
        let judge = Judge {
            devices: devices2,
            methods: &short,
            families: Vec::new(),
        };
        assert_eq!(judge.verdict(1, &all).resettable, Resettable::Unknown);
    }

    #[test]
    fn no_method_anywhere_in_the_slot_cannot_be_reset() {
        let d = dev("0000:02:00.0", 0x030000);
        let (resettable, hint, _) = alone(&d, Methods::Listed(vec![]), &[]);
        assert_eq!(resettable, Resettable::No);
        assert_eq!(resettable.words(), "cannot be reset between VM runs");
        assert_eq!(
            hint.as_deref(),
            Some(
                "the kernel has no reset for it: a VM may find it as the last one left it; \
                 assign every function of its card together, or expect to reboot between VM runs"
            )
        );
    }

    #[test]
    fn older_kernels_say_unknown_and_bridges_need_none() {
        let d = dev("0000:02:00.0", 0x030000);
        let (resettable, hint, _) = alone(&d, Methods::Unknown, &[]);
        assert_eq!(resettable, Resettable::Unknown);
        assert_eq!(hint, None);
        let bridge = dev("0000:00:01.0", 0x060400);
        let (resettable, _, _) = alone(&bridge, Methods::Listed(vec![]), &[]);
        assert_eq!(resettable, Resettable::NotNeeded);
    }

    #[test]
    fn the_family_table_parses_and_names_the_amd_reset_bug_families() {
        let fams = families(FAMILIES).expect("the shipped table parses");
        assert!(fams.len() >= 5);
        let polaris = fams.iter().find(|f| f.matches(0x1002, 0x67df)).unwrap();
        assert!(polaris.name.contains("Polaris"));
        assert_eq!(polaris.module.as_deref(), Some(VENDOR_RESET_MODULE));
        assert_eq!(polaris.method.as_deref(), Some("device_specific"));
        assert!(fams.iter().any(|f| f.matches(0x1002, 0x731f)), "Navi 10");
        assert!(
            !fams.iter().any(|f| f.matches(0x1002, 0x73bf)),
            "Navi 21 resets"
        );
        assert!(
            !fams.iter().any(|f| f.matches(0x10de, 0x67df)),
            "vendor counts"
        );
        for f in &fams {
            if let Some(m) = &f.method {
                assert!(m.parse::<Method>().is_ok(), "{}: {m}", f.name);
            }
        }
        // The advice comes with the verdict, whatever the kernel lists.
        let d = dev("0000:01:00.0", 0x030000);
        let (resettable, hint, _) = alone(&d, listed("bus"), &fams);
        assert_eq!(resettable, Resettable::Device);
        assert!(hint.unwrap().contains("vendor-reset"));
        assert!(families("[[family]]\nname = 1\n").is_err());
    }

    #[test]
    fn writes_are_refused_without_the_attribute_or_the_module() {
        let r = may_write(&Methods::Unknown, "5.10.0", &[Method::Flr], false);
        assert_eq!(r, Err(Refusal::NoAttribute("5.10.0".into())));
        assert!(r.unwrap_err().to_string().contains("5.15+"));
        assert_eq!(
            may_write(&Methods::Listed(vec![]), "6.1.0", &[Method::Flr], false),
            Err(Refusal::NoMethods)
        );
        let now = listed("flr bus");
        assert_eq!(may_write(&now, "6.1.0", &[Method::Bus], false), Ok(()));
        assert_eq!(
            may_write(&now, "6.1.0", &[Method::Bus, Method::Flr], false),
            Ok(())
        );
        assert_eq!(
            may_write(&now, "6.1.0", &[Method::Pm], false),
            Err(Refusal::NotOffered(Method::Pm, "flr bus".into()))
        );
        assert_eq!(
            may_write(&now, "6.1.0", &[Method::DeviceSpecific], false),
            Err(Refusal::NoModule)
        );
        assert_eq!(
            may_write(&now, "6.1.0", &[Method::DeviceSpecific], true),
            Ok(())
        );
        assert_eq!(
            may_write(
                &listed("device_specific bus"),
                "6.1.0",
                &[Method::DeviceSpecific],
                false
            ),
            Ok(())
        );
    }
}
