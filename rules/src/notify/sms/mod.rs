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

//!
//! The module is split by job: [`aliyun`] signs and sorts Dysmsapi
//! answers, [`gateway`] fills a gateway's templates and checks its answer,
//! [`text`] fits the notice into one message.

pub mod aliyun;
pub mod gateway;
pub mod text;

use std::fmt;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::http;
use super::{DeliveryError, Notice};

use crate::notify::ChannelError;
pub use aliyun::{ALIYUN_ENDPOINT, AliyunConfig};
pub use gateway::GatewayConfig;
use gateway::{Template, Var};
pub use text::{gsm_len, short_text};

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

impl SmsConfig {
    /// Checks what can be checked without the network or the environment.
    ///
    /// # Errors
    /// What is wrong, naming the key.
    pub fn validate(&self) -> Result<(), ChannelError> {
        for p in &self.to {
            check_phone(p).map_err(|e| e.for_key("to"))?;
        }
        if self.max_chars.is_some_and(|m| m < 20) {
            return Err(ChannelError::key(
                "max_chars",
                "`max_chars` must be at least 20",
            ));
        }
        http::timeout(self.timeout_secs)?;
        match (&self.aliyun, &self.gateway) {
            (Some(a), None) => a.validate(),
            (None, Some(g)) => g.validate().map(|_| ()),
            (None, None) => Err(ChannelError::table(
                "expected a provider: an `aliyun` or a `gateway` table",
            )),
            (Some(_), Some(_)) => Err(ChannelError::key(
                "aliyun",
                "`aliyun` and `gateway` are both given; expected one provider",
            )),
        }
    }
}

pub(crate) fn check_phone(p: &str) -> Result<(), ChannelError> {
    let digits = p.strip_prefix('+').unwrap_or(p);
    if (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ChannelError::table(format!(
            "phone number {p:?}: expected 5 to 20 digits with an optional leading +"
        )))
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
    pub fn new(cfg: SmsConfig) -> Result<Sms, ChannelError> {
        cfg.validate().map_err(|e| e.in_channel("sms"))?;
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
                    HeaderName::from_bytes(name.as_bytes()).map_err(ChannelError::table)?,
                    HeaderValue::from_str(value).map_err(ChannelError::table)?,
                );
            }
            for (name, var) in &g.headers_env {
                let value = http::secret("sms", "headers_env", var)?;
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    ChannelError::table(format!("sms: {var} does not hold a valid header value"))
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
            return Err(ChannelError::table("sms: no provider"));
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
        match (&self.provider, &self.cfg.aliyun, &self.cfg.gateway) {
            (Provider::Aliyun { secret }, Some(cfg), _) => {
                aliyun::send(&self.client, cfg, secret, phones, &text, notice).await
            }
            (
                Provider::Gateway {
                    url,
                    body,
                    method,
                    headers,
                    per_recipient,
                },
                _,
                Some(g),
            ) => {
                let request = gateway::Request {
                    url,
                    body: body.as_ref(),
                    method,
                    headers,
                    per_recipient: *per_recipient,
                };
                gateway::send(&self.client, g, &request, phones, &text, notice).await
            }
            _ => Err(DeliveryError::Permanent(
                "sms: provider and configuration disagree".into(),
            )),
        }
    }

    fn kind(&self) -> &'static str {
        "sms"
    }
}

impl super::Channel for SmsConfig {
    const KIND: &'static str = "sms";

    fn check(&self) -> Result<(), ChannelError> {
        self.validate()
    }

    fn build(&self) -> Result<std::sync::Arc<dyn super::Notifier>, ChannelError> {
        Sms::new(self.clone())
            .map(|n| std::sync::Arc::new(n) as std::sync::Arc<dyn super::Notifier>)
    }
}

#[cfg(test)]
mod tests {
    use super::aliyun::{canonical_query, signature as aliyun_signature};
    use super::gateway::{Template, Vars};
    use super::*;
    use crate::notify::{AlertStatus, NoticeAlert, NoticeKind};
    use std::collections::BTreeMap;

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
            severity: crate::rule::Severity::Critical,
            condition: "error_ratio > 5%".into(),
            labels: vec![],
            alerts: vec![NoticeAlert {
                status: AlertStatus::Firing,
                layer: Some(panorama_model::Layer::Url),
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
            t.render(|v| vars.get(v)),
            r#"{"to":["13800000000","+8613900000000"],"m":"a \"b\" &c","q":"a%20%22b%22%20%26c"}"#
        );
        assert!(
            Template::parse("{{txet}}")
                .unwrap_err()
                .to_string()
                .contains("unknown placeholder `txet`")
        );
        assert!(Template::parse("{{text|html}}").is_err());
        assert!(Template::parse("{{text").is_err());
    }
}
