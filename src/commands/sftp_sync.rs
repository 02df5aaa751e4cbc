//! `happystreams sftp-sync`: pull new partner files from SFTP sources into the lake, once each.
//!
//! For each source: list `remote_dir` (files matching `glob`), skip files the lake's manifest
//! already has (same name, size and modification time), and stream each new file into
//! `landing/<source>/date=YYYY-MM-DD/<name>` (the date of the file's modification time, UTC, so a
//! re-run writes the same path). The upload is atomic and completes only when the bytes read
//! equal the size the server reported and the file did not change meanwhile; then
//! `landing/<source>/_manifest/<name>.json` records it (size, mtime, sha256) and the remote file
//! is kept, deleted or moved as configured. Connection failures are retried with backoff on a new
//! connection; a run killed mid-file leaves no visible partial file and the next run transfers
//! that file again from the start.

use crate::config::Config;
use crate::connectors::lake::{Lake, LakeError};
use crate::connectors::sftp::{AfterUpload, Connection, SftpError, SftpSource, glob_match};
use crate::observe::lineage::{Dataset, EventType, Run};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Flags of `happystreams sftp-sync`.
#[derive(Debug, Clone, clap::Args)]
pub struct SftpSyncArgs {
    /// Only these sources (`[sftp.sources.<name>]`); all of them when not given.
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Files transferred.
    pub files: u64,
    /// Bytes transferred.
    pub bytes: u64,
    /// Files already in the lake.
    pub skipped: u64,
    /// Files (or unreachable sources) that failed.
    pub failed: u64,
}

/// A manifest entry: one landed file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Landed {
    /// Remote path it came from.
    pub remote_path: String,
    /// Size in bytes.
    pub size: u64,
    /// Remote modification time (seconds since the epoch).
    pub mtime: Option<u32>,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Where it is in the lake.
    pub lake_path: String,
    /// When it landed (RFC 3339).
    pub landed_at: String,
}

/// Runs the sync; prints the summary.
pub async fn run(args: &SftpSyncArgs, config: &Config) -> anyhow::Result<Summary> {
    let lake = Lake::open(&config.lake)?;
    let sources = &config.sftp.sources;
    if sources.is_empty() {
        anyhow::bail!("no SFTP sources configured: add [sftp.sources.<name>] sections to the config file");
    }
    let names: Vec<&String> =
        if args.sources.is_empty() { sources.keys().collect() } else { args.sources.iter().collect() };
    let mut selected = Vec::new();
    for name in names {
        let source = sources.get(name).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown source `{name}`; configured: {}",
                sources.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        selected.push((name, source));
    }
    let lineage = lineage_run(&selected, config)?;
    if let Some(run) = &lineage {
        run.emit(EventType::Start, None, None).await;
    }
    let mut summary = Summary::default();
    for (name, source) in selected {
        sync_source(name, source, &lake, &mut summary).await;
    }
    if let Some(run) = &lineage {
        let counts = serde_json::json!({"files": summary.files, "bytes": summary.bytes, "skipped": summary.skipped, "failed": summary.failed});
        match summary.failed {
            0 => run.emit(EventType::Complete, Some(counts), None).await,
            n => run.emit(EventType::Fail, Some(counts), Some(&format!("{n} files failed (see the log)"))).await,
        }
    }
    println!(
        "sftp-sync: {} files ({:.1} MB) transferred, {} already in the lake, {} failed",
        summary.files,
        summary.bytes as f64 / 1e6,
        summary.skipped,
        summary.failed
    );
    Ok(summary)
}

/// The sync's lineage: each source's remote folder in, its landing folder in the lake out.
fn lineage_run(selected: &[(&String, &SftpSource)], config: &Config) -> anyhow::Result<Option<Run>> {
    let inputs = selected.iter().map(|(_, s)| Dataset::sftp(&s.host, s.port, &s.remote_dir)).collect();
    let outputs =
        selected.iter().map(|(name, _)| Dataset::lake(&config.lake.url, &format!("landing/{name}"))).collect();
    Run::new(&config.lineage, "sftp-sync", "SFTP_SYNC", inputs, outputs).map_err(|e| anyhow::anyhow!(e))
}

fn manifest_dir(source: &str) -> String {
    format!("landing/{source}/_manifest")
}

