//! The kernel command line, parsed as the kernel parses it.
//!
//! Parameters are separated by spaces; double quotes protect spaces (around the value,
//! `a="b c"`, or around the whole parameter, `"a=b c"`); `--` ends the kernel's
//! parameters (the rest go to init). Names compare with `-` and `_` as one, as the
//! kernel's `parameq` does.

/// A parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    params: Vec<(String, Option<String>)>,
    /// Words after `--`, for init.
    pub init_args: Vec<String>,
}

/// Whether two parameter names are the same for the kernel.
pub fn param_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_')))
}

impl Cmdline {
    /// Parses `/proc/cmdline` text.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        let mut rest = text.trim_start_matches(is_space);
        let mut after_dashes = false;
        while !rest.is_empty() {
            let (word, tail) = next_arg(rest);
            rest = tail.trim_start_matches(is_space);
            let (name, value) = split_param(&word);
            if after_dashes {
                out.init_args.push(word);
            } else if name == "--" && value.is_none() {
                after_dashes = true;
            } else {
                out.params.push((name, value));
            }
        }
        out
    }

    /// Every parameter in order, as (name, value).
    pub fn params(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// Every value given for `name`, in order (for parameters that accumulate).
    pub fn all(&self, name: &str) -> Vec<Option<&str>> {
        self.params()
            .filter(|(k, _)| param_eq(k, name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The last value given for `name` (most parameters: the last one wins).
    /// `Some(None)` means the name was given without `=`.
    pub fn last(&self, name: &str) -> Option<Option<&str>> {
        self.all(name).last().copied()
    }

    /// Whether the agent is switched off (`vfio_early=off|0|no|false|n`, also
    /// `vfio-early=` and `rd.vfio_early=`), and by which parameter.
    pub fn kill_switch(&self) -> Option<String> {
        let (k, v) = self
            .params()
            .filter(|(k, _)| param_eq(k, "vfio_early") || param_eq(k, "rd.vfio_early"))
            .last()?;
        let v = v?;
        matches!(
            v.to_ascii_lowercase().as_str(),
            "off" | "0" | "no" | "n" | "false"
        )
        .then(|| format!("{k}={v}"))
    }
}

/// A space between parameters, as the kernel's `isspace` has it: space, `\t`, `\n`,
/// `\v`, `\f`, `\r` (Rust's `is_ascii_whitespace` leaves out `\v`, `str::trim` adds
/// Unicode spaces: neither is the kernel's rule).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t'..='\r')
}

/// One parameter and the rest, as the kernel's `next_arg` splits them.
fn next_arg(s: &str) -> (String, &str) {
    let mut in_quote = false;
    let mut end = s.len();
    for (i, c) in s.char_indices() {
        if is_space(c) && !in_quote {
            end = i;
            break;
        }
        if c == '"' {
            in_quote = !in_quote;
        }
    }
    (s[..end].to_owned(), &s[end..])
}

/// Splits `name=value`, dropping the quotes the kernel drops.
fn split_param(word: &str) -> (String, Option<String>) {
    // A leading quote around the whole parameter: `"a=b c"`.
    let (word, whole_quoted) = match word.strip_prefix('"') {
        Some(w) => (w, true),
        None => (word, false),
    };
    match word.split_once('=') {
        Some((name, value)) => {
            let mut value = value;
            if let Some(v) = value.strip_prefix('"') {
                value = v;
            }
            if (whole_quoted || value.len() != word.len()) && value.ends_with('"') {
                value = &value[..value.len() - 1];
            }
            (name.to_owned(), Some(value.to_owned()))
        }
        None => {
            let name = if whole_quoted {
                word.strip_suffix('"').unwrap_or(word)
            } else {
                word
            };
            (name.to_owned(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_kernel() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/vmlinuz root=UUID=ab ro quiet intel_iommu=on,igfx_off dyndbg=\"file a.c +p\" \"acpi_osi=Windows 2020\" -- single x=1\n",
        );
        assert_eq!(c.last("root"), Some(Some("UUID=ab")));
        assert_eq!(c.last("quiet"), Some(None));
        assert_eq!(c.last("intel_iommu"), Some(Some("on,igfx_off")));
        assert_eq!(c.last("dyndbg"), Some(Some("file a.c +p")));
        assert_eq!(c.last("acpi_osi"), Some(Some("Windows 2020")));
        assert_eq!(c.init_args, ["single", "x=1"]);
        assert_eq!(c.last("x"), None, "after -- belongs to init");
    }

    #[test]
    fn spaces_are_the_kernels_isspace() {
        // \v and \f separate parameters as \t does; a no-break space (not ASCII) does not.
        let c = Cmdline::parse("\x0bquiet\x0bvfio_early=off\x0cro\tx=\u{a0}y");
        let names: Vec<&str> = c.params().map(|(k, _)| k).collect();
        assert_eq!(names, ["quiet", "vfio_early", "ro", "x"]);
        assert_eq!(c.last("x"), Some(Some("\u{a0}y")));
        assert!(c.kill_switch().is_some());
    }

    #[test]
    fn dash_and_underscore_are_one_and_last_wins() {
        let c = Cmdline::parse("vfio-pci.ids=1002:6779 iommu=on vfio_pci.ids=10de:1b80 iommu=pt");
        assert_eq!(c.last("vfio_pci.ids"), Some(Some("10de:1b80")));
        assert_eq!(c.all("vfio-pci.ids").len(), 2);
        assert_eq!(c.last("iommu"), Some(Some("pt")));
        assert!(param_eq("modprobe.blacklist", "modprobe.blacklist"));
        assert!(!param_eq("vfio_pci", "vfio_pcie"));
    }

    #[test]
    fn kill_switch_forms() {
        for on in [
            "vfio_early=off",
            "vfio-early=0",
            "vfio_early=no",
            "rd.vfio_early=0",
            "x vfio_early=1 vfio_early=OFF",
        ] {
            assert!(Cmdline::parse(on).kill_switch().is_some(), "{on}");
        }
        for off in [
            "",
            "vfio_early",
            "vfio_early=on",
            "vfio_early=off vfio_early=1",
            "novfio_early=off",
            "-- vfio_early=off",
        ] {
            assert!(Cmdline::parse(off).kill_switch().is_none(), "{off}");
        }
        assert_eq!(
            Cmdline::parse("rd.vfio-early=0").kill_switch().as_deref(),
            Some("rd.vfio-early=0")
        );
    }

    #[test]
    fn odd_input_never_panics() {
        for s in [
            "\"",
            "=",
            "==",
            "\"=\"",
            "a=\"",
            "  \t ",
            "é=ü \"x",
            "--",
            "-- --",
        ] {
            let _ = Cmdline::parse(s);
        }
        assert_eq!(Cmdline::parse("a=\"").last("a"), Some(Some("")));
    }
}
