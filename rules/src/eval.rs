//! One evaluation of one rule: read its window (and baselines), group the
//! documents the rule's way, and say of each group whether it breaches.
//!
//! A window slides (the default, `align = "sliding"`): `window = "1m"` is
//! the last 60 seconds of event time. With a [`LiveView`] of the collector
//! in this process, that collector's part is read from its slices (5 s
//! wide) for the recent minutes and from the store's whole minutes for the
//! older part of long windows; every other collector's part is read from
//! the store's minutes, the window's start rounded to the nearest minute
//! (those collectors upsert their open minutes every few seconds). Slices
//! and minutes are rollups, so they merge exactly, histograms included.
//!
//! Without a live view, and for `align = "minute"`, the window is whole
//! UTC minutes ending with the open one, read from the store. Because the
//! open minute is partial, rates divide by the time actually elapsed in the
//! window, and baseline counts (whose windows are complete) are scaled by
//! the same fraction, so that "count < 50% * count offset 1w" does not fire
//! just because the current minute is young.

use std::collections::BTreeMap;

use panorama_model::live::LiveView;
use panorama_model::{Layer, Rollup, SeriesKey, minute_of};
use panorama_store::{SeriesQuery, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::lifecycle::Observation;
use crate::rule::expr::Figures;
use crate::rule::{Align, GroupBy, Metric, Rule};

/// What one alert of a rule stands for, and how it is labelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Stable key within the rule (`service/series`, a host, or a service).
    pub key: String,
    /// The layer of the series the alert is about (the rule's layer).
    pub layer: Layer,
    /// Service (empty when grouping by host across services).
    pub service: String,
    /// Series name (empty unless grouping by series).
    pub series: String,
    /// Host (empty unless grouping by host).
    pub host: String,
}

impl Group {
    fn of(rule: &Rule, k: &SeriesKey) -> Group {
        match rule.group_by {
            GroupBy::Series => Group {
                key: format!("{}/{}", k.service, k.name),
                layer: k.layer,
                service: k.service.clone(),
                series: k.name.clone(),
                host: String::new(),
            },
            GroupBy::Host => Group {
                key: k.host.clone(),
                layer: k.layer,
                service: String::new(),
                series: String::new(),
                host: k.host.clone(),
            },
            GroupBy::Service => Group {
                key: k.service.clone(),
                layer: k.layer,
                service: k.service.clone(),
                series: String::new(),
                host: String::new(),
            },
        }
    }

    /// The labels routes and silences match: the rule's, then the group's.
    pub fn labels(&self, rule: &Rule) -> BTreeMap<String, String> {
        let mut l = rule.labels.clone();
        l.insert("alertname".into(), rule.name.clone());
        l.insert("rule".into(), rule.name.clone());
        l.insert("severity".into(), rule.severity.as_str().into());
        l.insert("layer".into(), self.layer.as_str().into());
        for (k, v) in [
            ("service", &self.service),
            ("series", &self.series),
            ("host", &self.host),
        ] {
            if !v.is_empty() {
                l.insert(k.into(), v.clone());
            }
        }
        l
    }
}

/// The verdict on one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The alert this verdict is about.
    pub group: Group,
    /// What the lifecycle is told.
    pub observation: Observation,
    /// Events in the window (0 when absent).
    pub count: u64,
    /// Part of the window came from this collector's store minutes (it
    /// restarted within the window): the open minute there is only as
    /// fresh as the last flush, and whole minutes stand for the window's
    /// old edge, so the figure may dip for a moment. Enough to see a
    /// breach; a recovery must hold for [`PARTIAL_RECOVER_MS`] first.
    pub partial: bool,
}

/// How long a recovery seen through a partial window must hold before a
/// firing alert resolves: longer than the dips a restart causes (the
/// drill's, with the collector killed every few seconds, lasted 2–3 s),
/// short beside a real recovery.
pub const PARTIAL_RECOVER_MS: i64 = 15_000;

/// The window `[start, end)` a rule looks at when evaluated at `now_ms`:
/// whole minutes back from (and including) the open one.
///
/// For its first [`OPEN_MINUTE_LAG_MS`] a minute is not yet in the store
/// (agents ship every second, the collector upserts open minutes every 5 s),
/// so until then the window still ends with the previous minute: otherwise
/// every minute would begin with a moment of "no data".
pub fn window(rule: &Rule, now_ms: i64, lag_ms: i64) -> (i64, i64) {
    let end = minute_of(now_ms - lag_ms) + 60_000;
    (end - rule.window_ms, end)
}

