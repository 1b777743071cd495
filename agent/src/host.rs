//! The one filesystem seam.
//!
//! Every read and write of `/sys`, `/proc`, `/dev/kmsg`, `/etc`, `/lib/modules` and
//! `/run`, and every call that changes the running kernel (loading a module), goes
//! through a [`Host`]. The live host has the root `/`; tests point a `Host` at a
//! directory tree shaped like the real one. With any root other than `/`,
//! [`Host::is_live`] is false and nothing reaches the running kernel: module loads are
//! refused, and sysfs "writes" are plain file writes inside the fixture.
//!
//! Kernel writes can block forever (an `unbind` waiting on a wedged driver). A thread
//! stuck in such a write cannot be killed, so [`Host::write_bounded`] performs the
//! write in a forked child and abandons it when the time is up.

use std::fs;
use std::io::{self, Write};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// The lock every run that changes devices takes (see [`Host::lock`]).
pub(crate) const LOCK_PATH: &str = "run/vfio-early/lock";

/// Held while a run changes devices; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// Most a sysfs attribute can hold (one page).
const ATTR_MAX: u64 = 4096;

/// An I/O failure, with the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A read, write or listing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The full path (root included).
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// A bounded write did not finish in time; the writer was abandoned.
    #[error("{}: no answer after {} ms (the write was abandoned)", path.display(), timeout.as_millis())]
    Timeout {
        /// The full path (root included).
        path: PathBuf,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// Something that would change the running kernel was asked of a fixture root.
    #[error("{what}: not done, root {} is not the live system", root.display())]
    NotLive {
        /// What was refused.
        what: String,
        /// The root in use.
        root: PathBuf,
    },
}

impl HostError {
    /// The OS error number, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    fn io(path: PathBuf, source: io::Error) -> Self {
        Self::Io { path, source }
    }
}

/// Result of host operations.
pub(crate) type HostResult<T> = Result<T, HostError>;

/// A view of a machine through a root directory.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    live: bool,
}

