//! The YAML model of a topology (`topologies/*.yaml`), exactly as written: strict (unknown keys
//! are errors with their line) and with source locations kept for later validation errors.
//! [`super::plan`] turns it into a validated graph.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A value with the line it was written on (0 when built in code).
#[derive(Debug)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// 1-based line in the topology file; 0 for topologies built with the Rust DSL.
    pub line: u64,
}

impl<T> Located<T> {
    /// A value built in code (no file line).
    pub fn new(value: T) -> Self {
        Located { value, line: 0 }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<T>::deserialize(deserializer)?;
        Ok(Located { line: spanned.referenced.line(), value: spanned.value })
    }
}
use indexmap::IndexMap;
use std::collections::BTreeMap;

/// A whole topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Topology name; prefixes internal topics (`<name>-<node>-repartition`).
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Input topics by name.
    pub sources: IndexMap<String, Located<SourceSpec>>,
    /// Processing steps, each after the nodes it reads.
    #[serde(default)]
    pub nodes: Vec<Located<NodeSpec>>,
    /// Output topics.
    #[serde(default)]
    pub sinks: Vec<Located<SinkSpec>>,
}

/// How a source topic's records are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// Plain JSON values.
    #[default]
    Json,
    /// JSON with a Kafka Connect schema envelope.
    JsonSchema,
    /// Confluent Avro.
    Avro,
    /// Debezium change events, JSON without schemas.
    DebeziumJson,
    /// Debezium change events, JSON with schemas.
    DebeziumJsonSchema,
    /// Debezium change events, Confluent Avro.
    DebeziumAvro,
    /// One UTF-8 text line per record, as the field `line`.
    Text,
    /// A web-server access-log line ("combined" format plus a quoted visitor id), parsed and
    /// categorized by the source's `actions` (see `codec::access_log`).
    AccessLog,
}

impl SourceFormat {
    /// True for Debezium change-event formats.
    pub fn is_cdc(self) -> bool {
        matches!(self, SourceFormat::DebeziumJson | SourceFormat::DebeziumJsonSchema | SourceFormat::DebeziumAvro)
    }
}

/// What a source is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Every record is an event.
    #[default]
    Stream,
    /// Latest value per key (upserts; deletes and tombstones remove the key).
    Table,
    /// A table that keeps row history for event-time lookups.
    Versioned,
    /// A table every instance reads in full (joined by a foreign key, no co-partitioning).
    Global,
}

impl SourceKind {
    /// True for the table kinds.
    pub fn is_table(self) -> bool {
        !matches!(self, SourceKind::Stream)
    }
}

/// What to do with a record that cannot be decoded or processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the task (the default: nothing is lost silently).
    #[default]
    Fail,
    /// Count it and go on.
    Skip,
    /// Send it unchanged to the dead-letter topic, with headers saying why.
    DeadLetter,
}

/// One input topic.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Topic name.
    pub topic: String,
    /// Encoding.
    pub format: SourceFormat,
    /// Stream or table.
    #[serde(default, rename = "table")]
    pub kind: SourceKind,
    /// Avro schema file giving the value's field types (checked against expressions and join
    /// keys).
    #[serde(default)]
    pub schema: Option<String>,
    /// Key expression for a stream (default: the record key).
    #[serde(default)]
    pub key: Option<String>,
    /// Primary-key column(s) of a table, for join-key type checks (default: the record key).
    #[serde(default)]
    pub primary_key: Option<String>,
    /// Event-time expression (default: the record timestamp; CDC: the commit time).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// How long a versioned table keeps row history (e.g. `30d`); on a global table, makes it
    /// versioned too (lookups by foreign key, as of the event's time).
    #[serde(default)]
    pub history: Option<String>,
    /// Bad-record policy.
    #[serde(default)]
    pub on_error: OnError,
    /// `format: access-log`: path rules naming each request's website action, tried in order.
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
}

/// An access-log path rule: `{ path: "/article/{content_id}", event_type: page_view }`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Path pattern: literal segments, `{field}` captures, optionally ending in `/*`.
    pub path: String,
    /// The action (`event_type`) of requests whose path matches.
    pub event_type: String,
}

/// Join type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JoinType {
    /// Only records with a match.
    Inner,
    /// Every record; a miss joins the unknown member.
    #[default]
    Left,
}

/// A join of the node's stream with a table, a global table or another stream.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JoinSpec {
    /// A table source or a node producing a table.
    #[serde(default)]
    pub table: Option<String>,
    /// A stream source or node (stream-stream join; needs `window`).
    #[serde(default)]
    pub stream: Option<String>,
    /// Join key expression on this side (default: the current key). For a global table: the
    /// foreign key.
    #[serde(default)]
    pub on: Option<String>,
    /// Inner or left.
    #[serde(default, rename = "type")]
    pub join_type: JoinType,
    /// Name under which the other side's row is visible to later expressions (default: its
    /// source or node name).
    #[serde(default, rename = "as")]
    pub alias: Option<String>,
    /// Values of the "unknown" member a left-join miss gets (data-warehouse convention).
    #[serde(default)]
    pub unknown: BTreeMap<String, serde_json::Value>,
    /// Stream-stream joins: how far apart in event time two records may be.
    #[serde(default)]
    pub within: Option<String>,
    /// Stream-stream joins: how late a record may arrive after its window closed.
    #[serde(default)]
    pub grace: Option<String>,
}

