//! Reading a rules directory into a [`RuleSet`], with every error placed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use panorama_model::{FilePosition, HOUR_MS, Layer, MINUTE_MS};
use serde::Deserialize;
use toml::Spanned;

use super::expr::{self, Expr};
use super::{
    Align, DEFAULT_GROUP_INTERVAL_MS, DEFAULT_GROUP_WAIT_MS, DEFAULT_REPEAT_INTERVAL_MS, Depends,
    Escalation, GroupBy, Pattern, Receiver, ReceiverKind, Route, Rule, RuleSet, Severity,
};
use crate::lifecycle::Timing;
use crate::notify::template::{AlertField, Placeholder as _, Template};
use crate::notify::{ChannelConfig, ChannelError};
use crate::rota::{Person, RotaConfig};

/// One problem in a rules directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// Where.
    pub at: FilePosition,
    /// What, and what was expected.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    receiver: Vec<Spanned<RawReceiver>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    person: Vec<Spanned<Person>>,
    #[serde(default)]
    depends: Vec<Spanned<RawDepends>>,
}

/// `[[depends]] service = "game", on = ["payment-gateway", "mysql@db1"]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDepends {
    service: S,
    on: Vec<S>,
}

type S = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: S,
    layer: S,
    service: Option<S>,
    series: Option<S>,
    host: Option<S>,
    #[serde(default)]
    dims: BTreeMap<String, S>,
    group_by: Option<S>,
    window: Option<S>,
    align: Option<S>,
    every: Option<S>,
    min_interval: Option<S>,
    #[serde(rename = "for")]
    for_: Option<S>,
    keep_firing_for: Option<S>,
    when: S,
    recover: Option<S>,
    recover_for: Option<S>,
    min_count: Option<u64>,
    absent_lookback: Option<S>,
    flap_window: Option<S>,
    flap_max: Option<Spanned<u32>>,
    flap_hold: Option<S>,
    no_data_for: Option<S>,
    severity: Option<S>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    summary: Option<S>,
    description: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: S,
    mail: Option<Spanned<toml::Table>>,
    sms: Option<Spanned<toml::Table>>,
    dingtalk: Option<Spanned<toml::Table>>,
    wecom: Option<Spanned<toml::Table>>,
    feishu: Option<Spanned<toml::Table>>,
    voice: Option<Spanned<toml::Table>>,
    webhook: Option<Spanned<toml::Table>>,
    mailbox: Option<Spanned<toml::Table>>,
    rota: Option<Spanned<toml::Table>>,
    budget_per_hour: Option<Spanned<u32>>,
}

