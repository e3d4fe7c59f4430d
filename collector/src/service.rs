//! The collector as a running service: replay at start, ingest, flushing,
//! and an ordered drain at shutdown.
//!
//! Exactly-once rests on three rules here:
//! - once a batch is handed to the WAL, its aggregation and ledger commit
//!   run in a task of their own, which a client that hangs up (and hyper
//!   dropping the request future with it) cannot cancel;
//! - a resend that finds its range reserved by a batch still in flight
//!   waits for that batch's outcome (or is told to retry), and is answered
//!   *duplicate* only once the first copy is counted;
//! - a WAL segment is deleted only when no record in it is still on its way
//!   to the aggregator (the WAL's pins) and every entry of it is written;
//! - the batches of one source in flight together (an agent's chained
//!   batches) go to the WAL in order and are counted in order, and one
//!   refused cancels the later ones (see [`crate::ledger`]): the counted
//!   offset never passes a range that was not counted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use panorama_model::wire::binary;
use panorama_model::{DAY_MS, Event, MINUTE_MS};
use panorama_store::{Store, StoreError};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::aggregate::{Aggregator, SampleLimits};
use crate::batch_pool::BatchPool;
use crate::ledger::{Ledger, Ticket, Turn, Verdict};
use crate::wal::{SegmentId, Wal, WalConfig, WalError, replay};

/// How a collector runs.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// This collector's id, part of every document id it writes; unique among
    /// collectors sharing a store.
    pub id: String,
    /// Where the WAL and the ledger live.
    pub data_dir: PathBuf,
    /// How long a minute stays open for late events before it is first written.
    pub grace: Duration,
    /// How often the flusher looks for minutes to write.
    pub flush_interval: Duration,
    /// How often minutes still open (or in their grace period) are written
    /// as they stand, so that alert rules and the dashboard see the current
    /// minute within seconds instead of after it closes. Writes are
    /// idempotent upserts of the same document, so this only costs store
    /// writes. `None` writes a minute only once its grace has passed.
    pub open_flush_interval: Option<Duration>,
    /// Bearer tokens and the producer each names. Empty: no authentication
    /// (loopback and demos only; a warning says so at start).
    pub tokens: HashMap<String, String>,
    /// Largest request body accepted, compressed.
    pub max_body_bytes: usize,
    /// Largest body after decompression.
    pub max_decoded_bytes: usize,
    /// Events older than this many days are counted and dropped: the store
    /// would delete them at the next retention pass anyway.
    pub retention_days: u32,
    /// Drill-down samples kept per series and minute.
    pub samples: SampleLimits,
    /// WAL limits (its `dir` is overridden to `data_dir/wal`).
    pub wal: WalConfig,
    /// Fault injection for tests: a pause between the WAL's answer and
    /// counting the batch, which widens the window in which other
    /// producers roll the segment and a flush looks at it. Zero in production.
    pub count_delay: Duration,
    /// The compactor building the store's hourly tier.
    pub compact: crate::compact::CompactConfig,
}

impl CollectorConfig {
    /// Defaults with data under `data_dir`.
    pub fn new(id: impl Into<String>, data_dir: impl Into<PathBuf>) -> CollectorConfig {
        let data_dir = data_dir.into();
        CollectorConfig {
            id: id.into(),
            wal: WalConfig::new(data_dir.join("wal")),
            data_dir,
            grace: Duration::from_secs(crate::DEFAULT_GRACE_SECS),
            flush_interval: Duration::from_secs(1),
            open_flush_interval: Some(Duration::from_secs(5)),
            tokens: HashMap::new(),
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 64 << 20,
            retention_days: 14,
            samples: SampleLimits::default(),
            count_delay: Duration::ZERO,
            compact: crate::compact::CompactConfig::default(),
        }
    }
}

/// The collector's own figures, for `/metrics` and `/health`.
#[derive(Debug, Default)]
pub struct CollectorStats {
    /// Events accepted into the WAL.
    pub events_in: AtomicU64,
    /// Batches acknowledged as duplicates of counted ranges.
    pub duplicate_batches: AtomicU64,
    /// Resends answered "retry" because the first copy was still being
    /// written after [`IN_FLIGHT_WAIT`].
    pub in_flight_retries: AtomicU64,
    /// Events the store refused for good (inside rejected rollups): given up.
    pub events_rejected: AtomicU64,
    /// Batches refused because they straddle a counted offset.
    pub overlap_batches: AtomicU64,
    /// Requests refused as malformed.
    pub bad_requests: AtomicU64,
    /// Requests refused for a missing or unknown token.
    pub unauthorized: AtomicU64,
    /// Requests refused while the WAL was full or failing.
    pub wal_refusals: AtomicU64,
    /// Events dropped for being older than the retention.
    pub dropped_too_old: AtomicU64,
    /// Events that arrived after their minute's grace period.
    pub late_events: AtomicU64,
    /// Rollups written to the store.
    pub rollups_written: AtomicU64,
    /// Store writes that failed (retried at the next flush).
    pub store_errors: AtomicU64,
    /// Documents the store refused for good.
    pub store_rejected: AtomicU64,
    /// Lines the agents reported reading, and failing to parse.
    pub agent_lines_read: AtomicU64,
    /// Lines the agents could not parse.
    pub agent_lines_failed: AtomicU64,
}

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The WAL or ledger could not be opened or replayed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (`replaying the write-ahead log`).
        what: String,
        /// The I/O error it failed with.
        source: std::io::Error,
    },
}

