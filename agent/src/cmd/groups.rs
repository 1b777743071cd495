//! `vfio-early groups`: every IOMMU group, its devices, and what the planner says a
//! config can do with it.
//!
//! Each device shows its address, class and `[vendor:device]` with names from the
//! host's `pci.ids` (numeric ids when it is absent), its driver, `boot_vga`, whether
//! it is a bridge (host or PCI-to-PCI), and for a display controller its number
//! `GPU N` (1-based, in PCI address order: what `config suggest --gpu N` takes).
//!
//! Each group carries the planner's verdict ([`plan::group_verdict`]), never a rule
//! of its own: `ready` (every endpoint on vfio-pci already), `possible` with the
//! addresses a config must `select` and the opt-ins it `needs`, or `impossible` with
//! the `blockers` no config can get past. `usable` is kept for older readers and means
//! `ready`.
//!
//! Without an IOMMU there are no groups; the command then says why (from the
//! firmware tables, the command line and the log) and what fixes it, and exits 1.
//! A filter naming no group or device exits 2; `--gpu` with nothing to show says so
//! and exits 1.
//!
//! JSON (`--json`):
//!
//! ```json
//! { "version": 1,
//!   "iommu": { "on": true, "vendor": "intel", "reason": null, "fix": null },
//!   "groups": [ { "group": 1, "usable": false, "handover": "possible",
//!                 "select": ["0000:01:00.0", "0000:01:00.1"], "needs": [],
//!                 "blockers": [],
//!                 "devices": [ { "address": "0000:01:00.0", "id": "1002:6779",
//!                   "subsystem": "1458:21ac", "class": "030000",
//!                   "class_name": "VGA compatible controller",
//!                   "vendor_name": "...", "device_name": "...", "subsystem_name": null,
//!                   "driver": "radeon", "boot_vga": false, "bridge": false,
//!                   "gpu": 2,
//!                   "reset": { "methods": ["bus"], "resettable": "device",
//!                              "family": "AMD Polaris 10 (...)", "hint": "..." } } ] } ] }
//! ```
//!
//! An SR-IOV function adds `"sriov"`: a PF `{ "role": "pf", "totalvfs": 7,
//! "numvfs": 2, "drivers_autoprobe": true, "vfs": ["0000:03:10.0", "0000:03:10.2"] }`,
//! a VF `{ "role": "vf", "pf": "0000:03:00.0", "index": 1 }`; in words, `SR-IOV PF:
//! 2 of 7 VFs` and `SR-IOV VF 1 of 0000:03:00.0` end the device's line.
//! `reset` is the reset verdict ([`crate::reset::judge`], the IOMMU group counting as
//! what is assigned together): `methods` as the kernel's `reset_method` lists them
//! (`[]` when it shows none, `null` when the kernel is older than 5.15), `resettable`
//! one of `device`, `slot-bus`, `no` (cannot be reset between VM runs), `unknown`,
//! `not-needed` (a bridge); `family` and `hint` only when there is advice.

use std::fmt::Write as _;

use serde::Serialize;

use crate::cmdline::Cmdline;
use crate::exit::{Error, Exit, Outcome};
use crate::host::Host;
use crate::iommu::{Evidence, Vendor};
use crate::machine::{gpus, read_facts, read_topology};
use crate::pci::{Device, PciAddress, Sriov};
use crate::pciids::PciIds;
use crate::plan::{self, class_name, Handover, OptIn, Plan, Topology};
use crate::reset;
use crate::traps;

/// Options of `vfio-early groups`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only groups with a display controller (class 03: GPUs).
    #[arg(long)]
    pub gpu: bool,
    /// Only this IOMMU group.
    #[arg(long, value_name = "N", conflicts_with = "device")]
    pub group: Option<u32>,
    /// Only the group of this device (DDDD:BB:DD.F).
    #[arg(long, value_name = "ADDRESS")]
    pub device: Option<PciAddress>,
}

