//! The conformance suite against a live Elasticsearch, plus what only this
//! backend has: templates, daily indices, rejected documents.
//!
//! Needs a cluster at `PANORAMA_ES_URL` (default `http://127.0.0.1:9200`);
//! `scripts/elasticsearch.sh` starts one, and the README's test command runs
//! it first. Without a cluster every test here fails and says so: a skipped
//! Elasticsearch test would hide exactly the failures this file exists for.

use std::time::Duration;

use async_trait::async_trait;
use panorama_model::{Event, Layer, Rollup};
use panorama_store::elastic::{ElasticConfig, ElasticStore, RetryPolicy};
use panorama_store::{SeriesQuery, Store, StoreError, conformance::Harness};

fn es_url() -> String {
    std::env::var("PANORAMA_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".into())
}

/// A fresh index prefix per case and run, so cases run in parallel and a
/// rerun never reads an earlier run's documents.
fn prefix(case: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "ptest-{}-{}-{}",
        case.replace('_', "-"),
        std::process::id(),
        nanos % 1_000_000_000
    )
}

async fn connect(prefix: String) -> ElasticStore {
    let mut cfg = ElasticConfig::new(es_url()).with_prefix(prefix);
    cfg.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        max_elapsed: Some(Duration::from_secs(10)),
    };
    match ElasticStore::connect(cfg).await {
        Ok(store) => store,
        Err(e) => panic!(
            "no usable Elasticsearch at {}: {e}\n\
             start one with `scripts/elasticsearch.sh` (the README's test command does), \
             or point PANORAMA_ES_URL at a cluster",
            es_url()
        ),
    }
}

struct EsHarness {
    store: ElasticStore,
}

#[async_trait]
impl Harness for EsHarness {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    async fn teardown(self) {
        self.store
            .delete_everything()
            .await
            .expect("deleting the case's indices");
    }
}

async fn open(case: &str) -> EsHarness {
    EsHarness {
        store: connect(prefix(case)).await,
    }
}

panorama_store::conformance_tests!(open);

const T0: i64 = 1_795_000_000_000 / 60_000 * 60_000;

#[tokio::test]
async fn a_document_the_mapping_refuses_is_rejected_not_retried_and_not_lost_silently() {
    let store = connect(prefix("rejects")).await;
    // Index a rollup, then make the mapping reject the next one: a rollup
    // whose `dims_kv` would be fine, but written into an index that already
    // maps `count` as long receives a value that is not a number. The only
    // way to produce that through the public API is an index created by
    // someone else with a conflicting mapping, so we create one.
    let index = format!("{}-rollups-{}", store.config().index_prefix, "2026.11.22");
    let http = reqwest_put(
        &format!("{}/{index}", es_url()),
        r#"{"mappings":{"properties":{"layer":{"type":"long"}}}}"#,
    )
    .await;
    assert!(
        http.contains("acknowledged"),
        "creating a conflicting index: {http}"
    );
    let minute = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .timestamp_millis();
    let mut r = Rollup::empty(
        minute,
        Event::new(minute, Layer::Url, "svc", "h1", "GET /x").series_key(),
        "c1",
    );
    r.add(&Event::new(minute, Layer::Url, "svc", "h1", "GET /x"));
    let ok = Rollup::empty(T0, r.key.clone(), "c1");
    match store.write_rollups(&[r.clone(), ok]).await {
        Err(StoreError::Rejected(rej)) => {
            assert_eq!(rej.len(), 1, "{rej:?}");
            assert_eq!(rej[0].doc_id, r.doc_id());
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(
        store
            .stats()
            .rejected_docs
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The other document of the same bulk request was written.
    store.sync().await.unwrap();
    let pts = store
        .read_series(&SeriesQuery::layer(Layer::Url, T0, T0 + 60_000))
        .await
        .unwrap();
    assert_eq!(pts.len(), 1);
    // The refused document is kept whole in the dead-letter index.
    store.sync().await.unwrap();
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["doc_id"], r.doc_id());
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("layer"),
        "{letters:?}"
    );
    let kept: Rollup =
        serde_json::from_str::<serde_json::Value>(letters[0]["document"].as_str().unwrap())
            .map(|mut v| serde_json::from_value(v["body"].take()).unwrap())
            .unwrap();
    assert_eq!(kept.count, 1);
    store.delete_everything().await.unwrap();
}

/// A bare HTTP PUT, to set up a condition the store itself would never create.
async fn reqwest_put(url: &str, body: &str) -> String {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            url,
        ])
        .output()
        .await
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asked to, Elasticsearch sums a layer from its whole-layer documents
/// (the other backend keeps per-layer sums of its own): a layer present only
/// there shows, and a series narrowing falls back to the series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_layer_totals_read_the_layers_indices() {
    use panorama_model::SeriesKey;
    use panorama_store::TotalsQuery;
    let store = connect(prefix("whole_layer_totals_read")).await;
    let base = panorama_store::conformance::BASE_MS;
    let mut only = Rollup::empty(base, SeriesKey::whole_layer(Layer::Business), "c1");
    let mut e = Event::new(base + 1_000, Layer::Business, "game", "h1", "login");
    e.latency_ms = Some(12.0);
    only.add(&e);
    store.write_layer_rollups(&[only]).await.unwrap();
    store.sync().await.unwrap();
    let mut q = TotalsQuery::range(base, base + 60_000);
    let plain = store.layer_totals(&q).await.unwrap();
    assert!(plain.is_empty(), "no series documents: {plain:?}");
    q.whole_layers = true;
    let whole = store.layer_totals(&q).await.unwrap();
    assert_eq!(
        whole
            .iter()
            .map(|t| (t.layer, t.totals.count))
            .collect::<Vec<_>>(),
        vec![(Layer::Business, 1)]
    );
    q.service = Some("game".into());
    assert!(
        store.layer_totals(&q).await.unwrap().is_empty(),
        "narrowed to a service: series documents only"
    );
    store.delete_everything().await.unwrap();
}
