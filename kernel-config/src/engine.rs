//! The engine: a [`Config`] and the [`Rules`] in, a [`Report`] out. Pure.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::Serialize;

use crate::parse::{Arch, Config, Keep, KernelVersion, Names, ParseWarning, State, ARCH_SYMBOLS};
use crate::rules::{Check, Level, Rules, Symbol, SymbolType, Term, Vendor};

/// Which CPU vendor the checks assume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cpu {
    /// Either vendor: one vendor's IOMMU and KVM module suffice, the other's absence
    /// is a warning.
    #[default]
    Any,
    /// An Intel host: the AMD options are not applicable.
    Intel,
    /// An AMD host: the Intel options are not applicable.
    Amd,
    /// Not an x86 config (arm64...): there is no CPU vendor to choose, the
    /// architecture's own options apply (SMMU, GICv3 ITS). Set by the engine only.
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Cpu {
    /// The vendor a host's ACPI tables show: a `DMAR` table (Intel VT-d) or an `IVRS`
    /// table (AMD-Vi). Neither or both: [`Cpu::Any`].
    pub fn from_acpi(dmar: bool, ivrs: bool) -> Self {
        match (dmar, ivrs) {
            (true, false) => Self::Intel,
            (false, true) => Self::Amd,
            _ => Self::Any,
        }
    }

    fn vendor(self) -> Option<Vendor> {
        match self {
            Self::Any | Self::NotApplicable => None,
            Self::Intel => Some(Vendor::Intel),
            Self::Amd => Some(Vendor::Amd),
        }
    }
}

impl FromStr for Cpu {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(Self::Any),
            "intel" => Ok(Self::Intel),
            "amd" => Ok(Self::Amd),
            other => Err(format!("unknown CPU vendor {other:?} (any, intel, amd)")),
        }
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Any => "any",
            Self::Intel => "intel",
            Self::Amd => "amd",
            Self::NotApplicable => "n/a",
        })
    }
}

/// What the check assumes beyond the file itself.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The CPU vendor (default: any).
    pub cpu: Cpu,
    /// The kernel version to assume when the file's header has none (`--kver`).
    /// The header always wins.
    pub kver: Option<KernelVersion>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Status {
    /// Met.
    #[serde(rename = "pass")]
    Pass,
    /// For information; never affects the verdict.
    #[serde(rename = "info")]
    Info,
    /// Not applicable: not in this kernel version, not on this architecture, or not
    /// for this CPU vendor.
    #[serde(rename = "n/a")]
    NotApplicable,
    /// Should be fixed, but passthrough can work.
    #[serde(rename = "warn")]
    Warn,
    /// Absent only because a parent option reported as failing (or warning) is off:
    /// fixing the parent makes it available. Counted as its level when judging.
    #[serde(rename = "blocked")]
    Blocked,
    /// Must be fixed.
    #[serde(rename = "fail")]
    Fail,
}

impl Status {
    /// `pass`, `info`, `n/a`, `warn`, `blocked`, `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Info => "info",
            Self::NotApplicable => "n/a",
            Self::Warn => "warn",
            Self::Blocked => "blocked",
            Self::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every requirement met, nothing to warn about.
    Pass,
    /// Every requirement met, with warnings.
    Warn,
    /// A requirement is not met.
    Fail,
}

impl Verdict {
    /// The process exit status for it: 0 unless something required fails.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Pass | Self::Warn => 0,
            Self::Fail => 1,
        }
    }
}

