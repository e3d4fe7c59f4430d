//! The voice channel: a phone call that reads the alert aloud and asks
//! the callee to press a key to acknowledge it, through Aliyun voice
//! notification, Tencent Cloud VMS or any HTTP gateway.
//!
//! The channel places one call per number; who is called when, and what
//! happens without an answer, is the engine's (see the engine's voice
//! escalation): a call not answered, or not receipted within
//! `answer_timeout`, moves on to the next person at once, and the key
//! press acknowledges the alert. Receipts arrive at
//! `POST /api/v1/voice/callback/{receiver}?token=…`, the token read from
//! `callback_token_env` and compared in constant time.
//!
//! Providers limit calls per number (Aliyun: one a minute, five an hour,
//! twenty a day); the engine counts calls against those limits before
//! calling and sends an SMS through `fallback` instead of a call the
//! provider would refuse.
//!
//! ```toml
//! [receiver.voice]
//! to = ["+8613800000001", "+8613800000002"]   # called in turn; a rota replaces it
//! language = "zh"                             # "zh" | "en"
//! fallback = "sms-oncall"                     # an SMS receiver
//! callback_token_env = "PANORAMA_VOICE_CALLBACK_TOKEN"
//! answer_timeout = "2m"
//! [receiver.voice.aliyun]
//! access_key_id = "LTAI5tExample"
//! access_key_secret_env = "PANORAMA_ALIYUN_SECRET"
//! tts_code = "TTS_123456789"                   # ${severity} ${service} ${what} ${value}
//! called_show_number = "057100000000"
//! ```

pub mod aliyun;
pub mod receipt;
pub mod tencent;
pub mod text;

use std::fmt;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::http;
use super::sms::GatewayConfig;
use super::sms::gateway::{Template, Vars};
use super::{DeliveryError, Notice};
use crate::notify::ChannelError;

pub use aliyun::AliyunVoiceConfig;
pub use receipt::{Event, Receipt};
pub use tencent::TencentVoiceConfig;
pub use text::{Language, Spoken};

/// Default wait for a receipt before the next person is called.
pub const DEFAULT_ANSWER_TIMEOUT_MS: i64 = 120_000;

/// Calls allowed per number: per minute, hour and day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per minute.
    pub per_minute: Option<u32>,
    /// Per hour.
    pub per_hour: Option<u32>,
    /// Per day.
    pub per_day: Option<u32>,
}

/// `[receiver.voice]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceConfig {
    /// Numbers called in turn (a rota supplies the person on duty instead).
    #[serde(default)]
    pub to: Vec<String>,
    /// Language of the spoken text. Default `zh`.
    #[serde(default)]
    pub language: Language,
    /// An SMS receiver that gets the notice when a call is over a
    /// per-number limit, and the resolved notice.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Environment variable holding the secret of the callback URL;
    /// without it, receipts are refused and only `answer_timeout` moves on.
    #[serde(default)]
    pub callback_token_env: Option<String>,
    /// The key that acknowledges. Default `1`.
    #[serde(default)]
    pub ack_key: Option<String>,
    /// How long to wait for a receipt before calling the next person. Default `2m`.
    #[serde(default)]
    pub answer_timeout: Option<String>,
    /// Calls to the same person before moving on. Default 1.
    #[serde(default)]
    pub repeat_call: Option<u32>,
    /// How often the provider plays the message in one call (1 to 3). Default 2.
    #[serde(default)]
    pub play_times: Option<u32>,
    /// Calls per number per minute; default the provider's (Aliyun and Tencent: 1).
    #[serde(default)]
    pub calls_per_minute: Option<u32>,
    /// Calls per number per hour; default the provider's (5).
    #[serde(default)]
    pub calls_per_hour: Option<u32>,
    /// Calls per number per day; default the provider's (20).
    #[serde(default)]
    pub calls_per_day: Option<u32>,
    /// Seconds one request may take. Default 10.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Aliyun voice notification.
    #[serde(default)]
    pub aliyun: Option<AliyunVoiceConfig>,
    /// Tencent Cloud VMS.
    #[serde(default)]
    pub tencent: Option<TencentVoiceConfig>,
    /// Any HTTP gateway; `{{text}}` is the spoken sentence, `{{phone}}`
    /// the number, `{{notice_id}}` the call id its receipts carry back.
    #[serde(default)]
    pub gateway: Option<GatewayConfig>,
}

