//! A kernel `.config`, plain or gzip, then the requirement check over it.
#![no_main]

use kernel_config::{check, Config, KernelVersion, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = Config::from_bytes(data) else {
        return;
    };
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    for w in cfg.warnings() {
        assert!(w.line >= 1, "{w:?}");
        if !cfg.was_gzip() {
            assert!(w.line <= lines, "{w:?} beyond {lines} lines");
        }
    }
    assert!(cfg.duplicates() <= lines);
    if let Some(r) = cfg.release() {
        let _ = KernelVersion::from_release(r);
    }
    let _ = cfg.version();
    let _ = cfg.arch();
    for name in ["IOMMU_SUPPORT", "CONFIG_VFIO_PCI", "INTEL_IOMMU", ""] {
        let st = cfg.get(name);
        let _ = (st.is_on(), st.unquoted(), st.as_str().len());
        assert_eq!(
            cfg.state(name).is_some(),
            cfg.line_of(name).is_some(),
            "{name}"
        );
    }
    let _ = check(&cfg, &Options::default());
});
