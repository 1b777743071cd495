//! What the kernel writes about hugepages, from text: `proc/meminfo`, the `flags` of
//! `proc/cpuinfo`, pool directory names, and the reservations of the kernel command
//! line as the kernel itself reads them. Pure.

use std::collections::BTreeMap;

use crate::cmdline::{param_eq, Cmdline};
use crate::size::{memparse_kb, size_name};

/// The fields of `proc/meminfo` the planner uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meminfo {
    /// `MemTotal`, kB.
    pub mem_total_kb: Option<u64>,
    /// `Hugepagesize`: the default hugepage size, kB.
    pub hugepagesize_kb: Option<u64>,
}

/// Parses `proc/meminfo` text.
pub(crate) fn parse_meminfo(text: &str) -> Meminfo {
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

/// Whether some CPU of `proc/cpuinfo` lacks the `pdpe1gb` flag (1 GiB pages).
pub(crate) fn lacks_pdpe1gb(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| !l.split_whitespace().any(|f| f == "pdpe1gb"))
}

/// The page size of a pool directory name (`hugepages-2048kB` is 2048 kB).
pub(crate) fn pool_size_kb(dir_name: &str) -> Option<u64> {
    dir_name
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()
}

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
        if param_eq(name, "hugepagesz") {
            target = memparse_kb(v)
                .filter(|&k| k > 0)
                .map_or(Target::Invalid, Target::Size);
        } else if param_eq(name, "default_hugepagesz") {
            if default_size.is_none() {
                if let Some(k) = memparse_kb(v).filter(|&k| k > 0) {
                    default_size = Some(k);
                    target = Target::Size(k);
                }
            }
        } else if param_eq(name, "hugepages") {
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

#[cfg(test)]
mod tests {
    use super::*;

    const GIB_KB: u64 = crate::size::GIB_KB;

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

    #[test]
    fn cpu_flags_and_pool_names() {
        let with = "processor\t: 0\nflags\t\t: fpu pse pdpe1gb lm\n";
        let without = "processor\t: 0\nflags\t\t: fpu pse lm\n";
        assert!(!lacks_pdpe1gb(with));
        assert!(lacks_pdpe1gb(without));
        assert!(
            lacks_pdpe1gb(&format!("{with}\n{without}")),
            "one CPU lacks it"
        );
        assert!(
            !lacks_pdpe1gb(""),
            "no flags line: nothing known to be lacking"
        );
        assert_eq!(pool_size_kb("hugepages-1048576kB"), Some(GIB_KB));
        assert_eq!(pool_size_kb("hugepages-2048"), None);
        assert_eq!(pool_size_kb("node0"), None);
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
}
