//! Local HTTP servers that play Aliyun SMS, a DingTalk robot, a WeCom robot,
//! an SMS gateway and a webhook receiver.
//!
//! Each checks requests the way the provider documents it, with its own
//! code (not the channel's), so a signing bug in the channel fails here
//! instead of being agreed with; each refuses with the provider's own error
//! shape, so the channel's sorting of failures is tested against what the
//! provider really says. They record what they accepted for the tests to read.
#![allow(dead_code, unreachable_pub)]
// A refusal carries its reason and the provider's answer; boxing it would
// only make the handlers harder to read, and no hot path returns it.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::hmac;
use serde_json::{Value, json};

/// Which provider a server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Dysmsapi `SendSms` with RPC signature V1.
    Aliyun,
    /// `/robot/send?access_token=…[&timestamp=…&sign=…]`.
    DingTalk,
    /// `/cgi-bin/webhook/send?key=…`.
    WeCom,
    /// A JSON SMS gateway with an API key in `Authorization`, answering `{"code": …}`.
    Gateway,
    /// A receiver of Panorama's webhook, checking `X-Panorama-Signature`.
    Webhook,
    /// A Feishu custom robot: `/open-apis/bot/v2/hook/{token}`, signed in the body.
    Feishu,
    /// Dyvmsapi `SingleCallByTts` with RPC signature V1.
    AliyunVoice,
    /// Tencent Cloud VMS `SendTtsVoice`, signed with TC3-HMAC-SHA256.
    Tencent,
}

/// What the server does with the next requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Check and accept.
    Normal,
    /// Answer this status without looking.
    Status(u16),
    /// Answer the provider's rate-limit error.
    Throttle,
    /// Wait this long, then behave normally.
    Sleep(Duration),
}

/// One accepted request.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Path of the request.
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

