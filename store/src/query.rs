use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use panorama_model::{Layer, Point, SampleKind};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Which series to read, and over what time. `None` fields match anything and
/// are merged over; `dims` must all match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesQuery {
    /// Layer.
    pub layer: Layer,
    /// Service, or all services.
    pub service: Option<String>,
    /// Series name, or all names.
    pub name: Option<String>,
    /// Host, or all hosts.
    pub host: Option<String>,
    /// Dims that must match exactly.
    #[serde(default)]
    pub dims: BTreeMap<String, String>,
    /// First minute, inclusive, Unix milliseconds.
    pub from_ms: i64,
    /// End, exclusive, Unix milliseconds.
    pub to_ms: i64,
}

impl SeriesQuery {
    /// Every series of a layer over `[from_ms, to_ms)`.
    pub fn layer(layer: Layer, from_ms: i64, to_ms: i64) -> SeriesQuery {
        SeriesQuery {
            layer,
            service: None,
            name: None,
            host: None,
            dims: BTreeMap::new(),
            from_ms,
            to_ms,
        }
    }

    /// Narrows to one service.
    pub fn service(mut self, service: impl Into<String>) -> SeriesQuery {
        self.service = Some(service.into());
        self
    }

    /// Narrows to one series name.
    pub fn name(mut self, name: impl Into<String>) -> SeriesQuery {
        self.name = Some(name.into());
        self
    }

    /// Narrows to one host.
    pub fn host(mut self, host: impl Into<String>) -> SeriesQuery {
        self.host = Some(host.into());
        self
    }

    /// Rejects an empty or inverted range.
    ///
    /// # Errors
    /// [`StoreError::InvalidQuery`].
    pub fn validate(&self) -> Result<(), StoreError> {
        check_range(self.from_ms, self.to_ms)
    }
}

/// What to rank series of one minute by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Events.
    Count,
    /// Failed events.
    Errors,
    /// Failed / all.
    ErrorRatio,
    /// 99th percentile latency.
    P99Ms,
}

impl Metric {
    /// The metric's value in a point; series without it rank last.
    pub fn of(self, p: &Point) -> f64 {
        match self {
            Metric::Count => p.count as f64,
            Metric::Errors => p.errors as f64,
            Metric::ErrorRatio => p.error_ratio,
            Metric::P99Ms => p.p99_ms.unwrap_or(f64::NEG_INFINITY),
        }
    }

    /// The name used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Count => "count",
            Metric::Errors => "errors",
            Metric::ErrorRatio => "error_ratio",
            Metric::P99Ms => "p99_ms",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Metric, StoreError> {
        [
            Metric::Count,
            Metric::Errors,
            Metric::ErrorRatio,
            Metric::P99Ms,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| {
            StoreError::InvalidQuery(format!(
                "unknown metric {s:?}: expected count, errors, error_ratio or p99_ms"
            ))
        })
    }
}

/// Rank the series of one layer in one minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopQuery {
    /// Layer.
    pub layer: Layer,
    /// Restrict to one service.
    pub service: Option<String>,
    /// The minute, Unix milliseconds (floored to the minute).
    pub minute_ms: i64,
    /// Ranking metric, highest first.
    pub by: Metric,
    /// How many to return.
    pub limit: usize,
}

/// One ranked series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopEntry {
    /// Service.
    pub service: String,
    /// Series name.
    pub name: String,
    /// Its minute, merged across collectors, hosts and dims.
    pub point: Point,
}

/// Samples of one minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleQuery {
    /// Layer.
    pub layer: Layer,
    /// Service, or all.
    pub service: Option<String>,
    /// Series name, or all.
    pub name: Option<String>,
    /// The minute, Unix milliseconds (floored to the minute).
    pub minute_ms: i64,
    /// Only samples of this kind.
    pub kind: Option<SampleKind>,
    /// At most this many.
    pub limit: usize,
}

/// What retention removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    /// Daily indices or partitions dropped (Elasticsearch: index names).
    pub dropped: Vec<String>,
    /// Documents deleted, where the backend counts them.
    pub deleted_docs: u64,
}

/// Rejects a range whose end is not after its start, the one check every
/// read by range makes.
pub(crate) fn check_range(from_ms: i64, to_ms: i64) -> Result<(), StoreError> {
    if to_ms <= from_ms {
        return Err(StoreError::InvalidQuery(format!(
            "`to` ({to_ms}) must be after `from` ({from_ms})"
        )));
    }
    Ok(())
}

/// Rejects a bucket width that is not a whole, positive number of minutes.
pub(crate) fn check_bucket(bucket_ms: i64) -> Result<(), StoreError> {
    if bucket_ms <= 0 || bucket_ms % panorama_model::MINUTE_MS != 0 {
        return Err(StoreError::InvalidQuery(format!(
            "bucket of {bucket_ms} ms: expected a whole number of minutes"
        )));
    }
    Ok(())
}
