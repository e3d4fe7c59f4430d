//! Exactly-once under the faults that broke it: a client hanging up while
//! its batch waits for the WAL sync, resends racing the first copy,
//! producers racing a segment roll and a flush, an emptied WAL directory,
//! and a store refusing part of a flush. The WAL's `sync_delay` widens the
//! windows on purpose. A "crash" is the end of the runtime the collector
//! ran on: its tasks are dropped where they stand, nothing is flushed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use panorama_collector::{Collector, CollectorConfig, IngestOutcome};
use panorama_model::wire::binary::{self, Batch, BatchMeta};
use panorama_model::{Event, Layer, Outcome, Rollup, Sample};
use panorama_store::sqlite::SqliteStore;
use panorama_store::{
    CompactedHour, HourMark, HourPartial, HourPartials, LayerTotals, Rejection, RetentionReport,
    SampleQuery, SeenSeries, SeriesQuery, SeriesTotals, SeriesTotalsQuery, Store, StoreError,
    TopEntry, TopQuery, TotalsQuery,
};
use proptest::prelude::*;
use tower::ServiceExt;

fn t0() -> i64 {
    (chrono::Utc::now().timestamp_millis() - 3_600_000) / 60_000 * 60_000
}

/// `n` events of source `source`, bytes `[start, end)`, spread over two
/// minutes and two routes; every third an error.
fn batch(source: &str, start: u64, end: u64, n: usize, t0: i64) -> (Batch, Vec<u8>) {
    let events = (0..n)
        .map(|i| {
            let mut e = Event::new(
                t0 + (i as i64 % 2) * 60_000 + i as i64,
                Layer::Url,
                "shop",
                "web1",
                if i % 2 == 0 { "GET /a" } else { "POST /b" },
            );
            e.latency_ms = Some(1.0 + i as f64);
            if i % 3 == 0 {
                e.outcome = Outcome::Error(Some("500".into()));
                e.raw = Some(format!("{source} line {i}"));
            }
            e
        })
        .collect();
    let b = Batch {
        meta: BatchMeta {
            agent_id: "agent".into(),
            source_id: source.into(),
            start_offset: start,
            end_offset: end,
            lines_read: n as u64,
            lines_failed: 0,
        },
        events,
    };
    let mut raw = Vec::new();
    binary::encode(&b, &mut raw);
    (b, raw)
}

fn cfg(dir: &std::path::Path) -> CollectorConfig {
    let mut c = CollectorConfig::new("c1", dir.join("data"));
    c.grace = Duration::from_secs(3600);
    c.open_flush_interval = None;
    c.flush_interval = Duration::from_secs(3600);
    c
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Every stored count of the url layer around `t0`, by (minute, series).
async fn stored(store: &dyn Store, t0: i64) -> BTreeMap<(i64, String), u64> {
    store.sync().await.unwrap();
    let mut out = BTreeMap::new();
    for r in store
        .read_rollups(&SeriesQuery::layer(Layer::Url, t0 - 60_000, t0 + 180_000))
        .await
        .unwrap()
    {
        *out.entry((r.minute_ms, r.key.name.clone())).or_default() += r.count;
    }
    out
}

fn expected(batches: &[&Batch]) -> BTreeMap<(i64, String), u64> {
    let mut out = BTreeMap::new();
    for b in batches {
        for e in &b.events {
            *out.entry((panorama_model::minute_of(e.ts_ms), e.name.clone()))
                .or_default() += 1;
        }
    }
    out
}

fn open_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.join("store")).unwrap())
}

