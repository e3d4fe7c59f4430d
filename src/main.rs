//! `panorama`: collector, rules and dashboard in one process.
//!
//! This file parses arguments, sets up logging and wires libraries together;
//! everything it starts lives in a crate that tests drive directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    /// Run the collector: the query API over the store (ingest arrives with the collector issue).
    Collector(CollectorArgs),
}

#[derive(clap::Args, Debug)]
struct CollectorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Where the embedded store (and later the WAL) lives.
    #[arg(long, default_value = "./panorama-data")]
    data_dir: PathBuf,
    /// Use this Elasticsearch cluster instead of the embedded SQLite store.
    #[arg(long, value_name = "URL")]
    elasticsearch: Option<String>,
    /// Index name prefix in Elasticsearch.
    #[arg(long, default_value = "panorama")]
    index_prefix: String,
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
    let store: Arc<dyn Store> = match &args.elasticsearch {
        Some(url) => Arc::new(
            ElasticStore::connect(ElasticConfig::new(url).with_prefix(&args.index_prefix))
                .await
                .with_context(|| format!("connecting to Elasticsearch at {url}"))?,
        ),
        None => Arc::new(SqliteStore::open(&args.data_dir).with_context(|| {
            format!("opening the embedded store in {}", args.data_dir.display())
        })?),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, store = store.backend(), "collector started");
    axum::serve(listener, panorama_collector::api::router(store))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
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