/// One alternative of a choice, as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alternative {
    /// As written in the table: `IOMMUFD+VFIO_DEVICE_CDEV`.
    pub option: String,
    /// Each term's state: `IOMMUFD=m+VFIO_DEVICE_CDEV=n`.
    pub state: String,
    /// Whether every term is on.
    pub ok: bool,
    /// False when a term does not exist for this kernel, architecture or vendor.
    pub applicable: bool,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The option (without `CONFIG_`), or a choice's label (`VFIO_DMA_BACKEND`).
    pub option: String,
    /// `option` or `any_of`.
    pub kind: &'static str,
    /// Heading in the human report.
    pub group: String,
    /// How it weighs.
    pub level: Level,
    /// The option's state; for a choice, the state of the satisfying (else the first
    /// applicable) alternative's first option.
    pub state: State,
    /// The outcome.
    pub status: Status,
    /// What was found, in words.
    pub detail: String,
    /// Why it matters.
    pub reason: String,
    /// Where to change it in `make menuconfig`.
    pub menu_path: Option<String>,
    /// For a choice: the alternative that satisfied it.
    pub satisfied_by: Option<String>,
    /// For a choice: every alternative.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
    /// For `blocked`: the parent option to fix.
    pub blocked_by: Option<String>,
    /// When built as a module: the module, and whether it must be in the initramfs.
    pub module: Option<String>,
    /// Whether `module` must be in the initramfs.
    pub initramfs: bool,
    /// Fragment lines (`CONFIG_X=y`, `# CONFIG_X is not set`) that fix it, when it
    /// is not met.
    pub fix: Vec<String>,
    /// Sets of parent options whose being off explains an absence (for a choice, one
    /// set per alternative that only they keep off); used to block.
    #[serde(skip)]
    causes: Vec<Vec<String>>,
}

impl Finding {
    /// Whether `option` is a choice's label (`KVM_VENDOR`), not a Kconfig symbol.
    pub fn is_label(&self) -> bool {
        self.kind == "any_of" && !self.alternatives.iter().any(|a| a.option == self.option)
    }

    /// How the human report names it: the symbol, or for a label the alternatives
    /// that exist here (`KVM_INTEL or KVM_AMD`), which a user finds in menuconfig.
    pub fn shown_name(&self) -> String {
        if !self.is_label() {
            return self.option.clone();
        }
        let alts: Vec<String> = self
            .alternatives
            .iter()
            .filter(|a| a.applicable)
            .map(|a| a.option.replace('+', " and "))
            .collect();
        if alts.is_empty() {
            self.option.clone()
        } else {
            alts.join(" or ")
        }
    }

    /// What to set, in Kconfig's own terms: `CONFIG_INTEL_IOMMU=y or CONFIG_AMD_IOMMU=y`.
    pub fn to_set(&self) -> String {
        let lines: Vec<String> = self
            .fix
            .iter()
            .map(|l| {
                match l
                    .strip_prefix("# ")
                    .and_then(|r| r.strip_suffix(" is not set"))
                {
                    Some(sym) => format!("{sym}=n"),
                    None => l.clone(),
                }
            })
            .collect();
        if lines.is_empty() {
            // Nothing a fragment can set (hidden symbols): name what must end up on.
            let alts: Vec<String> = self
                .alternatives
                .iter()
                .filter(|a| a.applicable)
                .map(|a| {
                    a.option
                        .split('+')
                        .map(|s| format!("CONFIG_{s}"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                })
                .collect();
            return if alts.is_empty() {
                format!("CONFIG_{}", self.option)
            } else {
                alts.join(" or ")
            };
        }
        // A choice's fix lines are its alternatives when each names one of them.
        let single: Vec<&str> = self
            .alternatives
            .iter()
            .filter(|a| !a.option.contains('+'))
            .map(|a| a.option.as_str())
            .collect();
        let alternatives = self.kind == "any_of"
            && lines.len() > 1
            && lines.iter().all(|l| {
                let sym = l
                    .strip_prefix("CONFIG_")
                    .and_then(|r| r.split_once('='))
                    .map_or("", |(s, _)| s);
                single.contains(&sym)
            });
        lines.join(if alternatives { " or " } else { ", " })
    }
}

/// The kernel a report is about.
#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    /// The release from the header (`6.17.5-arch1`).
    pub release: Option<String>,
    /// The version used to explain absences.
    pub version: Option<KernelVersion>,
    /// `header`, `kver` (from [`Options::kver`]) or `unknown`.
    pub version_source: &'static str,
    /// The architecture.
    pub arch: Option<Arch>,
}

/// Everything a check found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// JSON schema version of this structure (bumped on incompatible changes).
    pub schema: u32,
    /// Where the config came from, when the caller says ([`Report::with_source`]).
    pub source: Option<String>,
    /// The kernel.
    pub kernel: KernelInfo,
    /// The CPU vendor assumed.
    pub cpu: Cpu,
    /// The verdict.
    pub verdict: Verdict,
    /// [`Report::summary`].
    pub summary: String,
    /// Notes about the check itself (an ignored `--cpu`, an unknown version).
    pub notes: Vec<String>,
    /// Parser warnings (duplicates, odd lines).
    pub warnings: Vec<ParseWarning>,
    /// Parser warnings beyond those kept.
    pub warnings_dropped: usize,
    /// One per check, in table order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The overall verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// One line: verdict, what to fix, the kernel.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// Records where the config came from (shown in both renderings).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The finding for an option or choice label.
    pub fn finding(&self, option: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.option == option)
    }

    /// Findings with a status.
    pub fn with_status(&self, status: Status) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.status == status)
    }
}

