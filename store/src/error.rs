/// Why a store operation failed. The collector retries `Unavailable`, sends
/// `Rejected` documents to the dead-letter path, and reports `Backend`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or kept refusing (down, 429, 503)
    /// until the retry policy gave up. Nothing was lost: the caller still
    /// holds the data.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Documents the backend refused for a reason retrying cannot fix (a
    /// mapping conflict). Every other document of the call was written.
    #[error("store rejected {} document(s); first: {}", .0.len(), .0.first().map(|r| r.reason.as_str()).unwrap_or(""))]
    Rejected(Vec<Rejection>),
    /// Anything else: a malformed response, a corrupt database.
    #[error("store backend error: {0}")]
    Backend(String),
    /// The query itself is invalid (for example, `to` before `from`).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
}

/// One document the backend refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its document id.
    pub doc_id: String,
    /// What the backend said.
    pub reason: String,
}
