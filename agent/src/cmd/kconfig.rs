//! `vfio-early check-kconfig`: does a kernel configuration support passthrough?
//!
//! The thin glue around the `kernel-config` crate: find the config (PATH, or the
//! running kernel's, resolved under the host root), read it (plain or gzip), pick the
//! CPU vendor, check, print.
//!
//! Default sources, first found wins (`RELEASE` is `--kver`, else the running
//! kernel's `proc/sys/kernel/osrelease`): `proc/config.gz`, `boot/config-RELEASE`,
//! `usr/src/linux-RELEASE/.config`, `usr/src/linux/.config`. `/proc/config.gz` only
//! describes the running kernel, so with `--kver` naming another release it is skipped.
//!
//! Exit status: 0 when nothing required fails (warnings allowed), 1 when something
//! does, 2 for usage or I/O errors; the same with `--json` and `--fragment` (so
//! `check-kconfig --fragment > fix.config || merge_config.sh ...` reads naturally).
//! A closed stdout (`| head`) is not an error.

use std::io::{self, Write};
use std::path::PathBuf;

use kernel_config::{Cpu, KernelVersion, Options};

use crate::exit::{Error, Exit, Outcome};
use crate::host::{open_regular, Host, HostError, READ_MAX};

/// Why `check-kconfig` could not check (2).
#[derive(Debug, thiserror::Error)]
pub enum KconfigError {
    /// `--kver` (or the running release) cannot name a file.
    #[error("{0:?} is not a kernel release")]
    BadRelease(String),
    /// None of the default places has a config.
    #[error(
        "no kernel config found (tried {}){}. Give the path, or build the kernel with \
         CONFIG_IKCONFIG_PROC=y for /proc/config.gz",
        .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        if *.release_known { "" } else { "; the running kernel's release is unreadable, give --kver" }
    )]
    NotFound {
        /// The places looked at.
        tried: Vec<PathBuf>,
        /// Whether a release was known to look for.
        release_known: bool,
    },
    /// The file cannot be opened (a special file is refused unopened).
    #[error(transparent)]
    Open(HostError),
    /// The file is not a kernel config.
    #[error("{shown}")]
    Parse {
        /// The file, as shown.
        shown: String,
        /// What is wrong.
        #[source]
        error: kernel_config::Error,
    },
    /// The report could not be written.
    #[error("writing the report: {0}")]
    Write(#[source] io::Error),
}

impl From<KconfigError> for Error {
    fn from(e: KconfigError) -> Self {
        Self::typed(Exit::Usage, e)
    }
}

/// The CPU vendor the checks assume.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuArg {
    /// Either vendor: one vendor's IOMMU and KVM module suffice, the other's absence
    /// is a warning.
    #[default]
    Any,
    /// An Intel host.
    Intel,
    /// An AMD host.
    Amd,
    /// This host's vendor, from its ACPI tables (DMAR: Intel, IVRS: AMD).
    Auto,
}

/// Options of `vfio-early check-kconfig`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kernel config to check, plain or gzip. Default: the first of
    /// /proc/config.gz, /boot/config-RELEASE, /usr/src/linux-RELEASE/.config,
    /// /usr/src/linux/.config (under --root; RELEASE is --kver or the running kernel's).
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Kernel release whose config to look for (default: the running kernel's); also
    /// the version assumed when the file's header has none.
    #[arg(long, value_name = "RELEASE")]
    pub kver: Option<String>,
    /// CPU vendor to check for.
    #[arg(long, value_enum, default_value_t = CpuArg::Any)]
    pub cpu: CpuArg,
    /// Print the report as JSON.
    #[arg(long, conflicts_with = "fragment")]
    pub json: bool,
    /// Print a config fragment that fixes every failure (for
    /// scripts/kconfig/merge_config.sh).
    #[arg(long)]
    pub fragment: bool,
}

/// Where the config came from, opened: it is read line by line, never held whole.
#[derive(Debug)]
struct Source {
    shown: String,
    file: std::fs::File,
}