impl Hit {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

struct Inner {
    kind: Kind,
    /// The AccessKey secret, robot signing secret, webhook HMAC key or
    /// gateway bearer token, depending on the kind.
    secret: Option<String>,
    /// The AccessKey id, robot token or WeCom key.
    id: String,
    mode: Mutex<Mode>,
    hits: Mutex<Vec<Hit>>,
    refused: Mutex<Vec<String>>,
    nonces: Mutex<HashSet<String>>,
}

/// A running provider on 127.0.0.1.
pub struct Provider {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Provider {
    /// Starts one. `id` is what it expects as AccessKey id, token or key;
    /// `secret` what it signs with (none: an unsigned DingTalk robot or
    /// webhook).
    pub async fn start(kind: Kind, id: &str, secret: Option<&str>) -> Provider {
        let inner = Arc::new(Inner {
            kind,
            secret: secret.map(str::to_owned),
            id: id.to_owned(),
            mode: Mutex::new(Mode::Normal),
            hits: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            nonces: Mutex::new(HashSet::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Provider { addr, inner }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Changes what it does next.
    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// What it accepted so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.inner.hits.lock().unwrap().clone()
    }

    /// Why it refused requests so far.
    pub fn refused(&self) -> Vec<String> {
        self.inner.refused.lock().unwrap().clone()
    }
}

async fn handle(
    State(s): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mode = s.mode.lock().unwrap().clone();
    match mode {
        Mode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            return (status, status.canonical_reason().unwrap_or("")).into_response();
        }
        Mode::Sleep(d) => tokio::time::sleep(d).await,
        Mode::Normal | Mode::Throttle => {}
    }
    let hit = Hit {
        path: uri.path().to_owned(),
        query: parse_query(uri.query().unwrap_or("")),
        headers,
        body: body.to_vec(),
    };
    let throttle = mode == Mode::Throttle;
    let verdict = match s.kind {
        Kind::Aliyun => aliyun(&s, &method, &hit, throttle),
        Kind::AliyunVoice => aliyun_voice(&s, &method, &hit, throttle),
        Kind::Tencent => tencent(&s, &method, &hit, throttle),
        Kind::DingTalk => dingtalk(&s, &method, &hit, throttle),
        Kind::WeCom => wecom(&s, &method, &hit, throttle),
        Kind::Gateway => gateway(&s, &hit, throttle),
        Kind::Webhook => webhook(&s, &method, &hit),
        Kind::Feishu => feishu(&s, &method, &hit, throttle),
    };
    match verdict {
        Ok(answer) => {
            s.hits.lock().unwrap().push(hit);
            answer
        }
        Err((why, answer)) => {
            s.refused.lock().unwrap().push(why);
            answer
        }
    }
}

type Verdict = Result<Response, (String, Response)>;

fn json_answer(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---- Aliyun ----

/// Aliyun's documented `percentEncode`: Java's `URLEncoder.encode` with `+`
/// → `%20`, `*` → `%2A`, `%7E` → `~`. Written out as the Java encoder's
/// rules and then those three replacements, on purpose differently from the
/// channel's own encoder.
fn aliyun_percent_encode(s: &str) -> String {
    let mut java = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                java.push(b as char)
            }
            b' ' => java.push('+'),
            _ => java.push_str(&format!("%{b:02X}")),
        }
    }
    java.replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~")
}

fn aliyun(s: &Inner, method: &Method, hit: &Hit, throttle: bool) -> Verdict {
    aliyun_rpc(
        s,
        method,
        hit,
        throttle,
        "SendSms",
        &["PhoneNumbers", "SignName", "TemplateCode", "TemplateParam"],
        "TemplateParam",
    )
}

fn aliyun_voice(s: &Inner, method: &Method, hit: &Hit, throttle: bool) -> Verdict {
    if let Some(v) = hit.query.get("TtsParam")
        && v.chars().count() >= 250
    {
        return Err((
            "TtsParam too long".into(),
            json_answer(
                StatusCode::OK,
                json!({"Code": "isv.PARAM_LENGTH_LIMIT", "Message": "TtsParam too long"}),
            ),
        ));
    }
    aliyun_rpc(
        s,
        method,
        hit,
        throttle,
        "SingleCallByTts",
        &["CalledNumber", "TtsCode", "TtsParam", "OutId"],
        "TtsParam",
    )
}

fn aliyun_rpc(
    s: &Inner,
    method: &Method,
    hit: &Hit,
    throttle: bool,
    action: &str,
    mandatory: &[&str],
    json_param: &str,
) -> Verdict {
    let request_id = "0A6B8F0E-77D4-5C33-9B1E-1B2C3D4E5F60";
    let refuse = |status: StatusCode, code: &str, message: String| {
        Err((
            format!("{code}: {message}"),
            json_answer(
                status,
                json!({"RequestId": request_id, "HostId": "dysmsapi.aliyuncs.com",
                       "Code": code, "Message": message, "Recommend": ""}),
            ),
        ))
    };
    if method != Method::GET {
        return refuse(
            StatusCode::BAD_REQUEST,
            "UnsupportedHTTPMethod",
            method.to_string(),
        );
    }
    let q = &hit.query;
    for (k, want) in [
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("Action", action),
        ("Version", "2017-05-25"),
        ("Format", "JSON"),
    ] {
        if q.get(k).map(String::as_str) != Some(want) {
            return refuse(
                StatusCode::BAD_REQUEST,
                "MissingParameter",
                format!("{k} is {:?}, expected {want}", q.get(k)),
            );
        }
    }
    if q.get("AccessKeyId") != Some(&s.id) {
        return refuse(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.".into(),
        );
    }
    let ts = q.get("Timestamp").cloned().unwrap_or_default();
    match chrono::NaiveDateTime::parse_from_str(&ts, "%Y-%m-%dT%H:%M:%SZ") {
        Ok(t) if (t.and_utc().timestamp() - now_secs()).abs() <= 900 => {}
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidTimeStamp.Format",
                format!("Specified time stamp or date value is not well formatted: {ts}"),
            );
        }
    }
    // The documented steps: sort by name, encode names and values, join;
    // StringToSign = GET&%2F&encode(canonical); key = secret + "&".
    let canonical = q
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", aliyun_percent_encode(k), aliyun_percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let string_to_sign = format!(
        "GET&{}&{}",
        aliyun_percent_encode("/"),
        aliyun_percent_encode(&canonical)
    );
    let key = hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}&", s.secret.as_deref().unwrap_or("")).as_bytes(),
    );
    let expected = base64::engine::general_purpose::STANDARD
        .encode(hmac::sign(&key, string_to_sign.as_bytes()));
    if q.get("Signature") != Some(&expected) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        );
    }
    let nonce = q.get("SignatureNonce").cloned().unwrap_or_default();
    if nonce.is_empty() || !s.nonces.lock().unwrap().insert(nonce) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.".into(),
        );
    }
    for &k in mandatory {
        if q.get(k).is_none_or(|v| v.is_empty()) {
            return refuse(
                StatusCode::BAD_REQUEST,
                "MissingParameter",
                format!("{k} is mandatory for this action."),
            );
        }
    }
    if serde_json::from_str::<Value>(&q[json_param]).is_err() {
        return Err((
            "isv.INVALID_JSON_PARAM".into(),
            json_answer(
                StatusCode::OK,
                json!({"RequestId": request_id, "Code": "isv.INVALID_JSON_PARAM",
                       "Message": "JSON参数不合法,只接受字符串值"}),
            ),
        ));
    }
    if throttle {
        return Err((
            "isv.BUSINESS_LIMIT_CONTROL".into(),
            json_answer(
                StatusCode::OK,
                json!({"RequestId": request_id, "Code": "isv.BUSINESS_LIMIT_CONTROL",
                       "Message": "触发分钟级流控Permits:1"}),
            ),
        ));
    }
    Ok(json_answer(
        StatusCode::OK,
        json!({"RequestId": request_id, "Code": "OK", "Message": "OK",
               "BizId": "900619746936498440^0"}),
    ))
}

