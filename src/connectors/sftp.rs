//! SFTP sources: partner servers that files are pulled from (`happystreams sftp-sync`).
//!
//! A connection verifies the server's host key against a known_hosts file before it
//! authenticates: an unknown host is refused unless the source says `trust_unknown_host` (then
//! the key is added to the file), and a changed key is always refused. Authentication is by key
//! file (optionally with a passphrase from an environment variable) or by a password from an
//! environment variable; secrets never appear in logs or config dumps.

use crate::error::ErrorClass;
use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[sftp]` settings: the sources by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SftpConfig {
    /// Sources by name (the name is the lake folder: `landing/<name>/`).
    pub sources: BTreeMap<String, SftpSource>,
}

/// What to do with a remote file once it is verified in the lake.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AfterUpload {
    /// Leave it (the manifest keeps it from being transferred again).
    #[default]
    Keep,
    /// Delete it.
    Delete,
    /// Move it into this remote directory.
    MoveTo(String),
}

/// One partner server and directory.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SftpSource {
    /// Host name or address.
    pub host: String,
    /// Port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User.
    pub user: String,
    /// Private key file (OpenSSH format).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the key's passphrase.
    #[serde(default)]
    pub key_passphrase_env: Option<String>,
    /// Environment variable holding the password (when there is no key file).
    #[serde(default)]
    pub password_env: Option<String>,
    /// Remote directory to read.
    pub remote_dir: String,
    /// File names to take (`*` and `?` wildcards).
    #[serde(default = "default_glob")]
    pub glob: String,
    /// known_hosts file the host key is checked against.
    pub known_hosts: PathBuf,
    /// Accept (and record) the key of a host not in `known_hosts` yet.
    #[serde(default)]
    pub trust_unknown_host: bool,
    /// What happens to a remote file after a verified upload.
    #[serde(default)]
    pub after_upload: AfterUpload,
    /// Attempts per file before it counts as failed.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_port() -> u16 {
    22
}
fn default_glob() -> String {
    "*".into()
}
fn default_attempts() -> u32 {
    3
}

impl std::fmt::Debug for SftpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpSource")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("key_file", &self.key_file)
            .field("password_env", &self.password_env)
            .field("remote_dir", &self.remote_dir)
            .field("glob", &self.glob)
            .field("known_hosts", &self.known_hosts)
            .finish_non_exhaustive()
    }
}

/// Why an SFTP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    /// Bad settings (missing key file, unset password variable, ...).
    #[error("{0}")]
    Config(String),
    /// The server's host key is not the one on record, or not on record at all.
    #[error("{0}")]
    HostKey(String),
    /// The server refused the credentials.
    #[error("authentication as `{user}` on {host} failed; check the key file or password")]
    Auth {
        /// User.
        user: String,
        /// host:port.
        host: String,
    },
    /// The connection failed or dropped.
    #[error("connection to {host}: {detail}")]
    Connection {
        /// host:port.
        host: String,
        /// What happened.
        detail: String,
    },
    /// The server answered an SFTP request with an error (permission, missing file, ...).
    #[error("{op} `{path}`: {detail}")]
    Remote {
        /// What was attempted.
        op: &'static str,
        /// Remote path.
        path: String,
        /// The server's answer.
        detail: String,
    },
}

impl SftpError {
    /// Who has to act.
    pub fn class(&self) -> ErrorClass {
        match self {
            SftpError::Config(_) | SftpError::HostKey(_) | SftpError::Auth { .. } => ErrorClass::Config,
            SftpError::Connection { .. } => ErrorClass::External,
            SftpError::Remote { .. } => ErrorClass::External,
        }
    }

    /// Whether trying again (on a new connection) can help.
    pub fn retryable(&self) -> bool {
        matches!(self, SftpError::Connection { .. })
            || matches!(self, SftpError::Remote { detail, .. } if detail.contains("I/O") || detail.contains("Timeout") || detail.contains("closed"))
    }
}

/// Checks the server key against the known_hosts file.
struct HostKeyCheck {
    source: SftpSource,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                "{}: host certificates are not supported; list the host key in known_hosts",
                self.source.host
            ));
            return Ok(false);
        };
        let (host, port, path) = (&self.source.host, self.source.port, &self.source.known_hosts);
        let refuse = |message: String| {
            *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
            Ok(false)
        };
        match russh::keys::check_known_hosts_path(host, port, key, path) {
            Ok(true) => Ok(true),
            Ok(false) if self.source.trust_unknown_host => {
                tracing::warn!(host, port, known_hosts = %path.display(), "unknown host key trusted and recorded (trust_unknown_host)");
                match russh::keys::known_hosts::learn_known_hosts_path(host, port, key, path) {
                    Ok(()) => Ok(true),
                    Err(e) => refuse(format!("recording the host key of {host}:{port} in {}: {e}", path.display())),
                }
            }
            Ok(false) => refuse(format!(
                "host {host}:{port} is not in {} (its key is {}); add it after checking the fingerprint with the partner (ssh-keyscan -p {port} {host}), or set trust_unknown_host = true",
                path.display(),
                key.fingerprint(Default::default())
            )),
            Err(russh::keys::Error::KeyChanged { line }) => refuse(format!(
                "HOST KEY CHANGED for {host}:{port} (known_hosts {} line {line}): refusing to connect; someone may be intercepting the connection, or the partner rotated its key — confirm with the partner before updating known_hosts",
                path.display()
            )),
            Err(e) => refuse(format!("reading {}: {e}", path.display())),
        }
    }
}

/// An open SFTP session with one source.
pub struct Connection {
    /// The SFTP session.
    pub sftp: SftpSession,
    handle: Handle<HostKeyCheck>,
}

impl Connection {
    /// Connects, verifies the host key, authenticates and opens the SFTP subsystem.
    pub async fn open(source: &SftpSource) -> Result<Connection, SftpError> {
        let host = format!("{}:{}", source.host, source.port);
        let connection = |detail: String| SftpError::Connection { host: host.clone(), detail };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(60)),
            keepalive_interval: Some(Duration::from_secs(15)),
            ..client::Config::default()
        });
        let refusal = Arc::new(Mutex::new(None));
        let check = HostKeyCheck { source: source.clone(), refusal: refusal.clone() };
        let connect = client::connect(config, (source.host.as_str(), source.port), check);
        let mut handle = match tokio::time::timeout(Duration::from_secs(30), connect).await {
            Err(_) => return Err(connection("no answer within 30 s".into())),
            Ok(Err(e)) => {
                if let Some(message) = refusal.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    return Err(SftpError::HostKey(message));
                }
                return Err(connection(e.to_string()));
            }
            Ok(Ok(handle)) => handle,
        };
        let auth = match (&source.key_file, &source.password_env) {
            (Some(key_file), _) => {
                let passphrase = match &source.key_passphrase_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        SftpError::Config(format!("environment variable {var} (key passphrase) is not set"))
                    })?),
                    None => None,
                };
                let key = russh::keys::load_secret_key(key_file, passphrase.as_deref())
                    .map_err(|e| SftpError::Config(format!("key file {}: {e}", key_file.display())))?;
                let hash = handle.best_supported_rsa_hash().await.map_err(|e| connection(e.to_string()))?.flatten();
                handle.authenticate_publickey(&source.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash)).await
            }
            (None, Some(var)) => {
                let password = std::env::var(var)
                    .map_err(|_| SftpError::Config(format!("environment variable {var} (password) is not set")))?;
                handle.authenticate_password(&source.user, password).await
            }
            (None, None) => {
                return Err(SftpError::Config(format!(
                    "source {host}: set key_file or password_env to say how to log in"
                )));
            }
        };
        match auth {
            Ok(result) if result.success() => {}
            Ok(_) => return Err(SftpError::Auth { user: source.user.clone(), host }),
            Err(e) => return Err(connection(e.to_string())),
        }
        let channel = handle.channel_open_session().await.map_err(|e| connection(e.to_string()))?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| connection(e.to_string()))?;
        let sftp = SftpSession::new(channel.into_stream()).await.map_err(|e| connection(e.to_string()))?;
        Ok(Connection { sftp, handle })
    }

    /// Closes the session.
    pub async fn close(self) {
        let _ = self.sftp.close().await;
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "done", "en").await;
    }
}

/// Whether `name` matches `pattern` (`*`: any run of characters, `?`: one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*.csv", "clicks-2026.csv"));
        assert!(!glob_match("*.csv", "clicks.csv.part"));
        assert!(glob_match("ad?_*.json", "ad1_x.json"));
        assert!(!glob_match("ad?_*.json", "ad12_x.json"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
    }
}
