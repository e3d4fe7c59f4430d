//! The engine's side of incidents: learning the graph from the store,
//! putting each firing alert in its incident, carrying an incident of
//! several rules in one batch per receiver (so that one notice names the
//! cause and its effects), holding its resolution until the last member
//! resolves, and what the API and dashboard show of it.
//!
//! An incident of one rule's alerts keeps that rule's batch: a storm over
//! 30 routes of one service is still one notice of that rule. When a second
//! rule's alert joins, every member nobody was told about yet moves to the
//! incident's batch.

use std::collections::BTreeMap;

use panorama_model::HOUR_MS;
use serde::Serialize;

use super::tick::{Subject, Tick};
use super::{Engine, StateFiles, alert_id, facts};
use crate::dispatch::RuleFacts;
use crate::eval::Group;
use crate::history::{Event, Record};
use crate::incident::{self, Carrier, Incident, Member, graph};
use crate::lifecycle::{Ack, Alert, AlertKey, State};
use crate::notify::{AlertStatus, Notice, NoticeAlert};
use crate::rule::{Rule, RuleSet, Severity};

/// How often the graph is learned again from the store.
const LEARN_EVERY_MS: i64 = 60_000;
/// How far back series count for the graph.
const LEARN_LOOKBACK_MS: i64 = 3 * HOUR_MS;

fn key_of(id: &str) -> Option<AlertKey> {
    id.split_once('\u{1f}').map(|(r, g)| AlertKey {
        rule: r.to_owned(),
        group: g.to_owned(),
    })
}

fn active(st: &StateFiles, id: &str) -> bool {
    key_of(id)
        .and_then(|k| st.lifecycle.get(&k).map(|a| a.state))
        .is_some_and(|s| matches!(s, State::Firing | State::NoData))
}

/// One member as listed.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Rule.
    pub rule: String,
    /// Group key.
    pub group: String,
    /// Layer.
    pub layer: String,
    /// Service.
    pub service: String,
    /// Series.
    pub series: String,
    /// Host.
    pub host: String,
    /// Severity.
    pub severity: Severity,
    /// pending, firing, no_data or resolved (as the lifecycle has it now).
    pub state: String,
    /// Latest value, formatted.
    pub value: String,
    /// Threshold, formatted.
    pub threshold: String,
    /// Summary.
    pub summary: String,
    /// The series on the dashboard.
    pub link: String,
    /// Pending since.
    pub started_ms: i64,
    /// Fired at.
    pub fired_ms: Option<i64>,
    /// Resolved at.
    pub resolved_ms: Option<i64>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// This is the probable cause.
    pub cause: bool,
}

/// One incident as listed.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    /// Number.
    pub id: u64,
    /// Earliest member's start.
    pub started_ms: i64,
    /// When the last member resolved.
    pub resolved_ms: Option<i64>,
    /// The cause first, then the effects lowest layer first.
    pub members: Vec<MemberView>,
    /// Every active member is acknowledged.
    pub acknowledged: bool,
}

impl IncidentView {
    /// The probable cause.
    pub fn cause(&self) -> Option<&MemberView> {
        self.members.iter().find(|m| m.cause)
    }
}

/// One edge of the graph as listed.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeView {
    /// The dependent node (`svc:game`).
    pub from: String,
    /// What it depends on (`call:game>payment-gateway`).
    pub to: String,
    /// learned or declared.
    pub origin: graph::Origin,
}

impl Engine {
    /// Relearns the graph from the series seen in the last hours, once a
    /// minute, and applies the rules directory's `[[depends]]`. A store
    /// error keeps the graph as it was.
    pub(super) async fn learn_graph(&self, set: &RuleSet, now_ms: i64) {
        let depends: Vec<(String, Vec<String>)> = set
            .depends
            .iter()
            .map(|d| (d.service.clone(), d.on.clone()))
            .collect();
        let due = {
            let mut st = self.inner.state.lock().await;
            st.incidents.declare(&depends);
            (now_ms - st.incidents.graph.learned_ms).abs() >= LEARN_EVERY_MS
        };
        if !due {
            return;
        }
        let q = panorama_store::TotalsQuery::range(now_ms - LEARN_LOOKBACK_MS, now_ms + 60_000);
        match self.inner.store.last_seen(&q).await {
            Ok(rows) => {
                let mut st = self.inner.state.lock().await;
                st.incidents.graph.learn(
                    rows.iter().map(|r| graph::SeenSeries {
                        layer: r.layer,
                        service: &r.service,
                        name: &r.name,
                        host: &r.host,
                    }),
                    now_ms,
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "learning the dependency graph failed; keeping the last one")
            }
        }
    }