/// Every symbol a check against `rules` may look up: the table's symbols, their
/// dependencies, the checks and their alternatives, plus what the engine reads itself
/// (`MODULES`, `CMDLINE`, the architecture symbols). A config read with
/// [`Keep::Only`] over these names gives the same report as one that kept all.
pub fn symbols_read(rules: &Rules) -> Names {
    let mut names: Names = ["MODULES", "CMDLINE"]
        .into_iter()
        .chain(ARCH_SYMBOLS)
        .map(str::to_owned)
        .collect();
    for (name, sym) in &rules.symbol {
        names.insert(name.clone());
        for req in &sym.requires {
            names.extend(req.split('|').map(|p| p.trim_start_matches('!').to_owned()));
        }
    }
    for c in &rules.check {
        names.insert(c.name.clone());
        names.extend(c.equals.iter().cloned());
        for (_, terms) in c.alternatives() {
            names.extend(terms.into_iter().filter_map(|t| match t {
                Term::Symbol(s) => Some(s),
                Term::Cmdline { .. } => None,
            }));
        }
        names.extend(
            c.fix
                .iter()
                .filter_map(|l| Some(l.split_once('=')?.0.to_owned())),
        );
    }
    names
}

/// Reads a config (plain or gzip) for a check against the built-in table, keeping
/// only the symbols that check reads.
pub fn read_for_check(reader: impl std::io::Read) -> Result<Config, crate::Error> {
    static NAMES: OnceLock<Names> = OnceLock::new();
    let names = NAMES.get_or_init(|| symbols_read(Rules::builtin()));
    Config::read(reader, Keep::Only(names))
}

/// Checks a config against the built-in table.
pub fn check(config: &Config, options: &Options) -> Report {
    check_with(Rules::builtin(), config, options)
}

/// Checks a config against a given table.
pub fn check_with(rules: &Rules, config: &Config, options: &Options) -> Report {
    let (version, version_source) = match (config.version(), options.kver) {
        (Some(v), _) => (Some(v), "header"),
        (None, Some(v)) => (Some(v), "kver"),
        (None, None) => (None, "unknown"),
    };
    let arch = config.arch();
    let x86 = arch.as_ref().is_none_or(|a| a.matches("x86"));
    let mut notes = Vec::new();
    let cpu = if x86 {
        options.cpu
    } else {
        if options.cpu != Cpu::Any {
            notes.push(format!(
                "--cpu {} does not apply to this {} config: choosing a CPU vendor (Intel/AMD) is for x86 configs; checked for {} itself",
                options.cpu,
                arch.as_ref().map_or("non-x86", Arch::name),
                arch.as_ref().map_or("its architecture", Arch::name)
            ));
        }
        Cpu::NotApplicable
    };
    if version.is_none() {
        notes.push(
            "no kernel version in the file's header (and no --kver): absences cannot be told from options this kernel lacks"
                .to_owned(),
        );
    }
    if config.is_empty() {
        notes.push("no CONFIG_ line at all: is this a kernel config?".to_owned());
    }
    let ctx = Ctx {
        cfg: config,
        rules,
        version,
        arch: arch.clone(),
        vendor: cpu.vendor(),
    };
    let mut findings: Vec<Finding> = rules
        .check
        .iter()
        .filter(|c| !(c.cpu_any && matches!(cpu, Cpu::Intel | Cpu::Amd)))
        .map(|c| ctx.evaluate(c))
        .collect();
    block(&mut findings);
    for f in &mut findings {
        if matches!(
            f.status,
            Status::Pass | Status::Info | Status::NotApplicable
        ) {
            f.fix.clear();
        }
    }
    let verdict = verdict_of(&findings);
    let mut report = Report {
        schema: 1,
        source: None,
        kernel: KernelInfo {
            release: config.release().map(str::to_owned),
            version,
            version_source,
            arch,
        },
        cpu,
        verdict,
        summary: String::new(),
        notes,
        warnings: config.warnings().to_vec(),
        warnings_dropped: config.warnings_dropped(),
        findings,
    };
    report.summary = summarize(&report);
    report
}

