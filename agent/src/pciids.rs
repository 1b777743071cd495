//! Names from the host's `pci.ids` (the pciutils database).
//!
//! The file is a tree written with tabs:
//!
//! ```text
//! 1002  Advanced Micro Devices, Inc. [AMD/ATI]
//! \t6779  Caicos [Radeon HD 6450/7450/8450 / R5 230 OEM]
//! \t\t1458 21ac  Radeon HD 6450
//! C 03  Display controller
//! \t00  VGA compatible controller
//! \t\t00  VGA controller
//! ```
//!
//! Nothing is indexed up front: each lookup finds its own line with a vectorised
//! substring search (`\n1002  ` for a vendor, `\n\t6779  ` inside the vendor's block
//! for a device, `\nC 03  ` for a class, searched from the end, where the classes
//! are) and remembers the answer, so a machine's few dozen ids cost a few searches of
//! the 1.3 MB database, not a pass over its 37,000 lines. A block (a vendor's devices,
//! a device's subsystems, a class's subclasses) ends at the first line indented no
//! deeper than its header that is not a comment or blank.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;

use memchr::memmem;

use crate::host::Host;

/// Where hosts keep the database, relative to the root, in order of preference.
pub(crate) const PATHS: [&str; 3] = [
    "usr/share/hwdata/pci.ids",
    "usr/share/misc/pci.ids",
    "usr/share/pci.ids",
];

/// One entry: its name, and the byte range of the deeper lines below it.
#[derive(Debug, Clone)]
struct Entry {
    name: Range<usize>,
    block: Range<usize>,
}

/// What was looked up already (each id is searched for once). A machine has a few
/// dozen ids, asked about once per device: ordered maps that small answer in a few
/// comparisons, cheaper than hashing the key.
#[derive(Debug, Clone, Default)]
struct Found {
    vendors: BTreeMap<u16, Option<Entry>>,
    devices: BTreeMap<(u16, u16), Option<Entry>>,
    subsystems: BTreeMap<(u16, u16, u16, u16), Option<Range<usize>>>,
    classes: BTreeMap<u8, Option<Entry>>,
    subclasses: BTreeMap<u16, Option<Entry>>,
}

/// A `pci.ids` database, searched as asked.
#[derive(Debug, Clone, Default)]
pub struct PciIds {
    text: Vec<u8>,
    found: RefCell<Found>,
}

/// The lines of `text`, each with its `\n` (the last one may have none), as
/// `split_inclusive(b'\n')` gives them, found with a vectorised newline search.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', text);
    std::iter::from_fn(move || {
        let end = ends.next().map_or(text.len(), |i| i + 1);
        if start >= end {
            return None;
        }
        let line = &text[start..end];
        start = end;
        Some(line)
    })
}

fn depth(line: &[u8]) -> usize {
    line.iter().take_while(|&&b| b == b'\t').count()
}

/// Whether a line is a comment or blank (neither opens nor ends a block).
fn skipped(line: &[u8]) -> bool {
    matches!(
        line.iter().find(|&&b| b != b'\t'),
        None | Some(b'#' | b'\n' | b'\r')
    )
}

fn trim(text: &[u8], mut r: Range<usize>) -> Range<usize> {
    while r.end > r.start && text[r.end - 1].is_ascii_whitespace() {
        r.end -= 1;
    }
    while r.start < r.end && text[r.start].is_ascii_whitespace() {
        r.start += 1;
    }
    r
}

impl PciIds {
    /// A database from the text of a `pci.ids` file.
    pub fn parse(text: String) -> Self {
        Self::from_bytes(text.into_bytes())
    }

    /// A database from the bytes of a `pci.ids` file (names that are not UTF-8 are
    /// not shown).
    pub fn from_bytes(text: Vec<u8>) -> Self {
        Self {
            text,
            found: RefCell::default(),
        }
    }

    /// Loads the first database found under the host root.
    pub fn load(host: &Host) -> Option<Self> {
        PATHS
            .iter()
            .find_map(|p| host.read_bytes(p).ok())
            .map(Self::from_bytes)
    }

    fn name(&self, r: &Range<usize>) -> Option<&str> {
        std::str::from_utf8(&self.text[r.clone()]).ok()
    }