/// Window kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowType {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling,
    /// Windows of `size` starting every `advance`.
    Hopping,
    /// Windows of `size` around each record (Kafka Streams' sliding windows).
    Sliding,
    /// Per key, activity separated by gaps longer than `gap`.
    Session,
}

/// A window definition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Kind.
    #[serde(rename = "type")]
    pub window_type: WindowType,
    /// Window length (tumbling, hopping, sliding).
    #[serde(default)]
    pub size: Option<String>,
    /// Hop (hopping).
    #[serde(default)]
    pub advance: Option<String>,
    /// Inactivity gap (session).
    #[serde(default)]
    pub gap: Option<String>,
    /// How long after a window's end late records are still added.
    #[serde(default)]
    pub grace: Option<String>,
}

/// When aggregates are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// Every change (emit-on-update).
    #[default]
    OnUpdate,
    /// Once, when the window closes (end + grace).
    Final,
}

/// One aggregate measure: exactly one of the fields is set.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    /// Number of records (`count: {}` or `count: true`).
    #[serde(default)]
    pub count: Option<serde_json::Value>,
    /// Sum of an expression.
    #[serde(default)]
    pub sum: Option<String>,
    /// Minimum of an expression.
    #[serde(default)]
    pub min: Option<String>,
    /// Maximum of an expression.
    #[serde(default)]
    pub max: Option<String>,
    /// Average of an expression.
    #[serde(default)]
    pub avg: Option<String>,
    /// Exact number of distinct values of an expression.
    #[serde(default)]
    pub count_distinct: Option<String>,
    /// The `n` values of `of` with the highest `by`.
    #[serde(default)]
    pub top_n: Option<TopNSpec>,
}

/// Top-N measure.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopNSpec {
    /// How many.
    pub n: usize,
    /// What is ranked (e.g. `content_id`).
    pub of: String,
    /// Ranking value, summed per `of` (default: 1 per record, i.e. a count).
    #[serde(default)]
    pub by: Option<String>,
}

/// A grouped, optionally windowed aggregation. Its output is a table keyed by group (+ window).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// Output field name → grouping expression.
    pub group_by: IndexMap<String, String>,
    /// Window (none: one running aggregate per group).
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// Emit mode.
    #[serde(default)]
    pub emit: Emit,
    /// Output field name → measure.
    pub measures: IndexMap<String, MeasureSpec>,
    /// Drop a group's state this long after its last update (unwindowed aggregates).
    #[serde(default)]
    pub ttl: Option<String>,
}

/// One processing step. Its parts run in this order: `filter`, `key` (re-key), `join`,
/// `select`, `flat_map`; or `aggregate` (which must be the only operation besides `filter` and
/// `key`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique name.
    pub name: String,
    /// Input (a source or an earlier node).
    #[serde(default)]
    pub from: Option<String>,
    /// Several inputs of the same shape, merged.
    #[serde(default)]
    pub merge: Vec<String>,
    /// Keep records for which this is true.
    #[serde(default)]
    pub filter: Option<String>,
    /// New key expression (stateful steps after it read through a repartition topic).
    #[serde(default)]
    pub key: Option<String>,
    /// Join with a table or stream.
    #[serde(default)]
    pub join: Option<JoinSpec>,
    /// Output field name → expression, in output order (default: all fields).
    #[serde(default)]
    pub select: Option<IndexMap<String, String>>,
    /// Expression producing a list; one output record per element (as field `value` unless it
    /// is a struct).
    #[serde(default)]
    pub flat_map: Option<String>,
    /// Aggregate per group.
    #[serde(default)]
    pub aggregate: Option<AggregateSpec>,
    /// Materialize the stream as a table: `table` (latest record per key) or `versioned`
    /// (with history, for event-time joins); other nodes can then join it.
    #[serde(default)]
    pub to_table: Option<TableKind>,
    /// History kept by `to_table: versioned` (default 1d).
    #[serde(default)]
    pub history: Option<String>,
    /// What happens to records that arrive after their window (and grace) closed, in this
    /// node's windowed aggregate or stream-stream join: `drop` (counted) or `dead_letter`
    /// (written unchanged to `<topology>-<node>-late`).
    #[serde(default)]
    pub late: LatePolicy,
    /// For a node whose output is a table: `false` sends every update to its sinks as it
    /// happens; by default (`true`) the runtime's record cache sends the latest value per key at
    /// each commit (`runtime.record_cache_mb`).
    #[serde(default)]
    pub cache: Option<bool>,
}

/// Late-record policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// Count it (`*_late_records_total`) and drop it.
    #[default]
    Drop,
    /// Count it and write it to the node's late topic.
    DeadLetter,
}

/// What `to_table` materializes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// Latest record per key.
    Table,
    /// Record history per key.
    Versioned,
}

/// One output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// Node (or source) whose records are written.
    pub from: String,
    /// Topic name.
    pub topic: String,
    /// Encoding of the values.
    pub format: SinkFormat,
    /// Avro schema file for the values (Avro sinks; registered as `<topic>-value`).
    #[serde(default)]
    pub schema: Option<String>,
}

/// Output encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkFormat {
    /// Plain JSON.
    Json,
    /// Confluent Avro.
    Avro,
}
