//! An SMS gateway described by its request and its success check:
//! `{{placeholder|filter}}` templates parsed at load time, one request per
//! number when the template names `{{phone}}`, and the answer read at a
//! JSON pointer. The templates are shared with the voice gateway.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::notify::ChannelError;
use crate::notify::http::{self, Answer};
use crate::notify::{DeliveryError, Notice, NoticeKind};

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

impl GatewayConfig {
    /// Parses the templates; returns them with the method.
    pub(crate) fn validate(
        &self,
    ) -> Result<(Template, Option<Template>, reqwest::Method), ChannelError> {
        let url = Template::parse(&self.url)
            .map_err(|e| ChannelError::key("gateway.url", format!("gateway: `url`: {e}")))?;
        // The URL must be one once the placeholders are filled in.
        http::check_url("url", &url.render(|v| Vars::sample().get(v)))
            .map_err(|e| e.within("gateway"))?;
        let body = self
            .body
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|e| ChannelError::key("gateway.body", format!("gateway: `body`: {e}")))?;
        let method = match self.method.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            other => {
                return Err(ChannelError::key(
                    "gateway.method",
                    format!("gateway: `method` {other:?}: expected GET, POST or PUT"),
                ));
            }
        };
        if method == reqwest::Method::GET && body.is_some() {
            return Err(ChannelError::key(
                "gateway",
                "gateway: a GET has no `body`; put the placeholders in `url`",
            ));
        }
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ChannelError::key(
                    "gateway.headers",
                    format!("gateway: `headers`: {name:?} is not a header name"),
                )
            })?;
            HeaderValue::from_str(value).map_err(|_| {
                ChannelError::key(
                    "gateway.headers",
                    format!("gateway: `headers`: value of {name} is not a header value"),
                )
            })?;
        }
        for (name, var) in &self.headers_env {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ChannelError::key(
                    "gateway.headers_env",
                    format!("gateway: `headers_env`: {name:?} is not a header name"),
                )
            })?;
            http::check_env_name("headers_env", var).map_err(|e| e.within("gateway"))?;
        }
        HeaderValue::from_str(&self.content_type).map_err(|_| {
            ChannelError::key(
                "gateway.content_type",
                "gateway: `content_type` is not a header value",
            )
        })?;
        match (&self.success_pointer, &self.success_value) {
            (Some(p), Some(_)) if !(p.is_empty() || p.starts_with('/')) => {
                return Err(ChannelError::key(
                    "gateway.success_pointer",
                    format!(
                        "gateway: `success_pointer` {p:?} is not a JSON pointer (like \"/code\")"
                    ),
                ));
            }
            (Some(_), None) => {
                return Err(ChannelError::key(
                    "gateway.success_pointer",
                    "gateway: `success_pointer` needs a `success_value`",
                ));
            }
            (None, Some(_)) => {
                return Err(ChannelError::key(
                    "gateway.success_value",
                    "gateway: `success_value` needs a `success_pointer`",
                ));
            }
            _ => {}
        }
        if !self.retry_values.is_empty() && self.success_pointer.is_none() {
            return Err(ChannelError::key(
                "gateway.retry_values",
                "gateway: `retry_values` needs a `success_pointer`",
            ));
        }
        Ok((url, body, method))
    }
}

/// A gateway's parsed request, built once at load time.
pub(super) struct Request<'a> {
    pub(super) url: &'a Template,
    pub(super) body: Option<&'a Template>,
    pub(super) method: &'a reqwest::Method,
    pub(super) headers: &'a HeaderMap,
    pub(super) per_recipient: bool,
}

/// Sends the text to `phones`: one request, or one per number.
pub(super) async fn send(
    client: &reqwest::Client,
    g: &GatewayConfig,
    r: &Request<'_>,
    phones: &[String],
    text: &str,
    notice: &Notice,
) -> Result<(), DeliveryError> {
    let batches: Vec<&[String]> = if r.per_recipient {
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
        let target = r.url.render(|v| vars.get(v));
        let mut request = client
            .request(r.method.clone(), &target)
            .headers(r.headers.clone());
        if let Some(b) = r.body {
            request = request.body(b.render(|v| vars.get(v)));
        }
        let answer = http::execute("sms", request).await?;
        outcome(g, &answer)?;
    }
    Ok(())
}

pub(crate) fn outcome(g: &GatewayConfig, answer: &Answer) -> Result<(), DeliveryError> {
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

/// A value a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    Phone,
    Phones,
    PhonesJson,
    Text,
    Rule,
    Severity,
    Kind,
    NoticeId,
}

impl crate::notify::template::Placeholder for Var {
    const FILTERS: bool = true;
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

/// A gateway's `url` or `body`, parsed at load time so a typo in a
/// placeholder is a load error.
pub(crate) type Template = crate::notify::template::Template<Var>;

pub(crate) struct Vars<'a> {
    pub(crate) phones: &'a [String],
    pub(crate) text: &'a str,
    pub(crate) notice: &'a Notice,
}

impl Vars<'_> {
    pub(crate) fn sample() -> Vars<'static> {
        static NOTICE: std::sync::LazyLock<Notice> = std::sync::LazyLock::new(|| Notice {
            id: "n".into(),
            kind: NoticeKind::Firing,
            rule: "r".into(),
            severity: crate::rule::Severity::Critical,
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

    pub(crate) fn get(&self, v: Var) -> String {
        match v {
            Var::Phone => self.phones.first().cloned().unwrap_or_default(),
            Var::Phones => self.phones.join(","),
            Var::PhonesJson => serde_json::to_string(self.phones).unwrap_or_default(),
            Var::Text => self.text.to_owned(),
            Var::Rule => self.notice.rule.clone(),
            Var::Severity => self.notice.severity.as_str().to_owned(),
            Var::Kind => self.notice.kind.word().to_lowercase(),
            Var::NoticeId => self.notice.id.clone(),
        }
    }
}
