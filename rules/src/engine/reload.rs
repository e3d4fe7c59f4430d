//! Loading the rules directory: the rule set and its channel clients are
//! swapped in whole, or not at all (a refused directory leaves the
//! previous rules running and its errors listed), and a cheap fingerprint
//! of the directory tells when to look again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use crate::history::{Event, Record};
use crate::notify::Notifier;
use crate::rule::{LoadError, ReceiverKind, RuleSet, load_dir};

use super::{Engine, audited, lock, now_ms};

pub(super) struct Loaded {
    pub(super) set: Arc<RuleSet>,
    pub(super) channels: BTreeMap<String, Arc<dyn Notifier>>,
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

impl Engine {
    pub(super) fn rules(&self) -> Arc<Loaded> {
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

    pub(super) fn load_now(&self) -> Result<usize, Vec<LoadError>> {
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
            Ok(n) => (Event::RulesLoaded, format!("{n} rules")),
            Err(e) => (
                Event::RulesRejected,
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        st.history.append(Record {
            at_ms: now_ms(),
            event,
            rule: String::new(),
            group: String::new(),
            detail: audited(detail, who),
        });
        r
    }

    /// Reloads when the directory's files changed since the last load.
    pub(super) async fn reload_if_changed(&self) {
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
}