impl VoiceConfig {
    /// Checks what can be checked without the network or the environment.
    ///
    /// # Errors
    /// What is wrong, naming the key.
    pub fn validate(&self) -> Result<(), ChannelError> {
        for p in &self.to {
            super::sms::check_phone(p).map_err(|e| e.for_key("to"))?;
        }
        if let Some(f) = &self.fallback
            && f.trim().is_empty()
        {
            return Err(ChannelError::key(
                "fallback",
                "`fallback` is empty; name an SMS receiver",
            ));
        }
        if let Some(v) = &self.callback_token_env {
            http::check_env_name("callback_token_env", v)?;
        }
        if let Some(k) = &self.ack_key
            && !(k.len() == 1
                && k.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'))
        {
            return Err(ChannelError::key(
                "ack_key",
                format!("`ack_key` {k:?}: expected one key, 0-9, * or #"),
            ));
        }
        self.answer_timeout_ms()?;
        if self.repeat_call.is_some_and(|n| !(1..=5).contains(&n)) {
            return Err(ChannelError::key(
                "repeat_call",
                "`repeat_call` must be 1 to 5",
            ));
        }
        if self.play_times.is_some_and(|n| !(1..=3).contains(&n)) {
            return Err(ChannelError::key(
                "play_times",
                "`play_times` must be 1 to 3",
            ));
        }
        for (key, v) in [
            ("calls_per_minute", self.calls_per_minute),
            ("calls_per_hour", self.calls_per_hour),
            ("calls_per_day", self.calls_per_day),
        ] {
            if v == Some(0) {
                return Err(ChannelError::key(
                    key,
                    format!("`{key}` must be at least 1"),
                ));
            }
        }
        http::timeout(self.timeout_secs)?;
        match (&self.aliyun, &self.tencent, &self.gateway) {
            (Some(a), None, None) => a.validate(),
            (None, Some(t), None) => t.validate(),
            (None, None, Some(g)) => g.validate().map(|_| ()),
            (None, None, None) => Err(ChannelError::table(
                "expected a provider: an `aliyun`, `tencent` or `gateway` table",
            )),
            _ => Err(ChannelError::table(
                "more than one provider given; expected one of `aliyun`, `tencent`, `gateway`",
            )),
        }
    }

    /// `answer_timeout` in ms.
    ///
    /// # Errors
    /// Not a duration, or under 30 s.
    pub fn answer_timeout_ms(&self) -> Result<i64, ChannelError> {
        match &self.answer_timeout {
            None => Ok(DEFAULT_ANSWER_TIMEOUT_MS),
            Some(s) => match crate::rule::expr::parse_duration(s) {
                Ok(ms) if ms >= 30_000 => Ok(ms),
                Ok(_) => Err(ChannelError::key(
                    "answer_timeout",
                    "`answer_timeout` must be at least 30s",
                )),
                Err(m) => Err(ChannelError::key(
                    "answer_timeout",
                    format!("`answer_timeout`: {m}"),
                )),
            },
        }
    }

    /// The key that acknowledges.
    pub fn ack_key(&self) -> &str {
        self.ack_key.as_deref().unwrap_or("1")
    }

    /// Calls to one person before the next.
    pub fn repeat_call(&self) -> u32 {
        self.repeat_call.unwrap_or(1)
    }

    /// The per-number limits in force: the configured ones, else the
    /// provider's documented defaults (none for a gateway).
    pub fn limits(&self) -> Limits {
        let provider = if self.gateway.is_some() {
            Limits {
                per_minute: None,
                per_hour: None,
                per_day: None,
            }
        } else {
            Limits {
                per_minute: Some(1),
                per_hour: Some(5),
                per_day: Some(20),
            }
        };
        Limits {
            per_minute: self.calls_per_minute.or(provider.per_minute),
            per_hour: self.calls_per_hour.or(provider.per_hour),
            per_day: self.calls_per_day.or(provider.per_day),
        }
    }
}

enum Provider {
    Aliyun(String),
    Tencent(String),
    Gateway {
        url: Template,
        body: Option<Template>,
        method: reqwest::Method,
        headers: HeaderMap,
    },
}

/// Places calls. Share it behind an `Arc`.
pub struct Voice {
    cfg: VoiceConfig,
    client: reqwest::Client,
    provider: Provider,
    callback_token: Option<String>,
}

impl fmt::Debug for Voice {
    // By hand: secrets stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Voice")
            .field("to", &self.cfg.to)
            .field("callbacks", &self.callback_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Voice {
    /// Validates the configuration and reads the secrets now.
    ///
    /// # Errors
    /// What is wrong or missing.
    pub fn new(cfg: VoiceConfig) -> Result<Voice, ChannelError> {
        cfg.validate().map_err(|e| e.in_channel("voice"))?;
        let client = http::client(http::timeout(cfg.timeout_secs)?)?;
        let provider = if let Some(a) = &cfg.aliyun {
            Provider::Aliyun(http::secret(
                "voice",
                "access_key_secret_env",
                &a.access_key_secret_env,
            )?)
        } else if let Some(t) = &cfg.tencent {
            Provider::Tencent(http::secret("voice", "secret_key_env", &t.secret_key_env)?)
        } else if let Some(g) = &cfg.gateway {
            let (url, body, method) = g.validate()?;
            let mut headers = HeaderMap::new();
            for (name, value) in &g.headers {
                headers.insert(
                    HeaderName::from_bytes(name.as_bytes()).map_err(ChannelError::table)?,
                    HeaderValue::from_str(value).map_err(ChannelError::table)?,
                );
            }
            for (name, var) in &g.headers_env {
                let mut value = HeaderValue::from_str(&http::secret("voice", "headers_env", var)?)
                    .map_err(|_| {
                        ChannelError::table(format!(
                            "voice: {var} does not hold a valid header value"
                        ))
                    })?;
                value.set_sensitive(true);
                headers.insert(
                    HeaderName::from_bytes(name.as_bytes()).map_err(ChannelError::table)?,
                    value,
                );
            }
            if body.is_some() {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_str(&g.content_type).map_err(ChannelError::table)?,
                );
            }
            Provider::Gateway {
                url,
                body,
                method,
                headers,
            }
        } else {
            return Err(ChannelError::table("voice: no provider"));
        };
        let callback_token = cfg
            .callback_token_env
            .as_deref()
            .map(|v| http::secret("voice", "callback_token_env", v))
            .transpose()?;
        Ok(Voice {
            cfg,
            client,
            provider,
            callback_token,
        })
    }

    /// True when `given` is this receiver's callback token. Constant time,
    /// so the comparison does not leak how much of a guess was right; no
    /// token configured refuses everything.
    pub fn token_matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        match &self.callback_token {
            Some(t) => bool::from(t.as_bytes().ct_eq(given.as_bytes())),
            None => false,
        }
    }

