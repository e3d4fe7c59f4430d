//! The collector's ingest path without the network, for `bench/collector.sh`:
//! decode (binary batch or NDJSON) → dedup ledger → WAL append with group
//! commit → per-minute aggregation, exactly what `POST /api/v1/ingest` runs
//! after reading the body.
//!
//!     cargo run --release -p panorama-collector --example ingest_bench -- [binary|ndjson] [EVENTS] [--no-fsync]

use std::sync::Arc;
use std::time::Instant;

use panorama_collector::{Collector, CollectorConfig};
use panorama_model::wire::binary::{self, Batch, BatchMeta};
use panorama_model::wire::ndjson;
use panorama_model::{Event, Layer, Outcome};
use panorama_store::sqlite::SqliteStore;

const PER_BATCH: usize = 2_000;

fn events(start: usize, n: usize, now_ms: i64) -> Vec<Event> {
    (start..start + n)
        .map(|i| {
            let route = format!("GET /api/v1/r{}/:num", i % 300);
            let mut e = Event::new(
                now_ms - 120_000 + (i % 60_000) as i64,
                Layer::Url,
                "shop",
                format!("web{}", i % 8),
                route,
            );
            e.latency_ms = Some((i % 977) as f64 * 0.37);
            if i % 50 == 0 {
                e.outcome = Outcome::Error(Some("502".into()));
            }
            e
        })
        .collect()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Memory per open series: one event for each of `n` distinct series (the
/// realistic case: a URL route with a latency, on one of a few hosts), none
/// flushed, RSS before and after.
async fn series_memory(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("store"))?);
    let mut cfg = CollectorConfig::new("bench", dir.path().join("data"));
    cfg.grace = std::time::Duration::from_secs(3600);
    cfg.wal.fsync = false;
    let collector = Collector::start(cfg, store).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let before = rss_bytes();
    for start in (0..n).step_by(PER_BATCH) {
        let events: Vec<Event> = (start..(start + PER_BATCH).min(n))
            .map(|i| {
                let mut e = Event::new(
                    now - 120_000,
                    Layer::Url,
                    "shop",
                    format!("web{}", i % 8),
                    format!("GET /api/v1/route{i}/:num"),
                );
                e.latency_ms = Some((i % 977) as f64 * 0.37);
                e
            })
            .collect();
        let batch = Batch::unranged("a", events);
        let mut bytes = Vec::new();
        binary::encode(&batch, &mut bytes);
        collector.ingest(batch, bytes).await?;
    }
    let after = rss_bytes();
    println!(
        "series: {n} open series (one minute each, with latency) add {:.1} MB RSS = {:.0} bytes per open series",
        (after.saturating_sub(before)) as f64 / 1e6,
        after.saturating_sub(before) as f64 / n as f64
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let format = args
        .first()
        .map(String::as_str)
        .unwrap_or("binary")
        .to_owned();
    if format == "series" {
        let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
        return series_memory(n).await;
    }
    let total: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let fsync = !args.iter().any(|a| a == "--no-fsync");
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("store"))?);
    let mut cfg = CollectorConfig::new("bench", dir.path().join("data"));
    cfg.wal.fsync = fsync;
    cfg.grace = std::time::Duration::from_secs(3600);
    let collector = Collector::start(cfg, store).await?;
    let now = chrono::Utc::now().timestamp_millis();

    // Bodies are prepared first: the agent's encoding work is not the collector's.
    let mut bodies = Vec::new();
    let mut start = 0;
    while start < total {
        let n = PER_BATCH.min(total - start);
        let evs = events(start, n, now);
        let body = if format == "ndjson" {
            evs.iter()
                .map(|e| ndjson::to_line(e) + "\n")
                .collect::<String>()
                .into_bytes()
        } else {
            let mut b = Vec::new();
            let meta = BatchMeta {
                agent_id: "bench-agent".into(),
                source_id: "bench-source".into(),
                start_offset: start as u64 * 100,
                end_offset: (start + n) as u64 * 100,
                lines_read: n as u64,
                lines_failed: 0,
            };
            binary::encode(&Batch { meta, events: evs }, &mut b);
            b
        };
        bodies.push(body);
        start += n;
    }
    let bytes: usize = bodies.iter().map(Vec::len).sum();

    let started = Instant::now();
    for body in bodies {
        let (batch, wal_bytes) = if format == "ndjson" {
            let events: Vec<Event> =
                ndjson::parse_body(&body, "127.0.0.1").collect::<Result<_, _>>()?;
            // As the ingest handler builds it.
            let batch = Batch::third_party("bench", events);
            let mut b = Vec::new();
            binary::encode(&batch, &mut b);
            (batch, b)
        } else {
            (collector.decode_batch(&body)?, body)
        };
        collector.ingest(batch, wal_bytes).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let wal = collector.stats();
    println!(
        "{format}: {total} events in {secs:.2} s = {:.0} events/s ({:.1} MB of bodies, fsync {}), {} accepted",
        total as f64 / secs,
        bytes as f64 / 1e6,
        if fsync { "on" } else { "off" },
        wal.events_in.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
