//! The dashboard through its router, on seeded data in both stores: the
//! embedded SQLite store always, and a live Elasticsearch at
//! `PANORAMA_ES_URL` (default `http://127.0.0.1:9200`; `scripts/elasticsearch.sh`
//! starts one). Without a cluster the Elasticsearch cases fail and say so.
//!
//! The data sits around the present minute, because the pages show "today"
//! and "the last hour": a login series with a few errors on two hosts, a
//! route whose name is hostile markup failing half the time (an alert
//! fires on it), a call, two hosts' heartbeats (one silent), an agent's
//! lag and parse errors, and the failing route's error sample.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use panorama_dashboard::config::{DashboardConfig, Lang, Role, User};
use panorama_dashboard::{Dashboard, hash_password};
use panorama_model::{
    DAY_MS, Event, Layer, MINUTE_MS, Outcome, Rollup, Sample, SampleKind, SeriesKey, minute_of,
};
use panorama_rules::engine::{Engine, EngineConfig};
use panorama_store::Store;
use panorama_store::elastic::{ElasticConfig, ElasticStore, RetryPolicy};
use panorama_store::sqlite::SqliteStore;
use tower::ServiceExt;

const HOSTILE: &str = "/<script>alert(1)</script>";
const RULES: &str = r#"
[[rule]]
name = "login-errors"
layer = "url"
service = "login"
window = "5m"
when = "error_ratio > 20%"
min_count = 10
for = "0s"
severity = "critical"
summary = "{{series}} failing {{value}}"
"#;

fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| {
        (
            hash_password("op-secret").expect("hash"),
            hash_password("view-secret").expect("hash"),
        )
    })
}

struct Fixture {
    app: Router,
    engine: Engine,
    now: i64,
    /// The whole minute most data is in.
    m0: i64,
    es: Option<ElasticStore>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn teardown(self) {
        if let Some(es) = self.es {
            es.delete_everything()
                .await
                .expect("deleting the test indices");
        }
    }
}

fn es_url() -> String {
    std::env::var("PANORAMA_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".into())
}

/// A fresh index prefix per case and run.
fn prefix(case: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "pdash-{}-{}-{}",
        case.replace('_', "-"),
        std::process::id(),
        nanos % 1_000_000_000
    )
}

async fn elastic(prefix: &str) -> ElasticStore {
    let mut cfg = ElasticConfig::new(es_url()).with_prefix(prefix);
    cfg.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        max_elapsed: Some(Duration::from_secs(10)),
    };
    match ElasticStore::connect(cfg).await {
        Ok(s) => s,
        Err(e) => panic!(
            "no usable Elasticsearch at {}: {e}\nstart one with `scripts/elasticsearch.sh` \
             (the README's test command does), or point PANORAMA_ES_URL at a cluster",
            es_url()
        ),
    }
}

fn key(layer: Layer, service: &str, host: &str, name: &str) -> SeriesKey {
    SeriesKey {
        layer,
        service: service.into(),
        host: host.into(),
        name: name.into(),
        dims: BTreeMap::new(),
    }
}

fn with_dims(mut k: SeriesKey, dims: &[(&str, &str)]) -> SeriesKey {
    k.dims = dims
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    k
}

fn requests(minute: i64, k: &SeriesKey, n: u64, errors: u64, ms: f64) -> Rollup {
    let mut r = Rollup::empty(minute, k.clone(), "c1");
    for i in 0..n {
        let mut e = Event::new(
            minute + (i as i64 * 397) % MINUTE_MS,
            k.layer,
            &k.service,
            &k.host,
            &k.name,
        );
        if i < errors {
            e.outcome = Outcome::Error(Some("500".into()));
        }
        e.latency_ms = Some(ms + i as f64);
        r.add(&e);
    }
    r
}

fn gauge(minute: i64, k: &SeriesKey, v: f64) -> Rollup {
    let mut r = Rollup::empty(minute, k.clone(), "c1");
    let mut e = Event::new(minute + 1_000, k.layer, &k.service, &k.host, &k.name);
    e.dims = k.dims.clone();
    e.value = Some(v);
    r.add(&e);
    r
}

