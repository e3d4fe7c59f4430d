//! Syslog, RFC 5424 and RFC 3164 (the BSD format most files are in).
//!
//! ```text
//! <165>1 2026-11-22T13:00:01.003Z web1 nginx 1234 ID47 [meta sequenceId="1"] worker exited
//! <34>Nov 22 13:00:01 web1 su[123]: 'su root' failed for alice on /dev/pts/8
//! Nov 22 13:00:01 web1 kernel: Out of memory: Killed process 4242 (java)
//! 2026-11-22T13:00:01.123456+08:00 web1 sshd[77]: Accepted publickey for bob
//! ```
//!
//! The `<PRI>` is optional in the BSD forms, since files written by a local
//! syslog daemon usually drop it; without it the severity is unknown and
//! the line counts as ok. The hostname may be missing too (messages sent to
//! `/dev/log`): a first word that ends in `:` or holds `[` is taken as the
//! tag. RFC 3164 times have no year: they get the latest year that does
//! not put them more than a day in the future.
//!
//! Fields: `severity` (`emerg` … `debug`), `facility` (`kern` … `local7`),
//! `hostname`, `program` (RFC 5424 APP-NAME, BSD tag), `pid`, `msgid`,
//! `message`, and any RFC 5424 structured-data parameter by its name.

use super::ParseFailure;
use super::map::{Record, Value};
use super::timestamp::{Tz, infer_year, iso_to_utc, parse_bsd, parse_iso};

/// Severity names by number, as syslog daemons spell them.
pub(crate) const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Parser state: the zone of times that carry no offset.
#[derive(Debug)]
pub(crate) struct Syslog {
    pub(crate) tz: Tz,
}

/// One syslog line, borrowed.
#[derive(Debug, Default)]
pub(crate) struct Line<'a> {
    facility: Option<u8>,
    severity: Option<u8>,
    hostname: Option<&'a str>,
    program: Option<&'a str>,
    pid: Option<&'a str>,
    msgid: Option<&'a str>,
    structured: &'a str,
    message: &'a str,
}

fn fail(at: usize, expected: &'static str) -> ParseFailure {
    ParseFailure::new(at, expected)
}

