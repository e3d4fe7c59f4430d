//! `panorama rules check --explain RULE`: one rule's effective settings,
//! defaults included and marked, so that nobody has to read the source to
//! know what a rule without `flap_window` does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use panorama_model::HOUR_MS;

use super::{
    Align, DEFAULT_EVERY_MS, DEFAULT_GROUP_INTERVAL_MS, DEFAULT_GROUP_WAIT_MS,
    DEFAULT_MIN_INTERVAL_MS, DEFAULT_REPEAT_INTERVAL_MS, DEFAULT_WINDOW_MS, GroupBy, Pattern,
    RuleSet, Severity,
};
use crate::lifecycle::Timing;

/// A duration as a rule file would write it (`90s`, `5m`, `4h`).
pub fn duration(ms: i64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % HOUR_MS == 0 => format!("{}h", ms / HOUR_MS),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

fn pattern(p: &Pattern) -> String {
    match p {
        Pattern::Any => "*".into(),
        Pattern::Exact(e) => e.clone(),
        Pattern::Glob(g) => format!("glob:{}", g.as_str()),
        Pattern::Regex(r) => format!("re:{}", r.as_str()),
    }
}

/// The effective settings of rule `name`, or `None` when there is no such
/// rule. Values equal to the default are marked `(default)`.
pub fn explain(set: &RuleSet, name: &str) -> Option<String> {
    let r = set.rule(name)?;
    let d = Timing::default();
    let mut out = String::new();
    let mut line = |key: &str, value: String, default: bool, why: &str| {
        let mark = if default { " (default)" } else { "" };
        let why = if why.is_empty() {
            String::new()
        } else {
            format!("  — {why}")
        };
        let _ = writeln!(out, "  {key:<16} {value}{mark}{why}");
    };
    let t = &r.timing;
    let head = format!("rule `{}` ({})\n", r.name, r.at);
    line("layer", r.layer.as_str().into(), false, "");
    let mut select = vec![
        format!("service = {}", pattern(&r.service)),
        format!("series = {}", pattern(&r.series)),
        format!("host = {}", pattern(&r.host)),
    ];
    for (k, p) in &r.dims {
        select.push(format!("dims.{k} = {}", pattern(p)));
    }
    line("select", select.join(", "), false, "");
    let group_by = match r.group_by {
        GroupBy::Series => "series",
        GroupBy::Host => "host",
        GroupBy::Service => "service",
    };
    line(
        "group_by",
        group_by.into(),
        r.group_by == GroupBy::Series,
        "one alert per group",
    );
    line("when", r.when_text.clone(), false, "");
    line(
        "recover",
        r.recover_text
            .clone()
            .unwrap_or_else(|| "`when` no longer holds".into()),
        r.recover_text.is_none(),
        "",
    );
    line(
        "min_count",
        r.min_count.to_string(),
        r.min_count == 0,
        "fewer events in the window is neither a breach nor a recovery",
    );
    line(
        "window",
        duration(r.window_ms),
        r.window_ms == DEFAULT_WINDOW_MS,
        "",
    );
    let align_why = match r.align {
        Align::Sliding => {
            "the last `window` of event time: 5 s slices from the collector in this \
             process, whole store minutes for the older part and for other collectors"
        }
        Align::Minute => "whole UTC minutes ending with the open one, from the store",
    };
    line(
        "align",
        r.align.as_str().into(),
        r.align == Align::Sliding,
        align_why,
    );
    line(
        "every",
        duration(r.every_ms),
        r.every_ms == DEFAULT_EVERY_MS,
        "longest time between evaluations; absence and no-data are noticed on it",
    );
    line(
        "min_interval",
        duration(r.min_interval_ms),
        r.min_interval_ms == DEFAULT_MIN_INTERVAL_MS,
        "events for its series trigger an evaluation at most this often",
    );
    line(
        "for",
        duration(t.for_ms),
        t.for_ms == d.for_ms,
        "a breach must hold this long to fire",
    );
    line(
        "keep_firing_for",
        duration(t.keep_firing_for_ms),
        t.keep_firing_for_ms == d.keep_firing_for_ms,
        "",
    );
    line(
        "recover_for",
        duration(t.recover_for_ms),
        t.recover_for_ms == d.recover_for_ms,
        "the recovery must hold this long to resolve",
    );
    line(
        "no_data_for",
        duration(t.no_data_for_ms),
        t.no_data_for_ms == d.no_data_for_ms,
        "a firing alert's data must stay away this long to be `no data`",
    );
    line(
        "flap_window",
        duration(t.flap_window_ms),
        t.flap_window_ms == d.flap_window_ms,
        "",
    );
    line(
        "flap_max",
        t.flap_max.to_string(),
        t.flap_max == d.flap_max,
        "this many firings within flap_window is flapping: held firing until recovered for flap_hold",
    );
    line(
        "flap_hold",
        duration(t.flap_hold_ms),
        t.flap_hold_ms == d.flap_hold_ms,
        "",
    );
    if r.when.uses_absent() {
        line(
            "absent_lookback",
            duration(r.absent_lookback_ms),
            r.absent_lookback_ms == 3_600_000,
            "a silent group is remembered this long",
        );
    }
    line(
        "severity",
        r.severity.as_str().into(),
        r.severity == Severity::Warning,
        "",
    );
    // The labels every alert of the rule carries; routes matching on
    // service, series or host are shown for the rule's exact selectors.
    let mut labels: BTreeMap<String, String> = r.labels.clone();
    labels.insert("alertname".into(), r.name.clone());
    labels.insert("rule".into(), r.name.clone());
    labels.insert("severity".into(), r.severity.as_str().into());
    labels.insert("layer".into(), r.layer.as_str().into());
    for (k, p) in [
        ("service", &r.service),
        ("series", &r.series),
        ("host", &r.host),
    ] {
        if let Some(v) = p.exact() {
            labels.insert(k.into(), v.into());
        }
    }
    let routes = set.routes_for(&labels);
    if routes.is_empty() {
        let _ = writeln!(out, "  routes           none: no receiver is configured");
    }
    for route in routes {
        let _ = writeln!(
            out,
            "  route            {} → {}: group_wait {}{}, group_interval {}{}, repeat_interval {}{}",
            route.at,
            route.receivers.join(", "),
            duration(route.group_wait_ms),
            mark(route.group_wait_ms == DEFAULT_GROUP_WAIT_MS),
            duration(route.group_interval_ms),
            mark(route.group_interval_ms == DEFAULT_GROUP_INTERVAL_MS),
            duration(route.repeat_interval_ms),
            mark(route.repeat_interval_ms == DEFAULT_REPEAT_INTERVAL_MS),
        );
        for e in &route.escalate {
            let _ = writeln!(
                out,
                "  escalate         after {} unacknowledged → {}",
                duration(e.after_ms),
                e.receivers.join(", ")
            );
        }
    }
    Some(head + &out)
}

fn mark(default: bool) -> &'static str {
    if default { " (default)" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lifecycle_default_is_shown_and_marked() {
        let set = super::super::parse_file(
            std::path::Path::new("r.toml"),
            r#"
[[rule]]
name = "pay"
layer = "url"
service = "shop"
window = "1m"
flap_max = 6
when = "error_ratio > 5%"
"#,
        )
        .unwrap();
        let text = explain(&set, "pay").unwrap();
        for want in [
            "rule `pay` (r.toml:2:1)",
            "window           1m\n",
            "align            sliding (default)",
            "every            10s (default)",
            "min_interval     1s (default)",
            "flap_window      5m (default)",
            "flap_max         6  —",
            "flap_hold        15m (default)",
            "no_data_for      1m (default)",
            "routes           none",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert!(explain(&set, "nope").is_none());
        assert_eq!(duration(90_000), "90s");
        assert_eq!(duration(1_500), "1500ms");
    }
}