#[test]
fn a_client_hanging_up_during_the_sync_is_counted_once_through_resend_release_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    let (b1, raw1) = batch("s1", 0, 1000, 10, t0);
    let (b2, raw2) = batch("s1", 1000, 2000, 6, t0);
    let rt = runtime();
    rt.block_on(async {
        let mut c = cfg(dir.path());
        c.wal.sync_delay = Duration::from_millis(400);
        // Every append in a new segment: b1's is sealed as soon as b2 lands.
        c.wal.segment_max_age = Duration::ZERO;
        let c = Collector::start(c, open_store(dir.path())).await.unwrap();
        // The client gives up while the WAL is still syncing its batch.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(50),
            c.ingest(b1.clone(), raw1.clone()),
        )
        .await;
        assert!(gave_up.is_err(), "the sync delay did not hold the request");
        // Its resend arrives at once; it must not be acknowledged before
        // the first copy is counted.
        let out = c.ingest(b1.clone(), raw1.clone()).await.unwrap();
        assert!(matches!(out, IngestOutcome::Duplicate), "{out:?}");
        assert_eq!(
            c.stats().events_in.load(Ordering::Relaxed),
            10,
            "acknowledged as a duplicate before the first copy was counted"
        );
        let out = c.ingest(b2.clone(), raw2.clone()).await.unwrap();
        assert!(
            matches!(out, IngestOutcome::Accepted { events: 6 }),
            "{out:?}"
        );
        // b1's segment is written and deleted.
        c.flush_all().await.unwrap();
        assert_eq!(stored(&*c.store(), t0).await, expected(&[&b1, &b2]));
    });
    drop(rt); // kill -9
    let rt = runtime();
    rt.block_on(async {
        let c = Collector::start(cfg(dir.path()), open_store(dir.path()))
            .await
            .unwrap();
        for (b, raw) in [(&b1, &raw1), (&b2, &raw2)] {
            let out = c.ingest(b.clone(), raw.clone()).await.unwrap();
            assert!(matches!(out, IngestOutcome::Duplicate), "{out:?}");
        }
        c.flush_all().await.unwrap();
        assert_eq!(stored(&*c.store(), t0).await, expected(&[&b1, &b2]));
        let acct = c.accounting(10);
        assert_eq!(acct["flagged"], 0, "{acct:#}");
    });
}

#[test]
fn an_unranged_batch_whose_caller_vanished_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    // NDJSON has no byte range: it cannot be deduplicated, so the one copy
    // the WAL has must be counted, neither dropped nor replayed on top.
    let (b, raw) = batch("", 0, 0, 8, t0);
    let rt = runtime();
    rt.block_on(async {
        let mut c = cfg(dir.path());
        c.wal.sync_delay = Duration::from_millis(300);
        c.wal.segment_max_age = Duration::ZERO;
        let c = Collector::start(c, open_store(dir.path())).await.unwrap();
        let gave_up =
            tokio::time::timeout(Duration::from_millis(30), c.ingest(b.clone(), raw.clone())).await;
        assert!(gave_up.is_err());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(c.stats().events_in.load(Ordering::Relaxed), 8);
        c.flush_all().await.unwrap();
        assert_eq!(stored(&*c.store(), t0).await, expected(&[&b]));
    });
    drop(rt);
    let rt = runtime();
    rt.block_on(async {
        let c = Collector::start(cfg(dir.path()), open_store(dir.path()))
            .await
            .unwrap();
        c.flush_all().await.unwrap();
        assert_eq!(stored(&*c.store(), t0).await, expected(&[&b]));
        assert_eq!(
            c.stats().events_in.load(Ordering::Relaxed),
            0,
            "nothing left to replay"
        );
    });
}

