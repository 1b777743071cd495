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
//! [`plan`] decides (and is what `bind --dry-run` shows), [`reserve`] writes and reads
//! back, [`status`] compares the pools now with the config, for `check`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use log::{error, info, warn};

use crate::cmdline::Cmdline;
use crate::config::{Config, HugepagesEntry};
use crate::host::{Host, HostError};
use crate::record::HugepageRecord;

/// The global pools, relative to the host root.
pub const POOLS: &str = "sys/kernel/mm/hugepages";
/// The NUMA nodes, relative to the host root.
pub const NODES: &str = "sys/devices/system/node";
/// `proc/meminfo`, relative to the host root.
pub const MEMINFO: &str = "proc/meminfo";

const MIB_KB: u64 = 1024;
const GIB_KB: u64 = 1024 * 1024;
/// The default floor: at least this much memory stays with the host...
pub const DEFAULT_FLOOR_KB: u64 = GIB_KB;
/// ...or this share of `MemTotal`, whichever is larger.
pub const DEFAULT_FLOOR_PERCENT: u64 = 10;

// ---------------------------------------------------------------------------------
// Sizes

/// Parses a size with a unit (`2M`, `1G`, `2048kB`, `1GiB`, case-insensitive) into kB.
///
/// A bare number is refused: in a config, `2048` could mean bytes, kB or pages.
pub fn parse_size_kb(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "{s:?} is not a size (examples: \"2M\", \"1G\", \"2048kB\")"
        ));
    }
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("{s:?} is too large"))?;
    let unit = t[digits..].trim().to_ascii_lowercase();
    let mult = match unit.as_str() {
        "" => {
            return Err(format!(
                "{s:?} needs a unit (examples: \"2M\", \"1G\", \"2048kB\")"
            ))
        }
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => MIB_KB,
        "g" | "gb" | "gib" => GIB_KB,
        "t" | "tb" | "tib" => GIB_KB * 1024,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    let kb = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if kb == 0 {
        return Err(format!("{s:?} is zero"));
    }
    Ok(kb)
}

/// The kernel's `memparse` (a number, decimal or `0x` hex, with an optional K, M, G,
/// T, P or E suffix; a bare number is bytes), as kB. `None` when it is not a size.
pub fn memparse_kb(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, rest) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        let n = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
        (u64::from_str_radix(&hex[..n], 16).ok()?, &hex[n..])
    } else {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (s[..n].parse::<u64>().ok()?, &s[n..])
    };
    let shift = match rest.chars().next().map(|c| c.to_ascii_lowercase()) {
        None => 0,
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        Some('e') => 60,
        Some(_) => return None,
    };
    let bytes = digits.checked_mul(1u64.checked_shl(shift)?)?;
    Some(bytes / 1024)
}

/// The usual name of a page size in kB: `2M`, `1G`, `64K`.
pub fn size_name(kb: u64) -> String {
    if kb >= GIB_KB && kb % GIB_KB == 0 {
        format!("{}G", kb / GIB_KB)
    } else if kb >= MIB_KB && kb % MIB_KB == 0 {
        format!("{}M", kb / MIB_KB)
    } else {
        format!("{kb}K")
    }
}

/// An amount of memory in kB, for people: `1G`, `1.5G`, `512M`, `300K`.
pub fn amount(kb: u64) -> String {
    if kb >= GIB_KB && kb % GIB_KB != 0 {
        // Tenths of a GiB, rounded down: a floor must never look larger than it is.
        let tenths = u128::from(kb) * 10 / u128::from(GIB_KB);
        format!("{}.{}G", tenths / 10, tenths % 10)
    } else if kb >= MIB_KB && kb % MIB_KB != 0 && kb < GIB_KB {
        format!("{}M", kb / MIB_KB)
    } else {
        size_name(kb)
    }
}

/// The minimum memory left to the host after hugepage reservations (`[memory] floor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// An amount, in kB (`floor = "2G"`).
    Kb(u64),
    /// A share of `MemTotal` (`floor = "15%"`).
    Percent(u8),
}

impl FromStr for Floor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.trim().strip_suffix('%') {
            let p: u8 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage"))?;
            if p > 100 {
                return Err(format!("{s:?} is more than 100 %"));
            }
            return Ok(Self::Percent(p));
        }
        if s.trim() == "0" {
            return Ok(Self::Kb(0));
        }
        parse_size_kb(s).map(Self::Kb)
    }
}

