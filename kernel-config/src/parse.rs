//! The `.config` parser: pure over `&str`, plus gzip and file reading.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The most text a decompressed config may have (a real one is ~300 KB).
const MAX_TEXT: u64 = 64 << 20;
/// Parse warnings kept; the rest are only counted.
const MAX_WARNINGS: usize = 200;

/// What a `.config` says about one symbol, in the five shapes Kconfig writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum State {
    /// `CONFIG_X=y`: built in (or a bool that is on).
    Y,
    /// `CONFIG_X=m`: built as a module.
    M,
    /// `# CONFIG_X is not set` (Kconfig also reads `CONFIG_X=n` this way).
    N,
    /// No line at all: the symbol is invisible here (unmet dependency, another
    /// architecture, or a kernel that does not have it).
    Absent,
    /// Any other value, verbatim (strings keep their quotes): `"root=/dev/sda"`, `0x10`.
    Literal(String),
}

impl State {
    /// `y` or `m`.
    pub fn is_on(&self) -> bool {
        matches!(self, Self::Y | Self::M)
    }

    /// The value without the surrounding double quotes and with `\"` / `\\` unescaped,
    /// for string symbols such as `CONFIG_CMDLINE`; `None` unless a literal.
    pub fn unquoted(&self) -> Option<String> {
        let Self::Literal(raw) = self else {
            return None;
        };
        let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
            return Some(raw.clone());
        };
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        Some(out)
    }

    /// The state as the expected-state files and the JSON write it:
    /// `y`, `m`, `n`, `absent` or the literal value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Y => "y",
            Self::M => "m",
            Self::N => "n",
            Self::Absent => "absent",
            Self::Literal(v) => v,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A kernel version, `major.minor.patch` (the patch level may be 0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// 6 in 6.1.192.
    pub major: u32,
    /// 1 in 6.1.192.
    pub minor: u32,
    /// 192 in 6.1.192.
    pub patch: u32,
}

impl KernelVersion {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Reads the leading `X.Y[.Z]` of a release string such as `6.18.0-0.rc3.fc44` or
    /// `4.6.0-gentoo`; `None` when it does not start that way.
    pub fn from_release(release: &str) -> Option<Self> {
        let mut parts = release.splitn(3, '.');
        let major = leading_number(parts.next()?)?;
        let minor = leading_number(parts.next()?)?;
        let patch = parts.next().and_then(leading_number).unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }
}

fn leading_number(s: &str) -> Option<u32> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

impl FromStr for KernelVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_release(s.trim()).ok_or_else(|| format!("not a kernel version: {s:?}"))
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The architecture a config was made for, from its symbols (`CONFIG_X86_64=y`, ...),
/// falling back to the header's `Linux/<arch>` word.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Arch {
    /// 64-bit x86.
    X86_64,
    /// 32-bit x86.
    I386,
    /// 64-bit ARM.
    Arm64,
    /// 32-bit ARM.
    Arm,
    /// 32- or 64-bit POWER.
    Powerpc,
    /// IBM Z.
    S390,
    /// RISC-V.
    Riscv,
    /// LoongArch.
    Loongarch,
    /// Anything else, by the header's name.
    Other(String),
}

impl Arch {
    /// The name used in the rules table: `x86_64`, `i386`, `arm64`, `arm`, `powerpc`,
    /// `s390`, `riscv`, `loongarch`, or the header's word.
    pub fn name(&self) -> &str {
        match self {
            Self::X86_64 => "x86_64",
            Self::I386 => "i386",
            Self::Arm64 => "arm64",
            Self::Arm => "arm",
            Self::Powerpc => "powerpc",
            Self::S390 => "s390",
            Self::Riscv => "riscv",
            Self::Loongarch => "loongarch",
            Self::Other(s) => s,
        }
    }

    /// Whether a rules-table architecture name covers this architecture; `x86` names
    /// both x86 flavours.
    pub fn matches(&self, name: &str) -> bool {
        name == self.name() || (name == "x86" && matches!(self, Self::X86_64 | Self::I386))
    }

