//! A task's view of its state: a write cache in front of the backend, committed atomically with
//! the task's input positions (see the commit protocol in the module docs of `state`).
//!
//! Reads see the task's own uncommitted writes first, so operators behave as if every write
//! were immediate; the backend sees them only at commit. Like Kafka Streams' record cache, this
//! also collapses repeated writes to one key between commits into one.

use super::StateError;
use super::backend::{Checkpoint, StateBackend, WriteSet, in_range};
use super::changelog::Changelog;
use std::collections::{BTreeMap, BTreeSet};

/// The state of one task.
pub struct TaskState<B: StateBackend> {
    backend: B,
    stores: BTreeSet<String>,
    pending: WriteSet,
    pending_count: usize,
    /// Key and value bytes written since the last commit (a key written twice counts twice).
    written_bytes: usize,
    changelog: Option<Box<dyn Changelog>>,
    checkpoint: Checkpoint,
    /// Undo log of the record being processed: (store, key, what was pending before).
    undo: Option<Vec<(String, Vec<u8>, Option<Option<Vec<u8>>>)>>,
    /// The checkpoint of a commit whose changelog part is done (see [`TaskState::prepare_commit`]).
    prepared: Option<Checkpoint>,
    /// Log a commit whose only news is new input positions (a marker without writes).
    log_positions: bool,
    /// The prepared commit sent writes to the changelog (so it has a marker and new positions).
    logged: bool,
    /// Input positions of the last commit this task logged with a marker: where a new owner that
    /// restores from the changelog resumes (empty until the first such commit).
    logged_inputs: BTreeMap<String, i64>,
}

impl<B: StateBackend> std::fmt::Debug for TaskState<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskState")
            .field("stores", &self.stores)
            .field("pending", &self.pending_count)
            .field("checkpoint", &self.checkpoint)
            .finish()
    }
}

impl<B: StateBackend> TaskState<B> {
    /// Wraps a backend, picking up its last checkpoint.
    pub fn new(backend: B) -> Result<Self, StateError> {
        let checkpoint = backend.checkpoint()?.unwrap_or_default();
        let stores = backend.stores().into_iter().collect();
        Ok(TaskState {
            backend,
            stores,
            pending: WriteSet::new(),
            pending_count: 0,
            written_bytes: 0,
            changelog: None,
            checkpoint,
            undo: None,
            prepared: None,
            log_positions: false,
            logged: false,
            logged_inputs: BTreeMap::new(),
        })
    }

    /// Logs every committed write to `changelog` before it reaches the backend.
    pub fn with_changelog(mut self, changelog: Box<dyn Changelog>) -> Self {
        self.changelog = Some(changelog);
        self
    }

    /// Also logs commits that only moved the input positions, so a restore from the changelog
    /// resumes exactly where the last commit left off (the outputs of those inputs were
    /// acknowledged, or committed with the transaction, and must not be produced again).
    pub fn log_positions(mut self) -> Self {
        self.log_positions = true;
        self
    }

    fn check(&self, store: &str) -> Result<(), StateError> {
        if self.stores.contains(store) { Ok(()) } else { Err(StateError::UnknownStore(store.to_owned())) }
    }

