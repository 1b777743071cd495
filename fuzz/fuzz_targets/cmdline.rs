//! `/proc/cmdline`, and what the agent derives from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vfio_early::cmdline::{param_eq, Cmdline};
use vfio_early::cmdline_check::{blacklisted, iommu_switches};
use vfio_early::hugepages::cmdline_reservations;
use vfio_early::size::memparse_kb;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = Cmdline::parse(&text);
    for (name, value) in c.params() {
        // `--` alone ends the kernel's parameters; it is never one of them.
        assert!(!(name == "--" && value.is_none()));
        assert!(c.last(name).is_some(), "{name:?} given but not found");
        assert!(param_eq(name, name));
        if let Some(v) = value {
            let _ = memparse_kb(v);
        }
    }
    if let Some(param) = c.kill_switch() {
        let (name, _) = param.split_once('=').expect("name=value");
        assert!(
            param_eq(name, "vfio_early") || param_eq(name, "rd.vfio_early"),
            "{param}"
        );
    }
    // Parsing is stable: the parameters re-joined (when none needs quotes) parse back.
    // The kernel's `isspace`: space and \t, \n, \v, \f, \r.
    let space = |ch: char| matches!(ch, ' ' | '\t'..='\r');
    let simple = c.params().all(|(k, v)| {
        !k.is_empty()
            && !(k.contains(['"', '=']) || k.chars().any(space))
            && v.is_none_or(|v| !v.contains('"') && !v.chars().any(space))
    });
    if simple && c.init_args.is_empty() {
        let joined: Vec<String> = c
            .params()
            .map(|(k, v)| v.map_or_else(|| k.to_owned(), |v| format!("{k}={v}")))
            .collect();
        let again = Cmdline::parse(&joined.join(" "));
        assert!(again.params().eq(c.params()), "{text:?}");
    }
    let _ = iommu_switches(&c);
    let _ = blacklisted(&c);
    let _ = cmdline_reservations(&c, 2048);
});
