//! `happystreams registry serve`: run the Confluent-compatible Schema Registry.

use crate::connectors::registry::{RegistryStore, RunningRegistry, ServerSecurity};
use crate::http::{TlsFiles, Users};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Require basic authentication: a file of `name:role:argon2-hash` lines (role `read-only`
    /// or `admin`; hashes from `happystreams registry hash-password`). Without it anyone who
    /// reaches the port may register and delete schemas.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
}

/// Serves until Ctrl-C / SIGTERM.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let store = if args.in_memory { RegistryStore::in_memory() } else { RegistryStore::open(&args.data_dir)? };
    let tls = TlsFiles::from_pair(args.tls_cert.clone(), args.tls_key.clone(), "registry serve")
        .map_err(anyhow::Error::msg)?;
    let tls_error = tls.as_ref().and_then(|files| files.server_config().err());
    if let Some(e) = tls_error {
        anyhow::bail!("{e}; check --tls-cert and --tls-key");
    }
    let users = match &args.users {
        Some(path) => Some(Arc::new(Users::load(path).map_err(|e| anyhow::anyhow!("{e} (--users)"))?)),
        None => None,
    };
    let security = ServerSecurity { tls, users };
    let running = RunningRegistry::start_with(args.listen, store, &security)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}; choose another --listen address", args.listen))?;
    if security.users.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "the registry takes writes from anyone who reaches it; give --users to require credentials");
    }
    tracing::info!(url = %running.url, data_dir = %args.data_dir.display(), in_memory = args.in_memory,
        tls = security.tls.is_some(), authentication = security.users.is_some(), "schema registry listening");
    crate::commands::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await?;
    Ok(())
}

/// Reads a password from stdin (one line) and prints its Argon2id hash.
pub fn hash_password() -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("no password on stdin; e.g. `printf '%s' \"$PASSWORD\" | happystreams registry hash-password`");
    }
    println!("{}", crate::http::basic_auth::hash_password(password).map_err(anyhow::Error::msg)?);
    Ok(())
}
