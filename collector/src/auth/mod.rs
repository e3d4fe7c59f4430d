//! Who may call what: API tokens with roles, the route → role policy, and
//! the layer that checks every request of the merged router (collector,
//! rules API and dashboard) before any handler runs.
//!
//! - [`policy`]: the one table of routes and the role each needs.
//! - [`TokenTable`]: API tokens by SHA-256 digest, so a lookup compares
//!   digests and its timing says nothing about the tokens themselves.
//! - [`SessionLookup`]: how a dashboard session cookie counts as a
//!   credential, without this crate knowing the dashboard (the binary hands
//!   one in).
//! - [`Access`]: whether the collector may serve at all, and openly or not,
//!   decided once at start from the listen address and what is configured.
//! - [`check`]: the middleware. It puts a [`panorama_model::Principal`] in
//!   the request's extensions for handlers that record who did what.

mod layer;
pub mod policy;

use axum::http::HeaderMap;
use panorama_model::Role;
use std::collections::HashMap;
use std::net::SocketAddr;

pub use layer::{Auth, check};

/// Bodies of routes other than ingest (forms, silences, acks) are small;
/// ingest sets its own, larger limit on its route.
pub const MAX_BODY_BYTES: usize = 256 << 10;

/// The merged router of the process behind the auth layer, with every
/// body bounded: what `panorama` serves, and what the route × role tests
/// drive.
pub fn protect(app: axum::Router, auth: std::sync::Arc<Auth>) -> axum::Router {
    app.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(auth, check))
}

/// One API token as configured: `[[token]]` or `--token` / `--api-token`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Who holds it, for logs and the alert history.
    pub name: String,
    /// The secret itself.
    pub token: String,
    /// What it may do.
    pub role: Role,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// Parses a `--api-token ROLE:TOKEN` flag; the name is `ROLE-N`.
    ///
    /// # Errors
    /// [`TokenFlagError`]: not `ROLE:TOKEN`, an unknown role, or a token
    /// shorter than [`MIN_TOKEN_LEN`].
    pub fn from_flag(flag: &str, n: usize) -> Result<ApiToken, TokenFlagError> {
        let Some((role, token)) = flag.split_once(':') else {
            return Err(TokenFlagError::Form {
                flag: flag.to_owned(),
            });
        };
        let role = Role::parse(role).ok_or_else(|| TokenFlagError::Role {
            role: role.to_owned(),
        })?;
        if token.len() < MIN_TOKEN_LEN {
            return Err(TokenFlagError::TooShort { role });
        }
        Ok(ApiToken {
            name: format!("{role}-{n}"),
            token: token.to_owned(),
            role,
        })
    }
}

/// Why a `--api-token ROLE:TOKEN` flag was refused. Each message starts
/// with the flag, since flags have no file position to point at.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenFlagError {
    /// No `:` between role and token.
    #[error("--api-token {flag:?}: expected ROLE:TOKEN (ROLE agent, viewer, operator or admin)")]
    Form {
        /// The flag's value as given.
        flag: String,
    },
    /// The part before `:` names no role.
    #[error("--api-token: role {role:?}: expected agent, viewer, operator or admin")]
    Role {
        /// The unknown role as given.
        role: String,
    },
    /// The token is shorter than [`MIN_TOKEN_LEN`].
    #[error("--api-token {role}: at least {} characters expected", MIN_TOKEN_LEN)]
    TooShort {
        /// The role the token was for (the token itself stays out of messages).
        role: Role,
    },
}

/// Shorter tokens are refused: they can be guessed over the network.
pub const MIN_TOKEN_LEN: usize = 8;

/// API tokens by the SHA-256 of the secret.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_digest: HashMap<[u8; 32], (String, Role)>,
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl TokenTable {
    /// The table of these tokens; a secret given twice keeps the first.
    pub fn new(tokens: &[ApiToken]) -> TokenTable {
        let mut by_digest = HashMap::new();
        for t in tokens {
            by_digest
                .entry(digest(&t.token))
                .or_insert_with(|| (t.name.clone(), t.role));
        }
        TokenTable { by_digest }
    }

    /// The name and role of a presented token.
    pub fn lookup(&self, token: &str) -> Option<(&str, Role)> {
        self.by_digest
            .get(&digest(token))
            .map(|(n, r)| (n.as_str(), *r))
    }

    /// No tokens at all.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// A dashboard session as the auth layer sees it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The dashboard user the session belongs to, recorded as who acted.
    pub user: String,
    /// The user's role.
    pub role: Role,
    /// The session's CSRF token, which a write must echo in `X-CSRF-Token`.
    pub csrf: String,
}

