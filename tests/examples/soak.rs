//! The fault drill's mix, for as long as asked: `bench/soak.sh MINUTES`.
//!
//! A writer appends combined access-log lines (about 50/s) and rotates the
//! log every second; `panorama-agent` ships them to `panorama collector` on
//! an Elasticsearch node of its own (port 9258). Faults take turns, one
//! kind per 90-second round, and the lines written during a round carry its
//! kind in their route (`GET /soak/<kind>/:num`), so each kind's losses and
//! doubles show on their own:
//!
//! - `agent-kill-slow-fsync`: the collector's disk flushes take 150 ms
//!   (restarted under the slow-fsync shim) and the agent is killed with -9
//!   every 0.3–1 s, mostly while a batch waits for its sync;
//! - `agent-term`: the agent is stopped with SIGTERM and restarted every 1–3 s;
//! - `collector-kill`: the collector is killed with -9 every 2–5 s and
//!   restarted a second later;
//! - `store-outage`: Elasticsearch is down for the round while the agent is
//!   killed with -9 every 1.5–4.5 s.
//!
//! Every process of the project runs on a clock shifted to cross 00:00 UTC
//! a minute in. At the end, once the counts stop changing, it prints per
//! kind the lines written, counted, missing and doubled, and exits 1 if any
//! line is missing or doubled.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use panorama_tests::fault::{Env, Supervised, offset_to_midnight};
use panorama_tests::{binary, es_node, free_port, query_encode, wait_healthy};
use rand::Rng;

const ES_PORT: u16 = 9258;
const KINDS: [&str; 4] = [
    "agent-kill-slow-fsync",
    "agent-term",
    "collector-kill",
    "store-outage",
];
const ROUND: Duration = Duration::from_secs(90);

/// Stops the soak's Elasticsearch node however the run ends.
struct EsGuard;
impl Drop for EsGuard {
    fn drop(&mut self) {
        es_node(ES_PORT, "stop");
    }
}

/// (kind, minute) → lines.
type Counts = BTreeMap<(usize, i64), u64>;

struct Writer {
    dir: PathBuf,
    want: Mutex<Counts>,
    kind: AtomicUsize,
    stop: AtomicBool,
    clock_offset: i64,
}

