//! Timestamps as log formats write them, turned into UTC milliseconds.
//!
//! These are hand-written fixed-layout readers rather than chrono's generic
//! `strftime` parser: the access-log path runs this once per line, and a
//! generic format interpreter costs more than the rest of the line. chrono is
//! used only to ask the operating system for the local UTC offset, once per
//! hour of local time (see [`Tz`]).

use chrono::{DateTime, Offset, TimeZone};

const MS_PER_DAY: i64 = panorama_model::DAY_MS;

/// Days from 1970-01-01 to the given proleptic Gregorian date.
///
/// Counts in 400-year eras (146,097 days each) so that leap years fall out of
/// integer division instead of a table; valid for any `i64` year a log can name.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    // Shift the year to start in March so that February's leap day is last.
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = if m > 2 { m - 3 } else { m + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A calendar date and wall-clock time with no zone attached yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) milli: u32,
}

impl Civil {
    /// Milliseconds since 1970-01-01T00:00 as if the wall clock were UTC, or
    /// `None` for an impossible date or time. A leap second (`:60`) is
    /// accepted and lands on the next second.
    pub(crate) fn naive_ms(&self) -> Option<i64> {
        if !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
            || self.milli > 999
        {
            return None;
        }
        let secs =
            i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        Some(
            days_from_civil(self.year, self.month, self.day) * MS_PER_DAY
                + secs * 1000
                + i64::from(self.milli),
        )
    }
}

/// The zone of timestamps that carry no offset (RFC 3164 syslog, Redis, the
/// old MySQL slow-log `# Time:` form, offset-less JSON times).
#[derive(Debug, Clone)]
pub(crate) enum Tz {
    /// Wall clock is UTC.
    Utc,
    /// A fixed offset east of UTC, in seconds.
    Fixed(i64),
    /// The host's zone. The offset is asked of the OS once per local hour
    /// and cached: DST changes happen on hour boundaries.
    Local {
        /// Naive hour (ms / 3,600,000) the cached offset is for.
        hour: i64,
        /// Offset east of UTC in seconds for that hour.
        offset_s: i64,
    },
}

impl Tz {
    /// Reads a `timezone` option: `local`, `UTC` (or `Z`), or an offset such
    /// as `+08:00`, `-0530`, `+8`.
    pub(crate) fn parse(s: &str) -> Result<Tz, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("local") {
            return Ok(Tz::Local {
                hour: i64::MIN,
                offset_s: 0,
            });
        }
        if t.eq_ignore_ascii_case("utc")
            || t.eq_ignore_ascii_case("z")
            || t.eq_ignore_ascii_case("gmt")
        {
            return Ok(Tz::Utc);
        }
        match parse_offset(t.as_bytes()) {
            Some((secs, n)) if n == t.len() => Ok(Tz::Fixed(secs)),
            _ => Err(format!(
                "{s:?} is not a time zone: expected `local`, `UTC`, or an offset such as `+08:00`"
            )),
        }
    }

    /// Converts a wall-clock time in this zone to UTC milliseconds.
    pub(crate) fn utc_ms(&mut self, naive_ms: i64) -> i64 {
        match self {
            Tz::Utc => naive_ms,
            Tz::Fixed(off) => naive_ms - *off * 1000,
            Tz::Local { hour, offset_s } => {
                let h = naive_ms.div_euclid(panorama_model::HOUR_MS);
                if *hour != h {
                    *hour = h;
                    *offset_s = local_offset(naive_ms);
                }
                naive_ms - *offset_s * 1000
            }
        }
    }
}

fn local_offset(naive_ms: i64) -> i64 {
    let Some(naive) = DateTime::from_timestamp_millis(naive_ms).map(|t| t.naive_utc()) else {
        return 0;
    };
    // In the hour skipped by a DST change no local time exists; the offset
    // of the same instant read as UTC is a close enough answer.
    let offset = chrono::Local
        .offset_from_local_datetime(&naive)
        .earliest()
        .unwrap_or_else(|| chrono::Local.offset_from_utc_datetime(&naive));
    i64::from(offset.fix().local_minus_utc())
}

