//! `cargo run -p xtask -- [docs] [--out DIR]`: writes the man pages and the bash, zsh
//! and fish completions of `vfio-early`, generated from the CLI definition in the
//! library (`vfio_early::cli::Cli`), into DIR (default `target/docs`):
//!
//! ```text
//! DIR/man/vfio-early.8            the command, with every subcommand summarised
//! DIR/man/vfio-early-<sub>.8      one page per subcommand
//! DIR/completions/vfio-early.bash
//! DIR/completions/_vfio-early     (zsh)
//! DIR/completions/vfio-early.fish
//! ```
//!
//! Nothing generated is committed: `make docs` runs this, `make install` copies the
//! result. clap_mangen and clap_complete live here only, so the boot binary stays small.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// The binary's name, as installed.
const BIN: &str = "vfio-early";
/// Man section: a system administration command.
const SECTION: &str = "8";

fn main() -> ExitCode {
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("docs") => {}
            Some("--out") => match args.next() {
                Some(dir) => out = Some(PathBuf::from(dir)),
                None => return usage("--out needs a directory"),
            },
            Some("-h" | "--help") => {
                println!(
                    "usage: cargo run -p xtask -- [docs] [--out DIR]   (default DIR: target/docs)"
                );
                return ExitCode::SUCCESS;
            }
            _ => return usage(&format!("unknown argument {}", a.to_string_lossy())),
        }
    }
    let out = out.unwrap_or_else(default_out);
    match generate(&out) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("xtask: {msg}\nusage: cargo run -p xtask -- [docs] [--out DIR]");
    ExitCode::from(2)
}

/// `target/docs` of the workspace (or of `CARGO_TARGET_DIR`).
fn default_out() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("docs")
}

/// An error that names the file it concerns.
#[derive(Debug)]
struct Error(PathBuf, io::Error);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.display(), self.1)
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<PathBuf, Error> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| Error(dir.to_path_buf(), e))?;
    }
    fs::write(path, bytes).map_err(|e| Error(path.to_path_buf(), e))?;
    Ok(path.to_path_buf())
}

/// Writes every page and completion under `out`; returns the files written.
fn generate(out: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut cmd = vfio_early::cli::Cli::command().name(BIN).bin_name(BIN);
    // Built, so subcommands carry the propagated version and the global options.
    cmd.build();
    let mut files = Vec::new();

    // Man pages: the top page, then one per subcommand (`vfio-early-bind.8`, ...).
    let man_dir = out.join("man");
    files.push(write(
        &man_dir.join(format!("{BIN}.{SECTION}")),
        &man_page(cmd.clone(), EXTRA)?,
    )?);
    pages(&cmd, BIN, BIN, &man_dir, &mut files)?;

    // Completions.
    let comp_dir = out.join("completions");
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, BIN, &mut buf);
        if shell == Shell::Bash {
            buf = fix_bash_labels(&buf).into_bytes();
        }
        let file: OsString = match shell {
            Shell::Zsh => format!("_{BIN}").into(),
            Shell::Fish => format!("{BIN}.fish").into(),
            _ => format!("{BIN}.bash").into(),
        };
        files.push(write(&comp_dir.join(file), &buf)?);
    }
    Ok(files)
}

