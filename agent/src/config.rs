//! The agent's configuration: TOML parsed strictly, then validated into
//! [`AgentConfig`] before anything is opened, with every error naming
//! file:line:col and what was expected.
//!
//! ```toml
//! data_dir = "/var/lib/panorama-agent"
//! # agent_id and host default to the machine's host name.
//! parse_threads = 2         # threads one source's backlog is parsed on
//!
//! [collector]
//! urls = ["https://10.0.0.5:7070", "https://10.0.0.6:7070"]  # failover order
//! token = "…"               # an agent-role token of the collector
//! ca_file = "/etc/panorama-agent/ca.pem"        # optional: a private CA
//! client_cert = "/etc/panorama-agent/agent.pem" # optional: mutual TLS
//! client_key = "/etc/panorama-agent/agent.key"
//! max_in_flight = 4         # batches per source shipped before the first is acknowledged
//! compression = "auto"      # zstd, none, or auto: none when every collector is this host
//!
//! [host_metrics]            # optional; on by default every 10 s
//! interval_secs = 10
//!
//! [metrics]                 # optional: the agent's own /metrics
//! listen = "127.0.0.1:9464"
//!
//! [[source]]
//! name = "nginx"
//! paths = ["/var/log/nginx/access.log*"]
//! [source.parse]
//! format = "combined"
//! service = "login"
//!
//! [[probe]]                 # active checks; see crate::probe::config
//! name = "cache1"
//! kind = "redis"
//! target = "127.0.0.1:6379"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use panorama_model::FilePosition;
use serde::Deserialize;
use toml::Spanned;

use crate::parse::{Format, ParseSpec, Pipeline};
use crate::probe::ProbeConfig;
use crate::probe::config::RawProbe;
use crate::ship::{Compression, ShipConfig, ShipTls};

/// The most batches per source `collector.max_in_flight` may allow: each
/// holds its compressed bytes until acknowledged, and the tailer's
/// in-flight byte cap stops reading well before this many full batches.
const MAX_IN_FLIGHT_LIMIT: u64 = 64;

/// The most threads `parse_threads` may name.
const MAX_PARSE_THREADS: u64 = 16;

/// Threads a source's chunks are parsed on by default: a backlog
/// (catching up after a restart, a day of rotated logs) is read about
/// twice as fast where the host has a core to spare. Per source: several
/// sources catching up at once use up to this many threads each.
pub const DEFAULT_PARSE_THREADS: usize = 2;
use crate::tail::{StartAt, TailConfig};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    agent_id: Option<Spanned<String>>,
    host: Option<String>,
    data_dir: PathBuf,
    parse_threads: Option<Spanned<u64>>,
    collector: Spanned<RawCollector>,
    #[serde(default)]
    host_metrics: RawHostMetrics,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default, rename = "source")]
    sources: Vec<Spanned<RawSource>>,
    #[serde(default, rename = "probe")]
    probes: Vec<Spanned<RawProbe>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    urls: Vec<Spanned<String>>,
    token: Option<String>,
    timeout_secs: Option<u64>,
    max_in_flight: Option<Spanned<u64>>,
    #[serde(default)]
    compression: Compression,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostMetrics {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "ten")]
    interval_secs: u64,
    #[serde(default = "host_service")]
    service: String,
}

impl Default for RawHostMetrics {
    fn default() -> RawHostMetrics {
        RawHostMetrics {
            enabled: true,
            interval_secs: 10,
            service: host_service(),
        }
    }
}

fn yes() -> bool {
    true
}
fn ten() -> u64 {
    10
}
fn host_service() -> String {
    "host".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    paths: Spanned<Vec<String>>,
    #[serde(default)]
    start_at: Option<Spanned<String>>,
    max_line_bytes: Option<usize>,
    parse: Spanned<ParseSpec>,
}

/// One configured source, checked.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// How to tail it.
    pub tail: TailConfig,
    /// How to parse it (already validated by building a [`Pipeline`]).
    pub parse: ParseSpec,
}

