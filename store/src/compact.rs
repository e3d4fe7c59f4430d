//! Compaction: hourly rollups built from minute rollups, for any [`Store`].
//!
//! [`compact_hour`] reads every minute rollup of one hour (every collector,
//! every part, series and whole layers), merges them per series — counts
//! add, histograms merge — and writes one hourly document per (hour,
//! series) under a deterministic id, then the hour's [`HourMark`].
//! [`compact_due`] is one pass of the compactor: it compares, per hour, the
//! events the minute tier holds now with the events the hour's mark says it
//! was built from, and compacts every hour that is new or has grown (late
//! minutes), oldest first.
//!
//! # Several collectors, no lease
//!
//! Every collector may run the compactor over the same store at the same
//! time. There is no lease to hold: a lease needs clocks that agree and an
//! expiry, and a compactor paused past its lease still writes. Instead a
//! double compaction is made harmless: hourly documents have deterministic
//! ids, so two compactors write the same documents rather than two
//! copies, and a write never replaces a document built from more events
//! with one built from fewer (Elasticsearch: external versions equal to the
//! events; SQLite: a guarded upsert), so whichever interleaving of two
//! passes, the hour ends holding its fullest view. The cost of a race is
//! work done twice, never a count.

use std::collections::{BTreeMap, HashSet};

use panorama_model::Rollup;

use crate::tier::{CompactedHour, HOUR_MS, HOURLY_COLLECTOR, HourMark, HourPartial, hour_of};
use crate::{Store, StoreError};

/// What a compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Hours compacted (first time or again), oldest first.
    pub hours: Vec<i64>,
    /// Of them, hours compacted again because late minutes arrived.
    pub recompacted: Vec<i64>,
    /// Hourly series documents written.
    pub series_docs: u64,
    /// Hours due but left for the next pass (the pass's limit).
    pub left: usize,
    /// Of the hours compacted, those built from the collectors' partials.
    pub from_partials: Vec<i64>,
    /// Hours just due whose partials did not (yet) cover them: left for a
    /// later pass, up to [`PARTIAL_WAIT_MS`] after they became due.
    pub waiting: Vec<i64>,
}

/// How long an hour that just became due waits for the collectors'
/// partials (each writes its partial at its first flush once the hour is
/// past the grace) before its minutes are read instead.
pub const PARTIAL_WAIT_MS: i64 = 5 * 60_000;

/// Merges minute rollups into hourly ones: one per series key (host and
/// dims included), minute set to the hour, collector [`HOURLY_COLLECTOR`].
/// The same document read twice (a page boundary, two indices) counts once.
pub fn merge_hour(hour_ms: i64, minutes: Vec<Rollup>) -> Vec<Rollup> {
    let mut m = HourMerger::new(hour_ms);
    for r in minutes {
        m.add(r);
    }
    m.finish()
}

/// [`merge_hour`] one rollup at a time, so a backend can merge an hour as
/// it reads it: an hour of 10,000 series is 600,000 minute rollups, which
/// held at once took over a gigabyte; merged as they come, only the
/// 10,000 hourly ones are held.
pub struct HourMerger {
    hour_ms: i64,
    /// Hourly rollups by series hash (the number behind a series' id, so
    /// the order is the ids' order).
    by_key: BTreeMap<u128, Rollup>,
    /// What a document id is made of, for the documents seen: minute,
    /// series hash, collector (an index into `collectors`) and part.
    seen: HashSet<(i64, u128, usize, u64)>,
    /// The distinct collector names of the hour (a handful).
    collectors: Vec<String>,
    scratch: Vec<u8>,
}

