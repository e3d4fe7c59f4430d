//! Seeds a store with a week of ten thousand series and times the
//! dashboard's overview and layer pages through the router (server time:
//! handler plus store queries, no network). Run by `bench/dashboard.sh`.
//!
//! ```text
//! cargo run --release -p panorama-dashboard --example bench -- sqlite DIR
//! cargo run --release -p panorama-dashboard --example bench -- elasticsearch URL
//! ```
//!
//! The store holds 10,000 series (2,000 per layer, 40 services, 20 hosts)
//! with one rollup per series and minute for the last 24 hours (14.4 M, at
//! the density a collector writes; `PANORAMA_BENCH_MINUTE_HOURS` to change),
//! compacted into the hourly tier by the compactor's own code (each hour
//! timed), and, before them, hourly rollups as the compactor leaves them:
//! every series for the rest of the week, the url layer's 2,000 series for
//! the rest of 30 days (the series page's longest range). Beside them, one
//! whole-layer rollup per layer and minute for the minute hours, and per
//! hour before. Then each page is timed, and the footprint per tier measured
//! (SQLite: pages per table from `dbstat`; Elasticsearch: `_cat/indices`
//! store size after a force merge to one segment).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use panorama_dashboard::config::{DashboardConfig, Role, User};
use panorama_dashboard::{Dashboard, hash_password};
use panorama_model::{Event, Layer, MINUTE_MS, Outcome, Rollup, SeriesKey, minute_of};
use panorama_store::elastic::{ElasticConfig, ElasticStore};
use panorama_store::sqlite::SqliteStore;
use panorama_store::{CompactedHour, HOUR_MS, HourMark, Store};
use tower::ServiceExt;

