//! One series: its charts, the samples of a chosen minute, and the alerts
//! about it. Alert mails link here (`/series?layer=&service=&name=&host=&at=`),
//! so the page opens at the alert's minute and must read well on a phone.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use panorama_model::{Layer, MINUTE_MS, Point, Sample, SampleKind, minute_of};
use panorama_rules::engine::AlertView;
use panorama_store::{SampleQuery, SeriesQuery};
use serde::Deserialize;

use super::layer::{RANGES, Range, RangeQuery, bucket_times};
use super::overview::local_link;
use super::{Chrome, PageError, html, now_ms, parse_layer};
use crate::auth::Session;
use crate::chart::{Line, Unit, line_chart};
use crate::{Dashboard, format};

/// Samples shown for a minute, of all kinds together.
const SAMPLES: usize = 60;

#[derive(Deserialize)]
pub(crate) struct SeriesParams {
    layer: String,
    service: Option<String>,
    name: Option<String>,
    host: Option<String>,
    at: Option<String>,
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

pub(crate) struct SampleRow {
    pub(crate) time: String,
    pub(crate) host: String,
    pub(crate) code: String,
    pub(crate) latency: String,
    pub(crate) raw: String,
    pub(crate) fields: Vec<(String, String)>,
}

pub(crate) struct SampleGroup {
    pub(crate) title: &'static str,
    pub(crate) id: &'static str,
    pub(crate) rows: Vec<SampleRow>,
}

pub(crate) struct AlertRow {
    pub(crate) state: String,
    pub(crate) severity: String,
    pub(crate) rule: String,
    pub(crate) summary: String,
    pub(crate) since: String,
    pub(crate) href: String,
}

#[derive(Template)]
#[template(path = "series.html")]
struct SeriesPage {
    c: Chrome,
    layer: &'static str,
    layer_title: &'static str,
    service: String,
    name: String,
    host: String,
    range: String,
    ranges: Vec<&'static str>,
    base: String,
    charts: Vec<String>,
    at_label: String,
    at_point: Option<(String, String, String, String)>,
    groups: Vec<SampleGroup>,
    alerts: Vec<AlertRow>,
}

/// Points merged into buckets for long ranges: counts summed, percentiles
/// the highest minute's (a bound; exact merging needs the histograms).
fn bucketed(points: &[Point], times: &[i64], bucket: i64) -> Vec<Option<Point>> {
    let mut out: Vec<Option<Point>> = vec![None; times.len()];
    let Some(&first) = times.first() else {
        return out;
    };
    let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    };
    for p in points {
        let i = ((p.minute - first) / bucket) as usize;
        let Some(slot) = out.get_mut(i) else { continue };
        match slot {
            None => *slot = Some(p.clone()),
            Some(acc) => {
                let lat = |p: &Point| p.avg_ms.map(|a| (a * p.count as f64, p.count as f64));
                let (s1, n1) = lat(acc).unwrap_or((0.0, 0.0));
                let (s2, n2) = lat(p).unwrap_or((0.0, 0.0));
                acc.count += p.count;
                acc.errors += p.errors;
                acc.avg_ms = (n1 + n2 > 0.0).then(|| (s1 + s2) / (n1 + n2));
                acc.p50_ms = max(acc.p50_ms, p.p50_ms);
                acc.p90_ms = max(acc.p90_ms, p.p90_ms);
                acc.p99_ms = max(acc.p99_ms, p.p99_ms);
                acc.max_ms = max(acc.max_ms, p.max_ms);
                acc.value = max(acc.value, p.value);
            }
        }
    }
    for p in out.iter_mut().flatten() {
        p.rate = p.count as f64 / (bucket as f64 / 1000.0);
        p.error_ratio = if p.count == 0 {
            0.0
        } else {
            p.errors as f64 / p.count as f64
        };
    }
    out
}

fn related(a: &AlertView, layer: Layer, service: &str, name: &str) -> bool {
    a.layer == layer.as_str()
        && (a.service.is_empty() || a.service == service)
        && (a.series.is_empty() || a.series == name)
}

