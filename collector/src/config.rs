//! The collector's configuration file: TOML parsed strictly, checked before
//! anything is opened, every error with file:line:col.
//!
//! ```toml
//! listen = "0.0.0.0:7070"
//! data_dir = "/var/lib/panorama"
//! collector_id = "c1"          # unique among collectors sharing a store
//! grace_secs = 15              # how long a minute waits for late events
//! retention_days = 14          # minutes: older events are dropped; older indices deleted
//! hourly_retention_days = 400  # hourly rollups compacted from the minutes
//!
//! [store]                      # absent: the embedded SQLite store in data_dir
//! elasticsearch = "http://127.0.0.1:9200"
//! index_prefix = "panorama"
//!
//! metrics_public = false       # true: /metrics without a token (Prometheus)
//! insecure_open = false        # true: serve without any credential off loopback
//!
//! [[token]]                    # none at all: open, and only on loopback
//! name = "web-agents"
//! token_env = "PANORAMA_AGENT_TOKEN"   # or token = "…", or token_file = "…"
//! role = "agent"               # agent (default) | viewer | operator | admin
//!
//! [tls]                        # absent: plain HTTP
//! cert_file = "/etc/panorama/tls/cert.pem"   # re-read when it changes
//! key_file = "/etc/panorama/tls/key.pem"
//! client_ca_file = "/etc/panorama/tls/agents-ca.pem"  # optional: mutual TLS
//!
//! [wal]
//! max_total_mb = 4096
//!
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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use panorama_model::FilePosition;
use serde::Deserialize;
use toml::Spanned;

use crate::CollectorConfig;
use crate::auth::{ApiToken, MIN_TOKEN_LEN};
use crate::serve::TlsFiles;
use panorama_model::Role;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<SocketAddr>,
    data_dir: PathBuf,
    collector_id: Option<Spanned<String>>,
    grace_secs: Option<u64>,
    open_flush_secs: Option<u64>,
    retention_days: Option<Spanned<u32>>,
    hourly_retention_days: Option<Spanned<u32>>,
    #[serde(default)]
    store: RawStore,
    #[serde(default, rename = "token")]
    tokens: Vec<Spanned<RawToken>>,
    metrics_public: Option<bool>,
    insecure_open: Option<bool>,
    tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    wal: RawWal,
    rules: Option<RawRules>,
    dashboard: Option<RawDashboard>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    time_zone: Option<Spanned<String>>,
    language: Option<Spanned<String>>,
    secure_cookies: Option<bool>,
    session_idle_hours: Option<Spanned<u64>>,
    session_max_hours: Option<Spanned<u64>>,
    silent_after_secs: Option<Spanned<u64>>,
    #[serde(default, rename = "user")]
    users: Vec<Spanned<RawUser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password_hash: Spanned<String>,
    role: Spanned<String>,
}

/// The `[dashboard]` section: who may log in and how pages show times and
/// words. Checked here, with positions, like the rest of the file;
/// `panorama` hands it to the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSection {
    /// Accounts.
    pub users: Vec<DashboardUser>,
    /// IANA time zone every time is shown in.
    pub time_zone: chrono_tz::Tz,
    /// `en` or `zh`.
    pub language: String,
    /// Mark cookies `Secure` regardless of `X-Forwarded-Proto`.
    pub secure_cookies: bool,
    /// Idle time after which a login ends.
    pub session_idle: Duration,
    /// Time after which a login ends however busy.
    pub session_max: Duration,
    /// Heartbeat age after which a host is listed as silent.
    pub silent_after: Duration,
}

/// One `[[dashboard.user]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardUser {
    /// Login name.
    pub name: String,
    /// argon2 hash in PHC form.
    pub password_hash: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    dir: PathBuf,
    dashboard_url: Option<Spanned<String>>,
}

/// The `[rules]` section: where alert rules live. The collector does not
/// evaluate them; `panorama` hands this to the rules engine, and it is
/// checked here only so that one file has one parser and one error style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesSection {
    /// The rules directory (relative paths are relative to the config file).
    pub dir: PathBuf,
    /// Base URL of the dashboard, for links in notifications.
    pub dashboard_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    elasticsearch: Option<Spanned<String>>,
    index_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    role: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
}

