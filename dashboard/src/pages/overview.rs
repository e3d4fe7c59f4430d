//! The overview: is anything wrong, and where to look first.
//!
//! Four store queries, run at once, each an aggregation so the page costs
//! the same over a week of ten thousand series as over one: today's sums per
//! layer, the last hour per minute per layer (sparkline, last minute), the
//! worst series of each layer over the last five minutes, and the hosts'
//! newest heartbeats. The per-layer sums read the collector's whole-layer
//! rollups where the backend has no per-layer sums of its own, so they
//! do not grow with the number of series either.

use askama::Template;
use axum::Extension;
use axum::extract::{Request, State};
use axum::response::Response;
use panorama_model::{DAY_MS, HOUR_MS, Layer, MINUTE_MS, agent, minute_of};
use panorama_store::{
    LayerTotals, Metric, SeriesTotalsQuery, Store, StoreError, Totals, TotalsQuery,
};

use super::{Chrome, PageError, html, now_ms};
use crate::auth::Session;
use crate::chart::sparkline;
use crate::format;
use crate::{Dashboard, overview_order};

/// Today's sums before the current hour, per layer, kept for a minute.
///
/// Those hours no longer change but for late events (within the
/// collector's grace period, or replayed after an outage), so a minute of
/// staleness costs nothing, while summing them again on every 10 s refresh
/// would be most of the overview's work in Elasticsearch, which has no
/// per-layer sums of its own. The current hour comes from the last hour's
/// per-minute buckets, read anyway for the sparklines.
#[derive(Default)]
pub(crate) struct PastHours {
    cached: std::sync::Mutex<Option<PastEntry>>,
}

/// The range summed, when, and the sums.
type PastEntry = (i64, i64, std::time::Instant, Vec<LayerTotals>);

impl PastHours {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(60);

    async fn get(
        &self,
        store: &dyn Store,
        from: i64,
        to: i64,
    ) -> Result<Vec<LayerTotals>, StoreError> {
        if to <= from {
            return Ok(Vec::new());
        }
        {
            let c = self
                .cached
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((f, t, at, rows)) = c.as_ref()
                && (*f, *t) == (from, to)
                && at.elapsed() < Self::FRESH
            {
                return Ok(rows.clone());
            }
        }
        let mut q = TotalsQuery::range(from, to);
        q.whole_layers = true;
        let rows = store.layer_totals(&q).await?;
        *self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((from, to, std::time::Instant::now(), rows.clone()));
        Ok(rows)
    }
}

/// The window the worst series of a layer is chosen over.
const WORST_MINUTES: i64 = 5;

/// One layer's band.
pub(crate) struct Band {
    pub(crate) layer: &'static str,
    pub(crate) title: &'static str,
    pub(crate) volume: String,
    pub(crate) success: String,
    pub(crate) last_avg: String,
    pub(crate) last_errors: String,
    /// Elevated error rate in the last minute: the band is marked.
    pub(crate) bad: bool,
    pub(crate) spark: String,
    pub(crate) worst: Option<Worst>,
}

/// The worst series of a layer.
pub(crate) struct Worst {
    pub(crate) service: String,
    pub(crate) name: String,
    pub(crate) errors: String,
    pub(crate) ratio: String,
    pub(crate) href: String,
}

/// A firing alert as listed on top.
pub(crate) struct FiringRow {
    pub(crate) severity: String,
    pub(crate) summary: String,
    pub(crate) since: String,
    pub(crate) href: String,
    pub(crate) acked: bool,
}

/// A host whose heartbeat stopped.
pub(crate) struct SilentHost {
    pub(crate) host: String,
    pub(crate) last: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    c: Chrome,
    rules: bool,
    firing: Vec<FiringRow>,
    /// Open incidents of several alerts, listed in place of their alerts.
    incidents: Vec<super::incidents::Row>,
    bands: Vec<Band>,
    silent: Vec<SilentHost>,
}

/// The drill-down link of a series (host left open).
pub(crate) fn series_href(
    layer: Layer,
    service: &str,
    name: &str,
    host: &str,
    at: Option<i64>,
) -> String {
    let at = at.map(|a| a.to_string()).unwrap_or_default();
    format!(
        "/series?{}",
        format::query(&[
            ("layer", layer.as_str()),
            ("service", service),
            ("name", name),
            ("host", host),
            ("at", &at),
        ])
    )
}

/// Turns an alert's absolute link (built with the configured dashboard
/// URL) into a path on this server, so it works behind any host name.
pub(crate) fn local_link(link: &str) -> String {
    match link.find("/series?") {
        Some(i) => link[i..].to_owned(),
        None => "/alerts".to_owned(),
    }
}

