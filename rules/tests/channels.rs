//! The HTTP channels against local servers that play each provider and
//! check its signature the way the provider documents it: what arrives,
//! and how each failure is sorted for the outbox (a retry for throttling,
//! 5xx and timeouts; giving up for a refused signature or token).
//!
//! Secrets come from variables cargo sets for every test run
//! (`CARGO_PKG_NAME`, `CARGO_PKG_VERSION`): `std::env::set_var` is unsafe
//! in edition 2024 and unsafe code is forbidden here.

#[path = "support/providers.rs"]
mod providers;

use std::time::Duration;

use panorama_rules::notify::dingtalk::{DingTalk, DingTalkConfig};
use panorama_rules::notify::feishu::{Feishu, FeishuConfig};
use panorama_rules::notify::sms::{AliyunConfig, GatewayConfig, Sms, SmsConfig, gsm_len};
use panorama_rules::notify::webhook::{Webhook, WebhookConfig};
use panorama_rules::notify::wecom::{WeCom, WeComConfig, WeComFormat};
use panorama_rules::notify::{
    AlertStatus, ChannelConfig, DeliveryError, Notice, NoticeAlert, NoticeKind, Notifier,
};
use panorama_rules::rule::ReceiverKind;
use providers::{Kind, Mode, Provider};

/// 2026-11-22 13:00:00 UTC.
const T0: i64 = 1_795_352_400_000;

/// An env var cargo sets, holding the secret the channel sends with.
const SECRET_VAR: &str = "CARGO_PKG_NAME";
/// Another, for the "wrong secret" cases.
const OTHER_VAR: &str = "CARGO_PKG_VERSION";

fn secret() -> String {
    std::env::var(SECRET_VAR).expect("cargo sets CARGO_PKG_NAME; run the tests with cargo test")
}

