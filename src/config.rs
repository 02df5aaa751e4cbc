//! Layered configuration: built-in defaults → config file (TOML) → environment → command-line
//! flags, each layer overriding the one before.
//!
//! Environment variables are `HAPPYSTREAMS_<SECTION>__<KEY>` (double underscore between levels,
//! case-insensitive), e.g. `HAPPYSTREAMS_REGISTRY__URL`. Only names with a `__` are config keys;
//! other `HAPPYSTREAMS_*` variables (`HAPPYSTREAMS_CONFIG`, tool settings) are left alone. Under
//! `kafka.properties` (and `kafka.consumer.properties`, `kafka.producer.properties`) the rest of
//! the name is a librdkafka property with `_` for `.`: `HAPPYSTREAMS_KAFKA__PROPERTIES__SASL_PASSWORD`
//! sets `sasl.password`, `HAPPYSTREAMS_KAFKA__CONSUMER__PROPERTIES__FETCH_WAIT_MAX_MS` the
//! consumers' `fetch.wait.max.ms`. Unknown keys in any layer are errors that name the key and the layer.
//! Secrets (passwords, keys) are redacted from `Debug` output and never logged.

use crate::connectors::kafka::KafkaConfig;
use crate::connectors::registry::RegistryConfig;
use crate::error::ErrorClass;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level or `tracing` filter (`info`, `happystreams=debug`); `RUST_LOG` wins when set.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Human }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Logging.
    pub log: LogConfig,
    /// Schema Registry.
    pub registry: RegistryConfig,
    /// Kafka cluster.
    pub kafka: KafkaConfig,
    /// `happystreams run` settings.
    pub runtime: crate::runtime::RuntimeConfig,
    /// The data lake.
    pub lake: crate::connectors::lake::LakeConfig,
    /// SFTP sources of `sftp-sync`.
    pub sftp: crate::connectors::sftp::SftpConfig,
    /// OpenLineage events of `run`, `lake-sink` and `sftp-sync`.
    pub lineage: crate::observe::lineage::LineageConfig,
}

/// A configuration error: which layer and key, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read or parsed.
    #[error("config file {path}: {detail}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (includes the line for syntax errors).
        detail: String,
    },
    /// An environment variable does not name a known key.
    #[error("environment variable {name}: {detail}")]
    Env {
        /// Variable name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// The merged configuration does not fit the schema.
    #[error("configuration: {0}")]
    Invalid(String),
}

impl ConfigError {
    /// Always [`ErrorClass::Config`].
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
}

const ENV_PREFIX: &str = "HAPPYSTREAMS_";

/// Keys that were renamed (section, old name, new name): their old names keep working.
const RENAMED: &[(&str, &str, &str)] = &[("runtime", "metrics_address", "http_address")];

/// `layer` with every renamed key under its new name.
fn renamed(mut layer: toml::Table) -> toml::Table {
    for (section, old, new) in RENAMED {
        if let Some(toml::Value::Table(keys)) = layer.get_mut(*section)
            && let Some(value) = keys.remove(*old)
        {
            keys.insert((*new).to_owned(), value);
        }
    }
    layer
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => merge(existing, incoming),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn env_layer(vars: impl IntoIterator<Item = (String, String)>) -> Result<toml::Table, ConfigError> {
    let mut layer = toml::Table::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX).filter(|r| r.contains("__")) else { continue };
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if parts.iter().any(String::is_empty) {
            return Err(ConfigError::Env { name, detail: "empty key part; use SECTION__KEY".into() });
        }
        let (path, leaf, value): (Vec<String>, String, toml::Value) = match parts.as_slice() {
            // librdkafka properties are strings.
            [section, props, property] if section == "kafka" && props == "properties" => {
                (vec![section.clone(), props.clone()], property.replace('_', "."), toml::Value::String(value))
            }
            [section, client, props, property]
                if section == "kafka" && (client == "consumer" || client == "producer") && props == "properties" =>
            {
                (
                    vec![section.clone(), client.clone(), props.clone()],
                    property.replace('_', "."),
                    toml::Value::String(value),
                )
            }
            // Secrets stay text, whatever they look like (a numeric token is no integer, and a
            // type error would print it).
            [rest @ .., leaf] if crate::connectors::kafka::is_secret(leaf) => {
                (rest.to_vec(), leaf.clone(), toml::Value::String(value))
            }
            [rest @ .., leaf] => (rest.to_vec(), leaf.clone(), env_value(value)),
            [] => continue,
        };
        let mut table = &mut layer;
        for part in path {
            let entry = table.entry(part).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        name: name.clone(),
                        detail: "conflicts with another variable".into(),
                    });
                }
            };
        }
        table.insert(leaf, value);
    }
    Ok(layer)
}

