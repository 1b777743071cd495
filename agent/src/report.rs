//! Findings and their two renderings.
//!
//! Every check produces [`Finding`]s: which check, a status, one sentence of detail,
//! and a hint when there is something to do. The human rendering aligns the columns
//! and colours the status on a terminal (never when `NO_COLOR` is set); the JSON
//! rendering is stable:
//!
//! ```json
//! { "version": 1,
//!   "findings": [ { "check": "iommu", "status": "pass", "detail": "...", "hint": null } ],
//!   "summary": { "pass": 3, "warn": 1, "fail": 0, "info": 2, "n/a": 0 },
//!   "exit": 0 }
//! ```

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;

/// JSON format version.
pub(crate) const JSON_VERSION: u32 = 1;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Status {
    /// As it should be.
    #[serde(rename = "pass")]
    Pass,
    /// Works, but something deserves attention.
    #[serde(rename = "warn")]
    Warn,
    /// Broken: passthrough will not work as configured.
    #[serde(rename = "fail")]
    Fail,
    /// A fact worth knowing.
    #[serde(rename = "info")]
    Info,
    /// Does not apply here.
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Status {
    /// The spelling in both renderings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Info => "info",
            Self::NotApplicable => "n/a",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Self::Pass => "\x1b[32m",
            Self::Warn => "\x1b[33m",
            Self::Fail => "\x1b[1;31m",
            Self::Info => "\x1b[36m",
            Self::NotApplicable => "\x1b[2m",
        }
    }
}

