//! Fault drills under continuous load, bounded in time (about 5 minutes).
//!
//! A writer appends combined access-log lines at a steady rate (about 54
//! lines/s over three routes) and rotates the log every second by rename and
//! create; `panorama-agent` tails it and ships to `panorama` on an
//! Elasticsearch node of the drill's own (port 9257). Meanwhile:
//!
//! 1. Elasticsearch is stopped for a minute while the agent is killed with
//!    -9 every 0.3–1 s and the collector's disk flushes are slow (150 ms
//!    after every fdatasync, an `LD_PRELOAD` shim): most kills land while a
//!    batch waits for its sync, the window in which a dropped request used
//!    to orphan its WAL record;
//! 2. two incidents follow, each a burst of errors on one route: the first
//!    fires with the SMTP server up; then the SMTP server is stopped for a
//!    minute (at least), during which the first resolves and the second
//!    fires and resolves; both the agent and the collector keep being
//!    killed with -9 at random moments (at least ten times each in all).
//!    A supervisor restarts a dead collector within a second, as systemd's
//!    `Restart=on-failure` would.
//!
//! The project's processes (and the writer's timestamps) run on a clock
//! shifted by libfaketime so that it crosses 00:00 UTC during phase 1: a new
//! day, a new daily index, while the store is down.
//!
//! Afterwards the per-minute counts of every route equal the lines written,
//! and so do its hour buckets once the drill's hours are compacted (read
//! from the hourly tier), and the SMTP server holds exactly four mails: one FIRING and one RESOLVED
//! per incident, no duplicate, none missing.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use panorama_tests::fault::{Env, Supervised, offset_to_midnight};
use panorama_tests::{
    Proc, binary, es_node, free_port, mail_route, mails, query_encode, smtp_server, wait_healthy,
};
use rand::Rng;

const ES_PORT: u16 = 9257;
const ROUTES: [(&str, &str); 3] = [
    ("GET /api/item/{}", "GET /api/item/:num"),
    ("POST /api/pay", "POST /api/pay"),
    ("POST /api/login", "POST /api/login"),
];

