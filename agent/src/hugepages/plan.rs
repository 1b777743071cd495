//! The hugepage planner: pure over a [`Pools`] snapshot, the config and the kernel
//! command line. It says, per `[[hugepages]]` entry, whether to grow the pool, to keep
//! it as it is, or why not ([`Refusal`]); [`status`] compares the pools with the config
//! for `check`. No I/O: every rule here is a unit test over values.

use crate::cmdline::Cmdline;
use crate::config::{Config, Floor, HugepagesAmount, HugepagesEntry};
use crate::size::{GIB_KB, MIB_KB};

use super::parse::{cmdline_reservations, CmdlineReservation};
use super::pools::{Pool, Pools};

/// The default floor: at least this much memory stays with the host...
pub(crate) const DEFAULT_FLOOR_KB: u64 = GIB_KB;
/// ...or this share of `MemTotal`, whichever is larger.
pub(crate) const DEFAULT_FLOOR_PERCENT: u64 = 10;

/// Where the floor came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorSource {
    /// `[memory] floor` in the config.
    Config(Floor),
    /// The default: the larger of 1 GiB and 10 % of `MemTotal`.
    Default,
}

/// The floor in kB for a machine with `mem_total_kb`, and how it was chosen.
pub(crate) fn floor_kb(floor: Option<Floor>, mem_total_kb: u64) -> (u64, FloorSource) {
    match floor {
        Some(f @ Floor::Kb(kb)) => (kb, FloorSource::Config(f)),
        Some(f @ Floor::Percent(p)) => (
            mem_total_kb.saturating_mul(u64::from(p)) / 100,
            FloorSource::Config(f),
        ),
        None => (
            DEFAULT_FLOOR_KB.max(mem_total_kb.saturating_mul(DEFAULT_FLOOR_PERCENT) / 100),
            FloorSource::Default,
        ),
    }
}

/// The pages an entry asks for: its `count`, or its `total` rounded up to whole pages.
pub fn wanted_pages(entry: &HugepagesEntry) -> u64 {
    match entry.amount {
        HugepagesAmount::Count(c) => c,
        HugepagesAmount::TotalKb(kb) => kb.div_ceil(entry.size_kb.max(1)),
    }
}

/// Why an entry is not reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The kernel offers no hugepages at all (`CONFIG_HUGETLBFS` is off).
    NoHugepages,
    /// The kernel offers other sizes (kB, largest first); `pdpe1gb_missing` when the
    /// size is 1 GiB and the CPU lacks the flag that would make it exist.
    SizeNotOffered {
        /// The sizes the kernel offers.
        offered: Vec<u64>,
        /// 1 GiB asked on a CPU without `pdpe1gb`.
        pdpe1gb_missing: bool,
    },
    /// A node was named, but the kernel shows no NUMA nodes.
    NoNuma,
    /// The node does not exist; these do.
    NoSuchNode(Vec<u32>),
    /// The node has no pool of this size.
    NoNodePool,
    /// An earlier config line names the same pool; only it counts.
    SamePool {
        /// That line.
        first_line: usize,
    },
    /// `MemTotal` could not be read, so the floor cannot be kept.
    MemTotalUnknown {
        /// The pages asked for.
        want: u64,
    },
    /// Reserving would leave the host less than the floor.
    UnderFloor {
        /// The pages asked for.
        want: u64,
        /// What would be left to the host, kB.
        left_kb: u64,
        /// `MemTotal`, kB.
        total_kb: u64,
        /// The floor, kB.
        floor_kb: u64,
        /// Where the floor came from.
        source: FloorSource,
        /// The largest pool size that would keep the floor, when larger than now.
        fit: Option<u64>,
    },
}

/// What to do with one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Grow the pool from `from` pages (there now) to `to`.
    Grow {
        /// Pages in the pool now.
        from: u64,
        /// Pages to reach.
        to: u64,
    },
    /// The pool already holds what the config asks: nothing to write.
    Keep {
        /// Pages the config asks.
        want: u64,
        /// Pages in the pool now.
        now: u64,
    },
    /// Not reserved.
    Refuse(Refusal),
}