    /// The current value of a key (uncommitted writes included).
    pub fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.check(store)?;
        if let Some(pending) = self.pending.get(store).and_then(|p| p.get(key)) {
            return Ok(pending.clone());
        }
        self.backend.get(store, key)
    }

    /// Sets a key.
    pub fn put(&mut self, store: &str, key: Vec<u8>, value: Vec<u8>) -> Result<(), StateError> {
        self.write(store, key, Some(value))
    }

    /// Deletes a key.
    pub fn delete(&mut self, store: &str, key: Vec<u8>) -> Result<(), StateError> {
        self.write(store, key, None)
    }

    fn write(&mut self, store: &str, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), StateError> {
        self.check(store)?;
        // Deleting a key written since the last commit that the backend never had: forget the
        // write instead of keeping a tombstone, so short-lived keys (merged sessions, expired
        // join buffers, closed windows) do not pile up in range scans until the next commit.
        let short_lived = value.is_none()
            && matches!(self.pending.get(store).and_then(|p| p.get(&key)), Some(Some(_)))
            && self.backend.get(store, &key)?.is_none();
        self.written_bytes += key.len() + value.as_ref().map_or(0, Vec::len);
        let entries = self.pending.entry(store.to_owned()).or_default();
        let previous = if short_lived { entries.remove(&key) } else { entries.insert(key.clone(), value) };
        match (&previous, short_lived) {
            (None, false) => self.pending_count += 1,
            (Some(_), true) => self.pending_count -= 1,
            _ => {}
        }
        if let Some(undo) = &mut self.undo {
            undo.push((store.to_owned(), key, previous));
        }
        Ok(())
    }

    /// Starts processing one input record: its writes can be taken back with
    /// [`TaskState::rollback_record`] if the record fails half-way (so a retried, skipped or
    /// dead-lettered record never stays partly applied).
    pub fn begin_record(&mut self) {
        self.undo = Some(Vec::new());
    }

    /// The record was processed completely; its writes stay.
    pub fn end_record(&mut self) {
        self.undo = None;
    }

    /// Takes back every write since [`TaskState::begin_record`].
    pub fn rollback_record(&mut self) {
        let Some(undo) = self.undo.take() else { return };
        for (store, key, previous) in undo.into_iter().rev() {
            let entries = self.pending.entry(store).or_default();
            match previous {
                Some(value) => {
                    if entries.insert(key, value).is_none() {
                        self.pending_count += 1;
                    }
                }
                None => {
                    if entries.remove(&key).is_some() {
                        self.pending_count -= 1;
                    }
                }
            }
        }
    }

    /// Current entries with `from <= key < to` (uncommitted writes included), in key order.
    pub fn range(&self, store: &str, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        self.check(store)?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self.backend.range(store, from, to)?.into_iter().collect();
        if let Some(pending) = self.pending.get(store) {
            for (key, value) in pending.range(from.to_vec()..).take_while(|(k, _)| in_range(k, from, to)) {
                match value {
                    Some(v) => merged.insert(key.clone(), v.clone()),
                    None => merged.remove(key),
                };
            }
        }
        Ok(merged.into_iter().collect())
    }

    /// Distinct keys written since the last commit.
    pub fn pending_writes(&self) -> usize {
        self.pending_count
    }

    /// Key and value bytes written since the last commit (an upper bound of what the commit
    /// holds: a key written twice counts twice).
    pub fn written_bytes(&self) -> usize {
        self.written_bytes
    }

    /// The checkpoint of the last commit (empty before the first).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Commits: (2) appends pending writes to the changelog and (3) writes them to the backend
    /// together with the checkpoint, whose input positions are `inputs`. On error nothing is
    /// committed and the pending writes stay, so the commit can be retried.
    pub fn commit(&mut self, inputs: BTreeMap<String, i64>) -> Result<&Checkpoint, StateError> {
        let stream_time = self.checkpoint.stream_time_ms;
        self.commit_at(inputs, stream_time)
    }

    /// [`TaskState::commit`], also recording the task's stream time.
    pub fn commit_at(
        &mut self,
        inputs: BTreeMap<String, i64>,
        stream_time_ms: Option<i64>,
    ) -> Result<&Checkpoint, StateError> {
        self.prepare_commit(inputs, stream_time_ms)?;
        self.finish_commit()
    }

    /// First half of a commit: appends the pending writes and their commit marker to the
    /// changelog and waits for them (step 2). Nothing reaches the backend until
    /// [`TaskState::finish_commit`]; in between, the caller may commit a Kafka transaction that
    /// the changelog records belong to. No writes may happen in between.
    pub fn prepare_commit(
        &mut self,
        inputs: BTreeMap<String, i64>,
        stream_time_ms: Option<i64>,
    ) -> Result<(), StateError> {
        self.log_writes(inputs, stream_time_ms)?;
        if let Some(changelog) = &mut self.changelog {
            changelog.flush()?;
        }
        self.log_marker()?;
        if let Some(changelog) = &mut self.changelog {
            changelog.flush()?;
        }
        Ok(())
    }

    /// Step 2, first phase: sends the pending writes to the changelog without waiting (a runtime
    /// with many tasks sends every task's writes, then waits once). Then
    /// [`TaskState::log_marker`] after the changelog's writes are durable. True if anything was
    /// sent (the commit has a marker).
    pub fn log_writes(
        &mut self,
        inputs: BTreeMap<String, i64>,
        stream_time_ms: Option<i64>,
    ) -> Result<bool, StateError> {
        let next =
            Checkpoint { inputs, changelogs: self.checkpoint.changelogs.clone(), stream_time_ms, restoring: false };
        self.logged = false;
        if let Some(changelog) = &mut self.changelog {
            let moved = next.inputs != self.checkpoint.inputs || next.stream_time_ms != self.checkpoint.stream_time_ms;
            if self.pending_count > 0 || (self.log_positions && moved) {
                changelog.send_writes(&self.pending)?;
                self.logged = true;
            }
        }
        self.prepared = Some(next);
        Ok(self.logged)
    }

    /// Step 2, second phase: sends the commit marker of the writes sent by
    /// [`TaskState::log_writes`], once they are durable. The caller waits for the marker before
    /// [`TaskState::finish_commit`].
    pub fn log_marker(&mut self) -> Result<(), StateError> {
        let (Some(changelog), Some(next)) = (&mut self.changelog, &self.prepared) else { return Ok(()) };
        if self.logged {
            changelog.send_marker(next)?;
        }
        Ok(())
    }

    /// Second half of a commit: writes the pending writes and the prepared checkpoint to the
    /// backend in one atomic write (step 3). The changelog's marker must be durable.
    pub fn finish_commit(&mut self) -> Result<&Checkpoint, StateError> {
        let mut next =
            self.prepared.take().ok_or_else(|| StateError::Changelog("finish_commit without prepare_commit".into()))?;
        if self.logged
            && let Some(changelog) = &self.changelog
        {
            next.changelogs.extend(changelog.positions()?);
        }
        self.backend.commit(&self.pending, &next)?;
        if self.logged {
            self.logged_inputs = next.inputs.clone();
        }
        self.pending.clear();
        self.pending_count = 0;
        self.written_bytes = 0;
        self.logged = false;
        self.checkpoint = next;
        Ok(&self.checkpoint)
    }

    /// Input positions every owner of this task resumes from at least: those of its last logged
    /// commit marker (`None` without a changelog: the caller's own commits decide).
    pub fn logged_inputs(&self) -> Option<&BTreeMap<String, i64>> {
        self.changelog.as_ref().map(|_| &self.logged_inputs)
    }

    /// Drops uncommitted writes (what a crash does).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
        self.pending_count = 0;
        self.written_bytes = 0;
        self.undo = None;
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Gives the backend back (closing the task).
    pub fn into_backend(self) -> B {
        self.backend
    }
}
