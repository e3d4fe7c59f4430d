//! The open minutes in fine slices, for the rules engine in the same
//! process.
//!
//! The store sees an open minute only when the flusher upserts it (every
//! few seconds) and only as a whole minute. Alert rules over "the last 60
//! seconds" need more: every durable batch is also counted here, per
//! series, into slices of [`DEFAULT_SLICE_MS`] of event time, kept for
//! [`DEFAULT_HORIZON_MS`]. Slices are ordinary [`Rollup`]s, so they merge
//! with each other and with the store's minutes exactly (histograms
//! included). Then the engine is woken: it evaluates the rules whose series
//! moved within a second of the batch being durable.
//!
//! Nothing here is durable or needs to be: after a restart the view starts
//! empty, says so through [`LiveView::covers_from`], and readers take the
//! older part of their windows from the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use panorama_model::live::{LiveView, Slice};
use panorama_model::{Event, Layer, Rollup, SeriesKey, minute_of};

use crate::Collector;

/// Width of a slice: fine enough that a burst is seen within seconds,
/// coarse enough that a series holds few of them.
pub const DEFAULT_SLICE_MS: i64 = 5_000;

/// How long slices are kept: two minutes and a slice, so that a one-minute
/// window is always read from slices alone, and the older part of a longer
/// window from whole minutes the store has had for over a minute.
pub const DEFAULT_HORIZON_MS: i64 = 125_000;

type Waker = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct State {
    /// Series (by the hash the aggregator keys it by too) → its key, and
    /// slice start → what was counted (the rollup's key is left empty here
    /// and filled in on read, so a series' key is stored once). Keyed by
    /// the hash so that counting an event builds no key: cloning the
    /// key's strings for every event cost more than the counting.
    series: HashMap<u128, (SeriesKey, BTreeMap<i64, Rollup>)>,
    touched: HashMap<u128, SeriesKey>,
    last_sweep_ms: i64,
    scratch: Vec<u8>,
}

