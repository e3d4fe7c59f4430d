//! Dashboard sessions, persisted so that a restart keeps people logged in.
//!
//! The file (`sessions.json` in the dashboard's directory under the data
//! dir, mode 0600) holds, per session, the SHA-256 of its token, never the
//! token: someone who reads the file or a backup of it cannot log in. Each
//! session also keeps a fingerprint of its user's password hash at login;
//! when the configured hash changes (a password change), every session of
//! that user ends, and a user removed from the configuration loses theirs.
//! The role is read from the configuration at each request, so a demotion
//! takes effect at once.
//!
//! A session ends after `session_idle` without a request and after
//! `session_max` however busy. Touches are written at most once a minute:
//! idle time survives a restart to within that minute, and a busy
//! dashboard does not write a file per request.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use panorama_model::Role;
use serde::{Deserialize, Serialize};

use crate::config::DashboardConfig;

/// A logged-in user, as handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Login name.
    pub(crate) user: String,
    /// Role, as configured now.
    pub(crate) role: Role,
    /// The token every form of this session carries.
    pub(crate) csrf: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    user: String,
    csrf: String,
    created_ms: i64,
    last_ms: i64,
    /// SHA-256 (hex, first 16 bytes) of the user's password hash at login.
    password: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    /// By SHA-256 (hex) of the session token.
    sessions: HashMap<String, Stored>,
}

#[derive(Debug, Default)]
struct State {
    file: File,
    flushed_ms: i64,
}

/// Sessions by the hash of their token.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

fn sha256_hex(s: &str, bytes: usize) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref()[..bytes]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random 256-bit value in hex.
pub(crate) fn token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Touches are written at most this often.
const FLUSH_EVERY_MS: i64 = 60_000;

impl Sessions {
    /// Sessions kept in memory only.
    pub(crate) fn in_memory() -> Sessions {
        Sessions::default()
    }

    /// Sessions persisted in `path`, loading the ones already there. A file
    /// that does not parse is set aside (everyone logs in again) rather
    /// than stopping the dashboard.
    pub(crate) fn open(path: &Path) -> Sessions {
        let file = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice::<File>(&b).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "sessions file unreadable; everyone logs in again");
                File::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => File::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "sessions file unreadable; everyone logs in again");
                File::default()
            }
        };
        Sessions {
            path: Some(path.to_owned()),
            state: Mutex::new(State {
                file,
                flushed_ms: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn flush(&self, st: &mut State, now_ms: i64) {
        st.flushed_ms = now_ms;
        let Some(path) = &self.path else { return };
        st.file.version = 1;
        let r = serde_json::to_vec(&st.file)
            .map_err(io::Error::other)
            .and_then(|b| panorama_durable::write_atomic_private(path, &b));
        if let Err(e) = r {
            tracing::error!(path = %path.display(), error = %e, "writing dashboard sessions failed; logins last until restart");
        }
    }

    /// Starts a session for a user who just proved their password.
    pub(crate) fn create(&self, user: &str, password_hash: &str, now_ms: i64) -> (String, String) {
        let t = token();
        let csrf = token();
        let mut st = self.lock();
        st.file.sessions.insert(
            sha256_hex(&t, 32),
            Stored {
                user: user.to_owned(),
                csrf: csrf.clone(),
                created_ms: now_ms,
                last_ms: now_ms,
                password: sha256_hex(password_hash, 16),
            },
        );
        self.flush(&mut st, now_ms);
        (t, csrf)
    }

    /// The live session of a token, touched. Expired sessions, and those of
    /// users whose password changed or who are gone, are dropped.
    pub(crate) fn get(&self, token: &str, cfg: &DashboardConfig, now_ms: i64) -> Option<Session> {
        let idle = cfg.session_idle.as_millis() as i64;
        let max = cfg.session_max.as_millis() as i64;
        let mut st = self.lock();
        let before = st.file.sessions.len();
        st.file.sessions.retain(|_, s| {
            now_ms - s.last_ms < idle
                && now_ms - s.created_ms < max
                && cfg
                    .users
                    .iter()
                    .any(|u| u.name == s.user && sha256_hex(&u.password_hash, 16) == s.password)
        });
        let dropped = st.file.sessions.len() != before;
        let found = st.file.sessions.get_mut(&sha256_hex(token, 32)).map(|s| {
            s.last_ms = now_ms;
            (s.user.clone(), s.csrf.clone())
        });
        if dropped || now_ms - st.flushed_ms >= FLUSH_EVERY_MS {
            self.flush(&mut st, now_ms);
        }
        drop(st);
        let (user, csrf) = found?;
        let role = cfg.users.iter().find(|u| u.name == user)?.role;
        Some(Session { user, role, csrf })
    }

    /// Ends a session (logout).
    pub(crate) fn remove(&self, token: &str, now_ms: i64) {
        let mut st = self.lock();
        if st.file.sessions.remove(&sha256_hex(token, 32)).is_some() {
            self.flush(&mut st, now_ms);
        }
    }

    /// Writes pending touches (at shutdown).
    pub(crate) fn persist(&self, now_ms: i64) {
        let mut st = self.lock();
        self.flush(&mut st, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::User;
    use std::time::Duration;

    fn cfg(hash: &str) -> DashboardConfig {
        let mut c = DashboardConfig::new(vec![User {
            name: "ana".into(),
            password_hash: hash.into(),
            role: Role::Operator,
        }]);
        c.session_idle = Duration::from_secs(600);
        c.session_max = Duration::from_secs(3600);
        c
    }

    #[test]
    fn sessions_survive_reopen_hold_only_hashes_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.json");
        let c = cfg("$argon2id$one");
        let s = Sessions::open(&path);
        let (t, csrf) = s.create("ana", "$argon2id$one", 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t), "the token itself is not on disk");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "private: {mode:o}");
        }
        drop(s);
        let s = Sessions::open(&path);
        let got = s.get(&t, &c, 500_000).expect("survives reopen");
        assert_eq!(
            (got.user.as_str(), got.role, got.csrf),
            ("ana", Role::Operator, csrf)
        );
        assert!(s.get("not-a-token", &c, 500_000).is_none());
        // Idle: 600 s after the last touch.
        assert!(s.get(&t, &c, 500_000 + 600_000).is_none(), "idled out");
        // Absolute: busy, but an hour after login.
        let (t2, _) = s.create("ana", "$argon2id$one", 1_000_000);
        for now in (1_000_000..4_600_000).step_by(300_000) {
            assert!(s.get(&t2, &c, now).is_some(), "busy at {now}");
        }
        assert!(s.get(&t2, &c, 4_600_000).is_none(), "absolute lifetime");
    }

    #[test]
    fn logout_and_password_change_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.json");
        let s = Sessions::open(&path);
        let c = cfg("$argon2id$one");
        let (a, _) = s.create("ana", "$argon2id$one", 0);
        let (b, _) = s.create("ana", "$argon2id$one", 0);
        s.remove(&a, 1);
        let s = Sessions::open(&path);
        assert!(
            s.get(&a, &c, 2).is_none(),
            "logged out stays out after restart"
        );
        assert!(s.get(&b, &c, 2).is_some());
        let changed = cfg("$argon2id$two");
        assert!(
            s.get(&b, &changed, 3).is_none(),
            "password changed: revoked"
        );
        assert!(s.get(&b, &c, 4).is_none(), "and gone for good");
    }
}
