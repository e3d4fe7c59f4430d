//! The dependency graph: which parts of the system an alert's series
//! depends on, learned from the series the store has seen and amended by
//! `[[depends]]` in the rules directory.
//!
//! Nodes are strings so that the graph persists and prints as it is:
//!
//! | node | stands for |
//! |---|---|
//! | `svc:S` | service `S`: its url and business series |
//! | `call:S>T` | service `S`'s calls to target `T` |
//! | `cmp:C` | a component instance such as `mysql@db1` |
//! | `host:H` | a host: its infra series |
//!
//! Edges point from a dependent to what it depends on. Some hold by
//! construction and need no data (`svc:S → call:S>T → svc:T`); the rest are
//! learned: a component series links its instance to the service whose log
//! names it, a call target naming a component (`redis:sessions` and
//! `redis@cache1`) links the call to it, and every series links its node to
//! the host it was reported from. Two alerts are connected when one's node
//! reaches the other's along the edges (or they share a node): two services
//! on one host are not connected through it, but both are to an alert on
//! that host.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use panorama_model::Layer;
use serde::{Deserialize, Serialize};

/// How far a path may go; deeper chains are not worth naming a cause for
/// and would only merge unrelated faults in large graphs.
const MAX_HOPS: usize = 6;

/// Where an edge comes from, for the graph page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Seen in the rollups.
    Learned,
    /// Written in a `[[depends]]` table.
    Declared,
}

/// The graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// Dependent node → (dependency node → origin).
    edges: BTreeMap<String, BTreeMap<String, Origin>>,
    /// When the learned part was last refreshed, Unix ms.
    #[serde(default)]
    pub learned_ms: i64,
}

/// One series the store has seen, as the graph learns from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenSeries<'a> {
    /// Layer.
    pub layer: Layer,
    /// Service.
    pub service: &'a str,
    /// Series name.
    pub name: &'a str,
    /// Host.
    pub host: &'a str,
}

/// The component instance a component series stands for: its name's first
/// word when that names an instance (`mysql@db1 slow query`), else that
/// word at the host it was reported from (`mysql slow query` on `db1`).
pub fn component_of(series: &str, host: &str) -> String {
    let word = series.split_whitespace().next().unwrap_or("");
    if word.contains('@') || host.is_empty() {
        word.to_owned()
    } else {
        format!("{word}@{host}")
    }
}

/// The kind of a call target or component: `redis` for `redis:sessions`,
/// `redis@cache1` or `redis`.
fn kind(name: &str) -> &str {
    name.split([':', '@', '/', ' ']).next().unwrap_or(name)
}

/// True when a call target names a component: the same instance, or the
/// same kind when the target names no instance of its own.
pub fn names_component(target: &str, component: &str) -> bool {
    target == component
        || (!target.contains('@') && !kind(target).is_empty() && kind(target) == kind(component))
}

/// The node an alert stands for, from its group's layer, service, series
/// and host (some of them empty, depending on the rule's `group_by`).
pub fn node_of(layer: Layer, service: &str, series: &str, host: &str) -> String {
    match layer {
        Layer::Infra if !host.is_empty() => format!("host:{host}"),
        Layer::Component if !series.is_empty() => format!("cmp:{}", component_of(series, host)),
        Layer::Call if !series.is_empty() && !service.is_empty() => {
            format!("call:{service}>{series}")
        }
        _ if !service.is_empty() => format!("svc:{service}"),
        _ if !host.is_empty() => format!("host:{host}"),
        _ => format!("series:{series}"),
    }
}

impl Graph {
    fn add(&mut self, from: String, to: String, origin: Origin) {
        if from == to {
            return;
        }
        let e = self.edges.entry(from).or_default();
        // A declaration wins over the same edge learned.
        let o = e.entry(to).or_insert(origin);
        if origin == Origin::Declared {
            *o = origin;
        }
    }

