//! # happystreams
//!
//! A Kafka-Streams-style stateful stream processor: it consumes Debezium CDC topics and event
//! topics, keeps dimension tables in RocksDB-backed state, joins and aggregates, and writes facts
//! to Kafka and a Parquet lake, with Avro schemas in a Confluent-compatible Schema Registry.
//!
//! # Layout
//!
//! - [`record`]: the record model — raw [`record::Record`]s, faithful typed
//!   [`record::Value`]s and [`record::Change`] records. No I/O.
//! - [`codec`]: bytes ↔ values: JSON (with and without Connect schemas), Avro in the Confluent
//!   wire format, Debezium envelopes → change records.
//! - [`topology`]: topologies declared in YAML, validated into a plan (`describe` prints it).
//! - [`expression`]: CEL expressions for filters, projections and keys, compiled once.
//! - [`operators`]: what steps do to records (filter, re-key, select, flat-map, tables, joins),
//!   and the pipeline that wires a plan into them. No Kafka inside.
//! - [`runtime`]: the Kafka runtime — tasks per partition in a consumer group, changelog
//!   restore, the commit protocol, dead letters (`happystreams run`).
//! - [`testkit`]: `TopologyTestDriver` — run a topology with no broker.
//! - [`state`]: what operators remember — store backends (memory, RocksDB with a shared memory
//!   budget), the task write cache committed atomically with input positions, the changelog
//!   hook, versioned stores for event-time lookups.
//! - [`connectors`]: the outside world — Kafka client settings and readers, the Schema Registry
//!   (server and client).
//! - [`commands`]: what the CLI subcommands do (`decode`, `schemas`, `registry`, `demo`); the
//!   binary only parses flags and calls these.
//! - [`config`]: layered configuration (defaults → file → env → flags).
//! - [`observe`]: logging (metrics and health come with the runtime).
//! - [`http`]: what the HTTP servers share: TLS and basic authentication with roles.
//! - [`error`]: the error classes every module's error enum maps to.
//!
//! See `docs/ARCHITECTURE.md` for how the layers fit together and what comes next.

pub mod codec;
pub mod commands;
pub mod config;
pub mod connectors;
pub mod dashboard;
pub mod error;
pub mod expression;
pub mod generate;
pub mod http;
pub mod observe;
pub mod operators;
pub mod query;
pub mod record;
pub mod runtime;
pub mod state;
pub mod testkit;
pub mod topology;
