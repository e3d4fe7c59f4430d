//! `panorama-agent`: thin binary over the `panorama_agent` library.

use clap::Parser;

/// Tails logs on this host and ships them to a Panorama collector.
#[derive(Parser, Debug)]
#[command(name = "panorama-agent", version = panorama_agent::VERSION)]
struct Args {
    /// Agent configuration file (TOML).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!(
        "panorama-agent {}: tailing is not built yet (see the agent issue)",
        panorama_agent::VERSION
    )
}
