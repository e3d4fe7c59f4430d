//! Alerts: what fires, is pending, has no data or resolved; acknowledging,
//! silencing and ending silences (operators only); rule-file errors, the
//! rules and the history.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use panorama_rules::engine::{AlertView, SilenceRequest};
use panorama_rules::silence::{MatchOp, Matcher};
use serde::Deserialize;

use super::overview::local_link;
use super::{Chrome, html, now_ms};
use crate::auth::{Session, check_csrf, require_operator};

type Peer = Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

/// The session's user and address, as the alert history records them.
fn who(s: &Session, peer: &Peer) -> String {
    panorama_model::Principal {
        name: s.user.clone(),
        role: s.role,
        credential: panorama_model::Credential::Session,
        addr: peer.as_ref().map(|p| p.0.0.ip()),
    }
    .describe()
}
use crate::{Dashboard, format};

#[derive(Deserialize)]
pub(crate) struct AlertsParams {
    rule: Option<String>,
    q: Option<String>,
    msg: Option<String>,
}

pub(crate) struct Row {
    rule: String,
    group: String,
    severity: String,
    summary: String,
    value: String,
    since: String,
    href: String,
    ack: String,
    silenced: String,
}

pub(crate) struct Section {
    title: &'static str,
    id: &'static str,
    rows: Vec<Row>,
    /// Active alerts can be acknowledged.
    ackable: bool,
}

pub(crate) struct SilenceRow {
    id: String,
    matchers: String,
    ends: String,
    author: String,
    reason: String,
    active: bool,
}

pub(crate) struct HistoryRow {
    at: String,
    event: String,
    rule: String,
    group: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    c: Chrome,
    rules_on: bool,
    msg: String,
    sections: Vec<Section>,
    silences: Vec<SilenceRow>,
    rule_errors: Vec<(String, String)>,
    rules: Vec<(String, String, String, String)>,
    notifications: Vec<(String, String, String, String)>,
    store_error: String,
    history_rule: String,
    history_q: String,
    history: Vec<HistoryRow>,
}

fn rows(alerts: &[AlertView], tz: chrono_tz::Tz) -> Vec<Row> {
    alerts
        .iter()
        .map(|a| Row {
            rule: a.rule.clone(),
            group: a.group.clone(),
            severity: a.severity.clone(),
            summary: a.summary.clone(),
            value: if a.threshold.is_empty() {
                a.value.clone()
            } else {
                format!("{} / {}", a.value, a.threshold)
            },
            since: format::minute(tz, a.resolved_ms.or(a.fired_ms).unwrap_or(a.since_ms)),
            href: local_link(&a.link),
            ack: a
                .ack
                .as_ref()
                .map(|k| format!("{} {}: {}", k.by, format::minute(tz, k.at_ms), k.comment))
                .unwrap_or_default(),
            silenced: a.silenced_by.clone().unwrap_or_default(),
        })
        .collect()
}

pub(crate) async fn page(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Query(p): Query<AlertsParams>,
    req: Request,
) -> Response {
    let tz = d.cfg().time_zone;
    let path = super::here(req.uri());
    let c = Chrome::new(&d, req.headers(), &s, &path, "alerts");
    let t = c.t;
    let now = now_ms();
    let mut page = AlertsPage {
        c,
        rules_on: d.engine().is_some(),
        msg: p.msg.clone().unwrap_or_default(),
        sections: Vec::new(),
        silences: Vec::new(),
        rule_errors: Vec::new(),
        rules: Vec::new(),
        notifications: Vec::new(),
        store_error: String::new(),
        history_rule: p.rule.clone().unwrap_or_default(),
        history_q: p.q.clone().unwrap_or_default(),
        history: Vec::new(),
    };
    if let Some(e) = d.engine() {
        let v = e.view(now).await;
        page.sections = vec![
            Section {
                title: t.firing,
                id: "firing",
                rows: rows(&v.firing, tz),
                ackable: true,
            },
            Section {
                title: t.no_data,
                id: "no-data",
                rows: rows(&v.no_data, tz),
                ackable: true,
            },
            Section {
                title: t.pending,
                id: "pending",
                rows: rows(&v.pending, tz),
                ackable: true,
            },
            Section {
                title: t.resolved,
                id: "resolved",
                rows: rows(&v.resolved, tz),
                ackable: false,
            },
        ];
        page.silences = v
            .silences
            .iter()
            .map(|x| SilenceRow {
                id: x.id.clone(),
                matchers: x
                    .matchers
                    .iter()
                    .map(|m| {
                        let op = match m.op {
                            MatchOp::Eq => "=",
                            MatchOp::Ne => "!=",
                            MatchOp::Regex => "=~",
                        };
                        format!("{}{op}{}", m.label, m.value)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                ends: format::minute(tz, x.ends_ms),
                author: x.author.clone(),
                reason: x.reason.clone(),
                active: x.active(now),
            })
            .collect();
        page.rule_errors = v
            .rule_errors
            .iter()
            .map(|e| (e.at.clone(), e.message.clone()))
            .collect();
        page.rules = v
            .rules
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.layer.clone(),
                    r.severity.clone(),
                    r.when.clone(),
                )
            })
            .collect();
        page.notifications = v
            .notifications
            .iter()
            .map(|n| {
                (
                    n.title.clone(),
                    n.receiver.clone(),
                    n.attempts.to_string(),
                    n.last_error.clone().unwrap_or_default(),
                )
            })
            .collect();
        page.store_error = v.store_error.clone().unwrap_or_default();
        let rule = p.rule.as_deref().filter(|r| !r.is_empty());
        match e.history(rule, p.q.as_deref().unwrap_or(""), 100).await {
            Ok(records) => {
                page.history = records
                    .into_iter()
                    .map(|r| HistoryRow {
                        at: format::minute(tz, r.at_ms),
                        event: r.event.to_string(),
                        rule: r.rule,
                        group: r.group,
                        detail: r.detail,
                    })
                    .collect();
            }
            Err(err) => tracing::warn!(error = %err, "dashboard: reading alert history"),
        }
    }
    html(&page)
}

