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
}

impl Aggregator {
    /// An empty aggregator for collector `collector`.
    pub fn new(collector: impl Into<String>, limits: SampleLimits) -> Aggregator {
        Aggregator {
            collector: collector.into(),
            limits,
            entries: BTreeMap::new(),
            layers: BTreeMap::new(),
            scratch: Vec::new(),
        }
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

    /// Forgets every segment up to `id` (its documents are in the store).
    pub fn release_through(&mut self, id: SegmentId) {
        self.entries.retain(|s, _| *s > id);
        self.layers.retain(|s, _| *s > id);
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
