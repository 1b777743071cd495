//! The binder: carries out a [`Plan`], one IOMMU group at a time, and never leaves a
//! group half-bound.
//!
//! For each group with devices to bind:
//! 1. `driver_override` = `vfio-pci` on each selected device (only selected devices get
//!    an override), so no other driver can take it from now on;
//! 2. unbind each from the host driver that won the race (built in, or loaded early by
//!    `rd.driver.pre=` / `MODULES=`), through a writer child with a time bound;
//! 3. `drivers_probe` each; vfio-pci matches through the override;
//! 4. re-read each `driver` link: a probe never reports failure, only the link tells.
//!
//! If any device of the group fails, the whole group is rolled back to exactly what was
//! found: each `driver_override` written back as it was (cleared, or a pre-set one such
//! as `pci-stub`), vfio-pci unbound, the original drivers probed again.
//!
//! Time: one `timeout_ms` bounds every write of a group together, however many devices
//! it has, and the verify window (`timeout_ms`, at most 250 ms) comes on top; the
//! rollback's writes share that budget, each still given at least the verify window so
//! that a slow machine restores what it found. A file that stalled once (a wedged
//! `unbind`, `drivers_probe`) is not written again in this run. So a group with one
//! stalled file costs at most `timeout_ms` + 250 ms; each further file that stalls
//! during its rollback adds at most 250 ms.
//!
//! Where the IOMMU makes a device's group when a driver probes it (an Arm SMMU,
//! [`GroupKey::AtProbe`]), step 4 also reads the group the kernel made: it must hold
//! the devices just bound and nothing on a host driver, or the group is rolled back.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, error, info, trace, warn};

use crate::cmdline::Cmdline;
use crate::host::{Host, HostError};
use crate::modules::{self, Availability};
use crate::pci::{self, PciAddress, VFIO_DRIVER};
use crate::plan::{Action, DevicePlan, GroupKey, Plan};
use crate::record::{DeviceOutcome, DeviceRecord};

/// What the binder did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One record per planned device.
    pub devices: Vec<DeviceRecord>,
    /// How vfio-pci became available, when binding was attempted.
    pub vfio_pci: Option<String>,
    /// Failures.
    pub errors: Vec<BindError>,
}

/// Why the binder did not bind a group.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// vfio-pci could not be had: no device was touched.
    #[error("vfio-pci is not available, nothing was bound: {0}")]
    VfioPci(#[source] HostError),
    /// A group failed, and was put back as it was found.
    #[error("{group}: {why}; the group was rolled back{}", Incomplete(.incomplete))]
    Group {
        /// The group.
        group: GroupKey,
        /// The step that failed.
        why: GroupFailure,
        /// What the rollback could not restore (empty: everything).
        incomplete: Vec<RollbackProblem>,
    },
}

/// The step of a group's binding that failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupFailure {
    /// Writing `driver_override`.
    #[error("{address}: setting driver_override failed: {error}")]
    Override {
        /// The device.
        address: PciAddress,
        /// The write's error.
        error: WriteError,
    },
    /// Unbinding from the host driver that won the race.
    #[error("{address}: unbinding from {driver} failed: {error}")]
    Unbind {
        /// The device.
        address: PciAddress,
        /// The host driver.
        driver: String,
        /// The write's error.
        error: WriteError,
    },
    /// `drivers_probe` stalled.
    #[error("{address}: drivers_probe failed: {error}")]
    Probe {
        /// The device.
        address: PciAddress,
        /// The write's error.
        error: WriteError,
    },
    /// After the probe, these devices were on another driver (or none).
    #[error("vfio-pci did not take every device ({})", OnDrivers(.0))]
    NotTaken(Vec<(PciAddress, Option<String>)>),
    /// Where groups are made at probe: the device got none.
    #[error("{0} has no IOMMU group even on vfio-pci")]
    NoGroupMade(PciAddress),
    /// Where groups are made at probe: the group made holds a host driver's device.
    #[error(
        "the IOMMU group {group} the kernel made for {address} also holds {other} on {driver}"
    )]
    MadeGroupShared {
        /// The group's number, as the kernel named it.
        group: String,
        /// The device just bound.
        address: PciAddress,
        /// The other member.
        other: PciAddress,
        /// Its driver.
        driver: String,
    },
}

