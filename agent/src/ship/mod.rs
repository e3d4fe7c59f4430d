//! Shipping batches to collectors, with acknowledgements.
//!
//! A batch is one chunk of one source: the events parsed from the byte range
//! `[start, end)` of one file, in [`panorama_model::wire::binary`] encoding,
//! compressed with zstd. [`Shipper::ship`] returns only once a collector
//! answered 2xx, which it does only after the batch is durable in its WAL;
//! only then may the caller advance the source's checkpoint. A collector
//! that already counted the range acknowledges it again without counting,
//! so resending after a crash is always safe.
//!
//! Several batches of a source may be in flight at once: the first
//! unacknowledged one goes through [`Shipper::ship_encoded`], each later one
//! through one [`Shipper::try_chained`] attempt, marked as chained to its
//! predecessor ([`CHAINED_HEADER`]) so the collector counts it only right
//! after that one; the agent's source task settles them in order and
//! resends a refused one (and all after it) once it is the first.
//!
//! Nothing is ever dropped here: while no collector accepts, `ship` keeps
//! trying — failing over between collectors, backing off with jitter — and
//! the tailer, which cannot run far ahead of acknowledgements, stops reading.
//! Refusals that retrying cannot fix (a rejected token, a batch the collector
//! calls malformed) are logged at ERROR, because they need an operator, and
//! retried at the slowest pace until someone fixes the configuration.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use panorama_model::wire::binary::{self, Batch};
use panorama_model::wire::{CHAINED_HEADER, IngestReply};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

/// Where to ship and how persistently.
#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// Collector base URLs, tried in order; the first is preferred.
    pub collectors: Vec<String>,
    /// Bearer token sent with every batch.
    pub token: Option<String>,
    /// Timeout of one request, connection included.
    pub request_timeout: Duration,
    /// First wait after every collector failed.
    pub initial_backoff: Duration,
    /// Longest wait between rounds.
    pub max_backoff: Duration,
    /// Whether batches are compressed (see [`Compression`]).
    pub compression: Compression,
    /// How `https://` collectors are trusted and how this agent proves
    /// itself to them.
    pub tls: ShipTls,
    /// Batches of one source shipped before the first of them is
    /// acknowledged: one acknowledgement round trip (with the collector's
    /// WAL fsync) per batch would otherwise bound a source's throughput.
    pub max_in_flight: usize,
}

/// How batches travel to the collectors.
///
/// zstd at level 1 shrinks access-log batches several times and keeps up
/// with a million lines a second, but on the same host it only spends CPU:
/// the agent's on compressing, the collector's on inflating (its WAL keeps
/// the inflated batch either way). On two cores shared by both processes
/// that is about a tenth of the pipeline's work, so `Auto` sends
/// uncompressed batches when every collector is this host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd unless every collector URL names a loopback address.
    #[default]
    Auto,
    /// Always zstd.
    Zstd,
    /// Never compressed.
    None,
}

/// The zstd level used when batches are compressed.
pub const ZSTD_LEVEL: i32 = 1;

impl ShipConfig {
    /// The zstd level batches are compressed at, `None` when they go
    /// uncompressed.
    pub fn zstd_level(&self) -> Option<i32> {
        match self.compression {
            Compression::Zstd => Some(ZSTD_LEVEL),
            Compression::None => None,
            Compression::Auto if self.collectors.iter().all(|u| is_loopback(u)) => None,
            Compression::Auto => Some(ZSTD_LEVEL),
        }
    }
}

/// Whether a collector URL names this host by a loopback address or
/// `localhost`.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Default of [`ShipConfig::max_in_flight`]: enough to keep both the
/// agent's parser and the collector busy over loopback; the tailer's
/// in-flight byte cap bounds memory whatever it is.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// TLS towards the collectors (rustls; no OpenSSL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipTls {
    /// PEM CA certificate(s) the collectors' certificates are signed by,
    /// trusted besides the public roots (a private CA, or a self-signed
    /// collector).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for a collector that requires one.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl ShipConfig {
    /// Defaults for one collector.
    pub fn new(collector: impl Into<String>) -> ShipConfig {
        ShipConfig {
            collectors: vec![collector.into()],
            token: None,
            request_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            compression: Compression::Auto,
            tls: ShipTls::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// Why a [`Shipper`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// No collector configured.
    #[error("no collector URL configured")]
    NoCollector,
    /// A collector URL does not parse.
    #[error("collector URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// A CA, certificate or key file is unreadable or wrong.
    #[error("{path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The shipper's figures, for the agent's `/metrics`.
#[derive(Debug, Default)]
pub struct ShipStats {
    /// Batches acknowledged.
    pub batches_acked: AtomicU64,
    /// Events in acknowledged batches.
    pub events_acked: AtomicU64,
    /// Compressed bytes sent, including attempts that failed.
    pub bytes_sent: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Switches from one collector to another.
    pub failovers: AtomicU64,
}

/// Sends batches to the first collector that accepts them.
pub struct Shipper {
    client: reqwest::Client,
    endpoints: Vec<String>,
    cfg: ShipConfig,
    /// The collector tried first; shared by the batches in flight.
    active: AtomicUsize,
    stats: ShipStats,
}

/// What became of a shipped batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Durable at a collector (or counted there before).
    Acked,
    /// The collector had already counted up to `counted`, inside this
    /// batch's range: it cannot split the batch, so nothing of it was
    /// counted. Only possible when the agent lost its checkpoint after an
    /// acknowledgement; the caller reports the bytes past `counted`.
    Overlap {
        /// The collector's counted offset for this source.
        counted: u64,
    },
}

/// What one attempt at a chained batch came to ([`Shipper::try_chained`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tried {
    /// Delivered, or not; as [`Shipper::ship_encoded`] answers.
    Delivered(Delivery),
    /// Not acknowledged (refused, failed, or its predecessor was): resend
    /// it once it is the first unacknowledged batch of its source, not
    /// before `after` when the collector said so.
    Failed {
        /// The collector's `Retry-After`.
        after: Option<Duration>,
    },
}

