//! The requirement table: `rules.toml`, deserialized and validated.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::parse::{Arch, KernelVersion};

/// The table shipped in the crate (`kernel-config/rules.toml`).
pub const BUILTIN_RULES: &str = include_str!("../rules.toml");

/// The rules table is malformed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not valid TOML, or a field of the wrong type or name.
    #[error("rules table: {0}")]
    Toml(#[from] toml::de::Error),
    /// Valid TOML, inconsistent content.
    #[error("rules table: {0}")]
    Invalid(String),
}

/// The type of a Kconfig symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SymbolType {
    /// y or n.
    Bool,
    /// y, m or n.
    #[default]
    Tristate,
    /// A quoted string.
    String,
    /// A decimal number.
    Int,
    /// A hexadecimal number.
    Hex,
}

/// A CPU vendor, for the options that only matter on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// Intel (VT-d, VT-x).
    Intel,
    /// AMD (AMD-Vi, AMD-V).
    Amd,
}

impl Vendor {
    /// "Intel" or "AMD".
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Intel => "Intel",
            Self::Amd => "AMD",
        }
    }
}

/// Facts about one symbol (`[symbol.NAME]`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Symbol {
    /// Its type.
    #[serde(default, rename = "type")]
    pub ty: SymbolType,
    /// The version from which a tristate is a bool.
    #[serde(default, deserialize_with = "opt_version")]
    pub bool_since: Option<KernelVersion>,
    /// No prompt: only selected by other symbols.
    #[serde(default)]
    pub hidden: bool,
    /// The menu path as `make menuconfig` shows it.
    #[serde(default)]
    pub menu: Option<String>,
    /// Architectures where it exists; empty = all.
    #[serde(default)]
    pub arches: Vec<String>,
    /// The CPU vendor it concerns.
    #[serde(default)]
    pub vendor: Option<Vendor>,
    /// The first version that has it.
    #[serde(default, deserialize_with = "opt_version")]
    pub since: Option<KernelVersion>,
    /// The first version that no longer has it.
    #[serde(default, deserialize_with = "opt_version")]
    pub until: Option<KernelVersion>,
    /// Dependencies: `SYM`, `!SYM`, `A|B`.
    #[serde(default)]
    pub requires: Vec<String>,
    /// The module `=m` builds.
    #[serde(default)]
    pub module: Option<String>,
    /// `=m` means the module must be in the initramfs.
    #[serde(default)]
    pub initramfs: bool,
}

impl Symbol {
    /// Whether the symbol exists on `arch` (unknown arch: assume it does).
    pub fn on_arch(&self, arch: Option<&Arch>) -> bool {
        match arch {
            Some(a) if !self.arches.is_empty() => self.arches.iter().any(|n| a.matches(n)),
            _ => true,
        }
    }

    /// Whether `=m` is a valid value on kernel `version` (unknown: by the type alone).
    pub fn allows_module(&self, version: Option<KernelVersion>) -> bool {
        if self.ty != SymbolType::Tristate {
            return false;
        }
        match (self.bool_since, version) {
            (Some(b), Some(v)) => v < b,
            _ => true,
        }
    }

    /// `Some(text)` when `version` lies outside the symbol's life: "added in 6.2",
    /// "removed in 6.7".
    pub fn not_in(&self, version: KernelVersion) -> Option<String> {
        if let Some(s) = self.since.filter(|s| version < *s) {
            return Some(format!("added in {}", short(s)));
        }
        if let Some(u) = self.until.filter(|u| version >= *u) {
            return Some(format!("removed in {}", short(u)));
        }
        None
    }
}

/// `6.2.0` written as `6.2`.
pub(crate) fn short(v: KernelVersion) -> String {
    if v.patch == 0 {
        format!("{}.{}", v.major, v.minor)
    } else {
        v.to_string()
    }
}

/// How a check's outcome weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Off is a failure.
    Required,
    /// Off is a warning.
    Recommended,
    /// Reported, never a failure.
    Info,
    /// On is a warning.
    Avoid,
}

