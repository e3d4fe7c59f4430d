//! What the HTTP channels (SMS, DingTalk, WeCom, webhook) share: one way
//! to read secrets, check URLs, sort failures for the outbox, and render a
//! notice as chat markdown.
//!
//! The sorting lives here so that every channel answers the outbox's one
//! question — "will a retry help?" — the same way: the network, a timeout,
//! 5xx, 408 and 429 say yes; any other 4xx says no, because the request
//! itself (token, signature, payload) is what the provider refused.

use std::time::Duration;

use ring::hmac;

use super::{ChannelError, DeliveryError, Notice};

/// Per-request timeout when a channel names none: providers answer in well
/// under a second; ten seconds rides out a slow one without holding the
/// outbox's delivery task for long.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// Response bodies quoted in errors are cut to this, so a provider's HTML
/// error page does not flood the history.
const QUOTE_MAX: usize = 300;

/// The secret held by the environment variable `var`, read once at build
/// time so a missing one is a load error.
pub(crate) fn secret(channel: &str, key: &str, var: &str) -> Result<String, ChannelError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(ChannelError::key(
            key,
            format!("{channel}: environment variable {var} ({key}) is empty"),
        )),
        Err(_) => Err(ChannelError::key(
            key,
            format!("{channel}: environment variable {var} ({key}) is not set or not UTF-8"),
        )),
    }
}

/// Checks that an `*_env` key names something that can be an environment
/// variable.
pub(crate) fn check_env_name(key: &str, var: &str) -> Result<(), ChannelError> {
    if var.is_empty() || var.contains(['=', '\0']) {
        return Err(ChannelError::key(
            key,
            format!("`{key}` {var:?} is not an environment variable name"),
        ));
    }
    Ok(())
}

/// Parses an absolute http(s) URL.
pub(crate) fn check_url(key: &str, url: &str) -> Result<reqwest::Url, ChannelError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ChannelError::key(key, format!("`{key}` {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ChannelError::key(
            key,
            format!("`{key}` {url:?}: expected an http:// or https:// URL"),
        ));
    }
    Ok(parsed)
}

/// Checks a `timeout_secs` value and returns the timeout used.
pub(crate) fn timeout(secs: Option<u64>) -> Result<Duration, ChannelError> {
    match secs {
        Some(0) => Err(ChannelError::key(
            "timeout_secs",
            "`timeout_secs` must be at least 1",
        )),
        s => Ok(Duration::from_secs(s.unwrap_or(DEFAULT_TIMEOUT_SECS))),
    }
}

/// A client with the channel's timeout. No redirects: a provider that
/// redirects a signed request is misconfigured, and following it would
/// send the signature (or the token in the query) somewhere else.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, ChannelError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("panorama/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ChannelError::table(format!("http client: {e}")))
}

/// A request that got no answer: always worth retrying, except when the
/// request could not even be built.
pub(crate) fn send_error(channel: &str, e: &reqwest::Error) -> DeliveryError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let msg = format!("{channel}: {what}: {}", error_chain(e));
    if e.is_builder() {
        DeliveryError::Permanent(msg)
    } else {
        DeliveryError::Transient(msg)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The answer of a provider: status and body.
pub(crate) struct Answer {
    pub(crate) status: reqwest::StatusCode,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// The body as JSON, if it is.
    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The start of the body, for error messages.
    pub(crate) fn quote(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(QUOTE_MAX) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.to_owned(),
        }
    }

    /// Sorts a non-2xx status: 5xx, 408 and 429 are transient, any other
    /// status is permanent. `None` for 2xx.
    pub(crate) fn status_error(&self, channel: &str) -> Option<DeliveryError> {
        let s = self.status;
        if s.is_success() {
            return None;
        }
        let msg = format!("{channel}: HTTP {}: {}", s.as_u16(), self.quote());
        Some(
            if s.is_server_error()
                || s == reqwest::StatusCode::TOO_MANY_REQUESTS
                || s == reqwest::StatusCode::REQUEST_TIMEOUT
            {
                DeliveryError::Transient(msg)
            } else {
                DeliveryError::Permanent(msg)
            },
        )
    }
}