/// An environment value as a config value: a TOML number, boolean or array when it reads as one
/// (`500`, `true`, `["a"]`), else the text itself (quote a number meant as text: `'123'`).
fn env_value(value: String) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {value}")).ok().and_then(|mut t| t.remove("v")) {
        Some(parsed) if !matches!(parsed, toml::Value::Table(_)) => parsed,
        _ => toml::Value::String(value),
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then `HAPPYSTREAMS_*` variables from `env`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let defaults = toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut merged = defaults;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::File { path: path.to_owned(), detail: e.to_string() })?;
            let table: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::File { path: path.to_owned(), detail: e.to_string() })?;
            let table = renamed(table);
            let _: Config = table
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::File { path: path.to_owned(), detail: e.to_string() })?;
            merge(&mut merged, table);
        }
        let env_vars: Vec<(String, String)> =
            env.into_iter().filter(|(k, _)| k.strip_prefix(ENV_PREFIX).is_some_and(|r| r.contains("__"))).collect();
        for (name, value) in &env_vars {
            let single = renamed(env_layer([(name.clone(), value.clone())])?);
            let mut probe =
                toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            merge(&mut probe, single);
            let _: Config = probe.try_into().map_err(|e: toml::de::Error| ConfigError::Env {
                name: name.clone(),
                detail: e.message().to_owned(),
            })?;
        }
        merge(&mut merged, renamed(env_layer(env_vars)?));
        merged.try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_values_take_the_type_of_their_key() {
        let config = Config::load(
            None,
            vars(&[
                ("HAPPYSTREAMS_RUNTIME__MAX_TASK_IDLE_MS", "0"),
                ("HAPPYSTREAMS_RUNTIME__COMMIT_INTERVAL_MS", "250"),
                ("HAPPYSTREAMS_RUNTIME__APPLICATION_ID", "clicks-app"),
                ("HAPPYSTREAMS_KAFKA__PROPERTIES__LINGER_MS", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(config.runtime.max_task_idle_ms, 0);
        assert_eq!(config.runtime.commit_interval_ms, 250);
        assert_eq!(config.runtime.application_id.as_deref(), Some("clicks-app"));
        assert_eq!(config.kafka.properties.get("linger.ms").map(String::as_str), Some("5"));
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("happystreams.toml");
        std::fs::write(&file, "[registry]\nurl = \"http://file:1\"\n[log]\nlevel = \"debug\"\n").unwrap();
        let config =
            Config::load(Some(&file), vars(&[("HAPPYSTREAMS_REGISTRY__URL", "http://env:2"), ("OTHER", "x")])).unwrap();
        assert_eq!(config.registry.url, "http://env:2");
        assert_eq!(config.log.level, "debug");
        assert_eq!(config.log.format, LogFormat::Human);
    }

    #[test]
    fn variables_without_a_section_separator_are_not_config_keys() {
        let config = Config::load(
            None,
            vars(&[("HAPPYSTREAMS_CONFIG", "/etc/x.toml"), ("HAPPYSTREAMS_TANSU_BIN", "/bin/tansu")]),
        )
        .unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn kafka_property_env_maps_underscores_to_dots() {
        let config = Config::load(None, vars(&[("HAPPYSTREAMS_KAFKA__PROPERTIES__SASL_PASSWORD", "s3cret")])).unwrap();
        assert_eq!(config.kafka.properties.get("sasl.password").map(String::as_str), Some("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"), "secrets must not appear in Debug output");
    }

    #[test]
    fn per_client_kafka_properties_come_from_env_too() {
        let config = Config::load(
            None,
            vars(&[
                ("HAPPYSTREAMS_KAFKA__CONSUMER__PROPERTIES__FETCH_WAIT_MAX_MS", "10"),
                ("HAPPYSTREAMS_KAFKA__PRODUCER__PROPERTIES__SSL_KEY_PASSWORD", "s3cret"),
            ]),
        )
        .unwrap();
        assert_eq!(config.kafka.consumer.properties.get("fetch.wait.max.ms").map(String::as_str), Some("10"));
        assert_eq!(config.kafka.producer.properties.get("ssl.key.password").map(String::as_str), Some("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"), "secrets must not appear in Debug output");
    }

    #[test]
    fn renamed_keys_keep_working_under_their_old_names() {
        let config = Config::load(None, vars(&[("HAPPYSTREAMS_RUNTIME__METRICS_ADDRESS", "127.0.0.1:9999")])).unwrap();
        assert_eq!(config.runtime.http_address, "127.0.0.1:9999");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[runtime]\nmetrics_address = \"0.0.0.0:1\"\n").unwrap();
        assert_eq!(Config::load(Some(&file), vars(&[])).unwrap().runtime.http_address, "0.0.0.0:1");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_layer() {
        let err = Config::load(None, vars(&[("HAPPYSTREAMS_REGISTRY__URLL", "x")])).unwrap_err();
        assert!(matches!(err, ConfigError::Env { ref name, .. } if name == "HAPPYSTREAMS_REGISTRY__URLL"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[registri]\nurl = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), vars(&[])).unwrap_err();
        assert!(err.to_string().contains("registri"), "{err}");
    }
}
