//! Kernel modules at run time: which driver would claim a device, and loading vfio-pci.
//!
//! At boot, before udev's coldplug, most devices have no driver yet. Whether a host
//! driver *would* claim one is read from the same tables udev uses: the device's
//! `modalias` matched against `modules.alias` (loadable drivers) and
//! `modules.builtin.modinfo` (drivers built into the kernel).
//!
//! Loading vfio-pci: the closure from `modules.dep` is loaded with `finit_module` by a
//! child process of the agent (sharing its memory: `host::finit_bounded`), with the
//! options `modprobe.d` and the kernel command line give and the soft dependencies of
//! `modules.softdep`, as `modprobe
//! --ignore-install` would. Compressed modules go to the image's kmod `modprobe` when
//! there is one (kernels before 6.4 cannot decompress them; busybox's applet cannot
//! read kmod's binary index, so it is never used).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cmdline::Cmdline;
use crate::host::{Host, HostError, HostResult};

/// Module names compare with `-` and `_` as one (`vfio-pci` is `vfio_pci`).
pub(crate) fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// One `alias` line: a glob over modaliases and the module it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The glob, e.g. `pci:v00001002d00006779sv*sd*bc*sc*i*`.
    pub pattern: String,
    /// Module name, normalised.
    pub module: String,
}

/// Parses `modules.alias` text, keeping `pci:` aliases only.
pub fn parse_alias(text: &str) -> Vec<Alias> {
    parse_alias_for(text, None)
}

/// [`parse_alias`], keeping only the aliases that may match one of `modaliases`
/// (all of them with `None`); see [`AliasFilter`].
fn parse_alias_for(text: &str, modaliases: Option<&[&str]>) -> Vec<Alias> {
    let filter = AliasFilter::new(modaliases);
    // Byte-wise (lines found with memchr, ASCII whitespace): the image's table is a
    // whole kernel's, read at every boot.
    let bytes = text.as_bytes();
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    ends.map(|end| {
        let line = text.get(start..end).unwrap_or_default();
        start = end + 1;
        line
    })
    .filter_map(|line| {
        let rest = line.strip_prefix("alias")?;
        rest.starts_with([' ', '\t']).then_some(())?;
        let mut words = rest.split_ascii_whitespace();
        let pattern = words.next()?;
        (pattern.starts_with("pci:") && filter.keeps(pattern)).then_some(())?;
        Some(Alias {
            pattern: pattern.to_owned(),
            module: normalize(words.next()?),
        })
    })
    .collect()
}

/// Parses `modules.builtin.modinfo` (NUL-separated `module.key=value` records),
/// keeping the `pci:` aliases of built-in drivers.
pub fn parse_builtin_modinfo(bytes: &[u8]) -> Vec<Alias> {
    parse_builtin_modinfo_for(bytes, None)
}

fn parse_builtin_modinfo_for(bytes: &[u8], modaliases: Option<&[&str]>) -> Vec<Alias> {
    let filter = AliasFilter::new(modaliases);
    bytes
        .split(|&b| b == 0)
        .filter_map(|rec| {
            let rec = std::str::from_utf8(rec).ok()?;
            let (module, rest) = rec.split_once('.')?;
            let pattern = rest.strip_prefix("alias=")?;
            (pattern.starts_with("pci:") && filter.keeps(pattern)).then(|| Alias {
                pattern: pattern.to_owned(),
                module: normalize(module),
            })
        })
        .collect()
}

/// Which alias patterns can match one of the given modaliases (every pattern, when
/// none are given): the pattern's literal start, up to its first glob character, must
/// begin the text. Most PCI aliases spell out vendor and device
/// (`pci:v00008086d000010D3sv*...`), so of a kernel's thousands only those of the
/// devices present are kept; the vendor part (`pci:vXXXXXXXX`) is compared first.
#[derive(Debug)]
struct AliasFilter<'a> {
    texts: Option<&'a [&'a str]>,
    vendors: Vec<u32>,
}

/// The vendor a modalias or pattern spells out (`pci:v00008086...`), if it does.
fn vendor_of(s: &str) -> Option<u32> {
    let hex = s.strip_prefix("pci:v")?.get(..8)?;
    hex.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| u32::from_str_radix(hex, 16).ok())?
}

impl<'a> AliasFilter<'a> {
    fn new(texts: Option<&'a [&'a str]>) -> Self {
        let mut vendors: Vec<u32> = texts
            .unwrap_or_default()
            .iter()
            .filter_map(|t| vendor_of(t))
            .collect();
        vendors.sort_unstable();
        vendors.dedup();
        Self { texts, vendors }
    }

    fn keeps(&self, pattern: &str) -> bool {
        let Some(texts) = self.texts else {
            return true;
        };
        // A vendor spelled out that no device has: no text can begin like it.
        if vendor_of(pattern).is_some_and(|v| !self.vendors.contains(&v)) {
            return false;
        }
        let literal = pattern
            .bytes()
            .position(|b| matches!(b, b'*' | b'?' | b'['))
            .map_or(pattern, |i| &pattern[..i]);
        texts.iter().any(|t| t.starts_with(literal))
    }
}