fn nil(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

impl Syslog {
    /// Parses one line; `now_ms` completes RFC 3164 times, which have no year.
    pub(crate) fn parse<'a>(
        &mut self,
        line: &'a str,
        now_ms: i64,
    ) -> Result<(Line<'a>, i64), ParseFailure> {
        let b = line.as_bytes();
        let mut l = Line::default();
        let mut p = 0;
        if b.first() == Some(&b'<') {
            let gt = b
                .iter()
                .take(5)
                .position(|&c| c == b'>')
                .ok_or_else(|| fail(1, "a priority of 1 to 3 digits and `>`"))?;
            let pri: u16 = line[1..gt]
                .parse()
                .map_err(|_| fail(1, "a priority of 1 to 3 digits and `>`"))?;
            if pri > 191 {
                return Err(fail(1, "a priority of at most 191"));
            }
            l.facility = Some((pri / 8) as u8);
            l.severity = Some((pri % 8) as u8);
            p = gt + 1;
            if matches!(b.get(p), Some(b'1'..=b'9')) && b.get(p + 1) == Some(&b' ') {
                return self.rfc5424(line, p + 2, l);
            }
        }
        self.rfc3164(line, p, now_ms, l)
    }

    fn rfc5424<'a>(
        &mut self,
        line: &'a str,
        mut p: usize,
        mut l: Line<'a>,
    ) -> Result<(Line<'a>, i64), ParseFailure> {
        let b = line.as_bytes();
        if b.get(p) == Some(&b'-') {
            return Err(fail(
                p,
                "a timestamp (an event without one cannot be counted in a minute)",
            ));
        }
        let (c, off, n) = parse_iso(&b[p..]).ok_or_else(|| fail(p, "an RFC 3339 timestamp"))?;
        let ts =
            iso_to_utc(&c, off, &mut self.tz).ok_or_else(|| fail(p, "a valid date and time"))?;
        p += n;
        let mut header = [""; 4];
        for (slot, what) in header.iter_mut().zip([
            "a space, then the hostname",
            "a space, then the app name",
            "a space, then the process id",
            "a space, then the message id",
        ]) {
            if b.get(p) != Some(&b' ') {
                return Err(fail(p, what));
            }
            p += 1;
            let end = b[p..]
                .iter()
                .position(|&c| c == b' ')
                .map_or(b.len(), |i| p + i);
            if end == p {
                return Err(fail(p, what));
            }
            *slot = &line[p..end];
            p = end;
        }
        let [hostname, program, pid, msgid] = header;
        l.hostname = nil(hostname);
        l.program = nil(program);
        l.pid = nil(pid);
        l.msgid = nil(msgid);
        if b.get(p) != Some(&b' ') {
            return Err(fail(p, "a space, then structured data"));
        }
        p += 1;
        let sd_start = p;
        match b.get(p) {
            Some(b'-') => p += 1,
            Some(b'[') => {
                while b.get(p) == Some(&b'[') {
                    p = element_end(b, p + 1)
                        .ok_or_else(|| fail(p, "`]` closing the structured data element"))?;
                }
                l.structured = &line[sd_start..p];
            }
            _ => return Err(fail(p, "structured data: `-` or `[`")),
        }
        match b.get(p) {
            None => {}
            Some(b' ') => l.message = line[p + 1..].trim_start_matches('\u{feff}'),
            Some(_) => return Err(fail(p, "a space, then the message")),
        }
        Ok((l, ts))
    }

    fn rfc3164<'a>(
        &mut self,
        line: &'a str,
        mut p: usize,
        now_ms: i64,
        mut l: Line<'a>,
    ) -> Result<(Line<'a>, i64), ParseFailure> {
        let b = line.as_bytes();
        let rest = &b[p..];
        let ts = if let Some((c, n)) = parse_bsd(rest) {
            p += n;
            infer_year(c, &mut self.tz, now_ms)
                .ok_or_else(|| fail(p - n, "a valid date and time"))?
        } else if let Some((c, off, n)) = parse_iso(rest) {
            p += n;
            iso_to_utc(&c, off, &mut self.tz).ok_or_else(|| fail(p - n, "a valid date and time"))?
        } else {
            return Err(fail(
                p,
                "a timestamp like `Nov 22 13:00:01` or `2026-11-22T13:00:01Z`",
            ));
        };
        if b.get(p) != Some(&b' ') {
            return Err(fail(p, "a space after the timestamp"));
        }
        p += 1;
        let word_end = |from: usize| {
            b[from..]
                .iter()
                .position(|&c| c == b' ')
                .map_or(b.len(), |i| from + i)
        };
        let end = word_end(p);
        let first = &line[p..end];
        if !(first.ends_with(':') || first.contains('[')) && end < b.len() {
            l.hostname = Some(first);
            p = end + 1;
        }
        // TAG[PID]: message
        let tail = &line[p..];
        let tag_end = tail.find([':', '[', ' ']).unwrap_or(tail.len());
        let tag = &tail[..tag_end];
        let mut q = tag_end;
        let mut pid = None;
        if let Some(close) = tail[q..].strip_prefix('[').and_then(|t| t.find(']')) {
            pid = Some(&tail[q + 1..q + 1 + close]);
            q += close + 2;
        }
        if !tag.is_empty() && tail[q..].starts_with(':') {
            l.program = Some(tag);
            l.pid = pid;
            l.message = tail[q + 1..].trim_start();
        } else {
            l.message = tail;
        }
        Ok((l, ts))
    }
}

/// The index after the `]` closing a structured-data element that opened
/// just before `p`, skipping quoted values with their `\"`, `\\`, `\]` escapes.
fn element_end(b: &[u8], mut p: usize) -> Option<usize> {
    let mut in_quotes = false;
    while p < b.len() {
        match b[p] {
            b'\\' if in_quotes => p += 1,
            b'"' => in_quotes = !in_quotes,
            b']' if !in_quotes => return Some(p + 1),
            _ => {}
        }
        p += 1;
    }
    None
}

/// The value of `name="..."` in RFC 5424 structured data, escapes kept.
fn sd_param<'a>(sd: &'a str, name: &str) -> Option<&'a str> {
    let b = sd.as_bytes();
    let mut from = 0;
    while let Some(i) = sd[from..].find(name) {
        let at = from + i;
        let after = at + name.len();
        from = after;
        if at > 0 && b[at - 1] == b' ' && sd[after..].starts_with("=\"") {
            let start = after + 2;
            let mut p = start;
            while p < b.len() {
                match b[p] {
                    b'\\' => p += 2,
                    b'"' => return Some(&sd[start..p]),
                    _ => p += 1,
                }
            }
            return None;
        }
    }
    None
}

