//! Every sentence about hugepages, made from the planner's and the actor's values:
//! the notes of a record, the refusals, the log line after a read-back, and the fix
//! for a shortfall. Pure.

use std::time::Duration;

use crate::host::HostError;
use crate::record::HugepageRecord;
use crate::size::{amount, size_name, GIB_KB};

use super::parse::CmdlineReservation;
use super::plan::{
    verdict, Decision, FloorSource, HugepagePlan, PoolStatus, Refusal, Reservation, StatusKind,
    Verdict, DEFAULT_FLOOR_PERCENT,
};
use super::pools::{count_path, Pool, MEMINFO, NODES, POOLS};

/// A pool as the log names it: `1G`, `2M node 1`.
pub(crate) fn label(pool: Pool) -> String {
    let size = size_name(pool.size_kb);
    match pool.node {
        Some(n) => format!("{size} node {n}"),
        None => size,
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why an entry (at `at`, `path:line`) of this pool is not reserved.
pub fn refusal(at: &str, pool: Pool, r: &Refusal) -> String {
    let size = size_name(pool.size_kb);
    let node = pool.node.unwrap_or(0);
    match r {
        Refusal::NoHugepages => format!(
            "{at}: size {size}: this kernel offers no hugepages (no {POOLS}: CONFIG_HUGETLBFS is off)"
        ),
        Refusal::SizeNotOffered {
            offered,
            pdpe1gb_missing,
        } => {
            let names: Vec<String> = offered.iter().map(|&k| size_name(k)).collect();
            let mut msg = format!(
                "{at}: size {size} is not offered by this kernel and CPU (offered: {})",
                list(&names)
            );
            if *pdpe1gb_missing {
                msg.push_str("; 1G pages need the CPU flag pdpe1gb, which this CPU lacks (under QEMU: -cpu host or -cpu max)");
            }
            msg
        }
        Refusal::NoNuma => format!(
            "{at}: node {node}: this kernel shows no NUMA nodes ({NODES}); leave `node` out"
        ),
        Refusal::NoSuchNode(nodes) => {
            format!("{at}: node {node} does not exist (nodes: {})", list(nodes))
        }
        Refusal::NoNodePool => format!("{at}: node {node} has no {size} pool"),
        Refusal::SamePool { first_line } => format!(
            "{at}: the same pool as line {first_line} ({}); only line {first_line} counts",
            label(pool)
        ),
        Refusal::MemTotalUnknown { want } => format!(
            "refused: {want} pages asked, but MemTotal is unknown ({MEMINFO} unreadable), so the floor cannot be kept"
        ),
        Refusal::UnderFloor {
            want,
            left_kb,
            total_kb,
            floor_kb,
            source,
            fit,
        } => {
            let why = match source {
                FloorSource::Config(f) => format!("[memory] floor = {f}"),
                FloorSource::Default => format!(
                    "the default: the larger of 1G and {DEFAULT_FLOOR_PERCENT}% of MemTotal"
                ),
            };
            let most = match fit {
                Some(fit) => format!("at most {fit} would keep it"),
                None => "no page more would keep it".to_owned(),
            };
            format!(
                "refused: {want} pages of {size} would leave {} of MemTotal {} to the host, under the floor of {} ({why}); {most}",
                amount(*left_kb),
                amount(*total_kb),
                amount(*floor_kb),
            )
        }
    }
}

/// The note a decision adds to its record: keeping, topping up, or the refusal.
pub(crate) fn decision_note(at: &str, pool: Pool, d: &Decision) -> Option<String> {
    match d {
        Decision::Grow { from: 0, .. } => None,
        Decision::Grow { from, to } => Some(format!("top up from {from} to {to}")),
        Decision::Keep { want, now } => Some(format!(
            "config asks {want}, {now} already reserved: left as is"
        )),
        Decision::Refuse(r) => Some(refusal(at, pool, r)),
    }
}

/// A `total` that is not a whole number of pages.
pub(crate) fn rounded_up(total_kb: u64, size_kb: u64, pages: u64) -> String {
    format!(
        "total {} is not a whole number of {} pages: rounded up to {pages}",
        amount(total_kb),
        size_name(size_kb)
    )
}

/// What the kernel command line reserves of a pool that holds `now` pages.
pub(crate) fn on_cmdline(c: &CmdlineReservation, node: Option<u32>, now: u64) -> String {
    let pages = c
        .pages(node)
        .map_or_else(|| "pages".to_owned(), |p| format!("{p} pages"));
    format!(
        "the kernel command line reserves {pages} ({}); {now} there now",
        c.params.join(" ")
    )
}

/// The fix for a shortfall that works: the kernel command line, which reserves pages
/// before memory fragments. `on_cmdline` is what the command line already asks for
/// this pool: when that is already enough, the command line cannot help either.
pub(crate) fn shortfall_fix(
    size_kb: u64,
    node: Option<u32>,
    pages: u64,
    on_cmdline: Option<u64>,
) -> String {
    let size = size_name(size_kb);
    if let Some(c) = on_cmdline.filter(|&c| c >= pages) {
        return format!(
            "the kernel command line already asks for {c}, and even at boot the kernel found less: \
             this machine lacks the free memory for more {size} pages (ask for fewer, or add memory)"
        );
    }
    let count = node.map_or_else(|| pages.to_string(), |n| format!("{n}:{pages}"));
    let node_note = if node.is_some() {
        " (the node:count form needs Linux 5.16+)"
    } else {
        ""
    };
    let how = match on_cmdline {
        Some(c) => format!("raise the kernel command line's {c} to {pages}"),
        None => "reserve them on the kernel command line instead".to_owned(),
    };
    if size_kb >= GIB_KB {
        format!(
            "{size} pages need {size} of contiguous free memory each, which is rarely left even in the initramfs; \
             {how}: default_hugepagesz={size} hugepagesz={size} hugepages={count}{node_note}"
        )
    } else {
        format!(
            "memory is short or fragmented; {how}: hugepagesz={size} hugepages={count}{node_note}"
        )
    }
}

/// The log line (and its level) for a reservation that was attempted, after reading
/// back.
pub fn outcome_line(rec: &HugepageRecord, on_cmdline: Option<u64>) -> (log::Level, String) {
    let what = label(Pool {
        size_kb: rec.size_kb,
        node: rec.node,
    });
    match verdict(rec.requested, rec.obtained) {
        Verdict::Met => (
            log::Level::Info,
            format!(
                "hugepages {what}: requested {}, obtained {}",
                rec.requested,
                rec.obtained.unwrap_or(0)
            ),
        ),
        Verdict::Short(missing) => (
            log::Level::Warn,
            format!(
                "hugepages {what}: requested {}, obtained {} ({missing} short); {}",
                rec.requested,
                rec.obtained.unwrap_or(0),
                shortfall_fix(rec.size_kb, rec.node, rec.requested, on_cmdline)
            ),
        ),
        Verdict::Unknown => (
            log::Level::Error,
            format!(
                "hugepages {what}: requested {}, the count could not be read back",
                rec.requested
            ),
        ),
    }
}

/// The note of a record whose pool fell short after the writes.
pub(crate) fn short_note(rec: &HugepageRecord, missing: u64, on_cmdline: Option<u64>) -> String {
    format!(
        "obtained {} of {} ({missing} short); {}",
        rec.obtained.unwrap_or(0),
        rec.requested,
        shortfall_fix(rec.size_kb, rec.node, rec.requested, on_cmdline)
    )
}

/// A failed write of `target` pages, with the bound when it was the bound that hit.
pub(crate) fn write_failed(target: u64, e: &HostError, timeout: Duration) -> String {
    let hint = if matches!(e, HostError::Timeout { .. }) {
        format!(
            "; the kernel was still allocating: [bind] timeout_ms = {} bounds each GiB",
            timeout.as_millis()
        )
    } else {
        String::new()
    };
    format!("writing {target} failed: {e}{hint}")
}

impl Reservation {
    /// The record of this entry before anything is written: `requested` is the pool
    /// size to reach, 0 when refused (the reason is then the last note); `obtained`
    /// is `None`.
    pub fn record(&self) -> HugepageRecord {
        let mut notes = Vec::new();
        if let Some((kb, pages)) = self.rounded {
            notes.push(rounded_up(kb, self.pool.size_kb, pages));
        }
        if let Some((c, now)) = &self.cmdline {
            notes.push(on_cmdline(c, self.pool.node, *now));
        }
        notes.extend(decision_note(&self.at, self.pool, &self.decision));
        HugepageRecord {
            size: size_name(self.pool.size_kb),
            size_kb: self.pool.size_kb,
            node: self.pool.node,
            requested: self.decision.requested().unwrap_or(0),
            obtained: None,
            notes,
        }
    }
}

impl HugepagePlan {
    /// The records of the plan, before anything is written (what `bind --dry-run`
    /// shows and the boot record starts from).
    pub fn records(&self) -> Vec<HugepageRecord> {
        self.reservations.iter().map(Reservation::record).collect()
    }
}

impl PoolStatus {
    /// What `check` says of the pool beyond the counts: the reason an entry is
    /// unusable, the fix for a shortfall, an unreadable count, pages nobody asked for.
    pub fn notes(&self) -> Vec<String> {
        match &self.kind {
            StatusKind::Asked {
                want,
                now,
                on_cmdline,
                rounded_total_kb,
            } => {
                let mut out: Vec<String> = rounded_total_kb
                    .map(|kb| rounded_up(kb, self.pool.size_kb, *want))
                    .into_iter()
                    .collect();
                match verdict(*want, *now) {
                    Verdict::Met => {}
                    Verdict::Short(missing) => out.push(format!(
                        "{} reserved, {missing} short of the config; {}",
                        now.unwrap_or(0),
                        shortfall_fix(self.pool.size_kb, self.pool.node, *want, *on_cmdline)
                    )),
                    Verdict::Unknown => out.push(format!(
                        "{} unreadable",
                        count_path(self.pool.size_kb, self.pool.node)
                    )),
                }
                out
            }
            StatusKind::Unusable { at, refusal: r } => vec![refusal(at, self.pool, r)],
            StatusKind::Unasked { now } => vec![format!(
                "{now} pages of {} reserved that the config does not ask for",
                size_name(self.pool.size_kb)
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        size_kb: u64,
        node: Option<u32>,
        requested: u64,
        obtained: Option<u64>,
    ) -> HugepageRecord {
        HugepageRecord {
            size: size_name(size_kb),
            size_kb,
            node,
            requested,
            obtained,
            notes: vec![],
        }
    }

    #[test]
    fn shortfall_advice_knows_the_command_line() {
        let s = shortfall_fix(GIB_KB, None, 4, None);
        assert!(
            s.contains("reserve them on the kernel command line instead"),
            "{s}"
        );
        let s = shortfall_fix(GIB_KB, None, 4, Some(2));
        assert!(
            s.contains("raise the kernel command line's 2 to 4: default_hugepagesz=1G"),
            "{s}"
        );
        let s = shortfall_fix(GIB_KB, None, 2, Some(2));
        assert!(
            s.starts_with("the kernel command line already asks for 2"),
            "{s}"
        );
        assert!(!s.contains("hugepages="), "{s}");
    }

    #[test]
    fn outcome_lines() {
        let (l, s) = outcome_line(&rec(GIB_KB, Some(0), 4, Some(4)), None);
        assert_eq!(
            (l, s.as_str()),
            (
                log::Level::Info,
                "hugepages 1G node 0: requested 4, obtained 4"
            )
        );

        let (l, s) = outcome_line(&rec(GIB_KB, None, 4, Some(1)), None);
        assert_eq!(l, log::Level::Warn);
        assert!(
            s.starts_with("hugepages 1G: requested 4, obtained 1 (3 short); "),
            "{s}"
        );
        assert!(
            s.ends_with("default_hugepagesz=1G hugepagesz=1G hugepages=4"),
            "{s}"
        );

        let (l, s) = outcome_line(&rec(2048, Some(1), 512, Some(100)), None);
        assert_eq!(l, log::Level::Warn);
        assert!(
            s.contains("hugepagesz=2M hugepages=1:512 (the node:count form"),
            "{s}"
        );
        assert!(!s.contains("default_hugepagesz"), "{s}");

        let (l, _) = outcome_line(&rec(2048, None, 8, None), None);
        assert_eq!(l, log::Level::Error);
    }

    #[test]
    fn refusals_read_as_before() {
        let g1 = Pool {
            size_kb: GIB_KB,
            node: None,
        };
        let s = refusal(
            "/etc/vfio-early.toml:5",
            g1,
            &Refusal::SizeNotOffered {
                offered: vec![2048],
                pdpe1gb_missing: true,
            },
        );
        assert!(
            s.starts_with("/etc/vfio-early.toml:5: size 1G is not offered by this kernel and CPU (offered: 2M); 1G pages need the CPU flag pdpe1gb"),
            "{s}"
        );
        let s = refusal(
            "x:1",
            g1,
            &Refusal::UnderFloor {
                want: 4,
                left_kb: 0,
                total_kb: 4 * GIB_KB,
                floor_kb: GIB_KB,
                source: FloorSource::Default,
                fit: Some(3),
            },
        );
        assert_eq!(s, "refused: 4 pages of 1G would leave 0K of MemTotal 4G to the host, under the floor of 1G (the default: the larger of 1G and 10% of MemTotal); at most 3 would keep it");
    }
}
