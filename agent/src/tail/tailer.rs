//! The tailer: scanning globs, matching files to known identities, reading,
//! and the acknowledged offsets.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::checkpoint::{Checkpointer, Entry};
use super::fingerprint::{Fingerprint, read_prefix};
use super::lines::{LineAssembler, Lines};
use super::watch::Watch;
use super::{AckHandle, Chunk, SourceStats, StartAt, TailConfig, TailError, TailStats};

/// Follows the files of one configured source; see the [module
/// docs](super).
///
/// File I/O happens in [`poll`](Tailer::poll), synchronously and in small
/// steps (one read of at most `read_chunk_bytes` per file per round, a glob
/// scan per `poll_interval`); an agent that wants no blocking call on its
/// async workers can run the tailer on a blocking thread.
pub struct Tailer {
    cfg: TailConfig,
    /// Known files by source id; a `BTreeMap` so rounds visit them in a
    /// stable order.
    sources: BTreeMap<String, Source>,
    checkpointer: Option<Checkpointer>,
    watch: Watch,
    wake: Arc<Notify>,
    acks: Arc<Mutex<Vec<(String, u64)>>>,
    totals: TailStats,
    /// Read buffers handed back with [`Tailer::recycle`]; see [`Buffers`].
    bufs: Buffers,
    generation: u64,
    last_scan: Option<Instant>,
    dirty: bool,
    last_checkpoint: Option<Instant>,
    /// A read filled its buffer last round: there is probably more.
    more_ready: bool,
    /// Paths whose open failed, so the warning is logged once.
    warned: HashSet<PathBuf>,
}

/// One known file (identity), open or not.
struct Source {
    id: String,
    fp: Fingerprint,
    /// (device, inode) where the file was last seen; a hint only.
    hint: Option<(u64, u64)>,
    path: PathBuf,
    /// Everything before this was acknowledged by the collector.
    acked: u64,
    /// End of the last chunk handed out.
    emitted: u64,
    /// End offsets of chunks handed out and whether each was acknowledged,
    /// oldest first; acknowledgements may arrive out of order, `acked` only
    /// moves over a contiguous acknowledged prefix.
    pending: VecDeque<(u64, bool)>,
    /// Chunk ends handed out before a restart and not acknowledged: chunks
    /// are cut there again so resends repeat the same ranges.
    replay: VecDeque<u64>,
    last_seen: DateTime<Utc>,
    open: Option<OpenFile>,
    /// The partial line of a file just detached; see [`Source::detach`].
    stash: Option<LineAssembler>,
    /// After a whole chunk went back ([`Tailer::give_back`]): the next read
    /// goes on to this offset, so that the record that filled the chunk
    /// comes back in a longer one.
    read_through: Option<u64>,
    /// How much the next read asks for: doubles while reads come back full
    /// (a backlog: fewer, larger batches, each costing one acknowledgement
    /// round trip and fsync on both sides), back to `read_chunk_bytes` as
    /// soon as one does not (tailing live: small batches, low latency).
    chunk_bytes: usize,
    stats: SourceStats,
}

struct OpenFile {
    file: File,
    key: (u64, u64),
    /// Next byte to read; `emitted` plus the pending partial line.
    read_offset: u64,
    asm: LineAssembler,
    /// The scan generation that last found this file under a glob.
    verified: u64,
    /// When the file was first missed by a scan (deleted or moved away).
    orphan_since: Option<Instant>,
    /// Last time a read returned bytes (or the file was opened).
    active_at: Instant,
    /// A record at the end of the file went back ([`Tailer::give_back`]
    /// of a chunk [`Chunk::at_open_end`]): it is not read again until the
    /// file grows past `end` or stays as it is until `until`.
    held: Option<Held>,
    /// A hold ran out with the file unchanged: bytes up to here are read
    /// as they are, never held again.
    quiet_end: Option<u64>,
}

/// See [`OpenFile::held`].
#[derive(Clone, Copy)]
struct Held {
    end: u64,
    until: Instant,
}