/// One device of a group, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    /// PCI address.
    pub address: PciAddress,
    /// `vendor:device`.
    pub id: String,
    /// `subvendor:subdevice`.
    pub subsystem: String,
    /// Class code, six hex digits.
    pub class: String,
    /// Class name (pci.ids, else a built-in coarse name).
    pub class_name: String,
    /// Vendor name from pci.ids.
    pub vendor_name: Option<String>,
    /// Device name from pci.ids.
    pub device_name: Option<String>,
    /// Subsystem (card) name from pci.ids.
    pub subsystem_name: Option<String>,
    /// Driver bound now.
    pub driver: Option<String>,
    /// The firmware's boot display.
    pub boot_vga: bool,
    /// A bridge (host, root or downstream port): never handed to vfio-pci.
    pub bridge: bool,
    /// For a display controller: its number, 1-based in PCI address order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<usize>,
    /// SR-IOV: a PF with its VF counts and VFs, or a VF with its PF and index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sriov: Option<Sriov>,
    /// The reset verdict (filled by [`collect`], which reads `reset_method`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset: Option<ResetView>,
    /// Display class.
    #[serde(skip)]
    pub display: bool,
}

/// A device's reset verdict, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResetView {
    /// The kernel's methods; `None` when the kernel does not say.
    pub methods: Option<Vec<reset::Method>>,
    /// Whether it can be reset between VM runs.
    pub resettable: reset::Resettable,
    /// A family known to need help.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// What to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ResetView {
    /// The view of a verdict.
    pub fn of(v: &reset::Verdict) -> Self {
        Self {
            methods: v.methods.listed().map(<[reset::Method]>::to_vec),
            resettable: v.resettable,
            family: v.family.as_ref().map(|f| f.name.clone()),
            hint: reset::hint(v),
        }
    }
}

/// One group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Group number.
    pub group: u32,
    /// `handover` is `ready` (kept for older readers).
    pub usable: bool,
    /// The planner's verdict: ready, possible or impossible.
    pub handover: Handover,
    /// What a config must select (possible), or keep selected (ready).
    pub select: Vec<PciAddress>,
    /// The opt-ins those entries must carry.
    pub needs: Vec<OptIn>,
    /// Why no config can hand it over (impossible).
    pub blockers: Vec<String>,
    /// Members, by address.
    pub devices: Vec<DeviceView>,
}

/// The IOMMU state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IommuState {
    /// Whether the kernel shows groups.
    pub on: bool,
    /// The IOMMU family from the firmware.
    pub vendor: Option<Vendor>,
    /// Why it is off.
    pub reason: Option<String>,
    /// What fixes it.
    pub fix: Option<String>,
}

/// Everything `groups` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Groups {
    /// Format version.
    pub version: u32,
    /// IOMMU state.
    pub iommu: IommuState,
    /// Groups, by number.
    pub groups: Vec<Group>,
    /// Host-level traps that make the groups themselves untrue (`pcie_acs_override=`)
    /// or the boot differ from any plan (mkinitcpio hook order), as `bind --dry-run`
    /// words them.
    pub warnings: Vec<String>,
    /// Devices present but in no group (not covered by the IOMMU).
    #[serde(skip)]
    pub ungrouped: Vec<PciAddress>,
}

fn view(d: &Device, ids: Option<&PciIds>, gpu: Option<usize>) -> DeviceView {
    let name = |f: &dyn Fn(&PciIds) -> Option<&str>| ids.and_then(f).map(str::to_owned);
    let (device_name, subsystem_name) = ids.map_or((None, None), |i| {
        i.device_and_subsystem(d.vendor, d.device, d.subsystem_vendor, d.subsystem_device)
    });
    DeviceView {
        address: d.address,
        id: d.id().to_string(),
        subsystem: format!("{:04x}:{:04x}", d.subsystem_vendor, d.subsystem_device),
        class: format!("{:06x}", d.class),
        class_name: name(&|i| i.subclass(d.class))
            .unwrap_or_else(|| class_name(d.class).to_owned()),
        vendor_name: name(&|i| i.vendor(d.vendor)),
        device_name: device_name.map(str::to_owned),
        subsystem_name: subsystem_name.map(str::to_owned),
        driver: d.driver.clone(),
        boot_vga: d.boot_vga,
        bridge: d.is_bridge(),
        gpu,
        sriov: d.sriov.clone(),
        reset: None,
        display: d.is_display(),
    }
}

/// Reads every group (names from `ids`) and asks the planner about each.
pub fn collect(host: &Host, ids: Option<&PciIds>) -> Groups {
    let topo = read_topology(host);
    let mut g = of_topology(&topo, ids);
    add_resets(&mut g, &topo, &reset::read_all(host, &topo.devices));
    let none = Plan::default();
    g.warnings = traps::find(&none, &topo, &read_facts(host, &none))
        .iter()
        .map(traps::Trap::warning)
        .collect();
    if !g.iommu.on {
        let ev = Evidence::read(host);
        let cmdline = Cmdline::parse(&host.read("proc/cmdline").unwrap_or_default());
        let (reason, fix) = ev.why_off(&cmdline);
        g.iommu = IommuState {
            on: false,
            vendor: ev.vendor(),
            reason: Some(reason),
            fix: Some(fix),
        };
    } else {
        g.iommu.vendor = Evidence::gather(host, Ok(&[])).vendor();
    }
    g
}

