//! The tailing layer against real files: appends, rotation by rename and by
//! copytruncate, truncation, deletion, restarts from checkpoints, and a
//! model-based test that every line written is counted exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use panorama_agent::tail::{Chunk, StartAt, TailConfig, Tailer};
use proptest::prelude::*;
use tempfile::TempDir;

/// A temp dir with `logs/` (what the globs see) and `state/` (checkpoint).
struct Env {
    dir: TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("logs")).unwrap();
        Env { dir }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    /// Deterministic defaults: a scan on every poll, timers far away, a
    /// checkpoint after every round that changed something.
    fn cfg(&self, glob: &str) -> TailConfig {
        let mut c = TailConfig::new("t", vec![self.log(glob).display().to_string()]);
        c.poll_interval = Duration::ZERO;
        c.partial_line_flush = Duration::from_secs(3600);
        c.max_open_deleted = Duration::from_secs(3600);
        c.close_idle_after = Duration::from_secs(3600);
        c.checkpoint_interval = Duration::ZERO;
        c.checkpoint_path = Some(self.dir.path().join("state/tail.json"));
        c
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn numbered(prefix: &str, range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("{prefix}{i:05} payload\n")).collect()
}

fn expected(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:05} payload")).collect()
}

fn text(chunks: &[Chunk]) -> Vec<String> {
    chunks
        .iter()
        .flat_map(|c| c.lines().map(|l| String::from_utf8_lossy(l).into_owned()))
        .collect()
}

/// Polls until nothing comes for a few rounds, acknowledging everything.
fn drain(t: &mut Tailer) -> Vec<Chunk> {
    let mut all = Vec::new();
    let mut quiet = 0;
    while quiet < 3 {
        let got = t.poll();
        if got.is_empty() {
            quiet += 1;
        }
        for c in &got {
            assert!(t.ack(&c.source_id, c.end_offset));
        }
        all.extend(got);
    }
    all
}

/// Chunks of each source follow each other without gap or overlap.
fn assert_contiguous(chunks: &[Chunk]) {
    let mut next: HashMap<&str, u64> = HashMap::new();
    for c in chunks {
        assert!(c.end_offset > c.start_offset, "{c:?}");
        if let Some(&n) = next.get(c.source_id.as_str()) {
            assert_eq!(c.start_offset, n, "gap or overlap in {}", c.source_id);
        }
        next.insert(&c.source_id, c.end_offset);
    }
}

fn sources(chunks: &[Chunk]) -> HashSet<String> {
    chunks.iter().map(|c| c.source_id.clone()).collect()
}

#[test]
fn append_then_read_in_contiguous_ranges() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, numbered("a", 0..500).as_bytes());
    let mut cfg = env.cfg("*.log");
    cfg.read_chunk_bytes = 1000;
    let mut t = Tailer::new(cfg).unwrap();
    let chunks = drain(&mut t);
    assert!(chunks.len() > 5, "small reads give several chunks");
    assert_contiguous(&chunks);
    assert_eq!(text(&chunks), expected("a", 0..500));
    assert_eq!(chunks[0].start_offset, 0);
    assert_eq!(
        chunks.last().unwrap().end_offset,
        fs::metadata(&path).unwrap().len()
    );

    append(&path, numbered("b", 0..3).as_bytes());
    let more = drain(&mut t);
    assert_eq!(more[0].start_offset, chunks.last().unwrap().end_offset);
    assert_eq!(text(&more), expected("b", 0..3));
    let st = t.stats();
    assert_eq!(st.lines, 503);
    assert_eq!(st.files_discovered, 1);
    assert_eq!(st.bytes_read, fs::metadata(&path).unwrap().len());
}

#[test]
fn partial_line_waits_for_newline_or_flush() {
    let env = Env::new();
    let path = env.log("app.log");
    let mut cfg = env.cfg("*.log");
    cfg.partial_line_flush = Duration::from_secs(5);
    let mut t = Tailer::new(cfg).unwrap();
    append(&path, b"first\nhal");
    let c = t.poll();
    assert_eq!(text(&c), ["first"]);
    assert_eq!(c[0].end_offset, 6);
    assert!(t.poll().is_empty(), "the partial line waits");
    append(&path, b"f done\nnever ");
    let c = t.poll();
    assert_eq!(text(&c), ["half done"]);
    assert_eq!((c[0].start_offset, c[0].end_offset), (6, 16));

    let now = Instant::now();
    assert!(t.poll_at(now + Duration::from_secs(1)).is_empty());
    append(&path, b"ends");
    let c = t.poll_at(now + Duration::from_secs(2));
    assert!(c.is_empty(), "growth restarts the wait");
    let c = t.poll_at(now + Duration::from_secs(8));
    assert_eq!(text(&c), ["never ends"]);
    assert_eq!((c[0].start_offset, c[0].end_offset), (16, 26));
    assert_eq!(c[0].flushed_lines, 1);
    assert_eq!(t.stats().flushed_lines, 1);
}

