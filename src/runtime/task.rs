//! One task: the pipeline of one sub-topology over one partition, with its state, its input
//! positions and its stream time. The worker feeds it decoded records; it commits on request.

use super::cache::RecordCache;
use super::codecs::Input;
use super::emitter::Deferred;
use super::layout::TaskId;
use super::order::InputQueues;
use crate::operators::OperatorError;
use crate::operators::pipeline::{Output, Pipeline};
use crate::state::{StateBackend, StateError, TaskState};
use std::collections::BTreeMap;

/// The checkpoint key of an input partition.
pub fn position_key(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}")
}

/// Whether `key` is [`position_key`]`(topic, partition)`, without building it.
fn is_position_key(key: &str, topic: &str, partition: i32) -> bool {
    key.len() > topic.len()
        && key.starts_with(topic)
        && key.as_bytes()[topic.len()] == b':'
        && key[topic.len() + 1..].parse::<i32>() == Ok(partition)
}

/// A task.
pub struct Task {
    /// Which task.
    pub id: TaskId,
    pipeline: Pipeline,
    state: TaskState<Box<dyn StateBackend>>,
    positions: BTreeMap<String, i64>,
    stream_time: i64,
    /// Records processed since the last commit.
    uncommitted: u64,
    /// While restoring: outputs and dead letters held back until the task runs.
    deferred: Option<Vec<Deferred>>,
    /// Fetched input records, processed in event-time order ([`super::order`]).
    pub queue: InputQueues,
    /// Outputs of table-shaped nodes, latest per key until the next commit ([`super::cache`]).
    pub cache: RecordCache,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("id", &self.id).field("positions", &self.positions).finish()
    }
}

impl Task {
    /// A task over `state`, resuming from its checkpoint.
    pub fn new(id: TaskId, pipeline: Pipeline, state: TaskState<Box<dyn StateBackend>>) -> Self {
        let positions = state.checkpoint().inputs.clone();
        let stream_time = state.checkpoint().stream_time_ms.unwrap_or(i64::MIN);
        Task {
            id,
            pipeline,
            state,
            positions,
            stream_time,
            uncommitted: 0,
            deferred: None,
            queue: InputQueues::default(),
            cache: RecordCache::default(),
        }
    }

    /// How far the records of an input partition may be deleted: every record before the
    /// returned offset is in this task's state as logged in its changelog (so any next owner
    /// resumes past it) or, for a task without state under exactly-once, in committed offsets.
    /// `None`: nothing can be said (a stateless task under at-least-once, whose group offsets
    /// are committed without waiting).
    pub fn durable_position(&self, topic: &str, partition: i32, exactly_once: bool) -> Option<i64> {
        match self.state.logged_inputs() {
            Some(logged) => {
                logged.iter().find(|(key, _)| is_position_key(key, topic, partition)).map(|(_, next)| *next)
            }
            None if exactly_once => self.position(topic, partition),
            None => None,
        }
    }

