//! Runtime handover: `detach` gives devices to vfio-pci on a running host, `reattach`
//! gives them back, both with the boot's planner and the boot's binder.
//!
//! A detach builds one selector per address named (`functions = "slot"` with
//! `--slot`), lets [`plan::plan`] judge them (whole groups or nothing; boot display,
//! storage and bridges refused unless the config allows them), and refuses everything
//! when anything is refused: a detach never widens the selection on its own, so a group
//! that needs more is refused naming what it needs. Then [`bind::execute`] does the
//! work (overrides, bounded unbinds, probe, driver link read back, rollback of the
//! whole group), and the kernel is asked whether each group is viable ([`vfio`]).
//!
//! What was detached, and from which driver, is kept in [`RECORD_PATH`], which
//! `reattach` reads: it clears the override, unbinds from vfio-pci, probes, and
//! verifies that the recorded driver took each device ([`bind::release`]). A device the
//! record does not know is left alone unless `--force`. Both are idempotent, and both
//! hold the agent's lock ([`Host::lock`]) while they change anything.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bind::{self, Expect};
use crate::cmdline::Cmdline;
use crate::config::{Config, ConfigError, Functions, Selector};
use crate::exit::Exit;
use crate::handover::{self, Step};
use crate::host::{Host, HostError, HostResult};
use crate::pci::{self, Device, PciAddress, PciId, VFIO_DRIVER};
use crate::plan::{self, Action, Plan};
use crate::record::DeviceOutcome;
use crate::vfio::{self, GroupVerdict};

/// Where the detach record lives, relative to the host root.
pub(crate) const RECORD_PATH: &str = "run/vfio-early/detached.json";
/// Its format version.
pub(crate) const RECORD_VERSION: u32 = 1;

/// One device `detach` handed to vfio-pci.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Detached {
    pub address: PciAddress,
    /// `vendor:device`, to notice another card in the slot after a hot swap.
    pub id: PciId,
    /// Its IOMMU group then.
    pub iommu_group: Option<u32>,
    /// The driver it was on, which `reattach` gives it back to.
    pub driver: Option<String>,
}

/// What `detach` did, for `reattach`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DetachRecord {
    /// Format version.
    pub version: u32,
    /// Devices on vfio-pci because of `detach`.
    pub devices: Vec<Detached>,
    /// Handover steps done before the detach of `handover_for`, in order.
    #[serde(default)]
    pub handover: Vec<Step>,
    /// The display devices the handover was done for: it is restored once none of them
    /// is detached any more.
    #[serde(default)]
    pub handover_for: Vec<PciAddress>,
}

/// Why the detach record cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// It cannot be read.
    #[error(transparent)]
    Read(HostError),
    /// It is not a detach record.
    #[error("{}: {error}", .path.display())]
    Damaged {
        /// The file.
        path: std::path::PathBuf,
        /// What the JSON parser said.
        error: serde_json::Error,
    },
}

impl DetachRecord {
    /// Reads the record; an absent one is empty, a damaged one an error.
    pub fn load(host: &Host) -> Result<Self, RecordError> {
        match host.read(RECORD_PATH) {
            Err(e) if e.errno() == Some(nix::errno::Errno::ENOENT as i32) => Ok(Self::default()),
            Err(e) => Err(RecordError::Read(e)),
            Ok(text) => serde_json::from_str(&text).map_err(|error| RecordError::Damaged {
                path: host.path(RECORD_PATH),
                error,
            }),
        }
    }

    /// Writes it under the host root (atomically); an empty record removes the file.
    pub fn save(&self, host: &Host) -> HostResult<()> {
        if self.devices.is_empty() && self.handover.is_empty() {
            let path = host.path(RECORD_PATH);
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(crate::host::HostError::Io { path, source: e })
                }
                _ => Ok(()),
            };
        }
        let doc = Self {
            version: RECORD_VERSION,
            ..self.clone()
        };
        host.write_owned(
            RECORD_PATH,
            &serde_json::to_vec_pretty(&doc).unwrap_or_default(),
        )
    }

    /// The entry of one device.
    pub fn get(&self, a: PciAddress) -> Option<&Detached> {
        self.devices.iter().find(|d| d.address == a)
    }
}

