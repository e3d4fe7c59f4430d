//! Every probe kind against real servers started here: an HTTPS server
//! with a valid, an expired and an unknown certificate, TCP listeners that
//! accept and refuse, Debian's redis-server and mariadbd (installed by
//! scripts/redis.sh and scripts/mariadb.sh, started on free ports in
//! temporary directories). Up, down, slow, wrong status, expired
//! certificate, target killed mid-probe; and a restart of the probes that
//! resends nothing twice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use panorama_agent::config::AgentConfig;
use panorama_agent::probe::schedule::Runner;
use panorama_agent::probe::{Report, TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Builds the probe of one `[[probe]]` table, through the real config path.
fn probe(table: &str) -> Runner {
    let text = format!(
        "data_dir = \"/tmp/unused\"\nhost = \"h1\"\n[collector]\nurls = [\"http://127.0.0.1:1\"]\n[[probe]]\n{table}\n"
    );
    let cfg = AgentConfig::parse(Path::new("agent.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    Runner::new(cfg.probes.into_iter().next().unwrap()).unwrap()
}

fn code(r: &Report) -> &str {
    r.result.as_ref().err().map_or("ok", String::as_str)
}

fn figure(r: &Report, name: &str) -> Option<f64> {
    r.figures.iter().find(|(f, _)| *f == name).map(|(_, v)| *v)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------- HTTP

/// A CA, and leaf certificates for 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    valid: (Vec<u8>, Vec<u8>),
    expired: (Vec<u8>, Vec<u8>),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |not_after: (i32, u8, u8)| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    };
    use chrono::Datelike;
    let in_30_days = chrono::Utc::now() + chrono::Duration::days(30);
    Pki {
        ca_pem: ca_cert.pem(),
        valid: leaf((
            in_30_days.year(),
            in_30_days.month() as u8,
            in_30_days.day() as u8,
        )),
        expired: leaf((2021, 1, 1)),
    }
}

/// An HTTP/1.1 server (TLS with `cert`): `/health` 200 "ok", `/down` 503,
/// `/slow` 200 after 3 s, `/cut` closes without answering.
async fn http_server(cert: Option<(Vec<u8>, Vec<u8>)>) -> SocketAddr {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = cert.map(|(der, key)| {
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(tcp).await {
                            answer(tls).await;
                        }
                    }
                    None => answer(tcp).await,
                }
            });
        }
    });
    addr
}

async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (status, body) = match path.as_str() {
        "/health" => ("200 OK", "ok"),
        "/down" => ("503 Service Unavailable", "down"),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ("200 OK", "ok")
        }
        "/cut" => return,
        _ => ("404 Not Found", "no"),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

#[tokio::test]
async fn http_up_down_slow_wrong_status_and_cut_off() {
    let addr = http_server(None).await;
    let url = |p: &str| format!("http://{addr}{p}");
    let mut up = probe(&format!(
        "name = \"gw\"\nkind = \"http\"\nurl = \"{}\"\nbody_regex = \"^ok$\"\ninterval = \"5s\"\ntimeout = \"1s\"",
        url("/health")
    ));
    let r = up.run_once().await;
    assert_eq!(code(&r), "ok", "{r:?}");
    assert_eq!(r.operation, "GET /health");
    let events = r.events(up.config(), "h1", 0);
    assert_eq!(events[0].name, "http@gw GET /health");
    assert_eq!(events[0].layer, panorama_model::Layer::Component);
    assert_eq!(
        events[0].service, "h1",
        "service defaults to the agent's host"
    );

    let mut down = probe(&format!(
        "name = \"gw\"\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"1s\"",
        url("/down")
    ));
    let r = down.run_once().await;
    assert_eq!(code(&r), "status 503");
    assert!(!r.events(down.config(), "h1", 0)[0].outcome.is_ok());

    let mut wrong = probe(&format!(
        "name = \"gw\"\nkind = \"http\"\nurl = \"{}\"\nexpect_status = 204\ntimeout = \"1s\"",
        url("/health")
    ));
    assert_eq!(code(&wrong.run_once().await), "status 200");
    let mut body = probe(&format!(
        "name = \"gw\"\nkind = \"http\"\nurl = \"{}\"\nbody_regex = \"healthy\"\ntimeout = \"1s\"",
        url("/health")
    ));
    assert_eq!(code(&body.run_once().await), "body-mismatch");

    // A slow target costs one timeout, not more.
    let mut slow = probe(&format!(
        "name = \"gw\"\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"500ms\"",
        url("/slow")
    ));
    let t = Instant::now();
    let r = slow.run_once().await;
    assert_eq!(code(&r), TIMEOUT);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(r.latency >= Duration::from_millis(500));

    let mut cut = probe(&format!(
        "name = \"gw\"\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"1s\"",
        url("/cut")
    ));
    let r = cut.run_once().await;
    assert!(r.result.is_err(), "{r:?}");
    assert_ne!(code(&r), TIMEOUT, "a closed connection fails at once");

    let refused = free_port();
    let mut gone = probe(&format!(
        "name = \"gw\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{refused}/health\"\ntimeout = \"1s\""
    ));
    assert_eq!(code(&gone.run_once().await), "refused");
}

