//! The command line: clap definitions and dispatch only. Each subcommand's arguments
//! and behaviour live in its own module under [`crate::cmd`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::exit;
use crate::host::Host;

/// Hands PCI devices to vfio-pci safely at boot, and tells the truth about a machine's
/// IOMMU setup afterwards.
#[derive(Parser, Debug)]
#[command(name = "vfio-early", version, about, propagate_version = true)]
pub struct Cli {
    /// Root of the system to work on (tests point this at a fixture tree); with
    /// anything but `/`, nothing reaches the running kernel.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Bind the configured devices to vfio-pci (run from the initramfs).
    Bind(cmd::bind::Args),
    /// Check the IOMMU, the kernel command line, the devices and hugepages.
    #[cfg(feature = "tools")]
    Check(cmd::check::Args),
    /// List IOMMU groups with their devices, drivers and boot-VGA flag.
    #[cfg(feature = "tools")]
    Groups(cmd::groups::Args),
    /// Check a kernel .config for passthrough.
    #[cfg(feature = "tools")]
    CheckKconfig(cmd::kconfig::Args),
    /// List the vfio modules of a kernel, for initramfs generators.
    #[cfg(feature = "tools")]
    Modules(cmd::modules::Args),
    /// Check the config on this machine, then rebuild the initramfs with it.
    #[cfg(feature = "tools")]
    Apply(cmd::apply::Args),
    /// Propose a config for a card (`config suggest`).
    #[cfg(feature = "tools")]
    Config(cmd::config::Args),
    /// Hand devices to vfio-pci on a running host, with the boot's planner.
    #[cfg(feature = "tools")]
    Detach(cmd::detach::DetachArgs),
    /// Give detached devices back to the drivers they came from.
    #[cfg(feature = "tools")]
    Reattach(cmd::detach::ReattachArgs),
    /// Hooks of other programs (`hook libvirt`: detach at VM start, reattach at stop).
    #[cfg(feature = "tools")]
    Hook(cmd::hook::Args),
}

/// Parses the process arguments and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let host = Host::new(&cli.root);
    match &cli.command {
        Command::Bind(a) => exit::finish("bind", cmd::bind::run(a, &host)),
        #[cfg(feature = "tools")]
        Command::Check(a) => exit::finish("check", cmd::check::run(a, &host)),
        #[cfg(feature = "tools")]
        Command::Groups(a) => exit::finish("groups", cmd::groups::run(a, &host)),
        #[cfg(feature = "tools")]
        Command::CheckKconfig(a) => cmd::kconfig::run(a, &host),
        #[cfg(feature = "tools")]
        Command::Modules(a) => cmd::modules::run(a, &host),
        #[cfg(feature = "tools")]
        Command::Apply(a) => exit::finish("apply", cmd::apply::run(a, &host)),
        #[cfg(feature = "tools")]
        Command::Config(a) => exit::finish("config", cmd::config::run(a, &host)),
        #[cfg(feature = "tools")]
        Command::Detach(a) => cmd::detach::run_detach(a, &host),
        #[cfg(feature = "tools")]
        Command::Reattach(a) => cmd::detach::run_reattach(a, &host),
        #[cfg(feature = "tools")]
        Command::Hook(a) => cmd::hook::run(a, &host),
    }
}
