//! The actor: grows the planned pools, reads each count back, and logs one line per
//! pool. The only hugepage code that changes the kernel.

use std::time::Duration;

use log::{error, info, warn};

use crate::host::Host;
use crate::record::HugepageRecord;
use crate::size::GIB_KB;

use super::plan::{verdict, Decision, HugepagePlan, Reservation, Verdict};
use super::pools::{count_path, read_count, Pool};
use super::wording;

/// The pages one write may add: 1 GiB worth (one 1G page, 512 2M pages), so that each
/// bounded write has a bounded amount of work and a pool that stops growing is seen
/// after one step, not after the whole request.
fn step_pages(size_kb: u64) -> u64 {
    (GIB_KB / size_kb.max(1)).max(1)
}

/// The counts to write, in order, to grow a pool from `now` to `requested`.
pub(crate) fn steps(now: u64, requested: u64, size_kb: u64) -> Vec<u64> {
    let step = step_pages(size_kb);
    let mut out = Vec::new();
    let mut at = now;
    while at < requested {
        at = at.saturating_add(step).min(requested);
        out.push(at);
    }
    out
}

/// Grows one pool step by step; stops at the first step the kernel does not fully
/// give, and at the first failed write. Returns the failure, if any.
fn grow(host: &Host, pool: Pool, now: u64, requested: u64, timeout: Duration) -> Option<String> {
    let path = count_path(pool.size_kb, pool.node);
    for target in steps(now, requested, pool.size_kb) {
        if let Err(e) = host.write_bounded(&path, &target.to_string(), timeout) {
            return Some(wording::write_failed(target, &e, timeout));
        }
        if !matches!(read_count(host, pool), Some(got) if got >= target) {
            break;
        }
    }
    None
}

/// Reserves a plan, larger sizes first: grows each pool's `nr_hugepages` by at most
/// 1 GiB per write (each write bounded by `timeout`; the kernel stops allocating when
/// an abandoned writer is killed), reads the count back into `obtained`, and logs one
/// line per pool. Pools are never shrunk: a pool that already holds the pages asked
/// for is not written. A refused entry is logged as a warning with its reason. Returns
/// the records, in the plan's order. Never panics; failures are logged and noted.
pub fn reserve(host: &Host, plan: &HugepagePlan, timeout: Duration) -> Vec<HugepageRecord> {
    let mut records = plan.records();
    let mut order: Vec<usize> = (0..plan.reservations.len()).collect();
    order.sort_by_key(|&i| plan.reservations[i].pool);
    for i in order {
        reserve_one(host, plan, &plan.reservations[i], &mut records[i], timeout);
    }
    records
}

fn reserve_one(
    host: &Host,
    plan: &HugepagePlan,
    r: &Reservation,
    rec: &mut HugepageRecord,
    timeout: Duration,
) {
    let what = wording::label(r.pool);
    let requested = match &r.decision {
        Decision::Refuse(_) => {
            warn!("hugepages {what}: not reserved: {}", rec.notes.join("; "));
            return;
        }
        Decision::Grow { to, .. } => *to,
        Decision::Keep { want, .. } => *want,
    };
    // Read again: the plan's count is a snapshot, and a pool is never shrunk.
    let before = read_count(host, r.pool);
    if let Some(b) = before.filter(|&b| b >= requested) {
        rec.obtained = Some(b);
        info!("hugepages {what}: requested {requested}, {b} already reserved");
        return;
    }
    if let Some(e) = grow(host, r.pool, before.unwrap_or(0), requested, timeout) {
        error!("hugepages {what}: {e}");
        rec.notes.push(e);
    }
    rec.obtained = read_count(host, r.pool);
    let (level, mut line) = wording::outcome_line(rec, r.on_cmdline());
    if r.pool.node.is_none() && plan.nodes.len() > 1 {
        let spread: Vec<String> = plan
            .nodes
            .iter()
            .filter_map(|&n| {
                let node = Pool {
                    size_kb: r.pool.size_kb,
                    node: Some(n),
                };
                read_count(host, node).map(|c| format!("node {n}: {c}"))
            })
            .collect();
        if !spread.is_empty() {
            let got = format!("obtained {}", rec.obtained.unwrap_or(0));
            line = line.replacen(&got, &format!("{got} ({})", spread.join(", ")), 1);
        }
    }
    if let Verdict::Short(missing) = verdict(requested, rec.obtained) {
        rec.notes
            .push(wording::short_note(rec, missing, r.on_cmdline()));
    }
    log::log!(level, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_goes_one_gib_at_a_time() {
        assert_eq!(step_pages(GIB_KB), 1);
        assert_eq!(step_pages(2048), 512);
        assert_eq!(steps(0, 3, GIB_KB), [1, 2, 3]);
        assert_eq!(steps(4, 6, GIB_KB), [5, 6]);
        assert_eq!(steps(0, 1300, 2048), [512, 1024, 1300]);
        assert_eq!(steps(0, 64, 2048), [64]);
        assert!(steps(6, 4, GIB_KB).is_empty());
    }
}
