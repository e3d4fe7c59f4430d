//! What to do with each item of a bulk response.
//!
//! A bulk request that returns 200 can still have failed item by item, so
//! the retry decision reads every item, not just the status line: 429 and
//! 5xx items are retried, other 4xx items (a mapping conflict, a document too
//! large) are rejected for good, because sending them again would fail again.

use serde::Deserialize;

/// Whether a whole response (or transport failure) may succeed if sent again.
pub(super) fn status_is_retryable(status: u16) -> bool {
    status == 429 || status == 408 || (500..600).contains(&status)
}

/// The fate of one document of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ItemOutcome {
    /// Written.
    Done,
    /// Failed for a reason that may pass (queue full, shard unavailable).
    Retry(String),
    /// Failed for good.
    Reject(String),
    /// Refused because the stored document has a higher external version
    /// (409): done, for a versioned write; a rejection otherwise.
    Conflict(String),
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Why a bulk response body could not be read item by item.
#[derive(Debug, thiserror::Error)]
pub(super) enum BulkResponseError {
    /// Not the JSON of a bulk response.
    #[error("unreadable bulk response: {0}")]
    Unreadable(#[source] serde_json::Error),
    /// A different number of items than documents sent, which would make it
    /// impossible to say which document failed.
    #[error("bulk response has {items} items for {sent} documents")]
    ItemCount { items: usize, sent: usize },
}

/// The store error's detail keeps the JSON error as its source.
impl From<BulkResponseError> for crate::Detail {
    fn from(e: BulkResponseError) -> crate::Detail {
        let message = e.to_string();
        match e {
            BulkResponseError::Unreadable(json) => crate::Detail::with_source(message, json),
            BulkResponseError::ItemCount { .. } => message.into(),
        }
    }
}

/// Classifies every item of a bulk response body, in request order.
///
/// # Errors
/// [`BulkResponseError`]: a body that is not a bulk response, or one with a
/// different number of items than documents sent.
pub(super) fn classify(body: &[u8], sent: usize) -> Result<Vec<ItemOutcome>, BulkResponseError> {
    let resp: BulkResponse = serde_json::from_slice(body).map_err(BulkResponseError::Unreadable)?;
    if resp.items.len() != sent {
        return Err(BulkResponseError::ItemCount {
            items: resp.items.len(),
            sent,
        });
    }
    Ok(resp
        .items
        .into_iter()
        .map(|item| {
            let Some(item) = item.into_values().next() else {
                return ItemOutcome::Retry("empty bulk item".into());
            };
            if (200..300).contains(&item.status) {
                return ItemOutcome::Done;
            }
            let reason = item
                .error
                .map(|e| describe(&e))
                .unwrap_or_else(|| format!("status {}", item.status));
            if item.status == 409 {
                ItemOutcome::Conflict(reason)
            } else if status_is_retryable(item.status) {
                ItemOutcome::Retry(reason)
            } else {
                ItemOutcome::Reject(reason)
            }
        })
        .collect())
}

fn describe(error: &serde_json::Value) -> String {
    let kind = error
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or("error");
    let reason = error.get("reason").and_then(|v| v.as_str()).unwrap_or("");
    format!("{kind}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_partial_failures_of_a_successful_response() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_id":"a","status":201}},
            {"index":{"_id":"b","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"_id":"c","status":400,"error":{"type":"document_parsing_exception","reason":"mapping conflict"}}},
            {"index":{"_id":"d","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary not active"}}},
            {"create":{"_id":"e","status":200}},
            {"index":{"_id":"f","status":409,"error":{"type":"version_conflict_engine_exception","reason":"newer"}}}
        ]}"#;
        let out = classify(body, 6).unwrap();
        assert_eq!(out[0], ItemOutcome::Done);
        assert_eq!(
            out[1],
            ItemOutcome::Retry("es_rejected_execution_exception: queue full".into())
        );
        assert_eq!(
            out[2],
            ItemOutcome::Reject("document_parsing_exception: mapping conflict".into())
        );
        assert!(matches!(out[3], ItemOutcome::Retry(_)));
        assert_eq!(out[4], ItemOutcome::Done);
        assert!(matches!(out[5], ItemOutcome::Conflict(_)));
    }

    #[test]
    fn item_count_mismatch_is_an_error() {
        assert!(classify(br#"{"items":[]}"#, 1).is_err());
        assert!(classify(b"not json", 1).is_err());
    }

    #[test]
    fn retryable_statuses() {
        assert!(status_is_retryable(429));
        assert!(status_is_retryable(503));
        assert!(!status_is_retryable(400));
        assert!(!status_is_retryable(404));
    }
}
