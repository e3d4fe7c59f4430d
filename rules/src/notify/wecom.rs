//! The WeCom (WeChat Work) channel: a group robot reached through its
//! webhook key.
//!
//! A WeCom robot cannot @-mention by mobile number in a markdown message,
//! only in a text one (`mentioned_mobile_list`). So the format follows
//! what the notice needs: with someone to mention (configured or from a
//! rota) it is text, so that the phone of the person on duty actually
//! buzzes; without, markdown, which reads better. `format` pins either.
//!
//! Like DingTalk, WeCom answers HTTP 200 with an `errcode`: the API
//! frequency limit (45009, a robot may post 20 times a minute) and a busy
//! system (-1) are retried; an invalid key (93000) or a bad message is not.
//!
//! ```toml
//! [receiver.wecom]
//! key_env = "PANORAMA_WECOM_KEY"
//! mentioned_mobiles = ["13800000000"]   # may be replaced by a rota
//! format = "auto"                       # "auto" | "markdown" | "text"
//! ```

use std::fmt;

use serde::Deserialize;

use super::http;
use super::{DeliveryError, Notice};
use crate::notify::ChannelError;

/// WeCom's robot endpoint.
pub const WECOM_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send";

/// `errcode`s worth a retry: system busy, frequency limit, concurrency limit.
const TRANSIENT: &[i64] = &[-1, 45_009, 45_033];

/// WeCom caps a text message at 2048 bytes and markdown at 4096.
const TEXT_MAX_BYTES: usize = 2048;
const MARKDOWN_MAX_BYTES: usize = 4096;

/// Which message type to post.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeComFormat {
    /// Text when someone is to be mentioned, markdown otherwise.
    #[default]
    Auto,
    /// Always markdown (mentions are dropped: WeCom cannot do them there).
    Markdown,
    /// Always text.
    Text,
}

/// A WeCom robot, as written under `[receiver.wecom]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComConfig {
    /// Name of the environment variable holding the webhook `key`.
    pub key_env: String,
    /// Mobile numbers to @-mention (`"@all"` for everyone).
    #[serde(default)]
    pub mentioned_mobiles: Vec<String>,
    /// Message type.
    #[serde(default)]
    pub format: WeComFormat,
    /// Robot endpoint; default [`WECOM_URL`]. Tests point it at a local server.
    #[serde(default)]
    pub url: Option<String>,
    /// Seconds one request may take. Default 10.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl WeComConfig {
    /// Checks what can be checked without the network or the environment.
    ///
    /// # Errors
    /// What is wrong, naming the key.
    pub fn validate(&self) -> Result<(), ChannelError> {
        http::check_env_name("key_env", &self.key_env)?;
        for m in &self.mentioned_mobiles {
            check_mobile(m).map_err(|e| e.for_key("mentioned_mobiles"))?;
        }
        let url = http::check_url("url", self.url())?;
        if url.query().is_some() {
            return Err(ChannelError::key(
                "url",
                format!(
                    "`url` {:?}: give the endpoint without a query; the key comes from `key_env`",
                    self.url()
                ),
            ));
        }
        http::timeout(self.timeout_secs)?;
        Ok(())
    }

    fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(WECOM_URL)
    }
}

