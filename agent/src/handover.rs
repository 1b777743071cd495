//! Single-GPU hosts: what holds a display card, released before a detach and restored
//! after a reattach, on explicit `[handover]` configuration only (nothing is guessed).
//!
//! Release order (each step bounded, each recorded as a [`Step`] as it succeeds):
//! 1. the named systemd units are stopped (the display manager, `nvidia-persistenced`);
//! 2. when the boot display goes, the framebuffer consoles are unbound
//!    (`/sys/class/vtconsole/vtconN/bind` = 0 for each console whose name says "frame
//!    buffer");
//! 3. the firmware framebuffer device (`efi-framebuffer.N`, `simple-framebuffer.N`,
//!    `vesa-framebuffer.N`: efifb, simplefb, simpledrm) is unbound from its platform
//!    driver, when `/proc/iomem` puts it over a BAR of the card;
//! 4. the named modules are unloaded, in the order given.
//!
//! Restore is the reverse: modules loaded back (before the card is given back, so its
//! driver is there to take it), then framebuffer, consoles, units (after).
//!
//! Before anything, [`drm_holders`] looks for processes holding the card's DRM nodes
//! (`/proc/*/fd` -> `/dev/dri/cardN`, `renderDN`): a detach under them is refused,
//! naming them, unless `--force`.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::HandoverSettings;
use crate::host::{Host, HostError};
use crate::iomem;
use crate::pci::PciAddress;

/// One release step that was done, so that it can be undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// A systemd unit was stopped.
    Unit {
        /// The unit.
        name: String,
    },
    /// `vtconN` was unbound.
    Vtconsole {
        /// N.
        index: u32,
    },
    /// A platform framebuffer device was unbound from its driver.
    Framebuffer {
        /// The platform device (`efi-framebuffer.0`).
        device: String,
        /// Its driver (`efi-framebuffer`, `simple-framebuffer`).
        driver: String,
    },
    /// A module was unloaded.
    Module {
        /// The module.
        name: String,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unit { name } => write!(f, "unit {name}"),
            Self::Vtconsole { index } => write!(f, "console vtcon{index}"),
            Self::Framebuffer { device, driver } => write!(f, "framebuffer {device} ({driver})"),
            Self::Module { name } => write!(f, "module {name}"),
        }
    }
}

/// A process holding a DRM node of the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    /// Process id.
    pub pid: u32,
    /// Its `comm`.
    pub name: String,
    /// The node (`/dev/dri/card0`).
    pub node: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {}) holds {}", self.name, self.pid, self.node)
    }
}

