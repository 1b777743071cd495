//! The read stage: what the domain knows of the machine, read once through the host
//! seam.
//!
//! [`read_topology`] gives the planner its [`Topology`]: every PCI device with its
//! group and driver, who would claim each driverless endpoint (the kernel's
//! `modules.alias` and built-in aliases, plus the whole-kernel table an image carries),
//! and, when the kernel shows no IOMMU groups, why and what fixes it on this machine.
//! It is the boot path's only scan, so it reads nothing else; what only host-side
//! commands need is read by the views that need it.

use std::collections::{BTreeMap, BTreeSet};

use crate::cmdline::Cmdline;
use crate::config::Selector;
use crate::host::Host;
use crate::iommu::Evidence;
use crate::modules::{module_name, normalize, ClaimTable};
use crate::pci::{self, PciAddress};
use crate::plan::{self, Action, Plan, Topology};
use crate::traps::{self, Facts, Trap};

/// Where the image keeps the kernel's whole PCI alias table, written at image build time
/// by `vfio-early modules --pci-aliases` (the initramfs's own `modules.alias` covers
/// only the modules inside the image).
pub(crate) const IMAGE_ALIAS_DIR: &str = "usr/lib/vfio-early";

/// Reads what the planner needs from the host: devices, groups and alias tables (for
/// every device without a driver).
pub fn read_topology(host: &Host) -> Topology {
    read_topology_for(host, &driverless)
}

/// Every device without a driver (what [`read_topology`] asks the alias tables about).
fn driverless(t: &Topology) -> Vec<PciAddress> {
    t.devices
        .iter()
        .filter(|d| d.driver.is_none())
        .map(|d| d.address)
        .collect()
}

/// [`read_topology`], and what `extra` reads from each device's sysfs directory on the
/// way ([`pci::scan_with`]), one per device of the topology, in its order: how a view
/// reads an attribute the planner does not need (`groups`: `reset_method`).
#[cfg(feature = "tools")]
pub(crate) fn read_topology_with<T>(
    host: &Host,
    extra: impl FnMut(&mut crate::host::AttrDir) -> T,
) -> (Topology, Vec<T>) {
    let (devices, more) = pci::scan_with(host, extra);
    (topology_of(host, devices, &driverless), more)
}

/// [`read_topology`], with the alias tables asked only about the devices `ask` names
/// once the rest is read (the boot: [`plan::Planner::claim_questions`], the only
/// devices whose claimant its plan looks at). When it names none, the tables are not
/// read at all (the image's is the whole kernel's, 482 KB on Debian's: 16 M of the
/// boot's 18 M instructions), `claimants` stays empty and `alias_tables` false.
pub fn read_topology_for(host: &Host, ask: &dyn Fn(&Topology) -> Vec<PciAddress>) -> Topology {
    topology_of(host, pci::scan(host), ask)
}

/// [`read_topology_for`] of these devices (as [`pci::scan`] gives them).
fn topology_of(
    host: &Host,
    devices: Vec<pci::Device>,
    ask: &dyn Fn(&Topology) -> Vec<PciAddress>,
) -> Topology {
    let iommu_groups = pci::iommu_groups_present(host);
    // Only without groups: the evidence that says why (firmware tables, sysfs; the
    // log adds nothing to why it is off, and the boot's verdict reads it).
    let no_iommu = (!iommu_groups).then(|| {
        let cmdline = Cmdline::parse(&host.read("proc/cmdline").unwrap_or_default());
        let (why, fix) = Evidence::from_sysfs(host).why_off(&cmdline);
        format!("{why}; fix: {fix}")
    });
    let mut topo = Topology {
        iommu_groups,
        groups_at_probe: crate::iommu::groups_at_probe(host),
        alias_tables: false,
        claimants: BTreeMap::new(),
        group_problems: pci::group_problems(host, &devices),
        devices,
        no_iommu,
    };
    let asked = ask(&topo);
    if asked.is_empty() {
        return topo;
    }
    // Only the aliases that may match an asked device are kept: the image's table is
    // the whole kernel's (thousands of lines).
    let asked: Vec<&pci::Device> = topo
        .devices
        .iter()
        .filter(|d| d.driver.is_none() && asked.contains(&d.address))
        .collect();
    let modaliases: Vec<&str> = asked.iter().filter_map(|d| d.modalias.as_deref()).collect();
    let release = host.kernel_release().unwrap_or_default();
    let mut table =
        ClaimTable::load_dir_for(host, &format!("lib/modules/{release}"), Some(&modaliases));
    table.extend(ClaimTable::load_dir_for(
        host,
        IMAGE_ALIAS_DIR,
        Some(&modaliases),
    ));
    let claimants = asked
        .iter()
        .filter_map(|d| {
            Some((
                d.address,
                table.claimant(d.modalias.as_deref()?)?.to_owned(),
            ))
        })
        .collect();
    topo.alias_tables = !table.is_empty();
    topo.claimants = claimants;
    topo
}

