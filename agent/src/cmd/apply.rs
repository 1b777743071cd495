//! `vfio-early apply [--dry-run]`: check the config against this machine, then rebuild
//! the initramfs with the generator this system uses.
//!
//! The initramfs carries its own copy of `/etc/vfio-early.toml` (and the modprobe.d
//! backstop derived from it), so a config change does nothing until the image is
//! rebuilt: the step users forget most. `apply`:
//! 1. parses the config and plans it on this machine exactly as the boot does
//!    ([`read_topology`] + [`plan::plan`]); a config error (exit 2) or a refusal
//!    (exit 1, unless `--force`) stops it before anything is rebuilt;
//! 2. finds the generator from what is installed under the root: dracut
//!    (`dracut-functions.sh`), mkinitcpio (`initcpio/functions`), initramfs-tools
//!    (`hook-functions`), each with its command; of several installed, the only one
//!    configured in `/etc` (mkinitcpio presets, `initramfs-tools/initramfs.conf`,
//!    `dracut.conf[.d]`), else `--generator` decides;
//! 3. checks that the vfio-early integration for that generator is installed (and, for
//!    mkinitcpio, listed in `HOOKS`), since otherwise the image would not carry it;
//! 4. rebuilds for every installed kernel (or `--kver`), saying which:
//!    `dracut --force --kver K` per kernel, `mkinitcpio -P` (or `-p PRESET` for one
//!    kernel), `update-initramfs -u -k all` (or `-k K`).
//!
//! `--dry-run` shows the commands and runs nothing; so does any root other than `/`.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use crate::cmdline::Cmdline;
use crate::config::{self, Config, ConfigError};
use crate::exit::{Error, Exit, Outcome};
pub use crate::generator::{detect, DetectError, Generator};
use crate::host::Host;
use crate::machine::{self, mkinitcpio_hooks_of, read_topology, Judged};
use crate::plan::{Action, Plan};

/// `println!` that ignores a closed stdout (`apply | head` is no error).
macro_rules! say {
    ($($t:tt)*) => {
        crate::report::print_stdout(&format!("{}\n", format_args!($($t)*)))
    };
}

/// Options of `vfio-early apply`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Args {
    /// Show what would be rebuilt, and how; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this kernel (default: every kernel under /lib/modules).
    #[arg(long, value_name = "VERSION")]
    pub kver: Option<String>,
    /// The initramfs generator, when several are installed.
    #[arg(long, value_enum)]
    pub generator: Option<Generator>,
    /// Rebuild even when the planner refuses something on this machine as it stands.
    #[arg(long)]
    pub force: bool,
}

