//! `panorama demo`, the README's first command, run for real: the simulated
//! service's logs flow through the in-process agent, the injected incident
//! fires the demo's rules, and one incident mail naming the payment gateway
//! as the probable cause lands in the mailbox directory, then one resolved.
//! The sessions Redis hanging meanwhile is the drill of issue 18: its
//! component alert is named the cause of the call and url alerts it causes
//! (the failing session calls and logins), in an incident and a page of its
//! own. The dashboard answers, and Ctrl-C (SIGTERM) stops everything
//! cleanly.

use std::time::{Duration, Instant};

use panorama_tests::{Proc, binary, free_port};

/// The incident number in a mail's subject (`… incident 7: …`).
fn incident_of(subject: &str) -> Option<u64> {
    let (_, rest) = subject.split_once(" incident ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

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
        // The sessions Redis hangs while the gateway's alerts still fire
        // (they clear about a minute after the gateway recovers): the same
        // service depends on both, but it is a second fault and is paged
        // as such, never folded into the gateway's incident. It starts
        // after the rules engine has learned the dependency graph once
        // from the store (a minute after start; the call to
        // `redis:sessions` reaches the component only through that).
        "--redis-outage-after-secs",
        "80",
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
    // The Redis drill: the probe's component alert is the cause, the
    // session calls and the login route it breaks are its effects, in one
    // page of an incident of its own.
    let redis_cause = "probable cause: component game redis@sessions ping";
    let start = Instant::now();
    let mut found = None;
    while start.elapsed() < Duration::from_secs(150) {
        if let Some(m) = read_mails()
            .into_iter()
            .find(|m| subject(m).contains("[FIRING") && subject(m).contains(redis_cause))
        {
            found = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(mail) = found else {
        let subjects: Vec<String> = read_mails().iter().map(|m| subject(m)).collect();
        panic!(
            "no incident mail naming the sessions Redis as the cause within 150 s: {subjects:?}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let s = subject(&mail);
    let redis_incident = incident_of(&s).unwrap_or_else(|| panic!("an incident: {s}"));
    assert_ne!(redis_incident, 1, "{s}");
    assert!(
        s.contains("(sessions-redis-down); 2 effects: redis:sessions ")
            && s.contains("POST /api/login "),
        "the Redis probe's alert is the cause, the session calls and the login route its effects: {s}"
    );
    assert!(
        mail.contains(&format!(
            "http://127.0.0.1:{port}/incidents/{redis_incident}"
        )),
        "the mail links to the Redis incident:\n{mail}"
    );
    // Both faults end: one resolved mail for each incident, never a
    // second firing one, and no page outside the two incidents.
    let is_gateway = |s: &str| incident_of(s) == Some(1);
    let is_redis = |s: &str| incident_of(s) == Some(redis_incident);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(240) {
        let subjects: Vec<String> = read_mails().iter().map(|m| subject(m)).collect();
        let resolved = |f: &dyn Fn(&str) -> bool| {
            subjects
                .iter()
                .any(|s| s.contains("[RESOLVED") && f(s.as_str()))
        };
        if resolved(&is_gateway) && resolved(&is_redis) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let subjects: Vec<String> = read_mails().iter().map(|m| subject(m)).collect();
    for (name, of) in [
        (
            "the gateway's incident",
            &is_gateway as &dyn Fn(&str) -> bool,
        ),
        ("the Redis incident", &is_redis),
    ] {
        let mails: Vec<&String> = subjects.iter().filter(|s| of(s.as_str())).collect();
        assert_eq!(
            mails.iter().filter(|s| s.contains("[FIRING")).count(),
            1,
            "one firing mail for {name}: {subjects:?}"
        );
        assert_eq!(
            mails.iter().filter(|s| s.contains("[RESOLVED")).count(),
            1,
            "one resolved mail for {name}: {subjects:?}"
        );
        assert_eq!(mails.len(), 2, "{name}: {subjects:?}");
    }
    assert_eq!(
        subjects.len(),
        4,
        "no page outside the two incidents (no alert paged alone): {subjects:?}"
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
    let get = |id: u64| {
        list.iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("incident {id}: {incidents}"))
    };
    let first = get(1);
    assert_eq!(
        first["members"][0]["series"], "payment-gateway",
        "{incidents}"
    );
    assert_eq!(first["members"][0]["cause"], true, "{incidents}");
    assert!(
        first["members"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["layer"] != "component"
                && m["series"] != "redis:sessions"
                && m["series"] != "POST /api/login")),
        "Redis and what it breaks are not in the gateway's incident: {incidents}"
    );
    let redis = get(redis_incident);
    assert_eq!(redis["members"][0]["layer"], "component", "{incidents}");
    assert_eq!(
        redis["members"][0]["series"], "redis@sessions ping",
        "{incidents}"
    );
    assert_eq!(redis["members"][0]["cause"], true, "{incidents}");
    let effects: Vec<(String, String)> = redis["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .skip(1)
                .map(|m| {
                    (
                        m["layer"].as_str().unwrap_or("").to_owned(),
                        m["series"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        effects,
        [
            ("call".to_owned(), "redis:sessions".to_owned()),
            ("url".to_owned(), "POST /api/login".to_owned())
        ],
        "{incidents}"
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
