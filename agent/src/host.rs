//! The one filesystem seam.
//!
//! Every read and write of `/sys`, `/proc`, `/dev/kmsg`, `/etc`, `/lib/modules` and
//! `/run`, and every call that changes the running kernel (loading a module), goes
//! through a [`Host`]. The live host has the root `/`; tests point a `Host` at a
//! directory tree shaped like the real one. With any root other than `/`,
//! [`Host::is_live`] is false and nothing reaches the running kernel: module loads are
//! refused, and sysfs "writes" are plain file writes inside the fixture. A root other
//! than `/` whose `sys` or `proc` is the running kernel's ([`Host::check_root`]) is
//! refused outright.
//!
//! Hostile files are met at the seam:
//! - **Reads** ([`read_file`] and every `Host::read*`) look at the file before opening
//!   it: a FIFO, socket, device or directory is refused by name without being opened
//!   (opening a FIFO blocks, opening a device can have effects), the file is then
//!   opened `O_NONBLOCK`, checked again with `fstat`, and read up to a limit enforced
//!   while reading.
//! - **Writes** stay inside their target. A sysfs write ([`Host::write`],
//!   [`Host::write_bounded`]) resolves the file's directory beneath the root's `sys/`
//!   with `openat2(RESOLVE_BENEATH)` (Linux 5.6+; a checked walk of the same rule where
//!   the kernel lacks it): the relative in-tree links sysfs is made of
//!   (`bus/pci/devices/X`, `driver`) are followed, a link that leads out (absolute, or
//!   `..` past `sys/`) is refused; the file itself is opened `O_NOFOLLOW`. The agent's
//!   own files live in `run/vfio-early/` (never a link), written through temp files
//!   with unique names (`O_CREAT | O_EXCL | O_NOFOLLOW`) renamed into place; a failed
//!   write leaves no temp file. [`Host::lock`] serialises runs with `flock` there.
//!
//! Kernel writes can block forever (an `unbind` waiting on a wedged driver). A thread
//! stuck in such a write cannot be killed, so [`Host::write_bounded`] performs the
//! write in a child process and abandons it when the time is up. The child shares the
//! agent's memory (`clone(CLONE_VM)`, not `fork`: no page tables to copy, no
//! copy-on-write faults; see [`spawn_shared`]), runs on a stack of its own with copies
//! of the resolved directory's descriptor, the file name and the value, and only
//! opens, writes and leaves, by raw system calls.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// The lock every run that changes devices takes (see [`Host::lock`]).
pub(crate) const LOCK_PATH: &str = "run/vfio-early/lock";

/// Held while a run changes devices; dropping it releases the lock.
pub type LockGuard = RunLock;

/// Most a sysfs attribute can hold (one page).
const ATTR_MAX: u64 = 4096;
/// The default bound of [`Host::read`] and [`Host::read_bytes`]; callers that know
/// their file pass a tighter one to [`Host::read_limited`].
pub const READ_MAX: u64 = 64 << 20;
/// The agent's own directory (record, full log, lock), relative to the root.
pub const RUN_DIR: &str = "run/vfio-early";
/// Symbolic links followed in one path before giving up (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// An I/O failure or a refusal, with the path it concerns.
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
    /// Not a regular file where one is expected (a FIFO, socket, device, directory):
    /// refused without reading or writing it.
    #[error("{}: is {kind}, not a regular file; not opened", path.display())]
    Special {
        /// The full path.
        path: PathBuf,
        /// What it is ("a FIFO", "a socket", ...).
        kind: &'static str,
    },
    /// Larger than the reader's limit (seen from its size, or while reading).
    #[error("{}: {}more than the {limit} bytes allowed; not read", path.display(), size.map(|s| format!("{s} bytes, ")).unwrap_or_default())]
    TooLarge {
        /// The full path.
        path: PathBuf,
        /// Its size, when the file said.
        size: Option<u64>,
        /// The limit.
        limit: u64,
    },
    /// A link that leads out of the tree a write must stay in, or a link where the
    /// file itself was expected: nothing was written.
    #[error("{}: {why}; refused", path.display())]
    Escapes {
        /// The full path asked for.
        path: PathBuf,
        /// Which rule it broke.
        why: String,
    },
    /// The root's `sys` or `proc` is the running kernel's, but the root is not `/`.
    #[error("{}: is the running kernel's {what}, but the root is not /; refusing to treat it as a fixture", path.display())]
    LiveTree {
        /// The directory.
        path: PathBuf,
        /// `sysfs` or `procfs`.
        what: &'static str,
    },
    /// Another run holds the lock.
    #[error("{}: another vfio-early run still holds the lock after {} ms", path.display(), wait.as_millis())]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// How long this run waited.
        wait: Duration,
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

    /// True when the file (or a directory on its way) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The message without the path in front (for errors that show the path
    /// themselves).
    pub fn reason(&self) -> String {
        let full = self.to_string();
        match self {
            Self::Io { path, .. }
            | Self::Timeout { path, .. }
            | Self::Special { path, .. }
            | Self::TooLarge { path, .. }
            | Self::Escapes { path, .. }
            | Self::LiveTree { path, .. }
            | Self::Busy { path, .. } => full
                .strip_prefix(&format!("{}: ", path.display()))
                .map_or_else(|| full.clone(), str::to_owned),
            Self::NotLive { .. } => full,
        }
    }

    fn io(path: PathBuf, source: io::Error) -> Self {
        Self::Io { path, source }
    }

    fn errno_at(path: &Path, e: Errno) -> Self {
        Self::io(path.to_path_buf(), io::Error::from(e))
    }

    fn escapes(path: &Path, why: impl Into<String>) -> Self {
        Self::Escapes {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }
}

/// Result of host operations.
pub(crate) type HostResult<T> = Result<T, HostError>;

/// What a file type is, in words, when it is not a regular file.
fn special_kind(ft: fs::FileType) -> Option<&'static str> {
    if ft.is_file() {
        None
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_symlink() {
        Some("a symbolic link")
    } else {
        Some("something else")
    }
}

fn special_mode(mode: u32) -> Option<&'static str> {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => None,
        SFlag::S_IFIFO => Some("a FIFO"),
        SFlag::S_IFSOCK => Some("a socket"),
        SFlag::S_IFCHR => Some("a character device"),
        SFlag::S_IFBLK => Some("a block device"),
        SFlag::S_IFDIR => Some("a directory"),
        SFlag::S_IFLNK => Some("a symbolic link"),
        _ => Some("something else"),
    }
}

/// Reads a whole regular file, at most `limit` bytes, without ever blocking in `open`.
///
/// The file (links followed) is looked at first: anything but a regular file is
/// refused by name and never opened. It is then opened `O_NONBLOCK | O_NOCTTY`, checked
/// again (it may have been swapped), and read with the limit enforced while reading: a
/// file that grows past it, or lies about its size (`/proc`, `/sys` say 0 or 4096), is
/// refused when the limit is crossed, not after reading it all.
pub fn read_file(path: &Path, limit: u64) -> HostResult<Vec<u8>> {
    let file = open_regular(path, limit)?;
    let size = file.metadata().map_or(0, |m| m.len());
    let cap = usize::try_from(size.min(limit)).unwrap_or(0);
    let mut buf = Vec::with_capacity(cap.saturating_add(1));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| HostError::io(path.to_path_buf(), e))?;
    if buf.len() as u64 > limit {
        return Err(HostError::TooLarge {
            path: path.to_path_buf(),
            size: None,
            limit,
        });
    }
    Ok(buf)
}

/// Opens a regular file for reading as [`read_file`] does (looked at before it is
/// opened, `O_NONBLOCK`, checked again, at most `limit` bytes by its size), for a
/// reader that streams it and bounds what it reads itself.
pub fn open_regular(path: &Path, limit: u64) -> HostResult<fs::File> {
    let io = |e| HostError::io(path.to_path_buf(), e);
    let check = |meta: &fs::Metadata| -> HostResult<()> {
        if let Some(kind) = special_kind(meta.file_type()) {
            return Err(HostError::Special {
                path: path.to_path_buf(),
                kind,
            });
        }
        if meta.len() > limit {
            return Err(HostError::TooLarge {
                path: path.to_path_buf(),
                size: Some(meta.len()),
                limit,
            });
        }
        Ok(())
    };
    check(&fs::metadata(path).map_err(io)?)?;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    check(&file.metadata().map_err(io)?)?;
    Ok(file)
}

/// Opens a character device read-write (a VFIO node), `O_NONBLOCK | O_NOCTTY`: anything
/// else at the path (a FIFO or file planted in its place) is refused unopened, and the
/// node is checked again once open.
pub fn open_char_device(path: &Path) -> HostResult<fs::File> {
    let io = |e| HostError::io(path.to_path_buf(), e);
    let check = |meta: &fs::Metadata| -> HostResult<()> {
        let ft = meta.file_type();
        if ft.is_char_device() {
            return Ok(());
        }
        Err(HostError::Special {
            path: path.to_path_buf(),
            kind: special_kind(ft).unwrap_or("a regular file"),
        })
    };
    check(&fs::metadata(path).map_err(io)?)?;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    check(&file.metadata().map_err(io)?)?;
    Ok(file)
}