    fn from_header_word(word: &str) -> Self {
        match word {
            "x86_64" => Self::X86_64,
            "i386" => Self::I386,
            "arm64" => Self::Arm64,
            "arm" => Self::Arm,
            "powerpc" => Self::Powerpc,
            "s390" => Self::S390,
            "riscv" => Self::Riscv,
            "loongarch" => Self::Loongarch,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Something odd in the file: reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseWarning {
    /// 1-based line number.
    pub line: usize,
    /// What is odd about it.
    pub message: String,
}

impl fmt::Display for ParseWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reading a config failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The gzip stream is damaged.
    #[error("not a valid gzip stream")]
    Gzip(#[source] std::io::Error),
    /// Decompressed, it is larger than any kernel config.
    #[error("more than {} MiB of text: not a kernel config", MAX_TEXT >> 20)]
    TooLarge,
}

/// A small multiply-rotate hasher (the rustc "Fx" hash): symbol names are short,
/// trusted enough (a hostile file can only slow its own check down), and SipHash
/// would cost a third of the parse.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A value as stored: no allocation per symbol, literals are ranges of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Y,
    M,
    N,
    Literal(u32, u32),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The name's range in the text.
    name: (u32, u32),
    value: Value,
    line: u32,
}

/// A parsed kernel `.config`.
///
/// The text is kept once; symbols are ranges into it, found through a table keyed by
/// the name's hash (a colliding name goes to a small overflow map), so parsing a
/// 300 KB config allocates almost nothing per line.
#[derive(Clone, Default)]
pub struct Config {
    text: String,
    entries: Vec<Entry>,
    index: FxMap<u64, u32>,
    overflow: HashMap<String, u32>,
    release: Option<String>,
    header_arch: Option<String>,
    warnings: Vec<ParseWarning>,
    warnings_dropped: usize,
    duplicates: usize,
    gzip: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the 300 KB of text.
        f.debug_struct("Config")
            .field("release", &self.release)
            .field("symbols", &self.entries.len())
            .field("warnings", &self.warnings.len())
            .field("duplicates", &self.duplicates)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

fn fx(name: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(name.as_bytes());
    h.finish()
}

impl Config {
    /// Parses the text of a `.config`. Never fails: odd lines become
    /// [`Config::warnings`], and a duplicate symbol keeps its last value, as Kconfig
    /// does.
    pub fn parse(text: &str) -> Self {
        Self::parse_owned(text.to_owned())
    }

    fn parse_owned(text: String) -> Self {
        let mut cfg = Self {
            entries: Vec::with_capacity(text.len() / 24),
            index: FxMap::with_capacity_and_hasher(text.len() / 24, BuildHasherDefault::default()),
            ..Self::default()
        };
        let base = text.as_ptr() as usize;
        let at = |s: &str| u32::try_from(s.as_ptr() as usize - base).unwrap_or(u32::MAX);
        for (idx, raw) in Lines::new(&text).enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let no = idx + 1;
            if let Some(comment) = line.strip_prefix('#') {
                cfg.comment(comment, no, &text, at);
            } else if let Some(rest) = strip(line, "CONFIG_") {
                cfg.assignment(rest, line, no, &text, at);
            } else if !line.trim().is_empty() {
                cfg.warn(no, format!("not a config line, ignored: {}", excerpt(line)));
            }
        }
        cfg.text = text;
        cfg
    }

    /// Parses plain or gzip-compressed bytes (as in `/proc/config.gz`). Text that is
    /// not UTF-8 is read lossily, with a warning.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let gzip = bytes.starts_with(&[0x1f, 0x8b]);
        let owned;
        let bytes = if gzip {
            let mut out = Vec::with_capacity(bytes.len() * 5);
            let decoder = flate2::read::MultiGzDecoder::new(bytes);
            decoder
                .take(MAX_TEXT + 1)
                .read_to_end(&mut out)
                .map_err(Error::Gzip)?;
            owned = out;
            owned.as_slice()
        } else {
            bytes
        };
        if bytes.len() as u64 > MAX_TEXT {
            return Err(Error::TooLarge);
        }
        let mut cfg = match std::str::from_utf8(bytes) {
            Ok(text) => Self::parse(text),
            Err(e) => {
                let mut cfg = Self::parse_owned(String::from_utf8_lossy(bytes).into_owned());
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1;
                cfg.warn(line, "not UTF-8 text; odd bytes replaced".to_owned());
                cfg
            }
        };
        cfg.gzip = gzip;
        Ok(cfg)
    }

    /// Reads and parses a file, plain or gzip.
    pub fn read_file(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    fn comment(&mut self, comment: &str, no: usize, text: &str, at: impl Fn(&str) -> u32) {
        // What Kconfig writes: "# CONFIG_FOO is not set". Its reader takes the name up
        // to the first space and then wants "is not set" (anything after it is
        // ignored); every other comment is just a comment.
        let Some(rest) = strip(comment, " CONFIG_") else {
            if let Some(rest) = comment.strip_prefix(" Linux/") {
                self.header(rest);
            }
            return;
        };
        let n = symbol_len(rest);
        let fast = rest
            .get(n..)
            .and_then(|t| strip(t, " is not set"))
            .filter(|_| n > 0);
        let (name, extra) = if let Some(extra) = fast {
            // The usual case, in one pass over the name.
            (&rest[..n], extra)
        } else {
            let Some((name, tail)) = rest.split_once(' ') else {
                return;
            };
            let Some(extra) = tail.strip_prefix("is not set") else {
                return;
            };
            (name, extra)
        };
        if !is_symbol(name) {
            self.warn(
                no,
                format!("malformed \"is not set\" line: #{}", excerpt(comment)),
            );
            return;
        }
        if !extra.is_empty() {
            self.warn(
                no,
                format!(
                    "text after \"is not set\" ignored (as Kconfig does): #{}",
                    excerpt(comment)
                ),
            );
        }
        self.set(text, (at(name), len32(name)), Value::N, no);
    }

    /// `# Linux/x86 6.17.5-arch1 Kernel Configuration`
    fn header(&mut self, rest: &str) {
        if self.release.is_some() {
            return;
        }
        let mut words = rest.split_whitespace();
        let (Some(arch), Some(release)) = (words.next(), words.next()) else {
            return;
        };
        if words.next() == Some("Kernel") {
            self.header_arch = Some(arch.to_owned());
            self.release = Some(release.to_owned());
        }
    }

    fn assignment(
        &mut self,
        rest: &str,
        line: &str,
        no: usize,
        text: &str,
        at: impl Fn(&str) -> u32,
    ) {
        // The name and the '=' in one pass (the release profile's opt-level "z" makes
        // every extra pass over 12,000 lines count).
        let n = symbol_len(rest);
        let (name, value) = match rest.as_bytes().get(n) {
            Some(b'=') => (&rest[..n], &rest[n + 1..]),
            _ => match rest.split_once('=') {
                Some(pair) => pair,
                None => {
                    self.warn(
                        no,
                        format!("no '=' in config line, ignored: {}", excerpt(line)),
                    );
                    return;
                }
            },
        };
        if n == 0 || name.len() != n {
            self.warn(no, format!("bad symbol name, ignored: {}", excerpt(line)));
            return;
        }
        let value = match value {
            "y" => Value::Y,
            "m" => Value::M,
            "n" => {
                self.warn(
                    no,
                    format!("CONFIG_{name}=n: Kconfig reads it as \"is not set\" but never writes it this way"),
                );
                Value::N
            }
            other => Value::Literal(at(other), len32(other)),
        };
        self.set(text, (at(name), len32(name)), value, no);
    }

    fn set(&mut self, text: &str, name: (u32, u32), value: Value, no: usize) {
        let key = slice(text, name);
        let line = u32::try_from(no).unwrap_or(u32::MAX);
        let new = Entry { name, value, line };
        let existing = match self.index.get(&fx(key)) {
            Some(&i) if slice(text, self.entries[i as usize].name) == key => Some(i),
            Some(_) => self.overflow.get(key).copied(),
            None => None,
        };
        if let Some(i) = existing {
            let old = self.entries[i as usize];
            let msg = format!(
                "CONFIG_{key} set again (first on line {}, was {}); the last value {} wins",
                old.line,
                state_of(text, old.value),
                state_of(text, value)
            );
            self.entries[i as usize] = new;
            self.duplicates += 1;
            self.warn(no, msg);
            return;
        }
        let i = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(new);
        match self.index.entry(fx(key)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.overflow.insert(key.to_owned(), i);
            }
        }
    }

    fn warn(&mut self, line: usize, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(ParseWarning { line, message });
        } else {
            self.warnings_dropped += 1;
        }
    }

