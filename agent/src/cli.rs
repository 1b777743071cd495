//! The command line: clap definitions and dispatch only. Each subcommand's arguments
//! and behaviour live in its own module under [`crate::cmd`].
//!
//! The boot agent (built without the `tools` feature) has one subcommand and five
//! flags; it parses them with a small hand-written loop over [`lexopt`] instead of
//! clap, which would be a sixth of its size. Both accept the same command lines.

#[cfg(feature = "tools")]
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "tools")]
use clap::{Parser, Subcommand};

use crate::cmd;
use crate::exit;
use crate::host::Host;

/// Hands PCI devices to vfio-pci safely at boot, and tells the truth about a machine's
/// IOMMU setup afterwards.
#[cfg(feature = "tools")]
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
#[cfg(feature = "tools")]
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
    /// Decide what an initramfs image gets, for the dracut, mkinitcpio and
    /// initramfs-tools hooks.
    #[cfg(feature = "tools")]
    Initramfs(cmd::initramfs::Args),
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
#[cfg(feature = "tools")]
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
    let root = host
        .check_root()
        .map_err(|e| exit::Error::Usage(format!("--root {}: {e}", cli.root.display())));
    let (name, outcome) = match &cli.command {
        Command::Bind(a) => ("bind", root.and_then(|()| cmd::bind::run(a, &host))),
        Command::Check(a) => ("check", root.and_then(|()| cmd::check::run(a, &host))),
        Command::Groups(a) => ("groups", root.and_then(|()| cmd::groups::run(a, &host))),
        Command::CheckKconfig(a) => (
            "check-kconfig",
            root.and_then(|()| cmd::kconfig::run(a, &host)),
        ),
        Command::Modules(a) => ("modules", root.and_then(|()| cmd::modules::run(a, &host))),
        Command::Initramfs(a) => (
            "initramfs",
            root.and_then(|()| cmd::initramfs::run(a, &host)),
        ),
        Command::Apply(a) => ("apply", root.and_then(|()| cmd::apply::run(a, &host))),
        Command::Config(a) => ("config", root.and_then(|()| cmd::config::run(a, &host))),
        Command::Detach(a) => (
            "detach",
            root.and_then(|()| cmd::detach::run_detach(a, &host)),
        ),
        Command::Reattach(a) => (
            "reattach",
            root.and_then(|()| cmd::detach::run_reattach(a, &host)),
        ),
        Command::Hook(a) => ("hook", root.and_then(|()| cmd::hook::run(a, &host))),
    };
    exit::finish(name, outcome)
}

/// Parses the boot agent's arguments (`[--root DIR] bind [--config FILE] [--dry-run]
/// [--json] [--strict] [--once] [-v...]`) and runs `bind`; usage errors exit 2, as with clap.
#[cfg(not(feature = "tools"))]
pub fn main() -> ExitCode {
    match boot::parse(lexopt::Parser::from_env()) {
        Ok(boot::Parsed::Run(root, args)) => {
            exit::finish("bind", cmd::bind::run(&args, &Host::new(root)))
        }
        Ok(boot::Parsed::Said) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfio-early: error: {e}\n\n{}", boot::USAGE);
            ExitCode::from(2)
        }
    }
}

/// The boot agent's command line (compiled in both builds, so its tests run with the
/// full tool's; only the boot build's `main` uses it).
pub mod boot {
    use std::path::PathBuf;

    use crate::cmd::bind::Args;

    /// The boot agent's `--help`.
    pub const USAGE: &str = "\
Usage: vfio-early [--root DIR] bind [--config FILE] [--dry-run [--json]] [--strict] [--once] [-v...]

The boot agent: binds the configured devices to vfio-pci (run from the initramfs).
The other subcommands are in the full tool.";

    /// What the command line asks for.
    #[derive(Debug)]
    pub enum Parsed {
        /// Run `bind` on this root.
        Run(PathBuf, Args),
        /// `--help` or `--version` was answered.
        Said,
    }

    /// Reads the command line; `Err` is a usage error.
    pub fn parse(mut p: lexopt::Parser) -> Result<Parsed, lexopt::Error> {
        use lexopt::Arg::{Long, Short, Value};
        let mut root = PathBuf::from("/");
        let mut args = Args::default();
        let mut bind = false;
        while let Some(arg) = p.next()? {
            match arg {
                Long("root") => root = p.value()?.into(),
                Long("config") if bind => args.config = Some(p.value()?.into()),
                Long("dry-run") if bind => args.dry_run = true,
                Long("json") if bind => args.json = true,
                Long("strict") if bind => args.strict = true,
                Long("once") if bind => args.once = true,
                Short('v') | Long("verbose") if bind => {
                    args.verbose = args.verbose.saturating_add(1);
                }
                Short('h') | Long("help") => {
                    println!("{USAGE}");
                    return Ok(Parsed::Said);
                }
                Short('V') | Long("version") => {
                    println!("vfio-early {}", env!("CARGO_PKG_VERSION"));
                    return Ok(Parsed::Said);
                }
                Value(v) if !bind && v == "bind" => bind = true,
                other => return Err(other.unexpected()),
            }
        }
        if !bind {
            return Err("this boot build has one subcommand, bind".into());
        }
        if args.json && !args.dry_run {
            return Err("--json needs --dry-run".into());
        }
        Ok(Parsed::Run(root, args))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn run(args: &[&str]) -> Result<Parsed, lexopt::Error> {
            parse(lexopt::Parser::from_args(args.iter().copied()))
        }

        #[test]
        fn takes_what_the_full_tool_takes() {
            let Ok(Parsed::Run(root, a)) = run(&[
                "bind",
                "--root=/r",
                "--dry-run",
                "--json",
                "-vv",
                "--config",
                "c.toml",
            ]) else {
                panic!("not parsed");
            };
            assert_eq!(root, PathBuf::from("/r"));
            assert!(a.dry_run && a.json && !a.strict);
            assert_eq!((a.verbose, a.config), (2, Some(PathBuf::from("c.toml"))));
            let Ok(Parsed::Run(root, a)) = run(&["--root", "/x", "bind", "--strict"]) else {
                panic!("not parsed");
            };
            assert_eq!(root, PathBuf::from("/x"));
            assert!(a.strict && !a.dry_run);
            assert!(matches!(run(&["--version"]), Ok(Parsed::Said)));
        }

        #[test]
        fn refuses_what_it_does_not_know() {
            for bad in [
                &[][..],
                &["groups"],
                &["bind", "--json"],
                &["bind", "--frobnicate"],
                &["--dry-run", "bind"],
                &["bind", "extra"],
                &["bind", "--config"],
            ] {
                assert!(run(bad).is_err(), "{bad:?}");
            }
        }
    }
}
