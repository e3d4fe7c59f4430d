//! The Feishu (Lark) channel: a group's custom robot that posts the notice
//! as an interactive card — a red header while firing, green once
//! resolved, one entry per alert with its value and dashboard link — and
//! @-mentions the people on duty.
//!
//! The webhook token is the secret part of
//! `…/open-apis/bot/v2/hook/{token}` (anyone holding it can post), so it
//! comes from the environment. A robot with "signature verification" also
//! has a signing secret; Feishu's scheme is unusual: the string
//! `timestamp + "\n" + secret` is the HMAC-SHA256 *key*, the message is
//! empty, and Base64 of the result is `sign`. Both `timestamp` (seconds)
//! and `sign` travel in the body, and Feishu refuses a timestamp more than
//! an hour off.
//!
//! Feishu answers `{"code": 0}` on success. 19021 (signature or timestamp
//! refused) cannot be helped by a retry and is reported; the frequency
//! limits (a robot may post 100 times a minute, 5 a second) are retried.
//! A card above 20 KB is refused, so a storm's card lists what fits and
//! says how many more there are.
//!
//! A rota hands the channel phone numbers; Feishu mentions by user id, so
//! `mentions` maps the numbers to ids (a number without one is written out
//! as text).
//!
//! ```toml
//! [receiver.feishu]
//! webhook_token_env = "PANORAMA_FEISHU_TOKEN"
//! secret_env = "PANORAMA_FEISHU_SECRET"        # when the robot signs
//! at_user_ids = ["ou_7d8a6e6df7621556ce0d21922b676706ccs"]
//! mentions = { "+8613800000001" = "ou_c99c5f35d542efc7ee492afe11af19ef" }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};

use super::http;
use super::{DeliveryError, Notice, NoticeKind};
use crate::notify::ChannelError;

/// Feishu's robot endpoint; the token is appended as the last path segment.
pub const FEISHU_ENDPOINT: &str = "https://open.feishu.cn/open-apis/bot/v2/hook";

/// Feishu refuses a request body above 20 KB.
pub const MAX_BODY_BYTES: usize = 20 * 1024;

/// `code`s worth a retry: the robot's frequency limits.
const TRANSIENT: &[i64] = &[11_232, 11_233];

/// The signature or timestamp was refused.
const SIGNATURE_REFUSED: i64 = 19_021;

/// A Feishu robot, as written under `[receiver.feishu]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeishuConfig {
    /// Name of the environment variable holding the webhook token.
    pub webhook_token_env: String,
    /// Name of the environment variable holding the signing secret, when
    /// the robot verifies signatures.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// User ids (`ou_…`) to @-mention; replaced by the people on duty when
    /// a rota delivers through this receiver.
    #[serde(default)]
    pub at_user_ids: Vec<String>,
    /// Phone number (as a rota's `[[person]]` has it) → user id.
    #[serde(default)]
    pub mentions: BTreeMap<String, String>,
    /// @-mention everyone in the group.
    #[serde(default)]
    pub at_all: bool,
    /// Endpoint without the token; default [`FEISHU_ENDPOINT`] (Lark:
    /// `https://open.larksuite.com/open-apis/bot/v2/hook`). Tests point it
    /// at a local server.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Seconds one request may take. Default 10.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl FeishuConfig {
    /// Checks what can be checked without the network or the environment.
    ///
    /// # Errors
    /// What is wrong, naming the key.
    pub fn validate(&self) -> Result<(), ChannelError> {
        http::check_env_name("webhook_token_env", &self.webhook_token_env)?;
        if let Some(v) = &self.secret_env {
            http::check_env_name("secret_env", v)?;
        }
        for id in &self.at_user_ids {
            check_user_id(id).map_err(|e| e.for_key("at_user_ids"))?;
        }
        for id in self.mentions.values() {
            check_user_id(id).map_err(|e| e.for_key("mentions"))?;
        }
        let url = http::check_url("endpoint", self.endpoint())?;
        if url.query().is_some() {
            return Err(ChannelError::key(
                "endpoint",
                format!(
                    "`endpoint` {:?}: give it without a query; the token comes from `webhook_token_env`",
                    self.endpoint()
                ),
            ));
        }
        http::timeout(self.timeout_secs)?;
        Ok(())
    }

    fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(FEISHU_ENDPOINT)
    }
}

