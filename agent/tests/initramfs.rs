//! `vfio-early initramfs`, the one place the three build hooks ask: its steps, the
//! files it writes into the image tree, and that the backstop's softdep lines come
//! from the config and the target kernel, never from this machine's devices.

#![allow(clippy::unwrap_used)]

use std::process::Output;

use testing::{Dev, TestSysfs};

const KVER: &str = "6.1.0-test";

fn run(t: &TestSysfs, args: &[&str]) -> Output {
    t.run(env!("CARGO_BIN_EXE_vfio-early"), args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A target kernel with vfio-pci built in and a bochs module with its alias.
fn kernel(t: &TestSysfs) {
    let m = format!("lib/modules/{KVER}");
    t.file(
        &format!("{m}/modules.builtin"),
        "kernel/drivers/vfio/vfio.ko\nkernel/drivers/vfio/pci/vfio-pci.ko\nkernel/drivers/vfio/pci/vfio-pci-core.ko\n",
    );
    t.file(&format!("{m}/kernel/drivers/gpu/drm/tiny/bochs.ko"), "");
    t.file(
        &format!("{m}/modules.alias"),
        "alias pci:v00001234d00001111sv*sd*bc*sc*i* bochs\nalias pci:v*d*sv*sd*bc0Csc03i30* xhci_pci\n",
    );
}

fn steps(t: &TestSysfs, generator: &str, extra: &[&str]) -> (String, String) {
    let out = t.path("image");
    let kmoddir = t.path(&format!("lib/modules/{KVER}"));
    let mut args = vec![
        "initramfs",
        "--generator",
        generator,
        "--kver",
        KVER,
        "--kmoddir",
        kmoddir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = run(t, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    (text(&o.stdout), text(&o.stderr))
}

#[test]
fn every_generator_gets_the_same_decisions_as_steps() {
    let t = TestSysfs::new();
    kernel(&t);
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nid = \"1234:1111\"\nfunctions = \"slot\"\n");
    // This machine has no such device: the softdep line comes from the config's id.
    let (dracut, _) = steps(&t, "dracut", &[]);
    let config = t.path("etc/vfio-early.toml");
    assert!(
        dracut.contains(&format!("file {} /etc/vfio-early.toml\n", config.display())),
        "{dracut}"
    );
    assert!(
        dracut
            .lines()
            .any(|l| l.starts_with("binary /") && l.ends_with(" /usr/bin/vfio-early")),
        "{dracut}"
    );
    assert!(dracut.ends_with("hook pre-udev 00\n"), "{dracut}");
    assert!(
        !dracut.contains("module "),
        "vfio-pci is built in: {dracut}"
    );
    let conf = t.read("image/etc/modprobe.d/vfio-early.conf");
    assert!(conf.contains("softdep bochs pre: vfio-pci\n"), "{conf}");
    assert!(!conf.contains("xhci_pci"), "{conf}");
    assert!(
        conf.contains("built into this kernel: no install line"),
        "{conf}"
    );
    assert!(t
        .read("image/usr/lib/vfio-early/modules.alias")
        .contains("alias pci:v00001234d00001111sv*sd*bc*sc*i* bochs\n"));

    let (busybox, _) = steps(&t, "mkinitcpio", &["--hooks", "base udev vfio-early"]);
    assert!(busybox.ends_with("runscript\n"), "{busybox}");
    let (systemd, _) = steps(
        &t,
        "mkinitcpio",
        &[
            "--hooks",
            "base systemd vfio-early",
            "--unit",
            "/u/vfio-early.service",
        ],
    );
    assert!(!systemd.contains("runscript"), "{systemd}");
    assert!(systemd.contains("file /u/vfio-early.service /usr/lib/systemd/system/vfio-early.service\nsymlink /usr/lib/systemd/system/sysinit.target.wants/vfio-early.service ../vfio-early.service\n"), "{systemd}");
    let (itools, _) = steps(&t, "initramfs-tools", &[]);
    assert!(
        !itools.contains("hook ") && !itools.contains("runscript"),
        "{itools}"
    );

    // The boot-only build goes in when it is installed.
    let boot = t.path("boot-bin");
    t.file("boot-bin", "#!/bin/sh\n");
    std::fs::set_permissions(&boot, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (s, _) = steps(&t, "dracut", &["--boot-bin", boot.to_str().unwrap()]);
    assert!(
        s.contains(&format!("binary {} /usr/bin/vfio-early\n", boot.display())),
        "{s}"
    );
}

#[test]
fn problems_are_warnings_and_the_image_is_built_anyway() {
    let t = TestSysfs::new();
    kernel(&t);
    // A config error: its line, then what it means; the hook is still installed.
    t.config("[[device]]\naddress = \"0000:01:00.0\"\nbogus = 1\n");
    let (s, _) = steps(&t, "dracut", &[]);
    assert!(
        s.contains("warn vfio-early: ") && s.contains("vfio-early.toml:3"),
        "{s}"
    );
    assert!(s.contains("config error in "), "{s}");
    assert!(s.ends_with("hook pre-udev 00\n"), "{s}");
    // Refusals on this machine as it runs now.
    t.add(
        &Dev::new("0000:00:02.0", (0x1234, 0x1111), 0x030000)
            .group(0)
            .boot_vga(),
    );
    t.config("[[device]]\naddress = \"0000:00:02.0\"\nid = \"1234:1111\"\n");
    let (s, _) = steps(&t, "dracut", &[]);
    assert!(s.contains("the config plans refusals"), "{s}");
    // An entry without an id: no softdep line, and the build log says so.
    t.config("[[device]]\naddress = \"0000:00:02.0\"\nallow_boot_vga = true\n");
    let (s, _) = steps(&t, "dracut", &[]);
    assert!(s.contains("names no id"), "{s}");
    // No config, or no vfio-pci for the kernel: warnings only, nothing of ours.
    std::fs::remove_file(t.path("etc/vfio-early.toml")).unwrap();
    let (s, _) = steps(&t, "mkinitcpio", &[]);
    assert!(
        s.lines().all(|l| l.starts_with("warn ")) && s.contains("not found"),
        "{s}"
    );
    t.config("[[device]]\nid = \"1234:1111\"\n");
    std::fs::remove_file(t.path(&format!("lib/modules/{KVER}/modules.builtin"))).unwrap();
    let (s, _) = steps(&t, "initramfs-tools", &[]);
    assert!(
        s.lines().all(|l| l.starts_with("warn ")) && s.contains("LEFT OUT"),
        "{s}"
    );
}
