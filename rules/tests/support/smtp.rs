//! A real SMTP server for tests: `scripts/smtp.sh run` (aiosmtpd) as a
//! child process on a free loopback port, with its own temporary directory
//! for the received mail and, for the TLS modes, a private CA.
//!
//! ```ignore
//! mod support;
//! use support::{SmtpServer, SmtpOptions, SmtpSecurity};
//!
//! let mut server = SmtpServer::start();               // plain SMTP
//! let mailer = Mailer::new(server.mail_config(&["oncall@example.com"]))?;
//! mailer.send(&notice).await?;
//! let mails = server.wait_for_messages(1, Duration::from_secs(10)).await;
//! assert!(mails[0].text().contains("POST /pay"));
//! server.stop();                                      // kill -9: the server is down
//! server.restart();                                   // same port, same mail directory
//! ```
//!
//! The server needs Debian's python3-aiosmtpd, which `scripts/test.sh`
//! installs through `scripts/smtp.sh install`. Without it every test that
//! starts a server fails with that instruction: a mail test that skipped
//! itself would pass exactly where mail is broken.

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mailparse::{MailHeaderMap, ParsedMail};
use panorama_rules::notify::mail::{MailConfig, Security};

/// Where the server listens; a literal address, so that no resolver
/// order (::1 first) can send the client elsewhere.
pub const HOST: &str = "127.0.0.1";

/// How long a server may take to come up before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How the test server protects its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS.
    #[default]
    Plain,
    /// STARTTLS offered and required before MAIL (and before AUTH).
    StartTls,
    /// TLS from the first byte.
    Tls,
}

/// What kind of server to start.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// Connection protection; the certificate is issued by a CA made for
    /// this server, whose PEM is at [`SmtpServer::ca_file`].
    pub security: SmtpSecurity,
    /// Require AUTH (PLAIN/LOGIN) with this user and password.
    pub auth: Option<(String, String)>,
    /// Recipients answered with `550` at RCPT TO.
    pub reject: Vec<String>,
    /// Recipients answered with `451` at RCPT TO.
    pub defer: Vec<String>,
}

/// A running (or stopped) test SMTP server. Killed when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    dir: tempfile::TempDir,
    port: u16,
    opts: SmtpOptions,
    child: Option<Child>,
    starts: u32,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("rules/ has a parent")
        .to_path_buf()
}

/// Fails the test, loudly, when the server cannot run here.
fn require_aiosmtpd() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let out = Command::new("/usr/bin/python3")
            .args(["-c", "import aiosmtpd"])
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Err(format!("/usr/bin/python3: {e}")),
        }
    });
    if let Err(why) = result {
        panic!(
            "the mail tests need a real SMTP server (python3-aiosmtpd), which is not \
             installed: run `scripts/smtp.sh install` (scripts/test.sh does this) \
             and rerun the tests. ({why})"
        );
    }
}

