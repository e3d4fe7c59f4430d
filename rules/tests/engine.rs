//! The rules engine end to end: rule files in a directory, synthetic
//! rollups in a real SQLite store, the engine driven with synthetic times
//! (`tick`, `deliver`), and the mail it sends received by a real SMTP
//! server (aiosmtpd, see `support`).
//!
//! Every test starts its own store, state directory and (where mail is
//! involved) its own SMTP server, so they run in parallel.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use panorama_model::{Event, Layer, Outcome, Rollup, SeriesKey};
use panorama_rules::engine::{AlertView, AlertsView, Engine, SilenceRequest};
use panorama_rules::lifecycle::State;
use panorama_rules::outbox::Status;
use panorama_rules::silence::{MatchOp, Matcher, SilenceError};
use support::{Env, SmtpOptions, SmtpServer};

/// 2026-11-22 13:00:00 UTC, a minute boundary.
const T0: i64 = 1_795_352_400_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60_000;
const DAY: i64 = panorama_model::DAY_MS;
const WEEK: i64 = 7 * DAY;
const WAIT: Duration = Duration::from_secs(15);

fn key(layer: Layer, service: &str, host: &str, name: &str) -> SeriesKey {
    SeriesKey {
        layer,
        service: service.to_owned(),
        host: host.to_owned(),
        name: name.to_owned(),
        dims: BTreeMap::new(),
    }
}

/// A rollup of `buckets` (count, latency ms) events; the first `errors` fail.
fn latencies(
    minute: i64,
    service: &str,
    name: &str,
    buckets: &[(u64, f64)],
    errors: u64,
) -> Rollup {
    let k = key(Layer::Url, service, "web1", name);
    let mut r = Rollup::empty(minute, k, "c1");
    let mut i = 0u64;
    for &(n, ms) in buckets {
        for _ in 0..n {
            let mut e = Event::new(
                minute + (i as i64 * 397) % MIN,
                Layer::Url,
                service,
                "web1",
                name,
            );
            if i < errors {
                e.outcome = Outcome::Error(Some("500".into()));
            }
            e.latency_ms = Some(ms);
            r.add(&e);
            i += 1;
        }
    }
    r
}

/// `n` requests of 20 ms, of which `errors` failed.
fn requests(minute: i64, service: &str, name: &str, n: u64, errors: u64) -> Rollup {
    latencies(minute, service, name, &[(n, 20.0)], errors)
}

/// Gauge readings of an infra series.
fn gauge(minute: i64, host: &str, name: &str, values: &[f64]) -> Rollup {
    let k = key(Layer::Infra, "node", host, name);
    let mut r = Rollup::empty(minute, k, "c1");
    for (i, v) in values.iter().enumerate() {
        let mut e = Event::new(minute + i as i64 * SEC, Layer::Infra, "node", host, name);
        e.value = Some(*v);
        r.add(&e);
    }
    r
}

/// `rule|group` of each alert.
fn ids(alerts: &[AlertView]) -> BTreeSet<String> {
    alerts
        .iter()
        .map(|a| format!("{}|{}", a.rule, a.group))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn find<'a>(alerts: &'a [AlertView], rule: &str, group: &str) -> &'a AlertView {
    alerts
        .iter()
        .find(|a| a.rule == rule && a.group == group)
        .unwrap_or_else(|| panic!("no alert {rule}|{group} in {:?}", ids(alerts)))
}

/// The state of one alert, if listed.
async fn state(engine: &Engine, now: i64, rule: &str, group: &str) -> Option<State> {
    let v = engine.view(now).await;
    [&v.firing, &v.pending, &v.no_data, &v.resolved]
        .into_iter()
        .flatten()
        .find(|a| a.rule == rule && a.group == group)
        .map(|a| a.state)
}

/// One evaluation of `rules` over `data` at `now`.
async fn evaluate_once(rules: &str, data: &[Rollup], now: i64) -> AlertsView {
    let env = Env::new(rules);
    env.write(data).await;
    let engine = env.open().await;
    engine.tick(now).await;
    let v = engine.view(now).await;
    assert_eq!(v.store_error, None);
    v
}

/// Records of one event kind in the history.
async fn history(engine: &Engine, event: &str) -> Vec<panorama_rules::history::Record> {
    engine
        .history(None, "", 10_000)
        .await
        .expect("history")
        .into_iter()
        .filter(|r| r.event == event)
        .collect()
}

/// A mail receiver `oncall` and a route of critical alerts to it.
fn mail_receiver(server: &SmtpServer, to: &str, group_wait: &str, repeat: &str) -> String {
    format!(
        r#"
[[receiver]]
name = "oncall"
[receiver.mail]
host = "{host}"
port = {port}
security = "plain"
from = "Panorama <alerts@panorama.test>"
to = ["{to}"]
timeout_secs = 5

[[route]]
match = {{ severity = "critical" }}
receivers = ["oncall"]
group_wait = "{group_wait}"
group_interval = "10s"
repeat_interval = "{repeat}"
"#,
        host = server.host(),
        port = server.port(),
    )
}

/// The `series:` lines of a text body.
fn series_named(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("series:"))
        .map(|s| s.trim().to_owned())
        .collect()
}

// ------------------------------------------------------------- conditions

#[tokio::test]
async fn count_fires_above_its_threshold_only() {
    let v = evaluate_once(
        r#"
[[rule]]
name = "count"
layer = "url"
service = "shop"
window = "1m"
when = "count > 100"
"#,
        &[
            requests(T0, "shop", "hi", 150, 0),
            requests(T0, "shop", "lo", 50, 0),
        ],
        T0 + 30 * SEC,
    )
    .await;
    assert_eq!(ids(&v.firing), set(&["count|shop/hi"]));
    let a = find(&v.firing, "count", "shop/hi");
    assert_eq!((a.value.as_str(), a.threshold.as_str()), ("150", "100"));
    assert_eq!(a.series, "hi");
    assert!(v.pending.is_empty());
}

