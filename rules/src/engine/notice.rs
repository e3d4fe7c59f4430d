//! Rendering one alert for a notice: its formatted value and threshold,
//! its summary template, and the dashboard link.

use crate::eval::Group;
use crate::notify::template::AlertField;
use crate::notify::{AlertStatus, NoticeAlert};
use crate::rule::Rule;

use super::Engine;

impl Engine {
    pub(super) fn notice_alert(
        &self,
        rule: &Rule,
        group: &Group,
        alert: &crate::lifecycle::Alert,
        status: AlertStatus,
    ) -> NoticeAlert {
        let metric = rule.when.display_metric();
        let fmt = |v: Option<f64>| match (v, metric) {
            (Some(v), Some(m)) => m.format(v),
            (Some(v), None) => format!("{v}"),
            (None, _) => String::new(),
        };
        let (value, threshold) = if rule.when.uses_absent() && metric.is_none() {
            (
                "no data".to_owned(),
                format!("silent for {} min", rule.window_ms / 60_000),
            )
        } else {
            (fmt(alert.value), fmt(alert.threshold))
        };
        let link = self.link(group, alert.fired_ms.unwrap_or(alert.started_ms));
        let summary = rule.summary.render(|f| {
            match f {
                AlertField::Rule => &rule.name,
                AlertField::Layer => group.layer.as_str(),
                AlertField::Service => &group.service,
                AlertField::Series => &group.series,
                AlertField::Host => &group.host,
                AlertField::Value => &value,
                AlertField::Threshold => &threshold,
                AlertField::Severity => rule.severity.as_str(),
                AlertField::Link => &link,
            }
            .to_owned()
        });
        NoticeAlert {
            status,
            layer: Some(group.layer),
            service: group.service.clone(),
            series: group.series.clone(),
            host: group.host.clone(),
            summary,
            value,
            threshold,
            link,
            since_ms: alert.started_ms,
            acked_by: alert.ack.as_ref().map(|a| a.by.clone()),
        }
    }

    pub(super) fn link(&self, g: &Group, at_ms: i64) -> String {
        let mut q = format!("layer={}", g.layer.as_str());
        for (k, v) in [
            ("service", &g.service),
            ("name", &g.series),
            ("host", &g.host),
        ] {
            if !v.is_empty() {
                q.push_str(&format!("&{k}={}", crate::notify::http::percent_encode(v)));
            }
        }
        format!(
            "{}/series?{q}&at={}",
            self.inner.cfg.dashboard_url.trim_end_matches('/'),
            panorama_model::minute_of(at_ms)
        )
    }
}