    /// Places one call to `number` for `notice` (whose id is the call id).
    async fn call(&self, notice: &Notice, number: &str) -> Result<(), DeliveryError> {
        let lang = self.cfg.language;
        let spoken = Spoken::of(notice, lang);
        let params = [
            spoken.severity.as_str(),
            spoken.service.as_str(),
            spoken.what.as_str(),
            spoken.value.as_str(),
        ];
        let play = self.cfg.play_times.unwrap_or(2);
        match &self.provider {
            Provider::Aliyun(secret) => {
                let cfg = self
                    .cfg
                    .aliyun
                    .as_ref()
                    .expect("aliyun provider has its config");
                aliyun::call(&self.client, cfg, secret, number, params, play, notice).await
            }
            Provider::Tencent(key) => {
                let cfg = self
                    .cfg
                    .tencent
                    .as_ref()
                    .expect("tencent provider has its config");
                tencent::call(&self.client, cfg, key, number, params, play, notice).await
            }
            Provider::Gateway {
                url,
                body,
                method,
                headers,
            } => {
                let g = self
                    .cfg
                    .gateway
                    .as_ref()
                    .expect("gateway provider has its config");
                let text = spoken.sentence(notice.kind, lang, self.cfg.ack_key());
                let phones = [number.to_owned()];
                let vars = Vars {
                    phones: &phones,
                    text: &text,
                    notice,
                };
                let mut request = self
                    .client
                    .request(method.clone(), url.render(|v| vars.get(v)))
                    .headers(headers.clone());
                if let Some(b) = body {
                    request = request.body(b.render(|v| vars.get(v)));
                }
                let answer = http::execute("voice", request).await?;
                super::sms::gateway::outcome(g, &answer).map_err(|e| match e {
                    DeliveryError::Transient(m) => {
                        DeliveryError::Transient(m.replacen("sms", "voice", 1))
                    }
                    DeliveryError::Permanent(m) => {
                        DeliveryError::Permanent(m.replacen("sms", "voice", 1))
                    }
                })
            }
        }
    }
}

#[async_trait::async_trait]
impl super::Notifier for Voice {
    async fn send(&self, notice: &Notice, to: Option<&[String]>) -> Result<(), DeliveryError> {
        let numbers = to.unwrap_or(&self.cfg.to);
        if numbers.is_empty() {
            return Err(DeliveryError::Permanent("voice: no number to call".into()));
        }
        for n in numbers {
            super::sms::check_phone(n)
                .map_err(|e| DeliveryError::Permanent(format!("voice: {e}")))?;
            self.call(notice, n).await?;
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "voice"
    }

    fn voice(&self) -> Option<&Voice> {
        Some(self)
    }
}

impl super::Channel for VoiceConfig {
    const KIND: &'static str = "voice";

    fn check(&self) -> Result<(), ChannelError> {
        self.validate()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn super::Notifier>, ChannelError> {
        Voice::new(self.clone())
            .map(|n| std::sync::Arc::new(n) as std::sync::Arc<dyn super::Notifier>)
    }
}
