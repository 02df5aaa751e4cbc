//! The data lake: files under one root, in a local directory (the default) or an S3 bucket,
//! through `object_store`. Tables are Hive-style partitioned (`<table>/date=YYYY-MM-DD/hour=HH/`)
//! Parquet files ([`parquet`]); landed partner files go under `landing/<source>/date=…/`.
//!
//! Every write is atomic: a reader sees the whole file or nothing. Locally the file is written
//! under a hidden staging name beside it (`.<name>.staging`) and renamed: Spark, Hive and
//! DuckDB's Hive reader skip names that start with `.` or `_`, so a writer killed mid-file
//! leaves nothing a reader listing the folder could take for data (the next write of the file
//! sweeps it). On S3 a small file is one PUT and a large one a multipart upload that is completed
//! only after its last part (and aborted on any error). Callers choose
//! deterministic names, so a retried write replaces the same file instead of adding another.

pub mod parquet;
pub mod sink;

use crate::error::ErrorClass;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// `[lake]` settings.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Where the lake is: a directory (`lake`, `/data/lake`, `file:///data/lake`) or
    /// `s3://bucket/optional/prefix`.
    pub url: String,
    /// S3 settings (used for `s3://` URLs).
    pub s3: S3Config,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig { url: "lake".into(), s3: S3Config::default() }
    }
}

/// S3 (or S3-compatible) settings. Unset credentials come from the standard `AWS_*`
/// environment variables.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint URL for S3-compatible servers (MinIO, moto, ...); AWS when unset.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (never logged).
    pub secret_access_key: Option<String>,
    /// Session token (never logged).
    pub session_token: Option<String>,
    /// Allow `http://` endpoints (test servers).
    pub allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible servers want;
    /// `false` for virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: false,
            path_style: true,
        }
    }
}

impl std::fmt::Debug for LakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeConfig").field("url", &self.url).field("s3", &self.s3).finish()
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// A lake operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The lake URL or settings are wrong.
    #[error("lake settings: {0}")]
    Config(String),
    /// The store refused or failed an operation.
    #[error("lake {op} `{path}` in {lake}: {detail}")]
    Store {
        /// What was attempted.
        op: &'static str,
        /// Path inside the lake.
        path: String,
        /// The lake.
        lake: String,
        /// The store's message.
        detail: String,
    },
    /// Data could not be converted to or from Parquet.
    #[error("parquet: {0}")]
    Parquet(String),
    /// A record cannot become a row of its lake table.
    #[error("{0}")]
    Data(String),
    /// A path that is not a plain relative path inside the lake.
    #[error("`{path}` is not a path inside the lake: {detail}")]
    Path {
        /// The path asked for.
        path: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The data being uploaded failed to arrive (e.g. a download broke off).
    #[error("source of `{path}` failed: {detail}; nothing was written")]
    Source {
        /// Path inside the lake.
        path: String,
        /// What failed.
        detail: String,
    },
}

impl LakeError {
    /// Who has to act.
    pub fn class(&self) -> ErrorClass {
        match self {
            LakeError::Config(_) => ErrorClass::Config,
            LakeError::Parquet(_) | LakeError::Data(_) | LakeError::Path { .. } => ErrorClass::Data,
            LakeError::Store { .. } | LakeError::Source { .. } => ErrorClass::External,
        }
    }
}

/// An object in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeObject {
    /// Path inside the lake (no leading `/`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// Why a path part cannot name a file or folder in the lake, if it cannot.
pub fn check_part(part: &str) -> Result<(), &'static str> {
    if part == "." || part == ".." {
        return Err("`.` and `..` are not allowed (a path must stay inside the lake)");
    }
    if part.contains(['/', '\\']) {
        return Err("a name must not contain `/` or `\\`");
    }
    if part.chars().any(char::is_control) {
        return Err("a name must not contain control characters");
    }
    Ok(())
}

/// The suffix of a local write's hidden staging name (`.<name>.staging`).
const STAGING_SUFFIX: &str = ".staging";

/// Whether a file name is a local write's staging file (never listed as lake data).
fn is_staging(name: &str) -> bool {
    name.starts_with('.') && name.contains(STAGING_SUFFIX)
}