impl fmt::Display for Floor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kb(kb) => write!(f, "{}", amount(*kb)),
            Self::Percent(p) => write!(f, "{p}% of MemTotal"),
        }
    }
}

/// The floor in kB for a machine with `mem_total_kb`, and how it was chosen.
pub fn floor_kb(floor: Option<Floor>, mem_total_kb: u64) -> (u64, String) {
    match floor {
        Some(Floor::Kb(kb)) => (kb, format!("[memory] floor = {}", amount(kb))),
        Some(Floor::Percent(p)) => (
            mem_total_kb.saturating_mul(u64::from(p)) / 100,
            format!("[memory] floor = {p}% of MemTotal"),
        ),
        None => (
            DEFAULT_FLOOR_KB.max(mem_total_kb.saturating_mul(DEFAULT_FLOOR_PERCENT) / 100),
            format!("the default: the larger of 1G and {DEFAULT_FLOOR_PERCENT}% of MemTotal"),
        ),
    }
}

// ---------------------------------------------------------------------------------
// What the kernel shows

/// The fields of `proc/meminfo` the planner uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meminfo {
    /// `MemTotal`, kB.
    pub mem_total_kb: Option<u64>,
    /// `Hugepagesize`: the default hugepage size, kB.
    pub hugepagesize_kb: Option<u64>,
}

/// Parses `proc/meminfo` text.
pub fn parse_meminfo(text: &str) -> Meminfo {
    let mut m = Meminfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let value = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        match key.trim() {
            "MemTotal" => m.mem_total_kb = value,
            "Hugepagesize" => m.hugepagesize_kb = value,
            _ => {}
        }
    }
    m
}

fn pool_dir(size_kb: u64, node: Option<u32>) -> String {
    match node {
        None => format!("{POOLS}/hugepages-{size_kb}kB"),
        Some(n) => format!("{NODES}/node{n}/hugepages/hugepages-{size_kb}kB"),
    }
}

/// The `nr_hugepages` file of a pool, relative to the host root.
pub fn count_path(size_kb: u64, node: Option<u32>) -> String {
    format!("{}/nr_hugepages", pool_dir(size_kb, node))
}

/// The page sizes the kernel offers, in kB, largest first.
pub fn offered_sizes(host: &Host) -> Vec<u64> {
    let mut sizes: Vec<u64> = host
        .list(POOLS)
        .iter()
        .filter_map(|n| {
            n.strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()
        })
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes
}

/// The NUMA nodes sysfs shows, in order (empty on a kernel without NUMA).
pub fn numa_nodes(host: &Host) -> Vec<u32> {
    let mut nodes: Vec<u32> = host
        .list(NODES)
        .iter()
        .filter_map(|n| n.strip_prefix("node")?.parse().ok())
        .collect();
    nodes.sort_unstable();
    nodes
}

/// The pages in a pool now (`nr_hugepages`); `None` when it cannot be read.
pub fn read_count(host: &Host, size_kb: u64, node: Option<u32>) -> Option<u64> {
    host.read_attr(count_path(size_kb, node))?.parse().ok()
}

fn cpu_lacks_pdpe1gb(host: &Host) -> bool {
    host.read("proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| !l.split_whitespace().any(|f| f == "pdpe1gb"))
    })
}

// ---------------------------------------------------------------------------------
// The kernel command line

/// What the kernel command line reserves for one page size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdlineReservation {
    /// `hugepages=N`: pages over all nodes.
    pub count: Option<u64>,
    /// `hugepages=0:N,1:M`: pages per node.
    pub nodes: BTreeMap<u32, u64>,
    /// The parameters that did it, as written.
    pub params: Vec<String>,
}

impl CmdlineReservation {
    /// The pages asked for on a node (`None`: the whole system).
    pub fn pages(&self, node: Option<u32>) -> Option<u64> {
        match node {
            None if self.nodes.is_empty() => self.count,
            None => Some(self.nodes.values().fold(0, |a, &b| a.saturating_add(b))),
            Some(n) => self.nodes.get(&n).copied(),
        }
    }
}

