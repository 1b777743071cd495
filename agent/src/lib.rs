//! # vfio-early
//!
//! Hands PCI devices to `vfio-pci` at boot, before any host driver can claim them, and
//! never at the cost of the boot.
//!
//! ## The domain in five paragraphs
//!
//! A device passed to a virtual machine does DMA straight into the guest's memory. The
//! IOMMU (Intel VT-d, AMD-Vi) confines that DMA, but only with the granularity the
//! hardware can isolate: the **IOMMU group**. Devices behind a bridge without ACS, or
//! functions of one card, share a group, and the kernel lets userspace have a group
//! only when *every* device in it is on a driver that leaves DMA to vfio (`vfio-pci`
//! and its variants, `pci-stub`, `pcieport` for bridges) or on none.
//!
//! So a group is handed over whole, or not at all. The [`plan`] module decides that,
//! without I/O: for each group with a selected device, every other member must be
//! selected too, already on vfio-pci or pci-stub, a bridge, or an endpoint that no host
//! driver would claim. "No driver now" proves nothing at boot, when most drivers are
//! not loaded yet: the device's `modalias` against the kernel's alias tables says who
//! *would* claim it ([`modules`]).
//!
//! Which driver gets a device is decided when a driver probes it. Setting
//! `driver_override` = `vfio-pci` on a device means only vfio-pci will match it, so when
//! the GPU driver loads later (udev's coldplug) it passes the device by. That is why the
//! agent runs in the initramfs, before coldplug, and why it writes the override first.
//! A driver that won the race (built in, or loaded early on purpose) is unbound, with a
//! time bound: a kernel write can block forever, so it happens in a child process that
//! can be abandoned ([`host::Host::write_bounded`]). The `driver` link is then read back,
//! because a probe never reports failure; a group that does not end wholly on vfio-pci
//! is rolled back ([`bind`]).
//!
//! Some devices must never go by accident: the boot display (`boot_vga` = 1, the only
//! screen of many machines) and storage controllers (maybe the root disk). The config
//! must name them with `allow_boot_vga` / `allow_storage`.
//!
//! Every read and write goes through one seam, [`host::Host`], rooted at `/` on a real
//! system and at a fixture tree in tests; with a root other than `/` nothing reaches
//! the running kernel. The agent logs each step to the kernel log ([`logger`]) within
//! the kernel's rate limit and leaves a [`record`] in `/run/vfio-early/` for `check`.
//! `vfio_early=off` on the kernel command line ([`cmdline`]) switches it all off.

#![deny(missing_docs)]

pub(crate) mod acpi;
pub mod bind;
pub mod cli;
pub mod cmd;
pub mod cmdline;
pub mod cmdline_check;
pub mod config;
#[cfg(feature = "tools")]
pub(crate) mod config_edit;
#[cfg(feature = "tools")]
pub mod detach;
#[cfg(feature = "tools")]
pub(crate) mod detach_report;
#[cfg(feature = "tools")]
pub(crate) mod domxml;
pub mod exit;
#[cfg(feature = "tools")]
pub mod generator;
#[cfg(feature = "tools")]
pub mod handover;
pub mod host;
pub mod hugepages;
#[cfg(feature = "tools")]
pub(crate) mod image;
#[cfg(feature = "tools")]
pub mod iomem;
pub mod iommu;
pub mod kmsg;
pub(crate) mod logger;
pub mod machine;
#[cfg(feature = "tools")]
pub mod modinfo;
pub mod modules;
pub mod pci;
#[cfg(feature = "tools")]
pub mod pciids;
pub mod plan;
pub mod record;
pub mod report;
pub mod reset;
pub mod size;
pub mod sriov;
pub mod traps;
#[cfg(feature = "tools")]
pub mod vfio;
