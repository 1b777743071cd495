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
//! `reset` is the reset verdict ([`crate::reset::Judge`], the IOMMU group counting as
//! what is assigned together): `methods` as the kernel's `reset_method` lists them
//! (`[]` when it shows none, `null` when the kernel is older than 5.15), `resettable`
//! one of `device`, `slot-bus`, `no` (cannot be reset between VM runs), `unknown`,
//! `not-needed` (a bridge); `family` and `hint` only when there is advice.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cmdline::Cmdline;
use crate::exit::{Error, Exit, Outcome};
use crate::host::Host;
use crate::iommu::{Evidence, Vendor};
use crate::machine::{gpus, read_facts, read_topology_with};
use crate::pci::{Device, PciAddress, Sriov, Text};
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

/// One device of a group, as shown (names borrowed from the `pci.ids` it was read
/// with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceView<'a> {
    /// PCI address.
    pub address: PciAddress,
    /// `vendor:device`.
    pub id: String,
    /// `subvendor:subdevice`.
    pub subsystem: String,
    /// Class code, six hex digits.
    pub class: String,
    /// Class name (pci.ids, else a built-in coarse name).
    pub class_name: &'a str,
    /// Vendor name from pci.ids.
    pub vendor_name: Option<&'a str>,
    /// Device name from pci.ids.
    pub device_name: Option<&'a str>,
    /// Subsystem (card) name from pci.ids.
    pub subsystem_name: Option<&'a str>,
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
    pub hint: Option<Cow<'static, str>>,
}

impl ResetView {
    /// The view of a verdict.
    pub fn of(v: &reset::Verdict<'_>) -> Self {
        Self {
            methods: v.methods.listed().map(<[reset::Method]>::to_vec),
            resettable: v.resettable,
            family: v.family.map(|f| f.name.clone()),
            hint: reset::hint(v),
        }
    }
}

/// One group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group<'a> {
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
    pub devices: Vec<DeviceView<'a>>,
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

/// Everything `groups` shows (names borrowed from the `pci.ids` it was read with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Groups<'a> {
    /// Format version.
    pub version: u32,
    /// IOMMU state.
    pub iommu: IommuState,
    /// Groups, by number.
    pub groups: Vec<Group<'a>>,
    /// Host-level traps that make the groups themselves untrue (`pcie_acs_override=`)
    /// or the boot differ from any plan (mkinitcpio hook order), as `bind --dry-run`
    /// words them.
    pub warnings: Vec<String>,
    /// Devices present but in no group (not covered by the IOMMU).
    #[serde(skip)]
    pub ungrouped: Vec<PciAddress>,
}

fn view<'a>(d: &Device, ids: Option<&'a PciIds>, gpu: Option<usize>) -> DeviceView<'a> {
    let (device_name, subsystem_name) = ids.map_or((None, None), |i| {
        i.device_and_subsystem(d.vendor, d.device, d.subsystem_vendor, d.subsystem_device)
    });
    // `{:04x}:{:04x}` and `{:06x}`, without the formatting machinery (once per device).
    let pair = |a: u16, b: u16| {
        let mut t = Text::<9>::new();
        t.hex(a.into(), 4).byte(b':').hex(b.into(), 4);
        t.as_str().to_owned()
    };
    DeviceView {
        address: d.address,
        id: pair(d.vendor, d.device),
        subsystem: pair(d.subsystem_vendor, d.subsystem_device),
        class: Text::<8>::new().hex(d.class, 6).as_str().to_owned(),
        class_name: ids
            .and_then(|i| i.subclass(d.class))
            .unwrap_or_else(|| class_name(d.class)),
        vendor_name: ids.and_then(|i| i.vendor(d.vendor)),
        device_name,
        subsystem_name,
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
pub fn collect<'a>(host: &Host, ids: Option<&'a PciIds>) -> Groups<'a> {
    // `reset_method` is read with the other attributes, from the same directory.
    let has_attr = reset::host_has_attr(host);
    let (topo, methods) = read_topology_with(host, |a| reset::read_in(a, has_attr));
    let mut g = of_topology(&topo, ids);
    add_resets(&mut g, &topo, &methods);
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

/// Adds each device's reset verdict, its IOMMU group being what is assigned with it;
/// `methods[i]` are those of `topo.devices[i]`.
pub fn add_resets(g: &mut Groups<'_>, topo: &Topology, methods: &[reset::Methods]) {
    let families = reset::builtin_families();
    let judge = reset::Judge::new(&topo.devices, methods, &families);
    for grp in &mut g.groups {
        let n = grp.group;
        let in_group = |d: &Device| d.iommu_group == Some(n);
        for view in &mut grp.devices {
            if let Some(i) = judge.index(view.address) {
                view.reset = Some(ResetView::of(&judge.verdict(i, &in_group)));
            }
        }
    }
}

/// The groups of a topology, each with the planner's verdict (pure; `iommu.vendor`
/// and the reasons are left for [`collect`]).
pub fn of_topology<'a>(topo: &Topology, ids: Option<&'a PciIds>) -> Groups<'a> {
    let numbers: std::collections::BTreeSet<u32> =
        topo.devices.iter().filter_map(|d| d.iommu_group).collect();
    let gpu_list = gpus(topo);
    let gpu_of = |a: PciAddress| gpu_list.binary_search(&a).ok().map(|i| i + 1);
    let planner = plan::Planner::new(topo);
    let groups: Vec<Group<'a>> = numbers
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
pub fn filter<'a>(mut all: Groups<'a>, args: &Args) -> Result<Groups<'a>, Error> {
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
pub fn render(g: &Groups<'_>) -> String {
    // About two lines of 100 bytes per device: grown once or twice, not a page at a
    // time.
    let devices: usize = g.groups.iter().map(|grp| grp.devices.len()).sum();
    let mut out = String::with_capacity(256 + 256 * devices);
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
            // `\t{address} {class_name} [{class:4}]: {vendor} {device} [{id}]`, pieces
            // pushed as they are (once per device: no formatting machinery).
            out.push('\t');
            d.address.push_to(&mut out);
            for piece in [
                " ",
                d.class_name,
                " [",
                d.class.get(..4).unwrap_or(&d.class),
                "]: ",
            ] {
                out.push_str(piece);
            }
            for name in [d.vendor_name, d.device_name].into_iter().flatten() {
                out.push_str(name);
                out.push(' ');
            }
            out.push('[');
            out.push_str(&d.id);
            out.push(']');
            if let Some(s) = &d.subsystem_name {
                out.push_str(" (");
                out.push_str(s);
                out.push(')');
            }
            out.push_str(" driver=");
            out.push_str(d.driver.as_deref().unwrap_or("none"));
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
    out.push_str("\t\treset: ");
    match &r.methods {
        None => out.push_str("unknown"),
        Some(m) if m.is_empty() => out.push_str("none"),
        Some(m) => {
            for (i, method) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(method.name());
            }
        }
    }
    if matches!(
        r.resettable,
        reset::Resettable::SlotBus | reset::Resettable::No | reset::Resettable::Unknown
    ) {
        out.push_str(" (");
        out.push_str(r.resettable.words());
        out.push(')');
    }
    out.push('\n');
    if let Some(h) = r.hint.as_ref().filter(|_| advise) {
        out.push_str("\t\treset hint: ");
        out.push_str(h);
        out.push('\n');
    }
}

fn list(a: &[PciAddress]) -> String {
    let mut out = String::with_capacity(a.len() * 14);
    for (i, x) in a.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        x.push_to(&mut out);
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
