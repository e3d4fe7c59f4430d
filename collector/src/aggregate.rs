//! Per-minute aggregation: events in, rollups and samples out.
//!
//! State is keyed by (WAL segment, minute, series). Keeping the segment in
//! the key is what makes crash recovery exact: replaying a segment rebuilds
//! its entries from scratch, and the document ids (which carry the segment
//! as [`Rollup::part`]) make the rewrite idempotent. An entry is *dirty*
//! when it changed since it was last written; the flusher writes dirty
//! entries whose minute has passed the grace period, and a segment whose
//! entries are all clean (and that no longer takes appends) can be deleted.
//!
//! Beside each series' entry, every event also goes into its layer's
//! whole-layer entry of the same (segment, minute), written with
//! [`panorama_store::Store::write_layer_rollups`]: the layer's own latency
//! histogram, which the dashboard cannot get by summing series. It follows
//! the same versions and segments, so it is exactly as exact.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use panorama_model::{Event, Layer, Outcome, Rollup, Sample, SampleKind, SeriesKey, minute_of};

use panorama_store::HourPartial;
use panorama_store::compact::HourPartialBuilder;
use panorama_store::tier::{HOUR_MS, hour_of};

use crate::wal::SegmentId;

/// Limits on what one entry keeps for drill-down.
#[derive(Debug, Clone, Copy)]
pub struct SampleLimits {
    /// Error lines kept per series, minute and segment.
    pub errors: usize,
    /// Slowest requests kept per series, minute and segment.
    pub slowest: usize,
}

impl Default for SampleLimits {
    fn default() -> SampleLimits {
        SampleLimits {
            errors: 5,
            slowest: 5,
        }
    }
}

struct Entry {
    rollup: Rollup,
    errors: Vec<Sample>,
    slowest: Vec<Sample>,
    /// Bumped on every change; the entry is dirty while it differs from
    /// `written`. A version, not a flag, because events keep arriving while
    /// a flush is in flight: only the version that was written turns clean.
    version: u64,
    written: u64,
    /// Events of this entry already in the store, for loss accounting.
    written_count: u64,
}

impl Entry {
    fn dirty(&self) -> bool {
        self.version != self.written
    }
}

/// What one flush should write.
#[derive(Debug, Default)]
pub struct Ready {
    /// Rollups to write.
    pub rollups: Vec<Rollup>,
    /// Samples to write.
    pub samples: Vec<Sample>,
    /// The entries these came from (segment, minute, series hash) and their
    /// versions, to mark clean once written.
    pub keys: Vec<(SegmentId, i64, u128, u64)>,
    /// Whole-layer rollups to write.
    pub layer_rollups: Vec<Rollup>,
    /// Their entries (segment, minute, layer) and versions.
    pub layer_keys: Vec<(SegmentId, i64, Layer, u64)>,
}

impl Ready {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.rollups.is_empty() && self.layer_rollups.is_empty()
    }
}

/// A whole-layer entry: no samples (the series' entries keep those) and no
/// loss accounting (its events are the series' events again).
struct LayerEntry {
    rollup: Rollup,
    version: u64,
    written: u64,
}

impl LayerEntry {
    fn dirty(&self) -> bool {
        self.version != self.written
    }
}

