//! Alert rules over rollups.
//!
//! It owns rule files (TOML, hot-reloaded, validated with file:line:col),
//! evaluation over [`panorama_store::Store`] reads including the open
//! minute, the alert lifecycle (pending → firing → resolved, no-data),
//! routing, silences, acknowledgement, on-call (rotas, escalation, budgets,
//! incidents: the dependency graph and the probable cause, paged once),
//! the persistent notification outbox and history,
//! and the channels (SMTP mail, SMS, voice calls acknowledged by keypress,
//! DingTalk, WeCom, Feishu, webhook). It never
//! talks to agents.

pub mod api;
pub mod callback;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod eval;
pub mod history;
pub mod incident;
pub mod lifecycle;
pub mod live;
pub mod notify;
pub mod outbox;
pub mod rota;
pub mod rule;
pub mod silence;
