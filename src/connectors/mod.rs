//! Connectors: how happystreams talks to the world. Each folder owns one system and keeps its
//! config, sources and sinks together.
//!
//! - [`kafka`]: client settings (incl. SASL/TLS) and reading records from topics.
//! - [`registry`]: the Confluent-compatible Schema Registry server and client.
//! - [`sftp`]: partner SFTP servers (host-key checked connections) for `sftp-sync`.
//! - [`lake`]: the data lake (local directory or S3): atomic file writes, Parquet.

pub mod kafka;
pub mod lake;
pub mod registry;
pub mod sftp;