async fn fixture(case: &str, use_es: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, es): (Arc<dyn Store>, Option<ElasticStore>) = if use_es {
        // Two clients on one prefix: one moves into the dashboard, the
        // other stays with the fixture to delete the indices afterwards.
        let p = prefix(case);
        (Arc::new(elastic(&p).await), Some(elastic(&p).await))
    } else {
        (
            Arc::new(SqliteStore::open(&dir.path().join("data")).expect("sqlite")),
            None,
        )
    };
    let now = chrono::Utc::now().timestamp_millis();
    let m0 = minute_of(now) - 2 * MINUTE_MS;
    let login1 = key(Layer::Url, "login", "web1", "POST /api/login");
    let login2 = key(Layer::Url, "login", "web2", "POST /api/login");
    let hostile = key(Layer::Url, "login", "web1", HOSTILE);
    let call = key(Layer::Call, "login", "web1", "account-svc getUser");
    let mut docs = Vec::new();
    for i in 0..5 {
        let m = m0 - i * MINUTE_MS;
        docs.push(requests(m, &login1, 100, 2, 20.0));
        docs.push(requests(m, &login2, 60, 1, 30.0));
        docs.push(requests(m, &call, 40, 0, 5.0));
    }
    docs.push(requests(m0, &hostile, 50, 25, 200.0));
    // The open minute too: alerts are evaluated over it, and their links
    // point at it.
    docs.push(requests(minute_of(now), &hostile, 50, 25, 200.0));
    // Heartbeats carry the agent's version: web1 upgraded a minute ago,
    // db9 went silent half an hour ago, old1 runs an agent from before the
    // version dim.
    let beat = |host: &str, version: Option<&str>| {
        let k = key(Layer::Infra, "host", host, "agent.heartbeat");
        match version {
            Some(v) => with_dims(k, &[("version", v)]),
            None => k,
        }
    };
    docs.push(gauge(m0, &beat("web1", Some("0.2.0")), 1.0));
    docs.push(gauge(minute_of(now), &beat("web1", Some("0.3.0")), 1.0));
    docs.push(gauge(m0 - 30 * MINUTE_MS, &beat("db9", Some("0.2.9")), 1.0));
    docs.push(gauge(minute_of(now), &beat("old1", None), 1.0));
    docs.push(gauge(
        m0,
        &key(Layer::Infra, "host", "web1", "agent.nginx.lag_seconds"),
        4.5,
    ));
    docs.push(gauge(
        m0,
        &key(Layer::Infra, "host", "web1", "agent.nginx.lines_failed"),
        3.0,
    ));
    docs.push(gauge(
        m0,
        &key(Layer::Infra, "host", "web1", "cpu.busy"),
        37.0,
    ));
    store.write_rollups(&docs).await.expect("write rollups");
    // What the collector writes beside them: each layer's minute as one
    // whole-layer rollup (infra has none).
    let mut whole: BTreeMap<(i64, Layer), Rollup> = BTreeMap::new();
    for d in docs.iter().filter(|d| d.key.layer != Layer::Infra) {
        whole
            .entry((d.minute_ms, d.key.layer))
            .or_insert_with(|| {
                Rollup::empty(d.minute_ms, SeriesKey::whole_layer(d.key.layer), "c1")
            })
            .merge(d);
    }
    let whole: Vec<Rollup> = whole.into_values().collect();
    store
        .write_layer_rollups(&whole)
        .await
        .expect("write layer rollups");
    let sample = Sample {
        minute_ms: minute_of(now),
        key: hostile.clone(),
        collector: "c1".into(),
        part: 0,
        kind: SampleKind::Error,
        seq: 0,
        ts_ms: minute_of(now) + 1_234,
        latency_ms: Some(210.0),
        code: Some("500".into()),
        raw: format!("10.0.0.1 - - \"GET {HOSTILE} HTTP/1.1\" 500 12"),
        fields: [("ua".to_owned(), "<img src=x onerror=alert(2)>".to_owned())].into(),
    };
    store.write_samples(&[sample]).await.expect("write samples");
    store.sync().await.expect("sync");

    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/url.toml"), RULES).unwrap();
    let mut ecfg = EngineConfig::new(dir.path().join("rules"), dir.path().join("state"));
    ecfg.dashboard_url = "https://panorama.example.com".into();
    let engine = Engine::open(ecfg, store.clone()).expect("engine");
    engine.tick(now).await;

    let app = app(store, Some(engine.clone()));
    Fixture {
        app,
        engine,
        now,
        m0,
        es,
        _dir: dir,
    }
}