impl RawReceiver {
    /// The channel tables given, by kind.
    fn channels(&mut self) -> Vec<(&'static str, Spanned<toml::Table>)> {
        [
            ("mail", self.mail.take()),
            ("sms", self.sms.take()),
            ("dingtalk", self.dingtalk.take()),
            ("wecom", self.wecom.take()),
            ("feishu", self.feishu.take()),
            ("voice", self.voice.take()),
            ("webhook", self.webhook.take()),
            ("mailbox", self.mailbox.take()),
            ("rota", self.rota.take()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default, rename = "match")]
    matchers: BTreeMap<String, S>,
    receivers: Vec<S>,
    group_wait: Option<S>,
    group_interval: Option<S>,
    repeat_interval: Option<S>,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
    #[serde(default)]
    escalate: Vec<Spanned<RawEscalation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    after: S,
    receivers: Vec<S>,
    repeat_call: Option<Spanned<u32>>,
}

/// A rule's `window` when none is given.
pub const DEFAULT_WINDOW_MS: i64 = 300_000;
/// A rule's `every` when none is given: the longest time between two
/// evaluations, which is how late absence and no-data can be noticed.
pub const DEFAULT_EVERY_MS: i64 = 10_000;
/// A rule's `min_interval` when none is given: events for its series
/// trigger an evaluation at most once a second.
pub const DEFAULT_MIN_INTERVAL_MS: i64 = 1_000;

/// Where the key `path` (`url`, `aliyun.endpoint`, `override.until`) is
/// written in the receiver's channel table that starts at `table`: a
/// channel checks its values after deserializing, when toml's positions are
/// gone, so its error names the key and this finds it again. Each dotted
/// step but the last is a sub-table header (`[receiver.sms.aliyun]`,
/// `[[receiver.rota.override]]`); the last is a key (`endpoint = …`) or a
/// header. The search stops at the next `[[receiver]]`, and falls back to
/// the nearest place found, so an error is never placed in another
/// receiver.
fn key_offset(text: &str, table: usize, path: &str) -> usize {
    let given = table;
    // toml's span of `[receiver.sms.gateway]` starts inside the brackets.
    let table = text
        .get(..table)
        .map_or(table, |t| t.rfind('\n').map_or(0, |i| i + 1));
    let Some(rest) = text.get(table..) else {
        return table;
    };
    let end = rest
        .match_indices("\n")
        .map(|(i, _)| i + 1)
        .find(|&i| rest[i..].trim_start().starts_with("[[receiver]]"))
        .unwrap_or(rest.len());
    let region = &rest[..end];
    let lines = || {
        region.split_inclusive('\n').scan(0, |at, line| {
            let start = *at;
            *at += line.len();
            Some((start, line))
        })
    };
    let header_names = |line: &str, step: &str| {
        let t = line.trim();
        let inner = t.trim_start_matches('[').trim_end_matches(']').trim();
        t.starts_with('[') && (inner == step || inner.ends_with(&format!(".{step}")))
    };
    let mut from = 0;
    let steps: Vec<&str> = path.split('.').collect();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        let header =
            lines().find(|&(at, l)| (at > from || i == 0) && at >= from && header_names(l, step));
        let key = last
            .then(|| {
                lines().find_map(|(at, l)| {
                    let t = l.trim_start();
                    let after = t.strip_prefix(step)?;
                    let indent = l.len() - t.len();
                    (at >= from && after.trim_start().starts_with('=')).then_some(at + indent)
                })
            })
            .flatten();
        match (key, header) {
            (Some(k), _) => return table + k,
            (None, Some((at, l))) => from = at + (l.len() - l.trim_start().len()),
            (None, None) => break,
        }
    }
    if from == 0 { given } else { table + from }
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<LoadError>,
}

impl Ctx<'_> {
    fn at(&self, offset: usize) -> FilePosition {
        FilePosition::at(self.path, self.text, offset)
    }

    fn err(&mut self, offset: usize, message: impl Into<String>) {
        let at = self.at(offset);
        self.errors.push(LoadError {
            at,
            message: message.into(),
        });
    }

    /// Byte offset of the first character inside a quoted string value.
    fn inner(s: &S) -> usize {
        s.span().start + 1
    }

    fn duration(&mut self, key: &str, v: &Option<S>, default: i64, min: i64) -> i64 {
        let Some(v) = v else { return default };
        match expr::parse_duration(v.get_ref()) {
            Ok(d) if d >= min => d,
            Ok(_) => {
                self.err(
                    Self::inner(v),
                    format!("`{key}` must be at least {} ms", min),
                );
                default
            }
            Err(m) => {
                self.err(Self::inner(v), format!("`{key}`: {m}"));
                default
            }
        }
    }

    fn pattern(&mut self, key: &str, v: &Option<S>) -> Pattern {
        let Some(v) = v else { return Pattern::Any };
        match Pattern::parse(v.get_ref()) {
            Ok(p) => p,
            Err(m) => {
                self.err(Self::inner(v), format!("`{key}`: {m}"));
                Pattern::Any
            }
        }
    }

    fn condition(&mut self, key: &str, v: &S) -> Option<Expr> {
        match expr::parse(v.get_ref()) {
            Ok(e) => Some(e),
            Err(e) => {
                self.err(Self::inner(v) + e.offset, format!("`{key}`: {}", e.message));
                None
            }
        }
    }

    fn template(&mut self, key: &str, v: &Option<S>, default: &str) -> Template<AlertField> {
        let Some(v) = v else {
            return Template::parse(default).unwrap_or_default();
        };
        match Template::parse_all(v.get_ref()) {
            Ok(t) => t,
            Err(errors) => {
                for e in errors {
                    self.err(Self::inner(v) + e.offset(), format!("`{key}`: {e}"));
                }
                Template::default()
            }
        }
    }
}

