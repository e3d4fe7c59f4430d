//! From alert transitions to notices: per receiver and rule, changes are
//! gathered for `group_wait` (so a storm over 40 series becomes one message
//! naming them), then sent at most every `group_interval`; a group still
//! firing and not acknowledged is repeated every `repeat_interval`.
//!
//! Notice ids are `receiver:rule:sequence`, with the sequence persisted: if
//! the process dies after a notice reached the outbox but before this state
//! was saved, the same notice is decided again under the same id and the
//! outbox refuses the duplicate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::notify::{AlertStatus, Notice, NoticeAlert, NoticeKind};
use crate::rule::{Route, Severity};

/// What a notice needs to know about the rule, copied so that a notice can
/// be built after the rule changed or went away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleFacts {
    /// Name.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// The condition as written.
    pub condition: String,
    /// Rule labels.
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Batch {
    receiver: String,
    facts: RuleFacts,
    group_wait_ms: i64,
    group_interval_ms: i64,
    repeat_interval_ms: i64,
    first_change_ms: Option<i64>,
    last_sent_ms: Option<i64>,
    /// Changes not yet notified, by alert group key.
    changed: BTreeMap<String, NoticeAlert>,
    /// Alerts notified as firing and not yet as resolved.
    firing: BTreeMap<String, NoticeAlert>,
    seq: u64,
}

impl Batch {
    /// One alert's change: a resolution this batch never announced as
    /// firing is dropped, and a firing resolved before anyone was told
    /// says nothing.
    fn change(&mut self, group_key: &str, alert: NoticeAlert, now_ms: i64) {
        if alert.status == AlertStatus::Resolved
            && !self.firing.contains_key(group_key)
            && !self.changed.contains_key(group_key)
        {
            return;
        }
        if alert.status == AlertStatus::Resolved
            && self
                .changed
                .get(group_key)
                .is_some_and(|a| a.status != AlertStatus::Resolved)
            && !self.firing.contains_key(group_key)
        {
            // Fired and resolved before anyone was told: say nothing.
            self.changed.remove(group_key);
            if self.changed.is_empty() {
                self.first_change_ms = None;
            }
            return;
        }
        self.first_change_ms.get_or_insert(now_ms);
        self.changed.insert(group_key.to_owned(), alert);
    }
}

/// Every batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dispatcher {
    batches: BTreeMap<String, Batch>,
}

impl Dispatcher {
    /// Records a change of one alert for one receiver on `route`.
    /// A resolved alert whose firing was never notified to this receiver
    /// (it was silenced, say) produces no notice.
    pub fn record(
        &mut self,
        route: &Route,
        receiver: &str,
        facts: &RuleFacts,
        group_key: &str,
        alert: NoticeAlert,
        now_ms: i64,
    ) {
        let id = format!("{receiver}\u{1f}{}", facts.rule);
        let b = self.batches.entry(id).or_insert_with(|| Batch {
            receiver: receiver.to_owned(),
            facts: facts.clone(),
            group_wait_ms: route.group_wait_ms,
            group_interval_ms: route.group_interval_ms,
            repeat_interval_ms: route.repeat_interval_ms,
            first_change_ms: None,
            last_sent_ms: None,
            changed: BTreeMap::new(),
            firing: BTreeMap::new(),
            seq: 0,
        });
        b.facts = facts.clone();
        b.group_wait_ms = route.group_wait_ms;
        b.group_interval_ms = route.group_interval_ms;
        b.repeat_interval_ms = route.repeat_interval_ms;
        b.change(group_key, alert, now_ms);
    }

    /// Records a resolution in every batch of `rule` that was told (or was
    /// about to be told) the alert fires: its routes' receivers and any
    /// escalation step, even if the routes changed since.
    pub fn resolve_everywhere(
        &mut self,
        rule: &str,
        group_key: &str,
        alert: NoticeAlert,
        now_ms: i64,
    ) {
        for b in self.batches.values_mut().filter(|b| b.facts.rule == rule) {
            b.change(group_key, alert.clone(), now_ms);
        }
    }

