//! One layer over a chosen range, beside the same range yesterday, and the
//! table of its series.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use chrono_tz::Tz;
use panorama_model::{DAY_MS, HOUR_MS, Layer, MINUTE_MS, Point, minute_of};
use panorama_store::{LayerTotals, Metric, SeriesTotalsQuery, TotalsQuery};
use serde::Deserialize;

use super::overview::series_href;
use super::{Chrome, PageError, html, now_ms, parse_layer};
use crate::auth::Session;
use crate::chart::{Line, Unit, line_chart};
use crate::{Dashboard, format};

/// How many series the table lists (the busiest by the chosen order);
/// a longer table is a wall nobody on duty reads. `?all=1` lists them all.
const TABLE_ROWS: usize = 100;
/// Most series read for the table, so that it can say how many it leaves
/// out and `?all=1` has them.
const ALL_ROWS: usize = 10_000;

/// The ranges offered, with their length.
pub(crate) const RANGES: [(&str, i64); 4] = [
    ("1h", HOUR_MS),
    ("6h", 6 * HOUR_MS),
    ("24h", DAY_MS),
    ("7d", 7 * DAY_MS),
];

#[derive(Deserialize, Default)]
pub(crate) struct RangeQuery {
    pub(crate) range: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) sort: Option<String>,
    /// `1`: the layer page lists every series, not the busiest hundred.
    pub(crate) all: Option<String>,
}

/// A checked time range: `[from, to)` on minute bounds, and its name.
pub(crate) struct Range {
    pub(crate) name: String,
    pub(crate) from: i64,
    pub(crate) to: i64,
}

impl Range {
    /// From the query: a named range ending now (from a day up starting on
    /// the hour), or `custom` from/to.
    pub(crate) fn parse(
        q: &RangeQuery,
        tz: Tz,
        now: i64,
        default: &str,
    ) -> Result<Range, PageError> {
        let end = minute_of(now) + MINUTE_MS;
        let name = q.range.clone().unwrap_or_else(|| default.to_owned());
        if name == "custom" {
            let t = |v: &Option<String>, what| {
                v.as_deref()
                    .and_then(|s| format::parse_time(tz, s))
                    .ok_or_else(|| {
                        PageError::BadRequest(format!(
                            "`{what}`: expected a time such as 2026-11-22T13:00 or Unix ms"
                        ))
                    })
            };
            let (from, to) = (minute_of(t(&q.from, "from")?), minute_of(t(&q.to, "to")?));
            if to <= from {
                return Err(PageError::BadRequest("`to` must be after `from`".into()));
            }
            if to - from > 31 * DAY_MS {
                return Err(PageError::BadRequest(
                    "a custom range is at most 31 days".into(),
                ));
            }
            return Ok(Range { name, from, to });
        }
        let len = RANGES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, l)| *l)
            .ok_or_else(|| {
                PageError::BadRequest(format!(
                    "`range` {name:?}: expected 1h, 6h, 24h, 7d or custom"
                ))
            })?;
        // From a day up, start on the hour: the store then reads whole
        // hours from its hourly tier instead of a partial hour of minutes
        // for every series (half the layer page's time over 7 days, and
        // over 24 hours up to 120,000 minute rows of the url layer), and
        // over 7 days, whose buckets are hours, the first bucket is a whole
        // hour (drawn as a partial one it showed a false dip in the rate).
        // "24h" is then the last 24 whole hours and the current one.
        let from = if len >= DAY_MS {
            (end - len).div_euclid(HOUR_MS) * HOUR_MS
        } else {
            end - len
        };
        Ok(Range {
            name,
            from,
            to: end,
        })
    }

    /// Bucket width giving at most about 360 points; over more than two
    /// days at least an hour, so that the store can answer from its hourly
    /// tier (the minutes of older days may be gone by then anyway).
    pub(crate) fn bucket(&self) -> i64 {
        let minutes = ((self.to - self.from) / MINUTE_MS).max(1);
        let per = (minutes + 359) / 360;
        let per = if self.to - self.from > 2 * DAY_MS {
            per.max(60)
        } else {
            per
        };
        [1, 2, 5, 10, 15, 30, 60, 120, 360, 720, 1440]
            .into_iter()
            .find(|&m| m >= per)
            .unwrap_or(1440)
            * MINUTE_MS
    }
}

pub(crate) struct Row {
    pub(crate) service: String,
    pub(crate) name: String,
    pub(crate) href: String,
    pub(crate) count: String,
    pub(crate) rate: String,
    pub(crate) errors: String,
    pub(crate) ratio: String,
    pub(crate) avg: String,
    pub(crate) p99: String,
    pub(crate) max: String,
    pub(crate) bad: bool,
}

