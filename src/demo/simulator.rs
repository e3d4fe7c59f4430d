//! A game's login and payment service, simulated: it writes the five kinds
//! of log a real one would (an nginx access log with request times, business
//! events as JSON lines, outbound dependency calls as JSON lines, a MySQL
//! slow log and a Redis log), at a steady rate, and injects an incident on
//! schedule: the payment gateway slows down and its errors burst, which
//! shows in every layer above it.
//!
//! It also plays the sessions Redis ([`fake_redis`]): a small RESP server
//! that the agent's redis probe asks every 2 s. Its outage (`redis_after`,
//! `redis_for`) is silent at first, as a hung Redis is: it accepts and
//! never answers, and the Redis log gets its first warning only
//! [`REDIS_LOG_DELAY`] into the outage, so the probe's `redis@sessions
//! ping` errors come first. The service feels it as a real one would: its
//! calls to `redis:sessions` time out after [`SESSION_TIMEOUT_MS`] and
//! `POST /api/login`, which stores the session there, answers 503 — the
//! component fault shows in the call and url layers above it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

/// When the incident happens, relative to the start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Healthy before this.
    pub(crate) incident_after: Duration,
    /// The incident lasts this long, then the gateway recovers.
    pub(crate) incident_for: Duration,
    /// The sessions Redis stops answering after this.
    pub(crate) redis_after: Duration,
    /// And answers again after this much longer.
    pub(crate) redis_for: Duration,
}

/// How long the Redis outage stays out of the Redis log.
pub(crate) const REDIS_LOG_DELAY: Duration = Duration::from_secs(20);

/// How long the service's Redis client waits for an answer before it gives
/// up on a call (and the login that needed it fails).
pub(crate) const SESSION_TIMEOUT_MS: f64 = 500.0;

impl Schedule {
    fn redis_down(&self, elapsed: Duration) -> bool {
        elapsed >= self.redis_after && elapsed < self.redis_after + self.redis_for
    }
}

/// The sessions Redis: answers `PING` and `INFO` (and `QUIT`) on
/// `listener`, except during its outage, when it accepts and stays silent.
pub(crate) async fn fake_redis(
    listener: tokio::net::TcpListener,
    schedule: Schedule,
    start: std::time::Instant,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let (conn, _) = tokio::select! {
            c = listener.accept() => c?,
            _ = stop.changed() => return Ok(()),
        };
        tokio::spawn(async move {
            let _ = serve_redis(conn, schedule, start).await;
        });
    }
}

async fn serve_redis(
    conn: tokio::net::TcpStream,
    schedule: Schedule,
    start: std::time::Instant,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut conn = BufReader::new(conn);
    loop {
        // One command: `*N` then N `$len` / value line pairs.
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let n: usize = line.trim().trim_start_matches('*').parse().unwrap_or(0);
        let mut args = Vec::new();
        for _ in 0..n * 2 {
            line.clear();
            conn.read_line(&mut line).await?;
            if !line.starts_with('$') {
                args.push(line.trim().to_ascii_uppercase());
            }
        }
        while schedule.redis_down(start.elapsed()) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let reply = match args.first().map(String::as_str) {
            Some("PING") => "+PONG\r\n".to_owned(),
            Some("INFO") => {
                let body = "# Clients\r\nconnected_clients:12\r\n# Memory\r\nused_memory:48234496\r\n# Stats\r\ninstantaneous_ops_per_sec:350\r\n";
                format!("${}\r\n{body}\r\n", body.len())
            }
            Some("QUIT") => {
                conn.write_all(b"+OK\r\n").await?;
                return Ok(());
            }
            _ => "-ERR unknown command\r\n".to_owned(),
        };
        conn.write_all(reply.as_bytes()).await?;
    }
}

/// The log files, under one directory.
pub(crate) struct Logs {
    pub(crate) access: PathBuf,
    pub(crate) events: PathBuf,
    pub(crate) calls: PathBuf,
    pub(crate) mysql: PathBuf,
    pub(crate) redis: PathBuf,
}

impl Logs {
    pub(crate) fn under(dir: &Path) -> Logs {
        Logs {
            access: dir.join("access.log"),
            events: dir.join("events.jsonl"),
            calls: dir.join("calls.jsonl"),
            mysql: dir.join("mysql-slow.log"),
            redis: dir.join("redis.log"),
        }
    }
}