/// What an ingest call amounted to.
#[derive(Debug)]
pub enum IngestOutcome {
    /// Durable and counted.
    Accepted {
        /// Events counted into rollups (those older than the retention
        /// are dropped, not counted).
        events: usize,
    },
    /// Already counted before; acknowledged again.
    Duplicate,
    /// Straddles the counted offset; resume from `counted`.
    Overlap {
        /// End of the counted range.
        counted: u64,
    },
    /// An earlier copy of this range is still being written (or, for a
    /// chained batch, the batch it follows has not arrived); nothing was
    /// done with this one. Retry shortly: the answer will then be
    /// *duplicate* (counted) or the range will be new again (it failed).
    InFlight,
    /// An earlier batch of the same source, in flight with this one, was
    /// refused; this one was not counted either (it must not be counted
    /// past a range that is not). Resend from the first unacknowledged
    /// offset.
    Cancelled,
}

/// How long a resend waits for the outcome of an earlier copy still in
/// flight before it is told to retry; well under any client's timeout.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);

/// One agent source's figures, for `/api/v1/accounting`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SourceAccount {
    /// The agent (or `ndjson:<producer>`).
    pub agent: String,
    /// The source id (empty for NDJSON).
    pub source: String,
    /// Batches counted.
    pub batches: u64,
    /// Lines the agent read for those batches.
    pub lines_read: u64,
    /// Lines the agent failed to parse (they arrive as `(parse error)` events).
    pub lines_failed: u64,
    /// Events received in counted batches.
    pub events_received: u64,
    /// Events counted into rollups.
    pub events_counted: u64,
    /// Events dropped for being older than the retention.
    pub events_too_old: u64,
    /// Resent batches acknowledged without counting.
    pub duplicate_batches: u64,
    /// Batches refused as straddling the counted offset.
    pub overlap_batches: u64,
    /// When the last batch arrived, Unix ms.
    pub last_seen_ms: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct MinuteAccount {
    accepted: u64,
    written: u64,
    /// Events inside rollups the store refused for good.
    rejected: u64,
}

#[derive(Debug, Default)]
struct Accounting {
    sources: std::collections::BTreeMap<(String, String), SourceAccount>,
    minutes: std::collections::BTreeMap<i64, MinuteAccount>,
}

impl Accounting {
    fn source(&mut self, agent: &str, source: &str) -> &mut SourceAccount {
        self.sources
            .entry((agent.to_owned(), source.to_owned()))
            .or_insert_with(|| SourceAccount {
                agent: agent.to_owned(),
                source: source.to_owned(),
                ..SourceAccount::default()
            })
    }

    /// Keeps a week of minutes: enough to explain any recent difference,
    /// bounded whatever the traffic.
    fn prune(&mut self, now_ms: i64) {
        let oldest = now_ms - 7 * DAY_MS;
        self.minutes = self.minutes.split_off(&oldest);
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: CollectorConfig,
    pub(crate) wal: Wal,
    ledger: Mutex<Ledger>,
    agg: Mutex<Aggregator>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) stats: CollectorStats,
    last_store_error: Mutex<Option<String>>,
    accounting: Mutex<Accounting>,
    /// Woken whenever a reservation is committed or released, for resends
    /// waiting on an earlier copy.
    settled: Notify,
    /// One flush at a time: the periodic one and `flush_all` would
    /// otherwise both decide what to release.
    flushing: tokio::sync::Mutex<()>,
    pub(crate) live: Arc<crate::live::Live>,
    batches: BatchPool,
}