#[derive(Template)]
#[template(path = "layer.html")]
struct LayerPage {
    c: Chrome,
    title: &'static str,
    range: String,
    ranges: Vec<&'static str>,
    from_input: String,
    to_input: String,
    charts: Vec<String>,
    sort: String,
    rows: Vec<Row>,
    /// "N more series…" when the table is cut, with `all_href` to see them.
    more: String,
    all_href: String,
    all_label: String,
}

/// The bucket starts of a range.
pub(crate) fn bucket_times(from: i64, to: i64, bucket: i64) -> Vec<i64> {
    let first = from - from.rem_euclid(bucket);
    (0..)
        .map(|i| first + i * bucket)
        .take_while(|t| *t < to)
        .collect()
}

/// What a chart line is read from: sums or points, each of one bucket.
trait Bucketed {
    fn bucket_start(&self) -> i64;
}

impl Bucketed for LayerTotals {
    fn bucket_start(&self) -> i64 {
        self.totals.bucket_ms
    }
}

impl Bucketed for Point {
    fn bucket_start(&self) -> i64 {
        self.minute
    }
}

/// One value per chart time: the row of bucket `t - shift`, if any.
fn values<T: Bucketed>(
    rows: &[T],
    times: &[i64],
    shift: i64,
    f: impl Fn(&T) -> Option<f64>,
) -> Vec<Option<f64>> {
    times
        .iter()
        .map(|t| {
            rows.iter()
                .find(|r| r.bucket_start() == t - shift)
                .and_then(&f)
        })
        .collect()
}

