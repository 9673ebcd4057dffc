//! Wall-clock time in one place, so tests can move it (`LLMUX_CLOCK_OFFSET_MS` shifts every
//! timestamp llmux records; used to place test traffic in past weeks).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

fn offset_ms() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("LLMUX_CLOCK_OFFSET_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// Milliseconds in a UTC day (days, and so daily limits and rollups, start at midnight UTC).
pub const DAY_MS: i64 = 86_400_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    now_us().div_euclid(1000)
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    real + offset_ms() * 1000
}

pub fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}

/// RFC 3339 / ISO 8601 in UTC with milliseconds (`2026-02-09T12:00:00.000Z`).
pub fn iso8601(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
