//! One truth, as properties over generated machines and every captured fixture:
//!
//! - for every group, the verdict `groups` shows is the planner's: `ready` and
//!   `possible` -> the config selecting `select` with `needs` plans a bind (or keeps)
//!   each of them and refuses nothing; `impossible` -> no config selecting any of its
//!   members, with every opt-in, binds any of them;
//! - the config `config suggest` proposes plans cleanly, and only for a group that is
//!   not impossible;
//! - every failure `check` reports from the config before a reboot (the traps) is a
//!   warning of `bind --dry-run`, `config suggest` and `apply`, word for word, and
//!   `apply` refuses exactly when one is.
//!
//! Generated machines cover random groups, bridges (host and PCI), functions of one
//! or several slots, drivers (host, vfio-pci, a vfio variant, pci-stub, pcieport,
//! none), the boot display and storage, both after boot (drivers bound) and in the
//! initramfs (driverless, with or without alias tables naming a claimant). At least
//! 10,000 cases run in CI (`TRUTH_CASES` overrides the count).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use vfio_early::cmd::check::trap_findings;
use vfio_early::cmd::config::{suggest, SuggestArgs};
use vfio_early::cmd::groups::of_topology;
use vfio_early::cmdline::Cmdline;
use vfio_early::config::{Config, Functions, Selector};
use vfio_early::host::Host;
use vfio_early::machine::{read_topology, Judged};
use vfio_early::pci::{Device, PciAddress};
use vfio_early::plan::{self, group_verdict, selectors_for, Action, Handover, OptIn, Topology};
use vfio_early::traps::{self, Facts};

/// Classes a generated device takes: host bridge, PCI bridge, VGA, audio, NVMe, IDE,
/// NIC, USB, ISA bridge, SMBus.
const CLASSES: [u32; 10] = [
    0x060000, 0x060400, 0x030000, 0x040300, 0x010802, 0x01018a, 0x020000, 0x0c0330, 0x060100,
    0x0c0500,
];
/// Drivers a generated device may be on (None: driverless).
const DRIVERS: [Option<&str>; 10] = [
    None,
    None,
    Some("vfio-pci"),
    Some("mlx5_vfio_pci"),
    Some("pci-stub"),
    Some("pcieport"),
    Some("radeon"),
    Some("snd_hda_intel"),
    Some("shpchp"),
    Some("skl_uncore"),
];
/// Host modules the alias tables may name for a driverless device.
const CLAIMANTS: [&str; 3] = ["radeon", "snd_hda_intel", "nvme"];

/// One generated device: (class index, driver index, boot_vga, claimant index or
/// none, second slot, vendor:device pair index).
type Gen = (usize, usize, bool, Option<usize>, bool, usize);

fn machine() -> impl Strategy<Value = Topology> {
    let device = (
        0..CLASSES.len(),
        0..DRIVERS.len(),
        any::<bool>(),
        proptest::option::of(0..CLAIMANTS.len()),
        any::<bool>(),
        0..3usize,
    );
    let group = (0u8..3, proptest::collection::vec(device, 1..5));
    (
        proptest::collection::vec(group, 1..6),
        any::<bool>(),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(groups, alias_tables, iommu)| topology(&groups, alias_tables, iommu))
}

fn topology(groups: &[(u8, Vec<Gen>)], alias_tables: bool, iommu: bool) -> Topology {
    let mut devices = Vec::new();
    let mut claimants = BTreeMap::new();
    for (g, (bus, members)) in groups.iter().enumerate() {
        for (f, &(class, driver, boot_vga, claimant, other_slot, pair)) in
            members.iter().enumerate()
        {
            let slot = u8::try_from(g).unwrap() + if other_slot { 16 } else { 0 };
            let address = PciAddress {
                domain: 0,
                bus: *bus,
                device: slot,
                function: u8::try_from(f).unwrap(),
            };
            let class = CLASSES[class];
            let id = (0x1000 + u16::try_from(pair).unwrap(), 0x6779);
            let group = iommu.then(|| u32::try_from(g).unwrap());
            let mut d = Device::new(address, id, class, group, DRIVERS[driver]);
            d.boot_vga = boot_vga && class >> 8 == 0x0300;
            if d.driver.is_none() {
                if let Some(c) = claimant.filter(|_| alias_tables) {
                    claimants.insert(address, CLAIMANTS[c].to_owned());
                }
            }
            devices.push(d);
        }
    }
    devices.sort_by_key(|d| d.address);
    Topology {
        devices,
        iommu_groups: iommu,
        claimants,
        alias_tables,
        no_iommu: (!iommu).then(|| "the IOMMU is off; fix: turn it on".to_owned()),
        groups_at_probe: false,
        group_problems: Default::default(),
    }
}

fn members(topo: &Topology, g: u32) -> Vec<&Device> {
    topo.devices
        .iter()
        .filter(|d| d.iommu_group == Some(g))
        .collect()
}

