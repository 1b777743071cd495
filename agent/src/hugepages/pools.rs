//! The reader: what the kernel shows of its hugepage pools, read once into a
//! [`Pools`] snapshot that the planner judges without touching the host.

use std::collections::BTreeMap;

use crate::host::Host;

use super::parse::{lacks_pdpe1gb, parse_meminfo, pool_size_kb, Meminfo};

/// The global pools, relative to the host root.
pub(crate) const POOLS: &str = "sys/kernel/mm/hugepages";
/// The NUMA nodes, relative to the host root.
pub(crate) const NODES: &str = "sys/devices/system/node";
/// `proc/meminfo`, relative to the host root.
pub(crate) const MEMINFO: &str = "proc/meminfo";

/// One pool: a page size, over the whole system or on one NUMA node. Ordered largest
/// size first, then the whole-system pool before the nodes', then by node: the order
/// pools are reserved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool {
    /// Page size in kB.
    pub size_kb: u64,
    /// The NUMA node, or `None` for the whole system.
    pub node: Option<u32>,
}

impl Ord for Pool {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .size_kb
            .cmp(&self.size_kb)
            .then(self.node.cmp(&other.node))
    }
}

impl PartialOrd for Pool {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The `nr_hugepages` file of a pool, relative to the host root.
pub fn count_path(size_kb: u64, node: Option<u32>) -> String {
    match node {
        None => format!("{POOLS}/hugepages-{size_kb}kB/nr_hugepages"),
        Some(n) => format!("{NODES}/node{n}/hugepages/hugepages-{size_kb}kB/nr_hugepages"),
    }
}

/// The pages in a pool now (`nr_hugepages`); `None` when it cannot be read.
pub(crate) fn read_count(host: &Host, pool: Pool) -> Option<u64> {
    host.read_attr(count_path(pool.size_kb, pool.node))?
        .parse()
        .ok()
}

/// What the kernel shows of its hugepages at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pools {
    /// `MemTotal` and the default page size.
    pub meminfo: Meminfo,
    /// The page sizes the kernel offers, in kB, largest first.
    pub sizes: Vec<u64>,
    /// The NUMA nodes sysfs shows, in order (empty on a kernel without NUMA).
    pub nodes: Vec<u32>,
    /// Every pool that has an `nr_hugepages` file, with its count (`None`: unreadable).
    pub counts: BTreeMap<Pool, Option<u64>>,
    /// Some CPU lacks `pdpe1gb`, so 1 GiB pages cannot exist (false when unknown).
    pub cpu_lacks_pdpe1gb: bool,
}

impl Pools {
    /// Reads `proc/meminfo`, `proc/cpuinfo`, the pool directories and each pool's
    /// count. Never fails: what cannot be read is absent.
    pub fn read(host: &Host) -> Self {
        let mut sizes: Vec<u64> = host
            .list(POOLS)
            .iter()
            .filter_map(|n| pool_size_kb(n))
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let mut nodes: Vec<u32> = host
            .list(NODES)
            .iter()
            .filter_map(|n| n.strip_prefix("node")?.parse().ok())
            .collect();
        nodes.sort_unstable();
        let mut counts = BTreeMap::new();
        for &size_kb in &sizes {
            let whole = std::iter::once(None);
            for node in whole.chain(nodes.iter().copied().map(Some)) {
                let pool = Pool { size_kb, node };
                let path = count_path(size_kb, node);
                if node.is_none() || host.exists(&path) {
                    counts.insert(pool, read_count(host, pool));
                }
            }
        }
        Self {
            meminfo: host
                .read(MEMINFO)
                .map(|t| parse_meminfo(&t))
                .unwrap_or_default(),
            sizes,
            nodes,
            counts,
            cpu_lacks_pdpe1gb: host.read("proc/cpuinfo").is_ok_and(|c| lacks_pdpe1gb(&c)),
        }
    }

    /// The pages in a pool, when it exists and its count was readable.
    pub fn count(&self, pool: Pool) -> Option<u64> {
        self.counts.get(&pool).copied().flatten()
    }

    /// Whether the kernel has this pool.
    pub fn has(&self, pool: Pool) -> bool {
        self.counts.contains_key(&pool)
    }

    /// Memory already in the whole-system pools, kB (`MemTotal` counts it).
    pub(crate) fn pooled_kb(&self) -> u64 {
        self.sizes
            .iter()
            .map(|&kb| {
                self.count(Pool {
                    size_kb: kb,
                    node: None,
                })
                .unwrap_or(0)
                .saturating_mul(kb)
            })
            .fold(0, u64::saturating_add)
    }
}
