use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Layer, SeriesKey};

/// Whether the thing an event describes succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// It worked.
    Ok,
    /// It failed; the code (an HTTP status, an errno, a business error code)
    /// lets rollups count errors by class.
    Error(Option<String>),
}

impl Outcome {
    /// True for [`Outcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

/// One parsed log line or posted measurement.
///
/// Time is event time in Unix milliseconds (UTC), taken from the line itself,
/// never from when the line was read: an agent that returns after a week must
/// land its events in the minutes they happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event time, Unix milliseconds, UTC.
    pub ts_ms: i64,
    /// The layer this event feeds.
    pub layer: Layer,
    /// The service that emitted or owns it (`login`, `pay-gateway`).
    pub service: String,
    /// The host it happened on.
    pub host: String,
    /// Series name: a normalized route, a call, a component operation or a metric.
    pub name: String,
    /// Success or failure.
    pub outcome: Outcome,
    /// Latency in milliseconds, for requests and calls.
    pub latency_ms: Option<f64>,
    /// Gauge value, for host metrics and other sampled quantities.
    pub value: Option<f64>,
    /// A few low-cardinality dimensions (device model, channel).
    pub dims: BTreeMap<String, String>,
    /// The raw line, kept for error samples only.
    pub raw: Option<String>,
}

impl Event {
    /// A successful event with no latency, value, dims or raw line; the fields
    /// are public so callers fill in the rest.
    pub fn new(
        ts_ms: i64,
        layer: Layer,
        service: impl Into<String>,
        host: impl Into<String>,
        name: impl Into<String>,
    ) -> Event {
        Event {
            ts_ms,
            layer,
            service: service.into(),
            host: host.into(),
            name: name.into(),
            outcome: Outcome::Ok,
            latency_ms: None,
            value: None,
            dims: BTreeMap::new(),
            raw: None,
        }
    }

    /// The hash of [`Event::series_key`] without building it: equal to
    /// `self.series_key().hash128(..)`. `scratch` is reused between calls.
    pub fn series_hash(&self, scratch: &mut Vec<u8>) -> u128 {
        crate::series::hash_parts(
            self.layer,
            &self.service,
            &self.host,
            &self.name,
            &self.dims,
            scratch,
        )
    }

    /// The series this event is counted in.
    pub fn series_key(&self) -> SeriesKey {
        SeriesKey {
            layer: self.layer,
            service: self.service.clone(),
            host: self.host.clone(),
            name: self.name.clone(),
            dims: self.dims.clone(),
        }
    }
}
