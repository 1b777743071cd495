//! Hugepage planning, reservation and status over fixture trees.
//!
//! The kernel text these tests rely on:
//! - `sys/kernel/mm/hugepages/hugepages-<N>kB/nr_hugepages`: the pool size, `"0\n"`;
//!   the directory exists only for sizes the CPU and kernel offer (no
//!   `hugepages-1048576kB` on a CPU without `pdpe1gb`);
//! - `sys/devices/system/node/nodeN/hugepages/hugepages-<N>kB/nr_hugepages`: per node;
//! - `proc/meminfo`: `MemTotal:  8024612 kB`, `Hugepagesize:  2048 kB`;
//! - `proc/cpuinfo`: `flags\t\t: fpu ... pdpe1gb ...`.
//!
//! A fixture cannot give fewer pages than written (the write is the read-back), so the
//! shortfall path is tested as a pure function (`outcome_line`, `verdict`) and through
//! `status` over a pool that holds fewer pages than the config asks. The planner's own
//! rules are unit tests over values (`hugepages::plan`'s tests); these go through the
//! reader (`Pools::read`) and the actor (`reserve`) on a tree.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use log::{Level, Log, Metadata, Record};
use testing::TestSysfs;
use vfio_early::cmdline::Cmdline;
use vfio_early::config::Config;
use vfio_early::host::Host;
use vfio_early::hugepages::{
    self, count_path, outcome_line, plan, reserve, status, Decision, HugepagePlan, Pool,
    PoolStatus, Pools, Reservation, StatusKind,
};
use vfio_early::record::HugepageRecord;

const M2: u64 = 2048;
const G1: u64 = 1_048_576;
const GIB: u64 = G1;
const T: Duration = Duration::from_secs(5);

// --- a logger that keeps each thread's lines (tests run in parallel threads) -------

