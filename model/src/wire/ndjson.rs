//! NDJSON events for third parties: one JSON object per line.
//!
//! ```text
//! {"ts":"2026-11-22T13:00:01.234Z","layer":"url","service":"login","host":"web1","name":"GET /api/login","ok":false,"code":"500","latency_ms":123.4,"dims":{"channel":"ios"}}
//! ```
//!
//! | field        | type | required | meaning |
//! |--------------|------|----------|---------|
//! | `ts`         | RFC 3339 string (any offset) or integer Unix ms | yes | event time, stored as UTC ms (sub-millisecond digits are dropped) |
//! | `layer`      | `business`, `url`, `call`, `component` or `infra` | yes | the layer |
//! | `service`    | non-empty string, ≤ [`MAX_NAME_BYTES`] | yes | the service |
//! | `name`       | non-empty string, ≤ [`MAX_NAME_BYTES`] | yes | the series name |
//! | `host`       | non-empty string, ≤ [`MAX_NAME_BYTES`] | no | defaults to what the caller passes (the sender's address) |
//! | `ok`         | boolean | no, default `true` | success or failure |
//! | `code`       | string ≤ [`MAX_NAME_BYTES`], or integer | no | error code; kept only when `ok` is false |
//! | `latency_ms` | number ≥ 0 | no | latency in milliseconds |
//! | `value`      | number | no | gauge value |
//! | `dims`       | object of string to string, ≤ [`MAX_DIMS`] entries, keys and values ≤ [`MAX_DIM_BYTES`] | no | low-cardinality dimensions |
//! | `raw`        | string ≤ [`MAX_RAW_BYTES`] | no | the original line, for error samples |
//!
//! Optional fields may also be `null`, which means absent. Unknown fields
//! are rejected, naming the field, so that a typo (`latency` for
//! `latency_ms`) is an error instead of silently lost data. Every error names
//! the field and the column where parsing stopped, and what was expected.
//!
//! A body is split on `\n`; a `\r` before it is ignored, and blank lines are
//! skipped (they still count for line numbers).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::wire::MAX_DIMS;
use crate::{Event, Layer, Outcome};

/// The HTTP content type of an NDJSON body.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// The longest `service`, `host`, `name` or `code`, in bytes.
pub const MAX_NAME_BYTES: usize = 2048;

/// The longest dims key or value, in bytes; dims are short labels.
pub const MAX_DIM_BYTES: usize = 256;

/// The longest `raw` line, in bytes.
pub const MAX_RAW_BYTES: usize = 16 * 1024;

/// Why one line is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct NdjsonError {
    /// The 1-based byte column where parsing stopped: the last byte of the
    /// offending key or value (0: before the first byte).
    pub column: usize,
    /// What was wrong and what was expected, naming the field.
    pub message: String,
}

/// A [`NdjsonError`] together with the line of the body it happened on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, {error}")]
pub struct LineError {
    /// The 1-based line number in the body, counting blank lines.
    pub line: usize,
    /// What was wrong on that line.
    pub error: NdjsonError,
}

impl NdjsonError {
    fn from_json(err: &serde_json::Error, at: Where) -> NdjsonError {
        let full = err.to_string();
        // serde_json appends the position to its messages; the column is
        // reported separately, and the line is always the first.
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let mut message = match full.strip_suffix(&suffix) {
            Some(msg) if err.line() == 1 => msg.to_owned(),
            _ => full,
        };
        // Syntax errors ("EOF while parsing a string", "number out of
        // range") do not say which field they are in; add it.
        if !message.contains("field `") && !message.contains("`dims`") {
            match at {
                Where::Start => {}
                Where::Value(field) => {
                    message.push_str(&format!(" (in the value of field `{field}`)"))
                }
                Where::After(field) => message.push_str(&format!(" (after field `{field}`)")),
            }
        }
        NdjsonError {
            column: err.column(),
            message,
        }
    }
}

/// Parses one line (without its newline; a trailing `\r` is ignored) into an
/// event; `default_host` is used when the line has no `host`.
pub fn parse_line(line: &[u8], default_host: &str) -> Result<Event, NdjsonError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(NdjsonError {
            column: 0,
            message: "empty line: expected a JSON object with ts, layer, service and name"
                .to_owned(),
        });
    }
    let progress = Cell::new(Where::Start);
    let mut de = serde_json::Deserializer::from_slice(line);
    EventSeed {
        default_host,
        progress: &progress,
    }
    .deserialize(&mut de)
    .and_then(|event| de.end().map(|()| event))
    .map_err(|e| NdjsonError::from_json(&e, progress.get()))
}

