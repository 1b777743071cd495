//! `vfio-early config suggest [ADDRESS | --gpu N] [--write [--force]]`: a config for
//! the card a user names, checked by the planner before anyone boots with it.
//!
//! The card is named by a PCI address (any function of it) or by `--gpu N`, the
//! display controller `vfio-early groups` shows as `GPU N` (counted from 1, in PCI
//! address order). The proposal:
//! - takes every function of the slot (`functions = "slot"`: the GPU with its HDMI
//!   audio, USB-C and UCSI functions), since they share the card and nearly always the
//!   IOMMU group;
//! - names the card by address AND id: the address picks this card when an identical
//!   one sits in another slot (an id alone would take both), and the id makes the boot
//!   refuse rather than guess if the address ever points at another device (a card
//!   added, buses renumbered);
//! - is re-parsed with [`Config::parse`] and planned against this machine, exactly as
//!   the boot would ([`read_topology`] + [`plan::plan`]). When the planner's verdict on
//!   the card's group ([`plan::group_verdict`], what `groups` shows) is not that this
//!   card alone hands it over, nothing is proposed: the command names what stands in
//!   the way and exits 1.
//!
//! The config goes to stdout, or with `--write` to `ROOT/etc/vfio-early.toml`: into an
//! existing file it is merged ([`config_edit::merge`]: the entry of the same card is
//! updated or a new one appended, every other line kept); `--force` replaces the whole
//! file. Either way the old file is kept as `vfio-early.toml.bak`. Exit codes
//! ([`crate::exit`]): 0 proposed, 1 not viable (no IOMMU included) or not merged, 2
//! usage (no card named, no such device, no such GPU) or a file that cannot be written.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::config::{self, Config};
use crate::config_edit::{self, Change};
use crate::exit::{Error, Exit, Outcome};
use crate::host::Host;
use crate::machine::{self, gpus, read_topology};
use crate::pci::{Device, PciAddress};
use crate::pciids::PciIds;
use crate::plan::{self, class_name, Action, Handover, Plan, Topology};
use crate::traps;

/// Options of `vfio-early config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: ConfigCommand,
}

/// The `config` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Propose a config for one card (every function of its slot), checked by the planner.
    Suggest(SuggestArgs),
}

/// Options of `vfio-early config suggest`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SuggestArgs {
    /// The card: any of its functions (DDDD:BB:DD.F); or name it with --gpu N.
    #[arg(value_name = "ADDRESS", conflicts_with = "gpu")]
    pub address: Option<PciAddress>,
    /// The display controller `vfio-early groups --gpu` shows as `GPU N`.
    #[arg(long, value_name = "N")]
    pub gpu: Option<usize>,
    /// Write ROOT/etc/vfio-early.toml instead of printing: merged into an existing file,
    /// its comments and other entries kept.
    #[arg(long)]
    pub write: bool,
    /// With --write: replace an existing config instead of merging into it (the old one
    /// is kept as vfio-early.toml.bak).
    #[arg(long, requires = "write")]
    pub force: bool,
}

/// A proposal that the planner accepted.
#[derive(Debug, Clone)]
pub struct Suggestion {
    /// The device the config names (the card's function the user named).
    pub address: PciAddress,
    /// Every function of the slot, by address.
    pub functions: Vec<PciAddress>,
    /// Other cards with the same `vendor:device` as the named one.
    pub twins: Vec<PciAddress>,
    /// The config text.
    pub text: String,
    /// The plan of that text on this machine.
    pub plan: Plan,
}

/// Why no config is proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuggestError {
    /// The user named nothing that exists (exit 2).
    Usage(String),
    /// The card exists but cannot go to vfio as the machine stands (exit 1).
    NotViable(String),
}

impl std::fmt::Display for SuggestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usage(m) | Self::NotViable(m) => f.write_str(m),
        }
    }
}

impl From<SuggestError> for Error {
    fn from(e: SuggestError) -> Self {
        match e {
            SuggestError::Usage(m) => Self::Usage(m),
            SuggestError::NotViable(m) => Self::Refused(m),
        }
    }
}

/// Runs `vfio-early config ...`.
///
/// # Errors
/// See [`crate::exit`].
pub fn run(args: &Args, host: &Host) -> Outcome {
    match &args.action {
        ConfigCommand::Suggest(a) => run_suggest(a, host),
    }
}