impl Tailer {
    /// Builds a tailer and loads its checkpoint; no file is touched before
    /// the first [`poll`](Tailer::poll).
    ///
    /// # Errors
    /// A glob that does not parse, a zero size setting, or a checkpoint that
    /// cannot be read or has an unknown version (refused rather than
    /// started over, which would count every log again).
    pub fn new(cfg: TailConfig) -> Result<Tailer, TailError> {
        for g in &cfg.globs {
            glob::Pattern::new(g).map_err(|e| TailError::BadGlob {
                pattern: g.clone(),
                reason: e.to_string(),
            })?;
        }
        let bad = |reason: &str| TailError::Config {
            name: cfg.name.clone(),
            reason: reason.to_owned(),
        };
        if cfg.globs.is_empty() {
            return Err(bad("no glob configured"));
        }
        if cfg.fingerprint_bytes == 0 || cfg.max_line_bytes == 0 || cfg.read_chunk_bytes == 0 {
            return Err(bad(
                "fingerprint_bytes, max_line_bytes and read_chunk_bytes must be at least 1",
            ));
        }
        if cfg.max_inflight_bytes_per_source == 0 || cfg.max_inflight_bytes == 0 {
            return Err(bad("in-flight limits must be at least 1 byte"));
        }
        let checkpointer = cfg.checkpoint_path.clone().map(Checkpointer::new);
        let mut sources = BTreeMap::new();
        if let Some(cp) = &checkpointer {
            for e in cp.load()? {
                let s = Source::from_entry(e);
                sources.insert(s.id.clone(), s);
            }
        }
        let wake = Arc::new(Notify::new());
        let watch = Watch::new(&cfg.globs, wake.clone());
        Ok(Tailer {
            bufs: Buffers {
                kept: Vec::new(),
                sizes: cfg.read_chunk_bytes
                    ..=2 * (cfg.read_chunk_bytes.max(cfg.max_read_chunk_bytes)
                        + cfg.max_line_bytes),
            },
            cfg,
            sources,
            checkpointer,
            watch,
            wake,
            acks: Arc::default(),
            totals: TailStats::default(),
            generation: 0,
            last_scan: None,
            dirty: false,
            last_checkpoint: None,
            more_ready: false,
            warned: HashSet::new(),
        })
    }

    /// A handle that acknowledges chunks from another task.
    pub fn ack_handle(&self) -> AckHandle {
        AckHandle {
            queue: self.acks.clone(),
            wake: self.wake.clone(),
        }
    }

    /// The collector acknowledged the chunk of `source_id` that ends at
    /// `end_offset`. The persisted offset moves once every earlier chunk of
    /// the source is acknowledged too. Returns false for a chunk this
    /// tailer did not hand out (an acknowledgement of an offset already
    /// acknowledged is accepted again).
    pub fn ack(&mut self, source_id: &str, end_offset: u64) -> bool {
        let Some(src) = self.sources.get_mut(source_id) else {
            tracing::warn!(source = source_id, end_offset, "ack for unknown source");
            return false;
        };
        if end_offset <= src.acked {
            return true;
        }
        let Some(slot) = src.pending.iter_mut().find(|(end, _)| *end == end_offset) else {
            tracing::warn!(
                source = source_id,
                end_offset,
                "ack for a chunk not handed out"
            );
            return false;
        };
        slot.1 = true;
        while let Some(&(end, true)) = src.pending.front() {
            src.acked = end;
            src.stats.acked_offset = end;
            src.pending.pop_front();
            self.dirty = true;
        }
        true
    }

    /// Hands back a chunk whose lines are no longer needed, so that its
    /// buffer is read into again rather than a new one allocated and
    /// cleared for the next read. Optional: a chunk that is dropped instead
    /// only costs that.
    pub fn recycle(&mut self, chunk: Chunk) {
        self.bufs.give(chunk.data);
    }

