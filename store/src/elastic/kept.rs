//! Answers over stretches of time that no longer change, kept between
//! reads.
//!
//! A layer page sums every series of a layer over its range: over an hour
//! that is 120,000 minute documents for 2,000 series, over a week 336,000
//! hourly ones, and Elasticsearch spends about a microsecond per document
//! and metric on it; its charts merge a day of whole-layer documents
//! (histograms included) twice, for today and yesterday. Elasticsearch's
//! own shard request cache cannot help: every read names a range a minute
//! later than the last, and today's index is refreshed every few seconds
//! by the collectors. Yet almost all of such a range is the same from one
//! read to the next. So a read is split into **pieces** at fixed edges —
//! whole UTC days of the hourly tier and whole ten-minute blocks of
//! minutes for series tables (`series_pieces`), chart buckets for a
//! layer's points (`layer_pieces`) — and each piece's answer is kept,
//! then merged with the others and with what is still moving (the ragged
//! ends of the range and the last minutes) on every read. Query frontends
//! of metric stores keep results by day for the same reason.
//!
//! A kept piece is used only while its **signature** is unchanged: per
//! index, the number of matching documents in the piece and the highest
//! `_seq_no` among them. Every write to a document (a late minute, a
//! collector's re-flush, a re-compaction, a stale compactor's rewrite)
//! gives it a sequence number above every earlier one of its shard, and a
//! deletion lowers the count, so any change to the piece's documents
//! changes the signature. Sequence numbers are per shard: with more than
//! one primary shard per index nothing is kept. Signatures and the
//! documents of kept answers are read whole (a search with a failed shard
//! fails instead of answering in part) and from the same copy of each
//! shard (one fixed `preference`), so replicas refreshed at other moments
//! cannot pair a signature with older documents.
//!
//! A signature is read before the documents: a write in between leaves
//! newer documents under an older signature, which the next read finds
//! changed and reads again. Not covered: an index deleted by retention
//! and created again by a late write, whose sequence numbers start over,
//! could match a signature kept from before (only for minutes older than
//! the retention, which collectors no longer accept).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use panorama_model::MINUTE_MS;
use serde_json::{Value, json};

use super::{ElasticStore, buckets};
use crate::StoreError;
use crate::tier::Plan;

/// Width of a kept block of minutes in a series table.
pub(super) const BLOCK_MS: i64 = 10 * MINUTE_MS;

/// A piece of minutes is kept once it ended this long ago: collectors
/// rewrite the minutes they hold open until then, and a piece still
/// written would change its signature on every read.
pub(super) const SETTLE_MS: i64 = 2 * MINUTE_MS;

/// The tier a piece reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Tier {
    Minutes,
    Hours,
}

/// A stretch `[from, to)` of a read in one tier; `kept` when it may be
/// taken from (and put into) the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    pub(super) tier: Tier,
    pub(super) from: i64,
    pub(super) to: i64,
    pub(super) kept: bool,
}

impl Piece {
    /// A piece of `tier`, kept if whole (`width` long) and, for minutes,
    /// settled by `now`.
    fn new(tier: Tier, from: i64, to: i64, width: i64, now: i64) -> Piece {
        let kept = match tier {
            Tier::Hours => true,
            Tier::Minutes => to - from == width && to + SETTLE_MS <= now,
        };
        Piece {
            tier,
            from,
            to,
            kept,
        }
    }

    /// Whether `minute_ms` falls in it.
    pub(super) fn holds(&self, minute_ms: i64) -> bool {
        (self.from..self.to).contains(&minute_ms)
    }
}