/// What was asked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The addresses named.
    pub addresses: &'a [PciAddress],
    /// Every function of each card.
    pub slot: bool,
    /// Change nothing.
    pub dry_run: bool,
    /// Detach: even while a process holds the card's DRM node. Reattach: devices the
    /// record does not know too.
    pub force: bool,
}

/// The selectors a detach gives the planner: one per address, allowing the boot
/// display or storage only where the config's own entries allow them for a device the
/// selector takes.
pub fn selectors(req: &Request<'_>, config: &Config, devices: &[Device]) -> Vec<Selector> {
    let allowed = plan::resolve(&config.devices, devices).selected;
    req.addresses
        .iter()
        .enumerate()
        .map(|(i, &addr)| {
            let taken: Vec<&plan::Selection> = devices
                .iter()
                .filter(|d| d.address == addr || (req.slot && d.address.same_slot(&addr)))
                .filter_map(|d| allowed.get(&d.address))
                .collect();
            Selector {
                index: i + 1,
                line: 0,
                address: Some(addr),
                id: None,
                functions: if req.slot {
                    Functions::Slot
                } else {
                    Functions::One
                },
                allow_boot_vga: taken.iter().any(|s| s.allow_boot_vga),
                allow_storage: taken.iter().any(|s| s.allow_storage),
                vf: Vec::new(),
                reset_method: None,
            }
        })
        .collect()
}

/// The answer of a detach.
#[derive(Debug, Default)]
pub struct DetachOutcome {
    /// The planner's answer.
    pub plan: Plan,
    /// What the binder did (none on a dry run or a refusal).
    pub bound: Option<bind::Outcome>,
    /// The kernel's verdict on each group handed over.
    pub verdicts: Vec<GroupVerdict>,
    /// Handover steps done now.
    pub handover: Vec<Step>,
    /// Why nothing was done, when something was refused.
    pub refusals: Vec<String>,
    /// Failures (the groups concerned were rolled back).
    pub errors: Vec<String>,
}

impl DetachOutcome {
    /// True when the detach did not happen as asked.
    pub fn failed(&self) -> bool {
        !self.refusals.is_empty()
            || !self.errors.is_empty()
            || self.verdicts.iter().any(|v| !v.verdict.is_ok())
    }
}

/// Addresses that name no device.
pub fn missing(addresses: &[PciAddress], devices: &[Device]) -> Vec<PciAddress> {
    addresses
        .iter()
        .copied()
        .filter(|a| !devices.iter().any(|d| d.address == *a))
        .collect()
}

