//! `vfio-early`: see the library's documentation; the CLI lives in `vfio_early::cli`.

fn main() -> std::process::ExitCode {
    vfio_early::cli::main()
}
