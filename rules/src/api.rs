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
//!
//! Who may call which is the collector's policy, checked in front of these
//! routes; the principal it found arrives in the request's extensions and
//! every acknowledgement, silence, expiry and reload is written to the
//! history with it (name, credential, address). `by` and `author` may then
//! be left out: they default to the principal's name.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use panorama_model::{Credential, Principal};
use serde::Deserialize;
use serde_json::{Value, json};

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
        .merge(crate::incident::api::router(engine.clone()))
        .merge(crate::callback::router(engine))
}

type Who = Option<Extension<Principal>>;

/// The name an action is recorded under: the one the request states, else
/// the principal's (an open collector's anonymous principal names nobody).
fn name_of(stated: Option<&str>, who: &Who) -> Option<String> {
    stated
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            who.as_ref()
                .filter(|p| p.credential != Credential::Open)
                .map(|p| p.name.clone())
        })
}

/// The principal's description for the history, empty when unknown.
fn describe(who: &Who) -> String {
    who.as_ref().map(|p| p.describe()).unwrap_or_default()
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
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    comment: String,
}

async fn ack(State(e): State<Engine>, who: Who, Json(req): Json<AckRequest>) -> Response {
    let Some(by) = name_of(req.by.as_deref(), &who) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`by` is required: who is handling it",
        );
    };
    if e.acknowledge_as(
        &req.rule,
        &req.group,
        &by,
        &describe(&who),
        &req.comment,
        now_ms(),
    )
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

async fn add_silence(State(e): State<Engine>, who: Who, Json(mut req): Json<Value>) -> Response {
    let stated = req.get("author").and_then(Value::as_str).map(str::to_owned);
    if let (Some(author), Some(obj)) = (name_of(stated.as_deref(), &who), req.as_object_mut()) {
        obj.insert("author".into(), Value::String(author));
    }
    let req: SilenceRequest = match serde_json::from_value(req) {
        Ok(r) => r,
        Err(err) => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("silence: {err}")),
    };
    match e.add_silence_as(req, &describe(&who), now_ms()).await {
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
    who: Who,
    Path(id): Path<String>,
    Query(q): Query<ExpireQuery>,
) -> Response {
    let Some(by) = name_of(q.by.as_deref(), &who) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`?by=NAME` is required: who ended the silence",
        );
    };
    if e.expire_silence_as(&id, &by, &describe(&who), now_ms())
        .await
    {
        Json(json!({ "expired": id })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no silence `{id}` in force"))
    }
}

async fn reload(State(e): State<Engine>, who: Who) -> Response {
    match e.reload_as(&describe(&who)).await {
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