fn every_opt_in(addrs: &[PciAddress]) -> Vec<Selector> {
    selectors_for(addrs, &[OptIn::AllowBootVga, OptIn::AllowStorage])
}

fn groups_of(topo: &Topology) -> Vec<u32> {
    let mut v: Vec<u32> = topo.devices.iter().filter_map(|d| d.iommu_group).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `groups`' verdict for every group is the planner's.
fn groups_agree_with_the_planner(topo: &Topology) -> Result<(), TestCaseError> {
    let view = of_topology(topo, None);
    let numbers = groups_of(topo);
    prop_assert_eq!(view.groups.len(), numbers.len());
    for (shown, g) in view.groups.iter().zip(numbers) {
        let v = group_verdict(topo, g);
        prop_assert_eq!(shown.group, g);
        prop_assert_eq!(shown.handover, v.handover);
        prop_assert_eq!(&shown.select, &v.select);
        prop_assert_eq!(&shown.needs, &v.needs);
        prop_assert_eq!(shown.usable, v.handover == Handover::Ready);
        for (dv, d) in shown.devices.iter().zip(members(topo, g)) {
            prop_assert_eq!(dv.bridge, matches!(d.class >> 8, 0x0600 | 0x0604 | 0x0609));
        }
        match v.handover {
            Handover::Ready | Handover::Possible => {
                prop_assert!(!v.select.is_empty());
                prop_assert!(v.blockers.is_empty());
                let p = plan::plan(&selectors_for(&v.select, &v.needs), topo);
                prop_assert!(p.warnings.is_empty(), "{:?}", p.warnings);
                prop_assert!(
                    p.with_action(Action::Refuse).next().is_none(),
                    "group {g} {:?} refuses: {:?}",
                    v.handover,
                    p.devices
                );
                for a in &v.select {
                    let d = p.devices.iter().find(|d| d.address == *a).unwrap();
                    prop_assert!(matches!(d.action, Action::Bind | Action::AlreadyBound));
                }
                let binds = p.with_action(Action::Bind).count();
                if v.handover == Handover::Ready {
                    prop_assert_eq!(binds, 0);
                } else {
                    prop_assert!(binds > 0, "possible means something to bind");
                }
            }
            Handover::Impossible => {
                prop_assert!(!v.blockers.is_empty());
                let all: Vec<PciAddress> = members(topo, g).iter().map(|d| d.address).collect();
                let mut tries: Vec<Vec<PciAddress>> = all.iter().map(|a| vec![*a]).collect();
                tries.push(all.clone());
                for t in tries {
                    let mut sels = every_opt_in(&t);
                    let n = sels.len();
                    // And whole slots, as config suggest writes them.
                    sels.extend(t.iter().enumerate().map(|(i, a)| Selector {
                        index: n + i + 1,
                        functions: Functions::Slot,
                        ..every_opt_in(&[*a])[0].clone()
                    }));
                    let p = plan::plan(&sels, topo);
                    prop_assert!(
                        p.with_action(Action::Bind)
                            .all(|d| d.iommu_group != Some(g)),
                        "impossible group {g} bound by {t:?}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// What `config suggest` proposes plans cleanly, and only for a group not impossible.
fn suggestions_plan_cleanly(topo: &Topology) -> Result<(), TestCaseError> {
    for d in &topo.devices {
        let args = SuggestArgs {
            address: Some(d.address),
            ..SuggestArgs::default()
        };
        if let Ok(s) = suggest(topo, None, &args) {
            let c = Config::parse(Path::new("vfio-early.toml"), s.text.as_bytes()).unwrap();
            let p = plan::plan(&c.devices, topo);
            prop_assert!(!p.has_problems(), "{}: {:?}", s.text, p);
            let g = d.iommu_group.unwrap();
            prop_assert_ne!(group_verdict(topo, g).handover, Handover::Impossible);
        }
    }
    Ok(())
}

/// Traps: check's failures are warnings of every view, and apply refuses on them.
fn traps_are_one_set(
    topo: &Topology,
    facts: &Facts,
    sels: &[Selector],
) -> Result<(), TestCaseError> {
    let plan = plan::plan(sels, topo);
    let judged = Judged {
        traps: traps::find(&plan, topo, facts),
        plan,
    };
    // bind --dry-run's JSON `warnings`, config suggest's and apply's `warning:` lines.
    let warnings = judged.warnings();
    let findings = trap_findings(&judged.traps);
    let mut failed = false;
    for f in &findings {
        let line = format!("{}; {}", f.detail, f.hint.as_deref().unwrap_or_default());
        prop_assert!(warnings.contains(&line), "{line:?} not in {warnings:?}");
        failed |= f.status == vfio_early::report::Status::Fail;
    }
    prop_assert_eq!(
        judged.boot_differs(),
        failed,
        "apply refuses exactly on a FAIL"
    );
    // Warnings never change bind's exit: has_problems ignores the traps.
    let bare = Judged {
        plan: judged.plan.clone(),
        traps: Vec::new(),
    };
    prop_assert_eq!(judged.plan.has_problems(), bare.plan.has_problems());
    Ok(())
}

fn facts() -> impl Strategy<Value = (String, Vec<String>, Vec<String>)> {
    (
        prop::sample::subsequence(
            vec![
                "vfio-pci.ids=1000:6779",
                "vfio-pci.ids=1001:6779,1002:6779",
                "pcie_acs_override=downstream",
                "rd.driver.pre=radeon",
            ],
            0..3,
        )
        .prop_map(|w| w.join(" ")),
        prop::sample::subsequence(vec!["radeon", "snd_hda_intel", "nvme"], 0..2)
            .prop_map(|v| v.into_iter().map(str::to_owned).collect()),
        prop::sample::select(vec![
            vec![],
            vec!["base", "udev", "vfio-early"],
            vec!["base", "vfio-early", "udev", "kms"],
        ])
        .prop_map(|v| v.into_iter().map(str::to_owned).collect()),
    )
}

fn cases() -> u32 {
    std::env::var("TRUTH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn generated_machines_tell_one_truth() {
    let mut runner = TestRunner::new(PtConfig {
        cases: cases(),
        failure_persistence: None,
        ..PtConfig::default()
    });
    let strategy = (
        machine(),
        facts(),
        proptest::collection::vec((0usize..32, any::<bool>(), any::<bool>()), 0..4),
    );
    runner
        .run(&strategy, |(topo, (cmdline, builtin, hooks), picks)| {
            groups_agree_with_the_planner(&topo)?;
            suggestions_plan_cleanly(&topo)?;
            let storage_use = topo
                .devices
                .iter()
                .filter(|d| d.class >> 16 == 0x01 && d.address.function == 0)
                .map(|d| (d.address, vec!["/ on /dev/nvme0n1p2".to_owned()]))
                .collect();
            let facts = Facts {
                cmdline: Cmdline::parse(&cmdline),
                builtin: builtin.into_iter().collect(),
                hooks: (!hooks.is_empty()).then(|| ("etc/mkinitcpio.conf".to_owned(), hooks)),
                storage_use,
                ..Facts::default()
            };
            let addrs: Vec<PciAddress> = picks
                .iter()
                .filter_map(|(i, _, _)| topo.devices.get(i % topo.devices.len()))
                .map(|d| d.address)
                .collect();
            let mut sels = selectors_for(&addrs, &[]);
            for (s, (_, vga, storage)) in sels.iter_mut().zip(&picks) {
                s.allow_boot_vga = *vga;
                s.allow_storage = *storage;
            }
            traps_are_one_set(&topo, &facts, &sels)
        })
        .unwrap();
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("sys").is_dir())
        .collect();
    v.sort();
    v
}

/// Every captured fixture (real QEMU and UEFI boots), as read from its tree: groups
/// agree with the planner, suggestions plan cleanly, and `check` itself (the whole
/// command, on the tree) fails on a config-level trap only where `bind --dry-run`
/// warns of it.
#[test]
fn captured_fixtures_tell_one_truth() {
    let all = fixtures();
    assert!(all.len() >= 10, "fixtures: {all:?}");
    for dir in all {
        let host = Host::new(&dir);
        let topo = read_topology(&host);
        let name = dir.display().to_string();
        groups_agree_with_the_planner(&topo).unwrap_or_else(|e| panic!("{name}: {e}"));
        suggestions_plan_cleanly(&topo).unwrap_or_else(|e| panic!("{name}: {e}"));
        for d in &topo.devices {
            let sels = every_opt_in(&[d.address]);
            let judged = vfio_early::machine::judge(&host, &topo, &sels);
            let facts = vfio_early::machine::read_facts(&host, &judged.plan);
            traps_are_one_set(&topo, &facts, &sels).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // check over the tree with a config selecting the first display controller:
        // its trap findings are bind --dry-run's warnings.
        let Some(gpu) = topo.devices.iter().find(|d| d.is_display()) else {
            continue;
        };
        let cfg = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            cfg.path(),
            format!(
                "[[device]]\naddress = \"{}\"\nfunctions = \"slot\"\n",
                gpu.address
            ),
        )
        .unwrap();
        let c = Config::load(cfg.path()).unwrap();
        let judged = vfio_early::machine::judge(&host, &topo, &c.devices);
        let warnings = judged.warnings();
        let out = vfio_early::cmd::check::check(&host, Some(cfg.path()));
        for t in &judged.traps {
            let f = out
                .findings
                .iter()
                .find(|f| f.check == t.check && f.detail == t.text)
                .unwrap_or_else(|| panic!("{name}: check misses {t:?}"));
            assert!(warnings.contains(&format!(
                "{}; {}",
                f.detail,
                f.hint.as_deref().unwrap_or_default()
            )));
        }
    }
}
