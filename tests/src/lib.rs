//! End-to-end and fault-injection tests across real processes: real
//! collectors and agents started from their binaries, a real
//! Elasticsearch, a real SMTP server, real Chromium.
//!
//! **Owns** what crosses processes: kill -9 drills, restarts, the
//! exactly-once counts end to end. **Must not** be needed by anything
//! else. Its tests live in `tests/tests/`; this library holds what they
//! share: building and starting the binaries, free ports, waiting for
//! health, and [`fault`] injection.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod fault;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// Path to a workspace binary, built once per test process (cargo does not
/// build other packages' binaries for a test).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--quiet", "--workspace", "--bins"])
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    target.join("debug").join(name)
}

/// The arguments of a `panorama collector` on 127.0.0.1:`port` with its data
/// in `data_dir`, a one-second grace, the agent token `agent_token` and the
/// viewer token `viewer_token` (the queries the tests make need one).
pub fn collector_args(
    port: u16,
    data_dir: &Path,
    agent_token: &str,
    viewer_token: &str,
) -> Vec<String> {
    [
        "collector",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        data_dir.to_str().expect("a UTF-8 data dir"),
        "--grace-secs",
        "1",
        "--token",
        agent_token,
        "--api-token",
        &format!("viewer:{viewer_token}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts `bin` with `args`, output to `log`.
    pub fn start(bin: &Path, args: &[String], log: &Path) -> Proc {
        Proc::start_with_env(bin, args, log, &[])
    }

    /// [`Proc::start`] with extra environment variables (see [`fault::Env`]).
    pub fn start_with_env(
        bin: &Path,
        args: &[String],
        log: &Path,
        env: &[(String, String)],
    ) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(out.try_clone().expect("log handle")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Proc { child }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `deadline` for a clean exit; true if it exited 0.
    pub fn terminate(&mut self, deadline: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until `url` answers 200, or panics after `deadline` naming the log.
pub async fn wait_healthy(url: &str, deadline: Duration, log: &Path) {
    let start = Instant::now();
    let client = reqwest::Client::new();
    while start.elapsed() < deadline {
        if let Ok(r) = client.get(url).timeout(Duration::from_secs(1)).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{url} not healthy after {deadline:?}; log:\n{tail}");
}

/// One message a test SMTP server (`scripts/smtp.sh run`) stored: its file,
/// when the server accepted it (the file's mtime), and its text with the
/// headers unfolded.
#[derive(Debug, Clone)]
pub struct Mail {
    /// `DIR/<n>.eml`.
    pub path: PathBuf,
    /// When the server wrote it.
    pub accepted: std::time::SystemTime,
    /// The raw message, CRLF turned into LF and folded headers joined.
    pub raw: String,
}

impl Mail {
    /// The `Subject:` header.
    pub fn subject(&self) -> &str {
        self.raw
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
    }

    /// The `Message-ID:` header: the same notice delivered twice (a crash
    /// between the server's acceptance and the outbox's record) carries the
    /// same one, and a mail reader shows it once.
    pub fn message_id(&self) -> &str {
        self.raw
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("message-id"))
                    .map(|(_, v)| v.trim())
            })
            .unwrap_or("")
    }

    /// The bodies of every part, decoded from quoted-printable or base64.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut encoding = String::new();
        let mut in_headers = true;
        let mut part = String::new();
        let flush = |encoding: &str, part: &mut String, out: &mut String| {
            match encoding {
                "quoted-printable" => out.push_str(&decode_qp(part)),
                "base64" => out.push_str(&decode_base64(part)),
                _ => out.push_str(part),
            }
            out.push('\n');
            part.clear();
        };
        for line in self.raw.lines() {
            if line.starts_with("--") && !line.contains(' ') && line.len() > 10 {
                flush(&encoding, &mut part, &mut out);
                encoding.clear();
                in_headers = true;
                continue;
            }
            if in_headers {
                if line.is_empty() {
                    in_headers = false;
                } else if let Some(v) = line
                    .to_ascii_lowercase()
                    .strip_prefix("content-transfer-encoding:")
                {
                    encoding = v.trim().to_owned();
                }
                continue;
            }
            part.push_str(line);
            part.push('\n');
        }
        flush(&encoding, &mut part, &mut out);
        out
    }

    /// The first `{prefix}…` URL in the decoded bodies.
    pub fn link(&self, prefix: &str) -> Option<String> {
        let text = self.text();
        let at = text.find(prefix)?;
        let end = text[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>' | '\''))
            .map_or(text.len(), |e| at + e);
        Some(text[at..end].replace("&amp;", "&"))
    }
}

fn decode_qp(s: &str) -> String {
    let s = s.replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len() + 1
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_base64(s: &str) -> String {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every message in `dir`, in the order the server accepted them.
pub fn mails(dir: &Path) -> Vec<Mail> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .filter_map(|p| {
            let n = p.file_stem()?.to_str()?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|(_, path)| {
            let accepted = std::fs::metadata(&path).ok()?.modified().ok()?;
            let raw = std::fs::read_to_string(&path)
                .ok()?
                .replace("\r\n", "\n")
                .replace("\n ", " ")
                .replace("\n\t", " ");
            Some(Mail {
                path,
                accepted,
                raw,
            })
        })
        .collect()
}

/// A real SMTP server (`scripts/smtp.sh run`, aiosmtpd) on `port`, storing
/// into `dir`; waits until it accepts connections. Panics with a clear
/// message when aiosmtpd is not installed.
pub fn smtp_server(port: u16, dir: &Path, log: &Path) -> Proc {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "aiosmtpd is missing: run `scripts/smtp.sh install` (Debian's python3-aiosmtpd)"
    );
    let p = Proc::start(
        &workspace().join("scripts/smtp.sh"),
        &[
            "run".into(),
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            dir.display().to_string(),
        ],
        log,
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the SMTP server on {port} did not start; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

/// `scripts/elasticsearch.sh ACTION` for a node of its own on `port`.
pub fn es_node(port: u16, action: &str) {
    let status = Command::new("bash")
        .arg(workspace().join("scripts/elasticsearch.sh"))
        .arg(action)
        .env("PANORAMA_ES_PORT", port.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("running scripts/elasticsearch.sh");
    assert!(
        status.success(),
        "scripts/elasticsearch.sh {action} on port {port} failed"
    );
}

/// The shared cluster's URL (`PANORAMA_ES_URL`, default
/// `http://127.0.0.1:9200`); panics, naming the fix, when it does not answer.
pub async fn shared_es() -> String {
    let url =
        std::env::var("PANORAMA_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".to_owned());
    let ok = reqwest::Client::new()
        .get(format!("{url}/_cluster/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(
        ok,
        "no Elasticsearch answers at {url}: run scripts/elasticsearch.sh (or set PANORAMA_ES_URL)"
    );
    url
}

/// An argon2 hash of `password` from `panorama hash-password`.
pub fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(binary("panorama"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("panorama hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "panorama hash-password failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Logs into the dashboard at `base` and returns the `Cookie` header of the
/// session, or `None` when there is no login page (dashboard not served).
pub async fn dashboard_session(base: &str, user: &str, password: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?;
    let page = client.get(format!("{base}/login")).send().await.ok()?;
    if !page.status().is_success() {
        return None;
    }
    let cookies: Vec<String> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_owned))
        .collect();
    let html = page.text().await.ok()?;
    let at = html.find("name=\"csrf\"")?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let v = tag.find("value=\"")? + 7;
    let csrf = &tag[v..v + tag[v..].find('"')?];
    let body = format!(
        "user={}&password={}&csrf={csrf}&next=%2F",
        query_encode(user),
        query_encode(password)
    );
    let r = client
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookies.join("; "))
        .body(body)
        .send()
        .await
        .ok()?;
    let session: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_owned))
        .filter(|c| c.starts_with("panorama_session="))
        .collect();
    session.into_iter().next()
}

/// Percent-encodes a query or form value (unreserved characters kept).
pub fn query_encode(s: &str) -> String {
    panorama_model::url::percent_encode(s)
}

impl Proc {
    /// True once the process has exited (for a supervisor loop that
    /// restarts it, as systemd's `Restart=on-failure` would).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

/// Waits until `dir` holds at least `n` messages or `deadline` passes, and
/// returns what is there (the caller asserts on the count).
pub async fn wait_for_mails(dir: &Path, n: usize, deadline: Duration) -> Vec<Mail> {
    let start = Instant::now();
    loop {
        let got = mails(dir);
        if got.len() >= n || start.elapsed() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rules-file tables that mail every critical alert to a test SMTP
/// server on `smtp_port` (receiver `oncall`, plain SMTP), batched by
/// `group_wait` and `group_interval` and repeated every `repeat`.
pub fn mail_route(smtp_port: u16, group_wait: &str, group_interval: &str, repeat: &str) -> String {
    format!(
        r#"
[[receiver]]
name = "oncall"
[receiver.mail]
host = "127.0.0.1"
port = {smtp_port}
security = "plain"
from = "panorama@example.com"
to = ["oncall@example.com"]

[[route]]
match = {{ severity = "critical" }}
receivers = ["oncall"]
group_wait = "{group_wait}"
group_interval = "{group_interval}"
repeat_interval = "{repeat}"
"#
    )
}
