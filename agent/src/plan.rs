//! The planner: selectors + topology -> what to do with each IOMMU group. No I/O.
//!
//! A group can be handed to vfio only as a whole: the kernel (5.19+) lets userspace
//! use a group only when every device in it is on a driver that manages DMA for vfio
//! (`driver_managed_dma`: vfio-pci and its variants, pci-stub, pcieport; the one rule
//! is [`crate::pci::driver_manages_dma`]) or on none. So for every group with a
//! selected device, each other member must be one of:
//! - selected too;
//! - already on such a driver (vfio-pci, a variant such as `mlx5_vfio_pci`, pci-stub);
//! - a bridge (host or PCI-to-PCI) on `pcieport` or on no driver;
//! - an endpoint no host driver would claim. At boot, before coldplug, most devices
//!   have no driver *yet*, so "driverless" alone proves nothing: the endpoint's
//!   `modalias` is matched against the kernel's alias tables ([`Topology::claimants`]).
//!
//! Otherwise the whole group is refused, and the reasons name the members that stand
//! in the way. Independently, a selected boot display (`boot_vga` = 1) or storage
//! controller (class 0x01, maybe the root disk) is refused unless its config entry
//! allows it explicitly. An SR-IOV physical function with VFs made is refused too: its
//! driver made them, and unbinding it removes them (select the VFs, `vf = [...]`).
//!
//! [`group_verdict`] asks the same planner what any config could do with one group
//! (`ready`, `possible` with what to select, `impossible` with why): `groups` and
//! `config suggest` show its answer and never judge on their own.
//!
//! An Arm SMMU (Linux 6.1 on arm64) gives a PCI device its IOMMU group only when a
//! driver probes it ([`Topology::groups_at_probe`]): at boot, before coldplug, a
//! driverless endpoint has no group yet. Its group is then planned as its slot (the
//! functions of one card share a group at the least, [`GroupKey::AtProbe`]), under the
//! same member rules; the binder checks the group the kernel really made once vfio-pci
//! took the devices, and rolls back when it holds anything else.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::{Functions, Selector};
use crate::pci::{driver_manages_dma, is_vfio_driver, Device, PciAddress, PciId, Sriov};

/// What the planner knows of the machine.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Every PCI device, sorted by address.
    pub devices: Vec<Device>,
    /// Whether the kernel shows IOMMU groups at all.
    pub iommu_groups: bool,
    /// For driverless endpoints: the host module that would claim each one.
    pub claimants: BTreeMap<PciAddress, String>,
    /// Whether alias tables were available (without them, nothing proves a driverless
    /// endpoint stays driverless).
    pub alias_tables: bool,
    /// Without IOMMU groups: why, and what fixes it on this machine (fitted to its
    /// IOMMU vendor, or to a virtual machine), as one sentence.
    pub no_iommu: Option<String>,
    /// Whether the IOMMU gives a device its group when a driver probes it (an Arm
    /// SMMU): a device without a group is then not refused for it.
    pub groups_at_probe: bool,
    /// Groups whose membership is in doubt ([`crate::pci::group_problems`]: the
    /// kernel's group directory and the devices' links disagree, or a member is not a
    /// PCI function), with the reasons. Such a group is refused whole.
    pub group_problems: BTreeMap<u32, Vec<String>>,
}

/// The unit a plan hands over whole: a kernel IOMMU group, or, where groups are made
/// at probe, the slot whose functions will share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    /// The kernel's IOMMU group number.
    Iommu(u32),
    /// The group vfio-pci's probe will make, for the slot of this function 0.
    AtProbe(PciAddress),
}

impl GroupKey {
    /// The key of a device: its group, or its slot where groups are made at probe.
    pub fn of(address: PciAddress, group: Option<u32>, at_probe: bool) -> Option<Self> {
        match group {
            Some(g) => Some(Self::Iommu(g)),
            None if at_probe => Some(Self::AtProbe(PciAddress {
                function: 0,
                ..address
            })),
            None => None,
        }
    }
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Iommu(g) => write!(f, "IOMMU group {g}"),
            Self::AtProbe(a) => write!(
                f,
                "the IOMMU group of slot {:04x}:{:02x}:{:02x} (made when vfio-pci probes it)",
                a.domain, a.bus, a.device
            ),
        }
    }
}

/// What happens to one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Will be handed to vfio-pci.
    Bind,
    /// Already on vfio-pci; nothing to do.
    AlreadyBound,
    /// Not selected, and no obstacle (a bridge, a driverless endpoint).
    Skip,
    /// Selected but unsafe or impossible, or blocking a selected device.
    Refuse,
}

impl Action {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::AlreadyBound => "already-bound",
            Self::Skip => "skip",
            Self::Refuse => "refuse",
        }
    }
}

/// The plan for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicePlan {
    /// Where the device sits: the plan's key (JSON: `address`).
    pub address: PciAddress,
    /// `vendor:device` (JSON: the string).
    pub id: PciId,
    /// Class code, 24 bits (JSON: six hex digits).
    #[serde(serialize_with = "class_hex")]
    pub class: u32,
    /// Its IOMMU group.
    pub iommu_group: Option<u32>,
    /// No group yet: the IOMMU makes it when vfio-pci probes the device.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub group_at_probe: bool,
    /// Its driver now.
    pub driver: Option<String>,
    /// Its `driver_override` now, when one is set (a binding restores it on rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_override: Option<String>,
    /// Whether the config selects it.
    pub selected: bool,
    /// The config entries (1-based) that select it.
    pub selected_by: Vec<usize>,
    /// What happens to it.
    pub action: Action,
    /// Why, in sentences a user can act on.
    pub reasons: Vec<String>,
}

impl Plan {
    /// The `reset_method` each device going to vfio-pci gets at boot: from the entries
    /// that name it (by address, or by id when the entry has no address; a slot's
    /// other functions are not named), the first in file order.
    pub fn reset_targets<'a>(
        &self,
        selectors: &'a [Selector],
    ) -> Vec<(PciAddress, &'a [crate::reset::Method])> {
        self.devices
            .iter()
            .filter(|d| matches!(d.action, Action::Bind | Action::AlreadyBound))
            .filter_map(|d| {
                selectors.iter().find_map(|s| {
                    let named = match s.address {
                        Some(a) => a == d.address,
                        None => s
                            .id
                            .is_some_and(|id| id.vendor == d.id.vendor && id.device == d.id.device),
                    };
                    let m = s.reset_method.as_deref()?;
                    (named && d.selected_by.contains(&s.index)).then_some((d.address, m))
                })
            })
            .collect()
    }
}

