//! The per-host agent.
//!
//! - [`tail`]: finds files by glob, knows each by a fingerprint of its first
//!   bytes, follows rotation and truncation, and hands out line chunks tagged
//!   with the source id and byte range they came from; checkpoints advance
//!   only after the collector acknowledged the batch that carries them.
//! - [`parse`]: turns lines into [`panorama_model::Event`]s: built-in parsers
//!   (combined access log, JSON lines, syslog, MySQL slow log, Redis log),
//!   user regexes, field mapping, route normalization and cardinality caps.
//!
//! - [`probe`]: active probes (HTTP, TCP, DNS, Redis, MySQL, processes)
//!   whose results are component-layer events, shipped exactly once under
//!   a persisted sequence.
//!
//! Shipping (batching in [`panorama_model::wire::binary`], compression,
//! failover, retries), host metrics and the agent's own figures come next.
//! It knows nothing about storage.

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