// ---- Tencent VMS ----

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg)
        .as_ref()
        .to_vec()
}

/// Recomputes TC3-HMAC-SHA256 from the request as Tencent's signature v3
/// page describes it, with the headers the request names as signed.
fn tencent(s: &Inner, method: &Method, hit: &Hit, throttle: bool) -> Verdict {
    let refuse = |code: &str, msg: String| {
        Err((
            format!("{code}: {msg}"),
            json_answer(
                StatusCode::OK,
                json!({"Response": {"Error": {"Code": code, "Message": msg},
                       "RequestId": "6d8bb2a1-3c2a-4c5e-9a4e-1f2e3d4c5b6a"}}),
            ),
        ))
    };
    let header = |name: &str| {
        hit.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if method != Method::POST
        || header("x-tc-action") != "SendTtsVoice"
        || header("x-tc-version") != "2020-09-02"
    {
        return refuse(
            "InvalidAction",
            "expected POST SendTtsVoice 2020-09-02".into(),
        );
    }
    let auth = header("authorization");
    let Some(rest) = auth.strip_prefix("TC3-HMAC-SHA256 ") else {
        return refuse("AuthFailure.SignatureFailure", "not TC3-HMAC-SHA256".into());
    };
    let parts: BTreeMap<&str, &str> = rest.split(", ").filter_map(|p| p.split_once('=')).collect();
    let credential: Vec<&str> = parts.get("Credential").unwrap_or(&"").split('/').collect();
    if credential.len() != 4
        || credential[0] != s.id
        || credential[2] != "vms"
        || credential[3] != "tc3_request"
    {
        return refuse(
            "AuthFailure.SecretIdNotFound",
            format!("credential {credential:?}"),
        );
    }
    let date = credential[1];
    let Ok(ts) = header("x-tc-timestamp").parse::<i64>() else {
        return refuse("AuthFailure.InvalidAuthorization", "X-TC-Timestamp".into());
    };
    if (ts - now_secs()).abs() > 300 {
        return refuse("AuthFailure.SignatureExpire", "signature expired".into());
    }
    if chrono::DateTime::from_timestamp(ts, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
        != date
    {
        return refuse(
            "AuthFailure.SignatureFailure",
            "date does not match the timestamp".into(),
        );
    }
    let signed = parts.get("SignedHeaders").copied().unwrap_or("");
    let mut canonical_headers = String::new();
    for h in signed.split(';') {
        canonical_headers.push_str(&format!("{h}:{}\n", header(h).trim().to_lowercase()));
    }
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        sha256_hex(&hit.body)
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{date}/vms/tc3_request\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let secret = s.secret.clone().unwrap_or_default();
    let k = hmac256(format!("TC3{secret}").as_bytes(), date.as_bytes());
    let k = hmac256(&k, b"vms");
    let k = hmac256(&k, b"tc3_request");
    let expected: String = hmac256(&k, to_sign.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !signed.split(';').any(|h| h == "host") || parts.get("Signature") != Some(&expected.as_str())
    {
        return refuse(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated.".into(),
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&hit.body) else {
        return refuse("InvalidParameter", "body is not JSON".into());
    };
    let number_ok = body["CalledNumber"]
        .as_str()
        .is_some_and(|n| n.starts_with('+') && n.len() > 8);
    let params_ok = body["TemplateParamSet"]
        .as_array()
        .is_some_and(|p| p.iter().all(Value::is_string));
    if !number_ok
        || !params_ok
        || !body["TemplateId"].is_string()
        || !body["VoiceSdkAppid"].is_string()
    {
        return refuse("InvalidParameterValue", format!("bad body {body}"));
    }
    if throttle {
        return refuse("RequestLimitExceeded", "request limit exceeded".into());
    }
    Ok(json_answer(
        StatusCode::OK,
        json!({"Response": {"SendStatus": {"CallId": "12582bce-403c-11eb-96b8-525400476c37",
               "SessionContext": body["SessionContext"]},
               "RequestId": "6d8bb2a1-3c2a-4c5e-9a4e-1f2e3d4c5b6a"}}),
    ))
}

// ---- DingTalk ----

fn dingtalk(s: &Inner, method: &Method, hit: &Hit, throttle: bool) -> Verdict {
    let refuse = |code: i64, msg: &str| {
        Err((
            format!("{code}: {msg}"),
            json_answer(StatusCode::OK, json!({"errcode": code, "errmsg": msg})),
        ))
    };
    if method != Method::POST || hit.path != "/robot/send" {
        return Err(("not found".into(), StatusCode::NOT_FOUND.into_response()));
    }
    if hit.query.get("access_token") != Some(&s.id) {
        return refuse(300_001, "token is not exist");
    }
    if let Some(secret) = &s.secret {
        // Documented check: timestamp within an hour of now; sign =
        // urlEncode(base64(HMAC-SHA256(secret, timestamp + "\n" + secret))),
        // which arrives URL-decoded in the parsed query.
        let Some(ts) = hit
            .query
            .get("timestamp")
            .and_then(|t| t.parse::<i64>().ok())
        else {
            return refuse(310_000, "sign not match, more: timestamp missing");
        };
        if (ts / 1000 - now_secs()).abs() > 3600 {
            return refuse(310_000, "sign not match, more: timestamp expired");
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let expected = base64::engine::general_purpose::STANDARD
            .encode(hmac::sign(&key, format!("{ts}\n{secret}").as_bytes()));
        if hit.query.get("sign") != Some(&expected) {
            return refuse(
                310_000,
                "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
            );
        }
    }
    let Ok(body) = serde_json::from_slice::<Value>(&hit.body) else {
        return refuse(43_004, "无效的HTTP HEADER Content-Type");
    };
    let ok = match body["msgtype"].as_str() {
        Some("markdown") => {
            body["markdown"]["title"].is_string() && body["markdown"]["text"].is_string()
        }
        Some("text") => body["text"]["content"].is_string(),
        _ => false,
    };
    if !ok {
        return refuse(40_035, "缺少参数 json");
    }
    if throttle {
        return refuse(130_101, "send too fast, exceed 20 times per minute");
    }
    Ok(json_answer(
        StatusCode::OK,
        json!({"errcode": 0, "errmsg": "ok"}),
    ))
}

// ---- WeCom ----

fn wecom(s: &Inner, method: &Method, hit: &Hit, throttle: bool) -> Verdict {
    let refuse = |code: i64, msg: &str| {
        Err((
            format!("{code}: {msg}"),
            json_answer(StatusCode::OK, json!({"errcode": code, "errmsg": msg})),
        ))
    };
    if method != Method::POST || hit.path != "/cgi-bin/webhook/send" {
        return Err(("not found".into(), StatusCode::NOT_FOUND.into_response()));
    }
    if hit.query.get("key") != Some(&s.id) {
        return refuse(
            93_000,
            "invalid webhook url, hint: [1700000000_1_abcdef], from ip: 127.0.0.1",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&hit.body) else {
        return refuse(40_008, "invalid message type");
    };
    let ok = match body["msgtype"].as_str() {
        Some("markdown") => body["markdown"]["content"]
            .as_str()
            .is_some_and(|c| c.len() <= 4096),
        Some("text") => body["text"]["content"]
            .as_str()
            .is_some_and(|c| c.len() <= 2048),
        _ => false,
    };
    if !ok {
        return refuse(40_008, "invalid message type");
    }
    if throttle {
        return refuse(45_009, "api freq out of limit");
    }
    Ok(json_answer(
        StatusCode::OK,
        json!({"errcode": 0, "errmsg": "ok"}),
    ))
}

// ---- SMS gateway ----

fn gateway(s: &Inner, hit: &Hit, throttle: bool) -> Verdict {
    let want = s.secret.clone().unwrap_or_default();
    if hit
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some(want.as_str())
    {
        return Err((
            "unauthorized".into(),
            json_answer(StatusCode::UNAUTHORIZED, json!({"code": "UNAUTHORIZED"})),
        ));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&hit.body) else {
        return Err((
            "not JSON".into(),
            json_answer(StatusCode::OK, json!({"code": "BAD_REQUEST"})),
        ));
    };
    if !body["to"].is_array() || !body["text"].is_string() {
        return Err((
            "bad body".into(),
            json_answer(StatusCode::OK, json!({"code": "BAD_REQUEST"})),
        ));
    }
    if throttle {
        return Err((
            "throttled".into(),
            json_answer(StatusCode::OK, json!({"code": "THROTTLED"})),
        ));
    }
    Ok(json_answer(StatusCode::OK, json!({"code": "OK", "id": 1})))
}

// ---- webhook receiver ----

fn webhook(s: &Inner, method: &Method, hit: &Hit) -> Verdict {
    let unauthorized = |why: &str| {
        Err((
            why.to_owned(),
            (StatusCode::UNAUTHORIZED, why.to_owned()).into_response(),
        ))
    };
    if method != Method::POST {
        return Err((
            "method".into(),
            StatusCode::METHOD_NOT_ALLOWED.into_response(),
        ));
    }
    let header = |name: &str| {
        hit.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if header("authorization") != Some(format!("Token {}", s.id)) {
        return unauthorized("bad Authorization");
    }
    if let Some(secret) = &s.secret {
        let Some(ts) = header("x-panorama-timestamp").and_then(|t| t.parse::<i64>().ok()) else {
            return unauthorized("no timestamp");
        };
        if (ts - now_secs()).abs() > 300 {
            return unauthorized("stale timestamp");
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let mut signed = format!("{ts}.").into_bytes();
        signed.extend_from_slice(&hit.body);
        let mac = hmac::sign(&key, &signed);
        let expected: String = mac.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if header("x-panorama-signature") != Some(format!("v1={expected}")) {
            return unauthorized("bad signature");
        }
    }
    if serde_json::from_slice::<Value>(&hit.body).is_err() {
        return Err((
            "not JSON".into(),
            StatusCode::UNPROCESSABLE_ENTITY.into_response(),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- Feishu ----

fn feishu(s: &Inner, method: &Method, hit: &Hit, throttle: bool) -> Verdict {
    let refuse = |code: i64, msg: &str| {
        Err((
            format!("{code}: {msg}"),
            json_answer(
                StatusCode::OK,
                json!({"code": code, "msg": msg, "data": {}}),
            ),
        ))
    };
    if method != Method::POST {
        return Err(("method".into(), StatusCode::NOT_FOUND.into_response()));
    }
    if hit.path != format!("/open-apis/bot/v2/hook/{}", s.id) {
        return refuse(
            19_001,
            "param invalid: incoming webhook access token invalid",
        );
    }
    if hit.body.len() > 20 * 1024 {
        return refuse(19_001, "param invalid: request body is larger than 20KB");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&hit.body) else {
        return refuse(9499, "Bad Request");
    };
    if let Some(secret) = &s.secret {
        // Documented: timestamp (seconds, a string) within an hour of now;
        // sign = Base64(HMAC-SHA256(key = timestamp + "\n" + secret, message = "")).
        let Some(ts) = body["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<i64>().ok())
        else {
            return refuse(
                19_021,
                "sign match fail or timestamp is not within one hour from current time",
            );
        };
        if (ts - now_secs()).abs() > 3600 {
            return refuse(
                19_021,
                "sign match fail or timestamp is not within one hour from current time",
            );
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, format!("{ts}\n{secret}").as_bytes());
        let expected = base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, b""));
        if body["sign"].as_str() != Some(expected.as_str()) {
            return refuse(
                19_021,
                "sign match fail or timestamp is not within one hour from current time",
            );
        }
    }
    let ok = match body["msg_type"].as_str() {
        Some("interactive") => {
            body["card"]["header"]["title"]["content"].is_string()
                && body["card"]["elements"].is_array()
        }
        Some("text") => body["content"]["text"].is_string(),
        _ => false,
    };
    if !ok {
        return refuse(19_002, "params error, msg_type need");
    }
    if throttle {
        return refuse(
            11_232,
            "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]",
        );
    }
    Ok(json_answer(
        StatusCode::OK,
        json!({"code": 0, "data": {}, "msg": "success"}),
    ))
}

// ---- query parsing ----

/// `application/x-www-form-urlencoded` decoding of a query string.
fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).expect("valid %XX"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 query")
}