/// Plans and (unless a dry run) carries out a detach. The caller holds the lock.
pub fn detach(host: &Host, config: &Config, req: &Request<'_>) -> DetachOutcome {
    let topo = crate::machine::read_topology(host);
    let sel = selectors(req, config, &topo.devices);
    let plan = plan::plan(&sel, &topo);
    let mut out = DetachOutcome::default();
    for w in &plan.warnings {
        out.refusals.push(w.clone());
    }
    for d in plan.with_action(Action::Refuse) {
        out.refusals
            .push(format!("{} refused: {}", d.address, d.reasons.join("; ")));
    }
    let binding: Vec<&plan::DevicePlan> = plan.with_action(Action::Bind).collect();
    let displays: Vec<PciAddress> = binding
        .iter()
        .filter(|d| d.class >> 16 == 0x03)
        .map(|d| d.address)
        .collect();
    if out.refusals.is_empty() && !req.force {
        for h in handover::drm_holders(host, &displays) {
            out.refusals.push(format!(
                "{h}: close it (stop the display manager, or name it in [handover] units), or use --force"
            ));
        }
    }
    if !out.refusals.is_empty() || req.dry_run || binding.is_empty() {
        out.verdicts = if req.dry_run || !out.refusals.is_empty() {
            Vec::new()
        } else {
            verdicts(host, &plan)
        };
        out.plan = plan;
        return out;
    }

    let mut record = match DetachRecord::load(host) {
        Ok(r) => r,
        Err(e) => {
            out.errors.push(format!(
                "the detach record is unreadable, nothing was done: {e}"
            ));
            out.plan = plan;
            return out;
        }
    };
    if !displays.is_empty() && config.handover.any() {
        // The consoles live on the boot display: a second card's detach leaves them be.
        let boot_display = topo
            .devices
            .iter()
            .any(|d| d.boot_vga && displays.contains(&d.address));
        let settings = crate::config::HandoverSettings {
            consoles: config.handover.consoles && boot_display,
            ..config.handover.clone()
        };
        let (steps, err) = handover::release(host, &settings, &displays);
        out.handover.clone_from(&steps);
        if let Some(e) = err {
            out.errors
                .push(format!("handover: {e}; nothing was detached"));
            out.errors
                .extend(handover::restore(host, &config.handover, &steps, |_| true));
            out.plan = plan;
            return out;
        }
        record.handover.extend(steps);
        for a in &displays {
            if !record.handover_for.contains(a) {
                record.handover_for.push(*a);
            }
        }
    }
    let cmdline = Cmdline::parse(&host.read("proc/cmdline").unwrap_or_default());
    let bound = bind::execute(host, &plan, &cmdline, config.bind.timeout());
    for r in &bound.devices {
        if r.outcome != DeviceOutcome::Bound {
            continue;
        }
        let Some(d) = plan.devices.iter().find(|d| d.address == r.address) else {
            continue;
        };
        record.devices.retain(|x| x.address != d.address);
        record.devices.push(Detached {
            address: d.address,
            id: d.id,
            iommu_group: d.iommu_group,
            driver: d.driver.clone(),
        });
    }
    out.errors
        .extend(bound.errors.iter().map(ToString::to_string));
    // A display that did not go keeps no handover: give the host its screen back.
    let kept: BTreeSet<PciAddress> = record.devices.iter().map(|d| d.address).collect();
    if !record.handover.is_empty() && !record.handover_for.iter().any(|a| kept.contains(a)) {
        out.errors.extend(handover::restore(
            host,
            &config.handover,
            &record.handover,
            |_| true,
        ));
        record.handover.clear();
        record.handover_for.clear();
    }
    if let Err(e) = record.save(host) {
        out.errors
            .push(format!("the detach record could not be written: {e}"));
    }
    out.verdicts = verdicts(host, &plan);
    out.bound = Some(bound);
    out.plan = plan;
    out
}

/// The kernel's verdict on every group of the plan whose selected devices are all on
/// vfio-pci now.
fn verdicts(host: &Host, plan: &Plan) -> Vec<GroupVerdict> {
    let groups: BTreeSet<u32> = plan
        .devices
        .iter()
        .filter(|d| d.selected)
        .filter_map(|d| d.iommu_group)
        .collect();
    groups
        .into_iter()
        .filter(|g| {
            plan.devices
                .iter()
                .filter(|d| d.selected && d.iommu_group == Some(*g))
                .all(|d| host.link_name(d.address.attr("driver")).as_deref() == Some(VFIO_DRIVER))
        })
        .map(|g| vfio::group_verdict(host, g))
        .collect()
}

/// What happens to one device on a reattach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReattachAction {
    /// Given back to its recorded driver.
    Reattach,
    /// Not on vfio-pci: nothing to do.
    NotDetached,
    /// On vfio-pci, but not by `detach`: left alone (`--force` takes it).
    LeftAlone,
}

/// The plan and outcome for one device on a reattach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReattachDevice {
    /// The device given back.
    pub address: PciAddress,
    /// `vendor:device`.
    pub id: PciId,
    /// Its IOMMU group.
    pub iommu_group: Option<u32>,
    /// Its driver now (before the reattach).
    pub driver: Option<String>,
    /// The driver the record says it came from.
    pub recorded_driver: Option<String>,
    /// What happens.
    pub action: ReattachAction,
    /// Why.
    pub reasons: Vec<String>,
    /// Its driver afterwards (absent on a dry run).
    pub driver_after: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

/// The answer of a reattach.
#[derive(Debug, Default)]
pub struct ReattachOutcome {
    /// One entry per device concerned.
    pub devices: Vec<ReattachDevice>,
    /// Handover steps restored.
    pub restored: Vec<Step>,
    /// Failures.
    pub errors: Vec<String>,
}

