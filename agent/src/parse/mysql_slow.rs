//! The MySQL slow query log: multi-line records, one event each.
//!
//! ```text
//! # Time: 2026-11-22T13:00:01.123456Z
//! # User@Host: app[app] @ web1 [10.0.0.5]  Id:    12
//! # Query_time: 2.000123  Lock_time: 0.000050 Rows_sent: 1  Rows_examined: 500000
//! use shop;
//! SET timestamp=1795438801;
//! SELECT * FROM orders WHERE note LIKE '%x%';
//! ```
//!
//! A record starts at `# Time:` or, since MySQL writes `# Time:` only when
//! the second changed (before 5.7), at a `# User@Host:` that follows a
//! complete header or a query. It is emitted when the next one starts or on
//! [`super::Pipeline::flush`], since nothing marks its end. The time is the
//! record's own `# Time:` (both the 5.7+ RFC 3339 form and the old
//! `261122 13:00:01` local form), else its `SET timestamp=`.
//!
//! The server's start-up banner (`/usr/sbin/mysqld, Version: …`,
//! `Tcp port: …`, `Time  Id Command  Argument`) is skipped.
//!
//! Fields: `query_time`, `lock_time` (seconds), `rows_sent`,
//! `rows_examined`, `user`, `client` (host name, else address), `db`,
//! `statement` (the query's first keyword, lowercase, from a fixed list so
//! that it stays low-cardinality; `other` otherwise), and Percona's extra
//! `# Key: value` pairs by their lowercase key.

use std::collections::BTreeMap;

use super::ParseFailure;
use super::map::{Record, Value};
use super::timestamp::{Tz, iso_to_utc, parse_iso, parse_mysql_old};

/// Statement keywords a series may be named by; anything else is `other`.
const STATEMENTS: [&str; 20] = [
    "select", "insert", "update", "delete", "replace", "call", "create", "alter", "drop",
    "truncate", "show", "set", "begin", "commit", "rollback", "load", "with", "grant", "optimize",
    "analyze",
];

/// How many `# Key: value` pairs of a record are kept, against a runaway header.
const MAX_EXTRA: usize = 32;

/// One slow-log record, owned: it outlives the lines it came from.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Slow {
    time: Option<i64>,
    set_timestamp: Option<i64>,
    user: Option<String>,
    client: Option<String>,
    db: Option<String>,
    statement: Option<&'static str>,
    query_time: Option<f64>,
    lock_time: Option<f64>,
    rows_sent: Option<f64>,
    rows_examined: Option<f64>,
    extra: BTreeMap<String, String>,
    has_user_host: bool,
    has_query: bool,
    /// The last line was a line of the query ending with `;`, as mysqld
    /// ends every record: the record is most likely whole.
    ends_statement: bool,
    /// Lines in the record so far.
    pub(crate) lines: u64,
    /// The first line, for the parse-error sample if the record fails.
    pub(crate) head: String,
}

impl Slow {
    /// The record's time, UTC ms.
    pub(crate) fn ts_ms(&self) -> Option<i64> {
        self.time.or(self.set_timestamp)
    }
}

/// The record still open after some lines: where it starts, and whether
/// its last line ends the query the way mysqld ends every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenRecord {
    /// Index of its first line.
    pub start: usize,
    /// Its last line is a line of the query ending with `;`. mysqld writes
    /// a record in one write, so a record read at the end of the file is
    /// nearly always whole; one that does not look whole was caught while
    /// its write was being copied into the file.
    pub looks_whole: bool,
}

/// Parser state: the record being read and the one just completed.
#[derive(Debug)]
pub(crate) struct MysqlSlow {
    pub(crate) tz: Tz,
    cur: Option<Slow>,
    done: Option<Slow>,
    /// Records started so far.
    opened: u64,
}

fn fail(at: usize, expected: &'static str) -> ParseFailure {
    ParseFailure::new(at, expected)
}

impl MysqlSlow {
    pub(crate) fn new(tz: Tz) -> MysqlSlow {
        MysqlSlow {
            tz,
            cur: None,
            done: None,
            opened: 0,
        }
    }

    /// Lines of the record still open; they produce their event later.
    pub(crate) fn pending_lines(&self) -> u64 {
        self.cur.as_ref().map_or(0, |c| c.lines)
    }

    /// The record completed by the last [`MysqlSlow::push`] or
    /// [`MysqlSlow::finish`], if any.
    pub(crate) fn take_done(&mut self) -> Option<Slow> {
        self.done.take()
    }

    /// Ends the open record (end of input, or a lull in it).
    pub(crate) fn finish(&mut self) {
        if let Some(cur) = self.cur.take() {
            self.done = Some(cur);
        }
    }

    fn start(&mut self, line: &str) -> &mut Slow {
        self.finish();
        self.opened += 1;
        self.cur.insert(Slow {
            head: line.to_owned(),
            ..Slow::default()
        })
    }

