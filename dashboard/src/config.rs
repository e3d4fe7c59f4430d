//! Who may log in and how times and words are shown.
//!
//! The file format lives with the rest of panorama's configuration (the
//! `[dashboard]` section in `panorama_collector::config`); this is the
//! checked form the dashboard runs with.

use std::path::PathBuf;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono_tz::Tz;

/// What a user may do: `viewer`, `operator` or `admin` (the roles API
/// tokens have too; `agent` is for agents, not people).
pub use panorama_model::Role;

/// A language of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// Parses `en` or `zh`.
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh" | "zh-CN" | "zh-Hans" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The code used in URLs, cookies and `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }
}

/// One account.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// argon2 hash in PHC form (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
}

/// The checked dashboard configuration.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Accounts; without any, nobody can log in.
    pub users: Vec<User>,
    /// Zone every time is shown in.
    pub time_zone: Tz,
    /// Language for users who have not chosen one.
    pub default_lang: Lang,
    /// Mark cookies `Secure` even without `X-Forwarded-Proto: https` (set
    /// it when a TLS proxy in front does not send that header).
    pub secure_cookies: bool,
    /// How long a login lasts without activity.
    pub session_idle: Duration,
    /// How long a login lasts however busy.
    pub session_max: Duration,
    /// Where sessions are persisted (only hashes of their tokens); `None`
    /// keeps them in memory, so a restart logs everyone out.
    pub sessions_file: Option<PathBuf>,
    /// Failed-login limits.
    pub throttle: crate::throttle::ThrottlePolicy,
    /// A host whose heartbeat is older than this is listed as silent.
    pub silent_after: Duration,
}

impl DashboardConfig {
    /// Defaults: UTC, English, sessions idle out after 12 h and end after
    /// 7 days, kept in memory, failed logins throttled, hosts silent
    /// after 3 minutes (the agent beats every 10 s and the collector writes
    /// a minute within about 20 s).
    pub fn new(users: Vec<User>) -> DashboardConfig {
        DashboardConfig {
            users,
            time_zone: Tz::UTC,
            default_lang: Lang::En,
            secure_cookies: false,
            session_idle: Duration::from_secs(12 * 3600),
            session_max: Duration::from_secs(7 * 86_400),
            sessions_file: None,
            throttle: crate::throttle::ThrottlePolicy::default(),
            silent_after: Duration::from_secs(180),
        }
    }

    /// The user named `name` if `password` is theirs. A missing user costs
    /// the same hash as a wrong password, so timing does not tell names.
    pub fn authenticate(&self, name: &str, password: &str) -> Option<&User> {
        match self.users.iter().find(|u| u.name == name) {
            Some(u) => verify_password(password, &u.password_hash).then_some(u),
            None => {
                let _ = verify_password(password, dummy_hash());
                None
            }
        }
    }
}

/// A hash of nothing anyone types, verified when the user does not exist.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("\u{0}no such user\u{0}").unwrap_or_default())
}

/// Hashes a password with argon2id and a random salt, in PHC form for the
/// config file.
///
/// # Errors
/// Only if argon2 refuses its parameters, which the defaults never make it.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches a PHC hash; a malformed hash matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Whether a string is a PHC hash this dashboard can verify.
pub fn is_valid_hash(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(is_valid_hash(&a));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("correct horsE", &a));
        assert!(!verify_password("x", "not a hash"));
        let cfg = DashboardConfig::new(vec![User {
            name: "ana".into(),
            password_hash: a,
            role: Role::Operator,
        }]);
        assert_eq!(
            cfg.authenticate("ana", "correct horse").map(|u| u.role),
            Some(Role::Operator)
        );
        assert!(cfg.authenticate("ana", "wrong").is_none());
        assert!(cfg.authenticate("bob", "correct horse").is_none());
    }
}