/// fnmatch(3) without flags: `*`, `?` and `[...]` (with ranges and `!`/`^`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(&p[pi..], t[ti]) {
                        if matched {
                            pi += next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == b'[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches one byte against a bracket expression at the start of `p`; returns
/// (matched, length of the expression), or `None` when the bracket is unterminated.
fn class_match(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while let Some(&b) = p.get(i) {
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&e| e != b']') {
            if (b..=p[i + 2]).contains(&c) {
                matched = true;
            }
            i += 3;
        } else {
            if b == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// The module-claim tables of one kernel.
#[derive(Debug, Default, Clone)]
pub struct ClaimTable {
    aliases: Vec<Alias>,
    /// Whether an alias file was read at all (a table kept only for the devices
    /// present may hold none of them and still be a real table).
    read: bool,
}

impl ClaimTable {
    /// Builds a table from alias lists (loadable and built-in).
    pub fn new(mut aliases: Vec<Alias>) -> Self {
        // Drivers that manage DMA for vfio claim nothing for the host.
        aliases.retain(|a| !crate::pci::driver_manages_dma(&a.module));
        Self {
            read: !aliases.is_empty(),
            aliases,
        }
    }

    /// Reads `lib/modules/<release>/modules.alias` and `modules.builtin.modinfo`.
    pub fn load(host: &Host, release: &str) -> Self {
        Self::load_dir(host, &format!("lib/modules/{release}"))
    }

    /// Reads `modules.alias` and `modules.builtin.modinfo` from one directory.
    pub(crate) fn load_dir(host: &Host, dir: &str) -> Self {
        Self::load_dir_for(host, dir, None)
    }

    /// [`ClaimTable::load_dir`], keeping only the aliases that may match one of
    /// `modaliases` (all with `None`): the same answers for those devices, without
    /// holding (or matching against) a whole kernel's table.
    pub(crate) fn load_dir_for(host: &Host, dir: &str, modaliases: Option<&[&str]>) -> Self {
        let mut read = false;
        let mut aliases = match host.read(format!("{dir}/modules.alias")) {
            Ok(t) => {
                read = t.lines().any(|l| l.starts_with("alias pci:"));
                parse_alias_for(&t, modaliases)
            }
            Err(_) => Vec::new(),
        };
        if let Ok(bytes) = host.read_bytes(format!("{dir}/modules.builtin.modinfo")) {
            aliases.extend(parse_builtin_modinfo_for(&bytes, modaliases));
        }
        let mut table = Self::new(aliases);
        table.read |= read;
        table
    }

    /// Adds another table's aliases.
    pub fn extend(&mut self, other: Self) {
        self.aliases.extend(other.aliases);
        self.read |= other.read;
    }

    /// The aliases, in table order.
    pub fn aliases(&self) -> &[Alias] {
        &self.aliases
    }

    /// Whether the table knows anything (an empty one proves nothing).
    pub fn is_empty(&self) -> bool {
        !self.read
    }

    /// Every host module whose alias matches, sorted, without duplicates (a softdep
    /// must cover whichever of them loads first).
    pub fn claimants(&self, modalias: &str) -> Vec<&str> {
        let set: std::collections::BTreeSet<&str> = self
            .aliases
            .iter()
            .filter(|a| glob_match(&a.pattern, modalias))
            .map(|a| a.module.as_str())
            .collect();
        set.into_iter().collect()
    }

    /// The host module that would claim a device with this modalias, if any.
    pub fn claimant(&self, modalias: &str) -> Option<&str> {
        self.aliases
            .iter()
            .find(|a| glob_match(&a.pattern, modalias))
            .map(|a| a.module.as_str())
    }
}

/// `modules.dep`: module path -> dependency paths, in the order modprobe loads them
/// (dependencies of dependencies first).
#[derive(Debug, Default, Clone)]
pub struct DepTable {
    entries: Vec<(String, Vec<String>)>,
}

/// The module name of a path in `modules.dep` (`kernel/.../vfio-pci.ko.zst` -> `vfio_pci`).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    normalize(file.split(".ko").next().unwrap_or(file))
}

impl DepTable {
    /// Parses `modules.dep` text.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|l| {
                let (module, deps) = l.split_once(':')?;
                Some((
                    module.trim().to_owned(),
                    deps.split_whitespace().map(str::to_owned).collect(),
                ))
            })
            .collect();
        Self { entries }
    }

    fn find(&self, name: &str) -> Option<&(String, Vec<String>)> {
        let name = normalize(name);
        self.entries.iter().find(|(m, _)| module_name(m) == name)
    }

    /// The files to load for `name`, dependencies first; `None` when unknown.
    pub fn load_order(&self, name: &str) -> Option<Vec<String>> {
        let (module, deps) = self.find(name)?;
        // depmod lists every dependency, transitively, with the deepest last.
        let mut order: Vec<String> = deps.iter().rev().cloned().collect();
        order.push(module.clone());
        Some(order)
    }
}

