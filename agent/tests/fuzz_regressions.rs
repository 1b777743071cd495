//! Inputs found by the fuzz targets under `fuzz/` (tests/fuzz.sh), kept as regression
//! tests, and a replay of every checked-in fuzz seed through its parser (so the seeds
//! stay meaningful and the parsers stay panic-free on real files without nightly).
//!
//! A test marked `#[ignore = "bug: ..."]` fails today: the bug is in code this file does
//! not own; remove the `ignore` with the fix.

// Helpers outside #[test] fns unwrap too: a fixture that cannot be built is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use vfio_early::config::Config;
use vfio_early::pci::{PciAddress, PciId};
use vfio_early::pciids::PciIds;
use vfio_early::{cmdline, iomem, kmsg, modinfo, modules};

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// --- crashes found by fuzzing -------------------------------------------------------

/// fuzz target `pci_address` / `config` / `iomem`: `ParseError::new` cuts the quoted
/// input at byte 64 with `String::truncate`, which panics inside a multi-byte
/// character. Reachable from a config's `address`/`id` and from `/proc/iomem` names.
#[test]

fn long_non_ascii_address_is_an_error_not_a_panic() {
    let addr = format!("{}é.0", "0".repeat(63));
    assert!(addr.parse::<PciAddress>().is_err());
    let id = format!("{}é", "0".repeat(63));
    assert!(id.parse::<PciId>().is_err());
    let toml = format!("[[device]]\naddress = \"{addr}\"\n");
    let e = Config::parse(Path::new("vfio-early.toml"), toml.as_bytes()).unwrap_err();
    assert!(e.message.contains("not a PCI address"), "{e}");
    let map = format!("e0000000-efffffff : {addr}\n  e0000000-e07e8fff : efifb\n");
    let fbs = iomem::framebuffers(&iomem::parse(&map));
    assert_eq!(fbs.len(), 1);
}

/// fuzz target `pciids`: a vendor line whose name is blank (`"1234  \n"`) indexes the
/// name as an inverted byte range, and `vendor()` panics slicing it.
#[test]

fn pciids_blank_name_does_not_panic() {
    let db = PciIds::parse("1234  \n\t5678  \n\t\t1234 0001  \nC 03  \n\t00  \n".to_owned());
    assert_eq!(db.vendor(0x1234), Some(""));
    assert_eq!(db.device(0x1234, 0x5678), Some(""));
    assert_eq!(db.subsystem(0x1234, 0x5678, 0x1234, 0x0001), Some(""));
    assert_eq!(db.class(0x030000), Some(""));
}

/// fuzz target `pciids`: a class header as the last line, without a newline and ending
/// in a multi-byte character (`"C 10  Café"`): `sub_block` starts its search one byte
/// before the block, inside the `é`, and slicing panics.
#[test]

fn pciids_last_line_without_newline_does_not_panic() {
    let db = PciIds::parse("C 10  Café".to_owned());
    assert_eq!(db.class(0x10_0000), Some("Café"));
    assert_eq!(db.subclass(0x10_8000), Some("Café"));
    let db = PciIds::parse("1234  Café".to_owned());
    assert_eq!(db.device(0x1234, 0x0001), None);
}

/// fuzz target `config`: a control character in a TOML comment is rejected by the
/// TOML parser with an empty `message()`, so the user reads `file:1:2: ` and nothing.
#[test]

fn every_config_error_says_something() {
    for input in [
        &b"#\x01"[..],
        b"[[device]]\n# \x7f\naddress = \"0000:01:00.0\"\n",
        b"a = \"\x08\"\n",
    ] {
        let e = Config::parse(Path::new("vfio-early.toml"), input).unwrap_err();
        assert!(!e.message.trim().is_empty(), "{input:?}: {e:?}");
    }
}

// --- the seeds, through the parsers --------------------------------------------------

#[test]
fn config_seeds_parse_or_fail_with_a_place() {
    for (path, bytes) in seeds("config") {
        match Config::parse(&path, &bytes) {
            Ok(c) => {
                for s in &c.devices {
                    if let Some(a) = s.address {
                        assert_eq!(a.to_string().parse::<PciAddress>(), Ok(a));
                    }
                }
            }
            Err(e) => assert!(
                e.at.is_some() && !e.message.is_empty(),
                "{}: {e}",
                path.display()
            ),
        }
    }
    let ok = seeds("config")
        .iter()
        .filter(|(p, b)| Config::parse(p, b).is_ok())
        .count();
    assert!(ok >= 3, "the examples parse");
}

#[test]
fn address_seeds_round_trip() {
    let mut parsed = 0;
    for (_, bytes) in seeds("pci_address") {
        let s = text(&bytes);
        if let Ok(a) = s.parse::<PciAddress>() {
            assert_eq!(a.to_string().parse::<PciAddress>(), Ok(a));
            parsed += 1;
        }
        if let Ok(id) = s.parse::<PciId>() {
            assert_eq!(id.to_string().parse::<PciId>(), Ok(id));
        }
    }
    assert!(parsed >= 4, "{parsed}");
    assert!("../../0000:01:00.0".parse::<PciAddress>().is_err());
}

