//! `vfio-early`: clap definitions and dispatch only; each subcommand lives in
//! `vfio_early::cmd`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vfio_early::cmd;
use vfio_early::host::Host;

/// Hands PCI devices to vfio-pci safely at boot, and tells the truth about a machine's
/// IOMMU setup afterwards.
#[derive(Parser, Debug)]
#[command(name = "vfio-early", version, about, propagate_version = true)]
struct Cli {
    /// Root of the system to work on (tests point this at a fixture tree); with
    /// anything but `/`, nothing reaches the running kernel.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Bind the configured devices to vfio-pci (run from the initramfs).
    Bind(cmd::bind::Args),
    /// List the vfio modules of a kernel, for initramfs generators.
    Modules(cmd::modules::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let host = Host::new(&cli.root);
    match &cli.command {
        Command::Bind(a) => cmd::bind::run(a, &host),
        Command::Modules(a) => cmd::modules::run(a, &host),
    }
}
