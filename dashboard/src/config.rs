//! Who may log in and how times and words are shown.
//!
//! [`DashboardSection`] is the `[dashboard]` section of the `panorama` file
//! as written (or as `panorama collector`'s flags give it);
//! [`DashboardSection::check`] turns it into the [`DashboardConfig`] the
//! dashboard runs with, every file error with file:line:col.
//!
//! ```toml
//! [dashboard]                  # absent: no users, so no dashboard
//! time_zone = "Asia/Shanghai"  # IANA name; default UTC
//! language = "zh"              # en | zh, for users who have not chosen
//! secure_cookies = true        # behind TLS that sends no X-Forwarded-Proto
//! session_idle_hours = 12
//! session_max_hours = 168      # a login ends after this however busy
//! silent_after_secs = 180      # a host without heartbeat this long is silent
//!
//! [[dashboard.user]]           # hash with `panorama hash-password`
//! name = "ana"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! role = "operator"            # viewer | operator | admin
//! ```

use std::path::PathBuf;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use panorama_model::{ConfigError, ConfigSource};
use serde::Deserialize;
use toml::Spanned;

/// An IANA time zone, as [`DashboardConfig::time_zone`] holds it.
pub use chrono_tz::Tz;

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

/// Hours a login lasts without activity, unless configured.
pub const DEFAULT_SESSION_IDLE_HOURS: u64 = 12;
/// Hours a login lasts however busy (7 days), unless configured.
pub const DEFAULT_SESSION_MAX_HOURS: u64 = 168;
/// Seconds without heartbeat after which a host is silent, unless
/// configured: the agent beats every 10 s and the collector writes a minute
/// within about 20 s, so 3 minutes is no single late write.
pub const DEFAULT_SILENT_AFTER_SECS: u64 = 180;

