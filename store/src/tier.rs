//! The hourly tier: which reads it serves, and what marks an hour as compacted.
//!
//! Minute rollups are what collectors write; hourly rollups are compacted
//! from them ([`crate::compact`]) once an hour is past the collectors'
//! grace: one document per (hour, series), every collector's and part's
//! minutes of the hour merged (counts add, histograms merge, so an hourly
//! p99 is as exact as a minute's). An hour's **mark** says that the hour
//! was compacted and from how many events; only marked hours are read from
//! the hourly tier, so an hour the compactor has not reached yet (or a store
//! without a compactor) is read from its minutes and nothing is missed.
//!
//! [`plan`] is the one place that decides the tier of a read: a read whose
//! buckets are whole hours (or that sums its whole range into one bucket)
//! reads marked whole hours from the hourly tier and the partial hours at
//! either end — and unmarked hours — from minutes. Both backends and every
//! tiered read call it, so no page decides tiers.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Milliseconds in an hour (re-exported from `model`, where it is defined).
pub use panorama_model::HOUR_MS;

/// The collector name hourly rollups carry: part of their deterministic
/// document id, `{hour}-{series}-hourly-0`, the same whichever collector
/// compacted the hour.
pub const HOURLY_COLLECTOR: &str = "hourly";

/// The record that an hour was compacted: written after the hour's hourly
/// documents (and, in Elasticsearch, after they are visible), so a reader
/// that sees it sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourMark {
    /// Start of the hour, Unix ms.
    pub hour_ms: i64,
    /// Events the hour's minute rollups held when it was compacted (series'
    /// and whole-layer rollups together): the watermark a later pass
    /// compares with the minute tier to find late minutes.
    pub events: u64,
    /// Hourly series documents written.
    pub series: u64,
    /// When it was compacted, Unix ms (for operators; nothing reads it).
    pub compacted_at_ms: i64,
}

/// One hour compacted: its hourly series and whole-layer rollups, and its mark.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactedHour {
    /// The hourly rollups of every series (minute = the hour's start).
    pub series: Vec<panorama_model::Rollup>,
    /// The hourly whole-layer rollups, one per layer.
    pub layers: Vec<panorama_model::Rollup>,
    /// The mark, written last.
    pub mark: HourMark,
}

/// The start of the hour holding `ms`.
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// How a read over `[from, to)` splits between the tiers: half-open
/// ranges, ordered, together exactly the read's range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Ranges read from minute rollups.
    pub(crate) minutes: Vec<(i64, i64)>,
    /// Ranges of whole, marked hours read from hourly rollups.
    pub(crate) hours: Vec<(i64, i64)>,
}

impl Plan {
    /// Everything from minutes.
    pub(crate) fn minutes_only(from: i64, to: i64) -> Plan {
        Plan {
            minutes: vec![(from, to)],
            hours: Vec::new(),
        }
    }
}

/// The whole hours `[first, end)` a read may take from the hourly tier, or
/// `None` when it must read minutes only: its buckets are not whole hours
/// (an hourly document cannot be split into them), or it spans no whole hour.
pub(crate) fn whole_hours(from: i64, to: i64, bucket_ms: Option<i64>) -> Option<(i64, i64)> {
    if bucket_ms.is_some_and(|b| b <= 0 || b % HOUR_MS != 0) {
        return None;
    }
    let first = hour_of(from + HOUR_MS - 1);
    let end = hour_of(to);
    (end > first).then_some((first, end))
}

/// Splits `[from, to)`: marked hours inside `hours` from the hourly tier,
/// the rest from minutes.
pub(crate) fn plan(from: i64, to: i64, hours: Option<(i64, i64)>, marked: &BTreeSet<i64>) -> Plan {
    let Some((first, end)) = hours else {
        return Plan::minutes_only(from, to);
    };
    let mut p = Plan::default();
    let mut cursor = from;
    let mut h = first;
    while h < end {
        if !marked.contains(&h) {
            h += HOUR_MS;
            continue;
        }
        let start = h;
        while h < end && marked.contains(&h) {
            h += HOUR_MS;
        }
        if cursor < start {
            p.minutes.push((cursor, start));
        }
        p.hours.push((start, h));
        cursor = h;
    }
    if cursor < to {
        p.minutes.push((cursor, to));
    }
    p
}

