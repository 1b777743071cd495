//! `check` over fixture machines: which IOMMU, from which evidence, and the boot
//! verdict. Each test states the kernel text it relies on (see `check_support`).

mod check_support;

use check_support::*;
use vfio_early::cmd::check;
use vfio_early::cmdline::Cmdline;
use vfio_early::host::Host;
use vfio_early::iommu::{self, Evidence, Vendor};
use vfio_early::pci;
use vfio_early::report::{Finding, Status};

fn find<'a>(f: &'a [Finding], check: &str) -> &'a Finding {
    f.iter()
        .find(|x| x.check == check)
        .unwrap_or_else(|| panic!("no {check} finding in {f:#?}"))
}

#[test]
fn intel_boot_is_proven_by_sysfs_and_log() {
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    t.file("dev/kmsg", &intel_log());
    t.cmdline("BOOT_IMAGE=/vmlinuz console=ttyS0 intel_iommu=on iommu=pt panic=-1\n");
    let out = check::check(&Host::new(t.root()), None);
    let f = &out.findings;
    let vendor = find(f, "iommu vendor");
    assert_eq!(vendor.status, Status::Pass);
    assert!(
        vendor.detail.contains("Intel VT-d") && vendor.detail.contains("DMAR"),
        "{}",
        vendor.detail
    );
    let on = find(f, "iommu");
    assert_eq!(on.status, Status::Pass);
    assert!(on.detail.contains("dmar0"), "{}", on.detail);
    assert!(on.detail.contains("6 IOMMU groups"), "{}", on.detail);
    assert!(
        on.detail
            .contains("Intel(R) Virtualization Technology for Directed I/O"),
        "{}",
        on.detail
    );
    let ir = find(f, "interrupt remapping");
    assert_eq!(ir.status, Status::Pass);
    assert!(ir.detail.contains("IR-IO-APIC"), "{}", ir.detail);
    assert_eq!(find(f, "cmdline iommu").status, Status::Pass);
    assert_eq!(find(f, "cmdline iommu=pt").status, Status::Pass);
    // No config here: nothing fails.
    assert_eq!(out.exit_status(), 0, "{f:#?}");
}

#[test]
fn vendor_comes_from_acpi_not_from_log_strings() {
    // Intel boots print an AMD-Vi line; the AMD-Vi string alone never decides.
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    t.file("dev/kmsg", &intel_log());
    let ev = Evidence::read(&Host::new(t.root()));
    assert_eq!(ev.vendor(), Some(Vendor::Intel));
    assert_eq!(ev.acpi, [Vendor::Intel]);

    let a = q35(true);
    iommu_on(&a, "IVRS", "ivhd0");
    a.file("dev/kmsg", &amd_log());
    a.cmdline("BOOT_IMAGE=/vmlinuz root=UUID=XYZ ro quiet iommu=on amd_iommu=on\n");
    let out = check::check(&Host::new(a.root()), None);
    let f = &out.findings;
    assert!(find(f, "iommu vendor").detail.contains("AMD-Vi"));
    assert!(find(f, "iommu")
        .detail
        .contains("AMD-Vi: Found IOMMU at 0000:00:00.2 cap 0x40"));
    // amd_iommu=on and iommu=on: said, harmlessly.
    let amd = find(f, "cmdline amd_iommu");
    assert_eq!(amd.status, Status::Info);
    assert!(amd.detail.contains("AMD-Vi: Unknown option - 'on'"));
    assert_eq!(find(f, "cmdline iommu=").status, Status::Info);
    assert_eq!(find(f, "cmdline iommu").status, Status::Pass);
    assert_eq!(out.exit_status(), 0, "{f:#?}");
}

