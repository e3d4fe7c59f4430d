//! Silences: "I know, stop paging me about this until 14:00", with who
//! said so and why.
//!
//! A silence matches an alert by its labels (rule, severity, layer,
//! service, series, host and the rule's own labels); every matcher must
//! match. Silences persist with the alert state, expire by themselves, and
//! can be expired early; expired ones stay listed for the history.

use std::collections::BTreeMap;

use panorama_model::DAY_MS;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// How one label is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    /// Equal.
    Eq,
    /// Not equal (a missing label counts as not equal).
    Ne,
    /// Whole-value regex.
    Regex,
}

/// One matcher of a silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// The label.
    pub label: String,
    /// How.
    pub op: MatchOp,
    /// Against what.
    pub value: String,
}

impl Matcher {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.label);
        match self.op {
            MatchOp::Eq => v == Some(&self.value),
            MatchOp::Ne => v != Some(&self.value),
            MatchOp::Regex => {
                // Checked at creation; an unparsable one matches nothing.
                let anchored = format!("^(?:{})$", self.value);
                v.is_some_and(|v| Regex::new(&anchored).is_ok_and(|re| re.is_match(v)))
            }
        }
    }
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Its id.
    pub id: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// From, Unix ms.
    pub starts_ms: i64,
    /// Until, Unix ms.
    pub ends_ms: i64,
    /// Who created it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// Set when expired early, by whom.
    pub expired_by: Option<String>,
}

impl Silence {
    /// True while in force at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.expired_by.is_none() && self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    /// True when in force and every matcher matches.
    pub fn silences(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        self.active(now_ms) && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No matchers: it would silence everything.
    #[error("a silence needs at least one matcher (it would silence every alert)")]
    NoMatchers,
    /// Ends before it starts, or is longer than allowed.
    #[error("{0}")]
    BadTime(String),
    /// A regex matcher does not compile.
    #[error("matcher on `{label}`: invalid regex: {reason}")]
    BadRegex {
        /// The label.
        label: String,
        /// Why.
        reason: String,
    },
    /// Missing author or reason.
    #[error("`{0}` is required: on-duty staff must know who silenced what and why")]
    Missing(&'static str),
}

/// Longest silence accepted: a forgotten silence is a missed outage.
pub const MAX_SILENCE_MS: i64 = 7 * DAY_MS;

/// Every silence, active or not.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silences {
    list: Vec<Silence>,
    next: u64,
}

impl Silences {
    /// Checks and adds a silence; returns its id.
    ///
    /// # Errors
    /// No matchers, a bad regex, a bad time span, no author or reason.
    pub fn add(
        &mut self,
        matchers: Vec<Matcher>,
        starts_ms: i64,
        ends_ms: i64,
        author: &str,
        reason: &str,
    ) -> Result<String, SilenceError> {
        if matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if author.trim().is_empty() {
            return Err(SilenceError::Missing("author"));
        }
        if reason.trim().is_empty() {
            return Err(SilenceError::Missing("reason"));
        }
        if ends_ms <= starts_ms {
            return Err(SilenceError::BadTime(
                "`ends` must be after `starts`".into(),
            ));
        }
        if ends_ms - starts_ms > MAX_SILENCE_MS {
            return Err(SilenceError::BadTime(
                "a silence may last at most 7 days".into(),
            ));
        }
        for m in &matchers {
            if m.op == MatchOp::Regex
                && let Err(e) = Regex::new(&m.value)
            {
                return Err(SilenceError::BadRegex {
                    label: m.label.clone(),
                    reason: e.to_string(),
                });
            }
        }
        self.next += 1;
        let id = format!("s{}", self.next);
        self.list.push(Silence {
            id: id.clone(),
            matchers,
            starts_ms,
            ends_ms,
            author: author.to_owned(),
            reason: reason.to_owned(),
            expired_by: None,
        });
        Ok(id)
    }

