//! Aliyun SMS (Dysmsapi `SendSms`, version 2017-05-25), signed with the
//! RPC signature V1 (HMAC-SHA1 over the canonical query) as Aliyun
//! documents it. The signing is shared with the Aliyun voice channel.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::notify::ChannelError;
use crate::notify::http::{self, Answer};
use crate::notify::{DeliveryError, Notice};

/// Aliyun's public endpoint for Dysmsapi.
pub const ALIYUN_ENDPOINT: &str = "https://dysmsapi.aliyuncs.com/";

/// Aliyun `Code`s that say "later": flow control per minute/hour, API
/// throttling, the service itself failing, and a nonce collision (the
/// retry carries a fresh one).
pub(crate) const ALIYUN_TRANSIENT: &[&str] = &[
    "isv.BUSINESS_LIMIT_CONTROL",
    "ServiceUnavailable",
    "InternalError",
    "isp.SYSTEM_ERROR",
    "SignatureNonceUsed",
];

/// Aliyun SMS, signed with signature method V1 (HMAC-SHA1 over the
/// canonical query).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunConfig {
    /// The AccessKey id (not secret: it names the key).
    pub access_key_id: String,
    /// Name of the environment variable holding the AccessKey secret.
    pub access_key_secret_env: String,
    /// The approved signature name (`SignName`).
    pub sign_name: String,
    /// The approved template (`TemplateCode`), with one variable for the text.
    pub template_code: String,
    /// The template's variable that receives the text. Default `text`.
    #[serde(default = "default_text_param")]
    pub text_param: String,
    /// API endpoint; default [`ALIYUN_ENDPOINT`]. Tests point it at a local server.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `RegionId`. Default `cn-hangzhou`, which Dysmsapi expects.
    #[serde(default = "default_region")]
    pub region_id: String,
}

fn default_text_param() -> String {
    "text".into()
}

fn default_region() -> String {
    "cn-hangzhou".into()
}

impl AliyunConfig {
    pub(super) fn validate(&self) -> Result<(), ChannelError> {
        for (key, v) in [
            ("access_key_id", &self.access_key_id),
            ("sign_name", &self.sign_name),
            ("template_code", &self.template_code),
            ("text_param", &self.text_param),
            ("region_id", &self.region_id),
        ] {
            if v.trim().is_empty() {
                return Err(ChannelError::key(key, format!("`{key}` is empty")).within("aliyun"));
            }
        }
        http::check_env_name("access_key_secret_env", &self.access_key_secret_env)
            .map_err(|e| e.within("aliyun"))?;
        http::check_url("endpoint", self.endpoint()).map_err(|e| e.within("aliyun"))?;
        Ok(())
    }

    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(ALIYUN_ENDPOINT)
    }
}

/// Sends one SMS to `phones` (Dysmsapi takes up to a thousand numbers,
/// comma-separated, in one request).
pub(super) async fn send(
    client: &reqwest::Client,
    cfg: &AliyunConfig,
    secret: &str,
    phones: &[String],
    text: &str,
    notice: &Notice,
) -> Result<(), DeliveryError> {
    let template_param = serde_json::json!({ cfg.text_param.as_str(): text }).to_string();
    let mut params = BTreeMap::new();
    for (k, v) in [
        ("AccessKeyId", cfg.access_key_id.as_str()),
        ("Action", "SendSms"),
        ("Format", "JSON"),
        ("RegionId", cfg.region_id.as_str()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("Version", "2017-05-25"),
        ("SignName", cfg.sign_name.as_str()),
        ("TemplateCode", cfg.template_code.as_str()),
    ] {
        params.insert(k.to_owned(), v.to_owned());
    }
    params.insert("PhoneNumbers".into(), phones.join(","));
    params.insert("TemplateParam".into(), template_param);
    // Aliyun keeps OutId with the delivery report: the notice id ties
    // a report back to the page.
    params.insert("OutId".into(), notice.id.chars().take(256).collect());
    let url = signed_get_url(cfg.endpoint(), params, secret);
    let answer = http::execute("sms", client.get(url)).await?;
    outcome(&answer)
}

/// A GET URL for an Aliyun RPC API (SMS and voice alike): the request's
/// own nonce and timestamp added to `params`, then signed (RPC signature
/// V1).
pub(crate) fn signed_get_url(
    endpoint: &str,
    mut params: BTreeMap<String, String>,
    secret: &str,
) -> String {
    params.insert(
        "SignatureNonce".into(),
        format!("{:032x}", rand::random::<u128>()),
    );
    params.insert(
        "Timestamp".into(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    let sig = signature("GET", &params, secret);
    format!(
        "{endpoint}?Signature={}&{}",
        http::percent_encode(&sig),
        canonical_query(&params)
    )
}

/// Aliyun's RPC signature V1: `Base64(HMAC-SHA1(secret + "&",
/// METHOD + "&" + enc("/") + "&" + enc(canonical query)))`, the query
/// being every parameter but `Signature`, sorted by name, each name and
/// value RFC 3986-encoded.
pub(crate) fn signature(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
    let string_to_sign = format!(
        "{method}&{}&{}",
        http::percent_encode("/"),
        http::percent_encode(&canonical_query(params))
    );
    http::base64(&http::hmac_sha1(
        format!("{secret}&").as_bytes(),
        string_to_sign.as_bytes(),
    ))
}

/// Sorted by name (a `BTreeMap` sorts by bytes, which is Aliyun's order).
pub(crate) fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", http::percent_encode(k), http::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn outcome(answer: &Answer) -> Result<(), DeliveryError> {
    let json = answer.json();
    let code = json
        .as_ref()
        .and_then(|j| j.get("Code"))
        .and_then(serde_json::Value::as_str);
    let message = json
        .as_ref()
        .and_then(|j| j.get("Message"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    match code {
        Some("OK") if answer.status.is_success() => Ok(()),
        Some(code) => {
            let msg = format!("sms: aliyun {code}: {message}");
            if ALIYUN_TRANSIENT.contains(&code)
                || code.starts_with("Throttling")
                || answer.status.is_server_error()
            {
                Err(DeliveryError::Transient(msg))
            } else {
                Err(DeliveryError::Permanent(msg))
            }
        }
        None => Err(answer.status_error("sms").unwrap_or_else(|| {
            DeliveryError::Transient(format!(
                "sms: aliyun answer has no Code: {}",
                answer.quote()
            ))
        })),
    }
}