/// Keys are (minute, XXH3-128 of the series): already uniformly spread, so
/// hashing them again with SipHash would only cost time on the hot path.
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 ^= (v as u64) ^ ((v >> 64) as u64);
    }

    fn write_i64(&mut self, v: i64) {
        self.0 = (self.0 ^ v as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type EntryMap = HashMap<(i64, u128), Entry, BuildHasherDefault<FoldHasher>>;
type LayerMap = HashMap<(i64, Layer), LayerEntry, BuildHasherDefault<FoldHasher>>;

/// Whether a layer gets whole-layer rollups. Infra series are gauges of
/// unlike quantities (CPU percent, bytes, load) whose merge means nothing,
/// and carry no latency.
fn has_whole_layer(layer: Layer) -> bool {
    layer != Layer::Infra
}

/// The aggregation state of one collector.
pub struct Aggregator {
    collector: String,
    limits: SampleLimits,
    entries: BTreeMap<SegmentId, EntryMap>,
    layers: BTreeMap<SegmentId, LayerMap>,
    scratch: Vec<u8>,
    partials: Partials,
}

/// This collector's partials of hours (see [`panorama_store::compact`]):
/// each hour merged from the final state of every entry of it, which is
/// what the store holds of the hour from this collector. Entries are
/// folded in as their segments are released (written, and never to
/// change); the hour's entries still held are added when the partial is
/// taken.
///
/// A partial must never hold an event the store does not: so only hours
/// that began after this collector started (it saw all of them), never an
/// hour with a document the store refused, and each hour once.
struct Partials {
    /// The first hour this collector can write a partial of.
    from: i64,
    building: BTreeMap<i64, HourPartialBuilder>,
    /// Hours with no partial to build any more (the newest few): written,
    /// spoiled by a document the store refused, or missing entries that
    /// found no room to be folded in.
    closed: std::collections::BTreeSet<i64>,
}

/// Adds a minute rollup to its hour's partial, as a series' or a whole
/// layer's.
fn fold(partial: &mut HourPartialBuilder, r: &Rollup, whole_layer: bool) {
    if whole_layer {
        partial.add_layer(r);
    } else {
        partial.add(r);
    }
}

impl Partials {
    /// No partial of `hour` from now on.
    fn close(&mut self, hour: i64) {
        self.closed.insert(hour);
        // Hours this old have been compacted (or read from their minutes)
        // long ago; an entry of one released now is a late one anyway.
        while self.closed.len() > 48 {
            self.closed.pop_first();
        }
    }
}

/// Unwritten partials kept at most (oldest dropped first): a store that is
/// down for hours should not make the collector hold an hour of every
/// series for each of them.
const MAX_BUILDING: usize = 3;

impl Aggregator {
    /// An empty aggregator for collector `collector`.
    pub fn new(collector: impl Into<String>, limits: SampleLimits) -> Aggregator {
        Aggregator {
            collector: collector.into(),
            limits,
            entries: BTreeMap::new(),
            layers: BTreeMap::new(),
            scratch: Vec::new(),
            partials: Partials {
                from: i64::MAX,
                building: BTreeMap::new(),
                closed: Default::default(),
            },
        }
    }

    /// Builds partials of the hours that begin after `started_ms`, the
    /// moment this collector started (before its WAL was replayed).
    pub fn write_partials_after(&mut self, started_ms: i64) {
        self.partials.from = hour_of(started_ms) + HOUR_MS;
    }

    fn building(&mut self, hour: i64) -> Option<&mut HourPartialBuilder> {
        let p = &mut self.partials;
        if hour < p.from || p.closed.contains(&hour) {
            return None;
        }
        if !p.building.contains_key(&hour) {
            while p.building.len() >= MAX_BUILDING {
                let oldest = *p.building.keys().next().expect("not empty");
                // Whichever goes is closed for good: built later, it would
                // lack what was folded in (or not) meanwhile. The
                // compactor reads its minutes.
                if oldest > hour {
                    p.close(hour);
                    return None;
                }
                p.building.remove(&oldest);
                p.close(oldest);
            }
        }
        let collector = &self.collector;
        Some(
            p.building
                .entry(hour)
                .or_insert_with(|| HourPartialBuilder::new(hour, collector.clone())),
        )
    }

    /// Records that documents of these minutes were refused for good: their
    /// hours get no partial.
    pub fn spoil_minutes(&mut self, minutes: impl IntoIterator<Item = i64>) {
        let hours: std::collections::BTreeSet<i64> = minutes.into_iter().map(hour_of).collect();
        for h in hours {
            self.partials.building.remove(&h);
            self.partials.close(h);
        }
    }

    /// The partials of hours that are complete: past `grace_ms` before
    /// `now_ms` (as [`Aggregator::ready`] judges minutes) with none of their
    /// entries waiting to be written. Once written, call
    /// [`Aggregator::partial_written`].
    pub fn partials_due(&mut self, now_ms: i64, grace_ms: i64) -> Vec<HourPartial> {
        let done = |h: i64| h + HOUR_MS + grace_ms <= now_ms;
        let mut hours: std::collections::BTreeSet<i64> = self
            .partials
            .building
            .keys()
            .copied()
            .filter(|h| done(*h))
            .collect();
        let mut held: std::collections::BTreeSet<i64> = Default::default();
        let mut waiting: std::collections::BTreeSet<i64> = Default::default();
        for (minute, _, _, dirty) in self.held() {
            held.insert(hour_of(minute));
            if dirty {
                waiting.insert(hour_of(minute));
            }
        }
        hours.extend(held.into_iter().filter(|h| done(*h)));
        let mut out = Vec::new();
        for h in hours {
            if waiting.contains(&h) {
                continue;
            }
            let Some(b) = self.building(h) else {
                continue;
            };
            let mut partial = b.clone();
            for (minute, rollup, whole, _) in self.held() {
                if hour_of(minute) == h {
                    fold(&mut partial, rollup, whole);
                }
            }
            if partial.events() > 0 {
                out.push(partial.finish());
            }
        }
        out
    }

    /// Every entry held: its minute, rollup, whether it is a whole layer's,
    /// and whether it waits to be written.
    fn held(&self) -> impl Iterator<Item = (i64, &Rollup, bool, bool)> + '_ {
        let series = self
            .entries
            .values()
            .flat_map(|s| s.iter())
            .map(|((m, _), e)| (*m, &e.rollup, false, e.dirty()));
        let layers = self
            .layers
            .values()
            .flat_map(|s| s.iter())
            .map(|((m, _), e)| (*m, &e.rollup, true, e.dirty()));
        series.chain(layers)
    }

    /// Records that the partial of `hour` is in the store: it is not
    /// written again, and entries of it released later are not kept.
    pub fn partial_written(&mut self, hour: i64) {
        self.partials.building.remove(&hour);
        self.partials.close(hour);
    }

    /// Counts an event that is durable in `segment`.
    pub fn add(&mut self, segment: SegmentId, e: &Event) {
        let minute = minute_of(e.ts_ms);
        if has_whole_layer(e.layer) {
            let whole = self
                .layers
                .entry(segment)
                .or_default()
                .entry((minute, e.layer))
                .or_insert_with(|| {
                    let mut rollup = Rollup::empty(
                        minute,
                        SeriesKey::whole_layer(e.layer),
                        self.collector.clone(),
                    );
                    rollup.part = segment.0;
                    LayerEntry {
                        rollup,
                        version: 0,
                        written: 0,
                    }
                });
            whole.rollup.add(e);
            whole.version += 1;
        }
        let hash = e.series_hash(&mut self.scratch);
        let seg = self.entries.entry(segment).or_default();
        let entry = seg.entry((minute, hash)).or_insert_with(|| {
            let mut rollup = Rollup::empty(minute, e.series_key(), self.collector.clone());
            rollup.part = segment.0;
            Entry {
                rollup,
                errors: Vec::new(),
                slowest: Vec::new(),
                version: 0,
                written: 0,
                written_count: 0,
            }
        });
        entry.rollup.add(e);
        entry.version += 1;
        let sample = |kind| Sample {
            minute_ms: minute,
            key: entry.rollup.key.clone(),
            collector: self.collector.clone(),
            part: segment.0,
            kind,
            seq: 0,
            ts_ms: e.ts_ms,
            latency_ms: e.latency_ms,
            code: match &e.outcome {
                Outcome::Error(code) => code.clone(),
                Outcome::Ok => None,
            },
            raw: e.raw.clone().unwrap_or_default(),
            fields: e.dims.clone(),
        };
        if !e.outcome.is_ok() && entry.errors.len() < self.limits.errors {
            let mut s = sample(SampleKind::Error);
            s.seq = entry.errors.len() as u32;
            entry.errors.push(s);
        }
        if let Some(ms) = e.latency_ms.filter(|_| self.limits.slowest > 0) {
            let fastest_kept = entry
                .slowest
                .iter()
                .map(|s| s.latency_ms.unwrap_or(0.0))
                .fold(f64::INFINITY, f64::min);
            if entry.slowest.len() < self.limits.slowest || ms > fastest_kept {
                if entry.slowest.len() >= self.limits.slowest {
                    // Replace the fastest of the kept ones.
                    if let Some(pos) = entry
                        .slowest
                        .iter()
                        .position(|s| s.latency_ms.unwrap_or(0.0) == fastest_kept)
                    {
                        entry.slowest.swap_remove(pos);
                    }
                }
                entry.slowest.push(sample(SampleKind::Slow));
            }
        }
    }

    /// Dirty entries whose minute ended at least `grace_ms` before `now_ms`,
    /// or every dirty entry when `all` (shutdown, or a store catching up).
    pub fn ready(&self, now_ms: i64, grace_ms: i64, all: bool) -> Ready {
        let mut out = Ready::default();
        for (segment, entries) in &self.entries {
            for ((minute, hash), entry) in entries {
                if !entry.dirty() || (!all && minute + 60_000 + grace_ms > now_ms) {
                    continue;
                }
                out.rollups.push(entry.rollup.clone());
                let mut slowest = entry.slowest.clone();
                slowest.sort_by(|a, b| {
                    b.latency_ms
                        .unwrap_or(0.0)
                        .total_cmp(&a.latency_ms.unwrap_or(0.0))
                });
                for (i, s) in slowest.iter_mut().enumerate() {
                    s.seq = i as u32;
                }
                out.samples.extend(entry.errors.iter().cloned());
                out.samples.extend(slowest);
                out.keys.push((*segment, *minute, *hash, entry.version));
            }
        }
        for (segment, entries) in &self.layers {
            for ((minute, layer), entry) in entries {
                if !entry.dirty() || (!all && minute + 60_000 + grace_ms > now_ms) {
                    continue;
                }
                out.layer_rollups.push(entry.rollup.clone());
                out.layer_keys
                    .push((*segment, *minute, *layer, entry.version));
            }
        }
        out
    }

    /// Records that these versions of whole-layer entries are in the store.
    pub fn layers_written(&mut self, keys: &[(SegmentId, i64, Layer, u64)]) {
        for (segment, minute, layer, version) in keys {
            if let Some(e) = self
                .layers
                .get_mut(segment)
                .and_then(|s| s.get_mut(&(*minute, *layer)))
            {
                e.written = e.written.max(*version);
            }
        }
    }

    /// Records that these versions of their entries are in the store, with
    /// the counts they carried (`counts[i]` belongs to `keys[i]`). An entry
    /// that changed since [`Aggregator::ready`] stays dirty. Returns, per
    /// minute, how many more events the store now holds.
    pub fn written(
        &mut self,
        keys: &[(SegmentId, i64, u128, u64)],
        counts: &[u64],
    ) -> BTreeMap<i64, u64> {
        let mut newly = BTreeMap::new();
        for ((segment, minute, hash, version), count) in keys.iter().zip(counts) {
            if let Some(e) = self
                .entries
                .get_mut(segment)
                .and_then(|s| s.get_mut(&(*minute, *hash)))
            {
                e.written = e.written.max(*version);
                if *count > e.written_count {
                    *newly.entry(*minute).or_default() += count - e.written_count;
                    e.written_count = *count;
                }
            }
        }
        newly
    }

    /// Minutes with entries not yet written, for the accounting's "pending".
    pub fn dirty_minutes(&self) -> std::collections::BTreeSet<i64> {
        self.entries
            .values()
            .flat_map(|s| s.iter())
            .filter(|(_, e)| e.dirty())
            .map(|((m, _), _)| *m)
            .collect()
    }

    /// The start of the oldest minute still waiting to be written, for the
    /// flush-lag figure.
    pub fn oldest_dirty_minute(&self) -> Option<i64> {
        self.entries
            .values()
            .flat_map(|s| s.iter())
            .filter(|(_, e)| e.dirty())
            .map(|((m, _), _)| *m)
            .min()
    }

    /// The newest segment below `open` all of whose entries are written:
    /// the WAL may delete everything up to it. Stops at the first segment
    /// still dirty, because segments are deleted in order.
    pub fn releasable(&self, open: SegmentId) -> Option<SegmentId> {
        let mut last = None;
        for (segment, entries) in &self.entries {
            let layers_dirty = self
                .layers
                .get(segment)
                .is_some_and(|l| l.values().any(LayerEntry::dirty));
            if *segment >= open || layers_dirty || entries.values().any(Entry::dirty) {
                break;
            }
            last = Some(*segment);
        }
        last
    }

    /// Forgets every segment up to `id` (its documents are in the store),
    /// folding its entries into the partials of their hours.
    pub fn release_through(&mut self, id: SegmentId) {
        let released: Vec<SegmentId> = self.entries.range(..=id).map(|(s, _)| *s).collect();
        for seg in released {
            if let Some(entries) = self.entries.remove(&seg) {
                for ((minute, _), e) in entries {
                    if let Some(b) = self.building(hour_of(minute)) {
                        fold(b, &e.rollup, false);
                    }
                }
            }
        }
        let released: Vec<SegmentId> = self.layers.range(..=id).map(|(s, _)| *s).collect();
        for seg in released {
            if let Some(entries) = self.layers.remove(&seg) {
                for ((minute, _), e) in entries {
                    if let Some(b) = self.building(hour_of(minute)) {
                        fold(b, &e.rollup, true);
                    }
                }
            }
        }
    }

    /// Entries held, for `/metrics`.
    pub fn len(&self) -> usize {
        self.entries.values().map(EntryMap::len).sum()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dirty entries, the store backlog for `/health`.
    pub fn dirty(&self) -> usize {
        self.entries
            .values()
            .flat_map(|s| s.values())
            .filter(|e| e.dirty())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use panorama_model::Layer;
    use proptest::prelude::*;

    fn ev(ts: i64, name: &str, ok: bool, lat: f64) -> Event {
        let mut e = Event::new(ts, Layer::Url, "svc", "h1", name);
        if !ok {
            e.outcome = Outcome::Error(Some("500".into()));
            e.raw = Some(format!("{name} failed at {ts}"));
        }
        e.latency_ms = Some(lat);
        e
    }

    #[test]
    fn minutes_wait_for_grace_and_clean_segments_are_released() {
        let mut a = Aggregator::new("c1", SampleLimits::default());
        a.add(SegmentId(1), &ev(60_000, "a", true, 5.0));
        a.add(SegmentId(1), &ev(61_000, "a", false, 9.0));
        a.add(SegmentId(2), &ev(125_000, "b", true, 1.0));
        assert!(a.ready(120_000 + 14_999, 15_000, false).rollups.is_empty());
        let r = a.ready(135_000, 15_000, false);
        assert_eq!(r.rollups.len(), 1);
        assert_eq!(
            (r.rollups[0].count, r.rollups[0].errors, r.rollups[0].part),
            (2, 1, 1)
        );
        assert_eq!(
            r.samples
                .iter()
                .filter(|s| s.kind == SampleKind::Error)
                .count(),
            1
        );
        assert_eq!(a.releasable(SegmentId(3)), None, "not written yet");
        // An event arriving while the flush is in flight keeps the entry dirty.
        a.add(SegmentId(1), &ev(62_000, "a", true, 1.0));
        a.layers_written(&r.layer_keys);
        let w = a.written(
            &r.keys,
            &r.rollups.iter().map(|r| r.count).collect::<Vec<_>>(),
        );
        assert_eq!(w.get(&60_000), Some(&2));
        assert_eq!(a.releasable(SegmentId(3)), None, "changed during the flush");
        let again = a.ready(135_000, 15_000, false);
        assert_eq!(again.rollups[0].count, 3);
        assert_eq!(again.layer_rollups[0].count, 3);
        a.layers_written(&again.layer_keys);
        let w = a.written(
            &again.keys,
            &again.rollups.iter().map(|r| r.count).collect::<Vec<_>>(),
        );
        assert_eq!(
            w.get(&60_000),
            Some(&1),
            "only the new event is newly written"
        );
        assert_eq!(a.releasable(SegmentId(3)), Some(SegmentId(1)));
        assert_eq!(a.releasable(SegmentId(1)), None, "segment 1 still open");
        a.release_through(SegmentId(1));
        assert_eq!(a.len(), 1);
    }

    /// Writes every dirty entry (as a flush that succeeds does).
    fn flush(a: &mut Aggregator) -> Ready {
        let r = a.ready(0, 0, true);
        a.layers_written(&r.layer_keys);
        a.written(
            &r.keys,
            &r.rollups.iter().map(|r| r.count).collect::<Vec<_>>(),
        );
        r
    }

    /// A collector's partial of an hour holds every event of the hour it
    /// wrote, whether its segment was released before (folded in) or is
    /// still held; it waits for the grace and for dirty entries, comes once,
    /// and never for an hour the collector did not see from its start or
    /// with a document the store refused.
    #[test]
    fn partials_hold_every_written_event_of_hours_seen_whole() {
        const H: i64 = 10 * HOUR_MS;
        let mut a = Aggregator::new("c1", SampleLimits::default());
        a.write_partials_after(H - 30 * 60_000);
        // Before the collector started's hour: never a partial.
        a.add(SegmentId(1), &ev(H - 60_000, "a", true, 5.0));
        a.add(SegmentId(1), &ev(H + 60_000, "a", true, 5.0));
        a.add(SegmentId(1), &ev(H + 61_000, "b", false, 9.0));
        flush(&mut a);
        a.release_through(SegmentId(1));
        a.add(SegmentId(2), &ev(H + 30 * 60_000, "a", true, 7.0));
        a.add(SegmentId(2), &ev(H + HOUR_MS + 5_000, "a", true, 1.0));
        flush(&mut a);
        let grace = 15_000;
        assert!(
            a.partials_due(H + HOUR_MS + grace - 1, grace).is_empty(),
            "in the grace"
        );
        // A late event of the hour, not yet written: the partial waits.
        a.add(SegmentId(2), &ev(H + 59 * 60_000, "c", true, 3.0));
        assert!(
            a.partials_due(H + HOUR_MS + grace, grace).is_empty(),
            "a dirty entry"
        );
        flush(&mut a);
        let due = a.partials_due(H + HOUR_MS + grace, grace);
        assert_eq!(due.len(), 1, "{due:?}");
        let p = &due[0];
        assert_eq!((p.hour_ms, p.collector.as_str()), (H, "c1"));
        let count = |name: &str| {
            p.series
                .iter()
                .find(|r| r.key.name == name)
                .map(|r| (r.count, r.errors))
        };
        assert_eq!(count("a"), Some((2, 0)), "one released, one held");
        assert_eq!(count("b"), Some((1, 1)));
        assert_eq!(count("c"), Some((1, 0)));
        assert_eq!(p.layers.len(), 1);
        assert_eq!(p.layers[0].count, 4, "the whole url layer");
        assert_eq!(p.events(), 8);
        assert!(p.series.iter().all(|r| r.minute_ms == H && r.part == 0));
        a.partial_written(H);
        let next = a.partials_due(H + 2 * HOUR_MS + grace, grace);
        assert_eq!(
            next.iter().map(|p| p.hour_ms).collect::<Vec<_>>(),
            vec![H + HOUR_MS],
            "only the next hour"
        );
        a.add(SegmentId(3), &ev(H + 2 * 60_000, "a", true, 1.0));
        flush(&mut a);
        assert!(
            a.partials_due(H + 2 * HOUR_MS + grace, grace)
                .iter()
                .all(|p| p.hour_ms != H),
            "written once: later events of the hour are for the compactor to find"
        );

        // A refused document: no partial of its hour.
        a.add(SegmentId(3), &ev(H + 2 * HOUR_MS + 60_000, "a", true, 1.0));
        let r = flush(&mut a);
        a.spoil_minutes(r.rollups.iter().map(|r| r.minute_ms));
        assert!(
            a.partials_due(H + 3 * HOUR_MS + grace, grace)
                .iter()
                .all(|p| p.hour_ms != H + 2 * HOUR_MS)
        );
    }

    /// An hour that finds no room among the partials being built (events
    /// stamped hours ahead hold them) is closed for good, not built later
    /// without what was released meanwhile; a refused document closes its
    /// hour even when it found no room.
    #[test]
    fn an_hour_without_room_or_with_a_refusal_gets_no_partial() {
        const H: i64 = 10 * HOUR_MS;
        let grace = 15_000;
        let mut a = Aggregator::new("c1", SampleLimits::default());
        a.write_partials_after(H - 60_000);
        for k in 2..5 {
            a.add(SegmentId(1), &ev(H + k * HOUR_MS, "ahead", true, 1.0));
        }
        a.add(SegmentId(1), &ev(H + 60_000, "a", true, 1.0));
        flush(&mut a);
        a.release_through(SegmentId(1));
        a.add(SegmentId(2), &ev(H + 2 * 60_000, "a", true, 1.0));
        let r = flush(&mut a);
        a.spoil_minutes(r.rollups.iter().map(|r| r.minute_ms));
        a.release_through(SegmentId(2));
        let due = a.partials_due(H + HOUR_MS + grace, grace);
        assert!(due.iter().all(|p| p.hour_ms != H), "{due:?}");
    }

    #[test]
    fn whole_layer_entries_follow_their_series() {
        let mut a = Aggregator::new("c1", SampleLimits::default());
        a.add(SegmentId(1), &ev(60_000, "a", true, 5.0));
        a.add(SegmentId(1), &ev(61_000, "b", false, 9.0));
        a.add(SegmentId(2), &ev(62_000, "a", true, 1.0));
        let mut cpu = Event::new(60_500, Layer::Infra, "svc", "h1", "host.cpu.busy");
        cpu.value = Some(42.0);
        a.add(SegmentId(1), &cpu);
        let r = a.ready(0, 0, true);
        let mut whole: Vec<(u64, u64, u64, &str)> = r
            .layer_rollups
            .iter()
            .map(|w| (w.part, w.count, w.errors, w.key.name.as_str()))
            .collect();
        whole.sort();
        assert_eq!(
            whole,
            vec![(1, 2, 1, ""), (2, 1, 0, "")],
            "one per (segment, minute) of the url layer; none for infra"
        );
        assert!(
            r.layer_rollups
                .iter()
                .all(|w| w.key == SeriesKey::whole_layer(Layer::Url))
        );
        let seg1 = r.layer_rollups.iter().find(|w| w.part == 1).unwrap();
        assert_eq!(seg1.latency_max_ms, Some(9.0));
        // Series written but the layer not yet: segment 1 is not releasable.
        let counts: Vec<u64> = r.rollups.iter().map(|r| r.count).collect();
        a.written(&r.keys, &counts);
        assert_eq!(
            a.releasable(SegmentId(3)),
            None,
            "whole-layer entries unwritten"
        );
        a.layers_written(&r.layer_keys);
        assert_eq!(a.releasable(SegmentId(3)), Some(SegmentId(2)));
        assert!(a.ready(0, 0, true).is_empty());
    }

    #[test]
    fn keeps_the_slowest() {
        let mut a = Aggregator::new(
            "c1",
            SampleLimits {
                errors: 0,
                slowest: 3,
            },
        );
        for (i, lat) in [5.0, 50.0, 1.0, 70.0, 2.0, 60.0].into_iter().enumerate() {
            a.add(SegmentId(1), &ev(i as i64, "a", true, lat));
        }
        let r = a.ready(0, 0, true);
        let lats: Vec<f64> = r.samples.iter().map(|s| s.latency_ms.unwrap()).collect();
        assert_eq!(lats, vec![70.0, 60.0, 50.0]);
        assert_eq!(
            r.samples.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    proptest! {
        /// Aggregating in any split and order equals aggregating at once:
        /// per (minute, series), the merge of every part's rollup is the
        /// same whatever segments the events were spread over.
        #[test]
        fn any_split_and_order_gives_the_same_counts(
            events in prop::collection::vec((0i64..300_000, 0usize..3, any::<bool>(), 0.1f64..1000.0), 1..300),
            segs in prop::collection::vec(1u64..5, 300),
            shuffle_seed in any::<u64>(),
        ) {
            let names = ["a", "b", "c"];
            let evs: Vec<Event> = events.iter().map(|(ts, n, ok, lat)| ev(*ts, names[*n], *ok, *lat)).collect();
            let mut once = Aggregator::new("c1", SampleLimits::default());
            for e in &evs {
                once.add(SegmentId(1), e);
            }
            let mut order: Vec<usize> = (0..evs.len()).collect();
            let mut x = shuffle_seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut split = Aggregator::new("c1", SampleLimits::default());
            for (k, &i) in order.iter().enumerate() {
                split.add(SegmentId(segs[k % segs.len()]), &evs[i]);
            }
            let merged = |a: &Aggregator| {
                let mut m: BTreeMap<(i64, String), Rollup> = BTreeMap::new();
                for r in a.ready(0, 0, true).rollups {
                    m.entry((r.minute_ms, r.key.name.clone()))
                        .and_modify(|acc| acc.merge(&r))
                        .or_insert(r);
                }
                m.into_iter().map(|(k, r)| (k, r.count, r.errors, r.histogram.clone(), r.latency_max_ms)).collect::<Vec<_>>()
            };
            prop_assert_eq!(merged(&once), merged(&split));
            // The whole layer of a minute is the merge of its series.
            let whole = |a: &Aggregator| {
                let mut m: BTreeMap<i64, Rollup> = BTreeMap::new();
                for r in a.ready(0, 0, true).layer_rollups {
                    m.entry(r.minute_ms).and_modify(|acc| acc.merge(&r)).or_insert(r);
                }
                m.into_iter().map(|(k, r)| (k, r.count, r.errors, r.histogram.clone(), r.latency_max_ms)).collect::<Vec<_>>()
            };
            let mut of_series: BTreeMap<i64, Rollup> = BTreeMap::new();
            for r in once.ready(0, 0, true).rollups {
                of_series.entry(r.minute_ms).and_modify(|acc| acc.merge(&r)).or_insert(r);
            }
            let of_series: Vec<_> = of_series.into_iter().map(|(k, r)| (k, r.count, r.errors, r.histogram.clone(), r.latency_max_ms)).collect();
            prop_assert_eq!(whole(&split), of_series);
        }
    }
}
