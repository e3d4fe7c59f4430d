//! The nginx/Apache combined access log, read by a hand-written byte scanner.
//!
//! ```text
//! 10.0.0.7 - alice [22/Nov/2026:13:00:01 +0000] "GET /user/42?x=1 HTTP/1.1" 200 512 "-" "curl/8.5" 0.012 0.010
//! ```
//!
//! The fixed part is `addr ident user [time] "request" status bytes`,
//! optionally followed by `"referer" "user-agent"` (the common log format
//! stops after `bytes`). Whatever follows is scanned for timings, in the
//! layouts people actually configure:
//!
//! - positional: the first unquoted number (or `-`) is the request time,
//!   the next value the upstream time, which may list several upstreams
//!   (`0.010, 0.020` or `0.010 : 0.020`, summed); quoted text before them
//!   (`"$http_x_forwarded_for"`) is skipped;
//! - `key=value` or `key="value"`: `rt`/`request_time` and
//!   `urt`/`upstream_response_time`/`upstream_time`; any other key can be
//!   named in the mapping (as a dim, say) and is looked up on demand.
//!
//! Times are seconds as nginx writes them; for Apache's `%D` (microseconds)
//! set `latency_unit = "us"`.
//!
//! No regex: this is the hot path (see the crate's throughput target), and
//! the scanner touches each byte about once. Consecutive lines share their
//! second, so the last time string and its value are cached.

use super::ParseFailure;
use super::map::{Record, Value};
use super::timestamp::parse_clf;

/// The method and target given to a request line that is not one
/// (`"-"`, TLS bytes sent to a plain port): such lines still count, in one
/// series per source.
pub(crate) const INVALID_METHOD: &str = "-";
/// See [`INVALID_METHOD`].
pub(crate) const INVALID_TARGET: &str = "(invalid request)";

/// Parser state: the last timestamp seen.
#[derive(Debug, Default)]
pub(crate) struct Combined {
    cache: Option<([u8; TIME_LEN], i64)>,
}

/// Bytes of a well-formed time, `22/Nov/2026:13:00:01 +0000`.
const TIME_LEN: usize = 26;

/// One access-log line, borrowed.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    remote_addr: &'a str,
    remote_user: &'a str,
    request: &'a str,
    method: &'a str,
    target: &'a str,
    protocol: &'a str,
    status: &'a str,
    bytes: &'a str,
    referer: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_time: Option<&'a str>,
    upstream_time: Option<&'a str>,
    rest: &'a str,
    /// Whether `rest` may hold `key=value` tokens.
    keys: bool,
}

fn fail(at: usize, expected: &'static str) -> ParseFailure {
    ParseFailure::new(at, expected)
}

/// The end of the token starting at `p`: the next space, or the end.
///
/// A plain loop rather than `memchr`: the tokens read this way (address,
/// ident, user, byte count) are a few bytes long, shorter than what a
/// vectorised search needs to pay for its call and set-up.
#[inline]
fn token_end(b: &[u8], p: usize) -> usize {
    b[p..]
        .iter()
        .position(|&c| c == b' ')
        .map_or(b.len(), |i| p + i)
}

/// The index of the `"` closing a quoted string whose opening quote is at
/// `p - 1`, honouring backslash escapes (Apache writes `\"`).
#[inline]
fn closing_quote(b: &[u8], mut p: usize) -> Option<usize> {
    // Empty and one-character values (`""`, the referer `"-"`) are common
    // and end before `memchr2` would pay off.
    match b.get(p..p + 2) {
        Some(&[b'"', _]) => return Some(p),
        Some(&[c, b'"']) if c != b'\\' => return Some(p + 1),
        _ => {}
    }
    while p < b.len() {
        let i = p + memchr::memchr2(b'"', b'\\', &b[p..])?;
        if b[i] == b'"' {
            return Some(i);
        }
        p = i + 2;
    }
    None
}