/// Turns failures that only follow from a failing parent into `blocked`.
fn block(findings: &mut [Finding]) {
    let status: HashMap<String, Status> = findings
        .iter()
        .map(|f| (f.option.clone(), f.status))
        .collect();
    let failing = |name: &String| {
        status
            .get(name)
            .is_some_and(|s| matches!(s, Status::Fail | Status::Warn))
    };
    for f in findings.iter_mut() {
        if !matches!(f.status, Status::Fail | Status::Warn) {
            continue;
        }
        let set = f
            .causes
            .iter()
            .find(|set| !set.is_empty() && set.iter().all(failing));
        if let Some(set) = set {
            f.blocked_by = set.first().cloned();
            f.status = Status::Blocked;
        }
    }
}

fn verdict_of(findings: &[Finding]) -> Verdict {
    let weight = |f: &Finding| match (f.status, f.level) {
        (Status::Fail, _) | (Status::Blocked, Level::Required) => Verdict::Fail,
        (Status::Warn | Status::Blocked, _) => Verdict::Warn,
        _ => Verdict::Pass,
    };
    findings.iter().map(weight).max().unwrap_or(Verdict::Pass)
}

fn summarize(r: &Report) -> String {
    // What to set for each failure (once each), and the warnings by the names a user
    // finds in menuconfig: never a rule's label.
    let mut fails: Vec<String> = Vec::new();
    for f in r.with_status(Status::Fail) {
        let set = f.to_set();
        if !fails.contains(&set) {
            fails.push(set);
        }
    }
    let warns: Vec<String> = r
        .with_status(Status::Warn)
        .map(Finding::shown_name)
        .collect();
    let blocked = r.with_status(Status::Blocked).count();
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            one.to_owned()
        } else {
            many.to_owned()
        }
    };
    let mut s = match r.verdict {
        Verdict::Fail => {
            let mut s = format!("FAIL: set {}", fails.join(", "));
            if blocked > 0 {
                s += &format!(
                    " ({blocked} more {} absent because of them)",
                    plural(blocked, "option", "options")
                );
            }
            s
        }
        Verdict::Warn => "PASS with warnings".to_owned(),
        Verdict::Pass => "PASS: every requirement met".to_owned(),
    };
    if !warns.is_empty() {
        let sep = if r.verdict == Verdict::Warn {
            ": "
        } else {
            "; "
        };
        s += &format!(
            "{sep}{} {}: {}",
            warns.len(),
            plural(warns.len(), "warning", "warnings"),
            warns.join(", ")
        );
    }
    let kernel = match (&r.kernel.release, r.kernel.version) {
        (Some(rel), _) => format!("Linux {rel}"),
        (None, Some(v)) => format!("Linux {v}"),
        (None, None) => "unknown kernel version".to_owned(),
    };
    let arch = r.kernel.arch.as_ref().map_or("unknown arch", Arch::name);
    s += &format!(" ({kernel}, {arch}, cpu {})", r.cpu);
    s
}

/// Why a symbol has no line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Absence {
    /// Not on this architecture.
    NotArch(String),
    /// Not in this kernel version.
    NotInKernel(String),
    /// A dependency is unmet: the root of the chain, with its explanation.
    ParentOff { root: String, why: String },
    /// Nothing explains it.
    Missing,
}

struct Ctx<'a> {
    cfg: &'a Config,
    rules: &'a Rules,
    version: Option<KernelVersion>,
    arch: Option<Arch>,
    vendor: Option<Vendor>,
}

/// How a single option stands, before the level turns it into a status.
enum Stand {
    On,
    Off(String),
    NotApplicable(String),
}