impl HourMerger {
    /// An empty merge of the hour starting at `hour_ms`.
    pub fn new(hour_ms: i64) -> HourMerger {
        HourMerger {
            hour_ms,
            by_key: BTreeMap::new(),
            seen: HashSet::new(),
            collectors: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Adds one minute rollup of the hour; a document already added is skipped.
    pub fn add(&mut self, r: Rollup) {
        let key = r.key.hash128(&mut self.scratch);
        let collector = match self.collectors.iter().position(|c| *c == r.collector) {
            Some(i) => i,
            None => {
                self.collectors.push(r.collector.clone());
                self.collectors.len() - 1
            }
        };
        if !self.seen.insert((r.minute_ms, key, collector, r.part)) {
            return;
        }
        match self.by_key.get_mut(&key) {
            Some(acc) => acc.merge(&r),
            None => {
                let mut acc = r;
                acc.minute_ms = self.hour_ms;
                acc.collector = HOURLY_COLLECTOR.to_owned();
                acc.part = 0;
                self.by_key.insert(key, acc);
            }
        }
    }

    /// The hourly rollups, in the order of their series ids.
    pub fn finish(self) -> Vec<Rollup> {
        self.by_key.into_values().collect()
    }
}

/// What an hour's hourly documents were built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltFrom {
    /// The collectors' partials: they held every event of the hour's minutes.
    Partials,
    /// The hour's minute documents, read and merged.
    Minutes,
}

/// Compacts one hour of `store`: merges the collectors' partials of the
/// hour if they hold exactly the events of its minutes, else reads and
/// merges its minutes; writes its hourly documents and then its mark.
/// Idempotent: compacting an unchanged hour again writes the same
/// documents.
///
/// # When the partials are used
///
/// A collector writes its partial of an hour once, from the very rollups
/// it wrote as the hour's minutes, and only if every one of them was
/// accepted by the store (see `Aggregator` in the collector). A partial can
/// therefore miss events (the collector restarted during the hour and
/// forgot what it had written before, or minutes arrived late, after the
/// partial) but never hold one the minutes do not. So when, collector by
/// collector, a partial's documents hold as many series events as the
/// collector's minutes, and the partials' marks, their documents and the
/// minute tier (whole layers included) all add up to the same number of
/// events, no partial misses any, and the merge of the partials equals the
/// merge of the minutes. Any other sum reads the minutes. (A partial
/// written twice leaves no stale documents behind in SQLite; in
/// Elasticsearch a leftover shows as more events than the mark.)
///
/// # Errors
/// As the store's reads and writes.
pub async fn compact_hour(
    store: &dyn Store,
    hour_ms: i64,
    now_ms: i64,
) -> Result<(HourMark, BuiltFrom), StoreError> {
    let hour_ms = hour_of(hour_ms);
    let minute_events = store
        .minute_events_by_hour(hour_ms, hour_ms + HOUR_MS)
        .await?
        .get(&hour_ms)
        .copied()
        .unwrap_or(0);
    let built = compact_hour_with(store, hour_ms, now_ms, minute_events, true).await?;
    Ok(built.expect("minutes are read when the partials do not cover the hour"))
}

/// [`compact_hour`] knowing the minute tier's events of the hour; `None`,
/// writing nothing, when the partials do not cover the hour and
/// `read_minutes` is false.
async fn compact_hour_with(
    store: &dyn Store,
    hour_ms: i64,
    now_ms: i64,
    minute_events: u64,
    read_minutes: bool,
) -> Result<Option<(HourMark, BuiltFrom)>, StoreError> {
    let (series, layers, from) = match from_partials(store, hour_ms, minute_events).await? {
        Some((series, layers)) => (series, layers, BuiltFrom::Partials),
        None if !read_minutes => return Ok(None),
        None => {
            let (series, layers) = store.merge_hour_minutes(hour_ms).await?;
            (series, layers, BuiltFrom::Minutes)
        }
    };
    let events = series.iter().chain(&layers).map(|r| r.count).sum();
    let mark = HourMark {
        hour_ms,
        events,
        series: series.len() as u64,
        compacted_at_ms: now_ms,
    };
    store
        .write_hour(&CompactedHour {
            series,
            layers,
            mark: mark.clone(),
        })
        .await?;
    Ok(Some((mark, from)))
}

/// The hour merged from its partials, when they hold exactly the events
/// of its minutes (see [`compact_hour`]): every collector with series
/// minutes in the hour has a partial whose mark and documents hold as many
/// series events as those minutes, and the partials' events, whole layers
/// included, add up to `minute_events`.
async fn from_partials(
    store: &dyn Store,
    hour_ms: i64,
    minute_events: u64,
) -> Result<Option<(Vec<Rollup>, Vec<Rollup>)>, StoreError> {
    if minute_events == 0 {
        return Ok(None);
    }
    let p = store.read_hour_partials(hour_ms).await?;
    if p.marks.is_empty() {
        return Ok(None);
    }
    let marked: u64 = p.marks.iter().map(|m| m.events).sum();
    let held: u64 = p.series.iter().chain(&p.layers).map(|r| r.count).sum();
    if marked != minute_events || held != minute_events {
        return Ok(None);
    }
    let mut series_held: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &p.series {
        *series_held.entry(r.collector.as_str()).or_default() += r.count;
    }
    series_held.retain(|_, n| *n > 0);
    let by_collector = store.minute_events_by_collector(hour_ms).await?;
    let minutes: BTreeMap<&str, u64> = by_collector.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    if series_held != minutes {
        return Ok(None);
    }
    Ok(Some((
        merge_hour(hour_ms, p.series),
        merge_hour(hour_ms, p.layers),
    )))
}

/// Builds a collector's [`HourPartial`] from the rollups it writes (every
/// minute of the hour, each exactly once, in its final state).
#[derive(Clone)]
pub struct HourPartialBuilder {
    hour_ms: i64,
    collector: String,
    series: std::collections::HashMap<u128, Rollup>,
    layers: BTreeMap<panorama_model::Layer, Rollup>,
    scratch: Vec<u8>,
}

impl HourPartialBuilder {
    /// An empty partial of the hour holding `hour_ms`, by `collector`.
    pub fn new(hour_ms: i64, collector: impl Into<String>) -> HourPartialBuilder {
        HourPartialBuilder {
            hour_ms: hour_of(hour_ms),
            collector: collector.into(),
            series: Default::default(),
            layers: BTreeMap::new(),
            scratch: Vec::new(),
        }
    }