/// How long a new minute takes to reach the store, by default.
pub const OPEN_MINUTE_LAG_MS: i64 = 15_000;

/// The span `[start, end)` a rule's window covers at `now_ms`: the last
/// `window` for a sliding rule read with a live view, whole minutes
/// otherwise (see [`window`]).
pub fn span(rule: &Rule, now_ms: i64, lag_ms: i64, live: Option<&dyn LiveView>) -> (i64, i64) {
    match (rule.align, live) {
        (Align::Sliding, Some(_)) => (now_ms - rule.window_ms, now_ms),
        _ => window(rule, now_ms, lag_ms),
    }
}

/// The nearest multiple of `width` (half-way rounds up).
fn nearest(t: i64, width: i64) -> i64 {
    (t + width / 2).div_euclid(width) * width
}

/// True when a series is one the rule watches (the layer is the caller's).
pub fn selects(rule: &Rule, k: &SeriesKey) -> bool {
    k.layer == rule.layer && selected(rule, k)
}

fn selected(rule: &Rule, k: &SeriesKey) -> bool {
    rule.service.matches(&k.service)
        && rule.series.matches(&k.name)
        && rule.host.matches(&k.host)
        && rule
            .dims
            .iter()
            .all(|(d, p)| k.dims.get(d).is_some_and(|v| p.matches(v)))
}

type Grouped = BTreeMap<String, (Group, Rollup)>;

fn add_to(out: &mut Grouped, rule: &Rule, r: &Rollup) {
    let g = Group::of(rule, &r.key);
    match out.get_mut(&g.key) {
        Some((_, acc)) => acc.merge(r),
        None => {
            out.insert(g.key.clone(), (g, r.clone()));
        }
    }
}

