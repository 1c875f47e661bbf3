//! The one place for time conversions.

use std::time::{SystemTime, UNIX_EPOCH};

use pgrx::prelude::*;

/// PostgreSQL's timestamps count from 2000-01-01.
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Microseconds since the Unix epoch, now.
pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch as a timestamptz.
pub fn timestamptz_from_unix_us(us: i64) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(us - PG_EPOCH_OFFSET_US).ok()
}

/// Microseconds since the Unix epoch as an ISO-8601 JSON string (null if
/// out of range).
pub fn iso_json(us: i64) -> serde_json::Value {
    timestamptz_from_unix_us(us)
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// A PostgreSQL `TimestampTz` (microseconds since 2000-01-01) as Unix
/// microseconds.
pub fn unix_us_from_pg(ts: i64) -> i64 {
    ts + PG_EPOCH_OFFSET_US
}

/// Microseconds since the Unix epoch as RFC 3339 in UTC with microseconds
/// (`2026-01-31T12:00:00.000000Z`), independent of any session's time zone
/// (certificates are signed in the postmaster and read everywhere).
pub fn iso_utc(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian), by
    // 400-year eras counted from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_utc_known_instants() {
        use super::iso_utc;
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso_utc(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(iso_utc(951_868_799_999_999), "2000-02-29T23:59:59.999999Z");
        assert_eq!(
            iso_utc(1_709_251_200_000_000),
            "2024-03-01T00:00:00.000000Z"
        );
        assert_eq!(
            iso_utc(4_102_444_800_000_000),
            "2100-01-01T00:00:00.000000Z"
        );
        assert_eq!(iso_utc(-1), "1969-12-31T23:59:59.999999Z");
    }
}
