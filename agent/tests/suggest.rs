//! `config suggest` over fixture machines: a single GPU, identical twins, a GPU in a
//! group that cannot be handed over, and the `--write` / `--force` contract.

use std::process::Output;

use testing::{seed_machine, Dev, TestSysfs};
use vfio_early::cmd::config::{suggest, SuggestArgs, SuggestError};
use vfio_early::config::Config;
use vfio_early::host::Host;
use vfio_early::machine::gpus;
use vfio_early::machine::read_topology;
use vfio_early::pci::PciAddress;
use vfio_early::plan::{self, Action};

fn addr(s: &str) -> PciAddress {
    s.parse().expect("a PCI address")
}

fn by_address(a: &str) -> SuggestArgs {
    SuggestArgs {
        address: Some(addr(a)),
        ..SuggestArgs::default()
    }
}

fn by_gpu(n: usize) -> SuggestArgs {
    SuggestArgs {
        gpu: Some(n),
        ..SuggestArgs::default()
    }
}

fn run(t: &TestSysfs, args: &[&str]) -> Output {
    t.run(env!("CARGO_BIN_EXE_vfio-early"), args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses a proposal as the boot would and returns what its plan does per address.
fn replan(t: &TestSysfs, config: &str) -> Vec<(String, Action, bool)> {
    let host = Host::new(t.root());
    let c = Config::parse(&host.path("etc/vfio-early.toml"), config.as_bytes())
        .expect("the proposal parses");
    let p = plan::plan(&c.devices, &read_topology(&host));
    assert!(!p.has_problems(), "{p:?}");
    p.devices
        .iter()
        .map(|d| (d.address.to_string(), d.action, d.selected))
        .collect()
}

/// Two identical cards (same ids, same subsystem), each with HDMI audio, each in its
/// own group behind its own root port, plus an iGPU that is the boot display.
fn twins() -> TestSysfs {
    let t = TestSysfs::new();
    for d in [
        Dev::new("0000:00:02.0", (0x8086, 0x3e92), 0x030000)
            .group(0)
            .boot_vga()
            .driver("i915"),
        Dev::new("0000:00:01.0", (0x8086, 0x1901), 0x060400)
            .group(1)
            .driver("pcieport"),
        Dev::new("0000:01:00.0", (0x10de, 0x1b80), 0x030000)
            .group(1)
            .subsystem(0x1462, 0x3362)
            .driver("nvidia"),
        Dev::new("0000:01:00.1", (0x10de, 0x10f0), 0x040300)
            .group(1)
            .subsystem(0x1462, 0x3362)
            .driver("snd_hda_intel"),
        Dev::new("0000:00:01.1", (0x8086, 0x1905), 0x060400)
            .group(2)
            .driver("pcieport"),
        Dev::new("0000:02:00.0", (0x10de, 0x1b80), 0x030000)
            .group(2)
            .subsystem(0x1462, 0x3362)
            .driver("nvidia"),
        Dev::new("0000:02:00.1", (0x10de, 0x10f0), 0x040300)
            .group(2)
            .subsystem(0x1462, 0x3362)
            .driver("snd_hda_intel"),
    ] {
        t.add(&d);
    }
    t.aliases("alias pci:v000010DEd*sv*sd*bc03sc*i* nvidia\nalias pci:v*d*sv*sd*bc04sc03i00* snd_hda_intel\n");
    t
}

#[test]
fn single_gpu_takes_the_whole_slot_and_plans_cleanly() {
    // After boot (drivers loaded) and in the initramfs (no endpoint driver yet).
    for booted in [true, false] {
        let t = seed_machine(booted);
        let host = Host::new(t.root());
        let topo = read_topology(&host);
        let s = suggest(&topo, None, &by_address("0000:01:00.0")).unwrap();
        assert_eq!(s.functions, [addr("0000:01:00.0"), addr("0000:01:00.1")]);
        assert!(s.twins.is_empty());
        assert!(
            s.text.contains("address = \"0000:01:00.0\"\n"),
            "{}",
            s.text
        );
        assert!(s.text.contains("id = \"1002:6779\"\n"), "{}", s.text);
        assert!(s.text.contains("functions = \"slot\"\n"), "{}", s.text);
        assert!(!s.text.contains("identical"), "{}", s.text);
        let actions = replan(&t, &s.text);
        assert!(
            actions.contains(&("0000:01:00.0".into(), Action::Bind, true)),
            "{actions:?}"
        );
        assert!(
            actions.contains(&("0000:01:00.1".into(), Action::Bind, true)),
            "{actions:?}"
        );
        assert!(
            actions.contains(&("0000:00:02.0".into(), Action::Skip, false)),
            "{actions:?}"
        );
    }
}

#[test]
fn naming_the_audio_function_still_takes_the_card() {
    let t = seed_machine(true);
    let host = Host::new(t.root());
    let s = suggest(&read_topology(&host), None, &by_address("0000:01:00.1")).unwrap();
    assert_eq!(s.functions, [addr("0000:01:00.0"), addr("0000:01:00.1")]);
    let bound: Vec<String> = replan(&t, &s.text)
        .into_iter()
        .filter(|(_, a, _)| *a == Action::Bind)
        .map(|(a, _, _)| a)
        .collect();
    assert_eq!(bound, ["0000:01:00.0", "0000:01:00.1"]);
}

#[test]
fn gpu_numbers_follow_the_groups_listing() {
    let t = seed_machine(true);
    let host = Host::new(t.root());
    // Group 0 holds the boot display, group 1 the Radeon.
    assert_eq!(
        gpus(&read_topology(&host)),
        [addr("0000:00:01.0"), addr("0000:01:00.0")]
    );
    let topo = read_topology(&host);
    let s = suggest(&topo, None, &by_gpu(2)).unwrap();
    assert_eq!(s.address, addr("0000:01:00.0"));
    // The boot display is refused, with the reason and the way to mean it.
    match suggest(&topo, None, &by_gpu(1)) {
        Err(SuggestError::NotViable(m)) => {
            assert!(m.contains("boot display"), "{m}");
            assert!(m.contains("allow_boot_vga"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    match suggest(&topo, None, &by_gpu(3)) {
        Err(SuggestError::Usage(m)) => assert!(m.contains("1=0000:00:01.0 2=0000:01:00.0"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        suggest(&topo, None, &by_gpu(0)),
        Err(SuggestError::Usage(_))
    ));
    assert!(matches!(
        suggest(&topo, None, &by_address("0000:09:00.0")),
        Err(SuggestError::Usage(_))
    ));
}

#[test]
fn identical_twins_are_told_apart_by_address_and_id() {
    let t = twins();
    let host = Host::new(t.root());
    let topo = read_topology(&host);
    let s = suggest(&topo, None, &by_address("0000:02:00.0")).unwrap();
    assert_eq!(s.twins, [addr("0000:01:00.0")]);
    assert!(
        s.text.contains("address = \"0000:02:00.0\"\n"),
        "{}",
        s.text
    );
    assert!(s.text.contains("id = \"10de:1b80\"\n"), "{}", s.text);
    assert!(
        s.text
            .contains("identical card (10de:1b80) is at 0000:01:00.0"),
        "{}",
        s.text
    );
    let actions = replan(&t, &s.text);
    let bound: Vec<&str> = actions
        .iter()
        .filter(|(_, a, _)| *a == Action::Bind)
        .map(|(a, _, _)| a.as_str())
        .collect();
    assert_eq!(
        bound,
        ["0000:02:00.0", "0000:02:00.1"],
        "the other card stays with the host"
    );
    assert!(
        !actions.iter().any(|(a, _, _)| a.starts_with("0000:01:")),
        "{actions:?}"
    );

    // What the address prevents: an id alone takes both cards.
    let c = Config::parse(
        &host.path("x.toml"),
        b"[[device]]\nid = \"10de:1b80\"\nfunctions = \"slot\"\n",
    )
    .unwrap();
    let both = plan::plan(&c.devices, &topo);
    assert_eq!(both.with_action(Action::Bind).count(), 4);

    // --gpu counts in groups order: 1 = iGPU (group 0), 2 = group 1, 3 = group 2.
    assert_eq!(
        suggest(&topo, None, &by_gpu(3)).unwrap().address,
        addr("0000:02:00.0")
    );
    assert_eq!(
        suggest(&topo, None, &by_gpu(2)).unwrap().twins,
        [addr("0000:02:00.0")]
    );
}

/// A GPU sharing its group with a USB controller of the chipset (no ACS on the
/// chipset's ports): before boot, xhci_pci would claim it; after boot it is on it.
fn shared_group(booted: bool) -> TestSysfs {
    let t = TestSysfs::new();
    let usb = Dev::new("0000:03:00.0", (0x1022, 0x43d5), 0x0c0330).group(5);
    for d in [
        Dev::new("0000:00:1c.0", (0x8086, 0xa290), 0x060400)
            .group(5)
            .driver("pcieport"),
        Dev::new("0000:04:00.0", (0x1002, 0x67df), 0x030000).group(5),
        Dev::new("0000:04:00.1", (0x1002, 0xaaf0), 0x040300).group(5),
        if booted { usb.driver("xhci_hcd") } else { usb },
    ] {
        t.add(&d);
    }
    t.aliases("alias pci:v*d*sv*sd*bc0Csc03i30* xhci_pci\nalias pci:v00001002d000067DFsv*sd*bc*sc*i* amdgpu\n");
    t
}

#[test]
fn a_group_that_cannot_go_whole_is_refused_with_its_blocker() {
    for (booted, driver) in [(true, "xhci_hcd"), (false, "xhci_pci")] {
        let t = shared_group(booted);
        let host = Host::new(t.root());
        match suggest(&read_topology(&host), None, &by_address("0000:04:00.0")) {
            Err(SuggestError::NotViable(m)) => {
                assert!(m.contains("IOMMU group 5"), "{m}");
                assert!(m.contains("0000:03:00.0 (USB controller"), "{m}");
                assert!(m.contains(driver), "{m}");
                assert!(
                    m.contains("move the card to a slot with its own group"),
                    "{m}"
                );
            }
            other => panic!("booted={booted}: {other:?}"),
        }
    }
}

#[test]
fn cli_prints_writes_and_never_overwrites_without_force() {
    let t = seed_machine(true);
    let o = run(&t, &["config", "suggest", "0000:01:00.0"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let proposal = text(&o.stdout);
    replan(&t, &proposal);
    assert!(
        !t.path("etc/vfio-early.toml").exists(),
        "stdout only without --write"
    );

    let o = run(&t, &["config", "suggest", "--gpu", "2", "--write"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(t.read("etc/vfio-early.toml"), proposal);
    assert!(text(&o.stderr).contains("vfio-early apply"));

    // An existing config is merged into: its comments, other devices and hugepages
    // stay; the output says what changed; a second run changes nothing.
    let mine = "# mine\n[[device]]\naddress = \"0000:03:00.0\" # the NIC\n\n[[hugepages]]\nsize = \"2M\"\ncount = 64\n";
    t.config(mine);
    let o = run(&t, &["config", "suggest", "0000:01:00.0", "--write"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("added a [[device]] entry for the card at 0000:01:00.0"),
        "{}",
        text(&o.stderr)
    );
    let merged = t.read("etc/vfio-early.toml");
    assert!(
        merged.starts_with("# mine\n[[device]]\naddress = \"0000:03:00.0\" # the NIC\n"),
        "{merged}"
    );
    assert!(
        merged.contains("address = \"0000:01:00.0\"\nid = "),
        "{merged}"
    );
    assert!(
        merged.contains("[[hugepages]]\nsize = \"2M\"\ncount = 64\n"),
        "{merged}"
    );
    assert_eq!(t.read("etc/vfio-early.toml.bak"), mine);
    let o = run(&t, &["config", "suggest", "0000:01:00.0", "--write"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("nothing changed"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(t.read("etc/vfio-early.toml"), merged);
    // A file that does not parse is left alone.
    t.config("# mine\n[[device]\n");
    let o = run(&t, &["config", "suggest", "0000:01:00.0", "--write"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--force"), "{}", text(&o.stderr));
    assert_eq!(t.read("etc/vfio-early.toml"), "# mine\n[[device]\n");
    let o = run(
        &t,
        &["config", "suggest", "0000:01:00.0", "--write", "--force"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(t.read("etc/vfio-early.toml"), proposal);
    assert_eq!(t.read("etc/vfio-early.toml.bak"), "# mine\n[[device]\n");

    // --force alone is a usage error; so are no card and an unknown card.
    assert_eq!(
        run(&t, &["config", "suggest", "0000:01:00.0", "--force"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&t, &["config", "suggest"]).status.code(), Some(2));
    assert_eq!(
        run(&t, &["config", "suggest", "0000:0a:00.0"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&t, &["config", "suggest", "0000:01:00.8"])
            .status
            .code(),
        Some(2),
        "no function 8"
    );
}

#[test]
fn cli_refuses_a_non_viable_group_and_writes_nothing() {
    let t = shared_group(true);
    let o = run(&t, &["config", "suggest", "0000:04:00.0", "--write"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(
        text(&o.stderr).contains("0000:03:00.0"),
        "{}",
        text(&o.stderr)
    );
    assert!(!t.path("etc/vfio-early.toml").exists());
}
