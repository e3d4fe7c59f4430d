//! Parsing: raw log lines → [`Event`]s of the five layers.
//!
//! A source's [`ParseSpec`] (part of its `[[source]]` table) names a
//! built-in format or a user regex, the service, and how fields map to an
//! event. [`Pipeline::new`] checks it once, before any file is opened, and
//! [`Pipeline::feed`] then turns each line into at most one event:
//!
//! 1. the format's parser reads the line into named fields
//!    ([`combined`], [`json`], [`syslog`], [`mysql_slow`], [`redis`],
//!    [`user_regex`]); the time always comes from the line;
//! 2. one mapping, the same for every format, picks layer, series name (a
//!    template such as `{method} {route}`, where `{route}` is the request
//!    path normalized by [`route`]), outcome, latency, value and dims;
//! 3. the per-family cap ([`cardinality`]) sends series past `max_series`
//!    to `(other)`.
//!
//! A line that does not parse is counted ([`ParseStats::failed`]), a few are
//! kept ([`Pipeline::take_failed_samples`]) to ship as parse-error samples
//! ([`Pipeline::parse_error_events`] turns each failure into an event),
//! and the next line is read as if nothing happened: bad input never stops
//! a source. Invalid UTF-8 is replaced, not rejected.
//!
//! # Defaults per format
//!
//! Every mapping option can be set for any format; these are the values
//! when it is not (an empty string switches a default field off).
//!
//! | format | layer | `series` | outcome | latency |
//! |---|---|---|---|---|
//! | `combined` | url | `{method} {route}` | error if `status` ≥ `error_status_from` (500), code = status | `request_time`, s |
//! | `json` | the line's `layer`, else business | `{name}` | `ok` (bool), else `level` ∈ errors; code = `code` | `latency_ms`, ms |
//! | `syslog` | infra | `{program\|syslog}` | error if `severity` is emerg, alert, crit or err | — |
//! | `mysql_slow` | component | `mysql slow query` | ok | `query_time`, s |
//! | `redis` | component | `redis` | error if `level` is warning (`#`) | — |
//! | `regex` | the `layer` capture, else `layer` (one is required) | `{name}` | `ok`, else `status` ≥ 500, else `level` ∈ errors | `latency_ms`, ms |
//!
//! JSON lines and regexes take the time from `ts_field` (default `ts`; for
//! JSON also `time`, `timestamp`, `@timestamp`): RFC 3339, the access-log
//! layout, or Unix seconds or milliseconds. `value` is read from
//! `value_field` (default `value`) for JSON and regexes. The `layer` option
//! sets the layer of lines that carry none; lines that do (a JSON `layer`
//! field, a regex `layer` capture) keep theirs. Times written without an
//! offset (RFC 3164 syslog, Redis, old MySQL, offset-less JSON) are in
//! `timezone` (default `local`).
//!
//! ```
//! use panorama_agent::parse::{ParseSpec, Pipeline};
//!
//! let spec: ParseSpec = toml::from_str(r#"
//!     format = "combined"
//!     service = "login"
//!     routes = [{ pattern = '^/static/.*', replace = "/static/*" }]
//! "#).unwrap();
//! let mut pipeline = Pipeline::new(spec, "web1").unwrap();
//! let mut events = Vec::new();
//! pipeline
//!     .feed(br#"10.0.0.7 - - [22/Nov/2026:13:00:01 +0000] "GET /user/42?x=1 HTTP/1.1" 502 0 "-" "curl/8.5" 0.120"#, &mut events)
//!     .unwrap();
//! assert_eq!(events[0].name, "GET /user/:num");
//! assert!(!events[0].outcome.is_ok());
//! assert_eq!(events[0].latency_ms, Some(120.0));
//! ```

pub mod cardinality;
pub mod combined;
pub mod json;
mod map;
pub mod mysql_slow;
pub mod redis;
pub mod route;
pub mod syslog;
mod timestamp;
pub mod user_regex;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use panorama_model::wire::MAX_DIMS;
use panorama_model::wire::ndjson::MAX_RAW_BYTES;
use panorama_model::{Event, Layer};
use serde::Deserialize;

