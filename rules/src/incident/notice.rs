//! What an incident's page says. A notice stays self-contained (it is
//! stored in the outbox and may be sent after a restart), so the incident's
//! facts travel in its labels and alerts: `incident=N` marks it, the first
//! alert is the probable cause, the rest are its effects, and
//! `incident_cause=now` says the cause changed since the last notice.

use super::Incident;
use crate::notify::{AlertStatus, Notice, NoticeAlert};

/// The label naming the incident.
pub const LABEL: &str = "incident";
/// The label saying the cause is new to this receiver.
pub const CAUSE_LABEL: &str = "incident_cause";

fn label<'a>(n: &'a Notice, k: &str) -> Option<&'a str> {
    n.labels
        .iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

/// `layer service series host value`, the parts that are set.
fn what(a: &NoticeAlert) -> String {
    [
        a.layer_name(),
        a.service.as_str(),
        a.series.as_str(),
        a.host.as_str(),
        a.value.as_str(),
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(" ")
}

/// An effect in a few words: its series (or service, or host) and value.
fn effect(a: &NoticeAlert) -> String {
    let name = [&a.series, &a.service, &a.host]
        .into_iter()
        .find(|s| !s.is_empty())
        .map_or("", |s| s.as_str());
    let mut s = format!("{name} {}", a.value);
    if a.status == AlertStatus::Resolved {
        s.push_str(" (resolved)");
    }
    s
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The one-line title of an incident notice, `None` for other notices:
/// `[FIRING 3] critical incident 7: probable cause call game payment-gateway
/// 39% (payment-gateway-errors); 2 effects: POST /api/pay 39%, payment 39%`.
pub fn headline(n: &Notice) -> Option<String> {
    let id = label(n, LABEL)?;
    let (cause, effects) = n.alerts.split_first()?;
    let lead = if label(n, CAUSE_LABEL) == Some("now") {
        "cause now"
    } else {
        "probable cause"
    };
    let list = effects.iter().map(effect).collect::<Vec<_>>().join(", ");
    Some(format!(
        "[{} {}] {} incident {id}: {lead}: {} ({}); {} effect{}{}{list}",
        n.kind.word(),
        n.alerts.len(),
        n.severity,
        what(cause),
        n.rule,
        effects.len(),
        plural(effects.len()),
        if effects.is_empty() { "" } else { ": " },
    ))
}

/// The probable cause of an incident notice and how many effects it
/// lists, `None` for other notices: all that its SMS text ([`short`]) and
/// its voice call say.
pub fn cause_and_effects(n: &Notice) -> Option<(&NoticeAlert, usize)> {
    label(n, LABEL)?;
    let (cause, effects) = n.alerts.split_first()?;
    Some((cause, effects.len()))
}

/// True when the cause of an incident notice is new to its receiver.
pub fn cause_changed(n: &Notice) -> bool {
    label(n, CAUSE_LABEL) == Some("now")
}

/// The short text of an incident notice for SMS, `None` for other
/// notices: the cause and how many effects, nothing else.
pub fn short(n: &Notice) -> Option<String> {
    let id = label(n, LABEL)?;
    let (cause, effects) = cause_and_effects(n)?;
    let kind = match n.kind {
        crate::notify::NoticeKind::Firing => "FIRING",
        crate::notify::NoticeKind::Repeat => "STILL",
        crate::notify::NoticeKind::Resolved => "RESOLVED",
    };
    let lead = if cause_changed(n) {
        "cause now"
    } else {
        "cause"
    };
    let name = [&cause.service, &cause.series, &cause.host, &cause.value]
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    Some(format!(
        "{kind} incident {id}: {lead} {name}, {effects} effect{}",
        plural(effects)
    ))
}

/// The alerts of an incident's notice: the cause first with the incident's
/// link, then the effects, lowest layer first.
pub fn alerts(i: &Incident, link: &str) -> Vec<NoticeAlert> {
    i.ordered()
        .into_iter()
        .enumerate()
        .map(|(k, m)| {
            let mut a = m.notice.clone();
            if k == 0 {
                a.link = link.to_owned();
                a.summary = if a.summary.is_empty() {
                    "probable cause".to_owned()
                } else {
                    format!("probable cause: {}", a.summary)
                };
            } else {
                // One link per page: the incident's, on the cause.
                a.link = String::new();
                a.summary = format!(
                    "effect ({} layer){}{}",
                    a.layer_name(),
                    if a.summary.is_empty() { "" } else { ": " },
                    a.summary
                );
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NoticeKind;

    fn line(layer: &str, series: &str, value: &str) -> NoticeAlert {
        NoticeAlert {
            status: AlertStatus::Firing,
            layer: Some(layer.parse().expect("a layer")),
            service: "game".into(),
            series: series.into(),
            host: String::new(),
            value: value.into(),
            threshold: String::new(),
            summary: String::new(),
            link: String::new(),
            since_ms: 0,
            acked_by: None,
        }
    }

    #[test]
    fn the_title_names_the_cause_then_the_effects_and_sms_only_counts_them() {
        let n = Notice {
            id: "mail:incident-3:1".into(),
            kind: NoticeKind::Firing,
            rule: "payment-gateway-errors".into(),
            severity: crate::rule::Severity::Critical,
            condition: String::new(),
            labels: vec![(LABEL.into(), "3".into())],
            alerts: vec![
                line("call", "payment-gateway", "39%"),
                line("url", "POST /api/pay", "39%"),
                line("business", "payment", "39%"),
            ],
            created_ms: 0,
        };
        assert_eq!(
            headline(&n).unwrap(),
            "[FIRING 3] critical incident 3: probable cause: call game payment-gateway 39% \
             (payment-gateway-errors); 2 effects: POST /api/pay 39%, payment 39%"
        );
        assert_eq!(
            short(&n).unwrap(),
            "FIRING incident 3: cause game payment-gateway 39%, 2 effects"
        );
    }
}
