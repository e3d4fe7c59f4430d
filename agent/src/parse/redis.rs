//! The Redis server log.
//!
//! ```text
//! 1234:M 22 Nov 2026 13:00:01.123 * Ready to accept connections tcp
//! 1234:C 22 Nov 2026 13:00:02.001 # Background saving error
//! [1234] 22 Nov 13:00:01.123 # Server started, Redis version 2.8.4
//! ```
//!
//! `pid:role` (role `M` master, `S` replica, `C` forked child, `X`
//! sentinel) or, before Redis 3, `[pid]` with no year in the time (then
//! the latest year not more than a day in the future). The level mark is `.` debug, `-` verbose, `*` notice,
//! `#` warning. Redis has no error level: `#` is the highest it writes and
//! is what OOM, failed background saves, `MISCONF` and replication breaks
//! are logged at, so the default mapping counts `#` lines as errors.
//! Start-up warnings are `#` too; they are rare and worth a look anyway.
//!
//! Fields: `pid`, `role` (`master`, `replica`, `child`, `sentinel`),
//! `level` (`debug`, `verbose`, `notice`, `warning`), `message`.

use super::ParseFailure;
use super::map::{Record, Value};
use super::timestamp::{Tz, infer_year, iso_to_utc, parse_redis};

/// Parser state: the zone of the log's local times.
#[derive(Debug)]
pub(crate) struct Redis {
    pub(crate) tz: Tz,
}

/// One Redis log line, borrowed.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    pid: &'a str,
    role: Option<&'static str>,
    level: &'static str,
    message: &'a str,
}

fn fail(at: usize, expected: &'static str) -> ParseFailure {
    ParseFailure::new(at, expected)
}

impl Redis {
    /// Parses one line; `now_ms` completes times without a year.
    pub(crate) fn parse<'a>(
        &mut self,
        line: &'a str,
        now_ms: i64,
    ) -> Result<(Line<'a>, i64), ParseFailure> {
        let b = line.as_bytes();
        let (pid, role, mut p) = if b.first() == Some(&b'[') {
            let close = line
                .find(']')
                .ok_or_else(|| fail(1, "a process id and `]`"))?;
            (&line[1..close], None, close + 1)
        } else {
            let colon = line
                .find(':')
                .ok_or_else(|| fail(0, "`pid:role` or `[pid]`"))?;
            let role = match b.get(colon + 1) {
                Some(b'M') => "master",
                Some(b'S') => "replica",
                Some(b'C') => "child",
                Some(b'X') => "sentinel",
                _ => return Err(fail(colon + 1, "a role: M, S, C or X")),
            };
            (&line[..colon], Some(role), colon + 2)
        };
        if pid.is_empty() || !pid.bytes().all(|c| c.is_ascii_digit()) {
            return Err(fail(usize::from(role.is_none()), "a numeric process id"));
        }
        if b.get(p) != Some(&b' ') {
            return Err(fail(p, "a space, then the time"));
        }
        p += 1;
        let (c, n) = parse_redis(&b[p..])
            .ok_or_else(|| fail(p, "a time like `22 Nov 2026 13:00:01.123`"))?;
        let ts = if c.year == 0 {
            infer_year(c, &mut self.tz, now_ms)
        } else {
            iso_to_utc(&c, None, &mut self.tz)
        }
        .ok_or_else(|| fail(p, "a valid date and time"))?;
        p += n;
        let level = match (b.get(p), b.get(p + 1), b.get(p + 2)) {
            (Some(b' '), Some(mark), Some(b' ') | None) => match mark {
                b'.' => "debug",
                b'-' => "verbose",
                b'*' => "notice",
                b'#' => "warning",
                _ => return Err(fail(p + 1, "a level mark: `.`, `-`, `*` or `#`")),
            },
            _ => return Err(fail(p, "a space, a level mark and a space")),
        };
        let message = line.get(p + 3..).unwrap_or("");
        Ok((
            Line {
                pid,
                role,
                level,
                message,
            },
            ts,
        ))
    }
}

impl Record for Line<'_> {
    fn get(&self, key: &str) -> Option<Value<'_>> {
        Some(Value::Str(match key {
            "level" => self.level,
            "role" => self.role?,
            "pid" => self.pid,
            "message" | "msg" => self.message,
            _ => return None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn parse(line: &str) -> Result<(Line<'_>, i64), ParseFailure> {
        Redis { tz: Tz::Utc }.parse(line, utc("2026-11-23T00:00:00Z"))
    }

    #[test]
    fn modern_and_old_lines() {
        let (l, ts) =
            parse("1234:M 22 Nov 2026 13:00:01.123 * Ready to accept connections tcp").unwrap();
        assert_eq!(ts, utc("2026-11-22T13:00:01.123Z"));
        assert_eq!(
            (l.pid, l.role, l.level, l.message),
            (
                "1234",
                Some("master"),
                "notice",
                "Ready to accept connections tcp"
            )
        );
        let (l, _) = parse("77:C 22 Nov 2026 13:00:02.001 # Write error saving DB on disk: No space left on device").unwrap();
        assert_eq!((l.role, l.level), (Some("child"), "warning"));
        let (l, ts) = parse("[1234] 22 Nov 13:00:01.123 # Server started").unwrap();
        assert_eq!(
            (ts, l.role, l.level),
            (utc("2026-11-22T13:00:01.123Z"), None, "warning")
        );
        let (l, _) = parse("1:S 22 Nov 2026 13:00:01.123 -").unwrap();
        assert_eq!((l.level, l.message), ("verbose", ""));
    }

    #[test]
    fn failures() {
        assert_eq!(parse("hello world").unwrap_err().at, 0);
        assert_eq!(
            parse("12:Q 22 Nov 2026 13:00:01.123 * x").unwrap_err().at,
            3
        );
        assert_eq!(parse("x:M 22 Nov 2026 13:00:01.123 * x").unwrap_err().at, 0);
        assert_eq!(
            parse("12:M 22 Nox 2026 13:00:01.123 * x").unwrap_err().at,
            5
        );
        assert_eq!(
            parse("12:M 22 Nov 2026 13:00:01.123 ! x").unwrap_err().at,
            30
        );
        assert_eq!(parse("[12 22 Nov").unwrap_err().at, 1);
        // The ASCII-art logo Redis prints without a prefix is not a log line.
        assert!(
            parse("                _._                                                  ").is_err()
        );
    }
}