    /// Takes an alert's untold change out of `rule`'s batches, because an
    /// incident's notice will carry it instead. True when some receiver was
    /// already told it fires: then it stays where it is.
    pub fn withdraw(&mut self, rule: &str, group_key: &str) -> bool {
        let told = self.told(rule, group_key);
        for b in self.batches.values_mut().filter(|b| b.facts.rule == rule) {
            if b.firing.contains_key(group_key) {
                continue;
            }
            if b.changed.remove(group_key).is_some() && b.changed.is_empty() {
                b.first_change_ms = None;
            }
        }
        told
    }

    /// True when some receiver of `rule`'s batches was told this alert fires.
    pub fn told(&self, rule: &str, group_key: &str) -> bool {
        self.batches
            .values()
            .any(|b| b.facts.rule == rule && b.firing.contains_key(group_key))
    }

    /// Marks an alert acknowledged in every batch: it is named as such and
    /// no longer repeated.
    pub fn acknowledge(&mut self, rule: &str, group_key: &str, by: &str) {
        for b in self.batches.values_mut().filter(|b| b.facts.rule == rule) {
            for a in [b.firing.get_mut(group_key), b.changed.get_mut(group_key)]
                .into_iter()
                .flatten()
            {
                a.acked_by = Some(by.to_owned());
            }
        }
    }

    /// When the first batch holding changes becomes due (its `group_wait`
    /// and `group_interval` both over), so the engine can wake for it
    /// rather than find it on its next tick, up to a tick late.
    pub fn next_due(&self) -> Option<i64> {
        self.batches
            .values()
            .filter(|b| !b.changed.is_empty())
            .filter_map(|b| {
                let first = b.first_change_ms?;
                let waited = first + b.group_wait_ms;
                Some(
                    b.last_sent_ms
                        .map_or(waited, |l| waited.max(l + b.group_interval_ms)),
                )
            })
            .min()
    }

    /// Notices whose time has come, with their receivers. The caller puts
    /// them in the outbox, then saves this state.
    pub fn due(&mut self, now_ms: i64) -> Vec<(String, Notice)> {
        let mut out = Vec::new();
        for b in self.batches.values_mut() {
            let ready = b.first_change_ms.is_some_and(|first| {
                now_ms - first >= b.group_wait_ms
                    && b.last_sent_ms
                        .is_none_or(|last| now_ms - last >= b.group_interval_ms)
            });
            if ready && !b.changed.is_empty() {
                let mut alerts: Vec<NoticeAlert> = std::mem::take(&mut b.changed)
                    .into_iter()
                    .map(|(key, a)| {
                        if a.status == AlertStatus::Resolved {
                            b.firing.remove(&key);
                        } else {
                            b.firing.insert(key, a.clone());
                        }
                        a
                    })
                    .collect();
                alerts.sort_by_key(|a| (a.status == AlertStatus::Resolved, a.since_ms));
                let kind = if alerts.iter().any(|a| a.status != AlertStatus::Resolved) {
                    NoticeKind::Firing
                } else {
                    NoticeKind::Resolved
                };
                out.push((b.receiver.clone(), Self::notice(b, kind, alerts, now_ms)));
                b.first_change_ms = None;
                b.last_sent_ms = Some(now_ms);
                continue;
            }
            let unacked: Vec<NoticeAlert> = b
                .firing
                .values()
                .filter(|a| a.acked_by.is_none())
                .cloned()
                .collect();
            if b.changed.is_empty()
                && !unacked.is_empty()
                && b.last_sent_ms
                    .is_some_and(|last| now_ms - last >= b.repeat_interval_ms)
            {
                out.push((
                    b.receiver.clone(),
                    Self::notice(b, NoticeKind::Repeat, unacked, now_ms),
                ));
                b.last_sent_ms = Some(now_ms);
            }
        }
        out
    }

    fn notice(b: &mut Batch, kind: NoticeKind, alerts: Vec<NoticeAlert>, now_ms: i64) -> Notice {
        b.seq += 1;
        Notice {
            id: format!("{}:{}:{}", b.receiver, b.facts.rule, b.seq),
            kind,
            rule: b.facts.rule.clone(),
            severity: b.facts.severity,
            condition: b.facts.condition.clone(),
            labels: b.facts.labels.clone(),
            alerts,
            created_ms: now_ms,
        }
    }

