//! The query API: JSON over the store, for the dashboard and for scripts.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use panorama_model::{DAY_MS, HOUR_MS, Layer, Point, Sample, SampleKind, minute_of};
use panorama_store::{Metric, SampleQuery, SeriesQuery, TopEntry, TopQuery};
use serde::Serialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};

/// Longest range one series query may span: 31 days of minutes is 44,640
/// points, already more than any chart can show.
const MAX_RANGE_MS: i64 = 31 * DAY_MS;
/// Default range when `from` is absent.
const DEFAULT_RANGE_MS: i64 = HOUR_MS;
const DEFAULT_TOP: usize = 10;
const MAX_TOP: usize = 1_000;
const DEFAULT_SAMPLES: usize = 50;
const MAX_SAMPLES: usize = 1_000;

type Params = Query<BTreeMap<String, String>>;

/// Typed access to query parameters, rejecting the ones a route does not take
/// so that a typo (`servce=`) is an error instead of a silently wider query.
struct Args {
    map: BTreeMap<String, String>,
}

impl Args {
    fn new(map: BTreeMap<String, String>, allowed: &[&str]) -> Result<Args, ApiError> {
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter `{k}`; this route takes: {}",
                allowed.join(", ")
            )));
        }
        Ok(Args { map })
    }

    fn opt(&self, k: &str) -> Option<String> {
        self.map.get(k).filter(|v| !v.is_empty()).cloned()
    }

    fn layer(&self) -> Result<Layer, ApiError> {
        let raw = self.map.get("layer").ok_or_else(|| {
            ApiError::BadRequest(
                "missing parameter `layer` (business, url, call, component or infra)".into(),
            )
        })?;
        raw.parse().map_err(|e: panorama_model::ParseLayerError| {
            ApiError::BadRequest(format!("parameter `layer`: {e}"))
        })
    }

    fn time(&self, k: &str) -> Result<Option<i64>, ApiError> {
        self.map.get(k).map(|raw| parse_time(k, raw)).transpose()
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.map.get("limit") {
            None => Ok(default),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "parameter `limit`: expected a number from 1 to {max}, got {raw:?}"
                ))),
            },
        }
    }
}

/// Accepts RFC 3339 (`2026-11-22T13:00:00Z`) or Unix milliseconds.
fn parse_time(k: &str, raw: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(raw).map(|t| t.timestamp_millis()).map_err(|e| {
        ApiError::BadRequest(format!(
            "parameter `{k}`: expected RFC 3339 time (2026-11-22T13:00:00Z) or Unix milliseconds, got {raw:?} ({e})"
        ))
    })
}

pub(super) async fn health(State(st): State<AppState>) -> Json<Value> {
    match &st.collector {
        Some(c) => Json(c.health()),
        None => Json(json!({ "status": "ok", "store": st.store.backend() })),
    }
}

#[derive(Serialize)]
pub(super) struct SeriesResponse {
    layer: Layer,
    service: Option<String>,
    name: Option<String>,
    host: Option<String>,
    from: i64,
    to: i64,
    points: Vec<Point>,
}

pub(super) async fn series(
    State(st): State<AppState>,
    Query(p): Params,
) -> Result<Json<SeriesResponse>, ApiError> {
    let a = Args::new(p, &["layer", "service", "name", "host", "from", "to"])?;
    let to = a
        .time("to")?
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    let from = a.time("from")?.unwrap_or(to - DEFAULT_RANGE_MS);
    if to - from > MAX_RANGE_MS {
        return Err(ApiError::BadRequest(format!(
            "range too long: at most 31 days, got {} hours",
            (to - from) / HOUR_MS
        )));
    }
    let q = SeriesQuery {
        layer: a.layer()?,
        service: a.opt("service"),
        name: a.opt("name"),
        host: a.opt("host"),
        dims: BTreeMap::new(),
        from_ms: from,
        to_ms: to,
    };
    let points = st.store.read_series(&q).await?;
    Ok(Json(SeriesResponse {
        layer: q.layer,
        service: q.service,
        name: q.name,
        host: q.host,
        from,
        to,
        points,
    }))
}

#[derive(Serialize)]
pub(super) struct TopResponse {
    layer: Layer,
    minute: i64,
    by: Metric,
    series: Vec<TopEntry>,
}

pub(super) async fn top(
    State(st): State<AppState>,
    Query(p): Params,
) -> Result<Json<TopResponse>, ApiError> {
    let a = Args::new(p, &["layer", "service", "minute", "by", "limit"])?;
    let minute = minute_of(
        a.time("minute")?
            .unwrap_or_else(|| Utc::now().timestamp_millis() - 60_000),
    );
    let by = match a.map.get("by") {
        None => Metric::Count,
        Some(raw) => raw.parse().map_err(ApiError::from)?,
    };
    let q = TopQuery {
        layer: a.layer()?,
        service: a.opt("service"),
        minute_ms: minute,
        by,
        limit: a.limit(DEFAULT_TOP, MAX_TOP)?,
    };
    let series = st.store.top(&q).await?;
    Ok(Json(TopResponse {
        layer: q.layer,
        minute,
        by,
        series,
    }))
}

#[derive(Serialize)]
pub(super) struct SamplesResponse {
    layer: Layer,
    minute: i64,
    samples: Vec<Sample>,
}

pub(super) async fn samples(
    State(st): State<AppState>,
    Query(p): Params,
) -> Result<Json<SamplesResponse>, ApiError> {
    let a = Args::new(p, &["layer", "service", "name", "minute", "kind", "limit"])?;
    let minute = minute_of(a.time("minute")?.ok_or_else(|| {
        ApiError::BadRequest("missing parameter `minute` (RFC 3339 or Unix milliseconds)".into())
    })?);
    let kind = match a.map.get("kind").map(String::as_str) {
        None => None,
        Some("error") => Some(SampleKind::Error),
        Some("slow") => Some(SampleKind::Slow),
        Some("parse_error") => Some(SampleKind::ParseError),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "parameter `kind`: expected error, slow or parse_error, got {other:?}"
            )));
        }
    };
    let q = SampleQuery {
        layer: a.layer()?,
        service: a.opt("service"),
        name: a.opt("name"),
        minute_ms: minute,
        kind,
        limit: a.limit(DEFAULT_SAMPLES, MAX_SAMPLES)?,
    };
    let samples = st.store.samples(&q).await?;
    Ok(Json(SamplesResponse {
        layer: q.layer,
        minute,
        samples,
    }))
}

pub(super) async fn accounting(
    State(st): State<AppState>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let a = Args::new(p, &["minutes"])?;
    let minutes = match a.map.get("minutes") {
        None => 60,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_080).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "parameter `minutes`: expected 1 to 10080, got {raw:?}"
                ))
            })?,
    };
    match &st.collector {
        Some(c) => Ok(Json(c.accounting(minutes))),
        None => Err(ApiError::BadRequest(
            "this server does not ingest, so it has no accounting".into(),
        )),
    }
}