thread_local! {
    static LINES: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &Record<'_>) {
        LINES.with(|l| l.borrow_mut().push((r.level(), r.args().to_string())));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;
static INIT: Once = Once::new();

/// Runs `f` and returns what it logged on this thread.
fn logged(f: impl FnOnce()) -> Vec<(Level, String)> {
    INIT.call_once(|| {
        log::set_logger(&CAPTURE).expect("logger");
        log::set_max_level(log::LevelFilter::Trace);
    });
    LINES.with(|l| l.borrow_mut().clear());
    f();
    LINES.with(|l| l.borrow_mut().drain(..).collect())
}

// --- fixtures ------------------------------------------------------------------------

struct Machine {
    t: TestSysfs,
}

impl Machine {
    /// `mem_gib` of RAM, pools for `sizes` (kB), `nodes` NUMA nodes (0 = no NUMA in
    /// sysfs), and a CPU with or without `pdpe1gb`.
    fn new(mem_gib: u64, sizes: &[u64], nodes: u32, pdpe1gb: bool) -> Self {
        let t = TestSysfs::new();
        t.file(
            "proc/meminfo",
            &format!(
                "MemTotal:       {} kB\nMemFree:        {} kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\nHugetlb:               0 kB\n",
                mem_gib * GIB,
                mem_gib * GIB / 2
            ),
        );
        let flags = if pdpe1gb {
            "fpu vme pse pdpe1gb lm"
        } else {
            "fpu vme pse lm"
        };
        t.file(
            "proc/cpuinfo",
            &format!("processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"),
        );
        for &kb in sizes {
            t.file(
                &format!("sys/kernel/mm/hugepages/hugepages-{kb}kB/nr_hugepages"),
                "0\n",
            );
            t.file(
                &format!("sys/kernel/mm/hugepages/hugepages-{kb}kB/free_hugepages"),
                "0\n",
            );
            for n in 0..nodes {
                t.file(
                    &format!(
                        "sys/devices/system/node/node{n}/hugepages/hugepages-{kb}kB/nr_hugepages"
                    ),
                    "0\n",
                );
            }
        }
        for n in 0..nodes {
            t.file(&format!("sys/devices/system/node/node{n}/cpulist"), "0-1\n");
        }
        Self { t }
    }

    fn host(&self) -> Host {
        Host::new(self.t.root())
    }

    fn set(&self, kb: u64, node: Option<u32>, n: u64) {
        self.t.file(&count_path(kb, node), &format!("{n}\n"));
    }

    fn count(&self, kb: u64, node: Option<u32>) -> String {
        self.t.read(&count_path(kb, node))
    }

    /// The plan over a snapshot of this tree.
    fn planned(&self, config: &str, cmdline: &str) -> HugepagePlan {
        plan(
            &Pools::read(&self.host()),
            &config_of(config),
            &Cmdline::parse(cmdline),
        )
    }

    /// The plan's records (what `bind --dry-run` shows).
    fn plan(&self, config: &str, cmdline: &str) -> Vec<HugepageRecord> {
        self.planned(config, cmdline).records()
    }

    /// `check`'s view of the pools, with the tree's own command line.
    fn status(&self, config: &str) -> Vec<PoolStatus> {
        status(
            &Pools::read(&self.host()),
            &config_of(config),
            &Cmdline::parse(&self.t.read("proc/cmdline")),
        )
    }
}

/// Grows a pool from nothing to `pages`: a plan entry made by hand.
fn grow(size_kb: u64, pages: u64) -> Reservation {
    Reservation {
        at: "test".into(),
        pool: Pool {
            size_kb,
            node: None,
        },
        decision: Decision::Grow { from: 0, to: pages },
        rounded: None,
        cmdline: None,
    }
}

fn by_hand(reservations: Vec<Reservation>) -> HugepagePlan {
    HugepagePlan {
        reservations,
        nodes: vec![],
    }
}

fn status_notes(s: &PoolStatus) -> String {
    s.notes().join(" | ")
}

fn config_of(text: &str) -> Config {
    Config::parse(Path::new("/etc/vfio-early.toml"), text.as_bytes()).expect("config")
}

fn notes(r: &HugepageRecord) -> String {
    r.notes.join(" | ")
}

const BOTH: &str =
    "[[hugepages]]\nsize = \"2M\"\ncount = 512\n\n[[hugepages]]\nsize = \"1G\"\ncount = 4\n";

// --- plan ----------------------------------------------------------------------------

#[test]
fn sizes_present_planned_largest_first_and_nothing_written() {
    let m = Machine::new(32, &[M2, G1], 0, true);
    let p = m.plan(BOTH, "ro quiet");
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[0].size.as_str(), p[0].size_kb, p[0].node, p[0].requested),
        ("1G", G1, None, 4)
    );
    assert_eq!(
        (p[1].size.as_str(), p[1].size_kb, p[1].requested),
        ("2M", M2, 512)
    );
    assert!(
        p.iter().all(|r| r.obtained.is_none() && r.notes.is_empty()),
        "{p:?}"
    );
    assert_eq!(m.count(G1, None), "0\n", "plan changes nothing");
    assert_eq!(m.count(M2, None), "0\n");
}

#[test]
fn unknown_size_names_the_config_line_and_the_cpu_flag() {
    let m = Machine::new(32, &[M2], 0, false);
    let p = m.plan(BOTH, "");
    let g = p.iter().find(|r| r.size == "1G").expect("1G record");
    assert_eq!(g.requested, 0);
    let n = notes(g);
    assert!(
        n.contains("/etc/vfio-early.toml:5: size 1G is not offered"),
        "{n}"
    );
    assert!(n.contains("offered: 2M"), "{n}");
    assert!(n.contains("pdpe1gb"), "{n}");
    assert!(n.contains("-cpu max"), "{n}");
    // The 2M entry is unaffected.
    let s = p.iter().find(|r| r.size == "2M").expect("2M record");
    assert_eq!(s.requested, 512, "{p:?}");

    // A CPU with pdpe1gb but no pool (another kernel reason): no CPU hint.
    let m = Machine::new(32, &[M2], 0, true);
    let p = m.plan(BOTH, "");
    assert!(!notes(&p[0]).contains("pdpe1gb"), "{p:?}");
    assert!(notes(&p[0]).contains("not offered"), "{p:?}");

    // No hugepages at all.
    let m = Machine::new(32, &[], 0, true);
    let p = m.plan(BOTH, "");
    assert!(
        p.iter()
            .all(|r| r.requested == 0 && notes(r).contains("CONFIG_HUGETLBFS")),
        "{p:?}"
    );

    // Other sizes the kernel offers work by name (arm64 64K kernels: 512M).
    let m = Machine::new(32, &[64, 512 * 1024], 0, false);
    let p = m.plan("[[hugepages]]\nsize = \"512M\"\ncount = 2\n", "");
    assert_eq!((p[0].size_kb, p[0].requested), (512 * 1024, 2), "{p:?}");
}