/// Found by the fuzz smoke run (target `cmdline`, its re-join invariant): a quoted
/// parameter whose name holds vertical tabs. As in the kernel's `next_arg`, quotes keep
/// `\v` inside the parameter, and outside quotes `\v` separates parameters like a space;
/// the target's "needs no quotes" test had used Rust's `is_ascii_whitespace`, which
/// leaves out `\v`.
#[test]
fn cmdline_vertical_tab_is_a_space_outside_quotes_only() {
    let c = cmdline::Cmdline::parse(&text(b"\"\x0b\x0b\x0bc\0\x0e\xef="));
    let params: Vec<(&str, Option<&str>)> = c.params().collect();
    assert_eq!(params, [("\x0b\x0b\x0bc\0\x0e\u{fffd}", Some(""))]);
    let c = cmdline::Cmdline::parse("\x0b\x0b\x0bc\0\x0e\u{fffd}=");
    let params: Vec<(&str, Option<&str>)> = c.params().collect();
    assert_eq!(params, [("c\0\x0e\u{fffd}", Some(""))]);
}

#[test]
fn cmdline_seeds() {
    let all: Vec<cmdline::Cmdline> = seeds("cmdline")
        .iter()
        .map(|(_, b)| cmdline::Cmdline::parse(&text(b)))
        .collect();
    assert!(all.iter().any(|c| c.kill_switch().is_some()));
    assert!(all
        .iter()
        .any(|c| c.last("vfio-pci.ids") == Some(Some("1002:6779,1002:aa98"))));
    assert!(all
        .iter()
        .any(|c| c.last("dyndbg") == Some(Some("file drivers/vfio/* +p"))));
}

#[test]
fn kconfig_seeds() {
    for (path, bytes) in seeds("kconfig") {
        let cfg = kernel_config::Config::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!cfg.is_empty(), "{}", path.display());
        let _ = kernel_config::check(&cfg, &kernel_config::Options::default());
    }
}

#[test]
fn kmsg_seeds() {
    let mut records = Vec::new();
    for (_, bytes) in seeds("kmsg") {
        records.extend(kmsg::parse(&text(&bytes)));
    }
    assert!(records.len() > 20);
    assert!(records.iter().any(|r| r.get("SUBSYSTEM") == Some("pci")));
    assert!(
        records.iter().any(|r| r.text.contains('\t')),
        "\\x09 decoded"
    );
    let _ = vfio_early::iommu::scan_log(&records);
}

#[test]
fn pciids_seeds() {
    for (path, bytes) in seeds("pciids") {
        let db = PciIds::parse(text(&bytes));
        let _ = (
            db.vendor(0x1002),
            db.device(0x1002, 0x6779),
            db.class(0x030000),
            db.subclass(0x0c0330),
        );
        assert!(
            db.vendor_count() > 0 || path.ends_with("classes.ids"),
            "{}",
            path.display()
        );
    }
    let amd = PciIds::parse(text(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/pciids/amd.ids"))
            .unwrap(),
    ));
    assert!(amd.vendor(0x1002).is_some_and(|n| n.contains("AMD")));
}

#[test]
fn iomem_seeds() {
    for (path, bytes) in seeds("iomem") {
        let t = text(&bytes);
        let regions = iomem::parse(&t);
        let _ = iomem::framebuffers(&regions);
        let _ = iomem::parse_resource(&t);
        assert!(
            !regions.is_empty() || path.ends_with("gpu.resource"),
            "{}",
            path.display()
        );
    }
}

#[test]
fn modules_seeds() {
    let mut aliases = 0;
    for (_, bytes) in seeds("modules") {
        let t = text(&bytes);
        aliases += modules::parse_alias(&t).len() + modules::parse_builtin_modinfo(&bytes).len();
        let _ = modules::DepTable::parse(&t).load_order("vfio_pci");
        if let Some((p, s)) = t.split_once('\n') {
            // A pattern without wildcards matches only itself.
            if !p.contains(['*', '?', '[']) {
                assert_eq!(modules::glob_match(p, s), p == s);
            }
        }
    }
    assert!(aliases > 10, "{aliases}");
}

#[test]
fn modinfo_seeds() {
    // The first byte picks the suffix (fuzz/fuzz_targets/modinfo.rs).
    let mut modules_read = 0;
    for (path, bytes) in seeds("modinfo") {
        let name = match bytes[0] % 8 {
            1 => "m.ko.xz",
            2 => "m.ko.zst",
            3 => "m.ko.gz",
            _ => "m.ko",
        };
        let name = Path::new(name);
        let Ok(elf) = modinfo::decompress(name, bytes[1..].to_vec()) else {
            panic!("{}: does not decompress", path.display());
        };
        if let Ok(info) = modinfo::modinfo_from_elf(name, &elf) {
            assert_eq!(info.release(), Some("6.1.0-56-amd64"), "{}", path.display());
            modules_read += 1;
        }
    }
    assert_eq!(modules_read, 4, "plain, xz, zst and gz");
}