    fn find(&self, name: &str) -> Option<&Entry> {
        let name = name.strip_prefix("CONFIG_").unwrap_or(name);
        match self.index.get(&fx(name)) {
            Some(&i) if slice(&self.text, self.entries[i as usize].name) == name => {
                Some(&self.entries[i as usize])
            }
            Some(_) => self.overflow.get(name).map(|&i| &self.entries[i as usize]),
            None => None,
        }
    }

    /// The state of a symbol, named with or without the `CONFIG_` prefix.
    pub fn get(&self, name: &str) -> State {
        self.find(name)
            .map_or(State::Absent, |e| state_of(&self.text, e.value))
    }

    /// Like [`Config::get`], `None` for absent.
    pub fn state(&self, name: &str) -> Option<State> {
        self.find(name).map(|e| state_of(&self.text, e.value))
    }

    /// `y` or `m`.
    pub fn is_on(&self, name: &str) -> bool {
        self.find(name)
            .is_some_and(|e| matches!(e.value, Value::Y | Value::M))
    }

    fn is(&self, name: &str, value: Value) -> bool {
        self.find(name).is_some_and(|e| e.value == value)
    }

    /// The line that set a symbol (the last one, for duplicates).
    pub fn line_of(&self, name: &str) -> Option<usize> {
        self.find(name).map(|e| e.line as usize)
    }

