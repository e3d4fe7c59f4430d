//! Tailing log files, with the bookkeeping that exactly-once counting needs.
//!
//! A [`Tailer`] follows the files matched by one configured source's globs
//! and hands out [`Chunk`]s: complete lines of one file together with the
//! byte range `[start_offset, end_offset)` they occupy. The shipper sends a
//! chunk, and once the collector acknowledged it, calls [`Tailer::ack`] (or
//! [`AckHandle::ack`]); only acknowledged offsets are persisted, so after a
//! restart reading resumes at the last acknowledged offset and un-acked
//! lines are sent again under the same source id and from the same offset.
//!
//! # Identity
//!
//! A file is known by a fingerprint of its first bytes
//! ([`TailConfig::fingerprint_bytes`]), never by its path and only with
//! device and inode as hints. That is what makes rotation safe:
//!
//! - **rename + create**: the renamed file keeps its fingerprint, so whether
//!   or not the new name is matched by the globs it is read to its end under
//!   its old source id; the new file has new first bytes and is a new source.
//! - **copytruncate**: the copy has the old fingerprint and continues the old
//!   source from where reading stood (nothing is read twice, and lines the
//!   copy holds beyond that point are not lost); the truncated original has
//!   shrunk below the read offset, or has other first bytes, and becomes a
//!   new source read from 0.
//! - **a reused inode** whose first bytes differ is a new source.
//! - **replaced while the agent was down**: same rule, decided from the
//!   checkpoint.
//!
//! - **two files alike at once** (a copy made while the original is still
//!   being read): the copy is not read; it takes over only once the
//!   original is truncated or let go, continuing from the same offset.
//!
//! A file shorter than `fingerprint_bytes` is identified by all the bytes it
//! has, and read at once; when it grows, the same prefix is re-hashed to
//! recognise it and the fingerprint is extended. The price, inherent to
//! identifying files by content: a new file that starts with exactly the
//! same bytes as a known one (for a short file: its whole content) is taken
//! for it. Real logs start with timestamps, which makes this rare; the
//! property tests use lines with unique prefixes for the same reason.
//! Globs should match the rotated names too (`access.log*`): a file renamed
//! out of the globs is followed through its open handle while the agent
//! runs, but not if the rename happened while the agent was down.
//!
//! # Bounded memory
//!
//! At most `max_line_bytes` of a pending line are kept per file; reading a
//! source stops while more than [`TailConfig::max_inflight_bytes_per_source`]
//! bytes have been handed out without acknowledgement (and all sources stop
//! at [`TailConfig::max_inflight_bytes`]), so a collector that does not
//! answer makes the agent wait, not grow.
//!
//! # Driving it
//!
//! [`Tailer::poll`] does one round of work synchronously (a glob scan when
//! due, then at most one read of `read_chunk_bytes` per file) and returns
//! the chunks it produced; [`Tailer::next_chunks`] loops over it and sleeps
//! until a file-system event, an acknowledgement or a timer says there may
//! be more. The scan runs every `poll_interval` regardless of events:
//! `notify` only makes the tailer faster, never responsible for correctness.
//!
//! Submodules: `fingerprint` (identity), `lines` (line splitting, cut and
//! flush), `checkpoint` (the persisted format), `watch` (notify), `tailer`
//! (scan, match, read, ack).

pub(crate) mod checkpoint;
mod fingerprint;
mod lines;
mod tailer;
mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

pub use tailer::Tailer;

/// Where to start in a file that has no checkpoint entry and is present at
/// the tailer's first scan. Files that appear later are always read from
/// their beginning: they are new, typically just created by rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// Read the whole file.
    #[default]
    Beginning,
    /// Skip what is there: start after the last complete line.
    End,
}

/// What one [`Tailer`] follows and how.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// The configured source's name; it prefixes source ids, so two
    /// configured sources reading the same file ship distinct sources.
    pub name: String,
    /// Glob patterns (the `glob` crate's syntax); files that start matching
    /// later are picked up.
    pub globs: Vec<String>,
    /// How many leading bytes identify a file.
    pub fingerprint_bytes: usize,
    /// Longer lines are cut to this many bytes (and counted); the whole line
    /// still counts in the chunk's byte range.
    pub max_line_bytes: usize,
    /// A last line still without newline after this long is emitted as it is.
    pub partial_line_flush: Duration,
    /// Bytes read from one file in one round while tailing live.
    pub read_chunk_bytes: usize,
    /// Most bytes read from one file in one round while catching up: reads
    /// that come back full double up to this; at or below
    /// `read_chunk_bytes` (the default of [`TailConfig::new`]: 0) chunks
    /// stay fixed. The agent's sources use [`CATCH_UP_CHUNK_BYTES`].
    pub max_read_chunk_bytes: usize,
    /// How often the globs are scanned, whatever the file-system events say.
    /// Zero scans on every [`Tailer::poll`].
    pub poll_interval: Duration,
    /// How long a file that left the globs (deleted or moved away) is still
    /// read through its open handle. When the limit strikes, the bytes not
    /// read yet are counted in [`TailStats::bytes_given_up`] and logged.
    pub max_open_deleted: Duration,
    /// A file still matched by the globs is closed after being idle at its
    /// end this long, to spare descriptors for many rotated files; the next
    /// scan reopens it when it grows.
    pub close_idle_after: Duration,
    /// See [`StartAt`].
    pub start_at: StartAt,
    /// A source stops being read while this many bytes were handed out and
    /// not acknowledged.
    pub max_inflight_bytes_per_source: u64,
    /// The same cap over all of this tailer's sources together.
    pub max_inflight_bytes: u64,
    /// The checkpoint file; `None` keeps positions in memory only.
    pub checkpoint_path: Option<PathBuf>,
    /// How often [`Tailer::poll`] writes the checkpoint when something
    /// changed. Zero writes it at the end of every round that changed
    /// something, before the round's chunks are returned: then even after a
    /// kill -9 a resend repeats exactly the ranges handed out before, at the
    /// cost of an fsync per round. Otherwise a resend starts at the same
    /// (acknowledged) offset, but chunks handed out after the last write may
    /// be cut at other places.
    pub checkpoint_interval: Duration,
    /// Checkpoint entries of files not seen for this long are dropped.
    pub prune_after: Duration,
}