/// Who may call what, from the file: every `[[token]]` with its role, and
/// the two switches that loosen the secure default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSection {
    /// Every token, any role (the agent ones are also in
    /// [`CollectorConfig::tokens`]).
    pub tokens: Vec<ApiToken>,
    /// `/metrics` without a token.
    pub metrics_public: bool,
    /// Serve without credentials on a non-loopback address.
    pub insecure_open: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWal {
    max_total_mb: Option<u64>,
    segment_mb: Option<u64>,
}

/// Where the collector keeps its rollups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded SQLite store under the data directory.
    Sqlite,
    /// An Elasticsearch cluster.
    Elasticsearch {
        /// Base URL.
        url: String,
        /// Index name prefix.
        index_prefix: String,
    },
}

/// A checked configuration file.
#[derive(Debug, Clone)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The store.
    pub store: StoreChoice,
    /// Everything else.
    pub collector: CollectorConfig,
    /// Alert rules, if configured.
    pub rules: Option<RulesSection>,
    /// The dashboard, if configured.
    pub dashboard: Option<DashboardSection>,
    /// Tokens and their roles.
    pub auth: AuthSection,
    /// TLS, if configured.
    pub tls: Option<TlsFiles>,
}

/// A configuration error with its place.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Something in it is wrong.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: FilePosition,
        /// What, and what was expected.
        message: String,
    },
}

