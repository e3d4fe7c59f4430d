//! The generic webhook: the notice as JSON, POSTed to a URL of the
//! operator's, for ticket systems, chat bridges and remediation (a route
//! that sends `infra-host-silent` for `host = "web3"` to a hook that takes
//! the host out of the load balancer).
//!
//! The body is a versioned document ([`PAYLOAD_VERSION`]) so a receiver can
//! refuse a shape it does not know instead of misreading it. Because such
//! a receiver may act on what it gets, it can check that the request is
//! ours: with `secret_env` set, each request carries
//! `X-Panorama-Timestamp` (Unix seconds) and
//! `X-Panorama-Signature: v1=hex(HMAC-SHA256(secret, timestamp + "." + body))`;
//! the timestamp is signed so an old request cannot be replayed later.
//! `X-Panorama-Notice` carries the notice id: a retry after a lost answer
//! sends the same id, so an action can be made idempotent.
//!
//! ```toml
//! [receiver.webhook]
//! url = "https://ops.example.com/hooks/panorama"
//! headers_env = { Authorization = "PANORAMA_HOOK_AUTH" }
//! secret_env = "PANORAMA_HOOK_SECRET"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::http;
use super::{DeliveryError, Notice};
use crate::notify::ChannelError;

/// The `version` of the JSON document; raised on any change a receiver
/// could misread.
pub const PAYLOAD_VERSION: u32 = 1;

/// A webhook, as written under `[receiver.webhook]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// Fixed headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are secrets: header name → environment variable.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// Name of the environment variable holding the HMAC key for
    /// `X-Panorama-Signature`; unsigned when absent.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Seconds one request may take. Default 10.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl WebhookConfig {
    /// Checks what can be checked without the network or the environment.
    ///
    /// # Errors
    /// What is wrong, naming the key.
    pub fn validate(&self) -> Result<(), ChannelError> {
        http::check_url("url", &self.url)?;
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ChannelError::key(
                    "headers",
                    format!("`headers`: {name:?} is not a header name"),
                )
            })?;
            HeaderValue::from_str(value).map_err(|_| {
                ChannelError::key(
                    "headers",
                    format!("`headers`: value of {name} is not a header value"),
                )
            })?;
        }
        for (name, var) in &self.headers_env {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ChannelError::key(
                    "headers_env",
                    format!("`headers_env`: {name:?} is not a header name"),
                )
            })?;
            http::check_env_name("headers_env", var)?;
        }
        if let Some(v) = &self.secret_env {
            http::check_env_name("secret_env", v)?;
        }
        http::timeout(self.timeout_secs)?;
        Ok(())
    }
}

/// POSTs notices as JSON. Share it behind an `Arc`.
pub struct Webhook {
    cfg: WebhookConfig,
    client: reqwest::Client,
    headers: HeaderMap,
    secret: Option<String>,
}

impl fmt::Debug for Webhook {
    // By hand: header values and the secret stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.cfg.url)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Validates the configuration and reads the secrets now.
    ///
    /// # Errors
    /// What is wrong or missing.
    pub fn new(cfg: WebhookConfig) -> Result<Webhook, ChannelError> {
        cfg.validate().map_err(|e| e.in_channel("webhook"))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).map_err(ChannelError::table)?,
                HeaderValue::from_str(value).map_err(ChannelError::table)?,
            );
        }
        for (name, var) in &cfg.headers_env {
            let value = http::secret("webhook", "headers_env", var)?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                ChannelError::table(format!("webhook: {var} does not hold a valid header value"))
            })?;
            value.set_sensitive(true);
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).map_err(ChannelError::table)?,
                value,
            );
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let secret = cfg
            .secret_env
            .as_deref()
            .map(|v| http::secret("webhook", "secret_env", v))
            .transpose()?;
        let client = http::client(http::timeout(cfg.timeout_secs)?)?;
        Ok(Webhook {
            cfg,
            client,
            headers,
            secret,
        })
    }
}

/// The JSON document for a notice (version [`PAYLOAD_VERSION`]):
///
/// ```json
/// {"version": 1, "id": "…", "kind": "firing", "rule": "…", "severity": "critical",
///  "condition": "…", "title": "…", "labels": {"team": "pay"}, "firing": 1,
///  "created_ms": 1795352490000,
///  "alerts": [{"status": "firing", "layer": "url", "service": "login",
///              "series": "POST /pay", "host": "web1", "value": "12.5%",
///              "threshold": "5%", "summary": "…", "link": "https://…",
///              "since_ms": 1795352400000, "acked_by": null}]}
/// ```
pub fn payload(notice: &Notice) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = notice
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "version": PAYLOAD_VERSION,
        "id": notice.id,
        "kind": notice.kind,
        "rule": notice.rule,
        "severity": notice.severity,
        "condition": notice.condition,
        "title": notice.title(),
        "labels": labels,
        "firing": notice.firing(),
        "created_ms": notice.created_ms,
        "alerts": notice.alerts,
    })
}

/// The signature header's value for a body sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!(
        "v1={}",
        http::hex(&http::hmac_sha256(secret.as_bytes(), &msg))
    )
}

#[async_trait::async_trait]
impl super::Notifier for Webhook {
    async fn send(&self, notice: &Notice, _to: Option<&[String]>) -> Result<(), DeliveryError> {
        let body = payload(notice).to_string().into_bytes();
        let mut request = self
            .client
            .post(&self.cfg.url)
            .headers(self.headers.clone())
            .header("X-Panorama-Notice", http::header_safe(&notice.id));
        if let Some(secret) = &self.secret {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            request = request
                .header("X-Panorama-Timestamp", now.to_string())
                .header("X-Panorama-Signature", signature(secret, now, &body));
        }
        let answer = http::execute("webhook", request.body(body)).await?;
        match answer.status_error("webhook") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }
}

impl super::Channel for WebhookConfig {
    const KIND: &'static str = "webhook";

    fn check(&self) -> Result<(), ChannelError> {
        self.validate()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn super::Notifier>, ChannelError> {
        Webhook::new(self.clone())
            .map(|n| std::sync::Arc::new(n) as std::sync::Arc<dyn super::Notifier>)
    }
}