impl Host {
    /// A host rooted at `root` (`/` for the running system).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let live = fs::canonicalize(&root).map_or(root == Path::new("/"), |p| p == Path::new("/"));
        Self { root, live }
    }

    /// The running system.
    pub fn live() -> Self {
        Self::new("/")
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the root is `/`: writes reach the running kernel.
    pub(crate) fn is_live(&self) -> bool {
        self.live
    }

    /// The full path of `rel` (a path relative to the root, such as `sys/bus/pci`).
    ///
    /// A leading `/` in `rel` is ignored, so `/etc/x` and `etc/x` name the same file.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.root.join(rel)
    }

    /// Whether `rel` exists (following symlinks).
    pub fn exists(&self, rel: impl AsRef<Path>) -> bool {
        self.path(rel).exists()
    }

    /// Reads a whole file as text.
    pub fn read(&self, rel: impl AsRef<Path>) -> HostResult<String> {
        let path = self.path(rel);
        fs::read_to_string(&path).map_err(|e| HostError::io(path, e))
    }

    /// Reads a whole file as bytes.
    pub(crate) fn read_bytes(&self, rel: impl AsRef<Path>) -> HostResult<Vec<u8>> {
        let path = self.path(rel);
        fs::read(&path).map_err(|e| HostError::io(path, e))
    }

    /// Reads a one-value sysfs attribute, trimmed; `None` when it does not exist or is
    /// not text. Reads at most one page, as sysfs gives: a wrong file (a link to
    /// `/dev/zero` in a hostile tree) cannot make the agent read forever.
    pub(crate) fn read_attr(&self, rel: impl AsRef<Path>) -> Option<String> {
        use std::io::Read;
        let mut buf = Vec::new();
        fs::File::open(self.path(rel))
            .ok()?
            .take(ATTR_MAX)
            .read_to_end(&mut buf)
            .ok()?;
        String::from_utf8(buf).ok().map(|s| s.trim().to_owned())
    }

    /// The file name a symlink points to (`driver` -> `vfio-pci`); `None` when there
    /// is no link.
    pub(crate) fn link_name(&self, rel: impl AsRef<Path>) -> Option<String> {
        let target = fs::read_link(self.path(rel)).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// Where a symlink points, as written in the link (`../../devices/pci0000:00/...`);
    /// `None` when there is no link.
    pub(crate) fn link_target(&self, rel: impl AsRef<Path>) -> Option<PathBuf> {
        fs::read_link(self.path(rel)).ok()
    }

    /// Entry names of a directory, sorted; empty when it does not exist.
    pub fn list(&self, rel: impl AsRef<Path>) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.path(rel)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Writes a value to an existing file (a sysfs attribute): never creates one. The
    /// file is opened with `O_TRUNC` (ignored by sysfs, and what keeps a fixture file
    /// holding exactly the last value written, as an attribute reads back).
    pub fn write(&self, rel: impl AsRef<Path>, value: &str) -> HostResult<()> {
        let path = self.path(rel);
        write_existing(&path, value.as_bytes()).map_err(|e| HostError::io(path, e))
    }

    /// Like [`Host::write`], but performed by a forked child that is abandoned (and
    /// sent SIGKILL) when it has not finished within `timeout`.
    pub(crate) fn write_bounded(
        &self,
        rel: impl AsRef<Path>,
        value: &str,
        timeout: Duration,
    ) -> HostResult<()> {
        let path = self.path(rel);
        bounded_write(&path, value.as_bytes(), timeout)
    }

    /// Creates or replaces a file the agent owns (under `run/`), atomically.
    pub(crate) fn write_owned(&self, rel: impl AsRef<Path>, contents: &[u8]) -> HostResult<()> {
        let path = self.path(rel);
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| HostError::io(dir, e))?;
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, contents).map_err(|e| HostError::io(tmp.clone(), e))?;
        fs::rename(&tmp, &path).map_err(|e| HostError::io(path, e))
    }

    /// Refuses, with a clear error, anything that would change the running kernel
    /// when this host is a fixture.
    pub(crate) fn require_live(&self, what: &str) -> HostResult<()> {
        if self.live {
            Ok(())
        } else {
            Err(HostError::NotLive {
                what: what.to_owned(),
                root: self.root.clone(),
            })
        }
    }

    /// Takes the agent's lock (`flock` on [`LOCK_PATH`] under the root), waiting at most
    /// `timeout` for another run (`bind`, `detach`, `reattach`) to finish. The lock is
    /// held until the guard is dropped; a process that dies releases it with its file.
    pub fn lock(&self, timeout: Duration) -> HostResult<LockGuard> {
        use nix::fcntl::{Flock, FlockArg};
        let path = self.path(LOCK_PATH);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| HostError::io(dir.to_path_buf(), e))?;
        }
        let start = Instant::now();
        loop {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| HostError::io(path.clone(), e))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(LockGuard { _lock: lock }),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(HostError::Timeout { path, timeout })
                }
                Err((_, e)) => return Err(HostError::io(path, e.into())),
            }
        }
    }

    /// The release of the running kernel (`proc/sys/kernel/osrelease`).
    pub(crate) fn kernel_release(&self) -> Option<String> {
        self.read_attr("proc/sys/kernel/osrelease")
    }
}

fn write_existing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)
}

