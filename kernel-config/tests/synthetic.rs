//! Synthetic configs, one rule at a time: each test starts from a complete, passing
//! x86_64 6.6 config and changes the lines the rule is about.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::Write;

use kernel_config::{check, Config, Cpu, KernelVersion, Options, Report, State, Status, Verdict};

/// A passing config: every requirement met, nothing to warn about.
const BASE: &str = "\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.6.30 Kernel Configuration
#
CONFIG_64BIT=y
CONFIG_X86_64=y
CONFIG_X86=y
CONFIG_MMU=y
CONFIG_MODULES=y
CONFIG_PCI=y
CONFIG_PCI_MSI=y
CONFIG_EVENTFD=y
CONFIG_ACPI=y
CONFIG_X86_IO_APIC=y
CONFIG_X86_LOCAL_APIC=y
CONFIG_X86_X2APIC=y
CONFIG_VIRTUALIZATION=y
CONFIG_KVM=m
CONFIG_KVM_INTEL=m
CONFIG_KVM_AMD=m
CONFIG_KVM_VFIO=y
CONFIG_IOMMU_SUPPORT=y
CONFIG_IOMMU_API=y
CONFIG_AMD_IOMMU=y
CONFIG_AMD_IOMMU_V2=m
CONFIG_INTEL_IOMMU=y
CONFIG_INTEL_IOMMU_SVM=y
CONFIG_INTEL_IOMMU_DEFAULT_ON=y
CONFIG_IRQ_REMAP=y
# CONFIG_IOMMU_DEFAULT_PASSTHROUGH is not set
# CONFIG_IOMMUFD is not set
CONFIG_VFIO=m
CONFIG_VFIO_GROUP=y
CONFIG_VFIO_CONTAINER=y
CONFIG_VFIO_IOMMU_TYPE1=m
# CONFIG_VFIO_NOIOMMU is not set
CONFIG_VFIO_VIRQFD=y
CONFIG_VFIO_PCI_CORE=m
CONFIG_VFIO_PCI=m
CONFIG_VFIO_PCI_VGA=y
CONFIG_VFIO_PCI_IGD=y
CONFIG_VGA_ARB=y
CONFIG_HUGETLBFS=y
CONFIG_HUGETLB_PAGE=y
# CONFIG_TRIM_UNUSED_KSYMS is not set
# CONFIG_CMDLINE_BOOL is not set
";

/// `BASE` with symbols changed: `Some("y")` etc. sets (`"n"` writes the "is not set"
/// comment), `None` removes the line.
fn edit(text: &str, changes: &[(&str, Option<&str>)]) -> String {
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| {
            !changes.iter().any(|(s, _)| {
                l.starts_with(&format!("CONFIG_{s}=")) || *l == format!("# CONFIG_{s} is not set")
            })
        })
        .map(str::to_owned)
        .collect();
    for (s, v) in changes {
        match v {
            Some("n") => out.push(format!("# CONFIG_{s} is not set")),
            Some(v) => out.push(format!("CONFIG_{s}={v}")),
            None => {}
        }
    }
    out.join("\n") + "\n"
}

/// The report on `text`; reading only the rules' symbols must give the same one.
fn run(text: &str, cpu: Cpu) -> Report {
    let opts = Options { cpu, kver: None };
    let report = check(&Config::parse(text), &opts);
    let lean = kernel_config::read_for_check(text.as_bytes()).unwrap();
    assert_eq!(check(&lean, &opts).to_json(), report.to_json());
    report
}

fn st(r: &Report, opt: &str) -> Status {
    r.finding(opt)
        .unwrap_or_else(|| panic!("no finding {opt}"))
        .status
}

fn fails(r: &Report) -> Vec<&str> {
    r.with_status(Status::Fail)
        .map(|f| f.option.as_str())
        .collect()
}

#[test]
fn base_passes_without_warnings() {
    let r = run(BASE, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Pass, "{}", r.render_human(false));
    assert!(r.warnings.is_empty() && r.notes.is_empty());
    assert_eq!(
        r.fragment()
            .lines()
            .filter(|l| l.starts_with("CONFIG_"))
            .count(),
        0
    );
}

