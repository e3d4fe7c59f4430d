//! The collector on a real network footing, with real processes: HTTPS
//! with a CA and certificates made here, the agent shipping over it,
//! plain HTTP refused, a client-certificate-required collector refusing an
//! agent without one, a renewed certificate picked up without a restart;
//! and a collector without credentials refusing to start off loopback.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use panorama_tests::{Proc, binary, free_port};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: PathBuf,
}

fn make_ca(dir: &Path, name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, cert.pem()).unwrap();
    Ca { cert, key, pem }
}

/// A leaf signed by `ca`, written as `name.pem` and `name.key`; its serial
/// shows which one a server presents.
fn leaf(ca: &Ca, dir: &Path, name: &str, client: bool) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    if client {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert.der().to_vec())
}

fn client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_info(true)
        .build()
        .unwrap()
}

async fn wait_tls_healthy(c: &reqwest::Client, url: &str, log: &Path) {
    let start = Instant::now();
    loop {
        if let Ok(r) = c.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} not healthy in 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn presented(c: &reqwest::Client, url: &str) -> Vec<u8> {
    let r = c.get(url).send().await.unwrap();
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("the server's certificate")
        .to_vec()
}

fn collector_args(dir: &Path, port: u16, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "collector",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        dir.join("cdata").to_str().unwrap(),
        "--grace-secs",
        "1",
        "--token",
        "agent-token-123",
        "--api-token",
        "viewer:viewer-token-123",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn agent_config(dir: &Path, port: u16, ca: &Path, identity: Option<(&Path, &Path)>) -> PathBuf {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let id = identity
        .map(|(c, k)| {
            format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                c.display(),
                k.display()
            )
        })
        .unwrap_or_default();
    let text = format!(
        "data_dir = \"{}\"\nagent_id = \"tls-agent\"\n\n[collector]\nurls = [\"https://127.0.0.1:{port}\"]\ntoken = \"agent-token-123\"\nca_file = \"{}\"\n{id}\n[host_metrics]\nenabled = false\n\n[[source]]\nname = \"app\"\npaths = [\"{}/access.log\"]\n[source.parse]\nformat = \"combined\"\nservice = \"shop\"\n",
        dir.join("adata").display(),
        ca.display(),
        logs.display()
    );
    let p = dir.join("agent.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn write_lines(dir: &Path, n: usize) {
    let now = chrono::Utc::now();
    let stamp = now.format("%d/%b/%Y:%H:%M:%S +0000");
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "10.0.0.1 - - [{stamp}] \"GET /tls/{i} HTTP/1.1\" 200 12 \"-\" \"t\"\n"
        ));
    }
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(dir.join("logs/access.log"), text).unwrap();
}

async fn counted(c: &reqwest::Client, base: &str) -> u64 {
    let now = chrono::Utc::now().timestamp_millis();
    let r = c
        .get(format!(
            "{base}/api/v1/series?layer=url&service=shop&from={}&to={}",
            now - 600_000,
            now + 60_000
        ))
        .bearer_auth("viewer-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["points"]
        .as_array()
        .map(|p| p.iter().filter_map(|x| x["count"].as_u64()).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_ships_over_https_and_a_renewed_certificate_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "test-ca");
    let (cert, key, first) = leaf(&ca, d, "server", false);
    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");
    let log = d.join("collector.log");
    let args = collector_args(
        d,
        port,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let _collector = Proc::start(&binary("panorama"), &args, &log);
    let https = client(&ca.pem);
    wait_tls_healthy(&https, &format!("{base}/health"), &log).await;

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // A client that does not trust the CA refuses the server.
    assert!(reqwest::get(format!("{base}/health")).await.is_err());

    let agent_log = d.join("agent.log");
    let cfg = agent_config(d, port, &ca.pem, None);
    write_lines(d, 40);
    let _agent = Proc::start(
        &binary("panorama-agent"),
        &["--config".into(), cfg.display().to_string()],
        &agent_log,
    );
    let start = Instant::now();
    while counted(&https, &base).await < 40 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "40 lines not counted over HTTPS in 60 s; agent log:\n{}\ncollector log:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(counted(&https, &base).await, 40);

    // Renewal: a new certificate and key replace the files (by rename, as
    // renewal tools do); the running collector serves it within seconds.
    assert_eq!(presented(&https, &format!("{base}/health")).await, first);
    let (c2, k2, second) = leaf(&ca, d, "server-renewed", false);
    std::fs::rename(&k2, &key).unwrap();
    std::fs::rename(&c2, &cert).unwrap();
    let start = Instant::now();
    loop {
        let fresh = client(&ca.pem);
        if presented(&fresh, &format!("{base}/health")).await == second {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "renewed certificate not served after 30 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_required_collector_refuses_an_agent_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "test-ca");
    let agents_ca = make_ca(d, "agents-ca");
    let (cert, key, _) = leaf(&ca, d, "server", false);
    let (acert, akey, _) = leaf(&agents_ca, d, "agent", true);
    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");
    let log = d.join("collector.log");
    let args = collector_args(
        d,
        port,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-client-ca",
            agents_ca.pem.to_str().unwrap(),
        ],
    );
    let _collector = Proc::start(&binary("panorama"), &args, &log);
    let pem = [
        std::fs::read(&acert).unwrap(),
        std::fs::read(&akey).unwrap(),
    ]
    .concat();
    let with_id = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca.pem).unwrap()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    wait_tls_healthy(&with_id, &format!("{base}/health"), &log).await;
    let without = client(&ca.pem);
    assert!(
        without.get(format!("{base}/health")).send().await.is_err(),
        "a client without a certificate was served"
    );

    // The agent without a client certificate ships nothing...
    write_lines(d, 25);
    let agent_log = d.join("agent.log");
    let cfg = agent_config(d, port, &ca.pem, None);
    let mut agent = Proc::start(
        &binary("panorama-agent"),
        &["--config".into(), cfg.display().to_string()],
        &agent_log,
    );
    let start = Instant::now();
    while !std::fs::read_to_string(&agent_log)
        .unwrap_or_default()
        .contains("ship retry")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the agent never tried: {}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        counted(&with_id, &base).await,
        0,
        "nothing counted without a client certificate"
    );
    assert!(agent.terminate(Duration::from_secs(20)));

    // ...and with one, everything.
    let cfg = agent_config(d, port, &ca.pem, Some((&acert, &akey)));
    let _agent = Proc::start(
        &binary("panorama-agent"),
        &["--config".into(), cfg.display().to_string()],
        &agent_log,
    );
    let start = Instant::now();
    while counted(&with_id, &base).await < 25 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not counted with a client certificate: {}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_collector_refuses_to_start_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = std::process::Command::new(binary("panorama"))
        .args([
            "collector",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started open on 0.0.0.0: {err}");
    assert!(err.contains("--insecure-open"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "refused before opening anything"
    );
    // Told to, it starts (and answers anonymously).
    let log = dir.path().join("open.log");
    let _p = Proc::start(
        &binary("panorama"),
        &[
            "collector".into(),
            "--listen".into(),
            format!("0.0.0.0:{port}"),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--insecure-open".into(),
        ],
        &log,
    );
    panorama_tests::wait_healthy(
        &format!("http://127.0.0.1:{port}/health"),
        Duration::from_secs(30),
        &log,
    )
    .await;
    let r = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/series?layer=url"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
