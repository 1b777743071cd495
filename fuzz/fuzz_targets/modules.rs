//! `modules.alias`, `modules.builtin.modinfo`, `modules.dep`, `modules.builtin`, and the
//! glob matcher that decides which driver would claim a device.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_early::modinfo;
use vfio_early::modules::{
    self, glob_match, parse_alias, parse_builtin_modinfo, ClaimTable, DepTable,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let aliases = parse_alias(&text);
    for a in &aliases {
        assert!(a.pattern.starts_with("pci:"));
        assert!(!a.module.contains('-'));
    }
    let builtin = parse_builtin_modinfo(data);
    let table = ClaimTable::new(aliases.into_iter().chain(builtin).collect());
    let modalias = "pci:v00001002d00006779sv00001458sd000021ACbc03sc00i00";
    if let Some(m) = table.claimant(modalias) {
        assert!(m != "vfio_pci" && m != "pci_stub");
    }
    // Glob: split the input into pattern and text at the first newline.
    let (pattern, subject) = text.split_once('\n').unwrap_or((&text, modalias));
    let matched = glob_match(pattern, subject);
    if !pattern.contains(['*', '?', '[']) {
        assert_eq!(matched, pattern == subject, "{pattern:?} vs {subject:?}");
    }
    if pattern == "*" {
        assert!(matched);
    }
    let deps = DepTable::parse(&text);
    for line in text.lines().take(8) {
        if let Some((m, _)) = line.split_once(':') {
            let name = modules::module_name(m.trim());
            if let Some(order) = deps.load_order(&name) {
                // Dependencies first, the module itself last.
                let last = order.last().expect("the module itself");
                assert_eq!(modules::module_name(last), name, "{line:?}");
            }
        }
    }
    let _ = modinfo::parse_builtin(&text);
    let all = table.claimants(modalias);
    assert_eq!(all.first().is_some(), table.claimant(modalias).is_some());
});