#[test]
fn duplicate_last_wins_and_warns() {
    let text = format!("{BASE}CONFIG_VFIO=y\n# CONFIG_VFIO is not set\n");
    let cfg = Config::parse(&text);
    assert_eq!(cfg.get("VFIO"), State::N);
    assert_eq!(cfg.duplicates(), 2);
    let r = check(&cfg, &Options::default());
    assert_eq!(fails(&r), ["VFIO"]);
    assert_eq!(r.warnings.len(), 2);
    assert!(r.render_human(false).contains("Parse warnings"));
    // The other way round: the later =m repairs an earlier "is not set".
    let r = run(
        &format!("{BASE}# CONFIG_VFIO is not set\nCONFIG_VFIO=m\n"),
        Cpu::Any,
    );
    assert_eq!(st(&r, "VFIO"), Status::Pass);
}

#[test]
fn gzip_reads_like_plain() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(edit(BASE, &[("IRQ_REMAP", Some("n"))]).as_bytes())
        .unwrap();
    let gz = enc.finish().unwrap();
    let cfg = Config::from_bytes(&gz).unwrap();
    assert!(cfg.was_gzip());
    assert_eq!(cfg.version(), Some(KernelVersion::new(6, 6, 30)));
    let r = check(&cfg, &Options::default());
    assert_eq!(fails(&r), ["IRQ_REMAP"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.gz");
    std::fs::write(&path, &gz).unwrap();
    assert_eq!(Config::read_file(&path).unwrap().get("IRQ_REMAP"), State::N);
    let missing = Config::read_file(&dir.path().join("nope")).unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[test]
fn parent_off_is_one_finding() {
    // VFIO=n: Kconfig writes no line for what depends on it.
    let text = edit(
        BASE,
        &[
            ("VFIO", Some("n")),
            ("VFIO_GROUP", None),
            ("VFIO_CONTAINER", None),
            ("VFIO_IOMMU_TYPE1", None),
            ("VFIO_NOIOMMU", None),
            ("VFIO_VIRQFD", None),
            ("VFIO_PCI_CORE", None),
            ("VFIO_PCI", None),
            ("VFIO_PCI_VGA", None),
            ("VFIO_PCI_IGD", None),
        ],
    );
    let r = run(&text, Cpu::Any);
    assert_eq!(fails(&r), ["VFIO"], "{}", r.render_human(false));
    let blocked: Vec<&str> = r
        .with_status(Status::Blocked)
        .map(|f| f.option.as_str())
        .collect();
    assert_eq!(blocked, ["VFIO_PCI", "VFIO_DMA_BACKEND", "VFIO_PCI_VGA"]);
    assert!(r
        .with_status(Status::Blocked)
        .all(|f| f.blocked_by.as_deref() == Some("VFIO")));
    assert_eq!(r.verdict(), Verdict::Fail);
    let frag = r.fragment();
    for line in [
        "CONFIG_VFIO=m",
        "CONFIG_VFIO_PCI=m",
        "CONFIG_VFIO_GROUP=y",
        "CONFIG_VFIO_CONTAINER=y",
    ] {
        assert!(frag.lines().any(|l| l == line), "{line} missing:\n{frag}");
    }
    // Hidden symbols are fixed through their selectors, never set directly.
    assert!(!frag.contains("CONFIG_VFIO_IOMMU_TYPE1="), "{frag}");

    // A parent the table does not check (PCI_MSI): the child itself fails, naming it.
    let text = edit(
        BASE,
        &[
            ("PCI_MSI", Some("n")),
            ("IRQ_REMAP", None),
            ("INTEL_IOMMU", None),
        ],
    );
    let r = run(&text, Cpu::Intel);
    let irq = r.finding("IRQ_REMAP").unwrap();
    assert_eq!(irq.status, Status::Fail);
    assert!(
        irq.detail.contains("absent because PCI_MSI is not set"),
        "{}",
        irq.detail
    );

    // A chain: VFIO_PCI_VGA under VFIO_PCI under VFIO points at the root, VFIO.
    let text = edit(
        BASE,
        &[
            ("VFIO", Some("n")),
            ("VFIO_PCI", None),
            ("VFIO_PCI_VGA", None),
        ],
    );
    let r = run(&text, Cpu::Any);
    assert_eq!(
        r.finding("VFIO_PCI_VGA").unwrap().blocked_by.as_deref(),
        Some("VFIO")
    );

    // A missing line with every parent on is "missing", a failure of its own.
    let r = run(&edit(BASE, &[("VFIO_PCI", None)]), Cpu::Any);
    let pci = r.finding("VFIO_PCI").unwrap();
    assert_eq!(pci.status, Status::Fail);
    assert!(pci.detail.contains("missing"), "{}", pci.detail);
}

#[test]
fn version_decides_only_absences() {
    // 6.7+: AMD_IOMMU_V2 is gone.
    let v67 = edit(&BASE.replace("6.6.30", "6.7.0"), &[("AMD_IOMMU_V2", None)]);
    let r = run(&v67, Cpu::Any);
    assert_eq!(st(&r, "AMD_IOMMU_V2"), Status::NotApplicable);
    // The same absence on 6.6 (AMD_IOMMU on) is just information that it is missing.
    let r = run(&edit(BASE, &[("AMD_IOMMU_V2", None)]), Cpu::Any);
    assert_eq!(st(&r, "AMD_IOMMU_V2"), Status::Info);
    assert!(r
        .finding("AMD_IOMMU_V2")
        .unwrap()
        .detail
        .contains("missing"));

    // Before 6.2 there is no IOMMUFD and TYPE1 does not need VFIO_CONTAINER.
    let v61 = edit(
        &BASE.replace("6.6.30", "6.1.90"),
        &[
            ("IOMMUFD", None),
            ("VFIO_GROUP", None),
            ("VFIO_CONTAINER", None),
            ("VFIO_VIRQFD", Some("m")),
        ],
    );
    let r = run(&v61, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Pass, "{}", r.render_human(false));
    for opt in ["IOMMUFD", "VFIO_GROUP", "VFIO_CONTAINER"] {
        assert_eq!(st(&r, opt), Status::NotApplicable, "{opt}");
    }
    assert_eq!(
        r.finding("VFIO_VIRQFD").unwrap().module.as_deref(),
        Some("vfio_virqfd")
    );

    // A present symbol wins over the version: a vendor backport of IOMMUFD to 6.1.
    let backport = edit(&v61, &[("IOMMUFD", Some("m"))]);
    let r = run(&backport, Cpu::Any);
    let fd = r.finding("IOMMUFD").unwrap();
    assert_eq!((fd.status, &fd.state), (Status::Info, &State::M));
    assert!(fd.detail.contains("backport"), "{}", fd.detail);

    // From 6.2, VFIO_VIRQFD is a bool inside vfio.ko: =m there is noted.
    let r = run(&edit(BASE, &[("VFIO_VIRQFD", Some("m"))]), Cpu::Any);
    assert!(r
        .finding("VFIO_VIRQFD")
        .unwrap()
        .detail
        .contains("a bool since 6.2"));

    // No header: absences cannot be explained by the version; --kver can supply it.
    let headless: String = v67
        .lines()
        .filter(|l| !l.contains("Kernel Configuration"))
        .collect::<Vec<_>>()
        .join("\n");
    let r = run(&headless, Cpu::Any);
    assert_eq!(r.kernel.version_source, "unknown");
    assert!(r.notes.iter().any(|n| n.contains("no kernel version")));
    assert_eq!(st(&r, "AMD_IOMMU_V2"), Status::Info);
    let r = check(
        &Config::parse(&headless),
        &Options {
            cpu: Cpu::Any,
            kver: Some(KernelVersion::new(6, 8, 0)),
        },
    );
    assert_eq!(r.kernel.version_source, "kver");
    assert_eq!(st(&r, "AMD_IOMMU_V2"), Status::NotApplicable);
    // The header wins over --kver.
    let r = check(
        &Config::parse(&v67),
        &Options {
            cpu: Cpu::Any,
            kver: Some(KernelVersion::new(5, 4, 0)),
        },
    );
    assert_eq!(r.kernel.version, Some(KernelVersion::new(6, 7, 0)));
}

#[test]
fn module_versus_builtin() {
    // Tristates: =m passes and says what the initramfs needs.
    let r = run(BASE, Cpu::Any);
    let pci = r.finding("VFIO_PCI").unwrap();
    assert_eq!(
        (pci.status, pci.module.as_deref(), pci.initramfs),
        (Status::Pass, Some("vfio-pci"), true)
    );
    assert!(pci.detail.contains("initramfs"));
    let kvm = r.finding("KVM").unwrap();
    assert_eq!((kvm.module.as_deref(), kvm.initramfs), (Some("kvm"), false));
    let r = run(&edit(BASE, &[("VFIO_PCI", Some("y"))]), Cpu::Any);
    assert_eq!(r.finding("VFIO_PCI").unwrap().module, None);
    // Bools: =m is invalid (Kconfig discards it), whatever the level.
    let r = run(
        &edit(BASE, &[("IRQ_REMAP", Some("m")), ("HUGETLBFS", Some("m"))]),
        Cpu::Any,
    );
    assert_eq!(fails(&r), ["IRQ_REMAP", "HUGETLBFS"]);
    assert!(r
        .finding("IRQ_REMAP")
        .unwrap()
        .detail
        .contains("not valid for a bool"));
    let r = run(&edit(BASE, &[("VFIO_PCI_VGA", Some("m"))]), Cpu::Any);
    assert_eq!(st(&r, "VFIO_PCI_VGA"), Status::Warn);
    assert_eq!(r.verdict(), Verdict::Warn);
    // A bool satisfies a choice only as y.
    let r = run(
        &edit(
            BASE,
            &[("INTEL_IOMMU", Some("m")), ("AMD_IOMMU", Some("n"))],
        ),
        Cpu::Any,
    );
    assert_eq!(st(&r, "IOMMU_DRIVER"), Status::Fail);
    // A literal where y/m/n belongs.
    let r = run(&edit(BASE, &[("VFIO", Some("\"yes\""))]), Cpu::Any);
    assert_eq!(st(&r, "VFIO"), Status::Fail);
    // Without module support the fragment asks for =y.
    let r = run(
        &edit(BASE, &[("MODULES", Some("n")), ("VFIO_PCI", Some("n"))]),
        Cpu::Any,
    );
    assert!(
        r.fragment().lines().any(|l| l == "CONFIG_VFIO_PCI=y"),
        "{}",
        r.fragment()
    );
}

#[test]
fn cpu_vendor_rules() {
    let intel_only = edit(
        BASE,
        &[
            ("AMD_IOMMU", Some("n")),
            ("AMD_IOMMU_V2", None),
            ("KVM_AMD", Some("n")),
        ],
    );
    // any: one vendor suffices, the other's absence warns.
    let r = run(&intel_only, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Warn, "{}", r.render_human(false));
    assert_eq!(st(&r, "AMD_IOMMU"), Status::Warn);
    assert_eq!(st(&r, "KVM_AMD"), Status::Warn);
    assert_eq!(
        r.finding("IOMMU_DRIVER").unwrap().satisfied_by.as_deref(),
        Some("INTEL_IOMMU")
    );
    assert_eq!(
        r.finding("KVM_VENDOR").unwrap().satisfied_by.as_deref(),
        Some("KVM_INTEL")
    );
    // intel: the AMD options do not apply; the choices give way to the vendor's own.
    let r = run(&intel_only, Cpu::Intel);
    assert_eq!(r.verdict(), Verdict::Pass, "{}", r.render_human(false));
    assert_eq!(st(&r, "AMD_IOMMU"), Status::NotApplicable);
    assert!(r.finding("IOMMU_DRIVER").is_none() && r.finding("KVM_VENDOR").is_none());
    // amd: AMD_IOMMU and KVM_AMD are required.
    let r = run(&intel_only, Cpu::Amd);
    assert_eq!(fails(&r), ["AMD_IOMMU", "KVM_AMD"]);
    assert_eq!(st(&r, "INTEL_IOMMU"), Status::NotApplicable);
    assert_eq!(st(&r, "INTEL_IOMMU_DEFAULT_ON"), Status::NotApplicable);
    assert!(
        r.fragment().contains("CONFIG_AMD_IOMMU=y")
            && !r.fragment().contains("CONFIG_INTEL_IOMMU=y")
    );
    // No vendor at all fails the choice under any.
    let none = edit(
        &intel_only,
        &[
            ("INTEL_IOMMU", Some("n")),
            ("INTEL_IOMMU_SVM", None),
            ("INTEL_IOMMU_DEFAULT_ON", None),
        ],
    );
    let r = run(&none, Cpu::Any);
    assert_eq!(fails(&r), ["IOMMU_DRIVER"]);
    let frag = r.fragment();
    assert!(
        frag.contains("CONFIG_INTEL_IOMMU=y") && frag.contains("CONFIG_AMD_IOMMU=y"),
        "{frag}"
    );
    assert!(!frag.contains("ARM_SMMU"), "{frag}");
    // The Intel default-on check follows INTEL_IOMMU: blocked by it, not a second problem.
    assert_eq!(
        r.finding("INTEL_IOMMU_DEFAULT_ON")
            .unwrap()
            .blocked_by
            .as_deref(),
        Some("INTEL_IOMMU")
    );
    assert_eq!(Cpu::from_acpi(true, false), Cpu::Intel);
    assert_eq!(Cpu::from_acpi(false, true), Cpu::Amd);
    assert_eq!(Cpu::from_acpi(true, true), Cpu::Any);
}

#[test]
fn intel_default_and_builtin_command_line() {
    let off = edit(BASE, &[("INTEL_IOMMU_DEFAULT_ON", Some("n"))]);
    let r = run(&off, Cpu::Any);
    assert_eq!(st(&r, "INTEL_IOMMU_DEFAULT_ON"), Status::Warn);
    assert!(r.fragment().contains(
        "# suggested for warning INTEL_IOMMU_DEFAULT_ON: CONFIG_INTEL_IOMMU_DEFAULT_ON=y"
    ));
    let with_cmdline = edit(
        &off,
        &[
            ("CMDLINE_BOOL", Some("y")),
            (
                "CMDLINE",
                Some("\"quiet intel-iommu=on,igfx_off iommu=pt\""),
            ),
        ],
    );
    let r = run(&with_cmdline, Cpu::Any);
    let on = r.finding("INTEL_IOMMU_DEFAULT_ON").unwrap();
    assert_eq!(on.status, Status::Pass, "{}", on.detail);
    assert_eq!(on.satisfied_by.as_deref(), Some("cmdline:intel_iommu=on"));
    let cmd = r.finding("CMDLINE").unwrap();
    assert!(
        cmd.detail
            .contains("it sets intel-iommu=on,igfx_off iommu=pt"),
        "{}",
        cmd.detail
    );
    assert_eq!(r.verdict(), Verdict::Pass);
    // intel_iommu=off is not "on".
    let r = run(
        &edit(&with_cmdline, &[("CMDLINE", Some("\"intel_iommu=off\""))]),
        Cpu::Any,
    );
    assert_eq!(st(&r, "INTEL_IOMMU_DEFAULT_ON"), Status::Warn);
}

#[test]
fn dma_backend_alternatives() {
    // 6.6 with iommufd providing the container instead of type1.
    let fd = edit(
        BASE,
        &[
            ("VFIO_CONTAINER", Some("n")),
            ("VFIO_IOMMU_TYPE1", None),
            ("IOMMUFD", Some("y")),
            ("IOMMUFD_VFIO_CONTAINER", Some("y")),
            ("VFIO_DEVICE_CDEV", Some("n")),
        ],
    );
    let r = run(&fd, Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Pass, "{}", r.render_human(false));
    let dma = r.finding("VFIO_DMA_BACKEND").unwrap();
    assert_eq!(
        dma.satisfied_by.as_deref(),
        Some("IOMMUFD+IOMMUFD_VFIO_CONTAINER")
    );
    assert!(r
        .finding("VFIO_IOMMU_TYPE1")
        .unwrap()
        .detail
        .contains("VFIO_CONTAINER is not set"));
    // Only the cdev.
    let cdev = edit(
        &fd,
        &[
            ("IOMMUFD_VFIO_CONTAINER", Some("n")),
            ("VFIO_DEVICE_CDEV", Some("y")),
        ],
    );
    let r = run(&cdev, Cpu::Any);
    assert_eq!(
        r.finding("VFIO_DMA_BACKEND")
            .unwrap()
            .satisfied_by
            .as_deref(),
        Some("IOMMUFD+VFIO_DEVICE_CDEV")
    );
    // None: a failure, fixed by the container.
    let none = edit(
        &fd,
        &[
            ("IOMMUFD", Some("n")),
            ("IOMMUFD_VFIO_CONTAINER", None),
            ("VFIO_DEVICE_CDEV", None),
        ],
    );
    let r = run(&none, Cpu::Any);
    assert_eq!(fails(&r), ["VFIO_DMA_BACKEND"]);
    let dma = r.finding("VFIO_DMA_BACKEND").unwrap();
    assert_eq!(dma.fix, ["CONFIG_VFIO_GROUP=y", "CONFIG_VFIO_CONTAINER=y"]);
    assert!(
        dma.detail.starts_with("none of: VFIO_IOMMU_TYPE1=absent"),
        "{}",
        dma.detail
    );
}

#[test]
fn non_x86_architecture() {
    let arm = "\
# Linux/arm64 6.6.0 Kernel Configuration
CONFIG_ARM64=y
CONFIG_64BIT=y
CONFIG_MMU=y
CONFIG_MODULES=y
CONFIG_PCI=y
CONFIG_VIRTUALIZATION=y
CONFIG_KVM=y
CONFIG_IOMMU_SUPPORT=y
CONFIG_IOMMU_API=y
CONFIG_ARM_SMMU_V3=y
CONFIG_PCI_MSI=y
CONFIG_ARM_GIC_V3=y
CONFIG_ARM_GIC_V3_ITS=y
CONFIG_VFIO=m
CONFIG_VFIO_GROUP=y
CONFIG_VFIO_CONTAINER=y
CONFIG_VFIO_IOMMU_TYPE1=m
CONFIG_VFIO_PCI=m
CONFIG_HUGETLBFS=y
CONFIG_HUGETLB_PAGE=y
";
    let r = run(arm, Cpu::Intel);
    assert_eq!(
        r.kernel.arch.as_ref().map(kernel_config::Arch::name),
        Some("arm64")
    );
    assert_eq!(r.verdict(), Verdict::Pass, "{}", r.render_human(false));
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("--cpu intel does not apply to this arm64 config")),
        "{:?}",
        r.notes
    );
    for opt in [
        "IRQ_REMAP",
        "INTEL_IOMMU",
        "AMD_IOMMU",
        "KVM_INTEL",
        "KVM_VENDOR",
        "VFIO_PCI_VGA",
    ] {
        let f = r.finding(opt).unwrap();
        assert_eq!(f.status, Status::NotApplicable, "{opt}");
    }
    assert!(r
        .finding("IRQ_REMAP")
        .unwrap()
        .detail
        .contains("only on x86_64"));
    // No CPU vendor choice on arm64: the SMMU row carries the IOMMU requirement.
    assert_eq!(st(&r, "IOMMU_DRIVER"), Status::NotApplicable);
    assert_eq!(
        r.finding("ARM_SMMU_V3").unwrap().satisfied_by.as_deref(),
        Some("ARM_SMMU_V3")
    );
    // Without an SMMU the fix is the SMMUv3 driver.
    let r = run(&edit(arm, &[("ARM_SMMU_V3", Some("n"))]), Cpu::Any);
    assert_eq!(fails(&r), ["ARM_SMMU_V3"]);
    assert_eq!(
        r.finding("ARM_SMMU_V3").unwrap().fix,
        ["CONFIG_ARM_SMMU_V3=y"]
    );
    // An architecture the table knows no IOMMU driver for: n/a, not a false failure.
    let mips = "# Linux/mips 6.6.0 Kernel Configuration\nCONFIG_MIPS=y\nCONFIG_IOMMU_SUPPORT=y\n";
    let r = run(mips, Cpu::Any);
    assert_eq!(st(&r, "IOMMU_DRIVER"), Status::NotApplicable);
    // 32-bit x86: Intel's driver exists, AMD's and IRQ_REMAP do not.
    let i386 = edit(
        BASE,
        &[
            ("X86_64", Some("n")),
            ("64BIT", Some("n")),
            ("X86_32", Some("y")),
        ],
    );
    let r = run(&i386, Cpu::Any);
    assert_eq!(
        r.kernel.arch.as_ref().map(kernel_config::Arch::name),
        Some("i386")
    );
    assert_eq!(st(&r, "IRQ_REMAP"), Status::NotApplicable);
    assert_eq!(st(&r, "AMD_IOMMU"), Status::NotApplicable);
    assert_eq!(st(&r, "INTEL_IOMMU"), Status::Pass);
}