/// Runs `vfio-early check-kconfig`.
///
/// # Errors
/// No config found, or unreadable, or the report could not be written (2).
pub fn run(args: &Args, host: &Host) -> Outcome {
    let source = find_source(args, host)?;
    let config =
        kernel_config::read_for_check(&source.file).map_err(|error| KconfigError::Parse {
            shown: source.shown.clone(),
            error,
        })?;
    let kver = args.kver.as_deref().and_then(KernelVersion::from_release);
    let cpu = resolve_cpu(args.cpu, host);
    if args.cpu == CpuArg::Auto && cpu == Cpu::Any {
        eprintln!(
            "vfio-early: check-kconfig: --cpu auto: not exactly one of the ACPI tables DMAR (Intel) and IVRS (AMD) under {}, and no vendor_id in {}; checking for either vendor",
            host.path("sys/firmware/acpi/tables").display(),
            host.path("proc/cpuinfo").display()
        );
    }
    let options = Options { cpu, kver };
    let report = kernel_config::check(&config, &options).with_source(source.shown);
    let text = if args.json {
        let mut j = report.to_json();
        j.push('\n');
        j
    } else if args.fragment {
        report.fragment()
    } else {
        report.render_human(crate::report::stdout_colour())
    };
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(KconfigError::Write(e).into()),
    }
    Ok(Exit::problem_if(report.verdict().exit_code() != 0))
}

/// The vendor to check for; `auto` reads the host's ACPI tables.
pub(crate) fn resolve_cpu(cpu: CpuArg, host: &Host) -> Cpu {
    match cpu {
        CpuArg::Any => Cpu::Any,
        CpuArg::Intel => Cpu::Intel,
        CpuArg::Amd => Cpu::Amd,
        CpuArg::Auto => match Cpu::from_acpi(
            host.exists("sys/firmware/acpi/tables/DMAR"),
            host.exists("sys/firmware/acpi/tables/IVRS"),
        ) {
            // No IOMMU table to go by (a virtual machine, the IOMMU off in the
            // firmware): the CPU's own vendor, which also picks the KVM module.
            Cpu::Any => cpuinfo_vendor(&host.read("proc/cpuinfo").unwrap_or_default()),
            known => known,
        },
    }
}

/// The vendor of `/proc/cpuinfo`'s `vendor_id` lines, when they all agree.
fn cpuinfo_vendor(cpuinfo: &str) -> Cpu {
    let mut vendor = Cpu::Any;
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.trim() != "vendor_id" {
            continue;
        }
        let this = match value.trim() {
            "GenuineIntel" => Cpu::Intel,
            "AuthenticAMD" | "HygonGenuine" => Cpu::Amd,
            _ => return Cpu::Any,
        };
        if vendor != Cpu::Any && vendor != this {
            return Cpu::Any;
        }
        vendor = this;
    }
    vendor
}

/// The default places, in order, relative to the host root. `running` is false when
/// the release asked for is not the running kernel's (then `proc/config.gz`, which
/// describes the running kernel, is left out).
pub(crate) fn default_candidates(release: Option<&str>, running: bool) -> Vec<String> {
    let mut c = Vec::new();
    if running {
        c.push("proc/config.gz".to_owned());
    }
    if let Some(r) = release {
        c.push(format!("boot/config-{r}"));
        c.push(format!("usr/src/linux-{r}/.config"));
    }
    c.push("usr/src/linux/.config".to_owned());
    c
}

