//! Aliyun voice notification (Dyvmsapi `SingleCallByTts`, version
//! 2017-05-25): one number per call, the template's variables as
//! `TtsParam`, the call id as `OutId` so that the call receipt maps back.
//! Signed like Aliyun SMS (RPC signature V1, HMAC-SHA1), with the same
//! sorting of `Code`s.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::notify::ChannelError;
use crate::notify::http::{self, Answer};
use crate::notify::sms::aliyun::{ALIYUN_TRANSIENT, signed_get_url};
use crate::notify::{DeliveryError, Notice};

/// Aliyun's public endpoint for Dyvmsapi.
pub const DYVMS_ENDPOINT: &str = "https://dyvmsapi.aliyuncs.com/";

/// `[receiver.voice.aliyun]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunVoiceConfig {
    /// The AccessKey id.
    pub access_key_id: String,
    /// Name of the environment variable holding the AccessKey secret.
    pub access_key_secret_env: String,
    /// The approved TTS template (`TtsCode`) with the variables
    /// `${severity}`, `${service}`, `${what}` and `${value}`.
    pub tts_code: String,
    /// The number shown to the callee (`CalledShowNumber`); Aliyun's
    /// public pool when absent.
    #[serde(default)]
    pub called_show_number: Option<String>,
    /// API endpoint; default [`DYVMS_ENDPOINT`].
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `RegionId`. Default `cn-hangzhou`.
    #[serde(default = "default_region")]
    pub region_id: String,
}

fn default_region() -> String {
    "cn-hangzhou".into()
}

impl AliyunVoiceConfig {
    pub(super) fn validate(&self) -> Result<(), ChannelError> {
        for (key, v) in [
            ("access_key_id", &self.access_key_id),
            ("tts_code", &self.tts_code),
            ("region_id", &self.region_id),
        ] {
            if v.trim().is_empty() {
                return Err(ChannelError::key(key, format!("`{key}` is empty")).within("aliyun"));
            }
        }
        if let Some(n) = &self.called_show_number
            && !(n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ChannelError::key(
                "aliyun.called_show_number",
                format!("aliyun: `called_show_number` {n:?}: expected digits"),
            ));
        }
        http::check_env_name("access_key_secret_env", &self.access_key_secret_env)
            .map_err(|e| e.within("aliyun"))?;
        http::check_url("endpoint", self.endpoint()).map_err(|e| e.within("aliyun"))?;
        Ok(())
    }

    fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(DYVMS_ENDPOINT)
    }
}

/// A mainland number as Dyvmsapi wants it: without `+86`.
fn national(number: &str) -> &str {
    number
        .strip_prefix("+86")
        .or_else(|| number.strip_prefix('+'))
        .unwrap_or(number)
}

/// Places one call.
pub(super) async fn call(
    client: &reqwest::Client,
    cfg: &AliyunVoiceConfig,
    secret: &str,
    number: &str,
    params: [&str; 4],
    play_times: u32,
    notice: &Notice,
) -> Result<(), DeliveryError> {
    let [severity, service, what, value] = params;
    let tts_param = serde_json::json!({
        "severity": severity, "service": service, "what": what, "value": value,
    })
    .to_string();
    let mut p = BTreeMap::new();
    for (k, v) in [
        ("AccessKeyId", cfg.access_key_id.as_str()),
        ("Action", "SingleCallByTts"),
        ("Format", "JSON"),
        ("RegionId", cfg.region_id.as_str()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("Version", "2017-05-25"),
        ("TtsCode", cfg.tts_code.as_str()),
        ("CalledNumber", national(number)),
    ] {
        p.insert(k.to_owned(), v.to_owned());
    }
    if let Some(show) = &cfg.called_show_number {
        p.insert("CalledShowNumber".into(), show.clone());
    }
    p.insert("TtsParam".into(), tts_param);
    p.insert("PlayTimes".into(), play_times.to_string());
    p.insert("OutId".into(), notice.id.chars().take(128).collect());
    let url = signed_get_url(cfg.endpoint(), p, secret);
    let answer = http::execute("voice", client.get(url)).await?;
    outcome(&answer)
}

fn outcome(answer: &Answer) -> Result<(), DeliveryError> {
    let json = answer.json();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    match field("Code").as_deref() {
        Some("OK") if answer.status.is_success() => Ok(()),
        Some(code) => {
            let msg = format!(
                "voice: aliyun {code}: {}",
                field("Message").unwrap_or_default()
            );
            if ALIYUN_TRANSIENT.contains(&code)
                || code.starts_with("Throttling")
                || answer.status.is_server_error()
            {
                Err(DeliveryError::Transient(msg))
            } else {
                Err(DeliveryError::Permanent(msg))
            }
        }
        None => Err(answer.status_error("voice").unwrap_or_else(|| {
            DeliveryError::Transient(format!(
                "voice: aliyun answer has no Code: {}",
                answer.quote()
            ))
        })),
    }
}
