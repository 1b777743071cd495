//! `vfio-early bind`: the boot path.
//!
//! Reads the config, plans, binds, reserves hugepages, logs, and leaves a record. It
//! exits 0 whatever happens (a boot must go on); `--strict` exits 1 when anything was
//! refused or failed and 2 for a config error, for people testing a config.

use std::path::PathBuf;

use log::{error, info, warn, LevelFilter};

use crate::bind;
use crate::cmdline::Cmdline;
use crate::config::{self, Config};
use crate::exit::{Exit, Outcome};
use crate::host::Host;
use crate::logger::KmsgLogger;
use crate::machine::{self, read_topology};
use crate::pci::{self, PciAddress};
use crate::plan::{self, Action, Plan};
use crate::record::{HugepageRecord, PlanDoc, Record, SriovOutcome};

/// The longest a command line can be, with room to spare (the kernel's
/// `COMMAND_LINE_SIZE` is at most 4 KiB on x86 and 2 KiB on arm64).
const CMDLINE_MAX: u64 = 64 * 1024;
/// How long a run waits for another run's lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Arguments of `bind`.
///
/// The full tool parses them with clap; the boot agent (built without `tools`) with
/// the small parser in [`crate::cli`], which takes the same flags.
#[derive(Debug, Default)]
#[cfg_attr(feature = "tools", derive(clap::Args))]
pub struct Args {
    /// Config file (default: ROOT/etc/vfio-early.toml).
    #[cfg_attr(feature = "tools", arg(long, value_name = "FILE"))]
    pub config: Option<PathBuf>,
    /// Print the plan and change nothing.
    #[cfg_attr(feature = "tools", arg(long))]
    pub dry_run: bool,
    /// With --dry-run: print the plan as JSON.
    #[cfg_attr(feature = "tools", arg(long, requires = "dry_run"))]
    pub json: bool,
    /// Exit 1 when anything was refused or failed, 2 on a config error.
    #[cfg_attr(feature = "tools", arg(long))]
    pub strict: bool,
    /// At boot: do nothing when another run of this boot has begun. The boot hook and
    /// the modprobe.d backstop both start one (several when udev loads drivers in
    /// parallel); the first does the work, the others would only race it. No effect
    /// with --dry-run.
    #[cfg_attr(feature = "tools", arg(long))]
    pub once: bool,
    /// More detail on stderr, with the time since start: -v every step of the bind
    /// and of a rollback, -vv also each poll of the driver links.
    #[cfg_attr(feature = "tools", arg(short, long, action = clap::ArgAction::Count))]
    pub verbose: u8,
}

/// Runs `bind`: always `Ok(Exit::Ok)` without `--strict` (the boot goes on).
///
/// # Errors
/// None: every problem is logged and recorded instead.
pub fn run(args: &Args, host: &Host) -> Outcome {
    let stderr_level = match args.verbose {
        0 if args.dry_run => LevelFilter::Warn,
        0 => LevelFilter::Warn,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    // A dry run writes nothing, not even to the kernel log.
    let kmsg_level = if args.dry_run {
        LevelFilter::Off
    } else {
        LevelFilter::Info
    };
    let logger = KmsgLogger::new(host, stderr_level, kmsg_level).install();
    let code = bind(args, host);
    if !args.dry_run {
        logger.finish(host);
    }
    Ok(code)
}

fn config_path(args: &Args, host: &Host) -> PathBuf {
    args.config
        .clone()
        .unwrap_or_else(|| host.path(config::DEFAULT_PATH))
}

/// Whether this is the first `--once` run of this boot (`/run` is new at every boot):
/// `run/vfio-early/once` is created exclusively, so of runs started together exactly
/// one gets true. When it cannot be created for another reason, the run goes ahead.
fn first_run(host: &Host) -> bool {
    let dir = host.path("run/vfio-early");
    let _ = std::fs::create_dir_all(&dir);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join("once"))
    {
        Err(e) => e.kind() != std::io::ErrorKind::AlreadyExists,
        Ok(_) => true,
    }
}