#[tokio::test]
async fn rate_divides_by_the_time_elapsed_in_the_open_minute() {
    // 30 s into the minute: 90 events is 3/s, 45 events is 1.5/s.
    let v = evaluate_once(
        r#"
[[rule]]
name = "rate"
layer = "url"
service = "shop"
window = "1m"
when = "rate > 2"
"#,
        &[
            requests(T0, "shop", "hi", 90, 0),
            requests(T0, "shop", "lo", 45, 0),
        ],
        T0 + 30 * SEC,
    )
    .await;
    assert_eq!(ids(&v.firing), set(&["rate|shop/hi"]));
    let a = find(&v.firing, "rate", "shop/hi");
    assert_eq!((a.value.as_str(), a.threshold.as_str()), ("3/s", "2/s"));
}

#[tokio::test]
async fn errors_count_failed_events() {
    let v = evaluate_once(
        r#"
[[rule]]
name = "errors"
layer = "url"
service = "shop"
window = "5m"
when = "errors >= 10"
"#,
        &[
            requests(T0 - MIN, "shop", "hi", 50, 6),
            requests(T0, "shop", "hi", 50, 6),
            requests(T0, "shop", "lo", 100, 9),
        ],
        T0 + 30 * SEC,
    )
    .await;
    assert_eq!(ids(&v.firing), set(&["errors|shop/hi"]));
    let a = find(&v.firing, "errors", "shop/hi");
    assert_eq!((a.value.as_str(), a.threshold.as_str()), ("12", "10"));
}

#[tokio::test]
async fn error_ratio_compares_failed_over_all() {
    let v = evaluate_once(
        r#"
[[rule]]
name = "ratio"
layer = "url"
service = "shop"
window = "1m"
when = "error_ratio > 5%"
"#,
        &[
            requests(T0, "shop", "hi", 200, 20),
            requests(T0, "shop", "lo", 200, 8),
        ],
        T0 + 30 * SEC,
    )
    .await;
    assert_eq!(ids(&v.firing), set(&["ratio|shop/hi"]));
    let a = find(&v.firing, "ratio", "shop/hi");
    assert_eq!((a.value.as_str(), a.threshold.as_str()), ("10%", "5%"));
    assert!(a.summary.contains("shop") && a.summary.contains("hi"));
    assert!(a.link.contains("layer=url") && a.link.contains("service=shop"));
}

#[tokio::test]
async fn latency_metrics_avg_p50_p90_p99_and_max_each_see_their_own_part() {
    // 100 events each: `l<k>` has k slow (1 s) events and the rest at 10 ms.
    let series = [("l0", 0), ("l1", 1), ("l5", 5), ("l15", 15), ("l60", 60)];
    let data: Vec<Rollup> = series
        .iter()
        .map(|(name, slow)| latencies(T0, "lat", name, &[(100 - slow, 10.0), (*slow, 1000.0)], 0))
        .collect();
    let v = evaluate_once(
        r#"
[[rule]]
name = "p50"
layer = "url"
service = "lat"
window = "1m"
when = "p50 > 500ms"

[[rule]]
name = "p90"
layer = "url"
service = "lat"
window = "1m"
when = "p90 > 500ms"

[[rule]]
name = "p99"
layer = "url"
service = "lat"
window = "1m"
when = "p99 > 0.5s"

[[rule]]
name = "max"
layer = "url"
service = "lat"
window = "1m"
when = "max > 500ms"

[[rule]]
name = "avg"
layer = "url"
service = "lat"
window = "1m"
when = "avg > 150ms"
"#,
        &data,
        T0 + 30 * SEC,
    )
    .await;
    assert_eq!(
        ids(&v.firing),
        set(&[
            "p50|lat/l60",
            "p90|lat/l15",
            "p90|lat/l60",
            "p99|lat/l5",
            "p99|lat/l15",
            "p99|lat/l60",
            "max|lat/l1",
            "max|lat/l5",
            "max|lat/l15",
            "max|lat/l60",
            "avg|lat/l15",
            "avg|lat/l60",
        ])
    );
    // avg of l60 = (40 × 10 + 60 × 1000) / 100 = 604 ms.
    let a = find(&v.firing, "avg", "lat/l60");
    assert_eq!(
        (a.value.as_str(), a.threshold.as_str()),
        ("604 ms", "150 ms")
    );
    let a = find(&v.firing, "max", "lat/l1");
    assert_eq!(
        (a.value.as_str(), a.threshold.as_str()),
        ("1000 ms", "500 ms")
    );
    let a = find(&v.firing, "p99", "lat/l5");
    assert_eq!(a.threshold, "500 ms");
}

#[tokio::test]
async fn gauge_value_is_the_mean_reading_per_host_on_the_infra_layer() {
    let v = evaluate_once(
        r#"
[[rule]]
name = "cpu"
layer = "infra"
series = "cpu"
group_by = "host"
window = "1m"
when = "value > 90"

[[rule]]
name = "cpu-peak"
layer = "infra"
series = "cpu"
group_by = "host"
window = "1m"
when = "value_max > 90"
"#,
        &[
            gauge(T0, "db1", "cpu", &[92.0, 96.0, 98.0]),
            gauge(T0, "db2", "cpu", &[95.0, 40.0, 50.0]),
            gauge(T0, "db3", "cpu", &[10.0, 20.0]),
            gauge(T0, "db1", "disk", &[99.0]),
        ],
        T0 + 30 * SEC,
    )
    .await;
    assert_eq!(
        ids(&v.firing),
        set(&["cpu|db1", "cpu-peak|db1", "cpu-peak|db2"])
    );
    let a = find(&v.firing, "cpu", "db1");
    assert_eq!((a.value.as_str(), a.threshold.as_str()), ("95.3", "90"));
    assert_eq!((a.layer.as_str(), a.host.as_str()), ("infra", "db1"));
}

#[tokio::test]
async fn baseline_as_a_ratio_same_time_yesterday_scaled_to_the_open_minute() {
    // Window 5 min, now 30 s into its last minute: 4.5 of 5 minutes have
    // elapsed, so yesterday's complete window (500) counts as 450.
    let mut data = Vec::new();
    for m in 0..5 {
        let t = T0 + m * MIN;
        data.push(requests(t - DAY, "shop", "steady", 100, 0));
        data.push(requests(t - DAY, "shop", "drop", 100, 0));
        // The open minute (m = 4) holds half a minute's worth.
        let half = if m == 4 { 2 } else { 1 };
        data.push(requests(t, "shop", "steady", 100 / half, 0));
        data.push(requests(t, "shop", "drop", 20 / half, 0));
    }
    // No baseline at all: unknown, not a breach.
    data.push(requests(T0 + 4 * MIN, "shop", "new", 3, 0));
    let v = evaluate_once(
        r#"
[[rule]]
name = "drop"
layer = "url"
service = "shop"
window = "5m"
when = "count < 50% * count offset 1d"
"#,
        &data,
        T0 + 4 * MIN + 30 * SEC,
    )
    .await;
    assert_eq!(ids(&v.firing), set(&["drop|shop/drop"]));
    let a = find(&v.firing, "drop", "shop/drop");
    // 4 × 20 + 10 = 90 against 50% of 450.
    assert_eq!((a.value.as_str(), a.threshold.as_str()), ("90", "225"));
}

