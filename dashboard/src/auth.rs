//! Logins, sessions, CSRF tokens and the language cookie.
//!
//! Sessions are kept by [`crate::sessions`] (persisted, hashed); failed
//! logins are slowed by [`crate::throttle`], and a locked login is refused
//! with 429 and `Retry-After` before its password is looked at. The
//! session cookie is `HttpOnly` (scripts never see it), `SameSite=Strict`
//! (no other site can make the browser send it) and `Secure` behind HTTPS.
//! Every form also carries the session's CSRF token, checked on each POST,
//! so a forged request fails even where `SameSite` is not honoured. The login
//! form, which has no session yet, uses a double-submit token: a random value
//! in both a strict cookie and the form.

use axum::extract::{Request, State};
use axum::http::header::{COOKIE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use subtle::ConstantTimeEq;

use crate::Dashboard;
use crate::config::{Lang, Role};
use crate::now_ms;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "panorama_session";
pub(crate) const LOGIN_COOKIE: &str = "panorama_login";
pub(crate) const LANG_COOKIE: &str = "panorama_lang";

pub(crate) use crate::sessions::Session;
pub(crate) use crate::sessions::token;

/// The request's cookies, parsed by the `cookie` crate as
/// [`CookieJar::from_headers`] does (a `Cookie` header that is not UTF-8, or
/// a pair that does not parse, is skipped). Where a name repeats, the
/// first pair sent counts, as it always has here: browsers list the most
/// specific cookie first, and `from_headers` would keep the last.
pub(crate) fn cookies(headers: &HeaderMap) -> CookieJar {
    let sent: Vec<Cookie<'static>> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse_encoded(v.to_owned()))
        .filter_map(Result::ok)
        .collect();
    sent.into_iter()
        .rev()
        .fold(CookieJar::new(), CookieJar::add)
}

pub(crate) fn secure(d: &Dashboard, headers: &HeaderMap) -> bool {
    d.cfg().secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age: Option<u64>,
    secure: bool,
) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The language of a request: its cookie, else the configured default.
pub(crate) fn lang(d: &Dashboard, headers: &HeaderMap) -> Lang {
    cookies(headers)
        .get(LANG_COOKIE)
        .and_then(|c| Lang::parse(c.value()))
        .unwrap_or(d.cfg().default_lang)
}

/// Only same-site paths are followed after login or a language switch, so
/// neither can be used to send a user elsewhere.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// The live session the request's cookie names, touched.
pub(crate) fn session_of(d: &Dashboard, headers: &HeaderMap) -> Option<Session> {
    cookies(headers)
        .get(SESSION_COOKIE)
        .and_then(|c| d.sessions().get(c.value(), d.cfg(), now_ms()))
}

/// Lets requests with a live session through, with the [`Session`] in
/// their extensions; sends others to the login page (pages) or refuses
/// them (forms). POSTs must also carry the session's CSRF token, which the
/// form handlers check with [`check_csrf`].
pub(crate) async fn require_login(
    State(d): State<Dashboard>,
    mut req: Request,
    next: Next,
) -> Response {
    match session_of(&d, req.headers()) {
        Some(s) => {
            req.extensions_mut().insert(s);
            next.run(req).await
        }
        None if req.method() == Method::GET => {
            let target = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            redirect(&format!("/login?next={}", crate::format::encode(&target)))
        }
        None => (StatusCode::FORBIDDEN, "log in first").into_response(),
    }
}

/// Why a form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The CSRF token is missing or not the session's.
    Csrf,
    /// The user is not an operator.
    NotOperator,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let why = match self {
            Refusal::Csrf => {
                "the form's CSRF token is missing or stale: reload the page and try again"
            }
            Refusal::NotOperator => "only operators may acknowledge alerts and change silences",
        };
        (StatusCode::FORBIDDEN, why).into_response()
    }
}

/// Refuses a form whose token is not the session's.
///
/// # Errors
/// [`Refusal::Csrf`].
pub(crate) fn check_csrf(s: &Session, sent: &str) -> Result<(), Refusal> {
    if bool::from(s.csrf.as_bytes().ct_eq(sent.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::Csrf)
    }
}

/// Refuses a form unless the user is an operator.
///
/// # Errors
/// [`Refusal::NotOperator`].
pub(crate) fn require_operator(s: &Session) -> Result<(), Refusal> {
    if s.role >= Role::Operator {
        Ok(())
    } else {
        Err(Refusal::NotOperator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/series?x=1")), "/series?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn hostile_cookie_headers_are_skipped_and_the_first_name_counts() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_bytes(b"panorama_session=\xff\xfe").unwrap(),
        );
        h.append(
            COOKIE,
            HeaderValue::from_static("junk; =x; ; panorama_lang=zh; panorama_lang=en"),
        );
        let jar = cookies(&h);
        assert!(jar.get(SESSION_COOKIE).is_none(), "not UTF-8: skipped");
        assert!(jar.get("junk").is_none());
        assert_eq!(jar.get(LANG_COOKIE).map(Cookie::value), Some("zh"));

        let huge = format!(
            "a={}; {SESSION_COOKIE}={}",
            "x".repeat(64 * 1024),
            "f".repeat(64)
        );
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&huge).unwrap());
        assert_eq!(
            cookies(&h).get(SESSION_COOKIE).map(Cookie::value),
            Some("f".repeat(64).as_str())
        );
    }
}