#[test]
fn avoid_and_derived() {
    let r = run(&edit(BASE, &[("TRIM_UNUSED_KSYMS", Some("y"))]), Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Warn);
    let trim = r.finding("TRIM_UNUSED_KSYMS").unwrap();
    assert_eq!(trim.status, Status::Warn);
    assert!(trim.reason.contains("vendor-reset"));
    assert!(
        r.fragment()
            .contains("# CONFIG_TRIM_UNUSED_KSYMS is not set"),
        "{}",
        r.fragment()
    );
    let r = run(&edit(BASE, &[("TRIM_UNUSED_KSYMS", None)]), Cpu::Any);
    assert_eq!(st(&r, "TRIM_UNUSED_KSYMS"), Status::Pass);
    // HUGETLB_PAGE always equals HUGETLBFS.
    let r = run(&edit(BASE, &[("HUGETLB_PAGE", Some("n"))]), Cpu::Any);
    assert_eq!(st(&r, "HUGETLB_PAGE"), Status::Warn);
    assert!(r
        .finding("HUGETLB_PAGE")
        .unwrap()
        .detail
        .contains("hand-edited"));
}

#[test]
fn not_a_config_at_all() {
    let r = run("hello\nworld\n", Cpu::Any);
    assert_eq!(r.verdict(), Verdict::Fail);
    assert_eq!(r.warnings.len(), 2);
    assert!(r.notes.iter().any(|n| n.contains("no CONFIG_ line")));
    let cfg = Config::from_bytes(&[0u8, 159, 146, 150, 10, 0xff]).unwrap();
    assert!(cfg.is_empty());
    // A damaged gzip stream is an error, not an empty config.
    assert!(Config::from_bytes(&[0x1f, 0x8b, 8, 0, 1, 2]).is_err());
}