/// A plan with the traps of this machine: what every view shows.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// The planner's answer.
    pub plan: Plan,
    /// The host-level traps around it ([`crate::traps`]).
    pub traps: Vec<Trap>,
}

impl Judged {
    /// Every warning, as `bind --dry-run` shows them: the plan's, then the traps'.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.plan.warnings.clone();
        w.extend(self.traps.iter().map(Trap::warning));
        w
    }

    /// A trap means the boot would not do what the plan says.
    pub fn boot_differs(&self) -> bool {
        self.traps.iter().any(|t| t.differs)
    }
}

/// Plans `selectors` on this machine and finds the traps around the plan: the one
/// judgement `bind --dry-run`, `config suggest`, `apply` and `check` show.
pub fn judge(host: &Host, topo: &Topology, selectors: &[Selector]) -> Judged {
    let plan = plan::plan(selectors, topo);
    let facts = read_facts(host, &plan);
    let traps = traps::find(&plan, topo, &facts);
    Judged { plan, traps }
}

/// The display controllers (class 03: GPUs), in PCI address order: `GPU N` in
/// `groups` and `config suggest --gpu N` is the Nth of them, counted from 1.
pub fn gpus(topo: &Topology) -> Vec<pci::PciAddress> {
    let mut v: Vec<pci::PciAddress> = topo
        .devices
        .iter()
        .filter(|d| d.is_display())
        .map(|d| d.address)
        .collect();
    v.sort();
    v
}

/// Reads what the traps are judged on ([`crate::traps::Facts`]): the command line,
/// modprobe.d's `options vfio-pci ids=`, the kernel's built-in modules, dracut's
/// `force_drivers`, mkinitcpio's `HOOKS`, and for each storage controller the plan
/// binds, the mounts, swaps and md/LVM holders on it. Host-side commands and
/// `bind --dry-run` read it; the boot itself does not.
pub fn read_facts(host: &Host, plan: &Plan) -> Facts {
    let cmdline = Cmdline::parse(&host.read("proc/cmdline").unwrap_or_default());
    let builtin = host
        .kernel_release()
        .and_then(|rel| host.read(format!("lib/modules/{rel}/modules.builtin")).ok())
        .map(|t| t.lines().map(module_name).collect())
        .unwrap_or_default();
    let mut dracut = vec!["etc/dracut.conf".to_owned()];
    dracut.extend(
        host.list("etc/dracut.conf.d")
            .into_iter()
            .filter(|n| n.ends_with(".conf"))
            .map(|n| format!("etc/dracut.conf.d/{n}")),
    );
    let force_drivers = dracut
        .into_iter()
        .filter_map(|f| {
            let set = dracut_list(&host.read(&f).ok()?, "force_drivers");
            (!set.is_empty()).then_some((f, set))
        })
        .collect();
    let storage: Vec<PciAddress> = plan
        .with_action(Action::Bind)
        .filter(|d| d.class >> 16 == 0x01)
        .map(|d| d.address)
        .collect();
    let storage_use = if storage.is_empty() {
        BTreeMap::new()
    } else {
        let mounts = host
            .read("proc/self/mounts")
            .or_else(|_| host.read("proc/mounts"))
            .unwrap_or_default();
        let swaps = host.read("proc/swaps").unwrap_or_default();
        storage
            .into_iter()
            .map(|a| (a, storage_use(host, a, &mounts, &swaps)))
            .collect()
    };
    Facts {
        cmdline,
        modprobe_ids: modprobe_ids(host),
        builtin,
        force_drivers,
        hooks: mkinitcpio_hooks_of(host),
        storage_use,
    }
}

