//! Persisted read positions, keyed by file identity.
//!
//! One JSON file per [`Tailer`](super::Tailer):
//!
//! ```json
//! {
//!   "version": 1,
//!   "written_at": "2026-11-22T13:00:01.234Z",
//!   "sources": [
//!     {
//!       "source_id": "access-5f1c0a9e2b7d4c31-8e02d6aa",
//!       "fingerprint_hash": "9a3e51c07b2f88d4",
//!       "fingerprint_len": 256,
//!       "dev": 2049, "ino": 1311771,
//!       "path": "/var/log/nginx/access.log.1",
//!       "acked_offset": 1048576,
//!       "unacked_ends": [1310720, 1572864],
//!       "last_seen": "2026-11-22T13:00:01Z"
//!     }
//!   ]
//! }
//! ```
//!
//! - `fingerprint_*` is the identity: the xxh3-64 (hex) of the first
//!   `fingerprint_len` bytes. `dev`/`ino` are hints only (null once the
//!   inode is known to hold something else), `path` is where the file was
//!   last seen, for people reading the file.
//! - `acked_offset` only moves when the collector acknowledged every chunk
//!   before it, so it is where reading resumes after a restart.
//! - `unacked_ends` are the end offsets of chunks handed out but not yet
//!   acknowledged; after a restart the same bytes are cut at the same
//!   places, so a resend repeats exactly the ranges the collector may
//!   already hold.
//!
//! Written tmp → fsync → rename → fsync of the directory, so a crash at any
//! moment leaves either the previous or the new file, never a torn one. A
//! file with another `version` is refused rather than guessed at: starting
//! over would re-read (and, under new source ids, re-count) every log.

use std::fs;
use std::io;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TailError;

/// The format written by this code.
pub(crate) const VERSION: u32 = 1;

/// One known file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    pub(crate) source_id: String,
    #[serde(with = "hex_u64")]
    pub(crate) fingerprint_hash: u64,
    pub(crate) fingerprint_len: u64,
    pub(crate) dev: Option<u64>,
    pub(crate) ino: Option<u64>,
    pub(crate) path: PathBuf,
    pub(crate) acked_offset: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) unacked_ends: Vec<u64>,
    pub(crate) last_seen: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    version: u32,
    written_at: DateTime<Utc>,
    sources: Vec<Entry>,
}

/// Only the version, read first so that a future format is refused with a
/// clear message instead of a field error.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

/// Reads and writes one checkpoint file.
#[derive(Debug, Clone)]
pub(crate) struct Checkpointer {
    path: PathBuf,
}

impl Checkpointer {
    pub(crate) fn new(path: PathBuf) -> Checkpointer {
        Checkpointer { path }
    }

    /// The entries on disk; none if the file does not exist yet.
    pub(crate) fn load(&self) -> Result<Vec<Entry>, TailError> {
        let bad = |reason: String| TailError::Checkpoint {
            path: self.path.clone(),
            reason,
        };
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(bad(e.to_string())),
        };
        let v: VersionOnly = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if v.version != VERSION {
            return Err(bad(format!(
                "version {} is not supported (this agent writes version {VERSION})",
                v.version
            )));
        }
        let file: CheckpointFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        Ok(file.sources)
    }

    /// Replaces the file with `entries`, atomically and durably.
    pub(crate) fn store(&self, entries: Vec<Entry>) -> Result<(), TailError> {
        let file = CheckpointFile {
            version: VERSION,
            written_at: Utc::now(),
            sources: entries,
        };
        self.write(&file).map_err(|e| TailError::Checkpoint {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    fn write(&self, file: &CheckpointFile) -> io::Result<()> {
        let body = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
        panorama_durable::write_atomic(&self.path, &body)
    }
}

/// u64 as 16 hex digits: JSON readers that hold numbers in doubles would
/// round a 64-bit hash.
mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            source_id: "s-1".into(),
            fingerprint_hash: u64::MAX - 7,
            fingerprint_len: 12,
            dev: Some(1),
            ino: None,
            path: "/var/log/a.log".into(),
            acked_offset: 42,
            unacked_ends: vec![50, 60],
            last_seen: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::new(dir.path().join("sub/tail.json"));
        assert!(cp.load().unwrap().is_empty());
        cp.store(vec![entry()]).unwrap();
        assert_eq!(cp.load().unwrap(), vec![entry()]);
        assert!(!dir.path().join("sub/tail.json.tmp").exists());
        let text = fs::read_to_string(dir.path().join("sub/tail.json")).unwrap();
        assert!(text.contains("\"fingerprint_hash\": \"fffffffffffffff8\""));
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail.json");
        fs::write(&path, r#"{"version":2,"sources":[]}"#).unwrap();
        let err = Checkpointer::new(path.clone()).load().unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        fs::write(&path, "{not json").unwrap();
        assert!(Checkpointer::new(path).load().is_err());
    }
}
