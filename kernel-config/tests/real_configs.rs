//! The real configs in `tests/kconfig/` (Debian amd64 and arm64, Arch, Fedora, two
//! hand-made Gentoo ones): every option's state against its `.expected.tsv`, and each verdict against
//! what `tests/kconfig/README.md` says a correct checker concludes.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;

use kernel_config::{check, read_for_check, Config, Cpu, Options, Report, State, Status, Verdict};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/kconfig")
}

fn load(stem: &str) -> Config {
    Config::read_file(&dir().join(format!("{stem}.config"))).unwrap()
}

fn report(stem: &str, cpu: Cpu) -> Report {
    check(&load(stem), &Options { cpu, kver: None })
}

const DEBIAN: &str = "debian12_linux-6.1.192-2_amd64";
const ARCH: &str = "arch_linux-6.17.5-arch1_x86_64";
const FEDORA: &str = "fedora-rawhide_6.18.0-0.rc3.fc44_x86_64";
const GENTOO_515: &str = "gentoo_5.15.32-gentoo-r1_adippl-kvm";
const GENTOO_46: &str = "gentoo_4.6.0-gentoo_x230";
const DEBIAN_ARM64: &str = "debian12_linux-6.1.192-3_arm64";
const ALL: [&str; 6] = [DEBIAN, ARCH, FEDORA, GENTOO_515, GENTOO_46, DEBIAN_ARM64];

fn expected_state(s: &str) -> State {
    match s {
        "y" => State::Y,
        "m" => State::M,
        "n" => State::N,
        "absent" => State::Absent,
        lit => State::Literal(lit.to_owned()),
    }
}

/// Each `.config` has its `.expected.tsv`, and the set is the one the README lists.
#[test]
fn every_config_has_an_expectation() {
    let mut stems: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".config")
                .map(str::to_owned)
        })
        .collect();
    stems.sort();
    let mut all: Vec<String> = ALL.iter().map(|s| (*s).to_owned()).collect();
    all.sort();
    assert_eq!(stems, all);
    for s in ALL {
        assert!(dir().join(format!("{s}.expected.tsv")).is_file(), "{s}");
    }
}

/// Option by option, the parser agrees with the expected states, the header line and
/// the duplicate count; and each finding about a listed option reports the same state.
#[test]
fn states_match_expected_tsv() {
    for stem in ALL {
        let cfg = load(stem);
        let rep = check(&cfg, &Options::default());
        let tsv = std::fs::read_to_string(dir().join(format!("{stem}.expected.tsv"))).unwrap();
        let mut lines = tsv.lines();
        let header = lines.next().unwrap().strip_prefix("# # Linux/").unwrap();
        let release = header.split_whitespace().nth(1).unwrap();
        assert_eq!(cfg.release(), Some(release), "{stem}");
        assert_eq!(lines.next(), Some("# duplicates: none"), "{stem}");
        assert_eq!(cfg.duplicates(), 0, "{stem}");
        assert!(cfg.warnings().is_empty(), "{stem}: {:?}", cfg.warnings());
        assert_eq!(lines.next(), Some("option\tstate"), "{stem}");
        let mut n = 0;
        for line in lines {
            let (opt, state) = line.split_once('\t').unwrap();
            let want = expected_state(state);
            assert_eq!(cfg.get(opt), want, "{stem}: {opt}");
            let name = opt.strip_prefix("CONFIG_").unwrap();
            if let Some(f) = rep.finding(name) {
                assert_eq!(f.state, want, "{stem}: finding {name}");
            }
            n += 1;
        }
        assert!(n >= 38, "{stem}: only {n} options");
    }
}

fn statuses(rep: &Report, status: Status) -> Vec<&str> {
    rep.with_status(status).map(|f| f.option.as_str()).collect()
}

fn status_of(rep: &Report, option: &str) -> Status {
    rep.finding(option)
        .unwrap_or_else(|| panic!("no finding {option}"))
        .status
}

