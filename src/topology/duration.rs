//! Durations in topology files: `500ms`, `30s`, `10m`, `1h`, `7d`, `2w`, or `0`.

/// Parses a duration into milliseconds. Negative durations are rejected: a window's grace or
/// size below zero means nothing.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.starts_with('-') {
        return Err(format!("`{text}`: durations must not be negative"));
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` needs a unit: ms, s, m, h, d or w (e.g. `30s`)"))?;
    let (number, unit) = t.split_at(split);
    let n: i64 = number.parse().map_err(|_| format!("`{text}` is not a duration like `30s`, `10m`, `1h`, `7d`"))?;
    let factor: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        other => return Err(format!("`{text}`: unknown unit `{other}` (use ms, s, m, h, d or w)")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("`{text}` is too long"))
}

/// Formats milliseconds the way they are written in topology files.
pub fn format_duration(ms: i64) -> String {
    for (unit, factor) in [("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms != 0 && ms % factor == 0 {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_negatives() {
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("7d"), Ok(604_800_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("-5m").unwrap_err().contains("negative"));
        assert!(parse_duration("5").unwrap_err().contains("unit"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert_eq!(format_duration(3_600_000), "1h");
        assert_eq!(format_duration(1_500), "1500ms");
    }
}