/// Parses a body of NDJSON lines, yielding one result per non-blank line, in
/// order, so that the caller can count and report bad lines and keep the
/// good ones.
pub fn parse_body<'a>(
    body: &'a [u8],
    default_host: &'a str,
) -> impl Iterator<Item = Result<Event, LineError>> + 'a {
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter_map(move |(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                return None;
            }
            Some(parse_line(line, default_host).map_err(|error| LineError { line: i + 1, error }))
        })
}

/// Formats an event as one NDJSON line (without the newline) that
/// [`parse_line`] reads back as the same event.
///
/// `ts` is RFC 3339 in UTC with milliseconds (`2026-11-22T13:00:01.234Z`),
/// or integer milliseconds for times outside the years 0 to 9999. `host`
/// and `ok` are always written; `code` only for failures. A non-finite
/// latency or value is written as `null`, which reads back as absent.
pub fn to_line(event: &Event) -> String {
    let ts = match DateTime::<Utc>::from_timestamp_millis(event.ts_ms) {
        Some(t) if (0..=9999).contains(&t.year()) => {
            TsOut::Text(t.to_rfc3339_opts(SecondsFormat::Millis, true))
        }
        _ => TsOut::Millis(event.ts_ms),
    };
    let (ok, code) = match &event.outcome {
        Outcome::Ok => (true, None),
        Outcome::Error(code) => (false, code.as_deref()),
    };
    let line = LineOut {
        ts,
        layer: event.layer.as_str(),
        service: &event.service,
        host: &event.host,
        name: &event.name,
        ok,
        code,
        latency_ms: event.latency_ms,
        value: event.value,
        dims: &event.dims,
        raw: event.raw.as_deref(),
    };
    // Strings, numbers and maps of strings always serialize.
    serde_json::to_string(&line).expect("an event always serializes to JSON")
}

#[derive(Serialize)]
#[serde(untagged)]
enum TsOut {
    Text(String),
    Millis(i64),
}

#[derive(Serialize)]
struct LineOut<'a> {
    ts: TsOut,
    layer: &'static str,
    service: &'a str,
    host: &'a str,
    name: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    dims: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
}

// ---------------------------------------------------------------------------
// Deserialization. Hand-written visitors rather than a derived struct, so
// that every message names its field and checks happen where the value is,
// which puts the reported column on the offending value.

const FIELDS: &[&str] = &[
    "ts",
    "layer",
    "service",
    "host",
    "name",
    "ok",
    "code",
    "latency_ms",
    "value",
    "dims",
    "raw",
];

/// How far the parser got into an object, to place syntax errors.
#[derive(Clone, Copy)]
enum Where {
    Start,
    Value(&'static str),
    After(&'static str),
}

#[derive(Clone, Copy)]
enum Field {
    Ts,
    Layer,
    Service,
    Host,
    Name,
    Ok,
    Code,
    LatencyMs,
    Value,
    Dims,
    Raw,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "ts" => Field::Ts,
                    "layer" => Field::Layer,
                    "service" => Field::Service,
                    "host" => Field::Host,
                    "name" => Field::Name,
                    "ok" => Field::Ok,
                    "code" => Field::Code,
                    "latency_ms" => Field::LatencyMs,
                    "value" => Field::Value,
                    "dims" => Field::Dims,
                    "raw" => Field::Raw,
                    _ => return Err(E::unknown_field(&excerpt(v), FIELDS)),
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

/// At most 64 characters of `s`, for quoting input in messages.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

impl Field {
    fn name(self) -> &'static str {
        FIELDS[self as usize]
    }
}

struct EventSeed<'a> {
    default_host: &'a str,
    progress: &'a Cell<Where>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = Event;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
        d.deserialize_map(self)
    }
}

/// Fails with serde's duplicate-field error if `slot` is already filled.
fn vacant<T, E: de::Error>(slot: &Option<T>, field: &'static str) -> Result<(), E> {
    match slot {
        Some(_) => Err(E::duplicate_field(field)),
        None => Ok(()),
    }
}

