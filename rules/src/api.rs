//! The alerts API: what fires, silences, acknowledgements, history and
//! notifications, as JSON under `/api/v1/`.
//!
//! ```text
//! GET    /api/v1/alerts                      firing, no data, pending, recently resolved,
//!                                            silences, rules, rule-load errors
//! GET    /api/v1/alerts/history?rule=&q=&limit=
//! POST   /api/v1/alerts/ack                  {"rule","group","by","comment"}
//! GET    /api/v1/notifications
//! POST   /api/v1/silences                    {"matchers":[{"label","op","value"}],
//!                                             "duration":"2h" | "ends_ms", "author","reason"}
//! DELETE /api/v1/silences/{id}?by=NAME
//! POST   /api/v1/rules/reload
//! ```

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::engine::{Engine, SilenceRequest};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The routes, to be merged into the process's router.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/history", get(history))
        .route("/api/v1/alerts/ack", post(ack))
        .route("/api/v1/notifications", get(notifications))
        .route("/api/v1/silences", post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/rules/reload", post(reload))
        .with_state(engine.clone())
        .merge(crate::callback::router(engine))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn alerts(State(e): State<Engine>) -> Response {
    Json(e.view(now_ms()).await).into_response()
}

#[derive(Deserialize)]
struct HistoryQuery {
    rule: Option<String>,
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

async fn history(State(e): State<Engine>, Query(q): Query<HistoryQuery>) -> Response {
    let limit = q.limit.unwrap_or(200).min(10_000);
    match e.history(q.rule.as_deref(), &q.q, limit).await {
        Ok(records) => Json(json!({ "records": records })).into_response(),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading history: {err}"),
        ),
    }
}

#[derive(Deserialize)]
struct AckRequest {
    rule: String,
    group: String,
    by: String,
    #[serde(default)]
    comment: String,
}

async fn ack(State(e): State<Engine>, Json(req): Json<AckRequest>) -> Response {
    if req.by.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "`by` is required: who is handling it",
        );
    }
    if e.acknowledge(&req.rule, &req.group, &req.by, &req.comment, now_ms())
        .await
    {
        Json(json!({ "acknowledged": true })).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no active alert of rule `{}` for `{}`", req.rule, req.group),
        )
    }
}

async fn notifications(State(e): State<Engine>) -> Response {
    Json(json!({ "notifications": e.notifications().await })).into_response()
}

async fn add_silence(State(e): State<Engine>, Json(req): Json<SilenceRequest>) -> Response {
    match e.add_silence(req, now_ms()).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(err) => error(StatusCode::BAD_REQUEST, err.to_string()),
    }
}

#[derive(Deserialize)]
struct ExpireQuery {
    by: Option<String>,
}

async fn expire_silence(
    State(e): State<Engine>,
    Path(id): Path<String>,
    Query(q): Query<ExpireQuery>,
) -> Response {
    let Some(by) = q.by.filter(|b| !b.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`?by=NAME` is required: who ended the silence",
        );
    };
    if e.expire_silence(&id, &by, now_ms()).await {
        Json(json!({ "expired": id })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no silence `{id}` in force"))
    }
}

async fn reload(State(e): State<Engine>) -> Response {
    match e.reload().await {
        Ok(n) => Json(json!({ "rules": n })).into_response(),
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "rules refused; the previous rules keep running",
                "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
    }
}
