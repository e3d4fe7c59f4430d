//! The alert lifecycle: what one rule's verdicts on one group amount to
//! over time, and which of those moments deserve a notification.
//!
//! ```text
//!            breach                 breach held `for`
//! inactive ─────────► pending ─────────────────────► firing ──► (notify: fired)
//!    ▲                  │ ok                          │  ▲
//!    └──────────────────┘                  no data    │  │ breach
//!                                       ┌─────────────┘  │
//!                                       ▼                │
//!                                    no data ────────────┘ (notify: no data)
//! firing / no data ── ok held max(keep_firing_for, recover_for, flap hold) ──► resolved (notify: resolved)
//! ```
//!
//! Missing data is a state of its own and never counts as recovery. An
//! alert that keeps firing and resolving (flapping) is held firing longer
//! before it may resolve, so the on-duty engineer gets one page instead of
//! ten; its history of firings is part of the persisted state, so a restart
//! does not forget that it flaps. Everything here is pure: times come in as
//! arguments, which is what makes the rules testable without waiting.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What an evaluation of a rule's condition said about one group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Observation {
    /// The condition holds.
    Breach {
        /// The value that breached.
        value: f64,
        /// The threshold it crossed.
        threshold: f64,
    },
    /// The condition does not hold, and the recovery condition (if the rule
    /// has one) does.
    Ok {
        /// The value, if there was one.
        value: Option<f64>,
    },
    /// Neither breaching nor recovered (a rule with an explicit recovery
    /// condition, between the two thresholds): a firing alert stays firing.
    Between {
        /// The value.
        value: f64,
    },
    /// No data in the window.
    NoData,
}

/// Where an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// Firing: notified.
    Firing,
    /// Was firing, then the data stopped. Not a recovery.
    NoData,
    /// Recovered (kept for history until pruned).
    Resolved,
}

/// The timings of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a breach must hold before firing.
    pub for_ms: i64,
    /// How long a firing alert stays firing after the breach ends.
    pub keep_firing_for_ms: i64,
    /// How long the recovery must hold (the rule's `recover_for`).
    pub recover_for_ms: i64,
    /// Firings within this window that make an alert count as flapping.
    pub flap_window_ms: i64,
    /// How many firings within the window is flapping.
    pub flap_max: usize,
    /// How long a flapping alert must stay recovered before it resolves.
    pub flap_hold_ms: i64,
    /// How long a firing alert's data must stay away before it is "no
    /// data": a collector restarting or a store catching up leaves a gap of
    /// seconds that is not news.
    pub no_data_for_ms: i64,
}

/// The defaults of a rule that sets none of its timings.
///
/// Flap damping is for an alert that cannot make up its mind, not for a
/// service that fails again: 4 firings within 5 minutes means it fired,
/// resolved and fired again within 75 s each time, which no real incident
/// seen through a window of a minute or more does (an episode lasts at
/// least the window). Such an alert is held firing until it has stayed
/// recovered for 15 minutes: one page instead of ten. Separate incidents a
/// few minutes apart are separate pages. (Until this release the window
/// was an hour, so the fifth of twelve incidents a few minutes apart and
/// every one after it were folded into one held firing.)
impl Default for Timing {
    fn default() -> Timing {
        Timing {
            for_ms: 0,
            keep_firing_for_ms: 0,
            recover_for_ms: 0,
            flap_window_ms: 300_000,
            flap_max: 4,
            flap_hold_ms: 900_000,
            no_data_for_ms: 60_000,
        }
    }
}

/// Which alert: a rule and one of its groups (a series, host or service).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    /// The rule's name.
    pub rule: String,
    /// The group's key.
    pub group: String,
}

/// Who acknowledged an alert, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Who.
    pub by: String,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Why, or what they are doing about it.
    pub comment: String,
}

/// One alert's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Which.
    pub key: AlertKey,
    /// Where it is.
    pub state: State,
    /// When this episode started (first breach), Unix ms.
    pub started_ms: i64,
    /// When it fired, if it did.
    pub fired_ms: Option<i64>,
    /// When it resolved, if it did.
    pub resolved_ms: Option<i64>,
    /// When the recovery began (first non-breaching observation while firing).
    pub recovering_since_ms: Option<i64>,
    /// When the data went away while firing (not yet for long enough to
    /// be "no data").
    #[serde(default)]
    pub missing_since_ms: Option<i64>,
    /// The latest value seen.
    pub value: Option<f64>,
    /// The threshold of the latest breach.
    pub threshold: Option<f64>,
    /// Times this alert fired, within the flap window; persisted so flap
    /// damping survives restarts.
    pub firings: Vec<i64>,
    /// Acknowledgement of the current episode.
    pub ack: Option<Ack>,
}

