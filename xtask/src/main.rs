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
        &man_page(cmd.clone(), BIN, BIN, None)?,
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
            &man_page(page, &name, &typed, Some(file))?,
        )?);
        pages(sub, &name, &typed, dir, files)?;
    }
    Ok(())
}

/// Renders one page: NAME, SYNOPSIS and OPTIONS from clap; DESCRIPTION, EXIT STATUS,
/// EXAMPLES (and the kill switch where it matters) from [`PAGES`]; SUBCOMMANDS only
/// when there are any, each naming its own page; SEE ALSO the pages installed next to it.
fn man_page(
    cmd: clap::Command,
    file: &str,
    typed: &str,
    parent: Option<&str>,
) -> Result<Vec<u8>, Error> {
    let page = PAGES.iter().find(|p| p.typed == typed).ok_or_else(|| {
        Error(
            PathBuf::from(format!("{file}.{SECTION}")),
            io::Error::other(format!(
                "no PAGES entry for `{typed}`: write its description, exit status and examples"
            )),
        )
    })?;
    let subs: Vec<(String, String)> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| {
            let about = s.get_about().map(ToString::to_string).unwrap_or_default();
            (s.get_name().to_owned(), about)
        })
        .collect();
    let man = clap_mangen::Man::new(cmd)
        .section(SECTION)
        .manual("System Administration");
    let mut buf: Vec<u8> = Vec::new();
    let err = |e| Error(PathBuf::from(format!("{file}.{SECTION}")), e);
    man.render_title(&mut buf).map_err(err)?;
    man.render_name_section(&mut buf).map_err(err)?;
    man.render_synopsis_section(&mut buf).map_err(err)?;
    let mut roff = format!(".SH DESCRIPTION\n{}\n", page.description);
    buf.extend_from_slice(roff.as_bytes());
    man.render_options_section(&mut buf).map_err(err)?;
    roff.clear();
    if !subs.is_empty() {
        roff.push_str(".SH SUBCOMMANDS\n");
        for (name, about) in &subs {
            roff.push_str(&format!(
                ".TP\n\\fB{}\\fR(8)\n{}\n",
                roff_escape(&format!("{file}-{name}")),
                roff_escape(about)
            ));
        }
    }
    if page.kill_switch {
        roff.push_str(KILL_SWITCH);
    }
    if typed == BIN {
        roff.push_str(FILES);
    }
    roff.push_str(&format!(".SH EXIT STATUS\n{}\n", page.exit_status));
    roff.push_str(&format!(".SH EXAMPLES\n{}\n", page.examples));
    // The parent page, and the top page when the parent is not it.
    let mut see: Vec<String> = parent.iter().map(|p| (*p).to_owned()).collect();
    if parent.is_some_and(|p| p != BIN) {
        see.push(BIN.to_owned());
    }
    if !see.is_empty() {
        let refs: Vec<String> = see
            .iter()
            .map(|p| format!("\\fB{}\\fR(8)", roff_escape(p)))
            .collect();
        roff.push_str(&format!(".SH SEE ALSO\n{}\n", refs.join(", ")));
    }
    buf.extend_from_slice(roff.as_bytes());
    man.render_version_section(&mut buf).map_err(err)?;
    Ok(buf)
}

/// Text for roff: `-` as `\-` (a real hyphen-minus), a leading `.` or `'` guarded.
fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The recovery switch, on the pages of the commands that run at boot.
const KILL_SWITCH: &str = r".SH KERNEL COMMAND LINE
.TP
\fBvfio_early=off\fR
(also \fBvfio\-early=off\fR, \fB=0\fR, \fB=no\fR, and \fBrd.vfio_early=0\fR)
makes the boot run log one line and do nothing: the recovery switch when a
binding leaves the host without a screen. Add it at the boot loader's prompt.
";

/// The files, on the top page.
const FILES: &str = r".SH FILES
.TP
\fI/etc/vfio\-early.toml\fR
Which devices go to vfio\-pci, and hugepages to reserve.
The initramfs carries a copy: run \fBvfio\-early apply\fR after every change.
.TP
\fI/run/vfio\-early/record.json\fR
What the boot run did; \fBvfio\-early check\fR reads it.
";

