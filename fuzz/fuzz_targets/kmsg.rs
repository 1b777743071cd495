//! `/dev/kmsg` records, and the IOMMU evidence read from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_early::iommu::scan_log;
use vfio_early::kmsg::{self, parse_record};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let records = kmsg::parse(&text);
    assert!(records.len() <= text.lines().count());
    for r in &records {
        assert!(r.level <= 7);
        let _ = r.dmesg_line();
        let _ = r.get("SUBSYSTEM");
    }
    if let Some(first) = text.lines().next() {
        if let Some(r) = parse_record(first) {
            assert_eq!(
                records.first().map(|f| (f.seq, f.usec)),
                Some((r.seq, r.usec))
            );
        }
    }
    let _ = kmsg::from_boot(&records);
    let _ = scan_log(&records);
});
