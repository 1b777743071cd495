//! `/proc/iomem` and sysfs `resource` files, and the framebuffer overlap check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_early::iomem;
use vfio_early::pci::PciAddress;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let regions = iomem::parse(&text);
    for (i, r) in regions.iter().enumerate() {
        if let Some(p) = r.parent {
            assert!(p < i, "a parent comes before its children");
        }
        let _ = iomem::is_framebuffer(&r.name);
    }
    let _ = iomem::addresses_hidden(&regions);
    let fbs = iomem::framebuffers(&regions);
    let bars = iomem::parse_resource(&text);
    assert!(bars.len() <= 7);
    for b in &bars {
        assert!(b.index <= 6 && b.start < b.end);
    }
    let addr: PciAddress = "0000:01:00.0".parse().expect("address");
    let _ = iomem::overlaps(&regions, &[(addr, bars)]);
    let _ = fbs;
});