#[test]
fn rename_and_create_reads_every_line_once() {
    let env = Env::new();
    let path = env.log("access.log");
    append(&path, numbered("a", 0..10).as_bytes());
    let mut t = Tailer::new(env.cfg("access.log*")).unwrap();
    let mut chunks = drain(&mut t);
    // Written after the last read, then rotated away.
    append(&path, numbered("a", 10..15).as_bytes());
    fs::rename(&path, env.log("access.log.1")).unwrap();
    append(&path, numbered("b", 0..5).as_bytes());
    chunks.extend(drain(&mut t));
    assert_contiguous(&chunks);
    let mut got = text(&chunks);
    got.sort();
    let mut want = expected("a", 0..15);
    want.extend(expected("b", 0..5));
    assert_eq!(got, want);
    // The rotated file kept its identity.
    let a_ids = sources(&chunks[..1]);
    let a_tail: Vec<_> = chunks
        .iter()
        .filter(|c| text(std::slice::from_ref(c))[0].starts_with('a'))
        .collect();
    assert!(a_tail.iter().all(|c| a_ids.contains(&c.source_id)));
    assert_eq!(sources(&chunks).len(), 2);
    assert!(t.stats().rotations >= 1);
}

#[test]
fn renamed_out_of_the_glob_is_read_to_its_end() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, numbered("a", 0..10).as_bytes());
    let mut t = Tailer::new(env.cfg("app.log")).unwrap();
    let mut chunks = drain(&mut t);
    append(&path, numbered("a", 10..20).as_bytes());
    fs::rename(&path, env.log("app.log.old")).unwrap();
    // The writer has not reopened yet and still writes to the old file.
    append(&env.log("app.log.old"), numbered("a", 20..25).as_bytes());
    append(&path, numbered("b", 0..2).as_bytes());
    chunks.extend(drain(&mut t));
    assert_contiguous(&chunks);
    let mut got = text(&chunks);
    got.sort();
    let mut want = expected("a", 0..25);
    want.extend(expected("b", 0..2));
    assert_eq!(got, want);
    assert_eq!(t.stats().bytes_given_up, 0);
}

#[test]
fn copytruncate_reads_nothing_twice_and_loses_nothing() {
    let env = Env::new();
    let path = env.log("access.log");
    append(&path, numbered("a", 0..10).as_bytes());
    let mut cfg = env.cfg("access.log*");
    cfg.read_chunk_bytes = 100;
    let mut t = Tailer::new(cfg).unwrap();
    // Read only part of it.
    let mut chunks = t.poll();
    assert!(!chunks.is_empty());
    append(&path, numbered("a", 10..12).as_bytes());
    fs::copy(&path, env.log("access.log.1")).unwrap();
    // A scan between the copy and the truncate sees two files alike.
    chunks.extend(t.poll());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, numbered("b", 0..3).as_bytes());
    chunks.extend(drain(&mut t));
    assert_contiguous(&chunks);
    let mut got = text(&chunks);
    got.sort();
    let mut want = expected("a", 0..12);
    want.extend(expected("b", 0..3));
    assert_eq!(got, want);
    assert_eq!(sources(&chunks).len(), 2);
    assert_eq!(t.stats().truncations, 1);
}

#[test]
fn copytruncate_between_scans() {
    let env = Env::new();
    let path = env.log("access.log");
    append(&path, numbered("a", 0..10).as_bytes());
    let mut t = Tailer::new(env.cfg("access.log*")).unwrap();
    let mut chunks = drain(&mut t);
    append(&path, numbered("a", 10..40).as_bytes());
    fs::copy(&path, env.log("access.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    // More than was read before: only the first bytes tell it is new.
    append(&path, numbered("b", 0..30).as_bytes());
    chunks.extend(drain(&mut t));
    let mut got = text(&chunks);
    got.sort();
    let mut want = expected("a", 0..40);
    want.extend(expected("b", 0..30));
    assert_eq!(got, want);
}

#[test]
fn truncation_in_place_is_a_new_source_read_from_zero() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, numbered("a", 0..10).as_bytes());
    let mut t = Tailer::new(env.cfg("app.log")).unwrap();
    let first = drain(&mut t);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, numbered("b", 0..2).as_bytes());
    let second = drain(&mut t);
    assert_eq!(text(&second), expected("b", 0..2));
    assert_eq!(second[0].start_offset, 0);
    assert_ne!(second[0].source_id, first[0].source_id);
    assert_eq!(t.stats().truncations, 1);
}

