//! `vfio-early groups`: every IOMMU group, its devices, and whether the group can go
//! to vfio as it stands.
//!
//! Each device shows its address, class and `[vendor:device]` with names from the
//! host's `pci.ids` (numeric ids when it is absent), its driver, `boot_vga`, and
//! whether it is a bridge. A group is usable when every member is on vfio-pci (or a
//! vfio variant), on pci-stub, on no driver, or is a bridge on `pcieport`: the rule
//! the kernel applies before it lets userspace have the group.
//!
//! Without an IOMMU there are no groups; the command then says why (from the
//! firmware tables, the command line and the log) and what fixes it, and exits 1.
//!
//! JSON (`--json`):
//!
//! ```json
//! { "version": 1,
//!   "iommu": { "on": true, "vendor": "intel", "reason": null, "fix": null },
//!   "groups": [ { "group": 1, "usable": false,
//!                 "blockers": ["0000:00:14.0 (SMBus) is on the host driver i2c_piix4"],
//!                 "devices": [ { "address": "0000:01:00.0", "id": "1002:6779",
//!                   "subsystem": "1458:21ac", "class": "030000",
//!                   "class_name": "VGA compatible controller",
//!                   "vendor_name": "...", "device_name": "...", "subsystem_name": null,
//!                   "driver": "vfio-pci", "boot_vga": false, "bridge": false } ] } ] }
//! ```

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;

use crate::cmdline::Cmdline;
use crate::host::Host;
use crate::iommu::{Evidence, Vendor};
use crate::pci::{self, Device, PciAddress};
use crate::pciids::PciIds;
use crate::plan::class_name;

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
    /// A PCI bridge (root or downstream port).
    pub bridge: bool,
    /// Display class.
    #[serde(skip)]
    pub display: bool,
}

/// One group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Group number.
    pub group: u32,
    /// Whether userspace can have it as it stands.
    pub usable: bool,
    /// Members that stand in the way.
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
}

/// Whether one member lets its group go to userspace now; `Err` names the blocker.
pub(crate) fn member_blocker(d: &Device) -> Option<String> {
    match d.driver.as_deref() {
        None | Some("pci-stub") => None,
        Some(drv)
            if drv == pci::VFIO_DRIVER
                || drv.ends_with("vfio_pci")
                || drv.ends_with("vfio-pci") =>
        {
            None
        }
        Some("pcieport") if d.is_bridge() => None,
        Some(drv) => Some(format!(
            "{} ({}) is on the host driver {drv}",
            d.address,
            class_name(d.class)
        )),
    }
}

/// The members of one group, read from sysfs.
pub(crate) fn group_devices(host: &Host, group: u32) -> Vec<Device> {
    let mut ds: Vec<Device> = host
        .list(format!("{}/{group}/devices", pci::IOMMU_GROUPS))
        .iter()
        .filter_map(|n| n.parse::<PciAddress>().ok())
        .filter_map(|a| Device::read(host, a))
        .collect();
    ds.sort_by_key(|d| d.address);
    ds
}

/// Blockers of a group's members (empty: usable).
pub fn blockers(members: &[Device]) -> Vec<String> {
    members.iter().filter_map(member_blocker).collect()
}

fn view(d: &Device, ids: Option<&PciIds>) -> DeviceView {
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
        display: d.is_display(),
    }
}

/// Reads every group (names from `ids`).
pub fn collect(host: &Host, ids: Option<&PciIds>) -> Groups {
    let mut numbers: Vec<u32> = host
        .list(pci::IOMMU_GROUPS)
        .iter()
        .filter_map(|g| g.parse().ok())
        .collect();
    numbers.sort_unstable();
    let groups: Vec<Group> = numbers
        .into_iter()
        .map(|g| {
            let members = group_devices(host, g);
            let blockers = blockers(&members);
            Group {
                group: g,
                usable: blockers.is_empty(),
                blockers,
                devices: members.iter().map(|d| view(d, ids)).collect(),
            }
        })
        .collect();
    let iommu = if groups.is_empty() {
        let ev = Evidence::read(host);
        let cmdline = Cmdline::parse(&host.read("proc/cmdline").unwrap_or_default());
        let (reason, fix) = ev.why_off(&cmdline);
        IommuState {
            on: false,
            vendor: ev.vendor(),
            reason: Some(reason),
            fix: Some(fix),
        }
    } else {
        let ev = Evidence::gather(host, Ok(&[]));
        IommuState {
            on: true,
            vendor: ev.vendor(),
            reason: None,
            fix: None,
        }
    };
    Groups {
        version: 1,
        iommu,
        groups,
    }
}

/// Applies the filters; `Err` says what matched nothing.
pub fn filter(mut all: Groups, args: &Args) -> Result<Groups, String> {
    if let Some(g) = args.group {
        all.groups.retain(|x| x.group == g);
        if all.groups.is_empty() {
            return Err(format!("no IOMMU group {g}"));
        }
    }
    if let Some(a) = args.device {
        all.groups
            .retain(|x| x.devices.iter().any(|d| d.address == a));
        if all.groups.is_empty() {
            return Err(format!(
                "{a} is in no IOMMU group (no such device, or the IOMMU does not cover it)"
            ));
        }
    }
    if args.gpu {
        all.groups.retain(|x| x.devices.iter().any(|d| d.display));
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
        if grp.usable {
            let _ = writeln!(out, "IOMMU group {}: usable for vfio", grp.group);
        } else {
            let _ = writeln!(
                out,
                "IOMMU group {}: not usable as it stands: {}",
                grp.group,
                grp.blockers.join("; ")
            );
        }
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
            out.push('\n');
        }
    }
    out
}

/// Runs `vfio-early groups`.
pub fn run(args: &Args, host: &Host) -> ExitCode {
    let ids = PciIds::load(host);
    let all = collect(host, ids.as_ref());
    let on = all.iommu.on;
    let shown = match filter(all, args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("vfio-early: groups: {e}");
            return ExitCode::from(1);
        }
    };
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&shown).unwrap_or_default();
        s.push('\n');
        s
    } else {
        render(&shown)
    };
    crate::report::print_stdout(&text);
    if on {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
