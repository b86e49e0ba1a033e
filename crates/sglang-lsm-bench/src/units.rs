//! Byte sizes: parsing for command-line options (`64k`, `8MiB`, `1g`, `4096`) and display.

/// Parses a byte count with an optional binary suffix: `k`/`kb`/`kib` (KiB), `m`/`mb`/`mib`,
/// `g`/`gb`/`gib`, `t`/`tb`/`tib`, case-insensitive. Suffixes are binary because page and block
/// sizes in this domain are powers of two; a decimal reading of `64k` would give 64,000-byte
/// blocks that no KV-cache layout produces.
///
/// # Errors
/// A message naming the bad input: empty, not a number, unknown suffix, or overflow.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let num: String = num.chars().filter(|&c| c != '_').collect();
    if num.is_empty() {
        return Err(format!(
            "{s:?} is not a byte size (expected e.g. 4096, 64k, 8MiB)"
        ));
    }
    let value: u64 = num
        .parse()
        .map_err(|e| format!("{s:?} is not a byte size: {e}"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "{s:?}: unknown size suffix {other:?} (use k, m, g or t)"
            ))
        }
    };
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} overflows a 64-bit byte count"))
}

/// Formats bytes with a binary unit (`8.0 MiB`).
#[must_use]
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn parses_plain_and_suffixed_sizes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert_eq!(parse_bytes("8MiB"), Ok(8 << 20));
        assert_eq!(parse_bytes(" 2 g "), Ok(2 << 30));
        assert_eq!(parse_bytes("1_024"), Ok(1024));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("k").is_err());
        assert!(parse_bytes("12x")
            .unwrap_err()
            .contains("unknown size suffix"));
        assert!(parse_bytes("99999999999999t")
            .unwrap_err()
            .contains("overflows"));
    }
}
