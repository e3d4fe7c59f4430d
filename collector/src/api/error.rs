use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use panorama_store::StoreError;
use serde_json::json;

/// An error as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request was wrong; the message says what and where.
    #[error("{0}")]
    BadRequest(String),
    /// The store is unreachable; try again later.
    #[error("store unavailable")]
    Unavailable(String),
    /// Our fault; details go to the log, not to the client.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::InvalidQuery(m) => ApiError::BadRequest(m),
            StoreError::Unavailable(m) => ApiError::Unavailable(m.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(detail) => {
                tracing::warn!(detail, "query failed: store unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(detail) => {
                tracing::error!(detail, "query failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}
