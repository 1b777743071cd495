//! The configuration file, `/etc/vfio-early.toml`.
//!
//! ```toml
//! [[device]]
//! address = "0000:01:00.0"  # strictly parsed, never used as a path before validation
//! id = "1002:6779"          # vendor:device[:subvendor:subdevice]
//! functions = "slot"        # "one" (default) or "slot": every function of that slot
//! allow_boot_vga = false    # default false
//! allow_storage = false     # default false
//! vf = [0, 1]               # with the address of an SR-IOV PF: its VFs 0 and 1
//!
//! [[sriov]]                 # made at boot, before planning
//! address = "0000:03:00.0"  # the physical function (PF)
//! vfs = 4                   # how many virtual functions (VFs) it makes
//! id = "8086:10c9"          # optional: the PF's id, so an image built elsewhere
//!                           # carries its driver
//!
//! [[hugepages]]
//! size = "1G"               # "2M", "1G", or any size the kernel offers
//! count = 4                 # or total = "8G", turned into pages
//! node = 0                  # optional: the pages come from this NUMA node
//!
//! [memory]
//! floor = "2G"              # left to the host after hugepages; or "15%" of MemTotal;
//!                           # default: the larger of 1G and 10% of MemTotal
//!
//! [bind]
//! timeout_ms = 3000         # bound on each blocking kernel write
//!
//! [handover]                # `detach`/`reattach` on a running host; nothing is guessed
//! consoles = false          # unbind framebuffer consoles before detaching the boot display
//! framebuffer = false       # release the firmware framebuffer over the card's BAR
//! units = []                # systemd units stopped before, started after ("sddm.service")
//! modules = []              # modules unloaded before, loaded after ("nvidia_drm")
//! libvirt_managed = false   # the libvirt hook also takes hostdevs with managed='yes'
//! timeout_ms = 10000        # bound on each handover step (a unit stop, a module unload)
//! ```
//!
//! Parsing is strict: unknown keys, wrong types and bad values are errors that name the
//! file, line and column. A config error never stops the boot; the agent reports it and
//! does nothing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::pci::{PciAddress, PciId};
use crate::size::{amount, parse_size_kb};

/// The default config path, relative to the host root.
pub(crate) const DEFAULT_PATH: &str = "etc/vfio-early.toml";
/// Larger files are refused before parsing (a config is a few hundred bytes).
pub const MAX_SIZE: usize = 256 * 1024;

/// A config error, with the place it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line and column, when the error has a place.
    pub at: Option<(usize, usize)>,
    /// What is wrong, as a sentence fragment.
    pub message: String,
    /// True when there is no file at the path at all (`ENOENT`, and no dangling link
    /// either): the only case a missing config is not an error.
    pub missing: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)
            }
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// How many functions of a card a selector takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Functions {
    /// Only the function named.
    #[default]
    One,
    /// Every function of the slot (a GPU and its HDMI audio, USB, UCSI functions).
    Slot,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    device: Vec<Spanned<RawDevice>>,
    #[serde(default)]
    hugepages: Vec<Spanned<RawHugepages>>,
    #[serde(default)]
    sriov: Vec<Spanned<RawSriov>>,
    #[serde(default)]
    memory: RawMemory,
    #[serde(default)]
    bind: BindSettings,
    #[serde(default)]
    handover: HandoverSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHugepages {
    size: Spanned<String>,
    count: Option<Spanned<u64>>,
    total: Option<Spanned<String>>,
    node: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSriov {
    address: Spanned<String>,
    vfs: Spanned<u16>,
    id: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    floor: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    address: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
    #[serde(default)]
    functions: Functions,
    #[serde(default)]
    allow_boot_vga: bool,
    #[serde(default)]
    allow_storage: bool,
    vf: Option<Spanned<Vec<u16>>>,
    reset_method: Option<Spanned<Vec<String>>>,
}

/// One `[[sriov]]` entry: a PF whose VFs the agent makes at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SriovEntry {
    /// The line of its `[[sriov]]` header.
    pub line: usize,
    /// The physical function.
    pub address: PciAddress,
    /// How many VFs (never 0).
    pub vfs: u16,
    /// The PF's id, when given (the image build finds its driver by it).
    pub id: Option<PciId>,
}