#[test]
fn small_file_is_read_at_once_and_not_again_when_it_grows() {
    let env = Env::new();
    let path = env.log("tiny.log");
    append(&path, b"x1\n");
    let mut t = Tailer::new(env.cfg("*.log")).unwrap();
    let a = drain(&mut t);
    assert_eq!(text(&a), ["x1"]);
    append(&path, numbered("x", 2..40).as_bytes());
    let b = drain(&mut t);
    assert_eq!(text(&b), expected("x", 2..40));
    assert_eq!(b[0].source_id, a[0].source_id);
    assert_eq!(b[0].start_offset, 3);
    assert_eq!(t.stats().sources.len(), 1);
    // Also across a restart, once the fingerprint was extended.
    t.checkpoint().unwrap();
    drop(t);
    append(&path, b"x99\n");
    let mut t = Tailer::new(env.cfg("*.log")).unwrap();
    let c = drain(&mut t);
    assert_eq!(text(&c), ["x99"]);
    assert_eq!(c[0].source_id, a[0].source_id);
}

#[test]
fn restart_resumes_at_the_acknowledged_offset_with_the_same_ranges() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, numbered("a", 0..50).as_bytes());
    let mut cfg = env.cfg("app.log");
    cfg.read_chunk_bytes = 200;
    let mut t = Tailer::new(cfg.clone()).unwrap();
    let mut chunks = Vec::new();
    for _ in 0..10 {
        chunks.extend(t.poll());
    }
    assert!(chunks.len() >= 4, "{} chunks", chunks.len());
    // Acknowledge the first two, and the fourth out of order.
    assert!(t.ack(&chunks[0].source_id, chunks[0].end_offset));
    assert!(t.ack(&chunks[1].source_id, chunks[1].end_offset));
    assert!(t.ack(&chunks[3].source_id, chunks[3].end_offset));
    assert!(!t.ack(&chunks[0].source_id, 12345), "never handed out");
    let id = chunks[0].source_id.clone();
    assert_eq!(t.acked_offset(&id), Some(chunks[1].end_offset));
    t.checkpoint().unwrap();
    drop(t);

    let mut t = Tailer::new(cfg).unwrap();
    let again = drain(&mut t);
    assert_eq!(again[0].source_id, id);
    assert_eq!(again[0].start_offset, chunks[1].end_offset);
    // The ranges handed out before are repeated exactly.
    for (old, new) in chunks[2..].iter().zip(&again) {
        assert_eq!(
            (old.start_offset, old.end_offset),
            (new.start_offset, new.end_offset)
        );
    }
    let mut got = text(&chunks[..2]);
    got.extend(text(&again));
    assert_eq!(got, expected("a", 0..50));
}

#[test]
fn crash_without_explicit_checkpoint_resends_from_last_ack() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, numbered("a", 0..20).as_bytes());
    let mut cfg = env.cfg("app.log");
    cfg.read_chunk_bytes = 150;
    let mut t = Tailer::new(cfg.clone()).unwrap();
    let first = t.poll();
    t.ack(&first[0].source_id, first[0].end_offset);
    let second = t.poll(); // writes the checkpoint with the ack above
    t.ack(&second[0].source_id, second[0].end_offset); // never persisted
    drop(t); // "kill -9"
    let mut t = Tailer::new(cfg).unwrap();
    let again = drain(&mut t);
    assert_eq!(again[0].start_offset, first[0].end_offset);
    assert_eq!(again[0].end_offset, second[0].end_offset);
}

#[test]
fn file_replaced_while_down_is_a_new_source() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, numbered("a", 0..20).as_bytes());
    let mut t = Tailer::new(env.cfg("app.log")).unwrap();
    let old = drain(&mut t);
    t.checkpoint().unwrap();
    drop(t);
    // Same path, likely the same inode, shorter new content.
    fs::write(&path, numbered("b", 0..3)).unwrap();
    let mut t = Tailer::new(env.cfg("app.log")).unwrap();
    let new = drain(&mut t);
    assert_eq!(text(&new), expected("b", 0..3));
    assert_eq!(new[0].start_offset, 0);
    assert_ne!(new[0].source_id, old[0].source_id);
    t.checkpoint().unwrap();
    drop(t);
    // Removed and recreated, longer than before.
    fs::remove_file(&path).unwrap();
    append(&path, numbered("c", 0..40).as_bytes());
    let mut t = Tailer::new(env.cfg("app.log")).unwrap();
    let newer = drain(&mut t);
    assert_eq!(text(&newer), expected("c", 0..40));
    assert_eq!(newer[0].start_offset, 0);
}