    /// Takes back the lines of `chunk` from its line `keep` on, as if its
    /// read had stopped before them: they are read again, at the start of
    /// the next chunk. This is how a multi-line record that a read cut in
    /// two travels whole. With `keep == 0` the whole chunk goes back
    /// (leaving it empty, nothing to ship or acknowledge) and the next
    /// read is made twice as long, so the record comes back in a longer
    /// chunk.
    ///
    /// For a chunk [`Chunk::at_open_end`], the lines are held instead: the
    /// file is not read again until it grows (the writer finished the
    /// record or started the next one) or has not changed for
    /// `partial_line_flush`, when they come back in a chunk that is not
    /// `at_open_end`, so a record a writer abandoned half-written is still
    /// shipped, only later.
    ///
    /// The shortened range is checkpointed before this returns: a resend
    /// after a crash repeats the range that was shipped. Returns false,
    /// changing nothing, when `chunk` is not the source's latest, neither
    /// [`Chunk::cut_by_read_size`] nor [`Chunk::at_open_end`], when the checkpoint cannot be written,
    /// or when a whole chunk given back would need a read longer than
    /// `max_inflight_bytes_per_source`; the chunk is then shipped as it is.
    pub fn give_back(&mut self, chunk: &mut Chunk, keep: usize) -> bool {
        let lines = chunk.spans.len();
        if !(chunk.cut || chunk.open_end) || keep >= lines {
            return false;
        }
        let len = chunk.end_offset - chunk.start_offset;
        let max_line = self.cfg.max_line_bytes as u64;
        let (end, used, cut_back) = if keep == 0 {
            if 2 * (len + self.cfg.read_chunk_bytes as u64) > self.cfg.max_inflight_bytes_per_source
            {
                return false;
            }
            (chunk.start_offset, 0, chunk.cut_lines)
        } else {
            // Lines after the first are in `data` as in the file (that is
            // what `cut` promises), newlines included: their starts give
            // their offsets and lengths.
            let from = chunk.spans[keep].0;
            let mut starts: Vec<usize> = chunk.spans[keep..].iter().map(|s| s.0).collect();
            starts.push(chunk.used);
            let cut_back = starts
                .windows(2)
                .filter(|w| (w[1] - w[0] - 1) as u64 > max_line)
                .count() as u64;
            (
                chunk.end_offset - (chunk.used - from) as u64,
                from,
                cut_back,
            )
        };
        let Some(src) = self.sources.get_mut(&chunk.source_id) else {
            return false;
        };
        if src.emitted != chunk.end_offset
            || src.pending.back() != Some(&(chunk.end_offset, false))
            || src.open.is_none()
        {
            return false;
        }
        let set_end = |src: &mut Source, to: u64| {
            src.emitted = to;
            src.pending.pop_back();
            if to > chunk.start_offset {
                src.pending.push_back((to, false));
            }
        };
        set_end(src, end);
        if self.checkpointer.is_some()
            && let Err(e) = self.checkpoint_at(Instant::now())
        {
            tracing::warn!(source = %chunk.source_id, error = %e, "checkpoint not written; the chunk is shipped whole");
            if let Some(src) = self.sources.get_mut(&chunk.source_id) {
                set_end(src, chunk.end_offset);
            }
            return false;
        }
        let Some(src) = self.sources.get_mut(&chunk.source_id) else {
            return false;
        };
        let hold = !chunk.cut;
        if let Some(of) = src.open.as_mut() {
            if hold {
                of.held = Some(Held {
                    end: of.read_offset,
                    // Quiet that long since the read that found it.
                    until: of.active_at + self.cfg.partial_line_flush,
                });
            } else if keep == 0 {
                // Twice what was read, the partial line after the chunk
                // included: the record's next line may be longer than all
                // of the chunk.
                src.read_through = Some(end + 2 * (of.read_offset - end));
            }
            of.read_offset = end;
            of.asm = LineAssembler::new(self.cfg.max_line_bytes);
        }
        let (lines_back, bytes_back) = ((lines - keep) as u64, chunk.end_offset - end);
        for s in [&mut src.stats.lines, &mut self.totals.lines] {
            *s -= lines_back;
        }
        for s in [&mut src.stats.bytes_read, &mut self.totals.bytes_read] {
            *s -= bytes_back;
        }
        for s in [&mut src.stats.cut_lines, &mut self.totals.cut_lines] {
            *s -= cut_back;
        }
        chunk.end_offset = end;
        chunk.spans.truncate(keep);
        chunk.used = used;
        chunk.cut_lines -= cut_back;
        chunk.cut = false;
        chunk.open_end = false;
        if !hold {
            self.more_ready = true;
        }
        self.totals.records_held += u64::from(hold);
        true
    }

    /// The acknowledged offset of a source, if it is known.
    pub fn acked_offset(&self, source_id: &str) -> Option<u64> {
        self.sources.get(source_id).map(|s| s.acked)
    }

    /// One round of work now; see [`poll_at`](Tailer::poll_at).
    pub fn poll(&mut self) -> Vec<Chunk> {
        self.poll_at(Instant::now())
    }

    /// One round of work as if the time were `now` (tests and simulations
    /// drive time this way): applies queued acknowledgements, scans the
    /// globs if due, reads each open file once, flushes lines that waited
    /// too long, lets go of files gone for too long, and writes the
    /// checkpoint if due. Never fails: a file that cannot be read is logged
    /// and retried, a failed checkpoint write is counted and retried.
    pub fn poll_at(&mut self, now: Instant) -> Vec<Chunk> {
        let queued = std::mem::take(&mut *self.acks.lock().unwrap_or_else(|e| e.into_inner()));
        for (id, end) in queued {
            self.ack(&id, end);
        }
        let mut out = Vec::new();
        // Both taken every round, so neither carries stale news forward.
        let structural = self.watch.take_rescan();
        let written = self.watch.take_written(|name| {
            self.sources
                .values()
                .any(|s| s.open.is_some() && s.path.file_name() == Some(name))
        });
        let event = structural || written;
        let due = self
            .last_scan
            .is_none_or(|t| now >= t + self.cfg.poll_interval);
        if event || due {
            self.scan(now, &mut out);
        }
        self.read_round(now, &mut out);
        let checkpoint_due = self
            .last_checkpoint
            .is_none_or(|t| now >= t + self.cfg.checkpoint_interval);
        // A failed write leaves `dirty` set: the next round retries.
        if self.dirty
            && checkpoint_due
            && self.checkpointer.is_some()
            && let Err(e) = self.checkpoint_at(now)
        {
            self.totals.checkpoint_errors += 1;
            tracing::warn!(error = %e, "checkpoint not written; retrying next round");
        }
        out
    }