/// One collector's live view. Cheap to share (`Arc`).
pub struct Live {
    collector: String,
    slice_ms: i64,
    horizon_ms: i64,
    started_ms: i64,
    /// See [`LiveView::settled`].
    settled: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    wakers: Mutex<Vec<Waker>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Live {
    /// A view with the default slice width and horizon, started now.
    pub fn new(collector: &str) -> Arc<Live> {
        Live::with(
            collector,
            DEFAULT_SLICE_MS,
            DEFAULT_HORIZON_MS,
            chrono::Utc::now().timestamp_millis(),
        )
    }

    /// A view with explicit settings, started at `started_ms` (tests pass
    /// their own clock).
    pub fn with(collector: &str, slice_ms: i64, horizon_ms: i64, started_ms: i64) -> Arc<Live> {
        let slice_ms = slice_ms.clamp(1_000, 60_000);
        Arc::new(Live {
            collector: collector.to_owned(),
            slice_ms,
            horizon_ms: horizon_ms.max(60_000 + slice_ms),
            started_ms,
            settled: std::sync::atomic::AtomicBool::new(true),
            state: Mutex::new(State::default()),
            wakers: Mutex::new(Vec::new()),
        })
    }

    /// Counts a durable batch, on the wall clock.
    pub fn add(&self, events: &[Event]) {
        self.add_at(events, chrono::Utc::now().timestamp_millis());
    }

    /// Counts a durable batch at `now_ms`: events older than the horizon
    /// are left to the store; then whoever watches is woken.
    pub fn add_at(&self, events: &[Event], now_ms: i64) {
        let oldest = now_ms - self.horizon_ms;
        let mut any = false;
        {
            let mut st = lock(&self.state);
            let st = &mut *st;
            for e in events.iter().filter(|e| e.ts_ms >= oldest) {
                let start = e.ts_ms.div_euclid(self.slice_ms) * self.slice_ms;
                let hash = e.series_hash(&mut st.scratch);
                let (key, slices) = st
                    .series
                    .entry(hash)
                    .or_insert_with(|| (e.series_key(), BTreeMap::new()));
                st.touched.entry(hash).or_insert_with(|| key.clone());
                slices
                    .entry(start)
                    .or_insert_with(|| Rollup {
                        minute_ms: minute_of(start),
                        collector: self.collector.clone(),
                        ..Rollup::default()
                    })
                    .add(e);
                any = true;
            }
            // Dropping old slices costs a pass over every series: do it
            // once per slice width, not per batch.
            if now_ms - st.last_sweep_ms >= self.slice_ms {
                st.last_sweep_ms = now_ms;
                st.series.retain(|_, (_, slices)| {
                    slices.retain(|start, _| *start + self.slice_ms > oldest);
                    !slices.is_empty()
                });
            }
        }
        if any {
            for w in lock(&self.wakers).iter() {
                w();
            }
        }
    }

    /// Marks whether the store holds everything this collector counted
    /// before the view started (see [`LiveView::settled`]).
    pub fn set_settled(&self, settled: bool) {
        self.settled
            .store(settled, std::sync::atomic::Ordering::SeqCst);
    }

    /// See [`LiveView::settled`].
    pub fn is_settled(&self) -> bool {
        self.settled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Series held, for the collector's self-metrics and tests.
    pub fn series_held(&self) -> usize {
        lock(&self.state).series.len()
    }
}

impl LiveView for Live {
    fn collector(&self) -> &str {
        &self.collector
    }

    fn slice_ms(&self) -> i64 {
        self.slice_ms
    }

    fn settled(&self) -> bool {
        self.is_settled()
    }

    fn covers_from(&self, now_ms: i64) -> i64 {
        let ceil = |t: i64| (t + self.slice_ms - 1).div_euclid(self.slice_ms) * self.slice_ms;
        ceil(self.started_ms).max(ceil(now_ms - self.horizon_ms) + self.slice_ms)
    }

    fn slices(
        &self,
        layer: Layer,
        keep: &dyn Fn(&SeriesKey) -> bool,
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<Slice> {
        let mut out = Vec::new();
        if from_ms >= to_ms {
            return out;
        }
        let st = lock(&self.state);
        for (key, slices) in st.series.values().filter(|(k, _)| k.layer == layer) {
            if !keep(key) {
                continue;
            }
            for (start, r) in slices.range(from_ms..to_ms) {
                let mut rollup = r.clone();
                rollup.key = key.clone();
                out.push(Slice {
                    start_ms: *start,
                    rollup,
                });
            }
        }
        out
    }

    fn take_touched(&self) -> Vec<SeriesKey> {
        lock(&self.state).touched.drain().map(|(_, k)| k).collect()
    }

    fn on_touch(&self, wake: Box<dyn Fn() + Send + Sync>) {
        lock(&self.wakers).push(wake);
    }
}

impl Collector {
    /// The live view this collector feeds from ingest, for a rules engine
    /// in the same process.
    pub fn live(&self) -> Arc<Live> {
        self.inner.live.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use panorama_model::Outcome;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const T0: i64 = 1_795_352_400_000;

    fn ev(ts: i64, ok: bool, ms: f64) -> Event {
        let mut e = Event::new(ts, Layer::Url, "shop", "web1", "GET /pay");
        if !ok {
            e.outcome = Outcome::Error(Some("500".into()));
        }
        e.latency_ms = Some(ms);
        e
    }

    #[test]
    fn slices_count_what_a_minute_would_and_merge_into_it() {
        let live = Live::with("c1", 5_000, 125_000, T0);
        let events: Vec<Event> = (0..600)
            .map(|i| ev(T0 + i * 100, i % 7 != 0, 1.0 + (i % 97) as f64))
            .collect();
        live.add_at(&events, T0 + 60_000);
        let slices = live.slices(Layer::Url, &|_| true, T0, T0 + 60_000);
        assert_eq!(slices.len(), 12);
        let mut merged = Rollup::empty(T0, events[0].series_key(), "c1");
        for s in &slices {
            assert_eq!(s.rollup.key, events[0].series_key());
            assert_eq!(s.rollup.minute_ms, T0);
            merged.merge(&s.rollup);
        }
        let mut whole = Rollup::empty(T0, events[0].series_key(), "c1");
        for e in &events {
            whole.add(e);
        }
        assert_eq!(merged.count, whole.count);
        assert_eq!(merged.errors, whole.errors);
        assert_eq!(
            merged.histogram, whole.histogram,
            "histograms merge exactly"
        );
    }

    #[test]
    fn old_slices_go_and_the_view_says_from_when_it_is_whole() {
        let live = Live::with("c1", 5_000, 125_000, T0 + 2_500);
        assert_eq!(
            live.covers_from(T0 + 10_000),
            T0 + 5_000,
            "started mid-slice"
        );
        live.add_at(&[ev(T0 + 5_000, true, 1.0)], T0 + 6_000);
        // An event older than the horizon is the store's business.
        live.add_at(&[ev(T0, true, 1.0)], T0 + 200_000);
        assert!(live.slices(Layer::Url, &|_| true, 0, i64::MAX).is_empty());
        assert!(
            live.slices(Layer::Url, &|_| true, T0 + 60_000, T0)
                .is_empty(),
            "an empty range (a view younger than the minute) is no panic"
        );
        assert_eq!(live.series_held(), 0);
        assert_eq!(live.covers_from(T0 + 200_000), T0 + 80_000);
    }

    #[test]
    fn a_batch_wakes_the_watcher_and_names_its_series_once() {
        let live = Live::with("c1", 5_000, 125_000, T0);
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        live.on_touch(Box::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        }));
        live.add_at(&[ev(T0, true, 1.0), ev(T0 + 1, false, 2.0)], T0 + 10);
        live.add_at(&[ev(T0 + 2, true, 1.0)], T0 + 20);
        assert_eq!(woken.load(Ordering::Relaxed), 2);
        assert_eq!(live.take_touched().len(), 1);
        assert!(live.take_touched().is_empty());
    }
}