/// README 1: debian 6.1.192 passes, with no warning.
#[test]
fn debian_passes() {
    let r = report(DEBIAN, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Pass, "{}", r.render_human(false));
    assert!(statuses(&r, Status::Warn).is_empty());
    // AMD_IOMMU_V2 still exists on 6.1; VFIO_VIRQFD is still a module.
    assert_eq!(status_of(&r, "AMD_IOMMU_V2"), Status::Info);
    let virqfd = r.finding("VFIO_VIRQFD").unwrap();
    assert_eq!(virqfd.state, State::M);
    assert_eq!(virqfd.module.as_deref(), Some("vfio_virqfd"));
    assert!(virqfd.initramfs);
    for opt in [
        "VFIO_CONTAINER",
        "VFIO_GROUP",
        "IOMMUFD",
        "VFIO_DEVICE_CDEV",
        "IOMMUFD_VFIO_CONTAINER",
    ] {
        let f = r.finding(opt).unwrap();
        assert_eq!(f.status, Status::NotApplicable, "{opt}");
        assert!(f.detail.contains("added in 6."), "{opt}: {}", f.detail);
    }
    // Debian's choice: default on except the iGPU, so no intel_iommu=on is needed.
    let on = r.finding("INTEL_IOMMU_DEFAULT_ON").unwrap();
    assert_eq!(on.status, Status::Pass);
    assert_eq!(
        on.satisfied_by.as_deref(),
        Some("INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF")
    );
    assert!(on.detail.contains("integrated GPU"), "{}", on.detail);
    let dma = r.finding("VFIO_DMA_BACKEND").unwrap();
    assert_eq!(dma.satisfied_by.as_deref(), Some("VFIO_IOMMU_TYPE1"));
    assert_eq!(r.verdict().exit_code(), 0);
}

/// README 3: arch 6.17.5 passes with one warning (intel_iommu=on needed on Intel).
#[test]
fn arch_passes_with_the_intel_warning() {
    let r = report(ARCH, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Warn, "{}", r.render_human(false));
    assert_eq!(statuses(&r, Status::Warn), ["INTEL_IOMMU_DEFAULT_ON"]);
    assert!(statuses(&r, Status::Fail).is_empty());
    assert!(r
        .finding("INTEL_IOMMU_DEFAULT_ON")
        .unwrap()
        .detail
        .contains("intel_iommu=on"));
    let v2 = r.finding("AMD_IOMMU_V2").unwrap();
    assert_eq!(v2.status, Status::NotApplicable);
    assert!(v2.detail.contains("removed in 6.7"), "{}", v2.detail);
    // Both the legacy path and the cdev path are available.
    let dma = r.finding("VFIO_DMA_BACKEND").unwrap();
    assert_eq!(dma.satisfied_by.as_deref(), Some("VFIO_IOMMU_TYPE1"));
    let cdev = dma
        .alternatives
        .iter()
        .find(|a| a.option == "IOMMUFD+VFIO_DEVICE_CDEV")
        .unwrap();
    assert!(cdev.ok);
    assert!(
        dma.detail
            .contains("also available: IOMMUFD=m+VFIO_DEVICE_CDEV=y"),
        "{}",
        dma.detail
    );
    // AMD hosts need nothing.
    let amd = report(ARCH, Cpu::Amd);
    assert_eq!(amd.verdict(), Verdict::Pass, "{}", amd.render_human(false));
    assert_eq!(
        status_of(&amd, "INTEL_IOMMU_DEFAULT_ON"),
        Status::NotApplicable
    );
    assert_eq!(report(ARCH, Cpu::Intel).verdict(), Verdict::Warn);
}

/// README 4: fedora 6.18-rc3 passes with the same warning; VFIO_NOIOMMU=y is info.
#[test]
fn fedora_passes_with_the_intel_warning() {
    let r = report(FEDORA, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Warn, "{}", r.render_human(false));
    assert_eq!(statuses(&r, Status::Warn), ["INTEL_IOMMU_DEFAULT_ON"]);
    let noiommu = r.finding("VFIO_NOIOMMU").unwrap();
    assert_eq!((noiommu.status, &noiommu.state), (Status::Info, &State::Y));
    let cdev = r.finding("VFIO_DEVICE_CDEV").unwrap();
    assert_eq!((cdev.status, &cdev.state), (Status::Info, &State::N));
    assert_eq!(r.finding("IOMMUFD").unwrap().state, State::M);
    assert_eq!(r.kernel.version.unwrap().to_string(), "6.18.0");
}

