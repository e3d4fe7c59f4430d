//! `[[probe]]` tables: parsed strictly, then checked into [`ProbeConfig`]
//! before anything is opened.
//!
//! ```toml
//! [[probe]]
//! name = "cache1"            # the series' instance: redis@cache1
//! kind = "redis"             # http, tcp, dns, redis, mysql, process
//! target = "127.0.0.1:6379"
//! interval = "10s"           # default 10s
//! timeout = "2s"             # default the smaller of 5s and half the interval
//! jitter = "1s"              # default a tenth of the interval
//! service = "game"           # default the agent's host
//! ```
//!
//! Kind-specific keys: `http` takes `url` (instead of `target`), `method`
//! (GET), `expect_status` (200), `body_regex`, `tls_verify` (true) and
//! `ca_file`; `dns` takes `target` (the name to resolve) and `server`
//! (`IP:PORT`, else the system resolver); `redis` and `mysql` take
//! `password_env` (an environment variable holding the password), `mysql`
//! also `user`; `process` takes `process` (a name) or `pid_file`. A key
//! given for a kind that does not use it is an error, not ignored.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// A `[[probe]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    name: Spanned<String>,
    kind: Spanned<String>,
    target: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    service: Option<String>,
    method: Option<Spanned<String>>,
    expect_status: Option<Spanned<u16>>,
    body_regex: Option<Spanned<String>>,
    tls_verify: Option<Spanned<bool>>,
    ca_file: Option<Spanned<PathBuf>>,
    server: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    process: Option<Spanned<String>>,
    pid_file: Option<Spanned<PathBuf>>,
}

/// A probe, checked.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The instance in series names (`redis@cache1`).
    pub name: String,
    /// The service its events belong to.
    pub service: String,
    /// Time between the starts of two runs (before jitter).
    pub interval: Duration,
    /// Longest a run may take; always below `interval`.
    pub timeout: Duration,
    /// Up to this much is added at random to each wait, so probes of many
    /// agents do not hit one target in step.
    pub jitter: Duration,
    /// What to probe and how.
    pub kind: ProbeKind,
}

/// What a probe checks.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// An HTTP(S) request.
    Http(HttpSpec),
    /// A TCP connect.
    Tcp {
        /// `host:port`.
        target: String,
    },
    /// A name resolution.
    Dns {
        /// The name to resolve.
        name: String,
        /// A DNS server to ask over UDP; the system resolver without.
        server: Option<SocketAddr>,
    },
    /// Redis `PING` and `INFO`.
    Redis {
        /// `host:port`.
        target: String,
        /// Environment variable holding the password (`AUTH`).
        password_env: Option<String>,
    },
    /// MySQL/MariaDB connect, `SELECT 1` and `SHOW GLOBAL STATUS`.
    Mysql {
        /// `host:port`.
        target: String,
        /// User name (default `panorama`).
        user: String,
        /// Environment variable holding the password.
        password_env: Option<String>,
    },
    /// A local process.
    Process(ProcessMatch),
}

impl ProbeKind {
    /// The kind's word in series names (`redis@cache1`).
    pub fn word(&self) -> &'static str {
        match self {
            ProbeKind::Http(_) => "http",
            ProbeKind::Tcp { .. } => "tcp",
            ProbeKind::Dns { .. } => "dns",
            ProbeKind::Redis { .. } => "redis",
            ProbeKind::Mysql { .. } => "mysql",
            ProbeKind::Process(_) => "process",
        }
    }
}

/// An HTTP probe's request and expectations.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// The method (`GET`).
    pub method: String,
    /// The URL.
    pub url: String,
    /// The status that counts as up.
    pub expect_status: u16,
    /// A regex the body must match, if any.
    pub body_regex: Option<regex::Regex>,
    /// Verify the server's certificate (default true).
    pub tls_verify: bool,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
}

/// How a process probe finds its process.
#[derive(Debug, Clone)]
pub enum ProcessMatch {
    /// Every process whose name (`comm`, or the first word of its command
    /// line) is this.
    Name(String),
    /// The process whose pid this file holds.
    PidFile(PathBuf),
}

