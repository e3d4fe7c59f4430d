//! Splitting a file's bytes into lines, with bounded memory.
//!
//! A [`LineAssembler`] belongs to one open file. It keeps at most
//! `max_line_bytes` of the line still waiting for its newline; the rest of
//! an over-long line is read, counted in the byte range and dropped, so a
//! file without newlines can never make the agent buffer without bound.
//! Complete lines go into a [`Lines`] accumulator, which becomes one
//! [`Chunk`](super::Chunk).

use std::time::{Duration, Instant};

/// Complete lines gathered for one chunk: contents back to back in `data`,
/// `ends[i]` the end of line `i` in `data`.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    pub(crate) data: Vec<u8>,
    pub(crate) ends: Vec<usize>,
    /// Lines whose content was cut to `max_line_bytes`.
    pub(crate) cut: u64,
    /// Lines emitted without a newline because they waited too long (or
    /// their file went away).
    pub(crate) flushed: u64,
    /// File bytes these lines cover, newlines included.
    pub(crate) file_bytes: u64,
}

impl Lines {
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Adds a line: `kept` is its content (possibly already shortened),
    /// `content_len` its true length, `file_bytes` what it occupies in the
    /// file.
    fn push(&mut self, kept: &[u8], content_len: u64, file_bytes: u64, max: usize) {
        let cut = content_len > max as u64;
        let mut kept = &kept[..kept.len().min(max)];
        if cut {
            self.cut += 1;
        } else if let [head @ .., b'\r'] = kept {
            // CRLF files: the carriage return belongs to the terminator.
            kept = head;
        }
        self.data.extend_from_slice(kept);
        self.ends.push(self.data.len());
        self.file_bytes += file_bytes;
    }
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

    /// Splits `bytes` (the next bytes of the file) into lines.
    pub(crate) fn push(&mut self, bytes: &[u8], now: Instant, out: &mut Lines) {
        // One allocation for the read instead of doubling line by line.
        out.data.reserve(bytes.len());
        let mut rest = bytes;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let seg = &rest[..i];
            if self.pending == 0 {
                // The common case: the whole line is in this read, copy once.
                out.push(seg, i as u64, i as u64 + 1, self.max_line);
            } else {
                self.append(seg);
                let len = self.pending;
                out.push(&self.kept, len, len + 1, self.max_line);
                self.reset();
            }
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() {
            self.append(rest);
            self.last_growth = Some(now);
        }
    }

    /// Emits the pending line as it is, without a newline. Returns whether
    /// there was one.
    pub(crate) fn flush(&mut self, out: &mut Lines) -> bool {
        if self.pending == 0 {
            return false;
        }
        let len = self.pending;
        out.push(&self.kept, len, len, self.max_line);
        out.flushed += 1;
        self.reset();
        true
    }

    /// When the pending line, if any, is due to be flushed.
    pub(crate) fn flush_deadline(&self, after: Duration) -> Option<Instant> {
        match (self.pending, self.last_growth) {
            (0, _) | (_, None) => None,
            (_, Some(t)) => Some(t + after),
        }
    }

    fn append(&mut self, seg: &[u8]) {
        let room = self.max_line.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&seg[..seg.len().min(room)]);
        self.pending += seg.len() as u64;
    }

    fn reset(&mut self) {
        self.kept.clear();
        self.pending = 0;
        self.last_growth = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(out: &Lines) -> Vec<&[u8]> {
        let mut start = 0;
        out.ends
            .iter()
            .map(|&end| {
                let l = &out.data[start..end];
                start = end;
                l
            })
            .collect()
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
