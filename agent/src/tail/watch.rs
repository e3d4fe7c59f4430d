//! File-system events, to react faster than the polling interval.
//!
//! The watcher only accelerates: the tailer scans its globs every
//! `poll_interval` whatever happens here, because events get lost (queue
//! overflow), never come (NFS, some FUSE and container mounts) or the
//! watched directory does not exist yet. Events only wake the tailer, and
//! those that can change which files exist (create, remove, rename) also
//! ask for a scan before the interval is up.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// The directories above the globs, watched where possible.
pub(crate) struct Watch {
    watcher: Option<RecommendedWatcher>,
    /// Directory, how deep, and whether the watch is in place.
    dirs: Vec<(PathBuf, RecursiveMode, bool)>,
    rescan: Arc<AtomicBool>,
}

impl Watch {
    /// Starts watching; a watcher that cannot be created leaves polling
    /// alone in charge, with a warning.
    pub(crate) fn new(globs: &[String], wake: Arc<Notify>) -> Watch {
        let rescan = Arc::new(AtomicBool::new(false));
        let flag = rescan.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let structural = match res {
                Ok(ev) => match ev.kind {
                    // Our own opens and reads show up here; ignoring them
                    // keeps the tailer from waking itself.
                    EventKind::Access(_) => return,
                    EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Metadata(_)) => false,
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