/// Splits a read's plan into pieces: hourly ranges at multiples of
/// `hours_width`, minute ranges at multiples of `minutes_width` (whole
/// ones that ended [`SETTLE_MS`] before `now` kept, the ragged rest not).
/// A piece may span two indices (a chart bucket of an odd width across
/// midnight): its signature covers every index it reads.
pub(super) fn pieces(plan: &Plan, hours_width: i64, minutes_width: i64, now: i64) -> Vec<Piece> {
    let mut out = Vec::new();
    for (tier, ranges, width) in [
        (Tier::Hours, &plan.hours, hours_width),
        (Tier::Minutes, &plan.minutes, minutes_width),
    ] {
        for &(a, b) in ranges {
            let mut at = a;
            while at < b {
                let end = ((at.div_euclid(width) + 1) * width).min(b);
                out.push(Piece::new(tier, at, end, width, now));
                at = end;
            }
        }
    }
    out
}

/// `pieces` joined where they meet in the same tier: one range clause per
/// stretch, so a chart of a day in minutes stays far below a search's
/// limit of clauses.
pub(super) fn stretches(pieces: &[Piece]) -> Vec<(Tier, i64, i64)> {
    let mut sorted: Vec<&Piece> = pieces.iter().collect();
    sorted.sort_by_key(|p| (p.tier == Tier::Hours, p.from));
    let mut out: Vec<(Tier, i64, i64)> = Vec::new();
    for p in sorted {
        match out.last_mut() {
            Some((tier, _, to)) if *tier == p.tier && *to == p.from => *to = p.to,
            _ => out.push((p.tier, p.from, p.to)),
        }
    }
    out
}

impl ElasticStore {
    /// The documents' signature of every bucket of `width` (aligned to the
    /// epoch) holding a document that matches `query` in `indices`, by
    /// the bucket's start: one aggregation over the documents' sequence
    /// numbers, index by index (they are counted per shard), about a
    /// tenth of what summing the documents costs.
    pub(super) async fn signatures(
        &self,
        indices: &str,
        query: Value,
        width: i64,
    ) -> Result<HashMap<i64, u64>, StoreError> {
        let aggs = json!({"i": {
            "terms": {"field": "_index", "size": 1_000},
            "aggs": {"t": {
                "date_histogram": {"field": "minute", "fixed_interval": format!("{width}ms"), "min_doc_count": 1},
                "aggs": {"seq": {"max": {"field": "_seq_no"}}},
            }},
        }});
        let res = self.aggregate_whole(indices, query, aggs).await?;
        let mut per_bucket: HashMap<i64, Vec<(&str, u64, i64)>> = HashMap::new();
        for ib in buckets(&res["i"]) {
            let index = ib["key"].as_str().unwrap_or_default();
            for b in buckets(&ib["t"]) {
                let start = b["key"].as_f64().unwrap_or_default() as i64;
                per_bucket.entry(start).or_default().push(part(index, b));
            }
        }
        Ok(per_bucket
            .into_iter()
            .map(|(start, parts)| (start, hash_parts(parts)))
            .collect())
    }
}

impl ElasticStore {
    /// The documents' signature of everything `query` matches in
    /// `indices`, for a read that is kept whole (the marks of hours). A
    /// search of aggregations only, with the same body while nothing is
    /// written, so Elasticsearch's request cache answers it.
    pub(super) async fn whole_signature(
        &self,
        indices: &str,
        query: Value,
    ) -> Result<u64, StoreError> {
        let aggs = json!({"i": {
            "terms": {"field": "_index", "size": 1_000},
            "aggs": {"seq": {"max": {"field": "_seq_no"}}},
        }});
        let res = self.aggregate_whole(indices, query, aggs).await?;
        let parts = buckets(&res["i"])
            .iter()
            .map(|b| part(b["key"].as_str().unwrap_or_default(), b))
            .collect();
        Ok(hash_parts(parts))
    }

    /// Whether answers may be kept: sequence numbers are per shard, so a
    /// signature is exact only with one primary shard per index.
    pub(super) fn keeps_answers(&self) -> bool {
        self.cfg.shards == 1
    }
}

