//! Ingest through a real socket into a real embedded store: NDJSON and
//! binary batches, dedup of resends, every refusal with its reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use panorama_collector::{Collector, CollectorConfig, api};
use panorama_model::wire::binary::{self, Batch, BatchMeta};
use panorama_model::{Event, Layer, Outcome};
use panorama_store::sqlite::SqliteStore;
use panorama_store::{SeriesQuery, Store};
use serde_json::Value;

struct Running {
    url: String,
    collector: Collector,
    _dir: tempfile::TempDir,
}

async fn start(configure: impl FnOnce(&mut CollectorConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("store")).unwrap());
    let mut cfg = CollectorConfig::new("c1", dir.path().join("data"));
    cfg.tokens = HashMap::from([("s3cret".to_owned(), "tester".to_owned())]);
    configure(&mut cfg);
    let collector = Collector::start(cfg, store).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = api::app(collector.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Running {
        url: format!("http://{addr}"),
        collector,
        _dir: dir,
    }
}

// A fixed past minute, well inside the default 30-day retention.
fn t0() -> i64 {
    (chrono::Utc::now().timestamp_millis() - 3_600_000) / 60_000 * 60_000
}

/// The minute of `t0()` and the one before, as a query range: events made
/// a moment ago are in one of them even if a minute began since.
fn around_t0() -> (i64, i64) {
    (t0() - 60_000, t0() + 60_000)
}

/// Events and errors of `pts` together.
fn sums(pts: &[panorama_model::Point]) -> (u64, u64) {
    pts.iter()
        .fold((0, 0), |(c, e), p| (c + p.count, e + p.errors))
}

