//! The notification outbox: every notification is written here before any
//! channel sees it, and leaves only as delivered or given up.
//!
//! That is what makes "no duplicate page, no lost resolved notice" hold
//! across restarts: a notification is enqueued under a deterministic id
//! (alert, transition, episode), so the same transition decided again after
//! a restart is recognised and not sent twice; one that was enqueued but not
//! delivered when the process died is still here and is sent when it
//! comes back. Delivery attempts, errors and outcomes stay as the
//! notification history.

use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where a notification is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    /// Waiting for its (next) attempt.
    Pending,
    /// Accepted by the channel.
    Delivered {
        /// When, Unix ms.
        at_ms: i64,
    },
    /// Given up on: a permanent refusal or too many attempts. Reported.
    GaveUp {
        /// When, Unix ms.
        at_ms: i64,
    },
}

/// One notification in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry<T> {
    /// Deterministic id: the same notification decided twice has the same id.
    pub id: String,
    /// The channel (receiver) it goes to.
    pub channel: String,
    /// What to send.
    pub payload: T,
    /// When it was enqueued.
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this time.
    pub next_try_ms: i64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Where it is.
    pub status: Status,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "T: Serialize + DeserializeOwned")]
struct Saved<T> {
    version: u32,
    entries: Vec<Entry<T>>,
}

/// A durable outbox of `T`s.
pub struct Outbox<T> {
    path: PathBuf,
    entries: Vec<Entry<T>>,
}

impl<T: Serialize + DeserializeOwned + Clone> Outbox<T> {
    /// Opens (or starts) the outbox file at `path`.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn open(path: &Path) -> io::Result<Outbox<T>> {
        let entries = match std::fs::read(path) {
            Ok(bytes) => {
                let saved: Saved<T> = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                saved.entries
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Outbox {
            path: path.to_owned(),
            entries,
        })
    }

    fn save(&self) -> io::Result<()> {
        let saved = Saved {
            version: 1,
            entries: self.entries.clone(),
        };
        let bytes = serde_json::to_vec(&saved).map_err(io::Error::other)?;
        panorama_durable::write_atomic(&self.path, &bytes)
    }

    /// Adds a notification, durably. Returns false (and changes nothing)
    /// when one with this id is already here: the duplicate is not sent.
    ///
    /// # Errors
    /// The outbox could not be written; the notification is not enqueued.
    pub fn enqueue(
        &mut self,
        id: &str,
        channel: &str,
        payload: T,
        now_ms: i64,
    ) -> io::Result<bool> {
        if self
            .entries
            .iter()
            .any(|e| e.id == id && e.channel == channel)
        {
            return Ok(false);
        }
        self.entries.push(Entry {
            id: id.to_owned(),
            channel: channel.to_owned(),
            payload,
            created_ms: now_ms,
            attempts: 0,
            next_try_ms: now_ms,
            last_error: None,
            status: Status::Pending,
        });
        if let Err(e) = self.save() {
            self.entries.pop();
            return Err(e);
        }
        Ok(true)
    }

    /// Pending entries whose time has come, oldest first, in order per
    /// channel: an entry waiting for its retry holds back every later one
    /// of its channel, so that a receiver never reads an alert's resolved
    /// notice before the firing one still being retried.
    pub fn due(&self, now_ms: i64) -> Vec<Entry<T>> {
        let mut blocked: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for e in self.entries.iter().filter(|e| e.status == Status::Pending) {
            if blocked.contains(e.channel.as_str()) {
                continue;
            }
            if e.next_try_ms <= now_ms {
                out.push(e.clone());
            } else {
                blocked.insert(&e.channel);
            }
        }
        out
    }

    /// True when a pending entry of `channel` comes after entry `id`: it
    /// waits until this one is delivered or given up.
    pub fn waiting_behind(&self, id: &str, channel: &str) -> bool {
        self.entries
            .iter()
            .filter(|e| e.channel == channel && e.status == Status::Pending)
            .skip_while(|e| e.id != id)
            .nth(1)
            .is_some()
    }

    /// Records a delivery.
    ///
    /// # Errors
    /// The outbox could not be written (the entry may be sent again after a
    /// crash: a duplicate is better than a loss).
    pub fn delivered(&mut self, id: &str, channel: &str, now_ms: i64) -> io::Result<()> {
        if let Some(e) = self.find(id, channel) {
            e.attempts += 1;
            e.status = Status::Delivered { at_ms: now_ms };
        }
        self.save()
    }

