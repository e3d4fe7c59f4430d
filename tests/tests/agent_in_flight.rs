//! The agent with several batches of a source in flight at once, in
//! process against an in-process collector whose WAL is slowed (so that
//! batches are always waiting for it) and now and then fails a write (so
//! that a batch is refused while the ones chained behind it are on their
//! way). The agent is killed (its runtime dropped where it stands, as
//! kill -9 would leave its files) several times mid-flight and restarted:
//! every line must be counted exactly once, in the right minute.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use panorama_agent::config::AgentConfig;
use panorama_agent::run::{AgentFigures, run};
use panorama_collector::{Collector, CollectorConfig};
use panorama_model::Layer;
use panorama_store::sqlite::SqliteStore;
use panorama_store::{SeriesQuery, Store};

const LINES: u64 = 60_000;

fn t0() -> i64 {
    (chrono::Utc::now().timestamp_millis() - 2 * 3_600_000) / 60_000 * 60_000
}

/// A combined access log of `LINES` lines over three minutes from `t0`;
/// the count expected per minute.
fn write_log(path: &Path, t0: i64) -> BTreeMap<i64, u64> {
    let mut want = BTreeMap::new();
    let mut text = String::new();
    for n in 0..LINES {
        let minute = t0 + (n * 3 / LINES) as i64 * 60_000;
        let ts = chrono::DateTime::from_timestamp_millis(minute + (n % 59) as i64 * 1000).unwrap();
        text.push_str(&format!(
            "10.0.0.{} - - [{}] \"GET /api/item/{} HTTP/1.1\" 200 512 \"-\" \"k/1.0\" 0.{:03}\n",
            n % 250,
            ts.format("%d/%b/%Y:%H:%M:%S %z"),
            n * 7,
            n % 1000
        ));
        *want.entry(minute).or_default() += 1;
    }
    std::fs::write(path, text).unwrap();
    want
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn killed_with_batches_in_flight_and_refused_by_the_wal_the_agent_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    let log = dir.path().join("access.log");
    let want = write_log(&log, t0);

    let collector_rt = runtime();
    let mut cfg = CollectorConfig::new("c1", dir.path().join("cdata"));
    cfg.grace = Duration::from_secs(3600);
    cfg.open_flush_interval = None;
    cfg.flush_interval = Duration::from_secs(3600);
    // Every write answered late: batches queue behind it, and the agent
    // keeps several in flight.
    cfg.wal.sync_delay = Duration::from_millis(40);
    let fail_writes = cfg.wal.fail_writes.clone();
    let (collector, base) = collector_rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("store")).unwrap());
        let collector = Collector::start(cfg, store).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = panorama_collector::api::app(collector.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (collector, format!("http://{addr}"))
    });

    let mut agent = AgentConfig::from_flags(
        vec![base.clone()],
        None,
        dir.path().join("adata"),
        &[format!("combined:shop:{}", log.display())],
    )
    .unwrap();
    agent.host_metrics = None;
    agent.ship.max_in_flight = 4;
    agent.ship.initial_backoff = Duration::from_millis(20);
    // Small fixed batches: many of them, several in flight at any moment.
    agent.sources[0].tail.read_chunk_bytes = 24 * 1024;
    agent.sources[0].tail.max_read_chunk_bytes = 24 * 1024;
    let events_in = || collector.stats().events_in.load(Ordering::Relaxed);

    // Killed five times mid-flight; twice with the WAL failing writes.
    for round in 0..5u64 {
        let rt = runtime();
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let figures = Arc::new(AgentFigures::default());
        rt.spawn(run(agent.clone(), figures, stop));
        if round % 2 == 1 {
            fail_writes.store(2, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        drop(rt); // kill -9: tasks dropped where they stand
        assert!(events_in() <= LINES, "counted twice: {}", events_in());
    }
    assert!(
        events_in() < LINES,
        "the agent finished before it was killed; nothing was in flight"
    );

    // The last run, to the end.
    let rt = runtime();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let done = rt.spawn(run(agent.clone(), Arc::new(AgentFigures::default()), stop));
    let start = Instant::now();
    while events_in() < LINES && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop_tx.send(true).unwrap();
    rt.block_on(done).unwrap().unwrap();
    drop(rt);

    assert_eq!(events_in(), LINES, "every line counted exactly once");
    assert!(
        collector.stats().wal_refusals.load(Ordering::Relaxed) > 0,
        "the WAL never refused a batch: the fault was not injected"
    );
    collector_rt.block_on(async {
        collector.flush_all().await.unwrap();
        let store = collector.store();
        store.sync().await.unwrap();
        let mut got: BTreeMap<i64, u64> = BTreeMap::new();
        for r in store
            .read_rollups(&SeriesQuery::layer(Layer::Url, t0 - 60_000, t0 + 240_000))
            .await
            .unwrap()
        {
            *got.entry(r.minute_ms).or_default() += r.count;
        }
        assert_eq!(got, want, "per-minute counts in the store");
        // Several batches shared each WAL flush: they were in flight together.
        let records = metric(&base, "panorama_collector_wal_records_total").await;
        let syncs = metric(&base, "panorama_collector_wal_syncs_total").await;
        assert!(
            records > 1.5 * syncs,
            "{records} records in {syncs} flushes: batches were not in flight together"
        );
    });
}
