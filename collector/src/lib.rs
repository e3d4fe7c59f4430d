//! The collector inside `panorama`.
//!
//! Today it serves the read side: the query API of DESIGN.md
//! (`/api/v1/series`, `/api/v1/top`, `/api/v1/samples`) and `/health`, over
//! any [`panorama_store::Store`]. The collector issue adds the rest of what
//! it owns: the ingest API (binary batches and NDJSON, bearer tokens), the
//! write-ahead log, deduplication of resent byte ranges, per-minute
//! aggregation into [`panorama_model::Rollup`]s flushed after the grace
//! period, samples, self-metrics and process wiring. It never renders HTML.
//!
//! ```no_run
//! # async fn run(store: std::sync::Arc<dyn panorama_store::Store>) {
//! let app = panorama_collector::api::router(store);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

pub mod aggregate;
pub mod api;
pub mod auth;
pub mod compact;
pub mod config;
pub mod ledger;
pub mod live;
pub mod serve;
pub mod service;
pub mod wal;

pub use service::{Collector, CollectorConfig, CollectorStats, IngestOutcome, StartError};

/// How long a minute stays open for late events before it is first written.
pub const DEFAULT_GRACE_SECS: u64 = 15;