fn bind(args: &Args, host: &Host) -> Exit {
    if args.once && !args.dry_run && !first_run(host) {
        log::debug!("another run of this boot has begun: nothing to do");
        return Exit::Ok;
    }
    let strict = |failed: bool| Exit::problem_if(args.strict && failed);
    let mut record = Record::new(host);
    let cmdline = match host.read_limited("proc/cmdline", CMDLINE_MAX) {
        Ok(text) => Cmdline::parse(&text),
        Err(e) => {
            if !e.is_not_found() {
                warn!("{e}; the kernel command line is taken as empty");
            }
            Cmdline::default()
        }
    };
    let path = config_path(args, host);
    record.config_path = path.display().to_string();

    // Leaving before any plan: the record says why, and nothing else happens.
    let nothing = |record: &Record, code| finish(args, host, record, &Plan::default(), &[], code);

    if let Some(param) = cmdline.kill_switch() {
        info!("disabled by {param} on the kernel command line; nothing done");
        record.disabled_by = Some(param);
        return nothing(&record, Exit::Ok);
    }
    // One run at a time (the hook and the modprobe backstop may both start one): the
    // second waits for the first, then finds its devices already bound.
    let _lock = if args.dry_run {
        None
    } else {
        match host.lock(LOCK_WAIT) {
            Ok(l) => Some(l),
            Err(e) => {
                error!("{e}; this run changed nothing");
                record.errors.push(e.to_string());
                return nothing(&record, strict(true));
            }
        }
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) if e.missing && args.config.is_none() => {
            info!("no config at {}; nothing to do", path.display());
            record.config_error = Some(e.to_string());
            // Testing a config (`--dry-run --strict`) without one is an error; the
            // boot itself stays quiet.
            let testing = args.dry_run && args.strict;
            if testing {
                eprintln!("vfio-early: {e}");
            }
            return nothing(&record, if testing { Exit::Usage } else { Exit::Ok });
        }
        Err(e) => {
            error!("{e}; nothing was changed");
            record.config_error = Some(e.to_string());
            return nothing(&record, if args.strict { Exit::Usage } else { Exit::Ok });
        }
    };
    record.config_text = Some(config.text.clone());
    log::debug!(
        "config read: {} device selector(s), {} hugepage request(s)",
        config.devices.len(),
        config.hugepages.len()
    );

    if !args.dry_run && config.selects_nothing() {
        // Nothing to bind or reserve: no topology, no plan. The verdict still goes to
        // the log and the record; it looks at the devices only for `vfio-pci.ids=`.
        let devices = if cmdline.last("vfio_pci.ids").is_some() {
            crate::pci::scan(host)
        } else {
            Vec::new()
        };
        let (level, verdict) = crate::iommu::boot_verdict(host, &cmdline, &devices);
        log::log!(level, "{verdict}");
        record.iommu_verdict = Some(verdict);
        info!("{} selects no device; nothing to do", path.display());
        return nothing(&record, Exit::Ok);
    }

    // One scan of the devices serves the verdict and the plan; a second one only when
    // `[[sriov]]` made VFs (they are devices the first scan could not see). The boot
    // asks the alias tables only what its plan and `[[sriov]]` look at (usually
    // nothing: then they are not read); a dry run shows the traps too, which ask
    // about every device.
    let read = |host: &Host| {
        if args.dry_run {
            return read_topology(host);
        }
        machine::read_topology_for(host, &|t| {
            let mut asked = plan::Planner::new(t).claim_questions(&config.devices);
            asked.extend(config.sriov.iter().map(|e| e.address));
            asked
        })
    };
    let mut topo = read(host);
    if !config.sriov.is_empty() {
        let made = crate::sriov::make(
            host,
            &cmdline,
            &config.sriov,
            &topo,
            config.bind.timeout(),
            args.dry_run,
        );
        if made
            .iter()
            .any(|r| r.outcome == crate::record::SriovOutcome::Made)
        {
            topo = read(host);
        }
        record.sriov = made;
    }
    log::debug!("topology read: {} device(s)", topo.devices.len());
    // The IOMMU and command-line verdict, so `dmesg` alone tells a user where they stand.
    let (level, verdict) = crate::iommu::boot_verdict(host, &cmdline, &topo.devices);
    if !args.dry_run {
        log::log!(level, "{verdict}");
    }
    record.iommu_verdict = Some(verdict);

    let hugepages = crate::hugepages::plan_host(host, &config, &cmdline);
    if args.dry_run {
        // The preview shows the traps too ([`crate::traps`]); warnings never change
        // the exit code.
        let judged = machine::judge(host, &topo, &config.devices);
        let failed = judged.plan.has_problems() || hugepages.refused().next().is_some();
        let records = hugepages.records();
        print_dry_run(args, &record, &judged, &records);
        return strict(failed);
    }
    let plan = plan::plan(&config.devices, &topo);

    bind::log_plan(&plan);
    // The config's reset methods, written before binding (vfio-pci resets with them).
    let (mut reset_warnings, reset_before) = write_reset_methods(host, &plan, &config);
    let outcome = bind::execute(host, &plan, &cmdline, config.bind.timeout());
    reset_warnings.extend(restore_reset_methods(
        host,
        &outcome,
        &reset_before,
        config.bind.timeout(),
    ));
    // The selected VFs carry their override now: the others may get their drivers.
    crate::sriov::restore(host, &record.sriov, config.bind.timeout());
    let hugepages = crate::hugepages::reserve(host, &hugepages, config.bind.timeout());

    let bound = outcome.bound();
    let refused = plan.refusals().count();
    let already = plan
        .with_action(Action::AlreadyBound)
        .filter(|d| d.selected)
        .count();
    if !plan.devices.is_empty() || !plan.warnings.is_empty() {
        let msg = format!(
            "done: {bound} bound, {already} already on vfio-pci, {refused} refused, {} failed",
            outcome.errors.len()
        );
        if refused + outcome.errors.len() + plan.warnings.len() > 0 {
            warn!("{msg}");
        } else {
            info!("{msg}");
        }
    }
    let failed = plan.has_problems() || !outcome.errors.is_empty();
    record.vfio_pci.clone_from(&outcome.vfio_pci);
    record.devices = outcome.devices;
    record.warnings.clone_from(&plan.warnings);
    record.warnings.extend(reset_warnings);
    record.errors = outcome.errors.iter().map(ToString::to_string).collect();
    finish(args, host, &record, &plan, &hugepages, strict(failed))
}

