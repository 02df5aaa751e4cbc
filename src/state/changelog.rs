//! The changelog hook: every committed write is appended to a log first, so a task's state can
//! be rebuilt elsewhere by replaying it. The Kafka runtime writes `<application>-<store>-changelog`
//! topics through this trait; [`MemoryChangelog`] serves tests and the test driver.

use super::StateError;
use super::backend::{Checkpoint, WriteSet};
use std::collections::BTreeMap;

/// One changelog record: a write to one key of one store (`None` = delete, a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogEntry {
    /// Store name.
    pub store: String,
    /// Key bytes.
    pub key: Vec<u8>,
    /// New value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// Where committed writes are logged before they reach the local store.
///
/// A commit logs in two phases so that a runtime with many tasks can wait once for all of them:
/// every task sends its writes ([`Changelog::send_writes`]), one wait makes them durable
/// ([`Changelog::flush`]), every task sends its commit marker ([`Changelog::send_marker`]), one
/// more wait. A marker is never sent before every write of its batch is durable.
pub trait Changelog: Send {
    /// Sends the writes of one commit (in key order per store); they need not be durable yet.
    fn send_writes(&mut self, writes: &WriteSet) -> Result<(), StateError>;

    /// Sends the marker that commits the writes sent last, with the commit's checkpoint. Called
    /// only after a [`Changelog::flush`] since those writes.
    fn send_marker(&mut self, checkpoint: &Checkpoint) -> Result<(), StateError>;

    /// Waits until everything sent is durable.
    fn flush(&mut self) -> Result<(), StateError>;

    /// The next changelog position(s) after everything flushed (the checkpoint's new
    /// `changelogs`).
    fn positions(&self) -> Result<BTreeMap<String, i64>, StateError>;

    /// One whole commit: writes, wait, marker, wait; returns the new positions.
    fn append(&mut self, writes: &WriteSet, checkpoint: &Checkpoint) -> Result<BTreeMap<String, i64>, StateError> {
        self.send_writes(writes)?;
        self.flush()?;
        self.send_marker(checkpoint)?;
        self.flush()?;
        self.positions()
    }
}

/// A changelog kept in memory, with a switch to simulate an unavailable log.
#[derive(Debug, Default, Clone)]
pub struct MemoryChangelog {
    /// Every entry appended, per store, in order.
    pub logs: BTreeMap<String, Vec<ChangelogEntry>>,
    /// When set, appends fail (to test that a failed changelog write commits nothing).
    pub fail_appends: bool,
}

impl Changelog for MemoryChangelog {
    fn send_writes(&mut self, writes: &WriteSet) -> Result<(), StateError> {
        if self.fail_appends {
            return Err(StateError::Changelog("changelog unavailable (simulated)".into()));
        }
        for (store, entries) in writes {
            let log = self.logs.entry(store.clone()).or_default();
            log.extend(entries.iter().map(|(key, value)| ChangelogEntry {
                store: store.clone(),
                key: key.clone(),
                value: value.clone(),
            }));
        }
        Ok(())
    }

    fn send_marker(&mut self, _: &Checkpoint) -> Result<(), StateError> {
        if self.fail_appends {
            return Err(StateError::Changelog("changelog unavailable (simulated)".into()));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StateError> {
        Ok(())
    }

    fn positions(&self) -> Result<BTreeMap<String, i64>, StateError> {
        Ok(self.logs.iter().map(|(store, log)| (store.clone(), log.len() as i64)).collect())
    }
}

impl MemoryChangelog {
    /// The latest value per key of a store: what a restore from this log produces.
    pub fn compacted(&self, store: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut out = BTreeMap::new();
        for entry in self.logs.get(store).map(Vec::as_slice).unwrap_or_default() {
            match &entry.value {
                Some(v) => out.insert(entry.key.clone(), v.clone()),
                None => out.remove(&entry.key),
            };
        }
        out
    }
}
