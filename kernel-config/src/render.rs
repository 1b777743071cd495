//! Renderings of a [`Report`]: human text, JSON, and a config fragment.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::engine::{Cpu, Finding, Report, Status, Verdict};

const RESET: &str = "\x1b[0m";

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}{RESET}")
    } else {
        text.to_owned()
    }
}

fn tag(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Pass => ("PASS", "32"),
        Status::Info => ("INFO", "36"),
        Status::NotApplicable => ("N/A", "2"),
        Status::Warn => ("WARN", "33"),
        Status::Blocked => ("BLOCKED", "31"),
        Status::Fail => ("FAIL", "1;31"),
    }
}

impl Report {
    /// The human report: grouped by topic, every problem with its reason and menu
    /// path, options that are absent only because of a failing parent listed under
    /// that parent. `color` adds ANSI colours (the caller decides: a terminal, and
    /// `NO_COLOR` unset).
    pub fn render_human(&self, color: bool) -> String {
        let mut out = String::new();
        if let Some(src) = &self.source {
            let _ = writeln!(out, "Kernel config: {src}");
        }
        let version = match (
            &self.kernel.release,
            self.kernel.version,
            self.kernel.version_source,
        ) {
            (Some(rel), _, _) => format!("Linux {rel}"),
            (None, Some(v), "kver") => format!("Linux {v} (from --kver)"),
            _ => "unknown kernel version".to_owned(),
        };
        let arch = self
            .kernel
            .arch
            .as_ref()
            .map_or("unknown architecture", |a| a.name());
        let cpu = match self.cpu {
            Cpu::NotApplicable => format!("does not apply ({arch})"),
            c => c.to_string(),
        };
        let _ = writeln!(out, "Kernel: {version}, {arch}; CPU vendor: {cpu}");
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\n{}", paint(color, "1", "Parse warnings"));
            for w in &self.warnings {
                let _ = writeln!(out, "  {w}");
            }
            if self.warnings_dropped > 0 {
                let _ = writeln!(out, "  ... and {} more", self.warnings_dropped);
            }
        }
        let mut groups: Vec<&str> = Vec::new();
        for f in &self.findings {
            if !groups.contains(&f.group.as_str()) {
                groups.push(&f.group);
            }
        }
        for group in groups {
            let _ = writeln!(out, "\n{}", paint(color, "1", group));
            for f in self
                .findings
                .iter()
                .filter(|f| f.group == group && f.status != Status::Blocked)
            {
                self.render_finding(&mut out, f, color);
            }
        }
        let (_, code) = match self.verdict {
            Verdict::Pass => ("", "1;32"),
            Verdict::Warn => ("", "1;33"),
            Verdict::Fail => ("", "1;31"),
        };
        let _ = writeln!(out, "\n{}", paint(color, code, &self.summary));
        out
    }

    fn render_finding(&self, out: &mut String, f: &Finding, color: bool) {
        let (word, code) = tag(f.status);
        let state = f.state.as_str();
        let state = if state.chars().count() > 8 {
            "(value)"
        } else {
            state
        };
        let line = format!(
            "  {}{} {:<26} {:<8} {}",
            paint(color, code, word),
            " ".repeat(7 - word.len()),
            f.shown_name(),
            state,
            f.detail
        );
        let _ = writeln!(out, "{}", line.trim_end());
        let pad = " ".repeat(10);
        if matches!(f.status, Status::Fail | Status::Warn) {
            let _ = writeln!(out, "{pad}why:  {}", f.reason);
            if let Some(menu) = &f.menu_path {
                let _ = writeln!(out, "{pad}menu: {menu}");
            }
            if f.is_label() || f.fix.len() > 1 {
                let _ = writeln!(out, "{pad}set:  {}", f.to_set());
            }
        }
        let children: Vec<String> = self
            .findings
            .iter()
            .filter(|c| {
                c.status == Status::Blocked && c.blocked_by.as_deref() == Some(f.option.as_str())
            })
            .map(Finding::shown_name)
            .collect();
        if !children.is_empty() {
            let _ = writeln!(
                out,
                "{pad}{} {}",
                paint(color, "31", "also absent until it is on:"),
                children.join(", ")
            );
        }
    }

    /// The report as JSON (pretty-printed, stable field names; see the crate docs).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A config fragment that fixes every failure (failing and blocked options), for
    /// `scripts/kconfig/merge_config.sh`; warnings' fixes follow as comments.
    pub fn fragment(&self) -> String {
        let mut out = String::new();
        let version = self
            .kernel
            .release
            .clone()
            .or_else(|| self.kernel.version.map(|v| v.to_string()));
        let _ = writeln!(
            out,
            "# vfio-early check-kconfig fragment for Linux {} ({}, cpu {})",
            version.as_deref().unwrap_or("(unknown version)"),
            self.kernel
                .arch
                .as_ref()
                .map_or("unknown arch", |a| a.name()),
            self.cpu
        );
        let _ = writeln!(
            out,
            "# Merge: scripts/kconfig/merge_config.sh -m .config <this file> && make olddefconfig"
        );
        let mut seen = HashSet::new();
        let mut any = false;
        for f in self.findings.iter().filter(|f| is_failure(f)) {
            let lines: Vec<&String> = f
                .fix
                .iter()
                .filter(|l| !seen.contains(l.as_str()))
                .collect();
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# fixes {}: {}", f.shown_name(), f.detail);
            for l in lines {
                let _ = writeln!(out, "{l}");
                seen.insert(l.clone());
            }
            any = true;
        }
        if !any {
            let _ = writeln!(out, "# nothing required is missing");
        }
        for f in self
            .findings
            .iter()
            .filter(|f| !is_failure(f) && matches!(f.status, Status::Warn | Status::Blocked))
        {
            let lines: Vec<&str> = f
                .fix
                .iter()
                .filter(|l| !seen.contains(l.as_str()))
                .map(String::as_str)
                .collect();
            if !lines.is_empty() {
                let _ = writeln!(
                    out,
                    "# suggested for warning {}: {}",
                    f.shown_name(),
                    lines.join(" ")
                );
            }
        }
        out
    }
}

/// Failing, or blocked where the option itself is required.
fn is_failure(f: &Finding) -> bool {
    f.status == Status::Fail
        || (f.status == Status::Blocked && f.level == crate::rules::Level::Required)
}
