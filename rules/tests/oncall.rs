//! On-call behaviour through the engine, with mail received by a real SMTP
//! server: rota resolution across a handover, escalation and its stop on
//! acknowledgement, a restart during escalation, hourly budgets folding
//! into a digest, and layer-aware suppression (an incident's effects).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use panorama_model::{Event, Layer, Outcome, Rollup, SeriesKey};
use panorama_rules::engine::Engine;
use support::{Env, Received, SmtpServer};

/// 2026-11-22 13:00:00 UTC, a minute boundary.
const T0: i64 = 1_795_352_400_000;
const MIN: i64 = 60_000;
const WAIT: Duration = Duration::from_secs(15);

/// `n` events of one series in one minute, the first `errors` failed.
fn events(minute: i64, layer: Layer, service: &str, name: &str, n: u64, errors: u64) -> Rollup {
    let k = SeriesKey {
        layer,
        service: service.into(),
        host: "web1".into(),
        name: name.into(),
        dims: BTreeMap::new(),
    };
    let mut r = Rollup::empty(minute, k, "c1");
    for i in 0..n {
        let mut e = Event::new(minute + i as i64 * 100, layer, service, "web1", name);
        if i < errors {
            e.outcome = Outcome::Error(Some("500".into()));
        }
        e.latency_ms = Some(20.0);
        r.add(&e);
    }
    r
}

fn bad(minute: i64, name: &str) -> Rollup {
    events(minute, Layer::Url, "login", name, 20, 15)
}

fn good(minute: i64, name: &str) -> Rollup {
    events(minute, Layer::Url, "login", name, 20, 0)
}

async fn step(e: &Engine, now: i64) {
    e.tick(now).await;
    e.deliver(now).await;
}

fn mail_receiver(name: &str, server: &SmtpServer, to: &str, extra: &str) -> String {
    format!(
        r#"
[[receiver]]
name = "{name}"
{extra}
[receiver.mail]
host = "{host}"
port = {port}
security = "plain"
from = "Panorama <alerts@panorama.test>"
to = ["{to}"]
timeout_secs = 5
"#,
        host = server.host(),
        port = server.port(),
    )
}

const URL_RULE: &str = r#"
[[rule]]
name = "login-errors"
layer = "url"
service = "login"
window = "1m"
every = "10s"
when = "error_ratio > 50%"
severity = "critical"
"#;

