//! Route normalization: `/user/123/orders?page=2` → `/user/:num/orders`.
//!
//! A url-layer series is a route of the service's API, not a request URL;
//! ids in paths would otherwise make one series per user. The built-in
//! rules replace whole path segments only, so that `/v2/items` keeps its
//! `v2`, and produce placeholders the rules themselves never match again,
//! which makes normalization idempotent (a normalized route normalizes to
//! itself) as long as user patterns are too.

use std::borrow::Cow;

use regex::Regex;

use super::{RouteRule, SpecError};

/// Placeholder for a segment of decimal digits.
pub const NUM: &str = ":num";
/// Placeholder for a UUID segment.
pub const UUID: &str = ":uuid";
/// Placeholder for a hex id segment (≥ 8 hex digits, at least one a digit).
pub const HEX: &str = ":hex";

/// Shortest segment taken for a hex id: shorter hex-looking words (`beef`,
/// `cafe`, `add`) are more often words than ids.
const MIN_HEX_LEN: usize = 8;

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
            _ => 0,
        };
        c += 1;
    }
    t
};

/// The built-in segment rules, appended to `out`.
///
/// One pass over the bytes finds the segments and classifies them (all
/// digits, all hex) as it goes, and unchanged stretches of the path are
/// copied in one piece: this runs for every access-log line, and separate
/// split, classify and per-segment `push_str` passes showed in profiles.
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
        if let Some(p) = placeholder(&b[start..end], all, any) {
            out.push_str(&path[copied..start]);
            out.push_str(p);
            copied = end;
        }
        if end == b.len() || b[end] != b'/' {
            break end;
        }
        start = end + 1;
    };
    out.push_str(&path[copied..end_of_path]);
}

/// The placeholder for an id-like segment, `None` to keep it; `all` is
/// the classes every byte has, `any` those some byte has.
#[inline]
fn placeholder(seg: &[u8], all: u8, any: u8) -> Option<&'static str> {
    if seg.is_empty() {
        return None;
    }
    if all & DIGIT != 0 {
        return Some(NUM);
    }
    if seg.len() == 36 && is_uuid(seg) {
        return Some(UUID);
    }
    if seg.len() >= MIN_HEX_LEN && all & HEX_DIGIT != 0 && any & DIGIT != 0 {
        return Some(HEX);
    }
    None
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
        fn arbitrary_text_never_panics(target in "\\PC{0,64}") {
            let once = n().normalize(&target);
            prop_assert_eq!(n().normalize(&once), once);
        }
    }
}