/// Writes each planned device's `reset_method` from its entry and reads it back: one
/// log line per device; what was refused or read back otherwise is also returned, for
/// the record's warnings, with the lists found before each write (for a rollback).
fn write_reset_methods(
    host: &Host,
    plan: &Plan,
    config: &Config,
) -> (Vec<String>, Vec<(PciAddress, Vec<crate::reset::Method>)>) {
    use crate::reset::{self, Applied, Methods};
    let mut warnings = Vec::new();
    let mut before = Vec::new();
    for (address, wanted) in plan.reset_targets(&config.devices) {
        let words = reset::words(wanted);
        match reset::apply(host, address, wanted, config.bind.timeout()) {
            Applied::Set { was, now } => {
                info!("{address}: reset_method {} (was {was})", reset::words(&now));
                if let Methods::Listed(m) = was {
                    before.push((address, m));
                }
            }
            Applied::Differs { now, was, .. } => {
                if let Methods::Listed(m) = was {
                    before.push((address, m));
                }
                let w = format!("{address}: reset_method {words} written, but it reads {now}");
                warn!("{w}");
                warnings.push(w);
            }
            Applied::Refused(r) => {
                let w = format!("{address}: reset_method {words} not set: {r}");
                warn!("{w}");
                warnings.push(w);
            }
            Applied::Failed(e) => {
                let w = format!("{address}: reset_method {words} not set: {e}");
                warn!("{w}");
                warnings.push(w);
            }
        }
    }
    (warnings, before)
}

/// Puts back the `reset_method` found before the write on each device that did not end
/// on vfio-pci (its group was rolled back): a rollback restores what it found.
fn restore_reset_methods(
    host: &Host,
    outcome: &bind::Outcome,
    before: &[(PciAddress, Vec<crate::reset::Method>)],
    timeout: std::time::Duration,
) -> Vec<String> {
    use crate::reset;
    let mut warnings = Vec::new();
    for (address, was) in before {
        let kept = outcome
            .devices
            .iter()
            .any(|d| d.address == *address && d.driver_after.as_deref() == Some(pci::VFIO_DRIVER));
        if kept || was.is_empty() {
            continue;
        }
        match host.write_bounded(address.attr(reset::ATTR), &reset::words(was), timeout) {
            Ok(()) => info!(
                "{address}: reset_method {} restored (not on vfio-pci)",
                reset::words(was)
            ),
            Err(e) => {
                let w = format!(
                    "{address}: reset_method {} not restored: {e}",
                    reset::words(was)
                );
                warn!("{w}");
                warnings.push(w);
            }
        }
    }
    warnings
}

