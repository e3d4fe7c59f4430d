//! The mail channel: one [`Notice`] becomes one SMTP message with a
//! plain-text and an HTML body.
//!
//! Delivery errors are sorted for the outbox: only a server's 5xx answer
//! (or a message that cannot be built at all) is [permanent](MailError::is_permanent),
//! because only then can a retry not help. Everything else — refused
//! connections, timeouts, 4xx answers, TLS handshakes that fail — is
//! transient: the outbox retries it with backoff and reports it after its
//! last try, so a mail server that is down for maintenance, or a
//! certificate an operator is about to renew, does not silently cost a
//! page.
//!
//! A retried notice is the same message: its `Message-ID` is derived from
//! the notice id, its `Date` is when the notice was decided, and it carries
//! an `X-Panorama-Notice` header, so mail clients and filters can recognise
//! (and deduplicate) the copies of an at-least-once delivery.
//!
//! ```toml
//! [mail]
//! host = "smtp.example.com"
//! security = "starttls"          # "plain" | "starttls" | "tls"
//! username = "alerts"
//! password_env = "PANORAMA_SMTP_PASSWORD"
//! from = "Panorama <alerts@example.com>"
//! to = ["oncall@example.com"]
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use askama::Template;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::{Notice, NoticeAlert};
use crate::notify::ChannelError;

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// No TLS at all. Only sensible for a relay on the same host or a
    /// trusted network; a password is refused in this mode unless the
    /// host is a loopback address.
    Plain,
    /// Plain connection upgraded with STARTTLS, which is required: a server
    /// that does not offer it fails the delivery instead of receiving the
    /// mail in clear text (a stripped STARTTLS is the classic downgrade).
    #[default]
    #[serde(rename = "starttls")]
    StartTls,
    /// TLS from the first byte ("SMTPS", usually port 465).
    Tls,
}

impl Security {
    /// The well-known port of each mode, so the common setups need no port.
    pub fn default_port(self) -> u16 {
        match self {
            Security::Plain => 25,
            Security::StartTls => 587,
            Security::Tls => 465,
        }
    }
}

/// Per-step timeout when the configuration names none: long enough for a
/// slow relay, short enough that a dead one is noticed within a minute.
const DEFAULT_TIMEOUT_SECS: u64 = 15;

/// A whole delivery may take this many per-step timeouts; a server that
/// answers each step just in time must still not hold a notice forever.
const WHOLE_SEND_STEPS: u32 = 3;

