//! Voice calls through the engine, against local servers that play
//! Tencent VMS and Aliyun (each recomputing the provider's signature from
//! the request) and playing receipts back through the callback route:
//! unanswered → the next person, keypress 1 → acknowledged and no more
//! calls (the resolved notice still goes out, by SMS), no receipt within
//! `answer_timeout` → the next person, across a restart without a second
//! call, the per-number limit → SMS instead, a forged callback refused.
//!
//! Time is the engine's argument (`tick(now_ms)`), so the two-minute
//! answer timeout passes in one call.

#[path = "support/providers.rs"]
mod providers;
mod support;

use std::collections::BTreeMap;

use panorama_model::{Event, Layer, Outcome, Rollup, SeriesKey};
use panorama_rules::engine::Engine;
use providers::{Kind, Provider};
use support::Env;

/// 2026-11-22 13:00:00 UTC, a minute boundary.
const T0: i64 = 1_795_352_400_000;
const MIN: i64 = 60_000;
/// An env var cargo sets: the secrets and the callback token.
const SECRET_VAR: &str = "CARGO_PKG_NAME";

fn secret() -> String {
    std::env::var(SECRET_VAR).expect("cargo sets CARGO_PKG_NAME")
}

fn events(minute: i64, n: u64, errors: u64) -> Rollup {
    let k = SeriesKey {
        layer: Layer::Url,
        service: "login".into(),
        host: "web1".into(),
        name: "POST /login".into(),
        dims: BTreeMap::new(),
    };
    let mut r = Rollup::empty(minute, k, "c1");
    for i in 0..n {
        let mut e = Event::new(
            minute + i as i64 * 100,
            Layer::Url,
            "login",
            "web1",
            "POST /login",
        );
        if i < errors {
            e.outcome = Outcome::Error(Some("500".into()));
        }
        e.latency_ms = Some(20.0);
        r.add(&e);
    }
    r
}

async fn step(e: &Engine, now: i64) {
    e.tick(now).await;
    e.deliver(now).await;
}

const RULE: &str = r#"
[[rule]]
name = "login-errors"
layer = "url"
service = "login"
window = "1m"
every = "10s"
when = "error_ratio > 50%"
severity = "critical"
"#;

/// A voice receiver on the Tencent server, an SMS fallback on the Aliyun one.
fn rules(vms: &Provider, sms: &Provider, to: &[&str], extra: &str) -> String {
    format!(
        r#"{RULE}
[[receiver]]
name = "voice-oncall"
[receiver.voice]
to = {to:?}
language = "en"
fallback = "sms"
callback_token_env = "{SECRET_VAR}"
answer_timeout = "2m"
{extra}
[receiver.voice.tencent]
secret_id = "AKIDtestsecretid"
secret_key_env = "{SECRET_VAR}"
voice_sdk_appid = "1400000000"
template_id = "1234"
endpoint = "{vms_url}"

[[receiver]]
name = "sms"
[receiver.sms]
[receiver.sms.aliyun]
access_key_id = "LTAI5tTestKeyId"
access_key_secret_env = "{SECRET_VAR}"
sign_name = "Panorama"
template_code = "SMS_1"
endpoint = "{sms_url}"

[[route]]
receivers = ["voice-oncall"]
group_wait = "0s"
group_interval = "1s"
"#,
        vms_url = vms.url("/"),
        sms_url = sms.url("/"),
    )
}

async fn providers() -> (Provider, Provider) {
    (
        Provider::start(Kind::Tencent, "AKIDtestsecretid", Some(&secret())).await,
        Provider::start(Kind::Aliyun, "LTAI5tTestKeyId", Some(&secret())).await,
    )
}

fn called(vms: &Provider) -> Vec<String> {
    vms.hits()
        .iter()
        .map(|h| h.json()["CalledNumber"].as_str().unwrap().to_owned())
        .collect()
}