/// [`read_file`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> HostResult<String> {
    String::from_utf8(read_file(path, limit)?).map_err(|e| {
        HostError::io(
            path.to_path_buf(),
            io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor it has just received from the kernel
    // (a successful open) and hands ownership over here, once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens a directory as an `O_PATH` descriptor; with `nofollow`, a link is refused.
fn open_dir_at(dir: Option<&OwnedFd>, name: &OsStr, nofollow: bool) -> nix::Result<OwnedFd> {
    let mut flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if nofollow {
        flags |= OFlag::O_NOFOLLOW;
    }
    openat(dir.map(AsRawFd::as_raw_fd), name, flags, Mode::empty()).map(owned)
}

/// One directory's attributes ([`Host::attr_dir`]): the open directory, and one buffer
/// of a page and a byte that every read reuses.
#[derive(Debug)]
pub(crate) struct AttrDir {
    dir: OwnedFd,
    buf: Vec<u8>,
}

/// A page, and one byte to see a longer file.
const ATTR_BUF: usize = ATTR_MAX as usize + 1;

impl AttrDir {
    /// Attribute `name`, trimmed: `None` when it does not exist, is not a regular file,
    /// is larger than a page or is not text (as [`Host::read_attr`]).
    pub(crate) fn text(&mut self, name: &str) -> Option<&str> {
        let dir = self.dir.as_raw_fd();
        let regular = |st: &nix::sys::stat::FileStat| {
            special_mode(st.st_mode).is_none()
                && u64::try_from(st.st_size).is_ok_and(|n| n <= ATTR_MAX)
        };
        if !regular(&fstatat(Some(dir), name, nix::fcntl::AtFlags::empty()).ok()?) {
            return None;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = owned(openat(Some(dir), name, flags, Mode::empty()).ok()?);
        if !regular(&nix::sys::stat::fstat(fd.as_raw_fd()).ok()?) {
            return None;
        }
        // A regular file's read gives less than asked only at its end, so a short read
        // ends it (sysfs gives an attribute whole in one read): one call, not two.
        let mut len = 0;
        while len < self.buf.len() {
            match nix::unistd::read(fd.as_raw_fd(), &mut self.buf[len..]) {
                Ok(0) => break,
                Ok(n) if len + n < self.buf.len() => {
                    len += n;
                    break;
                }
                Ok(n) => len += n,
                Err(Errno::EINTR) => {}
                Err(_) => return None,
            }
        }
        if len > ATTR_MAX as usize {
            return None;
        }
        std::str::from_utf8(&self.buf[..len]).ok().map(str::trim)
    }

    /// Attribute `name` as an owned string ([`AttrDir::text`]).
    pub(crate) fn string(&mut self, name: &str) -> Option<String> {
        self.text(name).map(str::to_owned)
    }

    /// Attribute `name` as a hexadecimal number, with or without `0x`.
    pub(crate) fn hex(&mut self, name: &str) -> Option<u32> {
        let v = self.text(name)?;
        u32::from_str_radix(v.strip_prefix("0x").unwrap_or(v), 16).ok()
    }

    /// The file name link `name` points to (`driver` -> `vfio-pci`); `None` when there
    /// is no link.
    pub(crate) fn link_name(&mut self, name: &str) -> Option<String> {
        use nix::NixPath as _;
        let dir = self.dir.as_raw_fd();
        let buf = &mut self.buf;
        let rc = name
            .with_nix_path(|c| {
                // SAFETY: `c` is a NUL-terminated name, `buf` is writable for its whole
                // length, and readlinkat writes at most that many bytes into it.
                unsafe {
                    nix::libc::readlinkat(dir, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                }
            })
            .ok()?;
        // A target as long as the buffer may have been cut: not a name to trust.
        let len = usize::try_from(rc).ok().filter(|&n| n < buf.len())?;
        let target = Path::new(OsStr::from_bytes(&buf[..len]));
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }
}

/// How a path was resolved beneath a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` (Linux 5.6+).
    Openat2,
    /// The same rule walked component by component, for kernels without `openat2`.
    Walk,
}

/// Why a resolution failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// A link leads out of the base (absolute, or `..` past it).
    Escapes,
    /// The kernel said no.
    Os(Errno),
}

/// Resolves the directory `rel` beneath `base`: relative links are followed as long as
/// they stay beneath it; an absolute link, or `..` past `base`, is [`ResolveError::Escapes`].
/// Tries `openat2` first and walks the path itself where the kernel has no `openat2`
/// (`ENOSYS`, or `EPERM` from a seccomp filter); returns which was used.
pub fn resolve_beneath(base: &OwnedFd, rel: &Path) -> Result<(OwnedFd, Resolver), ResolveError> {
    match resolve_with(base, rel, Resolver::Openat2) {
        Err(ResolveError::Os(Errno::ENOSYS | Errno::EPERM)) => {
            resolve_with(base, rel, Resolver::Walk).map(|fd| (fd, Resolver::Walk))
        }
        r => r.map(|fd| (fd, Resolver::Openat2)),
    }
}

/// [`resolve_beneath`] with a chosen resolver (tests run both on the same trees).
pub fn resolve_with(base: &OwnedFd, rel: &Path, how: Resolver) -> Result<OwnedFd, ResolveError> {
    match how {
        Resolver::Openat2 => {
            use nix::fcntl::{openat2, OpenHow, ResolveFlag};
            let how = OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            match openat2(base.as_raw_fd(), rel, how) {
                Ok(fd) => Ok(owned(fd)),
                Err(Errno::EXDEV) => Err(ResolveError::Escapes),
                Err(e) => Err(ResolveError::Os(e)),
            }
        }
        Resolver::Walk => walk_beneath(base, rel),
    }
}

/// The checked walk: one component at a time from `base`, never opening `..` (a stack
/// of the directories entered is popped instead, so the walk cannot climb above
/// `base`), links read and spliced into the rest of the path.
fn walk_beneath(base: &OwnedFd, rel: &Path) -> Result<OwnedFd, ResolveError> {
    let os = |e: Errno| ResolveError::Os(e);
    let mut stack = vec![base.try_clone().map_err(|e| {
        os(Errno::from_raw(
            e.raw_os_error().unwrap_or(nix::libc::EBADF),
        ))
    })?];
    let mut todo: std::collections::VecDeque<OsString> = std::collections::VecDeque::new();
    let push_components = |todo: &mut std::collections::VecDeque<OsString>,
                           p: &Path,
                           front: bool|
     -> Result<(), ResolveError> {
        let mut parts = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => parts.push(n.to_os_string()),
                Component::ParentDir => parts.push(OsString::from("..")),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return Err(ResolveError::Escapes),
            }
        }
        if front {
            for p in parts.into_iter().rev() {
                todo.push_front(p);
            }
        } else {
            todo.extend(parts);
        }
        Ok(())
    };
    push_components(&mut todo, rel, false)?;
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if stack.len() == 1 {
                return Err(ResolveError::Escapes);
            }
            stack.pop();
            continue;
        }
        let cur = stack.last().ok_or(ResolveError::Escapes)?;
        let st = fstatat(
            Some(cur.as_raw_fd()),
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(os)?;
        if special_mode(st.st_mode) == Some("a symbolic link") {
            links += 1;
            if links > MAX_LINKS {
                return Err(os(Errno::ELOOP));
            }
            let target =
                nix::fcntl::readlinkat(Some(cur.as_raw_fd()), name.as_os_str()).map_err(os)?;
            push_components(&mut todo, Path::new(&target), true)?;
            continue;
        }
        // O_NOFOLLOW: a directory swapped for a link since the look is refused.
        let fd = open_dir_at(Some(cur), &name, true).map_err(os)?;
        stack.push(fd);
    }
    stack.pop().ok_or(ResolveError::Escapes)
}

/// A file to write, resolved before anything is written (and before any child starts).
#[derive(Debug)]
struct Target {
    /// The file's directory, resolved beneath the base.
    dir: OwnedFd,
    /// The last component, opened `O_NOFOLLOW`.
    name: CString,
    /// The full path, for messages.
    shown: PathBuf,
}

