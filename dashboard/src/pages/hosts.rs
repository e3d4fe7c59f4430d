//! Hosts: each agent's heartbeat, its sources' lag and parse errors, and
//! one host's infra charts. Everything comes from the infra series the
//! agents send (`agent.heartbeat`, `agent.<source>.lag_seconds`,
//! `agent.<source>.lines_failed`, `cpu.busy`, ...). The version is the
//! heartbeat's `version` dim; agents older than that dim show "not
//! reported" rather than a guess.

use std::collections::BTreeMap;

use askama::Template;
use axum::Extension;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use panorama_model::{DAY_MS, Layer, MINUTE_MS, agent, minute_of};
use panorama_store::{Metric, SeriesQuery, SeriesTotalsQuery, TotalsQuery};
use serde::Deserialize;

use super::layer::bucket_times;
use super::{Chrome, PageError, html, now_ms};
use crate::auth::Session;
use crate::chart::{Line, Unit, line_chart};
use crate::{Dashboard, format};

/// The infra series charted for the chosen host.
const CHARTS: [&str; 4] = ["cpu.busy", "mem.used", "load.1", "disk./.used"];

#[derive(Deserialize)]
pub(crate) struct HostsParams {
    host: Option<String>,
}

pub(crate) struct SourceRow {
    source: String,
    lag: String,
    failed: String,
}

/// How far back the page looks for each live host's newest heartbeat
/// document, to read the agent's version from it.
const VERSION_WINDOW_MS: i64 = 15 * MINUTE_MS;

/// Hosts silent for longer than [`VERSION_WINDOW_MS`] whose version is
/// read from their last heartbeat one query each; beyond this many the rest
/// show "not reported" (a page must not fan out without bound).
const SILENT_VERSION_READS: usize = 20;

pub(crate) struct HostRow {
    host: String,
    version: Option<String>,
    href: String,
    last: String,
    silent: bool,
    sources: Vec<SourceRow>,
}

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage {
    c: Chrome,
    hosts: Vec<HostRow>,
    chosen: String,
    charts: Vec<String>,
}

