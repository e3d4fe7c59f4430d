//! The dashboard in a real browser: a real `panorama` with a rule and a
//! dashboard user, events posted to it, and Debian's headless Chromium
//! driven through WebDriver (`chromedriver`, which `scripts/chromium.sh`
//! installs). It logs in, opens every page, follows a firing alert to its
//! series and samples, reads them at phone width (390 px), and proves that
//! hostile log content — a route named `/<script>alert(1)</script>`, a raw
//! line with an `onerror` handler — shows as text and runs nothing.
//! Screenshots go to `target/dashboard-e2e/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use panorama_tests::{Proc, binary, free_port, wait_healthy, workspace};
use serde_json::{Value, json};

const HOSTILE: &str = "/<script>alert(1)</script>";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A minimal W3C WebDriver client: just the commands these tests use.
struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: Proc,
}

impl Browser {
    async fn start(log: &std::path::Path) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run scripts/chromium.sh (the README's test command does)"
            );
        }
        let port = free_port();
        let driver = Proc::start(
            std::path::Path::new(CHROMEDRIVER),
            &[format!("--port={port}")],
            log,
        );
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}");
        wait_healthy(&format!("{url}/status"), Duration::from_secs(20), log).await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"]
            }
        }}});
        let r: Value = http
            .post(format!("{url}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {r}"))
            .to_owned();
        Browser {
            http,
            base: format!("{url}/session/{id}"),
            _driver: driver,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json");
        r["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.cmd(reqwest::Method::GET, path, None).await
    }

    async fn goto(&self, url: &str) {
        let v = self.post("/url", json!({ "url": url })).await;
        assert!(v.is_null(), "navigating to {url}: {v}");
    }

    async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element's id, or `None` when the selector matches nothing.
    async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v.as_object()?
            .values()
            .next()
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    async fn must_find(&self, css: &str) -> String {
        match self.find(css).await {
            Some(e) => e,
            None => panic!(
                "no {css} on {}: {}",
                self.current_url().await,
                self.js("return document.body.innerText.slice(0, 2000)")
                    .await
            ),
        }
    }

    async fn text(&self, css: &str) -> String {
        let e = self.must_find(css).await;
        self.get(&format!("/element/{e}/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let e = self.must_find(css).await;
        let v = self.post(&format!("/element/{e}/click"), json!({})).await;
        assert!(v.is_null(), "click {css}: {v}");
    }

    /// Clicks and waits for the browser to leave the current page.
    async fn click_away(&self, css: &str) {
        let before = self.current_url().await;
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.current_url().await == before {
            assert!(
                Instant::now() < deadline,
                "clicking {css} left {before} for nowhere"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.js("return document.readyState").await != json!("complete") {
            assert!(Instant::now() < deadline, "page after {css} never loaded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.must_find(css).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text }))
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Whether a JavaScript dialog (`alert()`) is open.
    async fn dialog_open(&self) -> bool {
        let v = self.get("/alert/text").await;
        v.is_string()
    }

    async fn screenshot(&self, name: &str) {
        let png = self.get("/screenshot").await;
        let bytes = base64_decode(png.as_str().expect("screenshot data"));
        let dir = shots_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("screenshot");
    }

    async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    async fn close(&self) {
        self.cmd(reqwest::Method::DELETE, "", None).await;
    }
}

fn shots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from)
        .join("dashboard-e2e")
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Posts a second's worth of events: healthy logins and the hostile route
/// failing, with raw lines that carry markup.
async fn post_events(http: &reqwest::Client, url: &str) {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut body = String::new();
    for i in 0..10 {
        body.push_str(
            &json!({
                "ts": ts, "layer": "url", "service": "login", "host": "web1",
                "name": "POST /api/login", "ok": i != 0, "code": if i == 0 { "500" } else { "200" },
                "latency_ms": 20 + i,
            })
            .to_string(),
        );
        body.push('\n');
    }
    for _ in 0..4 {
        body.push_str(&json!({
            "ts": ts, "layer": "url", "service": "login", "host": "web1",
            "name": HOSTILE, "ok": false, "code": "500", "latency_ms": 250,
            "raw": "GET /<script>alert(1)</script> 500 <img src=x onerror=\"window.__pwned=1;alert(2)\">",
        }).to_string());
        body.push('\n');
    }
    body.push_str(
        &json!({
            "ts": ts, "layer": "infra", "service": "host", "host": "web1",
            "name": "agent.heartbeat", "value": 1,
        })
        .to_string(),
    );
    body.push('\n');
    let r = http
        .post(format!("{url}/api/v1/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert!(r.status().is_success(), "ingest: {}", r.status());
}

fn hash(password: &str) -> String {
    let mut child = std::process::Command::new(binary("panorama"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("panorama hash-password");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{password}").expect("write password");
    }
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The language switch comes back to the same URL: wait for the page's
/// language instead.
async fn wait_lang(b: &Browser, lang: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while b
        .js("return document.readyState === 'complete' && document.documentElement.lang")
        .await
        != json!(lang)
    {
        assert!(
            Instant::now() < deadline,
            "the page never switched to {lang}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn no_script_ran(b: &Browser, page: &str) {
    assert!(!b.dialog_open().await, "{page}: an alert() dialog opened");
    assert_eq!(
        b.js("return typeof window.__pwned").await,
        json!("undefined"),
        "{page}: injected handler ran"
    );
    assert_eq!(
        b.js("return Array.from(document.scripts).map(s => s.getAttribute('src')).join(',')")
            .await,
        json!("/static/app.js"),
        "{page}: the only script is the dashboard's own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("url.toml"),
        r#"
[[rule]]
name = "login-errors"
layer = "url"
service = "login"
window = "5m"
every = "1s"
when = "error_ratio > 20%"
min_count = 3
for = "0s"
severity = "critical"
summary = "{{series}} failing {{value}}"
"#,
    )
    .unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("panorama.log");
    let user = format!("ana:operator:{}", hash("e2e-secret"));
    let _panorama = Proc::start(
        &binary("panorama"),
        &[
            "collector".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--rules".into(),
            rules.display().to_string(),
            "--grace-secs".into(),
            "2".into(),
            "--dashboard-user".into(),
            user,
            "--time-zone".into(),
            "Asia/Shanghai".into(),
        ],
        &log,
    );
    wait_healthy(&format!("{url}/health"), Duration::from_secs(30), &log).await;
    // Events every second for the whole test, so whatever minute an alert
    // names has data and samples.
    let http = reqwest::Client::new();
    let feeder = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                post_events(&http, &url).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let start = Instant::now();
    loop {
        let v: Value = http
            .get(format!("{url}/api/v1/alerts"))
            .send()
            .await
            .expect("alerts")
            .json()
            .await
            .expect("alerts json");
        if v["firing"].as_array().is_some_and(|f| !f.is_empty()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no alert fired in 60 s: {v}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let b = Browser::start(&dir.path().join("chromedriver.log")).await;

    // Log in: the dashboard sends a stranger to the login page and back.
    b.goto(&format!("{url}/alerts")).await;
    assert!(b.current_url().await.contains("/login?next=%2Falerts"));
    b.type_into("#user", "ana").await;
    b.type_into("#password", "e2e-secret").await;
    b.screenshot("01-login").await;
    b.click_away("#login").await;
    assert_eq!(
        b.current_url().await,
        format!("{url}/alerts"),
        "after login: {}\n{}",
        b.js("return document.body.innerText").await,
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Every page, with what it must show.
    for (path, css, shot) in [
        ("/", "#band-url", "02-overview"),
        ("/layer/url", "#series-table", "03-layer-url"),
        ("/layer/infra?range=6h", "figure.chart", "04-layer-infra"),
        ("/top?layer=url&by=errors", "#top-bars", "05-top"),
        ("/hosts", "#hosts-table", "06-hosts"),
        ("/alerts", "#firing", "07-alerts"),
    ] {
        b.goto(&format!("{url}{path}")).await;
        b.must_find(css).await;
        b.screenshot(shot).await;
        no_script_ran(&b, path).await;
    }
    let overview_worst = {
        b.goto(&format!("{url}/")).await;
        b.text("#band-url .worst a").await
    };
    assert_eq!(
        overview_worst,
        format!("login · {HOSTILE}"),
        "shown as text"
    );
    // The current minute: just after it turns, it holds no event until the
    // feeder's next post (every second) lands, so look again until it does.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        b.goto(&format!("{url}/top?layer=url&by=errors&minute={now}"))
            .await;
        let bars = b.text("#top-bars").await;
        if bars.contains(HOSTILE) {
            break;
        }
        assert!(Instant::now() < deadline, "{bars}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // From the firing alert to its series and the minute's samples.
    b.goto(&format!("{url}/alerts")).await;
    b.click_away("#firing a.open").await;
    assert!(
        b.current_url()
            .await
            .contains("/series?layer=url&service=login&name=%2F%3Cscript%3E"),
        "{}",
        b.current_url().await
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.find("#samples-error").await.is_none() {
        assert!(Instant::now() < deadline, "no error samples appeared");
        tokio::time::sleep(Duration::from_secs(1)).await;
        b.js("location.reload()").await;
    }
    assert_eq!(b.text("#series-name").await, HOSTILE);
    let samples = b.text("#samples-error").await;
    assert!(
        samples.contains("<img src=x onerror=\"window.__pwned=1;alert(2)\">"),
        "the raw line as text: {samples}"
    );
    assert!(b.text("#related-alerts").await.contains("login-errors"));
    b.screenshot("08-series-from-alert").await;
    no_script_ran(&b, "series").await;

    // Chart hover shows the value under the pointer.
    let hover = b
        .js("const s = document.querySelector('figure.chart svg'); const r = s.getBoundingClientRect();
             s.dispatchEvent(new MouseEvent('mousemove', {clientX: r.right - 3, clientY: r.top + r.height / 2, bubbles: true}));
             return s.parentNode.querySelector('output.tip').textContent")
        .await;
    assert!(
        hover.as_str().is_some_and(|t| t.contains(':')),
        "hover tip: {hover}"
    );

    // A hostile path is a 404 that shows it as text.
    b.goto(&format!("{url}/<script>alert(1)</script>")).await;
    assert_eq!(b.text("code.path").await, HOSTILE);
    no_script_ran(&b, "hostile path").await;
    b.screenshot("09-hostile-path").await;

    // A phone: the alert link from an SMS opened at 390 px.
    b.resize(390, 844).await;
    b.goto(&format!("{url}/alerts")).await;
    b.click_away("#firing a.open").await;
    b.must_find("#series-name").await;
    let widths = b
        .js("return [window.innerWidth, document.documentElement.scrollWidth]")
        .await;
    let (inner, scroll) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
    assert!(inner <= 390, "phone-sized window: {widths}");
    assert!(scroll <= inner, "nothing wider than the phone: {widths}");
    b.screenshot("10-phone-series").await;
    b.goto(&format!("{url}/alerts")).await;
    let scroll = b
        .js("return [window.innerWidth, document.documentElement.scrollWidth]")
        .await;
    assert!(
        scroll[1].as_i64() <= scroll[0].as_i64(),
        "alerts at 390 px: {scroll}"
    );
    b.screenshot("11-phone-alerts").await;

    // The 10 s refresh swaps the page body and keeps the scroll position.
    b.js("window.scrollTo(0, 300)").await;
    let before = b.js("return window.scrollY").await;
    let deadline = Instant::now() + Duration::from_secs(25);
    while b
        .js("return document.body.getAttribute('data-refreshed')")
        .await
        .is_null()
    {
        assert!(Instant::now() < deadline, "the page never refreshed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(b.js("return window.scrollY").await, before, "scroll kept");

    // Switch to Chinese and back.
    b.click("#lang").await;
    wait_lang(&b, "zh-CN").await;
    assert!(b.text("header nav").await.contains("告警"));
    b.screenshot("12-phone-alerts-zh").await;
    b.click("#lang").await;
    wait_lang(&b, "en").await;

    b.close().await;
    feeder.abort();
    println!("screenshots in {}", shots_dir().display());
}

/// Posts a second's worth of one fault in two layers: `shop`'s calls to
/// `stock-db` fail (with raw lines, the samples the page leads to) and so
/// does the route waiting for them.
async fn post_incident(http: &reqwest::Client, url: &str) {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut body = String::new();
    for i in 0..5 {
        for (layer, name) in [("call", "stock-db"), ("url", "GET /api/cart")] {
            body.push_str(
                &json!({
                    "ts": ts, "layer": layer, "service": "shop", "host": "web2",
                    "name": name, "ok": i == 0, "code": if i == 0 { "200" } else { "503" },
                    "latency_ms": 900 + i,
                    "raw": format!("{layer} {name} failed: stock-db timeout #{i}"),
                })
                .to_string(),
            );
            body.push('\n');
        }
    }
    let r = http
        .post(format!("{url}/api/v1/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert!(r.status().is_success(), "ingest: {}", r.status());
}

/// The incident mail's one link opens the incident page, whose probable
/// cause leads to its raw error samples in one more click.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_mail_link_leads_to_the_cause_samples_in_two_clicks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    let mailbox = dir.path().join("mailbox");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("shop.toml"),
        format!(
            r#"
[[rule]]
name = "stock-db-errors"
layer = "call"
service = "shop"
window = "5m"
every = "1s"
when = "error_ratio > 20%"
min_count = 3
severity = "critical"

[[rule]]
name = "cart-errors"
layer = "url"
service = "shop"
window = "5m"
every = "1s"
when = "error_ratio > 20%"
min_count = 3
severity = "critical"

[[receiver]]
name = "mailbox"
[receiver.mailbox]
dir = "{}"
to = ["oncall@localhost"]

[[route]]
receivers = ["mailbox"]
group_wait = "3s"
"#,
            mailbox.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("panorama.log");
    let user = format!("ana:operator:{}", hash("e2e-secret"));
    let _panorama = Proc::start(
        &binary("panorama"),
        &[
            "collector".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--rules".into(),
            rules.display().to_string(),
            "--grace-secs".into(),
            "2".into(),
            "--dashboard-user".into(),
            user,
        ],
        &log,
    );
    wait_healthy(&format!("{url}/health"), Duration::from_secs(30), &log).await;
    let http = reqwest::Client::new();
    let feeder = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                post_incident(&http, &url).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // The incident's mail, and the one dashboard link in it.
    let start = Instant::now();
    let link = loop {
        let mail = std::fs::read_dir(&mailbox)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|m| {
                m.replace("=\r\n", "")
                    .replace("=\n", "")
                    .replace("=3D", "=")
            })
            .find(|m| m.contains("probable cause: call shop stock-db"));
        if let Some(m) = mail {
            let at = m
                .find(&format!("{url}/incidents/"))
                .expect("an incident link");
            let rest = &m[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || ":/.".contains(c)))
                .unwrap_or(rest.len());
            break rest[..end].to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no incident mail in 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let b = Browser::start(&dir.path().join("chromedriver.log")).await;
    b.goto(&link).await;
    b.type_into("#user", "ana").await;
    b.type_into("#password", "e2e-secret").await;
    b.click_away("#login").await;
    // Click one: the mail's link (after logging in, back on it).
    assert_eq!(b.current_url().await, link);
    assert!(b.text("#cause-name").await.contains("call shop stock-db"));
    assert!(b.find("#lane-call").await.is_some() && b.find("#lane-url").await.is_some());
    assert!(
        b.find("#cause-span").await.is_some(),
        "the cause is highlighted"
    );
    b.screenshot("20-incident").await;
    // Click two: the cause's samples.
    b.click_away("#cause-samples").await;
    assert!(b.current_url().await.contains("/series?layer=call"));
    let samples = b.text("#samples-error").await;
    assert!(
        samples.contains("call stock-db failed: stock-db timeout"),
        "the cause's raw error samples: {samples}"
    );
    b.screenshot("21-incident-cause-samples").await;
    b.close().await;
    feeder.abort();
}
