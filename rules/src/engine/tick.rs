//! One evaluation tick: which rules are due, their verdicts turned into
//! lifecycle transitions, and what a transition decides (history, silence,
//! incident, routing); then the timers that run on every tick.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use panorama_model::DAY_MS;

use crate::eval::{self, Group};
use crate::history::{Event, Record};
use crate::lifecycle::{AlertKey, State, Transition};
use crate::notify::AlertStatus;
use crate::rule::{Rule, RuleSet};

use super::{Engine, KEEP_FINISHED_MS, StateFiles, alert_id, lock};

/// What the decisions of one tick share: the engine's state, the rules in
/// force and the tick's clock.
pub(super) struct Tick<'a> {
    pub(super) st: &'a mut StateFiles,
    pub(super) set: &'a RuleSet,
    pub(super) now_ms: i64,
}

/// The alert a decision is about.
#[derive(Clone, Copy)]
pub(super) struct Subject<'a> {
    pub(super) rule: &'a Rule,
    pub(super) group: &'a Group,
    pub(super) key: &'a AlertKey,
}

impl Engine {
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
    pub(super) async fn take_touched(&self, set: &RuleSet) {
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
    pub(super) async fn next_wanted(&self, now_ms: i64) -> Option<i64> {
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
                    .observe(&key, &timing_of(rule, &v), v.observation, now_ms);
                if st.lifecycle.get(&key).is_some() {
                    st.persisted.groups.insert(alert_id(&key), v.group.clone());
                }
                if let Some(t) = t {
                    let mut cx = Tick {
                        st: &mut st,
                        set: &loaded.set,
                        now_ms,
                    };
                    let a = Subject {
                        rule,
                        group: &v.group,
                        key: &key,
                    };
                    self.transition(&mut cx, a, t);
                }
            }
        }
        *lock(&self.inner.store_error) = any_error;
        let mut st = self.inner.state.lock().await;
        let st = &mut *st;
        self.release_held(&mut Tick {
            st,
            set: &loaded.set,
            now_ms,
        });
        self.escalate(st, &loaded.set, now_ms);
        let due = st.persisted.dispatcher.due(now_ms);
        let queued = !due.is_empty();
        for (receiver, notice) in due {
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
        st.lifecycle
            .prune(now_ms, self.inner.cfg.resolved_keep_ms.max(DAY_MS), exists);
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
        if queued {
            // Saved first: delivery reads the outbox this tick wrote.
            self.inner.queued.notify_one();
        }
    }

    /// When the dispatcher's next batch is due, as an instant to wake at.
    pub(super) async fn next_dispatch(&self, now_ms: i64) -> Option<tokio::time::Instant> {
        let at = self
            .inner
            .state
            .lock()
            .await
            .persisted
            .dispatcher
            .next_due()?;
        Some(
            tokio::time::Instant::now()
                + std::time::Duration::from_millis((at - now_ms).max(1) as u64),
        )
    }

    /// Alerts a silence held back that still fire once it ended are
    /// notified now, as if they had just fired.
    pub(super) fn release_held(&self, cx: &mut Tick<'_>) {
        let held: Vec<String> = cx.st.persisted.held.iter().cloned().collect();
        for id in held {
            let Some((rule_name, group_key)) = id.split_once('\u{1f}') else {
                cx.st.persisted.held.remove(&id);
                continue;
            };
            let key = AlertKey {
                rule: rule_name.to_owned(),
                group: group_key.to_owned(),
            };
            let active = cx
                .st
                .lifecycle
                .get(&key)
                .map(|a| a.state)
                .filter(|s| matches!(s, State::Firing | State::NoData));
            let (Some(state), Some(rule), Some(group)) = (
                active,
                cx.set.rule(rule_name),
                cx.st.persisted.groups.get(&id).cloned(),
            ) else {
                if active.is_none() {
                    cx.st.persisted.held.remove(&id);
                }
                continue;
            };
            if cx
                .st
                .silences
                .silencing(&group.labels(rule), cx.now_ms)
                .is_some()
                || self.cause_silence(cx.st, cx.set, &id, cx.now_ms).is_some()
            {
                continue;
            }
            let t = if state == State::Firing {
                Transition::Fired
            } else {
                Transition::NoData
            };
            let a = Subject {
                rule,
                group: &group,
                key: &key,
            };
            self.transition(cx, a, t);
        }
    }

    /// Records a lifecycle transition and decides what it means: resolved
    /// alerts are resolved everywhere they were told; firing ones join
    /// their incident, are held by a silence, or are routed.
    pub(super) fn transition(&self, cx: &mut Tick<'_>, a: Subject<'_>, t: Transition) {
        let Subject { rule, group, key } = a;
        let Some(alert) = cx.st.lifecycle.get(key).cloned() else {
            return;
        };
        let status = match t {
            Transition::Fired => AlertStatus::Firing,
            Transition::NoData => AlertStatus::NoData,
            Transition::Resolved => AlertStatus::Resolved,
        };
        let na = self.notice_alert(rule, group, &alert, status);
        cx.st.history.append(Record {
            at_ms: cx.now_ms,
            event: match t {
                Transition::Fired => Event::Fired,
                Transition::NoData => Event::NoData,
                Transition::Resolved => Event::Resolved,
            },
            rule: rule.name.clone(),
            group: group.key.clone(),
            detail: format!("value {} threshold {}", na.value, na.threshold),
        });
        let labels = group.labels(rule);
        if t == Transition::Resolved {
            cx.st.persisted.held.remove(&alert_id(key));
            cx.st.persisted.suppressed.remove(&alert_id(key));
            // Everyone who was told it fires (its routes, escalation steps)
            // is told it resolved; an incident's receivers when all of it has.
            cx.st.persisted.dispatcher.resolve_everywhere(
                &rule.name,
                &group.key,
                na.clone(),
                cx.now_ms,
            );
            self.resolve_in_incident(cx.st, key, na, cx.now_ms);
            return;
        }
        self.join_incident(cx, a, &alert, &na);
        if let Some(s) = cx.st.silences.silencing(&labels, cx.now_ms) {
            cx.st.history.append(Record {
                at_ms: cx.now_ms,
                event: Event::Silenced,
                rule: rule.name.clone(),
                group: group.key.clone(),
                detail: format!("by silence {} of {}: {}", s.id, s.author, s.reason),
            });
            cx.st.persisted.held.insert(alert_id(key));
            return;
        }
        if let Some(s) = self.cause_silence(cx.st, cx.set, &alert_id(key), cx.now_ms) {
            if cx.st.persisted.held.insert(alert_id(key)) {
                cx.st.history.append(Record {
                    at_ms: cx.now_ms,
                    event: Event::Silenced,
                    rule: rule.name.clone(),
                    group: group.key.clone(),
                    detail: format!("by silence {s} on its incident's probable cause"),
                });
            }
            return;
        }
        cx.st.persisted.held.remove(&alert_id(key));
        self.record_firing(cx, a, na);
    }
}

/// The rule's timings for this verdict: a recovery seen through a partial
/// window (see [`eval::Verdict::partial`]) must hold a little longer.
fn timing_of(rule: &crate::rule::Rule, v: &eval::Verdict) -> crate::lifecycle::Timing {
    let mut t = rule.timing;
    if v.partial {
        t.recover_for_ms = t.recover_for_ms.max(eval::PARTIAL_RECOVER_MS);
    }
    t
}
