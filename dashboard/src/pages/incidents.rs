//! Incidents: the list, one incident's timeline (a lane per layer, each
//! alert's pending and firing span, the layer's error ratio and p99 around
//! it, the probable cause highlighted with its samples one click away),
//! acknowledging a whole incident, and the dependency graph.
//!
//! The pages carry their own words (English and Chinese) so that the shared
//! phrase table stays as it is.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Request, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use panorama_model::{Layer, minute_of};
use panorama_rules::engine::{IncidentView, MemberView};
use serde::Deserialize;

use super::overview::local_link;
use super::{Chrome, PageError, html, now_ms};
use crate::auth::{Session, check_csrf, require_operator};
use crate::{Dashboard, chart, format};

/// The words of these pages.
pub(crate) struct Words {
    pub(crate) incidents: &'static str,
    pub(crate) incident: &'static str,
    pub(crate) open: &'static str,
    pub(crate) resolved: &'static str,
    pub(crate) cause: &'static str,
    pub(crate) effects: &'static str,
    pub(crate) started: &'static str,
    pub(crate) samples: &'static str,
    pub(crate) acknowledge_all: &'static str,
    pub(crate) acknowledged: &'static str,
    pub(crate) none: &'static str,
    pub(crate) timeline: &'static str,
    pub(crate) error_ratio: &'static str,
    pub(crate) graph: &'static str,
    pub(crate) graph_note: &'static str,
    pub(crate) depends_on: &'static str,
    pub(crate) learned: &'static str,
    pub(crate) declared: &'static str,
    pub(crate) rules_off: &'static str,
}

const EN: Words = Words {
    incidents: "Incidents",
    incident: "Incident",
    open: "Open",
    resolved: "Resolved",
    cause: "Probable cause",
    effects: "Effects",
    started: "started",
    samples: "Error samples and slowest requests",
    acknowledge_all: "Acknowledge the incident",
    acknowledged: "acknowledged",
    none: "No incident.",
    timeline: "Timeline",
    error_ratio: "error ratio",
    graph: "Dependency graph",
    graph_note: "Learned from the series of the last hours (calls, components, hosts) and [[depends]] in the rules directory.",
    depends_on: "depends on",
    learned: "learned",
    declared: "declared",
    rules_off: "Alert rules are not configured in this panorama.",
};

const ZH: Words = Words {
    incidents: "故障",
    incident: "故障",
    open: "进行中",
    resolved: "已恢复",
    cause: "可能原因",
    effects: "影响",
    started: "开始于",
    samples: "错误样本与最慢请求",
    acknowledge_all: "确认整个故障",
    acknowledged: "已确认",
    none: "没有故障。",
    timeline: "时间线",
    error_ratio: "错误率",
    graph: "依赖图",
    graph_note: "由最近几小时的序列（调用、组件、主机）学习，并加上规则目录中的 [[depends]]。",
    depends_on: "依赖",
    learned: "学习",
    declared: "声明",
    rules_off: "本 panorama 未配置告警规则。",
};

pub(crate) fn words(lang: &str) -> &'static Words {
    if lang.starts_with("zh") { &ZH } else { &EN }
}

/// An incident in a list.
pub(crate) struct Row {
    pub(crate) id: u64,
    pub(crate) href: String,
    pub(crate) cause: String,
    pub(crate) cause_value: String,
    pub(crate) effects: usize,
    pub(crate) effect_names: String,
    pub(crate) started: String,
    pub(crate) resolved: String,
    pub(crate) acked: bool,
    pub(crate) severity: String,
}