#[test]
fn rotated_while_down_resumes_the_old_file_under_its_new_name() {
    let env = Env::new();
    let path = env.log("access.log");
    append(&path, numbered("a", 0..10).as_bytes());
    let mut t = Tailer::new(env.cfg("access.log*")).unwrap();
    let old = drain(&mut t);
    t.checkpoint().unwrap();
    drop(t);
    append(&path, numbered("a", 10..12).as_bytes());
    fs::rename(&path, env.log("access.log.1")).unwrap();
    append(&path, numbered("b", 0..2).as_bytes());
    let mut t = Tailer::new(env.cfg("access.log*")).unwrap();
    let new = drain(&mut t);
    let mut got = text(&new);
    got.sort();
    let mut want = expected("a", 10..12);
    want.extend(expected("b", 0..2));
    assert_eq!(got, want);
    let resumed = new
        .iter()
        .find(|c| c.source_id == old[0].source_id)
        .unwrap();
    assert_eq!(resumed.start_offset, old.last().unwrap().end_offset);
}

#[test]
fn long_lines_are_cut_and_counted() {
    let env = Env::new();
    let path = env.log("app.log");
    let mut cfg = env.cfg("app.log");
    cfg.max_line_bytes = 16;
    cfg.read_chunk_bytes = 64;
    let mut t = Tailer::new(cfg).unwrap();
    let long = "z".repeat(1000);
    append(&path, format!("short\n{long}").as_bytes());
    // The long line takes many small reads; none completes it.
    let a: Vec<Chunk> = (0..40).flat_map(|_| t.poll()).collect();
    assert_eq!(text(&a), ["short"], "the long line is still open");
    append(&path, b"\nafter\n");
    let b = drain(&mut t);
    assert_eq!(text(&b), [&long[..16], "after"]);
    assert_eq!(b[0].cut_lines, 1);
    assert_eq!(b[0].start_offset, 6);
    assert_eq!(b.last().unwrap().end_offset, 6 + 1001 + 6);
    assert_eq!(t.stats().cut_lines, 1);
}

#[test]
fn invalid_utf8_passes_through() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, b"ok\n\xff\xfe\xc3(\r\nend\n");
    let mut t = Tailer::new(env.cfg("app.log")).unwrap();
    let c = drain(&mut t);
    let lines: Vec<&[u8]> = c.iter().flat_map(|c| c.lines()).collect();
    assert_eq!(lines, [&b"ok"[..], b"\xff\xfe\xc3(", b"end"]);
}

#[test]
fn text_lines_only_for_whole_text() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, "ok\nünï\r\nend\n".as_bytes());
    let mut t = Tailer::new(env.cfg("app.log")).unwrap();
    let c = drain(&mut t);
    let lines: Vec<&str> = c.iter().flat_map(|c| c.text_lines().unwrap()).collect();
    assert_eq!(lines, ["ok", "ünï", "end"]);

    let env = Env::new();
    let path = env.log("app.log");
    append(&path, b"ok\n\xff\xfe\n");
    let mut t = Tailer::new(env.cfg("app.log")).unwrap();
    assert!(drain(&mut t).iter().any(|c| c.text_lines().is_none()));

    // A line cut inside a character and a line of stray continuation
    // bytes make valid text back to back, but not as lines.
    let env = Env::new();
    let path = env.log("app.log");
    let mut cfg = env.cfg("app.log");
    cfg.max_line_bytes = 3;
    append(&path, b"aa\xc3\xa9\n\xa9b\n");
    let mut t = Tailer::new(cfg).unwrap();
    let c = drain(&mut t);
    assert_eq!(c.len(), 1);
    assert!(
        c[0].text_lines().is_none(),
        "{:?}",
        c[0].lines().collect::<Vec<_>>()
    );
}

#[test]
fn deleted_file_still_open_is_read_to_its_end() {
    let env = Env::new();
    let path = env.log("app.log");
    let mut writer = File::create(&path).unwrap();
    writer.write_all(numbered("a", 0..100).as_bytes()).unwrap();
    let mut cfg = env.cfg("app.log");
    cfg.read_chunk_bytes = 500;
    let mut t = Tailer::new(cfg).unwrap();
    let mut chunks = t.poll();
    fs::remove_file(&path).unwrap();
    // The application keeps writing to the deleted file.
    writer
        .write_all(numbered("a", 100..110).as_bytes())
        .unwrap();
    chunks.extend(drain(&mut t));
    assert_contiguous(&chunks);
    assert_eq!(text(&chunks), expected("a", 0..110));
    assert_eq!(t.stats().bytes_given_up, 0);
}

