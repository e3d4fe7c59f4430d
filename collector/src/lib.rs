//! The collector inside `panorama`.
//!
//! It will own the ingest API (binary batches and NDJSON, bearer tokens), the
//! write-ahead log, deduplication of resent byte ranges, per-minute
//! aggregation into [`panorama_model::Rollup`]s, flushing to a
//! [`panorama_store::Store`] after the grace period, samples, self-metrics and
//! process wiring. It never renders HTML.
//!
//! Today it holds the collector's defaults; the collector issue fills it.

/// How long a minute stays open for late events before it is first written.
pub const DEFAULT_GRACE_SECS: u64 = 15;
