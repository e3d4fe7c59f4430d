//! `panorama`: collector, rules and dashboard in one process.
//!
//! This file parses arguments, sets up logging and wires libraries together;
//! everything it starts lives in a crate that tests drive directly.

mod config;
mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{Config, FileConfig};
use panorama_collector::Collector;
use panorama_collector::auth::{
    Access, Auth, SessionInfo, SessionLookup, TokenTable, decide_access,
};
use panorama_collector::config::{CollectorSettings, StoreChoice};
use panorama_collector::serve::ServeConfig;
use panorama_model::{ConfigSource, Role};
use panorama_rules::engine::{Engine, EngineConfig};
use panorama_store::Store;
use panorama_store::elastic::{ElasticConfig, ElasticStore};
use panorama_store::sqlite::SqliteStore;

/// Layered monitoring and alerting for online services.
#[derive(Parser, Debug)]
#[command(name = "panorama", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the collector: ingest, write-ahead log, per-minute rollups, query
    /// API, and the rules engine when rules are configured.
    Collector(Box<CollectorArgs>),
    /// Hash a dashboard password (read from standard input) for
    /// `[[dashboard.user]] password_hash` or `--dashboard-user`.
    HashPassword,
    /// Run everything on this machine with a simulated game service, and
    /// inject an incident after a few minutes.
    Demo(Box<demo::DemoArgs>),
    /// Work with alert rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Check a rules directory; prints every error as file:line:col and
    /// exits non-zero if there is any.
    Check {
        /// The directory of *.toml rule files.
        dir: PathBuf,
        /// Also print one rule's effective settings, defaults included.
        #[arg(long, value_name = "RULE")]
        explain: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
struct CollectorArgs {
    /// Collector configuration file (TOML); the flags below are the
    /// one-line alternative and cannot be mixed with it.
    #[arg(long, conflicts_with_all = ["elasticsearch", "tokens", "api_tokens", "dashboard_users", "time_zone", "language", "secure_cookies", "tls_cert", "tls_key", "tls_client_ca", "metrics_public"])]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Where the write-ahead log, the ledger and the embedded store live.
    #[arg(long, default_value = "./panorama-data")]
    data_dir: PathBuf,
    /// Use this Elasticsearch cluster instead of the embedded SQLite store.
    #[arg(long, value_name = "URL")]
    elasticsearch: Option<String>,
    /// Index name prefix in Elasticsearch.
    #[arg(long, default_value = "panorama")]
    index_prefix: String,
    /// An agent token: ingest only (repeatable). Without any token of any
    /// role the collector is open, and so serves only on loopback.
    #[arg(long = "token", value_name = "TOKEN")]
    tokens: Vec<String>,
    /// A token with a role, `ROLE:TOKEN`, ROLE one of agent, viewer
    /// (reads), operator (reads, ack, silences), admin (also rules reload);
    /// repeatable.
    #[arg(long = "api-token", value_name = "ROLE:TOKEN")]
    api_tokens: Vec<String>,
    /// `/metrics` without a token (for a Prometheus that has none).
    #[arg(long)]
    metrics_public: bool,
    /// Serve without any credential on a non-loopback address. Anyone who
    /// reaches the port can read raw log samples and silence alerts.
    #[arg(long)]
    insecure_open: bool,
    /// Serve HTTPS with this PEM certificate chain (re-read when it changes).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by these PEM CAs (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// This collector's id, unique among collectors sharing a store.
    #[arg(long, default_value = "c1")]
    collector_id: String,
    /// Seconds a minute stays open for late events before it is first written.
    #[arg(long, default_value_t = panorama_collector::DEFAULT_GRACE_SECS)]
    grace_secs: u64,
    /// Evaluate the alert rules in this directory (hot-reloaded).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Base URL of the dashboard, for links in notifications.
    #[arg(long, value_name = "URL")]
    dashboard_url: Option<String>,
    /// A dashboard account, `NAME:ROLE:HASH` with ROLE viewer, operator or admin
    /// and HASH from `panorama hash-password` (repeatable). Without any,
    /// the dashboard is not served.
    #[arg(long = "dashboard-user", value_name = "NAME:ROLE:HASH")]
    dashboard_users: Vec<String>,
    /// IANA time zone the dashboard shows times in.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    time_zone: String,
    /// Dashboard language for users who have not chosen one: en or zh.
    #[arg(long, default_value = "en")]
    language: String,
    /// Mark dashboard cookies Secure (behind a TLS proxy that sends no
    /// X-Forwarded-Proto).
    #[arg(long)]
    secure_cookies: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Collector(args) => collector(configure(&args)?).await,
        Command::Demo(args) => {
            let (config, running) = demo::start(&args).await?;
            let result = collector(config).await;
            running.stop().await;
            result
        }
        Command::HashPassword => hash_password(),
        Command::Rules {
            command: RulesCommand::Check { dir, explain },
        } => rules_check(&dir, explain.as_deref()),
    }
}