/// The default interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// `10s`, `500ms`, `2m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = s[..digits].parse().ok()?;
    match &s[digits..] {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

/// Checks one `[[probe]]`; errors carry the byte offset of the offending
/// value and a message, which the caller turns into file:line:col.
pub(crate) fn check(
    raw: RawProbe,
    table_at: usize,
    host: &str,
) -> Result<ProbeConfig, (usize, String)> {
    let name_at = raw.name.span().start;
    let name = raw.name.into_inner();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err((
            name_at,
            format!("probe name {name:?}: expected letters, digits, '-', '_' or '.'"),
        ));
    }
    let duration =
        |v: &Option<Spanned<String>>, key: &str| -> Result<Option<Duration>, (usize, String)> {
            match v {
                None => Ok(None),
                Some(v) => match parse_duration(v.get_ref()) {
                    Some(d) if !d.is_zero() => Ok(Some(d)),
                    _ => Err((
                        v.span().start,
                        format!(
                            "`{key}` {:?}: expected a duration such as \"10s\" or \"500ms\"",
                            v.get_ref()
                        ),
                    )),
                },
            }
        };
    let interval = duration(&raw.interval, "interval")?.unwrap_or(DEFAULT_INTERVAL);
    let timeout = match duration(&raw.timeout, "timeout")? {
        Some(t) if t >= interval => {
            let at = raw.timeout.as_ref().map_or(table_at, |t| t.span().start);
            return Err((
                at,
                format!(
                    "`timeout` must be below `interval` ({} ms ≥ {} ms): two runs of a probe never overlap",
                    t.as_millis(),
                    interval.as_millis()
                ),
            ));
        }
        Some(t) => t,
        None => (interval / 2).min(Duration::from_secs(5)),
    };
    let jitter = duration(&raw.jitter, "jitter")?.unwrap_or(interval / 10);
    let kind_at = raw.kind.span().start;
    let kind_word = raw.kind.into_inner();
    // Which optional keys each kind takes, so that a key meant for another
    // kind is reported instead of silently doing nothing.
    let given: [(&str, Option<usize>); 12] = [
        ("target", raw.target.as_ref().map(|v| v.span().start)),
        ("url", raw.url.as_ref().map(|v| v.span().start)),
        ("method", raw.method.as_ref().map(|v| v.span().start)),
        (
            "expect_status",
            raw.expect_status.as_ref().map(|v| v.span().start),
        ),
        (
            "body_regex",
            raw.body_regex.as_ref().map(|v| v.span().start),
        ),
        (
            "tls_verify",
            raw.tls_verify.as_ref().map(|v| v.span().start),
        ),
        ("ca_file", raw.ca_file.as_ref().map(|v| v.span().start)),
        ("server", raw.server.as_ref().map(|v| v.span().start)),
        ("user", raw.user.as_ref().map(|v| v.span().start)),
        (
            "password_env",
            raw.password_env.as_ref().map(|v| v.span().start),
        ),
        ("process", raw.process.as_ref().map(|v| v.span().start)),
        ("pid_file", raw.pid_file.as_ref().map(|v| v.span().start)),
    ];
    let allowed: &[&str] = match kind_word.as_str() {
        "http" => &[
            "url",
            "method",
            "expect_status",
            "body_regex",
            "tls_verify",
            "ca_file",
        ],
        "tcp" => &["target"],
        "dns" => &["target", "server"],
        "redis" => &["target", "password_env"],
        "mysql" => &["target", "user", "password_env"],
        "process" => &["process", "pid_file"],
        other => {
            return Err((
                kind_at,
                format!(
                    "probe kind {other:?}: expected one of http, tcp, dns, redis, mysql, process"
                ),
            ));
        }
    };
    if let Some((key, Some(at))) = given
        .iter()
        .find(|(key, at)| at.is_some() && !allowed.contains(key))
    {
        return Err((
            *at,
            format!(
                "`{key}` does not apply to a {kind_word} probe (it takes {})",
                allowed.join(", ")
            ),
        ));
    }
    let target = |what: &str| -> Result<String, (usize, String)> {
        match &raw.target {
            Some(t) if !t.get_ref().trim().is_empty() => Ok(t.get_ref().trim().to_owned()),
            _ => Err((
                table_at,
                format!("a {kind_word} probe needs `target` ({what})"),
            )),
        }
    };
    let host_port = |what: &str| -> Result<String, (usize, String)> {
        let t = target(what)?;
        match t.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(t),
            _ => Err((
                raw.target.as_ref().map_or(table_at, |t| t.span().start),
                format!("`target` {t:?}: expected host:port"),
            )),
        }
    };
    let password_env = raw.password_env.as_ref().map(|v| v.get_ref().clone());
    let kind = match kind_word.as_str() {
        "http" => {
            let Some(url) = &raw.url else {
                return Err((table_at, "an http probe needs `url`".into()));
            };
            let u = url.get_ref();
            if reqwest::Url::parse(u)
                .ok()
                .filter(|p| matches!(p.scheme(), "http" | "https"))
                .is_none()
            {
                return Err((
                    url.span().start,
                    format!("`url` {u:?}: expected http://… or https://…"),
                ));
            }
            let method = raw
                .method
                .as_ref()
                .map_or_else(|| "GET".to_owned(), |m| m.get_ref().to_ascii_uppercase());
            if reqwest::Method::from_bytes(method.as_bytes()).is_err() || method.is_empty() {
                let at = raw.method.as_ref().map_or(table_at, |m| m.span().start);
                return Err((at, format!("`method` {method:?}: expected an HTTP method")));
            }
            let body_regex = match &raw.body_regex {
                Some(r) => Some(
                    regex::Regex::new(r.get_ref())
                        .map_err(|e| (r.span().start, format!("`body_regex`: {e}")))?,
                ),
                None => None,
            };
            let expect_status = raw.expect_status.as_ref().map_or(200, |s| *s.get_ref());
            if !(100..=599).contains(&expect_status) {
                let at = raw
                    .expect_status
                    .as_ref()
                    .map_or(table_at, |s| s.span().start);
                return Err((
                    at,
                    format!("`expect_status` {expect_status}: expected 100 to 599"),
                ));
            }
            if let Some(ca) = &raw.ca_file
                && let Err(e) = std::fs::metadata(ca.get_ref())
            {
                return Err((
                    ca.span().start,
                    format!("`ca_file` {}: {e}", ca.get_ref().display()),
                ));
            }
            ProbeKind::Http(HttpSpec {
                method,
                url: u.clone(),
                expect_status,
                body_regex,
                tls_verify: raw.tls_verify.as_ref().is_none_or(|v| *v.get_ref()),
                ca_file: raw.ca_file.as_ref().map(|c| c.get_ref().clone()),
            })
        }
        "tcp" => ProbeKind::Tcp {
            target: host_port("host:port to connect to")?,
        },
        "dns" => {
            let server = match &raw.server {
                Some(s) => Some(s.get_ref().parse::<SocketAddr>().map_err(|_| {
                    (
                        s.span().start,
                        format!("`server` {:?}: expected IP:PORT", s.get_ref()),
                    )
                })?),
                None => None,
            };
            ProbeKind::Dns {
                name: target("the name to resolve")?,
                server,
            }
        }
        "redis" => ProbeKind::Redis {
            target: host_port("host:port of the Redis server")?,
            password_env,
        },
        "mysql" => ProbeKind::Mysql {
            target: host_port("host:port of the MySQL server")?,
            user: raw
                .user
                .as_ref()
                .map_or_else(|| "panorama".to_owned(), |u| u.get_ref().clone()),
            password_env,
        },
        _ => match (&raw.process, &raw.pid_file) {
            (Some(p), None) if !p.get_ref().is_empty() => {
                ProbeKind::Process(ProcessMatch::Name(p.get_ref().clone()))
            }
            (None, Some(f)) => ProbeKind::Process(ProcessMatch::PidFile(f.get_ref().clone())),
            _ => {
                return Err((
                    table_at,
                    "a process probe needs exactly one of `process` (a name) or `pid_file`".into(),
                ));
            }
        },
    };
    Ok(ProbeConfig {
        name,
        service: raw.service.unwrap_or_else(|| host.to_owned()),
        interval,
        timeout,
        jitter,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1d"), None);
    }
}