    /// The entry whose line is `key` (tabs and id, two spaces, the name) inside
    /// `within`, searched forward (or backward from the end, with `rev`): its name, and
    /// its block (the deeper lines below it). `within` starts at a line start.
    fn entry(&self, within: Range<usize>, key: &[u8], rev: bool) -> Option<Entry> {
        let hay = &self.text[within.clone()];
        let at = if hay.starts_with(key) {
            Some(within.start)
        } else {
            let mut needle = Vec::with_capacity(key.len() + 1);
            needle.push(b'\n');
            needle.extend_from_slice(key);
            let hit = if rev {
                memmem::rfind(hay, &needle)
            } else {
                memmem::find(hay, &needle)
            };
            hit.map(|i| within.start + i + 1)
        }?;
        let tabs = depth(key);
        let line_end =
            memchr::memchr(b'\n', &self.text[at..within.end]).map_or(within.end, |i| at + i + 1);
        let name_start = at + key.len();
        let name = trim(&self.text, name_start.min(line_end)..line_end);
        let mut end = line_end;
        for line in lines(&self.text[line_end..within.end]) {
            if depth(line) <= tabs && !skipped(line) {
                break;
            }
            end += line.len();
        }
        Some(Entry {
            name,
            block: line_end..end,
        })
    }

    fn vendor_entry(&self, vendor: u16) -> Option<Entry> {
        if let Some(e) = self.found.borrow().vendors.get(&vendor) {
            return e.clone();
        }
        let key = format!("{vendor:04x}  ");
        let e = self.entry(0..self.text.len(), key.as_bytes(), false);
        self.found.borrow_mut().vendors.insert(vendor, e.clone());
        e
    }

    /// The vendor's name.
    pub fn vendor(&self, vendor: u16) -> Option<&str> {
        self.name(&self.vendor_entry(vendor)?.name)
    }

    fn device_entry(&self, vendor: u16, device: u16) -> Option<Entry> {
        if let Some(e) = self.found.borrow().devices.get(&(vendor, device)) {
            return e.clone();
        }
        let e = self.vendor_entry(vendor).and_then(|v| {
            let key = format!("\t{device:04x}  ");
            self.entry(v.block, key.as_bytes(), false)
        });
        self.found
            .borrow_mut()
            .devices
            .insert((vendor, device), e.clone());
        e
    }