impl Combined {
    /// Parses one line (no newline) into its fields and its time in UTC ms.
    // Inlined: the line's fields are a few hundred bytes, which the caller
    // otherwise receives through a `memcpy` call on every line.
    #[inline(always)]
    pub(crate) fn parse<'a>(&mut self, line: &'a str) -> Result<(Line<'a>, i64), ParseFailure> {
        let b = line.as_bytes();
        let mut p = 0;
        let word = |p: &mut usize, what: &'static str| -> Result<&'a str, ParseFailure> {
            let end = token_end(b, *p);
            if end == *p || end == b.len() {
                return Err(fail(*p, what));
            }
            let w = &line[*p..end];
            *p = end + 1;
            Ok(w)
        };
        let remote_addr = word(&mut p, "the client address, then a space")?;
        let _ident = word(&mut p, "the ident field (usually `-`), then a space")?;
        let remote_user = word(&mut p, "the user field (usually `-`), then a space")?;

        if b.get(p) != Some(&b'[') {
            return Err(fail(p, "`[` opening the time"));
        }
        // A well-formed time is 26 bytes, none of them `]`: look there first.
        let fixed = match (b.get(p + 1..p + 1 + TIME_LEN), b.get(p + 1 + TIME_LEN)) {
            (Some(t), Some(b']')) => self.time_fixed(t.try_into().expect("TIME_LEN bytes")),
            _ => None,
        };
        let (ts, close) = match fixed {
            Some(ts) => (ts, p + 1 + TIME_LEN),
            None => {
                let close = memchr::memchr(b']', &b[p..])
                    .map(|i| p + i)
                    .ok_or_else(|| fail(p, "`]` closing the time"))?;
                let ts = self
                    .time(&b[p + 1..close])
                    .ok_or_else(|| fail(p + 1, "a time like 10/Oct/2000:13:55:36 -0700"))?;
                (ts, close)
            }
        };
        p = close + 1;

        if b.get(p) != Some(&b' ') || b.get(p + 1) != Some(&b'"') {
            return Err(fail(p, "a space and `\"` opening the request"));
        }
        let q = closing_quote(b, p + 2).ok_or_else(|| fail(p + 1, "`\"` closing the request"))?;
        let request = &line[p + 2..q];
        p = q + 1;

        if b.get(p) != Some(&b' ') {
            return Err(fail(p, "a space, then the status"));
        }
        p += 1;
        // Three digits and a space, nearly always; the general reading below
        // only says what is wrong.
        let end = match b.get(p..p + 4) {
            Some(&[x, y, z, b' ']) if [x, y, z].iter().all(u8::is_ascii_digit) => p + 3,
            _ => {
                let end = token_end(b, p);
                if end - p != 3 || !b[p..end].iter().all(u8::is_ascii_digit) {
                    return Err(fail(p, "a 3-digit status"));
                }
                if end == b.len() {
                    return Err(fail(end, "a space, then the byte count"));
                }
                end
            }
        };
        let status = &line[p..end];
        p = end + 1;
        let end = token_end(b, p);
        let bytes = &line[p..end];
        if bytes != "-" && (bytes.is_empty() || !bytes.bytes().all(|c| c.is_ascii_digit())) {
            return Err(fail(p, "a byte count or `-`"));
        }
        p = end;

        let mut quoted = [None, None];
        for slot in &mut quoted {
            if b.get(p) == Some(&b' ') && b.get(p + 1) == Some(&b'"') {
                let q = closing_quote(b, p + 2)
                    .ok_or_else(|| fail(p + 1, "`\"` closing the quoted field"))?;
                *slot = Some(&line[p + 2..q]);
                p = q + 1;
            }
        }
        let [referer, user_agent] = quoted;
        let rest = line[p..].trim_start();
        let (request_time, upstream_time, keys) = match usual_timings(rest) {
            Some((rt, ut)) => (rt, ut, false),
            None => {
                let (rt, ut) = timings_scan(rest);
                (rt, ut, true)
            }
        };

        let (method, target, protocol) = split_request(request);
        Ok((
            Line {
                remote_addr,
                remote_user,
                request,
                method,
                target,
                protocol,
                status,
                bytes,
                referer,
                user_agent,
                request_time,
                upstream_time,
                rest,
                keys,
            },
            ts,
        ))
    }

    /// The time of a well-formed length; compared with the cached one as
    /// an array, which takes a few loads instead of a `memcmp` call.
    #[inline]
    fn time_fixed(&mut self, t: &[u8; TIME_LEN]) -> Option<i64> {
        match &self.cache {
            Some((k, ms)) if k == t => Some(*ms),
            _ => {
                let ms = parse_clf(t)?;
                self.cache = Some((*t, ms));
                Some(ms)
            }
        }
    }

    fn time(&mut self, t: &[u8]) -> Option<i64> {
        match t.try_into() {
            Ok(t) => self.time_fixed(t),
            Err(_) => parse_clf(t),
        }
    }
}

