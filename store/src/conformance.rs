//! The conformance suite: what every [`Store`] backend must do, written once.
//!
//! Each case is a public async function taking a store that is empty as far
//! as the case can tell (backends isolate cases by directory or index
//! prefix). A backend's integration test expands [`conformance_tests!`](crate::conformance_tests) with
//! an opener, which yields one `#[tokio::test]` per case, so the test output
//! names every case for every backend.
//!
//! ```text
//! async fn open(case: &str) -> MyHarness { /* a fresh, isolated store */ }
//! panorama_store::conformance_tests!(open);
//! ```
//!
//! Cases use fixed event times around [`BASE_MS`] and services of their
//! own, so they would not disturb each other even in a shared store; the
//! retention case works months before [`BASE_MS`] for the same reason.

use std::collections::BTreeMap;

use async_trait::async_trait;
use panorama_model::{
    DAY_MS, Event, Layer, MINUTE_MS, Outcome, Point, Rollup, Sample, SampleKind, SeriesKey,
};

use crate::compact::{CompactPolicy, compact_due, compact_hour};
use crate::{
    HOUR_MS, LayerTotals, Metric, SampleQuery, SeriesQuery, SeriesTotals, SeriesTotalsQuery, Store,
    StoreError, TopEntry, TopQuery, TotalsQuery,
};

/// A store opened for one case, and how to clean up after it.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn Store;
    /// Removes what the case wrote (called only when the case passed, so a
    /// failure leaves its data behind to look at).
    async fn teardown(self);
}

/// Expands to one `#[tokio::test]` per conformance case. `$open` is an async
/// fn `(case: &str) -> impl Harness`.
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::conformance_tests!(@cases $open;
            writes_and_reads_series,
            idempotent_rewrite,
            merges_across_collectors,
            reads_raw_rollups,
            filters_by_dims,
            top_ranks_one_minute,
            samples_for_drill_down,
            retention_drops_old_days,
            rejects_inverted_range,
            empty_reads,
            totals_sum_layers_and_series,
            layer_rollups_apart_from_series,
            whole_layer_totals_equal_series_totals,
            hourly_equals_merge_of_minutes,
            late_minutes_recompact,
            straddling_range_equals_minute_tier,
            day_straddling_range_equals_minute_tier,
            retention_per_tier,
            two_compactors_count_nothing_twice,
            an_hour_of_many_pages_compacts_whole,
            partials_compact_like_minutes,
            partials_that_miss_events_are_not_used,
            series_tables_follow_every_change,
        );
    };
    (@cases $open:path; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                use $crate::conformance::Harness as _;
                let h = $open(stringify!($case)).await;
                $crate::conformance::$case(h.store()).await;
                h.teardown().await;
            }
        )*
    };
}

/// 2026-11-20T10:00:00Z, the minute most cases write around.
pub const BASE_MS: i64 = 1_795_168_800_000;

/// The start of minute `i` after [`BASE_MS`].
fn minute(i: i64) -> i64 {
    BASE_MS + i * MINUTE_MS
}

fn key(layer: Layer, service: &str, host: &str, name: &str) -> SeriesKey {
    SeriesKey {
        layer,
        service: service.to_owned(),
        host: host.to_owned(),
        name: name.to_owned(),
        dims: BTreeMap::new(),
    }
}

fn with_dims(mut key: SeriesKey, dims: &[(&str, &str)]) -> SeriesKey {
    key.dims = dims
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    key
}

/// An event of `key` at `ts_ms`.
fn event(key: &SeriesKey, ts_ms: i64) -> Event {
    let mut e = Event::new(ts_ms, key.layer, &key.service, &key.host, &key.name);
    e.dims = key.dims.clone();
    e
}

/// A rollup of one event per latency, of which the first `errors` failed
/// with code 500. Events are spread over the minute.
fn rollup(minute_ms: i64, key: &SeriesKey, collector: &str, lat: &[f64], errors: usize) -> Rollup {
    let mut r = Rollup::empty(minute_ms, key.clone(), collector);
    for (i, &ms) in lat.iter().enumerate() {
        let mut e = event(key, minute_ms + (i as i64 * 997) % MINUTE_MS);
        if i < errors {
            e.outcome = Outcome::Error(Some("500".to_owned()));
        }
        e.latency_ms = Some(ms);
        r.add(&e);
    }
    r
}

/// A rollup of gauge readings, no latency.
fn gauge(minute_ms: i64, key: &SeriesKey, collector: &str, values: &[f64]) -> Rollup {
    let mut r = Rollup::empty(minute_ms, key.clone(), collector);
    for (i, &v) in values.iter().enumerate() {
        let mut e = event(key, minute_ms + i as i64 * 1_000);
        e.value = Some(v);
        r.add(&e);
    }
    r
}

/// `n` latencies spread over two orders of magnitude, varied by `seed`.
fn latencies(n: usize, seed: u64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let x = (i as u64 * 7_919 + seed * 104_729) % 1_000;
            // 1 ms .. ~300 ms, skewed like real latencies.
            1.0 + (x as f64 / 1_000.0).powi(3) * 300.0 + (i % 7) as f64 * 0.37
        })
        .collect()
}

/// The value at quantile `q` of `values` by the rank the histogram reports
/// (`⌊q·(n-1)⌋`).
fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

fn assert_close(what: &str, got: f64, want: f64, rel: f64) {
    let tol = rel * want.abs().max(1e-9);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (±{:.2}%)",
        rel * 100.0
    );
}

fn assert_some_close(what: &str, got: Option<f64>, want: f64, rel: f64) {
    match got {
        Some(g) => assert_close(what, g, want, rel),
        None => panic!("{what}: got None, want {want}"),
    }
}

/// Checks a point against the latencies, errors and minute it was built from.
fn assert_point(what: &str, p: &Point, minute_ms: i64, lat: &[f64], errors: u64) {
    let n = lat.len() as u64;
    assert_eq!(p.minute, minute_ms, "{what}: minute");
    assert_eq!(p.count, n, "{what}: count");
    assert_eq!(p.errors, errors, "{what}: errors");
    assert_close(&format!("{what}: rate"), p.rate, n as f64 / 60.0, 1e-9);
    assert_close(
        &format!("{what}: error_ratio"),
        p.error_ratio,
        errors as f64 / n as f64,
        1e-9,
    );
    let avg = lat.iter().sum::<f64>() / n as f64;
    assert_some_close(&format!("{what}: avg_ms"), p.avg_ms, avg, 1e-9);
    for (q, got) in [(0.50, p.p50_ms), (0.90, p.p90_ms), (0.99, p.p99_ms)] {
        let label = format!("{what}: p{}", (q * 100.0) as u32);
        assert_some_close(&label, got, exact_quantile(lat, q), 0.02);
    }
    let max = lat.iter().copied().fold(f64::MIN, f64::max);
    assert_some_close(&format!("{what}: max_ms"), p.max_ms, max, 1e-9);
}

async fn write_rollups(store: &dyn Store, rollups: &[Rollup]) {
    if let Err(e) = store.write_rollups(rollups).await {
        panic!("write_rollups of {} rollup(s) failed: {e}", rollups.len());
    }
}

async fn write_samples(store: &dyn Store, samples: &[Sample]) {
    if let Err(e) = store.write_samples(samples).await {
        panic!("write_samples of {} sample(s) failed: {e}", samples.len());
    }
}

async fn sync(store: &dyn Store) {
    if let Err(e) = store.sync().await {
        panic!("sync failed: {e}");
    }
}

async fn read(store: &dyn Store, q: &SeriesQuery) -> Vec<Point> {
    match store.read_series(q).await {
        Ok(points) => points,
        Err(e) => panic!("read_series({q:?}) failed: {e}"),
    }
}

async fn top(store: &dyn Store, q: &TopQuery) -> Vec<TopEntry> {
    match store.top(q).await {
        Ok(entries) => entries,
        Err(e) => panic!("top({q:?}) failed: {e}"),
    }
}

async fn samples(store: &dyn Store, q: &SampleQuery) -> Vec<Sample> {
    match store.samples(q).await {
        Ok(samples) => samples,
        Err(e) => panic!("samples({q:?}) failed: {e}"),
    }
}

fn minutes_of(points: &[Point]) -> Vec<i64> {
    points.iter().map(|p| p.minute).collect()
}

fn names_of(entries: &[TopEntry]) -> Vec<(&str, &str)> {
    entries
        .iter()
        .map(|e| (e.service.as_str(), e.name.as_str()))
        .collect()
}

/// Rollups written are read back, per minute, as the points they make:
/// only minutes in `[from, to)`, only the series asked for, oldest first.
pub async fn writes_and_reads_series(store: &dyn Store) {
    let cart = key(Layer::Url, "shop", "web1", "GET /cart");
    let cpu = key(Layer::Infra, "shop", "web1", "cpu.busy");
    // Neighbours that must not leak in: another layer, service and name.
    let other_layer = key(Layer::Call, "shop", "web1", "GET /cart");
    let other_service = key(Layer::Url, "shop-admin", "web1", "GET /cart");
    let other_name = key(Layer::Url, "shop", "web1", "GET /cart/items");

    // Minutes -1 and 3 fall outside the queried range [0, 3).
    let mut per_minute = Vec::new();
    let mut docs = Vec::new();
    for i in [3, -1, 1, 0, 2] {
        let lat = latencies((120 + 10 * i) as usize, (i + 11) as u64);
        let errors = (i + 2) as usize;
        docs.push(rollup(minute(i), &cart, "c1", &lat, errors));
        docs.push(gauge(
            minute(i),
            &cpu,
            "c1",
            &[10.0 + i as f64, 20.0, 30.5 + i as f64],
        ));
        let noise = latencies(1_000, 99);
        docs.push(rollup(minute(i), &other_layer, "c1", &noise, 500));
        docs.push(rollup(minute(i), &other_service, "c1", &noise, 500));
        docs.push(rollup(minute(i), &other_name, "c1", &noise, 500));
        per_minute.push((i, lat, errors as u64));
    }
    write_rollups(store, &docs).await;
    sync(store).await;

    let q = SeriesQuery::layer(Layer::Url, minute(0), minute(3))
        .service("shop")
        .name("GET /cart");
    let points = read(store, &q).await;
    assert_eq!(
        minutes_of(&points),
        vec![minute(0), minute(1), minute(2)],
        "minutes in [from, to), oldest first"
    );
    per_minute.sort_by_key(|(i, _, _)| *i);
    for (i, lat, errors) in per_minute.iter().filter(|(i, _, _)| (0..3).contains(i)) {
        let p = &points[*i as usize];
        assert_point(
            &format!("GET /cart minute {i}"),
            p,
            minute(*i),
            lat,
            *errors,
        );
        assert_eq!(
            p.value, None,
            "GET /cart minute {i}: a series without gauge has no value"
        );
    }

    // A range that is not minute-aligned still selects by minute start.
    let q = SeriesQuery::layer(Layer::Url, minute(1) - 1, minute(2) + 1)
        .service("shop")
        .name("GET /cart");
    assert_eq!(
        minutes_of(&read(store, &q).await),
        vec![minute(1), minute(2)],
        "minutes whose start lies in [from, to)"
    );

    // The gauge series reports its mean reading and no latency.
    let q = SeriesQuery::layer(Layer::Infra, minute(-5), minute(5))
        .service("shop")
        .name("cpu.busy");
    let points = read(store, &q).await;
    assert_eq!(
        minutes_of(&points),
        (-1..=3).map(minute).collect::<Vec<_>>(),
        "cpu.busy minutes"
    );
    for (i, p) in (-1..=3).zip(&points) {
        let want = (10.0 + i as f64 + 20.0 + 30.5 + i as f64) / 3.0;
        assert_some_close(&format!("cpu.busy minute {i}: value"), p.value, want, 1e-9);
        assert_eq!(p.count, 3, "cpu.busy minute {i}: count");
        assert_eq!(p.errors, 0, "cpu.busy minute {i}: errors");
        assert_eq!(
            (p.avg_ms, p.p99_ms, p.max_ms),
            (None, None, None),
            "cpu.busy minute {i}: no latency"
        );
    }
}

