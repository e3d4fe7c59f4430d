//! Who is asking: the roles every route is checked against, and the
//! principal a checked request carries to its handler.
//!
//! Roles live here because three crates name them: the collector checks
//! them, the dashboard gives them to its users, and the rules engine writes
//! the principal of every operator action into the alert history.

use std::fmt;
use std::net::IpAddr;

/// What a credential may do. `Viewer < Operator < Admin` each include the
/// one before; `Agent` stands apart: it may ingest and nothing else, and no
/// other role may ingest, so a stolen agent token reads nothing and a
/// leaked viewer token cannot forge counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Ships batches to `POST /api/v1/ingest`.
    Agent,
    /// Reads every query route, the alerts and the dashboard pages.
    Viewer,
    /// Also acknowledges alerts, adds and expires silences.
    Operator,
    /// Also reloads the rules.
    Admin,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Role; 4] = [Role::Agent, Role::Viewer, Role::Operator, Role::Admin];

    /// Parses `agent`, `viewer`, `operator` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The name used in configuration and in refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether a holder of `self` may call a route that needs `need`.
    pub fn grants(self, need: Role) -> bool {
        match (self, need) {
            (Role::Agent, Role::Agent) => true,
            (Role::Agent, _) | (_, Role::Agent) => false,
            (have, need) => have >= need,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An API token (`Authorization: Bearer`).
    Token,
    /// A dashboard session cookie.
    Session,
    /// Nothing: the collector serves openly (no credentials configured, on
    /// loopback or with `--insecure-open`).
    Open,
}

impl Credential {
    /// Short name for logs and the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::Token => "token",
            Credential::Session => "session",
            Credential::Open => "open",
        }
    }
}

/// The checked identity of a request, put in its extensions by the
/// collector's auth layer for handlers that record who did what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name or the dashboard user; `anonymous` when open.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// How it proved it.
    pub credential: Credential,
    /// The client's address, when the server knows it.
    pub addr: Option<IpAddr>,
}

impl Principal {
    /// `ana (session from 10.0.0.7)`: who did something, for the history.
    pub fn describe(&self) -> String {
        match self.addr {
            Some(a) => format!("{} ({} from {a})", self.name, self.credential.as_str()),
            None => format!("{} ({})", self.name, self.credential.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_upwards_and_agents_only_ingest() {
        use Role::*;
        let table = [
            (Agent, [true, false, false, false]),
            (Viewer, [false, true, false, false]),
            (Operator, [false, true, true, false]),
            (Admin, [false, true, true, true]),
        ];
        for (have, row) in table {
            for (need, want) in Role::ALL.into_iter().zip(row) {
                assert_eq!(have.grants(need), want, "{have} for {need}");
            }
            assert_eq!(Role::parse(have.as_str()), Some(have));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