    fn start(&self, r: &Rollup) -> Rollup {
        let mut acc = r.clone();
        acc.minute_ms = self.hour_ms;
        acc.collector = self.collector.clone();
        acc.part = 0;
        acc
    }

    /// Adds a series' minute rollup.
    pub fn add(&mut self, r: &Rollup) {
        let key = r.key.hash128(&mut self.scratch);
        match self.series.get_mut(&key) {
            Some(acc) => acc.merge(r),
            None => {
                let acc = self.start(r);
                self.series.insert(key, acc);
            }
        }
    }

    /// Adds a whole layer's minute rollup.
    pub fn add_layer(&mut self, r: &Rollup) {
        match self.layers.get_mut(&r.key.layer) {
            Some(acc) => acc.merge(r),
            None => {
                let acc = self.start(r);
                self.layers.insert(r.key.layer, acc);
            }
        }
    }

    /// Events added so far.
    pub fn events(&self) -> u64 {
        self.series
            .values()
            .chain(self.layers.values())
            .map(|r| r.count)
            .sum()
    }

    /// The partial, its series in the order of their ids.
    pub fn finish(self) -> HourPartial {
        let mut series: Vec<(u128, Rollup)> = self.series.into_iter().collect();
        series.sort_unstable_by_key(|(k, _)| *k);
        HourPartial {
            hour_ms: self.hour_ms,
            collector: self.collector,
            series: series.into_iter().map(|(_, r)| r).collect(),
            layers: self.layers.into_values().collect(),
        }
    }
}

/// Which hours a pass looks at, and how much it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactPolicy {
    /// The collectors' grace: an hour is compacted once its last minute is
    /// past it (and written), so a compacted hour rarely grows again.
    pub grace_ms: i64,
    /// How far back late minutes are looked for: the minute tier's
    /// retention (older hours have no minutes left to compare with).
    pub lookback_ms: i64,
    /// At most this many hours per pass (the first pass after an upgrade
    /// finds the whole minute retention uncompacted).
    pub max_hours: usize,
}