    /// Polls until there is at least one chunk, sleeping in between until a
    /// file-system event, an acknowledgement from an [`AckHandle`], or the
    /// next timer (scan, flush, let-go, checkpoint).
    ///
    /// Cancel safe: chunks are only produced by the synchronous `poll`
    /// inside, so dropping this future in a `select!` loses nothing.
    pub async fn next_chunks(&mut self) -> Vec<Chunk> {
        loop {
            let chunks = self.poll();
            if !chunks.is_empty() {
                return chunks;
            }
            self.wait().await;
        }
    }

    /// Sleeps until there may be work for [`poll`](Tailer::poll). Cancel
    /// safe.
    pub async fn wait(&mut self) {
        if self.more_ready {
            tokio::task::yield_now().await;
            return;
        }
        let deadline = self.next_deadline(Instant::now());
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
    }

    /// Writes the checkpoint now (on shutdown, say). Positions are not
    /// written on drop: a tailer that is dropped behaves like a crash.
    ///
    /// # Errors
    /// The file cannot be written; the previous one is then left intact.
    pub fn checkpoint(&mut self) -> Result<(), TailError> {
        self.checkpoint_at(Instant::now())
    }

    /// Figures since start, and every known file.
    pub fn stats(&self) -> TailStats {
        let mut t = self.totals.clone();
        t.sources = self
            .sources
            .values()
            .map(|s| {
                let mut st = s.stats.clone();
                st.path = s.path.clone();
                st.open = s.open.is_some();
                st.emitted_offset = s.emitted;
                st.acked_offset = s.acked;
                st
            })
            .collect();
        t
    }

    fn checkpoint_at(&mut self, now: Instant) -> Result<(), TailError> {
        let Some(cp) = &self.checkpointer else {
            return Ok(());
        };
        cp.store(self.sources.values().map(Source::to_entry).collect())?;
        self.dirty = false;
        self.last_checkpoint = Some(now);
        Ok(())
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let c = &self.cfg;
        let mut at = self.last_scan.map_or(now, |t| t + c.poll_interval);
        if self.dirty && self.checkpointer.is_some() {
            at = at.min(
                self.last_checkpoint
                    .map_or(now, |t| t + c.checkpoint_interval),
            );
        }
        for of in self.sources.values().filter_map(|s| s.open.as_ref()) {
            if let Some(t) = of.asm.flush_deadline(c.partial_line_flush) {
                at = at.min(t);
            }
            if let Some(h) = of.held {
                at = at.min(h.until);
            }
            match of.orphan_since {
                Some(t) => at = at.min(t + c.max_open_deleted),
                None if of.asm.pending() == 0 => at = at.min(of.active_at + c.close_idle_after),
                None => {}
            }
        }
        at.max(now)
    }

    /// Lists the files under the globs and reconciles them with the known
    /// sources.
    fn scan(&mut self, now: Instant, out: &mut Vec<Chunk>) {
        self.generation += 1;
        self.totals.scans += 1;
        self.watch.retry();
        let files = self.list_files();
        let open_at: HashMap<(u64, u64), String> = self
            .sources
            .values()
            .filter_map(|s| s.open.as_ref().map(|of| (of.key, s.id.clone())))
            .collect();
        let mut seen = HashSet::new();
        let mut unmatched = Vec::new();
        // First the files already open, so that everything else is judged
        // knowing which identities are live.
        for (path, md) in files {
            let key = (md.dev(), md.ino());
            if !seen.insert(key) {
                continue; // hard link or a second pattern matching it
            }
            match open_at.get(&key) {
                Some(id) => {
                    if !self.verify_open(id, &path) {
                        unmatched.push((path, md, true));
                    }
                }
                None => unmatched.push((path, md, false)),
            }
        }
        // Files let go of before new ones are matched, so that a copy of
        // one of them (copytruncate) takes over its identity in this scan.
        self.orphans(now);
        let first_scan = self.last_scan.is_none();
        for (path, md, replaced) in unmatched {
            self.discover(path, &md, replaced, first_scan, now);
        }
        for src in self.sources.values_mut() {
            if src.flush_stash(out, &mut self.totals) {
                self.dirty = true;
            }
        }
        self.prune();
        self.last_scan = Some(now);
    }

    /// Forgets files not seen for `prune_after`. Only after a scan, which
    /// refreshes `last_seen` of every file still present: an entry loaded
    /// from an old checkpoint says nothing about whether its file is gone.
    fn prune(&mut self) {
        let horizon = Utc::now()
            - chrono::Duration::from_std(self.cfg.prune_after).unwrap_or(chrono::Duration::MAX);
        let before = self.sources.len();
        self.sources
            .retain(|_, s| s.open.is_some() || !s.pending.is_empty() || s.last_seen >= horizon);
        if self.sources.len() != before {
            self.dirty = true;
        }
    }