/// (series, minute) → lines written.
type Counts = BTreeMap<(&'static str, i64), u64>;

/// Stops the drill's Elasticsearch node however the test ends.
struct EsGuard;
impl Drop for EsGuard {
    fn drop(&mut self) {
        es_node(ES_PORT, "stop");
    }
}

struct Writer {
    dir: PathBuf,
    want: Mutex<Counts>,
    /// Route index in an incident (errors burst), or u32::MAX.
    incident: AtomicU32,
    stop: AtomicBool,
    /// Seconds added to the real clock, as for the processes under test.
    clock_offset: i64,
}

impl Writer {
    fn run(&self) {
        let access = self.dir.join("access.log");
        let mut n = 0u64;
        let mut rotated = 0u32;
        let mut last_rotation = Instant::now();
        let mut tick = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let now = chrono::Utc::now() + chrono::Duration::seconds(self.clock_offset);
            let minute = now.timestamp_millis() / 60_000 * 60_000;
            let incident = self.incident.load(Ordering::SeqCst);
            let mut lines: Vec<(usize, u16)> = (0..5).map(|_| (0, 200)).collect();
            if tick.is_multiple_of(5) {
                lines.push((1, 200));
                lines.push((2, 200));
            }
            if incident != u32::MAX {
                lines.push((incident as usize, 503));
                lines.push((incident as usize, 503));
            }
            let mut text = String::new();
            {
                let mut want = self.want.lock().unwrap();
                for (route, status) in lines {
                    let (path, series) = ROUTES[route];
                    *want.entry((series, minute)).or_default() += 1;
                    text.push_str(&format!(
                        "10.1.{}.{} - - [{}] \"{} HTTP/1.1\" {status} {} \"-\" \"drill/1.0\" 0.{:03}\n",
                        n / 250 % 250,
                        n % 250,
                        now.format("%d/%b/%Y:%H:%M:%S %z"),
                        path.replace("{}", &n.to_string()),
                        100 + n % 900,
                        n % 1000
                    ));
                    n += 1;
                }
                // Written under the lock: a line counted is a line on disk.
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&access)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .expect("appending to the access log");
            }
            if last_rotation.elapsed() >= Duration::from_secs(1) {
                rotated += 1;
                fs::rename(&access, self.dir.join(format!("access.log.{rotated:05}")))
                    .expect("rotating");
                fs::File::create(&access).expect("creating the new log");
                last_rotation = Instant::now();
            }
            tick += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn rule(name: &str, series: &str) -> String {
    format!(
        r#"
[[rule]]
name = "{name}"
layer = "url"
service = "shop"
series = "{series}"
window = "1m"
every = "1s"
when = "error_ratio > 50%"
min_count = 20
severity = "critical"
"#
    )
}

async fn get_json(url: &str) -> Option<serde_json::Value> {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Waits until `rule` has an event `event` in its history (retrying across
/// collector restarts), or panics after `deadline`.
async fn wait_history(base: &str, rule: &str, event: &str, n: usize, deadline: Duration) {
    let start = Instant::now();
    loop {
        if let Some(h) = get_json(&format!("{base}/api/v1/alerts/history?rule={rule}")).await {
            let count = h["records"]
                .as_array()
                .map(|r| r.iter().filter(|r| r["event"] == event).count())
                .unwrap_or(0);
            if count >= n {
                return;
            }
        }
        assert!(
            start.elapsed() < deadline,
            "{rule}: no `{event}` in the history after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sleeps until `secs` seconds into the next UTC minute.
async fn next_minute_plus(secs: i64) {
    let now = chrono::Utc::now().timestamp_millis();
    let target = (now / 60_000 + 1) * 60_000 + secs * 1000;
    tokio::time::sleep(Duration::from_millis((target - now) as u64)).await;
}

async fn stored(base: &str, want: &Counts) -> Option<Counts> {
    let from = want.keys().map(|k| k.1).min()?;
    let to = want.keys().map(|k| k.1).max()? + 60_000;
    let mut got = Counts::new();
    for (_, series) in ROUTES {
        let v = get_json(&format!(
            "{base}/api/v1/series?layer=url&service=shop&name={}&from={from}&to={to}",
            query_encode(series)
        ))
        .await?;
        for p in v["points"].as_array()? {
            let c = p["count"].as_u64()?;
            if c > 0 {
                got.insert((series, p["minute"].as_i64()?), c);
            }
        }
    }
    Some(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kills_rotation_and_outages_lose_nothing_and_page_once() {
    let started = Instant::now();
    tokio::task::spawn_blocking(|| es_node(ES_PORT, "start"))
        .await
        .unwrap();
    let _es_guard = EsGuard;
    println!(
        "[{:>5.1?}] own Elasticsearch up on {ES_PORT}",
        started.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let maildir = dir.path().join("mail");
    let smtp_port = free_port();
    let smtp_log = dir.path().join("smtp.log");
    let mut smtp = Some(smtp_server(smtp_port, &maildir, &smtp_log));

    let rules = dir.path().join("rules");
    fs::create_dir_all(&rules).unwrap();
    fs::write(
        rules.join("drill.toml"),
        format!(
            "{}{}
{}",
            rule("pay-errors", "POST /api/pay"),
            rule("login-errors", "POST /api/login"),
            mail_route(smtp_port, "1s", "1s", "1h")
        ),
    )
    .unwrap();

    // Midnight UTC (of the shifted clock) falls within the first minute.
    let clock_offset = offset_to_midnight(60);
    let clock = Env {
        clock_offset_secs: clock_offset,
        ..Env::default()
    };
    let slow_disk = Env {
        fsync_delay_us: 150_000,
        ..clock.clone()
    };
    println!(
        "[{:>5.1?}] clock shifted by {clock_offset} s: {}",
        started.elapsed(),
        chrono::Utc::now() + chrono::Duration::seconds(clock_offset)
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("panorama.log");
    let collector = Arc::new(Supervised::new(
        binary("panorama"),
        vec![
            "collector".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--elasticsearch".into(),
            format!("http://127.0.0.1:{ES_PORT}"),
            "--index-prefix".into(),
            format!("drills-{}", std::process::id()),
            "--grace-secs".into(),
            "1".into(),
            "--rules".into(),
            rules.display().to_string(),
        ],
        log.clone(),
        slow_disk.vars(),
    ));
    collector.start();
    wait_healthy(&format!("{base}/health"), Duration::from_secs(30), &log).await;

    let config = dir.path().join("agent.toml");
    fs::write(
        &config,
        format!(
            "agent_id = \"drill-agent\"\nhost = \"drill-host\"\ndata_dir = \"{}\"\n[collector]\nurls = [\"{base}\"]\n[host_metrics]\nenabled = false\n[[source]]\nname = \"access\"\npaths = [\"{}/access.log*\"]\n[source.parse]\nformat = \"combined\"\nservice = \"shop\"\n",
            dir.path().join("adata").display(),
            logs.display()
        ),
    )
    .unwrap();
    let agent_args = vec!["--config".to_owned(), config.display().to_string()];
    let agent_log = dir.path().join("agent.log");
    let agent_env = clock.vars();
    let agent = Arc::new(Mutex::new(Proc::start_with_env(
        &binary("panorama-agent"),
        &agent_args,
        &agent_log,
        &agent_env,
    )));

    let writer = Arc::new(Writer {
        dir: logs.clone(),
        want: Mutex::new(Counts::new()),
        incident: AtomicU32::new(u32::MAX),
        stop: AtomicBool::new(false),
        clock_offset,
    });
    let writer_thread = {
        let w = writer.clone();
        std::thread::spawn(move || w.run())
    };

    // The killer: agent always; the collector only when `kill_collector`.
    let kill_collector = Arc::new(AtomicBool::new(false));
    let stop_killing = Arc::new(AtomicBool::new(false));
    let agent_kills = Arc::new(AtomicU32::new(0));
    let killer = {
        let (collector, agent, kill_collector, stop_killing, agent_kills) = (
            collector.clone(),
            agent.clone(),
            kill_collector.clone(),
            stop_killing.clone(),
            agent_kills.clone(),
        );
        let agent_bin = binary("panorama-agent");
        let agent_log = agent_log.clone();
        tokio::spawn(async move {
            let mut next_kill = Instant::now() + Duration::from_secs(2);
            let mut next_supervise = Instant::now();
            let mut turn = 0u32;
            while !stop_killing.load(Ordering::SeqCst) {
                if Instant::now() >= next_supervise {
                    collector.supervise();
                    // The supervisor's restart delay, like RestartSec=1.
                    next_supervise = Instant::now() + Duration::from_millis(1000);
                }
                if Instant::now() >= next_kill {
                    let both = kill_collector.load(Ordering::SeqCst);
                    // Phase 1 kills the agent fast, mostly mid-sync.
                    let pause = if both {
                        rand::rng().random_range(1500..4500u64)
                    } else {
                        rand::rng().random_range(300..1000u64)
                    };
                    turn += 1;
                    if turn % 2 == 1 && both {
                        collector.kill9();
                    } else {
                        let mut a = agent.lock().unwrap();
                        a.kill9();
                        agent_kills.fetch_add(1, Ordering::SeqCst);
                        *a = Proc::start_with_env(&agent_bin, &agent_args, &agent_log, &agent_env);
                    }
                    next_kill = Instant::now() + Duration::from_millis(pause);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            collector.supervise();
        })
    };

    // 1. Elasticsearch down for a minute, the agent killed meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(|| es_node(ES_PORT, "stop"))
        .await
        .unwrap();
    println!("[{:>5.1?}] Elasticsearch stopped", started.elapsed());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let health = get_json(&format!("{base}/health")).await;
    println!("health while Elasticsearch is down: {health:?}");
    tokio::task::spawn_blocking(|| es_node(ES_PORT, "start"))
        .await
        .unwrap();
    println!(
        "[{:>5.1?}] Elasticsearch back; agent kills so far {}",
        started.elapsed(),
        agent_kills.load(Ordering::SeqCst)
    );
    // From now on the collector is killed too, and restarts with a normal disk.
    *collector.env.lock().unwrap() = clock.vars();
    kill_collector.store(true, Ordering::SeqCst);

    // 2. Incident A with the SMTP server up.
    next_minute_plus(2).await;
    println!("[{:>5.1?}] incident A (POST /api/pay)", started.elapsed());
    writer.incident.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(8)).await;
    writer.incident.store(u32::MAX, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(45);
    while mails(&maildir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no FIRING mail for incident A; panorama log tail:\n{}",
            tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SMTP down for at least a minute: A resolves, B fires and resolves.
    if let Some(mut s) = smtp.take() {
        s.kill9();
    }
    let smtp_down = Instant::now();
    println!("[{:>5.1?}] SMTP stopped", started.elapsed());
    next_minute_plus(2).await;
    println!("[{:>5.1?}] incident B (POST /api/login)", started.elapsed());
    writer.incident.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(8)).await;
    writer.incident.store(u32::MAX, Ordering::SeqCst);
    wait_history(&base, "pay-errors", "resolved", 1, Duration::from_secs(60)).await;
    wait_history(&base, "login-errors", "fired", 1, Duration::from_secs(60)).await;
    wait_history(
        &base,
        "login-errors",
        "resolved",
        1,
        Duration::from_secs(90),
    )
    .await;
    let left = Duration::from_secs(60).saturating_sub(smtp_down.elapsed());
    tokio::time::sleep(left).await;
    assert_eq!(
        mails(&maildir).len(),
        1,
        "nothing delivered while SMTP was down"
    );
    smtp = Some(smtp_server(smtp_port, &maildir, &smtp_log));
    println!(
        "[{:>5.1?}] SMTP back after {:?}",
        started.elapsed(),
        smtp_down.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while mails(&maildir).len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop_killing.store(true, Ordering::SeqCst);
    killer.await.unwrap();
    writer.stop.store(true, Ordering::SeqCst);
    writer_thread.join().unwrap();
    println!(
        "[{:>5.1?}] load stopped; kills: agent {}, collector {} (restarts {})",
        started.elapsed(),
        agent_kills.load(Ordering::SeqCst),
        collector.kills.load(Ordering::SeqCst),
        collector.restarts.load(Ordering::SeqCst)
    );

    // Counts exact, per series and minute.
    let want = writer.want.lock().unwrap().clone();
    let total: u64 = want.values().sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = stored(&base, &want).await;
    while got.as_ref() != Some(&want) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = stored(&base, &want).await;
    }
    assert_eq!(
        got.as_ref(),
        Some(&want),
        "every one of {total} lines counted once; agent log tail:\n{}",
        tail(&agent_log)
    );

    assert!(
        agent_kills.load(Ordering::SeqCst) >= 10,
        "the agent was killed at least ten times"
    );
    assert!(
        collector.kills.load(Ordering::SeqCst) >= 10,
        "the collector was killed at least ten times"
    );
    println!(
        "[{:>5.1?}] {total} lines exact over {} series-minutes",
        started.elapsed(),
        want.len()
    );
    hourly_tier_reads_the_same(&want, clock_offset).await;
    println!(
        "[{:>5.1?}] and exact through the hourly tier",
        started.elapsed()
    );

    // Exactly one FIRING and one RESOLVED page per incident, the firing one
    // first. The collector is killed at any instant, also between the SMTP
    // server's acceptance of a mail and the outbox's record of it: that mail
    // is sent again with the same Message-ID (at least once, never lost),
    // which a mail reader shows once, so pages are counted by Message-ID.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got_mails = mails(&maildir);
    let subjects: Vec<String> = got_mails.iter().map(|m| m.subject().to_owned()).collect();
    println!("mails: {subjects:#?}");
    // What the engine decided, to read beside the mails when they differ.
    for rule in ["pay-errors", "login-errors"] {
        if let Some(h) = get_json(&format!("{base}/api/v1/alerts/history?rule={rule}")).await {
            for r in h["records"].as_array().into_iter().flatten() {
                println!(
                    "history {rule}: {} {} {}",
                    r["at_ms"], r["event"], r["detail"]
                );
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut pages: Vec<String> = Vec::new();
    for m in &got_mails {
        assert!(!m.message_id().is_empty(), "a Message-ID on every mail");
        if seen.insert(m.message_id().to_owned()) {
            pages.push(m.subject().to_owned());
        } else {
            println!("delivered again after a kill: {}", m.subject());
        }
    }
    for rule in ["pay-errors", "login-errors"] {
        let mut order = Vec::new();
        for kind in ["FIRING", "RESOLVED"] {
            let of: Vec<usize> = pages
                .iter()
                .enumerate()
                .filter(|(_, s)| s.contains(kind) && s.contains(rule))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(of.len(), 1, "one {kind} page for {rule}: {subjects:#?}");
            order.push(of[0]);
        }
        assert!(
            order[0] < order[1],
            "{rule}: the FIRING page comes before the RESOLVED one: {subjects:#?}"
        );
    }
    assert_eq!(pages.len(), 4, "no other page: {subjects:#?}");

    println!("drill wall time {:?}", started.elapsed());
    drop(smtp);
}

/// The drill's lines read again through the hourly tier, once its minutes
/// are compacted: per series and hour, and for the whole url layer per
/// hour, the hour bucket equals the lines written, and so do the hourly
/// documents themselves.
///
/// The drill's events fall in two hours of its shifted clock: the last
/// seconds of the hour before midnight, a whole hour past by the end, and
/// the first minutes after midnight, the hour the drill ends in. The first
/// is compacted as the collector's compactor does it (one pass of
/// [`compact::compact_due`] with the collector's grace, done here so the
/// test does not wait up to a minute for the compactor's next pass; the two
/// may race, which deterministic ids make harmless). The second is not past,
/// and the compactor would reach it only after the hour ends; the load has
/// stopped, so once its minutes are complete it is compacted explicitly
/// ([`compact::compact_hour`]), as the compactor will once the hour is past.
async fn hourly_tier_reads_the_same(want: &Counts, clock_offset: i64) {
    use panorama_model::{DAY_MS, Layer, MINUTE_MS};
    use panorama_store::compact::{self, CompactPolicy};
    use panorama_store::elastic::{ElasticConfig, ElasticStore};
    use panorama_store::tier::{HOUR_MS, hour_of};
    use panorama_store::{SeriesQuery, Store};

    let store = ElasticStore::connect(
        ElasticConfig::new(format!("http://127.0.0.1:{ES_PORT}"))
            .with_prefix(format!("drills-{}", std::process::id())),
    )
    .await
    .expect("the drill's Elasticsearch");
    let now = chrono::Utc::now().timestamp_millis() + clock_offset * 1000;
    let current = hour_of(now);
    let mut by_hour: BTreeMap<(&'static str, i64), u64> = BTreeMap::new();
    let mut layer_by_minute: BTreeMap<i64, u64> = BTreeMap::new();
    for ((series, minute), n) in want {
        *by_hour.entry((series, hour_of(*minute))).or_default() += n;
        *layer_by_minute.entry(*minute).or_default() += n;
    }
    let mut layer_by_hour: BTreeMap<i64, u64> = BTreeMap::new();
    for (minute, n) in &layer_by_minute {
        *layer_by_hour.entry(hour_of(*minute)).or_default() += n;
    }
    let first = *layer_by_hour.keys().next().expect("lines were written");
    let end = current + HOUR_MS;
    // Usually two hours; one when the writer's first line came after
    // midnight (the shifted clock starts less than a minute before it).
    println!("lines per series and hour: {by_hour:?}");

    // The series' minutes are exact (checked above); the collector writes
    // the whole layer's minute beside them, a moment later. Compaction
    // reads both, so it waits for both.
    let layer_minutes = || async {
        store.sync().await.ok()?;
        let points = store
            .layer_points(Layer::Url, first, end, MINUTE_MS)
            .await
            .ok()?;
        Some(
            points
                .into_iter()
                .map(|p| (p.minute, p.count))
                .collect::<BTreeMap<i64, u64>>(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = layer_minutes().await;
    while got.as_ref() != Some(&layer_by_minute) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = layer_minutes().await;
    }
    assert_eq!(
        got.as_ref(),
        Some(&layer_by_minute),
        "the whole url layer's minutes hold every line once"
    );

    let policy = CompactPolicy {
        grace_ms: 1000,
        lookback_ms: DAY_MS,
        max_hours: 24,
    };
    let report = compact::compact_due(&store, now, policy)
        .await
        .expect("a compaction pass");
    // Hours the pass left waiting for collectors' partials (the drill's
    // collectors started inside them, so they write none) are compacted
    // from their minutes, as the pass does once the wait is over.
    for hour in &report.waiting {
        compact::compact_hour(&store, *hour, now)
            .await
            .expect("compacting an hour left waiting for partials");
    }
    let (mark, _) = compact::compact_hour(&store, current, now)
        .await
        .expect("compacting the drill's last hour");
    store.sync().await.expect("refresh");
    println!(
        "hourly tier: the pass compacted {:?}, the current hour {current} from {} events",
        report.hours, mark.events
    );
    let marked: Vec<i64> = store
        .hour_marks(first, end)
        .await
        .expect("hour marks")
        .into_iter()
        .map(|m| m.hour_ms)
        .collect();
    let hours: Vec<i64> = (0..(end - first) / HOUR_MS)
        .map(|i| first + i * HOUR_MS)
        .collect();
    assert_eq!(marked, hours, "every hour of the drill compacted");

    let mut tiered = BTreeMap::new();
    let mut documents = BTreeMap::new();
    for (_, series) in ROUTES {
        let q = SeriesQuery::layer(Layer::Url, first, end)
            .service("shop")
            .name(series);
        for p in store
            .series_points(&q, HOUR_MS)
            .await
            .expect("hour buckets")
        {
            tiered.insert((series, p.minute), p.count);
        }
        for r in store
            .read_hourly_rollups(&q)
            .await
            .expect("hourly documents")
        {
            *documents.entry((series, r.minute_ms)).or_default() += r.count;
        }
    }
    assert_eq!(
        tiered, by_hour,
        "hour buckets (hourly documents) equal the lines written"
    );
    assert_eq!(
        documents, by_hour,
        "the hourly documents hold every line once"
    );
    let layer: BTreeMap<i64, u64> = store
        .layer_points(Layer::Url, first, end, HOUR_MS)
        .await
        .expect("the layer's hour buckets")
        .into_iter()
        .map(|p| (p.minute, p.count))
        .collect();
    let layer_documents: BTreeMap<i64, u64> = store
        .read_hourly_layer_rollups(Layer::Url, first, end)
        .await
        .expect("hourly layer documents")
        .into_iter()
        .map(|r| (r.minute_ms, r.count))
        .collect();
    assert_eq!(
        (layer, layer_documents),
        (layer_by_hour.clone(), layer_by_hour),
        "the whole layer's hour buckets and hourly documents equal the lines written"
    );
}

fn tail(path: &Path) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    s[s.len().saturating_sub(4000)..].to_owned()
}