pub use cardinality::OTHER_SERIES;
pub use mysql_slow::OpenRecord;

use map::{Mapper, Mapping, Template, truncate};
use timestamp::Tz;

/// The series cap per (layer, service) when `max_series` is not set.
pub const DEFAULT_MAX_SERIES: usize = 2000;

/// How many failed lines are kept between two [`Pipeline::take_failed_samples`].
pub const MAX_FAILED_SAMPLES: usize = 5;

/// The series a source's parse failures are counted in, one error event
/// each (see [`Pipeline::parse_error_events`]).
pub const PARSE_ERROR_SERIES: &str = "(parse error)";

/// Most bytes of a failed line an event of [`PARSE_ERROR_SERIES`] carries.
const MAX_PARSE_ERROR_RAW: usize = 4096;

/// Severities counted as errors by default (syslog, and `level` fields of
/// JSON lines and regexes).
const DEFAULT_ERROR_LEVELS: [&str; 9] = [
    "emerg", "alert", "crit", "critical", "err", "error", "fatal", "panic", "severe",
];

/// A built-in line format, or a user regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// nginx/Apache combined (or common) access log, with optional request
    /// and upstream times; see [`combined`].
    #[serde(alias = "nginx", alias = "apache")]
    Combined,
    /// One JSON object per line; see [`json`].
    Json,
    /// RFC 3164 or RFC 5424 syslog; see [`syslog`].
    Syslog,
    /// MySQL slow query log, multi-line records; see [`mysql_slow`].
    MysqlSlow,
    /// Redis server log; see [`redis`].
    Redis,
    /// A user regex with named captures (`pattern`); see [`user_regex`].
    Regex,
}

impl Format {
    /// Every format, in the order the docs list them.
    pub const ALL: [Format; 6] = [
        Format::Combined,
        Format::Json,
        Format::Syslog,
        Format::MysqlSlow,
        Format::Redis,
        Format::Regex,
    ];

    /// The name used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Combined => "combined",
            Format::Json => "json",
            Format::Syslog => "syslog",
            Format::MysqlSlow => "mysql_slow",
            Format::Redis => "redis",
            Format::Regex => "regex",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = SpecError;

    /// Reads a format name as `--tail FORMAT:SERVICE:GLOB` gives it.
    fn from_str(s: &str) -> Result<Format, SpecError> {
        match s {
            "nginx" | "apache" => Ok(Format::Combined),
            _ => Format::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
                SpecError::new(
                    "format",
                    format!("unknown format {s:?}: expected one of combined, json, syslog, mysql_slow, redis, regex"),
                )
            }),
        }
    }
}

/// The unit a latency field is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyUnit {
    /// Seconds (nginx `$request_time`, MySQL `Query_time`).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds (Apache `%D`).
    Us,
}

impl LatencyUnit {
    fn to_ms(self) -> f64 {
        match self {
            LatencyUnit::S => 1000.0,
            LatencyUnit::Ms => 1.0,
            LatencyUnit::Us => 0.001,
        }
    }
}

/// A user route pattern: matches of `pattern` in the path are replaced by
/// `replace` (which may use `$1` or `$name`) before the built-in rules run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// A regex over the path (query string already removed).
    pub pattern: String,
    /// The replacement.
    pub replace: String,
}