/// A moment that deserves a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Started firing.
    Fired,
    /// Firing alert lost its data.
    NoData,
    /// Recovered.
    Resolved,
}

/// Every alert of every rule.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Lifecycle {
    alerts: BTreeMap<AlertKey, Alert>,
}

/// The persisted form: JSON object keys must be strings, so a list.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    alerts: Vec<Alert>,
}

const VERSION: u32 = 1;

impl Lifecycle {
    /// No alerts.
    pub fn new() -> Lifecycle {
        Lifecycle {
            alerts: BTreeMap::new(),
        }
    }

    /// Feeds one observation; returns the transition to notify about, if any.
    pub fn observe(
        &mut self,
        key: &AlertKey,
        timing: &Timing,
        obs: Observation,
        now_ms: i64,
    ) -> Option<Transition> {
        let (value, threshold) = match obs {
            Observation::Breach { value, threshold } => (Some(value), Some(threshold)),
            Observation::Ok { value } => (value, None),
            Observation::Between { value } => (Some(value), None),
            Observation::NoData => (None, None),
        };
        let breach = matches!(obs, Observation::Breach { .. });
        let active = self
            .alerts
            .get(key)
            .filter(|a| a.state != State::Resolved)
            .cloned();
        let Some(mut a) = active else {
            if !breach {
                return None;
            }
            // A new episode; a resolved one of the same key is replaced, but
            // its firing history is kept for flap damping.
            let firings = self
                .alerts
                .get(key)
                .map(|a| a.firings.clone())
                .unwrap_or_default();
            let mut a = Alert {
                key: key.clone(),
                state: State::Pending,
                started_ms: now_ms,
                fired_ms: None,
                resolved_ms: None,
                recovering_since_ms: None,
                missing_since_ms: None,
                value,
                threshold,
                firings,
                ack: None,
            };
            let t = Self::advance_pending(&mut a, timing, now_ms);
            self.alerts.insert(key.clone(), a);
            return t;
        };
        if value.is_some() {
            a.value = value;
        }
        if !matches!(obs, Observation::NoData) {
            a.missing_since_ms = None;
        }
        if threshold.is_some() {
            a.threshold = threshold;
        }
        let transition = match (a.state, obs) {
            (State::Pending, Observation::Breach { .. }) => {
                Self::advance_pending(&mut a, timing, now_ms)
            }
            (State::Pending, Observation::Ok { .. } | Observation::Between { .. }) => {
                // Never fired: forget quietly.
                self.alerts.remove(key);
                return None;
            }
            (State::Pending, Observation::NoData) => None,
            (State::Firing | State::NoData, Observation::Breach { .. }) => {
                a.recovering_since_ms = None;
                a.state = State::Firing;
                None
            }
            (State::Firing | State::NoData, Observation::Between { .. }) => {
                a.recovering_since_ms = None;
                None
            }
            (State::Firing, Observation::NoData) => {
                a.recovering_since_ms = None;
                let since = *a.missing_since_ms.get_or_insert(now_ms);
                if now_ms - since >= timing.no_data_for_ms {
                    a.state = State::NoData;
                    Some(Transition::NoData)
                } else {
                    None
                }
            }
            (State::NoData, Observation::NoData) => None,
            (State::Firing | State::NoData, Observation::Ok { .. }) => {
                let since = *a.recovering_since_ms.get_or_insert(now_ms);
                if now_ms - since >= Self::hold(&a, timing, now_ms) {
                    a.state = State::Resolved;
                    a.resolved_ms = Some(now_ms);
                    a.recovering_since_ms = None;
                    a.ack = None;
                    Some(Transition::Resolved)
                } else {
                    None
                }
            }
            (State::Resolved, _) => None,
        };
        self.alerts.insert(key.clone(), a);
        transition
    }

    fn advance_pending(a: &mut Alert, timing: &Timing, now_ms: i64) -> Option<Transition> {
        if now_ms - a.started_ms < timing.for_ms {
            return None;
        }
        a.state = State::Firing;
        a.fired_ms = Some(now_ms);
        a.firings.retain(|t| now_ms - t < timing.flap_window_ms);
        a.firings.push(now_ms);
        Some(Transition::Fired)
    }

