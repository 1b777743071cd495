//! A module file: decompression (by suffix), the ELF through goblin, `.modinfo`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vfio_early::modinfo::{decompress, modinfo_from_elf, parse_modinfo_section};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let info = parse_modinfo_section(bytes);
    assert!(info
        .depends
        .iter()
        .all(|d| !d.is_empty() && !d.contains(',')));
    let _ = info.release();
    // The suffix picks the decoder; plain ELF most of the time.
    let name = match mode % 8 {
        1 => "m.ko.xz",
        2 => "m.ko.zst",
        3 => "m.ko.gz",
        _ => "m.ko",
    };
    let path = Path::new(name);
    if let Ok(elf) = decompress(path, bytes.to_vec()) {
        if let Ok(info) = modinfo_from_elf(path, &elf) {
            let _ = info.release();
        }
    }
});
