//! A stream joined with a table: each event looks up the table row for its key (or for its
//! `on` foreign key, for global tables), as of the event's time when the table is versioned.
//!
//! The joined row is added to the event under the join's alias, so later expressions read it as
//! `alias.column`. A miss drops the event (inner join) or joins the explicit "unknown" member
//! (left join: the configured unknown values, other columns null), the data-warehouse
//! convention; both are counted, so missing dimension rows are never silent.

use super::aggregate::lookup_result;
use super::stateless::scope;
use super::table::Table;
use super::{Event, OperatorError};
use crate::expression::Expression;
use crate::record::{Row, Value};
use crate::state::{StateBackend, TaskState};
use crate::topology::plan::{Plan, Step};
use crate::topology::spec::JoinType;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of a join's lookups.
#[derive(Debug, Default)]
pub struct JoinCounts {
    /// Events that found their row.
    pub matched: AtomicU64,
    /// Left-join events that got the unknown member.
    pub unknown_member: AtomicU64,
    /// Inner-join events dropped for want of a row.
    pub dropped: AtomicU64,
}

/// What a stream-table join looks rows up in.
#[derive(Debug)]
pub enum Dimension {
    /// A table source or a `to_table` node.
    Table(Arc<Table>),
    /// An unwindowed aggregate node: its current result per group.
    Aggregate {
        /// The plan (for the aggregate's measures).
        plan: Arc<Plan>,
        /// Node index of the aggregate.
        node: usize,
        /// Step index of the aggregate in that node.
        step: usize,
    },
}

impl Dimension {
    fn lookup<B: StateBackend>(
        &self,
        state: &TaskState<B>,
        key: &Value,
        at: i64,
    ) -> Result<Option<Row>, OperatorError> {
        match self {
            Dimension::Table(table) => table.lookup(state, key, at),
            Dimension::Aggregate { plan, node, step } => match plan.nodes.get(*node).and_then(|n| n.steps.get(*step)) {
                Some(Step::Aggregate { store, measures, .. }) => lookup_result(state, store, key, measures),
                _ => Err(OperatorError::Config(format!("node {node} step {step} is not an aggregate"))),
            },
        }
    }
}

/// One stream-table join step.
#[derive(Debug)]
pub struct StreamTableJoin {
    dimension: Dimension,
    join_type: JoinType,
    alias: Arc<str>,
    unknown: Row,
    node: String,
    /// Lookup outcomes.
    pub counts: JoinCounts,
}

impl StreamTableJoin {
    /// A join against `dimension`; `unknown` holds the unknown member's known columns.
    pub fn new(node: &str, dimension: Dimension, join_type: JoinType, alias: &str, unknown: Row) -> Self {
        StreamTableJoin {
            dimension,
            join_type,
            alias: Arc::from(alias),
            unknown,
            node: node.to_owned(),
            counts: JoinCounts::default(),
        }
    }

    /// Joins one event.
    pub fn on_record<B: StateBackend>(
        &self,
        state: &TaskState<B>,
        on: Option<&Expression>,
        mut event: Event,
    ) -> Result<Option<Event>, OperatorError> {
        let key = match on {
            Some(expression) => {
                let named = [("key", &event.key)];
                expression.evaluate(&scope(&event, &named))?
            }
            None => event.key.clone(),
        };
        let found = if key.is_null() { None } else { self.dimension.lookup(state, &key, event.timestamp)? };
        let joined = match (found, self.join_type) {
            (Some(row), _) => {
                self.counts.matched.fetch_add(1, Ordering::Relaxed);
                row
            }
            (None, JoinType::Inner) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("happystreams_join_inner_misses_total", "node" => self.node.clone()).increment(1);
                return Ok(None);
            }
            (None, JoinType::Left) => {
                self.counts.unknown_member.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("happystreams_join_unknown_members_total", "node" => self.node.clone()).increment(1);
                self.unknown.clone()
            }
        };
        event.value.set(self.alias.clone(), Value::Struct(joined));
        Ok(Some(event))
    }
}
