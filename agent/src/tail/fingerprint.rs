//! A file's identity: a hash of its first bytes, together with how many
//! bytes were hashed.
//!
//! Recording the length is what lets a file shorter than the configured
//! fingerprint size be read at once: its identity is the hash of all the
//! bytes it had when first seen, and once it grows the same prefix is
//! re-hashed to recognise it, after which the recorded fingerprint is
//! extended so that later comparisons look at more bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use xxhash_rust::xxh3::xxh3_64;

/// The hash of the first `len` bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// xxh3-64 of the prefix.
    pub(crate) hash: u64,
    /// How many bytes the hash covers; never zero for a known file.
    pub(crate) len: u64,
}

impl Fingerprint {
    /// The fingerprint of all of `prefix`.
    pub(crate) fn of(prefix: &[u8]) -> Fingerprint {
        Fingerprint {
            hash: xxh3_64(prefix),
            len: prefix.len() as u64,
        }
    }

    /// Whether `prefix` (the first bytes of some file) starts with the bytes
    /// this fingerprint was taken from. A prefix shorter than the
    /// fingerprint never matches: files only shrink by truncation, and a
    /// truncated file is a new identity.
    pub(crate) fn matches(&self, prefix: &[u8]) -> bool {
        let len = self.len as usize;
        self.len > 0 && prefix.len() >= len && xxh3_64(&prefix[..len]) == self.hash
    }
}

/// Reads up to `max` bytes from the start of `file` (fewer only at end of
/// file), without moving any cursor: reading goes through positioned reads.
pub(crate) fn read_prefix(file: &File, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let mut got = 0;
    while got < max {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_prefix_matches_after_growth_but_not_before() {
        let fp = Fingerprint::of(b"abc\n");
        assert!(fp.matches(b"abc\n"));
        assert!(fp.matches(b"abc\ndef\n"));
        assert!(!fp.matches(b"abc"));
        assert!(!fp.matches(b"abd\nxyz\n"));
    }

    #[test]
    fn empty_fingerprint_matches_nothing() {
        assert!(!Fingerprint::of(b"").matches(b"anything"));
    }
}
