//! The running rules engine: evaluates every rule on its own schedule,
//! drives the lifecycle, batches notices, delivers them from the outbox,
//! reloads the rules directory when it changes, and persists everything it
//! would be wrong to forget across a restart.
//!
//! Time is an argument ([`Engine::tick`], [`Engine::deliver`]) so that tests
//! drive the engine minute by minute over synthetic rollups; [`Engine::run`]
//! is the same two calls on the wall clock.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use panorama_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::dispatch::{Dispatcher, RuleFacts};
use crate::eval::{self, Group};
use crate::history::{History, Record};
use crate::lifecycle::{Ack, AlertKey, Lifecycle, State, Transition};
use crate::notify::Notifier;
use crate::notify::template::AlertField;
use crate::notify::{AlertStatus, Notice, NoticeAlert};
use crate::outbox::{Outbox, Status};
use crate::rule::{LoadError, ReceiverKind, Rule, RuleSet, load_dir};
use crate::silence::{Matcher, Silence, SilenceError, Silences};

mod incidents;
pub use incidents::{EdgeView, IncidentView, MemberView};
mod voice;
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
            resolved_keep_ms: 3_600_000,
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

/// Notices held back by a spent budget, folded into one digest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Folded {
    receiver: String,
    via: String,
    to: Option<Vec<String>>,
    person: Option<String>,
    titles: Vec<String>,
    seq: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    dispatcher: Dispatcher,
    /// Alert key (`rule\x1fgroup`) → the group it stands for.
    groups: BTreeMap<String, Group>,
    /// Rule → groups an `absent` rule remembers, with when each was last seen.
    remembered: BTreeMap<String, BTreeMap<String, (Group, i64)>>,
    /// Alerts whose firing a silence held back: notified when the silence
    /// ends while they still fire.
    #[serde(default)]
    held: BTreeSet<String>,
    /// Alert id → escalation steps already taken.
    #[serde(default)]
    escalated: BTreeMap<String, usize>,
    /// Budget key (`receiver:NAME`, `person:NAME`) → sends in the last hour.
    #[serde(default)]
    sent: BTreeMap<String, Vec<i64>>,
    /// Outbox channel key → notices folded while its budget was spent.
    #[serde(default)]
    folded: BTreeMap<String, Folded>,
    /// Alert id → the alert that suppresses it.
    #[serde(default)]
    suppressed: BTreeMap<String, String>,
    /// Voice call plans (see `engine/voice.rs`).
    #[serde(default)]
    voice: voice::Calls,
}

struct StateFiles {
    lifecycle: Lifecycle,
    silences: Silences,
    persisted: Persisted,
    outbox: Outbox<Delivery>,
    history: History,
    last_eval: BTreeMap<String, i64>,
    /// Rules whose series received events since their last evaluation.
    wanted: BTreeSet<String>,
    incidents: crate::incident::Incidents,
}

struct Loaded {
    set: Arc<RuleSet>,
    channels: BTreeMap<String, Arc<dyn Notifier>>,
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

fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> io::Result<T> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// One alert as the API and the dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// Rule.
    pub rule: String,
    /// Group key.
    pub group: String,
    /// pending, firing, no_data or resolved.
    pub state: State,
    /// Severity.
    pub severity: String,
    /// Layer.
    pub layer: String,
    /// Service.
    pub service: String,
    /// Series.
    pub series: String,
    /// Host.
    pub host: String,
    /// Latest value, formatted.
    pub value: String,
    /// Threshold, formatted.
    pub threshold: String,
    /// The rule's summary for this alert.
    pub summary: String,
    /// Drill-down link.
    pub link: String,
    /// Episode start.
    pub since_ms: i64,
    /// Fired at.
    pub fired_ms: Option<i64>,
    /// Resolved at.
    pub resolved_ms: Option<i64>,
    /// Acknowledgement.
    pub ack: Option<Ack>,
    /// The silence in force, if any.
    pub silenced_by: Option<String>,
}

/// A rule as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// Name.
    pub name: String,
    /// Layer.
    pub layer: String,
    /// Severity.
    pub severity: String,
    /// Condition.
    pub when: String,
    /// Where it is defined.
    pub at: String,
}

/// A rule-load error as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    /// file:line:col.
    pub at: String,
    /// What.
    pub message: String,
}

/// A notification as listed.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationView {
    /// Notice id.
    pub id: String,
    /// Receiver.
    pub receiver: String,
    /// Title.
    pub title: String,
    /// Decided at.
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// pending, delivered or gave_up.
    pub status: Status,
    /// The last error.
    pub last_error: Option<String>,
}

/// Everything `/api/v1/alerts` shows.
#[derive(Debug, Clone, Serialize)]
pub struct AlertsView {
    /// When this view was taken.
    pub now_ms: i64,
    /// Firing alerts.
    pub firing: Vec<AlertView>,
    /// Firing alerts whose data stopped.
    pub no_data: Vec<AlertView>,
    /// Breaching, not yet for long enough.
    pub pending: Vec<AlertView>,
    /// Recently resolved.
    pub resolved: Vec<AlertView>,
    /// Silences, newest first.
    pub silences: Vec<Silence>,
    /// Loaded rules.
    pub rules: Vec<RuleView>,
    /// Why the rules directory's current contents were refused (the rules
    /// listed are the last good ones).
    pub rule_errors: Vec<ErrorView>,
    /// When rules were last loaded successfully.
    pub rules_loaded_ms: i64,
    /// The last store read error, if the latest evaluation failed.
    pub store_error: Option<String>,
    /// Notifications not yet delivered or given up on, newest first.
    pub notifications: Vec<NotificationView>,
    /// Who is on duty now, per rota.
    pub on_duty: Vec<OnDutyView>,
    /// Hourly budgets and their use.
    pub budgets: Vec<BudgetView>,
}

/// Who a rota reaches now.
#[derive(Debug, Clone, Serialize)]
pub struct OnDutyView {
    /// The rota receiver.
    pub receiver: String,
    /// Who is on duty.
    pub person: String,
    /// Until when, Unix ms.
    pub until_ms: i64,
}