#[tokio::test]
async fn baseline_as_a_difference_with_last_week() {
    let v = evaluate_once(
        r#"
[[rule]]
name = "slower"
layer = "url"
service = "shop"
window = "5m"
when = "p99 - p99 offset 1w > 100ms"
"#,
        &[
            latencies(T0, "shop", "slower", &[(100, 400.0)], 0),
            latencies(T0 - WEEK, "shop", "slower", &[(100, 100.0)], 0),
            latencies(T0, "shop", "same", &[(100, 150.0)], 0),
            latencies(T0 - WEEK, "shop", "same", &[(100, 100.0)], 0),
        ],
        T0 + 30 * SEC,
    )
    .await;
    assert_eq!(ids(&v.firing), set(&["slower|shop/slower"]));
    let a = find(&v.firing, "slower", "shop/slower");
    assert_eq!(
        (a.value.as_str(), a.threshold.as_str()),
        ("300 ms", "100 ms")
    );
}

#[tokio::test]
async fn absent_fires_for_a_host_that_stopped_reporting_and_resolves_when_it_is_back() {
    let env = Env::new(
        r#"
[[rule]]
name = "silent"
layer = "infra"
series = "heartbeat"
group_by = "host"
window = "2m"
when = "absent"
"#,
    );
    let mut data = Vec::new();
    for m in 11..=30 {
        data.push(gauge(T0 - m * MIN, "h1", "heartbeat", &[1.0]));
        data.push(gauge(T0 - m * MIN, "h2", "heartbeat", &[1.0]));
    }
    // h1 keeps reporting; h2 went silent 11 minutes ago; h3 was
    // decommissioned long before the lookback (1 h) and is forgotten.
    data.push(gauge(T0 - MIN, "h1", "heartbeat", &[1.0]));
    data.push(gauge(T0, "h1", "heartbeat", &[1.0]));
    data.push(gauge(T0 - 3 * 3_600_000, "h3", "heartbeat", &[1.0]));
    env.write(&data).await;
    let engine = env.open().await;
    let now = T0 + 30 * SEC;
    engine.tick(now).await;
    let v = engine.view(now).await;
    assert_eq!(ids(&v.firing), set(&["silent|h2"]));
    let a = find(&v.firing, "silent", "h2");
    assert_eq!(
        (a.value.as_str(), a.threshold.as_str()),
        ("no data", "silent for 2 min")
    );

    // h2 is back (and h1 still reports): resolved.
    env.write(&[
        gauge(T0 + 2 * MIN, "h1", "heartbeat", &[1.0]),
        gauge(T0 + 2 * MIN, "h2", "heartbeat", &[1.0]),
    ])
    .await;
    let now = T0 + 2 * MIN + 30 * SEC;
    engine.tick(now).await;
    let v = engine.view(now).await;
    assert!(v.firing.is_empty(), "{:?}", ids(&v.firing));
    assert_eq!(ids(&v.resolved), set(&["silent|h2"]));
}

#[tokio::test]
async fn and_needs_both_or_needs_either() {
    let v = evaluate_once(
        r#"
[[rule]]
name = "and"
layer = "url"
service = "a"
window = "1m"
when = "error_ratio > 5% and count >= 100"

[[rule]]
name = "or"
layer = "url"
service = "o"
window = "1m"
when = "p99 > 1s or error_ratio > 50%"
"#,
        &[
            requests(T0, "a", "both", 200, 20),
            requests(T0, "a", "few", 50, 10),
            requests(T0, "a", "clean", 200, 2),
            latencies(T0, "o", "slow", &[(100, 2000.0)], 0),
            latencies(T0, "o", "failing", &[(100, 10.0)], 60),
            latencies(T0, "o", "fine", &[(100, 10.0)], 1),
        ],
        T0 + 30 * SEC,
    )
    .await;
    assert_eq!(
        ids(&v.firing),
        set(&["and|a/both", "or|o/failing", "or|o/slow"])
    );
}

#[tokio::test]
async fn min_count_guard_one_error_in_two_requests_pages_nobody() {
    let v = evaluate_once(
        r#"
[[rule]]
name = "guarded"
layer = "url"
service = "shop"
window = "1m"
when = "error_ratio > 5%"
min_count = 100
"#,
        &[
            requests(T0, "shop", "tiny", 2, 1),
            requests(T0, "shop", "big", 500, 50),
        ],
        T0 + 30 * SEC,
    )
    .await;
    assert_eq!(ids(&v.firing), set(&["guarded|shop/big"]));
    assert!(v.pending.is_empty(), "{:?}", ids(&v.pending));
    let a = find(&v.firing, "guarded", "shop/big");
    assert_eq!(a.value, "10%");
}

#[tokio::test]
async fn data_only_in_the_open_minute_fires() {
    // 15 s into minute T0, nothing before it: the open minute alone counts.
    let v = evaluate_once(
        r#"
[[rule]]
name = "fresh"
layer = "url"
service = "shop"
window = "5m"
when = "errors > 5"
"#,
        &[requests(T0, "shop", "pay", 20, 8)],
        T0 + 15 * SEC,
    )
    .await;
    assert_eq!(ids(&v.firing), set(&["fresh|shop/pay"]));
    assert_eq!(find(&v.firing, "fresh", "shop/pay").value, "8");
}

// -------------------------------------------------------------- lifecycle

const RATIO_RULE: &str = r#"
layer = "url"
service = "shop"
window = "1m"
"#;