/// The descriptor of the held run lock, closed by every writer child so that a child
/// abandoned in the kernel does not keep the lock after the run ends.
static LOCK_FD: AtomicI32 = AtomicI32::new(-1);
/// Makes temp file names unique within a process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The run lock (`run/vfio-early/lock`); released when dropped.
#[derive(Debug)]
pub struct RunLock {
    fd: OwnedFd,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ =
            LOCK_FD.compare_exchange(self.fd.as_raw_fd(), -1, Ordering::SeqCst, Ordering::SeqCst);
    }
}

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

    /// Refuses a root other than `/` whose `sys` or `proc` resolves into the running
    /// kernel's sysfs or procfs (a link to `/sys`, a bind mount): such a "fixture" would
    /// let a run that is not live read, and write, the real machine.
    pub fn check_root(&self) -> HostResult<()> {
        if self.live {
            return Ok(());
        }
        use nix::sys::statfs::{statfs, PROC_SUPER_MAGIC, SYSFS_MAGIC};
        for (dir, magic, what) in [
            ("sys", SYSFS_MAGIC, "sysfs"),
            ("proc", PROC_SUPER_MAGIC, "procfs"),
        ] {
            let path = self.path(dir);
            if statfs(&path).is_ok_and(|s| s.filesystem_type() == magic) {
                return Err(HostError::LiveTree { path, what });
            }
        }
        Ok(())
    }

    /// The full path of `rel` (a path relative to the root, such as `sys/bus/pci`).
    ///
    /// A leading `/` in `rel` is ignored, so `/etc/x` and `etc/x` name the same file.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(strip_root(rel.as_ref()))
    }

    /// Whether `rel` exists (following symlinks).
    pub fn exists(&self, rel: impl AsRef<Path>) -> bool {
        self.path(rel).exists()
    }

    /// Reads a whole regular file as text, at most [`READ_MAX`] bytes (see
    /// [`read_file`]: special files are refused without being opened).
    pub fn read(&self, rel: impl AsRef<Path>) -> HostResult<String> {
        read_text(&self.path(rel), READ_MAX)
    }

    /// Reads a whole regular file as bytes, at most [`READ_MAX`].
    pub(crate) fn read_bytes(&self, rel: impl AsRef<Path>) -> HostResult<Vec<u8>> {
        read_file(&self.path(rel), READ_MAX)
    }

    /// Reads a whole regular file as text, at most `limit` bytes.
    pub fn read_limited(&self, rel: impl AsRef<Path>, limit: u64) -> HostResult<String> {
        read_text(&self.path(rel), limit)
    }

    /// Reads a one-value sysfs attribute, trimmed; `None` when it does not exist, is not
    /// a regular file (a link to `/dev/zero` in a hostile tree), is larger than a page
    /// (what sysfs gives at most) or is not text.
    pub(crate) fn read_attr(&self, rel: impl AsRef<Path>) -> Option<String> {
        let buf = read_file(&self.path(rel), ATTR_MAX).ok()?;
        String::from_utf8(buf).ok().map(|s| s.trim().to_owned())
    }

    /// The attributes of one sysfs directory (a PCI device's), read one after another
    /// relative to the directory, opened once, into one buffer; `None` when the
    /// directory does not exist. Each read is [`Host::read_attr`]'s: looked at first, a
    /// special file is never opened; opened `O_NONBLOCK`, checked again, at most a page.
    pub(crate) fn attr_dir(&self, rel: impl AsRef<Path>) -> Option<AttrDir> {
        let path = self.path(rel);
        let dir = open_dir_at(None, path.as_os_str(), false).ok()?;
        Some(AttrDir {
            dir,
            buf: vec![0; ATTR_BUF],
        })
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
            .map(|e| {
                e.file_name()
                    .into_string()
                    .unwrap_or_else(|n| n.to_string_lossy().into_owned())
            })
            .collect();
        names.sort_unstable();
        names
    }

    fn open_root(&self) -> HostResult<OwnedFd> {
        open_dir_at(None, self.root.as_os_str(), false)
            .map_err(|e| HostError::errno_at(&self.root, e))
    }

    /// Opens a top-level directory of the root (`sys`, `dev`, `run`) that must not be
    /// a link.
    fn open_top(&self, root: &OwnedFd, name: &str) -> HostResult<OwnedFd> {
        let shown = self.path(name);
        match open_dir_at(Some(root), OsStr::new(name), true) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOTDIR | Errno::ELOOP)
                if fs::symlink_metadata(&shown).is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                Err(HostError::escapes(&shown, "is a symbolic link"))
            }
            Err(e) => Err(HostError::errno_at(&shown, e)),
        }
    }

    /// Resolves a sysfs file for writing: `rel` must lie under `sys/`; its directory is
    /// resolved beneath the root's `sys/` ([`resolve_beneath`]), its name is checked to
    /// be a plain name (opened `O_NOFOLLOW` later).
    fn sys_target(&self, rel: &Path) -> HostResult<Target> {
        let rel = strip_root(rel);
        let shown = self.path(rel);
        let under = rel
            .strip_prefix("sys")
            .map_err(|_| HostError::escapes(&shown, "is not under sys/, where writes go"))?;
        let name = match under.file_name() {
            Some(n) if under.components().next_back() == Some(Component::Normal(n)) => n,
            _ => return Err(HostError::escapes(&shown, "names no file")),
        };
        let root = self.open_root()?;
        let base = self.open_top(&root, "sys")?;
        if !self.live {
            use nix::sys::statfs::{fstatfs, SYSFS_MAGIC};
            if fstatfs(&base).is_ok_and(|s| s.filesystem_type() == SYSFS_MAGIC) {
                return Err(HostError::LiveTree {
                    path: self.path("sys"),
                    what: "sysfs",
                });
            }
        }
        let parent = under.parent().unwrap_or(Path::new(""));
        let dir = if parent.as_os_str().is_empty() {
            base
        } else {
            match resolve_beneath(&base, parent) {
                Ok((fd, _)) => fd,
                Err(ResolveError::Escapes) => {
                    return Err(HostError::escapes(
                        &shown,
                        format!(
                            "a link on the way leads out of {}",
                            self.path("sys").display()
                        ),
                    ))
                }
                Err(ResolveError::Os(e)) => return Err(HostError::errno_at(&shown, e)),
            }
        };
        let name = CString::new(name.as_bytes())
            .map_err(|e| HostError::io(shown.clone(), io::Error::other(e)))?;
        Ok(Target { dir, name, shown })
    }

    /// Writes a value to an existing sysfs file (never creates one), confined beneath
    /// the root's `sys/` (see [`Host::sys_target`]). Opened `O_NONBLOCK`, so a FIFO
    /// without a reader fails at once instead of hanging; a FIFO with one is refused.
    /// The file is opened with `O_TRUNC` (ignored by sysfs, and what keeps a fixture
    /// file holding exactly the last value written, as an attribute reads back).
    pub fn write(&self, rel: impl AsRef<Path>, value: &str) -> HostResult<()> {
        let t = self.sys_target(rel.as_ref())?;
        let fd = openat(
            Some(t.dir.as_raw_fd()),
            t.name.as_c_str(),
            OFlag::O_WRONLY
                | OFlag::O_TRUNC
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(owned)
        .map_err(|e| open_error(&t.shown, e))?;
        let st =
            nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| HostError::errno_at(&t.shown, e))?;
        if let Some(kind) = special_mode(st.st_mode) {
            return Err(HostError::Special {
                path: t.shown,
                kind,
            });
        }
        fs::File::from(fd)
            .write_all(value.as_bytes())
            .map_err(|e| HostError::io(t.shown, e))
    }

    /// Like [`Host::write`], but performed by a child process that is abandoned (and
    /// sent SIGKILL) when it has not finished within `timeout`. The file is resolved,
    /// confined, before the child starts.
    pub(crate) fn write_bounded(
        &self,
        rel: impl AsRef<Path>,
        value: &str,
        timeout: Duration,
    ) -> HostResult<()> {
        let t = self.sys_target(rel.as_ref())?;
        bounded_write(&t, value.as_bytes(), timeout)
    }

    /// The agent's own directory, `run/vfio-early`, created when missing; neither it nor
    /// `run` may be a link.
    fn run_dir(&self) -> HostResult<OwnedFd> {
        let root = self.open_root()?;
        let run = match self.open_top(&root, "run") {
            Err(e) if e.is_not_found() => {
                nix::sys::stat::mkdirat(
                    Some(root.as_raw_fd()),
                    "run",
                    Mode::from_bits_truncate(0o755),
                )
                .map_err(|e| HostError::errno_at(&self.path("run"), e))?;
                self.open_top(&root, "run")?
            }
            r => r?,
        };
        let shown = self.path(RUN_DIR);
        match nix::sys::stat::mkdirat(
            Some(run.as_raw_fd()),
            "vfio-early",
            Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(HostError::errno_at(&shown, e)),
        }
        match open_dir_at(Some(&run), OsStr::new("vfio-early"), true) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOTDIR | Errno::ELOOP) => Err(HostError::escapes(
                &shown,
                "is not a directory (a link?); the agent writes only into its own directory",
            )),
            Err(e) => Err(HostError::errno_at(&shown, e)),
        }
    }

    /// Creates or replaces a file the agent owns, `run/vfio-early/NAME`, atomically:
    /// written to a temp file with a unique name (`O_CREAT | O_EXCL | O_NOFOLLOW`), then
    /// renamed over `NAME`. A failed write (a full `/run`) removes the temp file.
    pub(crate) fn write_owned(&self, rel: impl AsRef<Path>, contents: &[u8]) -> HostResult<()> {
        let rel = strip_root(rel.as_ref());
        let shown = self.path(rel);
        let name = rel
            .strip_prefix(RUN_DIR)
            .ok()
            .and_then(|n| {
                let mut c = n.components();
                match (c.next(), c.next()) {
                    (Some(Component::Normal(n)), None) => Some(n.to_os_string()),
                    _ => None,
                }
            })
            .ok_or_else(|| HostError::escapes(&shown, format!("is not a file of {RUN_DIR}/")))?;
        let dir = self.run_dir()?;
        let dfd = Some(dir.as_raw_fd());
        let tmp = {
            let mut t = OsString::from(".");
            t.push(&name);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            t.push(format!(
                ".{}.{}.{nanos:x}.tmp",
                std::process::id(),
                TMP_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            t
        };
        let tmp_shown = self.path(Path::new(RUN_DIR).join(&tmp));
        let fd = openat(
            dfd,
            tmp.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(owned)
        .map_err(|e| HostError::errno_at(&tmp_shown, e))?;
        let mut file = fs::File::from(fd);
        let written = file
            .write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| HostError::io(tmp_shown.clone(), e));
        drop(file);
        let renamed = written.and_then(|()| {
            nix::fcntl::renameat(dfd, tmp.as_os_str(), dfd, name.as_os_str())
                .map_err(|e| HostError::errno_at(&shown, e))
        });
        if renamed.is_err() {
            let _ = nix::unistd::unlinkat(
                dfd,
                tmp.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        renamed
    }

    /// Takes the run lock (`flock` on `run/vfio-early/lock`), waiting at most `wait`
    /// for another run to release it.
    pub fn lock(&self, wait: Duration) -> HostResult<RunLock> {
        let dir = self.run_dir()?;
        let shown = self.path(LOCK_PATH);
        let fd = openat(
            Some(dir.as_raw_fd()),
            "lock",
            OFlag::O_RDWR
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map(owned)
        .map_err(|e| open_error(&shown, e))?;
        let start = Instant::now();
        loop {
            // SAFETY: `fd` is a valid descriptor owned by this function.
            let rc = unsafe {
                nix::libc::flock(fd.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB)
            };
            match Errno::result(rc) {
                Ok(_) => break,
                Err(Errno::EWOULDBLOCK | Errno::EINTR) => {}
                Err(e) => return Err(HostError::errno_at(&shown, e)),
            }
            if start.elapsed() >= wait {
                return Err(HostError::Busy { path: shown, wait });
            }
            std::thread::sleep(Duration::from_millis(10).min(wait));
        }
        LOCK_FD.store(fd.as_raw_fd(), Ordering::SeqCst);
        Ok(RunLock { fd })
    }

    /// Opens the kernel log for appending records: `dev/kmsg` under the root, never
    /// through a link, without blocking; it must be the kernel's log device (character
    /// device 1:11) on the live system, a regular file in a fixture. `Ok(None)` when
    /// there is none.
    pub fn open_kmsg(&self) -> HostResult<Option<fs::File>> {
        let shown = self.path("dev/kmsg");
        let root = self.open_root()?;
        let dev = match self.open_top(&root, "dev") {
            Err(e) if e.is_not_found() => return Ok(None),
            r => r?,
        };
        let is_kmsg = |st: &nix::sys::stat::FileStat| -> Result<(), &'static str> {
            match special_mode(st.st_mode) {
                None if !self.live => Ok(()),
                Some("a character device")
                    if self.live
                        && nix::sys::stat::major(st.st_rdev) == 1
                        && nix::sys::stat::minor(st.st_rdev) == 11 =>
                {
                    Ok(())
                }
                None => Err("a regular file"),
                Some(kind) => Err(kind),
            }
        };
        let st = match fstatat(
            Some(dev.as_raw_fd()),
            "kmsg",
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(HostError::errno_at(&shown, e)),
            Ok(st) => st,
        };
        is_kmsg(&st).map_err(|kind| HostError::Special {
            path: shown.clone(),
            kind,
        })?;
        let fd = openat(
            Some(dev.as_raw_fd()),
            "kmsg",
            OFlag::O_WRONLY
                | OFlag::O_APPEND
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(owned)
        .map_err(|e| open_error(&shown, e))?;
        let st =
            nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| HostError::errno_at(&shown, e))?;
        is_kmsg(&st).map_err(|kind| HostError::Special { path: shown, kind })?;
        Ok(Some(fs::File::from(fd)))
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

    /// The release of the running kernel (`proc/sys/kernel/osrelease`).
    pub(crate) fn kernel_release(&self) -> Option<String> {
        self.read_attr("proc/sys/kernel/osrelease")
    }
}

fn strip_root(rel: &Path) -> &Path {
    rel.strip_prefix("/").unwrap_or(rel)
}

/// An `open` failure in words: a link as the last component (`O_NOFOLLOW`) is refused
/// by name.
fn open_error(path: &Path, e: Errno) -> HostError {
    match e {
        Errno::ELOOP => HostError::escapes(path, "is a symbolic link; not written through"),
        Errno::ENXIO => HostError::Special {
            path: path.to_path_buf(),
            kind: "a FIFO or socket",
        },
        e => HostError::errno_at(path, e),
    }
}

/// Writes `bytes` to a resolved target in a child that shares this process's memory
/// ([`spawn_shared`]) and waits at most `timeout`.
///
/// The child closes its copy of the run lock (so an abandoned child does not hold it),
/// opens the prepared name in the prepared directory with `O_NOFOLLOW`, writes once,
/// and exits with the errno as its status (0: written whole); see [`write_child`].
fn bounded_write(t: &Target, bytes: &[u8], timeout: Duration) -> HostResult<()> {
    let name = t.name.as_bytes_with_nul();
    let spawned = ChildMem::new(size_of::<WriteArgs>() + name.len() + bytes.len() + 3 * 16)
        .and_then(|mut mem| {
            let args = WriteArgs {
                dir: t.dir.as_raw_fd(),
                lock_fd: LOCK_FD.load(Ordering::SeqCst),
                name: mem.put_slice(name).cast(),
                bytes: mem.put_slice(bytes),
                len: bytes.len(),
            };
            // SAFETY: `write_child` is such an entry: raw system calls on the `WriteArgs`
            // it is given, whose pointers all point into `mem`.
            unsafe { spawn_shared(mem, args, write_child) }
        });
    match spawned {
        Ok(child) => wait_bounded(&t.shown, child, timeout),
        Err(e) => Err(HostError::errno_at(&t.shown, e)),
    }
}

/// What [`write_child`] is given, in the child's own memory.
#[repr(C)]
#[derive(Clone, Copy)]
struct WriteArgs {
    /// The target's directory (the child's copy of the descriptor).
    dir: RawFd,
    /// The run lock's descriptor, or -1.
    lock_fd: RawFd,
    /// The file name, NUL-terminated.
    name: *const nix::libc::c_char,
    /// The value and its length.
    bytes: *const u8,
    len: usize,
}

/// The writer child of [`bounded_write`]: its exit status is the errno of the first
/// step that failed, clamped to 1..=254, or 0.
extern "C" fn write_child(arg: *mut nix::libc::c_void) -> nix::libc::c_int {
    use nix::libc;
    // SAFETY: `arg` is the `WriteArgs` that `spawn_shared` copied into this child's
    // memory, which stays mapped as long as the child runs.
    let a = unsafe { &*arg.cast::<WriteArgs>() };
    // SAFETY: system calls on the child's own descriptors and on memory `a` points
    // to (in the child's memory, `len` bytes at `bytes`, `name` NUL-terminated).
    let ret = unsafe {
        if a.lock_fd >= 0 {
            raw::close(a.lock_fd);
        }
        let flags = libc::O_WRONLY | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = raw::openat(a.dir, a.name, flags);
        match RawFd::try_from(fd) {
            Ok(fd) if fd >= 0 => {
                let n = raw::write(fd, a.bytes, a.len);
                if n < 0 || usize::try_from(n) == Ok(a.len) {
                    n.min(0)
                } else {
                    -libc::c_long::from(libc::EIO)
                }
            }
            _ => fd,
        }
    };
    #[allow(clippy::cast_possible_truncation)] // clamped to 0..=254 first
    raw::exit(if ret == 0 {
        0
    } else {
        (-ret).clamp(1, 254) as i32
    })
}

fn wait_bounded(path: &Path, child: SharedChild, timeout: Duration) -> HostResult<()> {
    match child.reap_within(timeout) {
        Ok(Some(Ended::Exited(0))) => Ok(()),
        Ok(Some(Ended::Exited(code))) => Err(open_error(path, Errno::from_raw(code))),
        Ok(Some(Ended::Signaled(sig))) => Err(HostError::io(
            path.to_path_buf(),
            io::Error::other(format!("writer killed by {sig}")),
        )),
        Ok(None) => Err(HostError::Timeout {
            path: path.to_path_buf(),
            timeout,
        }),
        Err(e) => Err(HostError::errno_at(path, e)),
    }
}

/// How a child waited for by [`reap_within`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it.
    Signaled(Signal),
}

/// Waits at most `timeout` (from now) for `child` to end, and reaps it ([`ChildWait`]).
/// `Ok(None)`: still running then, so it is sent SIGKILL and abandoned. The child may
/// sit in an uninterruptible kernel wait; SIGKILL takes effect when it leaves it, and
/// init reaps it if it ever ends: nothing here waits longer than `timeout`.
fn reap_within(child: Pid, timeout: Duration) -> nix::Result<Option<Ended>> {
    let start = Instant::now();
    let mut pause = ChildWait::new(child);
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG))? {
            WaitStatus::Exited(_, code) => return Ok(Some(Ended::Exited(code))),
            WaitStatus::Signaled(_, sig, _) => return Ok(Some(Ended::Signaled(sig))),
            _ => {}
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            let _ = kill(child, Signal::SIGKILL);
            return Ok(None);
        }
        pause.until_exit(left);
    }
}