    /// Number of symbols with a line (any value, `n` included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no symbol line was found at all (not a kernel config).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The kernel release from the header (`6.17.5-arch1`), when it has one.
    pub fn release(&self) -> Option<&str> {
        self.release.as_deref()
    }

    /// The kernel version from the header, when it has one.
    pub fn version(&self) -> Option<KernelVersion> {
        self.release
            .as_deref()
            .and_then(KernelVersion::from_release)
    }

    /// The architecture: from the symbols first (`X86_64`, `X86_32`, `ARM64`, ...),
    /// else from the header.
    pub fn arch(&self) -> Option<Arch> {
        let on = |s: &str| self.is(s, Value::Y);
        let by_symbol = if on("X86_64") {
            Some(Arch::X86_64)
        } else if on("X86_32") || (on("X86") && self.is("X86_64", Value::N)) {
            Some(Arch::I386)
        } else if on("ARM64") {
            Some(Arch::Arm64)
        } else if on("ARM") {
            Some(Arch::Arm)
        } else if on("PPC") || on("PPC64") {
            Some(Arch::Powerpc)
        } else if on("S390") {
            Some(Arch::S390)
        } else if on("RISCV") {
            Some(Arch::Riscv)
        } else if on("LOONGARCH") {
            Some(Arch::Loongarch)
        } else {
            None
        };
        by_symbol.or_else(|| {
            self.header_arch.as_deref().map(|w| match w {
                // The header of every x86 kernel says "x86"; without symbols assume 64-bit.
                "x86" => Arch::X86_64,
                other => Arch::from_header_word(other),
            })
        })
    }

    /// Odd lines, duplicates and encoding problems, in file order.
    pub fn warnings(&self) -> &[ParseWarning] {
        &self.warnings
    }

    /// Warnings beyond the first 200, counted but not kept.
    pub fn warnings_dropped(&self) -> usize {
        self.warnings_dropped
    }

    /// How many symbol lines repeated an earlier symbol.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// Whether the bytes were gzip-compressed.
    pub fn was_gzip(&self) -> bool {
        self.gzip
    }
}

/// `str::lines` for `\n`-terminated text, finding each newline eight bytes at a
/// time: the release profile's opt-level "z" leaves `str::lines` byte by byte, a
/// third of the parse.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        if self.pos >= bytes.len() {
            return None;
        }
        let end = next_newline(bytes, self.pos);
        let line = self.text.get(self.pos..end).unwrap_or("");
        self.pos = end + 1;
        Some(line)
    }
}

