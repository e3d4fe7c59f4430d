//! The top-N ranking of one minute: which routes, calls or components had
//! the most requests, errors or the slowest tail at, say, 00:00.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use panorama_model::{Layer, MINUTE_MS, minute_of};
use panorama_store::{Metric, TopQuery};
use serde::Deserialize;

use super::overview::series_href;
use super::{Chrome, PageError, html, now_ms, parse_layer};
use crate::auth::Session;
use crate::{Dashboard, format};

#[derive(Deserialize)]
pub(crate) struct TopParams {
    layer: Option<String>,
    minute: Option<String>,
    by: Option<String>,
    limit: Option<usize>,
}

pub(crate) struct Bar {
    service: String,
    name: String,
    href: String,
    value: String,
    /// Bar length, 0–100.
    width: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "top.html")]
struct TopPage {
    c: Chrome,
    layer: &'static str,
    layers: Vec<(&'static str, &'static str)>,
    minute_input: String,
    minute_label: String,
    by: &'static str,
    metrics: Vec<(&'static str, &'static str)>,
    limit: usize,
    bars: Vec<Bar>,
}

pub(crate) async fn page(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Query(q): Query<TopParams>,
    req: Request,
) -> Result<Response, PageError> {
    let tz = d.cfg().time_zone;
    let layer: Layer = parse_layer(q.layer.as_deref().unwrap_or("url"))?;
    let minute = match q.minute.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => minute_of(format::parse_time(tz, m).ok_or_else(|| {
            PageError::BadRequest(format!(
                "`minute` {m:?}: expected a time such as 2026-11-22T00:00 or Unix ms"
            ))
        })?),
        None => minute_of(now_ms()) - MINUTE_MS,
    };
    let by: Metric = q.by.as_deref().unwrap_or("count").parse()?;
    let limit = q.limit.unwrap_or(20).clamp(1, 200);
    let entries = d
        .store()
        .top(&TopQuery {
            layer,
            service: None,
            minute_ms: minute,
            by,
            limit,
        })
        .await?;
    let t = crate::i18n::texts(crate::auth::lang(&d, req.headers()));
    let max = entries
        .iter()
        .map(|e| by.of(&e.point))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let bars = entries
        .iter()
        .map(|e| {
            let v = by.of(&e.point);
            let shown = match by {
                Metric::Count | Metric::Errors => format::count(v as u64),
                Metric::ErrorRatio => format::pct(v),
                Metric::P99Ms => format::opt(e.point.p99_ms),
            };
            let width = if max > 0.0 && v.is_finite() {
                v / max * 100.0
            } else {
                0.0
            };
            Bar {
                service: e.service.clone(),
                name: e.name.clone(),
                href: series_href(layer, &e.service, &e.name, "", Some(minute)),
                value: shown,
                width: format!("{:.1}", width.max(0.5)),
                detail: format!(
                    "{} {} · {} {} · p99 {}",
                    format::count(e.point.count),
                    t.count,
                    format::pct(e.point.error_ratio),
                    t.error_ratio,
                    format::opt(e.point.p99_ms)
                ),
            }
        })
        .collect();
    let path = super::here(req.uri());
    Ok(html(&TopPage {
        c: Chrome::new(&d, req.headers(), &s, &path, "top"),
        layer: layer.as_str(),
        layers: Layer::ALL
            .iter()
            .map(|l| (l.as_str(), t.layer(*l)))
            .collect(),
        minute_input: format::input(tz, minute),
        minute_label: format::minute(tz, minute),
        by: by.as_str(),
        metrics: vec![
            ("count", t.count),
            ("errors", t.errors),
            ("error_ratio", t.error_ratio),
            ("p99_ms", t.p99),
        ],
        limit,
        bars,
    }))
}