    /// Puts a firing alert in its incident and records the join.
    pub(super) fn join_incident(
        &self,
        cx: &mut Tick<'_>,
        a: Subject<'_>,
        alert: &Alert,
        na: &NoticeAlert,
    ) {
        let Subject { rule, group, key } = a;
        let id = alert_id(key);
        let m = Member {
            alert: id.clone(),
            rule: rule.name.clone(),
            group: group.key.clone(),
            layer: group.layer,
            service: group.service.clone(),
            series: group.series.clone(),
            host: group.host.clone(),
            node: graph::node_of(group.layer, &group.service, &group.series, &group.host),
            severity: rule.severity,
            started_ms: alert.started_ms,
            joined_ms: cx.now_ms,
            carrier: Carrier::Rule,
            notice: na.clone(),
        };
        let dispatcher = &cx.st.persisted.dispatcher;
        let j = cx.st.incidents.join(
            m,
            self.inner.cfg.incident_window_ms,
            cx.now_ms,
            |i: &Incident| {
                i.members
                    .iter()
                    .any(|m| m.carrier == Carrier::Incident && dispatcher.told(&i.key(), &m.alert))
            },
        );
        if !j.new {
            return;
        }
        for (gone, alerts) in &j.absorbed {
            // Nobody was told of the absorbed incident as such: its members
            // leave its batch and, as not yet told, move to this one's with
            // the next change (see `record_firing`).
            if let Some(i) = cx.st.incidents.get_mut(j.id) {
                for m in i
                    .members
                    .iter_mut()
                    .filter(|m| m.carrier == Carrier::Incident && alerts.contains(&m.alert))
                {
                    if cx
                        .st
                        .persisted
                        .dispatcher
                        .withdraw(&incident::key(*gone), &m.alert)
                    {
                        continue;
                    }
                    m.carrier = Carrier::Rule;
                }
            }
            cx.st.history.append(Record {
                at_ms: cx.now_ms,
                event: Event::IncidentMerged,
                rule: rule.name.clone(),
                group: group.key.clone(),
                detail: format!(
                    "incident {gone} merged into incident {}: {} explains both",
                    j.id,
                    id.replace('\u{1f}', " ")
                ),
            });
        }
        let cause = j.cause.replace('\u{1f}', " ");
        let detail = if j.cause == id {
            format!("incident {}: probable cause", j.id)
        } else {
            format!(
                "incident {}: effect of probable cause {cause}; suppressed into the incident's notice",
                j.id
            )
        };
        cx.st.history.append(Record {
            at_ms: cx.now_ms,
            event: Event::Incident,
            rule: rule.name.clone(),
            group: group.key.clone(),
            detail,
        });
        if j.cause_changed {
            tracing::info!(incident = j.id, cause = %cause, "incident cause changed");
            cx.st.history.append(Record {
                at_ms: cx.now_ms,
                event: Event::IncidentCause,
                rule: rule.name.clone(),
                group: group.key.clone(),
                detail: format!("incident {}: cause now {cause}", j.id),
            });
        }
    }

    /// The silence holding an effect back because it holds the probable
    /// cause of its incident (of several rules): silencing a known cause
    /// quiets what it explains.
    pub(super) fn cause_silence(
        &self,
        st: &StateFiles,
        set: &RuleSet,
        id: &str,
        now_ms: i64,
    ) -> Option<String> {
        let i = st.incidents.open_with(id)?;
        if i.rules() < 2 || i.cause == id {
            return None;
        }
        let rule = set.rule(&i.cause().map(|c| c.rule.clone())?)?;
        let group = st.persisted.groups.get(&i.cause)?;
        st.silences
            .silencing(&group.labels(rule), now_ms)
            .map(|s| s.id.clone())
    }

