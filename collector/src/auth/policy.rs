//! The one table of what each route needs. Every route of the merged
//! router is listed here; a route the table does not know is treated by
//! its prefix: `/api/` needs a viewer to read and an admin to change
//! anything (so a route added without a line here is closed, not open),
//! and every other path belongs to the dashboard, whose own login guards
//! its pages.

use axum::http::Method;
use panorama_model::Role;

/// What a request needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone: `/health`.
    Anyone,
    /// A credential with this role.
    Role(Role),
    /// `/metrics`: a viewer, unless `metrics_public`.
    Metrics,
    /// A dashboard page, form or static file: the dashboard checks its
    /// session itself (and sends browsers to the login page).
    Dashboard,
}

/// Every API route: method, path (`{x}` matches one segment) and role.
pub const ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/health", Need::Anyone),
    ("GET", "/metrics", Need::Metrics),
    ("POST", "/api/v1/ingest", Need::Role(Role::Agent)),
    ("GET", "/api/v1/series", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/top", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/samples", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/accounting", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/alerts", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/alerts/history", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/notifications", Need::Role(Role::Viewer)),
    ("POST", "/api/v1/alerts/ack", Need::Role(Role::Operator)),
    ("POST", "/api/v1/silences", Need::Role(Role::Operator)),
    (
        "DELETE",
        "/api/v1/silences/{id}",
        Need::Role(Role::Operator),
    ),
    ("POST", "/api/v1/rules/reload", Need::Role(Role::Admin)),
    ("GET", "/api/v1/incidents", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/incidents/{id}", Need::Role(Role::Viewer)),
    (
        "POST",
        "/api/v1/incidents/{id}/ack",
        Need::Role(Role::Operator),
    ),
    ("GET", "/api/v1/graph", Need::Role(Role::Viewer)),
    // Voice providers post call receipts here; the path carries the
    // receiver's own callback secret, which the handler checks in
    // constant time (a provider cannot send a bearer token).
    ("POST", "/api/v1/voice/callback/{receiver}", Need::Anyone),
];

fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut q = path.split('/');
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && !b.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// What a request for `method path` needs.
pub fn need(method: &Method, path: &str) -> Need {
    // HEAD reads like GET.
    let m = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    if let Some((_, _, n)) = ROUTES
        .iter()
        .find(|(rm, rp, _)| *rm == m && matches(rp, path))
    {
        return *n;
    }
    if path == "/api" || path.starts_with("/api/") {
        return if m == "GET" {
            Need::Role(Role::Viewer)
        } else {
            Need::Role(Role::Admin)
        };
    }
    if path == "/metrics" || path == "/health" {
        // Another method on a known read-only path: refused by the router.
        return Need::Role(Role::Viewer);
    }
    Need::Dashboard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_decides_and_unknown_api_routes_are_closed() {
        assert_eq!(need(&Method::GET, "/health"), Need::Anyone);
        assert_eq!(
            need(&Method::DELETE, "/api/v1/silences/abc"),
            Need::Role(Role::Operator)
        );
        assert_eq!(
            need(&Method::DELETE, "/api/v1/silences/"),
            Need::Role(Role::Admin)
        );
        assert_eq!(
            need(&Method::HEAD, "/api/v1/series"),
            Need::Role(Role::Viewer)
        );
        assert_eq!(
            need(&Method::GET, "/api/v2/whatever"),
            Need::Role(Role::Viewer)
        );
        assert_eq!(
            need(&Method::PUT, "/api/v1/series"),
            Need::Role(Role::Admin)
        );
        assert_eq!(need(&Method::GET, "/alerts"), Need::Dashboard);
        assert_eq!(need(&Method::POST, "/login"), Need::Dashboard);
        assert_eq!(need(&Method::GET, "/apiary"), Need::Dashboard);
    }
}
