//! The Kafka runtime: runs a topology as a member of a consumer group (`happystreams run`).
//!
//! # Tasks
//!
//! A topology's plan splits into sub-topologies at repartition topics. Each sub-topology runs as
//! one task per partition of its inputs: task `S_P` reads partition `P` of every non-global
//! source of sub-topology `S` (and of the repartition topics it reads), which must therefore
//! have the same number of partitions (checked at start-up). Each task owns its state — one
//! RocksDB instance under `<state_dir>/<application_id>/S_P` — and one changelog partition.
//!
//! Each instance runs `num_threads` stream threads ([`worker`]), each a member of the consumer
//! group (`group.id = application_id`, cooperative-sticky by default), which assigns one
//! *lead* topic per sub-topology; partition `P` of a lead topic is task `S_P`. The task's other
//! inputs (co-partitioned tables) are read by its stream thread's side consumer, so co-partitioned
//! partitions always land together whatever the assignor does. Global tables are read in full by
//! every instance into one shared store ([`global`]).
//!
//! # Processing order
//!
//! A running task buffers its inputs' fetched records and processes them in timestamp order
//! across its partitions, table changes first on ties, waiting up to `max_task_idle_ms` for an
//! input that has records on the broker but none fetched ([`order`]).
//!
//! # Commit protocol (at least once)
//!
//! Every `commit_interval_ms` (and on revocation and shutdown) each task with work:
//! 1. flushes the producer: every output and repartition record of the processed input is
//!    acknowledged by the brokers;
//! 2. appends its pending state writes to its changelog partition, tagged with a fresh batch id,
//!    then a *commit marker* for that batch carrying the task's input positions and stream time,
//!    and waits for them to be acknowledged ([`changelog`]);
//! 3. writes the state, the input positions and the changelog position to RocksDB in ONE atomic
//!    write batch (`crate::state`'s protocol);
//! 4. commits the input offsets to the consumer group (for lag monitoring and stateless tasks:
//!    a stateful task resumes from its state's positions, never from the group's).
//!
//! A crash before 2 completes leaves changelog entries without a marker: restoring skips them
//! (and the next commit rewrites those keys, so a compacted changelog cannot keep them), and the
//! input is processed again from the last marker's positions. A crash between 2 and 3 leaves a
//! marker the local checkpoint lacks: restoring from the local checkpoint replays the changelog
//! from the checkpoint's position up to the end, marker included. Either way the state holds every
//! input record exactly once; outputs may repeat (at least once) with the same keys, so each
//! output topic's compacted view converges (a join's repeated output can carry a newer table
//! row). Under exactly-once the outputs, the changelog batch and the input offsets commit in one
//! Kafka transaction between steps 2 and 3, and a failure aborts it.
//!
//! # Restore
//!
//! On assignment a task opens its local state and replays its changelog partition from the local
//! checkpoint's position (from 0 without local state) to the end — the end found by consuming
//! (`enable.partition.eof`), never by ListOffsets. Then it reads its table partitions to their
//! end (tables bootstrap before the streams that join them), then it processes. Restoring runs
//! on its own thread while the other tasks go on; progress goes to the log and to metrics.

pub mod assignment;
pub mod cache;
pub mod changelog;
pub mod codecs;
pub mod commit;
pub mod deleted;
pub mod emitter;
pub mod fault;
pub mod global;
pub mod group;
pub mod health;
pub mod instance;
pub mod layout;
pub mod open;
pub mod order;
pub mod prefetch;
pub mod process;
pub mod producer;
pub mod purge;
pub mod schema_watch;
pub mod shared;
pub mod task;
pub mod worker;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    /// Outputs at least once, state exactly once (the commit protocol above).
    #[default]
    AtLeastOnce,
    /// Outputs, changelog and input offsets in one Kafka transaction per commit.
    ExactlyOnce,
}

/// What a task does when the next record it needs was deleted from the broker (retention or
/// DeleteRecords) before it read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnDeletedInput {
    /// Stop with an error naming the partition and the deleted offsets.
    #[default]
    Fail,
    /// Go on from the earliest record still there, with a warning and `deleted_input_records_total`.
    Skip,
}