fn name(m: &MemberView) -> String {
    [
        m.layer.as_str(),
        m.service.as_str(),
        m.series.as_str(),
        m.host.as_str(),
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(" ")
}

pub(crate) fn row(i: &IncidentView, tz: chrono_tz::Tz) -> Row {
    let cause = i.cause();
    Row {
        id: i.id,
        href: format!("/incidents/{}", i.id),
        cause: cause.map(name).unwrap_or_default(),
        cause_value: cause.map(|c| c.value.clone()).unwrap_or_default(),
        effects: i.members.len().saturating_sub(1),
        effect_names: i
            .members
            .iter()
            .filter(|m| !m.cause)
            .map(|m| format!("{} {}", m.rule, m.value))
            .collect::<Vec<_>>()
            .join(", "),
        started: format::minute(tz, i.started_ms),
        resolved: i
            .resolved_ms
            .map(|t| format::minute(tz, t))
            .unwrap_or_default(),
        acked: i.acknowledged,
        severity: cause
            .map(|c| c.severity.as_str().to_owned())
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct ListPage {
    c: Chrome,
    w: &'static Words,
    rules_on: bool,
    sections: Vec<(&'static str, &'static str, Vec<Row>)>,
}

pub(crate) async fn list(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    req: Request,
) -> Response {
    let tz = d.cfg().time_zone;
    let path = super::here(req.uri());
    let c = Chrome::new(&d, req.headers(), &s, &path, "incidents");
    let w = words(c.lang);
    let (mut open, mut resolved) = (Vec::new(), Vec::new());
    if let Some(e) = d.engine() {
        for i in e.incidents().await {
            if i.resolved_ms.is_some() {
                resolved.push(row(&i, tz));
            } else {
                open.push(row(&i, tz));
            }
        }
    }
    let page = ListPage {
        c,
        w,
        rules_on: d.engine().is_some(),
        sections: vec![(w.open, "open", open), (w.resolved, "resolved", resolved)],
    };
    html(&page)
}

/// One alert's bar on its lane: offsets in percent of the timeline.
struct Span {
    rule: String,
    what: String,
    value: String,
    state: String,
    cause: bool,
    pending_left: f64,
    pending_width: f64,
    firing_left: f64,
    firing_width: f64,
    href: String,
    samples_href: String,
    acked_by: String,
}

struct Lane {
    layer: &'static str,
    title: &'static str,
    spans: Vec<Span>,
    error_ratio: String,
    p99: String,
    error_now: String,
    p99_now: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct OnePage {
    c: Chrome,
    w: &'static Words,
    r: Row,
    from: String,
    to: String,
    lanes: Vec<Lane>,
    cause_rule: String,
    cause_what: String,
    cause_summary: String,
    cause_href: String,
    msg: String,
}

#[derive(Deserialize)]
pub(crate) struct OneParams {
    msg: Option<String>,
}

fn pct_of(t: i64, from: i64, to: i64) -> f64 {
    let span = (to - from).max(1) as f64;
    (((t - from) as f64 / span) * 100.0).clamp(0.0, 100.0)
}

pub(crate) async fn one(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Path(id): Path<u64>,
    axum::extract::Query(p): axum::extract::Query<OneParams>,
    req: Request,
) -> Result<Response, PageError> {
    let tz = d.cfg().time_zone;
    let path = super::here(req.uri());
    let c = Chrome::new(&d, req.headers(), &s, &path, "incidents");
    let Some(i) = (match d.engine() {
        Some(e) => e.incident(id).await,
        None => None,
    }) else {
        return Ok((StatusCode::NOT_FOUND, format!("no incident {id}")).into_response());
    };
    let now = now_ms();
    let end = i.resolved_ms.unwrap_or(now);
    // Ten minutes before the first alert began, five after the end.
    let from = minute_of(i.started_ms) - 10 * 60_000;
    let to = (minute_of(end) + 5 * 60_000).min(minute_of(now) + 60_000);
    let t = c.t;
    let mut lanes = Vec::new();
    for layer in Layer::ALL.iter().rev() {
        let members: Vec<&MemberView> = i
            .members
            .iter()
            .filter(|m| m.layer == layer.as_str())
            .collect();
        if members.is_empty() {
            continue;
        }
        let points = d
            .store()
            .layer_points(*layer, from, to, 60_000)
            .await
            .unwrap_or_default();
        let minutes: Vec<i64> = (0..((to - from) / 60_000))
            .map(|k| from + k * 60_000)
            .collect();
        let at = |m: i64| points.iter().find(|p| p.minute == m);
        let ratio: Vec<Option<f64>> = minutes
            .iter()
            .map(|m| at(*m).filter(|p| p.count > 0).map(|p| p.error_ratio))
            .collect();
        let p99: Vec<Option<f64>> = minutes
            .iter()
            .map(|m| at(*m).and_then(|p| p.p99_ms))
            .collect();
        let spans = members
            .into_iter()
            .map(|m| {
                let fired = m.fired_ms.unwrap_or(m.started_ms);
                let stop = m.resolved_ms.unwrap_or(now);
                Span {
                    rule: m.rule.clone(),
                    what: name(m),
                    value: m.value.clone(),
                    state: m.state.clone(),
                    cause: m.cause,
                    pending_left: pct_of(m.started_ms, from, to),
                    pending_width: pct_of(fired, from, to) - pct_of(m.started_ms, from, to),
                    firing_left: pct_of(fired, from, to),
                    firing_width: (pct_of(stop, from, to) - pct_of(fired, from, to)).max(0.5),
                    href: local_link(&m.link),
                    samples_href: format!("{}#samples", local_link(&m.link)),
                    acked_by: m.acked_by.clone().unwrap_or_default(),
                }
            })
            .collect();
        lanes.push(Lane {
            layer: layer.as_str(),
            title: t.layer(*layer),
            spans,
            error_ratio: chart::sparkline(&ratio, "error ratio"),
            p99: chart::sparkline(&p99, "p99"),
            error_now: ratio
                .iter()
                .flatten()
                .copied()
                .reduce(f64::max)
                .map_or_else(|| "–".into(), format::pct),
            p99_now: format::opt(p99.iter().flatten().copied().reduce(f64::max)),
        });
    }
    let cause = i.cause().cloned();
    let page = OnePage {
        w: words(c.lang),
        c,
        r: row(&i, tz),
        from: format::minute(tz, from),
        to: format::minute(tz, to),
        lanes,
        cause_rule: cause.as_ref().map(|m| m.rule.clone()).unwrap_or_default(),
        cause_what: cause.as_ref().map(name).unwrap_or_default(),
        cause_summary: cause
            .as_ref()
            .map(|m| m.summary.clone())
            .unwrap_or_default(),
        cause_href: cause
            .as_ref()
            .map(|m| format!("{}#samples", local_link(&m.link)))
            .unwrap_or_default(),
        msg: p.msg.unwrap_or_default(),
    };
    Ok(html(&page))
}

#[derive(Deserialize)]
pub(crate) struct AckForm {
    csrf: String,
    id: u64,
    #[serde(default)]
    comment: String,
}

/// Acknowledges every alert of an incident as the logged-in operator.
pub(crate) async fn ack(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Form(f): Form<AckForm>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf).and_then(|()| require_operator(&s)) {
        return r.into_response();
    }
    let Some(e) = d.engine() else {
        return (StatusCode::NOT_FOUND, "alert rules are not configured").into_response();
    };
    let msg = match e
        .acknowledge_incident(f.id, &s.user, &f.comment, now_ms())
        .await
    {
        Some(n) => {
            tracing::info!(user = %s.user, incident = f.id, alerts = n, "incident acknowledged");
            format!("acknowledged {n} alerts")
        }
        None => format!("no incident {}", f.id),
    };
    (
        StatusCode::SEE_OTHER,
        [(
            LOCATION,
            format!("/incidents/{}?msg={}", f.id, format::encode(&msg)),
        )],
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "graph.html")]
struct GraphPage {
    c: Chrome,
    w: &'static Words,
    rules_on: bool,
    learned: String,
    edges: Vec<(String, String, bool)>,
}

pub(crate) async fn graph(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    req: Request,
) -> Response {
    let tz = d.cfg().time_zone;
    let path = super::here(req.uri());
    let c = Chrome::new(&d, req.headers(), &s, &path, "incidents");
    let (learned_ms, edges) = match d.engine() {
        Some(e) => e.graph().await,
        None => (0, Vec::new()),
    };
    let page = GraphPage {
        w: words(c.lang),
        c,
        rules_on: d.engine().is_some(),
        learned: if learned_ms > 0 {
            format::minute(tz, learned_ms)
        } else {
            String::new()
        },
        edges: edges
            .into_iter()
            .map(|e| {
                (
                    e.from,
                    e.to,
                    e.origin == panorama_rules::incident::graph::Origin::Declared,
                )
            })
            .collect(),
    };
    html(&page)
}
