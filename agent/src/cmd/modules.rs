//! `vfio-early modules`: what an initramfs generator must put in the image for the
//! target kernel.
//!
//! Used by the dracut, mkinitcpio and initramfs-tools hooks at image build time:
//!
//! - default output: the module files of vfio-pci's `depends`/`softdep` closure, one
//!   name per line (built-in modules are left out: they need no file);
//! - `--modprobe-conf`: the modprobe.d backstop, generated from the config: an
//!   `install vfio-pci` line that runs the agent before vfio-pci loads, and a
//!   `softdep <driver> pre: vfio-pci` line for the host driver of every selected
//!   function, so whatever loads that driver first runs the agent;
//! - `--json`: both, plus how each module is provided.
//!
//! Exit status: 0 when vfio-pci is available for the target kernel; 1 when it is not
//! (a warning says why: the hooks then leave the boot hook out of the image and go on);
//! 2 for a usage error (no such module directory).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, Selector};
use crate::host::Host;
use crate::modinfo::{self, ClosureEntry, ModuleDir, Provided};
use crate::modules::ClaimTable;
use crate::{pci, plan};

/// Drivers that never get a softdep line: vfio-pci itself and the passive owners.
const NOT_HOST_DRIVERS: [&str; 3] = ["vfio_pci", "pci_stub", "pcieport"];

/// Options of `vfio-early modules`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Target kernel release (default: the running kernel's).
    #[arg(long)]
    pub kver: Option<String>,
    /// The target kernel's module directory (default: ROOT/lib/modules/KVER).
    #[arg(long)]
    pub kmoddir: Option<PathBuf>,
    /// Config whose selected devices get softdep lines (default: ROOT/etc/vfio-early.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Path of the agent inside the image, for the `install vfio-pci` line.
    #[arg(long, default_value = "/usr/bin/vfio-early")]
    pub agent: String,
    /// Print the modprobe.d backstop instead of the module names.
    #[arg(long, conflicts_with = "json")]
    pub modprobe_conf: bool,
    /// Print the kernel's PCI alias table (loadable and built-in drivers) in
    /// `modules.alias` form, for the image: the initramfs's own `modules.alias` covers
    /// only the modules inside it, and the agent must know every driver that would
    /// claim a device after the switch to the real root.
    #[arg(long, conflicts_with_all = ["json", "modprobe_conf"])]
    pub pci_aliases: bool,
    /// Print everything as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `vfio-early modules`.
pub fn run(args: &Args, host: &Host) -> ExitCode {
    let Some(kver) = args.kver.clone().or_else(|| host.kernel_release()) else {
        eprintln!(
            "vfio-early: modules: no --kver given and the running kernel's release is unreadable"
        );
        return ExitCode::from(2);
    };
    let kmoddir = args
        .kmoddir
        .clone()
        .unwrap_or_else(|| host.path(format!("lib/modules/{kver}")));
    if !kmoddir.is_dir() {
        eprintln!(
            "vfio-early: modules: {}: no such module directory",
            kmoddir.display()
        );
        return ExitCode::from(2);
    }
    let dir = ModuleDir::scan(&kmoddir);
    let closure = match modinfo::closure(&dir, "vfio-pci") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vfio-early: WARNING: vfio-pci is unavailable for kernel {kver}: {e}");
            eprintln!("vfio-early: WARNING: no device will be handed to vfio-pci at boot with this kernel");
            return ExitCode::from(1);
        }
    };
    if let Some(bad) = vermagic_mismatch(&closure, &kver) {
        eprintln!("vfio-early: WARNING: vfio-pci is unavailable for kernel {kver}: {bad}");
        return ExitCode::from(1);
    }
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| host.path("etc/vfio-early.toml"));
    // A config error is reported by the hooks' own `bind --dry-run`; here it only
    // means no softdep lines.
    let selectors = Config::load(&config_path)
        .map(|c| c.devices)
        .unwrap_or_default();
    let aliases = ClaimTable::load_dir(&Host::new(&kmoddir), "");
    let drivers = host_drivers(host, &selectors, &aliases, &dir);
    let vfio_builtin = closure
        .first()
        .is_some_and(|e| e.provided == Provided::Builtin);

    let out = if args.pci_aliases {
        aliases.aliases().iter().fold(String::new(), |mut s, a| {
            let _ = writeln!(s, "alias {} {}", a.pattern, a.module);
            s
        })
    } else if args.json {
        json(
            &kver,
            &closure,
            &drivers,
            &modprobe_conf(&args.agent, vfio_builtin, &drivers),
        )
    } else if args.modprobe_conf {
        modprobe_conf(&args.agent, vfio_builtin, &drivers)
    } else {
        module_names(&closure)
            .iter()
            .fold(String::new(), |mut s, n| {
                let _ = writeln!(s, "{n}");
                s
            })
    };
    print!("{out}");
    ExitCode::SUCCESS
}

