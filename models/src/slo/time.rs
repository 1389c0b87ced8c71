//! Durations as SLO files write them (`5m`, `30d`, `1M`), UTC instants, and
//! the calendar periods of calendar-aligned windows.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Nanoseconds in a second.
pub const NANOS: i64 = 1_000_000_000;
/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// A length of time: whole seconds, or whole calendar months (`1M`, `1Q`, `1Y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Span {
    /// A fixed number of seconds (`s`, `m`, `h`, `d`, `w`).
    Seconds(u64),
    /// Calendar months (`M` = 1, `Q` = 3, `Y` = 12); only calendar windows use them.
    Months(u32),
}

impl Span {
    /// Parses `30s`, `5m`, `1h`, `30d`, `1w`, `1M`, `1Q` or `1Y` (a positive integer and a unit).
    pub fn parse(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let bad = || {
            format!(
                "invalid duration '{text}': write a whole number and a unit: s, m, h, d, w, or M, Q, Y for calendar windows (e.g. 30d)"
            )
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(format!("invalid duration '{text}': must be longer than 0"));
        }
        let seconds = |scale: u64| n.checked_mul(scale).map(Span::Seconds).ok_or_else(bad);
        let months = |scale: u32| {
            u32::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(scale))
                .map(Span::Months)
                .ok_or_else(bad)
        };
        match unit {
            "s" => seconds(1),
            "m" => seconds(60),
            "h" => seconds(3600),
            "d" => seconds(DAY),
            "w" => seconds(7 * DAY),
            "M" => months(1),
            "Q" => months(3),
            "Y" => months(12),
            _ => Err(bad()),
        }
    }

    /// Length in seconds; a month counts as 30 days (only used to scale burn-rate windows).
    pub fn nominal_seconds(self) -> u64 {
        match self {
            Span::Seconds(s) => s,
            Span::Months(m) => u64::from(m) * 30 * DAY,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Span::Seconds(s) => f.write_str(&format_seconds(s)),
            Span::Months(m) if m % 12 == 0 => write!(f, "{}Y", m / 12),
            Span::Months(m) if m % 3 == 0 => write!(f, "{}Q", m / 3),
            Span::Months(m) => write!(f, "{m}M"),
        }
    }
}

