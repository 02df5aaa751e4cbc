//! A validated plan wired into operators, for one task (all partitions of its sub-topologies).
//!
//! Records enter at sources: stream events through [`Pipeline::on_event`], table changes through
//! [`Pipeline::on_table_update`]. Each node runs its steps in order (filter, re-key, join,
//! select, flat-map) and hands its output to downstream nodes and sinks, depth first, so one
//! input record's outputs come out in a deterministic order.
//!
//! By default a repartition topic is a pass-through: the re-keyed event goes straight to the
//! next step (one task holds every partition, as in the test driver). The Kafka runtime builds
//! its pipelines [`Pipeline::split`]: there a re-keyed event leaves as an [`Output`] to the
//! repartition topic, and comes back in through [`Pipeline::on_repartitioned`] in the task that
//! owns its new key.
//!
//! How table changes flow through nodes reading a changelog is in `changes.rs`.
//!
//! Supported today: stream sources, table / versioned / global table sources, filter, re-key,
//! select, flat-map, merge, `to_table` (plain or versioned, joinable by later nodes),
//! stream-table, stream-global-table and (inner or left) stream-stream joins, and aggregations
//! (unwindowed with an optional `ttl`, tumbling, hopping, session, sliding; emit on update or
//! final), and nodes reading a plain table's changelog (filter, select, table-table joins,
//! aggregate with measures that can be taken back). Not yet: changelogs of versioned tables and
//! of aggregates. A plan that uses any of these is refused with [`OperatorError::Unsupported`]
//! naming the node — never run partially.

mod changes;

use super::aggregate::Aggregator;
use super::stateless;
use super::stream_stream_join::{Side, StreamStreamJoin};
use super::stream_table_join::{Dimension, StreamTableJoin};
use super::table::Table;
use super::table_table_join::TableTableJoin;
use super::{Event, OperatorError, TableUpdate};
use crate::codec::json;
use crate::record::{CdcEvent, Op, Row, Value};
use crate::state::{StateBackend, TaskState};
use crate::topology::plan::{PlannedNode, Step};
use crate::topology::spec::SourceKind;
use crate::topology::{Plan, Shape};
use changes::{changelog_table, check_changelog_reader};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A record for a sink topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Sink topic.
    pub topic: String,
    /// Key.
    pub key: Value,
    /// Value (`None`: a tombstone).
    pub value: Option<Row>,
    /// Event time (ms).
    pub timestamp: i64,
}

impl Output {
    /// An event written to `topic` (a tombstone event as a null value).
    pub fn of(topic: &str, event: Event) -> Output {
        let value = (!event.tombstone).then_some(event.value);
        Output { topic: topic.to_owned(), key: event.key, value, timestamp: event.timestamp }
    }
}

/// The operators of one plan.
#[derive(Debug)]
pub struct Pipeline {
    plan: Arc<Plan>,
    tables: BTreeMap<String, Arc<Table>>,
    /// (node index, step index) → join
    joins: BTreeMap<(usize, usize), StreamTableJoin>,
    /// (node index, step index) → aggregation
    aggregators: BTreeMap<(usize, usize), Aggregator>,
    /// (node index, step index) → stream-stream join
    stream_joins: BTreeMap<(usize, usize), StreamStreamJoin>,
    /// joined stream name → the (node, step) joins it feeds as their right side
    right_inputs: BTreeMap<String, Vec<(usize, usize)>>,
    /// table name → the nodes that read its changelog
    changelog_readers: BTreeMap<String, Vec<usize>>,
    /// (node index, step index) → table-table join
    table_joins: BTreeMap<(usize, usize), TableTableJoin>,
    /// right table name → the (node, step) table-table joins its changes feed
    changelog_right: BTreeMap<String, Vec<(usize, usize)>>,
    /// source or node name → downstream node indexes
    downstream: BTreeMap<String, Vec<usize>>,
    /// source or node name → sink topics
    sinks: BTreeMap<String, Vec<String>>,
    /// repartition topic → the (node, step) its records enter at
    repartition_entry: BTreeMap<String, (usize, usize)>,
    /// Split at repartition topics (the Kafka runtime), and run only this sub-topology's windows.
    split: Option<usize>,
}