impl Ctx<'_> {
    fn sym(&self, name: &str) -> &Symbol {
        self.rules.symbol(name)
    }

    fn arch_name(&self) -> &str {
        self.arch.as_ref().map_or("?", Arch::name)
    }

    /// Whether a symbol counts as on: `y`, or `m` for a tristate. A present symbol
    /// is trusted over the version (a backport keeps its type).
    fn on(&self, name: &str) -> bool {
        match self.cfg.state(name) {
            Some(State::Y) => true,
            Some(State::M) => self.sym(name).ty == SymbolType::Tristate,
            _ => false,
        }
    }

    fn absence(&self, name: &str, depth: usize) -> Absence {
        let sym = self.sym(name);
        if !sym.on_arch(self.arch.as_ref()) {
            return Absence::NotArch(format!(
                "only on {}; this config is for {}",
                sym.arches.join(", "),
                self.arch_name()
            ));
        }
        if let Some(why) = self.version.and_then(|v| sym.not_in(v)) {
            return Absence::NotInKernel(format!(
                "CONFIG_{name} was {why}; this kernel is {}",
                self.version.map_or_else(String::new, |v| v.to_string())
            ));
        }
        if depth < 16 {
            for req in &sym.requires {
                if let Some((root, why)) = self.unmet(req, depth) {
                    return Absence::ParentOff { root, why };
                }
            }
        }
        Absence::Missing
    }

    /// The root of an unmet requirement, with words for it; `None` when met or when
    /// it names only symbols this kernel does not have.
    fn unmet(&self, req: &str, depth: usize) -> Option<(String, String)> {
        if let Some(neg) = req.strip_prefix('!') {
            return self.on(neg).then(|| {
                (
                    neg.to_owned(),
                    format!("{neg} is set ({})", self.cfg.get(neg)),
                )
            });
        }
        let parts: Vec<&str> = req.split('|').collect();
        if parts.iter().any(|p| self.on(p)) {
            return None;
        }
        for p in &parts {
            let what = match self.cfg.state(p) {
                Some(State::N) => format!("{p} is not set"),
                Some(other) => format!("{p}={other} is not on"),
                None => match self.absence(p, depth + 1) {
                    Absence::NotArch(_) | Absence::NotInKernel(_) => continue,
                    Absence::ParentOff { root, why } => return Some((root, why)),
                    Absence::Missing => format!("{p} is absent"),
                },
            };
            let what = if parts.len() > 1 {
                format!("neither of {} is on ({what})", parts.join(", "))
            } else {
                what
            };
            return Some(((*p).to_owned(), what));
        }
        None
    }

    fn evaluate(&self, check: &Check) -> Finding {
        if check.is_choice() {
            self.evaluate_choice(check)
        } else {
            self.evaluate_option(check)
        }
    }

    fn blank(&self, check: &Check, kind: &'static str) -> Finding {
        Finding {
            option: check.name.clone(),
            kind,
            group: check.group.clone(),
            level: check.level,
            state: State::Absent,
            status: Status::Info,
            detail: String::new(),
            reason: check.reason.clone(),
            menu_path: None,
            satisfied_by: None,
            alternatives: Vec::new(),
            blocked_by: None,
            module: None,
            initramfs: false,
            fix: Vec::new(),
            causes: Vec::new(),
        }
    }

    fn evaluate_option(&self, check: &Check) -> Finding {
        let name = check.name.as_str();
        let sym = self.sym(name);
        let mut f = self.blank(check, "option");
        let state = self.cfg.get(name);
        f.menu_path = sym.menu.clone();
        let vendor = check.vendor.or(sym.vendor);
        let stand = self.stand(name, sym, &state, &mut f);
        f.state = state;
        let stand = match (stand, vendor, self.vendor) {
            (Stand::NotApplicable(w), _, _) => Stand::NotApplicable(w),
            (_, Some(v), Some(host)) if v != host => Stand::NotApplicable(format!(
                "for {} hosts; checking for {}",
                v.display_name(),
                host.display_name()
            )),
            (s, _, _) => s,
        };
        let (status, mut detail) = match stand {
            Stand::NotApplicable(why) => (Status::NotApplicable, why),
            Stand::On => {
                let status = match check.level {
                    Level::Required | Level::Recommended => Status::Pass,
                    Level::Info => Status::Info,
                    Level::Avoid => Status::Warn,
                };
                (status, join(&f.detail, check.note_on.as_deref()))
            }
            Stand::Off(why) => {
                let why = if check.level == Level::Avoid && state_is_absent(&f) {
                    "not in effect".to_owned()
                } else {
                    why
                };
                let status = match check.level {
                    Level::Required => Status::Fail,
                    Level::Recommended => Status::Warn,
                    Level::Info => Status::Info,
                    Level::Avoid => Status::Pass,
                };
                (status, join(&why, check.note_off.as_deref()))
            }
        };
        let mut status = status;
        if let (Some(v), None, Status::Fail) = (vendor, self.vendor, status) {
            // --cpu any: one vendor's driver suffices; the choice check carries the
            // requirement, this one only warns.
            status = Status::Warn;
            detail = format!("{detail}; needed on {} hosts", v.display_name());
        }
        if let Some(other) = &check.equals {
            let theirs = self.cfg.get(other);
            if theirs != f.state && status != Status::NotApplicable {
                status = Status::Warn;
                detail = format!("{detail}; differs from {other}={theirs}, which it always equals (a hand-edited file?)");
            }
        }
        if !check.params.is_empty() {
            detail = join(&detail, Some(&self.params(&f.state, &check.params)));
        }
        f.status = status;
        f.detail = detail;
        f.fix = self.fix_for(check, || match check.level {
            Level::Avoid => vec![format!("{name}=n")],
            _ if sym.hidden => Vec::new(),
            _ => vec![format!("{name}={}", self.preferred_value(sym))],
        });
        f
    }

    /// Where a present-or-absent option stands; fills `module`, `initramfs` and an
    /// "on" detail into `f`.
    fn stand(&self, name: &str, sym: &Symbol, state: &State, f: &mut Finding) -> Stand {
        if !sym.on_arch(self.arch.as_ref()) {
            return Stand::NotApplicable(format!(
                "only on {}; this config is for {}",
                sym.arches.join(", "),
                self.arch_name()
            ));
        }
        let backport = self.version.and_then(|v| sym.not_in(v)).map(|why| {
            format!(
                "present although CONFIG_{name} was {why} and this kernel is {} (a backport)",
                self.version.map_or_else(String::new, |v| v.to_string())
            )
        });
        let on = match state {
            State::Y => {
                if sym.ty == SymbolType::Tristate {
                    "built in".clone_into(&mut f.detail);
                }
                Stand::On
            }
            State::M => match sym.ty {
                SymbolType::Tristate => {
                    f.module.clone_from(&sym.module);
                    f.initramfs = sym.initramfs;
                    f.detail = match (&sym.module, sym.initramfs) {
                        (Some(m), true) => format!("module {m}: it must be in the initramfs"),
                        (Some(m), false) => format!("module {m}"),
                        (None, _) => "module".to_owned(),
                    };
                    if let (Some(b), Some(v)) = (sym.bool_since, self.version) {
                        if v >= b {
                            f.detail += &format!(
                                " (a bool since {}: a backport or a hand-edited file?)",
                                crate::rules::short(b)
                            );
                        }
                    }
                    Stand::On
                }
                SymbolType::Bool => Stand::Off(format!(
                    "=m is not valid for a bool option: Kconfig discards it (set {name}=y)"
                )),
                _ => {
                    Stand::Off(format!("=m is not valid for a {:?} option", sym.ty).to_lowercase())
                }
            },
            State::N => Stand::Off("not set".to_owned()),
            State::Literal(v) => match sym.ty {
                SymbolType::Bool | SymbolType::Tristate => {
                    Stand::Off(format!("value {v} is not y, m or n: Kconfig discards it"))
                }
                _ => {
                    f.detail = format!("set to {v}");
                    Stand::On
                }
            },
            State::Absent => match self.absence(name, 0) {
                Absence::NotArch(why) | Absence::NotInKernel(why) => Stand::NotApplicable(why),
                Absence::ParentOff { root, why } => {
                    let fixhint = format!("absent because {why}");
                    f.causes = vec![vec![root]];
                    Stand::Off(fixhint)
                }
                Absence::Missing => Stand::Off("missing: no line for it in the file".to_owned()),
            },
        };
        match (on, backport) {
            (Stand::On, Some(b)) => {
                f.detail = format!("{}; {b}", f.detail);
                Stand::On
            }
            (Stand::Off(w), Some(b)) => Stand::Off(format!("{w}; {b}")),
            (s, _) => s,
        }
    }

    fn evaluate_choice(&self, check: &Check) -> Finding {
        let mut f = self.blank(check, "any_of");
        let mut first_applicable: Option<String> = None;
        let mut satisfied: Vec<String> = Vec::new();
        let mut causes: Vec<Vec<String>> = Vec::new();
        for (label, terms) in check.alternatives() {
            let mut ok = true;
            let mut applicable = true;
            let mut states = Vec::new();
            // The off parents that alone keep this alternative unsatisfied, if so.
            let mut roots: Option<Vec<String>> = Some(Vec::new());
            for term in &terms {
                match term {
                    Term::Symbol(s) => {
                        let sym = self.sym(s);
                        let state = self.cfg.get(s);
                        states.push(format!("{s}={state}"));
                        if let (Some(v), Some(host)) = (sym.vendor, self.vendor) {
                            applicable &= v == host;
                        }
                        if self.on(s) {
                            continue;
                        }
                        ok = false;
                        match (&state, self.absence(s, 0)) {
                            (State::Absent, Absence::NotArch(_) | Absence::NotInKernel(_)) => {
                                applicable = false;
                            }
                            (State::Absent, Absence::ParentOff { root, .. }) => {
                                if let Some(r) = roots.as_mut() {
                                    r.push(root);
                                }
                            }
                            _ => roots = None,
                        }
                        if !sym.on_arch(self.arch.as_ref()) {
                            applicable = false;
                        }
                    }
                    Term::Cmdline { param, value } => {
                        let found = self.cmdline_has(param, value);
                        if !found {
                            roots = None;
                        }
                        states.push(format!(
                            "{param}={value} {} the built-in command line",
                            if found { "in" } else { "not in" }
                        ));
                        ok &= found;
                    }
                }
            }
            if applicable {
                if let Some(mut r) = roots.filter(|r| !r.is_empty()) {
                    r.dedup();
                    causes.push(r);
                }
                if first_applicable.is_none() {
                    first_applicable = first_symbol(&terms);
                }
                if ok {
                    if satisfied.is_empty() {
                        if let Some(s) = first_symbol(&terms) {
                            f.state = self.cfg.get(&s);
                        }
                    }
                    satisfied.push(label.clone());
                }
            }
            f.alternatives.push(Alternative {
                option: label,
                state: states.join("+"),
                ok: ok && applicable,
                applicable,
            });
        }
        let own = self
            .rules
            .symbol
            .contains_key(&check.name)
            .then(|| check.name.clone());
        let primary = own.clone().or_else(|| first_applicable.clone());
        if satisfied.is_empty() {
            if let Some(p) = &primary {
                f.state = self.cfg.get(p);
            }
        } else if let Some(o) = &own {
            f.state = self.cfg.get(o);
        }
        f.menu_path = primary.as_deref().and_then(|p| self.sym(p).menu.clone());
        let vendor = check
            .vendor
            .or_else(|| own.as_deref().and_then(|o| self.sym(o).vendor));
        let listing = f
            .alternatives
            .iter()
            .filter(|a| a.applicable)
            .map(|a| a.state.clone())
            .collect::<Vec<_>>()
            .join(", ");
        if let (Some(v), Some(host)) = (vendor, self.vendor) {
            if v != host {
                f.status = Status::NotApplicable;
                f.detail = format!(
                    "for {} hosts; checking for {}",
                    v.display_name(),
                    host.display_name()
                );
                return f;
            }
        }
        if first_applicable.is_none() {
            f.status = Status::NotApplicable;
            f.detail = format!(
                "none of {} exists for this kernel ({})",
                check.any_of.join(", "),
                self.arch_name()
            );
            return f;
        }
        if let Some(first) = satisfied.first() {
            f.status = if check.level == Level::Info {
                Status::Info
            } else {
                Status::Pass
            };
            let mut detail = format!("satisfied by {}", self.alt_state(first, &f.alternatives));
            if satisfied.len() > 1 {
                let others: Vec<String> = satisfied[1..]
                    .iter()
                    .map(|s| self.alt_state(s, &f.alternatives))
                    .collect();
                detail += &format!("; also available: {}", others.join(", "));
            }
            f.detail = join(&detail, check.notes.get(first).map(String::as_str));
            f.satisfied_by = Some(first.clone());
            return f;
        }
        f.status = match check.level {
            Level::Required => Status::Fail,
            Level::Recommended | Level::Avoid => Status::Warn,
            Level::Info => Status::Info,
        };
        f.detail = join(&format!("none of: {listing}"), check.note_off.as_deref());
        f.causes = causes;
        f.fix = self.fix_for(check, || {
            first_applicable
                .iter()
                .filter(|s| !self.sym(s).hidden)
                .map(|s| format!("{s}={}", self.preferred_value(self.sym(s))))
                .collect()
        });
        f
    }

    fn alt_state(&self, label: &str, alts: &[Alternative]) -> String {
        alts.iter()
            .find(|a| a.option == label)
            .map_or_else(|| label.to_owned(), |a| a.state.clone())
    }

    /// `m` for tristates when the kernel has modules, else `y`.
    fn preferred_value(&self, sym: &Symbol) -> &'static str {
        if sym.ty == SymbolType::Tristate && self.cfg.is_on("MODULES") {
            "m"
        } else {
            "y"
        }
    }

    /// The fragment lines for a check: its own `fix` (without symbols this kernel
    /// lacks) or the default.
    fn fix_for(&self, check: &Check, default: impl FnOnce() -> Vec<String>) -> Vec<String> {
        let lines = if check.fix.is_empty() {
            default()
        } else {
            check
                .fix
                .iter()
                .filter(|l| {
                    let s = l.split_once('=').map_or(l.as_str(), |(s, _)| s);
                    let sym = self.sym(s);
                    sym.on_arch(self.arch.as_ref())
                        && self.version.and_then(|v| sym.not_in(v)).is_none()
                        && !matches!((sym.vendor, self.vendor), (Some(a), Some(b)) if a != b)
                })
                .map(|l| {
                    let (s, v) = l.split_once('=').unwrap_or((l, "y"));
                    // No modules in this kernel: =m cannot be.
                    let v = if v == "m" && !self.cfg.is_on("MODULES") {
                        "y"
                    } else {
                        v
                    };
                    format!("{s}={v}")
                })
                .collect()
        };
        lines
            .into_iter()
            .map(|l| match l.split_once('=') {
                Some((s, "n")) => format!("# CONFIG_{s} is not set"),
                _ => format!("CONFIG_{l}"),
            })
            .collect()
    }

    fn cmdline(&self) -> Option<String> {
        self.cfg.get("CMDLINE").unquoted()
    }

    fn cmdline_has(&self, param: &str, value: &str) -> bool {
        let Some(line) = self.cmdline() else {
            return false;
        };
        let want = param.replace('-', "_");
        line.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .any(|(k, v)| {
                k.replace('-', "_") == want && v.split(',').any(|x| x.eq_ignore_ascii_case(value))
            })
    }

    fn params(&self, state: &State, params: &[String]) -> String {
        let Some(line) = state.unquoted() else {
            return "no built-in command line".to_owned();
        };
        let wanted: Vec<String> = params.iter().map(|p| p.replace('-', "_")).collect();
        let found: Vec<&str> = line
            .split_whitespace()
            .filter(|w| {
                let key = w.split_once('=').map_or(*w, |(k, _)| k).replace('-', "_");
                wanted.contains(&key)
            })
            .collect();
        if found.is_empty() {
            "no IOMMU-related parameters in it".to_owned()
        } else {
            format!("it sets {}", found.join(" "))
        }
    }
}

fn state_is_absent(f: &Finding) -> bool {
    f.state == State::Absent
}

fn first_symbol(terms: &[Term]) -> Option<String> {
    terms.iter().find_map(|t| match t {
        Term::Symbol(s) => Some(s.clone()),
        Term::Cmdline { .. } => None,
    })
}

fn join(a: &str, b: Option<&str>) -> String {
    match b {
        Some(b) if !a.is_empty() => format!("{a}; {b}"),
        Some(b) => b.to_owned(),
        None => a.to_owned(),
    }
}
