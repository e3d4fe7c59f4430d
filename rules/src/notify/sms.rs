//! The SMS channel: a short text, within one message where possible, sent
//! through Aliyun SMS (signed as Aliyun documents) or any HTTP gateway
//! described by its request and its success check.
//!
//! One SMS is 160 GSM-7 characters, or 70 as soon as one character (a
//! Chinese one, an emoji) is outside that alphabet. A page that splits
//! into three parts costs three times as much and may arrive out of order,
//! so the text is built to fit: kind, severity, rule, the series and its
//! value, and the dashboard link. When it does not fit, the middle goes
//! (the rule's name and the value stay) and the link never does: a link
//! cut short is worse than none.
//!
//! ```toml
//! [receiver.sms]
//! to = ["13800000000"]                       # may be replaced by a rota
//! [receiver.sms.aliyun]
//! access_key_id = "LTAI5tExample"
//! access_key_secret_env = "PANORAMA_ALIYUN_SECRET"
//! sign_name = "Panorama"
//! template_code = "SMS_123456789"            # a template with ${text}
//! ```
//!
//! A gateway instead:
//!
//! ```toml
//! [receiver.sms]
//! to = ["+8613800000000"]
//! [receiver.sms.gateway]
//! url = "https://sms.example.com/v1/send"
//! headers_env = { Authorization = "PANORAMA_SMS_AUTH" }
//! body = '{"to": {{phones_json}}, "text": {{text|json}}}'
//! success_pointer = "/code"
//! success_value = "OK"
//! retry_values = ["THROTTLED"]
//! ```

use std::collections::BTreeMap;
use std::fmt;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::http::{self, Answer};
use super::{DeliveryError, Notice, NoticeKind};

/// Aliyun's public endpoint for Dysmsapi.
pub const ALIYUN_ENDPOINT: &str = "https://dysmsapi.aliyuncs.com/";

/// Aliyun `Code`s that say "later": flow control per minute/hour, API
/// throttling, the service itself failing, and a nonce collision (the
/// retry carries a fresh one).
const ALIYUN_TRANSIENT: &[&str] = &[
    "isv.BUSINESS_LIMIT_CONTROL",
    "ServiceUnavailable",
    "InternalError",
    "isp.SYSTEM_ERROR",
    "SignatureNonceUsed",
];

/// Where SMS go, as written under `[receiver.sms]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// Phone numbers, digits with an optional leading `+`. May be empty
    /// when a rota always supplies the numbers; a notice with nobody to
    /// send to then fails permanently and is reported.
    #[serde(default)]
    pub to: Vec<String>,
    /// Longest text to send; by default one SMS: 160 characters when all
    /// are GSM-7, else 70. Lower it when the provider's template or
    /// signature adds text of its own.
    #[serde(default)]
    pub max_chars: Option<usize>,
    /// Seconds one request may take. Default 10.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Aliyun SMS (Dysmsapi `SendSms`).
    #[serde(default)]
    pub aliyun: Option<AliyunConfig>,
    /// Any HTTP gateway.
    #[serde(default)]
    pub gateway: Option<GatewayConfig>,
}

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

/// A gateway described by its request and its answer.
///
/// `url` and `body` may hold placeholders: `{{text}}`, `{{phone}}`,
/// `{{phones}}` (comma-separated), `{{phones_json}}` (a JSON array),
/// `{{rule}}`, `{{severity}}`, `{{kind}}`, `{{notice_id}}`; each with an
/// optional filter, `{{text|json}}` (a JSON string literal, quotes
/// included) or `{{text|url}}` (percent-encoded). A template that uses
/// `{{phone}}` sends one request per number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Request URL (a template).
    pub url: String,
    /// `GET`, `POST` (default) or `PUT`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Fixed headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are secrets: header name → environment variable.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// Request body (a template); none for a GET.
    #[serde(default)]
    pub body: Option<String>,
    /// `Content-Type` of the body. Default `application/json`.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// JSON pointer (RFC 6901) into a 2xx answer that must equal
    /// `success_value`; without it any 2xx is success.
    #[serde(default)]
    pub success_pointer: Option<String>,
    /// What the pointer must hold (numbers and booleans compare by their text).
    #[serde(default)]
    pub success_value: Option<String>,
    /// Values at the pointer that mean "throttled, try later".
    #[serde(default)]
    pub retry_values: Vec<String>,
}

