//! The per-host agent.
//!
//! **Owns** tailing (rotation, truncation, resume), parsing, route
//! normalization, host metrics, active probes, batching, shipping with
//! acknowledgements, and the spool. **Must not** know about storage: what
//! it says to a collector is [`panorama_model::wire`], nothing more.
//!
//! - [`tail`]: finds files by glob, knows each by a fingerprint of its first
//!   bytes, follows rotation and truncation, and hands out line chunks tagged
//!   with the source id and byte range they came from; checkpoints advance
//!   only after the collector acknowledged the batch that carries them.
//! - [`parse`]: turns lines into [`panorama_model::Event`]s: built-in parsers
//!   (combined access log, JSON lines, syslog, MySQL slow log, Redis log),
//!   user regexes, field mapping, route normalization and cardinality caps;
//!   a line or record that fails is a `(parse error)` event.
//! - [`ship`]: sends batches in the binary encoding, zstd-compressed, with
//!   failover between collectors and retries, until one acknowledges.
//! - [`host`]: `/proc` sampling into infra events, with the heartbeat.
//! - [`probe`]: active probes (HTTP, TCP, DNS, Redis, MySQL, processes)
//!   whose results are component-layer events, shipped exactly once under
//!   a persisted sequence.
//! - [`run`]: one task per source (tail → parse → ship → ack), the host
//!   sampler, the probes and the agent's own `/metrics`.
//! - [`config`] and [`check`]: the agent's configuration file and flags.

pub mod check;
pub mod config;
pub mod host;
pub mod parse;
pub mod probe;
pub mod run;
pub mod ship;
pub mod tail;

/// The agent's version, reported to the collector.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