fn check_user_id(id: &str) -> Result<(), ChannelError> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(ChannelError::table(format!(
            "user id {id:?}: expected letters, digits, `_` or `-` (such as ou_…)"
        )))
    }
}

/// Posts notices to a Feishu group. Share it behind an `Arc`.
pub struct Feishu {
    cfg: FeishuConfig,
    client: reqwest::Client,
    token: String,
    secret: Option<String>,
}

impl fmt::Debug for Feishu {
    // By hand: token and secret stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feishu")
            .field("endpoint", &self.cfg.endpoint())
            .field("signed", &self.secret.is_some())
            .field("at_user_ids", &self.cfg.at_user_ids)
            .finish_non_exhaustive()
    }
}

/// Feishu's documented robot signature: HMAC-SHA256 keyed with
/// `timestamp + "\n" + secret` over an empty message, in Base64.
pub fn sign(timestamp_secs: i64, secret: &str) -> String {
    let key = format!("{timestamp_secs}\n{secret}");
    http::base64(&http::hmac_sha256(key.as_bytes(), b""))
}

impl Feishu {
    /// Validates the configuration and reads the token and secret now.
    ///
    /// # Errors
    /// What is wrong or missing.
    pub fn new(cfg: FeishuConfig) -> Result<Feishu, ChannelError> {
        cfg.validate().map_err(|e| e.in_channel("feishu"))?;
        let token = http::secret("feishu", "webhook_token_env", &cfg.webhook_token_env)?;
        if token.contains(['/', '?', '#']) {
            return Err(ChannelError::table(format!(
                "feishu: {} must hold the token alone, not a URL",
                cfg.webhook_token_env
            )));
        }
        let secret = cfg
            .secret_env
            .as_deref()
            .map(|v| http::secret("feishu", "secret_env", v))
            .transpose()?;
        let client = http::client(http::timeout(cfg.timeout_secs)?)?;
        Ok(Feishu {
            cfg,
            client,
            token,
            secret,
        })
    }

    /// The mentions for `to` (a rota's phone numbers), or the configured ids.
    fn mentions(&self, to: Option<&[String]>) -> Vec<String> {
        let mut out: Vec<String> = match to {
            None => self
                .cfg
                .at_user_ids
                .iter()
                .map(|id| format!("<at id={id}></at>"))
                .collect(),
            Some(phones) => phones
                .iter()
                .map(|p| match self.cfg.mentions.get(p) {
                    Some(id) => format!("<at id={id}></at>"),
                    None => format!("@{}", plain(p)),
                })
                .collect(),
        };
        if self.cfg.at_all {
            out.push("<at id=all></at>".into());
        }
        out
    }

    /// The JSON body posted for a notice at `timestamp_secs`, within
    /// [`MAX_BODY_BYTES`].
    pub fn body(&self, notice: &Notice, to: Option<&[String]>, timestamp_secs: i64) -> Value {
        let mentions = self.mentions(to);
        let mut body = card(notice, &mentions, notice.alerts.len());
        if body.to_string().len() > MAX_BODY_BYTES {
            // Fewer alerts until it fits; the card says how many were left out.
            let (mut lo, mut hi) = (0, notice.alerts.len());
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if card(notice, &mentions, mid).to_string().len() <= MAX_BODY_BYTES {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            body = card(notice, &mentions, lo);
        }
        if let Some(secret) = &self.secret {
            body["timestamp"] = Value::String(timestamp_secs.to_string());
            body["sign"] = Value::String(sign(timestamp_secs, secret));
        }
        body
    }
}

/// Text without the characters lark_md would read as markup (a series
/// name holding `<at id=all>` must not mention the whole group).
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => '‹',
            '>' => '›',
            '*' | '[' | ']' | '(' | ')' | '~' | '`' => ' ',
            c => c,
        })
        .collect()
}

