//! The middleware in front of every route.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use panorama_model::{Credential, Principal, Role};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::policy::{self, Need};
use super::{Access, SessionLookup, TokenTable};

/// What the layer checks against. Built once at start.
pub struct Auth {
    tokens: TokenTable,
    sessions: Option<Arc<dyn SessionLookup>>,
    access: Access,
    metrics_public: bool,
    refused: AtomicU64,
}

impl Auth {
    /// The checker for `tokens`, dashboard `sessions` (when a dashboard is
    /// served) and the decided `access`.
    pub fn new(
        tokens: TokenTable,
        sessions: Option<Arc<dyn SessionLookup>>,
        access: Access,
        metrics_public: bool,
    ) -> Auth {
        Auth {
            tokens,
            sessions,
            access,
            metrics_public,
            refused: AtomicU64::new(0),
        }
    }

    /// Requests refused with 401 or 403 so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The access decided at start.
    pub fn access(&self) -> Access {
        self.access
    }

    fn refuse(&self, status: StatusCode, need: Role, msg: String) -> Response {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut r = (
            status,
            Json(json!({ "error": msg, "needs_role": need.as_str() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            let v = format!(
                "Bearer realm=\"panorama\", error=\"invalid_token\", scope=\"{}\"",
                need.as_str()
            );
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }
}

/// Checks the request against [`policy::need`] and, when it passes, puts
/// its [`Principal`] in the extensions.
///
/// A bearer token, when sent, is the credential (a wrong one is 401 even
/// if a session cookie is also there: a script should learn its token is
/// bad). Otherwise the dashboard session cookie counts, with its user's
/// role; a session's write must echo the session's CSRF token in
/// `X-CSRF-Token`, since a browser sends the cookie by itself.
pub async fn check(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let need = match policy::need(req.method(), req.uri().path()) {
        Need::Anyone | Need::Dashboard => return next.run(req).await,
        Need::Metrics if auth.metrics_public => return next.run(req).await,
        Need::Metrics => Role::Viewer,
        Need::Role(r) => r,
    };
    if auth.access == Access::Open {
        req.extensions_mut().insert(Principal {
            name: "anonymous".into(),
            role: Role::Admin,
            credential: Credential::Open,
            addr,
        });
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let principal = if let Some(value) = bearer {
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim);
        let Some((name, role)) = token.and_then(|t| auth.tokens.lookup(t)) else {
            tracing::info!(%path, addr = ?addr, "refused: unknown token");
            return auth.refuse(
                StatusCode::UNAUTHORIZED,
                need,
                format!("unknown token; this route needs a `{need}` token"),
            );
        };
        Principal {
            name: name.to_owned(),
            role,
            credential: Credential::Token,
            addr,
        }
    } else if let Some(s) = auth
        .sessions
        .as_ref()
        .and_then(|l| l.session(req.headers()))
    {
        let reads = matches!(*req.method(), Method::GET | Method::HEAD);
        if !reads {
            let sent = req
                .headers()
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !bool::from(sent.as_bytes().ct_eq(s.csrf.as_bytes())) {
                tracing::info!(%path, user = %s.user, "refused: session write without CSRF token");
                return auth.refuse(
                    StatusCode::FORBIDDEN,
                    need,
                    "a dashboard session's write must send the session's CSRF token in \
                     X-CSRF-Token"
                        .into(),
                );
            }
        }
        Principal {
            name: s.user,
            role: s.role,
            credential: Credential::Session,
            addr,
        }
    } else {
        tracing::info!(%path, addr = ?addr, "refused: no credential");
        return auth.refuse(
            StatusCode::UNAUTHORIZED,
            need,
            format!(
                "missing credential: send `Authorization: Bearer <token>` with a `{need}` token"
            ),
        );
    };
    if !principal.role.grants(need) {
        tracing::info!(%path, who = %principal.name, role = %principal.role, %need, "refused: role");
        return auth.refuse(
            StatusCode::FORBIDDEN,
            need,
            format!(
                "`{}` has role `{}`; this route needs `{need}`",
                principal.name, principal.role
            ),
        );
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}
