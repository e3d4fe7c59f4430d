//! The collector writing to a real Elasticsearch that goes down and comes
//! back: ingest keeps answering (the WAL holds everything), `/health` shows
//! the backlog, queries say the store is unavailable, and once the node is
//! back every event is in the store exactly once — also when the collector
//! itself was restarted during the outage.
//!
//! Runs its own node on port 9253 with `scripts/elasticsearch.sh`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use panorama_tests::{Proc, binary, free_port, wait_healthy, workspace};

const ES_PORT: &str = "9253";

fn es(action: &str) {
    let script: PathBuf = workspace().join("scripts/elasticsearch.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(action)
        .env("PANORAMA_ES_PORT", ES_PORT)
        .status()
        .expect("running scripts/elasticsearch.sh");
    assert!(
        status.success(),
        "scripts/elasticsearch.sh {action} on port {ES_PORT} failed"
    );
}

fn t0() -> i64 {
    (chrono::Utc::now().timestamp_millis() - 3_600_000) / 60_000 * 60_000
}

async fn send(base: &str, t0: i64, from: u64, n: u64) {
    let mut body = String::new();
    for i in from..from + n {
        let ts = chrono::DateTime::from_timestamp_millis(t0 + (i % 60) as i64 * 1000)
            .unwrap()
            .to_rfc3339();
        body.push_str(&format!(
            "{{\"ts\":\"{ts}\",\"layer\":\"business\",\"service\":\"pay\",\"name\":\"payment\",\"ok\":{},\"latency_ms\":{}}}\n",
            i % 9 != 0,
            i % 300
        ));
    }
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "ingest must keep accepting while the store is down"
    );
}

async fn stored(base: &str, t0: i64) -> Option<u64> {
    let url = format!(
        "{base}/api/v1/series?layer=business&service=pay&name=payment&from={t0}&to={}",
        t0 + 60_000
    );
    let resp = reqwest::get(&url).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = resp.json().await.ok()?;
    Some(
        v["points"]
            .as_array()?
            .iter()
            .filter_map(|p| p["count"].as_u64())
            .sum(),
    )
}

async fn wait_stored(base: &str, t0: i64, want: u64, deadline: Duration) {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < deadline {
        last = stored(base, t0).await;
        if last == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("store holds {last:?} events, want {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elasticsearch_outage_delays_but_never_loses() {
    tokio::task::spawn_blocking(|| es("start")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("collector.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let args: Vec<String> = [
        "collector",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--elasticsearch",
        &format!("http://127.0.0.1:{ES_PORT}"),
        "--index-prefix",
        &format!("e2e-{}", std::process::id()),
        "--grace-secs",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut collector = Proc::start(&binary("panorama"), &args, &log);
    wait_healthy(&format!("{base}/health"), Duration::from_secs(30), &log).await;
    let t0 = t0();

    send(&base, t0, 0, 500).await;
    wait_stored(&base, t0, 500, Duration::from_secs(30)).await;

    tokio::task::spawn_blocking(|| es("stop")).await.unwrap();
    send(&base, t0, 500, 700).await;
    // The late events rewrite the minute in a new part; it cannot be written now.
    let health: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["backlog_entries"].as_u64().unwrap_or(0) > 0,
        "backlog visible while the store is down: {health}"
    );
    let q = reqwest::get(format!(
        "{base}/api/v1/series?layer=business&from={t0}&to={}",
        t0 + 60_000
    ))
    .await
    .unwrap();
    assert_eq!(
        q.status().as_u16(),
        503,
        "queries say the store is unavailable"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("panorama_collector_backlog_entries 1"),
        "{metrics}"
    );

    // A collector that crashes and is restarted while the cluster is down
    // still starts, takes ingest into its WAL, and installs the index
    // templates once the cluster answers.
    collector.kill9();
    let started = Instant::now();
    let mut collector = Proc::start(&binary("panorama"), &args, &log);
    wait_healthy(&format!("{base}/health"), Duration::from_secs(20), &log).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the collector waited {:?} for Elasticsearch before serving",
        started.elapsed()
    );
    send(&base, t0, 1200, 300).await;

    tokio::task::spawn_blocking(|| es("start")).await.unwrap();
    wait_stored(&base, t0, 1500, Duration::from_secs(120)).await;
    let health: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["backlog_entries"], 0, "{health}");
    assert!(collector.terminate(Duration::from_secs(20)));
    tokio::task::spawn_blocking(|| es("stop")).await.unwrap();
}
