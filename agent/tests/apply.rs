//! `apply` over fixture roots: the generator found from what is installed, the
//! commands per kernel, the planner's veto, and never running anything outside `/`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use testing::{seed_machine, TestSysfs, RELEASE};
use vfio_early::cmd::apply::{commands, detect, integration_problems, kernels, Generator};
use vfio_early::host::Host;
use vfio_early::machine::mkinitcpio_hooks;

const GPU_SLOT: &str = "[[device]]\naddress = \"0000:01:00.0\"\nfunctions = \"slot\"\n";
const OLD: &str = "6.0.0-old-amd64";

fn run(t: &TestSysfs, args: &[&str]) -> Output {
    t.run(env!("CARGO_BIN_EXE_vfio-early"), args)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An executable that leaves a marker under the root if anyone ever runs it.
fn tripwire(t: &TestSysfs, rel: &str) {
    let marker = t.path("RAN");
    t.file(
        rel,
        &format!("#!/bin/sh\necho \"$0 $*\" >> '{}'\n", marker.display()),
    );
    fs::set_permissions(t.path(rel), fs::Permissions::from_mode(0o755)).expect("chmod tripwire");
}

/// The seed machine with a valid config, two kernels, the binary installed, and the
/// given generator with the vfio-early integration for it.
fn machine(generators: &[Generator]) -> TestSysfs {
    let t = seed_machine(true);
    t.config(GPU_SLOT);
    t.file(&format!("lib/modules/{OLD}/modules.dep"), "");
    tripwire(&t, "usr/bin/vfio-early");
    for g in generators {
        match g {
            Generator::Dracut => {
                tripwire(&t, "usr/bin/dracut");
                t.file("usr/lib/dracut/dracut-functions.sh", "");
                t.file("usr/lib/dracut/modules.d/90vfio-early/module-setup.sh", "");
            }
            Generator::Mkinitcpio => {
                tripwire(&t, "usr/bin/mkinitcpio");
                t.file("usr/lib/initcpio/functions", "");
                t.file("usr/lib/initcpio/install/vfio-early", "");
                t.file("usr/lib/initcpio/hooks/vfio-early", "");
                t.file("etc/mkinitcpio.conf", "MODULES=()\nHOOKS=(base systemd vfio-early autodetect udev modconf block filesystems fsck)\n");
                t.file(
                    "etc/mkinitcpio.d/linux.preset",
                    "ALL_kver=\"/boot/vmlinuz-linux\"\nPRESETS=('default')\n",
                );
                t.file(&format!("usr/lib/modules/{RELEASE}/pkgbase"), "linux\n");
            }
            Generator::InitramfsTools => {
                tripwire(&t, "usr/sbin/update-initramfs");
                t.file("usr/share/initramfs-tools/hook-functions", "");
                t.file("usr/share/initramfs-tools/hooks/vfio-early", "");
                t.file("usr/share/initramfs-tools/scripts/init-top/vfio-early", "");
            }
        }
    }
    t
}

fn assert_nothing_ran(t: &TestSysfs) {
    assert!(!t.path("RAN").exists(), "ran: {}", t.read("RAN"));
}

#[test]
fn dracut_rebuilds_every_kernel_and_says_which() {
    let t = machine(&[Generator::Dracut]);
    let o = run(&t, &["apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let s = out(&o);
    assert!(
        s.contains("plans cleanly: vfio-pci gets 0000:01:00.0 (group 1), 0000:01:00.1 (group 1)"),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "initramfs generator: dracut (/usr/bin/dracut); kernels: {OLD}, {RELEASE} (running)"
        )),
        "{s}"
    );
    assert!(
        s.contains(&format!("would run: dracut --force --kver {OLD}\n")),
        "{s}"
    );
    assert!(
        s.contains(&format!("would run: dracut --force --kver {RELEASE}\n")),
        "{s}"
    );
    assert!(s.contains("nothing is run"), "{s}");
    assert_nothing_ran(&t);

    let o = run(&t, &["apply", "--dry-run", "--kver", OLD]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains(&format!("would run: dracut --force --kver {OLD}\n")));
    assert!(
        !out(&o).contains(&format!("--kver {RELEASE}")),
        "{}",
        out(&o)
    );
    assert_nothing_ran(&t);

    let o = run(&t, &["apply", "--kver", "9.9.9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains(&format!("installed: {OLD}, {RELEASE}")),
        "{}",
        err(&o)
    );
}

#[test]
fn mkinitcpio_uses_presets_and_needs_the_hook_listed() {
    let t = machine(&[Generator::Mkinitcpio]);
    let o = run(&t, &["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains("would run: mkinitcpio -P\n"),
        "{}",
        out(&o)
    );
    let o = run(&t, &["apply", "--dry-run", "--kver", RELEASE]);
    assert!(
        out(&o).contains("would run: mkinitcpio -p linux\n"),
        "{}",
        out(&o)
    );
    let o = run(&t, &["apply", "--dry-run", "--kver", OLD]);
    assert!(
        out(&o).contains(&format!(
            "would run: mkinitcpio -k {OLD} -g /boot/initramfs-{OLD}.img\n"
        )),
        "{}",
        out(&o)
    );

    // Left out of HOOKS, the image would not carry it: say so, exit 1.
    t.file(
        "etc/mkinitcpio.conf",
        "HOOKS=(base systemd autodetect udev modconf block filesystems fsck)\n",
    );
    let o = run(&t, &["apply"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("vfio-early is not in HOOKS"),
        "{}",
        err(&o)
    );
    // A drop-in that adds it is read after the main file.
    t.file(
        "etc/mkinitcpio.conf.d/vfio.conf",
        "HOOKS=(base systemd vfio-early udev)\n",
    );
    assert_eq!(run(&t, &["apply"]).status.code(), Some(0));
    assert_nothing_ran(&t);
}

#[test]
fn initramfs_tools_updates_all_or_one() {
    let t = machine(&[Generator::InitramfsTools]);
    let o = run(&t, &["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains("initramfs generator: initramfs-tools (/usr/sbin/update-initramfs)"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("would run: update-initramfs -u -k all\n"),
        "{}",
        out(&o)
    );
    let o = run(&t, &["apply", "--dry-run", "--kver", RELEASE]);
    assert!(
        out(&o).contains(&format!("would run: update-initramfs -u -k {RELEASE}\n")),
        "{}",
        out(&o)
    );

    // The integration missing: named, exit 1.
    fs::remove_file(t.path("usr/share/initramfs-tools/scripts/init-top/vfio-early")).unwrap();
    let o = run(&t, &["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("scripts/init-top/vfio-early is missing"),
        "{}",
        err(&o)
    );
    assert_nothing_ran(&t);
}

#[test]
fn several_generators_need_a_choice() {
    let t = machine(&[Generator::Dracut, Generator::InitramfsTools]);
    let o = run(&t, &["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("dracut, initramfs-tools") && err(&o).contains("--generator"),
        "{}",
        err(&o)
    );
    let o = run(
        &t,
        &["apply", "--dry-run", "--generator", "initramfs-tools"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("update-initramfs -u -k all"));
    let o = run(&t, &["apply", "--generator", "mkinitcpio"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("mkinitcpio is not installed"),
        "{}",
        err(&o)
    );

    // Of several, the only one configured in /etc builds the images.
    t.file("etc/initramfs-tools/initramfs.conf", "MODULES=most\n");
    let o = run(&t, &["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains("update-initramfs -u -k all"),
        "{}",
        out(&o)
    );
    t.file("etc/dracut.conf.d/10-local.conf", "hostonly=yes\n");
    assert_eq!(
        run(&t, &["apply", "--dry-run"]).status.code(),
        Some(2),
        "both configured: ask"
    );

    // A leftover binary without its package's files does not count.
    let t = machine(&[Generator::Dracut]);
    tripwire(&t, "usr/sbin/update-initramfs");
    assert_eq!(
        detect(&Host::new(t.root()), None).unwrap().0,
        Generator::Dracut
    );
    let none = TestSysfs::new();
    assert_eq!(
        detect(&Host::new(none.root()), None).unwrap_err(),
        vfio_early::generator::DetectError::NoneFound
    );
}

#[test]
fn the_planner_vetoes_before_anything_is_rebuilt() {
    let t = machine(&[Generator::Dracut]);
    // The boot display, not allowed: refused at boot, so not rebuilt now.
    t.config("[[device]]\naddress = \"0000:00:01.0\"\n");
    let o = run(&t, &["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("boot display") && err(&o).contains("not rebuilt"),
        "{}",
        err(&o)
    );
    assert!(!out(&o).contains("would run"), "{}", out(&o));
    let o = run(&t, &["apply", "--dry-run", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("would run: dracut"), "{}", out(&o));

    // A config error: exit 2, with file:line:col.
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nfunction = \"slot\"\n");
    let o = run(&t, &["apply", "--dry-run", "--force"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("vfio-early.toml:3:"), "{}", err(&o));

    // No config: the image will carry none; rebuilding is still right.
    fs::remove_file(t.path("etc/vfio-early.toml")).unwrap();
    let o = run(&t, &["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("no config at"), "{}", out(&o));
    assert_nothing_ran(&t);
}

#[test]
fn library_pieces() {
    let t = machine(&[Generator::Dracut]);
    let host = Host::new(t.root());
    assert_eq!(kernels(&host), [OLD, RELEASE]);
    assert!(integration_problems(&host, Generator::Dracut).is_empty());
    fs::remove_file(t.path("usr/bin/vfio-early")).unwrap();
    let p = integration_problems(&host, Generator::Dracut);
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("/usr/bin/vfio-early is missing"), "{p:?}");
    let ks = vec![OLD.to_owned()];
    assert_eq!(
        commands(&host, Generator::Dracut, &ks, None),
        [["dracut", "--force", "--kver", OLD]]
    );

    // HOOKS: bash arrays over lines, comments, the last assignment wins.
    let conf = "# HOOKS=(nothing)\nHOOKS=(base udev)\nHOOKS=(base systemd # the init\n  vfio-early\n  'udev' )\n";
    assert_eq!(
        mkinitcpio_hooks(conf).unwrap(),
        ["base", "systemd", "vfio-early", "udev"]
    );
    assert_eq!(mkinitcpio_hooks("MODULES=()\n"), None);
}