/// How one source's lines become events, as written in the config.
///
/// Only `format` and `service` are required; see the [module docs](self)
/// for each format's defaults. Field options name a field of the parsed
/// line; an empty string switches a default off.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseSpec {
    /// The line format.
    pub format: Format,
    /// The service every event of the source belongs to.
    pub service: String,
    /// For `format = "regex"`: the regex, with named captures as fields.
    pub pattern: Option<String>,
    /// The layer of lines that do not carry one.
    pub layer: Option<Layer>,
    /// The series-name template: text with `{field}` or `{field|default}`
    /// holes; `{route}` is the normalized `route` or `path` field, and
    /// `{host}` and `{service}` are the agent's host and the service.
    pub series: Option<String>,
    /// For JSON lines and regexes: the field holding the event time.
    pub ts_field: Option<String>,
    /// A field saying whether it went well (`true`/`false`, `ok`/`error`, `1`/`0`).
    pub ok_field: Option<String>,
    /// A numeric status field; errors from `error_status_from` up.
    pub status_field: Option<String>,
    /// The first status counted as an error (default 500; 400 counts client errors too).
    pub error_status_from: Option<u16>,
    /// A severity or level field, consulted when there is no ok or status field.
    pub level_field: Option<String>,
    /// Values of `level_field` that are errors (case-insensitive).
    pub error_levels: Option<Vec<String>>,
    /// The error code of failed events (default: the status, or the level).
    pub code_field: Option<String>,
    /// The latency field.
    pub latency_field: Option<String>,
    /// The unit of `latency_field`.
    pub latency_unit: Option<LatencyUnit>,
    /// A gauge value field.
    pub value_field: Option<String>,
    /// Fields kept as dims (at most 16). Every distinct combination is a
    /// series of its own, so keep them low-cardinality.
    #[serde(default)]
    pub dims: Vec<String>,
    /// User route patterns, applied in order before the built-in rules.
    #[serde(default)]
    pub routes: Vec<RouteRule>,
    /// Distinct series per (layer, service) before new ones go to `(other)`.
    pub max_series: Option<usize>,
    /// Zone of times written without an offset: `local`, `UTC` or `+08:00`.
    pub timezone: Option<String>,
}

impl ParseSpec {
    /// The minimal spec: a format and a service, every option at its default.
    pub fn new(format: Format, service: impl Into<String>) -> ParseSpec {
        ParseSpec {
            format,
            service: service.into(),
            pattern: None,
            layer: None,
            series: None,
            ts_field: None,
            ok_field: None,
            status_field: None,
            error_status_from: None,
            level_field: None,
            error_levels: None,
            code_field: None,
            latency_field: None,
            latency_unit: None,
            value_field: None,
            dims: Vec::new(),
            routes: Vec::new(),
            max_series: None,
            timezone: None,
        }
    }
}

/// A [`ParseSpec`] that cannot work, naming the option and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{option}`: {message}")]
pub struct SpecError {
    /// The offending option, as spelled in the config.
    pub option: &'static str,
    /// What is wrong and what was expected.
    pub message: String,
}

impl SpecError {
    pub(crate) fn new(option: &'static str, message: impl Into<String>) -> SpecError {
        SpecError {
            option,
            message: message.into(),
        }
    }
}

/// Why a line did not become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {at}: expected {expected}")]
pub struct ParseFailure {
    /// Byte offset in the line where reading stopped; 0 when the failure
    /// is about a field (`expected` names it) rather than a position.
    pub at: usize,
    /// What the parser expected there.
    pub expected: Cow<'static, str>,
}

impl ParseFailure {
    pub(crate) fn new(at: usize, expected: impl Into<Cow<'static, str>>) -> ParseFailure {
        ParseFailure {
            at,
            expected: expected.into(),
        }
    }
}

/// A line that failed, kept to be shipped as a parse-error sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedLine {
    /// The line, invalid UTF-8 replaced, cut to the wire's raw-line limit.
    /// For a multi-line record, its first line.
    pub line: String,
    /// Why it failed.
    pub failure: ParseFailure,
}

/// A pipeline's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Lines fed.
    pub lines: u64,
    /// Events produced.
    pub events: u64,
    /// Lines (or multi-line records) that failed.
    pub failed: u64,
    /// Blank lines, and the MySQL start-up banner: nothing to count.
    pub skipped: u64,
    /// Events whose series was past the cap and went to `(other)`.
    pub overflowed_series: u64,
}

enum Parser {
    Combined(combined::Combined),
    Json,
    Syslog(syslog::Syslog),
    // Boxed: it holds two records, the other parsers a few words.
    MysqlSlow(Box<mysql_slow::MysqlSlow>),
    Redis(redis::Redis),
    Regex(user_regex::UserRegex),
}

