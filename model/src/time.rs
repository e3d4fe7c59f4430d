/// Milliseconds in a minute; rollups are keyed by the UTC minute of event time.
pub const MINUTE_MS: i64 = 60_000;

/// Milliseconds in an hour: the hourly tier's bucket.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;

/// Milliseconds in a UTC day: daily indices, retention in days.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The start of the UTC minute holding `ts_ms` (Unix milliseconds), also for
/// timestamps before 1970, which a misconfigured source can produce.
pub fn minute_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_to_the_minute() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 60_000);
        assert_eq!(minute_of(-1), -60_000);
    }
}