fn default_method() -> String {
    "POST".into()
}

fn default_content_type() -> String {
    "application/json".into()
}

impl SmsConfig {
    /// Checks what can be checked without the network or the environment.
    ///
    /// # Errors
    /// What is wrong, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        for p in &self.to {
            check_phone(p)?;
        }
        if self.max_chars.is_some_and(|m| m < 20) {
            return Err("`max_chars` must be at least 20".into());
        }
        http::timeout(self.timeout_secs)?;
        match (&self.aliyun, &self.gateway) {
            (Some(a), None) => a.validate(),
            (None, Some(g)) => g.validate().map(|_| ()),
            (None, None) => Err("expected a provider: an `aliyun` or a `gateway` table".into()),
            (Some(_), Some(_)) => {
                Err("`aliyun` and `gateway` are both given; expected one provider".into())
            }
        }
    }
}

impl AliyunConfig {
    fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("access_key_id", &self.access_key_id),
            ("sign_name", &self.sign_name),
            ("template_code", &self.template_code),
            ("text_param", &self.text_param),
            ("region_id", &self.region_id),
        ] {
            if v.trim().is_empty() {
                return Err(format!("aliyun: `{key}` is empty"));
            }
        }
        http::check_env_name("access_key_secret_env", &self.access_key_secret_env)
            .map_err(|e| format!("aliyun: {e}"))?;
        http::check_url("endpoint", self.endpoint()).map_err(|e| format!("aliyun: {e}"))?;
        Ok(())
    }

    fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(ALIYUN_ENDPOINT)
    }
}

impl GatewayConfig {
    /// Parses the templates; returns them with the method.
    fn validate(&self) -> Result<(Template, Option<Template>, reqwest::Method), String> {
        let url = Template::parse(&self.url).map_err(|e| format!("gateway: `url`: {e}"))?;
        // The URL must be one once the placeholders are filled in.
        http::check_url("url", &url.render(&Vars::sample()))
            .map_err(|e| format!("gateway: {e}"))?;
        let body = self
            .body
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|e| format!("gateway: `body`: {e}"))?;
        let method = match self.method.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            other => {
                return Err(format!(
                    "gateway: `method` {other:?}: expected GET, POST or PUT"
                ));
            }
        };
        if method == reqwest::Method::GET && body.is_some() {
            return Err("gateway: a GET has no `body`; put the placeholders in `url`".into());
        }
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("gateway: `headers`: {name:?} is not a header name"))?;
            HeaderValue::from_str(value).map_err(|_| {
                format!("gateway: `headers`: value of {name} is not a header value")
            })?;
        }
        for (name, var) in &self.headers_env {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("gateway: `headers_env`: {name:?} is not a header name"))?;
            http::check_env_name("headers_env", var).map_err(|e| format!("gateway: {e}"))?;
        }
        HeaderValue::from_str(&self.content_type)
            .map_err(|_| "gateway: `content_type` is not a header value".to_string())?;
        match (&self.success_pointer, &self.success_value) {
            (Some(p), Some(_)) if !(p.is_empty() || p.starts_with('/')) => {
                return Err(format!(
                    "gateway: `success_pointer` {p:?} is not a JSON pointer (like \"/code\")"
                ));
            }
            (Some(_), None) => {
                return Err("gateway: `success_pointer` needs a `success_value`".into());
            }
            (None, Some(_)) => {
                return Err("gateway: `success_value` needs a `success_pointer`".into());
            }
            _ => {}
        }
        if !self.retry_values.is_empty() && self.success_pointer.is_none() {
            return Err("gateway: `retry_values` needs a `success_pointer`".into());
        }
        Ok((url, body, method))
    }
}

fn check_phone(p: &str) -> Result<(), String> {
    let digits = p.strip_prefix('+').unwrap_or(p);
    if (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "phone number {p:?}: expected 5 to 20 digits with an optional leading +"
        ))
    }
}

/// Sends notices as SMS. Share it behind an `Arc`.
pub struct Sms {
    cfg: SmsConfig,
    client: reqwest::Client,
    provider: Provider,
}

