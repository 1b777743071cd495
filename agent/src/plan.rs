//! The planner: selectors + topology -> what to do with each IOMMU group. No I/O.
//!
//! A group can be handed to vfio only as a whole: the kernel (5.19+) lets userspace
//! use a group only when every device in it is on a driver that leaves DMA to vfio
//! (vfio-pci and its variants, pci-stub, pcieport) or on none. So for every group with
//! a selected device, each other member must be one of:
//! - selected too;
//! - already on vfio-pci or on pci-stub;
//! - a PCI bridge on `pcieport` or on no driver;
//! - an endpoint no host driver would claim. At boot, before coldplug, most devices
//!   have no driver *yet*, so "driverless" alone proves nothing: the endpoint's
//!   `modalias` is matched against the kernel's alias tables ([`Topology::claimants`]).
//!
//! Otherwise the whole group is refused, and the reasons name the members that stand
//! in the way. Independently, a selected boot display (`boot_vga` = 1) or storage
//! controller (class 0x01, maybe the root disk) is refused unless its config entry
//! allows it explicitly.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{Functions, Selector};
use crate::pci::{Device, PciAddress, PciId, VFIO_DRIVER};

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
}

/// What happens to one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
    /// The device.
    pub address: PciAddress,
    /// `vendor:device`.
    pub id: String,
    /// Class code as 6 hex digits.
    pub class: String,
    /// Its IOMMU group.
    pub iommu_group: Option<u32>,
    /// Its driver now.
    pub driver: Option<String>,
    /// Whether the config selects it.
    pub selected: bool,
    /// The config entries (1-based) that select it.
    pub selected_by: Vec<usize>,
    /// What happens to it.
    pub action: Action,
    /// Why, in sentences a user can act on.
    pub reasons: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Every selected device and every other member of an affected group, by address.
    pub devices: Vec<DevicePlan>,
    /// Problems that concern no single device (a selector matching nothing).
    pub warnings: Vec<String>,
}

impl Plan {
    /// Devices with a given action.
    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &DevicePlan> {
        self.devices.iter().filter(move |d| d.action == action)
    }