    fn list_files(&mut self) -> Vec<(PathBuf, Metadata)> {
        let mut paths = Vec::new();
        for g in &self.cfg.globs {
            // Patterns were validated in `new`.
            let Ok(entries) = glob::glob(g) else { continue };
            // Unreadable directories are skipped; the next scan retries.
            paths.extend(entries.flatten());
        }
        paths.sort();
        paths.dedup();
        paths
            .into_iter()
            .filter_map(|p| {
                let md = std::fs::metadata(&p).ok()?;
                md.is_file().then_some((p, md))
            })
            .collect()
    }

    /// Checks that an open file found under a glob still holds the same
    /// identity. Returns false when it was truncated or overwritten: the
    /// old source is let go and the caller treats the file as new.
    fn verify_open(&mut self, id: &str, path: &Path) -> bool {
        let Some(src) = self.sources.get_mut(id) else {
            return true;
        };
        let Some(of) = src.open.as_mut() else {
            return true;
        };
        let size = match of.file.metadata() {
            Ok(md) => md.len(),
            Err(_) => return true,
        };
        let want = size.min(self.cfg.fingerprint_bytes as u64) as usize;
        let prefix = match read_prefix(&of.file, want) {
            Ok(p) => p,
            Err(_) => return true,
        };
        if size < of.read_offset || !src.fp.matches(&prefix) {
            tracing::info!(
                source = %src.id, path = %path.display(), size, offset = of.read_offset,
                "file truncated or overwritten; reading it as a new source"
            );
            self.totals.truncations += 1;
            src.hint = None;
            src.detach();
            self.dirty = true;
            return false;
        }
        of.verified = self.generation;
        of.orphan_since = None;
        if prefix.len() as u64 > src.fp.len {
            src.fp = Fingerprint::of(&prefix);
            self.dirty = true;
        }
        if src.path != path {
            tracing::info!(source = %src.id, from = %src.path.display(), to = %path.display(), "file renamed");
            self.totals.rotations += 1;
            src.path = path.to_path_buf();
            self.dirty = true;
        }
        src.last_seen = Utc::now();
        true
    }