#[test]
fn total_becomes_pages() {
    let m = Machine::new(64, &[M2, G1], 0, true);
    let p = m.plan("[[hugepages]]\nsize = \"1G\"\ntotal = \"8G\"\n[[hugepages]]\nsize = \"2M\"\ntotal = \"3M\"\n", "");
    assert_eq!((p[0].size_kb, p[0].requested), (G1, 8));
    assert_eq!((p[1].size_kb, p[1].requested), (M2, 2));
    assert!(notes(&p[1]).contains("rounded up to 2"), "{p:?}");
}

#[test]
fn per_node_pools() {
    let m = Machine::new(64, &[M2, G1], 2, true);
    let cfg = "[[hugepages]]\nsize = \"1G\"\ncount = 2\nnode = 1\n\n[[hugepages]]\nsize = \"1G\"\ncount = 3\nnode = 0\n\n\
               [[hugepages]]\nsize = \"2M\"\ncount = 64\n\n[[hugepages]]\nsize = \"1G\"\ncount = 1\nnode = 5\n";
    let p = m.plan(cfg, "");
    let keys: Vec<_> = p.iter().map(|r| (r.size_kb, r.node, r.requested)).collect();
    assert_eq!(
        keys,
        [
            (G1, Some(0), 3),
            (G1, Some(1), 2),
            (G1, Some(5), 0),
            (M2, None, 64)
        ]
    );
    assert!(
        notes(&p[2]).contains(":15: node 5 does not exist (nodes: 0, 1)"),
        "{p:?}"
    );

    // No NUMA in sysfs: a node entry is refused with the fix.
    let flat = Machine::new(64, &[M2, G1], 0, true);
    let p = flat.plan("[[hugepages]]\nsize = \"1G\"\ncount = 1\nnode = 0\n", "");
    assert_eq!(p[0].requested, 0);
    assert!(notes(&p[0]).contains("no NUMA nodes"), "{p:?}");
    assert!(notes(&p[0]).contains("leave `node` out"), "{p:?}");
}

#[test]
fn the_same_pool_twice_counts_once() {
    let m = Machine::new(64, &[M2], 0, false);
    let p = m.plan(
        "[[hugepages]]\nsize = \"2M\"\ncount = 8\n[[hugepages]]\nsize = \"2048kB\"\ncount = 16\n",
        "",
    );
    assert_eq!(p[0].requested, 8);
    assert_eq!(p[1].requested, 0);
    assert!(
        notes(&p[1]).contains(":4: the same pool as line 1"),
        "{p:?}"
    );
}

#[test]
fn floor_refuses_what_would_starve_the_host() {
    // 4 GiB: the floor is 1 GiB; 4 x 1G would leave nothing.
    let m = Machine::new(4, &[M2, G1], 0, true);
    let p = m.plan("[[hugepages]]\nsize = \"1G\"\ncount = 4\n", "");
    assert_eq!(p[0].requested, 0);
    let n = notes(&p[0]);
    assert!(
        n.starts_with("refused: 4 pages of 1G would leave 0K of MemTotal 4G"),
        "{n}"
    );
    assert!(
        n.contains("under the floor of 1G (the default: the larger of 1G and 10% of MemTotal)"),
        "{n}"
    );
    assert!(n.contains("at most 3 would keep it"), "{n}");

    // Cumulative, largest first: 2 x 1G fit, then 2G of 2M pages would not; 512 would.
    let cfg =
        "[[hugepages]]\nsize = \"2M\"\ntotal = \"2G\"\n[[hugepages]]\nsize = \"1G\"\ncount = 2\n";
    let p = m.plan(cfg, "");
    assert_eq!((p[0].size_kb, p[0].requested), (G1, 2), "{p:?}");
    assert_eq!((p[1].size_kb, p[1].requested), (M2, 0), "{p:?}");
    assert!(notes(&p[1]).contains("at most 512 would keep it"), "{p:?}");

    // A configured floor replaces the default, both ways.
    let p = m.plan(
        "[memory]\nfloor = \"512M\"\n[[hugepages]]\nsize = \"2M\"\ntotal = \"3G\"\n",
        "",
    );
    assert_eq!(p[0].requested, 1536, "{p:?}");
    let big = Machine::new(64, &[M2, G1], 0, true);
    let p = big.plan(
        "[memory]\nfloor = \"50%\"\n[[hugepages]]\nsize = \"1G\"\ncount = 40\n",
        "",
    );
    assert_eq!(p[0].requested, 0);
    assert!(
        notes(&p[0]).contains("[memory] floor = 50% of MemTotal"),
        "{p:?}"
    );
    assert!(notes(&p[0]).contains("at most 32 would keep it"), "{p:?}");

    // Pages already in pools count against the floor.
    m.set(G1, None, 3);
    let p = m.plan("[[hugepages]]\nsize = \"2M\"\ncount = 64\n", "");
    assert_eq!(p[0].requested, 0, "{p:?}");
    assert!(notes(&p[0]).contains("no page more would keep it"), "{p:?}");

    // Without MemTotal the floor cannot be kept: refuse.
    let m = Machine::new(4, &[M2], 0, false);
    m.t.file("proc/meminfo", "garbage\n");
    let p = m.plan("[[hugepages]]\nsize = \"2M\"\ncount = 1\n", "");
    assert_eq!(p[0].requested, 0);
    assert!(notes(&p[0]).contains("MemTotal is unknown"), "{p:?}");
}