/// Adds each device's reset verdict, its IOMMU group being what is assigned with it.
pub fn add_resets(
    g: &mut Groups,
    topo: &Topology,
    methods: &std::collections::BTreeMap<PciAddress, reset::Methods>,
) {
    let families = reset::builtin_families();
    for grp in &mut g.groups {
        let n = grp.group;
        // The topology's devices are sorted by address (pci::scan): looked up by
        // binary search, so that a big machine costs what its devices do.
        let find = |a: PciAddress| {
            topo.devices
                .binary_search_by_key(&a, |d| d.address)
                .ok()
                .map(|i| &topo.devices[i])
        };
        let in_group = |a: PciAddress| find(a).is_some_and(|d| d.iommu_group == Some(n));
        for view in &mut grp.devices {
            if let Some(d) = find(view.address) {
                let v = reset::judge(d, &topo.devices, methods, &in_group, &families);
                view.reset = Some(ResetView::of(&v));
            }
        }
    }
}

/// The groups of a topology, each with the planner's verdict (pure; `iommu.vendor`
/// and the reasons are left for [`collect`]).
pub fn of_topology(topo: &Topology, ids: Option<&PciIds>) -> Groups {
    let numbers: std::collections::BTreeSet<u32> =
        topo.devices.iter().filter_map(|d| d.iommu_group).collect();
    let gpu_list = gpus(topo);
    let gpu_of = |a: PciAddress| gpu_list.binary_search(&a).ok().map(|i| i + 1);
    let planner = plan::Planner::new(topo);
    let groups: Vec<Group> = numbers
        .into_iter()
        .map(|g| {
            let v = planner.group_verdict(g);
            Group {
                group: g,
                usable: v.handover == Handover::Ready,
                handover: v.handover,
                select: v.select,
                needs: v.needs,
                blockers: v.blockers,
                devices: planner
                    .members(g)
                    .iter()
                    .map(|d| view(d, ids, gpu_of(d.address)))
                    .collect(),
            }
        })
        .collect();
    Groups {
        version: 1,
        iommu: IommuState {
            on: !groups.is_empty(),
            vendor: None,
            reason: None,
            fix: None,
        },
        groups,
        warnings: Vec::new(),
        ungrouped: topo
            .devices
            .iter()
            .filter(|d| d.iommu_group.is_none())
            .map(|d| d.address)
            .collect(),
    }
}

/// Applies the filters.
///
/// # Errors
/// [`Error::Usage`] when the group or device named does not exist (or is in no
/// group), [`Error::Refused`] when `--gpu` leaves nothing to show.
pub fn filter(mut all: Groups, args: &Args) -> Result<Groups, Error> {
    if let Some(g) = args.group {
        all.groups.retain(|x| x.group == g);
        if all.groups.is_empty() && all.iommu.on {
            return Err(Error::Usage(format!("no IOMMU group {g}")));
        }
    }
    if let Some(a) = args.device {
        all.groups
            .retain(|x| x.devices.iter().any(|d| d.address == a));
        if all.groups.is_empty() && all.iommu.on {
            return Err(Error::Usage(if all.ungrouped.contains(&a) {
                format!("{a} is not covered by the IOMMU: the device is there, in no IOMMU group")
            } else {
                format!("no such device: no PCI device at {a}")
            }));
        }
    }
    if args.gpu {
        all.groups.retain(|x| x.devices.iter().any(|d| d.display));
        if all.groups.is_empty() && all.iommu.on {
            return Err(Error::Refused(match (args.group, args.device) {
                (Some(g), _) => format!("IOMMU group {g} has no display controller (GPU)"),
                (_, Some(a)) => format!("the IOMMU group of {a} has no display controller (GPU)"),
                _ => "no display controller (GPU) is in an IOMMU group".to_owned(),
            }));
        }
    }
    Ok(all)
}

