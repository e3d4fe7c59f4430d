//! The collector's part of the `panorama` configuration file: every
//! top-level key except the `[rules]` and `[dashboard]` sections, which the
//! rules engine and the dashboard own. [`CollectorSection`] is the raw form,
//! filled by the file or by `panorama collector`'s flags;
//! [`CollectorSection::check`] turns it into [`CollectorSettings`] before
//! anything is opened, every file error with file:line:col.
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
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use panorama_model::{ConfigSource, Role};
use serde::Deserialize;
use toml::Spanned;

use crate::CollectorConfig;
use crate::auth::{ApiToken, MIN_TOKEN_LEN};
use crate::serve::TlsFiles;

/// A configuration error, with where it is (one type for every crate's
/// configuration).
pub use panorama_model::ConfigError;

/// The address served when neither the file nor a flag names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// The collector id when none is given.
pub const DEFAULT_COLLECTOR_ID: &str = "c1";

/// The Elasticsearch index prefix when none is given.
pub const DEFAULT_INDEX_PREFIX: &str = "panorama";

/// The collector's keys as written (or as the flags give them), unchecked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// Address to listen on; [`DEFAULT_LISTEN`] without one.
    pub listen: Option<SocketAddr>,
    /// Where the WAL, the ledger and the embedded store live.
    pub data_dir: PathBuf,
    /// This collector's id, unique among collectors sharing a store.
    pub collector_id: Option<Spanned<String>>,
    /// Seconds a minute stays open for late events.
    pub grace_secs: Option<u64>,
    /// Seconds between writes of open minutes; 0 writes a minute only
    /// once its grace has passed.
    pub open_flush_secs: Option<u64>,
    /// Days of minute rollups kept.
    pub retention_days: Option<Spanned<u32>>,
    /// Days of hourly rollups kept.
    pub hourly_retention_days: Option<Spanned<u32>>,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreSection,
    /// Every `[[token]]`.
    #[serde(default, rename = "token")]
    pub tokens: Vec<Spanned<TokenSection>>,
    /// `/metrics` without a token.
    pub metrics_public: Option<bool>,
    /// Serve without any credential on a non-loopback address.
    pub insecure_open: Option<bool>,
    /// `[tls]`.
    pub tls: Option<Spanned<TlsSection>>,
    /// `[wal]`.
    #[serde(default)]
    pub wal: WalSection,
}

/// `[store]`: absent, the embedded SQLite store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Base URL of an Elasticsearch cluster.
    pub elasticsearch: Option<Spanned<String>>,
    /// Index name prefix; [`DEFAULT_INDEX_PREFIX`] without one.
    pub index_prefix: Option<String>,
}

/// One `[[token]]`: a name, exactly one source of the secret, a role.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// Who holds it (logs and refusals name it).
    pub name: String,
    /// The secret itself.
    pub token: Option<String>,
    /// An environment variable holding the secret.
    pub token_env: Option<String>,
    /// A file holding the secret (relative to the config file).
    pub token_file: Option<PathBuf>,
    /// `agent` (default), `viewer`, `operator` or `admin`.
    pub role: Option<Spanned<String>>,
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// Its PEM private key.
    pub key_file: PathBuf,
    /// PEM CAs client certificates must be signed by (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

/// `[wal]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalSection {
    /// Total size past which ingest answers 503.
    pub max_total_mb: Option<u64>,
    /// Size of one segment.
    pub segment_mb: Option<u64>,
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

/// The collector's checked settings.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The store.
    pub store: StoreChoice,
    /// Everything else.
    pub collector: CollectorConfig,
    /// Tokens and their roles.
    pub auth: AuthSection,
    /// TLS, if configured.
    pub tls: Option<TlsFiles>,
}

impl CollectorSection {
    /// The section with nothing set but the data directory: what flags
    /// start from.
    pub fn new(data_dir: impl Into<PathBuf>) -> CollectorSection {
        CollectorSection {
            listen: None,
            data_dir: data_dir.into(),
            collector_id: None,
            grace_secs: None,
            open_flush_secs: None,
            retention_days: None,
            hourly_retention_days: None,
            store: StoreSection::default(),
            tokens: Vec::new(),
            metrics_public: None,
            insecure_open: None,
            tls: None,
            wal: WalSection::default(),
        }
    }

    /// Checks the section, reading token secrets from their variables and
    /// files (relative to the config file).
    ///
    /// # Errors
    /// A bad collector id, retention, token, or Elasticsearch URL, at its
    /// place in the file.
    pub fn check(self, source: &ConfigSource<'_>) -> Result<CollectorSettings, ConfigError> {
        let raw = self;
        let invalid = |offset: usize, message: String| source.invalid(offset, message);
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
                            "{} {:?}: expected letters, digits, '-', '_' or '.'",
                            source.key("collector_id"),
                            id.get_ref()
                        ),
                    ));
                }
                id.into_inner()
            }
            None => DEFAULT_COLLECTOR_ID.into(),
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
                    format!("{} must be at least 1", source.key("retention_days")),
                ));
            }
            c.retention_days = r.into_inner();
        }
        if let Some(r) = raw.hourly_retention_days {
            if *r.get_ref() < c.retention_days {
                return Err(invalid(
                    r.span().start,
                    format!(
                        "{} must be at least {}",
                        source.key("hourly_retention_days"),
                        source.key("retention_days")
                    ),
                ));
            }
            c.compact.hourly_retention_days = r.into_inner();
        }
        let mut tokens = HashMap::new();
        let mut api_tokens: Vec<ApiToken> = Vec::new();
        for t in raw.tokens {
            let span = t.span();
            let t = t.into_inner();
            // `--token` has always taken a secret of any length (test set-ups
            // on loopback use short ones); every other token is held to
            // MIN_TOKEN_LEN.
            let any_length = source.is_flags() && t.role.is_none();
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
                    let file = source.resolve(file);
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
            if secret.len() < MIN_TOKEN_LEN && !any_length {
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
                cert_file: source.resolve(t.cert_file),
                key_file: source.resolve(t.key_file),
                client_ca_file: t.client_ca_file.map(|f| source.resolve(f)),
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
                            "{} {:?}: expected http://host:port",
                            source.key("elasticsearch"),
                            url.get_ref()
                        ),
                    ));
                }
                StoreChoice::Elasticsearch {
                    url: url.into_inner(),
                    index_prefix: raw
                        .store
                        .index_prefix
                        .unwrap_or_else(|| DEFAULT_INDEX_PREFIX.into()),
                }
            }
            None => StoreChoice::Sqlite,
        };
        Ok(CollectorSettings {
            auth,
            tls,
            listen: raw
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address")),
            store,
            collector: c,
        })
    }
}

/// Parses `text` as a file holding only the collector's keys: for tests and
/// tools that check the collector alone.
///
/// # Errors
/// TOML syntax, unknown or missing keys, and everything
/// [`CollectorSection::check`] refuses.
pub fn parse(path: &Path, text: &str) -> Result<CollectorSettings, ConfigError> {
    let source = ConfigSource::File { path, text };
    let raw: CollectorSection = toml::from_str(text)
        .map_err(|e| source.invalid(e.span().map_or(0, |s| s.start), e.message()))?;
    raw.check(&source)
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

    fn parse(text: &str) -> Result<CollectorSettings, ConfigError> {
        super::parse(Path::new("collector.toml"), text)
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
        let c = super::parse(&dir.path().join("collector.toml"), &text).unwrap();
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