/// One index's part of a signature, from a bucket with `doc_count` and
/// the `seq` maximum: (index, documents, highest sequence number or -1).
fn part<'a>(index: &'a str, b: &Value) -> (&'a str, u64, i64) {
    (
        index,
        b["doc_count"].as_u64().unwrap_or_default(),
        b["seq"]["value"].as_f64().unwrap_or(-1.0) as i64,
    )
}

/// A signature from its indices' parts, in any order.
fn hash_parts(mut parts: Vec<(&str, u64, i64)>) -> u64 {
    parts.sort_unstable();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// What a kept answer answers: the query's shape (what it reads and how
/// it groups) and the piece.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    shape: String,
    tier: Tier,
    from: i64,
    to: i64,
}

impl Key {
    /// A read of `shape` over `[from, to)` kept whole.
    pub(super) fn whole(shape: &str, from: i64, to: i64) -> Key {
        Key {
            shape: shape.to_owned(),
            tier: Tier::Minutes,
            from,
            to,
        }
    }

    pub(super) fn new(shape: &str, p: &Piece) -> Key {
        Key {
            shape: shape.to_owned(),
            tier: p.tier,
            from: p.from,
            to: p.to,
        }
    }
}

struct Entry<V> {
    signature: u64,
    value: Arc<V>,
    weight: usize,
    used: u64,
}

struct Inner<V> {
    entries: HashMap<Key, Entry<V>>,
    weight: usize,
    clock: u64,
}

/// The kept answers of one kind, shared by every read of a store handle,
/// at most `max_weight` of them (the weight of an answer is its rows);
/// the least recently used go first.
pub(super) struct Kept<V> {
    inner: Mutex<Inner<V>>,
    max_weight: usize,
}