/// clap_complete's bash script names a subcommand `vfio__early__subcmd__apply` when it
/// sets `cmd`, but labels its case arm from the bin name with every `-` turned into the
/// subcommand separator (`vfio__subcmd__early__subcmd__apply`), so nothing below the top
/// level ever completes for a binary with a dash in its name. Relabel the arms the way
/// `cmd` is set.
fn fix_bash_labels(script: &[u8]) -> String {
    let text = String::from_utf8_lossy(script);
    let wrong = format!("{}__subcmd__", BIN.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", BIN.replace('-', "__"));
    text.replace(&wrong, &right)
}

/// One page per subcommand, recursively: `vfio-early-config.8`,
/// `vfio-early-config-suggest.8`, ... (`file` names the page, `usage` is how it is typed).
fn pages(
    parent: &clap::Command,
    file: &str,
    usage: &str,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<(), Error> {
    for sub in parent
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{file}-{}", sub.get_name());
        let typed = format!("{usage} {}", sub.get_name());
        let page = sub.clone().name(name.clone()).bin_name(typed.clone());
        files.push(write(
            &dir.join(format!("{name}.{SECTION}")),
            &man_page(page, SEE_ALSO)?,
        )?);
        pages(sub, &name, &typed, dir, files)?;
    }
    Ok(())
}

/// Renders one page: clap's sections, then `extra` (raw roff), then the version.
fn man_page(cmd: clap::Command, extra: &str) -> Result<Vec<u8>, Error> {
    let man = clap_mangen::Man::new(cmd)
        .section(SECTION)
        .manual("System Administration");
    let mut buf: Vec<u8> = Vec::new();
    let err = |e| Error(PathBuf::from("<man page>"), e);
    man.render_title(&mut buf).map_err(err)?;
    man.render_name_section(&mut buf).map_err(err)?;
    man.render_synopsis_section(&mut buf).map_err(err)?;
    man.render_description_section(&mut buf).map_err(err)?;
    man.render_options_section(&mut buf).map_err(err)?;
    man.render_subcommands_section(&mut buf).map_err(err)?;
    buf.extend_from_slice(extra.as_bytes());
    man.render_version_section(&mut buf).map_err(err)?;
    Ok(buf)
}

/// The sections a user needs beyond the options (roff).
const EXTRA: &str = r#".SH FILES
.TP
\fI/etc/vfio\-early.toml\fR
Which devices go to vfio\-pci, and hugepages to reserve.
The initramfs carries a copy: run \fBvfio\-early apply\fR after every change.
.TP
\fI/run/vfio\-early/record.json\fR
What the boot run did; \fBvfio\-early check\fR reads it.
.SH KERNEL COMMAND LINE
.TP
\fBvfio_early=off\fR
(also \fBvfio\-early=off\fR, \fB=0\fR, \fB=no\fR, and \fBrd.vfio_early=0\fR)
makes the boot run log one line and do nothing: the recovery switch when a
binding leaves the host without a screen. Add it at the boot loader's prompt.
.SH EXIT STATUS
0 on success; 1 when a check failed (\fBcheck\fR, \fBcheck\-kconfig\fR,
\fBgroups\fR without an IOMMU, \fBbind \-\-strict\fR with refusals);
2 for a usage or config error. \fBbind\fR without \fB\-\-strict\fR exits 0
whatever happens: a boot must go on.
"#;

/// For the subcommand pages.
const SEE_ALSO: &str = r".SH SEE ALSO
\fBvfio\-early\fR(8)
";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_subcommand_gets_a_page_and_every_shell_a_completion() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        for sub in vfio_early::cli::Cli::command().get_subcommands() {
            let page = format!("man/vfio-early-{}.8", sub.get_name());
            assert!(names.contains(&page), "{page} missing from {names:?}");
        }
        assert!(names.contains(&"man/vfio-early-config-suggest.8".to_owned()));
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let top = fs::read_to_string(dir.path().join("man/vfio-early.8")).unwrap();
        assert!(
            top.starts_with(".ie") || top.contains(".TH vfio-early 8"),
            "{top}"
        );
        assert!(top.contains(".SH FILES") && top.contains("vfio_early=off"));
        let suggest =
            fs::read_to_string(dir.path().join("man/vfio-early-config-suggest.8")).unwrap();
        assert!(suggest.contains("vfio\\-early config suggest"), "{suggest}");
        assert!(suggest.contains("\\-\\-force"), "{suggest}");
        for (file, needle) in [
            ("completions/vfio-early.bash", "apply"),
            ("completions/_vfio-early", "#compdef vfio-early"),
            ("completions/vfio-early.fish", "complete -c vfio-early"),
        ] {
            let text = fs::read_to_string(dir.path().join(file)).unwrap();
            assert!(text.contains(needle), "{file} lacks {needle}");
            assert!(text.contains("suggest"), "{file} lacks config suggest");
        }
        let bash = fs::read_to_string(dir.path().join("completions/vfio-early.bash")).unwrap();
        assert!(
            bash.contains("vfio__early__subcmd__apply)") && !bash.contains("vfio__subcmd__early"),
            "bash case arms must match the names `cmd` is set to"
        );
    }
}
