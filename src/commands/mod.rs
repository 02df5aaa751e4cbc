//! What each CLI subcommand does. `main.rs` parses flags (the `*Args` structs here derive
//! `clap::Args`, so their doc comments are the `--help` text) and calls `run`.

pub mod decode;
pub mod demo;
pub mod describe;
pub mod generate;
pub mod lake_sink;
pub mod query;
pub mod query_api;
pub mod registry;
pub mod replay;
pub mod run;
pub mod schemas;
pub mod sftp_sync;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
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
