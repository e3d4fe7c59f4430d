//! Route normalization: `/user/123/orders?page=2` → `/user/:num/orders`.
//!
//! A url-layer series is a route of the service's API, not a request URL;
//! ids in paths would otherwise make one series per user, and hashed asset
//! names one series per build. User patterns (`routes`) run first, in
//! order, on the path; then the built-in rules below, which look at one
//! path segment at a time so that `/v2/items` keeps its `v2`.
//!
//! # Built-in rules
//!
//! Whole segments, first match wins ([`SEGMENT_RULES`]):
//!
//! | rule | example | becomes |
//! |---|---|---|
//! | digits | `/user/123` | `/user/:num` |
//! | date run `YYYY/MM/DD` (three segments) | `/2026/11/22/` | `/:date/` |
//! | date `YYYY-MM-DD` | `/2026-11-22` | `/:date` |
//! | UUID | `/o/3f2504e0-4f89-11d3-9a0c-0305e82c3301` | `/o/:uuid` |
//! | hex, ≥ 8 digits, one a number | `/obj/5f1d7a9c0b3e` | `/obj/:hex` |
//!
//! Inside any other segment that holds a digit: each part between `.` is
//! a hash if it is all hex (the first rule below), else an id if it looks
//! random (the last), else its pieces between `-`, `_`, `~` and `+` are
//! checked ([`PIECE_RULES`]):
//!
//! | rule | example | becomes |
//! |---|---|---|
//! | piece: hex, ≥ 6 digits, one a number | `app.3f2a9c1b.js`, `chunk-5f8e2c.css` | `app.:hash.js`, `chunk-:hash.css` |
//! | piece: digits, 4 or 5 (longer ones are hashes) | `avatar-12345.png` | `avatar-:num.png` |
//! | part: base64url id, ≥ 16 chars, ≥ 2 numbers, mixed case (or ≥ ¼ numbers without `-`, `_`) | `/s/aZ3k9_Qm-8xYt2LpR` | `/s/:id` |
//!
//! Short numbers inside a segment (`v2`, `jquery-3.6.0.min.js`) and words
//! without digits (`beef`, `deadbeef`) are kept: they are versions and
//! names more often than ids. Every placeholder starts with `:`, which no
//! rule matches again, so normalization is idempotent (a normalized route
//! normalizes to itself) as long as user patterns are too.

use std::borrow::Cow;

use regex::Regex;

use super::{RouteRule, SpecError};

/// Placeholder for a segment of decimal digits.
pub const NUM: &str = ":num";
/// Placeholder for a UUID segment.
pub const UUID: &str = ":uuid";
/// Placeholder for a hex id segment (≥ 8 hex digits, at least one a digit).
pub const HEX: &str = ":hex";
/// Placeholder for a hash-like piece inside a segment (`app.:hash.js`).
pub const HASH: &str = ":hash";
/// Placeholder for a long base64url or random id.
pub const ID: &str = ":id";
/// Placeholder for a date in a path (`/2026/11/22`, `/2026-11-22`).
pub const DATE: &str = ":date";

/// Shortest segment taken for a hex id: shorter hex-looking words (`beef`,
/// `cafe`, `add`) are more often words than ids.
const MIN_HEX_LEN: usize = 8;
/// Shortest hex piece inside a segment taken for a hash: build tools write
/// 6 to 20 hex digits (`chunk-5f8e2c.css`), and the neighbouring pieces
/// already say it is a file name, so shorter than a whole-segment id.
const MIN_HASH_LEN: usize = 6;
/// Shortest digit piece inside a segment taken for a number (`avatar-12345`);
/// shorter ones are versions (`v2`, `3.6.0`).
const MIN_PIECE_NUM_LEN: usize = 4;
/// Shortest base64url token taken for a random id.
const MIN_ID_LEN: usize = 16;

/// A built-in rule: its name (for the docs and tests), whether it matches
/// a segment or piece, and its placeholder.
pub struct Rule {
    /// What it recognizes.
    pub name: &'static str,
    /// Does it match these bytes?
    pub matches: fn(&[u8]) -> bool,
    /// What replaces them.
    pub placeholder: &'static str,
}