/// The reservations of the kernel command line per page size (kB), as the kernel reads
/// them: `hugepages=` counts pages of the size named by the last `hugepagesz=` or
/// `default_hugepagesz=` before it, or of the default size when it comes first; a
/// `hugepages=` after an unsupported `hugepagesz=` is ignored, and so is a second
/// `hugepages=` without a size between. `default_kb` is the default size when the
/// command line does not set it (`Hugepagesize` of `proc/meminfo`).
pub fn cmdline_reservations(
    cmdline: &Cmdline,
    default_kb: u64,
) -> BTreeMap<u64, CmdlineReservation> {
    #[derive(Clone, Copy, PartialEq)]
    enum Target {
        Default,
        Size(u64),
        Invalid,
    }
    let mut default_size: Option<u64> = None;
    let mut target = Target::Default;
    let mut last_counted: Option<Target> = None;
    // (size, the parameter, count, per-node counts)
    type Found = (Target, String, Option<u64>, BTreeMap<u32, u64>);
    let mut found: Vec<Found> = Vec::new();
    for (name, value) in cmdline.params() {
        let v = value.unwrap_or("");
        if crate::cmdline::param_eq(name, "hugepagesz") {
            target = memparse_kb(v)
                .filter(|&k| k > 0)
                .map_or(Target::Invalid, Target::Size);
        } else if crate::cmdline::param_eq(name, "default_hugepagesz") {
            if default_size.is_none() {
                if let Some(k) = memparse_kb(v).filter(|&k| k > 0) {
                    default_size = Some(k);
                    target = Target::Size(k);
                }
            }
        } else if crate::cmdline::param_eq(name, "hugepages") {
            if target == Target::Invalid || last_counted == Some(target) {
                continue;
            }
            last_counted = Some(target);
            let (count, nodes) = parse_pages_value(v);
            found.push((target, format!("{name}={v}"), count, nodes));
        }
    }
    let default_kb = default_size.unwrap_or(default_kb);
    let mut out: BTreeMap<u64, CmdlineReservation> = BTreeMap::new();
    for (t, param, count, nodes) in found {
        let kb = match t {
            Target::Size(k) => k,
            _ => default_kb,
        };
        let r = out.entry(kb).or_default();
        r.params.push(if matches!(t, Target::Default) {
            param
        } else {
            format!("hugepagesz={} {param}", size_name(kb))
        });
        if !nodes.is_empty() {
            r.nodes = nodes;
            r.count = None;
        } else if count.is_some() {
            r.count = count;
            r.nodes.clear();
        }
    }
    out
}

/// `N` or `node:N[,node:N...]`.
fn parse_pages_value(v: &str) -> (Option<u64>, BTreeMap<u32, u64>) {
    let mut nodes = BTreeMap::new();
    if v.contains(':') {
        for part in v.split(',') {
            if let Some((n, c)) = part.split_once(':') {
                if let (Ok(n), Ok(c)) = (n.trim().parse::<u32>(), c.trim().parse::<u64>()) {
                    nodes.insert(n, c);
                }
            }
        }
        return (None, nodes);
    }
    (v.trim().parse().ok(), nodes)
}

// ---------------------------------------------------------------------------------
// Plan

/// The pages an entry asks for, and a note when `total` was rounded up.
pub fn wanted_pages(entry: &HugepagesEntry, size_kb: u64) -> Result<(u64, Option<String>), String> {
    match (entry.count, &entry.total) {
        (Some(_), Some(_)) => Err("give `count` or `total`, not both".to_owned()),
        (None, None) => Err("needs `count` or `total`".to_owned()),
        (Some(0), None) => Err("count = 0 reserves nothing".to_owned()),
        (Some(c), None) => Ok((c, None)),
        (None, Some(t)) => {
            let total = parse_size_kb(t).map_err(|e| format!("total: {e}"))?;
            let pages = total.div_ceil(size_kb);
            let note = (total % size_kb != 0).then(|| {
                format!(
                    "total {} is not a whole number of {} pages: rounded up to {pages}",
                    amount(total),
                    size_name(size_kb)
                )
            });
            Ok((pages, note))
        }
    }
}

/// One config entry, checked against the kernel.
struct Draft {
    line: usize,
    size: String,
    size_kb: u64,
    node: Option<u32>,
    /// Pages wanted, or why the entry cannot be used.
    want: Result<u64, String>,
    notes: Vec<String>,
}

