//! Call receipts, as each provider posts them to
//! `/api/v1/voice/callback/{receiver}`, read into one shape.
//!
//! - Tencent VMS: `{"voiceprompt_callback": {"result": "0"|"1"|"2", "mobile",
//!   "nationcode", "callid", …}}` (0 answered, 1 not answered, 2 failed),
//!   `{"voicekey_callback": {"keypress", "mobile", "nationcode", …}}`,
//!   `{"voice_failure_callback": {…}}`. Tencent's receipts do not carry the
//!   `SessionContext`, so they are matched by number.
//! - Aliyun voice (`VoiceReport`): a JSON array of `{"out_id", "callee",
//!   "status_code", "duration", "dtmf", …}`; `dtmf` holds the keys pressed.
//! - The gateway: `{"call_id", "number", "status": "answered" |
//!   "no_answer" | "failed", "key"}` (or an array of them), `call_id` being
//!   the `{{notice_id}}` the call was placed with.

use serde_json::Value;

/// What a receipt says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The callee answered (and pressed nothing, or nothing yet).
    Answered,
    /// Not answered, refused, switched off, failed.
    NotAnswered,
    /// The callee pressed these keys.
    Key(String),
}

/// One receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Our call id, when the provider hands it back.
    pub call_id: Option<String>,
    /// The number called, as the provider writes it.
    pub number: String,
    /// What happened.
    pub event: Event,
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn tencent_number(v: &Value) -> String {
    let cc = text(v, "nationcode");
    let mobile = text(v, "mobile");
    if cc.is_empty() {
        mobile
    } else {
        format!("+{cc}{mobile}")
    }
}

/// Why a callback body is not a receipt. The message goes back to the
/// provider in the 400 answer's `errmsg`.
#[derive(Debug, thiserror::Error)]
pub enum BadReceipt {
    /// The body does not parse as JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but of no shape this module reads.
    #[error("not a call receipt of Tencent, Aliyun or the gateway shape")]
    UnknownShape,
}

/// Reads a callback body.
///
/// # Errors
/// [`BadReceipt`]: not JSON, or no receipt shape this channel knows.
pub fn parse(body: &[u8]) -> Result<Vec<Receipt>, BadReceipt> {
    let json: Value = serde_json::from_slice(body).map_err(BadReceipt::NotJson)?;
    let items: Vec<Value> = match json {
        Value::Array(a) => a,
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in &items {
        if let Some(p) = item.get("voiceprompt_callback") {
            let event = if text(p, "result") == "0" {
                Event::Answered
            } else {
                Event::NotAnswered
            };
            out.push(Receipt {
                call_id: None,
                number: tencent_number(p),
                event,
            });
        } else if let Some(k) = item.get("voicekey_callback") {
            out.push(Receipt {
                call_id: None,
                number: tencent_number(k),
                event: Event::Key(text(k, "keypress")),
            });
        } else if let Some(f) = item.get("voice_failure_callback") {
            out.push(Receipt {
                call_id: None,
                number: tencent_number(f),
                event: Event::NotAnswered,
            });
        } else if item.get("callee").is_some() || item.get("out_id").is_some() {
            let dtmf = text(item, "dtmf");
            let answered = text(item, "status_code") == "200000"
                || text(item, "duration").parse::<f64>().is_ok_and(|d| d > 0.0);
            let event = if !dtmf.is_empty() {
                Event::Key(dtmf)
            } else if answered {
                Event::Answered
            } else {
                Event::NotAnswered
            };
            out.push(Receipt {
                call_id: Some(text(item, "out_id")).filter(|s| !s.is_empty()),
                number: text(item, "callee"),
                event,
            });
        } else if item.get("status").is_some() && item.get("number").is_some() {
            let key = text(item, "key");
            let event = if !key.is_empty() {
                Event::Key(key)
            } else if text(item, "status") == "answered" {
                Event::Answered
            } else {
                Event::NotAnswered
            };
            out.push(Receipt {
                call_id: Some(text(item, "call_id")).filter(|s| !s.is_empty()),
                number: text(item, "number"),
                event,
            });
        } else {
            return Err(BadReceipt::UnknownShape);
        }
    }
    Ok(out)
}

/// True when two ways of writing a number name the same phone: the last
/// eleven digits agree (`+8613800000001`, `8613800000001`, `13800000001`).
pub fn same_number(a: &str, b: &str) -> bool {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let (a, b) = (digits(a), digits(b));
    let tail = |s: &str| s[s.len().saturating_sub(11)..].to_owned();
    !a.is_empty() && tail(&a) == tail(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_reads() {
        let r = parse(br#"{"voicekey_callback":{"call_from":"","callid":"x","keypress":"1","mobile":"13800000001","nationcode":"86"}}"#).unwrap();
        assert_eq!(r[0].event, Event::Key("1".into()));
        assert_eq!(r[0].number, "+8613800000001");
        let r = parse(br#"{"voiceprompt_callback":{"result":"1","callid":"x","mobile":"13800000001","nationcode":"86"}}"#).unwrap();
        assert_eq!(r[0].event, Event::NotAnswered);
        let r = parse(br#"[{"call_id":"1","out_id":"n/call1","callee":"13800000001","status_code":"200005","duration":"0","dtmf":""}]"#).unwrap();
        assert_eq!(
            (r[0].call_id.as_deref(), &r[0].event),
            (Some("n/call1"), &Event::NotAnswered)
        );
        let r =
            parse(br#"{"call_id":"c","number":"+8613800000001","status":"answered","key":"1"}"#)
                .unwrap();
        assert_eq!(r[0].event, Event::Key("1".into()));
        assert!(parse(br#"{"hello":1}"#).is_err());
        assert!(same_number("+8613800000001", "13800000001"));
        assert!(!same_number("+8613800000001", "13800000002"));
    }
}
