//! Rules evaluated as events arrive: the collector's live view (real
//! collector, real WAL, real SQLite store) handed to a real rules engine,
//! as `panorama collector` wires them.
//!
//! The debounce is checked with time as an argument (`Live::add_at`,
//! `Engine::tick`); the wake-up itself on the wall clock, with a bound far
//! above the one it keeps, so a loaded machine cannot fail it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use panorama_collector::live::Live;
use panorama_collector::{Collector, CollectorConfig};
use panorama_model::wire::binary::{self, Batch, BatchMeta};
use panorama_model::{Event, Layer, Outcome};
use panorama_rules::engine::{Engine, EngineConfig};
use panorama_rules::lifecycle::State;
use panorama_store::Store;
use panorama_store::sqlite::SqliteStore;

const T0: i64 = 1_795_352_400_000;

const RULES: &str = r#"
[[rule]]
name = "pay-errors"
layer = "url"
service = "shop"
series = "GET /pay"
window = "1m"
every = "1h"
min_interval = "1s"
when = "error_ratio > 5%"
min_count = 20
"#;

fn ev(ts: i64, ok: bool) -> Event {
    let mut e = Event::new(ts, Layer::Url, "shop", "web1", "GET /pay");
    if !ok {
        e.outcome = Outcome::Error(Some("500".into()));
    }
    e.latency_ms = Some(20.0);
    e
}

fn engine(dir: &std::path::Path, store: Arc<dyn Store>, tick: Duration) -> Engine {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("r.toml"), RULES).unwrap();
    let mut cfg = EngineConfig::new(&rules, dir.join("state"));
    cfg.tick = tick;
    Engine::open(cfg, store).unwrap()
}

async fn state(engine: &Engine, now: i64) -> Option<State> {
    let v = engine.view(now).await;
    [&v.firing, &v.pending, &v.no_data, &v.resolved]
        .into_iter()
        .flatten()
        .find(|a| a.rule == "pay-errors")
        .map(|a| a.state)
}

#[tokio::test]
async fn events_trigger_an_evaluation_at_most_once_per_min_interval_and_every_stays_the_longest_gap()
 {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let engine = engine(dir.path(), store, Duration::from_secs(1));
    let live = Live::with("c1", 5_000, 125_000, T0 - 120_000);
    engine.attach_live(live.clone());
    engine.tick(T0).await;
    assert_eq!(engine.evaluations(), 1, "first tick evaluates");
    // Healthy traffic, then a burst: touched, but 1 s has not passed.
    let healthy: Vec<Event> = (0..300).map(|i| ev(T0 - 30_000 + i * 100, true)).collect();
    live.add_at(&healthy, T0 + 100);
    let burst: Vec<Event> = (0..60).map(|i| ev(T0 + 200 + i * 5, false)).collect();
    live.add_at(&burst, T0 + 500);
    engine.tick(T0 + 600).await;
    assert_eq!(engine.evaluations(), 1, "debounced: min_interval not over");
    engine.tick(T0 + 1_000).await;
    assert_eq!(engine.evaluations(), 2, "min_interval over: evaluated");
    assert_eq!(state(&engine, T0 + 1_000).await, Some(State::Firing));
    // Nothing moved: the next evaluation waits for `every`.
    engine.tick(T0 + 5_000).await;
    engine.tick(T0 + 60_000).await;
    assert_eq!(engine.evaluations(), 2);
    engine.tick(T0 + 3_601_000).await;
    assert_eq!(engine.evaluations(), 3, "every is the longest gap");
    // An event for a series no rule watches wakes nobody.
    let mut other = ev(T0 + 3_601_500, false);
    other.name = "GET /cart".into();
    live.add_at(&[other], T0 + 3_601_500);
    engine.tick(T0 + 3_603_000).await;
    assert_eq!(engine.evaluations(), 3);
}

#[tokio::test]
async fn a_durable_batch_wakes_the_running_engine_long_before_every() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let collector = Collector::start(
        CollectorConfig::new("c1", dir.path().join("c")),
        store.clone(),
    )
    .await
    .unwrap();
    // The engine's own tick is an hour: only a wake-up can evaluate.
    let engine = engine(dir.path(), store, Duration::from_secs(3_600));
    engine.attach_live(collector.live());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.clone().run(stopped));
    let wait = |n: u64| {
        let engine = engine.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while engine.evaluations() < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            engine.evaluations()
        }
    };
    assert_eq!(wait(1).await, 1, "the first tick");
    let now = chrono::Utc::now().timestamp_millis();
    let mut events: Vec<Event> = (0..200).map(|i| ev(now - 20_000 + i * 100, true)).collect();
    events.extend((0..40).map(|i| ev(now - 100 + i, false)));
    let batch = Batch {
        meta: BatchMeta {
            agent_id: "a1".into(),
            source_id: "s1".into(),
            start_offset: 0,
            end_offset: 1_000,
            lines_read: events.len() as u64,
            lines_failed: 0,
        },
        events,
    };
    let mut bytes = Vec::new();
    binary::encode(&batch, &mut bytes);
    let sent = Instant::now();
    collector.ingest(batch, bytes).await.unwrap();
    assert_eq!(wait(2).await, 2, "woken by the batch");
    let took = sent.elapsed();
    // (Whether it fires is the other test's: a view started less than a
    // minute ago leaves this minute to the store, upserted every 5 s.)
    // The bound kept is 1 s plus scheduling; 15 s is only there so that a
    // loaded machine cannot fail this, while `every` (1 h) would.
    assert!(took < Duration::from_secs(15), "{took:?}");
    let _ = stop.send(true);
    task.await.unwrap();
    collector.shutdown(Duration::from_secs(5)).await;
}
