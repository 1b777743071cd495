//! `/etc/vfio-early.toml`: any bytes, as `Config::load` would hand them over.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vfio_early::config::{Config, MAX_SIZE};
use vfio_early::hugepages::wanted_pages;
use vfio_early::pci::{PciAddress, PciId};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.toml");
    match Config::parse(path, data) {
        Ok(c) => {
            assert!(data.len() <= MAX_SIZE);
            assert_eq!(c.text.as_bytes(), data, "the record keeps the text as read");
            assert!((1..=60_000).contains(&c.bind.timeout_ms));
            for (i, s) in c.devices.iter().enumerate() {
                assert_eq!(s.index, i + 1);
                assert!(s.address.is_some() || s.id.is_some(), "{s}");
                if let Some(a) = s.address {
                    assert_eq!(a.to_string().parse::<PciAddress>(), Ok(a));
                }
                if let Some(id) = s.id {
                    assert_eq!(id.to_string().parse::<PciId>(), Ok(id));
                }
                let _ = s.to_string();
            }
            for (line, h) in &c.hugepages {
                assert!(*line >= 1);
                assert!(h.size_kb > 0, "validated size");
                assert!(wanted_pages(h) > 0, "an entry always asks for a page");
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.toml"), "{shown}");
            assert!(!e.message.is_empty());
            if let Some((line, col)) = e.at {
                let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
                assert!(line >= 1 && col >= 1, "{shown}");
                assert!(line <= lines, "line {line} of {lines}: {shown}");
            }
        }
    }
});
