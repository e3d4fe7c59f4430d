//! Agent and collector as real processes: a combined access log written
//! continuously, rotated by rename and by copytruncate, truncated in place,
//! and the agent killed with -9 four times. Every line must be counted in
//! the right minute and series exactly once.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use panorama_tests::{Proc, binary, collector_args, free_port, wait_healthy};

const ROUTES: [(&str, &str, &str); 3] = [
    ("GET", "/api/item/{}", "GET /api/item/:num"),
    ("POST", "/api/order", "POST /api/order"),
    ("GET", "/api/user/{}/profile", "GET /api/user/:num/profile"),
];
const STEPS: u64 = 80;
const PER_STEP: u64 = 40;

fn t0() -> i64 {
    (chrono::Utc::now().timestamp_millis() - 3 * 3_600_000) / 60_000 * 60_000
}

/// Line `n`: its minute and series, and the text.
fn line(t0: i64, n: u64) -> ((i64, &'static str), String) {
    let minute = t0 + (n % 3) as i64 * 60_000;
    let ts = chrono::DateTime::from_timestamp_millis(minute + (n % 59) as i64 * 1000).unwrap();
    let (method, path, series) = ROUTES[(n % 3) as usize];
    let status = if n.is_multiple_of(13) { 503 } else { 200 };
    let text = format!(
        "10.0.0.{} - - [{}] \"{method} {} HTTP/1.1\" {status} {} \"-\" \"e2e/1.0\" 0.{:03}\n",
        n % 250,
        ts.format("%d/%b/%Y:%H:%M:%S %z"),
        path.replace("{}", &(n * 7).to_string()),
        100 + n % 900,
        n % 1000
    );
    ((minute, series), text)
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

async fn counts(base: &str, t0: i64) -> BTreeMap<(i64, &'static str), u64> {
    let client = reqwest::Client::new();
    let mut got = BTreeMap::new();
    for (_, _, series) in ROUTES {
        let name: String = series
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_string()
                } else {
                    format!("%{:02X}", c as u32)
                }
            })
            .collect();
        let url = format!(
            "{base}/api/v1/series?layer=url&service=shop&name={name}&from={t0}&to={}",
            t0 + 3 * 60_000
        );
        let v: serde_json::Value = client
            .get(&url)
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for p in v["points"].as_array().unwrap() {
            got.insert(
                (p["minute"].as_i64().unwrap(), series),
                p["count"].as_u64().unwrap(),
            );
        }
    }
    got
}

async fn wait_for(
    base: &str,
    t0: i64,
    want: &BTreeMap<(i64, &'static str), u64>,
    deadline: Duration,
) -> BTreeMap<(i64, &'static str), u64> {
    let start = std::time::Instant::now();
    loop {
        let got = counts(base, t0).await;
        if &got == want || start.elapsed() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reads need a viewer token once the collector has any token.
const VIEWER: &str = "viewer-token-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_truncation_and_kill_9_lose_and_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let access = logs.join("access.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let collector_log = dir.path().join("collector.log");
    let agent_log = dir.path().join("agent.log");
    let collector_args = collector_args(port, &dir.path().join("cdata"), "tok", VIEWER);
    let _collector = Proc::start(&binary("panorama"), &collector_args, &collector_log);
    wait_healthy(
        &format!("{base}/health"),
        Duration::from_secs(20),
        &collector_log,
    )
    .await;

    let agent_args: Vec<String> = [
        "--collector",
        &base,
        "--token",
        "tok",
        "--data-dir",
        dir.path().join("adata").to_str().unwrap(),
        "--tail",
        &format!("combined:shop:{}/access.log*", logs.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let agent_bin = binary("panorama-agent");
    let mut agent = Proc::start(&agent_bin, &agent_args, &agent_log);

    let t0 = t0();
    let mut want: BTreeMap<(i64, &'static str), u64> = BTreeMap::new();
    let mut n = 0u64;
    for step in 0..STEPS {
        let mut text = String::new();
        for _ in 0..PER_STEP {
            let (key, l) = line(t0, n);
            *want.entry(key).or_default() += 1;
            text.push_str(&l);
            n += 1;
        }
        append(&access, &text);
        if step == 5 {
            // Lines that do not parse are counted, in their own series.
            append(
                &access,
                "garbage one\n\x01\x02 not a log line\n{\"half\": \n",
            );
        }
        match step {
            20 => {
                // Rotation by rename, then a new file under the old name.
                fs::rename(&access, logs.join("access.log.1")).unwrap();
                append(&access, "");
            }
            40 => {
                // copytruncate: the copy is matched by the same glob and must
                // not be read again.
                fs::copy(&access, logs.join("access.log.2")).unwrap();
                OpenOptions::new()
                    .write(true)
                    .open(&access)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            60 => {
                // Truncation in place: let the agent catch up first, since
                // bytes truncated unread are gone from the disk for anyone.
                let got = wait_for(&base, t0, &want, Duration::from_secs(60)).await;
                assert_eq!(got, want, "before the truncation at step 60");
                OpenOptions::new()
                    .write(true)
                    .open(&access)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            10 | 30 | 50 | 70 => {
                agent.kill9();
                agent = Proc::start(&agent_bin, &agent_args, &agent_log);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let got = wait_for(&base, t0, &want, Duration::from_secs(60)).await;
    let agent_out = fs::read_to_string(&agent_log).unwrap_or_default();
    assert_eq!(
        got,
        want,
        "every line exactly once; agent log tail:\n{}",
        &agent_out[agent_out.len().saturating_sub(3000)..]
    );
    assert!(
        agent.terminate(Duration::from_secs(20)),
        "agent exits cleanly on SIGTERM"
    );
}