/// One pass: compacts every hour in the lookback that is past the grace and
/// either has no mark or holds more events in its minutes than its mark
/// says (late minutes). Hours whose minutes hold fewer events than the mark
/// (retention took them) are left alone: hourly documents never shrink.
///
/// # Errors
/// As the store's reads and writes; hours compacted before the failure stay done.
pub async fn compact_due(
    store: &dyn Store,
    now_ms: i64,
    policy: CompactPolicy,
) -> Result<CompactReport, StoreError> {
    // An hour is due once its last minute plus the grace (and a minute for
    // the flusher to write it) is past.
    let end = hour_of(now_ms - policy.grace_ms - 60_000);
    let start = hour_of(now_ms - policy.lookback_ms);
    let mut report = CompactReport::default();
    if end <= start {
        return Ok(report);
    }
    let events = store.minute_events_by_hour(start, end).await?;
    let marks: BTreeMap<i64, u64> = store
        .hour_marks(start, end)
        .await?
        .into_iter()
        .map(|m| (m.hour_ms, m.events))
        .collect();
    let due: Vec<(i64, u64, bool)> = events
        .iter()
        .filter(|(h, n)| **h >= start && **h < end && **n > marks.get(h).copied().unwrap_or(0))
        .map(|(h, n)| (*h, *n, marks.contains_key(h)))
        .collect();
    report.left = due.len().saturating_sub(policy.max_hours);
    // Hours this recent compact from their partials or wait for them; an
    // hour compacted before has no partial to wait for (a collector writes
    // one once, and late minutes are not in it).
    let fresh_from = hour_of(now_ms - policy.grace_ms - 60_000 - PARTIAL_WAIT_MS);
    for (hour, minute_events, again) in due.into_iter().take(policy.max_hours) {
        let read_minutes = again || hour < fresh_from;
        let Some((mark, from)) =
            compact_hour_with(store, hour, now_ms, minute_events, read_minutes).await?
        else {
            report.waiting.push(hour);
            continue;
        };
        report.hours.push(hour);
        if again {
            report.recompacted.push(hour);
        }
        if from == BuiltFrom::Partials {
            report.from_partials.push(hour);
        }
        report.series_docs += mark.series;
    }
    Ok(report)
}

/// Hours in `[from, to)`, for callers iterating a range hour by hour.
pub fn hours(from: i64, to: i64) -> impl Iterator<Item = i64> {
    let first = hour_of(from);
    (0..)
        .map(move |i| first + i * HOUR_MS)
        .take_while(move |h| *h < to)
}

#[cfg(test)]
mod tests {
    use panorama_model::{Event, Layer, SeriesKey};

    use super::*;

    fn minute(minute_ms: i64, name: &str, collector: &str, events: usize) -> Rollup {
        let key = SeriesKey {
            layer: Layer::Url,
            service: "shop".into(),
            host: "h1".into(),
            name: name.into(),
            dims: Default::default(),
        };
        let mut r = Rollup::empty(minute_ms, key, collector);
        for i in 0..events {
            let mut e = Event::new(minute_ms + i as i64, Layer::Url, "shop", "h1", name);
            e.latency_ms = Some(10.0 + i as f64);
            r.add(&e);
        }
        r
    }

    #[test]
    fn a_document_read_twice_counts_once_and_collectors_add() {
        let h = 7 * HOUR_MS;
        let a = minute(h, "GET /a", "c1", 3);
        let minutes = vec![
            a.clone(),
            minute(h + 60_000, "GET /a", "c1", 4),
            // The same document again (a page boundary), then another
            // collector's document of the same minute and series.
            a.clone(),
            minute(h, "GET /a", "c2", 5),
            minute(h, "GET /b", "c1", 2),
        ];
        let hourly = merge_hour(h, minutes);
        assert_eq!(hourly.len(), 2);
        let by_name = |n: &str| hourly.iter().find(|r| r.key.name == n).unwrap();
        let ha = by_name("GET /a");
        assert_eq!(ha.count, 3 + 4 + 5);
        assert_eq!(ha.histogram.count(), 12);
        assert_eq!(
            (ha.minute_ms, ha.collector.as_str(), ha.part),
            (h, HOURLY_COLLECTOR, 0)
        );
        assert_eq!(by_name("GET /b").count, 2);
        // In the order of the series ids, as the store's reads expect.
        let ids: Vec<String> = hourly.iter().map(|r| r.key.id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
