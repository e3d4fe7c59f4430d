//! Which byte ranges of which agent sources are already counted.
//!
//! An agent resends a batch whenever it did not see the acknowledgement; the
//! ledger is how the collector tells a resend from new data. Per (agent,
//! source) it keeps the highest end offset counted. A batch ending at or
//! below it is a duplicate: acknowledged again, not counted. A batch starting
//! at or past it is new. A batch straddling it cannot be split (events do
//! not carry their own offsets), so it is refused with the counted offset,
//! and the agent resumes reading from there.
//!
//! A range is *reserved* from [`Ledger::check`] until [`Ledger::commit`]
//! (it is counted) or [`Ledger::release`] (the WAL refused it). A resend
//! that runs into a reservation is told [`Verdict::InFlight`], never
//! *Duplicate*: acknowledging it before the first copy is counted would let
//! the agent move on past data that may still fail to be written.
//!
//! Durability: offsets are rebuilt at start from a snapshot plus a replay of
//! the WAL. The snapshot only ever holds offsets of records whose WAL
//! segments are deleted, so replaying the remaining segments never mistakes
//! their records for duplicates. It is written (tmp, fsync, rename) before
//! those segments are deleted.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::wal::SegmentId;

type SourceKey = (String, String);

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New data: append and count (the range is reserved until committed or released).
    New,
    /// Already counted: acknowledge, do not count.
    Duplicate,
    /// Partly counted: refuse, and tell the agent to resume at this offset.
    Overlap {
        /// The end of what is counted.
        counted: u64,
    },
    /// Runs into a range reserved by a batch still being written: judge it
    /// again once that one is committed or released.
    InFlight,
}

#[derive(Debug, Default, Clone, Copy)]
struct Live {
    counted: u64,
    reserved: u64,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// Every segment up to this one is deleted and reflected here.
    through_segment: u64,
    sources: Vec<SnapshotEntry>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotEntry {
    agent: String,
    source: String,
    counted: u64,
}

/// The counted offsets of every agent source.
pub struct Ledger {
    path: PathBuf,
    live: HashMap<SourceKey, Live>,
    durable: HashMap<SourceKey, u64>,
    through: u64,
    per_segment: BTreeMap<SegmentId, HashMap<SourceKey, u64>>,
}

impl Ledger {
    /// Loads the snapshot at `path` (none yet is an empty ledger).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed: refusing to start beats
    /// counting everything twice.
    pub fn load(path: &Path) -> io::Result<Ledger> {
        let mut ledger = Ledger {
            path: path.to_owned(),
            live: HashMap::new(),
            durable: HashMap::new(),
            through: 0,
            per_segment: BTreeMap::new(),
        };
        match fs::read(path) {
            Ok(bytes) => {
                let snap: Snapshot = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                if snap.version != 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: ledger version {} is newer than this collector understands",
                            path.display(),
                            snap.version
                        ),
                    ));
                }
                ledger.through = snap.through_segment;
                for e in snap.sources {
                    let key = (e.agent, e.source);
                    ledger.live.insert(
                        key.clone(),
                        Live {
                            counted: e.counted,
                            reserved: e.counted,
                        },
                    );
                    ledger.durable.insert(key, e.counted);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(ledger)
    }

    /// Every segment up to this one is already reflected in the snapshot;
    /// replay skips them (they should be gone anyway).
    pub fn through_segment(&self) -> SegmentId {
        SegmentId(self.through)
    }

    /// Judges a batch covering `[start, end)` and, if new, reserves the
    /// range so a concurrent resend of it is a duplicate.
    pub fn check(&mut self, agent: &str, source: &str, start: u64, end: u64) -> Verdict {
        let live = self
            .live
            .entry((agent.to_owned(), source.to_owned()))
            .or_default();
        let high = live.counted.max(live.reserved);
        if end <= live.counted {
            Verdict::Duplicate
        } else if start >= high {
            live.reserved = end;
            Verdict::New
        } else if high > live.counted {
            Verdict::InFlight
        } else {
            Verdict::Overlap {
                counted: live.counted,
            }
        }
    }