/// The `options` lines of `modprobe.d`, read once: every module's options in the order
/// kmod applies them.
///
/// As kmod: the directories in priority order `etc`, `run`, `usr/local/lib`, `usr/lib`,
/// `lib`; a file name found in several is read from the first only (so `/etc` overrides
/// a packaged file, and a merged `/lib -> usr/lib` is read once); the files in the order
/// of their names; `.conf` files only.
#[derive(Debug, Default)]
pub(crate) struct ModprobeOptions {
    /// (the file, relative to the root; the module, normalised; its words), in the
    /// order kmod applies them.
    lines: Vec<(String, String, Vec<String>)>,
}

/// Where kmod looks for `modprobe.d` files, the first winning a file name.
const MODPROBE_DIRS: [&str; 5] = [
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/local/lib/modprobe.d",
    "usr/lib/modprobe.d",
    "lib/modprobe.d",
];

impl ModprobeOptions {
    /// Reads every `options` line of this root's `modprobe.d` files.
    pub(crate) fn read(host: &Host) -> Self {
        let mut files: BTreeMap<String, &str> = BTreeMap::new();
        for dir in MODPROBE_DIRS {
            for name in host.list(dir) {
                if name.ends_with(".conf") {
                    files.entry(name).or_insert(dir);
                }
            }
        }
        let mut lines = Vec::new();
        for (name, dir) in files {
            let file = format!("{dir}/{name}");
            let Ok(text) = host.read(&file) else {
                continue;
            };
            for line in text.lines() {
                let mut w = line.split_whitespace();
                if w.next() != Some("options") {
                    continue;
                }
                if let Some(module) = w.next() {
                    let words = w.map(str::to_owned).collect();
                    lines.push((file.clone(), normalize(module), words));
                }
            }
        }
        Self { lines }
    }

    /// The last `KEY=value` given to `module`, with its file (quotes taken off): what
    /// the module gets when the command line does not say otherwise.
    pub(crate) fn last(&self, module: &str, key: &str) -> Option<(&str, String)> {
        let module = normalize(module);
        self.lines
            .iter()
            .filter(|(_, m, _)| *m == module)
            .flat_map(|(f, _, w)| w.iter().map(move |kv| (f, kv)))
            .filter_map(|(f, kv)| {
                let v = kv.strip_prefix(key)?.strip_prefix('=')?;
                Some((f.as_str(), v.trim_matches('"').to_owned()))
            })
            .next_back()
    }

    /// The options of `module`: `modprobe.d`'s, then the kernel command line's
    /// (`<mod>.k=v`), as modprobe applies them.
    pub(crate) fn of(&self, cmdline: &Cmdline, module: &str) -> String {
        let module = normalize(module);
        let mut opts: Vec<String> = self
            .lines
            .iter()
            .filter(|(_, m, _)| *m == module)
            .flat_map(|(_, _, w)| w.iter().cloned())
            .collect();
        for (key, value) in cmdline.params() {
            if let Some((m, param)) = key.split_once('.') {
                if normalize(m) == module {
                    opts.push(match value {
                        Some(v) if v.contains(' ') => format!("{param}=\"{v}\""),
                        Some(v) => format!("{param}={v}"),
                        None => param.to_owned(),
                    });
                }
            }
        }
        opts.join(" ")
    }
}

/// How vfio-pci became available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Availability {
    /// Built in, or loaded before the agent ran.
    AlreadyThere,
    /// Loaded by the image's `modprobe`.
    Modprobe(PathBuf),
    /// Loaded by the agent from `modules.dep` (these modules).
    Loaded(Vec<String>),
}

