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
//! An agent keeps several batches of a source in flight, each *chained*
//! to the one before ([`Ledger::check_chained`]: it must start where the
//! source's counted or reserved ranges end). So a source may hold several
//! reservations, in offset order, and they settle strictly in that order:
//! a reservation is handed to the WAL only after the one before it was
//! ([`Ledger::submit_turn`], so the log holds them in order), counted and
//! committed only once every one before it is ([`Ledger::count_turn`]),
//! and releasing one cancels every later one of its source. Otherwise a
//! batch refused by the WAL could leave its successor counted past it,
//! and the counted offset would cover bytes never counted.
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

/// A reservation, from [`Verdict::New`] to [`Ledger::commit`] or
/// [`Ledger::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New data: append and count (the range is reserved until committed or released).
    New(Ticket),
    /// Already counted: acknowledge, do not count.
    Duplicate,
    /// Partly counted: refuse, and tell the agent to resume at this offset.
    Overlap {
        /// The end of what is counted.
        counted: u64,
    },
    /// Runs into a range reserved by a batch still being written, or (a
    /// chained batch) starts past the end of what is counted and reserved:
    /// judge it again once a reservation is committed, released or made.
    InFlight,
}

/// Whether a reserved batch may go on to its next step; see
/// [`Ledger::submit_turn`] and [`Ledger::count_turn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Go on. For the WAL step, `after` is the epoch the batch's
    /// predecessor was submitted in (`None`: no predecessor in flight).
    Go {
        /// See [`crate::wal::Wal::submit`].
        after: Option<u64>,
    },
    /// An earlier reservation of the source has not got there yet.
    Wait,
    /// An earlier reservation of the source was released, and this one
    /// with it: refuse the batch, the agent resends from the first
    /// unacknowledged offset.
    Cancelled,
}

#[derive(Debug, Default)]
struct Live {
    counted: u64,
    /// Reserved ranges not yet committed, in offset order.
    reserved: std::collections::VecDeque<Reserved>,
}

#[derive(Debug, Clone, Copy)]
struct Reserved {
    ticket: Ticket,
    end: u64,
    /// The WAL epoch it was submitted in, once it was.
    submitted: Option<u64>,
}

impl Live {
    /// Where counted and reserved ranges end.
    fn high(&self) -> u64 {
        self.reserved.back().map_or(self.counted, |r| r.end)
    }

    fn position(&self, ticket: Ticket) -> Option<usize> {
        self.reserved.iter().position(|r| r.ticket == ticket)
    }
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
    next_ticket: u64,
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
            next_ticket: 0,
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
                            reserved: Default::default(),
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
    /// range so a concurrent resend of it is a duplicate. The batch stands
    /// alone: it may start past what is counted and reserved.
    pub fn check(&mut self, agent: &str, source: &str, start: u64, end: u64) -> Verdict {
        self.judge(agent, source, start, end, false)
    }

    /// [`Ledger::check`] for a batch chained to its predecessor (see
    /// [`panorama_model::wire::CHAINED_HEADER`]): new only if it starts
    /// exactly where the counted and reserved ranges end. Starting past
    /// that, its predecessor is not there (yet, or any more): in flight.
    pub fn check_chained(&mut self, agent: &str, source: &str, start: u64, end: u64) -> Verdict {
        self.judge(agent, source, start, end, true)
    }

    fn judge(&mut self, agent: &str, source: &str, start: u64, end: u64, chained: bool) -> Verdict {
        let live = self
            .live
            .entry((agent.to_owned(), source.to_owned()))
            .or_default();
        let high = live.high();
        if end <= live.counted {
            Verdict::Duplicate
        } else if start == high || (start > high && !chained) {
            let ticket = Ticket(self.next_ticket);
            self.next_ticket += 1;
            live.reserved.push_back(Reserved {
                ticket,
                end,
                submitted: None,
            });
            Verdict::New(ticket)
        } else if start > high || !live.reserved.is_empty() {
            Verdict::InFlight
        } else {
            Verdict::Overlap {
                counted: live.counted,
            }
        }
    }

    /// Whether a reserved batch may be handed to the WAL: once its
    /// predecessor was, so the log holds a source's batches in order.
    pub fn submit_turn(&self, agent: &str, source: &str, ticket: Ticket) -> Turn {
        let Some(live) = self.live.get(&(agent.to_owned(), source.to_owned())) else {
            return Turn::Cancelled;
        };
        match live.position(ticket) {
            None => Turn::Cancelled,
            Some(0) => Turn::Go { after: None },
            Some(i) => match live.reserved[i - 1].submitted {
                Some(epoch) => Turn::Go { after: Some(epoch) },
                None => Turn::Wait,
            },
        }
    }

    /// The batch was handed to the WAL in `epoch`.
    pub fn submitted(&mut self, agent: &str, source: &str, ticket: Ticket, epoch: u64) {
        if let Some(live) = self.live.get_mut(&(agent.to_owned(), source.to_owned()))
            && let Some(i) = live.position(ticket)
        {
            live.reserved[i].submitted = Some(epoch);
        }
    }

    /// Whether a reserved batch, durable in the WAL, may be counted and
    /// committed: once every earlier reservation of its source is.
    pub fn count_turn(&self, agent: &str, source: &str, ticket: Ticket) -> Turn {
        let Some(live) = self.live.get(&(agent.to_owned(), source.to_owned())) else {
            return Turn::Cancelled;
        };
        match live.position(ticket) {
            None => Turn::Cancelled,
            Some(0) => Turn::Go { after: None },
            Some(_) => Turn::Wait,
        }
    }