/// What a rollback could not restore.
#[derive(Debug, thiserror::Error)]
pub enum RollbackProblem {
    /// Writing back the `driver_override` found (`None`: clearing it).
    #[error("{address}: {} failed: {error}", Restore(.before.as_deref()))]
    Override {
        /// The device.
        address: PciAddress,
        /// The override found.
        before: Option<String>,
        /// The write's error.
        error: WriteError,
    },
    /// Unbinding from vfio-pci.
    #[error("{address}: releasing vfio-pci failed: {error}")]
    Release {
        /// The device.
        address: PciAddress,
        /// The write's error.
        error: WriteError,
    },
    /// Probing the original driver again.
    #[error("{address}: re-probing failed: {error}")]
    Reprobe {
        /// The device.
        address: PciAddress,
        /// The write's error.
        error: WriteError,
    },
    /// The device ended on another driver than the one it was found on.
    #[error("{address} was on {} and is now on {}", Driver(.was.as_deref()), Driver(.now.as_deref()))]
    Moved {
        /// The device.
        address: PciAddress,
        /// Its driver found.
        was: Option<String>,
        /// Its driver now.
        now: Option<String>,
    },
}

/// Why one bounded write of a group did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file stalled earlier in this run; it is not written again.
    #[error("{}: not written, it stalled earlier in this run", .0.display())]
    StalledEarlier(PathBuf),
    /// The group's time bound is spent.
    #[error("{}: not written, the group's {} ms are spent", .path.display(), .timeout.as_millis())]
    Spent {
        /// The file.
        path: PathBuf,
        /// The group's bound.
        timeout: Duration,
    },
    /// The write failed or stalled now.
    #[error(transparent)]
    Host(HostError),
}

/// A driver in a message: its name, or `no driver`.
struct Driver<'a>(Option<&'a str>);

impl fmt::Display for Driver<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.unwrap_or("no driver"))
    }
}

/// `A is on X, B is on no driver`.
struct OnDrivers<'a>(&'a [(PciAddress, Option<String>)]);

impl fmt::Display for OnDrivers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, drv)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{a} is on {}", Driver(drv.as_deref()))?;
        }
        Ok(())
    }
}

/// What a rollback step wrote back.
struct Restore<'a>(Option<&'a str>);

impl fmt::Display for Restore<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(b) => write!(f, "restoring driver_override {b}"),
            None => f.write_str("clearing driver_override"),
        }
    }
}

/// ` (incompletely: ...)` after a rollback that left something behind.
struct Incomplete<'a>(&'a [RollbackProblem]);

impl fmt::Display for Incomplete<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(" (incompletely: ")?;
        for (i, p) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{p}")?;
        }
        f.write_str(")")
    }
}

impl Outcome {
    /// Devices bound by this run.
    pub fn bound(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.outcome == DeviceOutcome::Bound)
            .count()
    }
}

/// Carries out a plan.
pub(crate) fn execute(host: &Host, plan: &Plan, cmdline: &Cmdline, timeout: Duration) -> Outcome {
    let mut out = Outcome {
        devices: plan
            .devices
            .iter()
            .map(|d| DeviceRecord {
                iommu_group: d.iommu_group,
                reasons: d.reasons.clone(),
                driver_before: d.driver.clone(),
                driver_after: d.driver.clone(),
                // Bound devices get their outcome below.
                ..DeviceRecord::planned(d.address, d.action)
            })
            .collect(),
        ..Outcome::default()
    };
    let groups = plan.bind_groups();
    if groups.is_empty() {
        return out;
    }
    // vfio-pci first: loading it touches no device, and if it cannot be had, nothing
    // has been changed yet.
    match modules::ensure_vfio_pci(host, cmdline, timeout.saturating_mul(3)) {
        Ok(a) => {
            let how = match a {
                Availability::AlreadyThere => "present".to_owned(),
                Availability::Modprobe(p) => format!("loaded by {}", p.display()),
                Availability::Loaded(m) => format!("loaded ({})", m.join(", ")),
            };
            debug!("vfio-pci {how}");
            out.vfio_pci = Some(how);
        }
        Err(e) => {
            let e = BindError::VfioPci(e);
            error!("{e}");
            for r in out.devices.iter_mut().filter(|r| r.action == Action::Bind) {
                r.outcome = DeviceOutcome::Failed;
                r.error = Some(e.to_string());
            }
            out.errors.push(e);
            return out;
        }
    }
    let mut stalled = BTreeSet::new();
    for (group, devices) in groups {
        let result = bind_group(host, group, &devices, timeout, &mut stalled);
        for (addr, driver_after, outcome, err) in result.per_device {
            if let Some(r) = out.devices.iter_mut().find(|r| r.address == addr) {
                r.driver_after = driver_after;
                r.outcome = outcome;
                r.error = err;
            }
        }
        match result.failure {
            None => {
                for d in &devices {
                    let was = d
                        .driver
                        .as_deref()
                        .map(|w| format!(" (was {w})"))
                        .unwrap_or_default();
                    let made = match group {
                        GroupKey::Iommu(_) => group.to_string(),
                        GroupKey::AtProbe(_) => {
                            host.link_name(d.address.attr("iommu_group")).map_or_else(
                                || group.to_string(),
                                |g| format!("IOMMU group {g} (made at probe)"),
                            )
                        }
                    };
                    info!("{} [{}] bound to vfio-pci{was}, {made}", d.address, d.id);
                }
            }
            Some(why) => {
                let e = BindError::Group {
                    group,
                    why,
                    incomplete: result.incomplete,
                };
                error!("{e}");
                out.errors.push(e);
            }
        }
    }
    out
}