/// Writing a rollup again replaces it; late data rewrites the same document
/// and the count is the latest version's, never a sum.
pub async fn idempotent_rewrite(store: &dyn Store) {
    let k = key(Layer::Url, "ledger", "web1", "POST /pay");
    let m = minute(10);
    let first = latencies(10, 1);
    let v1 = rollup(m, &k, "c1", &first, 1);
    write_rollups(store, &[v1.clone(), v1.clone()]).await;
    write_rollups(store, &[v1]).await;
    sync(store).await;

    let q = SeriesQuery::layer(Layer::Url, m, m + MINUTE_MS)
        .service("ledger")
        .name("POST /pay");
    let points = read(store, &q).await;
    assert_eq!(points.len(), 1, "one minute after three writes: {points:?}");
    assert_point("after rewriting the same rollup", &points[0], m, &first, 1);

    // Late events arrived: the collector rewrites its minute, same doc id.
    let mut late = first.clone();
    late.extend([900.0, 950.0, 1_000.0, 2.5, 3.5]);
    let v2 = rollup(m, &k, "c1", &late, 4);
    write_rollups(store, &[v2]).await;
    sync(store).await;
    let points = read(store, &q).await;
    assert_eq!(points.len(), 1, "one minute after late data: {points:?}");
    assert_point("after late data", &points[0], m, &late, 4);
}

/// Documents of the same minute and series from several collectors and
/// hosts merge: counts add and percentiles come from the merged histogram.
pub async fn merges_across_collectors(store: &dyn Store) {
    let m = minute(20);
    let web1 = key(Layer::Url, "catalog", "web1", "GET /item/:id");
    let web2 = key(Layer::Url, "catalog", "web2", "GET /item/:id");
    let parts = [
        (&web1, "c1", latencies(50, 1), 2usize),
        (&web1, "c2", latencies(70, 2), 0),
        (&web2, "c1", latencies(30, 3), 5),
        (
            &web2,
            "c2",
            latencies(90, 4).iter().map(|x| x * 3.0).collect(),
            1,
        ),
    ];
    let docs: Vec<Rollup> = parts
        .iter()
        .map(|(k, c, lat, err)| rollup(m, k, c, lat, *err))
        .collect();
    write_rollups(store, &docs).await;
    sync(store).await;

    // What one rollup of every event would say.
    let mut whole = Rollup::empty(m, web1.clone(), "all");
    for d in &docs {
        whole.merge(d);
    }
    let want = whole.point(1);
    let all: Vec<f64> = parts.iter().flat_map(|p| p.2.iter().copied()).collect();
    let errors: u64 = parts.iter().map(|p| p.3 as u64).sum();

    let q = SeriesQuery::layer(Layer::Url, m, m + MINUTE_MS)
        .service("catalog")
        .name("GET /item/:id");
    let points = read(store, &q).await;
    assert_eq!(points.len(), 1, "one merged minute: {points:?}");
    let p = &points[0];
    assert_point("merged over collectors and hosts", p, m, &all, errors);
    for (label, got, want) in [
        ("p50", p.p50_ms, want.p50_ms),
        ("p90", p.p90_ms, want.p90_ms),
        ("p99", p.p99_ms, want.p99_ms),
    ] {
        let want = want.expect("merged histogram has quantiles");
        assert_some_close(
            &format!("{label} equals the merged histogram's"),
            got,
            want,
            1e-9,
        );
    }

    // The host filter narrows to web1's two collectors.
    let points = read(store, &q.clone().host("web1")).await;
    assert_eq!(points.len(), 1, "web1 only: {points:?}");
    let web1_lat: Vec<f64> = parts[..2]
        .iter()
        .flat_map(|p| p.2.iter().copied())
        .collect();
    assert_point("host web1", &points[0], m, &web1_lat, 2);

    let points = read(store, &q.host("web3")).await;
    assert!(points.is_empty(), "unknown host reads nothing: {points:?}");
}

/// `read_rollups` hands back each document as written (one per collector
/// and host), oldest minute first, so that readers can group their own way.
pub async fn reads_raw_rollups(store: &dyn Store) {
    let (m0, m1) = (minute(40), minute(41));
    let a = key(Layer::Call, "pay", "web1", "mysql:orders");
    let b = key(Layer::Call, "pay", "web2", "mysql:orders");
    let other = key(Layer::Call, "login", "web1", "redis:sessions");
    let docs = vec![
        rollup(m1, &a, "c1", &latencies(10, 5), 1),
        rollup(m0, &a, "c2", &latencies(20, 6), 0),
        rollup(m0, &b, "c1", &latencies(30, 7), 3),
        rollup(m0, &other, "c1", &latencies(40, 8), 0),
    ];
    write_rollups(store, &docs).await;
    sync(store).await;
    let q = SeriesQuery::layer(Layer::Call, m0, m1 + MINUTE_MS).service("pay");
    let got = match store.read_rollups(&q).await {
        Ok(r) => r,
        Err(e) => panic!("read_rollups({q:?}) failed: {e}"),
    };
    assert_eq!(got.len(), 3, "three pay documents, unmerged: {got:?}");
    assert!(
        got.windows(2).all(|w| w[0].minute_ms <= w[1].minute_ms),
        "oldest minute first: {:?}",
        got.iter().map(|r| r.minute_ms).collect::<Vec<_>>()
    );
    let mut ids: Vec<String> = got.iter().map(Rollup::doc_id).collect();
    ids.sort();
    let mut want: Vec<String> = docs[..3].iter().map(Rollup::doc_id).collect();
    want.sort();
    assert_eq!(ids, want, "the very documents written");
    let web2 = got
        .iter()
        .find(|r| r.key.host == "web2")
        .expect("web2's document");
    assert_eq!((web2.count, web2.errors), (30, 3));
    assert_eq!(web2.histogram, docs[2].histogram, "histogram round-trips");
    let only = match store.read_rollups(&q.clone().host("web1")).await {
        Ok(r) => r,
        Err(e) => panic!("read_rollups by host failed: {e}"),
    };
    assert_eq!(
        only.len(),
        2,
        "host filter keeps web1's two documents: {only:?}"
    );
    assert!(only.iter().all(|r| r.key.host == "web1"));
    assert_eq!(
        (only[0].minute_ms, only[0].collector.as_str()),
        (m0, "c2"),
        "oldest first"
    );
}

/// Series differing only in dims are told apart by a dims filter and merge
/// without one.
pub async fn filters_by_dims(store: &dyn Store) {
    let m = minute(25);
    let base = key(Layer::Business, "account", "app1", "login");
    let ios = with_dims(base.clone(), &[("channel", "ios"), ("device", "phone")]);
    let android = with_dims(base.clone(), &[("channel", "android"), ("device", "phone")]);
    let ios_lat = latencies(40, 5);
    let android_lat = latencies(60, 6);
    write_rollups(
        store,
        &[
            rollup(m, &ios, "c1", &ios_lat, 3),
            rollup(m, &android, "c1", &android_lat, 7),
        ],
    )
    .await;
    sync(store).await;

    let q = SeriesQuery::layer(Layer::Business, m, m + MINUTE_MS)
        .service("account")
        .name("login");
    let with = |dims: &[(&str, &str)]| {
        let mut q = q.clone();
        q.dims = with_dims(base.clone(), dims).dims;
        q
    };

    let points = read(store, &with(&[("channel", "ios")])).await;
    assert_eq!(points.len(), 1, "channel=ios: {points:?}");
    assert_point("channel=ios", &points[0], m, &ios_lat, 3);

    let points = read(store, &with(&[("channel", "android"), ("device", "phone")])).await;
    assert_eq!(points.len(), 1, "channel=android,device=phone: {points:?}");
    assert_point(
        "channel=android,device=phone",
        &points[0],
        m,
        &android_lat,
        7,
    );

    let all: Vec<f64> = ios_lat.iter().chain(&android_lat).copied().collect();
    for (label, q) in [
        ("no dims filter", q.clone()),
        ("device=phone", with(&[("device", "phone")])),
    ] {
        let points = read(store, &q).await;
        assert_eq!(points.len(), 1, "{label}: {points:?}");
        assert_point(label, &points[0], m, &all, 10);
    }

    for dims in [
        &[("channel", "ios"), ("device", "tablet")][..],
        &[("channel", "web")][..],
        &[("region", "eu")][..],
    ] {
        let points = read(store, &with(dims)).await;
        assert!(points.is_empty(), "dims {dims:?} match nothing: {points:?}");
    }
}

/// `top` ranks the series of one minute, merged across hosts and collectors
/// by `(service, name)`, by each metric, honouring limit and service.
pub async fn top_ranks_one_minute(store: &dyn Store) {
    let m = minute(30);
    let acct1 = key(Layer::Call, "gateway", "app1", "account-svc getUser");
    let acct2 = key(Layer::Call, "gateway", "app2", "account-svc getUser");
    let pay = key(Layer::Call, "gateway", "app1", "pay-svc charge");
    let sms = key(Layer::Call, "gateway", "app1", "sms-svc send");
    let other = key(Layer::Call, "reports", "app9", "warehouse query");
    let scaled =
        |n, seed, f: f64| -> Vec<f64> { latencies(n, seed).iter().map(|x| x * f).collect() };
    let docs = vec![
        // account-svc: 50 + 30 events, 1 + 2 errors, fast.
        rollup(m, &acct1, "c1", &scaled(50, 1, 0.1), 1),
        rollup(m, &acct2, "c2", &scaled(30, 2, 0.1), 2),
        // pay-svc: 40 events, 20 errors, medium.
        rollup(m, &pay, "c1", &scaled(40, 3, 1.0), 20),
        // sms-svc: 10 events, 9 errors, slow.
        rollup(m, &sms, "c1", &scaled(10, 4, 20.0), 9),
        // reports: 100 events, no errors, very fast.
        rollup(m, &other, "c1", &scaled(100, 5, 0.01), 0),
        // Another minute, which must not count.
        rollup(m + MINUTE_MS, &sms, "c1", &scaled(5_000, 6, 100.0), 5_000),
        rollup(m - MINUTE_MS, &pay, "c1", &scaled(3_000, 7, 100.0), 3_000),
    ];
    write_rollups(store, &docs).await;
    sync(store).await;

    let q = |by: Metric, limit: usize| TopQuery {
        layer: Layer::Call,
        service: None,
        minute_ms: m,
        by,
        limit,
    };
    let acct = ("gateway", "account-svc getUser");
    let pay_n = ("gateway", "pay-svc charge");
    let sms_n = ("gateway", "sms-svc send");
    let other_n = ("reports", "warehouse query");

    let by_count = top(store, &q(Metric::Count, 10)).await;
    assert_eq!(
        names_of(&by_count),
        vec![other_n, acct, pay_n, sms_n],
        "by count"
    );
    let counts: Vec<u64> = by_count.iter().map(|e| e.point.count).collect();
    assert_eq!(counts, vec![100, 80, 40, 10], "counts merged across hosts");
    assert!(
        by_count.iter().all(|e| e.point.minute == m),
        "every entry is of minute {m}: {by_count:?}"
    );

    let by_errors = top(store, &q(Metric::Errors, 10)).await;
    assert_eq!(
        names_of(&by_errors),
        vec![pay_n, sms_n, acct, other_n],
        "by errors"
    );
    assert_eq!(by_errors[2].point.errors, 3, "account-svc errors merged");

    let by_ratio = top(store, &q(Metric::ErrorRatio, 10)).await;
    assert_eq!(
        names_of(&by_ratio),
        vec![sms_n, pay_n, acct, other_n],
        "by error_ratio"
    );
    assert_close(
        "account-svc error_ratio",
        by_ratio[2].point.error_ratio,
        3.0 / 80.0,
        1e-9,
    );

    let by_p99 = top(store, &q(Metric::P99Ms, 10)).await;
    assert_eq!(
        names_of(&by_p99),
        vec![sms_n, pay_n, acct, other_n],
        "by p99_ms"
    );
    let acct_lat: Vec<f64> = scaled(50, 1, 0.1)
        .into_iter()
        .chain(scaled(30, 2, 0.1))
        .collect();
    assert_some_close(
        "account-svc p99 from the merged histogram",
        by_p99[2].point.p99_ms,
        exact_quantile(&acct_lat, 0.99),
        0.02,
    );

    let two = top(store, &q(Metric::Count, 2)).await;
    assert_eq!(names_of(&two), vec![other_n, acct], "limit 2");

    let mut gateway = q(Metric::Count, 10);
    gateway.service = Some("gateway".to_owned());
    assert_eq!(
        names_of(&top(store, &gateway).await),
        vec![acct, pay_n, sms_n],
        "service filter"
    );

    // Any instant within the minute names that minute.
    let mut within = q(Metric::Count, 10);
    within.minute_ms = m + 59_999;
    assert_eq!(
        names_of(&top(store, &within).await),
        vec![other_n, acct, pay_n, sms_n],
        "minute_ms floored to the minute"
    );

    let mut other_layer = q(Metric::Count, 10);
    other_layer.layer = Layer::Url;
    let entries = top(store, &other_layer).await;
    assert!(entries.is_empty(), "other layer is empty: {entries:?}");
}