/// Whole-segment rules, in order; the first that matches replaces the
/// segment. (Digit-only segments are found by the one-pass scan before
/// these, and `YYYY/MM/DD` runs span segments, so neither is listed; a
/// base64url id is checked per part, after [`PIECE_RULES`].)
pub const SEGMENT_RULES: &[Rule] = &[
    Rule {
        name: "date YYYY-MM-DD",
        matches: is_dash_date,
        placeholder: DATE,
    },
    Rule {
        name: "UUID",
        matches: is_uuid,
        placeholder: UUID,
    },
    Rule {
        name: "hex id",
        matches: is_hex_id,
        placeholder: HEX,
    },
];

/// Rules for the pieces inside a segment (between `.`, `-`, `_`, `~`, `+`).
pub const PIECE_RULES: &[Rule] = &[
    Rule {
        name: "hash",
        matches: is_hash_piece,
        placeholder: HASH,
    },
    Rule {
        name: "number",
        matches: is_num_piece,
        placeholder: NUM,
    },
];

/// User patterns first, then the built-in segment rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Normalizer {
    user: Vec<(Regex, String)>,
}

impl Normalizer {
    /// Compiles the user patterns of the `routes` option.
    pub(crate) fn new(rules: &[RouteRule]) -> Result<Normalizer, SpecError> {
        let user = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Regex::new(&r.pattern)
                    .map(|re| (re, r.replace.clone()))
                    .map_err(|e| {
                        SpecError::new(
                            "routes",
                            format!("pattern {} ({:?}): {e}", i + 1, r.pattern),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Normalizer { user })
    }

    /// Appends the normalized route of a request target to `out`.
    ///
    /// The query string and fragment are dropped, an absolute-form target
    /// (`http://host/path`, as proxies see) keeps only its path, and an
    /// empty path becomes `/`. Without user patterns this allocates nothing
    /// beyond growing `out`.
    pub(crate) fn normalize_into(&self, target: &str, out: &mut String) {
        if self.user.is_empty() && target.starts_with('/') {
            // The usual case, origin-form without user patterns: one pass
            // finds the end of the path and its segments together.
            builtin_into(target, true, out);
            return;
        }
        let path = path_of(target);
        let mut path = Cow::Borrowed(path);
        for (re, replace) in &self.user {
            if let Cow::Owned(s) = re.replace_all(&path, replace.as_str()) {
                path = Cow::Owned(s);
            }
        }
        builtin_into(&path, false, out);
    }

    /// The normalized route as a new string.
    #[cfg(test)]
    pub(crate) fn normalize(&self, target: &str) -> String {
        let mut s = String::new();
        self.normalize_into(target, &mut s);
        s
    }
}

/// The path part of a request target.
fn path_of(target: &str) -> &str {
    let end = target
        .bytes()
        .position(|c| c == b'?' || c == b'#')
        .unwrap_or(target.len());
    let mut path = &target[..end];
    // Origin-form (`/…`), the usual case, cannot hold a scheme.
    let scheme_end = if path.starts_with('/') {
        None
    } else {
        path.find("://")
    };
    if let Some(i) = scheme_end {
        let scheme = &path[..i];
        if !scheme.is_empty()
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            let rest = &path[i + 3..];
            path = rest.find('/').map_or("", |j| &rest[j..]);
        }
    }
    if path.is_empty() { "/" } else { path }
}

/// Byte classes for [`builtin_into`]'s one pass.
const SLASH: u8 = 1;
const QUERY: u8 = 2;
const DIGIT: u8 = 4;
const HEX_DIGIT: u8 = 8;
/// Separates pieces inside a segment.
const DELIM: u8 = 16;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'/' => SLASH,
            b'?' | b'#' => QUERY,
            b'0'..=b'9' => DIGIT | HEX_DIGIT,
            b'a'..=b'f' | b'A'..=b'F' => HEX_DIGIT,
            b'.' | b'-' | b'_' | b'~' | b'+' => DELIM,
            _ => 0,
        };
        c += 1;
    }
    t
};