/// Sends and reads the whole answer (bounded by the client's timeout).
pub(crate) async fn execute(
    channel: &str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, DeliveryError> {
    let response = request.send().await.map_err(|e| send_error(channel, &e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| send_error(channel, &e))?
        .to_vec();
    Ok(Answer { status, body })
}

/// Sorts a chat robot's `errcode` (DingTalk and WeCom both answer HTTP 200
/// with an error code in the body).
pub(crate) fn robot_errcode(
    channel: &str,
    answer: &Answer,
    transient_codes: &[i64],
) -> Result<(), DeliveryError> {
    if let Some(e) = answer.status_error(channel) {
        return Err(e);
    }
    let Some(json) = answer.json() else {
        // A 200 that is not the robot's JSON is a proxy or captive portal
        // in the way; that may well go away.
        return Err(DeliveryError::Transient(format!(
            "{channel}: answer is not JSON: {}",
            answer.quote()
        )));
    };
    let code = json.get("errcode").and_then(serde_json::Value::as_i64);
    let msg = json
        .get("errmsg")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    match code {
        Some(0) => Ok(()),
        Some(code) if transient_codes.contains(&code) => Err(DeliveryError::Transient(format!(
            "{channel}: errcode {code}: {msg}"
        ))),
        Some(code) => Err(DeliveryError::Permanent(format!(
            "{channel}: errcode {code}: {msg}"
        ))),
        None => Err(DeliveryError::Transient(format!(
            "{channel}: answer has no errcode: {}",
            answer.quote()
        ))),
    }
}

/// `s` with everything but printable ASCII replaced, so an id can go in
/// a header whatever it holds.
pub(crate) fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// HMAC-SHA1 (Aliyun's RPC signature still requires it).
pub(crate) fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    hmac::sign(&key, msg).as_ref().to_vec()
}

/// HMAC-SHA256.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, msg).as_ref().to_vec()
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// RFC 3986 percent-encoding (Aliyun's `percentEncode`), the one encoder
/// the dashboard's links use too.
pub(crate) use panorama_model::url::percent_encode;

/// The notice as chat markdown (DingTalk and WeCom render the same
/// subset): a heading, then one line per alert with its value and a link,
/// at most [`MARKDOWN_ALERTS`] of them so a storm stays readable on a phone.
pub(crate) fn markdown(notice: &Notice) -> String {
    let mut s = format!(
        "### {} {}: {}\n\n",
        notice.kind.word(),
        notice.severity,
        notice.rule
    );
    if !notice.condition.is_empty() {
        s.push_str(&format!("`{}`\n\n", notice.condition.replace('`', "'")));
    }
    for a in notice.alerts.iter().take(MARKDOWN_ALERTS) {
        let what = [&a.service, &a.series, &a.host]
            .iter()
            .filter(|x| !x.is_empty())
            .map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let threshold = if a.threshold.is_empty() {
            String::new()
        } else {
            format!(" (threshold {})", a.threshold)
        };
        s.push_str(&format!(
            "- **{}** {} {}: **{}**{threshold}",
            a.status.word(),
            a.layer_name(),
            what,
            a.value
        ));
        if let Some(by) = &a.acked_by {
            s.push_str(&format!(", acked by {by}"));
        }
        if !a.link.is_empty() {
            s.push_str(&format!(" [dashboard]({})", a.link));
        }
        s.push('\n');
        if !a.summary.is_empty() {
            s.push_str(&format!("  {}\n", a.summary));
        }
    }
    if notice.alerts.len() > MARKDOWN_ALERTS {
        s.push_str(&format!(
            "- … and {} more\n",
            notice.alerts.len() - MARKDOWN_ALERTS
        ));
    }
    s
}

/// How many alerts a chat message lists.
pub(crate) const MARKDOWN_ALERTS: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(percent_encode("a b*c~d"), "a%20b%2Ac~d");
        assert_eq!(
            percent_encode("2016-02-23T12:46:24Z"),
            "2016-02-23T12%3A46%3A24Z"
        );
        assert_eq!(percent_encode("告警"), "%E5%91%8A%E8%AD%A6");
        assert_eq!(percent_encode("+/="), "%2B%2F%3D");
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