type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One source's parser, mapping and series cap: lines in, events out.
pub struct Pipeline {
    format: Format,
    parser: Parser,
    mapper: Mapper,
    clock: Clock,
    stats: ParseStats,
    samples: Vec<FailedLine>,
    /// Failures not yet turned into events by [`Pipeline::parse_error_events`].
    unreported: u64,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("format", &self.format)
            .field("service", &self.mapper.service)
            .field("host", &self.mapper.host)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// An option's value, the format's default when unset, nothing when set empty.
fn field(option: &Option<String>, default: Option<&str>) -> Option<String> {
    match option.as_deref() {
        Some("") => None,
        Some(s) => Some(s.to_owned()),
        None => default.map(str::to_owned),
    }
}

impl Pipeline {
    /// Checks `spec` and builds its pipeline; events carry `host`.
    ///
    /// # Errors
    ///
    /// A [`SpecError`] naming the option when a regex does not compile, a
    /// template is malformed, a regex lacks a field the mapping needs, an
    /// option does not apply to the format, or a limit is exceeded.
    pub fn new(spec: ParseSpec, host: &str) -> Result<Pipeline, SpecError> {
        let f = spec.format;
        if spec.service.trim().is_empty() {
            return Err(SpecError::new("service", "must not be empty"));
        }
        if spec.pattern.is_some() && f != Format::Regex {
            return Err(SpecError::new(
                "pattern",
                format!("only `format = \"regex\"` takes a pattern, not {f}"),
            ));
        }
        if spec.ts_field.is_some() && !matches!(f, Format::Json | Format::Regex) {
            return Err(SpecError::new(
                "ts_field",
                format!("{f} lines have their own time; only json and regex read it from a field"),
            ));
        }
        if spec.dims.len() > MAX_DIMS {
            return Err(SpecError::new(
                "dims",
                format!("{} fields, at most {MAX_DIMS}", spec.dims.len()),
            ));
        }
        let max_series = spec.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if max_series == 0 {
            return Err(SpecError::new("max_series", "must be at least 1"));
        }
        let tz = Tz::parse(spec.timezone.as_deref().unwrap_or("local"))
            .map_err(|m| SpecError::new("timezone", m))?;
        let routes = route::Normalizer::new(&spec.routes)?;

        let regex = match f {
            Format::Regex => {
                let p = spec.pattern.as_deref().ok_or_else(|| {
                    SpecError::new(
                        "pattern",
                        "`format = \"regex\"` needs a pattern with named captures",
                    )
                })?;
                Some(user_regex::UserRegex::new(p)?)
            }
            _ => None,
        };
        let mapping = mapping(&spec, regex.as_ref())?;
        let parser = match f {
            Format::Combined => Parser::Combined(combined::Combined::default()),
            Format::Json => Parser::Json,
            Format::Syslog => Parser::Syslog(syslog::Syslog { tz: tz.clone() }),
            Format::MysqlSlow => {
                Parser::MysqlSlow(Box::new(mysql_slow::MysqlSlow::new(tz.clone())))
            }
            Format::Redis => Parser::Redis(redis::Redis { tz: tz.clone() }),
            Format::Regex => Parser::Regex(regex.expect("built above for regex")),
        };
        Ok(Pipeline {
            format: f,
            parser,
            mapper: Mapper::new(
                mapping,
                routes,
                max_series,
                spec.service,
                host.to_owned(),
                tz,
            ),
            clock: Box::new(system_now_ms),
            stats: ParseStats::default(),
            samples: Vec::new(),
            unreported: 0,
        })
    }

    /// Replaces the wall clock (Unix ms) used to complete times written
    /// without a year; for tests and replays.
    pub fn set_clock(&mut self, now_ms: impl Fn() -> i64 + Send + Sync + 'static) {
        self.clock = Box::new(now_ms);
    }

    /// The format this pipeline reads.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Reads one line (its `\n` or `\r\n` may be included) and appends the
    /// event it completes, if any, to `out`. Multi-line formats (MySQL slow
    /// log) append the previous record's event when a new record starts.
    ///
    /// # Errors
    ///
    /// A [`ParseFailure`] when this line cannot be read. It has already
    /// been counted and maybe sampled; the caller may just go on.
    pub fn feed(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), ParseFailure> {
        self.stats.lines += 1;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // `from_utf8` first: its validation is much faster than the lossy
        // decoder's, and nearly every line is valid.
        let text = match std::str::from_utf8(line) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(line),
        };
        self.feed_text(&text, out)
    }

