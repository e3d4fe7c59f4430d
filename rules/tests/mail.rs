//! Mail through a real SMTP server (aiosmtpd, started by the tests): what
//! arrives, over which kind of connection, and how failures are sorted for
//! the outbox.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use panorama_rules::notify::mail::{MailConfig, MailError, Mailer};
use panorama_rules::notify::{AlertStatus, Notice, NoticeAlert, NoticeKind};
use support::{SmtpOptions, SmtpSecurity, SmtpServer, free_port, unescape_html};

const WAIT: Duration = Duration::from_secs(15);

/// 2026-11-22 13:00:00 UTC.
const T0: i64 = 1_795_352_400_000;

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
        link: format!(
            "https://panorama.example.com/series?layer=url&service=login&name={}&minute={T0}",
            series.replace(' ', "%20")
        ),
        since_ms: T0,
        acked_by: Some("alice".into()),
    }
}

fn notice(id: &str, alerts: Vec<NoticeAlert>) -> Notice {
    Notice {
        id: id.into(),
        kind: NoticeKind::Firing,
        rule: "url-error-ratio".into(),
        severity: panorama_rules::rule::Severity::Critical,
        condition: "error_ratio > 5% over 5m".into(),
        labels: vec![
            ("team".into(), "payments".into()),
            ("env".into(), "prod".into()),
        ],
        alerts,
        created_ms: T0 + 90_000,
    }
}

fn mailer(cfg: MailConfig) -> Mailer {
    Mailer::new(cfg).expect("valid mail configuration")
}

#[tokio::test]
async fn one_alert_arrives_over_plain_smtp_with_both_bodies() {
    let server = SmtpServer::start();
    let n = notice("rule-7/login/fired/1", vec![alert("POST /pay")]);
    mailer(server.mail_config(&["oncall@example.com", "Lead <lead@example.com>"]))
        .send(&n)
        .await
        .unwrap();

    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.subject(), n.title());
    assert_eq!(
        m.subject(),
        "[FIRING 1] critical url-error-ratio: url login POST /pay web1 12.5% vs 5% (firing)"
    );
    assert_eq!(
        m.header("Message-ID").as_deref(),
        Some("<rule-7/login/fired/1@panorama>")
    );
    assert_eq!(
        m.header("X-Panorama-Notice").as_deref(),
        Some("rule-7/login/fired/1")
    );
    assert_eq!(m.mail.ctype.mimetype, "multipart/alternative");
    assert_eq!(m.rcpt_to(), ["oncall@example.com", "lead@example.com"]);
    assert_eq!(
        m.header("X-Sink-Mail-From").as_deref(),
        Some("<alerts@panorama.test>")
    );
    assert!(!m.tls());
    // The Date is when the notice was decided, so a retried copy is identical.
    let date = m.header("Date").unwrap();
    assert!(date.contains("22 Nov 2026 13:01:30"), "{date}");

    let link = &n.alerts[0].link;
    // What a reader of the HTML part sees; escaping is checked separately.
    for (kind, body) in [("text", m.text()), ("html", unescape_html(&m.html()))] {
        for needle in [
            "url",
            "login",
            "POST /pay",
            "web1",
            "12.5%",
            "5%",
            "firing",
            "alice",
            "2026-11-22 13:00:00 UTC",
            "error ratio of POST /pay is 12.5%",
            "url-error-ratio",
            "critical",
            "error_ratio > 5% over 5m",
            "team=payments, env=prod",
        ] {
            assert!(
                body.contains(needle),
                "{kind} body lacks {needle:?}:\n{body}"
            );
        }
        assert!(body.contains(link), "{kind} body lacks the link:\n{body}");
    }
    assert!(
        m.html()
            .contains("<a href=\"https://panorama.example.com/series?")
    );
}

#[tokio::test]
async fn a_hostile_series_name_is_escaped_in_html_and_kept_in_text() {
    let server = SmtpServer::start();
    let evil = "<script>alert(\"x\")</script> & <b>";
    mailer(server.mail_config(&["oncall@example.com"]))
        .send(&notice("evil", vec![alert(evil)]))
        .await
        .unwrap();
    let m = &server.wait_for_messages(1, WAIT).await[0];
    let html = m.html();
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(unescape_html(&html).contains(evil), "{html}");
    assert!(m.text().contains(evil), "{}", m.text());
    assert!(m.subject().contains(evil), "{}", m.subject());
}

