//! Incidents: alerts that started close together and are connected in the
//! dependency graph ([`graph`]) are one incident, paged once, with its
//! probable cause named first.
//!
//! The cause is the member lowest in the chain (infra < component < call <
//! url < business), the earliest among equals; the others are its effects.
//! A member joining later may become the cause, and the next notice says so
//! plainly. An incident resolves when every member has.
//!
//! This module holds the state and its rules, with time as an argument;
//! the engine (`engine/incidents.rs`) wires it to the lifecycle, the
//! dispatcher and the notices, and [`notice`] renders what a page says.

pub mod api;
pub mod graph;
pub mod notice;

use std::collections::{BTreeMap, BTreeSet};

use panorama_model::Layer;
use serde::{Deserialize, Serialize};

use crate::notify::NoticeAlert;
pub use graph::Graph;

/// Alerts that start within this of each other may form one incident.
pub const DEFAULT_WINDOW_MS: i64 = 5 * 60_000;

/// Resolved incidents stay listed this long.
pub const KEEP_RESOLVED_MS: i64 = 7 * 86_400_000;

/// The rank of a layer in the cause chain: lower is more likely the cause.
pub fn rank(layer: Layer) -> u8 {
    match layer {
        Layer::Infra => 0,
        Layer::Component => 1,
        Layer::Call => 2,
        Layer::Url => 3,
        Layer::Business => 4,
    }
}

/// Which dispatcher batch carries a member's notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Carrier {
    /// Its rule's own batch: the incident has only this rule's alerts, or
    /// this one was told alone before another rule's alert joined.
    Rule,
    /// The incident's batch: one notice for all of it.
    Incident,
}

/// One alert of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The alert's id (`rule\x1fgroup`).
    pub alert: String,
    /// Rule.
    pub rule: String,
    /// Group key within the rule.
    pub group: String,
    /// Layer.
    pub layer: Layer,
    /// Service.
    pub service: String,
    /// Series.
    pub series: String,
    /// Host.
    pub host: String,
    /// Its node in the graph.
    pub node: String,
    /// Its rule's severity.
    #[serde(default)]
    pub severity: String,
    /// When its episode started (pending), Unix ms.
    pub started_ms: i64,
    /// When it joined (fired), Unix ms.
    pub joined_ms: i64,
    /// Where its notices go.
    pub carrier: Carrier,
    /// Its latest notice line (value, summary, status).
    pub notice: NoticeAlert,
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Number, unique for the state directory.
    pub id: u64,
    /// The earliest member's start, Unix ms.
    pub started_ms: i64,
    /// When the last member resolved.
    pub resolved_ms: Option<i64>,
    /// The probable cause's alert id.
    pub cause: String,
    /// Members in the order they joined.
    pub members: Vec<Member>,
    /// Receiver → the cause last named to it, so that a change is said.
    #[serde(default)]
    pub named: BTreeMap<String, String>,
}

impl Incident {
    /// The dispatcher's name for the incident's batches.
    pub fn key(&self) -> String {
        key(self.id)
    }

    /// The probable cause.
    pub fn cause(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.alert == self.cause)
    }

    /// The member with this alert id.
    pub fn member(&self, alert: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.alert == alert)
    }

    /// How many rules its members come from: one rule's alerts are that
    /// rule's storm, notified as before; two or more are an incident.
    pub fn rules(&self) -> usize {
        self.members
            .iter()
            .map(|m| m.rule.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Members ordered for a page: the cause, then the effects lowest
    /// layer first, then by start.
    pub fn ordered(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.iter().collect();
        v.sort_by_key(|m| (m.alert != self.cause, rank(m.layer), m.started_ms));
        v
    }

    fn pick_cause(&mut self) {
        if let Some(m) = self
            .members
            .iter()
            .min_by_key(|m| (rank(m.layer), m.started_ms, m.joined_ms))
        {
            self.cause = m.alert.clone();
        }
    }
}

/// The dispatcher's name for incident `id`'s batches.
pub fn key(id: u64) -> String {
    format!("incident-{id}")
}

/// What joining did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The incident.
    pub id: u64,
    /// Its probable cause now.
    pub cause: String,
    /// This alert is a new member (not a new episode of one).
    pub new: bool,
    /// The cause changed by this join.
    pub cause_changed: bool,
}

/// Every incident, open and recently resolved, and the graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incidents {
    next_id: u64,
    /// Oldest first.
    pub list: Vec<Incident>,
    /// The dependency graph.
    #[serde(default)]
    pub graph: Graph,
    /// The `[[depends]]` last applied to the graph.
    #[serde(default)]
    pub declared: Vec<(String, Vec<String>)>,
}

impl Incidents {
    /// The open incident holding this alert, if any.
    pub fn open_with(&self, alert: &str) -> Option<&Incident> {
        self.list
            .iter()
            .rev()
            .find(|i| i.resolved_ms.is_none() && i.member(alert).is_some())
    }

    /// An incident by number.
    pub fn get(&self, id: u64) -> Option<&Incident> {
        self.list.iter().find(|i| i.id == id)
    }