/// The closure's modules that are files (what the image must carry).
pub(crate) fn module_names(closure: &[ClosureEntry]) -> Vec<String> {
    closure
        .iter()
        .filter(|e| matches!(e.provided, Provided::File { .. }))
        .map(|e| e.name.clone())
        .collect()
}

/// A module file built for another kernel release, if any.
fn vermagic_mismatch(closure: &[ClosureEntry], kver: &str) -> Option<String> {
    closure.iter().find_map(|e| match &e.provided {
        Provided::File {
            path,
            release: Some(r),
        } if r != kver => Some(format!("{} was built for {r}", path.display())),
        _ => None,
    })
}

/// A device selector as far as the backstop needs it. The strict validation of the
/// config is `bind --dry-run`'s job; here unknown or malformed entries are skipped.
/// The host drivers (module names) of every selected device present under ROOT/sys:
/// the module of its current driver, and every module whose alias matches its
/// `modalias` in the target kernel. Only modules that are files of the target kernel.
pub(crate) fn host_drivers(
    host: &Host,
    selectors: &[Selector],
    aliases: &ClaimTable,
    dir: &ModuleDir,
) -> Vec<String> {
    let devices = pci::scan(host);
    let selected = plan::resolve(selectors, &devices).selected;
    let mut found = std::collections::BTreeSet::new();
    for dev in devices.iter().filter(|d| selected.contains_key(&d.address)) {
        if let Some(module) = host.link_name(dev.address.attr("driver/module")) {
            found.insert(modinfo::canonical(&module));
        }
        if let Some(alias) = &dev.modalias {
            found.extend(aliases.claimants(alias).into_iter().map(str::to_owned));
        }
    }
    found
        .into_iter()
        .filter(|m| !NOT_HOST_DRIVERS.contains(&m.as_str()) && dir.files.contains_key(m))
        .collect()
}

/// The modprobe.d backstop file.
pub(crate) fn modprobe_conf(agent: &str, vfio_builtin: bool, drivers: &[String]) -> String {
    let mut s = String::from("# Generated by vfio-early at image build time: do not edit.\n");
    if vfio_builtin {
        s.push_str("# vfio-pci is built into this kernel: no install line.\n");
    } else {
        s.push_str("# Whatever loads vfio-pci first runs the agent (once: the variable stops recursion).\n");
        let _ = writeln!(
            s,
            "install vfio-pci [ -n \"$VFIO_EARLY_BACKSTOP\" ] || VFIO_EARLY_BACKSTOP=1 {agent} bind; modprobe --ignore-install vfio-pci $CMDLINE_OPTS"
        );
    }
    for d in drivers {
        let _ = writeln!(s, "softdep {d} pre: vfio-pci");
    }
    s
}

