//! RFC 3339 timestamps as Consul writes them (`2026-12-06T02:28:18Z`), through the `time` crate.

use std::time::SystemTime;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch as RFC 3339 (the epoch itself for a value `time` cannot represent).
pub fn rfc3339_unix(secs: u64) -> String {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(&Rfc3339).unwrap_or_default()
}

/// A point in time as RFC 3339, to the second.
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_unix(secs)
}

/// A point in time as Go's `time.Time.String()` prints it in UTC (`2017-08-08 02:55:10 +0000 UTC`), the form of
/// the `Timestamp` in Consul's metrics.
pub fn go_utc(at: SystemTime) -> String {
    let t = utc_ms(at);
    let (h, m, sec) = t.to_hms();
    format!("{} {h:02}:{m:02}:{sec:02} +0000 UTC", date(t))
}

/// A point in time as RFC 3339 to the millisecond (`2026-12-07T01:02:03.456Z`), as log lines carry it.
pub fn rfc3339_millis(at: SystemTime) -> String {
    let t = utc_ms(at);
    let (h, m, sec, ms) = t.to_hms_milli();
    format!("{}T{h:02}:{m:02}:{sec:02}.{ms:03}Z", date(t))
}

/// `at` in UTC, to the millisecond (the epoch for a time before it or beyond `time`'s range).
fn utc_ms(at: SystemTime) -> OffsetDateTime {
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    i128::try_from(ms)
        .ok()
        .and_then(|ms| ms.checked_mul(1_000_000))
        .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// Unix milliseconds as RFC 3339 with fractional seconds where there are any (`2026-12-06T02:28:18.25Z`).
pub fn rfc3339_unix_ms(ms: u64) -> String {
    let at = i128::from(ms)
        .checked_mul(1_000_000)
        .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(&Rfc3339).unwrap_or_default()
}

/// An RFC 3339 time as unix milliseconds; `None` for text that is not one, or a time before the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Serde for unix milliseconds written as RFC 3339.
pub mod rfc3339_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339_unix_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_rfc3339_ms(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid time {text:?}: expected RFC 3339"))
        })
    }
}

/// Serde for an optional unix-millisecond time written as RFC 3339 (absent or null for none).
pub mod rfc3339_ms_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&super::rfc3339_unix_ms(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) if text.is_empty() => Ok(None),
            Some(text) => super::parse_rfc3339_ms(&text).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("invalid time {text:?}: expected RFC 3339"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_consul() {
        assert_eq!(rfc3339_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_unix(1_796_524_098), "2026-12-06T02:28:18Z");
        assert_eq!(rfc3339_unix(u64::MAX), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn milliseconds_round_trip() {
        assert_eq!(
            rfc3339_unix_ms(1_796_524_098_250),
            "2026-12-06T02:28:18.25Z"
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-06T02:28:18.25Z"),
            Some(1_796_524_098_250)
        );
        assert_eq!(
            parse_rfc3339_ms("2019-06-17T15:34:38.211963-05:00"),
            Some(1_560_803_678_211)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), None);
    }
}