    /// Ends a silence now; false if unknown or already over.
    pub fn expire(&mut self, id: &str, by: &str, now_ms: i64) -> bool {
        match self.list.iter_mut().find(|s| s.id == id) {
            Some(s) if s.active(now_ms) || s.starts_ms > now_ms => {
                s.expired_by = Some(by.to_owned());
                s.ends_ms = s.ends_ms.min(now_ms);
                true
            }
            _ => false,
        }
    }

    /// The first silence in force for these labels.
    pub fn silencing(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> Option<&Silence> {
        self.list.iter().find(|s| s.silences(labels, now_ms))
    }

    /// All of them, newest first.
    pub fn list(&self) -> impl Iterator<Item = &Silence> {
        self.list.iter().rev()
    }

    /// Forgets silences over for more than `keep_ms`.
    pub fn prune(&mut self, now_ms: i64, keep_ms: i64) {
        self.list.retain(|s| now_ms - s.ends_ms <= keep_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(label: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher {
            label: label.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn matchers_all_must_match_while_active() {
        let mut s = Silences::default();
        let id = s
            .add(
                vec![
                    m("service", MatchOp::Eq, "login"),
                    m("host", MatchOp::Regex, "web[0-9]+"),
                    m("severity", MatchOp::Ne, "critical"),
                ],
                100,
                200,
                "ana",
                "deploying",
            )
            .unwrap();
        let hit = labels(&[
            ("service", "login"),
            ("host", "web12"),
            ("severity", "warning"),
        ]);
        assert!(s.silencing(&hit, 150).is_some());
        assert!(s.silencing(&hit, 99).is_none(), "not yet");
        assert!(s.silencing(&hit, 200).is_none(), "over");
        assert!(
            s.silencing(
                &labels(&[
                    ("service", "login"),
                    ("host", "db1"),
                    ("severity", "warning")
                ]),
                150
            )
            .is_none()
        );
        assert!(
            s.silencing(
                &labels(&[
                    ("service", "login"),
                    ("host", "web1x"),
                    ("severity", "warning")
                ]),
                150
            )
            .is_none(),
            "regex is anchored"
        );
        assert!(
            s.silencing(
                &labels(&[
                    ("service", "login"),
                    ("host", "web1"),
                    ("severity", "critical")
                ]),
                150
            )
            .is_none()
        );
        assert!(s.expire(&id, "bo", 160));
        assert!(s.silencing(&hit, 170).is_none());
        assert_eq!(s.list().next().unwrap().expired_by.as_deref(), Some("bo"));
        assert!(!s.expire(&id, "bo", 170), "already over");
    }

    #[test]
    fn bad_silences_are_refused_with_reasons() {
        let mut s = Silences::default();
        assert_eq!(
            s.add(vec![], 0, 10, "a", "r"),
            Err(SilenceError::NoMatchers)
        );
        let one = || vec![m("rule", MatchOp::Eq, "x")];
        assert!(matches!(
            s.add(one(), 10, 10, "a", "r"),
            Err(SilenceError::BadTime(_))
        ));
        assert!(matches!(
            s.add(one(), 0, MAX_SILENCE_MS + 1, "a", "r"),
            Err(SilenceError::BadTime(_))
        ));
        assert_eq!(
            s.add(one(), 0, 10, " ", "r"),
            Err(SilenceError::Missing("author"))
        );
        assert_eq!(
            s.add(one(), 0, 10, "a", ""),
            Err(SilenceError::Missing("reason"))
        );
        assert!(matches!(
            s.add(vec![m("host", MatchOp::Regex, "(")], 0, 10, "a", "r"),
            Err(SilenceError::BadRegex { .. })
        ));
    }

    #[test]
    fn round_trips_through_json() {
        let mut s = Silences::default();
        s.add(vec![m("rule", MatchOp::Eq, "x")], 0, 10, "a", "r")
            .unwrap();
        let back: Silences = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let mut back = back;
        assert_eq!(
            back.add(vec![m("rule", MatchOp::Eq, "y")], 0, 10, "a", "r")
                .unwrap(),
            "s2",
            "ids continue"
        );
    }
}
