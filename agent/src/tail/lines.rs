//! Splitting a file's bytes into lines, with bounded memory.
//!
//! A [`LineAssembler`] belongs to one open file. It keeps at most
//! `max_line_bytes` of the line still waiting for its newline; the rest of
//! an over-long line is read, counted in the byte range and dropped, so a
//! file without newlines can never make the agent buffer without bound.
//! Complete lines go into a [`Lines`] accumulator, which becomes one
//! [`Chunk`](super::Chunk).
//!
//! The file is read straight into the buffer the chunk hands out: lines are
//! spans of it, not copies. The pending line's first bytes are copied to
//! the front of the next buffer, so that a line is always in one piece.

use std::time::{Duration, Instant};

/// Complete lines gathered for one chunk: line `i` is
/// `data[spans[i].0..spans[i].1]`.
///
/// `data` holds the bytes read, with their newlines (and the part of
/// over-long lines past the cut, and carriage returns), none of which is in
/// a span; every byte of `data[..used]` belongs to a complete line. Bytes
/// past `used` mean nothing: they are left as they are so that a buffer can
/// be read into again without clearing it.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    pub(crate) data: Vec<u8>,
    pub(crate) used: usize,
    pub(crate) spans: Vec<(usize, usize)>,
    /// Lines whose content was cut to `max_line_bytes`.
    pub(crate) cut: u64,
    /// Lines emitted without a newline because they waited too long (or
    /// their file went away).
    pub(crate) flushed: u64,
    /// File bytes these lines cover, newlines included.
    pub(crate) file_bytes: u64,
}

impl Lines {
    /// No lines yet, to be read into `buf` (whatever it holds).
    pub(crate) fn with_buffer(buf: Vec<u8>) -> Lines {
        Lines {
            data: buf,
            ..Lines::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// `data[used..used + n]`, growing `data` if it is shorter.
    fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.used + n;
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        &mut self.data[self.used..end]
    }
}

/// Adds the line that starts at `start` in `data` and whose bytes there end
/// at `end` (its newline, or the end of what was read of it): `len` is its
/// true length, `file_bytes` what it occupies in the file. Only the first
/// `max` bytes are kept (a field-by-field borrow of [`Lines`], so that the
/// caller can search `data` meanwhile).
#[inline]
fn push_line(
    spans: &mut Vec<(usize, usize)>,
    data: &[u8],
    (start, end): (usize, usize),
    (len, file_bytes): (u64, u64),
    max: usize,
    counts: (&mut u64, &mut u64),
) {
    let (cut, total) = counts;
    let mut kept_end = start + (end - start).min(max);
    if len > max as u64 {
        *cut += 1;
    } else if kept_end > start && data[kept_end - 1] == b'\r' {
        // CRLF files: the carriage return belongs to the terminator.
        kept_end -= 1;
    }
    spans.push((start, kept_end));
    *total += file_bytes;
}

/// The line of one file that is still waiting for its newline.
#[derive(Debug)]
pub(crate) struct LineAssembler {
    max_line: usize,
    /// The first `max_line` bytes of the pending line.
    kept: Vec<u8>,
    /// Bytes of the pending line read so far (all of them, kept or not).
    pending: u64,
    /// When the pending line last grew.
    last_growth: Option<Instant>,
}

impl LineAssembler {
    pub(crate) fn new(max_line: usize) -> LineAssembler {
        LineAssembler {
            max_line,
            kept: Vec::new(),
            pending: 0,
            last_growth: None,
        }
    }

    /// Bytes read but not yet part of a complete line.
    pub(crate) fn pending(&self) -> u64 {
        self.pending
    }

