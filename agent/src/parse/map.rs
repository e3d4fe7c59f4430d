//! From parsed fields to an [`Event`]: one mapping for every format.
//!
//! Each parser exposes its line as a [`Record`], a lookup of named fields
//! that borrows from the line, so the mapping (series template, outcome
//! rule, latency, value, dims) is written once and the configuration means
//! the same thing whatever the format. Fields are looked up by name per
//! line; the parsers answer with a `match` on a handful of names, which is
//! cheaper than building a map of fields nobody asked for.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use panorama_model::wire::MAX_DIMS;
use panorama_model::wire::ndjson::{MAX_DIM_BYTES, MAX_NAME_BYTES, MAX_RAW_BYTES};
use panorama_model::{Event, Layer, Outcome};

use super::ParseFailure;
use super::cardinality::{Cap, OTHER_SERIES};
use super::route::Normalizer;
use super::timestamp::{Tz, parse_auto_num, parse_auto_str};

/// A field value as a parser found it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    /// Text, borrowed from the line.
    Str(&'a str),
    /// A number (JSON numbers; sums the parser computed).
    Num(f64),
    /// A JSON boolean.
    Bool(bool),
}

impl Value<'_> {
    fn write_to(self, out: &mut String) {
        match self {
            Value::Str(s) => out.push_str(s),
            Value::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => {
                let _ = write!(out, "{}", n as i64);
            }
            Value::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        }
    }

    fn to_text(self) -> Cow<'static, str> {
        let mut s = String::new();
        self.write_to(&mut s);
        Cow::Owned(s)
    }

    /// As a number: numbers, and strings that parse as one. `-` and empty
    /// (what access logs write for "no value") are `None`.
    fn as_f64(self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(n),
            Value::Str(s) => plain_decimal(s).or_else(|| s.trim().parse().ok()),
            Value::Bool(_) => None,
        }
        .filter(|n: &f64| n.is_finite())
    }
}

/// `ddd` or `ddd.ddd` with at most 15 digits, the way access logs write
/// times, read without the general float parser (a few percent of the
/// access-log hot path). Exact: both the digits as an integer and the
/// power of ten are exact doubles, and IEEE division rounds correctly, so
/// this is the value `str::parse` gives. `None` for anything else.
fn plain_decimal(s: &str) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut point = None;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => mantissa = mantissa * 10 + u64::from(c - b'0'),
            b'.' if point.is_none() && i > 0 && i + 1 < b.len() => point = Some(i),
            _ => return None,
        }
    }
    let decimals = point.map_or(0, |p| b.len() - p - 1);
    let digits = b.len() - usize::from(point.is_some());
    if digits > 15 {
        return None;
    }
    // Both exact: below 2^53, and a power of ten below 1e16.
    Some(mantissa as f64 / POW10[decimals])
}

/// A parsed line: named fields borrowed from it.
pub(crate) trait Record {
    /// The field called `key`, if the line has it.
    fn get(&self, key: &str) -> Option<Value<'_>>;
}

/// A series-name template such as `{method} {route}` or `{program|syslog}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Field {
        name: String,
        /// Used when the line lacks the field; without one, that line fails.
        default: Option<String>,
        /// `{route}`: the `route` or else `path` field, normalized.
        route: bool,
    },
}