/// Where and how mail leaves, as written in the TOML configuration.
///
/// The password is never written in the file: `password_env` names the
/// environment variable that holds it, so configurations can be committed
/// and shown around.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// Mail server host name or address; also the name its certificate must carry.
    pub host: String,
    /// Server port; the default follows [`security`](Self::security):
    /// 25, 587 or 465.
    #[serde(default)]
    pub port: Option<u16>,
    /// Connection protection; STARTTLS (required) unless told otherwise.
    #[serde(default)]
    pub security: Security,
    /// User for AUTH PLAIN/LOGIN; no AUTH when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable holding the password; required
    /// exactly when `username` is given.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Sender, `addr@example.com` or `Name <addr@example.com>`.
    pub from: String,
    /// Recipients, in the same forms; at least one.
    pub to: Vec<String>,
    /// A PEM file of extra trusted root certificates, for servers whose
    /// certificate comes from a private CA. The public web roots stay trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds each SMTP step (connect, each reply) may take; the whole
    /// delivery is bounded by three times this. Default 15.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl MailConfig {
    /// The port actually used.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(self.security.default_port())
    }

    /// The per-step timeout actually used.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
    }

    /// Checks what can be checked without the network or the environment,
    /// so `panorama rules check` and config reloads catch mistakes before
    /// the first alert does.
    pub fn validate(&self) -> Result<(), ChannelError> {
        if self.host.trim().is_empty() {
            return Err(ChannelError::key("host", "mail: `host` is empty"));
        }
        if self.port == Some(0) {
            return Err(ChannelError::key(
                "port",
                "mail: `port` must be between 1 and 65535",
            ));
        }
        self.from.parse::<Mailbox>().map_err(|e| {
            ChannelError::key(
                "from",
                format!("mail: `from` {:?} is not a mail address: {e}", self.from),
            )
        })?;
        if self.to.is_empty() {
            return Err(ChannelError::key(
                "to",
                "mail: `to` needs at least one recipient",
            ));
        }
        for to in &self.to {
            to.parse::<Mailbox>().map_err(|e| {
                ChannelError::key(
                    "to",
                    format!("mail: `to` entry {to:?} is not a mail address: {e}"),
                )
            })?;
        }
        match (&self.username, &self.password_env) {
            (Some(_), None) => {
                return Err(ChannelError::key(
                    "username",
                    "mail: `username` is set but `password_env` is not",
                ));
            }
            (None, Some(_)) => {
                return Err(ChannelError::key(
                    "password_env",
                    "mail: `password_env` is set but `username` is not",
                ));
            }
            (Some(user), Some(var)) => {
                if user.is_empty() {
                    return Err(ChannelError::key("username", "mail: `username` is empty"));
                }
                if var.is_empty() || var.contains(['=', '\0']) {
                    return Err(ChannelError::key(
                        "password_env",
                        format!("mail: `password_env` {var:?} is not an environment variable name"),
                    ));
                }
                if self.security == Security::Plain && !is_loopback(&self.host) {
                    return Err(ChannelError::table(format!(
                        "mail: refusing to send a password to {} without TLS; \
                         use security = \"starttls\" or \"tls\"",
                        self.host
                    )));
                }
            }
            (None, None) => {}
        }
        if self.security == Security::Plain && self.ca_file.is_some() {
            return Err(ChannelError::key(
                "ca_file",
                "mail: `ca_file` is given but security = \"plain\" uses no TLS",
            ));
        }
        if self.timeout_secs == Some(0) {
            return Err(ChannelError::key(
                "timeout_secs",
                "mail: `timeout_secs` must be at least 1",
            ));
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a mail was not delivered, sorted by what the outbox should do next.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The configuration cannot work (bad address, unreadable CA file,
    /// missing password variable). Raised by [`Mailer::new`].
    #[error("mail configuration: {0}")]
    Config(String),
    /// Worth retrying later: the server was unreachable, slow, answered
    /// 4xx, or the TLS handshake failed.
    #[error("mail not delivered (will retry): {reason}")]
    Transient {
        /// The SMTP reply code, when the server gave one.
        code: Option<u16>,
        /// What happened, for the outbox's history.
        reason: String,
    },
    /// Retrying cannot help: the server refused with 5xx (unknown
    /// recipient, authentication rejected, message refused), or the
    /// message could not be built.
    #[error("mail rejected: {reason}")]
    Permanent {
        /// The SMTP reply code, when the server gave one.
        code: Option<u16>,
        /// What happened, for the outbox's history.
        reason: String,
    },
}

impl MailError {
    /// True when the outbox should give up on the notice instead of
    /// retrying it.
    pub fn is_permanent(&self) -> bool {
        matches!(self, MailError::Config(_) | MailError::Permanent { .. })
    }

    /// The server's reply code, if the error came from a reply.
    pub fn code(&self) -> Option<u16> {
        match self {
            MailError::Config(_) => None,
            MailError::Transient { code, .. } | MailError::Permanent { code, .. } => *code,
        }
    }

    fn from_smtp(e: lettre::transport::smtp::Error) -> MailError {
        let code = e.status().map(u16::from);
        let reason = e.to_string();
        if e.is_permanent() {
            MailError::Permanent { code, reason }
        } else {
            MailError::Transient { code, reason }
        }
    }
}

/// Sends notices by mail. Keeps a small pool of SMTP connections, so a
/// storm of notices to several receivers does not reconnect for each.
/// Clone-free on purpose: share it behind an `Arc`.
pub struct Mailer {
    cfg: MailConfig,
    from: Mailbox,
    to: Vec<Mailbox>,
    builder: lettre::transport::smtp::AsyncSmtpTransportBuilder,
    /// Built on the first send: lettre's pool spawns its housekeeping task
    /// on the Tokio runtime current at build time, and [`Mailer::new`]
    /// should not need one.
    transport: std::sync::OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
}

impl fmt::Debug for Mailer {
    // By hand: the transport builder would print the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("host", &self.cfg.host)
            .field("port", &self.cfg.effective_port())
            .field("security", &self.cfg.security)
            .field("username", &self.cfg.username)
            .field("to", &self.cfg.to)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Validates the configuration, reads the CA file and the password
    /// variable now, so that a broken setup fails at start-up and not at
    /// the first alert.
    pub fn new(cfg: MailConfig) -> Result<Mailer, MailError> {
        cfg.validate()
            .map_err(|e| MailError::Config(e.to_string()))?;
        let from = cfg
            .from
            .parse::<Mailbox>()
            .map_err(|e| MailError::Config(e.to_string()))?;
        let to = cfg
            .to
            .iter()
            .map(|t| t.parse::<Mailbox>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MailError::Config(e.to_string()))?;

        let tls = match cfg.security {
            Security::Plain => Tls::None,
            Security::StartTls => Tls::Required(tls_parameters(&cfg)?),
            Security::Tls => Tls::Wrapper(tls_parameters(&cfg)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.effective_port())
            .tls(tls)
            .timeout(Some(cfg.timeout()))
            // Notices are few; two connections cover a storm to two receivers.
            .pool_config(PoolConfig::new().max_size(2));
        if let (Some(user), Some(var)) = (&cfg.username, &cfg.password_env) {
            let password = std::env::var(var).map_err(|_| {
                MailError::Config(format!(
                    "mail: environment variable {var} (password_env) is not set or not UTF-8"
                ))
            })?;
            builder = builder
                .credentials(Credentials::new(user.clone(), password))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(Mailer {
            cfg,
            from,
            to,
            builder,
            transport: std::sync::OnceLock::new(),
        })
    }

    /// The configuration this mailer was built from.
    pub fn config(&self) -> &MailConfig {
        &self.cfg
    }

    /// Delivers one notice to every configured recipient in one SMTP
    /// transaction. The server accepts it for all recipients or for none:
    /// one refused recipient fails the whole send, so a retry never mails
    /// the others twice.
    pub async fn send(&self, notice: &Notice) -> Result<(), MailError> {
        self.send_to(notice, &self.to).await
    }

    /// As [`send`](Self::send), to these recipients instead of the
    /// configured ones (a rota resolves who is on duty).
    pub async fn send_to(&self, notice: &Notice, to: &[Mailbox]) -> Result<(), MailError> {
        let message = self.message_to(notice, to)?;
        let transport = self.transport.get_or_init(|| self.builder.clone().build());
        let limit = self.cfg.timeout() * WHOLE_SEND_STEPS;
        match tokio::time::timeout(limit, transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => Err(MailError::from_smtp(e)),
            Err(_) => Err(MailError::Transient {
                code: None,
                reason: format!(
                    "no answer from {}:{} within {} s",
                    self.cfg.host,
                    self.cfg.effective_port(),
                    limit.as_secs()
                ),
            }),
        }
    }

    /// The message [`send`](Self::send) would deliver, as lettre builds it.
    pub fn message(&self, notice: &Notice) -> Result<Message, MailError> {
        self.message_to(notice, &self.to)
    }

    fn message_to(&self, notice: &Notice, to: &[Mailbox]) -> Result<Message, MailError> {
        build_message(&self.from, to, notice)
    }
}

/// The message for `notice` from `from` to `to`: shared with the mailbox
/// channel, so that an .eml written to disk is the very mail SMTP would get.
pub(crate) fn build_message(
    from: &Mailbox,
    to: &[Mailbox],
    notice: &Notice,
) -> Result<Message, MailError> {
    {
        if to.is_empty() {
            return Err(MailError::Permanent {
                code: None,
                reason: "no recipient".into(),
            });
        }
        let (text, html) = render(notice)?;
        let mut builder = Message::builder()
            .from(from.clone())
            .subject(one_line(&notice.title()))
            .message_id(Some(message_id(&notice.id)))
            .date(system_time(notice.created_ms))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Panorama-Notice"),
                one_line(&notice.id),
            ));
        for t in to {
            builder = builder.to(t.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| MailError::Permanent {
                code: None,
                reason: format!("cannot build the message: {e}"),
            })
    }
}

fn tls_parameters(cfg: &MailConfig) -> Result<TlsParameters, MailError> {
    let mut params = TlsParameters::builder(cfg.host.clone());
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            MailError::Config(format!("mail: cannot read ca_file {}: {e}", path.display()))
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            MailError::Config(format!(
                "mail: ca_file {} holds no usable PEM certificate: {e}",
                path.display()
            ))
        })?;
        params = params.add_root_certificate(cert);
    }
    params
        .build()
        .map_err(|e| MailError::Config(format!("mail: TLS setup: {e}")))
}

