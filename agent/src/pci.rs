//! PCI addresses, ids and device records read from sysfs.
//!
//! A [`PciAddress`] is parsed strictly (`DDDD:BB:DD.F`, hex, in range), so a value
//! from the config can never smuggle a path (`../../`) into a sysfs access: only the
//! address's own `Display` form is ever joined to a path.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::host::Host;

/// The sysfs directory of all PCI devices, relative to the host root.
pub(crate) const DEVICES: &str = "sys/bus/pci/devices";
/// The sysfs directory of IOMMU groups, relative to the host root.
pub(crate) const IOMMU_GROUPS: &str = "sys/kernel/iommu_groups";
/// The driver every selected device is handed to.
pub(crate) const VFIO_DRIVER: &str = "vfio-pci";

/// Whether a driver is vfio-pci or one of its variants (`mlx5_vfio_pci`,
/// `hisi_acc_vfio_pci`, `pds-vfio-pci`, `nvgrace-gpu-vfio-pci`...): a device on it is
/// usable by vfio userspace as it stands.
///
/// A variant is recognised by its name: every in-tree variant driver is called
/// `<something>_vfio_pci` or `<something>-vfio-pci`. That is a heuristic (the proof
/// would be the module's dependency on `vfio_pci_core` in `modules.dep`, which the
/// planner does not read at boot); an out-of-tree variant named otherwise counts as a
/// host driver, which errs on the side of refusing.
pub(crate) fn is_vfio_driver(driver: &str) -> bool {
    let d = driver.replace('-', "_");
    d == "vfio_pci" || d.ends_with("_vfio_pci")
}

/// The one DMA-safe driver rule: whether a driver manages DMA for vfio (the kernel's
/// `driver_managed_dma`), so a group member bound to it does not stop the group from
/// going to userspace. vfio-pci and its variants ([`is_vfio_driver`]), `pci-stub`, and
/// `pcieport` (which only ever binds bridges). Names compare with `-` and `_` alike.
pub(crate) fn driver_manages_dma(driver: &str) -> bool {
    let d = driver.replace('-', "_");
    is_vfio_driver(&d) || d == "pci_stub" || d == "pcieport"
}

/// A PCI function address: domain, bus, device (slot) and function. Ordered by
/// domain, bus, device, function (compared as one packed number: sorting and searching
/// the devices of a big machine compare addresses a great many times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddress {
    /// PCI segment (domain); VMD domains go beyond 0xffff.
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

/// Why a string is not a PCI address or id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not {expected}: {why}")]
pub struct ParseError {
    input: String,
    expected: &'static str,
    why: &'static str,
}

impl ParseError {
    fn new(input: &str, expected: &'static str, why: &'static str) -> Self {
        let mut input = input.to_owned();
        if input.len() > 64 {
            let mut cut = 64;
            while !input.is_char_boundary(cut) {
                cut -= 1;
            }
            input.truncate(cut);
            input.push('…');
        }
        Self {
            input,
            expected,
            why,
        }
    }
}

fn hex_field(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl FromStr for PciAddress {
    type Err = ParseError;

    /// Parses `DDDD:BB:DD.F` (domain of 4 to 8 hex digits) or the short `BB:DD.F`
    /// (domain 0), as `lspci` prints them.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "a PCI address (DDDD:BB:DD.F)";
        let err = |why| ParseError::new(s, WHAT, why);
        let (slot, func) = s
            .rsplit_once('.')
            .ok_or_else(|| err("no '.' before the function"))?;
        let mut parts = slot.split(':');
        let (dom, bus, dev) = match [parts.next(), parts.next(), parts.next(), parts.next()] {
            [Some(d), Some(b), Some(v), None] => {
                (hex_field(d, 4, 8).ok_or_else(|| err("bad domain"))?, b, v)
            }
            [Some(b), Some(v), None, None] => (0, b, v),
            _ => return Err(err("expected DDDD:BB:DD.F")),
        };
        let bus = hex_field(bus, 2, 2).ok_or_else(|| err("bad bus (two hex digits)"))?;
        let dev = hex_field(dev, 2, 2).ok_or_else(|| err("bad device (two hex digits)"))?;
        let func = hex_field(func, 1, 1).ok_or_else(|| err("bad function (one digit 0-7)"))?;
        if dev > 0x1f {
            return Err(err("device out of range (00-1f)"));
        }
        if func > 7 {
            return Err(err("function out of range (0-7)"));
        }
        Ok(Self {
            domain: dom,
            bus: u8::try_from(bus).map_err(|_| err("bad bus"))?,
            device: u8::try_from(dev).map_err(|_| err("bad device"))?,
            function: u8::try_from(func).map_err(|_| err("bad function"))?,
        })
    }
}