/// The processes that hold a DRM node (`card*`, `renderD*`) of any of `cards` open.
pub(crate) fn drm_holders(host: &Host, cards: &[PciAddress]) -> Vec<Holder> {
    let nodes: Vec<String> = cards
        .iter()
        .flat_map(|a| host.list(a.attr("drm")))
        .filter(|n| n.starts_with("card") || n.starts_with("renderD"))
        .map(|n| format!("/dev/dri/{n}"))
        .collect();
    if nodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for pid in host.list("proc") {
        let Ok(num) = pid.parse::<u32>() else {
            continue;
        };
        for fd in host.list(format!("proc/{pid}/fd")) {
            let Ok(target) = std::fs::read_link(host.path(format!("proc/{pid}/fd/{fd}"))) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(node) = nodes.iter().find(|n| **n == target) {
                if !out.iter().any(|h: &Holder| h.pid == num && &h.node == node) {
                    out.push(Holder {
                        pid: num,
                        name: host
                            .read_attr(format!("proc/{pid}/comm"))
                            .unwrap_or_else(|| "?".to_owned()),
                        node: node.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Why a host tool run by the handover did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A fixture root: nothing is run.
    #[error(transparent)]
    NotLive(HostError),
    /// It could not be started, or waited for.
    #[error("{what}: {error}")]
    Io {
        /// The command line.
        what: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// It ran and failed.
    #[error("{what}: {status}")]
    Status {
        /// The command line.
        what: String,
        /// Its exit status.
        status: ExitStatus,
    },
    /// It did not finish in time, and was killed.
    #[error("{what}: no answer after {} ms (killed)", .timeout.as_millis())]
    Timeout {
        /// The command line.
        what: String,
        /// The bound.
        timeout: Duration,
    },
}

/// The release step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Stopping a unit or removing a module.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Unbinding a framebuffer console.
    #[error("unbinding console vtcon{index}: {error}")]
    Console {
        /// The console's index.
        index: u32,
        /// The write's error.
        error: HostError,
    },
    /// Unbinding the platform framebuffer over the card.
    #[error("releasing the framebuffer {device}: {error}")]
    Framebuffer {
        /// The platform device.
        device: String,
        /// The write's error.
        error: HostError,
    },
}

/// Releases what holds the display cards `cards`, as configured. Returns the steps
/// done (in order) and, when a step failed, why (the steps done stay recorded, so the
/// caller restores them).
pub fn release(
    host: &Host,
    settings: &HandoverSettings,
    cards: &[PciAddress],
) -> (Vec<Step>, Option<ReleaseError>) {
    let mut done = Vec::new();
    let t = settings.timeout();
    let result = (|| -> Result<(), ReleaseError> {
        for u in &settings.units {
            if unit_active(host, u, t)? {
                run_bounded(host, "systemctl", &["stop", u], t)?;
                done.push(Step::Unit { name: u.clone() });
            }
        }
        if settings.consoles {
            for (index, name) in vtconsoles(host) {
                let bind = format!("sys/class/vtconsole/vtcon{index}/bind");
                if name.contains("frame buffer") && host.read_attr(&bind).as_deref() == Some("1") {
                    host.write_bounded(&bind, "0", t)
                        .map_err(|error| ReleaseError::Console { index, error })?;
                    done.push(Step::Vtconsole { index });
                }
            }
        }
        if settings.framebuffer {
            for (device, driver) in framebuffers_over(host, cards) {
                host.write_bounded(
                    format!("sys/bus/platform/drivers/{driver}/unbind"),
                    &device,
                    t,
                )
                .map_err(|error| ReleaseError::Framebuffer {
                    device: device.clone(),
                    error,
                })?;
                done.push(Step::Framebuffer { device, driver });
            }
        }
        for m in &settings.modules {
            if host.exists(format!("sys/module/{m}")) {
                run_bounded(host, "modprobe", &["-r", m], t)?;
                done.push(Step::Module { name: m.clone() });
            }
        }
        Ok(())
    })();
    (done, result.err())
}

/// Restores, in reverse order, the steps of `steps` that `which` selects; returns the
/// problems (each restore is tried, whatever the others do).
pub(crate) fn restore(
    host: &Host,
    settings: &HandoverSettings,
    steps: &[Step],
    which: fn(&Step) -> bool,
) -> Vec<String> {
    let t = settings.timeout();
    let mut problems = Vec::new();
    for step in steps.iter().rev().filter(|s| which(s)) {
        let r = match step {
            Step::Module { name } => {
                run_bounded(host, "modprobe", &[name], t).map_err(Restore::Run)
            }
            Step::Framebuffer { device, driver } => host
                .write_bounded(format!("sys/bus/platform/drivers/{driver}/bind"), device, t)
                .map_err(Restore::Write),
            Step::Vtconsole { index } => host
                .write_bounded(format!("sys/class/vtconsole/vtcon{index}/bind"), "1", t)
                .map_err(Restore::Write),
            Step::Unit { name } => {
                run_bounded(host, "systemctl", &["start", name], t).map_err(Restore::Run)
            }
        };
        if let Err(e) = r {
            problems.push(format!("restoring {step}: {e}"));
        }
    }
    problems
}

/// Why one restore step failed (its text follows `restoring STEP: `).
#[derive(Debug, thiserror::Error)]
enum Restore {
    #[error(transparent)]
    Run(RunError),
    #[error(transparent)]
    Write(HostError),
}

/// The steps restored before the card goes back (its driver's modules).
pub(crate) fn before_reattach(s: &Step) -> bool {
    matches!(s, Step::Module { .. })
}

/// The steps restored once the card is back.
pub(crate) fn after_reattach(s: &Step) -> bool {
    !before_reattach(s)
}

/// `vtconN` index and name, for every console.
fn vtconsoles(host: &Host) -> Vec<(u32, String)> {
    host.list("sys/class/vtconsole")
        .iter()
        .filter_map(|n| {
            let index = n.strip_prefix("vtcon")?.parse().ok()?;
            let name = host.read_attr(format!("sys/class/vtconsole/{n}/name"))?;
            Some((index, name))
        })
        .collect()
}

/// Platform framebuffer devices, bound to a driver, that `/proc/iomem` puts over a BAR
/// of one of `cards`: (device, driver).
fn framebuffers_over(host: &Host, cards: &[PciAddress]) -> Vec<(String, String)> {
    let Ok(text) = host.read("proc/iomem") else {
        return Vec::new();
    };
    let regions = iomem::parse(&text);
    let bars: Vec<_> = cards.iter().map(|a| (*a, iomem::bars(host, *a))).collect();
    if iomem::overlaps(&regions, &bars).is_empty() {
        return Vec::new();
    }
    host.list("sys/bus/platform/devices")
        .into_iter()
        .filter(|d| {
            [
                "efi-framebuffer.",
                "simple-framebuffer.",
                "vesa-framebuffer.",
            ]
            .iter()
            .any(|p| d.starts_with(p))
        })
        .filter_map(|d| {
            let drv = host.link_name(format!("sys/bus/platform/devices/{d}/driver"))?;
            Some((d, drv))
        })
        .collect()
}

fn unit_active(host: &Host, unit: &str, timeout: Duration) -> Result<bool, RunError> {
    match run_bounded(host, "systemctl", &["is-active", "--quiet", unit], timeout) {
        Ok(()) => Ok(true),
        // `is-active` answers "no" with a failing exit code (a signal is no answer).
        Err(RunError::Status { status, .. }) if status.code().is_some() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs a host tool with a time bound (killed when over); live hosts only.
fn run_bounded(host: &Host, tool: &str, args: &[&str], timeout: Duration) -> Result<(), RunError> {
    let what = format!("{tool} {}", args.join(" "));
    host.require_live(&what).map_err(RunError::NotLive)?;
    let io = |what: &str, error| RunError::Io {
        what: what.to_owned(),
        error,
    };
    let mut child = Command::new(find_tool(tool))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io(&what, e))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(RunError::Status { what, status }),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout { what, timeout });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(io(&what, e)),
        }
    }
}

/// A tool from the usual system directories (libvirt runs hooks with a minimal PATH).
fn find_tool(tool: &str) -> String {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{tool}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| tool.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use testing::{Dev, TestSysfs};

    fn card() -> (TestSysfs, PciAddress) {
        let t = TestSysfs::new();
        t.add(
            &Dev::new("0000:00:02.0", (0x1234, 0x1111), 0x030000)
                .group(2)
                .driver("bochs-drm")
                .boot_vga(),
        );
        t.file(
            "sys/devices/pci0000:00/0000:00:02.0/drm/card0/dev",
            "226:0\n",
        );
        t.file(
            "sys/devices/pci0000:00/0000:00:02.0/drm/renderD128/dev",
            "226:128\n",
        );
        (t, "0000:00:02.0".parse().unwrap())
    }

    #[test]
    fn a_process_holding_the_card_is_named() {
        let (t, a) = card();
        std::fs::create_dir_all(t.path("proc/412/fd")).unwrap();
        t.file("proc/412/comm", "Xorg\n");
        std::os::unix::fs::symlink("/dev/dri/card0", t.path("proc/412/fd/9")).unwrap();
        std::os::unix::fs::symlink("/dev/null", t.path("proc/412/fd/0")).unwrap();
        std::fs::create_dir_all(t.path("proc/7/fd")).unwrap();
        std::os::unix::fs::symlink("/dev/dri/card1", t.path("proc/7/fd/3")).unwrap();
        let h = drm_holders(&Host::new(t.root()), &[a]);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0].to_string(), "Xorg (pid 412) holds /dev/dri/card0");
    }

    #[test]
    fn consoles_are_released_and_restored_in_reverse() {
        let (t, a) = card();
        t.file("sys/class/vtconsole/vtcon0/name", "(S) dummy device\n");
        t.file("sys/class/vtconsole/vtcon0/bind", "1\n");
        t.file(
            "sys/class/vtconsole/vtcon1/name",
            "(M) frame buffer device\n",
        );
        t.file("sys/class/vtconsole/vtcon1/bind", "1\n");
        let host = Host::new(t.root());
        let settings = HandoverSettings {
            consoles: true,
            ..HandoverSettings::default()
        };
        let (steps, err) = release(&host, &settings, &[a]);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(steps, vec![Step::Vtconsole { index: 1 }]);
        assert_eq!(t.read("sys/class/vtconsole/vtcon1/bind"), "0");
        assert_eq!(
            t.read("sys/class/vtconsole/vtcon0/bind"),
            "1\n",
            "the dummy console stays"
        );
        assert!(restore(&host, &settings, &steps, before_reattach).is_empty());
        assert_eq!(
            t.read("sys/class/vtconsole/vtcon1/bind"),
            "0",
            "not before the card is back"
        );
        assert!(restore(&host, &settings, &steps, after_reattach).is_empty());
        assert_eq!(t.read("sys/class/vtconsole/vtcon1/bind"), "1");
    }

    #[test]
    fn units_and_modules_never_reach_the_live_system_from_a_fixture() {
        let (t, a) = card();
        t.file("sys/module/nvidia_drm/refcnt", "0\n");
        let settings = HandoverSettings {
            modules: vec!["nvidia_drm".into()],
            ..HandoverSettings::default()
        };
        let (steps, err) = release(&Host::new(t.root()), &settings, &[a]);
        assert!(steps.is_empty());
        let err = err.unwrap();
        assert!(
            matches!(err, ReleaseError::Run(RunError::NotLive(_))),
            "{err}"
        );
        assert!(err.to_string().contains("not the live system"));
    }

    #[test]
    fn the_firmware_framebuffer_over_the_card_is_released() {
        let (t, a) = card();
        t.file(
            "sys/devices/pci0000:00/0000:00:02.0/resource",
            "0x00000000c0000000 0x00000000c0ffffff 0x0000000000042208\n",
        );
        t.file(
            "proc/iomem",
            "80000000-dfffffff : PCI Bus 0000:00\n  c0000000-c0ffffff : 0000:00:02.0\n    c0000000-c02fffff : efifb\n",
        );
        t.file("sys/bus/platform/drivers/efi-framebuffer/unbind", "");
        t.file("sys/bus/platform/drivers/efi-framebuffer/bind", "");
        std::fs::create_dir_all(t.path("sys/bus/platform/devices/efi-framebuffer.0")).unwrap();
        std::os::unix::fs::symlink(
            "../../drivers/efi-framebuffer",
            t.path("sys/bus/platform/devices/efi-framebuffer.0/driver"),
        )
        .unwrap();
        let host = Host::new(t.root());
        let settings = HandoverSettings {
            framebuffer: true,
            ..HandoverSettings::default()
        };
        let (steps, err) = release(&host, &settings, &[a]);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(
            t.read("sys/bus/platform/drivers/efi-framebuffer/unbind"),
            "efi-framebuffer.0"
        );
        assert!(restore(&host, &settings, &steps, after_reattach).is_empty());
        assert_eq!(
            t.read("sys/bus/platform/drivers/efi-framebuffer/bind"),
            "efi-framebuffer.0"
        );
    }
}