/// One checked fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check (`iommu`, `cmdline`, `device 0000:01:00.0`...).
    pub check: String,
    /// The outcome.
    pub status: Status,
    /// What was found, and from which evidence.
    pub detail: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Finding {
    /// A finding without a hint.
    pub fn new(check: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status,
            detail: detail.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Whether to colour: on a terminal, unless `NO_COLOR` is set to anything non-empty or
/// the terminal is `TERM=dumb` (or `TERM` is unset), which shows escapes as garbage.
pub fn use_colour(
    is_tty: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    is_tty
        && no_color.is_none_or(std::ffi::OsStr::is_empty)
        && term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// The one colour decision of every human rendering (`check`, `check-kconfig`):
/// stdout is a terminal and the environment allows colour.
pub fn stdout_colour() -> bool {
    use std::io::IsTerminal;
    use_colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

/// The human rendering: `status  check  detail`, aligned, the hint below.
pub fn render_human(findings: &[Finding], colour: bool) -> String {
    let width = findings
        .iter()
        .map(|f| f.check.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for f in findings {
        let status = format!("{:<4}", f.status.as_str());
        let status = if colour {
            format!("{}{status}\x1b[0m", f.status.colour())
        } else {
            status
        };
        let pad = width - f.check.chars().count();
        // Text of several lines (a TOML error with its caret) continues in the
        // detail column, so the layout holds.
        let indent = " ".repeat(4 + 2 + width + 2);
        let detail = f.detail.trim_end().replace('\n', &format!("\n{indent}"));
        let _ = writeln!(out, "{status}  {}{}  {detail}", f.check, " ".repeat(pad));
        if let Some(h) = &f.hint {
            let label = if colour {
                "\x1b[1mhint:\x1b[0m"
            } else {
                "hint:"
            };
            let h = h.trim_end().replace('\n', &format!("\n{indent}      "));
            let _ = writeln!(out, "{indent}{label} {h}");
        }
    }
    let s = summary(findings);
    let _ = writeln!(
        out,
        "\n{} pass, {} warn, {} fail, {} info, {} n/a",
        s.pass, s.warn, s.fail, s.info, s.not_applicable
    );
    out
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub pass: usize,
    /// Warnings.
    pub warn: usize,
    /// Failures.
    pub fail: usize,
    /// Information.
    pub info: usize,
    /// Not applicable.
    #[serde(rename = "n/a")]
    pub not_applicable: usize,
}

/// Counts the findings per status.
pub fn summary(findings: &[Finding]) -> Summary {
    let mut s = Summary::default();
    for f in findings {
        match f.status {
            Status::Pass => s.pass += 1,
            Status::Warn => s.warn += 1,
            Status::Fail => s.fail += 1,
            Status::Info => s.info += 1,
            Status::NotApplicable => s.not_applicable += 1,
        }
    }
    s
}

/// 1 when anything failed, else 0.
pub fn exit_status(findings: &[Finding]) -> u8 {
    u8::from(findings.iter().any(|f| f.status == Status::Fail))
}

/// [`exit_status`] as an exit code.
pub fn exit_code(findings: &[Finding]) -> ExitCode {
    ExitCode::from(exit_status(findings))
}

/// Writes text to stdout; a closed pipe (`| head`) is not an error.
pub fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[derive(Serialize)]
struct JsonReport<'a> {
    version: u32,
    findings: &'a [Finding],
    summary: Summary,
    exit: u8,
}

/// The JSON rendering (pretty, one trailing newline).
pub fn render_json(findings: &[Finding]) -> String {
    render_json_with_exit(findings, exit_status(findings))
}

/// The JSON rendering with the process's exit code as `exit` (when something other
/// than the findings decides it, such as a config error).
pub(crate) fn render_json_with_exit(findings: &[Finding], exit: u8) -> String {
    let r = JsonReport {
        version: JSON_VERSION,
        findings,
        summary: summary(findings),
        exit,
    };
    let mut s = serde_json::to_string_pretty(&r).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Finding> {
        vec![
            Finding::new("iommu", Status::Pass, "Intel VT-d, proven by sysfs"),
            Finding::new(
                "framebuffer",
                Status::Fail,
                "BOOTFB overlaps 0000:01:00.0 BAR 0",
            )
            .hint("add initcall_blacklist=sysfb_init"),
        ]
    }

    #[test]
    fn human_is_aligned_and_plain_without_colour() {
        let out = render_human(&sample(), false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "pass  iommu        Intel VT-d, proven by sysfs");
        assert_eq!(
            lines[1],
            "fail  framebuffer  BOOTFB overlaps 0000:01:00.0 BAR 0"
        );
        assert_eq!(
            lines[2],
            "                   hint: add initcall_blacklist=sysfb_init"
        );
        assert!(out.contains("1 pass, 0 warn, 1 fail, 0 info, 0 n/a"));
        assert!(!out.contains('\x1b'));
        assert!(render_human(&sample(), true).contains("\x1b[1;31mfail"));
    }

    #[test]
    fn colour_policy() {
        let os = |s| Some(std::ffi::OsStr::new(s));
        let xterm = os("xterm-256color");
        assert!(use_colour(true, None, xterm));
        assert!(!use_colour(false, None, xterm));
        assert!(!use_colour(true, os("1"), xterm));
        assert!(use_colour(true, os(""), xterm));
        assert!(!use_colour(true, None, os("dumb")));
        assert!(!use_colour(true, None, None));
    }

    #[test]
    fn several_lines_keep_the_columns() {
        let f = vec![
            Finding::new("iommu", Status::Pass, "on"),
            Finding::new(
                "config",
                Status::Fail,
                "/etc/vfio-early.toml:3:1: bad\n  |\n3 | [[device]\n  | ^\n",
            )
            .hint("fix it\nthen apply"),
            Finding::new("x", Status::NotApplicable, "n/a here"),
        ];
        let out = render_human(&f, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "fail  config  /etc/vfio-early.toml:3:1: bad");
        let col = " ".repeat(14);
        assert_eq!(lines[2], format!("{col}  |"));
        assert_eq!(lines[3], format!("{col}3 | [[device]"));
        assert_eq!(lines[4], format!("{col}  | ^"));
        assert_eq!(lines[5], format!("{col}hint: fix it"));
        assert_eq!(lines[6], format!("{col}      then apply"));
        assert!(
            out.ends_with("1 pass, 0 warn, 1 fail, 0 info, 1 n/a\n"),
            "{out}"
        );
    }

    #[test]
    fn json_schema_and_exit() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&sample())).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["findings"][1]["status"], "fail");
        assert_eq!(v["findings"][0]["hint"], serde_json::Value::Null);
        assert_eq!(v["summary"]["fail"], 1);
        assert_eq!(v["exit"], 1);
        assert_eq!(exit_status(&sample()[..1]), 0);
        let na = Finding::new("x", Status::NotApplicable, "");
        assert_eq!(serde_json::to_value(&na).unwrap()["status"], "n/a");
    }
}
