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
use panorama_collector::config::{FileConfig, StoreChoice};
use panorama_collector::{Collector, CollectorConfig};
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
    /// Run the collector: ingest, write-ahead log, per-minute rollups, query API.
    Collector(CollectorArgs),
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Collector(args) => collector(args).await,
    }
}

async fn collector(args: CollectorArgs) -> anyhow::Result<()> {
    let (listen, choice, cfg) = match &args.config {
        Some(path) => {
            let f = FileConfig::load(path)?;
            (f.listen, f.store, f.collector)
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
            (args.listen, choice, cfg)
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
    let collector = Collector::start(cfg, store.clone())
        .await
        .context("starting the collector")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, store = store.backend(), "collector started");
    let app = panorama_collector::api::app(collector.clone());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
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
