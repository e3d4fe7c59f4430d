//! The per-host agent.
//!
//! It will own, module by module: tailing (`tail/`: discovery by glob,
//! fingerprints, rotation, truncation, checkpoints that advance only after an
//! acknowledgement), parsing (`parse/`: combined access log, JSON lines,
//! syslog, MySQL slow log, Redis log, user regexes), route normalization with a
//! cardinality cap, host metrics for the infra layer, and shipping (`ship/`:
//! batching in the binary encoding of [`panorama_model::wire::binary`],
//! compression, failover, retries, a bounded spool). It knows nothing about
//! storage.
//!
//! Today it holds only the version the binary reports; the agent issue fills it.

/// The agent's version, sent to the collector with every batch in later releases.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