/// A dashboard link of the length a short link has; different per
/// series so a test can tell which one arrived.
fn link(series: &str) -> String {
    let id: u32 = series
        .bytes()
        .fold(7, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    format!("https://pano.example.com/a/{id:08x}")
}

fn alert(series: &str) -> NoticeAlert {
    NoticeAlert {
        status: AlertStatus::Firing,
        layer: Some(panorama_model::Layer::Url),
        service: "login".into(),
        series: series.into(),
        host: "web1".into(),
        value: "12.5%".into(),
        threshold: "5%".into(),
        summary: format!("error ratio of {series} is 12.5%"),
        link: link(series),
        since_ms: T0,
        acked_by: None,
    }
}

fn notice(alerts: Vec<NoticeAlert>) -> Notice {
    Notice {
        id: "url-error-ratio/login/fired/1".into(),
        kind: NoticeKind::Firing,
        rule: "url-error-ratio".into(),
        severity: panorama_rules::rule::Severity::Critical,
        condition: "error_ratio > 5% over 5m".into(),
        labels: vec![("team".into(), "pay".into())],
        alerts,
        created_ms: T0 + 90_000,
    }
}

fn one() -> Notice {
    notice(vec![alert("POST /pay")])
}

fn transient(r: Result<(), DeliveryError>) -> String {
    match r {
        Err(DeliveryError::Transient(m)) => m,
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

fn permanent(r: Result<(), DeliveryError>) -> String {
    match r {
        Err(DeliveryError::Permanent(m)) => m,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

/// A port nothing listens on.
fn dead_url(path: &str) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}{path}")
}

// ---- Aliyun SMS ----

fn aliyun_cfg(endpoint: String, secret_var: &str) -> SmsConfig {
    SmsConfig {
        to: vec!["13800000000".into()],
        max_chars: None,
        timeout_secs: Some(2),
        aliyun: Some(AliyunConfig {
            access_key_id: "LTAI5tTestKeyId".into(),
            access_key_secret_env: secret_var.into(),
            sign_name: "Panorama".into(),
            template_code: "SMS_123456789".into(),
            text_param: "text".into(),
            endpoint: Some(endpoint),
            region_id: "cn-hangzhou".into(),
        }),
        gateway: None,
    }
}

async fn aliyun() -> Provider {
    Provider::start(Kind::Aliyun, "LTAI5tTestKeyId", Some(&secret())).await
}

#[tokio::test]
async fn aliyun_sms_is_signed_as_documented_and_fits_one_message() {
    let p = aliyun().await;
    let sms = Sms::new(aliyun_cfg(p.url("/"), SECRET_VAR)).unwrap();
    sms.send(&one(), None).await.unwrap();

    let hits = p.hits();
    assert_eq!(hits.len(), 1, "refused: {:?}", p.refused());
    let q = &hits[0].query;
    assert_eq!(q["PhoneNumbers"], "13800000000");
    assert_eq!(q["SignName"], "Panorama");
    assert_eq!(q["TemplateCode"], "SMS_123456789");
    assert_eq!(q["OutId"], "url-error-ratio/login/fired/1");
    let param: serde_json::Value = serde_json::from_str(&q["TemplateParam"]).unwrap();
    let text = param["text"].as_str().unwrap();
    assert!(text.contains("POST /pay"), "{text}");
    assert!(text.contains("12.5%"), "{text}");
    assert!(text.contains("url-error-ratio"), "{text}");
    assert!(text.ends_with(&link("POST /pay")), "{text}");
    assert!(
        gsm_len(text).unwrap() <= 160,
        "{} > 160: {text}",
        text.len()
    );
}

#[tokio::test]
async fn a_long_chinese_sms_is_cut_in_the_middle_never_the_link() {
    let p = aliyun().await;
    let sms = Sms::new(aliyun_cfg(p.url("/"), SECRET_VAR)).unwrap();
    let series = "支付 POST /api/v2/订单/创建/确认/回调/通知/结果 渠道 苹果应用内购买";
    sms.send(&notice(vec![alert(series)]), None).await.unwrap();

    let hits = p.hits();
    assert_eq!(hits.len(), 1, "refused: {:?}", p.refused());
    let param: serde_json::Value = serde_json::from_str(&hits[0].query["TemplateParam"]).unwrap();
    let text = param["text"].as_str().unwrap();
    assert!(
        text.chars().count() <= 70,
        "{} > 70: {text}",
        text.chars().count()
    );
    assert!(text.ends_with(&link(series)), "{text}");
    // 70 characters less the link leave no room for the whole rule name:
    // its start and the value at the end survive.
    assert!(text.starts_with("FIRING CRIT url-"), "{text}");
    assert!(text.contains("12.5% vs 5%"), "{text}");
    assert!(text.contains('…'), "{text}");
}

#[tokio::test]
async fn the_to_override_reaches_aliyun() {
    let p = aliyun().await;
    let sms = Sms::new(aliyun_cfg(p.url("/"), SECRET_VAR)).unwrap();
    let on_duty = ["13900000001".to_owned(), "13900000002".to_owned()];
    sms.send(&one(), Some(&on_duty)).await.unwrap();
    assert_eq!(p.hits()[0].query["PhoneNumbers"], "13900000001,13900000002");

    let err = permanent(sms.send(&one(), Some(&[])).await);
    assert!(err.contains("no phone number"), "{err}");
    let err = permanent(sms.send(&one(), Some(&["call me".to_owned()])).await);
    assert!(err.contains("call me"), "{err}");
    assert_eq!(p.hits().len(), 1);
}

#[tokio::test]
async fn a_wrong_aliyun_secret_is_a_permanent_failure() {
    let p = aliyun().await;
    let sms = Sms::new(aliyun_cfg(p.url("/"), OTHER_VAR)).unwrap();
    let err = permanent(sms.send(&one(), None).await);
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(p.hits().is_empty());
    assert!(p.refused()[0].starts_with("SignatureDoesNotMatch"));
}

#[tokio::test]
async fn aliyun_flow_control_503_timeouts_and_refused_connections_are_transient() {
    let p = aliyun().await;
    let sms = Sms::new(aliyun_cfg(p.url("/"), SECRET_VAR)).unwrap();

    p.set_mode(Mode::Throttle);
    let err = transient(sms.send(&one(), None).await);
    assert!(err.contains("isv.BUSINESS_LIMIT_CONTROL"), "{err}");

    p.set_mode(Mode::Status(503));
    let err = transient(sms.send(&one(), None).await);
    assert!(err.contains("503"), "{err}");

    p.set_mode(Mode::Sleep(Duration::from_secs(4)));
    let err = transient(sms.send(&one(), None).await);
    assert!(err.contains("timed out"), "{err}");

    let dead = Sms::new(aliyun_cfg(dead_url("/"), SECRET_VAR)).unwrap();
    let err = transient(dead.send(&one(), None).await);
    assert!(err.contains("connect"), "{err}");

    // And it goes through once the provider is back.
    p.set_mode(Mode::Normal);
    sms.send(&one(), None).await.unwrap();
    assert!(!p.hits().is_empty());
}

#[tokio::test]
async fn a_missing_secret_variable_is_a_build_error() {
    let err = Sms::new(aliyun_cfg(
        "http://127.0.0.1:1/".into(),
        "PANORAMA_TEST_SURELY_UNSET_SECRET",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("PANORAMA_TEST_SURELY_UNSET_SECRET"), "{err}");
}

// ---- SMS gateway ----

fn gateway_cfg(url: String) -> SmsConfig {
    SmsConfig {
        to: vec!["+8613800000000".into(), "13800000001".into()],
        max_chars: None,
        timeout_secs: Some(2),
        aliyun: None,
        gateway: Some(GatewayConfig {
            url,
            method: "POST".into(),
            headers: [("X-Team".to_owned(), "pay".to_owned())].into(),
            headers_env: Default::default(),
            body: Some(
                r#"{"to": {{phones_json}}, "text": {{text|json}}, "ref": "{{notice_id|url}}"}"#
                    .into(),
            ),
            content_type: "application/json".into(),
            success_pointer: Some("/code".into()),
            success_value: Some("OK".into()),
            retry_values: vec!["THROTTLED".into()],
        }),
    }
}

/// The gateway wants `Authorization: <API key>`; the header comes from
/// the environment, as a secret should.
fn with_auth(mut cfg: SmsConfig, var: &str) -> SmsConfig {
    let g = cfg.gateway.as_mut().unwrap();
    g.headers_env.insert("Authorization".into(), var.into());
    cfg
}

#[tokio::test]
async fn a_gateway_gets_the_templated_request_and_its_answer_is_checked() {
    let p = Provider::start(Kind::Gateway, "", Some(&secret())).await;
    let cfg = with_auth(gateway_cfg(p.url("/v1/sms")), SECRET_VAR);
    let sms = Sms::new(cfg).unwrap();
    sms.send(&one(), None).await.unwrap();

    let hits = p.hits();
    assert_eq!(hits.len(), 1, "refused: {:?}", p.refused());
    let body = hits[0].json();
    assert_eq!(
        body["to"],
        serde_json::json!(["+8613800000000", "13800000001"])
    );
    assert_eq!(body["ref"], "url-error-ratio%2Flogin%2Ffired%2F1");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("POST /pay web1 12.5% vs 5%"), "{text}");
    assert!(text.ends_with(&link("POST /pay")), "{text}");
    assert_eq!(hits[0].headers["x-team"], "pay");
    assert_eq!(hits[0].path, "/v1/sms");

    p.set_mode(Mode::Throttle);
    let err = transient(sms.send(&one(), None).await);
    assert!(err.contains("THROTTLED"), "{err}");
}

#[tokio::test]
async fn a_gateway_refusing_the_token_or_the_body_is_permanent() {
    let p = Provider::start(Kind::Gateway, "", Some(&secret())).await;
    let sms = Sms::new(with_auth(gateway_cfg(p.url("/v1/sms")), OTHER_VAR)).unwrap();
    let err = permanent(sms.send(&one(), None).await);
    assert!(err.contains("401"), "{err}");

    let mut cfg = with_auth(gateway_cfg(p.url("/v1/sms")), SECRET_VAR);
    let g = cfg.gateway.as_mut().unwrap();
    g.body = Some(r#"{"phone": "{{phone}}", "msg": {{text|json}}}"#.into());
    let sms = Sms::new(cfg).unwrap();
    let err = permanent(sms.send(&one(), None).await);
    assert!(err.contains("BAD_REQUEST"), "{err}");
    assert!(p.hits().is_empty());
}

#[tokio::test]
async fn a_gateway_template_with_phone_sends_one_request_per_number() {
    let p = Provider::start(Kind::Gateway, "", Some(&secret())).await;
    let mut cfg = with_auth(gateway_cfg(p.url("/v1/sms?dest={{phone|url}}")), SECRET_VAR);
    let g = cfg.gateway.as_mut().unwrap();
    g.body = Some(r#"{"to": ["{{phone}}"], "text": {{text|json}}}"#.into());
    let sms = Sms::new(cfg).unwrap();
    sms.send(
        &one(),
        Some(&["13900000001".into(), "+8613900000002".into()]),
    )
    .await
    .unwrap();
    let dests: Vec<String> = p.hits().iter().map(|h| h.query["dest"].clone()).collect();
    assert_eq!(dests, ["13900000001", "+8613900000002"]);
    assert_eq!(p.hits()[1].json()["to"][0], "+8613900000002");
}

// ---- DingTalk ----

fn dingtalk_cfg(url: String, secret_var: Option<&str>) -> DingTalkConfig {
    DingTalkConfig {
        access_token_env: OTHER_VAR.into(),
        secret_env: secret_var.map(str::to_owned),
        at_mobiles: vec!["13800000000".into()],
        at_all: false,
        url: Some(url),
        timeout_secs: Some(2),
    }
}

fn token() -> String {
    std::env::var(OTHER_VAR).unwrap()
}

#[tokio::test]
async fn dingtalk_gets_signed_markdown_that_mentions_the_on_duty_mobiles() {
    let p = Provider::start(Kind::DingTalk, &token(), Some(&secret())).await;
    let robot = DingTalk::new(dingtalk_cfg(p.url("/robot/send"), Some(SECRET_VAR))).unwrap();
    let on_duty = ["13900000007".to_owned()];
    robot.send(&one(), Some(&on_duty)).await.unwrap();

    let hits = p.hits();
    assert_eq!(hits.len(), 1, "refused: {:?}", p.refused());
    assert!(hits[0].query.contains_key("sign"));
    let body = hits[0].json();
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(body["at"]["atMobiles"], serde_json::json!(["13900000007"]));
    assert_eq!(body["at"]["isAtAll"], false);
    assert_eq!(body["markdown"]["title"], one().title());
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.contains("POST /pay"), "{text}");
    assert!(text.contains("**12.5%**"), "{text}");
    assert!(
        text.contains(&format!("[dashboard]({})", link("POST /pay"))),
        "{text}"
    );
    assert!(text.contains("@13900000007"), "{text}");
    assert!(
        !text.contains("@13800000000"),
        "the override replaces: {text}"
    );

    // Without an override, the configured mobiles.
    robot.send(&one(), None).await.unwrap();
    assert_eq!(
        p.hits()[1].json()["at"]["atMobiles"],
        serde_json::json!(["13800000000"])
    );
}

#[tokio::test]
async fn an_unsigned_dingtalk_robot_needs_no_secret() {
    let p = Provider::start(Kind::DingTalk, &token(), None).await;
    let robot = DingTalk::new(dingtalk_cfg(p.url("/robot/send"), None)).unwrap();
    robot.send(&one(), None).await.unwrap();
    assert_eq!(p.hits().len(), 1);
    assert!(!p.hits()[0].query.contains_key("sign"));
}

#[tokio::test]
async fn dingtalk_wrong_secret_or_token_is_permanent_and_too_fast_is_transient() {
    let p = Provider::start(Kind::DingTalk, &token(), Some("SECthe-robots-own-secret")).await;
    let robot = DingTalk::new(dingtalk_cfg(p.url("/robot/send"), Some(SECRET_VAR))).unwrap();
    let err = permanent(robot.send(&one(), None).await);
    assert!(err.contains("310000"), "{err}");

    let p = Provider::start(Kind::DingTalk, "another-token", None).await;
    let robot = DingTalk::new(dingtalk_cfg(p.url("/robot/send"), None)).unwrap();
    let err = permanent(robot.send(&one(), None).await);
    assert!(err.contains("300001"), "{err}");

    let p = Provider::start(Kind::DingTalk, &token(), Some(&secret())).await;
    let robot = DingTalk::new(dingtalk_cfg(p.url("/robot/send"), Some(SECRET_VAR))).unwrap();
    p.set_mode(Mode::Throttle);
    let err = transient(robot.send(&one(), None).await);
    assert!(err.contains("130101"), "{err}");
    p.set_mode(Mode::Status(502));
    transient(robot.send(&one(), None).await);
    p.set_mode(Mode::Normal);
    robot.send(&one(), None).await.unwrap();
    assert_eq!(p.hits().len(), 1);
}

// ---- Feishu ----

fn feishu_cfg(endpoint: String, secret_var: Option<&str>) -> FeishuConfig {
    FeishuConfig {
        webhook_token_env: OTHER_VAR.into(),
        secret_env: secret_var.map(str::to_owned),
        at_user_ids: vec!["ou_lead".into()],
        mentions: [("+8613900000007".to_owned(), "ou_bo".to_owned())].into(),
        at_all: false,
        endpoint: Some(endpoint),
        timeout_secs: Some(2),
    }
}

async fn feishu(secret: Option<&str>) -> Provider {
    Provider::start(Kind::Feishu, &token(), secret).await
}

#[tokio::test]
async fn feishu_gets_a_signed_card_red_while_firing_green_when_resolved() {
    let p = feishu(Some(&secret())).await;
    let robot = Feishu::new(feishu_cfg(
        p.url("/open-apis/bot/v2/hook"),
        Some(SECRET_VAR),
    ))
    .unwrap();
    // A rota hands phone numbers: mapped to user ids, or written out.
    let on_duty = ["+8613900000007".to_owned(), "+8613900000008".to_owned()];
    robot.send(&one(), Some(&on_duty)).await.unwrap();
    let hits = p.hits();
    assert_eq!(hits.len(), 1, "refused: {:?}", p.refused());
    let body = hits[0].json();
    assert_eq!(body["msg_type"], "interactive");
    assert!(body["sign"].is_string() && body["timestamp"].is_string());
    assert_eq!(body["card"]["header"]["template"], "red");
    assert_eq!(body["card"]["header"]["title"]["content"], one().title());
    let text = body["card"]["elements"].to_string();
    assert!(text.contains("POST /pay"), "{text}");
    assert!(text.contains("**12.5%**"), "{text}");
    assert!(
        text.contains(&format!("[dashboard]({})", link("POST /pay"))),
        "{text}"
    );
    assert!(text.contains("<at id=ou_bo></at>"), "{text}");
    assert!(text.contains("@+8613900000008"), "{text}");
    assert!(
        !text.contains("ou_lead"),
        "the rota replaces the configured ids: {text}"
    );

    let mut resolved = one();
    resolved.kind = NoticeKind::Resolved;
    resolved.alerts[0].status = AlertStatus::Resolved;
    robot.send(&resolved, None).await.unwrap();
    let body = p.hits()[1].json();
    assert_eq!(body["card"]["header"]["template"], "green");
    assert!(
        body["card"]["elements"]
            .to_string()
            .contains("<at id=ou_lead></at>")
    );
}

#[tokio::test]
async fn a_feishu_storm_card_stays_within_20_kb_and_says_how_many_more() {
    let p = feishu(None).await;
    let robot = Feishu::new(feishu_cfg(p.url("/open-apis/bot/v2/hook"), None)).unwrap();
    let storm = notice(
        (0..400)
            .map(|i| {
                alert(&format!(
                    "GET /api/v1/items/by-category/{i}/and/a/long/tail"
                ))
            })
            .collect(),
    );
    robot.send(&storm, None).await.unwrap();
    let hits = p.hits();
    assert_eq!(hits.len(), 1, "refused: {:?}", p.refused());
    assert!(hits[0].body.len() <= 20 * 1024, "{}", hits[0].body.len());
    let body = hits[0].json();
    assert!(body.get("sign").is_none(), "an unsigned robot gets no sign");
    let elements = body["card"]["elements"].as_array().unwrap();
    // Condition line, the alerts shown, "and N more", the mentions.
    let shown = elements.len() - 3;
    assert!(shown > 10 && shown < 400, "{shown}");
    let more = format!("… and {} more", 400 - shown);
    assert!(body.to_string().contains(&more), "{more}");
}

#[tokio::test]
async fn feishu_refused_signature_is_given_up_and_frequency_limits_are_retried() {
    let p = feishu(Some("the-robots-own-secret")).await;
    let robot = Feishu::new(feishu_cfg(
        p.url("/open-apis/bot/v2/hook"),
        Some(SECRET_VAR),
    ))
    .unwrap();
    let err = permanent(robot.send(&one(), None).await);
    assert!(err.contains("19021"), "{err}");
    assert_eq!(p.refused().len(), 1);

    let p = Provider::start(Kind::Feishu, "another-token", None).await;
    let robot = Feishu::new(feishu_cfg(p.url("/open-apis/bot/v2/hook"), None)).unwrap();
    let err = permanent(robot.send(&one(), None).await);
    assert!(err.contains("19001"), "{err}");

    let p = feishu(Some(&secret())).await;
    let robot = Feishu::new(feishu_cfg(
        p.url("/open-apis/bot/v2/hook"),
        Some(SECRET_VAR),
    ))
    .unwrap();
    p.set_mode(Mode::Throttle);
    let err = transient(robot.send(&one(), None).await);
    assert!(err.contains("11232"), "{err}");
    p.set_mode(Mode::Status(503));
    transient(robot.send(&one(), None).await);
    p.set_mode(Mode::Normal);
    robot.send(&one(), None).await.unwrap();
    assert_eq!(p.hits().len(), 1);
}

// ---- WeCom ----

fn wecom_cfg(url: String) -> WeComConfig {
    WeComConfig {
        key_env: SECRET_VAR.into(),
        mentioned_mobiles: vec![],
        format: WeComFormat::Auto,
        url: Some(url),
        timeout_secs: Some(2),
    }
}

#[tokio::test]
async fn wecom_gets_markdown_or_text_with_the_mentioned_mobiles() {
    let p = Provider::start(Kind::WeCom, &secret(), None).await;
    let robot = WeCom::new(wecom_cfg(p.url("/cgi-bin/webhook/send"))).unwrap();

    robot.send(&one(), None).await.unwrap();
    let body = p.hits()[0].json();
    assert_eq!(body["msgtype"], "markdown", "{body}");
    let md = body["markdown"]["content"].as_str().unwrap();
    assert!(md.contains("POST /pay") && md.contains("12.5%"), "{md}");
    assert!(md.contains(&link("POST /pay")), "{md}");

    robot
        .send(&one(), Some(&["13900000003".to_owned()]))
        .await
        .unwrap();
    let body = p.hits()[1].json();
    assert_eq!(body["msgtype"], "text", "{body}");
    assert_eq!(
        body["text"]["mentioned_mobile_list"],
        serde_json::json!(["13900000003"])
    );
    let text = body["text"]["content"].as_str().unwrap();
    assert!(text.starts_with(&one().title()), "{text}");
    assert!(text.contains(&link("POST /pay")), "{text}");
}

#[tokio::test]
async fn a_wecom_storm_stays_within_its_size_limit() {
    let p = Provider::start(Kind::WeCom, &secret(), None).await;
    let mut cfg = wecom_cfg(p.url("/cgi-bin/webhook/send"));
    cfg.format = WeComFormat::Text;
    let robot = WeCom::new(cfg).unwrap();
    let many = (0..60)
        .map(|i| {
            alert(&format!(
                "GET /api/v1/items/{i}/with/a/rather/long/route/name"
            ))
        })
        .collect();
    robot.send(&notice(many), None).await.unwrap();
    let body = p.hits()[0].json();
    let text = body["text"]["content"].as_str().unwrap();
    assert!(text.len() <= 2048, "{}", text.len());
    let shown = text.matches("\n- firing").count();
    assert!(shown >= 5, "{text}");
    assert!(
        text.ends_with(&format!("- … and {} more\n", 60 - shown)),
        "{text}"
    );
}

#[tokio::test]
async fn wecom_invalid_key_is_permanent_and_frequency_limit_is_transient() {
    let p = Provider::start(Kind::WeCom, "some-other-key", None).await;
    let robot = WeCom::new(wecom_cfg(p.url("/cgi-bin/webhook/send"))).unwrap();
    let err = permanent(robot.send(&one(), None).await);
    assert!(err.contains("93000"), "{err}");

    let p = Provider::start(Kind::WeCom, &secret(), None).await;
    let robot = WeCom::new(wecom_cfg(p.url("/cgi-bin/webhook/send"))).unwrap();
    p.set_mode(Mode::Throttle);
    let err = transient(robot.send(&one(), None).await);
    assert!(err.contains("45009"), "{err}");
    assert!(p.hits().is_empty());
}

// ---- webhook ----

fn webhook_cfg(url: String, secret_var: Option<&str>) -> WebhookConfig {
    WebhookConfig {
        url,
        headers: [("X-Team".to_owned(), "pay".to_owned())].into(),
        headers_env: Default::default(),
        secret_env: secret_var.map(str::to_owned),
        timeout_secs: Some(2),
    }
}

/// The receiver wants `Authorization: Token <id>`.
async fn hook(secret: Option<&str>) -> Provider {
    Provider::start(Kind::Webhook, "remediation-token", secret).await
}

fn authorized(mut cfg: WebhookConfig) -> WebhookConfig {
    cfg.headers
        .insert("Authorization".into(), "Token remediation-token".into());
    cfg
}

#[tokio::test]
async fn the_webhook_posts_the_versioned_document_signed() {
    let p = hook(Some(&secret())).await;
    let h = Webhook::new(authorized(webhook_cfg(p.url("/hook"), Some(SECRET_VAR)))).unwrap();
    h.send(&one(), Some(&["ignored".to_owned()])).await.unwrap();

    let hits = p.hits();
    assert_eq!(hits.len(), 1, "refused: {:?}", p.refused());
    assert_eq!(
        hits[0].headers["x-panorama-notice"],
        "url-error-ratio/login/fired/1"
    );
    assert_eq!(hits[0].headers["x-team"], "pay");
    let doc = hits[0].json();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["kind"], "firing");
    assert_eq!(doc["rule"], "url-error-ratio");
    assert_eq!(doc["severity"], "critical");
    assert_eq!(doc["labels"]["team"], "pay");
    assert_eq!(doc["firing"], 1);
    assert_eq!(doc["title"], one().title());
    let a = &doc["alerts"][0];
    assert_eq!(a["series"], "POST /pay");
    assert_eq!(a["host"], "web1");
    assert_eq!(a["value"], "12.5%");
    assert_eq!(a["link"], link("POST /pay"));
    assert_eq!(a["status"], "firing");
}

#[tokio::test]
async fn the_webhook_authorization_can_come_from_the_environment() {
    // The receiver's token is the value of CARGO_PKG_NAME, prefixed.
    let p = Provider::start(Kind::Webhook, &secret(), None).await;
    let mut cfg = webhook_cfg(p.url("/hook"), None);
    cfg.headers_env
        .insert("Authorization".into(), SECRET_VAR.into());
    let h = Webhook::new(cfg).unwrap();
    // The header holds the bare value, not "Token <value>": refused.
    let err = permanent(h.send(&one(), None).await);
    assert!(err.contains("401"), "{err}");
    assert_eq!(p.refused(), ["bad Authorization"]);
}

#[tokio::test]
async fn a_webhook_with_the_wrong_secret_is_permanent_and_a_503_transient() {
    let p = hook(Some("the-receivers-secret")).await;
    let h = Webhook::new(authorized(webhook_cfg(p.url("/hook"), Some(SECRET_VAR)))).unwrap();
    let err = permanent(h.send(&one(), None).await);
    assert!(err.contains("401"), "{err}");
    assert_eq!(p.refused(), ["bad signature"]);

    let p = hook(None).await;
    let h = Webhook::new(authorized(webhook_cfg(p.url("/hook"), None))).unwrap();
    p.set_mode(Mode::Status(503));
    transient(h.send(&one(), None).await);
    p.set_mode(Mode::Status(429));
    transient(h.send(&one(), None).await);
    p.set_mode(Mode::Status(404));
    permanent(h.send(&one(), None).await);
    p.set_mode(Mode::Sleep(Duration::from_secs(4)));
    let err = transient(h.send(&one(), None).await);
    assert!(err.contains("timed out"), "{err}");
}

// ---- rule files ----

const GOOD: &str = r#"
[[receiver]]
name = "sms-aliyun"
[receiver.sms]
to = ["13800000000"]
[receiver.sms.aliyun]
access_key_id = "LTAI5tExample"
access_key_secret_env = "PANORAMA_ALIYUN_SECRET"
sign_name = "Panorama"
template_code = "SMS_123456789"

[[receiver]]
name = "sms-gateway"
[receiver.sms]
to = ["+8613800000000"]
[receiver.sms.gateway]
url = "https://sms.example.com/v1/send"
method = "POST"
headers = { "X-Team" = "pay" }
content_type = "application/json"
headers_env = { Authorization = "PANORAMA_SMS_AUTH" }
body = '{"to": {{phones_json}}, "text": {{text|json}}}'
success_pointer = "/code"
success_value = "OK"
retry_values = ["THROTTLED"]

[[receiver]]
name = "dingtalk"
[receiver.dingtalk]
access_token_env = "PANORAMA_DINGTALK_TOKEN"
secret_env = "PANORAMA_DINGTALK_SECRET"
at_mobiles = ["13800000000"]
at_all = false

[[receiver]]
name = "wecom"
[receiver.wecom]
key_env = "PANORAMA_WECOM_KEY"
mentioned_mobiles = ["13800000000", "@all"]
format = "auto"

[[receiver]]
name = "remediate"
[receiver.webhook]
url = "https://ops.example.com/hooks/panorama"
headers_env = { Authorization = "PANORAMA_HOOK_AUTH" }
secret_env = "PANORAMA_HOOK_SECRET"

# Remediation: a silent web host is taken out of the load balancer.
[[route]]
match = { rule = "host-silent", host = "re:^web" }
receivers = ["remediate", "dingtalk"]
"#;

#[test]
fn a_rules_directory_with_every_channel_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("receivers.toml"), GOOD).unwrap();
    let set = panorama_rules::rule::load_dir(dir.path()).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let kinds: std::collections::BTreeMap<String, &'static str> = set
        .receivers
        .iter()
        .map(|(name, r)| match &r.kind {
            ReceiverKind::Channel(c) => (name.clone(), c.kind()),
            ReceiverKind::Rota(_) => (name.clone(), "rota"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("dingtalk".to_owned(), "dingtalk"),
            ("remediate".to_owned(), "webhook"),
            ("sms-aliyun".to_owned(), "sms"),
            ("sms-gateway".to_owned(), "sms"),
            ("wecom".to_owned(), "wecom"),
        ]
        .into()
    );
    assert!(matches!(
        set.receivers["sms-aliyun"].kind,
        ReceiverKind::Channel(ChannelConfig::Sms(_))
    ));
}

/// Each bad receiver, the error it must produce, and where: a value a
/// channel refuses at its key; what concerns the whole table (a missing or
/// unknown key, no provider) at the table's header.
#[test]
fn bad_channel_tables_are_refused_with_file_line_and_column() {
    let cases: &[(&str, &str, usize)] = &[
        (
            "[[receiver]]\nname = \"d\"\n[receiver.dingtalk]\nsecret_env = \"X\"\n",
            "missing field `access_token_env`",
            3,
        ),
        (
            "[[receiver]]\nname = \"w\"\n[receiver.webhook]\nurl = \"ftp//nowhere\"\n",
            "`url` \"ftp//nowhere\"",
            4,
        ),
        (
            "[[receiver]]\nname = \"s\"\n[receiver.sms]\nto = [\"138\"]\n[receiver.sms.aliyun]\naccess_key_id = \"a\"\naccess_key_secret_env = \"B\"\nsign_name = \"c\"\ntemplate_code = \"d\"\n",
            "phone number \"138\"",
            4,
        ),
        (
            "[[receiver]]\nname = \"s\"\n[receiver.sms]\nto = [\"13800000000\"]\n",
            "expected a provider",
            3,
        ),
        (
            "[[receiver]]\nname = \"g\"\n[receiver.sms.gateway]\nurl = \"https://x.example.com/\"\nbody = \"{{txet}}\"\n",
            "unknown placeholder `txet`",
            5,
        ),
        (
            "[[receiver]]\nname = \"q\"\n[receiver.wecom]\nkey = \"inline-secret\"\nkey_env = \"K\"\n",
            "unknown field `key`",
            3,
        ),
        (
            "[[receiver]]\nname = \"t\"\n[receiver.dingtalk]\naccess_token_env = \"T\"\nurl = \"https://oapi.dingtalk.com/robot/send?access_token=inline\"\n",
            "without a query",
            5,
        ),
    ];
    for (text, want, line) in cases {
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
