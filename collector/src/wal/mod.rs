//! The write-ahead log: a batch is acknowledged only once it is here and on disk.
//!
//! - `segment`: the file format — a header, then records of
//!   `[length u32][crc32 u32][payload]`, little-endian. A record is whole or
//!   it is the torn tail of a crash.
//! - [`Wal`]: appends through one writer thread that batches concurrent
//!   appends into one `fdatasync` (group commit), so a thousand agents
//!   acknowledged in the same millisecond cost one disk flush, not a thousand.
//! - [`replay`]: reads every segment back after a restart. A torn record at
//!   the end of the newest segment was never acknowledged and is cut off; a
//!   bad record anywhere else is corruption, reported and counted.
//!
//! Segments roll over by size and age; the collector deletes a segment once
//! every minute it touched is in the store ([`Wal::delete_through`]).

mod segment;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
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
}

/// Where a record landed: its segment, which the aggregator tags rollups with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

struct Append {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<SegmentId, WalError>>,
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
}

/// The write-ahead log.
pub struct Wal {
    tx: std_mpsc::Sender<Append>,
    cfg: WalConfig,
    stats: Arc<WalStats>,
}

impl Wal {
    /// Opens the log for appending in a fresh segment numbered after every
    /// existing one (which [`replay`] reads and the caller deletes when done).
    ///
    /// # Errors
    /// The directory cannot be created or listed.
    pub fn open(cfg: WalConfig) -> Result<Wal, WalError> {
        fs::create_dir_all(&cfg.dir)?;
        let existing = segment::list(&cfg.dir)?;
        let next = existing.last().map_or(1, |(id, _)| id.0 + 1);
        let stats = Arc::new(WalStats::default());
        let held: u64 = existing
            .iter()
            .map(|(_, p)| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        stats.bytes.store(held, Ordering::Relaxed);
        stats.open_segment.store(next, Ordering::Relaxed);
        let (tx, rx) = std_mpsc::channel();
        let writer = Writer {
            cfg: cfg.clone(),
            stats: stats.clone(),
            next_id: next,
            current: None,
        };
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Wal { tx, cfg, stats })
    }

    /// Appends a record and returns once it is on disk, with the segment it is in.
    ///
    /// # Errors
    /// [`WalError::Full`] over the cap, [`WalError::Io`] when the disk refuses.
    pub async fn append(&self, payload: Vec<u8>) -> Result<SegmentId, WalError> {
        let bytes = self.stats.bytes.load(Ordering::Relaxed);
        if bytes + payload.len() as u64 > self.cfg.max_total_bytes {
            return Err(WalError::Full {
                bytes,
                cap: self.cfg.max_total_bytes,
            });
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Append { payload, done })
            .map_err(|_| WalError::Closed)?;
        rx.await.map_err(|_| WalError::Closed)?
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
            let result = self.write_group(&group);
            for a in group {
                let r = match &result {
                    Ok(id) => Ok(*id),
                    Err(e) => Err(WalError::Io(std::io::Error::new(e.kind(), e.to_string()))),
                };
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