const ROUTES: [(&str, &str, f64); 6] = [
    ("POST", "/api/login", 0.30),
    ("POST", "/api/pay", 0.15),
    ("GET", "/api/profile/{id}", 0.25),
    ("GET", "/api/items?page={id}", 0.15),
    ("POST", "/api/register", 0.05),
    ("GET", "/static/app.{hex}.js", 0.10),
];

const MODELS: [&str; 5] = ["iPhone 15", "iPhone 13", "Pixel 8", "Galaxy S23", "Mi 13"];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn open(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
}

/// Writes until `stop`; every tick (100 ms) a handful of lines per file.
pub(crate) async fn run(
    logs: Logs,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut access = open(&logs.access)?;
    let mut events = open(&logs.events)?;
    let mut calls = open(&logs.calls)?;
    let mut mysql = open(&logs.mysql)?;
    let mut redis = open(&logs.redis)?;
    writeln!(
        mysql,
        "/usr/sbin/mysqld, Version: 8.0.36 (MySQL Community Server - GPL). started with:\nTcp port: 3306  Unix socket: /var/run/mysqld/mysqld.sock\nTime                 Id Command    Argument"
    )?;
    let start = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n: u64 = 0;
    let mut announced = (false, false, false);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        let elapsed = start.elapsed();
        let incident = elapsed >= schedule.incident_after
            && elapsed < schedule.incident_after + schedule.incident_for;
        let redis_down = schedule.redis_down(elapsed);
        if incident && !announced.0 {
            announced.0 = true;
            eprintln!(
                "\n>>> demo: incident injected: the payment gateway slows down and fails; watch the call, url and business layers\n"
            );
        }
        if !incident && announced.0 && !announced.1 {
            announced.1 = true;
            eprintln!("\n>>> demo: the payment gateway recovered; the alerts will resolve\n");
        }
        let now = chrono::Utc::now();
        let mut rng = rand::rng();
        let mut a = String::new();
        let mut ev = String::new();
        let mut c = String::new();
        for _ in 0..5 {
            n += 1;
            let pick: f64 = rng.random();
            let mut acc = 0.0;
            let (method, path) = ROUTES
                .iter()
                .find(|(_, _, w)| {
                    acc += w;
                    pick < acc
                })
                .map_or(("GET", "/api/items?page={id}"), |(m, p, _)| (*m, *p));
            let path = path
                .replace("{id}", &rng.random_range(1..100_000).to_string())
                .replace(
                    "{hex}",
                    &format!("{:012x}", rng.random::<u64>() & 0xffff_ffff_ffff),
                );
            let pay = path == "/api/pay";
            let mut rt: f64 = -0.04 * (1.0 - rng.random::<f64>()).ln();
            let mut status = if rng.random::<f64>() < 0.002 {
                500
            } else {
                200
            };
            if pay {
                // The payment route waits for the gateway.
                let (gw_ms, gw_ok) = gateway(&mut rng, incident);
                rt += gw_ms / 1000.0;
                if !gw_ok {
                    status = 502;
                }
                c.push_str(&call_line(
                    &now,
                    "payment-gateway",
                    gw_ms,
                    (!gw_ok).then_some("502"),
                ));
                let model = MODELS[rng.random_range(0..MODELS.len())];
                ev.push_str(&format!(
                    "{{\"ts\":\"{}\",\"name\":\"payment\",\"ok\":{},\"model\":\"{model}\",\"amount\":{}}}\n",
                    now.to_rfc3339(),
                    status == 200,
                    rng.random_range(1..200)
                ));
            }
            if path == "/api/login" {
                // A login stores its session in the sessions Redis: while
                // Redis hangs the call times out and the login fails.
                let (ms, stored) = if redis_down {
                    (SESSION_TIMEOUT_MS, false)
                } else {
                    (1.0 + rng.random::<f64>() * 3.0, true)
                };
                rt += ms / 1000.0;
                if !stored {
                    status = 503;
                }
                c.push_str(&call_line(
                    &now,
                    "redis:sessions",
                    ms,
                    (!stored).then_some("timeout"),
                ));
                let model = MODELS[rng.random_range(0..MODELS.len())];
                let ok = stored && rng.random::<f64>() > 0.01;
                ev.push_str(&format!(
                    "{{\"ts\":\"{}\",\"name\":\"login\",\"ok\":{ok},\"model\":\"{model}\"}}\n",
                    now.to_rfc3339()
                ));
            }
            if path == "/api/register" {
                ev.push_str(&format!(
                    "{{\"ts\":\"{}\",\"name\":\"register\",\"ok\":true,\"model\":\"{}\"}}\n",
                    now.to_rfc3339(),
                    MODELS[rng.random_range(0..MODELS.len())]
                ));
            }
            if path.starts_with("/api/items") || path.starts_with("/api/profile") {
                let ms = 2.0 + rng.random::<f64>() * 15.0;
                c.push_str(&call_line(
                    &now,
                    "mysql:game",
                    ms,
                    (rng.random::<f64>() < 0.001).then_some("502"),
                ));
            }
            a.push_str(&format!(
                "10.0.{}.{} - - [{}] \"{method} {path} HTTP/1.1\" {status} {} \"-\" \"GameClient/3.2\" {rt:.3} {:.3}\n",
                n % 200,
                n % 250,
                clf_time(&now),
                rng.random_range(200..8000),
                rt * 0.9
            ));
        }
        access.write_all(a.as_bytes())?;
        events.write_all(ev.as_bytes())?;
        calls.write_all(c.as_bytes())?;
        // A slow query every 5 s, more during the incident (payments retry).
        if n.is_multiple_of(250) || (incident && n.is_multiple_of(50)) {
            let q = 1.0 + rng.random::<f64>() * if incident { 6.0 } else { 1.5 };
            write!(
                mysql,
                "# Time: {}\n# User@Host: game[game] @ app1 [10.0.1.11]  Id: {}\n# Query_time: {q:.6}  Lock_time: 0.000081 Rows_sent: 20  Rows_examined: {}\nSET timestamp={};\nSELECT * FROM orders WHERE user_id = {} ORDER BY created_at DESC LIMIT 20;\n",
                now.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                n % 1000,
                rng.random_range(1000..2_000_000),
                now.timestamp(),
                rng.random_range(1..100_000)
            )?;
        }
        if redis_down && !announced.2 {
            announced.2 = true;
            eprintln!(
                "\n>>> demo: the sessions Redis hangs; its probe fails at once, logins time out on it, its log stays quiet for {} s\n",
                REDIS_LOG_DELAY.as_secs()
            );
        }
        if redis_down && elapsed >= schedule.redis_after + REDIS_LOG_DELAY && n.is_multiple_of(50) {
            writeln!(
                redis,
                "4242:M {} # Client id=7 addr=10.0.1.11:52100 closed: output buffer limit reached",
                now.format("%d %b %Y %H:%M:%S%.3f"),
            )?;
        }
        if n.is_multiple_of(100) {
            writeln!(
                redis,
                "4242:M {} * {} changes in 60 seconds. Saving...",
                now.format("%d %b %Y %H:%M:%S%.3f"),
                rng.random_range(100..10_000)
            )?;
        }
    }
}

