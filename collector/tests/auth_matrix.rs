//! Every route of the merged router (collector, rules API, dashboard) ×
//! every kind of caller, through `oneshot`: each answer asserted.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use panorama_collector::auth::policy::{Need, ROUTES};
use panorama_collector::auth::{
    Access, ApiToken, Auth, SessionInfo, SessionLookup, TokenTable, protect,
};
use panorama_collector::{Collector, CollectorConfig, api};
use panorama_dashboard::Dashboard;
use panorama_dashboard::config::{DashboardConfig, User};
use panorama_model::Role;
use panorama_rules::engine::{Engine, EngineConfig};
use panorama_store::Store;
use panorama_store::sqlite::SqliteStore;
use serde_json::Value;
use tower::ServiceExt;

const PASSWORD: &str = "matrix-secret";

struct Sessions(Dashboard);

impl SessionLookup for Sessions {
    fn session(&self, h: &axum::http::HeaderMap) -> Option<SessionInfo> {
        self.0
            .session_of(h)
            .map(|(user, role, csrf)| SessionInfo { user, role, csrf })
    }
}

fn token(role: Role) -> String {
    format!("{role}-token-0123456789")
}

fn dashboard(dir: &std::path::Path, store: Arc<dyn Store>, engine: Option<Engine>) -> Dashboard {
    // One hash for every restart, as one config file would hold: a new
    // hash is a password change, which revokes the user's sessions.
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH
        .get_or_init(|| panorama_dashboard::hash_password(PASSWORD).unwrap())
        .clone();
    let mut cfg = DashboardConfig::new(vec![User {
        name: "ana".into(),
        password_hash: hash,
        role: Role::Operator,
    }]);
    cfg.sessions_file = Some(dir.join("dashboard/sessions.json"));
    Dashboard::new(store, engine, cfg)
}

fn auth(dash: &Dashboard) -> Arc<Auth> {
    let tokens: Vec<ApiToken> = Role::ALL
        .into_iter()
        .map(|role| ApiToken {
            name: format!("{role}-1"),
            token: token(role),
            role,
        })
        .collect();
    Arc::new(Auth::new(
        TokenTable::new(&tokens),
        Some(Arc::new(Sessions(dash.clone()))),
        Access::Checked,
        false,
    ))
}

async fn app(dir: &std::path::Path) -> Router {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("store")).unwrap());
    let mut cfg = CollectorConfig::new("c1", dir.join("data"));
    cfg.tokens = [(token(Role::Agent), "agent-1".to_owned())].into();
    let collector = Collector::start(cfg, store.clone()).await.unwrap();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    let engine = Engine::open(
        EngineConfig::new(dir.join("rules"), dir.join("alerts")),
        store.clone(),
    )
    .unwrap();
    let dash = dashboard(dir, store, Some(engine.clone()));
    let auth = auth(&dash);
    let merged = api::app(collector)
        .merge(panorama_rules::api::router(engine))
        .merge(panorama_dashboard::router(dash));
    protect(merged, auth)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    send_from(app, [10, 0, 0, 7], req).await
}

async fn send_from(
    app: &Router,
    ip: [u8; 4],
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = req;
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(SocketAddr::from((ip, 5555))));
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn cookies(h: &axum::http::HeaderMap) -> Vec<String> {
    h.get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_owned))
        .collect()
}

fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\"").expect("a csrf field");
    let tag = &html[html[..at].rfind('<').unwrap()..];
    let v = tag.find("value=\"").unwrap() + 7;
    tag[v..v + tag[v..].find('"').unwrap()].to_owned()
}

/// Posts the login form from `ip`: status, headers.
async fn try_login(
    app: &Router,
    ip: [u8; 4],
    password: &str,
) -> (StatusCode, axum::http::HeaderMap) {
    let (s, h, html) =
        send_from(app, ip, Request::get("/login").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 200);
    let form_cookie = cookies(&h).join("; ");
    let body = format!(
        "user=ana&password={password}&csrf={}&next=%2F",
        csrf_in(&html)
    );
    let (s, h, _) = send_from(
        app,
        ip,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, form_cookie)
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    (s, h)
}

