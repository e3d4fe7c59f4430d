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

use panorama_model::{DAY_MS, Layer};
use serde::{Deserialize, Serialize};

use crate::notify::NoticeAlert;
use crate::rule::Severity;
pub use graph::Graph;

/// Alerts that start within this of each other may form one incident.
pub const DEFAULT_WINDOW_MS: i64 = 5 * 60_000;

/// Resolved incidents stay listed this long.
pub const KEEP_RESOLVED_MS: i64 = 7 * DAY_MS;

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
    pub severity: Severity,
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
    /// Incidents merged into this one by the join (this alert explains
    /// their causes too), each with its members' alert ids.
    pub absorbed: Vec<(u64, Vec<String>)>,
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

    /// True when `c` may explain `e`: `e`'s node depends on `c`'s, or both
    /// stand for one part of the system (the same series measured by two
    /// rules, a host's or a component's readings, a service's route and
    /// the business event it serves, lower layer first). Two routes or two
    /// events of one service explain nothing of each other: they fail for
    /// their own reasons unless something below them both is failing.
    pub fn explains(&self, c: &Member, e: &Member) -> bool {
        if c.node != e.node {
            return self.graph.reaches(&e.node, &c.node);
        }
        let distinct = c.node.starts_with("svc:")
            && c.layer == e.layer
            && !c.series.is_empty()
            && !e.series.is_empty()
            && c.series != e.series;
        !distinct && rank(c.layer) <= rank(e.layer)
    }

    /// A firing alert joins the open incidents it belongs to, or starts
    /// one. A member firing again only updates its line.
    ///
    /// It belongs to an incident (one with a member started within
    /// `window_ms` of it) when it explains the incident's cause (it is a
    /// deeper cause: it becomes the cause) or the cause explains it (it is
    /// an effect). Connected only to an incident's effects, it is another
    /// fault (a second dependency of the same service failing) and does not
    /// join. An effect that two incidents' causes explain joins the one
    /// whose cause started nearer to it; a cause of several incidents
    /// merges them into the oldest, except those `told` says were already
    /// paged as incidents of their own (their readers keep their number).
    pub fn join(
        &mut self,
        m: Member,
        window_ms: i64,
        now_ms: i64,
        told: impl Fn(&Incident) -> bool,
    ) -> Joined {
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
                absorbed: Vec::new(),
            };
        }
        let mut targets: Vec<usize> = Vec::new();
        let mut effect_of: Option<(usize, i64)> = None;
        for (pos, i) in self.list.iter().enumerate() {
            if i.resolved_ms.is_some()
                || !i
                    .members
                    .iter()
                    .any(|x| (x.started_ms - m.started_ms).abs() <= window_ms)
            {
                continue;
            }
            let Some(c) = i.cause() else { continue };
            if self.explains(&m, c) {
                targets.push(pos);
            } else if self.explains(c, &m) {
                let gap = (c.started_ms - m.started_ms).abs();
                if effect_of.is_none_or(|(_, g)| gap < g) {
                    effect_of = Some((pos, gap));
                }
            }
        }
        if let Some((pos, _)) = effect_of
            && !targets.contains(&pos)
        {
            targets.push(pos);
        }
        targets.sort_unstable();
        let Some((&keep, rest)) = targets.split_first() else {
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
            return Joined {
                id,
                cause,
                new: true,
                cause_changed: false,
                absorbed: Vec::new(),
            };
        };
        let absorb: Vec<usize> = rest
            .iter()
            .copied()
            .filter(|&p| !told(&self.list[p]))
            .collect();
        let mut absorbed = Vec::new();
        // Highest position first, so that the others (and `keep`, the
        // lowest) stay where they are.
        for &p in absorb.iter().rev() {
            let gone = self.list.remove(p);
            absorbed.push((
                gone.id,
                gone.members.iter().map(|m| m.alert.clone()).collect(),
            ));
            let i = &mut self.list[keep];
            i.started_ms = i.started_ms.min(gone.started_ms);
            i.members.extend(gone.members);
        }
        absorbed.reverse();
        let i = &mut self.list[keep];
        let before = i.cause.clone();
        i.started_ms = i.started_ms.min(m.started_ms);
        i.members.push(m);
        i.pick_cause();
        Joined {
            id: i.id,
            cause: i.cause.clone(),
            new: true,
            cause_changed: i.cause != before,
            absorbed,
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
            severity: Severity::Critical,
            started_ms: started,
            joined_ms: started,
            carrier: Carrier::Incident,
            notice: NoticeAlert {
                status: AlertStatus::Firing,
                layer: Some(layer),
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

    fn on(mut m: Member, host: &str) -> Member {
        m.host = host.into();
        m.node = graph::node_of(m.layer, &m.service, &m.series, host);
        m
    }

    /// Joins at time 0, nothing told yet.
    fn join(s: &mut Incidents, m: Member) -> Joined {
        s.join(m, DEFAULT_WINDOW_MS, 0, |_| false)
    }

    #[test]
    fn a_call_and_its_callers_routes_are_one_incident_with_the_call_as_cause() {
        let mut s = Incidents::default();
        let a = join(&mut s, member("pay", Layer::Url, "game", "POST /pay", 0));
        let b = join(&mut s, member("gw", Layer::Call, "game", "gateway", 60_000));
        assert_eq!(a.id, b.id);
        assert!(b.cause_changed);
        assert_eq!(b.cause, "gw\u{1f}game/gateway");
        let c = join(&mut s, member("other", Layer::Url, "shop", "GET /", 0));
        assert_ne!(c.id, a.id, "unconnected");
        let d = join(
            &mut s,
            member("late", Layer::Business, "game", "payment", 10 * 60_000),
        );
        assert_ne!(d.id, a.id, "outside the window");
    }

    #[test]
    fn two_routes_of_one_service_are_two_faults_until_a_cause_below_joins_them() {
        let mut s = Incidents::default();
        let mut g = Graph::default();
        g.learn(
            [
                graph::SeenSeries {
                    layer: Layer::Url,
                    service: "shop",
                    name: "POST /pay",
                    host: "web1",
                },
                graph::SeenSeries {
                    layer: Layer::Url,
                    service: "shop",
                    name: "POST /login",
                    host: "web1",
                },
            ],
            1,
        );
        s.graph = g;
        let pay = join(
            &mut s,
            on(member("pay", Layer::Url, "shop", "POST /pay", 0), "web1"),
        );
        let login = join(
            &mut s,
            on(
                member("login", Layer::Url, "shop", "POST /login", 0),
                "web1",
            ),
        );
        assert_ne!(pay.id, login.id, "two routes fail for their own reasons");
        // The route's business event is the route's effect.
        let paid = join(
            &mut s,
            member("paid", Layer::Business, "shop", "payment", 0),
        );
        assert_eq!(paid.id, pay.id);
        // The host under both explains both: one incident, the older number.
        let cpu = join(
            &mut s,
            on(member("cpu", Layer::Infra, "", "cpu.busy", 0), "web1"),
        );
        assert_eq!(cpu.id, pay.id);
        assert_eq!(
            cpu.absorbed,
            vec![(login.id, vec!["login\u{1f}shop/POST /login".to_owned()])]
        );
        assert!(cpu.cause_changed);
        assert_eq!(s.list.len(), 1);
        assert_eq!(s.list[0].members.len(), 4);
        assert_eq!(s.list[0].cause, "cpu\u{1f}/cpu.busy");
    }

    #[test]
    fn an_incident_already_paged_keeps_its_number_when_a_cause_below_appears() {
        let mut s = Incidents::default();
        let a = join(
            &mut s,
            on(member("a", Layer::Url, "shop", "GET /a", 0), "web1"),
        );
        let b = join(
            &mut s,
            on(member("b", Layer::Url, "shop", "GET /b", 0), "web1"),
        );
        s.graph.learn(
            ["GET /a", "GET /b"].map(|name| graph::SeenSeries {
                layer: Layer::Url,
                service: "shop",
                name,
                host: "web1",
            }),
            1,
        );
        let told = b.id;
        let cpu = s.join(
            on(member("cpu", Layer::Infra, "", "cpu.busy", 0), "web1"),
            DEFAULT_WINDOW_MS,
            0,
            |i| i.id == told,
        );
        assert_eq!(cpu.id, a.id);
        assert!(cpu.absorbed.is_empty());
        assert_eq!(s.list.len(), 2, "{:?}", s.list);
    }

    #[test]
    fn a_second_dependency_failing_is_its_own_incident_and_effects_go_to_the_nearer_cause() {
        let mut s = Incidents::default();
        s.graph.learn(
            [graph::SeenSeries {
                layer: Layer::Component,
                service: "game",
                name: "redis@sessions ping",
                host: "",
            }],
            1,
        );
        // The gateway fails; the pay route is its effect.
        let gw = join(&mut s, member("gw", Layer::Call, "game", "gateway", 0));
        let pay = join(
            &mut s,
            member("pay", Layer::Url, "game", "POST /pay", 5_000),
        );
        assert_eq!(pay.id, gw.id);
        // The sessions Redis stops answering while it lasts: the game
        // depends on both, but the gateway's calls do not depend on Redis.
        let redis = join(
            &mut s,
            member(
                "redis",
                Layer::Component,
                "game",
                "redis@sessions ping",
                90_000,
            ),
        );
        assert_ne!(redis.id, gw.id, "another fault");
        // A route failing with Redis is the nearer cause's effect.
        let login = join(
            &mut s,
            member("login", Layer::Url, "game", "POST /login", 95_000),
        );
        assert_eq!(login.id, redis.id);
        assert_eq!(s.list.len(), 2);
        assert_eq!(s.list[0].members.len(), 2);
    }

    #[test]
    fn the_incident_resolves_with_its_last_member() {
        let mut s = Incidents::default();
        let m = member("pay", Layer::Url, "game", "POST /pay", 0);
        let n = m.notice.clone();
        join(&mut s, m);
        join(&mut s, member("gw", Layer::Call, "game", "gateway", 0));
        let gw = "gw\u{1f}game/gateway";
        assert!(s.resolved(gw, n.clone(), |a| a != gw, 10).is_none());
        assert!(
            s.resolved("pay\u{1f}game/POST /pay", n, |_| false, 20)
                .is_some()
        );
        assert_eq!(s.list[0].resolved_ms, Some(20));
    }
}