    /// [`Pipeline::feed`] for a line already known to be text, such as
    /// those of [`Chunk::text_lines`](crate::tail::Chunk::text_lines):
    /// validating a whole chunk once is cheaper than each line again.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::feed`].
    pub fn feed_str(&mut self, line: &str, out: &mut Vec<Event>) -> Result<(), ParseFailure> {
        self.stats.lines += 1;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        self.feed_text(line, out)
    }

    fn feed_text(&mut self, text: &str, out: &mut Vec<Event>) -> Result<(), ParseFailure> {
        let before = out.len();
        let result = if text.bytes().all(|c| c.is_ascii_whitespace()) {
            self.stats.skipped += 1;
            Ok(())
        } else {
            self.parse(text, out)
        };
        self.emit_done(out);
        self.stats.events += (out.len() - before) as u64;
        // A new `Ok` rather than `result` passed on: copying the 32-byte
        // result as a whole reads it back wider than it was written, which
        // stalls on store forwarding for every line.
        match result {
            Ok(()) => Ok(()),
            Err(f) => {
                self.fail(text, f.clone());
                Err(f)
            }
        }
    }

    /// Emits what a multi-line record still holds back: call at the end of
    /// input, or when a source has been quiet for a while.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        let before = out.len();
        if let Parser::MysqlSlow(p) = &mut self.parser {
            p.finish();
        }
        self.emit_done(out);
        self.stats.events += (out.len() - before) as u64;
    }

    /// Lines fed that belong to a record not yet emitted. A checkpoint
    /// should not move past them, or a restart would lose that record.
    pub fn pending_lines(&self) -> u64 {
        match &self.parser {
            Parser::MysqlSlow(p) => p.pending_lines(),
            _ => 0,
        }
    }

    /// Hands back events once they are shipped (leaving `events` empty):
    /// the next lines overwrite them instead of allocating their strings
    /// anew, which on the access-log hot path was a fifth of the time.
    /// Optional; a bounded number is kept, the rest dropped.
    pub fn recycle(&mut self, events: &mut Vec<Event>) {
        self.mapper.recycle(events);
    }

    /// Makes this pipeline count series against `other`'s cap, so that
    /// pipelines parsing chunks of one source side by side cap its
    /// families once between them. Only this pipeline's own counters
    /// ([`Pipeline::stats`]) stay its own.
    pub fn share_cap_of(&mut self, other: &Pipeline) {
        self.mapper.cap = other.mapper.cap.share();
    }

    /// The counters so far.
    pub fn stats(&self) -> ParseStats {
        ParseStats {
            overflowed_series: self.mapper.overflowed,
            ..self.stats
        }
    }

    /// The failed lines kept since the last call (at most
    /// [`MAX_FAILED_SAMPLES`]; later failures are only counted until then).
    /// Calling this once per shipped batch or minute bounds the samples
    /// per source and interval.
    pub fn take_failed_samples(&mut self) -> Vec<FailedLine> {
        std::mem::take(&mut self.samples)
    }

    /// Appends one error event of [`PARSE_ERROR_SERIES`] at `now_ms` for
    /// every failure since the last call, of a line or of a multi-line
    /// record: a line the service wrote is counted, charted and alertable
    /// even when it cannot be read. The failed lines kept meanwhile (see
    /// [`Pipeline::take_failed_samples`], which this empties) travel with
    /// the first events as their raw line.
    pub fn parse_error_events(&mut self, now_ms: i64, out: &mut Vec<Event>) {
        let mut samples = std::mem::take(&mut self.samples).into_iter();
        for _ in 0..std::mem::take(&mut self.unreported) {
            let mut e = Event::new(
                now_ms,
                self.mapper.mapping.layer,
                self.mapper.service.clone(),
                self.mapper.host.clone(),
                PARSE_ERROR_SERIES,
            );
            e.outcome = panorama_model::Outcome::Error(Some("parse".into()));
            e.raw = samples.next().map(|FailedLine { mut line, failure }| {
                truncate(&mut line, MAX_PARSE_ERROR_RAW);
                format!("{line}  [{failure}]")
            });
            out.push(e);
        }
    }

    /// For a multi-line format, the record still open after `lines` (the
    /// lines of one chunk, fed from a fresh record): nothing marks a
    /// record's end, so it may go on in the next chunk. `None` for line
    /// formats, and when no record is open.
    pub fn open_record<'a>(&self, lines: impl Iterator<Item = &'a [u8]>) -> Option<OpenRecord> {
        match &self.parser {
            Parser::MysqlSlow(_) => mysql_slow::open_record(lines),
            _ => None,
        }
    }

    fn parse(&mut self, text: &str, out: &mut Vec<Event>) -> Result<(), ParseFailure> {
        let mapper = &mut self.mapper;
        match &mut self.parser {
            Parser::Combined(p) => {
                let (rec, ts) = p.parse(text)?;
                mapper.map(&rec, Some(ts), text, out)
            }
            Parser::Json => {
                let rec = json::parse(text)?;
                mapper.map(&rec, None, text, out)
            }
            Parser::Syslog(p) => {
                let (rec, ts) = p.parse(text, (self.clock)())?;
                mapper.map(&rec, Some(ts), text, out)
            }
            Parser::Redis(p) => {
                let (rec, ts) = p.parse(text, (self.clock)())?;
                mapper.map(&rec, Some(ts), text, out)
            }
            Parser::Regex(p) => {
                let rec = p.parse(text)?;
                mapper.map(&rec, None, text, out)
            }
            Parser::MysqlSlow(p) => {
                if !p.push(text)? {
                    self.stats.skipped += 1;
                }
                Ok(())
            }
        }
    }

    /// Maps a multi-line record completed by the last line or flush.
    fn emit_done(&mut self, out: &mut Vec<Event>) {
        let Parser::MysqlSlow(p) = &mut self.parser else {
            return;
        };
        let Some(rec) = p.take_done() else { return };
        let result = match rec.ts_ms() {
            Some(ts) => self.mapper.map(&rec, Some(ts), &rec.head, out),
            None => Err(ParseFailure::new(
                0,
                "`# Time:` or `SET timestamp=` in the slow-log record",
            )),
        };
        if let Err(f) = result {
            self.fail(&rec.head, f);
        }
    }

    fn fail(&mut self, line: &str, failure: ParseFailure) {
        self.stats.failed += 1;
        self.unreported += 1;
        if self.samples.len() < MAX_FAILED_SAMPLES {
            let mut line = line.to_owned();
            truncate(&mut line, MAX_RAW_BYTES);
            self.samples.push(FailedLine { line, failure });
        }
    }
}

