//! Aggregating a table's changelog (Kafka Streams' `KTable.groupBy(...).aggregate(adder,
//! subtractor)`): when a row changes, its old version is taken out of its old group and its new
//! version added to its new group, so every group always reflects the table's current rows.
//!
//! Measures that can take a value back: `count`, `sum`, `avg`, `top_n` (scores go down; a
//! candidate leaves when the last row naming it does). `min`, `max` and `count_distinct` would need every value's
//! multiplicity and are refused for changelogs. A group left without rows is deleted and a
//! tombstone is emitted for it. Unwindowed only (a table has no event-time windows).

use super::aggregate::{Aggregator, TopNInput, add, result, state_key, top_n_input, update};
use super::stateless::scope;
use super::{Event, OperatorError, TableChange};
use crate::expression::Expression;
use crate::record::encoding::encode_row;
use crate::record::{Decimal, Row, Value};
use crate::state::{StateBackend, TaskState};
use crate::topology::plan::Measure;
use std::sync::Arc;

/// True when a measure can be aggregated over a changelog.
pub fn retractable(measure: &Measure) -> bool {
    matches!(measure, Measure::Count | Measure::Sum(_) | Measure::Avg(_) | Measure::TopN { .. })
}

fn negate(v: &Value) -> Result<Value, OperatorError> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Int(i) => Value::Long(-i64::from(*i)),
        Value::Long(i) => {
            Value::Long(i.checked_neg().ok_or_else(|| OperatorError::Data(format!("cannot negate {i}")))?)
        }
        Value::Float(f) => Value::Double(-f64::from(*f)),
        Value::Double(f) => Value::Double(-f),
        Value::Decimal(d) => Value::Decimal(Decimal { unscaled: -d.unscaled.clone(), scale: d.scale }),
        other => return Err(OperatorError::Data(format!("cannot subtract a {}", other.type_name()))),
    })
}

/// Takes one row's contribution back out of a measure's accumulator.
fn retract(measure: &Measure, current: Value, scope: &crate::expression::Scope<'_>) -> Result<Value, OperatorError> {
    Ok(match measure {
        Measure::Count => Value::Long(current.as_i64().unwrap_or(0) - 1),
        Measure::Sum(e) => add(&current, &negate(&e.evaluate(scope)?)?)?,
        Measure::Avg(e) => {
            let v = e.evaluate(scope)?;
            match (&current, v.is_null()) {
                (Value::Struct(r), false) => {
                    let sum = add(r.get("sum").unwrap_or(&Value::Null), &negate(&v)?)?;
                    let count = r.get("count").and_then(Value::as_i64).unwrap_or(0) - 1;
                    Value::Struct(Row::new().with("sum", sum).with("count", Value::Long(count)))
                }
                _ => current,
            }
        }
        Measure::TopN { of, by, .. } => {
            let TopNInput { weight, mut entries, position, .. } = top_n_input(of, by.as_ref(), scope, current)?;
            if let Ok(at) = position {
                let rows = entries[at].as_row().and_then(|r| r.get("rows")).and_then(Value::as_i64).unwrap_or(1) - 1;
                if rows <= 0 {
                    // The last record naming the candidate is gone, whatever its score.
                    entries.remove(at);
                } else if let Value::Struct(row) = &mut entries[at] {
                    let score = add(row.get("score").unwrap_or(&Value::Null), &negate(&weight)?)?;
                    row.set("score", score);
                    row.set("rows", Value::Long(rows));
                }
            }
            Value::Array(entries)
        }
        other => return Err(OperatorError::Unsupported(format!("{other:?} over a table's changelog"))),
    })
}

impl Aggregator {
    /// Applies one table change: the old row leaves its group, the new row joins its group.
    /// Returns the new result of every group touched (a tombstone for a group left empty).
    pub(super) fn on_change<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        group_by: &[(String, Expression)],
        measures: &[(String, Measure)],
        change: &TableChange,
    ) -> Result<Vec<Event>, OperatorError> {
        let mut touched: Vec<(Vec<u8>, Row)> = Vec::new();
        for (row, adding) in [(&change.old, false), (&change.new, true)] {
            let Some(row) = row else { continue };
            let event = Event::new(change.key.clone(), row.clone(), change.timestamp);
            let named = [("key", &event.key)];
            let scope = scope(&event, &named);
            let mut group = Row::with_capacity(group_by.len());
            for (name, expression) in group_by {
                group.push(Arc::from(name.as_str()), expression.evaluate(&scope)?);
            }
            let group = Value::Struct(group);
            let key = state_key(None, &group);
            let mut acc = self.load(state, &key)?.unwrap_or_else(|| {
                Row::new()
                    .with("group", group.clone())
                    .with("rows", Value::Long(0))
                    .with("measures", Value::Struct(Row::new()))
            });
            let mut accumulators = acc.get("measures").and_then(Value::as_row).cloned().unwrap_or_default();
            for (name, measure) in measures {
                let current = accumulators.get(name).cloned().unwrap_or(Value::Null);
                let next = if adding { update(measure, current, &scope)? } else { retract(measure, current, &scope)? };
                accumulators.set(name.as_str(), next);
            }
            let rows = acc.get("rows").and_then(Value::as_i64).unwrap_or(0) + if adding { 1 } else { -1 };
            acc.set("rows", Value::Long(rows));
            acc.set("measures", Value::Struct(accumulators));
            if rows <= 0 {
                state.delete(&self.store, key.clone())?;
            } else {
                state.put(&self.store, key.clone(), encode_row(&acc))?;
            }
            touched.retain(|(k, _)| *k != key);
            touched.push((key, acc));
        }
        Ok(touched
            .into_iter()
            .map(|(_, acc)| {
                let mut event = result(&acc, measures, change.timestamp);
                event.tombstone = acc.get("rows").and_then(Value::as_i64).unwrap_or(0) <= 0;
                event
            })
            .collect())
    }
}
