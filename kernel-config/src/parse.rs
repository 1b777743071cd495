//! The `.config` parser: line by line over a stream (plain or gzip), or over `&str`.

use rustc_hash::{FxHashMap, FxHashSet};
use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
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
    /// The stream could not be read.
    #[error("reading the config")]
    Read(#[source] std::io::Error),
    /// The gzip stream is damaged.
    #[error("not a valid gzip stream")]
    Gzip(#[source] std::io::Error),
    /// Decompressed, it is larger than any kernel config.
    #[error("more than {} MiB of text: not a kernel config", MAX_TEXT >> 20)]
    TooLarge,
}

/// Which symbols a parse keeps.
///
/// The check looks up about a hundred symbols out of the 10,000 a config holds;
/// [`Keep::Only`] stores just those (no allocation for the other lines), while every
/// line is still read and judged: odd lines warn wherever they are.
#[derive(Debug, Clone, Copy, Default)]
pub enum Keep<'a> {
    /// Every symbol (what [`Config::parse`] does).
    #[default]
    All,
    /// Only these names (without `CONFIG_`); duplicates are reported for these.
    Only(&'a Names),
}

/// A set of symbol names, hashed with rustc's fast hash (names are short and a hostile
/// file can only slow its own check down).
pub type Names = FxHashSet<String>;

/// One symbol's line: its value and where it was set (the last line, for duplicates).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    state: State,
    line: usize,
}

/// A parsed kernel `.config`: the symbols kept, by name, and what was odd.
#[derive(Clone, Default)]
pub struct Config {
    /// By name, as bytes: a line's name is looked up without a UTF-8 check.
    symbols: FxHashMap<Vec<u8>, Entry>,
    /// The names kept when not all are (`None`: all).
    kept: Option<FxHashSet<Vec<u8>>>,
    /// Lines that set a symbol, kept or not.
    symbol_lines: usize,
    /// A line was not UTF-8 (warned once).
    lossy: bool,
    release: Option<String>,
    header_arch: Option<String>,
    warnings: Vec<ParseWarning>,
    warnings_dropped: usize,
    duplicates: usize,
    gzip: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the thousands of symbols.
        f.debug_struct("Config")
            .field("release", &self.release)
            .field("symbols", &self.symbols.len())
            .field("warnings", &self.warnings.len())
            .field("duplicates", &self.duplicates)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

/// The symbols [`Config::arch`] reads.
pub const ARCH_SYMBOLS: [&str; 10] = [
    "X86_64",
    "X86_32",
    "X86",
    "ARM64",
    "ARM",
    "PPC",
    "PPC64",
    "S390",
    "RISCV",
    "LOONGARCH",
];

impl Config {
    /// Parses the text of a `.config`, keeping every symbol. Never fails: odd lines
    /// become [`Config::warnings`], and a duplicate symbol keeps its last value, as
    /// Kconfig does.
    pub fn parse(text: &str) -> Self {
        let mut cfg = Self::default();
        for (i, line) in text.lines().enumerate() {
            cfg.line(i + 1, line.as_bytes());
        }
        cfg
    }

    /// Reads a config from a stream, plain or gzip-compressed (as `/proc/config.gz`),
    /// one line at a time, keeping the symbols `keep` names. Text that is not UTF-8 is
    /// read lossily, with a warning; more than 64 MiB of text is refused.
    pub fn read(reader: impl Read, keep: Keep<'_>) -> Result<Self, Error> {
        let mut plain = BufReader::new(reader);
        let gzip = plain
            .fill_buf()
            .map_err(Error::Read)?
            .starts_with(&[0x1f, 0x8b]);
        let mut cfg = if gzip {
            let unzipped = BufReader::new(flate2::bufread::MultiGzDecoder::new(plain));
            Self::read_lines(unzipped, keep).map_err(|e| match e {
                Error::Read(e) => Error::Gzip(e),
                other => other,
            })?
        } else {
            Self::read_lines(plain, keep)?
        };
        cfg.gzip = gzip;
        Ok(cfg)
    }

    /// Splits the stream into lines where it lies in the reader's buffer (a line that
    /// straddles two buffers is put together in `carry`), and parses each.
    fn read_lines(mut reader: impl BufRead, keep: Keep<'_>) -> Result<Self, Error> {
        let mut cfg = Self {
            kept: match keep {
                Keep::All => None,
                Keep::Only(names) => Some(names.iter().map(|n| n.as_bytes().to_vec()).collect()),
            },
            ..Self::default()
        };
        let mut carry = Vec::new();
        let mut total = 0u64;
        let mut no = 0;
        loop {
            let chunk = reader.fill_buf().map_err(Error::Read)?;
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len();
            total += len as u64;
            if total > MAX_TEXT {
                return Err(Error::TooLarge);
            }
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', chunk) {
                no += 1;
                if carry.is_empty() {
                    cfg.line(no, &chunk[start..end]);
                } else {
                    carry.extend_from_slice(&chunk[start..end]);
                    cfg.line(no, &carry);
                    carry.clear();
                }
                start = end + 1;
            }
            carry.extend_from_slice(&chunk[start..]);
            reader.consume(len);
        }
        if !carry.is_empty() {
            cfg.line(no + 1, &carry);
        }
        Ok(cfg)
    }

