//! Host-level traps: what makes a boot differ from its plan, found once, pure.
//!
//! The planner judges groups; these are the machine's settings around it that change
//! what the boot will really do. Each is a [`Trap`] on the plan, shown identically by
//! `bind --dry-run` (JSON `warnings`), `config suggest` (a `warning:` line on stderr
//! and a comment in the proposal), `apply` (first, before it looks for a generator)
//! and `check` (a finding):
//!
//! - `vfio-pci.ids=` on the command line, or `options vfio-pci ids=` in modprobe.d,
//!   taking a device the config does not select: an identical second card, or the
//!   boot display (vfio-pci binds *every* device with the id);
//! - `pcie_acs_override=`: the kernel pretends devices are isolated, so the groups the
//!   plan is judged on are not real isolation;
//! - a host driver that will win the race for a device to bind: built into the
//!   kernel, or loaded early on purpose (`rd.driver.pre=`, dracut `force_drivers`);
//!   the agent then has to unbind it;
//! - mkinitcpio `HOOKS` putting `vfio-early` after `udev` or `kms`;
//! - a storage controller to bind that holds a mounted filesystem or swap (directly,
//!   or under md / LVM / dm-crypt).
//!
//! A trap whose [`Trap::differs`] is true means the boot would not do what the plan
//! says (`apply` does not rebuild an image over it without `--force`; `check` fails);
//! the others are cautions (`check` warns).

use std::collections::{BTreeMap, BTreeSet};

use crate::cmdline::Cmdline;
use crate::cmdline_check::{acs_override, ids_entry_trap, IdEntry, IdsTrap};
use crate::modules::normalize;
use crate::pci::PciAddress;
use crate::plan::{Action, Plan, Topology};

/// Which trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `vfio-pci ids` takes an unconfigured device with the same id.
    IdsTakeUnconfigured,
    /// `vfio-pci ids` takes the boot display.
    IdsTakeBootDisplay,
    /// `pcie_acs_override=` makes the groups fictitious.
    AcsOverride,
    /// A host driver probes a device to bind before the agent runs.
    DriverWinsRace,
    /// mkinitcpio `HOOKS` order.
    HookOrder,
    /// A storage controller to bind holds a mounted filesystem or swap.
    StorageInUse,
}

/// One trap, as every view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    /// Which.
    pub kind: Kind,
    /// The name `check` gives its finding.
    pub check: String,
    /// What happens, as a sentence.
    pub text: String,
    /// What to do.
    pub hint: String,
    /// The boot would differ from the plan (not merely a caution).
    pub differs: bool,
}

impl Trap {
    /// The one-line warning: what happens, then what to do.
    pub fn warning(&self) -> String {
        format!("{}; {}", self.text, self.hint)
    }
}

/// Where a `vfio-pci` `ids` value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdsSource {
    /// The finding name (`cmdline vfio-pci.ids`, `modprobe.d vfio-pci ids`).
    pub check: String,
    /// The parameter as written before `=` (`vfio-pci.ids`, `options vfio-pci ids`).
    pub param: String,
    /// Where it is written: empty for the command line, ` in /etc/modprobe.d/F`.
    pub origin: String,
    /// What removing it means.
    pub remove: String,
    /// The value.
    pub value: String,
}

/// What the traps are judged on, gathered by [`crate::machine::read_facts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The kernel command line.
    pub cmdline: Cmdline,
    /// `options vfio-pci ids=` in modprobe.d (the last one), with its file.
    pub modprobe_ids: Option<(String, String)>,
    /// Modules built into the running kernel (`modules.builtin`), normalised.
    pub builtin: BTreeSet<String>,
    /// dracut `force_drivers`, per config file, normalised.
    pub force_drivers: Vec<(String, BTreeSet<String>)>,
    /// mkinitcpio `HOOKS`, with the file that set them last.
    pub hooks: Option<(String, Vec<String>)>,
    /// For each storage controller of the plan: what of the host lives on it
    /// (`/ (/dev/sda2)`, `swap /dev/sda3`).
    pub storage_use: BTreeMap<PciAddress, Vec<String>>,
}

impl Facts {
    /// The `vfio-pci` `ids` value in effect: the command line's (modprobe applies it
    /// last), else modprobe.d's.
    pub fn ids(&self) -> Option<IdsSource> {
        if let Some(v) = self.cmdline.last("vfio_pci.ids") {
            return Some(IdsSource {
                check: "cmdline vfio-pci.ids".to_owned(),
                param: "vfio-pci.ids".to_owned(),
                origin: String::new(),
                remove: "remove vfio-pci.ids= from the kernel command line".to_owned(),
                value: v.unwrap_or_default().to_owned(),
            });
        }
        self.modprobe_ids.as_ref().map(|(file, v)| IdsSource {
            check: "modprobe.d vfio-pci ids".to_owned(),
            param: "options vfio-pci ids".to_owned(),
            origin: format!(" in /{file}"),
            remove: format!("remove `options vfio-pci ids=` from /{file}"),
            value: v.clone(),
        })
    }