/// `n` ASCII digits at the start of `b` as a number.
#[inline]
pub(crate) fn digits(b: &[u8], n: usize) -> Option<u32> {
    let s = b.get(..n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// A month abbreviation (`Jan` … `Dec`, any case) as 1 to 12.
#[inline]
pub(crate) fn month_abbr(b: &[u8]) -> Option<u32> {
    let m = b.get(..3)?;
    let lower = [m[0] | 0x20, m[1] | 0x20, m[2] | 0x20];
    Some(match &lower {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// A UTC offset at the start of `b`: `Z`, `±HH:MM`, `±HHMM` or `±HH`.
/// Returns seconds east of UTC and the bytes consumed.
pub(crate) fn parse_offset(b: &[u8]) -> Option<(i64, usize)> {
    match b.first()? {
        b'Z' | b'z' => Some((0, 1)),
        sign @ (b'+' | b'-') => {
            let neg = *sign == b'-';
            let h = digits(&b[1..], 2).or_else(|| {
                // `+8`: a single hour digit, seen in hand-written configs.
                digits(&b[1..], 1).filter(|_| b.len() == 2)
            })?;
            let hour_len = if b.len() == 2 { 1 } else { 2 };
            let mut n = 1 + hour_len;
            let mut m = 0;
            if b.get(n) == Some(&b':') {
                m = digits(&b[n + 1..], 2)?;
                n += 3;
            } else if let Some(mm) = digits(&b[n..], 2) {
                m = mm;
                n += 2;
            }
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            Some((if neg { -secs } else { secs }, n))
        }
        _ => None,
    }
}

/// A fraction of a second after the `.` or `,`: the first three digits are
/// milliseconds, the rest are read and dropped.
fn fraction(b: &[u8]) -> (u32, usize) {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10
            + b.get(i)
                .filter(|_| i < n)
                .map_or(0, |c| u32::from(c - b'0'));
    }
    (ms, n)
}

/// An ISO 8601 / RFC 3339 time at the start of `b`:
/// `YYYY-MM-DD[T ]HH:MM:SS[.frac][offset]`. Returns the wall-clock time,
/// the offset if one was written, and the bytes consumed.
pub(crate) fn parse_iso(b: &[u8]) -> Option<(Civil, Option<i64>, usize)> {
    let year = digits(b, 4)?;
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let mut c = Civil {
        year: i64::from(year),
        month: digits(&b[5..], 2)?,
        day: digits(&b[8..], 2)?,
        hour: digits(&b[11..], 2)?,
        minute: digits(&b[14..], 2)?,
        second: digits(&b[17..], 2)?,
        milli: 0,
    };
    let mut n = 19;
    if matches!(b.get(n), Some(b'.' | b',')) {
        let (ms, len) = fraction(&b[n + 1..]);
        if len == 0 {
            return None;
        }
        c.milli = ms;
        n += 1 + len;
    }
    let offset = match b.get(n..).and_then(parse_offset) {
        Some((off, len)) => {
            n += len;
            Some(off)
        }
        None => None,
    };
    Some((c, offset, n))
}

/// An ISO time as UTC ms, taking `tz` when no offset is written.
pub(crate) fn iso_to_utc(c: &Civil, offset: Option<i64>, tz: &mut Tz) -> Option<i64> {
    let naive = c.naive_ms()?;
    Some(match offset {
        Some(off) => naive - off * 1000,
        None => tz.utc_ms(naive),
    })
}

/// The access-log time `10/Oct/2000:13:55:36 -0700` (exactly these 26 bytes).
pub(crate) fn parse_clf(b: &[u8]) -> Option<i64> {
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
    {
        return None;
    }
    let c = Civil {
        year: i64::from(digits(&b[7..], 4)?),
        month: month_abbr(&b[3..])?,
        day: digits(b, 2)?,
        hour: digits(&b[12..], 2)?,
        minute: digits(&b[15..], 2)?,
        second: digits(&b[18..], 2)?,
        milli: 0,
    };
    let (off, n) = parse_offset(&b[21..])?;
    if n != 5 {
        return None;
    }
    Some(c.naive_ms()? - off * 1000)
}

/// Day of month as 1 or 2 digits at the start of `b`, possibly after one
/// padding space (`Oct  1`); returns the day and bytes consumed.
fn day_of_month(b: &[u8]) -> Option<(u32, usize)> {
    let pad = usize::from(b.first() == Some(&b' '));
    let b = &b[pad..];
    if let Some(d) = digits(b, 2) {
        return Some((d, pad + 2));
    }
    digits(b, 1).map(|d| (d, pad + 1))
}

/// `HH:MM:SS[.frac]` at the start of `b` (a space-padded hour, ` 3:00:01`,
/// as old MySQL writes it, is accepted); fills the time into `c`.
fn clock(b: &[u8], c: &mut Civil) -> Option<usize> {
    let (hour, mut n) = match (digits(b, 2), b.first()) {
        (Some(h), _) => (h, 2),
        (None, Some(b' ')) => (digits(&b[1..], 1)?, 2),
        _ => (digits(b, 1)?, 1),
    };
    if b.get(n) != Some(&b':') || b.get(n + 3) != Some(&b':') {
        return None;
    }
    c.hour = hour;
    c.minute = digits(&b[n + 1..], 2)?;
    c.second = digits(&b[n + 4..], 2)?;
    n += 6;
    if b.get(n) == Some(&b'.') {
        let (ms, len) = fraction(&b[n + 1..]);
        if len == 0 {
            return None;
        }
        c.milli = ms;
        n += 1 + len;
    }
    Some(n)
}

/// The RFC 3164 time `Oct 11 22:14:15` (no year). Returns the time with
/// year 0, to be completed by [`infer_year`], and the bytes consumed.
pub(crate) fn parse_bsd(b: &[u8]) -> Option<(Civil, usize)> {
    let month = month_abbr(b)?;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let (day, dn) = day_of_month(&b[4..])?;
    let mut n = 4 + dn;
    if b.get(n) != Some(&b' ') {
        return None;
    }
    n += 1;
    let mut c = Civil {
        year: 0,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        milli: 0,
    };
    n += clock(&b[n..], &mut c)?;
    Some((c, n))
}

/// The Redis time `22 Nov 2026 13:00:01.123`, or without the year
/// (`22 Nov 13:00:01.123`, Redis 2.x) in which case `year` is 0.
pub(crate) fn parse_redis(b: &[u8]) -> Option<(Civil, usize)> {
    let (day, mut n) = day_of_month(b)?;
    if b.get(n) != Some(&b' ') {
        return None;
    }
    let month = month_abbr(&b[n + 1..])?;
    n += 4;
    if b.get(n) != Some(&b' ') {
        return None;
    }
    n += 1;
    let mut c = Civil {
        year: 0,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        milli: 0,
    };
    if let (Some(y), Some(b' ')) = (digits(&b[n..], 4), b.get(n + 4)) {
        c.year = i64::from(y);
        n += 5;
    }
    n += clock(&b[n..], &mut c)?;
    Some((c, n))
}

/// The old MySQL slow-log time `261122 13:00:01` or `261122  3:00:01`
/// (two-digit year, meaning 20YY).
pub(crate) fn parse_mysql_old(b: &[u8]) -> Option<(Civil, usize)> {
    let ymd = digits(b, 6)?;
    if b.get(6) != Some(&b' ') {
        return None;
    }
    let mut c = Civil {
        year: 2000 + i64::from(ymd / 10_000),
        month: ymd / 100 % 100,
        day: ymd % 100,
        hour: 0,
        minute: 0,
        second: 0,
        milli: 0,
    };
    let n = 7 + clock(&b[7..], &mut c)?;
    Some((c, n))
}

/// Completes a time written without a year (RFC 3164 syslog, Redis 2.x):
/// the latest year that does not put it more than a day after `now_ms`.
///
/// Logs describe the past, so a December line read in January belongs to
/// the previous year; a day of slack absorbs clock skew and zone mistakes.
/// Feb 29 goes back to the last leap year.
pub(crate) fn infer_year(mut c: Civil, tz: &mut Tz, now_ms: i64) -> Option<i64> {
    let this_year = year_of(now_ms);
    for year in (this_year - 4..=this_year + 1).rev() {
        c.year = year;
        if let Some(naive) = c.naive_ms() {
            let ts = tz.utc_ms(naive);
            if ts <= now_ms + MS_PER_DAY {
                return Some(ts);
            }
        }
    }
    None
}

/// The UTC year holding `ms`.
fn year_of(ms: i64) -> i64 {
    // Inverse of days_from_civil, year only.
    let z = ms.div_euclid(MS_PER_DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

/// Reads a time from a JSON value or a regex capture, guessing the layout:
/// a number is Unix seconds, or milliseconds once it is too large to be
/// seconds (≥ 10^11, i.e. after 5138); a string is RFC 3339 (or with a
/// space for `T`, or no offset: then `tz`), the access-log layout, or a
/// number in a string.
pub(crate) fn parse_auto_num(x: f64) -> Option<i64> {
    if !x.is_finite() {
        return None;
    }
    let ms = if x.abs() >= 1e11 { x } else { x * 1000.0 };
    // ±10^16 ms is ±300,000 years: anything beyond is garbage, not a time.
    (ms.abs() < 1e16).then_some(ms as i64)
}

/// The string half of [`parse_auto_num`].
pub(crate) fn parse_auto_str(s: &str, tz: &mut Tz) -> Option<i64> {
    let t = s.trim();
    let b = t.as_bytes();
    if let Some((c, off, n)) = parse_iso(b) {
        return if n == b.len() {
            iso_to_utc(&c, off, tz)
        } else {
            None
        };
    }
    let inner = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(t);
    if let Some(ms) = parse_clf(inner.as_bytes()) {
        return Some(ms);
    }
    if !t.is_empty() && b.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return t.parse::<f64>().ok().and_then(parse_auto_num);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn civil_days_match_chrono() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (2026, 11, 22),
            (1969, 12, 31),
            (2400, 3, 1),
            (1600, 2, 29),
        ] {
            let expect = chrono::NaiveDate::from_ymd_opt(y as i32, m, d)
                .unwrap()
                .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
                .num_days();
            assert_eq!(days_from_civil(y, m, d), expect, "{y}-{m}-{d}");
        }
        for ms in [
            0,
            utc("2026-11-22T13:00:01Z"),
            utc("2024-02-29T23:59:59Z"),
            -1,
            utc("1900-01-01T00:00:00Z"),
        ] {
            let y = DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y")
                .to_string();
            assert_eq!(year_of(ms).to_string(), y);
        }
    }

    #[test]
    fn access_log_time() {
        assert_eq!(
            parse_clf(b"10/Oct/2000:13:55:36 -0700"),
            Some(utc("2000-10-10T13:55:36-07:00"))
        );
        assert_eq!(
            parse_clf(b"22/Nov/2026:13:00:01 +0800"),
            Some(utc("2026-11-22T05:00:01Z"))
        );
        assert_eq!(parse_clf(b"31/Feb/2026:13:00:01 +0000"), None);
        assert_eq!(parse_clf(b"22/Nov/2026:13:00:01 +08:0"), None);
        assert_eq!(parse_clf(b"22/Nov/2026:13:00:01"), None);
    }

    #[test]
    fn iso_times() {
        let mut tz = Tz::Fixed(3600);
        let (c, off, n) = parse_iso(b"2026-11-22T13:00:01.123456Z rest").unwrap();
        assert_eq!((off, n), (Some(0), 27));
        assert_eq!(
            iso_to_utc(&c, off, &mut tz),
            Some(utc("2026-11-22T13:00:01.123Z"))
        );
        assert_eq!(
            parse_auto_str("2026-11-22 13:00:01,5+08:00", &mut tz),
            Some(utc("2026-11-22T05:00:01.5Z"))
        );
        // No offset: the configured zone.
        assert_eq!(
            parse_auto_str("2026-11-22T13:00:01", &mut tz),
            Some(utc("2026-11-22T12:00:01Z"))
        );
        assert_eq!(parse_auto_str("2026-11-22T13:00:01Zjunk", &mut tz), None);
        assert_eq!(
            parse_auto_str("1795438801", &mut tz),
            Some(1_795_438_801_000)
        );
        assert_eq!(
            parse_auto_str("[22/Nov/2026:13:00:01 +0000]", &mut tz),
            Some(utc("2026-11-22T13:00:01Z"))
        );
        assert_eq!(parse_auto_num(1_795_438_801_123.0), Some(1_795_438_801_123));
        assert_eq!(parse_auto_num(f64::NAN), None);
    }

    #[test]
    fn year_inference_looks_back() {
        let mut tz = Tz::Utc;
        let now = utc("2027-01-01T00:10:00Z");
        let (c, n) = parse_bsd(b"Dec 31 23:59:58 host").unwrap();
        assert_eq!(n, 15);
        assert_eq!(
            infer_year(c, &mut tz, now),
            Some(utc("2026-12-31T23:59:58Z"))
        );
        let (c, _) = parse_bsd(b"Jan  1 00:09:00").unwrap();
        assert_eq!(
            infer_year(c, &mut tz, now),
            Some(utc("2027-01-01T00:09:00Z"))
        );
        // Slightly in the future (clock skew) stays in this year.
        let (c, _) = parse_bsd(b"Jan  1 12:00:00").unwrap();
        assert_eq!(
            infer_year(c, &mut tz, now),
            Some(utc("2027-01-01T12:00:00Z"))
        );
        let (c, _) = parse_bsd(b"Feb 29 12:00:00").unwrap();
        assert_eq!(
            infer_year(c, &mut tz, now),
            Some(utc("2024-02-29T12:00:00Z"))
        );
    }

    #[test]
    fn redis_and_mysql_times() {
        let mut tz = Tz::Utc;
        let (c, n) = parse_redis(b"22 Nov 2026 13:00:01.123 * Ready").unwrap();
        assert_eq!(n, 24);
        assert_eq!(
            iso_to_utc(&c, None, &mut tz),
            Some(utc("2026-11-22T13:00:01.123Z"))
        );
        let (c, n) = parse_redis(b"2 Nov 13:00:01 #").unwrap();
        assert_eq!((c.year, c.day, n), (0, 2, 14));
        let (c, _) = parse_mysql_old(b"261122  3:00:01").unwrap();
        assert_eq!(
            iso_to_utc(&c, None, &mut tz),
            Some(utc("2026-11-22T03:00:01Z"))
        );
        assert!(
            parse_mysql_old(b"261322 13:00:01")
                .and_then(|(c, _)| c.naive_ms())
                .is_none()
        );
    }

    #[test]
    fn zones() {
        assert!(matches!(Tz::parse("UTC"), Ok(Tz::Utc)));
        assert!(matches!(Tz::parse("+08:00"), Ok(Tz::Fixed(28_800))));
        assert!(matches!(Tz::parse("-0530"), Ok(Tz::Fixed(-19_800))));
        assert!(matches!(Tz::parse("+8"), Ok(Tz::Fixed(28_800))));
        assert!(matches!(Tz::parse("local"), Ok(Tz::Local { .. })));
        assert!(Tz::parse("Asia/Shanghai").is_err());
        assert!(Tz::parse("+25:00").is_err());
    }
}
