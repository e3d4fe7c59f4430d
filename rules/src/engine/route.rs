//! From a decided notice to outbox entries: escalation steps, rota
//! addressing, hourly budgets and the digests of what they held back.

use std::collections::{BTreeMap, BTreeSet};

use crate::dispatch::RuleFacts;
use crate::history::{Event, Record};
use crate::lifecycle::State;
use crate::notify::{AlertStatus, Notice, NoticeAlert};
use crate::rule::{ReceiverKind, Rule, RuleSet, Severity};

use super::{Delivery, Engine, Folded, HOUR_MS, StateFiles, alert_id};

/// What a notice batch says of its rule.
pub(super) fn facts(rule: &Rule) -> RuleFacts {
    RuleFacts {
        rule: rule.name.clone(),
        severity: rule.severity,
        condition: rule.when_text.clone(),
        labels: rule
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// How the person on duty is reached through a channel receiver: mail
/// gets the email, SMS and chat robots the phone, a webhook no one.
fn contact(set: &RuleSet, person: &str, via: &str) -> Option<Vec<String>> {
    let p = set.people.get(person)?;
    let kind = match set.receivers.get(via).map(|r| &r.kind) {
        Some(ReceiverKind::Channel(c)) => c.kind(),
        _ => return None,
    };
    match kind {
        "mail" | "mailbox" => p.email.clone().map(|e| vec![e]),
        "webhook" => None,
        _ => p.phone.clone().map(|n| vec![n]),
    }
}

/// The hourly budgets a delivery spends: its receiver's, the delivering
/// receiver's, and for SMS the person's.
fn limits(set: &RuleSet, d: &Delivery) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for name in [&d.receiver, &d.via] {
        if let Some(n) = set.receivers.get(name).and_then(|r| r.budget_per_hour) {
            let k = format!("receiver:{name}");
            if !out.iter().any(|(x, _)| *x == k) {
                out.push((k, n));
            }
        }
    }
    let is_sms = matches!(
        set.receivers.get(&d.via).map(|r| &r.kind),
        Some(ReceiverKind::Channel(c)) if c.kind() == "sms"
    );
    if is_sms
        && let Some(p) = d.person.as_ref().and_then(|p| set.people.get(p))
        && let Some(n) = p.sms_per_hour
    {
        out.push((format!("person:{}", p.name), n));
    }
    out
}

fn within(sent: &mut BTreeMap<String, Vec<i64>>, limits: &[(String, u32)], now_ms: i64) -> bool {
    limits.iter().all(|(k, n)| {
        let v = sent.entry(k.clone()).or_default();
        v.retain(|t| now_ms - t < HOUR_MS);
        v.len() < *n as usize
    })
}

fn spend(sent: &mut BTreeMap<String, Vec<i64>>, limits: &[(String, u32)], now_ms: i64) {
    for (k, _) in limits {
        sent.entry(k.clone()).or_default().push(now_ms);
    }
}

impl Engine {
    /// Escalates firing, unacknowledged, unsilenced alerts whose route has
    /// steps due: each step's receivers are told once, and the steps taken
    /// are persisted, so a restart neither repeats a step nor misses one
    /// that fell due while the process was down.
    pub(super) fn escalate(&self, st: &mut StateFiles, set: &RuleSet, now_ms: i64) {
        let firing: Vec<crate::lifecycle::Alert> = st
            .lifecycle
            .alerts()
            .filter(|a| a.state == State::Firing && a.ack.is_none())
            .cloned()
            .collect();
        let live: BTreeSet<String> = firing.iter().map(|a| alert_id(&a.key)).collect();
        for a in firing {
            let id = alert_id(&a.key);
            if st.persisted.held.contains(&id) || st.persisted.suppressed.contains_key(&id) {
                continue;
            }
            let (Some(rule), Some(group), Some(fired)) = (
                set.rule(&a.key.rule),
                st.persisted.groups.get(&id).cloned(),
                a.fired_ms,
            ) else {
                continue;
            };
            let labels = group.labels(rule);
            if st.silences.silencing(&labels, now_ms).is_some() {
                continue;
            }
            // An incident escalates through its cause, in its own batch.
            let Some(batch) = self.escalation_batch(st, &id) else {
                continue;
            };
            let (step_facts, step_group) = if batch.is_empty() {
                (facts(rule), group.key.clone())
            } else {
                (
                    RuleFacts {
                        rule: batch,
                        ..facts(rule)
                    },
                    id.clone(),
                )
            };
            let Some(route) = set
                .routes_for(&labels)
                .into_iter()
                .find(|r| !r.escalate.is_empty())
            else {
                continue;
            };
            let done = st.persisted.escalated.get(&id).copied().unwrap_or(0);
            let mut taken = done;
            // Calls that reached nobody make the next step due now.
            let mut hurry = st.persisted.voice.hurry.remove(&id);
            for (i, step) in route.escalate.iter().enumerate().skip(done) {
                if now_ms - fired < step.after_ms && !std::mem::take(&mut hurry) {
                    break;
                }
                if let Some(n) = step.repeat_call {
                    for receiver in &step.receivers {
                        st.persisted
                            .voice
                            .step_repeat
                            .insert(format!("{receiver}\u{1f}{}", rule.name), n);
                    }
                }
                let na = self.notice_alert(rule, &group, &a, AlertStatus::Firing);
                let step_route = crate::rule::Route {
                    group_wait_ms: 0,
                    ..route.clone()
                };
                for receiver in &step.receivers {
                    st.persisted.dispatcher.record(
                        &step_route,
                        receiver,
                        &step_facts,
                        &step_group,
                        na.clone(),
                        now_ms,
                    );
                }
                st.history.append(Record {
                    at_ms: now_ms,
                    event: Event::Escalated,
                    rule: rule.name.clone(),
                    group: group.key.clone(),
                    detail: format!(
                        "step {} after {} min unacknowledged: {}",
                        i + 1,
                        step.after_ms / 60_000,
                        step.receivers.join(", ")
                    ),
                });
                taken = i + 1;
            }
            if taken != done {
                st.persisted.escalated.insert(id, taken);
            }
        }
        // Acknowledged or resolved alerts stop escalating; a new episode starts over.
        st.persisted.escalated.retain(|k, _| live.contains(k));
    }

    /// Turns a decided notice into outbox entries: one for a channel, one
    /// per delivering receiver for a rota (addressed to whoever is on duty
    /// when the notice was decided). Entries over a budget are folded.
    pub(super) fn enqueue_notice(
        &self,
        st: &mut StateFiles,
        set: &RuleSet,
        receiver: &str,
        notice: Notice,
        now_ms: i64,
    ) {
        let Some(r) = set.receivers.get(receiver) else {
            tracing::error!(receiver, notice = %notice.id, "notice for a receiver that is no longer configured");
            st.history.append(Record {
                at_ms: now_ms,
                event: Event::GaveUp,
                rule: notice.rule.clone(),
                group: String::new(),
                detail: format!("{}: receiver `{receiver}` is not configured", notice.id),
            });
            return;
        };
        let deliveries: Vec<(String, Delivery)> = match &r.kind {
            ReceiverKind::Channel(_) => vec![(
                receiver.to_owned(),
                Delivery {
                    notice: notice.clone(),
                    receiver: receiver.to_owned(),
                    via: receiver.to_owned(),
                    to: None,
                    person: None,
                },
            )],
            ReceiverKind::Rota(rota) => {
                let (person, _) = rota.on_duty(notice.created_ms);
                rota.via
                    .iter()
                    .map(|via| {
                        let to = contact(set, &person, via);
                        (
                            format!("{receiver}/{via}"),
                            Delivery {
                                notice: notice.clone(),
                                receiver: receiver.to_owned(),
                                via: via.clone(),
                                to,
                                person: Some(person.clone()),
                            },
                        )
                    })
                    .collect()
            }
        };
        for (key, d) in deliveries {
            if self.voice_takes(st, set, &key, &d, now_ms) {
                continue;
            }
            let limits = limits(set, &d);
            if !within(&mut st.persisted.sent, &limits, now_ms) {
                let f = st
                    .persisted
                    .folded
                    .entry(key.clone())
                    .or_insert_with(|| Folded {
                        receiver: d.receiver.clone(),
                        via: d.via.clone(),
                        to: d.to.clone(),
                        person: d.person.clone(),
                        ..Folded::default()
                    });
                f.titles.push(notice.title());
                st.history.append(Record {
                    at_ms: now_ms,
                    event: Event::Folded,
                    rule: notice.rule.clone(),
                    group: String::new(),
                    detail: format!(
                        "{} to {key}: hourly budget spent; folded into the next digest",
                        notice.id
                    ),
                });
                continue;
            }
            spend(&mut st.persisted.sent, &limits, now_ms);
            let title = notice.title();
            let who = d
                .person
                .clone()
                .map(|p| format!(" ({p} on duty)"))
                .unwrap_or_default();
            match st.outbox.enqueue(&notice.id, &key, d, now_ms) {
                Ok(true) => st.history.append(Record {
                    at_ms: now_ms,
                    event: Event::Notified,
                    rule: notice.rule.clone(),
                    group: notice
                        .alerts
                        .iter()
                        .map(|a| a.series.clone() + &a.host)
                        .collect::<Vec<_>>()
                        .join(", "),
                    detail: format!("{} to {key}{who}: {title}", notice.id),
                }),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "outbox write failed; the notice is decided again next tick")
                }
            }
        }
    }

    /// Sends one digest per channel key whose budget has room again.
    pub(super) fn release_digests(&self, st: &mut StateFiles, set: &RuleSet, now_ms: i64) {
        let keys: Vec<String> = st.persisted.folded.keys().cloned().collect();
        for key in keys {
            let Some(f) = st.persisted.folded.get(&key).cloned() else {
                continue;
            };
            if f.titles.is_empty() {
                continue;
            }
            let n = f.titles.len();
            let digest = Notice {
                id: format!("digest:{key}:{}", f.seq + 1),
                kind: crate::notify::NoticeKind::Firing,
                rule: format!("digest of {n} held-back notices"),
                severity: Severity::Warning,
                condition: "hourly budget".into(),
                labels: Vec::new(),
                alerts: f
                    .titles
                    .iter()
                    .map(|t| NoticeAlert {
                        status: AlertStatus::Firing,
                        layer: None,
                        service: String::new(),
                        series: t.clone(),
                        host: String::new(),
                        value: String::new(),
                        threshold: String::new(),
                        summary: t.clone(),
                        link: format!(
                            "{}/alerts",
                            self.inner.cfg.dashboard_url.trim_end_matches('/')
                        ),
                        since_ms: now_ms,
                        acked_by: None,
                    })
                    .collect(),
                created_ms: now_ms,
            };
            let d = Delivery {
                notice: digest.clone(),
                receiver: f.receiver.clone(),
                via: f.via.clone(),
                to: f.to.clone(),
                person: f.person.clone(),
            };
            let limits = limits(set, &d);
            if !within(&mut st.persisted.sent, &limits, now_ms) {
                continue;
            }
            spend(&mut st.persisted.sent, &limits, now_ms);
            match st.outbox.enqueue(&digest.id, &key, d, now_ms) {
                Ok(_) => {
                    st.history.append(Record {
                        at_ms: now_ms,
                        event: Event::Notified,
                        rule: digest.rule.clone(),
                        group: String::new(),
                        detail: format!("{} to {key}: digest of {n}", digest.id),
                    });
                    if let Some(f) = st.persisted.folded.get_mut(&key) {
                        f.titles.clear();
                        f.seq += 1;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "outbox write failed; the digest is tried again next tick")
                }
            }
        }
    }
}