/// A batch as it travels: its binary encoding, compressed with zstd.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The request body; cloning it for a retry copies no bytes.
    bytes: bytes::Bytes,
    compressed: bool,
    /// Events in the batch, for the shipper's figures.
    events: u64,
    /// The batch's source, for log lines about it.
    source_id: String,
}

impl Encoded {
    /// Encodes `batch` and compresses it at `zstd_level`, if any.
    pub fn new(batch: &Batch, zstd_level: Option<i32>) -> Encoded {
        let mut raw = Vec::with_capacity(batch.events.len() * 24 + 64);
        binary::encode(batch, &mut raw);
        // Compressing into a Vec cannot fail for a valid level; should it
        // ever, the uncompressed body is just as acceptable to the collector.
        let (bytes, compressed) = match zstd_level.map(|l| zstd::bulk::compress(&raw, l)) {
            Some(Ok(z)) => (z, true),
            _ => (raw, false),
        };
        Encoded {
            bytes: bytes.into(),
            compressed,
            events: batch.events.len() as u64,
            source_id: batch.meta.source_id.clone(),
        }
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the body is empty (never, for an encoded batch).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// How the last attempt ended.
enum Attempt {
    Acked,
    Overlap(u64),
    /// Worth retrying soon, maybe elsewhere; `Some` when the collector said when.
    Retry(String, Option<Duration>),
    /// Needs an operator; retry at the slowest pace.
    Refused(String),
}

impl Shipper {
    /// Builds a shipper.
    ///
    /// # Errors
    /// No collector, or a URL that does not parse.
    pub fn new(cfg: ShipConfig) -> Result<Shipper, ShipError> {
        if cfg.collectors.is_empty() {
            return Err(ShipError::NoCollector);
        }
        let mut endpoints = Vec::new();
        for url in &cfg.collectors {
            let parsed = reqwest::Url::parse(url).map_err(|e| ShipError::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ShipError::BadUrl {
                    url: url.clone(),
                    reason: "expected http:// or https://".into(),
                });
            }
            endpoints.push(format!("{}/api/v1/ingest", url.trim_end_matches('/')));
        }
        let builder = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(3)));
        let client = with_tls(builder, &cfg.tls)?
            .build()
            .map_err(|e| ShipError::Client(e.to_string()))?;
        Ok(Shipper {
            client,
            endpoints,
            cfg,
            active: AtomicUsize::new(0),
            stats: ShipStats::default(),
        })
    }

    /// The figures so far.
    pub fn stats(&self) -> &ShipStats {
        &self.stats
    }

    /// Ships one batch and returns once a collector acknowledged it. Never
    /// gives up; cancel the future (drop it) to stop, which leaves the batch
    /// unacknowledged and so to be resent.
    pub async fn ship(&self, batch: &Batch) -> Delivery {
        let body = Encoded::new(batch, self.cfg.zstd_level());
        self.ship_encoded(&body).await
    }

    /// [`Shipper::ship`] for a batch already encoded: the agent encodes a
    /// chunk's batch as soon as it is parsed and gives its events back for
    /// reuse, so that while the batch waits for the collector only its
    /// compressed bytes are held (a few hundred KB instead of the tens of
    /// MB its events take while catching up).
    pub async fn ship_encoded(&self, body: &Encoded) -> Delivery {
        let mut round = 0u32;
        let mut tried_this_round = 0usize;
        loop {
            let active = self.active.load(Ordering::Relaxed) % self.endpoints.len();
            let endpoint = self.endpoints[active].clone();
            match self.attempt(&endpoint, body, false).await {
                Attempt::Acked => {
                    self.stats.batches_acked.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .events_acked
                        .fetch_add(body.events, Ordering::Relaxed);
                    return Delivery::Acked;
                }
                Attempt::Overlap(counted) => return Delivery::Overlap { counted },
                Attempt::Retry(why, after) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(collector = %endpoint, source = %body.source_id, why, "ship retry");
                    if let Some(after) = after {
                        tokio::time::sleep(after.min(self.cfg.max_backoff)).await;
                    }
                }
                Attempt::Refused(why) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(collector = %endpoint, source = %body.source_id, why, "collector refused batch; needs an operator, retrying slowly");
                    tokio::time::sleep(jitter(self.cfg.max_backoff)).await;
                }
            }
            // Fail over; after every collector failed once, back off.
            if self.endpoints.len() > 1 {
                self.active
                    .store((active + 1) % self.endpoints.len(), Ordering::Relaxed);
                self.stats.failovers.fetch_add(1, Ordering::Relaxed);
            }
            tried_this_round += 1;
            if tried_this_round >= self.endpoints.len() {
                tried_this_round = 0;
                let exp = self
                    .cfg
                    .initial_backoff
                    .saturating_mul(1u32 << round.min(16));
                tokio::time::sleep(jitter(exp.min(self.cfg.max_backoff))).await;
                round += 1;
            }
        }
    }

    /// One attempt at a batch sent while the one before it of its source
    /// is unacknowledged, to the collector [`Shipper::ship_encoded`] last
    /// reached, marked as chained to that predecessor. No retry here: a
    /// refused chained batch must wait for its predecessor, and then
    /// follow it through [`Shipper::ship_encoded`].
    pub async fn try_chained(&self, body: &Encoded) -> Tried {
        let active = self.active.load(Ordering::Relaxed) % self.endpoints.len();
        match self.attempt(&self.endpoints[active], body, true).await {
            Attempt::Acked => {
                self.stats.batches_acked.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .events_acked
                    .fetch_add(body.events, Ordering::Relaxed);
                Tried::Delivered(Delivery::Acked)
            }
            Attempt::Overlap(counted) => Tried::Delivered(Delivery::Overlap { counted }),
            Attempt::Retry(why, after) => {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(source = %body.source_id, why, "chained batch not acknowledged; resent after its predecessor");
                Tried::Failed { after }
            }
            Attempt::Refused(_) => {
                // Said again, at ERROR, when it is resent as the first.
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                Tried::Failed { after: None }
            }
        }
    }

    async fn attempt(&self, endpoint: &str, body: &Encoded, chained: bool) -> Attempt {
        let mut req = self
            .client
            .post(endpoint)
            .header(CONTENT_TYPE, binary::CONTENT_TYPE)
            .body(body.bytes.clone());
        if chained {
            req = req.header(CHAINED_HEADER, "1");
        }
        if body.compressed {
            req = req.header(CONTENT_ENCODING, "zstd");
        }
        if let Some(token) = &self.cfg.token {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        self.stats
            .bytes_sent
            .fetch_add(body.bytes.len() as u64, Ordering::Relaxed);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(e.to_string(), None),
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Acked;
        }
        if status == StatusCode::CONFLICT {
            let bytes = resp.bytes().await.unwrap_or_default();
            let reply: IngestReply = serde_json::from_slice(&bytes).unwrap_or_default();
            if let Some(counted) = reply.counted_offset {
                return Attempt::Overlap(counted);
            }
            return Attempt::Refused("409 without counted_offset".into());
        }
        let after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        let why = format!(
            "status {status}: {}",
            text.chars().take(300).collect::<String>()
        );
        match status {
            StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE => Attempt::Refused(why),
            _ => Attempt::Retry(why, after),
        }
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ShipError> {
    std::fs::read(path).map_err(|e| ShipError::Tls {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Adds the configured CA and client identity to the client.
fn with_tls(
    mut b: reqwest::ClientBuilder,
    tls: &ShipTls,
) -> Result<reqwest::ClientBuilder, ShipError> {
    if let Some(ca) = &tls.ca_file {
        let pem = read(ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ShipError::Tls {
            path: ca.display().to_string(),
            reason: e.to_string(),
        })?;
        if certs.is_empty() {
            return Err(ShipError::Tls {
                path: ca.display().to_string(),
                reason: "no PEM certificate in the file".into(),
            });
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| ShipError::Tls {
                path: cert.display().to_string(),
                reason: format!("certificate and key: {e}"),
            })?;
            b = b.identity(id);
        }
        (None, None) => {}
        (Some(p), None) | (None, Some(p)) => {
            return Err(ShipError::Tls {
                path: p.display().to_string(),
                reason: "client_cert and client_key go together".into(),
            });
        }
    }
    Ok(b)
}

/// Between half and all of `d`, so agents returning from the same outage spread out.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}