fn hash_password() -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if std::io::stdin().is_terminal() {
        eprint!("password (echoed): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "an empty password cannot be hashed");
    let hash = panorama_dashboard::hash_password(password)?;
    println!("{hash}");
    Ok(())
}

/// The configuration of `panorama collector`: its file, or its flags
/// filling the same sections.
fn configure(args: &CollectorArgs) -> anyhow::Result<Config> {
    Ok(match &args.config {
        Some(path) => {
            let mut config = FileConfig::load(path)?;
            config.collector.auth.insecure_open |= args.insecure_open;
            config
        }
        None => FileConfig::from_flags(args)?.check(&ConfigSource::Flags)?,
    })
}

fn rules_check(dir: &std::path::Path, explain: Option<&str>) -> anyhow::Result<()> {
    match panorama_rules::rule::load_dir(dir) {
        Ok(set) => {
            if let Some(name) = explain {
                let text = panorama_rules::rule::explain::explain(&set, name)
                    .with_context(|| format!("{}: no rule named `{name}`", dir.display()))?;
                print!("{text}");
            }
            println!(
                "{}: {} rule(s), {} receiver(s), {} route(s) in {} file(s): OK",
                dir.display(),
                set.rules.len(),
                set.receivers.len(),
                set.routes.len(),
                set.files.len()
            );
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", dir.display(), errors.len());
            std::process::exit(1);
        }
    }
}

/// The dashboard's sessions as credentials for the auth layer.
struct DashboardSessions(panorama_dashboard::Dashboard);

impl SessionLookup for DashboardSessions {
    fn session(&self, headers: &axum::http::HeaderMap) -> Option<SessionInfo> {
        self.0
            .session_of(headers)
            .map(|(user, role, csrf)| SessionInfo { user, role, csrf })
    }
}

async fn collector(config: Config) -> anyhow::Result<()> {
    let Config {
        collector:
            CollectorSettings {
                listen,
                store: choice,
                collector: cfg,
                auth,
                tls,
            },
        rules,
        dashboard,
    } = config;
    // Decided before anything is opened: a collector that must not start
    // leaves no files behind.
    let table = TokenTable::new(&auth.tokens);
    let users = dashboard.as_ref().map_or(0, |d| d.users.len());
    let access = decide_access(listen, &table, users, auth.insecure_open)?;
    match access {
        Access::Open if !listen.ip().is_loopback() => tracing::warn!(
            %listen,
            "serving WITHOUT authentication on a network address (--insecure-open): anyone who \
             reaches it can read log samples and silence alerts"
        ),
        Access::Open => tracing::info!(
            %listen,
            "no API tokens: every route is open to processes on this machine (loopback only)"
        ),
        Access::Checked => {
            if !auth.tokens.iter().any(|t| t.role == Role::Agent) {
                tracing::warn!("no agent token configured: every ingest will be refused");
            }
        }
    }
    if let Some(t) = &tls {
        // Checked now, so a wrong file is an error at start, not at the
        // first connection.
        panorama_collector::serve::tls_acceptor(t)?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let store: Arc<dyn Store> = match &choice {
        StoreChoice::Elasticsearch { url, index_prefix } => Arc::new(
            ElasticStore::connect(ElasticConfig::new(url).with_prefix(index_prefix))
                .await
                .with_context(|| format!("connecting to Elasticsearch at {url}"))?,
        ),
        StoreChoice::Sqlite => Arc::new(SqliteStore::open(&cfg.data_dir).with_context(|| {
            format!("opening the embedded store in {}", cfg.data_dir.display())
        })?),
    };
    let state_dir = cfg.data_dir.join("alerts");
    let data_dir = cfg.data_dir.clone();
    let collector = Collector::start(cfg, store.clone())
        .await
        .context("starting the collector")?;
    let mut app = panorama_collector::api::app(collector.clone());
    let (stop_rules, stopped) = tokio::sync::watch::channel(false);
    let mut engine_task = None;
    let mut dashboard_engine = None;
    if let Some(r) = rules {
        let mut ecfg = EngineConfig::new(&r.dir, &state_dir);
        ecfg.dashboard_url = r
            .dashboard_url
            .unwrap_or_else(|| format!("{scheme}://{listen}"));
        let engine = Engine::open(ecfg, store.clone()).context("starting the rules engine")?;
        engine.attach_live(collector.live());
        app = app.merge(panorama_rules::api::router(engine.clone()));
        dashboard_engine = Some(engine.clone());
        engine_task = Some(tokio::spawn(engine.run(stopped)));
        tracing::info!(dir = %r.dir.display(), "rules engine started");
    }
    let mut sessions: Option<Arc<dyn SessionLookup>> = None;
    let mut served_dashboard = None;
    match dashboard {
        Some(mut d) if !d.users.is_empty() => {
            let users = d.users.len();
            // Served over TLS the cookies are always Secure.
            d.secure_cookies |= tls.is_some();
            d.sessions_file = Some(data_dir.join("dashboard").join("sessions.json"));
            let dash = panorama_dashboard::Dashboard::new(store.clone(), dashboard_engine, d);
            app = app.merge(panorama_dashboard::router(dash.clone()));
            sessions = Some(Arc::new(DashboardSessions(dash.clone())));
            served_dashboard = Some(dash);
            tracing::info!(users, "dashboard served at /");
        }
        _ => tracing::warn!(
            "dashboard not served: no users (add [[dashboard.user]] or --dashboard-user; \
             hash a password with `panorama hash-password`)"
        ),
    }
    let auth = Arc::new(Auth::new(table, sessions, access, auth.metrics_public));
    let app = panorama_collector::auth::protect(app, auth);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, scheme, store = store.backend(), "collector started");
    let serve_cfg = ServeConfig {
        tls,
        ..ServeConfig::default()
    };
    panorama_collector::serve::serve(listener, app, serve_cfg, shutdown_signal()).await?;
    let _ = stop_rules.send(true);
    if let Some(t) = engine_task {
        let _ = t.await;
    }
    if let Some(d) = served_dashboard {
        d.persist_sessions();
    }
    // Stopped accepting; now write what the aggregator holds.
    collector.shutdown(Duration::from_secs(30)).await;
    tracing::info!("collector stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