    /// Room to read up to `n` bytes of the file into, in `out`'s buffer
    /// right after a copy of the pending line's kept bytes; then call
    /// [`commit`](LineAssembler::commit) with what was read.
    pub(crate) fn room<'a>(&self, out: &'a mut Lines, n: usize) -> &'a mut [u8] {
        let k = self.kept.len();
        let room = out.room(k + n);
        room[..k].copy_from_slice(&self.kept);
        &mut room[k..]
    }

    /// Splits the `n` bytes just read into the [`room`](LineAssembler::room)
    /// into lines.
    pub(crate) fn commit(&mut self, out: &mut Lines, n: usize, now: Instant) {
        if n == 0 {
            return;
        }
        let Lines {
            data,
            used,
            spans,
            cut,
            file_bytes,
            ..
        } = out;
        let k = self.kept.len();
        let base = *used;
        let end = base + k + n;
        // What the first line lost past the cut before this read: it is
        // not in `data`, and counts all the same.
        let mut dropped = self.pending - k as u64;
        let mut start = base;
        for i in memchr::memchr_iter(b'\n', &data[base + k..end]) {
            let nl = base + k + i;
            let len = dropped + (nl - start) as u64;
            push_line(
                spans,
                data,
                (start, nl),
                (len, len + 1),
                self.max_line,
                (cut, file_bytes),
            );
            dropped = 0;
            start = nl + 1;
        }
        // The rest waits for its newline.
        let rest = end - start;
        self.pending = dropped + rest as u64;
        self.kept.clear();
        self.kept
            .extend_from_slice(&data[start..start + rest.min(self.max_line)]);
        self.last_growth = (rest > 0).then_some(now);
        *used = start;
    }

    /// Emits the pending line as it is, without a newline. Returns whether
    /// there was one.
    pub(crate) fn flush(&mut self, out: &mut Lines) -> bool {
        if self.pending == 0 {
            return false;
        }
        let k = self.kept.len();
        out.room(k).copy_from_slice(&self.kept);
        let start = out.used;
        let len = self.pending;
        push_line(
            &mut out.spans,
            &out.data,
            (start, start + k),
            (len, len),
            self.max_line,
            (&mut out.cut, &mut out.file_bytes),
        );
        out.used += k;
        out.flushed += 1;
        self.kept.clear();
        self.pending = 0;
        self.last_growth = None;
        true
    }

    /// When the pending line, if any, is due to be flushed.
    pub(crate) fn flush_deadline(&self, after: Duration) -> Option<Instant> {
        match (self.pending, self.last_growth) {
            (0, _) | (_, None) => None,
            (_, Some(t)) => Some(t + after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl LineAssembler {
        /// Reads `bytes` as the file's next bytes.
        fn push(&mut self, bytes: &[u8], now: Instant, out: &mut Lines) {
            self.room(out, bytes.len()).copy_from_slice(bytes);
            self.commit(out, bytes.len(), now);
        }
    }

    fn lines(out: &Lines) -> Vec<&[u8]> {
        out.spans.iter().map(|&(s, e)| &out.data[s..e]).collect()
    }

    #[test]
    fn splits_across_reads_and_keeps_partial() {
        let now = Instant::now();
        let mut a = LineAssembler::new(100);
        let mut out = Lines::default();
        a.push(b"one\ntw", now, &mut out);
        assert_eq!(lines(&out), vec![&b"one"[..]]);
        assert_eq!(a.pending(), 2);
        a.push(b"o\r\nthree", now, &mut out);
        assert_eq!(lines(&out), vec![&b"one"[..], b"two"]);
        assert_eq!(out.file_bytes, 4 + 5);
        assert!(a.flush(&mut out));
        assert_eq!(lines(&out)[2], b"three");
        assert_eq!(out.file_bytes, 4 + 5 + 5);
        assert_eq!(out.flushed, 1);
        assert!(!a.flush(&mut out));
    }

    #[test]
    fn long_lines_are_cut_but_fully_counted() {
        let now = Instant::now();
        let mut a = LineAssembler::new(4);
        let mut out = Lines::default();
        a.push(b"abcdefgh\nxy", now, &mut out);
        a.push(b"zzzzzzzzzzzz", now, &mut out);
        assert_eq!(a.pending(), 14);
        assert_eq!(a.kept.len(), 4, "memory stays bounded");
        a.push(b"zz\nok\n", now, &mut out);
        assert_eq!(lines(&out), vec![&b"abcd"[..], b"xyzz", b"ok"]);
        assert_eq!(out.cut, 2);
        assert_eq!(out.file_bytes, 9 + 17 + 3);
    }

    #[test]
    fn invalid_utf8_is_just_bytes() {
        let mut a = LineAssembler::new(64);
        let mut out = Lines::default();
        a.push(b"\xff\xfe bad \xc3\x28\n", Instant::now(), &mut out);
        assert_eq!(lines(&out), vec![&b"\xff\xfe bad \xc3\x28"[..]]);
    }

    #[test]
    fn flush_deadline_follows_last_growth() {
        let t0 = Instant::now();
        let mut a = LineAssembler::new(64);
        let mut out = Lines::default();
        assert_eq!(a.flush_deadline(Duration::from_secs(5)), None);
        a.push(b"part", t0, &mut out);
        let t1 = t0 + Duration::from_secs(3);
        a.push(b"ial", t1, &mut out);
        assert_eq!(
            a.flush_deadline(Duration::from_secs(5)),
            Some(t1 + Duration::from_secs(5))
        );
    }
}
