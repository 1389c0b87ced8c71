//! Durations and byte sizes as people write them in flags, environment
//! variables and configuration files, shared so every command reads `30s` and
//! `512MiB` the same way.

use std::time::Duration;

/// Parses `500ms`, `30s`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (value, unit) = split_number(text)
        .ok_or_else(|| format!("invalid duration '{text}': write it as 500ms, 30s, 2m or 1h"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "invalid duration unit '{other}' in '{text}': use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("invalid duration '{text}'"))
}

/// Parses a byte count: `4194304`, `512KiB`, `4MiB`, `1GiB`, or the decimal
/// `kB`, `MB`, `GB`.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (value, unit) = split_number(text)
        .ok_or_else(|| format!("invalid size '{text}': write it as 4194304, 512KiB or 4MiB"))?;
    let scale: f64 = match unit {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "invalid size unit '{other}' in '{text}': use B, KiB, MiB, GiB, kB, MB or GB"
            ));
        }
    };
    let bytes = value * scale;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes <= usize::MAX as f64) {
        return Err(format!("invalid size '{text}': must be at least one byte"));
    }
    Ok(bytes.round() as usize)
}

/// `"4.5MiB"` → `(4.5, "MiB")`; `None` when there is no leading number.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("4194304"), Ok(4 << 20));
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("0.5 KiB"), Ok(512));
        assert_eq!(parse_bytes("20MB"), Ok(20_000_000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("4 mebibytes").unwrap_err().contains("unit"));
        assert!(parse_bytes("MiB").is_err());
    }
}