#[test]
fn segment_ids_survive_an_emptied_wal_directory() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    // The same minute and series twice: a reused segment id would give the
    // second rollup the first one's document id, and overwrite it.
    let (b1, raw1) = batch("s1", 0, 100, 1, t0);
    let (b2, raw2) = batch("s1", 100, 200, 1, t0);
    type Phase =
        Box<dyn FnOnce(Collector) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>;
    let phase = |f: Phase| {
        let rt = runtime();
        rt.block_on(async {
            let c = Collector::start(cfg(dir.path()), open_store(dir.path()))
                .await
                .unwrap();
            f(c).await;
        });
        drop(rt); // kill -9
    };
    phase(Box::new(move |c| {
        Box::pin(async move {
            c.ingest(b1.clone(), raw1).await.unwrap();
        })
    }));
    // Replays b1, writes it, deletes its segment: the directory is empty.
    phase(Box::new(|c| {
        Box::pin(async move {
            c.flush_all().await.unwrap();
        })
    }));
    let wal = dir.path().join("data/wal");
    assert_eq!(
        std::fs::read_dir(&wal).unwrap().count(),
        0,
        "WAL not emptied"
    );
    phase(Box::new(move |c| {
        Box::pin(async move {
            c.ingest(b2, raw2).await.unwrap();
        })
    }));
    phase(Box::new(move |c| {
        Box::pin(async move {
            c.flush_all().await.unwrap();
            let got = stored(&*c.store(), t0).await;
            assert_eq!(
                got.values().sum::<u64>(),
                2,
                "an accepted event lost: {got:?}"
            );
        })
    }));
}

/// A store that refuses the rollups of one series for good, and fails the
/// whole-layer rollups and the samples the first `flaky` times.
struct Refusing {
    inner: Arc<dyn Store>,
    refuse: &'static str,
    flaky: AtomicU32,
    layer_written: Mutex<Vec<Rollup>>,
}