impl Ord for PciAddress {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for PciAddress {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A short ASCII text built on the stack: what `Display` impls of ids and addresses
/// write in one piece, without the formatting machinery (a big machine formats
/// thousands of them).
pub(crate) struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// One ASCII byte (the text is cut at `N` bytes).
    pub(crate) fn byte(&mut self, b: u8) -> &mut Self {
        if self.len < N && b.is_ascii() {
            self.buf[self.len] = b;
            self.len += 1;
        }
        self
    }

    /// `v` in lower-case hex, zero-padded to at least `width` digits (`{:0width$x}`).
    pub(crate) fn hex(&mut self, v: u32, width: usize) -> &mut Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let needed = (32 - v.leading_zeros()).div_ceil(4) as usize;
        for i in (0..needed.max(width).max(1)).rev() {
            let nibble = v
                .checked_shr(4 * u32::try_from(i).unwrap_or(u32::MAX))
                .unwrap_or(0)
                & 0xf;
            self.byte(DIGITS[nibble as usize]);
        }
        self
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII bytes are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Display for PciAddress {
    /// `{:04x}:{:02x}:{:02x}.{:x}`: domain, bus, device, function.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl PciAddress {
    /// The address packed into one number that orders as (domain, bus, device,
    /// function) do. Always inlined (into `cmp`, its one caller): under
    /// `opt-level = "z"` it would stay a call otherwise, and the sorts and searches of a
    /// big machine compare addresses some 90,000 times.
    #[inline(always)]
    fn key(self) -> u64 {
        (u64::from(self.domain) << 24)
            | (u64::from(self.bus) << 16)
            | (u64::from(self.device) << 8)
            | u64::from(self.function)
    }

    /// `DDDD:BB:DD.F` (the domain has up to eight digits; 17 bytes hold any field
    /// values, in range or not).
    fn text(self) -> Text<17> {
        let mut t = Text::new();
        t.hex(self.domain, 4)
            .byte(b':')
            .hex(self.bus.into(), 2)
            .byte(b':')
            .hex(self.device.into(), 2)
            .byte(b'.')
            .hex(self.function.into(), 1);
        t
    }

    /// Appends `DDDD:BB:DD.F` (what `Display` writes) to `out`.
    pub(crate) fn push_to(self, out: &mut String) {
        out.push_str(self.text().as_str());
    }

    /// True when both name functions of the same slot (card).
    pub(crate) fn same_slot(&self, other: &Self) -> bool {
        (self.domain, self.bus, self.device) == (other.domain, other.bus, other.device)
    }

    /// This device's sysfs directory, relative to the host root.
    pub fn sysfs_dir(&self) -> String {
        self.attr("")
    }

    /// One attribute of this device, relative to the host root (its directory when
    /// `name` is empty).
    pub fn attr(&self, name: &str) -> String {
        let mut s = String::with_capacity(DEVICES.len() + 19 + name.len());
        s.push_str(DEVICES);
        s.push('/');
        self.push_to(&mut s);
        if !name.is_empty() {
            s.push('/');
            s.push_str(name);
        }
        s
    }
}

impl Serialize for PciAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `vendor:device[:subvendor:subdevice]`, as `vfio-pci.ids` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciId {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Subsystem vendor and device, when given.
    pub subsystem: Option<(u16, u16)>,
}

impl FromStr for PciId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "a PCI id (vendor:device[:subvendor:subdevice])";
        let field = |f: &str| {
            hex_field(f, 4, 4)
                .and_then(|v| u16::try_from(v).ok())
                .ok_or_else(|| ParseError::new(s, WHAT, "each field is four hex digits"))
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [v, d] => Ok(Self {
                vendor: field(v)?,
                device: field(d)?,
                subsystem: None,
            }),
            [v, d, sv, sd] => Ok(Self {
                vendor: field(v)?,
                device: field(d)?,
                subsystem: Some((field(sv)?, field(sd)?)),
            }),
            _ => Err(ParseError::new(s, WHAT, "expected two or four fields")),
        }
    }
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)?;
        if let Some((sv, sd)) = self.subsystem {
            write!(f, ":{sv:04x}:{sd:04x}")?;
        }
        Ok(())
    }
}

