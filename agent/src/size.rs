//! Memory sizes as people write them in a config (`2M`, `1G`, `8G`), as the kernel
//! reads them from its command line (`memparse`: `1G`, `0x40000000`, a bare number of
//! bytes), and as they are shown back (`2M`, `1.5G`). Pure; every size is in kB, the
//! unit sysfs names hugepage pools in.

/// A MiB in kB.
pub(crate) const MIB_KB: u64 = 1024;
/// A GiB in kB.
pub(crate) const GIB_KB: u64 = 1024 * 1024;

/// Parses a size with a unit (`2M`, `1G`, `2048kB`, `1GiB`, case-insensitive) into kB.
///
/// A bare number is refused: in a config, `2048` could mean bytes, kB or pages.
///
/// # Errors
/// A sentence fragment saying what is wrong with `s`.
pub(crate) fn parse_size_kb(s: &str) -> Result<u64, String> {
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
pub(crate) fn size_name(kb: u64) -> String {
    if kb >= GIB_KB && kb % GIB_KB == 0 {
        format!("{}G", kb / GIB_KB)
    } else if kb >= MIB_KB && kb % MIB_KB == 0 {
        format!("{}M", kb / MIB_KB)
    } else {
        format!("{kb}K")
    }
}

/// An amount of memory in kB, for people: `1G`, `1.5G`, `512M`, `300K`.
pub(crate) fn amount(kb: u64) -> String {
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
}
