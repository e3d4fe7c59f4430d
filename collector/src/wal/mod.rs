//! The write-ahead log: a batch is acknowledged only once it is here and on disk.
//!
//! - `segment`: the file format — a header, then records of
//!   `[length u32][crc32 u32][payload]`, little-endian. A record is whole or
//!   it is the torn tail of a crash.
//! - [`Wal`]: appends through one writer thread that batches concurrent
//!   appends into one `fdatasync` (group commit), so a thousand agents
//!   acknowledged in the same millisecond cost one disk flush, not a thousand.
//!   Records are written in the order they were submitted; a record may
//!   name the *epoch* its predecessor was submitted in ([`Wal::submit`]),
//!   and is then refused unwritten if any write failed since: a batch that
//!   follows another of its source never lands in the log without it.
//! - [`replay`]: reads every segment back after a restart. A torn record at
//!   the end of the newest segment was never acknowledged and is cut off; a
//!   bad record anywhere else is corruption, reported and counted.
//!
//! Segments roll over by size and age; the collector deletes a segment once
//! every minute it touched is in the store ([`Wal::delete_through`]).
//!
//! An append answers with an [`Appended`] receipt that pins its segment
//! until the caller [`Appended::settle`]s it (the record is counted). The
//! pin is taken by the writer before anyone hears of the record, so no
//! flush can find a sealed segment with a record that is durable but not
//! yet aggregated, and delete it under that record. Segment numbers only
//! grow: [`Wal::open_after`] starts past a floor the caller persisted, so
//! an emptied directory never makes them (and the document ids built from
//! them) start again at 1.

mod segment;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use segment::{Replayed, replay};

/// Limits of the log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory of the segments.
    pub dir: PathBuf,
    /// Roll over to a new segment past this size.
    pub segment_max_bytes: u64,
    /// Roll over to a new segment past this age, so that old minutes can be
    /// released even when traffic is low.
    pub segment_max_age: Duration,
    /// Refuse appends (503 to clients) while the log holds more than this.
    pub max_total_bytes: u64,
    /// Flush to disk before acknowledging. Off only for benchmarks that
    /// measure everything but the disk.
    pub fsync: bool,
    /// Fault injection for tests: the writer sleeps this long after every
    /// flush (or failed write), before anyone is told the record is durable
    /// (or not). It widens the window in which a client gives up on a
    /// record the log already has, and in which more records are submitted
    /// behind one whose write failed. Zero in production.
    pub sync_delay: Duration,
    /// Fault injection for tests: while above zero, each group write fails
    /// as a failing disk would (and takes one off). Zero in production.
    pub fail_writes: Arc<AtomicU64>,
}

impl WalConfig {
    /// Defaults under `dir`: 64 MiB segments, 1 minute, 4 GiB in all.
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(60),
            max_total_bytes: 4 << 30,
            fsync: true,
            sync_delay: Duration::ZERO,
            fail_writes: Arc::default(),
        }
    }
}

/// Why an append failed. Nothing was acknowledged; the client resends.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Over `max_total_bytes`: the store is behind. Back-pressure, not loss.
    #[error("write-ahead log full ({bytes} bytes held, cap {cap})")]
    Full {
        /// Bytes held.
        bytes: u64,
        /// The cap.
        cap: u64,
    },
    /// The disk refused (full, read-only, failing).
    #[error("write-ahead log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The writer thread is gone (shutdown).
    #[error("write-ahead log closed")]
    Closed,
    /// Not written: a write failed after the record this one follows was
    /// submitted, so that record may be missing from the log.
    #[error("write-ahead log: an earlier record this one follows was not written")]
    PredecessorFailed,
}

/// Where a record landed: its segment, which the aggregator tags rollups with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

struct Append {
    payload: Vec<u8>,
    /// Written only while no write has failed since this epoch.
    epoch: u64,
    done: oneshot::Sender<Result<Appended, WalError>>,
}

/// A record handed to the writer and not yet durable; see [`Wal::submit`].
#[must_use = "await `durable` to learn whether the record was written"]
pub struct Submitted {
    epoch: u64,
    rx: oneshot::Receiver<Result<Appended, WalError>>,
}

impl Submitted {
    /// The epoch the record was submitted in: pass it to [`Wal::submit`]
    /// for a record that must not be written without this one.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Waits until the record is on disk (or refused). Cancelling this does
    /// not take the record back; see [`Wal::append`].
    ///
    /// # Errors
    /// As [`Wal::append`], and [`WalError::PredecessorFailed`].
    pub async fn durable(self) -> Result<Appended, WalError> {
        self.rx.await.map_err(|_| WalError::Closed)?
    }
}

/// Records durable in each segment but not yet settled by the caller.
type Pins = Arc<Mutex<BTreeMap<SegmentId, u64>>>;

