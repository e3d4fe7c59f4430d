//! HTTP routes. Handlers never fail: every error becomes a response, which
//! says what was wrong for a 4xx and hides internals (and logs them) for a
//! 5xx.

mod error;
mod ingest;
mod query;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use panorama_store::Store;

pub use error::ApiError;

use crate::Collector;

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) collector: Option<Collector>,
}

/// The query routes over a store, without ingest. A function, not a server,
/// so tests drive it with `oneshot` and no socket.
pub fn router(store: Arc<dyn Store>) -> Router {
    routes(AppState {
        store,
        collector: None,
    })
}

/// Every route of a running collector: ingest, query, `/health`, `/metrics`.
pub fn app(collector: Collector) -> Router {
    let limit = collector.inner.cfg.max_body_bytes;
    routes(AppState {
        store: collector.store(),
        collector: Some(collector),
    })
    .layer(DefaultBodyLimit::max(limit))
}

fn routes(state: AppState) -> Router {
    Router::new()
        .route("/health", get(query::health))
        .route("/metrics", get(metrics))
        .route("/api/v1/ingest", post(ingest::ingest))
        .route("/api/v1/series", get(query::series))
        .route("/api/v1/top", get(query::top))
        .route("/api/v1/samples", get(query::samples))
        .route("/api/v1/accounting", get(query::accounting))
        .with_state(state)
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let body = st
        .collector
        .as_ref()
        .map(Collector::metrics)
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
