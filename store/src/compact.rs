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

use crate::tier::{CompactedHour, HOUR_MS, HOURLY_COLLECTOR, HourMark, hour_of};
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
}

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

/// Compacts one hour of `store`: reads its minutes, writes its hourly
/// documents and then its mark. Idempotent: compacting an unchanged hour
/// again writes the same documents.
///
/// # Errors
/// As the store's reads and writes.
pub async fn compact_hour(
    store: &dyn Store,
    hour_ms: i64,
    now_ms: i64,
) -> Result<HourMark, StoreError> {
    let hour_ms = hour_of(hour_ms);
    let (series, layers) = store.merge_hour_minutes(hour_ms).await?;
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
    Ok(mark)
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
    let due: Vec<(i64, bool)> = events
        .iter()
        .filter(|(h, n)| **h >= start && **h < end && **n > marks.get(h).copied().unwrap_or(0))
        .map(|(h, _)| (*h, marks.contains_key(h)))
        .collect();
    report.left = due.len().saturating_sub(policy.max_hours);
    for (hour, again) in due.into_iter().take(policy.max_hours) {
        let mark = compact_hour(store, hour, now_ms).await?;
        report.hours.push(hour);
        if again {
            report.recompacted.push(hour);
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