/// One `[[hugepages]]` entry: the size and the amount are checked here (a unit, not
/// zero), against the kernel's pools by the hugepage planner ([`crate::hugepages`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugepagesEntry {
    /// Page size in kB (`size = "2M"` is 2048).
    pub size_kb: u64,
    /// How many pages: `count`, or `total` to turn into pages.
    pub amount: HugepagesAmount,
    /// NUMA node, when the pages must come from one.
    pub node: Option<u32>,
}

/// What a `[[hugepages]]` entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugepagesAmount {
    /// `count = N`: N pages (never 0).
    Count(u64),
    /// `total = "8G"`: this many kB, rounded up to whole pages.
    TotalKb(u64),
}

/// The minimum memory left to the host after hugepage reservations (`[memory] floor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// An amount, in kB (`floor = "2G"`).
    Kb(u64),
    /// A share of `MemTotal` (`floor = "15%"`).
    Percent(u8),
}

impl FromStr for Floor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.trim().strip_suffix('%') {
            let p: u8 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage"))?;
            if p > 100 {
                return Err(format!("{s:?} is more than 100 %"));
            }
            return Ok(Self::Percent(p));
        }
        if s.trim() == "0" {
            return Ok(Self::Kb(0));
        }
        parse_size_kb(s).map(Self::Kb)
    }
}

impl fmt::Display for Floor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kb(kb) => write!(f, "{}", amount(*kb)),
            Self::Percent(p) => write!(f, "{p}% of MemTotal"),
        }
    }
}

/// `[memory]`: what hugepage reservations must leave to the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemorySettings {
    /// The floor; `None` is the default (the larger of 1 GiB and 10 % of MemTotal).
    pub floor: Option<Floor>,
}

/// `[bind]`: how the binder behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BindSettings {
    /// Bound on each blocking kernel write and on module loading, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for BindSettings {
    fn default() -> Self {
        Self { timeout_ms: 3000 }
    }
}

impl BindSettings {
    /// The bound as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `[handover]`: what `detach` releases before it takes a display, and `reattach`
/// restores after (in reverse order). Everything is off unless named.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandoverSettings {
    /// Unbind the framebuffer consoles (`/sys/class/vtconsole/*/bind`) before the boot
    /// display goes.
    pub consoles: bool,
    /// Release the firmware framebuffer device over the card's BAR.
    pub framebuffer: bool,
    /// systemd units to stop first (a display manager, `nvidia-persistenced`).
    pub units: Vec<String>,
    /// Modules to unload, in this order (`nvidia_drm`, `nvidia_modeset`).
    pub modules: Vec<String>,
    /// The libvirt hook takes every PCI hostdev, `managed='yes'` ones too.
    pub libvirt_managed: bool,
    /// Bound on each step, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for HandoverSettings {
    fn default() -> Self {
        Self {
            consoles: false,
            framebuffer: false,
            units: Vec::new(),
            modules: Vec::new(),
            libvirt_managed: false,
            timeout_ms: 10_000,
        }
    }
}

impl HandoverSettings {
    /// True when any release step is configured.
    pub fn any(&self) -> bool {
        self.consoles || self.framebuffer || !self.units.is_empty() || !self.modules.is_empty()
    }

    /// The bound on each step.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn validate(&self) -> Result<(), String> {
        let name_ok = |n: &str, extra: &str| {
            !n.is_empty()
                && !n.starts_with('-')
                && n.len() <= 255
                && n.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || b"_-".contains(&b) || extra.as_bytes().contains(&b)
                })
        };
        if let Some(u) = self.units.iter().find(|u| !name_ok(u, "@.:\\")) {
            return Err(format!("handover.units: {u:?} is not a systemd unit name"));
        }
        if let Some(m) = self.modules.iter().find(|m| !name_ok(m, "")) {
            return Err(format!("handover.modules: {m:?} is not a module name"));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 120_000 {
            return Err(format!(
                "handover.timeout_ms = {} is out of range (1..=120000)",
                self.timeout_ms
            ));
        }
        Ok(())
    }
}

