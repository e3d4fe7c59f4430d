/// Why a store operation failed. The collector retries `Unavailable`, sends
/// `Rejected` documents to the dead-letter path, and reports `Backend`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or kept refusing (down, 429, 503)
    /// until the retry policy gave up. Nothing was lost: the caller still
    /// holds the data.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Detail),
    /// Documents the backend refused for a reason retrying cannot fix (a
    /// mapping conflict). Every other document of the call was written.
    #[error("store rejected {} document(s); first: {}", .0.len(), .0.first().map(|r| r.reason.as_str()).unwrap_or(""))]
    Rejected(Vec<Rejection>),
    /// Anything else: a malformed response, a corrupt database.
    #[error("store backend error: {0}")]
    Backend(#[source] Detail),
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

/// What an [`StoreError::Unavailable`] or [`StoreError::Backend`] says: a
/// message naming what the store was doing, and the backend's own error
/// (`rusqlite`, `elasticsearch`, I/O, JSON) when there was one.
///
/// The message already quotes the backend error, so it reads well alone
/// (it is what `Display` prints, as it always was); the backend error is
/// kept as this value's [`source`](std::error::Error::source) so that a
/// caller can walk the chain and downcast to it (for example to a
/// [`rusqlite::Error`]'s code) instead of parsing text. It derefs to the
/// message.
#[derive(Debug)]
pub struct Detail {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Detail {
    /// A message with the backend error it came from.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Detail {
        Detail {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The message alone.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for Detail {
    fn from(message: String) -> Detail {
        Detail {
            message,
            source: None,
        }
    }
}

impl From<&str> for Detail {
    fn from(message: &str) -> Detail {
        Detail::from(message.to_owned())
    }
}

impl std::ops::Deref for Detail {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Detail {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_detail_prints_its_message_and_keeps_the_backend_error() {
        let backend = rusqlite::Error::QueryReturnedNoRows;
        let e = StoreError::Backend(Detail::with_source(
            format!("sqlite: read: {backend}"),
            backend,
        ));
        assert_eq!(
            e.to_string(),
            "store backend error: sqlite: read: Query returned no rows"
        );
        // The chain reaches the rusqlite error itself, through the detail.
        let mut cause: Option<&(dyn Error + 'static)> = Some(&e);
        let mut found = None;
        while let Some(c) = cause {
            found = found.or(c.downcast_ref::<rusqlite::Error>());
            cause = c.source();
        }
        assert!(matches!(found, Some(rusqlite::Error::QueryReturnedNoRows)));

        let plain = StoreError::Unavailable("down".into());
        assert_eq!(plain.to_string(), "store unavailable: down");
        assert!(plain.source().and_then(Error::source).is_none());
    }
}
