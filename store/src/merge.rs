//! Read-side merging shared by both backends: they fetch matching documents,
//! and these functions turn them into what the query promised. Keeping it in
//! one place means the backends cannot disagree on what "merged" means.

use std::collections::BTreeMap;

use panorama_model::{DAY_MS, Point, Rollup};

use crate::{Metric, TopEntry};

/// One point per minute, oldest first, each the merge of every rollup of that minute.
pub(crate) fn points_by_minute<I: IntoIterator<Item = Rollup>>(rollups: I) -> Vec<Point> {
    let mut by_minute: BTreeMap<i64, Rollup> = BTreeMap::new();
    for r in rollups {
        match by_minute.get_mut(&r.minute_ms) {
            Some(acc) => acc.merge(&r),
            None => {
                by_minute.insert(r.minute_ms, r);
            }
        }
    }
    by_minute.values().map(|r| r.point(1)).collect()
}

/// One point per bucket of `bucket_ms` (aligned to the Unix epoch), oldest
/// first, each the merge of every rollup whose minute falls in it; rates
/// are per second over the whole bucket.
pub(crate) fn points_by_bucket<I: IntoIterator<Item = Rollup>>(
    rollups: I,
    bucket_ms: i64,
) -> Vec<Point> {
    let mut by_bucket: BTreeMap<i64, Rollup> = BTreeMap::new();
    for mut r in rollups {
        let start = r.minute_ms - r.minute_ms.rem_euclid(bucket_ms);
        match by_bucket.get_mut(&start) {
            Some(acc) => acc.merge(&r),
            None => {
                r.minute_ms = start;
                by_bucket.insert(start, r);
            }
        }
    }
    let minutes = u32::try_from(bucket_ms / panorama_model::MINUTE_MS).unwrap_or(u32::MAX);
    by_bucket.values().map(|r| r.point(minutes)).collect()
}

/// Rollups of one minute grouped by `(service, name)`, ranked by `by`, highest
/// first; ties broken by name so the order is stable across backends.
pub(crate) fn rank<I: IntoIterator<Item = Rollup>>(
    rollups: I,
    by: Metric,
    limit: usize,
) -> Vec<TopEntry> {
    let mut groups: BTreeMap<(String, String), Rollup> = BTreeMap::new();
    for r in rollups {
        let k = (r.key.service.clone(), r.key.name.clone());
        match groups.get_mut(&k) {
            Some(acc) => acc.merge(&r),
            None => {
                groups.insert(k, r);
            }
        }
    }
    let mut entries: Vec<TopEntry> = groups
        .into_iter()
        .map(|((service, name), r)| TopEntry {
            service,
            name,
            point: r.point(1),
        })
        .collect();
    entries.sort_by(|a, b| {
        by.of(&b.point)
            .total_cmp(&by.of(&a.point))
            .then_with(|| (&a.service, &a.name).cmp(&(&b.service, &b.name)))
    });
    entries.truncate(limit);
    entries
}

/// The retention rule both backends apply: everything before the returned
/// instant goes. It is the start of `now_ms`'s UTC day minus `keep_days`
/// whole days, so `keep_days = 0` keeps only today.
pub(crate) fn retention_cutoff_ms(now_ms: i64, keep_days: u32) -> i64 {
    now_ms.div_euclid(DAY_MS) * DAY_MS - i64::from(keep_days) * DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_is_start_of_utc_day_minus_whole_days() {
        // 2026-11-20T10:00:00Z and the start of that day.
        let now = 1_795_168_800_000;
        let today = 1_795_132_800_000;
        assert_eq!(retention_cutoff_ms(now, 0), today);
        assert_eq!(retention_cutoff_ms(today, 0), today);
        assert_eq!(retention_cutoff_ms(today - 1, 0), today - DAY_MS);
        assert_eq!(retention_cutoff_ms(now, 3), today - 3 * DAY_MS);
        assert_eq!(retention_cutoff_ms(-1, 1), -2 * DAY_MS);
    }
}
