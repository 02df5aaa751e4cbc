//! The validated form of a topology: [`Plan`] with its sources, nodes (each a list of
//! [`Step`]s), sinks, stores, repartition topics and sub-topologies. [`super::validate`] builds
//! it from a spec, the engine (`crate::operators::pipeline`) runs it, `describe` prints it.

use super::spec::*;
use crate::codec::connect::ConnectSchema;
use crate::expression::Expression;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A field type, as far as validation needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// int, long.
    Integer,
    /// float, double.
    Float,
    /// Exact decimal.
    Decimal,
    /// Text (also enums).
    String,
    /// UUID.
    Uuid,
    /// Boolean.
    Bool,
    /// Dates and times.
    Time,
    /// Records, arrays, maps, bytes.
    Other,
}

/// Whether a node's output is a stream of events or a table (latest value per key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Events.
    Stream,
    /// Latest value per key.
    Table,
}

/// A validated source.
#[derive(Debug)]
pub struct PlannedSource {
    /// Name.
    pub name: String,
    /// Topic.
    pub topic: String,
    /// Encoding.
    pub format: SourceFormat,
    /// Stream or table kind.
    pub kind: SourceKind,
    /// Key expression (streams).
    pub key: Option<Expression>,
    /// Event-time expression.
    pub timestamp: Option<Expression>,
    /// Versioned tables: history kept (ms).
    pub history_ms: Option<i64>,
    /// Bad-record policy.
    pub on_error: OnError,
    /// Store holding the table (tables only): `<source>-table`.
    pub store: Option<String>,
    /// Sub-topology number (`None` for global tables).
    pub subtopology: Option<usize>,
    /// The value schema from the source's `schema` file, as Connect types.
    pub schema: Option<Arc<ConnectSchema>>,
    /// `format: access-log`: the line parser with the source's path rules.
    pub access_log: Option<Arc<crate::codec::access_log::AccessLogParser>>,
}

/// A window, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Kind.
    pub window_type: WindowType,
    /// Size (ms); the gap for session windows.
    pub size_ms: i64,
    /// Hop (ms); equal to the size for tumbling windows.
    pub advance_ms: i64,
    /// Grace (ms).
    pub grace_ms: i64,
}

/// One measure, validated.
#[derive(Debug)]
pub enum Measure {
    /// Count of records.
    Count,
    /// Sum.
    Sum(Expression),
    /// Minimum.
    Min(Expression),
    /// Maximum.
    Max(Expression),
    /// Average.
    Avg(Expression),
    /// Exact distinct count.
    CountDistinct(Expression),
    /// Top N of `of` ranked by the sum of `by`.
    TopN {
        /// How many.
        n: usize,
        /// Ranked values.
        of: Expression,
        /// Ranking weight (None: 1 per record).
        by: Option<Expression>,
    },
}