/// The built-in rules, appended to `out`.
///
/// One pass over the bytes finds the segments and classifies them (all
/// digits, all hex, any digit) as it goes, and unchanged stretches of the
/// path are copied in one piece: this runs for every access-log line, and
/// separate split, classify and per-segment `push_str` passes showed in
/// profiles. Segments without a digit, most of them, cost no more than
/// the scan: every rule needs one.
///
/// With `query`, `path` may still hold a query string or fragment, and the
/// path is taken to end at the first `?` or `#`.
fn builtin_into(path: &str, query: bool, out: &mut String) {
    let b = path.as_bytes();
    let stop = if query { SLASH | QUERY } else { SLASH };
    // `path[..copied]` is already in `out`.
    let mut copied = 0;
    let mut start = 0;
    let end_of_path = loop {
        let (mut all, mut any) = (DIGIT | HEX_DIGIT, 0);
        let mut end = start;
        while let Some(&c) = b.get(end) {
            let class = CLASS[usize::from(c)];
            if class & stop != 0 {
                break;
            }
            all &= class;
            any |= class;
            end += 1;
        }
        if end > start && any & DIGIT != 0 {
            let seg = &b[start..end];
            let whole = if all & DIGIT != 0 {
                match date_run(b, start, end, stop) {
                    Some(run_end) => {
                        end = run_end;
                        Some(DATE)
                    }
                    None => Some(NUM),
                }
            } else {
                SEGMENT_RULES
                    .iter()
                    .find(|r| (r.matches)(seg))
                    .map(|r| r.placeholder)
            };
            if let Some(p) = whole {
                out.push_str(&path[copied..start]);
                out.push_str(p);
                copied = end;
            } else {
                let mark = out.len();
                out.push_str(&path[copied..start]);
                if pieces_into(&path[start..end], any & DELIM != 0, out) {
                    copied = end;
                } else {
                    out.truncate(mark);
                }
            }
        }
        if end == b.len() || b[end] != b'/' {
            break end;
        }
        start = end + 1;
    };
    out.push_str(&path[copied..end_of_path]);
}

/// Rewrites a segment piece by piece into `out`; false (and `out` in an
/// unspecified state past its length on entry) when nothing changed. A
/// segment without delimiters is one piece, already judged by the
/// whole-segment rules, so only the random-id rule is left for it.
fn pieces_into(seg: &str, has_delim: bool, out: &mut String) -> bool {
    if !has_delim {
        if is_random_id(seg.as_bytes()) {
            out.push_str(ID);
            return true;
        }
        return false;
    }
    let mut changed = false;
    for (i, part) in seg.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        let pb = part.as_bytes();
        // A whole part first: a long hex hash also looks random, and a
        // base64url id holds pieces that look like hex.
        if is_hash_piece(pb) {
            out.push_str(HASH);
            changed = true;
            continue;
        }
        if is_random_id(pb) {
            out.push_str(ID);
            changed = true;
            continue;
        }
        let mut from = 0;
        for (j, &c) in pb
            .iter()
            .enumerate()
            .chain(std::iter::once((pb.len(), &b'.')))
        {
            if CLASS[usize::from(c)] & DELIM == 0 {
                continue;
            }
            let piece = &pb[from..j];
            match PIECE_RULES.iter().find(|r| (r.matches)(piece)) {
                Some(r) => {
                    out.push_str(r.placeholder);
                    changed = true;
                }
                None => out.push_str(&part[from..j]),
            }
            if j < pb.len() {
                out.push(char::from(c));
            }
            from = j + 1;
        }
    }
    changed
}