#[tokio::test]
async fn https_certificates_valid_expired_and_unknown() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let good = http_server(Some(pki.valid.clone())).await;
    let expired = http_server(Some(pki.expired.clone())).await;
    let table = |addr: SocketAddr, extra: &str| {
        format!(
            "name = \"login-gw\"\nkind = \"http\"\nurl = \"https://127.0.0.1:{}/health\"\ntimeout = \"2s\"\n{extra}",
            addr.port()
        )
    };
    let ca = format!("ca_file = \"{}\"", ca_file.display());

    let r = probe(&table(good, &ca)).run_once().await;
    assert_eq!(code(&r), "ok", "{r:?}");
    let days = figure(&r, "cert_days").expect("cert_days gauge");
    assert!((28.0..=31.0).contains(&days), "about 30 days left: {days}");

    let r = probe(&table(expired, &ca)).run_once().await;
    assert_eq!(code(&r), "tls-expired", "{r:?}");

    let r = probe(&table(good, "")).run_once().await;
    assert_eq!(code(&r), "tls-unknown-issuer", "{r:?}");

    // Without verification the expired certificate still answers, and its
    // gauge says how long ago it expired.
    let r = probe(&table(expired, "tls_verify = false"))
        .run_once()
        .await;
    assert_eq!(code(&r), "ok", "{r:?}");
    assert!(figure(&r, "cert_days").unwrap() < -300.0, "{r:?}");
}

// ---------------------------------------------------------------- TCP

#[tokio::test]
async fn tcp_accepting_and_refusing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut open = probe(&format!(
        "name = \"db-port\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{port}\""
    ));
    let r = open.run_once().await;
    assert_eq!(code(&r), "ok");
    assert_eq!(
        r.events(open.config(), "h1", 0)[0].name,
        "tcp@db-port connect"
    );
    drop(listener);
    assert_eq!(code(&open.run_once().await), "refused");
}

// ---------------------------------------------------------------- servers

/// A child process stopped (SIGKILL) when dropped.
struct Server {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(bin: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{bin} not found: run scripts/redis.sh install and scripts/mariadb.sh install (scripts/test.sh does)"
    );
}