pub(crate) async fn page(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Path(layer): Path<String>,
    Query(q): Query<RangeQuery>,
    req: Request,
) -> Result<Response, PageError> {
    let layer: Layer = parse_layer(&layer)?;
    let tz = d.cfg().time_zone;
    let range = Range::parse(&q, tz, now_ms(), "1h")?;
    let bucket = range.bucket();
    let store = d.store();
    // The charts' sums from one document per minute, not one per series.
    let mut now_q = TotalsQuery::range(range.from, range.to)
        .layer(layer)
        .buckets(bucket);
    now_q.whole_layers = true;
    let mut then_q = TotalsQuery::range(range.from - DAY_MS, range.to - DAY_MS)
        .layer(layer)
        .buckets(bucket);
    then_q.whole_layers = true;
    let table_q = SeriesTotalsQuery {
        range: TotalsQuery::range(range.from, range.to).layer(layer),
        by_host: false,
        order: Metric::Count,
        limit: ALL_ROWS,
    };
    let (now_rows, then_rows, series, now_pts, then_pts) = tokio::join!(
        store.layer_totals(&now_q),
        store.layer_totals(&then_q),
        store.series_totals(&table_q),
        store.layer_points(layer, range.from, range.to, bucket),
        store.layer_points(layer, range.from - DAY_MS, range.to - DAY_MS, bucket),
    );
    let (now_rows, then_rows, mut series) = (now_rows?, then_rows?, series?);
    let (now_pts, then_pts) = (now_pts?, then_pts?);
    let times = bucket_times(range.from, range.to, bucket);
    let t = crate::i18n::texts(crate::auth::lang(&d, req.headers()));
    let labels: Vec<String> = times.iter().map(|&m| format::short(tz, m)).collect();
    let secs = bucket as f64 / 1000.0;
    let yesterday = format!("{} ({})", t.rate, t.yesterday);
    let charts = vec![
        line_chart(
            t.rate,
            &times,
            &labels,
            &[
                Line {
                    label: t.rate.into(),
                    values: values(&now_rows, &times, 0, |x| Some(x.totals.count as f64 / secs)),
                    dashed: false,
                },
                Line {
                    label: yesterday,
                    values: values(&then_rows, &times, DAY_MS, |x| {
                        Some(x.totals.count as f64 / secs)
                    }),
                    dashed: true,
                },
            ],
            Unit::Plain,
            None,
        ),
        line_chart(
            t.error_ratio,
            &times,
            &labels,
            &[
                Line {
                    label: t.error_ratio.into(),
                    values: values(&now_rows, &times, 0, |x| Some(x.totals.error_ratio())),
                    dashed: false,
                },
                Line {
                    label: format!("{} ({})", t.error_ratio, t.yesterday),
                    values: values(&then_rows, &times, DAY_MS, |x| Some(x.totals.error_ratio())),
                    dashed: true,
                },
            ],
            Unit::Percent,
            None,
        ),
        line_chart(
            t.latency_note,
            &times,
            &labels,
            &[
                Line {
                    label: t.p50.into(),
                    values: values(&now_pts, &times, 0, |p| p.p50_ms),
                    dashed: false,
                },
                Line {
                    label: t.p90.into(),
                    values: values(&now_pts, &times, 0, |p| p.p90_ms),
                    dashed: false,
                },
                Line {
                    label: t.p99.into(),
                    values: values(&now_pts, &times, 0, |p| p.p99_ms),
                    dashed: false,
                },
                Line {
                    label: t.avg_ms.into(),
                    values: values(&now_rows, &times, 0, |x| x.totals.avg_ms()),
                    dashed: false,
                },
                Line {
                    label: format!("{} ({})", t.p99, t.yesterday),
                    values: values(&then_pts, &times, DAY_MS, |p| p.p99_ms),
                    dashed: true,
                },
            ],
            Unit::Plain,
            None,
        ),
    ];
    let sort = q.sort.clone().unwrap_or_else(|| "count".into());
    let key = |x: &panorama_store::Totals| -> f64 {
        match sort.as_str() {
            "errors" => x.errors as f64,
            "error_ratio" => x.error_ratio(),
            "avg" => x.avg_ms().unwrap_or(-1.0),
            "p99" => x.p99_max_ms.unwrap_or(-1.0),
            "max" => x.latency_max_ms.unwrap_or(-1.0),
            "name" => 0.0,
            _ => x.count as f64,
        }
    };
    if sort == "name" {
        series.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
    } else {
        series.sort_by(|a, b| key(&b.totals).total_cmp(&key(&a.totals)));
    }
    let span_secs = (range.to - range.from) as f64 / 1000.0;
    let show_all = q.all.as_deref() == Some("1");
    let total = series.len();
    if !show_all {
        series.truncate(TABLE_ROWS);
    }
    let hidden = total - series.len();
    let zh = matches!(
        crate::auth::lang(&d, req.headers()),
        crate::config::Lang::Zh
    );
    let (more, all_label) = match (hidden, zh) {
        (0, _) => (String::new(), String::new()),
        (n, false) => (
            format!("The busiest {TABLE_ROWS} of {total} series; {n} more not shown."),
            format!("Show all {total}"),
        ),
        (n, true) => (
            format!("显示最繁忙的 {TABLE_ROWS} 个序列（共 {total} 个），另有 {n} 个未显示。"),
            format!("显示全部 {total} 个"),
        ),
    };
    let all_href = format!(
        "?range={}&sort={}&all=1{}",
        range.name,
        sort,
        if range.name == "custom" {
            format!("&from={}&to={}", range.from, range.to)
        } else {
            String::new()
        }
    );
    let rows = series
        .iter()
        .map(|r| Row {
            service: r.service.clone(),
            name: r.name.clone(),
            href: series_href(layer, &r.service, &r.name, "", None)
                + &format!("&range={}", range.name)
                + &if range.name == "custom" {
                    format!("&from={}&to={}", range.from, range.to)
                } else {
                    String::new()
                },
            count: format::count(r.totals.count),
            rate: format::num(r.totals.count as f64 / span_secs),
            errors: format::count(r.totals.errors),
            ratio: format::pct(r.totals.error_ratio()),
            avg: format::opt(r.totals.avg_ms()),
            p99: format::opt(r.totals.p99_max_ms),
            max: format::opt(r.totals.latency_max_ms),
            bad: r.totals.error_ratio() >= 0.05,
        })
        .collect();
    let path = super::here(req.uri());
    Ok(html(&LayerPage {
        c: Chrome::new(&d, req.headers(), &s, &path, layer.as_str()),
        title: t.layer(layer),
        range: range.name.clone(),
        ranges: RANGES.iter().map(|(n, _)| *n).collect(),
        from_input: format::input(tz, range.from),
        to_input: format::input(tz, range.to),
        charts,
        sort,
        rows,
        more,
        all_href,
        all_label,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(range: &str, now: i64) -> Range {
        let q = RangeQuery {
            range: Some(range.into()),
            ..RangeQuery::default()
        };
        Range::parse(&q, Tz::UTC, now, "1h").unwrap()
    }

    #[test]
    fn long_ranges_start_on_the_hour_short_ones_a_window_back() {
        let now = 1_000 * DAY_MS + 21 * HOUR_MS + 37 * MINUTE_MS + 12_345;
        let end = now - now % MINUTE_MS + MINUTE_MS;
        let week = named("7d", now);
        assert_eq!(week.to, end);
        assert_eq!(week.from, 993 * DAY_MS + 21 * HOUR_MS);
        assert_eq!(week.bucket(), HOUR_MS);
        assert_eq!(
            bucket_times(week.from, week.to, week.bucket())[0],
            week.from
        );
        let day = named("24h", now);
        assert_eq!((day.from, day.to), (999 * DAY_MS + 21 * HOUR_MS, end));
        assert_eq!(day.bucket(), 5 * MINUTE_MS);
        let six = named("6h", now);
        assert_eq!((six.from, six.to), (end - 6 * HOUR_MS, end));
        let hour = named("1h", now);
        assert_eq!((hour.from, hour.to), (end - HOUR_MS, end));
    }
}