    /// Groups that have devices to bind, each with those devices in address order.
    pub fn bind_groups(&self) -> BTreeMap<u32, Vec<&DevicePlan>> {
        let mut groups: BTreeMap<u32, Vec<&DevicePlan>> = BTreeMap::new();
        for d in self.with_action(Action::Bind) {
            if let Some(g) = d.iommu_group {
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
pub(crate) fn member_ok(d: &Device, topo: &Topology) -> Result<String, String> {
    match d.driver.as_deref() {
        Some(VFIO_DRIVER) => Ok("already on vfio-pci".to_owned()),
        Some("pci-stub") => Ok("on pci-stub, which leaves DMA to vfio".to_owned()),
        Some("pcieport") if d.is_bridge() => Ok("bridge on pcieport".to_owned()),
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
    let mut out = Resolution::default();
    let by_addr: BTreeMap<PciAddress, &Device> = devices.iter().map(|d| (d.address, d)).collect();
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

/// Plans the binding of the selected devices.
pub fn plan(selectors: &[Selector], topo: &Topology) -> Plan {
    let by_addr: BTreeMap<PciAddress, &Device> =
        topo.devices.iter().map(|d| (d.address, d)).collect();
    let Resolution {
        selected,
        mismatched,
        warnings,
    } = resolve(selectors, &topo.devices);
    let mut out = Plan {
        warnings,
        ..Plan::default()
    };

    let mut plans: BTreeMap<PciAddress, DevicePlan> = BTreeMap::new();
    let new_plan = |d: &Device, sel: Option<&Selection>, action, reasons| DevicePlan {
        address: d.address,
        id: d.id().to_string(),
        class: format!("{:06x}", d.class),
        iommu_group: d.iommu_group,
        driver: d.driver.clone(),
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
        if !topo.iommu_groups {
            why.push(
                "the kernel shows no IOMMU groups: the IOMMU is off or missing (enable VT-d/AMD-Vi in the firmware; \
                 on Intel add intel_iommu=on to the kernel command line)"
                    .to_owned(),
            );
        } else if d.iommu_group.is_none() {
            why.push("not in any IOMMU group".to_owned());
        }
        if d.boot_vga && !sel.allow_boot_vga {
            why.push("the boot display (boot_vga = 1): taking it can leave the host without a screen; set allow_boot_vga = true to mean it".to_owned());
        }
        if d.is_bridge() || d.class >> 8 == 0x0600 {
            why.push("a bridge (host or PCI-to-PCI): it carries other devices, and vfio-pci does not take bridges".to_owned());
        }
        if d.is_storage() && !sel.allow_storage {
            why.push("a storage controller, possibly holding the root disk; set allow_storage = true to mean it".to_owned());
        }
        if !why.is_empty() {
            own_refusal.insert(*addr, why);
        }
    }

    // Group by group.
    let mut groups: BTreeMap<u32, Vec<&Device>> = BTreeMap::new();
    for d in &topo.devices {
        if let Some(g) = d.iommu_group {
            groups.entry(g).or_default().push(d);
        }
    }
    for (addr, sel) in &selected {
        let d = by_addr[addr];
        if d.iommu_group.is_none() {
            let why = own_refusal.remove(addr).unwrap_or_default();
            plans.insert(*addr, new_plan(d, Some(sel), Action::Refuse, why));
        }
    }
    for (g, members) in &groups {
        if !members.iter().any(|d| selected.contains_key(&d.address)) {
            continue;
        }
        let mut blockers: Vec<(PciAddress, String)> = Vec::new();
        for d in members {
            if let Some(why) = own_refusal.get(&d.address) {
                blockers.push((
                    d.address,
                    format!("{} is refused itself ({})", d.address, why.join("; ")),
                ));
            } else if !selected.contains_key(&d.address) {
                if let Err(why) = member_ok(d, topo) {
                    blockers.push((d.address, why));
                }
            }
        }
        for d in members {
            let sel = selected.get(&d.address);
            let plan = match (sel, blockers.is_empty()) {
                (Some(_), true) if d.driver.as_deref() == Some(VFIO_DRIVER) => new_plan(
                    d,
                    sel,
                    Action::AlreadyBound,
                    vec!["already on vfio-pci".to_owned()],
                ),
                (Some(_), true) => {
                    let why = match &d.driver {
                        Some(drv) => format!("selected; on {drv} now, which will be unbound"),
                        None => "selected".to_owned(),
                    };
                    new_plan(d, sel, Action::Bind, vec![why])
                }
                (Some(_), false) => {
                    let mut why = own_refusal.get(&d.address).cloned().unwrap_or_default();
                    let others: Vec<&str> = blockers
                        .iter()
                        .filter(|(a, _)| *a != d.address)
                        .map(|(_, w)| w.as_str())
                        .collect();
                    if !others.is_empty() {
                        why.push(format!(
                            "IOMMU group {g} cannot be handed over as a whole: {} (select every device of the group, or move the card to another slot)",
                            others.join("; ")
                        ));
                    }
                    new_plan(d, sel, Action::Refuse, why)
                }
                (None, _) => match member_ok(d, topo) {
                    Ok(why) if d.driver.as_deref() == Some(VFIO_DRIVER) => new_plan(
                        d,
                        None,
                        Action::AlreadyBound,
                        vec![format!("not selected; {why}")],
                    ),
                    Ok(why) => {
                        new_plan(d, None, Action::Skip, vec![format!("not selected; {why}")])
                    }
                    Err(why) if blockers.iter().any(|(a, _)| *a == d.address) => new_plan(
                        d,
                        None,
                        Action::Refuse,
                        vec![format!("not selected, and blocks IOMMU group {g}: {why}")],
                    ),
                    Err(why) => new_plan(d, None, Action::Skip, vec![why]),
                },
            };
            plans.insert(d.address, plan);
        }
    }
    out.devices = plans.into_values().collect();
    out
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
            assert_eq!(p.bind_groups().keys().copied().collect::<Vec<_>>(), [1]);
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
        assert!(reasons(&p, "0000:01:00.0").contains("intel_iommu=on"));
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
}