/// Serialises a class code as six hex digits, as sysfs and `lspci -n` show it.
fn class_hex<S: serde::Serializer>(class: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{class:06x}"))
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Every selected device and every other member of an affected group, by address.
    pub devices: Vec<DevicePlan>,
    /// Problems that concern no single device (a selector matching nothing).
    pub warnings: Vec<String>,
    /// Per group with a selected device that cannot be handed over: the members in
    /// the way (not part of the JSON; `groups` and `config suggest` read it).
    #[serde(skip)]
    pub blockers: BTreeMap<u32, Vec<Blocker>>,
}

/// What stops a group from going to vfio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedBy {
    /// One member.
    Member(PciAddress),
    /// The group's membership itself is in doubt ([`Topology::group_problems`]): no
    /// member's own fault, so it stands against every selected member.
    Membership,
}

impl BlockedBy {
    /// The member, when one member is in the way.
    pub fn member(self) -> Option<PciAddress> {
        match self {
            Self::Member(a) => Some(a),
            Self::Membership => None,
        }
    }
}

/// A member (or the membership) that stops its group from going to vfio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// What is in the way.
    pub by: BlockedBy,
    /// Why, as a sentence.
    pub reason: String,
    /// It is unselected and would be fine if selected (a host driver's endpoint);
    /// false when the device is refused itself (a bridge, the boot display...).
    pub selectable: bool,
}

impl Plan {
    /// Devices with a given action.
    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &DevicePlan> {
        self.devices.iter().filter(move |d| d.action == action)
    }

    /// Groups that have devices to bind, each with those devices in address order.
    pub fn bind_groups(&self) -> BTreeMap<GroupKey, Vec<&DevicePlan>> {
        let mut groups: BTreeMap<GroupKey, Vec<&DevicePlan>> = BTreeMap::new();
        for d in self.with_action(Action::Bind) {
            if let Some(g) = GroupKey::of(d.address, d.iommu_group, d.group_at_probe) {
                groups.entry(g).or_default().push(d);
            }
        }
        groups
    }

    /// Refusals the config asked for: selected devices, and devices an entry named
    /// but could not take (an id mismatch at its address).
    pub fn refusals(&self) -> impl Iterator<Item = &DevicePlan> {
        self.with_action(Action::Refuse)
            .filter(|d| d.selected || !d.selected_by.is_empty())
    }

    /// True when something was refused or warned about.
    pub fn has_problems(&self) -> bool {
        !self.warnings.is_empty() || self.with_action(Action::Refuse).next().is_some()
    }
}

/// Why a selected device is taken, merged over every selector that names it.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// The config entries (1-based) that select it.
    pub by: BTreeSet<usize>,
    /// One of them allows the boot display.
    pub allow_boot_vga: bool,
    /// One of them allows a storage controller.
    pub allow_storage: bool,
}

/// A short name for a device in messages: address, class name, driver.
fn describe(d: &Device) -> String {
    let kind = class_name(d.class);
    match &d.driver {
        Some(drv) => format!("{} ({kind}, on {drv})", d.address),
        None => format!("{} ({kind})", d.address),
    }
}

/// A coarse English name for a class code (the full names come from `pci.ids`).
pub fn class_name(class: u32) -> &'static str {
    match class >> 8 {
        0x0100..=0x01ff => "storage controller",
        0x0200..=0x02ff => "network controller",
        0x0300 => "VGA controller",
        0x0302 => "3D controller",
        0x0380 | 0x0301 => "display controller",
        0x0403 => "audio device",
        0x0400..=0x04ff => "multimedia controller",
        0x0600 => "host bridge",
        0x0601 => "ISA bridge",
        0x0604 | 0x0609 => "PCI bridge",
        0x0c03 => "USB controller",
        0x0c05 => "SMBus",
        0x0c00..=0x0cff => "serial bus controller",
        _ => "device",
    }
}

/// Whether an unselected member lets its group go to vfio, with the reason.
///
/// # Errors
/// The sentence naming the member and the driver that holds (or would hold) it.
pub(crate) fn member_ok(d: &Device, topo: &Topology) -> Result<String, String> {
    match d.driver.as_deref() {
        Some(drv) if is_vfio_driver(drv) => Ok(format!("already on {drv}")),
        Some("pcieport") if d.is_bridge() => Ok("bridge on pcieport".to_owned()),
        Some(drv) if drv != "pcieport" && driver_manages_dma(drv) => {
            Ok(format!("on {drv}, which leaves DMA to vfio"))
        }
        None if d.is_bridge() => Ok("bridge without a driver".to_owned()),
        Some(other) => Err(format!("{} stays with the host driver {other}", describe(d))),
        None => match topo.claimants.get(&d.address) {
            Some(m) => Err(format!("{} has no driver yet, but the host driver {m} would claim it", describe(d))),
            None if !topo.alias_tables => Err(format!(
                "{} has no driver yet, and without modules.alias nothing shows that no host driver will claim it",
                describe(d)
            )),
            None => Ok("no host driver claims it".to_owned()),
        },
    }
}

/// Which devices the selectors take.
#[derive(Debug, Default, Clone)]
pub struct Resolution {
    /// Selected devices, with why.
    pub selected: BTreeMap<PciAddress, Selection>,
    /// Devices named by address whose id does not match: refused outright, with why.
    pub mismatched: BTreeMap<PciAddress, (usize, String)>,
    /// Selectors that match nothing.
    pub warnings: Vec<String>,
}

/// Resolves selectors against the devices present: addresses, ids, whole slots.
pub fn resolve(selectors: &[Selector], devices: &[Device]) -> Resolution {
    let by_addr: BTreeMap<PciAddress, &Device> = devices.iter().map(|d| (d.address, d)).collect();
    resolve_in(selectors, devices, &by_addr)
}

