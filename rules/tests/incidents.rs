//! Incidents through the engine, with mail received by a real SMTP server:
//! the demo's shape (a failing gateway call and the url and business alerts
//! it causes) is one page naming the call; a host outage names the host;
//! two unrelated faults are two incidents, and so is a second dependency
//! of one service failing during the first fault; a cause found a minute after its
//! effect is named again; a restart mid-incident pages nobody twice; a
//! silence on the cause quiets its effects; `[[depends]]` links what the
//! data does not.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use panorama_model::{Event, Layer, Outcome, Rollup, SeriesKey};
use panorama_rules::engine::{Engine, SilenceRequest};
use panorama_rules::silence::{MatchOp, Matcher};
use support::{Env, Received, SmtpServer};

/// 2026-11-22 13:00:00 UTC, a minute boundary.
const T0: i64 = 1_795_352_400_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60_000;
const WAIT: Duration = Duration::from_secs(15);

/// `n` events of one series in one minute, the first `errors` failed.
#[allow(clippy::too_many_arguments)]
fn events(
    minute: i64,
    layer: Layer,
    service: &str,
    host: &str,
    name: &str,
    n: u64,
    errors: u64,
) -> Rollup {
    let k = SeriesKey {
        layer,
        service: service.into(),
        host: host.into(),
        name: name.into(),
        dims: BTreeMap::new(),
    };
    let mut r = Rollup::empty(minute, k, "c1");
    for i in 0..n {
        let mut e = Event::new(minute + i as i64 * 100, layer, service, host, name);
        if i < errors {
            e.outcome = Outcome::Error(Some("502".into()));
        }
        e.latency_ms = Some(20.0);
        r.add(&e);
    }
    r
}

/// CPU readings of a host.
fn cpu(minute: i64, host: &str, value: f64) -> Rollup {
    let k = SeriesKey {
        layer: Layer::Infra,
        service: "node".into(),
        host: host.into(),
        name: "cpu.busy".into(),
        dims: BTreeMap::new(),
    };
    let mut r = Rollup::empty(minute, k, "c1");
    for i in 0..6 {
        let mut e = Event::new(
            minute + i * 10 * SEC,
            Layer::Infra,
            "node",
            host,
            "cpu.busy",
        );
        e.value = Some(value);
        r.add(&e);
    }
    r
}

async fn step(e: &Engine, now: i64) {
    e.tick(now).await;
    e.deliver(now).await;
}

fn receiver(server: &SmtpServer, group_wait: &str) -> String {
    format!(
        r#"
[[receiver]]
name = "oncall"
[receiver.mail]
host = "{host}"
port = {port}
security = "plain"
from = "Panorama <alerts@panorama.test>"
to = ["oncall@panorama.test"]
timeout_secs = 5

[[route]]
receivers = ["oncall"]
group_wait = "{group_wait}"
group_interval = "30s"
repeat_interval = "4h"
"#,
        host = server.host(),
        port = server.port(),
    )
}

/// The demo's rules: the gateway call, the pay route, the payment event.
fn demo_rules(server: &SmtpServer, group_wait: &str) -> String {
    format!(
        r#"
[[rule]]
name = "gateway-errors"
layer = "call"
series = "payment-gateway"
window = "1m"
every = "10s"
when = "error_ratio > 10%"
severity = "critical"

[[rule]]
name = "pay-route-errors"
layer = "url"
series = "POST /api/pay"
window = "1m"
every = "10s"
when = "error_ratio > 5%"
severity = "critical"

[[rule]]
name = "payments-failing"
layer = "business"
series = "payment"
window = "1m"
every = "10s"
when = "error_ratio > 10%"
severity = "warning"
{}"#,
        receiver(server, group_wait)
    )
}

/// One minute of the demo's service: the gateway failing `errors` in 100.
fn demo_minute(minute: i64, errors: u64) -> Vec<Rollup> {
    vec![
        events(
            minute,
            Layer::Call,
            "game",
            "app1",
            "payment-gateway",
            100,
            errors,
        ),
        events(
            minute,
            Layer::Url,
            "game",
            "app1",
            "POST /api/pay",
            100,
            errors,
        ),
        events(
            minute,
            Layer::Business,
            "game",
            "app1",
            "payment",
            100,
            errors,
        ),
        events(
            minute,
            Layer::Url,
            "game",
            "app1",
            "POST /api/login",
            300,
            0,
        ),
    ]
}