/// A `YYYY/MM/DD` run starting with the all-digit segment `b[start..end]`:
/// the end of its day segment.
fn date_run(b: &[u8], start: usize, end: usize, stop: u8) -> Option<usize> {
    if end - start != 4 || !is_year(&b[start..end]) {
        return None;
    }
    let two = |at: usize| -> Option<u32> {
        let d = b.get(at..at + 2)?;
        let boundary = b
            .get(at + 2)
            .is_none_or(|&c| CLASS[usize::from(c)] & stop != 0);
        (b.get(at - 1) == Some(&b'/') && boundary && d.iter().all(u8::is_ascii_digit))
            .then(|| u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0'))
    };
    let month = two(end + 1)?;
    let day = two(end + 4)?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(end + 6)
}

fn is_year(d: &[u8]) -> bool {
    d.len() == 4
        && (d.starts_with(b"19") || d.starts_with(b"20"))
        && d.iter().all(u8::is_ascii_digit)
}

fn is_dash_date(b: &[u8]) -> bool {
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && is_year(&b[..4])
        && b[5..7].iter().chain(&b[8..]).all(u8::is_ascii_digit)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn is_hex_id(b: &[u8]) -> bool {
    b.len() >= MIN_HEX_LEN
        && b.iter().all(u8::is_ascii_hexdigit)
        && b.iter().any(u8::is_ascii_digit)
}

fn is_hash_piece(b: &[u8]) -> bool {
    b.len() >= MIN_HASH_LEN
        && b.iter().all(u8::is_ascii_hexdigit)
        && b.iter().any(u8::is_ascii_digit)
}

fn is_num_piece(b: &[u8]) -> bool {
    b.len() >= MIN_PIECE_NUM_LEN && b.iter().all(u8::is_ascii_digit)
}

/// A long base64url token that looks random rather than like words: at
/// least two digits, and both letter cases (`aZ3k9_Qm-8xYt2LpR`), or,
/// without `-` and `_`, a quarter of it digits (`k3j4h5g6f7d8s9a0`).
/// `oauth2-callback-handler` (one digit), `getUserProfileSettings` (none)
/// and `chunk-a0aa00aa00` (a lowercase name and a hash) are not.
fn is_random_id(b: &[u8]) -> bool {
    if b.len() < MIN_ID_LEN
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
    {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let upper = b.iter().any(u8::is_ascii_uppercase);
    let lower = b.iter().any(u8::is_ascii_lowercase);
    let delim = b.iter().any(|c| matches!(c, b'-' | b'_'));
    digits >= 2 && ((upper && lower) || (!delim && (upper || lower) && digits * 4 >= b.len()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn n() -> Normalizer {
        Normalizer::default()
    }

    #[test]
    fn ids_become_placeholders() {
        let n = n();
        assert_eq!(n.normalize("/user/123/orders?page=2"), "/user/:num/orders");
        assert_eq!(
            n.normalize("/o/3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
            "/o/:uuid"
        );
        assert_eq!(n.normalize("/obj/5f1d7a9c0b3e/edit#x"), "/obj/:hex/edit");
        assert_eq!(
            n.normalize("/v2/deadbeef/cafe12/feedface1"),
            "/v2/deadbeef/cafe12/:hex"
        );
        assert_eq!(n.normalize("/api/login"), "/api/login");
        assert_eq!(n.normalize("/a//b/"), "/a//b/");
        assert_eq!(n.normalize(""), "/");
        assert_eq!(n.normalize("?x=1"), "/");
        assert_eq!(
            n.normalize("http://example.com:8080/item/42?x"),
            "/item/:num"
        );
        assert_eq!(n.normalize("https://example.com"), "/");
        assert_eq!(n.normalize("*"), "*");
    }

    #[test]
    fn hash_like_pieces_dates_and_random_ids_become_placeholders() {
        let n = n();
        let cases = [
            ("/static/app.3f2a9c1b.js", "/static/app.:hash.js"),
            ("/static/app.007721404020.js", "/static/app.:hash.js"),
            ("/css/chunk-5f8e2c.css", "/css/chunk-:hash.css"),
            ("/avatars/9f86d081884c7d65.png", "/avatars/:hash.png"),
            ("/avatars/avatar-12345.png?s=64", "/avatars/avatar-:num.png"),
            ("/blog/2026/11/22/hello", "/blog/:date/hello"),
            ("/blog/2026/11/22", "/blog/:date"),
            ("/reports/2026-11-22/daily.csv", "/reports/:date/daily.csv"),
            ("/s/aZ3k9_Qm-8xYt2LpR", "/s/:id"),
            ("/s/aZ3k9_Qm-8xYt2LpR.jpg", "/s/:id.jpg"),
            ("/t/k3j4h5g6f7d8s9a0", "/t/:id"),
            // Kept: versions, words, short numbers, not-quite dates.
            ("/js/jquery-3.6.0.min.js", "/js/jquery-3.6.0.min.js"),
            ("/api/v2/items", "/api/v2/items"),
            (
                "/auth/oauth2-callback-handler",
                "/auth/oauth2-callback-handler",
            ),
            ("/api/getUserProfileSettings", "/api/getUserProfileSettings"),
            ("/img/logo-dark.svg", "/img/logo-dark.svg"),
            ("/2026/13/22", "/:num/:num/:num"),
            ("/1234/11/22", "/:num/:num/:num"),
        ];
        for (target, want) in cases {
            assert_eq!(n.normalize(target), want, "{target}");
        }
        assert_eq!(
            SEGMENT_RULES.len(),
            3,
            "the table in the module docs lists them"
        );
        assert_eq!(PIECE_RULES.len(), 2);
    }

    #[test]
    fn user_patterns_come_first() {
        let n = Normalizer::new(&[
            RouteRule {
                pattern: r"^/static/.*".into(),
                replace: "/static/*".into(),
            },
            RouteRule {
                pattern: r"/u/[a-z]+".into(),
                replace: "/u/:name".into(),
            },
        ])
        .unwrap();
        assert_eq!(n.normalize("/static/js/app.3f2504e0.js?v=1"), "/static/*");
        assert_eq!(n.normalize("/u/alice/posts/77"), "/u/:name/posts/:num");
        let bad = Normalizer::new(&[RouteRule {
            pattern: "(".into(),
            replace: String::new(),
        }]);
        assert!(bad.unwrap_err().to_string().contains("routes"));
    }

    proptest! {
        #[test]
        fn normalizing_is_idempotent(target in "(/|[a-zA-Z0-9_.:-]{0,12}|[0-9a-f]{6,40}|\\?|#|://|%){0,12}") {
            let n = Normalizer::new(&[RouteRule { pattern: "/u/[a-z]+".into(), replace: "/u/:name".into() }]).unwrap();
            let once = n.normalize(&target);
            prop_assert_eq!(n.normalize(&once), once.clone());
        }

        #[test]
        fn one_pass_agrees_with_path_then_rules(target in "/(/|[a-zA-Z0-9_.:-]{0,12}|[0-9a-f]{6,40}|\\?|#|://|%){0,12}") {
            // A pattern that never matches forces the general path.
            let general = Normalizer::new(&[RouteRule { pattern: "^never$".into(), replace: String::new() }]).unwrap();
            prop_assert_eq!(n().normalize(&target), general.normalize(&target));
        }

        #[test]
        fn random_hash_like_names_map_to_one_route(
            hex in "[0-9a-f]{6,20}",
            digits in "[0-9]{4,5}",
            sep in "[.~_+-]",
            b64 in "[A-Za-z0-9_-]{14}",
            (y, m, d) in (1970u32..2100, 1u32..=12, 1u32..=31),
        ) {
            // Hex of any letters-to-digits mix, even all digits, as build
            // tools write them; one route per file name, whatever the hash.
            let hex = if hex.bytes().any(|c| c.is_ascii_digit()) { hex } else { format!("{hex}7") };
            let n = n();
            prop_assert_eq!(n.normalize(&format!("/static/app.{hex}.js")), "/static/app.:hash.js");
            prop_assert_eq!(n.normalize(&format!("/static/chunk{sep}{hex}.css")), format!("/static/chunk{sep}:hash.css"));
            prop_assert_eq!(n.normalize(&format!("/avatars/{hex}.png")), "/avatars/:hash.png");
            prop_assert_eq!(n.normalize(&format!("/avatars/u{sep}{digits}.png")), format!("/avatars/u{sep}:num.png"));
            prop_assert_eq!(n.normalize(&format!("/blog/{y}/{m:02}/{d:02}/post")), "/blog/:date/post");
            // A random base64url id with two digits and both cases planted.
            let id = format!("a{b64}Z9");
            let id = if id.bytes().filter(u8::is_ascii_digit).count() >= 2 { id } else { format!("{id}1") };
            prop_assert_eq!(n.normalize(&format!("/s/{id}")), "/s/:id");
        }

        #[test]
        fn arbitrary_text_never_panics(target in "\\PC{0,64}") {
            let once = n().normalize(&target);
            prop_assert_eq!(n().normalize(&once), once);
        }
    }
}