#[test]
fn deleted_file_let_go_early_counts_unread_bytes() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, numbered("a", 0..100).as_bytes());
    let mut cfg = env.cfg("app.log");
    cfg.read_chunk_bytes = 500;
    cfg.max_open_deleted = Duration::from_secs(10);
    let size = fs::metadata(&path).unwrap().len();
    let mut t = Tailer::new(cfg).unwrap();
    let now = Instant::now();
    let first = t.poll_at(now);
    let read = first[0].end_offset;
    fs::remove_file(&path).unwrap();
    let mut chunks = first;
    chunks.extend(t.poll_at(now)); // noticed: the clock starts
    // Letting go emits the partial line already read, and counts the rest.
    chunks.extend(t.poll_at(now + Duration::from_secs(11)));
    let got: u64 = chunks.iter().map(|c| c.end_offset - c.start_offset).sum();
    let st = t.stats();
    assert!(read < size);
    assert!(st.bytes_given_up > 0);
    assert_eq!(st.bytes_given_up, size - got);
    assert!(!st.sources[0].open);
}

#[test]
fn reading_stops_while_too_much_is_unacknowledged() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, numbered("a", 0..100).as_bytes());
    let mut cfg = env.cfg("app.log");
    cfg.read_chunk_bytes = 100;
    cfg.max_inflight_bytes_per_source = 300;
    let mut t = Tailer::new(cfg).unwrap();
    let mut chunks = Vec::new();
    for _ in 0..20 {
        chunks.extend(t.poll());
    }
    let out: u64 = chunks.iter().map(|c| c.end_offset - c.start_offset).sum();
    assert!(out <= 300, "{out} bytes in flight");
    assert!(t.poll().is_empty());
    let h = t.ack_handle();
    for c in &chunks {
        h.ack(c.source_id.clone(), c.end_offset);
    }
    let more = t.poll();
    assert_eq!(more[0].start_offset, chunks.last().unwrap().end_offset);
}

#[test]
fn start_at_end_skips_existing_content_only() {
    let env = Env::new();
    append(&env.log("old.log"), b"one\ntwo\nthr");
    let mut cfg = env.cfg("*.log");
    cfg.start_at = StartAt::End;
    let mut t = Tailer::new(cfg).unwrap();
    assert!(drain(&mut t).is_empty());
    append(&env.log("old.log"), b"ee\nfour\n");
    append(&env.log("new.log"), b"fresh\n");
    let mut got = text(&drain(&mut t));
    got.sort();
    assert_eq!(got, ["four", "fresh", "three"]);
}

#[test]
fn idle_files_are_closed_and_reopened_when_they_grow() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, b"one\n");
    let mut cfg = env.cfg("app.log");
    cfg.close_idle_after = Duration::ZERO;
    let mut t = Tailer::new(cfg).unwrap();
    let a = drain(&mut t);
    assert!(!t.stats().sources[0].open);
    append(&path, b"two\n");
    let b = drain(&mut t);
    assert_eq!(text(&b), ["two"]);
    assert_eq!(b[0].source_id, a[0].source_id);
}

#[tokio::test]
async fn events_wake_the_tailer_before_the_poll_interval() {
    let env = Env::new();
    let mut cfg = env.cfg("*.log");
    cfg.poll_interval = Duration::from_secs(30);
    let mut t = Tailer::new(cfg).unwrap();
    assert!(t.poll().is_empty());
    let path = env.log("app.log");
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(&path, b"hello\n");
    });
    let chunks = tokio::time::timeout(Duration::from_secs(10), t.next_chunks())
        .await
        .expect("a create event wakes the tailer");
    assert_eq!(text(&chunks), ["hello"]);
    writer.await.unwrap();
}

