//! Wire encodings: how events travel from agents and third parties to the collector.
//!
//! - [`binary`]: the agent's compact, versioned batch encoding. A batch carries
//!   the (agent id, source id, byte range) that makes exactly-once counting
//!   possible, and a checksum.
//! - [`ndjson`]: one JSON event per line, for SDKs, scripts and curl.
//!
//! Both decoders take untrusted bytes: they never panic, bound what they
//! allocate by what they were given, and say where the input went wrong.

pub mod binary;
pub mod ndjson;

use serde::{Deserialize, Serialize};

/// The JSON body the collector answers `POST /api/v1/ingest` with, and the
/// agent reads: `{"accepted": N}` (with `"duplicate": true` for a range
/// already counted), or `{"error": "..."}`, which for a 409 carries the
/// `counted_offset` the agent resumes reading at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReply {
    /// Events counted from this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<u64>,
    /// The range was counted before; nothing was counted again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Why the request was not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With a 409: the batch straddles this offset, up to which the source
    /// is already counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_offset: Option<u64>,
}

impl IngestReply {
    /// `{"accepted": events}`.
    pub fn accepted(events: u64) -> IngestReply {
        IngestReply {
            accepted: Some(events),
            ..IngestReply::default()
        }
    }

    /// `{"error": message}`.
    pub fn error(message: impl Into<String>) -> IngestReply {
        IngestReply {
            error: Some(message.into()),
            ..IngestReply::default()
        }
    }
}

/// The request header an agent sets (to `1`) on a binary batch it sends
/// while the batch of the same source ending at this one's start offset is
/// still unacknowledged: several batches of a source in flight at once.
///
/// The collector counts such a *chained* batch only directly after that
/// predecessor: its start must be where the source's counted or reserved
/// ranges end (it waits a moment for a predecessor that has not arrived
/// yet), and it is refused with a 503 if the predecessor is refused. A
/// batch without the header is judged alone, as the first unacknowledged
/// batch of its source always is: it may start past what is counted (after
/// bytes given up, or a file read from its end).
pub const CHAINED_HEADER: &str = "x-panorama-chained";

/// The most dims one event may carry, in either encoding.
///
/// Dims are meant to be a few low-cardinality labels (device model,
/// channel); every distinct combination is a series of its own.
pub const MAX_DIMS: usize = 16;

/// Proptest strategies shared by the tests of both encodings.
#[cfg(test)]
mod strategies {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use crate::{Event, Layer, Outcome};

    /// Arbitrary Unicode text of `min..=max` characters, mixed with a few
    /// recurring values so that string tables see repeats.
    pub(crate) fn text(min: usize, max: usize) -> impl Strategy<Value = String> {
        let any =
            proptest::string::string_regex(&format!("(?s:.{{{min},{max}}})")).expect("valid regex");
        let common = prop::sample::select(vec![
            "login",
            "web1",
            "GET /api/login",
            "500",
            "ios",
            "渠道",
        ])
        .prop_map(str::to_owned);
        prop_oneof![2 => any, 1 => common]
    }

    pub(crate) fn layer() -> impl Strategy<Value = Layer> {
        prop::sample::select(Layer::ALL.to_vec())
    }

    /// Events as the limits of both encodings allow them: non-empty names,
    /// bounded dims, finite values, latency in whole microseconds.
    pub(crate) fn event() -> impl Strategy<Value = Event> {
        let ts = prop_oneof![
            // Years 0 to 9999 and a little beyond, where RFC 3339 applies.
            -63_000_000_000_000i64..254_000_000_000_000,
            any::<i64>(),
        ];
        let outcome = prop_oneof![
            Just(Outcome::Ok),
            proptest::option::of(text(1, 8)).prop_map(Outcome::Error),
        ];
        let latency =
            proptest::option::of((0u64..10_000_000_000_000).prop_map(|us| us as f64 / 1000.0));
        let value = proptest::option::of(any::<f64>().prop_filter("finite", |v| v.is_finite()));
        let dims = prop::collection::btree_map(text(1, 8), text(0, 8), 0..=super::MAX_DIMS);
        let raw = proptest::option::of(text(0, 40));
        (
            ts,
            layer(),
            (text(1, 12), text(1, 12), text(1, 24)),
            outcome,
            latency,
            value,
            dims,
            raw,
        )
            .prop_map(
                |(ts_ms, layer, (service, host, name), outcome, latency_ms, value, dims, raw)| {
                    Event {
                        ts_ms,
                        layer,
                        service,
                        host,
                        name,
                        outcome,
                        latency_ms,
                        value,
                        dims: dims.into_iter().collect::<BTreeMap<_, _>>(),
                        raw,
                    }
                },
            )
    }
}