fn resolve_in(
    selectors: &[Selector],
    devices: &[Device],
    by_addr: &BTreeMap<PciAddress, &Device>,
) -> Resolution {
    let mut out = Resolution::default();
    for sel in selectors {
        let roots: Vec<&Device> = match (sel.address, sel.id) {
            (Some(addr), id) => match by_addr.get(&addr) {
                None => {
                    out.warnings.push(format!("{sel}: no device at {addr}"));
                    continue;
                }
                Some(d) if id.is_some_and(|id| !id.matches(d)) => {
                    let id = id.map(|i| i.to_string()).unwrap_or_default();
                    let full = PciId {
                        subsystem: Some((d.subsystem_vendor, d.subsystem_device)),
                        ..d.id()
                    };
                    out.mismatched.insert(
                        addr,
                        (
                            sel.index,
                            format!(
                                "{sel}: the device at {addr} is {full}, not {id}; refusing rather than guessing"
                            ),
                        ),
                    );
                    continue;
                }
                Some(d) if !sel.vf.is_empty() => {
                    let vfs = vfs_of(d, &sel.vf, devices);
                    for (i, missing) in sel.vf.iter().zip(&vfs) {
                        if missing.is_none() {
                            out.warnings.push(vf_missing(sel, d, *i));
                        }
                    }
                    vfs.into_iter().flatten().collect()
                }
                Some(d) => vec![*d],
            },
            (None, Some(id)) => {
                let m: Vec<&Device> = devices.iter().filter(|d| id.matches(d)).collect();
                if m.is_empty() {
                    out.warnings.push(format!("{sel}: no device has id {id}"));
                }
                m
            }
            (None, None) => continue,
        };
        let mut take = |d: &Device| {
            let s = out.selected.entry(d.address).or_default();
            s.by.insert(sel.index);
            s.allow_boot_vga |= sel.allow_boot_vga;
            s.allow_storage |= sel.allow_storage;
        };
        for root in roots {
            match sel.functions {
                Functions::One => take(root),
                Functions::Slot => devices
                    .iter()
                    .filter(|d| d.address.same_slot(&root.address))
                    .for_each(&mut take),
            }
        }
    }
    out
}

/// The VFs `indexes` of the PF `pf`, each `None` when it has no such VF now.
fn vfs_of<'a>(pf: &Device, indexes: &[u16], devices: &'a [Device]) -> Vec<Option<&'a Device>> {
    indexes
        .iter()
        .map(|&i| devices.iter().find(|d| d.vf_of() == Some((pf.address, i))))
        .collect()
}

/// Why a selector's VF is not there: the PF is no PF, or has fewer VFs.
fn vf_missing(sel: &Selector, pf: &Device, index: u16) -> String {
    match &pf.sriov {
        Some(Sriov::Pf { numvfs, totalvfs, .. }) => format!(
            "{sel}: {} has no VF {index} ({numvfs} VFs made, at most {totalvfs}; an [[sriov]] entry makes them at boot)",
            pf.address
        ),
        _ => format!(
            "{sel}: {} is not an SR-IOV physical function (no sriov_totalvfs), so it has no VF {index}",
            pf.address
        ),
    }
}

/// Plans the binding of the selected devices.
pub fn plan(selectors: &[Selector], topo: &Topology) -> Plan {
    Planner::new(topo).plan(selectors)
}

/// A topology indexed once (devices by address, the members of each group) for the
/// many plans of one view: `groups` asks for every group's verdict, and each verdict
/// is a plan. The answers are [`plan`]'s and [`group_verdict`]'s; only the cost of
/// asking again differs (a plan costs its selected groups, not the whole machine).
#[derive(Debug)]
pub struct Planner<'a> {
    topo: &'a Topology,
    by_addr: BTreeMap<PciAddress, &'a Device>,
    groups: BTreeMap<GroupKey, Vec<&'a Device>>,
}

impl<'a> Planner<'a> {
    /// Indexes a topology.
    pub fn new(topo: &'a Topology) -> Self {
        let mut groups: BTreeMap<GroupKey, Vec<&Device>> = BTreeMap::new();
        for d in &topo.devices {
            if let Some(g) = GroupKey::of(d.address, d.iommu_group, topo.groups_at_probe) {
                groups.entry(g).or_default().push(d);
            }
        }
        Self {
            topo,
            by_addr: topo.devices.iter().map(|d| (d.address, d)).collect(),
            groups,
        }
    }

    /// The members of kernel IOMMU group `group`, in address order.
    pub fn members(&self, group: u32) -> &[&'a Device] {
        self.groups
            .get(&GroupKey::Iommu(group))
            .map_or(&[], Vec::as_slice)
    }

    /// Plans the binding of the selected devices ([`plan`]).
    pub fn plan(&self, selectors: &[Selector]) -> Plan {
        plan_in(self, selectors)
    }

    /// The devices whose claimant ([`Topology::claimants`]) a plan of `selectors` looks
    /// at: the unselected members without a driver (bridges aside) of the groups that
    /// hold a selected device ([`member_ok`]). A topology whose alias tables answered
    /// only these gives the same plan (the boot reads the tables only when this is not
    /// empty: `machine::read_topology_for`).
    pub fn claim_questions(&self, selectors: &[Selector]) -> Vec<PciAddress> {
        let topo = self.topo;
        let selected = resolve_in(selectors, &topo.devices, &self.by_addr).selected;
        let mut asked = Vec::new();
        for addr in selected.keys() {
            let d = self.by_addr[addr];
            let Some(g) = GroupKey::of(d.address, d.iommu_group, topo.groups_at_probe) else {
                continue;
            };
            for m in self.groups.get(&g).map_or(&[][..], Vec::as_slice) {
                let asks = !selected.contains_key(&m.address) && m.driver.is_none();
                if asks && !m.is_bridge() && !asked.contains(&m.address) {
                    asked.push(m.address);
                }
            }
        }
        asked
    }

    /// What any config could do with one IOMMU group ([`group_verdict`]).
    pub fn group_verdict(&self, group: u32) -> GroupVerdict {
        verdict(self, group)
    }
}

