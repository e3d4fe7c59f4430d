//! Alert rules over rollups.
//!
//! It owns rule files (TOML, hot-reloaded, validated with file:line:col),
//! evaluation over [`panorama_store::Store`] reads including the open
//! minute, the alert lifecycle (pending → firing → resolved, no-data),
//! routing, silences, acknowledgement, the persistent notification outbox
//! and the notifiers (SMTP mail, SMS gateway, webhook). It never talks to
//! agents.
//!
//! Modules arrive one by one; what is here is complete as far as it goes.

pub mod api;
pub mod dispatch;
pub mod engine;
pub mod eval;
pub mod history;
pub mod lifecycle;
pub mod notify;
pub mod outbox;
pub mod rota;
pub mod rule;
pub mod silence;