fn subjects(m: &[Received]) -> Vec<String> {
    m.iter().map(Received::subject).collect()
}

/// Waits for `n` mails, then a little longer to see that no more come.
async fn exactly(server: &SmtpServer, n: usize) -> Vec<Received> {
    server.wait_for_messages(n, WAIT).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = server.messages();
    assert_eq!(got.len(), n, "{:?}", subjects(&got));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shape_is_one_page_naming_the_gateway_then_one_resolved_page() {
    let smtp = SmtpServer::start();
    let env = Env::new(&demo_rules(&smtp, "20s"));
    let e = env.open().await;
    for m in 0..3 {
        env.write(&demo_minute(T0 + m * MIN, 40)).await;
    }
    step(&e, T0 + 10 * SEC).await;
    assert_eq!(e.view(T0 + 10 * SEC).await.firing.len(), 3);
    step(&e, T0 + 35 * SEC).await;
    let got = exactly(&smtp, 1).await;
    let subject = got[0].subject();
    assert_eq!(
        subject,
        "[FIRING 3] critical incident 1: probable cause: call game payment-gateway 40% \
         (gateway-errors); 2 effects: POST /api/pay 40%, payment 40%"
    );
    let text = got[0].text();
    assert!(
        text.contains("http://127.0.0.1:7070/incidents/1"),
        "one link, to the incident:\n{text}"
    );
    assert_eq!(
        text.matches("http://127.0.0.1:7070/").count(),
        1,
        "exactly one dashboard link:\n{text}"
    );
    let list = e.incidents().await;
    assert_eq!(list.len(), 1);
    let cause = list[0].cause().expect("a cause");
    assert_eq!(
        (cause.rule.as_str(), cause.layer.as_str()),
        ("gateway-errors", "call")
    );

    // Still failing a minute on: nothing new to say.
    step(&e, T0 + MIN + 10 * SEC).await;
    step(&e, T0 + MIN + 45 * SEC).await;
    exactly(&smtp, 1).await;

    // The gateway recovers; the call alert resolves first, the others a
    // tick later: one resolved page for the whole incident.
    env.write(&demo_minute(T0 + 3 * MIN, 0)).await;
    env.write(&demo_minute(T0 + 4 * MIN, 0)).await;
    step(&e, T0 + 4 * MIN + 5 * SEC).await;
    step(&e, T0 + 4 * MIN + 40 * SEC).await;
    let got = exactly(&smtp, 2).await;
    assert!(
        got[1].subject().starts_with(
            "[RESOLVED 3] critical incident 1: probable cause: call game payment-gateway"
        ),
        "{}",
        got[1].subject()
    );
    assert!(e.incidents().await[0].resolved_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_outage_is_the_cause_of_everything_on_the_host() {
    let smtp = SmtpServer::start();
    let rules = format!(
        r#"
[[rule]]
name = "cpu-saturated"
layer = "infra"
series = "cpu.busy"
group_by = "host"
window = "1m"
every = "10s"
when = "value > 95"
severity = "critical"

[[rule]]
name = "shop-errors"
layer = "url"
service = "shop"
window = "1m"
every = "10s"
when = "error_ratio > 20%"
severity = "critical"
{}"#,
        receiver(&smtp, "20s")
    );
    let env = Env::new(&rules);
    let e = env.open().await;
    // The url alerts fire first: the host's readings arrive late.
    env.write(&[
        events(T0, Layer::Url, "shop", "web1", "GET /cart", 100, 60),
        events(T0, Layer::Url, "shop", "web1", "POST /order", 100, 60),
    ])
    .await;
    step(&e, T0 + 5 * SEC).await;
    env.write(&[cpu(T0, "web1", 99.5), cpu(T0, "web2", 20.0)])
        .await;
    step(&e, T0 + 15 * SEC).await;
    step(&e, T0 + 30 * SEC).await;
    step(&e, T0 + 40 * SEC).await;
    let got = exactly(&smtp, 1).await;
    let subject = got[0].subject();
    assert!(
        subject.starts_with("[FIRING 3] critical incident 1: probable cause: infra web1 99.5 (cpu-saturated); 2 effects: "),
        "{subject}"
    );
    assert!(
        subject.contains("GET /cart") && subject.contains("POST /order"),
        "{subject}"
    );
}

/// Two faults of the same shape, in services that do not depend on each
/// other (but share a host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unrelated_faults_at_once_are_two_incidents() {
    let smtp = SmtpServer::start();
    let rules = format!(
        r#"
[[rule]]
name = "call-errors"
layer = "call"
window = "1m"
every = "10s"
when = "error_ratio > 10%"
severity = "critical"

[[rule]]
name = "route-errors"
layer = "url"
window = "1m"
every = "10s"
when = "error_ratio > 10%"
severity = "critical"
{}"#,
        receiver(&smtp, "20s")
    );
    let env = Env::new(&rules);
    let e = env.open().await;
    env.write(&[
        events(T0, Layer::Call, "shop", "web1", "stock", 100, 50),
        events(T0, Layer::Url, "shop", "web1", "GET /cart", 100, 50),
        events(T0, Layer::Call, "bank", "web1", "ledger", 100, 50),
        events(T0, Layer::Url, "bank", "web1", "POST /transfer", 100, 50),
    ])
    .await;
    step(&e, T0 + 10 * SEC).await;
    step(&e, T0 + 35 * SEC).await;
    let got = exactly(&smtp, 2).await;
    let mut s = subjects(&got);
    s.sort();
    assert!(
        s.iter()
            .any(|x| x.contains("probable cause: call shop stock 50%")
                && x.contains("1 effect: GET /cart 50%")),
        "{s:?}"
    );
    assert!(
        s.iter()
            .any(|x| x.contains("probable cause: call bank ledger 50%")
                && x.contains("1 effect: POST /transfer 50%")),
        "{s:?}"
    );
    assert_eq!(e.incidents().await.len(), 2);
}

/// The demo's gateway fault, and a minute on, while it lasts, the sessions
/// Redis of the same service stops answering and its login route fails:
/// the service depends on both, but the gateway's calls do not depend on
/// Redis, so Redis is a second incident with the login route as its effect
/// (and two routes of one service are never each other's cause).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dependency_failing_during_an_incident_is_paged_as_its_own() {
    let smtp = SmtpServer::start();
    let rules = format!(
        r#"{}
[[rule]]
name = "sessions-down"
layer = "component"
series = "redis@sessions ping"
window = "1m"
every = "10s"
when = "errors >= 5"
severity = "critical"

[[rule]]
name = "login-errors"
layer = "url"
series = "POST /api/login"
window = "1m"
every = "10s"
when = "error_ratio > 10%"
severity = "critical"
"#,
        demo_rules(&smtp, "10s")
    );
    let env = Env::new(&rules);
    let e = env.open().await;
    let gateway = |m: i64| -> Vec<Rollup> {
        demo_minute(m, 40)
            .into_iter()
            .filter(|r| r.key.name != "POST /api/login")
            .collect()
    };
    env.write(&gateway(T0)).await;
    env.write(&[events(
        T0,
        Layer::Url,
        "game",
        "app1",
        "POST /api/login",
        300,
        0,
    )])
    .await;
    step(&e, T0 + 5 * SEC).await;
    step(&e, T0 + 20 * SEC).await;
    let got = exactly(&smtp, 1).await;
    assert!(
        got[0]
            .subject()
            .contains("incident 1: probable cause: call game payment-gateway"),
        "{}",
        got[0].subject()
    );
    let mut minute = gateway(T0 + MIN);
    minute.push(events(
        T0 + MIN,
        Layer::Component,
        "game",
        "app1",
        "redis@sessions ping",
        20,
        20,
    ));
    minute.push(events(
        T0 + MIN,
        Layer::Url,
        "game",
        "app1",
        "POST /api/login",
        300,
        90,
    ));
    env.write(&minute).await;
    step(&e, T0 + MIN + 5 * SEC).await;
    step(&e, T0 + MIN + 20 * SEC).await;
    let got = exactly(&smtp, 2).await;
    assert_eq!(
        got[1].subject(),
        "[FIRING 2] critical incident 2: probable cause: component game redis@sessions ping 20 \
         (sessions-down); 1 effect: POST /api/login 30%"
    );
    let list = e.incidents().await;
    assert_eq!(list.len(), 2, "{list:?}");
    let first = list.iter().find(|i| i.id == 1).expect("incident 1");
    assert_eq!(
        first.members.len(),
        3,
        "the gateway's incident is as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cause_found_a_minute_after_its_effect_is_named_plainly() {
    let smtp = SmtpServer::start();
    let env = Env::new(&demo_rules(&smtp, "10s"));
    let e = env.open().await;
    // The pay route fails first; the gateway's calls only show it a minute on.
    env.write(&[
        events(T0, Layer::Url, "game", "app1", "POST /api/pay", 100, 40),
        events(T0, Layer::Call, "game", "app1", "payment-gateway", 100, 0),
    ])
    .await;
    step(&e, T0 + 5 * SEC).await;
    step(&e, T0 + 20 * SEC).await;
    let got = exactly(&smtp, 1).await;
    assert!(
        got[0].subject().contains("pay-route-errors"),
        "told alone first: {}",
        got[0].subject()
    );
    env.write(&[
        events(
            T0 + MIN,
            Layer::Url,
            "game",
            "app1",
            "POST /api/pay",
            100,
            40,
        ),
        events(
            T0 + MIN,
            Layer::Call,
            "game",
            "app1",
            "payment-gateway",
            100,
            90,
        ),
    ])
    .await;
    step(&e, T0 + MIN + 5 * SEC).await;
    step(&e, T0 + MIN + 20 * SEC).await;
    let got = exactly(&smtp, 2).await;
    assert!(
        got[1]
            .subject()
            .contains("incident 1: cause now: call game payment-gateway"),
        "{}",
        got[1].subject()
    );
    assert!(got[1].subject().contains("1 effect: POST /api/pay 40%"));
    let changes = e.history(None, "cause now", 5).await.unwrap();
    assert_eq!(
        changes
            .iter()
            .filter(|r| r.event == "incident_cause")
            .count(),
        1,
        "the change is in the history: {changes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_incident_pages_nobody_twice_and_still_resolves_once() {
    let smtp = SmtpServer::start();
    let env = Env::new(&demo_rules(&smtp, "20s"));
    for m in 0..3 {
        env.write(&demo_minute(T0 + m * MIN, 40)).await;
    }
    {
        let e = env.open().await;
        step(&e, T0 + 10 * SEC).await;
        step(&e, T0 + 35 * SEC).await;
        exactly(&smtp, 1).await;
    }
    let e = env.open().await;
    assert_eq!(e.incidents().await.len(), 1, "the incident survived");
    step(&e, T0 + MIN + 10 * SEC).await;
    step(&e, T0 + 2 * MIN + 10 * SEC).await;
    exactly(&smtp, 1).await;
    env.write(&demo_minute(T0 + 3 * MIN, 0)).await;
    env.write(&demo_minute(T0 + 4 * MIN, 0)).await;
    step(&e, T0 + 4 * MIN + 5 * SEC).await;
    // Restart between the resolution and its notice.
    drop(e);
    let e = env.open().await;
    step(&e, T0 + 4 * MIN + 40 * SEC).await;
    let got = exactly(&smtp, 2).await;
    assert!(
        got[1]
            .subject()
            .starts_with("[RESOLVED 3] critical incident 1:"),
        "{}",
        got[1].subject()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silencing_the_cause_quiets_its_effects_until_the_silence_ends() {
    let smtp = SmtpServer::start();
    let env = Env::new(&demo_rules(&smtp, "10s"));
    let e = env.open().await;
    let id = e
        .add_silence(
            SilenceRequest {
                matchers: vec![Matcher {
                    label: "rule".into(),
                    op: MatchOp::Eq,
                    value: "gateway-errors".into(),
                }],
                starts_ms: Some(T0),
                ends_ms: Some(T0 + 2 * MIN),
                duration: None,
                author: "ana".into(),
                reason: "gateway maintenance".into(),
            },
            T0,
        )
        .await
        .expect("silence");
    for m in 0..4 {
        env.write(&demo_minute(T0 + m * MIN, 40)).await;
    }
    // The cause fires first, then its effects: all held.
    env.write(&[events(
        T0,
        Layer::Call,
        "game",
        "app1",
        "payment-gateway",
        100,
        40,
    )])
    .await;
    step(&e, T0 + 10 * SEC).await;
    step(&e, T0 + 40 * SEC).await;
    step(&e, T0 + MIN + 10 * SEC).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        smtp.messages().is_empty(),
        "{:?}",
        subjects(&smtp.messages())
    );
    let held = e
        .history(None, "on its incident's probable cause", 10)
        .await
        .unwrap();
    assert_eq!(
        held.len(),
        2,
        "both effects held by the cause's silence: {held:?}"
    );
    assert!(held.iter().all(|r| r.detail.contains(&id)));
    // The silence ends while all three still fire: one page for the incident.
    step(&e, T0 + 2 * MIN + 5 * SEC).await;
    step(&e, T0 + 2 * MIN + 20 * SEC).await;
    let got = exactly(&smtp, 1).await;
    assert!(
        got[0].subject().starts_with(
            "[FIRING 3] critical incident 1: probable cause: call game payment-gateway"
        ),
        "{}",
        got[0].subject()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_links_services_the_data_does_not_and_acknowledging_the_incident_acks_all() {
    let smtp = SmtpServer::start();
    let rules = format!(
        r#"
[[depends]]
service = "game"
on = ["billing"]

[[rule]]
name = "billing-errors"
layer = "url"
service = "billing"
window = "1m"
every = "10s"
when = "error_ratio > 10%"
severity = "critical"

[[rule]]
name = "game-errors"
layer = "url"
service = "game"
window = "1m"
every = "10s"
when = "error_ratio > 10%"
severity = "critical"
{}"#,
        receiver(&smtp, "20s")
    );
    let env = Env::new(&rules);
    let e = env.open().await;
    env.write(&[events(
        T0,
        Layer::Url,
        "billing",
        "db9",
        "POST /charge",
        100,
        50,
    )])
    .await;
    step(&e, T0 + 5 * SEC).await;
    env.write(&[events(T0, Layer::Url, "game", "web1", "POST /buy", 100, 50)])
        .await;
    step(&e, T0 + 15 * SEC).await;
    step(&e, T0 + 40 * SEC).await;
    let got = exactly(&smtp, 1).await;
    assert!(
        got[0].subject().contains(
            "probable cause: url billing POST /charge 50% (billing-errors); 1 effect: POST /buy 50%"
        ),
        "{}",
        got[0].subject()
    );
    let (_, edges) = e.graph().await;
    assert!(
        edges
            .iter()
            .any(|x| x.from == "svc:game" && x.to == "svc:billing"),
        "{edges:?}"
    );
    assert_eq!(
        e.acknowledge_incident(1, "ana", "on it", T0 + MIN).await,
        Some(2)
    );
    let v = e.incident(1).await.expect("incident 1");
    assert!(v.acknowledged);
    assert!(
        v.members
            .iter()
            .all(|m| m.acked_by.as_deref() == Some("ana"))
    );
    assert_eq!(e.acknowledge_incident(9, "ana", "", T0).await, None);
}

#[test]
fn a_bad_depends_is_refused_with_its_position() {
    let text = "[[depends]]\nservice = \"game\"\non = []\n\n[[depends]]\nservice = \"\"\non = [\"x\"]\nwhat = 1\n";
    let errors = panorama_rules::rule::parse_file(std::path::Path::new("deps.toml"), text)
        .expect_err("refused");
    let all = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("deps.toml:"), "{all}");
    assert!(all.contains("what"), "unknown key named: {all}");
    let text = "[[depends]]\nservice = \"game\"\non = []\n";
    let errors = panorama_rules::rule::parse_file(std::path::Path::new("deps.toml"), text)
        .expect_err("refused");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "deps.toml:1:1: `depends` needs at least one name in `on` (a service, a call target, a component such as `mysql@db1`, or `host:NAME`)"
    );
}