async fn post(
    r: &Running,
    content_type: &str,
    encoding: Option<&str>,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/ingest", r.url))
        .header("content-type", content_type)
        .body(body);
    if let Some(enc) = encoding {
        req = req.header("content-encoding", enc);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn batch(start: u64, end: u64, n: usize) -> Vec<u8> {
    let events = (0..n)
        .map(|i| {
            let mut e = Event::new(
                t0() + i as i64,
                Layer::Url,
                "login",
                "web1",
                "GET /api/login",
            );
            e.latency_ms = Some(10.0 + i as f64);
            if i % 4 == 0 {
                e.outcome = Outcome::Error(Some("502".into()));
                e.raw = Some(format!("line {i}"));
            }
            e
        })
        .collect();
    let b = Batch {
        meta: BatchMeta {
            agent_id: "agent-1".into(),
            source_id: "src-1".into(),
            start_offset: start,
            end_offset: end,
            lines_read: n as u64,
            lines_failed: 0,
        },
        events,
    };
    let mut out = Vec::new();
    binary::encode(&b, &mut out);
    zstd::bulk::compress(&out, 1).unwrap()
}

async fn count(r: &Running) -> u64 {
    r.collector.flush_all().await.unwrap();
    let store = r.collector.store();
    store.sync().await.unwrap();
    let pts = store
        .read_series(
            &SeriesQuery::layer(Layer::Url, t0() - 60_000, t0() + 120_000).service("login"),
        )
        .await
        .unwrap();
    pts.iter().map(|p| p.count).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_batches_count_once_however_often_they_are_resent() {
    let r = start(|_| {}).await;
    let ct = binary::CONTENT_TYPE;
    let (s, body) = post(&r, ct, Some("zstd"), Some("s3cret"), batch(0, 1000, 40)).await;
    assert_eq!((s, body["accepted"].as_u64()), (200, Some(40)), "{body}");
    // The agent did not see the ack and resends: acknowledged, not counted.
    let (s, body) = post(&r, ct, Some("zstd"), Some("s3cret"), batch(0, 1000, 40)).await;
    assert_eq!(
        (s, body["duplicate"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    // Straddling the counted offset: refused with where to resume.
    let (s, body) = post(&r, ct, Some("zstd"), Some("s3cret"), batch(500, 1500, 20)).await;
    assert_eq!(
        (s, body["counted_offset"].as_u64()),
        (409, Some(1000)),
        "{body}"
    );
    let (s, _) = post(&r, ct, Some("zstd"), Some("s3cret"), batch(1000, 1500, 20)).await;
    assert_eq!(s, 200);
    assert_eq!(count(&r).await, 60);
    let acct: Value = reqwest::get(format!("{}/api/v1/accounting", r.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let src = &acct["sources"][0];
    assert_eq!(
        (src["agent"].as_str(), src["source"].as_str()),
        (Some("agent-1"), Some("src-1")),
        "{acct}"
    );
    assert_eq!(
        (
            src["batches"].as_u64(),
            src["duplicate_batches"].as_u64(),
            src["overlap_batches"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{acct}"
    );
    assert_eq!(
        (src["lines_read"].as_u64(), src["events_counted"].as_u64()),
        (Some(60), Some(60))
    );
    let minutes = acct["minutes"].as_array().unwrap();
    let sum = |k: &str| minutes.iter().map(|m| m[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (sum("accepted"), sum("written"), sum("pending")),
        (60, 60, 0),
        "{acct}"
    );
    assert_eq!(acct["flagged"], 0, "{acct}");
    let samples = r
        .collector
        .store()
        .samples(&panorama_store::SampleQuery {
            layer: Layer::Url,
            service: Some("login".into()),
            name: None,
            minute_ms: t0(),
            kind: Some(panorama_model::SampleKind::Error),
            limit: 100,
        })
        .await
        .unwrap();
    assert!(!samples.is_empty() && samples.iter().all(|s| s.code.as_deref() == Some("502")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_from_curl_is_counted_with_the_peer_as_host() {
    let r = start(|_| {}).await;
    let ts = chrono::DateTime::from_timestamp_millis(t0() + 1_234)
        .unwrap()
        .to_rfc3339();
    let body = format!(
        "{{\"ts\":\"{ts}\",\"layer\":\"url\",\"service\":\"login\",\"name\":\"GET /api/login\",\"ok\":false,\"code\":\"500\",\"latency_ms\":123.4,\"dims\":{{\"channel\":\"ios\"}}}}\n\
         {{\"ts\":\"{ts}\",\"layer\":\"url\",\"service\":\"login\",\"name\":\"GET /api/login\"}}\n"
    );
    let (s, resp) = post(
        &r,
        "application/x-ndjson",
        None,
        Some("s3cret"),
        body.into_bytes(),
    )
    .await;
    assert_eq!((s, resp["accepted"].as_u64()), (200, Some(2)), "{resp}");
    assert_eq!(count(&r).await, 2);
    let pts = r
        .collector
        .store()
        .read_series(
            &SeriesQuery::layer(Layer::Url, around_t0().0, around_t0().1).host("127.0.0.1"),
        )
        .await
        .unwrap();
    assert_eq!(sums(&pts), (2, 1), "host defaults to the peer address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_why() {
    let r = start(|c| {
        c.max_body_bytes = 64 << 10;
        c.max_decoded_bytes = 256 << 10;
    })
    .await;
    let nd = "application/x-ndjson";
    let (s, b) = post(&r, nd, None, None, b"{}".to_vec()).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = post(&r, nd, None, Some("nope"), b"{}".to_vec()).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("unknown token")));
    let (s, b) = post(
        &r,
        nd,
        None,
        Some("s3cret"),
        b"{\"ts\":1,\"layer\":\"url\"}\n".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains("line 1"), "{b}");
    let (s, b) = post(&r, "text/plain", None, Some("s3cret"), b"x".to_vec()).await;
    assert_eq!(s, 415, "{b}");
    let (s, b) = post(
        &r,
        binary::CONTENT_TYPE,
        None,
        Some("s3cret"),
        b"PNRB garbage".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains("binary batch"), "{b}");
    let (s, _) = post(&r, nd, None, Some("s3cret"), vec![b'\n'; 100 << 10]).await;
    assert_eq!(s, 413);
    // A zstd bomb: 100 KiB compressed far below the limit, megabytes inflated.
    let bomb = zstd::bulk::compress(&vec![b'\n'; 8 << 20], 19).unwrap();
    assert!(bomb.len() < 64 << 10);
    let (s, b) = post(&r, nd, Some("zstd"), Some("s3cret"), bomb).await;
    assert_eq!(s, 413, "{b}");
    let (s, _) = post(&r, nd, Some("br"), Some("s3cret"), b"x".to_vec()).await;
    assert_eq!(s, 415);
    let metrics = reqwest::get(format!("{}/metrics", r.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("panorama_collector_dropped_total{reason=\"unauthorized\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_wal_answers_503_with_retry_after() {
    let r = start(|c| c.wal.max_total_bytes = 1).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/ingest", r.url))
        .header("content-type", binary::CONTENT_TYPE)
        .header("content-encoding", "zstd")
        .bearer_auth("s3cret")
        .body(batch(0, 10, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    // Nothing was counted, and the same range is new once there is room.
    assert_eq!(
        r.collector
            .stats()
            .events_in
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replays_the_wal_and_keeps_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("store")).unwrap());
    let cfg = || {
        let mut c = CollectorConfig::new("c1", dir.path().join("data"));
        c.grace = Duration::from_secs(3600); // nothing flushes on its own
        c.open_flush_interval = None;
        c
    };
    let raw = |start, end, n| zstd::bulk::decompress(&batch(start, end, n), 1 << 20).unwrap();
    let c = Collector::start(cfg(), store.clone()).await.unwrap();
    let decode = |b: &Vec<u8>| binary::decode(b).unwrap();
    let b1 = raw(0, 100, 7);
    c.ingest(decode(&b1), b1.clone()).await.unwrap();
    // Crash: nothing was flushed to the store; drop without shutdown.
    drop(c);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = Collector::start(cfg(), store.clone()).await.unwrap();
    // The resend after the crash is recognised.
    let out = c.ingest(decode(&b1), b1.clone()).await.unwrap();
    assert!(
        matches!(out, panorama_collector::IngestOutcome::Duplicate),
        "{out:?}"
    );
    c.flush_all().await.unwrap();
    store.sync().await.unwrap();
    let pts = store
        .read_series(&SeriesQuery::layer(
            Layer::Url,
            around_t0().0,
            around_t0().1,
        ))
        .await
        .unwrap();
    assert_eq!(sums(&pts).0, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_minute_reaches_the_store_within_seconds() {
    // A grace of an hour would keep the minute back; the open-minute flush
    // must not wait for it, so rules and dashboards see the present.
    let r = start(|c| {
        c.grace = Duration::from_secs(3600);
        c.open_flush_interval = Some(Duration::from_secs(1));
    })
    .await;
    let (s, _) = post(
        &r,
        binary::CONTENT_TYPE,
        Some("zstd"),
        Some("s3cret"),
        batch(0, 100, 12),
    )
    .await;
    assert_eq!(s, 200);
    let store = r.collector.store();
    let q = SeriesQuery::layer(Layer::Url, around_t0().0, around_t0().1).service("login");
    let mut seen = 0;
    for _ in 0..50 {
        store.sync().await.unwrap();
        seen = store
            .read_series(&q)
            .await
            .unwrap()
            .iter()
            .map(|p| p.count)
            .sum();
        if seen == 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 12, "the open minute was not written within 5 s");
    // More events of the same minute replace the document, not add to it.
    let (s, _) = post(
        &r,
        binary::CONTENT_TYPE,
        Some("zstd"),
        Some("s3cret"),
        batch(100, 200, 3),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(count(&r).await, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_data_rewrites_a_written_minute() {
    let r = start(|_| {}).await;
    let ct = binary::CONTENT_TYPE;
    let (s, _) = post(&r, ct, Some("zstd"), Some("s3cret"), batch(0, 100, 10)).await;
    assert_eq!(s, 200);
    assert_eq!(count(&r).await, 10, "the minute is written");
    // The same minute again, from later bytes of the source: late data.
    let (s, _) = post(&r, ct, Some("zstd"), Some("s3cret"), batch(100, 200, 5)).await;
    assert_eq!(s, 200);
    assert_eq!(
        count(&r).await,
        15,
        "rewritten with the late events, nothing doubled"
    );
    // Flushing again changes nothing: rewrites are idempotent.
    assert_eq!(count(&r).await, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_side_by_side_merge_in_queries() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("store")).unwrap());
    let open =
        |id: &str| Collector::start(CollectorConfig::new(id, dir.path().join(id)), store.clone());
    let (a, b) = (open("c1").await.unwrap(), open("c2").await.unwrap());
    let raw = |start, end, n| zstd::bulk::decompress(&batch(start, end, n), 1 << 20).unwrap();
    let (ba, bb) = (raw(0, 100, 30), raw(0, 100, 12));
    a.ingest(binary::decode(&ba).unwrap(), ba.clone())
        .await
        .unwrap();
    // Behind a load balancer another agent's batch lands on the other collector.
    let mut other = binary::decode(&bb).unwrap();
    other.meta.agent_id = "agent-2".into();
    let mut other_bytes = Vec::new();
    binary::encode(&other, &mut other_bytes);
    b.ingest(other, other_bytes).await.unwrap();
    a.flush_all().await.unwrap();
    b.flush_all().await.unwrap();
    let pts = store
        .read_series(&SeriesQuery::layer(
            Layer::Url,
            around_t0().0,
            around_t0().1,
        ))
        .await
        .unwrap();
    assert_eq!(
        sums(&pts),
        (42, 8 + 3),
        "documents of both collectors merge"
    );
}