const SERIES: usize = 10_000;
const DAYS: i64 = 7;
/// The url layer's series get hourly rollups this far back.
const URL_DAYS: i64 = 30;
/// Hours before now seeded at full density, one rollup per series and
/// minute (`PANORAMA_BENCH_MINUTE_HOURS`, default 24: everything the
/// overview's "today" and the 1 h, 6 h and 24 h layer pages read).
fn minute_hours() -> i64 {
    std::env::var("PANORAMA_BENCH_MINUTE_HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}
const RUNS: usize = 21;
/// The file in a SQLite benchmark directory naming the last minute seeded.
const SEEDED_UNTIL: &str = "seeded-until";

/// One rollup of a series: a few events with latencies and some errors,
/// varied by the series number so rankings are not all ties.
fn template(i: usize, minute: i64) -> Rollup {
    let layer = Layer::ALL[i % 5];
    let key = SeriesKey {
        layer,
        service: format!("svc{}", i % 40),
        host: format!("host{}", i % 20),
        name: format!("GET /api/{}/{}", layer.as_str(), i),
        dims: BTreeMap::new(),
    };
    let mut r = Rollup::empty(minute, key.clone(), "c1");
    let n = 5 + i % 20;
    for j in 0..n {
        let mut e = Event::new(
            minute + j as i64 * 1_000,
            layer,
            &key.service,
            &key.host,
            &key.name,
        );
        if j < (i % 7) / 3 {
            e.outcome = Outcome::Error(Some("500".into()));
        }
        if layer == Layer::Infra {
            e.value = Some((i % 100) as f64 + j as f64);
        } else {
            e.latency_ms = Some(5.0 + ((i * 31 + j * 17) % 400) as f64);
        }
        r.add(&e);
    }
    r
}

/// One rollup of every series (minute 0).
fn templates() -> Vec<Rollup> {
    (0..SERIES).map(|i| template(i, 0)).collect()
}

/// The collector's whole-layer rollups of a minute, one per layer (but
/// infra): what the layer page's percentiles read.
fn wholes(templates: &[Rollup]) -> BTreeMap<Layer, Rollup> {
    let mut wholes: BTreeMap<Layer, Rollup> = BTreeMap::new();
    for t in templates.iter().filter(|t| t.key.layer != Layer::Infra) {
        wholes
            .entry(t.key.layer)
            .or_insert_with(|| Rollup::empty(0, SeriesKey::whole_layer(t.key.layer), "c1"))
            .merge(t);
    }
    wholes
}

async fn seed(store: Arc<dyn Store>, now: i64) -> (usize, Duration, i64) {
    let started = Instant::now();
    let this_minute = minute_of(now);
    let templates = templates();
    let dense = minute_hours();
    let minutes: Vec<i64> = (0..dense * 60)
        .map(|m| this_minute - m * MINUTE_MS)
        .collect();
    let mut written = 0;
    // Two writers: Elasticsearch indexes on both cores; SQLite serializes
    // them behind its one connection anyway.
    let chunks: Vec<Vec<i64>> = minutes
        .chunks(minutes.len().div_ceil(2))
        .map(<[i64]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (store, templates) = (store.clone(), templates.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            for m in chunk {
                let batch: Vec<Rollup> = templates
                    .iter()
                    .map(|t| {
                        let mut r = t.clone();
                        r.minute_ms = m;
                        r
                    })
                    .collect();
                for part in batch.chunks(5_000) {
                    store.write_rollups(part).await.expect("seed write");
                }
                n += batch.len();
            }
            n
        }));
    }
    for t in tasks {
        written += t.await.expect("seed task");
    }
    let wholes = wholes(&templates);
    let week: Vec<Rollup> = (0..dense * 60)
        .flat_map(|m| {
            wholes.values().map(move |w| {
                let mut r = w.clone();
                r.minute_ms = this_minute - m * MINUTE_MS;
                r
            })
        })
        .collect();
    for part in week.chunks(5_000) {
        store
            .write_layer_rollups(part)
            .await
            .expect("seed whole-layer write");
    }
    written += week.len();
    // Before the minutes: hours as the compactor leaves them (each series'
    // hour the merge of its 60 minutes).
    let first_dense_hour =
        (this_minute - (dense * 60 - 1) * MINUTE_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let hourly = |t: &Rollup, hour: i64| {
        let mut r = t.clone();
        for _ in 1..60 {
            r.merge(t);
        }
        r.minute_ms = hour;
        r.collector = "hourly".into();
        r
    };
    for h in 1..=URL_DAYS * 24 {
        let hour = first_dense_hour - h * HOUR_MS;
        let all = h <= (DAYS * 24 - dense).max(0);
        let series: Vec<Rollup> = templates
            .iter()
            .filter(|t| all || t.key.layer == Layer::Url)
            .map(|t| hourly(t, hour))
            .collect();
        let layers: Vec<Rollup> = if all {
            wholes.values().map(|w| hourly(w, hour)).collect()
        } else {
            Vec::new()
        };
        let events = series.iter().chain(&layers).map(|r| r.count).sum();
        written += series.len() + layers.len();
        store
            .write_hour(&CompactedHour {
                mark: HourMark {
                    hour_ms: hour,
                    events,
                    series: series.len() as u64,
                    compacted_at_ms: now,
                },
                series,
                layers,
            })
            .await
            .expect("seed hourly write");
    }
    let mut last = this_minute;
    written += top_up(store.as_ref(), &templates, &wholes, &mut last).await;
    store.sync().await.expect("sync");
    (written, started.elapsed(), last)
}

/// Seeding takes minutes: brings the dense part from `last` up to the
/// present minute, so the pages read a whole last hour and last five
/// minutes, as they would under a running collector. Returns the rollups
/// written.
async fn top_up(
    store: &dyn Store,
    templates: &[Rollup],
    wholes: &BTreeMap<Layer, Rollup>,
    last: &mut i64,
) -> usize {
    let mut written = 0;
    loop {
        let current = minute_of(chrono::Utc::now().timestamp_millis());
        if current <= *last {
            break;
        }
        for m in (*last + MINUTE_MS..=current).step_by(MINUTE_MS as usize) {
            let at = |r: &Rollup| {
                let mut r = r.clone();
                r.minute_ms = m;
                r
            };
            let batch: Vec<Rollup> = templates.iter().map(at).collect();
            for part in batch.chunks(5_000) {
                store.write_rollups(part).await.expect("top-up write");
            }
            let whole: Vec<Rollup> = wholes.values().map(at).collect();
            store
                .write_layer_rollups(&whole)
                .await
                .expect("top-up whole-layer write");
            written += batch.len() + whole.len();
        }
        *last = current;
    }
    written
}

/// Compaction timings per hour, seconds.
#[derive(Default)]
struct CompactTimes {
    /// Reading and merging the hour's minutes (no partial in the store).
    minutes: Vec<f64>,
    /// Writing the collector's partial of the hour.
    partial_writes: Vec<f64>,
    /// Merging the partials (the same hour again, now with its partial).
    partials: Vec<f64>,
}

/// The collector's partial of `hour`: every seeded minute of it from
/// `first` on, merged per series, as the collector builds it from what it
/// writes.
fn partial_of(templates: &[Rollup], hour: i64, first: i64) -> panorama_store::HourPartial {
    let mut b = panorama_store::compact::HourPartialBuilder::new(hour, "c1");
    let wholes = wholes(templates);
    for m in (hour.max(first)..hour + HOUR_MS).step_by(MINUTE_MS as usize) {
        for t in templates {
            let mut r = t.clone();
            r.minute_ms = m;
            b.add(&r);
        }
        for w in wholes.values() {
            let mut r = w.clone();
            r.minute_ms = m;
            b.add_layer(&r);
        }
    }
    b.finish()
}

/// Compacts every whole hour of the minute part, as the compactor would,
/// timing each: first from its minutes (no partial yet), then the
/// collector's partial is written and the hour compacted again from it.
/// An hour of 10,000 series must take < 5 s.
async fn compact_minutes(store: &dyn Store, now: i64) -> CompactTimes {
    let first = minute_of(now) - (minute_hours() * 60 - 1) * MINUTE_MS;
    let templates = templates();
    let mut times = CompactTimes::default();
    let mut hour = first.div_euclid(HOUR_MS) * HOUR_MS;
    while hour + HOUR_MS <= minute_of(now) {
        let t = Instant::now();
        let (mark, from) = panorama_store::compact::compact_hour(store, hour, now)
            .await
            .expect("compaction");
        times.minutes.push(t.elapsed().as_secs_f64());
        assert_eq!(from, panorama_store::compact::BuiltFrom::Minutes);
        assert!(
            mark.series >= SERIES as u64 || hour < first,
            "hour {hour}: {mark:?}"
        );
        let partial = partial_of(&templates, hour, first);
        let t = Instant::now();
        store
            .write_hour_partial(&partial)
            .await
            .expect("partial write");
        times.partial_writes.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let (again, from) = panorama_store::compact::compact_hour(store, hour, now)
            .await
            .expect("compaction from partials");
        times.partials.push(t.elapsed().as_secs_f64());
        assert_eq!(
            from,
            panorama_store::compact::BuiltFrom::Partials,
            "hour {hour}"
        );
        assert_eq!(
            (again.events, again.series),
            (mark.events, mark.series),
            "hour {hour}: the same hour either way"
        );
        hour += HOUR_MS;
    }
    times
}

/// Compacts again every hour of the last day that was compacted from every
/// series' minutes (and still has them all), timing each (the reuse
/// mode's compaction figures): from the collector's partial where the
/// store has one, else from minutes.
async fn recompact(store: &dyn Store, now: i64) -> CompactTimes {
    let marks = store
        .hour_marks(now - 24 * HOUR_MS, now)
        .await
        .expect("hour marks");
    let minutes = store
        .minute_events_by_hour(now - 24 * HOUR_MS, now)
        .await
        .expect("minute events");
    let mut times = CompactTimes::default();
    for m in marks
        .iter()
        .filter(|m| m.series >= SERIES as u64 && minutes.get(&m.hour_ms) == Some(&m.events))
    {
        let t = Instant::now();
        let (again, from) = panorama_store::compact::compact_hour(store, m.hour_ms, now)
            .await
            .expect("compaction");
        let took = t.elapsed().as_secs_f64();
        match from {
            panorama_store::compact::BuiltFrom::Minutes => times.minutes.push(took),
            panorama_store::compact::BuiltFrom::Partials => times.partials.push(took),
        }
        assert_eq!(again.events, m.events, "hour {}", m.hour_ms);
    }
    times
}

/// Prints bytes per series-minute and series-hour and the projection for
/// 10,000 series at the default retentions (14 days of minutes, 400 of hours).
fn print_footprint(kind: &str, f: &panorama_store::Footprint) {
    let per_minute = f.minute_bytes as f64 / f.minute_docs.max(1) as f64;
    let per_hour = f.hourly_bytes as f64 / f.hourly_docs.max(1) as f64;
    let gb = |b: f64| b / 1e9;
    println!(
        "{kind}: footprint: {per_minute:.0} B per series-minute ({} docs, {:.2} GB), {per_hour:.0} B per series-hour ({} docs, {:.2} GB), store total {:.2} GB",
        f.minute_docs,
        gb(f.minute_bytes as f64),
        f.hourly_docs,
        gb(f.hourly_bytes as f64),
        gb(f.total_bytes as f64)
    );
    println!(
        "{kind}: per series and day: {:.0} KB as minutes, {:.1} KB as hours; 10,000 series at 14 d of minutes + 400 d of hours: {:.1} GB + {:.1} GB",
        per_minute * 1440.0 / 1e3,
        per_hour * 24.0 / 1e3,
        gb(per_minute * 1440.0 * 14.0 * 1e4),
        gb(per_hour * 24.0 * 400.0 * 1e4)
    );
}

/// Times `path` RUNS times. Before each request one rollup of the present
/// minute is written and made visible, as a live collector does every few
/// seconds: that also voids Elasticsearch's shard request cache for
/// today's index, so a repeated page is not answered from it.
/// Returns the first request's time (nothing cached yet) and the median
/// and p90 of the RUNS after it.
async fn timed(app: &axum::Router, store: &dyn Store, cookie: &str, path: &str) -> (f64, f64, f64) {
    let mut times = Vec::with_capacity(RUNS + 1);
    for i in 0..=RUNS {
        let mut tick = template(i, minute_of(chrono::Utc::now().timestamp_millis()));
        tick.collector = "ticker".into();
        store.write_rollups(&[tick]).await.expect("ticker write");
        store.sync().await.expect("ticker sync");
        let req = Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        let t = Instant::now();
        let r = app.clone().oneshot(req).await.expect("router");
        let status = r.status();
        let _ = r.into_body().collect().await.expect("body");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let first = times.remove(0);
    times.sort_by(f64::total_cmp);
    (first, times[RUNS / 2], times[RUNS * 9 / 10])
}

/// Times each store call the url layer page makes (sequentially, median
/// of 5), to show where a page's time goes; before each call a live
/// rollup is written and made visible, as in [`timed`].
async fn breakdown(kind: &str, store: &dyn Store) {
    use panorama_store::{Metric, SeriesTotalsQuery, TotalsQuery};
    let end = minute_of(chrono::Utc::now().timestamp_millis()) + MINUTE_MS;
    // Range and the bucket the layer page picks for it.
    for (label, span, bucket) in [
        ("1h", HOUR_MS, MINUTE_MS),
        ("24h", 24 * HOUR_MS, 5 * MINUTE_MS),
        ("7d", 7 * 24 * HOUR_MS, HOUR_MS),
    ] {
        // As the page: a range over two days starts on the hour.
        let from = if span > 2 * 24 * HOUR_MS {
            (end - span).div_euclid(HOUR_MS) * HOUR_MS
        } else {
            end - span
        };
        let mut totals = TotalsQuery::range(from, end)
            .layer(Layer::Url)
            .buckets(bucket);
        totals.whole_layers = true;
        let table = SeriesTotalsQuery {
            range: TotalsQuery::range(from, end).layer(Layer::Url),
            by_host: false,
            order: Metric::Count,
            limit: usize::MAX,
        };
        let mut t = [Vec::new(), Vec::new(), Vec::new()];
        let tick = |i: usize| async move {
            let mut tick = template(i, minute_of(chrono::Utc::now().timestamp_millis()));
            tick.collector = "ticker".into();
            store.write_rollups(&[tick]).await.expect("ticker write");
            store.sync().await.expect("ticker sync");
        };
        for i in 0..5 {
            tick(i).await;
            let at = Instant::now();
            store.layer_totals(&totals).await.expect("layer totals");
            t[0].push(at.elapsed().as_secs_f64() * 1e3);
            tick(i).await;
            let at = Instant::now();
            store.series_totals(&table).await.expect("series totals");
            t[1].push(at.elapsed().as_secs_f64() * 1e3);
            tick(i).await;
            let at = Instant::now();
            store
                .layer_points(Layer::Url, from, end, bucket)
                .await
                .expect("layer points");
            t[2].push(at.elapsed().as_secs_f64() * 1e3);
        }
        for v in &mut t {
            v.sort_by(f64::total_cmp);
        }
        println!(
            "  {kind:<13} url layer {label:>3} store calls (median of 5): layer_totals {:.1} ms, series_totals {:.1} ms, layer_points {:.1} ms",
            t[0][2], t[1][2], t[2][2]
        );
    }
}

async fn login(app: &axum::Router) -> String {
    let page = app
        .clone()
        .oneshot(Request::get("/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let pre = page.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = pre.split('=').nth(1).unwrap().to_owned();
    let r = app
        .clone()
        .oneshot(
            Request::post("/login")
                .header(header::COOKIE, &pre)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("user=bench&password=bench&csrf={csrf}")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "login");
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("panorama_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (kind, target) = match (args.get(1), args.get(2)) {
        (Some(k), Some(t)) => (k.as_str(), t.clone()),
        _ => {
            eprintln!("usage: bench sqlite DIR | bench elasticsearch URL");
            std::process::exit(2);
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    // PANORAMA_BENCH_REUSE=1: a store seeded by an earlier run is topped up
    // to the present minute and timed again without seeding, for quick
    // iterations on the read path. A SQLite directory is always kept (the
    // benchmark is given it) and marks the last minute seeded in a file;
    // an Elasticsearch run leaves its mark in the temporary directory
    // only when it kept its indices (PANORAMA_BENCH_KEEP=1).
    let mark = match kind {
        "sqlite" => std::path::Path::new(&target).join(SEEDED_UNTIL),
        _ => std::env::temp_dir().join(format!(
            "pbench-es-{}-{SEEDED_UNTIL}",
            target.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        )),
    };
    let reuse = std::env::var_os("PANORAMA_BENCH_REUSE").is_some() && mark.exists();
    if !reuse {
        let _ = std::fs::remove_file(&mark);
    }
    let mut es_cleanup = None;
    let mut sqlite = None;
    let store: Arc<dyn Store> = match kind {
        "sqlite" => {
            let dir = std::path::PathBuf::from(&target);
            if !reuse {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let s = SqliteStore::open(&dir).expect("sqlite");
            sqlite = Some(s.clone());
            Arc::new(s)
        }
        "elasticsearch" => {
            let cfg = ElasticConfig::new(&target).with_prefix("pbench");
            let old = ElasticStore::connect(cfg.clone())
                .await
                .expect("elasticsearch");
            if !reuse {
                old.delete_everything()
                    .await
                    .expect("clearing an earlier run");
            }
            es_cleanup = Some(
                ElasticStore::connect(cfg.clone())
                    .await
                    .expect("elasticsearch"),
            );
            Arc::new(ElasticStore::connect(cfg).await.expect("elasticsearch"))
        }
        other => panic!("unknown store {other}"),
    };
    let templates = templates();
    let mut last: i64;
    let hours = if reuse {
        last = std::fs::read_to_string(&mark)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .expect("seeded-until minute");
        let n = top_up(store.as_ref(), &templates, &wholes(&templates), &mut last).await;
        println!("{kind}: reusing the seeded store, topped up with {n} rollups");
        // Hours topped up since, as the collector's compactor would leave
        // them; then compacting again is idempotent, and timed as the
        // first time.
        let policy = panorama_store::compact::CompactPolicy {
            grace_ms: 60_000,
            lookback_ms: 24 * HOUR_MS,
            max_hours: 24,
        };
        panorama_store::compact::compact_due(store.as_ref(), now, policy)
            .await
            .expect("compacting the hours topped up");
        recompact(store.as_ref(), now).await
    } else {
        let (docs, took, seeded) = seed(store.clone(), now).await;
        last = seeded;
        println!(
            "{kind}: seeded {docs} rollups ({SERIES} series: the last {} h per minute, the rest of {DAYS} days hourly, url series hourly for {URL_DAYS} days) in {:.0} s",
            minute_hours(),
            took.as_secs_f64()
        );
        let hours = compact_minutes(store.as_ref(), now).await;
        top_up(store.as_ref(), &templates, &wholes(&templates), &mut last).await;
        hours
    };
    // Written before a compaction-only run returns too, so that a later
    // PANORAMA_BENCH_REUSE=1 run reuses the store instead of seeding again.
    if kind == "sqlite" || std::env::var_os("PANORAMA_BENCH_KEEP").is_some() {
        let _ = std::fs::write(&mark, last.to_string());
    }
    let mut hours = hours;
    for (what, v) in [
        ("from its minutes", &mut hours.minutes),
        (
            "writing the collector's partial of",
            &mut hours.partial_writes,
        ),
        ("from the collectors' partials", &mut hours.partials),
    ] {
        v.sort_by(f64::total_cmp);
        if let (Some(first), Some(last)) = (v.first(), v.last()) {
            println!(
                "{kind}: compaction {what} an hour of {SERIES} series: median {:.2} s, fastest {first:.2} s, slowest {last:.2} s ({} hours)",
                v[v.len() / 2],
                v.len()
            );
        }
    }
    if std::env::var_os("PANORAMA_BENCH_COMPACT_ONLY").is_some() {
        return;
    }
    store.sync().await.expect("sync");
    if let Some(es) = &es_cleanup {
        // The seeding's millions of documents leave the cluster merging
        // segments for minutes (a collector's trickle does not): timed
        // meanwhile, every page pays for merges on both cores.
        let waited = es
            .wait_for_merges(Duration::from_secs(600))
            .await
            .expect("node stats");
        println!(
            "{kind}: waited {:.0} s for the bulk load's segment merges to end",
            waited.as_secs_f64()
        );
    }
    let users = vec![User {
        name: "bench".into(),
        password_hash: hash_password("bench").unwrap(),
        role: Role::Viewer,
    }];
    let app = panorama_dashboard::router(Dashboard::new(
        store.clone(),
        None,
        DashboardConfig::new(users),
    ));
    let cookie = login(&app).await;
    // The first request of each page, then RUNS more.
    println!("{kind}: page server time: first request, then median and p90 of {RUNS} more:");
    // Series 1 is a url series (layer = i % 5).
    let end = minute_of(now) + MINUTE_MS;
    let series = "/series?layer=url&service=svc1&name=GET%20%2Fapi%2Furl%2F1";
    let series_7d = format!("{series}&range=7d");
    let series_30d = format!(
        "{series}&range=custom&from={}&to={end}",
        end - 30 * panorama_model::DAY_MS
    );
    for path in [
        "/",
        "/layer/url?range=1h",
        "/layer/url?range=24h",
        "/layer/url?range=7d",
        series_7d.as_str(),
        series_30d.as_str(),
    ] {
        let (first, med, p90) = timed(&app, store.as_ref(), &cookie, path).await;
        println!(
            "  {kind:<13} {:<24} first {first:7.1} ms   median {med:7.1} ms   p90 {p90:7.1} ms",
            path.split("&from")
                .next()
                .unwrap_or(path)
                .replace(series, "/series(url 1)")
        );
    }
    breakdown(kind, store.as_ref()).await;
    if let Some(s) = &sqlite {
        print_footprint(kind, &s.footprint().await.expect("footprint"));
    }
    if let Some(es) = &es_cleanup {
        print_footprint(kind, &es.footprint().await.expect("footprint"));
    }
    if let Some(es) = es_cleanup
        && std::env::var_os("PANORAMA_BENCH_KEEP").is_none()
    {
        let _ = std::fs::remove_file(&mark);
        es.delete_everything().await.expect("cleanup");
    }
}
