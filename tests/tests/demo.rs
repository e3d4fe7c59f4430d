//! `panorama demo`, the README's first command, run for real: the simulated
//! service's logs flow through the in-process agent, the injected incident
//! fires the demo's rules, and one incident mail naming the payment gateway
//! as the probable cause lands in the mailbox directory, then one resolved
//! (a Redis outage of the same service meanwhile is paged on its own);
//! the dashboard answers, and Ctrl-C (SIGTERM) stops everything cleanly.

use std::time::{Duration, Instant};

use panorama_tests::{Proc, binary, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_incident_is_one_mail_naming_the_gateway_then_one_resolved_mail() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("demo.log");
    let args: Vec<String> = [
        "demo",
        "--dir",
        &dir.path().join("demo").display().to_string(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--incident-after-secs",
        "10",
        "--incident-secs",
        "60",
        // The sessions Redis hangs while the gateway fails: the same
        // service depends on both, but it is a second fault and is paged
        // as such, never folded into the gateway's incident.
        "--redis-outage-after-secs",
        "40",
        "--redis-outage-secs",
        "60",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut p = Proc::start(&binary("panorama"), &args, &log);
    let mailbox = dir.path().join("demo/mailbox");
    let read_mails = || -> Vec<String> {
        std::fs::read_dir(&mailbox)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .filter_map(|p| std::fs::read_to_string(p).ok())
                    // Undo quoted-printable's soft breaks and `=` escapes.
                    .map(|m| {
                        m.replace("=\r\n", "")
                            .replace("=\n", "")
                            .replace("=3D", "=")
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // The Subject header, unfolded (a long one continues on indented lines).
    let subject = |m: &str| {
        let mut lines = m.lines().skip_while(|l| !l.starts_with("Subject: "));
        let mut s = lines.next().unwrap_or("").to_owned();
        for l in lines.take_while(|l| l.starts_with(' ') || l.starts_with('\t')) {
            s.push(' ');
            s.push_str(l.trim_start());
        }
        s
    };
    let start = Instant::now();
    let mut found = None;
    while start.elapsed() < Duration::from_secs(150) {
        if let Some(m) = read_mails()
            .into_iter()
            .find(|m| subject(m).contains("[FIRING") && subject(m).contains("incident 1"))
        {
            found = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(mail) = found else {
        panic!(
            "no firing mail within 150 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    // The gateway's failure shows in four alerts (call p90 and errors, the
    // pay route, the payment event): one incident, one page, naming the
    // gateway call as the probable cause, with one link to the incident.
    let s = subject(&mail);
    assert!(
        s.contains("incident 1: probable cause: call game payment-gateway"),
        "{s}"
    );
    assert!(s.contains("POST /api/pay") && s.contains("payment "), "{s}");
    assert!(
        mail.contains(&format!("http://127.0.0.1:{port}/incidents/1")),
        "the mail links to the incident on the dashboard:\n{mail}"
    );
    // Every layer the simulator writes reached the store.
    let client = reqwest::Client::new();
    for layer in ["url", "business", "call", "component", "infra"] {
        let now = chrono::Utc::now().timestamp_millis();
        let r: serde_json::Value = client
            .get(format!(
                "http://127.0.0.1:{port}/api/v1/series?layer={layer}&from={}&to={}",
                now - 600_000,
                now + 60_000
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let count: u64 = r["points"]
            .as_array()
            .map(|p| p.iter().filter_map(|x| x["count"].as_u64()).sum())
            .unwrap_or(0);
        assert!(count > 0, "layer {layer} has data: {r}");
    }
    // The gateway recovers: one resolved mail for the whole incident, and
    // never a second firing one. The Redis outage is paged on its own.
    let start = Instant::now();
    let is_gateway = |s: &str| {
        s.contains("incident 1")
            || ["payment-gateway", "pay-route-errors", "payments-failing"]
                .iter()
                .any(|r| s.contains(r))
    };
    while start.elapsed() < Duration::from_secs(240)
        && !read_mails().iter().any(|m| {
            let s = subject(m);
            s.contains("[RESOLVED") && is_gateway(&s)
        })
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let subjects: Vec<String> = read_mails().iter().map(|m| subject(m)).collect();
    let gateway: Vec<&String> = subjects.iter().filter(|s| is_gateway(s)).collect();
    assert_eq!(
        gateway.iter().filter(|s| s.contains("[FIRING")).count(),
        1,
        "one firing mail for the incident: {subjects:?}"
    );
    assert_eq!(
        gateway.iter().filter(|s| s.contains("[RESOLVED")).count(),
        1,
        "one resolved mail for the incident: {subjects:?}"
    );
    assert_eq!(gateway.len(), 2, "{subjects:?}");
    let redis: Vec<&String> = subjects.iter().filter(|s| !is_gateway(s)).collect();
    assert!(
        redis
            .iter()
            .all(|s| s.contains("sessions-redis-down") && !s.contains("incident")),
        "the only other page is the Redis outage, alone: {subjects:?}"
    );
    assert!(
        redis.iter().any(|s| s.contains("[FIRING")),
        "the Redis outage during the incident was paged: {subjects:?}"
    );
    let incidents: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/incidents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = incidents["incidents"].as_array().expect("a list");
    let first = list
        .iter()
        .find(|i| i["id"] == 1)
        .unwrap_or_else(|| panic!("incident 1: {incidents}"));
    assert_eq!(
        first["members"][0]["series"], "payment-gateway",
        "{incidents}"
    );
    assert_eq!(first["members"][0]["cause"], true, "{incidents}");
    assert!(
        first["members"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["layer"] != "component")),
        "Redis is not in the gateway's incident: {incidents}"
    );
    let login = client
        .get(format!("http://127.0.0.1:{port}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "the dashboard is served");
    assert!(
        p.terminate(Duration::from_secs(30)),
        "Ctrl-C stops the demo cleanly"
    );
    let banner = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(banner.contains("user demo, password demo"), "{banner}");
}

/// The demo's two promises of issue 20: its URL layer stays readable
/// (hashed asset names and ids normalized into a few routes), and the
/// sessions Redis that hangs is seen by its probe before its log says
/// anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_has_few_url_series_and_its_redis_probe_fires_before_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("demo.log");
    let args: Vec<String> = [
        "demo",
        "--dir",
        &dir.path().join("demo").display().to_string(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--incident-after-secs",
        "600",
        "--redis-outage-after-secs",
        "15",
        "--redis-outage-secs",
        "600",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut p = Proc::start(&binary("panorama"), &args, &log);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let now = || chrono::Utc::now().timestamp_millis();
    // The probe's errors reach the store while the Redis log is quiet
    // (its first warning comes 20 s into the outage).
    let start = Instant::now();
    let mut probe_errors = 0;
    while start.elapsed() < Duration::from_secs(120) {
        let r: serde_json::Value = match client
            .get(format!(
                "{base}/api/v1/series?layer=component&service=game&name=redis@sessions%20ping&from={}&to={}",
                now() - 600_000,
                now() + 60_000
            ))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        probe_errors = r["points"]
            .as_array()
            .map(|p| p.iter().filter_map(|x| x["errors"].as_u64()).sum())
            .unwrap_or(0);
        if probe_errors > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let redis_log =
        std::fs::read_to_string(dir.path().join("demo/logs/redis.log")).unwrap_or_default();
    assert!(
        probe_errors > 0,
        "the redis probe failed within 120 s; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        !redis_log.contains(" # "),
        "the Redis log has no warning yet when the probe already failed:\n{redis_log}"
    );
    // Let the access log run a while, then count the url layer's series.
    tokio::time::sleep(Duration::from_secs(20)).await;
    // The last whole minute, once the collector has written it.
    let (mut rows, mut top) = (Vec::new(), serde_json::Value::Null);
    let start = Instant::now();
    while rows.is_empty() && start.elapsed() < Duration::from_secs(120) {
        top = client
            .get(format!(
                "{base}/api/v1/top?layer=url&minute={}&by=count&limit=1000",
                (now() / 60_000 - 1) * 60_000
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        rows = top["series"].as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    assert!(!rows.is_empty(), "the url layer has series: {top}");
    assert!(
        rows.len() < 20,
        "the url layer has {} series, fewer than 20 expected: {top}",
        rows.len()
    );
    assert!(p.terminate(Duration::from_secs(30)), "the demo stops");
}
