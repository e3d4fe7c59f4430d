//! The shipper against real HTTP servers on loopback playing collectors:
//! acknowledgement, failover, retry after 503, token, compression.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use panorama_agent::ship::{Compression, ShipConfig, Shipper};
use panorama_model::wire::binary::{self, Batch, BatchMeta};
use panorama_model::{Event, Layer};

#[derive(Default)]
struct Seen {
    batches: Vec<Batch>,
    /// Each accepted batch's `Content-Encoding`, if it had one.
    encodings: Vec<Option<String>>,
    requests: usize,
    /// Answer 503 to this many requests first.
    fail_first: usize,
}

type Shared = Arc<Mutex<Seen>>;

async fn ingest(
    State(seen): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let mut s = seen.lock().unwrap();
    s.requests += 1;
    let mut out = HeaderMap::new();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer s3cret") {
        return (StatusCode::UNAUTHORIZED, out, "unknown token".into());
    }
    if s.fail_first > 0 {
        s.fail_first -= 1;
        out.insert("retry-after", "0".parse().unwrap());
        return (StatusCode::SERVICE_UNAVAILABLE, out, "wal full".into());
    }
    assert_eq!(headers.get("content-type").unwrap(), binary::CONTENT_TYPE);
    let encoding = headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    let raw = match encoding.as_deref() {
        Some("zstd") => zstd::stream::decode_all(&body[..]).expect("zstd body"),
        None => body.to_vec(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    };
    let batch = binary::decode(&raw).expect("a valid batch");
    s.batches.push(batch);
    s.encodings.push(encoding);
    (StatusCode::OK, out, "{}".into())
}

async fn collector(fail_first: usize) -> (SocketAddr, Shared) {
    let seen: Shared = Arc::new(Mutex::new(Seen {
        fail_first,
        ..Seen::default()
    }));
    let app = Router::new()
        .route("/api/v1/ingest", post(ingest))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// A port nothing listens on: bind, note the port, close.
/// A port nothing answers on, held for as long as the socket lives: bound
/// but not listening, so connections are refused, and the kernel cannot
/// hand the same port to the live collector bound next (a listener bound
/// and dropped here did free it, and the "dead" collector then answered).
fn dead_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = s.local_addr().unwrap();
    (s, addr)
}

fn batch(start: u64, n: usize) -> Batch {
    let events = (0..n)
        .map(|i| {
            let mut e = Event::new(
                1_795_000_000_000 + i as i64,
                Layer::Url,
                "login",
                "web1",
                "GET /api/login",
            );
            e.latency_ms = Some(12.0);
            e
        })
        .collect();
    Batch {
        meta: BatchMeta {
            agent_id: "agent-1".into(),
            source_id: "src-a".into(),
            start_offset: start,
            end_offset: start + n as u64 * 100,
            lines_read: n as u64,
            lines_failed: 0,
        },
        events,
    }
}

fn config(urls: Vec<String>) -> ShipConfig {
    let mut cfg = ShipConfig::new(urls[0].clone());
    cfg.collectors = urls;
    cfg.token = Some("s3cret".into());
    cfg.initial_backoff = Duration::from_millis(10);
    cfg.max_backoff = Duration::from_millis(200);
    cfg.request_timeout = Duration::from_secs(2);
    // These collectors are on loopback, where batches would go
    // uncompressed by default: the compressed path is the one to prove.
    cfg.compression = Compression::Zstd;
    cfg
}

#[tokio::test]
async fn acknowledged_batch_arrives_intact() {
    let (addr, seen) = collector(0).await;
    let shipper = Shipper::new(config(vec![format!("http://{addr}")])).unwrap();
    let b = batch(0, 500);
    shipper.ship(&b).await;
    let s = seen.lock().unwrap();
    assert_eq!(s.batches.len(), 1);
    assert_eq!(s.batches[0].meta, b.meta);
    assert_eq!(s.batches[0].events, b.events);
    assert_eq!(s.encodings, [Some("zstd".to_owned())]);
    assert_eq!(
        shipper
            .stats()
            .events_acked
            .load(std::sync::atomic::Ordering::Relaxed),
        500
    );
}