    /// Why `driver` will already be bound when the agent runs, and the fix, when this
    /// machine loads it early: built in, `rd.driver.pre=`, dracut `force_drivers`.
    pub(crate) fn early_loader(&self, driver: &str) -> Option<(String, String)> {
        let drv = normalize(driver);
        if self.builtin.contains(&drv) {
            return Some((
                format!(
                    "{driver} is built into the kernel, so it probes before any initramfs hook"
                ),
                format!(
                    "build {driver} as a module (=m), or leave it: the agent unbinds it at boot"
                ),
            ));
        }
        let pre: BTreeSet<String> = self
            .cmdline
            .all("rd.driver.pre")
            .into_iter()
            .flatten()
            .flat_map(|v| v.split(','))
            .map(normalize)
            .collect();
        if pre.contains(&drv) {
            return Some((
                format!("rd.driver.pre={driver} loads it before the hook"),
                format!("remove {driver} from rd.driver.pre= on the kernel command line"),
            ));
        }
        self.force_drivers
            .iter()
            .find(|(_, set)| set.contains(&drv))
            .map(|(file, _)| {
                (
                    format!("force_drivers in /{file} loads {driver} early"),
                    format!("remove {driver} from force_drivers in /{file}, then dracut -f"),
                )
            })
    }
}

/// Every trap of a plan on this machine.
pub fn find(plan: &Plan, topo: &Topology, facts: &Facts) -> Vec<Trap> {
    let mut out = Vec::new();
    let configured: Vec<PciAddress> = plan
        .devices
        .iter()
        .filter(|d| d.selected)
        .map(|d| d.address)
        .collect();
    if let Some(src) = facts.ids() {
        out.extend(ids_traps(&src, topo, &configured));
    }
    if let Some((text, hint)) = acs_override(&facts.cmdline) {
        out.push(Trap {
            kind: Kind::AcsOverride,
            check: "cmdline acs override".to_owned(),
            text,
            hint,
            differs: false,
        });
    }
    for d in plan.with_action(Action::Bind) {
        let driver = d
            .driver
            .clone()
            .or_else(|| topo.claimants.get(&d.address).cloned());
        if let Some((why, fix)) = driver.as_deref().and_then(|drv| facts.early_loader(drv)) {
            out.push(Trap {
                kind: Kind::DriverWinsRace,
                check: format!("race {}", d.address),
                text: format!(
                    "{}: a host driver wins the race: {why}; the agent will have to unbind it at boot",
                    d.address
                ),
                hint: fix,
                differs: false,
            });
        }
    }
    if let Some((file, hooks)) = &facts.hooks {
        if let Some(at) = hooks.iter().position(|h| h == "vfio-early") {
            let before: Vec<&str> = hooks[..at]
                .iter()
                .map(String::as_str)
                .filter(|h| matches!(*h, "udev" | "kms" | "modconf"))
                .collect();
            if !before.is_empty() {
                out.push(Trap {
                    kind: Kind::HookOrder,
                    check: "mkinitcpio hooks".to_owned(),
                    text: format!(
                        "HOOKS in /{file} put vfio-early after {}: the GPU driver can be loaded before the agent runs",
                        before.join(", ")
                    ),
                    hint: "put vfio-early after 'base' and 'systemd', before 'udev', 'kms' and 'modconf', then run vfio-early apply".to_owned(),
                    differs: true,
                });
            }
        }
    }
    for d in plan.with_action(Action::Bind) {
        if let Some(uses) = facts.storage_use.get(&d.address).filter(|u| !u.is_empty()) {
            out.push(Trap {
                kind: Kind::StorageInUse,
                check: format!("storage {}", d.address),
                text: format!(
                    "{} is a storage controller the host uses: {}; binding it takes that from the host at boot",
                    d.address,
                    uses.join(", ")
                ),
                hint: "do not select it (allow_storage = true is for a controller the host does not use)".to_owned(),
                differs: true,
            });
        }
    }
    out
}

/// The identical-device and boot-display traps of one `ids` value.
fn ids_traps(src: &IdsSource, topo: &Topology, configured: &[PciAddress]) -> Vec<Trap> {
    let mut out = Vec::new();
    for raw in src.value.split(',').filter(|w| !w.is_empty()) {
        let Some(id) = IdEntry::parse(raw) else {
            continue;
        };
        let Some((kind, extra)) = ids_entry_trap(&id, &topo.devices, configured) else {
            continue;
        };
        let kind = match kind {
            IdsTrap::Unconfigured => Kind::IdsTakeUnconfigured,
            IdsTrap::BootDisplay => Kind::IdsTakeBootDisplay,
        };
        let list = extra
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let (text, hint) = match kind {
            Kind::IdsTakeUnconfigured => (
                format!(
                    "{}={raw}{} also takes {list} (same id, not configured): the identical-device trap",
                    src.param, src.origin
                ),
                format!(
                    "{} and let the config select by address (vfio-early binds only those)",
                    src.remove
                ),
            ),
            _ => (
                format!("{}={raw}{} takes the boot display {list}", src.param, src.origin),
                format!("{}; select devices by address in the config", src.remove),
            ),
        };
        out.push(Trap {
            kind,
            check: src.check.clone(),
            text,
            hint,
            differs: true,
        });
    }
    out
}