fn run_suggest(args: &SuggestArgs, host: &Host) -> Outcome {
    let topo = read_topology(host);
    let ids = PciIds::load(host);
    let mut s = suggest(&topo, ids.as_ref(), args)?;
    // The traps around the proposal, as bind --dry-run and apply show them: on stderr,
    // and as comments in the proposal itself.
    let traps = traps::find(&s.plan, &topo, &machine::read_facts(host, &s.plan));
    if !traps.is_empty() {
        let mut head = String::new();
        for t in &traps {
            let w = t.warning();
            eprintln!("warning: {w}");
            let _ = writeln!(head, "# warning: {w}");
        }
        head.push('\n');
        s.text.insert_str(0, &head);
    }
    if !args.write {
        crate::report::print_stdout(&s.text);
        return Ok(Exit::Ok);
    }
    let path = host.path(config::DEFAULT_PATH);
    if path.exists() && !args.force {
        return merge_into(&path, &s.text);
    }
    let backup = write_config(&path, &s.text, args.force)?;
    if let Some(b) = backup {
        eprintln!("vfio-early: the previous config is kept as {}", b.display());
    }
    eprintln!(
        "vfio-early: wrote {}; now run `vfio-early apply` to put it into the initramfs",
        path.display()
    );
    Ok(Exit::Ok)
}

/// `--write` over an existing file: the proposal merged into it, everything else kept.
fn merge_into(path: &Path, proposal: &str) -> Outcome {
    // The bounded reader: a FIFO or device at the path is refused, never opened.
    let merged = crate::host::read_text(path, crate::config::MAX_SIZE as u64)
        .map_err(|e| e.to_string())
        .and_then(|old| {
            config_edit::merge(&old, proposal).map_err(|e| format!("{}: {e}", path.display()))
        })
        .and_then(|m| match Config::parse(path, m.text.as_bytes()) {
            Ok(_) => Ok(m),
            Err(e) => Err(e.to_string()),
        });
    let m = merged.map_err(|e| {
        Error::Refused(format!(
            "{e}\nnot merged: fix the file, or replace it with --force (the old one is kept as .bak)"
        ))
    })?;
    let what = match m.change {
        Change::Unchanged => {
            eprintln!(
                "vfio-early: {} already names the card at {} so: nothing changed",
                path.display(),
                m.address
            );
            return Ok(Exit::Ok);
        }
        Change::Added => "added a [[device]] entry for the card at",
        Change::Updated => "updated the [[device]] entry (address, id, functions) of the card at",
    };
    let backup = write_config(path, &m.text, true)?;
    eprintln!(
        "vfio-early: {}: {what} {}; every other line kept{}",
        path.display(),
        m.address,
        backup
            .map(|b| format!(" (the previous file is {})", b.display()))
            .unwrap_or_default()
    );
    eprintln!("vfio-early: now run `vfio-early apply` to put it into the initramfs");
    Ok(Exit::Ok)
}

/// The named device: the address given, or GPU N.
fn target(topo: &Topology, args: &SuggestArgs) -> Result<PciAddress, SuggestError> {
    if let Some(a) = args.address {
        return if topo.devices.iter().any(|d| d.address == a) {
            Ok(a)
        } else {
            Err(SuggestError::Usage(format!(
                "no PCI device at {a} (see `vfio-early groups`)"
            )))
        };
    }
    let Some(n) = args.gpu else {
        return Err(SuggestError::Usage(
            "name the card: `vfio-early config suggest ADDRESS` (any of its functions), or \
             `vfio-early config suggest --gpu N` with N from `vfio-early groups --gpu`"
                .to_owned(),
        ));
    };
    let list = gpus(topo);
    if list.is_empty() {
        return Err(SuggestError::Usage(format!(
            "--gpu {n}: this machine has no display controller"
        )));
    }
    match n.checked_sub(1).and_then(|i| list.get(i)) {
        Some(a) => Ok(*a),
        None => {
            let mut m = format!("--gpu {n}: the GPUs are numbered 1 to {}:", list.len());
            for (i, a) in list.iter().enumerate() {
                let _ = write!(m, " {}={a}", i + 1);
            }
            Err(SuggestError::Usage(m))
        }
    }
}

/// One device in a comment: address, class, `[vendor:device]`, names when known.
fn describe(d: &Device, ids: Option<&PciIds>) -> String {
    let mut s = format!("{} {} [{}]", d.address, class_name(d.class), d.id());
    if let Some(ids) = ids {
        if let Some(n) = ids
            .subsystem(d.vendor, d.device, d.subsystem_vendor, d.subsystem_device)
            .or_else(|| ids.device(d.vendor, d.device))
        {
            let _ = write!(s, " {n}");
        }
    }
    if let Some(drv) = &d.driver {
        let _ = write!(s, ", on {drv}");
    }
    if d.boot_vga {
        s.push_str(", boot display");
    }
    s
}