impl Draft {
    /// The record of this entry before anything is requested or read back.
    fn record(&self) -> HugepageRecord {
        HugepageRecord {
            size: self.size.clone(),
            size_kb: self.size_kb,
            node: self.node,
            requested: 0,
            obtained: None,
            notes: self.notes.clone(),
        }
    }
}

fn label(size: &str, node: Option<u32>) -> String {
    match node {
        Some(n) => format!("{size} node {n}"),
        None => size.to_owned(),
    }
}

fn check_entry(
    host: &Host,
    config: &Config,
    line: usize,
    entry: &HugepagesEntry,
    offered: &[u64],
    nodes: &[u32],
) -> Draft {
    let at = format!("{}:{line}", config.path.display());
    let mut d = Draft {
        line,
        size: entry.size.trim().to_owned(),
        size_kb: 0,
        node: entry.node,
        want: Err(String::new()),
        notes: Vec::new(),
    };
    let size_kb = match parse_size_kb(&entry.size) {
        Ok(kb) => kb,
        Err(e) => {
            d.want = Err(format!("{at}: [[hugepages]] size: {e}"));
            return d;
        }
    };
    d.size_kb = size_kb;
    d.size = size_name(size_kb);
    let names = offered
        .iter()
        .map(|&k| size_name(k))
        .collect::<Vec<_>>()
        .join(", ");
    if offered.is_empty() {
        d.want = Err(format!(
            "{at}: size {}: this kernel offers no hugepages (no {POOLS}: CONFIG_HUGETLBFS is off)",
            d.size
        ));
        return d;
    }
    if !offered.contains(&size_kb) {
        let mut msg = format!(
            "{at}: size {} is not offered by this kernel and CPU (offered: {names})",
            d.size
        );
        if size_kb == GIB_KB && cpu_lacks_pdpe1gb(host) {
            msg.push_str("; 1G pages need the CPU flag pdpe1gb, which this CPU lacks (under QEMU: -cpu host or -cpu max)");
        }
        d.want = Err(msg);
        return d;
    }
    if let Some(n) = entry.node {
        if nodes.is_empty() {
            d.want = Err(format!(
                "{at}: node {n}: this kernel shows no NUMA nodes ({NODES}); leave `node` out"
            ));
            return d;
        }
        if !nodes.contains(&n) {
            let list = nodes
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            d.want = Err(format!("{at}: node {n} does not exist (nodes: {list})"));
            return d;
        }
        if !host.exists(count_path(size_kb, Some(n))) {
            d.want = Err(format!("{at}: node {n} has no {} pool", d.size));
            return d;
        }
    }
    d.want = match wanted_pages(entry, size_kb) {
        Ok((pages, note)) => {
            d.notes.extend(note);
            Ok(pages)
        }
        Err(e) => Err(format!("{at}: [[hugepages]] {e}")),
    };
    d
}

/// Checks every `[[hugepages]]` entry, largest size first (whole-system pools before
/// per-node ones, then by node and line).
fn drafts(host: &Host, config: &Config) -> Vec<Draft> {
    let offered = offered_sizes(host);
    let nodes = numa_nodes(host);
    let mut out: Vec<Draft> = config
        .hugepages
        .iter()
        .map(|(line, e)| check_entry(host, config, *line, e, &offered, &nodes))
        .collect();
    out.sort_by(|a, b| {
        b.size_kb
            .cmp(&a.size_kb)
            .then(a.node.cmp(&b.node))
            .then(a.line.cmp(&b.line))
    });
    // The same pool twice: the first line counts.
    let mut seen: BTreeMap<(u64, Option<u32>), usize> = BTreeMap::new();
    for d in &mut out {
        if d.want.is_ok() {
            if let Some(first) = seen.get(&(d.size_kb, d.node)) {
                d.want = Err(format!(
                    "{}:{}: the same pool as line {first} ({}); only line {first} counts",
                    config.path.display(),
                    d.line,
                    label(&d.size, d.node)
                ));
            } else {
                seen.insert((d.size_kb, d.node), d.line);
            }
        }
    }
    out
}