struct GroupResult {
    per_device: Vec<(PciAddress, Option<String>, DeviceOutcome, Option<String>)>,
    failure: Option<GroupFailure>,
    incomplete: Vec<RollbackProblem>,
}

fn current_driver(host: &Host, addr: PciAddress) -> Option<String> {
    host.link_name(addr.attr("driver"))
}

/// The bounded writes of one group: they share one deadline, and skip files seen
/// stalling earlier in the run.
struct Writer<'a> {
    host: &'a Host,
    stalled: &'a mut BTreeSet<String>,
    /// The group's bound, as configured (for messages).
    timeout: Duration,
    /// No write starts or lasts past this...
    end: Instant,
    /// ...except that each write gets at least this much (zero while binding; the
    /// verify window during a rollback, so that a loaded machine still restores what
    /// it found rather than leaving an override behind).
    floor: Duration,
}

impl Writer<'_> {
    fn write(&mut self, rel: &str, value: &str) -> Result<(), WriteError> {
        if self.stalled.contains(rel) {
            return Err(WriteError::StalledEarlier(self.host.path(rel)));
        }
        let left = self
            .end
            .saturating_duration_since(Instant::now())
            .max(self.floor);
        if left.is_zero() {
            return Err(WriteError::Spent {
                path: self.host.path(rel),
                timeout: self.timeout,
            });
        }
        match self.host.write_bounded(rel, value, left) {
            Ok(()) => Ok(()),
            Err(HostError::Timeout { path, .. }) => {
                self.stalled.insert(rel.to_owned());
                Err(WriteError::Host(HostError::Timeout {
                    path,
                    timeout: self.timeout,
                }))
            }
            Err(e) => Err(WriteError::Host(e)),
        }
    }
}

/// The `driver_override` a device has now (`None` when unset: the kernel shows
/// `(null)`).
fn current_override(host: &Host, addr: PciAddress) -> Option<String> {
    host.read_attr(addr.attr("driver_override"))
        .filter(|v| !v.is_empty() && v != "(null)")
}

fn bind_group(
    host: &Host,
    group: GroupKey,
    devices: &[&DevicePlan],
    timeout: Duration,
    stalled: &mut BTreeSet<String>,
) -> GroupResult {
    let start = Instant::now();
    let window = verify_window(timeout);
    let mut w = Writer {
        host,
        stalled,
        timeout,
        end: start + timeout,
        floor: Duration::ZERO,
    };
    // What was there before, restored exactly on rollback.
    let found: Vec<(PciAddress, Option<String>)> = devices
        .iter()
        .map(|d| (d.address, current_override(host, d.address)))
        .collect();
    let mut overridden: Vec<PciAddress> = Vec::new();
    let failure = (|| -> Result<(), GroupFailure> {
        for d in devices {
            debug!("{}: driver_override <- vfio-pci", d.address);
            w.write(&d.address.attr("driver_override"), VFIO_DRIVER)
                .map_err(|error| GroupFailure::Override {
                    address: d.address,
                    error,
                })?;
            overridden.push(d.address);
        }
        for d in devices {
            unbind(&mut w, d.address)?;
        }
        for d in devices {
            if current_driver(host, d.address).as_deref() != Some(VFIO_DRIVER) {
                // A probe that finds no driver is not an error to the kernel; the
                // driver link below is the only verdict.
                debug!("{}: drivers_probe", d.address);
                if let Err(e) = w.write("sys/bus/pci/drivers_probe", &d.address.to_string()) {
                    if w.stalled.contains("sys/bus/pci/drivers_probe") {
                        // A stalled probe is a failed group: the verify window goes to
                        // the rollback instead.
                        return Err(GroupFailure::Probe {
                            address: d.address,
                            error: e,
                        });
                    }
                    warn!("{}: drivers_probe: {e}", d.address);
                }
            }
        }
        let addrs: Vec<PciAddress> = devices.iter().map(|d| d.address).collect();
        debug!("verifying the driver links of {} device(s)", addrs.len());
        let pending = wait_for(host, &addrs, Some(VFIO_DRIVER), window);
        debug!("verified: {} device(s) not on vfio-pci", pending.len());
        if pending.is_empty() {
            match group {
                GroupKey::Iommu(_) => Ok(()),
                GroupKey::AtProbe(_) => check_made_group(host, &addrs),
            }
        } else {
            Err(GroupFailure::NotTaken(pending))
        }
    })()
    .err();

    match failure {
        None => GroupResult {
            per_device: devices
                .iter()
                .map(|d| {
                    (
                        d.address,
                        Some(VFIO_DRIVER.to_owned()),
                        DeviceOutcome::Bound,
                        None,
                    )
                })
                .collect(),
            failure: None,
            incomplete: Vec::new(),
        },
        Some(why) => {
            // The rollback shares the group's budget: what the writes left, plus the
            // verify window; each of its writes still gets ROLLBACK_FLOOR, so that a
            // loaded machine restores what it found rather than leaving an override.
            w.end = start + timeout + window;
            w.floor = window.max(ROLLBACK_FLOOR);
            let (per_device, incomplete) = rollback(&mut w, devices, &found, &overridden, &why);
            GroupResult {
                per_device,
                failure: Some(why),
                incomplete,
            }
        }
    }
}

