use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Event, Histogram, Outcome, SeriesKey, minute_of};

/// The class an error code falls in, so rollups count `4xx` apart from `5xx`
/// without keeping one counter per code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ErrorClass {
    /// HTTP-like 4xx: the caller's fault.
    #[serde(rename = "4xx")]
    Client,
    /// HTTP-like 5xx: ours.
    #[serde(rename = "5xx")]
    Server,
    /// Any other or missing code (business error codes, timeouts).
    #[serde(rename = "other")]
    Other,
}

impl ErrorClass {
    /// Classifies an error code: three digits starting with 4 or 5 are HTTP
    /// statuses, anything else is `other`.
    pub fn of(code: Option<&str>) -> ErrorClass {
        match code.map(str::as_bytes) {
            Some([b'4', a, b]) if a.is_ascii_digit() && b.is_ascii_digit() => ErrorClass::Client,
            Some([b'5', a, b]) if a.is_ascii_digit() && b.is_ascii_digit() => ErrorClass::Server,
            _ => ErrorClass::Other,
        }
    }
}

/// Gauge readings within a rollup: mergeable, so a service-wide view over
/// many hosts averages correctly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gauge {
    /// The latest reading.
    pub last: f64,
    /// Event time of the latest reading; breaks ties when merging.
    pub last_ts_ms: i64,
    /// Smallest reading.
    pub min: f64,
    /// Largest reading.
    pub max: f64,
    /// Sum of readings, for the average.
    pub sum: f64,
    /// Number of readings.
    pub n: u64,
}

impl Gauge {
    fn new(ts_ms: i64, v: f64) -> Gauge {
        Gauge {
            last: v,
            last_ts_ms: ts_ms,
            min: v,
            max: v,
            sum: v,
            n: 1,
        }
    }

    fn merge(&mut self, o: &Gauge) {
        // Ties go to the larger value so that merge stays commutative.
        if (o.last_ts_ms, o.last.to_bits()) > (self.last_ts_ms, self.last.to_bits()) {
            self.last = o.last;
            self.last_ts_ms = o.last_ts_ms;
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.n += o.n;
    }

    /// Mean reading.
    pub fn avg(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }
}

/// One UTC minute of one series, as counted by one collector.
///
/// Stores keep one document per `(minute, series, collector, part)` (see
/// [`Rollup::doc_id`]): a collector rewriting its minute after late data
/// replaces its own document, and readers merge documents across collectors
/// and parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    /// Start of the minute, Unix milliseconds.
    pub minute_ms: i64,
    /// The series.
    pub key: SeriesKey,
    /// The collector that counted it.
    pub collector: String,
    /// Which slice of the collector's input this counts: the collector's
    /// write-ahead-log segment. A segment can be replayed after a crash, so
    /// the rollup of (minute, series, segment) is always rebuilt exactly and
    /// rewritten in place; late events that arrive after the segment is gone
    /// land in a later part instead of overwriting what was counted.
    #[serde(default)]
    pub part: u64,
    /// Events counted.
    pub count: u64,
    /// Events that failed.
    pub errors: u64,
    /// Failed events by class of code.
    #[serde(default)]
    pub errors_by_class: BTreeMap<ErrorClass, u64>,
    /// Events that carried a latency.
    #[serde(default)]
    pub latency_count: u64,
    /// Sum of latencies, ms.
    #[serde(default)]
    pub latency_sum_ms: f64,
    /// Smallest latency, ms (exact).
    #[serde(default)]
    pub latency_min_ms: Option<f64>,
    /// Largest latency, ms (exact).
    #[serde(default)]
    pub latency_max_ms: Option<f64>,
    /// Latency distribution.
    #[serde(default)]
    pub histogram: Histogram,
    /// Gauge readings, if the series carries values.
    #[serde(default)]
    pub gauge: Option<Gauge>,
}

impl Default for Rollup {
    fn default() -> Rollup {
        Rollup::empty(
            0,
            SeriesKey {
                layer: crate::Layer::Business,
                service: String::new(),
                host: String::new(),
                name: String::new(),
                dims: BTreeMap::new(),
            },
            "",
        )
    }
}