/// The card with the first `shown` alerts.
fn card(notice: &Notice, mentions: &[String], shown: usize) -> Value {
    let template = match notice.kind {
        NoticeKind::Resolved => "green",
        NoticeKind::Firing | NoticeKind::Repeat => "red",
    };
    let mut elements = Vec::new();
    if !notice.condition.is_empty() {
        elements.push(json!({"tag": "div", "text": {"tag": "lark_md",
            "content": format!("**{}** · {}", plain(notice.severity.as_str()), plain(&notice.condition))}}));
    }
    for a in notice.alerts.iter().take(shown) {
        let what = [a.layer_name(), &a.service, &a.series, &a.host]
            .iter()
            .filter(|x| !x.is_empty())
            .map(|x| plain(x))
            .collect::<Vec<_>>()
            .join(" ");
        let mut line = format!("**{}** {what}: **{}**", a.status.word(), plain(&a.value));
        if !a.threshold.is_empty() {
            line.push_str(&format!(" (threshold {})", plain(&a.threshold)));
        }
        if let Some(by) = &a.acked_by {
            line.push_str(&format!(", acked by {}", plain(by)));
        }
        if !a.link.is_empty() {
            line.push_str(&format!(
                "\n[dashboard]({})",
                a.link.replace([')', ' '], "")
            ));
        }
        if !a.summary.is_empty() {
            line.push_str(&format!("\n{}", plain(&a.summary)));
        }
        elements.push(json!({"tag": "div", "text": {"tag": "lark_md", "content": line}}));
    }
    if notice.alerts.len() > shown {
        elements.push(json!({"tag": "div", "text": {"tag": "lark_md",
            "content": format!("… and {} more", notice.alerts.len() - shown)}}));
    }
    if !mentions.is_empty() {
        elements
            .push(json!({"tag": "div", "text": {"tag": "lark_md", "content": mentions.join(" ")}}));
    }
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {
                "template": template,
                "title": {"tag": "plain_text", "content": notice.title()},
            },
            "elements": elements,
        },
    })
}

/// Sorts Feishu's answer: the body's `code` (or the older `StatusCode`)
/// decides when there is one, the HTTP status otherwise.
fn outcome(answer: &http::Answer) -> Result<(), DeliveryError> {
    let json = answer.json();
    let code = json
        .as_ref()
        .and_then(|j| j.get("code").or_else(|| j.get("StatusCode")))
        .and_then(Value::as_i64);
    let msg = json
        .as_ref()
        .and_then(|j| j.get("msg").or_else(|| j.get("StatusMessage")))
        .and_then(Value::as_str)
        .unwrap_or("");
    match code {
        Some(0) if answer.status.is_success() => Ok(()),
        Some(SIGNATURE_REFUSED) => Err(DeliveryError::Permanent(format!(
            "feishu: code {SIGNATURE_REFUSED}: signature or timestamp refused: {msg}"
        ))),
        Some(c) if TRANSIENT.contains(&c) || answer.status.is_server_error() => {
            Err(DeliveryError::Transient(format!("feishu: code {c}: {msg}")))
        }
        Some(c) => Err(DeliveryError::Permanent(format!("feishu: code {c}: {msg}"))),
        None => Err(answer.status_error("feishu").unwrap_or_else(|| {
            DeliveryError::Transient(format!("feishu: answer has no code: {}", answer.quote()))
        })),
    }
}

#[async_trait::async_trait]
impl super::Notifier for Feishu {
    async fn send(&self, notice: &Notice, to: Option<&[String]>) -> Result<(), DeliveryError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let body = self.body(notice, to, now).to_string();
        let url = format!(
            "{}/{}",
            self.cfg.endpoint().trim_end_matches('/'),
            http::percent_encode(&self.token)
        );
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let answer = http::execute("feishu", request).await?;
        outcome(&answer)
    }

    fn kind(&self) -> &'static str {
        "feishu"
    }
}

impl super::Channel for FeishuConfig {
    const KIND: &'static str = "feishu";

    fn check(&self) -> Result<(), ChannelError> {
        self.validate()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn super::Notifier>, ChannelError> {
        Feishu::new(self.clone())
            .map(|n| std::sync::Arc::new(n) as std::sync::Arc<dyn super::Notifier>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feishu's scheme, recomputed with ring directly: key = "ts\nsecret",
    /// message empty.
    #[test]
    fn the_signature_keys_hmac_with_timestamp_and_secret() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"1599360473\nsecret");
        let want = http::base64(ring::hmac::sign(&key, b"").as_ref());
        assert_eq!(sign(1_599_360_473, "secret"), want);
        assert_ne!(sign(1_599_360_474, "secret"), want);
    }
}