fn missing<E: de::Error>(field: &'static str, what: &str) -> E {
    E::custom(format_args!("missing required field `{field}` ({what})"))
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with ts, layer, service and name")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let mut ts = None;
        let mut layer = None;
        let mut service = None;
        let mut name = None;
        // Optional fields: the outer Option says "seen", the inner one "not null".
        let mut host: Option<Option<String>> = None;
        let mut ok: Option<Option<bool>> = None;
        let mut code: Option<Option<String>> = None;
        let mut latency_ms: Option<Option<f64>> = None;
        let mut value: Option<Option<f64>> = None;
        let mut dims: Option<Option<BTreeMap<String, String>>> = None;
        let mut raw: Option<Option<String>> = None;

        while let Some(field) = map.next_key::<Field>()? {
            self.progress.set(Where::Value(field.name()));
            match field {
                Field::Ts => {
                    vacant(&ts, "ts")?;
                    ts = Some(map.next_value_seed(TsSeed)?);
                }
                Field::Layer => {
                    vacant(&layer, "layer")?;
                    layer = Some(map.next_value_seed(LayerSeed)?);
                }
                Field::Service => {
                    vacant(&service, "service")?;
                    service = Some(map.next_value_seed(TextSeed::name("service"))?);
                }
                Field::Name => {
                    vacant(&name, "name")?;
                    name = Some(map.next_value_seed(TextSeed::name("name"))?);
                }
                Field::Host => {
                    vacant(&host, "host")?;
                    host = Some(map.next_value_seed(Nullable(TextSeed::name("host")))?);
                }
                Field::Ok => {
                    vacant(&ok, "ok")?;
                    ok = Some(map.next_value_seed(Nullable(BoolSeed))?);
                }
                Field::Code => {
                    vacant(&code, "code")?;
                    code = Some(map.next_value_seed(Nullable(CodeSeed))?);
                }
                Field::LatencyMs => {
                    vacant(&latency_ms, "latency_ms")?;
                    latency_ms = Some(map.next_value_seed(Nullable(NumberSeed::LATENCY))?);
                }
                Field::Value => {
                    vacant(&value, "value")?;
                    value = Some(map.next_value_seed(Nullable(NumberSeed::VALUE))?);
                }
                Field::Dims => {
                    vacant(&dims, "dims")?;
                    dims = Some(map.next_value_seed(Nullable(DimsSeed))?);
                }
                Field::Raw => {
                    vacant(&raw, "raw")?;
                    raw = Some(map.next_value_seed(Nullable(TextSeed {
                        field: "raw",
                        max: MAX_RAW_BYTES,
                        allow_empty: true,
                    }))?);
                }
            }
            self.progress.set(Where::After(field.name()));
        }

        let ts = ts.ok_or_else(|| missing("ts", "an RFC 3339 time or Unix milliseconds"))?;
        let layer =
            layer.ok_or_else(|| missing("layer", "business, url, call, component or infra"))?;
        let service = service.ok_or_else(|| missing("service", "a non-empty string"))?;
        let name = name.ok_or_else(|| missing("name", "a non-empty string"))?;
        let outcome = if ok.flatten().unwrap_or(true) {
            Outcome::Ok
        } else {
            Outcome::Error(code.flatten())
        };
        Ok(Event {
            ts_ms: ts,
            layer,
            service,
            host: host
                .flatten()
                .unwrap_or_else(|| self.default_host.to_owned()),
            name,
            outcome,
            latency_ms: latency_ms.flatten(),
            value: value.flatten(),
            dims: dims.flatten().unwrap_or_default(),
            raw: raw.flatten(),
        })
    }
}

/// Wraps a seed so that JSON `null` reads as `None`.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// A string field with a length limit.
struct TextSeed {
    field: &'static str,
    max: usize,
    allow_empty: bool,
}

impl TextSeed {
    fn name(field: &'static str) -> TextSeed {
        TextSeed {
            field,
            max: MAX_NAME_BYTES,
            allow_empty: false,
        }
    }