impl Rollup {
    /// An empty rollup for a series and minute (`minute_ms` is floored to the minute).
    pub fn empty(minute_ms: i64, key: SeriesKey, collector: impl Into<String>) -> Rollup {
        Rollup {
            minute_ms: minute_of(minute_ms),
            key,
            collector: collector.into(),
            part: 0,
            count: 0,
            errors: 0,
            errors_by_class: BTreeMap::new(),
            latency_count: 0,
            latency_sum_ms: 0.0,
            latency_min_ms: None,
            latency_max_ms: None,
            histogram: Histogram::new(),
            gauge: None,
        }
    }

    /// Counts one event. The caller routes events to the right rollup; this
    /// does not check that the event's minute and key match.
    pub fn add(&mut self, e: &Event) {
        self.count += 1;
        if let Outcome::Error(code) = &e.outcome {
            self.errors += 1;
            *self
                .errors_by_class
                .entry(ErrorClass::of(code.as_deref()))
                .or_default() += 1;
        }
        if let Some(ms) = e.latency_ms {
            self.add_latency(ms);
        }
        if let Some(v) = e.value.filter(|v| v.is_finite()) {
            let g = Gauge::new(e.ts_ms, v);
            match &mut self.gauge {
                Some(old) => old.merge(&g),
                None => self.gauge = Some(g),
            }
        }
    }

    fn add_latency(&mut self, ms: f64) {
        let ms = if ms.is_finite() && ms > 0.0 { ms } else { 0.0 };
        self.latency_count += 1;
        self.latency_sum_ms += ms;
        self.latency_min_ms = Some(self.latency_min_ms.map_or(ms, |m| m.min(ms)));
        self.latency_max_ms = Some(self.latency_max_ms.map_or(ms, |m| m.max(ms)));
        self.histogram.record(ms);
    }

    /// Adds `other` into `self`: another collector's view of the same minute,
    /// or another minute of the same series. Key, minute and collector of
    /// `self` are kept.
    pub fn merge(&mut self, o: &Rollup) {
        self.count += o.count;
        self.errors += o.errors;
        for (class, n) in &o.errors_by_class {
            *self.errors_by_class.entry(*class).or_default() += n;
        }
        self.latency_count += o.latency_count;
        self.latency_sum_ms += o.latency_sum_ms;
        self.latency_min_ms = opt_fold(self.latency_min_ms, o.latency_min_ms, f64::min);
        self.latency_max_ms = opt_fold(self.latency_max_ms, o.latency_max_ms, f64::max);
        self.histogram.merge(&o.histogram);
        match (&mut self.gauge, &o.gauge) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.gauge = Some(b.clone()),
            _ => {}
        }
    }

    /// The deterministic document id: rewriting the same minute of the same
    /// series by the same collector and part replaces, never duplicates.
    pub fn doc_id(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.minute_ms,
            self.key.id(),
            sanitize(&self.collector),
            self.part
        )
    }

    /// What this rollup says to a reader, over `minutes` minutes (1 for a
    /// single minute; more when several minutes were merged).
    pub fn point(&self, minutes: u32) -> Point {
        let clamp = |v: f64| {
            let lo = self.latency_min_ms.unwrap_or(v);
            let hi = self.latency_max_ms.unwrap_or(v);
            v.clamp(lo.min(hi), hi)
        };
        let q = |p: f64| self.histogram.quantile(p).map(clamp);
        Point {
            minute: self.minute_ms,
            count: self.count,
            errors: self.errors,
            rate: self.count as f64 / (60.0 * f64::from(minutes.max(1))),
            error_ratio: if self.count == 0 {
                0.0
            } else {
                self.errors as f64 / self.count as f64
            },
            avg_ms: (self.latency_count > 0)
                .then(|| self.latency_sum_ms / self.latency_count as f64),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            max_ms: self.latency_max_ms,
            value: self.gauge.as_ref().map(Gauge::avg),
        }
    }
}

