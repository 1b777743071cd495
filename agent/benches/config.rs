//! Config parsing and planning on the worst case the size limit lets through: a
//! 256 KiB config made of one inline array of small `device` tables (about 13,000
//! entries), planned against a 64-device topology. Prints the median and the best of
//! many runs for a quarter-size and the full-size config: the ratio shows whether the
//! cost grows linearly (about 4) or worse. Target: full size median < 50 ms.
//! `--once` parses and plans the full size once, for callgrind:
//! `valgrind --tool=callgrind target/release/deps/config-* --once`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use vfio_early::config::{Config, MAX_SIZE};
use vfio_early::pci::{Device, PciAddress};
use vfio_early::plan::{plan, Topology};

/// `device = [{id = "8086:1000"}, ...]` filling `size` bytes at most.
fn worst_case(size: usize) -> String {
    let mut text = String::from("device = [");
    let mut i = 0u32;
    loop {
        let entry = format!("{{id = \"8086:{:04x}\"}}, ", i % 0x10000);
        if text.len() + entry.len() + 2 > size {
            break;
        }
        text.push_str(&entry);
        i += 1;
    }
    text.push_str("]\n");
    text
}

fn topology() -> Topology {
    let devices = (0..64u8)
        .map(|n| {
            let addr = PciAddress {
                domain: 0,
                bus: n,
                device: 0,
                function: 0,
            };
            Device::new(
                addr,
                (0x8086, u16::from(n)),
                0x020000,
                Some(u32::from(n)),
                None,
            )
        })
        .collect();
    Topology {
        devices,
        iommu_groups: true,
        alias_tables: true,
        ..Topology::default()
    }
}

fn measure(text: &str, topo: &Topology) -> (usize, Duration, Duration, usize) {
    let path = Path::new("bench.toml");
    let entries = Config::parse(path, text.as_bytes())
        .expect("config")
        .devices
        .len();
    let mut times = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline || times.len() < 10 {
        let start = Instant::now();
        let c = Config::parse(path, black_box(text.as_bytes())).expect("config");
        black_box(plan(&c.devices, black_box(topo)));
        times.push(start.elapsed());
    }
    times.sort();
    (entries, times[times.len() / 2], times[0], times.len())
}

fn main() {
    let topo = topology();
    if std::env::args().any(|a| a == "--once") {
        // One full-size parse and plan, for `valgrind --tool=callgrind` (instruction
        // counts do not depend on what else the machine runs).
        let text = worst_case(MAX_SIZE);
        let c = Config::parse(Path::new("bench.toml"), text.as_bytes()).expect("config");
        black_box(plan(&c.devices, &topo));
        return;
    }
    let mut medians = Vec::new();
    for size in [MAX_SIZE / 4, MAX_SIZE] {
        let text = worst_case(size);
        let (entries, median, best, runs) = measure(&text, &topo);
        println!(
            "config: {} bytes, {entries} inline device tables, parse + plan over 64 devices: median {:.3} ms, best {:.3} ms over {runs} runs",
            text.len(),
            median.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3,
        );
        medians.push(median);
    }
    let ratio = medians[1].as_secs_f64() / medians[0].as_secs_f64();
    println!(
        "config: full size / quarter size = {ratio:.1} (linear: about 4); target: full size median < 50 ms"
    );
}