impl Decision {
    /// The pool size to reach, unless refused.
    pub fn requested(&self) -> Option<u64> {
        match self {
            Self::Grow { to, .. } => Some(*to),
            Self::Keep { want, .. } => Some(*want),
            Self::Refuse(_) => None,
        }
    }
}

/// How a reservation ended, from what was asked and what was read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The pool has at least the pages asked for.
    Met,
    /// The kernel gave fewer: this many are missing.
    Short(u64),
    /// The count could not be read back.
    Unknown,
}

/// Compares a read-back count with the request.
pub fn verdict(requested: u64, obtained: Option<u64>) -> Verdict {
    match obtained {
        None => Verdict::Unknown,
        Some(got) if got >= requested => Verdict::Met,
        Some(got) => Verdict::Short(requested - got),
    }
}

/// The plan for one `[[hugepages]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The entry's place, `path:line`, for messages.
    pub at: String,
    /// The pool the entry names (size and node), checked against the snapshot or not.
    pub pool: Pool,
    /// Grow, keep, or the reason to refuse.
    pub decision: Decision,
    /// The entry's `total` in kB and the pages it became, when it is not a whole
    /// number of pages (rounded up).
    pub rounded: Option<(u64, u64)>,
    /// What the kernel command line reserves of this page size, for a usable entry,
    /// and the pages in the pool when planned.
    pub cmdline: Option<(CmdlineReservation, u64)>,
}

impl Reservation {
    /// Pages the kernel command line asks for this pool (the shortfall advice).
    pub(crate) fn on_cmdline(&self) -> Option<u64> {
        self.cmdline
            .as_ref()
            .and_then(|(c, _)| c.pages(self.pool.node))
    }
}

/// The reservations to make, one per `[[hugepages]]` entry, largest size first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HugepagePlan {
    /// One per entry, in the order they are reserved.
    pub reservations: Vec<Reservation>,
    /// The NUMA nodes of the snapshot (the actor reports a whole-system pool's spread).
    pub nodes: Vec<u32>,
}

impl HugepagePlan {
    /// The entries that are not reserved.
    pub fn refused(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations
            .iter()
            .filter(|r| matches!(r.decision, Decision::Refuse(_)))
    }
}

/// One config entry checked against the snapshot.
struct Entry {
    line: usize,
    at: String,
    pool: Pool,
    want: Result<u64, Refusal>,
    rounded_total_kb: Option<u64>,
}

fn check_entry(pools: &Pools, at: String, line: usize, entry: &HugepagesEntry) -> Entry {
    let pool = Pool {
        size_kb: entry.size_kb,
        node: entry.node,
    };
    let refuse = |r| Entry {
        line,
        at: at.clone(),
        pool,
        want: Err(r),
        rounded_total_kb: None,
    };
    if pools.sizes.is_empty() {
        return refuse(Refusal::NoHugepages);
    }
    if !pools.sizes.contains(&pool.size_kb) {
        return refuse(Refusal::SizeNotOffered {
            offered: pools.sizes.clone(),
            pdpe1gb_missing: pool.size_kb == GIB_KB && pools.cpu_lacks_pdpe1gb,
        });
    }
    if let Some(n) = pool.node {
        if pools.nodes.is_empty() {
            return refuse(Refusal::NoNuma);
        }
        if !pools.nodes.contains(&n) {
            return refuse(Refusal::NoSuchNode(pools.nodes.clone()));
        }
        if !pools.has(pool) {
            return refuse(Refusal::NoNodePool);
        }
    }
    let rounded_total_kb = match entry.amount {
        HugepagesAmount::TotalKb(kb) if kb % pool.size_kb != 0 => Some(kb),
        _ => None,
    };
    Entry {
        line,
        at,
        pool,
        want: Ok(wanted_pages(entry)),
        rounded_total_kb,
    }
}

