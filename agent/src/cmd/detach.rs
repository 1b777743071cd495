//! `vfio-early detach` and `vfio-early reattach`: the runtime handover, on a running
//! host (see [`crate::detach`]).
//!
//! Exit status: 0 when every device ended where asked (or already was there), 1 when
//! something was refused or failed (nothing of a refused request is touched; a failed
//! group is rolled back), 2 for a usage or config error.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::detach::{self, Request};
use crate::detach_report;
use crate::host::Host;
use crate::logger::KmsgLogger;
use crate::pci::PciAddress;
use log::LevelFilter;

/// Arguments of `detach`.
#[derive(clap::Args, Debug, Default)]
pub struct DetachArgs {
    /// PCI addresses (DDDD:BB:DD.F) of the devices to hand to vfio-pci.
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
    /// Detach even while a process holds the card's DRM device open.
    #[arg(long)]
    pub force: bool,
    /// Config file (default: ROOT/etc/vfio-early.toml; absent is fine).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `reattach`.
#[derive(clap::Args, Debug, Default)]
pub struct ReattachArgs {
    /// PCI addresses of the devices to give back to their host drivers.
    #[arg(required = true, value_name = "ADDR")]
    pub addresses: Vec<PciAddress>,
    /// Every function of each card.
    #[arg(long)]
    pub slot: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan (and the outcome) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also devices on vfio-pci that `detach` did not put there.
    #[arg(long)]
    pub force: bool,
    /// Config file (default: ROOT/etc/vfio-early.toml; absent is fine).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn install_logger(host: &Host, dry_run: bool) {
    let kmsg = if dry_run || !host.is_live() {
        LevelFilter::Off
    } else {
        LevelFilter::Info
    };
    KmsgLogger::new(host, LevelFilter::Warn, kmsg).install();
}

/// The logger and the config, as both commands start; `Err` is the exit status of a
/// config error (nothing was changed).
fn prepare(
    host: &Host,
    config: Option<&PathBuf>,
    dry_run: bool,
) -> Result<crate::config::Config, ExitCode> {
    install_logger(host, dry_run);
    detach::load_config(host, config).map_err(|e| {
        eprintln!("vfio-early: {e}; nothing was changed");
        ExitCode::from(2)
    })
}

/// Runs `detach`.
pub(crate) fn run_detach(args: &DetachArgs, host: &Host) -> ExitCode {
    let config = match prepare(host, args.config.as_ref(), args.dry_run) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = Request {
        addresses: &args.addresses,
        slot: args.slot,
        dry_run: args.dry_run,
        force: args.force,
    };
    let (out, code) = detach::detach_locked(host, &config, &req);
    detach_report::print_detach(&config, &out, args.json, args.dry_run);
    ExitCode::from(code)
}

/// Runs `reattach`.
pub(crate) fn run_reattach(args: &ReattachArgs, host: &Host) -> ExitCode {
    let config = match prepare(host, args.config.as_ref(), args.dry_run) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = Request {
        addresses: &args.addresses,
        slot: args.slot,
        dry_run: args.dry_run,
        force: args.force,
    };
    let (out, code) = detach::reattach_locked(host, &config, &req);
    detach_report::print_reattach(&config, &out, args.json, args.dry_run);
    ExitCode::from(code)
}