/// Seconds in the largest unit that divides them exactly (`90s` → `90s`,
/// `3600` → `1h`), which is also a valid Prometheus duration.
pub fn format_seconds(s: u64) -> String {
    for (unit, size) in [("w", 7 * DAY), ("d", DAY), ("h", 3600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        struct SpanVisitor;
        impl Visitor<'_> for SpanVisitor {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 5m, 1h, 30d or 1M")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Span, E> {
                Span::parse(text).map_err(E::custom)
            }
        }
        d.deserialize_str(SpanVisitor)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A point in time, nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(pub i64);

impl Instant {
    /// Parses `2026-01-01T00:00:00Z`, `2026-01-01 00:00:00` (OpenSLO's form,
    /// read as UTC) or `2026-01-01`.
    pub fn parse(text: &str) -> Result<Instant, String> {
        let bad = || {
            format!(
                "invalid time '{text}': write it as 2026-01-01T00:00:00Z or 2026-01-01 00:00:00 (UTC)"
            )
        };
        let t = text.trim();
        let t = t.strip_suffix('Z').unwrap_or(t);
        let (date, time) = match t.split_once(['T', ' ']) {
            Some((date, time)) => (date, time),
            None => (t, "00:00:00"),
        };
        let numbers = |s: &str, sep: char| -> Option<Vec<i64>> {
            s.split(sep).map(|p| p.parse().ok()).collect()
        };
        let d = numbers(date, '-')
            .filter(|d| d.len() == 3)
            .ok_or_else(bad)?;
        let h = numbers(time, ':')
            .filter(|h| h.len() == 3)
            .ok_or_else(bad)?;
        let valid = (1..=12).contains(&d[1])
            && (1..=days_in_month(d[0], d[1] as u32) as i64).contains(&d[2])
            && (0..24).contains(&h[0])
            && (0..60).contains(&h[1])
            && (0..60).contains(&h[2]);
        if !valid {
            return Err(bad());
        }
        let days = schema::layout::days_from_civil(d[0], d[1], d[2]);
        Ok(Instant(
            (days * DAY as i64 + h[0] * 3600 + h[1] * 60 + h[2]) * NANOS,
        ))
    }

    /// The instant `seconds` later (earlier when negative).
    pub fn plus_seconds(self, seconds: i64) -> Instant {
        Instant(self.0 + seconds * NANOS)
    }

    /// The instant `months` calendar months later, on the same day of the
    /// month (clamped to the month's last day) and time of day.
    pub fn plus_months(self, months: i64) -> Instant {
        let days = self.0.div_euclid(DAY as i64 * NANOS);
        let in_day = self.0.rem_euclid(DAY as i64 * NANOS);
        let (y, m, d) = schema::layout::civil_from_days(days);
        let index = y * 12 + i64::from(m) - 1 + months;
        let (y, m) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
        let d = d.min(days_in_month(y, m));
        let days = schema::layout::days_from_civil(y, i64::from(m), i64::from(d));
        Instant(days * DAY as i64 * NANOS + in_day)
    }

    /// The instant a span later.
    pub fn plus(self, span: Span, times: i64) -> Instant {
        match span {
            Span::Seconds(s) => self.plus_seconds(s as i64 * times),
            Span::Months(m) => self.plus_months(i64::from(m) * times),
        }
    }
}

impl fmt::Display for Instant {
    /// RFC 3339 in UTC, with the fraction only when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(NANOS);
        let nanos = self.0.rem_euclid(NANOS);
        let (y, m, d) = schema::layout::civil_from_days(secs.div_euclid(DAY as i64));
        let s = secs.rem_euclid(DAY as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            s / 3600,
            s / 60 % 60,
            s % 60
        )?;
        if nanos != 0 {
            write!(f, ".{nanos:09}")?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Instant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// The calendar period of length `span`, counted from `anchor`, that holds `at`:
/// `[start, end)`.
pub fn calendar_period(anchor: Instant, span: Span, at: Instant) -> (Instant, Instant) {
    // A first guess from the nominal length, then step to the right period.
    let nominal = span.nominal_seconds() as i64 * NANOS;
    let mut k = (at.0 - anchor.0).div_euclid(nominal);
    while anchor.plus(span, k) > at {
        k -= 1;
    }
    while anchor.plus(span, k + 1) <= at {
        k += 1;
    }
    (anchor.plus(span, k), anchor.plus(span, k + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print_back() {
        assert_eq!(Span::parse("5m"), Ok(Span::Seconds(300)));
        assert_eq!(Span::parse("30d"), Ok(Span::Seconds(30 * DAY)));
        assert_eq!(Span::parse("1Q"), Ok(Span::Months(3)));
        for text in ["90s", "5m", "1h", "30d", "2w", "1M", "1Q", "1Y"] {
            assert_eq!(Span::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(format_seconds(7200), "2h");
        assert_eq!(format_seconds(5400), "90m");
        assert!(Span::parse("0s").unwrap_err().contains("longer than 0"));
        assert!(Span::parse("1.5h").unwrap_err().contains("whole number"));
        assert!(Span::parse("3 days").is_err());
    }

    #[test]
    fn instants_parse_and_print_in_utc() {
        let t = Instant::parse("2026-03-02T10:00:00Z").unwrap();
        assert_eq!(t, Instant(1_772_445_600 * NANOS));
        assert_eq!(Instant::parse("2026-03-02 10:00:00").unwrap(), t);
        assert_eq!(t.to_string(), "2026-03-02T10:00:00Z");
        assert_eq!(
            Instant(t.0 + 5).to_string(),
            "2026-03-02T10:00:00.000000005Z"
        );
        assert!(Instant::parse("2026-02-30").is_err());
        assert!(Instant::parse("yesterday").is_err());
    }

    #[test]
    fn months_clamp_to_the_end_of_shorter_months() {
        let jan31 = Instant::parse("2024-01-31T12:00:00Z").unwrap();
        assert_eq!(jan31.plus_months(1).to_string(), "2024-02-29T12:00:00Z");
        assert_eq!(jan31.plus_months(13).to_string(), "2025-02-28T12:00:00Z");
        assert_eq!(jan31.plus_months(-2).to_string(), "2023-11-30T12:00:00Z");
    }

    #[test]
    fn calendar_periods_hold_the_instant() {
        let anchor = Instant::parse("2026-01-01").unwrap();
        let at = Instant::parse("2026-03-17T08:00:00Z").unwrap();
        let (start, end) = calendar_period(anchor, Span::Months(1), at);
        assert_eq!(start.to_string(), "2026-03-01T00:00:00Z");
        assert_eq!(end.to_string(), "2026-04-01T00:00:00Z");
        let (start, end) = calendar_period(anchor, Span::Months(3), at);
        assert_eq!(start.to_string(), "2026-01-01T00:00:00Z");
        assert_eq!(end.to_string(), "2026-04-01T00:00:00Z");
        // Before the anchor, and weeks.
        let (start, end) = calendar_period(anchor, Span::Seconds(7 * DAY), Instant(anchor.0 - 1));
        assert_eq!(start.to_string(), "2025-12-25T00:00:00Z");
        assert_eq!(end, anchor);
        // Every instant of a year falls in the period that holds it.
        for day in 0..400 {
            let at = anchor.plus_seconds(day * DAY as i64 + 3600);
            let (start, end) = calendar_period(anchor, Span::Months(1), at);
            assert!(start <= at && at < end, "{at} not in [{start}, {end})");
        }
    }
}
