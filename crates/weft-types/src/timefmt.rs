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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_consul() {
        assert_eq!(rfc3339_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_unix(1_796_524_098), "2026-12-06T02:28:18Z");
        assert_eq!(rfc3339_unix(u64::MAX), "1970-01-01T00:00:00Z");
    }
}
