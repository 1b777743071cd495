//! `pci.ids` (the pciutils database), and every lookup the agent makes in it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_early::pciids::PciIds;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    // Ids to look up: the first words of the input's own lines, so lookups hit.
    let mut ids: Vec<u16> = vec![0x1002, 0x10de, 0x8086];
    for line in text.lines().take(16) {
        let w = line.trim_start_matches(['\t', 'C', ' ']);
        if let Some(h) = w.get(..4).and_then(|h| u16::from_str_radix(h, 16).ok()) {
            ids.push(h);
        }
    }
    let db = PciIds::parse(text);
    assert!(db.vendor_count() <= data.len());
    for &v in &ids {
        let _ = db.vendor(v);
        for &d in &ids {
            let _ = db.device(v, d);
            let _ = db.subsystem(v, d, v, d);
        }
        let class = u32::from(v) << 8 | u32::from(v & 0xff);
        let _ = db.class(class);
        let _ = db.subclass(class);
    }
});
