//! kill -9 of the collector at random moments under load, ten times, then
//! restart: the counts in the store equal the events sent, per minute and
//! series. The sender behaves like an agent: it resends every batch until
//! it is acknowledged, with the same source id and byte range.

use std::collections::BTreeMap;
use std::time::Duration;

use panorama_model::wire::binary::{self, Batch, BatchMeta};
use panorama_model::{Event, Layer, Outcome};
use panorama_tests::{Proc, binary as bin, free_port, wait_healthy};
use rand::Rng;

const PER_BATCH: u64 = 50;
const ROUTES: [&str; 3] = ["GET /a", "POST /b", "GET /c/:num"];

fn t0() -> i64 {
    (chrono::Utc::now().timestamp_millis() - 2 * 3_600_000) / 60_000 * 60_000
}

/// Batch `i` of source `s1`: its events spread over five minutes and three routes.
fn batch(t0: i64, i: u64) -> (Vec<u8>, Vec<(i64, &'static str)>) {
    let mut expected = Vec::new();
    let events = (0..PER_BATCH)
        .map(|k| {
            let n = i * PER_BATCH + k;
            let minute = t0 + (n % 5) as i64 * 60_000;
            let route = ROUTES[(n % 3) as usize];
            expected.push((minute, route));
            let mut e = Event::new(
                minute + (n % 60_000) as i64,
                Layer::Url,
                "shop",
                "web1",
                route,
            );
            e.latency_ms = Some((n % 100) as f64);
            if n.is_multiple_of(11) {
                e.outcome = Outcome::Error(Some("500".into()));
            }
            e
        })
        .collect();
    let b = Batch {
        meta: BatchMeta {
            agent_id: "crash-agent".into(),
            source_id: "s1".into(),
            start_offset: i * 1000,
            end_offset: (i + 1) * 1000,
            lines_read: PER_BATCH,
            lines_failed: 0,
        },
        events,
    };
    let mut raw = Vec::new();
    binary::encode(&b, &mut raw);
    (zstd::bulk::compress(&raw, 1).unwrap(), expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_and_doubles_nothing() {
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
        "--grace-secs",
        "1",
        "--token",
        "t0ken",
        // Reads need a viewer token once the collector has any token.
        "--api-token",
        "viewer:viewer-t0ken",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let exe = bin("panorama");
    let mut collector = Proc::start(&exe, &args, &log);
    wait_healthy(&format!("{base}/health"), Duration::from_secs(20), &log).await;

    let t0 = t0();
    // The sender keeps going until the last kill is over, so every kill
    // lands under load whatever the machine's speed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let base = base.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let mut expected: BTreeMap<(i64, &'static str), u64> = BTreeMap::new();
            let mut resends = 0u64;
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let (body, exp) = batch(t0, i);
                loop {
                    let r = client
                        .post(format!("{base}/api/v1/ingest"))
                        .header("content-type", binary::CONTENT_TYPE)
                        .header("content-encoding", "zstd")
                        .bearer_auth("t0ken")
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status().is_success() => break,
                        Ok(resp) => panic!("batch {i}: unexpected status {}", resp.status()),
                        Err(_) => {
                            resends += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                for k in exp {
                    *expected.entry(k).or_default() += 1;
                }
            }
            (expected, resends)
        })
    };

    let mut rng = rand::rng();
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        collector.kill9();
        collector = Proc::start(&exe, &args, &log);
        wait_healthy(&format!("{base}/health"), Duration::from_secs(20), &log).await;
        eprintln!("kill -9 round {round} done");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (expected, resends) = tokio::time::timeout(Duration::from_secs(120), sender)
        .await
        .expect("sender finished")
        .unwrap();
    assert!(
        resends > 0,
        "no batch was ever interrupted; the test did not test anything"
    );

    // Every minute is past its grace; poll until the flusher has written
    // them, then demand exact equality.
    let client = reqwest::Client::new();
    let mut got = BTreeMap::new();
    for _ in 0..100 {
        got.clear();
        for route in ROUTES {
            let url = format!(
                "{base}/api/v1/series?layer=url&service=shop&from={}&to={}",
                t0,
                t0 + 5 * 60_000
            );
            let url = format!(
                "{url}&name={}",
                route
                    .replace(' ', "%20")
                    .replace('/', "%2F")
                    .replace(':', "%3A")
            );
            let v: serde_json::Value = client
                .get(&url)
                .bearer_auth("viewer-t0ken")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for p in v["points"].as_array().unwrap() {
                got.insert(
                    (p["minute"].as_i64().unwrap(), route),
                    p["count"].as_u64().unwrap(),
                );
            }
        }
        if got == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        got, expected,
        "per-minute, per-series counts after 10 kill -9s ({resends} resends)"
    );
    assert!(
        collector.terminate(Duration::from_secs(20)),
        "clean shutdown after SIGTERM"
    );
}
