//! `TopologyTestDriver`: run a topology with no broker — pipe records into its sources, read
//! what its sinks wrote, commit and restart it as a crash-free restart would, all in one thread
//! and deterministically.
//!
//! ```no_run
//! use happystreams::testkit::TopologyTestDriver;
//! use serde_json::json;
//!
//! let mut driver = TopologyTestDriver::load("topologies/enriched_clicks.yaml".as_ref()).unwrap();
//! driver.pipe_json(&json!({"source": "visitors", "key": {"visitor_id": 1},
//!     "value": {"op": "r", "after": {"visitor_id": 1, "source": "email"}, "source": {"ts_ms": 1000}}})).unwrap();
//! driver.restart().unwrap();
//! for record in driver.read_output("happytimes.facts.enriched_clicks") {
//!     println!("{:?}", record);
//! }
//! ```
//!
//! Input lines (see [`TopologyTestDriver::pipe_json`]): `{"source", "key", "value",
//! "timestamp"}`. For a stream source the value is the record as JSON, typed by the source's
//! `schema` when it has one; for a Debezium table source it is the change event (plain JSON
//! envelope), and a null value is a tombstone; for any other table source it is the new row
//! (upsert) and a null value deletes the key. An access-log source's value is the line.
//!
//! Outputs to Avro sinks are encoded with the sink's schema, as the runtime encodes them: an
//! output that does not fit fails its record (`DriverError::Output`), which is taken back.

use crate::codec::debezium::DebeziumDecoder;
use crate::codec::json;
use crate::operators::pipeline::{Output, Pipeline};
use crate::operators::{OperatorError, TableUpdate};
use crate::record::{CdcEvent, Position, Record, Row, Value};
use crate::state::{MemoryBackend, StateBackend, TaskState};
use crate::topology::{self, Plan, TopologyError};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

/// Why the driver could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The topology is invalid.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// Processing failed.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A piped input is malformed.
    #[error("bad test input: {0}")]
    Input(String),
    /// An output does not fit its Avro sink's schema.
    #[error(
        "output to `{topic}` does not fit its Avro schema: {message}; make the sink's schema fit what its node gives"
    )]
    Output {
        /// Sink topic.
        topic: String,
        /// What does not fit.
        message: String,
    },
}

/// Runs one topology in memory.
pub struct TopologyTestDriver {
    plan: Arc<Plan>,
    pipeline: Pipeline,
    state: Option<TaskState<Box<dyn StateBackend>>>,
    outputs: BTreeMap<String, VecDeque<Output>>,
    positions: BTreeMap<String, i64>,
    stream_time: i64,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver")
            .field("topology", &self.plan.name)
            .field("positions", &self.positions)
            .finish()
    }
}

impl TopologyTestDriver {
    /// A driver over an in-memory state backend.
    pub fn new(plan: Plan) -> Result<Self, DriverError> {
        let plan = Arc::new(plan);
        let pipeline = Pipeline::new(plan.clone())?;
        let backend: Box<dyn StateBackend> = Box::new(MemoryBackend::new(&pipeline.stores()));
        Self::with_backend(plan, pipeline, backend)
    }

    /// A driver over any backend (e.g. RocksDB in a temporary directory).
    pub fn with_state(plan: Plan, backend: Box<dyn StateBackend>) -> Result<Self, DriverError> {
        let plan = Arc::new(plan);
        let pipeline = Pipeline::new(plan.clone())?;
        Self::with_backend(plan, pipeline, backend)
    }

    fn with_backend(plan: Arc<Plan>, pipeline: Pipeline, backend: Box<dyn StateBackend>) -> Result<Self, DriverError> {
        let state = TaskState::new(backend).map_err(OperatorError::from)?;
        let positions = state.checkpoint().inputs.clone();
        let stream_time = state.checkpoint().stream_time_ms.unwrap_or(i64::MIN);
        Ok(TopologyTestDriver { plan, pipeline, state: Some(state), outputs: BTreeMap::new(), positions, stream_time })
    }

    /// Loads a topology file and builds a driver for it.
    pub fn load(path: &Path) -> Result<Self, DriverError> {
        Self::new(topology::load(path)?)
    }

