//! `vfio-early detach` and `vfio-early reattach`: the runtime handover, on a running
//! host (see [`crate::detach`]).
//!
//! Exit status: 0 when every device ended where asked (or already was there), 1 when
//! something was refused or failed (nothing of a refused request is touched; a failed
//! group is rolled back), 2 for a usage or config error.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::detach::{self, Request};
use crate::detach_report;
use crate::exit::{Error, Outcome};
use crate::host::Host;
use crate::logger::KmsgLogger;
use crate::pci::PciAddress;
use log::LevelFilter;

/// What both commands take.
#[derive(clap::Args, Debug, Default)]
pub struct Targets {
    /// PCI addresses (DDDD:BB:DD.F) of the devices.
    #[arg(required = true, value_name = "ADDR")]
    pub addresses: Vec<PciAddress>,
    /// Every function of each card, as `functions = "slot"` in the config.
    #[arg(long)]
    pub slot: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan (and the outcome) as JSON, the bind plan's format.
    #[arg(long)]
    pub json: bool,
    /// Config file (default: ROOT/etc/vfio-early.toml; absent is fine).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `detach`.
#[derive(clap::Args, Debug, Default)]
pub struct DetachArgs {
    /// The devices to hand to vfio-pci, and how.
    #[command(flatten)]
    pub targets: Targets,
    /// Detach even while a process holds the card's DRM device open.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `reattach`.
#[derive(clap::Args, Debug, Default)]
pub struct ReattachArgs {
    /// The devices to give back to their host drivers, and how.
    #[command(flatten)]
    pub targets: Targets,
    /// Also devices on vfio-pci that `detach` did not put there.
    #[arg(long)]
    pub force: bool,
}

/// A config error before anything was changed (2).
#[derive(Debug, thiserror::Error)]
#[error("{0}; nothing was changed")]
struct Unchanged(ConfigError);

/// The logger, the config and the request, as both commands start.
fn prepare<'a>(
    host: &Host,
    t: &'a Targets,
    force: bool,
) -> Result<(crate::config::Config, Request<'a>), Error> {
    let kmsg = if t.dry_run || !host.is_live() {
        LevelFilter::Off
    } else {
        LevelFilter::Info
    };
    KmsgLogger::new(host, LevelFilter::Warn, kmsg).install();
    let config = detach::load_config(host, t.config.as_ref())
        .map_err(|e| Error::typed(crate::exit::Exit::Usage, Unchanged(e)))?;
    let req = Request {
        addresses: &t.addresses,
        slot: t.slot,
        dry_run: t.dry_run,
        force,
    };
    Ok((config, req))
}

/// Runs `detach`.
///
/// # Errors
/// A config error (nothing was changed).
pub(crate) fn run_detach(args: &DetachArgs, host: &Host) -> Outcome {
    let t = &args.targets;
    let (config, req) = prepare(host, t, args.force)?;
    let (out, exit) = detach::detach_locked(host, &config, &req);
    detach_report::print_detach(&config, &out, t.json, t.dry_run);
    Ok(exit)
}

/// Runs `reattach`.
///
/// # Errors
/// A config error (nothing was changed).
pub(crate) fn run_reattach(args: &ReattachArgs, host: &Host) -> Outcome {
    let t = &args.targets;
    let (config, req) = prepare(host, t, args.force)?;
    let (out, exit) = detach::reattach_locked(host, &config, &req);
    detach_report::print_reattach(&config, &out, t.json, t.dry_run);
    Ok(exit)
}