enum Provider {
    Aliyun {
        secret: String,
    },
    Gateway {
        url: Template,
        body: Option<Template>,
        method: reqwest::Method,
        headers: HeaderMap,
        per_recipient: bool,
    },
}

impl fmt::Debug for Sms {
    // By hand: the provider holds the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sms")
            .field("to", &self.cfg.to)
            .field(
                "provider",
                &match self.provider {
                    Provider::Aliyun { .. } => "aliyun",
                    Provider::Gateway { .. } => "gateway",
                },
            )
            .finish_non_exhaustive()
    }
}

impl Sms {
    /// Validates the configuration and reads the secrets now, so that a
    /// broken setup fails at load time and not at the first page.
    ///
    /// # Errors
    /// What is wrong or missing.
    pub fn new(cfg: SmsConfig) -> Result<Sms, String> {
        cfg.validate().map_err(|e| format!("sms: {e}"))?;
        let client = http::client(http::timeout(cfg.timeout_secs)?)?;
        let provider = if let Some(a) = &cfg.aliyun {
            Provider::Aliyun {
                secret: http::secret("sms", "access_key_secret_env", &a.access_key_secret_env)?,
            }
        } else if let Some(g) = &cfg.gateway {
            let (url, body, method) = g.validate()?;
            let mut headers = HeaderMap::new();
            for (name, value) in &g.headers {
                headers.insert(
                    HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?,
                    HeaderValue::from_str(value).map_err(|e| e.to_string())?,
                );
            }
            for (name, var) in &g.headers_env {
                let value = http::secret("sms", "headers_env", var)?;
                let mut value = HeaderValue::from_str(&value)
                    .map_err(|_| format!("sms: {var} does not hold a valid header value"))?;
                value.set_sensitive(true);
                headers.insert(
                    HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?,
                    value,
                );
            }
            if body.is_some() {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_str(&g.content_type).map_err(|e| e.to_string())?,
                );
            }
            let per_recipient =
                url.uses(Var::Phone) || body.as_ref().is_some_and(|b| b.uses(Var::Phone));
            Provider::Gateway {
                url,
                body,
                method,
                headers,
                per_recipient,
            }
        } else {
            return Err("sms: no provider".into());
        };
        Ok(Sms {
            cfg,
            client,
            provider,
        })
    }

    /// The text an SMS for this notice carries.
    pub fn text(&self, notice: &Notice) -> String {
        short_text(notice, self.cfg.max_chars)
    }

    async fn send_aliyun(
        &self,
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
        params.insert(
            "SignatureNonce".into(),
            format!("{:032x}", rand::random::<u128>()),
        );
        params.insert(
            "Timestamp".into(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        let signature = aliyun_signature("GET", &params, secret);
        let url = format!(
            "{}?Signature={}&{}",
            cfg.endpoint(),
            http::percent_encode(&signature),
            canonical_query(&params)
        );
        let answer = http::execute("sms", self.client.get(url)).await?;
        aliyun_outcome(&answer)
    }

    async fn send_gateway(
        &self,
        phones: &[String],
        text: &str,
        notice: &Notice,
    ) -> Result<(), DeliveryError> {
        let Provider::Gateway {
            url,
            body,
            method,
            headers,
            per_recipient,
        } = &self.provider
        else {
            unreachable!("send_gateway on a gateway")
        };
        let g = self.cfg.gateway.as_ref().expect("gateway config");
        let batches: Vec<&[String]> = if *per_recipient {
            phones.chunks(1).collect()
        } else {
            vec![phones]
        };
        for batch in batches {
            let vars = Vars {
                phones: batch,
                text,
                notice,
            };
            let target = url.render(&vars);
            let mut request = self
                .client
                .request(method.clone(), &target)
                .headers(headers.clone());
            if let Some(b) = body {
                request = request.body(b.render(&vars));
            }
            let answer = http::execute("sms", request).await?;
            gateway_outcome(g, &answer)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl super::Notifier for Sms {
    async fn send(&self, notice: &Notice, to: Option<&[String]>) -> Result<(), DeliveryError> {
        let phones = to.unwrap_or(&self.cfg.to);
        if phones.is_empty() {
            return Err(DeliveryError::Permanent("sms: no phone number".into()));
        }
        for p in phones {
            check_phone(p).map_err(|e| DeliveryError::Permanent(format!("sms: {e}")))?;
        }
        let text = self.text(notice);
        match (&self.provider, &self.cfg.aliyun) {
            (Provider::Aliyun { secret }, Some(cfg)) => {
                self.send_aliyun(cfg, secret, phones, &text, notice).await
            }
            _ => self.send_gateway(phones, &text, notice).await,
        }
    }

    fn kind(&self) -> &'static str {
        "sms"
    }
}

/// Aliyun's RPC signature V1: `Base64(HMAC-SHA1(secret + "&",
/// METHOD + "&" + enc("/") + "&" + enc(canonical query)))`, the query
/// being every parameter but `Signature`, sorted by name, each name and
/// value RFC 3986-encoded.
fn aliyun_signature(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
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
fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", http::percent_encode(k), http::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn aliyun_outcome(answer: &Answer) -> Result<(), DeliveryError> {
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

fn gateway_outcome(g: &GatewayConfig, answer: &Answer) -> Result<(), DeliveryError> {
    if let Some(e) = answer.status_error("sms") {
        return Err(e);
    }
    let (Some(pointer), Some(expected)) = (&g.success_pointer, &g.success_value) else {
        return Ok(());
    };
    let found = answer.json().and_then(|j| {
        j.pointer(pointer).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    });
    match found {
        Some(v) if &v == expected => Ok(()),
        Some(v) if g.retry_values.contains(&v) => Err(DeliveryError::Transient(format!(
            "sms: gateway says {pointer} = {v:?}: {}",
            answer.quote()
        ))),
        Some(v) => Err(DeliveryError::Permanent(format!(
            "sms: gateway says {pointer} = {v:?}, expected {expected:?}: {}",
            answer.quote()
        ))),
        None => Err(DeliveryError::Permanent(format!(
            "sms: gateway answer has no {pointer}: {}",
            answer.quote()
        ))),
    }
}

// ---- the short text ----

/// The SMS text: `FIRING CRIT rule: service series host value vs threshold link`.
pub fn short_text(notice: &Notice, max_chars: Option<usize>) -> String {
    let kind = match notice.kind {
        NoticeKind::Firing => "FIRING",
        NoticeKind::Repeat => "STILL",
        NoticeKind::Resolved => "RESOLVED",
    };
    let severity = match notice.severity.as_str() {
        "critical" => "CRIT".to_owned(),
        "warning" => "WARN".to_owned(),
        other => other.to_uppercase(),
    };
    let mut head = format!("{kind} {severity} {}:", notice.rule);
    if let Some(short) = crate::incident::notice::short(notice) {
        head = short;
    }
    match notice.alerts.as_slice() {
        _ if crate::incident::notice::short(notice).is_some() => {}
        [] => {}
        [a] => {
            for part in [&a.service, &a.series, &a.host, &a.value] {
                if !part.is_empty() {
                    head.push(' ');
                    head.push_str(part);
                }
            }
            if !a.threshold.is_empty() {
                head.push_str(" vs ");
                head.push_str(&a.threshold);
            }
        }
        [a, rest @ ..] => {
            head.push_str(&format!(" {} series, e.g.", rest.len() + 1));
            for part in [&a.series, &a.host, &a.value] {
                if !part.is_empty() {
                    head.push(' ');
                    head.push_str(part);
                }
            }
        }
    }
    let link = notice
        .alerts
        .iter()
        .map(|a| a.link.as_str())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let join = |head: &str| {
        if link.is_empty() {
            head.to_owned()
        } else {
            format!("{head} {link}")
        }
    };
    let whole = join(&head);
    let gsm = gsm_len(&whole);
    let limit = max_chars.unwrap_or(if gsm.is_some() { 160 } else { 70 });
    let len = gsm.unwrap_or_else(|| whole.chars().count());
    if len <= limit {
        return whole;
    }
    let link_len = if link.is_empty() {
        0
    } else {
        gsm_len(link).unwrap_or_else(|| link.chars().count()) + 1
    };
    let ellipsis = if gsm.is_some() { ".." } else { "…" };
    let budget = limit.saturating_sub(link_len);
    // Kind, severity and rule stay whole when they leave room for a few
    // characters of the series; the series and value are cut instead.
    let prefix = format!("{kind} {severity} {}:", notice.rule);
    let prefix_len = gsm_len(&prefix).unwrap_or_else(|| prefix.chars().count());
    let shortened = if prefix_len + 10 <= budget && head.starts_with(&prefix) {
        let detail = &head[prefix.len()..];
        format!(
            "{prefix}{}",
            cut_middle(detail, budget - prefix_len, ellipsis)
        )
    } else {
        // A link that alone fills the message still goes out, as a second
        // part, after at least the first words.
        cut_middle(&head, budget.max(12), ellipsis)
    };
    join(&shortened)
}

/// `s` in at most `budget` units (GSM septets when it is GSM text,
/// characters otherwise), the middle replaced by `ellipsis`. The start
/// (kind, severity, rule) is worth more than the end (the value), so the
/// start gets the larger share.
fn cut_middle(s: &str, budget: usize, ellipsis: &str) -> String {
    let cost = |c: char| gsm_char_len(c).unwrap_or(1);
    let total: usize = s.chars().map(cost).sum();
    if total <= budget {
        return s.to_owned();
    }
    let room = budget.saturating_sub(ellipsis.chars().count());
    let tail_room = room * 2 / 5;
    let head_room = room - tail_room;
    let mut head = String::new();
    let mut used = 0;
    for c in s.chars() {
        if used + cost(c) > head_room {
            break;
        }
        used += cost(c);
        head.push(c);
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        if used + cost(c) > tail_room {
            break;
        }
        used += cost(c);
        tail.push(c);
    }
    let tail: String = tail.into_iter().rev().collect();
    format!("{}{ellipsis}{}", head.trim_end(), tail.trim_start())
}

/// Septets `s` takes in GSM-7, or `None` if it cannot be sent in GSM-7.
pub fn gsm_len(s: &str) -> Option<usize> {
    s.chars().map(gsm_char_len).sum()
}

fn gsm_char_len(c: char) -> Option<usize> {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENDED: &str = "^{}\\[~]|€\x0c";
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENDED.contains(c) {
        Some(2)
    } else {
        None
    }
}

// ---- gateway templates ----

/// A value a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Phone,
    Phones,
    PhonesJson,
    Text,
    Rule,
    Severity,
    Kind,
    NoticeId,
}

impl Var {
    const ALL: &'static [(&'static str, Var)] = &[
        ("phone", Var::Phone),
        ("phones", Var::Phones),
        ("phones_json", Var::PhonesJson),
        ("text", Var::Text),
        ("rule", Var::Rule),
        ("severity", Var::Severity),
        ("kind", Var::Kind),
        ("notice_id", Var::NoticeId),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Raw,
    Json,
    Url,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(Var, Filter),
}

/// A `{{name|filter}}` template, parsed at load time so a typo in a
/// placeholder is a load error.
#[derive(Debug, Clone, PartialEq)]
struct Template(Vec<Part>);

struct Vars<'a> {
    phones: &'a [String],
    text: &'a str,
    notice: &'a Notice,
}

impl Vars<'_> {
    fn sample() -> Vars<'static> {
        static NOTICE: std::sync::LazyLock<Notice> = std::sync::LazyLock::new(|| Notice {
            id: "n".into(),
            kind: NoticeKind::Firing,
            rule: "r".into(),
            severity: "critical".into(),
            condition: String::new(),
            labels: vec![],
            alerts: vec![],
            created_ms: 0,
        });
        static PHONES: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec!["10000".into()]);
        Vars {
            phones: &PHONES,
            text: "t",
            notice: &NOTICE,
        }
    }

    fn get(&self, v: Var) -> String {
        match v {
            Var::Phone => self.phones.first().cloned().unwrap_or_default(),
            Var::Phones => self.phones.join(","),
            Var::PhonesJson => serde_json::to_string(self.phones).unwrap_or_default(),
            Var::Text => self.text.to_owned(),
            Var::Rule => self.notice.rule.clone(),
            Var::Severity => self.notice.severity.clone(),
            Var::Kind => self.notice.kind.word().to_lowercase(),
            Var::NoticeId => self.notice.id.clone(),
        }
    }
}