impl FileConfig {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    /// Unreadable file, TOML syntax, unknown or missing keys, bad values.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        FileConfig::parse(path, &text)
    }

    /// Checks configuration text read from `path`.
    ///
    /// # Errors
    /// As for [`FileConfig::load`].
    pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        let invalid = |offset: usize, message: String| ConfigError::Invalid {
            at: FilePosition::at(path, text, offset),
            message,
        };
        let raw: Raw = toml::from_str(text)
            .map_err(|e| invalid(e.span().map_or(0, |s| s.start), e.message().to_owned()))?;
        let id = match raw.collector_id {
            Some(id) => {
                let ok = !id.get_ref().is_empty()
                    && id
                        .get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    return Err(invalid(
                        id.span().start,
                        format!(
                            "`collector_id` {:?}: expected letters, digits, '-', '_' or '.'",
                            id.get_ref()
                        ),
                    ));
                }
                id.into_inner()
            }
            None => "c1".into(),
        };
        let mut c = CollectorConfig::new(id, &raw.data_dir);
        if let Some(g) = raw.grace_secs {
            c.grace = Duration::from_secs(g);
        }
        if let Some(secs) = raw.open_flush_secs {
            c.open_flush_interval = (secs > 0).then(|| Duration::from_secs(secs));
        }
        if let Some(r) = raw.retention_days {
            if *r.get_ref() == 0 {
                return Err(invalid(
                    r.span().start,
                    "`retention_days` must be at least 1".into(),
                ));
            }
            c.retention_days = r.into_inner();
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let relative = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        if let Some(r) = raw.hourly_retention_days {
            if *r.get_ref() < c.retention_days {
                return Err(invalid(
                    r.span().start,
                    "`hourly_retention_days` must be at least `retention_days`".into(),
                ));
            }
            c.compact.hourly_retention_days = r.into_inner();
        }
        let mut tokens = HashMap::new();
        let mut api_tokens: Vec<ApiToken> = Vec::new();
        for t in raw.tokens {
            let span = t.span();
            let t = t.into_inner();
            let role = match &t.role {
                None => Role::Agent,
                Some(r) => Role::parse(r.get_ref()).ok_or_else(|| {
                    invalid(
                        r.span().start,
                        format!(
                            "`role` {:?}: expected \"agent\", \"viewer\", \"operator\" or \"admin\"",
                            r.get_ref()
                        ),
                    )
                })?,
            };
            let secret = match (t.token, t.token_env, t.token_file) {
                (Some(v), None, None) => v,
                (None, Some(var), None) => std::env::var(&var).map_err(|_| {
                    invalid(
                        span.start,
                        format!(
                            "token {:?}: environment variable {var} (token_env) is not set",
                            t.name
                        ),
                    )
                })?,
                (None, None, Some(file)) => {
                    let file = relative(file);
                    std::fs::read_to_string(&file)
                        .map(|v| v.trim().to_owned())
                        .map_err(|e| {
                            invalid(
                                span.start,
                                format!("token {:?}: token_file {}: {e}", t.name, file.display()),
                            )
                        })?
                }
                _ => {
                    return Err(invalid(
                        span.start,
                        format!(
                            "token {:?}: give exactly one of `token`, `token_env`, `token_file`",
                            t.name
                        ),
                    ));
                }
            };
            if secret.len() < MIN_TOKEN_LEN {
                return Err(invalid(
                    span.start,
                    format!(
                        "token {:?}: at least {MIN_TOKEN_LEN} characters expected",
                        t.name
                    ),
                ));
            }
            if api_tokens.iter().any(|x| x.token == secret) {
                return Err(invalid(
                    span.start,
                    format!("token of {:?} is already given to another producer", t.name),
                ));
            }
            if role == Role::Agent {
                tokens.insert(secret.clone(), t.name.clone());
            }
            api_tokens.push(ApiToken {
                name: t.name,
                token: secret,
                role,
            });
        }
        c.tokens = tokens;
        let auth = AuthSection {
            tokens: api_tokens,
            metrics_public: raw.metrics_public.unwrap_or(false),
            insecure_open: raw.insecure_open.unwrap_or(false),
        };
        let tls = raw.tls.map(|t| {
            let t = t.into_inner();
            TlsFiles {
                cert_file: relative(t.cert_file),
                key_file: relative(t.key_file),
                client_ca_file: t.client_ca_file.map(relative),
            }
        });
        if let Some(mb) = raw.wal.max_total_mb {
            c.wal.max_total_bytes = mb.max(1) << 20;
        }
        if let Some(mb) = raw.wal.segment_mb {
            c.wal.segment_max_bytes = mb.max(1) << 20;
        }
        let store = match raw.store.elasticsearch {
            Some(url) => {
                if !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
                {
                    return Err(invalid(
                        url.span().start,
                        format!(
                            "`elasticsearch` {:?}: expected http://host:port",
                            url.get_ref()
                        ),
                    ));
                }
                StoreChoice::Elasticsearch {
                    url: url.into_inner(),
                    index_prefix: raw.store.index_prefix.unwrap_or_else(|| "panorama".into()),
                }
            }
            None => StoreChoice::Sqlite,
        };
        let rules = match raw.rules {
            Some(r) => {
                if let Some(u) = &r.dashboard_url
                    && !(u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://"))
                {
                    return Err(invalid(
                        u.span().start,
                        format!(
                            "`dashboard_url` {:?}: expected http(s)://host:port",
                            u.get_ref()
                        ),
                    ));
                }
                let dir = if r.dir.is_relative() {
                    path.parent().unwrap_or(Path::new(".")).join(&r.dir)
                } else {
                    r.dir
                };
                Some(RulesSection {
                    dir,
                    dashboard_url: r.dashboard_url.map(Spanned::into_inner),
                })
            }
            None => None,
        };
        let dashboard = match raw.dashboard {
            Some(d) => Some(check_dashboard(d, &invalid)?),
            None => None,
        };
        Ok(FileConfig {
            rules,
            dashboard,
            auth,
            tls,
            listen: raw
                .listen
                .unwrap_or_else(|| "127.0.0.1:7070".parse().expect("a valid address")),
            store,
            collector: c,
        })
    }
}

