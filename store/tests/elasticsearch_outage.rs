//! Elasticsearch goes away in the middle of a stream of bulk writes and
//! comes back: the writer retries until it can, and every rollup is there
//! afterwards.
//!
//! This test starts and stops its own node on port 9251 with
//! `scripts/elasticsearch.sh`, so it never disturbs the shared test cluster.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use panorama_model::{Event, Layer, Outcome, Rollup};
use panorama_store::elastic::{ElasticConfig, ElasticStore, RetryPolicy};
use panorama_store::{SeriesQuery, Store};

const PORT: &str = "9251";
const BATCHES: usize = 40;
const SERIES: usize = 25;
const T0: i64 = 1_795_000_000_000 / 60_000 * 60_000;

fn script(action: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/elasticsearch.sh");
    let status = std::process::Command::new("bash")
        .arg(&path)
        .arg(action)
        .env("PANORAMA_ES_PORT", PORT)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    assert!(
        status.success(),
        "scripts/elasticsearch.sh {action} failed ({status}) on port {PORT}"
    );
}

fn batch(i: usize) -> Vec<Rollup> {
    let minute = T0 + i as i64 * 60_000;
    (0..SERIES)
        .map(|s| {
            let e = Event::new(minute, Layer::Call, "pay", format!("h{s}"), "bank charge");
            let mut r = Rollup::empty(minute, e.series_key(), "c1");
            for n in 0..(i + s + 1) {
                let mut e = e.clone();
                e.latency_ms = Some(10.0 + n as f64);
                if n % 7 == 0 {
                    e.outcome = Outcome::Error(Some("503".into()));
                }
                r.add(&e);
            }
            r
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_retries_through_an_outage_and_loses_nothing() {
    tokio::task::spawn_blocking(|| script("start"))
        .await
        .unwrap();
    let mut cfg = ElasticConfig::new(format!("http://127.0.0.1:{PORT}"))
        .with_prefix(format!("outage-{}", std::process::id()));
    cfg.request_timeout = Duration::from_secs(5);
    cfg.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        max_elapsed: None,
    };
    let store = Arc::new(
        ElasticStore::connect(cfg)
            .await
            .expect("connecting to the outage node"),
    );

    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            for i in 0..BATCHES {
                store
                    .write_rollups(&batch(i))
                    .await
                    .expect("a write with unbounded retry never fails");
                done.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    while done.load(Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::spawn_blocking(|| script("stop"))
        .await
        .unwrap();
    let stopped_at = done.load(Ordering::SeqCst);
    let retries_before = store.stats().retries.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // While the node is down the writer is stuck retrying one batch.
    assert!(
        done.load(Ordering::SeqCst) <= stopped_at + 1,
        "writes kept succeeding with the node down"
    );
    assert!(
        store.stats().retries.load(Ordering::Relaxed) > retries_before,
        "the writer did not retry while the node was down"
    );
    assert!(
        done.load(Ordering::SeqCst) < BATCHES,
        "the stream ended before the outage; make it longer"
    );

    let restart = Instant::now();
    tokio::task::spawn_blocking(|| script("start"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .expect("the writer did not finish after the node came back")
        .unwrap();
    eprintln!(
        "outage: stopped after {stopped_at} batches, {} retries, resumed {:?} after restart began",
        store.stats().retries.load(Ordering::Relaxed),
        restart.elapsed()
    );

    store.sync().await.unwrap();
    let to = T0 + BATCHES as i64 * 60_000;
    let points = store
        .read_series(&SeriesQuery::layer(Layer::Call, T0, to).service("pay"))
        .await
        .unwrap();
    assert_eq!(points.len(), BATCHES, "a minute is missing");
    for (i, p) in points.iter().enumerate() {
        let want: usize = (0..SERIES).map(|s| i + s + 1).sum();
        assert_eq!(p.minute, T0 + i as i64 * 60_000);
        assert_eq!(p.count as usize, want, "minute {i}: count");
    }
    // Every document, host by host, once.
    for s in [0, SERIES - 1] {
        let pts = store
            .read_series(
                &SeriesQuery::layer(Layer::Call, T0, to)
                    .service("pay")
                    .host(format!("h{s}")),
            )
            .await
            .unwrap();
        assert_eq!(pts.len(), BATCHES, "host h{s}");
    }
    store.delete_everything().await.unwrap();
    tokio::task::spawn_blocking(|| script("stop"))
        .await
        .unwrap();
}