/// Unbinds a device from the host driver it is on, if any. The driver may let go
/// between the look and the write (a probe that fails, racing udev's driver load,
/// removes the `driver` link it had made): `driver/unbind` is then not found, and the
/// device is looked at again, at most twice. With the override written, no probe after
/// it matches anything but vfio-pci.
fn unbind(w: &mut Writer<'_>, address: PciAddress) -> Result<(), GroupFailure> {
    let mut looks = 0;
    loop {
        let Some(drv) = current_driver(w.host, address).filter(|d| d != VFIO_DRIVER) else {
            return Ok(());
        };
        debug!("{address}: unbinding from {drv}");
        match w.write(&address.attr("driver/unbind"), &address.to_string()) {
            Ok(()) => return Ok(()),
            Err(WriteError::Host(e)) if e.is_not_found() && looks < 2 => {
                debug!("{address}: {drv} let go before the unbind ({e}); looking again");
                looks += 1;
            }
            Err(error) => {
                return Err(GroupFailure::Unbind {
                    address,
                    driver: drv,
                    error,
                })
            }
        }
    }
}

/// Where groups are made at probe: every device just bound has a group now, and each
/// such group holds nothing else but devices that leave DMA to vfio.
fn check_made_group(host: &Host, ours: &[PciAddress]) -> Result<(), GroupFailure> {
    for a in ours {
        let Some(g) = host.link_name(a.attr("iommu_group")) else {
            return Err(GroupFailure::NoGroupMade(*a));
        };
        for m in host.list(format!("{}/{g}/devices", pci::IOMMU_GROUPS)) {
            let Ok(other) = m.parse::<PciAddress>() else {
                continue;
            };
            if ours.contains(&other) {
                continue;
            }
            match current_driver(host, other).as_deref() {
                None | Some(VFIO_DRIVER | "pci-stub" | "pcieport") => {}
                Some(drv) => {
                    return Err(GroupFailure::MadeGroupShared {
                        group: g,
                        address: *a,
                        other,
                        driver: drv.to_owned(),
                    })
                }
            }
        }
    }
    Ok(())
}

/// The least time each rollback write gets, whatever the group's budget left: a
/// child process and one small write, which a machine under load can delay past the verify
/// window (seen at load 16 with the 250 ms window); still a bound.
const ROLLBACK_FLOOR: Duration = Duration::from_secs(1);

fn verify_window(timeout: Duration) -> Duration {
    timeout.min(Duration::from_millis(250))
}

