//! JSON lines: one object per line, fields picked by the mapping.
//!
//! Nested fields are reachable by a dotted path (`user.channel`) when no
//! top-level key has the dotted name itself.

use serde_json::{Map, Value as Json};

use super::ParseFailure;
use super::map::{Record, Value};

/// One JSON object.
#[derive(Debug)]
pub(crate) struct Line(Map<String, Json>);

/// Parses a line as a JSON object.
pub(crate) fn parse(line: &str) -> Result<Line, ParseFailure> {
    match serde_json::from_str::<Json>(line) {
        Ok(Json::Object(map)) => Ok(Line(map)),
        Ok(_) => Err(ParseFailure::new(0, "a JSON object")),
        Err(e) => {
            // serde_json counts columns from 1 on the line; we count bytes from 0.
            let at = e.column().saturating_sub(1);
            Err(ParseFailure::new(
                at,
                format!("a JSON object ({})", strip_position(&e)),
            ))
        }
    }
}

/// serde_json's message without its `at line L column C` suffix, which
/// `at` already says.
fn strip_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}

fn scalar(v: &Json) -> Option<Value<'_>> {
    match v {
        Json::String(s) => Some(Value::Str(s)),
        Json::Number(n) => n.as_f64().map(Value::Num),
        Json::Bool(b) => Some(Value::Bool(*b)),
        Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

impl Record for Line {
    fn get(&self, key: &str) -> Option<Value<'_>> {
        if let Some(v) = self.0.get(key) {
            return scalar(v);
        }
        if !key.contains('.') {
            return None;
        }
        let mut parts = key.split('.');
        let mut v = self.0.get(parts.next()?)?;
        for p in parts {
            v = v.as_object()?.get(p)?;
        }
        scalar(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_paths() {
        let l = parse(r#"{"ts":"2026-11-22T13:00:01Z","name":"login","ok":false,"code":1001,"user":{"channel":"ios"},"a.b":"flat","n":null}"#).unwrap();
        assert_eq!(l.get("name"), Some(Value::Str("login")));
        assert_eq!(l.get("ok"), Some(Value::Bool(false)));
        assert_eq!(l.get("code"), Some(Value::Num(1001.0)));
        assert_eq!(l.get("user.channel"), Some(Value::Str("ios")));
        assert_eq!(l.get("a.b"), Some(Value::Str("flat")));
        assert_eq!(l.get("n"), None);
        assert_eq!(l.get("user"), None);
        assert_eq!(l.get("user.channel.x"), None);
    }

    #[test]
    fn not_an_object() {
        assert_eq!(parse("[1,2]").unwrap_err().at, 0);
        let e = parse(r#"{"a": tru}"#).unwrap_err();
        assert!(e.at >= 6, "{e}");
        assert!(e.expected.contains("JSON object"), "{e}");
    }
}
