//! The alert history: one JSON line per thing that happened (see
//! [`Event`]), appended and fsynced, so the morning after an incident one
//! can read what fired, who acknowledged it and which notifications went
//! out.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a history record is about. Serialized as its snake_case name
/// (`fired`, `gave_up`, ...), which history files and the API carry; a name
/// this release does not know (a file written by a newer one) is kept as
/// [`Event::Other`] rather than dropping the line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Event {
    /// An alert started firing.
    Fired,
    /// A firing alert's data stopped.
    NoData,
    /// An alert resolved.
    Resolved,
    /// Someone acknowledged an alert (through the API, the dashboard or a
    /// voice keypress).
    Acknowledged,
    /// A silence (on the alert or on its incident's probable cause) held a
    /// firing alert back.
    Silenced,
    /// A silence was added.
    SilenceAdded,
    /// A silence was ended early.
    SilenceExpired,
    /// A notice was put in the outbox (or a voice call plan started).
    Notified,
    /// A channel accepted a notice.
    Delivered,
    /// A delivery failed and will be tried again.
    Retrying,
    /// A notice was given up on: refused for good, out of attempts, or for
    /// a receiver no longer configured.
    GaveUp,
    /// A notice was held back by a spent hourly budget, for the next digest.
    Folded,
    /// An escalation step was taken.
    Escalated,
    /// The rules directory was loaded.
    RulesLoaded,
    /// The rules directory was refused; the previous rules keep running.
    RulesRejected,
    /// An alert joined an incident, as its probable cause or as an effect
    /// suppressed into the incident's notice.
    Incident,
    /// An incident's probable cause changed.
    IncidentCause,
    /// Two incidents merged into one.
    IncidentMerged,
    /// Every member of an incident resolved.
    IncidentResolved,
    /// A voice call was placed.
    Called,
    /// A voice call reached nobody.
    NotAnswered,
    /// A voice call was not placed: a per-number limit.
    CallLimited,
    /// A voice provider's receipt (answered, not answered, a key).
    Receipt,
    /// A name this release does not know.
    Other(String),
}

impl Event {
    /// Every known event with its name: the one list the serialized form reads.
    const NAMES: &'static [(&'static str, Event)] = &[
        ("fired", Event::Fired),
        ("no_data", Event::NoData),
        ("resolved", Event::Resolved),
        ("acknowledged", Event::Acknowledged),
        ("silenced", Event::Silenced),
        ("silence_added", Event::SilenceAdded),
        ("silence_expired", Event::SilenceExpired),
        ("notified", Event::Notified),
        ("delivered", Event::Delivered),
        ("retrying", Event::Retrying),
        ("gave_up", Event::GaveUp),
        ("folded", Event::Folded),
        ("escalated", Event::Escalated),
        ("rules_loaded", Event::RulesLoaded),
        ("rules_rejected", Event::RulesRejected),
        ("incident", Event::Incident),
        ("incident_cause", Event::IncidentCause),
        ("incident_merged", Event::IncidentMerged),
        ("incident_resolved", Event::IncidentResolved),
        ("called", Event::Called),
        ("not_answered", Event::NotAnswered),
        ("call_limited", Event::CallLimited),
        ("receipt", Event::Receipt),
    ];

    /// The serialized name.
    pub fn as_str(&self) -> &str {
        match self {
            Event::Other(name) => name,
            known => Self::NAMES
                .iter()
                .find(|(_, e)| e == known)
                .map_or("", |(n, _)| n),
        }
    }
}

impl From<String> for Event {
    fn from(name: String) -> Event {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Event::Other(name), |(_, e)| e.clone())
    }
}

impl From<Event> for String {
    fn from(e: Event) -> String {
        e.as_str().to_owned()
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scripts and tests compare events with their names.
impl PartialEq<&str> for Event {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One event of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When, Unix ms.
    pub at_ms: i64,
    /// What happened.
    pub event: Event,
    /// The rule, if any.
    #[serde(default)]
    pub rule: String,
    /// The alert's group key, if any.
    #[serde(default)]
    pub group: String,
    /// Free text: value and threshold, who, the notice id and receiver, the error.
    #[serde(default)]
    pub detail: String,
}

/// An append-only history file.
pub struct History {
    path: PathBuf,
    file: File,
}

impl History {
    /// Opens (creating) the history at `path`.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn open(path: &Path) -> io::Result<History> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(History {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends one record. A failure is logged, not fatal: losing a line of
    /// history must not stop a page.
    pub fn append(&mut self, r: Record) {
        let mut line = match serde_json::to_vec(&r) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "history record not serialisable");
                return;
            }
        };
        line.push(b'\n');
        if let Err(e) = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
        {
            tracing::error!(error = %e, path = %self.path.display(), "writing alert history failed");
        }
    }

    /// The newest `limit` records matching: `rule` exactly when given, and
    /// every word of `text` somewhere in the record (case-insensitive).
    /// Newest first. Lines that do not parse (a torn last line) are skipped.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn search(&self, rule: Option<&str>, text: &str, limit: usize) -> io::Result<Vec<Record>> {
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        let mut out = Vec::new();
        for line in BufReader::new(File::open(&self.path)?).lines() {
            let line = line?;
            let Ok(r) = serde_json::from_str::<Record>(&line) else {
                continue;
            };
            if rule.is_some_and(|want| want != r.rule) {
                continue;
            }
            let hay = line.to_lowercase();
            if words.iter().all(|w| hay.contains(w.as_str())) {
                out.push(r);
            }
        }
        out.reverse();
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_survive_reopen_and_search_filters() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history.jsonl");
        let mut h = History::open(&p).unwrap();
        for (i, (event, rule)) in [
            (Event::Fired, "a"),
            (Event::Notified, "a"),
            (Event::Fired, "b"),
        ]
        .iter()
        .enumerate()
        {
            h.append(Record {
                at_ms: i as i64,
                event: event.clone(),
                rule: (*rule).into(),
                group: "login/POST /pay".into(),
                detail: format!("detail {i}"),
            });
        }
        drop(h);
        // A torn line at the end (crash mid-write) is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"at_ms\":")
            .unwrap();
        let h = History::open(&p).unwrap();
        let all = h.search(None, "", 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].rule, "b", "newest first");
        assert_eq!(h.search(Some("a"), "", 10).unwrap().len(), 2);
        assert_eq!(h.search(None, "NOTIFIED pay", 10).unwrap().len(), 1);
        assert_eq!(h.search(None, "", 1).unwrap().len(), 1);
    }

    #[test]
    fn events_keep_their_names_on_disk() {
        for (name, e) in Event::NAMES {
            let json = serde_json::to_string(e).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), e);
        }
        // A newer release's event survives a round trip.
        let e: Event = serde_json::from_str("\"paged_twice\"").unwrap();
        assert_eq!(e, Event::Other("paged_twice".into()));
        assert_eq!(serde_json::to_string(&e).unwrap(), "\"paged_twice\"");
    }
}