    /// Parses plain or gzip-compressed bytes, keeping every symbol.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::read(bytes, Keep::All)
    }

    /// Reads and parses a file, plain or gzip, keeping every symbol.
    pub fn read_file(path: &Path) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        Self::read(file, Keep::All).map_err(|e| match e {
            Error::Read(source) => io(source),
            other => other,
        })
    }

    /// Text from the file: bytes that are not UTF-8 are replaced, with one warning
    /// for the file. Only what is kept or quoted in a warning is ever converted.
    fn text<'b>(&mut self, no: usize, bytes: &'b [u8]) -> Cow<'b, str> {
        let text = String::from_utf8_lossy(bytes);
        if matches!(text, Cow::Owned(_)) && !self.lossy {
            self.lossy = true;
            self.warn(no, "not UTF-8 text; odd bytes replaced".to_owned());
        }
        text
    }

    /// One line, without its newline. What Kconfig writes: `CONFIG_FOO=value`,
    /// `# CONFIG_FOO is not set`, the `# Linux/...` header, and other comments.
    fn line(&mut self, no: usize, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"CONFIG_") {
            self.assignment(no, line, rest);
        } else if let Some(rest) = line.strip_prefix(b"# CONFIG_") {
            self.not_set(no, line, rest);
        } else if let Some(rest) = line.strip_prefix(b"# Linux/") {
            let rest = self.text(no, rest);
            self.header(&rest);
        } else if !line.starts_with(b"#") && !line.trim_ascii().is_empty() {
            let msg = format!(
                "not a config line, ignored: {}",
                excerpt(&self.text(no, line))
            );
            self.warn(no, msg);
        }
    }

    /// `# CONFIG_FOO is not set`: Kconfig's reader takes the name up to the first
    /// space and then wants `is not set` (anything after it is ignored); any other
    /// `# CONFIG_` comment is just a comment.
    fn not_set(&mut self, no: usize, line: &[u8], rest: &[u8]) {
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            return;
        };
        let (name, tail) = (&rest[..space], &rest[space + 1..]);
        let Some(extra) = tail.strip_prefix(b"is not set") else {
            return;
        };
        if symbol_len(name) != name.len() || name.is_empty() {
            let msg = format!(
                "malformed \"is not set\" line: {}",
                excerpt(&self.text(no, line))
            );
            self.warn(no, msg);
            return;
        }
        if !extra.is_empty() {
            let msg = format!(
                "text after \"is not set\" ignored (as Kconfig does): {}",
                excerpt(&self.text(no, line))
            );
            self.warn(no, msg);
        }
        self.set(no, name, b"n");
    }

    /// `# Linux/x86 6.17.5-arch1 Kernel Configuration` (after `# Linux/`)
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

    /// `CONFIG_FOO=value` (`rest` is what follows `CONFIG_`).
    fn assignment(&mut self, no: usize, line: &[u8], rest: &[u8]) {
        let n = symbol_len(rest);
        if n == 0 || rest.get(n) != Some(&b'=') {
            let why = if rest.contains(&b'=') {
                "bad symbol name, ignored"
            } else {
                "no '=' in config line, ignored"
            };
            let msg = format!("{why}: {}", excerpt(&self.text(no, line)));
            self.warn(no, msg);
            return;
        }
        let (name, value) = (&rest[..n], &rest[n + 1..]);
        if value == b"n" {
            let msg = format!(
                "CONFIG_{}=n: Kconfig reads it as \"is not set\" but never writes it this way",
                String::from_utf8_lossy(name)
            );
            self.warn(no, msg);
        }
        self.set(no, name, value);
    }

    /// Records `name` = `value` (`y`, `m`, `n` or a literal) if the symbol is kept;
    /// a second line for a symbol wins and is reported. `name` is a symbol (ASCII).
    fn set(&mut self, no: usize, name: &[u8], value: &[u8]) {
        self.symbol_lines += 1;
        if !self.keeps(name) {
            return;
        }
        let state = match value {
            b"y" => State::Y,
            b"m" => State::M,
            b"n" => State::N,
            other => State::Literal(self.text(no, other).into_owned()),
        };
        let new = Entry { state, line: no };
        let Some(old) = self.symbols.get_mut(name) else {
            self.symbols.insert(name.to_vec(), new);
            return;
        };
        let name = String::from_utf8_lossy(name);
        let msg = format!(
            "CONFIG_{name} set again (first on line {}, was {}); the last value {} wins",
            old.line, old.state, new.state
        );
        *old = new;
        self.duplicates += 1;
        self.warn(no, msg);
    }

    fn keeps(&self, name: &[u8]) -> bool {
        self.kept.as_ref().is_none_or(|k| k.contains(name))
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
        debug_assert!(
            self.keeps(name.as_bytes()),
            "CONFIG_{name} was not kept by the parse: add it to the names read"
        );
        self.symbols.get(name.as_bytes())
    }

    /// The state of a symbol, named with or without the `CONFIG_` prefix.
    pub fn get(&self, name: &str) -> State {
        self.state(name).unwrap_or(State::Absent)
    }

    /// Like [`Config::get`], `None` for absent.
    pub fn state(&self, name: &str) -> Option<State> {
        self.find(name).map(|e| e.state.clone())
    }

    /// `y` or `m`.
    pub fn is_on(&self, name: &str) -> bool {
        self.find(name).is_some_and(|e| e.state.is_on())
    }

    fn is(&self, name: &str, state: &State) -> bool {
        self.find(name).is_some_and(|e| e.state == *state)
    }

    /// The line that set a symbol (the last one, for duplicates).
    pub fn line_of(&self, name: &str) -> Option<usize> {
        self.find(name).map(|e| e.line)
    }

    /// Number of symbols kept with a line (any value, `n` included).
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// True when no symbol line was found at all (not a kernel config), kept or not.
    pub fn is_empty(&self) -> bool {
        self.symbol_lines == 0
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

    /// The architecture: from the symbols first (`X86_64`, `X86_32`, `ARM64`, ...,
    /// see [`ARCH_SYMBOLS`]), else from the header.
    pub fn arch(&self) -> Option<Arch> {
        let on = |s: &str| self.is(s, &State::Y);
        let by_symbol = if on("X86_64") {
            Some(Arch::X86_64)
        } else if on("X86_32") || (on("X86") && self.is("X86_64", &State::N)) {
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

    /// How many symbol lines repeated an earlier symbol (among those kept).
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// Whether the bytes were gzip-compressed.
    pub fn was_gzip(&self) -> bool {
        self.gzip
    }
}

/// Bytes allowed in a symbol name: `[A-Za-z0-9_]`.
const SYMBOL_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

/// The length of the symbol name (`[A-Za-z0-9_]*`) `bytes` starts with.
fn symbol_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| !SYMBOL_BYTE[usize::from(b)])
        .unwrap_or(bytes.len())
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

    /// A reader that hands out one byte per call: lines cross every buffer boundary.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(out)) => {
                    *out = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn streaming_equals_parsing_the_text() {
        let text = format!(
            "{HEAD}CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_A=m\njunk\nCONFIG_S=\"x\"\r\nCONFIG_LAST=y"
        );
        let whole = Config::parse(&text);
        let streamed = Config::read(Trickle(text.as_bytes()), Keep::All).unwrap();
        assert_eq!(whole.symbols, streamed.symbols);
        assert_eq!(whole.warnings(), streamed.warnings());
        assert_eq!(whole.release(), streamed.release());
        assert_eq!(
            streamed.get("LAST"),
            State::Y,
            "a last line without newline"
        );
        assert_eq!(streamed.line_of("A"), Some(7));
        assert_eq!(streamed.warnings().len(), 2, "{:?}", streamed.warnings());
    }

    #[test]
    fn keeps_only_the_names_asked_for() {
        let names: Names = ["A", "B", "C"].into_iter().map(String::from).collect();
        let text =
            "CONFIG_A=y\nCONFIG_OTHER=y\n# CONFIG_B is not set\nCONFIG_OTHER=m\nCONFIG_A=m\nbad\n";
        let c = Config::read(text.as_bytes(), Keep::Only(&names)).unwrap();
        assert_eq!(c.get("A"), State::M, "last wins");
        assert_eq!(c.get("B"), State::N, "not set is a value");
        assert_eq!(c.get("C"), State::Absent);
        assert_eq!(c.len(), 2);
        assert!(!c.is_empty());
        // The kept symbol's duplicate is reported; odd lines warn wherever they are.
        assert_eq!(c.duplicates(), 1);
        let lines: Vec<usize> = c.warnings().iter().map(|w| w.line).collect();
        assert_eq!(lines, [5, 6]);
        let none = Config::read("# CONFIG_X is not set\n".as_bytes(), Keep::Only(&names)).unwrap();
        assert!(!none.is_empty(), "a symbol line was there, though not kept");
    }

    #[test]
    #[should_panic(expected = "not kept")]
    fn asking_for_a_symbol_not_kept_is_a_bug() {
        let names: Names = ["A"].into_iter().map(String::from).collect();
        let c = Config::read("CONFIG_B=y\n".as_bytes(), Keep::Only(&names)).unwrap();
        let _ = c.get("B");
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