impl Record for Line<'_> {
    fn get(&self, key: &str) -> Option<Value<'_>> {
        let s = match key {
            "severity" | "level" => SEVERITIES[usize::from(self.severity?)],
            "facility" => FACILITIES[usize::from(self.facility?)],
            "program" | "app_name" | "tag" => self.program?,
            "hostname" => self.hostname?,
            "pid" | "procid" => self.pid?,
            "msgid" => self.msgid?,
            "message" | "msg" => self.message,
            other if !self.structured.is_empty() => sd_param(self.structured, other)?,
            _ => return None,
        };
        Some(Value::Str(s))
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
        Syslog { tz: Tz::Utc }.parse(line, utc("2026-11-23T00:00:00Z"))
    }

    fn s<'a>(l: &'a Line<'_>, k: &str) -> Option<&'a str> {
        match l.get(k) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn rfc5424() {
        let (l, ts) = parse(r#"<165>1 2026-11-22T13:00:01.003Z web1 evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App\]x" eventID="1011"][x@1 a="b"] BOMAn event"#).unwrap();
        assert_eq!(ts, utc("2026-11-22T13:00:01.003Z"));
        assert_eq!(
            (s(&l, "facility"), s(&l, "severity")),
            (Some("local4"), Some("notice"))
        );
        assert_eq!(
            (
                s(&l, "hostname"),
                s(&l, "program"),
                s(&l, "pid"),
                s(&l, "msgid")
            ),
            (Some("web1"), Some("evntslog"), None, Some("ID47"))
        );
        assert_eq!(s(&l, "eventID"), Some("1011"));
        assert_eq!(s(&l, "eventSource"), Some(r"App\]x"));
        assert_eq!(s(&l, "a"), Some("b"));
        assert_eq!(s(&l, "message"), Some("BOMAn event"));
        let (l, _) = parse("<11>1 2026-11-22T21:00:01+08:00 h app 1 - -").unwrap();
        assert_eq!(
            (s(&l, "severity"), s(&l, "message")),
            (Some("err"), Some(""))
        );
        assert_eq!(parse("<11>1 - h app 1 - -").unwrap_err().at, 6);
        assert_eq!(
            parse("<11>1 2026-11-22T21:00:01Z h app 1 - x")
                .unwrap_err()
                .at,
            37
        );
    }

    #[test]
    fn rfc3164() {
        let (l, ts) = parse("<34>Nov 22 13:00:01 web1 su[123]: 'su root' failed").unwrap();
        assert_eq!(ts, utc("2026-11-22T13:00:01Z"));
        assert_eq!(
            (s(&l, "severity"), s(&l, "facility")),
            (Some("crit"), Some("auth"))
        );
        assert_eq!(
            (s(&l, "hostname"), s(&l, "program"), s(&l, "pid")),
            (Some("web1"), Some("su"), Some("123"))
        );
        assert_eq!(s(&l, "message"), Some("'su root' failed"));

        let (l, _) = parse("Nov  2 13:00:01 web1 kernel: Out of memory").unwrap();
        assert_eq!(
            (s(&l, "severity"), s(&l, "program")),
            (None, Some("kernel"))
        );
        let (l, _) = parse("<13>Nov 22 13:00:01 cron[9]: ran").unwrap();
        assert_eq!((s(&l, "hostname"), s(&l, "program")), (None, Some("cron")));
        let (l, _) = parse("Nov 22 13:00:01 web1 last message repeated 3 times").unwrap();
        assert_eq!(
            (s(&l, "program"), s(&l, "message")),
            (None, Some("last message repeated 3 times"))
        );
        let (l, ts) = parse("2026-11-22T21:00:01.5+08:00 web1 sshd[77]: Accepted").unwrap();
        assert_eq!(
            (ts, s(&l, "program")),
            (utc("2026-11-22T13:00:01.5Z"), Some("sshd"))
        );
        // December, read on 23 November: last year.
        let (_, ts) = parse("Dec 24 10:00:00 h x: y").unwrap();
        assert_eq!(ts, utc("2025-12-24T10:00:00Z"));
    }

    #[test]
    fn failures() {
        assert_eq!(parse("hello").unwrap_err().at, 0);
        assert_eq!(parse("<999>Nov 22 13:00:01 h x: y").unwrap_err().at, 1);
        assert_eq!(parse("<1x>Nov").unwrap_err().at, 1);
        assert_eq!(parse("<").unwrap_err().at, 1);
        assert_eq!(parse("Nov 22 13:00:01").unwrap_err().at, 15);
    }
}