/// Writes `bytes` to `path` in a forked child and waits at most `timeout` for it.
///
/// Everything the child needs (the C path) is prepared before the fork, so the child
/// allocates nothing: it opens, writes once, and leaves with `_exit`, passing the
/// errno back as its exit status.
fn bounded_write(path: &Path, bytes: &[u8], timeout: Duration) -> HostResult<()> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| HostError::io(path.to_path_buf(), io::Error::other(e)))?;
    // SAFETY: the child only calls async-signal-safe functions (open, write, _exit)
    // on data prepared before the fork, and never returns into the caller's stack.
    let forked = unsafe { fork() };
    match forked {
        Err(e) => Err(HostError::io(path.to_path_buf(), e.into())),
        Ok(ForkResult::Child) => {
            let code = match child_write(&cpath, bytes) {
                Ok(()) => 0,
                Err(errno) => (errno as i32).clamp(1, 254),
            };
            // SAFETY: `_exit` ends the child at once, without running atexit handlers
            // or destructors that belong to the parent's state.
            unsafe { nix::libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => wait_bounded(path, child, timeout),
    }
}

fn child_write(cpath: &std::ffi::CStr, bytes: &[u8]) -> nix::Result<()> {
    use nix::fcntl::{open, OFlag};
    let fd = open(
        cpath,
        OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: `fd` was just opened by this process and is owned here alone.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let n = nix::unistd::write(&fd, bytes)?;
    if n == bytes.len() {
        Ok(())
    } else {
        Err(nix::errno::Errno::EIO)
    }
}

fn wait_bounded(path: &Path, child: Pid, timeout: Duration) -> HostResult<()> {
    let start = Instant::now();
    let mut nap = Duration::from_micros(50);
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => {
                return Err(HostError::io(
                    path.to_path_buf(),
                    io::Error::from_raw_os_error(code),
                ))
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Err(HostError::io(
                    path.to_path_buf(),
                    io::Error::other(format!("writer killed by {sig}")),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(HostError::io(path.to_path_buf(), e.into())),
        }
        if start.elapsed() >= timeout {
            // The child may sit in an uninterruptible kernel wait; SIGKILL takes effect
            // when it leaves it. We do not wait: init reaps it if it ever ends.
            let _ = kill(child, Signal::SIGKILL);
            return Err(HostError::Timeout {
                path: path.to_path_buf(),
                timeout,
            });
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_root() {
        let h = Host::new("/tmp/fixture");
        assert_eq!(
            h.path("/sys/bus/pci"),
            Path::new("/tmp/fixture/sys/bus/pci")
        );
        assert_eq!(
            h.path("etc/vfio-early.toml"),
            Path::new("/tmp/fixture/etc/vfio-early.toml")
        );
        assert!(!h.is_live());
        assert!(Host::live().is_live());
    }

    #[test]
    fn attributes_are_read_one_page_at_most() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("class")).unwrap();
        let h = Host::new(dir.path());
        assert_eq!(h.read_attr("class").map(|s| s.len()), Some(4096));
        assert_eq!(h.read_attr("missing"), None);
    }

    #[test]
    fn fixture_refuses_kernel_changes() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        let err = h.require_live("load module vfio-pci").unwrap_err();
        assert!(err.to_string().contains("not the live system"), "{err}");
    }

    #[test]
    fn bounded_write_reports_errno_and_success() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        fs::write(dir.path().join("attr"), "").unwrap();
        h.write_bounded("attr", "vfio-pci", Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("attr")).unwrap(),
            "vfio-pci"
        );
        // A directory where a file should be: EISDIR, reported with the path.
        fs::create_dir(dir.path().join("d")).unwrap();
        let err = h
            .write_bounded("d", "x", Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(err.errno(), Some(libc_eisdir()));
        assert!(err.to_string().contains("/d"), "{err}");
    }

    #[test]
    fn bounded_write_gives_up_on_a_fifo_without_reader() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("unbind");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let h = Host::new(dir.path());
        let err = h
            .write_bounded("unbind", "0000:01:00.0", Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(err, HostError::Timeout { .. }), "{err}");
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        let held = h.lock(Duration::from_millis(100)).unwrap();
        let err = h.lock(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, HostError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("run/vfio-early/lock"), "{err}");
        drop(held);
        h.lock(Duration::from_millis(50)).unwrap();
    }

    fn libc_eisdir() -> i32 {
        nix::errno::Errno::EISDIR as i32
    }
}