/// The dashboard on `store`, with an operator (ana) and a viewer (vic), in
/// Shanghai time and English unless a visitor picks Chinese.
fn app(store: Arc<dyn Store>, engine: Option<Engine>) -> Router {
    let (op, view) = hashes().clone();
    let mut cfg = DashboardConfig::new(vec![
        User {
            name: "ana".into(),
            password_hash: op,
            role: Role::Operator,
        },
        User {
            name: "vic".into(),
            password_hash: view,
            role: Role::Viewer,
        },
    ]);
    cfg.time_zone = "Asia/Shanghai".parse().unwrap();
    cfg.default_lang = Lang::En;
    panorama_dashboard::router(Dashboard::new(store, engine, cfg))
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let r = app.clone().oneshot(req).await.expect("router answers");
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(app: &Router, path: &str, cookie: &str) -> Resp {
    let req = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

async fn post(app: &Router, path: &str, cookie: &str, form: &[(&str, &str)]) -> Resp {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let req = Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(app, req).await
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn value_of(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let i = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + needle.len();
    html[i..html[i..].find('"').unwrap() + i].to_owned()
}

/// Logs in; returns the session cookie pair and the page's CSRF token.
async fn login(app: &Router, user: &str, password: &str) -> (String, String) {
    let page = get(app, "/login", "").await;
    assert_eq!(page.status, StatusCode::OK);
    let pre = set_cookies(&page)[0].split(';').next().unwrap().to_owned();
    let csrf = value_of(&page.body, "csrf");
    let r = post(
        app,
        "/login",
        &pre,
        &[
            ("user", user),
            ("password", password),
            ("csrf", &csrf),
            ("next", "/"),
        ],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "login of {user}: {}",
        r.body
    );
    let session = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("panorama_session="))
        .expect("a session cookie");
    let cookie = session.split(';').next().unwrap().to_owned();
    let home = get(app, "/", &cookie).await;
    assert_eq!(home.status, StatusCode::OK);
    (cookie, value_of(&home.body, "csrf"))
}

/// No log-derived markup is ever emitted as markup (askama escapes `<` as
/// `&#60;`).
fn assert_escaped(html: &str) {
    assert!(
        !html.contains("<script>alert"),
        "raw script in page:\n{html}"
    );
    assert!(!html.contains("<img src=x"), "raw img in page");
}

async fn login_and_sessions(f: &Fixture) {
    let r = get(&f.app, "/layer/url?range=1h", "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "pages need a login");
    assert_eq!(
        r.headers[header::LOCATION],
        "/login?next=%2Flayer%2Furl%3Frange%3D1h"
    );
    let r = post(&f.app, "/alerts/ack", "", &[("csrf", "x")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "forms need a login");

    // The login form's own token must match its cookie.
    let page = get(&f.app, "/login", "").await;
    let pre = set_cookies(&page)[0].split(';').next().unwrap().to_owned();
    let r = post(
        &f.app,
        "/login",
        &pre,
        &[
            ("user", "ana"),
            ("password", "op-secret"),
            ("csrf", "forged"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let csrf = value_of(&page.body, "csrf");
    let r = post(
        &f.app,
        "/login",
        &pre,
        &[("user", "ana"), ("password", "wrong"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Wrong user name or password"));
    let r = post(
        &f.app,
        "/login",
        &pre,
        &[
            ("user", "ana"),
            ("password", "op-secret"),
            ("csrf", &csrf),
            ("next", "//evil.example/"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers[header::LOCATION],
        "/",
        "an off-site next is refused"
    );
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("panorama_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );

    // Behind a TLS proxy the cookie is Secure.
    let page = get(&f.app, "/login", "").await;
    let pre = set_cookies(&page)[0].split(';').next().unwrap().to_owned();
    let csrf = value_of(&page.body, "csrf");
    let req = Request::post("/login")
        .header(header::COOKIE, &pre)
        .header("x-forwarded-proto", "https")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "user=ana&password=op-secret&csrf={csrf}"
        )))
        .unwrap();
    let r = send(&f.app, req).await;
    assert!(
        set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("panorama_session=") && c.contains("; Secure"))
    );

    // Logout needs the token, then ends the session.
    let (cookie, csrf) = login(&f.app, "vic", "view-secret").await;
    assert_eq!(
        post(&f.app, "/logout", &cookie, &[("csrf", "nope")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&f.app, "/logout", &cookie, &[("csrf", &csrf)])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        get(&f.app, "/", &cookie).await.status,
        StatusCode::SEE_OTHER,
        "logged out"
    );
}

async fn overview(f: &Fixture) {
    let (cookie, _) = login(&f.app, "vic", "view-secret").await;
    let r = get(&f.app, "/", &cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_escaped(&r.body);
    let band = r
        .body
        .split("id=\"band-url\"")
        .nth(1)
        .expect("url band")
        .split("</article>")
        .next()
        .unwrap();
    // Today: 5 minutes × (100 + 60) + 2 × 50 events, 5 × 3 + 2 × 25 errors — unless
    // the zone's day began within the last few minutes.
    if f.m0 - 5 * MINUTE_MS >= start_of_day_shanghai(f.now) {
        assert!(band.contains("<dd>900</dd>"), "today's volume in {band}");
        assert!(
            band.contains("92.8%"),
            "success rate (1 - 65/900) in {band}"
        );
    }
    assert!(
        band.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "worst series, escaped: {band}"
    );
    assert!(r.body.contains("id=\"band-infra\""));
    let firing = r
        .body
        .split("class=\"firing\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert!(
        firing.contains("failing"),
        "the firing alert is on top: {firing}"
    );
    assert!(
        firing.contains("href=\"/series?layer=url&#38;service=login&#38;name="),
        "{firing}"
    );
    let silent = r.body.split("class=\"silent\"").nth(1).unwrap();
    assert!(silent.contains(">db9</a>"), "db9 went silent: {silent}");
    assert!(
        !silent
            .split("</section>")
            .next()
            .unwrap()
            .contains(">web1<"),
        "web1 beats"
    );
}

fn start_of_day_shanghai(now: i64) -> i64 {
    let h8 = 8 * 3_600_000;
    (now + h8) - (now + h8).rem_euclid(86_400_000) - h8
}

/// The value a chart on `body` shows for line `label` at bucket `at`, read
/// from the `data-ms` / `data-s` attributes the hover script reads.
fn chart_value(body: &str, label: &str, at: i64) -> Option<f64> {
    let attr = |svg: &str, name: &str| -> Option<String> {
        let start = svg.find(&format!(" {name}=\""))? + name.len() + 3;
        let len = svg[start..].find('"')?;
        Some(svg[start..start + len].to_owned())
    };
    body.split("<svg ").skip(1).find_map(|svg| {
        let ms = attr(svg, "data-ms")?;
        let idx = ms.split(',').position(|t| t == at.to_string())?;
        let series = attr(svg, "data-s")?;
        let line = series
            .split(';')
            .find_map(|l| l.strip_prefix(&format!("{label}:")))?;
        line.split(',').nth(idx)?.replace(',', "").parse().ok()
    })
}

async fn layer_page(f: &Fixture) {
    let (cookie, _) = login(&f.app, "vic", "view-secret").await;
    let r = get(&f.app, "/layer/url?range=1h&sort=error_ratio", &cookie).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_escaped(&r.body);
    assert_eq!(
        r.body.matches("<figure class=\"chart\">").count(),
        3,
        "rate, errors, latency"
    );
    // The layer's own percentiles at m0, over the 210 url requests of
    // that minute (login 20..119 and 30..89 ms, the hostile route 200..249):
    // the merged histogram's, within its 2 % error.
    for (label, want) in [("p50 ms", 77.0), ("p90 ms", 228.0), ("p99 ms", 246.0)] {
        let got = chart_value(&r.body, label, f.m0)
            .unwrap_or_else(|| panic!("{label} at m0 on the latency chart"));
        assert!(
            (got - want).abs() <= want * 0.03,
            "layer {label} at m0: got {got}, want {want}"
        );
    }
    let table = r.body.split("id=\"series-table\"").nth(1).unwrap();
    let hostile = table.find("&#60;script&#62;").expect("hostile row");
    let login = table.find("POST /api/login").expect("login row");
    assert!(hostile < login, "sorted by error ratio: 50% before 1.9%");
    assert!(table.contains("<td class=\"n\">50.0%</td>"));
    assert!(
        table.contains("<td class=\"n\">800</td>"),
        "login count merged over hosts: {table}"
    );
    let r = get(&f.app, "/layer/url?range=1h&sort=count", &cookie).await;
    let table = r.body.split("id=\"series-table\"").nth(1).unwrap();
    assert!(table.find("POST /api/login").unwrap() < table.find("&#60;script&#62;").unwrap());
    assert_eq!(
        get(&f.app, "/layer/nope", &cookie).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&f.app, "/layer/url?range=2y", &cookie).await.status,
        StatusCode::BAD_REQUEST
    );
    for range in ["6h", "24h", "7d"] {
        let r = get(&f.app, &format!("/layer/call?range={range}"), &cookie).await;
        assert_eq!(r.status, StatusCode::OK, "{range}");
        assert!(r.body.contains("account-svc getUser"), "{range}");
    }
}

async fn top_page(f: &Fixture) {
    let (cookie, _) = login(&f.app, "vic", "view-secret").await;
    let r = get(
        &f.app,
        &format!("/top?layer=url&minute={}&by=errors&limit=5", f.m0),
        &cookie,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_escaped(&r.body);
    let bars = r.body.split("id=\"top-bars\"").nth(1).unwrap();
    assert!(
        bars.find("&#60;script&#62;").unwrap() < bars.find("POST /api/login").unwrap(),
        "25 errors before 3"
    );
    assert!(
        bars.contains(&format!("&#38;at={}", f.m0)),
        "each bar links to its series at the minute"
    );
    assert!(bars.contains("<span class=\"value\">25</span>"));
    let r = get(
        &f.app,
        &format!("/top?layer=url&minute={}&by=count", f.m0 - 60 * MINUTE_MS),
        &cookie,
    )
    .await;
    assert!(r.body.contains("No data."), "an empty minute says so");
}

async fn series_from_alert(f: &Fixture) {
    let (cookie, _) = login(&f.app, "vic", "view-secret").await;
    let v = f.engine.view(f.now).await;
    let alert = v
        .firing
        .iter()
        .find(|a| a.series == HOSTILE)
        .unwrap_or_else(|| panic!("no firing alert on the hostile route: {v:?}"));
    // Exactly the mail's link, on this server.
    let path = alert
        .link
        .strip_prefix("https://panorama.example.com")
        .expect("link on the dashboard URL");
    assert!(
        path.starts_with("/series?layer=url&service=login&name=%2F%3Cscript%3E"),
        "{path}"
    );
    let r = get(&f.app, path, &cookie).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_escaped(&r.body);
    assert!(
        r.body
            .contains("<h1 id=\"series-name\">/&#60;script&#62;alert(1)&#60;/script&#62;</h1>")
    );
    let samples = r.body.split("id=\"samples\"").nth(1).unwrap();
    assert!(
        samples.contains("GET /&#60;script&#62;alert(1)&#60;/script&#62; HTTP/1.1"),
        "raw line: {samples}"
    );
    assert!(
        samples.contains("&#60;img src=x onerror=alert(2)&#62;"),
        "parsed field"
    );
    assert!(samples.contains("<b class=\"code\">500</b>"));
    assert!(
        samples.contains("50 · Errors 25"),
        "the minute's figures: {samples}"
    );
    let related = r
        .body
        .split("id=\"related-alerts\"")
        .nth(1)
        .expect("related alerts");
    assert!(related.contains("login-errors"));
    assert!(r.body.matches("<figure class=\"chart\">").count() >= 3);
}

async fn alerts_actions(f: &Fixture) {
    let (vic, vic_csrf) = login(&f.app, "vic", "view-secret").await;
    let page = get(&f.app, "/alerts", &vic).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_escaped(&page.body);
    assert!(
        !page.body.contains("action=\"/alerts/ack\""),
        "viewers get no ack form"
    );
    let group = format!("login/{HOSTILE}");
    let ack = |csrf: String| {
        vec![
            ("csrf", csrf),
            ("rule", "login-errors".to_owned()),
            ("group", group.clone()),
            ("comment", "on it".to_owned()),
        ]
    };
    let as_pairs = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(k, x)| (*k, x.clone())).collect::<Vec<_>>()
    };
    let pairs = as_pairs(&ack(vic_csrf));
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        post(&f.app, "/alerts/ack", &vic, &refs).await.status,
        StatusCode::FORBIDDEN,
        "viewer"
    );

    let (ana, csrf) = login(&f.app, "ana", "op-secret").await;
    let page = get(&f.app, "/alerts", &ana).await;
    assert!(page.body.contains("action=\"/alerts/ack\""));
    let pairs = as_pairs(&ack("stale".into()));
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        post(&f.app, "/alerts/ack", &ana, &refs).await.status,
        StatusCode::FORBIDDEN,
        "csrf"
    );
    let pairs = as_pairs(&ack(csrf.clone()));
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = post(&f.app, "/alerts/ack", &ana, &refs).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let v = f.engine.view(f.now).await;
    let a = v.firing.iter().find(|a| a.series == HOSTILE).unwrap();
    assert_eq!(
        a.ack.as_ref().map(|k| (k.by.as_str(), k.comment.as_str())),
        Some(("ana", "on it"))
    );
    let page = get(&f.app, "/alerts", &ana).await;
    assert!(
        page.body.contains("Acknowledged by ana"),
        "shown acknowledged"
    );

    let r = post(
        &f.app,
        "/alerts/silence",
        &ana,
        &[
            ("csrf", &csrf),
            ("label", "service"),
            ("op", "eq"),
            ("value", "login"),
            ("duration", "2h"),
            ("reason", "deploying <b>"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let v = f.engine.view(f.now).await;
    let s = v
        .silences
        .iter()
        .find(|s| s.author == "ana")
        .expect("silence by ana");
    assert_eq!(s.reason, "deploying <b>");
    let page = get(&f.app, "/alerts", &ana).await;
    assert!(page.body.contains("deploying &#60;b&#62;"));
    assert!(page.body.contains("service=login"));
    let r = post(
        &f.app,
        "/alerts/expire",
        &ana,
        &[("csrf", &csrf), ("id", &s.id)],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let v = f
        .engine
        .view(chrono::Utc::now().timestamp_millis() + 1)
        .await;
    assert!(
        v.silences
            .iter()
            .all(|x| !x.active(chrono::Utc::now().timestamp_millis() + 1)),
        "expired"
    );
    let page = get(&f.app, "/alerts?rule=login-errors", &ana).await;
    assert!(page.body.contains("acknowledged"), "history lists the ack");
}

async fn hosts_and_language(f: &Fixture) {
    let (cookie, _) = login(&f.app, "vic", "view-secret").await;
    let r = get(&f.app, "/hosts", &cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    let table = r
        .body
        .split("id=\"hosts-table\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    let db9 = table.find(">db9</a>").expect("db9 listed");
    assert!(db9 < table.find(">web1</a>").unwrap(), "silent hosts first");
    assert!(table.contains("<b class=\"tag\">silent</b>"));
    assert!(
        table.contains("<div>nginx</div>")
            && table.contains("<div>4.50</div>")
            && table.contains("<div>3</div>"),
        "{table}"
    );
    let row = |host: &str| {
        table
            .split("<tr")
            .find(|r| r.contains(&format!(">{host}</a>")))
            .unwrap_or_else(|| panic!("{host}'s row in {table}"))
            .to_owned()
    };
    assert!(
        row("web1").contains("<td class=\"version\">0.3.0</td>"),
        "the newest heartbeat's version: {}",
        row("web1")
    );
    assert!(
        row("db9").contains("<td class=\"version\">0.2.9</td>"),
        "a silent host's last version: {}",
        row("db9")
    );
    assert!(
        row("old1").contains("not reported"),
        "an agent without the version dim: {}",
        row("old1")
    );
    let r = get(&f.app, "/hosts?host=web1", &cookie).await;
    assert!(r.body.contains("cpu.busy"), "infra chart of web1");

    let r = get(&f.app, "/lang/zh?next=/hosts", &cookie).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/hosts");
    let lang = set_cookies(&r)[0].split(';').next().unwrap().to_owned();
    let r = get(&f.app, "/", &format!("{cookie}; {lang}")).await;
    assert!(
        r.body.contains("<html lang=\"zh-CN\">")
            && r.body.contains("总览")
            && r.body.contains("今日总量")
    );
    let r = get(&f.app, "/%3Cscript%3Ealert(1)%3C/script%3E", &cookie).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.body
            .contains("<code class=\"path\">/&#60;script&#62;alert(1)&#60;/script&#62;</code>")
    );
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let f = super::fixture(stringify!($case), false).await;
                    super::$case(&f).await;
                    f.teardown().await;
                }
            )*
        }
        mod elasticsearch {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let f = super::fixture(stringify!($case), true).await;
                    super::$case(&f).await;
                    f.teardown().await;
                }
            )*
        }
    };
}

both!(
    login_and_sessions,
    overview,
    layer_page,
    top_page,
    series_from_alert,
    alerts_actions,
    hosts_and_language
);

/// The layer page's table over a layer of 130 series (SQLite): the busiest
/// 100 by the chosen order, a line saying how many more there are, and a
/// link that lists them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_page_lists_the_busiest_hundred_and_says_how_many_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("data")).expect("sqlite"));
    let m0 = minute_of(chrono::Utc::now().timestamp_millis()) - 2 * MINUTE_MS;
    // Series r000 … r129, r129 the busiest (230 requests), r000 the least
    // (101): the busiest hundred are the last by name.
    let mut docs: Vec<Rollup> = (0..130u64)
        .map(|i| {
            let k = key(Layer::Url, "shop", "web1", &format!("GET /r{i:03}"));
            requests(m0, &k, 101 + i, 0, 10.0)
        })
        .collect();
    // And a layer of three.
    for i in 0..3u64 {
        let k = key(Layer::Call, "shop", "web1", &format!("dep{i} get"));
        docs.push(requests(m0, &k, 10 + i, 0, 5.0));
    }
    store.write_rollups(&docs).await.expect("write rollups");
    store.sync().await.expect("sync");
    let app = app(store, None);
    let (cookie, _) = login(&app, "vic", "view-secret").await;

    /// The series names of the table's rows, in order, and the page.
    async fn table(app: &Router, path: &str, cookie: &str) -> (Vec<String>, String) {
        let r = get(app, path, cookie).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        let body = r
            .body
            .split("id=\"series-table\"")
            .nth(1)
            .expect("the table");
        let tbody = body
            .split("<tbody>")
            .nth(1)
            .and_then(|b| b.split("</tbody>").next())
            .expect("its body");
        let names = tbody
            .split("<tr")
            .skip(1)
            .map(|row| {
                let at = row.find("</span> ").expect("a series cell") + "</span> ".len();
                row[at..at + row[at..].find("</a>").unwrap()].to_owned()
            })
            .collect();
        (names, r.body)
    }

    let (names, body) = table(&app, "/layer/url?range=1h", &cookie).await;
    assert_eq!(names.len(), 100, "the busiest hundred rows");
    let want: Vec<String> = (30..130).rev().map(|i| format!("GET /r{i:03}")).collect();
    assert_eq!(names, want, "busiest first, the 30 least busy left out");
    let more = body
        .split("id=\"series-more\">")
        .nth(1)
        .and_then(|m| m.split("</p>").next())
        .expect("a line under the table saying how many more");
    assert!(
        more.starts_with("The busiest 100 of 130 series; 30 more not shown."),
        "{more}"
    );
    assert!(
        more.contains("href=\"?range=1h&#38;sort=count&#38;all=1\""),
        "a link to all of them: {more}"
    );
    assert!(more.contains(">Show all 130</a>"), "{more}");

    // Another order cuts at another hundred.
    let (names, _) = table(&app, "/layer/url?range=1h&sort=name", &cookie).await;
    assert_eq!(names.len(), 100);
    assert_eq!(names.first().map(String::as_str), Some("GET /r000"));
    assert_eq!(names.last().map(String::as_str), Some("GET /r099"));

    // The link lists every series and says nothing more.
    let (names, body) = table(&app, "/layer/url?range=1h&sort=count&all=1", &cookie).await;
    assert_eq!(names.len(), 130, "all of them");
    assert_eq!(names.last().map(String::as_str), Some("GET /r000"));
    assert!(!body.contains("id=\"series-more\""));

    // A layer of 100 series or fewer has no such line.
    let (names, body) = table(&app, "/layer/call?range=1h", &cookie).await;
    assert_eq!(names, ["dep2 get", "dep1 get", "dep0 get"]);
    assert!(!body.contains("id=\"series-more\""));
}

// Pages whose data the shared fixture does not have: each case seeds its
// own SQLite store (the store's part is covered by the conformance suite
// for both stores; here it is what the page makes of it).

/// The rules of the incident cases: a call and the route waiting for it.
const INCIDENT_RULES: &str = r#"
[[rule]]
name = "gateway-errors"
layer = "call"
series = "gateway"
window = "5m"
when = "error_ratio > 20%"
min_count = 10
severity = "critical"

[[rule]]
name = "pay-errors"
layer = "url"
series = "POST /api/pay"
window = "5m"
when = "error_ratio > 20%"
min_count = 10
severity = "warning"
"#;

/// `/incidents`: the shop's calls to its payment gateway fail and so does
/// the route waiting for them; the list shows one open incident, the call
/// named as its probable cause and the route as its effect, linked to the
/// incident's page; nothing resolved yet; Chinese words when asked; and
/// a dashboard without rules says so instead of an empty list.
async fn incidents_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("data")).expect("sqlite"));
    let now = chrono::Utc::now().timestamp_millis();
    let call = key(Layer::Call, "shop", "web1", "gateway");
    let pay = key(Layer::Url, "shop", "web1", "POST /api/pay");
    let items = key(Layer::Url, "shop", "web1", "GET /api/items");
    let mut docs = Vec::new();
    for m in [minute_of(now) - MINUTE_MS, minute_of(now)] {
        docs.push(requests(m, &call, 40, 20, 900.0));
        docs.push(requests(m, &pay, 40, 20, 950.0));
        docs.push(requests(m, &items, 40, 0, 10.0));
    }
    store.write_rollups(&docs).await.expect("write rollups");
    store.sync().await.expect("sync");
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/shop.toml"), INCIDENT_RULES).unwrap();
    let mut ecfg = EngineConfig::new(dir.path().join("rules"), dir.path().join("state"));
    ecfg.dashboard_url = "https://panorama.example.com".into();
    let engine = Engine::open(ecfg, store.clone()).expect("engine");
    engine.tick(now).await;
    let incidents = engine.incidents().await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let id = incidents[0].id;

    let web = app(store.clone(), Some(engine));
    let r = get(&web, "/incidents", "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the list needs a login");
    let (cookie, _) = login(&web, "vic", "view-secret").await;
    let r = get(&web, "/incidents", &cookie).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let section = |body: &str, name: &str| -> String {
        body.split(&format!("id=\"incidents-{name}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no {name} section in {body}"))
            .split("</section>")
            .next()
            .unwrap()
            .to_owned()
    };
    let open = section(&r.body, "open");
    assert!(
        open.contains("Open <span class=\"muted\">(1)</span>"),
        "{open}"
    );
    assert!(
        open.contains(&format!("href=\"/incidents/{id}\"><b>Incident {id}</b>")),
        "{open}"
    );
    assert!(
        open.contains("Probable cause: <b class=\"cause\">call shop gateway</b> 50%"),
        "the call is the cause: {open}"
    );
    assert!(
        open.contains("1 · Effects: pay-errors "),
        "the route is its effect: {open}"
    );
    assert!(!open.contains("GET /api/items"), "{open}");
    assert_eq!(open.matches("<li ").count(), 1, "one incident: {open}");
    let resolved = section(&r.body, "resolved");
    assert!(resolved.contains("No incident."), "{resolved}");
    // The row's link opens the incident.
    let one = get(&web, &format!("/incidents/{id}"), &cookie).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert!(one.body.contains("gateway") && one.body.contains("POST /api/pay"));

    let r = get(&web, "/lang/zh?next=/incidents", &cookie).await;
    let lang = set_cookies(&r)[0].split(';').next().unwrap().to_owned();
    let r = get(&web, "/incidents", &format!("{cookie}; {lang}")).await;
    let open = section(&r.body, "open");
    assert!(
        open.contains(&format!("<b>故障 {id}</b>")) && open.contains("可能原因"),
        "{open}"
    );

    let bare = app(store, None);
    let (cookie, _) = login(&bare, "vic", "view-secret").await;
    let r = get(&bare, "/incidents", &cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body
            .contains("Alert rules are not configured in this panorama.")
            && !r.body.contains("id=\"incidents-open\""),
        "{}",
        r.body
    );
}

/// `/top?compare=days`: the midnight story. A client bug makes every
/// client upload its logs at 00:00: `POST /api/logs` is busy at that
/// minute on each of the last 7 days and idle the rest of the day, while
/// `GET /api/feed` is as busy every minute of the day. The first is marked
/// far above its daily median on every day, by the minute and by the hour;
/// the second never is.
async fn top_days_compared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("data")).expect("sqlite"));
    let now = chrono::Utc::now().timestamp_millis();
    // Yesterday's midnight in the dashboard's time zone: whole days only.
    let at = start_of_day_shanghai(now) - DAY_MS;
    let upload = key(Layer::Url, "client", "app1", "POST /api/logs");
    let feed = key(Layer::Url, "client", "app1", "GET /api/feed");
    let mut docs = Vec::new();
    for day in 0..7 {
        let midnight = at - day * DAY_MS;
        docs.push(requests(midnight, &upload, 400, 0, 30.0));
        // A few uploads retried later in the day.
        docs.push(requests(midnight + 9 * 3_600_000, &upload, 2, 0, 30.0));
    }
    for m in (0..DAY_MS / MINUTE_MS).map(|i| at + i * MINUTE_MS) {
        docs.push(requests(m, &feed, 20, 0, 5.0));
    }
    store.write_rollups(&docs).await.expect("write rollups");
    store.sync().await.expect("sync");
    let web = app(store, None);
    let (cookie, _) = login(&web, "vic", "view-secret").await;

    let row = |body: &str, name: &str| -> String {
        let table = body
            .split("id=\"days-table\"")
            .nth(1)
            .unwrap_or_else(|| panic!("no days table in {body}"))
            .split("</table>")
            .next()
            .unwrap()
            .to_owned();
        table
            .split("<tr>")
            .find(|r| r.contains(name))
            .unwrap_or_else(|| panic!("no row of {name} in {table}"))
            .to_owned()
    };
    let r = get(
        &web,
        &format!("/top?layer=url&minute={at}&compare=days"),
        &cookie,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let table = r.body.split("id=\"days-table\"").nth(1).unwrap();
    let head = table.split("</thead>").next().unwrap();
    assert_eq!(head.matches("<th>").count(), 1 + 7, "7 days: {head}");
    assert!(
        table.find("POST /api/logs").unwrap() < table.find("GET /api/feed").unwrap(),
        "ranked by the day's count at the minute: 400 before 20"
    );
    let upload_row = row(&r.body, "POST /api/logs");
    assert_eq!(
        upload_row.matches("<td class=\"far\"").count(),
        7,
        "far above its median (0) every night: {upload_row}"
    );
    assert!(upload_row.contains(">400 ▲</td>"), "{upload_row}");
    let feed_row = row(&r.body, "GET /api/feed");
    assert!(!feed_row.contains("far"), "{feed_row}");
    assert!(
        feed_row.contains("title=\"median 20\">20</td>"),
        "its own median, every minute busy: {feed_row}"
    );

    let r = get(
        &web,
        &format!("/top?layer=url&minute={at}&compare=days&span=hour"),
        &cookie,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let upload_row = row(&r.body, "POST /api/logs");
    assert_eq!(
        upload_row.matches("<td class=\"far\"").count(),
        7,
        "by the hour too: {upload_row}"
    );
    assert!(!row(&r.body, "GET /api/feed").contains("far"));
}

mod sqlite_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn incidents_list() {
        super::incidents_list().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn top_days_compared() {
        super::top_days_compared().await;
    }
}