/// A lake root.
#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: StorePath,
    display: String,
    /// The directory of a local lake (to sweep staging files a killed writer left).
    local_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl Lake {
    /// Opens the lake `config.url` names (a local directory is created if missing).
    pub fn open(config: &LakeConfig) -> Result<Lake, LakeError> {
        let url = config.url.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::Config(format!("`{url}` names no bucket; use s3://BUCKET[/prefix]")));
            }
            let s3 = &config.s3;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(&s3.region)
                .with_allow_http(s3.allow_http)
                .with_virtual_hosted_style_request(!s3.path_style);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            if let Some(token) = &s3.session_token {
                builder = builder.with_token(token);
            }
            let store = builder.build().map_err(|e| LakeError::Config(format!("S3 lake `{url}`: {e}")))?;
            return Ok(Lake {
                store: Arc::new(store),
                root: StorePath::from(prefix),
                display: url.to_owned(),
                local_dir: None,
            });
        }
        if url.starts_with("hdfs://") || url.starts_with("viewfs://") {
            return Self::hdfs(url);
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(LakeError::Config(format!(
                "`{url}`: unsupported lake URL; use a directory, file:///path or s3://bucket/prefix"
            )));
        }
        Self::local(std::path::Path::new(url.strip_prefix("file://").unwrap_or(url)))
    }

    #[cfg(feature = "hdfs")]
    fn hdfs(url: &str) -> Result<Lake, LakeError> {
        let (authority, path) = url
            .split_once("://")
            .and_then(|(scheme, rest)| rest.split_once('/').map(|(host, path)| (format!("{scheme}://{host}"), path)))
            .unwrap_or((url.to_owned(), ""));
        let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
            .with_url(&authority)
            .build()
            .map_err(|e| LakeError::Config(format!("HDFS lake `{url}`: {e}")))?;
        Ok(Lake { store: Arc::new(store), root: StorePath::from(path), display: url.to_owned(), local_dir: None })
    }

    #[cfg(not(feature = "hdfs"))]
    fn hdfs(url: &str) -> Result<Lake, LakeError> {
        Err(LakeError::Config(format!(
            "`{url}`: this build has no HDFS support; build with `--features hdfs`, or use a directory or s3://bucket/prefix"
        )))
    }

    /// A lake in a local directory (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Lake, LakeError> {
        let config = |e: String| LakeError::Config(format!("lake directory {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| config(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| config(e.to_string()))?;
        Ok(Lake {
            store: Arc::new(store),
            root: StorePath::default(),
            display: dir.display().to_string(),
            local_dir: Some(dir.to_owned()),
        })
    }

    /// The store path of `path` (relative to the lake root, `/`-separated). Refuses anything
    /// that could leave the root or name something else than it says: `.` and `..` parts,
    /// backslashes and control characters.
    fn path(&self, path: &str) -> Result<StorePath, LakeError> {
        let refuse = |detail: &'static str| LakeError::Path { path: path.to_owned(), detail };
        let mut full = self.root.clone();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            check_part(part).map_err(refuse)?;
            full = full.join(part);
        }
        Ok(full)
    }

    fn relative(&self, path: &StorePath) -> String {
        let full = path.as_ref();
        let root = self.root.as_ref();
        full.strip_prefix(root).unwrap_or(full).trim_start_matches('/').to_owned()
    }

    fn store_error(&self, op: &'static str, path: &str, e: impl std::fmt::Display) -> LakeError {
        LakeError::Store { op, path: path.to_owned(), lake: self.display.clone(), detail: e.to_string() }
    }

    /// Where a write of `path` is staged: a hidden name beside it in a local lake, the path
    /// itself on S3 (an unfinished upload is never visible there).
    fn staging(&self, path: &str) -> Option<String> {
        self.local_dir.as_ref()?;
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        Some(format!("{parent}/.{name}{STAGING_SUFFIX}"))
    }

    /// Moves a staged file to its name (a rename: atomic, replacing the old file).
    async fn publish(&self, staged: &str, path: &str) -> Result<(), LakeError> {
        self.store.rename(&self.path(staged)?, &self.path(path)?).await.map_err(|e| self.store_error("rename", path, e))
    }

    /// Removes the staging files a writer killed while writing `path` left in a local lake
    /// (`.<name>.staging`, and the store's own `#<n>` files beside it or beside the file, as
    /// earlier versions staged); the write that follows replaces the file itself. Nothing to do
    /// on S3, where an unfinished upload is never visible.
    fn sweep_staging(&self, path: &str) {
        let Some(dir) = &self.local_dir else { return };
        let target = dir.join(path);
        let (Some(parent), Some(name)) = (target.parent(), target.file_name().and_then(|n| n.to_str())) else { return };
        let Ok(entries) = std::fs::read_dir(parent) else { return };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let numbered = |rest: &str| {
                rest.strip_prefix('#').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            };
            let hidden = format!(".{name}{STAGING_SUFFIX}");
            let stale = file.strip_prefix(name).is_some_and(numbered)
                || file.strip_prefix(hidden.as_str()).is_some_and(|rest| rest.is_empty() || numbered(rest));
            if stale {
                tracing::info!(lake = %self.display, file, "removing a staging file left by an interrupted write");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Writes a whole file atomically (replacing it if it exists).
    pub async fn put(&self, path: &str, bytes: Bytes) -> Result<(), LakeError> {
        self.path(path)?;
        self.sweep_staging(path);
        let staged = self.staging(path);
        self.store
            .put(&self.path(staged.as_deref().unwrap_or(path))?, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| self.store_error("write", path, e))?;
        match staged {
            Some(staged) => self.publish(&staged, path).await,
            None => Ok(()),
        }
    }

    /// Writes a file from a stream of chunks, atomically: on S3 a multipart upload completed
    /// only after the last chunk, aborted if the stream or the store fails; locally a staged
    /// file renamed at the end. Returns the bytes written.
    pub async fn put_stream<E: std::fmt::Display>(
        &self,
        path: &str,
        chunks: impl Stream<Item = Result<Bytes, E>>,
    ) -> Result<u64, LakeError> {
        self.path(path)?;
        self.sweep_staging(path);
        let staged = self.staging(path);
        let mut writer = BufWriter::new(self.store.clone(), self.path(staged.as_deref().unwrap_or(path))?);
        let mut chunks = std::pin::pin!(chunks);
        let mut written = 0u64;
        let failure = loop {
            match chunks.next().await {
                None => break None,
                Some(Err(e)) => break Some(LakeError::Source { path: path.to_owned(), detail: e.to_string() }),
                Some(Ok(chunk)) => {
                    written += chunk.len() as u64;
                    if let Err(e) = writer.put(chunk).await {
                        break Some(self.store_error("write", path, e));
                    }
                }
            }
        };
        if let Some(error) = failure {
            if let Err(e) = writer.abort().await {
                tracing::warn!(path, error = %e, "aborting an incomplete upload failed; the store keeps no visible file, but may keep parts until its lifecycle rules remove them");
            }
            return Err(error);
        }
        writer.shutdown().await.map_err(|e| self.store_error("complete", path, e))?;
        if let Some(staged) = staged {
            self.publish(&staged, path).await?;
        }
        Ok(written)
    }

    /// Reads a whole file.
    pub async fn get(&self, path: &str) -> Result<Bytes, LakeError> {
        let read = self.store.get(&self.path(path)?).await.map_err(|e| self.store_error("read", path, e))?;
        read.bytes().await.map_err(|e| self.store_error("read", path, e))
    }

    /// A file's size, or `None` if it does not exist.
    pub async fn size(&self, path: &str) -> Result<Option<u64>, LakeError> {
        match self.store.head(&self.path(path)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_error("stat", path, e)),
        }
    }

    /// Every file under `prefix` (recursively), sorted by path.
    pub async fn list(&self, prefix: &str) -> Result<Vec<LakeObject>, LakeError> {
        let base = self.path(prefix)?;
        let mut objects: Vec<LakeObject> = self
            .store
            .list(Some(&base))
            .try_filter(|meta| std::future::ready(!meta.location.filename().is_some_and(is_staging)))
            .map_ok(|meta| LakeObject { path: self.relative(&meta.location), size: meta.size })
            .try_collect()
            .await
            .map_err(|e| self.store_error("list", prefix, e))?;
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(objects)
    }

    /// Deletes a file (no error if it is already gone).
    pub async fn delete(&self, path: &str) -> Result<(), LakeError> {
        match self.store.delete(&self.path(path)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error("delete", path, e)),
        }
    }
}

/// The Hive-style partition of a table for an event time: `<table>/date=YYYY-MM-DD/hour=HH`
/// (UTC).
pub fn hive_partition(table: &str, event_time_ms: i64) -> String {
    let time = chrono::DateTime::from_timestamp_millis(event_time_ms).unwrap_or_default();
    format!("{table}/date={}/hour={}", time.format("%Y-%m-%d"), time.format("%H"))
}
