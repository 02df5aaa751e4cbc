//! The backend contract: named ordered byte stores plus a checkpoint, committed atomically.

use super::StateError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Pending writes per store: `None` deletes the key.
pub type WriteSet = BTreeMap<String, BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// What a task has durably processed: committed together with the state it produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Next input offset per `topic:partition`: every record before it is in the state.
    pub inputs: BTreeMap<String, i64>,
    /// Next changelog offset per store: the changelog holds every write up to here.
    pub changelogs: BTreeMap<String, i64>,
    /// The task's stream time (highest event time processed), so windows closed before a
    /// restart stay closed after it.
    #[serde(default)]
    pub stream_time_ms: Option<i64>,
    /// A restore wrote changes no commit marker covered yet: if the task finds this at open,
    /// the store may hold writes of a crashed commit and must be rebuilt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restoring: bool,
}

/// One task's stores. Implementations must make [`StateBackend::commit`] atomic: after a
/// crash, either all of a commit's writes and its checkpoint are visible, or none are.
pub trait StateBackend: Send {
    /// The committed value of a key.
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Committed entries with `from <= key < to` (`to = None`: to the end), in key order.
    fn range(&self, store: &str, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError>;

    /// Applies `writes` and records `checkpoint`, atomically and durably.
    fn commit(&mut self, writes: &WriteSet, checkpoint: &Checkpoint) -> Result<(), StateError>;

    /// The checkpoint of the last commit, if any.
    fn checkpoint(&self) -> Result<Option<Checkpoint>, StateError>;

    /// Names of the stores this backend holds.
    fn stores(&self) -> Vec<String>;

    /// Estimated bytes of `store`'s live data (on disk and in memtables), where the backend
    /// can tell.
    fn size_bytes(&self, _store: &str) -> Option<u64> {
        None
    }

    /// A reader of the committed stores for other threads (interactive queries), where the
    /// backend has one.
    fn reader(&self) -> Option<super::StateReader> {
        None
    }
}

pub(crate) fn in_range(key: &[u8], from: &[u8], to: Option<&[u8]>) -> bool {
    key >= from && to.is_none_or(|t| key < t)
}

impl<B: StateBackend + ?Sized> StateBackend for Box<B> {
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        (**self).get(store, key)
    }
    fn range(&self, store: &str, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        (**self).range(store, from, to)
    }
    fn commit(&mut self, writes: &WriteSet, checkpoint: &Checkpoint) -> Result<(), StateError> {
        (**self).commit(writes, checkpoint)
    }
    fn checkpoint(&self) -> Result<Option<Checkpoint>, StateError> {
        (**self).checkpoint()
    }
    fn stores(&self) -> Vec<String> {
        (**self).stores()
    }
    fn size_bytes(&self, store: &str) -> Option<u64> {
        (**self).size_bytes(store)
    }
    fn reader(&self) -> Option<super::StateReader> {
        (**self).reader()
    }
}