/// `METHOD target [protocol]`, or the invalid placeholders.
// Inlined, like `usual_timings` and `Line::get`: a result of several words
// returned through memory is read back with wider loads than it was
// written with, which defeats store forwarding and stalls every line
// (a few percent of the access-log benchmark each).
#[inline(always)]
fn split_request(request: &str) -> (&str, &str, &str) {
    // By bytes rather than `splitn(3, ' ')`, whose char searcher costs a
    // `memcmp` call per match on this hot path.
    let (method, rest) = split_space(request);
    // The target is the long part: worth a vectorised search.
    let (target, protocol) = match memchr::memchr(b' ', rest.as_bytes()) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let method_ok = !method.is_empty()
        && method.len() <= 24
        && method
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c == b'-' || c == b'_');
    if method_ok && !target.is_empty() {
        (method, target, protocol)
    } else {
        (INVALID_METHOD, INVALID_TARGET, "")
    }
}

/// `s` up to its first space, and what follows that space (empty if none).
#[inline]
fn split_space(s: &str) -> (&str, &str) {
    match s.bytes().position(|c| c == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// One token of the trailing fields.
struct Token<'a> {
    key: Option<&'a str>,
    val: &'a str,
    quoted: bool,
    start: usize,
    end: usize,
}

/// Splits the trailing fields into tokens: `word`, `"quoted words"`,
/// `key=word` and `key="quoted words"`.
fn tokens(rest: &str) -> impl Iterator<Item = Token<'_>> {
    let b = rest.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let start = i;
        if b[i] == b'"' {
            let q = closing_quote(b, i + 1).unwrap_or(b.len());
            i = (q + 1).min(b.len());
            return Some(Token {
                key: None,
                val: &rest[start + 1..q],
                quoted: true,
                start,
                end: i,
            });
        }
        let end = token_end(b, i);
        let eq = b[i..end].iter().position(|&c| c == b'=').map(|e| i + e);
        let tok = match eq {
            Some(eq) if b.get(eq + 1) == Some(&b'"') => {
                let q = closing_quote(b, eq + 2).unwrap_or(b.len());
                i = (q + 1).min(b.len());
                Token {
                    key: Some(&rest[start..eq]),
                    val: &rest[eq + 2..q],
                    quoted: true,
                    start,
                    end: i,
                }
            }
            Some(eq) => {
                i = end;
                Token {
                    key: Some(&rest[start..eq]),
                    val: &rest[eq + 1..end],
                    quoted: false,
                    start,
                    end,
                }
            }
            None => {
                i = end;
                Token {
                    key: None,
                    val: &rest[start..end],
                    quoted: false,
                    start,
                    end,
                }
            }
        };
        Some(tok)
    })
}

fn is_time(s: &str) -> bool {
    s == "-" || (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
}

fn is_time_list(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b',' | b':' | b'-' | b' '))
}

/// Request time and upstream time among the trailing fields.
#[cfg(test)]
fn timings(rest: &str) -> (Option<&str>, Option<&str>) {
    usual_timings(rest).unwrap_or_else(|| timings_scan(rest))
}

/// [`timings`] of the usual layouts, nothing, `0.070` or `0.070 0.056`,
/// without the tokenizer; `None` for any other. These have no `key=value`
/// tokens, which spares looking for them.
// Inlined: see `split_request`.
#[inline(always)]
fn usual_timings(rest: &str) -> Option<(Option<&str>, Option<&str>)> {
    let b = rest.as_bytes();
    let Some(&c0) = b.first() else {
        return Some((None, None));
    };
    // The first token must be a time ([`is_time`]): digits and dots, or
    // `-`, then a space or the end. One loop finds its end and checks it.
    let digits = b
        .iter()
        .position(|&c| !(c.is_ascii_digit() || c == b'.'))
        .unwrap_or(b.len());
    let sp = match digits {
        0 if c0 == b'-' => 1,
        0 => return None,
        n => n,
    };
    let second = match b.get(sp) {
        None => return Some((Some(rest), None)),
        Some(b' ') => &rest[sp + 1..],
        Some(_) => return None,
    };
    let first = &rest[..sp];
    if second.is_empty() {
        return Some((Some(first), None));
    }
    // One upstream time or list without spaces, quotes or keys.
    second
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b',' | b':' | b'-'))
        .then_some((Some(first), Some(second)))
}