/// The callback route on a real socket.
async fn serve(e: &Engine) -> String {
    let app = panorama_rules::api::router(e.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/api/v1/voice/callback/voice-oncall")
}

async fn post(url: &str, token: &str, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}?token={token}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn keypress(mobile: &str, key: &str) -> serde_json::Value {
    serde_json::json!({"voicekey_callback": {"call_from": "", "callid": "c1",
        "keypress": key, "mobile": mobile, "nationcode": "86"}})
}

fn prompt(mobile: &str, result: &str) -> serde_json::Value {
    serde_json::json!({"voiceprompt_callback": {"result": result, "accept_time": "0",
        "call_from": "", "callid": "c1", "end_calltime": "0", "fee": "0",
        "mobile": mobile, "nationcode": "86", "start_calltime": "0"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_calls_the_next_keypress_acknowledges_and_a_forged_receipt_is_refused() {
    let (vms, sms) = providers().await;
    let env = Env::new(&rules(
        &vms,
        &sms,
        &["+8613800000001", "+8613800000002"],
        "",
    ));
    let e = env.open().await;
    let url = serve(&e).await;
    for m in 0..8 {
        env.write(&[events(T0 + m * MIN, 20, 15)]).await;
    }
    step(&e, T0 + 10_000).await;
    assert_eq!(
        called(&vms),
        ["+8613800000001"],
        "refused: {:?}",
        vms.refused()
    );
    let body = vms.hits()[0].json();
    let params: Vec<&str> = body["TemplateParamSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(params[0], "critical");
    assert_eq!(params[1], "login");
    assert!(
        params
            .iter()
            .all(|p| !p.contains("http") && p.chars().count() <= 20),
        "{params:?}"
    );

    // A forged keypress (wrong token, or none) is refused and changes nothing.
    assert_eq!(post(&url, "guess", keypress("13800000001", "1")).await, 401);
    assert_eq!(post(&url, "", keypress("13800000001", "1")).await, 401);
    assert!(e.view(T0 + 20_000).await.firing[0].ack.is_none());

    // Not answered: the next number is called at once, not after the timeout.
    assert_eq!(post(&url, &secret(), prompt("13800000001", "1")).await, 200);
    step(&e, T0 + 20_000).await;
    assert_eq!(called(&vms), ["+8613800000001", "+8613800000002"]);

    // The second presses 1: acknowledged by that number, no further calls.
    assert_eq!(
        post(&url, &secret(), keypress("13800000002", "1")).await,
        200
    );
    let v = e.view(T0 + 30_000).await;
    assert_eq!(v.firing[0].ack.as_ref().unwrap().by, "+8613800000002");
    let h = e
        .history(None, "acknowledged by +8613800000002, keypress", 10)
        .await
        .unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
    for m in 1..8 {
        step(&e, T0 + m * MIN + 10_000).await;
    }
    assert_eq!(called(&vms).len(), 2, "no call after the keypress");
    assert!(sms.hits().is_empty());

    // It recovers: the resolved notice still goes out, by SMS.
    env.write(&[events(T0 + 8 * MIN, 20, 0), events(T0 + 9 * MIN, 20, 0)])
        .await;
    for t in [
        T0 + 9 * MIN + 10_000,
        T0 + 9 * MIN + 20_000,
        T0 + 10 * MIN + 10_000,
    ] {
        step(&e, t).await;
    }
    let sent = sms.hits();
    assert_eq!(sent.len(), 1, "refused: {:?}", sms.refused());
    assert!(
        sent[0].query["TemplateParam"].contains("RESOLVED"),
        "{:?}",
        sent[0].query
    );
    assert_eq!(called(&vms).len(), 2, "a recovery is not a call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_receipt_within_the_timeout_calls_the_next_and_a_restart_never_calls_twice() {
    let (vms, sms) = providers().await;
    let env = Env::new(&rules(
        &vms,
        &sms,
        &["+8613800000001", "+8613800000002"],
        "",
    ));
    let e = env.open().await;
    for m in 0..8 {
        env.write(&[events(T0 + m * MIN, 20, 15)]).await;
    }
    step(&e, T0 + 10_000).await;
    assert_eq!(called(&vms), ["+8613800000001"]);
    drop(e);

    // Restart mid-escalation: the pending call is remembered, not repeated.
    let e = env.open().await;
    step(&e, T0 + MIN + 10_000).await;
    assert_eq!(called(&vms).len(), 1, "no second call for the same step");
    // Two minutes without a receipt: the next one.
    step(&e, T0 + 2 * MIN + 10_000).await;
    assert_eq!(called(&vms), ["+8613800000001", "+8613800000002"]);
    let h = e
        .history(None, "no answer from +8613800000001", 10)
        .await
        .unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
    drop(e);
    let e = env.open().await;
    step(&e, T0 + 3 * MIN + 10_000).await;
    assert_eq!(called(&vms).len(), 2, "a restart does not call again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_per_number_limit_the_call_becomes_an_sms() {
    let (vms, sms) = providers().await;
    let env = Env::new(&rules(&vms, &sms, &["+8613800000001"], "repeat_call = 2\n"));
    let e = env.open().await;
    let url = serve(&e).await;
    for m in 0..8 {
        env.write(&[events(T0 + m * MIN, 20, 15)]).await;
    }
    step(&e, T0 + 10_000).await;
    assert_eq!(called(&vms), ["+8613800000001"]);
    // Not answered; the repeat would be the second call within a minute,
    // over Tencent's (and Aliyun's) one per minute: an SMS instead.
    assert_eq!(post(&url, &secret(), prompt("13800000001", "1")).await, 200);
    step(&e, T0 + 20_000).await;
    assert_eq!(called(&vms).len(), 1);
    let sent = sms.hits();
    assert_eq!(sent.len(), 1, "refused: {:?}", sms.refused());
    assert_eq!(sent[0].query["PhoneNumbers"], "+8613800000001");
    let h = e
        .history(None, "limit SMS via `sms` instead", 10)
        .await
        .unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
}

#[tokio::test]
async fn aliyun_voice_is_signed_as_documented_and_carries_the_call_id() {
    use panorama_rules::notify::voice::{AliyunVoiceConfig, Voice, VoiceConfig};
    use panorama_rules::notify::{AlertStatus, Notice, NoticeAlert, NoticeKind, Notifier};
    let p = Provider::start(Kind::AliyunVoice, "LTAI5tTestKeyId", Some(&secret())).await;
    let mut cfg: VoiceConfig = toml::from_str("to = [\"+8613800000001\"]\n[aliyun]\naccess_key_id = \"x\"\naccess_key_secret_env = \"X\"\ntts_code = \"TTS_1\"\n").unwrap();
    cfg.aliyun = Some(AliyunVoiceConfig {
        access_key_id: "LTAI5tTestKeyId".into(),
        access_key_secret_env: SECRET_VAR.into(),
        tts_code: "TTS_1".into(),
        called_show_number: Some("057100000000".into()),
        endpoint: Some(p.url("/")),
        region_id: "cn-hangzhou".into(),
    });
    let voice = Voice::new(cfg).unwrap();
    let notice = Notice {
        id: "voice-oncall:login-errors:1@voice-oncall/call1".into(),
        kind: NoticeKind::Firing,
        rule: "login-errors".into(),
        severity: panorama_rules::rule::Severity::Critical,
        condition: "error_ratio > 50%".into(),
        labels: vec![],
        alerts: vec![NoticeAlert {
            status: AlertStatus::Firing,
            layer: Some(panorama_model::Layer::Url),
            service: "login".into(),
            series: "POST /login".into(),
            host: "web1".into(),
            value: "75%".into(),
            threshold: "50%".into(),
            summary: String::new(),
            link: "https://pano.example.com/series?x=1".into(),
            since_ms: T0,
            acked_by: None,
        }],
        created_ms: T0,
    };
    voice.send(&notice, None).await.unwrap();
    let hits = p.hits();
    assert_eq!(hits.len(), 1, "refused: {:?}", p.refused());
    let q = &hits[0].query;
    assert_eq!(q["CalledNumber"], "13800000001");
    assert_eq!(q["OutId"], notice.id);
    let tts: serde_json::Value = serde_json::from_str(&q["TtsParam"]).unwrap();
    assert_eq!(tts["severity"], "严重");
    assert_eq!(tts["value"], "75%");
    assert!(!q["TtsParam"].contains("http"));

    // A wrong secret is given up at once; flow control is retried.
    let wrong = Provider::start(Kind::AliyunVoice, "LTAI5tTestKeyId", Some("other")).await;
    let mut cfg2: VoiceConfig = toml::from_str("[aliyun]\naccess_key_id = \"LTAI5tTestKeyId\"\naccess_key_secret_env = \"CARGO_PKG_NAME\"\ntts_code = \"TTS_1\"\n").unwrap();
    cfg2.aliyun.as_mut().unwrap().endpoint = Some(wrong.url("/"));
    cfg2.to = vec!["13800000001".into()];
    let v2 = Voice::new(cfg2.clone()).unwrap();
    let err = v2.send(&notice, None).await.unwrap_err();
    assert!(
        err.is_permanent() && err.to_string().contains("SignatureDoesNotMatch"),
        "{err}"
    );
    cfg2.aliyun.as_mut().unwrap().endpoint = Some(p.url("/"));
    p.set_mode(providers::Mode::Throttle);
    let err = Voice::new(cfg2)
        .unwrap()
        .send(&notice, None)
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err}");
}

#[tokio::test]
async fn tencent_refuses_a_wrong_key_and_throttling_is_transient() {
    use panorama_rules::notify::voice::{Voice, VoiceConfig};
    use panorama_rules::notify::{Notice, NoticeKind, Notifier};
    let p = Provider::start(Kind::Tencent, "AKIDtestsecretid", Some("not-the-key")).await;
    let toml_text = format!(
        "to = [\"+8613800000001\"]\n[tencent]\nsecret_id = \"AKIDtestsecretid\"\nsecret_key_env = \"{SECRET_VAR}\"\nvoice_sdk_appid = \"1400000000\"\ntemplate_id = \"1\"\nendpoint = \"{}\"\n",
        p.url("/")
    );
    let cfg: VoiceConfig = toml::from_str(&toml_text).unwrap();
    let notice = Notice {
        id: "n".into(),
        kind: NoticeKind::Firing,
        rule: "r".into(),
        severity: panorama_rules::rule::Severity::Critical,
        condition: String::new(),
        labels: vec![],
        alerts: vec![],
        created_ms: T0,
    };
    let err = Voice::new(cfg.clone())
        .unwrap()
        .send(&notice, None)
        .await
        .unwrap_err();
    assert!(
        err.is_permanent() && err.to_string().contains("AuthFailure.SignatureFailure"),
        "{err}"
    );
    let good = Provider::start(Kind::Tencent, "AKIDtestsecretid", Some(&secret())).await;
    let cfg: VoiceConfig = toml::from_str(&toml_text.replace(&p.url("/"), &good.url("/"))).unwrap();
    good.set_mode(providers::Mode::Throttle);
    let err = Voice::new(cfg)
        .unwrap()
        .send(&notice, None)
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err}");
}

#[test]
fn the_examples_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules");
    if let Err(e) = panorama_rules::rule::load_dir(&dir) {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Each bad voice or Feishu table, the error it must produce, and on which
/// line: a refused value's own, or the table's when the whole table is wrong.
#[test]
fn bad_voice_and_feishu_tables_are_refused_with_file_line_and_column() {
    let tencent = "[receiver.voice.tencent]\nsecret_id = \"a\"\nsecret_key_env = \"K\"\nvoice_sdk_appid = \"1\"\ntemplate_id = \"2\"\n";
    let cases: Vec<(String, &str, usize)> = vec![
        (format!("[[receiver]]\nname = \"v\"\n[receiver.voice]\nto = [\"12\"]\n{tencent}"), "phone number \"12\"", 4),
        (format!("[[receiver]]\nname = \"v\"\n[receiver.voice]\nlanguage = \"fr\"\n{tencent}"), "unknown variant `fr`", 3),
        (format!("[[receiver]]\nname = \"v\"\n[receiver.voice]\nanswer_timeout = \"5s\"\n{tencent}"), "`answer_timeout` must be at least 30s", 4),
        (format!("[[receiver]]\nname = \"v\"\n[receiver.voice]\nack_key = \"12\"\n{tencent}"), "`ack_key` \"12\"", 4),
        (format!("[[receiver]]\nname = \"v\"\n[receiver.voice]\nrepeat_call = 9\n{tencent}"), "`repeat_call` must be 1 to 5", 4),
        ("[[receiver]]\nname = \"v\"\n[receiver.voice]\nto = [\"13800000000\"]\n".into(), "expected a provider", 3),
        (format!("[[receiver]]\nname = \"v\"\n[receiver.voice]\ncallback_token = \"inline\"\n{tencent}"), "unknown field `callback_token`", 3),
        (format!("[[receiver]]\nname = \"v\"\n[receiver.voice]\nfallback = \"nobody\"\n{tencent}"), "`fallback` names `nobody`, which is not an SMS receiver", 1),
        ("[[receiver]]\nname = \"v\"\n[receiver.voice]\n[receiver.voice.aliyun]\naccess_key_id = \"a\"\naccess_key_secret_env = \"K\"\n".into(), "missing field `tts_code`", 3),
        ("[[receiver]]\nname = \"f\"\n[receiver.feishu]\nsecret_env = \"S\"\n".into(), "missing field `webhook_token_env`", 3),
        ("[[receiver]]\nname = \"f\"\n[receiver.feishu]\nwebhook_token_env = \"T\"\nat_user_ids = [\"ou x\"]\n".into(), "user id \"ou x\"", 5),
        (format!("{RULE}\n[[receiver]]\nname = \"v\"\n[receiver.voice]\nto = [\"13800000000\"]\n{tencent}\n[[route]]\nreceivers = [\"v\"]\n[[route.escalate]]\nafter = \"5m\"\nreceivers = [\"v\"]\nrepeat_call = 0\n"), "`escalate.repeat_call` must be 1 to 5", 26),
    ];
    for (text, want, line) in &cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let errors = panorama_rules::rule::load_dir(dir.path()).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let hit = shown
            .iter()
            .find(|e| e.contains(want))
            .unwrap_or_else(|| panic!("no error containing {want:?} in {shown:#?}"));
        let prefix = format!("{}:{line}:", path.display());
        assert!(
            hit.starts_with(&prefix),
            "{hit:?} does not start with {prefix:?}"
        );
        let col = hit[prefix.len()..].split(':').next().unwrap();
        assert!(col.parse::<u32>().is_ok_and(|c| c >= 1), "{hit:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_answering_takes_the_next_escalation_step_at_once_and_it_calls_three_times() {
    let (vms, sms) = providers().await;
    let mut text = rules(&vms, &sms, &["+8613800000001"], "");
    text.push_str(&format!(
        r#"repeat_interval = "4h"
[[route.escalate]]
after = "30m"
receivers = ["voice-lead"]
repeat_call = 3

[[receiver]]
name = "voice-lead"
[receiver.voice]
to = ["+8613800000009"]
callback_token_env = "{SECRET_VAR}"
calls_per_minute = 5
[receiver.voice.tencent]
secret_id = "AKIDtestsecretid"
secret_key_env = "{SECRET_VAR}"
voice_sdk_appid = "1400000000"
template_id = "1234"
endpoint = "{}"
"#,
        vms.url("/")
    ));
    let env = Env::new(&text);
    let e = env.open().await;
    let url = serve(&e).await;
    let lead = url.replace("voice-oncall", "voice-lead");
    for m in 0..8 {
        env.write(&[events(T0 + m * MIN, 20, 15)]).await;
    }
    step(&e, T0 + 10_000).await;
    assert_eq!(called(&vms), ["+8613800000001"]);
    assert_eq!(post(&url, &secret(), prompt("13800000001", "1")).await, 200);
    // The only person did not answer: the 30-minute step is taken now.
    step(&e, T0 + 20_000).await;
    step(&e, T0 + 30_000).await;
    assert_eq!(called(&vms), ["+8613800000001", "+8613800000009"]);
    // The lead is called up to three times before the calls give up.
    for (i, t) in [(2, T0 + 40_000), (3, T0 + 50_000)] {
        assert_eq!(
            post(&lead, &secret(), prompt("13800000009", "1")).await,
            200
        );
        step(&e, t).await;
        assert_eq!(called(&vms).len(), i + 1, "attempt {i}");
    }
    assert_eq!(
        post(&lead, &secret(), prompt("13800000009", "1")).await,
        200
    );
    step(&e, T0 + MIN + 10_000).await;
    step(&e, T0 + 2 * MIN + 10_000).await;
    assert_eq!(
        called(&vms).len(),
        4,
        "three calls to the lead, then no more"
    );
    let h = e.history(None, "attempt 3/3", 10).await.unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
}
