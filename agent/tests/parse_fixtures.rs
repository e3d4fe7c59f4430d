//! Every built-in format against a realistic sample file in
//! `tests/fixtures/parse/`: exact events, names, outcomes, latencies and
//! times, and the failed lines counted.

use std::path::Path;

use chrono::DateTime;
use panorama_agent::parse::{Format, ParseSpec, ParseStats, Pipeline, RouteRule};
use panorama_model::{Event, Layer, Outcome};

/// 2026-11-23T00:00:00Z: "now" for times written without a year.
const NOW: i64 = 1_795_392_000_000;

fn utc(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

fn run(spec: ParseSpec, fixture: &str) -> (Vec<Event>, ParseStats, Pipeline) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parse")
        .join(fixture);
    let bytes = std::fs::read(&path).unwrap();
    let mut p = Pipeline::new(spec, "web1").unwrap();
    p.set_clock(|| NOW);
    let mut out = Vec::new();
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    for line in body.split(|&b| b == b'\n') {
        let _ = p.feed(line, &mut out);
    }
    p.flush(&mut out);
    let stats = p.stats();
    (out, stats, p)
}

fn err(code: &str) -> Outcome {
    Outcome::Error(Some(code.to_owned()))
}

/// (name, outcome, latency ms, time) of each event.
fn summary(events: &[Event]) -> Vec<(&str, Outcome, Option<f64>, i64)> {
    events
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.outcome.clone(),
                e.latency_ms.map(|l| (l * 1000.0).round() / 1000.0),
                e.ts_ms,
            )
        })
        .collect()
}

#[test]
fn nginx_with_request_and_upstream_times() {
    let mut spec = ParseSpec::new(Format::Combined, "game-api");
    spec.routes = vec![RouteRule {
        pattern: "^/static/.*".into(),
        replace: "/static/*".into(),
    }];
    spec.value_field = Some("upstream_time".into());
    let (ev, stats, _) = run(spec, "nginx_timed.log");
    assert_eq!(
        summary(&ev),
        [
            (
                "GET /api/user/:num/profile",
                Outcome::Ok,
                Some(12.0),
                utc("2026-11-22T13:00:01Z")
            ),
            (
                "POST /api/login",
                Outcome::Ok,
                Some(45.0),
                utc("2026-11-22T13:00:01Z")
            ),
            (
                "POST /api/login",
                err("502"),
                Some(3001.0),
                utc("2026-11-22T13:00:02Z")
            ),
            (
                "GET /api/order/:uuid",
                Outcome::Ok,
                Some(120.0),
                utc("2026-11-22T13:00:02Z")
            ),
            (
                "GET /static/*",
                Outcome::Ok,
                Some(0.0),
                utc("2026-11-22T13:00:03Z")
            ),
            (
                "- (invalid request)",
                Outcome::Ok,
                Some(1.0),
                utc("2026-11-22T13:00:03Z")
            ),
            (
                "GET /api/user/:num/profile",
                err("504"),
                Some(60002.0),
                utc("2026-11-22T13:00:59Z")
            ),
            (
                "DELETE /api/session/:hex",
                Outcome::Ok,
                Some(8.0),
                utc("2026-11-22T13:01:00Z")
            ),
        ]
    );
    assert!(
        ev.iter()
            .all(|e| e.layer == Layer::Url && e.service == "game-api" && e.host == "web1")
    );
    let upstream: Vec<Option<f64>> = ev
        .iter()
        .map(|e| e.value.map(|v| (v * 1000.0).round()))
        .collect();
    assert_eq!(
        upstream,
        [
            Some(10.0),
            Some(44.0),
            Some(3000.0),
            Some(118.0),
            None,
            None,
            Some(60001.0),
            Some(8.0)
        ]
    );
    // Only errors carry their raw line.
    assert!(ev[2].raw.as_deref().unwrap().starts_with("203.0.113.7 "));
    assert!(ev[0].raw.is_none());
    assert_eq!((stats.lines, stats.events, stats.failed), (8, 8, 0));
}

