//! The pages: one module each, sharing the layout ([`Chrome`]), the
//! rendering wrapper and the error type.

pub(crate) mod alerts;
pub(crate) mod hosts;
pub(crate) mod incidents;
pub(crate) mod layer;
mod layout;
pub(crate) mod login;
pub(crate) mod overview;
pub(crate) mod series;
pub(crate) mod top;

use askama::Template;
use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use panorama_model::Layer;
use panorama_store::StoreError;

use crate::Dashboard;
use crate::auth::Session;

pub(crate) use layout::{Chrome, here, html, now_ms};

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
