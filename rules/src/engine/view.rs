//! What the API and the dashboard read: the alerts, rules, errors,
//! notifications, rotas and budgets of the moment, and the history.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::history::Record;
use crate::lifecycle::{Ack, State};
use crate::notify::AlertStatus;
use crate::outbox::Status;
use crate::rule::ReceiverKind;
use crate::silence::Silence;

use super::{Delivery, Engine, HOUR_MS, alert_id, lock};

/// One alert as the API and the dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// Rule.
    pub rule: String,
    /// Group key.
    pub group: String,
    /// pending, firing, no_data or resolved.
    pub state: State,
    /// Severity.
    pub severity: String,
    /// Layer.
    pub layer: String,
    /// Service.
    pub service: String,
    /// Series.
    pub series: String,
    /// Host.
    pub host: String,
    /// Latest value, formatted.
    pub value: String,
    /// Threshold, formatted.
    pub threshold: String,
    /// The rule's summary for this alert.
    pub summary: String,
    /// Drill-down link.
    pub link: String,
    /// Episode start.
    pub since_ms: i64,
    /// Fired at.
    pub fired_ms: Option<i64>,
    /// Resolved at.
    pub resolved_ms: Option<i64>,
    /// Acknowledgement.
    pub ack: Option<Ack>,
    /// The silence in force, if any.
    pub silenced_by: Option<String>,
}

/// A rule as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// Name.
    pub name: String,
    /// Layer.
    pub layer: String,
    /// Severity.
    pub severity: String,
    /// Condition.
    pub when: String,
    /// Where it is defined.
    pub at: String,
}

/// A rule-load error as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    /// file:line:col.
    pub at: String,
    /// What.
    pub message: String,
}

/// A notification as listed.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationView {
    /// Notice id.
    pub id: String,
    /// Receiver.
    pub receiver: String,
    /// Title.
    pub title: String,
    /// Decided at.
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// pending, delivered or gave_up.
    pub status: Status,
    /// The last error.
    pub last_error: Option<String>,
}

/// Everything `/api/v1/alerts` shows.
#[derive(Debug, Clone, Serialize)]
pub struct AlertsView {
    /// When this view was taken.
    pub now_ms: i64,
    /// Firing alerts.
    pub firing: Vec<AlertView>,
    /// Firing alerts whose data stopped.
    pub no_data: Vec<AlertView>,
    /// Breaching, not yet for long enough.
    pub pending: Vec<AlertView>,
    /// Recently resolved.
    pub resolved: Vec<AlertView>,
    /// Silences, newest first.
    pub silences: Vec<Silence>,
    /// Loaded rules.
    pub rules: Vec<RuleView>,
    /// Why the rules directory's current contents were refused (the rules
    /// listed are the last good ones).
    pub rule_errors: Vec<ErrorView>,
    /// When rules were last loaded successfully.
    pub rules_loaded_ms: i64,
    /// The last store read error, if the latest evaluation failed.
    pub store_error: Option<String>,
    /// Notifications not yet delivered or given up on, newest first.
    pub notifications: Vec<NotificationView>,
    /// Who is on duty now, per rota.
    pub on_duty: Vec<OnDutyView>,
    /// Hourly budgets and their use.
    pub budgets: Vec<BudgetView>,
}

/// Who a rota reaches now.
#[derive(Debug, Clone, Serialize)]
pub struct OnDutyView {
    /// The rota receiver.
    pub receiver: String,
    /// Who is on duty.
    pub person: String,
    /// Until when, Unix ms.
    pub until_ms: i64,
}

/// One hourly budget.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetView {
    /// `receiver:NAME` or `person:NAME`.
    pub key: String,
    /// Sent in the last hour.
    pub used: usize,
    /// Allowed per hour.
    pub limit: u32,
    /// Notices waiting in a digest for this key's channels.
    pub folded: usize,
}

impl NotificationView {
    fn of(e: &crate::outbox::Entry<Delivery>) -> NotificationView {
        NotificationView {
            id: e.id.clone(),
            receiver: e.channel.clone(),
            title: e.payload.notice.title(),
            created_ms: e.created_ms,
            attempts: e.attempts,
            status: e.status.clone(),
            last_error: e.last_error.clone(),
        }
    }
}

impl Engine {
    /// The alert history, newest first.
    ///
    /// # Errors
    /// The history file cannot be read.
    pub async fn history(
        &self,
        rule: Option<&str>,
        text: &str,
        limit: usize,
    ) -> io::Result<Vec<Record>> {
        self.inner
            .state
            .lock()
            .await
            .history
            .search(rule, text, limit)
    }

    /// Every notification in the outbox, newest first.
    pub async fn notifications(&self) -> Vec<NotificationView> {
        let st = self.inner.state.lock().await;
        st.outbox
            .entries()
            .iter()
            .rev()
            .map(NotificationView::of)
            .collect()
    }