    /// Takes one line: `Ok(false)` when it was skipped (the start-up
    /// banner). An error is about this line; its record carries on.
    pub(crate) fn push(&mut self, line: &str) -> Result<bool, ParseFailure> {
        if let Some(rest) = line.strip_prefix("# Time:") {
            let at = line.len() - rest.len();
            let time = self.time(rest, at);
            let rec = self.start(line);
            rec.lines = 1;
            rec.time = Some(time?);
            return Ok(true);
        }
        if let Some(rest) = line.strip_prefix("# User@Host:") {
            let rec = match &mut self.cur {
                Some(c) if !c.has_user_host && !c.has_query => c,
                _ => self.start(line),
            };
            rec.lines += 1;
            rec.has_user_host = true;
            let (user, client) = user_host(rest);
            rec.user = user.map(str::to_owned);
            rec.client = client.map(str::to_owned);
            return Ok(true);
        }
        if is_banner(line) {
            self.finish();
            return Ok(false);
        }
        let Some(rec) = self.cur.as_mut() else {
            return Err(fail(
                0,
                "`# Time:` or `# User@Host:` starting a slow-log record",
            ));
        };
        rec.lines += 1;
        rec.ends_statement = false;
        if let Some(rest) = line.strip_prefix("# ") {
            if rec.has_query {
                // `# administrator command: Quit;` and the like: the query.
                rec.ends_statement = line.trim_end().ends_with(';');
                return Ok(true);
            }
            header_pairs(rec, rest, line.len() - rest.len())?;
            return Ok(true);
        }
        let t = line.trim();
        let in_header = !rec.has_query;
        if let Some(db) = t
            .strip_prefix("use ")
            .and_then(|d| d.strip_suffix(';'))
            .filter(|_| in_header)
        {
            rec.db = Some(db.trim().trim_matches('`').to_owned());
            return Ok(true);
        }
        if let Some(ts) = t
            .strip_prefix("SET timestamp=")
            .and_then(|d| d.strip_suffix(';'))
            .filter(|_| in_header)
        {
            let at = line.find('=').map_or(0, |i| i + 1);
            let secs: i64 = ts
                .parse()
                .map_err(|_| fail(at, "Unix seconds after `SET timestamp=`"))?;
            rec.set_timestamp = secs.checked_mul(1000);
            return Ok(true);
        }
        if !rec.has_query {
            rec.has_query = true;
            let word = t
                .split(|c: char| !c.is_ascii_alphabetic())
                .next()
                .unwrap_or("");
            rec.statement = Some(
                STATEMENTS
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case(word))
                    .copied()
                    .unwrap_or("other"),
            );
        }
        rec.ends_statement = t.ends_with(';');
        Ok(true)
    }

    fn time(&mut self, rest: &str, at: usize) -> Result<i64, ParseFailure> {
        let skipped = rest.len() - rest.trim_start().len();
        let t = rest.trim();
        let at = at + skipped;
        let b = t.as_bytes();
        if let Some((c, off, _)) = parse_iso(b).filter(|(_, _, n)| *n == b.len()) {
            return iso_to_utc(&c, off, &mut self.tz)
                .ok_or_else(|| fail(at, "a valid date and time"));
        }
        match parse_mysql_old(b) {
            Some((c, n)) if n == b.len() => {
                iso_to_utc(&c, None, &mut self.tz).ok_or_else(|| fail(at, "a valid date and time"))
            }
            _ => Err(fail(
                at,
                "a time like 2026-11-22T13:00:01.123456Z or 261122 13:00:01",
            )),
        }
    }
}

/// See [`super::Pipeline::open_record`]: the lines are read by a parser
/// of their own, which only looks at where records start and end (their
/// times are not checked, hence any zone).
pub(crate) fn open_record<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Option<OpenRecord> {
    let mut p = MysqlSlow::new(Tz::Utc);
    let mut start = None;
    for (i, line) in lines.enumerate() {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        // Blank lines are skipped before the parser, as in the pipeline.
        if text.bytes().all(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let opened = p.opened;
        let _ = p.push(text);
        if p.opened != opened {
            start = Some(i);
        }
    }
    let cur = p.cur.as_ref()?;
    Some(OpenRecord {
        start: start?,
        looks_whole: cur.ends_statement,
    })
}

fn is_banner(line: &str) -> bool {
    (line.contains(", Version: ") && line.contains("started with"))
        || line.starts_with("Tcp port:")
        || (line.starts_with("Time ") && line.contains("Id Command"))
}

/// `app[app] @ web1 [10.0.0.5]  Id: 12` → user and client.
fn user_host(rest: &str) -> (Option<&str>, Option<&str>) {
    let rest = rest.trim();
    let user = rest
        .split('[')
        .next()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let Some((_, host)) = rest.split_once(" @ ") else {
        return (user, None);
    };
    let host = host.trim_start();
    let name = host.split([' ', '[']).next().unwrap_or("");
    let client = if name.is_empty() {
        host.split_once('[')
            .and_then(|(_, ip)| ip.split(']').next())
            .filter(|ip| !ip.is_empty())
    } else {
        Some(name)
    };
    (user, client)
}

/// `Query_time: 2.0  Lock_time: 0.0 Rows_sent: 1` and other `Key: value` pairs.
fn header_pairs(rec: &mut Slow, rest: &str, offset: usize) -> Result<(), ParseFailure> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty()).peekable();
    while let Some(w) = words.next() {
        let Some(key) = w.strip_suffix(':') else {
            continue;
        };
        let Some(val) = words.next_if(|v| !v.ends_with(':')) else {
            continue;
        };
        let at = offset + (val.as_ptr() as usize - rest.as_ptr() as usize);
        let num = || {
            val.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        match key {
            "Query_time" => {
                rec.query_time = Some(num().ok_or_else(|| fail(at, "seconds after `Query_time:`"))?)
            }
            "Lock_time" => {
                rec.lock_time = Some(num().ok_or_else(|| fail(at, "seconds after `Lock_time:`"))?)
            }
            "Rows_sent" => rec.rows_sent = num(),
            "Rows_examined" => rec.rows_examined = num(),
            "Schema" => rec.db = Some(val.to_owned()),
            _ if rec.extra.len() < MAX_EXTRA => {
                rec.extra.insert(key.to_ascii_lowercase(), val.to_owned());
            }
            _ => {}
        }
    }
    Ok(())
}

