//! Parse and check real kernel configs in-process (target: under 3 ms for a ~290 KB
//! config). `cargo bench -p kernel-config` prints min / median / mean per case.
//!
//! The bench profile inherits the release profile (opt-level "z", LTO), so these are
//! the figures of the shipped binary.

#![allow(clippy::unwrap_used)] // a benchmark may unwrap

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kernel_config::{check, Config, Options, Rules, BUILTIN_RULES};

fn measure(name: &str, iters: usize, mut f: impl FnMut()) {
    for _ in 0..iters / 10 + 1 {
        f();
    }
    let mut times: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / u32::try_from(iters).unwrap();
    println!(
        "{name:<44} min {:>9.3} ms  median {:>9.3} ms  mean {:>9.3} ms  ({iters} runs)",
        ms(times[0]),
        ms(times[iters / 2]),
        ms(mean)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/kconfig");
    let iters = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    println!("kernel-config benchmark ({iters} runs per case)");
    measure("rules table: parse rules.toml", iters, || {
        black_box(Rules::from_toml(black_box(BUILTIN_RULES)).unwrap());
    });
    for stem in [
        "arch_linux-6.17.5-arch1_x86_64",
        "fedora-rawhide_6.18.0-0.rc3.fc44_x86_64",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{stem}.config"))).unwrap();
        let kb = text.len() / 1024;
        let short = stem.split('_').next().unwrap_or(stem);
        let cfg = Config::parse(&text);
        let opts = Options::default();
        Rules::builtin();
        measure(&format!("{short} ({kb} KB): parse"), iters, || {
            black_box(Config::parse(black_box(&text)));
        });
        measure(&format!("{short} ({kb} KB): check"), iters, || {
            black_box(check(black_box(&cfg), &opts));
        });
        measure(&format!("{short} ({kb} KB): parse + check"), iters, || {
            let c = Config::parse(black_box(&text));
            black_box(check(&c, &opts));
        });
        measure(
            &format!("{short} ({kb} KB): rules + parse + check (one-shot)"),
            iters,
            || {
                let rules = Rules::from_toml(BUILTIN_RULES).unwrap();
                let c = Config::parse(black_box(&text));
                black_box(kernel_config::check_with(&rules, &c, &opts));
            },
        );
        measure(
            &format!("{short} ({kb} KB): parse + check + render"),
            iters,
            || {
                let c = Config::parse(black_box(&text));
                let r = check(&c, &opts);
                black_box((r.render_human(false), r.to_json()));
            },
        );
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        measure(
            &format!(
                "{short} (gzip {} KB): gunzip + parse + check",
                gz.len() / 1024
            ),
            iters,
            || {
                let c = Config::from_bytes(black_box(&gz)).unwrap();
                black_box(check(&c, &opts));
            },
        );
    }
}