/// Checks one file's text; `path` is only used in error positions.
///
/// # Errors
/// Every problem found, each with its position.
pub fn parse_file(path: &Path, text: &str) -> Result<RuleSet, Vec<LoadError>> {
    let mut cx = Ctx {
        path,
        text,
        errors: Vec::new(),
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            cx.err(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_owned(),
            );
            return Err(cx.errors);
        }
    };
    let mut set = RuleSet {
        files: vec![path.to_owned()],
        ..RuleSet::default()
    };
    for r in raw.rule {
        let start = r.span().start;
        if let Some(rule) = rule(&mut cx, start, r.into_inner()) {
            set.rules.push(rule);
        }
    }
    for r in raw.receiver {
        let start = r.span().start;
        let mut r = r.into_inner();
        let name = r.name.get_ref().clone();
        let name_span = Ctx::inner(&r.name);
        let channels = r.channels();
        if let Some(b) = &r.budget_per_hour
            && *b.get_ref() == 0
        {
            cx.err(b.span().start, "`budget_per_hour` must be at least 1");
        }
        let mut channel = None;
        if channels.is_empty() {
            cx.err(
                start,
                format!(
                    "receiver `{name}` has no channel; expected one table of {}",
                    ChannelConfig::KINDS.join(", ")
                ),
            );
        }
        for (kind, table) in channels {
            let offset = table.span().start;
            if channel.is_some() {
                cx.err(
                    offset,
                    format!("receiver `{name}` has more than one channel"),
                );
                continue;
            }
            let parsed = if kind == "rota" {
                toml::Value::Table(table.into_inner())
                    .try_into::<RotaConfig>()
                    .map_err(|e| ChannelError::table(e.message().trim()))
                    .and_then(|c| c.check())
                    .map(ReceiverKind::Rota)
            } else {
                ChannelConfig::parse(kind, table.into_inner()).map(ReceiverKind::Channel)
            };
            match parsed {
                Ok(c) => channel = Some(c),
                Err(why) => {
                    let at = why
                        .key_path()
                        .map_or(offset, |k| key_offset(cx.text, offset, k));
                    cx.err(at, format!("receiver `{name}`: {kind}: {why}"));
                }
            }
        }
        if name.is_empty() {
            cx.err(name_span, "a receiver needs a non-empty `name`");
        }
        if let Some(channel) = channel {
            if set.receivers.contains_key(&name) {
                cx.err(name_span, format!("receiver `{name}` is defined twice"));
            } else {
                let at = cx.at(start);
                set.receivers.insert(
                    name.clone(),
                    Receiver {
                        name,
                        at,
                        kind: channel,
                        budget_per_hour: r.budget_per_hour.as_ref().map(|b| *b.get_ref()),
                    },
                );
            }
        }
    }
    for r in raw.route {
        let start = r.span().start;
        let r = r.into_inner();
        let mut matchers = BTreeMap::new();
        for (k, v) in &r.matchers {
            let p = cx.pattern(&format!("match.{k}"), &Some(v.clone()));
            matchers.insert(k.clone(), p);
        }
        if r.receivers.is_empty() {
            cx.err(start, "a route needs at least one receiver in `receivers`");
        }
        let group_wait_ms = cx.duration("group_wait", &r.group_wait, DEFAULT_GROUP_WAIT_MS, 0);
        let group_interval_ms = cx.duration(
            "group_interval",
            &r.group_interval,
            DEFAULT_GROUP_INTERVAL_MS,
            1_000,
        );
        let repeat_interval_ms = cx.duration(
            "repeat_interval",
            &r.repeat_interval,
            DEFAULT_REPEAT_INTERVAL_MS,
            60_000,
        );
        let mut escalate = Vec::new();
        let mut escalate_at = Vec::new();
        let mut last_after = 0;
        for e in &r.escalate {
            let e_start = e.span().start;
            let e = e.get_ref();
            let after_ms = cx.duration("escalate.after", &Some(e.after.clone()), 0, 60_000);
            if after_ms <= last_after {
                cx.err(
                    Ctx::inner(&e.after),
                    "escalation steps must come later one after the other",
                );
            }
            last_after = after_ms;
            if e.receivers.is_empty() {
                cx.err(e_start, "an escalation step needs at least one receiver");
            }
            for s in &e.receivers {
                escalate_at.push((
                    s.get_ref().clone(),
                    FilePosition::at(path, text, Ctx::inner(s)),
                ));
            }
            if let Some(n) = &e.repeat_call
                && !(1..=5).contains(n.get_ref())
            {
                cx.err(n.span().start, "`escalate.repeat_call` must be 1 to 5");
            }
            escalate.push(Escalation {
                after_ms,
                receivers: e.receivers.iter().map(|s| s.get_ref().clone()).collect(),
                repeat_call: e.repeat_call.as_ref().map(|n| *n.get_ref()),
            });
        }
        let at = cx.at(start);
        set.routes.push(Route {
            matchers,
            receivers: r.receivers.iter().map(|s| s.get_ref().clone()).collect(),
            group_wait_ms,
            group_interval_ms,
            repeat_interval_ms,
            continue_matching: r.continue_matching,
            receiver_at: r
                .receivers
                .iter()
                .map(|s| FilePosition::at(path, text, Ctx::inner(s)))
                .collect(),
            escalate,
            escalate_refs: Vec::new(),
            at,
        });
        // Escalation receivers are checked with the route's own.
        let last = set.routes.last_mut().expect("just pushed");
        for (name, at) in escalate_at {
            last.escalate_refs.push((name, at));
        }
    }
    for p in raw.person {
        let start = p.span().start;
        let p = p.into_inner();
        if p.name.is_empty() {
            cx.err(start, "a person needs a `name`");
        } else if p.email.is_none() && p.phone.is_none() {
            cx.err(
                start,
                format!("person `{}` has neither `email` nor `phone`", p.name),
            );
        } else if set.people.contains_key(&p.name) {
            cx.err(start, format!("person `{}` is defined twice", p.name));
        } else {
            set.people_at.insert(p.name.clone(), cx.at(start));
            set.people.insert(p.name.clone(), p);
        }
    }
    for d in raw.depends {
        let start = d.span().start;
        let d = d.into_inner();
        if d.service.get_ref().trim().is_empty() {
            cx.err(
                Ctx::inner(&d.service),
                "`depends` needs a non-empty `service`",
            );
        }
        if d.on.is_empty() {
            cx.err(
                start,
                "`depends` needs at least one name in `on` (a service, a call target, a component such as `mysql@db1`, or `host:NAME`)",
            );
        }
        for o in &d.on {
            if o.get_ref().trim().is_empty() {
                cx.err(Ctx::inner(o), "an empty name in `on`");
            }
        }
        set.depends.push(Depends {
            service: d.service.into_inner(),
            on: d.on.into_iter().map(Spanned::into_inner).collect(),
            at: cx.at(start),
        });
    }
    if cx.errors.is_empty() {
        Ok(set)
    } else {
        Err(cx.errors)
    }
}