impl Serialize for PciId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl PciId {
    /// Whether a device carries this id.
    pub fn matches(&self, dev: &Device) -> bool {
        self.vendor == dev.vendor
            && self.device == dev.device
            && self
                .subsystem
                .is_none_or(|s| s == (dev.subsystem_vendor, dev.subsystem_device))
    }
}

/// One PCI function as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Where it sits: `sys/bus/pci/devices/<address>`, the key of every record.
    pub address: PciAddress,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Subsystem vendor id.
    pub subsystem_vendor: u16,
    /// Subsystem device id.
    pub subsystem_device: u16,
    /// Class code, 24 bits: class, subclass, programming interface.
    pub class: u32,
    /// The driver bound now, if any (`driver` link name).
    pub driver: Option<String>,
    /// `driver_override`, when set.
    pub driver_override: Option<String>,
    /// The firmware's boot display (`boot_vga` = 1).
    pub boot_vga: bool,
    /// The IOMMU group, when the IOMMU is on.
    pub iommu_group: Option<u32>,
    /// `modalias`, used to predict which driver would claim it at boot.
    pub modalias: Option<String>,
    /// Its SR-IOV role: a physical function (PF) that can make virtual functions, or
    /// a virtual function (VF) of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sriov: Option<Sriov>,
}

/// The SR-IOV role of a PCI function, as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Sriov {
    /// A physical function: `sriov_totalvfs`, `sriov_numvfs`, the `virtfnN` links.
    Pf {
        /// How many VFs it can make (`sriov_totalvfs`).
        totalvfs: u16,
        /// How many it has now (`sriov_numvfs`).
        numvfs: u16,
        /// `sriov_drivers_autoprobe`: whether its VFs get a driver when made.
        drivers_autoprobe: Option<bool>,
        /// Its VFs, by index (`virtfn0`, `virtfn1`...).
        vfs: Vec<PciAddress>,
    },
    /// A virtual function: its PF (`physfn`) and its index there.
    Vf {
        /// The physical function.
        pf: PciAddress,
        /// Its index among the PF's VFs (`virtfnN` of the PF).
        index: u16,
    },
}

/// The PF side of a device, when it has the SR-IOV capability (`sriov_totalvfs`): one
/// failed lookup for any other device.
fn read_pf(a: &mut crate::host::AttrDir) -> Option<Sriov> {
    let totalvfs = a.text("sriov_totalvfs")?.parse::<u16>().ok()?;
    let numvfs = a
        .text("sriov_numvfs")
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(0);
    let vfs = (0..numvfs)
        .map_while(|i| a.link_name(&format!("virtfn{i}"))?.parse().ok())
        .collect();
    Some(Sriov::Pf {
        totalvfs,
        numvfs,
        drivers_autoprobe: a.text("sriov_drivers_autoprobe").map(|v| v == "1"),
        vfs,
    })
}

/// Gives every VF its role from its PF's `virtfnN` links (a scan's last pass).
fn mark_vfs(devices: &mut [Device]) {
    let links: Vec<(PciAddress, PciAddress, u16)> = devices
        .iter()
        .filter_map(|d| match &d.sriov {
            Some(Sriov::Pf { vfs, .. }) => Some((d.address, vfs)),
            _ => None,
        })
        .flat_map(|(pf, vfs)| vfs.iter().zip(0u16..).map(move |(vf, i)| (pf, *vf, i)))
        .collect();
    for (pf, vf, index) in links {
        if let Ok(i) = devices.binary_search_by_key(&vf, |d| d.address) {
            devices[i].sriov = Some(Sriov::Vf { pf, index });
        }
    }
}

impl Device {
    /// The PF of a VF and its index there.
    pub fn vf_of(&self) -> Option<(PciAddress, u16)> {
        match self.sriov {
            Some(Sriov::Vf { pf, index }) => Some((pf, index)),
            _ => None,
        }
    }
}