/// Every `[[hugepages]]` entry checked, in reservation order (largest size first,
/// whole-system pools before per-node ones, then by node and line). The same pool
/// twice: the first line counts.
fn entries(pools: &Pools, config: &Config) -> Vec<Entry> {
    let path = config.path.display();
    let mut out: Vec<Entry> = config
        .hugepages
        .iter()
        .map(|(line, e)| check_entry(pools, format!("{path}:{line}"), *line, e))
        .collect();
    out.sort_by(|a, b| a.pool.cmp(&b.pool).then(a.line.cmp(&b.line)));
    let mut first: Option<(Pool, usize)> = None;
    for e in &mut out {
        if e.want.is_err() {
            continue;
        }
        match first {
            Some((pool, line)) if pool == e.pool => {
                e.want = Err(Refusal::SamePool { first_line: line });
            }
            _ => first = Some((e.pool, e.line)),
        }
    }
    out
}

/// The reservation to make: one [`Reservation`] per `[[hugepages]]` entry, largest
/// size first. Pools the command line already filled to the config's count are kept
/// as they are; a reservation that would leave the host under the floor is refused,
/// counting what the pools hold and what the entries before it add.
pub fn plan(pools: &Pools, config: &Config, cmdline: &Cmdline) -> HugepagePlan {
    let mut out = HugepagePlan {
        reservations: Vec::new(),
        nodes: pools.nodes.clone(),
    };
    if config.hugepages.is_empty() {
        return out;
    }
    let default_kb = pools.meminfo.hugepagesize_kb.unwrap_or(2 * MIB_KB);
    let from_cmdline = cmdline_reservations(cmdline, default_kb);
    let pooled_kb = pools.pooled_kb();
    let mut added_kb: u64 = 0;
    for e in entries(pools, config) {
        let mut cmdline = None;
        let decision = match e.want {
            Err(refusal) => Decision::Refuse(refusal),
            Ok(want) => {
                let now = pools.count(e.pool).unwrap_or(0);
                cmdline = from_cmdline.get(&e.pool.size_kb).map(|c| (c.clone(), now));
                let used_kb = pooled_kb.saturating_add(added_kb);
                let decision = judge(pools, config, e.pool, want, now, used_kb);
                if let Decision::Grow { from, to } = decision {
                    added_kb = added_kb.saturating_add((to - from).saturating_mul(e.pool.size_kb));
                }
                decision
            }
        };
        out.reservations.push(Reservation {
            at: e.at,
            pool: e.pool,
            decision,
            rounded: e
                .rounded_total_kb
                .map(|kb| (kb, kb.div_ceil(e.pool.size_kb))),
            cmdline,
        });
    }
    out
}

/// Grow, keep, or refuse one usable entry: `used_kb` is what the pools hold and the
/// entries before this one add.
fn judge(
    pools: &Pools,
    config: &Config,
    pool: Pool,
    want: u64,
    now: u64,
    used_kb: u64,
) -> Decision {
    if now >= want {
        return Decision::Keep { want, now };
    }
    let Some(total_kb) = pools.meminfo.mem_total_kb else {
        return Decision::Refuse(Refusal::MemTotalUnknown { want });
    };
    let (floor_kb, source) = floor_kb(config.memory.floor, total_kb);
    let add_kb = (want - now).saturating_mul(pool.size_kb);
    let left_kb = total_kb.saturating_sub(used_kb).saturating_sub(add_kb);
    if left_kb < floor_kb {
        let room = total_kb.saturating_sub(used_kb).saturating_sub(floor_kb);
        let fit = now.saturating_add(room / pool.size_kb);
        return Decision::Refuse(Refusal::UnderFloor {
            want,
            left_kb,
            total_kb,
            floor_kb,
            source,
            fit: (fit > now).then_some(fit),
        });
    }
    Decision::Grow {
        from: now,
        to: want,
    }
}

/// One pool against the config, for `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    /// The pool: an entry's, or a whole-system pool no entry names.
    pub pool: Pool,
    /// What the config and the pool say.
    pub kind: StatusKind,
}

