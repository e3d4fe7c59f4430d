//! The agent's binary batch encoding: compact, versioned, checksummed.
//!
//! A [`Batch`] is what one agent ships in one request: the events parsed from
//! one byte range of one source file, tagged with the identity the collector
//! needs to count that range exactly once (see [`BatchMeta`]).
//!
//! # Byte layout (version 1)
//!
//! All integers marked *varint* are unsigned LEB128 (7 bits per byte, low
//! bits first, at most 10 bytes); *zigzag* means the signed value is mapped
//! to unsigned first (`0, -1, 1, -2, …` → `0, 1, 2, 3, …`). A *str* is a
//! varint byte length followed by that many bytes of UTF-8.
//!
//! | part     | field            | encoding                | meaning |
//! |----------|------------------|-------------------------|---------|
//! | preamble | magic            | 4 bytes `PNRB`          | identifies the format ([`MAGIC`]) |
//! |          | version          | 1 byte, `1`             | [`VERSION`]; a decoder rejects versions it does not know |
//! | header   | agent id         | str                     | [`BatchMeta::agent_id`] |
//! |          | source id        | str                     | [`BatchMeta::source_id`] |
//! |          | start offset     | varint                  | first byte of the range covered |
//! |          | end offset       | varint                  | one past the last byte covered (≥ start) |
//! |          | lines read       | varint                  | [`BatchMeta::lines_read`] |
//! |          | lines failed     | varint                  | [`BatchMeta::lines_failed`] |
//! |          | base time        | zigzag varint           | Unix ms; event times are deltas from it |
//! | strings  | count *S*        | varint                  | size of the string table |
//! |          | *S* × string     | str                     | distinct services, hosts, names, codes, dim keys and values |
//! | events   | count *N*        | varint                  | at most [`MAX_BATCH_EVENTS`] |
//! |          | *N* × event      | see below               | |
//! | trailer  | checksum         | 4 bytes, little-endian  | CRC-32 (IEEE) of every byte before it |
//!
//! Each event:
//!
//! | field        | encoding                    | present when |
//! |--------------|-----------------------------|--------------|
//! | time         | zigzag varint (`ts - base`, wrapping) | always |
//! | layer        | 1 byte, [`Layer::code`]     | always |
//! | flags        | 1 byte (bits below)         | always |
//! | service      | varint string index         | always |
//! | host         | varint string index         | always |
//! | name         | varint string index         | always |
//! | error code   | varint string index         | flag `CODE` |
//! | latency      | varint, whole microseconds  | flag `LATENCY` |
//! | value        | 8 bytes, `f64` little-endian | flag `VALUE` |
//! | dims         | varint count *D* (≤ [`MAX_DIMS`]), then *D* × (key index, value index) | flag `DIMS` |
//! | raw line     | str (not in the table: raw lines rarely repeat) | flag `RAW` |
//!
//! Flag bits: `0x01` ERROR (outcome is an error), `0x02` CODE (only with
//! ERROR), `0x04` LATENCY, `0x08` VALUE, `0x10` RAW, `0x20` DIMS. The other
//! bits are reserved and must be zero.
//!
//! Latency travels at **1 µs resolution**: it is rounded to the nearest
//! microsecond, and a negative or non-finite latency is sent as 0. Values
//! keep all 64 bits. Every other field round-trips exactly.
//!
//! # Decoding untrusted input
//!
//! [`decode`] and [`decode_into`] never panic, whatever the input. They
//! check the magic, the version and the checksum before anything else,
//! validate every count against the bytes that remain before allocating for
//! it, and stop at [`MAX_BATCH_EVENTS`] events and [`MAX_DECODED_BYTES`] of
//! decoded strings, so a forged length cannot make them allocate much more
//! than the input is worth. Errors carry the byte offset where the input
//! went wrong.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::wire::MAX_DIMS;
use crate::{Event, Layer, Outcome};

/// The four bytes every batch starts with.
pub const MAGIC: [u8; 4] = *b"PNRB";

/// The encoding version this release writes and reads.
pub const VERSION: u8 = 1;

/// The HTTP content type an agent sends batches with, so the ingest path can
/// tell them from NDJSON.
pub const CONTENT_TYPE: &str = "application/x-panorama-batch";

/// The most events one batch may hold; [`decode`] rejects more.
///
/// It bounds the memory one request can take. Agents cut batches far below
/// it ([`encode`] does not check: a larger batch encodes, but is refused).
pub const MAX_BATCH_EVENTS: usize = 1 << 18;

/// The most string bytes [`decode`] will copy into the events of one batch.
///
/// Strings are stored once in the table and referenced by index, so a small
/// forged batch could otherwise expand into gigabytes of copies.
pub const MAX_DECODED_BYTES: usize = 64 << 20;

/// Bytes before the first header field: magic and version.
const PREAMBLE_LEN: usize = MAGIC.len() + 1;
/// Bytes of the checksum trailer.
const TRAILER_LEN: usize = 4;
/// The smallest possible event: time, layer, flags and three indices.
const MIN_EVENT_LEN: usize = 6;

/// String capacity a reused event keeps whatever it next holds; longer
/// buffers are kept only while they are less than half empty. Routes, hosts
/// and most raw lines fit.
const KEEP_CAPACITY: usize = 256;

const FLAG_ERROR: u8 = 0x01;
const FLAG_CODE: u8 = 0x02;
const FLAG_LATENCY: u8 = 0x04;
const FLAG_VALUE: u8 = 0x08;
const FLAG_RAW: u8 = 0x10;
const FLAG_DIMS: u8 = 0x20;
const FLAGS_KNOWN: u8 = FLAG_ERROR | FLAG_CODE | FLAG_LATENCY | FLAG_VALUE | FLAG_RAW | FLAG_DIMS;

