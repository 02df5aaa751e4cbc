//! What every task and thread of an instance shares: the plan and its layout, the settings, the
//! decoders, the output path and the state budgets.

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
use std::sync::{Arc, Mutex};

/// What every task of the instance shares.
pub struct Shared {
    /// The plan.
    pub plan: Arc<Plan>,
    /// Tasks and topics.
    pub layout: Layout,
    /// Kafka settings (for restore consumers).
    pub kafka: KafkaConfig,
    /// Runtime settings.
    pub runtime: RuntimeConfig,
    /// Input decoders.
    pub decoders: Decoders,
    /// Output writer.
    pub emitter: Emitter,
    /// RocksDB memory budget.
    pub memory: StateMemory,
    /// Global tables' store, if the topology has global tables.
    pub global: Option<SharedBackend>,
    /// Global tables' operators (shared by every task's pipeline).
    pub global_tables: BTreeMap<String, Arc<Table>>,
    /// Topic → sub-topology of non-lead inputs (tables), read by the side consumer.
    pub companions: HashMap<String, usize>,
    /// Sink topics (plan names) whose outputs go through the record cache.
    pub cached_topics: HashSet<String>,
    /// The record caches' memory budget.
    pub cache_budget: CacheBudget,
    /// Deletes consumed repartition records after commits.
    pub purger: Mutex<Purger>,
}

impl Shared {
    /// A task's state directory.
    pub fn task_dir(&self, name: &str) -> PathBuf {
        self.runtime.state_dir.join(&self.layout.application_id).join(name)
    }
}