#[test]
fn no_iommu_fails_with_reason_and_fix() {
    // Firmware with a DMAR table, kernel without intel_iommu=on: no unit, no group.
    let t = q35(false);
    t.file("sys/firmware/acpi/tables/DMAR", "");
    t.file("sys/firmware/acpi/tables/FACP", "");
    t.file("proc/interrupts", INTERRUPTS_PLAIN);
    t.file("dev/kmsg", &no_iommu_log());
    t.cmdline("BOOT_IMAGE=/vmlinuz console=ttyS0 panic=-1\n");
    t.config(CARD_CONFIG);
    let out = check::check(&Host::new(t.root()), None);
    let f = &out.findings;
    let on = find(f, "iommu");
    assert_eq!(on.status, Status::Fail);
    assert!(
        on.hint.as_deref().unwrap().contains("intel_iommu=on"),
        "{on:?}"
    );
    assert_eq!(find(f, "interrupt remapping").status, Status::NotApplicable);
    let cl = find(f, "cmdline iommu");
    assert_eq!(cl.status, Status::Fail);
    // The failed probe is a finding with the right hint.
    let probe = f
        .iter()
        .find(|x| x.check == "kernel log" && x.detail.contains("failed with error -22"))
        .unwrap();
    assert_eq!(probe.status, Status::Fail);
    assert!(probe.hint.as_deref().unwrap().contains("no IOMMU group"));
    assert_eq!(out.exit_status(), 1);
}

#[test]
fn firmware_without_iommu_table_says_enable_it_in_firmware() {
    let t = q35(false);
    t.file("sys/firmware/acpi/tables/FACP", "");
    t.file("proc/interrupts", INTERRUPTS_PLAIN);
    t.file("dev/kmsg", &no_iommu_log());
    let out = check::check(&Host::new(t.root()), None);
    let on = find(&out.findings, "iommu");
    assert_eq!(on.status, Status::Fail);
    assert!(on.detail.contains("no IOMMU table"), "{}", on.detail);
    assert!(on.hint.as_deref().unwrap().contains("firmware settings"));
    assert_eq!(find(&out.findings, "iommu vendor").status, Status::Fail);
}

#[test]
fn echo_line_alone_is_not_proof() {
    // `DMAR: IOMMU enabled` is printed when intel_iommu=on is parsed, even when the
    // IOMMU never comes up.
    let t = q35(false);
    t.file("sys/firmware/acpi/tables/DMAR", "");
    t.file("proc/interrupts", INTERRUPTS_PLAIN);
    t.file(
        "dev/kmsg",
        &kmsg(0, &[LINUX, (6, "DMAR: IOMMU enabled", None)]),
    );
    t.cmdline("intel_iommu=on\n");
    let out = check::check(&Host::new(t.root()), None);
    let on = find(&out.findings, "iommu");
    assert_eq!(on.status, Status::Fail);
    assert!(on.detail.contains("only echoes"), "{}", on.detail);
}

#[test]
fn rotated_log_with_sysfs_evidence_passes() {
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    t.file("dev/kmsg", &rotated_log());
    t.cmdline("intel_iommu=on\n");
    let out = check::check(&Host::new(t.root()), None);
    let on = find(&out.findings, "iommu");
    assert_eq!(on.status, Status::Pass);
    assert!(on.detail.contains("rotated"), "{}", on.detail);
    assert!(on.detail.contains("sysfs"), "{}", on.detail);
    // Interrupt remapping still proven, from /proc/interrupts.
    assert_eq!(
        find(&out.findings, "interrupt remapping").status,
        Status::Pass
    );
    assert_eq!(out.exit_status(), 0);
}

#[test]
fn interrupt_remapping_off_warns() {
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    t.file("proc/interrupts", INTERRUPTS_PLAIN);
    t.file("dev/kmsg", &rotated_log());
    t.cmdline("intel_iommu=on\n");
    let out = check::check(&Host::new(t.root()), None);
    let ir = find(&out.findings, "interrupt remapping");
    assert_eq!(ir.status, Status::Warn);
    assert!(ir
        .hint
        .as_deref()
        .unwrap()
        .contains("allow_unsafe_interrupts"));
}

#[test]
fn boot_verdict_is_one_line_with_level() {
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    t.file("dev/kmsg", &intel_log());
    let host = Host::new(t.root());
    let (level, line) =
        iommu::boot_verdict(&host, &Cmdline::parse("intel_iommu=on"), &pci::scan(&host));
    assert_eq!(level, log::Level::Info, "{line}");
    assert!(!line.contains('\n'));
    // sysfs answers every question (units, groups, the DMAR table, IR- chips): the
    // log is not read.
    assert!(
        line.contains("Intel VT-d on (proof: sysfs; 6 groups)"),
        "{line}"
    );
    assert!(line.contains("interrupt remapping on"), "{line}");
    assert!(line.contains("command line ok"), "{line}");

    let (level, line) = iommu::boot_verdict(
        &host,
        &Cmdline::parse("intel_iommu=on pcie_acs_override=downstream"),
        &pci::scan(&host),
    );
    assert_eq!(level, log::Level::Warn);
    assert!(line.contains("pcie_acs_override"), "{line}");

    let off = q35(false);
    off.file("sys/firmware/acpi/tables/IVRS", "");
    off.file("dev/kmsg", &no_iommu_log());
    off.file("proc/interrupts", INTERRUPTS_PLAIN);
    let off_host = Host::new(off.root());
    let (level, line) = iommu::boot_verdict(
        &off_host,
        &Cmdline::parse("amd_iommu=off"),
        &pci::scan(&off_host),
    );
    assert_eq!(level, log::Level::Error);
    assert!(
        line.contains("IOMMU off") && line.contains("amd_iommu=off"),
        "{line}"
    );
}