impl Device {
    /// A record built from values instead of read from sysfs: ids, class, group and
    /// driver as given; no subsystem ids, no `driver_override`, not the boot display, no
    /// `modalias`. Planner tests and benchmarks build their topologies with it.
    pub fn new(
        address: PciAddress,
        (vendor, device): (u16, u16),
        class: u32,
        iommu_group: Option<u32>,
        driver: Option<&str>,
    ) -> Self {
        Self {
            address,
            vendor,
            device,
            subsystem_vendor: 0,
            subsystem_device: 0,
            class,
            driver: driver.map(str::to_owned),
            driver_override: None,
            boot_vga: false,
            iommu_group,
            modalias: None,
            sriov: None,
        }
    }

    /// Reads one device from `sys/bus/pci/devices/<addr>`; `None` when it does not exist.
    /// Every attribute goes through one [`crate::host::AttrDir`] (one path, one buffer):
    /// reading one more attribute is one more line here.
    ///
    /// The ids and the class come from `modalias`, which the kernel prints from the
    /// same fields as `vendor`, `device`, `subsystem_*` and `class` (one read instead of
    /// six: under QEMU TCG each sysfs read is a few system calls the boot pays for);
    /// the single attributes only when it is missing or unreadable.
    pub fn read(host: &Host, address: PciAddress) -> Option<Self> {
        Self::read_with(host, address, |_| ()).map(|(d, ())| d)
    }

    /// [`Device::read`], and what `extra` reads from the same directory: attributes
    /// only some views need (`groups` reads `reset_method`), which the boot's scan
    /// (`extra` doing nothing) does not pay for.
    pub(crate) fn read_with<T>(
        host: &Host,
        address: PciAddress,
        extra: impl FnOnce(&mut crate::host::AttrDir) -> T,
    ) -> Option<(Self, T)> {
        let mut a = host.attr_dir(address.sysfs_dir())?;
        let modalias = a.string("modalias");
        let ids = match modalias.as_deref().and_then(parse_modalias) {
            Some(ids) => ids,
            None => {
                let mut id16 =
                    |name: &str| a.hex(name).and_then(|v| u16::try_from(v).ok()).unwrap_or(0);
                let ids = (
                    id16("vendor"),
                    id16("device"),
                    id16("subsystem_vendor"),
                    id16("subsystem_device"),
                );
                (ids.0, ids.1, ids.2, ids.3, a.hex("class").unwrap_or(0))
            }
        };
        let (vendor, device, subsystem_vendor, subsystem_device, class) = ids;
        let dev = Self {
            address,
            vendor,
            device,
            subsystem_vendor,
            subsystem_device,
            class,
            driver: a.link_name("driver"),
            driver_override: a
                .text("driver_override")
                .filter(|v| !v.is_empty() && *v != "(null)")
                .map(str::to_owned),
            // The kernel shows `boot_vga` on VGA-class devices only: the others are
            // not asked (one look fewer per device at boot).
            boot_vga: class >> 16 == 0x03 && a.text("boot_vga") == Some("1"),
            iommu_group: a.link_name("iommu_group").and_then(|g| g.parse().ok()),
            modalias,
            sriov: read_pf(&mut a),
        };
        let more = extra(&mut a);
        Some((dev, more))
    }

    /// `vendor:device`.
    pub fn id(&self) -> PciId {
        PciId {
            vendor: self.vendor,
            device: self.device,
            subsystem: None,
        }
    }

    /// The base class byte (0x03 display, 0x01 storage, 0x06 bridge...).
    pub(crate) fn base_class(&self) -> u8 {
        u8::try_from(self.class >> 16).unwrap_or(0xff)
    }

    /// A bridge that carries other devices: a host bridge (class 0x0600) or a
    /// PCI-to-PCI bridge (0x0604, 0x0609: root and downstream ports). vfio-pci never
    /// takes one; unselected, it is fine for vfio on `pcieport` or on no driver. (An
    /// ISA bridge, 0x0601, is an endpoint: the chipset's LPC function.)
    pub(crate) fn is_bridge(&self) -> bool {
        matches!(self.class >> 8, 0x0600 | 0x0604 | 0x0609)
    }

    /// Any bridge (base class 0x06: host, ISA, PCI-to-PCI, ...): never handed to
    /// vfio-pci.
    pub fn is_any_bridge(&self) -> bool {
        self.base_class() == 0x06
    }