pub(crate) async fn page(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Query(q): Query<SeriesParams>,
    req: Request,
) -> Result<Response, PageError> {
    let tz = d.cfg().time_zone;
    let layer = parse_layer(&q.layer)?;
    let none_if_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (service, name, host) = (
        none_if_empty(&q.service),
        none_if_empty(&q.name),
        none_if_empty(&q.host),
    );
    let now = now_ms();
    let at = match q.at.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => Some(minute_of(format::parse_time(tz, a).ok_or_else(|| {
            PageError::BadRequest(format!("`at` {a:?}: expected Unix ms or a time"))
        })?)),
        None => None,
    };
    // An alert link names a minute but no range: show the hour around it.
    let range = match (at, &q.range) {
        (Some(at), None) => Range {
            name: "custom".into(),
            from: at - 50 * MINUTE_MS,
            to: (at + 10 * MINUTE_MS)
                .min(minute_of(now) + MINUTE_MS)
                .max(at + MINUTE_MS),
        },
        _ => Range::parse(
            &RangeQuery {
                range: q.range.clone(),
                from: q.from.clone(),
                to: q.to.clone(),
                sort: None,
                all: None,
            },
            tz,
            now,
            "1h",
        )?,
    };
    let sq = SeriesQuery {
        layer,
        service: service.clone(),
        name: name.clone(),
        host: host.clone(),
        dims: Default::default(),
        from_ms: range.from,
        to_ms: range.to,
    };
    // The charts in buckets, merged by the store (which reads whole hours
    // from its hourly tier when the buckets are hours); the minute the
    // samples and figures are of from minutes: the one asked for, else the
    // newest with errors (else the newest) of the newest bucket with errors
    // (else the newest).
    let bucket = range.bucket();
    let charted = d.store().series_points(&sq, bucket).await?;
    let minutes_of = |from: i64, to: i64| SeriesQuery {
        from_ms: from.max(range.from),
        to_ms: to.min(range.to).max(from.max(range.from) + MINUTE_MS),
        ..sq.clone()
    };
    let (at, points) = match at {
        Some(m) => (
            Some(m),
            d.store().read_series(&minutes_of(m, m + MINUTE_MS)).await?,
        ),
        None => match charted
            .iter()
            .rev()
            .find(|p| p.errors > 0)
            .or(charted.last())
        {
            Some(b) => {
                let q = minutes_of(b.minute, b.minute + bucket);
                let pts = d.store().read_series(&q).await?;
                let m = pts
                    .iter()
                    .rev()
                    .find(|p| p.errors > 0)
                    .or(pts.last())
                    .map(|p| p.minute);
                (m, pts)
            }
            None => (None, Vec::new()),
        },
    };
    let samples = match at {
        Some(m) => d
            .store()
            .samples(&SampleQuery {
                layer,
                service: service.clone(),
                name: name.clone(),
                minute_ms: m,
                kind: None,
                limit: SAMPLES,
            })
            .await?
            .into_iter()
            .filter(|s| host.as_ref().is_none_or(|h| &s.key.host == h))
            .collect(),
        None => Vec::<Sample>::new(),
    };
    let t = crate::i18n::texts(crate::auth::lang(&d, req.headers()));
    let times = bucket_times(range.from, range.to, bucket);
    let labels: Vec<String> = times.iter().map(|&m| format::short(tz, m)).collect();
    let pts = bucketed(&charted, &times, bucket);
    let col = |f: fn(&Point) -> Option<f64>| pts.iter().map(|p| p.as_ref().and_then(f)).collect();
    let service_s = service.clone().unwrap_or_default();
    let name_s = name.clone().unwrap_or_default();
    let host_s = host.clone().unwrap_or_default();
    let mut base_pairs = vec![
        ("layer", layer.as_str().to_owned()),
        ("service", service_s.clone()),
        ("name", name_s.clone()),
        ("host", host_s.clone()),
        ("range", range.name.clone()),
    ];
    if range.name == "custom" {
        base_pairs.push(("from", range.from.to_string()));
        base_pairs.push(("to", range.to.to_string()));
    }
    let pairs: Vec<(&str, &str)> = base_pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let base = format!("/series?{}", format::query(&pairs));
    let line = |label: &str, values: Vec<Option<f64>>| Line {
        label: label.to_owned(),
        values,
        dashed: false,
    };
    let mut charts = vec![
        line_chart(
            t.rate,
            &times,
            &labels,
            &[line(t.rate, col(|p| Some(p.rate)))],
            Unit::Plain,
            Some(&base),
        ),
        line_chart(
            t.error_ratio,
            &times,
            &labels,
            &[line(t.error_ratio, col(|p| Some(p.error_ratio)))],
            Unit::Percent,
            Some(&base),
        ),
    ];
    if charted.iter().any(|p| p.avg_ms.is_some()) {
        charts.push(line_chart(
            t.latency,
            &times,
            &labels,
            &[
                line(t.p50, col(|p| p.p50_ms)),
                line(t.p90, col(|p| p.p90_ms)),
                line(t.p99, col(|p| p.p99_ms)),
                line(t.avg_ms, col(|p| p.avg_ms)),
            ],
            Unit::Plain,
            Some(&base),
        ));
    }
    if charted.iter().any(|p| p.value.is_some()) {
        charts.push(line_chart(
            t.value,
            &times,
            &labels,
            &[line(t.value, col(|p| p.value))],
            Unit::Plain,
            Some(&base),
        ));
    }
    let at_point = at
        .and_then(|m| points.iter().find(|p| p.minute == m))
        .map(|p| {
            (
                format::count(p.count),
                format::count(p.errors),
                format::pct(p.error_ratio),
                format::opt(p.p99_ms),
            )
        });
    let mut groups: Vec<SampleGroup> = [
        (SampleKind::Error, t.error_samples, "samples-error"),
        (SampleKind::Slow, t.slow_samples, "samples-slow"),
        (SampleKind::ParseError, t.parse_errors, "samples-parse"),
    ]
    .into_iter()
    .map(|(kind, title, id)| SampleGroup {
        title,
        id,
        rows: samples
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| SampleRow {
                time: format::clock_ms(tz, s.ts_ms),
                host: s.key.host.clone(),
                code: s.code.clone().unwrap_or_default(),
                latency: format::opt(s.latency_ms),
                raw: s.raw.clone(),
                fields: s
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect(),
    })
    .collect();
    groups.retain(|g| !g.rows.is_empty());
    let alerts = match d.engine() {
        Some(e) => {
            let v = e.view(now).await;
            v.firing
                .iter()
                .chain(&v.no_data)
                .chain(&v.pending)
                .chain(&v.resolved)
                .filter(|a| related(a, layer, &service_s, &name_s))
                .map(|a| AlertRow {
                    state: format!("{:?}", a.state).to_lowercase(),
                    severity: a.severity.clone(),
                    rule: a.rule.clone(),
                    summary: a.summary.clone(),
                    since: format::minute(tz, a.fired_ms.unwrap_or(a.since_ms)),
                    href: local_link(&a.link),
                })
                .collect()
        }
        None => Vec::new(),
    };
    let path = super::here(req.uri());
    Ok(html(&SeriesPage {
        c: Chrome::new(&d, req.headers(), &s, &path, layer.as_str()),
        layer: layer.as_str(),
        layer_title: t.layer(layer),
        service: service_s,
        name: name_s,
        host: host_s,
        range: range.name.clone(),
        ranges: RANGES.iter().map(|(n, _)| *n).collect(),
        base: {
            let p: Vec<(&str, &str)> = pairs
                .iter()
                .filter(|(k, _)| !["range", "from", "to"].contains(k))
                .copied()
                .collect();
            format!("/series?{}", format::query(&p))
        },
        charts,
        at_label: at.map(|m| format::minute(tz, m)).unwrap_or_default(),
        at_point,
        groups,
        alerts,
    }))
}