fn rule(cx: &mut Ctx<'_>, start: usize, r: RawRule) -> Option<Rule> {
    let before = cx.errors.len();
    let name = r.name.get_ref().clone();
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '/') {
        cx.err(
            Ctx::inner(&r.name),
            "a rule needs a `name` without '/' or control characters",
        );
    }
    let layer = match r.layer.get_ref().parse::<Layer>() {
        Ok(l) => l,
        Err(_) => {
            cx.err(
                Ctx::inner(&r.layer),
                format!(
                    "unknown layer `{}`; expected business, url, call, component or infra",
                    r.layer.get_ref()
                ),
            );
            Layer::Business
        }
    };
    let service = cx.pattern("service", &r.service);
    let series = cx.pattern("series", &r.series);
    let host = cx.pattern("host", &r.host);
    let mut dims = BTreeMap::new();
    for (k, v) in &r.dims {
        let p = cx.pattern(&format!("dims.{k}"), &Some(v.clone()));
        dims.insert(k.clone(), p);
    }
    let group_by = match r.group_by.as_ref().map(|g| g.get_ref().as_str()) {
        None | Some("series") => GroupBy::Series,
        Some("host") => GroupBy::Host,
        Some("service") => GroupBy::Service,
        Some(other) => {
            let g = r.group_by.as_ref().map_or(start, Ctx::inner);
            cx.err(
                g,
                format!("unknown `group_by` `{other}`; expected series, host or service"),
            );
            GroupBy::Series
        }
    };
    let window_ms = cx.duration("window", &r.window, DEFAULT_WINDOW_MS, 60_000);
    if window_ms % 60_000 != 0 {
        let w = r.window.as_ref().map_or(start, Ctx::inner);
        cx.err(w, "`window` must be whole minutes (rollups are per minute)");
    }
    let align = match r.align.as_ref().map(|a| a.get_ref().as_str()) {
        None | Some("sliding") => Align::Sliding,
        Some("minute") => Align::Minute,
        Some(other) => {
            let a = r.align.as_ref().map_or(start, Ctx::inner);
            cx.err(
                a,
                format!("unknown `align` `{other}`; expected sliding or minute"),
            );
            Align::Sliding
        }
    };
    let every_ms = cx.duration("every", &r.every, DEFAULT_EVERY_MS, 1_000);
    let min_interval_ms = cx.duration(
        "min_interval",
        &r.min_interval,
        DEFAULT_MIN_INTERVAL_MS.min(every_ms),
        100,
    );
    if min_interval_ms > every_ms {
        let m = r.min_interval.as_ref().map_or(start, Ctx::inner);
        cx.err(
            m,
            "`min_interval` must not be longer than `every` (the longest time between evaluations)",
        );
    }
    let when = cx.condition("when", &r.when);
    let recover = r.recover.as_ref().and_then(|v| cx.condition("recover", v));
    let d = Timing::default();
    let timing = Timing {
        for_ms: cx.duration("for", &r.for_, 0, 0),
        keep_firing_for_ms: cx.duration("keep_firing_for", &r.keep_firing_for, 0, 0),
        recover_for_ms: cx.duration("recover_for", &r.recover_for, 0, 0),
        flap_window_ms: cx.duration("flap_window", &r.flap_window, d.flap_window_ms, 60_000),
        flap_max: r
            .flap_max
            .as_ref()
            .map_or(d.flap_max, |m| *m.get_ref() as usize),
        flap_hold_ms: cx.duration("flap_hold", &r.flap_hold, d.flap_hold_ms, 0),
        no_data_for_ms: cx.duration("no_data_for", &r.no_data_for, d.no_data_for_ms, 0),
    };
    if let Some(m) = &r.flap_max
        && *m.get_ref() < 2
    {
        cx.err(m.span().start, "`flap_max` must be at least 2");
    }
    let absent_lookback_ms = cx.duration("absent_lookback", &r.absent_lookback, HOUR_MS, MINUTE_MS);
    let severity = match &r.severity {
        None => Severity::Warning,
        Some(s) => Severity::from_name(s.get_ref()).unwrap_or_else(|| {
            cx.err(
                Ctx::inner(s),
                format!(
                    "unknown severity `{}`; expected critical, warning or info",
                    s.get_ref()
                ),
            );
            // The rule is refused below; any value will do.
            Severity::Warning
        }),
    };
    for k in r.labels.keys() {
        if AlertField::names().any(|n| n == k) || k == "alertname" {
            cx.err(
                start,
                format!("label `{k}` is set by the engine and cannot be given in `labels`"),
            );
        }
    }
    let summary = cx.template(
        "summary",
        &r.summary,
        "{{layer}} {{service}} {{series}}{{host}}: {{value}} (threshold {{threshold}})",
    );
    let description = cx.template("description", &r.description, "");
    if cx.errors.len() > before {
        return None;
    }
    Some(Rule {
        name,
        at: cx.at(start),
        layer,
        service,
        series,
        host,
        dims,
        group_by,
        window_ms,
        align,
        every_ms,
        min_interval_ms,
        when_text: r.when.get_ref().clone(),
        when: when?,
        recover_text: r.recover.as_ref().map(|s| s.get_ref().clone()),
        recover,
        min_count: r.min_count.unwrap_or(0),
        absent_lookback_ms,
        timing,
        severity,
        labels: r.labels,
        summary,
        description,
    })
}

