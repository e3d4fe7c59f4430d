//! The whole alert path across real processes: NDJSON events into a real
//! `panorama`, a rule fires, the mail reaches a real SMTP server; then
//! `panorama` restarts while the alert fires and sends no second page, and
//! the resolved notice still goes out once the errors stop.

use std::time::{Duration, Instant};

use panorama_tests::{
    Proc, binary, free_port, mail_route, mails, smtp_server, wait_for_mails, wait_healthy,
};

async fn post(url: &str, ok: usize, failed: usize) {
    let ts = chrono::Utc::now().to_rfc3339();
    let mut body = String::new();
    for i in 0..ok + failed {
        body.push_str(&format!(
            "{{\"ts\":\"{ts}\",\"layer\":\"url\",\"service\":\"pay\",\"host\":\"web1\",\"name\":\"POST /api/pay\",\"ok\":{},\"code\":\"{}\",\"latency_ms\":12}}\n",
            i >= failed,
            if i >= failed { 200 } else { 502 }
        ));
    }
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert!(r.status().is_success(), "ingest: {}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_mails_survives_a_restart_without_a_second_page_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    std::fs::create_dir_all(&maildir).unwrap();
    let smtp_port = free_port();
    let _smtp = smtp_server(smtp_port, &maildir, &dir.path().join("smtp.log"));
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("pay.toml"),
        format!(
            r#"
[[rule]]
name = "pay-errors"
layer = "url"
service = "pay"
series = "glob:POST /api/*"
window = "1m"
every = "1s"
when = "error_ratio > 50%"
min_count = 5
severity = "critical"

{mail}"#,
            mail = mail_route(smtp_port, "1s", "1s", "1h")
        ),
    )
    .unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let args: Vec<String> = [
        "collector",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--rules",
        &rules.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let log = dir.path().join("panorama.log");
    let mut p = Proc::start(&binary("panorama"), &args, &log);
    wait_healthy(&format!("{url}/health"), Duration::from_secs(30), &log).await;

    let first_bad = Instant::now();
    post(&url, 2, 10).await;
    let got = wait_for_mails(&maildir, 1, Duration::from_secs(30)).await;
    let latency = first_bad.elapsed();
    assert_eq!(
        got.len(),
        1,
        "one mail for the firing alert; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let s = got[0].subject();
    assert!(
        s.contains("FIRING") && s.contains("pay-errors") && s.contains("POST /api/pay"),
        "{s}"
    );
    assert!(got[0].text().contains("83.3%"), "value 10/12 in the body");
    println!("alert latency, first bad event to mail accepted: {latency:?}");

    let alerts: serde_json::Value = reqwest::get(format!("{url}/api/v1/alerts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        alerts["firing"].as_array().map(Vec::len),
        Some(1),
        "{alerts}"
    );
    assert_eq!(alerts["firing"][0]["series"], "POST /api/pay");

    // Restart while firing.
    assert!(p.terminate(Duration::from_secs(30)), "clean stop");
    let mut p = Proc::start(&binary("panorama"), &args, &log);
    wait_healthy(&format!("{url}/health"), Duration::from_secs(30), &log).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(mails(&maildir).len(), 1, "no second page after the restart");
    let alerts: serde_json::Value = reqwest::get(format!("{url}/api/v1/alerts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        alerts["firing"].as_array().map(Vec::len),
        Some(1),
        "still firing after restart: {alerts}"
    );

    // Healthy traffic: the ratio falls below 50 % (or a new minute has only
    // good requests) and the resolved notice goes out.
    post(&url, 200, 0).await;
    let got = wait_for_mails(&maildir, 2, Duration::from_secs(30)).await;
    assert_eq!(
        got.len(),
        2,
        "the resolved mail; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        got[1].subject().contains("RESOLVED"),
        "{}",
        got[1].subject()
    );
    let history: serde_json::Value =
        reqwest::get(format!("{url}/api/v1/alerts/history?rule=pay-errors"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let events: Vec<&str> = history["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["event"].as_str())
        .collect();
    for want in ["fired", "notified", "delivered", "resolved"] {
        assert!(events.contains(&want), "history has {want}: {events:?}");
    }
    assert_eq!(
        events.iter().filter(|e| **e == "fired").count(),
        1,
        "{events:?}"
    );

    // Hot reload: a broken file is refused with its position while the
    // rules in force keep running; removing it clears the error.
    std::fs::write(
        rules.join("broken.toml"),
        "[[rule]]\nname = \"b\"\nlayer = \"url\"\nwhen = \"p99 >> 3\"\n",
    )
    .unwrap();
    let alerts = poll_alerts(&url, |a| !a["rule_errors"].as_array().unwrap().is_empty()).await;
    let err = &alerts["rule_errors"][0];
    assert!(
        err["at"].as_str().unwrap().ends_with("broken.toml:4:14"),
        "{err}"
    );
    assert_eq!(
        alerts["rules"].as_array().map(Vec::len),
        Some(1),
        "the good rule keeps running"
    );
    std::fs::remove_file(rules.join("broken.toml")).unwrap();
    poll_alerts(&url, |a| a["rule_errors"].as_array().unwrap().is_empty()).await;
    assert!(p.terminate(Duration::from_secs(30)));
}

/// `/api/v1/alerts` once `ok` holds of it (reloads are picked up within seconds).
async fn poll_alerts(url: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let a: serde_json::Value = reqwest::get(format!("{url}/api/v1/alerts"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ok(&a) {
            return a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "reload not seen: {a}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