#[test]
fn command_line_reservation_is_respected_and_topped_up() {
    let m = Machine::new(32, &[M2, G1], 0, true);
    m.set(G1, None, 4);
    let cmdline = "ro default_hugepagesz=1G hugepagesz=1G hugepages=4";

    // Config asks the same: reported, left as is, not written.
    let plan = m.planned("[[hugepages]]\nsize = \"1G\"\ncount = 4\n", cmdline);
    let mut p = plan.records();
    assert_eq!(p[0].requested, 4);
    let n = notes(&p[0]);
    assert!(
        n.contains(
            "the kernel command line reserves 4 pages (hugepagesz=1G hugepages=4); 4 there now"
        ),
        "{n}"
    );
    assert!(n.contains("left as is"), "{n}");
    let log = logged(|| p = reserve(&m.host(), &plan, T));
    assert_eq!(
        m.count(G1, None),
        "4\n",
        "not written (a write would leave \"4\")"
    );
    assert_eq!(p[0].obtained, Some(4));
    assert_eq!(
        log,
        [(
            Level::Info,
            "hugepages 1G: requested 4, 4 already reserved".to_owned()
        )]
    );

    // Config asks less: never shrink.
    let plan = m.planned("[[hugepages]]\nsize = \"1G\"\ncount = 2\n", cmdline);
    let p = reserve(&m.host(), &plan, T);
    assert_eq!(m.count(G1, None), "4\n");
    assert_eq!(p[0].obtained, Some(4));

    // Config asks more: top up.
    let plan = m.planned("[[hugepages]]\nsize = \"1G\"\ncount = 6\n", cmdline);
    let mut p = plan.records();
    assert_eq!(p[0].requested, 6);
    assert!(notes(&p[0]).contains("top up from 4 to 6"), "{p:?}");
    let log = logged(|| p = reserve(&m.host(), &plan, T));
    assert_eq!(m.count(G1, None), "6");
    assert_eq!(p[0].obtained, Some(6));
    assert_eq!(
        log,
        [(
            Level::Info,
            "hugepages 1G: requested 6, obtained 6".to_owned()
        )]
    );
}

// --- reserve -------------------------------------------------------------------------