fn check_dashboard(
    d: RawDashboard,
    invalid: &impl Fn(usize, String) -> ConfigError,
) -> Result<DashboardSection, ConfigError> {
    let time_zone = match d.time_zone {
        Some(tz) => tz.get_ref().parse::<chrono_tz::Tz>().map_err(|_| {
            invalid(
                tz.span().start,
                format!(
                    "`time_zone` {:?}: expected an IANA zone such as \"Asia/Shanghai\" or \"UTC\"",
                    tz.get_ref()
                ),
            )
        })?,
        None => chrono_tz::Tz::UTC,
    };
    let language = match d.language {
        Some(l) if ["en", "zh"].contains(&l.get_ref().as_str()) => l.into_inner(),
        Some(l) => {
            return Err(invalid(
                l.span().start,
                format!("`language` {:?}: expected \"en\" or \"zh\"", l.get_ref()),
            ));
        }
        None => "en".into(),
    };
    let positive = |v: Option<Spanned<u64>>, what: &str, default: u64| match v {
        Some(v) if *v.get_ref() == 0 => Err(invalid(
            v.span().start,
            format!("`{what}` must be at least 1"),
        )),
        Some(v) => Ok(v.into_inner()),
        None => Ok(default),
    };
    let idle_hours = positive(d.session_idle_hours, "session_idle_hours", 12)?;
    let max_hours = positive(d.session_max_hours, "session_max_hours", 168)?;
    let silent_secs = positive(d.silent_after_secs, "silent_after_secs", 180)?;
    let mut users: Vec<DashboardUser> = Vec::new();
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
        if !u.password_hash.get_ref().starts_with("$argon2") {
            return Err(invalid(
                u.password_hash.span().start,
                format!(
                    "`password_hash` of {name:?}: expected an argon2 hash ($argon2id$...); \
                     make one with `panorama hash-password`"
                ),
            ));
        }
        if !["viewer", "operator", "admin"].contains(&u.role.get_ref().as_str()) {
            return Err(invalid(
                u.role.span().start,
                format!(
                    "`role` {:?}: expected \"viewer\", \"operator\" or \"admin\"",
                    u.role.get_ref()
                ),
            ));
        }
        users.push(DashboardUser {
            name: u.name.into_inner(),
            password_hash: u.password_hash.into_inner(),
            role: u.role.into_inner(),
        });
    }
    Ok(DashboardSection {
        users,
        time_zone,
        language,
        secure_cookies: d.secure_cookies.unwrap_or(false),
        session_idle: Duration::from_secs(idle_hours * 3600),
        session_max: Duration::from_secs(max_hours * 3600),
        silent_after: Duration::from_secs(silent_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"listen = "127.0.0.1:7071"
data_dir = "/tmp/pc"
collector_id = "c2"

[store]
elasticsearch = "http://127.0.0.1:9200"

[[token]]
name = "web-agents"
token = "0123456789abcdef"
"#;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(Path::new("collector.toml"), text)
    }

    #[test]
    fn a_good_file_checks() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.listen.port(), 7071);
        assert_eq!(c.collector.id, "c2");
        assert_eq!(
            c.collector
                .tokens
                .get("0123456789abcdef")
                .map(String::as_str),
            Some("web-agents")
        );
        assert!(matches!(c.store, StoreChoice::Elasticsearch { .. }));
    }

    const DASH: &str = r#"
[dashboard]
time_zone = "Asia/Shanghai"
language = "zh"