    /// Mutable, by number.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Incident> {
        self.list.iter_mut().find(|i| i.id == id)
    }

    /// Applies `[[depends]]` when it changed.
    pub fn declare(&mut self, depends: &[(String, Vec<String>)]) {
        if self.declared != depends {
            self.graph.declare(depends);
            self.declared = depends.to_vec();
        }
    }

    /// A firing alert joins the open incident it is connected to (a member
    /// within `window_ms` of its start whose node depends on its node or
    /// the other way round), or starts one. A member firing again only
    /// updates its line.
    pub fn join(&mut self, m: Member, window_ms: i64, now_ms: i64) -> Joined {
        if let Some(i) = self
            .list
            .iter_mut()
            .rev()
            .find(|i| i.resolved_ms.is_none() && i.member(&m.alert).is_some())
        {
            if let Some(old) = i.members.iter_mut().find(|x| x.alert == m.alert) {
                old.notice = m.notice;
                old.started_ms = old.started_ms.min(m.started_ms);
            }
            return Joined {
                id: i.id,
                cause: i.cause.clone(),
                new: false,
                cause_changed: false,
            };
        }
        let graph = &self.graph;
        let found = self.list.iter().position(|i| {
            i.resolved_ms.is_none()
                && i.members.iter().any(|x| {
                    (x.started_ms - m.started_ms).abs() <= window_ms
                        && graph.connected(&x.node, &m.node)
                })
        });
        match found {
            Some(pos) => {
                let i = &mut self.list[pos];
                let before = i.cause.clone();
                i.started_ms = i.started_ms.min(m.started_ms);
                i.members.push(m);
                i.pick_cause();
                Joined {
                    id: i.id,
                    cause: i.cause.clone(),
                    new: true,
                    cause_changed: i.cause != before,
                }
            }
            None => {
                self.next_id += 1;
                let id = self.next_id;
                let cause = m.alert.clone();
                self.list.push(Incident {
                    id,
                    started_ms: m.started_ms.min(now_ms),
                    resolved_ms: None,
                    cause: cause.clone(),
                    members: vec![m],
                    named: BTreeMap::new(),
                });
                Joined {
                    id,
                    cause,
                    new: true,
                    cause_changed: false,
                }
            }
        }
    }

    /// A member resolved: its line is kept, and when no member is active
    /// any more (`active` answers per alert id) the incident resolves and
    /// is returned.
    pub fn resolved(
        &mut self,
        alert: &str,
        notice: NoticeAlert,
        active: impl Fn(&str) -> bool,
        now_ms: i64,
    ) -> Option<&Incident> {
        let i = self
            .list
            .iter_mut()
            .rev()
            .find(|i| i.resolved_ms.is_none() && i.member(alert).is_some())?;
        if let Some(m) = i.members.iter_mut().find(|x| x.alert == alert) {
            m.notice = notice;
        }
        if i.members.iter().any(|m| active(&m.alert)) {
            return None;
        }
        i.resolved_ms = Some(now_ms);
        Some(i)
    }

    /// Resolves open incidents none of whose members is active any more
    /// (their alerts were pruned, or their rules removed); returns them.
    pub fn sweep(&mut self, active: impl Fn(&str) -> bool, now_ms: i64) -> Vec<u64> {
        let mut out = Vec::new();
        for i in self.list.iter_mut().filter(|i| i.resolved_ms.is_none()) {
            if !i.members.iter().any(|m| active(&m.alert)) {
                i.resolved_ms = Some(now_ms);
                out.push(i.id);
            }
        }
        out
    }

    /// Forgets incidents resolved longer than `keep_ms` ago.
    pub fn prune(&mut self, now_ms: i64, keep_ms: i64) {
        self.list
            .retain(|i| i.resolved_ms.is_none_or(|t| now_ms - t <= keep_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::AlertStatus;

    fn member(rule: &str, layer: Layer, service: &str, series: &str, started: i64) -> Member {
        Member {
            alert: format!("{rule}\u{1f}{service}/{series}"),
            rule: rule.into(),
            group: format!("{service}/{series}"),
            layer,
            service: service.into(),
            series: series.into(),
            host: String::new(),
            node: graph::node_of(layer, service, series, ""),
            severity: "critical".into(),
            started_ms: started,
            joined_ms: started,
            carrier: Carrier::Incident,
            notice: NoticeAlert {
                status: AlertStatus::Firing,
                layer: layer.as_str().into(),
                service: service.into(),
                series: series.into(),
                host: String::new(),
                value: "1".into(),
                threshold: String::new(),
                summary: String::new(),
                link: String::new(),
                since_ms: started,
                acked_by: None,
            },
        }
    }

    #[test]
    fn a_call_and_its_callers_routes_are_one_incident_with_the_call_as_cause() {
        let mut s = Incidents::default();
        let a = s.join(
            member("pay", Layer::Url, "game", "POST /pay", 0),
            DEFAULT_WINDOW_MS,
            0,
        );
        let b = s.join(
            member("gw", Layer::Call, "game", "gateway", 60_000),
            DEFAULT_WINDOW_MS,
            0,
        );
        assert_eq!(a.id, b.id);
        assert!(b.cause_changed);
        assert_eq!(b.cause, "gw\u{1f}game/gateway");
        let c = s.join(
            member("other", Layer::Url, "shop", "GET /", 0),
            DEFAULT_WINDOW_MS,
            0,
        );
        assert_ne!(c.id, a.id, "unconnected");
        let d = s.join(
            member("late", Layer::Business, "game", "payment", 10 * 60_000),
            DEFAULT_WINDOW_MS,
            0,
        );
        assert_ne!(d.id, a.id, "outside the window");
    }

    #[test]
    fn the_incident_resolves_with_its_last_member() {
        let mut s = Incidents::default();
        let m = member("pay", Layer::Url, "game", "POST /pay", 0);
        let n = m.notice.clone();
        s.join(m, DEFAULT_WINDOW_MS, 0);
        s.join(
            member("gw", Layer::Call, "game", "gateway", 0),
            DEFAULT_WINDOW_MS,
            0,
        );
        let gw = "gw\u{1f}game/gateway";
        assert!(s.resolved(gw, n.clone(), |a| a != gw, 10).is_none());
        assert!(
            s.resolved("pay\u{1f}game/POST /pay", n, |_| false, 20)
                .is_some()
        );
        assert_eq!(s.list[0].resolved_ms, Some(20));
    }
}
