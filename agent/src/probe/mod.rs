//! Active probes: what logs cannot say. A Redis that stops answering
//! writes no log line, a hung MySQL writes nothing to its slow log, and an
//! expiring certificate is silent until users complain; a probe asks.
//!
//! - [`config`]: the `[[probe]]` tables, checked before anything starts.
//! - One module per kind does one run and reports a [`Report`]:
//!   [`http`], [`tcp`], [`dns`], [`redis`] (a RESP exchange), [`mysql`]
//!   (the client/server protocol up to `SELECT 1`), [`process`] (procfs).
//! - [`schedule`]: one task per probe, runs never overlapping, each cut
//!   off at its timeout; results become component-layer events.
//! - [`outbox`]: the probes' one source for exactly-once shipping: a
//!   persisted sequence stands in for a file's byte offsets, and the batch
//!   in flight is kept on disk until a collector acknowledged it.
//!
//! A probe's target being down is what the probe is for: every failure
//! is an event with an error code (`timeout`, `refused`, `status 503`,
//! `tls-expired`, …), never an error of the agent.

pub mod config;
pub mod dns;
pub mod http;
pub mod mysql;
pub mod outbox;
pub mod process;
pub mod redis;
pub mod schedule;
pub mod tcp;

use std::time::Duration;

use panorama_model::{Event, Layer, Outcome};

pub use config::{ProbeConfig, ProbeKind};

/// The error code of a run that hit its timeout.
pub const TIMEOUT: &str = "timeout";
/// The error code of a refused connection.
pub const REFUSED: &str = "refused";

/// Why a probe could not be built at start. A target that is down is not
/// one of these: that is what the probe is there to report.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An HTTP probe's `ca_file` could not be read.
    #[error("{}: {source}", path.display())]
    ReadCaFile {
        /// The file, as configured.
        path: std::path::PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP probe's `ca_file` does not hold PEM certificates.
    #[error("{}: {source}", path.display())]
    CaCertificates {
        /// The file, as configured.
        path: std::path::PathBuf,
        /// What the certificate parser said.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built (its TLS setup failed).
    #[error(transparent)]
    Client(reqwest::Error),
    /// The method is not an HTTP method. The config check refuses these
    /// first, so this only guards a config built in code.
    #[error(transparent)]
    Method(Box<dyn std::error::Error + Send + Sync>),
}

/// What one run found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The operation, the second half of the series name (`ping`,
    /// `select1`, `GET /health`).
    pub operation: String,
    /// `Err(code)` when the target is not as it should be.
    pub result: Result<(), String>,
    /// How long the operation took (the whole run, connect included).
    pub latency: Duration,
    /// Gauges read on the way (`connected_clients`, `cert_days`), each a
    /// series `kind@name figure` of its own.
    pub figures: Vec<(&'static str, f64)>,
}

impl Report {
    /// A failed run with no figures.
    pub fn failed(
        operation: impl Into<String>,
        code: impl Into<String>,
        latency: Duration,
    ) -> Report {
        Report {
            operation: operation.into(),
            result: Err(code.into()),
            latency,
            figures: Vec::new(),
        }
    }

    /// The events of this report: the operation's, then one per figure.
    pub fn events(&self, probe: &ProbeConfig, host: &str, ts_ms: i64) -> Vec<Event> {
        let instance = format!("{}@{}", probe.kind.word(), probe.name);
        let mut e = Event::new(
            ts_ms,
            Layer::Component,
            probe.service.clone(),
            host,
            format!("{instance} {}", self.operation),
        );
        e.latency_ms = Some(self.latency.as_secs_f64() * 1000.0);
        if let Err(code) = &self.result {
            e.outcome = Outcome::Error(Some(code.clone()));
        }
        let mut out = vec![e];
        for (figure, value) in &self.figures {
            let mut g = Event::new(
                ts_ms,
                Layer::Component,
                probe.service.clone(),
                host,
                format!("{instance} {figure}"),
            );
            g.value = Some(*value);
            out.push(g);
        }
        out
    }
}

/// The error code of an I/O error on the way to a target.
pub(crate) fn io_code(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => REFUSED.into(),
        K::TimedOut => TIMEOUT.into(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => "reset".into(),
        K::UnexpectedEof => "closed".into(),
        K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => "unreachable".into(),
        K::NotFound => "not-found".into(),
        _ => "io".into(),
    }
}

/// Connects over TCP, resolving `target` (`host:port`) first.
pub(crate) async fn connect(target: &str) -> Result<tokio::net::TcpStream, String> {
    let stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| io_code(&e))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