    /// The plan under test.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn state(&mut self) -> Result<&mut TaskState<Box<dyn StateBackend>>, DriverError> {
        // Only `restart` takes the state out, and it always puts one back before returning Ok.
        self.state.as_mut().ok_or_else(|| {
            DriverError::Input("the driver's state was lost in a failed restart; build a new driver".into())
        })
    }

    fn advance(&mut self, source: &str, timestamp: i64) {
        *self.positions.entry(source.to_owned()).or_insert(0) += 1;
        self.stream_time = self.stream_time.max(timestamp);
    }

    /// Pipes one record into a source: an event for a stream source, an upsert for a table
    /// source.
    pub fn pipe(&mut self, source: &str, key: Value, value: Row, timestamp: i64) -> Result<(), DriverError> {
        if self.plan.source(source).is_some_and(|s| s.kind.is_table()) {
            return self.apply_table_update(source, Some(TableUpdate::Upsert { key, row: value, timestamp }));
        }
        let event = self.pipeline.event_for(source, key, value, timestamp)?;
        let event_time = event.timestamp;
        let stream_time = self.stream_time;
        let new_stream_time = stream_time.max(event_time);
        // The event and the windows it closes are one unit: a failure takes back both.
        let out = self.atomically(|pipeline, state, out| {
            pipeline.on_event(state, source, event, stream_time, out)?;
            pipeline.on_stream_time(state, new_stream_time, out)
        })?;
        self.collect(out);
        self.advance(source, event_time);
        Ok(())
    }

    /// Runs one record's processing all or nothing: if it fails half-way, what it wrote is
    /// taken back (and cached table rows forgotten).
    fn atomically(
        &mut self,
        process: impl FnOnce(
            &Pipeline,
            &mut TaskState<Box<dyn StateBackend>>,
            &mut Vec<Output>,
        ) -> Result<(), OperatorError>,
    ) -> Result<Vec<Output>, DriverError> {
        let plan = self.plan.clone();
        let state = self
            .state
            .as_mut()
            .ok_or_else(|| DriverError::Input("the driver's state was lost in a failed restart".into()))?;
        state.begin_record();
        let mut out = Vec::new();
        // Outputs to Avro sinks must encode with the sink's schema, as the runtime encodes them.
        let result = process(&self.pipeline, state, &mut out)
            .map_err(DriverError::from)
            .and_then(|()| out.iter().try_for_each(|output| encodes(&plan, output)));
        match result {
            Ok(()) => {
                state.end_record();
                Ok(out)
            }
            Err(e) => {
                state.rollback_record();
                self.pipeline.clear_caches();
                Err(e)
            }
        }
    }

    /// Queues outputs for `read_output`.
    fn collect(&mut self, out: Vec<Output>) {
        for output in out {
            self.outputs.entry(output.topic.clone()).or_default().push_back(output);
        }
    }

    /// Moves stream time forward without a record (closing windows as a later record would).
    /// Stream time only moves if every window it closes is emitted.
    pub fn advance_stream_time(&mut self, to: i64) -> Result<(), DriverError> {
        let new_stream_time = self.stream_time.max(to);
        let out = self.atomically(|pipeline, state, out| pipeline.on_stream_time(state, new_stream_time, out))?;
        self.collect(out);
        self.stream_time = new_stream_time;
        Ok(())
    }

    /// Records the aggregation in `node` dropped as late since the last (re)start.
    pub fn late_records(&self, node: &str) -> Option<u64> {
        self.pipeline.late_records(node)
    }

    /// Pipes one CDC event into a table source, or into a change stream (`table: stream`) as
    /// an event (see [`Pipeline::event_row_for_change`]).
    pub fn pipe_change(&mut self, source: &str, event: &CdcEvent) -> Result<(), DriverError> {
        if self.plan.source(source).is_some_and(|s| !s.kind.is_table()) {
            return match Pipeline::event_row_for_change(event) {
                Some((key, row, timestamp)) => self.pipe(source, key, row, timestamp),
                None => {
                    *self.positions.entry(source.to_owned()).or_insert(0) += 1;
                    Ok(())
                }
            };
        }
        self.apply_table_update(source, Pipeline::update_for_change(event))
    }

    /// Applies a table change. Table changes do not move stream time (a dimension snapshot
    /// stamped with today's commit time must not make older events late); history expiry uses
    /// the stream time the events have reached.
    fn apply_table_update(&mut self, source: &str, update: Option<TableUpdate>) -> Result<(), DriverError> {
        if let Some(update) = update {
            let stream_time = self.stream_time;
            let out = self
                .atomically(|pipeline, state, out| pipeline.on_table_update(state, source, update, stream_time, out))?;
            self.collect(out);
        }
        *self.positions.entry(source.to_owned()).or_insert(0) += 1;
        Ok(())
    }

    /// Pipes one JSON input line (see the module docs).
    pub fn pipe_json(&mut self, line: &serde_json::Value) -> Result<(), DriverError> {
        let source_name = line
            .get("source")
            .and_then(|s| s.as_str())
            .ok_or_else(|| DriverError::Input(format!("no `source` in {line}")))?;
        let source = self
            .plan
            .source(source_name)
            .ok_or_else(|| DriverError::Input(format!("`{source_name}` is not a source of the topology")))?;
        let key_json = line.get("key").cloned().unwrap_or(serde_json::Value::Null);
        let value_json = line.get("value").cloned().unwrap_or(serde_json::Value::Null);
        if source.format.is_cdc() {
            let record = Record {
                key: (!key_json.is_null()).then(|| key_json.to_string().into()),
                value: (!value_json.is_null()).then(|| value_json.to_string().into()),
                position: Some(Position::new(source_name, 0, self.positions.get(source_name).copied().unwrap_or(0))),
                ..Record::default()
            };
            let decoder = match &source.schema {
                Some(schema) => DebeziumDecoder::json(false).with_default_row_schema((**schema).clone()),
                None => DebeziumDecoder::json(false),
            };
            let event = decoder.decode_cached(&record).map_err(|e| DriverError::Input(e.to_string()))?;
            let name = source_name.to_owned();
            return self.pipe_change(&name, &event);
        }
        let timestamp = line.get("timestamp").and_then(serde_json::Value::as_i64).unwrap_or(0);
        if source.kind.is_table() && value_json.is_null() {
            let update = TableUpdate::Delete { key: json::infer(&key_json), timestamp };
            let name = source_name.to_owned();
            return self.apply_table_update(&name, Some(update));
        }
        if let Some(parser) = &source.access_log {
            let line = value_json.as_str().ok_or_else(|| {
                DriverError::Input(format!("an access-log source's value is the line (a string): {line}"))
            })?;
            let row = parser.parse(line.as_bytes()).map_err(|e| DriverError::Input(e.to_string()))?;
            let name = source_name.to_owned();
            return self.pipe(&name, json::infer(&key_json), row, timestamp);
        }
        let value = match &source.schema {
            Some(schema) => json::convert(&value_json, schema).map_err(|e| DriverError::Input(e.to_string()))?,
            None => json::infer(&value_json),
        };
        let row = match value {
            Value::Struct(row) => row,
            other => Row::new().with("value", other),
        };
        let name = source_name.to_owned();
        self.pipe(&name, json::infer(&key_json), row, timestamp)
    }

    /// Takes every record written to `topic` since the last read.
    pub fn read_output(&mut self, topic: &str) -> Vec<Output> {
        self.outputs.get_mut(topic).map(|q| q.drain(..).collect()).unwrap_or_default()
    }

    /// Topics that have unread output.
    pub fn output_topics(&self) -> Vec<String> {
        self.outputs.iter().filter(|(_, q)| !q.is_empty()).map(|(t, _)| t.clone()).collect()
    }

    /// Commits state with the input positions piped so far.
    pub fn commit(&mut self) -> Result<(), DriverError> {
        let positions = self.positions.clone();
        let stream_time = (self.stream_time != i64::MIN).then_some(self.stream_time);
        self.state()?.commit_at(positions, stream_time).map_err(OperatorError::from)?;
        Ok(())
    }

    /// Commits, then closes and reopens the state and rebuilds the operators — what a graceful
    /// restart of the task does. Piped positions continue from the checkpoint.
    pub fn restart(&mut self) -> Result<(), DriverError> {
        self.commit()?;
        let state = self
            .state
            .take()
            .ok_or_else(|| DriverError::Input("the driver's state was lost in a failed restart".into()))?;
        let backend = state.into_backend();
        self.pipeline = Pipeline::new(self.plan.clone())?;
        let reopened = TaskState::new(backend).map_err(OperatorError::from)?;
        self.positions = reopened.checkpoint().inputs.clone();
        self.stream_time = reopened.checkpoint().stream_time_ms.unwrap_or(i64::MIN);
        self.state = Some(reopened);
        Ok(())
    }

    /// Join outcomes of `node` since the last (re)start: matched, unknown member, dropped.
    pub fn join_counts(&self, node: &str) -> Option<(u64, u64, u64)> {
        self.pipeline.join_counts(node)
    }
}

/// An output to an Avro sink must encode with the sink's schema.
fn encodes(plan: &Plan, output: &Output) -> Result<(), DriverError> {
    let avro = plan.sinks.iter().find(|s| s.topic == output.topic).and_then(|s| s.avro.as_ref());
    if let (Some(schema), Some(row)) = (avro, &output.value) {
        schema
            .encode_body(&Value::Struct(row.clone()))
            .map_err(|e| DriverError::Output { topic: output.topic.clone(), message: e.detail() })?;
    }
    Ok(())
}