/// A validated device selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// 1-based position among the `[[device]]` entries.
    pub index: usize,
    /// The line of its `[[device]]` header.
    pub line: usize,
    /// The address, when given.
    pub address: Option<PciAddress>,
    /// The id, when given.
    pub id: Option<PciId>,
    /// One function or the whole slot.
    pub functions: Functions,
    /// The config allows the boot display.
    pub allow_boot_vga: bool,
    /// The config allows a storage controller.
    pub allow_storage: bool,
    /// With `address` naming an SR-IOV PF: the indexes of the VFs taken (not the PF).
    pub vf: Vec<u16>,
    /// `reset_method = [...]`: written at boot, before binding, to the devices the
    /// entry names (its address, or its id's matches), in this order.
    pub reset_method: Option<Vec<crate::reset::Method>>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[[device]] #{} (line {}", self.index, self.line)?;
        if let Some(a) = self.address {
            write!(f, ", address {a}")?;
        }
        if let Some(id) = self.id {
            write!(f, ", id {id}")?;
        }
        if !self.vf.is_empty() {
            write!(f, ", vf {:?}", self.vf)?;
        }
        write!(f, ")")
    }
}

/// A validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where it came from.
    pub path: PathBuf,
    /// The text as read (the boot record keeps it, so `check` can tell a stale image).
    pub text: String,
    /// Device selectors, in file order.
    pub devices: Vec<Selector>,
    /// Hugepage requests, with their line.
    pub hugepages: Vec<(usize, HugepagesEntry)>,
    /// `[[sriov]]`: the VFs to make at boot, in file order.
    pub sriov: Vec<SriovEntry>,
    /// `[memory]`: the floor hugepages must leave.
    pub memory: MemorySettings,
    /// Binder settings.
    pub bind: BindSettings,
    /// `[handover]`: release and restore around `detach` / `reattach`.
    pub handover: HandoverSettings,
}

impl Config {
    /// Whether the config asks for nothing at all (no device, no hugepages, no VFs): the boot
    /// then stops before reading the topology.
    pub fn selects_nothing(&self) -> bool {
        self.devices.is_empty() && self.hugepages.is_empty() && self.sriov.is_empty()
    }
}

/// The start of every line of a text, built once, so finding the line of an offset is
/// a binary search rather than a scan from the start (one scan per `[[device]]` entry
/// made parsing quadratic in the number of entries).
#[derive(Debug)]
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self { starts }
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

/// A `reset_method` list: at least one known method, none twice (the kernel refuses
/// both).
fn reset_methods(words: &[String]) -> Result<Vec<crate::reset::Method>, String> {
    if words.is_empty() {
        return Err(
            "an empty list chooses nothing (leave the key out for the kernel's own)".to_owned(),
        );
    }
    let mut out: Vec<crate::reset::Method> = Vec::with_capacity(words.len());
    for w in words {
        let m: crate::reset::Method = w.parse()?;
        if out.contains(&m) {
            return Err(format!("{w} is named twice"));
        }
        out.push(m);
    }
    Ok(out)
}

/// 1-based line and column of a byte offset (for the one error a parse reports; the
/// column scan is linear in the line's length).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