#[tokio::test]
async fn starttls_with_a_private_ca_given_as_ca_file() {
    let server = SmtpServer::start_with(SmtpOptions {
        security: SmtpSecurity::StartTls,
        ..Default::default()
    });
    mailer(server.mail_config(&["oncall@example.com"]))
        .send(&notice("starttls", vec![alert("GET /user/:id")]))
        .await
        .unwrap();
    let m = &server.wait_for_messages(1, WAIT).await[0];
    assert!(m.tls(), "the message travelled in clear text");
    assert!(m.text().contains("GET /user/:id"));
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_not_trusted() {
    let server = SmtpServer::start_with(SmtpOptions {
        security: SmtpSecurity::StartTls,
        ..Default::default()
    });
    let mut cfg = server.mail_config(&["oncall@example.com"]);
    cfg.ca_file = None;
    let err = mailer(cfg)
        .send(&notice("untrusted", vec![alert("x")]))
        .await
        .unwrap_err();
    // Not permanent: an operator fixes the CA and the outbox's retry delivers.
    assert!(matches!(err, MailError::Transient { .. }), "{err:?}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn starttls_is_required_not_opportunistic() {
    // A plain server, which offers no STARTTLS: the mailer must refuse to
    // go on in clear text.
    let server = SmtpServer::start();
    let mut cfg = server.mail_config(&["oncall@example.com"]);
    cfg.security = panorama_rules::notify::mail::Security::StartTls;
    let err = mailer(cfg)
        .send(&notice("downgrade", vec![alert("x")]))
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err:?}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn implicit_tls() {
    let server = SmtpServer::start_with(SmtpOptions {
        security: SmtpSecurity::Tls,
        ..Default::default()
    });
    mailer(server.mail_config(&["oncall@example.com"]))
        .send(&notice("tls", vec![alert("GET /health")]))
        .await
        .unwrap();
    let m = &server.wait_for_messages(1, WAIT).await[0];
    assert!(m.tls());
    assert!(m.html().contains("GET /health"));
}

/// `std::env::set_var` is unsafe in edition 2024 and unsafe code is
/// forbidden here, so the password comes from a variable cargo sets for
/// every test run: `CARGO_PKG_NAME` (= "panorama-rules").
fn password_from_env() -> (String, String) {
    let var = "CARGO_PKG_NAME".to_string();
    let value = std::env::var(&var)
        .expect("cargo sets CARGO_PKG_NAME when it runs tests; run them with cargo test");
    (var, value)
}

#[tokio::test]
async fn auth_over_starttls_with_the_password_from_the_environment() {
    let (var, password) = password_from_env();
    let server = SmtpServer::start_with(SmtpOptions {
        security: SmtpSecurity::StartTls,
        auth: Some(("alerts".into(), password)),
        ..Default::default()
    });
    let mut cfg = server.mail_config(&["oncall@example.com"]);
    cfg.username = Some("alerts".into());
    cfg.password_env = Some(var);
    mailer(cfg)
        .send(&notice("auth", vec![alert("x")]))
        .await
        .unwrap();
    let m = &server.wait_for_messages(1, WAIT).await[0];
    assert_eq!(m.auth_user().as_deref(), Some("alerts"));
    assert!(m.tls());
}

#[tokio::test]
async fn auth_over_plain_smtp_on_loopback_and_a_wrong_password_is_permanent() {
    let (var, password) = password_from_env();
    let server = SmtpServer::start_with(SmtpOptions {
        auth: Some(("alerts".into(), password)),
        ..Default::default()
    });
    let mut cfg = server.mail_config(&["oncall@example.com"]);
    cfg.username = Some("alerts".into());
    cfg.password_env = Some(var);
    mailer(cfg.clone())
        .send(&notice("auth-plain", vec![alert("x")]))
        .await
        .unwrap();
    let m = &server.wait_for_messages(1, WAIT).await[0];
    assert_eq!(m.auth_user().as_deref(), Some("alerts"));

    // CARGO_PKG_VERSION is set too, and is not the password.
    cfg.password_env = Some("CARGO_PKG_VERSION".into());
    let err = mailer(cfg)
        .send(&notice("auth-wrong", vec![alert("x")]))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert_eq!(err.code(), Some(535), "{err:?}");

    // No credentials at all: the server wants AUTH before MAIL (530).
    let err = mailer(server.mail_config(&["oncall@example.com"]))
        .send(&notice("auth-none", vec![alert("x")]))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn a_missing_password_variable_fails_at_construction() {
    let mut cfg = SmtpServer::start().mail_config(&["oncall@example.com"]);
    cfg.username = Some("alerts".into());
    cfg.password_env = Some("PANORAMA_TEST_SURELY_UNSET_PASSWORD".into());
    let err = Mailer::new(cfg).unwrap_err();
    assert!(matches!(err, MailError::Config(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("PANORAMA_TEST_SURELY_UNSET_PASSWORD")
    );
}

#[tokio::test]
async fn a_server_that_is_down_is_a_transient_error() {
    let server = SmtpServer::start();
    let mut cfg = server.mail_config(&["oncall@example.com"]);
    cfg.port = Some(free_port());
    let started = Instant::now();
    let err = mailer(cfg)
        .send(&notice("down", vec![alert("x")]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MailError::Transient { code: None, .. }),
        "{err:?}"
    );
    assert!(!err.is_permanent());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_transient() {
    // Accepts the connection (the kernel does) and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = SmtpServer::start();
    let mut cfg = server.mail_config(&["oncall@example.com"]);
    cfg.port = Some(silent.local_addr().unwrap().port());
    cfg.timeout_secs = Some(1);
    let started = Instant::now();
    let err = mailer(cfg)
        .send(&notice("silent", vec![alert("x")]))
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_server_down_and_back_then_the_same_mailer_delivers() {
    let mut server = SmtpServer::start();
    let m = mailer(server.mail_config(&["oncall@example.com"]));
    m.send(&notice("before", vec![alert("x")])).await.unwrap();
    server.wait_for_messages(1, WAIT).await;

    server.stop();
    let err = m
        .send(&notice("during", vec![alert("x")]))
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err:?}");

    server.restart();
    // The pooled connection died with the old server; a fresh one is made.
    m.send(&notice("during", vec![alert("x")])).await.unwrap();
    let mails = server.wait_for_messages(2, WAIT).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1].header("Message-ID").as_deref(),
        Some("<during@panorama>")
    );
}

#[tokio::test]
async fn a_retried_notice_is_the_same_message() {
    let server = SmtpServer::start();
    let m = mailer(server.mail_config(&["oncall@example.com"]));
    let n = notice("retry", vec![alert("x")]);
    m.send(&n).await.unwrap();
    m.send(&n).await.unwrap();
    let mails = server.wait_for_messages(2, WAIT).await;
    assert_eq!(mails[0].header("Message-ID"), mails[1].header("Message-ID"));
    assert_eq!(mails[0].header("Date"), mails[1].header("Date"));
    assert_eq!(mails[0].text(), mails[1].text());
    assert_eq!(mails[0].html(), mails[1].html());
}

#[tokio::test]
async fn a_refused_recipient_is_permanent_and_nobody_gets_a_copy() {
    let server = SmtpServer::start_with(SmtpOptions {
        reject: vec!["gone@example.com".into()],
        ..Default::default()
    });
    let err = mailer(server.mail_config(&["oncall@example.com", "gone@example.com"]))
        .send(&notice("rejected", vec![alert("x")]))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert_eq!(err.code(), Some(550), "{err:?}");
    assert!(err.to_string().contains("gone@example.com"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_deferred_recipient_is_transient() {
    let server = SmtpServer::start_with(SmtpOptions {
        defer: vec!["busy@example.com".into()],
        ..Default::default()
    });
    let err = mailer(server.mail_config(&["busy@example.com"]))
        .send(&notice("deferred", vec![alert("x")]))
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err:?}");
    assert_eq!(err.code(), Some(451), "{err:?}");
}

#[tokio::test]
async fn a_storm_of_fifty_alerts_is_one_mail_naming_every_series() {
    let server = SmtpServer::start();
    let alerts: Vec<NoticeAlert> = (0..50)
        .map(|i| {
            let mut a = alert(&format!("GET /api/v1/item{i:02}"));
            a.value = format!("{}.0%", 10 + i);
            if i % 2 == 1 {
                a.acked_by = None;
            }
            a
        })
        .collect();
    let n = notice("storm", alerts);
    mailer(server.mail_config(&["oncall@example.com"]))
        .send(&n)
        .await
        .unwrap();
    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(
        m.subject(),
        "[FIRING 50] critical url-error-ratio: 50 series"
    );
    let (text, html) = (m.text(), m.html());
    for i in 0..50 {
        let series = format!("GET /api/v1/item{i:02}");
        let value = format!("{}.0%", 10 + i);
        assert!(text.contains(&series), "text lacks {series}");
        assert!(html.contains(&series), "html lacks {series}");
        assert!(text.contains(&value), "text lacks {value}");
        assert!(html.contains(&value), "html lacks {value}");
    }
    assert_eq!(html.matches("<a href=").count(), 50);
}

#[tokio::test]
async fn a_resolved_notice_says_so() {
    let server = SmtpServer::start();
    let mut a = alert("POST /pay");
    a.status = AlertStatus::Resolved;
    let mut n = notice("resolved", vec![a]);
    n.kind = NoticeKind::Resolved;
    mailer(server.mail_config(&["oncall@example.com"]))
        .send(&n)
        .await
        .unwrap();
    let m = &server.wait_for_messages(1, WAIT).await[0];
    assert!(m.subject().starts_with("[RESOLVED 1]"), "{}", m.subject());
    assert!(
        m.text().contains("status:          resolved"),
        "{}",
        m.text()
    );
}