/// The reservation to make: one record per `[[hugepages]]` entry, largest size first.
///
/// `requested` is the pool size to reach; an entry that cannot or must not be reserved
/// (unknown size or node, a bad value, the floor) has `requested` = 0 and says why in
/// `notes`. Pools the command line already filled to the config's count are left as
/// they are (`requested` is the config's count, and [`reserve`] writes nothing). Reads
/// the host; changes nothing. `obtained` is `None`.
pub fn plan(host: &Host, config: &Config, cmdline: &Cmdline) -> Vec<HugepageRecord> {
    if config.hugepages.is_empty() {
        return Vec::new();
    }
    let meminfo = host
        .read(MEMINFO)
        .map(|t| parse_meminfo(&t))
        .unwrap_or_default();
    let offered = offered_sizes(host);
    let from_cmdline = cmdline_reservations(cmdline, meminfo.hugepagesize_kb.unwrap_or(2 * MIB_KB));
    // Memory already in hugepage pools (MemTotal counts it).
    let pooled_kb: u64 = offered
        .iter()
        .map(|&kb| read_count(host, kb, None).unwrap_or(0).saturating_mul(kb))
        .fold(0, u64::saturating_add);
    let floor = meminfo
        .mem_total_kb
        .map(|t| floor_kb(config.memory.floor, t));
    let mut added_kb: u64 = 0;
    let mut out = Vec::new();
    for d in drafts(host, config) {
        let mut rec = d.record();
        let want = match d.want {
            Ok(w) => w,
            Err(e) => {
                rec.notes.push(e);
                out.push(rec);
                continue;
            }
        };
        let now = read_count(host, d.size_kb, d.node).unwrap_or(0);
        if let Some(c) = from_cmdline.get(&d.size_kb) {
            let pages = c
                .pages(d.node)
                .map_or_else(|| "pages".to_owned(), |p| format!("{p} pages"));
            rec.notes.push(format!(
                "the kernel command line reserves {pages} ({}); {now} there now",
                c.params.join(" ")
            ));
        }
        if now >= want {
            rec.requested = want;
            rec.notes.push(format!(
                "config asks {want}, {now} already reserved: left as is"
            ));
            out.push(rec);
            continue;
        }
        let add_kb = (want - now).saturating_mul(d.size_kb);
        let Some((total_kb, (floor_kb, why))) = meminfo.mem_total_kb.zip(floor.clone()) else {
            rec.notes.push(format!(
                "refused: {want} pages asked, but MemTotal is unknown ({MEMINFO} unreadable), so the floor cannot be kept"
            ));
            out.push(rec);
            continue;
        };
        let used = pooled_kb.saturating_add(added_kb);
        let left = total_kb.saturating_sub(used).saturating_sub(add_kb);
        if left < floor_kb {
            let room = total_kb.saturating_sub(used).saturating_sub(floor_kb);
            let fit = now.saturating_add(room / d.size_kb);
            let most = if fit > now {
                format!("at most {fit} would keep it")
            } else {
                "no page more would keep it".to_owned()
            };
            rec.notes.push(format!(
                "refused: {want} pages of {} would leave {} of MemTotal {} to the host, under the floor of {} ({why}); {most}",
                d.size,
                amount(left),
                amount(total_kb),
                amount(floor_kb),
            ));
            out.push(rec);
            continue;
        }
        added_kb = added_kb.saturating_add(add_kb);
        if now > 0 {
            rec.notes.push(format!("top up from {now} to {want}"));
        }
        rec.requested = want;
        out.push(rec);
    }
    out
}

// ---------------------------------------------------------------------------------
// Reserve

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

