//! Operators: what a topology's steps do to records. They know nothing about Kafka: records
//! come in as [`Event`]s and [`TableUpdate`]s, state lives in a [`crate::state::TaskState`].
//!
//! - [`stateless`]: filter, re-key, select, flat-map.
//! - [`table`]: materializing a table (plain or versioned) from upserts and CDC changes;
//!   deletes and tombstones remove rows, unavailable columns keep their last known value.
//! - [`stream_table_join`]: a stream joined with a table (as of the event's time for versioned
//!   tables), inner or left; a miss joins the explicit "unknown" member and is counted.
//! - [`stream_stream_join`]: two streams joined within a time window (inner or left).
//! - [`window`], [`aggregate`], [`session`] and [`sliding`]: grouped, windowed aggregation
//!   (tumbling, hopping, session, sliding) with grace, emit-on-update or emit-final, exact measures; late
//!   records are counted.
//! - [`table_table_join`]: a table joined with another by a foreign key, kept current from both
//!   changelogs.
//! - [`table_aggregate`]: aggregating a table's changelog (old rows taken out, new rows added).
//! - [`pipeline`]: a validated plan wired into operators, for one task.

pub mod aggregate;
pub mod pipeline;
pub mod row_cache;
pub mod session;
pub mod sliding;
pub mod stateless;
pub mod stream_stream_join;
pub mod stream_table_join;
pub mod table;
pub mod table_aggregate;
pub mod table_table_join;
pub mod window;

use crate::error::ErrorClass;
use crate::expression::ExpressionError;
use crate::record::{Row, Value};
use crate::state::StateError;

/// A record inside the engine: key, value row and event time (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Key.
    pub key: Value,
    /// Value.
    pub value: Row,
    /// Event time, ms since the epoch.
    pub timestamp: i64,
    /// A deletion of `key` (the value is empty): sinks write a null value. Produced when a
    /// session window merges away.
    pub tombstone: bool,
}

impl Event {
    /// An event.
    pub fn new(key: Value, value: Row, timestamp: i64) -> Self {
        Event { key, value, timestamp, tombstone: false }
    }
}

/// One row of a table changed: what a node reading the table's changelog receives.
#[derive(Debug, Clone, PartialEq)]
pub struct TableChange {
    /// The row's key.
    pub key: Value,
    /// The row before (`None`: it did not exist).
    pub old: Option<Row>,
    /// The row after (`None`: it was deleted).
    pub new: Option<Row>,
    /// When (event time, ms).
    pub timestamp: i64,
}

/// A change to a table.
#[derive(Debug, Clone, PartialEq)]
pub enum TableUpdate {
    /// The row for `key` is now `row` (from `timestamp` on).
    Upsert {
        /// Key.
        key: Value,
        /// New row (may hold `Unavailable` columns).
        row: Row,
        /// When (event time, ms).
        timestamp: i64,
    },
    /// The row for `key` is gone.
    Delete {
        /// Key.
        key: Value,
        /// When (event time, ms).
        timestamp: i64,
    },
    /// Every row is gone.
    Truncate {
        /// When (event time, ms).
        timestamp: i64,
    },
}

/// Why processing a record failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// An expression failed for this record.
    #[error("{0}")]
    Expression(#[from] ExpressionError),
    /// State could not be read or written.
    #[error("{0}")]
    State(#[from] StateError),
    /// The record does not fit the step (e.g. a non-list for flat_map).
    #[error("{0}")]
    Data(String),
    /// The plan uses something this engine cannot run yet.
    #[error("{0}")]
    Unsupported(String),
    /// A name the plan does not know.
    #[error("{0}")]
    Config(String),
    /// The record arrived after its window (and grace) closed. The pipeline routes it by the
    /// node's `late` policy (drop, counted, or dead-letter); it never reaches the caller.
    #[error("late record for node `{node}`")]
    Late {
        /// The node that refused it.
        node: String,
        /// The record.
        event: Box<Event>,
    },
}

impl OperatorError {
    /// Who has to act.
    pub fn class(&self) -> ErrorClass {
        match self {
            OperatorError::Expression(e) => e.class(),
            OperatorError::State(e) => e.class(),
            OperatorError::Data(_) => ErrorClass::Data,
            OperatorError::Unsupported(_) | OperatorError::Config(_) => ErrorClass::Config,
            OperatorError::Late { .. } => ErrorClass::Data,
        }
    }
}
