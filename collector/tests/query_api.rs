//! The query API through the router, over a real embedded store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use panorama_model::{Event, Layer, Outcome, Rollup, Sample, SampleKind};
use panorama_store::Store;
use panorama_store::sqlite::SqliteStore;
use serde_json::Value;
use tower::ServiceExt;

const T0: i64 = 1_795_000_000_000 / 60_000 * 60_000;

async fn app() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut rollups = Vec::new();
    for (i, (host, name, n, errs)) in [
        ("web1", "GET /a", 30, 3),
        ("web2", "GET /a", 10, 1),
        ("web1", "GET /b", 50, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let e = Event::new(T0, Layer::Url, "login", host, name);
        let mut r = Rollup::empty(T0, e.series_key(), format!("c{i}"));
        for k in 0..n {
            let mut e = e.clone();
            e.latency_ms = Some(f64::from(k + 1));
            if k < errs {
                e.outcome = Outcome::Error(Some("500".into()));
            }
            r.add(&e);
        }
        rollups.push(r);
    }
    store.write_rollups(&rollups).await.unwrap();
    let key = rollups[0].key.clone();
    store
        .write_samples(&[Sample {
            minute_ms: T0,
            key,
            collector: "c0".into(),
            part: 0,
            kind: SampleKind::Error,
            seq: 0,
            ts_ms: T0 + 5,
            latency_ms: Some(3.0),
            code: Some("500".into()),
            raw: "GET /a 500".into(),
            fields: Default::default(),
        }])
        .await
        .unwrap();
    (panorama_collector::api::router(Arc::new(store)), dir)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn series_merges_hosts_and_collectors() {
    let (app, _dir) = app().await;
    let (status, body) = get(
        &app,
        &format!(
            "/api/v1/series?layer=url&service=login&name=GET%20/a&from={T0}&to={}",
            T0 + 60_000
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = &body["points"][0];
    assert_eq!(p["count"], 40);
    assert_eq!(p["errors"], 4);
    assert_eq!(p["minute"], T0);
    assert!((p["error_ratio"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    assert_eq!(p["max_ms"], 30.0);

    let (_, one_host) = get(
        &app,
        &format!(
            "/api/v1/series?layer=url&name=GET%20/a&host=web2&from={T0}&to={}",
            T0 + 60_000
        ),
    )
    .await;
    assert_eq!(one_host["points"][0]["count"], 10);
}

#[tokio::test]
async fn top_ranks_and_accepts_rfc3339() {
    let (app, _dir) = app().await;
    let minute = chrono::DateTime::from_timestamp_millis(T0)
        .unwrap()
        .to_rfc3339();
    let (status, body) = get(
        &app,
        &format!(
            "/api/v1/top?layer=url&minute={}&by=errors&limit=1",
            minute.replace('+', "%2B")
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["name"], "GET /a");
    assert_eq!(series[0]["point"]["errors"], 4);
}

#[tokio::test]
async fn samples_for_a_minute() {
    let (app, _dir) = app().await;
    let (status, body) = get(
        &app,
        &format!(
            "/api/v1/samples?layer=url&service=login&minute={}",
            T0 + 30_000
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["samples"][0]["raw"], "GET /a 500");
}

#[tokio::test]
async fn bad_requests_say_what_is_wrong() {
    let (app, _dir) = app().await;
    for (uri, needle) in [
        ("/api/v1/series?service=login", "missing parameter `layer`"),
        ("/api/v1/series?layer=network", "unknown layer"),
        (
            "/api/v1/series?layer=url&servce=login",
            "unknown parameter `servce`",
        ),
        (
            "/api/v1/series?layer=url&from=yesterday",
            "parameter `from`",
        ),
        (
            "/api/v1/series?layer=url&from=2000&to=1000",
            "must be after",
        ),
        (
            "/api/v1/series?layer=url&from=0&to=9999999999999",
            "range too long",
        ),
        ("/api/v1/top?layer=url&by=latency", "unknown metric"),
        ("/api/v1/top?layer=url&limit=0", "parameter `limit`"),
        ("/api/v1/samples?layer=url", "missing parameter `minute`"),
        (
            "/api/v1/samples?layer=url&minute=0&kind=warn",
            "parameter `kind`",
        ),
    ] {
        let (status, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{uri}: {msg:?} does not mention {needle:?}"
        );
    }
}

#[tokio::test]
async fn health_names_the_store() {
    let (app, _dir) = app().await;
    let (status, body) = get(&app, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["store"], "sqlite");
}