    /// Records a firing alert's change where its incident says: its rule's
    /// batch while the incident has one rule, the incident's batch once it
    /// has several (moving members nobody was told about yet).
    pub(super) fn record_firing(&self, cx: &mut Tick<'_>, a: Subject<'_>, na: NoticeAlert) {
        let Subject { rule, group, key } = a;
        let id = alert_id(key);
        let Some(inc) = cx.st.incidents.open_with(&id).cloned() else {
            self.record_in_rule(cx, rule, group, na);
            return;
        };
        if inc.rules() >= 2 {
            let mut moved = Vec::new();
            for m in inc.members.iter().filter(|m| m.carrier == Carrier::Rule) {
                if !cx.st.persisted.dispatcher.withdraw(&m.rule, &m.group) {
                    moved.push(m.alert.clone());
                }
            }
            if let Some(i) = cx.st.incidents.get_mut(inc.id) {
                for m in i.members.iter_mut().filter(|m| moved.contains(&m.alert)) {
                    m.carrier = Carrier::Incident;
                }
            }
            for m in inc.members.iter().filter(|m| moved.contains(&m.alert)) {
                if m.alert == id || !active(cx.st, &m.alert) {
                    continue;
                }
                if let (Some(r), Some(g)) = (
                    cx.set.rule(&m.rule),
                    cx.st.persisted.groups.get(&m.alert).cloned(),
                ) {
                    self.record_in_incident(cx, &inc, r, &g, &m.alert, m.notice.clone());
                }
            }
        }
        let carrier = cx
            .st
            .incidents
            .open_with(&id)
            .and_then(|i| i.member(&id))
            .map_or(Carrier::Rule, |m| m.carrier);
        match carrier {
            Carrier::Incident => self.record_in_incident(cx, &inc, rule, group, &id, na),
            Carrier::Rule => self.record_in_rule(cx, rule, group, na),
        }
    }

    fn record_in_rule(&self, cx: &mut Tick<'_>, rule: &Rule, group: &Group, na: NoticeAlert) {
        let facts = facts(rule);
        for route in cx.set.routes_for(&group.labels(rule)) {
            for receiver in &route.receivers {
                cx.st.persisted.dispatcher.record(
                    &route,
                    receiver,
                    &facts,
                    &group.key,
                    na.clone(),
                    cx.now_ms,
                );
            }
        }
    }

    fn record_in_incident(
        &self,
        cx: &mut Tick<'_>,
        inc: &Incident,
        rule: &Rule,
        group: &Group,
        id: &str,
        na: NoticeAlert,
    ) {
        let facts = RuleFacts {
            rule: inc.key(),
            ..facts(rule)
        };
        for route in cx.set.routes_for(&group.labels(rule)) {
            for receiver in &route.receivers {
                cx.st.persisted.dispatcher.record(
                    &route,
                    receiver,
                    &facts,
                    id,
                    na.clone(),
                    cx.now_ms,
                );
            }
        }
    }

    /// A member resolved: the incident's batch hears of it when the whole
    /// incident has resolved, so that its receivers get one resolved notice.
    pub(super) fn resolve_in_incident(
        &self,
        st: &mut StateFiles,
        key: &AlertKey,
        na: NoticeAlert,
        now_ms: i64,
    ) {
        let id = alert_id(key);
        let states: BTreeMap<String, bool> = st
            .incidents
            .open_with(&id)
            .map(|i| {
                i.members
                    .iter()
                    .map(|m| (m.alert.clone(), m.alert != id && active(st, &m.alert)))
                    .collect()
            })
            .unwrap_or_default();
        let closed = st
            .incidents
            .resolved(&id, na, |a| states.get(a).copied().unwrap_or(false), now_ms)
            .map(|i| i.id);
        if let Some(n) = closed {
            self.close_incident(st, n, now_ms);
        }
    }

    fn close_incident(&self, st: &mut StateFiles, n: u64, now_ms: i64) {
        let Some(i) = st.incidents.get_mut(n) else {
            return;
        };
        for m in &mut i.members {
            m.notice.status = AlertStatus::Resolved;
        }
        let i = i.clone();
        for m in i.members.iter().filter(|m| m.carrier == Carrier::Incident) {
            st.persisted.dispatcher.resolve_everywhere(
                &i.key(),
                &m.alert,
                m.notice.clone(),
                now_ms,
            );
        }
        st.history.append(Record {
            at_ms: now_ms,
            event: Event::IncidentResolved,
            rule: i.cause().map(|c| c.rule.clone()).unwrap_or_default(),
            group: i.cause().map(|c| c.group.clone()).unwrap_or_default(),
            detail: format!("incident {n}: all {} alerts resolved", i.members.len()),
        });
    }

