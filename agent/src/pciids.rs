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
//! [`PciIds::parse`] only indexes the vendor and class lines (one pass over the
//! text); device and subsystem names are looked up inside the vendor's block when
//! asked, so loading the 1.3 MB database costs one scan.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;

use crate::host::Host;

/// Where hosts keep the database, relative to the root, in order of preference.
pub(crate) const PATHS: [&str; 3] = [
    "usr/share/hwdata/pci.ids",
    "usr/share/misc/pci.ids",
    "usr/share/pci.ids",
];

/// One vendor's devices: id -> (name, byte range of its subsystem lines).
type DeviceIndex = HashMap<u16, (Range<usize>, Range<usize>)>;

/// A parsed (indexed) `pci.ids`.
#[derive(Debug, Clone, Default)]
pub struct PciIds {
    text: String,
    /// vendor -> (name, byte range of its device lines).
    vendors: HashMap<u16, (Range<usize>, Range<usize>)>,
    /// class byte -> (name, byte range of its subclass lines).
    classes: HashMap<u8, (Range<usize>, Range<usize>)>,
    /// vendor -> device -> (name, byte range of its subsystem lines), built the
    /// first time a vendor is asked for.
    devices: RefCell<HashMap<u16, DeviceIndex>>,
}

fn hex16(s: &str) -> Option<u16> {
    (s.len() == 4)
        .then(|| u16::from_str_radix(s, 16).ok())
        .flatten()
}

fn hex8(s: &str) -> Option<u8> {
    (s.len() == 2)
        .then(|| u8::from_str_radix(s, 16).ok())
        .flatten()
}

/// The lines of `text`, each with its `\n` (the last one may have none), as
/// `str::split_inclusive('\n')` gives them, found with a vectorised newline search: the
/// database is 37,000 lines and most of them are only skipped.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', text.as_bytes());
    std::iter::from_fn(move || {
        let end = ends.next().map_or(text.len(), |i| i + 1);
        if start >= end {
            return None;
        }
        // Newlines are ASCII, so both ends are character boundaries.
        let line = text.get(start..end)?;
        start = end;
        Some(line)
    })
}

/// Splits `"1234  Name"` into the id and the name range (relative to `line_start`).
fn id_and_name(line: &str, line_start: usize) -> Option<(&str, Range<usize>)> {
    let (id, rest) = line.split_once("  ")?;
    let name_start = line_start + id.len() + 2 + (rest.len() - rest.trim_start().len());
    let name_end = line_start + line.trim_end().len();
    // A blank name ("1234  "): an empty range at the end, never an inverted one.
    Some((id, name_start.min(name_end)..name_end))
}

impl PciIds {
    /// Indexes the text of a `pci.ids` file.
    pub fn parse(text: String) -> Self {
        let mut vendors = HashMap::new();
        let mut classes = HashMap::new();
        // The open top-level entry: vendor or class, with its name and block start.
        enum Open {
            None,
            Vendor(u16, Range<usize>, usize),
            Class(u8, Range<usize>, usize),
        }
        let mut open = Open::None;
        let mut pos = 0;
        let close = |open: &mut Open,
                     end: usize,
                     vendors: &mut HashMap<_, _>,
                     classes: &mut HashMap<_, _>| {
            match std::mem::replace(open, Open::None) {
                Open::Vendor(v, name, start) => {
                    vendors.entry(v).or_insert((name, start..end));
                }
                Open::Class(c, name, start) => {
                    classes.entry(c).or_insert((name, start..end));
                }
                Open::None => {}
            }
        };
        for line in lines(&text) {
            let start = pos;
            pos += line.len();
            let first = line.as_bytes().first().copied().unwrap_or(b'\n');
            if first == b'\t' || first == b'#' || first == b'\n' || first == b'\r' {
                continue;
            }
            close(&mut open, start, &mut vendors, &mut classes);
            if let Some(rest) = line.strip_prefix("C ") {
                if let Some((id, name)) = id_and_name(rest, start + 2) {
                    if let Some(c) = hex8(id) {
                        open = Open::Class(c, name, pos);
                    }
                }
            } else if let Some((id, name)) = id_and_name(line, start) {
                if let Some(v) = hex16(id) {
                    open = Open::Vendor(v, name, pos);
                }
            }
        }
        close(&mut open, pos, &mut vendors, &mut classes);
        Self {
            text,
            vendors,
            classes,
            devices: RefCell::default(),
        }
    }

    /// Loads the first database found under the host root.
    pub fn load(host: &Host) -> Option<Self> {
        PATHS
            .iter()
            .find_map(|p| host.read(p).ok())
            .map(Self::parse)
    }

    fn name(&self, r: &Range<usize>) -> &str {
        &self.text[r.clone()]
    }

    /// The vendor's name.
    pub fn vendor(&self, vendor: u16) -> Option<&str> {
        self.vendors.get(&vendor).map(|(n, _)| self.name(n))
    }

    /// Lines of a block at a given tab depth, with their absolute start offsets.
    fn block_lines(
        &self,
        block: &Range<usize>,
        tabs: usize,
    ) -> impl Iterator<Item = (usize, &str)> {
        let mut pos = block.start;
        lines(&self.text[block.clone()]).filter_map(move |line| {
            let start = pos;
            pos += line.len();
            let depth = line.bytes().take_while(|&b| b == b'\t').count();
            (depth == tabs).then(|| (start + tabs, &line[tabs..]))
        })
    }