/// A running collector. Cheap to clone; every clone is the same collector.
#[derive(Clone)]
pub struct Collector {
    pub(crate) inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    flusher: Arc<Mutex<Option<JoinHandle<()>>>>,
    compactor: Arc<Mutex<Option<crate::compact::Compactor>>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Collector {
    /// Replays the WAL (so everything acknowledged before a crash is counted),
    /// then starts the flusher.
    ///
    /// # Errors
    /// The data directory, WAL or ledger cannot be read.
    pub async fn start(
        mut cfg: CollectorConfig,
        store: Arc<dyn Store>,
    ) -> Result<Collector, StartError> {
        cfg.wal.dir = cfg.data_dir.join("wal");
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| StartError::Io { what, source }
        };
        std::fs::create_dir_all(&cfg.data_dir).map_err(io("creating the data directory"))?;
        if cfg.tokens.is_empty() {
            tracing::warn!(
                "no ingest tokens configured: anyone who reaches the collector can send events"
            );
        }
        let mut ledger =
            Ledger::load(&cfg.data_dir.join("ledger.json")).map_err(io("loading the ledger"))?;
        let replayed = replay(&cfg.wal.dir).map_err(io("replaying the write-ahead log"))?;
        let stats = CollectorStats::default();
        let mut agg = Aggregator::new(cfg.id.clone(), cfg.samples);
        agg.write_partials_after(now_ms());
        let mut replayed_events = 0usize;
        let mut accounting = Accounting::default();
        let now = now_ms();
        let mut batch = binary::Batch::default();
        for (segment, payload) in &replayed.records {
            if *segment <= ledger.through_segment() {
                continue;
            }
            if binary::decode_into(payload, &mut batch).is_err() {
                tracing::error!(
                    segment = segment.0,
                    "undecodable record in the write-ahead log; skipped"
                );
                continue;
            }
            let m = &batch.meta;
            if m.end_offset > m.start_offset {
                // The log holds a source's batches in the order they were
                // reserved, and a chained one only after its predecessor
                // (see `Wal::submit`): judged alone, in that order, they
                // are judged as they were live.
                let Verdict::New(ticket) =
                    ledger.check(&m.agent_id, &m.source_id, m.start_offset, m.end_offset)
                else {
                    continue;
                };
                ledger.commit(&m.agent_id, &m.source_id, ticket, *segment);
            }
            let tally = count_batch(
                &mut agg,
                &mut accounting,
                *segment,
                &batch.events,
                Arrival::Replayed,
                &cfg,
                now,
            );
            stats
                .dropped_too_old
                .fetch_add(tally.too_old as u64, Ordering::Relaxed);
            replayed_events += tally.counted;
        }
        if replayed.torn_bytes > 0 {
            tracing::warn!(
                bytes = replayed.torn_bytes,
                "cut a torn write (never acknowledged) off the write-ahead log"
            );
        }
        tracing::info!(
            records = replayed.records.len(),
            events = replayed_events,
            "write-ahead log replayed"
        );
        // Past the last segment the ledger saw deleted: numbers (and the
        // document ids made of them) never repeat, even with the directory empty.
        let floor = ledger.through_segment();
        let wal = Wal::open_after(cfg.wal.clone(), floor).map_err(|e| match e {
            WalError::Io(source) => StartError::Io {
                what: "opening the write-ahead log".into(),
                source,
            },
            other => StartError::Io {
                what: "opening the write-ahead log".into(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        let live = crate::live::Live::new(&cfg.id);
        // What was replayed reaches the store with the first flush; until
        // then the store's recent minutes of this collector are stale.
        live.set_settled(replayed_events == 0);
        let batches = BatchPool::default();
        batches.give(batch);
        let inner = Arc::new(Inner {
            live,
            cfg,
            wal,
            ledger: Mutex::new(ledger),
            agg: Mutex::new(agg),
            store,
            stats,
            last_store_error: Mutex::new(None),
            accounting: Mutex::new(accounting),
            settled: Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
            batches,
        });
        let (shutdown, rx) = watch::channel(false);
        let flusher = tokio::spawn(flush_loop(inner.clone(), rx));
        let c = &inner.cfg;
        let compactor = crate::compact::Compactor::spawn(
            inner.store.clone(),
            c.compact.clone(),
            c.grace,
            c.retention_days,
        );
        Ok(Collector {
            inner,
            shutdown,
            flusher: Arc::new(Mutex::new(Some(flusher))),
            compactor: Arc::new(Mutex::new(Some(compactor))),
        })
    }

    /// Decodes an agent's binary batch for [`Collector::ingest`], into
    /// the memory of a batch this collector has counted before.
    ///
    /// # Errors
    /// The bytes are not a valid batch; see [`binary::decode`].
    pub fn decode_batch(&self, bytes: &[u8]) -> Result<binary::Batch, binary::DecodeError> {
        self.inner.batches.decode(bytes)
    }

    /// Counts a decoded batch: dedup, WAL, aggregation. `wal_bytes` is the
    /// batch's binary encoding, written to the WAL as is. Once counted, the
    /// batch's memory is kept for [`Collector::decode_batch`].
    ///
    /// Cancel-safe where it matters: once the batch is handed to the WAL,
    /// dropping this future (a client that hung up) no longer stops it from
    /// being counted; the rest runs in a task of its own.
    ///
    /// # Errors
    /// The WAL refused (full or failing): nothing was counted.
    pub async fn ingest(
        &self,
        batch: binary::Batch,
        wal_bytes: Vec<u8>,
    ) -> Result<IngestOutcome, WalError> {
        self.ingest_ordered(batch, wal_bytes, false).await
    }

    /// [`Collector::ingest`] for a batch chained to the one before it of
    /// its source ([`panorama_model::wire::CHAINED_HEADER`]): counted only
    /// directly after it, and [`IngestOutcome::Cancelled`] if it is refused.
    ///
    /// # Errors
    /// As [`Collector::ingest`].
    pub async fn ingest_chained(
        &self,
        batch: binary::Batch,
        wal_bytes: Vec<u8>,
    ) -> Result<IngestOutcome, WalError> {
        self.ingest_ordered(batch, wal_bytes, true).await
    }

    async fn ingest_ordered(
        &self,
        batch: binary::Batch,
        wal_bytes: Vec<u8>,
        chained: bool,
    ) -> Result<IngestOutcome, WalError> {
        let ticket = match self.admit(&batch.meta, chained).await {
            Ok(ticket) => ticket,
            Err(outcome) => {
                self.inner.batches.give(batch);
                return Ok(outcome);
            }
        };
        // From here on the range is reserved: the task commits or releases
        // it whatever becomes of this request.
        let inner = self.inner.clone();
        // The task runs in the request's span (the ingest route opens one
        // naming the producer and range), so what it logs says whose batch.
        let task = tokio::spawn(
            async move {
                let outcome = append_and_count(&inner, &batch, wal_bytes, ticket).await;
                inner.batches.give(batch);
                outcome
            }
            .in_current_span(),
        );
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                // A panic while counting: a bug. The task's guard gave the
                // reservation back, so the resend is not kept waiting.
                tracing::error!(error = %e, "counting a batch failed");
                Err(WalError::Closed)
            }
        }
    }

    /// Checks a ranged batch against the ledger, waiting a while for an
    /// earlier copy still in flight (or a chained batch's predecessor).
    /// `Ok`: the range is new (and reserved under the ticket), or the batch
    /// is unranged; count it. `Err`: the answer.
    async fn admit(
        &self,
        m: &binary::BatchMeta,
        chained: bool,
    ) -> Result<Option<Ticket>, IngestOutcome> {
        if m.end_offset <= m.start_offset {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
        loop {
            // Registered before the check, so a commit between the check
            // and the wait still wakes it.
            let settled = self.inner.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let verdict = {
                let mut ledger = lock(&self.inner.ledger);
                let (a, s, start, end) = (&m.agent_id, &m.source_id, m.start_offset, m.end_offset);
                if chained {
                    ledger.check_chained(a, s, start, end)
                } else {
                    ledger.check(a, s, start, end)
                }
            };
            match verdict {
                Verdict::New(ticket) => return Ok(Some(ticket)),
                Verdict::Duplicate => {
                    lock(&self.inner.accounting)
                        .source(&m.agent_id, &m.source_id)
                        .duplicate_batches += 1;
                    self.inner
                        .stats
                        .duplicate_batches
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(IngestOutcome::Duplicate);
                }
                Verdict::Overlap { counted } => {
                    lock(&self.inner.accounting)
                        .source(&m.agent_id, &m.source_id)
                        .overlap_batches += 1;
                    self.inner
                        .stats
                        .overlap_batches
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(IngestOutcome::Overlap { counted });
                }
                Verdict::InFlight => {
                    if tokio::time::timeout_at(deadline, settled).await.is_err() {
                        self.inner
                            .stats
                            .in_flight_retries
                            .fetch_add(1, Ordering::Relaxed);
                        return Err(IngestOutcome::InFlight);
                    }
                }
            }
        }
    }

    /// The store behind this collector.
    pub fn store(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// The collector's figures.
    pub fn stats(&self) -> &CollectorStats {
        &self.inner.stats
    }

    /// Writes every dirty minute now, ready or not, and releases what it can.
    /// Shutdown uses it; so do tests that cannot wait for the grace period.
    ///
    /// # Errors
    /// The store refused or was unreachable; the data stays in memory and WAL.
    pub async fn flush_all(&self) -> Result<(), StoreError> {
        flush_once(&self.inner, true).await
    }

    /// Health for `/health`: the backlog of minutes not yet in the store.
    pub(crate) fn health(&self) -> serde_json::Value {
        let agg = lock(&self.inner.agg);
        let backlog = agg.dirty();
        let lag_s = agg
            .oldest_dirty_minute()
            .map(|m| ((now_ms() - m - 60_000).max(0)) / 1000);
        drop(agg);
        let last_error = lock(&self.inner.last_store_error).clone();
        let grace_s = self.inner.cfg.grace.as_secs() as i64;
        let degraded = last_error.is_some() || lag_s.is_some_and(|l| l > grace_s + 60);
        serde_json::json!({
            "status": if degraded { "degraded" } else { "ok" },
            "collector": self.inner.cfg.id,
            "store": self.inner.store.backend(),
            "backlog_entries": backlog,
            "flush_lag_seconds": lag_s,
            "wal_bytes": self.inner.wal.stats().bytes.load(Ordering::Relaxed),
            "last_store_error": last_error,
        })
    }

    /// End-to-end loss accounting for `/api/v1/accounting`: per agent source,
    /// what the agent read and failed and what was counted; per minute (the
    /// last `minutes` with traffic), events accepted and events in the
    /// store. A difference no counted reason explains is flagged.
    pub fn accounting(&self, minutes: usize) -> serde_json::Value {
        let dirty = lock(&self.inner.agg).dirty_minutes();
        let acct = lock(&self.inner.accounting);
        let sources: Vec<serde_json::Value> = acct
            .sources
            .values()
            .map(|a| {
                // Line-based sources: a line becomes at most one event (a
                // failed one becomes a `(parse error)` event); multi-line
                // records make fewer. More events than lines is unexplained.
                let flag = (a.lines_read > 0 && a.events_received > a.lines_read)
                    .then(|| format!("{} events from {} lines", a.events_received, a.lines_read));
                let mut v = serde_json::to_value(a).unwrap_or_default();
                v["flag"] = serde_json::json!(flag);
                v
            })
            .collect();
        let rows: Vec<serde_json::Value> = acct
            .minutes
            .iter()
            .rev()
            .take(minutes)
            .map(|(minute, m)| {
                let pending = m.accepted.saturating_sub(m.written + m.rejected);
                let flag = if m.rejected > 0 {
                    Some(format!(
                        "{} events refused by the store for good (panorama_collector_dropped_total{{reason=\"store_rejected\"}})",
                        m.rejected
                    ))
                } else if m.written > m.accepted {
                    Some(format!(
                        "{} more events written than accepted",
                        m.written - m.accepted
                    ))
                } else if pending > 0 && !dirty.contains(minute) {
                    Some(format!(
                        "{pending} accepted events neither written nor waiting"
                    ))
                } else {
                    None
                };
                serde_json::json!({
                    "minute": minute,
                    "accepted": m.accepted,
                    "written": m.written,
                    "rejected": m.rejected,
                    "pending": pending,
                    "flag": flag,
                })
            })
            .collect();
        // What the collector itself gave up on, whichever minute it was.
        let abandoned = self.inner.wal.stats().abandoned.load(Ordering::Relaxed);
        let given_up = serde_json::json!({
            "wal_abandoned_records": abandoned,
            "flag": (abandoned > 0).then(|| format!(
                "{abandoned} durable WAL records were never counted (lost unless replayed before their segment is deleted)"
            )),
        });
        let flagged = sources
            .iter()
            .chain(rows.iter())
            .chain(std::iter::once(&given_up))
            .filter(|v| !v["flag"].is_null())
            .count();
        serde_json::json!({
            "collector": self.inner.cfg.id,
            "since": "collector start (minutes replayed from the WAL included)",
            "flagged": flagged,
            "given_up": given_up,
            "sources": sources,
            "minutes": rows,
        })
    }

    /// Prometheus text for `/metrics`.
    pub(crate) fn metrics(&self) -> String {
        let s = &self.inner.stats;
        let w = self.inner.wal.stats();
        let (entries, dirty, oldest) = {
            let agg = lock(&self.inner.agg);
            (agg.len(), agg.dirty(), agg.oldest_dirty_minute())
        };
        let lag = oldest.map_or(0, |m| ((now_ms() - m - 60_000).max(0)) / 1000);
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, u64)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in lines {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        metric(
            "panorama_collector_events_in_total",
            "counter",
            "Events accepted into the write-ahead log.",
            vec![(String::new(), g(&s.events_in))],
        );
        metric(
            "panorama_collector_dropped_total",
            "counter",
            "Events or requests refused or dropped, by reason.",
            vec![
                ("{reason=\"too_old\"}".into(), g(&s.dropped_too_old)),
                ("{reason=\"bad_request\"}".into(), g(&s.bad_requests)),
                ("{reason=\"unauthorized\"}".into(), g(&s.unauthorized)),
                ("{reason=\"wal_refused\"}".into(), g(&s.wal_refusals)),
                ("{reason=\"overlap\"}".into(), g(&s.overlap_batches)),
                ("{reason=\"store_rejected\"}".into(), g(&s.events_rejected)),
                ("{reason=\"wal_abandoned\"}".into(), g(&w.abandoned)),
            ],
        );
        metric(
            "panorama_collector_in_flight_retries_total",
            "counter",
            "Resends told to retry because their first copy was still being written.",
            vec![(String::new(), g(&s.in_flight_retries))],
        );
        metric(
            "panorama_collector_duplicate_batches_total",
            "counter",
            "Resent batches acknowledged without counting.",
            vec![(String::new(), g(&s.duplicate_batches))],
        );
        metric(
            "panorama_collector_late_events_total",
            "counter",
            "Events that arrived after their minute's grace period.",
            vec![(String::new(), g(&s.late_events))],
        );
        metric(
            "panorama_collector_wal_bytes",
            "gauge",
            "Bytes held in the write-ahead log.",
            vec![(String::new(), g(&w.bytes))],
        );
        metric(
            "panorama_collector_wal_records_total",
            "counter",
            "Records appended to the write-ahead log.",
            vec![(String::new(), g(&w.records))],
        );
        metric(
            "panorama_collector_wal_syncs_total",
            "counter",
            "Disk flushes of the write-ahead log.",
            vec![(String::new(), g(&w.syncs))],
        );
        metric(
            "panorama_collector_entries",
            "gauge",
            "Rollups held in memory.",
            vec![(String::new(), entries as u64)],
        );
        metric(
            "panorama_collector_backlog_entries",
            "gauge",
            "Rollups waiting to be written to the store.",
            vec![(String::new(), dirty as u64)],
        );
        metric(
            "panorama_collector_flush_lag_seconds",
            "gauge",
            "Age of the oldest minute not yet in the store.",
            vec![(String::new(), lag.max(0) as u64)],
        );
        metric(
            "panorama_collector_rollups_written_total",
            "counter",
            "Rollup documents written.",
            vec![(String::new(), g(&s.rollups_written))],
        );
        metric(
            "panorama_collector_store_errors_total",
            "counter",
            "Store writes that failed and were retried.",
            vec![(String::new(), g(&s.store_errors))],
        );
        metric(
            "panorama_collector_store_rejected_total",
            "counter",
            "Documents the store refused for good.",
            vec![(String::new(), g(&s.store_rejected))],
        );
        metric(
            "panorama_collector_agent_lines_read_total",
            "counter",
            "Lines agents reported reading.",
            vec![(String::new(), g(&s.agent_lines_read))],
        );
        metric(
            "panorama_collector_agent_lines_failed_total",
            "counter",
            "Lines agents reported failing to parse.",
            vec![(String::new(), g(&s.agent_lines_failed))],
        );
        out
    }

    /// Stops the flusher after writing every minute it holds (or trying to,
    /// until `deadline`); whatever the store did not take stays in the WAL.
    pub async fn shutdown(&self, deadline: Duration) {
        let _ = self.shutdown.send(true);
        let compactor = lock(&self.compactor).take();
        if let Some(c) = compactor {
            c.stop().await;
        }
        let handle = lock(&self.flusher).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        match tokio::time::timeout(deadline, flush_once(&self.inner, true)).await {
            Ok(Ok(())) => tracing::info!("final flush done"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "final flush failed; the write-ahead log keeps the data")
            }
            Err(_) => tracing::warn!("final flush timed out; the write-ahead log keeps the data"),
        }
    }
}

/// A poisoned lock means a panic mid-update somewhere; the counters and maps
/// behind these locks stay usable, and refusing all further ingest would be
/// worse than carrying on.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Releases a reservation when dropped unless disarmed: whatever ends the
/// counting task early (an error, a panic) leaves no reservation behind for
/// resends to wait on.
struct Reservation<'a> {
    inner: &'a Inner,
    key: Option<(String, String, Ticket)>,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some((agent, source, ticket)) = self.key.take() {
            let cancelled = lock(&self.inner.ledger).release(&agent, &source, ticket);
            if cancelled > 0 {
                tracing::warn!(
                    cancelled,
                    "batch not counted; the later batches of its source in flight are refused too"
                );
            }
            self.inner.settled.notify_waiters();
        }
    }
}

/// Which turn [`wait_turn`] waits for.
#[derive(Clone, Copy)]
enum Step {
    /// Handing the batch to the WAL.
    Submit,
    /// Counting and committing it.
    Count,
}

/// Waits until the earlier reservations of the batch's source let it take
/// `step`. `None`: one of them was released, and this one with it. Never
/// waits for long: an earlier reservation belongs to a counting task that
/// nothing cancels, which submits, counts or releases it.
async fn wait_turn(
    inner: &Inner,
    key: &(String, String, Ticket),
    step: Step,
) -> Option<Option<u64>> {
    let (agent, source, ticket) = key;
    loop {
        // Registered before the look, so a change in between still wakes it.
        let settled = inner.settled.notified();
        tokio::pin!(settled);
        settled.as_mut().enable();
        let turn = {
            let ledger = lock(&inner.ledger);
            match step {
                Step::Submit => ledger.submit_turn(agent, source, *ticket),
                Step::Count => ledger.count_turn(agent, source, *ticket),
            }
        };
        match turn {
            Turn::Go { after } => return Some(after),
            Turn::Cancelled => return None,
            Turn::Wait => settled.await,
        }
    }
}

/// The part of ingest nothing may cancel: append, aggregate, commit the
/// range, settle the WAL receipt, in that order. The range is committed
/// after aggregation so that a resend is answered *duplicate* only once the
/// events are counted; the receipt is settled last so that the segment (and
/// the ledger offsets folded from it) cannot be released before both.
async fn append_and_count(
    inner: &Inner,
    batch: &binary::Batch,
    wal_bytes: Vec<u8>,
    ticket: Option<Ticket>,
) -> Result<IngestOutcome, WalError> {
    let m = &batch.meta;
    let key = ticket.map(|t| (m.agent_id.clone(), m.source_id.clone(), t));
    let mut reservation = Reservation {
        inner,
        key: key.clone(),
    };
    // To the WAL after the source's earlier batch, naming the epoch that
    // one went in: if its write fails, this one is not written either.
    let after = match &key {
        Some(k) => match wait_turn(inner, k, Step::Submit).await {
            Some(after) => after,
            None => return Ok(IngestOutcome::Cancelled),
        },
        None => None,
    };
    let submitted = {
        // Marked submitted under the same lock as the hand-over, so the
        // next batch of the source cannot reach the writer before it.
        let mut ledger = lock(&inner.ledger);
        let submitted = inner.wal.submit(wal_bytes, after);
        if let (Ok(s), Some((agent, source, ticket))) = (&submitted, &key) {
            ledger.submitted(agent, source, *ticket, s.epoch());
        }
        submitted
    };
    if key.is_some() {
        inner.settled.notify_waiters();
    }
    let appended = match submitted {
        Ok(s) => s.durable().await,
        Err(e) => Err(e),
    };
    let appended = match appended {
        Ok(a) => a,
        Err(e) => {
            inner.stats.wal_refusals.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    let segment = appended.segment();
    if !inner.cfg.count_delay.is_zero() {
        tokio::time::sleep(inner.cfg.count_delay).await;
    }
    // Counted after the source's earlier batches. They are durable (this
    // one could not be otherwise) and counting cannot fail, so this only
    // waits for them to get there; cancelled means one of them panicked.
    if let Some(k) = &key
        && wait_turn(inner, k, Step::Count).await.is_none()
    {
        tracing::error!(
            "an earlier batch of the source was not counted; this durable one is refused and will be counted again at a restart"
        );
        return Ok(IngestOutcome::Cancelled);
    }
    let s = &inner.stats;
    s.agent_lines_read
        .fetch_add(m.lines_read, Ordering::Relaxed);
    s.agent_lines_failed
        .fetch_add(m.lines_failed, Ordering::Relaxed);
    let now = now_ms();
    let counted = {
        // Lock order: aggregator, then accounting (nothing takes them the
        // other way round).
        let mut agg = lock(&inner.agg);
        let mut acct = lock(&inner.accounting);
        let tally = count_batch(
            &mut agg,
            &mut acct,
            segment,
            &batch.events,
            Arrival::Live,
            &inner.cfg,
            now,
        );
        drop(agg);
        s.dropped_too_old
            .fetch_add(tally.too_old as u64, Ordering::Relaxed);
        s.late_events
            .fetch_add(tally.late as u64, Ordering::Relaxed);
        let a = acct.source(&m.agent_id, &m.source_id);
        a.batches += 1;
        a.lines_read += m.lines_read;
        a.lines_failed += m.lines_failed;
        a.events_received += batch.events.len() as u64;
        a.events_counted += tally.counted as u64;
        a.events_too_old += tally.too_old as u64;
        a.last_seen_ms = now;
        acct.prune(now);
        tally.counted
    };
    inner.live.add(&batch.events);
    s.events_in.fetch_add(counted as u64, Ordering::Relaxed);
    if let Some((agent, source, ticket)) = reservation.key.take() {
        lock(&inner.ledger).commit(&agent, &source, ticket, segment);
        inner.settled.notify_waiters();
    }
    appended.settle();
    Ok(IngestOutcome::Accepted { events: counted })
}

/// How a batch reaches [`count_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// Just acknowledged by ingest.
    Live,
    /// Read back from the WAL at start: it was acknowledged before a crash
    /// or shutdown and not yet written. Its events are not counted as late:
    /// they arrived in time, and what has passed since is the collector's
    /// downtime, which would otherwise show up after every restart as a
    /// burst of late producers.
    Replayed,
}

/// What counting a batch amounted to.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// Events added to the aggregator.
    counted: usize,
    /// Events dropped for being older than the retention.
    too_old: usize,
    /// Counted events that arrived after their minute's grace period.
    late: usize,
}

/// Counts a batch's events into the aggregator and the per-minute
/// accounting, for live ingest and WAL replay alike: a record replayed after
/// a restart must count exactly as it would have live, or what a minute
/// holds would depend on whether the collector crashed. That includes the
/// retention filter: replay used to skip it, so events live ingest had
/// dropped as too old came back into the store after a restart (only for
/// the store's next retention pass to delete them again) and into the
/// minutes' accepted figures.
fn count_batch(
    agg: &mut Aggregator,
    acct: &mut Accounting,
    segment: SegmentId,
    events: &[Event],
    arrival: Arrival,
    cfg: &CollectorConfig,
    now: i64,
) -> Tally {
    let oldest = now - i64::from(cfg.retention_days) * DAY_MS;
    let grace = cfg.grace.as_millis() as i64;
    let mut tally = Tally::default();
    for e in events {
        if e.ts_ms < oldest {
            tally.too_old += 1;
            continue;
        }
        let minute = panorama_model::minute_of(e.ts_ms);
        if arrival == Arrival::Live && minute + MINUTE_MS + grace <= now {
            tally.late += 1;
        }
        agg.add(segment, e);
        acct.minutes.entry(minute).or_default().accepted += 1;
        tally.counted += 1;
    }
    tally
}

async fn flush_loop(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(inner.cfg.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention: Option<std::time::Instant> = None;
    let open_every = inner
        .cfg
        .open_flush_interval
        .map(|every| ticks_per_open_flush(every, inner.cfg.flush_interval));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        ticks += 1;
        let open = open_every.is_some_and(|n| ticks.is_multiple_of(n));
        let settling = !inner.live.is_settled();
        match flush_once(&inner, open || settling).await {
            Ok(()) if settling => {
                inner.live.set_settled(true);
                tracing::info!("the minutes replayed from the write-ahead log are in the store");
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "flush failed; will retry"),
        }
        // Retention once at start and then hourly: whole days go at once.
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            last_retention = Some(std::time::Instant::now());
            match inner
                .store
                .apply_retention(now_ms(), inner.cfg.retention_days)
                .await
            {
                Ok(r) if !r.dropped.is_empty() || r.deleted_docs > 0 => {
                    tracing::info!(dropped = ?r.dropped, deleted = r.deleted_docs, "retention applied");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention failed; will retry next hour"),
            }
        }
    }
}

/// Flusher ticks from one write of the open minutes to the next: never
/// more than `open_flush_interval` apart. (Comparing the time since the
/// last such write with the interval at each tick made it one tick late
/// whenever a tick came a hair early: six seconds instead of five.)
fn ticks_per_open_flush(every: Duration, tick: Duration) -> u64 {
    let tick_ms = tick.as_millis().max(1);
    (every.as_millis() / tick_ms).max(1) as u64
}

/// How often the store's retention is applied.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// What one store write amounted to, for marking what it carried.
enum Wrote {
    /// Everything written, or everything but documents refused for good.
    Done(Vec<panorama_store::Rejection>),
    /// Not written; retried at the next flush.
    Failed(StoreError),
}

fn wrote(r: Result<(), StoreError>) -> Wrote {
    match r {
        Ok(()) => Wrote::Done(Vec::new()),
        Err(StoreError::Rejected(rejected)) => Wrote::Done(rejected),
        Err(e) => Wrote::Failed(e),
    }
}

async fn flush_once(inner: &Inner, all: bool) -> Result<(), StoreError> {
    let _one = inner.flushing.lock().await;
    let grace = inner.cfg.grace.as_millis() as i64;
    let ready = lock(&inner.agg).ready(now_ms(), grace, all);
    let mut failed: Option<StoreError> = None;
    if !ready.is_empty() {
        // Each kind is written and marked on its own: a refusal of one must
        // neither skip the others nor mark them written.
        let series = wrote(inner.store.write_rollups(&ready.rollups).await);
        let layers = wrote(inner.store.write_layer_rollups(&ready.layer_rollups).await);
        let samples = wrote(inner.store.write_samples(&ready.samples).await);
        let mut rejected_events: std::collections::BTreeMap<i64, u64> = Default::default();
        let mut rejected_docs = 0u64;
        for w in [&series, &layers, &samples] {
            match w {
                Wrote::Done(r) if !r.is_empty() => {
                    rejected_docs += r.len() as u64;
                    tracing::error!(count = r.len(), first = %r[0].reason, "store refused documents for good");
                }
                Wrote::Done(_) | Wrote::Failed(_) => {}
            }
        }
        if let Wrote::Done(r) = &series
            && !r.is_empty()
        {
            let refused: std::collections::HashSet<&str> =
                r.iter().map(|x| x.doc_id.as_str()).collect();
            for rollup in &ready.rollups {
                if refused.contains(rollup.doc_id().as_str()) {
                    *rejected_events.entry(rollup.minute_ms).or_default() += rollup.count;
                }
            }
        }
        inner
            .stats
            .store_rejected
            .fetch_add(rejected_docs, Ordering::Relaxed);
        // Series entries carry their samples: clean only if both are in.
        let series_done = matches!(series, Wrote::Done(_)) && matches!(samples, Wrote::Done(_));
        let layers_done = matches!(layers, Wrote::Done(_));
        let mut newly = std::collections::BTreeMap::new();
        {
            let mut agg = lock(&inner.agg);
            if rejected_docs > 0 {
                // The store lacks some of these minutes: their hours' partials
                // would hold events it does not.
                agg.spoil_minutes(
                    ready
                        .rollups
                        .iter()
                        .chain(&ready.layer_rollups)
                        .map(|r| r.minute_ms),
                );
            }
            if layers_done {
                agg.layers_written(&ready.layer_keys);
            }
            if series_done {
                let counts: Vec<u64> = ready.rollups.iter().map(|r| r.count).collect();
                newly = agg.written(&ready.keys, &counts);
            }
        }
        if series_done {
            inner
                .stats
                .rollups_written
                .fetch_add(ready.rollups.len() as u64, Ordering::Relaxed);
        }
        let mut acct = lock(&inner.accounting);
        for (minute, n) in newly {
            acct.minutes.entry(minute).or_default().written += n;
        }
        if series_done {
            for (minute, n) in rejected_events {
                let m = acct.minutes.entry(minute).or_default();
                m.written = m.written.saturating_sub(n);
                m.rejected += n;
                inner.stats.events_rejected.fetch_add(n, Ordering::Relaxed);
            }
        }
        drop(acct);
        failed = [series, layers, samples].into_iter().find_map(|w| match w {
            Wrote::Failed(e) => Some(e),
            Wrote::Done(_) => None,
        });
        match &failed {
            Some(e) => {
                inner.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                *lock(&inner.last_store_error) = Some(e.to_string());
            }
            None => *lock(&inner.last_store_error) = None,
        }
    }
    release(inner);
    if failed.is_none() {
        write_partials(inner).await;
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Writes this collector's partials of the hours that are complete (see
/// [`Aggregator::partials_due`]); one that fails is tried again at the
/// next flush.
async fn write_partials(inner: &Inner) {
    let grace = inner.cfg.grace.as_millis() as i64;
    let due = lock(&inner.agg).partials_due(now_ms(), grace);
    for partial in due {
        match inner.store.write_hour_partial(&partial).await {
            Ok(()) => {
                tracing::debug!(
                    hour = partial.hour_ms,
                    series = partial.series.len(),
                    "hour partial written"
                );
                lock(&inner.agg).partial_written(partial.hour_ms);
            }
            Err(e) => {
                tracing::warn!(hour = partial.hour_ms, error = %e, "writing an hour's partial failed; will retry");
                return;
            }
        }
    }
}

/// Deletes the WAL segments whose every record is counted and written,
/// after folding their offsets into the ledger snapshot.
fn release(inner: &Inner) {
    // The order of these reads matters: a segment below `open` takes no
    // more appends; a record of it not pinned any more is already in the
    // aggregator, whose entries are read last.
    let open = inner.wal.open_segment();
    let pinned = inner.wal.first_pinned();
    let releasable = lock(&inner.agg).releasable(open);
    let Some(mut through) = releasable else {
        return;
    };
    if let Some(p) = pinned {
        if p.0 <= 1 {
            return;
        }
        through = through.min(SegmentId(p.0 - 1));
    }
    if through > lock(&inner.ledger).through_segment() {
        let persisted = lock(&inner.ledger).persist_through(through);
        if let Err(e) = persisted {
            tracing::error!(error = %e, "writing the ledger snapshot failed; WAL segments kept");
            return;
        }
    }
    if let Err(e) = inner.wal.delete_through(through) {
        tracing::warn!(error = %e, "deleting written WAL segments failed; will retry");
        return;
    }
    lock(&inner.agg).release_through(through);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_minutes_are_written_at_least_as_often_as_configured() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (open-flush interval, flusher tick) -> ticks between writes.
        for (every, tick, n) in [
            (s(5), s(1), 5),
            (s(5), s(2), 2),
            (s(1), s(1), 1),
            (ms(500), s(1), 1),
            (s(5), ms(300), 16),
            (s(5), Duration::ZERO, 5_000),
        ] {
            assert_eq!(ticks_per_open_flush(every, tick), n, "{every:?} / {tick:?}");
            assert!(
                tick * n as u32 <= every || n == 1,
                "{every:?} / {tick:?}: {n} ticks are longer than the interval"
            );
        }
    }
}