/// Memory for a child of [`spawn_shared`], one anonymous mapping: a guard page
/// (`PROT_NONE`, so an overflow faults instead of writing elsewhere), the child's stack
/// above it, and above that the data the child reads (its argument block and every
/// byte it points to), copied in by the parent before the child starts.
///
/// Unmapped when dropped: only ever while no child can run on it (see
/// [`SharedChild::reap_within`]).
struct ChildMem {
    base: *mut u8,
    /// The whole mapping's length.
    len: usize,
    /// Where the next value goes (an offset; the data area starts at the stack's top).
    next: usize,
    /// The stack's top (an offset), 16-byte aligned.
    top: usize,
}

impl ChildMem {
    /// The child's stack: its frames are a few hundred bytes (raw system calls, no
    /// library code).
    const STACK: usize = 16 << 10;

    /// A mapping with room for `data` bytes of values: pass the sum of the sizes to be
    /// put, plus 16 for each `put`/`put_slice` (alignment).
    fn new(data: usize) -> nix::Result<Self> {
        use nix::libc;
        // SAFETY: a query without side effects (nix's wrapper would clear `errno`).
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let top = page + Self::STACK;
        let len = (top + data).next_multiple_of(page);
        // SAFETY: a new private anonymous mapping; no existing memory is involved.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let mem = Self {
            base: base.cast(),
            len,
            next: top,
            top,
        };
        // SAFETY: the lowest page of the mapping just made, which nothing uses yet.
        Errno::result(unsafe { libc::mprotect(base, page, libc::PROT_NONE) })?;
        Ok(mem)
    }

    /// Copies `items` into the data area; their address there.
    fn put_slice<T: Copy>(&mut self, items: &[T]) -> *const T {
        let at = self.next.next_multiple_of(align_of::<T>());
        let size = size_of_val(items);
        assert!(at + size <= self.len, "ChildMem sized too small");
        self.next = at + size;
        // SAFETY: `at .. at + size` lies in the mapping (checked above), is aligned for
        // `T`, and holds nothing else (`next` only grows); `T: Copy` has no drop.
        unsafe {
            let dst = self.base.add(at).cast::<T>();
            std::ptr::copy_nonoverlapping(items.as_ptr(), dst, items.len());
            dst
        }
    }
}