/// One row of `[[check]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// The option, or a label for a choice.
    pub name: String,
    /// Heading in the human report.
    pub group: String,
    /// How it weighs.
    pub level: Level,
    /// Why it matters.
    pub reason: String,
    /// Alternatives (`SYM`, `A+B`, `cmdline:p=v`); empty = just `name`.
    #[serde(default)]
    pub any_of: Vec<String>,
    /// The CPU vendor of the whole check.
    #[serde(default)]
    pub vendor: Option<Vendor>,
    /// Only checked with `--cpu any`.
    #[serde(default)]
    pub cpu_any: bool,
    /// The symbol this one must equal.
    #[serde(default)]
    pub equals: Option<String>,
    /// Command-line parameters to report (string symbols).
    #[serde(default)]
    pub params: Vec<String>,
    /// Fragment lines that fix a failure.
    #[serde(default)]
    pub fix: Vec<String>,
    /// Extra detail when on.
    #[serde(default)]
    pub note_on: Option<String>,
    /// Extra detail when off.
    #[serde(default)]
    pub note_off: Option<String>,
    /// Extra detail per satisfying alternative.
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}

/// One term of an alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A symbol that must be on.
    Symbol(String),
    /// `param=value` found in the built-in command line (`CONFIG_CMDLINE`).
    Cmdline {
        /// Parameter name (`-` and `_` are equivalent).
        param: String,
        /// One of its comma-separated values.
        value: String,
    },
}

impl Check {
    /// The alternatives, each a conjunction of terms.
    pub fn alternatives(&self) -> Vec<(String, Vec<Term>)> {
        if self.any_of.is_empty() {
            return vec![(self.name.clone(), vec![Term::Symbol(self.name.clone())])];
        }
        self.any_of
            .iter()
            .map(|alt| (alt.clone(), parse_alternative(alt)))
            .collect()
    }

    /// True when the check is a choice between several alternatives.
    pub fn is_choice(&self) -> bool {
        self.any_of.len() > 1
    }
}

fn parse_alternative(alt: &str) -> Vec<Term> {
    alt.split('+')
        .map(|t| {
            let t = t.trim();
            match t.strip_prefix("cmdline:").and_then(|r| r.split_once('=')) {
                Some((param, value)) => Term::Cmdline {
                    param: param.to_owned(),
                    value: value.to_owned(),
                },
                None => Term::Symbol(t.to_owned()),
            }
        })
        .collect()
}

/// The whole table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Symbol facts by name.
    #[serde(default)]
    pub symbol: BTreeMap<String, Symbol>,
    /// Checks, in report order.
    #[serde(default)]
    pub check: Vec<Check>,
}

impl Rules {
    /// Parses and validates a table.
    pub fn from_toml(text: &str) -> Result<Self, RulesError> {
        let rules: Self = toml::from_str(text)?;
        rules.validate()?;
        Ok(rules)
    }