#[tokio::test]
async fn for_keeps_an_alert_pending_then_fires_once() {
    let env = Env::new(&format!(
        "[[rule]]\nname = \"slow-burn\"\nwhen = \"error_ratio > 5%\"\nfor = \"2m\"\n{RATIO_RULE}"
    ));
    let engine = env.open().await;
    let g = "shop/pay";
    // A blip shorter than `for` never fires and is forgotten.
    env.write(&[
        requests(T0, "shop", "pay", 100, 20),
        requests(T0, "shop", "blip", 100, 20),
        requests(T0 + MIN, "shop", "pay", 100, 20),
        requests(T0 + MIN, "shop", "blip", 100, 0),
        requests(T0 + 2 * MIN, "shop", "pay", 100, 20),
        requests(T0 + 2 * MIN, "shop", "blip", 100, 0),
    ])
    .await;
    engine.tick(T0 + 10 * SEC).await;
    let v = engine.view(T0 + 10 * SEC).await;
    assert_eq!(
        ids(&v.pending),
        set(&["slow-burn|shop/pay", "slow-burn|shop/blip"])
    );
    assert!(v.firing.is_empty());

    engine.tick(T0 + MIN + 10 * SEC).await;
    let v = engine.view(T0 + MIN + 10 * SEC).await;
    assert_eq!(ids(&v.pending), set(&["slow-burn|shop/pay"]));
    assert!(v.firing.is_empty());
    assert_eq!(
        state(&engine, T0 + MIN + 10 * SEC, "slow-burn", "shop/blip").await,
        None
    );

    let now = T0 + 2 * MIN + 10 * SEC;
    engine.tick(now).await;
    let v = engine.view(now).await;
    assert_eq!(ids(&v.firing), set(&["slow-burn|shop/pay"]));
    let a = find(&v.firing, "slow-burn", g);
    assert_eq!(a.since_ms, T0 + 10 * SEC);
    assert_eq!(a.fired_ms, Some(now));
    engine.tick(now + 20 * SEC).await;
    let fired = history(&engine, "fired").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].group, g);
}

#[tokio::test]
async fn no_data_while_firing_is_its_own_state_and_not_a_recovery() {
    let env = Env::new(&format!(
        "[[rule]]\nname = \"nd\"\nwhen = \"error_ratio > 5%\"\n{RATIO_RULE}"
    ));
    let engine = env.open().await;
    env.write(&[requests(T0, "shop", "pay", 100, 20)]).await;
    engine.tick(T0 + 10 * SEC).await;
    assert_eq!(
        state(&engine, T0 + 10 * SEC, "nd", "shop/pay").await,
        Some(State::Firing)
    );

    // The data stops: a gap shorter than no_data_for (1 min) is no news...
    engine.tick(T0 + MIN + 10 * SEC).await;
    assert_eq!(
        state(&engine, T0 + MIN + 10 * SEC, "nd", "shop/pay").await,
        Some(State::Firing)
    );
    // ...then no data, for as long as it stays away.
    for now in [T0 + 2 * MIN + 10 * SEC, T0 + 5 * MIN + 10 * SEC] {
        engine.tick(now).await;
        let v = engine.view(now).await;
        assert_eq!(ids(&v.no_data), set(&["nd|shop/pay"]), "at {now}");
        assert!(v.firing.is_empty() && v.resolved.is_empty(), "at {now}");
    }
    assert_eq!(history(&engine, "no_data").await.len(), 1);
    assert!(history(&engine, "resolved").await.is_empty());

    // It comes back still breaching: firing again, without a second "fired".
    env.write(&[requests(T0 + 6 * MIN, "shop", "pay", 100, 20)])
        .await;
    engine.tick(T0 + 6 * MIN + 10 * SEC).await;
    assert_eq!(
        state(&engine, T0 + 6 * MIN + 10 * SEC, "nd", "shop/pay").await,
        Some(State::Firing)
    );
    assert_eq!(history(&engine, "fired").await.len(), 1);

    // Only good data resolves it.
    env.write(&[requests(T0 + 7 * MIN, "shop", "pay", 100, 0)])
        .await;
    engine.tick(T0 + 7 * MIN + 10 * SEC).await;
    assert_eq!(
        state(&engine, T0 + 7 * MIN + 10 * SEC, "nd", "shop/pay").await,
        Some(State::Resolved)
    );
    assert_eq!(history(&engine, "resolved").await.len(), 1);
}

#[tokio::test]
async fn explicit_recover_condition_must_hold_for_recover_for() {
    let env = Env::new(&format!(
        "[[rule]]\nname = \"hyst\"\nwhen = \"error_ratio > 10%\"\nrecover = \"error_ratio < 2%\"\nrecover_for = \"3m\"\n{RATIO_RULE}\n\
         [[rule]]\nname = \"plain\"\nwhen = \"error_ratio > 10%\"\n{RATIO_RULE}"
    ));
    let engine = env.open().await;
    // (minute, errors in 100) and the expected state of `hyst` after it.
    let steps = [
        (0, 20, State::Firing),
        (1, 5, State::Firing), // between the thresholds: stays firing
        (2, 1, State::Firing), // recovering since minute 2
        (3, 1, State::Firing),
        (4, 5, State::Firing), // between again: the hold starts over
        (5, 1, State::Firing), // recovering since minute 5
        (7, 1, State::Firing), // 2 of 3 minutes
        (8, 1, State::Resolved),
    ];
    for (m, errors, want) in steps {
        let t = T0 + m * MIN;
        env.write(&[requests(t, "shop", "pay", 100, errors)]).await;
        engine.tick(t + 10 * SEC).await;
        assert_eq!(
            state(&engine, t + 10 * SEC, "hyst", "shop/pay").await,
            Some(want),
            "minute {m}"
        );
        if m == 1 {
            // Without an explicit recovery, 5% is a recovery.
            assert_eq!(
                state(&engine, t + 10 * SEC, "plain", "shop/pay").await,
                Some(State::Resolved)
            );
        }
    }
    let resolved = history(&engine, "resolved").await;
    let hyst: Vec<_> = resolved.iter().filter(|r| r.rule == "hyst").collect();
    assert_eq!(hyst.len(), 1);
    assert_eq!(hyst[0].at_ms, T0 + 8 * MIN + 10 * SEC);
}

