//! Kafka: client settings, creating topics, and reading records from topics.
//!
//! Every librdkafka property can be passed through `kafka.properties`, which is how SASL
//! (PLAIN, SCRAM) and TLS are configured, e.g. `security.protocol = "SASL_SSL"`,
//! `sasl.mechanism = "SCRAM-SHA-512"`, `sasl.username`, `sasl.password`, `ssl.ca.location`.
//! The binary is built with librdkafka's `ssl` and `zstd` support.

mod admin;
mod config;
mod reader;

pub use admin::{TopicSpec, create_missing_topics};
pub use config::{
    ClientKind, ClientProperties, ConnectContext, KafkaConfig, Reader, ReaderContext, is_partition_eof, is_secret,
    security_failure,
};
pub use reader::{KafkaReadError, cached_high_watermark, cached_watermarks, read_range, record_from};
