//! Kernel modules of a target kernel, as an image generator needs them.
//!
//! An initramfs is built for a kernel that is usually *not* the running one (a kernel
//! upgrade builds the image of the next kernel). So everything here reads the target
//! kernel's module directory (`/lib/modules/<kver>`), never `/sys/module`:
//!
//! - `modules.builtin` lists the modules compiled into the kernel image (one path per
//!   line, `kernel/drivers/vfio/pci/vfio-pci.ko`): those need no file in the image;
//! - every other module is a file `<name>.ko`, optionally compressed (`.ko.xz`,
//!   `.ko.zst`, `.ko.gz`), whose ELF section `.modinfo` holds NUL-separated
//!   `key=value` strings: `vermagic` (the kernel release it was built for, then flags),
//!   `depends` (comma-separated module names it needs loaded first) and `softdep`
//!   (`pre: a b post: c`, modules modprobe loads around it: vfio asks for
//!   `vfio_iommu_type1` this way, without which vfio-pci binds but no guest can use it).
//!
//! [`closure`] walks `depends` and `softdep` from a root module (vfio-pci) and reports
//! each module as built in or as a file; `vfio_virqfd` only exists before 6.2,
//! `iommufd` only after 6.2, so nothing is hard-coded: the target kernel's own metadata
//! decides. Module names compare with `-` and `_` as the same character, as the kernel
//! does.
//!
//! [`crate::modules::ClaimTable`] matches a device's `modalias` against `modules.alias` (shell glob
//! patterns) to name the host driver that would claim it, for the modprobe.d
//! `softdep <driver> pre: vfio-pci` backstop lines.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Suffixes of module files, in the order they are preferred.
pub(crate) const MODULE_SUFFIXES: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// Why a module could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModError {
    /// The file could not be read through the host seam (not a regular file, larger
    /// than the bound, or an I/O error).
    #[error(transparent)]
    Read(crate::host::HostError),
    /// The file could not be decompressed.
    #[error("{}: cannot decompress: {detail}", path.display())]
    Decompress {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        detail: String,
    },
    /// The file is not an ELF object with a `.modinfo` section.
    #[error("{}: not a kernel module: {detail}", path.display())]
    NotModule {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The `.modinfo` fields an image generator needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=` (present since 4.x); the file name is used when absent.
    pub name: Option<String>,
    /// `vermagic=`: kernel release, then flags (`6.1.0-56-amd64 SMP preempt mod_unload modversions`).
    pub vermagic: Option<String>,
    /// `depends=`, split on commas, empty entries dropped.
    pub depends: Vec<String>,
    /// Every module named by `softdep=` lines, `pre:` and `post:` alike.
    pub softdeps: Vec<String>,
    /// `alias=` entries.
    pub aliases: Vec<String>,
}

impl ModInfo {
    /// The kernel release this module was built for (first word of `vermagic`).
    pub fn release(&self) -> Option<&str> {
        self.vermagic
            .as_deref()
            .and_then(|v| v.split_whitespace().next())
    }
}

/// Parses the contents of a `.modinfo` section: NUL-separated `key=value` strings.
pub fn parse_modinfo_section(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for entry in section.split(|&b| b == 0) {
        let entry = String::from_utf8_lossy(entry);
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = Some(value.to_owned()),
            "vermagic" => info.vermagic = Some(value.trim().to_owned()),
            "depends" => {
                info.depends.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
            }
            "softdep" => info.softdeps.extend(parse_softdep(value)),
            "alias" => info.aliases.push(value.to_owned()),
            _ => {}
        }
    }
    info
}

/// Module names of a softdep value (`pre: a b post: c`): every word that is not a
/// `pre:`/`post:` marker.
pub(crate) fn parse_softdep(value: &str) -> Vec<String> {
    value
        .split_whitespace()
        .filter(|w| !w.ends_with(':'))
        .map(str::to_owned)
        .collect()
}

/// Reads `.modinfo` from the bytes of an ELF module (already decompressed).
pub fn modinfo_from_elf(path: &Path, bytes: &[u8]) -> Result<ModInfo, ModError> {
    let not_module = |detail: String| ModError::NotModule {
        path: path.to_owned(),
        detail,
    };
    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| not_module(e.to_string()))?;
    for sh in &elf.section_headers {
        if elf.shdr_strtab.get_at(sh.sh_name) != Some(".modinfo") {
            continue;
        }
        let start = usize::try_from(sh.sh_offset).map_err(|e| not_module(e.to_string()))?;
        let len = usize::try_from(sh.sh_size).map_err(|e| not_module(e.to_string()))?;
        let section = start
            .checked_add(len)
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| not_module("section .modinfo lies outside the file".to_owned()))?;
        return Ok(parse_modinfo_section(section));
    }
    Err(not_module("no .modinfo section".to_owned()))
}

/// The largest module file read, compressed or not, and the largest a module may
/// decompress to (the largest in-tree modules are tens of MiB).
pub(crate) const MODULE_MAX: u64 = crate::host::READ_MAX;

/// Decompresses module bytes according to the file name's suffix, to at most
/// [`MODULE_MAX`] bytes.
pub fn decompress(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, ModError> {
    decompress_limited(path, raw, MODULE_MAX)
}

/// [`decompress`] to at most `limit` bytes.
fn decompress_limited(path: &Path, raw: Vec<u8>, limit: u64) -> Result<Vec<u8>, ModError> {
    let name = path.to_string_lossy();
    let err = |detail: String| ModError::Decompress {
        path: path.to_owned(),
        detail,
    };
    let mut out = Vec::new();
    let over = limit.saturating_add(1);
    if name.ends_with(".xz") {
        // lzma-rs writes into a `Write`: a writer that refuses past the bound stops it.
        let mut sink = Bounded {
            out: &mut out,
            left: over,
        };
        lzma_rs::xz_decompress(&mut raw.as_slice(), &mut sink)
            .map_err(|e| err(format!("{e:?}")))?;
    } else if name.ends_with(".zst") {
        let dec = ruzstd::decoding::StreamingDecoder::new(raw.as_slice())
            .map_err(|e| err(e.to_string()))?;
        dec.take(over)
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(over)
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
    } else {
        return Ok(raw);
    }
    if out.len() as u64 > limit {
        return Err(err(format!("decompresses to more than {limit} bytes")));
    }
    Ok(out)
}

/// A `Write` that takes at most `left` bytes, then fails.
struct Bounded<'a> {
    out: &'a mut Vec<u8>,
    left: u64,
}

impl io::Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::other("over the bound"));
        }
        self.out.extend_from_slice(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads and parses the `.modinfo` of a module file (any supported compression),
/// through the host seam's bounded reader (a FIFO or device is refused unopened).
pub(crate) fn read_modinfo(path: &Path) -> Result<ModInfo, ModError> {
    let raw = crate::host::read_file(path, MODULE_MAX).map_err(ModError::Read)?;
    let bytes = decompress(path, raw)?;
    modinfo_from_elf(path, &bytes)
}

/// The canonical form of a module name: `-` becomes `_`.
pub(crate) fn canonical(name: &str) -> String {
    crate::modules::normalize(name)
}

/// The module name of a module file path (`.../vfio-pci.ko.zst` -> `vfio_pci`).
pub(crate) fn name_of_path(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    MODULE_SUFFIXES
        .iter()
        .rev()
        .find_map(|suffix| file.strip_suffix(suffix))
        .map(canonical)
}

/// Names of the built-in modules, from the text of `modules.builtin`.
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| name_of_path(l.trim()))
        .collect()
}

/// The module files of one kernel's module directory, by canonical name.
#[derive(Debug, Default)]
pub(crate) struct ModuleDir {
    /// `modules.builtin` entries.
    pub builtin: BTreeSet<String>,
    /// Module files; when a name appears twice, `updates/` wins, then the first found.
    pub files: BTreeMap<String, PathBuf>,
}

impl ModuleDir {
    /// Scans `kmoddir` (`/lib/modules/<kver>`): `modules.builtin` and every module file.
    pub fn scan(kmoddir: &Path) -> Self {
        let builtin =
            crate::host::read_text(&kmoddir.join("modules.builtin"), crate::host::READ_MAX)
                .map(|t| parse_builtin(&t))
                .unwrap_or_default();
        let mut files = BTreeMap::new();
        let mut stack = vec![kmoddir.join("updates"), kmoddir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
            entries.sort_by_key(fs::DirEntry::file_name);
            for entry in entries {
                let path = entry.path();
                let Ok(ft) = entry.file_type() else { continue };
                if ft.is_dir() {
                    if path != kmoddir.join("updates")
                        && path != kmoddir.join("build")
                        && path != kmoddir.join("source")
                    {
                        stack.push(path);
                    }
                } else if let Some(name) = name_of_path(&path.to_string_lossy()) {
                    files.entry(name).or_insert(path);
                }
            }
        }
        Self { builtin, files }
    }
}

/// How one module of the closure is provided by the target kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Provided {
    /// Compiled into the kernel image.
    Builtin,
    /// A module file; `vermagic` release as read from it.
    File {
        /// The file.
        path: PathBuf,
        /// First word of `vermagic`.
        release: Option<String>,
    },
    /// Named by a softdep but absent: fine (softdeps are optional).
    MissingOptional,
}

/// One entry of a dependency closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClosureEntry {
    /// Canonical module name.
    pub name: String,
    /// How it is provided.
    pub provided: Provided,
    /// Which module asked for it (`None` for the root).
    pub wanted_by: Option<String>,
}

/// Why a closure could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClosureError {
    /// A required module (the root, or a `depends` entry) exists nowhere.
    #[error("module {name} is neither built in nor present as a file{}", wanted_by.as_ref().map(|w| format!(" (needed by {w})")).unwrap_or_default())]
    Missing {
        /// The module.
        name: String,
        /// Who needed it.
        wanted_by: Option<String>,
    },
    /// A module file could not be read.
    #[error(transparent)]
    Read(#[from] ModError),
}

/// The closure of `root` over `depends` (required) and `softdep` (optional), in
/// breadth-first order starting with the root.
pub(crate) fn closure(dir: &ModuleDir, root: &str) -> Result<Vec<ClosureEntry>, ClosureError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut queue = VecDeque::from([(canonical(root), None::<String>, true)]);
    while let Some((name, wanted_by, required)) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(path) = dir.files.get(&name) {
            let info = read_modinfo(path)?;
            for dep in &info.depends {
                queue.push_back((canonical(dep), Some(name.clone()), true));
            }
            for dep in &info.softdeps {
                queue.push_back((canonical(dep), Some(name.clone()), false));
            }
            let release = info.release().map(str::to_owned);
            out.push(ClosureEntry {
                name,
                provided: Provided::File {
                    path: path.clone(),
                    release,
                },
                wanted_by,
            });
        } else if dir.builtin.contains(&name) {
            out.push(ClosureEntry {
                name,
                provided: Provided::Builtin,
                wanted_by,
            });
        } else if required {
            return Err(ClosureError::Missing { name, wanted_by });
        } else {
            out.push(ClosureEntry {
                name,
                provided: Provided::MissingOptional,
                wanted_by,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_section_fields() {
        let sec = b"alias=vfio_pci:v*d*sv*sd*bc*sc*i*\0depends=vfio-pci-core,vfio\0softdep=pre: iommufd post: vfio_iommu_type1\0name=vfio_pci\0vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions \0";
        let info = parse_modinfo_section(sec);
        assert_eq!(info.name.as_deref(), Some("vfio_pci"));
        assert_eq!(info.release(), Some("6.1.0-56-amd64"));
        assert_eq!(info.depends, ["vfio-pci-core", "vfio"]);
        assert_eq!(info.softdeps, ["iommufd", "vfio_iommu_type1"]);
        assert_eq!(info.aliases.len(), 1);
    }

    #[test]
    fn empty_depends_is_no_dependency() {
        assert!(parse_modinfo_section(b"depends=\0").depends.is_empty());
    }

    #[test]
    fn names_of_paths() {
        assert_eq!(
            name_of_path("kernel/drivers/vfio/pci/vfio-pci.ko").as_deref(),
            Some("vfio_pci")
        );
        assert_eq!(
            name_of_path("/x/irqbypass.ko.zst").as_deref(),
            Some("irqbypass")
        );
        assert_eq!(name_of_path("/x/vfio.ko.xz").as_deref(), Some("vfio"));
        assert_eq!(name_of_path("/x/a-b.ko.gz").as_deref(), Some("a_b"));
        assert_eq!(name_of_path("modules.dep"), None);
    }

    #[test]
    fn builtin_list() {
        let b = parse_builtin("kernel/drivers/vfio/vfio.ko\nkernel/virt/lib/irqbypass.ko\n");
        assert!(b.contains("vfio") && b.contains("irqbypass") && b.len() == 2);
    }

    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        // A minimal ELF64 little-endian relocatable object with sections: null,
        // .modinfo, .shstrtab.
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little endian
        f[6] = 1; // EV_CURRENT
        f[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        f[58..60].copy_from_slice(&64u16.to_le_bytes()); // shentsize
        f[60..62].copy_from_slice(&3u16.to_le_bytes()); // shnum
        f[62..64].copy_from_slice(&2u16.to_le_bytes()); // shstrndx
        let modinfo_off = f.len();
        f.extend_from_slice(modinfo);
        let strtab_off = f.len();
        f.extend_from_slice(shstrtab);
        while f.len() % 8 != 0 {
            f.push(0);
        }
        let shoff = f.len();
        f[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        let mut sh = |name: u32, ty: u32, off: usize, size: usize| {
            let mut s = vec![0u8; 64];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[4..8].copy_from_slice(&ty.to_le_bytes());
            s[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            s[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            s[48..56].copy_from_slice(&1u64.to_le_bytes());
            f.extend_from_slice(&s);
        };
        sh(0, 0, 0, 0);
        sh(1, 1, modinfo_off, modinfo.len());
        sh(10, 3, strtab_off, shstrtab.len());
        f
    }

    #[test]
    fn elf_modinfo_is_found() {
        let elf = elf_with_modinfo(b"depends=vfio\0vermagic=6.9.0 SMP\0");
        let info = modinfo_from_elf(Path::new("x.ko"), &elf).unwrap();
        assert_eq!(info.depends, ["vfio"]);
        assert_eq!(info.release(), Some("6.9.0"));
        assert!(modinfo_from_elf(Path::new("x.ko"), b"not an elf").is_err());
    }

    #[test]
    fn gzip_modules_decompress() {
        use std::io::Write;
        let elf = elf_with_modinfo(b"depends=\0");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&elf).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(decompress(Path::new("m.ko.gz"), gz).unwrap(), elf);
        assert!(decompress(Path::new("m.ko.xz"), b"garbage".to_vec()).is_err());
        assert!(decompress(Path::new("m.ko.zst"), b"garbage".to_vec()).is_err());
    }

    #[test]
    fn closure_walks_depends_and_softdeps() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path();
        let d = k.join("kernel/drivers/vfio");
        fs::create_dir_all(d.join("pci")).unwrap();
        fs::write(
            d.join("pci/vfio-pci.ko"),
            elf_with_modinfo(b"depends=vfio-pci-core,vfio\0vermagic=6.1.0-1-amd64 SMP\0"),
        )
        .unwrap();
        fs::write(
            d.join("pci/vfio-pci-core.ko"),
            elf_with_modinfo(b"depends=vfio,irqbypass\0"),
        )
        .unwrap();
        fs::write(
            d.join("vfio.ko"),
            elf_with_modinfo(b"depends=\0softdep=post: vfio_iommu_type1 vfio_iommu_spapr_tce\0"),
        )
        .unwrap();
        fs::write(
            d.join("vfio_iommu_type1.ko"),
            elf_with_modinfo(b"depends=vfio\0"),
        )
        .unwrap();
        fs::write(k.join("modules.builtin"), "kernel/virt/lib/irqbypass.ko\n").unwrap();
        let dir = ModuleDir::scan(k);
        let c = closure(&dir, "vfio-pci").unwrap();
        let names: Vec<_> = c.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "vfio_pci",
                "vfio_pci_core",
                "vfio",
                "irqbypass",
                "vfio_iommu_type1",
                "vfio_iommu_spapr_tce"
            ]
        );
        assert_eq!(c[3].provided, Provided::Builtin);
        assert_eq!(c[5].provided, Provided::MissingOptional);
        assert!(
            matches!(&c[0].provided, Provided::File { release: Some(r), .. } if r == "6.1.0-1-amd64")
        );

        fs::remove_file(d.join("vfio.ko")).unwrap();
        let err = closure(&ModuleDir::scan(k), "vfio-pci").unwrap_err();
        assert!(err.to_string().contains("module vfio is neither"), "{err}");
        assert!(closure(&ModuleDir::scan(k), "nonexistent").is_err());
    }

    #[test]
    fn xz_and_zstd_modules_decompress() {
        let elf = elf_with_modinfo(b"depends=vfio\0");
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut elf.as_slice(), &mut xz).unwrap();
        assert_ne!(xz, elf);
        assert_eq!(decompress(Path::new("m.ko.xz"), xz).unwrap(), elf);
        let zst = ruzstd::encoding::compress_to_vec(
            elf.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let out = decompress(Path::new("m.ko.zst"), zst).unwrap();
        assert_eq!(
            modinfo_from_elf(Path::new("m.ko.zst"), &out)
                .unwrap()
                .depends,
            ["vfio"]
        );
    }

    #[test]
    fn reads_are_bounded_and_special_files_refused() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("vfio.ko");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_modinfo(&fifo).unwrap_err();
        assert!(
            matches!(e, ModError::Read(crate::host::HostError::Special { .. })),
            "{e}"
        );
        // A small gzip that inflates past the bound is cut off and refused, for every
        // decoder's way of writing.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &vec![0u8; 4096]).unwrap();
        let raw = gz.finish().unwrap();
        let p = Path::new("x.ko.gz");
        assert_eq!(
            decompress_limited(p, raw.clone(), 4096).unwrap().len(),
            4096
        );
        let e = decompress_limited(p, raw, 4095).unwrap_err();
        assert!(e.to_string().contains("more than 4095 bytes"), "{e}");
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut [0u8; 4096].as_slice(), &mut xz).unwrap();
        assert_eq!(
            decompress_limited(Path::new("x.ko.xz"), xz.clone(), 4096)
                .unwrap()
                .len(),
            4096
        );
        assert!(decompress_limited(Path::new("x.ko.xz"), xz, 100).is_err());
    }
}