/// Where a batch came from and which part of its source it covers.
///
/// This is the unit of exactly-once counting: the agent advances its
/// persisted offset only once the collector acknowledges the batch, and the
/// collector drops a (agent, source, range) it has already counted, so a
/// batch re-sent after a crash is not counted twice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchMeta {
    /// The agent that read the lines; with `source_id` it names the file.
    pub agent_id: String,
    /// The source file, as the agent knows it (a fingerprint of its first
    /// bytes, not a path, so rotation does not make it a new source).
    pub source_id: String,
    /// Byte offset in the source where the range starts (inclusive).
    pub start_offset: u64,
    /// Byte offset in the source where the range ends (exclusive); the
    /// collector's dedup works on `[start_offset, end_offset)`.
    pub end_offset: u64,
    /// Lines in the range, parsed or not: loss accounting compares this
    /// with the events counted.
    pub lines_read: u64,
    /// Lines in the range that did not parse; they are counted as parse
    /// errors rather than silently dropped.
    pub lines_failed: u64,
}

/// One shipment from an agent: the events parsed from one byte range.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// Identity and accounting for the range; see [`BatchMeta`].
    pub meta: BatchMeta,
    /// The events parsed from the range, in file order.
    pub events: Vec<Event>,
}

impl Batch {
    /// The batch of events posted by a third party (NDJSON) as `producer`:
    /// there is no byte range to deduplicate by, so it is unranged (no
    /// source, offsets 0) and counted once per request.
    pub fn third_party(producer: &str, events: Vec<Event>) -> Batch {
        Batch::unranged(format!("ndjson:{producer}"), events)
    }

    /// An unranged batch of `agent_id`: see [`Batch::third_party`].
    pub fn unranged(agent_id: impl Into<String>, events: Vec<Event>) -> Batch {
        Batch {
            meta: BatchMeta {
                agent_id: agent_id.into(),
                ..BatchMeta::default()
            },
            events,
        }
    }
}

/// Why a byte string is not a valid batch. Offsets count from the first
/// byte of the input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input does not start with [`MAGIC`].
    #[error(
        "not a Panorama binary batch: expected magic bytes \"PNRB\" at byte 0, found \"{}\" \
         (is this NDJSON or another format sent with the binary content type?)",
        found.escape_ascii()
    )]
    BadMagic {
        /// The first (up to four) bytes of the input.
        found: Vec<u8>,
    },
    /// The version byte names an encoding this release cannot read.
    #[error(
        "unsupported batch encoding version {0} at byte 4: this collector reads version {VERSION}; \
         run an agent and collector of compatible releases"
    )]
    UnsupportedVersion(u8),
    /// The input ends in the middle of a field.
    #[error("batch truncated: input ends at byte {offset} while reading the {what}")]
    Truncated {
        /// Where the missing bytes should have been.
        offset: usize,
        /// The field being read.
        what: &'static str,
    },
    /// The CRC-32 trailer does not match the content: the batch was
    /// corrupted or cut short on the way.
    #[error(
        "batch checksum mismatch: trailer says {expected:#010x}, content hashes to {actual:#010x}; \
         the batch was corrupted or truncated in transit"
    )]
    Checksum {
        /// The checksum stored in the trailer.
        expected: u32,
        /// The checksum of the bytes received.
        actual: u32,
    },
    /// A string is not valid UTF-8.
    #[error("invalid UTF-8 in the {what} at byte {offset}")]
    InvalidUtf8 {
        /// The first invalid byte.
        offset: usize,
        /// The field holding the string.
        what: &'static str,
    },
    /// A varint runs past 64 bits.
    #[error("varint for the {what} at byte {offset} does not fit in 64 bits")]
    VarintOverflow {
        /// Where the varint starts.
        offset: usize,
        /// The field being read.
        what: &'static str,
    },
    /// A length or count claims more items than the remaining bytes could hold.
    #[error(
        "{what} at byte {offset}: declared size {count} exceeds the {remaining} bytes that remain; \
         the batch is truncated or forged"
    )]
    CountTooLarge {
        /// Where the count is.
        offset: usize,
        /// What is being counted.
        what: &'static str,
        /// The count as read.
        count: u64,
        /// Bytes left before the trailer.
        remaining: usize,
    },
    /// A string index points past the end of the string table.
    #[error(
        "{what} index {index} at byte {offset} is out of range: the string table holds {table_len} strings"
    )]
    BadIndex {
        /// Where the index is.
        offset: usize,
        /// The field the index stands for.
        what: &'static str,
        /// The index as read.
        index: u64,
        /// The size of the string table.
        table_len: usize,
    },
    /// The layer code is not one this release knows.
    #[error(
        "unknown layer code {code} at byte {offset}: this release knows codes 0 to {}; \
         is the agent newer than the collector?",
        Layer::ALL.len() - 1
    )]
    BadLayer {
        /// Where the code is.
        offset: usize,
        /// The code as read.
        code: u8,
    },
    /// The flags byte sets reserved bits, or a code without an error.
    #[error(
        "invalid event flags {flags:#04x} at byte {offset}: reserved bits set, \
         or an error code on an event that is not an error"
    )]
    BadFlags {
        /// Where the flags byte is.
        offset: usize,
        /// The byte as read.
        flags: u8,
    },
    /// The header's byte range ends before it starts.
    #[error("invalid byte range: end offset {end} is before start offset {start}")]
    BadRange {
        /// The start offset as read.
        start: u64,
        /// The end offset as read.
        end: u64,
    },
    /// More events than [`MAX_BATCH_EVENTS`].
    #[error(
        "batch declares {count} events at byte {offset}; the limit is {MAX_BATCH_EVENTS}: cut smaller batches"
    )]
    TooManyEvents {
        /// Where the count is.
        offset: usize,
        /// The count as read.
        count: u64,
    },
    /// An event with more dims than [`MAX_DIMS`].
    #[error("event declares {count} dims at byte {offset}; the limit is {MAX_DIMS}")]
    TooManyDims {
        /// Where the count is.
        offset: usize,
        /// The count as read.
        count: u64,
    },
    /// The same dim key twice in one event.
    #[error("dim key {key:?} appears twice in the event at byte {offset}")]
    DuplicateDim {
        /// Where the second occurrence is.
        offset: usize,
        /// The repeated key.
        key: String,
    },
    /// The events would expand to more than [`MAX_DECODED_BYTES`] of strings.
    #[error(
        "batch expands to more than {MAX_DECODED_BYTES} bytes of strings (reached at byte {offset}); \
         cut smaller batches"
    )]
    TooLarge {
        /// Where the limit was crossed.
        offset: usize,
    },
    /// Bytes left between the last event and the checksum.
    #[error("{count} unexpected bytes after the last event, at byte {offset}")]
    TrailingBytes {
        /// Where the unexpected bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
}

