//! `vfio-early check`: after a boot, tell the truth about the machine.
//!
//! One [`Finding`] per check, from the kernel's own evidence:
//!
//! - `iommu vendor`, `iommu`, `interrupt remapping`, `kernel log`: [`crate::iommu`];
//! - `cmdline ...`: [`crate::cmdline_check`];
//! - `framebuffer`: a boot framebuffer in `/proc/iomem` over a BAR of a configured
//!   device ([`crate::iomem`]);
//! - `device ADDR`: each configured device is on vfio-pci and its group is usable;
//!   `boot ADDR`: what the agent did at boot (its record under `/run/vfio-early/`;
//!   the kernel log's lines are counted, never parsed), and why a host driver had to
//!   be unbound;
//! - `image`: the config the agent used at boot versus the file now;
//! - `hugepages SIZE`: the pools versus the config;
//! - `kernel config`: the running kernel's config, summarised.
//!
//! Exit status: 0 when nothing fails, 1 when something does, 2 when the config cannot
//! be read or parsed (the other findings are still printed).

use std::path::{Path, PathBuf};

use crate::cmdline::Cmdline;
use crate::cmdline_check::{self, Context};
use crate::config::{self, Config};
use crate::exit::{Exit, Outcome};
use crate::host::Host;
use crate::iomem;
use crate::iommu::{Evidence, Vendor};
use crate::kmsg;
use crate::machine::{self, read_topology};
use crate::modules::normalize;
use crate::pci::{self, Device, PciAddress};
use crate::plan::{self, Action, Plan, Topology};
use crate::record::{DeviceOutcome, Record};
use crate::report::{self, Finding, Status};
use crate::traps::{Facts, Trap};

/// Options of `vfio-early check`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// The config to check against (default: ROOT/etc/vfio-early.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The findings, and whether the config was unusable (exit 2).
#[derive(Debug, Clone)]
pub struct Findings {
    /// Every finding, in report order.
    pub findings: Vec<Finding>,
    /// The config could not be read or parsed.
    pub config_error: bool,
}

impl Findings {
    /// Usage for a config error, Problem for a FAIL finding, else Ok.
    pub fn exit(&self) -> Exit {
        if self.config_error {
            Exit::Usage
        } else {
            Exit::problem_if(self.findings.iter().any(|f| f.status == Status::Fail))
        }
    }

    /// 0, 1 or 2.
    pub fn exit_status(&self) -> u8 {
        self.exit().code()
    }
}

/// Runs `vfio-early check`: the findings are printed whatever the exit, and JSON's
/// `exit` is the process's exit code.
///
/// # Errors
/// None of its own: a config error is a finding, and exits 2.
pub fn run(args: &Args, host: &Host) -> Outcome {
    let out = check(host, args.config.as_deref());
    let text = if args.json {
        report::render_json_with_exit(&out.findings, out.exit().code())
    } else {
        report::render_human(&out.findings, report::stdout_colour())
    };
    report::print_stdout(&text);
    Ok(out.exit())
}