fn sample(
    key: &SeriesKey,
    minute_ms: i64,
    kind: SampleKind,
    seq: u32,
    offset_ms: i64,
    raw: &str,
) -> Sample {
    Sample {
        minute_ms,
        key: key.clone(),
        collector: "c1".to_owned(),
        part: 0,
        kind,
        seq,
        ts_ms: minute_ms + offset_ms,
        latency_ms: Some(offset_ms as f64 / 10.0),
        code: (kind == SampleKind::Error).then(|| "503".to_owned()),
        raw: raw.to_owned(),
        fields: BTreeMap::from([("path".to_owned(), "/q".to_owned())]),
    }
}

/// What identifies a sample in assertions (floats are left out: they
/// travel through JSON).
fn sample_ids(samples: &[Sample]) -> Vec<(SampleKind, i64, String)> {
    samples
        .iter()
        .map(|s| (s.kind, s.ts_ms, s.raw.clone()))
        .collect()
}

/// Samples of a series and minute come back ordered by kind, then event
/// time, filtered by kind and limited; rewriting a sample replaces it.
pub async fn samples_for_drill_down(store: &dyn Store) {
    let m = minute(40);
    let k = key(Layer::Url, "search", "web1", "GET /q");
    let other_name = key(Layer::Url, "search", "web1", "GET /suggest");
    let other_host = key(Layer::Url, "search", "web2", "GET /q");
    let written = vec![
        sample(&k, m, SampleKind::Slow, 1, 50_000, "slow b"),
        sample(&k, m, SampleKind::Error, 0, 5_000, "error a"),
        sample(&k, m, SampleKind::Slow, 0, 1_000, "slow a"),
        sample(&k, m, SampleKind::Error, 1, 2_000, "error b"),
        sample(&other_name, m, SampleKind::Error, 0, 3_000, "suggest error"),
        sample(&other_host, m, SampleKind::Slow, 0, 4_000, "web2 slow"),
        sample(
            &k,
            m + MINUTE_MS,
            SampleKind::Error,
            0,
            1_000,
            "next minute",
        ),
        sample(
            &k,
            m - MINUTE_MS,
            SampleKind::Error,
            0,
            1_000,
            "previous minute",
        ),
    ];
    write_samples(store, &written).await;
    sync(store).await;

    let q = SampleQuery {
        layer: Layer::Url,
        service: Some("search".to_owned()),
        name: Some("GET /q".to_owned()),
        minute_ms: m,
        kind: None,
        limit: 100,
    };
    let ids = |v: &[(SampleKind, i64, &str)]| -> Vec<(SampleKind, i64, String)> {
        v.iter()
            .map(|(k, t, r)| (*k, m + t, (*r).to_owned()))
            .collect()
    };
    let got = samples(store, &q).await;
    assert_eq!(
        sample_ids(&got),
        ids(&[
            (SampleKind::Error, 2_000, "error b"),
            (SampleKind::Error, 5_000, "error a"),
            (SampleKind::Slow, 1_000, "slow a"),
            (SampleKind::Slow, 4_000, "web2 slow"),
            (SampleKind::Slow, 50_000, "slow b"),
        ]),
        "one series (both hosts) and minute, by kind then time"
    );
    let first = &got[0];
    assert_eq!(first.key, k, "sample key round-trips");
    assert_eq!(first.collector, "c1", "sample collector round-trips");
    assert_eq!(first.seq, 1, "sample seq round-trips");
    assert_eq!(
        first.code.as_deref(),
        Some("503"),
        "sample code round-trips"
    );
    assert_eq!(
        first.fields.get("path").map(String::as_str),
        Some("/q"),
        "sample fields"
    );
    assert_some_close("sample latency", first.latency_ms, 200.0, 1e-9);

    let slow = samples(
        store,
        &SampleQuery {
            kind: Some(SampleKind::Slow),
            ..q.clone()
        },
    )
    .await;
    assert_eq!(
        sample_ids(&slow),
        ids(&[
            (SampleKind::Slow, 1_000, "slow a"),
            (SampleKind::Slow, 4_000, "web2 slow"),
            (SampleKind::Slow, 50_000, "slow b"),
        ]),
        "kind filter"
    );

    let limited = samples(
        store,
        &SampleQuery {
            limit: 3,
            ..q.clone()
        },
    )
    .await;
    assert_eq!(
        sample_ids(&limited),
        ids(&[
            (SampleKind::Error, 2_000, "error b"),
            (SampleKind::Error, 5_000, "error a"),
            (SampleKind::Slow, 1_000, "slow a"),
        ]),
        "limit keeps the first in order"
    );

    let whole_service = samples(
        store,
        &SampleQuery {
            name: None,
            minute_ms: m + 30_000,
            ..q.clone()
        },
    )
    .await;
    assert_eq!(
        whole_service.len(),
        6,
        "every series of the service, minute floored: {:?}",
        sample_ids(&whole_service)
    );
    assert_eq!(
        sample_ids(&whole_service[..3]),
        ids(&[
            (SampleKind::Error, 2_000, "error b"),
            (SampleKind::Error, 3_000, "suggest error"),
            (SampleKind::Error, 5_000, "error a"),
        ]),
        "errors of every series first, by time"
    );

    // A rewrite of the same sample (same minute, series, collector, kind
    // and seq) replaces it.
    write_samples(
        store,
        &[sample(
            &k,
            m,
            SampleKind::Error,
            0,
            6_000,
            "error a, rewritten",
        )],
    )
    .await;
    sync(store).await;
    let errors = samples(
        store,
        &SampleQuery {
            kind: Some(SampleKind::Error),
            ..q.clone()
        },
    )
    .await;
    assert_eq!(
        sample_ids(&errors),
        ids(&[
            (SampleKind::Error, 2_000, "error b"),
            (SampleKind::Error, 6_000, "error a, rewritten"),
        ]),
        "rewritten sample replaced, not added"
    );
}

/// Retention deletes whole UTC days older than `keep_days` before now, and
/// nothing newer.
pub async fn retention_drops_old_days(store: &dyn Store) {
    // 2026-06-15T12:00:00Z: before every other case's data, so a shared
    // store would lose nothing of theirs.
    let now: i64 = 1_781_524_800_000;
    let today = now - now.rem_euclid(DAY_MS);
    let cutoff = today - 3 * DAY_MS;
    let k = key(Layer::Component, "archive", "db1", "mysql@db1 slow query");
    let minutes = [
        ("10 days ago", now - 10 * DAY_MS, false),
        ("just before the cutoff", cutoff - MINUTE_MS, false),
        ("at the cutoff", cutoff, true),
        ("2 days ago", now - 2 * DAY_MS, true),
        ("today", now - 5 * MINUTE_MS, true),
    ];
    let rollups: Vec<Rollup> = minutes
        .iter()
        .map(|(_, at, _)| rollup(*at, &k, "c1", &[12.0, 40.0], 1))
        .collect();
    let written: Vec<Sample> = minutes
        .iter()
        .map(|(label, at, _)| sample(&k, *at, SampleKind::Slow, 0, 1_000, label))
        .collect();
    let whole: Vec<Rollup> = minutes
        .iter()
        .map(|(_, at, _)| {
            rollup(
                *at,
                &SeriesKey::whole_layer(Layer::Component),
                "c1",
                &[7.0],
                0,
            )
        })
        .collect();
    write_rollups(store, &rollups).await;
    write_samples(store, &written).await;
    if let Err(e) = store.write_layer_rollups(&whole).await {
        panic!("write_layer_rollups failed: {e}");
    }
    sync(store).await;
    let layer_minutes = || async {
        match store
            .read_layer_rollups(Layer::Component, now - 30 * DAY_MS, now + DAY_MS)
            .await
        {
            Ok(r) => r.iter().map(|r| r.minute_ms).collect::<Vec<_>>(),
            Err(e) => panic!("read_layer_rollups failed: {e}"),
        }
    };

    let q =
        SeriesQuery::layer(Layer::Component, now - 30 * DAY_MS, now + DAY_MS).service("archive");
    assert_eq!(
        read(store, &q).await.len(),
        minutes.len(),
        "all written before retention"
    );

    let report = match store.apply_retention(now, 3).await {
        Ok(r) => r,
        Err(e) => panic!("apply_retention failed: {e}"),
    };
    assert!(
        !report.dropped.is_empty() || report.deleted_docs > 0,
        "the report says something was removed: {report:?}"
    );
    sync(store).await;

    let kept: Vec<i64> = minutes
        .iter()
        .filter(|(_, _, keep)| *keep)
        .map(|(_, at, _)| *at)
        .collect();
    assert_eq!(
        minutes_of(&read(store, &q).await),
        kept,
        "rollups from the cutoff on are kept, older ones gone"
    );
    assert_eq!(
        layer_minutes().await,
        kept,
        "whole-layer rollups follow the same retention"
    );
    for (label, at, keep) in minutes {
        let got = samples(
            store,
            &SampleQuery {
                layer: Layer::Component,
                service: Some("archive".to_owned()),
                name: None,
                minute_ms: at,
                kind: None,
                limit: 10,
            },
        )
        .await;
        assert_eq!(
            got.len(),
            usize::from(keep),
            "samples {label}: kept={keep}, got {:?}",
            sample_ids(&got)
        );
    }

    // Applying it again removes nothing more.
    if let Err(e) = store.apply_retention(now, 3).await {
        panic!("second apply_retention failed: {e}");
    }
    sync(store).await;
    assert_eq!(
        minutes_of(&read(store, &q).await),
        kept,
        "second pass keeps the same"
    );
}

/// A range whose end is not after its start is an invalid query.
pub async fn rejects_inverted_range(store: &dyn Store) {
    for (from, to) in [(minute(1), minute(1)), (minute(2), minute(1))] {
        let q = SeriesQuery::layer(Layer::Url, from, to).service("shop");
        match store.read_series(&q).await {
            Err(StoreError::InvalidQuery(_)) => {}
            other => panic!("read_series from {from} to {to}: want InvalidQuery, got {other:?}"),
        }
    }
}