async fn until_ok(runner: &mut Runner, deadline: Duration) -> Report {
    let start = Instant::now();
    loop {
        let r = runner.run_once().await;
        if r.result.is_ok() || start.elapsed() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn redis_server(port: u16) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(find("redis-server"))
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    Server { child, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_up_hung_killed_mid_probe_and_down() {
    let port = free_port();
    let server = redis_server(port);
    let mut p = probe(&format!(
        "name = \"cache1\"\nkind = \"redis\"\ntarget = \"127.0.0.1:{port}\"\ninterval = \"5s\"\ntimeout = \"1s\""
    ));
    let r = until_ok(&mut p, Duration::from_secs(20)).await;
    assert_eq!(code(&r), "ok", "{r:?}");
    assert!(figure(&r, "connected_clients").unwrap() >= 1.0, "{r:?}");
    assert!(figure(&r, "used_memory").unwrap() > 0.0, "{r:?}");
    assert!(figure(&r, "ops_per_sec").is_some(), "{r:?}");
    let names: Vec<String> = r
        .events(p.config(), "h1", 0)
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names[0], "redis@cache1 ping");
    assert!(
        names.contains(&"redis@cache1 used_memory".to_string()),
        "{names:?}"
    );

    // Hung (SIGSTOP): the connection is accepted by the kernel, nothing answers.
    server.signal("-STOP");
    let t = Instant::now();
    let r = p.run_once().await;
    assert_eq!(code(&r), TIMEOUT, "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1900),
        "one timeout: {:?}",
        t.elapsed()
    );

    // Killed while a probe waits for its answer: the probe fails as soon
    // as the connection dies, not at its timeout.
    let mut patient = probe(&format!(
        "name = \"cache1\"\nkind = \"redis\"\ntarget = \"127.0.0.1:{port}\"\ninterval = \"20s\"\ntimeout = \"10s\""
    ));
    let waiting = tokio::spawn(async move {
        let t = Instant::now();
        (patient.run_once().await, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal("-KILL");
    let (r, took) = waiting.await.unwrap();
    assert!(r.result.is_err(), "{r:?}");
    assert_ne!(code(&r), TIMEOUT, "{r:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(code(&p.run_once().await), "refused");
}

fn mariadb_server(port: u16) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(find("mariadb-install-db"))
        .arg("--no-defaults")
        .arg("--user=root")
        .arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .output()
        .expect("mariadb-install-db runs");
    assert!(
        out.status.success(),
        "mariadb-install-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let child = Command::new(find("mariadbd"))
        .arg("--no-defaults")
        .arg("--user=root")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.path().join("sock").display()))
        .arg(format!("--pid-file={}", dir.path().join("pid").display()))
        .arg(format!(
            "--log-error={}",
            dir.path().join("error.log").display()
        ))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--innodb-buffer-pool-size=16M")
        // Accounts are not what the probe is about; the exchange is.
        .arg("--skip-grant-tables")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mariadbd starts");
    Server { child, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_up_hung_killed_mid_probe_and_down() {
    let port = free_port();
    let server = mariadb_server(port);
    let mut p = probe(&format!(
        "name = \"db1\"\nkind = \"mysql\"\ntarget = \"127.0.0.1:{port}\"\nuser = \"monitor\"\ninterval = \"5s\"\ntimeout = \"1s\""
    ));
    let r = until_ok(&mut p, Duration::from_secs(60)).await;
    assert_eq!(code(&r), "ok", "{r:?}");
    assert_eq!(r.events(p.config(), "h1", 0)[0].name, "mysql@db1 select1");
    assert!(figure(&r, "threads_connected").unwrap() >= 1.0, "{r:?}");
    assert!(figure(&r, "threads_running").unwrap() >= 1.0, "{r:?}");
    assert!(figure(&r, "slow_queries").is_some(), "{r:?}");

    server.signal("-STOP");
    let t = Instant::now();
    assert_eq!(code(&p.run_once().await), TIMEOUT);
    assert!(
        t.elapsed() < Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );

    // Killed (-9) while a probe waits for the server's handshake: that run
    // ends in one error as soon as the connection dies, well inside its
    // timeout, and the next run finds nothing listening.
    let mut patient = probe(&format!(
        "name = \"db1\"\nkind = \"mysql\"\ntarget = \"127.0.0.1:{port}\"\nuser = \"monitor\"\ninterval = \"20s\"\ntimeout = \"10s\""
    ));
    let waiting = tokio::spawn(async move {
        let t = Instant::now();
        (patient.run_once().await, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the probe waits on the stopped server"
    );
    server.signal("-KILL");
    let (r, took) = waiting.await.unwrap();
    assert!(r.result.is_err(), "{r:?}");
    assert_ne!(code(&r), TIMEOUT, "{r:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(r.figures.is_empty(), "{r:?}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    assert_eq!(code(&p.run_once().await), "refused");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

// ---------------------------------------------------------------- restart

/// A collector stand-in with the real ledger's rule: per (agent, source)
/// the highest end counted; a batch ending at or below it is a duplicate,
/// acknowledged and not counted. With `hang`, it records the first batch
/// and never answers it (the agent is stopped while it waits).
#[derive(Default)]
struct Ledger {
    received: Vec<(u64, u64, usize)>,
    counted_to: u64,
    counted_events: usize,
    duplicates: usize,
    hang_first: bool,
}

async fn collector(ledger: Arc<Mutex<Ledger>>) -> SocketAddr {
    use axum::body::Bytes;
    use axum::extract::State;
    async fn ingest(
        State(l): State<Arc<Mutex<Ledger>>>,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> &'static str {
        // Compressed or not, as the agent chose (not, to this loopback server).
        let raw = match headers.get("content-encoding") {
            Some(e) if e == "zstd" => zstd::stream::decode_all(&body[..]).unwrap(),
            _ => body.to_vec(),
        };
        let batch = panorama_model::wire::binary::decode(&raw).unwrap();
        let hang = {
            let mut l = l.lock().unwrap();
            let (s, e) = (batch.meta.start_offset, batch.meta.end_offset);
            l.received.push((s, e, batch.events.len()));
            let hang = std::mem::take(&mut l.hang_first);
            if e <= l.counted_to {
                l.duplicates += 1;
            } else {
                assert!(
                    s >= l.counted_to,
                    "a batch straddling the counted offset: {s}..{e}"
                );
                l.counted_to = e;
                l.counted_events += batch.events.len();
            }
            hang
        };
        if hang {
            std::future::pending::<()>().await;
        }
        "{}"
    }
    let app = axum::Router::new()
        .route("/api/v1/ingest", axum::routing::post(ingest))
        .with_state(ledger);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_restart_resends_nothing_twice() {
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = target.local_addr().unwrap().port();
    let ledger = Arc::new(Mutex::new(Ledger {
        hang_first: true,
        ..Ledger::default()
    }));
    let addr = collector(ledger.clone()).await;
    let data = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"{}\"\nhost = \"h1\"\nagent_id = \"a1\"\n[collector]\nurls = [\"http://{addr}\"]\n[host_metrics]\nenabled = false\n[[probe]]\nname = \"p\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{port}\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\njitter = \"10ms\"\n",
        data.path().display()
    );
    let cfg = AgentConfig::parse(Path::new("agent.toml"), &text).unwrap();
    let start = |cfg: AgentConfig| {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let figs = Arc::new(panorama_agent::run::AgentFigures::default());
        (tx, tokio::spawn(panorama_agent::run::run(cfg, figs, rx)))
    };
    // First life: the first batch reaches the collector, which holds on
    // to it without answering; the agent is stopped while it waits.
    let (stop, agent) = start(cfg.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ledger.lock().unwrap().received.is_empty() {
        assert!(Instant::now() < deadline, "no batch arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
    let first = ledger.lock().unwrap().received.clone();
    assert_eq!(first.len(), 1, "one batch in flight at a time: {first:?}");

    // Second life: the staged batch is sent again with the same range,
    // recognised, and the sequence goes on after it.
    let (stop, agent) = start(cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ledger.lock().unwrap().received.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the agent did not go on shipping"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
    let l = ledger.lock().unwrap();
    assert_eq!(
        l.received[1], l.received[0],
        "the batch in flight is resent as it was: {:?}",
        l.received
    );
    assert_eq!(
        l.duplicates, 1,
        "and only that one is a duplicate: {:?}",
        l.received
    );
    for w in l.received[1..].windows(2) {
        assert_eq!(w[1].0, w[0].1, "ranges follow each other: {:?}", l.received);
    }
    let sent: usize = l.received[1..].iter().map(|r| r.2).sum();
    assert_eq!(l.counted_events, sent, "every result counted once");
}