impl Drop for ChildMem {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `new`; nothing refers to it any more (the only
        // user, a child, has been reaped or never started).
        unsafe { nix::libc::munmap(self.base.cast(), self.len) };
    }
}

/// A child started by [`spawn_shared`], with the memory it runs on.
struct SharedChild {
    pid: Pid,
    /// Never dropped while the child might run: freed only by `reap_within` once the
    /// child has been reaped, leaked otherwise.
    mem: std::mem::ManuallyDrop<ChildMem>,
}

impl SharedChild {
    /// [`reap_within`] for this child. Once it has been reaped its memory is unmapped;
    /// otherwise (late: sent SIGKILL but maybe still inside a system call that reads
    /// its arguments; or a failed wait) the memory is leaked on purpose, a stack and a
    /// few bytes for each abandoned write.
    fn reap_within(self, timeout: Duration) -> nix::Result<Option<Ended>> {
        let ended = reap_within(self.pid, timeout);
        if let Ok(Some(_)) = ended {
            drop(std::mem::ManuallyDrop::into_inner(self.mem));
        }
        ended
    }
}

/// Starts `entry(copy of args)` as a child process that shares this process's memory:
/// `clone(CLONE_VM | SIGCHLD)`, which costs no copy of the page tables and no
/// copy-on-write faults afterwards, as `fork` does. Not `CLONE_VFORK`: the parent goes
/// on at once, to bound the wait; not `CLONE_THREAD`: the child is a process of its
/// own, waited for with `waitpid`/pidfd and killed with SIGKILL like a forked one, and
/// one stuck in the kernel does not keep this process from exiting. Without
/// `CLONE_FILES` the child has a copy of the descriptor table, as after `fork`.
///
/// `args` and everything it points to must be in `mem` (put there with
/// [`ChildMem::put_slice`]): the caller's own memory may be freed while an abandoned
/// child still reads its arguments in a system call. The child runs with every signal
/// blocked (only SIGKILL and the kernel's own faults end it early), so no signal
/// handler of the parent ever runs on its stack. (Not `nix::sched::clone`: it passes
/// the child a closure in its own stack frame, gone when it returns in the parent.)
///
/// # Safety
/// `entry` must be fit to run beside the parent in the same memory, with the parent's
/// thread pointer: it may only read its argument block, use its own stack, make
/// system calls through [`raw`] (never libc, which sets the parent thread's `errno`),
/// and end with [`raw::exit`]; it must not allocate, lock, panic or unwind.
unsafe fn spawn_shared<A: Copy>(
    mut mem: ChildMem,
    args: A,
    entry: extern "C" fn(*mut nix::libc::c_void) -> nix::libc::c_int,
) -> nix::Result<SharedChild> {
    use nix::libc;
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    let arg = mem.put_slice(std::slice::from_ref(&args));
    // SAFETY: the top of the stack in `mem`, 16-byte aligned, in the mapping.
    let stack = unsafe { mem.base.add(mem.top) };
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )?;
    // SAFETY: the child runs `entry` (fit for it: the caller's promise) on the stack in
    // `mem`, with its argument there too; `mem` outlives it (`SharedChild`).
    let pid = unsafe {
        libc::clone(
            entry,
            stack.cast(),
            libc::CLONE_VM | libc::SIGCHLD,
            arg.cast_mut().cast(),
        )
    };
    let cloned = Errno::result(pid);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    Ok(SharedChild {
        pid: Pid::from_raw(cloned?),
        mem: std::mem::ManuallyDrop::new(mem),
    })
}

/// The system calls of a [`spawn_shared`] child, made without libc: libc's wrappers set
/// `errno`, which is thread-local, found through the thread pointer the child shares
/// with the parent's thread. Each returns what the kernel does: a value, or `-errno`.
mod raw {
    use nix::libc::{self, c_char, c_int, c_long};

    /// A system call with up to four arguments.
    #[cfg(target_arch = "x86_64")]
    unsafe fn syscall4(nr: c_long, a: c_long, b: c_long, c: c_long, d: c_long) -> c_long {
        let ret;
        // SAFETY: the caller's: a system call whose arguments it vouches for; the
        // instruction clobbers rcx and r11, declared.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") nr => ret,
                in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// A system call with up to four arguments.
    #[cfg(target_arch = "aarch64")]
    unsafe fn syscall4(nr: c_long, a: c_long, b: c_long, c: c_long, d: c_long) -> c_long {
        let ret;
        // SAFETY: the caller's: a system call whose arguments it vouches for.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") nr,
                inlateout("x0") a => ret,
                in("x1") b, in("x2") c, in("x3") d,
                options(nostack),
            );
        }
        ret
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    compile_error!("host::raw has system call stubs for x86_64 and aarch64 only");

    /// `close(fd)`.
    pub(super) unsafe fn close(fd: c_int) -> c_long {
        // SAFETY: no memory involved.
        unsafe { syscall4(libc::SYS_close, fd.into(), 0, 0, 0) }
    }

    /// `openat(dir, name, flags)`, mode 0 (no `O_CREAT`).
    /// SAFETY (caller): `name` is NUL-terminated.
    pub(super) unsafe fn openat(dir: c_int, name: *const c_char, flags: c_int) -> c_long {
        // SAFETY: the caller's.
        unsafe {
            syscall4(
                libc::SYS_openat,
                dir.into(),
                name as c_long,
                flags.into(),
                0,
            )
        }
    }

    /// `write(fd, buf, len)`.
    /// SAFETY (caller): `len` readable bytes at `buf`.
    pub(super) unsafe fn write(fd: c_int, buf: *const u8, len: usize) -> c_long {
        #[allow(clippy::cast_possible_wrap)] // the kernel reads the register as size_t
        // SAFETY: the caller's.
        unsafe {
            syscall4(libc::SYS_write, fd.into(), buf as c_long, len as c_long, 0)
        }
    }

    /// `finit_module(fd, params, flags)`.
    /// SAFETY (caller): `params` is NUL-terminated.
    pub(super) unsafe fn finit_module(fd: c_int, params: *const c_char, flags: u32) -> c_long {
        // SAFETY: the caller's.
        unsafe {
            syscall4(
                libc::SYS_finit_module,
                fd.into(),
                params as c_long,
                flags.into(),
                0,
            )
        }
    }

    /// `exit(code)`: ends the calling process (the child is a process of its own, not
    /// a thread of the parent's group).
    pub(super) fn exit(code: c_int) -> ! {
        // SAFETY: ends the caller; touches no memory.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            core::arch::asm!("syscall", in("rax") libc::SYS_exit, in("rdi") c_long::from(code),
                options(noreturn, nostack));
            #[cfg(target_arch = "aarch64")]
            core::arch::asm!("svc 0", in("x8") libc::SYS_exit, in("x0") c_long::from(code),
                options(noreturn, nostack));
        }
    }
}

/// Waits for a child to end, at most a given time, without reaping it (the caller
/// does, and keeps its own deadline).
///
/// On a pidfd (`pidfd_open`, Linux 5.3+) the wait is one `poll` that returns the
/// moment the child ends. Where the kernel has no pidfds (`ENOSYS`, or any other
/// refusal) it falls back to naps that grow from 50 µs to 5 ms, never past the time
/// given.
#[derive(Debug)]
pub(crate) struct ChildWait {
    pidfd: Option<OwnedFd>,
    nap: Duration,
}

