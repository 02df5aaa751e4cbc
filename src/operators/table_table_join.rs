//! Table-table join: a table's rows joined with the row of another table that their `on`
//! expression (a foreign key; default: the row's own key) names. The result is a table keyed
//! like the left table, kept current from both sides' changelogs:
//!
//! - a left row changes → its old and new versions are joined with the right rows their keys
//!   name, and the index `foreign key → left keys` is moved;
//! - a right row changes → every left row that names it (from the index) is joined again with
//!   the right row's old and new versions.
//!
//! Inner joins drop left rows without a right row (a change to "no row"); left joins give them
//! the unknown member. Both tables must be plain tables whose changelog the engine reads.

use super::stateless::scope;
use super::table::Table;
use super::{Event, OperatorError, TableChange};
use crate::expression::Expression;
use crate::record::encoding::{decode, encode, key_bytes, length_prefixed};
use crate::record::{Row, Value};
use crate::state::{StateBackend, StateError, TaskState};
use crate::topology::spec::JoinType;
use std::sync::Arc;

/// One table-table join step.
#[derive(Debug)]
pub struct TableTableJoin {
    left: Arc<Table>,
    right: Arc<Table>,
    index: String,
    join_type: JoinType,
    alias: Arc<str>,
    unknown: Row,
}

impl TableTableJoin {
    /// A join of `left`'s rows with `right`'s, indexing foreign keys in the store `index`.
    pub fn new(
        left: Arc<Table>,
        right: Arc<Table>,
        index: &str,
        join_type: JoinType,
        alias: &str,
        unknown: Row,
    ) -> Self {
        TableTableJoin { left, right, index: index.to_owned(), join_type, alias: Arc::from(alias), unknown }
    }

    fn foreign_key(on: Option<&Expression>, key: &Value, row: &Row) -> Result<Value, OperatorError> {
        match on {
            Some(expression) => {
                let event = Event::new(key.clone(), row.clone(), 0);
                let named = [("key", &event.key)];
                Ok(expression.evaluate(&scope(&event, &named))?)
            }
            None => Ok(key.clone()),
        }
    }

    fn index_key(foreign_key: &Value, left_key: &Value) -> Vec<u8> {
        let mut out = length_prefixed(&key_bytes(foreign_key), 16);
        out.extend_from_slice(&key_bytes(left_key));
        out
    }

    fn joined(&self, left: Option<Row>, right: Option<Row>) -> Option<Row> {
        let mut left = left?;
        let right = match (right, self.join_type) {
            (Some(r), _) => r,
            (None, JoinType::Inner) => return None,
            (None, JoinType::Left) => self.unknown.clone(),
        };
        left.set(self.alias.clone(), Value::Struct(right));
        Some(left)
    }

    fn right_row<B: StateBackend>(
        &self,
        state: &TaskState<B>,
        foreign_key: &Value,
    ) -> Result<Option<Row>, OperatorError> {
        if foreign_key.is_null() { Ok(None) } else { self.right.lookup(state, foreign_key, i64::MAX) }
    }

    /// A left row changed.
    pub fn on_left<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        on: Option<&Expression>,
        change: TableChange,
    ) -> Result<Option<TableChange>, OperatorError> {
        let old_fk = change.old.as_ref().map(|r| Self::foreign_key(on, &change.key, r)).transpose()?;
        let new_fk = change.new.as_ref().map(|r| Self::foreign_key(on, &change.key, r)).transpose()?;
        if old_fk != new_fk {
            if let Some(fk) = &old_fk {
                state.delete(&self.index, Self::index_key(fk, &change.key))?;
            }
            if let Some(fk) = new_fk.as_ref().filter(|fk| !fk.is_null()) {
                state.put(&self.index, Self::index_key(fk, &change.key), encode(&change.key))?;
            }
        }
        let old_right = match &old_fk {
            Some(fk) => self.right_row(state, fk)?,
            None => None,
        };
        let new_right = match &new_fk {
            Some(fk) => self.right_row(state, fk)?,
            None => None,
        };
        let old = self.joined(change.old, old_right);
        let new = self.joined(change.new, new_right);
        Ok((old != new).then_some(TableChange { key: change.key, old, new, timestamp: change.timestamp }))
    }

    /// A right row changed: every left row naming it is joined again.
    pub fn on_right<B: StateBackend>(
        &self,
        state: &TaskState<B>,
        change: &TableChange,
    ) -> Result<Vec<TableChange>, OperatorError> {
        let prefix = length_prefixed(&key_bytes(&change.key), 0);
        let mut end = prefix.clone();
        end.push(0xFF);
        let mut out = Vec::new();
        for (_, left_key) in state.range(&self.index, &prefix, Some(&end))? {
            let left_key = decode(&left_key).map_err(|e| {
                OperatorError::State(StateError::Encoding { store: self.index.clone(), detail: e.to_string() })
            })?;
            let left_row = self.left.lookup(state, &left_key, i64::MAX)?;
            let old = self.joined(left_row.clone(), change.old.clone());
            let new = self.joined(left_row, change.new.clone());
            if old != new {
                out.push(TableChange { key: left_key, old, new, timestamp: change.timestamp });
            }
        }
        Ok(out)
    }
}
