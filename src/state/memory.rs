//! In-memory backend: `BTreeMap`s. Commits are atomic (one `&mut` swap) but nothing survives
//! the process; use it for tests and for jobs whose state the changelog can rebuild cheaply.

use super::StateError;
use super::backend::{Checkpoint, StateBackend, WriteSet, in_range};
use std::collections::BTreeMap;

/// Stores as ordered maps.
#[derive(Debug, Default, Clone)]
pub struct MemoryBackend {
    stores: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    checkpoint: Option<Checkpoint>,
}

impl MemoryBackend {
    /// A backend holding the named stores, all empty.
    pub fn new<S: AsRef<str>>(stores: &[S]) -> Self {
        MemoryBackend {
            stores: stores.iter().map(|s| (s.as_ref().to_owned(), BTreeMap::new())).collect(),
            checkpoint: None,
        }
    }

    fn store(&self, store: &str) -> Result<&BTreeMap<Vec<u8>, Vec<u8>>, StateError> {
        self.stores.get(store).ok_or_else(|| StateError::UnknownStore(store.to_owned()))
    }
}

impl StateBackend for MemoryBackend {
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.store(store)?.get(key).cloned())
    }

    fn range(&self, store: &str, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        let map = self.store(store)?;
        Ok(map
            .range(from.to_vec()..)
            .take_while(|(k, _)| in_range(k, from, to))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&mut self, writes: &WriteSet, checkpoint: &Checkpoint) -> Result<(), StateError> {
        if let Some(unknown) = writes.keys().find(|s| !self.stores.contains_key(*s)) {
            return Err(StateError::UnknownStore(unknown.clone()));
        }
        for (store, entries) in writes {
            let map = self.stores.get_mut(store).ok_or_else(|| StateError::UnknownStore(store.clone()))?;
            for (key, value) in entries {
                match value {
                    Some(v) => map.insert(key.clone(), v.clone()),
                    None => map.remove(key),
                };
            }
        }
        self.checkpoint = Some(checkpoint.clone());
        Ok(())
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, StateError> {
        Ok(self.checkpoint.clone())
    }

    fn stores(&self) -> Vec<String> {
        self.stores.keys().cloned().collect()
    }
}