#[test]
fn outputs_are_consistent() {
    let r = run(
        &edit(
            BASE,
            &[("IRQ_REMAP", Some("n")), ("VFIO_PCI_VGA", Some("n"))],
        ),
        Cpu::Any,
    )
    .with_source("x/.config");
    let human = r.render_human(false);
    assert!(
        human
            .starts_with("Kernel config: x/.config\nKernel: Linux 6.6.30, x86_64; CPU vendor: any"),
        "{human}"
    );
    assert!(human.contains(
        "menu: Device Drivers -> IOMMU Hardware Support -> Support for Interrupt Remapping"
    ));
    assert!(!human.contains('\x1b'));
    assert!(r.render_human(true).contains("\x1b[1;31mFAIL"));
    assert!(human.trim_end().ends_with(r.summary()));
    assert_eq!(
        r.summary(),
        "FAIL: set CONFIG_IRQ_REMAP=y; 1 warning: VFIO_PCI_VGA (Linux 6.6.30, x86_64, cpu any)"
    );
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["source"], "x/.config");
    assert_eq!(v["kernel"]["version"], "6.6.30");
    let irq = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["option"] == "IRQ_REMAP")
        .unwrap();
    assert_eq!(irq["state"], "n");
    assert_eq!(irq["status"], "fail");
    assert_eq!(irq["level"], "required");
    // The fragment is a valid config: no line the parser would warn about, and
    // every "# CONFIG_" line is an exact "is not set".
    let frag = r.fragment();
    let parsed = Config::parse(&frag);
    assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
    assert_eq!(parsed.get("IRQ_REMAP"), State::Y);
    assert_eq!(
        parsed.get("VFIO_PCI_VGA"),
        State::Absent,
        "warnings are only suggested:\n{frag}"
    );
}