/// Reading what was never written gives empty results, not errors.
pub async fn empty_reads(store: &dyn Store) {
    let m = minute(50);
    let q = SeriesQuery::layer(Layer::Url, m - 60 * MINUTE_MS, m + 60 * MINUTE_MS)
        .service("ghost")
        .name("GET /nothing");
    let points = read(store, &q).await;
    assert!(points.is_empty(), "series never written: {points:?}");
    let points = read(store, &SeriesQuery::layer(Layer::Infra, m, m + MINUTE_MS)).await;
    assert!(
        points.is_empty(),
        "whole layer, nothing written: {points:?}"
    );

    let entries = top(
        store,
        &TopQuery {
            layer: Layer::Url,
            service: None,
            minute_ms: m,
            by: Metric::P99Ms,
            limit: 10,
        },
    )
    .await;
    assert!(entries.is_empty(), "top of an empty minute: {entries:?}");

    let got = samples(
        store,
        &SampleQuery {
            layer: Layer::Url,
            service: Some("ghost".to_owned()),
            name: Some("GET /nothing".to_owned()),
            minute_ms: m,
            kind: None,
            limit: 10,
        },
    )
    .await;
    assert!(
        got.is_empty(),
        "samples never written: {:?}",
        sample_ids(&got)
    );
}