/// Makes the `vfio-pci` driver available, within `timeout`.
pub(crate) fn ensure_vfio_pci(
    host: &Host,
    cmdline: &Cmdline,
    timeout: Duration,
) -> HostResult<Availability> {
    const DRIVER_DIR: &str = "sys/bus/pci/drivers/vfio-pci";
    if host.exists(DRIVER_DIR) {
        return Ok(Availability::AlreadyThere);
    }
    host.require_live("load module vfio-pci")?;
    let result = load(host, cmdline, "vfio-pci", timeout)?;
    // Module init registers the driver synchronously; allow a moment for sysfs, in
    // naps from 1 ms growing to 10 ms.
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    while !host.exists(DRIVER_DIR) {
        if start.elapsed() > Duration::from_millis(500) {
            return Err(HostError::Io {
                path: host.path(DRIVER_DIR),
                source: std::io::Error::other("vfio-pci was loaded but its driver did not appear"),
            });
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
    Ok(result)
}

/// Loads a host driver module with its dependencies, within `timeout`: an SR-IOV PF's
/// driver, which the kernel needs before it makes VFs. Nothing when it is loaded (or
/// built in: `sys/module/NAME` exists) already.
pub(crate) fn load_module(
    host: &Host,
    cmdline: &Cmdline,
    name: &str,
    timeout: Duration,
) -> HostResult<Availability> {
    let name = normalize(name);
    if host.exists(format!("sys/module/{name}")) {
        return Ok(Availability::AlreadyThere);
    }
    host.require_live(&format!("load module {name}"))?;
    load(host, cmdline, &name, timeout)
}

/// Loads `name` and what it needs, within `timeout`. The agent's own loader (a child
/// child calling `finit_module` over the `modules.dep` closure, [`crate::host::finit_bounded`])
/// when every file of it is a plain `.ko` or the image has no kmod `modprobe`; otherwise
/// (compressed modules, which kernels before 6.4 cannot take from `finit_module`) kmod's
/// `modprobe --ignore-install`. Both load the same files in the same order with the
/// same options; the own loader starts no program (under QEMU TCG, exec'ing the
/// dynamically linked modprobe cost the boot benchmark about 70 ms).
fn load(host: &Host, cmdline: &Cmdline, name: &str, timeout: Duration) -> HostResult<Availability> {
    let planned = Loader::read(host, cmdline).and_then(|l| {
        let p = l.plan(name)?;
        Ok((l, p))
    });
    // kmod's modprobe is looked for only when the own loader cannot do it all.
    match planned {
        Ok((loader, plan)) if plan.all_plain() => {
            loader.run(&plan, timeout).map(Availability::Loaded)
        }
        Ok((loader, plan)) => match find_kmod_modprobe(host) {
            Some(m) => run_modprobe(&m, name, timeout).map(|()| Availability::Modprobe(m)),
            None => loader.run(&plan, timeout).map(Availability::Loaded),
        },
        Err(e) => match find_kmod_modprobe(host) {
            Some(m) => run_modprobe(&m, name, timeout).map(|()| Availability::Modprobe(m)),
            None => Err(e),
        },
    }
}

/// kmod's modprobe, never busybox's applet (it cannot read `modules.dep.bin`).
fn find_kmod_modprobe(host: &Host) -> Option<PathBuf> {
    [
        "usr/sbin/modprobe",
        "sbin/modprobe",
        "usr/bin/modprobe",
        "bin/modprobe",
    ]
    .into_iter()
    .find_map(|rel| {
        let path = host.path(rel);
        let target = std::fs::canonicalize(&path).ok()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        (name != "busybox" && !name.starts_with("busybox.")).then_some(path)
    })
}

fn run_modprobe(modprobe: &std::path::Path, module: &str, timeout: Duration) -> HostResult<()> {
    use crate::host::Ran;
    let failed = |why: String| HostError::Io {
        path: modprobe.to_path_buf(),
        source: std::io::Error::other(why),
    };
    let name = std::ffi::CString::new(module)
        .map_err(|_| failed(format!("module name {module:?} has a NUL byte")))?;
    // --ignore-install: our own modprobe.d backstop runs the agent on `install
    // vfio-pci`; without it the agent would call itself.
    let ran = crate::host::run_bounded(modprobe, &[c"--ignore-install", &name], timeout)?;
    let (status, msg) = match &ran {
        Ran::Exited(0, _) => return Ok(()),
        Ran::Exited(code, err) => (format!("exit status: {code}"), err.trim()),
        Ran::Signaled(how) => (how.clone(), ""),
    };
    Err(failed(format!(
        "modprobe {module} failed ({status}){}{msg}",
        if msg.is_empty() { "" } else { ": " }
    )))
}

/// Soft dependencies from `modules.softdep`: module -> (pre, post), as modprobe honours
/// them (vfio's `post: vfio_iommu_type1` is what gives QEMU an IOMMU backend).
pub(crate) fn parse_softdep(text: &str) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else { continue };
        let entry = out.entry(normalize(module)).or_default();
        let mut post = false;
        for w in words {
            match w {
                "pre:" => post = false,
                "post:" => post = true,
                m if post => entry.1.push(normalize(m)),
                m => entry.0.push(normalize(m)),
            }
        }
    }
    out
}

/// What a failed file takes with it: the module asked for (an error), or the soft
/// dependency it belongs to (a `pre:` one is skipped quietly, a `post:` one with a
/// warning, as modprobe does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Pre,
    Post,
}

/// The module asked for, or one soft dependency with what it needs: its files are the
/// steps from where it starts to `end`.
#[derive(Debug, Clone)]
struct Unit {
    need: Need,
    name: String,
    /// The module whose soft dependency this is.
    of: String,
    end: usize,
}

/// One file to load.
#[derive(Debug, Clone)]
struct Step {
    module: String,
    /// As `modules.dep` names it (relative to the modules directory).
    file: String,
    opts: String,
    /// The innermost [`Unit`] it belongs to (0: the module asked for).
    unit: usize,
}

/// What loading a module takes, in modprobe's order: dependencies first, each module's
/// `pre:` soft dependencies before it and its `post:` ones after it; modules already
/// there are left out.
#[derive(Debug)]
struct LoadPlan {
    steps: Vec<Step>,
    units: Vec<Unit>,
}

impl LoadPlan {
    /// Whether `finit_module` takes every file as it is on any kernel (no compression).
    fn all_plain(&self) -> bool {
        self.steps.iter().all(|s| s.file.ends_with(".ko"))
    }

