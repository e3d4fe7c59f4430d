//! The login page, login and logout, and the language switch: the
//! handlers of [`crate::auth`]'s sessions and cookies that render or
//! redirect, kept among the pages so that `auth` needs no page.

use std::net::SocketAddr;

use askama::Template;
use axum::Extension;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::Cookie;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{Chrome, html};
use crate::auth::{
    LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE, Session, check_csrf, cookies, lang, redirect,
    safe_next, secure, set_cookie, token,
};
use crate::config::Lang;
use crate::{Dashboard, i18n, now_ms};

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub(crate) c: Chrome,
    pub(crate) next: String,
    pub(crate) csrf: String,
    pub(crate) error: Option<&'static str>,
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
    let csrf = cookies(headers)
        .get(LOGIN_COOKIE)
        .map(Cookie::value)
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
    let jar = cookies(&headers);
    let expected = jar.get(LOGIN_COOKIE).map_or("", Cookie::value);
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
    if let Some(t) = cookies(&headers).get(SESSION_COOKIE) {
        d.sessions().remove(t.value(), now_ms());
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
