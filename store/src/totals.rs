//! Sums over many rollups, computed where the data lives.
//!
//! A dashboard overview spans days and thousands of series; fetching the
//! documents (each with its histogram) and merging them would take seconds.
//! These queries let the backend do the arithmetic instead: Elasticsearch
//! with `terms`, `date_histogram`, `sum` and `max` aggregations over fields
//! indexed for the purpose, SQLite with `GROUP BY` over columns copied from
//! the document. What cannot be summed — percentiles — comes back as the
//! highest per-document p99, a bound rather than a merged quantile; exact
//! percentiles of one series remain [`Store::read_series`](crate::Store::read_series)'s job.

use panorama_model::{Layer, Rollup};
use serde::{Deserialize, Serialize};

use crate::{Metric, StoreError};

/// Which rollups to sum, and into what time buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalsQuery {
    /// One layer, or every layer (each summed on its own).
    pub layer: Option<Layer>,
    /// One service, or all.
    pub service: Option<String>,
    /// One series name, or all.
    pub name: Option<String>,
    /// Only series names starting with this (the agent's own figures are
    /// `agent.*`).
    pub name_prefix: Option<String>,
    /// One host, or all.
    pub host: Option<String>,
    /// First minute, inclusive, Unix milliseconds.
    pub from_ms: i64,
    /// End, exclusive, Unix milliseconds.
    pub to_ms: i64,
    /// Width of the time buckets, a whole number of minutes, aligned to the
    /// Unix epoch; `None` sums the whole range into one bucket.
    pub bucket_ms: Option<i64>,
    /// Only counts, errors and latency sums are needed: backends may leave
    /// maxima and gauge figures empty, which halves the work of an
    /// Elasticsearch aggregation over many buckets (sparklines).
    #[serde(default)]
    pub sums_only: bool,
    /// Sum every layer but infra from its whole-layer rollups (one document
    /// per layer, collector part and minute, see
    /// [`Store::write_layer_rollups`](crate::Store::write_layer_rollups))
    /// instead of from every series' documents: the same counts, errors and
    /// latency sums at a cost that does not grow with the number of series
    /// (maxima then are per layer, not per series). Only when the query
    /// narrows nothing but the layer; otherwise ignored. Backends that keep
    /// per-layer sums of their own (SQLite) ignore it too. For readers of
    /// minutes a collector wrote; a store seeded with series alone has no
    /// whole-layer documents to sum.
    #[serde(default)]
    pub whole_layers: bool,
}

impl TotalsQuery {
    /// Every layer over `[from_ms, to_ms)`, one bucket.
    pub fn range(from_ms: i64, to_ms: i64) -> TotalsQuery {
        TotalsQuery {
            layer: None,
            service: None,
            name: None,
            name_prefix: None,
            host: None,
            from_ms,
            to_ms,
            bucket_ms: None,
            sums_only: false,
            whole_layers: false,
        }
    }

    /// Narrows to one layer.
    pub fn layer(mut self, layer: Layer) -> TotalsQuery {
        self.layer = Some(layer);
        self
    }

    /// Splits the range into buckets of `bucket_ms`.
    pub fn buckets(mut self, bucket_ms: i64) -> TotalsQuery {
        self.bucket_ms = Some(bucket_ms);
        self
    }

    /// Rejects an empty range and buckets that are not whole minutes.
    ///
    /// # Errors
    /// [`StoreError::InvalidQuery`].
    pub fn validate(&self) -> Result<(), StoreError> {
        crate::query::check_range(self.from_ms, self.to_ms)?;
        if let Some(b) = self.bucket_ms {
            crate::query::check_bucket(b)?;
        }
        Ok(())
    }

    /// The bucket a minute falls in.
    pub fn bucket_of(&self, minute_ms: i64) -> i64 {
        match self.bucket_ms {
            Some(b) => minute_ms - minute_ms.rem_euclid(b),
            None => self.from_ms,
        }
    }
}

/// Sums of a set of rollups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Start of the bucket (the query's `from_ms` for a single bucket).
    pub bucket_ms: i64,
    /// Events.
    pub count: u64,
    /// Failed events.
    pub errors: u64,
    /// Events with a latency.
    pub latency_count: u64,
    /// Sum of their latencies.
    pub latency_sum_ms: f64,
    /// Highest latency seen.
    pub latency_max_ms: Option<f64>,
    /// Highest p99 of any one document (a series, minute and collector):
    /// the worst tail anywhere in the set, not the set's own p99.
    pub p99_max_ms: Option<f64>,
    /// Sum of gauge readings.
    pub value_sum: f64,
    /// Gauge readings.
    pub value_n: u64,
    /// Highest gauge reading.
    pub value_max: Option<f64>,
    /// Newest minute with a document, Unix ms.
    pub last_minute_ms: i64,
}

impl Totals {
    /// The sums of one rollup: what both backends index for it.
    pub fn of(r: &Rollup) -> Totals {
        let g = r.gauge.as_ref();
        Totals {
            bucket_ms: r.minute_ms,
            count: r.count,
            errors: r.errors,
            latency_count: r.latency_count,
            latency_sum_ms: r.latency_sum_ms,
            latency_max_ms: r.latency_max_ms,
            p99_max_ms: r.point(1).p99_ms,
            value_sum: g.map_or(0.0, |g| g.sum),
            value_n: g.map_or(0, |g| g.n),
            value_max: g.map(|g| g.max),
            last_minute_ms: r.minute_ms,
        }
    }