/// The agent's configuration, checked.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Sent with every batch; the collector deduplicates per (agent, source).
    pub agent_id: String,
    /// The host name events carry.
    pub host: String,
    /// Checkpoints live here.
    pub data_dir: PathBuf,
    /// How many of a source's chunks are parsed and encoded at once, each
    /// on a thread of its own; acknowledged and checkpointed in order all
    /// the same. Multi-line formats (MySQL slow log) parse on one.
    pub parse_threads: usize,
    /// Where to ship.
    pub ship: ShipConfig,
    /// Host sampling interval and service, if enabled.
    pub host_metrics: Option<(Duration, String)>,
    /// Where to serve the agent's own `/metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// The sources.
    pub sources: Vec<SourceConfig>,
    /// The active probes (`[[probe]]`).
    pub probes: Vec<ProbeConfig>,
}

/// A configuration error, with where it is (one type for every crate's
/// configuration, defined beside [`FilePosition`]).
pub use panorama_model::ConfigError;

/// This machine's host name, the default agent id and host.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

impl AgentConfig {
    /// Reads and checks a config file.
    ///
    /// # Errors
    /// Unreadable file, TOML syntax, unknown or missing keys, invalid values,
    /// each with file:line:col.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        AgentConfig::parse(path, &text)
    }

    /// Checks config text read from `path`.
    ///
    /// # Errors
    /// As for [`AgentConfig::load`].
    pub fn parse(path: &Path, text: &str) -> Result<AgentConfig, ConfigError> {
        let at = |offset: usize| FilePosition::at(path, text, offset);
        let invalid = |offset: usize, message: String| ConfigError::Invalid {
            at: at(offset),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(offset, e.message().to_owned())
        })?;
        let host = raw.host.unwrap_or_else(hostname);
        let agent_id = match raw.agent_id {
            Some(id) if id.get_ref().trim().is_empty() => {
                return Err(invalid(
                    id.span().start,
                    "`agent_id` must not be empty".into(),
                ));
            }
            Some(id) => id.into_inner(),
            None => host.clone(),
        };
        let coll_span = raw.collector.span();
        let coll = raw.collector.into_inner();
        if coll.urls.is_empty() {
            return Err(invalid(
                coll_span.start,
                "`collector.urls` needs at least one URL".into(),
            ));
        }
        let mut ship = ShipConfig::new(coll.urls[0].get_ref().clone());
        ship.collectors = Vec::new();
        for url in &coll.urls {
            let u = url.get_ref();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(invalid(
                    url.span().start,
                    format!("collector URL {u:?}: expected http://host:port"),
                ));
            }
            ship.collectors.push(u.clone());
        }
        ship.token = coll.token;
        ship.compression = coll.compression;
        if coll.client_cert.is_some() != coll.client_key.is_some() {
            return Err(invalid(
                coll_span.start,
                "`collector.client_cert` and `collector.client_key` go together".into(),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let relative = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        ship.tls = ShipTls {
            ca_file: coll.ca_file.map(relative),
            client_cert: coll.client_cert.map(relative),
            client_key: coll.client_key.map(relative),
        };
        if let Some(t) = coll.timeout_secs {
            ship.request_timeout = Duration::from_secs(t.max(1));
        }
        if let Some(k) = coll.max_in_flight {
            let span = k.span();
            let k = k.into_inner();
            if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&k) {
                return Err(invalid(
                    span.start,
                    format!(
                        "collector.max_in_flight = {k}: expected 1 to {MAX_IN_FLIGHT_LIMIT} batches"
                    ),
                ));
            }
            ship.max_in_flight = k as usize;
        }
        let parse_threads = match raw.parse_threads {
            None => DEFAULT_PARSE_THREADS,
            Some(n) if (1..=MAX_PARSE_THREADS).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                return Err(invalid(
                    n.span().start,
                    format!(
                        "parse_threads = {}: expected 1 to {MAX_PARSE_THREADS} threads",
                        n.get_ref()
                    ),
                ));
            }
        };
        let mut sources = Vec::new();
        let mut names = std::collections::HashSet::new();
        for s in raw.sources {
            let s = s.into_inner();
            let name_span = s.name.span();
            let name = s.name.into_inner();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(invalid(
                    name_span.start,
                    format!("source name {name:?}: expected letters, digits, '-', '_' or '.'"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(
                    name_span.start,
                    format!("source name {name:?} is used twice"),
                ));
            }
            let paths_span = s.paths.span();
            let paths = s.paths.into_inner();
            if paths.is_empty() {
                return Err(invalid(
                    paths_span.start,
                    "`paths` needs at least one glob".into(),
                ));
            }
            let mut tail = TailConfig::new(&name, paths);
            tail.max_read_chunk_bytes = crate::tail::CATCH_UP_CHUNK_BYTES;
            tail.checkpoint_path = Some(
                raw.data_dir
                    .join("checkpoints")
                    .join(format!("{name}.json")),
            );
            if let Some(sa) = s.start_at {
                tail.start_at = match sa.get_ref().as_str() {
                    "beginning" => StartAt::Beginning,
                    "end" => StartAt::End,
                    other => {
                        return Err(invalid(
                            sa.span().start,
                            format!("`start_at` {other:?}: expected \"beginning\" or \"end\""),
                        ));
                    }
                };
            }
            if let Some(m) = s.max_line_bytes {
                tail.max_line_bytes = m.max(256);
            }
            let parse_span = s.parse.span();
            let parse = s.parse.into_inner();
            // Build once now so a bad regex or template fails at start, with its place.
            Pipeline::new(parse.clone(), &host).map_err(|e| {
                invalid(parse_span.start, format!("[source.parse] of {name:?}: {e}"))
            })?;
            sources.push(SourceConfig { tail, parse });
        }
        let host_metrics = raw.host_metrics.enabled.then(|| {
            (
                Duration::from_secs(raw.host_metrics.interval_secs.max(1)),
                raw.host_metrics.service,
            )
        });
        let mut probes = Vec::new();
        for p in raw.probes {
            let table_at = p.span().start;
            let probe = crate::probe::config::check(p.into_inner(), table_at, &host)
                .map_err(|(offset, message)| invalid(offset, message))?;
            if probes
                .iter()
                .any(|q: &ProbeConfig| q.name == probe.name && q.kind.word() == probe.kind.word())
            {
                return Err(invalid(
                    table_at,
                    format!(
                        "probe {}@{} is defined twice",
                        probe.kind.word(),
                        probe.name
                    ),
                ));
            }
            probes.push(probe);
        }
        Ok(AgentConfig {
            agent_id,
            parse_threads,
            host,
            data_dir: raw.data_dir,
            ship,
            host_metrics,
            metrics_listen: raw.metrics.listen,
            sources,
            probes,
        })
    }

    /// The one-line form: `--tail FORMAT:SERVICE:GLOB` sources, no file.
    ///
    /// # Errors
    /// A `--tail` value that is not `FORMAT:SERVICE:GLOB` with a known format.
    pub fn from_flags(
        collectors: Vec<String>,
        token: Option<String>,
        data_dir: PathBuf,
        tails: &[String],
    ) -> Result<AgentConfig, ConfigError> {
        if collectors.is_empty() {
            return Err(ConfigError::Flag(
                "--collector URL is required without --config".into(),
            ));
        }
        let host = hostname();
        let mut ship = ShipConfig::new(collectors[0].clone());
        ship.collectors = collectors;
        ship.token = token;
        let mut sources = Vec::new();
        for (i, t) in tails.iter().enumerate() {
            let mut parts = t.splitn(3, ':');
            let (Some(format), Some(service), Some(glob)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(ConfigError::Flag(format!(
                    "--tail {t:?}: expected FORMAT:SERVICE:GLOB"
                )));
            };
            let format = Format::ALL
                .into_iter()
                .find(|f| f.as_str() == format)
                .ok_or_else(|| {
                    let known: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
                    ConfigError::Flag(format!(
                        "--tail {t:?}: unknown format {format:?}; expected one of {}",
                        known.join(", ")
                    ))
                })?;
            let name = format!("{}-{service}-{i}", format.as_str());
            let parse = ParseSpec::new(format, service);
            Pipeline::new(parse.clone(), &host)
                .map_err(|e| ConfigError::Flag(format!("--tail {t:?}: {e}")))?;
            let mut tail = TailConfig::new(&name, vec![glob.to_owned()]);
            tail.max_read_chunk_bytes = crate::tail::CATCH_UP_CHUNK_BYTES;
            tail.checkpoint_path = Some(data_dir.join("checkpoints").join(format!("{name}.json")));
            sources.push(SourceConfig { tail, parse });
        }
        Ok(AgentConfig {
            agent_id: host.clone(),
            parse_threads: DEFAULT_PARSE_THREADS,
            host,
            data_dir,
            ship,
            host_metrics: Some((Duration::from_secs(10), host_service())),
            metrics_listen: None,
            sources,
            probes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ship::ZSTD_LEVEL;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(Path::new("agent.toml"), text)
    }

    const GOOD: &str = r#"
data_dir = "/tmp/pa"
agent_id = "web1"

[collector]
urls = ["http://127.0.0.1:7070", "http://127.0.0.1:7071"]
token = "t"

[[source]]
name = "nginx"
paths = ["/var/log/nginx/access.log*"]
[source.parse]
format = "combined"
service = "login"
"#;

    #[test]
    fn a_good_config_checks() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.agent_id, "web1");
        assert_eq!(c.ship.collectors.len(), 2);
        assert_eq!(c.sources.len(), 1);
        assert_eq!(
            c.sources[0].tail.checkpoint_path.as_deref(),
            Some(Path::new("/tmp/pa/checkpoints/nginx.json"))
        );
        assert!(c.host_metrics.is_some());
        assert_eq!(
            c.ship.max_in_flight,
            crate::ship::DEFAULT_MAX_IN_FLIGHT,
            "batches in flight per source by default"
        );
        let c = parse(&GOOD.replace("token = \"t\"", "token = \"t\"\nmax_in_flight = 1")).unwrap();
        assert_eq!(c.ship.max_in_flight, 1, "one at a time, as before");
    }

    #[test]
    fn batches_are_compressed_unless_every_collector_is_this_host() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.ship.compression, Compression::Auto);
        assert_eq!(
            c.ship.zstd_level(),
            None,
            "both collectors of the fixture are this host: {:?}",
            c.ship.collectors
        );
        let mut ship = c.ship.clone();
        for (urls, level) in [
            (vec!["http://127.0.0.1:7071"], None),
            (vec!["https://localhost:7071/", "http://[::1]:7071"], None),
            (vec!["http://127.0.0.2:7071", "http://user@127.0.0.1"], None),
            (
                vec!["http://127.0.0.1:7071", "http://10.0.0.5:7071"],
                Some(ZSTD_LEVEL),
            ),
            (vec!["http://localhost.example.com:7071"], Some(ZSTD_LEVEL)),
            (vec!["http://[2001:db8::1]:7071"], Some(ZSTD_LEVEL)),
        ] {
            ship.collectors = urls.iter().map(|u| u.to_string()).collect();
            assert_eq!(ship.zstd_level(), level, "{urls:?}");
        }
        ship.collectors = vec!["http://127.0.0.1:7071".into()];
        ship.compression = Compression::Zstd;
        assert_eq!(
            ship.zstd_level(),
            Some(ZSTD_LEVEL),
            "asked for on loopback too"
        );
        ship.collectors = vec!["http://10.0.0.5:7071".into()];
        ship.compression = Compression::None;
        assert_eq!(
            ship.zstd_level(),
            None,
            "asked for off for a remote one too"
        );
        let c =
            parse(&GOOD.replace("token = \"t\"", "token = \"t\"\ncompression = \"none\"")).unwrap();
        assert_eq!(c.ship.compression, Compression::None);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let cases = [
            (
                GOOD.replace("token = \"t\"", "tokne = \"t\""),
                "agent.toml:7:1",
                "unknown field `tokne`",
            ),
            (
                GOOD.replace("\"combined\"", "\"nginxx\""),
                "agent.toml:13:10",
                "unknown variant",
            ),
            (
                GOOD.replace("\"http://127.0.0.1:7071\"", "\"127.0.0.1:7071\""),
                "agent.toml:6:34",
                "expected http://",
            ),
            (
                GOOD.replace("name = \"nginx\"", "name = \"ng inx\""),
                "agent.toml:10:8",
                "source name",
            ),
            (
                GOOD.replace("data_dir = \"/tmp/pa\"\n", ""),
                "agent.toml:1:1",
                "missing field `data_dir`",
            ),
            (
                GOOD.replace("paths = [", "paths = "),
                "agent.toml:11:",
                "expected",
            ),
            (
                GOOD.replace("token = \"t\"", "token = \"t\"\nmax_in_flight = 0"),
                "agent.toml:8:17",
                "expected 1 to 64 batches",
            ),
            (
                GOOD.replace("token = \"t\"", "token = \"t\"\ncompression = \"gzip\""),
                "agent.toml:8:15",
                "unknown variant `gzip`",
            ),
            (
                format!("parse_threads = 0\n{GOOD}"),
                "agent.toml:1:17",
                "expected 1 to 16 threads",
            ),
        ];
        for (text, at, needle) in cases {
            let err = parse(&text).expect_err(needle).to_string();
            assert!(err.starts_with(at), "{err:?} should start with {at}");
            assert!(err.contains(needle), "{err:?} should mention {needle}");
        }
    }

    #[test]
    fn a_bad_regex_is_reported_at_its_table() {
        let text = GOOD.replace(
            "format = \"combined\"",
            "format = \"regex\"\npattern = \"(unclosed\"",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("agent.toml:12:"), "{err}");
        assert!(err.contains("pattern"), "{err}");
    }

    #[test]
    fn flags_make_a_config() {
        let c = AgentConfig::from_flags(
            vec!["http://127.0.0.1:7070".into()],
            None,
            "/tmp/x".into(),
            &["combined:login:/var/log/a.log*".into()],
        )
        .unwrap();
        assert_eq!(c.sources[0].tail.globs, vec!["/var/log/a.log*".to_string()]);
        assert!(
            AgentConfig::from_flags(
                vec!["http://x".into()],
                None,
                "/tmp".into(),
                &["xml:login:/a".into()]
            )
            .is_err()
        );
        assert!(
            AgentConfig::from_flags(
                vec!["http://x".into()],
                None,
                "/tmp".into(),
                &["combined:/a".into()]
            )
            .is_err()
        );
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;

    #[test]
    fn the_example_file_checks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agent.toml");
        let c = AgentConfig::load(&path).unwrap();
        assert_eq!(
            c.sources.len(),
            5,
            "url, business, call and two component sources"
        );
        assert_eq!(c.metrics_listen.map(|a| a.port()), Some(9464));
        let kinds: Vec<&str> = c.probes.iter().map(|p| p.kind.word()).collect();
        assert_eq!(kinds, ["redis", "mysql", "http", "tcp", "dns", "process"]);
        assert!(c.probes.iter().all(|p| p.timeout < p.interval));
    }

    #[test]
    fn probe_errors_name_file_line_and_column() {
        let base = "data_dir = \"/tmp/pa\"\n[collector]\nurls = [\"http://127.0.0.1:7070\"]\n[[probe]]\nname = \"c\"\n";
        let cases = [
            (
                "kind = \"redis\"\ntarget = \"127.0.0.1:6379\"\ninterval = \"2s\"\ntimeout = \"2s\"\n",
                "agent.toml:9:11",
                "below `interval`",
            ),
            ("kind = \"rediss\"\n", "agent.toml:6:8", "probe kind"),
            (
                "kind = \"tcp\"\ntarget = \"127.0.0.1\"\n",
                "agent.toml:7:10",
                "host:port",
            ),
            (
                "kind = \"tcp\"\ntarget = \"127.0.0.1:1\"\nurl = \"http://x/\"\n",
                "agent.toml:8:7",
                "does not apply",
            ),
            (
                "kind = \"http\"\nurl = \"ftp://x/\"\n",
                "agent.toml:7:7",
                "expected http",
            ),
            (
                "kind = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval = \"10\"\n",
                "agent.toml:8:12",
                "duration",
            ),
            ("kind = \"process\"\n", "agent.toml:4:1", "exactly one"),
        ];
        for (probe, at, needle) in cases {
            let err = AgentConfig::parse(Path::new("agent.toml"), &format!("{base}{probe}"))
                .expect_err(needle)
                .to_string();
            assert!(err.starts_with(at), "{err:?} should start with {at}");
            assert!(err.contains(needle), "{err:?} should mention {needle}");
        }
    }
}
