//! The alert history: one JSON line per thing that happened (fired,
//! resolved, no data, acknowledged, silenced, notified, delivered, gave up),
//! appended and fsynced, so the morning after an incident one can read
//! what fired, who acknowledged it and which notifications went out.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One event of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When, Unix ms.
    pub at_ms: i64,
    /// `fired`, `resolved`, `no_data`, `acknowledged`, `silenced`,
    /// `notified`, `delivered`, `retrying`, `gave_up`, `rules_loaded`,
    /// `rules_rejected`.
    pub event: String,
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
        for (i, (event, rule)) in [("fired", "a"), ("notified", "a"), ("fired", "b")]
            .iter()
            .enumerate()
        {
            h.append(Record {
                at_ms: i as i64,
                event: (*event).into(),
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
}