    fn check<E: de::Error>(&self, v: &str) -> Result<(), E> {
        if v.is_empty() && !self.allow_empty {
            return Err(E::custom(format_args!(
                "field `{}` must not be empty",
                self.field
            )));
        }
        if v.len() > self.max {
            return Err(E::custom(format_args!(
                "field `{}` is {} bytes long; the limit is {} bytes",
                self.field,
                v.len(),
                self.max
            )));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for TextSeed {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_empty {
            write!(f, "a string (field `{}`)", self.field)
        } else {
            write!(f, "a non-empty string (field `{}`)", self.field)
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.check(v)?;
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.check(&v)?;
        Ok(v)
    }
}

struct TsSeed;

impl<'de> DeserializeSeed<'de> for TsSeed {
    type Value = i64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for TsSeed {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "an RFC 3339 time such as \"2026-11-22T13:00:01.234Z\" or integer Unix milliseconds (field `ts`)",
        )
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                E::custom(format_args!(
                    "field `ts`: {:?} is not an RFC 3339 time such as \"2026-11-22T13:00:01.234Z\" ({e})",
                    excerpt(v)
                ))
            })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| {
            E::custom(format_args!(
                "field `ts`: {v} is out of range for Unix milliseconds"
            ))
        })
    }
}

struct LayerSeed;

impl<'de> DeserializeSeed<'de> for LayerSeed {
    type Value = Layer;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Layer, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for LayerSeed {
    type Value = Layer;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "one of \"business\", \"url\", \"call\", \"component\", \"infra\" (field `layer`)",
        )
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Layer, E> {
        v.parse::<Layer>().map_err(|_| {
            E::custom(format_args!(
                "field `layer`: unknown layer {:?}, expected one of business, url, call, component, infra",
                excerpt(v)
            ))
        })
    }
}

struct BoolSeed;

impl<'de> DeserializeSeed<'de> for BoolSeed {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_bool(self)
    }
}

impl Visitor<'_> for BoolSeed {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false (field `ok`)")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
}

/// `code`: a string, or an integer such as an HTTP status.
struct CodeSeed;

impl<'de> DeserializeSeed<'de> for CodeSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for CodeSeed {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-empty string or an integer (field `code`)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        TextSeed::name("code").visit_str(v)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        TextSeed::name("code").visit_string(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A numeric field; latency must also be non-negative.
struct NumberSeed {
    field: &'static str,
    non_negative: bool,
}

impl NumberSeed {
    const LATENCY: NumberSeed = NumberSeed {
        field: "latency_ms",
        non_negative: true,
    };
    const VALUE: NumberSeed = NumberSeed {
        field: "value",
        non_negative: false,
    };
}

impl<'de> DeserializeSeed<'de> for NumberSeed {
    type Value = f64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_f64(self)
    }
}

impl Visitor<'_> for NumberSeed {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.non_negative {
            write!(f, "a number ≥ 0 (field `{}`)", self.field)
        } else {
            write!(f, "a number (field `{}`)", self.field)
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        if !v.is_finite() {
            return Err(E::custom(format_args!(
                "field `{}` must be a finite number",
                self.field
            )));
        }
        if self.non_negative && v < 0.0 {
            return Err(E::custom(format_args!(
                "field `{}` must not be negative, got {v}",
                self.field
            )));
        }
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }
}

/// `dims`: an object of string keys to string values.
struct DimsSeed;

impl<'de> DeserializeSeed<'de> for DimsSeed {
    type Value = BTreeMap<String, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DimsSeed {
    type Value = BTreeMap<String, String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string keys to string values (field `dims`)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut dims = BTreeMap::new();
        while let Some(key) = map.next_key_seed(TextSeed {
            field: "dims key",
            max: MAX_DIM_BYTES,
            allow_empty: false,
        })? {
            if dims.len() == MAX_DIMS {
                return Err(de::Error::custom(format_args!(
                    "field `dims` has more than {MAX_DIMS} entries"
                )));
            }
            if dims.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "field `dims` has the key {:?} twice",
                    excerpt(&key)
                )));
            }
            let value = map.next_value_seed(DimValueSeed { key: &key })?;
            dims.insert(key, value);
        }
        Ok(dims)
    }
}

struct DimValueSeed<'k> {
    key: &'k str,
}

