//! Voice escalation: a notice for a voice receiver becomes a call plan —
//! the numbers to call in turn (for a rota, the person on duty first, then
//! the others in rotation order), each up to `repeat_call` times — and
//! the plan advances one call at a time: a call not answered, or without a
//! receipt within `answer_timeout`, moves on to the next at once; the
//! acknowledge key stops it and acknowledges the alerts; a plan that runs
//! out of people makes the route's next escalation step due now.
//!
//! Plans live in `engine.json` with the rest of the engine's state and
//! every call is an outbox entry with a deterministic id, so a restart
//! neither calls twice for the same step nor forgets a pending one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Delivery, Engine, StateFiles, alert_id};
use crate::history::{self, Record};
use crate::lifecycle::{Ack, AlertKey, State};
use crate::notify::voice::{Event, VoiceConfig, receipt};
use crate::notify::{AlertStatus, ChannelConfig, Notice, NoticeKind};
use crate::outbox::Status;
use crate::rule::{ReceiverKind, RuleSet};

use panorama_model::{DAY_MS, HOUR_MS, MINUTE_MS};

/// Everything voice escalation remembers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Calls {
    /// Plan id (`notice id@outbox key`) → plan.
    plans: BTreeMap<String, Plan>,
    /// Number → when it was called, for the per-number limits (one day kept).
    placed: BTreeMap<String, Vec<i64>>,
    /// `receiver\x1frule` → `repeat_call` of the escalation step that named it.
    pub(super) step_repeat: BTreeMap<String, u32>,
    /// Alert ids whose calls ran out of people: their next escalation step is due now.
    pub(super) hurry: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    key: String,
    receiver: String,
    via: String,
    notice: Notice,
    /// The alerts this plan pages for, `(rule, group)`.
    alerts: Vec<(String, String)>,
    /// `(person, number)` in calling order.
    callees: Vec<(Option<String>, String)>,
    repeat: u32,
    made: u32,
    current: Option<Call>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Call {
    id: String,
    number: String,
    person: Option<String>,
    /// A receipt said it is over without the key: move on.
    over: bool,
}

/// Why a callback was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// Unknown receiver, not a voice receiver, callbacks off, or a wrong token.
    #[error("unauthorized")]
    Unauthorized,
    /// The body is no receipt.
    #[error(transparent)]
    Bad(#[from] receipt::BadReceipt),
}

fn voice_config<'a>(set: &'a RuleSet, name: &str) -> Option<&'a VoiceConfig> {
    match set.receivers.get(name).map(|r| &r.kind) {
        Some(ReceiverKind::Channel(ChannelConfig::Voice(c))) => Some(c),
        _ => None,
    }
}

fn record(st: &mut StateFiles, now_ms: i64, event: history::Event, rule: &str, detail: String) {
    st.history.append(Record {
        at_ms: now_ms,
        event,
        rule: rule.to_owned(),
        group: String::new(),
        detail,
    });
}

