//! What this instance can answer: its tasks' state readers and phases, its global store, the
//! topology's catalog and the inputs' high watermarks. Process-wide, set at the points where the
//! runtime assigns, restores, runs and closes tasks (the same points as the health checks).

use super::catalog::Catalog;
use crate::runtime::layout::TaskId;
use crate::state::StateReader;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// A task's phase, as queries see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Restoring: `remaining` changelog records, when known (unknown while it reads its tables).
    Restoring {
        /// Changelog records left to restore.
        remaining: Option<u64>,
    },
    /// Processing: its state is complete up to its checkpoint.
    Running,
}

/// One local task.
#[derive(Debug, Clone)]
pub struct LocalTask {
    /// Its committed state (once opened).
    pub reader: Option<StateReader>,
    /// Its phase.
    pub phase: Phase,
}

#[derive(Default)]
struct Local {
    catalog: Option<Arc<Catalog>>,
    /// Keyed by (stream thread, task): a task moving between threads is briefly on both.
    tasks: BTreeMap<(usize, TaskId), LocalTask>,
    global: Option<StateReader>,
    /// The global tables are read to their end.
    global_ready: bool,
    /// High watermark per `topic:partition` (from the consumers' statistics).
    watermarks: HashMap<String, i64>,
}

static LOCAL: RwLock<Option<Local>> = RwLock::new(None);

fn with(change: impl FnOnce(&mut Local)) {
    if let Ok(mut local) = LOCAL.write() {
        change(local.get_or_insert_with(Local::default));
    }
}

/// The running topology's stores (set when the instance starts).
pub fn set_catalog(catalog: Catalog) {
    with(|l| l.catalog = Some(Arc::new(catalog)));
}

/// The catalog, once the instance has started.
pub fn catalog() -> Option<Arc<Catalog>> {
    LOCAL.read().ok()?.as_ref()?.catalog.clone()
}

/// The instance's global store; `ready` once its tables are read to their end.
pub fn set_global(reader: Option<StateReader>, ready: bool) {
    with(|l| {
        l.global = reader;
        l.global_ready = ready;
    });
}

/// The global store, if read to its end.
pub fn global() -> Option<StateReader> {
    let local = LOCAL.read().ok()?;
    let local = local.as_ref()?;
    if local.global_ready { local.global.clone() } else { None }
}

/// A task was assigned to `thread`: restoring, its state not open yet.
pub fn assigned(thread: usize, id: TaskId) {
    with(|l| {
        l.tasks.insert((thread, id), LocalTask { reader: None, phase: Phase::Restoring { remaining: None } });
    });
}

/// A task's state is open (`reader`) and restores.
pub fn opened(thread: usize, id: TaskId, reader: Option<StateReader>) {
    with(|l| {
        l.tasks.insert((thread, id), LocalTask { reader, phase: Phase::Restoring { remaining: None } });
    });
}

/// Restore progress: `remaining` changelog records (`None`: the changelog is done, its tables
/// are being read).
pub fn restoring(thread: usize, id: TaskId, remaining: Option<u64>) {
    with(|l| {
        if let Some(task) = l.tasks.get_mut(&(thread, id)) {
            task.phase = Phase::Restoring { remaining };
        }
    });
}

/// A task runs.
pub fn running(thread: usize, id: TaskId) {
    with(|l| {
        if let Some(task) = l.tasks.get_mut(&(thread, id)) {
            task.phase = Phase::Running;
        }
    });
}

/// A task was revoked, lost or closed.
pub fn gone(thread: usize, id: TaskId) {
    with(|l| {
        l.tasks.remove(&(thread, id));
    });
}

/// The local tasks of sub-topology `subtopology` by partition (a running one first when a task
/// is on two threads).
pub fn tasks(subtopology: usize) -> BTreeMap<i32, LocalTask> {
    let mut out: BTreeMap<i32, LocalTask> = BTreeMap::new();
    let Ok(local) = LOCAL.read() else { return out };
    let Some(local) = local.as_ref() else { return out };
    for ((_, id), task) in local.tasks.iter().filter(|((_, id), _)| id.subtopology == subtopology) {
        let better = out.get(&id.partition).is_none_or(|t| t.phase != Phase::Running);
        if better {
            out.insert(id.partition, task.clone());
        }
    }
    out
}

/// Records the high watermark of `topic` partition `partition`.
pub fn set_watermark(topic: &str, partition: i32, high: i64) {
    with(|l| {
        l.watermarks.insert(format!("{topic}:{partition}"), high);
    });
}

/// Records behind the high watermarks for positions `inputs` (`topic:partition` → next offset);
/// `None` when no watermark of them is known yet.
pub fn lag(inputs: &BTreeMap<String, i64>) -> Option<u64> {
    let local = LOCAL.read().ok()?;
    let local = local.as_ref()?;
    let mut known = false;
    let mut lag = 0u64;
    for (input, next) in inputs {
        if let Some(high) = local.watermarks.get(input) {
            known = true;
            lag += (high - next).max(0) as u64;
        }
    }
    known.then_some(lag)
}
