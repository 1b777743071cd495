//! Planning time on a generated topology: 1,024 devices in 256 IOMMU groups.
//!
//! Each group is a root port, a two-function card and one more endpoint; a quarter of
//! the cards are selected (whole slot), some groups bind, some are refused. Prints the
//! median and the best of many runs. Target: median < 2 ms.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use vfio_early::config::Config;
use vfio_early::pci::{Device, PciAddress};
use vfio_early::plan::{plan, Topology};

fn device(
    addr: PciAddress,
    id: (u16, u16),
    class: u32,
    group: u32,
    driver: Option<&str>,
) -> Device {
    Device::new(addr, id, class, Some(group), driver)
}

fn topology() -> (Topology, String) {
    let mut devices = Vec::with_capacity(1024);
    let mut claimants = BTreeMap::new();
    let mut config = String::new();
    for g in 0..=255u8 {
        let bus = g;
        let group = u32::from(g);
        let port = PciAddress {
            domain: 0,
            bus: 0,
            device: g % 32,
            function: g / 32,
        };
        let card = |f| PciAddress {
            domain: 1,
            bus,
            device: 0,
            function: f,
        };
        let extra = PciAddress {
            domain: 1,
            bus,
            device: 1,
            function: 0,
        };
        devices.push(device(
            port,
            (0x8086, 0x1901),
            0x060400,
            group,
            Some("pcieport"),
        ));
        devices.push(device(
            card(0),
            (0x10de, 0x1b80 + u16::from(bus)),
            0x030000,
            group,
            None,
        ));
        devices.push(device(card(1), (0x10de, 0x10f0), 0x040300, group, None));
        // Every other group has a third endpoint a host driver would claim.
        devices.push(device(extra, (0x8086, 0x10d3), 0x020000, group, None));
        if g % 2 == 0 {
            claimants.insert(extra, "e1000e".to_owned());
        }
        claimants.insert(card(0), "nouveau".to_owned());
        claimants.insert(card(1), "snd_hda_intel".to_owned());
        if g % 3 == 0 {
            config.push_str(&format!(
                "[[device]]\naddress = \"{}\"\nfunctions = \"slot\"\n",
                card(0)
            ));
        }
    }
    devices.sort_by_key(|d| d.address);
    (
        Topology {
            devices,
            iommu_groups: true,
            claimants,
            alias_tables: true,
            no_iommu: None,
            groups_at_probe: false,
            ..Topology::default()
        },
        config,
    )
}

fn main() {
    let (topo, text) = topology();
    let config = Config::parse(Path::new("bench.toml"), text.as_bytes()).expect("config");
    assert_eq!(topo.devices.len(), 1024);
    let p = plan(&config.devices, &topo);
    let bind = p.bind_groups().len();
    let refused = p
        .devices
        .iter()
        .filter(|d| d.action == vfio_early::plan::Action::Refuse)
        .count();
    let mut times: Vec<Duration> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline || times.len() < 50 {
        let start = Instant::now();
        black_box(plan(black_box(&config.devices), black_box(&topo)));
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "plan: 1024 devices, 256 groups, {} selectors ({bind} groups to bind, {refused} devices refused): median {:.3} ms, best {:.3} ms over {} runs (target < 2 ms)",
        config.devices.len(),
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times.len()
    );
}