/// `<{id}@panorama>`, with what RFC 5322 does not allow in the left part
/// percent-encoded, so any notice id gives a valid, stable Message-ID.
fn message_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 12);
    let bytes = id.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let atext = b.is_ascii_alphanumeric() || b"!#$&'*+-/=?^_`{|}~".contains(&b);
        // Dots are fine only between other characters, one at a time.
        let dot_ok = b == b'.' && i > 0 && i + 1 < bytes.len() && bytes[i - 1] != b'.';
        if atext || dot_ok {
            out.push(b as char);
        } else {
            out.push_str(percent_encoding::percent_encode_byte(b));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    format!("<{out}@panorama>")
}

/// Header values must stay on one line, whatever a series name holds.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
    }
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// One alert as the templates see it: times formatted, the link checked.
struct AlertView<'a> {
    alert: &'a NoticeAlert,
    status: &'static str,
    since: String,
    /// The link is put in an `href` only when it is http(s): an
    /// attribute-escaped `javascript:` URL is still a script.
    link_is_web: bool,
}

#[derive(Template)]
#[template(path = "mail/notice.txt")]
struct TextBody<'a> {
    n: &'a Notice,
    title: String,
    created: String,
    labels: String,
    alerts: Vec<AlertView<'a>>,
}

#[derive(Template)]
#[template(path = "mail/notice.html")]
struct HtmlBody<'a> {
    n: &'a Notice,
    title: String,
    created: String,
    labels: String,
    alerts: Vec<AlertView<'a>>,
}