    /// A file under a glob that is not open: a known source coming back
    /// (after a restart, an idle close, a copy rotation) or a new one.
    fn discover(
        &mut self,
        path: PathBuf,
        md: &Metadata,
        replaced: bool,
        first_scan: bool,
        now: Instant,
    ) {
        let size = md.len();
        if size == 0 {
            return; // nothing to identify it by yet
        }
        let key = (md.dev(), md.ino());
        let file = match File::open(&path) {
            Ok(f) => {
                self.warned.remove(&path);
                f
            }
            Err(e) => {
                if self.warned.insert(path.clone()) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open file; retrying every scan");
                }
                return;
            }
        };
        let want = size.min(self.cfg.fingerprint_bytes as u64) as usize;
        let prefix = match read_prefix(&file, want) {
            Ok(p) if !p.is_empty() => p,
            _ => return,
        };
        let best = if replaced {
            None
        } else {
            // An open file's fingerprint covers all it has (up to
            // `fingerprint_bytes`; scans re-take it), so a file with more
            // first bytes than that cannot be a copy of it, only a different
            // file that starts alike: a new log with a few bytes yet must
            // not claim every older file that starts with the same date.
            // Among the rest, the longest match is the most specific.
            self.sources
                .values()
                .filter(|s| s.fp.matches(&prefix))
                .filter(|s| s.open.is_none() || s.fp.len >= prefix.len() as u64)
                .max_by_key(|s| (s.fp.len, s.hint == Some(key), s.last_seen))
                .map(|s| s.id.clone())
        };
        let max_line = self.cfg.max_line_bytes;
        if let Some(id) = best {
            let Some(src) = self.sources.get_mut(&id) else {
                return;
            };
            if src.open.is_some() {
                // A copy of a file being read (copytruncate caught between
                // its copy and its truncate, or a deleted file copied back):
                // it holds nothing the open file does not.
                tracing::debug!(source = %src.id, path = %path.display(), "copy of an open file; not read");
                return;
            }
            src.last_seen = Utc::now();
            if size <= src.emitted {
                // Nothing new (an idle file, closed to spare descriptors, is
                // checked this way on every scan: size and mtime alone would
                // miss a file rewritten to the same size), or an older copy
                // whose content was all read.
                return;
            }
            if src.hint != Some(key) || src.path != path {
                tracing::info!(source = %src.id, from = %src.path.display(), to = %path.display(), "known file found again");
                self.totals.rotations += 1;
            }
            src.hint = Some(key);
            src.path = path;
            if prefix.len() as u64 > src.fp.len {
                src.fp = Fingerprint::of(&prefix);
            }
            let offset = src.emitted;
            // A line set aside when the old file went is read whole here.
            src.stash = None;
            src.open = Some(OpenFile::new(
                file,
                key,
                offset,
                max_line,
                self.generation,
                now,
            ));
            self.dirty = true;
            return;
        }
        let fp = Fingerprint::of(&prefix);
        let start = if first_scan && self.cfg.start_at == StartAt::End {
            end_of_last_line(&file, size, max_line)
        } else {
            0
        };
        let id = new_source_id(&self.cfg.name, fp);
        tracing::info!(source = %id, path = %path.display(), start, "new file");
        self.totals.files_discovered += 1;
        let mut src = Source {
            id: id.clone(),
            fp,
            hint: Some(key),
            path,
            acked: start,
            emitted: start,
            pending: VecDeque::new(),
            replay: VecDeque::new(),
            last_seen: Utc::now(),
            open: None,
            stash: None,
            read_through: None,
            chunk_bytes: 0,
            stats: SourceStats::empty(&id),
        };
        src.stats.acked_offset = start;
        src.open = Some(OpenFile::new(
            file,
            key,
            start,
            max_line,
            self.generation,
            now,
        ));
        self.sources.insert(id, src);
        self.dirty = true;
    }

    /// Open files the last scan did not find: deleted or moved away. They
    /// are read through their handle until `max_open_deleted` runs out.
    fn orphans(&mut self, now: Instant) {
        let generation = self.generation;
        let limit = self.cfg.max_open_deleted;
        let fp_bytes = self.cfg.fingerprint_bytes;
        for src in self.sources.values_mut() {
            let Some(of) = src.open.as_mut() else {
                continue;
            };
            if of.verified == generation {
                continue;
            }
            let since = *of.orphan_since.get_or_insert_with(|| {
                tracing::info!(source = %src.id, path = %src.path.display(), "file deleted or moved away; reading it to its end");
                now
            });
            let size = of
                .file
                .metadata()
                .map(|m| m.len())
                .unwrap_or(of.read_offset);
            if src.fp.len < fp_bytes as u64 && size > src.fp.len {
                // Keep the fingerprint as complete as for files in the globs
                // (see `discover`): a copy of this file must still match.
                if let Ok(prefix) = read_prefix(&of.file, size.min(fp_bytes as u64) as usize)
                    && src.fp.matches(&prefix)
                {
                    src.fp = Fingerprint::of(&prefix);
                    self.dirty = true;
                }
            }
            if size < of.read_offset {
                self.totals.truncations += 1;
                src.detach();
                self.dirty = true;
            } else if now >= since + limit {
                let unread = size - of.read_offset;
                if unread > 0 {
                    tracing::error!(
                        source = %src.id, path = %src.path.display(), unread,
                        "letting go of a deleted or moved file before its end; bytes lost"
                    );
                }
                src.stats.bytes_given_up += unread;
                self.totals.bytes_given_up += unread;
                src.detach();
                self.dirty = true;
            }
        }
    }

    /// Reads each open file once, within the in-flight limits.
    fn read_round(&mut self, now: Instant, out: &mut Vec<Chunk>) {
        let c = &self.cfg;
        let mut inflight: u64 = self.sources.values().map(|s| s.emitted - s.acked).sum();
        self.more_ready = false;
        for src in self.sources.values_mut() {
            let Some(of) = src.open.as_mut() else {
                continue;
            };
            // A record held back at the end of the file: read again once
            // the file grew, or as it is once it has been quiet long
            // enough (or went away: nothing more will be written to it).
            if let Some(h) = of.held {
                let grown = of.file.metadata().map_or(true, |m| m.len() > h.end);
                if !grown && now < h.until && of.orphan_since.is_none() {
                    continue;
                }
                if !grown {
                    of.quiet_end = Some(h.end);
                }
                of.held = None;
            }
            let budget = c
                .max_inflight_bytes_per_source
                .saturating_sub(src.emitted - src.acked)
                .min(c.max_inflight_bytes.saturating_sub(inflight));
            // Normally one read per file per round. Replaying (after a
            // restart, up to the end of a chunk handed out before it), read
            // on to that end so the resent chunk is the same range.
            let replaying = src.replay.front().copied();
            let through = src
                .read_through
                .filter(|&t| t > of.read_offset && replaying.is_none());
            let mut want = match (budget, replaying) {
                (0, _) => 0,
                (_, Some(end)) => end.saturating_sub(of.read_offset),
                (_, None) => budget
                    .min(src.chunk_bytes.max(c.read_chunk_bytes) as u64)
                    .max(through.map_or(0, |t| t - of.read_offset)),
            };
            let mut lines = Lines::with_buffer(if want > 0 {
                self.bufs.take()
            } else {
                Vec::new()
            });
            let mut total = 0;
            // Whether the last read filled its buffer, and whether every
            // line but the first is in the buffer as in the file (a long
            // line waiting between two reads loses its bytes past the cut).
            let (mut filled, mut exact) = (false, true);
            while want > 0 {
                let step = want.min(src.chunk_bytes.max(c.read_chunk_bytes) as u64) as usize;
                if total > 0 && of.asm.pending() > c.max_line_bytes as u64 {
                    exact = false;
                }
                // Straight into the chunk's buffer: lines are not copied.
                let room = of.asm.room(&mut lines, step);
                let n = match of.file.read_at(room, of.read_offset) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(source = %src.id, path = %src.path.display(), error = %e, "read failed; retrying");
                        0
                    }
                };
                if n == 0 {
                    filled = false;
                    break;
                }
                of.asm.commit(&mut lines, n, now);
                of.read_offset += n as u64;
                total += n;
                want -= n as u64;
                filled = n == step;
                if replaying.is_none() && through.is_none() {
                    if n == step {
                        self.more_ready = true;
                        src.chunk_bytes = (step * 2)
                            .min(c.max_read_chunk_bytes.max(c.read_chunk_bytes))
                            .max(c.read_chunk_bytes);
                    } else {
                        src.chunk_bytes = c.read_chunk_bytes;
                    }
                    break;
                }
            }
            if total > 0 {
                of.active_at = now;
                src.read_through = None;
                if replaying.is_some() || through.is_some() {
                    self.more_ready = true;
                }
            }
            let n = total;
            if src.replay.front() == Some(&of.read_offset) {
                // A line flushed before the restart ended here: end it here
                // again, so the resent range is the same.
                of.asm.flush(&mut lines);
            } else if of
                .asm
                .flush_deadline(c.partial_line_flush)
                .is_some_and(|t| now >= t)
            {
                of.asm.flush(&mut lines);
            }
            let idle_close = n == 0
                && of.orphan_since.is_none()
                && of.asm.pending() == 0
                && now >= of.active_at + c.close_idle_after;
            inflight += lines.file_bytes;
            if lines.is_empty() {
                self.bufs.give(std::mem::take(&mut lines.data));
            } else if lines.used < lines.data.len() / 4 {
                // A few lines of a quiet file: they should not hold on to a
                // whole read buffer while they are shipped.
                let small = lines.data[..lines.used].to_vec();
                self.bufs.give(std::mem::replace(&mut lines.data, small));
            }
            let whole = exact && replaying.is_none() && lines.flushed == 0;
            let cut = filled && want == 0 && whole;
            // Up to where the file was when a hold ran out, what is read
            // goes as it is, however many reads it takes (a record longer
            // than a read comes back through `read_through`).
            let quiet = of.quiet_end.is_some_and(|end| of.read_offset <= end);
            if !quiet {
                of.quiet_end = None;
            }
            let open_end = !filled && whole && !quiet && of.orphan_since.is_none();
            if src.emit(lines, cut, open_end, out, &mut self.totals) {
                self.dirty = true;
            }
            if idle_close {
                tracing::debug!(source = %src.id, path = %src.path.display(), "closing idle file");
                src.open = None;
            }
        }
    }
}