#[test]
fn fragment_repairs_what_needs_no_select() {
    let broken = edit(
        BASE,
        &[
            ("IRQ_REMAP", Some("n")),
            ("KVM", Some("n")),
            ("KVM_INTEL", None),
            ("KVM_AMD", None),
            ("KVM_VFIO", None),
        ],
    );
    let r = run(&broken, Cpu::Any);
    assert_eq!(fails(&r), ["IRQ_REMAP", "KVM"]);
    let merged = format!("{broken}{}", r.fragment());
    // KVM_VFIO is hidden (selected by KVM): what Kconfig would select, we add by hand.
    let merged = format!("{merged}CONFIG_KVM_VFIO=y\n");
    let fixed = run(&merged, Cpu::Any);
    assert_eq!(
        fixed.verdict(),
        Verdict::Pass,
        "{}",
        fixed.render_human(false)
    );
}

/// Hostile input: random bytes, random mixes of config-like fragments, and lines
/// cut anywhere never panic, and the check runs on whatever was parsed.
#[test]
fn random_input_never_panics() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 14] = [
        b"CONFIG_",
        b"VFIO",
        b"=",
        b"y",
        b"m",
        b"n",
        b"\n",
        b"# ",
        b" is not set",
        b"\"",
        b"\\",
        b"\r",
        b"\xff\xfe",
        b"# Linux/x86 6.",
    ];
    for round in 0..1000 {
        let mut bytes = Vec::new();
        for _ in 0..(next() % 64) {
            if round % 2 == 0 {
                bytes.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            } else {
                bytes.push((next() & 0xff) as u8);
            }
        }
        if let Ok(cfg) = Config::from_bytes(&bytes) {
            let r = check(&cfg, &Options::default());
            let _ = (r.render_human(true), r.to_json(), r.fragment());
        }
    }
    // Every prefix of a real-looking config.
    for cut in 0..BASE.len() {
        if let Some(prefix) = BASE.get(..cut) {
            let _ = check(&Config::parse(prefix), &Options::default());
        }
    }
}