/// The fix for a shortfall that works: the kernel command line, which reserves pages
/// before memory fragments. `on_cmdline` is what the command line already asks for
/// this pool: when that is already enough, the command line cannot help either.
pub fn shortfall_fix(
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

/// What the host's kernel command line asks for, per page size (kB).
fn host_cmdline_reservations(host: &Host) -> BTreeMap<u64, CmdlineReservation> {
    let cmdline = Cmdline::parse(&host.read("proc/cmdline").unwrap_or_default());
    let default_kb = host
        .read(MEMINFO)
        .ok()
        .and_then(|t| parse_meminfo(&t).hugepagesize_kb)
        .unwrap_or(2 * MIB_KB);
    cmdline_reservations(&cmdline, default_kb)
}

/// The log line (and its level) for a reservation that was attempted. Pure: what
/// [`reserve`] logs after reading back.
pub fn outcome_line(rec: &HugepageRecord, on_cmdline: Option<u64>) -> (log::Level, String) {
    let what = label(&rec.size, rec.node);
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

/// The pages one write may add: 1 GiB worth (one 1G page, 512 2M pages), so that each
/// bounded write has a bounded amount of work and a pool that stops growing is seen
/// after one step, not after the whole request.
pub fn step_pages(size_kb: u64) -> u64 {
    (GIB_KB / size_kb.max(1)).max(1)
}

/// The counts to write, in order, to grow a pool from `now` to `requested`.
pub fn steps(now: u64, requested: u64, size_kb: u64) -> Vec<u64> {
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
/// give, and at the first failed write. Returns the write error, if any.
fn grow(host: &Host, rec: &HugepageRecord, now: u64, timeout: Duration) -> Option<String> {
    let path = count_path(rec.size_kb, rec.node);
    for target in steps(now, rec.requested, rec.size_kb) {
        if let Err(e) = host.write_bounded(&path, &target.to_string(), timeout) {
            let hint = if matches!(e, HostError::Timeout { .. }) {
                format!(
                    "; the kernel was still allocating: [bind] timeout_ms = {} bounds each GiB",
                    timeout.as_millis()
                )
            } else {
                String::new()
            };
            return Some(format!("writing {target} failed: {e}{hint}"));
        }
        if !matches!(read_count(host, rec.size_kb, rec.node), Some(got) if got >= target) {
            break;
        }
    }
    None
}

/// Reserves the planned pools, larger sizes first: grows each pool's `nr_hugepages`
/// by at most 1 GiB per write (each write bounded by `timeout`; the kernel stops
/// allocating when an abandoned writer is killed), reads the count back into
/// `obtained`, and logs one line per pool. Pools are never shrunk: a pool that already
/// holds `requested` pages is not written. Entries with `requested` = 0 are skipped
/// (their notes are logged as a warning). Never panics; failures are logged and noted.
pub fn reserve(host: &Host, plan: &mut [HugepageRecord], timeout: Duration) {
    let mut order: Vec<usize> = (0..plan.len()).collect();
    order.sort_by(|&a, &b| {
        plan[b]
            .size_kb
            .cmp(&plan[a].size_kb)
            .then(plan[a].node.cmp(&plan[b].node))
    });
    let nodes = numa_nodes(host);
    let asked = host_cmdline_reservations(host);
    for i in order {
        let rec = &mut plan[i];
        let what = label(&rec.size, rec.node);
        if rec.requested == 0 {
            if !rec.notes.is_empty() {
                warn!("hugepages {what}: not reserved: {}", rec.notes.join("; "));
            }
            continue;
        }
        let before = read_count(host, rec.size_kb, rec.node);
        if let Some(b) = before.filter(|&b| b >= rec.requested) {
            rec.obtained = Some(b);
            info!(
                "hugepages {what}: requested {}, {b} already reserved",
                rec.requested
            );
            continue;
        }
        if let Some(e) = grow(host, rec, before.unwrap_or(0), timeout) {
            error!("hugepages {what}: {e}");
            rec.notes.push(e);
        }
        rec.obtained = read_count(host, rec.size_kb, rec.node);
        let on_cmdline = asked.get(&rec.size_kb).and_then(|c| c.pages(rec.node));
        let (level, mut line) = outcome_line(rec, on_cmdline);
        if rec.node.is_none() && nodes.len() > 1 {
            let spread: Vec<String> = nodes
                .iter()
                .filter_map(|&n| {
                    read_count(host, rec.size_kb, Some(n)).map(|c| format!("node {n}: {c}"))
                })
                .collect();
            if !spread.is_empty() {
                let got = format!("obtained {}", rec.obtained.unwrap_or(0));
                line = line.replacen(&got, &format!("{got} ({})", spread.join(", ")), 1);
            }
        }
        if let Verdict::Short(missing) = verdict(rec.requested, rec.obtained) {
            rec.notes.push(format!(
                "obtained {} of {} ({missing} short); {}",
                rec.obtained.unwrap_or(0),
                rec.requested,
                shortfall_fix(rec.size_kb, rec.node, rec.requested, on_cmdline)
            ));
        }
        log::log!(level, "{line}");
    }
}

// ---------------------------------------------------------------------------------
// Status

/// The pools now versus the config, for `vfio-early check`: one record per config
/// entry (`requested` = what the config asks, 0 when the entry is unusable, with the
/// reason in `notes`; `obtained` = the pool's count now), then one per pool that holds
/// pages the config does not ask for (`requested` = 0, a note saying so). A pool
/// short of its request has a note with the fix.
pub fn status(host: &Host, config: &Config) -> Vec<HugepageRecord> {
    let mut out = Vec::new();
    let mut covered: Vec<u64> = Vec::new();
    let asked = host_cmdline_reservations(host);
    for d in drafts(host, config) {
        let mut rec = d.record();
        match d.want {
            Ok(want) => {
                covered.push(d.size_kb);
                rec.requested = want;
                rec.obtained = read_count(host, d.size_kb, d.node);
                match verdict(want, rec.obtained) {
                    Verdict::Met => {}
                    Verdict::Short(missing) => rec.notes.push(format!(
                        "{} reserved, {missing} short of the config; {}",
                        rec.obtained.unwrap_or(0),
                        shortfall_fix(
                            d.size_kb,
                            d.node,
                            want,
                            asked.get(&d.size_kb).and_then(|c| c.pages(d.node))
                        )
                    )),
                    Verdict::Unknown => rec
                        .notes
                        .push(format!("{} unreadable", count_path(d.size_kb, d.node))),
                }
            }
            Err(e) => rec.notes.push(e),
        }
        out.push(rec);
    }
    for kb in offered_sizes(host) {
        let now = read_count(host, kb, None).unwrap_or(0);
        if now > 0 && !covered.contains(&kb) {
            out.push(HugepageRecord {
                size: size_name(kb),
                size_kb: kb,
                node: None,
                requested: 0,
                obtained: Some(now),
                notes: vec![format!(
                    "{now} pages of {} reserved that the config does not ask for",
                    size_name(kb)
                )],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_need_a_unit() {
        assert_eq!(parse_size_kb("2M"), Ok(2048));
        assert_eq!(parse_size_kb("1G"), Ok(1_048_576));
        assert_eq!(parse_size_kb("1gib"), Ok(1_048_576));
        assert_eq!(parse_size_kb(" 2048kB "), Ok(2048));
        assert_eq!(parse_size_kb("8G"), Ok(8 * 1_048_576));
        assert!(parse_size_kb("2048").unwrap_err().contains("needs a unit"));
        assert!(parse_size_kb("2X").unwrap_err().contains("unknown unit"));
        assert!(parse_size_kb("M").is_err());
        assert!(parse_size_kb("0G").unwrap_err().contains("zero"));
        assert!(parse_size_kb("99999999999999999999G").is_err());
        assert!(parse_size_kb("18446744073709551615G").is_err());
    }

    #[test]
    fn memparse_like_the_kernel() {
        assert_eq!(memparse_kb("1G"), Some(1_048_576));
        assert_eq!(memparse_kb("2m"), Some(2048));
        assert_eq!(memparse_kb("2097152"), Some(2048), "a bare number is bytes");
        assert_eq!(memparse_kb("0x40000000"), Some(1_048_576));
        assert_eq!(memparse_kb("x"), None);
        assert_eq!(memparse_kb("1Q"), None);
        assert_eq!(memparse_kb("99E"), None, "overflow");
    }

    #[test]
    fn names_and_amounts() {
        assert_eq!(size_name(2048), "2M");
        assert_eq!(size_name(1_048_576), "1G");
        assert_eq!(size_name(64), "64K");
        assert_eq!(size_name(32 * 1024), "32M");
        assert_eq!(amount(1_572_864), "1.5G");
        assert_eq!(amount(3_000_000), "2.8G");
        assert_eq!(amount(600_000), "585M");
        assert_eq!(amount(4 * 1_048_576), "4G");
    }

    #[test]
    fn floors() {
        assert_eq!("2G".parse::<Floor>(), Ok(Floor::Kb(2 * GIB_KB)));
        assert_eq!("15%".parse::<Floor>(), Ok(Floor::Percent(15)));
        assert_eq!("0".parse::<Floor>(), Ok(Floor::Kb(0)));
        assert!("101%".parse::<Floor>().is_err());
        assert!("lots".parse::<Floor>().is_err());
        // Default: 1 GiB on a small machine, 10 % on a large one.
        assert_eq!(floor_kb(None, 4 * GIB_KB).0, GIB_KB);
        assert_eq!(floor_kb(None, 64 * GIB_KB).0, 64 * GIB_KB / 10);
        assert_eq!(floor_kb(Some(Floor::Percent(50)), 8 * GIB_KB).0, 4 * GIB_KB);
        assert_eq!(
            floor_kb(Some(Floor::Kb(512 * MIB_KB)), 64 * GIB_KB).0,
            512 * MIB_KB
        );
    }

    #[test]
    fn meminfo_fields() {
        let m = parse_meminfo(
            "MemTotal:        8024612 kB\nMemFree:         7000000 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n",
        );
        assert_eq!(
            m,
            Meminfo {
                mem_total_kb: Some(8_024_612),
                hugepagesize_kb: Some(2048)
            }
        );
        assert_eq!(
            parse_meminfo("garbage\n:\nMemTotal: x kB"),
            Meminfo::default()
        );
    }

    fn res(line: &str) -> BTreeMap<u64, CmdlineReservation> {
        cmdline_reservations(&Cmdline::parse(line), 2048)
    }

    #[test]
    fn cmdline_pairs_sizes_and_counts() {
        let r = res("ro hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512");
        assert_eq!(r[&GIB_KB].count, Some(4));
        assert_eq!(r[&2048].count, Some(512));
        assert_eq!(r[&GIB_KB].params, ["hugepagesz=1G hugepages=4"]);

        // First `hugepages=` goes to the default size, which a later
        // default_hugepagesz= may set.
        let r = res("hugepages=8 default_hugepagesz=1G");
        assert_eq!(r[&GIB_KB].count, Some(8));
        assert!(!r.contains_key(&2048));
        let r = res("hugepages=256 hugepagesz=1G hugepages=2");
        assert_eq!((r[&2048].count, r[&GIB_KB].count), (Some(256), Some(2)));

        // `default_hugepagesz=1G hugepages=N`: N pages of 1G.
        let r = res("default_hugepagesz=1G hugepagesz=1G hugepages=3");
        assert_eq!(r[&GIB_KB].count, Some(3));
        let r = res("default_hugepagesz=1G hugepages=3");
        assert_eq!(r[&GIB_KB].count, Some(3));
    }

    #[test]
    fn cmdline_node_form_and_kernel_quirks() {
        let r = res("hugepagesz=1G hugepages=0:1,1:3");
        assert_eq!(r[&GIB_KB].pages(Some(1)), Some(3));
        assert_eq!(r[&GIB_KB].pages(Some(2)), None);
        assert_eq!(r[&GIB_KB].pages(None), Some(4));
        // After an unsupported size the count is ignored; so is a second count
        // without a size between.
        assert!(res("hugepagesz=huge hugepages=4").is_empty());
        assert_eq!(
            res("hugepagesz=2M hugepages=4 hugepages=9")[&2048].count,
            Some(4)
        );
        // Without a size anywhere: the default size of the running kernel.
        assert_eq!(
            cmdline_reservations(&Cmdline::parse("hugepages=7"), 4096)[&4096].count,
            Some(7)
        );
        assert!(res("quiet splash").is_empty());
    }

    #[test]
    fn totals_round_up() {
        let e = |count, total: Option<&str>| HugepagesEntry {
            size: "2M".into(),
            count,
            total: total.map(str::to_owned),
            node: None,
        };
        assert_eq!(wanted_pages(&e(None, Some("8G")), GIB_KB), Ok((8, None)));
        let (pages, note) = wanted_pages(&e(None, Some("3M")), 2048).unwrap();
        assert_eq!(pages, 2);
        assert!(note.unwrap().contains("rounded up to 2"));
        assert_eq!(wanted_pages(&e(Some(5), None), 2048), Ok((5, None)));
        assert!(wanted_pages(&e(Some(5), Some("1G")), 2048)
            .unwrap_err()
            .contains("not both"));
        assert!(wanted_pages(&e(None, None), 2048).is_err());
        assert!(wanted_pages(&e(Some(0), None), 2048).is_err());
        assert!(wanted_pages(&e(None, Some("lots")), 2048)
            .unwrap_err()
            .starts_with("total:"));
    }

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

    #[test]
    fn verdict_compares_read_back() {
        assert_eq!(verdict(4, Some(4)), Verdict::Met);
        assert_eq!(verdict(4, Some(6)), Verdict::Met);
        assert_eq!(verdict(4, Some(1)), Verdict::Short(3));
        assert_eq!(verdict(4, Some(0)), Verdict::Short(4));
        assert_eq!(verdict(4, None), Verdict::Unknown);
    }

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
}
