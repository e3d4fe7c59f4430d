//! Tencent Cloud VMS `SendTtsVoice` (version 2020-09-02): a JSON `POST`
//! signed with TC3-HMAC-SHA256 as Tencent documents it — a canonical
//! request over the method, path, query, the signed headers
//! (`content-type`, `host`) and the body's SHA-256; a string to sign with
//! the timestamp and the credential scope `date/vms/tc3_request`; and the
//! key chain `"TC3" + SecretKey` → date → service → `tc3_request`.

use ring::digest;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::notify::ChannelError;
use crate::notify::http::{self, Answer};
use crate::notify::{DeliveryError, Notice};

/// Tencent's public endpoint for VMS.
pub const TENCENT_ENDPOINT: &str = "https://vms.tencentcloudapi.com/";

/// The content type signed and sent.
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// `Error.Code`s that say "later": request throttling, Tencent failing.
fn transient(code: &str) -> bool {
    code.starts_with("RequestLimitExceeded")
        || code.starts_with("InternalError")
        || code == "FailedOperation.FrequencyLimit"
        || code == "ResourceUnavailable.ServiceUnavailable"
}

/// `[receiver.voice.tencent]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentVoiceConfig {
    /// The SecretId (names the key).
    pub secret_id: String,
    /// Name of the environment variable holding the SecretKey.
    pub secret_key_env: String,
    /// `X-TC-Region`. Default `ap-guangzhou`.
    #[serde(default = "default_region")]
    pub region: String,
    /// The application's `VoiceSdkAppid`.
    pub voice_sdk_appid: String,
    /// The approved template (`TemplateId`) with four parameters: severity,
    /// service, what, value.
    pub template_id: String,
    /// API endpoint; default [`TENCENT_ENDPOINT`].
    #[serde(default)]
    pub endpoint: Option<String>,
}

fn default_region() -> String {
    "ap-guangzhou".into()
}

impl TencentVoiceConfig {
    pub(super) fn validate(&self) -> Result<(), ChannelError> {
        for (key, v) in [
            ("secret_id", &self.secret_id),
            ("region", &self.region),
            ("voice_sdk_appid", &self.voice_sdk_appid),
            ("template_id", &self.template_id),
        ] {
            if v.trim().is_empty() {
                return Err(ChannelError::key(key, format!("`{key}` is empty")).within("tencent"));
            }
        }
        http::check_env_name("secret_key_env", &self.secret_key_env)
            .map_err(|e| e.within("tencent"))?;
        http::check_url("endpoint", self.endpoint()).map_err(|e| e.within("tencent"))?;
        Ok(())
    }

    fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(TENCENT_ENDPOINT)
    }
}

fn sha256_hex(b: &[u8]) -> String {
    http::hex(digest::digest(&digest::SHA256, b).as_ref())
}

/// The `Authorization` header for a `POST /` with `body` to `host` at
/// `timestamp` (seconds).
pub fn authorization(
    secret_id: &str,
    secret_key: &str,
    host: &str,
    body: &[u8],
    timestamp: i64,
) -> String {
    let date = chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    let canonical = format!(
        "POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{host}\n\ncontent-type;host\n{}",
        sha256_hex(body)
    );
    let scope = format!("{date}/vms/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_date = http::hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = http::hmac_sha256(&k_date, b"vms");
    let k_signing = http::hmac_sha256(&k_service, b"tc3_request");
    let signature = http::hex(&http::hmac_sha256(&k_signing, to_sign.as_bytes()));
    format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={signature}"
    )
}

/// Places one call.
pub(super) async fn call(
    client: &reqwest::Client,
    cfg: &TencentVoiceConfig,
    secret_key: &str,
    number: &str,
    params: [&str; 4],
    play_times: u32,
    notice: &Notice,
) -> Result<(), DeliveryError> {
    let url = http::check_url("endpoint", cfg.endpoint())
        .map_err(|e| DeliveryError::Permanent(format!("voice: tencent: {e}")))?;
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_owned(),
    };
    let body = json!({
        "TemplateId": cfg.template_id,
        "CalledNumber": e164(number),
        "VoiceSdkAppid": cfg.voice_sdk_appid,
        "TemplateParamSet": params,
        "PlayTimes": play_times,
        "SessionContext": notice.id,
    })
    .to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let auth = authorization(
        &cfg.secret_id,
        secret_key,
        &host,
        body.as_bytes(),
        timestamp,
    );
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
        .header(reqwest::header::AUTHORIZATION, auth)
        .header("X-TC-Action", "SendTtsVoice")
        .header("X-TC-Version", "2020-09-02")
        .header("X-TC-Region", &cfg.region)
        .header("X-TC-Timestamp", timestamp.to_string())
        .body(body);
    let answer = http::execute("voice", request).await?;
    outcome(&answer)
}

/// A Chinese mainland number as Tencent wants it: `+86…`.
fn e164(number: &str) -> String {
    if number.starts_with('+') {
        number.to_owned()
    } else {
        format!("+86{number}")
    }
}

fn outcome(answer: &Answer) -> Result<(), DeliveryError> {
    let json = answer.json();
    let response = json.as_ref().and_then(|j| j.get("Response"));
    if let Some(err) = response.and_then(|r| r.get("Error")) {
        let code = err.get("Code").and_then(Value::as_str).unwrap_or("");
        let message = err.get("Message").and_then(Value::as_str).unwrap_or("");
        let msg = format!("voice: tencent {code}: {message}");
        return Err(if transient(code) {
            DeliveryError::Transient(msg)
        } else {
            DeliveryError::Permanent(msg)
        });
    }
    if let Some(e) = answer.status_error("voice") {
        return Err(e);
    }
    match response
        .and_then(|r| r.pointer("/SendStatus/CallId"))
        .and_then(Value::as_str)
    {
        Some(_) => Ok(()),
        None => Err(DeliveryError::Transient(format!(
            "voice: tencent answer has no SendStatus.CallId: {}",
            answer.quote()
        ))),
    }
}