    /// The batch is durable in `segment`: its range is counted.
    pub fn commit(&mut self, agent: &str, source: &str, end: u64, segment: SegmentId) {
        let key = (agent.to_owned(), source.to_owned());
        let live = self.live.entry(key.clone()).or_default();
        live.counted = live.counted.max(end);
        live.reserved = live.reserved.max(end);
        let seg = self
            .per_segment
            .entry(segment)
            .or_default()
            .entry(key)
            .or_default();
        *seg = (*seg).max(end);
    }

    /// The append failed: give the reservation back so the resend is new.
    pub fn release(&mut self, agent: &str, source: &str) {
        if let Some(live) = self.live.get_mut(&(agent.to_owned(), source.to_owned())) {
            live.reserved = live.counted;
        }
    }

    /// Folds segments up to `id` into the snapshot and writes it durably.
    /// Call before deleting those segments.
    ///
    /// # Errors
    /// Writing the snapshot failed; keep the segments.
    pub fn persist_through(&mut self, id: SegmentId) -> io::Result<()> {
        let newer = self.per_segment.split_off(&SegmentId(id.0 + 1));
        for (_, offsets) in std::mem::replace(&mut self.per_segment, newer) {
            for (key, end) in offsets {
                let d = self.durable.entry(key).or_default();
                *d = (*d).max(end);
            }
        }
        self.through = self.through.max(id.0);
        let snap = Snapshot {
            version: 1,
            through_segment: self.through,
            sources: self
                .durable
                .iter()
                .map(|((agent, source), counted)| SnapshotEntry {
                    agent: agent.clone(),
                    source: source.clone(),
                    counted: *counted,
                })
                .collect(),
        };
        let body = serde_json::to_vec(&snap).map_err(io::Error::other)?;
        panorama_durable::write_atomic(&self.path, &body)?;
        Ok(())
    }

    /// Sources known, for `/metrics`.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when no source is known.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_are_duplicates_and_straddles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::load(&dir.path().join("ledger.json")).unwrap();
        assert_eq!(l.check("a", "s", 0, 100), Verdict::New);
        // A concurrent resend while the first is in flight waits for it:
        // the first may still fail.
        assert_eq!(l.check("a", "s", 0, 100), Verdict::InFlight);
        assert_eq!(l.check("a", "s", 0, 150), Verdict::InFlight);
        l.commit("a", "s", 100, SegmentId(1));
        assert_eq!(l.check("a", "s", 0, 100), Verdict::Duplicate);
        assert_eq!(
            l.check("a", "s", 50, 150),
            Verdict::Overlap { counted: 100 }
        );
        assert_eq!(l.check("a", "s", 100, 150), Verdict::New);
        assert_eq!(l.check("a", "s", 120, 150), Verdict::InFlight);
        l.release("a", "s");
        assert_eq!(
            l.check("a", "s", 100, 150),
            Verdict::New,
            "released after a failed append"
        );
        assert_eq!(
            l.check("b", "s", 0, 100),
            Verdict::New,
            "sources are independent"
        );
    }

    #[test]
    fn snapshot_holds_only_deleted_segments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let mut l = Ledger::load(&path).unwrap();
        l.check("a", "s", 0, 100);
        l.commit("a", "s", 100, SegmentId(1));
        l.check("a", "s", 100, 200);
        l.commit("a", "s", 200, SegmentId(2));
        l.persist_through(SegmentId(1)).unwrap();
        let mut back = Ledger::load(&path).unwrap();
        assert_eq!(back.through_segment(), SegmentId(1));
        // Segment 2 is replayed after a restart: its record must be new.
        assert_eq!(back.check("a", "s", 100, 200), Verdict::New);
        assert_eq!(back.check("a", "s", 0, 100), Verdict::Duplicate);
    }

    #[test]
    fn a_corrupt_snapshot_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        fs::write(&path, b"{not json").unwrap();
        assert!(Ledger::load(&path).is_err());
    }
}