/// `[runtime]` settings of `happystreams run`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Consumer group id and prefix of internal topics; defaults to the topology's name.
    pub application_id: Option<String>,
    /// Where task state lives (one RocksDB per task).
    pub state_dir: PathBuf,
    /// How often tasks commit (ms).
    pub commit_interval_ms: u64,
    /// at_least_once or exactly_once.
    pub processing_guarantee: ProcessingGuarantee,
    /// The instance's HTTP server: `/metrics`, health checks, the query API and the dashboard;
    /// loopback by default. Empty: no server. (`metrics_address`, its old name, still works:
    /// `crate::config` renames it.)
    pub http_address: String,
    /// Serve `/metrics` over HTTPS with this certificate chain (PEM); needs `metrics_tls_key`.
    pub metrics_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `metrics_tls_cert`.
    pub metrics_tls_key: Option<PathBuf>,
    /// A bearer token every request to the instance's HTTP server must carry
    /// (`Authorization: Bearer <token>`), except `/health/live` and `/health/ready`.
    pub http_token: Option<crate::http::Token>,
    /// The URL other instances reach this one's HTTP server at (interactive queries), e.g.
    /// `http://10.0.0.5:9464`; default: the address it binds.
    pub advertised_http_address: Option<String>,
    /// Replication factor of internal topics (changelog, repartition, dead letters).
    pub replication_factor: i32,
    /// RocksDB block cache shared by all tasks (MiB).
    pub state_cache_mb: usize,
    /// How long a task waits for an input that has records on the broker but none fetched
    /// before it processes its other inputs' records anyway (milliseconds).
    pub max_task_idle_ms: u64,
    /// Threads processing tasks at once (default: the number of cores).
    pub num_threads: usize,
    /// Record cache for the outputs of table-shaped nodes, shared by all tasks (MiB; 0: off):
    /// a sink gets the latest value per key per commit ([`cache`]).
    pub record_cache_mb: usize,
    /// A table's first load (and a global table's) commits every this many rows, and a restore
    /// writes to the store every this many keys...
    pub bootstrap_chunk_records: usize,
    /// ...or this many MiB, so a large table or store never sits whole in memory.
    pub bootstrap_chunk_mb: usize,
    /// Tasks restoring at once, each on its own thread with its own consumers; the others wait
    /// their turn (a rebalance of many tasks does not start a thread and a connection per task).
    pub restore_threads: usize,
    /// When records an input partition's task still needs were deleted from the broker: `fail`
    /// (default) or `skip` them.
    pub on_deleted_input: OnDeletedInput,
    /// How often records of repartition topics that every task's next owner is past are deleted
    /// (DeleteRecords; milliseconds; default 30 s as in Kafka Streams; 0: never, and the
    /// repartition topics, created without time retention, grow — see RUNTIME.md).
    pub repartition_purge_interval_ms: u64,
    /// Input volume is counted per window of this many seconds and each window scored against
    /// the trailing `volume_baseline_windows` (`happystreams_input_volume_zscore`; 0: off).
    pub volume_window_secs: u64,
    /// Windows in the volume baseline (default 60: an hour of one-minute windows).
    pub volume_baseline_windows: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            application_id: None,
            state_dir: PathBuf::from("state"),
            commit_interval_ms: 1_000,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            http_address: "127.0.0.1:9464".into(),
            metrics_tls_cert: None,
            metrics_tls_key: None,
            http_token: None,
            advertised_http_address: None,
            replication_factor: 1,
            state_cache_mb: 256,
            max_task_idle_ms: 2_000,
            num_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            record_cache_mb: 16,
            bootstrap_chunk_records: 100_000,
            bootstrap_chunk_mb: 64,
            restore_threads: 4,
            on_deleted_input: OnDeletedInput::Fail,
            repartition_purge_interval_ms: 30_000,
            volume_window_secs: 60,
            volume_baseline_windows: 60,
        }
    }
}

/// Why the runtime stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration or topology cannot run against this cluster.
    #[error("{0}")]
    Config(String),
    /// The Kafka cluster could not be used.
    #[error("{0}")]
    Kafka(String),
    /// State could not be read or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Outputs could not be written.
    #[error("{0}")]
    Output(String),
    /// Records an input partition's task still needed were deleted from the broker.
    #[error(
        "{topic} partition {partition}: records {next}..{earliest} were deleted from the broker (retention or DeleteRecords) before this application read them, so its state and outputs would miss them. To go on without them set runtime.on_deleted_input = skip (HAPPYSTREAMS_RUNTIME__ON_DELETED_INPUT=skip); to recompute everything, reset the application (its state directories and internal topics); to prevent it, keep the input's retention longer than the application can be down or behind (consumer_lag)"
    )]
    InputDeleted {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The next offset the task needs.
        next: i64,
        /// The earliest offset still on the broker.
        earliest: i64,
    },
    /// A bug or a broken invariant inside the runtime (a panicked thread, a poisoned lock).
    #[error("internal error: {0}")]
    Internal(String),
    /// A record failed with `on_error: fail` (or outside any source's policy).
    #[error(
        "{class} error on {topic} partition {partition} offset {offset}: {message}; the record was not processed and nothing after it was committed. Fix the input or set the source's `on_error: skip | dead_letter`"
    )]
    Record {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// Error class.
        class: crate::error::ErrorClass,
        /// What went wrong.
        message: String,
    },
}

impl RuntimeError {
    /// Who has to act.
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            RuntimeError::Config(_) => ErrorClass::Config,
            RuntimeError::Kafka(_) | RuntimeError::Output(_) | RuntimeError::InputDeleted { .. } => {
                ErrorClass::External
            }
            RuntimeError::State(e) => e.class(),
            RuntimeError::Internal(_) => ErrorClass::Internal,
            RuntimeError::Record { class, .. } => *class,
        }
    }
}