fn views(notice: &Notice) -> Vec<AlertView<'_>> {
    notice
        .alerts
        .iter()
        .map(|a| AlertView {
            alert: a,
            status: a.status.word(),
            since: utc(a.since_ms),
            link_is_web: {
                let l = a.link.to_ascii_lowercase();
                l.starts_with("https://") || l.starts_with("http://")
            },
        })
        .collect()
}

/// Both bodies of a notice: plain text and HTML.
fn render(notice: &Notice) -> Result<(String, String), MailError> {
    let labels = notice
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = TextBody {
        n: notice,
        title: notice.title(),
        created: utc(notice.created_ms),
        labels: labels.clone(),
        alerts: views(notice),
    };
    let html = HtmlBody {
        n: notice,
        title: notice.title(),
        created: utc(notice.created_ms),
        labels,
        alerts: views(notice),
    };
    let fail = |e: askama::Error| MailError::Permanent {
        code: None,
        reason: format!("cannot render the mail: {e}"),
    };
    Ok((text.render().map_err(fail)?, html.render().map_err(fail)?))
}

#[async_trait::async_trait]
impl super::Notifier for Mailer {
    async fn send(
        &self,
        notice: &Notice,
        to: Option<&[String]>,
    ) -> Result<(), super::DeliveryError> {
        let result = match to {
            None => Mailer::send(self, notice).await,
            Some(list) => {
                let mut boxes = Vec::with_capacity(list.len());
                for t in list {
                    match t.parse::<Mailbox>() {
                        Ok(b) => boxes.push(b),
                        Err(e) => {
                            return Err(super::DeliveryError::Permanent(format!(
                                "mail: recipient {t:?}: {e}"
                            )));
                        }
                    }
                }
                self.send_to(notice, &boxes).await
            }
        };
        result.map_err(|e| {
            if e.is_permanent() {
                super::DeliveryError::Permanent(e.to_string())
            } else {
                super::DeliveryError::Transient(e.to_string())
            }
        })
    }