/// Reads every `*.toml` file of `dir` (not hidden, not recursive, in name
/// order) into one rule set.
///
/// # Errors
/// Every problem of every file, each placed; an unreadable directory is
/// reported at the directory itself.
pub fn load_dir(dir: &Path) -> Result<RuleSet, Vec<LoadError>> {
    let at_dir = |m: String| LoadError {
        at: FilePosition {
            path: dir.to_owned(),
            line: 1,
            column: 1,
        },
        message: m,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| vec![at_dir(format!("cannot read: {e}"))])?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
                && p.is_file()
        })
        .collect();
    files.sort();
    let mut errors = Vec::new();
    let mut set = RuleSet::default();
    let mut defined: BTreeMap<String, FilePosition> = BTreeMap::new();
    for file in &files {
        let text = match std::fs::read(file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    let valid = e.utf8_error().valid_up_to();
                    let text = String::from_utf8_lossy(&e.into_bytes()[..valid]).into_owned();
                    errors.push(LoadError {
                        at: FilePosition::at(file, &text, valid),
                        message: "invalid UTF-8".into(),
                    });
                    continue;
                }
            },
            Err(e) => {
                errors.push(LoadError {
                    at: FilePosition {
                        path: file.clone(),
                        line: 1,
                        column: 1,
                    },
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match parse_file(file, &text) {
            Ok(one) => {
                for r in one.rules {
                    if let Some(first) = defined.get(&r.name) {
                        errors.push(LoadError {
                            at: r.at.clone(),
                            message: format!("rule `{}` is already defined at {first}", r.name),
                        });
                    } else {
                        defined.insert(r.name.clone(), r.at.clone());
                        set.rules.push(r);
                    }
                }
                for (name, r) in one.receivers {
                    if let Some(first) = set.receivers.get(&name) {
                        errors.push(LoadError {
                            at: r.at.clone(),
                            message: format!(
                                "receiver `{name}` is already defined at {}",
                                first.at
                            ),
                        });
                    } else {
                        set.receivers.insert(name, r);
                    }
                }
                set.routes.extend(one.routes);
                set.depends.extend(one.depends);
                for (name, p) in one.people {
                    let at = one.people_at.get(&name).cloned();
                    if let Some(first) = set.people_at.get(&name) {
                        errors.push(LoadError {
                            at: at.unwrap_or_else(|| first.clone()),
                            message: format!("person `{name}` is already defined at {first}"),
                        });
                    } else {
                        if let Some(at) = at {
                            set.people_at.insert(name.clone(), at);
                        }
                        set.people.insert(name, p);
                    }
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    let refs: Vec<(String, FilePosition)> = set
        .routes
        .iter()
        .flat_map(|r| {
            r.receivers
                .iter()
                .cloned()
                .zip(r.receiver_at.iter().cloned())
                .chain(r.escalate_refs.iter().cloned())
        })
        .collect();
    errors.extend(check_rotas(&set));
    for (name, at) in refs {
        if !set.receivers.contains_key(&name) {
            let known: Vec<&str> = set.receivers.keys().map(String::as_str).collect();
            errors.push(LoadError {
                at,
                message: format!(
                    "route names receiver `{name}`, which is not defined (defined: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
    }
    set.files = files;
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Rotas name people and delivering receivers defined anywhere in the
/// directory; each person needs the contact the receivers use. A voice
/// receiver's `fallback` names an SMS receiver.
fn check_rotas(set: &RuleSet) -> Vec<LoadError> {
    let mut errors = Vec::new();
    for r in set.receivers.values() {
        let ReceiverKind::Channel(ChannelConfig::Voice(v)) = &r.kind else {
            continue;
        };
        let Some(fb) = &v.fallback else { continue };
        let ok = matches!(
            set.receivers.get(fb).map(|f| &f.kind),
            Some(ReceiverKind::Channel(ChannelConfig::Sms(_)))
        );
        if !ok {
            errors.push(LoadError {
                at: r.at.clone(),
                message: format!(
                    "receiver `{}`: voice: `fallback` names `{fb}`, which is not an SMS receiver",
                    r.name
                ),
            });
        }
    }
    for r in set.receivers.values() {
        let ReceiverKind::Rota(rota) = &r.kind else {
            continue;
        };
        let mut err = |m: String| {
            errors.push(LoadError {
                at: r.at.clone(),
                message: format!("receiver `{}`: rota: {m}", r.name),
            })
        };
        for via in &rota.via {
            match set.receivers.get(via).map(|v| &v.kind) {
                None => err(format!(
                    "`via` names receiver `{via}`, which is not defined"
                )),
                Some(ReceiverKind::Rota(_)) => {
                    err(format!("`via` names `{via}`, which is a rota itself"))
                }
                Some(ReceiverKind::Channel(c)) => {
                    for who in &rota.people {
                        let Some(p) = set.people.get(who) else {
                            continue;
                        };
                        let has = if matches!(c.kind(), "mail" | "mailbox") {
                            p.email.is_some()
                        } else if c.kind() == "webhook" {
                            true
                        } else {
                            p.phone.is_some()
                        };
                        if !has {
                            err(format!(
                                "person `{who}` has no {} for receiver `{via}` ({})",
                                if matches!(c.kind(), "mail" | "mailbox") {
                                    "email"
                                } else {
                                    "phone"
                                },
                                c.kind()
                            ));
                        }
                    }
                }
            }
        }
        for who in &rota.people {
            if !set.people.contains_key(who) {
                err(format!(
                    "names person `{who}`, who is not defined in a [[person]] table"
                ));
            }
        }
        for (_, _, who) in &rota.overrides {
            if !set.people.contains_key(who) {
                err(format!("override names person `{who}`, who is not defined"));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first error for one rules file holding `text`, as `file:line:col: message`.
    fn first_error(text: &str) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("r.toml"), text).expect("write rules");
        let errors = load_dir(dir.path()).expect_err("must be refused");
        let prefix = format!("{}{}", dir.path().display(), std::path::MAIN_SEPARATOR);
        errors[0].to_string().replacen(&prefix, "", 1)
    }

    #[test]
    fn a_channel_error_points_at_its_key() {
        for (text, at, needle) in [
            (
                // A key of the channel's own table.
                "[[receiver]]\nname = \"d\"\n[receiver.dingtalk]\naccess_token_env = \"T\"\n  url = \"ftp://robot\"\n",
                "r.toml:5:3:",
                "expected an http:// or https:// URL",
            ),
            (
                // A key of a provider's sub-table, after a receiver with the same key.
                "[[receiver]]\nname = \"a\"\n[receiver.mailbox]\ndir = \"m\"\n\n\
                 [[receiver]]\nname = \"s\"\n[receiver.sms]\nto = [\"+8613800000000\"]\n\
                 [receiver.sms.aliyun]\naccess_key_id = \"k\"\naccess_key_secret_env = \"S\"\n\
                 sign_name = \"\"\ntemplate_code = \"SMS_1\"\n",
                "r.toml:13:1:",
                "aliyun: `sign_name` is empty",
            ),
            (
                // A check shared with delivery names its key through the caller.
                "[[receiver]]\nname = \"s\"\n[receiver.sms]\nto = [\"call me\"]\n\
                 [receiver.sms.aliyun]\naccess_key_id = \"k\"\naccess_key_secret_env = \"S\"\n\
                 sign_name = \"n\"\ntemplate_code = \"SMS_1\"\n",
                "r.toml:4:1:",
                "phone number \"call me\"",
            ),
            (
                // An array-of-tables step: `override.until`.
                "[[receiver]]\nname = \"m\"\n[receiver.mailbox]\ndir = \"m\"\n\
                 [[receiver]]\nname = \"r\"\n[receiver.rota]\npeople = [\"ana\"]\nvia = [\"m\"]\n\
                 first_handover = \"2026-11-02T10:00:00+08:00\"\n\
                 [[receiver.rota.override]]\nperson = \"ana\"\nfrom = \"2026-11-03T10:00:00+08:00\"\n\
                 until = \"2026-11-03T09:00:00+08:00\"\n",
                "r.toml:14:1:",
                "`until` must be after `from`",
            ),
            (
                // No key to blame: the channel's table.
                "[[receiver]]\nname = \"s\"\n[receiver.sms]\nto = [\"+8613800000000\"]\n",
                "r.toml:3:1:",
                "expected a provider",
            ),
        ] {
            let first = first_error(text);
            assert!(
                first.starts_with(at),
                "{text:?}: {first:?} should start with {at}"
            );
            assert!(
                first.contains(needle),
                "{text:?}: {first:?} should say {needle}"
            );
        }
    }
}