/// The index of the next `\n` at or after `from`, or the length.
fn next_newline(bytes: &[u8], from: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        // A zero byte in x marks a newline; the lowest flagged byte is exact.
        let x = u64::from_le_bytes(w) ^ NL;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    bytes[i.min(bytes.len())..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| i + p)
}

fn len32(s: &str) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

fn slice(text: &str, (start, len): (u32, u32)) -> &str {
    text.get(start as usize..(start as usize + len as usize))
        .unwrap_or("")
}

fn state_of(text: &str, value: Value) -> State {
    match value {
        Value::Y => State::Y,
        Value::M => State::M,
        Value::N => State::N,
        Value::Literal(start, len) => State::Literal(slice(text, (start, len)).to_owned()),
    }
}

/// Bytes allowed in a symbol name: `[A-Za-z0-9_]`.
const SYMBOL_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    t
};

/// The length of the symbol name `s` starts with.
fn symbol_len(s: &str) -> usize {
    s.bytes()
        .position(|b| !SYMBOL_BYTE[b as usize])
        .unwrap_or(s.len())
}

fn is_symbol(name: &str) -> bool {
    !name.is_empty() && symbol_len(name) == name.len()
}

/// `str::strip_prefix` without a call to `memcmp` for a few bytes.
fn strip<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let (b, p) = (s.as_bytes(), prefix.as_bytes());
    if b.len() >= p.len() && b.iter().zip(p).all(|(x, y)| x == y) {
        s.get(p.len()..)
    } else {
        None
    }
}