impl<'de> DeserializeSeed<'de> for DimValueSeed<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for DimValueSeed<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string value for `dims` key {:?}", excerpt(self.key))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if v.len() > MAX_DIM_BYTES {
            return Err(E::custom(format_args!(
                "value of `dims` key {:?} is {} bytes long; the limit is {MAX_DIM_BYTES} bytes",
                excerpt(self.key),
                v.len()
            )));
        }
        Ok(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::strategies;

    const EXAMPLE: &str = r#"{"ts":"2026-11-22T13:00:01.234Z","layer":"url","service":"login","host":"web1","name":"GET /api/login","ok":false,"code":"500","latency_ms":123.4,"dims":{"channel":"ios"}}"#;

    fn err(line: &str) -> NdjsonError {
        parse_line(line.as_bytes(), "peer").expect_err("line should be rejected")
    }

    /// The 1-based column of the last byte of the first `needle` in `line`.
    fn col_end(line: &str, needle: &str) -> usize {
        line.find(needle).expect("needle in line") + needle.len()
    }

    /// A minimal valid line with `extra` spliced in before the closing brace.
    fn with(extra: &str) -> String {
        format!(r#"{{"ts":1,"layer":"url","service":"s","name":"n"{extra}}}"#)
    }

    #[test]
    fn parses_the_documented_example() {
        let e = parse_line(EXAMPLE.as_bytes(), "10.0.0.9").unwrap();
        let mut want = Event::new(
            1_795_352_401_234,
            Layer::Url,
            "login",
            "web1",
            "GET /api/login",
        );
        want.outcome = Outcome::Error(Some("500".into()));
        want.latency_ms = Some(123.4);
        want.dims.insert("channel".into(), "ios".into());
        assert_eq!(e, want);
        assert_eq!(to_line(&e), EXAMPLE);
    }

    #[test]
    fn applies_defaults() {
        let e = parse_line(with("").as_bytes(), "10.0.0.9").unwrap();
        assert_eq!(e, Event::new(1, Layer::Url, "s", "10.0.0.9", "n"));
        let nulls = with(
            r#","host":null,"ok":null,"code":null,"latency_ms":null,"value":null,"dims":null,"raw":null"#,
        );
        assert_eq!(parse_line(nulls.as_bytes(), "10.0.0.9").unwrap(), e);
    }

    #[test]
    fn accepts_offsets_integer_times_and_integer_codes() {
        let e = parse_line(br#"{"ts":"2026-11-22T21:00:01.2345+08:00","layer":"call","service":"s","name":"n","ok":false,"code":503}"#, "h").unwrap();
        assert_eq!(e.ts_ms, 1_795_352_401_234);
        assert_eq!(e.outcome, Outcome::Error(Some("503".into())));
        let e = parse_line(
            with(r#","ts":-5"#).replace(r#""ts":1,"#, "").as_bytes(),
            "h",
        )
        .unwrap();
        assert_eq!(e.ts_ms, -5);
        // A code on a success is accepted and dropped: only failures are classed.
        let e = parse_line(with(r#","ok":true,"code":"200""#).as_bytes(), "h").unwrap();
        assert_eq!(e.outcome, Outcome::Ok);
        // Integers where numbers are expected.
        let e = parse_line(with(r#","latency_ms":7,"value":-3"#).as_bytes(), "h").unwrap();
        assert_eq!((e.latency_ms, e.value), (Some(7.0), Some(-3.0)));
    }

    #[test]
    fn tolerates_crlf_and_blank_lines() {
        let body = format!("\n{EXAMPLE}\r\n  \r\n{}\n\n", with(""));
        let results: Vec<_> = parse_body(body.as_bytes(), "peer").collect();
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(parse_line(format!("{EXAMPLE}\r").as_bytes(), "peer").is_ok());
        assert_eq!(parse_body(b"", "peer").count(), 0);
    }

    #[test]
    fn body_errors_carry_line_numbers() {
        let body = format!("{EXAMPLE}\n\n{}\n{EXAMPLE}\n", with(r#","lat":1"#));
        let results: Vec<_> = parse_body(body.as_bytes(), "peer").collect();
        assert_eq!(results.len(), 3);
        let bad = results[1].clone().unwrap_err();
        assert_eq!(bad.line, 3);
        assert_eq!(bad.error.column, col_end(&with(r#","lat":1"#), r#""lat""#));
        assert!(bad.to_string().starts_with("line 3, column "), "{bad}");
        assert!(results[0].is_ok() && results[2].is_ok());
    }

    #[test]
    fn missing_field() {
        for field in ["ts", "layer", "service", "name"] {
            let line = with("")
                .replace(&format!(r#""{field}":"#), r#""raw":"#)
                .replace(r#""raw":1"#, r#""raw":"1""#);
            let e = err(&line);
            assert!(
                e.message
                    .contains(&format!("missing required field `{field}`")),
                "{e}"
            );
            assert_eq!(e.column, line.len(), "{e}");
        }
    }

    #[test]
    fn unknown_field() {
        let line = with(r#","latency":5"#);
        let e = err(&line);
        assert!(
            e.message
                .starts_with("unknown field `latency`, expected one of"),
            "{e}"
        );
        assert!(e.message.contains("`latency_ms`"), "{e}");
        assert_eq!(e.column, col_end(&line, r#""latency""#));
    }

    #[test]
    fn duplicate_field() {
        let line = with(r#","service":"t""#);
        let e = err(&line);
        assert_eq!(e.message, "duplicate field `service`");
        assert_eq!(
            e.column,
            line.rfind(r#""service""#).unwrap() + r#""service""#.len()
        );
    }

    #[test]
    fn bad_layer() {
        let line = with("").replace(r#""url""#, r#""URL""#);
        let e = err(&line);
        assert!(e.message.contains("field `layer`"), "{e}");
        assert!(
            e.message.contains(r#""URL""#) && e.message.contains("business, url"),
            "{e}"
        );
        assert_eq!(e.column, col_end(&line, r#""URL""#));

        let line = with("").replace(r#""url""#, "2");
        let e = err(&line);
        assert!(e.message.contains("field `layer`"), "{e}");
        assert_eq!(e.column, col_end(&line, ":2"));
    }

    #[test]
    fn bad_ts() {
        let line = with("").replace(r#""ts":1"#, r#""ts":"2026-13-22T13:00:01Z""#);
        let e = err(&line);
        assert!(
            e.message
                .starts_with("field `ts`: \"2026-13-22T13:00:01Z\" is not an RFC 3339 time"),
            "{e}"
        );
        assert_eq!(e.column, col_end(&line, r#"01Z""#));

        for bad in [
            r#""ts":1.5"#,
            r#""ts":true"#,
            r#""ts":18446744073709551615"#,
        ] {
            let line = with("").replace(r#""ts":1"#, bad);
            let e = err(&line);
            assert!(e.message.contains("`ts`"), "{e}");
            assert_eq!(e.column, col_end(&line, bad), "{e}");
        }
    }

    #[test]
    fn bad_dims() {
        let line = with(r#","dims":{"channel":"ios","model":5}"#);
        let e = err(&line);
        assert_eq!(
            e.message,
            r#"invalid type: integer `5`, expected a string value for `dims` key "model""#
        );
        assert_eq!(e.column, col_end(&line, ":5"));

        let line = with(r#","dims":["ios"]"#);
        let e = err(&line);
        assert!(e.message.contains("(field `dims`)"), "{e}");

        let many: Vec<String> = (0..=MAX_DIMS).map(|i| format!(r#""k{i}":"v""#)).collect();
        let line = with(&format!(r#","dims":{{{}}}"#, many.join(",")));
        let e = err(&line);
        assert_eq!(
            e.message,
            format!("field `dims` has more than {MAX_DIMS} entries")
        );
        assert_eq!(e.column, col_end(&line, &format!(r#""k{MAX_DIMS}""#)));

        let e = err(&with(r#","dims":{"a":"1","a":"2"}"#));
        assert!(e.message.contains(r#"key "a" twice"#), "{e}");
        let e = err(&with(r#","dims":{"":"1"}"#));
        assert!(e.message.contains("`dims key` must not be empty"), "{e}");
    }

    #[test]
    fn bad_strings_and_numbers() {
        let line = with("").replace(r#""service":"s""#, r#""service":"""#);
        let e = err(&line);
        assert_eq!(e.message, "field `service` must not be empty");
        assert_eq!(e.column, col_end(&line, r#""service":"""#));

        let line = with("").replace(r#""s""#, "5");
        assert_eq!(
            err(&line).message,
            "invalid type: integer `5`, expected a non-empty string (field `service`)"
        );

        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let e = err(&with("").replace(r#""name":"n""#, &format!(r#""name":"{long}""#)));
        assert!(
            e.message
                .contains("field `name` is 2049 bytes long; the limit is 2048"),
            "{e}"
        );

        let line = with(r#","latency_ms":-0.5"#);
        let e = err(&line);
        assert_eq!(
            e.message,
            "field `latency_ms` must not be negative, got -0.5"
        );
        assert_eq!(e.column, col_end(&line, "-0.5"));

        let line = with(r#","latency_ms":1e999"#);
        let e = err(&line);
        assert!(e.message.contains("`latency_ms`"), "{e}");

        let e = err(&with(r#","ok":"no""#));
        assert!(e.message.contains("true or false (field `ok`)"), "{e}");
        let e = err(&with(r#","code":"""#));
        assert!(e.message.contains("field `code` must not be empty"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_field_they_are_in() {
        let e = err(r#"{"ts":1,"layer":"url","service":"s"#);
        assert!(e.message.contains("in the value of field `service`"), "{e}");
        let e = err(r#"{"ts":1,"layer":"url" "service":"s"}"#);
        assert!(e.message.contains("after field `layer`"), "{e}");
        let e = err(&format!("{} trailing", with("")));
        assert!(e.message.contains("trailing characters"), "{e}");
        let e = err("[1]");
        assert!(e.message.contains("expected a JSON object"), "{e}");
        let e = err("   ");
        assert!(e.message.contains("empty line"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut line = with("").into_bytes();
        let at = line.iter().position(|&b| b == b's').unwrap();
        // The `s` of "service" → an invalid byte inside a key.
        line[at] = 0xff;
        assert!(parse_line(&line, "peer").is_err());
        let mut line = with("").into_bytes();
        let at = line.windows(3).position(|w| w == br#""n""#).unwrap();
        line[at + 1] = 0xc3;
        assert!(parse_line(&line, "peer").is_err());
    }

    #[test]
    fn field_names_match_their_table() {
        for name in FIELDS {
            let field: Field = serde_json::from_str(&format!("{name:?}")).unwrap();
            assert_eq!(field.name(), *name);
        }
    }

    #[test]
    fn times_outside_rfc3339_years_fall_back_to_integers() {
        for ts in [i64::MIN, i64::MAX, -62_167_219_200_001, 253_402_300_800_000] {
            let e = Event::new(ts, Layer::Infra, "s", "h", "n");
            let line = to_line(&e);
            assert!(line.starts_with(&format!(r#"{{"ts":{ts},"#)), "{line}");
            assert_eq!(parse_line(line.as_bytes(), "peer").unwrap(), e);
        }
        let e = Event::new(-62_167_219_200_000, Layer::Infra, "s", "h", "n");
        assert!(
            to_line(&e).starts_with(r#"{"ts":"0000-01-01T00:00:00.000Z""#),
            "{}",
            to_line(&e)
        );
    }

    /// Events that NDJSON can carry: bounded dims, non-negative latency.
    fn event() -> impl Strategy<Value = Event> {
        let latency = prop_oneof![
            Just(None),
            (0.0..1e9f64).prop_map(Some),
            any::<u32>().prop_map(|n| Some(f64::from(n))),
        ];
        (strategies::event(), latency).prop_map(|(mut e, latency)| {
            if e.latency_ms.is_some() {
                e.latency_ms = latency;
            }
            e
        })
    }

    proptest! {
        #[test]
        fn round_trips(event in event()) {
            let line = to_line(&event);
            prop_assert!(!line.contains('\n'));
            prop_assert_eq!(parse_line(line.as_bytes(), "default"), Ok(event));
        }

        #[test]
        fn body_round_trips(events in prop::collection::vec(event(), 0..8), crlf in any::<bool>()) {
            let sep = if crlf { "\r\n" } else { "\n" };
            let body: String = events.iter().map(|e| to_line(e) + sep).collect();
            let parsed: Result<Vec<Event>, LineError> = parse_body(body.as_bytes(), "default").collect();
            prop_assert_eq!(parsed, Ok(events));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_line(&bytes, "peer");
            let _ = parse_body(&bytes, "peer").count();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Valid lines with a few bytes changed: errors are reported, not
        /// panicked, and carry a column within the line.
        #[test]
        fn mutated_lines_never_panic(event in event(), edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4)) {
            let mut line = to_line(&event).into_bytes();
            for (i, b) in edits {
                let i = i.index(line.len());
                line[i] = b;
            }
            if let Err(e) = parse_line(&line, "peer") {
                prop_assert!(e.column <= line.len() + 1, "{}", e);
            }
        }
    }
}