fn find_source(args: &Args, host: &Host) -> Result<Source, KconfigError> {
    if let Some(path) = &args.path {
        // A path the user typed: relative to the working directory, not the root.
        // Through the bounded opener: a FIFO or device is refused without being opened,
        // a file over 64 MiB from its size (the parser bounds what it reads, too).
        let file = open_regular(path, READ_MAX).map_err(KconfigError::Open)?;
        return Ok(Source {
            shown: path.display().to_string(),
            file,
        });
    }
    let running_release = host.kernel_release();
    let running = args.kver.is_none() || args.kver == running_release;
    let release = args.kver.clone().or(running_release);
    if let Some(r) = &release {
        if r.contains('/') || r.is_empty() || r == "." || r == ".." {
            return Err(KconfigError::BadRelease(r.clone()));
        }
    }
    let candidates = default_candidates(release.as_deref(), running);
    for rel in &candidates {
        if !host.exists(rel) {
            continue;
        }
        // The same bounded opener as a typed path: a FIFO planted at
        // /boot/config-RELEASE is refused unopened.
        let path = host.path(rel);
        let file = open_regular(&path, READ_MAX).map_err(KconfigError::Open)?;
        return Ok(Source {
            shown: path.display().to_string(),
            file,
        });
    }
    Err(KconfigError::NotFound {
        tried: candidates.iter().map(|c| host.path(c)).collect(),
        release_known: release.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_usual_order() {
        assert_eq!(
            default_candidates(Some("6.1.0-13-amd64"), true),
            [
                "proc/config.gz",
                "boot/config-6.1.0-13-amd64",
                "usr/src/linux-6.1.0-13-amd64/.config",
                "usr/src/linux/.config"
            ]
        );
        // Another release than the running one: /proc/config.gz would describe the wrong kernel.
        assert_eq!(
            default_candidates(Some("6.9.0"), false)[0],
            "boot/config-6.9.0"
        );
        assert_eq!(
            default_candidates(None, true),
            ["proc/config.gz", "usr/src/linux/.config"]
        );
    }

    #[test]
    fn auto_cpu_reads_acpi_tables_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        assert_eq!(resolve_cpu(CpuArg::Auto, &host), Cpu::Any);
        std::fs::create_dir_all(dir.path().join("sys/firmware/acpi/tables")).unwrap();
        std::fs::write(dir.path().join("sys/firmware/acpi/tables/IVRS"), b"IVRS").unwrap();
        assert_eq!(resolve_cpu(CpuArg::Auto, &host), Cpu::Amd);
        std::fs::write(dir.path().join("sys/firmware/acpi/tables/DMAR"), b"DMAR").unwrap();
        assert_eq!(resolve_cpu(CpuArg::Auto, &host), Cpu::Any);
        assert_eq!(resolve_cpu(CpuArg::Intel, &host), Cpu::Intel);
        // Without a single IOMMU table, the CPU's vendor_id decides.
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/cpuinfo"),
            "processor\t: 0\nvendor_id\t: GenuineIntel\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n",
        )
        .unwrap();
        assert_eq!(resolve_cpu(CpuArg::Auto, &host), Cpu::Intel);
        std::fs::remove_file(dir.path().join("sys/firmware/acpi/tables/DMAR")).unwrap();
        assert_eq!(
            resolve_cpu(CpuArg::Auto, &host),
            Cpu::Amd,
            "IVRS wins over cpuinfo"
        );
        assert_eq!(cpuinfo_vendor("vendor_id : AuthenticAMD\n"), Cpu::Amd);
        assert_eq!(
            cpuinfo_vendor("vendor_id : GenuineIntel\nvendor_id : AuthenticAMD\n"),
            Cpu::Any
        );
        assert_eq!(cpuinfo_vendor(""), Cpu::Any);
    }

    #[test]
    fn sources_resolve_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let args = |kver: Option<&str>| Args {
            path: None,
            kver: kver.map(str::to_owned),
            cpu: CpuArg::Any,
            json: false,
            fragment: false,
        };
        let err = find_source(&args(None), &host).unwrap_err().to_string();
        assert!(err.contains("give --kver"), "{err}");
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(dir.path().join("proc/sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        std::fs::create_dir_all(dir.path().join("boot")).unwrap();
        std::fs::write(dir.path().join("boot/config-6.1.0-test"), "CONFIG_VFIO=m\n").unwrap();
        let s = find_source(&args(None), &host).unwrap();
        assert!(s.shown.ends_with("boot/config-6.1.0-test"), "{}", s.shown);
        std::fs::write(dir.path().join("proc/config.gz"), "CONFIG_VFIO=y\n").unwrap();
        let s = find_source(&args(None), &host).unwrap();
        assert!(s.shown.ends_with("proc/config.gz"), "{}", s.shown);
        // --kver looks for that release, never the running kernel's /proc/config.gz.
        let err = find_source(&args(Some("6.9.0")), &host)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("boot/config-6.9.0")
                && !err.contains(&host.path("proc/config.gz").display().to_string()),
            "{err}"
        );
        // --kver naming the running release still takes /proc/config.gz.
        let s = find_source(&args(Some("6.1.0-test")), &host).unwrap();
        assert!(s.shown.ends_with("proc/config.gz"), "{}", s.shown);
        assert!(find_source(&args(Some("../../etc")), &host).is_err());
        // A FIFO where the config would be is refused, never opened (no hang).
        std::fs::remove_file(dir.path().join("proc/config.gz")).unwrap();
        std::fs::remove_file(dir.path().join("boot/config-6.1.0-test")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("boot/config-6.1.0-test"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let err = find_source(&args(None), &host).unwrap_err();
        assert!(
            matches!(err, KconfigError::Open(HostError::Special { .. })),
            "{err}"
        );
    }
}