/// Plans and (unless a dry run) carries out a reattach. The caller holds the lock.
pub fn reattach(host: &Host, config: &Config, req: &Request<'_>) -> ReattachOutcome {
    let mut out = ReattachOutcome::default();
    let mut record = match DetachRecord::load(host) {
        Ok(r) => r,
        Err(e) if req.force => {
            out.errors.push(format!(
                "the detach record is unreadable ({e}); going by --force"
            ));
            DetachRecord::default()
        }
        Err(e) => {
            out.errors.push(format!(
                "the detach record is unreadable, nothing was done: {e}"
            ));
            return out;
        }
    };
    let devices = pci::scan(host);
    let mut wanted: BTreeSet<PciAddress> = BTreeSet::new();
    for a in req.addresses {
        wanted.extend(
            devices
                .iter()
                .filter(|d| d.address == *a || (req.slot && d.address.same_slot(a)))
                .map(|d| d.address),
        );
    }
    for d in devices.iter().filter(|d| wanted.contains(&d.address)) {
        let rec = record.get(d.address);
        // On vfio-pci, or held for it (an override, or a recorded device left without a
        // driver by an unbind that finished late).
        let on_vfio = d.driver.as_deref() == Some(VFIO_DRIVER)
            || d.driver_override.as_deref() == Some(VFIO_DRIVER)
            || (d.driver.is_none() && rec.is_some_and(|r| r.driver.is_some()));
        let (action, why) = match (on_vfio, rec) {
            (false, _) => (
                ReattachAction::NotDetached,
                format!(
                    "not on vfio-pci (on {}): nothing to do",
                    d.driver.as_deref().unwrap_or("no driver")
                ),
            ),
            (true, Some(r)) => (
                ReattachAction::Reattach,
                format!(
                    "detached from {}; given back to it",
                    r.driver.as_deref().unwrap_or("no driver")
                ),
            ),
            (true, None) if req.force => (
                ReattachAction::Reattach,
                "not detached by vfio-early; --force gives it to whichever host driver claims it".to_owned(),
            ),
            (true, None) => (
                ReattachAction::LeftAlone,
                "on vfio-pci, but vfio-early did not detach it (the boot config, or another tool): left alone; --force takes it"
                    .to_owned(),
            ),
        };
        out.devices.push(ReattachDevice {
            address: d.address,
            id: d.id(),
            iommu_group: d.iommu_group,
            driver: d.driver.clone(),
            recorded_driver: rec.and_then(|r| r.driver.clone()),
            action,
            reasons: vec![why],
            driver_after: None,
            error: None,
        });
    }
    if req.dry_run {
        return out;
    }
    let targets: Vec<(PciAddress, Expect)> = out
        .devices
        .iter()
        .filter(|d| d.action == ReattachAction::Reattach)
        .map(|d| {
            let want = match record.get(d.address) {
                Some(r) => r.driver.clone().map_or(Expect::Nothing, Expect::Driver),
                None => Expect::Any,
            };
            (d.address, want)
        })
        .collect();
    let gives_back_display = record
        .handover_for
        .iter()
        .any(|a| targets.iter().any(|(t, _)| t == a));
    if gives_back_display {
        out.errors.extend(handover::restore(
            host,
            &config.handover,
            &record.handover,
            handover::before_reattach,
        ));
    }
    // Group by group: a group that cannot be given back whole is put back on vfio-pci.
    let group_of = |a: PciAddress| {
        out.devices
            .iter()
            .find(|d| d.address == a)
            .and_then(|d| d.iommu_group)
    };
    let mut groups: std::collections::BTreeMap<Option<u32>, Vec<(PciAddress, Expect)>> =
        std::collections::BTreeMap::new();
    for (a, want) in &targets {
        groups
            .entry(group_of(*a))
            .or_default()
            .push((*a, want.clone()));
    }
    let released: Vec<bind::Released> = groups
        .values()
        .flat_map(|g| bind::release(host, g, config.bind.timeout()))
        .collect();
    for r in released {
        if let Some(d) = out.devices.iter_mut().find(|d| d.address == r.address) {
            d.driver_after.clone_from(&r.driver);
            d.error.clone_from(&r.error);
        }
        if let Some(e) = r.error {
            if !out.errors.contains(&e) {
                out.errors.push(e);
            }
        }
        // Off vfio-pci, the device is the host's again, whatever took it; a group put
        // back on vfio-pci stays recorded, for the next reattach.
        if !r.rolled_back && r.driver.as_deref() != Some(VFIO_DRIVER) {
            record.devices.retain(|x| x.address != r.address);
        }
    }
    for d in out
        .devices
        .iter()
        .filter(|d| d.action == ReattachAction::NotDetached)
    {
        record.devices.retain(|x| x.address != d.address);
    }
    let kept: BTreeSet<PciAddress> = record.devices.iter().map(|d| d.address).collect();
    if !record.handover.is_empty() && !record.handover_for.iter().any(|a| kept.contains(a)) {
        if !gives_back_display {
            out.errors.extend(handover::restore(
                host,
                &config.handover,
                &record.handover,
                handover::before_reattach,
            ));
        }
        out.errors.extend(handover::restore(
            host,
            &config.handover,
            &record.handover,
            handover::after_reattach,
        ));
        out.restored = std::mem::take(&mut record.handover);
        record.handover_for.clear();
    }
    if let Err(e) = record.save(host) {
        out.errors
            .push(format!("the detach record could not be written: {e}"));
    }
    out
}