async fn load_manifest(lake: &Lake, source: &str) -> Result<BTreeMap<String, Landed>, LakeError> {
    let mut manifest = BTreeMap::new();
    for object in lake.list(&manifest_dir(source)).await? {
        let bytes = lake.get(&object.path).await?;
        match serde_json::from_slice::<Landed>(&bytes) {
            Ok(entry) => {
                let name = entry.remote_path.rsplit('/').next().unwrap_or_default().to_owned();
                manifest.insert(name, entry);
            }
            Err(e) => {
                tracing::warn!(path = %object.path, error = %e, "unreadable manifest entry ignored; its file will be transferred again")
            }
        }
    }
    Ok(manifest)
}

async fn connect(name: &str, source: &SftpSource) -> Result<Connection, SftpError> {
    let mut delay = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match Connection::open(source).await {
            Err(e) if e.retryable() && attempt < source.attempts => {
                tracing::warn!(source = name, attempt, error = %e, "connecting failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn sync_source(name: &str, source: &SftpSource, lake: &Lake, summary: &mut Summary) {
    let manifest = match load_manifest(lake, name).await {
        Ok(manifest) => manifest,
        Err(e) => {
            tracing::error!(source = name, error = %e, "cannot read the manifest; skipping the source");
            summary.failed += 1;
            return;
        }
    };
    let mut connection = match connect(name, source).await {
        Ok(connection) => connection,
        Err(e) => {
            tracing::error!(source = name, error = %e, "cannot connect");
            eprintln!("error: source {name}: {e}");
            summary.failed += 1;
            return;
        }
    };
    let listing = match connection.sftp.read_dir(source.remote_dir.clone()).await {
        Ok(listing) => listing,
        Err(e) => {
            eprintln!("error: source {name}: listing {}: {e}", source.remote_dir);
            summary.failed += 1;
            connection.close().await;
            return;
        }
    };
    let mut files: Vec<(String, u64, Option<u32>)> = listing
        .filter(|e| e.file_type().is_file() && glob_match(&source.glob, &e.file_name()))
        .map(|e| {
            let meta = e.metadata();
            (e.file_name(), meta.size.unwrap_or(0), meta.mtime)
        })
        .collect();
    files.sort();
    tracing::info!(source = name, files = files.len(), "listed");
    for (file, size, mtime) in files {
        // A remote name becomes part of a lake path: only plain names may.
        if let Err(why) = crate::connectors::lake::check_part(&file) {
            eprintln!("error: source {name}: remote file {file:?} is not landed: {why}; rename it on the server");
            tracing::error!(source = name, file = ?file, why, "remote file name refused");
            summary.failed += 1;
            continue;
        }
        if file.starts_with(['.', '_']) {
            tracing::warn!(source = name, file = %file, "skipped: a name starting with `.` or `_` would be invisible to lake readers (Spark, Hive, DuckDB skip them)");
            summary.skipped += 1;
            continue;
        }
        if manifest.get(&file).is_some_and(|m| m.size == size && m.mtime == mtime) {
            summary.skipped += 1;
            continue;
        }
        let mut delay = Duration::from_secs(1);
        let mut attempt = 1;
        loop {
            match transfer(name, source, &connection, lake, &file).await {
                Ok(landed) => {
                    summary.files += 1;
                    summary.bytes += landed.size;
                    tracing::info!(source = name, file = %file, bytes = landed.size, lake_path = %landed.lake_path, "landed");
                    after_upload(name, source, &connection, &file).await;
                    break;
                }
                Err(Failure::Sftp(e)) if e.retryable() && attempt < source.attempts => {
                    tracing::warn!(source = name, file = %file, attempt, error = %e, "transfer failed; reconnecting in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                    connection.close().await;
                    connection = match connect(name, source).await {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("error: source {name}: {e}; the remaining files wait for the next run");
                            summary.failed += 1;
                            return;
                        }
                    };
                }
                Err(e) => {
                    eprintln!("error: source {name}: {file}: {e}");
                    summary.failed += 1;
                    break;
                }
            }
        }
    }
    connection.close().await;
}

/// Why one file did not land.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Sftp(#[from] SftpError),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// What the streamed copy has seen so far.
struct Progress {
    read: u64,
    hasher: Sha256,
    error: Option<SftpError>,
}

async fn transfer(
    name: &str,
    source: &SftpSource,
    connection: &Connection,
    lake: &Lake,
    file: &str,
) -> Result<Landed, Failure> {
    let remote = format!("{}/{file}", source.remote_dir.trim_end_matches('/'));
    let remote_error = |op: &'static str, e: russh_sftp::client::error::Error| SftpError::Remote {
        op,
        path: remote.clone(),
        detail: e.to_string(),
    };
    let before = connection.sftp.metadata(remote.clone()).await.map_err(|e| remote_error("stat", e))?;
    let size = before.size.unwrap_or(0);
    let date = chrono::DateTime::from_timestamp(i64::from(before.mtime.unwrap_or(0)), 0).unwrap_or_default();
    let lake_path = format!("landing/{name}/date={}/{file}", date.format("%Y-%m-%d"));
    let handle = connection.sftp.open(remote.clone()).await.map_err(|e| remote_error("open", e))?;
    let progress = Arc::new(Mutex::new(Progress { read: 0, hasher: Sha256::new(), error: None }));
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let shared = progress.clone();
    let label = file.to_owned();
    let chunks = futures::stream::unfold((handle, false), move |(mut handle, done)| {
        let progress = shared.clone();
        let label = label.clone();
        async move {
            if done {
                return None;
            }
            let mut buffer = vec![0u8; 256 * 1024];
            match handle.read(&mut buffer).await {
                Ok(0) => {
                    let read = progress.lock().map(|p| p.read).unwrap_or(0);
                    if read != size {
                        let message =
                            format!("size changed during the transfer: the server said {size} bytes, {read} were read");
                        return Some((Err(message), (handle, true)));
                    }
                    None
                }
                Ok(n) => {
                    buffer.truncate(n);
                    if let Ok(mut p) = progress.lock() {
                        p.read += n as u64;
                        p.hasher.update(&buffer);
                        if terminal {
                            let rate = p.read as f64 / started.elapsed().as_secs_f64().max(0.001) / 1e6;
                            eprint!(
                                "\r{label}: {:.1}/{:.1} MB {rate:.1} MB/s   ",
                                p.read as f64 / 1e6,
                                size as f64 / 1e6
                            );
                        }
                    }
                    Some((Ok(Bytes::from(buffer)), (handle, false)))
                }
                Err(e) => {
                    let message = e.to_string();
                    if let Ok(mut p) = progress.lock() {
                        p.error =
                            Some(SftpError::Connection { host: String::new(), detail: format!("reading: {message}") });
                    }
                    Some((Err(message), (handle, true)))
                }
            }
        }
    });
    let uploaded = lake.put_stream(&lake_path, chunks).await;
    if terminal {
        eprintln!();
    }
    let (read, sha256, read_error) = {
        let mut p = progress.lock().map_err(|_| SftpError::Config("progress lock poisoned".into()))?;
        let hasher = std::mem::take(&mut p.hasher);
        (p.read, hex(&hasher.finalize()), p.error.take())
    };
    if let Some(e) = read_error {
        // A broken read is a connection problem: worth a retry on a new connection.
        let _ = uploaded;
        return Err(
            SftpError::Connection { host: format!("{}:{}", source.host, source.port), detail: e.to_string() }.into()
        );
    }
    uploaded?;
    // The file must not have changed while it was read (a writer appending, or replacing it).
    let after = connection.sftp.metadata(remote.clone()).await.map_err(|e| remote_error("stat", e))?;
    if after.size != before.size || after.mtime != before.mtime {
        lake.delete(&lake_path).await?;
        return Err(SftpError::Remote {
            op: "read",
            path: remote,
            detail: "the file changed during the transfer; it is taken again on the next run".into(),
        }
        .into());
    }
    let landed = Landed {
        remote_path: remote,
        size: read,
        mtime: before.mtime,
        sha256,
        lake_path,
        landed_at: chrono::Utc::now().to_rfc3339(),
    };
    let entry = serde_json::to_vec_pretty(&landed).map_err(|e| SftpError::Config(e.to_string()))?;
    lake.put(&format!("{}/{file}.json", manifest_dir(name)), Bytes::from(entry)).await?;
    Ok(landed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn after_upload(name: &str, source: &SftpSource, connection: &Connection, file: &str) {
    let remote = format!("{}/{file}", source.remote_dir.trim_end_matches('/'));
    let result = match &source.after_upload {
        AfterUpload::Keep => return,
        AfterUpload::Delete => connection.sftp.remove_file(remote.clone()).await,
        AfterUpload::MoveTo(dir) => {
            connection.sftp.rename(remote.clone(), format!("{}/{file}", dir.trim_end_matches('/'))).await
        }
    };
    if let Err(e) = result {
        // The file is landed and in the manifest: it will not be transferred again.
        tracing::warn!(source = name, file = %remote, error = %e, "landed, but the remote file could not be removed or moved");
    }
}
