//! What operators do to alerts: silences and acknowledgements, each
//! recorded in the history with who asked.

use serde::Deserialize;

use crate::history::{Event, Record};
use crate::lifecycle::{Ack, AlertKey};
use crate::silence::{Matcher, SilenceError};

use super::{Engine, audited};

/// A silence as requested through the API.
#[derive(Debug, Clone, Deserialize)]
pub struct SilenceRequest {
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Start, Unix ms; now when absent.
    pub starts_ms: Option<i64>,
    /// End, Unix ms; or give `duration`.
    pub ends_ms: Option<i64>,
    /// Length, such as `2h`, when `ends_ms` is absent.
    pub duration: Option<String>,
    /// Who.
    pub author: String,
    /// Why.
    pub reason: String,
}

impl Engine {
    /// Adds a silence.
    ///
    /// # Errors
    /// What is wrong with it.
    pub async fn add_silence(
        &self,
        req: SilenceRequest,
        now_ms: i64,
    ) -> Result<String, SilenceError> {
        self.add_silence_as(req, "", now_ms).await
    }

    /// [`Engine::add_silence`] by `who` (a principal's description), which
    /// the history records beside the author.
    ///
    /// # Errors
    /// As for [`Engine::add_silence`].
    pub async fn add_silence_as(
        &self,
        req: SilenceRequest,
        who: &str,
        now_ms: i64,
    ) -> Result<String, SilenceError> {
        let starts = req.starts_ms.unwrap_or(now_ms);
        let ends = match (req.ends_ms, &req.duration) {
            (Some(e), _) => e,
            (None, Some(d)) => {
                starts + crate::rule::expr::parse_duration(d).map_err(SilenceError::BadTime)?
            }
            (None, None) => {
                return Err(SilenceError::BadTime("give `ends_ms` or `duration`".into()));
            }
        };
        let mut st = self.inner.state.lock().await;
        let id = st
            .silences
            .add(req.matchers, starts, ends, &req.author, &req.reason)?;
        st.history.append(Record {
            at_ms: now_ms,
            event: Event::SilenceAdded,
            rule: String::new(),
            group: String::new(),
            detail: audited(format!("{id} by {}: {}", req.author, req.reason), who),
        });
        self.save(&st);
        Ok(id)
    }

    /// Ends a silence early; false when unknown or over.
    pub async fn expire_silence(&self, id: &str, by: &str, now_ms: i64) -> bool {
        self.expire_silence_as(id, by, "", now_ms).await
    }

    /// [`Engine::expire_silence`] by `who` (a principal's description).
    pub async fn expire_silence_as(&self, id: &str, by: &str, who: &str, now_ms: i64) -> bool {
        let mut st = self.inner.state.lock().await;
        let ok = st.silences.expire(id, by, now_ms);
        if ok {
            st.history.append(Record {
                at_ms: now_ms,
                event: Event::SilenceExpired,
                rule: String::new(),
                group: String::new(),
                detail: audited(format!("{id} by {by}"), who),
            });
            self.save(&st);
        }
        ok
    }

    /// Acknowledges an active alert: it stays listed, is no longer repeated,
    /// and the acknowledgement is in the history. False when no such alert.
    pub async fn acknowledge(
        &self,
        rule: &str,
        group: &str,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> bool {
        self.acknowledge_as(rule, group, by, "", comment, now_ms)
            .await
    }

    /// [`Engine::acknowledge`] by `who` (a principal's description), which
    /// the history records beside the name the alert shows.
    pub async fn acknowledge_as(
        &self,
        rule: &str,
        group: &str,
        by: &str,
        who: &str,
        comment: &str,
        now_ms: i64,
    ) -> bool {
        let key = AlertKey {
            rule: rule.to_owned(),
            group: group.to_owned(),
        };
        let mut st = self.inner.state.lock().await;
        let ok = st.lifecycle.acknowledge(
            &key,
            Ack {
                by: by.to_owned(),
                at_ms: now_ms,
                comment: comment.to_owned(),
            },
        );
        if ok {
            st.persisted.dispatcher.acknowledge(rule, group, by);
            self.acknowledge_in_incident(&mut st, &key, by);
            st.history.append(Record {
                at_ms: now_ms,
                event: Event::Acknowledged,
                rule: rule.to_owned(),
                group: group.to_owned(),
                detail: audited(format!("by {by}: {comment}"), who),
            });
            self.save(&st);
        }
        ok
    }
}