    /// The next offset to read from an input partition, if the state has one.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.iter().find(|(key, _)| is_position_key(key, topic, partition)).map(|(_, next)| *next)
    }

    /// Records that every record of the partition before `next` is done (processed, skipped or
    /// dead-lettered). A task has a handful of inputs: finding the entry costs less than
    /// building its key for every record.
    pub fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        match self.positions.iter_mut().find(|(key, _)| is_position_key(key, topic, partition)) {
            Some((_, position)) => *position = next,
            None => {
                self.positions.insert(position_key(topic, partition), next);
            }
        }
        self.uncommitted += 1;
    }

    /// Processes one record all or nothing: if it fails half-way its state writes are taken back
    /// and its outputs dropped from `out`.
    pub fn process(&mut self, input: Input, out: &mut Vec<Output>) -> Result<(), OperatorError> {
        let stream_time = self.stream_time;
        let before = out.len();
        self.state.begin_record();
        let pipeline = &self.pipeline;
        let state = &mut self.state;
        let result = match input {
            Input::Event { source, event } => {
                let now = stream_time.max(event.timestamp);
                pipeline
                    .on_event(state, &source, event, stream_time, out)
                    .and_then(|()| pipeline.on_stream_time(state, now, out))
                    .map(|()| now)
            }
            Input::Repartitioned { topic, event } => {
                let now = stream_time.max(event.timestamp);
                pipeline
                    .on_repartitioned(state, &topic, event, stream_time, out)
                    .and_then(|()| pipeline.on_stream_time(state, now, out))
                    .map(|()| now)
            }
            // Table changes do not move stream time.
            Input::Table { source, update: Some(update) } => {
                pipeline.on_table_update(state, &source, update, stream_time, out).map(|()| stream_time)
            }
            Input::Table { update: None, .. } => Ok(stream_time),
        };
        match result {
            Ok(now) => {
                self.state.end_record();
                self.stream_time = now;
                Ok(())
            }
            Err(e) => {
                self.state.rollback_record();
                self.pipeline.clear_caches();
                out.truncate(before);
                Err(e)
            }
        }
    }

    /// Distinct state keys and bytes written since the last commit.
    pub fn pending(&self) -> (usize, usize) {
        (self.state.pending_writes(), self.state.written_bytes())
    }

    /// Whether anything happened since the last commit.
    pub fn needs_commit(&self) -> bool {
        self.uncommitted > 0 || self.state.pending_writes() > 0
    }

    /// Commits state and positions (steps 2-3 of the commit protocol; the caller flushed the
    /// producer first and commits group offsets after).
    pub fn commit(&mut self) -> Result<(), StateError> {
        let stream_time = (self.stream_time != i64::MIN).then_some(self.stream_time);
        self.state.prepare_commit(self.positions.clone(), stream_time)?;
        self.finish_commit()
    }

    /// Step 2, first phase: sends the changelog writes (the caller waits once for every task's).
    /// True if the commit logs anything.
    pub fn log_writes(&mut self) -> Result<bool, StateError> {
        let stream_time = (self.stream_time != i64::MIN).then_some(self.stream_time);
        self.state.log_writes(self.positions.clone(), stream_time)
    }

    /// Step 2, second phase: sends the commit marker, once the writes are durable.
    pub fn log_marker(&mut self) -> Result<(), StateError> {
        self.state.log_marker()
    }

    /// Step 3 alone: state and checkpoint to the local store (after the transaction committed).
    pub fn finish_commit(&mut self) -> Result<(), StateError> {
        self.state.finish_commit()?;
        metrics::counter!("happystreams_task_records_processed_total", "task" => self.id.to_string())
            .increment(self.uncommitted);
        self.uncommitted = 0;
        Ok(())
    }

    /// Sets `happystreams_state_store_bytes{task,store}` to each own store's estimated size, or
    /// to 0 when the task closes here (so a sum over instances counts a moved task once).
    pub fn report_store_sizes(&self, closing: bool) {
        let backend = self.state.backend();
        for store in backend.stores() {
            let Some(bytes) = backend.size_bytes(&store) else { continue };
            let bytes = if closing { 0 } else { bytes };
            metrics::gauge!("happystreams_state_store_bytes", "task" => self.id.to_string(), "store" => store)
                .set(bytes as f64);
        }
    }

    /// Keys a crashed commit logged without its marker: logs their current values again in the
    /// next commit, so a compacted changelog keeps the right value.
    pub fn rewrite(&mut self, keys: &[(String, Vec<u8>)]) -> Result<(), StateError> {
        let stores = self.state.backend().stores();
        for (store, key) in keys.iter().filter(|(s, _)| stores.contains(s)) {
            match self.state.get(store, key)? {
                Some(value) => self.state.put(store, key.clone(), value)?,
                None => self.state.delete(store, key.clone())?,
            }
        }
        Ok(())
    }

    /// Holds back outputs and dead letters (restoring) until [`Task::take_deferred`].
    pub fn defer(&mut self) {
        self.deferred.get_or_insert_with(Vec::new);
    }

    /// Where writes go while deferring (`None`: send them now).
    pub fn deferred(&mut self) -> Option<&mut Vec<Deferred>> {
        self.deferred.as_mut()
    }

    /// Stops deferring; returns what was held back.
    pub fn take_deferred(&mut self) -> Vec<Deferred> {
        self.deferred.take().unwrap_or_default()
    }

    /// The task's pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Every input position.
    pub fn positions(&self) -> &BTreeMap<String, i64> {
        &self.positions
    }
}