/// Polls the `driver` links until each device is on `want`, or the window ends;
/// returns the devices that are not, with their driver.
fn wait_for(
    host: &Host,
    addrs: &[PciAddress],
    want: Option<&str>,
    window: Duration,
) -> Vec<(PciAddress, Option<String>)> {
    let start = Instant::now();
    // A probe is synchronous, so the first look usually settles it; when it does not,
    // naps from 1 ms growing to 10 ms.
    let mut nap = Duration::from_millis(1);
    loop {
        let pending: Vec<(PciAddress, Option<String>)> = addrs
            .iter()
            .map(|&a| (a, current_driver(host, a)))
            .filter(|(_, drv)| drv.as_deref() != want)
            .collect();
        if pending.is_empty() || start.elapsed() >= window {
            return pending;
        }
        trace!("waiting for {} driver link(s)", pending.len());
        std::thread::sleep(nap.min(window.saturating_sub(start.elapsed())));
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

type DeviceResult = (PciAddress, Option<String>, DeviceOutcome, Option<String>);

/// Undoes a group: write back the overrides found (cleared, or the value that was
/// there), release vfio-pci, re-probe the original drivers; reports where each device
/// ended.
fn rollback(
    w: &mut Writer<'_>,
    devices: &[&DevicePlan],
    found: &[(PciAddress, Option<String>)],
    overridden: &[PciAddress],
    why: &GroupFailure,
) -> (Vec<DeviceResult>, Vec<RollbackProblem>) {
    debug!("rolling back {} device(s): {why}", devices.len());
    let host = w.host;
    let mut problems = Vec::new();
    for a in overridden {
        let before = found
            .iter()
            .find(|(f, _)| f == a)
            .and_then(|(_, o)| o.clone());
        // "\n" clears an override; anything else sets it again.
        let value = before.clone().unwrap_or_else(|| "\n".to_owned());
        match &before {
            Some(b) => debug!("{a}: restoring driver_override {b}"),
            None => debug!("{a}: clearing driver_override"),
        }
        if let Err(error) = w.write(&a.attr("driver_override"), &value) {
            problems.push(RollbackProblem::Override {
                address: *a,
                before,
                error,
            });
        }
    }
    for d in devices {
        if current_driver(host, d.address).as_deref() == Some(VFIO_DRIVER)
            && d.driver.as_deref() != Some(VFIO_DRIVER)
        {
            debug!("{}: releasing vfio-pci", d.address);
            if let Err(error) = w.write(&d.address.attr("driver/unbind"), &d.address.to_string()) {
                problems.push(RollbackProblem::Release {
                    address: d.address,
                    error,
                });
            }
        }
    }
    for d in devices {
        if d.driver.is_some() && current_driver(host, d.address).is_none() {
            if let Err(error) = w.write("sys/bus/pci/drivers_probe", &d.address.to_string()) {
                problems.push(RollbackProblem::Reprobe {
                    address: d.address,
                    error,
                });
            }
        }
    }
    let mut per_device = Vec::new();
    for d in devices {
        let now = current_driver(host, d.address);
        if now != d.driver {
            problems.push(RollbackProblem::Moved {
                address: d.address,
                was: d.driver.clone(),
                now: now.clone(),
            });
        }
        per_device.push((
            d.address,
            now,
            DeviceOutcome::RolledBack,
            Some(why.to_string()),
        ));
    }
    (per_device, problems)
}

/// Which driver must take a device back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// This driver (the one recorded when the device was detached).
    Driver(String),
    /// No driver (it had none).
    Nothing,
    /// Whatever claims it (`reattach --force` of a device with no record).
    Any,
}

/// Where a given-back device ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The device given back to a host driver.
    pub address: PciAddress,
    /// Its driver now (read back from the `driver` link).
    pub driver: Option<String>,
    /// The group was put back on vfio-pci because a write failed or stalled.
    pub rolled_back: bool,
    /// What went wrong, when it did not end where expected.
    pub error: Option<String>,
}