/// What a page says beyond clap's NAME, SYNOPSIS and OPTIONS (raw roff): the page's
/// command as typed, its DESCRIPTION, EXIT STATUS and EXAMPLES, and whether the kill
/// switch belongs on it.
struct Page {
    typed: &'static str,
    description: &'static str,
    exit_status: &'static str,
    examples: &'static str,
    kill_switch: bool,
}

const PAGES: &[Page] = &[
    Page {
        typed: "vfio-early",
        description: r"At boot, from the initramfs, \fBvfio\-early bind\fR hands the PCI devices named in
\fI/etc/vfio\-early.toml\fR to vfio\-pci before udev's coldplug can load their host
drivers, one IOMMU group at a time, and rolls a group back when any of its devices
does not bind. It never binds the boot display or a storage controller without an
explicit \fBallow_boot_vga\fR / \fBallow_storage\fR, never a bridge, never a group
that cannot be handed over whole.
.PP
On the running system, \fBgroups\fR lists the IOMMU groups and numbers the GPUs,
\fBconfig suggest\fR proposes a config checked by the same planner as the boot,
\fBapply\fR rebuilds the initramfs with it, and \fBcheck\fR says afterwards what
the boot did and what to fix.",
        exit_status: r"0 on success; 1 when a check failed (\fBcheck\fR, \fBcheck\-kconfig\fR,
\fBgroups\fR without an IOMMU, \fBbind \-\-strict\fR with refusals);
2 for a usage or config error. \fBbind\fR without \fB\-\-strict\fR exits 0
whatever happens: a boot must go on.",
        examples: r".nf
vfio\-early groups \-\-gpu
sudo vfio\-early config suggest \-\-gpu 2 \-\-write
sudo vfio\-early apply
vfio\-early check
.fi",
        kill_switch: true,
    },
    Page {
        typed: "vfio-early bind",
        description: r"The boot path, run by the initramfs hook (dracut \fBpre\-udev\fR, mkinitcpio
\fBrun_earlyhook\fR or its systemd unit, initramfs\-tools \fBinit\-top\fR, and the
modprobe.d backstop). It reads the config, plans every device with the planner,
sets \fBdriver_override\fR, unbinds a host driver that got there first (with a time
bound), probes, verifies each device's driver link, and rolls back the whole group
when one of its devices fails. It logs to the kernel log within its rate limit and
leaves \fI/run/vfio\-early/record.json\fR for \fBvfio\-early check\fR.
\fB\-\-dry\-run\fR prints the plan and changes nothing.",
        exit_status: r"0 whatever happens, unless \fB\-\-strict\fR: then 1 when anything was refused
or failed, 2 for a config error (a missing default config included).",
        examples: r".nf
vfio\-early bind \-\-dry\-run
vfio\-early bind \-\-dry\-run \-\-strict \-\-config ./test.toml
vfio\-early bind \-\-dry\-run \-\-json
.fi",
        kill_switch: true,
    },
    Page {
        typed: "vfio-early check",
        description: r"After a boot, answers from the kernel's own evidence: whether the IOMMU is on
(ACPI DMAR/IVRS tables and the kernel log, not the command line alone), the kernel
command line, every configured device (bound to vfio\-pci, in which group, whether a
host driver had to be unbound first and why), the record the boot left, and the
hugepages. Each finding names its fix; \fBdocs/TROUBLESHOOTING.md\fR maps them.",
        exit_status: "0 when nothing failed; 1 when a check failed; 2 for a usage error.",
        examples: r".nf
vfio\-early check
vfio\-early check \-\-json
.fi",
        kill_switch: true,
    },
    Page {
        typed: "vfio-early groups",
        description: r"Lists every IOMMU group with its devices: address, class, ids, names from the
system's \fIpci.ids\fR when present, current driver, and the boot display.
\fB\-\-gpu\fR keeps the groups with a display controller and numbers the GPUs
(GPU 1, GPU 2, ... in PCI address order): that number is what
\fBvfio\-early config suggest \-\-gpu\fR takes.",
        exit_status: r"0 when the machine has IOMMU groups; 1 when it has none (the IOMMU is off,
and the output says how to turn it on); 2 for a usage error (no such group or device).",
        examples: r".nf
