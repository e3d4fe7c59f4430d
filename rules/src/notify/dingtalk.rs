//! The DingTalk channel: a group robot ("custom robot") that posts the
//! notice as markdown and @-mentions the people on duty by mobile number.
//!
//! The access token is a secret (anyone holding it can post to the group),
//! so it is read from the environment like every other secret, not written
//! into the URL in the rule file. A robot with the "sign" security setting
//! also has a signing secret: each request then carries the time and
//! `Base64(HMAC-SHA256(secret, timestamp + "\n" + secret))`, which DingTalk
//! checks and refuses when more than an hour old.
//!
//! DingTalk answers HTTP 200 also when it refuses; the `errcode` in the
//! body decides. Being sent too fast (a robot may post 20 times a minute)
//! or DingTalk being busy is worth a retry; a wrong token, a refused
//! signature, a missing keyword or an IP not on the allow-list is not.
//!
//! ```toml
//! [receiver.dingtalk]
//! access_token_env = "PANORAMA_DINGTALK_TOKEN"
//! secret_env = "PANORAMA_DINGTALK_SECRET"   # when the robot signs
//! at_mobiles = ["13800000000"]              # may be replaced by a rota
//! ```

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::http;
use super::{DeliveryError, Notice};
use crate::notify::ChannelError;

/// DingTalk's robot endpoint.
pub const DINGTALK_URL: &str = "https://oapi.dingtalk.com/robot/send";

/// `errcode`s worth a retry: system busy (-1), sent too fast (130101),
/// rate limited (410100).
const TRANSIENT: &[i64] = &[-1, 130_101, 410_100];

/// A DingTalk robot, as written under `[receiver.dingtalk]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkConfig {
    /// Name of the environment variable holding the robot's access token.
    pub access_token_env: String,
    /// Name of the environment variable holding the signing secret
    /// (`SEC…`), when the robot's security setting is "sign".
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Mobile numbers to @-mention.
    #[serde(default)]
    pub at_mobiles: Vec<String>,
    /// @-mention everyone in the group.
    #[serde(default)]
    pub at_all: bool,
    /// Robot endpoint; default [`DINGTALK_URL`]. Tests point it at a local server.
    #[serde(default)]
    pub url: Option<String>,
    /// Seconds one request may take. Default 10.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl DingTalkConfig {
    /// Checks what can be checked without the network or the environment.
    ///
    /// # Errors
    /// What is wrong, naming the key.
    pub fn validate(&self) -> Result<(), ChannelError> {
        http::check_env_name("access_token_env", &self.access_token_env)?;
        if let Some(v) = &self.secret_env {
            http::check_env_name("secret_env", v)?;
        }
        for m in &self.at_mobiles {
            check_mobile(m).map_err(|e| e.for_key("at_mobiles"))?;
        }
        let url = http::check_url("url", self.url())?;
        if url.query().is_some() {
            return Err(ChannelError::key(
                "url",
                format!(
                    "`url` {:?}: give the endpoint without a query; the token comes from `access_token_env`",
                    self.url()
                ),
            ));
        }
        http::timeout(self.timeout_secs)?;
        Ok(())
    }

    fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DINGTALK_URL)
    }
}

fn check_mobile(m: &str) -> Result<(), ChannelError> {
    let digits = m.strip_prefix('+').unwrap_or(m);
    if (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        Ok(())
    } else {
        Err(ChannelError::table(format!(
            "mobile {m:?}: expected digits"
        )))
    }
}

/// Posts notices to a DingTalk group. Share it behind an `Arc`.
pub struct DingTalk {
    cfg: DingTalkConfig,
    client: reqwest::Client,
    token: String,
    secret: Option<String>,
}

impl fmt::Debug for DingTalk {
    // By hand: token and secret stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalk")
            .field("url", &self.cfg.url())
            .field("signed", &self.secret.is_some())
            .field("at_mobiles", &self.cfg.at_mobiles)
            .finish_non_exhaustive()
    }
}

impl DingTalk {
    /// Validates the configuration and reads the token and secret now.
    ///
    /// # Errors
    /// What is wrong or missing.
    pub fn new(cfg: DingTalkConfig) -> Result<DingTalk, ChannelError> {
        cfg.validate().map_err(|e| e.in_channel("dingtalk"))?;
        let token = http::secret("dingtalk", "access_token_env", &cfg.access_token_env)?;
        let secret = cfg
            .secret_env
            .as_deref()
            .map(|v| http::secret("dingtalk", "secret_env", v))
            .transpose()?;
        let client = http::client(http::timeout(cfg.timeout_secs)?)?;
        Ok(DingTalk {
            cfg,
            client,
            token,
            secret,
        })
    }

    /// The JSON body posted for a notice.
    pub fn body(&self, notice: &Notice, at_mobiles: &[String]) -> serde_json::Value {
        let mut text = http::markdown(notice);
        // DingTalk highlights a mention only when the text names it too.
        if !at_mobiles.is_empty() {
            text.push('\n');
            text.push_str(
                &at_mobiles
                    .iter()
                    .map(|m| format!("@{m}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        serde_json::json!({
            "msgtype": "markdown",
            "markdown": { "title": notice.title(), "text": text },
            "at": { "atMobiles": at_mobiles, "isAtAll": self.cfg.at_all },
        })
    }

    fn url(&self, now_ms: u128) -> String {
        let mut url = format!(
            "{}?access_token={}",
            self.cfg.url(),
            http::percent_encode(&self.token)
        );
        if let Some(secret) = &self.secret {
            let sign = sign(now_ms, secret);
            url.push_str(&format!(
                "&timestamp={now_ms}&sign={}",
                http::percent_encode(&sign)
            ));
        }
        url
    }
}

/// DingTalk's documented robot signature, before URL encoding.
pub fn sign(timestamp_ms: u128, secret: &str) -> String {
    let string_to_sign = format!("{timestamp_ms}\n{secret}");
    http::base64(&http::hmac_sha256(
        secret.as_bytes(),
        string_to_sign.as_bytes(),
    ))
}

#[async_trait::async_trait]
impl super::Notifier for DingTalk {
    async fn send(&self, notice: &Notice, to: Option<&[String]>) -> Result<(), DeliveryError> {
        let mobiles = to.unwrap_or(&self.cfg.at_mobiles);
        for m in mobiles {
            check_mobile(m).map_err(|e| DeliveryError::Permanent(format!("dingtalk: {e}")))?;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let body = self.body(notice, mobiles).to_string();
        let request = self
            .client
            .post(self.url(now_ms))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let answer = http::execute("dingtalk", request).await?;
        http::robot_errcode("dingtalk", &answer, TRANSIENT)
    }

    fn kind(&self) -> &'static str {
        "dingtalk"
    }
}

impl super::Channel for DingTalkConfig {
    const KIND: &'static str = "dingtalk";

    fn check(&self) -> Result<(), ChannelError> {
        self.validate()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn super::Notifier>, ChannelError> {
        DingTalk::new(self.clone())
            .map(|n| std::sync::Arc::new(n) as std::sync::Arc<dyn super::Notifier>)
    }
}