/// Gives the devices of one IOMMU group back to the host: unbinds each from vfio-pci
/// (bounded writes; the override still says vfio-pci, so nothing else takes it
/// meanwhile), clears each `driver_override`, asks `drivers_probe`, and reads the
/// `driver` link back until the expected driver took it or `timeout` is over.
///
/// When an unbind fails or stalls (vfio-pci's remove waits while a program holds the
/// device open, as a VM does), the group is rolled back whole: the devices already
/// unbound are probed again, and their override (untouched so far) gives them to
/// vfio-pci; the stalled device is not written to again (its lock is held, every write
/// would cost another timeout) and keeps its override. So a group is never half given
/// back. A device that no host driver took after the writes is not rolled back:
/// without a driver, it is safe.
pub fn release(host: &Host, devices: &[(PciAddress, Expect)], timeout: Duration) -> Vec<Released> {
    let mut unbound: Vec<PciAddress> = Vec::new();
    for (a, _) in devices {
        if current_driver(host, *a).as_deref() == Some(VFIO_DRIVER) {
            if let Err(e) = host.write_bounded(a.attr("driver/unbind"), &a.to_string(), timeout) {
                let why = format!("{a}: unbinding from vfio-pci failed: {e}");
                return rollback_release(host, devices, &unbound, timeout, &why);
            }
            unbound.push(*a);
        }
    }
    let mut problems = Vec::new();
    for (a, _) in devices {
        if let Err(e) = host.write_bounded(a.attr("driver_override"), "\n", timeout) {
            problems.push(format!("{a}: clearing driver_override failed: {e}"));
        }
    }
    for (a, want) in devices {
        if *want != Expect::Nothing && current_driver(host, *a).is_none() {
            if let Err(e) = host.write_bounded("sys/bus/pci/drivers_probe", &a.to_string(), timeout)
            {
                warn!("{a}: drivers_probe: {e}");
            }
        }
    }
    let start = Instant::now();
    loop {
        let now: Vec<Option<String>> = devices
            .iter()
            .map(|(a, _)| current_driver(host, *a))
            .collect();
        let done = devices.iter().zip(&now).all(|((_, want), drv)| match want {
            Expect::Driver(d) => drv.as_deref() == Some(d.as_str()),
            Expect::Nothing => drv.is_none(),
            Expect::Any => drv.as_deref() != Some(VFIO_DRIVER),
        });
        if done || start.elapsed() >= timeout {
            return devices
                .iter()
                .zip(now)
                .map(|((a, want), driver)| {
                    let wrong = match want {
                        Expect::Driver(d) if driver.as_deref() != Some(d.as_str()) => {
                            Some(d.as_str())
                        }
                        Expect::Nothing if driver.is_some() => Some("no driver"),
                        Expect::Any if driver.as_deref() == Some(VFIO_DRIVER) => {
                            Some("a host driver")
                        }
                        _ => None,
                    };
                    let error = wrong.map(|w| {
                        let mut e = format!(
                            "{a} is on {}, not {w}, after {} ms",
                            driver.as_deref().unwrap_or("no driver"),
                            timeout.as_millis()
                        );
                        for p in problems.iter().filter(|p| p.starts_with(&a.to_string())) {
                            e.push_str(&format!(" ({p})"));
                        }
                        e
                    });
                    Released {
                        address: *a,
                        driver,
                        rolled_back: false,
                        error,
                    }
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Puts a group that could not be given back on vfio-pci again, as it was: the devices
/// of `unbound` are probed again (their override still names vfio-pci).
fn rollback_release(
    host: &Host,
    devices: &[(PciAddress, Expect)],
    unbound: &[PciAddress],
    timeout: Duration,
    why: &str,
) -> Vec<Released> {
    let mut problems = Vec::new();
    for a in unbound {
        if let Err(e) = host.write_bounded("sys/bus/pci/drivers_probe", &a.to_string(), timeout) {
            problems.push(format!("{a}: probing again failed: {e}"));
        }
    }
    for (a, drv) in wait_for(host, unbound, Some(VFIO_DRIVER), verify_window(timeout)) {
        problems.push(format!(
            "{a} is on {}, not back on vfio-pci",
            drv.as_deref().unwrap_or("no driver")
        ));
    }
    let note = if problems.is_empty() {
        String::new()
    } else {
        format!(" (incompletely: {})", problems.join("; "))
    };
    let msg = format!("{why}; the group was put back on vfio-pci{note}");
    error!("{msg}");
    devices
        .iter()
        .map(|(a, _)| Released {
            address: *a,
            driver: current_driver(host, *a),
            rolled_back: true,
            error: Some(msg.clone()),
        })
        .collect()
}

/// Logs the plan's refusals and warnings, one line each.
pub(crate) fn log_plan(plan: &Plan) {
    for w in &plan.warnings {
        warn!("{w}");
    }
    for d in plan.refusals() {
        warn!("{} [{}] refused: {}", d.address, d.id, d.reasons.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::machine::read_topology;
    use crate::plan::plan;
    use std::path::Path;
    use testing::{seed_machine, TestSysfs};

    fn selectors(toml: &str) -> Vec<crate::config::Selector> {
        Config::parse(Path::new("t.toml"), toml.as_bytes())
            .unwrap()
            .devices
    }

    #[test]
    fn a_fixture_never_binds_so_the_group_is_rolled_back() {
        let t = seed_machine(true);
        t.driver("vfio-pci");
        let host = Host::new(t.root());
        let topo = read_topology(&host);
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n"),
            &topo,
        );
        let out = execute(&host, &p, &Cmdline::default(), Duration::from_millis(500));
        assert_eq!(out.bound(), 0);
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(
            out.errors[0].to_string().contains("rolled back"),
            "{:?}",
            out.errors
        );
        for a in ["0000:01:00.0", "0000:01:00.1"] {
            let r = out
                .devices
                .iter()
                .find(|r| r.address.to_string() == a)
                .unwrap();
            assert_eq!(r.outcome, DeviceOutcome::RolledBack);
            // Cleared by the rollback, or never written when the group's budget ran out
            // first on a loaded machine: either way not left on vfio-pci.
            let ov = t.read(&format!("sys/bus/pci/devices/{a}/driver_override"));
            assert!(
                matches!(ov.trim(), "" | "(null)"),
                "override of {a} not cleared: {ov:?}"
            );
        }
        // The unbind was attempted through the host driver's own unbind file.
        assert_eq!(t.read("sys/bus/pci/drivers/radeon/unbind"), "0000:01:00.0");
    }

    #[test]
    fn vfio_pci_missing_on_a_fixture_touches_nothing() {
        let t = seed_machine(true);
        let host = Host::new(t.root());
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n"),
            &read_topology(&host),
        );
        let out = execute(&host, &p, &Cmdline::default(), Duration::from_millis(500));
        assert!(matches!(out.errors[0], BindError::VfioPci(_)));
        assert!(
            out.errors[0]
                .to_string()
                .contains("vfio-pci is not available"),
            "{:?}",
            out.errors
        );
        assert!(
            out.errors[0].to_string().contains("not the live system"),
            "{:?}",
            out.errors
        );
        assert_eq!(
            t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
            "(null)\n"
        );
        assert!(out
            .devices
            .iter()
            .filter(|r| r.action == Action::Bind)
            .all(|r| r.outcome == DeviceOutcome::Failed));
    }

    /// Groups made at probe (Arm SMMU): the group the kernel made for the bound card
    /// must hold it and nothing on a host driver.
    #[test]
    fn a_group_made_at_probe_is_checked_after_the_bind() {
        let t = TestSysfs::new();
        t.add(
            &testing::Dev::new("0000:01:00.0", (0x1234, 0x1111), 0x038000)
                .driver("vfio-pci")
                .group(3),
        );
        t.add(
            &testing::Dev::new("0000:01:00.1", (0x8086, 0x293e), 0x040300)
                .driver("vfio-pci")
                .group(3),
        );
        t.add(
            &testing::Dev::new("0000:00:01.0", (0x1b36, 0x000c), 0x060400)
                .driver("pcieport")
                .group(0),
        );
        let host = Host::new(t.root());
        let card: Vec<PciAddress> = ["0000:01:00.0", "0000:01:00.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert!(check_made_group(&host, &card).is_ok());
        // Only the display bound: its group also holds the audio function, still on
        // vfio-pci here, which leaves DMA to vfio.
        assert!(check_made_group(&host, &card[..1]).is_ok());
        // A member on a host driver: refused, naming it.
        t.add(
            &testing::Dev::new("0000:01:00.2", (0x8086, 0x10d3), 0x020000)
                .driver("e1000e")
                .group(3),
        );
        let err = check_made_group(&host, &card).unwrap_err();
        assert!(matches!(err, GroupFailure::MadeGroupShared { .. }), "{err}");
        let err = err.to_string();
        assert!(
            err.contains("IOMMU group 3") && err.contains("0000:01:00.2 on e1000e"),
            "{err}"
        );
        // No group even on vfio-pci: refused.
        t.add(&testing::Dev::new("0000:02:00.0", (0x8086, 0x10d3), 0x020000).driver("vfio-pci"));
        let err = check_made_group(&host, &["0000:02:00.0".parse().unwrap()]).unwrap_err();
        assert!(matches!(err, GroupFailure::NoGroupMade(_)), "{err}");
        assert!(err.to_string().contains("no IOMMU group"), "{err}");
    }

    /// One NIC on e1000e, alone in IOMMU group 4, with vfio-pci loaded.
    fn nic_on_e1000e() -> TestSysfs {
        let t = TestSysfs::new();
        t.add(
            &testing::Dev::new("0000:03:00.0", (0x8086, 0x10d3), 0x020000)
                .group(4)
                .driver("e1000e"),
        );
        t.driver("vfio-pci");
        t
    }

    #[test]
    fn an_unbind_file_that_stays_missing_is_looked_at_again_then_reported() {
        // What a driver letting go between the look and the write shows the writer
        // (driver/unbind not found), made to last: the device is looked at again, a
        // bounded number of times, and the group fails as an unbind failure.
        let t = nic_on_e1000e();
        std::fs::remove_file(t.path("sys/bus/pci/drivers/e1000e/unbind")).unwrap();
        let host = Host::new(t.root());
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:03:00.0\"\n"),
            &read_topology(&host),
        );
        let out = execute(&host, &p, &Cmdline::default(), Duration::from_millis(2000));
        assert_eq!(out.bound(), 0);
        assert!(
            matches!(
                &out.errors[..],
                [BindError::Group {
                    why: GroupFailure::Unbind {
                        error: WriteError::Host(e),
                        ..
                    },
                    ..
                }] if e.is_not_found()
            ),
            "{:?}",
            out.errors
        );
        assert!(
            out.errors[0]
                .to_string()
                .contains("0000:03:00.0: unbinding from e1000e failed"),
            "{:?}",
            out.errors
        );
    }

    #[test]
    fn a_stuck_unbind_is_abandoned_and_the_group_rolled_back() {
        let t = nic_on_e1000e();
        let unbind = t.path("sys/bus/pci/drivers/e1000e/unbind");
        std::fs::remove_file(&unbind).unwrap();
        nix::unistd::mkfifo(&unbind, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let host = Host::new(t.root());
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:03:00.0\"\n"),
            &read_topology(&host),
        );
        let out = execute(&host, &p, &Cmdline::default(), Duration::from_millis(200));
        assert_eq!(out.errors.len(), 1);
        assert!(
            matches!(
                &out.errors[0],
                BindError::Group {
                    why: GroupFailure::Unbind {
                        error: WriteError::Host(HostError::Timeout { .. }),
                        ..
                    },
                    ..
                }
            ),
            "{:?}",
            out.errors
        );
        assert!(
            out.errors[0]
                .to_string()
                .contains("0000:03:00.0: unbinding from e1000e failed"),
            "{:?}",
            out.errors
        );
        assert!(
            out.errors[0].to_string().contains("no answer after 200 ms"),
            "{:?}",
            out.errors
        );
        assert_eq!(
            t.read("sys/bus/pci/devices/0000:03:00.0/driver_override")
                .trim(),
            ""
        );
    }

    #[test]
    fn release_clears_the_override_and_unbinds_from_vfio_pci() {
        let t = seed_machine(true);
        t.bind_link("0000:01:00.0", "vfio-pci");
        t.file(
            "sys/bus/pci/devices/0000:01:00.0/driver_override",
            "vfio-pci\n",
        );
        let host = Host::new(t.root());
        let a: PciAddress = "0000:01:00.0".parse().unwrap();
        let out = release(
            &host,
            &[(a, Expect::Driver("radeon".into()))],
            Duration::from_millis(1000),
        );
        assert_eq!(
            t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
            "\n"
        );
        assert_eq!(
            t.read("sys/bus/pci/drivers/vfio-pci/unbind"),
            "0000:01:00.0"
        );
        // A fixture's link never moves: the read-back says so, naming both drivers.
        let e = out[0].error.as_deref().unwrap();
        assert!(e.contains("is on vfio-pci, not radeon"), "{e}");
        t.bind_link("0000:01:00.0", "radeon");
        let out = release(
            &host,
            &[(a, Expect::Driver("radeon".into()))],
            Duration::from_millis(2000),
        );
        assert_eq!(
            (out[0].driver.as_deref(), &out[0].error),
            (Some("radeon"), &None)
        );
    }

    #[test]
    fn a_stalled_give_back_puts_the_whole_group_back_on_vfio_pci() {
        let t = seed_machine(true);
        for a in ["0000:01:00.0", "0000:01:00.1"] {
            t.bind_link(a, "vfio-pci");
            t.file(
                &format!("sys/bus/pci/devices/{a}/driver_override"),
                "vfio-pci\n",
            );
        }
        let unbind = t.path("sys/bus/pci/drivers/vfio-pci/unbind");
        std::fs::remove_file(&unbind).unwrap();
        nix::unistd::mkfifo(&unbind, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let host = Host::new(t.root());
        let devices: Vec<(PciAddress, Expect)> = [
            ("0000:01:00.0", "radeon"),
            ("0000:01:00.1", "snd_hda_intel"),
        ]
        .iter()
        .map(|(a, d)| (a.parse().unwrap(), Expect::Driver((*d).to_owned())))
        .collect();
        let out = release(&host, &devices, Duration::from_millis(300));
        for r in &out {
            assert!(r.rolled_back, "{r:?}");
            let e = r.error.as_deref().unwrap();
            assert!(
                e.contains("0000:01:00.0: unbinding from vfio-pci failed"),
                "{e}"
            );
            assert!(
                e.contains("no answer after 300 ms") && e.contains("put back on vfio-pci"),
                "{e}"
            );
            assert_eq!(r.driver.as_deref(), Some("vfio-pci"));
            let ov = t.read(&format!(
                "sys/bus/pci/devices/{}/driver_override",
                r.address
            ));
            // Overrides are cleared only once every unbind went through: untouched.
            assert_eq!(ov, "vfio-pci\n", "{}", r.address);
        }
        assert_eq!(
            t.read("sys/bus/pci/drivers_probe"),
            "",
            "nothing was unbound"
        );
    }

    #[test]
    fn wait_for_sees_a_link_change() {
        let t = seed_machine(true);
        let host = Host::new(t.root());
        let a: PciAddress = "0000:01:00.0".parse().unwrap();
        assert_eq!(
            wait_for(&host, &[a], Some("radeon"), Duration::ZERO),
            vec![]
        );
        t.bind_link("0000:01:00.0", "vfio-pci");
        assert_eq!(
            wait_for(&host, &[a], Some("vfio-pci"), Duration::ZERO),
            vec![]
        );
        assert_eq!(
            wait_for(&host, &[a], Some("radeon"), Duration::ZERO),
            vec![(a, Some("vfio-pci".to_owned()))]
        );
    }
}
