//! Global tables: every instance reads every partition of a global table's topic into ONE store
//! shared by all its tasks (not one copy per task), under `<state_dir>/<application_id>/global`.
//! The store's checkpoint holds the positions read, so a restart reads only what is new; a fresh
//! instance reads the topics from the start (they are their own changelog).
//!
//! Tasks see the shared store through [`TaskBackend`], read-only; the global table's row cache is
//! shared too (the same `Table` operator), so a global update invalidates it for every task.

use crate::state::{Checkpoint, StateBackend, StateError, WriteSet};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// A backend shared between threads.
#[derive(Clone)]
pub struct SharedBackend(Arc<Mutex<Box<dyn StateBackend>>>);

impl SharedBackend {
    /// Shares `backend`.
    pub fn new(backend: Box<dyn StateBackend>) -> Self {
        SharedBackend(Arc::new(Mutex::new(backend)))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Box<dyn StateBackend>>, StateError> {
        self.0.lock().map_err(|_| StateError::Changelog("global store lock poisoned by a panic".into()))
    }
}

impl StateBackend for SharedBackend {
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.lock()?.get(store, key)
    }
    fn range(&self, store: &str, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        self.lock()?.range(store, from, to)
    }
    fn commit(&mut self, writes: &WriteSet, checkpoint: &Checkpoint) -> Result<(), StateError> {
        self.lock()?.commit(writes, checkpoint)
    }
    fn checkpoint(&self) -> Result<Option<Checkpoint>, StateError> {
        self.lock()?.checkpoint()
    }
    fn stores(&self) -> Vec<String> {
        self.lock().map(|b| b.stores()).unwrap_or_default()
    }
    fn size_bytes(&self, store: &str) -> Option<u64> {
        self.lock().ok()?.size_bytes(store)
    }
    fn reader(&self) -> Option<crate::state::StateReader> {
        self.lock().ok()?.reader()
    }
}

/// A task's own stores plus the instance's global stores (read-only for the task).
pub struct TaskBackend {
    local: Box<dyn StateBackend>,
    global: Option<SharedBackend>,
    global_stores: BTreeSet<String>,
}

impl TaskBackend {
    /// The task's backend over `local`, seeing `global`'s stores.
    pub fn new(local: Box<dyn StateBackend>, global: Option<SharedBackend>) -> Self {
        let global_stores = global.as_ref().map(|g| g.stores().into_iter().collect()).unwrap_or_default();
        TaskBackend { local, global, global_stores }
    }

    fn route(&self, store: &str) -> &dyn StateBackend {
        match &self.global {
            Some(global) if self.global_stores.contains(store) => global,
            _ => self.local.as_ref(),
        }
    }
}

impl StateBackend for TaskBackend {
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.route(store).get(store, key)
    }
    fn range(&self, store: &str, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        self.route(store).range(store, from, to)
    }
    fn commit(&mut self, writes: &WriteSet, checkpoint: &Checkpoint) -> Result<(), StateError> {
        if let Some(store) = writes.keys().find(|s| self.global_stores.contains(*s)) {
            return Err(StateError::UnknownStore(format!("{store} (a global table is written only by its own topic)")));
        }
        self.local.commit(writes, checkpoint)
    }
    fn checkpoint(&self) -> Result<Option<Checkpoint>, StateError> {
        self.local.checkpoint()
    }
    fn stores(&self) -> Vec<String> {
        let mut stores = self.local.stores();
        stores.extend(self.global_stores.iter().cloned());
        stores
    }
    fn size_bytes(&self, store: &str) -> Option<u64> {
        // A global store is the instance's, not the task's: not counted once per task.
        if self.global_stores.contains(store) { None } else { self.local.size_bytes(store) }
    }
    fn reader(&self) -> Option<crate::state::StateReader> {
        // The task's own stores; the global ones are read through the instance's global store.
        self.local.reader()
    }
}
