//! What an initramfs image must carry for vfio-early, decided once for the three
//! generators (dracut, mkinitcpio, initramfs-tools), whose hooks only carry it out.
//!
//! [`contents`] answers from the config and the *target* kernel's module directory,
//! never from the build host's devices: an image built on another machine, or before
//! the card is installed, gets the same answer.
//! - the vfio-pci closure (`depends`/`softdep`), built for that kernel release; when
//!   vfio-pci is unavailable the image gets nothing of ours (and a loud warning);
//! - the kernel's PCI alias table for the agent's group-safety rule;
//! - the modprobe.d backstop: `install vfio-pci` runs the agent first, and
//!   `softdep <driver> pre: vfio-pci` for every driver that the target kernel's alias
//!   table gives for a selected id ([`softdep_drivers`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::config::{Selector, SriovEntry};
use crate::modinfo::{self, ClosureEntry, ModuleDir, Provided};
use crate::modules::ClaimTable;
use crate::pci::PciAddress;

/// Drivers that never get a softdep line: vfio-pci itself and the passive owners.
const NOT_HOST_DRIVERS: [&str; 3] = ["vfio_pci", "pci_stub", "pcieport"];

/// What the image gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// vfio-pci's closure as found for the target kernel.
    pub closure: Vec<ClosureEntry>,
    /// The drivers that get a softdep line.
    pub softdep_drivers: Vec<String>,
    /// The modprobe.d backstop file.
    pub modprobe_conf: String,
    /// `modules.alias` lines of every PCI driver of the kernel (loadable and built-in).
    pub pci_aliases: String,
    /// Things the person building the image should know (the image is built anyway).
    pub warnings: Vec<String>,
}

/// vfio-pci is not available for the target kernel: the image gets nothing of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vfio-pci is unavailable for kernel {kver}: {why}")]
pub struct Unavailable {
    /// The target kernel release.
    pub kver: String,
    /// Why.
    pub why: String,
}

/// Decides the image's contents for kernel `kver` (modules in `dir`, aliases in
/// `aliases`), the config's `selectors`, and the agent at `agent` inside the image.
///
/// # Errors
/// [`Unavailable`] when vfio-pci cannot be loaded with that kernel.
pub fn contents(
    kver: &str,
    dir: &ModuleDir,
    aliases: &ClaimTable,
    selectors: &[Selector],
    agent: &str,
) -> Result<Contents, Unavailable> {
    let unavailable = |why: String| Unavailable {
        kver: kver.to_owned(),
        why,
    };
    let closure = modinfo::closure(dir, "vfio-pci").map_err(|e| unavailable(e.to_string()))?;
    if let Some(bad) = vermagic_mismatch(&closure, kver) {
        return Err(unavailable(bad));
    }
    let vfio_builtin = closure
        .first()
        .is_some_and(|e| e.provided == Provided::Builtin);
    let (softdep_drivers, warnings) = softdep_drivers(selectors, aliases, dir);
    let pci_aliases = aliases.aliases().iter().fold(String::new(), |mut s, a| {
        let _ = writeln!(s, "alias {} {}", a.pattern, a.module);
        s
    });
    Ok(Contents {
        modprobe_conf: modprobe_conf(agent, vfio_builtin, &softdep_drivers),
        closure,
        softdep_drivers,
        pci_aliases,
        warnings,
    })
}

/// The closure's modules that are files (what the image must carry).
pub fn module_names(closure: &[ClosureEntry]) -> Vec<String> {
    closure
        .iter()
        .filter(|e| matches!(e.provided, Provided::File { .. }))
        .map(|e| e.name.clone())
        .collect()
}

/// A module file built for another kernel release, if any.
pub fn vermagic_mismatch(closure: &[ClosureEntry], kver: &str) -> Option<String> {
    closure.iter().find_map(|e| match &e.provided {
        Provided::File {
            path,
            release: Some(r),
        } if r != kver => Some(format!("{} was built for {r}", path.display())),
        _ => None,
    })
}

