//! The compactor: builds the store's hourly tier from its minute rollups,
//! and applies the hourly tier's retention.
//!
//! Every collector runs one. Passes are cheap when nothing changed (the
//! store compares per-hour event sums with the hours' marks), so several
//! collectors on one store simply all run it: hourly documents have
//! deterministic ids and never shrink, so a double compaction is harmless
//! (see [`panorama_store::compact`] for why that and not a lease).

use std::sync::Arc;
use std::time::Duration;

use panorama_store::{CompactPolicy, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Default days of hourly rollups kept.
pub const DEFAULT_HOURLY_RETENTION_DAYS: u32 = 400;

/// How the compactor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactConfig {
    /// How often a pass looks for hours to compact.
    pub every: Duration,
    /// Days of hourly rollups kept (`hourly_retention_days`).
    pub hourly_retention_days: u32,
    /// At most this many hours per pass, so a first pass over weeks of
    /// minutes does not hold off shutdown.
    pub max_hours_per_pass: usize,
}

impl Default for CompactConfig {
    fn default() -> CompactConfig {
        CompactConfig {
            every: Duration::from_secs(60),
            hourly_retention_days: DEFAULT_HOURLY_RETENTION_DAYS,
            max_hours_per_pass: 24,
        }
    }
}

/// How often the hourly tier's retention is applied.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// A running compactor; [`Compactor::stop`] ends it between passes.
#[derive(Debug)]
pub struct Compactor {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Compactor {
    /// Starts the compactor over `store`. `grace` is the collectors' grace
    /// (an hour is compacted once its last minute is past it) and
    /// `minute_retention_days` how far back late minutes are looked for.
    pub fn spawn(
        store: Arc<dyn Store>,
        cfg: CompactConfig,
        grace: Duration,
        minute_retention_days: u32,
    ) -> Compactor {
        let (stop, rx) = watch::channel(false);
        let policy = CompactPolicy {
            grace_ms: grace.as_millis() as i64,
            lookback_ms: i64::from(minute_retention_days) * panorama_model::DAY_MS,
            max_hours: cfg.max_hours_per_pass.max(1),
        };
        let task = tokio::spawn(run(store, cfg, policy, rx));
        Compactor { stop, task }
    }

    /// Stops after the pass in progress, if any.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn run(
    store: Arc<dyn Store>,
    cfg: CompactConfig,
    policy: CompactPolicy,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(cfg.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // A pass that hit its limit is followed at once by the next.
        loop {
            let started = std::time::Instant::now();
            match panorama_store::compact::compact_due(store.as_ref(), now_ms(), policy).await {
                Ok(r) if !r.hours.is_empty() => {
                    tracing::info!(
                        hours = r.hours.len(),
                        recompacted = r.recompacted.len(),
                        from_partials = r.from_partials.len(),
                        waiting_for_partials = r.waiting.len(),
                        series_docs = r.series_docs,
                        left = r.left,
                        took_ms = started.elapsed().as_millis() as u64,
                        "hours compacted"
                    );
                    if r.left == 0 || *stop.borrow() {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "compaction failed; will retry");
                    break;
                }
            }
        }
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            last_retention = Some(std::time::Instant::now());
            match store
                .apply_hourly_retention(now_ms(), cfg.hourly_retention_days)
                .await
            {
                Ok(r) if !r.dropped.is_empty() || r.deleted_docs > 0 => {
                    tracing::info!(dropped = ?r.dropped, deleted = r.deleted_docs, "hourly retention applied");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "hourly retention failed; will retry"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use panorama_model::{Event, Layer, Rollup};
    use panorama_store::sqlite::SqliteStore;
    use panorama_store::{HOUR_MS, SeriesQuery};

    /// The running task compacts a past hour written by two collectors into
    /// one hourly document per series, and stops on request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_task_compacts_past_hours() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let hour = (now_ms() - 3 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
        let key = Event::new(hour, Layer::Url, "shop", "web1", "GET /cart").series_key();
        let mut docs = Vec::new();
        for (collector, minute) in [("c1", 0), ("c2", 0), ("c1", 59)] {
            let at = hour + minute * 60_000;
            let mut r = Rollup::empty(at, key.clone(), collector);
            for i in 0..5 {
                let mut e = Event::new(at + i, Layer::Url, "shop", "web1", "GET /cart");
                e.latency_ms = Some(10.0 + i as f64);
                r.add(&e);
            }
            docs.push(r);
        }
        store.write_rollups(&docs).await.unwrap();
        let cfg = CompactConfig {
            every: Duration::from_millis(50),
            ..CompactConfig::default()
        };
        let c = Compactor::spawn(store.clone(), cfg, Duration::from_secs(15), 14);
        let q = SeriesQuery::layer(Layer::Url, hour, hour + HOUR_MS);
        let mut hourly = Vec::new();
        for _ in 0..200 {
            hourly = store.read_hourly_rollups(&q).await.unwrap();
            if !hourly.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.stop().await;
        assert_eq!(hourly.len(), 1, "one hourly document for the series");
        assert_eq!(hourly[0].count, 15, "three minute documents of 5 events");
        let marks = store.hour_marks(hour, hour + HOUR_MS).await.unwrap();
        assert_eq!(marks.len(), 1);
        assert_eq!(marks[0].events, 15);
    }
}