fn rcpt(m: &Received) -> String {
    m.rcpt_to().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rota_reaches_whoever_is_on_duty_across_the_handover() {
    let smtp = SmtpServer::start();
    // Handover from ana to bo at T0 + 10 min (an hourly rota for the test).
    let handover = chrono::DateTime::from_timestamp_millis(T0 + 10 * MIN - 3_600_000)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .to_rfc3339();
    let rules = format!(
        r#"{URL_RULE}
[[person]]
name = "ana"
email = "ana@panorama.test"

[[person]]
name = "bo"
email = "bo@panorama.test"
phone = "+8613800000002"

[[receiver]]
name = "oncall"
[receiver.rota]
people = ["ana", "bo"]
first_handover = "{handover}"
every = "1h"
via = ["mail"]

[[route]]
receivers = ["oncall"]
group_wait = "0s"
group_interval = "1s"
{mail}"#,
        mail = mail_receiver("mail", &smtp, "team@panorama.test", "")
    );
    let env = Env::new(&rules);
    let e = env.open().await;
    let v = e.view(T0 + MIN).await;
    assert_eq!(v.on_duty.len(), 1);
    assert_eq!(
        (v.on_duty[0].person.as_str(), v.on_duty[0].until_ms),
        ("ana", T0 + 10 * MIN)
    );

    env.write(&[bad(T0 + MIN, "POST /login")]).await;
    step(&e, T0 + MIN + 30_000).await;
    let got = smtp.wait_for_messages(1, WAIT).await;
    assert_eq!(
        rcpt(&got[0]),
        "ana@panorama.test",
        "ana is on duty before the handover"
    );

    // A keeps failing (so it stays firing, not "no data"); B starts.
    env.write(&[
        bad(T0 + 12 * MIN, "POST /register"),
        bad(T0 + 12 * MIN, "POST /login"),
    ])
    .await;
    step(&e, T0 + 12 * MIN + 30_000).await;
    let got = smtp.wait_for_messages(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert!(
        got[1].subject().contains("POST /register"),
        "{}",
        got[1].subject()
    );
    assert_eq!(rcpt(&got[1]), "bo@panorama.test", "bo after the handover");
    assert_eq!(e.view(T0 + 12 * MIN).await.on_duty[0].person, "bo");
    let h = e.history(None, "notified bo on duty", 10).await.unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
}

fn escalation_rules(smtp: &SmtpServer) -> String {
    format!(
        r#"{URL_RULE}
[[route]]
receivers = ["oncall"]
group_wait = "0s"
group_interval = "1s"
repeat_interval = "4h"
[[route.escalate]]
after = "5m"
receivers = ["lead"]
{oncall}{lead}"#,
        oncall = mail_receiver("oncall", smtp, "oncall@panorama.test", ""),
        lead = mail_receiver("lead", smtp, "lead@panorama.test", ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_reaches_the_next_level_stops_on_acknowledgement_and_both_hear_the_resolution() {
    let smtp = SmtpServer::start();
    let env = Env::new(&escalation_rules(&smtp));
    let e = env.open().await;
    // A fires at T0 and nobody acknowledges it.
    for m in 0..14 {
        env.write(&[bad(T0 + m * MIN, "POST /login")]).await;
    }
    step(&e, T0 + 10_000).await;
    assert_eq!(smtp.wait_for_messages(1, WAIT).await.len(), 1);
    for m in 1..5 {
        step(&e, T0 + m * MIN + 10_000).await;
    }
    assert_eq!(smtp.messages().len(), 1, "no escalation before 5 minutes");
    step(&e, T0 + 5 * MIN + 10_000).await;
    let got = smtp.wait_for_messages(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(rcpt(&got[1]), "lead@panorama.test");
    assert!(got[1].subject().contains("POST /login"));

    // B fires at T0+6 and is acknowledged at T0+7: it never escalates.
    for m in 6..14 {
        env.write(&[bad(T0 + m * MIN, "POST /register")]).await;
    }
    step(&e, T0 + 6 * MIN + 10_000).await;
    let got = smtp.wait_for_messages(3, WAIT).await;
    assert_eq!(rcpt(&got[2]), "oncall@panorama.test");
    assert!(
        e.acknowledge(
            "login-errors",
            "login/POST /register",
            "ana",
            "looking",
            T0 + 7 * MIN
        )
        .await
    );
    for m in 7..14 {
        step(&e, T0 + m * MIN + 10_000).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 3, "acknowledged: no escalation");

    // A recovers: oncall and lead both hear it.
    env.write(&[
        good(T0 + 14 * MIN, "POST /login"),
        bad(T0 + 14 * MIN, "POST /register"),
    ])
    .await;
    step(&e, T0 + 14 * MIN + 10_000).await;
    let got = smtp.wait_for_messages(5, WAIT).await;
    assert_eq!(got.len(), 5);
    let mut resolved: Vec<String> = got[3..]
        .iter()
        .filter(|m| m.subject().contains("RESOLVED"))
        .map(rcpt)
        .collect();
    resolved.sort();
    assert_eq!(resolved, ["lead@panorama.test", "oncall@panorama.test"]);
    let h = e
        .history(Some("login-errors"), "escalated", 10)
        .await
        .unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_escalation_neither_repeats_nor_misses_a_step() {
    let smtp = SmtpServer::start();
    let env = Env::new(&escalation_rules(&smtp));
    for m in 0..12 {
        env.write(&[bad(T0 + m * MIN, "POST /login")]).await;
    }
    let e = env.open().await;
    step(&e, T0 + 10_000).await;
    step(&e, T0 + 3 * MIN).await;
    assert_eq!(smtp.wait_for_messages(1, WAIT).await.len(), 1);
    drop(e);
    // Down while the step fell due; back at T0+8.
    let e = env.open().await;
    step(&e, T0 + 8 * MIN).await;
    let got = smtp.wait_for_messages(2, WAIT).await;
    assert_eq!(got.len(), 2, "the missed step is taken after the restart");
    assert_eq!(rcpt(&got[1]), "lead@panorama.test");
    drop(e);
    let e = env.open().await;
    step(&e, T0 + 9 * MIN).await;
    step(&e, T0 + 10 * MIN).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smtp.messages().len(),
        2,
        "no step twice, no second firing mail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_folds_alerts_into_one_digest() {
    let smtp = SmtpServer::start();
    let rules = format!(
        r#"{URL_RULE}
[[route]]
receivers = ["oncall"]
group_wait = "0s"
group_interval = "1s"
{}"#,
        mail_receiver(
            "oncall",
            &smtp,
            "oncall@panorama.test",
            "budget_per_hour = 2"
        )
    );
    let env = Env::new(&rules);
    let e = env.open().await;
    for i in 0..5 {
        let t = T0 + i * MIN;
        let mut rollups: Vec<Rollup> = (0..=i).map(|j| bad(t, &format!("POST /api/{j}"))).collect();
        rollups.push(good(t, "GET /health"));
        env.write(&rollups).await;
        step(&e, t + 10_000).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smtp.wait_for_messages(2, WAIT).await.len(),
        2,
        "two within the budget"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 2);
    let v = e.view(T0 + 5 * MIN).await;
    let b = v
        .budgets
        .iter()
        .find(|b| b.key == "receiver:oncall")
        .expect("budget listed");
    assert_eq!((b.used, b.limit, b.folded), (2, 2, 3), "{:?}", v.budgets);

    // An hour after the first send, one digest names the three held back.
    for m in 5..62 {
        let rollups: Vec<Rollup> = (0..5)
            .map(|j| bad(T0 + m * MIN, &format!("POST /api/{j}")))
            .collect();
        env.write(&rollups).await;
    }
    step(&e, T0 + 61 * MIN).await;
    let got = smtp.wait_for_messages(3, WAIT).await;
    assert_eq!(got.len(), 3, "one digest");
    let digest = &got[2];
    assert!(
        digest.subject().contains("digest of 3"),
        "{}",
        digest.subject()
    );
    for j in 2..5 {
        assert!(
            digest.text().contains(&format!("POST /api/{j}")),
            "digest names POST /api/{j}:\n{}",
            digest.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_component_is_the_probable_cause_of_the_url_alerts_it_causes() {
    let smtp = SmtpServer::start();
    let rules = format!(
        r#"
[[rule]]
name = "redis-errors"
layer = "component"
group_by = "service"
window = "1m"
when = "errors > 5"
severity = "critical"
{URL_RULE}
[[route]]
receivers = ["oncall"]
group_wait = "0s"
group_interval = "1s"
{}"#,
        mail_receiver("oncall", &smtp, "oncall@panorama.test", "")
    );
    let env = Env::new(&rules);
    let e = env.open().await;
    for m in 0..3 {
        env.write(&[
            events(
                T0 + m * MIN,
                Layer::Component,
                "login",
                "redis:sessions",
                50,
                40,
            ),
            bad(T0 + m * MIN, "POST /login"),
        ])
        .await;
    }
    step(&e, T0 + 10_000).await;
    step(&e, T0 + 20_000).await;
    step(&e, T0 + 40_000).await;
    let got = smtp.wait_for_messages(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smtp.messages().len(),
        1,
        "one mail: redis, not the url alert it causes"
    );
    assert!(
        got[0].subject().contains("redis-errors"),
        "{}",
        got[0].subject()
    );
    let text = got[0].text();
    assert!(
        got[0]
            .subject()
            .contains("incident 1: probable cause: component login")
            && got[0].subject().contains("1 effect: POST /login"),
        "the page names the cause, then its effect: {}",
        got[0].subject()
    );
    assert!(
        text.contains("probable cause") && text.contains("effect (url layer)"),
        "the notice names what it suppressed:\n{text}"
    );
    let v = e.view(T0 + MIN).await;
    assert_eq!(v.firing.len(), 2, "both listed as firing");
    assert_eq!(
        e.history(Some("login-errors"), "suppressed", 5)
            .await
            .unwrap()
            .len(),
        1
    );

    // Redis recovers, logins still fail: the incident is not over, and
    // nobody is paged again for it.
    for m in 3..5 {
        env.write(&[
            events(
                T0 + m * MIN,
                Layer::Component,
                "login",
                "redis:sessions",
                50,
                0,
            ),
            bad(T0 + m * MIN, "POST /login"),
        ])
        .await;
    }
    step(&e, T0 + 3 * MIN + 10_000).await;
    step(&e, T0 + 3 * MIN + 20_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smtp.messages().len(),
        1,
        "{:?}",
        smtp.messages()
            .iter()
            .map(|m| m.subject())
            .collect::<Vec<_>>()
    );
    // Logins recover too: one resolved notice for the whole incident.
    for m in 5..7 {
        env.write(&[
            events(
                T0 + m * MIN,
                Layer::Component,
                "login",
                "redis:sessions",
                50,
                0,
            ),
            good(T0 + m * MIN, "POST /login"),
        ])
        .await;
    }
    step(&e, T0 + 5 * MIN + 10_000).await;
    step(&e, T0 + 5 * MIN + 20_000).await;
    let got = smtp.wait_for_messages(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 2);
    assert!(
        got[1]
            .subject()
            .starts_with("[RESOLVED 2] critical incident 1:"),
        "{}",
        got[1].subject()
    );
}

/// A local SMS gateway: answers 200 and records each JSON body.
async fn sms_gateway() -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    let got: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let rec = got.clone();
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let rec = rec.clone();
            async move {
                rec.lock().unwrap().push(body.0);
                axum::Json(serde_json::json!({"code": "OK"}))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rota_texts_the_person_on_duty_within_their_hourly_sms_budget() {
    let (url, texts) = sms_gateway().await;
    let rules = format!(
        r#"{URL_RULE}
[[person]]
name = "ana"
phone = "+8613800000001"
sms_per_hour = 1

[[receiver]]
name = "oncall"
[receiver.rota]
people = ["ana"]
first_handover = "2026-11-02T10:00:00+08:00"
via = ["sms"]

[[receiver]]
name = "sms"
[receiver.sms]
[receiver.sms.gateway]
url = "{url}"
method = "POST"
content_type = "application/json"
body = '{{"to": {{{{phones_json}}}}, "text": {{{{text|json}}}}}}'
success_pointer = "/code"
success_value = "OK"

[[route]]
receivers = ["oncall"]
group_wait = "0s"
group_interval = "1s"
"#
    );
    let env = Env::new(&rules);
    let e = env.open().await;
    for m in 0..62 {
        let mut r = vec![bad(T0 + m * MIN, "POST /login")];
        if m >= 2 {
            r.push(bad(T0 + m * MIN, "POST /pay"));
        }
        env.write(&r).await;
    }
    step(&e, T0 + 10_000).await;
    step(&e, T0 + 2 * MIN + 10_000).await;
    step(&e, T0 + 3 * MIN).await;
    let sent = texts.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "ana's budget is one SMS an hour: {sent:?}");
    assert_eq!(
        sent[0]["to"],
        serde_json::json!(["+8613800000001"]),
        "the person on duty's phone"
    );
    assert!(
        sent[0]["text"].as_str().unwrap().contains("login-errors"),
        "{sent:?}"
    );
    let v = e.view(T0 + 3 * MIN).await;
    let b = v
        .budgets
        .iter()
        .find(|b| b.key == "person:ana")
        .expect("ana's budget listed");
    assert_eq!((b.used, b.limit, b.folded), (1, 1, 1), "{:?}", v.budgets);
    // An hour later the folded alert goes out as one digest.
    step(&e, T0 + 61 * MIN).await;
    let sent = texts.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent[1]["text"].as_str().unwrap().contains("digest"),
        "{sent:?}"
    );
}