/// Finds the live dashboard session a request's cookies name. The binary
/// implements it over the dashboard, so neither crate depends on the other.
pub trait SessionLookup: Send + Sync {
    /// The session of these headers, if one is live (touching it).
    fn session(&self, headers: &HeaderMap) -> Option<SessionInfo>;
}

/// How the collector may serve, decided once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every route answers without credentials: nothing is configured to
    /// check them against, and the address is loopback (or the operator
    /// said `--insecure-open`).
    Open,
    /// Every route but `/health` needs a credential with the route's role.
    Checked,
}

/// Why the collector refuses to start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    /// Open on a network address without having been told to.
    #[error(
        "refusing to serve {listen} without authentication: no API tokens and no dashboard \
         users are configured, and {listen} is not a loopback address. Add tokens \
         ([[token]] with a role, --token, --api-token ROLE:TOKEN) or dashboard users, listen \
         on 127.0.0.1, or pass --insecure-open (insecure_open = true) to serve openly anyway"
    )]
    OpenOnNetwork {
        /// The address asked for.
        listen: SocketAddr,
    },
}

/// Decides [`Access`] from the listen address and what is configured.
///
/// Without tokens a loopback collector stays open, as it always was: only
/// processes on this machine reach it (dashboard pages still need a login).
/// Any token closes every route. On a network address without tokens the
/// dashboard's users alone are credentials; without those either the
/// collector refuses unless `insecure_open`.
///
/// # Errors
/// [`AccessError::OpenOnNetwork`].
pub fn decide_access(
    listen: SocketAddr,
    tokens: &TokenTable,
    dashboard_users: usize,
    insecure_open: bool,
) -> Result<Access, AccessError> {
    if !tokens.is_empty() {
        return Ok(Access::Checked);
    }
    if listen.ip().is_loopback() || insecure_open {
        return Ok(Access::Open);
    }
    if dashboard_users > 0 {
        return Ok(Access::Checked);
    }
    Err(AccessError::OpenOnNetwork { listen })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_is_open_only_on_loopback_or_when_asked() {
        let none = TokenTable::default();
        let some = TokenTable::new(&[ApiToken {
            name: "a".into(),
            token: "0123456789".into(),
            role: Role::Agent,
        }]);
        let lo: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let lo6: SocketAddr = "[::1]:7070".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert_eq!(decide_access(lo, &none, 0, false), Ok(Access::Open));
        assert_eq!(decide_access(lo6, &none, 0, false), Ok(Access::Open));
        assert_eq!(decide_access(lo, &some, 0, false), Ok(Access::Checked));
        assert_eq!(decide_access(any, &some, 0, false), Ok(Access::Checked));
        assert_eq!(decide_access(any, &none, 2, false), Ok(Access::Checked));
        assert_eq!(decide_access(any, &none, 0, true), Ok(Access::Open));
        let err = decide_access(any, &none, 0, false).unwrap_err();
        assert!(err.to_string().contains("--insecure-open"), "{err}");
    }

    #[test]
    fn tokens_are_found_by_digest_and_flags_checked() {
        let t = ApiToken::from_flag("operator:s3cret-token", 1).unwrap();
        assert_eq!((t.name.as_str(), t.role), ("operator-1", Role::Operator));
        assert!(
            !format!("{t:?}").contains("s3cret"),
            "Debug hides the secret"
        );
        let table = TokenTable::new(&[t]);
        assert_eq!(
            table.lookup("s3cret-token"),
            Some(("operator-1", Role::Operator))
        );
        assert_eq!(table.lookup("s3cret-tokeN"), None);
        for bad in ["viewer", "root:0123456789", "viewer:short"] {
            assert!(ApiToken::from_flag(bad, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn flag_errors_read_as_they_always_did() {
        let msg = |flag: &str| ApiToken::from_flag(flag, 1).unwrap_err().to_string();
        assert_eq!(
            msg("viewer"),
            "--api-token \"viewer\": expected ROLE:TOKEN (ROLE agent, viewer, operator or admin)"
        );
        assert_eq!(
            msg("root:0123456789"),
            "--api-token: role \"root\": expected agent, viewer, operator or admin"
        );
        assert_eq!(
            msg("viewer:short"),
            "--api-token viewer: at least 8 characters expected"
        );
    }
}