impl Record for Slow {
    fn get(&self, key: &str) -> Option<Value<'_>> {
        Some(match key {
            "query_time" => Value::Num(self.query_time?),
            "lock_time" => Value::Num(self.lock_time?),
            "rows_sent" => Value::Num(self.rows_sent?),
            "rows_examined" => Value::Num(self.rows_examined?),
            "user" => Value::Str(self.user.as_deref()?),
            "client" | "client_host" => Value::Str(self.client.as_deref()?),
            "db" | "schema" => Value::Str(self.db.as_deref()?),
            "statement" => Value::Str(self.statement?),
            other => Value::Str(self.extra.get(other)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut MysqlSlow, text: &str) -> Vec<Slow> {
        let mut done = Vec::new();
        for line in text.lines() {
            let _ = p.push(line);
            done.extend(p.take_done());
        }
        done
    }

    #[test]
    fn records_split_on_time_and_user_host() {
        let mut p = MysqlSlow::new(Tz::Utc);
        let done = feed(
            &mut p,
            "/usr/sbin/mysqld, Version: 8.0.36 (MySQL Community Server - GPL). started with:\n\
             Tcp port: 3306  Unix socket: /var/run/mysqld/mysqld.sock\n\
             Time                 Id Command    Argument\n\
             # Time: 2026-11-22T13:00:01.123456Z\n\
             # User@Host: app[app] @ web1 [10.0.0.5]  Id:    12\n\
             # Query_time: 2.500000  Lock_time: 0.000050 Rows_sent: 1  Rows_examined: 500000\n\
             use shop;\n\
             SET timestamp=1795438801;\n\
             SELECT *\n  FROM orders;\n\
             # User@Host: report[report] @  [10.0.0.9]  Id:    13\n\
             # Query_time: 1.0  Lock_time: 0.0 Rows_sent: 0  Rows_examined: 0\n\
             SET timestamp=1795438802;\n\
             update t set a=1;\n",
        );
        assert_eq!(done.len(), 1);
        let a = &done[0];
        assert_eq!(a.ts_ms(), Some(1_795_352_401_123));
        assert_eq!(
            (a.get("user"), a.get("client"), a.get("db")),
            (
                Some(Value::Str("app")),
                Some(Value::Str("web1")),
                Some(Value::Str("shop"))
            )
        );
        assert_eq!(
            (a.get("query_time"), a.get("rows_examined")),
            (Some(Value::Num(2.5)), Some(Value::Num(500_000.0)))
        );
        assert_eq!(a.get("statement"), Some(Value::Str("select")));
        assert_eq!(a.lines, 7);
        assert_eq!(p.pending_lines(), 4);
        p.finish();
        let b = p.take_done().unwrap();
        assert_eq!(b.ts_ms(), Some(1_795_438_802_000));
        assert_eq!(
            (b.get("client"), b.get("statement"), b.get("db")),
            (
                Some(Value::Str("10.0.0.9")),
                Some(Value::Str("update")),
                None
            )
        );
    }

    #[test]
    fn old_time_form_and_bad_lines() {
        let mut p = MysqlSlow::new(Tz::Fixed(3600));
        assert_eq!(p.push("SELECT 1;").unwrap_err().at, 0);
        p.push("# Time: 261122  3:00:01").unwrap();
        p.push("# Query_time: 1.5  Lock_time: x")
            .map(|_| ())
            .unwrap_err();
        assert_eq!(p.push("# Time: yesterday").unwrap_err().at, 8);
        let a = p.take_done().unwrap();
        assert_eq!(a.ts_ms(), Some(1_795_312_801_000));
        assert_eq!(a.get("query_time"), Some(Value::Num(1.5)));
        assert_eq!(p.pending_lines(), 1);
    }
}
