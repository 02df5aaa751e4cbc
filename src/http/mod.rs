//! What every HTTP server of happystreams shares (the Schema Registry, the metrics endpoint):
//! binding, optional TLS ([`tls`]), optional basic authentication with roles
//! ([`basic_auth`], the registry) and an optional bearer token ([`bearer`], an instance's
//! server).
//!
//! Servers bind loopback by default; TLS and users are opt-in, so the embedded default needs no
//! files. A server with TLS speaks only TLS on its port.

pub mod basic_auth;
pub mod bearer;
pub mod tls;

pub use basic_auth::{Role, Users};
pub use bearer::Token;
pub use tls::TlsFiles;

use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use tokio::task::JoinHandle;

/// A bound server: its address and the URL scheme clients use.
#[derive(Debug)]
pub struct Bound {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `https` with TLS, `http` without.
    pub scheme: &'static str,
}

impl Bound {
    /// `scheme://addr`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

/// Binds `addr` and serves `app` on a tokio task, with TLS when `tls` is given, until `stop`
/// completes (graceful: requests in flight finish). Binding and loading the TLS files happen
/// before this returns, so their errors are the caller's.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    tls: Option<&TlsFiles>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(Bound, JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    match tls {
        None => {
            let task = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop).await });
            Ok((Bound { addr, scheme: "http" }, task))
        }
        Some(files) => {
            let listener = tls::TlsListener::new(listener, files.server_config()?);
            let task = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop).await });
            Ok((Bound { addr, scheme: "https" }, task))
        }
    }
}