#[tokio::test]
async fn keep_firing_for_holds_the_alert_after_the_breach_ends() {
    let env = Env::new(&format!(
        "[[rule]]\nname = \"sticky\"\nwhen = \"error_ratio > 5%\"\nkeep_firing_for = \"5m\"\n{RATIO_RULE}"
    ));
    let engine = env.open().await;
    let steps = [
        (0, 20, State::Firing),
        (1, 0, State::Firing),  // ok since minute 1
        (4, 0, State::Firing),  // 3 of 5 minutes
        (5, 20, State::Firing), // breach again: starts over
        (6, 0, State::Firing),  // ok since minute 6
        (10, 0, State::Firing), // 4 of 5 minutes
        (11, 0, State::Resolved),
    ];
    for (m, errors, want) in steps {
        let t = T0 + m * MIN;
        env.write(&[requests(t, "shop", "pay", 100, errors)]).await;
        engine.tick(t + 10 * SEC).await;
        assert_eq!(
            state(&engine, t + 10 * SEC, "sticky", "shop/pay").await,
            Some(want),
            "minute {m}"
        );
    }
    assert_eq!(history(&engine, "fired").await.len(), 1);
    assert_eq!(history(&engine, "resolved").await.len(), 1);
}

// ------------------------------------------------------------------- mail

fn storm_rules(server: &SmtpServer) -> String {
    format!(
        r#"
[[rule]]
name = "storm"
layer = "url"
service = "shop"
window = "1m"
when = "error_ratio > 5%"
severity = "critical"
{}"#,
        mail_receiver(server, "oncall@example.com", "30s", "1h")
    )
}

#[tokio::test]
async fn a_storm_over_30_series_is_one_mail_then_one_resolved_mail() {
    let server = SmtpServer::start();
    let env = Env::new(&storm_rules(&server));
    let engine = env.open().await;
    let names: Vec<String> = (0..30).map(|i| format!("GET /api/s{i:02}")).collect();
    let bad: Vec<Rollup> = names
        .iter()
        .map(|n| requests(T0, "shop", n, 100, 20))
        .collect();
    env.write(&bad).await;

    for now in [T0 + 5 * SEC, T0 + 15 * SEC, T0 + 25 * SEC] {
        engine.tick(now).await;
        engine.deliver(now).await;
    }
    assert_eq!(engine.view(T0 + 25 * SEC).await.firing.len(), 30);
    assert!(
        engine.notifications().await.is_empty(),
        "nothing before group_wait"
    );
    let now = T0 + 35 * SEC;
    engine.tick(now).await;
    engine.deliver(now).await;
    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject(), "[FIRING 30] critical storm: 30 series");
    let text = mails[0].text();
    assert_eq!(
        series_named(&text),
        names.iter().cloned().collect::<BTreeSet<_>>(),
        "{text}"
    );
    let values = text
        .lines()
        .filter(|l| l.trim() == "value:           20%")
        .count();
    assert_eq!(values, 30, "{text}");
    let html = support::unescape_html(&mails[0].html());
    for n in &names {
        assert!(html.contains(n.as_str()), "html lacks {n}");
    }

    // All recover together: one resolved mail naming them all.
    let good: Vec<Rollup> = names
        .iter()
        .map(|n| requests(T0 + MIN, "shop", n, 100, 0))
        .collect();
    env.write(&good).await;
    for now in [T0 + MIN + 5 * SEC, T0 + MIN + 35 * SEC] {
        engine.tick(now).await;
        engine.deliver(now).await;
    }
    let mails = server.wait_for_messages(2, WAIT).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1].subject(),
        "[RESOLVED 30] critical storm: 30 series"
    );
    assert_eq!(
        series_named(&mails[1].text()),
        names.iter().cloned().collect::<BTreeSet<_>>()
    );
    let notes = engine.notifications().await;
    assert_eq!(notes.len(), 2);
    assert!(
        notes
            .iter()
            .all(|n| matches!(n.status, Status::Delivered { .. }) && n.attempts == 1)
    );
    assert_eq!(server.messages().len(), 2);
}

fn silence_rules(server: &SmtpServer) -> String {
    format!(
        r#"
[[rule]]
name = "errors"
layer = "url"
service = "re:^(login|cart)$"
window = "1m"
when = "error_ratio > 5%"
severity = "critical"
{}"#,
        mail_receiver(server, "oncall@example.com", "0s", "1h")
    )
}

fn login_silence(minutes: &str) -> SilenceRequest {
    SilenceRequest {
        matchers: vec![Matcher {
            label: "service".into(),
            op: MatchOp::Eq,
            value: "login".into(),
        }],
        starts_ms: None,
        ends_ms: None,
        duration: Some(minutes.into()),
        author: "ana".into(),
        reason: "deploying login".into(),
    }
}

