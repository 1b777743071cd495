//! `vfio-early initramfs`: every decision of an image build, for the generators' hooks
//! (dracut's `module-setup.sh`, mkinitcpio's `install/vfio-early`, initramfs-tools'
//! `hooks/vfio-early`), which only carry out what it prints.
//!
//! It writes the generated files into the image tree (`--out`): the modprobe.d
//! backstop (`etc/modprobe.d/vfio-early.conf`) and the kernel's PCI alias table
//! (`usr/lib/vfio-early/modules.alias`), both from the config and the target kernel
//! ([`crate::image`]), never from this machine's devices. Then it prints one step per
//! line on stdout, for the hook to run with its generator's own function:
//!
//! ```text
//! warn TEXT          a warning for the build log (the image is built anyway)
//! module NAME        a module of vfio-pci's closure
//! binary SRC DST     the agent (the boot-only build when installed, else this one)
//! file SRC DST       the config; with mkinitcpio's systemd hook, the unit
//! symlink LINK DEST  mkinitcpio, systemd hook: the unit enabled
//! runscript          mkinitcpio, busybox init: the runtime hook (run_earlyhook)
//! hook WHEN PRIO     dracut: inst_hook WHEN PRIO (pre-udev 00)
//! ```
//!
//! When the image must not carry the boot hook (no config, or vfio-pci unavailable
//! for the target kernel) it prints only `warn` lines. Exit status: 0 (a build goes on
//! whatever is printed), 2 for a usage error.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::exit::{Exit, Outcome};
use crate::host::Host;
use crate::image;
use crate::machine::read_topology;
use crate::modinfo::ModuleDir;
use crate::modules::ClaimTable;
use crate::plan;

/// The initramfs generators.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generator {
    /// dracut (`90vfio-early/module-setup.sh`).
    Dracut,
    /// mkinitcpio (`install/vfio-early`).
    Mkinitcpio,
    /// Debian's initramfs-tools (`hooks/vfio-early`).
    InitramfsTools,
}

/// Options of `vfio-early initramfs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which generator's hook asks.
    #[arg(long, value_enum)]
    pub generator: Generator,
    /// Target kernel release.
    #[arg(long, value_name = "RELEASE")]
    pub kver: String,
    /// The target kernel's module directory (default: ROOT/lib/modules/RELEASE).
    #[arg(long, value_name = "DIR")]
    pub kmoddir: Option<PathBuf>,
    /// The image tree being built, where the generated files go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Config to put into the image (default: ROOT/etc/vfio-early.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The boot-only build for the image (default:
    /// ROOT/usr/lib/vfio-early/vfio-early-boot); this binary when it is not there.
    #[arg(long, value_name = "FILE")]
    pub boot_bin: Option<PathBuf>,
    /// mkinitcpio: the hooks the image is built with (its `_hooks`: HOOKS with -A,
    /// without -S); `systemd` among them means the oneshot unit instead of the
    /// runtime hook.
    #[arg(long, value_name = "LIST", default_value = "")]
    pub hooks: String,
    /// mkinitcpio, systemd hook: the unit (default: ROOT/usr/lib/vfio-early/vfio-early.service).
    #[arg(long, value_name = "FILE")]
    pub unit: Option<PathBuf>,
}

/// Where the agent lives inside the image.
const AGENT: &str = "/usr/bin/vfio-early";

/// Runs `vfio-early initramfs`: its problems are `warn` steps for the hook to show.
///
/// # Errors
/// None.
pub fn run(args: &Args, host: &Host) -> Outcome {
    print!("{}", steps(args, host));
    Ok(Exit::Ok)
}

/// A warning line (one per line of a multi-line message).
fn warn(out: &mut String, msg: &str) {
    for line in msg.lines() {
        let _ = writeln!(out, "warn vfio-early: {line}");
    }
}