/// A file that exists but is not open (empty when scanned, or closed while
/// idle) is found by the write's event, not by the next scan: on a quiet
/// log that was the first line's whole latency (up to `poll_interval`).
#[tokio::test]
async fn a_write_to_a_file_not_open_is_read_before_the_poll_interval() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, b"");
    let mut cfg = env.cfg("*.log");
    cfg.poll_interval = Duration::from_secs(60);
    cfg.close_idle_after = Duration::ZERO;
    let mut t = Tailer::new(cfg).unwrap();
    assert!(t.poll().is_empty(), "empty: nothing to identify it by yet");
    assert!(t.stats().sources.is_empty());
    for (i, line) in ["first", "after idle"].into_iter().enumerate() {
        let p = path.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            append(&p, format!("{line}\n").as_bytes());
        });
        let chunks = tokio::time::timeout(Duration::from_secs(10), t.next_chunks())
            .await
            .unwrap_or_else(|_| panic!("write {i} not seen within 10 s (scans every 60 s)"));
        assert_eq!(text(&chunks), [line]);
        writer.await.unwrap();
        for c in chunks {
            t.ack(&c.source_id, c.end_offset);
        }
        // Idle at its end: closed at the next round (close_idle_after = 0).
        assert!(t.poll().is_empty());
        assert!(!t.stats().sources[0].open, "closed while idle");
    }
    // Writes to a file beside them that the globs do not match wake the
    // tailer but cost no scan.
    let other = env.log("other.txt");
    append(&other, b"");
    // Its creation asks for a scan (as any create, rename or removal does).
    let _ = tokio::time::timeout(Duration::from_millis(200), t.next_chunks()).await;
    let scans = t.stats().scans;
    for _ in 0..3 {
        append(&other, b"not ours\n");
        let _ = tokio::time::timeout(Duration::from_millis(200), t.next_chunks()).await;
    }
    assert_eq!(
        t.stats().scans,
        scans,
        "no scan for a file outside the globs"
    );
}

#[test]
fn bad_settings_are_refused() {
    let env = Env::new();
    let mut cfg = env.cfg("*.log");
    cfg.globs = vec!["/var/log/[".into()];
    assert!(Tailer::new(cfg).is_err());
    let mut cfg = env.cfg("*.log");
    cfg.max_line_bytes = 0;
    assert!(Tailer::new(cfg).is_err());
}

// ---- model-based test -------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Append this many new lines to `access.log`.
    Append(u8),
    /// Start a line without finishing it; the next append completes it.
    AppendPartial,
    /// Let the tailer read everything, then delete the oldest rotated file.
    DrainDeleteRotated,
    /// `access.log` → `access.log.N`; the next append creates a new file.
    Rename,
    /// Copy `access.log` to `access.log.N`, truncate the original.
    CopyTruncate,
    /// Let the tailer read everything, then truncate `access.log` in place
    /// (truncating unread lines would lose them, by design).
    DrainTruncate,
    /// A few rounds; then acknowledge the chunks selected by the mask.
    Poll { rounds: u8, ack_mask: u64 },
    /// Drop the tailer (after writing the checkpoint when `clean`) and start
    /// a new one.
    Restart { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..6).prop_map(Op::Append),
        1 => Just(Op::AppendPartial),
        1 => Just(Op::DrainDeleteRotated),
        1 => Just(Op::Rename),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::DrainTruncate),
        4 => (1u8..4, any::<u64>()).prop_map(|(rounds, ack_mask)| Op::Poll { rounds, ack_mask }),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

/// The collector as the contract describes it: a range it already holds is
/// dropped, a range that overlaps one it holds without being it would be
/// double-counted and fails the test.
#[derive(Default)]
struct Collector {
    ranges: HashMap<String, BTreeMap<u64, (u64, Vec<String>)>>,
    counted: Vec<String>,
}

impl Collector {
    fn receive(&mut self, c: &Chunk) {
        let held = self.ranges.entry(c.source_id.clone()).or_default();
        let lines = text(std::slice::from_ref(c));
        if let Some((end, old)) = held.get(&c.start_offset)
            && *end == c.end_offset
        {
            assert_eq!(*old, lines, "a resent range must carry the same lines");
            return;
        }
        for (&s, (e, _)) in held.iter() {
            assert!(
                c.end_offset <= s || c.start_offset >= *e,
                "range [{}, {}) overlaps [{s}, {e}) of {}",
                c.start_offset,
                c.end_offset,
                c.source_id
            );
        }
        held.insert(c.start_offset, (c.end_offset, lines.clone()));
        self.counted.extend(lines);
    }
}

struct Model {
    env: Env,
    cfg: TailConfig,
    tailer: Option<Tailer>,
    written: Vec<String>,
    seq: u32,
    rotations: u32,
    /// The line started by `AppendPartial`, not finished yet.
    partial: Option<String>,
    collector: Collector,
    /// Chunks handed out by the current tailer and not acknowledged.
    unacked: Vec<(String, u64)>,
    /// Where each source must continue: the end of its last chunk, or after
    /// a restart the acknowledged offset the checkpoint holds.
    next_start: HashMap<String, u64>,
    /// Acknowledged offsets as the checkpoint holds them.
    persisted: HashMap<String, u64>,
}

impl Model {
    fn tailer(&mut self) -> &mut Tailer {
        self.tailer.as_mut().unwrap()
    }