fn check_mobile(m: &str) -> Result<(), ChannelError> {
    let digits = m.strip_prefix('+').unwrap_or(m);
    if m == "@all"
        || ((5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
    {
        Ok(())
    } else {
        Err(ChannelError::table(format!(
            "mobile {m:?}: expected digits or \"@all\""
        )))
    }
}

/// Posts notices to a WeCom group. Share it behind an `Arc`.
pub struct WeCom {
    cfg: WeComConfig,
    client: reqwest::Client,
    key: String,
}

impl fmt::Debug for WeCom {
    // By hand: the key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeCom")
            .field("url", &self.cfg.url())
            .field("mentioned_mobiles", &self.cfg.mentioned_mobiles)
            .finish_non_exhaustive()
    }
}

impl WeCom {
    /// Validates the configuration and reads the key now.
    ///
    /// # Errors
    /// What is wrong or missing.
    pub fn new(cfg: WeComConfig) -> Result<WeCom, ChannelError> {
        cfg.validate().map_err(|e| e.in_channel("wecom"))?;
        let key = http::secret("wecom", "key_env", &cfg.key_env)?;
        let client = http::client(http::timeout(cfg.timeout_secs)?)?;
        Ok(WeCom { cfg, client, key })
    }

    /// The JSON body posted for a notice.
    pub fn body(&self, notice: &Notice, mobiles: &[String]) -> serde_json::Value {
        let text = match self.cfg.format {
            WeComFormat::Text => true,
            WeComFormat::Markdown => false,
            WeComFormat::Auto => !mobiles.is_empty(),
        };
        if text {
            let title = notice.title();
            let content = format!(
                "{title}\n{}",
                plain(notice, TEXT_MAX_BYTES.saturating_sub(title.len() + 1))
            );
            serde_json::json!({
                "msgtype": "text",
                "text": {
                    "content": cut_bytes(&content, TEXT_MAX_BYTES),
                    "mentioned_mobile_list": mobiles,
                },
            })
        } else {
            serde_json::json!({
                "msgtype": "markdown",
                "markdown": { "content": cut_bytes(&http::markdown(notice), MARKDOWN_MAX_BYTES) },
            })
        }
    }
}

/// One entry per alert, for the text format (no markdown there), as many
/// as fit in `max` bytes with the count of the rest: a storm's message
/// then still ends with how many were left out instead of being cut off.
fn plain(notice: &Notice, max: usize) -> String {
    let mut s = String::new();
    let limit = http::MARKDOWN_ALERTS.min(notice.alerts.len());
    let mut shown = 0;
    for a in &notice.alerts[..limit] {
        let what = [&a.service, &a.series, &a.host]
            .iter()
            .filter(|x| !x.is_empty())
            .map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut entry = format!(
            "- {} {} {}: {}",
            a.status.word(),
            a.layer_name(),
            what,
            a.value
        );
        if !a.threshold.is_empty() {
            entry.push_str(&format!(" (threshold {})", a.threshold));
        }
        if !a.link.is_empty() {
            entry.push_str(&format!("\n  {}", a.link));
        }
        entry.push('\n');
        // Room for the "and N more" line.
        if s.len() + entry.len() + 40 > max {
            break;
        }
        s.push_str(&entry);
        shown += 1;
    }
    if notice.alerts.len() > shown {
        s.push_str(&format!("- … and {} more\n", notice.alerts.len() - shown));
    }
    s
}

/// `s` cut at a character boundary to at most `max` bytes; WeCom refuses
/// a longer message outright, and a shortened one still pages.
fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max - "…".len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[async_trait::async_trait]
impl super::Notifier for WeCom {
    async fn send(&self, notice: &Notice, to: Option<&[String]>) -> Result<(), DeliveryError> {
        let mobiles = to.unwrap_or(&self.cfg.mentioned_mobiles);
        for m in mobiles {
            check_mobile(m).map_err(|e| DeliveryError::Permanent(format!("wecom: {e}")))?;
        }
        let url = format!("{}?key={}", self.cfg.url(), http::percent_encode(&self.key));
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body(notice, mobiles).to_string());
        let answer = http::execute("wecom", request).await?;
        http::robot_errcode("wecom", &answer, TRANSIENT)
    }

    fn kind(&self) -> &'static str {
        "wecom"
    }
}

impl super::Channel for WeComConfig {
    const KIND: &'static str = "wecom";

    fn check(&self) -> Result<(), ChannelError> {
        self.validate()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn super::Notifier>, ChannelError> {
        WeCom::new(self.clone())
            .map(|n| std::sync::Arc::new(n) as std::sync::Arc<dyn super::Notifier>)
    }
}