/// Plans a read against `store`'s marks.
pub(crate) async fn plan_for(
    store: &(impl crate::Store + ?Sized),
    from: i64,
    to: i64,
    bucket_ms: Option<i64>,
) -> Result<Plan, crate::StoreError> {
    let Some((first, end)) = whole_hours(from, to, bucket_ms) else {
        return Ok(Plan::minutes_only(from, to));
    };
    let marked: BTreeSet<i64> = store
        .hour_marks(first, end)
        .await?
        .into_iter()
        .map(|m| m.hour_ms)
        .collect();
    Ok(plan(from, to, Some((first, end)), &marked))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;
    const M: i64 = 60_000;

    #[test]
    fn only_whole_hour_buckets_or_one_bucket_use_hours() {
        assert_eq!(whole_hours(0, 3 * H, None), Some((0, 3 * H)));
        assert_eq!(whole_hours(0, 3 * H, Some(2 * H)), Some((0, 3 * H)));
        assert_eq!(whole_hours(0, 3 * H, Some(30 * M)), None);
        assert_eq!(whole_hours(5 * M, 3 * H + 5 * M, None), Some((H, 3 * H)));
        assert_eq!(whole_hours(5 * M, H + 4 * M, None), None);
        assert_eq!(whole_hours(-H - 5 * M, 0, None), Some((-H, 0)));
    }

    #[test]
    fn marked_hours_from_hours_the_rest_from_minutes() {
        let marked: BTreeSet<i64> = [H, 2 * H, 4 * H].into_iter().collect();
        let p = plan(
            5 * M,
            5 * H + 5 * M,
            whole_hours(5 * M, 5 * H + 5 * M, None),
            &marked,
        );
        assert_eq!(p.hours, vec![(H, 3 * H), (4 * H, 5 * H)]);
        assert_eq!(
            p.minutes,
            vec![(5 * M, H), (3 * H, 4 * H), (5 * H, 5 * H + 5 * M)]
        );
        let none = plan(0, 2 * H, None, &marked);
        assert_eq!(none, Plan::minutes_only(0, 2 * H));
        let all: BTreeSet<i64> = [0, H].into_iter().collect();
        let p = plan(0, 2 * H, Some((0, 2 * H)), &all);
        assert_eq!(p.hours, vec![(0, 2 * H)]);
        assert!(p.minutes.is_empty());
    }
}

/// What each tier takes on disk: bytes and documents of the series'
/// rollups per tier (indices included), measured by
/// [`crate::sqlite::SqliteStore::footprint`] and
/// [`crate::elastic::ElasticStore::footprint`] for the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Bytes of the minute tier's series rollups.
    pub minute_bytes: u64,
    /// Series-minutes (documents) in it.
    pub minute_docs: u64,
    /// Bytes of the hourly tier's series rollups.
    pub hourly_bytes: u64,
    /// Series-hours (documents) in it.
    pub hourly_docs: u64,
    /// Everything the store holds, in bytes (SQLite: the file).
    pub total_bytes: u64,
}

/// One collector's own merge of one hour: the hourly rollups of every
/// series and whole layer it wrote minutes of, built as it wrote them (see
/// [`crate::compact::HourPartialBuilder`]). The compactor merges the
/// collectors' partials instead of reading the hour's 60 minutes of every
/// series, when they provably hold the same events (see
/// [`crate::compact::compact_hour`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HourPartial {
    /// Start of the hour, Unix ms.
    pub hour_ms: i64,
    /// The collector that wrote the hour's minutes.
    pub collector: String,
    /// Per series: minute = the hour's start, this collector, part 0.
    pub series: Vec<panorama_model::Rollup>,
    /// Per whole layer, the same way.
    pub layers: Vec<panorama_model::Rollup>,
}

impl HourPartial {
    /// Events it holds, series' and whole layers' together (as an
    /// [`HourMark`] counts them).
    pub fn events(&self) -> u64 {
        self.series
            .iter()
            .chain(&self.layers)
            .map(|r| r.count)
            .sum()
    }

    /// Its mark, written after its documents.
    pub fn mark(&self) -> PartialMark {
        PartialMark {
            hour_ms: self.hour_ms,
            collector: self.collector.clone(),
            events: self.events(),
        }
    }
}

/// The record that a collector's partial of an hour is written: what its
/// documents add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialMark {
    /// Start of the hour, Unix ms.
    pub hour_ms: i64,
    /// The collector.
    pub collector: String,
    /// Events in its documents.
    pub events: u64,
}

/// Every collector's partial of one hour, as the store holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourPartials {
    /// The marks, one per collector that wrote one.
    pub marks: Vec<PartialMark>,
    /// Every partial series document of the hour.
    pub series: Vec<panorama_model::Rollup>,
    /// Every partial whole-layer document of the hour.
    pub layers: Vec<panorama_model::Rollup>,
}

/// The id of a partial's document: the hour, the series and the collector,
/// so a partial written again replaces itself.
pub fn partial_doc_id(r: &panorama_model::Rollup) -> String {
    format!("{}-partial", r.doc_id())
}