/// Kernels installed under `lib/modules` (those with `modules.dep` or
/// `modules.alias`), sorted.
pub fn kernels(host: &Host) -> Vec<String> {
    let mut out: Vec<String> = ["lib/modules", "usr/lib/modules"]
        .iter()
        .flat_map(|dir| {
            host.list(dir).into_iter().filter(move |k| {
                host.exists(format!("{dir}/{k}/modules.dep"))
                    || host.exists(format!("{dir}/{k}/modules.alias"))
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What stands in the way of an image that carries vfio-early (missing integration,
/// a hook not listed, the binary not where the hooks take it from).
pub fn integration_problems(host: &Host, generator: Generator) -> Vec<String> {
    let mut out = Vec::new();
    if !host.exists("usr/bin/vfio-early") {
        out.push(
            "/usr/bin/vfio-early is missing: the hooks copy the binary from there (make install PREFIX=/usr)".to_owned(),
        );
    }
    for alternatives in generator.integration() {
        if !alternatives.iter().any(|p| host.exists(p)) {
            out.push(format!(
                "/{} is missing: the {} integration is not installed (make install PREFIX=/usr)",
                alternatives[0],
                generator.name()
            ));
        }
    }
    if generator == Generator::Mkinitcpio {
        match mkinitcpio_hooks_of(host).map(|(_, h)| h) {
            Some(h) if h.iter().any(|w| w == "vfio-early") => {}
            Some(_) => out.push(
                "vfio-early is not in HOOKS in /etc/mkinitcpio.conf: add it after 'base' and 'systemd', before 'udev', 'kms' and 'modconf'"
                    .to_owned(),
            ),
            None => out.push("no HOOKS=(...) found in /etc/mkinitcpio.conf".to_owned()),
        }
    }
    out
}

/// The commands that rebuild the images of `kernels` (all installed when `one` is
/// `None`).
pub fn commands(
    host: &Host,
    generator: Generator,
    kernels: &[String],
    one: Option<&str>,
) -> Vec<Vec<String>> {
    let cmd = |words: &[&str]| {
        words
            .iter()
            .map(|w| (*w).to_owned())
            .collect::<Vec<String>>()
    };
    match (generator, one) {
        (Generator::Dracut, Some(k)) => vec![cmd(&["dracut", "--force", "--kver", k])],
        (Generator::Dracut, None) => kernels
            .iter()
            .map(|k| cmd(&["dracut", "--force", "--kver", k]))
            .collect(),
        (Generator::Mkinitcpio, None) => vec![cmd(&["mkinitcpio", "-P"])],
        (Generator::Mkinitcpio, Some(k)) => {
            // Arch kernels name their preset in pkgbase; otherwise build by version.
            let pkgbase = ["usr/lib/modules", "lib/modules"]
                .iter()
                .find_map(|d| host.read_attr(format!("{d}/{k}/pkgbase")));
            match pkgbase {
                Some(p) if host.exists(format!("etc/mkinitcpio.d/{p}.preset")) => {
                    vec![cmd(&["mkinitcpio", "-p", &p])]
                }
                _ => vec![cmd(&[
                    "mkinitcpio",
                    "-k",
                    k,
                    "-g",
                    &format!("/boot/initramfs-{k}.img"),
                ])],
            }
        }
        (Generator::InitramfsTools, one) => {
            vec![cmd(&["update-initramfs", "-u", "-k", one.unwrap_or("all")])]
        }
    }
}

/// A config that does not plan cleanly on this machine: the refusals, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unclean {
    /// The config.
    pub path: PathBuf,
    /// `ADDRESS: reason`, plan warnings, `hugepages SIZE: notes`.
    pub problems: Vec<String>,
}

impl fmt::Display for Unclean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not plan cleanly on this machine:",
            self.path.display()
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Why `apply` did not rebuild the initramfs.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The config cannot be read or parsed (2).
    #[error("{0}; the initramfs was not rebuilt")]
    Config(#[source] ConfigError),
    /// The planner refuses something (1).
    #[error("{0}\nthe initramfs was not rebuilt (fix the config, or --force to rebuild anyway)")]
    Unclean(Unclean),
    /// The plan is clean, but the boot would not follow it (the traps' warnings) (1).
    #[error(
        "{0}, but the boot would not do what the plan says (the warnings above): the \
         initramfs was not rebuilt (fix them, or --force to rebuild anyway)"
    )]
    BootDiffers(String),
    /// No generator could be picked (1; 2 when several need `--generator`).
    #[error(transparent)]
    Generator(DetectError),
    /// `--kver` names no installed kernel (2).
    #[error("--kver {kver}: no such kernel under /lib/modules (installed: {})", List(.installed))]
    NoSuchKernel {
        /// The version asked for.
        kver: String,
        /// The installed ones.
        installed: Vec<String>,
    },
    /// There is nothing to rebuild (1).
    #[error("no kernel under /lib/modules: nothing to rebuild")]
    NoKernel,
    /// The generator's vfio-early integration is missing (1).
    #[error("the image would not carry vfio-early{}", if *.rebuilding { ": not rebuilt" } else { "" })]
    NotCarried {
        /// A real run (not a dry one) was refused.
        rebuilding: bool,
    },
    /// Rebuilding needs root (1).
    #[error("rebuilding the initramfs needs root: sudo vfio-early apply")]
    NeedsRoot,
    /// The generator could not be started (1).
    #[error("/{program}: {error}")]
    Spawn {
        /// The generator's program, under the root.
        program: String,
        /// Why.
        error: std::io::Error,
    },
    /// The generator failed (1).
    #[error(
        "`{command}` failed ({status}); the old image is still in place for the kernels \
         not yet rebuilt"
    )]
    Rebuild {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
    },
}

impl ApplyError {
    /// The exit this error stands for.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Config(_)
            | Self::NoSuchKernel { .. }
            | Self::Generator(DetectError::Several(_)) => Exit::Usage,
            _ => Exit::Problem,
        }
    }
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Self {
        Self::typed(e.exit(), e)
    }
}

/// `a, b`, or `none`.
struct List<'a>(&'a [String]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.0.join(", "))
        }
    }
}

/// Why a config does not validate.
#[derive(Debug)]
pub(crate) enum Invalid {
    /// It cannot be read or parsed.
    Config(ConfigError),
    /// The planner refuses something on this machine.
    Unclean(Unclean),
}

/// The planner's verdict on the config, as the boot would reach it, with the traps
/// of this machine: `Ok` with the judgement and a summary.
///
/// # Errors
/// A config error, or the refusals when the planner refuses something (or a hugepage
/// request cannot be planned).
pub(crate) fn validate(host: &Host) -> Result<(Judged, String), Invalid> {
    let path = host.path(config::DEFAULT_PATH);
    let topo = read_topology(host);
    if !path.exists() {
        let judged = machine::judge(host, &topo, &[]);
        return Ok((
            judged,
            format!(
                "no config at {}: the rebuilt image will carry none, and the boot binds nothing",
                path.display()
            ),
        ));
    }
    let config = Config::load(&path).map_err(Invalid::Config)?;
    let judged = machine::judge(host, &topo, &config.devices);
    let cmdline = Cmdline::parse(&host.read("proc/cmdline").unwrap_or_default());
    let hugepages = crate::hugepages::plan_host(host, &config, &cmdline);
    let mut problems = refusals(&judged.plan);
    for h in hugepages
        .refused()
        .map(crate::hugepages::Reservation::record)
    {
        problems.push(format!("hugepages {}: {}", h.size, h.notes.join("; ")));
    }
    if !problems.is_empty() {
        return Err(Invalid::Unclean(Unclean { path, problems }));
    }
    let summary = summary(
        &path.display().to_string(),
        &judged.plan,
        hugepages.reservations.len(),
    );
    Ok((judged, summary))
}

