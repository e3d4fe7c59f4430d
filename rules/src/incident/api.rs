//! The incidents API, merged into [`crate::api::router`]:
//!
//! ```text
//! GET  /api/v1/incidents              open incidents, then the last week's resolved ones
//! GET  /api/v1/incidents/{id}         one, its cause first
//! POST /api/v1/incidents/{id}/ack     {"by","comment"}: acknowledges every alert in it
//! GET  /api/v1/graph                  the dependency graph's edges
//! ```

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::engine::Engine;

/// The routes.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/api/v1/incidents", get(list))
        .route("/api/v1/incidents/{id}", get(one))
        .route("/api/v1/incidents/{id}/ack", post(ack))
        .route("/api/v1/graph", get(graph))
        .with_state(engine)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn list(State(e): State<Engine>) -> Response {
    Json(json!({ "incidents": e.incidents().await })).into_response()
}

async fn one(State(e): State<Engine>, Path(id): Path<u64>) -> Response {
    match e.incident(id).await {
        Some(i) => Json(i).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
    }
}

#[derive(Deserialize)]
struct AckRequest {
    by: String,
    #[serde(default)]
    comment: String,
}

async fn ack(
    State(e): State<Engine>,
    Path(id): Path<u64>,
    Json(req): Json<AckRequest>,
) -> Response {
    if req.by.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "`by` is required: who is handling it",
        );
    }
    let now = chrono::Utc::now().timestamp_millis();
    match e.acknowledge_incident(id, &req.by, &req.comment, now).await {
        Some(n) => Json(json!({ "acknowledged": n })).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
    }
}

async fn graph(State(e): State<Engine>) -> Response {
    let (learned_ms, edges) = e.graph().await;
    Json(json!({ "learned_ms": learned_ms, "edges": edges })).into_response()
}