fn opt_fold(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Collector ids go into document ids; keep them to a safe alphabet.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One minute (or a merged span) of a series as the query API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the minute, Unix milliseconds.
    pub minute: i64,
    /// Events.
    pub count: u64,
    /// Failed events.
    pub errors: u64,
    /// Events per second.
    pub rate: f64,
    /// errors / count (0 when there were no events).
    pub error_ratio: f64,
    /// Mean latency.
    pub avg_ms: Option<f64>,
    /// Median latency.
    pub p50_ms: Option<f64>,
    /// 90th percentile latency.
    pub p90_ms: Option<f64>,
    /// 99th percentile latency.
    pub p99_ms: Option<f64>,
    /// Largest latency.
    pub max_ms: Option<f64>,
    /// Mean gauge value.
    pub value: Option<f64>,
}

/// Why a sample was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleKind {
    /// A failed event.
    Error,
    /// One of the slowest events of its minute.
    Slow,
    /// A line that did not parse.
    ParseError,
}

impl SampleKind {
    /// Where samples of this kind come in a drill-down list: errors first,
    /// then the slowest requests, then lines that did not parse. Stores sort
    /// by it, since the names do not sort that way.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The name used in documents and URLs (the serde name too).
    pub fn as_str(self) -> &'static str {
        match self {
            SampleKind::Error => "error",
            SampleKind::Slow => "slow",
            SampleKind::ParseError => "parse_error",
        }
    }
}