impl Engine {
    /// Takes a delivery whose channel is a voice receiver: firing notices
    /// become (or join) a call plan, resolved ones go to the fallback SMS.
    /// False when the channel is not voice.
    pub(super) fn voice_takes(
        &self,
        st: &mut StateFiles,
        set: &RuleSet,
        key: &str,
        d: &Delivery,
        now_ms: i64,
    ) -> bool {
        let Some(cfg) = voice_config(set, &d.via) else {
            return false;
        };
        let notice = &d.notice;
        let numbers = d.to.clone().unwrap_or_else(|| cfg.to.clone());
        if notice.kind == NoticeKind::Resolved {
            match &cfg.fallback {
                Some(fb) => {
                    self.voice_sms(st, d, fb, &numbers, &format!("{}/sms", notice.id), now_ms)
                }
                None => record(
                    st,
                    now_ms,
                    history::Event::Notified,
                    &notice.rule,
                    format!("{} to {key}: resolved; not called (no fallback)", notice.id),
                ),
            }
            return true;
        }
        let alerts: Vec<(String, String)> = st
            .lifecycle
            .alerts()
            .filter(|a| a.key.rule == notice.rule && a.state == State::Firing && a.ack.is_none())
            .filter(|a| {
                st.persisted.groups.get(&alert_id(&a.key)).is_some_and(|g| {
                    notice.alerts.iter().any(|n| {
                        n.status != AlertStatus::Resolved
                            && n.service == g.service
                            && n.series == g.series
                            && n.host == g.host
                    })
                })
            })
            .map(|a| (a.key.rule.clone(), a.key.group.clone()))
            .collect();
        if alerts.is_empty() {
            return true;
        }
        let calls = &mut st.persisted.voice;
        if let Some(p) = calls
            .plans
            .values_mut()
            .find(|p| p.via == d.via && p.receiver == d.receiver && p.notice.rule == notice.rule)
        {
            // Already calling for this rule: the next call speaks the latest.
            p.notice = notice.clone();
            for a in alerts {
                if !p.alerts.contains(&a) {
                    p.alerts.push(a);
                }
            }
            return true;
        }
        let callees: Vec<(Option<String>, String)> =
            match (&d.person, set.receivers.get(&d.receiver).map(|r| &r.kind)) {
                (Some(on_duty), Some(ReceiverKind::Rota(rota))) => {
                    let start = rota.people.iter().position(|p| p == on_duty).unwrap_or(0);
                    let n = rota.people.len();
                    (0..n)
                        .map(|i| &rota.people[(start + i) % n])
                        .filter_map(|p| {
                            let phone = set.people.get(p)?.phone.clone()?;
                            Some((Some(p.clone()), phone))
                        })
                        .collect()
                }
                _ => numbers.into_iter().map(|n| (None, n)).collect(),
            };
        let repeat = calls
            .step_repeat
            .remove(&format!("{}\u{1f}{}", d.receiver, notice.rule))
            .unwrap_or_else(|| cfg.repeat_call());
        let id = format!("{}@{key}", notice.id);
        calls.plans.insert(
            id,
            Plan {
                key: key.to_owned(),
                receiver: d.receiver.clone(),
                via: d.via.clone(),
                notice: notice.clone(),
                alerts,
                callees,
                repeat,
                made: 0,
                current: None,
            },
        );
        self.voice_step(st, set, now_ms);
        true
    }

