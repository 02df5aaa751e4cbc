//! A stream joined with a table: each event looks up the table row for its key (or for its
//! `on` foreign key, for global tables), as of the event's time when the table is versioned.
//!
//! The joined row is added to the event under the join's alias, so later expressions read it as
//! `alias.column`. A miss drops the event (inner join) or joins the explicit "unknown" member
//! (left join: the configured unknown values, other columns null), the data-warehouse
//! convention; both are counted, so missing dimension rows are never silent.

use super::stateless::scope;
use super::table::Table;
use super::{Event, OperatorError};
use crate::expression::Expression;
use crate::record::{Row, Value};
use crate::state::{StateBackend, TaskState};
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

/// One stream-table join step.
#[derive(Debug)]
pub struct StreamTableJoin {
    table: Arc<Table>,
    join_type: JoinType,
    alias: Arc<str>,
    unknown: Row,
    node: String,
    /// Lookup outcomes.
    pub counts: JoinCounts,
}

impl StreamTableJoin {
    /// A join against `table`; `unknown` holds the unknown member's known columns.
    pub fn new(node: &str, table: Arc<Table>, join_type: JoinType, alias: &str, unknown: Row) -> Self {
        StreamTableJoin {
            table,
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
        let found = if key.is_null() { None } else { self.table.lookup(state, &key, event.timestamp)? };
        let joined = match (found, self.join_type) {
            (Some(row), _) => {
                self.counts.matched.fetch_add(1, Ordering::Relaxed);
                row
            }
            (None, JoinType::Inner) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("join_inner_misses_total", "node" => self.node.clone()).increment(1);
                return Ok(None);
            }
            (None, JoinType::Left) => {
                self.counts.unknown_member.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("join_unknown_members_total", "node" => self.node.clone()).increment(1);
                self.unknown.clone()
            }
        };
        event.value.set(self.alias.clone(), Value::Struct(joined));
        Ok(Some(event))
    }
}