/// Loads the config; an absent default file is an empty config.
pub(crate) fn load_config(
    host: &Host,
    path: Option<&std::path::PathBuf>,
) -> Result<Config, ConfigError> {
    let p = path
        .cloned()
        .unwrap_or_else(|| host.path(crate::config::DEFAULT_PATH));
    match Config::load(&p) {
        Ok(c) => Ok(c),
        Err(_) if path.is_none() && !p.exists() => Config::parse(&p, b""),
        Err(e) => Err(e),
    }
}

/// Why a detach or reattach did not start.
#[derive(Debug, thiserror::Error)]
enum Preflight {
    /// Addresses that name no device (a usage error, 2).
    #[error("{}", NoDevice(.0))]
    NoDevice(Vec<PciAddress>),
    /// Another run holds the lock (1).
    #[error("another vfio-early run holds the lock: {0}")]
    Locked(HostError),
}

/// `no device at A` per address, one a line.
struct NoDevice<'a>(&'a [PciAddress]);

impl std::fmt::Display for NoDevice<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "\n" };
            write!(f, "{sep}no device at {a}")?;
        }
        Ok(())
    }
}

/// What a detach or reattach needs before it acts: every address names a device, and
/// the lock (none on a dry run).
fn preflight(
    host: &Host,
    config: &Config,
    req: &Request<'_>,
) -> Result<Option<crate::host::RunLock>, Preflight> {
    let devices = crate::pci::scan(host);
    let missing = missing(req.addresses, &devices);
    if !missing.is_empty() {
        return Err(Preflight::NoDevice(missing));
    }
    if req.dry_run {
        return Ok(None);
    }
    host.lock(lock_timeout(config))
        .map(Some)
        .map_err(Preflight::Locked)
}

/// Detaches under the lock (none on a dry run); the outcome and the exit (1 refused
/// or failed, 2 no such device). Shared by `detach` and the libvirt hook.
pub(crate) fn detach_locked(
    host: &Host,
    config: &Config,
    req: &Request<'_>,
) -> (DetachOutcome, Exit) {
    match preflight(host, config, req) {
        Err(Preflight::NoDevice(missing)) => (
            DetachOutcome {
                refusals: missing
                    .iter()
                    .map(|a| format!("no device at {a}"))
                    .collect(),
                ..DetachOutcome::default()
            },
            Exit::Usage,
        ),
        Err(e) => (
            DetachOutcome {
                errors: vec![e.to_string()],
                ..DetachOutcome::default()
            },
            Exit::Problem,
        ),
        Ok(_lock) => {
            let out = detach(host, config, req);
            let exit = Exit::problem_if(out.failed());
            (out, exit)
        }
    }
}

/// Reattaches under the lock; the outcome and the exit.
pub(crate) fn reattach_locked(
    host: &Host,
    config: &Config,
    req: &Request<'_>,
) -> (ReattachOutcome, Exit) {
    match preflight(host, config, req) {
        Err(e) => {
            let exit = match e {
                Preflight::NoDevice(_) => Exit::Usage,
                Preflight::Locked(_) => Exit::Problem,
            };
            (
                ReattachOutcome {
                    errors: e.to_string().lines().map(str::to_owned).collect(),
                    ..ReattachOutcome::default()
                },
                exit,
            )
        }
        Ok(_lock) => {
            let out = reattach(host, config, req);
            let exit = Exit::problem_if(!out.errors.is_empty());
            (out, exit)
        }
    }
}

