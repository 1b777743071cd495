//! The physical memory map (`/proc/iomem`) and the boot framebuffer.
//!
//! The firmware leaves a framebuffer in a GPU's BAR. The kernel reserves it early
//! (`BOOTFB`, `efifb`, `simplefb`/`simpledrm`, `vesafb`), and while it is reserved
//! vfio-pci cannot take the BAR: the log says `vfio-pci 0000:01:00.0: BAR 0: can't
//! reserve [mem ...]` and the guest sees a dead card. So instead of always demanding
//! `video=efifb:off`, `check` looks: which framebuffer region is there, and does it
//! overlap a BAR of a device configured for passthrough?
//!
//! `/proc/iomem` nests regions by two spaces per level; a framebuffer inside a PCI
//! BAR appears under the region named by the device's address. For non-root readers
//! the kernel shows every address as zero, but the nesting stays: then the nesting
//! alone decides.
//!
//! A device's BARs come from its sysfs `resource` file: one line per resource,
//! `start end flags` in hex, the first six being BARs 0-5 and the seventh the ROM.

use crate::host::Host;
use crate::pci::PciAddress;

/// One region of `/proc/iomem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
    /// Owner's name.
    pub name: String,
    /// Nesting depth (0 = top level).
    pub depth: usize,
    /// Index of the enclosing region, if any.
    pub parent: Option<usize>,
}

/// Parses `/proc/iomem` text.
pub fn parse(text: &str) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let Some((range, name)) = line.trim_start().split_once(" : ") else {
            continue;
        };
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            u64::from_str_radix(s.trim(), 16),
            u64::from_str_radix(e.trim(), 16),
        ) else {
            continue;
        };
        let depth = indent / 2;
        stack.truncate(depth);
        let parent = stack.last().copied();
        out.push(Region {
            start,
            end,
            name: name.trim().to_owned(),
            depth,
            parent,
        });
        stack.push(out.len() - 1);
    }
    out
}

/// Whether a region name is a boot framebuffer.
pub fn is_framebuffer(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "bootfb",
        "efifb",
        "simplefb",
        "simple-framebuffer",
        "simpledrm",
        "vesafb",
        "vesa-framebuffer",
    ]
    .iter()
    .any(|f| n.contains(f))
}

/// Whether every address in the map reads as zero (the kernel hides them from
/// non-root readers).
pub fn addresses_hidden(regions: &[Region]) -> bool {
    !regions.is_empty() && regions.iter().all(|r| r.start == 0 && r.end == 0)
}

/// One BAR of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// BAR number (6 = expansion ROM).
    pub index: usize,
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
}

/// `IORESOURCE_MEM`.
const IORESOURCE_MEM: u64 = 0x200;

/// Parses a sysfs `resource` file: the memory BARs (0-5) and the ROM (6).
pub fn parse_resource(text: &str) -> Vec<Bar> {
    text.lines()
        .take(7)
        .enumerate()
        .filter_map(|(index, line)| {
            let mut f = line
                .split_whitespace()
                .map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok());
            let (start, end, flags) = (f.next()??, f.next()??, f.next()??);
            (flags & IORESOURCE_MEM != 0 && end > start).then_some(Bar { index, start, end })
        })
        .collect()
}

/// A device's memory BARs, from sysfs.
pub fn bars(host: &Host, address: PciAddress) -> Vec<Bar> {
    host.read(address.attr("resource"))
        .map(|t| parse_resource(&t))
        .unwrap_or_default()
}

/// A boot framebuffer found in the map, and what it sits in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framebuffer {
    /// The framebuffer's own region of the map (`BOOTFB`, `efifb`, `simple-framebuffer`).
    pub region: Region,
    /// The PCI device whose BAR region encloses it in the map, if any.
    pub inside: Option<PciAddress>,
}

/// Every boot framebuffer region, with the PCI device it is nested under.
pub fn framebuffers(regions: &[Region]) -> Vec<Framebuffer> {
    regions
        .iter()
        .filter(|r| is_framebuffer(&r.name))
        .map(|r| {
            let mut inside = None;
            let mut p = r.parent;
            while let Some(i) = p {
                if let Ok(a) = regions[i].name.parse::<PciAddress>() {
                    inside = Some(a);
                    break;
                }
                p = regions[i].parent;
            }
            Framebuffer {
                region: r.clone(),
                inside,
            }
        })
        .collect()
}