fn excerpt(line: &str) -> String {
    const MAX: usize = 60;
    if line.chars().count() <= MAX {
        format!("{line:?}")
    } else {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.192 Kernel Configuration\n#\n";

    #[test]
    fn five_states() {
        let c = Config::parse(&format!(
            "{HEAD}CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"x y\"\nCONFIG_E=0x10\n"
        ));
        assert_eq!(c.get("A"), State::Y);
        assert_eq!(c.get("CONFIG_B"), State::M);
        assert_eq!(c.get("C"), State::N);
        assert_eq!(c.get("Z"), State::Absent);
        assert_eq!(c.get("D"), State::Literal("\"x y\"".into()));
        assert_eq!(c.get("D").unquoted().as_deref(), Some("x y"));
        assert_eq!(c.get("E").as_str(), "0x10");
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        assert_eq!(c.release(), Some("6.1.192"));
        assert_eq!(c.version(), Some(KernelVersion::new(6, 1, 192)));
    }

    #[test]
    fn other_comments_are_not_values() {
        let c =
            Config::parse("#CONFIG_B is not set\n# comment\n# CONFIG_C is enabled\n# CONFIG_D\n");
        assert_eq!(c.get("B"), State::Absent);
        assert_eq!(c.get("C"), State::Absent);
        assert_eq!(c.get("D"), State::Absent);
        assert!(c.warnings().is_empty());
        // Kconfig's reader ignores what follows "is not set"; so do we, with a warning.
        let c = Config::parse("# CONFIG_A is not set, really\n# CONFIG_E is not set \n");
        assert_eq!(c.get("A"), State::N);
        assert_eq!(c.get("E"), State::N);
        assert_eq!(c.warnings().len(), 2);
        assert!(format!("{c:?}").len() < 200);
    }

    #[test]
    fn duplicates_last_wins_with_warning() {
        let c = Config::parse("CONFIG_A=y\n# CONFIG_A is not set\nCONFIG_B=m\n");
        assert_eq!(c.get("A"), State::N);
        assert_eq!(c.line_of("A"), Some(2));
        assert_eq!(c.duplicates(), 1);
        assert_eq!(c.warnings().len(), 1);
        assert_eq!(c.warnings()[0].line, 2);
        assert!(
            c.warnings()[0].message.contains("first on line 1"),
            "{}",
            c.warnings()[0]
        );
    }

    #[test]
    fn unknown_lines_warn_and_parsing_goes_on() {
        let c = Config::parse("garbage\nCONFIG_NOEQ\nCONFIG_A-B=y\nCONFIG_OK=y\nCONFIG_N=n\n");
        assert_eq!(c.get("OK"), State::Y);
        assert_eq!(c.get("N"), State::N);
        let lines: Vec<usize> = c.warnings().iter().map(|w| w.line).collect();
        assert_eq!(lines, [1, 2, 3, 5]);
    }

    #[test]
    fn odd_names_warn() {
        let c = Config::parse(
            "CONFIG_=y\n# CONFIG_A-B is not set\n# CONFIG_C  is not set\nCONFIG_D=a=b\n",
        );
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c.get("D").as_str(), "a=b");
        let lines: Vec<usize> = c.warnings().iter().map(|w| w.line).collect();
        assert_eq!(lines, [1, 2]);
        assert!(c.warnings()[1].message.contains("malformed"));
    }

    #[test]
    fn crlf_and_empty_values() {
        let c = Config::parse("CONFIG_A=y\r\nCONFIG_S=\r\n");
        assert_eq!(c.get("A"), State::Y);
        assert_eq!(c.get("S"), State::Literal(String::new()));
    }

    #[test]
    fn lines_match_std() {
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "a\nb",
            "0123456789abcdef\n\nx\r\n",
            "é\nü ö\n12345678\n",
            "\n\n\n\n\n\n\n\n\n\n",
        ] {
            let ours: Vec<&str> = Lines::new(text).collect();
            let std: Vec<&str> = text.split_terminator('\n').collect();
            assert_eq!(ours, std, "{text:?}");
        }
        let long = "CONFIG_SOMETHING_LONG=y\n# CONFIG_X is not set\n".repeat(50);
        assert_eq!(Lines::new(&long).count(), 100);
    }

    #[test]
    fn versions() {
        assert_eq!(
            KernelVersion::from_release("6.18.0-0.rc3.fc44"),
            Some(KernelVersion::new(6, 18, 0))
        );
        assert_eq!(
            KernelVersion::from_release("4.6.0-gentoo"),
            Some(KernelVersion::new(4, 6, 0))
        );
        assert_eq!(
            KernelVersion::from_release("6.2"),
            Some(KernelVersion::new(6, 2, 0))
        );
        assert_eq!(
            KernelVersion::from_release("6.7-rc1"),
            Some(KernelVersion::new(6, 7, 0))
        );
        assert_eq!(KernelVersion::from_release("v6"), None);
        assert!(KernelVersion::new(6, 1, 192) < KernelVersion::new(6, 2, 0));
    }

    #[test]
    fn arch_from_symbols_beats_header() {
        let c = Config::parse(
            "# Linux/x86 6.1.0 Kernel Configuration\nCONFIG_X86_32=y\nCONFIG_X86=y\n",
        );
        assert_eq!(c.arch(), Some(Arch::I386));
        let c = Config::parse("# Linux/arm64 6.6.0 Kernel Configuration\nCONFIG_ARM64=y\n");
        assert_eq!(c.arch(), Some(Arch::Arm64));
        let c = Config::parse("# Linux/mips 6.6.0 Kernel Configuration\n");
        assert_eq!(c.arch(), Some(Arch::Other("mips".into())));
        assert!(
            Arch::X86_64.matches("x86") && Arch::I386.matches("x86") && !Arch::Arm64.matches("x86")
        );
    }

    #[test]
    fn gzip_and_binary() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"CONFIG_VFIO=m\n").unwrap();
        let gz = enc.finish().unwrap();
        let c = Config::from_bytes(&gz).unwrap();
        assert!(c.was_gzip());
        assert_eq!(c.get("VFIO"), State::M);
        assert!(matches!(
            Config::from_bytes(&gz[..gz.len() - 4]),
            Err(Error::Gzip(_))
        ));
        let c = Config::from_bytes(b"CONFIG_A=y\n\xff\xfe\x00\n").unwrap();
        assert_eq!(c.get("A"), State::Y);
        assert!(c.warnings().iter().any(|w| w.message.contains("UTF-8")));
    }

    #[test]
    fn warnings_are_capped() {
        let text = "junk\n".repeat(MAX_WARNINGS + 5);
        let c = Config::parse(&text);
        assert_eq!(c.warnings().len(), MAX_WARNINGS);
        assert_eq!(c.warnings_dropped(), 5);
    }
}
