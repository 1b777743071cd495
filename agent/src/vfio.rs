//! The kernel's own verdict on an IOMMU group: open it through VFIO and ask.
//!
//! The planner predicts that a group is usable; the kernel decides when a program
//! opens `/dev/vfio/N`. [`group_verdict`] does what QEMU does first: opens the group,
//! reads `VFIO_GROUP_GET_STATUS` (the `VIABLE` flag: every device of the group is on a
//! driver that leaves DMA to vfio), attaches it to a fresh container
//! (`VFIO_GROUP_SET_CONTAINER`, refused with `EPERM` when it is not viable), then
//! detaches and closes both. A group node that is busy (`EBUSY`) is held by another
//! program, a running VM: that is "in use", not a failure.
//!
//! These are ioctls on the running kernel: with a fixture root nothing is opened
//! ([`Host::require_live`]).

use std::fmt;
use std::os::fd::AsRawFd;

use crate::host::Host;

/// `VFIO_TYPE` in `<linux/vfio.h>`.
const VFIO_TYPE: u8 = b';';
/// `VFIO_BASE` in `<linux/vfio.h>`.
const VFIO_BASE: u8 = 100;
/// `VFIO_GROUP_FLAGS_VIABLE`.
const FLAGS_VIABLE: u32 = 1 << 0;

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Debug, Default)]
struct GroupStatus {
    argsz: u32,
    flags: u32,
}

/// The ioctls, private to this module.
mod sys {
    use super::{GroupStatus, VFIO_BASE, VFIO_TYPE};

    // `<linux/vfio.h>` defines these with `_IO` (no size in the number) although they
    // take a pointer: the "bad" forms of nix's macros use the number as given.
    nix::ioctl_readwrite_bad!(
        /// `VFIO_GROUP_GET_STATUS`.
        group_get_status,
        nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 3),
        GroupStatus
    );
    nix::ioctl_write_ptr_bad!(
        /// `VFIO_GROUP_SET_CONTAINER`.
        group_set_container,
        nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 4),
        nix::libc::c_int
    );
    nix::ioctl_none_bad!(
        /// `VFIO_GROUP_UNSET_CONTAINER`.
        group_unset_container,
        nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 5)
    );
}
use sys::{group_get_status, group_set_container, group_unset_container};

/// What the kernel said about one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Viable, and it attached to a container.
    Viable,
    /// Another program holds the group (a running VM): `EBUSY`.
    InUse,
    /// The kernel says the group is not viable (a member on a host driver).
    NotViable(String),
    /// The question could not be asked (no `/dev/vfio`, a fixture root).
    Unknown(String),
}

impl Verdict {
    /// True for the answers that are not a failure (viable, in use).
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Viable | Self::InUse)
    }
}

/// The verdict of one group, in the words every view prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVerdict {
    /// The IOMMU group.
    pub group: u32,
    /// The kernel's answer.
    pub verdict: Verdict,
}

impl fmt::Display for GroupVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.group;
        match &self.verdict {
            Verdict::Viable => write!(f, "group {g} is viable, by the kernel's own check"),
            Verdict::InUse => write!(
                f,
                "group {g} is in use (another program, a VM, holds /dev/vfio/{g})"
            ),
            Verdict::NotViable(why) => {
                write!(
                    f,
                    "group {g} is not viable, by the kernel's own check: {why}"
                )
            }
            Verdict::Unknown(why) => write!(f, "group {g}: not checked through VFIO: {why}"),
        }
    }
}

/// Opens group `group` through VFIO and reports the kernel's verdict.
pub(crate) fn group_verdict(host: &Host, group: u32) -> GroupVerdict {
    GroupVerdict {
        group,
        verdict: ask(host, group),
    }
}

fn ask(host: &Host, group: u32) -> Verdict {
    use nix::errno::Errno;
    if let Err(e) = host.require_live("open the group through VFIO") {
        return Verdict::Unknown(e.to_string());
    }
    // Through the host seam: only a character device is opened, never blocking.
    let open = |rel: &str| crate::host::open_char_device(&host.path(rel));
    let node = format!("dev/vfio/{group}");
    let group_file = match open(&node) {
        Ok(f) => f,
        Err(e) if e.errno() == Some(Errno::EBUSY as i32) => return Verdict::InUse,
        Err(e) => return Verdict::Unknown(e.to_string()),
    };
    let mut status = GroupStatus {
        argsz: u32::try_from(std::mem::size_of::<GroupStatus>()).unwrap_or(8),
        flags: 0,
    };
    // SAFETY: the fd is an open VFIO group node; `status` is a properly sized,
    // initialised `struct vfio_group_status` that lives across the call.
    if let Err(e) = unsafe { group_get_status(group_file.as_raw_fd(), &mut status) } {
        return Verdict::Unknown(format!("VFIO_GROUP_GET_STATUS on /{node}: {e}"));
    }
    if status.flags & FLAGS_VIABLE == 0 {
        return Verdict::NotViable(
            "VFIO_GROUP_GET_STATUS has no VIABLE flag (a device of the group is on a host driver)"
                .to_owned(),
        );
    }
    let container = match open("dev/vfio/vfio") {
        Ok(f) => f,
        Err(e) => return Verdict::Unknown(e.to_string()),
    };
    let fd: nix::libc::c_int = container.as_raw_fd();
    // SAFETY: both fds are open VFIO nodes; the argument points at a live c_int.
    match unsafe { group_set_container(group_file.as_raw_fd(), &fd) } {
        Ok(_) => {
            // SAFETY: the group fd is open and attached to a container just above.
            let _ = unsafe { group_unset_container(group_file.as_raw_fd()) };
            Verdict::Viable
        }
        Err(Errno::EBUSY) => Verdict::InUse,
        Err(e) => Verdict::NotViable(format!("VFIO_GROUP_SET_CONTAINER: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_root_is_never_asked() {
        let t = testing::TestSysfs::new();
        t.file("dev/vfio/4", "");
        t.file("dev/vfio/vfio", "");
        let v = group_verdict(&Host::new(t.root()), 4);
        assert!(matches!(v.verdict, Verdict::Unknown(_)), "{v:?}");
        assert!(v.to_string().contains("not the live system"), "{v}");
    }

    #[test]
    fn the_words_every_view_prints() {
        let v = |verdict| GroupVerdict { group: 7, verdict };
        assert_eq!(
            v(Verdict::Viable).to_string(),
            "group 7 is viable, by the kernel's own check"
        );
        assert!(v(Verdict::InUse).to_string().contains("in use"));
        assert!(v(Verdict::InUse).verdict.is_ok());
        assert!(!v(Verdict::NotViable("x".into())).verdict.is_ok());
    }

    #[test]
    fn the_ioctl_numbers_are_the_kernels() {
        // _IO(';', 100 + n) = (0x3b << 8) | (100 + n)
        assert_eq!(nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 3), 0x3b67);
        assert_eq!(nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 4), 0x3b68);
    }

    #[test]
    fn only_a_character_device_is_opened() {
        use crate::host::{open_char_device, HostError};
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("4");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::write(d.path().join("vfio"), "").unwrap();
        for p in [fifo, d.path().join("vfio")] {
            let e = open_char_device(&p).unwrap_err();
            assert!(matches!(e, HostError::Special { .. }), "{e}");
        }
        assert!(open_char_device(std::path::Path::new("/dev/null")).is_ok());
    }
}
