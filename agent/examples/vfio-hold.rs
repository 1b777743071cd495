//! Test helper for the QEMU scenarios: holds a PCI device open through VFIO, as a VM
//! does, so that vfio-pci's remove (an unbind) waits for it.
//!
//! `vfio-hold GROUP ADDR`: opens `/dev/vfio/vfio` and `/dev/vfio/GROUP`, attaches the
//! group, sets the type-1 IOMMU, gets ADDR's device fd, prints `held` and sleeps until
//! killed.

use std::ffi::CString;
use std::os::fd::AsRawFd;

const VFIO_TYPE: u8 = b';';
const VFIO_BASE: u8 = 100;
const VFIO_TYPE1_IOMMU: nix::libc::c_int = 1;

nix::ioctl_write_ptr_bad!(
    group_set_container,
    nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 4),
    nix::libc::c_int
);
nix::ioctl_write_int_bad!(set_iommu, nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 2));
nix::ioctl_write_ptr_bad!(
    group_get_device_fd,
    nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 6),
    nix::libc::c_char
);

fn open(path: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| fail(&format!("{path}: {e}")))
}

fn fail(msg: &str) -> ! {
    eprintln!("vfio-hold: {msg}");
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, group, addr] = args.as_slice() else {
        fail("usage: vfio-hold GROUP ADDR");
    };
    let container = open("/dev/vfio/vfio");
    let group = open(&format!("/dev/vfio/{group}"));
    let fd = container.as_raw_fd();
    // SAFETY: both fds are open VFIO nodes; the argument points at a live c_int.
    unsafe { group_set_container(group.as_raw_fd(), &fd) }
        .unwrap_or_else(|e| fail(&format!("VFIO_GROUP_SET_CONTAINER: {e}")));
    // SAFETY: the container fd is open and has a group attached.
    unsafe { set_iommu(container.as_raw_fd(), VFIO_TYPE1_IOMMU) }
        .unwrap_or_else(|e| fail(&format!("VFIO_SET_IOMMU: {e}")));
    let name = CString::new(addr.as_str()).unwrap_or_else(|_| fail("bad address"));
    // SAFETY: the group fd is open and attached; `name` is a NUL-terminated string that
    // lives across the call. The returned fd is kept open until the process ends.
    let device = unsafe { group_get_device_fd(group.as_raw_fd(), name.as_ptr()) }
        .unwrap_or_else(|e| fail(&format!("VFIO_GROUP_GET_DEVICE_FD {addr}: {e}")));
    println!("held {addr} (fd {device})");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