fn finish(
    args: &Args,
    host: &Host,
    record: &Record,
    plan: &Plan,
    hugepages: &[HugepageRecord],
    code: Exit,
) -> Exit {
    if args.dry_run {
        let judged = machine::Judged {
            plan: plan.clone(),
            traps: Vec::new(),
        };
        print_dry_run(args, record, &judged, hugepages);
        return code;
    }
    let mut record = record.clone();
    record.hugepages = hugepages.to_vec();
    if let Err(e) = record.save(host) {
        warn!("could not write the boot record: {e}");
    }
    code
}

fn print_dry_run(
    args: &Args,
    record: &Record,
    judged: &machine::Judged,
    hugepages: &[HugepageRecord],
) {
    let plan = &judged.plan;
    let warnings = judged.warnings();
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = PlanDoc {
            version: 1,
            config: record.config_path.clone(),
            disabled_by: record.disabled_by.clone(),
            config_error: record.config_error.clone(),
            iommu: record.iommu_verdict.clone(),
            devices: &plan.devices,
            hugepages,
            sriov: &record.sriov,
            warnings: &warnings,
        };
        let _ = serde_json::to_writer_pretty(&mut out, &doc);
        let _ = writeln!(out);
        return;
    }
    let _ = write!(out, "{}", render_plan(record, plan, &warnings, hugepages));
}

/// The human form of a plan, with every warning (the plan's and the traps').
pub(crate) fn render_plan(
    record: &Record,
    plan: &Plan,
    warnings: &[String],
    hugepages: &[HugepageRecord],
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if let Some(p) = &record.disabled_by {
        let _ = writeln!(
            s,
            "disabled by {p} on the kernel command line: nothing would be done"
        );
        return s;
    }
    if let Some(e) = &record.config_error {
        let _ = writeln!(s, "config: {e}");
        return s;
    }
    let _ = writeln!(s, "plan for {}:", record.config_path);
    if let Some(v) = &record.iommu_verdict {
        let _ = writeln!(s, "{v}");
    }
    if plan.devices.is_empty() && warnings.is_empty() {
        let _ = writeln!(s, "  no device selected");
    }
    let mut groups: Vec<Option<u32>> = Vec::new();
    for d in &plan.devices {
        if !groups.contains(&d.iommu_group) {
            groups.push(d.iommu_group);
        }
    }
    for (group, d) in groups.iter().flat_map(|g| {
        plan.devices
            .iter()
            .filter(move |d| d.iommu_group == *g)
            .enumerate()
            .map(move |(i, d)| ((i == 0).then_some(*g), d))
    }) {
        match group {
            Some(Some(g)) => {
                let _ = writeln!(s, "IOMMU group {g}");
            }
            Some(None) => {
                let _ = writeln!(s, "no IOMMU group");
            }
            None => {}
        }
        let _ = writeln!(
            s,
            "  {}  [{}] {:<20} {:<14} {:<13} {}",
            d.address,
            d.id,
            plan::class_name(d.class),
            d.driver.as_deref().unwrap_or("-"),
            d.action.as_str(),
            d.reasons.join("; ")
        );
        if let Some(o) = &d.driver_override {
            let _ = writeln!(
                s,
                "      driver_override is {o} now (restored if the group is rolled back)"
            );
        }
    }
    for w in warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for r in &record.sriov {
        let _ = writeln!(
            s,
            "sriov {}: {} VFs: {}{}",
            r.address,
            r.requested,
            match r.outcome {
                SriovOutcome::ToMake => "would be made (their VFs are not planned in a dry run)",
                SriovOutcome::Already => "there already",
                o => o.as_str(),
            },
            r.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    for h in hugepages {
        let node = h.node.map(|n| format!(" node {n}")).unwrap_or_default();
        let _ = writeln!(s, "hugepages {}{node}: reserve {}", h.size, h.requested);
        for n in &h.notes {
            let _ = writeln!(s, "  {n}");
        }
    }
    s
}