    /// Resolves incidents whose alerts are all gone, and forgets old ones.
    pub(super) fn sweep_incidents(&self, st: &mut StateFiles, now_ms: i64) {
        let ids: Vec<String> = st
            .incidents
            .list
            .iter()
            .filter(|i| i.resolved_ms.is_none())
            .flat_map(|i| i.members.iter().map(|m| m.alert.clone()))
            .collect();
        let states: BTreeMap<String, bool> = ids
            .into_iter()
            .map(|a| (a.clone(), active(st, &a)))
            .collect();
        // A member pending again after recovering is not over either.
        let pending: BTreeMap<String, bool> = states
            .keys()
            .map(|a| {
                let p = key_of(a)
                    .and_then(|k| st.lifecycle.get(&k).map(|x| x.state == State::Pending))
                    .unwrap_or(false);
                (a.clone(), p)
            })
            .collect();
        for n in st.incidents.sweep(
            |a| states.get(a).copied().unwrap_or(false) || pending.get(a).copied().unwrap_or(false),
            now_ms,
        ) {
            self.close_incident(st, n, now_ms);
        }
        st.incidents.prune(now_ms, incident::KEEP_RESOLVED_MS);
    }

    /// Turns a notice of an incident's batch into the incident's notice:
    /// the cause first with the incident's link, its effects after, the
    /// cause's rule as the notice's rule, and `cause now` when the cause
    /// changed since this receiver last heard.
    pub(super) fn incident_notice(
        &self,
        st: &mut StateFiles,
        set: &RuleSet,
        receiver: &str,
        mut notice: Notice,
    ) -> Notice {
        let Some(n) = notice
            .rule
            .strip_prefix("incident-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return notice;
        };
        let link = self.incident_link(n);
        let Some(i) = st.incidents.get_mut(n) else {
            return notice;
        };
        let Some(cause) = i.cause().cloned() else {
            return notice;
        };
        notice.alerts = incident::notice::alerts(i, &link);
        if let Some(s) = i.members.iter().map(|m| m.severity).min() {
            notice.severity = s;
        }
        let rule = set.rule(&cause.rule);
        notice.rule = cause.rule.clone();
        if let Some(r) = rule {
            notice.condition = format!("probable cause: {}", r.when_text);
        }
        let mut labels: Vec<(String, String)> = rule
            .map(|r| {
                r.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        labels.push((incident::notice::LABEL.into(), n.to_string()));
        // A member told alone before the incident formed was, to the
        // reader, the cause: a different one now is a change of cause.
        let told_alone = i
            .members
            .iter()
            .any(|m| m.carrier == Carrier::Rule && m.alert != cause.alert);
        let before = i.named.insert(receiver.to_owned(), cause.alert.clone());
        if before.map_or(told_alone, |b| b != cause.alert) {
            labels.push((incident::notice::CAUSE_LABEL.into(), "now".into()));
        }
        notice.labels = labels;
        notice
    }

    /// The dashboard's page of incident `n`.
    pub(super) fn incident_link(&self, n: u64) -> String {
        format!(
            "{}/incidents/{n}",
            self.inner.cfg.dashboard_url.trim_end_matches('/')
        )
    }

    /// Tells an incident's batches an alert was acknowledged.
    pub(super) fn acknowledge_in_incident(&self, st: &mut StateFiles, key: &AlertKey, by: &str) {
        let id = alert_id(key);
        let Some(n) = st.incidents.open_with(&id).map(|i| i.id) else {
            return;
        };
        st.persisted
            .dispatcher
            .acknowledge(&incident::key(n), &id, by);
        if let Some(m) = st
            .incidents
            .get_mut(n)
            .and_then(|i| i.members.iter_mut().find(|m| m.alert == id))
        {
            m.notice.acked_by = Some(by.to_owned());
        }
    }

    /// Whether an escalation of this alert goes through its incident's
    /// batch (`Some(incident key)`), is the business of its cause alone
    /// (`None` from an effect: skip), or takes its rule's (`Some("")`).
    pub(super) fn escalation_batch(&self, st: &StateFiles, id: &str) -> Option<String> {
        match st.incidents.open_with(id) {
            Some(i) if i.member(id).is_some_and(|m| m.carrier == Carrier::Incident) => {
                (i.cause == id).then(|| i.key())
            }
            _ => Some(String::new()),
        }
    }

    /// Incidents, newest first: open ones, then resolved ones from the last week.
    pub async fn incidents(&self) -> Vec<IncidentView> {
        let st = self.inner.state.lock().await;
        let mut v: Vec<IncidentView> = st
            .incidents
            .list
            .iter()
            .rev()
            .map(|i| view_of(&st, i))
            .collect();
        v.sort_by_key(|i| (i.resolved_ms.is_some(), std::cmp::Reverse(i.started_ms)));
        v
    }

    /// One incident.
    pub async fn incident(&self, n: u64) -> Option<IncidentView> {
        let st = self.inner.state.lock().await;
        st.incidents.get(n).map(|i| view_of(&st, i))
    }

    /// Which incident an alert is in (the open one, else the latest).
    pub async fn incident_of(&self, rule: &str, group: &str) -> Option<u64> {
        let st = self.inner.state.lock().await;
        let id = format!("{rule}\u{1f}{group}");
        st.incidents
            .list
            .iter()
            .rev()
            .find(|i| i.member(&id).is_some())
            .map(|i| i.id)
    }

    /// The dependency graph's edges.
    pub async fn graph(&self) -> (i64, Vec<EdgeView>) {
        let st = self.inner.state.lock().await;
        let g = &st.incidents.graph;
        (
            g.learned_ms,
            g.edges()
                .map(|(from, to, origin)| EdgeView {
                    from: from.to_owned(),
                    to: to.to_owned(),
                    origin,
                })
                .collect(),
        )
    }

    /// Acknowledges every active alert of an incident; how many were.
    /// `None` when there is no such incident.
    pub async fn acknowledge_incident(
        &self,
        n: u64,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Option<usize> {
        let members: Vec<AlertKey> = {
            let st = self.inner.state.lock().await;
            st.incidents
                .get(n)?
                .members
                .iter()
                .filter_map(|m| key_of(&m.alert))
                .collect()
        };
        let mut acked = 0;
        for k in members {
            if self
                .acknowledge(&k.rule, &k.group, by, comment, now_ms)
                .await
            {
                acked += 1;
            }
        }
        Some(acked)
    }
}

fn view_of(st: &StateFiles, i: &Incident) -> IncidentView {
    let members: Vec<MemberView> = i
        .ordered()
        .into_iter()
        .map(|m| {
            let a = key_of(&m.alert).and_then(|k| st.lifecycle.get(&k).cloned());
            let state = a.as_ref().map_or(State::Resolved, |a| a.state);
            MemberView {
                rule: m.rule.clone(),
                group: m.group.clone(),
                layer: m.layer.as_str().into(),
                service: m.service.clone(),
                series: m.series.clone(),
                host: m.host.clone(),
                severity: m.severity,
                state: serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                value: m.notice.value.clone(),
                threshold: m.notice.threshold.clone(),
                summary: m.notice.summary.clone(),
                link: m.notice.link.clone(),
                started_ms: m.started_ms,
                fired_ms: a.as_ref().and_then(|a| a.fired_ms).or(Some(m.joined_ms)),
                resolved_ms: a
                    .as_ref()
                    .and_then(|a| a.resolved_ms)
                    .or(i.resolved_ms.filter(|_| a.is_none())),
                acked_by: a
                    .as_ref()
                    .and_then(|a| a.ack.as_ref().map(|k: &Ack| k.by.clone())),
                cause: m.alert == i.cause,
            }
        })
        .collect();
    let acknowledged = members
        .iter()
        .filter(|m| m.state == "firing" || m.state == "no_data")
        .all(|m| m.acked_by.is_some())
        && members.iter().any(|m| m.acked_by.is_some());
    IncidentView {
        id: i.id,
        started_ms: i.started_ms,
        resolved_ms: i.resolved_ms,
        members,
        acknowledged,
    }
}