pub(crate) async fn page(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Query(p): Query<HostsParams>,
    req: Request,
) -> Result<Response, PageError> {
    let tz = d.cfg().time_zone;
    let now = now_ms();
    let end = minute_of(now) + MINUTE_MS;
    let store = d.store();
    let mut beats = TotalsQuery::range(end - 7 * DAY_MS, end).layer(Layer::Infra);
    beats.name = Some(agent::HEARTBEAT.into());
    let mut figures = TotalsQuery::range(end - 15 * MINUTE_MS, end).layer(Layer::Infra);
    figures.name_prefix = Some(agent::SERIES_PREFIX.into());
    let q = |range| SeriesTotalsQuery {
        range,
        by_host: true,
        order: Metric::Count,
        limit: 10_000,
    };
    let figures_q = q(figures);
    let (beats, figures) = tokio::join!(store.last_seen(&beats), store.series_totals(&figures_q));
    let (beats, figures) = (beats?, figures?);
    let versions = agent_versions(store, &beats, end).await?;
    let silent_after = d.cfg().silent_after.as_millis() as i64;
    // Per host, per source: (lag seconds, failed lines).
    let mut sources: BTreeMap<&str, BTreeMap<&str, (Option<f64>, f64)>> = BTreeMap::new();
    for f in &figures {
        let Some((source, metric)) = agent::parse_source_series(&f.name) else {
            continue;
        };
        let e = sources
            .entry(&f.host)
            .or_default()
            .entry(source)
            .or_insert((None, 0.0));
        match metric {
            agent::LAG_SECONDS => e.0 = f.totals.value_max,
            agent::LINES_FAILED => e.1 += f.totals.value_sum,
            _ => {}
        }
    }
    let mut hosts: Vec<HostRow> = beats
        .iter()
        .map(|b| HostRow {
            host: b.host.clone(),
            version: versions.get(&b.host).cloned(),
            href: format!("/hosts?host={}", format::encode(&b.host)),
            last: format::minute(tz, b.last_minute_ms),
            silent: b.last_minute_ms < now - silent_after,
            sources: sources
                .get(b.host.as_str())
                .map(|m| {
                    m.iter()
                        .map(|(src, (lag, failed))| SourceRow {
                            source: (*src).to_owned(),
                            lag: format::opt(*lag),
                            failed: format::count(*failed as u64),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    hosts.sort_by(|a, b| b.silent.cmp(&a.silent).then_with(|| a.host.cmp(&b.host)));
    let chosen = p
        .host
        .filter(|h| !h.is_empty())
        .or_else(|| hosts.first().map(|h| h.host.clone()))
        .unwrap_or_default();
    let t = crate::i18n::texts(crate::auth::lang(&d, req.headers()));
    let mut charts = Vec::new();
    if !chosen.is_empty() {
        let from = end - 60 * MINUTE_MS;
        let times = bucket_times(from, end, MINUTE_MS);
        let labels: Vec<String> = times.iter().map(|&m| format::short(tz, m)).collect();
        let reads = CHARTS.map(|name| {
            let q = SeriesQuery {
                layer: Layer::Infra,
                service: None,
                name: Some(name.to_owned()),
                host: Some(chosen.clone()),
                dims: Default::default(),
                from_ms: from,
                to_ms: end,
            };
            async move { (name, store.read_series(&q).await) }
        });
        let [a, b, c, e] = reads;
        let results = tokio::join!(a, b, c, e);
        for (name, points) in [results.0, results.1, results.2, results.3] {
            let points = points?;
            if points.is_empty() {
                continue;
            }
            let values = times
                .iter()
                .map(|m| points.iter().find(|p| p.minute == *m).and_then(|p| p.value))
                .collect();
            let href = format!(
                "/series?{}",
                format::query(&[("layer", "infra"), ("name", name), ("host", &chosen)])
            );
            charts.push(line_chart(
                name,
                &times,
                &labels,
                &[Line {
                    label: format!("{name} ({})", t.value),
                    values,
                    dashed: false,
                }],
                Unit::Plain,
                Some(&href),
            ));
        }
    }
    let path = super::here(req.uri());
    Ok(html(&HostsPage {
        c: Chrome::new(&d, req.headers(), &s, &path, "hosts"),
        hosts,
        chosen,
        charts,
    }))
}

/// Each host's agent version: the `version` dim of its newest heartbeat
/// document.
async fn agent_versions(
    store: &dyn panorama_store::Store,
    beats: &[panorama_store::SeenSeries],
    end: i64,
) -> Result<BTreeMap<String, String>, PageError> {
    let heartbeats = |from_ms, to_ms, host: Option<String>| SeriesQuery {
        layer: Layer::Infra,
        service: None,
        name: Some(agent::HEARTBEAT.into()),
        host,
        dims: Default::default(),
        from_ms,
        to_ms,
    };
    let mut docs = store
        .read_rollups(&heartbeats(end - VERSION_WINDOW_MS, end, None))
        .await?;
    for b in beats
        .iter()
        .filter(|b| b.last_minute_ms < end - VERSION_WINDOW_MS)
        .take(SILENT_VERSION_READS)
    {
        let q = heartbeats(
            b.last_minute_ms,
            b.last_minute_ms + MINUTE_MS,
            Some(b.host.clone()),
        );
        docs.extend(store.read_rollups(&q).await?);
    }
    // Oldest first, so the newest document of a host wins.
    docs.sort_by_key(|r| r.minute_ms);
    let mut out = BTreeMap::new();
    for r in docs {
        if let Some(v) = r.key.dims.get(agent::VERSION_DIM) {
            out.insert(r.key.host.clone(), v.clone());
        }
    }
    Ok(out)
}