/// Per-layer and per-series sums, computed by the backend, equal the sums
/// of the documents: across collectors, hosts and minutes, in time buckets,
/// ranked, narrowed by a name prefix, with hosts apart or merged.
pub async fn totals_sum_layers_and_series(store: &dyn Store) {
    let login = key(Layer::Url, "gw", "web1", "GET /login");
    let login2 = key(Layer::Url, "gw", "web2", "GET /login");
    let pay = key(Layer::Url, "gw", "web1", "POST /pay");
    let db = key(Layer::Component, "mysql", "db1", "slow query");
    let beat = key(Layer::Infra, "host", "web1", "agent.heartbeat");
    let lag = key(Layer::Infra, "host", "web1", "agent.nginx.lag_seconds");
    let lag2 = key(Layer::Infra, "host", "web2", "agent.nginx.lag_seconds");
    let (l1, l2, l3) = (latencies(40, 1), latencies(20, 2), latencies(30, 3));
    let docs = vec![
        rollup(minute(0), &login, "c1", &l1, 4),
        rollup(minute(0), &login2, "c2", &l2, 0),
        rollup(minute(1), &login, "c1", &l3, 3),
        rollup(minute(6), &pay, "c1", &latencies(10, 4), 10),
        rollup(minute(2), &db, "c1", &latencies(5, 5), 1),
        gauge(minute(3), &beat, "c1", &[1.0, 1.0]),
        gauge(minute(3), &lag, "c1", &[2.0, 4.0]),
        gauge(minute(4), &lag2, "c1", &[9.0]),
        // Outside the range: must not count.
        rollup(minute(10), &login, "c1", &latencies(500, 6), 500),
    ];
    write_rollups(store, &docs).await;
    sync(store).await;
    let range = TotalsQuery::range(minute(0), minute(10));

    let layers = store
        .layer_totals(&range)
        .await
        .unwrap_or_else(|e| panic!("layer_totals: {e}"));
    let names: Vec<Layer> = layers.iter().map(|t| t.layer).collect();
    assert_eq!(
        names,
        vec![Layer::Url, Layer::Component, Layer::Infra],
        "{layers:?}"
    );
    let url = &layers[0].totals;
    assert_eq!((url.count, url.errors), (100, 17), "url sums");
    assert_eq!(url.latency_count, 100);
    let sum: f64 = [&l1, &l2, &l3, &latencies(10, 4)]
        .iter()
        .flat_map(|v| v.iter())
        .sum();
    assert_close("url latency sum", url.latency_sum_ms, sum, 1e-9);
    assert_eq!(url.bucket_ms, minute(0), "one bucket starts at `from`");
    assert_eq!(url.last_minute_ms, minute(6), "newest minute");
    let max = l1
        .iter()
        .chain(&l2)
        .chain(&l3)
        .chain(&latencies(10, 4))
        .copied()
        .fold(0.0, f64::max);
    assert_some_close("url max latency", url.latency_max_ms, max, 1e-9);
    let p99s: Vec<f64> = docs[..4].iter().filter_map(|r| r.point(1).p99_ms).collect();
    assert_some_close(
        "url worst p99",
        url.p99_max_ms,
        p99s.iter().copied().fold(0.0, f64::max),
        1e-9,
    );
    let infra = &layers[2].totals;
    assert_eq!((infra.value_n, infra.value_max), (5, Some(9.0)), "gauges");
    assert_close("gauge sum", infra.value_sum, 17.0, 1e-9);

    // Rewrites replace, never add: the same document again, then a
    // rewrite of a minute with late events (10 more, 1 more error).
    write_rollups(store, &docs[..1]).await;
    let mut late = l1.clone();
    late.extend(latencies(10, 9));
    write_rollups(store, &[rollup(minute(0), &login, "c1", &late, 5)]).await;
    sync(store).await;
    let again = store
        .layer_totals(&range.clone().layer(Layer::Url))
        .await
        .expect("totals");
    assert_eq!(
        (again[0].totals.count, again[0].totals.errors),
        (110, 18),
        "a rewritten document counts once, as rewritten"
    );

    // Five-minute buckets of the url layer, aligned to the epoch.
    let q = range.clone().layer(Layer::Url).buckets(5 * MINUTE_MS);
    let buckets = store.layer_totals(&q).await.expect("bucketed totals");
    let got: Vec<(i64, u64, u64)> = buckets
        .iter()
        .map(|b| (b.totals.bucket_ms, b.totals.count, b.totals.errors))
        .collect();
    let b0 = minute(0) - minute(0).rem_euclid(5 * MINUTE_MS);
    let b = |m: i64| m - m.rem_euclid(5 * MINUTE_MS);
    let mut want: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for (m, c, e) in [(minute(0), 70, 5), (minute(1), 30, 3), (minute(6), 10, 10)] {
        let w = want.entry(b(m)).or_default();
        w.0 += c;
        w.1 += e;
    }
    let want: Vec<(i64, u64, u64)> = want.into_iter().map(|(k, (c, e))| (k, c, e)).collect();
    assert_eq!(got, want, "buckets from {b0}");
    assert!(buckets.iter().all(|b| b.layer == Layer::Url));
    assert!(
        store
            .layer_totals(&range.clone().buckets(90_000))
            .await
            .is_err(),
        "a bucket of 1.5 minutes is refused"
    );

    // Series of the url layer, ranked.
    let sq = |order: Metric, limit: usize| SeriesTotalsQuery {
        range: range.clone().layer(Layer::Url),
        by_host: false,
        order,
        limit,
    };
    let by_count = store
        .series_totals(&sq(Metric::Count, 10))
        .await
        .expect("series totals");
    let rows: Vec<(&str, u64, u64)> = by_count
        .iter()
        .map(|r| (r.name.as_str(), r.totals.count, r.totals.errors))
        .collect();
    assert_eq!(
        rows,
        vec![("GET /login", 100, 8), ("POST /pay", 10, 10)],
        "hosts merged"
    );
    assert!(
        by_count
            .iter()
            .all(|r| r.host.is_empty() && r.service == "gw")
    );
    let worst = store
        .series_totals(&sq(Metric::ErrorRatio, 1))
        .await
        .expect("worst");
    assert_eq!(worst.len(), 1);
    assert_eq!(worst[0].name, "POST /pay", "highest error ratio");

    // Every layer at once, one per layer; and the agent figures per host.
    let mut all = sq(Metric::Errors, 1);
    all.range.layer = None;
    let top1: Vec<(Layer, String)> = store
        .series_totals(&all)
        .await
        .expect("per-layer worst")
        .into_iter()
        .map(|r| (r.layer, r.name))
        .collect();
    assert_eq!(
        top1,
        vec![
            (Layer::Url, "POST /pay".to_owned()),
            (Layer::Component, "slow query".to_owned()),
            (Layer::Infra, "agent.heartbeat".to_owned()),
        ]
    );
    let mut agents = TotalsQuery::range(minute(0), minute(10)).layer(Layer::Infra);
    agents.name_prefix = Some("agent.nginx.".into());
    let per_host = store
        .series_totals(&SeriesTotalsQuery {
            range: agents,
            by_host: true,
            order: Metric::Count,
            limit: 100,
        })
        .await
        .expect("per host");
    let mut rows: Vec<(String, String, Option<f64>, i64)> = per_host
        .into_iter()
        .map(|r| {
            (
                r.host,
                r.name,
                r.totals.value_avg(),
                r.totals.last_minute_ms,
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        rows,
        vec![
            (
                "web1".into(),
                "agent.nginx.lag_seconds".into(),
                Some(3.0),
                minute(3)
            ),
            (
                "web2".into(),
                "agent.nginx.lag_seconds".into(),
                Some(9.0),
                minute(4)
            ),
        ]
    );
}

/// Whole-layer rollups round-trip, replace by document id, merge across
/// collectors into the layer's own percentiles per bucket, and are never
/// seen by a read of series.
pub async fn layer_rollups_apart_from_series(store: &dyn Store) {
    let whole = SeriesKey::whole_layer(Layer::Business);
    let series = key(Layer::Business, "shop", "web1", "order");
    let (lat_a, lat_b, lat_c) = (latencies(50, 11), latencies(30, 12), latencies(20, 13));
    let docs = vec![
        rollup(minute(60), &whole, "c1", &lat_a, 2),
        rollup(minute(61), &whole, "c2", &lat_b, 1),
        rollup(minute(61), &whole, "c1", &lat_c, 0),
        rollup(minute(75), &whole, "c1", &[5.0], 0),
    ];
    // Written once half-done and then whole: the rewrite replaces.
    if let Err(e) = store.write_layer_rollups(&docs[..1]).await {
        panic!("write_layer_rollups failed: {e}");
    }
    if let Err(e) = store.write_layer_rollups(&docs).await {
        panic!("write_layer_rollups failed: {e}");
    }
    write_rollups(store, &[rollup(minute(60), &series, "c1", &[1.0, 2.0], 0)]).await;
    sync(store).await;

    let got = match store
        .read_layer_rollups(Layer::Business, minute(60), minute(75))
        .await
    {
        Ok(r) => r,
        Err(e) => panic!("read_layer_rollups failed: {e}"),
    };
    assert!(
        got.windows(2).all(|w| w[0].minute_ms <= w[1].minute_ms),
        "oldest first"
    );
    let mut counts: Vec<(i64, u64)> = got.iter().map(|r| (r.minute_ms, r.count)).collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![(minute(60), 50), (minute(61), 20), (minute(61), 30)],
        "the rewrite replaced, the end is exclusive, other collectors kept apart"
    );
    match store
        .read_layer_rollups(Layer::Url, minute(60), minute(76))
        .await
    {
        Ok(r) => assert!(r.is_empty(), "another layer has none: {r:?}"),
        Err(e) => panic!("read_layer_rollups of url failed: {e}"),
    }
    assert!(
        matches!(
            store
                .read_layer_rollups(Layer::Business, minute(61), minute(60))
                .await,
            Err(StoreError::InvalidQuery(_))
        ),
        "an inverted range is an invalid query"
    );

    // One bucket of 15 minutes holding minutes 60 and 61 (60 is a multiple
    // of 15), and one holding 75: percentiles over every event of the
    // bucket, whichever collector counted it.
    let points = match store
        .layer_points(Layer::Business, minute(60), minute(90), 15 * MINUTE_MS)
        .await
    {
        Ok(p) => p,
        Err(e) => panic!("layer_points failed: {e}"),
    };
    assert_eq!(minutes_of(&points), vec![minute(60), minute(75)]);
    let all: Vec<f64> = lat_a.iter().chain(&lat_b).chain(&lat_c).copied().collect();
    assert_eq!((points[0].count, points[0].errors), (100, 3));
    assert_close("bucket rate", points[0].rate, 100.0 / 900.0, 1e-9);
    for (q, got) in [
        (0.50, points[0].p50_ms),
        (0.90, points[0].p90_ms),
        (0.99, points[0].p99_ms),
    ] {
        assert_some_close(
            &format!("layer p{}", q * 100.0),
            got,
            exact_quantile(&all, q),
            0.02,
        );
    }
    assert!(
        matches!(
            store
                .layer_points(Layer::Business, minute(60), minute(90), 90_000)
                .await,
            Err(StoreError::InvalidQuery(_))
        ),
        "a bucket of 1.5 minutes is an invalid query"
    );

    // Series reads and sums never see the whole-layer documents.
    let q = SeriesQuery::layer(Layer::Business, minute(60), minute(76));
    let series_docs = match store.read_rollups(&q).await {
        Ok(r) => r,
        Err(e) => panic!("read_rollups failed: {e}"),
    };
    assert_eq!(
        series_docs.len(),
        1,
        "only the series' document: {series_docs:?}"
    );
    let totals = match store
        .layer_totals(&TotalsQuery::range(minute(60), minute(76)).layer(Layer::Business))
        .await
    {
        Ok(t) => t,
        Err(e) => panic!("layer_totals failed: {e}"),
    };
    assert_eq!(
        totals.iter().map(|t| t.totals.count).sum::<u64>(),
        2,
        "layer totals sum series only: {totals:?}"
    );
}

/// The collector's documents of a few minutes: series of two layers and an
/// infra gauge, and, per layer (but infra) and minute, the whole-layer
/// rollup of the same events in two collector parts.
fn collector_minutes(first: i64, minutes: i64) -> (Vec<Rollup>, Vec<Rollup>) {
    let series = [
        key(Layer::Url, "shop", "web1", "GET /cart"),
        key(Layer::Url, "shop", "web2", "POST /pay"),
        key(Layer::Call, "shop", "web1", "pay-gw charge"),
    ];
    let mut docs = Vec::new();
    let mut wholes: BTreeMap<(i64, Layer, u64), Rollup> = BTreeMap::new();
    for m in 0..minutes {
        let at = minute(first + m);
        for (i, k) in series.iter().enumerate() {
            let mut r = rollup(
                at,
                k,
                "c1",
                &latencies(10 + i * 7, (m * 3) as u64 + i as u64),
                i,
            );
            r.part = (i % 2) as u64;
            wholes
                .entry((at, k.layer, r.part))
                .or_insert_with(|| {
                    let mut w = Rollup::empty(at, SeriesKey::whole_layer(k.layer), "c1");
                    w.part = r.part;
                    w
                })
                .merge(&r);
            docs.push(r);
        }
        docs.push(gauge(
            at,
            &key(Layer::Infra, "host", "web1", "cpu.busy"),
            "c1",
            &[20.0 + m as f64, 30.0],
        ));
    }
    (docs, wholes.into_values().collect())
}

/// Summing a layer from its whole-layer rollups gives what summing its
/// series gives (whether a backend uses them or sums of its own).
pub async fn whole_layer_totals_equal_series_totals(store: &dyn Store) {
    let (docs, wholes) = collector_minutes(90, 4);
    write_rollups(store, &docs).await;
    if let Err(e) = store.write_layer_rollups(&wholes).await {
        panic!("write_layer_rollups failed: {e}");
    }
    sync(store).await;
    for bucket in [None, Some(MINUTE_MS), Some(2 * MINUTE_MS)] {
        let mut q = TotalsQuery::range(minute(90), minute(94));
        q.bucket_ms = bucket;
        let by_series = match store.layer_totals(&q).await {
            Ok(t) => t,
            Err(e) => panic!("layer_totals failed: {e}"),
        };
        q.whole_layers = true;
        let by_layer = match store.layer_totals(&q).await {
            Ok(t) => t,
            Err(e) => panic!("layer_totals (whole layers) failed: {e}"),
        };
        let shape = |t: &[crate::LayerTotals]| {
            t.iter()
                .map(|x| {
                    (
                        x.layer,
                        x.totals.bucket_ms,
                        x.totals.count,
                        x.totals.errors,
                        x.totals.latency_count,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(shape(&by_layer), shape(&by_series), "bucket {bucket:?}");
        assert_eq!(
            by_series
                .iter()
                .map(|x| x.layer)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3,
            "url, call and infra: {by_series:?}"
        );
        for (a, b) in by_layer.iter().zip(&by_series) {
            assert_close(
                &format!("{} latency sum", a.layer),
                a.totals.latency_sum_ms,
                b.totals.latency_sum_ms,
                1e-9,
            );
            assert_close(
                &format!("{} value sum", a.layer),
                a.totals.value_sum,
                b.totals.value_sum,
                1e-9,
            );
        }
    }
}

/// Minutes of hours `hours` (each a count of hours after [`BASE_MS`]) for
/// two url series and an infra gauge, split across two collectors, with
/// the whole-layer rollups of the same events; and every latency of the
/// first series, for exact quantiles.
fn hourly_fixture(
    hours: std::ops::Range<i64>,
    minutes: &[i64],
) -> (Vec<Rollup>, Vec<Rollup>, Vec<f64>) {
    let cart = key(Layer::Url, "hshop", "web1", "GET /cart");
    let pay = key(Layer::Url, "hshop", "web2", "POST /pay");
    let cpu = key(Layer::Infra, "hhost", "web1", "cpu.busy");
    let mut docs = Vec::new();
    let mut wholes: BTreeMap<(i64, String), Rollup> = BTreeMap::new();
    let mut cart_lat = Vec::new();
    for h in hours {
        for &m in minutes {
            let at = BASE_MS + h * HOUR_MS + m * MINUTE_MS;
            for (c, collector) in ["c1", "c2"].into_iter().enumerate() {
                let seed = (h * 60 + m) as u64 * 2 + c as u64;
                let lat = latencies(8 + c * 5, seed);
                cart_lat.extend_from_slice(&lat);
                let a = rollup(at, &cart, collector, &lat, c + 1);
                let b = rollup(at, &pay, collector, &latencies(3, seed + 99), 0);
                for r in [&a, &b] {
                    wholes
                        .entry((at, collector.to_owned()))
                        .or_insert_with(|| {
                            Rollup::empty(at, SeriesKey::whole_layer(Layer::Url), collector)
                        })
                        .merge(r);
                }
                docs.extend([a, b, gauge(at, &cpu, collector, &[10.0 + m as f64, 40.0])]);
            }
        }
    }
    (docs, wholes.into_values().collect(), cart_lat)
}

async fn write_fixture(store: &dyn Store, docs: &[Rollup], wholes: &[Rollup]) {
    write_rollups(store, docs).await;
    if let Err(e) = store.write_layer_rollups(wholes).await {
        panic!("write_layer_rollups failed: {e}");
    }
    sync(store).await;
}

async fn compact(store: &dyn Store, hour_ms: i64) {
    if let Err(e) = compact_hour(store, hour_ms, BASE_MS + 30 * DAY_MS).await {
        panic!("compact_hour({hour_ms}) failed: {e}");
    }
}

async fn series_points(store: &dyn Store, q: &SeriesQuery, bucket: i64) -> Vec<Point> {
    match store.series_points(q, bucket).await {
        Ok(p) => p,
        Err(e) => panic!("series_points({q:?}, {bucket}) failed: {e}"),
    }
}

async fn layer_sums(store: &dyn Store, q: &TotalsQuery) -> Vec<LayerTotals> {
    match store.layer_totals(q).await {
        Ok(r) => r,
        Err(e) => panic!("layer_totals({q:?}) failed: {e}"),
    }
}

async fn series_sums(store: &dyn Store, q: &SeriesTotalsQuery) -> Vec<SeriesTotals> {
    match store.series_totals(q).await {
        Ok(r) => r,
        Err(e) => panic!("series_totals({q:?}) failed: {e}"),
    }
}

/// Points equal but for the float rounding of sums taken in another order.
fn assert_points_equal(what: &str, got: &[Point], want: &[Point]) {
    assert_eq!(minutes_of(got), minutes_of(want), "{what}: buckets");
    for (g, w) in got.iter().zip(want) {
        let at = format!("{what} at {}", w.minute);
        assert_eq!(
            (g.count, g.errors),
            (w.count, w.errors),
            "{at}: count, errors"
        );
        for (name, a, b) in [
            ("avg", g.avg_ms, w.avg_ms),
            ("p50", g.p50_ms, w.p50_ms),
            ("p90", g.p90_ms, w.p90_ms),
            ("p99", g.p99_ms, w.p99_ms),
            ("max", g.max_ms, w.max_ms),
            ("value", g.value, w.value),
        ] {
            match (a, b) {
                (Some(a), Some(b)) => assert_close(&format!("{at}: {name}"), a, b, 1e-9),
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{at}: {name}"),
            }
        }
    }
}

/// Sums equal but for float rounding; `p99_max_ms` (the highest p99 of any
/// one document) and the newest minute are per document, so an hourly
/// document answers them for its hour, and they are not compared.
fn assert_totals_equal(what: &str, got: &Totals, want: &Totals) {
    assert_eq!(got.bucket_ms, want.bucket_ms, "{what}: bucket");
    assert_eq!(
        (got.count, got.errors, got.latency_count, got.value_n),
        (want.count, want.errors, want.latency_count, want.value_n),
        "{what}: counts"
    );
    assert_close(
        &format!("{what}: latency sum"),
        got.latency_sum_ms,
        want.latency_sum_ms,
        1e-9,
    );
    assert_close(
        &format!("{what}: value sum"),
        got.value_sum,
        want.value_sum,
        1e-9,
    );
    assert_eq!(
        got.latency_max_ms, want.latency_max_ms,
        "{what}: latency max"
    );
    assert_eq!(got.value_max, want.value_max, "{what}: value max");
}

use crate::Totals;

/// An hourly rollup is the merge of its hour's minutes across collectors and
/// parts: counts and errors add up exactly, percentiles are within the
/// histogram's bound of the exact ones, and the hour is marked compacted.
pub async fn hourly_equals_merge_of_minutes(store: &dyn Store) {
    let (docs, wholes, cart_lat) = hourly_fixture(0..1, &[0, 1, 17, 59]);
    write_fixture(store, &docs, &wholes).await;
    compact(store, BASE_MS).await;
    sync(store).await;
    let q = SeriesQuery::layer(Layer::Url, BASE_MS, BASE_MS + HOUR_MS)
        .service("hshop")
        .name("GET /cart");
    let hourly = store.read_hourly_rollups(&q).await.expect("read hourly");
    assert_eq!(
        hourly.len(),
        1,
        "one document per (hour, series): {hourly:?}"
    );
    let h = &hourly[0];
    assert_eq!(h.minute_ms, BASE_MS);
    assert_eq!(
        h.doc_id(),
        format!("{BASE_MS}-{}-hourly-0", h.key.id()),
        "deterministic id"
    );
    assert_eq!(h.count, cart_lat.len() as u64);
    // Errors: 1 per minute from c1, 2 from c2, over 4 minutes.
    assert_eq!(h.errors, 12);
    let p = h.point(60);
    for (q, got) in [(0.50, p.p50_ms), (0.90, p.p90_ms), (0.99, p.p99_ms)] {
        assert_some_close(
            &format!("hourly p{}", (q * 100.0) as u32),
            got,
            exact_quantile(&cart_lat, q),
            0.02,
        );
    }
    let max = cart_lat.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(p.max_ms, Some(max));
    // The infra gauge and the whole layer got their hour too.
    let cpu = store
        .read_hourly_rollups(&SeriesQuery::layer(
            Layer::Infra,
            BASE_MS,
            BASE_MS + HOUR_MS,
        ))
        .await
        .expect("read hourly infra");
    assert_eq!(cpu.len(), 1);
    let g = cpu[0].gauge.as_ref().expect("gauge merged");
    // Readings 10 + minute and 40, twice per minute (two collectors).
    assert_eq!((g.n, g.max, g.min), (16, 69.0, 10.0));
    let whole = store
        .read_hourly_layer_rollups(Layer::Url, BASE_MS, BASE_MS + HOUR_MS)
        .await
        .expect("read hourly layer");
    assert_eq!(
        whole.len(),
        1,
        "one whole-layer document per hour and layer"
    );
    let series_events: u64 = docs
        .iter()
        .filter(|r| r.key.layer == Layer::Url)
        .map(|r| r.count)
        .sum();
    assert_eq!(whole[0].count, series_events);
    let marks = store
        .hour_marks(BASE_MS, BASE_MS + HOUR_MS)
        .await
        .expect("marks");
    let all: u64 = docs.iter().chain(&wholes).map(|r| r.count).sum();
    assert_eq!(marks.len(), 1);
    assert_eq!(
        (marks[0].hour_ms, marks[0].events, marks[0].series),
        (BASE_MS, all, 3)
    );
}

/// Minutes that arrive after their hour was compacted make the next pass
/// compact it again (the mark's events no longer match the minutes'), and
/// an unchanged hour is left alone.
pub async fn late_minutes_recompact(store: &dyn Store) {
    let (docs, wholes, _) = hourly_fixture(0..2, &[3, 30]);
    write_fixture(store, &docs, &wholes).await;
    let policy = CompactPolicy {
        grace_ms: 15_000,
        lookback_ms: 3 * DAY_MS,
        max_hours: 100,
    };
    let now = BASE_MS + 3 * HOUR_MS;
    let first = compact_due(store, now, policy).await.expect("first pass");
    assert_eq!(first.hours, vec![BASE_MS, BASE_MS + HOUR_MS]);
    assert!(first.recompacted.is_empty());
    sync(store).await;
    let again = compact_due(store, now, policy).await.expect("second pass");
    assert!(again.hours.is_empty(), "nothing new: {again:?}");
    // A late minute of the first hour, from a collector that was away.
    let cart = key(Layer::Url, "hshop", "web1", "GET /cart");
    let late = rollup(BASE_MS + 44 * MINUTE_MS, &cart, "c3", &latencies(7, 5), 7);
    write_rollups(store, std::slice::from_ref(&late)).await;
    sync(store).await;
    let third = compact_due(store, now + HOUR_MS, policy)
        .await
        .expect("third pass");
    assert_eq!(third.recompacted, vec![BASE_MS], "{third:?}");
    sync(store).await;
    let q = SeriesQuery::layer(Layer::Url, BASE_MS, BASE_MS + 2 * HOUR_MS)
        .service("hshop")
        .name("GET /cart");
    let minutes: Vec<Point> =
        crate::merge::points_by_bucket(store.read_rollups(&q).await.expect("minutes"), HOUR_MS);
    let tiered = series_points(store, &q, HOUR_MS).await;
    assert_points_equal("after the late minute", &tiered, &minutes);
    let hourly = store.read_hourly_rollups(&q).await.expect("hourly");
    let first_hour: u64 = docs
        .iter()
        .filter(|r| r.key == cart && r.minute_ms < BASE_MS + HOUR_MS)
        .map(|r| r.count)
        .sum();
    assert_eq!(
        hourly[0].count,
        first_hour + 7,
        "the late minute is in the hour"
    );
    assert_eq!(hourly[0].errors, 2 + 2 * 2 + 7);
}

/// Per-series sums over a range holding a whole compacted UTC day (which a
/// backend may answer from per-day sums) and partial days at both ends
/// equal the minute tier's, by host and without.
pub async fn day_straddling_range_equals_minute_tier(store: &dyn Store) {
    let (docs, wholes, _) = hourly_fixture(0..40, &[0, 31]);
    write_fixture(store, &docs, &wholes).await;
    let day = (BASE_MS + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS;
    assert!(
        day + DAY_MS <= BASE_MS + 40 * HOUR_MS,
        "the fixture holds a whole day"
    );
    let (from, to) = (
        BASE_MS + 5 * HOUR_MS + 17 * MINUTE_MS,
        BASE_MS + 39 * HOUR_MS + 32 * MINUTE_MS,
    );
    let queries = [true, false].map(|by_host| SeriesTotalsQuery {
        range: TotalsQuery::range(from, to),
        by_host,
        order: Metric::Count,
        limit: 10,
    });
    let mut before = Vec::new();
    for q in &queries {
        before.push(series_sums(store, q).await);
    }
    assert!(before[0].iter().any(|s| s.totals.count > 0));
    for h in 0..40 {
        compact(store, BASE_MS + h * HOUR_MS).await;
    }
    sync(store).await;
    for (q, want) in queries.iter().zip(&before) {
        let got = series_sums(store, q).await;
        assert_eq!(got.len(), want.len(), "{q:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(
                (g.layer, &g.service, &g.name, &g.host),
                (w.layer, &w.service, &w.name, &w.host)
            );
            assert_totals_equal(
                &format!("series {} {}", w.name, w.host),
                &g.totals,
                &w.totals,
            );
        }
    }
    // A late minute inside the whole day, compacted again: the day follows.
    let cart = key(Layer::Url, "hshop", "web1", "GET /cart");
    let late_at = day + 3 * HOUR_MS + 44 * MINUTE_MS;
    write_rollups(
        store,
        &[rollup(late_at, &cart, "c3", &latencies(6, 4242), 2)],
    )
    .await;
    sync(store).await;
    compact(store, late_at).await;
    sync(store).await;
    let got = series_sums(store, &queries[0]).await;
    let cart_of = |rows: &[SeriesTotals]| {
        rows.iter()
            .find(|r| r.name == "GET /cart" && r.host == "web1")
            .map(|r| r.totals.clone())
            .expect("cart")
    };
    assert_eq!(
        cart_of(&got).count,
        cart_of(&before[0]).count + 6,
        "the late minute's six events counted once"
    );
}

/// A range straddling hour edges answers, once its whole hours are
/// compacted, what the minute tier answered before: points in hour
/// buckets, layer sums (series' and whole layers'), series sums.
pub async fn straddling_range_equals_minute_tier(store: &dyn Store) {
    let (docs, wholes, _) = hourly_fixture(0..4, &[0, 9, 17, 31, 45, 59]);
    write_fixture(store, &docs, &wholes).await;
    let (from, to) = (
        BASE_MS + 17 * MINUTE_MS,
        BASE_MS + 3 * HOUR_MS + 32 * MINUTE_MS,
    );
    let q = SeriesQuery::layer(Layer::Url, from, to).service("hshop");
    let mut whole_q = TotalsQuery::range(from, to)
        .layer(Layer::Url)
        .buckets(HOUR_MS);
    whole_q.whole_layers = true;
    let totals_qs = [
        TotalsQuery::range(from, to),
        TotalsQuery::range(from, to).buckets(HOUR_MS),
        TotalsQuery::range(from, to).buckets(2 * HOUR_MS),
        whole_q,
        {
            let mut n = TotalsQuery::range(from, to).layer(Layer::Url);
            n.name = Some("POST /pay".into());
            n
        },
    ];
    let table_q = SeriesTotalsQuery {
        range: TotalsQuery::range(from, to),
        by_host: true,
        order: Metric::Count,
        limit: 10,
    };
    let before_points = series_points(store, &q, HOUR_MS).await;
    let before_layer = store
        .layer_points(Layer::Url, from, to, HOUR_MS)
        .await
        .expect("layer points");
    let mut before_totals = Vec::new();
    for tq in &totals_qs {
        before_totals.push(layer_sums(store, tq).await);
    }
    let before_table = series_sums(store, &table_q).await;
    assert_eq!(before_points.len(), 4);
    for h in 0..4 {
        compact(store, BASE_MS + h * HOUR_MS).await;
    }
    sync(store).await;
    // The reads now take hours 1 and 2 from the hourly tier (hour 0 and 3
    // are partial), and still answer alike.
    assert_points_equal(
        "series points",
        &series_points(store, &q, HOUR_MS).await,
        &before_points,
    );
    assert_points_equal(
        "layer points",
        &store
            .layer_points(Layer::Url, from, to, HOUR_MS)
            .await
            .expect("layer points"),
        &before_layer,
    );
    for (tq, want) in totals_qs.iter().zip(&before_totals) {
        let got = layer_sums(store, tq).await;
        assert_eq!(got.len(), want.len(), "{tq:?}: {got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.layer, w.layer);
            assert_totals_equal(&format!("{tq:?} {}", w.layer), &g.totals, &w.totals);
        }
    }
    let table = series_sums(store, &table_q).await;
    assert_eq!(table.len(), before_table.len());
    for (g, w) in table.iter().zip(&before_table) {
        assert_eq!(
            (g.layer, &g.service, &g.name, &g.host),
            (w.layer, &w.service, &w.name, &w.host)
        );
        assert_totals_equal(&format!("series {}", w.name), &g.totals, &w.totals);
    }
    // Proof that the hourly tier answered: with the minutes of hour 1 gone
    // from reads of the minute tier alone, the tiered read still has them.
    let hourly = store
        .read_hourly_rollups(&SeriesQuery::layer(
            Layer::Url,
            BASE_MS + HOUR_MS,
            BASE_MS + 3 * HOUR_MS,
        ))
        .await
        .expect("hourly");
    assert_eq!(hourly.len(), 4, "two series, two whole hours");
}

/// Each tier has its own retention: minutes go after `retention_days`, the
/// hours compacted from them stay (and answer reads of the range) until
/// `hourly_retention_days`.
pub async fn retention_per_tier(store: &dyn Store) {
    // Work months before BASE_MS, as the other retention case does: hour
    // 0 of 2026-07-10.
    let day0 = BASE_MS - 133 * DAY_MS - 10 * HOUR_MS;
    let shift = day0 - BASE_MS;
    let (mut docs, mut wholes, _) = hourly_fixture(0..2, &[5, 50]);
    for r in docs.iter_mut().chain(wholes.iter_mut()) {
        r.minute_ms += shift;
    }
    write_fixture(store, &docs, &wholes).await;
    compact(store, day0).await;
    compact(store, day0 + HOUR_MS).await;
    sync(store).await;
    let range = TotalsQuery::range(day0, day0 + 2 * HOUR_MS).layer(Layer::Url);
    let before = layer_sums(store, &range).await;
    // 20 days later: the minutes are past 14 days, the hours are not.
    let now = day0 + 20 * DAY_MS;
    store
        .apply_retention(now, 14)
        .await
        .expect("minute retention");
    store
        .apply_hourly_retention(now, 400)
        .await
        .expect("hourly retention");
    sync(store).await;
    let minutes = store
        .read_rollups(&SeriesQuery::layer(Layer::Url, day0, day0 + 2 * HOUR_MS))
        .await
        .expect("minutes");
    assert!(
        minutes.is_empty(),
        "minutes past retention_days are gone: {}",
        minutes.len()
    );
    let after = layer_sums(store, &range).await;
    assert_eq!(after.len(), 1);
    assert_totals_equal(
        "hours after minute retention",
        &after[0].totals,
        &before[0].totals,
    );
    assert_eq!(
        store
            .hour_marks(day0, day0 + 2 * HOUR_MS)
            .await
            .expect("marks")
            .len(),
        2
    );
    // A year and a half later the hours go too (whole months, for
    // Elasticsearch's monthly indices).
    let later = day0 + 560 * DAY_MS;
    let r = store
        .apply_hourly_retention(later, 400)
        .await
        .expect("hourly retention");
    sync(store).await;
    assert!(r.deleted_docs > 0 || !r.dropped.is_empty(), "{r:?}");
    let hourly = store
        .read_hourly_rollups(&SeriesQuery::layer(Layer::Url, day0, day0 + 2 * HOUR_MS))
        .await
        .expect("hourly");
    assert!(
        hourly.is_empty(),
        "hours past hourly_retention_days are gone"
    );
    assert!(
        store
            .hour_marks(day0, day0 + 2 * HOUR_MS)
            .await
            .expect("marks")
            .is_empty()
    );
}

/// Two compactors on one store at once (two collectors) count nothing
/// twice: they write the same documents under the same ids. And the race
/// that could lose a late minute — a compactor that read the hour before
/// the late minute writing after one that read it — cannot: a document is
/// never replaced by one built from fewer events.
pub async fn two_compactors_count_nothing_twice(store: &dyn Store) {
    let (docs, wholes, _) = hourly_fixture(0..2, &[1, 2, 40]);
    write_fixture(store, &docs, &wholes).await;
    let policy = CompactPolicy {
        grace_ms: 15_000,
        lookback_ms: 3 * DAY_MS,
        max_hours: 100,
    };
    let now = BASE_MS + 3 * HOUR_MS;
    let (a, b) = tokio::join!(
        compact_due(store, now, policy),
        compact_due(store, now, policy)
    );
    let (a, b) = (a.expect("compactor a"), b.expect("compactor b"));
    assert!(a.hours.len() + b.hours.len() >= 2, "{a:?} {b:?}");
    sync(store).await;
    let range = (BASE_MS, BASE_MS + 2 * HOUR_MS);
    let q = TotalsQuery::range(range.0, range.1).buckets(HOUR_MS);
    let want: u64 = docs.iter().map(|r| r.count).sum();
    let got: u64 = layer_sums(store, &q)
        .await
        .iter()
        .map(|r| r.totals.count)
        .sum();
    assert_eq!(got, want, "every event once");
    let hourly = store
        .read_hourly_rollups(&SeriesQuery::layer(Layer::Url, range.0, range.1))
        .await
        .expect("hourly");
    assert_eq!(hourly.len(), 4, "one document per (hour, series)");

    // The stale compactor: it read hour 0 before a late minute arrived.
    let (stale_series, stale_layers) = store.read_hour_minutes(BASE_MS).await.expect("read hour");
    let cart = key(Layer::Url, "hshop", "web1", "GET /cart");
    let late = rollup(BASE_MS + 50 * MINUTE_MS, &cart, "c3", &latencies(9, 1), 0);
    write_rollups(store, std::slice::from_ref(&late)).await;
    sync(store).await;
    compact(store, BASE_MS).await; // the up-to-date compactor, first
    let stale = crate::compact::merge_hour(BASE_MS, stale_series);
    let stale_layers = crate::compact::merge_hour(BASE_MS, stale_layers);
    let events = stale.iter().chain(&stale_layers).map(|r| r.count).sum();
    let stale_hour = crate::CompactedHour {
        mark: crate::HourMark {
            hour_ms: BASE_MS,
            events,
            series: stale.len() as u64,
            compacted_at_ms: BASE_MS + 31 * DAY_MS,
        },
        series: stale,
        layers: stale_layers,
    };
    store.write_hour(&stale_hour).await.expect("stale write");
    sync(store).await;
    let got: u64 = layer_sums(store, &TotalsQuery::range(range.0, range.1))
        .await
        .iter()
        .map(|r| r.totals.count)
        .sum();
    assert_eq!(
        got,
        want + 9,
        "the late minute survives the stale compactor"
    );
    let marks = store
        .hour_marks(BASE_MS, BASE_MS + HOUR_MS)
        .await
        .expect("marks");
    assert_eq!(
        marks[0].events,
        events + 9,
        "the mark keeps the fuller watermark"
    );
}

/// An hour holding more minute rollups than one page of a backend's read
/// (Elasticsearch pages by 5,000) compacts every one of them once: 250
/// series over 50 minutes from two collectors, 25,000 rollups.
pub async fn an_hour_of_many_pages_compacts_whole(store: &dyn Store) {
    let hour = BASE_MS + 5 * HOUR_MS;
    let mut docs = Vec::new();
    for s in 0..250u64 {
        let k = key(Layer::Url, "pshop", "web1", &format!("GET /p/{s}"));
        for m in 0..50i64 {
            for (c, collector) in ["c1", "c2"].into_iter().enumerate() {
                let lat = latencies(1 + (s % 3) as usize, s * 100 + m as u64);
                docs.push(rollup(hour + m * MINUTE_MS, &k, collector, &lat, c));
            }
        }
    }
    for chunk in docs.chunks(5_000) {
        write_rollups(store, chunk).await;
    }
    sync(store).await;
    compact(store, hour).await;
    sync(store).await;
    let total: u64 = docs.iter().map(|r| r.count).sum();
    let marks = store.hour_marks(hour, hour + HOUR_MS).await.expect("marks");
    assert_eq!(marks.len(), 1);
    assert_eq!((marks[0].events, marks[0].series), (total, 250));
    let hourly = store
        .read_hourly_rollups(&SeriesQuery::layer(Layer::Url, hour, hour + HOUR_MS))
        .await
        .expect("read hourly");
    assert_eq!(hourly.len(), 250);
    for h in &hourly {
        let s: u64 = h.key.name.trim_start_matches("GET /p/").parse().unwrap();
        assert_eq!(h.count, 2 * 50 * (1 + s % 3), "{}", h.key.name);
        assert_eq!(h.errors, 50, "one error a minute from c2: {}", h.key.name);
    }
}

/// Each collector's partial of hour `hour` (a count of hours after
/// [`BASE_MS`]) built from the fixture's documents, as the collector builds
/// it from what it writes.
fn partials_of(hour: i64, docs: &[Rollup], wholes: &[Rollup]) -> Vec<crate::HourPartial> {
    let start = BASE_MS + hour * HOUR_MS;
    let mut by: BTreeMap<String, crate::compact::HourPartialBuilder> = BTreeMap::new();
    let in_hour = |r: &&Rollup| crate::tier::hour_of(r.minute_ms) == start;
    for (whole, r) in docs
        .iter()
        .filter(in_hour)
        .map(|r| (false, r))
        .chain(wholes.iter().filter(in_hour).map(|r| (true, r)))
    {
        let b = by
            .entry(r.collector.clone())
            .or_insert_with(|| crate::compact::HourPartialBuilder::new(start, &r.collector));
        if whole {
            b.add_layer(r);
        } else {
            b.add(r);
        }
    }
    by.into_values().map(|b| b.finish()).collect()
}

/// Writes `partial`, then compacts its hour.
async fn compact_with_partial(
    store: &dyn Store,
    partial: &crate::HourPartial,
) -> (crate::HourMark, crate::compact::BuiltFrom) {
    store
        .write_hour_partial(partial)
        .await
        .expect("write partial");
    sync(store).await;
    let built = compact_hour(store, partial.hour_ms, BASE_MS + DAY_MS)
        .await
        .expect("compact");
    sync(store).await;
    built
}

/// The hour's hourly documents as the store holds them, by series id.
async fn hourly_by_id(store: &dyn Store, hour_ms: i64) -> BTreeMap<String, Rollup> {
    let mut out = BTreeMap::new();
    for layer in Layer::ALL {
        let q = SeriesQuery::layer(layer, hour_ms, hour_ms + HOUR_MS);
        for r in store.read_hourly_rollups(&q).await.expect("read hourly") {
            out.insert(r.key.id(), r);
        }
    }
    out
}

/// Hourly documents equal the merge of the hour's minutes: counts, errors
/// and histograms exactly, sums to rounding.
fn assert_hourly_equal(what: &str, got: &BTreeMap<String, Rollup>, want: &[Rollup]) {
    assert_eq!(got.len(), want.len(), "{what}: series");
    for w in want {
        let g = got
            .get(&w.key.id())
            .unwrap_or_else(|| panic!("{what}: {} missing", w.key.id()));
        assert_eq!(
            (g.count, g.errors, g.latency_count, &g.errors_by_class),
            (w.count, w.errors, w.latency_count, &w.errors_by_class),
            "{what}: {}",
            w.key.id()
        );
        assert_eq!(g.histogram, w.histogram, "{what}: {}", w.key.id());
        assert!(
            (g.latency_sum_ms - w.latency_sum_ms).abs() <= 1e-6 * w.latency_sum_ms.abs().max(1.0),
            "{what}: {} latency sum {} vs {}",
            w.key.id(),
            g.latency_sum_ms,
            w.latency_sum_ms
        );
        assert_eq!(
            (g.latency_max_ms, g.latency_min_ms, g.collector.as_str()),
            (
                w.latency_max_ms,
                w.latency_min_ms,
                crate::tier::HOURLY_COLLECTOR
            ),
            "{what}: {}",
            w.key.id()
        );
    }
}

/// An hour whose collectors' partials hold every event of its minutes is
/// compacted from them, and the result is the minutes' merge; a pass finds
/// an hour that just became due without partials waiting for them.
pub async fn partials_compact_like_minutes(store: &dyn Store) {
    let (docs, wholes, _) = hourly_fixture(0..2, &[0, 1, 17, 59]);
    write_fixture(store, &docs, &wholes).await;
    let first_hour: Vec<Rollup> = docs
        .iter()
        .filter(|r| r.minute_ms < BASE_MS + HOUR_MS)
        .cloned()
        .collect();
    let want = crate::compact::merge_hour(BASE_MS, first_hour);
    let partials = partials_of(0, &docs, &wholes);
    assert_eq!(partials.len(), 2, "one per collector");
    for p in &partials {
        store.write_hour_partial(p).await.expect("write partial");
    }
    // Written again (a retried write): it replaces itself.
    store
        .write_hour_partial(&partials[0])
        .await
        .expect("write partial again");
    sync(store).await;
    let read = store
        .read_hour_partials(BASE_MS)
        .await
        .expect("read partials");
    assert_eq!(read.marks.len(), 2);
    let all: u64 = docs
        .iter()
        .chain(&wholes)
        .filter(|r| r.minute_ms < BASE_MS + HOUR_MS)
        .map(|r| r.count)
        .sum();
    assert_eq!(read.marks.iter().map(|m| m.events).sum::<u64>(), all);

    // Just due (grace 15 s, a minute for the flusher): the first hour has
    // partials, the second none, so it waits.
    let policy = CompactPolicy {
        grace_ms: 15_000,
        lookback_ms: 3 * DAY_MS,
        max_hours: 100,
    };
    let now = BASE_MS + 2 * HOUR_MS + 2 * MINUTE_MS;
    let pass = compact_due(store, now, policy).await.expect("pass");
    assert_eq!(pass.hours, vec![BASE_MS], "{pass:?}");
    assert_eq!(pass.from_partials, vec![BASE_MS], "{pass:?}");
    assert_eq!(pass.waiting, vec![BASE_MS + HOUR_MS], "{pass:?}");
    sync(store).await;
    let url: Vec<Rollup> = want
        .iter()
        .filter(|r| r.key.layer == Layer::Url)
        .cloned()
        .collect();
    let got: BTreeMap<String, Rollup> = hourly_by_id(store, BASE_MS)
        .await
        .into_iter()
        .filter(|(_, r)| r.key.layer == Layer::Url)
        .collect();
    assert_hourly_equal("from partials", &got, &url);
    let marks = store
        .hour_marks(BASE_MS, BASE_MS + HOUR_MS)
        .await
        .expect("marks");
    assert_eq!(marks[0].events, all, "the mark counts the partials' events");
    let whole = store
        .read_hourly_layer_rollups(Layer::Url, BASE_MS, BASE_MS + HOUR_MS)
        .await
        .expect("hourly layer");
    let whole_want: u64 = wholes
        .iter()
        .filter(|r| r.minute_ms < BASE_MS + HOUR_MS)
        .map(|r| r.count)
        .sum();
    assert_eq!(whole.iter().map(|r| r.count).sum::<u64>(), whole_want);

    // Once the wait is over, the second hour is read from its minutes.
    let later = compact_due(store, now + crate::compact::PARTIAL_WAIT_MS, policy)
        .await
        .expect("later pass");
    assert_eq!(later.hours, vec![BASE_MS + HOUR_MS], "{later:?}");
    assert!(
        later.from_partials.is_empty() && later.waiting.is_empty(),
        "{later:?}"
    );
}

/// Partials that do not hold every event of their hour's minutes — a
/// collector without one (it restarted inside the hour), minutes that
/// arrived after the partials, a partial's leftover documents — are not
/// used: the hour is read from its minutes, and equals their merge.
pub async fn partials_that_miss_events_are_not_used(store: &dyn Store) {
    let (docs, wholes, _) = hourly_fixture(0..1, &[2, 30]);
    write_fixture(store, &docs, &wholes).await;
    let partials = partials_of(0, &docs, &wholes);
    // Only the first collector wrote one.
    assert_eq!(
        compact_with_partial(store, &partials[0]).await.1,
        crate::compact::BuiltFrom::Minutes,
        "a collector's partial missing"
    );
    let mut minutes = docs.clone();
    assert_hourly_equal(
        "one partial missing",
        &hourly_by_id(store, BASE_MS).await,
        &crate::compact::merge_hour(BASE_MS, minutes.clone()),
    );

    // Both partials, then a late minute from a third collector.
    assert_eq!(
        compact_with_partial(store, &partials[1]).await.1,
        crate::compact::BuiltFrom::Partials
    );
    let cart = key(Layer::Url, "hshop", "web1", "GET /cart");
    let late = rollup(BASE_MS + 44 * MINUTE_MS, &cart, "c3", &latencies(7, 5), 7);
    write_rollups(store, std::slice::from_ref(&late)).await;
    sync(store).await;
    minutes.push(late);
    let (mark, from) = compact_hour(store, BASE_MS, BASE_MS + DAY_MS)
        .await
        .expect("compact");
    assert_eq!(
        from,
        crate::compact::BuiltFrom::Minutes,
        "a late minute not in any partial"
    );
    sync(store).await;
    let want = crate::compact::merge_hour(BASE_MS, minutes.clone());
    assert_hourly_equal("late minute", &hourly_by_id(store, BASE_MS).await, &want);
    assert_eq!(
        mark.events,
        minutes.iter().chain(&wholes).map(|r| r.count).sum::<u64>()
    );

    // A partial that holds more than the minutes (here: a series the
    // minutes do not have, standing for leftovers of an earlier write)
    // is not used either, even when the marks add up.
    let mut padded = partials[1].clone();
    let mut ghost = padded.series[0].clone();
    ghost.key.name = "GET /ghost".into();
    ghost.count = 7;
    padded.series.push(ghost);
    assert_eq!(
        compact_with_partial(store, &padded).await.1,
        crate::compact::BuiltFrom::Minutes,
        "partials hold events the minutes do not"
    );
    assert_hourly_equal("padded partial", &hourly_by_id(store, BASE_MS).await, &want);
}

/// Per-series sums of `key`'s layer over `[from, to)` from `docs`.
fn sums_from_docs(
    docs: &[Rollup],
    layer: Layer,
    from: i64,
    to: i64,
) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in docs
        .iter()
        .filter(|r| r.key.layer == layer && r.minute_ms >= from && r.minute_ms < to)
    {
        let e = out.entry(r.key.name.clone()).or_default();
        e.0 += r.count;
        e.1 += r.errors;
    }
    out
}

/// The layer's chart over `[from, to)` in buckets of `bucket`, as the
/// store answers it, against the merge of `wholes` (its whole-layer
/// documents): every point equal.
async fn check_layer_points(
    what: &str,
    store: &dyn Store,
    wholes: &[Rollup],
    (from, to, bucket): (i64, i64, i64),
) {
    let got = match store.layer_points(Layer::Url, from, to, bucket).await {
        Ok(p) => p,
        Err(e) => panic!("layer_points failed: {e}"),
    };
    let want = crate::merge::points_by_bucket(
        wholes
            .iter()
            .filter(|r| r.minute_ms >= from && r.minute_ms < to)
            .cloned(),
        bucket,
    );
    assert_points_equal(what, &got, &want);
}

/// A layer's series table and chart, read again and again over the same
/// settled range (which a backend may keep between reads), follow every
/// change to what they sum: a late minute, a minute rewritten with the
/// same number of events but other errors, whole hours compacted, and a
/// late minute in a compacted hour compacted again.
pub async fn series_tables_follow_every_change(store: &dyn Store) {
    let (mut docs, mut wholes, _) = hourly_fixture(0..3, &[3, 17, 30, 45]);
    write_fixture(store, &docs, &wholes).await;
    let (from, to) = (
        BASE_MS + 7 * MINUTE_MS,
        BASE_MS + 2 * HOUR_MS + 35 * MINUTE_MS,
    );
    let q = SeriesTotalsQuery {
        range: TotalsQuery::range(from, to).layer(Layer::Url),
        by_host: false,
        order: Metric::Count,
        limit: 100,
    };
    let charts = [
        (from, to, 5 * MINUTE_MS),
        (BASE_MS, BASE_MS + 3 * HOUR_MS, HOUR_MS),
    ];
    // A second shape, read between the first's reads: one service, hosts
    // apart. Whatever a backend keeps must not answer one with the other.
    let mut by_host = q.clone();
    by_host.range.service = Some("hshop".into());
    by_host.by_host = true;
    let check = |what: &str, got: &[SeriesTotals], docs: &[Rollup]| {
        let got: BTreeMap<String, (u64, u64)> = got
            .iter()
            .map(|r| (r.name.clone(), (r.totals.count, r.totals.errors)))
            .collect();
        assert_eq!(got, sums_from_docs(docs, Layer::Url, from, to), "{what}");
    };
    let check_hosts = |what: &str, got: &[SeriesTotals], docs: &[Rollup]| {
        let mut want: BTreeMap<(String, String), (u64, u64, f64)> = BTreeMap::new();
        for r in docs
            .iter()
            .filter(|r| r.key.layer == Layer::Url && r.minute_ms >= from && r.minute_ms < to)
        {
            let e = want
                .entry((r.key.name.clone(), r.key.host.clone()))
                .or_default();
            e.0 += r.count;
            e.1 += r.errors;
            e.2 += r.latency_sum_ms;
        }
        assert_eq!(got.len(), want.len(), "{what}: rows");
        for g in got {
            let w = want
                .get(&(g.name.clone(), g.host.clone()))
                .unwrap_or_else(|| panic!("{what}: unexpected row {g:?}"));
            assert_eq!(
                (g.totals.count, g.totals.errors),
                (w.0, w.1),
                "{what}: {}",
                g.name
            );
            assert_close(
                &format!("{what}: latency sum"),
                g.totals.latency_sum_ms,
                w.2,
                1e-9,
            );
            assert_eq!(g.totals.bucket_ms, from, "{what}: bucket");
        }
    };
    // Both table shapes and every chart, after `$what` happened.
    macro_rules! check_everything {
        ($what:literal) => {
            check($what, &series_sums(store, &q).await, &docs);
            check_hosts(
                concat!("hosts ", $what),
                &series_sums(store, &by_host).await,
                &docs,
            );
            for c in charts {
                check_layer_points(concat!("chart ", $what), store, &wholes, c).await;
            }
        };
    }
    let first = series_sums(store, &q).await;
    check("first read", &first, &docs);
    check_hosts(
        "hosts, first read",
        &series_sums(store, &by_host).await,
        &docs,
    );
    let again = series_sums(store, &q).await;
    assert_eq!(again, first, "the same range read again");
    for c in charts {
        check_layer_points("first chart", store, &wholes, c).await;
        check_layer_points("the chart again", store, &wholes, c).await;
    }

    // A late minute inside a settled block, with its whole-layer document.
    let cart = key(Layer::Url, "hshop", "web1", "GET /cart");
    let late_whole = |r: &Rollup| {
        let mut w = Rollup::empty(
            r.minute_ms,
            SeriesKey::whole_layer(Layer::Url),
            &r.collector,
        );
        w.merge(r);
        w
    };
    let late = rollup(BASE_MS + 17 * MINUTE_MS, &cart, "c3", &latencies(5, 77), 1);
    write_fixture(store, std::slice::from_ref(&late), &[late_whole(&late)]).await;
    wholes.push(late_whole(&late));
    docs.push(late);
    check_everything!("after a late minute");

    // A minute rewritten under its own id: as many events, more errors.
    let i = docs
        .iter()
        .position(|r| r.key == cart && r.minute_ms == BASE_MS + HOUR_MS + 30 * MINUTE_MS)
        .expect("a cart minute in the second hour");
    let old = docs[i].clone();
    let rewritten = rollup(
        old.minute_ms,
        &cart,
        &old.collector,
        &latencies(old.count as usize, 5),
        old.count as usize,
    );
    assert_eq!(rewritten.count, old.count);
    assert!(rewritten.errors > old.errors);
    let w = wholes
        .iter()
        .position(|r| r.minute_ms == old.minute_ms && r.collector == old.collector)
        .expect("its whole-layer document");
    let mut whole = Rollup::empty(
        old.minute_ms,
        SeriesKey::whole_layer(Layer::Url),
        &old.collector,
    );
    for r in docs.iter().filter(|r| {
        r.minute_ms == old.minute_ms
            && r.collector == old.collector
            && r.key.layer == Layer::Url
            && r.key != cart
    }) {
        whole.merge(r);
    }
    whole.merge(&rewritten);
    assert_eq!(
        whole.count, wholes[w].count,
        "as many events in the layer too"
    );
    write_fixture(
        store,
        std::slice::from_ref(&rewritten),
        std::slice::from_ref(&whole),
    )
    .await;
    docs[i] = rewritten;
    wholes[w] = whole;
    check_everything!("after a rewrite");

    // The first hour compacted alone: a chart bucket of two hours reads
    // one from the hourly tier and one from minutes.
    compact(store, BASE_MS).await;
    sync(store).await;
    let mixed = (BASE_MS, BASE_MS + 3 * HOUR_MS, 2 * HOUR_MS);
    check_layer_points("a bucket in both tiers", store, &wholes, mixed).await;
    check_layer_points("a bucket in both tiers, again", store, &wholes, mixed).await;

    // Whole hours compacted: the same sums from the hourly tier.
    for h in 1..3 {
        compact(store, BASE_MS + h * HOUR_MS).await;
    }
    sync(store).await;
    check_layer_points("both tiers once compacted", store, &wholes, mixed).await;
    check_everything!("after compaction");
    check("read again", &series_sums(store, &q).await, &docs);

    // A late minute in a compacted hour, compacted again.
    let later = rollup(
        BASE_MS + HOUR_MS + 52 * MINUTE_MS,
        &cart,
        "c3",
        &latencies(4, 78),
        2,
    );
    write_fixture(store, std::slice::from_ref(&later), &[late_whole(&later)]).await;
    compact(store, BASE_MS + HOUR_MS).await;
    sync(store).await;
    wholes.push(late_whole(&later));
    docs.push(later);
    check_everything!("after a re-compaction");
}