    /// Forgets batches of rules that no longer exist and have nothing firing.
    pub fn prune(&mut self, rule_exists: impl Fn(&str) -> bool) {
        self.batches.retain(|_, b| {
            rule_exists(&b.facts.rule) || !b.firing.is_empty() || !b.changed.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn route() -> Route {
        Route {
            matchers: BTreeMap::new(),
            receivers: vec!["mail".into()],
            group_wait_ms: 30_000,
            group_interval_ms: 300_000,
            repeat_interval_ms: 3_600_000,
            continue_matching: false,
            receiver_at: Vec::new(),
            escalate: Vec::new(),
            escalate_refs: Vec::new(),
            at: panorama_model::FilePosition {
                path: "r.toml".into(),
                line: 1,
                column: 1,
            },
        }
    }

    fn facts() -> RuleFacts {
        RuleFacts {
            rule: "errors".into(),
            severity: crate::rule::Severity::Critical,
            condition: "error_ratio > 5%".into(),
            labels: Vec::new(),
        }
    }

    fn alert(series: &str, status: AlertStatus) -> NoticeAlert {
        NoticeAlert {
            status,
            layer: Some(panorama_model::Layer::Url),
            service: "login".into(),
            series: series.into(),
            host: String::new(),
            value: "9%".into(),
            threshold: "5%".into(),
            summary: String::new(),
            link: "http://x/".into(),
            since_ms: 0,
            acked_by: None,
        }
    }

    #[test]
    fn a_storm_is_one_notice_then_interval_then_repeat() {
        let mut d = Dispatcher::default();
        for i in 0..40 {
            d.record(
                &route(),
                "mail",
                &facts(),
                &format!("s{i}"),
                alert(&format!("s{i}"), AlertStatus::Firing),
                1_000 + i,
            );
        }
        assert!(d.due(20_000).is_empty(), "group_wait not over");
        assert_eq!(
            d.next_due(),
            Some(31_000),
            "the first change plus group_wait"
        );
        let n = d.due(31_100);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].1.alerts.len(), 40);
        assert_eq!(n[0].1.id, "mail:errors:1");
        assert!(d.due(40_000).is_empty(), "nothing new");
        // One resolves: told at the next group interval, not before.
        d.record(
            &route(),
            "mail",
            &facts(),
            "s3",
            alert("s3", AlertStatus::Resolved),
            100_000,
        );
        assert!(d.due(200_000).is_empty());
        assert_eq!(
            d.next_due(),
            Some(331_100),
            "the last notice plus group_interval"
        );
        let n = d.due(331_100);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].1.alerts.len(), 1);
        assert_eq!(n[0].1.kind, NoticeKind::Resolved);
        assert_eq!(d.next_due(), None, "nothing left to tell");
        // Still 39 firing: repeated after the repeat interval.
        let n = d.due(331_100 + 3_600_000);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].1.kind, NoticeKind::Repeat);
        assert_eq!(n[0].1.alerts.len(), 39);
        // All acknowledged: no more repeats.
        for i in 0..40 {
            d.acknowledge("errors", &format!("s{i}"), "ana");
        }
        assert!(d.due(331_100 + 3 * 3_600_000).is_empty());
    }

    #[test]
    fn fired_and_resolved_before_sending_says_nothing_and_unsent_resolves_are_dropped() {
        let mut d = Dispatcher::default();
        d.record(
            &route(),
            "mail",
            &facts(),
            "a",
            alert("a", AlertStatus::Firing),
            0,
        );
        d.record(
            &route(),
            "mail",
            &facts(),
            "a",
            alert("a", AlertStatus::Resolved),
            10_000,
        );
        assert!(d.due(60_000).is_empty());
        d.record(
            &route(),
            "mail",
            &facts(),
            "b",
            alert("b", AlertStatus::Resolved),
            10_000,
        );
        assert!(d.due(600_000).is_empty());
    }
}