/// Every check, against `config` (default: the host's `etc/vfio-early.toml`).
pub fn check(host: &Host, config_path: Option<&Path>) -> Findings {
    let mut f: Vec<Finding> = Vec::new();
    let cmdline = Cmdline::parse(&host.read("proc/cmdline").unwrap_or_default());
    let records = kmsg::read(host).map_err(|e| e.to_string());
    let ev = Evidence::gather(host, records.as_deref().map_err(Clone::clone));
    let records = records.unwrap_or_default();
    f.extend(ev.findings(&cmdline));

    // The config and the devices it selects.
    let path = config_path.map_or_else(|| host.path(config::DEFAULT_PATH), Path::to_path_buf);
    let mut config_error = false;
    let config = match Config::load(&path) {
        Ok(c) => {
            f.push(Finding::new(
                "config",
                Status::Pass,
                format!(
                    "{} parses: {} [[device]] and {} [[hugepages]] entries",
                    path.display(),
                    c.devices.len(),
                    c.hugepages.len()
                ),
            ));
            Some(c)
        }
        Err(_) if config_path.is_none() && !path.exists() => {
            f.push(Finding::new(
                "config",
                Status::Info,
                format!(
                    "no config at {}: no device is configured for passthrough",
                    path.display()
                ),
            ));
            None
        }
        Err(e) => {
            config_error = true;
            f.push(
                Finding::new("config", Status::Fail, e.to_string())
                    .hint("fix the config, then rebuild the initramfs"),
            );
            None
        }
    };
    let topo = read_topology(host);
    let devices = topo.devices.clone();
    let selectors = config
        .as_ref()
        .map(|c| c.devices.as_slice())
        .unwrap_or_default();
    let judged = machine::judge(host, &topo, selectors);
    let plan = &judged.plan;
    for w in &plan.warnings {
        f.push(Finding::new("config", Status::Warn, w.clone()));
    }
    // The traps, exactly as bind --dry-run, config suggest and apply warn of them.
    f.extend(trap_findings(&judged.traps));
    let configured: Vec<PciAddress> = plan
        .devices
        .iter()
        .filter(|d| d.selected)
        .map(|d| d.address)
        .collect();

    let kconfig = cmdline_check::read_kernel_config(host);
    let ctx = Context {
        vendor: ev.vendor(),
        iommu_on: ev.is_on(),
        intel_default_on: kconfig
            .as_ref()
            .map(|(_, c)| cmdline_check::intel_on_by_default(c)),
        platform_opt_in: ev.log.platform_opt_in,
        devices: &devices,
        configured: &configured,
    };
    f.extend(cmdline_check::judge(&cmdline, &ctx));
    // `options vfio-pci ids=` in modprobe.d does the same, unless the command line
    // overrides it (modprobe applies the command line last).
    if cmdline.last("vfio_pci.ids").is_none() {
        if let Some((file, ids)) = machine::modprobe_ids(host) {
            f.extend(cmdline_check::judge_ids_value(
                "modprobe.d vfio-pci ids",
                &format!("options vfio-pci ids in /{file}"),
                &ids,
                &ctx,
            ));
        }
    }
    f.push(framebuffer(host, &cmdline, &configured));

    let record = Record::load(host);
    f.extend(device_findings(
        host,
        &cmdline,
        &topo,
        plan,
        &configured,
        record.as_ref(),
        &records,
    ));
    f.extend(reset_findings(host, &topo, plan, selectors, &configured));
    f.extend(kernel_verdicts(host, &devices, &configured));
    if let Some(m) = vfio_backend(host, &devices) {
        f.push(m);
    }
    if let Some(m) = vfio_interface(host) {
        f.push(m);
    }
    f.push(freshness(host, config.as_ref(), record.as_ref()));
    if let Some(c) = &config {
        f.extend(hugepages(host, c, &cmdline));
        f.extend(crate::sriov::findings(
            &c.sriov,
            &devices,
            record
                .as_ref()
                .map(|r| r.sriov.as_slice())
                .unwrap_or_default(),
        ));
    }
    f.push(kernel_config(host, &ev, kconfig.as_ref()));
    Findings {
        findings: f,
        config_error,
    }
}

/// The traps as findings: FAIL when the boot would differ from the plan, WARN for a
/// caution.
pub fn trap_findings(traps: &[Trap]) -> Vec<Finding> {
    traps
        .iter()
        .map(|t| {
            let status = if t.differs {
                Status::Fail
            } else {
                Status::Warn
            };
            Finding::new(t.check.clone(), status, t.text.clone()).hint(t.hint.clone())
        })
        .collect()
}

/// The framebuffer check.
pub fn framebuffer(host: &Host, cmdline: &Cmdline, configured: &[PciAddress]) -> Finding {
    const CHECK: &str = "framebuffer";
    let Ok(text) = host.read("proc/iomem") else {
        return Finding::new(CHECK, Status::Info, "/proc/iomem is not readable");
    };
    let regions = iomem::parse(&text);
    let fbs = iomem::framebuffers(&regions);
    if configured.is_empty() {
        return Finding::new(
            CHECK,
            Status::NotApplicable,
            "no device is configured for passthrough",
        );
    }
    if fbs.is_empty() {
        return Finding::new(CHECK, Status::Pass, "no boot framebuffer in /proc/iomem");
    }
    let bars: Vec<(PciAddress, Vec<iomem::Bar>)> = configured
        .iter()
        .map(|a| (*a, iomem::bars(host, *a)))
        .collect();
    let overlaps = iomem::overlaps(&regions, &bars);
    let Some(o) = overlaps.first() else {
        let names: Vec<String> = fbs
            .iter()
            .map(|fb| match fb.inside {
                Some(a) => format!("{} (in {a})", fb.region.name),
                None => fb.region.name.clone(),
            })
            .collect();
        return Finding::new(
            CHECK,
            Status::Pass,
            format!(
                "boot framebuffer {} overlaps no BAR of a configured device",
                names.join(", ")
            ),
        );
    };
    let at = match (o.range, o.bar) {
        (Some((s, e)), Some(b)) => format!(" at {s:#x}-{e:#x}, inside BAR {b}"),
        (Some((s, e)), None) => format!(" at {s:#x}-{e:#x}"),
        _ => " (nested under it in /proc/iomem; addresses hidden, run as root for them)".to_owned(),
    };
    let detail = format!(
        "the boot framebuffer {} lies in a BAR of {}{at}: vfio-pci cannot reserve that BAR",
        o.framebuffer, o.device
    );
    Finding::new(CHECK, Status::Fail, detail).hint(framebuffer_fix(host, cmdline, &o.framebuffer))
}

