//! `vfio-early modules`: what an initramfs image must carry for the target kernel, for
//! people building one by hand (the generators' hooks use `vfio-early initramfs`); the
//! decisions are [`crate::image`]'s:
//!
//! - default output: the module files of vfio-pci's `depends`/`softdep` closure, one
//!   name per line (built-in modules are left out: they need no file);
//! - `--modprobe-conf`: the modprobe.d backstop, generated from the config: an
//!   `install vfio-pci` line that runs the agent before vfio-pci loads, and a
//!   `softdep <driver> pre: vfio-pci` line for every driver that the target kernel's
//!   alias table gives for an id the config selects (never from this machine's
//!   devices), so whatever loads that driver first runs the agent;
//! - `--json`: both, plus how each module is provided.
//!
//! Exit status: 0 when vfio-pci is available for the target kernel; 1 when it is not
//! (a warning says why: the hooks then leave the boot hook out of the image and go on);
//! 2 for a usage error (no such module directory).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::config::{self, Config};
use crate::exit::{Error, Exit, Outcome};
use crate::host::Host;
use crate::image;
use crate::modinfo::{ClosureEntry, ModuleDir, Provided};
use crate::modules::ClaimTable;

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
///
/// # Errors
/// No kernel release to look for, or no module directory (2).
pub fn run(args: &Args, host: &Host) -> Outcome {
    let Some(kver) = args.kver.clone().or_else(|| host.kernel_release()) else {
        return Err(Error::Usage(
            "no --kver given and the running kernel's release is unreadable".to_owned(),
        ));
    };
    let kmoddir = args
        .kmoddir
        .clone()
        .unwrap_or_else(|| host.path(format!("lib/modules/{kver}")));
    if !kmoddir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no such module directory",
            kmoddir.display()
        )));
    }
    let dir = ModuleDir::scan(&kmoddir);
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| host.path(config::DEFAULT_PATH));
    // A config error is reported by `bind --dry-run` (and `initramfs`); here it only
    // means no softdep lines.
    let selectors = Config::load(&config_path)
        .map(|c| c.devices)
        .unwrap_or_default();
    let aliases = ClaimTable::load_dir(&Host::new(&kmoddir), "");
    let c = match image::contents(&kver, &dir, &aliases, &selectors, &args.agent) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vfio-early: WARNING: {e}");
            eprintln!("vfio-early: WARNING: no device will be handed to vfio-pci at boot with this kernel");
            return Ok(Exit::Problem);
        }
    };
    if args.modprobe_conf || args.json {
        for w in &c.warnings {
            eprintln!("vfio-early: {w}");
        }
    }
    let out = if args.pci_aliases {
        c.pci_aliases.clone()
    } else if args.json {
        json(&kver, &c.closure, &c.softdep_drivers, &c.modprobe_conf)
    } else if args.modprobe_conf {
        c.modprobe_conf.clone()
    } else {
        image::module_names(&c.closure)
            .iter()
            .fold(String::new(), |mut s, n| {
                let _ = writeln!(s, "{n}");
                s
            })
    };
    print!("{out}");
    Ok(Exit::Ok)
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