/// The checked mapping of `spec`: its options over the format's defaults.
fn mapping(spec: &ParseSpec, regex: Option<&user_regex::UserRegex>) -> Result<Mapping, SpecError> {
    use Format::*;
    let f = spec.format;
    let default_layer = match f {
        Combined => Layer::Url,
        Syslog => Layer::Infra,
        MysqlSlow | Redis => Layer::Component,
        Json | Regex => Layer::Business,
    };
    let series = spec.series.clone().unwrap_or_else(|| {
        match f {
            Combined => "{method} {route}",
            Syslog => "{program|syslog}",
            MysqlSlow => "mysql slow query",
            Redis => "redis",
            Json | Regex => "{name}",
        }
        .to_owned()
    });
    let series = Template::parse(&series).map_err(|m| SpecError::new("series", m))?;
    let generic = matches!(f, Json | Regex);
    let error_levels: Vec<String> = match (&spec.error_levels, f) {
        (Some(l), _) => l.iter().map(|s| s.to_ascii_lowercase()).collect(),
        (None, Redis) => vec!["warning".to_owned()],
        (None, _) => DEFAULT_ERROR_LEVELS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    };
    let default_unit = match f {
        Combined | MysqlSlow => LatencyUnit::S,
        _ => LatencyUnit::Ms,
    };
    let latency_default = match f {
        Combined => Some("request_time"),
        MysqlSlow => Some("query_time"),
        Json | Regex => Some("latency_ms"),
        Syslog | Redis => None,
    };
    let mut m = Mapping {
        layer_field: generic.then(|| "layer".to_owned()),
        layer: spec.layer.unwrap_or(default_layer),
        series,
        ts_fields: match (&spec.ts_field, f) {
            (Some(t), _) => vec![t.clone()],
            (None, Json) => ["ts", "time", "timestamp", "@timestamp"]
                .map(str::to_owned)
                .to_vec(),
            (None, _) => vec!["ts".to_owned()],
        },
        ok_field: field(&spec.ok_field, generic.then_some("ok")),
        status_field: field(
            &spec.status_field,
            matches!(f, Combined | Regex).then_some("status"),
        ),
        error_status_from: spec.error_status_from.unwrap_or(500),
        level_field: field(
            &spec.level_field,
            match f {
                Syslog => Some("severity"),
                Redis | Json | Regex => Some("level"),
                Combined | MysqlSlow => None,
            },
        ),
        error_levels,
        code_field: field(&spec.code_field, generic.then_some("code")),
        latency: field(&spec.latency_field, latency_default)
            .map(|l| (l, spec.latency_unit.unwrap_or(default_unit).to_ms())),
        value_field: field(&spec.value_field, generic.then_some("value")),
        dims: spec.dims.clone(),
    };
    if let Some(re) = regex {
        check_regex_fields(spec, &mut m, re)?;
    }
    Ok(m)
}