impl Template {
    /// Reads a template: text with `{field}` or `{field|default}` holes.
    pub(crate) fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!(
                    "{s:?}: `{{` at byte {} is never closed",
                    s.len() - rest.len() + open
                ));
            };
            let inner = &rest[open + 1..open + close];
            let (name, default) = match inner.split_once('|') {
                Some((n, d)) => (n.trim(), Some(d.to_owned())),
                None => (inner.trim(), None),
            };
            if name.is_empty() || name.contains('{') {
                return Err(format!("{s:?}: expected a field name inside `{{}}`"));
            }
            parts.push(Part::Field {
                name: name.to_owned(),
                default,
                route: name == "route",
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{s:?}: `}}` without `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("the series name template is empty".to_owned());
        }
        Ok(Template { parts })
    }

    /// The fields the template reads, with whether each has a default.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&str, bool)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Lit(_) => None,
            Part::Field { name, default, .. } => Some((name.as_str(), default.is_some())),
        })
    }

    fn render<R: Record + ?Sized>(
        &self,
        rec: &R,
        ctx: &Context<'_>,
        out: &mut String,
    ) -> Result<(), ParseFailure> {
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Field {
                    name,
                    default,
                    route,
                } => {
                    let v = if *route {
                        rec.get("route").or_else(|| rec.get("path"))
                    } else {
                        rec.get(name).or_else(|| ctx.pseudo(name))
                    };
                    match (v, default) {
                        (Some(Value::Str(s)), _) if *route => ctx.routes.normalize_into(s, out),
                        (Some(v), _) => v.write_to(out),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => {
                            return Err(ParseFailure::new(
                                0,
                                format!("field `{name}` (used in the series name)"),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// What the template may use besides the line's own fields.
struct Context<'a> {
    routes: &'a Normalizer,
    service: &'a str,
    host: &'a str,
}

impl<'a> Context<'a> {
    fn pseudo(&self, name: &str) -> Option<Value<'a>> {
        match name {
            "host" => Some(Value::Str(self.host)),
            "service" => Some(Value::Str(self.service)),
            _ => None,
        }
    }
}

/// The checked mapping of one source: which fields mean what.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    /// Lines that carry a layer in this field use it.
    pub(crate) layer_field: Option<String>,
    /// The layer of lines that carry none.
    pub(crate) layer: Layer,
    pub(crate) series: Template,
    /// Where to find the time when the parser does not know it, in order.
    pub(crate) ts_fields: Vec<String>,
    pub(crate) ok_field: Option<String>,
    pub(crate) status_field: Option<String>,
    pub(crate) error_status_from: u16,
    pub(crate) level_field: Option<String>,
    /// Lowercase.
    pub(crate) error_levels: Vec<String>,
    pub(crate) code_field: Option<String>,
    /// Field and factor to milliseconds.
    pub(crate) latency: Option<(String, f64)>,
    pub(crate) value_field: Option<String>,
    pub(crate) dims: Vec<String>,
}

/// Applies a [`Mapping`] and the series cap; owns what every event of the
/// source shares.
#[derive(Debug)]
pub(crate) struct Mapper {
    pub(crate) mapping: Mapping,
    pub(crate) routes: Normalizer,
    pub(crate) cap: Cap,
    pub(crate) service: String,
    pub(crate) host: String,
    pub(crate) tz: Tz,
    /// Events whose series went to `(other)`.
    pub(crate) overflowed: u64,
    key_buf: String,
    name_buf: String,
    /// Shipped events handed back by [`Mapper::recycle`]: their strings are
    /// overwritten in place, so that a line costs no allocation for the
    /// service, host and name every event carries.
    spare: Vec<Event>,
}

/// Most events [`Mapper::recycle`] keeps: a few chunks' worth, a few MB.
const MAX_SPARE: usize = 8192;

/// Spare events whose name grew beyond this are dropped, not kept.
const MAX_SPARE_NAME: usize = 256;

/// `s` now holds `v`, reusing its buffer.
#[inline]
fn set(s: &mut String, v: &str) {
    if s != v {
        s.clear();
        s.push_str(v);
    }
}

impl Mapper {
    pub(crate) fn new(
        mapping: Mapping,
        routes: Normalizer,
        max_series: usize,
        service: String,
        host: String,
        tz: Tz,
    ) -> Mapper {
        Mapper {
            mapping,
            routes,
            cap: Cap::new(max_series),
            service,
            host,
            tz,
            overflowed: 0,
            key_buf: String::new(),
            name_buf: String::with_capacity(64),
            spare: Vec::new(),
        }
    }

    /// Takes back shipped events (emptying `events`) for reuse.
    ///
    /// Spare events already carry this source's service and host, set
    /// here while they are still in cache from being encoded, so that
    /// [`Mapper::map`] only writes what differs per line.
    pub(crate) fn recycle(&mut self, events: &mut Vec<Event>) {
        events.retain_mut(|e| {
            // Raw lines can be long and are rare: not worth keeping.
            if e.raw.is_some() {
                e.raw = None;
            }
            // Empty maps own nothing; replacing one still costs a drop.
            if !e.dims.is_empty() {
                e.dims.clear();
            }
            set(&mut e.service, &self.service);
            set(&mut e.host, &self.host);
            e.name.capacity() <= MAX_SPARE_NAME
        });
        events.truncate(MAX_SPARE.saturating_sub(self.spare.len()));
        // Events are a few hundred bytes each: move the smaller set, and
        // trade vectors so that the caller gets back an empty one with room.
        if self.spare.len() <= events.len() {
            events.append(&mut self.spare);
            std::mem::swap(&mut self.spare, events);
        } else {
            self.spare.append(events);
        }
    }

    /// Maps one record to an event appended to `out`; `ts_ms` is the time
    /// the parser read, if it reads one; `raw` travels with error events.
    pub(crate) fn map<R: Record + ?Sized>(
        &mut self,
        rec: &R,
        ts_ms: Option<i64>,
        raw: &str,
        out: &mut Vec<Event>,
    ) -> Result<(), ParseFailure> {
        let ts_ms = match ts_ms {
            Some(t) => t,
            None => self.find_ts(rec)?,
        };
        let m = &self.mapping;
        let layer = match m
            .layer_field
            .as_deref()
            .and_then(|f| rec.get(f).map(|v| (f, v)))
        {
            None => m.layer,
            Some((f, v)) => match v {
                Value::Str(s) => s.trim().to_ascii_lowercase().parse::<Layer>().ok(),
                _ => None,
            }
            .ok_or_else(|| {
                ParseFailure::new(
                    0,
                    format!("one of business, url, call, component, infra in field `{f}`"),
                )
            })?,
        };

        let name = &mut self.name_buf;
        name.clear();
        let ctx = Context {
            routes: &self.routes,
            service: &self.service,
            host: &self.host,
        };
        m.series.render(rec, &ctx, name)?;
        truncate(name, MAX_NAME_BYTES);
        if name.is_empty() {
            return Err(ParseFailure::new(0, "a non-empty series name"));
        }

        let outcome = outcome(m, rec)?;
        let latency_ms = m
            .latency
            .as_ref()
            .and_then(|(f, factor)| rec.get(f)?.as_f64().map(|v| v * factor))
            .filter(|v| *v >= 0.0);
        let value = m.value_field.as_deref().and_then(|f| rec.get(f)?.as_f64());
        let mut dims = BTreeMap::new();
        for d in m.dims.iter().take(MAX_DIMS) {
            if let Some(v) = rec.get(d) {
                let mut s = String::new();
                v.write_to(&mut s);
                truncate(&mut s, MAX_DIM_BYTES);
                dims.insert(d.clone(), s);
            }
        }

        let admitted = if dims.is_empty() {
            self.cap.admit(layer, &self.service, name)
        } else {
            // Dims are part of the series: every distinct combination counts
            // against the cap.
            self.key_buf.clear();
            self.key_buf.push_str(name);
            for (k, v) in &dims {
                let _ = write!(self.key_buf, "\u{1f}{k}={v}");
            }
            self.cap.admit(layer, &self.service, &self.key_buf)
        };
        if !admitted {
            self.overflowed += 1;
            name.clear();
            name.push_str(OTHER_SERIES);
            dims.clear();
        }

        let raw = (!outcome.is_ok()).then(|| {
            let mut r = raw.to_owned();
            truncate(&mut r, MAX_RAW_BYTES);
            r
        });
        match self.spare.pop() {
            Some(e) => {
                // Filled where it lands rather than moved again once filled.
                out.push(e);
                let e = out.last_mut().expect("just pushed");
                e.ts_ms = ts_ms;
                e.layer = layer;
                // The name changes hands instead of being copied: the
                // event's old buffer is the one the next line renders into.
                std::mem::swap(&mut e.name, name);
                e.outcome = outcome;
                e.latency_ms = latency_ms;
                e.value = value;
                if !dims.is_empty() {
                    e.dims = dims;
                }
                if raw.is_some() {
                    e.raw = raw;
                }
            }
            None => out.push(Event {
                ts_ms,
                layer,
                service: self.service.clone(),
                host: self.host.clone(),
                name: name.clone(),
                outcome,
                latency_ms,
                value,
                dims,
                raw,
            }),
        }
        Ok(())
    }

    fn find_ts<R: Record + ?Sized>(&mut self, rec: &R) -> Result<i64, ParseFailure> {
        for f in &self.mapping.ts_fields {
            let Some(v) = rec.get(f) else { continue };
            let ts = match v {
                Value::Num(n) => parse_auto_num(n),
                Value::Str(s) => parse_auto_str(s, &mut self.tz),
                Value::Bool(_) => None,
            };
            return ts.ok_or_else(|| {
                ParseFailure::new(
                    0,
                    format!("a time in field `{f}` (RFC 3339, dd/Mon/yyyy:HH:MM:SS ±hhmm, or Unix seconds or milliseconds)"),
                )
            });
        }
        Err(ParseFailure::new(
            0,
            format!(
                "a time in field `{}`",
                self.mapping.ts_fields.join("` or `")
            ),
        ))
    }
}

fn outcome<R: Record + ?Sized>(m: &Mapping, rec: &R) -> Result<Outcome, ParseFailure> {
    let code = || {
        m.code_field
            .as_deref()
            .and_then(|f| rec.get(f))
            .map(|v| v.to_text().into_owned())
    };
    if let Some((f, v)) = m
        .ok_field
        .as_deref()
        .and_then(|f| rec.get(f).map(|v| (f, v)))
    {
        let ok = match v {
            Value::Bool(b) => b,
            Value::Num(n) => n != 0.0,
            Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "ok" | "yes" | "y" | "1" | "success" | "succeeded" => true,
                "false" | "error" | "err" | "fail" | "failed" | "failure" | "no" | "n" | "0" => {
                    false
                }
                _ => {
                    return Err(ParseFailure::new(
                        0,
                        format!("true/false (or ok/error, 1/0) in field `{f}`"),
                    ));
                }
            },
        };
        return Ok(if ok {
            Outcome::Ok
        } else {
            Outcome::Error(code())
        });
    }
    if let Some((f, v)) = m
        .status_field
        .as_deref()
        .and_then(|f| rec.get(f).map(|v| (f, v)))
    {
        let status = match v {
            Value::Num(n) if (0.0..1000.0).contains(&n) => Some(n as u16),
            // Three digits, as access logs write it, without the general
            // integer parser.
            Value::Str(s) => match s.as_bytes() {
                &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_digit) => {
                    Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
                }
                _ => s.trim().parse::<u16>().ok(),
            },
            _ => None,
        };
        let Some(status) = status else {
            return Err(ParseFailure::new(
                0,
                format!("a numeric status in field `{f}`"),
            ));
        };
        return Ok(if status >= m.error_status_from {
            Outcome::Error(Some(code().unwrap_or_else(|| status.to_string())))
        } else {
            Outcome::Ok
        });
    }
    if let Some(v) = m.level_field.as_deref().and_then(|f| rec.get(f)) {
        let level = v.to_text();
        if m.error_levels
            .iter()
            .any(|l| l.eq_ignore_ascii_case(&level))
        {
            return Ok(Outcome::Error(Some(
                code().unwrap_or_else(|| level.to_ascii_lowercase()),
            )));
        }
    }
    Ok(Outcome::Ok)
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = Template::parse("{method} {route}").unwrap();
        assert_eq!(
            t.fields().collect::<Vec<_>>(),
            [("method", false), ("route", false)]
        );
        let t = Template::parse("mysql@{host} {statement|query}!").unwrap();
        assert_eq!(
            t.fields().collect::<Vec<_>>(),
            [("host", false), ("statement", true)]
        );
        assert!(Template::parse("{method").is_err());
        assert!(Template::parse("a}").is_err());
        assert!(Template::parse("{}").is_err());
        assert!(Template::parse("").is_err());
        assert_eq!(Template::parse("fixed").unwrap().fields().count(), 0);
    }

    #[test]
    fn numbers_print_plainly() {
        let mut s = String::new();
        Value::Num(1001.0).write_to(&mut s);
        Value::Num(1.5).write_to(&mut s);
        Value::Bool(false).write_to(&mut s);
        assert_eq!(s, "10011.5false");
        assert_eq!(Value::Str(" - ").as_f64(), None);
        assert_eq!(Value::Str("0.25").as_f64(), Some(0.25));
    }

    proptest::proptest! {
        #[test]
        fn plain_decimals_parse_like_std(s in "[0-9]{0,9}(\\.[0-9]{0,9})?|[0-9.-]{0,6}") {
            if let Some(v) = plain_decimal(&s) {
                proptest::prop_assert_eq!(Some(v.to_bits()), s.parse::<f64>().ok().map(f64::to_bits), "{}", s);
            }
        }
    }

    #[test]
    fn plain_decimal_edges() {
        assert_eq!(plain_decimal("0.070"), Some(0.07));
        assert_eq!(plain_decimal("1234"), Some(1234.0));
        assert_eq!(
            plain_decimal("999999999999999"),
            Some(999_999_999_999_999.0)
        );
        for s in [
            "",
            ".",
            "1.",
            ".5",
            "1.2.3",
            "-1",
            " 1",
            "1e3",
            "9999999999999999",
        ] {
            assert_eq!(plain_decimal(s), None, "{s}");
        }
    }

    #[test]
    fn truncates_on_char_boundary() {
        let mut s = "ab渠道".to_owned();
        truncate(&mut s, 4);
        assert_eq!(s, "ab");
    }
}