impl<V> Kept<V> {
    pub(super) fn new(max_weight: usize) -> Kept<V> {
        Kept {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                weight: 0,
                clock: 0,
            }),
            max_weight,
        }
    }

    /// The kept answer of `key`, if its signature is still `signature`.
    pub(super) fn get(&self, key: &Key, signature: u64) -> Option<Arc<V>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.clock += 1;
        let now = g.clock;
        let e = g.entries.get_mut(key)?;
        if e.signature != signature {
            return None;
        }
        e.used = now;
        Some(e.value.clone())
    }

    /// Keeps an answer of `rows` rows (an empty one weighs one too). Past
    /// the bound, the least recently used go until a tenth is free, in
    /// one pass.
    pub(super) fn put(&self, key: Key, signature: u64, value: Arc<V>, rows: usize) {
        let weight = rows + 1;
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.clock += 1;
        let used = g.clock;
        let entry = Entry {
            signature,
            value,
            weight,
            used,
        };
        if let Some(old) = g.entries.insert(key, entry) {
            g.weight -= old.weight;
        }
        g.weight += weight;
        if g.weight > self.max_weight {
            let mut by_use: Vec<(u64, Key)> =
                g.entries.iter().map(|(k, e)| (e.used, k.clone())).collect();
            by_use.sort_unstable_by_key(|(used, _)| *used);
            let low = self.max_weight - self.max_weight / 10;
            for (_, k) in by_use {
                if g.weight <= low {
                    break;
                }
                if let Some(e) = g.entries.remove(&k) {
                    g.weight -= e.weight;
                }
            }
        }
    }

    /// Answers kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.inner.lock().map(|g| g.entries.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::HOUR_MS;
    use panorama_model::DAY_MS;

    const T0: i64 = 1_796_601_600_000; // a UTC midnight

    fn spans(p: &[Piece]) -> Vec<(Tier, i64, i64, bool)> {
        p.iter()
            .map(|p| {
                (
                    p.tier,
                    (p.from - T0) / MINUTE_MS,
                    (p.to - T0) / MINUTE_MS,
                    p.kept,
                )
            })
            .collect()
    }

    #[test]
    fn hours_split_at_midnight_and_minutes_at_ten_minute_edges() {
        let plan = Plan {
            hours: vec![(T0 - 3 * HOUR_MS, T0 + 2 * HOUR_MS)],
            minutes: vec![(T0 + 2 * HOUR_MS, T0 + 2 * HOUR_MS + 27 * MINUTE_MS)],
        };
        let now = T0 + 2 * HOUR_MS + 27 * MINUTE_MS;
        assert_eq!(
            spans(&pieces(&plan, DAY_MS, BLOCK_MS, now)),
            vec![
                (Tier::Hours, -180, 0, true),
                (Tier::Hours, 0, 120, true),
                (Tier::Minutes, 120, 130, true),
                // Ended 7 minutes ago: settled.
                (Tier::Minutes, 130, 140, true),
                // Ragged and fresh: read every time.
                (Tier::Minutes, 140, 147, false),
            ]
        );
    }

    #[test]
    fn a_piece_of_minutes_is_kept_only_once_whole_and_settled() {
        let plan = Plan::minutes_only(T0 + 3 * MINUTE_MS, T0 + 20 * MINUTE_MS);
        let kept = |now| {
            pieces(&plan, DAY_MS, BLOCK_MS, now)
                .iter()
                .map(|p| p.kept)
                .collect::<Vec<_>>()
        };
        // The ragged first part is never kept; [10, 20) once 22 is past.
        assert_eq!(kept(T0 + 21 * MINUTE_MS), vec![false, false]);
        assert_eq!(kept(T0 + 22 * MINUTE_MS), vec![false, true]);
        // Chart buckets of five minutes.
        let p = pieces(&plan, HOUR_MS, 5 * MINUTE_MS, T0 + HOUR_MS);
        assert_eq!(
            spans(&p),
            vec![
                (Tier::Minutes, 3, 5, false),
                (Tier::Minutes, 5, 10, true),
                (Tier::Minutes, 10, 15, true),
                (Tier::Minutes, 15, 20, true),
            ]
        );
    }

    #[test]
    fn pieces_that_meet_make_one_stretch() {
        let plan = Plan {
            hours: vec![(T0 - 3 * HOUR_MS, T0 + 2 * HOUR_MS)],
            minutes: vec![(T0 + 2 * HOUR_MS, T0 + 2 * HOUR_MS + 27 * MINUTE_MS)],
        };
        let p = pieces(&plan, DAY_MS, BLOCK_MS, T0 + DAY_MS);
        assert_eq!(
            stretches(&p),
            vec![
                (
                    Tier::Minutes,
                    T0 + 2 * HOUR_MS,
                    T0 + 2 * HOUR_MS + 27 * MINUTE_MS
                ),
                (Tier::Hours, T0 - 3 * HOUR_MS, T0 + 2 * HOUR_MS),
            ]
        );
        // A gap keeps two stretches.
        assert_eq!(stretches(&[p[2], p[4]]).len(), 2);
    }

    #[test]
    fn a_changed_signature_is_a_miss_and_room_is_bounded() {
        let c: Kept<u32> = Kept::new(4);
        let piece = |i: i64| Piece {
            tier: Tier::Minutes,
            from: T0 + i * BLOCK_MS,
            to: T0 + (i + 1) * BLOCK_MS,
            kept: true,
        };
        let k = Key::new("url", &piece(0));
        c.put(k.clone(), 7, Arc::new(1), 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&k, 7).as_deref(), Some(&1));
        assert!(c.get(&k, 8).is_none(), "another signature is a miss");
        c.put(Key::new("url", &piece(1)), 7, Arc::new(2), 1);
        assert!(c.get(&k, 7).is_some(), "the first is the most recent now");
        c.put(Key::new("url", &piece(2)), 7, Arc::new(3), 1);
        assert_eq!(c.len(), 2);
        assert!(
            c.get(&Key::new("url", &piece(1)), 7).is_none(),
            "the least recently used went"
        );
    }
}
