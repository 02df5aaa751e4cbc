//! Codecs: bytes in, typed [`Value`](crate::record::Value)s and
//! [`CdcEvent`](crate::record::CdcEvent)s out, and back.
//!
//! - [`json`]: JSON with or without a Kafka Connect schema envelope.
//! - [`avro`]: Avro in the Confluent wire format (magic byte 0 + 4-byte schema id + body),
//!   schemas fetched from a Schema Registry and cached; [`avro_references`] inlines the types a
//!   registered schema references.
//! - [`access_log`]: web-server access-log lines, categorized into website actions by path rules.
//! - [`debezium`]: Debezium change-event envelopes (from JSON or Avro) into change records.
//! - [`connect`]: the Kafka Connect type model both JSON-with-schema and Avro map onto, and the
//!   semantic types (decimal, dates, times, uuid, json) that make values faithful.
//!
//! Every decoder is a pure function of its input (plus a schema cache for Avro) and returns a
//! classified [`CodecError`] for bad input: never a panic.

pub mod access_log;
pub mod avro;
pub mod avro_references;
pub mod connect;
pub mod debezium;
mod error;
pub mod json;

pub use error::{CodecError, CodecErrorKind};

/// The value formats a topic or file can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Plain JSON (no schema envelope).
    Json,
    /// JSON with a Kafka Connect `{"schema": ..., "payload": ...}` envelope.
    JsonSchema,
    /// Avro in the Confluent wire format.
    Avro,
    /// Raw bytes, printed as UTF-8 text when valid, base64 otherwise.
    Raw,
}