#[tokio::test]
async fn a_silence_on_service_login_holds_its_mail_and_a_later_firing_is_mailed() {
    let server = SmtpServer::start();
    let env = Env::new(&silence_rules(&server));
    let engine = env.open().await;
    let id = engine
        .add_silence(login_silence("10m"), T0)
        .await
        .expect("silence");

    env.write(&[
        requests(T0, "login", "/login", 100, 20),
        requests(T0, "cart", "/cart", 100, 20),
    ])
    .await;
    let now = T0 + 5 * SEC;
    engine.tick(now).await;
    engine.deliver(now).await;
    let v = engine.view(now).await;
    assert_eq!(
        ids(&v.firing),
        set(&["errors|login//login", "errors|cart//cart"])
    );
    assert_eq!(
        find(&v.firing, "errors", "login//login").silenced_by,
        Some(id.clone())
    );
    assert_eq!(find(&v.firing, "errors", "cart//cart").silenced_by, None);
    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(
        mails[0].subject(),
        "[FIRING 1] critical errors: url cart /cart 20% vs 5% (firing)"
    );
    assert!(!mails[0].text().contains("login"), "{}", mails[0].text());
    let silenced = history(&engine, "silenced").await;
    assert_eq!(silenced.len(), 1);
    assert_eq!(silenced[0].group, "login//login");
    assert!(silenced[0].detail.contains("ana"), "{:?}", silenced[0]);

    // login recovers under the silence (nothing to say: it was never
    // notified); cart keeps failing (already notified).
    env.write(&[
        requests(T0 + MIN, "login", "/login", 100, 0),
        requests(T0 + MIN, "cart", "/cart", 100, 20),
    ])
    .await;
    let now = T0 + MIN + 5 * SEC;
    engine.tick(now).await;
    engine.deliver(now).await;
    assert_eq!(engine.notifications().await.len(), 1);

    // After the silence ran out, login fails again: that is mailed.
    env.write(&[
        requests(T0 + 11 * MIN, "login", "/login", 100, 20),
        requests(T0 + 11 * MIN, "cart", "/cart", 100, 20),
    ])
    .await;
    let now = T0 + 11 * MIN + 5 * SEC;
    engine.tick(now).await;
    engine.deliver(now).await;
    let mails = server.wait_for_messages(2, WAIT).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1].subject(),
        "[FIRING 1] critical errors: url login /login 20% vs 5% (firing)"
    );
    let v = engine.view(now).await;
    assert!(!v.silences[0].active(now));
    assert_eq!(find(&v.firing, "errors", "login//login").silenced_by, None);
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test]
async fn an_alert_still_firing_when_its_silence_ends_is_mailed_then() {
    let server = SmtpServer::start();
    let env = Env::new(&silence_rules(&server));
    let engine = env.open().await;
    engine
        .add_silence(login_silence("5m"), T0)
        .await
        .expect("silence");
    for m in 0..=7 {
        env.write(&[requests(T0 + m * MIN, "login", "/login", 100, 20)])
            .await;
        let now = T0 + m * MIN + 5 * SEC;
        engine.tick(now).await;
        engine.deliver(now).await;
        if m < 5 {
            assert!(
                engine.notifications().await.is_empty(),
                "silenced at minute {m}"
            );
        }
    }
    // The silence ended at minute 5 and login has been failing throughout:
    // on-duty staff must hear of it now, not never.
    let notes = engine.notifications().await;
    assert_eq!(
        notes.len(),
        1,
        "an alert firing when its silence ended was never notified: {notes:?}"
    );
    let mails = server.wait_for_messages(1, WAIT).await;
    assert!(mails[0].subject().contains("login /login"));
}

#[tokio::test]
async fn silences_without_author_or_with_a_bad_regex_are_refused() {
    let env = Env::new(&format!(
        "[[rule]]\nname = \"x\"\nwhen = \"count > 1\"\n{RATIO_RULE}"
    ));
    let engine = env.open().await;
    let mut bad_regex = login_silence("1h");
    bad_regex.matchers[0].op = MatchOp::Regex;
    bad_regex.matchers[0].value = "log(in".into();
    match engine.add_silence(bad_regex, T0).await {
        Err(SilenceError::BadRegex { label, .. }) => assert_eq!(label, "service"),
        other => panic!("bad regex accepted: {other:?}"),
    }
    let mut anonymous = login_silence("1h");
    anonymous.author = "  ".into();
    assert_eq!(
        engine.add_silence(anonymous, T0).await,
        Err(SilenceError::Missing("author"))
    );
    let mut no_matchers = login_silence("1h");
    no_matchers.matchers.clear();
    assert_eq!(
        engine.add_silence(no_matchers, T0).await,
        Err(SilenceError::NoMatchers)
    );
    assert!(engine.view(T0).await.silences.is_empty());
    assert!(history(&engine, "silence_added").await.is_empty());

    // A good one is listed and can be expired early, once.
    let id = engine.add_silence(login_silence("1h"), T0).await.unwrap();
    assert!(engine.view(T0).await.silences[0].active(T0 + MIN));
    assert!(engine.expire_silence(&id, "bob", T0 + MIN).await);
    assert!(!engine.expire_silence(&id, "bob", T0 + 2 * MIN).await);
    let v = engine.view(T0 + 2 * MIN).await;
    assert_eq!(v.silences[0].expired_by.as_deref(), Some("bob"));
    assert!(!v.silences[0].active(T0 + 2 * MIN));
    assert_eq!(history(&engine, "silence_expired").await.len(), 1);
}

#[tokio::test]
async fn acknowledge_stops_repeats_and_is_in_the_history() {
    let server = SmtpServer::start();
    let env = Env::new(&format!(
        r#"
[[rule]]
name = "ack"
layer = "url"
service = "shop"
window = "1m"
when = "error_ratio > 5%"
severity = "critical"
{}"#,
        mail_receiver(&server, "oncall@example.com", "0s", "1m")
    ));
    let engine = env.open().await;
    let step = |m: i64, errors: u64| {
        let env = &env;
        let engine = &engine;
        async move {
            env.write(&[requests(T0 + m * MIN, "shop", "/pay", 100, errors)])
                .await;
            let now = T0 + m * MIN + 5 * SEC;
            engine.tick(now).await;
            engine.deliver(now).await;
        }
    };
    step(0, 20).await;
    step(1, 20).await;
    let mails = server.wait_for_messages(2, WAIT).await;
    assert_eq!(
        mails[0].subject(),
        "[FIRING 1] critical ack: url shop /pay 20% vs 5% (firing)"
    );
    assert_eq!(
        mails[1].subject(),
        "[REPEAT 1] critical ack: url shop /pay 20% vs 5% (firing)"
    );

    assert!(
        engine
            .acknowledge(
                "ack",
                "shop//pay",
                "ana",
                "rolling back",
                T0 + MIN + 30 * SEC
            )
            .await
    );
    assert!(
        !engine
            .acknowledge("ack", "shop/nothing", "ana", "", T0 + MIN + 30 * SEC)
            .await
    );
    let v = engine.view(T0 + MIN + 30 * SEC).await;
    let ack = find(&v.firing, "ack", "shop//pay")
        .ack
        .clone()
        .expect("ack");
    assert_eq!(
        (ack.by.as_str(), ack.comment.as_str()),
        ("ana", "rolling back")
    );

    for m in 2..=4 {
        step(m, 20).await;
    }
    assert_eq!(
        engine.notifications().await.len(),
        2,
        "no repeat after acknowledgement"
    );
    let acks = history(&engine, "acknowledged").await;
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].group, "shop//pay");
    assert!(acks[0].detail.contains("ana") && acks[0].detail.contains("rolling back"));

    // The resolution is still told.
    step(5, 0).await;
    let mails = server.wait_for_messages(3, WAIT).await;
    assert_eq!(mails.len(), 3);
    assert_eq!(
        mails[2].subject(),
        "[RESOLVED 1] critical ack: url shop /pay 0% vs 5% (resolved)"
    );
}