fn refusals(plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = plan
        .with_action(Action::Refuse)
        .flat_map(|d| d.reasons.iter().map(move |r| format!("{}: {r}", d.address)))
        .collect();
    out.extend(plan.warnings.iter().cloned());
    out
}

fn summary(path: &str, plan: &Plan, hugepages: usize) -> String {
    let bind: Vec<String> = plan
        .devices
        .iter()
        .filter(|d| d.selected && matches!(d.action, Action::Bind | Action::AlreadyBound))
        .map(|d| match d.iommu_group {
            Some(g) => format!("{} (group {g})", d.address),
            None => d.address.to_string(),
        })
        .collect();
    let mut s = if bind.is_empty() {
        format!("{path} selects no device")
    } else {
        format!("{path} plans cleanly: vfio-pci gets {}", bind.join(", "))
    };
    if hugepages > 0 {
        s.push_str(&format!("; {hugepages} hugepage reservation(s)"));
    }
    s
}

/// Runs `vfio-early apply`.
///
/// # Errors
/// See [`crate::exit`]: a refusal or a failed rebuild (1), a config or usage error (2).
pub fn run(args: &Args, host: &Host) -> Outcome {
    apply(args, host).map(|()| Exit::Ok).map_err(Error::from)
}

/// Prints the traps' warnings first, on stderr, as every view words them.
fn show_warnings(judged: &Judged) {
    for t in &judged.traps {
        eprintln!("warning: {}", t.warning());
    }
}

fn apply(args: &Args, host: &Host) -> Result<(), ApplyError> {
    match validate(host) {
        Ok((judged, s)) => {
            show_warnings(&judged);
            if judged.boot_differs() && !args.force {
                return Err(ApplyError::BootDiffers(s));
            }
            say!("{s}");
            if judged.boot_differs() {
                eprintln!("vfio-early: apply: --force: rebuilding although the boot would differ from the plan");
            }
        }
        Err(Invalid::Unclean(u)) if args.force => {
            eprintln!("vfio-early: apply: {u}\nvfio-early: apply: --force: rebuilding anyway");
        }
        Err(Invalid::Unclean(u)) => return Err(ApplyError::Unclean(u)),
        Err(Invalid::Config(e)) => return Err(ApplyError::Config(e)),
    }
    let (generator, program) = detect(host, args.generator).map_err(ApplyError::Generator)?;
    let installed = kernels(host);
    if let Some(k) = &args.kver {
        if !installed.contains(k) {
            return Err(ApplyError::NoSuchKernel {
                kver: k.clone(),
                installed,
            });
        }
    } else if installed.is_empty() {
        return Err(ApplyError::NoKernel);
    }
    let running = host.kernel_release();
    let targets: Vec<String> = args
        .kver
        .as_ref()
        .map_or_else(|| installed.clone(), |k| vec![k.clone()]);
    let shown: Vec<String> = targets
        .iter()
        .map(|k| {
            if Some(k) == running.as_ref() {
                format!("{k} (running)")
            } else {
                k.clone()
            }
        })
        .collect();
    say!(
        "initramfs generator: {} (/{program}); kernels: {}",
        generator.name(),
        shown.join(", ")
    );

    let problems = integration_problems(host, generator);
    for p in &problems {
        eprintln!("vfio-early: {p}");
    }
    let cmds = commands(host, generator, &installed, args.kver.as_deref());
    let show = |prefix: &str| {
        for c in &cmds {
            say!("{prefix}{}", c.join(" "));
        }
    };
    let not_carried = || ApplyError::NotCarried { rebuilding: false };
    if !host.is_live() {
        show("would run: ");
        say!(
            "(the root is {}, not /: nothing is run)",
            host.root().display()
        );
        return if problems.is_empty() {
            Ok(())
        } else {
            Err(not_carried())
        };
    }
    if args.dry_run {
        show("would run: ");
        return if problems.is_empty() {
            Ok(())
        } else {
            Err(not_carried())
        };
    }
    if !problems.is_empty() {
        return Err(ApplyError::NotCarried { rebuilding: true });
    }
    if effective_uid(host) != Some(0) {
        show("needs root: ");
        return Err(ApplyError::NeedsRoot);
    }
    for c in &cmds {
        say!("running: {}", c.join(" "));
        let status = Command::new(host.path(&program))
            .args(&c[1..])
            .status()
            .map_err(|error| ApplyError::Spawn {
                program: program.clone(),
                error,
            })?;
        if !status.success() {
            return Err(ApplyError::Rebuild {
                command: c.join(" "),
                status,
            });
        }
    }
    say!(
        "rebuilt the initramfs for {}; reboot, then `vfio-early check` shows what the boot did",
        targets.join(", ")
    );
    Ok(())
}

/// The effective uid of this process, from `proc/self/status` (`Uid: real effective ...`).
fn effective_uid(host: &Host) -> Option<u32> {
    let status = host.read("proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}