impl Template {
    fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` at byte {start} is not closed"))?;
            let inner = after[..end].trim();
            let (name, filter) = match inner.split_once('|') {
                Some((n, f)) => (n.trim(), f.trim()),
                None => (inner, ""),
            };
            let var = Var::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    format!(
                        "unknown placeholder `{name}`; expected one of {}",
                        Var::ALL
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            let filter = match filter {
                "" => Filter::Raw,
                "json" => Filter::Json,
                "url" => Filter::Url,
                other => {
                    return Err(format!("unknown filter `{other}`; expected json or url"));
                }
            };
            parts.push(Part::Var(var, filter));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Template(parts))
    }

    fn uses(&self, v: Var) -> bool {
        self.0
            .iter()
            .any(|p| matches!(p, Part::Var(x, _) if *x == v))
    }

    fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v, f) => {
                    let value = vars.get(*v);
                    match f {
                        Filter::Raw => out.push_str(&value),
                        Filter::Json => {
                            out.push_str(&serde_json::to_string(&value).unwrap_or_default())
                        }
                        Filter::Url => out.push_str(&http::percent_encode(&value)),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{AlertStatus, NoticeAlert};

    /// The worked example of Aliyun's "signature mechanism" page for RPC
    /// APIs (ECS DescribeRegions, AccessKey `testid` / `testsecret`).
    #[test]
    fn aliyun_signature_matches_the_documented_example() {
        let params: BTreeMap<String, String> = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            format!(
                "GET&%2F&{}",
                http::percent_encode(&canonical_query(&params))
            ),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML\
             %26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            aliyun_signature("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    fn notice(series: &str, link: &str) -> Notice {
        Notice {
            id: "n1".into(),
            kind: NoticeKind::Firing,
            rule: "url-error-ratio".into(),
            severity: "critical".into(),
            condition: "error_ratio > 5%".into(),
            labels: vec![],
            alerts: vec![NoticeAlert {
                status: AlertStatus::Firing,
                layer: "url".into(),
                service: "login".into(),
                series: series.into(),
                host: "web1".into(),
                value: "12.5%".into(),
                threshold: "5%".into(),
                summary: String::new(),
                link: link.into(),
                since_ms: 0,
                acked_by: None,
            }],
            created_ms: 0,
        }
    }

    #[test]
    fn short_text_fits_one_gsm_sms_and_keeps_the_link() {
        let link = "https://p.example.com/s?l=url&s=login&n=POST%20%2Fpay&m=1795352400000";
        let t = short_text(&notice("POST /pay", link), None);
        assert_eq!(
            t,
            format!("FIRING CRIT url-error-ratio: login POST /pay web1 12.5% vs 5% {link}")
        );
        let long = "GET /api/v1/some/really/long/route/that/goes/on/and/on/and/on/forever";
        let t = short_text(&notice(long, link), None);
        assert!(gsm_len(&t).unwrap() <= 160, "{t}");
        assert!(t.ends_with(link), "{t}");
        assert!(t.starts_with("FIRING CRIT url-error-ratio"), "{t}");
        assert!(t.contains("vs 5%"), "{t}");
        assert!(t.contains(".."), "{t}");
    }

    #[test]
    fn chinese_text_fits_seventy_characters() {
        let link = "https://p.example.com/s?id=42";
        let t = short_text(
            &notice("支付接口 /pay 下单失败率升高请立即处理谢谢大家", link),
            None,
        );
        assert!(gsm_len(&t).is_none());
        assert!(t.chars().count() <= 70, "{} {t}", t.chars().count());
        assert!(t.ends_with(link));
        assert!(t.contains('…'));
    }

    #[test]
    fn templates_fill_and_escape() {
        let n = notice("POST /pay", "");
        let phones = vec!["13800000000".to_owned(), "+8613900000000".to_owned()];
        let vars = Vars {
            phones: &phones,
            text: "a \"b\" &c",
            notice: &n,
        };
        let t =
            Template::parse(r#"{"to":{{phones_json}},"m":{{ text | json }},"q":"{{text|url}}"}"#)
                .unwrap();
        assert_eq!(
            t.render(&vars),
            r#"{"to":["13800000000","+8613900000000"],"m":"a \"b\" &c","q":"a%20%22b%22%20%26c"}"#
        );
        assert!(
            Template::parse("{{txet}}")
                .unwrap_err()
                .contains("unknown placeholder `txet`")
        );
        assert!(Template::parse("{{text|html}}").is_err());
        assert!(Template::parse("{{text").is_err());
    }
}