impl Config {
    /// Parses and validates a config from bytes read from `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let err = |at, message: String| ConfigError {
            path: path.to_path_buf(),
            at,
            message,
            missing: false,
        };
        if bytes.len() > MAX_SIZE {
            return Err(err(
                None,
                format!(
                    "{} bytes is too large for a config (limit {MAX_SIZE})",
                    bytes.len()
                ),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let (line, col) = line_col(&String::from_utf8_lossy(bytes), e.valid_up_to());
            err(
                Some((line, col)),
                "not UTF-8 text (is this a binary file?)".to_owned(),
            )
        })?;
        if text.contains('\0') {
            let (line, col) = line_col(text, text.find('\0').unwrap_or(0));
            return Err(err(
                Some((line, col)),
                "contains a NUL byte (is this a binary file?)".to_owned(),
            ));
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| line_col(text, s.start));
            let msg = e.message().trim();
            let msg = if msg.is_empty() {
                // Some syntax errors (a control character in a comment) come without
                // words: say what the position holds.
                "invalid TOML here (a control character or a stray byte?)".to_owned()
            } else {
                msg.to_owned()
            };
            err(at, msg)
        })?;
        let at = |span: std::ops::Range<usize>| Some(line_col(text, span.start));
        let lines = Lines::new(text);

        let mut devices = Vec::with_capacity(raw.device.len());
        for (i, entry) in raw.device.iter().enumerate() {
            let span = entry.span();
            let dev = entry.get_ref();
            let address = match &dev.address {
                Some(a) => Some(
                    a.get_ref()
                        .parse::<PciAddress>()
                        .map_err(|e| err(at(a.span()), format!("address: {e}")))?,
                ),
                None => None,
            };
            let id = match &dev.id {
                Some(v) => Some(
                    v.get_ref()
                        .parse::<PciId>()
                        .map_err(|e| err(at(v.span()), format!("id: {e}")))?,
                ),
                None => None,
            };
            if address.is_none() && id.is_none() {
                return Err(err(
                    at(span.clone()),
                    "[[device]] needs an `address`, an `id`, or both".to_owned(),
                ));
            }
            let mut vf = Vec::new();
            if let Some(v) = &dev.vf {
                if address.is_none() {
                    return Err(err(
                        at(v.span()),
                        "vf: needs the `address` of the VFs' physical function (PF)".to_owned(),
                    ));
                }
                if dev.functions == Functions::Slot {
                    return Err(err(
                        at(v.span()),
                        "vf: takes VFs one by one; leave out `functions = \"slot\"`".to_owned(),
                    ));
                }
                if v.get_ref().is_empty() {
                    return Err(err(
                        at(v.span()),
                        "vf = [] takes nothing (name VF indexes, or leave `vf` out)".to_owned(),
                    ));
                }
                vf.clone_from(v.get_ref());
                vf.sort_unstable();
                vf.dedup();
            }
            let reset_method = match &dev.reset_method {
                Some(v) => Some(
                    reset_methods(v.get_ref())
                        .map_err(|e| err(at(v.span()), format!("reset_method: {e}")))?,
                ),
                None => None,
            };
            devices.push(Selector {
                index: i + 1,
                line: lines.line(span.start),
                address,
                id,
                functions: dev.functions,
                allow_boot_vga: dev.allow_boot_vga,
                allow_storage: dev.allow_storage,
                reset_method,
                vf,
            });
        }
        let mut sriov: Vec<SriovEntry> = Vec::with_capacity(raw.sriov.len());
        for entry in &raw.sriov {
            let e = entry.get_ref();
            let address = e
                .address
                .get_ref()
                .parse::<PciAddress>()
                .map_err(|x| err(at(e.address.span()), format!("sriov address: {x}")))?;
            if let Some(first) = sriov.iter().find(|s| s.address == address) {
                return Err(err(
                    at(e.address.span()),
                    format!(
                        "sriov address: {address} already has an [[sriov]] entry (line {})",
                        first.line
                    ),
                ));
            }
            let vfs = *e.vfs.get_ref();
            if vfs == 0 {
                return Err(err(
                    at(e.vfs.span()),
                    "sriov vfs: 0 makes nothing (leave the entry out; the agent never removes VFs)"
                        .to_owned(),
                ));
            }
            let id = match &e.id {
                Some(v) => Some(
                    v.get_ref()
                        .parse::<PciId>()
                        .map_err(|x| err(at(v.span()), format!("sriov id: {x}")))?,
                ),
                None => None,
            };
            sriov.push(SriovEntry {
                line: lines.line(entry.span().start),
                address,
                vfs,
                id,
            });
        }
        if raw.bind.timeout_ms == 0 || raw.bind.timeout_ms > 60_000 {
            return Err(err(
                None,
                format!(
                    "bind.timeout_ms = {} is out of range (1..=60000)",
                    raw.bind.timeout_ms
                ),
            ));
        }
        raw.handover.validate().map_err(|m| err(None, m))?;
        let mut hugepages = Vec::with_capacity(raw.hugepages.len());
        for h in raw.hugepages {
            let line = lines.line(h.span().start);
            let span = h.span();
            let h = h.into_inner();
            let size_kb = parse_size_kb(h.size.get_ref())
                .map_err(|e| err(at(h.size.span()), format!("hugepages size: {e}")))?;
            let amount = match (&h.count, &h.total) {
                (Some(_), Some(t)) => {
                    return Err(err(
                        at(t.span()),
                        "[[hugepages]] takes `count` or `total`, not both".to_owned(),
                    ))
                }
                (None, None) => {
                    return Err(err(
                        at(span),
                        "[[hugepages]] needs `count` or `total`".to_owned(),
                    ))
                }
                (Some(c), None) if *c.get_ref() == 0 => {
                    return Err(err(
                        at(c.span()),
                        "hugepages count: 0 reserves nothing (leave the entry out)".to_owned(),
                    ))
                }
                (None, Some(t)) => HugepagesAmount::TotalKb(
                    parse_size_kb(t.get_ref())
                        .map_err(|e| err(at(t.span()), format!("hugepages total: {e}")))?,
                ),
                (Some(c), None) => HugepagesAmount::Count(*c.get_ref()),
            };
            hugepages.push((
                line,
                HugepagesEntry {
                    size_kb,
                    amount,
                    node: h.node,
                },
            ));
        }
        let floor = match &raw.memory.floor {
            Some(f) => Some(
                f.get_ref()
                    .parse::<Floor>()
                    .map_err(|e| err(at(f.span()), format!("memory.floor: {e}")))?,
            ),
            None => None,
        };
        Ok(Self {
            path: path.to_path_buf(),
            text: text.to_owned(),
            devices,
            hugepages,
            sriov,
            memory: MemorySettings { floor },
            bind: raw.bind,
            handover: raw.handover,
        })
    }

    /// Reads and parses a config file, through the host seam's bounded reader: a FIFO,
    /// socket, device or directory is refused without being opened, a file over
    /// [`MAX_SIZE`] without being read whole.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = crate::host::read_file(path, MAX_SIZE as u64).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            at: None,
            message: match &e {
                crate::host::HostError::TooLarge { size, .. } => format!(
                    "{}too large for a config (limit {MAX_SIZE})",
                    size.map(|s| format!("{s} bytes is ")).unwrap_or_default()
                ),
                _ => e.reason(),
            },
            missing: e.is_not_found() && std::fs::symlink_metadata(path).is_err(),
        })?;
        Self::parse(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/vfio-early.toml"), text.as_bytes())
    }

    #[test]
    fn full_schema() {
        let c = parse(
            "[[device]]\naddress = \"0000:01:00.0\"\nid = \"1002:6779\"\nfunctions = \"slot\"\n\n\
             [[device]]\nid = \"8086:10d3\"\nallow_storage = true\n[bind]\ntimeout_ms = 500\n",
        )
        .unwrap();
        assert_eq!(c.devices.len(), 2);
        let d = &c.devices[0];
        assert_eq!(d.address.unwrap().to_string(), "0000:01:00.0");
        assert_eq!(d.id.unwrap().to_string(), "1002:6779");
        assert_eq!((d.functions, d.line, d.index), (Functions::Slot, 1, 1));
        assert!(!d.allow_boot_vga);
        let e = &c.devices[1];
        assert_eq!(
            (e.address, e.functions, e.allow_storage, e.line),
            (None, Functions::One, true, 6)
        );
        assert_eq!(c.bind.timeout(), Duration::from_millis(500));
    }

    #[test]
    fn reset_method_is_a_list_of_known_methods_in_order() {
        use crate::reset::Method;
        let c = parse("[[device]]\naddress = \"0000:03:00.0\"\nreset_method = [\"pm\", \"flr\"]\n")
            .unwrap();
        assert_eq!(
            c.devices[0].reset_method,
            Some(vec![Method::Pm, Method::Flr])
        );
        assert_eq!(
            parse("[[device]]\naddress = \"0000:03:00.0\"\n")
                .unwrap()
                .devices[0]
                .reset_method,
            None
        );
        for (text, says) in [
            ("[\"reboot\"]", "is not a reset method"),
            ("[]", "chooses nothing"),
            ("[\"flr\", \"flr\"]", "named twice"),
            ("\"flr\"", "invalid type"),
        ] {
            let e = parse(&format!(
                "[[device]]\naddress = \"0000:03:00.0\"\nreset_method = {text}\n"
            ))
            .unwrap_err();
            assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
            assert!(e.message.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn empty_config_is_valid_and_selects_nothing() {
        let c = parse("").unwrap();
        assert!(c.devices.is_empty());
        assert_eq!(c.bind, BindSettings::default());
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = parse("[[device]]\naddress = \"0000:01:00.0\"\nadress = \"x\"\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
        assert!(e.to_string().starts_with("/etc/vfio-early.toml:3:"), "{e}");
        assert!(e.message.contains("adress"), "{e}");

        let e = parse("[[device]]\naddress = \"../../0000:01:00.0\"\n").unwrap_err();
        assert_eq!(e.at, Some((2, 11)), "{e}");
        assert!(e.message.contains("not a PCI address"), "{e}");

        let e = parse("[[device]]\naddress = 1\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(2), "{e}");

        let e = parse("[[device]]\nfunctions = \"all\"\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(2), "{e}");

        let e = parse("[[device]]\nallow_boot_vga = true\n").unwrap_err();
        assert!(e.message.contains("needs an `address`"), "{e}");
        assert_eq!(e.at.map(|a| a.0), Some(1), "{e}");

        let e = parse("[[device]\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(1), "{e}");

        let e = parse("[bind]\ntimeout_ms = 0\n").unwrap_err();
        assert!(e.message.contains("out of range"), "{e}");

        let e = parse("[[device]]\nid = \"1002:67790\"\n").unwrap_err();
        assert!(e.message.starts_with("id:"), "{e}");
    }

    #[test]
    fn hugepages_and_memory_floor() {
        let c = parse(
            "[[hugepages]]\nsize = \"1G\"\ncount = 4\nnode = 0\n\n[[hugepages]]\nsize = \"2M\"\ntotal = \"8G\"\n\
             [memory]\nfloor = \"15%\"\n",
        )
        .unwrap();
        assert_eq!(c.hugepages.len(), 2);
        assert_eq!(c.hugepages[0].0, 1);
        assert_eq!(
            c.hugepages[0].1,
            HugepagesEntry {
                size_kb: 1024 * 1024,
                amount: HugepagesAmount::Count(4),
                node: Some(0)
            }
        );
        assert_eq!(c.hugepages[1].0, 6);
        assert_eq!(
            c.hugepages[1].1.amount,
            HugepagesAmount::TotalKb(8 * 1024 * 1024)
        );
        assert_eq!(c.memory.floor, Some(Floor::Percent(15)));
        assert_eq!(parse("").unwrap().memory, MemorySettings::default());
    }

    #[test]
    fn floors_parse() {
        let gib = 1024 * 1024;
        assert_eq!("2G".parse::<Floor>(), Ok(Floor::Kb(2 * gib)));
        assert_eq!("15%".parse::<Floor>(), Ok(Floor::Percent(15)));
        assert_eq!("0".parse::<Floor>(), Ok(Floor::Kb(0)));
        assert!("101%".parse::<Floor>().is_err());
        assert!("lots".parse::<Floor>().is_err());
        assert_eq!(Floor::Kb(gib + gib / 2).to_string(), "1.5G");
        assert_eq!(Floor::Percent(15).to_string(), "15% of MemTotal");
    }

    #[test]
    fn hugepages_errors_name_line_and_column() {
        let e = parse("[[device]]\nid = \"1002:6779\"\n[[hugepages]]\nsize = \"2X\"\ncount = 1\n")
            .unwrap_err();
        assert_eq!(e.at, Some((4, 8)), "{e}");
        assert!(e.message.starts_with("hugepages size:"), "{e}");

        let e = parse("[[hugepages]]\nsize = \"2M\"\ncount = 1\ntotal = \"1G\"\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(4), "{e}");
        assert!(e.message.contains("not both"), "{e}");

        let e = parse("\n[[hugepages]]\nsize = \"2M\"\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(2), "{e}");
        assert!(e.message.contains("needs `count` or `total`"), "{e}");

        let e = parse("[[hugepages]]\nsize = \"2M\"\ncount = 0\n").unwrap_err();
        assert_eq!(e.at, Some((3, 9)), "{e}");

        let e = parse("[[hugepages]]\nsize = \"2M\"\ncount = -1\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");

        let e = parse("[[hugepages]]\nsize = \"2M\"\ntotal = \"lots\"\n").unwrap_err();
        assert!(e.message.starts_with("hugepages total:"), "{e}");

        let e = parse("[[hugepages]]\nsize = \"2M\"\ncount = 1\npages = 2\n").unwrap_err();
        assert!(e.message.contains("pages"), "{e}");
        assert_eq!(e.at.map(|a| a.0), Some(4), "{e}");

        let e = parse("[memory]\nfloor = \"200%\"\n").unwrap_err();
        assert_eq!(e.at, Some((2, 9)), "{e}");
        assert!(e.message.starts_with("memory.floor:"), "{e}");
        let e = parse("[memory]\nfloors = \"1G\"\n").unwrap_err();
        assert!(e.message.contains("floors"), "{e}");
    }

    #[test]
    fn binary_and_huge_input_is_refused_cleanly() {
        let e = Config::parse(Path::new("c"), b"\x7fELF\x02\x01\x01\0\xff\xfe").unwrap_err();
        assert!(e.message.contains("binary"), "{e}");
        let e = Config::parse(Path::new("c"), "#".repeat(MAX_SIZE + 1).as_bytes()).unwrap_err();
        assert!(e.message.contains("too large"), "{e}");
    }

    #[test]
    fn handover_table_is_off_unless_named_and_names_are_checked() {
        assert!(!parse("").unwrap().handover.any());
        let c = parse(
            "[handover]\nconsoles = true\nunits = [\"sddm.service\"]\nmodules = [\"nvidia_drm\"]\n",
        )
        .unwrap();
        assert!(c.handover.any() && c.handover.consoles && !c.handover.framebuffer);
        assert_eq!(c.handover.units, ["sddm.service"]);
        let e = parse("[handover]\nmodules = [\"../x\"]\n").unwrap_err();
        assert!(e.message.contains("not a module name"), "{e}");
        let e = parse("[handover]\nunits = [\"--now\"]\n").unwrap_err();
        assert!(e.message.contains("not a systemd unit name"), "{e}");
        let e = parse("[handover]\nconsole = true\n").unwrap_err();
        assert!(e.message.contains("console"), "{e}");
    }

    #[test]
    fn sriov_table_and_vf_selectors() {
        let c = parse(
            "[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = 4\nid = \"8086:10c9\"\n\
             [[device]]\naddress = \"0000:03:00.0\"\nvf = [1, 0, 1]\n",
        )
        .unwrap();
        assert_eq!(
            c.sriov,
            [SriovEntry {
                line: 1,
                address: "0000:03:00.0".parse().unwrap(),
                vfs: 4,
                id: Some("8086:10c9".parse().unwrap()),
            }]
        );
        assert_eq!(c.devices[0].vf, [0, 1]);
        assert!(
            c.devices[0].to_string().contains("vf [0, 1]"),
            "{}",
            c.devices[0]
        );
        assert!(parse("").unwrap().sriov.is_empty());
    }

    #[test]
    fn sriov_errors_name_line_and_column() {
        let e = parse("[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = 0\n").unwrap_err();
        assert_eq!(e.at, Some((3, 7)), "{e}");
        assert!(e.message.contains("0 makes nothing"), "{e}");
        let e = parse("[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = -1\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
        let e = parse("[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = 70000\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
        let e = parse("[[sriov]]\naddress = \"03:00\"\nvfs = 2\n").unwrap_err();
        assert_eq!(e.at, Some((2, 11)), "{e}");
        assert!(e.message.starts_with("sriov address:"), "{e}");
        let e = parse("[[sriov]]\nvfs = 2\n").unwrap_err();
        assert!(e.message.contains("address"), "{e}");
        let e = parse("[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = 2\nvf = [0]\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(4), "{e}");
        let e = parse(
            "[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = 2\n[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = 3\n",
        )
        .unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(5), "{e}");
        assert!(e.message.contains("(line 1)"), "{e}");
        let e =
            parse("[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = 2\nid = \"8086\"\n").unwrap_err();
        assert!(e.message.starts_with("sriov id:"), "{e}");

        let e = parse("[[device]]\nid = \"8086:10c9\"\nvf = [0]\n").unwrap_err();
        assert_eq!(e.at, Some((3, 6)), "{e}");
        assert!(e.message.contains("needs the `address`"), "{e}");
        let e = parse("[[device]]\naddress = \"0000:03:00.0\"\nvf = []\n").unwrap_err();
        assert!(e.message.contains("takes nothing"), "{e}");
        let e = parse("[[device]]\naddress = \"0000:03:00.0\"\nfunctions = \"slot\"\nvf = [0]\n")
            .unwrap_err();
        assert!(e.message.contains("one by one"), "{e}");
        let e = parse("[[device]]\naddress = \"0000:03:00.0\"\nvf = [-1]\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
        let e = parse("[[device]]\naddress = \"0000:03:00.0\"\nvf = 0\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