impl DecodeError {
    /// The byte offset the error refers to, when it refers to one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            DecodeError::BadMagic { .. } => Some(0),
            DecodeError::UnsupportedVersion(_) => Some(MAGIC.len()),
            DecodeError::Checksum { .. } | DecodeError::BadRange { .. } => None,
            DecodeError::Truncated { offset, .. }
            | DecodeError::InvalidUtf8 { offset, .. }
            | DecodeError::VarintOverflow { offset, .. }
            | DecodeError::CountTooLarge { offset, .. }
            | DecodeError::BadIndex { offset, .. }
            | DecodeError::BadLayer { offset, .. }
            | DecodeError::BadFlags { offset, .. }
            | DecodeError::TooManyEvents { offset, .. }
            | DecodeError::TooManyDims { offset, .. }
            | DecodeError::DuplicateDim { offset, .. }
            | DecodeError::TooLarge { offset }
            | DecodeError::TrailingBytes { offset, .. } => Some(*offset),
        }
    }
}

// ---------------------------------------------------------------------------
// Encoding

/// Appends the encoding of `batch` to `out`; bytes already in `out` are kept.
///
/// Latency is rounded to whole microseconds (see the module docs). Encoding
/// cannot fail; [`decode`] of the result gives back `batch` (up to latency
/// rounding) as long as it stays within [`MAX_BATCH_EVENTS`], [`MAX_DIMS`]
/// and [`MAX_DECODED_BYTES`], and its `end_offset` is not before its
/// `start_offset`.
pub fn encode(batch: &Batch, out: &mut Vec<u8>) {
    let start = out.len();
    let base = batch.events.first().map_or(0, |e| e.ts_ms);
    let mut table = StringTable::default();
    // Events are written first to a scratch buffer, because the string table
    // they fill has to precede them on the wire.
    let mut body = Vec::with_capacity(batch.events.len() * 12);
    let mut prev: Option<(&Event, [u64; 3])> = None;
    for event in &batch.events {
        put_varint(&mut body, zigzag(event.ts_ms.wrapping_sub(base)));
        body.push(event.layer.code());

        let code = match &event.outcome {
            Outcome::Ok => None,
            Outcome::Error(code) => Some(code.as_deref()),
        };
        let mut flags = 0;
        if let Some(code) = code {
            flags |= FLAG_ERROR;
            if code.is_some() {
                flags |= FLAG_CODE;
            }
        }
        if event.latency_ms.is_some() {
            flags |= FLAG_LATENCY;
        }
        if event.value.is_some() {
            flags |= FLAG_VALUE;
        }
        if event.raw.is_some() {
            flags |= FLAG_RAW;
        }
        if !event.dims.is_empty() {
            flags |= FLAG_DIMS;
        }
        body.push(flags);

        // Consecutive events usually share service, host and often name:
        // reuse the previous index without hashing.
        let fields = [&event.service, &event.host, &event.name];
        let mut idx = [0u64; 3];
        for (i, field) in fields.into_iter().enumerate() {
            idx[i] = match prev {
                Some((p, pidx)) if [&p.service, &p.host, &p.name][i] == field => pidx[i],
                _ => table.index(field),
            };
            put_varint(&mut body, idx[i]);
        }
        prev = Some((event, idx));

        if let Some(Some(code)) = code {
            put_varint(&mut body, table.index(code));
        }
        if let Some(latency) = event.latency_ms {
            put_varint(&mut body, latency_to_micros(latency));
        }
        if let Some(value) = event.value {
            body.extend_from_slice(&value.to_le_bytes());
        }
        if !event.dims.is_empty() {
            put_varint(&mut body, event.dims.len() as u64);
            for (k, v) in &event.dims {
                put_varint(&mut body, table.index(k));
                put_varint(&mut body, table.index(v));
            }
        }
        if let Some(raw) = &event.raw {
            put_str(&mut body, raw);
        }
    }

    let meta = &batch.meta;
    out.reserve(64 + table.bytes + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    put_str(out, &meta.agent_id);
    put_str(out, &meta.source_id);
    put_varint(out, meta.start_offset);
    put_varint(out, meta.end_offset);
    put_varint(out, meta.lines_read);
    put_varint(out, meta.lines_failed);
    put_varint(out, zigzag(base));
    put_varint(out, table.strings.len() as u64);
    for s in &table.strings {
        put_str(out, s);
    }
    put_varint(out, batch.events.len() as u64);
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Latency in milliseconds to whole microseconds, rounded to nearest;
/// negative, NaN and infinite latencies become 0.
fn latency_to_micros(ms: f64) -> u64 {
    let us = (ms * 1000.0).round();
    if us.is_finite() && us > 0.0 {
        // `as` saturates at u64::MAX for finite values beyond it.
        us as u64
    } else {
        0
    }
}

/// The per-batch table of distinct strings, in order of first use.
#[derive(Default)]
struct StringTable<'a> {
    strings: Vec<&'a str>,
    index: HashMap<&'a str, u64, BuildHasherDefault<StrHasher>>,
    bytes: usize,
}

impl<'a> StringTable<'a> {
    fn index(&mut self, s: &'a str) -> u64 {
        let next = self.strings.len() as u64;
        let idx = *self.index.entry(s).or_insert(next);
        if idx == next {
            self.strings.push(s);
            self.bytes += s.len() + 2;
        }
        idx
    }
}

/// A fast hasher for the short strings of the table: one XXH3 call per
/// `write`. The table lives for one encode of the agent's own data, so
/// resistance to crafted collisions is not needed here.
#[derive(Default)]
struct StrHasher(u64);

impl Hasher for StrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u8(&mut self, b: u8) {
        // `str` hashing appends a 0xff terminator; fold it in cheaply.
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

// ---------------------------------------------------------------------------
// Decoding

/// Decodes one batch, checking its magic, version, checksum and structure.
///
/// Never panics; see the module docs for the limits it enforces.
pub fn decode(bytes: &[u8]) -> Result<Batch, DecodeError> {
    let mut batch = Batch::default();
    decode_into(bytes, &mut batch)?;
    Ok(batch)
}

/// Decodes one batch like [`decode`], but into `batch`, overwriting what it
/// held.
///
/// A collector decodes tens of thousands of events per request; allocating
/// three or more strings for each of them, only to free them once the batch
/// is counted, was a fifth of its time. Here the events already in `batch`
/// are rewritten in place and keep their string buffers, so decoding into a
/// batch that held a batch of similar shape allocates (almost) nothing.
///
/// It accepts and refuses exactly what [`decode`] does, with the same
/// errors, and on success leaves `batch` equal to what [`decode`] returns.
/// On error `batch` holds a mix of old and new events: use it for nothing
/// but another `decode_into`.
///
/// # Errors
/// As [`decode`]: the input is not a well-formed batch within the limits.
pub fn decode_into(bytes: &[u8], batch: &mut Batch) -> Result<(), DecodeError> {
    let (mut r, header) = open(bytes)?;
    header.write_into(&mut batch.meta);
    let table = r.string_table()?;
    let count_at = r.pos;
    let count = r.count("event list", MIN_EVENT_LEN)?;
    if count > MAX_BATCH_EVENTS {
        return Err(DecodeError::TooManyEvents {
            offset: count_at,
            count: count as u64,
        });
    }
    let events = &mut batch.events;
    events.reserve(count.saturating_sub(events.len()));
    let mut budget = MAX_DECODED_BYTES;
    for i in 0..count {
        if i == events.len() {
            events.push(Event::new(
                0,
                Layer::Url,
                String::new(),
                String::new(),
                String::new(),
            ));
        }
        r.event_into(&table, header.base, &mut budget, &mut events[i])?;
    }
    events.truncate(count);
    r.finish()
}

/// Checks a batch like [`decode`] (magic, version, checksum) but reads only
/// its header: enough to decide whether its range was already counted
/// before paying for the events.
pub fn decode_meta(bytes: &[u8]) -> Result<BatchMeta, DecodeError> {
    let (_, header) = open(bytes)?;
    let mut meta = BatchMeta::default();
    header.write_into(&mut meta);
    Ok(meta)
}

/// A batch's header as read, its strings still in the input.
struct Header<'a> {
    agent_id: &'a str,
    source_id: &'a str,
    start_offset: u64,
    end_offset: u64,
    lines_read: u64,
    lines_failed: u64,
    /// The time event times are deltas from, Unix ms.
    base: i64,
}

impl Header<'_> {
    fn write_into(&self, meta: &mut BatchMeta) {
        meta.agent_id.clear();
        meta.agent_id.push_str(self.agent_id);
        meta.source_id.clear();
        meta.source_id.push_str(self.source_id);
        meta.start_offset = self.start_offset;
        meta.end_offset = self.end_offset;
        meta.lines_read = self.lines_read;
        meta.lines_failed = self.lines_failed;
    }
}