/// A regex's fields are known up front: options naming a missing capture
/// are errors, defaults naming one are dropped.
fn check_regex_fields(
    spec: &ParseSpec,
    m: &mut Mapping,
    re: &user_regex::UserRegex,
) -> Result<(), SpecError> {
    let missing = |option: &'static str, name: &str| {
        SpecError::new(
            option,
            format!(
                "the pattern has no capture named `{name}` (it has: {})",
                re.names()
            ),
        )
    };
    let check =
        |option: &'static str, set: bool, slot: &mut Option<String>| -> Result<(), SpecError> {
            let absent = slot.as_deref().filter(|name| !re.has(name));
            if let Some(name) = absent {
                if set {
                    return Err(missing(option, name));
                }
                *slot = None;
            }
            Ok(())
        };
    check("ok_field", spec.ok_field.is_some(), &mut m.ok_field)?;
    check(
        "status_field",
        spec.status_field.is_some(),
        &mut m.status_field,
    )?;
    check(
        "level_field",
        spec.level_field.is_some(),
        &mut m.level_field,
    )?;
    check("code_field", spec.code_field.is_some(), &mut m.code_field)?;
    check(
        "value_field",
        spec.value_field.is_some(),
        &mut m.value_field,
    )?;
    check("layer", false, &mut m.layer_field)?;
    let mut latency = m.latency.as_ref().map(|(l, _)| l.clone());
    check("latency_field", spec.latency_field.is_some(), &mut latency)?;
    if latency.is_none() {
        m.latency = None;
    }
    for d in &spec.dims {
        if !re.has(d) {
            return Err(missing("dims", d));
        }
    }
    let ts = &m.ts_fields[0];
    if !re.has(ts) {
        let option = if spec.ts_field.is_some() {
            "ts_field"
        } else {
            "pattern"
        };
        return Err(SpecError::new(
            option,
            format!(
                "the pattern has no capture named `{ts}` for the event time (it has: {})",
                re.names()
            ),
        ));
    }
    if m.layer_field.is_none() && spec.layer.is_none() {
        return Err(SpecError::new(
            "layer",
            "`format = \"regex\"` needs a `layer`, or a capture named `layer`",
        ));
    }
    for (name, has_default) in m.series.fields() {
        let known = has_default
            || re.has(name)
            || matches!(name, "host" | "service")
            || (name == "route" && re.has("path"));
        if !known {
            let option = if spec.series.is_some() {
                "series"
            } else {
                "pattern"
            };
            return Err(SpecError::new(
                option,
                format!(
                    "the series name uses `{{{name}}}` but the pattern has no such capture (it has: {}); set `series` to a template of captures",
                    re.names()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