#[tokio::test]
async fn a_collector_on_this_host_gets_batches_uncompressed_by_default() {
    let (addr, seen) = collector(0).await;
    let mut cfg = config(vec![format!("http://{addr}")]);
    cfg.compression = Compression::Auto;
    let shipper = Shipper::new(cfg).unwrap();
    let b = batch(0, 500);
    shipper.ship(&b).await;
    let s = seen.lock().unwrap();
    assert_eq!(s.batches.len(), 1);
    assert_eq!(
        s.batches[0].events, b.events,
        "the same batch, uncompressed"
    );
    assert_eq!(s.encodings, [None]);
}

#[tokio::test]
async fn fails_over_from_a_dead_collector() {
    let (_held, dead) = dead_port();
    let (addr, seen) = collector(0).await;
    let shipper = Shipper::new(config(vec![
        format!("http://{dead}"),
        format!("http://{addr}"),
    ]))
    .unwrap();
    shipper.ship(&batch(0, 3)).await;
    shipper.ship(&batch(300, 3)).await;
    let s = seen.lock().unwrap();
    assert_eq!(s.batches.len(), 2);
    assert_eq!(s.batches[1].meta.start_offset, 300);
    assert!(
        shipper
            .stats()
            .failovers
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn retries_after_503_until_accepted() {
    let (addr, seen) = collector(3).await;
    let shipper = Shipper::new(config(vec![format!("http://{addr}")])).unwrap();
    tokio::time::timeout(Duration::from_secs(10), shipper.ship(&batch(0, 10)))
        .await
        .expect("shipped after retries");
    let s = seen.lock().unwrap();
    assert_eq!(s.requests, 4);
    assert_eq!(s.batches.len(), 1);
    assert_eq!(
        shipper
            .stats()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[tokio::test]
async fn waits_for_a_collector_that_starts_later() {
    let (held, dead) = dead_port();
    let shipper = Shipper::new(config(vec![format!("http://{dead}")])).unwrap();
    let b = batch(0, 5);
    let ship = tokio::spawn(async move {
        shipper.ship(&b).await;
        shipper
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ship.is_finished(), "acknowledged with no collector up");
    // Now a collector appears on that very port.
    let seen: Shared = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/api/v1/ingest", post(ingest))
        .with_state(seen.clone());
    drop(held);
    let listener = tokio::net::TcpListener::bind(dead).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let shipper = tokio::time::timeout(Duration::from_secs(10), ship)
        .await
        .expect("reconnected")
        .unwrap();
    assert_eq!(seen.lock().unwrap().batches.len(), 1);
    assert!(
        shipper
            .stats()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[tokio::test]
async fn a_wrong_token_is_never_taken_for_an_acknowledgement() {
    let (addr, seen) = collector(0).await;
    let mut cfg = config(vec![format!("http://{addr}")]);
    cfg.token = Some("wrong".into());
    cfg.max_backoff = Duration::from_millis(50);
    let shipper = Shipper::new(cfg).unwrap();
    let r = tokio::time::timeout(Duration::from_millis(500), shipper.ship(&batch(0, 1))).await;
    assert!(r.is_err(), "a 401 must not count as delivered");
    let s = seen.lock().unwrap();
    assert!(s.requests >= 2, "kept retrying: {}", s.requests);
    assert!(s.batches.is_empty());
}

#[test]
fn bad_urls_are_refused_up_front() {
    assert!(
        Shipper::new(ShipConfig {
            collectors: vec![],
            ..ShipConfig::new("x")
        })
        .is_err()
    );
    assert!(Shipper::new(ShipConfig::new("not a url")).is_err());
    assert!(Shipper::new(ShipConfig::new("ftp://127.0.0.1/")).is_err());
}