/// Validates preamble and checksum, and reads the header.
fn open(bytes: &[u8]) -> Result<(Reader<'_>, Header<'_>), DecodeError> {
    let prefix = &bytes[..bytes.len().min(MAGIC.len())];
    if prefix != &MAGIC[..prefix.len()] {
        return Err(DecodeError::BadMagic {
            found: prefix.to_vec(),
        });
    }
    if bytes.len() < MAGIC.len() {
        return Err(DecodeError::Truncated {
            offset: bytes.len(),
            what: "magic bytes",
        });
    }
    match bytes.get(MAGIC.len()) {
        None => {
            return Err(DecodeError::Truncated {
                offset: bytes.len(),
                what: "version byte",
            });
        }
        Some(&VERSION) => {}
        Some(&v) => return Err(DecodeError::UnsupportedVersion(v)),
    }
    let Some(content_len) = bytes
        .len()
        .checked_sub(TRAILER_LEN)
        .filter(|&n| n > PREAMBLE_LEN)
    else {
        return Err(DecodeError::Truncated {
            offset: bytes.len(),
            what: "header",
        });
    };
    let (content, trailer) = bytes.split_at(content_len);
    let mut stored = [0u8; TRAILER_LEN];
    stored.copy_from_slice(trailer);
    let expected = u32::from_le_bytes(stored);
    let actual = crc32fast::hash(content);
    if expected != actual {
        return Err(DecodeError::Checksum { expected, actual });
    }

    let mut r = Reader {
        buf: content,
        pos: PREAMBLE_LEN,
    };
    let agent_id = r.str("agent id")?;
    let source_id = r.str("source id")?;
    let start_offset = r.varint("start offset")?;
    let end_offset = r.varint("end offset")?;
    if end_offset < start_offset {
        return Err(DecodeError::BadRange {
            start: start_offset,
            end: end_offset,
        });
    }
    let lines_read = r.varint("lines read")?;
    let lines_failed = r.varint("lines failed")?;
    let base = unzigzag(r.varint("base time")?);
    let header = Header {
        agent_id,
        source_id,
        start_offset,
        end_offset,
        lines_read,
        lines_failed,
        base,
    };
    Ok((r, header))
}

/// Copies `s` over `dst`, keeping `dst`'s buffer for the next batch unless
/// it is both beyond [`KEEP_CAPACITY`] and more than twice what `s` needs:
/// one forged batch of long strings must not stay resident in a reused batch.
#[inline]
fn overwrite(dst: &mut String, s: &str) {
    if dst.capacity() > KEEP_CAPACITY && dst.capacity() / 2 > s.len() {
        *dst = s.to_owned();
    } else {
        dst.clear();
        dst.push_str(s);
    }
}

