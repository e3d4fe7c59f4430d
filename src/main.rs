//! `panorama`: collector, rules and dashboard in one process.
//!
//! This file parses arguments, sets up logging and wires libraries together;
//! everything it starts lives in a crate that tests drive directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use panorama_collector::config::{FileConfig, RulesSection, StoreChoice};
use panorama_collector::{Collector, CollectorConfig};
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
    },
}

#[derive(clap::Args, Debug)]
struct CollectorArgs {
    /// Collector configuration file (TOML); the flags below are the
    /// one-line alternative and cannot be mixed with it.
    #[arg(long, conflicts_with_all = ["elasticsearch", "tokens"])]
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
    /// Accept ingest only with this bearer token (repeatable). Without any,
    /// ingest is open: fine on loopback, not on a network.
    #[arg(long = "token", value_name = "TOKEN")]
    tokens: Vec<String>,
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
        Command::Rules {
            command: RulesCommand::Check { dir },
        } => rules_check(&dir),
    }
}

fn rules_check(dir: &std::path::Path) -> anyhow::Result<()> {
    match panorama_rules::rule::load_dir(dir) {
        Ok(set) => {
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

async fn collector(args: CollectorArgs) -> anyhow::Result<()> {
    let (listen, choice, cfg, rules) = match &args.config {
        Some(path) => {
            let f = FileConfig::load(path)?;
            (f.listen, f.store, f.collector, f.rules)
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
            (args.listen, choice, cfg, rules)
        }
    };
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
    let collector = Collector::start(cfg, store.clone())
        .await
        .context("starting the collector")?;
    let mut app = panorama_collector::api::app(collector.clone());
    let (stop_rules, stopped) = tokio::sync::watch::channel(false);
    let mut engine_task = None;
    if let Some(r) = rules {
        let mut ecfg = EngineConfig::new(&r.dir, &state_dir);
        ecfg.dashboard_url = r
            .dashboard_url
            .unwrap_or_else(|| format!("http://{listen}"));
        let source: Arc<dyn panorama_rules::eval::Source> =
            Arc::new(panorama_rules::eval::StoreSource(store.clone()));
        let engine = Engine::open(ecfg, source).context("starting the rules engine")?;
        app = app.merge(panorama_rules::api::router(engine.clone()));
        engine_task = Some(tokio::spawn(engine.run(stopped)));
        tracing::info!(dir = %r.dir.display(), "rules engine started");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, store = store.backend(), "collector started");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    let _ = stop_rules.send(true);
    if let Some(t) = engine_task {
        let _ = t.await;
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