    /// A mass-storage controller (class 0x01): possibly the root disk.
    pub(crate) fn is_storage(&self) -> bool {
        self.base_class() == 0x01
    }

    /// A display controller (class 0x03).
    pub fn is_display(&self) -> bool {
        self.base_class() == 0x03
    }
}

/// The ids and class in a PCI `modalias` as the kernel prints it
/// (`pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X`): vendor, device, subsystem vendor,
/// subsystem device, class (base, sub, interface: 24 bits). `None` for any other text.
pub(crate) fn parse_modalias(s: &str) -> Option<(u16, u16, u16, u16, u32)> {
    fn field<'a>(s: &'a str, tag: &str, digits: usize) -> Option<(u32, &'a str)> {
        let s = s.strip_prefix(tag)?;
        let hex = s.get(..digits)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some((u32::from_str_radix(hex, 16).ok()?, &s[digits..]))
    }
    let s = s.strip_prefix("pci:")?;
    let (v, s) = field(s, "v", 8)?;
    let (d, s) = field(s, "d", 8)?;
    let (sv, s) = field(s, "sv", 8)?;
    let (sd, s) = field(s, "sd", 8)?;
    let (bc, s) = field(s, "bc", 2)?;
    let (sc, s) = field(s, "sc", 2)?;
    let (i, s) = field(s, "i", 2)?;
    if !s.is_empty() {
        return None;
    }
    let id = |x: u32| u16::try_from(x).ok();
    Some((id(v)?, id(d)?, id(sv)?, id(sd)?, bc << 16 | sc << 8 | i))
}

/// Every PCI device the host shows, sorted by address. Entries whose names are not
/// PCI addresses are ignored.
pub fn scan(host: &Host) -> Vec<Device> {
    scan_with(host, |_| ()).0
}

/// [`scan`], and what `extra` reads from each device's directory
/// ([`Device::read_with`]), in the same order as the devices.
pub(crate) fn scan_with<T>(
    host: &Host,
    mut extra: impl FnMut(&mut crate::host::AttrDir) -> T,
) -> (Vec<Device>, Vec<T>) {
    // The addresses sorted before the devices are read: the devices come out in
    // order, and no record is moved by a sort.
    let mut addresses: Vec<PciAddress> = host
        .list(DEVICES)
        .iter()
        .filter_map(|name| name.parse().ok())
        .collect();
    addresses.sort();
    let mut devices = Vec::with_capacity(addresses.len());
    let mut more = Vec::with_capacity(addresses.len());
    for address in addresses {
        if let Some((d, m)) = Device::read_with(host, address, &mut extra) {
            devices.push(d);
            more.push(m);
        }
    }
    mark_vfs(&mut devices);
    (devices, more)
}

/// Where the kernel's own group directories (`sys/kernel/iommu_groups/N/devices`)
/// disagree with the devices' `iommu_group` links, or hold a member that is not a PCI
/// function (a platform device): per group, the reasons. Such a group is refused whole
/// by the planner, since what it really holds is not known. `devices` are sorted by
/// address, as [`scan`] gives them.
pub fn group_problems(
    host: &Host,
    devices: &[Device],
) -> std::collections::BTreeMap<u32, Vec<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut problems: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    // `devices` as `scan` gives them: sorted by address.
    let by_addr = |a: &PciAddress| {
        devices
            .binary_search_by_key(a, |d| d.address)
            .ok()
            .map(|i| &devices[i])
    };
    let mut listed: BTreeSet<(u32, PciAddress)> = BTreeSet::new();
    for name in host.list(IOMMU_GROUPS) {
        let Ok(g) = name.parse::<u32>() else { continue };
        for member in host.list(format!("{IOMMU_GROUPS}/{g}/devices")) {
            let why = match member.parse::<PciAddress>() {
                Err(_) => Some(format!(
                    "it holds {member:?}, which is not a PCI function (a platform device?): \
                     the kernel counts it, and vfio-pci cannot take it"
                )),
                Ok(a) => {
                    listed.insert((g, a));
                    match by_addr(&a) {
                        None => Some(format!(
                            "it lists {a}, which sys/bus/pci/devices does not show"
                        )),
                        Some(d) if d.iommu_group != Some(g) => Some(format!(
                            "it lists {a}, whose own iommu_group link says {}",
                            d.iommu_group
                                .map_or_else(|| "no group".to_owned(), |o| format!("group {o}"))
                        )),
                        Some(_) => None,
                    }
                }
            };
            if let Some(why) = why {
                problems.entry(g).or_default().push(why);
            }
        }
    }
    for d in devices {
        if let Some(g) = d.iommu_group {
            if !listed.contains(&(g, d.address)) {
                problems.entry(g).or_default().push(format!(
                    "{}'s iommu_group link names group {g}, but the group's devices do not list it",
                    d.address
                ));
            }
        }
    }
    problems
}