/// The payment gateway: 80 ms and healthy, or 2–4 s and failing 40 % of
/// the time during the incident.
fn gateway(rng: &mut impl Rng, incident: bool) -> (f64, bool) {
    if incident {
        (
            2_000.0 + rng.random::<f64>() * 2_000.0,
            rng.random::<f64>() > 0.4,
        )
    } else {
        (
            60.0 + rng.random::<f64>() * 40.0,
            rng.random::<f64>() > 0.002,
        )
    }
}

/// One outbound call; `failed` is its error code, `None` when it succeeded.
fn call_line(
    now: &chrono::DateTime<chrono::Utc>,
    name: &str,
    ms: f64,
    failed: Option<&str>,
) -> String {
    format!(
        "{{\"ts\":\"{}\",\"layer\":\"call\",\"name\":\"{name}\",\"ok\":{},\"latency_ms\":{ms:.1}{}}}\n",
        now.to_rfc3339(),
        failed.is_none(),
        failed
            .map(|c| format!(",\"code\":\"{c}\""))
            .unwrap_or_default()
    )
}

fn clf_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Datelike;
    format!(
        "{:02}/{}/{}:{} +0000",
        t.day(),
        MONTHS[t.month0() as usize],
        t.year(),
        t.format("%H:%M:%S")
    )
}