    /// Firings within the flap window before `at_ms`, that one included.
    fn firings_before(a: &Alert, timing: &Timing, at_ms: i64) -> usize {
        a.firings
            .iter()
            .filter(|t| **t <= at_ms && at_ms - **t < timing.flap_window_ms)
            .count()
    }

    /// How long a recovery must hold before this alert resolves. Whether
    /// the episode flaps is decided at its firing and holds for the whole
    /// episode: counted at "now", the firings would age out of the window
    /// while the alert is held (a held alert does not fire again), and an
    /// alert flipping every 30 s would resolve 2 minutes later and page
    /// again, 14 pages in 20 minutes instead of 4.
    fn hold(a: &Alert, timing: &Timing, now_ms: i64) -> i64 {
        let recent = Self::firings_before(a, timing, a.fired_ms.unwrap_or(now_ms));
        let flap = if recent >= timing.flap_max {
            timing.flap_hold_ms
        } else {
            0
        };
        timing
            .keep_firing_for_ms
            .max(timing.recover_for_ms)
            .max(flap)
    }

    /// True when the alert fired at least `flap_max` times within the
    /// window: before its current firing while it is active (so it is held
    /// as flapping until it resolves), before `now_ms` once resolved.
    pub fn is_flapping(&self, key: &AlertKey, timing: &Timing, now_ms: i64) -> bool {
        self.alerts.get(key).is_some_and(|a| {
            let at = match a.state {
                State::Resolved => now_ms,
                _ => a.fired_ms.unwrap_or(now_ms),
            };
            Self::firings_before(a, timing, at) >= timing.flap_max
        })
    }

    /// Acknowledges a firing (or no-data) alert; false if there is none.
    pub fn acknowledge(&mut self, key: &AlertKey, ack: Ack) -> bool {
        match self.alerts.get_mut(key) {
            Some(a) if matches!(a.state, State::Firing | State::NoData) => {
                a.ack = Some(ack);
                true
            }
            _ => false,
        }
    }

    /// One alert.
    pub fn get(&self, key: &AlertKey) -> Option<&Alert> {
        self.alerts.get(key)
    }

    /// Every alert, by key.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// Drops resolved alerts older than `keep_ms` (their history lives in
    /// the alert history, not here) and alerts of rules that no longer exist.
    pub fn prune(&mut self, now_ms: i64, keep_ms: i64, rule_exists: impl Fn(&str) -> bool) {
        self.alerts.retain(|k, a| {
            rule_exists(&k.rule)
                && !(a.state == State::Resolved
                    && a.resolved_ms.is_some_and(|t| now_ms - t > keep_ms))
        });
    }