impl Source {
    fn from_entry(e: Entry) -> Source {
        let mut replay: Vec<u64> = e
            .unacked_ends
            .into_iter()
            .filter(|&end| end > e.acked_offset)
            .collect();
        replay.sort_unstable();
        replay.dedup();
        let mut stats = SourceStats::empty(&e.source_id);
        stats.acked_offset = e.acked_offset;
        Source {
            id: e.source_id,
            fp: Fingerprint {
                hash: e.fingerprint_hash,
                len: e.fingerprint_len,
            },
            hint: e.dev.zip(e.ino),
            path: e.path,
            acked: e.acked_offset,
            emitted: e.acked_offset,
            pending: VecDeque::new(),
            replay: replay.into(),
            last_seen: e.last_seen,
            open: None,
            stash: None,
            read_through: None,
            chunk_bytes: 0,
            stats,
        }
    }

    fn to_entry(&self) -> Entry {
        Entry {
            source_id: self.id.clone(),
            fingerprint_hash: self.fp.hash,
            fingerprint_len: self.fp.len,
            dev: self.hint.map(|h| h.0),
            ino: self.hint.map(|h| h.1),
            path: self.path.clone(),
            acked_offset: self.acked,
            unacked_ends: self
                .pending
                .iter()
                .map(|p| p.0)
                .chain(self.replay.iter().copied())
                .collect(),
            last_seen: self.last_seen,
        }
    }

