//! The changelog hook: every committed write is appended to a log first, so a task's state can
//! be rebuilt elsewhere by replaying it. The Kafka runtime writes `<application>-<store>-changelog`
//! topics through this trait; [`MemoryChangelog`] serves tests and the test driver.

use super::StateError;
use super::backend::Checkpoint;
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
pub trait Changelog: Send {
    /// Appends the entries (in order) of one commit whose checkpoint will be `checkpoint`, and
    /// makes them durable; returns the next changelog position(s) after the append (the
    /// checkpoint's new `changelogs`).
    fn append(
        &mut self,
        entries: &[ChangelogEntry],
        checkpoint: &Checkpoint,
    ) -> Result<BTreeMap<String, i64>, StateError>;
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
    fn append(&mut self, entries: &[ChangelogEntry], _: &Checkpoint) -> Result<BTreeMap<String, i64>, StateError> {
        if self.fail_appends {
            return Err(StateError::Changelog("changelog unavailable (simulated)".into()));
        }
        for entry in entries {
            self.logs.entry(entry.store.clone()).or_default().push(entry.clone());
        }
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
