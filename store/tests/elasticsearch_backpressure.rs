//! Elasticsearch pushes back with 429 (its write queue is full) on some items
//! of a successful bulk response: the writer retries exactly those items,
//! and every rollup lands once.
//!
//! The test runs its own node on port 9252 with a write thread pool of one
//! thread and a queue of one, so that a few concurrent writers overflow it
//! the way a busy production cluster would.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use panorama_model::{Event, Layer, Rollup};
use panorama_store::elastic::{ElasticConfig, ElasticStore, RetryPolicy};
use panorama_store::{SeriesQuery, Store};

const PORT: &str = "9252";
const WRITERS: usize = 8;
const BATCHES: usize = 15;
const SERIES: usize = 40;
const T0: i64 = 1_795_000_000_000 / 60_000 * 60_000;

fn script(action: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/elasticsearch.sh");
    let status = std::process::Command::new("bash")
        .arg(&path)
        .arg(action)
        .env("PANORAMA_ES_PORT", PORT)
        .env(
            "PANORAMA_ES_SETTINGS",
            "thread_pool.write.size: 1\nthread_pool.write.queue_size: 1",
        )
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    assert!(
        status.success(),
        "scripts/elasticsearch.sh {action} failed ({status}) on port {PORT}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_refused_with_429_are_retried_until_written() {
    tokio::task::spawn_blocking(|| script("start"))
        .await
        .unwrap();
    let prefix = format!("backpressure-{}", std::process::id());
    let mut cfg = ElasticConfig::new(format!("http://127.0.0.1:{PORT}")).with_prefix(prefix);
    cfg.bulk_max_docs = 50;
    cfg.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        max_elapsed: Some(Duration::from_secs(120)),
    };
    let store = Arc::new(
        ElasticStore::connect(cfg)
            .await
            .expect("connecting to the backpressure node"),
    );

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                // Each writer owns its own minutes, so every document is distinct.
                let minute = T0 + ((w * BATCHES + b) as i64) * 60_000;
                let rollups: Vec<Rollup> = (0..SERIES)
                    .map(|s| {
                        let e = Event::new(
                            minute,
                            Layer::Component,
                            "db",
                            format!("h{s}"),
                            "mysql query",
                        );
                        let mut r = Rollup::empty(minute, e.series_key(), "c1");
                        r.add(&e);
                        r
                    })
                    .collect();
                store
                    .write_rollups(&rollups)
                    .await
                    .expect("write under backpressure");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let retries = store.stats().retries.load(Ordering::Relaxed);
    let written = store.stats().written_docs.load(Ordering::Relaxed);
    eprintln!("backpressure: {retries} retried bulk attempts, {written} documents written");
    assert!(
        retries > 0,
        "the node never pushed back; the test did not test anything"
    );
    assert_eq!(
        written as usize,
        WRITERS * BATCHES * SERIES,
        "each document is counted written exactly once"
    );

    store.sync().await.unwrap();
    let to = T0 + (WRITERS * BATCHES) as i64 * 60_000;
    let points = store
        .read_series(&SeriesQuery::layer(Layer::Component, T0, to))
        .await
        .unwrap();
    assert_eq!(points.len(), WRITERS * BATCHES, "a minute is missing");
    assert!(
        points.iter().all(|p| p.count as usize == SERIES),
        "a document is missing or doubled"
    );
    store.delete_everything().await.unwrap();
    tokio::task::spawn_blocking(|| script("stop"))
        .await
        .unwrap();
}
