//! Segment files: `wal-0000000000000042.log`, an 8-byte header, then records.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::SegmentId;

const HEADER: &[u8; 8] = b"PNWAL\x00\x00\x01";
/// Larger records are refused on append and treated as corruption on replay,
/// so a flipped length bit cannot make replay allocate gigabytes.
pub(crate) const MAX_RECORD: usize = 256 << 20;

fn name(id: SegmentId) -> String {
    format!("wal-{:016}.log", id.0)
}

/// Segments in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<(SegmentId, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(s) = file_name.to_str() else {
            continue;
        };
        if let Some(num) = s.strip_prefix("wal-").and_then(|r| r.strip_suffix(".log"))
            && let Ok(n) = num.parse::<u64>()
        {
            out.push((SegmentId(n), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) struct SegmentWriter {
    id: SegmentId,
    out: BufWriter<File>,
    len: u64,
}

impl SegmentWriter {
    pub(crate) fn create(dir: &Path, id: SegmentId) -> io::Result<SegmentWriter> {
        let path = dir.join(name(id));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(HEADER)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        // The new name must survive a crash too, or replay would miss the segment.
        File::open(dir)?.sync_all()?;
        Ok(SegmentWriter {
            id,
            out,
            len: HEADER.len() as u64,
        })
    }

    pub(crate) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "record larger than the WAL's limit",
            ));
        }
        self.out.write_all(&(payload.len() as u32).to_le_bytes())?;
        self.out
            .write_all(&crc32fast::hash(payload).to_le_bytes())?;
        self.out.write_all(payload)?;
        self.len += 8 + payload.len() as u64;
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn id(&self) -> SegmentId {
        self.id
    }
}

/// What [`replay`] found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Every intact record, oldest first, with its segment.
    pub records: Vec<(SegmentId, Vec<u8>)>,
    /// Bytes cut from the end of the newest segment: a write torn by a crash,
    /// never acknowledged.
    pub torn_bytes: u64,
    /// Bytes skipped in older segments because a record failed its checksum:
    /// real corruption, acknowledged data lost. Reported at ERROR.
    pub corrupt_bytes: u64,
}

/// Reads every segment in `dir`, cutting a torn tail off the newest one.
///
/// # Errors
/// Listing or reading failed.
pub fn replay(dir: &Path) -> io::Result<Replayed> {
    let mut out = Replayed::default();
    if !dir.exists() {
        return Ok(out);
    }
    let segments = list(dir)?;
    let last = segments.last().map(|(id, _)| *id);
    for (id, path) in segments {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let (good_end, records) = parse(&bytes);
        let bad = bytes.len() - good_end;
        for r in records {
            out.records.push((id, r.to_vec()));
        }
        if bad > 0 {
            if Some(id) == last {
                out.torn_bytes += bad as u64;
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(good_end.max(HEADER.len()) as u64)?;
                f.sync_all()?;
            } else {
                out.corrupt_bytes += bad as u64;
                tracing::error!(segment = %path.display(), bytes = bad, "write-ahead log segment corrupt; records after the damage are lost");
            }
        }
    }
    Ok(out)
}

/// Splits a segment into its intact records; returns where the intact part ends.
fn parse(bytes: &[u8]) -> (usize, Vec<&[u8]>) {
    if bytes.len() < HEADER.len() || &bytes[..HEADER.len()] != HEADER {
        return (0, Vec::new());
    }
    let mut pos = HEADER.len();
    let mut records = Vec::new();
    while let Some(head) = bytes.get(pos..pos + 8) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        records.push(payload);
        pos += 8 + len;
    }
    (pos, records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stops_at_damage_and_never_panics() {
        let mut seg = HEADER.to_vec();
        for p in [&b"one"[..], b"two"] {
            seg.extend_from_slice(&(p.len() as u32).to_le_bytes());
            seg.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            seg.extend_from_slice(p);
        }
        let (end, recs) = parse(&seg);
        assert_eq!((end, recs.len()), (seg.len(), 2));
        for cut in 0..seg.len() {
            let (end, recs) = parse(&seg[..cut]);
            assert!(end <= cut && recs.len() <= 2);
        }
        let mut flipped = seg.clone();
        let n = flipped.len();
        flipped[n - 1] ^= 1;
        assert_eq!(parse(&flipped).1.len(), 1);
    }
}