    /// The built-in table, parsed once. It is validated by a test
    /// (`builtin_table_is_valid`) and in debug builds, not again on every run.
    ///
    /// # Panics
    /// Never in a released build: a test proves the embedded table valid.
    #[allow(clippy::missing_panics_doc)]
    pub fn builtin() -> &'static Self {
        static RULES: OnceLock<Rules> = OnceLock::new();
        RULES.get_or_init(|| {
            let parsed: Result<Self, RulesError> = toml::from_str(BUILTIN_RULES)
                .map_err(RulesError::from)
                .and_then(|r: Self| {
                    if cfg!(debug_assertions) {
                        r.validate()?;
                    }
                    Ok(r)
                });
            match parsed {
                Ok(r) => r,
                Err(e) => panic!("the built-in rules table is invalid: {e}"),
            }
        })
    }

    /// Facts about a symbol; a default (tristate, everywhere, always) when unknown.
    pub fn symbol(&self, name: &str) -> &Symbol {
        static DEFAULT: OnceLock<Symbol> = OnceLock::new();
        self.symbol
            .get(name)
            .unwrap_or_else(|| DEFAULT.get_or_init(Symbol::default))
    }

    fn validate(&self) -> Result<(), RulesError> {
        let bad = |m: String| Err(RulesError::Invalid(m));
        let mut names = HashSet::new();
        for c in &self.check {
            if !names.insert(c.name.as_str()) {
                return bad(format!("check {} appears twice", c.name));
            }
            if c.any_of.is_empty() && !self.symbol.contains_key(&c.name) {
                return bad(format!("check {} names no [symbol.{}]", c.name, c.name));
            }
            for (alt, terms) in c.alternatives() {
                for t in terms {
                    if let Term::Symbol(s) = t {
                        if !self.symbol.contains_key(&s) {
                            return bad(format!(
                                "check {}: alternative {alt}: no [symbol.{s}]",
                                c.name
                            ));
                        }
                    }
                }
            }
            for line in &c.fix {
                let ok = line.split_once('=').is_some_and(|(s, v)| {
                    !s.is_empty() && !s.starts_with("CONFIG_") && matches!(v, "y" | "m" | "n")
                });
                if !ok {
                    return bad(format!("check {}: fix {line:?} is not SYM=y|m|n", c.name));
                }
            }
            for key in c.notes.keys() {
                if !c.any_of.contains(key) {
                    return bad(format!(
                        "check {}: note for {key}, which is not an alternative",
                        c.name
                    ));
                }
            }
        }
        for (name, sym) in &self.symbol {
            if let (Some(s), Some(u)) = (sym.since, sym.until) {
                if s >= u {
                    return bad(format!("symbol {name}: since {s} is not before until {u}"));
                }
            }
            // Dependency chains must end: follow every path with a depth bound.
            self.acyclic(name, 0)?;
        }
        Ok(())
    }

    fn acyclic(&self, name: &str, depth: usize) -> Result<(), RulesError> {
        if depth > 16 {
            return Err(RulesError::Invalid(format!(
                "requires chain through {name} loops or is too deep"
            )));
        }
        if let Some(sym) = self.symbol.get(name) {
            for req in &sym.requires {
                for part in req.split('|') {
                    self.acyclic(part.trim_start_matches('!'), depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

fn opt_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<KernelVersion>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_is_valid() {
        let r = Rules::from_toml(BUILTIN_RULES).unwrap();
        assert!(r.check.len() > 20);
        assert_eq!(
            r.symbol("AMD_IOMMU_V2").until,
            Some(KernelVersion::new(6, 7, 0))
        );
        assert!(!r
            .symbol("VFIO_VIRQFD")
            .allows_module(Some(KernelVersion::new(6, 2, 0))));
        assert!(r
            .symbol("VFIO_VIRQFD")
            .allows_module(Some(KernelVersion::new(6, 1, 192))));
        assert!(!r.symbol("IRQ_REMAP").allows_module(None));
    }

    #[test]
    fn unknown_fields_and_dangling_names_are_rejected() {
        let e = Rules::from_toml("[symbol.A]\nmneu = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("mneu"), "{e}");
        let e = Rules::from_toml(
            "[[check]]\nname=\"A\"\ngroup=\"g\"\nlevel=\"required\"\nreason=\"r\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no [symbol.A]"), "{e}");
        let e = Rules::from_toml("[symbol.A]\nrequires=[\"B\"]\n[symbol.B]\nrequires=[\"!A\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("loops"), "{e}");
        let e = Rules::from_toml("[symbol.A]\n[[check]]\nname=\"A\"\ngroup=\"g\"\nlevel=\"info\"\nreason=\"r\"\nfix=[\"CONFIG_A=y\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("not SYM="), "{e}");
    }

    /// Every failure can be explained with a menu path, and every fragment line names
    /// a symbol a fragment can set.
    #[test]
    fn every_visible_symbol_has_a_menu_path_and_fixes_are_settable() {
        let r = Rules::builtin();
        let tops = [
            "Device Drivers -> ",
            "Processor type and features -> ",
            "Virtualization -> ",
            "File systems -> ",
            "Enable loadable module support -> ",
        ];
        for (name, sym) in &r.symbol {
            let menu = sym
                .menu
                .as_deref()
                .unwrap_or_else(|| panic!("{name}: no menu"));
            if sym.hidden {
                assert!(menu.starts_with("(hidden"), "{name}: {menu}");
            } else {
                assert!(
                    tops.iter().any(|t| menu.starts_with(t))
                        || menu == "Device Drivers -> IOMMU Hardware Support",
                    "{name}: {menu}"
                );
            }
        }
        for c in &r.check {
            for line in &c.fix {
                let sym = line.split_once('=').map_or(line.as_str(), |(s, _)| s);
                assert!(!r.symbol(sym).hidden, "{}: fix sets hidden {sym}", c.name);
                assert!(
                    r.symbol.contains_key(sym),
                    "{}: fix names unknown {sym}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn alternatives_parse() {
        let r = Rules::builtin();
        let c = r
            .check
            .iter()
            .find(|c| c.name == "INTEL_IOMMU_DEFAULT_ON")
            .unwrap();
        let alts = c.alternatives();
        assert_eq!(alts.len(), 3);
        assert_eq!(
            alts[2].1,
            [Term::Cmdline {
                param: "intel_iommu".into(),
                value: "on".into()
            }]
        );
        let c = r
            .check
            .iter()
            .find(|c| c.name == "VFIO_DMA_BACKEND")
            .unwrap();
        assert_eq!(
            c.alternatives()[1].1,
            [
                Term::Symbol("IOMMUFD".into()),
                Term::Symbol("IOMMUFD_VFIO_CONTAINER".into())
            ]
        );
    }
}