    /// The entry `id` among the lines of `block` indented by `tabs` tabs: its name,
    /// and the byte range of the deeper lines below it. Found with a substring search
    /// for `\n<tabs><id>  ` (the database writes ids in lower case), so a lookup in
    /// Intel's long block costs one fast scan.
    fn sub_block(
        &self,
        block: &Range<usize>,
        tabs: usize,
        id: &str,
    ) -> Option<(Range<usize>, Range<usize>)> {
        let mut needle = String::with_capacity(id.len() + tabs + 3);
        needle.push('\n');
        needle.extend(std::iter::repeat_n('\t', tabs));
        needle.push_str(&id.to_ascii_lowercase());
        needle.push_str("  ");
        // The block starts right after its header line's newline: look from that newline.
        let from = match block.start.checked_sub(1) {
            Some(nl) if self.text.as_bytes()[nl] == b'\n' => nl,
            _ => block.start,
        };
        let hay = &self.text[from..block.end];
        let at = from + memchr::memmem::find(hay.as_bytes(), needle.as_bytes())? + 1;
        let line_end = self.text[at..block.end]
            .find('\n')
            .map_or(block.end, |i| at + i + 1);
        let (_, name) = id_and_name(
            self.text[at + tabs..line_end].trim_end_matches('\n'),
            at + tabs,
        )?;
        // Deeper lines follow until a line at this depth or shallower (comments skipped).
        let mut end = line_end;
        for line in lines(&self.text[line_end..block.end]) {
            let depth = line.bytes().take_while(|&b| b == b'\t').count();
            if depth <= tabs && !line.starts_with('#') {
                break;
            }
            end += line.len();
        }
        Some((name, line_end..end))
    }

    /// Indexes the device lines of one vendor's block (one pass over it).
    fn index_devices(&self, block: &Range<usize>) -> DeviceIndex {
        let mut out = HashMap::new();
        let mut open: Option<(u16, Range<usize>, usize)> = None;
        let mut pos = block.start;
        for line in lines(&self.text[block.clone()]) {
            let start = pos;
            pos += line.len();
            if line.starts_with("\t\t") || line.starts_with('#') {
                continue;
            }
            if let Some((d, name, from)) = open.take() {
                out.entry(d).or_insert((name, from..start));
            }
            if let Some(rest) = line.strip_prefix('\t') {
                if let Some((id, name)) = id_and_name(rest, start + 1) {
                    if let Some(d) = hex16(id) {
                        open = Some((d, name, pos));
                    }
                }
            }
        }
        if let Some((d, name, from)) = open {
            out.entry(d).or_insert((name, from..block.end));
        }
        out
    }

    /// A device's name range and the range of its subsystem lines.
    fn device_entry(&self, vendor: u16, device: u16) -> Option<(Range<usize>, Range<usize>)> {
        let (_, block) = self.vendors.get(&vendor)?;
        let mut cache = self.devices.borrow_mut();
        let index = cache
            .entry(vendor)
            .or_insert_with(|| self.index_devices(block));
        index.get(&device).cloned()
    }

    /// The device's name.
    pub fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        let (name, _) = self.device_entry(vendor, device)?;
        Some(self.name(&name))
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
        let Some((name, sub)) = self.device_entry(vendor, device) else {
            return (None, None);
        };
        let want = format!("{sub_vendor:04x} {sub_device:04x}");
        let subsystem = self.block_lines(&sub, 2).find_map(|(start, line)| {
            let (id, name) = id_and_name(line, start)?;
            id.eq_ignore_ascii_case(&want).then(|| self.name(&name))
        });
        (Some(self.name(&name)), subsystem)
    }

    /// The most specific class name of a 24-bit class code: programming interface,
    /// else subclass, else base class.
    pub fn class(&self, class: u32) -> Option<&str> {
        let base = u8::try_from(class >> 16).ok()?;
        let (base_name, block) = self.classes.get(&base)?;
        let sub = format!("{:02x}", (class >> 8) & 0xff);
        let Some((sub_name, prog_block)) = self.sub_block(block, 1, &sub) else {
            return Some(self.name(base_name));
        };
        let prog = format!("{:02x}", class & 0xff);
        let prog_name = self.block_lines(&prog_block, 2).find_map(|(start, line)| {
            let (id, name) = id_and_name(line, start)?;
            id.eq_ignore_ascii_case(&prog).then_some(name)
        });
        // `lspci` names the subclass; the interface only adds detail (`xHCI`).
        match prog_name {
            Some(p) if class & 0xff != 0 => Some(self.name(&p)),
            _ => Some(self.name(&sub_name)),
        }
    }

    /// The subclass name (what `lspci` prints first: `VGA compatible controller`).
    pub fn subclass(&self, class: u32) -> Option<&str> {
        let base = u8::try_from(class >> 16).ok()?;
        let (base_name, block) = self.classes.get(&base)?;
        match self.sub_block(block, 1, &format!("{:02x}", (class >> 8) & 0xff)) {
            Some((name, _)) => Some(self.name(&name)),
            None => Some(self.name(base_name)),
        }
    }

    /// Number of vendors indexed.
    pub fn vendor_count(&self) -> usize {
        self.vendors.len()
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
            let ours: Vec<&str> = lines(t).collect();
            let std: Vec<&str> = t.split_inclusive('\n').collect();
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