/// README 5: gentoo 5.15.32 fails on IRQ_REMAP alone.
#[test]
fn gentoo_515_fails_on_irq_remap() {
    let r = report(GENTOO_515, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Fail, "{}", r.render_human(false));
    assert_eq!(statuses(&r, Status::Fail), ["IRQ_REMAP"]);
    assert!(statuses(&r, Status::Blocked).is_empty());
    assert!(
        statuses(&r, Status::Warn).is_empty(),
        "{:?}",
        statuses(&r, Status::Warn)
    );
    let irq = r.finding("IRQ_REMAP").unwrap();
    assert!(irq.reason.contains("allow_unsafe_interrupts"));
    assert_eq!(
        irq.menu_path.as_deref(),
        Some("Device Drivers -> IOMMU Hardware Support -> Support for Interrupt Remapping")
    );
    assert_eq!(irq.fix, ["CONFIG_IRQ_REMAP=y"]);
    assert_eq!(status_of(&r, "INTEL_IOMMU_DEFAULT_ON"), Status::Pass);
    assert_eq!(status_of(&r, "AMD_IOMMU_V2"), Status::Info);
    for opt in ["VFIO_CONTAINER", "VFIO_GROUP", "IOMMUFD"] {
        assert_eq!(status_of(&r, opt), Status::NotApplicable, "{opt}");
    }
    let cmdline = r.finding("CMDLINE").unwrap();
    assert_eq!(cmdline.status, Status::Info);
    assert!(
        cmdline.detail.contains("no IOMMU-related parameters"),
        "{}",
        cmdline.detail
    );
    assert_eq!(r.verdict().exit_code(), 1);
    assert!(
        r.summary().starts_with("FAIL: set CONFIG_IRQ_REMAP=y"),
        "{}",
        r.summary()
    );
}

/// README 6: gentoo 4.6.0 fails on VFIO and IRQ_REMAP; what is absent because VFIO=n
/// is one finding, not five; what 4.6 did not have is n/a.
#[test]
fn gentoo_46_fails_on_vfio_with_children_blocked() {
    let r = report(GENTOO_46, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Fail, "{}", r.render_human(false));
    assert_eq!(statuses(&r, Status::Fail), ["IRQ_REMAP", "VFIO"]);
    for opt in ["VFIO_PCI", "VFIO_DMA_BACKEND", "VFIO_PCI_VGA"] {
        let f = r.finding(opt).unwrap();
        assert_eq!(f.status, Status::Blocked, "{opt}");
        assert_eq!(f.blocked_by.as_deref(), Some("VFIO"), "{opt}");
    }
    for opt in ["VFIO_IOMMU_TYPE1", "VFIO_VIRQFD", "VFIO_PCI_IGD"] {
        let f = r.finding(opt).unwrap();
        assert_eq!(f.state, State::Absent);
        assert!(
            f.detail.contains("because VFIO is not set"),
            "{opt}: {}",
            f.detail
        );
    }
    for opt in ["IOMMU_DEFAULT_PASSTHROUGH", "VFIO_PCI_CORE", "IOMMUFD"] {
        assert_eq!(status_of(&r, opt), Status::NotApplicable, "{opt}");
    }
    assert!(r
        .finding("AMD_IOMMU_V2")
        .unwrap()
        .detail
        .contains("AMD_IOMMU is not set"));
    assert_eq!(status_of(&r, "INTEL_IOMMU_DEFAULT_ON"), Status::Warn);
    for opt in [
        "KVM",
        "KVM_INTEL",
        "HUGETLBFS",
        "IOMMU_SUPPORT",
        "INTEL_IOMMU",
    ] {
        assert_eq!(status_of(&r, opt), Status::Pass, "{opt}");
    }
    // AMD_IOMMU not set is fine on an Intel host, a warning when the vendor is unknown.
    assert_eq!(status_of(&r, "AMD_IOMMU"), Status::Warn);
    let intel = report(GENTOO_46, Cpu::Intel);
    assert_eq!(status_of(&intel, "AMD_IOMMU"), Status::NotApplicable);
    assert_eq!(status_of(&intel, "KVM_AMD"), Status::NotApplicable);
    assert_eq!(statuses(&intel, Status::Fail), ["IRQ_REMAP", "VFIO"]);
    // The fragment fixes VFIO and what it blocks, and nothing 4.6 lacks.
    let frag = r.fragment();
    for line in ["CONFIG_VFIO=m", "CONFIG_VFIO_PCI=m", "CONFIG_IRQ_REMAP=y"] {
        assert!(
            frag.lines().any(|l| l == line),
            "{line} missing from\n{frag}"
        );
    }
    assert!(
        !frag.contains("VFIO_CONTAINER") && !frag.contains("IOMMUFD"),
        "{frag}"
    );
    // The human report names the children under VFIO once.
    let human = r.render_human(false);
    assert!(
        human.contains("also absent until it is on: VFIO_PCI, VFIO_IOMMU_TYPE1, VFIO_PCI_VGA"),
        "{human}"
    );
    assert!(!human.contains("BLOCKED"), "{human}");
}