#[async_trait]
impl Store for Refusing {
    async fn write_rollups(&self, rollups: &[Rollup]) -> Result<(), StoreError> {
        let (bad, good): (Vec<&Rollup>, Vec<&Rollup>) =
            rollups.iter().partition(|r| r.key.name == self.refuse);
        let good: Vec<Rollup> = good.into_iter().cloned().collect();
        self.inner.write_rollups(&good).await?;
        if bad.is_empty() {
            return Ok(());
        }
        Err(StoreError::Rejected(
            bad.iter()
                .map(|r| Rejection {
                    doc_id: r.doc_id(),
                    reason: "mapping conflict (test)".into(),
                })
                .collect(),
        ))
    }
    async fn write_samples(&self, samples: &[Sample]) -> Result<(), StoreError> {
        if self.flaky.load(Ordering::SeqCst) > 0 {
            return Err(StoreError::Unavailable("samples down (test)".into()));
        }
        self.inner.write_samples(samples).await
    }
    async fn read_rollups(&self, q: &SeriesQuery) -> Result<Vec<Rollup>, StoreError> {
        self.inner.read_rollups(q).await
    }
    async fn write_layer_rollups(&self, rollups: &[Rollup]) -> Result<(), StoreError> {
        if self.flaky.load(Ordering::SeqCst) > 0 {
            self.flaky.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("layers down (test)".into()));
        }
        self.inner.write_layer_rollups(rollups).await?;
        self.layer_written
            .lock()
            .unwrap()
            .extend(rollups.iter().cloned());
        Ok(())
    }
    async fn read_layer_rollups(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        self.inner.read_layer_rollups(layer, from_ms, to_ms).await
    }
    async fn top(&self, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
        self.inner.top(q).await
    }
    async fn samples(&self, q: &SampleQuery) -> Result<Vec<Sample>, StoreError> {
        self.inner.samples(q).await
    }
    async fn layer_totals(&self, q: &TotalsQuery) -> Result<Vec<LayerTotals>, StoreError> {
        self.inner.layer_totals(q).await
    }
    async fn series_totals(&self, q: &SeriesTotalsQuery) -> Result<Vec<SeriesTotals>, StoreError> {
        self.inner.series_totals(q).await
    }
    async fn last_seen(&self, q: &TotalsQuery) -> Result<Vec<SeenSeries>, StoreError> {
        self.inner.last_seen(q).await
    }
    async fn apply_retention(
        &self,
        now_ms: i64,
        keep_days: u32,
    ) -> Result<RetentionReport, StoreError> {
        self.inner.apply_retention(now_ms, keep_days).await
    }
    async fn read_hourly_rollups(&self, q: &SeriesQuery) -> Result<Vec<Rollup>, StoreError> {
        self.inner.read_hourly_rollups(q).await
    }
    async fn read_hourly_layer_rollups(
        &self,
        layer: Layer,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        self.inner
            .read_hourly_layer_rollups(layer, from_ms, to_ms)
            .await
    }
    async fn write_hour(&self, hour: &CompactedHour) -> Result<(), StoreError> {
        self.inner.write_hour(hour).await
    }
    async fn write_hour_partial(&self, partial: &HourPartial) -> Result<(), StoreError> {
        self.inner.write_hour_partial(partial).await
    }
    async fn minute_events_by_collector(
        &self,
        hour_ms: i64,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        self.inner.minute_events_by_collector(hour_ms).await
    }
    async fn read_hour_partials(&self, hour_ms: i64) -> Result<HourPartials, StoreError> {
        self.inner.read_hour_partials(hour_ms).await
    }
    async fn hour_marks(&self, from_ms: i64, to_ms: i64) -> Result<Vec<HourMark>, StoreError> {
        self.inner.hour_marks(from_ms, to_ms).await
    }
    async fn minute_events_by_hour(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<i64, u64>, StoreError> {
        self.inner.minute_events_by_hour(from_ms, to_ms).await
    }
    async fn apply_hourly_retention(
        &self,
        now_ms: i64,
        keep_days: u32,
    ) -> Result<RetentionReport, StoreError> {
        self.inner.apply_hourly_retention(now_ms, keep_days).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    fn backend(&self) -> &'static str {
        "refusing"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_series_rollup_does_not_mark_layer_rollups_and_samples_written() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    let store = Arc::new(Refusing {
        inner: open_store(dir.path()),
        refuse: "POST /b",
        flaky: AtomicU32::new(1),
        layer_written: Mutex::new(Vec::new()),
    });
    let c = Collector::start(cfg(dir.path()), store.clone())
        .await
        .unwrap();
    let (b, raw) = batch("s1", 0, 100, 12, t0);
    c.ingest(b.clone(), raw).await.unwrap();
    // Series rollups: one refused for good; layers and samples: down.
    assert!(c.flush_all().await.is_err(), "a failed write must say so");
    assert!(store.layer_written.lock().unwrap().is_empty());
    // Next flush: layers and samples are written, nothing is left dirty.
    c.flush_all().await.unwrap();
    let layers: u64 = store
        .layer_written
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.count)
        .sum();
    assert_eq!(layers, 12, "whole-layer rollups of every event");
    let samples = store
        .samples(&SampleQuery {
            layer: Layer::Url,
            service: Some("shop".into()),
            name: Some("GET /a".into()),
            minute_ms: t0,
            kind: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert!(!samples.is_empty(), "samples of the minute written");
    let got = stored(&*store, t0).await;
    assert!(got.keys().all(|(_, name)| name == "GET /a"), "{got:?}");
    // The refused events are counted as given up and flagged.
    let refused = expected(&[&b])
        .iter()
        .filter(|((_, n), _)| n == "POST /b")
        .map(|(_, v)| v)
        .sum::<u64>();
    assert_eq!(c.stats().events_rejected.load(Ordering::Relaxed), refused);
    let acct = c.accounting(10);
    assert!(acct["flagged"].as_u64().unwrap() >= 1, "{acct:#}");
    let resp = panorama_collector::api::app(c.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let metrics = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        metrics.contains(&format!(
            "panorama_collector_dropped_total{{reason=\"store_rejected\"}} {refused}"
        )),
        "{metrics}"
    );
}

/// Producers of several sources, a flusher writing and releasing
/// concurrently, segments rolling under them: counted exactly once, before
/// and after a crash and replay.
fn producers_race_rolls_and_flushes(
    producers: usize,
    batches: usize,
    sync_delay_ms: u64,
    count_delay_ms: u64,
    segment_max_bytes: u64,
    flush_every_ms: u64,
    crash_after: usize,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    let all: Vec<Vec<(Batch, Vec<u8>)>> = (0..producers)
        .map(|p| {
            (0..batches)
                .map(|i| {
                    batch(
                        &format!("s{p}"),
                        i as u64 * 100,
                        (i as u64 + 1) * 100,
                        1 + (p + i) % 5,
                        t0,
                    )
                })
                .collect()
        })
        .collect();
    let want = expected(&all.iter().flatten().map(|(b, _)| b).collect::<Vec<_>>());
    let make_cfg = || {
        let mut c = cfg(dir.path());
        c.wal.sync_delay = Duration::from_millis(sync_delay_ms);
        c.count_delay = Duration::from_millis(count_delay_ms);
        c.wal.segment_max_bytes = segment_max_bytes;
        c.wal.segment_max_age = Duration::from_millis(5);
        c
    };
    let rt = runtime();
    let first = rt.block_on(async {
        let c = Collector::start(make_cfg(), open_store(dir.path()))
            .await
            .unwrap();
        let flusher = {
            let c = c.clone();
            tokio::spawn(async move {
                loop {
                    let _ = c.flush_all().await;
                    tokio::time::sleep(Duration::from_millis(flush_every_ms)).await;
                }
            })
        };
        let mut tasks = Vec::new();
        for (p, mine) in all.iter().enumerate() {
            let c = c.clone();
            let mine = mine.clone();
            tasks.push(tokio::spawn(async move {
                for (i, (b, raw)) in mine.into_iter().enumerate() {
                    if p == 0 && i == crash_after {
                        return;
                    }
                    // Every other batch is abandoned by its client mid-sync
                    // and resent, as an agent timing out would.
                    if i % 2 == 1 {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(1),
                            c.ingest(b.clone(), raw.clone()),
                        )
                        .await;
                    }
                    loop {
                        match c.ingest(b.clone(), raw.clone()).await.unwrap() {
                            IngestOutcome::Accepted { .. } | IngestOutcome::Duplicate => break,
                            IngestOutcome::InFlight => {}
                            IngestOutcome::Overlap { counted } => {
                                panic!("overlap at {counted} for an exact resend")
                            }
                            IngestOutcome::Cancelled => panic!("cancelled without a chain"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        flusher.abort();
        let _ = flusher.await;
        c.flush_all().await.unwrap();
        stored(&*c.store(), t0).await
    });
    drop(rt); // kill -9 with the last segments still in the WAL
    // Everything but producer 0's unsent tail is in; then it resends all.
    let mut partial = want.clone();
    for (b, _) in &all[0][crash_after.min(batches)..] {
        for e in &b.events {
            let k = (panorama_model::minute_of(e.ts_ms), e.name.clone());
            *partial.get_mut(&k).unwrap() -= 1;
        }
    }
    partial.retain(|_, v| *v > 0);
    prop_assert_eq!(&first, &partial);
    let rt = runtime();
    let second = rt.block_on(async {
        let c = Collector::start(make_cfg(), open_store(dir.path()))
            .await
            .unwrap();
        for (b, raw) in &all[0] {
            // Nothing is in flight after a restart: new or duplicate, at once.
            let out = c.ingest(b.clone(), raw.clone()).await.unwrap();
            assert!(
                matches!(
                    out,
                    IngestOutcome::Accepted { .. } | IngestOutcome::Duplicate
                ),
                "{out:?}"
            );
        }
        c.flush_all().await.unwrap();
        assert_eq!(c.accounting(10)["flagged"], 0);
        stored(&*c.store(), t0).await
    });
    prop_assert_eq!(&second, &want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn concurrent_producers_across_rolls_and_flushes_count_exactly(
        producers in 2usize..5,
        batches in 3usize..12,
        sync_delay_ms in 0u64..4,
        count_delay_ms in 0u64..4,
        segment_max_bytes in prop::sample::select(vec![64u64, 300, 2_000, 1 << 20]),
        flush_every_ms in 0u64..6,
        crash_after in 0usize..12,
    ) {
        producers_race_rolls_and_flushes(producers, batches, sync_delay_ms, count_delay_ms, segment_max_bytes, flush_every_ms, crash_after)?;
    }
}

/// Three batches of one source in a row, `[0,1000)`, `[1000,2000)`,
/// `[2000,3000)`, as an agent keeps them in flight together.
fn three(t0: i64) -> [(Batch, Vec<u8>); 3] {
    [
        batch("s1", 0, 1000, 10, t0),
        batch("s1", 1000, 2000, 6, t0),
        batch("s1", 2000, 3000, 4, t0),
    ]
}

/// Sends batches at once, the first alone (unless `chain_first`: its
/// predecessor is in flight too) and the later ones chained, as the agent
/// does; the answers in order.
async fn send_chain(
    c: &Collector,
    batches: &[(Batch, Vec<u8>)],
    chain_first: bool,
) -> Vec<Result<IngestOutcome, panorama_collector::wal::WalError>> {
    let mut tasks = Vec::new();
    for (i, (b, raw)) in batches.iter().enumerate() {
        let (c, b, raw) = (c.clone(), b.clone(), raw.clone());
        tasks.push(tokio::spawn(async move {
            if i == 0 && !chain_first {
                c.ingest(b, raw).await
            } else {
                c.ingest_chained(b, raw).await
            }
        }));
        // In order, as the agent sends them.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[test]
fn batches_chained_behind_one_the_wal_fails_are_refused_and_counted_once_after_the_resend() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    let batches = three(t0);
    let all: Vec<&Batch> = batches.iter().map(|(b, _)| b).collect();
    let rt = runtime();
    rt.block_on(async {
        let mut c = cfg(dir.path());
        // The first write fails, and the writer answers it late: the
        // chained batches are reserved and handed to the WAL behind it
        // meanwhile, in a later group whose write would succeed.
        c.wal.sync_delay = Duration::from_millis(300);
        c.wal.fail_writes.store(1, Ordering::Relaxed);
        c.wal.segment_max_age = Duration::ZERO;
        let c = Collector::start(c, open_store(dir.path())).await.unwrap();
        let out = send_chain(&c, &batches, false).await;
        assert!(out[0].is_err(), "{:?}", out[0]);
        for o in &out[1..] {
            assert!(
                !matches!(
                    o,
                    Ok(IngestOutcome::Accepted { .. } | IngestOutcome::Duplicate)
                ),
                "acknowledged past a batch the WAL refused: {o:?}"
            );
        }
        assert_eq!(
            c.stats().events_in.load(Ordering::Relaxed),
            0,
            "counted past the refused batch"
        );
        // Resent alone, the second is not taken for new: its predecessor
        // is missing (it waits for it, and the agent gives up first).
        let (b, raw) = &batches[1];
        let waited = tokio::time::timeout(
            Duration::from_millis(300),
            c.ingest_chained(b.clone(), raw.clone()),
        )
        .await;
        assert!(waited.is_err(), "{waited:?}");
    });
    // kill -9 right after the refusals: whatever the WAL holds is replayed.
    drop(rt);
    let rt = runtime();
    rt.block_on(async {
        let c = Collector::start(cfg(dir.path()), open_store(dir.path()))
            .await
            .unwrap();
        // The agent resends from the first unacknowledged batch: all of it
        // is new, none was replayed past the refused one.
        let out = send_chain(&c, &batches, false).await;
        for o in &out {
            assert!(matches!(o, Ok(IngestOutcome::Accepted { .. })), "{o:?}");
        }
        assert_eq!(c.stats().events_in.load(Ordering::Relaxed), 20);
        c.flush_all().await.unwrap();
        assert_eq!(stored(&*c.store(), t0).await, expected(&all));
    });
    drop(rt); // kill -9
    let rt = runtime();
    rt.block_on(async {
        let c = Collector::start(cfg(dir.path()), open_store(dir.path()))
            .await
            .unwrap();
        for o in send_chain(&c, &batches, false).await {
            assert!(matches!(o, Ok(IngestOutcome::Duplicate)), "{o:?}");
        }
        c.flush_all().await.unwrap();
        assert_eq!(stored(&*c.store(), t0).await, expected(&all));
    });
}

#[test]
fn a_batch_the_full_wal_refuses_cancels_the_chained_batch_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    // The first is too large for the log's cap, the second is not: alone,
    // the second would be written, and counted past the first.
    let (big, big_raw) = batch("s1", 0, 1000, 400, t0);
    let (small, small_raw) = batch("s1", 1000, 1100, 2, t0);
    // One thread: both are admitted before either counting task runs.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = cfg(dir.path());
        c.wal.max_total_bytes = small_raw.len() as u64 + 4096;
        assert!(big_raw.len() as u64 > c.wal.max_total_bytes);
        let c = Collector::start(c, open_store(dir.path())).await.unwrap();
        let (first, second) = tokio::join!(
            c.ingest(big.clone(), big_raw.clone()),
            c.ingest_chained(small.clone(), small_raw.clone())
        );
        assert!(
            matches!(first, Err(panorama_collector::wal::WalError::Full { .. })),
            "{first:?}"
        );
        assert!(matches!(second, Ok(IngestOutcome::Cancelled)), "{second:?}");
        assert_eq!(c.stats().events_in.load(Ordering::Relaxed), 0);
        // The second resent alone (the agent's first unacknowledged batch
        // after giving the first up) is new: no reservation was left behind.
        let out = c.ingest(small.clone(), small_raw.clone()).await.unwrap();
        assert!(
            matches!(out, IngestOutcome::Accepted { events: 2 }),
            "{out:?}"
        );
    });
}

#[test]
fn a_client_hanging_up_on_a_batch_with_a_chained_one_behind_it_counts_both_once() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = t0();
    let batches = three(t0);
    let all: Vec<&Batch> = batches.iter().map(|(b, _)| b).collect();
    let rt = runtime();
    rt.block_on(async {
        let mut c = cfg(dir.path());
        c.wal.sync_delay = Duration::from_millis(300);
        let c = Collector::start(c, open_store(dir.path())).await.unwrap();
        let (b1, raw1) = &batches[0];
        // The request for the first is cancelled mid-write...
        let gave_up = tokio::time::timeout(
            Duration::from_millis(50),
            c.ingest(b1.clone(), raw1.clone()),
        )
        .await;
        assert!(gave_up.is_err(), "the sync delay did not hold the request");
        // ...while the next two are in flight behind it: they wait for it
        // and are counted after it.
        let out = send_chain(&c, &batches[1..], true).await;
        assert!(
            out.iter()
                .all(|o| matches!(o, Ok(IngestOutcome::Accepted { .. }))),
            "{out:?}"
        );
        let out = c.ingest(b1.clone(), raw1.clone()).await.unwrap();
        assert!(matches!(out, IngestOutcome::Duplicate), "{out:?}");
        assert_eq!(c.stats().events_in.load(Ordering::Relaxed), 20);
        c.flush_all().await.unwrap();
        assert_eq!(stored(&*c.store(), t0).await, expected(&all));
    });
    drop(rt);
    let rt = runtime();
    rt.block_on(async {
        let c = Collector::start(cfg(dir.path()), open_store(dir.path()))
            .await
            .unwrap();
        for o in send_chain(&c, &batches, false).await {
            assert!(matches!(o, Ok(IngestOutcome::Duplicate)), "{o:?}");
        }
        c.flush_all().await.unwrap();
        assert_eq!(stored(&*c.store(), t0).await, expected(&all));
    });
}