/// How a framebuffer meets a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The framebuffer's name in the map (`BOOTFB`, `efifb`...).
    pub framebuffer: String,
    /// Its range, when the addresses are visible.
    pub range: Option<(u64, u64)>,
    /// The device whose BAR holds the framebuffer.
    pub device: PciAddress,
    /// The BAR it lies in, when known from addresses.
    pub bar: Option<usize>,
}

/// Which framebuffers overlap a BAR of one of `devices` (by address when addresses
/// are visible, else by nesting in the map).
pub fn overlaps(regions: &[Region], devices: &[(PciAddress, Vec<Bar>)]) -> Vec<Overlap> {
    let hidden = addresses_hidden(regions);
    let mut out = Vec::new();
    for fb in framebuffers(regions) {
        for (addr, bars) in devices {
            let r = &fb.region;
            let by_address = (!hidden)
                .then(|| bars.iter().find(|b| r.start <= b.end && b.start <= r.end))
                .flatten();
            if by_address.is_some() || fb.inside == Some(*addr) {
                out.push(Overlap {
                    framebuffer: r.name.clone(),
                    range: (!hidden).then_some((r.start, r.end)),
                    device: *addr,
                    bar: by_address.map(|b| b.index),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of a UEFI (OVMF) boot's map with a bochs-display at 00:04.0.
    const IOMEM: &str = concat!(
        "00000000-00000fff : Reserved\n",
        "00001000-0009ffff : System RAM\n",
        "80000000-afffffff : PCI Bus 0000:00\n",
        "  80000000-80ffffff : 0000:00:04.0\n",
        "    80000000-802fffff : BOOTFB\n",
        "  81000000-81000fff : 0000:00:04.0\n",
        "b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]\n",
        "  b0000000-bfffffff : Reserved\n",
    );

    #[test]
    fn parses_nesting() {
        let r = parse(IOMEM);
        assert_eq!(r.len(), 8);
        assert_eq!(r[4].name, "BOOTFB");
        assert_eq!(
            (r[4].start, r[4].end, r[4].depth),
            (0x8000_0000, 0x802f_ffff, 2)
        );
        assert_eq!(r[4].parent, Some(3));
        assert_eq!(r[3].parent, Some(2));
        assert_eq!(r[7].parent, Some(6));
        let fbs = framebuffers(&r);
        assert_eq!(fbs.len(), 1);
        assert_eq!(fbs[0].inside, Some("0000:00:04.0".parse().unwrap()));
    }

    #[test]
    fn overlap_by_address_and_by_nesting() {
        let r = parse(IOMEM);
        let gpu: PciAddress = "0000:00:04.0".parse().unwrap();
        let nic: PciAddress = "0000:00:03.0".parse().unwrap();
        let res = "0x0000000080000000 0x0000000080ffffff 0x0000000000042208\n\
                   0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                   0x0000000081000000 0x0000000081000fff 0x0000000000040200\n";
        let bars = parse_resource(res);
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[1].index, 2);
        let o = overlaps(
            &r,
            &[
                (gpu, bars),
                (
                    nic,
                    vec![Bar {
                        index: 0,
                        start: 0x9000_0000,
                        end: 0x9000_ffff,
                    }],
                ),
            ],
        );
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].device, o[0].bar), (gpu, Some(0)));
        assert_eq!(o[0].range, Some((0x8000_0000, 0x802f_ffff)));

        // As a non-root user sees it: all zero, nesting intact.
        let hidden: String = IOMEM
            .lines()
            .map(|l| {
                let (range, name) = l.split_once(" : ").unwrap();
                let indent = &range[..range.len() - range.trim_start().len()];
                format!("{indent}00000000-00000000 : {name}\n")
            })
            .collect();
        let r = parse(&hidden);
        assert!(addresses_hidden(&r));
        let o = overlaps(&r, &[(gpu, vec![]), (nic, vec![])]);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].device, o[0].bar, o[0].range), (gpu, None, None));
    }

    #[test]
    fn names_framebuffers() {
        for n in [
            "BOOTFB",
            "efifb",
            "simple-framebuffer.0",
            "simpledrm",
            "vesafb",
        ] {
            assert!(is_framebuffer(n), "{n}");
        }
        for n in ["System RAM", "0000:00:02.0", "Reserved", "amdgpu"] {
            assert!(!is_framebuffer(n), "{n}");
        }
    }
}
