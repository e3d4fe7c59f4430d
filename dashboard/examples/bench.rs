//! Seeds a store with a week of ten thousand series and times the
//! dashboard's overview and layer pages through the router (server time:
//! handler plus store queries, no network). Run by `bench/dashboard.sh`.
//!
//! ```text
//! cargo run --release -p panorama-dashboard --example bench -- sqlite DIR
//! cargo run --release -p panorama-dashboard --example bench -- elasticsearch URL
//! ```
//!
//! The week is 10,000 series (2,000 per layer, 40 services, 20 hosts) with
//! one rollup per series and minute for the last 24 hours (14.4 M: what
//! the overview's "today" and the 1 h to 24 h layer pages read, at the
//! density a collector writes) and one per series and hour for the six
//! days before. Beside them, one whole-layer rollup per layer and minute for the
//! week, as the collector writes (the layer page's percentiles).
//! A rollup per series and minute for the whole week (100 M documents, tens
//! of gigabytes in either store) is beyond this machine's disk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use panorama_dashboard::config::{DashboardConfig, Role, User};
use panorama_dashboard::{Dashboard, hash_password};
use panorama_model::{Event, Layer, MINUTE_MS, Outcome, Rollup, SeriesKey, minute_of};
use panorama_store::Store;
use panorama_store::elastic::{ElasticConfig, ElasticStore};
use panorama_store::sqlite::SqliteStore;
use tower::ServiceExt;

const SERIES: usize = 10_000;
const DAYS: i64 = 7;
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

async fn seed(store: Arc<dyn Store>, now: i64) -> (usize, Duration) {
    let started = Instant::now();
    let this_minute = minute_of(now);
    let templates: Vec<Rollup> = (0..SERIES).map(|i| template(i, 0)).collect();
    let dense = minute_hours();
    // Hourly before the dense part, so no stretch of time is seeded twice.
    let mut minutes: Vec<i64> = (dense + 1..=DAYS * 24)
        .map(|h| this_minute - h * 3_600_000)
        .collect();
    minutes.extend((0..dense * 60).map(|m| this_minute - m * MINUTE_MS));
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
    // The collector's whole-layer rollups, one per layer (but infra) and
    // minute for the whole week: what the layer page's percentiles read.
    let mut wholes: BTreeMap<Layer, Rollup> = BTreeMap::new();
    for t in templates.iter().filter(|t| t.key.layer != Layer::Infra) {
        wholes
            .entry(t.key.layer)
            .or_insert_with(|| Rollup::empty(0, SeriesKey::whole_layer(t.key.layer), "c1"))
            .merge(t);
    }
    let week: Vec<Rollup> = (0..DAYS * 1440)
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
    // Seeding takes minutes: bring the dense part up to the present minute,
    // so the pages read a whole last hour and last five minutes, as they
    // would under a running collector.
    let mut last = this_minute;
    loop {
        let current = minute_of(chrono::Utc::now().timestamp_millis());
        if current <= last {
            break;
        }
        for m in (last + MINUTE_MS..=current).step_by(MINUTE_MS as usize) {
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
        last = current;
    }
    store.sync().await.expect("sync");
    (written, started.elapsed())
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
    let mut es_cleanup = None;
    let store: Arc<dyn Store> = match kind {
        "sqlite" => {
            let dir = std::path::PathBuf::from(&target);
            let _ = std::fs::remove_dir_all(&dir);
            Arc::new(SqliteStore::open(&dir).expect("sqlite"))
        }
        "elasticsearch" => {
            let cfg = ElasticConfig::new(&target).with_prefix("pbench");
            let old = ElasticStore::connect(cfg.clone())
                .await
                .expect("elasticsearch");
            old.delete_everything()
                .await
                .expect("clearing an earlier run");
            es_cleanup = Some(
                ElasticStore::connect(cfg.clone())
                    .await
                    .expect("elasticsearch"),
            );
            Arc::new(ElasticStore::connect(cfg).await.expect("elasticsearch"))
        }
        other => panic!("unknown store {other}"),
    };
    let (docs, took) = seed(store.clone(), now).await;
    println!(
        "{kind}: seeded {docs} rollups ({SERIES} series: the last {} h per minute, the rest of {DAYS} days hourly; whole layers per minute) in {:.0} s",
        minute_hours(),
        took.as_secs_f64()
    );
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
    for path in [
        "/",
        "/layer/url?range=1h",
        "/layer/url?range=24h",
        "/layer/url?range=7d",
    ] {
        let (first, med, p90) = timed(&app, store.as_ref(), &cookie, path).await;
        println!(
            "  {kind:<13} {path:<24} first {first:7.1} ms   median {med:7.1} ms   p90 {p90:7.1} ms"
        );
    }
    if let Some(es) = es_cleanup
        && std::env::var_os("PANORAMA_BENCH_KEEP").is_none()
    {
        es.delete_everything().await.expect("cleanup");
    }
}