[[dashboard.user]]
name = "ana"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
role = "operator"
"#;

    #[test]
    fn the_dashboard_section_checks() {
        let c = parse(&format!("{GOOD}{DASH}")).unwrap();
        let d = c.dashboard.expect("a dashboard section");
        assert_eq!(d.time_zone, chrono_tz::Tz::Asia__Shanghai);
        assert_eq!(d.language, "zh");
        assert_eq!(d.users.len(), 1);
        assert_eq!(d.users[0].role, "operator");
        assert_eq!(d.silent_after, Duration::from_secs(180));
        for (from, to, at, needle) in [
            (
                "Asia/Shanghai",
                "Mars/Olympus",
                "collector.toml:13:13",
                "IANA zone",
            ),
            (
                "\"zh\"",
                "\"fr\"",
                "collector.toml:14:12",
                "\"en\" or \"zh\"",
            ),
            ("\"operator\"", "\"root\"", "collector.toml:19:8", "viewer"),
            (
                "\"$argon2id$v=19",
                "\"plain$v=19",
                "collector.toml:18:17",
                "hash-password",
            ),
            ("language", "lang", "collector.toml:14:1", "unknown field"),
        ] {
            let text = format!("{GOOD}{}", DASH.replace(from, to));
            let err = parse(&text).expect_err(needle).to_string();
            assert!(err.starts_with(at), "{err:?} should start with {at}");
            assert!(err.contains(needle), "{err:?} should mention {needle}");
        }
    }

    #[test]
    fn tokens_have_roles_and_secrets_from_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ops.token"), "from-a-file-0001\n").unwrap();
        // A variable every test process has (setting one is unsafe code).
        let path = std::env::var("PATH").unwrap();
        let text = format!(
            r#"{GOOD}
[[token]]
name = "grafana"
token_env = "PATH"
role = "viewer"

[[token]]
name = "ops"
token_file = "ops.token"
role = "operator"

metrics_public = true
"#
        )
        .replace("metrics_public = true\n", "");
        let text = format!(
            "metrics_public = true\n{text}\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"/k.pem\"\n"
        );
        let c = FileConfig::parse(&dir.path().join("collector.toml"), &text).unwrap();
        let roles: Vec<_> = c
            .auth
            .tokens
            .iter()
            .map(|t| (t.name.as_str(), t.token.as_str(), t.role))
            .collect();
        assert_eq!(
            roles,
            [
                ("web-agents", "0123456789abcdef", Role::Agent),
                ("grafana", path.as_str(), Role::Viewer),
                ("ops", "from-a-file-0001", Role::Operator),
            ]
        );
        assert_eq!(c.collector.tokens.len(), 1, "only agent tokens ingest");
        assert!(c.auth.metrics_public && !c.auth.insecure_open);
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert_file, dir.path().join("c.pem"));
        assert_eq!(tls.key_file, Path::new("/k.pem"));
        for (add, needle) in [
            ("role = \"root\"", "expected \"agent\""),
            ("token_env = \"PANORAMA_TEST_UNSET_VAR\"", "exactly one"),
        ] {
            let text = GOOD.replace(
                "token = \"0123456789abcdef\"",
                &format!("token = \"0123456789abcdef\"\n{add}"),
            );
            let err = parse(&text).expect_err(needle).to_string();
            assert!(err.starts_with("collector.toml:"), "{err}");
            assert!(err.contains(needle), "{err:?} should mention {needle}");
        }
        let unset = GOOD.replace(
            "token = \"0123456789abcdef\"",
            "token_env = \"PANORAMA_TEST_UNSET_VAR\"",
        );
        let err = parse(&unset).unwrap_err().to_string();
        assert!(
            err.contains("PANORAMA_TEST_UNSET_VAR") && err.contains("not set"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_their_place() {
        for (text, at, needle) in [
            (
                GOOD.replace("collector_id", "colector_id"),
                "collector.toml:3:1",
                "unknown field",
            ),
            (
                GOOD.replace("\"c2\"", "\"c 2\""),
                "collector.toml:3:16",
                "collector_id",
            ),
            (
                GOOD.replace("\"http://127.0.0.1:9200\"", "\"127.0.0.1:9200\""),
                "collector.toml:6:17",
                "expected http://",
            ),
            (
                GOOD.replace("0123456789abcdef", "short"),
                "collector.toml:8:1",
                "at least 8",
            ),
            (
                GOOD.replace("127.0.0.1:7071", "localhost"),
                "collector.toml:1:10",
                "socket address",
            ),
        ] {
            let err = parse(&text).expect_err(needle).to_string();
            assert!(err.starts_with(at), "{err:?} should start with {at}");
            assert!(err.contains(needle), "{err:?} should mention {needle}");
        }
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;

    #[test]
    fn the_example_file_checks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/collector.toml");
        let c = FileConfig::load(&path).unwrap();
        assert_eq!(c.store, StoreChoice::Sqlite);
        assert_eq!(c.collector.tokens.len(), 1);
    }
}