    fn kind(&self) -> &'static str {
        "mail"
    }
}

impl super::Channel for MailConfig {
    const KIND: &'static str = "mail";

    fn check(&self) -> Result<(), ChannelError> {
        self.validate()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn super::Notifier>, ChannelError> {
        Mailer::new(self.clone())
            .map(|m| std::sync::Arc::new(m) as std::sync::Arc<dyn super::Notifier>)
            .map_err(ChannelError::table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{AlertStatus, NoticeKind};

    fn cfg() -> MailConfig {
        toml::from_str(
            r#"
            host = "smtp.example.com"
            from = "Panorama <alerts@example.com>"
            to = ["oncall@example.com"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_are_required_starttls_on_587() {
        let c = cfg();
        assert_eq!(c.security, Security::StartTls);
        assert_eq!(c.effective_port(), 587);
        assert_eq!(c.timeout(), Duration::from_secs(15));
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_inline_passwords_are_refused() {
        let e = toml::from_str::<MailConfig>(
            r#"
            host = "h"
            from = "a@b.c"
            to = ["d@e.f"]
            password = "hunter2"
            "#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = cfg();
        c.to.clear();
        assert!(c.validate().unwrap_err().to_string().contains("`to`"));

        let mut c = cfg();
        c.to.push("not an address".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("not an address")
        );

        let mut c = cfg();
        c.username = Some("u".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("password_env")
        );

        let mut c = cfg();
        c.password_env = Some("P".into());
        assert!(c.validate().unwrap_err().to_string().contains("username"));

        let mut c = cfg();
        c.security = Security::Plain;
        c.username = Some("u".into());
        c.password_env = Some("P".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("without TLS")
        );
        c.host = "127.0.0.1".into();
        c.validate().unwrap();

        let mut c = cfg();
        c.timeout_secs = Some(0);
        assert!(c.validate().is_err());
    }

    #[test]
    fn message_ids_are_stable_and_valid() {
        assert_eq!(message_id("alert-1/fired/0"), "<alert-1/fired/0@panorama>");
        assert_eq!(message_id("a.b"), "<a.b@panorama>");
        assert_eq!(message_id(".a..b."), "<%2Ea.%2Eb%2E@panorama>");
        assert_eq!(message_id("x y<z>@w"), "<x%20y%3Cz%3E%40w@panorama>");
    }

    #[test]
    fn a_javascript_link_is_not_clickable() {
        let notice = Notice {
            id: "n".into(),
            kind: NoticeKind::Firing,
            rule: "r".into(),
            severity: crate::rule::Severity::Critical,
            condition: "c".into(),
            labels: vec![],
            alerts: vec![NoticeAlert {
                status: AlertStatus::Firing,
                layer: Some(panorama_model::Layer::Url),
                service: "s".into(),
                series: "x".into(),
                host: String::new(),
                value: "1".into(),
                threshold: String::new(),
                summary: String::new(),
                link: "javascript:alert(1)".into(),
                since_ms: 0,
                acked_by: None,
            }],
            created_ms: 0,
        };
        let (_, html) = render(&notice).unwrap();
        assert!(!html.contains("href=\"javascript"), "{html}");
    }
}
