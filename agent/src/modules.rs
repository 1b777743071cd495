//! Kernel modules at run time: which driver would claim a device, and loading vfio-pci.
//!
//! At boot, before udev's coldplug, most devices have no driver yet. Whether a host
//! driver *would* claim one is read from the same tables udev uses: the device's
//! `modalias` matched against `modules.alias` (loadable drivers) and
//! `modules.builtin.modinfo` (drivers built into the kernel).
//!
//! Loading vfio-pci prefers the image's kmod `modprobe` (it honours `modprobe.d` and
//! the command line). Without one (busybox's applet cannot read kmod's binary index),
//! the closure from `modules.dep` is loaded with `finit_module`, with the options
//! `modprobe.d` and the kernel command line give, as modprobe would.

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

/// Options for a module from `modprobe.d` (`options <mod> k=v ...`) and the kernel
/// command line (`<mod>.k=v`), the command line last, as modprobe applies them.
pub(crate) fn module_options(host: &Host, cmdline: &Cmdline, module: &str) -> String {
    let module = normalize(module);
    let mut opts: Vec<String> = Vec::new();
    for dir in [
        "lib/modprobe.d",
        "usr/lib/modprobe.d",
        "etc/modprobe.d",
        "run/modprobe.d",
    ] {
        for file in host.list(dir).iter().filter(|f| f.ends_with(".conf")) {
            let Ok(text) = host.read(format!("{dir}/{file}")) else {
                continue;
            };
            for line in text.lines() {
                let mut w = line.split_whitespace();
                if w.next() == Some("options")
                    && w.next().map(normalize).as_deref() == Some(module.as_str())
                {
                    opts.extend(w.map(str::to_owned));
                }
            }
        }
    }
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
    let result = match find_kmod_modprobe(host) {
        Some(modprobe) => {
            run_modprobe(&modprobe, "vfio-pci", timeout).map(|()| Availability::Modprobe(modprobe))
        }
        None => load_closure(host, cmdline, "vfio_pci").map(Availability::Loaded),
    };
    let result = result?;
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
    match find_kmod_modprobe(host) {
        Some(modprobe) => {
            run_modprobe(&modprobe, &name, timeout).map(|()| Availability::Modprobe(modprobe))
        }
        None => load_closure(host, cmdline, &name).map(Availability::Loaded),
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

/// Loads a module and its dependencies from `modules.dep` with `finit_module`.
fn load_closure(host: &Host, cmdline: &Cmdline, name: &str) -> HostResult<Vec<String>> {
    let release = host.kernel_release().unwrap_or_default();
    let dir = format!("lib/modules/{release}");
    let loader = Loader {
        host,
        cmdline,
        insmod: &finit,
        deps: DepTable::parse(&host.read(format!("{dir}/modules.dep"))?),
        soft: host
            .read(format!("{dir}/modules.softdep"))
            .map(|t| parse_softdep(&t))
            .unwrap_or_default(),
        dir,
    };
    let mut loaded = Vec::new();
    let mut seen = HashSet::new();
    loader.load(name, &mut seen, &mut loaded)?;
    Ok(loaded)
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

struct Loader<'a> {
    host: &'a Host,
    cmdline: &'a Cmdline,
    /// Loads one module file with its options (`finit_module`; a recorder in tests).
    insmod: &'a dyn Fn(&std::path::Path, &str, bool) -> std::io::Result<()>,
    deps: DepTable,
    soft: BTreeMap<String, (Vec<String>, Vec<String>)>,
    dir: String,
}

impl Loader<'_> {
    /// Loads `name` with its hard dependencies; soft ones are loaded when they exist
    /// for this kernel, and their failure does not fail `name`.
    fn load(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        loaded: &mut Vec<String>,
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
                let _ = self.load(s, seen, loaded);
            }
            if !self.host.exists(format!("sys/module/{m}")) {
                let path = self.host.path(format!("{}/{file}", self.dir));
                let opts = module_options(self.host, self.cmdline, &m);
                (self.insmod)(&path, &opts, file.ends_with(".ko")).map_err(|e| HostError::Io {
                    path: path.clone(),
                    source: e,
                })?;
                loaded.push(m);
            }
            for s in post.iter().filter(|s| self.deps.load_order(s).is_some()) {
                if let Err(e) = self.load(s, seen, loaded) {
                    log::warn!("soft dependency {s} of {}: {e}", module_name(&file));
                }
            }
        }
        Ok(())
    }
}

fn finit(path: &std::path::Path, opts: &str, plain: bool) -> std::io::Result<()> {
    use nix::kmod::{finit_module, ModuleInitFlags};
    let file = std::fs::File::open(path)?;
    let params = std::ffi::CString::new(opts).map_err(std::io::Error::other)?;
    // Compressed modules are handed to the kernel as they are (MODULE_INIT_COMPRESSED_FILE,
    // Linux 6.4+ with in-kernel decompression); older kernels need kmod's modprobe.
    let flags = if plain {
        ModuleInitFlags::empty()
    } else {
        ModuleInitFlags::from_bits_retain(4)
    };
    match finit_module(&file, &params, flags) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

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
        let loader = Loader {
            host: &host,
            cmdline: &cmdline,
            insmod: &record,
            deps: DepTable::parse(
                "kernel/drivers/vfio/pci/vfio-pci.ko.zst: kernel/drivers/vfio/pci/vfio-pci-core.ko.zst kernel/drivers/vfio/vfio.ko.zst kernel/drivers/virt/lib/irqbypass.ko.zst\n\
                 kernel/drivers/vfio/pci/vfio-pci-core.ko.zst: kernel/drivers/vfio/vfio.ko.zst kernel/drivers/virt/lib/irqbypass.ko.zst\n\
                 kernel/drivers/vfio/vfio.ko.zst:\n\
                 kernel/drivers/virt/lib/irqbypass.ko.zst:\n\
                 kernel/drivers/vfio/vfio_iommu_type1.ko.zst: kernel/drivers/vfio/vfio.ko.zst\n",
            ),
            soft: parse_softdep("softdep vfio post: vfio_iommu_type1 vfio_iommu_spapr_tce\n"),
            dir: "lib/modules/x".to_owned(),
        };
        let mut loaded = Vec::new();
        loader
            .load("vfio-pci", &mut HashSet::new(), &mut loaded)
            .unwrap();
        // irqbypass is already loaded; type1 comes right after vfio; spapr does not exist here.
        assert_eq!(
            loaded,
            ["vfio", "vfio_iommu_type1", "vfio_pci_core", "vfio_pci"]
        );
        let calls = calls.borrow();
        assert_eq!(
            calls.last().unwrap(),
            &("vfio_pci".to_owned(), "disable_vga=1".to_owned(), false)
        );
        assert!(loader
            .load("nvidia", &mut HashSet::new(), &mut Vec::new())
            .is_err());
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
            module_options(&host, &cmdline, "vfio_pci"),
            "disable_vga=1 disable_idle_d3=1 ids=1002:6779"
        );
    }
}