/// A raw line kept for drill-down: what the on-duty engineer reads once a
/// chart has shown which series and minute went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Start of the minute, Unix milliseconds.
    pub minute_ms: i64,
    /// The series.
    pub key: SeriesKey,
    /// The collector that kept it.
    pub collector: String,
    /// The collector's input slice, as in [`Rollup::part`].
    #[serde(default)]
    pub part: u64,
    /// Why it was kept.
    pub kind: SampleKind,
    /// Position among this collector's samples of the same kind, series and
    /// minute; part of the document id so a rewrite replaces.
    pub seq: u32,
    /// Event time, Unix milliseconds.
    pub ts_ms: i64,
    /// Latency, if any.
    pub latency_ms: Option<f64>,
    /// Error code, if any.
    pub code: Option<String>,
    /// The raw line.
    pub raw: String,
    /// Parsed fields.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl Sample {
    /// The deterministic document id.
    pub fn doc_id(&self) -> String {
        format!(
            "{}-{}-{}-{}-{}-{}",
            self.minute_ms,
            self.key.id(),
            sanitize(&self.collector),
            self.part,
            self.kind.as_str(),
            self.seq
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layer;
    use proptest::prelude::*;

    fn key() -> SeriesKey {
        Event::new(0, Layer::Url, "login", "web1", "GET /api/login").series_key()
    }

    fn event(ts: i64, ok: bool, code: Option<&str>, lat: Option<f64>, val: Option<f64>) -> Event {
        let mut e = Event::new(ts, Layer::Url, "login", "web1", "GET /api/login");
        if !ok {
            e.outcome = Outcome::Error(code.map(str::to_owned));
        }
        e.latency_ms = lat;
        e.value = val;
        e
    }

    #[test]
    fn error_classes() {
        assert_eq!(ErrorClass::of(Some("404")), ErrorClass::Client);
        assert_eq!(ErrorClass::of(Some("503")), ErrorClass::Server);
        assert_eq!(ErrorClass::of(Some("5000")), ErrorClass::Other);
        assert_eq!(ErrorClass::of(Some("E_TIMEOUT")), ErrorClass::Other);
        assert_eq!(ErrorClass::of(None), ErrorClass::Other);
    }

    #[test]
    fn point_derives_rates_and_percentiles() {
        let mut r = Rollup::empty(120_000, key(), "c1");
        for i in 0..100 {
            r.add(&event(
                120_000 + i,
                i % 10 != 0,
                Some("500"),
                Some((i + 1) as f64),
                None,
            ));
        }
        let p = r.point(1);
        assert_eq!(p.count, 100);
        assert_eq!(p.errors, 10);
        assert!((p.rate - 100.0 / 60.0).abs() < 1e-9);
        assert!((p.error_ratio - 0.1).abs() < 1e-9);
        assert_eq!(p.avg_ms, Some(50.5));
        assert_eq!(p.max_ms, Some(100.0));
        let p99 = p.p99_ms.unwrap();
        assert!((p99 - 99.0).abs() <= 0.02 * 99.0, "{p99}");
        assert_eq!(r.errors_by_class.get(&ErrorClass::Server), Some(&10));
    }

    #[test]
    fn gauge_avg_and_last() {
        let mut r = Rollup::empty(0, key(), "c1");
        r.add(&event(1_000, true, None, None, Some(10.0)));
        r.add(&event(3_000, true, None, None, Some(30.0)));
        r.add(&event(2_000, true, None, None, Some(20.0)));
        let g = r.gauge.clone().unwrap();
        assert_eq!((g.last, g.min, g.max, g.n), (30.0, 10.0, 30.0, 3));
        assert_eq!(r.point(1).value, Some(20.0));
    }

    #[test]
    fn sample_kind_names_agree_with_serde() {
        for k in [SampleKind::Error, SampleKind::Slow, SampleKind::ParseError] {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert!(SampleKind::Error.rank() < SampleKind::Slow.rank());
        assert!(SampleKind::Slow.rank() < SampleKind::ParseError.rank());
    }

    #[test]
    fn doc_id_is_deterministic_and_safe() {
        let r = Rollup::empty(60_000, key(), "col/1 a");
        assert_eq!(r.doc_id(), Rollup::empty(60_123, key(), "col/1 a").doc_id());
        assert!(r.doc_id().ends_with("col_1_a-0"));
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            0i64..180_000,
            any::<bool>(),
            prop::option::of(prop_oneof![
                Just("404".to_string()),
                Just("503".to_string()),
                "[A-Z]{1,4}"
            ]),
            prop::option::of(0.0f64..10_000.0),
            prop::option::of(-100.0f64..100.0),
        )
            .prop_map(|(ts, ok, code, lat, val)| event(ts, ok, code.as_deref(), lat, val))
    }

    fn roll(events: &[Event]) -> Rollup {
        let mut r = Rollup::empty(0, key(), "c1");
        for e in events {
            r.add(e);
        }
        r
    }

    fn same(a: &Rollup, b: &Rollup) -> bool {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * (1.0 + x.abs().max(y.abs()));
        a.count == b.count
            && a.errors == b.errors
            && a.errors_by_class == b.errors_by_class
            && a.latency_count == b.latency_count
            && close(a.latency_sum_ms, b.latency_sum_ms)
            && a.latency_min_ms == b.latency_min_ms
            && a.latency_max_ms == b.latency_max_ms
            && a.histogram == b.histogram
            && match (&a.gauge, &b.gauge) {
                (Some(x), Some(y)) => {
                    x.last == y.last
                        && x.min == y.min
                        && x.max == y.max
                        && x.n == y.n
                        && close(x.sum, y.sum)
                }
                (None, None) => true,
                _ => false,
            }
    }

    proptest! {
        #[test]
        fn any_split_merges_to_the_whole(events in prop::collection::vec(arb_event(), 0..200), cut in 0usize..200) {
            let cut = cut.min(events.len());
            let mut left = roll(&events[..cut]);
            let right = roll(&events[cut..]);
            left.merge(&right);
            prop_assert!(same(&left, &roll(&events)));
        }

        #[test]
        fn merge_commutes(a in prop::collection::vec(arb_event(), 0..80), b in prop::collection::vec(arb_event(), 0..80)) {
            let (ra, rb) = (roll(&a), roll(&b));
            let mut ab = ra.clone();
            ab.merge(&rb);
            let mut ba = rb.clone();
            ba.merge(&ra);
            prop_assert!(same(&ab, &ba));
        }

        #[test]
        fn serde_round_trip(events in prop::collection::vec(arb_event(), 0..50)) {
            let r = roll(&events);
            let back: Rollup = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            prop_assert!(same(&r, &back));
        }
    }
}