    /// Records a failed attempt: retried at `retry_at_ms`, or given up when `None`.
    ///
    /// # Errors
    /// The outbox could not be written.
    pub fn failed(
        &mut self,
        id: &str,
        channel: &str,
        error: &str,
        retry_at_ms: Option<i64>,
        now_ms: i64,
    ) -> io::Result<()> {
        if let Some(e) = self.find(id, channel) {
            e.attempts += 1;
            e.last_error = Some(error.to_owned());
            match retry_at_ms {
                Some(t) => e.next_try_ms = t,
                None => e.status = Status::GaveUp { at_ms: now_ms },
            }
        }
        self.save()
    }

    fn find(&mut self, id: &str, channel: &str) -> Option<&mut Entry<T>> {
        self.entries
            .iter_mut()
            .find(|e| e.id == id && e.channel == channel)
    }

    /// Every entry, oldest first: the notification history.
    pub fn entries(&self) -> &[Entry<T>] {
        &self.entries
    }

    /// Forgets finished entries older than `keep_ms`. Pending ones stay
    /// whatever their age.
    ///
    /// # Errors
    /// The outbox could not be written.
    pub fn prune(&mut self, now_ms: i64, keep_ms: i64) -> io::Result<()> {
        let before = self.entries.len();
        self.entries
            .retain(|e| e.status == Status::Pending || now_ms - e.created_ms <= keep_ms);
        if self.entries.len() != before {
            self.save()
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_notification_is_enqueued_once_even_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.json");
        let mut o: Outbox<String> = Outbox::open(&path).unwrap();
        assert!(
            o.enqueue("alert-1/fired/0", "mail", "boom".into(), 10)
                .unwrap()
        );
        assert!(
            !o.enqueue("alert-1/fired/0", "mail", "boom".into(), 11)
                .unwrap()
        );
        assert!(
            o.enqueue("alert-1/fired/0", "sms", "boom".into(), 11)
                .unwrap(),
            "per channel"
        );
        drop(o);
        let mut o: Outbox<String> = Outbox::open(&path).unwrap();
        assert!(
            !o.enqueue("alert-1/fired/0", "mail", "boom".into(), 12)
                .unwrap(),
            "recognised after a restart"
        );
        assert_eq!(
            o.due(12).len(),
            2,
            "undelivered entries are still due after the restart"
        );
    }

    #[test]
    fn a_notification_waiting_for_its_retry_holds_back_later_ones_of_its_channel() {
        let dir = tempfile::tempdir().unwrap();
        let mut o: Outbox<String> = Outbox::open(&dir.path().join("outbox.json")).unwrap();
        o.enqueue("a:1", "mail", "firing".into(), 0).unwrap();
        o.failed("a:1", "mail", "refused", Some(5_000), 0).unwrap();
        o.enqueue("a:2", "mail", "resolved".into(), 1_000).unwrap();
        o.enqueue("b:1", "sms", "other".into(), 1_000).unwrap();
        let ids = |v: Vec<Entry<String>>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(o.due(1_000)), ["b:1"], "mail waits for a:1's retry");
        assert!(o.waiting_behind("a:1", "mail") && !o.waiting_behind("a:2", "mail"));
        assert_eq!(ids(o.due(5_000)), ["a:1", "a:2", "b:1"], "then in order");
        o.failed("a:1", "mail", "refused", None, 5_000).unwrap();
        assert_eq!(
            ids(o.due(5_000)),
            ["a:2", "b:1"],
            "given up, it holds nothing back"
        );
    }

    #[test]
    fn failures_are_retried_then_given_up_and_kept_as_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut o: Outbox<String> = Outbox::open(&dir.path().join("o.json")).unwrap();
        o.enqueue("n1", "mail", "x".into(), 0).unwrap();
        o.failed("n1", "mail", "connection refused", Some(1_000), 0)
            .unwrap();
        assert!(o.due(999).is_empty());
        assert_eq!(o.due(1_000).len(), 1);
        o.failed("n1", "mail", "550 no such user", None, 1_000)
            .unwrap();
        assert!(o.due(10_000).is_empty());
        let e = &o.entries()[0];
        assert_eq!(
            (e.attempts, e.last_error.as_deref()),
            (2, Some("550 no such user"))
        );
        assert_eq!(e.status, Status::GaveUp { at_ms: 1_000 });
        o.enqueue("n2", "mail", "y".into(), 0).unwrap();
        o.delivered("n2", "mail", 5).unwrap();
        o.prune(100_000, 10_000).unwrap();
        assert!(o.entries().is_empty());
    }

    #[test]
    fn a_corrupt_outbox_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.json");
        std::fs::write(&path, b"[").unwrap();
        assert!(Outbox::<String>::open(&path).is_err());
    }
}
