//! File-system events, to react faster than the polling interval.
//!
//! The watcher only accelerates: the tailer scans its globs every
//! `poll_interval` whatever happens here, because events get lost (queue
//! overflow), never come (NFS, some FUSE and container mounts) or the
//! watched directory does not exist yet. Events only wake the tailer, and
//! those that can change which files exist (create, remove, rename) also
//! ask for a scan before the interval is up. So does a write to a file
//! the globs match that is not open: one that was empty when last scanned
//! (a log just created) or closed while idle; otherwise its first line
//! would wait for the next scan, a second on a quiet log.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// The directories above the globs, watched where possible.
pub(crate) struct Watch {
    watcher: Option<RecommendedWatcher>,
    /// Directory, how deep, and whether the watch is in place.
    dirs: Vec<(PathBuf, RecursiveMode, bool)>,
    rescan: Arc<AtomicBool>,
    /// Names of files written since the last call to [`Watch::take_written`].
    written: Arc<Mutex<Vec<OsString>>>,
}

/// Most file names remembered between two rounds of the tailer; a burst
/// of writes to more distinct files than this just asks for a scan.
const MAX_WRITTEN: usize = 64;

impl Watch {
    /// Starts watching; a watcher that cannot be created leaves polling
    /// alone in charge, with a warning.
    pub(crate) fn new(globs: &[String], wake: Arc<Notify>) -> Watch {
        let rescan = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (flag, names) = (rescan.clone(), written.clone());
        // Only files the globs match: the watched directories hold other
        // logs (every write to which would otherwise cost a scan).
        let patterns: Vec<glob::Pattern> = globs
            .iter()
            .filter_map(|g| glob::Pattern::new(g).ok())
            .collect();
        let handler = move |res: notify::Result<notify::Event>| {
            let structural = match res {
                Ok(ev) => match ev.kind {
                    // Our own opens and reads show up here; ignoring them
                    // keeps the tailer from waking itself.
                    EventKind::Access(_) => return,
                    EventKind::Modify(ModifyKind::Data(_)) => {
                        let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
                        let mut full = false;
                        let ours = ev
                            .paths
                            .iter()
                            .filter(|p| patterns.iter().any(|g| g.matches_path(p)));
                        for name in ours.filter_map(|p| p.file_name()) {
                            if names.iter().any(|n| n == name) {
                                continue;
                            }
                            if names.len() >= MAX_WRITTEN {
                                full = true;
                                break;
                            }
                            names.push(name.to_owned());
                        }
                        full
                    }
                    EventKind::Modify(ModifyKind::Metadata(_)) => false,
                    _ => true,
                },
                // Overflow and the like: something may have been missed.
                Err(_) => true,
            };
            if structural {
                flag.store(true, Ordering::Release);
            }
            wake.notify_one();
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watcher unavailable; polling only");
                None
            }
        };
        let mut dirs: Vec<(PathBuf, RecursiveMode, bool)> = Vec::new();
        for g in globs {
            let (dir, mode) = glob_base(g);
            match dirs.iter_mut().find(|(d, _, _)| *d == dir) {
                Some(slot) if mode == RecursiveMode::Recursive => slot.1 = mode,
                Some(_) => {}
                None => dirs.push((dir, mode, false)),
            }
        }
        let mut w = Watch {
            watcher,
            dirs,
            rescan,
            written,
        };
        w.retry();
        w
    }

    /// Tries again to watch directories that could not be watched before
    /// (typically because they did not exist yet).
    pub(crate) fn retry(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for (dir, mode, ok) in &mut self.dirs {
            if !*ok && dir.is_dir() {
                match watcher.watch(dir, *mode) {
                    Ok(()) => *ok = true,
                    Err(e) => {
                        tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory yet")
                    }
                }
            }
        }
    }

    /// Whether an event asked for a scan since the last call.
    pub(crate) fn take_rescan(&self) -> bool {
        self.rescan.swap(false, Ordering::AcqRel)
    }

    /// Whether a file was written since the last call whose name
    /// `is_open` does not know: then a scan should look for it now.
    /// Names, not paths, are compared: the watcher reports paths under the
    /// watched directory as given, the globs may name them otherwise.
    pub(crate) fn take_written(&self, is_open: impl Fn(&std::ffi::OsStr) -> bool) -> bool {
        let names = std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()));
        names.iter().any(|n| !is_open(n))
    }
}

/// The deepest directory of a glob that holds no pattern characters, and
/// whether files may sit more than one level below it.
pub(crate) fn glob_base(pattern: &str) -> (PathBuf, RecursiveMode) {
    let path = Path::new(pattern);
    let mut base = PathBuf::new();
    let mut rest = 0;
    for c in path.components() {
        let s = c.as_os_str().to_string_lossy();
        if rest > 0 || (matches!(c, Component::Normal(_)) && s.contains(['*', '?', '['])) {
            rest += 1;
        } else {
            base.push(c);
        }
    }
    if rest == 0 {
        // A literal path: watch the directory it lives in.
        base.pop();
        rest = 1;
    }
    if base.as_os_str().is_empty() {
        base.push(".");
    }
    let mode = if rest > 1 || pattern.contains("**") {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    (base, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_of_globs() {
        assert_eq!(
            glob_base("/var/log/nginx/access.log*"),
            ("/var/log/nginx".into(), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            glob_base("/var/log/app/*/call.log"),
            ("/var/log/app".into(), RecursiveMode::Recursive)
        );
        assert_eq!(
            glob_base("/var/log/**/x.log"),
            ("/var/log".into(), RecursiveMode::Recursive)
        );
        assert_eq!(
            glob_base("/var/log/syslog"),
            ("/var/log".into(), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            glob_base("*.log"),
            (".".into(), RecursiveMode::NonRecursive)
        );
    }
}