impl Writer {
    fn run(&self) {
        let access = self.dir.join("access.log");
        let (mut n, mut rotated) = (0u64, 0u32);
        let mut last_rotation = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let now = chrono::Utc::now() + chrono::Duration::seconds(self.clock_offset);
            let minute = now.timestamp_millis() / 60_000 * 60_000;
            let kind = self.kind.load(Ordering::SeqCst);
            let mut text = String::new();
            let mut want = self.want.lock().unwrap();
            for _ in 0..5 {
                *want.entry((kind, minute)).or_default() += 1;
                text.push_str(&format!(
                    "10.2.{}.{} - - [{}] \"GET /soak/{}/{n} HTTP/1.1\" 200 512 \"-\" \"soak/1.0\" 0.{:03}\n",
                    n / 250 % 250,
                    n % 250,
                    now.format("%d/%b/%Y:%H:%M:%S %z"),
                    KINDS[kind],
                    n % 1000
                ));
                n += 1;
            }
            // Under the lock: a line counted as written is on disk.
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&access)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .expect("appending to the access log");
            drop(want);
            if last_rotation.elapsed() >= Duration::from_secs(1) {
                rotated += 1;
                fs::rename(&access, self.dir.join(format!("access.log.{rotated:05}")))
                    .expect("rotating");
                fs::File::create(&access).expect("creating the new log");
                last_rotation = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

async fn stored(base: &str, want: &Counts) -> Option<Counts> {
    let from = want.keys().map(|k| k.1).min()?;
    let to = want.keys().map(|k| k.1).max()? + 60_000;
    let mut got = Counts::new();
    for (kind, name) in KINDS.iter().enumerate() {
        let url = format!(
            "{base}/api/v1/series?layer=url&service=soak&name={}&from={from}&to={to}",
            query_encode(&format!("GET /soak/{name}/:num"))
        );
        let v: serde_json::Value = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        for p in v["points"].as_array()? {
            let c = p["count"].as_u64()?;
            if c > 0 {
                got.insert((kind, p["minute"].as_i64()?), c);
            }
        }
    }
    Some(got)
}

fn pause(range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rand::rng().random_range(range))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let minutes: u64 = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: soak MINUTES");
            std::process::exit(2)
        });
    let started = Instant::now();
    let until = started + Duration::from_secs(minutes * 60);
    tokio::task::spawn_blocking(|| es_node(ES_PORT, "start"))
        .await
        .unwrap();
    let es_guard = EsGuard;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let clock_offset = offset_to_midnight(60);
    let clock = Env {
        clock_offset_secs: clock_offset,
        ..Env::default()
    };
    let slow_disk = Env {
        fsync_delay_us: 150_000,
        ..clock.clone()
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("panorama.log");
    let collector = Arc::new(Supervised::new(
        binary("panorama"),
        [
            "collector",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &dir.path().join("data").display().to_string(),
            "--elasticsearch",
            &format!("http://127.0.0.1:{ES_PORT}"),
            "--index-prefix",
            &format!("soak-{}", std::process::id()),
            "--grace-secs",
            "1",
        ]
        .map(str::to_owned)
        .to_vec(),
        log.clone(),
        clock.vars(),
    ));
    collector.start();
    wait_healthy(&format!("{base}/health"), Duration::from_secs(30), &log).await;
    let config = dir.path().join("agent.toml");
    fs::write(
        &config,
        format!(
            "agent_id = \"soak-agent\"\nhost = \"soak-host\"\ndata_dir = \"{}\"\n[collector]\nurls = [\"{base}\"]\n[host_metrics]\nenabled = false\n[[source]]\nname = \"access\"\npaths = [\"{}/access.log*\"]\n[source.parse]\nformat = \"combined\"\nservice = \"soak\"\n",
            dir.path().join("adata").display(),
            logs.display()
        ),
    )
    .unwrap();
    let agent = Supervised::new(
        binary("panorama-agent"),
        vec!["--config".to_owned(), config.display().to_string()],
        dir.path().join("agent.log"),
        clock.vars(),
    );
    agent.start();
    let writer = Arc::new(Writer {
        dir: logs,
        want: Mutex::new(Counts::new()),
        kind: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        clock_offset,
    });
    let writer_thread = {
        let w = writer.clone();
        std::thread::spawn(move || w.run())
    };
    println!("soak: {minutes} min, clock shifted by {clock_offset} s, rounds of {ROUND:?}");
    let mut round = 0usize;
    let mut next_supervise = Instant::now();
    while Instant::now() < until {
        let kind = round % KINDS.len();
        writer.kind.store(kind, Ordering::SeqCst);
        println!(
            "[{:>6.0?}] round {round}: {}",
            started.elapsed(),
            KINDS[kind]
        );
        match kind {
            0 => {
                *collector.env.lock().unwrap() = slow_disk.vars();
                collector.kill9();
                collector.supervise();
            }
            3 => {
                tokio::task::spawn_blocking(|| es_node(ES_PORT, "stop"))
                    .await
                    .unwrap();
            }
            _ => {}
        }
        let end = (Instant::now() + ROUND).min(until);
        let mut next_fault = Instant::now() + pause(300..1000);
        while Instant::now() < end {
            if Instant::now() >= next_supervise {
                collector.supervise();
                agent.supervise();
                next_supervise = Instant::now() + Duration::from_secs(1);
            }
            if Instant::now() >= next_fault {
                let wait = match kind {
                    0 => {
                        agent.kill9();
                        agent.start();
                        pause(300..1000)
                    }
                    1 => {
                        agent.terminate(Duration::from_secs(10));
                        agent.start();
                        pause(1000..3000)
                    }
                    2 => {
                        collector.kill9();
                        pause(2000..5000)
                    }
                    _ => {
                        agent.kill9();
                        agent.start();
                        pause(1500..4500)
                    }
                };
                next_fault = Instant::now() + wait;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match kind {
            0 => *collector.env.lock().unwrap() = clock.vars(),
            3 => {
                tokio::task::spawn_blocking(|| es_node(ES_PORT, "start"))
                    .await
                    .unwrap();
            }
            _ => {}
        }
        round += 1;
    }
    writer.stop.store(true, Ordering::SeqCst);
    writer_thread.join().unwrap();
    collector.supervise();
    agent.supervise();
    println!(
        "[{:>6.0?}] load stopped; collector kills {}, agent kills {}",
        started.elapsed(),
        collector.kills.load(Ordering::SeqCst),
        agent.kills.load(Ordering::SeqCst)
    );
    // Settled: equal, or unchanged for a minute, or five minutes passed.
    let want = writer.want.lock().unwrap().clone();
    let settle = Instant::now();
    let (mut got, mut same_since) = (stored(&base, &want).await, Instant::now());
    while got.as_ref() != Some(&want)
        && same_since.elapsed() < Duration::from_secs(60)
        && settle.elapsed() < Duration::from_secs(300)
    {
        collector.supervise();
        agent.supervise();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = stored(&base, &want).await;
        if now != got {
            same_since = Instant::now();
            got = now;
        }
    }
    let got = got.unwrap_or_default();
    println!(
        "{:<24} {:>9} {:>9} {:>8} {:>8}",
        "fault", "written", "counted", "missing", "doubled"
    );
    let mut bad = 0;
    for (kind, name) in KINDS.iter().enumerate() {
        let (mut written, mut counted, mut missing, mut doubled) = (0, 0, 0, 0);
        let minutes: std::collections::BTreeSet<i64> = want
            .keys()
            .chain(got.keys())
            .filter(|k| k.0 == kind)
            .map(|k| k.1)
            .collect();
        for m in minutes {
            let w = want.get(&(kind, m)).copied().unwrap_or(0);
            let g = got.get(&(kind, m)).copied().unwrap_or(0);
            written += w;
            counted += g;
            missing += w.saturating_sub(g);
            doubled += g.saturating_sub(w);
        }
        bad += missing + doubled;
        println!("{name:<24} {written:>9} {counted:>9} {missing:>8} {doubled:>8}");
    }
    println!("soak wall time {:?}", started.elapsed());
    drop(agent);
    drop(collector);
    drop(es_guard);
    if bad > 0 {
        std::process::exit(1);
    }
}