/// The words of `key+=" ... "` / `key=" ... "` lines of a dracut config, normalised.
pub(crate) fn dracut_list(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key))
        .filter_map(|r| {
            r.trim_start()
                .strip_prefix("+=")
                .or_else(|| r.trim_start().strip_prefix('='))
        })
        .flat_map(|v| {
            v.split(|c: char| c.is_whitespace() || "\"'".contains(c))
                .filter(|w| !w.is_empty())
                .map(normalize)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The last `options vfio-pci ids=...` of the modprobe.d files, with its file, as
/// the module loader reads them ([`crate::modules::ModprobeOptions`]).
pub(crate) fn modprobe_ids(host: &Host) -> Option<(String, String)> {
    let options = crate::modules::ModprobeOptions::read(host);
    options
        .last("vfio_pci", "ids")
        .map(|(file, ids)| (file.to_owned(), ids))
}

/// The words of the last `HOOKS=(...)` in a mkinitcpio config (bash array syntax,
/// possibly over several lines; comments ignored). `None` when there is none.
pub fn mkinitcpio_hooks(text: &str) -> Option<Vec<String>> {
    let mut last = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let l = line.trim_start();
        let Some(rest) = l.strip_prefix("HOOKS=(") else {
            continue;
        };
        let mut body = String::new();
        let mut cur = rest.to_owned();
        loop {
            let code = cur.split('#').next().unwrap_or("");
            if let Some(end) = code.find(')') {
                body.push_str(&code[..end]);
                break;
            }
            body.push_str(code);
            body.push(' ');
            match lines.next() {
                Some(next) => cur = next.to_owned(),
                None => break,
            }
        }
        last = Some(
            body.split_whitespace()
                .map(|w| w.trim_matches(['"', '\'']).to_owned())
                .collect(),
        );
    }
    last
}

/// mkinitcpio's `HOOKS` as `/etc/mkinitcpio.conf` and its drop-ins leave them, with
/// the file that set them last.
pub(crate) fn mkinitcpio_hooks_of(host: &Host) -> Option<(String, Vec<String>)> {
    let mut files = vec!["etc/mkinitcpio.conf".to_owned()];
    files.extend(
        host.list("etc/mkinitcpio.conf.d")
            .into_iter()
            .filter(|f| f.ends_with(".conf"))
            .map(|f| format!("etc/mkinitcpio.conf.d/{f}")),
    );
    let mut hooks = None;
    for f in files {
        if let Some(h) = host.read(&f).ok().as_deref().and_then(mkinitcpio_hooks) {
            hooks = Some((f, h));
        }
    }
    hooks
}

/// What of the host lives on the block devices under one PCI controller: mounted
/// filesystems and swap on its disks, their partitions, and the md / device-mapper
/// devices built on them (`/ on /dev/sda2`, `swap /dev/sda3`).
fn storage_use(host: &Host, controller: PciAddress, mounts: &str, swaps: &str) -> Vec<String> {
    let needle = format!("/{controller}/");
    // Disks whose sysfs path runs through the controller, with their partitions.
    let mut names: Vec<String> = Vec::new();
    for disk in host.list("sys/block") {
        let Some(target) = host.link_target(format!("sys/block/{disk}")) else {
            continue;
        };
        if !target.to_string_lossy().contains(&needle) {
            continue;
        }
        for part in host.list(format!("sys/block/{disk}")) {
            if part.starts_with(&disk) {
                names.push(part);
            }
        }
        names.push(disk);
    }
    // Then whatever holds them (md, dm), transitively.
    let mut i = 0;
    while i < names.len() && names.len() < 256 {
        let n = names[i].clone();
        let disk = names
            .iter()
            .find(|d| n.starts_with(d.as_str()) && host.exists(format!("sys/block/{d}/{n}")))
            .cloned();
        let dir = match disk {
            Some(d) if d != n => format!("sys/block/{d}/{n}/holders"),
            _ => format!("sys/block/{n}/holders"),
        };
        for h in host.list(dir) {
            if !names.contains(&h) {
                names.push(h);
            }
        }
        i += 1;
    }
    // Every name a mount or swap line can use for them.
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for n in &names {
        paths.insert(format!("/dev/{n}"), n.clone());
        if let Some(dm) = host.read_attr(format!("sys/block/{n}/dm/name")) {
            paths.insert(format!("/dev/mapper/{dm}"), n.clone());
        }
        if let Some(md) = host.read_attr(format!("sys/block/{n}/md/name")) {
            paths.insert(format!("/dev/md/{md}"), n.clone());
        }
    }
    let mut out = Vec::new();
    for line in mounts.lines() {
        let mut w = line.split_whitespace();
        if let (Some(dev), Some(at)) = (w.next(), w.next()) {
            if paths.contains_key(dev) {
                out.push(format!("{} on {dev}", at.replace("\\040", " ")));
            }
        }
    }
    for line in swaps.lines().skip(1) {
        if let Some(dev) = line.split_whitespace().next() {
            if paths.contains_key(dev) {
                out.push(format!("swap {dev}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use testing::seed_machine;

    #[test]
    fn topology_from_a_fixture_uses_alias_tables() {
        let t = seed_machine(false);
        let topo = read_topology(&Host::new(t.root()));
        assert_eq!(topo.devices.len(), 8);
        assert!(topo.iommu_groups && topo.alias_tables);
        assert_eq!(topo.no_iommu, None);
        let claim = |a: &str| topo.claimants.get(&a.parse().unwrap()).cloned();
        assert_eq!(claim("0000:01:00.0").as_deref(), Some("radeon"));
        assert_eq!(claim("0000:00:14.2").as_deref(), Some("snd_hda_intel"));
        assert_eq!(claim("0000:00:02.0"), None, "bridge is on pcieport");
        let gpu = topo
            .devices
            .iter()
            .find(|d| d.address.to_string() == "0000:01:00.0")
            .unwrap();
        assert_eq!(
            (gpu.iommu_group, gpu.class, gpu.subsystem_vendor),
            (Some(1), 0x030000, 0x1458)
        );
    }

    #[test]
    fn the_boot_asks_the_alias_tables_only_what_its_plan_looks_at_and_plans_the_same() {
        use crate::config::Config;
        let t = seed_machine(false);
        let host = Host::new(t.root());
        let full = read_topology(&host);
        let mut asked_any = false;
        for d in &full.devices {
            for functions in ["", "functions = \"slot\"\n"] {
                let toml = format!("[[device]]\naddress = \"{}\"\n{functions}", d.address);
                let sel = Config::parse(std::path::Path::new("t.toml"), toml.as_bytes())
                    .unwrap()
                    .devices;
                let asked = std::cell::RefCell::new(Vec::new());
                let lean = read_topology_for(&host, &|t| {
                    *asked.borrow_mut() = plan::Planner::new(t).claim_questions(&sel);
                    asked.borrow().clone()
                });
                let asked = asked.into_inner();
                asked_any |= !asked.is_empty();
                assert_eq!(plan::plan(&sel, &lean), plan::plan(&sel, &full), "{toml}");
                if asked.is_empty() {
                    assert!(lean.claimants.is_empty() && !lean.alias_tables, "{toml}");
                }
            }
        }
        assert!(asked_any, "some selection asks about a driverless member");
    }
}
