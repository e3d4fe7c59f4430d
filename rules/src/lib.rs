//! Alert rules over rollups.
//!
//! It will own rule files (TOML, hot-reloaded, validated with file:line:col),
//! evaluation over [`panorama_store::Store`] reads including the open minute,
//! the alert state machine (pending → firing → resolved, no-data), routing,
//! silences, acknowledgement, the persistent notification outbox and the
//! notifiers (SMTP mail, SMS gateway, webhook). It never talks to agents.
//!
//! Today it holds the names of the lifecycle states; the rules issue fills it.

/// Where an alert is in its lifecycle. Missing data is a state of its own,
/// never a recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// The condition holds but not yet for the rule's `for` duration.
    Pending,
    /// The condition held long enough; notifications go out.
    Firing,
    /// The condition stopped holding.
    Resolved,
    /// The series stopped reporting.
    NoData,
}