#[test]
fn apache_combined() {
    let (ev, stats, _) = run(
        ParseSpec::new(Format::Combined, "shop"),
        "apache_combined.log",
    );
    assert_eq!(
        summary(&ev),
        [
            (
                "GET /index.html",
                Outcome::Ok,
                None,
                utc("2026-11-22T13:00:01Z")
            ),
            (
                "GET /products/:num",
                Outcome::Ok,
                None,
                utc("2026-11-22T13:00:01Z")
            ),
            (
                "POST /cgi-bin/checkout.cgi",
                err("500"),
                None,
                utc("2026-11-22T13:00:02Z")
            ),
            (
                "GET /search",
                Outcome::Ok,
                None,
                utc("2026-11-22T13:00:02Z")
            ),
            (
                "GET /favicon.ico",
                Outcome::Ok,
                None,
                utc("2026-11-22T13:00:03Z")
            ),
            ("OPTIONS *", Outcome::Ok, None, utc("2026-11-22T13:00:03Z")),
        ]
    );
    assert_eq!((stats.events, stats.failed), (6, 0));
}

#[test]
fn json_lines() {
    let mut spec = ParseSpec::new(Format::Json, "login");
    spec.dims = vec!["channel".into()];
    let (ev, stats, mut p) = run(spec, "app_events.jsonl");
    assert_eq!(
        summary(&ev),
        [
            (
                "login",
                Outcome::Ok,
                Some(35.2),
                utc("2026-11-22T13:00:01.250Z")
            ),
            (
                "login",
                err("PWD_WRONG"),
                Some(12.0),
                utc("2026-11-22T13:00:01.900Z")
            ),
            ("pay", Outcome::Ok, Some(230.5), utc("2026-11-22T13:00:02Z")),
            (
                "account-svc getUser",
                err("504"),
                Some(3000.0),
                utc("2026-11-22T13:00:03Z")
            ),
            ("register", Outcome::Ok, None, utc("2026-11-22T13:00:04Z")),
        ]
    );
    let layers: Vec<Layer> = ev.iter().map(|e| e.layer).collect();
    assert_eq!(
        layers,
        [
            Layer::Business,
            Layer::Business,
            Layer::Business,
            Layer::Call,
            Layer::Business
        ]
    );
    assert_eq!(ev[1].dims["channel"], "android");
    assert!(ev[3].dims.is_empty());
    assert_eq!(ev[2].value, Some(68.0));
    assert_eq!((stats.lines, stats.events, stats.failed), (7, 5, 2));
    let samples = p.take_failed_samples();
    assert_eq!(samples.len(), 2);
    assert!(samples[0].line.ends_with("\"latency_ms\":"));
    assert!(
        samples[1].failure.expected.contains("a time in field"),
        "{}",
        samples[1].failure
    );
}

#[test]
fn syslog_rfc3164() {
    let mut spec = ParseSpec::new(Format::Syslog, "os");
    spec.timezone = Some("UTC".into());
    let (ev, stats, _) = run(spec, "syslog_rfc3164.log");
    assert_eq!(
        summary(&ev),
        [
            ("su", err("crit"), None, utc("2026-11-22T13:00:01Z")),
            ("systemd", Outcome::Ok, None, utc("2026-11-22T13:00:02Z")),
            ("kernel", err("err"), None, utc("2026-11-22T13:00:03Z")),
            ("sshd", Outcome::Ok, None, utc("2026-11-22T13:00:04Z")),
            ("CRON", Outcome::Ok, None, utc("2026-11-22T13:00:05Z")),
            // Without a <PRI> the severity is unknown.
            ("kernel", Outcome::Ok, None, utc("2026-11-22T13:00:05Z")),
            ("syslog", Outcome::Ok, None, utc("2026-11-22T13:00:06Z")),
            // No year in the line: the last December 31st before "now".
            ("logrotate", Outcome::Ok, None, utc("2025-12-31T23:59:59Z")),
        ]
    );
    assert!(ev.iter().all(|e| e.layer == Layer::Infra));
    assert_eq!((stats.lines, stats.events, stats.failed), (9, 8, 1));
}