#[test]
fn reserve_writes_reads_back_and_logs_one_line_per_pool() {
    let m = Machine::new(64, &[M2, G1], 2, true);
    let cfg = "[[hugepages]]\nsize = \"2M\"\ncount = 512\n[[hugepages]]\nsize = \"1G\"\ncount = 4\nnode = 0\n\
               [[hugepages]]\nsize = \"1G\"\ncount = 1\nnode = 9\n";
    let plan = m.planned(cfg, "");
    let mut p = vec![];
    let log = logged(|| p = reserve(&m.host(), &plan, T));
    assert_eq!(m.count(G1, Some(0)), "4");
    assert_eq!(m.count(G1, Some(1)), "0\n", "the other node is not touched");
    assert_eq!(m.count(M2, None), "512");
    let got: Vec<_> = p
        .iter()
        .map(|r| (r.size_kb, r.node, r.requested, r.obtained))
        .collect();
    assert_eq!(
        got,
        [
            (G1, Some(0), 4, Some(4)),
            (G1, Some(9), 0, None),
            (M2, None, 512, Some(512))
        ]
    );
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(
        log[0],
        (
            Level::Info,
            "hugepages 1G node 0: requested 4, obtained 4".to_owned()
        )
    );
    assert_eq!(log[1].0, Level::Warn);
    assert!(
        log[1]
            .1
            .starts_with("hugepages 1G node 9: not reserved: /etc/vfio-early.toml:8: node 9"),
        "{log:?}"
    );
    // A whole-system pool on a NUMA machine: the spread per node is read back too (the
    // fixture's node files hold what they held: the kernel would spread the pages).
    assert_eq!(
        log[2],
        (
            Level::Info,
            "hugepages 2M: requested 512, obtained 512 (node 0: 0, node 1: 0)".to_owned()
        )
    );
}

#[test]
fn reserve_goes_largest_first_whatever_the_order_given() {
    // A record list in the wrong order: 1G must still be written before 2M. The 2M
    // pool file is missing, so its write fails; had it been first, the 1G log line
    // would come second.
    let m = Machine::new(64, &[G1], 0, true);
    let plan = by_hand(vec![grow(M2, 8), grow(G1, 2)]);
    let mut p = vec![];
    let log = logged(|| p = reserve(&m.host(), &plan, T));
    assert_eq!(
        log[0],
        (
            Level::Info,
            "hugepages 1G: requested 2, obtained 2".to_owned()
        )
    );
    assert_eq!(log[1].0, Level::Error);
    assert!(
        log[1].1.starts_with("hugepages 2M: writing 8 failed: "),
        "{log:?}"
    );
    assert!(
        log[1].1.contains("hugepages-2048kB/nr_hugepages"),
        "{log:?}"
    );
    assert_eq!(
        log[2],
        (
            Level::Error,
            "hugepages 2M: requested 8, the count could not be read back".to_owned()
        )
    );
    assert_eq!(p[0].obtained, None);
    assert!(notes(&p[0]).contains("writing 8 failed"), "{p:?}");
    assert_eq!(p[1].obtained, Some(2));
}

#[test]
fn reserve_survives_a_broken_pool() {
    // nr_hugepages is a directory: the write fails (EISDIR), nothing panics, the
    // failure is logged and noted.
    let m = Machine::new(64, &[M2], 0, false);
    std::fs::remove_file(m.t.path(&count_path(M2, None))).unwrap();
    std::fs::create_dir(m.t.path(&count_path(M2, None))).unwrap();
    let plan = by_hand(vec![grow(M2, 4)]);
    let mut p = vec![];
    let log = logged(|| p = reserve(&m.host(), &plan, T));
    assert!(
        log.iter()
            .any(|(l, s)| *l == Level::Error && s.contains("writing 4 failed")),
        "{log:?}"
    );
    assert!(notes(&p[0]).contains("writing 4 failed"), "{p:?}");
}

#[test]
fn shortfall_line_carries_the_command_line_fix() {
    let short = HugepageRecord {
        size: "1G".into(),
        size_kb: G1,
        requested: 4,
        obtained: Some(1),
        ..Default::default()
    };
    let (level, line) = outcome_line(&short, None);
    assert_eq!(level, Level::Warn);
    assert!(
        line.starts_with("hugepages 1G: requested 4, obtained 1 (3 short); "),
        "{line}"
    );
    assert!(
        line.ends_with("default_hugepagesz=1G hugepagesz=1G hugepages=4"),
        "{line}"
    );
    assert_eq!(hugepages::verdict(4, Some(1)), hugepages::Verdict::Short(3));
}

// --- status --------------------------------------------------------------------------