#[tokio::test]
async fn a_restart_while_firing_sends_no_second_mail_and_still_the_resolved_one() {
    let server = SmtpServer::start();
    let env = Env::new(&format!(
        r#"
[[rule]]
name = "restart"
layer = "url"
service = "shop"
window = "1m"
when = "error_ratio > 5%"
severity = "critical"
{}"#,
        mail_receiver(&server, "oncall@example.com", "0s", "1h")
    ));
    let g = "shop//pay";

    // Fires; the notice is in the outbox when the process dies.
    env.write(&[requests(T0, "shop", "/pay", 100, 20)]).await;
    let engine = env.open().await;
    engine.tick(T0 + 5 * SEC).await;
    assert_eq!(engine.notifications().await.len(), 1);
    drop(engine);

    // Back: the queued notice goes out once, and nothing fires again.
    let engine = env.open().await;
    assert_eq!(
        state(&engine, T0 + 10 * SEC, "restart", g).await,
        Some(State::Firing)
    );
    engine.tick(T0 + 20 * SEC).await;
    engine.deliver(T0 + 20 * SEC).await;
    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(
        mails[0].subject(),
        "[FIRING 1] critical restart: url shop /pay 20% vs 5% (firing)"
    );
    env.write(&[requests(T0 + MIN, "shop", "/pay", 100, 20)])
        .await;
    engine.tick(T0 + MIN + 5 * SEC).await;
    engine.deliver(T0 + MIN + 5 * SEC).await;
    drop(engine);

    // Another restart, still firing: no second "fired".
    let engine = env.open().await;
    env.write(&[requests(T0 + 2 * MIN, "shop", "/pay", 100, 20)])
        .await;
    engine.tick(T0 + 2 * MIN + 5 * SEC).await;
    engine.deliver(T0 + 2 * MIN + 5 * SEC).await;
    assert_eq!(engine.notifications().await.len(), 1);
    assert_eq!(history(&engine, "fired").await.len(), 1);

    // Recovers; the resolved notice is decided, then the process dies
    // before delivering it.
    env.write(&[requests(T0 + 3 * MIN, "shop", "/pay", 100, 0)])
        .await;
    engine.tick(T0 + 3 * MIN + 5 * SEC).await;
    assert_eq!(
        state(&engine, T0 + 3 * MIN + 5 * SEC, "restart", g).await,
        Some(State::Resolved)
    );
    drop(engine);

    let engine = env.open().await;
    engine.tick(T0 + 3 * MIN + 20 * SEC).await;
    engine.deliver(T0 + 3 * MIN + 20 * SEC).await;
    let mails = server.wait_for_messages(2, WAIT).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1].subject(),
        "[RESOLVED 1] critical restart: url shop /pay 0% vs 5% (resolved)"
    );
    engine.tick(T0 + 10 * MIN).await;
    engine.deliver(T0 + 10 * MIN).await;
    assert_eq!(engine.notifications().await.len(), 2);
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test]
async fn smtp_down_then_back_delivers_exactly_once_after_backoff() {
    let mut server = SmtpServer::start();
    let env = Env::new(&format!(
        r#"
[[rule]]
name = "down"
layer = "url"
service = "shop"
window = "1m"
when = "error_ratio > 5%"
severity = "critical"
{}"#,
        mail_receiver(&server, "oncall@example.com", "0s", "1h")
    ));
    let engine = env.open().await;
    env.write(&[requests(T0, "shop", "/pay", 100, 20)]).await;
    server.stop();

    let t = T0 + 5 * SEC;
    engine.tick(t).await;
    engine.deliver(t).await;
    let v = engine.view(t).await;
    assert_eq!(v.notifications.len(), 1);
    let n = &v.notifications[0];
    assert_eq!(n.status, Status::Pending);
    assert_eq!(n.attempts, 1);
    assert!(n.last_error.is_some(), "{n:?}");
    assert_eq!(
        n.title,
        "[FIRING 1] critical down: url shop /pay 20% vs 5% (firing)"
    );

    // Backoff: not before 5 s, then 10 s.
    engine.deliver(t + 4 * SEC).await;
    assert_eq!(engine.notifications().await[0].attempts, 1);
    engine.deliver(t + 5 * SEC).await;
    assert_eq!(engine.notifications().await[0].attempts, 2);
    engine.deliver(t + 14 * SEC).await;
    assert_eq!(engine.notifications().await[0].attempts, 2);

    server.restart();
    engine.deliver(t + 15 * SEC).await;
    let notes = engine.notifications().await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].attempts, 3);
    assert!(
        matches!(notes[0].status, Status::Delivered { .. }),
        "{notes:?}"
    );
    assert!(engine.view(t + 15 * SEC).await.notifications.is_empty());
    for later in [t + 60 * SEC, t + 10 * MIN] {
        engine.deliver(later).await;
    }
    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].subject(),
        "[FIRING 1] critical down: url shop /pay 20% vs 5% (firing)"
    );
    assert_eq!(history(&engine, "retrying").await.len(), 2);
    assert_eq!(history(&engine, "delivered").await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn a_permanent_rejection_gives_up_and_is_in_the_history() {
    let server = SmtpServer::start_with(SmtpOptions {
        reject: vec!["gone@example.com".into()],
        ..SmtpOptions::default()
    });
    let env = Env::new(&format!(
        r#"
[[rule]]
name = "rejected"
layer = "url"
service = "shop"
window = "1m"
when = "error_ratio > 5%"
severity = "critical"
{}"#,
        mail_receiver(&server, "gone@example.com", "0s", "1h")
    ));
    let engine = env.open().await;
    env.write(&[requests(T0, "shop", "/pay", 100, 20)]).await;
    let t = T0 + 5 * SEC;
    engine.tick(t).await;
    engine.deliver(t).await;
    let notes = engine.notifications().await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].attempts, 1);
    assert!(
        matches!(notes[0].status, Status::GaveUp { .. }),
        "{notes:?}"
    );
    assert!(
        notes[0].last_error.as_deref().unwrap_or("").contains("550"),
        "{notes:?}"
    );
    // Listed as given up, and never tried again.
    let v = engine.view(t).await;
    assert_eq!(v.notifications.len(), 1);
    assert!(matches!(v.notifications[0].status, Status::GaveUp { .. }));
    engine.deliver(t + 10 * MIN).await;
    assert_eq!(engine.notifications().await[0].attempts, 1);
    let gave_up = history(&engine, "gave_up").await;
    assert_eq!(gave_up.len(), 1);
    assert_eq!(gave_up[0].rule, "rejected");
    assert!(gave_up[0].detail.contains("550"), "{:?}", gave_up[0]);
    assert!(server.messages().is_empty());
}

