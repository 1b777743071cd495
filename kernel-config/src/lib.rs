//! Does this kernel configuration support PCI passthrough with VFIO?
//!
//! A kernel `.config` (or `/proc/config.gz`) is checked against a table of what
//! passthrough needs: an IOMMU driver, interrupt remapping, VFIO with vfio-pci and a
//! DMA backend, KVM for the host's CPU vendor, hugetlbfs; plus what is recommended
//! and what is worth knowing. `vfio-early check-kconfig` is the command line for it,
//! and `vfio-early check` uses the same engine for the running kernel.
//!
//! # Five states, as Kconfig writes them
//!
//! Every symbol in a `.config` is in one of five [`State`]s: `CONFIG_X=y`,
//! `CONFIG_X=m`, `# CONFIG_X is not set` (that exact comment is a value: *n*), no line
//! at all (*absent*), or a literal value (`CONFIG_CMDLINE="..."`, numbers). *n* and
//! *absent* mean different things. Kconfig writes `is not set` for a symbol the user
//! could have turned on; it writes nothing for a symbol whose dependencies are unmet,
//! that belongs to another architecture, or that this kernel version does not have.
//! A parser that skips every `#` line cannot tell them apart. [`Config::parse`] keeps
//! the last value of a duplicated symbol (as Kconfig does) and warns; lines that are
//! neither comments nor assignments warn and are skipped, never fatal. The kernel
//! version and architecture come from the file itself (the `# Linux/x86 6.1.192
//! Kernel Configuration` header and symbols such as `CONFIG_X86_64`), never from the
//! running system.
//!
//! # Verdicts that do not lie
//!
//! An absent option is explained before it is judged, and each [`Finding`] says
//! which explanation applies:
//!
//! * **not applicable** ([`Status::NotApplicable`]): the symbol does not exist in this
//!   kernel version (`AMD_IOMMU_V2` from 6.7 on, `IOMMUFD` before 6.2), on this
//!   architecture (`IRQ_REMAP` outside x86_64), or for the CPU vendor checked
//!   (`--cpu intel` makes the AMD options n/a). A symbol that is *present* always wins
//!   over the version: vendor kernels backport.
//! * **blocked** ([`Status::Blocked`]): absent because a parent option that the report
//!   already flags is off (`VFIO` is not set, so `VFIO_PCI` has no line). One problem
//!   to fix, not five; the human report lists such options under their parent.
//! * **missing** or **not set**: fix the option itself.
//!
//! The table distinguishes *required* options (off fails), *recommended* ones (off
//! warns), *info* (never fails) and *avoid* (on warns: `TRIM_UNUSED_KSYMS` breaks
//! out-of-tree modules). `=m` is fine for a tristate, and when the module must be in
//! the initramfs (vfio-early binds devices there) the finding says so; `=m` on a bool
//! is an invalid, hand-edited value that Kconfig discards. Choices (`any_of`) report
//! which alternative satisfied them: the DMA backend is `VFIO_IOMMU_TYPE1`, or
//! `IOMMUFD` with `IOMMUFD_VFIO_CONTAINER` or `VFIO_DEVICE_CDEV`.
//!
//! With [`Cpu::Any`] (the default) one vendor's IOMMU driver and KVM module suffice
//! (`IOMMU_DRIVER`, `KVM_VENDOR`) and the other vendor's absence is a warning; with
//! [`Cpu::Intel`] or [`Cpu::Amd`] the host's vendor's options are required and the
//! other's are n/a. [`Cpu::from_acpi`] picks the vendor from the firmware tables.
//!
//! # The table is data
//!
//! `kernel-config/rules.toml` (embedded, [`Rules::builtin`]) holds the facts about
//! each symbol (type, menu path, architectures, vendor, versions that have it,
//! dependencies, the module `=m` builds) and the checks (level, reason, alternatives,
//! fragment lines). Adding an option needs no code. Its header documents every field.
//!
//! # Use
//!
//! ```
//! use kernel_config::{check, Config, Cpu, Options, Status, Verdict};
//!
//! let cfg = Config::parse(
//!     "# Linux/x86 6.1.0 Kernel Configuration\n\
//!      CONFIG_X86_64=y\nCONFIG_MMU=y\nCONFIG_PCI=y\nCONFIG_PCI_MSI=y\nCONFIG_ACPI=y\n\
//!      CONFIG_X86_IO_APIC=y\nCONFIG_MODULES=y\nCONFIG_IOMMU_SUPPORT=y\nCONFIG_IOMMU_API=y\n\
//!      CONFIG_INTEL_IOMMU=y\nCONFIG_INTEL_IOMMU_DEFAULT_ON=y\nCONFIG_IRQ_REMAP=y\n\
//!      CONFIG_VFIO=m\nCONFIG_VFIO_IOMMU_TYPE1=m\nCONFIG_VFIO_PCI=m\nCONFIG_VFIO_PCI_VGA=y\n\
//!      CONFIG_VIRTUALIZATION=y\nCONFIG_KVM=m\nCONFIG_KVM_INTEL=m\nCONFIG_HUGETLBFS=y\n\
//!      CONFIG_HUGETLB_PAGE=y\n",
//! );
//! let report = check(&cfg, &Options { cpu: Cpu::Intel, ..Options::default() });
//! assert_eq!(report.verdict(), Verdict::Pass, "{}", report.render_human(false));
//! assert_eq!(report.finding("AMD_IOMMU").unwrap().status, Status::NotApplicable);
//! println!("{}", report.summary());
//! ```
//!
//! [`Config::from_bytes`] reads plain or gzip bytes (`/proc/config.gz`), and
//! [`Config::read_file`] a path. [`Report::render_human`], [`Report::to_json`] and
//! [`Report::fragment`] render a report; [`Verdict::exit_code`] gives the exit status
//! (0 unless something required fails).
//!
//! # JSON (schema 1)
//!
//! ```text
//! { "schema": 1, "source": "/boot/config-6.1.0" | null,
//!   "kernel": { "release": "6.1.192" | null, "version": "6.1.192" | null,
//!               "version_source": "header" | "kver" | "unknown", "arch": "x86_64" | null },
//!   "cpu": "any" | "intel" | "amd" | "n/a",   // n/a: not an x86 config (arm64...)
//!   "verdict": "pass" | "warn" | "fail",
//!   "summary": "PASS: every requirement met (Linux 6.1.192, x86_64, cpu any)",
//!   "notes": [ "..." ],
//!   "warnings": [ { "line": 12, "message": "..." } ], "warnings_dropped": 0,
//!   "findings": [ {
//!     "option": "VFIO_PCI",            // a symbol, or a choice's label (kind any_of)
//!     "kind": "option" | "any_of",
//!     "group": "VFIO",
//!     "level": "required" | "recommended" | "info" | "avoid",
//!     "state": "y" | "m" | "n" | "absent" | "<literal value>",
//!     "status": "pass" | "info" | "n/a" | "warn" | "blocked" | "fail",
//!     "detail": "module vfio-pci: it must be in the initramfs",
//!     "reason": "...", "menu_path": "Device Drivers -> ..." | null,
//!     "satisfied_by": "VFIO_IOMMU_TYPE1" | null,
//!     "alternatives": [ { "option", "state", "ok", "applicable" } ],  // choices only
//!     "blocked_by": "VFIO" | null,
//!     "module": "vfio-pci" | null, "initramfs": true,
//!     "fix": [ "CONFIG_VFIO_PCI=m" ]   // only when warn, blocked or fail
//!   } ] }
//! ```
//!
//! New fields may be added; existing ones keep their meaning within a schema number.
//!
//! # Fragment
//!
//! [`Report::fragment`] prints `CONFIG_X=y` / `# CONFIG_X is not set` lines for every
//! failing and blocked option (symbols this kernel lacks left out, hidden symbols
//! fixed through their selectors), ready for `scripts/kconfig/merge_config.sh -m
//! .config fragment && make olddefconfig`. Warnings' fixes follow as comments.

#![deny(missing_docs)]

mod engine;
mod parse;
mod render;
mod rules;

pub use engine::{
    check, check_with, read_for_check, symbols_read, Alternative, Cpu, Finding, KernelInfo,
    Options, Report, Status, Verdict,
};
pub use parse::{
    Arch, Config, Error, Keep, KernelVersion, Names, ParseWarning, State, ARCH_SYMBOLS,
};
pub use rules::{Check, Level, Rules, RulesError, Symbol, SymbolType, Term, Vendor, BUILTIN_RULES};