/// The human rendering.
pub fn render(g: &Groups) -> String {
    let mut out = String::new();
    if !g.iommu.on {
        let _ = writeln!(
            out,
            "No IOMMU groups: {}",
            g.iommu.reason.as_deref().unwrap_or("the IOMMU is off")
        );
        if let Some(f) = &g.iommu.fix {
            let _ = writeln!(out, "fix: {f}");
        }
        return out;
    }
    for grp in &g.groups {
        let _ = match grp.handover {
            Handover::Ready => writeln!(
                out,
                "IOMMU group {}: ready: every endpoint is on vfio-pci (keep {} selected)",
                grp.group,
                list(&grp.select)
            ),
            Handover::Possible => {
                let needs: Vec<String> = grp
                    .needs
                    .iter()
                    .map(|n| format!("{} = true", n.key()))
                    .collect();
                let with = if needs.is_empty() {
                    String::new()
                } else {
                    format!(" (its entries need {})", needs.join(" and "))
                };
                writeln!(
                    out,
                    "IOMMU group {}: possible: a config selecting {} hands it to vfio-pci{with}",
                    grp.group,
                    list(&grp.select)
                )
            }
            Handover::Impossible => writeln!(
                out,
                "IOMMU group {}: impossible: {}",
                grp.group,
                grp.blockers.join("; ")
            ),
        };
        for d in &grp.devices {
            let mut names = String::new();
            if let Some(v) = &d.vendor_name {
                names.push_str(v);
                names.push(' ');
            }
            if let Some(n) = &d.device_name {
                names.push_str(n);
                names.push(' ');
            }
            let _ = write!(
                out,
                "\t{} {} [{}]: {names}[{}]",
                d.address,
                d.class_name,
                &d.class[..4],
                d.id
            );
            if let Some(s) = &d.subsystem_name {
                let _ = write!(out, " ({s})");
            }
            let _ = write!(out, " driver={}", d.driver.as_deref().unwrap_or("none"));
            if d.boot_vga {
                out.push_str(" boot_vga");
            }
            out.push_str(if d.bridge { " bridge" } else { " endpoint" });
            if let Some(n) = d.gpu {
                let _ = write!(out, " GPU {n}");
            }
            match &d.sriov {
                Some(Sriov::Pf {
                    totalvfs, numvfs, ..
                }) => {
                    let _ = write!(out, " SR-IOV PF: {numvfs} of {totalvfs} VFs");
                }
                Some(Sriov::Vf { pf, index }) => {
                    let _ = write!(out, " SR-IOV VF {index} of {pf}");
                }
                None => {}
            }
            out.push('\n');
            if let Some(r) = &d.reset {
                render_reset(&mut out, r, !matches!(grp.handover, Handover::Impossible));
            }
        }
    }
    out
}

/// The device's reset line under it (`reset: flr pm`, `reset: none (cannot be reset
/// between VM runs)`, `reset: unknown`), and the hint when there is one and the group
/// can be handed over (advice about a device that stays with the host is noise: the
/// JSON keeps it); nothing for a bridge.
fn render_reset(out: &mut String, r: &ResetView, advise: bool) {
    if r.resettable == reset::Resettable::NotNeeded {
        return;
    }
    let methods = match &r.methods {
        None => "unknown".to_owned(),
        Some(m) if m.is_empty() => "none".to_owned(),
        Some(m) => reset::words(m),
    };
    let _ = write!(out, "\t\treset: {methods}");
    if matches!(
        r.resettable,
        reset::Resettable::SlotBus | reset::Resettable::No | reset::Resettable::Unknown
    ) {
        let _ = write!(out, " ({})", r.resettable.words());
    }
    out.push('\n');
    if let Some(h) = r.hint.as_ref().filter(|_| advise) {
        let _ = writeln!(out, "\t\treset hint: {h}");
    }
}

fn list(a: &[PciAddress]) -> String {
    let mut out = String::with_capacity(a.len() * 14);
    for (i, x) in a.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}{x}");
    }
    out
}

/// Runs `vfio-early groups`: 0 shown, 1 no IOMMU (or `--gpu` with nothing to show),
/// 2 a filter naming nothing.
///
/// # Errors
/// What [`filter`] returns.
pub fn run(args: &Args, host: &Host) -> Outcome {
    let ids = PciIds::load(host);
    let all = collect(host, ids.as_ref());
    let on = all.iommu.on;
    let shown = filter(all, args)?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&shown).unwrap_or_default();
        s.push('\n');
        s
    } else {
        render(&shown)
    };
    for w in &shown.warnings {
        eprintln!("warning: {w}");
    }
    crate::report::print_stdout(&text);
    Ok(if on { Exit::Ok } else { Exit::Problem })
}