impl ChildWait {
    /// Opens the child's pidfd when the kernel has them.
    pub(crate) fn new(child: Pid) -> Self {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1;
        // it touches no memory of ours.
        let fd = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_open,
                child.as_raw(),
                0 as nix::libc::c_uint,
            )
        };
        // The kernel sets close-on-exec on a pidfd itself.
        let pidfd = RawFd::try_from(fd).ok().filter(|&fd| fd >= 0).map(owned);
        Self {
            pidfd,
            nap: Duration::from_micros(50),
        }
    }

    /// Returns when the child has ended or `left` has passed (or a signal came):
    /// the caller checks which.
    pub(crate) fn until_exit(&mut self, left: Duration) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        if let Some(fd) = &self.pidfd {
            // Whole milliseconds, rounded up: the child is never declared late early.
            let ms = left.as_micros().div_ceil(1000);
            let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let _ = poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], timeout);
            return;
        }
        std::thread::sleep(self.nap.min(left));
        self.nap = (self.nap * 2).min(Duration::from_millis(5));
    }

    /// Whether the wait is on a pidfd (false: the kernel has none, naps instead).
    #[cfg(test)]
    fn on_pidfd(&self) -> bool {
        self.pidfd.is_some()
    }
}

/// How a program run by [`run_bounded`] ended.
#[derive(Debug)]
pub(crate) enum Ran {
    /// It exited with this status; what it wrote to stderr (at most 4 KiB).
    Exited(i32, String),
    /// A signal ended it (`signal: 9 (SIGKILL)`).
    Signaled(String),
}

/// Runs a program of the live system with its arguments, as a forked child that
/// `exec`s it (stdin and stdout on `/dev/null`, stderr kept), and waits at most
/// `timeout` for it ([`ChildWait`]); a child still running then is sent SIGKILL and
/// abandoned. Everything the child needs is prepared before the fork.
pub(crate) fn run_bounded(program: &Path, args: &[&CStr], timeout: Duration) -> HostResult<Ran> {
    use nix::libc;
    let shown = program.to_path_buf();
    let prog = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| HostError::io(shown.clone(), io::Error::other("a NUL byte in the path")))?;
    let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(args.len() + 2);
    argv.push(prog.as_ptr());
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(std::ptr::null());
    let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map(owned)
        .map_err(|e| HostError::errno_at(Path::new("/dev/null"), e))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| HostError::errno_at(&shown, e))?;
    let lock_fd = LOCK_FD.load(Ordering::SeqCst);
    // SAFETY: the child only calls async-signal-safe functions (dup2, close, execv,
    // write, _exit) on data prepared before the fork, and never returns.
    let forked = unsafe { fork() };
    let child = match forked {
        Err(e) => return Err(HostError::errno_at(&shown, e)),
        // SAFETY: as above; `argv` is NULL-terminated and outlives the exec.
        Ok(ForkResult::Child) => unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(err_w.as_raw_fd(), 2);
            if lock_fd >= 0 {
                libc::close(lock_fd);
            }
            libc::execv(prog.as_ptr(), argv.as_ptr());
            let msg = b"cannot execute the program\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        },
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(err_w);
    drop(null);
    match reap_within(child, timeout) {
        Ok(Some(Ended::Exited(code))) => Ok(Ran::Exited(code, drain(err_r))),
        Ok(Some(Ended::Signaled(sig))) => Ok(Ran::Signaled(format!(
            "signal: {} ({})",
            sig as i32,
            sig.as_str()
        ))),
        Ok(None) => Err(HostError::Timeout {
            path: shown,
            timeout,
        }),
        Err(e) => Err(HostError::errno_at(&shown, e)),
    }
}

/// One module file for [`finit_bounded`]: loaded with `finit_module(fd, params, flags)`;
/// when it fails, loading goes on at step `on_failure` (the end of the soft dependency it
/// belongs to, or past the last step).
#[derive(Debug, Clone)]
pub(crate) struct FinitStep {
    /// The file (a full path of the live system).
    pub path: CString,
    /// The module's parameters (`k=v k2=v2`).
    pub params: CString,
    /// `finit_module` flags (`MODULE_INIT_COMPRESSED_FILE` for a compressed file).
    pub flags: u32,
    /// Where loading goes on when this step fails.
    pub on_failure: usize,
}

/// The most steps [`finit_bounded`] takes: their results (3 bytes each) must fit in
/// a pipe, which the child fills without waiting for the parent.
pub(crate) const FINIT_MAX_STEPS: usize = 1024;

/// Loads module files with `finit_module`, in order, in a child sharing this process's
/// memory ([`spawn_shared`]; no exec: the agent's own code, no modprobe binary to
/// start; the steps copied into the child's memory), waited for at most `timeout`
/// ([`ChildWait`]); a child still running then is sent SIGKILL and abandoned, as for
/// [`run_bounded`]. Returns each step tried, in order, with its errno (`EEXIST`, a
/// module already there, counts as loaded), and the error that ended the wait early,
/// if any: what the child reported before a timeout is still returned.
pub(crate) fn finit_bounded(
    shown: &Path,
    steps: &[FinitStep],
    timeout: Duration,
) -> (Vec<(usize, Option<Errno>)>, Option<HostError>) {
    if steps.len() > FINIT_MAX_STEPS {
        let e = io::Error::other(format!(
            "{} modules to load (at most {FINIT_MAX_STEPS})",
            steps.len()
        ));
        return (Vec::new(), Some(HostError::io(shown.to_path_buf(), e)));
    }
    let (res_r, res_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return (Vec::new(), Some(HostError::errno_at(shown, e))),
    };
    let strings: usize = steps
        .iter()
        .map(|s| s.path.as_bytes_with_nul().len() + s.params.as_bytes_with_nul().len())
        .sum();
    let need = strings + steps.len() * size_of::<RawStep>() + size_of::<FinitArgs>() + 2 * 16;
    let spawned = ChildMem::new(need).and_then(|mut mem| {
        let table: Vec<RawStep> = steps
            .iter()
            .map(|s| RawStep {
                path: mem.put_slice(s.path.as_bytes_with_nul()).cast(),
                params: mem.put_slice(s.params.as_bytes_with_nul()).cast(),
                flags: s.flags,
                on_failure: s.on_failure,
            })
            .collect();
        let args = FinitArgs {
            lock_fd: LOCK_FD.load(Ordering::SeqCst),
            out: res_w.as_raw_fd(),
            steps: mem.put_slice(&table),
            len: table.len(),
        };
        // SAFETY: `finit_child` is such an entry: raw system calls on the `FinitArgs` it
        // is given, whose pointers all point into `mem`.
        unsafe { spawn_shared(mem, args, finit_child) }
    });
    let child = match spawned {
        Ok(child) => child,
        Err(e) => return (Vec::new(), Some(HostError::errno_at(shown, e))),
    };
    drop(res_w);
    let ended = match child.reap_within(timeout) {
        Ok(Some(Ended::Exited(0))) => None,
        Ok(Some(Ended::Exited(code))) => Some(HostError::io(
            shown.to_path_buf(),
            io::Error::other(format!("the module loader exited with status {code}")),
        )),
        Ok(Some(Ended::Signaled(sig))) => Some(HostError::io(
            shown.to_path_buf(),
            io::Error::other(format!("the module loader was killed by {sig}")),
        )),
        Ok(None) => Some(HostError::Timeout {
            path: shown.to_path_buf(),
            timeout,
        }),
        Err(e) => Some(HostError::errno_at(shown, e)),
    };
    let bytes = drain_bytes(res_r, steps.len() * 3);
    let results = bytes
        .chunks_exact(3)
        .map(|r| {
            let i = usize::from(r[0]) | usize::from(r[1]) << 8;
            (i, (r[2] != 0).then(|| Errno::from_raw(i32::from(r[2]))))
        })
        .filter(|(i, _)| *i < steps.len())
        .collect();
    (results, ended)
}

/// What [`finit_child`] is given, in the child's own memory.
#[repr(C)]
#[derive(Clone, Copy)]
struct FinitArgs {
    /// The run lock's descriptor, or -1.
    lock_fd: RawFd,
    /// The results pipe (the child's copy of its write end).
    out: RawFd,
    /// The steps and their number.
    steps: *const RawStep,
    len: usize,
}

/// A [`FinitStep`] in the child's memory: the strings NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawStep {
    path: *const nix::libc::c_char,
    params: *const nix::libc::c_char,
    flags: u32,
    on_failure: usize,
}

/// The module loader child of [`finit_bounded`]: one 3-byte record per step tried
/// (step index, little-endian, and its errno, 0 for loaded or already there), then
/// exit status 0.
extern "C" fn finit_child(arg: *mut nix::libc::c_void) -> nix::libc::c_int {
    use nix::libc;
    // SAFETY: `arg` is the `FinitArgs` that `spawn_shared` copied into this child's
    // memory, which stays mapped as long as the child runs.
    let a = unsafe { &*arg.cast::<FinitArgs>() };
    // SAFETY: as `a`: `len` steps at `steps`, in the child's memory.
    let steps = unsafe { std::slice::from_raw_parts(a.steps, a.len) };
    // SAFETY: system calls on the child's own descriptors and on NUL-terminated strings
    // and a local buffer.
    unsafe {
        if a.lock_fd >= 0 {
            raw::close(a.lock_fd);
        }
        let mut i = 0;
        while let Some(s) = steps.get(i) {
            let fd = raw::openat(libc::AT_FDCWD, s.path, libc::O_RDONLY | libc::O_CLOEXEC);
            let rc = match RawFd::try_from(fd) {
                Ok(fd) if fd >= 0 => {
                    let rc = raw::finit_module(fd, s.params, s.flags);
                    raw::close(fd);
                    rc
                }
                _ => fd,
            };
            let errno = if rc < 0 && rc != -libc::c_long::from(libc::EEXIST) {
                -rc
            } else {
                0
            };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            // i < FINIT_MAX_STEPS; errno clamped to a byte first
            let rec = [(i & 0xff) as u8, (i >> 8) as u8, errno.clamp(0, 255) as u8];
            raw::write(a.out, rec.as_ptr(), rec.len());
            i = if errno == 0 {
                i + 1
            } else {
                s.on_failure.max(i + 1)
            };
        }
    }
    raw::exit(0)
}