/// The bound on a whole run: the lock wait.
pub(crate) fn lock_timeout(config: &Config) -> Duration {
    config.bind.timeout().saturating_mul(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use testing::{seed_machine, Dev};

    fn config(text: &str) -> Config {
        Config::parse(Path::new("t.toml"), text.as_bytes()).unwrap()
    }

    fn addrs(list: &[&str]) -> Vec<PciAddress> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn req(a: &[PciAddress], slot: bool) -> Request<'_> {
        Request {
            addresses: a,
            slot,
            dry_run: false,
            force: false,
        }
    }

    #[test]
    fn the_record_round_trips_and_an_empty_one_leaves_no_file() {
        let t = seed_machine(true);
        let host = Host::new(t.root());
        assert_eq!(DetachRecord::load(&host).unwrap(), DetachRecord::default());
        let r = DetachRecord {
            version: RECORD_VERSION,
            devices: vec![Detached {
                address: "0000:01:00.0".parse().unwrap(),
                id: "1002:6779".parse().unwrap(),
                iommu_group: Some(1),
                driver: Some("radeon".into()),
            }],
            handover: vec![
                Step::Vtconsole { index: 1 },
                Step::Unit {
                    name: "sddm.service".into(),
                },
            ],
            handover_for: addrs(&["0000:01:00.0"]),
        };
        r.save(&host).unwrap();
        let text = t.read(RECORD_PATH);
        assert!(text.contains("\"step\": \"vtconsole\""), "{text}");
        assert_eq!(DetachRecord::load(&host).unwrap(), r);
        DetachRecord::default().save(&host).unwrap();
        assert!(!t.path(RECORD_PATH).exists());
        t.file(RECORD_PATH, "{ not json");
        let e = DetachRecord::load(&host).unwrap_err();
        assert!(matches!(e, RecordError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains("detached.json"), "{e}");
    }

    #[test]
    fn a_function_alone_is_refused_naming_its_group_mate_and_nothing_is_touched() {
        let t = seed_machine(true);
        t.driver("vfio-pci");
        let host = Host::new(t.root());
        let a = addrs(&["0000:01:00.0"]);
        let out = detach(&host, &config(""), &req(&a, false));
        let all = out.refusals.join("\n");
        assert!(
            all.contains("0000:01:00.1") && all.contains("snd_hda_intel"),
            "{all}"
        );
        assert!(out.bound.is_none());
        assert_eq!(
            t.read("sys/bus/pci/devices/0000:01:00.0/driver_override"),
            "(null)\n"
        );
        assert!(!t.path(RECORD_PATH).exists());
    }

    #[test]
    fn slot_takes_every_function_and_the_boot_display_needs_the_config() {
        let t = seed_machine(true);
        let host = Host::new(t.root());
        let a = addrs(&["0000:01:00.0"]);
        let out = detach(
            &host,
            &config(""),
            &Request {
                dry_run: true,
                ..req(&a, true)
            },
        );
        assert!(out.refusals.is_empty(), "{:?}", out.refusals);
        assert_eq!(out.plan.with_action(Action::Bind).count(), 2);
        // The boot display (00:01.0, group 0, alone) is refused without the config...
        let b = addrs(&["0000:00:01.0"]);
        let out = detach(
            &host,
            &config(""),
            &Request {
                dry_run: true,
                ..req(&b, false)
            },
        );
        assert!(
            out.refusals.join(" ").contains("boot display"),
            "{:?}",
            out.refusals
        );
        // ... and allowed by the config's own entry for it.
        let c = config("[[device]]\naddress = \"0000:00:01.0\"\nallow_boot_vga = true\n");
        let out = detach(
            &host,
            &c,
            &Request {
                dry_run: true,
                ..req(&b, false)
            },
        );
        assert!(out.refusals.is_empty(), "{:?}", out.refusals);
        // Bridges never.
        let p = addrs(&["0000:00:02.0"]);
        let out = detach(
            &host,
            &config(""),
            &Request {
                dry_run: true,
                ..req(&p, false)
            },
        );
        assert!(out.refusals.join(" ").contains("bridge"));
    }

    #[test]
    fn consoles_are_released_for_the_boot_display_only_and_restored_when_it_fails() {
        let t = seed_machine(true);
        t.driver("vfio-pci");
        t.file(
            "sys/class/vtconsole/vtcon1/name",
            "(M) frame buffer device\n",
        );
        t.file("sys/class/vtconsole/vtcon1/bind", "1\n");
        let host = Host::new(t.root());
        let c = config(
            "[[device]]\naddress = \"0000:00:01.0\"\nallow_boot_vga = true\n\
             [bind]\ntimeout_ms = 200\n[handover]\nconsoles = true\n",
        );
        let card = addrs(&["0000:01:00.0"]);
        let out = detach(&host, &c, &req(&card, true));
        assert!(out.handover.is_empty(), "a second card: {:?}", out.handover);
        let boot = addrs(&["0000:00:01.0"]);
        let out = detach(&host, &c, &req(&boot, false));
        assert_eq!(out.handover, [Step::Vtconsole { index: 1 }]);
        // A fixture never binds: the group is rolled back, and the console given back.
        assert!(
            out.errors.iter().any(|e| e.contains("rolled back")),
            "{:?}",
            out.errors
        );
        assert_eq!(t.read("sys/class/vtconsole/vtcon1/bind"), "1");
        assert_eq!(DetachRecord::load(&host).unwrap(), DetachRecord::default());
    }

    #[test]
    fn a_failed_bind_is_rolled_back_and_not_recorded() {
        let t = seed_machine(true);
        t.driver("vfio-pci");
        let host = Host::new(t.root());
        let a = addrs(&["0000:01:00.0"]);
        let out = detach(&host, &config("[bind]\ntimeout_ms = 200\n"), &req(&a, true));
        assert!(
            out.errors.iter().any(|e| e.contains("rolled back")),
            "{:?}",
            out.errors
        );
        assert!(out.failed());
        assert_eq!(DetachRecord::load(&host).unwrap(), DetachRecord::default());
    }

    #[test]
    fn reattach_leaves_alone_what_it_did_not_detach_and_gives_back_what_it_did() {
        let t = seed_machine(true);
        t.add(
            &Dev::new("0000:03:00.0", (0x8086, 0x10d3), 0x020000)
                .group(4)
                .driver("vfio-pci"),
        );
        t.add(
            &Dev::new("0000:04:00.0", (0x8086, 0x10d3), 0x020000)
                .group(5)
                .driver("vfio-pci"),
        );
        let host = Host::new(t.root());
        DetachRecord {
            version: RECORD_VERSION,
            devices: vec![Detached {
                address: "0000:04:00.0".parse().unwrap(),
                id: "8086:10d3".parse().unwrap(),
                iommu_group: Some(5),
                driver: Some("e1000e".into()),
            }],
            ..DetachRecord::default()
        }
        .save(&host)
        .unwrap();
        let a = addrs(&["0000:03:00.0", "0000:04:00.0", "0000:01:00.0"]);
        let out = reattach(
            &host,
            &config("[bind]\ntimeout_ms = 500\n"),
            &req(&a, false),
        );
        let act = |x: &str| {
            out.devices
                .iter()
                .find(|d| d.address.to_string() == x)
                .unwrap()
        };
        assert_eq!(act("0000:03:00.0").action, ReattachAction::LeftAlone);
        assert_eq!(
            t.read("sys/bus/pci/drivers/vfio-pci/unbind"),
            "0000:04:00.0",
            "only the recorded one"
        );
        assert_eq!(act("0000:04:00.0").action, ReattachAction::Reattach);
        assert_eq!(
            act("0000:04:00.0").recorded_driver.as_deref(),
            Some("e1000e")
        );
        assert_eq!(act("0000:01:00.0").action, ReattachAction::NotDetached);
        // The fixture's link stays on vfio-pci: reported, and the record keeps it.
        assert!(
            out.errors.iter().any(|e| e.contains("not e1000e")),
            "{:?}",
            out.errors
        );
        assert_eq!(DetachRecord::load(&host).unwrap().devices.len(), 1);
        // Once e1000e has it again, a second reattach finds nothing to do and clears it.
        t.bind_link("0000:04:00.0", "e1000e");
        let out = reattach(&host, &config(""), &req(&a[1..2], false));
        assert_eq!(out.devices[0].action, ReattachAction::NotDetached);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert!(!t.path(RECORD_PATH).exists());
    }
}
