//! HTTP routes. Handlers never fail: every error becomes a response in
//! [`ApiError`], which says what was wrong for a 4xx and hides internals
//! (and logs them) for a 5xx.

mod error;
mod query;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use panorama_store::Store;

pub use error::ApiError;

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
}

/// The collector's routes over a store. A function, not a server, so tests
/// drive it with `oneshot` and no socket.
pub fn router(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/health", get(query::health))
        .route("/api/v1/series", get(query::series))
        .route("/api/v1/top", get(query::top))
        .route("/api/v1/samples", get(query::samples))
        .with_state(AppState { store })
}