    /// Writes the state atomically (tmp, fsync, rename, fsync dir).
    ///
    /// # Errors
    /// The file could not be written.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let saved = Saved {
            version: VERSION,
            alerts: self.alerts.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec(&saved).map_err(io::Error::other)?;
        panorama_durable::write_atomic(path, &bytes)
    }

    /// Reads the state saved by [`Lifecycle::save`]; none yet is empty.
    ///
    /// # Errors
    /// Unreadable, corrupt, or from a newer release: refusing beats paging
    /// everyone again for alerts that already fired.
    pub fn load(path: &Path) -> io::Result<Lifecycle> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                if saved.version > VERSION {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: alert state version {} is newer than this release",
                            path.display(),
                            saved.version
                        ),
                    ));
                }
                Ok(Lifecycle {
                    alerts: saved
                        .alerts
                        .into_iter()
                        .map(|a| (a.key.clone(), a))
                        .collect(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Lifecycle::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn key() -> AlertKey {
        AlertKey {
            rule: "login errors".into(),
            group: "url/login/GET /api/login".into(),
        }
    }

    fn breach() -> Observation {
        Observation::Breach {
            value: 0.2,
            threshold: 0.05,
        }
    }

    fn ok() -> Observation {
        Observation::Ok { value: Some(0.01) }
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let t = Timing {
            for_ms: 2 * MIN,
            ..Timing::default()
        };
        let mut l = Lifecycle::new();
        assert_eq!(l.observe(&key(), &t, breach(), 0), None);
        assert_eq!(l.get(&key()).unwrap().state, State::Pending);
        assert_eq!(l.observe(&key(), &t, breach(), MIN), None);
        assert_eq!(
            l.observe(&key(), &t, breach(), 2 * MIN),
            Some(Transition::Fired)
        );
        assert_eq!(l.observe(&key(), &t, breach(), 3 * MIN), None, "fires once");
        assert_eq!(
            l.observe(&key(), &t, ok(), 4 * MIN),
            Some(Transition::Resolved)
        );
        assert_eq!(l.get(&key()).unwrap().state, State::Resolved);
    }

    #[test]
    fn a_short_breach_never_fires_nor_resolves() {
        let t = Timing {
            for_ms: 5 * MIN,
            ..Timing::default()
        };
        let mut l = Lifecycle::new();
        assert_eq!(l.observe(&key(), &t, breach(), 0), None);
        assert_eq!(l.observe(&key(), &t, ok(), MIN), None);
        assert!(l.get(&key()).is_none(), "forgotten quietly");
    }

    #[test]
    fn missing_data_is_not_recovery() {
        let t = Timing::default();
        let mut l = Lifecycle::new();
        assert_eq!(l.observe(&key(), &t, breach(), 0), Some(Transition::Fired));
        // A gap shorter than no_data_for is not news, and data coming back
        // starts the count over.
        assert_eq!(l.observe(&key(), &t, Observation::NoData, MIN / 2), None);
        assert_eq!(l.get(&key()).unwrap().state, State::Firing);
        assert_eq!(l.observe(&key(), &t, breach(), MIN - 1), None);
        assert_eq!(l.observe(&key(), &t, Observation::NoData, MIN), None);
        assert_eq!(
            l.observe(&key(), &t, Observation::NoData, 2 * MIN - 1),
            None
        );
        assert_eq!(
            l.observe(&key(), &t, Observation::NoData, 2 * MIN),
            Some(Transition::NoData)
        );
        assert_eq!(l.observe(&key(), &t, Observation::NoData, 10 * MIN), None);
        assert_eq!(l.get(&key()).unwrap().state, State::NoData);
        assert_eq!(
            l.observe(&key(), &t, breach(), 11 * MIN),
            None,
            "back to firing, no second page"
        );
        assert_eq!(l.get(&key()).unwrap().state, State::Firing);
    }

    #[test]
    fn keep_firing_and_recovery_hold() {
        let t = Timing {
            keep_firing_for_ms: 3 * MIN,
            recover_for_ms: MIN,
            ..Timing::default()
        };
        let mut l = Lifecycle::new();
        l.observe(&key(), &t, breach(), 0);
        assert_eq!(l.observe(&key(), &t, ok(), MIN), None);
        assert_eq!(
            l.observe(&key(), &t, Observation::Between { value: 0.04 }, 2 * MIN),
            None,
            "between resets the recovery"
        );
        assert_eq!(l.observe(&key(), &t, ok(), 3 * MIN), None);
        assert_eq!(l.observe(&key(), &t, ok(), 5 * MIN), None);
        assert_eq!(
            l.observe(&key(), &t, ok(), 6 * MIN),
            Some(Transition::Resolved)
        );
    }

    #[test]
    fn flapping_alerts_hold_longer_and_it_survives_a_restart() {
        let t = Timing {
            // The window's default was an hour when this test was written.
            flap_window_ms: 60 * MIN,
            flap_max: 3,
            flap_hold_ms: 10 * MIN,
            ..Timing::default()
        };
        let mut l = Lifecycle::new();
        let mut now = 0;
        for _ in 0..2 {
            assert_eq!(
                l.observe(&key(), &t, breach(), now),
                Some(Transition::Fired)
            );
            now += MIN;
            assert_eq!(l.observe(&key(), &t, ok(), now), Some(Transition::Resolved));
            now += MIN;
        }
        // The third firing within the hour makes it flap: its recovery must hold 10 minutes.
        assert_eq!(
            l.observe(&key(), &t, breach(), now),
            Some(Transition::Fired)
        );
        assert!(l.is_flapping(&key(), &t, now));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        l.save(&path).unwrap();
        let mut l = Lifecycle::load(&path).unwrap();
        assert_eq!(l.observe(&key(), &t, ok(), now + MIN), None);
        assert_eq!(
            l.observe(&key(), &t, ok(), now + 5 * MIN),
            None,
            "held: flapping"
        );
        assert_eq!(
            l.observe(&key(), &t, ok(), now + 11 * MIN),
            Some(Transition::Resolved)
        );
    }

    /// The defaults' promise (issue #21): twelve separate incidents a few
    /// minutes apart on one alert are twelve pages and twelve resolutions;
    /// an alert that flips every 30 s is held after its fourth firing.
    #[test]
    fn defaults_page_every_recurring_incident_and_damp_real_flapping() {
        let t = Timing::default();
        let mut l = Lifecycle::new();
        let (mut fired, mut resolved) = (0, 0);
        // Each incident breaches for a minute (evaluated every 10 s), then
        // recovers for two: one every three minutes.
        for incident in 0..12 {
            let start = incident * 3 * MIN;
            for step in 0..18 {
                let now = start + step * 10_000;
                let obs = if step < 6 { breach() } else { ok() };
                match l.observe(&key(), &t, obs, now) {
                    Some(Transition::Fired) => fired += 1,
                    Some(Transition::Resolved) => resolved += 1,
                    _ => {}
                }
            }
            assert!(!l.is_flapping(&key(), &t, start + 3 * MIN - 1));
        }
        assert_eq!((fired, resolved), (12, 12));

        let mut l = Lifecycle::new();
        let mut transitions = Vec::new();
        for step in 0..40 {
            let now = step * 30_000;
            let obs = if step % 2 == 0 { breach() } else { ok() };
            if let Some(tr) = l.observe(&key(), &t, obs, now) {
                transitions.push(tr);
            }
        }
        let fired = transitions
            .iter()
            .filter(|t| **t == Transition::Fired)
            .count();
        assert_eq!(
            fired, 4,
            "held firing from the fourth firing on: {transitions:?}"
        );
        assert_eq!(l.get(&key()).unwrap().state, State::Firing);
    }

    #[test]
    fn acknowledgement_lasts_until_resolution_and_persists() {
        let t = Timing::default();
        let mut l = Lifecycle::new();
        assert!(!l.acknowledge(
            &key(),
            Ack {
                by: "ana".into(),
                at_ms: 0,
                comment: String::new()
            }
        ));
        l.observe(&key(), &t, breach(), 0);
        assert!(l.acknowledge(
            &key(),
            Ack {
                by: "ana".into(),
                at_ms: 1,
                comment: "rolling back".into()
            }
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        l.save(&path).unwrap();
        let mut back = Lifecycle::load(&path).unwrap();
        assert_eq!(back.get(&key()).unwrap().ack.as_ref().unwrap().by, "ana");
        back.observe(&key(), &t, ok(), MIN);
        assert!(back.get(&key()).unwrap().ack.is_none());
    }

    #[test]
    fn a_restart_while_firing_does_not_fire_again() {
        let t = Timing::default();
        let mut l = Lifecycle::new();
        assert_eq!(l.observe(&key(), &t, breach(), 0), Some(Transition::Fired));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        l.save(&path).unwrap();
        let mut back = Lifecycle::load(&path).unwrap();
        assert_eq!(back.observe(&key(), &t, breach(), MIN), None);
        assert_eq!(
            back.observe(&key(), &t, ok(), 2 * MIN),
            Some(Transition::Resolved),
            "the resolved notice still comes"
        );
    }

    #[test]
    fn corrupt_or_newer_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        std::fs::write(&path, b"{").unwrap();
        assert!(Lifecycle::load(&path).is_err());
        std::fs::write(&path, br#"{"version":99,"alerts":[]}"#).unwrap();
        assert!(Lifecycle::load(&path).is_err());
        assert_eq!(
            Lifecycle::load(&dir.path().join("none.json")).unwrap(),
            Lifecycle::new()
        );
    }

    #[test]
    fn prune_forgets_old_resolved_and_removed_rules() {
        let t = Timing::default();
        let mut l = Lifecycle::new();
        l.observe(&key(), &t, breach(), 0);
        l.observe(&key(), &t, ok(), MIN);
        let other = AlertKey {
            rule: "gone".into(),
            group: "x".into(),
        };
        l.observe(&other, &t, breach(), 0);
        l.prune(2 * MIN, 10 * MIN, |r| r != "gone");
        assert_eq!(l.alerts().count(), 1);
        l.prune(20 * MIN, 10 * MIN, |_| true);
        assert_eq!(l.alerts().count(), 0);
    }
}
