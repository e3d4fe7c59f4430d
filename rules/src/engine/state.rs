//! The engine's state files: what it would be wrong to forget across a
//! restart (alert lifecycles, silences, the outbox, the history, incidents,
//! and the decisions in `engine.json`), read at open and rewritten
//! atomically after every change.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};

use panorama_store::Store;
use serde::{Deserialize, Serialize};

use crate::dispatch::Dispatcher;
use crate::eval::Group;
use crate::history::History;
use crate::lifecycle::Lifecycle;
use crate::outbox::Outbox;
use crate::rule::RuleSet;
use crate::silence::Silences;

use super::{Delivery, Engine, EngineConfig, EngineError, Inner, Loaded};

/// Notices held back by a spent budget, folded into one digest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Folded {
    pub(super) receiver: String,
    pub(super) via: String,
    pub(super) to: Option<Vec<String>>,
    pub(super) person: Option<String>,
    pub(super) titles: Vec<String>,
    pub(super) seq: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Persisted {
    pub(super) dispatcher: Dispatcher,
    /// Alert key (`rule\x1fgroup`) → the group it stands for.
    pub(super) groups: BTreeMap<String, Group>,
    /// Rule → groups an `absent` rule remembers, with when each was last seen.
    pub(super) remembered: BTreeMap<String, BTreeMap<String, (Group, i64)>>,
    /// Alerts whose firing a silence held back: notified when the silence
    /// ends while they still fire.
    #[serde(default)]
    pub(super) held: BTreeSet<String>,
    /// Alert id → escalation steps already taken.
    #[serde(default)]
    pub(super) escalated: BTreeMap<String, usize>,
    /// Budget key (`receiver:NAME`, `person:NAME`) → sends in the last hour.
    #[serde(default)]
    pub(super) sent: BTreeMap<String, Vec<i64>>,
    /// Outbox channel key → notices folded while its budget was spent.
    #[serde(default)]
    pub(super) folded: BTreeMap<String, Folded>,
    /// Alert id → the alert that suppresses it.
    #[serde(default)]
    pub(super) suppressed: BTreeMap<String, String>,
    /// Voice call plans (see `engine/voice.rs`).
    #[serde(default)]
    pub(super) voice: super::voice::Calls,
}

pub(super) struct StateFiles {
    pub(super) lifecycle: Lifecycle,
    pub(super) silences: Silences,
    pub(super) persisted: Persisted,
    pub(super) outbox: Outbox<Delivery>,
    pub(super) history: History,
    pub(super) last_eval: BTreeMap<String, i64>,
    /// Rules whose series received events since their last evaluation.
    pub(super) wanted: BTreeSet<String>,
    pub(super) incidents: crate::incident::Incidents,
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
                queued: Arc::new(tokio::sync::Notify::new()),
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

    pub(super) fn save(&self, st: &StateFiles) {
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
}
