//! The one integration-test binary (every extra test binary costs a link).
//!
//! - `rig`: brokers for tests — an in-process librdkafka `MockCluster` and a real Tansu broker.
//! - `debezium_fixtures`: every real Debezium capture record decodes to the expected change.
//! - `avro_registry`: Avro through the embedded registry, with `schema_registry_converter`.
//! - `registry_api`: the Confluent REST API and every compatibility level.
//! - `golden`: topologies run through the test driver match their expected output, also across
//!   restarts and with RocksDB state reopened from disk.
//! - `chaos`: three `run` instances, one killed every 10 s, one joining, while clicks and
//!   visitor changes flow; the outputs against the oracle.
//! - `cli`: `happystreams decode`, `schemas`, `registry serve` as a user runs them.
//! - `crash`: an instance aborted at every fault point of the runtime, under both guarantees,
//!   restarted; the outputs against the oracle.
//! - `dashboard`: the demo's live dashboard in headless Chromium (Playwright): the page's numbers
//!   equal the query API's, it updates without a reload; a screenshot is kept.
//! - `disk_full`: a state disk that fills up mid-stream: a clear error, no state moved aside, a
//!   restart after freeing space loses nothing.
//! - `deploy`: the Prometheus config and alert rules (promtool), the Grafana dashboards (schema),
//!   docker-compose.yml (Compose's `config`).
//! - `hostile`: 1% hostile records (random bytes, truncated, unknown schema ids, wrong shapes,
//!   10 MiB values, deep nesting, non-UTF-8 keys) through every source format: the good ones out,
//!   the bad ones dead-lettered with their headers, memory bounded.
//! - `http_security`: the registry over TLS with read-only and admin users; metrics over TLS.
//! - `kafka`: reading records back from MockCluster and Tansu; a refused SASL login.
//! - `lake`: the lake on a local directory and on S3 (moto): atomic writes, listing, Parquet.
//! - `outage`: the broker (Tansu on S3 storage) stopped for 30 s and restarted mid-stream: the
//!   instances resume and lose nothing.
//! - `oracle`: incremental results equal a from-scratch recomputation on shuffled input.
//! - `no_panic`: arbitrary bytes into every decoder never panic.
//! - `topology`: topology files validate and describe; bad ones are rejected with file and line.
//! - `runtime`: `happystreams run` instances in a group on Tansu, killed and restarted, against
//!   the oracle; restore from the local checkpoint; dead letters.
//! - `sftp`: `happystreams sftp-sync` against a private OpenSSH server: files land once, host
//!   keys verified, refused opens, a server killed mid-transfer.
//! - `state_contract`: the state store contract on every backend, crash and failure cases.

mod avro_registry;
mod chaos;
mod cli;
mod crash;
mod dashboard;
mod debezium_fixtures;
mod deploy;
mod disk_full;
mod golden;
mod happytimes;
mod hostile;
mod http_security;
mod kafka;
mod lake;
mod no_panic;
mod oracle;
mod outage;
mod registry_api;
mod rig;
mod runtime;
mod sftp;
mod state_contract;
mod topology;