/// Whether the kernel shows any IOMMU group at all.
pub(crate) fn iommu_groups_present(host: &Host) -> bool {
    !host.list(IOMMU_GROUPS).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modalias_gives_the_ids_and_class_the_attributes_show() {
        assert_eq!(
            parse_modalias("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"),
            Some((0x8086, 0x10d3, 0x8086, 0xa01f, 0x020000))
        );
        assert_eq!(
            parse_modalias("pci:v00001002d00006779sv00001458sd000022B3bc03sc00i00"),
            Some((0x1002, 0x6779, 0x1458, 0x22b3, 0x030000))
        );
        for bad in [
            "",
            "usb:v1D6Bp0002",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00",
            "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00x",
            "pci:v00018086d000010D3sv00008086sd0000A01Fbc02sc00i00",
            "pci:v0000808gd000010D3sv00008086sd0000A01Fbc02sc00i00",
        ] {
            assert_eq!(parse_modalias(bad), None, "{bad}");
        }
    }

    #[test]
    fn boot_vga_is_read_on_display_devices_only() {
        let t = testing::TestSysfs::new();
        t.add(&testing::Dev::new("0000:00:02.0", (0x1234, 0x1111), 0x030000).boot_vga());
        // Not a kernel's tree: the kernel shows boot_vga on VGA devices alone.
        t.add(&testing::Dev::new("0000:00:03.0", (0x8086, 0x10d3), 0x020000).boot_vga());
        let host = Host::new(t.root());
        let read = |a: &str| Device::read(&host, a.parse().unwrap()).unwrap().boot_vga;
        assert!(read("0000:00:02.0"));
        assert!(!read("0000:00:03.0"));
    }

    #[test]
    fn a_device_without_modalias_is_read_from_its_attributes() {
        let t = testing::TestSysfs::new();
        let dir = "sys/bus/pci/devices/0000:00:03.0";
        t.file(&format!("{dir}/vendor"), "0x8086\n");
        t.file(&format!("{dir}/device"), "0x10d3\n");
        t.file(&format!("{dir}/subsystem_vendor"), "0x8086\n");
        t.file(&format!("{dir}/subsystem_device"), "0x0000\n");
        t.file(&format!("{dir}/class"), "0x020000\n");
        let host = Host::new(t.root());
        let d = Device::read(&host, "0000:00:03.0".parse().unwrap()).unwrap();
        assert_eq!((d.vendor, d.device, d.class), (0x8086, 0x10d3, 0x020000));
        assert_eq!(d.modalias, None);
        // With one, the ids come from it alone (the kernel prints both from the same
        // fields).
        for a in ["vendor", "device", "class"] {
            std::fs::remove_file(t.root().join(format!("{dir}/{a}"))).unwrap();
        }
        t.file(
            &format!("{dir}/modalias"),
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00\n",
        );
        let d = Device::read(&host, "0000:00:03.0".parse().unwrap()).unwrap();
        assert_eq!((d.vendor, d.device, d.class), (0x8086, 0x10d3, 0x020000));
    }

    #[test]
    fn parses_full_and_short_addresses() {
        let a: PciAddress = "0000:01:00.1".parse().unwrap();
        assert_eq!((a.domain, a.bus, a.device, a.function), (0, 1, 0, 1));
        assert_eq!(a.to_string(), "0000:01:00.1");
        let b: PciAddress = "0a:1f.7".parse().unwrap();
        assert_eq!(b.to_string(), "0000:0a:1f.7");
        let vmd: PciAddress = "10000:e1:00.0".parse().unwrap();
        assert_eq!(vmd.to_string(), "10000:e1:00.0");
        assert_eq!("0000:AB:00.0".parse::<PciAddress>().unwrap().bus, 0xab);
    }

    #[test]
    fn addresses_and_ids_print_and_order_as_the_format_machinery_would() {
        let addrs = [
            PciAddress {
                domain: 0,
                bus: 0,
                device: 0,
                function: 0,
            },
            PciAddress {
                domain: 0,
                bus: 0xab,
                device: 0x1f,
                function: 7,
            },
            PciAddress {
                domain: 0x1_0000,
                bus: 0xe1,
                device: 2,
                function: 3,
            },
            PciAddress {
                domain: u32::MAX,
                bus: u8::MAX,
                device: u8::MAX,
                function: u8::MAX,
            },
        ];
        for a in addrs {
            let std = format!(
                "{:04x}:{:02x}:{:02x}.{:x}",
                a.domain, a.bus, a.device, a.function
            );
            assert_eq!(a.to_string(), std);
            assert_eq!(a.sysfs_dir(), format!("{DEVICES}/{std}"));
            assert_eq!(a.attr("vendor"), format!("{DEVICES}/{std}/vendor"));
            for b in addrs {
                let tuple = |x: PciAddress| (x.domain, x.bus, x.device, x.function);
                assert_eq!(a.cmp(&b), tuple(a).cmp(&tuple(b)), "{a} vs {b}");
            }
        }
        let id = PciId {
            vendor: 0x10de,
            device: 0x0b,
            subsystem: None,
        };
        assert_eq!(id.to_string(), "10de:000b");
        let sub = PciId {
            subsystem: Some((0x1458, 0xffff)),
            ..id
        };
        assert_eq!(sub.to_string(), "10de:000b:1458:ffff");
        assert_eq!(Text::<8>::new().hex(0x30000, 6).as_str(), "030000");
        assert_eq!(Text::<8>::new().hex(0, 1).as_str(), "0");
        assert_eq!(Text::<8>::new().hex(0x1234_5678, 6).as_str(), "12345678");
        assert_eq!(
            Text::<3>::new().hex(0xabcd, 4).as_str(),
            "abc",
            "cut at N bytes"
        );
    }

    #[test]
    fn rejects_bad_and_path_like_addresses() {
        for bad in [
            "",
            "0000:01:00",
            "0000:01:20.0",
            "0000:01:00.8",
            "000:01:00.0",
            "0000:001:00.0",
            "../../0000:01:00.0",
            "0000:01:00.0/../../x",
            "0000:01:00.0 ",
            "0000:0g:00.0",
            "+000:01:00.0",
            "0000:01:00.-1",
            "0:0:0:0.0",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad:?} accepted");
        }
        let e = "0000:01:20.0"
            .parse::<PciAddress>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("device out of range"), "{e}");
    }

    #[test]
    fn parses_ids() {
        let id: PciId = "1002:6779".parse().unwrap();
        assert_eq!((id.vendor, id.device, id.subsystem), (0x1002, 0x6779, None));
        let sub: PciId = "10de:1b80:1458:3702".parse().unwrap();
        assert_eq!(sub.subsystem, Some((0x1458, 0x3702)));
        assert_eq!(sub.to_string(), "10de:1b80:1458:3702");
        for bad in [
            "1002",
            "1002:677",
            "1002:6779:1",
            "1002:6779:x:y",
            "g002:6779",
            "1002:6779:",
        ] {
            assert!(bad.parse::<PciId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_dma_safe_driver_rule() {
        for safe in [
            "vfio-pci",
            "vfio_pci",
            "mlx5_vfio_pci",
            "pds-vfio-pci",
            "pci-stub",
            "pcieport",
        ] {
            assert!(driver_manages_dma(safe), "{safe}");
        }
        for host in ["radeon", "snd_hda_intel", "vfio_pci_core", "vfio", "shpchp"] {
            assert!(!driver_manages_dma(host), "{host}");
        }
        assert!(is_vfio_driver("mlx5_vfio_pci") && !is_vfio_driver("pci-stub"));
    }

    #[test]
    fn slot_and_class_helpers() {
        let a: PciAddress = "0000:01:00.0".parse().unwrap();
        let b: PciAddress = "0000:01:00.1".parse().unwrap();
        let c: PciAddress = "0000:01:01.0".parse().unwrap();
        assert!(a.same_slot(&b));
        assert!(!a.same_slot(&c));
        assert_eq!(
            a.attr("driver_override"),
            "sys/bus/pci/devices/0000:01:00.0/driver_override"
        );
    }
}