    fn snapshot_acks(&mut self) -> HashMap<String, u64> {
        let st = self.tailer().stats();
        st.sources
            .into_iter()
            .map(|s| (s.source_id, s.acked_offset))
            .collect()
    }

    fn poll(&mut self) -> usize {
        // `poll` applies earlier acks and then writes the checkpoint.
        let acks = self.snapshot_acks();
        let chunks = self.tailer().poll();
        self.persisted = acks;
        for c in &chunks {
            let want = self.next_start.get(&c.source_id).copied().unwrap_or(0);
            assert_eq!(
                c.start_offset, want,
                "chunk of {} out of place",
                c.source_id
            );
            self.next_start.insert(c.source_id.clone(), c.end_offset);
            self.collector.receive(c);
            self.unacked.push((c.source_id.clone(), c.end_offset));
        }
        chunks.len()
    }

    fn ack_all(&mut self) {
        let t = self.tailer.as_mut().unwrap();
        for (id, end) in self.unacked.drain(..) {
            assert!(t.ack(&id, end));
        }
    }

    fn drain(&mut self) {
        let mut quiet = 0;
        while quiet < 3 {
            if self.poll() == 0 {
                quiet += 1;
            }
            self.ack_all();
        }
    }

    fn new_line(&mut self) -> String {
        // Unique leading bytes: files are told apart by them.
        let line = format!("L{:06} {}", self.seq, "x".repeat(self.seq as usize % 17));
        self.seq += 1;
        line
    }

    /// Finishes the pending partial line, so that rotations and
    /// truncations never split one (a split line is two lines to anyone).
    fn finish_partial(&mut self) {
        if let Some(line) = self.partial.take() {
            let rest = &line[line.len() / 2..];
            append(&self.env.log("access.log"), format!("{rest}\n").as_bytes());
            self.written.push(line);
        }
    }