/// Logs in through the dashboard's form; the session cookie and its CSRF token.
async fn login(app: &Router) -> (String, String) {
    let (s, h) = try_login(app, [10, 0, 0, 7], PASSWORD).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let session = cookies(&h)
        .into_iter()
        .find(|c| c.starts_with("panorama_session="))
        .expect("a session cookie");
    let (s, _, html) = send(
        app,
        Request::get("/alerts")
            .header(header::COOKIE, &session)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{html}");
    (session, csrf_in(&html))
}

/// A request for each route of the table, and what its handler answers
/// once let through.
fn request(method: &str, path: &str) -> (Request<Body>, StatusCode) {
    let now = chrono::Utc::now().timestamp_millis();
    let (uri, body, ok) = match (method, path) {
        ("GET", "/health") => ("/health".to_owned(), "", StatusCode::OK),
        ("GET", "/metrics") => ("/metrics".to_owned(), "", StatusCode::OK),
        ("POST", "/api/v1/ingest") => (
            path.to_owned(),
            r#"{"ts":"2026-11-22T13:00:01Z","layer":"url","service":"m","name":"GET /x"}"#,
            StatusCode::OK,
        ),
        ("GET", "/api/v1/series") => ("/api/v1/series?layer=url".to_owned(), "", StatusCode::OK),
        ("GET", "/api/v1/top") => ("/api/v1/top?layer=url".to_owned(), "", StatusCode::OK),
        ("GET", "/api/v1/samples") => (
            format!("/api/v1/samples?layer=url&minute={now}"),
            "",
            StatusCode::OK,
        ),
        ("GET", "/api/v1/accounting") => (path.to_owned(), "", StatusCode::OK),
        ("GET", "/api/v1/alerts") => (path.to_owned(), "", StatusCode::OK),
        ("GET", "/api/v1/alerts/history") => (path.to_owned(), "", StatusCode::OK),
        ("GET", "/api/v1/notifications") => (path.to_owned(), "", StatusCode::OK),
        ("POST", "/api/v1/alerts/ack") => (
            path.to_owned(),
            r#"{"rule":"none","group":"none","by":"x"}"#,
            StatusCode::NOT_FOUND,
        ),
        ("POST", "/api/v1/silences") => (
            path.to_owned(),
            r#"{"matchers":[{"label":"service","op":"eq","value":"m"}],"duration":"1h","reason":"matrix"}"#,
            StatusCode::CREATED,
        ),
        ("DELETE", "/api/v1/silences/{id}") => (
            "/api/v1/silences/nope?by=x".to_owned(),
            "",
            StatusCode::NOT_FOUND,
        ),
        ("POST", "/api/v1/rules/reload") => (path.to_owned(), "", StatusCode::OK),
        ("GET", "/api/v1/incidents") => (path.to_owned(), "", StatusCode::OK),
        ("GET", "/api/v1/incidents/{id}") => (
            "/api/v1/incidents/999999".to_owned(),
            "",
            StatusCode::NOT_FOUND,
        ),
        ("POST", "/api/v1/incidents/{id}/ack") => (
            "/api/v1/incidents/999999/ack".to_owned(),
            r#"{"by":"x"}"#,
            StatusCode::NOT_FOUND,
        ),
        ("GET", "/api/v1/graph") => (path.to_owned(), "", StatusCode::OK),
        // Open to every caller at the auth layer; the receiver's own secret
        // is what the handler checks, and an unknown receiver is refused.
        ("POST", "/api/v1/voice/callback/{receiver}") => (
            "/api/v1/voice/callback/nope?token=x".to_owned(),
            "{}",
            StatusCode::UNAUTHORIZED,
        ),
        other => panic!("no request written for route {other:?}: add one"),
    };
    let content_type = if path == "/api/v1/ingest" {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    (req, ok)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    WrongToken,
    Token(Role),
    Session,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_policy_says() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let (session, csrf) = login(&app).await;
    let callers = [
        Caller::Anonymous,
        Caller::WrongToken,
        Caller::Token(Role::Agent),
        Caller::Token(Role::Viewer),
        Caller::Token(Role::Operator),
        Caller::Token(Role::Admin),
        Caller::Session,
    ];
    let mut checked = 0;
    for (method, path, need) in ROUTES {
        for caller in callers {
            let (mut req, ok) = request(method, path);
            let h = req.headers_mut();
            match caller {
                Caller::Anonymous => {}
                Caller::WrongToken => {
                    h.insert(
                        header::AUTHORIZATION,
                        "Bearer not-a-token-at-all".parse().unwrap(),
                    );
                }
                Caller::Token(r) => {
                    h.insert(
                        header::AUTHORIZATION,
                        format!("Bearer {}", token(r)).parse().unwrap(),
                    );
                }
                Caller::Session => {
                    h.insert(header::COOKIE, session.parse().unwrap());
                    h.insert("x-csrf-token", csrf.parse().unwrap());
                }
            }
            let role = match caller {
                Caller::Token(r) => Some(r),
                Caller::Session => Some(Role::Operator),
                _ => None,
            };
            let needed = match need {
                Need::Anyone => None,
                Need::Metrics => Some(Role::Viewer),
                Need::Role(r) => Some(*r),
                Need::Dashboard => unreachable!("no dashboard path in the API table"),
            };
            let want = match (needed, role) {
                (None, _) => ok,
                (Some(_), None) => StatusCode::UNAUTHORIZED,
                (Some(n), Some(r)) if r.grants(n) => ok,
                (Some(_), Some(_)) => StatusCode::FORBIDDEN,
            };
            let (got, headers, body) = send(&app, req).await;
            assert_eq!(got, want, "{method} {path} as {caller:?}: {body}");
            if want == StatusCode::UNAUTHORIZED || want == StatusCode::FORBIDDEN {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(
                    v["needs_role"].as_str(),
                    needed.map(Role::as_str),
                    "{method} {path} as {caller:?} names the role: {body}"
                );
            }
            if want == StatusCode::UNAUTHORIZED && needed.is_some() {
                let www = headers
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                assert!(www.starts_with("Bearer "), "{method} {path}: {www:?}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * callers.len());

    // A session's write without the CSRF header is refused, with it it passes.
    let (req, _) = request("POST", "/api/v1/alerts/ack");
    let mut req = req;
    req.headers_mut()
        .insert(header::COOKIE, session.parse().unwrap());
    let (s, _, body) = send(&app, req).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("X-CSRF-Token"), "{body}");

    // A route missing from the table is closed, not open.
    let (s, _, _) = send(
        &app,
        Request::get("/api/v1/not-a-route")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Dashboard pages keep their own login: to the login page, not a 401.
    let (s, h, _) = send(&app, Request::get("/alerts").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(h[header::LOCATION].to_str().unwrap().starts_with("/login"));

    // Bodies are bounded on every route, not only ingest.
    let mut big = Request::post("/api/v1/silences")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vec![b' '; 1 << 20]))
        .unwrap();
    big.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {}", token(Role::Operator)).parse().unwrap(),
    );
    let (s, _, _) = send(&app, big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // The history names who silenced, how, and from where.
    let mut req = Request::get("/api/v1/alerts/history")
        .body(Body::empty())
        .unwrap();
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {}", token(Role::Viewer)).parse().unwrap(),
    );
    let (_, _, body) = send(&app, req).await;
    assert!(
        body.contains("operator-1 (token from 10.0.0.7)")
            && body.contains("ana (session from 10.0.0.7)"),
        "audit trail: {body}"
    );
    assert!(
        body.contains("rules_loaded") && body.contains("admin-1 (token from 10.0.0.7)"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_throttled_sessions_survive_a_restart_and_logout_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let attacker = [192, 0, 2, 66];
    for i in 0..5 {
        let (s, _) = try_login(&app, attacker, "guess").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // Locked: even the right password is not looked at.
    let (s, h) = try_login(&app, attacker, PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = h[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // The real user, from their own address, is not locked out.
    let (session, csrf) = login(&app).await;

    // A restart: a new dashboard over the same data directory.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("store2")).unwrap());
    let dash = dashboard(dir.path(), store, None);
    let again = protect(panorama_dashboard::router(dash.clone()), auth(&dash));
    let page = |cookie: &str| {
        Request::get("/")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    let (s, _, _) = send(&again, page(&session)).await;
    assert_eq!(s, StatusCode::OK, "the session survived the restart");
    let text = std::fs::read_to_string(dir.path().join("dashboard/sessions.json")).unwrap();
    let token = session.trim_start_matches("panorama_session=");
    assert!(!text.contains(token), "only a hash of the token is on disk");

    // Logout revokes, also across the next restart.
    let (s, _, _) = send(
        &again,
        Request::post("/logout")
            .header(header::COOKIE, &session)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _, _) = send(&again, page(&session)).await;
    assert_eq!(
        s,
        StatusCode::SEE_OTHER,
        "logged out: back to the login page"
    );
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("store3")).unwrap());
    let dash = dashboard(dir.path(), store, None);
    let third = protect(panorama_dashboard::router(dash.clone()), auth(&dash));
    let (s, _, _) = send(&third, page(&session)).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "still logged out after a restart");
    let mut api = Request::get("/api/v1/anything")
        .body(Body::empty())
        .unwrap();
    api.headers_mut()
        .insert(header::COOKIE, session.parse().unwrap());
    let (s, _, _) = send(&third, api).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a revoked session is no credential"
    );
}
