//! `cargo run -p vfio-early-testing --example seed-desktop -- DIR`: writes the desktop of
//! the seed guide (boot iGPU at 00:01.0, a Radeon HD 7750 with its HDMI audio at 01:00.x
//! behind a root port, the chipset group) as a sysfs tree under DIR, with its host
//! drivers bound, for tests that run the documented commands with `--root DIR`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: seed-desktop DIR");
        return ExitCode::from(2);
    };
    let t = vfio_early_testing::seed_machine(true);
    // The tree's links are relative: a plain copy keeps them right.
    let mut src = t.root().as_os_str().to_owned();
    src.push("/.");
    match Command::new("cp").arg("-a").arg(src).arg(&dir).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => {
            eprintln!(
                "seed-desktop: copying the tree into {} failed",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