fn json(kver: &str, closure: &[ClosureEntry], drivers: &[String], conf: &str) -> String {
    let modules: Vec<serde_json::Value> = closure
        .iter()
        .map(|e| {
            let (provided, path) = match &e.provided {
                Provided::Builtin => ("builtin", None),
                Provided::File { path, .. } => ("file", Some(path.display().to_string())),
                Provided::MissingOptional => ("missing-optional", None),
            };
            serde_json::json!({ "name": e.name, "provided": provided, "path": path, "wanted_by": e.wanted_by })
        })
        .collect();
    let v = serde_json::json!({
        "kver": kver,
        "modules": modules,
        "softdep_drivers": drivers,
        "modprobe_conf": conf,
    });
    format!("{v:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
            "install vfio-pci [ -n \"$VFIO_EARLY_BACKSTOP\" ] || VFIO_EARLY_BACKSTOP=1 /usr/bin/vfio-early bind; modprobe --ignore-install vfio-pci $CMDLINE_OPTS\n"
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

    fn dev(
        root: &std::path::Path,
        addr: &str,
        ids: [&str; 4],
        modalias: &str,
        driver: Option<&str>,
    ) {
        let d = root.join("sys/bus/pci/devices").join(addr);
        fs::create_dir_all(&d).unwrap();
        for (attr, v) in ["vendor", "device", "subsystem_vendor", "subsystem_device"]
            .iter()
            .zip(ids)
        {
            fs::write(d.join(attr), format!("0x{v}\n")).unwrap();
        }
        fs::write(d.join("modalias"), format!("{modalias}\n")).unwrap();
        if let Some(drv) = driver {
            let m = root.join("sys/module").join(drv);
            let dd = root.join("sys/bus/pci/drivers").join(drv);
            fs::create_dir_all(&m).unwrap();
            fs::create_dir_all(&dd).unwrap();
            std::os::unix::fs::symlink(&m, dd.join("module")).unwrap();
            std::os::unix::fs::symlink(&dd, d.join("driver")).unwrap();
        }
    }

    #[test]
    fn drivers_of_selected_devices() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        dev(
            r,
            "0000:01:00.0",
            ["1234", "1111", "1af4", "1100"],
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc80i00",
            None,
        );
        dev(
            r,
            "0000:01:00.1",
            ["8086", "293e", "1af4", "1100"],
            "pci:v00008086d0000293Esv00001AF4sd00001100bc04sc03i00",
            Some("snd_hda_intel"),
        );
        dev(
            r,
            "0000:02:00.0",
            ["1234", "1111", "1af4", "1100"],
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc80i00",
            None,
        );
        dev(
            r,
            "0000:00:03.0",
            ["8086", "10d3", "8086", "0000"],
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
            Some("e1000e"),
        );
        let aliases = ClaimTable::new(crate::modules::parse_alias(
            "alias pci:v00001234d00001111sv*sd*bc03sc80i* bochs\nalias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\nalias pci:v*d*sv*sd*bc04sc03i* snd_hda_intel\n",
        ));
        let mut dir = ModuleDir::default();
        for m in ["bochs", "e1000e", "snd_hda_intel"] {
            dir.files.insert(m.into(), m.into());
        }
        let host = Host::new(r);
        let slot = selectors("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n");
        assert_eq!(
            host_drivers(&host, &slot, &aliases, &dir),
            ["bochs", "snd_hda_intel"]
        );
        let one = selectors("[[device]]\naddress = \"0000:01:00.0\"\n");
        assert_eq!(host_drivers(&host, &one, &aliases, &dir), ["bochs"]);
        let by_id = selectors("[[device]]\nid = \"8086:10d3\"\n");
        assert_eq!(host_drivers(&host, &by_id, &aliases, &dir), ["e1000e"]);
        let wrong_id = selectors("[[device]]\naddress = \"0000:00:03.0\"\nid = \"8086:10d4\"\n");
        assert!(host_drivers(&host, &wrong_id, &aliases, &dir).is_empty());
        dir.files.remove("bochs");
        assert!(
            host_drivers(&host, &one, &aliases, &dir).is_empty(),
            "built-in drivers get no softdep"
        );
    }
}