/// The kernel parameter that removes a given framebuffer on this kernel.
fn framebuffer_fix(host: &Host, cmdline: &Cmdline, name: &str) -> String {
    let n = name.to_ascii_lowercase();
    let sysfb = host
        .kernel_release()
        .and_then(|r| {
            let mut it = r.split(['.', '-']).map(|x| x.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .is_none_or(|v| v >= (5, 15));
    let efifb_off = cmdline
        .all("video")
        .iter()
        .flatten()
        .any(|v| v.starts_with("efifb:off"));
    if n.contains("vesafb") {
        "add video=vesafb:off to the kernel command line".to_owned()
    } else if n.contains("efifb") && !efifb_off {
        "add video=efifb:off to the kernel command line".to_owned()
    } else if sysfb {
        let also = if efifb_off {
            " (video=efifb:off is not enough: simpledrm/simplefb hold it)"
        } else {
            ""
        };
        format!("add initcall_blacklist=sysfb_init to the kernel command line{also}")
    } else {
        "add video=efifb:off to the kernel command line".to_owned()
    }
}

/// Why a host driver was already bound when the agent ran: (why, fix).
pub(crate) fn early_driver_reason(
    host: &Host,
    cmdline: &Cmdline,
    driver: &str,
) -> (String, String) {
    let drv = normalize(driver);
    // What loads drivers before the hook: one rule with the traps bind --dry-run shows.
    let facts = machine::read_facts(host, &Plan::default());
    let facts = Facts {
        cmdline: cmdline.clone(),
        ..facts
    };
    if let Some(r) = facts.early_loader(driver) {
        return r;
    }
    let listed = |rel: &str, key: &str| -> bool {
        host.read(rel).is_ok_and(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#'))
                .any(|l| {
                    let body = if key.is_empty() {
                        Some(l)
                    } else {
                        l.strip_prefix(key)
                            .map(|r| r.trim_start_matches(['+', '=']))
                    };
                    body.is_some_and(|b| {
                        b.split(|c: char| c.is_whitespace() || "()\"',".contains(c))
                            .any(|w| normalize(w) == drv)
                    })
                })
        })
    };
    if listed("etc/mkinitcpio.conf", "MODULES") {
        return (
            format!("MODULES= in /etc/mkinitcpio.conf loads {driver} early"),
            format!("remove {driver} from MODULES= in /etc/mkinitcpio.conf, then mkinitcpio -P"),
        );
    }
    if listed("etc/initramfs-tools/modules", "") {
        return (
            format!("/etc/initramfs-tools/modules loads {driver} early"),
            format!("remove {driver} from /etc/initramfs-tools/modules, then update-initramfs -u"),
        );
    }
    (
        format!("{driver} was loaded before the agent ran (another early hook or udev)"),
        "make sure the vfio-early hook runs before udev coldplug in the initramfs".to_owned(),
    )
}

fn device_findings(
    host: &Host,
    cmdline: &Cmdline,
    topo: &Topology,
    plan: &Plan,
    configured: &[PciAddress],
    record: Option<&Record>,
    log: &[kmsg::Record],
) -> Vec<Finding> {
    let mut out = Vec::new();
    // One index of the topology for every configured device's group verdict (a
    // verdict asked of `plan::group_verdict` each time would index the whole machine
    // again: quadratic on a big host).
    let planner = plan::Planner::new(topo);
    let agent_lines: Vec<&kmsg::Record> = log
        .iter()
        .filter(|r| r.text.starts_with("vfio-early:"))
        .collect();
    if let Some(r) = record {
        if let Some(v) = &r.iommu_verdict {
            out.push(Finding::new(
                "boot",
                Status::Info,
                format!("the agent's verdict at boot: {v}"),
            ));
        }
        if let Some(p) = &r.disabled_by {
            out.push(Finding::new(
                "boot",
                Status::Warn,
                format!("the agent was switched off at boot by {p}"),
            ));
        }
        if let Some(e) = &r.config_error {
            out.push(Finding::new(
                "boot",
                Status::Fail,
                format!("the agent could not use its config at boot: {e}"),
            ));
        }
        for e in &r.errors {
            out.push(Finding::new("boot", Status::Fail, format!("at boot: {e}")));
        }
        for w in &r.warnings {
            out.push(Finding::new("boot", Status::Warn, format!("at boot: {w}")));
        }
    } else if !configured.is_empty() {
        if agent_lines.is_empty() {
            out.push(
                Finding::new(
                    "boot",
                    Status::Warn,
                    "no boot record (/run/vfio-early/record.json) and no vfio-early: lines in the kernel log: \
                     the agent did not run at boot",
                )
                .hint(format!("is the hook in the initramfs? rebuild it: {}", rebuild_command(host))),
            );
        } else {
            out.push(Finding::new(
                "boot",
                Status::Info,
                format!(
                    "no boot record; the kernel log has {} vfio-early: lines",
                    agent_lines.len()
                ),
            ));
        }
    }

    for addr in configured {
        let check = format!("device {addr}");
        let Some(d) = device_at(topo, *addr) else {
            continue;
        };
        match d.driver.as_deref() {
            Some(drv) if pci::is_vfio_driver(drv) => {
                let verdict = d.iommu_group.map(|g| (g, planner.group_verdict(g)));
                out.push(match verdict {
                    None => Finding::new(check, Status::Fail, format!("on {drv}, but in no IOMMU group")),
                    Some((g, v)) if v.handover == plan::Handover::Ready => {
                        Finding::new(check, Status::Pass, format!("on {drv}; IOMMU group {g} is usable"))
                    }
                    Some((g, v)) => {
                        let why: Vec<String> = plan
                            .blockers
                            .get(&g)
                            .map(|bs| bs.iter().map(|b| b.reason.clone()).collect())
                            .unwrap_or(v.blockers);
                        Finding::new(
                            check,
                            Status::Fail,
                            format!("on {drv}, but IOMMU group {g} is not usable: {}", why.join("; ")),
                        )
                        .hint(format!(
                            "`vfio-early groups --group {g}` shows what the planner says the group needs"
                        ))
                    }
                });
            }
            other => {
                let now = other.map_or_else(
                    || "no driver".to_owned(),
                    |d| format!("the host driver {d}"),
                );
                out.push(
                    Finding::new(check, Status::Fail, format!("on {now}, not vfio-pci")).hint(
                        format!(
                        "see the boot {addr} finding; `vfio-early bind --dry-run` shows the plan"
                    ),
                    ),
                );
            }
        }
        out.push(boot_finding(host, cmdline, *addr, record));
    }
    out
}

/// `vfio group N`: the kernel's own verdict on each group of a configured device on
/// vfio-pci, asked through VFIO ([`crate::vfio`]); in use (a VM holds it) is no failure.
fn kernel_verdicts(host: &Host, devices: &[Device], configured: &[PciAddress]) -> Vec<Finding> {
    let groups: std::collections::BTreeSet<u32> = devices
        .iter()
        .filter(|d| {
            configured.contains(&d.address) && d.driver.as_deref() == Some(pci::VFIO_DRIVER)
        })
        .filter_map(|d| d.iommu_group)
        .collect();
    groups
        .into_iter()
        .map(|g| {
            let v = crate::vfio::group_verdict(host, g);
            let status = match v.verdict {
                crate::vfio::Verdict::Viable => Status::Pass,
                crate::vfio::Verdict::NotViable(_) => Status::Fail,
                crate::vfio::Verdict::InUse | crate::vfio::Verdict::Unknown(_) => Status::Info,
            };
            Finding::new(format!("vfio group {g}"), status, v.to_string())
        })
        .collect()
}

fn boot_finding(
    host: &Host,
    cmdline: &Cmdline,
    addr: PciAddress,
    record: Option<&Record>,
) -> Finding {
    let check = format!("boot {addr}");
    let Some(r) = record else {
        // The kernel log's lines are for people; only the record says what was done.
        return Finding::new(
            check,
            Status::Info,
            "no boot record: what the agent did with it at boot is unknown",
        );
    };
    let Some(d) = r.devices.iter().find(|d| d.address == addr) else {
        return Finding::new(
            check,
            Status::Warn,
            "the boot run did not plan it: the config in the initramfs differs",
        )
        .hint(format!("rebuild the initramfs: {}", rebuild_command(host)));
    };
    match (d.action, d.outcome) {
        (Action::Refuse, _) => Finding::new(
            check,
            Status::Fail,
            format!("refused at boot: {}", d.reasons.join("; ")),
        ),
        (_, DeviceOutcome::RolledBack | DeviceOutcome::Failed) => Finding::new(
            check,
            Status::Fail,
            format!(
                "{} at boot: {}",
                d.outcome,
                d.error.as_deref().unwrap_or("no error recorded")
            ),
        ),
        (Action::AlreadyBound, _) => Finding::new(
            check,
            Status::Pass,
            "already on vfio-pci when the agent ran",
        ),
        (_, DeviceOutcome::Bound) => match d.driver_before.as_deref() {
            Some(h) if h != pci::VFIO_DRIVER => {
                let (why, fix) = early_driver_reason(host, cmdline, h);
                Finding::new(
                    check,
                    Status::Warn,
                    format!("bound at boot after unbinding {h}: {why}"),
                )
                .hint(fix)
            }
            _ => Finding::new(
                check,
                Status::Pass,
                "bound to vfio-pci at boot before any host driver",
            ),
        },
        (action, outcome) => Finding::new(
            check,
            Status::Info,
            format!(
                "at boot: action {}, outcome {:?}",
                action.as_str(),
                outcome.as_str()
            ),
        ),
    }
}

/// With devices on vfio-pci, a DMA backend must be loaded too: `vfio` only names
/// `vfio_iommu_type1` as a soft dependency (`softdep vfio post: vfio_iommu_type1`),
/// which nothing applies when vfio was loaded without modprobe; QEMU then stops with
/// "No available IOMMU models". `None` when no device is on vfio-pci or `sys/module`
/// is not there to tell.
fn vfio_backend(host: &Host, devices: &[Device]) -> Option<Finding> {
    if !devices
        .iter()
        .any(|d| d.driver.as_deref() == Some(pci::VFIO_DRIVER))
        || !host.exists("sys/module")
    {
        return None;
    }
    let loaded: Vec<&str> = ["vfio_iommu_type1", "iommufd"]
        .into_iter()
        .filter(|m| host.exists(format!("sys/module/{m}")))
        .collect();
    Some(if loaded.is_empty() {
        Finding::new(
            "vfio modules",
            Status::Warn,
            "vfio-pci is in use but no DMA backend is loaded (vfio_iommu_type1 or iommufd)",
        )
        .hint("modprobe vfio_iommu_type1, or QEMU stops with \"No available IOMMU models\"")
    } else {
        Finding::new(
            "vfio modules",
            Status::Pass,
            format!("DMA backend loaded: {}", loaded.join(", ")),
        )
    })
}

/// The device at `address` (the topology's devices are sorted by address).
fn device_at(topo: &Topology, address: PciAddress) -> Option<&Device> {
    topo.devices
        .binary_search_by_key(&address, |d| d.address)
        .ok()
        .map(|i| &topo.devices[i])
}

/// `reset ADDR`: the reset verdict of each configured device ([`reset::Judge`], the
/// configured devices being what is assigned together), the advice of its family, and
/// whether the `reset_method` its entry chooses is what the kernel shows now.
fn reset_findings(
    host: &Host,
    topo: &Topology,
    plan: &Plan,
    selectors: &[config::Selector],
    configured: &[PciAddress],
) -> Vec<Finding> {
    use crate::reset::{self, Resettable};
    let methods = reset::read_all(host, &topo.devices);
    let families = reset::builtin_families();
    let judge = reset::Judge::new(&topo.devices, &methods, &families);
    let assigned = |d: &Device| configured.contains(&d.address);
    let mut out = Vec::new();
    for addr in configured {
        let Some(i) = judge.index(*addr) else {
            continue;
        };
        let v = judge.verdict(i, &assigned);
        if v.resettable == Resettable::NotNeeded {
            continue;
        }
        let check = format!("reset {addr}");
        let status = match v.resettable {
            _ if v.family.is_some() => Status::Warn,
            Resettable::Device | Resettable::SlotBus => Status::Pass,
            Resettable::No => Status::Warn,
            Resettable::Unknown | Resettable::NotNeeded => Status::Info,
        };
        let detail = format!("reset_method: {}; {}", v.methods, v.resettable.words());
        let mut finding = Finding::new(check, status, detail);
        if let Some(h) = reset::hint(&v) {
            finding = finding.hint(h);
        }
        out.push(finding);
    }
    for (addr, wanted) in plan.reset_targets(selectors) {
        let now = judge
            .index(addr)
            .map_or(reset::Methods::Unknown, |i| methods[i].clone());
        let want = reset::words(wanted);
        out.push(if now.listed() == Some(wanted) {
            Finding::new(
                format!("reset {addr}"),
                Status::Pass,
                format!("reset_method is {want}, as the config chooses"),
            )
        } else {
            Finding::new(
                format!("reset {addr}"),
                Status::Warn,
                format!("the config chooses reset_method {want}; the kernel shows {now}"),
            )
            .hint("the boot log's vfio-early: line for this device says why (or rebuild the initramfs)")
        });
    }
    out
}

/// `vfio interface`: what the running kernel offers userspace, from the nodes it
/// made: the group interface (`/dev/vfio/N`, Linux of every version) and the device
/// cdev (`/dev/vfio/devices/vfioX`, 6.6+ with IOMMUFD and VFIO_DEVICE_CDEV). `None`
/// when vfio is not loaded.
fn vfio_interface(host: &Host) -> Option<Finding> {
    if !host.exists("sys/module/vfio") {
        return None;
    }
    let groups: Vec<String> = host
        .list("dev/vfio")
        .into_iter()
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .map(|n| format!("/dev/vfio/{n}"))
        .collect();
    let cdevs: Vec<String> = host
        .list("dev/vfio/devices")
        .into_iter()
        .map(|n| format!("/dev/vfio/devices/{n}"))
        .collect();
    let release = host.kernel_release().unwrap_or_default();
    let group_part = if groups.is_empty() {
        "group interface: no group open to userspace yet (/dev/vfio/N)".to_owned()
    } else {
        format!("group interface: {}", groups.join(", "))
    };
    let cdev_part = if !cdevs.is_empty() {
        let fd = if host.exists("dev/iommu") {
            "iommufd at /dev/iommu"
        } else {
            "no /dev/iommu"
        };
        format!("device cdev /dev/vfio/devices: {} ({fd})", cdevs.join(", "))
    } else if !release.is_empty() && !at_least(&release, (6, 6)) {
        format!(
            "no vfio device cdev: Linux {release} is older than 6.6, which added /dev/vfio/devices"
        )
    } else if groups.is_empty() {
        "no vfio device cdev (/dev/vfio/devices) now".to_owned()
    } else {
        format!(
            "no vfio device cdev: Linux {release} is built without it (/dev/vfio/devices needs \
             CONFIG_VFIO_DEVICE_CDEV, which needs CONFIG_IOMMUFD)"
        )
    };
    Some(Finding::new(
        "vfio interface",
        Status::Info,
        format!("{group_part}; {cdev_part}"),
    ))
}

/// Whether a kernel release is at least (major, minor).
fn at_least(release: &str, want: (u32, u32)) -> bool {
    let mut p = release.split(|c: char| !c.is_ascii_digit());
    let major = p.next().and_then(|x| x.parse::<u32>().ok());
    let minor = p.next().and_then(|x| x.parse::<u32>().ok());
    matches!((major, minor), (Some(a), Some(b)) if (a, b) >= want)
}

/// The command that rebuilds the initramfs on this system, from what is installed.
pub(crate) fn rebuild_command(host: &Host) -> String {
    use crate::generator::{detect, Generator};
    // One detection for `check` and `apply`: the generator that builds this system's
    // images, and `apply`, which validates the config before it runs it.
    match detect(host, None) {
        Ok((g, _)) => {
            let runs = match g {
                Generator::Dracut => "dracut --force",
                Generator::Mkinitcpio => "mkinitcpio -P",
                Generator::InitramfsTools => "update-initramfs -u",
            };
            format!("vfio-early apply (runs {runs})")
        }
        Err(_) => {
            "vfio-early apply, or your generator (dracut -f / mkinitcpio -P / update-initramfs -u)"
                .to_owned()
        }
    }
}

fn freshness(host: &Host, config: Option<&Config>, record: Option<&Record>) -> Finding {
    const CHECK: &str = "image";
    let Some(r) = record else {
        return Finding::new(
            CHECK,
            Status::NotApplicable,
            "no boot record to compare with",
        );
    };
    let now = config.map(|c| c.text.as_str());
    match (r.config_text.as_deref(), now) {
        (Some(a), Some(b)) if a == b => Finding::new(
            CHECK,
            Status::Pass,
            "the config used at boot is the config on disk",
        ),
        (Some(_), Some(_)) => Finding::new(
            CHECK,
            Status::Warn,
            "the config on disk changed since the initramfs was built: the boot used the old one",
        )
        .hint(format!("rebuild the initramfs: {}", rebuild_command(host))),
        (None, Some(_)) => Finding::new(
            CHECK,
            Status::Warn,
            "the boot run had no config; there is one on disk now",
        )
        .hint(format!("rebuild the initramfs: {}", rebuild_command(host))),
        (Some(_), None) => Finding::new(
            CHECK,
            Status::Info,
            "the boot run used a config that is no longer on disk",
        ),
        (None, None) => Finding::new(CHECK, Status::NotApplicable, "no config at boot nor now"),
    }
}

fn hugepages(host: &Host, config: &Config, cmdline: &Cmdline) -> Vec<Finding> {
    use crate::hugepages::{status, Pools, StatusKind};
    status(&Pools::read(host), config, cmdline)
        .into_iter()
        .map(|s| {
            let what = format!("hugepages {}", crate::hugepages::wording::label(s.pool));
            let notes = s.notes().join("; ");
            match s.kind {
                StatusKind::Unusable { .. } => {
                    Finding::new(what, Status::Warn, format!("unknown reserved; {notes}"))
                }
                StatusKind::Unasked { now } => {
                    Finding::new(what, Status::Info, format!("{now} reserved; {notes}"))
                }
                StatusKind::Asked { want, now, .. } => {
                    let got = now.map_or_else(|| "unknown".to_owned(), |g| g.to_string());
                    let detail = format!("{got} reserved, config asks {want}");
                    if now.is_some_and(|g| g >= want) {
                        Finding::new(what, Status::Pass, detail)
                    } else {
                        Finding::new(what, Status::Warn, detail).hint(notes)
                    }
                }
            }
        })
        .collect()
}

/// The running kernel's config through the `kernel-config` checker, summarised in
/// one finding (`vfio-early check-kconfig` gives the details).
fn kernel_config(
    host: &Host,
    ev: &Evidence,
    kconfig: Option<&(String, kernel_config::Config)>,
) -> Finding {
    const CHECK: &str = "kernel config";
    let Some((source, config)) = kconfig else {
        return Finding::new(
            CHECK,
            Status::Info,
            "the running kernel's config is not available (no /proc/config.gz, no /boot/config-RELEASE)",
        )
        .hint("vfio-early check-kconfig PATH checks a config file");
    };
    let options = kernel_config::Options {
        cpu: kernel_config::Cpu::from_acpi(
            ev.acpi.contains(&Vendor::Intel),
            ev.acpi.contains(&Vendor::Amd),
        ),
        kver: host
            .kernel_release()
            .and_then(|r| kernel_config::KernelVersion::from_release(&r)),
    };
    let report = kernel_config::check(config, &options);
    let detail = format!("{source}: {}", report.summary());
    match report.verdict() {
        kernel_config::Verdict::Pass => Finding::new(CHECK, Status::Pass, detail),
        kernel_config::Verdict::Warn => Finding::new(CHECK, Status::Warn, detail).hint(format!(
            "vfio-early check-kconfig {source} shows each option and its menu path"
        )),
        kernel_config::Verdict::Fail => Finding::new(CHECK, Status::Fail, detail).hint(format!(
            "vfio-early check-kconfig {source} shows each option, its menu path and the fix"
        )),
    }
}