    fn apply(&mut self, op: Op) {
        let path = self.env.log("access.log");
        if !matches!(op, Op::Append(_) | Op::Poll { .. } | Op::Restart { .. }) {
            self.finish_partial();
        }
        match op {
            Op::AppendPartial => {
                let line = self.new_line();
                append(&path, &line.as_bytes()[..line.len() / 2]);
                self.partial = Some(line);
            }
            Op::DrainDeleteRotated => {
                self.drain();
                let oldest = (1..=self.rotations)
                    .map(|i| self.env.log(&format!("access.log.{i}")))
                    .find(|p| p.exists());
                if let Some(p) = oldest {
                    fs::remove_file(p).unwrap();
                }
            }
            Op::Append(n) => {
                self.finish_partial();
                let mut s = String::new();
                for _ in 0..n {
                    let line = self.new_line();
                    s.push_str(&line);
                    s.push('\n');
                    self.written.push(line);
                }
                append(&path, s.as_bytes());
            }
            Op::Rename if path.exists() => {
                self.rotations += 1;
                fs::rename(
                    &path,
                    self.env.log(&format!("access.log.{}", self.rotations)),
                )
                .unwrap();
            }
            Op::CopyTruncate if path.exists() => {
                self.rotations += 1;
                fs::copy(
                    &path,
                    self.env.log(&format!("access.log.{}", self.rotations)),
                )
                .unwrap();
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            Op::DrainTruncate if path.exists() => {
                self.drain();
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            Op::Rename | Op::CopyTruncate | Op::DrainTruncate => {}
            Op::Poll { rounds, ack_mask } => {
                for _ in 0..rounds {
                    self.poll();
                }
                let t = self.tailer.as_mut().unwrap();
                let mut keep = Vec::new();
                for (i, (id, end)) in self.unacked.drain(..).enumerate() {
                    if ack_mask >> (i % 64) & 1 == 1 {
                        assert!(t.ack(&id, end));
                    } else {
                        keep.push((id, end));
                    }
                }
                self.unacked = keep;
            }
            Op::Restart { clean } => {
                if clean {
                    self.persisted = self.snapshot_acks();
                    self.tailer().checkpoint().unwrap();
                }
                self.tailer = None;
                self.unacked.clear();
                self.next_start = self.persisted.clone();
                self.tailer = Some(Tailer::new(self.cfg.clone()).unwrap());
            }
        }
    }
}

fn run_model(ops: Vec<Op>, read_chunk: usize, inflight: u64, close_idle: bool) {
    let env = Env::new();
    let mut cfg = env.cfg("access.log*");
    cfg.read_chunk_bytes = read_chunk;
    cfg.max_inflight_bytes_per_source = inflight;
    if close_idle {
        cfg.close_idle_after = Duration::ZERO;
    }
    let tailer = Some(Tailer::new(cfg.clone()).unwrap());
    let mut m = Model {
        env,
        cfg,
        tailer,
        written: Vec::new(),
        seq: 0,
        rotations: 0,
        partial: None,
        collector: Collector::default(),
        unacked: Vec::new(),
        next_start: HashMap::new(),
        persisted: HashMap::new(),
    };
    for op in ops {
        m.apply(op);
    }
    m.finish_partial();
    m.drain();
    let mut counted = m.collector.counted.clone();
    counted.sort();
    let mut written = m.written.clone();
    written.sort();
    assert_eq!(counted, written, "every line counted exactly once");
}

/// What a consumer sees of one chunk: its byte range, cut lines, lines, and
/// the lines as text if they came as text.
type Seen = (u64, u64, u64, Vec<Vec<u8>>, Option<Vec<String>>);

/// Everything a consumer sees of the chunks of a file read to its end.
/// With `recycle`, every chunk goes back to the tailer once read, so that
/// the next reads reuse its buffer, stale bytes and all. With `flush`, a
/// last line without newline is emitted at once instead of waiting.
fn read_all(
    content: &[u8],
    max_line: usize,
    read_chunk: usize,
    flush: bool,
    recycle: bool,
) -> Vec<Seen> {
    let env = Env::new();
    append(&env.log("app.log"), content);
    let mut cfg = env.cfg("app.log");
    cfg.max_line_bytes = max_line;
    cfg.read_chunk_bytes = read_chunk;
    if flush {
        cfg.partial_line_flush = Duration::ZERO;
    }
    let mut t = Tailer::new(cfg).unwrap();
    let mut seen = Vec::new();
    let mut quiet = 0;
    while quiet < 3 {
        let got = t.poll();
        if got.is_empty() {
            quiet += 1;
        }
        for c in got {
            assert!(t.ack(&c.source_id, c.end_offset));
            let lines = c.lines().map(<[u8]>::to_vec).collect();
            let text = c
                .text_lines()
                .map(|l| l.map(str::to_owned).collect::<Vec<_>>());
            seen.push((c.start_offset, c.end_offset, c.cut_lines, lines, text));
            if recycle {
                t.recycle(c);
            }
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn recycled_buffers_read_the_same_lines(
        lines in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'\r'), Just(0xc3), Just(0xa9), Just(0xff)],
                0..40,
            ),
            0..60,
        ),
        newline_at_end in any::<bool>(),
        max_line in 1usize..30,
        read_chunk in 1usize..90,
        flush in any::<bool>(),
    ) {
        let mut content = lines.join(&b'\n');
        if newline_at_end {
            content.push(b'\n');
        }
        let fresh = read_all(&content, max_line, read_chunk, flush, false);
        let recycled = read_all(&content, max_line, read_chunk, flush, true);
        prop_assert_eq!(fresh, recycled);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_line_is_counted_exactly_once(
        ops in proptest::collection::vec(op(), 1..40),
        read_chunk in 20usize..400,
        inflight in 200u64..2000,
        close_idle in any::<bool>(),
    ) {
        run_model(ops, read_chunk, inflight, close_idle);
    }
}

/// A backlog is read in chunks that double up to `max_read_chunk_bytes`;
/// once caught up, a live line comes in a chunk of its own at once.
#[test]
fn a_backlog_is_read_in_growing_chunks_and_live_lines_in_small_ones() {
    let env = Env::new();
    let path = env.log("app.log");
    append(&path, numbered("a", 0..20_000).as_bytes());
    let mut cfg = env.cfg("app.log");
    cfg.read_chunk_bytes = 1_000;
    cfg.max_read_chunk_bytes = 16_000;
    cfg.max_inflight_bytes_per_source = u64::MAX / 4;
    cfg.max_inflight_bytes = u64::MAX / 4;
    let mut t = Tailer::new(cfg).unwrap();
    let chunks = drain(&mut t);
    assert_contiguous(&chunks);
    assert_eq!(text(&chunks), expected("a", 0..20_000));
    let sizes: Vec<u64> = chunks
        .iter()
        .map(|c| c.end_offset - c.start_offset)
        .collect();
    assert!(sizes[0] <= 1_000 && sizes.len() < 40, "{sizes:?}");
    let largest = *sizes.iter().max().unwrap();
    // A read's bytes plus the partial line the previous one left.
    assert!(largest > 8_000 && largest <= 16_000 + 15, "{sizes:?}");
    append(&path, b"live\n");
    let live = drain(&mut t);
    assert_eq!(text(&live), ["live"]);
    // The next backlog starts small again.
    append(&path, numbered("b", 0..2_000).as_bytes());
    let again = t.poll();
    assert!(again[0].end_offset - again[0].start_offset <= 1_000);
}