/// Everything the hook must do, one step a line.
fn steps(args: &Args, host: &Host) -> String {
    let mut out = String::new();
    let kver = &args.kver;
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| host.path(config::DEFAULT_PATH));
    if !config_path.is_file() {
        warn(
            &mut out,
            &format!(
                "{}: not found: nothing to bind, the boot hook is left out of this image",
                config_path.display()
            ),
        );
        return out;
    }
    let kmoddir = args
        .kmoddir
        .clone()
        .unwrap_or_else(|| host.path(format!("lib/modules/{kver}")));
    let dir = ModuleDir::scan(&kmoddir);
    let aliases = ClaimTable::load_dir(&Host::new(&kmoddir), "");
    let config = Config::load(&config_path);
    let selectors = config
        .as_ref()
        .map(|c| c.devices.clone())
        .unwrap_or_default();
    let contents = match image::contents(kver, &dir, &aliases, &selectors, AGENT) {
        Ok(c) => c,
        Err(e) => {
            warn(&mut out, &format!("WARNING: {e}: the vfio-early boot hook is LEFT OUT of this image; no device will be handed to vfio-pci at boot with this kernel"));
            return out;
        }
    };
    // The config, checked now so an error shows with its line while the image is
    // built rather than silently at boot; planned on this machine as it runs now.
    match &config {
        Err(e) => {
            warn(&mut out, &e.to_string());
            warn(&mut out, &format!("config error in {}: the agent will change nothing at boot until it is fixed (the image is built anyway)", config_path.display()));
        }
        Ok(c) => {
            if plan::plan(&c.devices, &read_topology(host)).has_problems() {
                warn(&mut out, &format!("on this machine as it runs now, the config plans refusals: see 'vfio-early bind --dry-run --config {}'", config_path.display()));
            }
        }
    }
    for w in &contents.warnings {
        warn(&mut out, w);
    }
    for (rel, text) in [
        ("usr/lib/vfio-early/modules.alias", &contents.pci_aliases),
        ("etc/modprobe.d/vfio-early.conf", &contents.modprobe_conf),
    ] {
        if let Err(e) = write_into(&args.out, rel, text) {
            warn(&mut out, &e);
        }
    }

    let mut modules = image::module_names(&contents.closure);
    // The PFs' drivers of `[[sriov]]`: the agent loads them at boot to make the VFs.
    if let Ok(c) = &config {
        let (drivers, warnings) = image::sriov_drivers(&c.sriov, &aliases, &dir, &|a| {
            crate::pci::Device::read(host, a).and_then(|d| d.modalias)
        });
        for w in &warnings {
            warn(&mut out, w);
        }
        modules.extend(
            drivers
                .into_iter()
                .filter(|m| !modules.contains(m))
                .collect::<Vec<_>>(),
        );
    }
    for m in modules {
        let _ = writeln!(out, "module {m}");
    }
    let boot_bin = args
        .boot_bin
        .clone()
        .unwrap_or_else(|| host.path("usr/lib/vfio-early/vfio-early-boot"));
    let bin = if is_executable(&boot_bin) {
        boot_bin
    } else {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from(AGENT))
    };
    let _ = writeln!(out, "binary {} {AGENT}", bin.display());
    let _ = writeln!(out, "file {} /etc/vfio-early.toml", config_path.display());
    match args.generator {
        Generator::Dracut => out.push_str("hook pre-udev 00\n"),
        Generator::Mkinitcpio if args.hooks.split_whitespace().any(|h| h == "systemd") => {
            // systemd's init never runs runtime hooks: the unit does the same.
            let unit = args
                .unit
                .clone()
                .unwrap_or_else(|| host.path("usr/lib/vfio-early/vfio-early.service"));
            let _ = writeln!(
                out,
                "file {} /usr/lib/systemd/system/vfio-early.service",
                unit.display()
            );
            out.push_str("symlink /usr/lib/systemd/system/sysinit.target.wants/vfio-early.service ../vfio-early.service\n");
        }
        Generator::Mkinitcpio => out.push_str("runscript\n"),
        Generator::InitramfsTools => {}
    }
    out
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Writes `text` to OUT/REL (the image tree), creating the directories.
fn write_into(out: &Path, rel: &str, text: &str) -> Result<(), String> {
    let path = out.join(rel);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}
