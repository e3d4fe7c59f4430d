//! The `panorama` configuration: one TOML file, or the flags of
//! `panorama collector`, or what `panorama demo` builds.
//!
//! Each crate owns its part: the collector every top-level key
//! ([`CollectorSection`]), the rules engine `[rules]` ([`RulesSection`]),
//! the dashboard `[dashboard]` ([`DashboardSection`]). [`FileConfig`] only
//! composes the three raw sections, and [`FileConfig::check`] has each
//! crate check its own into its typed configuration. The file is parsed
//! once; each section is deserialized from its part of the parsed document,
//! so every error still names file:line:col of the whole file.

use std::path::Path;

use panorama_collector::auth::ApiToken;
use panorama_collector::config::{CollectorSection, CollectorSettings, TokenSection};
use panorama_dashboard::DashboardConfig;
use panorama_dashboard::config::{DashboardSection, UserSection};
use panorama_model::{ConfigError, ConfigSource};
use panorama_rules::config::{RulesConfig, RulesSection};
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::CollectorArgs;

/// The whole configuration as written (or as flags or the demo give it),
/// each crate's section unchecked.
#[derive(Debug)]
pub(crate) struct FileConfig {
    /// Every top-level key.
    pub(crate) collector: CollectorSection,
    /// `[rules]`: absent, no rules engine.
    pub(crate) rules: Option<RulesSection>,
    /// `[dashboard]`: absent (or without users), no dashboard.
    pub(crate) dashboard: Option<DashboardSection>,
}

/// The checked configuration the process runs with.
#[derive(Debug)]
pub(crate) struct Config {
    /// Listening, store, tokens, TLS and the collector itself.
    pub(crate) collector: CollectorSettings,
    /// The rules engine's directory and links.
    pub(crate) rules: Option<RulesConfig>,
    /// The dashboard's users and display (sessions kept in memory until
    /// the caller names a file).
    pub(crate) dashboard: Option<DashboardConfig>,
}

impl FileConfig {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    /// Unreadable file, TOML syntax, unknown or missing keys, bad values,
    /// each with file:line:col.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
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
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let source = ConfigSource::File { path, text };
        FileConfig::split(&source, text)?.check(&source)
    }

    /// Splits configuration text into the three sections, unchecked.
    fn split(source: &ConfigSource<'_>, text: &str) -> Result<FileConfig, ConfigError> {
        let toml_error =
            |e: toml::de::Error| source.invalid(e.span().map_or(0, |s| s.start), e.message());
        let root = DeTable::parse(text).map_err(toml_error)?;
        let span = root.span();
        let mut table = root.into_inner();
        let rules = table.remove("rules").map(section).transpose();
        let dashboard = table.remove("dashboard").map(section).transpose();
        let collector = section(Spanned::new(span, DeValue::Table(table)));
        Ok(FileConfig {
            collector: collector.map_err(toml_error)?,
            rules: rules.map_err(toml_error)?,
            dashboard: dashboard.map_err(toml_error)?,
        })
    }

    /// The sections `panorama collector`'s flags give (without `--config`).
    ///
    /// # Errors
    /// A `--api-token` or `--dashboard-user` that is not of its form.
    pub(crate) fn from_flags(args: &CollectorArgs) -> Result<FileConfig, ConfigError> {
        let mut c = CollectorSection::new(&args.data_dir);
        c.listen = Some(args.listen);
        c.collector_id = Some(flag(args.collector_id.clone()));
        c.grace_secs = Some(args.grace_secs);
        c.store.elasticsearch = args.elasticsearch.clone().map(flag);
        c.store.index_prefix = Some(args.index_prefix.clone());
        for (i, t) in args.tokens.iter().enumerate() {
            c.tokens.push(flag(TokenSection {
                name: format!("token{}", i + 1),
                token: Some(t.clone()),
                token_env: None,
                token_file: None,
                role: None,
            }));
        }
        for (i, f) in args.api_tokens.iter().enumerate() {
            let t = ApiToken::from_flag(f, i + 1).map_err(|e| ConfigError::Flag(e.to_string()))?;
            c.tokens.push(flag(TokenSection {
                name: t.name,
                token: Some(t.token),
                token_env: None,
                token_file: None,
                role: Some(flag(t.role.as_str().to_owned())),
            }));
        }
        c.metrics_public = Some(args.metrics_public);
        c.insecure_open = Some(args.insecure_open);
        if let (Some(cert_file), Some(key_file)) = (&args.tls_cert, &args.tls_key) {
            c.tls = Some(flag(panorama_collector::config::TlsSection {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                client_ca_file: args.tls_client_ca.clone(),
            }));
        }
        let rules = args.rules.clone().map(|dir| RulesSection {
            dir,
            dashboard_url: args.dashboard_url.clone().map(flag),
        });
        let dashboard = if args.dashboard_users.is_empty() {
            None
        } else {
            let mut users = Vec::new();
            for u in &args.dashboard_users {
                let mut parts = u.splitn(3, ':');
                let (Some(name), Some(role), Some(hash)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(ConfigError::Flag(format!(
                        "--dashboard-user {u:?}: expected NAME:ROLE:HASH"
                    )));
                };
                users.push(flag(UserSection {
                    name: flag(name.to_owned()),
                    password_hash: flag(hash.to_owned()),
                    role: flag(role.to_owned()),
                }));
            }
            Some(DashboardSection {
                time_zone: Some(flag(args.time_zone.clone())),
                language: Some(flag(args.language.clone())),
                secure_cookies: Some(args.secure_cookies),
                users,
                ..DashboardSection::default()
            })
        };
        Ok(FileConfig {
            collector: c,
            rules,
            dashboard,
        })
    }

    /// Has each crate check its section.
    ///
    /// # Errors
    /// The first section's first error, at its place.
    pub(crate) fn check(self, source: &ConfigSource<'_>) -> Result<Config, ConfigError> {
        Ok(Config {
            collector: self.collector.check(source)?,
            rules: self.rules.map(|r| r.check(source)).transpose()?,
            dashboard: self.dashboard.map(|d| d.check(source)).transpose()?,
        })
    }
}