fn plan_in(planner: &Planner<'_>, selectors: &[Selector]) -> Plan {
    let topo = planner.topo;
    let by_addr = &planner.by_addr;
    let Resolution {
        selected,
        mismatched,
        warnings,
    } = resolve_in(selectors, &topo.devices, by_addr);
    let mut out = Plan {
        warnings,
        ..Plan::default()
    };

    let mut plans: BTreeMap<PciAddress, DevicePlan> = BTreeMap::new();
    let new_plan = |d: &Device, sel: Option<&Selection>, action, reasons| DevicePlan {
        address: d.address,
        id: d.id(),
        class: d.class,
        iommu_group: d.iommu_group,
        group_at_probe: d.iommu_group.is_none() && topo.groups_at_probe,
        driver: d.driver.clone(),
        driver_override: d.driver_override.clone(),
        selected: sel.is_some(),
        selected_by: sel
            .map(|s| s.by.iter().copied().collect())
            .unwrap_or_default(),
        action,
        reasons,
    };
    for (addr, (index, why)) in &mismatched {
        if let Some(d) = by_addr.get(addr) {
            // Named by the config, yet not taken: `selected` stays false, `selected_by`
            // says which entry named it, so the refusal is reported like a selected one.
            let mut p = new_plan(d, None, Action::Refuse, vec![why.clone()]);
            p.selected_by = vec![*index];
            plans.insert(*addr, p);
        }
    }

    // Each selected device on its own: IOMMU, boot display, storage.
    let mut own_refusal: BTreeMap<PciAddress, Vec<String>> = BTreeMap::new();
    for (addr, sel) in &selected {
        let d = by_addr[addr];
        let mut why = Vec::new();
        if topo.groups_at_probe {
            // No group before a driver probes: planned by slot, checked after the bind.
        } else if !topo.iommu_groups {
            why.push(format!(
                "the kernel shows no IOMMU groups: {}",
                topo.no_iommu
                    .as_deref()
                    .unwrap_or("the IOMMU is off or missing (`vfio-early check` says why)")
            ));
        } else if d.iommu_group.is_none() {
            why.push("not in any IOMMU group".to_owned());
        }
        if d.boot_vga && !sel.allow_boot_vga {
            why.push("the boot display (boot_vga = 1): taking it can leave the host without a screen; set allow_boot_vga = true to mean it".to_owned());
        }
        if d.is_any_bridge() {
            why.push("a bridge (class 0x06xx: host, ISA, PCI-to-PCI...): it carries other devices or the platform, and vfio-pci does not take bridges".to_owned());
        }
        if let Some((pf, index)) = d.vf_of() {
            if selected.contains_key(&pf) {
                why.push(format!("VF {index} of {pf}, which is selected too: the PF's driver makes its VFs, and unbinding it from that driver removes them; select the VFs or the PF, not both"));
            }
        }
        if let Some(Sriov::Pf { numvfs, .. }) = &d.sriov {
            // Its driver made the VFs; unbinding it takes them away, from whatever has
            // them (a VM, another driver). On a VFIO driver already, nothing is unbound.
            if *numvfs > 0 && !d.driver.as_deref().is_some_and(is_vfio_driver) {
                why.push(format!("an SR-IOV physical function with {numvfs} VFs made: unbinding its driver removes them, with whatever uses them; select its VFs (vf = [...]), or the PF once it has none"));
            }
        }
        if d.is_storage() && !sel.allow_storage {
            why.push("a storage controller, possibly holding the root disk; set allow_storage = true to mean it".to_owned());
        }
        if !why.is_empty() {
            own_refusal.insert(*addr, why);
        }
    }

    // Group by group: only the groups with a selected member, in key order.
    let key = |d: &Device| GroupKey::of(d.address, d.iommu_group, topo.groups_at_probe);
    let mut groups: BTreeMap<GroupKey, &[&Device]> = BTreeMap::new();
    for (addr, sel) in &selected {
        let d = by_addr[addr];
        match key(d) {
            Some(g) => {
                let members = planner.groups.get(&g).map_or(&[][..], Vec::as_slice);
                groups.insert(g, members);
            }
            None => {
                let why = own_refusal.remove(addr).unwrap_or_default();
                plans.insert(*addr, new_plan(d, Some(sel), Action::Refuse, why));
            }
        }
    }
    for (g, &members) in &groups {
        let mut blockers: Vec<Blocker> = Vec::new();
        // A group whose membership is in doubt: the reason stands for the whole group,
        // no member's own, so every selected member carries it.
        let problems = match g {
            GroupKey::Iommu(n) => topo.group_problems.get(n),
            GroupKey::AtProbe(_) => None,
        };
        if let Some(why) = problems {
            blockers.push(Blocker {
                by: BlockedBy::Membership,
                reason: format!(
                    "the kernel's group directory and the devices disagree on its members ({})",
                    why.join("; ")
                ),
                selectable: false,
            });
        }
        for d in members {
            if let Some(why) = own_refusal.get(&d.address) {
                blockers.push(Blocker {
                    by: BlockedBy::Member(d.address),
                    reason: format!("{} is refused itself ({})", d.address, why.join("; ")),
                    selectable: false,
                });
            } else if !selected.contains_key(&d.address) {
                if let Err(why) = member_ok(d, topo) {
                    blockers.push(Blocker {
                        by: BlockedBy::Member(d.address),
                        reason: why,
                        selectable: !d.is_any_bridge(),
                    });
                }
            }
        }
        let on_vfio = |d: &Device| d.driver.as_deref().is_some_and(is_vfio_driver);
        for d in members {
            let sel = selected.get(&d.address);
            let plan = match (sel, blockers.is_empty()) {
                (Some(_), true) if on_vfio(d) => new_plan(
                    d,
                    sel,
                    Action::AlreadyBound,
                    vec![format!(
                        "already on {}",
                        d.driver.as_deref().unwrap_or_default()
                    )],
                ),
                (Some(_), true) => {
                    let mut why = match &d.driver {
                        Some(drv) => format!("selected; on {drv} now, which will be unbound"),
                        None => "selected".to_owned(),
                    };
                    if let GroupKey::AtProbe(_) = g {
                        why.push_str("; no IOMMU group yet: the SMMU makes it when vfio-pci probes the device, and the bind checks it");
                    }
                    new_plan(d, sel, Action::Bind, vec![why])
                }
                (Some(_), false) => {
                    let mut why = own_refusal.get(&d.address).cloned().unwrap_or_default();
                    let others: Vec<&Blocker> = blockers
                        .iter()
                        .filter(|b| b.by != BlockedBy::Member(d.address))
                        .collect();
                    if !others.is_empty() {
                        let list: Vec<&str> = others.iter().map(|b| b.reason.as_str()).collect();
                        why.push(format!(
                            "{g} cannot be handed over as a whole: {}{}",
                            list.join("; "),
                            advice(d, &others)
                        ));
                    }
                    new_plan(d, sel, Action::Refuse, why)
                }
                (None, _) => match member_ok(d, topo) {
                    Ok(why) if on_vfio(d) => new_plan(
                        d,
                        None,
                        Action::AlreadyBound,
                        vec![format!("not selected; {why}")],
                    ),
                    Ok(why) => {
                        new_plan(d, None, Action::Skip, vec![format!("not selected; {why}")])
                    }
                    Err(why)
                        if blockers
                            .iter()
                            .any(|b| b.by == BlockedBy::Member(d.address)) =>
                    {
                        new_plan(
                            d,
                            None,
                            Action::Refuse,
                            vec![format!("not selected, and blocks {g}: {why}")],
                        )
                    }
                    Err(why) => new_plan(d, None, Action::Skip, vec![why]),
                },
            };
            plans.insert(d.address, plan);
        }
        // Keyed by kernel group (`groups`, `config suggest`); a group still to be made
        // at probe has its blockers in the devices' reasons only.
        if let (GroupKey::Iommu(n), false) = (g, blockers.is_empty()) {
            out.blockers.insert(*n, blockers);
        }
    }
    out.devices = plans.into_values().collect();
    out
}