    /// Where loading goes on when step `i` fails: past its unit.
    fn on_failure(&self, i: usize) -> usize {
        self.units[self.steps[i].unit].end
    }
}

struct Loader<'a> {
    host: &'a Host,
    cmdline: &'a Cmdline,
    deps: DepTable,
    soft: BTreeMap<String, (Vec<String>, Vec<String>)>,
    options: ModprobeOptions,
    dir: String,
}

impl<'a> Loader<'a> {
    /// Reads this kernel's `modules.dep` (needed) and `modules.softdep`.
    fn read(host: &'a Host, cmdline: &'a Cmdline) -> HostResult<Self> {
        let release = host.kernel_release().unwrap_or_default();
        let dir = format!("lib/modules/{release}");
        Ok(Self {
            host,
            cmdline,
            deps: DepTable::parse(&host.read(format!("{dir}/modules.dep"))?),
            soft: host
                .read(format!("{dir}/modules.softdep"))
                .map(|t| parse_softdep(&t))
                .unwrap_or_default(),
            options: ModprobeOptions::read(host),
            dir,
        })
    }

    /// The files to load for `name`; an error when this kernel has no such module.
    fn plan(&self, name: &str) -> HostResult<LoadPlan> {
        let mut plan = LoadPlan {
            steps: Vec::new(),
            units: vec![Unit {
                need: Need::Required,
                name: normalize(name),
                of: String::new(),
                end: 0,
            }],
        };
        self.add(name, &mut HashSet::new(), &mut plan, 0)?;
        plan.units[0].end = plan.steps.len();
        Ok(plan)
    }

    fn add(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        plan: &mut LoadPlan,
        unit: usize,
    ) -> HostResult<()> {
        let order = self.deps.load_order(name).ok_or_else(|| HostError::Io {
            path: self.host.path(format!("{}/modules.dep", self.dir)),
            source: std::io::Error::other(format!("no module {name} for this kernel")),
        })?;
        for file in order {
            let m = module_name(&file);
            if !seen.insert(m.clone()) {
                continue;
            }
            let (pre, post) = self.soft.get(&m).cloned().unwrap_or_default();
            for s in pre.iter().filter(|s| self.deps.load_order(s).is_some()) {
                self.add_soft(s, Need::Pre, &m, seen, plan);
            }
            if !self.host.exists(format!("sys/module/{m}")) {
                plan.steps.push(Step {
                    opts: self.options.of(self.cmdline, &m),
                    module: m.clone(),
                    file,
                    unit,
                });
            }
            for s in post.iter().filter(|s| self.deps.load_order(s).is_some()) {
                self.add_soft(s, Need::Post, &m, seen, plan);
            }
        }
        Ok(())
    }

    fn add_soft(
        &self,
        name: &str,
        need: Need,
        of: &str,
        seen: &mut HashSet<String>,
        plan: &mut LoadPlan,
    ) {
        let u = plan.units.len();
        plan.units.push(Unit {
            need,
            name: name.to_owned(),
            of: of.to_owned(),
            end: 0,
        });
        // It is in modules.dep (the callers check), so planning it cannot fail.
        let _ = self.add(name, seen, plan, u);
        plan.units[u].end = plan.steps.len();
    }

    fn full_path(&self, step: &Step) -> PathBuf {
        self.host.path(format!("{}/{}", self.dir, step.file))
    }

    /// Loads the plan's files in a child process, within `timeout`; the modules loaded.
    fn run(&self, plan: &LoadPlan, timeout: Duration) -> HostResult<Vec<String>> {
        use std::os::unix::ffi::OsStrExt;
        let bad = |p: &std::path::Path| HostError::Io {
            path: p.to_path_buf(),
            source: std::io::Error::other("a NUL byte in a module's path or options"),
        };
        let mut steps = Vec::with_capacity(plan.steps.len());
        for (i, s) in plan.steps.iter().enumerate() {
            let full = self.full_path(s);
            steps.push(crate::host::FinitStep {
                path: std::ffi::CString::new(full.as_os_str().as_bytes())
                    .map_err(|_| bad(&full))?,
                params: std::ffi::CString::new(s.opts.as_str()).map_err(|_| bad(&full))?,
                flags: if s.file.ends_with(".ko") {
                    0
                } else {
                    MODULE_INIT_COMPRESSED_FILE
                },
                on_failure: plan.on_failure(i),
            });
        }
        let shown = self.host.path(&self.dir);
        let (results, ended) = crate::host::finit_bounded(&shown, &steps, timeout);
        let results: Vec<(usize, Option<std::io::Error>)> = results
            .into_iter()
            .map(|(i, e)| (i, e.map(std::io::Error::from)))
            .collect();
        self.settle(plan, results, ended)
    }

    /// Loads the plan's files in this process with `insmod` (tests: a recorder).
    #[cfg(test)]
    fn run_with(
        &self,
        plan: &LoadPlan,
        insmod: &dyn Fn(&std::path::Path, &str, bool) -> std::io::Result<()>,
    ) -> HostResult<Vec<String>> {
        let mut results = Vec::new();
        let mut i = 0;
        while i < plan.steps.len() {
            let s = &plan.steps[i];
            let r = insmod(&self.full_path(s), &s.opts, s.file.ends_with(".ko")).err();
            let failed = r.is_some();
            results.push((i, r));
            i = if failed {
                plan.on_failure(i).max(i + 1)
            } else {
                i + 1
            };
        }
        self.settle(plan, results, None)
    }