/// A section from its part of the parsed file; spans stay those of the
/// whole text.
fn section<T: DeserializeOwned>(part: Spanned<DeValue<'_>>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(part))
}

/// A value given on the command line, which has no place in a file.
pub(crate) fn flag<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use panorama_collector::config::StoreChoice;
    use panorama_dashboard::config::{Lang, Role, Tz};

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

    fn parse(text: &str) -> Result<Config, ConfigError> {
        FileConfig::parse(Path::new("collector.toml"), text)
    }

    #[test]
    fn the_example_file_checks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/collector.toml");
        let c = FileConfig::load(&path).unwrap();
        assert_eq!(c.collector.store, StoreChoice::Sqlite);
        assert_eq!(c.collector.collector.tokens.len(), 1);
        let rules = c.rules.expect("a [rules] section");
        assert_eq!(rules.dir, path.parent().unwrap().join("rules"));
        assert_eq!(
            rules.dashboard_url.as_deref(),
            Some("http://127.0.0.1:7070")
        );
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
        assert_eq!(d.time_zone, Tz::Asia__Shanghai);
        assert_eq!(d.default_lang, Lang::Zh);
        assert_eq!(d.users.len(), 1);
        assert_eq!(d.users[0].role, Role::Operator);
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
    fn each_section_reports_its_own_place() {
        for (text, at, needle) in [
            (
                format!("{GOOD}\n[rules]\ndir = \"r\"\ndashboard_url = \"ftp://x\"\n"),
                "collector.toml:14:17",
                "http(s)://",
            ),
            (
                format!("{GOOD}\n[rules]\ndir = \"r\"\nurl = \"x\"\n"),
                "collector.toml:14:1",
                "unknown field",
            ),
            (
                format!("{GOOD}\n[dashbord]\n"),
                "collector.toml:12:2",
                "unknown field",
            ),
            (
                GOOD.replace("data_dir", "# data_dir"),
                "collector.toml:1:1",
                "data_dir",
            ),
        ] {
            let err = parse(&text).expect_err(needle).to_string();
            assert!(err.starts_with(at), "{err:?} should start with {at}");
            assert!(err.contains(needle), "{err:?} should mention {needle}");
        }
    }
}