/// How a pool stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusKind {
    /// A config entry and its pool now.
    Asked {
        /// Pages the config asks.
        want: u64,
        /// Pages in the pool now (`None`: unreadable).
        now: Option<u64>,
        /// Pages the kernel command line asks for this pool.
        on_cmdline: Option<u64>,
        /// The entry's `total` in kB, when it is not a whole number of pages.
        rounded_total_kb: Option<u64>,
    },
    /// A config entry that cannot be used.
    Unusable {
        /// The entry's place, `path:line`.
        at: String,
        /// Why.
        refusal: Refusal,
    },
    /// A whole-system pool holding pages that no config entry asks for.
    Unasked {
        /// Pages in it.
        now: u64,
    },
}

/// The pools now versus the config: one status per config entry, in reservation
/// order, then one per whole-system pool that holds pages of a size the config does
/// not ask for.
pub fn status(pools: &Pools, config: &Config, cmdline: &Cmdline) -> Vec<PoolStatus> {
    let default_kb = pools.meminfo.hugepagesize_kb.unwrap_or(2 * MIB_KB);
    let from_cmdline = cmdline_reservations(cmdline, default_kb);
    let mut out = Vec::new();
    let mut covered: Vec<u64> = Vec::new();
    for e in entries(pools, config) {
        let kind = match e.want {
            Ok(want) => {
                covered.push(e.pool.size_kb);
                StatusKind::Asked {
                    want,
                    now: pools.count(e.pool),
                    on_cmdline: from_cmdline
                        .get(&e.pool.size_kb)
                        .and_then(|c| c.pages(e.pool.node)),
                    rounded_total_kb: e.rounded_total_kb,
                }
            }
            Err(refusal) => StatusKind::Unusable { at: e.at, refusal },
        };
        out.push(PoolStatus { pool: e.pool, kind });
    }
    for &size_kb in &pools.sizes {
        let pool = Pool {
            size_kb,
            node: None,
        };
        let now = pools.count(pool).unwrap_or(0);
        if now > 0 && !covered.contains(&size_kb) {
            out.push(PoolStatus {
                pool,
                kind: StatusKind::Unasked { now },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! The planner over values: a snapshot built in the test, no filesystem tree.

    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::hugepages::parse::Meminfo;

    const M2: u64 = 2048;
    const G1: u64 = GIB_KB;

    /// A machine with `mem_gib` of RAM, empty pools of `sizes` (kB), and `nodes` NUMA
    /// nodes with a pool of each size.
    fn pools(mem_gib: u64, sizes: &[u64], nodes: u32) -> Pools {
        let mut counts = BTreeMap::new();
        for &size_kb in sizes {
            counts.insert(
                Pool {
                    size_kb,
                    node: None,
                },
                Some(0),
            );
            for n in 0..nodes {
                counts.insert(
                    Pool {
                        size_kb,
                        node: Some(n),
                    },
                    Some(0),
                );
            }
        }
        let mut sizes = sizes.to_vec();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        Pools {
            meminfo: Meminfo {
                mem_total_kb: Some(mem_gib * GIB_KB),
                hugepagesize_kb: Some(M2),
            },
            sizes,
            nodes: (0..nodes).collect(),
            counts,
            cpu_lacks_pdpe1gb: false,
        }
    }

    fn config(text: &str) -> Config {
        Config::parse(Path::new("/etc/vfio-early.toml"), text.as_bytes()).unwrap()
    }

    fn decisions(p: &Pools, text: &str, cmdline: &str) -> Vec<(Pool, Decision)> {
        plan(p, &config(text), &Cmdline::parse(cmdline))
            .reservations
            .into_iter()
            .map(|r| (r.pool, r.decision))
            .collect()
    }

    fn pool(size_kb: u64, node: Option<u32>) -> Pool {
        Pool { size_kb, node }
    }

    #[test]
    fn grows_largest_first_and_keeps_what_is_there() {
        let p = pools(32, &[M2, G1], 0);
        let text =
            "[[hugepages]]\nsize = \"2M\"\ncount = 512\n[[hugepages]]\nsize = \"1G\"\ncount = 4\n";
        assert_eq!(
            decisions(&p, text, ""),
            [
                (pool(G1, None), Decision::Grow { from: 0, to: 4 }),
                (pool(M2, None), Decision::Grow { from: 0, to: 512 }),
            ]
        );
        let mut p = p;
        p.counts.insert(pool(G1, None), Some(4));
        let d = decisions(&p, text, "");
        assert_eq!(d[0].1, Decision::Keep { want: 4, now: 4 });
        // Asking less than is there never shrinks; more tops up.
        let d = decisions(&p, "[[hugepages]]\nsize = \"1G\"\ncount = 2\n", "");
        assert_eq!(d[0].1, Decision::Keep { want: 2, now: 4 });
        let d = decisions(&p, "[[hugepages]]\nsize = \"1G\"\ncount = 6\n", "");
        assert_eq!(d[0].1, Decision::Grow { from: 4, to: 6 });
    }

    #[test]
    fn refusals_are_typed() {
        let mut p = pools(32, &[M2], 0);
        p.cpu_lacks_pdpe1gb = true;
        let d = decisions(&p, "[[hugepages]]\nsize = \"1G\"\ncount = 1\n", "");
        assert_eq!(
            d[0].1,
            Decision::Refuse(Refusal::SizeNotOffered {
                offered: vec![M2],
                pdpe1gb_missing: true
            })
        );
        let d = decisions(
            &pools(32, &[], 0),
            "[[hugepages]]\nsize = \"2M\"\ncount = 1\n",
            "",
        );
        assert_eq!(d[0].1, Decision::Refuse(Refusal::NoHugepages));
        let d = decisions(
            &p,
            "[[hugepages]]\nsize = \"2M\"\ncount = 1\nnode = 0\n",
            "",
        );
        assert_eq!(d[0].1, Decision::Refuse(Refusal::NoNuma));
        let numa = pools(32, &[M2], 2);
        let d = decisions(
            &numa,
            "[[hugepages]]\nsize = \"2M\"\ncount = 1\nnode = 3\n",
            "",
        );
        assert_eq!(d[0].1, Decision::Refuse(Refusal::NoSuchNode(vec![0, 1])));
        let d = decisions(
            &p,
            "[[hugepages]]\nsize = \"2M\"\ncount = 8\n[[hugepages]]\nsize = \"2048kB\"\ncount = 16\n",
            "",
        );
        assert_eq!(d[0].1, Decision::Grow { from: 0, to: 8 });
        assert_eq!(
            d[1].1,
            Decision::Refuse(Refusal::SamePool { first_line: 1 })
        );
        let mut unknown = p.clone();
        unknown.meminfo.mem_total_kb = None;
        let d = decisions(&unknown, "[[hugepages]]\nsize = \"2M\"\ncount = 1\n", "");
        assert_eq!(
            d[0].1,
            Decision::Refuse(Refusal::MemTotalUnknown { want: 1 })
        );
    }

    #[test]
    fn the_floor_counts_pools_and_earlier_entries() {
        // 4 GiB, default floor 1 GiB: 2 x 1G fit, then 2G of 2M pages would not.
        let p = pools(4, &[M2, G1], 0);
        let d = decisions(
            &p,
            "[[hugepages]]\nsize = \"2M\"\ntotal = \"2G\"\n[[hugepages]]\nsize = \"1G\"\ncount = 2\n",
            "",
        );
        assert_eq!(d[0].1, Decision::Grow { from: 0, to: 2 });
        assert_eq!(
            d[1].1,
            Decision::Refuse(Refusal::UnderFloor {
                want: 1024,
                left_kb: 0,
                total_kb: 4 * G1,
                floor_kb: G1,
                source: FloorSource::Default,
                fit: Some(512),
            })
        );
        // Pages already pooled count too: 3 x 1G there leave no room for a 2M page.
        let mut full = p.clone();
        full.counts.insert(pool(G1, None), Some(3));
        let d = decisions(&full, "[[hugepages]]\nsize = \"2M\"\ncount = 64\n", "");
        assert!(
            matches!(
                d[0].1,
                Decision::Refuse(Refusal::UnderFloor { fit: None, .. })
            ),
            "{d:?}"
        );
        // A configured floor replaces the default.
        let d = decisions(
            &p,
            "[memory]\nfloor = \"512M\"\n[[hugepages]]\nsize = \"2M\"\ntotal = \"3G\"\n",
            "",
        );
        assert_eq!(d[0].1, Decision::Grow { from: 0, to: 1536 });
    }

    #[test]
    fn records_keep_the_json_shape() {
        let p = pools(32, &[M2], 0);
        let plan = plan(
            &p,
            &config("[[hugepages]]\nsize = \"2M\"\ntotal = \"3M\"\n[[hugepages]]\nsize = \"1G\"\ncount = 1\n"),
            &Cmdline::parse("hugepages=1"),
        );
        let recs = plan.records();
        assert_eq!(plan.reservations[1].on_cmdline(), Some(1));
        assert_eq!((recs[0].size.as_str(), recs[0].requested), ("1G", 0));
        assert!(recs[0].notes[0].starts_with("/etc/vfio-early.toml:4: size 1G is not offered"));
        assert_eq!((recs[1].size.as_str(), recs[1].requested), ("2M", 2));
        assert!(recs[1].notes[0].contains("rounded up to 2"), "{recs:?}");
        assert!(
            recs[1].notes[1].contains("the kernel command line reserves 1 pages"),
            "{recs:?}"
        );
        assert_eq!(plan.refused().count(), 1);
    }

    #[test]
    fn status_sorts_asked_unusable_and_unasked() {
        let mut p = pools(32, &[M2, G1], 0);
        p.counts.insert(pool(M2, None), Some(512));
        p.counts.insert(pool(G1, None), Some(1));
        let s = status(
            &p,
            &config("[[hugepages]]\nsize = \"1G\"\ncount = 4\n[[hugepages]]\nsize = \"16G\"\ncount = 1\n"),
            &Cmdline::parse("hugepagesz=1G hugepages=2"),
        );
        assert!(matches!(s[0].kind, StatusKind::Unusable { .. }), "{s:?}");
        assert_eq!(s[0].pool, pool(16 * G1, None));
        assert_eq!(
            s[1].kind,
            StatusKind::Asked {
                want: 4,
                now: Some(1),
                on_cmdline: Some(2),
                rounded_total_kb: None
            }
        );
        assert_eq!(s[2].kind, StatusKind::Unasked { now: 512 });
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn floors() {
        // Default: 1 GiB on a small machine, 10 % on a large one.
        assert_eq!(floor_kb(None, 4 * GIB_KB).0, GIB_KB);
        assert_eq!(floor_kb(None, 64 * GIB_KB).0, 64 * GIB_KB / 10);
        assert_eq!(floor_kb(Some(Floor::Percent(50)), 8 * GIB_KB).0, 4 * GIB_KB);
        assert_eq!(
            floor_kb(Some(Floor::Kb(512 * MIB_KB)), 64 * GIB_KB),
            (512 * MIB_KB, FloorSource::Config(Floor::Kb(512 * MIB_KB)))
        );
    }

    #[test]
    fn totals_round_up() {
        let e = |size_kb, amount| HugepagesEntry {
            size_kb,
            amount,
            node: None,
        };
        assert_eq!(wanted_pages(&e(G1, HugepagesAmount::TotalKb(8 * G1))), 8);
        assert_eq!(wanted_pages(&e(M2, HugepagesAmount::TotalKb(3 * 1024))), 2);
        assert_eq!(wanted_pages(&e(M2, HugepagesAmount::Count(5))), 5);
    }
}
