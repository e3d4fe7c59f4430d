//! `panorama`: collector, rules and dashboard in one process.
//!
//! This file parses arguments, sets up logging and wires libraries together;
//! everything it starts lives in a crate that tests drive directly.

mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use panorama_collector::auth::{
    Access, ApiToken, Auth, SessionInfo, SessionLookup, TokenTable, decide_access,
};
use panorama_collector::config::{
    AuthSection, DashboardSection, DashboardUser, FileConfig, RulesSection, StoreChoice,
};
use panorama_collector::serve::{ServeConfig, TlsFiles};
use panorama_collector::{Collector, CollectorConfig};
use panorama_model::Role;
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
        Command::Collector(args) => collector(*args).await,
        Command::Demo(args) => {
            let (argv, running) = demo::start(&args).await?;
            let Command::Collector(c) = Cli::parse_from(argv).command else {
                unreachable!("the demo builds collector arguments");
            };
            let result = collector(*c).await;
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
    let hash = panorama_dashboard::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}

/// The `--dashboard-user` and related flags, checked like the file's section.
fn dashboard_from_flags(args: &CollectorArgs) -> anyhow::Result<Option<DashboardSection>> {
    if args.dashboard_users.is_empty() {
        return Ok(None);
    }
    let mut users = Vec::new();
    for u in &args.dashboard_users {
        let mut parts = u.splitn(3, ':');
        let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            anyhow::bail!("--dashboard-user {u:?}: expected NAME:ROLE:HASH");
        };
        anyhow::ensure!(
            ["viewer", "operator", "admin"].contains(&role),
            "--dashboard-user {name}: role {role:?}: expected viewer, operator or admin"
        );
        anyhow::ensure!(
            panorama_dashboard::config::is_valid_hash(hash),
            "--dashboard-user {name}: expected an argon2 hash from `panorama hash-password`"
        );
        users.push(DashboardUser {
            name: name.to_owned(),
            password_hash: hash.to_owned(),
            role: role.to_owned(),
        });
    }
    let time_zone = args.time_zone.parse().map_err(|_| {
        anyhow::anyhow!(
            "--time-zone {:?}: expected an IANA zone such as Asia/Shanghai",
            args.time_zone
        )
    })?;
    anyhow::ensure!(
        ["en", "zh"].contains(&args.language.as_str()),
        "--language {:?}: expected en or zh",
        args.language
    );
    Ok(Some(DashboardSection {
        users,
        time_zone,
        language: args.language.clone(),
        secure_cookies: args.secure_cookies,
        session_idle: Duration::from_secs(12 * 3600),
        session_max: Duration::from_secs(7 * 86_400),
        silent_after: Duration::from_secs(180),
    }))
}

/// The dashboard's checked configuration from the section; sessions are
/// kept in `data_dir`.
fn dashboard_config(
    s: DashboardSection,
    data_dir: &std::path::Path,
    tls: bool,
) -> panorama_dashboard::DashboardConfig {
    use panorama_dashboard::config::{Lang, User};
    let users = s
        .users
        .into_iter()
        .map(|u| User {
            role: Role::parse(&u.role).unwrap_or(Role::Viewer),
            name: u.name,
            password_hash: u.password_hash,
        })
        .collect();
    let mut cfg = panorama_dashboard::DashboardConfig::new(users);
    cfg.time_zone = s.time_zone;
    cfg.default_lang = Lang::parse(&s.language).unwrap_or(Lang::En);
    // Served over TLS the cookies are always Secure.
    cfg.secure_cookies = s.secure_cookies || tls;
    cfg.session_idle = s.session_idle;
    cfg.session_max = s.session_max;
    cfg.sessions_file = Some(data_dir.join("dashboard").join("sessions.json"));
    cfg.silent_after = s.silent_after;
    cfg
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

async fn collector(args: CollectorArgs) -> anyhow::Result<()> {
    let (listen, choice, cfg, rules, dashboard, auth, tls) = match &args.config {
        Some(path) => {
            let mut f = FileConfig::load(path)?;
            f.auth.insecure_open |= args.insecure_open;
            (
                f.listen,
                f.store,
                f.collector,
                f.rules,
                f.dashboard,
                f.auth,
                f.tls,
            )
        }
        None => {
            let mut cfg = CollectorConfig::new(&args.collector_id, &args.data_dir);
            cfg.grace = Duration::from_secs(args.grace_secs);
            cfg.tokens = args
                .tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), format!("token{}", i + 1)))
                .collect();
            let mut tokens: Vec<ApiToken> = cfg
                .tokens
                .iter()
                .map(|(t, name)| ApiToken {
                    name: name.clone(),
                    token: t.clone(),
                    role: Role::Agent,
                })
                .collect();
            for (i, flag) in args.api_tokens.iter().enumerate() {
                let t = ApiToken::from_flag(flag, i + 1).map_err(anyhow::Error::msg)?;
                if t.role == Role::Agent {
                    cfg.tokens.insert(t.token.clone(), t.name.clone());
                }
                tokens.push(t);
            }
            let choice = match &args.elasticsearch {
                Some(url) => StoreChoice::Elasticsearch {
                    url: url.clone(),
                    index_prefix: args.index_prefix.clone(),
                },
                None => StoreChoice::Sqlite,
            };
            let rules = args.rules.clone().map(|dir| RulesSection {
                dir,
                dashboard_url: args.dashboard_url.clone(),
            });
            let tls = match (&args.tls_cert, &args.tls_key) {
                (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                    client_ca_file: args.tls_client_ca.clone(),
                }),
                _ => None,
            };
            let auth = AuthSection {
                tokens,
                metrics_public: args.metrics_public,
                insecure_open: args.insecure_open,
            };
            (
                args.listen,
                choice,
                cfg,
                rules,
                dashboard_from_flags(&args)?,
                auth,
                tls,
            )
        }
    };
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
        Some(d) if !d.users.is_empty() => {
            let users = d.users.len();
            let dash = panorama_dashboard::Dashboard::new(
                store.clone(),
                dashboard_engine,
                dashboard_config(d, &data_dir, tls.is_some()),
            );
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
