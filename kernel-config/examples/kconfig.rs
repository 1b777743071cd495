//! `cargo run -p kernel-config --example kconfig -- FILE [any|intel|amd] [json|fragment]`:
//! the engine without the agent around it.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: kconfig FILE [any|intel|amd] [human|json|fragment]");
        return std::process::ExitCode::from(2);
    };
    let cpu = args
        .next()
        .map_or(Ok(kernel_config::Cpu::Any), |c| c.parse());
    let (Ok(cpu), Ok(cfg)) = (cpu, kernel_config::Config::read_file(path.as_ref())) else {
        eprintln!("kconfig: bad vendor or unreadable file {path}");
        return std::process::ExitCode::from(2);
    };
    let report =
        kernel_config::check(&cfg, &kernel_config::Options { cpu, kver: None }).with_source(path);
    match args.next().as_deref() {
        Some("json") => println!("{}", report.to_json()),
        Some("fragment") => print!("{}", report.fragment()),
        _ => print!("{}", report.render_human(false)),
    }
    std::process::ExitCode::from(report.verdict().exit_code())
}