    /// What `/api/v1/alerts` shows.
    pub async fn view(&self, now_ms: i64) -> AlertsView {
        let loaded = self.rules();
        let st = self.inner.state.lock().await;
        let mut v = AlertsView {
            now_ms,
            firing: Vec::new(),
            no_data: Vec::new(),
            pending: Vec::new(),
            resolved: Vec::new(),
            silences: st.silences.list().cloned().collect(),
            rules: loaded
                .set
                .rules
                .iter()
                .map(|r| RuleView {
                    name: r.name.clone(),
                    layer: r.layer.as_str().into(),
                    severity: r.severity.as_str().into(),
                    when: r.when_text.clone(),
                    at: r.at.to_string(),
                })
                .collect(),
            rule_errors: lock(&self.inner.load_errors)
                .iter()
                .map(|e| ErrorView {
                    at: e.at.to_string(),
                    message: e.message.clone(),
                })
                .collect(),
            rules_loaded_ms: self.inner.loaded_ms.load(Ordering::Relaxed),
            store_error: lock(&self.inner.store_error).clone(),
            notifications: Vec::new(),
            on_duty: loaded
                .set
                .receivers
                .values()
                .filter_map(|r| match &r.kind {
                    ReceiverKind::Rota(rota) => {
                        let (person, until_ms) = rota.on_duty(now_ms);
                        Some(OnDutyView {
                            receiver: r.name.clone(),
                            person,
                            until_ms,
                        })
                    }
                    ReceiverKind::Channel(_) => None,
                })
                .collect(),
            budgets: Vec::new(),
        };
        let mut budgets: BTreeMap<String, u32> = BTreeMap::new();
        for r in loaded.set.receivers.values() {
            if let Some(n) = r.budget_per_hour {
                budgets.insert(format!("receiver:{}", r.name), n);
            }
        }
        for p in loaded.set.people.values() {
            if let Some(n) = p.sms_per_hour {
                budgets.insert(format!("person:{}", p.name), n);
            }
        }
        v.budgets = budgets
            .into_iter()
            .map(|(key, limit)| {
                let used = st
                    .persisted
                    .sent
                    .get(&key)
                    .map_or(0, |t| t.iter().filter(|t| now_ms - **t < HOUR_MS).count());
                let name = key.split_once(':').map_or("", |(_, n)| n);
                let folded = st
                    .persisted
                    .folded
                    .values()
                    .filter(|f| {
                        f.receiver == name || f.via == name || f.person.as_deref() == Some(name)
                    })
                    .map(|f| f.titles.len())
                    .sum();
                BudgetView {
                    key,
                    used,
                    limit,
                    folded,
                }
            })
            .collect();
        for a in st.lifecycle.alerts() {
            let Some(group) = st.persisted.groups.get(&alert_id(&a.key)) else {
                continue;
            };
            if a.state == State::Resolved
                && a.resolved_ms
                    .is_some_and(|t| now_ms - t > self.inner.cfg.resolved_keep_ms)
            {
                continue;
            }
            let rule = loaded.set.rule(&a.key.rule);
            let (severity, na) = match rule {
                Some(r) => (
                    r.severity.as_str().into(),
                    Some(self.notice_alert(r, group, a, AlertStatus::Firing)),
                ),
                None => (String::new(), None),
            };
            let labels = rule.map(|r| group.labels(r)).unwrap_or_default();
            let view = AlertView {
                rule: a.key.rule.clone(),
                group: a.key.group.clone(),
                state: a.state,
                severity,
                layer: group.layer.as_str().into(),
                service: group.service.clone(),
                series: group.series.clone(),
                host: group.host.clone(),
                value: na.as_ref().map(|n| n.value.clone()).unwrap_or_default(),
                threshold: na.as_ref().map(|n| n.threshold.clone()).unwrap_or_default(),
                summary: na.as_ref().map(|n| n.summary.clone()).unwrap_or_default(),
                link: na.map(|n| n.link).unwrap_or_default(),
                since_ms: a.started_ms,
                fired_ms: a.fired_ms,
                resolved_ms: a.resolved_ms,
                ack: a.ack.clone(),
                silenced_by: st.silences.silencing(&labels, now_ms).map(|s| s.id.clone()),
            };
            match a.state {
                State::Firing => v.firing.push(view),
                State::NoData => v.no_data.push(view),
                State::Pending => v.pending.push(view),
                State::Resolved => v.resolved.push(view),
            }
        }
        v.resolved.sort_by_key(|a| std::cmp::Reverse(a.resolved_ms));
        v.notifications = st
            .outbox
            .entries()
            .iter()
            .rev()
            .filter(|e| !matches!(e.status, Status::Delivered { .. }))
            .take(50)
            .map(NotificationView::of)
            .collect();
        v
    }
}