#[test]
fn syslog_rfc5424() {
    let mut spec = ParseSpec::new(Format::Syslog, "game");
    spec.dims = vec!["msgid".into(), "eventID".into()];
    let (ev, stats, _) = run(spec, "syslog_rfc5424.log");
    assert_eq!(
        summary(&ev),
        [
            (
                "gamesvr",
                Outcome::Ok,
                None,
                utc("2026-11-22T13:00:01.003Z")
            ),
            ("gamesvr", err("err"), None, utc("2026-11-22T13:00:02.500Z")),
            ("syslog", Outcome::Ok, None, utc("2026-11-22T13:00:03Z")),
            ("payd", err("crit"), None, utc("2026-11-22T13:00:04Z")),
        ]
    );
    assert_eq!(ev[0].dims.get("eventID").map(String::as_str), Some("1011"));
    assert_eq!(ev[1].dims.get("msgid").map(String::as_str), Some("DBERR"));
    assert_eq!((stats.lines, stats.events, stats.failed), (5, 4, 1));
}

#[test]
fn mysql_slow_log() {
    let mut spec = ParseSpec::new(Format::MysqlSlow, "db1");
    spec.dims = vec!["statement".into(), "db".into()];
    let (ev, stats, _) = run(spec, "mysql_slow.log");
    assert_eq!(
        summary(&ev),
        [
            (
                "mysql slow query",
                Outcome::Ok,
                Some(2503.12),
                utc("2026-11-22T13:00:01.123Z")
            ),
            (
                "mysql slow query",
                Outcome::Ok,
                Some(12000.001),
                utc("2026-11-22T13:00:05Z")
            ),
            // No `# Time:` of its own: SET timestamp.
            (
                "mysql slow query",
                Outcome::Ok,
                Some(1250.0),
                utc("2026-11-22T13:00:04Z")
            ),
            (
                "mysql slow query",
                Outcome::Ok,
                Some(3000.0),
                utc("2026-11-22T13:00:10.500Z")
            ),
        ]
    );
    assert!(ev.iter().all(|e| e.layer == Layer::Component));
    let dims: Vec<(Option<&str>, Option<&str>)> = ev
        .iter()
        .map(|e| {
            (
                e.dims.get("statement").map(String::as_str),
                e.dims.get("db").map(String::as_str),
            )
        })
        .collect();
    assert_eq!(
        dims,
        [
            (Some("select"), Some("shop")),
            (Some("select"), None),
            (Some("update"), None),
            (Some("alter"), Some("analytics")),
        ]
    );
    assert_eq!(
        (stats.lines, stats.events, stats.failed, stats.skipped),
        (27, 4, 0, 3)
    );
}

#[test]
fn redis_log() {
    let mut spec = ParseSpec::new(Format::Redis, "cache1");
    spec.timezone = Some("UTC".into());
    spec.dims = vec!["role".into()];
    let (ev, stats, _) = run(spec, "redis.log");
    assert_eq!(ev.len(), 11);
    assert!(
        ev.iter()
            .all(|e| e.name == "redis" && e.layer == Layer::Component)
    );
    let errors: Vec<(i64, &str)> = ev
        .iter()
        .filter(|e| !e.outcome.is_ok())
        .map(|e| (e.ts_ms, e.dims["role"].as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            (utc("2026-11-22T13:00:00.001Z"), "child"),
            (utc("2026-11-22T13:00:02.100Z"), "child"),
            (utc("2026-11-22T13:00:02.200Z"), "master"),
        ]
    );
    assert_eq!(ev[10].dims["role"], "replica");
    assert_eq!(ev[10].ts_ms, utc("2026-11-22T13:00:03Z"));
    // The logo line Redis prints without a prefix.
    assert_eq!((stats.lines, stats.events, stats.failed), (12, 11, 1));
}
