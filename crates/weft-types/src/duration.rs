//! Go-style durations (`"10s"`, `"1m30s"`, `"500ms"`), the unit every Consul body and query string uses.
//!
//! Bodies may also carry a bare number of nanoseconds (Go's `time.Duration` JSON form), so the serde helpers accept
//! both, and print Go's canonical form (`1h30m0s`) because clients compare these strings.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time: invalid duration \"{0}\"")]
pub struct DurationError(pub String);

/// Parses a Go duration string: a sequence of decimal numbers with units ns, us, µs, ms, s, m, h, optionally signed.
/// Negative durations are clamped to zero (Consul treats them as "unset").
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    let mut s = text.trim();
    let negative = s.starts_with('-');
    if let Some(rest) = s.strip_prefix(['-', '+']) {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number: f64 = s[start..i].parse().map_err(|_| err())?;
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let nanos_per_unit = match &s[unit_start..i] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        total += number * nanos_per_unit;
    }
    // Go refuses what overflows its 64-bit nanoseconds; so do we (a `?wait` of 400 digits is not "no wait").
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(err());
    }
    if negative {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats like Go's `time.Duration.String()`: `0s`, `500ms`, `10s`, `1m30s`, `1h30m0s`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return trim_fraction(nanos as f64 / 1e3, "µs");
    }
    if nanos < 1_000_000_000 {
        return trim_fraction(nanos as f64 / 1e6, "ms");
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let seconds = (nanos % 60_000_000_000) as f64 / 1e9;
    let secs = trim_fraction(seconds, "s");
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}")
    } else if minutes > 0 {
        format!("{minutes}m{secs}")
    } else {
        secs
    }
}

fn trim_fraction(value: f64, unit: &str) -> String {
    let text = format!("{value:.9}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    Text(String),
    Number(f64),
}

/// serde helper for `Option<Duration>` fields: Go strings or nanosecond numbers in, Go strings out.
pub mod opt_go {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<StringOrNumber>::deserialize(d)? {
            None => Ok(None),
            Some(StringOrNumber::Text(t)) if t.is_empty() => Ok(None),
            Some(StringOrNumber::Text(t)) => parse_duration(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(StringOrNumber::Number(n)) if n <= 0.0 => Ok(None),
            Some(StringOrNumber::Number(n)) => Ok(Some(Duration::from_nanos(n as u64))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("300000ms").unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("-5s").unwrap(), Duration::ZERO);
        for bad in ["", "10", "s", "10x", "1..2s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,20}") { let _ = parse_duration(&s); }

        #[test]
        fn round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