/// Proposes a config for the named card and checks it with the planner.
///
/// # Errors
/// [`SuggestError::Usage`] when nothing is named that exists,
/// [`SuggestError::NotViable`] (naming what stands in the way) when the planner
/// refuses the card.
pub fn suggest(
    topo: &Topology,
    ids: Option<&PciIds>,
    args: &SuggestArgs,
) -> Result<Suggestion, SuggestError> {
    let address = target(topo, args)?;
    let dev = topo
        .devices
        .iter()
        .find(|d| d.address == address)
        .ok_or_else(|| SuggestError::Usage(format!("no PCI device at {address}")))?;
    let slot: Vec<&Device> = topo
        .devices
        .iter()
        .filter(|d| d.address.same_slot(&address))
        .collect();
    let twins: Vec<PciAddress> = topo
        .devices
        .iter()
        .filter(|d| {
            !d.address.same_slot(&address) && d.vendor == dev.vendor && d.device == dev.device
        })
        .map(|d| d.address)
        .collect();

    let mut text = String::new();
    let _ = writeln!(text, "# /etc/vfio-early.toml, proposed by `vfio-early config suggest` for the card at {address}.");
    let _ = writeln!(
        text,
        "# Checked against this machine with the boot's planner. After any change, run"
    );
    let _ = writeln!(
        text,
        "# `vfio-early apply`: the initramfs carries its own copy of this file."
    );
    let _ = writeln!(
        text,
        "# Recovery: vfio_early=off on the kernel command line makes the boot skip it."
    );
    text.push('\n');
    let _ = writeln!(text, "[[device]]");
    for d in &slot {
        let _ = writeln!(text, "# {}", describe(d, ids));
    }
    if !twins.is_empty() {
        let list: Vec<String> = twins.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            text,
            "# An identical card ({}) is at {}: the address picks this one, the id",
            dev.id(),
            list.join(", ")
        );
        let _ = writeln!(text, "# guards it; the other card stays with the host.");
    }
    let _ = writeln!(text, "address = \"{address}\"");
    let _ = writeln!(text, "id = \"{}\"", dev.id());
    let _ = writeln!(text, "functions = \"slot\"");

    // Validate exactly as the boot would: parse the text, plan it on this topology.
    let config = Config::parse(Path::new(config::DEFAULT_PATH), text.as_bytes()).map_err(|e| {
        SuggestError::NotViable(format!("internal error: the proposal does not parse: {e}"))
    })?;
    let plan = plan::plan(&config.devices, topo);
    if plan.has_problems() {
        return Err(SuggestError::NotViable(not_viable(
            address, dev, topo, &plan,
        )));
    }
    let functions = slot.iter().map(|d| d.address).collect();
    Ok(Suggestion {
        address,
        functions,
        twins,
        text,
        plan,
    })
}

/// What stands in the way, one line per refused device, with what to do: the
/// planner's reasons, and its verdict on the group (what `groups` shows).
fn not_viable(address: PciAddress, dev: &Device, topo: &Topology, plan: &Plan) -> String {
    let group = dev.iommu_group.map_or_else(
        || "no IOMMU group".to_owned(),
        |g| format!("IOMMU group {g}"),
    );
    let mut m = format!("the card at {address} ({group}) cannot go to vfio-pci as this machine stands; no config proposed:");
    for d in plan.with_action(Action::Refuse) {
        for r in &d.reasons {
            let _ = write!(m, "\n  {}: {r}", d.address);
        }
    }
    for w in &plan.warnings {
        let _ = write!(m, "\n  {w}");
    }
    let verdict = dev.iommu_group.map(|g| (g, plan::group_verdict(topo, g)));
    if let Some((g, v)) = &verdict {
        if v.handover != Handover::Impossible {
            let others: Vec<String> = v
                .select
                .iter()
                .filter(|a| !a.same_slot(&address))
                .map(ToString::to_string)
                .collect();
            if !others.is_empty() {
                let _ = write!(
                    m,
                    "\nhint: IOMMU group {g} also holds {}: a config must select them too \
                     (they would leave the host); `vfio-early groups --group {g}` shows the group",
                    others.join(", ")
                );
            }
        }
    }
    if dev.boot_vga {
        m.push_str(
            "\nhint: this is the boot display. If the host has another screen or runs headless, \
             write the config by hand with allow_boot_vga = true, and keep vfio_early=off at hand.",
        );
    } else if dev.is_storage() {
        m.push_str(
            "\nhint: this is a storage controller. If no filesystem of the host is on it, write \
             the config by hand with allow_storage = true.",
        );
    }
    m
}

/// Writes the config atomically; an existing one is refused unless `force`, and is
/// then kept as `.bak`. Returns the backup's path.
///
/// # Errors
/// [`Error::Refused`] for an existing file without `force`, [`Error::Io`] naming
/// the path that could not be written.
pub(crate) fn write_config(
    path: &Path,
    text: &str,
    force: bool,
) -> Result<Option<std::path::PathBuf>, Error> {
    let io = |p: &Path, e: std::io::Error| Error::Io(format!("{}: {e}", p.display()));
    let exists = path.exists();
    if exists && !force {
        return Err(Error::Refused(format!(
            "{} exists: not replaced (add --force to replace it; the old one is kept as .bak)",
            path.display()
        )));
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let mut backup = None;
    if exists {
        let b = path.with_extension("toml.bak");
        fs::copy(path, &b).map_err(|e| io(&b, e))?;
        backup = Some(b);
    }
    let tmp = path.with_extension("toml.tmp");
    fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    Ok(backup)
}
