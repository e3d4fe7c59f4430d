//! Alert rules over rollups.
//!
//! # What this crate owns
//! Rule files (TOML, hot-reloaded, validated with file:line:col),
//! evaluation over [`panorama_store::Store`] reads including the open
//! minute, the alert lifecycle (pending → firing → resolved, no-data),
//! routing, silences, acknowledgement, on-call (rotas, escalation, budgets,
//! incidents: the dependency graph and the probable cause, paged once),
//! the persistent notification outbox and history, and the channels (SMTP
//! mail, SMS, voice calls acknowledged by keypress, DingTalk, WeCom,
//! Feishu, webhook, mailbox).
//!
//! # What it must not do
//! - Talk to agents, or read anything but the [`panorama_store::Store`]
//!   and the collector's [`panorama_model::live::LiveView`]: it never
//!   writes rollups and knows nothing of ingest.
//! - Render HTML for people or route HTTP beyond its own JSON handlers in
//!   [`api`] and the provider callbacks in [`callback`]; the dashboard
//!   reads its state through [`engine::Engine`]'s views.
//! - Read the clock where a test needs to drive time: [`engine::Engine::tick`]
//!   and [`engine::Engine::deliver`] take `now_ms`.
//! - Send before writing: every notice goes to the outbox (and every state
//!   change to its file, through `panorama-durable`) before any channel
//!   sees it, so a restart neither pages twice nor loses a resolved notice.
//!
//! # How the modules fit
//! [`rule`] loads and checks a directory into a [`rule::RuleSet`];
//! [`eval`] turns a rule and rollups into verdicts; [`lifecycle`] turns
//! verdicts into transitions; [`dispatch`] batches them per route into
//! notices; [`incident`] groups connected alerts; [`engine`] runs all of it
//! on a tick (one file per job: state, reload, tick, route, notice,
//! deliver, operator, view) and hands notices to the [`outbox`], from which
//! [`notify`]'s channels deliver; [`history`] records every step.

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