/// The host drivers (module files of the target kernel) whose PCI alias matches the
/// id of a selected entry, with a warning for each entry without an id (nothing says
/// which driver would take it). The class of a device is not in the config, so an
/// alias matches on the ids alone; aliases that name no vendor (class-only drivers
/// such as xhci_pci or ahci) never match, or every id would softdep them.
pub fn softdep_drivers(
    selectors: &[Selector],
    aliases: &ClaimTable,
    dir: &ModuleDir,
) -> (Vec<String>, Vec<String>) {
    let mut found = BTreeSet::new();
    let mut warnings = Vec::new();
    for s in selectors {
        let Some(id) = s.id else {
            warnings.push(format!(
                "{s} names no id: the backstop has no softdep line for its driver (`vfio-early config suggest` writes address and id)"
            ));
            continue;
        };
        for a in aliases.aliases() {
            if id_matches(&a.pattern, id.vendor, id.device, id.subsystem) {
                found.insert(modinfo::canonical(&a.module));
            }
        }
    }
    let drivers = found
        .into_iter()
        .filter(|m| !NOT_HOST_DRIVERS.contains(&m.as_str()) && dir.files.contains_key(m))
        .collect();
    (drivers, warnings)
}

/// The drivers of the `[[sriov]]` PFs, which the image must carry (the kernel makes
/// VFs only with the PF's driver bound, and the agent loads it at boot): the target
/// kernel's modules whose alias matches the entry's `id`, or, without one, the
/// `modalias` of the device at that address on the build host (`host_modalias`). Each
/// entry with neither gets a warning.
pub fn sriov_drivers(
    entries: &[SriovEntry],
    aliases: &ClaimTable,
    dir: &ModuleDir,
    host_modalias: &dyn Fn(PciAddress) -> Option<String>,
) -> (Vec<String>, Vec<String>) {
    let mut found = BTreeSet::new();
    let mut warnings = Vec::new();
    for e in entries {
        let named: Vec<String> = match e.id {
            Some(id) => aliases
                .aliases()
                .iter()
                .filter(|a| id_matches(&a.pattern, id.vendor, id.device, id.subsystem))
                .map(|a| modinfo::canonical(&a.module))
                .collect(),
            None => host_modalias(e.address)
                .and_then(|m| aliases.claimant(&m).map(modinfo::canonical))
                .into_iter()
                .collect(),
        };
        let files: Vec<String> = named
            .into_iter()
            .filter(|m| !NOT_HOST_DRIVERS.contains(&m.as_str()) && dir.files.contains_key(m))
            .collect();
        if files.is_empty() {
            warnings.push(match e.id {
                Some(id) => format!(
                    "[[sriov]] line {}: no module of this kernel drives {id}: the image carries no driver for PF {} (built in, or missing?)",
                    e.line, e.address
                ),
                None => format!(
                    "[[sriov]] line {}: no id, and no driver for a device at {} on this machine: the image may lack the PF's driver (add id = \"vendor:device\")",
                    e.line, e.address
                ),
            });
        }
        for m in files {
            match modinfo::closure(dir, &m) {
                Ok(c) => found.extend(module_names(&c)),
                Err(_) => {
                    found.insert(m);
                }
            }
        }
    }
    (found.into_iter().collect(), warnings)
}

/// Whether a `pci:v..d..sv..sd..bc..sc..i..` alias pattern can match a device with
/// these ids, whatever its class. The vendor field must name a vendor.
fn id_matches(pattern: &str, vendor: u16, device: u16, subsystem: Option<(u16, u16)>) -> bool {
    let Some(fields) = alias_fields(pattern) else {
        return false;
    };
    let [v, d, sv, sd] = [fields[0], fields[1], fields[2], fields[3]];
    if v.starts_with('*') {
        return false;
    }
    let hex = |x: u16| format!("{x:08X}");
    let glob = crate::modules::glob_match;
    glob(v, &hex(vendor))
        && glob(d, &hex(device))
        && subsystem.is_none_or(|(svv, sdv)| glob(sv, &hex(svv)) && glob(sd, &hex(sdv)))
}

/// The seven fields of a PCI alias pattern (`v`, `d`, `sv`, `sd`, `bc`, `sc`, `i`), each
/// a glob over upper-case hex; `None` for anything else.
fn alias_fields(pattern: &str) -> Option<[&str; 7]> {
    let mut rest = pattern.strip_prefix("pci:v")?;
    let mut out = [""; 7];
    for (i, next) in ["d", "sv", "sd", "bc", "sc", "i"].iter().enumerate() {
        // Hex is upper case, so the lower-case markers cannot occur inside a field.
        let at = rest.find(next)?;
        out[i] = &rest[..at];
        rest = &rest[at + next.len()..];
    }
    out[6] = rest;
    Some(out)
}