/// README 7: Debian 12's arm64 config as shipped passes: the SMMUv3 driver and the
/// GICv3 ITS (MSI isolation) are built in; the x86 options are n/a, not missing.
#[test]
fn debian_arm64_passes_on_smmu_v3_and_its() {
    let r = report(DEBIAN_ARM64, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Pass, "{}", r.render_human(false));
    assert_eq!(r.verdict().exit_code(), 0);
    assert!(
        statuses(&r, Status::Warn).is_empty(),
        "{:?}",
        statuses(&r, Status::Warn)
    );
    assert_eq!(
        r.kernel.arch.as_ref().map(kernel_config::Arch::name),
        Some("arm64")
    );
    let smmu = r.finding("ARM_SMMU_V3").unwrap();
    assert_eq!(smmu.status, Status::Pass);
    assert_eq!(smmu.satisfied_by.as_deref(), Some("ARM_SMMU_V3"));
    let its = r.finding("ARM_GIC_V3_ITS").unwrap();
    assert_eq!((its.status, &its.state), (Status::Pass, &State::Y));
    assert!(its.reason.contains("MSI isolation"), "{}", its.reason);
    let platform = r.finding("VFIO_PLATFORM").unwrap();
    assert_eq!(
        (platform.status, &platform.state),
        (Status::Info, &State::N)
    );
    for opt in [
        "INTEL_IOMMU",
        "AMD_IOMMU",
        "IRQ_REMAP",
        "IOMMU_DRIVER",
        "KVM_VENDOR",
        "VFIO_PCI_VGA",
    ] {
        let f = r.finding(opt).unwrap();
        assert_eq!(f.status, Status::NotApplicable, "{opt}");
        assert!(f.detail.contains("arm64"), "{opt}: {}", f.detail);
    }
    // There is no CPU vendor to choose: the report says so, not "any".
    assert_eq!(r.cpu, Cpu::NotApplicable);
    assert!(r
        .render_human(false)
        .contains("CPU vendor: does not apply (arm64)"));
}

/// `--cpu intel` on an arm64 config says it does not apply (never a silent "any"),
/// and judges the same.
#[test]
fn cpu_vendor_does_not_apply_to_arm64() {
    let any = report(DEBIAN_ARM64, Cpu::Any);
    assert!(any.notes.is_empty(), "{:?}", any.notes);
    for cpu in [Cpu::Intel, Cpu::Amd] {
        let r = report(DEBIAN_ARM64, cpu);
        assert_eq!(r.cpu, Cpu::NotApplicable);
        let note = format!("--cpu {cpu} does not apply to this arm64 config");
        assert!(
            r.notes.iter().any(|n| n.starts_with(&note)),
            "{:?}",
            r.notes
        );
        assert!(r.render_human(false).contains(&note));
        assert_eq!(r.verdict(), any.verdict());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["cpu"], "n/a");
    }
}