/// What can help a selected device whose group is blocked by `others`, in brackets:
/// selecting the members that would be fine selected, and moving the card only where
/// moving can help (a card in a slot, blocked by devices outside its own slot; never
/// an onboard function on the root bus).
fn advice(d: &Device, others: &[&Blocker]) -> String {
    let mut ways = Vec::new();
    if others.iter().any(|b| b.selectable) {
        ways.push("select every device of the group");
    }
    let in_slot = d.address.bus != 0;
    // A disputed membership is no member of the card's slot: another slot may help.
    let outside = |b: &&Blocker| b.by.member().is_none_or(|a| !a.same_slot(&d.address));
    if in_slot && others.iter().any(outside) {
        ways.push("move the card to a slot with its own group");
    }
    if ways.is_empty() {
        String::new()
    } else {
        format!(" ({})", ways.join(", or "))
    }
}

/// What a group's config entries must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OptIn {
    /// `allow_boot_vga = true`: the group holds the boot display.
    AllowBootVga,
    /// `allow_storage = true`: the group holds a storage controller.
    AllowStorage,
}

impl OptIn {
    /// The config key.
    pub fn key(self) -> &'static str {
        match self {
            Self::AllowBootVga => "allow_boot_vga",
            Self::AllowStorage => "allow_storage",
        }
    }
}

/// Whether a group can go to vfio, as the planner answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Handover {
    /// Every endpoint is on vfio-pci (or a variant) already: nothing left to do.
    Ready,
    /// A config selecting [`GroupVerdict::select`] with [`GroupVerdict::needs`]
    /// hands it over.
    Possible,
    /// No config can: [`GroupVerdict::blockers`] say why.
    Impossible,
}

/// The planner's answer for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupVerdict {
    /// ready, possible or impossible.
    pub handover: Handover,
    /// The addresses a config must select (ready: the ones to keep on vfio).
    pub select: Vec<PciAddress>,
    /// The opt-ins those entries must carry.
    pub needs: Vec<OptIn>,
    /// Why no config can hand it over (impossible only).
    pub blockers: Vec<String>,
}

/// One config entry per address, each carrying every opt-in of `needs`: the config a
/// group verdict stands for.
pub fn selectors_for(select: &[PciAddress], needs: &[OptIn]) -> Vec<Selector> {
    select
        .iter()
        .enumerate()
        .map(|(i, a)| Selector {
            index: i + 1,
            line: 0,
            address: Some(*a),
            id: None,
            functions: Functions::One,
            allow_boot_vga: needs.contains(&OptIn::AllowBootVga),
            allow_storage: needs.contains(&OptIn::AllowStorage),
            vf: Vec::new(),
            reset_method: None,
        })
        .collect()
}

/// The opt-ins a config selecting `devices` needs.
fn needs_of(devices: &[&Device]) -> Vec<OptIn> {
    let mut needs = Vec::new();
    if devices.iter().any(|d| d.boot_vga) {
        needs.push(OptIn::AllowBootVga);
    }
    if devices.iter().any(|d| d.is_storage()) {
        needs.push(OptIn::AllowStorage);
    }
    needs
}

/// Asks the planner what any config could do with one IOMMU group: it plans the
/// config that keeps the members already on vfio (ready when that binds and refuses
/// nothing), else the one selecting every endpoint with every opt-in it needs
/// (possible when that refuses nothing), else the group is impossible and the
/// planner's blockers say why.
pub fn group_verdict(topo: &Topology, group: u32) -> GroupVerdict {
    Planner::new(topo).group_verdict(group)
}

