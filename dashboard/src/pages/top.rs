//! The top-N ranking of one minute: which routes, calls or components had
//! the most requests, errors or the slowest tail at, say, 00:00 — and, with
//! `compare=days`, the same minute (or hour) on each of the last 7 days side
//! by side, each series marked where its count is far above its own median
//! minute (or hour) of that day: a client bug that makes every client upload
//! at 00:00 shows as one row lit every night.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use panorama_model::{DAY_MS, HOUR_MS, Layer, MINUTE_MS, minute_of};
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
    /// `days`: the last 7 days side by side.
    compare: Option<String>,
    /// `minute` (default) or `hour`, for `compare=days`.
    span: Option<String>,
}

/// How many days `compare=days` shows.
const DAYS: i64 = 7;
/// A count this many times its day's median (and at least
/// [`FAR_MIN_COUNT`]) is marked.
const FAR_FACTOR: f64 = 5.0;
const FAR_MIN_COUNT: u64 = 10;

/// One series over the days compared, today first.
pub(crate) struct DayRow {
    service: String,
    name: String,
    href: String,
    /// (count shown, far above its day's median, that median).
    cells: Vec<(String, bool, String)>,
}

/// The median of a day's buckets, missing buckets counting as zero.
fn median(mut v: Vec<u64>, buckets: usize) -> u64 {
    v.resize(buckets.max(v.len()), 0);
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The days-compared table: for each of the last [`DAYS`] days, the top
/// series by count at the same minute (or hour), and each row's count
/// against its own median minute (or hour) of that day.
async fn days_compared(
    d: &Dashboard,
    layer: Layer,
    at: i64,
    hourly: bool,
    limit: usize,
) -> Result<(Vec<String>, Vec<DayRow>), PageError> {
    let tz = d.cfg().time_zone;
    let width = if hourly { HOUR_MS } else { MINUTE_MS };
    let at = at - at.rem_euclid(width);
    let mut counts: std::collections::BTreeMap<(String, String), Vec<u64>> =
        std::collections::BTreeMap::new();
    let mut heads = Vec::new();
    for day in 0..DAYS {
        let t = at - day * DAY_MS;
        heads.push(format::minute(tz, t));
        let rows: Vec<(String, String, u64)> = if hourly {
            d.store()
                .series_totals(&panorama_store::SeriesTotalsQuery {
                    range: panorama_store::TotalsQuery {
                        layer: Some(layer),
                        ..panorama_store::TotalsQuery::range(t, t + HOUR_MS)
                    },
                    by_host: false,
                    order: Metric::Count,
                    limit,
                })
                .await?
                .into_iter()
                .map(|r| (r.service, r.name, r.totals.count))
                .collect()
        } else {
            d.store()
                .top(&TopQuery {
                    layer,
                    service: None,
                    minute_ms: t,
                    by: Metric::Count,
                    limit,
                })
                .await?
                .into_iter()
                .map(|e| (e.service, e.name, e.point.count))
                .collect()
        };
        for (service, name, n) in rows {
            counts
                .entry((service, name))
                .or_insert_with(|| vec![0; DAYS as usize])[day as usize] = n;
        }
    }
    let mut ranked: Vec<((String, String), Vec<u64>)> = counts.into_iter().collect();
    ranked.sort_by_key(|(_, v)| std::cmp::Reverse((v[0], v.iter().copied().max().unwrap_or(0))));
    ranked.truncate(limit);
    let mut out = Vec::new();
    for ((service, name), v) in ranked {
        // One read per row over the whole week, medians per day from it.
        let first_day = at - (DAYS - 1) * DAY_MS;
        let day0 = format::start_of_day(tz, first_day);
        let points = d
            .store()
            .read_series(&panorama_store::SeriesQuery {
                service: Some(service.clone()),
                name: Some(name.clone()),
                ..panorama_store::SeriesQuery::layer(layer, day0, at + DAY_MS)
            })
            .await?;
        let cells = v
            .iter()
            .enumerate()
            .map(|(day, n)| {
                let t = at - day as i64 * DAY_MS;
                let start = format::start_of_day(tz, t);
                let mut buckets: std::collections::BTreeMap<i64, u64> =
                    std::collections::BTreeMap::new();
                for p in points
                    .iter()
                    .filter(|p| p.minute >= start && p.minute < start + DAY_MS)
                {
                    *buckets
                        .entry(p.minute - p.minute.rem_euclid(width))
                        .or_default() += p.count;
                }
                let m = median(buckets.into_values().collect(), (DAY_MS / width) as usize);
                let far = *n >= FAR_MIN_COUNT && (*n as f64) >= FAR_FACTOR * (m.max(1) as f64);
                (format::count(*n), far, format::count(m))
            })
            .collect();
        out.push(DayRow {
            href: series_href(layer, &service, &name, "", Some(at)),
            service,
            name,
            cells,
        });
    }
    Ok((heads, out))
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
    /// `compare=days`: the days' headings and rows.
    days: bool,
    hourly: bool,
    day_heads: Vec<String>,
    day_rows: Vec<DayRow>,
    days_href: String,
    hours_href: String,
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
    let days = q.compare.as_deref() == Some("days");
    let hourly = q.span.as_deref() == Some("hour");
    let (day_heads, day_rows) = if days {
        days_compared(&d, layer, minute, hourly, limit).await?
    } else {
        (Vec::new(), Vec::new())
    };
    let base = format!(
        "/top?layer={}&minute={}&limit={limit}&compare=days",
        layer.as_str(),
        minute
    );
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
        days,
        hourly,
        day_heads,
        day_rows,
        days_href: format!("{base}&span=minute"),
        hours_href: format!("{base}&span=hour"),
    }))
}