/// How far the agent's reads grow while a source has a backlog: a batch
/// of about 13,000 access-log lines, so that one acknowledgement round
/// trip (and one fsync on each side) carries that many, well within the
/// per-source in-flight cap. Measured end to end (`bench/pipeline.sh`),
/// 4 MiB was no faster and held the agent at 43-49 MB RSS while catching
/// up; 2 MiB keeps it near 30 MB, under the 40 MB budget.
pub const CATCH_UP_CHUNK_BYTES: usize = 2 * 1024 * 1024;

impl TailConfig {
    /// Defaults for one source.
    pub fn new(name: impl Into<String>, globs: Vec<String>) -> TailConfig {
        TailConfig {
            name: name.into(),
            globs,
            fingerprint_bytes: 256,
            max_line_bytes: 64 * 1024,
            partial_line_flush: Duration::from_secs(5),
            read_chunk_bytes: 256 * 1024,
            max_read_chunk_bytes: 0,
            poll_interval: Duration::from_secs(1),
            max_open_deleted: Duration::from_secs(300),
            close_idle_after: Duration::from_secs(60),
            start_at: StartAt::Beginning,
            max_inflight_bytes_per_source: 8 * 1024 * 1024,
            max_inflight_bytes: 32 * 1024 * 1024,
            checkpoint_path: None,
            checkpoint_interval: Duration::from_secs(1),
            prune_after: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Complete lines of one file and the byte range they occupy.
///
/// The chunks of one source come out in offset order and without gaps: a
/// chunk starts where the previous one ended, or at the acknowledged offset
/// after a restart. Lines are raw bytes without their `\n` (nor a `\r`
/// before it); decoding, lossy or not, is the parser's business. Once its
/// lines are no longer needed, a chunk can go back to the tailer with
/// [`Tailer::recycle`].
#[derive(Clone)]
pub struct Chunk {
    /// The file's identity, stable across rotation and restarts.
    pub source_id: String,
    /// Where the file was last seen.
    pub path: PathBuf,
    /// First byte covered.
    pub start_offset: u64,
    /// One past the last byte covered.
    pub end_offset: u64,
    /// Lines cut to `max_line_bytes`.
    pub cut_lines: u64,
    /// Lines emitted without newline (waited `partial_line_flush`, or their
    /// file went away).
    pub flushed_lines: u64,
    /// The bytes read, lines and what separates them; only `data[..used]`
    /// means anything (see `lines::Lines`).
    data: Vec<u8>,
    used: usize,
    /// Where each line is in `data`.
    spans: Vec<(usize, usize)>,
    /// The chunk ends where a read filled its buffer, not where the file
    /// did (see [`Chunk::cut_by_read_size`]); and every line but the first
    /// is in `data` byte for byte as in the file, so that
    /// [`Tailer::give_back`] can find any line's offset.
    cut: bool,
    /// The chunk ends where the file ended when it was read, and the file
    /// is still being written (see [`Chunk::at_open_end`]); every line but
    /// the first is in `data` as in the file, as for `cut`.
    open_end: bool,
}

impl Chunk {
    /// The lines, in file order.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.spans
            .iter()
            .map(|&(start, end)| &self.data[start..end])
    }

    /// The lines as text, when the chunk is valid UTF-8 as a whole (nearly
    /// always; `None` otherwise, then use [`Chunk::lines`]). One validation
    /// of the chunk costs less than one per line, and
    /// [`Pipeline::feed_str`](crate::parse::Pipeline::feed_str) takes the
    /// lines as they are.
    pub fn text_lines(&self) -> Option<impl ExactSizeIterator<Item = &str> + '_> {
        let text = std::str::from_utf8(&self.data[..self.used]).ok()?;
        // A line cut at `max_line_bytes` may end inside a character, and
        // the rest of it is still in the text.
        if !self
            .spans
            .iter()
            .all(|&(start, end)| text.is_char_boundary(start) && text.is_char_boundary(end))
        {
            return None;
        }
        Some(
            self.spans
                .iter()
                .map(move |&(start, end)| &text[start..end]),
        )
    }

    /// How many lines.
    pub fn line_count(&self) -> usize {
        self.spans.len()
    }

    /// Whether the chunk ends only because the read that made it filled
    /// its buffer: the file goes on, and the chunk's last lines may be the
    /// first of a multi-line record that [`Tailer::give_back`] can take
    /// back. False for a chunk that ends where the file ended, and for a
    /// chunk resent after a restart, whose end was chosen before it.
    pub fn cut_by_read_size(&self) -> bool {
        self.cut
    }

    /// Whether the chunk ends where the file ended, in a file that is
    /// still open under its name and was written less than
    /// `partial_line_flush` ago: a writer may be in the middle of a
    /// multi-line record, whose beginning [`Tailer::give_back`] can then
    /// hold back until the rest is written or the file goes quiet. False
    /// for a chunk read once the file was quiet that long, after a record
    /// was held, for a chunk with a line flushed without its newline, and
    /// for a chunk resent after a restart.
    pub fn at_open_end(&self) -> bool {
        self.open_end
    }
}

/// Two chunks are equal when they cover the same range with the same
/// lines, however their buffers were filled.
impl PartialEq for Chunk {
    fn eq(&self, other: &Chunk) -> bool {
        self.source_id == other.source_id
            && self.path == other.path
            && self.start_offset == other.start_offset
            && self.end_offset == other.end_offset
            && self.cut_lines == other.cut_lines
            && self.flushed_lines == other.flushed_lines
            && self.lines().eq(other.lines())
    }
}

impl Eq for Chunk {}

/// The lines as text (lossy), not the buffer they are in.
impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("source_id", &self.source_id)
            .field("path", &self.path)
            .field("start_offset", &self.start_offset)
            .field("end_offset", &self.end_offset)
            .field("cut_lines", &self.cut_lines)
            .field("flushed_lines", &self.flushed_lines)
            .field(
                "lines",
                &self
                    .lines()
                    .map(String::from_utf8_lossy)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a [`Tailer`] could not start or save its positions.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// A glob does not parse.
    #[error("glob {pattern:?}: {reason}")]
    BadGlob {
        /// The pattern as configured.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("tail source {name:?}: {reason}")]
    Config {
        /// The configured source.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint file cannot be read, parsed or written.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// One file's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStats {
    /// The source id chunks carry.
    pub source_id: String,
    /// Where the file was last seen.
    pub path: PathBuf,
    /// Whether the file is open now.
    pub open: bool,
    /// End of the last chunk handed out.
    pub emitted_offset: u64,
    /// Offset acknowledged by the collector (what a restart resumes from).
    pub acked_offset: u64,
    /// Bytes covered by chunks handed out since the tailer started.
    pub bytes_read: u64,
    /// Lines handed out.
    pub lines: u64,
    /// Lines cut to `max_line_bytes`.
    pub cut_lines: u64,
    /// Lines flushed without newline.
    pub flushed_lines: u64,
    /// Bytes left unread when the file was let go (see
    /// [`TailConfig::max_open_deleted`]).
    pub bytes_given_up: u64,
}

/// A tailer's figures since it started, for the agent's `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Files seen for the first time (new identities).
    pub files_discovered: u64,
    /// Known files found under another name or as another inode (rename or
    /// copy rotation).
    pub rotations: u64,
    /// Files truncated or overwritten in place.
    pub truncations: u64,
    /// Bytes covered by chunks handed out.
    pub bytes_read: u64,
    /// Lines handed out.
    pub lines: u64,
    /// Lines cut to `max_line_bytes`.
    pub cut_lines: u64,
    /// Lines flushed without newline.
    pub flushed_lines: u64,
    /// Bytes never read because a file was let go early.
    pub bytes_given_up: u64,
    /// Checkpoint writes that failed (retried at the next round).
    pub checkpoint_errors: u64,
    /// Glob scans done (each lists and checks every matching file).
    pub scans: u64,
    /// Multi-line records found unfinished at the end of their file and
    /// held back until the writer finished them (or went quiet).
    pub records_held: u64,
    /// Every known file, sorted by source id.
    pub sources: Vec<SourceStats>,
}

/// Acknowledges chunks from another task, such as the shipper's.
///
/// Acknowledgements are queued and applied at the tailer's next round; the
/// call also wakes a tailer waiting in [`Tailer::next_chunks`] (it may be
/// waiting for exactly this, when its in-flight cap is reached).
#[derive(Debug, Clone)]
pub struct AckHandle {
    queue: Arc<Mutex<Vec<(String, u64)>>>,
    wake: Arc<Notify>,
}

impl AckHandle {
    /// The collector acknowledged the chunk of `source_id` ending at
    /// `end_offset`.
    pub fn ack(&self, source_id: impl Into<String>, end_offset: u64) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((source_id.into(), end_offset));
        self.wake.notify_one();
    }
}