fn verdict(planner: &Planner<'_>, group: u32) -> GroupVerdict {
    let members = planner.members(group);
    // Never a bridge of any kind (an ISA bridge is no endpoint to hand over either).
    let endpoints: Vec<&Device> = members
        .iter()
        .copied()
        .filter(|d| !d.is_any_bridge())
        .collect();
    if endpoints.is_empty() {
        let list: Vec<String> = members.iter().map(|d| describe(d)).collect();
        return GroupVerdict {
            handover: Handover::Impossible,
            select: Vec::new(),
            needs: Vec::new(),
            blockers: vec![format!(
                "only bridges ({}): they carry other devices, and vfio-pci does not take bridges",
                list.join(", ")
            )],
        };
    }
    let clean = |p: &Plan| p.warnings.is_empty() && p.with_action(Action::Refuse).next().is_none();
    let kept: Vec<&Device> = endpoints
        .iter()
        .copied()
        .filter(|d| d.driver.as_deref().is_some_and(is_vfio_driver))
        .collect();
    if !kept.is_empty() {
        let select: Vec<PciAddress> = kept.iter().map(|d| d.address).collect();
        let needs = needs_of(&kept);
        let p = planner.plan(&selectors_for(&select, &needs));
        if clean(&p) && p.with_action(Action::Bind).next().is_none() {
            return GroupVerdict {
                handover: Handover::Ready,
                select,
                needs,
                blockers: Vec::new(),
            };
        }
    }
    let select: Vec<PciAddress> = endpoints.iter().map(|d| d.address).collect();
    let needs = needs_of(&endpoints);
    let p = planner.plan(&selectors_for(&select, &needs));
    if clean(&p) {
        return GroupVerdict {
            handover: Handover::Possible,
            select,
            needs,
            blockers: Vec::new(),
        };
    }
    let mut blockers: Vec<String> = p
        .blockers
        .get(&group)
        .map(|bs| bs.iter().map(|b| b.reason.clone()).collect())
        .unwrap_or_default();
    if blockers.is_empty() {
        // Refused on their own account with every opt-in (no IOMMU, say).
        blockers = p
            .refusals()
            .flat_map(|d| d.reasons.iter().map(move |r| format!("{}: {r}", d.address)))
            .collect();
    }
    GroupVerdict {
        handover: Handover::Impossible,
        select: Vec::new(),
        needs: Vec::new(),
        blockers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn dev(
        addr: &str,
        id: (u16, u16),
        class: u32,
        group: Option<u32>,
        driver: Option<&str>,
    ) -> Device {
        Device::new(addr.parse().unwrap(), id, class, group, driver)
    }

    fn selectors(toml: &str) -> Vec<Selector> {
        Config::parse(Path::new("t.toml"), toml.as_bytes())
            .unwrap()
            .devices
    }

    /// The seed guide's machine. `booted`: endpoint drivers loaded; otherwise the
    /// initramfs view, where only the alias tables say who would claim what.
    fn seed(booted: bool) -> Topology {
        let d = |a, id, c, g, drv: &'static str| dev(a, id, c, Some(g), booted.then_some(drv));
        let devices = vec![
            dev(
                "0000:00:02.0",
                (0x1022, 0x1412),
                0x060400,
                Some(1),
                Some("pcieport"),
            ),
            d("0000:00:14.0", (0x1022, 0x780b), 0x0c0500, 7, "piix4_smbus"),
            d("0000:00:14.1", (0x1022, 0x780c), 0x01018a, 7, "pata_atiixp"),
            d(
                "0000:00:14.2",
                (0x1022, 0x780d),
                0x040300,
                7,
                "snd_hda_intel",
            ),
            d("0000:00:14.3", (0x1022, 0x780e), 0x060100, 7, "lpc_ich"),
            d("0000:01:00.0", (0x1002, 0x6779), 0x030000, 1, "radeon"),
            d(
                "0000:01:00.1",
                (0x1002, 0xaa98),
                0x040300,
                1,
                "snd_hda_intel",
            ),
        ];
        let claimants = if booted {
            BTreeMap::new()
        } else {
            [
                ("0000:00:14.0", "i2c_piix4"),
                ("0000:00:14.1", "pata_atiixp"),
                ("0000:00:14.2", "snd_hda_intel"),
                ("0000:00:14.3", "lpc_ich"),
                ("0000:01:00.0", "radeon"),
                ("0000:01:00.1", "snd_hda_intel"),
            ]
            .into_iter()
            .map(|(a, m)| (a.parse().unwrap(), m.to_owned()))
            .collect()
        };
        Topology {
            devices,
            iommu_groups: true,
            claimants,
            alias_tables: true,
            no_iommu: None,
            groups_at_probe: false,
            group_problems: BTreeMap::new(),
        }
    }

    fn action(p: &Plan, addr: &str) -> Option<Action> {
        p.devices
            .iter()
            .find(|d| d.address.to_string() == addr)
            .map(|d| d.action)
    }

    fn reasons(p: &Plan, addr: &str) -> String {
        p.devices
            .iter()
            .find(|d| d.address.to_string() == addr)
            .map(|d| d.reasons.join(" | "))
            .unwrap_or_default()
    }

    #[test]
    fn seed_gpu_and_audio_bind_and_the_bridge_stays() {
        for booted in [true, false] {
            let p = plan(
                &selectors("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n"),
                &seed(booted),
            );
            assert_eq!(
                action(&p, "0000:01:00.0"),
                Some(Action::Bind),
                "booted={booted}"
            );
            assert_eq!(
                action(&p, "0000:01:00.1"),
                Some(Action::Bind),
                "booted={booted}"
            );
            assert_eq!(
                action(&p, "0000:00:02.0"),
                Some(Action::Skip),
                "booted={booted}"
            );
            assert!(reasons(&p, "0000:00:02.0").contains("bridge"));
            assert_eq!(
                p.devices.len(),
                3,
                "group 7 is not touched: {:?}",
                p.devices
            );
            assert!(!p.has_problems());
            assert_eq!(
                p.bind_groups().keys().copied().collect::<Vec<_>>(),
                [GroupKey::Iommu(1)]
            );
        }
    }

    #[test]
    fn seed_azalia_alone_is_refused_naming_the_others() {
        for booted in [true, false] {
            let p = plan(
                &selectors("[[device]]\naddress = \"0000:00:14.2\"\n"),
                &seed(booted),
            );
            assert_eq!(
                action(&p, "0000:00:14.2"),
                Some(Action::Refuse),
                "booted={booted}"
            );
            let why = reasons(&p, "0000:00:14.2");
            for other in ["0000:00:14.0", "0000:00:14.1", "0000:00:14.3"] {
                assert!(why.contains(other), "booted={booted}: {why}");
                assert_eq!(
                    action(&p, other),
                    Some(Action::Refuse),
                    "blocker {other} booted={booted}"
                );
            }
            assert!(why.contains("group 7"), "{why}");
            if !booted {
                assert!(why.contains("would claim"), "{why}");
            }
            assert!(p.bind_groups().is_empty());
        }
    }

    #[test]
    fn gpu_alone_is_refused_while_its_audio_stays_on_the_host() {
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:01:00.0\"\n"),
            &seed(true),
        );
        assert_eq!(action(&p, "0000:01:00.0"), Some(Action::Refuse));
        assert_eq!(action(&p, "0000:01:00.1"), Some(Action::Refuse));
        assert!(reasons(&p, "0000:01:00.0").contains("snd_hda_intel"));
    }

    #[test]
    fn boot_vga_needs_explicit_permission() {
        let mut t = seed(true);
        t.devices.push(Device {
            boot_vga: true,
            ..dev("0000:02:00.0", (0x10de, 0x1b80), 0x030000, Some(9), None)
        });
        let p = plan(&selectors("[[device]]\naddress = \"0000:02:00.0\"\n"), &t);
        assert_eq!(action(&p, "0000:02:00.0"), Some(Action::Refuse));
        assert!(reasons(&p, "0000:02:00.0").contains("boot display"));
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:02:00.0\"\nallow_boot_vga = true\n"),
            &t,
        );
        assert_eq!(action(&p, "0000:02:00.0"), Some(Action::Bind));
    }

    #[test]
    fn storage_needs_explicit_permission() {
        let mut t = seed(true);
        t.devices.push(dev(
            "0000:03:00.0",
            (0x144d, 0xa808),
            0x010802,
            Some(10),
            Some("nvme"),
        ));
        let p = plan(&selectors("[[device]]\nid = \"144d:a808\"\n"), &t);
        assert_eq!(action(&p, "0000:03:00.0"), Some(Action::Refuse));
        assert!(reasons(&p, "0000:03:00.0").contains("storage"));
        let p = plan(
            &selectors("[[device]]\nid = \"144d:a808\"\nallow_storage = true\n"),
            &t,
        );
        assert_eq!(action(&p, "0000:03:00.0"), Some(Action::Bind));
        assert!(reasons(&p, "0000:03:00.0").contains("on nvme now"));
    }

    #[test]
    fn refused_function_takes_its_group_down() {
        // A boot GPU refused while its audio is selected: the audio cannot go alone.
        let mut t = seed(true);
        t.devices.retain(|d| d.address.bus != 1);
        t.devices.push(Device {
            boot_vga: true,
            ..dev(
                "0000:01:00.0",
                (0x1002, 0x6779),
                0x030000,
                Some(1),
                Some("radeon"),
            )
        });
        t.devices.push(dev(
            "0000:01:00.1",
            (0x1002, 0xaa98),
            0x040300,
            Some(1),
            Some("snd_hda_intel"),
        ));
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n"),
            &t,
        );
        assert_eq!(action(&p, "0000:01:00.0"), Some(Action::Refuse));
        assert_eq!(action(&p, "0000:01:00.1"), Some(Action::Refuse));
        assert!(reasons(&p, "0000:01:00.1").contains("refused itself"));
    }

    #[test]
    fn bridges_are_never_bound() {
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:00:02.0\"\n"),
            &seed(true),
        );
        assert_eq!(action(&p, "0000:00:02.0"), Some(Action::Refuse));
        assert!(reasons(&p, "0000:00:02.0").contains("bridge"), "{p:?}");
        // The card behind it is refused too: its port is refused itself.
        assert_eq!(action(&p, "0000:01:00.0"), Some(Action::Refuse));
    }

    /// An Arm SMMU on 6.1 (the QEMU virt machine, before coldplug): only the bridges,
    /// probed by pcieport, have groups; the card's functions get theirs at probe. The
    /// card is planned as its slot, under the member rules; without groups_at_probe
    /// the same view refuses it.
    #[test]
    fn arm_smmu_groups_made_at_probe_plan_the_slot() {
        let mut t = Topology {
            devices: vec![
                dev(
                    "0000:00:01.0",
                    (0x1b36, 0x000c),
                    0x060400,
                    Some(0),
                    Some("pcieport"),
                ),
                dev(
                    "0000:00:02.0",
                    (0x1b36, 0x000c),
                    0x060400,
                    Some(1),
                    Some("pcieport"),
                ),
                dev("0000:01:00.0", (0x1234, 0x1111), 0x038000, None, None),
                dev("0000:01:00.1", (0x8086, 0x293e), 0x040300, None, None),
                dev("0000:02:00.0", (0x8086, 0x10d3), 0x020000, None, None),
            ],
            iommu_groups: true,
            claimants: [
                ("0000:01:00.0", "bochs"),
                ("0000:01:00.1", "snd_hda_intel"),
                ("0000:02:00.0", "e1000e"),
            ]
            .into_iter()
            .map(|(a, m)| (a.parse().unwrap(), m.to_owned()))
            .collect(),
            alias_tables: true,
            groups_at_probe: true,
            no_iommu: None,
            group_problems: BTreeMap::new(),
        };
        let card = "[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n";
        let p = plan(&selectors(card), &t);
        for a in ["0000:01:00.0", "0000:01:00.1"] {
            assert_eq!(action(&p, a), Some(Action::Bind), "{a}: {p:?}");
            assert!(reasons(&p, a).contains("when vfio-pci probes"), "{a}");
        }
        let slot = GroupKey::AtProbe("0000:01:00.0".parse().unwrap());
        assert_eq!(p.bind_groups().keys().copied().collect::<Vec<_>>(), [slot]);
        assert_eq!(
            action(&p, "0000:02:00.0"),
            None,
            "another slot is not touched"
        );
        // The display alone: its audio function, which snd_hda_intel would claim,
        // shares the slot, so the slot is refused.
        let p = plan(&selectors("[[device]]\naddress = \"0000:01:00.0\"\n"), &t);
        assert_eq!(action(&p, "0000:01:00.0"), Some(Action::Refuse));
        assert!(
            reasons(&p, "0000:01:00.0").contains("snd_hda_intel would claim it"),
            "{p:?}"
        );
        assert!(
            reasons(&p, "0000:01:00.0").contains("slot 0000:01:00"),
            "{p:?}"
        );
        // The same view on a host that makes groups up front: no group, refused.
        t.groups_at_probe = false;
        let p = plan(&selectors(card), &t);
        assert_eq!(action(&p, "0000:01:00.0"), Some(Action::Refuse));
        assert!(reasons(&p, "0000:01:00.0").contains("not in any IOMMU group"));
    }

    #[test]
    fn no_iommu_refuses_everything_with_a_hint() {
        let mut t = seed(true);
        t.iommu_groups = false;
        for d in &mut t.devices {
            d.iommu_group = None;
        }
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n"),
            &t,
        );
        assert_eq!(p.with_action(Action::Refuse).count(), 2);
        // No vendor advice of its own: the read stage's sentence, fitted to the machine.
        assert!(!reasons(&p, "0000:01:00.0").contains("intel_iommu"));
        t.no_iommu = Some("amd_iommu=off turns the IOMMU off; fix: remove amd_iommu=off".into());
        let p = plan(&selectors("[[device]]\naddress = \"0000:01:00.0\"\n"), &t);
        let why = reasons(&p, "0000:01:00.0");
        assert!(
            why.contains("remove amd_iommu=off") && !why.contains("intel"),
            "{why}"
        );
        assert!(
            !why.contains("move the card"),
            "moving cannot help without an IOMMU: {why}"
        );
    }

    #[test]
    fn id_selectors_take_every_match_and_identical_twins_split_by_address() {
        let mut t = seed(true);
        t.devices.push(dev(
            "0000:02:00.0",
            (0x1002, 0x6779),
            0x030000,
            Some(2),
            Some("radeon"),
        ));
        // By id: both cards.
        let p = plan(&selectors("[[device]]\nid = \"1002:6779\"\n"), &t);
        assert_eq!(action(&p, "0000:02:00.0"), Some(Action::Bind));
        assert_eq!(
            action(&p, "0000:01:00.0"),
            Some(Action::Refuse),
            "its audio stays on the host"
        );
        // By address and id: the host keeps the other twin, untouched.
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:02:00.0\"\nid = \"1002:6779\"\n"),
            &t,
        );
        assert_eq!(action(&p, "0000:02:00.0"), Some(Action::Bind));
        assert_eq!(action(&p, "0000:01:00.0"), None);
        // Mismatch at the address: refused.
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:02:00.0\"\nid = \"10de:1b80\"\n"),
            &t,
        );
        assert_eq!(action(&p, "0000:02:00.0"), Some(Action::Refuse));
        assert!(reasons(&p, "0000:02:00.0").contains("not 10de:1b80"));
    }

    #[test]
    fn missing_devices_and_ids_are_warnings() {
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:42:00.0\"\n[[device]]\nid = \"abcd:ef01\"\n"),
            &seed(true),
        );
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(
            p.warnings[0].contains("line 1") && p.warnings[0].contains("no device at 0000:42:00.0")
        );
        assert!(p.warnings[1].contains("no device has id abcd:ef01"));
        assert!(p.devices.is_empty());
    }

    #[test]
    fn already_bound_is_idempotent_and_vfio_members_are_fine() {
        let mut t = seed(true);
        for d in &mut t.devices {
            if d.address.bus == 1 {
                d.driver = Some("vfio-pci".to_owned());
            }
        }
        let p = plan(&selectors("[[device]]\naddress = \"0000:01:00.0\"\n"), &t);
        assert_eq!(action(&p, "0000:01:00.0"), Some(Action::AlreadyBound));
        assert_eq!(action(&p, "0000:01:00.1"), Some(Action::AlreadyBound));
        assert!(p.bind_groups().is_empty());
    }

    #[test]
    fn driverless_endpoint_without_alias_tables_is_not_trusted() {
        let mut t = seed(false);
        t.claimants.clear();
        t.alias_tables = false;
        let p = plan(&selectors("[[device]]\naddress = \"0000:01:00.0\"\n"), &t);
        assert_eq!(action(&p, "0000:01:00.0"), Some(Action::Refuse));
        assert!(reasons(&p, "0000:01:00.0").contains("without modules.alias"));
        // With tables that claim nothing for it, the audio function is harmless.
        t.alias_tables = true;
        let p = plan(&selectors("[[device]]\naddress = \"0000:01:00.0\"\n"), &t);
        assert_eq!(action(&p, "0000:01:00.0"), Some(Action::Bind));
        assert_eq!(action(&p, "0000:01:00.1"), Some(Action::Skip));
    }

    #[test]
    fn stub_and_foreign_bridge_drivers() {
        let mut t = seed(true);
        for d in &mut t.devices {
            if d.address.to_string() == "0000:01:00.1" {
                d.driver = Some("pci-stub".to_owned());
            }
            if d.address.to_string() == "0000:00:02.0" {
                d.driver = Some("shpchp".to_owned());
            }
        }
        let p = plan(&selectors("[[device]]\naddress = \"0000:01:00.0\"\n"), &t);
        assert_eq!(action(&p, "0000:01:00.1"), Some(Action::Skip));
        assert_eq!(
            action(&p, "0000:00:02.0"),
            Some(Action::Refuse),
            "shpchp does not leave DMA to vfio"
        );
    }

    #[test]
    fn a_disputed_membership_is_a_blocker_of_its_own_kind() {
        let mut t = seed(true);
        t.group_problems.insert(
            1,
            vec!["0000:01:00.2 is listed but not a device".to_owned()],
        );
        let p = plan(
            &selectors("[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n"),
            &t,
        );
        for a in ["0000:01:00.0", "0000:01:00.1"] {
            assert_eq!(action(&p, a), Some(Action::Refuse), "{a}");
            assert!(reasons(&p, a).contains("disagree on its members"), "{a}");
        }
        let b = &p.blockers[&1];
        assert_eq!(b[0].by, BlockedBy::Membership);
        assert_eq!(b[0].by.member(), None);
        assert!(!b[0].selectable);
        // No member stands for it: every other blocker names a real member.
        assert!(b[1..].iter().all(|x| x
            .by
            .member()
            .is_some_and(|a| t.devices.iter().any(|d| d.address == a))));
    }
}
