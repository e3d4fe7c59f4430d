//! The collector inside `panorama`: everything between an agent's batch
//! and the store.
//!
//! **Owns** the ingest API, auth, the WAL, deduplication, per-minute
//! aggregation, flushing rollups and samples, self-metrics and process
//! wiring. **Must not** render HTML (that is the dashboard's room) nor know
//! a backend's internals (it writes through [`panorama_store::Store`]).
//!
//! - [`api`]: the HTTP routes of DESIGN.md: `POST /api/v1/ingest` (the
//!   agent's binary batches and NDJSON), the query API (`series`, `top`,
//!   `samples`), `/health`, `/metrics` and `/api/v1/accounting`.
//! - [`auth`]: API tokens with roles, and the layer in front of every route
//!   of the merged router.
//! - [`service`]: the [`Collector`]: an accepted batch is appended to the
//!   [`wal`], checked against the [`ledger`] of counted byte ranges (so a
//!   resend is never counted twice), and aggregated by [`aggregate`] into
//!   per-minute [`panorama_model::Rollup`]s, flushed after the grace period
//!   and rewritten when late events arrive; a restart replays the WAL.
//! - [`live`]: the open minutes in fine slices, for the rules engine.
//! - [`compact`]: the hourly tier built from minute rollups.
//! - [`config`]: the collector's part of the configuration file.
//! - [`serve`]: the accept loop, plain HTTP or TLS.
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
mod batch_pool;
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
