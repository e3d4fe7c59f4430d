//! Numbers, times and URLs as the pages write them.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Percent-encodes a query value (everything but unreserved characters)
/// with the encoder alert links are built with.
pub(crate) use panorama_model::url::percent_encode as encode;

/// A query string from pairs, skipping empty values.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `2026-11-22 13:05` in the zone.
pub(crate) fn minute(tz: Tz, ms: i64) -> String {
    at(tz, ms, "%Y-%m-%d %H:%M")
}

/// `13:05:07.123` in the zone, for samples.
pub(crate) fn clock_ms(tz: Tz, ms: i64) -> String {
    at(tz, ms, "%H:%M:%S%.3f")
}

/// `11-22 13:05`, short enough for chart hover.
pub(crate) fn short(tz: Tz, ms: i64) -> String {
    at(tz, ms, "%m-%d %H:%M")
}

/// The value of an `<input type="datetime-local">` for a time.
pub(crate) fn input(tz: Tz, ms: i64) -> String {
    at(tz, ms, "%Y-%m-%dT%H:%M")
}

fn at(tz: Tz, ms: i64, fmt: &str) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&tz).format(fmt).to_string())
        .unwrap_or_else(|| "?".into())
}

/// The start of the zone's current day, Unix ms.
pub(crate) fn start_of_day(tz: Tz, now_ms: i64) -> i64 {
    let Some(now) = DateTime::<Utc>::from_timestamp_millis(now_ms) else {
        return now_ms;
    };
    let local = now.with_timezone(&tz).date_naive();
    local
        .and_hms_opt(0, 0, 0)
        .and_then(|m| tz.from_local_datetime(&m).earliest())
        .map_or(now_ms - now_ms.rem_euclid(panorama_model::DAY_MS), |t| {
            t.timestamp_millis()
        })
}

/// A time from a URL: Unix ms, RFC 3339, or `YYYY-MM-DDTHH:MM` in the zone
/// (what `datetime-local` inputs send).
pub(crate) fn parse_time(tz: Tz, s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return tz
                .from_local_datetime(&n)
                .earliest()
                .map(|t| t.timestamp_millis());
        }
    }
    None
}

/// A count with thousands separators: `1,234,567`.
pub(crate) fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio as a percentage with sensible precision.
pub(crate) fn pct(r: f64) -> String {
    let p = r * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p >= 10.0 || p == 100.0 {
        format!("{p:.1}%")
    } else if p >= 0.01 {
        format!("{p:.2}%")
    } else {
        "<0.01%".into()
    }
}

/// A number of milliseconds or any measurement, 3 significant-ish digits.
pub(crate) fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// An optional number, `–` when absent.
pub(crate) fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), num)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(pct(0.5), "50.0%");
        assert_eq!(pct(0.0123), "1.23%");
        assert_eq!(encode("GET /a b&c"), "GET%20%2Fa%20b%26c");
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        // 2026-11-22T00:00:00Z is 08:00 in Shanghai.
        let t = 1_795_305_600_000;
        assert_eq!(minute(tz, t), "2026-11-22 08:00");
        assert_eq!(parse_time(tz, "2026-11-22T08:00"), Some(t));
        assert_eq!(parse_time(tz, "2026-11-22T00:00:00Z"), Some(t));
        assert_eq!(parse_time(tz, &t.to_string()), Some(t));
        assert_eq!(start_of_day(tz, t + 3_600_000), t - 8 * 3_600_000);
    }
}