pub(crate) async fn page(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    req: Request,
) -> Result<Response, PageError> {
    let now = now_ms();
    let tz = d.cfg().time_zone;
    let this_minute = minute_of(now);
    let day_start = format::start_of_day(tz, now);
    let hour_from = this_minute - 60 * MINUTE_MS;
    let end = this_minute + MINUTE_MS;
    let store = d.store();
    // Today = the whole hours before this one (cached) + this hour, summed
    // from the per-minute buckets of the last hour.
    let hour_start = (now - now.rem_euclid(HOUR_MS)).max(day_start);
    let mut hour_q = TotalsQuery::range(hour_from.min(hour_start), end).buckets(MINUTE_MS);
    hour_q.sums_only = true;
    // One document per layer and minute, not one per series.
    hour_q.whole_layers = true;
    // The worst series now, not over the hour: what the on-duty engineer
    // should open first, and a range the store ranks quickly.
    let worst_q = SeriesTotalsQuery {
        range: TotalsQuery::range(this_minute - WORST_MINUTES * MINUTE_MS, end),
        by_host: false,
        order: Metric::ErrorRatio,
        limit: 1,
    };
    let silent_after = d.cfg().silent_after.as_millis() as i64;
    let mut beats = TotalsQuery::range(now - 7 * DAY_MS, end).layer(Layer::Infra);
    beats.name = Some(agent::HEARTBEAT.into());
    let (past, hour, worst, beats) = tokio::join!(
        d.past_hours().get(store, day_start, hour_start),
        store.layer_totals(&hour_q),
        store.series_totals(&worst_q),
        store.last_seen(&beats),
    );
    let (past, hour, worst, beats) = (past?, hour?, worst?, beats?);
    let today = |layer: Layer| -> Totals {
        let mut t = Totals::default();
        for x in past
            .iter()
            .chain(hour.iter().filter(|h| h.totals.bucket_ms >= hour_start))
        {
            if x.layer == layer {
                t.add(&x.totals);
            }
        }
        t
    };
    let alerts = match d.engine() {
        Some(e) => Some(e.view(now).await),
        None => None,
    };
    let t = crate::i18n::texts(crate::auth::lang(&d, req.headers()));
    let bands = overview_order()
        .into_iter()
        .map(|layer| {
            let day_totals = today(layer);
            let day = Some(&day_totals);
            let minutes: Vec<_> = hour.iter().filter(|x| x.layer == layer).collect();
            let spark_vals: Vec<Option<f64>> = (0..=60)
                .map(|i| {
                    let m = hour_from + i * MINUTE_MS;
                    minutes
                        .iter()
                        .find(|x| x.totals.bucket_ms == m)
                        .map(|x| x.totals.count as f64)
                        .or(Some(0.0))
                })
                .collect();
            // The last whole minute; the open one is still filling.
            let last = minutes
                .iter()
                .find(|x| x.totals.bucket_ms == this_minute - MINUTE_MS)
                .map(|x| &x.totals);
            let last_ratio = last.map(|l| l.error_ratio());
            let worst = worst
                .iter()
                .find(|w| w.layer == layer && w.totals.errors > 0)
                .map(|w| Worst {
                    service: w.service.clone(),
                    name: w.name.clone(),
                    errors: format::count(w.totals.errors),
                    ratio: format::pct(w.totals.error_ratio()),
                    href: series_href(layer, &w.service, &w.name, "", None),
                });
            Band {
                layer: layer.as_str(),
                title: t.layer(layer),
                volume: day.map_or_else(|| "0".into(), |x| format::count(x.count)),
                success: day
                    .filter(|x| x.count > 0)
                    .map_or_else(|| "–".into(), |x| format::pct(1.0 - x.error_ratio())),
                last_avg: format::opt(last.and_then(|l| l.avg_ms())),
                last_errors: last_ratio.map_or_else(|| "–".into(), format::pct),
                bad: last_ratio.is_some_and(|r| r >= 0.05),
                spark: sparkline(&spark_vals, t.last_hour),
                worst,
            }
        })
        .collect();
    let silent = beats
        .iter()
        .filter(|b| b.last_minute_ms < now - silent_after)
        .map(|b| SilentHost {
            host: b.host.clone(),
            last: format::minute(tz, b.last_minute_ms),
        })
        .collect();
    let open: Vec<panorama_rules::engine::IncidentView> = match d.engine() {
        Some(e) => e
            .incidents()
            .await
            .into_iter()
            .filter(|i| i.resolved_ms.is_none() && i.members.len() > 1)
            .collect(),
        None => Vec::new(),
    };
    let grouped: std::collections::BTreeSet<(&str, &str)> = open
        .iter()
        .flat_map(|i| {
            i.members
                .iter()
                .map(|m| (m.rule.as_str(), m.group.as_str()))
        })
        .collect();
    let firing = alerts
        .as_ref()
        .map(|v| {
            v.firing
                .iter()
                .chain(&v.no_data)
                .filter(|a| !grouped.contains(&(a.rule.as_str(), a.group.as_str())))
                .map(|a| FiringRow {
                    severity: a.severity.clone(),
                    summary: if a.summary.is_empty() {
                        format!("{} {}", a.rule, a.group)
                    } else {
                        a.summary.clone()
                    },
                    since: format::minute(tz, a.fired_ms.unwrap_or(a.since_ms)),
                    href: local_link(&a.link),
                    acked: a.ack.is_some(),
                })
                .collect()
        })
        .unwrap_or_default();
    let path = super::here(req.uri());
    Ok(html(&OverviewPage {
        c: Chrome::new(&d, req.headers(), &s, &path, "overview"),
        rules: alerts.is_some(),
        firing,
        incidents: open.iter().map(|i| super::incidents::row(i, tz)).collect(),
        bands,
        silent,
    }))
}
