//! The probes' exactly-once source.
//!
//! A log source's batches carry byte ranges of a file; probe results come
//! from no file, so a persisted sequence stands in for the offsets: each
//! batch covers `[next, next + events)` of the source [`SOURCE_ID`], and
//! the collector's ledger deduplicates it like any range.
//!
//! The batch in flight is written to disk *before* it is sent, and the
//! sequence advanced only after the acknowledgement:
//!
//! 1. `stage`: `probes.pending` ← the encoded batch (tmp, fsync, rename);
//! 2. ship until acknowledged;
//! 3. `acked`: `probes.seq` ← its end; `probes.pending` removed.
//!
//! A crash before 1 loses only results not yet staged (as a crash loses
//! any sample not yet taken); between 1 and 3 the restarted agent resends
//! the same batch with the same range, which the collector counts once; a
//! pending batch ending at or below the stored sequence was acknowledged
//! and is dropped. So a restart resends nothing twice and counts nothing
//! twice.

use std::io;
use std::path::{Path, PathBuf};

use panorama_model::Event;
use panorama_model::wire::binary::{self, Batch, BatchMeta};
use serde::{Deserialize, Serialize};

use panorama_durable::write_atomic;

/// The source id of probe batches. Log sources' ids are a name and a
/// fingerprint (`nginx-5f1c…`); the colon keeps this one apart from any.
pub const SOURCE_ID: &str = "probes:results";

#[derive(Debug, Serialize, Deserialize)]
struct SeqFile {
    version: u32,
    next: u64,
}

/// The persisted sequence and the batch in flight.
#[derive(Debug)]
pub struct Outbox {
    seq_path: PathBuf,
    pending_path: PathBuf,
    next: u64,
    pending: Option<Batch>,
}

impl Outbox {
    /// Opens (or starts) the outbox in `dir`, picking up a batch a crash
    /// left in flight.
    ///
    /// # Errors
    /// A sequence file that cannot be read or parsed: starting from zero
    /// would resend ranges the collector already counted, so the agent
    /// refuses to start rather than lose results silently.
    pub fn open(dir: &Path) -> io::Result<Outbox> {
        std::fs::create_dir_all(dir)?;
        let seq_path = dir.join("probes.seq");
        let pending_path = dir.join("probes.pending");
        let next = match std::fs::read(&seq_path) {
            Ok(bytes) => {
                let f: SeqFile = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", seq_path.display()),
                    )
                })?;
                if f.version != 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: version {} (expected 1)", seq_path.display(), f.version),
                    ));
                }
                f.next
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let pending = match std::fs::read(&pending_path) {
            Ok(bytes) => match binary::decode(&bytes) {
                Ok(b) if b.meta.end_offset > next && b.meta.start_offset >= next => Some(b),
                Ok(_) => None,
                Err(e) => {
                    // A torn file cannot be: it is renamed into place whole.
                    // Something else wrote it; keep it for a person to read.
                    tracing::error!(path = %pending_path.display(), error = %e, "unreadable pending probe batch set aside");
                    let _ = std::fs::rename(&pending_path, pending_path.with_extension("bad"));
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if pending.is_none() {
            let _ = std::fs::remove_file(&pending_path);
        }
        Ok(Outbox {
            seq_path,
            pending_path,
            next,
            pending,
        })
    }

    /// The next sequence number.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The batch staged and not yet acknowledged.
    pub fn pending(&self) -> Option<&Batch> {
        self.pending.as_ref()
    }

    /// Makes `events` the batch in flight, durably, and returns it.
    ///
    /// # Errors
    /// The pending file could not be written; nothing is staged then.
    ///
    /// # Panics
    /// Never; a batch already pending is a caller bug reported as an error.
    pub fn stage(&mut self, agent_id: &str, events: Vec<Event>) -> io::Result<&Batch> {
        if self.pending.is_some() {
            return Err(io::Error::other("a probe batch is already in flight"));
        }
        let n = events.len().max(1) as u64;
        let batch = Batch {
            meta: BatchMeta {
                agent_id: agent_id.to_owned(),
                source_id: SOURCE_ID.into(),
                start_offset: self.next,
                end_offset: self.next + n,
                lines_read: 0,
                lines_failed: 0,
            },
            events,
        };
        let mut bytes = Vec::new();
        binary::encode(&batch, &mut bytes);
        write_atomic(&self.pending_path, &bytes)?;
        Ok(self.pending.insert(batch))
    }

    /// Moves the batch in flight (and the sequence) to start at `counted`,
    /// for a collector that counted past the stored sequence.
    ///
    /// # Errors
    /// The pending file could not be rewritten.
    pub fn rebase(&mut self, counted: u64) -> io::Result<()> {
        let Some(batch) = &mut self.pending else {
            self.next = self.next.max(counted);
            return Ok(());
        };
        let n = batch.meta.end_offset - batch.meta.start_offset;
        batch.meta.start_offset = counted.max(batch.meta.start_offset);
        batch.meta.end_offset = batch.meta.start_offset + n;
        self.next = batch.meta.start_offset;
        let mut bytes = Vec::new();
        binary::encode(batch, &mut bytes);
        write_atomic(&self.pending_path, &bytes)
    }

    /// The batch in flight was acknowledged: advance the sequence past it.
    ///
    /// # Errors
    /// The sequence could not be written. The batch stays pending, and is
    /// resent (and recognised as counted) after a restart.
    pub fn acked(&mut self) -> io::Result<()> {
        let Some(batch) = &self.pending else {
            return Ok(());
        };
        let end = batch.meta.end_offset;
        let body = serde_json::to_vec(&SeqFile {
            version: 1,
            next: end,
        })
        .map_err(io::Error::other)?;
        write_atomic(&self.seq_path, &body)?;
        self.next = end;
        self.pending = None;
        match std::fs::remove_file(&self.pending_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use panorama_model::Layer;

    use super::*;

    fn ev(name: &str) -> Event {
        Event::new(1_000, Layer::Component, "game", "h", name)
    }

    #[test]
    fn ranges_follow_each_other_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path()).unwrap();
        let b = o.stage("a", vec![ev("x"), ev("y")]).unwrap();
        assert_eq!((b.meta.start_offset, b.meta.end_offset), (0, 2));
        o.acked().unwrap();
        let b = o.stage("a", vec![ev("z")]).unwrap().clone();
        assert_eq!((b.meta.start_offset, b.meta.end_offset), (2, 3));
        // Crash before the acknowledgement: the same batch comes back.
        drop(o);
        let mut o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.pending(), Some(&b));
        assert!(o.stage("a", vec![ev("w")]).is_err(), "one batch in flight");
        o.acked().unwrap();
        drop(o);
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!((o.next(), o.pending()), (3, None));
    }

    #[test]
    fn a_pending_batch_already_acknowledged_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path()).unwrap();
        let bytes = {
            let b = o.stage("a", vec![ev("x")]).unwrap();
            let mut v = Vec::new();
            binary::encode(b, &mut v);
            v
        };
        o.acked().unwrap();
        // A crash between writing the sequence and removing the file.
        std::fs::write(dir.path().join("probes.pending"), bytes).unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        assert_eq!((o.next(), o.pending()), (1, None));
        std::fs::write(dir.path().join("probes.seq"), "garbage").unwrap();
        assert!(
            Outbox::open(dir.path()).is_err(),
            "an unreadable sequence stops the start"
        );
    }
}
