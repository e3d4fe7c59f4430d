//! The web dashboard for on-duty staff.
//!
//! **Owns** the axum routes and askama templates of the pages, logins and
//! sessions. **Must not** write rollups: it reads only through
//! [`panorama_store::Store`] and the rules engine's alert state.
//!
//! Server-rendered pages (axum + askama, no JavaScript build step) that
//! answer the on-duty questions in order: is something wrong (overview,
//! alerts), in which layer and series (layer, top-N), and why (series with
//! the minute's samples, hosts). It reads only through
//! [`panorama_store::Store`] and the rules engine's alert state, and never
//! writes rollups.
//!
//! - `config`: users (argon2 hashes, roles), time zone, language.
//! - `auth`: sessions in secure cookies, CSRF tokens, the language cookie;
//!   the login, logout and language handlers are the page `pages::login`.
//! - `sessions`: sessions persisted as hashes of their tokens, with idle and
//!   absolute lifetimes, revoked by logout and by a password change.
//! - `throttle`: failed logins slowed per user, per address and per both.
//! - `pages`: one module per page, sharing `pages::layout` (the `Chrome`
//!   around every page, `html`); templates in `templates/`.
//! - `chart`: hand-written SVG; `static/app.js` adds hover, minute picking and
//!   the 10 s refresh that swaps the page body without moving the scroll.
//! - `i18n`: English and Simplified Chinese.
//!
//! Every value that comes from logs (series names, hosts, raw lines, fields)
//! reaches HTML through askama's escaping; a Content-Security-Policy that
//! allows only this server's script file is a second wall behind it.
//!
//! ```no_run
//! # async fn run(store: std::sync::Arc<dyn panorama_store::Store>) {
//! use panorama_dashboard::{Dashboard, config::DashboardConfig};
//! let users = vec![]; // config::User { name, password_hash, role }
//! let app = panorama_dashboard::router(Dashboard::new(store, None, DashboardConfig::new(users)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

mod auth;
mod chart;
pub mod config;
mod format;
mod i18n;
mod pages;
mod sessions;
pub mod throttle;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use panorama_model::{Layer, Role};
use panorama_rules::engine::Engine;
use panorama_store::Store;

pub use auth::SESSION_COOKIE;
pub use config::{DashboardConfig, hash_password};

/// The order of the overview page's bands: the user's view first, then
/// down the stack to the hosts, the way a fault is traced.
pub fn overview_order() -> [Layer; 5] {
    Layer::ALL
}

struct Inner {
    store: Arc<dyn Store>,
    engine: Option<Engine>,
    cfg: DashboardConfig,
    sessions: sessions::Sessions,
    throttle: throttle::Throttle,
    past_hours: pages::overview::PastHours,
}

/// What the dashboard reads and who may read it. Cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

impl Dashboard {
    /// A dashboard over a store, with the rules engine's alerts when rules
    /// are configured.
    pub fn new(store: Arc<dyn Store>, engine: Option<Engine>, cfg: DashboardConfig) -> Dashboard {
        let sessions = match &cfg.sessions_file {
            Some(p) => sessions::Sessions::open(p),
            None => sessions::Sessions::in_memory(),
        };
        let throttle = throttle::Throttle::new(cfg.throttle.clone());
        Dashboard {
            inner: Arc::new(Inner {
                store,
                engine,
                cfg,
                sessions,
                throttle,
                past_hours: pages::overview::PastHours::default(),
            }),
        }
    }

    pub(crate) fn cfg(&self) -> &DashboardConfig {
        &self.inner.cfg
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub(crate) fn engine(&self) -> Option<&Engine> {
        self.inner.engine.as_ref()
    }

    pub(crate) fn sessions(&self) -> &sessions::Sessions {
        &self.inner.sessions
    }

    pub(crate) fn throttle(&self) -> &throttle::Throttle {
        &self.inner.throttle
    }

    /// The live session the request's cookie names, as `(user, role,
    /// csrf)`: how the process's auth layer lets a logged-in browser call
    /// the JSON API with its user's role.
    pub fn session_of(&self, headers: &axum::http::HeaderMap) -> Option<(String, Role, String)> {
        let s = auth::session_of(self, headers)?;
        Some((s.user, s.role, s.csrf))
    }

    /// Writes sessions' pending touches; call at shutdown.
    pub fn persist_sessions(&self) {
        self.inner.sessions.persist(now_ms());
    }

    pub(crate) fn past_hours(&self) -> &pages::overview::PastHours {
        &self.inner.past_hours
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The dashboard's routes, to be merged into the process's router. Every
/// page but the login form and static files needs a session.
pub fn router(d: Dashboard) -> Router {
    let pages = Router::new()
        .route("/", get(pages::overview::page))
        .route("/layer/{layer}", get(pages::layer::page))
        .route("/top", get(pages::top::page))
        .route("/series", get(pages::series::page))
        .route("/alerts", get(pages::alerts::page))
        .route("/alerts/ack", post(pages::alerts::ack))
        .route("/alerts/silence", post(pages::alerts::silence))
        .route("/alerts/expire", post(pages::alerts::expire))
        .route("/hosts", get(pages::hosts::page))
        .route("/incidents", get(pages::incidents::list))
        .route("/incidents/{id}", get(pages::incidents::one))
        .route("/incidents/ack", post(pages::incidents::ack))
        .route("/graph", get(pages::incidents::graph))
        .route("/logout", post(pages::login::logout))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(
            d.clone(),
            auth::require_login,
        ));
    Router::new()
        .route(
            "/login",
            get(pages::login::login_page).post(pages::login::login),
        )
        .route("/lang/{code}", get(pages::login::switch_lang))
        .route("/static/app.js", get(script))
        .route("/static/app.css", get(style))
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .merge(pages)
        .layer(middleware::from_fn(security_headers))
        .with_state(d)
}

async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../static/app.js"),
    )
}

async fn style() -> Response {
    static_file("text/css; charset=utf-8", include_str!("../static/app.css"))
}

fn static_file(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(kind)),
            (CACHE_CONTROL, HeaderValue::from_static("max-age=300")),
        ],
        body,
    )
        .into_response()
}

/// Headers that make injected markup inert even if escaping ever failed:
/// scripts only from this server's files, no inline script or style, no
/// framing, no sniffing content types.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ] {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    }
    r
}
