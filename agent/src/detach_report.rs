//! The two renderings (text, JSON) of `detach` and `reattach` answers, shared by
//! `vfio-early detach`/`reattach` and the libvirt hook.
//!
//! The detach JSON is the bind plan's document (`version`, `config`, `devices`,
//! `hugepages`, `warnings`, ...: the same keys as `bind --dry-run --json`), plus
//! `dry_run`, `refusals`, `results` (the binder's records), `vfio` (the kernel's
//! verdict per group), `handover` and `errors`.

use serde::Serialize;

use crate::config::Config;
use crate::detach::{self, DetachOutcome, ReattachAction, ReattachOutcome};
use crate::plan;
use crate::record::{DeviceOutcome, DeviceRecord, PlanDoc};

/// The JSON of a detach: the bind plan's document, plus what happened.
#[derive(Debug, Serialize)]
struct DetachDoc<'a> {
    #[serde(flatten)]
    plan: PlanDoc<'a>,
    dry_run: bool,
    refusals: &'a [String],
    results: &'a [DeviceRecord],
    vfio: Vec<VerdictDoc>,
    handover: Vec<String>,
    errors: &'a [String],
}

#[derive(Debug, Serialize)]
struct VerdictDoc {
    group: u32,
    ok: bool,
    detail: String,
}

/// The JSON of a reattach.
#[derive(Debug, Serialize)]
struct ReattachDoc<'a> {
    version: u32,
    config: String,
    dry_run: bool,
    devices: &'a [detach::ReattachDevice],
    handover_restored: Vec<String>,
    errors: &'a [String],
}

/// Prints a detach's answer, as text or as JSON.
pub(crate) fn print_detach(config: &Config, out: &DetachOutcome, json: bool, dry_run: bool) {
    let text = if json {
        let doc = DetachDoc {
            plan: PlanDoc {
                version: 1,
                config: config.path.display().to_string(),
                disabled_by: None,
                config_error: None,
                iommu: None,
                devices: &out.plan.devices,
                hugepages: &[],
                sriov: &[],
                warnings: &out.plan.warnings,
            },
            dry_run,
            refusals: &out.refusals,
            results: out.bound.as_ref().map_or(&[], |b| b.devices.as_slice()),
            vfio: out
                .verdicts
                .iter()
                .map(|v| VerdictDoc {
                    group: v.group,
                    ok: v.verdict.is_ok(),
                    detail: v.to_string(),
                })
                .collect(),
            handover: out.handover.iter().map(ToString::to_string).collect(),
            errors: &out.errors,
        };
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    } else {
        render_detach(out, dry_run)
    };
    crate::report::print_stdout(&text);
}

/// The human form of a detach.
pub(crate) fn render_detach(out: &DetachOutcome, dry_run: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for d in &out.plan.devices {
        let class = d.class;
        let group = d
            .iommu_group
            .map_or_else(|| "-".to_owned(), |g| g.to_string());
        let _ = writeln!(
            s,
            "{}  [{}] {:<20} group {group:<4} {:<14} {:<13} {}",
            d.address,
            d.id,
            plan::class_name(class),
            d.driver.as_deref().unwrap_or("-"),
            d.action.as_str(),
            d.reasons.join("; ")
        );
    }
    for r in &out.refusals {
        let _ = writeln!(s, "refused: {r}");
    }
    if !out.refusals.is_empty() {
        let _ = writeln!(s, "nothing was detached");
    }
    for h in &out.handover {
        let _ = writeln!(s, "released {h}");
    }
    if let Some(b) = &out.bound {
        for r in b
            .devices
            .iter()
            .filter(|r| r.outcome == DeviceOutcome::Bound)
        {
            let was = r.driver_before.as_deref().unwrap_or("no driver");
            let _ = writeln!(s, "detached {} to vfio-pci (was {was})", r.address);
        }
    }
    for e in &out.errors {
        let _ = writeln!(s, "error: {e}");
    }
    for v in &out.verdicts {
        let _ = writeln!(s, "{v}");
    }
    if dry_run && out.refusals.is_empty() {
        let _ = writeln!(s, "dry run: nothing was changed");
    }
    s
}

/// Prints a reattach's answer.
pub(crate) fn print_reattach(config: &Config, out: &ReattachOutcome, json: bool, dry_run: bool) {
    let text = if json {
        let doc = ReattachDoc {
            version: 1,
            config: config.path.display().to_string(),
            dry_run,
            devices: &out.devices,
            handover_restored: out.restored.iter().map(ToString::to_string).collect(),
            errors: &out.errors,
        };
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    } else {
        render_reattach(out, dry_run)
    };
    crate::report::print_stdout(&text);
}

/// The human form of a reattach.
pub(crate) fn render_reattach(out: &ReattachOutcome, dry_run: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for d in &out.devices {
        let action = match d.action {
            ReattachAction::Reattach => "reattach",
            ReattachAction::NotDetached => "nothing to do",
            ReattachAction::LeftAlone => "left alone",
        };
        let _ = writeln!(
            s,
            "{}  [{}] {:<14} {:<13} {}",
            d.address,
            d.id,
            d.driver.as_deref().unwrap_or("-"),
            action,
            d.reasons.join("; ")
        );
        if let (ReattachAction::Reattach, Some(now), None) = (d.action, &d.driver_after, &d.error) {
            let _ = writeln!(s, "reattached {} to {now}", d.address);
        }
    }
    for h in &out.restored {
        let _ = writeln!(s, "restored {h}");
    }
    for e in &out.errors {
        let _ = writeln!(s, "error: {e}");
    }
    if dry_run {
        let _ = writeln!(s, "dry run: nothing was changed");
    }
    s
}
