//! What the tasks of one stream thread share: the plan and its layout, the settings, the
//! decoders, the thread's output path and the state budgets. An instance runs one [`Shared`]
//! per stream thread; everything but the emitter (each thread has its own producer, as in Kafka
//! Streams) is the same for all of them, behind `Arc`s.

use super::RuntimeConfig;
use super::cache::CacheBudget;
use super::codecs::Decoders;
use super::emitter::Emitter;
use super::global::SharedBackend;
use super::layout::Layout;
use super::purge::Purger;
use crate::connectors::kafka::KafkaConfig;
use crate::operators::table::Table;
use crate::state::StateMemory;
use crate::topology::Plan;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

/// What the tasks of one stream thread share (most of it with the instance's other threads).
pub struct Shared {
    /// The stream thread's index (0 for the first), for metrics and logs.
    pub thread: usize,
    /// The plan.
    pub plan: Arc<Plan>,
    /// Tasks and topics.
    pub layout: Arc<Layout>,
    /// Kafka settings (for restore consumers).
    pub kafka: KafkaConfig,
    /// Runtime settings.
    pub runtime: RuntimeConfig,
    /// Input decoders.
    pub decoders: Arc<Decoders>,
    /// The thread's output writer (its own producer).
    pub emitter: Emitter,
    /// RocksDB memory budget.
    pub memory: StateMemory,
    /// Global tables' store, if the topology has global tables.
    pub global: Option<SharedBackend>,
    /// Global tables' operators (shared by every task's pipeline).
    pub global_tables: BTreeMap<String, Arc<Table>>,
    /// Topic → sub-topology of non-lead inputs (tables), read by the side consumer.
    pub companions: Arc<HashMap<String, usize>>,
    /// Sink topics (plan names) whose outputs go through the record cache.
    pub cached_topics: Arc<HashSet<String>>,
    /// The record caches' memory budget.
    pub cache_budget: Arc<CacheBudget>,
    /// Deletes consumed repartition records after commits.
    pub purger: Arc<Mutex<Purger>>,
    /// Restores running in the whole instance (at most `runtime.restore_threads`).
    pub restoring: Arc<AtomicUsize>,
}

impl Shared {
    /// A task's state directory.
    pub fn task_dir(&self, name: &str) -> PathBuf {
        self.runtime.state_dir.join(&self.layout.application_id).join(name)
    }
}
