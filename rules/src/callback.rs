//! Call receipts from the voice providers:
//! `POST /api/v1/voice/callback/{receiver}?token=SECRET`.
//!
//! Providers cannot log in, so this route sits outside the role checks and
//! is authenticated by the receiver's own secret in the URL
//! (`callback_token_env`), compared in constant time. Anything else gets
//! a 401 and a log line naming the receiver. The answer is
//! the `{"result": 0, "errmsg": "OK"}` Tencent expects, with Aliyun's
//! `{"code": 0, "msg": …}` beside it.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::engine::{Engine, ReceiptError};

/// The callback route, merged by [`crate::api::router`].
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/api/v1/voice/callback/{receiver}", post(callback))
        .with_state(engine)
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

async fn callback(
    State(e): State<Engine>,
    Path(receiver): Path<String>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let now = chrono::Utc::now().timestamp_millis();
    match e.voice_receipt(&receiver, &q.token, &body, now).await {
        Ok(matched) => Json(json!({
            "result": 0, "errmsg": "OK", "code": 0, "msg": "OK", "matched": matched,
        }))
        .into_response(),
        Err(ReceiptError::Unauthorized) => {
            tracing::warn!(%receiver, "voice callback refused: unknown receiver or wrong token");
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"result": 1, "errmsg": "unauthorized"})),
            )
                .into_response()
        }
        Err(ReceiptError::Bad(why)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"result": 1, "errmsg": why.to_string()})),
        )
            .into_response(),
    }
}