/// The modprobe.d backstop file.
pub fn modprobe_conf(agent: &str, vfio_builtin: bool, drivers: &[String]) -> String {
    let mut s = String::from("# Generated by vfio-early at image build time: do not edit.\n");
    if vfio_builtin {
        s.push_str("# vfio-pci is built into this kernel: no install line.\n");
    } else {
        s.push_str("# Whatever loads vfio-pci first runs the agent (the variable stops recursion; --once: one run per boot).\n");
        let _ = writeln!(
            s,
            "install vfio-pci [ -n \"$VFIO_EARLY_BACKSTOP\" ] || VFIO_EARLY_BACKSTOP=1 {agent} bind --once; modprobe --ignore-install vfio-pci $CMDLINE_OPTS"
        );
    }
    for d in drivers {
        let _ = writeln!(s, "softdep {d} pre: vfio-pci");
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::Config;

    #[test]
    fn modules_built_for_another_release_are_unavailable() {
        let entry = |release: Option<&str>| ClosureEntry {
            name: "vfio_pci".into(),
            provided: Provided::File {
                path: "/m/vfio-pci.ko".into(),
                release: release.map(str::to_owned),
            },
            wanted_by: None,
        };
        assert!(vermagic_mismatch(&[entry(Some("6.1.0-56-amd64"))], "6.1.0-56-amd64").is_none());
        let bad = vermagic_mismatch(&[entry(Some("6.1.0-55-amd64"))], "6.1.0-56-amd64").unwrap();
        assert!(bad.contains("built for 6.1.0-55-amd64"), "{bad}");
        assert!(vermagic_mismatch(&[entry(None)], "6.1.0-56-amd64").is_none());
        let builtin = ClosureEntry {
            name: "vfio".into(),
            provided: Provided::Builtin,
            wanted_by: None,
        };
        assert!(module_names(&[builtin, entry(None)]) == ["vfio_pci"]);
    }

    #[test]
    fn backstop_lines() {
        let conf = modprobe_conf(
            "/usr/bin/vfio-early",
            false,
            &["e1000e".into(), "snd_hda_intel".into()],
        );
        assert!(conf.contains(
            "install vfio-pci [ -n \"$VFIO_EARLY_BACKSTOP\" ] || VFIO_EARLY_BACKSTOP=1 /usr/bin/vfio-early bind --once; modprobe --ignore-install vfio-pci $CMDLINE_OPTS\n"
        ));
        assert!(
            conf.contains("softdep e1000e pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n")
        );
        assert!(!modprobe_conf("/a", true, &[]).contains("install vfio-pci"));
    }

    fn selectors(toml: &str) -> Vec<Selector> {
        Config::parse(std::path::Path::new("t.toml"), toml.as_bytes())
            .unwrap()
            .devices
    }

    /// Lines as the kernel's `modules.alias` has them (bochs, e1000e, nouveau and
    /// snd_hda_intel's id and vendor-class aliases, a class-only xhci_pci alias).
    const ALIASES: &str = "alias pci:v00001234d00001111sv*sd*bc03sc00i00* bochs\n\
        alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n\
        alias pci:v000010DEd*sv*sd*bc03sc*i* nouveau\n\
        alias pci:v000010DEd*sv*sd*bc04sc03i00* snd_hda_intel\n\
        alias pci:v00008086d0000293Esv*sd*bc*sc*i* snd_hda_intel\n\
        alias pci:v*d*sv*sd*bc0Csc03i30* xhci_pci\n\
        alias pci:v00001AF4d00001100sv00001AF4sd00001100bc*sc*i* virtio_sub\n\
        alias pci:v*d*sv*sd*bc06sc04i00* pcieport\n";

    fn table() -> (ClaimTable, ModuleDir) {
        let aliases = ClaimTable::new(crate::modules::parse_alias(ALIASES));
        let mut dir = ModuleDir::default();
        for m in [
            "bochs",
            "e1000e",
            "nouveau",
            "snd_hda_intel",
            "xhci_pci",
            "virtio_sub",
        ] {
            dir.files.insert(m.into(), m.into());
        }
        (aliases, dir)
    }

    #[test]
    fn sriov_pf_drivers_come_from_the_entry_id_or_the_build_hosts_device() {
        let mut aliases = crate::modules::parse_alias(ALIASES);
        aliases.extend(crate::modules::parse_alias(
            "alias pci:v00008086d000010C9sv*sd*bc*sc*i* igb\nalias pci:v00008086d000010CAsv*sd*bc*sc*i* igbvf\n",
        ));
        let aliases = ClaimTable::new(aliases);
        let (_, mut dir) = table();
        dir.files.insert("igb".into(), "igb".into());
        let entries = |toml: &str| {
            Config::parse(std::path::Path::new("t.toml"), toml.as_bytes())
                .unwrap()
                .sriov
        };
        let none = |_: PciAddress| None;
        let with_id =
            entries("[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = 2\nid = \"8086:10c9\"\n");
        assert_eq!(
            sriov_drivers(&with_id, &aliases, &dir, &none),
            (vec!["igb".to_owned()], vec![])
        );
        // No id: the device at that address on the build host says which driver.
        let no_id = entries("[[sriov]]\naddress = \"0000:03:00.0\"\nvfs = 2\n");
        let host = |_: PciAddress| {
            Some("pci:v00008086d000010C9sv00008086sd00000000bc02sc00i00".to_owned())
        };
        assert_eq!(sriov_drivers(&no_id, &aliases, &dir, &host).0, ["igb"]);
        let (d, w) = sriov_drivers(&no_id, &aliases, &dir, &none);
        assert!(d.is_empty());
        assert!(
            w[0].contains("line 1: no id, and no driver for a device at 0000:03:00.0"),
            "{w:?}"
        );
        // A driver the kernel has no file for (built in, or missing): said, not guessed.
        dir.files.remove("igb");
        let (d, w) = sriov_drivers(&with_id, &aliases, &dir, &none);
        assert!(d.is_empty());
        assert!(
            w[0].contains("no module of this kernel drives 8086:10c9"),
            "{w:?}"
        );
    }

    #[test]
    fn softdeps_come_from_the_config_ids_and_the_kernel_alias_table() {
        let (aliases, mut dir) = table();
        let (d, w) = softdep_drivers(
            &selectors("[[device]]\naddress = \"0000:01:00.0\"\nid = \"1234:1111\"\nfunctions = \"slot\"\n"),
            &aliases,
            &dir,
        );
        assert_eq!(d, ["bochs"]);
        assert!(w.is_empty(), "{w:?}");
        // A GPU of a vendor whose drivers match by class: both of its drivers, never
        // the class-only xhci_pci.
        let nvidia = selectors("[[device]]\nid = \"10de:1b80\"\n");
        assert_eq!(
            softdep_drivers(&nvidia, &aliases, &dir).0,
            ["nouveau", "snd_hda_intel"]
        );
        // The subsystem ids, when given, must match too.
        let sub = |s: &str| softdep_drivers(&selectors(s), &aliases, &dir).0;
        assert_eq!(
            sub("[[device]]\nid = \"1af4:1100:1af4:1100\"\n"),
            ["virtio_sub"]
        );
        assert!(sub("[[device]]\nid = \"1af4:1100:1af4:1101\"\n").is_empty());
        assert_eq!(sub("[[device]]\nid = \"1af4:1100\"\n"), ["virtio_sub"]);
        // No id: no line, and a warning that says so.
        let (d, w) = softdep_drivers(
            &selectors("[[device]]\naddress = \"0000:00:03.0\"\n"),
            &aliases,
            &dir,
        );
        assert!(d.is_empty());
        assert!(
            w[0].contains("address 0000:00:03.0") && w[0].contains("no id"),
            "{w:?}"
        );
        // A driver built into the target kernel needs no line.
        dir.files.remove("bochs");
        let one = selectors("[[device]]\nid = \"1234:1111\"\n");
        assert!(softdep_drivers(&one, &aliases, &dir).0.is_empty());
    }

    #[test]
    fn alias_patterns_split_into_their_fields() {
        assert_eq!(
            alias_fields("pci:v000010DEd*sv*sd*bc04sc03i00*"),
            Some(["000010DE", "*", "*", "*", "04", "03", "00*"])
        );
        assert_eq!(alias_fields("usb:v1234p*"), None);
        assert!(!id_matches(
            "pci:v*d*sv*sd*bc0Csc03i30*",
            0x8086,
            0x1234,
            None
        ));
        assert!(id_matches(
            "pci:v00008086d000010D3sv*sd*bc*sc*i*",
            0x8086,
            0x10d3,
            None
        ));
        assert!(!id_matches(
            "pci:v00008086d000010D3sv*sd*bc*sc*i*",
            0x8086,
            0x10d4,
            None
        ));
    }
}
