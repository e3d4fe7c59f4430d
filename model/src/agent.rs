//! The series an agent reports about itself, in the `infra` layer: written
//! by the agent, read back by the dashboard's hosts and overview pages.
//!
//! - [`HEARTBEAT`], always 1, every sample, with the agent's release in the
//!   [`VERSION_DIM`] dim: a host whose heartbeat stops is silent.
//! - `agent.<source>.<metric>` ([`source_series`]), one per configured
//!   source and metric of [`SOURCE_METRICS`]; [`parse_source_series`]
//!   takes a name apart again.

/// The agent's heartbeat series.
pub const HEARTBEAT: &str = "agent.heartbeat";

/// The heartbeat's dim holding the agent's release (`0.1.0`).
pub const VERSION_DIM: &str = "version";

/// Lines read since the previous sample.
pub const LINES_READ: &str = "lines_read";
/// Bytes read since the previous sample.
pub const BYTES_READ: &str = "bytes_read";
/// Lines that failed to parse since the previous sample.
pub const LINES_FAILED: &str = "lines_failed";
/// Bytes a collector acknowledged since the previous sample.
pub const BYTES_ACKED: &str = "bytes_acked";
/// Bytes given up since the previous sample (a collector counted past them).
pub const BYTES_GIVEN_UP: &str = "bytes_given_up";
/// Bytes read and not yet acknowledged, now.
pub const LAG_BYTES: &str = "lag_bytes";
/// Age in seconds of the newest acknowledged event, now.
pub const LAG_SECONDS: &str = "lag_seconds";

/// Every per-source metric, in the order the agent sends them.
pub const SOURCE_METRICS: [&str; 7] = [
    LINES_READ,
    BYTES_READ,
    LINES_FAILED,
    BYTES_ACKED,
    BYTES_GIVEN_UP,
    LAG_BYTES,
    LAG_SECONDS,
];

const PREFIX: &str = "agent.";

/// `agent.<source>.<metric>`: the series of one metric of one source.
pub fn source_series(source: &str, metric: &str) -> String {
    format!("{PREFIX}{source}.{metric}")
}

/// The prefix every series of [`source_series`] (and [`HEARTBEAT`]) starts
/// with, for queries by name prefix.
pub const SERIES_PREFIX: &str = PREFIX;

/// `(source, metric)` of a [`source_series`] name; `None` for other names,
/// the heartbeat included. A source name may hold dots: the metric is what
/// follows the last one.
pub fn parse_source_series(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(PREFIX)?.rsplit_once('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_series_names_round_trip() {
        let name = source_series("nginx.access", LAG_SECONDS);
        assert_eq!(name, "agent.nginx.access.lag_seconds");
        assert_eq!(
            parse_source_series(&name),
            Some(("nginx.access", LAG_SECONDS))
        );
        assert_eq!(parse_source_series(HEARTBEAT), None);
        assert_eq!(parse_source_series("cpu.busy"), None);
    }
}