    /// Adds another set's sums into this one.
    pub fn add(&mut self, o: &Totals) {
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, None) => x,
            (None, y) => y,
        };
        self.count += o.count;
        self.errors += o.errors;
        self.latency_count += o.latency_count;
        self.latency_sum_ms += o.latency_sum_ms;
        self.latency_max_ms = max(self.latency_max_ms, o.latency_max_ms);
        self.p99_max_ms = max(self.p99_max_ms, o.p99_max_ms);
        self.value_sum += o.value_sum;
        self.value_n += o.value_n;
        self.value_max = max(self.value_max, o.value_max);
        self.last_minute_ms = self.last_minute_ms.max(o.last_minute_ms);
    }

    /// errors / count, 0 without events.
    pub fn error_ratio(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.errors as f64 / self.count as f64
        }
    }

    /// Mean latency, if any event had one.
    pub fn avg_ms(&self) -> Option<f64> {
        (self.latency_count > 0).then(|| self.latency_sum_ms / self.latency_count as f64)
    }

    /// Mean gauge reading, if any.
    pub fn value_avg(&self) -> Option<f64> {
        (self.value_n > 0).then(|| self.value_sum / self.value_n as f64)
    }

    /// The value a [`Metric`] ranks by; error ratio and p99 rank series
    /// without events or latencies last.
    pub fn metric(&self, m: Metric) -> f64 {
        match m {
            Metric::Count => self.count as f64,
            Metric::Errors => self.errors as f64,
            Metric::ErrorRatio => self.error_ratio(),
            Metric::P99Ms => self.p99_max_ms.unwrap_or(f64::NEG_INFINITY),
        }
    }
}

/// One layer's sums in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTotals {
    /// Layer.
    pub layer: Layer,
    /// Its sums.
    pub totals: Totals,
}

/// Rank the series of a range by their sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesTotalsQuery {
    /// Which rollups (`bucket_ms` is ignored: one bucket per series).
    pub range: TotalsQuery,
    /// Keep hosts apart (a series per host), instead of summing them.
    pub by_host: bool,
    /// Highest first by this, per layer. Error ratio is not an aggregation
    /// Elasticsearch can order by without scripts, so it selects by errors
    /// and then orders the selection by ratio.
    pub order: Metric,
    /// At most this many series per layer.
    pub limit: usize,
}

/// One series' sums over a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesTotals {
    /// Layer.
    pub layer: Layer,
    /// Service.
    pub service: String,
    /// Series name.
    pub name: String,
    /// Host, when the query kept hosts apart; empty otherwise.
    pub host: String,
    /// Its sums.
    pub totals: Totals,
}

/// Sorts per the query's order (highest first, ties by layer, service, name,
/// host) and keeps `limit` per layer: the one ordering both backends answer
/// with. Error ratio selects by errors first, as Elasticsearch must.
pub(crate) fn rank_series(
    rows: Vec<SeriesTotals>,
    order: Metric,
    limit: usize,
) -> Vec<SeriesTotals> {
    if order == Metric::ErrorRatio {
        let mut chosen = rank_by(rows, Metric::Errors, limit);
        sort_by(&mut chosen, Metric::ErrorRatio);
        return chosen;
    }
    rank_by(rows, order, limit)
}

fn sort_by(rows: &mut [SeriesTotals], order: Metric) {
    rows.sort_by(|a, b| {
        a.layer
            .cmp(&b.layer)
            .then_with(|| b.totals.metric(order).total_cmp(&a.totals.metric(order)))
            .then_with(|| (&a.service, &a.name, &a.host).cmp(&(&b.service, &b.name, &b.host)))
    });
}

fn rank_by(mut rows: Vec<SeriesTotals>, order: Metric, limit: usize) -> Vec<SeriesTotals> {
    sort_by(&mut rows, order);
    let mut out = Vec::with_capacity(rows.len().min(limit.saturating_mul(5)));
    let mut current: Option<(Layer, usize)> = None;
    for r in rows {
        let n = match current {
            Some((l, n)) if l == r.layer => n,
            _ => 0,
        };
        current = Some((r.layer, n + 1));
        if n < limit {
            out.push(r);
        }
    }
    out
}

/// Sums rows of the same layer and bucket (the parts of a read split
/// between tiers), each keyed by the bucket of the whole query: one bucket
/// over the range is keyed by its `from`.
pub(crate) fn merge_layer_rows(rows: Vec<LayerTotals>, q: &TotalsQuery) -> Vec<LayerTotals> {
    let mut by: std::collections::BTreeMap<(Layer, i64), Totals> =
        std::collections::BTreeMap::new();
    for r in rows {
        let at = q.bucket_of(r.totals.bucket_ms);
        match by.get_mut(&(r.layer, at)) {
            Some(t) => t.add(&r.totals),
            None => {
                let mut t = r.totals;
                t.bucket_ms = at;
                by.insert((r.layer, at), t);
            }
        }
    }
    by.into_iter()
        .map(|((layer, _), totals)| LayerTotals { layer, totals })
        .collect()
}

/// Orders layer totals by layer, then bucket.
pub(crate) fn sort_layers(rows: &mut [LayerTotals]) {
    rows.sort_by(|a, b| {
        a.layer
            .cmp(&b.layer)
            .then(a.totals.bucket_ms.cmp(&b.totals.bucket_ms))
    });
}

/// A series and the newest minute it has a document for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenSeries {
    /// Layer.
    pub layer: Layer,
    /// Service.
    pub service: String,
    /// Series name.
    pub name: String,
    /// Host.
    pub host: String,
    /// Newest minute with a document, Unix ms.
    pub last_minute_ms: i64,
}

/// Orders seen series by layer, name, host, service.
pub(crate) fn sort_seen(rows: &mut [SeenSeries]) {
    rows.sort_by(|a, b| {
        (a.layer, &a.name, &a.host, &a.service).cmp(&(b.layer, &b.name, &b.host, &b.service))
    });
}