/// One hourly budget.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetView {
    /// `receiver:NAME` or `person:NAME`.
    pub key: String,
    /// Sent in the last hour.
    pub used: usize,
    /// Allowed per hour.
    pub limit: u32,
    /// Notices waiting in a digest for this key's channels.
    pub folded: usize,
}

/// A silence as requested through the API.
#[derive(Debug, Clone, Deserialize)]
pub struct SilenceRequest {
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Start, Unix ms; now when absent.
    pub starts_ms: Option<i64>,
    /// End, Unix ms; or give `duration`.
    pub ends_ms: Option<i64>,
    /// Length, such as `2h`, when `ends_ms` is absent.
    pub duration: Option<String>,
    /// Who.
    pub author: String,
    /// Why.
    pub reason: String,
}

impl Engine {
    /// Opens the state directory and loads the rules (an invalid directory
    /// leaves the engine running with no rules and the errors listed).
    ///
    /// # Errors
    /// The state directory cannot be created or its files read.
    pub fn open(cfg: EngineConfig, store: Arc<dyn Store>) -> Result<Engine, EngineError> {
        let sd = cfg.state_dir.clone();
        let err = |p: &Path| {
            let path = p.display().to_string();
            move |source| EngineError::State { path, source }
        };
        std::fs::create_dir_all(&sd).map_err(err(&sd))?;
        let lp = sd.join("alerts.json");
        let lifecycle = Lifecycle::load(&lp).map_err(err(&lp))?;
        let sp = sd.join("silences.json");
        let silences: Silences = read_json(&sp).map_err(err(&sp))?;
        let pp = sd.join("engine.json");
        let persisted: Persisted = read_json(&pp).map_err(err(&pp))?;
        let op = sd.join("outbox.json");
        let outbox = Outbox::open(&op).map_err(err(&op))?;
        let hp = sd.join("history.jsonl");
        let history = History::open(&hp).map_err(err(&hp))?;
        let ip = sd.join("incidents.json");
        let incidents = read_json(&ip).map_err(err(&ip))?;
        let engine = Engine {
            inner: Arc::new(Inner {
                cfg,
                store,
                loaded: RwLock::new(Arc::new(Loaded {
                    set: Arc::new(RuleSet::default()),
                    channels: BTreeMap::new(),
                })),
                load_errors: Mutex::new(Vec::new()),
                loaded_ms: AtomicI64::new(0),
                fingerprint: Mutex::new(Vec::new()),
                store_error: Mutex::new(None),
                state: tokio::sync::Mutex::new(StateFiles {
                    lifecycle,
                    silences,
                    persisted,
                    outbox,
                    history,
                    last_eval: BTreeMap::new(),
                    wanted: BTreeSet::new(),
                    incidents,
                }),
                live: std::sync::OnceLock::new(),
                woken: Arc::new(tokio::sync::Notify::new()),
                evaluations: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        if let Err(errors) = engine.load_now() {
            for e in &errors {
                tracing::error!("rules not loaded: {e}");
            }
        }
        Ok(engine)
    }

    fn rules(&self) -> Arc<Loaded> {
        self.inner
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The rules in force.
    pub fn rule_set(&self) -> Arc<RuleSet> {
        self.rules().set.clone()
    }

    fn load_now(&self) -> Result<usize, Vec<LoadError>> {
        *lock(&self.inner.fingerprint) = fingerprint(&self.inner.cfg.rules_dir);
        let result = load_dir(&self.inner.cfg.rules_dir).and_then(|set| {
            let mut channels: BTreeMap<String, Arc<dyn Notifier>> = BTreeMap::new();
            let mut errors = Vec::new();
            for (name, r) in &set.receivers {
                let ReceiverKind::Channel(channel) = &r.kind else {
                    continue;
                };
                match channel.build() {
                    Ok(c) => {
                        channels.insert(name.clone(), c);
                    }
                    Err(e) => errors.push(LoadError {
                        at: r.at.clone(),
                        message: format!("receiver `{name}`: {e}"),
                    }),
                }
            }
            if errors.is_empty() {
                Ok(Loaded {
                    set: Arc::new(set),
                    channels,
                })
            } else {
                Err(errors)
            }
        });
        match result {
            Ok(loaded) => {
                let n = loaded.set.rules.len();
                *self
                    .inner
                    .loaded
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
                lock(&self.inner.load_errors).clear();
                self.inner.loaded_ms.store(now_ms(), Ordering::Relaxed);
                tracing::info!(rules = n, dir = %self.inner.cfg.rules_dir.display(), "rules loaded");
                Ok(n)
            }
            Err(errors) => {
                *lock(&self.inner.load_errors) = errors.clone();
                Err(errors)
            }
        }
    }

    /// Reloads the rules directory now. On error the previous rules keep
    /// running and the errors are listed by [`Engine::view`].
    ///
    /// # Errors
    /// Every problem found, placed.
    pub async fn reload(&self) -> Result<usize, Vec<LoadError>> {
        self.reload_as("").await
    }

    /// [`Engine::reload`] asked for by `who` (a principal's description),
    /// which the history records.
    ///
    /// # Errors
    /// As for [`Engine::reload`].
    pub async fn reload_as(&self, who: &str) -> Result<usize, Vec<LoadError>> {
        let r = self.load_now();
        let mut st = self.inner.state.lock().await;
        let (event, detail) = match &r {
            Ok(n) => ("rules_loaded", format!("{n} rules")),
            Err(e) => (
                "rules_rejected",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        st.history.append(Record {
            at_ms: now_ms(),
            event: event.into(),
            rule: String::new(),
            group: String::new(),
            detail: audited(detail, who),
        });
        r
    }

    /// Reloads when the directory's files changed since the last load.
    async fn reload_if_changed(&self) {
        let now = fingerprint(&self.inner.cfg.rules_dir);
        if now != *lock(&self.inner.fingerprint) {
            match self.reload().await {
                Ok(n) => tracing::info!(rules = n, "rules reloaded"),
                Err(errors) => {
                    for e in &errors {
                        tracing::error!("rules reload refused, previous rules keep running: {e}");
                    }
                }
            }
        }
    }

    /// Reads this collector's recent events from `live` (sliding windows at
    /// the view's resolution) and evaluates rules as events arrive, within
    /// their `min_interval`; see [`crate::live`]. Without it, the engine
    /// reads the store only. A second call is ignored.
    pub fn attach_live(&self, live: Arc<dyn panorama_model::live::LiveView>) {
        let woken = self.inner.woken.clone();
        live.on_touch(Box::new(move || woken.notify_one()));
        let _ = self.inner.live.set(live);
    }

    /// Rule evaluations since the engine opened (each rule counts once per
    /// evaluation).
    pub fn evaluations(&self) -> u64 {
        self.inner.evaluations.load(Ordering::Relaxed)
    }

    /// Marks the rules whose series received events since the last call.
    async fn take_touched(&self, set: &RuleSet) {
        let Some(live) = self.inner.live.get() else {
            return;
        };
        let touched = live.take_touched();
        if touched.is_empty() {
            return;
        }
        let wanted = crate::live::touched_rules(set, &touched);
        self.inner.state.lock().await.wanted.extend(wanted);
    }

    /// How long (ms) until the first rule whose series moved may be
    /// evaluated: 0 for now, `None` when no rule waits.
    async fn next_wanted(&self, now_ms: i64) -> Option<i64> {
        let loaded = self.rules();
        self.take_touched(&loaded.set).await;
        let st = self.inner.state.lock().await;
        crate::live::next_wanted(&loaded.set, &st.wanted, &st.last_eval, now_ms)
    }

    /// Evaluates every rule whose time has come at `now_ms` and turns the
    /// verdicts into alert transitions and queued notices.
    pub async fn tick(&self, now_ms: i64) {
        let loaded = self.rules();
        let live = self.inner.live.get().map(|l| &**l);
        self.take_touched(&loaded.set).await;
        self.learn_graph(&loaded.set, now_ms).await;
        let mut any_error = None;
        for rule in &loaded.set.rules {
            let (due, known, needs_lookback) = {
                let mut st = self.inner.state.lock().await;
                let due = crate::live::due(
                    st.last_eval.get(&rule.name).copied(),
                    st.wanted.contains(&rule.name),
                    rule,
                    now_ms,
                );
                if due {
                    // Taken, whatever the outcome: a failing store is
                    // retried on the tick, not in a tight loop.
                    st.wanted.remove(&rule.name);
                }
                let mut known: Vec<Group> = st
                    .lifecycle
                    .alerts()
                    .filter(|a| a.key.rule == rule.name && a.state != State::Resolved)
                    .filter_map(|a| st.persisted.groups.get(&alert_id(&a.key)).cloned())
                    .collect();
                let remembered = st.persisted.remembered.get(&rule.name);
                if let Some(m) = remembered {
                    known.extend(m.values().map(|(g, _)| g.clone()));
                }
                (due, known, rule.when.uses_absent() && remembered.is_none())
            };
            if !due {
                continue;
            }
            let mut known = known;
            if needs_lookback {
                match eval::lookback_groups(
                    rule,
                    &*self.inner.store,
                    live,
                    now_ms,
                    self.inner.cfg.open_minute_lag_ms,
                )
                .await
                {
                    Ok(groups) => {
                        let mut st = self.inner.state.lock().await;
                        let m = st
                            .persisted
                            .remembered
                            .entry(rule.name.clone())
                            .or_default();
                        for g in groups {
                            m.insert(g.key.clone(), (g.clone(), now_ms));
                            known.push(g);
                        }
                    }
                    Err(e) => {
                        any_error = Some(e.to_string());
                        continue;
                    }
                }
            }
            let verdicts = match eval::evaluate(
                rule,
                &*self.inner.store,
                live,
                now_ms,
                self.inner.cfg.open_minute_lag_ms,
                &known,
            )
            .await
            {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "evaluation failed; alerts keep their state");
                    any_error = Some(e.to_string());
                    continue;
                }
            };
            let mut st = self.inner.state.lock().await;
            st.last_eval.insert(rule.name.clone(), now_ms);
            self.inner.evaluations.fetch_add(1, Ordering::Relaxed);
            if rule.when.uses_absent() {
                let m = st
                    .persisted
                    .remembered
                    .entry(rule.name.clone())
                    .or_default();
                for g in eval::seen(&verdicts) {
                    m.insert(g.key.clone(), (g.clone(), now_ms));
                }
                m.retain(|_, (_, seen)| now_ms - *seen <= rule.absent_lookback_ms);
            }
            for v in verdicts {
                let key = AlertKey {
                    rule: rule.name.clone(),
                    group: v.group.key.clone(),
                };
                let t = st
                    .lifecycle
                    .observe(&key, &rule.timing, v.observation, now_ms);
                if st.lifecycle.get(&key).is_some() {
                    st.persisted.groups.insert(alert_id(&key), v.group.clone());
                }
                if let Some(t) = t {
                    self.transition(&mut st, &loaded.set, rule, &v.group, &key, t, now_ms);
                }
            }
        }
        *lock(&self.inner.store_error) = any_error;
        let mut st = self.inner.state.lock().await;
        let st = &mut *st;
        self.release_held(st, &loaded.set, now_ms);
        self.escalate(st, &loaded.set, now_ms);
        for (receiver, notice) in st.persisted.dispatcher.due(now_ms) {
            let notice = self.incident_notice(st, &loaded.set, &receiver, notice);
            self.enqueue_notice(st, &loaded.set, &receiver, notice, now_ms);
        }
        self.release_digests(st, &loaded.set, now_ms);
        self.voice_step(st, &loaded.set, now_ms);
        let set = &loaded.set;
        // While the rules directory is refused (say, at a start with a typo
        // in it), the rules in force may be none at all: forgetting their
        // alerts would page again for incidents already paged.
        let refused = !lock(&self.inner.load_errors).is_empty();
        let exists = |r: &str| refused || set.rule(r).is_some();
        st.lifecycle.prune(
            now_ms,
            self.inner.cfg.resolved_keep_ms.max(86_400_000),
            exists,
        );
        let alive: BTreeSet<String> = st.lifecycle.alerts().map(|a| alert_id(&a.key)).collect();
        st.persisted.groups.retain(|k, _| alive.contains(k));
        st.persisted.dispatcher.prune(exists);
        st.persisted.held.retain(|k| alive.contains(k));
        self.sweep_incidents(st, now_ms);
        st.silences.prune(now_ms, KEEP_FINISHED_MS);
        // Every outbox write rewrites the file, so delivered and given-up
        // notices leave it after a week; the history keeps their record.
        if let Err(e) = st.outbox.prune(now_ms, KEEP_FINISHED_MS) {
            tracing::error!(error = %e, "pruning the outbox failed");
        }
        self.save(st);
    }

    fn save(&self, st: &StateFiles) {
        let sd = &self.inner.cfg.state_dir;
        if let Err(e) = st.lifecycle.save(&sd.join("alerts.json")) {
            tracing::error!(error = %e, "saving alert state failed");
        }
        let write = |name: &str, bytes: serde_json::Result<Vec<u8>>| {
            if let Err(e) = bytes
                .map_err(io::Error::other)
                .and_then(|b| panorama_durable::write_atomic(&sd.join(name), &b))
            {
                tracing::error!(error = %e, file = name, "saving engine state failed");
            }
        };
        write("engine.json", serde_json::to_vec(&st.persisted));
        write("silences.json", serde_json::to_vec(&st.silences));
        write("incidents.json", serde_json::to_vec(&st.incidents));
    }

    /// Escalates firing, unacknowledged, unsilenced alerts whose route has
    /// steps due: each step's receivers are told once, and the steps taken
    /// are persisted, so a restart neither repeats a step nor misses one
    /// that fell due while the process was down.
    fn escalate(&self, st: &mut StateFiles, set: &RuleSet, now_ms: i64) {
        let firing: Vec<crate::lifecycle::Alert> = st
            .lifecycle
            .alerts()
            .filter(|a| a.state == State::Firing && a.ack.is_none())
            .cloned()
            .collect();
        let live: BTreeSet<String> = firing.iter().map(|a| alert_id(&a.key)).collect();
        for a in firing {
            let id = alert_id(&a.key);
            if st.persisted.held.contains(&id) || st.persisted.suppressed.contains_key(&id) {
                continue;
            }
            let (Some(rule), Some(group), Some(fired)) = (
                set.rule(&a.key.rule),
                st.persisted.groups.get(&id).cloned(),
                a.fired_ms,
            ) else {
                continue;
            };
            let labels = group.labels(rule);
            if st.silences.silencing(&labels, now_ms).is_some() {
                continue;
            }
            // An incident escalates through its cause, in its own batch.
            let Some(batch) = self.escalation_batch(st, &id) else {
                continue;
            };
            let (step_facts, step_group) = if batch.is_empty() {
                (facts(rule), group.key.clone())
            } else {
                (
                    RuleFacts {
                        rule: batch,
                        ..facts(rule)
                    },
                    id.clone(),
                )
            };
            let Some(route) = set
                .routes_for(&labels)
                .into_iter()
                .find(|r| !r.escalate.is_empty())
            else {
                continue;
            };
            let done = st.persisted.escalated.get(&id).copied().unwrap_or(0);
            let mut taken = done;
            // Calls that reached nobody make the next step due now.
            let mut hurry = st.persisted.voice.hurry.remove(&id);
            for (i, step) in route.escalate.iter().enumerate().skip(done) {
                if now_ms - fired < step.after_ms && !std::mem::take(&mut hurry) {
                    break;
                }
                if let Some(n) = step.repeat_call {
                    for receiver in &step.receivers {
                        st.persisted
                            .voice
                            .step_repeat
                            .insert(format!("{receiver}\u{1f}{}", rule.name), n);
                    }
                }
                let na = self.notice_alert(rule, &group, &a, AlertStatus::Firing);
                let step_route = crate::rule::Route {
                    group_wait_ms: 0,
                    ..route.clone()
                };
                for receiver in &step.receivers {
                    st.persisted.dispatcher.record(
                        &step_route,
                        receiver,
                        &step_facts,
                        &step_group,
                        na.clone(),
                        now_ms,
                    );
                }
                st.history.append(Record {
                    at_ms: now_ms,
                    event: "escalated".into(),
                    rule: rule.name.clone(),
                    group: group.key.clone(),
                    detail: format!(
                        "step {} after {} min unacknowledged: {}",
                        i + 1,
                        step.after_ms / 60_000,
                        step.receivers.join(", ")
                    ),
                });
                taken = i + 1;
            }
            if taken != done {
                st.persisted.escalated.insert(id, taken);
            }
        }
        // Acknowledged or resolved alerts stop escalating; a new episode starts over.
        st.persisted.escalated.retain(|k, _| live.contains(k));
    }

    /// Turns a decided notice into outbox entries: one for a channel, one
    /// per delivering receiver for a rota (addressed to whoever is on duty
    /// when the notice was decided). Entries over a budget are folded.
    fn enqueue_notice(
        &self,
        st: &mut StateFiles,
        set: &RuleSet,
        receiver: &str,
        notice: Notice,
        now_ms: i64,
    ) {
        let Some(r) = set.receivers.get(receiver) else {
            tracing::error!(receiver, notice = %notice.id, "notice for a receiver that is no longer configured");
            st.history.append(Record {
                at_ms: now_ms,
                event: "gave_up".into(),
                rule: notice.rule.clone(),
                group: String::new(),
                detail: format!("{}: receiver `{receiver}` is not configured", notice.id),
            });
            return;
        };
        let deliveries: Vec<(String, Delivery)> = match &r.kind {
            ReceiverKind::Channel(_) => vec![(
                receiver.to_owned(),
                Delivery {
                    notice: notice.clone(),
                    receiver: receiver.to_owned(),
                    via: receiver.to_owned(),
                    to: None,
                    person: None,
                },
            )],
            ReceiverKind::Rota(rota) => {
                let (person, _) = rota.on_duty(notice.created_ms);
                rota.via
                    .iter()
                    .map(|via| {
                        let to = contact(set, &person, via);
                        (
                            format!("{receiver}/{via}"),
                            Delivery {
                                notice: notice.clone(),
                                receiver: receiver.to_owned(),
                                via: via.clone(),
                                to,
                                person: Some(person.clone()),
                            },
                        )
                    })
                    .collect()
            }
        };
        for (key, d) in deliveries {
            if self.voice_takes(st, set, &key, &d, now_ms) {
                continue;
            }
            let limits = limits(set, &d);
            if !within(&mut st.persisted.sent, &limits, now_ms) {
                let f = st
                    .persisted
                    .folded
                    .entry(key.clone())
                    .or_insert_with(|| Folded {
                        receiver: d.receiver.clone(),
                        via: d.via.clone(),
                        to: d.to.clone(),
                        person: d.person.clone(),
                        ..Folded::default()
                    });
                f.titles.push(notice.title());
                st.history.append(Record {
                    at_ms: now_ms,
                    event: "folded".into(),
                    rule: notice.rule.clone(),
                    group: String::new(),
                    detail: format!(
                        "{} to {key}: hourly budget spent; folded into the next digest",
                        notice.id
                    ),
                });
                continue;
            }
            spend(&mut st.persisted.sent, &limits, now_ms);
            let title = notice.title();
            let who = d
                .person
                .clone()
                .map(|p| format!(" ({p} on duty)"))
                .unwrap_or_default();
            match st.outbox.enqueue(&notice.id, &key, d, now_ms) {
                Ok(true) => st.history.append(Record {
                    at_ms: now_ms,
                    event: "notified".into(),
                    rule: notice.rule.clone(),
                    group: notice
                        .alerts
                        .iter()
                        .map(|a| a.series.clone() + &a.host)
                        .collect::<Vec<_>>()
                        .join(", "),
                    detail: format!("{} to {key}{who}: {title}", notice.id),
                }),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "outbox write failed; the notice is decided again next tick")
                }
            }
        }
    }

    /// Sends one digest per channel key whose budget has room again.
    fn release_digests(&self, st: &mut StateFiles, set: &RuleSet, now_ms: i64) {
        let keys: Vec<String> = st.persisted.folded.keys().cloned().collect();
        for key in keys {
            let Some(f) = st.persisted.folded.get(&key).cloned() else {
                continue;
            };
            if f.titles.is_empty() {
                continue;
            }
            let n = f.titles.len();
            let digest = Notice {
                id: format!("digest:{key}:{}", f.seq + 1),
                kind: crate::notify::NoticeKind::Firing,
                rule: format!("digest of {n} held-back notices"),
                severity: "warning".into(),
                condition: "hourly budget".into(),
                labels: Vec::new(),
                alerts: f
                    .titles
                    .iter()
                    .map(|t| NoticeAlert {
                        status: AlertStatus::Firing,
                        layer: String::new(),
                        service: String::new(),
                        series: t.clone(),
                        host: String::new(),
                        value: String::new(),
                        threshold: String::new(),
                        summary: t.clone(),
                        link: format!(
                            "{}/alerts",
                            self.inner.cfg.dashboard_url.trim_end_matches('/')
                        ),
                        since_ms: now_ms,
                        acked_by: None,
                    })
                    .collect(),
                created_ms: now_ms,
            };
            let d = Delivery {
                notice: digest.clone(),
                receiver: f.receiver.clone(),
                via: f.via.clone(),
                to: f.to.clone(),
                person: f.person.clone(),
            };
            let limits = limits(set, &d);
            if !within(&mut st.persisted.sent, &limits, now_ms) {
                continue;
            }
            spend(&mut st.persisted.sent, &limits, now_ms);
            match st.outbox.enqueue(&digest.id, &key, d, now_ms) {
                Ok(_) => {
                    st.history.append(Record {
                        at_ms: now_ms,
                        event: "notified".into(),
                        rule: digest.rule.clone(),
                        group: String::new(),
                        detail: format!("{} to {key}: digest of {n}", digest.id),
                    });
                    if let Some(f) = st.persisted.folded.get_mut(&key) {
                        f.titles.clear();
                        f.seq += 1;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "outbox write failed; the digest is tried again next tick")
                }
            }
        }
    }

    /// Alerts a silence held back that still fire once it ended are
    /// notified now, as if they had just fired.
    fn release_held(&self, st: &mut StateFiles, set: &RuleSet, now_ms: i64) {
        let held: Vec<String> = st.persisted.held.iter().cloned().collect();
        for id in held {
            let Some((rule_name, group_key)) = id.split_once('\u{1f}') else {
                st.persisted.held.remove(&id);
                continue;
            };
            let key = AlertKey {
                rule: rule_name.to_owned(),
                group: group_key.to_owned(),
            };
            let active = st
                .lifecycle
                .get(&key)
                .map(|a| a.state)
                .filter(|s| matches!(s, State::Firing | State::NoData));
            let (Some(state), Some(rule), Some(group)) = (
                active,
                set.rule(rule_name),
                st.persisted.groups.get(&id).cloned(),
            ) else {
                if active.is_none() {
                    st.persisted.held.remove(&id);
                }
                continue;
            };
            if st.silences.silencing(&group.labels(rule), now_ms).is_some()
                || self.cause_silence(st, set, &id, now_ms).is_some()
            {
                continue;
            }
            let t = if state == State::Firing {
                Transition::Fired
            } else {
                Transition::NoData
            };
            self.transition(st, set, rule, &group, &key, t, now_ms);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transition(
        &self,
        st: &mut StateFiles,
        set: &RuleSet,
        rule: &Rule,
        group: &Group,
        key: &AlertKey,
        t: Transition,
        now_ms: i64,
    ) {
        let Some(alert) = st.lifecycle.get(key).cloned() else {
            return;
        };
        let status = match t {
            Transition::Fired => AlertStatus::Firing,
            Transition::NoData => AlertStatus::NoData,
            Transition::Resolved => AlertStatus::Resolved,
        };
        let na = self.notice_alert(rule, group, &alert, status);
        st.history.append(Record {
            at_ms: now_ms,
            event: match t {
                Transition::Fired => "fired",
                Transition::NoData => "no_data",
                Transition::Resolved => "resolved",
            }
            .into(),
            rule: rule.name.clone(),
            group: group.key.clone(),
            detail: format!("value {} threshold {}", na.value, na.threshold),
        });
        let labels = group.labels(rule);
        if t == Transition::Resolved {
            st.persisted.held.remove(&alert_id(key));
            st.persisted.suppressed.remove(&alert_id(key));
            // Everyone who was told it fires (its routes, escalation steps)
            // is told it resolved; an incident's receivers when all of it has.
            st.persisted
                .dispatcher
                .resolve_everywhere(&rule.name, &group.key, na.clone(), now_ms);
            self.resolve_in_incident(st, key, na, now_ms);
            return;
        }
        self.join_incident(st, rule, group, key, &alert, &na, now_ms);
        if let Some(s) = st.silences.silencing(&labels, now_ms) {
            st.history.append(Record {
                at_ms: now_ms,
                event: "silenced".into(),
                rule: rule.name.clone(),
                group: group.key.clone(),
                detail: format!("by silence {} of {}: {}", s.id, s.author, s.reason),
            });
            st.persisted.held.insert(alert_id(key));
            return;
        }
        if let Some(s) = self.cause_silence(st, set, &alert_id(key), now_ms) {
            if st.persisted.held.insert(alert_id(key)) {
                st.history.append(Record {
                    at_ms: now_ms,
                    event: "silenced".into(),
                    rule: rule.name.clone(),
                    group: group.key.clone(),
                    detail: format!("by silence {s} on its incident's probable cause"),
                });
            }
            return;
        }
        st.persisted.held.remove(&alert_id(key));
        self.record_firing(st, set, rule, group, key, na, now_ms);
    }

    fn notice_alert(
        &self,
        rule: &Rule,
        group: &Group,
        alert: &crate::lifecycle::Alert,
        status: AlertStatus,
    ) -> NoticeAlert {
        let metric = rule.when.display_metric();
        let fmt = |v: Option<f64>| match (v, metric) {
            (Some(v), Some(m)) => m.format(v),
            (Some(v), None) => format!("{v}"),
            (None, _) => String::new(),
        };
        let (value, threshold) = if rule.when.uses_absent() && metric.is_none() {
            (
                "no data".to_owned(),
                format!("silent for {} min", rule.window_ms / 60_000),
            )
        } else {
            (fmt(alert.value), fmt(alert.threshold))
        };
        let link = self.link(group, alert.fired_ms.unwrap_or(alert.started_ms));
        let summary = rule.summary.render(|f| {
            match f {
                AlertField::Rule => &rule.name,
                AlertField::Layer => group.layer.as_str(),
                AlertField::Service => &group.service,
                AlertField::Series => &group.series,
                AlertField::Host => &group.host,
                AlertField::Value => &value,
                AlertField::Threshold => &threshold,
                AlertField::Severity => &rule.severity,
                AlertField::Link => &link,
            }
            .to_owned()
        });
        NoticeAlert {
            status,
            layer: group.layer.as_str().into(),
            service: group.service.clone(),
            series: group.series.clone(),
            host: group.host.clone(),
            summary,
            value,
            threshold,
            link,
            since_ms: alert.started_ms,
            acked_by: alert.ack.as_ref().map(|a| a.by.clone()),
        }
    }

    fn link(&self, g: &Group, at_ms: i64) -> String {
        let mut q = format!("layer={}", g.layer.as_str());
        for (k, v) in [
            ("service", &g.service),
            ("name", &g.series),
            ("host", &g.host),
        ] {
            if !v.is_empty() {
                q.push_str(&format!("&{k}={}", crate::notify::http::percent_encode(v)));
            }
        }
        format!(
            "{}/series?{q}&at={}",
            self.inner.cfg.dashboard_url.trim_end_matches('/'),
            panorama_model::minute_of(at_ms)
        )
    }

    /// Sends every notice whose attempt is due; failures are retried with
    /// exponential backoff (5 s doubling to 5 min), permanent refusals and
    /// the last attempt are given up on and recorded.
    pub async fn deliver(&self, now_ms: i64) {
        let due = self.inner.state.lock().await.outbox.due(now_ms);
        if due.is_empty() {
            return;
        }
        let loaded = self.rules();
        for e in due {
            let d = &e.payload;
            let result = match loaded.channels.get(&d.via) {
                Some(c) => c
                    .send(&d.notice, d.to.as_deref())
                    .await
                    .map_err(|err| (err.is_permanent(), err.to_string())),
                None => Err((
                    false,
                    format!("receiver `{}` is not configured (any more)", d.via),
                )),
            };
            let mut st = self.inner.state.lock().await;
            let st = &mut *st;
            let attempts = e.attempts + 1;
            let (event, detail, r) = match result {
                Ok(()) => (
                    "delivered",
                    format!("{} to {} after {attempts} attempt(s)", e.id, e.channel),
                    st.outbox.delivered(&e.id, &e.channel, now_ms),
                ),
                Err((permanent, why)) => {
                    let give_up = permanent || attempts >= self.inner.cfg.max_attempts;
                    let retry = (!give_up).then(|| {
                        let backoff = (5_000_i64 << (attempts - 1).min(6)).min(300_000);
                        now_ms + backoff
                    });
                    tracing::warn!(notice = %e.id, receiver = %e.channel, attempts, give_up, error = %why, "delivery failed");
                    (
                        if give_up { "gave_up" } else { "retrying" },
                        format!("{} to {}: attempt {attempts}: {why}", e.id, e.channel),
                        st.outbox.failed(&e.id, &e.channel, &why, retry, now_ms),
                    )
                }
            };
            if let Err(err) = r {
                tracing::error!(error = %err, "outbox write failed");
            }
            st.history.append(Record {
                at_ms: now_ms,
                event: event.into(),
                rule: e.payload.notice.rule.clone(),
                group: String::new(),
                detail,
            });
        }
    }

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
                loop {
                    tokio::select! {
                        _ = tick.tick() => engine.deliver(now_ms()).await,
                        _ = stop.changed() => return,
                    }
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
        loop {
            let until_debounced = async move {
                match debounced {
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
        }
    }

    /// Adds a silence.
    ///
    /// # Errors
    /// What is wrong with it.
    pub async fn add_silence(
        &self,
        req: SilenceRequest,
        now_ms: i64,
    ) -> Result<String, SilenceError> {
        self.add_silence_as(req, "", now_ms).await
    }

    /// [`Engine::add_silence`] by `who` (a principal's description), which
    /// the history records beside the author.
    ///
    /// # Errors
    /// As for [`Engine::add_silence`].
    pub async fn add_silence_as(
        &self,
        req: SilenceRequest,
        who: &str,
        now_ms: i64,
    ) -> Result<String, SilenceError> {
        let starts = req.starts_ms.unwrap_or(now_ms);
        let ends = match (req.ends_ms, &req.duration) {
            (Some(e), _) => e,
            (None, Some(d)) => {
                starts + crate::rule::expr::parse_duration(d).map_err(SilenceError::BadTime)?
            }
            (None, None) => {
                return Err(SilenceError::BadTime("give `ends_ms` or `duration`".into()));
            }
        };
        let mut st = self.inner.state.lock().await;
        let id = st
            .silences
            .add(req.matchers, starts, ends, &req.author, &req.reason)?;
        st.history.append(Record {
            at_ms: now_ms,
            event: "silence_added".into(),
            rule: String::new(),
            group: String::new(),
            detail: audited(format!("{id} by {}: {}", req.author, req.reason), who),
        });
        self.save(&st);
        Ok(id)
    }

    /// Ends a silence early; false when unknown or over.
    pub async fn expire_silence(&self, id: &str, by: &str, now_ms: i64) -> bool {
        self.expire_silence_as(id, by, "", now_ms).await
    }

    /// [`Engine::expire_silence`] by `who` (a principal's description).
    pub async fn expire_silence_as(&self, id: &str, by: &str, who: &str, now_ms: i64) -> bool {
        let mut st = self.inner.state.lock().await;
        let ok = st.silences.expire(id, by, now_ms);
        if ok {
            st.history.append(Record {
                at_ms: now_ms,
                event: "silence_expired".into(),
                rule: String::new(),
                group: String::new(),
                detail: audited(format!("{id} by {by}"), who),
            });
            self.save(&st);
        }
        ok
    }

    /// Acknowledges an active alert: it stays listed, is no longer repeated,
    /// and the acknowledgement is in the history. False when no such alert.
    pub async fn acknowledge(
        &self,
        rule: &str,
        group: &str,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> bool {
        self.acknowledge_as(rule, group, by, "", comment, now_ms)
            .await
    }

    /// [`Engine::acknowledge`] by `who` (a principal's description), which
    /// the history records beside the name the alert shows.
    pub async fn acknowledge_as(
        &self,
        rule: &str,
        group: &str,
        by: &str,
        who: &str,
        comment: &str,
        now_ms: i64,
    ) -> bool {
        let key = AlertKey {
            rule: rule.to_owned(),
            group: group.to_owned(),
        };
        let mut st = self.inner.state.lock().await;
        let ok = st.lifecycle.acknowledge(
            &key,
            Ack {
                by: by.to_owned(),
                at_ms: now_ms,
                comment: comment.to_owned(),
            },
        );
        if ok {
            st.persisted.dispatcher.acknowledge(rule, group, by);
            self.acknowledge_in_incident(&mut st, &key, by);
            st.history.append(Record {
                at_ms: now_ms,
                event: "acknowledged".into(),
                rule: rule.to_owned(),
                group: group.to_owned(),
                detail: audited(format!("by {by}: {comment}"), who),
            });
            self.save(&st);
        }
        ok
    }

    /// The alert history, newest first.
    ///
    /// # Errors
    /// The history file cannot be read.
    pub async fn history(
        &self,
        rule: Option<&str>,
        text: &str,
        limit: usize,
    ) -> io::Result<Vec<Record>> {
        self.inner
            .state
            .lock()
            .await
            .history
            .search(rule, text, limit)
    }

    /// Every notification in the outbox, newest first.
    pub async fn notifications(&self) -> Vec<NotificationView> {
        let st = self.inner.state.lock().await;
        st.outbox
            .entries()
            .iter()
            .rev()
            .map(NotificationView::of)
            .collect()
    }

    /// What `/api/v1/alerts` shows.
    pub async fn view(&self, now_ms: i64) -> AlertsView {
        let loaded = self.rules();
        let st = self.inner.state.lock().await;
        let mut v = AlertsView {
            now_ms,
            firing: Vec::new(),
            no_data: Vec::new(),
            pending: Vec::new(),
            resolved: Vec::new(),
            silences: st.silences.list().cloned().collect(),
            rules: loaded
                .set
                .rules
                .iter()
                .map(|r| RuleView {
                    name: r.name.clone(),
                    layer: r.layer.as_str().into(),
                    severity: r.severity.clone(),
                    when: r.when_text.clone(),
                    at: r.at.to_string(),
                })
                .collect(),
            rule_errors: lock(&self.inner.load_errors)
                .iter()
                .map(|e| ErrorView {
                    at: e.at.to_string(),
                    message: e.message.clone(),
                })
                .collect(),
            rules_loaded_ms: self.inner.loaded_ms.load(Ordering::Relaxed),
            store_error: lock(&self.inner.store_error).clone(),
            notifications: Vec::new(),
            on_duty: loaded
                .set
                .receivers
                .values()
                .filter_map(|r| match &r.kind {
                    ReceiverKind::Rota(rota) => {
                        let (person, until_ms) = rota.on_duty(now_ms);
                        Some(OnDutyView {
                            receiver: r.name.clone(),
                            person,
                            until_ms,
                        })
                    }
                    ReceiverKind::Channel(_) => None,
                })
                .collect(),
            budgets: Vec::new(),
        };
        let mut budgets: BTreeMap<String, u32> = BTreeMap::new();
        for r in loaded.set.receivers.values() {
            if let Some(n) = r.budget_per_hour {
                budgets.insert(format!("receiver:{}", r.name), n);
            }
        }
        for p in loaded.set.people.values() {
            if let Some(n) = p.sms_per_hour {
                budgets.insert(format!("person:{}", p.name), n);
            }
        }
        v.budgets = budgets
            .into_iter()
            .map(|(key, limit)| {
                let used = st
                    .persisted
                    .sent
                    .get(&key)
                    .map_or(0, |t| t.iter().filter(|t| now_ms - **t < HOUR_MS).count());
                let name = key.split_once(':').map_or("", |(_, n)| n);
                let folded = st
                    .persisted
                    .folded
                    .values()
                    .filter(|f| {
                        f.receiver == name || f.via == name || f.person.as_deref() == Some(name)
                    })
                    .map(|f| f.titles.len())
                    .sum();
                BudgetView {
                    key,
                    used,
                    limit,
                    folded,
                }
            })
            .collect();
        for a in st.lifecycle.alerts() {
            let Some(group) = st.persisted.groups.get(&alert_id(&a.key)) else {
                continue;
            };
            if a.state == State::Resolved
                && a.resolved_ms
                    .is_some_and(|t| now_ms - t > self.inner.cfg.resolved_keep_ms)
            {
                continue;
            }
            let rule = loaded.set.rule(&a.key.rule);
            let (severity, na) = match rule {
                Some(r) => (
                    r.severity.clone(),
                    Some(self.notice_alert(r, group, a, AlertStatus::Firing)),
                ),
                None => (String::new(), None),
            };
            let labels = rule.map(|r| group.labels(r)).unwrap_or_default();
            let view = AlertView {
                rule: a.key.rule.clone(),
                group: a.key.group.clone(),
                state: a.state,
                severity,
                layer: group.layer.as_str().into(),
                service: group.service.clone(),
                series: group.series.clone(),
                host: group.host.clone(),
                value: na.as_ref().map(|n| n.value.clone()).unwrap_or_default(),
                threshold: na.as_ref().map(|n| n.threshold.clone()).unwrap_or_default(),
                summary: na.as_ref().map(|n| n.summary.clone()).unwrap_or_default(),
                link: na.map(|n| n.link).unwrap_or_default(),
                since_ms: a.started_ms,
                fired_ms: a.fired_ms,
                resolved_ms: a.resolved_ms,
                ack: a.ack.clone(),
                silenced_by: st.silences.silencing(&labels, now_ms).map(|s| s.id.clone()),
            };
            match a.state {
                State::Firing => v.firing.push(view),
                State::NoData => v.no_data.push(view),
                State::Pending => v.pending.push(view),
                State::Resolved => v.resolved.push(view),
            }
        }
        v.resolved.sort_by_key(|a| std::cmp::Reverse(a.resolved_ms));
        v.notifications = st
            .outbox
            .entries()
            .iter()
            .rev()
            .filter(|e| !matches!(e.status, Status::Delivered { .. }))
            .take(50)
            .map(NotificationView::of)
            .collect();
        v
    }
}

impl NotificationView {
    fn of(e: &crate::outbox::Entry<Delivery>) -> NotificationView {
        NotificationView {
            id: e.id.clone(),
            receiver: e.channel.clone(),
            title: e.payload.notice.title(),
            created_ms: e.created_ms,
            attempts: e.attempts,
            status: e.status.clone(),
            last_error: e.last_error.clone(),
        }
    }
}

fn facts(rule: &Rule) -> RuleFacts {
    RuleFacts {
        rule: rule.name.clone(),
        severity: rule.severity.clone(),
        condition: rule.when_text.clone(),
        labels: rule
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// How the person on duty is reached through a channel receiver: mail
/// gets the email, SMS and chat robots the phone, a webhook no one.
fn contact(set: &RuleSet, person: &str, via: &str) -> Option<Vec<String>> {
    let p = set.people.get(person)?;
    let kind = match set.receivers.get(via).map(|r| &r.kind) {
        Some(ReceiverKind::Channel(c)) => c.kind(),
        _ => return None,
    };
    match kind {
        "mail" | "mailbox" => p.email.clone().map(|e| vec![e]),
        "webhook" => None,
        _ => p.phone.clone().map(|n| vec![n]),
    }
}

const HOUR_MS: i64 = 3_600_000;

/// How long expired silences and finished notifications stay listed.
const KEEP_FINISHED_MS: i64 = 7 * 86_400_000;

/// The hourly budgets a delivery spends: its receiver's, the delivering
/// receiver's, and for SMS the person's.
fn limits(set: &RuleSet, d: &Delivery) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for name in [&d.receiver, &d.via] {
        if let Some(n) = set.receivers.get(name).and_then(|r| r.budget_per_hour) {
            let k = format!("receiver:{name}");
            if !out.iter().any(|(x, _)| *x == k) {
                out.push((k, n));
            }
        }
    }
    let is_sms = matches!(
        set.receivers.get(&d.via).map(|r| &r.kind),
        Some(ReceiverKind::Channel(c)) if c.kind() == "sms"
    );
    if is_sms
        && let Some(p) = d.person.as_ref().and_then(|p| set.people.get(p))
        && let Some(n) = p.sms_per_hour
    {
        out.push((format!("person:{}", p.name), n));
    }
    out
}

fn within(sent: &mut BTreeMap<String, Vec<i64>>, limits: &[(String, u32)], now_ms: i64) -> bool {
    limits.iter().all(|(k, n)| {
        let v = sent.entry(k.clone()).or_default();
        v.retain(|t| now_ms - t < HOUR_MS);
        v.len() < *n as usize
    })
}

fn spend(sent: &mut BTreeMap<String, Vec<i64>>, limits: &[(String, u32)], now_ms: i64) {
    for (k, _) in limits {
        sent.entry(k.clone()).or_default().push(now_ms);
    }
}

fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.modified().ok(), m.len()))
        })
        .collect();
    out.sort();
    out
}