/// What an ended child left in its stderr pipe, at most 4 KiB, without waiting (a
/// grandchild may hold the pipe open).
fn drain(pipe: OwnedFd) -> String {
    String::from_utf8_lossy(&drain_bytes(pipe, 4096)).into_owned()
}

/// At most `max` bytes a pipe holds now, without waiting.
fn drain_bytes(pipe: OwnedFd, max: usize) -> Vec<u8> {
    // SAFETY: fcntl on a descriptor we own, with a flag argument; no memory involved.
    unsafe {
        let fl = nix::libc::fcntl(pipe.as_raw_fd(), nix::libc::F_GETFL);
        nix::libc::fcntl(
            pipe.as_raw_fd(),
            nix::libc::F_SETFL,
            fl | nix::libc::O_NONBLOCK,
        );
    }
    let mut buf = Vec::new();
    let _ = fs::File::from(pipe)
        .take(u64::try_from(max).unwrap_or(u64::MAX))
        .read_to_end(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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
    fn attributes_are_regular_files_of_one_page_at_most() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/dev/zero", dir.path().join("class")).unwrap();
        fs::write(dir.path().join("big"), "x".repeat(5000)).unwrap();
        fs::write(dir.path().join("vendor"), "0x1002\n").unwrap();
        let h = Host::new(dir.path());
        assert_eq!(h.read_attr("class"), None, "a device is never read");
        assert_eq!(h.read_attr("big"), None);
        assert_eq!(h.read_attr("vendor").as_deref(), Some("0x1002"));
        assert_eq!(h.read_attr("missing"), None);
    }

    #[test]
    fn special_files_are_refused_by_name_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        nix::unistd::mkfifo(&d.join("fifo"), Mode::S_IRWXU).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
        symlink("/dev/zero", d.join("zero")).unwrap();
        symlink("loop", d.join("loop")).unwrap();
        for (name, kind) in [
            ("fifo", "a FIFO"),
            ("sock", "a socket"),
            ("zero", "a character device"),
            ("", "a directory"),
        ] {
            let err = read_file(&d.join(name), 1024).unwrap_err();
            assert!(
                matches!(&err, HostError::Special { kind: k, .. } if *k == kind),
                "{name}: {err}"
            );
            assert!(err.to_string().contains(kind), "{err}");
        }
        let err = read_file(&d.join("loop"), 1024).unwrap_err();
        assert_eq!(err.errno(), Some(nix::libc::ELOOP), "{err}");
        assert!(!err.is_not_found());
        assert!(read_file(&d.join("nope"), 1024).unwrap_err().is_not_found());
    }

    #[test]
    fn the_size_bound_holds_before_and_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "0123456789").unwrap();
        assert_eq!(read_file(&f, 10).unwrap().len(), 10);
        let err = read_file(&f, 9).unwrap_err();
        assert!(
            matches!(
                err,
                HostError::TooLarge {
                    size: Some(10),
                    limit: 9,
                    ..
                }
            ),
            "{err}"
        );
        // /proc files say size 0: the bound is enforced while reading.
        let err = read_file(Path::new("/proc/self/status"), 16).unwrap_err();
        assert!(
            matches!(
                err,
                HostError::TooLarge {
                    size: None,
                    limit: 16,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// A sysfs-like tree: `sys/bus/pci/devices/X` -> `../../../devices/X`, whose
    /// `driver` -> `../../bus/pci/drivers/d`; plus links that lead out.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        for d in [
            "root/sys/devices/X",
            "root/sys/bus/pci/devices",
            "root/sys/bus/pci/drivers/d",
            "outside",
        ] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        fs::write(outside.join("unbind"), "").unwrap();
        fs::write(outside.join("driver_override"), "").unwrap();
        let sys = root.join("sys");
        fs::write(sys.join("devices/X/driver_override"), "").unwrap();
        fs::write(sys.join("bus/pci/drivers/d/unbind"), "").unwrap();
        symlink("../../../devices/X", sys.join("bus/pci/devices/X")).unwrap();
        symlink("../../bus/pci/drivers/d", sys.join("devices/X/driver")).unwrap();
        // Out: absolute, and relative past sys/.
        symlink(&outside, sys.join("devices/X/abs")).unwrap();
        symlink("../../../outside", sys.join("devices/X/rel")).unwrap();
        symlink(
            outside.join("driver_override"),
            sys.join("devices/X/linked"),
        )
        .unwrap();
        (dir, root)
    }

    #[test]
    fn both_resolvers_follow_in_tree_links_and_refuse_links_out() {
        let (_dir, root) = tree();
        let base = open_dir_at(None, root.join("sys").as_os_str(), true).unwrap();
        for how in [Resolver::Openat2, Resolver::Walk] {
            assert!(
                resolve_with(&base, Path::new("bus/pci/devices/X/driver"), how).is_ok(),
                "{how:?}"
            );
            assert!(resolve_with(&base, Path::new("bus/pci/devices/X/../X"), how).is_ok());
            for out in [
                "bus/pci/devices/X/abs",
                "bus/pci/devices/X/rel",
                "devices/X/rel",
                "..",
                "devices/../..",
            ] {
                assert_eq!(
                    resolve_with(&base, Path::new(out), how).err(),
                    Some(ResolveError::Escapes),
                    "{how:?} {out}"
                );
            }
            assert_eq!(
                resolve_with(&base, Path::new("devices/X/driver_override"), how).err(),
                Some(ResolveError::Os(Errno::ENOTDIR)),
                "{how:?}"
            );
        }
    }

    #[test]
    fn writes_stay_beneath_sys() {
        let (dir, root) = tree();
        let h = Host::new(&root);
        h.write("sys/bus/pci/devices/X/driver_override", "vfio-pci")
            .unwrap();
        h.write_bounded(
            "sys/bus/pci/devices/X/driver/unbind",
            "X",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(root.join("sys/devices/X/driver_override")).unwrap(),
            "vfio-pci"
        );
        assert_eq!(
            fs::read_to_string(root.join("sys/bus/pci/drivers/d/unbind")).unwrap(),
            "X"
        );
        for rel in [
            "sys/bus/pci/devices/X/abs/unbind",
            "sys/bus/pci/devices/X/rel/unbind",
            "sys/bus/pci/devices/X/linked",
            "etc/passwd",
            "sys/../outside/unbind",
        ] {
            let e = h.write(rel, "x").unwrap_err();
            assert!(matches!(e, HostError::Escapes { .. }), "{rel}: {e}");
            let e = h
                .write_bounded(rel, "x", Duration::from_secs(5))
                .unwrap_err();
            assert!(matches!(e, HostError::Escapes { .. }), "{rel}: {e}");
        }
        let outside = dir.path().join("outside");
        assert_eq!(fs::read_to_string(outside.join("unbind")).unwrap(), "");
        assert_eq!(
            fs::read_to_string(outside.join("driver_override")).unwrap(),
            ""
        );
    }

    #[test]
    fn a_linked_sys_or_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(elsewhere.join("vfio-early")).unwrap();
        fs::write(elsewhere.join("drivers_probe"), "").unwrap();
        fs::create_dir_all(root.join("run")).unwrap();
        symlink(&elsewhere, root.join("sys")).unwrap();
        symlink(elsewhere.join("vfio-early"), root.join("run/vfio-early")).unwrap();
        let h = Host::new(&root);
        let e = h.write("sys/drivers_probe", "x").unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        let e = h
            .write_owned("run/vfio-early/record.json", b"{}")
            .unwrap_err();
        assert!(matches!(e, HostError::Escapes { .. }), "{e}");
        assert!(h.lock(Duration::ZERO).is_err());
        assert_eq!(
            fs::read_dir(elsewhere.join("vfio-early")).unwrap().count(),
            0
        );
        assert_eq!(
            fs::read_to_string(elsewhere.join("drivers_probe")).unwrap(),
            ""
        );
    }

    #[test]
    fn a_root_whose_sys_is_the_live_sysfs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/sys", dir.path().join("sys")).unwrap();
        let e = Host::new(dir.path()).check_root().unwrap_err();
        assert!(e.to_string().contains("running kernel's sysfs"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        symlink("/proc", dir.path().join("proc")).unwrap();
        assert!(Host::new(dir.path()).check_root().is_err());
        assert!(Host::new(tempfile::tempdir().unwrap().path())
            .check_root()
            .is_ok());
        assert!(Host::live().check_root().is_ok());
    }

    #[test]
    fn owned_files_use_unique_temp_names_and_leave_none() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("victim");
        fs::write(&outside, "keep").unwrap();
        let h = Host::new(dir.path());
        fs::create_dir_all(dir.path().join(RUN_DIR)).unwrap();
        // The old fixed temp name, planted as a link: never written through.
        symlink(&outside, dir.path().join(RUN_DIR).join("record.tmp")).unwrap();
        h.write_owned("run/vfio-early/record.json", b"{\"a\":1}")
            .unwrap();
        h.write_owned("run/vfio-early/record.json", b"{\"a\":2}")
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(RUN_DIR).join("record.json")).unwrap(),
            "{\"a\":2}"
        );
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        let names: Vec<String> = fs::read_dir(dir.path().join(RUN_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let e = h.write_owned("run/other/x", b"").unwrap_err();
        assert!(matches!(e, HostError::Escapes { .. }), "{e}");
    }

    #[test]
    fn the_run_lock_is_exclusive_and_the_wait_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        let held = h.lock(Duration::ZERO).unwrap();
        // A second open file description: flock conflicts even within one process.
        let start = Instant::now();
        let e = h.lock(Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, HostError::Busy { .. }), "{e}");
        assert!(start.elapsed() >= Duration::from_millis(100));
        drop(held);
        // A child that another test forks at this moment shares the lock's open file
        // until it execs or exits (the kernel releases a flock with its last
        // descriptor): a short wait, not none.
        h.lock(Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn kmsg_is_opened_only_when_it_is_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        assert!(h.open_kmsg().unwrap().is_none(), "no dev/");
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        assert!(h.open_kmsg().unwrap().is_none(), "no dev/kmsg");
        nix::unistd::mkfifo(&dir.path().join("dev/kmsg"), Mode::S_IRWXU).unwrap();
        let e = h.open_kmsg().unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        fs::remove_file(dir.path().join("dev/kmsg")).unwrap();
        symlink("/dev/kmsg", dir.path().join("dev/kmsg")).unwrap();
        let e = h.open_kmsg().unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        fs::remove_file(dir.path().join("dev/kmsg")).unwrap();
        fs::write(dir.path().join("dev/kmsg"), "").unwrap();
        assert!(h.open_kmsg().unwrap().is_some());
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
        fs::create_dir_all(dir.path().join("sys")).unwrap();
        fs::write(dir.path().join("sys/attr"), "").unwrap();
        h.write_bounded("sys/attr", "vfio-pci", Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("sys/attr")).unwrap(),
            "vfio-pci"
        );
        // A directory where a file should be: EISDIR, reported with the path.
        fs::create_dir(dir.path().join("sys/d")).unwrap();
        let err = h
            .write_bounded("sys/d", "x", Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(err.errno(), Some(nix::libc::EISDIR));
        assert!(err.to_string().contains("/d"), "{err}");
    }

    #[test]
    fn bounded_writes_in_a_row_each_leave_their_value() {
        // Each write a child of its own, its memory unmapped once it is reaped.
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        fs::create_dir_all(dir.path().join("sys")).unwrap();
        fs::write(dir.path().join("sys/attr"), "").unwrap();
        for i in 0..300 {
            let value = format!("value-{i}");
            h.write_bounded("sys/attr", &value, Duration::from_secs(5))
                .unwrap();
            assert_eq!(
                fs::read_to_string(dir.path().join("sys/attr")).unwrap(),
                value
            );
        }
        // A value larger than the child's stack, copied whole into its memory.
        let big = "x".repeat(ChildMem::STACK * 4 + 3);
        h.write_bounded("sys/attr", &big, Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("sys/attr")).unwrap(),
            big
        );
    }

    #[test]
    fn the_bounded_writer_opens_as_before_no_create_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        fs::create_dir_all(dir.path().join("sys")).unwrap();
        // No O_CREAT: a missing file stays missing.
        let err = h
            .write_bounded("sys/new_id", "8086 10d3", Duration::from_secs(5))
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(!dir.path().join("sys/new_id").exists());
        // O_NOFOLLOW: a link as the file itself is refused, its target untouched.
        fs::write(dir.path().join("sys/real"), "old").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("sys/link")).unwrap();
        let err = h
            .write_bounded("sys/link", "new", Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(err, HostError::Escapes { .. }), "{err}");
        assert_eq!(
            fs::read_to_string(dir.path().join("sys/real")).unwrap(),
            "old"
        );
    }

    #[test]
    fn a_failing_bounded_write_leaves_the_callers_errno() {
        // The writer shares this thread's memory and thread pointer: had it called
        // libc, its EISDIR would be this thread's errno now.
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        fs::create_dir_all(dir.path().join("sys/d")).unwrap();
        Errno::set_raw(nix::libc::ENOTRECOVERABLE);
        let err = h
            .write_bounded("sys/d", "x", Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(err.errno(), Some(nix::libc::EISDIR));
        assert_eq!(Errno::last_raw(), nix::libc::ENOTRECOVERABLE);
    }

    #[test]
    fn bounded_write_gives_up_on_a_fifo_whose_reader_never_reads() {
        // The open succeeds (there is a reader); the write blocks once the pipe is full.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sys")).unwrap();
        let fifo = dir.path().join("sys/bind");
        nix::unistd::mkfifo(&fifo, Mode::S_IRWXU).unwrap();
        let _reader = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let h = Host::new(dir.path());
        let value = "0".repeat(1 << 20);
        let err = h
            .write_bounded("sys/bind", &value, Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(err, HostError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("no answer after 200 ms"), "{err}");
    }

    /// A child that leaves at once, not yet reaped.
    fn short_child() -> Pid {
        // SAFETY: the child only calls `_exit`.
        match unsafe { fork() }.unwrap() {
            // SAFETY: `_exit` ends the child at once, touching nothing of the parent's.
            ForkResult::Child => unsafe { nix::libc::_exit(3) },
            ForkResult::Parent { child } => child,
        }
    }

    #[test]
    fn the_child_wait_wakes_when_the_child_ends() {
        // On a pidfd (this kernel has them): one poll that ends with the child. Were
        // it a sleep of the time given, this test would take a minute.
        let child = short_child();
        let mut w = ChildWait::new(child);
        assert!(w.on_pidfd());
        w.until_exit(Duration::from_secs(60));
        assert_eq!(
            waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap(),
            WaitStatus::Exited(child, 3)
        );
        // Without one (an old kernel): naps, each bounded by the time left.
        let child = short_child();
        let mut w = ChildWait {
            pidfd: None,
            nap: Duration::from_micros(50),
        };
        while waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() == WaitStatus::StillAlive {
            w.until_exit(Duration::from_secs(60));
        }
        assert!(w.nap <= Duration::from_millis(5));
    }

    #[test]
    fn a_bounded_run_gives_status_and_stderr_and_kills_when_late() {
        let sh = Path::new("/bin/sh");
        let long = Duration::from_secs(60);
        match run_bounded(sh, &[c"-c", c"echo out; echo oops >&2; exit 3"], long).unwrap() {
            Ran::Exited(code, err) => assert_eq!((code, err.as_str()), (3, "oops\n")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run_bounded(sh, &[c"-c", c"true"], long).unwrap(),
            Ran::Exited(0, _)
        ));
        match run_bounded(Path::new("/nonexistent/modprobe"), &[], long).unwrap() {
            Ran::Exited(127, err) => assert!(err.contains("cannot execute"), "{err}"),
            other => panic!("{other:?}"),
        }
        match run_bounded(sh, &[c"-c", c"kill -9 $$"], long).unwrap() {
            Ran::Signaled(how) => assert_eq!(how, "signal: 9 (SIGKILL)"),
            other => panic!("{other:?}"),
        }
        let err = run_bounded(sh, &[c"-c", c"sleep 30"], Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, HostError::Timeout { .. }), "{err}");
    }

    #[test]
    fn bounded_write_gives_up_on_a_fifo_without_reader() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sys")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("sys/unbind"), Mode::S_IRWXU).unwrap();
        let h = Host::new(dir.path());
        let err = h
            .write_bounded("sys/unbind", "0000:01:00.0", Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(err, HostError::Timeout { .. }), "{err}");
        // The unbounded write never blocks on it.
        let err = h.write("sys/unbind", "x").unwrap_err();
        assert!(matches!(err, HostError::Special { .. }), "{err}");
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        let held = h.lock(Duration::from_millis(100)).unwrap();
        let err = h.lock(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, HostError::Busy { .. }), "{err}");
        assert!(err.to_string().contains(LOCK_PATH), "{err}");
        drop(held);
        h.lock(Duration::from_millis(50)).unwrap();
    }

    #[test]
    fn the_module_loader_reports_each_step_and_skips_a_failed_unit() {
        // Files that do not exist: open fails, finit_module is never called.
        let dir = tempfile::tempdir().unwrap();
        let step = |name: &str, on_failure: usize| FinitStep {
            path: CString::new(dir.path().join(name).as_os_str().as_bytes()).unwrap(),
            params: CString::default(),
            flags: 0,
            on_failure,
        };
        // Step 0 fails and skips its unit (step 1); step 2 fails and ends the run.
        let steps = [step("a.ko", 2), step("b.ko", 2), step("c.ko", 3)];
        // The loader shares this thread's memory: its ENOENTs are not this errno.
        Errno::set_raw(nix::libc::ENOTRECOVERABLE);
        let (results, ended) = finit_bounded(dir.path(), &steps, Duration::from_secs(10));
        assert_eq!(Errno::last_raw(), nix::libc::ENOTRECOVERABLE);
        assert!(ended.is_none(), "{ended:?}");
        assert_eq!(
            results,
            [(0, Some(Errno::ENOENT)), (2, Some(Errno::ENOENT))]
        );
    }
}
