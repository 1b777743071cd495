//! `PciAddress` and `PciId` from strings (the config's `address` and `id`, sysfs link
//! names): strict parse, and a parsed value re-displays and re-parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_early::cmdline_check::IdEntry;
use vfio_early::pci::{PciAddress, PciId};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match s.parse::<PciAddress>() {
        Ok(a) => {
            let shown = a.to_string();
            assert_eq!(shown.parse::<PciAddress>(), Ok(a), "{s:?} -> {shown}");
            // Never a path: the text the agent joins to sysfs paths is hex, ':' and '.'.
            assert!(!shown.contains('/') && !shown.contains(".."), "{shown}");
            assert!(shown
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'));
            assert!(a.device <= 0x1f && a.function <= 7);
            assert_eq!(a.attr("x"), format!("{}/x", a.sysfs_dir()));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match s.parse::<PciId>() {
        Ok(id) => {
            let shown = id.to_string();
            assert_eq!(shown.parse::<PciId>(), Ok(id), "{s:?} -> {shown}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = IdEntry::parse(s);
});