/// The same config with `ARM_GIC_V3_ITS` unset fails on it alone: no MSI isolation,
/// so vfio refuses every group.
#[test]
fn debian_arm64_without_the_its_fails_naming_it() {
    let text = std::fs::read_to_string(dir().join(format!("{DEBIAN_ARM64}.config"))).unwrap();
    assert!(text.lines().any(|l| l == "CONFIG_ARM_GIC_V3_ITS=y"));
    let unset: String = text
        .lines()
        .filter(|l| !l.starts_with("CONFIG_ARM_GIC_V3_ITS_"))
        .map(|l| {
            if l == "CONFIG_ARM_GIC_V3_ITS=y" {
                "# CONFIG_ARM_GIC_V3_ITS is not set\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    for cfg in [unset, text.replace("CONFIG_ARM_GIC_V3_ITS=y\n", "")] {
        let r = check(&Config::parse(&cfg), &Options::default());
        assert_eq!(r.verdict(), Verdict::Fail, "{}", r.render_human(false));
        assert_eq!(r.verdict().exit_code(), 1);
        assert_eq!(statuses(&r, Status::Fail), ["ARM_GIC_V3_ITS"]);
        assert!(r.summary().starts_with("FAIL"), "{}", r.summary());
        assert!(
            r.render_human(false).contains("FAIL    ARM_GIC_V3_ITS"),
            "{}",
            r.render_human(false)
        );
        let its = r.finding("ARM_GIC_V3_ITS").unwrap();
        assert!(
            its.reason.contains("allow_unsafe_interrupts"),
            "{}",
            its.reason
        );
        // Hidden (selected by ARM64 with PCI): the fix names what selects it.
        assert_eq!(its.fix, ["CONFIG_PCI=y", "CONFIG_PCI_MSI=y"]);
    }
}

/// The arm64 rows are n/a on the x86 configs.
#[test]
fn arm64_rows_are_not_applicable_on_x86() {
    for stem in [DEBIAN, ARCH, FEDORA, GENTOO_515, GENTOO_46] {
        let r = report(stem, Cpu::Any);
        for opt in ["ARM_SMMU_V3", "ARM_GIC_V3_ITS", "VFIO_PLATFORM"] {
            assert_eq!(status_of(&r, opt), Status::NotApplicable, "{stem}: {opt}");
        }
        assert_ne!(r.cpu, Cpu::NotApplicable, "{stem}");
    }
}

/// HUGETLBFS=y and HUGETLB_PAGE=y everywhere; the JSON of every report is complete.
#[test]
fn hugetlb_and_json_everywhere() {
    for stem in ALL {
        let r = report(stem, Cpu::Any);
        assert_eq!(status_of(&r, "HUGETLBFS"), Status::Pass, "{stem}");
        assert_eq!(status_of(&r, "HUGETLB_PAGE"), Status::Info, "{stem}");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v["verdict"],
            serde_json::json!(match r.verdict() {
                Verdict::Pass => "pass",
                Verdict::Warn => "warn",
                Verdict::Fail => "fail",
            })
        );
        for f in v["findings"].as_array().unwrap() {
            for key in [
                "option",
                "state",
                "status",
                "reason",
                "menu_path",
                "detail",
                "satisfied_by",
                "blocked_by",
            ] {
                assert!(f.get(key).is_some(), "{stem}: {key} missing in {f}");
            }
            let status = f["status"].as_str().unwrap();
            assert!(
                ["pass", "info", "n/a", "warn", "blocked", "fail"].contains(&status),
                "{status}"
            );
        }
    }
}

/// Reading only the symbols the rules name (what `check-kconfig` does) gives the same
/// report, to the byte, as keeping every symbol, for every config and CPU vendor.
#[test]
fn keeping_only_the_rules_symbols_changes_nothing() {
    for stem in ALL {
        let path = dir().join(format!("{stem}.config"));
        let lean = read_for_check(std::fs::File::open(&path).unwrap()).unwrap();
        let full = load(stem);
        assert!(lean.len() < full.len() / 20, "{stem}: {} kept", lean.len());
        for cpu in [Cpu::Any, Cpu::Intel, Cpu::Amd] {
            let opts = Options { cpu, kver: None };
            let (a, b) = (check(&lean, &opts), check(&full, &opts));
            assert_eq!(a.to_json(), b.to_json(), "{stem} {cpu}");
            assert_eq!(a.render_human(false), b.render_human(false), "{stem} {cpu}");
        }
    }
}

/// Where no hidden symbol has to be selected, appending the fragment to the config
/// (a duplicate's last value wins, as in `merge_config.sh`) makes it pass.
#[test]
fn fragment_fixes_the_gentoo_515_config() {
    let text = std::fs::read_to_string(dir().join(format!("{GENTOO_515}.config"))).unwrap();
    let r = check(&Config::parse(&text), &Options::default());
    let frag = r.fragment();
    let merged = Config::parse(&format!("{text}{frag}"));
    assert_eq!(merged.duplicates(), 1, "{frag}");
    let fixed = check(&merged, &Options::default());
    assert_eq!(
        fixed.verdict(),
        Verdict::Pass,
        "{}",
        fixed.render_human(false)
    );
}