    /// Replaces the learned edges with those `seen` implies; declared edges
    /// stay.
    pub fn learn<'a>(&mut self, seen: impl IntoIterator<Item = SeenSeries<'a>>, now_ms: i64) {
        for deps in self.edges.values_mut() {
            deps.retain(|_, o| *o == Origin::Declared);
        }
        self.edges.retain(|_, d| !d.is_empty());
        let mut calls: BTreeSet<(String, String)> = BTreeSet::new();
        let mut components: BTreeSet<String> = BTreeSet::new();
        for s in seen {
            let node = node_of(s.layer, s.service, s.name, s.host);
            match s.layer {
                Layer::Call if !s.service.is_empty() => {
                    self.add(format!("svc:{}", s.service), node.clone(), Origin::Learned);
                    self.add(node.clone(), format!("svc:{}", s.name), Origin::Learned);
                    calls.insert((node.clone(), s.name.to_owned()));
                }
                Layer::Component => {
                    if !s.service.is_empty() {
                        self.add(format!("svc:{}", s.service), node.clone(), Origin::Learned);
                    }
                    components.insert(component_of(s.name, s.host));
                }
                _ => {}
            }
            if s.layer != Layer::Infra && !s.host.is_empty() {
                self.add(node, format!("host:{}", s.host), Origin::Learned);
            }
        }
        for (call, target) in &calls {
            for c in &components {
                if names_component(target, c) {
                    self.add(call.clone(), format!("cmp:{c}"), Origin::Learned);
                }
            }
        }
        self.learned_ms = now_ms;
    }

    /// Replaces the declared edges: `service` depends on each of `on` (a
    /// service or call target, or a component when it names an instance
    /// with `@`, or `host:NAME`).
    pub fn declare(&mut self, depends: &[(String, Vec<String>)]) {
        for deps in self.edges.values_mut() {
            deps.retain(|_, o| *o == Origin::Learned);
        }
        self.edges.retain(|_, d| !d.is_empty());
        for (service, on) in depends {
            for target in on {
                let from = format!("svc:{service}");
                if let Some(h) = target.strip_prefix("host:") {
                    self.add(from, format!("host:{h}"), Origin::Declared);
                } else if target.contains('@') {
                    self.add(from, format!("cmp:{target}"), Origin::Declared);
                } else {
                    self.add(
                        from.clone(),
                        format!("call:{service}>{target}"),
                        Origin::Declared,
                    );
                    self.add(from, format!("svc:{target}"), Origin::Declared);
                }
            }
        }
    }

    /// What `node` depends on directly: its edges, and those that hold by
    /// construction (a call depends on its target's service).
    fn next(&self, node: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .edges
            .get(node)
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(call) = node.strip_prefix("call:")
            && let Some((_, target)) = call.split_once('>')
        {
            out.push(format!("svc:{target}"));
        }
        out
    }

    /// True when `from` depends on `to`, directly or along a few edges.
    /// A service depends on its own calls even before any was seen.
    pub fn reaches(&self, from: &str, to: &str) -> bool {
        if from == to {
            return true;
        }
        if let (Some(s), Some(call)) = (from.strip_prefix("svc:"), to.strip_prefix("call:"))
            && call.split_once('>').is_some_and(|(caller, _)| caller == s)
        {
            return true;
        }
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<(String, usize)> = VecDeque::from([(from.to_owned(), 0)]);
        while let Some((n, depth)) = queue.pop_front() {
            if depth >= MAX_HOPS {
                continue;
            }
            for m in self.next(&n) {
                if m == to {
                    return true;
                }
                if seen.insert(m.clone()) {
                    queue.push_back((m, depth + 1));
                }
            }
        }
        false
    }

    /// True when either node depends on the other.
    pub fn connected(&self, a: &str, b: &str) -> bool {
        self.reaches(a, b) || self.reaches(b, a)
    }

    /// Every edge, for the graph page: (dependent, dependency, origin).
    pub fn edges(&self) -> impl Iterator<Item = (&str, &str, Origin)> {
        self.edges
            .iter()
            .flat_map(|(f, d)| d.iter().map(move |(t, o)| (f.as_str(), t.as_str(), *o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen<'a>(layer: Layer, service: &'a str, name: &'a str, host: &'a str) -> SeenSeries<'a> {
        SeenSeries {
            layer,
            service,
            name,
            host,
        }
    }

    #[test]
    fn a_call_links_its_callers_routes_to_the_target() {
        let g = Graph::default();
        let url = node_of(Layer::Url, "game", "POST /api/pay", "");
        let call = node_of(Layer::Call, "game", "payment-gateway", "");
        assert!(g.reaches(&url, &call), "by construction");
        assert!(g.reaches(&call, "svc:payment-gateway"));
        assert!(!g.connected(&url, "svc:shop"));
    }

    #[test]
    fn components_and_hosts_are_learned_and_hosts_do_not_join_neighbours() {
        let mut g = Graph::default();
        g.learn(
            [
                seen(Layer::Call, "login", "redis:sessions", "web1"),
                seen(Layer::Component, "cache", "redis", "cache1"),
                seen(Layer::Url, "login", "POST /login", "web1"),
                seen(Layer::Url, "shop", "GET /cart", "web1"),
            ],
            1,
        );
        let login = node_of(Layer::Url, "login", "POST /login", "web1");
        let shop = node_of(Layer::Url, "shop", "GET /cart", "web1");
        let redis = node_of(Layer::Component, "cache", "redis", "cache1");
        assert_eq!(redis, "cmp:redis@cache1");
        assert!(g.reaches(&login, &redis), "login calls redis:sessions");
        assert!(!g.connected(&shop, &redis));
        assert!(g.reaches(&shop, "host:web1") && g.reaches(&login, "host:web1"));
        assert!(!g.connected(&login, &shop), "a shared host is not a link");
    }

    #[test]
    fn declarations_survive_learning_and_learning_survives_declarations() {
        let mut g = Graph::default();
        g.declare(&[("game".into(), vec!["mysql@db1".into(), "billing".into()])]);
        g.learn([seen(Layer::Url, "game", "GET /", "web1")], 1);
        assert!(g.reaches("svc:game", "cmp:mysql@db1"));
        assert!(g.reaches("svc:game", "svc:billing"));
        g.declare(&[]);
        assert!(!g.reaches("svc:game", "cmp:mysql@db1"));
        assert!(g.reaches("svc:game", "host:web1"));
    }
}