/// [`timings`] for any layout.
fn timings_scan(rest: &str) -> (Option<&str>, Option<&str>) {
    let (mut rt, mut ut) = (None, None);
    let mut list_start: Option<usize> = None;
    let mut list_end = 0;
    for t in tokens(rest) {
        if let Some(start) = list_start {
            // Continue an unquoted upstream list: `0.01, 0.02` or `0.01 : 0.02`.
            let prev = &rest[start..list_end];
            if !t.quoted
                && t.key.is_none()
                && is_time_list(t.val)
                && (prev.ends_with(',') || prev.ends_with(':') || t.val.starts_with(':'))
            {
                list_end = t.end;
                continue;
            }
            ut = Some(&rest[start..list_end]);
            list_start = None;
        }
        match t.key {
            Some("rt" | "request_time") => rt = Some(t.val),
            Some("urt" | "upstream_response_time" | "upstream_time") => ut = Some(t.val),
            Some(_) => {}
            None if rt.is_none() && !t.quoted && is_time(t.val) => rt = Some(t.val),
            None if rt.is_some() && ut.is_none() && is_time_list(t.val) => {
                if t.quoted {
                    ut = Some(t.val);
                } else {
                    list_start = Some(t.start);
                    list_end = t.end;
                }
            }
            None => {}
        }
    }
    if let Some(start) = list_start {
        ut = Some(&rest[start..list_end]);
    }
    (rt, ut)
}