fn lock_pins(p: &Pins) -> std::sync::MutexGuard<'_, BTreeMap<SegmentId, u64>> {
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A record durable in the log, pinning its segment until settled.
///
/// Dropped without [`Appended::settle`] (its caller vanished before counting
/// it), the pin goes and the record is counted as abandoned in
/// [`WalStats::abandoned`]: a restart before the segment is deleted would
/// still replay it, but nothing else will.
#[derive(Debug)]
#[must_use = "settle the receipt once the record is counted"]
pub struct Appended {
    segment: SegmentId,
    pins: Pins,
    stats: Arc<WalStats>,
    settled: bool,
}

impl Appended {
    /// The segment the record is in.
    pub fn segment(&self) -> SegmentId {
        self.segment
    }

    /// The record is counted: its segment may go once the rest of it does.
    pub fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for Appended {
    fn drop(&mut self) {
        {
            let mut pins = lock_pins(&self.pins);
            if let Some(n) = pins.get_mut(&self.segment) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    pins.remove(&self.segment);
                }
            }
        }
        if !self.settled {
            self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                segment = self.segment.0,
                "a durable write-ahead log record was never counted; only a replay before its segment is deleted recovers it"
            );
        }
    }
}

/// Figures for `/metrics` and `/health`.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Bytes in segments on disk.
    pub bytes: AtomicU64,
    /// Records appended since start.
    pub records: AtomicU64,
    /// Disk flushes since start; records / flushes is the group-commit factor.
    pub syncs: AtomicU64,
    /// The segment taking appends (or the next one to be created): every
    /// segment below it is sealed.
    pub open_segment: AtomicU64,
    /// Durable records whose receipt was dropped unsettled: data the
    /// collector gave up on (see [`Appended`]).
    pub abandoned: AtomicU64,
    /// Failed writes since start; a record submitted after its
    /// predecessor in an earlier epoch is refused unwritten.
    pub epoch: AtomicU64,
}

/// The write-ahead log.
pub struct Wal {
    tx: std_mpsc::Sender<Append>,
    cfg: WalConfig,
    stats: Arc<WalStats>,
    pins: Pins,
}

impl Wal {
    /// Opens the log for appending in a fresh segment numbered after every
    /// existing one (which [`replay`] reads and the caller deletes when done).
    ///
    /// # Errors
    /// The directory cannot be created or listed.
    pub fn open(cfg: WalConfig) -> Result<Wal, WalError> {
        Wal::open_after(cfg, SegmentId(0))
    }

    /// [`Wal::open`], numbering new segments after `floor` too: the highest
    /// segment ever used as the caller knows it (the ledger keeps the last
    /// one deleted), so numbers never repeat when the directory is empty.
    ///
    /// # Errors
    /// The directory cannot be created or listed.
    pub fn open_after(cfg: WalConfig, floor: SegmentId) -> Result<Wal, WalError> {
        fs::create_dir_all(&cfg.dir)?;
        let existing = segment::list(&cfg.dir)?;
        let next = existing
            .last()
            .map_or(1, |(id, _)| id.0 + 1)
            .max(floor.0 + 1);
        let stats = Arc::new(WalStats::default());
        let held: u64 = existing
            .iter()
            .map(|(_, p)| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        stats.bytes.store(held, Ordering::Relaxed);
        stats.open_segment.store(next, Ordering::Relaxed);
        let (tx, rx) = std_mpsc::channel();
        let pins = Pins::default();
        let writer = Writer {
            cfg: cfg.clone(),
            stats: stats.clone(),
            pins: pins.clone(),
            next_id: next,
            current: None,
        };
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Wal {
            tx,
            cfg,
            stats,
            pins,
        })
    }

    /// Appends a record and returns once it is on disk, with a receipt
    /// naming its segment and pinning it until settled.
    ///
    /// Cancelling this future after the record was handed to the writer
    /// does not take it back: it is written anyway and its receipt, dropped
    /// unsettled, counts as abandoned. Callers that must count every record
    /// run the append where nothing can cancel it.
    ///
    /// # Errors
    /// [`WalError::Full`] over the cap, [`WalError::Io`] when the disk refuses.
    pub async fn append(&self, payload: Vec<u8>) -> Result<Appended, WalError> {
        self.submit(payload, None)?.durable().await
    }

