//! Delivery from the outbox: every due entry is sent through its channel,
//! and the outcome (delivered, retried with backoff, given up) recorded.

use crate::history::{Event, Record};

use super::Engine;

impl Engine {
    /// Sends every notice whose attempt is due; failures are retried with
    /// exponential backoff (5 s doubling to 5 min), permanent refusals and
    /// the last attempt are given up on and recorded.
    pub async fn deliver(&self, now_ms: i64) {
        let due = self.inner.state.lock().await.outbox.due(now_ms);
        if due.is_empty() {
            return;
        }
        let loaded = self.rules();
        // A channel that just failed is not tried again in this pass: its
        // later notices must not overtake the failed one.
        let mut failed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for e in due {
            if failed.contains(&e.channel) {
                continue;
            }
            let d = &e.payload;
            let result = match loaded.channels.get(&d.via) {
                Some(c) => c
                    .send(&d.notice, d.to.as_deref())
                    .await
                    .map_err(|err| (err.is_permanent(), err.to_string())),
                None => Err((
                    false,
                    format!("receiver `{}` is not configured (any more)", d.via),
                )),
            };
            let mut st = self.inner.state.lock().await;
            let st = &mut *st;
            let attempts = e.attempts + 1;
            let (event, detail, r) = match result {
                Ok(()) => (
                    Event::Delivered,
                    format!("{} to {} after {attempts} attempt(s)", e.id, e.channel),
                    st.outbox.delivered(&e.id, &e.channel, now_ms),
                ),
                Err((permanent, why)) => {
                    // Later notices of this receiver wait behind this one
                    // (order per receiver): its retries stay close, so that
                    // they follow soon after the receiver is back, and do
                    // not make it give up sooner than the plain schedule.
                    let held_back = st.outbox.waiting_behind(&e.id, &e.channel);
                    let give_up = permanent
                        || (attempts >= self.inner.cfg.max_attempts
                            && (!held_back || now_ms - e.created_ms >= GIVE_UP_AFTER_MS));
                    if !give_up {
                        failed.insert(e.channel.clone());
                    }
                    let retry = (!give_up).then(|| {
                        let cap = if held_back {
                            HELD_BACK_MAX_BACKOFF_MS
                        } else {
                            300_000
                        };
                        let backoff = (5_000_i64 << (attempts - 1).min(6)).min(cap);
                        now_ms + backoff
                    });
                    tracing::warn!(notice = %e.id, receiver = %e.channel, attempts, give_up, error = %why, "delivery failed");
                    (
                        if give_up {
                            Event::GaveUp
                        } else {
                            Event::Retrying
                        },
                        format!("{} to {}: attempt {attempts}: {why}", e.id, e.channel),
                        st.outbox.failed(&e.id, &e.channel, &why, retry, now_ms),
                    )
                }
            };
            if let Err(err) = r {
                tracing::error!(error = %err, "outbox write failed");
            }
            st.history.append(Record {
                at_ms: now_ms,
                event,
                rule: e.payload.notice.rule.clone(),
                group: String::new(),
                detail,
            });
        }
    }
}

/// Longest wait between retries of a notice that others of its receiver
/// wait behind.
const HELD_BACK_MAX_BACKOFF_MS: i64 = 20_000;

/// A held-back notice still failing after its attempts and this long is
/// given up (the plain schedule's 12 attempts take about as long).
const GIVE_UP_AFTER_MS: i64 = 40 * 60_000;