vfio\-early groups
vfio\-early groups \-\-gpu
vfio\-early groups \-\-device 0000:01:00.0 \-\-json
.fi",
        kill_switch: false,
    },
    Page {
        typed: "vfio-early check-kconfig",
        description: r"Checks a kernel configuration against what passthrough needs (the IOMMU
drivers, interrupt remapping, VFIO, KVM, hugetlbfs), by the kernel's version and
architecture. Each missing option comes with why it matters and its menu path in
\fBmake menuconfig\fR; the summary line starts with \fBFAIL:\fR or \fBPASS:\fR and
names the options to set.",
        exit_status: "0 when every requirement is met (warnings allowed); 1 when one is not; 2 for a usage error (no config found).",
        examples: r".nf
vfio\-early check\-kconfig
vfio\-early check\-kconfig /usr/src/linux/.config \-\-cpu amd
vfio\-early check\-kconfig \-\-kver 6.1.0\-18\-amd64 \-\-json
.fi",
        kill_switch: false,
    },
    Page {
        typed: "vfio-early modules",
        description: r"For a person or script building an initramfs by hand: the vfio modules the
image needs for the target kernel (vfio\-pci's \fBdepends\fR/\fBsoftdep\fR closure), the
modprobe.d backstop, or the kernel's PCI alias table. The generators' hooks use
\fBvfio\-early initramfs\fR instead.",
        exit_status: r"0 when vfio\-pci is available for the target kernel; 1 when it is not (a
warning says why); 2 for a usage error (no such module directory).",
        examples: r".nf
vfio\-early modules \-\-kver 6.1.0\-18\-amd64
vfio\-early modules \-\-modprobe\-conf
.fi",
        kill_switch: false,
    },
    Page {
        typed: "vfio-early initramfs",
        description: r"Run by the dracut, mkinitcpio and initramfs\-tools hooks while they build an
image: decides everything the image gets (the modules, the agent, the config, the
modprobe.d backstop and the PCI alias table written into the image tree, the hook or
unit) from the config and the target kernel, never from this machine's devices, and
prints one step per line for the hook to carry out.",
        exit_status: "0 whatever it prints (an image build goes on); 2 for a usage error.",
        examples: r".nf
vfio\-early initramfs \-\-generator dracut \-\-kver 6.1.0\-18\-amd64 \-\-out /tmp/image
.fi",
        kill_switch: false,
    },
    Page {
        typed: "vfio-early apply",
        description: r"Plans the config exactly as the boot will, on this machine, then finds the
initramfs generator (dracut, mkinitcpio or initramfs\-tools) and rebuilds the image
of every installed kernel with it. Run it after every change of
\fI/etc/vfio\-early.toml\fR: the initramfs carries its own copy.",
        exit_status: r"0 when every image was rebuilt; 1 when the planner refuses something (without
\fB\-\-force\fR) or a rebuild failed; 2 for a usage or config error.",
        examples: r".nf
