//! Talking to any Confluent-compatible registry: register and check the project's `.avsc`
//! files, and build the settings the Avro codec uses.
//!
//! Subject naming (Confluent's TopicNameStrategy): a schema for the values of topic `T` lives in
//! subject `T-value`, for its keys in `T-key`. A file `schemas/<subject>.avsc` is registered under
//! `<subject>`, so `schemas/happytimes.clicks-value.avsc` → subject `happytimes.clicks-value`.

use super::RegistryConfig;
use crate::error::ErrorClass;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use std::path::{Path, PathBuf};

/// What can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryClientError {
    /// A schema file cannot be used.
    #[error("{path}: {detail}; fix the file (it must be one Avro schema in JSON)")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The registry answered with an error.
    #[error("registry {url} rejected subject `{subject}`: {message}")]
    Rejected {
        /// Registry URL.
        url: String,
        /// Subject.
        subject: String,
        /// The registry's message (with its error code).
        message: String,
    },
    /// The registry could not be reached.
    #[error(
        "registry {url} is unreachable: {detail}; check --registry / HAPPYSTREAMS_REGISTRY__URL and that the registry is up"
    )]
    Unreachable {
        /// Registry URL.
        url: String,
        /// Client message.
        detail: String,
    },
}

impl RegistryClientError {
    /// Who has to act.
    pub fn class(&self) -> ErrorClass {
        match self {
            RegistryClientError::InvalidFile { .. } | RegistryClientError::Rejected { .. } => ErrorClass::Config,
            RegistryClientError::Unreachable { .. } => ErrorClass::External,
        }
    }
}

/// Settings for `schema_registry_converter` from our config (basic auth when set).
pub fn sr_settings(config: &RegistryConfig) -> Result<SrSettings, RegistryClientError> {
    let mut builder = SrSettings::new_builder(config.url.clone());
    if let Some(user) = &config.username {
        builder.set_basic_authorization(user, config.password.as_deref());
    }
    builder.set_timeout(std::time::Duration::from_secs(10));
    let unreachable = |detail: String| RegistryClientError::Unreachable { url: config.url.clone(), detail };
    let mut client = reqwest::Client::builder();
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| unreachable(format!("cannot read registry.ca_file {}: {e}", path.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| e.to_string())
            .and_then(|c| if c.is_empty() { Err("none found".to_owned()) } else { Ok(c) })
            .map_err(|e| unreachable(format!("registry.ca_file {} holds no PEM certificate: {e}", path.display())))?;
        for certificate in certificates {
            client = client.add_root_certificate(certificate);
        }
    }
    builder.build_with(client).map_err(|e| unreachable(e.to_string()))
}

/// A schema file and the subject it belongs to.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    /// Path of the `.avsc` file.
    pub path: PathBuf,
    /// Subject (the file stem).
    pub subject: String,
    /// Schema text.
    pub schema: String,
}

/// Reads every `*.avsc` in a directory (sorted by name), validating each as Avro.
pub fn schema_files(dir: &Path) -> Result<Vec<SchemaFile>, RegistryClientError> {
    let invalid = |path: &Path, detail: String| RegistryClientError::InvalidFile { path: path.to_owned(), detail };
    let entries = std::fs::read_dir(dir).map_err(|e| invalid(dir, format!("cannot list the directory: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let schema = std::fs::read_to_string(&path).map_err(|e| invalid(&path, e.to_string()))?;
            apache_avro::Schema::parse_str(&schema).map_err(|e| invalid(&path, format!("not a valid Avro schema: {e}")))?;
            let subject = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            if !(subject.ends_with("-value") || subject.ends_with("-key")) {
                return Err(invalid(&path, format!("file name must be `<topic>-value.avsc` or `<topic>-key.avsc` (TopicNameStrategy), got `{subject}`")));
            }
            Ok(SchemaFile { path, subject, schema })
        })
        .collect()
}

/// Registers a schema; returns its id.
pub async fn register(config: &RegistryConfig, file: &SchemaFile) -> Result<u32, RegistryClientError> {
    let settings = sr_settings(config)?;
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, file.schema.clone());
    match post_schema(&settings, file.subject.clone(), supplied).await {
        Ok(registered) => Ok(registered.id),
        Err(e) => {
            let message = match &e.cause {
                Some(cause) => format!("{}: {cause}", e.error),
                None => e.error.clone(),
            };
            if e.retriable || message.contains("error sending request") {
                Err(RegistryClientError::Unreachable { url: config.url.clone(), detail: message })
            } else {
                Err(RegistryClientError::Rejected { url: config.url.clone(), subject: file.subject.clone(), message })
            }
        }
    }
}

/// The outcome of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The subject does not exist yet: anything can be registered.
    NewSubject,
    /// Compatible with the subject's versions under its compatibility level.
    Compatible,
    /// Incompatible, with the registry's reasons.
    Incompatible(Vec<String>),
}

/// Checks a schema against its subject under the subject's compatibility level: against every
/// version the level requires (`POST /compatibility/subjects/{subject}/versions`), falling back
/// to the latest version on registries that lack that endpoint.
pub async fn check(config: &RegistryConfig, file: &SchemaFile) -> Result<CheckOutcome, RegistryClientError> {
    match check_against(config, file, &["versions"]).await? {
        Some(outcome) => Ok(outcome),
        None => {
            check_against(config, file, &["versions", "latest"]).await?.ok_or_else(|| RegistryClientError::Rejected {
                url: config.url.clone(),
                subject: file.subject.clone(),
                message: "the registry has no compatibility endpoint".into(),
            })
        }
    }
}

/// One compatibility request; `Ok(None)` when the registry does not know the endpoint.
async fn check_against(
    config: &RegistryConfig,
    file: &SchemaFile,
    path: &[&str],
) -> Result<Option<CheckOutcome>, RegistryClientError> {
    let unreachable = |detail: String| RegistryClientError::Unreachable { url: config.url.clone(), detail };
    let mut url = reqwest::Url::parse(&config.url).map_err(|e| unreachable(format!("invalid URL: {e}")))?;
    url.path_segments_mut()
        .map_err(|_| unreachable("URL cannot be a base".into()))?
        .pop_if_empty()
        .extend(["compatibility", "subjects", &file.subject])
        .extend(path);
    url.set_query(Some("verbose=true"));
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": file.schema }));
    if let Some(user) = &config.username {
        request = request.basic_auth(user, config.password.as_deref());
    }
    let response = request.send().await.map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body.get("error_code").and_then(serde_json::Value::as_u64);
    if status.as_u16() == 404 && matches!(code, Some(40401) | Some(40402)) {
        return Ok(Some(CheckOutcome::NewSubject));
    }
    if status.as_u16() == 404 || status.as_u16() == 405 {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(RegistryClientError::Rejected {
            url: config.url.clone(),
            subject: file.subject.clone(),
            message: format!("HTTP {status}: {body}"),
        });
    }
    match body.get("is_compatible").and_then(serde_json::Value::as_bool) {
        Some(true) => Ok(Some(CheckOutcome::Compatible)),
        Some(false) => Ok(Some(CheckOutcome::Incompatible(
            body.get("messages")
                .and_then(serde_json::Value::as_array)
                .map(|m| m.iter().map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).collect())
                .unwrap_or_default(),
        ))),
        None => Err(RegistryClientError::Rejected {
            url: config.url.clone(),
            subject: file.subject.clone(),
            message: format!("unexpected answer {body}"),
        }),
    }
}
