//! `vfio-early hook libvirt GUEST OPERATION SUBOPERATION EXTRA`: libvirt's QEMU hook,
//! installed as `/etc/libvirt/hooks/qemu.d/vfio-early` (libvirt >= 6.5 runs every
//! executable there, in order, with the domain XML on stdin).
//!
//! - `prepare begin`: detaches the domain's PCI `<hostdev>`s (those with
//!   `managed='no'`; all of them with `[handover] libvirt_managed = true`), exactly as
//!   `vfio-early detach` would; a refusal or a failure exits 1, so libvirt does not
//!   start the domain;
//! - `release end`: reattaches them (only what `detach` recorded);
//! - anything else: nothing, exit 0, without reading stdin.
//!
//! Every step is bounded (the lock wait, each kernel write, each handover step), so the
//! hook never holds libvirt longer than the configured bounds.

use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::detach::{self, Request};
use crate::detach_report;
use crate::domxml;
use crate::exit::{Exit, Outcome};
use crate::host::Host;

/// Largest domain XML read from stdin.
const MAX_XML: usize = 4 << 20;
/// Bound on reading it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `hook`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which hook.
    #[command(subcommand)]
    pub kind: Kind,
}

/// The hook kinds.
#[derive(clap::Subcommand, Debug)]
pub enum Kind {
    /// libvirt's QEMU hook (`/etc/libvirt/hooks/qemu.d/vfio-early`).
    ///
    /// libvirt (>= 6.5) runs every executable in `/etc/libvirt/hooks/qemu.d/` with
    /// GUEST OPERATION SUBOPERATION EXTRA and the domain XML on stdin; it finds them when
    /// its daemon starts (restart libvirtd or virtqemud after installing). A VFIO-Tools
    /// style dispatcher installed in the same place runs too. On `prepare begin` the
    /// domain's PCI hostdevs with managed='no' (all of them with `[handover]
    /// libvirt_managed = true`) are detached as by `vfio-early detach`; a refusal or a
    /// failure exits 1 and libvirt does not start the domain. On `release end` they are
    /// reattached. Every other operation does nothing and exits 0.
    Libvirt(LibvirtArgs),
}

/// libvirt's argv, after the script name.
#[derive(clap::Args, Debug)]
pub struct LibvirtArgs {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the detach or reattach plan as JSON (the bind plan's format).
    #[arg(long)]
    pub json: bool,
    /// The domain's name.
    pub guest: String,
    /// `prepare`, `start`, `started`, `stopped`, `release`, `migrate`, ...
    pub operation: String,
    /// `begin`, `end`, `-`.
    pub suboperation: String,
    /// libvirt's extra argument (`-` mostly).
    pub extra: Option<String>,
}

/// Runs `hook`: libvirt reads 1 as "do not start the guest", so every problem is 1
/// on the way in and 0 on the way out, after its message.
///
/// # Errors
/// None: a hook's problems are said here, as libvirt shows them.
pub fn run(args: &Args, host: &Host) -> Outcome {
    match &args.kind {
        Kind::Libvirt(a) => Ok(libvirt(a, host)),
    }
}

fn libvirt(a: &LibvirtArgs, host: &Host) -> Exit {
    let detaching = match (a.operation.as_str(), a.suboperation.as_str()) {
        ("prepare", "begin") => true,
        ("release", "end") => false,
        _ => return Exit::Ok,
    };
    let fail = |msg: String| {
        eprintln!("vfio-early hook: {}: {msg}", a.guest);
        Exit::problem_if(detaching)
    };
    let config = match detach::load_config(host, None) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let xml = match read_stdin(MAX_XML, READ_TIMEOUT) {
        Ok(x) => x,
        Err(e) => return fail(format!("reading the domain XML from stdin: {e}")),
    };
    let hostdevs = match domxml::pci_hostdevs(&xml) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let addresses: Vec<_> = hostdevs
        .iter()
        .filter(|h| !h.managed || config.handover.libvirt_managed)
        .map(|h| h.address)
        .collect();
    if addresses.is_empty() {
        return Exit::Ok;
    }
    let req = Request {
        addresses: &addresses,
        slot: false,
        dry_run: a.dry_run,
        force: false,
    };
    if detaching {
        let (out, exit) = detach::detach_locked(host, &config, &req);
        if a.json || a.dry_run {
            detach_report::print_detach(&config, &out, a.json, a.dry_run);
        } else {
            eprint!("{}", detach_report::render_detach(&out, false));
        }
        exit.min(Exit::Problem)
    } else {
        let (out, exit) = detach::reattach_locked(host, &config, &req);
        if a.json || a.dry_run {
            detach_report::print_reattach(&config, &out, a.json, a.dry_run);
        } else {
            eprint!("{}", detach_report::render_reattach(&out, false));
        }
        exit.min(Exit::Problem)
    }
}

/// Reads stdin to its end, at most `max` bytes and for at most `timeout`.
fn read_stdin(max: usize, timeout: Duration) -> Result<String, String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("no end of input after {} s", timeout.as_secs()));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let fd = std::io::stdin();
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.to_string()),
        }
        let n = lock.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > max {
            return Err(format!("more than {max} bytes"));
        }
    }
    String::from_utf8(buf).map_err(|_| "not UTF-8".to_owned())
}