#[test]
fn status_compares_pools_with_the_config() {
    let m = Machine::new(32, &[M2, G1], 0, true);
    m.set(G1, None, 1);
    m.set(M2, None, 512);
    let s = m.status("[[hugepages]]\nsize = \"1G\"\ncount = 4\n");
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(
        matches!(
            s[0].kind,
            StatusKind::Asked {
                want: 4,
                now: Some(1),
                ..
            }
        ),
        "{s:?}"
    );
    assert_eq!(s[0].pool.size_kb, G1);
    let n = status_notes(&s[0]);
    assert!(n.contains("1 reserved, 3 short of the config"), "{n}");
    assert!(
        n.contains("default_hugepagesz=1G hugepagesz=1G hugepages=4"),
        "{n}"
    );
    // The 2M pool holds pages the config does not ask for.
    assert_eq!(
        (s[1].pool.size_kb, &s[1].kind),
        (M2, &StatusKind::Unasked { now: 512 })
    );
    assert!(status_notes(&s[1]).contains("does not ask for"), "{s:?}");

    // Met: no note. Unknown size: the reason.
    m.set(G1, None, 4);
    m.set(M2, None, 0);
    let s = m.status(
        "[[hugepages]]\nsize = \"1G\"\ncount = 4\n[[hugepages]]\nsize = \"16G\"\ncount = 1\n",
    );
    assert_eq!(s[0].pool.size_kb, 16 * G1);
    assert!(matches!(s[0].kind, StatusKind::Unusable { .. }), "{s:?}");
    assert!(
        status_notes(&s[0]).contains(":4: size 16G is not offered"),
        "{s:?}"
    );
    assert_eq!(s[1].pool.size_kb, G1);
    assert!(
        matches!(
            s[1].kind,
            StatusKind::Asked {
                want: 4,
                now: Some(4),
                ..
            }
        ),
        "{s:?}"
    );
    assert!(s[1].notes().is_empty(), "{s:?}");
    assert_eq!(s.len(), 2);
}

#[test]
fn dry_run_json_shape() {
    let m = Machine::new(32, &[M2, G1], 0, true);
    let p = m.plan(BOTH, "");
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v[0]["size"], "1G");
    assert_eq!(v[0]["size_kb"], G1);
    assert_eq!(v[0]["requested"], 4);
    assert!(v[0]["obtained"].is_null());
    assert!(v[0]["node"].is_null());
}

#[test]
fn status_shortfall_advice_knows_the_command_line() {
    // The command line asked for 4 and the kernel found 1 at boot: the command line
    // is no fix, and the note says so instead of suggesting it again.
    let m = Machine::new(8, &[M2, G1], 0, true);
    m.t.cmdline("ro default_hugepagesz=1G hugepagesz=1G hugepages=4\n");
    m.set(G1, None, 1);
    let s = m.status("[[hugepages]]\nsize = \"1G\"\ncount = 4\n");
    let n = status_notes(&s[0]);
    assert!(n.contains("1 reserved, 3 short"), "{n}");
    assert!(
        n.contains("the kernel command line already asks for 4"),
        "{n}"
    );
    assert!(!n.contains("hugepages=4"), "{n}");

    // It asked for fewer than the config: raise it.
    m.t.cmdline("hugepagesz=1G hugepages=2\n");
    let s = m.status("[[hugepages]]\nsize = \"1G\"\ncount = 4\n");
    assert!(
        status_notes(&s[0]).contains("raise the kernel command line's 2 to 4"),
        "{s:?}"
    );
}

#[test]
fn absurd_kernel_values_never_panic() {
    let max = u64::MAX;
    let m = Machine::new(8, &[M2, G1], 2, true);
    m.t.file(
        "proc/meminfo",
        &format!("MemTotal: {max} kB\nHugepagesize: {max} kB\n"),
    );
    m.t.cmdline(&format!(
        "hugepagesz=1G hugepages=0:{max},1:{max} hugepages={max} hugepagesz=16E hugepages=1"
    ));
    m.set(M2, None, max);
    m.set(G1, Some(1), max);
    m.set(G1, None, max);
    m.t.file(&count_path(G1, Some(0)), "garbage\n");
    let cfg = "[memory]\nfloor = \"100%\"\n[[hugepages]]\nsize = \"1G\"\ncount = 9223372036854775807\nnode = 0\n\
               [[hugepages]]\nsize = \"2M\"\ntotal = \"17179869183T\"\n";
    let plan = m.planned(cfg, &m.t.read("proc/cmdline"));
    assert_eq!(plan.reservations.len(), 2);
    logged(|| {
        reserve(&m.host(), &plan, T);
    });
    let s = m.status(cfg);
    assert!(!s.is_empty());
}