async fn grouped(
    rule: &Rule,
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<Grouped, StoreError> {
    let mut out = Grouped::new();
    for r in read_store(rule, store, from_ms, to_ms).await? {
        add_to(&mut out, rule, &r);
    }
    Ok(out)
}

/// The sliding window `[from_ms, to_ms)` at `now_ms`, this collector's
/// part from the live view (and, for what it no longer holds, the store's
/// minutes), every other collector's from the store's minutes. True beside
/// it when this collector's recent part came from the store: its open
/// minute there is only as fresh as the last flush, and whole minutes
/// stand for the window's edge, so the figure may lag or jump.
async fn grouped_live(
    rule: &Rule,
    store: &dyn Store,
    live: &dyn LiveView,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<(Grouped, bool), StoreError> {
    let from = nearest(from_ms, live.slice_ms());
    let covered = live.covers_from(now_ms);
    // Where the slices take over from the store for this collector: the
    // window's start when they reach back that far, else the first minute
    // boundary they cover (the store only has whole minutes), this
    // collector's store minutes filling the part before it.
    let split = if from >= covered {
        None
    } else {
        Some(minute_of(covered + 59_999))
    };
    if split.is_some() && !live.settled() {
        // Alerts keep their state for the few seconds this takes.
        return Err(StoreError::Unavailable(
            format!(
                "collector {} restarted and its minutes replayed from the write-ahead log are not in the store yet",
                live.collector()
            )
            .into(),
        ));
    }
    let own = live.collector();
    let mut out = Grouped::new();
    for r in read_store(rule, store, minute_of(from + 30_000), to_ms).await? {
        if r.collector != own || split.is_some_and(|split| r.minute_ms < split) {
            add_to(&mut out, rule, &r);
        }
    }
    let keep = |k: &SeriesKey| selected(rule, k);
    // A view younger than its first whole minute covers nothing yet.
    let live_from = split.unwrap_or(from).max(from);
    if live_from < to_ms {
        for s in live.slices(rule.layer, &keep, live_from, to_ms) {
            add_to(&mut out, rule, &s.rollup);
        }
    }
    Ok((out, split.is_some()))
}

async fn read_store(
    rule: &Rule,
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Rollup>, StoreError> {
    // Exact selectors narrow the read; globs, regexes and dims are applied
    // to what comes back.
    let q = SeriesQuery {
        layer: rule.layer,
        service: rule.service.exact().map(str::to_owned),
        name: rule.series.exact().map(str::to_owned),
        host: rule.host.exact().map(str::to_owned),
        dims: BTreeMap::new(),
        from_ms,
        to_ms,
    };
    let mut docs = store.read_rollups(&q).await?;
    docs.retain(|r| selected(rule, &r.key));
    Ok(docs)
}

struct GroupFigures<'a> {
    now: Option<&'a Rollup>,
    baselines: &'a BTreeMap<i64, Option<Rollup>>,
    elapsed_s: f64,
    window_s: f64,
}

impl Figures for GroupFigures<'_> {
    fn metric(&self, metric: Metric, offset_ms: i64) -> Option<f64> {
        let (r, scale, seconds) = if offset_ms == 0 {
            (self.now?, 1.0, self.elapsed_s)
        } else {
            let r = self.baselines.get(&offset_ms)?.as_ref()?;
            (r, self.elapsed_s / self.window_s, self.window_s)
        };
        figure(r, metric, scale, seconds)
    }

    fn absent(&self) -> bool {
        self.now.is_none()
    }
}

fn figure(r: &Rollup, metric: Metric, scale: f64, seconds: f64) -> Option<f64> {
    let q = |p: f64| {
        let v = r.histogram.quantile(p)?;
        let lo = r.latency_min_ms.unwrap_or(v);
        let hi = r.latency_max_ms.unwrap_or(v);
        Some(v.clamp(lo.min(hi), hi))
    };
    match metric {
        Metric::Count => Some(r.count as f64 * scale),
        Metric::Errors => Some(r.errors as f64 * scale),
        Metric::Rate => Some(r.count as f64 / seconds.max(1.0)),
        Metric::ErrorRatio => Some(if r.count == 0 {
            0.0
        } else {
            r.errors as f64 / r.count as f64
        }),
        Metric::Avg => (r.latency_count > 0).then(|| r.latency_sum_ms / r.latency_count as f64),
        Metric::P50 => q(0.5),
        Metric::P90 => q(0.9),
        Metric::P99 => q(0.99),
        Metric::Max => r.latency_max_ms,
        Metric::Value => r.gauge.as_ref().map(|g| g.sum / g.n.max(1) as f64),
        Metric::ValueMax => r.gauge.as_ref().map(|g| g.max),
    }
}

/// Evaluates `rule` at `now_ms`. `known` are groups that must be judged
/// even without data (alerts of this rule that are active, and groups an
/// `absent` rule remembers), so that silence becomes "no data" or an
/// absence breach instead of being overlooked.
///
/// # Errors
/// The store could not be read; the caller keeps every alert as it is.
pub async fn evaluate(
    rule: &Rule,
    store: &dyn Store,
    live: Option<&dyn LiveView>,
    now_ms: i64,
    lag_ms: i64,
    known: &[Group],
) -> Result<Vec<Verdict>, StoreError> {
    let (start, end) = span(rule, now_ms, lag_ms, live);
    let sliding = rule.align == Align::Sliding && live.is_some();
    let (current, partial) = match live {
        Some(live) if sliding => grouped_live(rule, store, live, start, end, now_ms).await?,
        _ => (grouped(rule, store, start, end).await?, false),
    };
    let mut offsets: Vec<i64> = rule.when.offsets();
    if let Some(r) = &rule.recover {
        offsets.extend(r.offsets());
    }
    offsets.retain(|o| *o != 0);
    offsets.sort_unstable();
    offsets.dedup();
    let mut baselines: BTreeMap<i64, BTreeMap<String, (Group, Rollup)>> = BTreeMap::new();
    for off in &offsets {
        // Baselines are in the past: whole minutes of the store.
        let (from, to) = if sliding {
            (
                minute_of(start - off + 30_000),
                minute_of(end - off + 30_000),
            )
        } else {
            (start - off, end - off)
        };
        baselines.insert(*off, grouped(rule, store, from, to).await?);
    }
    // A sliding window is always full; a minute-aligned one is as long as
    // the time elapsed in it.
    let elapsed_end = if sliding { end } else { now_ms };
    let elapsed_s =
        ((elapsed_end - start) as f64 / 1000.0).clamp(1.0, rule.window_ms as f64 / 1000.0);
    let window_s = rule.window_ms as f64 / 1000.0;

    let mut groups: BTreeMap<String, Group> = current
        .iter()
        .map(|(k, (g, _))| (k.clone(), g.clone()))
        .collect();
    for g in known {
        groups.entry(g.key.clone()).or_insert_with(|| g.clone());
    }
    let mut out = Vec::with_capacity(groups.len());
    for (key, group) in groups {
        let now = current.get(&key).map(|(_, r)| r);
        let base: BTreeMap<i64, Option<Rollup>> = baselines
            .iter()
            .map(|(off, m)| (*off, m.get(&key).map(|(_, r)| r.clone())))
            .collect();
        let f = GroupFigures {
            now,
            baselines: &base,
            elapsed_s,
            window_s,
        };
        let count = now.map_or(0, |r| r.count);
        let observation = judge(rule, &f, count);
        out.push(Verdict {
            group,
            observation,
            count,
            partial,
        });
    }
    Ok(out)
}

fn judge(rule: &Rule, f: &GroupFigures<'_>, count: u64) -> Observation {
    let v = rule.when.eval(f);
    match v.holds {
        Some(true) => {
            if !f.absent() && count < rule.min_count {
                // Too few events to mean anything: not a breach, and not a
                // recovery either if the alert already fires.
                return Observation::Between {
                    value: v.value.unwrap_or(0.0),
                };
            }
            Observation::Breach {
                value: v.value.unwrap_or(0.0),
                threshold: v.threshold.unwrap_or(0.0),
            }
        }
        Some(false) => match &rule.recover {
            Some(r) if r.eval(f).holds != Some(true) => match v.value {
                Some(value) => Observation::Between { value },
                None => Observation::Ok { value: None },
            },
            _ => Observation::Ok { value: v.value },
        },
        None if f.absent() => Observation::NoData,
        None => Observation::Ok { value: None },
    }
}

/// The groups an `absent` rule should remember at start: those with data
/// in the lookback before its window.
///
/// # Errors
/// The store could not be read.
pub async fn lookback_groups(
    rule: &Rule,
    store: &dyn Store,
    live: Option<&dyn LiveView>,
    now_ms: i64,
    lag_ms: i64,
) -> Result<Vec<Group>, StoreError> {
    let (start, _) = span(rule, now_ms, lag_ms, live);
    let start = minute_of(start);
    let from = start - rule.absent_lookback_ms;
    Ok(grouped(rule, store, from, start)
        .await?
        .into_values()
        .map(|(g, _)| g)
        .collect())
}

/// Groups seen in the current window, for an `absent` rule to remember.
pub fn seen(verdicts: &[Verdict]) -> impl Iterator<Item = &Group> {
    verdicts.iter().filter(|v| v.count > 0).map(|v| &v.group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use panorama_model::live::Slice;
    use panorama_model::{Event, Outcome};
    use std::sync::Mutex;

    const SEC: i64 = 1_000;

    /// Slices as a collector would hold them: every event of collector
    /// `c1` from `covers_from` on, 5 s wide.
    struct Slices {
        covers_from: i64,
        settled: bool,
        slices: Mutex<Vec<Slice>>,
    }

    impl Slices {
        fn new(covers_from: i64) -> Slices {
            Slices {
                covers_from,
                settled: true,
                slices: Mutex::new(Vec::new()),
            }
        }

        fn add(&self, e: &Event) {
            let start = e.ts_ms.div_euclid(5_000) * 5_000;
            let mut v = self.slices.lock().unwrap();
            let key = e.series_key();
            match v
                .iter_mut()
                .find(|s| s.start_ms == start && s.rollup.key == key)
            {
                Some(s) => s.rollup.add(e),
                None => {
                    let mut rollup = Rollup::empty(start, key, "c1");
                    rollup.add(e);
                    v.push(Slice {
                        start_ms: start,
                        rollup,
                    });
                }
            }
        }
    }

    impl LiveView for Slices {
        fn collector(&self) -> &str {
            "c1"
        }
        fn slice_ms(&self) -> i64 {
            5_000
        }
        fn covers_from(&self, _now_ms: i64) -> i64 {
            self.covers_from
        }
        fn settled(&self) -> bool {
            self.settled
        }
        fn slices(
            &self,
            layer: Layer,
            keep: &dyn Fn(&SeriesKey) -> bool,
            from_ms: i64,
            to_ms: i64,
        ) -> Vec<Slice> {
            self.slices
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.rollup.key.layer == layer && keep(&s.rollup.key))
                .filter(|s| (from_ms..to_ms).contains(&s.start_ms))
                .cloned()
                .collect()
        }
        fn take_touched(&self) -> Vec<SeriesKey> {
            Vec::new()
        }
        fn on_touch(&self, _wake: Box<dyn Fn() + Send + Sync>) {}
    }

    fn ev(ts: i64, ok: bool, ms: f64) -> Event {
        let mut e = Event::new(ts, Layer::Url, "shop", "web1", "GET /pay");
        if !ok {
            e.outcome = Outcome::Error(Some("500".into()));
        }
        e.latency_ms = Some(ms);
        e
    }

    fn rule(extra: &str) -> Rule {
        let text =
            format!("[[rule]]\nname = \"r\"\nlayer = \"url\"\nservice = \"shop\"\n{extra}\n");
        crate::rule::parse_file(std::path::Path::new("r.toml"), &text)
            .unwrap()
            .rules
            .remove(0)
    }

    /// Writes each event's minute to the store as collector `c1` would.
    async fn flush(store: &dyn Store, events: &[Event], collector: &str) {
        let mut by: BTreeMap<i64, Rollup> = BTreeMap::new();
        for e in events {
            by.entry(minute_of(e.ts_ms))
                .or_insert_with(|| Rollup::empty(e.ts_ms, e.series_key(), collector))
                .add(e);
        }
        let docs: Vec<Rollup> = by.into_values().collect();
        store.write_rollups(&docs).await.unwrap();
    }

    fn store() -> (tempfile::TempDir, panorama_store::sqlite::SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = panorama_store::sqlite::SqliteStore::open(dir.path()).unwrap();
        (dir, s)
    }

    /// Ten healthy requests a second from `from` to `to`.
    fn healthy(from: i64, to: i64) -> Vec<Event> {
        (0..(to - from) / 100)
            .map(|i| ev(from + i * 100, true, 20.0))
            .collect()
    }

    fn breach(v: &[Verdict]) -> bool {
        matches!(v[0].observation, Observation::Breach { .. })
    }

    #[tokio::test]
    async fn a_sliding_window_sees_a_burst_that_started_at_second_55_within_seconds() {
        let t0 = 1_795_352_400_000; // a minute boundary
        let (_dir, store) = store();
        let live = Slices::new(t0 - 120 * SEC);
        // Two minutes of healthy traffic, in the store up to the last
        // upsert (T0+50 s) and in the slices up to now.
        let before = healthy(t0 - 120 * SEC, t0 + 55 * SEC);
        flush(&store, &before[..before.len() - 50], "c1").await;
        for e in &before {
            live.add(e);
        }
        // From second :55, 30 errors a second on top.
        for i in 0..90 {
            live.add(&ev(t0 + 55 * SEC + i * 33, false, 20.0));
        }
        for e in healthy(t0 + 55 * SEC, t0 + 58 * SEC) {
            live.add(&e);
        }
        let now = t0 + 58 * SEC;
        let sliding = rule("window = \"1m\"\nwhen = \"error_ratio > 5%\"\nmin_count = 20");
        let v = evaluate(&sliding, &store, Some(&live), now, OPEN_MINUTE_LAG_MS, &[])
            .await
            .unwrap();
        assert!(breach(&v), "3 s into the burst: {v:?}");
        // The window is the last 60 s: 57.5 s of healthy traffic at most.
        assert!(v[0].count >= 600 && v[0].count <= 690, "{}", v[0].count);

        // `align = "minute"` keeps the old behaviour: whole minutes from
        // the store, which has not seen the burst yet.
        let minute = rule(
            "window = \"1m\"\nalign = \"minute\"\nwhen = \"error_ratio > 5%\"\nmin_count = 20",
        );
        let v = evaluate(&minute, &store, Some(&live), now, OPEN_MINUTE_LAG_MS, &[])
            .await
            .unwrap();
        assert!(!breach(&v), "{v:?}");
        assert_eq!(v[0].count, 500, "the store's open minute, as upserted");
        assert_eq!(
            span(&minute, now, OPEN_MINUTE_LAG_MS, Some(&live)),
            (t0, t0 + 60 * SEC)
        );
        // So does an engine without a live view: the store alone.
        let v = evaluate(&sliding, &store, None, now, OPEN_MINUTE_LAG_MS, &[])
            .await
            .unwrap();
        assert_eq!((breach(&v), v[0].count), (false, 500));
    }

    #[tokio::test]
    async fn a_view_younger_than_its_first_whole_minute_leaves_the_window_to_the_store() {
        let t0 = 1_795_352_400_000;
        let (_dir, store) = store();
        let events = healthy(t0 - 60 * SEC, t0 + 20 * SEC);
        flush(&store, &events, "c1").await;
        // Started 5 s ago: its slices would miss what came before.
        let live = Slices::new(t0 + 15 * SEC);
        for e in events.iter().filter(|e| e.ts_ms >= t0 + 15 * SEC) {
            live.add(e);
        }
        let r = rule("window = \"1m\"\nwhen = \"count > 0\"");
        let v = evaluate(&r, &store, Some(&live), t0 + 20 * SEC, 0, &[])
            .await
            .unwrap();
        // The store's minutes from T0-30 s rounded (T0-1m): all 800, once.
        assert_eq!(v[0].count, 800);
    }

    /// Killed with a minute durable in its WAL but not yet flushed, a
    /// collector restarts: until the replayed minute is in the store, the
    /// store's part of the window lacks it, and judging the window then
    /// would resolve an alert that still fires.
    #[tokio::test]
    async fn a_window_is_not_judged_before_the_replayed_minutes_reach_the_store() {
        let t0 = 1_795_352_400_000;
        let (_dir, store) = store();
        // The store has the minute as of the last flush before the kill:
        // healthy; the 200 errors after it were durable only in the WAL.
        flush(&store, &healthy(t0, t0 + 20 * SEC), "c1").await;
        let mut live = Slices::new(t0 + 30 * SEC);
        live.settled = false;
        for e in healthy(t0 + 30 * SEC, t0 + 40 * SEC) {
            live.add(&e);
        }
        let r = rule("window = \"1m\"\nwhen = \"error_ratio > 5%\"");
        let err = evaluate(&r, &store, Some(&live), t0 + 40 * SEC, 0, &[])
            .await
            .expect_err("not judged while unsettled");
        assert!(err.to_string().contains("replayed"), "{err}");
        // Once the replayed minute is flushed, the window is whole again.
        let errors: Vec<Event> = (0..200)
            .map(|i| ev(t0 + 20 * SEC + i * 50, false, 20.0))
            .collect();
        let mut minute = healthy(t0, t0 + 20 * SEC);
        minute.extend(errors);
        flush(&store, &minute, "c1").await;
        live.settled = true;
        let v = evaluate(&r, &store, Some(&live), t0 + 40 * SEC, 0, &[])
            .await
            .unwrap();
        assert!(breach(&v), "{v:?}");
    }

    /// The collector restarted 5 s ago: the window's recent part comes from
    /// its store minutes, which lag, and the verdict says so; a view that
    /// covers the window does not.
    #[tokio::test]
    async fn a_window_read_partly_from_lagging_store_minutes_is_marked_partial() {
        let t0 = 1_795_352_400_000;
        let (_dir, store) = store();
        let events = healthy(t0 - 60 * SEC, t0 + 20 * SEC);
        flush(&store, &events, "c1").await;
        let r = rule("window = \"1m\"\nwhen = \"error_ratio > 5%\"");
        let young = Slices::new(t0 + 15 * SEC);
        let old = Slices::new(t0 - 120 * SEC);
        for e in &events {
            old.add(e);
            if e.ts_ms >= t0 + 15 * SEC {
                young.add(e);
            }
        }
        let v = evaluate(&r, &store, Some(&young), t0 + 20 * SEC, 0, &[])
            .await
            .unwrap();
        assert!(v[0].partial, "{v:?}");
        assert!(matches!(v[0].observation, Observation::Ok { .. }), "{v:?}");
        let v = evaluate(&r, &store, Some(&old), t0 + 20 * SEC, 0, &[])
            .await
            .unwrap();
        assert!(!v[0].partial, "{v:?}");
    }

    #[tokio::test]
    async fn p99_over_a_sliding_window_is_the_merge_of_its_slices() {
        let t0 = 1_795_352_400_000;
        let (_dir, store) = store();
        let live = Slices::new(t0 - 120 * SEC);
        let events: Vec<Event> = (0..1_200)
            .map(|i| ev(t0 - 30 * SEC + i * 100, true, 1.0 + ((i * 37) % 500) as f64))
            .collect();
        for e in &events {
            live.add(e);
        }
        let now = t0 + 50 * SEC;
        let r = rule("window = \"1m\"\nwhen = \"p99 > 1ms\"");
        let v = evaluate(&r, &store, Some(&live), now, 0, &[])
            .await
            .unwrap();
        let mut merged = Rollup::default();
        for s in live.slices(Layer::Url, &|_| true, now - 60 * SEC, now) {
            merged.merge(&s.rollup);
        }
        let want = figure(&merged, Metric::P99, 1.0, 60.0).unwrap();
        match v[0].observation {
            Observation::Breach { value, .. } => assert_eq!(value, want),
            other => panic!("{other:?}"),
        }
        // Exact over the events in the window too (within the histogram's
        // relative accuracy).
        let mut lat: Vec<f64> = events
            .iter()
            .filter(|e| (now - 60 * SEC..now).contains(&e.ts_ms))
            .map(|e| e.latency_ms.unwrap())
            .collect();
        lat.sort_by(f64::total_cmp);
        let exact = lat[(0.99 * lat.len() as f64).ceil() as usize - 1];
        assert!((want - exact).abs() / exact <= 0.02, "{want} vs {exact}");
    }

    #[tokio::test]
    async fn a_long_window_takes_old_minutes_from_the_store_and_other_collectors_from_it_too() {
        let t0 = 1_795_352_400_000;
        let (_dir, store) = store();
        // Slices reach back to T0-70 s (say the view started then).
        let live = Slices::new(t0 - 70 * SEC);
        let mine = healthy(t0 - 300 * SEC, t0 + 30 * SEC);
        // The store has every minute of this collector, the open one as of
        // its last upsert; the slices have everything since they started.
        flush(&store, &mine[..mine.len() - 20], "c1").await;
        for e in mine.iter().filter(|e| e.ts_ms >= t0 - 70 * SEC) {
            live.add(e);
        }
        // Another collector counted one request a second, its open minute
        // upserted a few seconds ago.
        let theirs: Vec<Event> = (0..325)
            .map(|i| ev(t0 - 300 * SEC + i * SEC, false, 5.0))
            .collect();
        flush(&store, &theirs, "c2").await;
        let now = t0 + 30 * SEC;
        let r = rule("window = \"5m\"\nwhen = \"count > 0\"");
        let v = evaluate(&r, &store, Some(&live), now, 0, &[])
            .await
            .unwrap();
        // Mine: whole store minutes from T0-4m30s rounded (T0-4m) up to
        // T0-1m, slices from T0-1m on: 270 s at 10/s. Theirs: store
        // minutes from T0-4m: 265 readings. Nothing counted twice.
        assert_eq!(v[0].count, 2_700 + 265);
    }

    #[test]
    fn a_young_minute_is_left_out_of_the_window_until_it_can_be_in_the_store() {
        let set = crate::rule::parse_file(
            std::path::Path::new("r.toml"),
            "[[rule]]\nname = \"r\"\nlayer = \"url\"\nwindow = \"2m\"\nwhen = \"count > 1\"\n",
        )
        .unwrap();
        let rule = &set.rules[0];
        let t0 = 1_795_352_400_000; // a minute boundary
        assert_eq!(
            window(rule, t0 + 10_000, OPEN_MINUTE_LAG_MS),
            (t0 - 120_000, t0),
            "10 s into the minute: the two minutes before it"
        );
        assert_eq!(
            window(rule, t0 + 20_000, OPEN_MINUTE_LAG_MS),
            (t0 - 60_000, t0 + 60_000),
            "20 s in: the open minute counts"
        );
        assert_eq!(window(rule, t0 + 10_000, 0), (t0 - 60_000, t0 + 60_000));
    }
}
