//! Hugepage reservation: per size and NUMA node, early, and read back.
//!
//! A VM backed by hugepages needs them reserved while physical memory is still in one
//! piece. The kernel keeps one pool per page size, `sys/kernel/mm/hugepages/hugepages-
//! <N>kB/`, and on NUMA kernels one per node and size, `sys/devices/system/node/nodeN/
//! hugepages/hugepages-<N>kB/`. Writing a number to a pool's `nr_hugepages` asks the
//! kernel to grow (or shrink) the pool to that many pages; the kernel gives what it can
//! find and never says it fell short, so the count is read back.
//!
//! Which sizes exist depends on the CPU and kernel: x86-64 has 2 MiB pages always and
//! 1 GiB pages only when the CPU has `pdpe1gb` (under QEMU: `-cpu host` or `-cpu max`).
//! 1 GiB pages need 1 GiB of physically contiguous free memory each, which a running
//! system seldom has; the initramfs is the earliest moment userspace gets, and the
//! kernel command line (`hugepagesz=1G hugepages=N`, reserved before the page allocator
//! is up) is the only way that never falls short. So the agent reports a shortfall
//! with that command line.
//!
//! The rules, in order:
//! - sizes are validated against the pools the kernel offers; an unknown size names
//!   its config line;
//! - `total` becomes a page count (rounded up);
//! - larger sizes are reserved first (they are the ones fragmentation kills);
//! - pools are only ever grown: what the command line (`hugepagesz=`, `hugepages=`,
//!   `default_hugepagesz=`) reserved is reported and topped up only when the config
//!   asks for more;
//! - the host is never starved: a reservation that would leave less than the floor
//!   (`[memory] floor`, default the larger of 1 GiB and 10 % of `MemTotal`) to the host
//!   is refused, with the reason in the record.
//!
//! Each write grows a pool by at most 1 GiB and is bounded by `[bind] timeout_ms`: a
//! 1 GiB page means finding (or making, by migrating pages) 1 GiB of free contiguous
//! memory, which takes milliseconds on real hardware but seconds under QEMU's TCG. A
//! step the kernel does not fully give ends the growth of that pool: more writes would
//! only cost boot time.
//!
//! The layers, one file each:
//! - [`parse`]: `proc/meminfo`, `proc/cpuinfo` flags, pool directory names and the
//!   kernel command line's reservations, from text (pure);
//! - [`pools`]: the reader, one [`Pools`] snapshot of what the kernel shows, and the
//!   path of each pool's `nr_hugepages`;
//! - [`plan`](mod@plan): the planner, pure over a snapshot and the config: a
//!   [`Reservation`] per entry whose [`Decision`] is to grow, to keep, or a typed
//!   [`Refusal`] (what `bind --dry-run` shows and `apply` validates), and [`status`]
//!   for `check`;
//! - [`reserve`](mod@reserve): the actor, which writes and reads back;
//! - [`wording`]: every sentence the others produce, from their values.

pub mod parse;
pub mod plan;
pub mod pools;
pub mod reserve;
pub(crate) mod wording;

pub use parse::cmdline_reservations;
pub use plan::{
    plan, status, verdict, wanted_pages, Decision, HugepagePlan, PoolStatus, Reservation,
    StatusKind, Verdict,
};
pub use pools::{count_path, Pool, Pools};
pub use reserve::reserve;
pub use wording::outcome_line;

use crate::cmdline::Cmdline;
use crate::config::Config;
use crate::host::Host;

/// The plan for a host: reads the pools (only when the config asks for hugepages)
/// and plans over them. Reads; changes nothing.
pub(crate) fn plan_host(host: &Host, config: &Config, cmdline: &Cmdline) -> HugepagePlan {
    if config.hugepages.is_empty() {
        return HugepagePlan::default();
    }
    plan(&Pools::read(host), config, cmdline)
}