#[test]
fn the_boot_reads_the_log_only_when_sysfs_leaves_a_question() {
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    // A log that cannot be read: the boot never tries while sysfs answers.
    let _ = std::fs::remove_file(t.root().join("dev/kmsg"));
    std::fs::create_dir_all(t.root().join("dev/kmsg")).unwrap();
    let host = Host::new(t.root());
    let ev = Evidence::read_lazily(&host);
    assert!(!ev.sysfs_leaves_a_question());
    assert_eq!(ev.log.error, None, "the log was read");
    assert!(ev.is_on() && ev.log.proof.is_empty());

    // No IR- chip in /proc/interrupts: whether interrupts are remapped is open, so the
    // log is read (once), and its DMAR-IR line answers.
    t.file("proc/interrupts", INTERRUPTS_PLAIN);
    let ev = Evidence::read_lazily(&host);
    assert!(ev.sysfs_leaves_a_question());
    assert!(ev.log.error.is_some(), "the log was not read");
    std::fs::remove_dir(t.root().join("dev/kmsg")).unwrap();
    t.file("dev/kmsg", &intel_log());
    let (level, line) =
        iommu::boot_verdict(&host, &Cmdline::parse("intel_iommu=on"), &pci::scan(&host));
    assert_eq!(level, log::Level::Info, "{line}");
    assert!(
        line.contains("(proof: sysfs + kernel log; 6 groups), interrupt remapping on"),
        "{line}"
    );
    // The full evidence (`check`) always reads it, and agrees.
    let full = Evidence::read(&host);
    assert_eq!(full.log, Evidence::read_lazily(&host).log);
}

#[test]
fn kernel_config_through_the_checker() {
    use testing::RELEASE;
    // Debian 6.1: everything needed, and VT-d on by default (INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y).
    let t = q35(true);
    iommu_on(&t, "DMAR", "dmar0");
    t.file("dev/kmsg", &rotated_log());
    t.cmdline("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n");
    t.file(
        &format!("boot/config-{RELEASE}"),
        include_str!("../../tests/kconfig/debian12_linux-6.1.192-2_amd64.config"),
    );
    let out = check::check(&Host::new(t.root()), None);
    let k = find(&out.findings, "kernel config");
    assert_eq!(k.status, Status::Pass, "{k:?}");
    assert!(
        k.detail.starts_with(&format!("/boot/config-{RELEASE}: ")),
        "{}",
        k.detail
    );
    let c = find(&out.findings, "cmdline iommu");
    assert_eq!(c.status, Status::Pass);
    assert!(
        c.detail.contains("CONFIG_INTEL_IOMMU_DEFAULT_ON"),
        "{}",
        c.detail
    );

    // Gentoo 5.15 without IRQ_REMAP: fails, pointing at check-kconfig.
    t.file(
        &format!("boot/config-{RELEASE}"),
        include_str!("../../tests/kconfig/gentoo_5.15.32-gentoo-r1_adippl-kvm.config"),
    );
    let out = check::check(&Host::new(t.root()), None);
    let k = find(&out.findings, "kernel config");
    assert_eq!(k.status, Status::Fail, "{k:?}");
    assert!(k.detail.contains("IRQ_REMAP"), "{}", k.detail);
    assert!(k.hint.as_deref().unwrap().contains("check-kconfig"));
    assert_eq!(out.exit_status(), 1);

    // No config anywhere: said, not failed.
    std::fs::remove_file(t.path(&format!("boot/config-{RELEASE}"))).unwrap();
    let out = check::check(&Host::new(t.root()), None);
    assert_eq!(find(&out.findings, "kernel config").status, Status::Info);
}