// ------------------------------------------------------------- hot reload

#[tokio::test]
async fn a_broken_reload_is_refused_with_its_position_and_the_old_rules_keep_running() {
    let env = Env::new(
        r#"[[rule]]
name = "r1"
layer = "url"
service = "shop"
window = "1m"
when = "count > 10"
"#,
    );
    let engine = env.open().await;

    // r1's threshold changes, and another file has a typo: the whole
    // directory is refused.
    env.write_rules(
        "rules.toml",
        "[[rule]]\nname = \"r1\"\nlayer = \"url\"\nservice = \"shop\"\nwindow = \"1m\"\nwhen = \"count > 1000\"\n",
    );
    env.write_rules(
        "z.toml",
        "[[rule]]\nname = \"r2\"\nlayer = \"url\"\nwhen = \"error_rate > 5%\"\n",
    );
    let errors = engine.reload().await.expect_err("broken rules accepted");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors[0].to_string();
    assert!(
        e.contains("z.toml:4:9:") && e.contains("unknown metric `error_rate`"),
        "{e}"
    );
    let v = engine.view(T0).await;
    assert_eq!(v.rule_errors.len(), 1);
    assert!(
        v.rule_errors[0].at.ends_with("z.toml:4:9"),
        "{:?}",
        v.rule_errors
    );
    assert!(v.rule_errors[0].message.contains("error_rate"));
    assert_eq!(v.rules.len(), 1);
    assert_eq!(v.rules[0].when, "count > 10");
    assert_eq!(history(&engine, "rules_rejected").await.len(), 1);

    // The previous r1 (count > 10) keeps evaluating.
    env.write(&[requests(T0, "shop", "pay", 20, 10)]).await;
    engine.tick(T0 + 10 * SEC).await;
    let v = engine.view(T0 + 10 * SEC).await;
    assert_eq!(ids(&v.firing), set(&["r1|shop/pay"]));

    // A syntax error is placed too.
    env.write_rules("z.toml", "[[rule]\nname = \"r2\"\n");
    let errors = engine.reload().await.expect_err("broken TOML accepted");
    assert!(errors[0].to_string().contains("z.toml:1:"), "{errors:?}");

    // Fixed: both files load, the new r1 threshold applies.
    env.write_rules(
        "z.toml",
        "[[rule]]\nname = \"r2\"\nlayer = \"url\"\nservice = \"shop\"\nwindow = \"1m\"\nwhen = \"error_ratio > 5%\"\n",
    );
    assert_eq!(engine.reload().await, Ok(2));
    let v = engine.view(T0 + 20 * SEC).await;
    assert!(v.rule_errors.is_empty(), "{:?}", v.rule_errors);
    assert_eq!(
        v.rules.iter().map(|r| r.when.as_str()).collect::<Vec<_>>(),
        ["count > 1000", "error_ratio > 5%"]
    );
    engine.tick(T0 + 20 * SEC).await;
    let v = engine.view(T0 + 20 * SEC).await;
    assert_eq!(ids(&v.firing), set(&["r2|shop/pay"]));
    assert_eq!(ids(&v.resolved), set(&["r1|shop/pay"]));
}

#[tokio::test]
async fn a_restart_with_a_broken_rules_directory_forgets_no_firing_alert() {
    let server = SmtpServer::start();
    let rules = format!(
        r#"
[[rule]]
name = "kept"
layer = "url"
service = "shop"
window = "1m"
when = "error_ratio > 5%"
severity = "critical"
{}"#,
        mail_receiver(&server, "oncall@example.com", "0s", "1h")
    );
    let env = Env::new(&rules);
    let engine = env.open().await;
    env.write(&[requests(T0, "shop", "/pay", 100, 20)]).await;
    engine.tick(T0 + 5 * SEC).await;
    engine.deliver(T0 + 5 * SEC).await;
    server.wait_for_messages(1, WAIT).await;
    drop(engine);

    // Someone saves a typo, then the process restarts: no rules load.
    env.write_rules(
        "rules.toml",
        &rules.replace("error_ratio > 5%", "error_ratio >"),
    );
    let engine = env.open_as_is();
    assert_eq!(engine.view(T0).await.rule_errors.len(), 1);
    for m in 1..=2 {
        env.write(&[requests(T0 + m * MIN, "shop", "/pay", 100, 20)])
            .await;
        engine.tick(T0 + m * MIN + 5 * SEC).await;
        engine.deliver(T0 + m * MIN + 5 * SEC).await;
    }

    // The typo is fixed; the alert is still the same incident: no second
    // "fired" mail, and its resolution is still told.
    env.write_rules("rules.toml", &rules);
    assert_eq!(engine.reload().await, Ok(1));
    env.write(&[requests(T0 + 3 * MIN, "shop", "/pay", 100, 20)])
        .await;
    engine.tick(T0 + 3 * MIN + 5 * SEC).await;
    engine.deliver(T0 + 3 * MIN + 5 * SEC).await;
    env.write(&[requests(T0 + 4 * MIN, "shop", "/pay", 100, 0)])
        .await;
    engine.tick(T0 + 4 * MIN + 5 * SEC).await;
    engine.deliver(T0 + 4 * MIN + 5 * SEC).await;
    let mails = server.wait_for_messages(2, WAIT).await;
    let subjects: Vec<String> = mails.iter().map(|m| m.subject()).collect();
    assert_eq!(
        subjects,
        [
            "[FIRING 1] critical kept: url shop /pay 20% vs 5% (firing)",
            "[RESOLVED 1] critical kept: url shop /pay 0% vs 5% (resolved)",
        ],
        "the alert was forgotten while the rules did not load"
    );
    assert_eq!(history(&engine, "fired").await.len(), 1);
}