/// A cursor over the checksummed content (everything before the trailer).
/// Positions are offsets into the whole input, since the content starts at 0.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(DecodeError::Truncated {
                offset: self.pos,
                what,
            }),
        }
    }

    #[inline]
    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DecodeError::Truncated {
                    offset: self.pos,
                    what,
                });
            };
            self.pos += 1;
            // The tenth byte may only contribute bit 63.
            if shift == 63 && b > 1 {
                return Err(DecodeError::VarintOverflow {
                    offset: start,
                    what,
                });
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A count of items each taking at least `min_len` bytes, checked
    /// against what remains so that callers may preallocate for it.
    fn count(&mut self, what: &'static str, min_len: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let count = self.varint(what)?;
        let remaining = self.remaining();
        match usize::try_from(count) {
            Ok(n) if n <= remaining / min_len => Ok(n),
            _ => Err(DecodeError::CountTooLarge {
                offset,
                what,
                count,
                remaining,
            }),
        }
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.count(what, 1)?;
        let start = self.pos;
        let bytes = &self.buf[start..start + len];
        self.pos += len;
        std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
            offset: start + e.valid_up_to(),
            what,
        })
    }

    fn string_table(&mut self) -> Result<Vec<&'a str>, DecodeError> {
        let count = self.count("string table", 1)?;
        let mut table = Vec::with_capacity(count);
        for _ in 0..count {
            table.push(self.str("string table entry")?);
        }
        Ok(table)
    }

    #[inline]
    fn index(&mut self, table: &[&'a str], what: &'static str) -> Result<&'a str, DecodeError> {
        let offset = self.pos;
        let index = self.varint(what)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| table.get(i).copied())
            .ok_or(DecodeError::BadIndex {
                offset,
                what,
                index,
                table_len: table.len(),
            })
    }

    /// Charges `s` to the batch's budget, then copies it over `dst`.
    #[inline]
    fn assign(&self, dst: &mut String, s: &str, budget: &mut usize) -> Result<(), DecodeError> {
        self.charge(s, budget)?;
        overwrite(dst, s);
        Ok(())
    }

    /// Counts `s` against the batch's budget of decoded bytes.
    #[inline]
    fn charge(&self, s: &str, budget: &mut usize) -> Result<(), DecodeError> {
        *budget = budget
            .checked_sub(s.len())
            .ok_or(DecodeError::TooLarge { offset: self.pos })?;
        Ok(())
    }

    /// Reads one event over `e`. Fields are read, checked and charged in
    /// wire order, so the first error is the one [`decode`] has always
    /// reported.
    fn event_into(
        &mut self,
        table: &[&'a str],
        base: i64,
        budget: &mut usize,
        e: &mut Event,
    ) -> Result<(), DecodeError> {
        e.ts_ms = base.wrapping_add(unzigzag(self.varint("event time")?));
        let layer_at = self.pos;
        let code = self.byte("layer code")?;
        e.layer = Layer::from_code(code).ok_or(DecodeError::BadLayer {
            offset: layer_at,
            code,
        })?;
        let flags_at = self.pos;
        let flags = self.byte("event flags")?;
        if flags & !FLAGS_KNOWN != 0 || (flags & FLAG_CODE != 0 && flags & FLAG_ERROR == 0) {
            return Err(DecodeError::BadFlags {
                offset: flags_at,
                flags,
            });
        }
        let service = self.index(table, "service")?;
        self.assign(&mut e.service, service, budget)?;
        let host = self.index(table, "host")?;
        self.assign(&mut e.host, host, budget)?;
        let name = self.index(table, "name")?;
        self.assign(&mut e.name, name, budget)?;
        if flags & FLAG_ERROR == 0 {
            e.outcome = Outcome::Ok;
        } else if flags & FLAG_CODE == 0 {
            e.outcome = Outcome::Error(None);
        } else {
            let code = self.index(table, "error code")?;
            match &mut e.outcome {
                Outcome::Error(Some(old)) => self.assign(old, code, budget)?,
                other => {
                    self.charge(code, budget)?;
                    *other = Outcome::Error(Some(code.to_owned()));
                }
            }
        }
        e.latency_ms = if flags & FLAG_LATENCY != 0 {
            Some(self.varint("latency")? as f64 / 1000.0)
        } else {
            None
        };
        e.value = if flags & FLAG_VALUE != 0 {
            let offset = self.pos;
            let bytes = self
                .buf
                .get(offset..offset + 8)
                .ok_or(DecodeError::Truncated {
                    offset,
                    what: "value",
                })?;
            let mut le = [0u8; 8];
            le.copy_from_slice(bytes);
            self.pos += 8;
            Some(f64::from_le_bytes(le))
        } else {
            None
        };
        if flags & FLAG_DIMS != 0 {
            self.dims_into(table, budget, &mut e.dims)?;
        } else if !e.dims.is_empty() {
            // `clear` walks even an empty map (an out-of-line call per
            // event, 1 % of a collector's time when no source has dims).
            e.dims.clear();
        }
        if flags & FLAG_RAW != 0 {
            let raw = self.str("raw line")?;
            match &mut e.raw {
                Some(old) => self.assign(old, raw, budget)?,
                None => {
                    self.charge(raw, budget)?;
                    e.raw = Some(raw.to_owned());
                }
            }
        } else {
            e.raw = None;
        }
        Ok(())
    }

    /// Reads an event's dims over `dims`. A map with the same keys as
    /// before (the usual case: one source, one set of dims) keeps its
    /// entries and only has its values rewritten.
    fn dims_into(
        &mut self,
        table: &[&'a str],
        budget: &mut usize,
        dims: &mut BTreeMap<String, String>,
    ) -> Result<(), DecodeError> {
        let offset = self.pos;
        let count = self.count("dims", 2)?;
        if count > MAX_DIMS {
            return Err(DecodeError::TooManyDims {
                offset,
                count: count as u64,
            });
        }
        let mut pairs = [("", ""); MAX_DIMS];
        for i in 0..count {
            let key_at = self.pos;
            let key = self.index(table, "dim key")?;
            let value = self.index(table, "dim value")?;
            self.charge(key, budget)?;
            self.charge(value, budget)?;
            if pairs[..i].iter().any(|(k, _)| *k == key) {
                return Err(DecodeError::DuplicateDim {
                    offset: key_at,
                    key: key.to_owned(),
                });
            }
            pairs[i] = (key, value);
        }
        let pairs = &mut pairs[..count];
        pairs.sort_unstable_by_key(|(k, _)| *k);
        let same_keys =
            dims.len() == count && dims.keys().zip(pairs.iter()).all(|(old, (k, _))| old == k);
        if same_keys {
            for (old, (_, v)) in dims.values_mut().zip(pairs.iter()) {
                overwrite(old, v);
            }
        } else {
            dims.clear();
            dims.extend(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                offset: self.pos,
                count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::strategies;

    /// Events as the agent may produce them, including empty strings.
    fn event() -> impl Strategy<Value = Event> {
        (strategies::event(), any::<[bool; 3]>()).prop_map(|(mut e, clear)| {
            if clear[0] {
                e.service.clear();
            }
            if clear[1] {
                e.host.clear();
            }
            if clear[2] {
                e.name.clear();
            }
            e
        })
    }

    fn batch(max_events: usize) -> impl Strategy<Value = Batch> {
        (
            (
                ".{0,12}",
                ".{0,40}",
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
            ),
            prop::collection::vec(event(), 0..=max_events),
        )
            .prop_map(
                |((agent_id, source_id, a, b, lines_read, lines_failed), events)| Batch {
                    meta: BatchMeta {
                        agent_id,
                        source_id,
                        start_offset: a.min(b),
                        end_offset: a.max(b),
                        lines_read,
                        lines_failed,
                    },
                    events,
                },
            )
    }

    fn encoded(batch: &Batch) -> Vec<u8> {
        let mut out = Vec::new();
        encode(batch, &mut out);
        out
    }

    /// Recomputes the trailer after a deliberate edit.
    fn restamp(buf: &mut [u8]) {
        if buf.len() >= TRAILER_LEN {
            let n = buf.len() - TRAILER_LEN;
            let crc = crc32fast::hash(&buf[..n]);
            buf[n..].copy_from_slice(&crc.to_le_bytes());
        }
    }

    /// A hand-made batch: empty ids, zero offsets, base time 0, the given
    /// string table, event count and event bytes, and a valid trailer.
    fn craft(table: &[&str], count: u64, events: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        put_varint(&mut out, table.len() as u64);
        for s in table {
            put_str(&mut out, s);
        }
        put_varint(&mut out, count);
        out.extend_from_slice(events);
        out.extend_from_slice(&[0; TRAILER_LEN]);
        restamp(&mut out);
        out
    }

    /// Where the events of a `craft`ed batch start.
    fn events_at(table: &[&str], count: u64) -> usize {
        craft(table, count, &[]).len() - TRAILER_LEN
    }

    proptest! {
        #[test]
        fn round_trips(batch in batch(40)) {
            let bytes = encoded(&batch);
            prop_assert_eq!(decode(&bytes), Ok(batch.clone()));
            prop_assert_eq!(decode_meta(&bytes), Ok(batch.meta));
        }

        #[test]
        fn appends_after_existing_bytes(prefix in prop::collection::vec(any::<u8>(), 0..16), batch in batch(4)) {
            let mut out = prefix.clone();
            encode(&batch, &mut out);
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(decode(&out[prefix.len()..]), Ok(batch));
        }

        #[test]
        fn random_bytes_are_rejected(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            prop_assert!(decode(&bytes).is_err());
        }

        #[test]
        fn random_bodies_after_a_valid_preamble_are_rejected(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = MAGIC.to_vec();
            bytes.push(VERSION);
            bytes.extend_from_slice(&body);
            prop_assert!(decode(&bytes).is_err());
        }

        #[test]
        fn every_truncation_is_rejected(batch in batch(6)) {
            let bytes = encoded(&batch);
            for len in 0..bytes.len() {
                prop_assert!(decode(&bytes[..len]).is_err(), "prefix of {} bytes accepted", len);
            }
        }

        #[test]
        fn every_single_byte_change_is_rejected(batch in batch(6), mask in 1u8..=255) {
            let mut bytes = encoded(&batch);
            for i in 0..bytes.len() {
                bytes[i] ^= mask;
                prop_assert!(decode(&bytes).is_err(), "change at byte {} accepted", i);
                bytes[i] ^= mask;
            }
        }
    }

    /// A batch shaped to exercise reuse: with `shared_dims` the dims of
    /// every event are re-keyed onto two fixed keys (so consecutive batches
    /// often bring the same key set), and with `long` the names and raw
    /// lines of some events outgrow the capacity a reused string keeps.
    fn reuse_batch() -> impl Strategy<Value = Batch> {
        (batch(12), any::<bool>(), any::<bool>()).prop_map(|(mut b, shared_dims, long)| {
            for (i, e) in b.events.iter_mut().enumerate() {
                if shared_dims {
                    let values: Vec<String> = e.dims.values().cloned().collect();
                    e.dims = ["channel", "device"]
                        .into_iter()
                        .zip(values)
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect();
                }
                if long && i % 3 == 0 {
                    e.name = e.name.repeat(1 + KEEP_CAPACITY / e.name.len().max(1));
                    e.raw = Some("r".repeat(KEEP_CAPACITY * 2 + i));
                }
            }
            b
        })
    }

    proptest! {
        /// One batch reused for a run of different inputs, some damaged
        /// (flipped byte, trailer fixed up or not) so that a decode fails
        /// halfway and leaves the batch half overwritten: each answer must
        /// be exactly what a fresh `decode` gives.
        #[test]
        fn decoding_into_a_reused_batch_equals_decode(
            inputs in prop::collection::vec(
                (reuse_batch(), prop::option::of((any::<Index>(), 1u8..=255, any::<bool>()))),
                1..8,
            )
        ) {
            let mut reused = Batch::default();
            for (batch, damage) in inputs {
                let mut bytes = encoded(&batch);
                if let Some((at, mask, fix)) = damage {
                    let at = at.index(bytes.len());
                    bytes[at] ^= mask;
                    if fix {
                        restamp(&mut bytes);
                    }
                }
                let into = decode_into(&bytes, &mut reused);
                match decode(&bytes) {
                    Ok(fresh) => {
                        prop_assert_eq!(into, Ok(()));
                        prop_assert_eq!(&reused, &fresh);
                        if damage.is_none() {
                            prop_assert_eq!(&reused, &batch);
                        }
                    }
                    Err(e) => prop_assert_eq!(into, Err(e)),
                }
            }
        }
    }

    #[test]
    fn a_reused_batch_gives_back_long_buffers() {
        let mut long = sample_event();
        long.name = "n".repeat(64 << 10);
        long.raw = Some("r".repeat(64 << 10));
        let mut reused = Batch::default();
        decode_into(
            &encoded(&Batch {
                meta: BatchMeta::default(),
                events: vec![long],
            }),
            &mut reused,
        )
        .unwrap();
        let short = Batch {
            meta: BatchMeta::default(),
            events: vec![sample_event()],
        };
        decode_into(&encoded(&short), &mut reused).unwrap();
        assert_eq!(reused, short);
        let e = &reused.events[0];
        assert!(e.name.capacity() <= KEEP_CAPACITY, "{}", e.name.capacity());
        assert!(e.raw.as_ref().unwrap().capacity() <= KEEP_CAPACITY);
    }

    /// Edits for the fuzz smoke test: overwrite, insert or delete a byte.
    #[derive(Debug, Clone)]
    enum Edit {
        Set(Index, u8),
        Insert(Index, u8),
        Remove(Index),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
            1 => any::<Index>().prop_map(Edit::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// Mutated valid batches, with the checksum fixed up so that the
        /// structural checks behind it are exercised too: decode must return,
        /// never panic, and whatever it accepts must encode again.
        #[test]
        fn fuzz_smoke_mutations(batch in batch(5), edits in prop::collection::vec(edit(), 1..6), fix in any::<bool>()) {
            let mut bytes = encoded(&batch);
            for e in edits {
                match e {
                    Edit::Set(i, b) => {
                        let i = i.index(bytes.len());
                        bytes[i] = b;
                    }
                    Edit::Insert(i, b) => {
                        let i = i.index(bytes.len() + 1);
                        bytes.insert(i, b);
                    }
                    Edit::Remove(i) => {
                        if !bytes.is_empty() {
                            let i = i.index(bytes.len());
                            bytes.remove(i);
                        }
                    }
                }
            }
            if fix {
                restamp(&mut bytes);
            }
            if let Ok(decoded) = decode(&bytes) {
                let again = encoded(&decoded);
                prop_assert!(decode(&again).is_ok());
            }
        }

        /// Random content behind a valid preamble and a valid checksum.
        #[test]
        fn fuzz_smoke_random_checksummed(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = MAGIC.to_vec();
            bytes.push(VERSION);
            bytes.extend_from_slice(&body);
            bytes.extend_from_slice(&[0; TRAILER_LEN]);
            restamp(&mut bytes);
            let _ = decode(&bytes);
        }
    }

    fn sample_event() -> Event {
        let mut e = Event::new(
            1_795_784_401_234,
            Layer::Url,
            "login",
            "web1",
            "GET /api/login",
        );
        e.outcome = Outcome::Error(Some("500".into()));
        e.latency_ms = Some(123.4);
        e.dims.insert("channel".into(), "ios".into());
        e.raw = Some("10.0.0.1 - - \"GET /api/login\" 500".into());
        e
    }

    #[test]
    fn empty_batch_round_trips() {
        let batch = Batch::default();
        let bytes = encoded(&batch);
        assert_eq!(decode(&bytes), Ok(batch));
    }

    #[test]
    fn repeated_strings_are_stored_once() {
        let events = vec![sample_event(); 100];
        let bytes = encoded(&Batch {
            meta: BatchMeta::default(),
            events,
        });
        let one = encoded(&Batch {
            meta: BatchMeta::default(),
            events: vec![sample_event()],
        });
        // Each further event costs its raw line and about 20 bytes.
        let raw_len = sample_event().raw.map_or(0, |r| r.len());
        assert!(
            bytes.len() - one.len() <= 99 * (raw_len + 20),
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn latency_is_rounded_to_microseconds() {
        let cases = [
            (1.2344, 1.234),
            (1.2346, 1.235),
            (0.0004, 0.0),
            (0.0006, 0.001),
            (-5.0, 0.0),
            (f64::NAN, 0.0),
            (f64::INFINITY, 0.0),
            (f64::NEG_INFINITY, 0.0),
            (1e30, u64::MAX as f64 / 1000.0),
        ];
        for (sent, received) in cases {
            let mut e = sample_event();
            e.latency_ms = Some(sent);
            let batch = Batch {
                meta: BatchMeta::default(),
                events: vec![e],
            };
            let got = decode(&encoded(&batch)).unwrap().events[0].latency_ms;
            assert_eq!(got, Some(received), "latency {sent}");
        }
    }

    #[test]
    fn value_bits_survive_including_nan() {
        let nan = f64::from_bits(0x7ff8_dead_beef_0001);
        let mut e = sample_event();
        e.value = Some(nan);
        let batch = Batch {
            meta: BatchMeta::default(),
            events: vec![e],
        };
        let got = decode(&encoded(&batch)).unwrap().events[0].value.unwrap();
        assert_eq!(got.to_bits(), nan.to_bits());
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let events = [i64::MIN, i64::MAX, 0, -1, i64::MAX]
            .into_iter()
            .map(|ts| Event::new(ts, Layer::Infra, "s", "h", "n"))
            .collect();
        let batch = Batch {
            meta: BatchMeta::default(),
            events,
        };
        assert_eq!(decode(&encoded(&batch)), Ok(batch));
    }

    #[test]
    fn rejects_other_formats_and_versions() {
        let err = decode(br#"{"ts":1}"#).unwrap_err();
        assert!(matches!(err, DecodeError::BadMagic { .. }), "{err:?}");
        assert!(err.to_string().contains("NDJSON"), "{err}");
        assert!(matches!(
            decode(b""),
            Err(DecodeError::Truncated { offset: 0, .. })
        ));
        assert!(matches!(
            decode(b"PN"),
            Err(DecodeError::Truncated { offset: 2, .. })
        ));

        let mut bytes = encoded(&Batch::default());
        bytes[4] = 2;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedVersion(2));
        assert_eq!(err.offset(), Some(4));
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn reports_checksum_mismatch() {
        let mut bytes = encoded(&Batch {
            meta: BatchMeta::default(),
            events: vec![sample_event()],
        });
        let n = bytes.len();
        bytes[n - 8] ^= 1;
        let err = decode(&bytes).unwrap_err();
        assert!(matches!(err, DecodeError::Checksum { .. }), "{err:?}");
        assert!(err.to_string().contains("corrupted or truncated"), "{err}");
    }

    #[test]
    fn reports_structural_errors_with_offsets() {
        let table = ["svc", "host", "name"];
        let at = events_at(&table, 1);

        // Layer code 9.
        let err = decode(&craft(&table, 1, &[0, 9, 0, 0, 1, 2])).unwrap_err();
        assert_eq!(
            err,
            DecodeError::BadLayer {
                offset: at + 1,
                code: 9
            }
        );
        assert!(err.to_string().contains("unknown layer code 9"), "{err}");

        // Reserved flag bit, and a code without an error.
        for flags in [0x40, FLAG_CODE] {
            let err = decode(&craft(&table, 1, &[0, 1, flags, 0, 1, 2])).unwrap_err();
            assert_eq!(
                err,
                DecodeError::BadFlags {
                    offset: at + 2,
                    flags
                }
            );
        }

        // Name index 3 in a table of 3.
        let err = decode(&craft(&table, 1, &[0, 1, 0, 0, 1, 3])).unwrap_err();
        assert_eq!(
            err,
            DecodeError::BadIndex {
                offset: at + 5,
                what: "name",
                index: 3,
                table_len: 3
            }
        );

        // One byte too many.
        let err = decode(&craft(&table, 1, &[0, 1, 0, 0, 1, 2, 0])).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TrailingBytes {
                offset: at + 6,
                count: 1
            }
        );

        // The event ends inside the value.
        let err = decode(&craft(
            &table,
            1,
            &[0, 1, FLAG_VALUE, 0, 1, 2, 0, 0, 0, 0, 0, 0],
        ))
        .unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                offset: at + 6,
                what: "value"
            }
        );

        // Duplicate dim key.
        let err = decode(&craft(
            &table,
            1,
            &[0, 1, FLAG_DIMS, 0, 1, 2, 2, 0, 1, 0, 2],
        ))
        .unwrap_err();
        assert_eq!(
            err,
            DecodeError::DuplicateDim {
                offset: at + 9,
                key: "svc".into()
            }
        );

        // Too many dims.
        let mut ev = vec![0, 1, FLAG_DIMS, 0, 1, 2, MAX_DIMS as u8 + 1];
        ev.extend(std::iter::repeat_n([0, 0], MAX_DIMS + 1).flatten());
        let err = decode(&craft(&table, 1, &ev)).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooManyDims { offset, count: 17 } if offset == at + 6),
            "{err:?}"
        );

        // Ten-byte varint with more than 64 bits of payload.
        let mut ev = vec![0xff; 9];
        ev.extend_from_slice(&[0x02, 1, 0, 0, 1, 2]);
        let err = decode(&craft(&table, 1, &ev)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::VarintOverflow {
                offset: at,
                what: "event time"
            }
        );
    }

    #[test]
    fn rejects_invalid_utf8_and_bad_ranges() {
        let mut bytes = craft(&["abc"], 0, &[]);
        let pos = bytes.windows(3).position(|w| w == b"abc").unwrap();
        bytes[pos + 1] = 0xff;
        restamp(&mut bytes);
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::InvalidUtf8 {
                offset: pos + 1,
                what: "string table entry"
            })
        );

        let batch = Batch {
            meta: BatchMeta {
                start_offset: 10,
                end_offset: 5,
                ..BatchMeta::default()
            },
            events: vec![],
        };
        assert_eq!(
            decode(&encoded(&batch)),
            Err(DecodeError::BadRange { start: 10, end: 5 })
        );
    }

    #[test]
    fn forged_counts_do_not_allocate() {
        let at = events_at(&[], u64::MAX);
        // A count of u64::MAX events with nothing behind it.
        let err = decode(&craft(&[], u64::MAX, &[])).unwrap_err();
        assert!(
            matches!(err, DecodeError::CountTooLarge { offset, count: u64::MAX, .. } if offset < at),
            "{err:?}"
        );

        // A string claiming 2^40 bytes.
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        put_varint(&mut bytes, 1 << 40);
        bytes.extend_from_slice(b"abc\0\0\0\0");
        restamp(&mut bytes);
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::CountTooLarge {
                    offset: 5,
                    what: "agent id",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn limits_events_and_expansion() {
        let ev = [0u8, 1, 0, 0, 0, 0];
        let n = MAX_BATCH_EVENTS + 1;
        let err = decode(&craft(&[""], n as u64, &ev.repeat(n))).unwrap_err();
        assert!(matches!(err, DecodeError::TooManyEvents { .. }), "{err:?}");

        // 64 KiB names referenced by 2,000 events: 128 MB of copies from a
        // 76 KB batch.
        let big = "x".repeat(64 << 10);
        let count = 2_000;
        let err = decode(&craft(&[&big], count as u64, &ev.repeat(count))).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err:?}");
    }
}