    /// What the steps tried mean: the modules loaded, a warning per failed `post:`
    /// soft dependency, an error when a file of the module asked for failed.
    fn settle(
        &self,
        plan: &LoadPlan,
        results: Vec<(usize, Option<std::io::Error>)>,
        ended: Option<HostError>,
    ) -> HostResult<Vec<String>> {
        let mut loaded = Vec::new();
        for (i, e) in results {
            let s = &plan.steps[i];
            let Some(source) = e else {
                loaded.push(s.module.clone());
                continue;
            };
            let e = HostError::Io {
                path: self.full_path(s),
                source,
            };
            let u = &plan.units[s.unit];
            match u.need {
                Need::Required => return Err(e),
                Need::Pre => {}
                Need::Post => log::warn!("soft dependency {} of {}: {e}", u.name, u.of),
            }
        }
        match ended {
            Some(e) => Err(e),
            None => Ok(loaded),
        }
    }
}

/// `finit_module`'s flag for a compressed file (Linux 6.4+ decompresses in the kernel).
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_fnmatch() {
        assert!(glob_match(
            "pci:v00001002d00006779sv*sd*bc*sc*i*",
            "pci:v00001002d00006779sv00001458sd000021ACbc03sc00i00"
        ));
        assert!(!glob_match(
            "pci:v00001002d00006779sv*sd*bc*sc*i*",
            "pci:v00001002d0000677Asv00001458sd000021ACbc03sc00i00"
        ));
        assert!(glob_match(
            "pci:v*d*sv*sd*bc0Csc03i30*",
            "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30"
        ));
        assert!(glob_match(
            "pci:v0000100Ed*sv*sd*bc*sc*i*",
            "pci:v0000100Ed00001234sv0sd0bc0sc0i0"
        ));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("pci:v0000808[0-9]d*", "pci:v00008086d000010D3"));
        assert!(!glob_match("pci:v0000808[!6]d*", "pci:v00008086d000010D3"));
        assert!(glob_match("a[0-9]c", "a5c"));
        assert!(!glob_match("a[!0-9]c", "a5c"));
        assert!(glob_match("a[]]c", "a]c"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "a"));
        assert!(glob_match("a*b*c", "axxbyyc"));
    }

    #[test]
    fn alias_tables_keep_pci_and_drop_vfio_friendly_drivers() {
        let text = "# Aliases extracted from modules themselves.\n\
            alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci\n\
            alias usb:v*p*d*dc*dsc*dp*ic09isc00ip00in* usbcore\n\
            alias pci:v*d*sv*sd*bc*sc*i* pci-stub\n\
            alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n";
        let t = ClaimTable::new(parse_alias(text));
        assert_eq!(
            t.claimant("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"),
            Some("e1000e")
        );
        assert_eq!(
            t.claimant("pci:v00001234d00001111sv0sd0bc03sc00i00"),
            None,
            "pci-stub's catch-all must not count"
        );
        let builtin = b"ahci.alias=pci:v*d*sv*sd*bc01sc06i01*\0ahci.license=GPL\0snd_hda_intel.alias=pci:v*d*sv*sd*bc04sc03i00*\0";
        let t = ClaimTable::new(parse_builtin_modinfo(builtin));
        assert_eq!(
            t.claimant("pci:v00008086d00002922sv1AF4sd1100bc01sc06i01"),
            Some("ahci")
        );
        assert_eq!(
            t.claimant("pci:v00008086d0000293Esv1AF4sd1100bc04sc03i00"),
            Some("snd_hda_intel")
        );
    }

    #[test]
    fn a_table_kept_for_the_devices_present_gives_their_answers() {
        let text = "alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci\n\
            alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n\
            alias pci:v00008086d*sv*sd*bc0Csc03i30* xhci_pci\n\
            alias pci:v*d*sv*sd*bc04sc03i00* snd_hda_intel\n";
        let t = testing::TestSysfs::new();
        t.file("img/modules.alias", text);
        let host = Host::new(t.root());
        let nic = "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00";
        let hda = "pci:v00001234d0000293Esv1AF4sd1100bc04sc03i00";
        let whole = ClaimTable::load_dir(&host, "img");
        let kept = ClaimTable::load_dir_for(&host, "img", Some(&[nic, hda]));
        // Only what may match: the NIC's own line, Intel's device wildcard, the
        // class-wide catch-all.
        let modules: Vec<&str> = kept.aliases().iter().map(|a| a.module.as_str()).collect();
        assert_eq!(modules, ["e1000e", "xhci_pci", "snd_hda_intel"]);
        for m in [nic, hda] {
            assert_eq!(kept.claimant(m), whole.claimant(m), "{m}");
        }
        // Nothing present matches, and still the table was read.
        let none = ClaimTable::load_dir_for(&host, "img", Some(&[]));
        assert!(none.aliases().is_empty() && !none.is_empty());
        assert!(ClaimTable::load_dir_for(&host, "nowhere", Some(&[nic])).is_empty());
    }

    #[test]
    fn image_alias_table_round_trips_builtins_as_alias_lines() {
        // What `modules --pci-aliases` writes for the image must read back the same.
        let builtin = b"ahci.alias=pci:v*d*sv*sd*bc01sc06i01*\0ahci.license=GPL\0";
        let t = ClaimTable::new(
            parse_alias("alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n")
                .into_iter()
                .chain(parse_builtin_modinfo(builtin))
                .collect(),
        );
        let text: String = t
            .aliases()
            .iter()
            .map(|a| format!("alias {} {}\n", a.pattern, a.module))
            .collect();
        assert_eq!(parse_alias(&text), t.aliases());
        assert_eq!(
            t.claimants("pci:v00001234d00000001sv0sd0bc01sc06i01"),
            ["ahci"]
        );
    }

    #[test]
    fn dep_table_orders_dependencies_first() {
        let dep = DepTable::parse(
            "kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/pci/vfio-pci-core.ko kernel/drivers/vfio/vfio_virqfd.ko kernel/drivers/vfio/vfio.ko kernel/drivers/virt/lib/irqbypass.ko\n\
             kernel/drivers/vfio/vfio.ko:\n",
        );
        let order = dep.load_order("vfio-pci").unwrap();
        assert_eq!(
            order.first().map(|s| module_name(s)),
            Some("irqbypass".to_owned())
        );
        assert_eq!(
            order.last().map(|s| module_name(s)),
            Some("vfio_pci".to_owned())
        );
        assert_eq!(dep.load_order("vfio").unwrap().len(), 1);
        assert!(dep.load_order("nvidia").is_none());
        assert_eq!(
            module_name("kernel/x/vfio-pci-core.ko.zst"),
            "vfio_pci_core"
        );
    }

    #[test]
    fn softdeps_split_pre_and_post() {
        let soft = parse_softdep(
            "# Soft dependencies extracted from modules themselves.\n\
             softdep vfio post: vfio_iommu_type1 vfio-iommu-spapr-tce\n\
             softdep snd_hda_intel pre: snd-hda-codec post: x\n",
        );
        assert_eq!(
            soft["vfio"],
            (
                vec![],
                vec![
                    "vfio_iommu_type1".to_owned(),
                    "vfio_iommu_spapr_tce".to_owned()
                ]
            )
        );
        assert_eq!(
            soft["snd_hda_intel"],
            (vec!["snd_hda_codec".to_owned()], vec!["x".to_owned()])
        );
    }

    fn vfio_loader<'a>(host: &'a Host, cmdline: &'a Cmdline, ext: &str) -> Loader<'a> {
        Loader {
            host,
            cmdline,
            deps: DepTable::parse(&format!(
                "kernel/drivers/vfio/pci/vfio-pci.{ext}: kernel/drivers/vfio/pci/vfio-pci-core.{ext} kernel/drivers/vfio/vfio.{ext} kernel/drivers/virt/lib/irqbypass.{ext}\n\
                 kernel/drivers/vfio/pci/vfio-pci-core.{ext}: kernel/drivers/vfio/vfio.{ext} kernel/drivers/virt/lib/irqbypass.{ext}\n\
                 kernel/drivers/vfio/vfio.{ext}:\n\
                 kernel/drivers/virt/lib/irqbypass.{ext}:\n\
                 kernel/drivers/vfio/vfio_iommu_type1.{ext}: kernel/drivers/vfio/vfio.{ext}\n\
                 kernel/drivers/x/pre_one.{ext}:\n",
            )),
            soft: parse_softdep(
                "softdep vfio post: vfio_iommu_type1 vfio_iommu_spapr_tce\nsoftdep vfio_pci_core pre: pre_one\n",
            ),
            options: ModprobeOptions::read(host),
            dir: "lib/modules/x".to_owned(),
        }
    }

    #[test]
    fn loader_honours_hard_and_soft_dependencies() {
        let t = testing::TestSysfs::new();
        t.file("sys/module/irqbypass/refcnt", "0\n");
        let host = Host::new(t.root());
        let calls = std::cell::RefCell::new(Vec::new());
        let record = |p: &std::path::Path, opts: &str, plain: bool| {
            calls
                .borrow_mut()
                .push((module_name(&p.to_string_lossy()), opts.to_owned(), plain));
            Ok(())
        };
        let cmdline = Cmdline::parse("vfio-pci.disable_vga=1");
        let loader = vfio_loader(&host, &cmdline, "ko.zst");
        let plan = loader.plan("vfio-pci").unwrap();
        assert!(!plan.all_plain(), "compressed files go to kmod's modprobe");
        let loaded = loader.run_with(&plan, &record).unwrap();
        // irqbypass is already loaded; type1 comes right after vfio, pre_one right
        // before vfio-pci-core; spapr does not exist here.
        assert_eq!(
            loaded,
            [
                "vfio",
                "vfio_iommu_type1",
                "pre_one",
                "vfio_pci_core",
                "vfio_pci"
            ]
        );
        let calls = calls.borrow();
        assert_eq!(
            calls.last().unwrap(),
            &("vfio_pci".to_owned(), "disable_vga=1".to_owned(), false)
        );
        assert!(loader.plan("nvidia").is_err());
        assert!(vfio_loader(&host, &cmdline, "ko")
            .plan("vfio-pci")
            .unwrap()
            .all_plain());
    }

    #[test]
    fn a_failed_file_fails_the_module_or_only_its_soft_dependency() {
        let t = testing::TestSysfs::new();
        let host = Host::new(t.root());
        let cmdline = Cmdline::default();
        let loader = vfio_loader(&host, &cmdline, "ko");
        let plan = loader.plan("vfio-pci").unwrap();
        let tried = std::cell::RefCell::new(Vec::new());
        let failing = |bad: &'static [&'static str]| {
            let tried = &tried;
            move |p: &std::path::Path, _: &str, _: bool| {
                let m = module_name(&p.to_string_lossy());
                tried.borrow_mut().push(m.clone());
                if bad.contains(&m.as_str()) {
                    Err(std::io::Error::from_raw_os_error(8))
                } else {
                    Ok(())
                }
            }
        };
        // A post soft dependency that fails: a warning, the rest goes on.
        let loaded = loader
            .run_with(&plan, &failing(&["vfio_iommu_type1"]))
            .unwrap();
        assert_eq!(
            loaded,
            ["irqbypass", "vfio", "pre_one", "vfio_pci_core", "vfio_pci"]
        );
        // A pre one: skipped quietly.
        let loaded = loader.run_with(&plan, &failing(&["pre_one"])).unwrap();
        assert!(loaded.contains(&"vfio_pci".to_owned()), "{loaded:?}");
        // A file the module needs: an error naming it, nothing after it is tried.
        tried.borrow_mut().clear();
        let e = loader
            .run_with(&plan, &failing(&["vfio_pci_core"]))
            .unwrap_err();
        assert!(e.to_string().contains("vfio-pci-core.ko"), "{e}");
        assert_eq!(
            tried.borrow().last().map(String::as_str),
            Some("vfio_pci_core")
        );
    }

    #[test]
    fn options_from_modprobe_d_then_cmdline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/modprobe.d")).unwrap();
        std::fs::write(
            dir.path().join("etc/modprobe.d/vfio.conf"),
            "options vfio-pci disable_vga=1\noptions e1000e x=1\n",
        )
        .unwrap();
        let host = Host::new(dir.path());
        let cmdline = Cmdline::parse("quiet vfio_pci.disable_idle_d3=1 vfio-pci.ids=1002:6779");
        assert_eq!(
            ModprobeOptions::read(&host).of(&cmdline, "vfio_pci"),
            "disable_vga=1 disable_idle_d3=1 ids=1002:6779"
        );
    }

    #[test]
    fn modprobe_d_files_are_read_as_kmod_reads_them() {
        fn put_at(root: &std::path::Path, rel: &str, text: &str) {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let put = |rel: &str, text: &str| put_at(dir.path(), rel, text);
        // The packaged file is overridden by the one of the same name in /etc.
        put(
            "lib/modprobe.d/vfio.conf",
            "options vfio_pci disable_vga=0\n",
        );
        put(
            "etc/modprobe.d/vfio.conf",
            "options vfio_pci disable_vga=1\n",
        );
        // Files apply in name order, whichever directory holds them.
        put(
            "usr/lib/modprobe.d/10-a.conf",
            "options vfio-pci nointxmask=1\n",
        );
        put(
            "run/modprobe.d/20-b.conf",
            "options vfio_pci disable_idle_d3=1\n",
        );
        // Not a .conf file: ignored, as kmod does.
        put("etc/modprobe.d/old.bak", "options vfio_pci bogus=1\n");
        let host = Host::new(dir.path());
        let options = ModprobeOptions::read(&host);
        assert_eq!(
            options.of(&Cmdline::default(), "vfio_pci"),
            "nointxmask=1 disable_idle_d3=1 disable_vga=1"
        );
        // What `check` shows as the source of a value is the file the loader used.
        assert_eq!(
            options.last("vfio-pci", "disable_vga"),
            Some(("etc/modprobe.d/vfio.conf", "1".to_owned()))
        );
        assert_eq!(options.last("vfio_pci", "ids"), None);
        // A merged /usr (lib -> usr/lib) does not give a file's options twice.
        let dir2 = tempfile::tempdir().unwrap();
        put_at(
            dir2.path(),
            "usr/lib/modprobe.d/vfio.conf",
            "options vfio_pci disable_vga=1\n",
        );
        std::os::unix::fs::symlink("usr/lib", dir2.path().join("lib")).unwrap();
        assert_eq!(
            ModprobeOptions::read(&Host::new(dir2.path())).of(&Cmdline::default(), "vfio-pci"),
            "disable_vga=1"
        );
    }
}
