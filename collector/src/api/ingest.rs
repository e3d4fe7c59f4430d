//! `POST /api/v1/ingest`: the agent's binary batches and NDJSON from anyone
//! holding a token.
//!
//! The answer is 200 only once the batch is durable in the WAL (or was
//! counted before). Every refusal says what was wrong: 401 for the token,
//! 413 for size, 415 for the content type, 400 with the line and column or
//! byte offset for a malformed body, 409 with `counted_offset` for a batch
//! straddling what is already counted, 503 with `Retry-After` while the WAL
//! cannot take it or an earlier copy of the same range is still being
//! written, and for a chained batch ([`CHAINED_HEADER`]) whose predecessor
//! is missing or was refused.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use panorama_model::wire::binary::{self, Batch};
use panorama_model::wire::{CHAINED_HEADER, IngestReply, ndjson};
use panorama_model::{Credential, Principal};
use tracing::Instrument;
use tracing::field::Empty;

use super::AppState;
use crate::wal::WalError;
use crate::{Collector, IngestOutcome};

/// A refused request: small to pass around, turned into a response at the end.
struct Refusal {
    status: StatusCode,
    msg: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(IngestReply::error(self.msg))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Refusal {
    Refusal {
        status,
        msg: msg.into(),
    }
}

pub(super) async fn ingest(State(st): State<AppState>, req: Request) -> Response {
    let Some(collector) = st.collector.clone() else {
        return refuse(StatusCode::NOT_FOUND, "this server does not ingest").into_response();
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    // Checked by the auth layer when the binary put one in front; an
    // `Open` principal means nothing is configured to check against.
    let checked = req
        .extensions()
        .get::<Principal>()
        .map(|p| match p.credential {
            Credential::Open => "anonymous".to_owned(),
            _ => p.name.clone(),
        });
    let (parts, body) = req.into_parts();
    // One span per request, so whatever is logged while it is handled (the
    // WAL append here, the counting task in the service) says who sent
    // which range without each line repeating it. The producer and the
    // range are recorded once known; a request refused before that has
    // only its peer.
    let span = tracing::info_span!(
        "ingest",
        peer = peer.as_deref(),
        producer = Empty,
        agent = Empty,
        source = Empty,
        start = Empty,
        end = Empty,
    );
    match handle(&collector, &parts.headers, checked, peer, body)
        .instrument(span)
        .await
    {
        Ok(resp) => resp,
        Err(refusal) => refusal.into_response(),
    }
}

async fn handle(
    c: &Collector,
    headers: &HeaderMap,
    checked: Option<String>,
    peer: Option<String>,
    body: Body,
) -> Result<Response, Refusal> {
    let cfg = &c.inner.cfg;
    let stats = &c.inner.stats;
    let producer = match checked {
        Some(p) => p,
        None => authorize(c, headers).inspect_err(|_| {
            stats.unauthorized.fetch_add(1, Ordering::Relaxed);
        })?,
    };
    let span = tracing::Span::current();
    span.record("producer", producer.as_str());
    let bad = |msg: String| {
        stats.bad_requests.fetch_add(1, Ordering::Relaxed);
        refuse(StatusCode::BAD_REQUEST, msg)
    };
    let raw = axum::body::to_bytes(body, cfg.max_body_bytes)
        .await
        .map_err(|_| {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes", cfg.max_body_bytes),
            )
        })?;
    let decoded = match headers
        .get(header::CONTENT_ENCODING)
        .map(HeaderValue::to_str)
    {
        None | Some(Ok("identity")) => raw.to_vec(),
        Some(Ok("zstd")) => inflate(&raw, cfg.max_decoded_bytes).map_err(|e| match e {
            Inflate::TooLarge => refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body larger than {} bytes once decompressed",
                    cfg.max_decoded_bytes
                ),
            ),
            Inflate::Bad(m) => bad(format!("zstd body: {m}")),
        })?,
        Some(other) => {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?} not supported: send identity or zstd"),
            ));
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let (batch, wal_bytes) = if media == binary::CONTENT_TYPE {
        let batch = c
            .decode_batch(&decoded)
            .map_err(|e| bad(format!("binary batch: {e}")))?;
        (batch, decoded)
    } else if media == ndjson::CONTENT_TYPE || media == "application/json" {
        let host = peer.unwrap_or_else(|| "unknown".into());
        let mut events = Vec::new();
        for r in ndjson::parse_body(&decoded, &host) {
            events.push(r.map_err(|e| bad(e.to_string()))?);
        }
        if events.is_empty() {
            return Err(bad("no events in body".into()));
        }
        let batch = Batch::third_party(&producer, events);
        let mut bytes = Vec::new();
        binary::encode(&batch, &mut bytes);
        (batch, bytes)
    } else {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {content_type:?} not supported: send {} (one JSON event per line) or {}",
                ndjson::CONTENT_TYPE,
                binary::CONTENT_TYPE
            ),
        ));
    };
    let m = &batch.meta;
    span.record("agent", m.agent_id.as_str());
    if m.end_offset > m.start_offset {
        span.record("source", m.source_id.as_str());
        span.record("start", m.start_offset);
        span.record("end", m.end_offset);
    }
    let chained = headers
        .get(CHAINED_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let outcome = if chained {
        c.ingest_chained(batch, wal_bytes).await
    } else {
        c.ingest(batch, wal_bytes).await
    };
    match outcome {
        Ok(IngestOutcome::Accepted { events }) => {
            Ok(Json(IngestReply::accepted(events as u64)).into_response())
        }
        Ok(IngestOutcome::Duplicate) => Ok(Json(IngestReply {
            duplicate: true,
            ..IngestReply::accepted(0)
        })
        .into_response()),
        // An earlier copy of the range is still being written: retry soon.
        Ok(IngestOutcome::InFlight) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            Json(IngestReply::error(
                "an earlier copy of this batch is still being written; retry",
            )),
        )
            .into_response()),
        Ok(IngestOutcome::Cancelled) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            Json(IngestReply::error(
                "an earlier batch of this source was refused; resend from the first unacknowledged one",
            )),
        )
            .into_response()),
        Ok(IngestOutcome::Overlap { counted }) => Ok((
            StatusCode::CONFLICT,
            Json(IngestReply {
                counted_offset: Some(counted),
                ..IngestReply::error(format!(
                    "batch straddles the counted offset {counted}; resume reading there"
                ))
            }),
        )
            .into_response()),
        Err(e) => {
            let msg = match &e {
                WalError::Full { .. } => "collector backlog full; retry later".to_owned(),
                // Another batch's write failed; that one is logged.
                WalError::PredecessorFailed => {
                    "an earlier batch of this source was not written; retry".to_owned()
                }
                other => {
                    tracing::error!(error = %other, "write-ahead log append failed");
                    "collector cannot persist right now; retry later".to_owned()
                }
            };
            Err(refuse(StatusCode::SERVICE_UNAVAILABLE, msg))
        }
    }
}

fn authorize(c: &Collector, headers: &HeaderMap) -> Result<String, Refusal> {
    let tokens = &c.inner.cfg.tokens;
    if tokens.is_empty() {
        return Ok("anonymous".into());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <token>`",
            )
        })?;
    tokens
        .get(given.trim())
        .cloned()
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "unknown token"))
}

enum Inflate {
    TooLarge,
    Bad(String),
}

/// Decompresses at most `limit` bytes: a small bomb must not become gigabytes.
fn inflate(raw: &[u8], limit: usize) -> Result<Vec<u8>, Inflate> {
    // The agent's frames say their size: decompress into a buffer of that
    // size in one call instead of growing one (and copying it at every
    // doubling). Only a size within the limit is trusted this way, and a
    // body that does not decompress to it takes the careful path below.
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(raw)
        && size <= limit as u64
        && let Ok(out) = zstd::bulk::decompress(raw, size as usize)
    {
        return Ok(out);
    }
    let decoder = zstd::stream::read::Decoder::new(raw).map_err(|e| Inflate::Bad(e.to_string()))?;
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Inflate::Bad(e.to_string()))?;
    if out.len() > limit {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}
