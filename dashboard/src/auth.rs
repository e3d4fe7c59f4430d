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

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, Path, Query, Request, State};
use axum::http::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::{Lang, Role};
use crate::now_ms;
use crate::pages::{Chrome, LoginPage, html};
use crate::{Dashboard, i18n};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "panorama_session";
const LOGIN_COOKIE: &str = "panorama_login";
const LANG_COOKIE: &str = "panorama_lang";

pub(crate) use crate::sessions::Session;
use crate::sessions::token;

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn secure(d: &Dashboard, headers: &HeaderMap) -> bool {
    d.cfg().secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
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
    cookie(headers, LANG_COOKIE)
        .and_then(Lang::parse)
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

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// The live session the request's cookie names, touched.
pub(crate) fn session_of(d: &Dashboard, headers: &HeaderMap) -> Option<Session> {
    cookie(headers, SESSION_COOKIE).and_then(|t| d.sessions().get(t, d.cfg(), now_ms()))
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

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// The login form, with a fresh double-submit token.
pub(crate) async fn login_page(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    login_form(&d, &headers, q.next.as_deref(), None, StatusCode::OK)
}

fn login_form(
    d: &Dashboard,
    headers: &HeaderMap,
    next: Option<&str>,
    error: Option<&'static str>,
    status: StatusCode,
) -> Response {
    // Reuse the token a browser already holds: a second login page (another
    // tab, or the favicon request bounced here) must not invalidate the
    // form of the first.
    let csrf = cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(token, str::to_owned);
    let lang = lang(d, headers);
    let page = LoginPage {
        c: Chrome::anonymous(d, lang, "/login"),
        next: safe_next(next),
        csrf: csrf.clone(),
        error: error.map(|e| {
            if e == "throttled" {
                i18n::texts(lang).login_throttled
            } else {
                i18n::texts(lang).login_failed
            }
        }),
    };
    let mut r = html(&page);
    *r.status_mut() = status;
    r.headers_mut().append(
        SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &csrf, Some(3600), secure(d, headers)),
    );
    r
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    user: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

/// Checks the password and starts a session, unless the throttle says
/// this user or address has failed too often.
pub(crate) async fn login(
    State(d): State<Dashboard>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let addr = peer.map(|p| p.0.0.ip());
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(f.csrf.as_bytes())) {
        return login_form(
            &d,
            &headers,
            f.next.as_deref(),
            Some("csrf"),
            StatusCode::FORBIDDEN,
        );
    }
    if let Err((wait, why)) = d.throttle().check(&f.user, addr, now_ms()) {
        let secs = wait.as_secs().max(1);
        tracing::warn!(user = %f.user, addr = ?addr, locked = why.as_str(), retry_after_secs = secs, "dashboard login refused: too many failures");
        let mut r = login_form(
            &d,
            &headers,
            f.next.as_deref(),
            Some("throttled"),
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(RETRY_AFTER, v);
        }
        return r;
    }
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let (cfg, user, password) = (d.clone(), f.user.clone(), f.password.clone());
    let found = tokio::task::spawn_blocking(move || {
        cfg.cfg()
            .authenticate(&user, &password)
            .map(|u| (u.name.clone(), u.role, u.password_hash.clone()))
    })
    .await
    .ok()
    .flatten();
    let Some((user, role, hash)) = found else {
        d.throttle().failed(&f.user, addr, now_ms());
        tracing::warn!(user = %f.user, addr = ?addr, "dashboard login refused: wrong user or password");
        return login_form(
            &d,
            &headers,
            f.next.as_deref(),
            Some("bad"),
            StatusCode::UNAUTHORIZED,
        );
    };
    d.throttle().succeeded(&user, addr);
    let (t, _) = d.sessions().create(&user, &hash, now_ms());
    tracing::info!(%user, addr = ?addr, role = role.as_str(), "dashboard login");
    let mut r = redirect(&safe_next(f.next.as_deref()));
    let sec = secure(&d, &headers);
    r.headers_mut()
        .append(SET_COOKIE, set_cookie(SESSION_COOKIE, &t, None, sec));
    r.headers_mut()
        .append(SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0), sec));
    r
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

/// Ends the session.
pub(crate) async fn logout(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    axum::Extension(s): axum::Extension<Session>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf) {
        return r.into_response();
    }
    if let Some(t) = cookie(&headers, SESSION_COOKIE) {
        d.sessions().remove(t, now_ms());
        tracing::info!(user = %s.user, "dashboard logout");
    }
    let mut r = redirect("/login");
    r.headers_mut().append(
        SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", Some(0), secure(&d, &headers)),
    );
    r
}

#[derive(Deserialize)]
pub(crate) struct LangQuery {
    next: Option<String>,
}

/// Switches the language (a preference, so a plain link) and goes back.
pub(crate) async fn switch_lang(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(code): Path<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let Some(l) = Lang::parse(&code) else {
        return (StatusCode::NOT_FOUND, "unknown language").into_response();
    };
    let mut r = redirect(&safe_next(q.next.as_deref()));
    let code = if l == Lang::Zh { "zh" } else { "en" };
    r.headers_mut().append(
        SET_COOKIE,
        set_cookie(LANG_COOKIE, code, Some(365 * 86_400), secure(&d, &headers)),
    );
    r
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
}