impl SmtpServer {
    /// A plain SMTP server accepting everything.
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(SmtpOptions::default())
    }

    /// A server as described by `opts`, up and accepting connections.
    pub fn start_with(opts: SmtpOptions) -> SmtpServer {
        require_aiosmtpd();
        let dir = tempfile::Builder::new()
            .prefix("panorama-smtp-")
            .tempdir()
            .expect("temporary directory");
        fs::create_dir_all(dir.path().join("mail")).expect("mail directory");
        if opts.security != SmtpSecurity::Plain {
            write_certificates(&dir.path().join("tls"));
        }
        let mut server = SmtpServer {
            dir,
            port: free_port(),
            opts,
            child: None,
            starts: 0,
        };
        server.spawn();
        server
    }

    /// The port, stable across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address to connect to.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// Where received messages land, as `<n>.eml`.
    pub fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// PEM of the CA that issued the server's certificate (TLS modes only).
    pub fn ca_file(&self) -> Option<PathBuf> {
        (self.opts.security != SmtpSecurity::Plain).then(|| self.dir.path().join("tls/ca.pem"))
    }

    /// A mail configuration that reaches this server from `from@panorama.test`
    /// to `to`, with the matching security, port and CA. Authentication is
    /// left to the test (`username`, `password_env`), since the password
    /// travels through the environment.
    pub fn mail_config(&self, to: &[&str]) -> MailConfig {
        MailConfig {
            host: HOST.to_string(),
            port: Some(self.port),
            security: match self.opts.security {
                SmtpSecurity::Plain => Security::Plain,
                SmtpSecurity::StartTls => Security::StartTls,
                SmtpSecurity::Tls => Security::Tls,
            },
            username: None,
            password_env: None,
            from: "Panorama <alerts@panorama.test>".to_string(),
            to: to.iter().map(|s| s.to_string()).collect(),
            ca_file: self.ca_file(),
            timeout_secs: Some(5),
        }
    }

    /// Whether the server process is up.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// Kills the server (SIGKILL, like a crash); connections drop, the
    /// port refuses until [`restart`](Self::restart). Received mail stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and mail directory (after
    /// stopping it, if it runs); numbering of new messages continues.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log_path = self.log_path();
        let log = fs::File::create(&log_path).expect("server log");
        let mut cmd = Command::new(repo_root().join("scripts/smtp.sh"));
        cmd.arg("run")
            .arg("--host")
            .arg(HOST)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.mail_dir());
        let tls = self.dir.path().join("tls");
        match self.opts.security {
            SmtpSecurity::Plain => {}
            SmtpSecurity::StartTls => {
                cmd.arg("--starttls")
                    .arg(tls.join("cert.pem"))
                    .arg(tls.join("key.pem"));
            }
            SmtpSecurity::Tls => {
                cmd.arg("--tls")
                    .arg(tls.join("cert.pem"))
                    .arg(tls.join("key.pem"));
            }
        }
        if let Some((user, pass)) = &self.opts.auth {
            cmd.arg("--auth").arg(format!("{user}:{pass}"));
        }
        for r in &self.opts.reject {
            cmd.arg("--reject").arg(r);
        }
        for d in &self.opts.defer {
            cmd.arg("--defer").arg(d);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run scripts/smtp.sh: {e}"));
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("ready ") {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                panic!("the test SMTP server exited ({status}) before it was ready:\n{log}");
            }
            if Instant::now() > deadline {
                self.stop();
                panic!(
                    "the test SMTP server did not come up on port {} within {:?}:\n{log}",
                    self.port, START_TIMEOUT
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("server.{}.log", self.starts))
    }

    /// The server's output so far (this run), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let mut files: Vec<(u64, PathBuf)> = fs::read_dir(self.mail_dir())
            .expect("read the mail directory")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name.strip_suffix(".eml")?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        files.sort();
        files.into_iter().map(|(_, p)| Received::load(p)).collect()
    }

    /// Waits until at least `n` messages arrived and returns them all;
    /// fails the test with what did arrive after `timeout`. Async so that
    /// the code under test keeps running on the test's runtime.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                self.too_few(n, timeout, got);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`wait_for_messages`](Self::wait_for_messages) for tests without a runtime.
    pub fn wait_for_messages_blocking(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                self.too_few(n, timeout, got);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn too_few(&self, n: usize, timeout: Duration, got: Vec<Received>) -> ! {
        let subjects: Vec<String> = got.iter().map(|m| m.subject()).collect();
        panic!(
            "expected {n} mail(s) within {timeout:?}, got {}: {subjects:?}\nserver log:\n{}",
            got.len(),
            self.log()
        );
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One received message: the file, and the parsed mail.
#[derive(Debug)]
pub struct Received {
    /// The `.eml` file.
    pub path: PathBuf,
    /// The parsed message, trace headers (`X-Sink-*`) first.
    pub mail: ParsedMail<'static>,
}

impl Received {
    fn load(path: PathBuf) -> Received {
        let raw = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        // Leaked so the parsed mail can outlive this function: a test's
        // handful of mails is worth less than the lifetimes it would cost.
        let raw: &'static [u8] = Box::leak(raw.into_boxed_slice());
        let mail = mailparse::parse_mail(raw)
            .unwrap_or_else(|e| panic!("{} is not a mail: {e}", path.display()));
        Received { path, mail }
    }

    /// The first value of a header, decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.mail.headers.get_first_value(name)
    }

    /// The decoded subject, or empty.
    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// The body of the first part of this MIME type (`text/plain`,
    /// `text/html`), transfer-decoded; empty when there is none.
    pub fn body(&self, mimetype: &str) -> String {
        fn find<'a>(p: &'a ParsedMail<'a>, mimetype: &str) -> Option<&'a ParsedMail<'a>> {
            if p.subparts.is_empty() {
                return (p.ctype.mimetype == mimetype).then_some(p);
            }
            p.subparts.iter().find_map(|s| find(s, mimetype))
        }
        find(&self.mail, mimetype)
            .map(|p| p.get_body().expect("decodable body"))
            .unwrap_or_default()
    }

    /// The plain-text body.
    pub fn text(&self) -> String {
        self.body("text/plain")
    }

    /// The HTML body.
    pub fn html(&self) -> String {
        self.body("text/html")
    }

    /// Envelope recipients, as the server accepted them.
    pub fn rcpt_to(&self) -> Vec<String> {
        self.header("X-Sink-Rcpt-To")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().trim_matches(['<', '>']).to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Whether the message travelled over TLS (STARTTLS or implicit).
    pub fn tls(&self) -> bool {
        self.header("X-Sink-Tls").as_deref() == Some("yes")
    }

    /// The user the client authenticated as, if it did.
    pub fn auth_user(&self) -> Option<String> {
        self.header("X-Sink-Auth")
    }
}

/// A CA and a server certificate for `localhost` and `127.0.0.1` signed by
/// it: the private-CA setup `ca_file` exists for, rather than a
/// self-signed leaf that some verifiers treat differently.
fn write_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    fs::create_dir_all(dir).expect("tls directory");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Panorama test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), HOST.to_string()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "panorama-test-smtp");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");

    let write = |name: &str, pem: String| {
        let mut f = fs::File::create(dir.join(name)).expect("certificate file");
        f.write_all(pem.as_bytes()).expect("write certificate");
    };
    write("ca.pem", ca.pem());
    write("cert.pem", cert.pem());
    write("key.pem", key.serialize_pem());
}