impl DashboardConfig {
    /// Defaults: UTC, English, sessions idle out after
    /// [`DEFAULT_SESSION_IDLE_HOURS`] and end after
    /// [`DEFAULT_SESSION_MAX_HOURS`], kept in memory, failed logins
    /// throttled, hosts silent after [`DEFAULT_SILENT_AFTER_SECS`].
    pub fn new(users: Vec<User>) -> DashboardConfig {
        DashboardConfig {
            users,
            time_zone: Tz::UTC,
            default_lang: Lang::En,
            secure_cookies: false,
            session_idle: Duration::from_secs(DEFAULT_SESSION_IDLE_HOURS * 3600),
            session_max: Duration::from_secs(DEFAULT_SESSION_MAX_HOURS * 3600),
            sessions_file: None,
            throttle: crate::throttle::ThrottlePolicy::default(),
            silent_after: Duration::from_secs(DEFAULT_SILENT_AFTER_SECS),
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

/// The `[dashboard]` section as written, unchecked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSection {
    /// IANA zone every time is shown in; UTC without one.
    pub time_zone: Option<Spanned<String>>,
    /// `en` or `zh`, for users who have not chosen.
    pub language: Option<Spanned<String>>,
    /// Mark cookies `Secure` regardless of `X-Forwarded-Proto`.
    pub secure_cookies: Option<bool>,
    /// Hours a login lasts without activity.
    pub session_idle_hours: Option<Spanned<u64>>,
    /// Hours a login lasts however busy.
    pub session_max_hours: Option<Spanned<u64>>,
    /// Seconds without heartbeat after which a host is listed as silent.
    pub silent_after_secs: Option<Spanned<u64>>,
    /// Every `[[dashboard.user]]`.
    #[serde(default, rename = "user")]
    pub users: Vec<Spanned<UserSection>>,
}

/// One `[[dashboard.user]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// Login name.
    pub name: Spanned<String>,
    /// argon2 hash in PHC form, from `panorama hash-password`.
    pub password_hash: Spanned<String>,
    /// `viewer`, `operator` or `admin`.
    pub role: Spanned<String>,
}

impl DashboardSection {
    /// Checks the section into the dashboard's configuration (sessions kept
    /// in memory until the caller names a file).
    ///
    /// # Errors
    /// An unknown zone or language, a zero duration, a bad or repeated user
    /// name, a password hash argon2 cannot verify, a role people cannot
    /// have; at its place in the file.
    pub fn check(self, source: &ConfigSource<'_>) -> Result<DashboardConfig, ConfigError> {
        let d = self;
        let invalid = |offset: usize, message: String| source.invalid(offset, message);
        let time_zone = match d.time_zone {
            Some(tz) => tz.get_ref().parse::<Tz>().map_err(|_| {
                invalid(
                    tz.span().start,
                    format!(
                        "{} {:?}: expected an IANA zone such as \"Asia/Shanghai\" or \"UTC\"",
                        source.key("time_zone"),
                        tz.get_ref()
                    ),
                )
            })?,
            None => Tz::UTC,
        };
        let default_lang = match d.language {
            // Only the two codes a user types; `Lang::parse` also takes the
            // browser's `zh-CN`, which the file never needed.
            Some(l) => match l.get_ref().as_str() {
                "en" => Lang::En,
                "zh" => Lang::Zh,
                _ => {
                    return Err(invalid(
                        l.span().start,
                        format!(
                            "{} {:?}: expected \"en\" or \"zh\"",
                            source.key("language"),
                            l.get_ref()
                        ),
                    ));
                }
            },
            None => Lang::En,
        };
        let positive = |v: Option<Spanned<u64>>, what: &str, default: u64| match v {
            Some(v) if *v.get_ref() == 0 => Err(invalid(
                v.span().start,
                format!("{} must be at least 1", source.key(what)),
            )),
            Some(v) => Ok(v.into_inner()),
            None => Ok(default),
        };
        let idle_hours = positive(
            d.session_idle_hours,
            "session_idle_hours",
            DEFAULT_SESSION_IDLE_HOURS,
        )?;
        let max_hours = positive(
            d.session_max_hours,
            "session_max_hours",
            DEFAULT_SESSION_MAX_HOURS,
        )?;
        let silent_secs = positive(
            d.silent_after_secs,
            "silent_after_secs",
            DEFAULT_SILENT_AFTER_SECS,
        )?;
        let mut users: Vec<User> = Vec::new();
        for u in d.users {
            let u = u.into_inner();
            let name = u.name.get_ref();
            if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(invalid(
                    u.name.span().start,
                    format!("user name {name:?}: expected a non-empty name without spaces"),
                ));
            }
            if users.iter().any(|x| &x.name == name) {
                return Err(invalid(
                    u.name.span().start,
                    format!("user {name:?} is defined twice"),
                ));
            }
            if !is_valid_hash(u.password_hash.get_ref()) {
                return Err(invalid(
                    u.password_hash.span().start,
                    format!(
                        "`password_hash` of {name:?}: expected an argon2 hash ($argon2id$...); \
                         make one with `panorama hash-password`"
                    ),
                ));
            }
            let role = Role::parse(u.role.get_ref())
                .filter(|r| *r != Role::Agent)
                .ok_or_else(|| {
                    invalid(
                        u.role.span().start,
                        format!(
                            "`role` {:?}: expected \"viewer\", \"operator\" or \"admin\"",
                            u.role.get_ref()
                        ),
                    )
                })?;
            users.push(User {
                name: u.name.into_inner(),
                password_hash: u.password_hash.into_inner(),
                role,
            });
        }
        let mut cfg = DashboardConfig::new(users);
        cfg.time_zone = time_zone;
        cfg.default_lang = default_lang;
        cfg.secure_cookies = d.secure_cookies.unwrap_or(false);
        cfg.session_idle = Duration::from_secs(idle_hours * 3600);
        cfg.session_max = Duration::from_secs(max_hours * 3600);
        cfg.silent_after = Duration::from_secs(silent_secs);
        Ok(cfg)
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
/// argon2's own error, only if it refuses its parameters, which the
/// defaults never make it.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
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
