//! `happystreams registry serve`: run the Confluent-compatible Schema Registry.

use crate::connectors::registry::{RegistryStore, RunningRegistry};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `happystreams registry serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default; use 0.0.0.0:8081 only behind a firewall.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Directory where subjects, versions and ids are persisted (created if missing).
    #[arg(long, default_value = "registry-data", conflicts_with = "in_memory")]
    pub data_dir: PathBuf,
    /// Keep everything in memory (lost on exit).
    #[arg(long)]
    pub in_memory: bool,
}

/// Serves until Ctrl-C / SIGTERM.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let store = if args.in_memory { RegistryStore::in_memory() } else { RegistryStore::open(&args.data_dir)? };
    let running = RunningRegistry::start(args.listen, store)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}; choose another --listen address", args.listen))?;
    tracing::info!(url = %running.url, data_dir = %args.data_dir.display(), in_memory = args.in_memory, "schema registry listening");
    crate::commands::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await?;
    Ok(())
}