sudo vfio\-early apply
vfio\-early apply \-\-dry\-run
sudo vfio\-early apply \-\-kver 6.1.0\-18\-amd64 \-\-generator dracut
.fi",
        kill_switch: true,
    },
    Page {
        typed: "vfio-early detach",
        description: r"On a running host, hands devices to vfio\-pci with the boot's planner and binder:
the same refusals (the boot display, storage, a group that cannot go whole), the same
rollback of a group that does not bind, and a record that \fBvfio\-early reattach\fR
reads to give each device back to the driver it came from.",
        exit_status: r"0 when every device ended on vfio\-pci (or already was); 1 when something was
refused or failed (a refused request touches nothing, a failed group is rolled back);
2 for a usage or config error.",
        examples: r".nf
vfio\-early detach \-\-slot 0000:01:00.0 \-\-dry\-run
sudo vfio\-early detach \-\-slot 0000:01:00.0
.fi",
        kill_switch: false,
    },
    Page {
        typed: "vfio-early reattach",
        description: r"Gives devices that \fBvfio\-early detach\fR handed to vfio\-pci back to the drivers
they came from, as its record says, and reads back that those drivers took them.",
        exit_status: r"0 when every device is back on its driver; 1 when one is not; 2 for a usage or
config error.",
        examples: r".nf
sudo vfio\-early reattach 0000:01:00.0 0000:01:00.1
.fi",
        kill_switch: false,
    },
    Page {
        typed: "vfio-early hook",
        description: r"Entry points that other programs run: \fBvfio\-early hook libvirt\fR is
libvirt's QEMU hook.",
        exit_status: "As its subcommand's; 2 for a usage error.",
        examples: r".nf
ls /etc/libvirt/hooks/qemu.d/
.fi",
        kill_switch: false,
    },
    Page {
        typed: "vfio-early hook libvirt",
        description: r"Installed as \fI/etc/libvirt/hooks/qemu.d/vfio\-early\fR. libvirt (6.5 or later)
runs it with GUEST OPERATION SUBOPERATION EXTRA and the domain XML on stdin. On
\fBprepare begin\fR the domain's PCI host devices with managed='no' are detached as by
\fBvfio\-early detach\fR; on \fBrelease end\fR they are reattached. Every other
operation does nothing.",
        exit_status: r"0, except 1 when a detach at \fBprepare begin\fR is refused or fails: libvirt
then does not start the domain.",
        examples: r".nf
vfio\-early hook libvirt win10 prepare begin \- </etc/libvirt/qemu/win10.xml
.fi",
        kill_switch: false,
    },
    Page {
        typed: "vfio-early config",
        description: r"Writes configs: \fBvfio\-early config suggest\fR proposes one for a card.",
        exit_status: "As its subcommand's; 2 for a usage error.",
        examples: r".nf
vfio\-early config suggest \-\-gpu 2
.fi",
        kill_switch: false,
    },
    Page {
        typed: "vfio-early config suggest",
        description: r"Proposes a config for one card, named by the address of any of its functions
or by \fB\-\-gpu N\fR (the number \fBvfio\-early groups \-\-gpu\fR prints), and checks it
with the boot's planner. The proposal takes every function of the slot and names the
card by address and id. \fB\-\-write\fR merges it into \fI/etc/vfio\-early.toml\fR:
the entry of the same card is updated or a new one added, every other line is kept,
and the output says what changed; \fB\-\-force\fR replaces the whole file. The old
file is kept as \fI/etc/vfio\-early.toml.bak\fR.",
        exit_status: r"0 when a config was proposed (or written); 1 when the card cannot go to
vfio\-pci as the machine stands (the reasons are printed) or the file could not be
written; 2 for a usage error (no such device or GPU).",
        examples: r".nf
vfio\-early config suggest \-\-gpu 2
sudo vfio\-early config suggest \-\-gpu 2 \-\-write
vfio\-early config suggest 0000:01:00.0
.fi",
        kill_switch: false,
    },
];

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
        for f in &files {
            let name = f.display().to_string();
            if !name.ends_with(".8") {
                continue;
            }
            let page = fs::read_to_string(f).unwrap();
            for section in [".SH DESCRIPTION", ".SH EXIT STATUS", ".SH EXAMPLES"] {
                assert!(page.contains(section), "{name} lacks {section}");
            }
            assert!(
                !page.contains("help\\fR(8)"),
                "{name} refers to a help page"
            );
            let has_subcommands = name.ends_with("/vfio-early.8")
                || name.ends_with("-config.8")
                || name.ends_with("-hook.8");
            assert_eq!(has_subcommands, page.contains(".SH SUBCOMMANDS"), "{name}");
        }
        let bind = fs::read_to_string(dir.path().join("man/vfio-early-bind.8")).unwrap();
        assert!(
            bind.contains("vfio_early=off"),
            "the boot path's page has the kill switch"
        );
        let bash = fs::read_to_string(dir.path().join("completions/vfio-early.bash")).unwrap();
        assert!(
            bash.contains("vfio__early__subcmd__apply)") && !bash.contains("vfio__subcmd__early"),
            "bash case arms must match the names `cmd` is set to"
        );
    }
}
