//! `panorama-agent`: parses flags, loads the config, runs the agent library
//! until SIGTERM or Ctrl-C, then checkpoints. `panorama-agent check-routes
//! FILE` prints the series a log file would produce instead.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use panorama_agent::config::AgentConfig;
use panorama_agent::run::{AgentFigures, run};

/// Tails logs on this host and ships them to a Panorama collector.
#[derive(Parser, Debug)]
#[command(name = "panorama-agent", version = panorama_agent::VERSION)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Agent configuration file (TOML). Without it, the flags below describe the agent.
    #[arg(long, conflicts_with_all = ["collector", "tail"])]
    config: Option<PathBuf>,
    /// Collector base URL (repeatable, failover order).
    #[arg(long, value_name = "URL")]
    collector: Vec<String>,
    /// Bearer token for the collector.
    #[arg(long)]
    token: Option<String>,
    /// Where checkpoints live.
    #[arg(long, default_value = "./panorama-agent-data")]
    data_dir: PathBuf,
    /// A source as FORMAT:SERVICE:GLOB (repeatable); FORMAT is combined,
    /// json, syslog, mysql_slow, redis.
    #[arg(long, value_name = "FORMAT:SERVICE:GLOB")]
    tail: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints the series a log file would produce and how many lines each
    /// gets, busiest first, to tune `routes` before deploying.
    CheckRoutes {
        /// The log file.
        file: PathBuf,
        /// Agent configuration whose `--source` says how to parse the file
        /// (format, routes, series template).
        #[arg(long, requires = "source")]
        config: Option<PathBuf>,
        /// The `[[source]]` of `--config` to parse the file as.
        #[arg(long, requires = "config")]
        source: Option<String>,
        /// Without `--config`: the format (combined, json, syslog,
        /// mysql_slow, redis).
        #[arg(long, default_value = "combined", conflicts_with = "config")]
        format: String,
    },
}

fn check_routes(
    file: &std::path::Path,
    config: Option<&std::path::Path>,
    source: Option<&str>,
    format: &str,
) -> anyhow::Result<()> {
    use panorama_agent::parse::{Format, ParseSpec};
    let spec = match (config, source) {
        (Some(config), Some(source)) => {
            let cfg = AgentConfig::load(config)?;
            let known: Vec<String> = cfg.sources.iter().map(|s| s.tail.name.clone()).collect();
            cfg.sources
                .into_iter()
                .find(|s| s.tail.name == source)
                .map(|s| s.parse)
                .with_context(|| {
                    format!(
                        "{}: no [[source]] named {source:?} (there are: {})",
                        config.display(),
                        known.join(", ")
                    )
                })?
        }
        _ => {
            let f = Format::ALL
                .into_iter()
                .find(|f| f.as_str() == format)
                .with_context(|| {
                    format!(
                        "--format {format:?}: expected combined, json, syslog, mysql_slow or redis"
                    )
                })?;
            ParseSpec::new(f, "check")
        }
    };
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let counts = panorama_agent::check::series_of(spec, std::io::BufReader::new(input))
        .with_context(|| file.display().to_string())?;
    print!("{}", counts.render());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if let Some(Command::CheckRoutes {
        file,
        config,
        source,
        format,
    }) = &args.command
    {
        return check_routes(file, config.as_deref(), source.as_deref(), format);
    }
    let cfg = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::from_flags(args.collector, args.token, args.data_dir, &args.tail)?,
    };
    std::fs::create_dir_all(cfg.data_dir.join("checkpoints"))
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    tracing::info!(agent = %cfg.agent_id, sources = cfg.sources.len(), collectors = ?cfg.ship.collectors, "agent started");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(run(cfg, Arc::new(AgentFigures::default()), stop_rx));
    shutdown_signal().await;
    tracing::info!("stopping: checkpointing");
    let _ = stop_tx.send(true);
    agent.await.context("agent task")??;
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}
