//! Wire encodings: how events travel from agents and third parties to the collector.
//!
//! - [`binary`]: the agent's compact, versioned batch encoding. A batch carries
//!   the (agent id, source id, byte range) that makes exactly-once counting
//!   possible, and a checksum.
//! - [`ndjson`]: one JSON event per line, for SDKs, scripts and curl.

pub mod binary;
pub mod ndjson;