    /// The batch is durable in `segment` and counted: its range is
    /// counted. Call it in [`Ledger::count_turn`] order.
    pub fn commit(&mut self, agent: &str, source: &str, ticket: Ticket, segment: SegmentId) {
        let key = (agent.to_owned(), source.to_owned());
        let Some(live) = self.live.get_mut(&key) else {
            return;
        };
        let Some(i) = live.position(ticket) else {
            return;
        };
        debug_assert_eq!(i, 0, "committed out of order");
        // Out of order (a bug) it still commits nothing it does not cover:
        // the earlier reservations stay, and `counted` only moves to the
        // end of what is committed from the front.
        let Some(r) = live.reserved.remove(i) else {
            return;
        };
        if i == 0 {
            live.counted = live.counted.max(r.end);
        }
        let seg = self
            .per_segment
            .entry(segment)
            .or_default()
            .entry(key)
            .or_default();
        *seg = (*seg).max(r.end);
    }

    /// The batch was not written (or not counted): give its reservation
    /// back so the resend is new, and cancel every later reservation of
    /// the source, which must not be counted past it. Returns how many
    /// later ones were cancelled.
    pub fn release(&mut self, agent: &str, source: &str, ticket: Ticket) -> usize {
        let Some(live) = self.live.get_mut(&(agent.to_owned(), source.to_owned())) else {
            return 0;
        };
        let Some(i) = live.position(ticket) else {
            return 0;
        };
        let cancelled = live.reserved.len() - i - 1;
        live.reserved.truncate(i);
        cancelled
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
        let Verdict::New(t) = l.check("a", "s", 0, 100) else {
            panic!("new")
        };
        // A concurrent resend while the first is in flight waits for it:
        // the first may still fail.
        assert_eq!(l.check("a", "s", 0, 100), Verdict::InFlight);
        assert_eq!(l.check("a", "s", 0, 150), Verdict::InFlight);
        l.commit("a", "s", t, SegmentId(1));
        assert_eq!(l.check("a", "s", 0, 100), Verdict::Duplicate);
        assert_eq!(
            l.check("a", "s", 50, 150),
            Verdict::Overlap { counted: 100 }
        );
        let Verdict::New(t) = l.check("a", "s", 100, 150) else {
            panic!("new")
        };
        assert_eq!(l.check("a", "s", 120, 150), Verdict::InFlight);
        assert_eq!(l.release("a", "s", t), 0);
        assert!(
            matches!(l.check("a", "s", 100, 150), Verdict::New(_)),
            "released after a failed append"
        );
        assert!(
            matches!(l.check("b", "s", 0, 100), Verdict::New(_)),
            "sources are independent"
        );
    }

    #[test]
    fn snapshot_holds_only_deleted_segments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let mut l = Ledger::load(&path).unwrap();
        let Verdict::New(t) = l.check("a", "s", 0, 100) else {
            panic!("new")
        };
        l.commit("a", "s", t, SegmentId(1));
        let Verdict::New(t) = l.check("a", "s", 100, 200) else {
            panic!("new")
        };
        l.commit("a", "s", t, SegmentId(2));
        l.persist_through(SegmentId(1)).unwrap();
        let mut back = Ledger::load(&path).unwrap();
        assert_eq!(back.through_segment(), SegmentId(1));
        // Segment 2 is replayed after a restart: its record must be new.
        assert!(matches!(back.check("a", "s", 100, 200), Verdict::New(_)));
        assert_eq!(back.check("a", "s", 0, 100), Verdict::Duplicate);
    }

    #[test]
    fn chained_batches_settle_in_order_and_a_release_cancels_the_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::load(&dir.path().join("ledger.json")).unwrap();
        let new = |v: Verdict| match v {
            Verdict::New(t) => t,
            other => panic!("{other:?}"),
        };
        // A chained batch whose predecessor has not arrived waits for it.
        assert_eq!(l.check_chained("a", "s", 100, 200), Verdict::InFlight);
        let n = new(l.check("a", "s", 0, 100));
        let n1 = new(l.check_chained("a", "s", 100, 200));
        let n2 = new(l.check_chained("a", "s", 200, 300));
        // Handed to the WAL in order, carrying the predecessor's epoch.
        assert_eq!(l.submit_turn("a", "s", n1), Turn::Wait);
        assert_eq!(l.submit_turn("a", "s", n), Turn::Go { after: None });
        l.submitted("a", "s", n, 7);
        assert_eq!(l.submit_turn("a", "s", n1), Turn::Go { after: Some(7) });
        l.submitted("a", "s", n1, 7);
        // Counted in order.
        assert_eq!(l.count_turn("a", "s", n1), Turn::Wait);
        assert_eq!(l.count_turn("a", "s", n), Turn::Go { after: None });
        // The first fails: every later one of the source is cancelled, and
        // nothing past 0 is counted.
        assert_eq!(l.release("a", "s", n), 2);
        assert_eq!(l.count_turn("a", "s", n1), Turn::Cancelled);
        assert_eq!(l.submit_turn("a", "s", n2), Turn::Cancelled);
        assert_eq!(
            l.check_chained("a", "s", 100, 200),
            Verdict::InFlight,
            "a chained batch past a released one is not new"
        );
        // The resend from the first unacknowledged offset starts over.
        let n = new(l.check("a", "s", 0, 100));
        let n1 = new(l.check_chained("a", "s", 100, 200));
        l.commit("a", "s", n, SegmentId(1));
        l.commit("a", "s", n1, SegmentId(1));
        assert_eq!(l.check("a", "s", 0, 200), Verdict::Duplicate);
        assert!(matches!(
            l.check_chained("a", "s", 200, 300),
            Verdict::New(_)
        ));
    }

    #[test]
    fn a_corrupt_snapshot_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        fs::write(&path, b"{not json").unwrap();
        assert!(Ledger::load(&path).is_err());
    }
}