/// The lookup into an unwindowed aggregate node's results, if `name` is one.
fn aggregate_dimension(plan: &Arc<Plan>, name: &str) -> Option<Dimension> {
    let index = plan.nodes.iter().position(|n| n.name == name)?;
    let step = plan.nodes[index].steps.iter().position(|s| matches!(s, Step::Aggregate { window: None, .. }))?;
    Some(Dimension::Aggregate { plan: plan.clone(), node: index, step })
}

fn unsupported(node: &PlannedNode, what: &str) -> OperatorError {
    OperatorError::Unsupported(format!(
        "node `{}` (line {}): {what} is not supported by this version's engine yet",
        node.name, node.line
    ))
}

impl Pipeline {
    /// Wires a plan; refuses plans with steps the engine does not run yet.
    pub fn new(plan: Arc<Plan>) -> Result<Pipeline, OperatorError> {
        Self::with_tables(plan, &BTreeMap::new())
    }

    /// Wires a plan whose table sources named in `shared` use those table operators (a global
    /// table: one store and one row cache for every task of an instance).
    pub fn with_tables(plan: Arc<Plan>, shared: &BTreeMap<String, Arc<Table>>) -> Result<Pipeline, OperatorError> {
        let mut tables = BTreeMap::new();
        for source in &plan.sources {
            if let Some(table) = shared.get(&source.name) {
                tables.insert(source.name.clone(), table.clone());
                continue;
            }
            if let Some(store) = &source.store {
                let table = match source.kind {
                    SourceKind::Versioned => Table::versioned(store.clone(), source.history_ms.unwrap_or(86_400_000)),
                    // A global table with `history` keeps row versions too (as-of lookups).
                    SourceKind::Global if source.history_ms.is_some() => {
                        Table::versioned(store.clone(), source.history_ms.unwrap_or(86_400_000))
                    }
                    _ => Table::plain(store.clone()),
                };
                tables.insert(source.name.clone(), Arc::new(table));
            }
        }
        let mut joins = BTreeMap::new();
        let mut aggregators = BTreeMap::new();
        let mut stream_joins = BTreeMap::new();
        let mut right_inputs: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        let mut downstream: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut changelog_readers: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut table_joins = BTreeMap::new();
        let mut changelog_right: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for (index, node) in plan.nodes.iter().enumerate() {
            for input in &node.inputs {
                let reads_table = plan.source(input).is_some_and(|s| s.kind.is_table())
                    || plan.node(input).is_some_and(|n| n.shape == Shape::Table);
                if reads_table {
                    check_changelog_reader(&plan, node, input)?;
                    changelog_readers.entry(input.clone()).or_default().push(index);
                    continue;
                }
                downstream.entry(input.clone()).or_default().push(index);
            }
            for (step_index, step) in node.steps.iter().enumerate() {
                match step {
                    Step::Filter(_)
                    | Step::Rekey { .. }
                    | Step::Repartition { .. }
                    | Step::Select(_)
                    | Step::FlatMap(_) => {}
                    Step::ToTable { store, history_ms } => {
                        let table = match history_ms {
                            Some(h) => Table::versioned(store.clone(), *h),
                            None => Table::plain(store.clone()),
                        };
                        tables.insert(node.name.clone(), Arc::new(table));
                    }
                    Step::Join { other, join_type, alias, unknown, window: None, stores, .. }
                        if node.inputs.iter().any(|i| changelog_table(&plan, i)) =>
                    {
                        let left = node.inputs.first().and_then(|i| tables.get(i)).cloned();
                        let right = tables.get(other).cloned();
                        let (Some(left), Some(right), Some(index_store)) = (left, right, stores.first()) else {
                            return Err(unsupported(
                                node,
                                "a table-table join whose sides are not both plain table sources",
                            ));
                        };
                        let unknown_row: Row =
                            unknown.iter().map(|(k, v)| (Arc::from(k.as_str()), json::infer(v))).collect();
                        table_joins.insert(
                            (index, step_index),
                            TableTableJoin::new(left, right, index_store, *join_type, alias, unknown_row),
                        );
                        changelog_right.entry(other.clone()).or_default().push((index, step_index));
                    }
                    Step::Join { other, join_type, alias, unknown, window: None, .. } => {
                        let dimension = match tables.get(other) {
                            Some(table) => Dimension::Table(table.clone()),
                            None => aggregate_dimension(&plan, other).ok_or_else(|| {
                                unsupported(
                                    node,
                                    &format!("joining `{other}` (only table sources, `to_table` nodes and unwindowed aggregates can be joined)"),
                                )
                            })?,
                        };
                        // The unknown member has every column of the table (null) when its
                        // schema is known, so CEL reads of other columns give null, not an error.
                        let mut unknown_row = Row::new();
                        if let Some(fields) =
                            plan.source(other).and_then(|s| s.schema.as_ref()).and_then(|s| s.fields())
                        {
                            for field in fields {
                                unknown_row.push(field.name.clone(), Value::Null);
                            }
                        }
                        for (k, v) in unknown {
                            unknown_row.set(k.as_str(), json::infer(v));
                        }
                        joins.insert(
                            (index, step_index),
                            StreamTableJoin::new(&node.name, dimension, *join_type, alias, unknown_row),
                        );
                    }
                    Step::Join { other, join_type, alias, unknown, window: Some((within, grace)), stores, .. } => {
                        let unknown_row: Row =
                            unknown.iter().map(|(k, v)| (Arc::from(k.as_str()), json::infer(v))).collect();
                        stream_joins.insert(
                            (index, step_index),
                            StreamStreamJoin::new(&node.name, stores, alias, *join_type, unknown_row, *within, *grace)?,
                        );
                        right_inputs.entry(other.clone()).or_default().push((index, step_index));
                    }
                    Step::Aggregate { window, emit, ttl_ms, store, side_store, distinct_store, .. } => {
                        aggregators.insert(
                            (index, step_index),
                            Aggregator::new(&node.name, store, window.clone(), *emit, *ttl_ms, side_store.clone())
                                .with_distinct_store(distinct_store.clone()),
                        );
                    }
                }
            }
        }
        let mut repartition_entry = BTreeMap::new();
        for (index, node) in plan.nodes.iter().enumerate() {
            for (step_index, step) in node.steps.iter().enumerate() {
                // A re-keyed record comes back after the re-key; an aggregate's at the aggregate.
                let (topic, entry) = match step {
                    Step::Rekey { repartition: Some(topic), .. } | Step::Repartition { topic } => {
                        (topic, step_index + 1)
                    }
                    Step::Aggregate { repartition: Some(topic), .. } => (topic, step_index),
                    _ => continue,
                };
                repartition_entry.insert(topic.clone(), (index, entry));
            }
        }
        let mut sinks: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for sink in &plan.sinks {
            if plan.source(&sink.from).is_some_and(|s| s.kind.is_table()) {
                return Err(OperatorError::Unsupported(format!(
                    "sink `{}` reads the table source `{}`: writing a table's changelog is not supported by this version's engine yet",
                    sink.topic, sink.from
                )));
            }
            sinks.entry(sink.from.clone()).or_default().push(sink.topic.clone());
        }
        Ok(Pipeline {
            plan,
            tables,
            joins,
            aggregators,
            stream_joins,
            right_inputs,
            changelog_readers,
            table_joins,
            changelog_right,
            downstream,
            sinks,
            repartition_entry,
            split: None,
        })
    }