/// What the report tells a user to do names Kconfig options, never a rule's label,
/// and no internal token or doubled state reaches the text.
#[test]
fn wording_names_options_to_set() {
    let r = run(
        &edit(
            BASE,
            &[
                ("KVM_INTEL", None),
                ("KVM_AMD", None),
                ("INTEL_IOMMU", None),
                ("AMD_IOMMU", None),
                ("TRIM_UNUSED_KSYMS", None),
            ],
        ),
        Cpu::Any,
    );
    let summary = r.summary();
    assert!(summary.starts_with("FAIL: set "), "{summary}");
    assert!(
        summary.contains("CONFIG_KVM_INTEL=m or CONFIG_KVM_AMD=m")
            || summary.contains("CONFIG_KVM_INTEL=y or CONFIG_KVM_AMD=y"),
        "{summary}"
    );
    assert!(
        summary.contains("CONFIG_INTEL_IOMMU=y or CONFIG_AMD_IOMMU=y"),
        "{summary}"
    );
    let human = r.render_human(false);
    for label in ["KVM_VENDOR", "IOMMU_DRIVER", "VFIO_DMA_BACKEND"] {
        assert!(!human.contains(label), "{label} in\n{human}");
        assert!(!r.fragment().contains(label), "{label} in the fragment");
    }
    assert!(human.contains("set:  CONFIG_KVM_INTEL="), "{human}");
    assert!(!human.contains("absent: not in effect"), "{human}");
    let trim = r.finding("TRIM_UNUSED_KSYMS").unwrap();
    assert_eq!(trim.detail, "not in effect");
    let ok = run(BASE, Cpu::Any);
    assert!(ok.summary().starts_with("PASS"), "{}", ok.summary());
    // A command-line alternative in words, not as the rule's `cmdline:` token.
    let r = run(
        &edit(BASE, &[("INTEL_IOMMU_DEFAULT_ON", Some("n"))]),
        Cpu::Any,
    );
    let human = r.render_human(false);
    assert!(!human.contains("cmdline:"), "{human}");
    assert!(
        human.contains("intel_iommu=on not in the built-in command line"),
        "{human}"
    );
}