    /// Turns `lines` into the next chunk of this source. Returns whether a
    /// chunk was made.
    fn emit(
        &mut self,
        lines: Lines,
        cut: bool,
        open_end: bool,
        out: &mut Vec<Chunk>,
        totals: &mut TailStats,
    ) -> bool {
        if lines.is_empty() {
            return false;
        }
        let start = self.emitted;
        let end = start + lines.file_bytes;
        self.emitted = end;
        self.pending.push_back((end, false));
        while self.replay.front().is_some_and(|&b| b <= end) {
            self.replay.pop_front();
        }
        let n = lines.spans.len() as u64;
        for s in [&mut self.stats.lines, &mut totals.lines] {
            *s += n;
        }
        for s in [&mut self.stats.bytes_read, &mut totals.bytes_read] {
            *s += lines.file_bytes;
        }
        for s in [&mut self.stats.cut_lines, &mut totals.cut_lines] {
            *s += lines.cut;
        }
        for s in [&mut self.stats.flushed_lines, &mut totals.flushed_lines] {
            *s += lines.flushed;
        }
        out.push(Chunk {
            source_id: self.id.clone(),
            path: self.path.clone(),
            start_offset: start,
            end_offset: end,
            cut_lines: lines.cut,
            flushed_lines: lines.flushed,
            data: lines.data,
            used: lines.used,
            spans: lines.spans,
            cut,
            open_end,
        });
        true
    }

    /// Closes the file for good: it was truncated, overwritten or let go.
    /// A pending partial line is set aside rather than emitted: when a copy
    /// of the file takes over the identity in the same scan (copytruncate),
    /// reading resumes at `emitted` and the line is read whole from the
    /// copy; otherwise the scan's end emits it as it is.
    fn detach(&mut self) {
        if let Some(of) = self.open.take()
            && of.asm.pending() > 0
        {
            self.stash = Some(of.asm);
        }
    }

    /// Emits the line set aside by [`detach`](Source::detach), if no file
    /// took over in the meantime.
    fn flush_stash(&mut self, out: &mut Vec<Chunk>, totals: &mut TailStats) -> bool {
        let Some(mut asm) = self.stash.take() else {
            return false;
        };
        if self.open.is_some() {
            return false;
        }
        let mut lines = Lines::default();
        asm.flush(&mut lines);
        self.emit(lines, false, false, out, totals)
    }
}

/// Read buffers to reuse: clearing or allocating one per read would cost
/// about what copying the lines out of a single one did.
struct Buffers {
    kept: Vec<Vec<u8>>,
    /// The lengths worth keeping: a buffer shorter than a read would have
    /// to grow again, one grown by a long replay holds too much.
    sizes: std::ops::RangeInclusive<usize>,
}

/// Most buffers kept: one per chunk a caller typically holds at once.
const MAX_KEPT_BUFFERS: usize = 4;

impl Buffers {
    fn take(&mut self) -> Vec<u8> {
        self.kept.pop().unwrap_or_default()
    }

    fn give(&mut self, buf: Vec<u8>) {
        if self.kept.len() < MAX_KEPT_BUFFERS && self.sizes.contains(&buf.len()) {
            self.kept.push(buf);
        }
    }
}

impl OpenFile {
    fn new(
        file: File,
        key: (u64, u64),
        offset: u64,
        max_line: usize,
        generation: u64,
        now: Instant,
    ) -> OpenFile {
        OpenFile {
            file,
            key,
            read_offset: offset,
            asm: LineAssembler::new(max_line),
            verified: generation,
            orphan_since: None,
            active_at: now,
            held: None,
            quiet_end: None,
        }
    }
}

impl SourceStats {
    fn empty(id: &str) -> SourceStats {
        SourceStats {
            source_id: id.to_owned(),
            path: PathBuf::new(),
            open: false,
            emitted_offset: 0,
            acked_offset: 0,
            bytes_read: 0,
            lines: 0,
            cut_lines: 0,
            flushed_lines: 0,
            bytes_given_up: 0,
        }
    }
}

/// A source id: the configured name, the fingerprint when first seen (for
/// people matching ids to files) and a random part, so that a file
/// overwritten with the same first bytes, which must count as new, never
/// reuses an id the collector has already seen.
fn new_source_id(name: &str, fp: Fingerprint) -> String {
    let salt: u32 = rand::random();
    if name.is_empty() {
        format!("{:016x}-{salt:08x}", fp.hash)
    } else {
        format!("{name}-{:016x}-{salt:08x}", fp.hash)
    }
}

/// Where to start in a file read from its end: after its last newline, so
/// the first line handed out is whole. Falls back to the end when the last
/// `window` bytes hold no newline.
fn end_of_last_line(file: &File, size: u64, window: usize) -> u64 {
    let from = size.saturating_sub(window as u64);
    let mut tail = vec![0; (size - from) as usize];
    match file.read_exact_at(&mut tail, from) {
        Ok(()) => match tail.iter().rposition(|&b| b == b'\n') {
            Some(i) => from + i as u64 + 1,
            None => size,
        },
        Err(_) => size,
    }
}
