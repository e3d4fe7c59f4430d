//! Read-side merging shared by both backends: they fetch matching documents,
//! and these functions turn them into what the query promised. Keeping it in
//! one place means the backends cannot disagree on what "merged" means.

use std::collections::BTreeMap;

use panorama_model::{Point, Rollup};

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

/// The retention rule both backends apply: keep today (UTC) and the
/// `keep_days` whole days before it; everything older goes.
pub(crate) fn retention_cutoff_ms(now_ms: i64, keep_days: u32) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    now_ms.div_euclid(DAY_MS) * DAY_MS - i64::from(keep_days) * DAY_MS
}