    /// The pipeline of one Kafka task of sub-topology `subtopology`: re-keyed events leave through
    /// their repartition topics (as outputs) instead of flowing on, and only the sub-topology's
    /// windows and join buffers are swept when stream time moves.
    pub fn split(mut self, subtopology: usize) -> Self {
        self.split = Some(subtopology);
        self
    }

    /// The table operators by source or node name.
    pub fn tables(&self) -> &BTreeMap<String, Arc<Table>> {
        &self.tables
    }

    /// Repartition topics and the sub-topology reading each.
    pub fn repartition_readers(&self) -> BTreeMap<String, usize> {
        self.repartition_entry
            .iter()
            .map(|(topic, (index, _))| (topic.clone(), self.plan.nodes[*index].subtopology))
            .collect()
    }

    /// A record read back from a repartition topic: it continues where it left its node.
    pub fn on_repartitioned<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        topic: &str,
        event: Event,
        stream_time: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), OperatorError> {
        let &(index, step_index) = self
            .repartition_entry
            .get(topic)
            .ok_or_else(|| OperatorError::Config(format!("`{topic}` is not a repartition topic of the topology")))?;
        let node = &self.plan.nodes[index];
        let (batch, next) = match &node.steps[step_index] {
            Step::Aggregate { group_by, measures, .. } => {
                let aggregator = self
                    .aggregators
                    .get(&(index, step_index))
                    .ok_or_else(|| OperatorError::Config(format!("aggregate of `{}` not wired", node.name)))?;
                let result = aggregator.on_record(state, group_by, measures, &event, stream_time);
                (self.route_late(index, result, out)?, step_index + 1)
            }
            _ => (vec![event], step_index),
        };
        let produced = self.run_steps(state, index, batch, next, stream_time, out)?;
        self.emit(state, &node.name, produced, stream_time, out)
    }

    fn in_this_task(&self, index: usize) -> bool {
        self.split.is_none_or(|s| self.plan.nodes[index].subtopology == s)
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The stores the pipeline needs.
    pub fn stores(&self) -> Vec<String> {
        let mut stores: Vec<String> = self.tables.values().map(|t| t.store().to_owned()).collect();
        for node in &self.plan.nodes {
            for step in &node.steps {
                match step {
                    Step::Aggregate { store, side_store, distinct_store, .. } => {
                        stores.push(store.clone());
                        stores.extend(side_store.iter().cloned());
                        stores.extend(distinct_store.iter().cloned());
                    }
                    Step::Join { stores: join_stores, .. } => stores.extend(join_stores.iter().cloned()),
                    Step::ToTable { .. } => {}
                    _ => {}
                }
            }
        }
        stores.sort();
        stores.dedup();
        stores
    }

    /// Forgets cached table rows; call after rolling the state back.
    pub fn clear_caches(&self) {
        for table in self.tables.values() {
            table.clear_cache();
        }
    }

    /// Records an aggregation in `node` dropped as late (all their windows had closed).
    pub fn late_records(&self, node: &str) -> Option<u64> {
        let index = self.plan.nodes.iter().position(|n| n.name == node)?;
        self.aggregators
            .iter()
            .find(|((n, _), _)| *n == index)
            .map(|(_, a)| a.late_records.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Lookup outcomes of the join in `node` (matched, unknown member, dropped).
    pub fn join_counts(&self, node: &str) -> Option<(u64, u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let index = self.plan.nodes.iter().position(|n| n.name == node)?;
        self.joins.iter().find(|((n, _), _)| *n == index).map(|(_, j)| {
            (j.counts.matched.load(Relaxed), j.counts.unknown_member.load(Relaxed), j.counts.dropped.load(Relaxed))
        })
    }

    /// Builds the event a stream source emits for a decoded record: the key from the source's
    /// `key` expression (else the record key), the time from its `timestamp` expression (else the
    /// record timestamp).
    pub fn event_for(
        &self,
        source: &str,
        record_key: Value,
        value: Row,
        record_timestamp: i64,
    ) -> Result<Event, OperatorError> {
        let spec =
            self.plan.source(source).ok_or_else(|| OperatorError::Config(format!("unknown source `{source}`")))?;
        let mut event = Event::new(record_key, value, record_timestamp);
        let named = [("key", &event.key)];
        let scope = stateless::scope(&event, &named);
        let key = spec.key.as_ref().map(|k| k.evaluate(&scope)).transpose()?;
        let timestamp = match &spec.timestamp {
            Some(t) => {
                let value = t.evaluate(&scope)?;
                value.epoch_millis().ok_or_else(|| {
                    OperatorError::Data(format!(
                        "timestamp `{}` of source `{source}` is a {}, not a time",
                        t.source(),
                        value.type_name()
                    ))
                })?
            }
            None => record_timestamp,
        };
        if let Some(key) = key {
            event.key = key;
        }
        event.timestamp = timestamp;
        Ok(event)
    }

    /// The table change a CDC event means for a table source (`None`: nothing to apply —
    /// tombstones after deletes, transaction markers, logical messages).
    pub fn update_for_change(event: &CdcEvent) -> Option<TableUpdate> {
        let CdcEvent::Change(change) = event else { return None };
        let timestamp = change.event_time_ms().unwrap_or(0);
        let key = || change.key.clone().map(Value::Struct).unwrap_or(Value::Null);
        match change.op {
            Op::Create | Op::Read | Op::Update => {
                change.after.clone().map(|row| TableUpdate::Upsert { key: key(), row, timestamp })
            }
            Op::Delete => Some(TableUpdate::Delete { key: key(), timestamp }),
            Op::Truncate => Some(TableUpdate::Truncate { timestamp }),
            Op::Message => None,
        }
    }

    /// The event a CDC change means for a source read as a change stream (`table: stream`),
    /// like Debezium's `ExtractNewRecordState` with `add.fields=op` and
    /// `delete.handling.mode=rewrite`: the row after the change (for a delete, the row before it,
    /// or only its key columns when the table does not log full rows) plus `__op` (`c`, `r`,
    /// `u`, `d`), `__deleted` and `__source_ts_ms` (the commit time, the event's time). Truncates, logical messages and tombstones are no events.
    pub fn event_row_for_change(event: &CdcEvent) -> Option<(Value, Row, i64)> {
        let CdcEvent::Change(change) = event else { return None };
        let timestamp = change.event_time_ms().unwrap_or(0);
        let key = change.key.clone().map(Value::Struct).unwrap_or(Value::Null);
        let (mut row, deleted) = match change.op {
            Op::Create | Op::Read | Op::Update => (change.after.clone()?, false),
            Op::Delete => {
                let mut row = change.before.clone().unwrap_or_default();
                for (name, value) in change.key.iter().flat_map(|k| k.iter()) {
                    if row.get(name).is_none_or(Value::is_null) {
                        row.set(name, value.clone());
                    }
                }
                (row, true)
            }
            Op::Truncate | Op::Message => return None,
        };
        row.set("__op", Value::String(change.op.code().into()));
        row.set("__deleted", Value::Bool(deleted));
        row.set("__source_ts_ms", Value::Timestamp { value: timestamp, unit: crate::record::TimeUnit::Millis });
        Some((key, row, timestamp))
    }

    /// Applies a change to a table source.
    pub fn on_table_update<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        source: &str,
        update: TableUpdate,
        stream_time: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), OperatorError> {
        let table = self
            .tables
            .get(source)
            .ok_or_else(|| OperatorError::Config(format!("`{source}` is not a table source")))?;
        if !self.changelog_readers.contains_key(source) && !self.changelog_right.contains_key(source) {
            return table.apply(state, update, stream_time);
        }
        let changes = table.apply_with_changes(state, update, stream_time)?;
        self.emit_changes(state, source, changes, stream_time, out)
    }

    /// Processes one event from a stream source at `stream_time` (the highest event time seen
    /// before it); outputs are appended to `out`.
    pub fn on_event<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        source: &str,
        event: Event,
        stream_time: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), OperatorError> {
        self.emit(state, source, vec![event], stream_time, out)
    }

    /// Stream time moved to `stream_time`: closes windows, emitting final results.
    pub fn on_stream_time<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        stream_time: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), OperatorError> {
        for ((index, step_index), join) in &self.stream_joins {
            if !self.in_this_task(*index) {
                continue;
            }
            let misses = join.on_stream_time(state, stream_time)?;
            if !misses.is_empty() {
                // Left-join misses continue through the node's steps after the join.
                let produced = self.run_steps(state, *index, misses, step_index + 1, stream_time, out)?;
                self.emit(state, &self.plan.nodes[*index].name, produced, stream_time, out)?;
            }
        }
        for ((index, step_index), aggregator) in &self.aggregators {
            if !self.in_this_task(*index) {
                continue;
            }
            let node = &self.plan.nodes[*index];
            let Step::Aggregate { measures, .. } = &node.steps[*step_index] else { continue };
            let closed = aggregator.on_stream_time(state, measures, stream_time)?;
            if !closed.is_empty() {
                // Closed windows' results continue through the node's steps after the aggregate.
                let produced = self.run_steps(state, *index, closed, step_index + 1, stream_time, out)?;
                self.emit(state, &node.name, produced, stream_time, out)?;
            }
        }
        Ok(())
    }

    fn emit<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        from: &str,
        events: Vec<Event>,
        stream_time: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), OperatorError> {
        let sinks = self.sinks.get(from).map(Vec::as_slice).unwrap_or_default();
        let nodes = self.downstream.get(from).map(Vec::as_slice).unwrap_or_default();
        let right_joins = self.right_inputs.get(from).map(Vec::as_slice).unwrap_or_default();
        let consumers = sinks.len() + nodes.len() + right_joins.len();
        for event in events {
            // One copy per consumer; the last consumer takes the event itself.
            let mut copies = Vec::with_capacity(consumers);
            copies.extend((1..consumers).map(|_| event.clone()));
            copies.push(event);
            let mut copies = copies.into_iter();
            for (topic, e) in sinks.iter().zip(copies.by_ref()) {
                let value = (!e.tombstone).then_some(e.value);
                out.push(Output { topic: topic.clone(), key: e.key, value, timestamp: e.timestamp });
            }
            for (&index, e) in nodes.iter().zip(copies.by_ref()) {
                let produced = self.run_steps(state, index, vec![e], 0, stream_time, out)?;
                self.emit(state, &self.plan.nodes[index].name, produced, stream_time, out)?;
            }
            // Records of a stream that is the right side of stream-stream joins.
            for (&(index, step_index), e) in right_joins.iter().zip(copies.by_ref()) {
                let join = self
                    .stream_joins
                    .get(&(index, step_index))
                    .ok_or_else(|| OperatorError::Config("stream join not wired".into()))?;
                let joined = self.route_late(index, join.on_record(state, Side::Right, e, stream_time), out)?;
                let produced = self.run_steps(state, index, joined, step_index + 1, stream_time, out)?;
                self.emit(state, &self.plan.nodes[index].name, produced, stream_time, out)?;
            }
        }
        Ok(())
    }

    /// A late record goes to the node's late topic when its policy is `dead_letter`; otherwise it
    /// was counted and is dropped. Other results pass through.
    fn route_late(
        &self,
        index: usize,
        result: Result<Vec<Event>, OperatorError>,
        out: &mut Vec<Output>,
    ) -> Result<Vec<Event>, OperatorError> {
        match result {
            Err(OperatorError::Late { event, .. }) => {
                if let Some(topic) = &self.plan.nodes[index].late_topic {
                    out.push(Output {
                        topic: topic.clone(),
                        key: event.key,
                        value: Some(event.value),
                        timestamp: event.timestamp,
                    });
                }
                Ok(Vec::new())
            }
            other => other,
        }
    }

    /// Runs a node's steps from `start` on.
    fn run_steps<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        index: usize,
        mut batch: Vec<Event>,
        start: usize,
        stream_time: i64,
        out: &mut Vec<Output>,
    ) -> Result<Vec<Event>, OperatorError> {
        let node = &self.plan.nodes[index];
        for (step_index, step) in node.steps.iter().enumerate().skip(start) {
            if batch.is_empty() {
                break;
            }
            let mut next = Vec::with_capacity(batch.len());
            for event in batch {
                match step {
                    Step::Filter(predicate) => next.extend(stateless::filter(predicate, event)?),
                    Step::Rekey { key, repartition } => {
                        let event = stateless::rekey(key, event)?;
                        match repartition {
                            Some(topic) if self.split.is_some() => out.push(Output::of(topic, event)),
                            _ => next.push(event),
                        }
                    }
                    Step::Repartition { topic } if self.split.is_some() => out.push(Output::of(topic, event)),
                    // One task holds every partition: a repartition topic is a pass-through here.
                    Step::Repartition { .. } => next.push(event),
                    Step::Aggregate { group_by, repartition: Some(topic), .. } if self.split.is_some() => {
                        // Keyed by the group, so the group's task gets it.
                        let group = super::aggregate::group_of(group_by, &event)?;
                        out.push(Output::of(topic, Event { key: group, ..event }));
                    }
                    // A deleted aggregate result (a merged session) stays a deletion.
                    Step::Select(_) if event.tombstone => next.push(event),
                    Step::Select(fields) => next.push(stateless::select(fields, event)?),
                    Step::FlatMap(expression) => next.extend(stateless::flat_map(expression, event)?),
                    Step::Join { window: Some(_), .. } => {
                        let join = self
                            .stream_joins
                            .get(&(index, step_index))
                            .ok_or_else(|| OperatorError::Config(format!("join of `{}` not wired", node.name)))?;
                        next.extend(self.route_late(
                            index,
                            join.on_record(state, Side::Left, event, stream_time),
                            out,
                        )?);
                    }
                    Step::Join { on, .. } => {
                        let join = self
                            .joins
                            .get(&(index, step_index))
                            .ok_or_else(|| OperatorError::Config(format!("join of `{}` not wired", node.name)))?;
                        next.extend(join.on_record(state, on.as_ref(), event)?);
                    }
                    Step::Aggregate { group_by, measures, .. } => {
                        let aggregator = self
                            .aggregators
                            .get(&(index, step_index))
                            .ok_or_else(|| OperatorError::Config(format!("aggregate of `{}` not wired", node.name)))?;
                        next.extend(self.route_late(
                            index,
                            aggregator.on_record(state, group_by, measures, &event, stream_time),
                            out,
                        )?);
                    }
                    Step::ToTable { .. } if event.key.is_null() => {
                        // A table row needs a key; the record still flows on.
                        metrics::counter!("happystreams_table_null_keys_total", "node" => node.name.clone())
                            .increment(1);
                        next.push(event);
                    }
                    Step::ToTable { .. } => {
                        let table = self
                            .tables
                            .get(&node.name)
                            .ok_or_else(|| OperatorError::Config(format!("table of `{}` not wired", node.name)))?;
                        let update = TableUpdate::Upsert {
                            key: event.key.clone(),
                            row: event.value.clone(),
                            timestamp: event.timestamp,
                        };
                        table.apply(state, update, stream_time.max(event.timestamp))?;
                        next.push(event);
                    }
                }
            }
            batch = next;
        }
        Ok(batch)
    }
}