/// The sum of a list of upstream times; `None` if none is a number.
fn sum_times(list: &str) -> Option<f64> {
    let mut sum = None;
    for part in list.split([',', ':', ' ']) {
        if let Some(v) = part.parse::<f64>().ok().filter(|v| v.is_finite()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

impl Record for Line<'_> {
    // Inlined into the mapping, which asks for several fields per line:
    // see `split_request`. (The `key=value` search stays out of line.)
    #[inline(always)]
    fn get(&self, key: &str) -> Option<Value<'_>> {
        let s = match key {
            "method" => self.method,
            "path" | "target" | "uri" => self.target,
            "status" => self.status,
            "request_time" => self.request_time?,
            "upstream_time" | "upstream_response_time" => {
                return sum_times(self.upstream_time?).map(Value::Num);
            }
            "remote_addr" | "client" => self.remote_addr,
            "remote_user" => self.remote_user,
            "request" => self.request,
            "protocol" => self.protocol,
            "bytes" | "body_bytes_sent" => self.bytes,
            "referer" => self.referer?,
            "user_agent" => self.user_agent?,
            // `{route}` asks for `route` on every line.
            other => self.keyed(other)?,
        };
        Some(Value::Str(s))
    }
}

impl Line<'_> {
    /// The value of a `key=value` token.
    #[inline]
    fn keyed(&self, key: &str) -> Option<&str> {
        // Only `key=value` tokens have keys: most lines have none.
        if self.keys {
            self.find_keyed(key)
        } else {
            None
        }
    }

    // Out of line: the tokenizer would make every field lookup set up its
    // stack frame.
    #[inline(never)]
    fn find_keyed(&self, key: &str) -> Option<&str> {
        memchr::memchr(b'=', self.rest.as_bytes())?;
        tokens(self.rest)
            .find(|t| t.key == Some(key))
            .map(|t| t.val)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<(Line<'_>, i64), ParseFailure> {
        Combined::default().parse(line)
    }

    const T: i64 = 1_795_352_401_000; // 2026-11-22T13:00:01Z

    #[test]
    fn nginx_with_timings() {
        let (l, ts) = parse(r#"10.0.0.7 - alice [22/Nov/2026:13:00:01 +0000] "GET /user/42?x=1 HTTP/1.1" 502 512 "-" "curl/8.5" 0.012 0.010, 0.020"#).unwrap();
        assert_eq!(ts, T);
        assert_eq!(
            (l.method, l.target, l.protocol, l.status),
            ("GET", "/user/42?x=1", "HTTP/1.1", "502")
        );
        assert_eq!(l.get("remote_user"), Some(Value::Str("alice")));
        assert_eq!(l.get("request_time"), Some(Value::Str("0.012")));
        assert_eq!(l.get("upstream_time"), Some(Value::Num(0.03)));
        assert_eq!(l.get("user_agent"), Some(Value::Str("curl/8.5")));
    }

    #[test]
    fn key_value_timings_and_forwarded_for() {
        let (l, _) = parse(r#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "POST /pay HTTP/2.0" 200 0 "https://x/" "Mozilla/5.0 (X11)" "-" rt=0.250 uct="0.001" urt="0.249 : 0.001" cache=HIT"#).unwrap();
        assert_eq!(l.request_time, Some("0.250"));
        assert_eq!(l.get("upstream_time"), Some(Value::Num(0.25)));
        assert_eq!(l.get("cache"), Some(Value::Str("HIT")));
        assert_eq!(l.get("uct"), Some(Value::Str("0.001")));
        assert_eq!(l.get("nope"), None);
        let (l, _) = parse(r#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "ua" "10.1.1.1, 10.2.2.2" 0.004 -"#).unwrap();
        assert_eq!(
            (l.request_time, l.upstream_time),
            (Some("0.004"), Some("-"))
        );
        assert_eq!(l.get("upstream_time"), None);
    }

    #[test]
    fn apache_common_and_escapes() {
        let (l, ts) =
            parse(r#"::1 - - [22/Nov/2026:14:00:01 +0100] "GET /a\"b HTTP/1.0" 404 -"#).unwrap();
        assert_eq!(ts, T);
        assert_eq!((l.target, l.bytes, l.referer), (r#"/a\"b"#, "-", None));
        let (l, _) =
            parse(r#"::1 - - [22/Nov/2026:14:00:01 +0100] "GET / HTTP/1.0" 200 1 "-" "ua" 1234"#)
                .unwrap();
        assert_eq!(l.request_time, Some("1234"));
    }

    #[test]
    fn invalid_requests_still_count() {
        let (l, _) =
            parse(r#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "\x16\x03\x01" 400 150 "-" "-""#)
                .unwrap();
        assert_eq!((l.method, l.target), (INVALID_METHOD, INVALID_TARGET));
        let (l, _) =
            parse(r#"1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] "-" 408 0 "-" "-""#).unwrap();
        assert_eq!(l.method, INVALID_METHOD);
    }

    #[test]
    fn failures_say_where() {
        let cases = [
            ("", 0),
            ("1.2.3.4", 0),
            ("1.2.3.4 - - 22/Nov", 12),
            ("1.2.3.4 - - [22/Nov/2026:13:00:01 +0000", 12),
            (
                "1.2.3.4 - - [22/Nov/2026:13:61:01 +0000] \"GET / HTTP/1.1\" 200 1",
                13,
            ),
            (
                "1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] \"GET / HTTP/1.1 200 1",
                41,
            ),
            (
                "1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] \"GET / HTTP/1.1\" 20 1",
                58,
            ),
            (
                "1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] \"GET / HTTP/1.1\" 200",
                61,
            ),
            (
                "1.2.3.4 - - [22/Nov/2026:13:00:01 +0000] \"GET / HTTP/1.1\" 200 x",
                62,
            ),
        ];
        for (line, at) in cases {
            let err = parse(line).unwrap_err();
            assert_eq!(err.at, at, "{line}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn timings_fast_path_agrees(rest in "[0-9.a-]{1,5}( {1,2}[0-9.,:a-]{0,6})?( [0-9.,: \"=a-]{0,8})?") {
            let rest = rest.trim_start();
            if !rest.is_empty() {
                proptest::prop_assert_eq!(timings(rest), timings_scan(rest));
            }
        }
    }

    #[test]
    fn time_cache_follows_changes() {
        let mut p = Combined::default();
        let a = r#"a - - [22/Nov/2026:13:00:01 +0000] "GET / HTTP/1.1" 200 1"#;
        let b = r#"a - - [22/Nov/2026:13:00:02 +0000] "GET / HTTP/1.1" 200 1"#;
        assert_eq!(p.parse(a).unwrap().1, T);
        assert_eq!(p.parse(a).unwrap().1, T);
        assert_eq!(p.parse(b).unwrap().1, T + 1000);
    }
}
