//! The whole pipeline across real processes: `panorama-agent` tails logs of
//! all five layers (a combined access log, JSON business events, a JSON call
//! log, a MySQL slow log and a Redis log, plus its own host metrics) and
//! ships them to `panorama`, which writes rollups to a real Elasticsearch
//! (the shared cluster, under an index prefix of its own) and evaluates a
//! rule; the mail reaches a real SMTP server and its link names the series
//! and the minute, and opens the dashboard's series page.
//!
//! Asserts: per-minute counts read back from the store equal the lines
//! written, per layer, series and minute; infra metrics are present; one
//! FIRING mail with the right link.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use panorama_tests::{
    Proc, binary, dashboard_session, free_port, hash_password, mail_route, mails, query_encode,
    shared_es, smtp_server, wait_for_mails, wait_healthy,
};

const HOST: &str = "e2e-host";

/// (layer, service, series, minute ms) → lines.
type Counts = BTreeMap<(&'static str, &'static str, &'static str, i64), u64>;

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn ts(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap()
}

/// One step of traffic at minute `minute` for every log, `n` counting up.
struct Logs<'a> {
    dir: &'a Path,
    want: Counts,
}

impl Logs<'_> {
    fn access(&mut self, at: i64, route: usize, status: u16, n: u64) -> String {
        const ROUTES: [(&str, &str, &str); 3] = [
            ("GET", "/api/item/{}", "GET /api/item/:num"),
            ("POST", "/api/pay", "POST /api/pay"),
            ("GET", "/api/user/{}/profile", "GET /api/user/:num/profile"),
        ];
        let (method, path, series) = ROUTES[route];
        *self
            .want
            .entry(("url", "shop", series, at / 60_000 * 60_000))
            .or_default() += 1;
        format!(
            "10.0.0.{} - - [{}] \"{method} {} HTTP/1.1\" {status} {} \"-\" \"e2e/1.0\" 0.{:03}\n",
            n % 250,
            ts(at).format("%d/%b/%Y:%H:%M:%S %z"),
            path.replace("{}", &(n * 7).to_string()),
            100 + n % 900,
            n % 1000
        )
    }

    fn write_minute(&mut self, minute: i64, n0: u64) {
        let mut access = String::new();
        let mut events = String::new();
        let mut calls = String::new();
        let mut mysql = String::new();
        let mut redis = String::new();
        for k in 0..30u64 {
            let n = n0 + k;
            let at = minute + (k * 1_900) as i64;
            let status = if n.is_multiple_of(7) { 502 } else { 200 };
            access.push_str(&self.access(at, (n % 3) as usize, status, n));
            let name = ["login", "pay", "register"][(n % 3) as usize];
            *self
                .want
                .entry((
                    "business",
                    "game",
                    ["login", "pay", "register"][(n % 3) as usize],
                    minute,
                ))
                .or_default() += 1;
            events.push_str(&format!(
                "{{\"ts\":\"{}\",\"name\":\"{name}\",\"ok\":{},\"latency_ms\":{}}}\n",
                ts(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                !n.is_multiple_of(5),
                n % 200
            ));
            if k % 2 == 0 {
                let call = ["account-svc getUser", "pay-gw charge"][(n % 2) as usize];
                *self.want.entry(("call", "game", call, minute)).or_default() += 1;
                calls.push_str(&format!(
                    "{{\"ts\":\"{}\",\"layer\":\"call\",\"name\":\"{call}\",\"ok\":{},\"code\":\"timeout\",\"latency_ms\":{}}}\n",
                    ts(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    !n.is_multiple_of(4),
                    20 + n % 300
                ));
            }
            if k % 5 == 0 {
                *self
                    .want
                    .entry(("component", "db", "mysql slow query", minute))
                    .or_default() += 1;
                mysql.push_str(&format!(
                    "# Time: {}\n# User@Host: app[app] @ web1 [10.0.0.5]  Id:    12\n# Query_time: 2.{:06}  Lock_time: 0.000050 Rows_sent: 1  Rows_examined: 500000\nuse shop;\nSET timestamp={};\nSELECT * FROM orders WHERE note LIKE '%x{n}%';\n",
                    ts(at).format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                    n % 1_000_000,
                    at / 1000
                ));
            }
            if k % 3 == 0 {
                *self
                    .want
                    .entry(("component", "cache", "redis", minute))
                    .or_default() += 1;
                let (mark, msg) = if n.is_multiple_of(2) {
                    ("*", "Background saving started by pid 77")
                } else {
                    ("#", "Background saving error")
                };
                redis.push_str(&format!(
                    "1234:M {} {mark} {msg}\n",
                    ts(at).format("%d %b %Y %H:%M:%S%.3f")
                ));
            }
        }
        // One write per file, so a multi-line MySQL record is never split
        // across two reads of the agent.
        append(&self.dir.join("access.log"), &access);
        append(&self.dir.join("events.log"), &events);
        append(&self.dir.join("calls.log"), &calls);
        append(&self.dir.join("mysql-slow.log"), &mysql);
        append(&self.dir.join("redis.log"), &redis);
    }
}

async fn json(url: &str) -> serde_json::Value {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

async fn stored(base: &str, want: &Counts, from: i64, to: i64) -> Counts {
    let mut got = Counts::new();
    let mut keys: Vec<_> = want.keys().map(|(l, s, n, _)| (*l, *s, *n)).collect();
    keys.dedup();
    for (layer, service, name) in keys {
        let v = json(&format!(
            "{base}/api/v1/series?layer={layer}&service={service}&name={}&host={HOST}&from={from}&to={to}",
            query_encode(name)
        ))
        .await;
        for p in v["points"].as_array().unwrap() {
            let c = p["count"].as_u64().unwrap();
            if c > 0 {
                got.insert((layer, service, name, p["minute"].as_i64().unwrap()), c);
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_to_elasticsearch_counts_every_layer_and_mails_the_alert() {
    let started = Instant::now();
    let es = shared_es().await;
    let prefix = format!(
        "e2e-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let maildir = dir.path().join("mail");
    let smtp_port = free_port();
    let _smtp = smtp_server(smtp_port, &maildir, &dir.path().join("smtp.log"));

    let rules = dir.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(
        rules.join("shop.toml"),
        format!(
            r#"
[[rule]]
name = "pay-errors"
layer = "url"
service = "shop"
series = "POST /api/pay"
window = "1m"
every = "2s"
when = "error_ratio > 50%"
min_count = 10
severity = "critical"

{mail}"#,
            mail = mail_route(smtp_port, "1s", "1s", "1h")
        ),
    )
    .unwrap();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("panorama.log");
    let args: Vec<String> = vec![
        "collector".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--elasticsearch".into(),
        es.clone(),
        "--index-prefix".into(),
        prefix.clone(),
        "--grace-secs".into(),
        "1".into(),
        "--rules".into(),
        rules.display().to_string(),
        "--dashboard-url".into(),
        base.clone(),
        "--dashboard-user".into(),
        format!("oncall:viewer:{}", hash_password("e2e-secret")),
    ];
    let mut panorama = Proc::start(&binary("panorama"), &args, &log);
    wait_healthy(&format!("{base}/health"), Duration::from_secs(30), &log).await;

    let config = dir.path().join("agent.toml");
    let source = |name: &str, glob: &str, format: &str, service: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\npaths = [\"{}/{glob}\"]\n[source.parse]\nformat = \"{format}\"\nservice = \"{service}\"\ntimezone = \"UTC\"\n",
            logs.display()
        )
    };
    fs::write(
        &config,
        format!(
            "agent_id = \"e2e-agent\"\nhost = \"{HOST}\"\ndata_dir = \"{}\"\n[collector]\nurls = [\"{base}\"]\n[host_metrics]\ninterval_secs = 1\n{}{}{}{}{}",
            dir.path().join("adata").display(),
            source("access", "access.log*", "combined", "shop"),
            source("events", "events.log", "json", "game"),
            source("calls", "calls.log", "json", "game"),
            source("mysql", "mysql-slow.log", "mysql_slow", "db"),
            source("redis", "redis.log", "redis", "cache"),
        ),
    )
    .unwrap();
    let agent_log = dir.path().join("agent.log");
    let mut agent = Proc::start(
        &binary("panorama-agent"),
        &["--config".into(), config.display().to_string()],
        &agent_log,
    );

    // Three whole minutes two hours back, written in steps.
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = (now - 2 * 3_600_000) / 60_000 * 60_000;
    let mut w = Logs {
        dir: &logs,
        want: Counts::new(),
    };
    for step in 0..6u64 {
        w.write_minute(t0 + (step % 3) as i64 * 60_000, step * 1000);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The incident, now: POST /api/pay fails.
    let first_bad = Instant::now();
    let bad_at = chrono::Utc::now().timestamp_millis();
    let mut text = String::new();
    for k in 0..20 {
        text.push_str(&w.access(bad_at, 1, if k < 16 { 503 } else { 200 }, 90_000 + k));
    }
    append(&logs.join("access.log"), &text);

    let got = wait_for_mails(&maildir, 1, Duration::from_secs(45)).await;
    assert_eq!(
        got.len(),
        1,
        "one mail for the firing alert; panorama log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    let latency = got[0]
        .accepted
        .duration_since(std::time::SystemTime::now() - first_bad.elapsed())
        .unwrap_or_default();
    println!("alert latency, first bad line to mail accepted: {latency:?}");
    let subject = got[0].subject().to_owned();
    assert!(
        subject.contains("FIRING") && subject.contains("pay-errors"),
        "{subject}"
    );
    assert!(subject.contains("POST /api/pay"), "{subject}");

    // The link names the series at the minute the alert fired.
    let alerts = json(&format!("{base}/api/v1/alerts")).await;
    let firing = &alerts["firing"][0];
    assert_eq!(firing["series"], "POST /api/pay", "{alerts}");
    let fired_minute = firing["fired_ms"].as_i64().expect("fired_ms") / 60_000 * 60_000;
    let link = got[0]
        .link(&format!("{base}/series?"))
        .unwrap_or_else(|| panic!("a link to {base}/series in the mail:\n{}", got[0].text()));
    let query: BTreeMap<String, String> = link
        .split_once('?')
        .unwrap()
        .1
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect();
    assert_eq!(
        query.get("layer").map(String::as_str),
        Some("url"),
        "{link}"
    );
    assert_eq!(
        query.get("service").map(String::as_str),
        Some("shop"),
        "{link}"
    );
    assert_eq!(
        query.get("name").map(String::as_str),
        Some("POST /api/pay"),
        "{link}"
    );
    assert_eq!(
        query.get("at").and_then(|a| a.parse::<i64>().ok()),
        Some(fired_minute),
        "{link}"
    );
    let bad_minute = bad_at / 60_000 * 60_000;
    assert!(
        fired_minute == bad_minute || fired_minute == bad_minute + 60_000,
        "the alert fired in the incident's minute or the next: {link}"
    );
    // The link opens the series page on the dashboard this panorama serves.
    let cookie = dashboard_session(&base, "oncall", "e2e-secret")
        .await
        .unwrap_or_else(|| panic!("no dashboard login at {base}/login"));
    let page = reqwest::Client::new()
        .get(&link)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = page.status();
    let html = page.text().await.unwrap();
    assert_eq!(status.as_u16(), 200, "{link}: {html}");
    assert!(
        html.contains("POST /api/pay") && html.contains("shop"),
        "the series page names the series: {html}"
    );

    // Every line in the store, per layer, series and minute.
    let to = chrono::Utc::now().timestamp_millis() + 60_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut have = stored(&base, &w.want, t0, to).await;
    while have != w.want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        have = stored(&base, &w.want, t0, to).await;
    }
    let agent_out = fs::read_to_string(&agent_log).unwrap_or_default();
    assert_eq!(
        have,
        w.want,
        "stored counts equal the lines written; agent log tail:\n{}",
        &agent_out[agent_out.len().saturating_sub(3000)..]
    );
    for layer in ["business", "url", "call", "component"] {
        assert!(
            w.want.keys().any(|k| k.0 == layer),
            "{layer} lines were written"
        );
    }

    // The whole-layer rollups (the layer page's percentiles) count every
    // line exactly once too: per layer and minute, their sum in the
    // `layers` indices equals the lines written.
    let mut want_layers: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for ((layer, _, _, minute), n) in &w.want {
        *want_layers
            .entry(((*layer).to_owned(), *minute))
            .or_default() += n;
    }
    let layer_sums = || async {
        let body = serde_json::json!({
            "size": 0,
            "query": {"range": {"minute": {"gte": t0, "lt": to}}},
            "aggs": {"l": {"terms": {"field": "layer", "size": 10}, "aggs": {
                "m": {"terms": {"field": "minute", "size": 1000}, "aggs": {
                    "n": {"sum": {"field": "count"}}}}}}}
        });
        let v: serde_json::Value = reqwest::Client::new()
            .post(format!("{es}/{prefix}-layers-*/_search"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut got: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for l in v["aggregations"]["l"]["buckets"].as_array().unwrap() {
            for m in l["m"]["buckets"].as_array().unwrap() {
                got.insert(
                    (
                        l["key"].as_str().unwrap().to_owned(),
                        m["key"].as_i64().unwrap(),
                    ),
                    m["n"]["value"].as_f64().unwrap() as u64,
                );
            }
        }
        got
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got_layers = layer_sums().await;
    while got_layers != want_layers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got_layers = layer_sums().await;
    }
    assert_eq!(
        got_layers, want_layers,
        "whole-layer rollups per (layer, minute) equal the lines written"
    );

    // Infra: the agent's host metrics are there (values, not counts, vary).
    let deadline = Instant::now() + Duration::from_secs(30);
    let infra_count = |name: &'static str| {
        let url = format!(
            "{base}/api/v1/series?layer=infra&service=host&name={name}&host={HOST}&from={}&to={to}",
            to - 10 * 60_000
        );
        async move {
            json(&url).await["points"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["count"].as_u64())
                .sum::<u64>()
        }
    };
    loop {
        let n = infra_count("cpu.busy").await;
        let beats = infra_count("agent.heartbeat").await;
        if n > 0 && beats > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "infra cpu.busy ({n}) and agent.heartbeat ({beats}) samples in the store"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The store really is Elasticsearch, under our prefix.
    let client = reqwest::Client::new();
    let count: serde_json::Value = client
        .get(format!("{es}/{prefix}-rollups-*/_count"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        count["count"].as_u64().unwrap_or(0) > 0,
        "rollup documents in Elasticsearch under {prefix}: {count}"
    );
    assert_eq!(mails(&maildir).len(), 1, "no second mail");

    assert!(agent.terminate(Duration::from_secs(20)), "agent stops");
    assert!(
        panorama.terminate(Duration::from_secs(30)),
        "panorama stops"
    );
    let indices = client
        .get(format!("{es}/_cat/indices/{prefix}-*?h=index"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap_or_default();
    for index in indices.split_whitespace() {
        let _ = client.delete(format!("{es}/{index}")).send().await;
    }
    println!("e2e wall time {:?}", started.elapsed());
}

/// A query value as sent: `+` is a space, `%XX` a byte.
fn decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}