    /// Hands a record to the writer without waiting for it: records are
    /// written in the order they are submitted, and concurrent ones share
    /// one flush. With `after`, the epoch of the record this one follows
    /// ([`Submitted::epoch`]), it is refused unwritten
    /// ([`WalError::PredecessorFailed`]) if any write failed since that
    /// record was submitted, which may have been that record's: so this one
    /// is never in the log without it.
    ///
    /// # Errors
    /// [`WalError::Full`] over the cap, [`WalError::Closed`] after shutdown.
    pub fn submit(&self, payload: Vec<u8>, after: Option<u64>) -> Result<Submitted, WalError> {
        let bytes = self.stats.bytes.load(Ordering::Relaxed);
        if bytes + payload.len() as u64 > self.cfg.max_total_bytes {
            return Err(WalError::Full {
                bytes,
                cap: self.cfg.max_total_bytes,
            });
        }
        let epoch = after.unwrap_or_else(|| self.stats.epoch.load(Ordering::Acquire));
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Append {
                payload,
                epoch,
                done,
            })
            .map_err(|_| WalError::Closed)?;
        Ok(Submitted { epoch, rx })
    }

    /// Deletes every segment numbered up to and including `id`; the caller
    /// guarantees everything they hold is in the store.
    ///
    /// # Errors
    /// Listing or deleting failed.
    pub fn delete_through(&self, id: SegmentId) -> Result<u64, WalError> {
        let mut freed = 0;
        for (sid, path) in segment::list(&self.cfg.dir)? {
            if sid <= id {
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path)?;
                freed += len;
            }
        }
        self.stats.bytes.fetch_sub(
            freed.min(self.stats.bytes.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        Ok(freed)
    }

    /// The segment taking appends; every segment below it is sealed.
    pub fn open_segment(&self) -> SegmentId {
        SegmentId(self.stats.open_segment.load(Ordering::Acquire))
    }

    /// The oldest segment holding a durable record not yet settled: nothing
    /// from it on may be deleted. Read it after [`Wal::open_segment`] and
    /// before looking at what is aggregated, so a record settling in between
    /// is seen on one side or the other.
    pub fn first_pinned(&self) -> Option<SegmentId> {
        lock_pins(&self.pins).keys().next().copied()
    }

    /// The log's figures.
    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    /// The directory of the segments.
    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }
}

struct Writer {
    cfg: WalConfig,
    stats: Arc<WalStats>,
    pins: Pins,
    next_id: u64,
    current: Option<(segment::SegmentWriter, Instant)>,
}

impl Writer {
    fn run(mut self, rx: std_mpsc::Receiver<Append>) {
        while let Ok(first) = rx.recv() {
            // Take everything already waiting: one flush for all of it.
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
                if group.len() >= 4096 {
                    break;
                }
            }
            // Records following one submitted before a failed write may
            // follow a record that is not in the log: refused unwritten.
            let epoch = self.stats.epoch.load(Ordering::Acquire);
            let (group, stale): (Vec<Append>, Vec<Append>) =
                group.into_iter().partition(|a| a.epoch >= epoch);
            for a in stale {
                let _ = a.done.send(Err(WalError::PredecessorFailed));
            }
            if group.is_empty() {
                continue;
            }
            let result = self.write_group(&group);
            match &result {
                // Before anyone hears of the failure: whatever was
                // submitted to follow these records is refused from now on.
                Err(_) => {
                    self.stats.epoch.fetch_add(1, Ordering::AcqRel);
                }
                // Pinned before anyone hears of the records, and before a
                // later group can roll the segment and seal it.
                Ok(id) => *lock_pins(&self.pins).entry(*id).or_default() += group.len() as u64,
            }
            if !self.cfg.sync_delay.is_zero() {
                std::thread::sleep(self.cfg.sync_delay);
            }
            for a in group {
                let r = match &result {
                    Ok(id) => Ok(Appended {
                        segment: *id,
                        pins: self.pins.clone(),
                        stats: self.stats.clone(),
                        settled: false,
                    }),
                    Err(e) => Err(WalError::Io(std::io::Error::new(e.kind(), e.to_string()))),
                };
                // A receiver gone (its caller cancelled) drops the receipt
                // unsettled right here, which counts it as abandoned.
                let _ = a.done.send(r);
            }
        }
        if let Some((mut w, _)) = self.current.take() {
            let _ = w.sync();
        }
    }

    fn write_group(&mut self, group: &[Append]) -> std::io::Result<SegmentId> {
        let roll = match &self.current {
            None => true,
            Some((w, opened)) => {
                w.len() >= self.cfg.segment_max_bytes
                    || opened.elapsed() >= self.cfg.segment_max_age
            }
        };
        if roll {
            if let Some((mut old, _)) = self.current.take() {
                old.sync()?;
            }
            let id = SegmentId(self.next_id);
            self.next_id += 1;
            self.stats.open_segment.store(id.0, Ordering::Release);
            let w = segment::SegmentWriter::create(&self.cfg.dir, id)?;
            self.stats.bytes.fetch_add(w.len(), Ordering::Relaxed);
            self.current = Some((w, Instant::now()));
        }
        let (w, _) = self.current.as_mut().expect("a segment is open");
        let before = w.len();
        let outcome = (|| {
            let injected =
                self.cfg
                    .fail_writes
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            if injected.is_ok() {
                return Err(std::io::Error::other("injected write failure"));
            }
            for a in group {
                w.append(&a.payload)?;
            }
            if self.cfg.fsync { w.sync() } else { w.flush() }
        })();
        self.stats
            .bytes
            .fetch_add(w.len() - before, Ordering::Relaxed);
        if let Err(e) = outcome {
            // The segment may now end in a torn record; never append after
            // it. The next group starts a new segment, and replay cuts the
            // torn tail, which no client was told about.
            self.current = None;
            return Err(e);
        }
        self.stats
            .records
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(w.id())
    }
}