fn back(msg: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let to = format!("/alerts?msg={}", format::encode(msg));
    if let Ok(v) = to.parse() {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

fn no_rules() -> Response {
    (StatusCode::NOT_FOUND, "alert rules are not configured").into_response()
}

#[derive(Deserialize)]
pub(crate) struct AckForm {
    csrf: String,
    rule: String,
    group: String,
    #[serde(default)]
    comment: String,
}

/// Acknowledges an alert as the logged-in operator.
pub(crate) async fn ack(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    peer: Peer,
    Form(f): Form<AckForm>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf).and_then(|()| require_operator(&s)) {
        return r.into_response();
    }
    let Some(e) = d.engine() else {
        return no_rules();
    };
    if e.acknowledge_as(
        &f.rule,
        &f.group,
        &s.user,
        &who(&s, &peer),
        &f.comment,
        now_ms(),
    )
    .await
    {
        tracing::info!(user = %s.user, rule = %f.rule, group = %f.group, "alert acknowledged");
        back(&format!("acknowledged {} {}", f.rule, f.group))
    } else {
        back(&format!("no active alert {} {}", f.rule, f.group))
    }
}

#[derive(Deserialize)]
pub(crate) struct SilenceForm {
    csrf: String,
    label: String,
    #[serde(default)]
    op: String,
    value: String,
    #[serde(default)]
    label2: String,
    #[serde(default)]
    value2: String,
    duration: String,
    reason: String,
}

/// Creates a silence authored by the logged-in operator.
pub(crate) async fn silence(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    peer: Peer,
    Form(f): Form<SilenceForm>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf).and_then(|()| require_operator(&s)) {
        return r.into_response();
    }
    let Some(e) = d.engine() else {
        return no_rules();
    };
    let op = match f.op.as_str() {
        "ne" => MatchOp::Ne,
        "regex" => MatchOp::Regex,
        _ => MatchOp::Eq,
    };
    let mut matchers = vec![Matcher {
        label: f.label.trim().to_owned(),
        op,
        value: f.value.clone(),
    }];
    if !f.label2.trim().is_empty() {
        matchers.push(Matcher {
            label: f.label2.trim().to_owned(),
            op: MatchOp::Eq,
            value: f.value2.clone(),
        });
    }
    let req = SilenceRequest {
        matchers,
        starts_ms: None,
        ends_ms: None,
        duration: Some(f.duration.trim().to_owned()),
        author: s.user.clone(),
        reason: f.reason.clone(),
    };
    match e.add_silence_as(req, &who(&s, &peer), now_ms()).await {
        Ok(id) => {
            tracing::info!(user = %s.user, %id, "silence added");
            back(&format!("silence {id} added"))
        }
        Err(err) => back(&format!("silence refused: {err}")),
    }
}

#[derive(Deserialize)]
pub(crate) struct ExpireForm {
    csrf: String,
    id: String,
}

/// Ends a silence early.
pub(crate) async fn expire(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    peer: Peer,
    Form(f): Form<ExpireForm>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf).and_then(|()| require_operator(&s)) {
        return r.into_response();
    }
    let Some(e) = d.engine() else {
        return no_rules();
    };
    if e.expire_silence_as(&f.id, &s.user, &who(&s, &peer), now_ms())
        .await
    {
        back(&format!("silence {} expired", f.id))
    } else {
        back(&format!("no silence {} in force", f.id))
    }
}
