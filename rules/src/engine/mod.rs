//! The running rules engine: evaluates every rule on its own schedule,
//! drives the lifecycle, batches notices, delivers them from the outbox,
//! reloads the rules directory when it changes, and persists everything it
//! would be wrong to forget across a restart.
//!
//! Time is an argument ([`Engine::tick`], [`Engine::deliver`]) so that tests
//! drive the engine minute by minute over synthetic rollups; [`Engine::run`]
//! is the same two calls on the wall clock.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use panorama_model::{DAY_MS, HOUR_MS};
use panorama_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::eval;
use crate::lifecycle::AlertKey;
use crate::notify::Notice;
use crate::rule::LoadError;

mod deliver;
mod incidents;
mod notice;
mod operator;
mod reload;
mod route;
mod state;
mod tick;
mod view;
mod voice;

pub use incidents::{EdgeView, IncidentView, MemberView};
pub use operator::SilenceRequest;
use reload::Loaded;
use route::facts;
use state::{Folded, StateFiles};
pub use view::{
    AlertView, AlertsView, BudgetView, ErrorView, NotificationView, OnDutyView, RuleView,
};
pub use voice::ReceiptError;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The rules directory.
    pub rules_dir: PathBuf,
    /// Where alert state, silences, the outbox and the history live.
    pub state_dir: PathBuf,
    /// Base URL of the dashboard, for links in notices.
    pub dashboard_url: String,
    /// How often the engine wakes up to evaluate due rules and deliver.
    pub tick: Duration,
    /// Delivery attempts before a notice is given up on and reported.
    pub max_attempts: u32,
    /// How long resolved alerts stay listed.
    pub resolved_keep_ms: i64,
    /// For this long after a minute begins, windows still end with the
    /// previous minute: the new one is not in the store yet.
    pub open_minute_lag_ms: i64,
    /// Connected alerts starting within this of each other are one incident.
    pub incident_window_ms: i64,
}

impl EngineConfig {
    /// Defaults for a rules directory and a state directory.
    pub fn new(rules_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            rules_dir: rules_dir.into(),
            state_dir: state_dir.into(),
            dashboard_url: "http://127.0.0.1:7070".into(),
            tick: Duration::from_secs(1),
            max_attempts: 12,
            resolved_keep_ms: HOUR_MS,
            open_minute_lag_ms: eval::OPEN_MINUTE_LAG_MS,
            incident_window_ms: crate::incident::DEFAULT_WINDOW_MS,
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The state directory or a state file could not be read or written.
    #[error("alert state in {path}: {source}")]
    State {
        /// Which.
        path: String,
        /// Why.
        source: io::Error,
    },
}

/// What the outbox holds: a notice, the receiver that delivers it and,
/// for a rota, to whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The notice.
    pub notice: Notice,
    /// The receiver the route named (a channel, or a rota).
    pub receiver: String,
    /// The channel receiver that sends it.
    pub via: String,
    /// Recipients replacing the channel's own (the person on duty).
    pub to: Option<Vec<String>>,
    /// The person on duty, for a rota.
    pub person: Option<String>,
}

struct Inner {
    cfg: EngineConfig,
    store: Arc<dyn Store>,
    loaded: RwLock<Arc<Loaded>>,
    load_errors: Mutex<Vec<LoadError>>,
    loaded_ms: AtomicI64,
    fingerprint: Mutex<Vec<(PathBuf, Option<SystemTime>, u64)>>,
    store_error: Mutex<Option<String>>,
    state: tokio::sync::Mutex<StateFiles>,
    /// The collector in this process, when there is one (see [`crate::live`]).
    live: std::sync::OnceLock<Arc<dyn panorama_model::live::LiveView>>,
    /// Notified when the live view received events.
    woken: Arc<tokio::sync::Notify>,
    /// Notified when a tick put notices in the outbox, so that delivery
    /// sends them now rather than on its next tick.
    queued: Arc<tokio::sync::Notify>,
    /// Rule evaluations so far.
    evaluations: std::sync::atomic::AtomicU64,
}

/// The rules engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn alert_id(k: &AlertKey) -> String {
    format!("{}\u{1f}{}", k.rule, k.group)
}

/// A history detail with the principal that caused it, when known:
/// `by ana: looking [ops-bot (token from 10.0.0.3)]`.
fn audited(detail: String, who: &str) -> String {
    if who.is_empty() {
        detail
    } else {
        format!("{detail} [{who}]")
    }
}

/// How long expired silences and finished notifications stay listed.
const KEEP_FINISHED_MS: i64 = 7 * DAY_MS;

impl Engine {
    /// Runs on the wall clock until `stop` turns true: evaluation and
    /// delivery every tick, rules reloaded when the directory changes
    /// (`notify` events, with a stat check every few seconds as a fallback
    /// for filesystems that do not report changes).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
        let watcher = {
            use notify::Watcher as _;
            let tx = tx.clone();
            notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
                let _ = tx.try_send(());
            })
            .and_then(|mut w| {
                w.watch(
                    &self.inner.cfg.rules_dir,
                    notify::RecursiveMode::NonRecursive,
                )
                .map(|()| w)
            })
        };
        let _watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "watching the rules directory failed; polling it instead");
                None
            }
        };
        // Delivery runs on its own so that a slow or dead mail server (each
        // attempt may take up to its timeout) never delays evaluation.
        let delivery = {
            let engine = self.clone();
            let mut stop = stop.clone();
            let every = self.inner.cfg.tick;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let queued = engine.inner.queued.clone();
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = queued.notified() => {}
                        _ = stop.changed() => return,
                    }
                    engine.deliver(now_ms()).await;
                }
            })
        };
        let mut tick = tokio::time::interval(self.inner.cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_poll = std::time::Instant::now();
        let woken = self.inner.woken.clone();
        // When a rule whose series moved may be evaluated again (its
        // `min_interval` since the last evaluation).
        let mut debounced: Option<tokio::time::Instant> = None;
        // When the dispatcher's next batch is due (its group_wait over):
        // found on the tick it would go up to a tick late.
        let mut dispatch_at: Option<tokio::time::Instant> = None;
        loop {
            let wake = debounced.into_iter().chain(dispatch_at).min();
            let until_debounced = async move {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => {}
                () = woken.notified() => {
                    // Events arrived: evaluate now if a rule they touch may
                    // be, else when the first of them may.
                    match self.next_wanted(now_ms()).await {
                        Some(0) => {}
                        later => {
                            debounced = later.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms as u64));
                            continue;
                        }
                    }
                }
                () = until_debounced => {}
                Some(()) = rx.recv() => {
                    // Let an editor finish writing before reading.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while rx.try_recv().is_ok() {}
                    self.reload_if_changed().await;
                    continue;
                }
                _ = stop.changed() => {
                    let _ = delivery.await;
                    return;
                }
            }
            if last_poll.elapsed() >= Duration::from_secs(5) {
                last_poll = std::time::Instant::now();
                self.reload_if_changed().await;
            }
            self.tick(now_ms()).await;
            debounced = self
                .next_wanted(now_ms())
                .await
                .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms.max(1) as u64));
            dispatch_at = self.next_dispatch(now_ms()).await;
        }
    }
}