/// A step inside a node, in execution order.
#[derive(Debug)]
pub enum Step {
    /// Keep matching records.
    Filter(Expression),
    /// Re-key; `repartition` is the internal topic when a stateful step follows.
    Rekey {
        /// New key.
        key: Expression,
        /// Internal topic, if the re-keyed stream feeds state.
        repartition: Option<String>,
    },
    /// Read through a repartition topic (the key was changed by an earlier node).
    Repartition {
        /// Internal topic.
        topic: String,
    },
    /// Join with a table, global table or stream.
    Join {
        /// Other side (source or node).
        other: String,
        /// Its shape and kind.
        other_kind: SourceKind,
        /// Key on this side.
        on: Option<Expression>,
        /// Inner / left.
        join_type: JoinType,
        /// Name of the other side's row in expressions.
        alias: String,
        /// Unknown-member values.
        unknown: BTreeMap<String, serde_json::Value>,
        /// Stream-stream: max event-time distance (ms) and grace (ms).
        window: Option<(i64, i64)>,
        /// Stores the join keeps (stream-stream: both sides' buffers).
        stores: Vec<String>,
    },
    /// Projection.
    Select(Vec<(String, Expression)>),
    /// One record per list element.
    FlatMap(Expression),
    /// Grouped (windowed) aggregation.
    Aggregate {
        /// Output field → grouping expression.
        group_by: Vec<(String, Expression)>,
        /// Window.
        window: Option<Window>,
        /// Emit mode.
        emit: Emit,
        /// Output field → measure.
        measures: Vec<(String, Measure)>,
        /// State TTL (ms) for unwindowed aggregates.
        ttl_ms: Option<i64>,
        /// Internal repartition topic (grouping by something else than the key).
        repartition: Option<String>,
        /// Store of the aggregates.
        store: String,
        /// Session windows: the store indexing each group's sessions; sliding windows: the
        /// store buffering each group's records.
        side_store: Option<String>,
        /// Unwindowed, tumbling and hopping aggregates with `count_distinct`: one entry per
        /// distinct value seen (so an update costs the same whatever the set's size).
        distinct_store: Option<String>,
    },
    /// Materialize as a table.
    ToTable {
        /// Store of the table.
        store: String,
        /// Versioned: history kept (ms); `None`: latest row only.
        history_ms: Option<i64>,
    },
}

/// A validated node.
#[derive(Debug)]
pub struct PlannedNode {
    /// Name.
    pub name: String,
    /// Inputs (sources or nodes).
    pub inputs: Vec<String>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Output shape.
    pub shape: Shape,
    /// Table-shaped output through the runtime's record cache (latest value per key per commit).
    pub cache: bool,
    /// Sub-topology of the node's last step.
    pub subtopology: usize,
    /// Where its late records go: `None` = dropped (counted), `Some(topic)` = dead-lettered there.
    pub late_topic: Option<String>,
    /// Line in the file.
    pub line: u64,
}

/// A validated sink.
#[derive(Debug)]
pub struct PlannedSink {
    /// Node or source written.
    pub from: String,
    /// Topic.
    pub topic: String,
    /// Encoding.
    pub format: SinkFormat,
    /// Avro schema file, as written in the topology.
    pub schema: Option<String>,
    /// The Avro schema (Avro sinks), read and checked against the node's fields at load.
    pub avro: Option<std::sync::Arc<crate::codec::avro::AvroSchema>>,
}

/// A validated topology.
#[derive(Debug)]
pub struct Plan {
    /// Name.
    pub name: String,
    /// Sources in file order.
    pub sources: Vec<PlannedSource>,
    /// Nodes in file order.
    pub nodes: Vec<PlannedNode>,
    /// Sinks.
    pub sinks: Vec<PlannedSink>,
    /// Number of sub-topologies.
    pub subtopologies: usize,
}

impl Plan {
    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&PlannedSource> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&PlannedNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every state store the topology uses.
    pub fn stores(&self) -> Vec<String> {
        let mut stores: Vec<String> = self.sources.iter().filter_map(|s| s.store.clone()).collect();
        for node in &self.nodes {
            for step in &node.steps {
                match step {
                    Step::Join { stores: s, .. } => stores.extend(s.iter().cloned()),
                    Step::Aggregate { store, side_store, distinct_store, .. } => {
                        stores.push(store.clone());
                        stores.extend(side_store.iter().cloned());
                        stores.extend(distinct_store.iter().cloned());
                    }
                    Step::ToTable { store, .. } => stores.push(store.clone()),
                    _ => {}
                }
            }
        }
        stores
    }

    /// Every internal repartition topic.
    pub fn repartition_topics(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| n.steps.iter())
            .filter_map(|s| match s {
                Step::Rekey { repartition: Some(t), .. }
                | Step::Aggregate { repartition: Some(t), .. }
                | Step::Repartition { topic: t } => Some(t.clone()),
                _ => None,
            })
            .collect()
    }
}
