//! The pages: one module each, sharing the layout ([`Chrome`]), the
//! rendering wrapper and the error type.

pub(crate) mod alerts;
pub(crate) mod hosts;
pub(crate) mod incidents;
pub(crate) mod layer;
pub(crate) mod overview;
pub(crate) mod series;
pub(crate) mod top;

use askama::Template;
use axum::Extension;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use panorama_model::Layer;
use panorama_store::StoreError;

use crate::auth::Session;
use crate::config::{Lang, Role};
use crate::i18n::{Texts, texts};
use crate::{Dashboard, format};

/// What every page's layout needs: words, who is logged in, the form
/// token, the navigation.
pub(crate) struct Chrome {
    pub(crate) t: &'static Texts,
    pub(crate) lang: &'static str,
    /// Link that switches to the other language and comes back here.
    pub(crate) lang_href: String,
    pub(crate) user: String,
    pub(crate) operator: bool,
    pub(crate) csrf: String,
    /// Which navigation entry is current.
    pub(crate) nav: &'static str,
    pub(crate) now: String,
    pub(crate) tz: String,
    pub(crate) layers: Vec<(&'static str, &'static str)>,
}

impl Chrome {
    pub(crate) fn new(
        d: &Dashboard,
        headers: &HeaderMap,
        s: &Session,
        path: &str,
        nav: &'static str,
    ) -> Chrome {
        let lang = crate::auth::lang(d, headers);
        let mut c = Chrome::anonymous(d, lang, path);
        c.user = s.user.clone();
        c.operator = s.role >= Role::Operator;
        c.csrf = s.csrf.clone();
        c.nav = nav;
        c
    }

    pub(crate) fn anonymous(d: &Dashboard, lang: Lang, path: &str) -> Chrome {
        let t = texts(lang);
        let other = if lang == Lang::Zh { "en" } else { "zh" };
        let tz = d.cfg().time_zone;
        Chrome {
            t,
            lang: lang.code(),
            lang_href: format!("/lang/{other}?next={}", format::encode(path)),
            user: String::new(),
            operator: false,
            csrf: String::new(),
            nav: "",
            now: format::minute(tz, now_ms()),
            tz: tz.name().to_owned(),
            layers: Layer::ALL
                .iter()
                .map(|l| (l.as_str(), t.layer(*l)))
                .collect(),
        }
    }
}

/// The request's path and query, for the language switch to come back to.
pub(crate) fn here(req_uri: &axum::http::Uri) -> String {
    req_uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Renders a template as an HTML response; a template error is a 500 that
/// names nothing internal.
pub(crate) fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// A parameter is wrong; the message says which and why.
    #[error("{0}")]
    BadRequest(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::BadRequest(m) | PageError::Store(StoreError::InvalidQuery(m)) => {
                (StatusCode::BAD_REQUEST, m).into_response()
            }
            PageError::Store(e @ StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "dashboard: store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is not answering; the page will work again when it does",
                )
                    .into_response()
            }
            PageError::Store(e) => {
                tracing::error!(error = %e, "dashboard: store error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the store failed to answer",
                )
                    .into_response()
            }
        }
    }
}

/// Parses a layer name from a URL.
pub(crate) fn parse_layer(s: &str) -> Result<Layer, PageError> {
    s.parse().map_err(|_| {
        PageError::BadRequest(format!(
            "unknown layer {s:?}: expected business, url, call, component or infra"
        ))
    })
}

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub(crate) c: Chrome,
    pub(crate) next: String,
    pub(crate) csrf: String,
    pub(crate) error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    c: Chrome,
    path: String,
}

/// Any other path: a 404 that shows what was asked for, as text.
pub(crate) async fn not_found(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let path = here(req.uri());
    let decoded = percent_decode(&path);
    let page = NotFoundPage {
        c: Chrome::new(&d, &headers, &s, &path, ""),
        path: decoded,
    };
    let mut r = html(&page);
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// Decodes `%XX` escapes so the page shows the path as typed.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
