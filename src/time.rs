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