    fn voice_sms(
        &self,
        st: &mut StateFiles,
        d: &Delivery,
        fallback: &str,
        numbers: &[String],
        id: &str,
        now_ms: i64,
    ) {
        let mut notice = d.notice.clone();
        notice.id = id.to_owned();
        let sms = Delivery {
            notice,
            receiver: d.receiver.clone(),
            via: fallback.to_owned(),
            to: Some(numbers.to_vec()).filter(|n| !n.is_empty()),
            person: d.person.clone(),
        };
        let title = sms.notice.title();
        match st.outbox.enqueue(id, fallback, sms, now_ms) {
            Ok(true) => record(
                st,
                now_ms,
                history::Event::Notified,
                &d.notice.rule,
                format!(
                    "{id} to {fallback} (SMS for {}): {title}",
                    numbers.join(", ")
                ),
            ),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "outbox write failed; the SMS is decided again"),
        }
    }

    /// Advances every call plan: stops those whose alerts are acknowledged
    /// or over, moves on from calls not answered (by receipt or by
    /// `answer_timeout`), places the next call within the per-number limits.
    pub(super) fn voice_step(&self, st: &mut StateFiles, set: &RuleSet, now_ms: i64) {
        let ids: Vec<String> = st.persisted.voice.plans.keys().cloned().collect();
        for id in ids {
            let Some(mut plan) = st.persisted.voice.plans.get(&id).cloned() else {
                continue;
            };
            let active = plan.alerts.iter().any(|(r, g)| {
                st.lifecycle
                    .get(&AlertKey {
                        rule: r.clone(),
                        group: g.clone(),
                    })
                    .is_some_and(|a| a.state == State::Firing && a.ack.is_none())
            });
            let Some(cfg) = voice_config(set, &plan.via).filter(|_| active) else {
                st.persisted.voice.plans.remove(&id);
                continue;
            };
            let timeout = cfg.answer_timeout_ms().unwrap_or(120_000);
            if let Some(call) = plan.current.clone() {
                let status = st
                    .outbox
                    .entries()
                    .iter()
                    .find(|e| e.id == call.id)
                    .map(|e| e.status.clone());
                let why = match status {
                    Some(Status::Pending) => None,
                    Some(Status::Delivered { .. }) if call.over => {
                        Some(format!("{} did not acknowledge", call.number))
                    }
                    Some(Status::Delivered { at_ms }) if now_ms - at_ms >= timeout => Some(
                        format!("no answer from {} within {} s", call.number, timeout / 1000),
                    ),
                    Some(Status::Delivered { .. }) => None,
                    Some(Status::GaveUp { .. }) => {
                        Some(format!("the call to {} failed", call.number))
                    }
                    None => Some(format!("the call to {} is gone", call.number)),
                };
                let Some(why) = why else {
                    continue;
                };
                record(
                    st,
                    now_ms,
                    history::Event::NotAnswered,
                    &plan.notice.rule,
                    format!("{}: {why}; calling the next", call.id),
                );
                plan.current = None;
            }
            // Place the next call; numbers over their limit get an SMS and
            // are passed over at once.
            let total = plan.callees.len() as u32 * plan.repeat.max(1);
            while plan.current.is_none() && plan.made < total {
                let (person, number) =
                    plan.callees[(plan.made / plan.repeat.max(1)) as usize].clone();
                let attempt = plan.made % plan.repeat.max(1) + 1;
                plan.made += 1;
                let call_id = format!("{id}/call{}", plan.made);
                let times = st.persisted.voice.placed.entry(number.clone()).or_default();
                times.retain(|t| now_ms - t < DAY_MS);
                let limits = cfg.limits();
                let over = [
                    (limits.per_minute, MINUTE_MS, "a minute"),
                    (limits.per_hour, HOUR_MS, "an hour"),
                    (limits.per_day, DAY_MS, "a day"),
                ]
                .into_iter()
                .find_map(|(n, span, what)| {
                    let n = n?;
                    (times.iter().filter(|t| now_ms - **t < span).count() >= n as usize)
                        .then(|| format!("{n} calls {what}"))
                });
                let d = Delivery {
                    notice: Notice {
                        id: call_id.clone(),
                        ..plan.notice.clone()
                    },
                    receiver: plan.receiver.clone(),
                    via: plan.via.clone(),
                    to: Some(vec![number.clone()]),
                    person: person.clone(),
                };
                if let Some(limit) = over {
                    match &cfg.fallback {
                        Some(fb) => {
                            record(
                                st,
                                now_ms,
                                history::Event::CallLimited,
                                &plan.notice.rule,
                                format!(
                                    "{call_id}: {number} is at the provider's limit of {limit}: SMS via `{fb}` instead of a call"
                                ),
                            );
                            self.voice_sms(
                                st,
                                &d,
                                fb,
                                std::slice::from_ref(&number),
                                &format!("{call_id}/sms"),
                                now_ms,
                            );
                        }
                        None => record(
                            st,
                            now_ms,
                            history::Event::CallLimited,
                            &plan.notice.rule,
                            format!(
                                "{call_id}: {number} is at the provider's limit of {limit} and there is no fallback: passed over"
                            ),
                        ),
                    }
                    continue;
                }
                let who = person
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default();
                match st.outbox.enqueue(&call_id, &plan.key, d, now_ms) {
                    Ok(fresh) => {
                        if fresh {
                            st.persisted
                                .voice
                                .placed
                                .entry(number.clone())
                                .or_default()
                                .push(now_ms);
                            record(
                                st,
                                now_ms,
                                history::Event::Called,
                                &plan.notice.rule,
                                format!(
                                    "{call_id}: calling {number}{who}, attempt {attempt}/{}",
                                    plan.repeat
                                ),
                            );
                        }
                        plan.current = Some(Call {
                            id: call_id,
                            number,
                            person,
                            over: false,
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "outbox write failed; the call is placed again next tick");
                        plan.made -= 1;
                        break;
                    }
                }
            }
            if plan.current.is_none() && plan.made >= total {
                record(
                    st,
                    now_ms,
                    history::Event::Escalated,
                    &plan.notice.rule,
                    format!(
                        "{id}: nobody acknowledged the calls; the next escalation step is due now"
                    ),
                );
                for (r, g) in &plan.alerts {
                    st.persisted.voice.hurry.insert(format!("{r}\u{1f}{g}"));
                }
                st.persisted.voice.plans.remove(&id);
                continue;
            }
            st.persisted.voice.plans.insert(id, plan);
        }
        let live: BTreeSet<String> = st
            .lifecycle
            .alerts()
            .filter(|a| a.state == State::Firing && a.ack.is_none())
            .map(|a| alert_id(&a.key))
            .collect();
        st.persisted.voice.hurry.retain(|k| live.contains(k));
        st.persisted
            .voice
            .placed
            .retain(|_, t| t.iter().any(|t| now_ms - t < DAY_MS));
    }

    /// Takes a provider's call receipts for `receiver`, authenticated by
    /// the token of its callback URL. The acknowledge key acknowledges the
    /// plan's alerts (the history says by which number); anything else
    /// moves the plan on to the next call. Returns how many receipts
    /// matched a pending call.
    ///
    /// # Errors
    /// [`ReceiptError::Unauthorized`] for anything but the receiver's
    /// token; [`ReceiptError::Bad`] for a body that is no receipt.
    pub async fn voice_receipt(
        &self,
        receiver: &str,
        token: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<usize, ReceiptError> {
        let loaded = self.rules();
        let authorized = loaded
            .channels
            .get(receiver)
            .and_then(|c| c.voice())
            .is_some_and(|v| v.token_matches(token));
        if !authorized {
            return Err(ReceiptError::Unauthorized);
        }
        let receipts = receipt::parse(body)?;
        let ack_key = voice_config(&loaded.set, receiver)
            .map(|c| c.ack_key().to_owned())
            .unwrap_or_else(|| "1".into());
        let mut st = self.inner.state.lock().await;
        let st = &mut *st;
        let mut matched = 0;
        for r in receipts {
            let found = st.persisted.voice.plans.iter().find_map(|(id, p)| {
                let c = p.current.as_ref()?;
                (p.via == receiver
                    && match &r.call_id {
                        Some(cid) => *cid == c.id,
                        None => receipt::same_number(&c.number, &r.number),
                    })
                .then(|| id.clone())
            });
            let Some(id) = found else {
                record(
                    st,
                    now_ms,
                    history::Event::Receipt,
                    "",
                    format!(
                        "{receiver}: receipt for {} matches no pending call",
                        r.number
                    ),
                );
                continue;
            };
            matched += 1;
            let Some(plan) = st.persisted.voice.plans.get(&id).cloned() else {
                continue;
            };
            let number = plan
                .current
                .as_ref()
                .map(|c| c.number.clone())
                .unwrap_or(r.number.clone());
            match &r.event {
                Event::Key(keys) if keys.contains(ack_key.as_str()) => {
                    for (rule, group) in &plan.alerts {
                        let key = AlertKey {
                            rule: rule.clone(),
                            group: group.clone(),
                        };
                        let ok = st.lifecycle.acknowledge(
                            &key,
                            Ack {
                                by: number.clone(),
                                at_ms: now_ms,
                                comment: "keypress".into(),
                            },
                        );
                        if ok {
                            st.persisted.dispatcher.acknowledge(rule, group, &number);
                            st.history.append(Record {
                                at_ms: now_ms,
                                event: history::Event::Acknowledged,
                                rule: rule.clone(),
                                group: group.clone(),
                                detail: format!("by {number}, keypress"),
                            });
                        }
                    }
                    st.persisted.voice.plans.remove(&id);
                }
                event => {
                    let what = match event {
                        Event::Key(k) => format!("{number} pressed {k}, not {ack_key}"),
                        Event::Answered => format!("{number} answered without pressing {ack_key}"),
                        Event::NotAnswered => format!("{number} did not answer"),
                    };
                    record(
                        st,
                        now_ms,
                        history::Event::Receipt,
                        &plan.notice.rule,
                        format!("{id}: {what}"),
                    );
                    if let Some(p) = st.persisted.voice.plans.get_mut(&id)
                        && let Some(c) = p.current.as_mut()
                    {
                        c.over = true;
                    }
                }
            }
        }
        // The next call is placed by the next tick, on the tick's clock.
        self.save(st);
        Ok(matched)
    }
}