    /// The device's name.
    pub fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        self.name(&self.device_entry(vendor, device)?.name)
    }

    /// The subsystem's name (the card model).
    pub fn subsystem(
        &self,
        vendor: u16,
        device: u16,
        sub_vendor: u16,
        sub_device: u16,
    ) -> Option<&str> {
        self.device_and_subsystem(vendor, device, sub_vendor, sub_device)
            .1
    }

    /// The device's and the subsystem's names in one lookup.
    pub fn device_and_subsystem(
        &self,
        vendor: u16,
        device: u16,
        sub_vendor: u16,
        sub_device: u16,
    ) -> (Option<&str>, Option<&str>) {
        let Some(dev) = self.device_entry(vendor, device) else {
            return (None, None);
        };
        let id = (vendor, device, sub_vendor, sub_device);
        let cached = self.found.borrow().subsystems.get(&id).cloned();
        let sub = cached.unwrap_or_else(|| {
            let key = format!("\t\t{sub_vendor:04x} {sub_device:04x}  ");
            let s = self
                .entry(dev.block.clone(), key.as_bytes(), false)
                .map(|e| e.name);
            self.found.borrow_mut().subsystems.insert(id, s.clone());
            s
        });
        (self.name(&dev.name), sub.and_then(|r| self.name(&r)))
    }

    fn class_entry(&self, base: u8) -> Option<Entry> {
        if let Some(e) = self.found.borrow().classes.get(&base) {
            return e.clone();
        }
        let key = format!("C {base:02x}  ");
        let e = self.entry(0..self.text.len(), key.as_bytes(), true);
        self.found.borrow_mut().classes.insert(base, e.clone());
        e
    }

    /// The base class and subclass entries of a class code.
    fn class_entries(&self, class: u32) -> Option<(Entry, Option<Entry>)> {
        let base = self.class_entry(u8::try_from(class >> 16).ok()?)?;
        let code = u16::try_from(class >> 8).ok()?;
        if let Some(e) = self.found.borrow().subclasses.get(&code) {
            return Some((base, e.clone()));
        }
        let key = format!("\t{:02x}  ", code & 0xff);
        let sub = self.entry(base.block.clone(), key.as_bytes(), false);
        self.found.borrow_mut().subclasses.insert(code, sub.clone());
        Some((base, sub))
    }

    /// The most specific class name of a 24-bit class code: programming interface,
    /// else subclass, else base class.
    pub fn class(&self, class: u32) -> Option<&str> {
        let (base, sub) = self.class_entries(class)?;
        let Some(sub) = sub else {
            return self.name(&base.name);
        };
        // `lspci` names the subclass; the interface only adds detail (`xHCI`).
        if class & 0xff != 0 {
            let key = format!("\t\t{:02x}  ", class & 0xff);
            if let Some(p) = self.entry(sub.block.clone(), key.as_bytes(), false) {
                return self.name(&p.name);
            }
        }
        self.name(&sub.name)
    }

    /// The subclass name (what `lspci` prints first: `VGA compatible controller`).
    pub fn subclass(&self, class: u32) -> Option<&str> {
        let (base, sub) = self.class_entries(class)?;
        self.name(&sub.unwrap_or(base).name)
    }

    /// Number of vendor lines (a pass over the whole file: for tests and fuzzing, never
    /// on a command's path).
    pub fn vendor_count(&self) -> usize {
        lines(&self.text)
            .filter(|l| {
                l.len() > 6 && l[..4].iter().all(u8::is_ascii_hexdigit) && l[4..6] == *b"  "
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# comment\n\
1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\
\t6779  Caicos [Radeon HD 6450/7450/8450 / R5 230 OEM]\n\
\t\t1458 21ac  Radeon HD 6450\n\
\t\t1462 2125  Radeon HD 6450\n\
# a comment inside\n\
\taa98  Caicos HDMI Audio [Radeon HD 6450 / 7450/8450/8490 OEM / R5 230/235/235X OEM]\n\
10de  NVIDIA Corporation\n\
\t1b80  GP104 [GeForce GTX 1080]\n\
C 03  Display controller\n\
\t00  VGA compatible controller\n\
\t\t00  VGA controller\n\
\t\t01  8514 controller\n\
\t80  Display controller\n\
C 0c  Serial bus controller\n\
\t03  USB controller\n\
\t\t30  XHCI\n";

    #[test]
    fn names_vendors_devices_subsystems() {
        let ids = PciIds::parse(SAMPLE.to_owned());
        assert_eq!(
            ids.vendor(0x1002),
            Some("Advanced Micro Devices, Inc. [AMD/ATI]")
        );
        assert_eq!(
            ids.device(0x1002, 0x6779),
            Some("Caicos [Radeon HD 6450/7450/8450 / R5 230 OEM]")
        );
        assert!(ids
            .device(0x1002, 0xaa98)
            .unwrap()
            .starts_with("Caicos HDMI Audio"));
        assert_eq!(
            ids.subsystem(0x1002, 0x6779, 0x1458, 0x21ac),
            Some("Radeon HD 6450")
        );
        assert_eq!(ids.subsystem(0x1002, 0xaa98, 0x1458, 0x21ac), None);
        assert_eq!(ids.device(0x10de, 0x1b80), Some("GP104 [GeForce GTX 1080]"));
        assert_eq!(ids.device(0x10de, 0x6779), None);
        assert_eq!(ids.vendor(0x8086), None);
        assert_eq!(ids.vendor_count(), 2);
    }

    #[test]
    fn names_classes() {
        let ids = PciIds::parse(SAMPLE.to_owned());
        assert_eq!(ids.subclass(0x030000), Some("VGA compatible controller"));
        assert_eq!(ids.class(0x030000), Some("VGA compatible controller"));
        assert_eq!(ids.class(0x0c0330), Some("XHCI"));
        assert_eq!(ids.subclass(0x0c0330), Some("USB controller"));
        assert_eq!(
            ids.subclass(0x030200),
            Some("Display controller"),
            "unknown subclass: base name"
        );
        assert_eq!(ids.class(0x040300), None);
    }

    #[test]
    fn lines_are_split_inclusive() {
        for t in [
            "",
            "\n",
            "a",
            "a\n",
            "a\nb",
            "\n\nx\r\n",
            "é\nü ö\n12345678",
            "\t\t1\n\n",
        ] {
            let ours: Vec<&[u8]> = lines(t.as_bytes()).collect();
            let std: Vec<&[u8]> = t.split_inclusive('\n').map(str::as_bytes).collect();
            assert_eq!(ours, std, "{t:?}");
        }
    }

    #[test]
    fn survives_odd_input() {
        for t in [
            "",
            "\n",
            "C \n",
            "zzzz  x\n",
            "\t\t\n1002\n",
            "1002  A\n\tzz",
        ] {
            let ids = PciIds::parse(t.to_owned());
            let _ = ids.device(0x1002, 0);
            let _ = ids.class(0x030000);
        }
    }
}
