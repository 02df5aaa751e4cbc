//! Session windows: a group's records whose times are at most `gap` apart form one session;
//! a record bridging two sessions merges them. Sessions live in the aggregate store like other
//! windows (`end ++ start ++ group`), indexed per group in the side store (`len(group) ++ group
//! ++ start ++ end`) so a record finds the sessions it touches with one range scan. With
//! emit-on-update a merge emits tombstones for the merged sessions and the merged result.

use super::aggregate::{Aggregator, add, byte_order, compare, data, result, session_index_key, state_key, update};
use super::window::Bounds;
use super::{Event, OperatorError};
use crate::expression::Scope;
use crate::record::encoding::{encode_row, key_bytes};
use crate::record::{Row, Value};
use crate::state::{StateBackend, TaskState};
use crate::topology::plan::{Measure, Window};
use crate::topology::spec::Emit;
use std::cmp::Ordering;
use std::sync::atomic::Ordering as AtomicOrdering;

impl Aggregator {
    /// Session windows: the record's session `[t, t]` merges with every session of its group
    /// whose end is within `gap` before it or whose start is within `gap` after it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_session_record<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        index: &str,
        window: &Window,
        group: &Value,
        measures: &[(String, Measure)],
        scope: &Scope<'_>,
        event: &Event,
        stream_time: i64,
    ) -> Result<Vec<Event>, OperatorError> {
        let (t, gap) = (event.timestamp, window.size_ms);
        let now = stream_time.max(t);
        if t < now.saturating_sub(window.grace_ms) {
            self.late_records.fetch_add(1, AtomicOrdering::Relaxed);
            metrics::counter!("happystreams_aggregate_late_records_total", "node" => self.node.clone()).increment(1);
            return Err(OperatorError::Late { node: self.node.clone(), event: Box::new(event.clone()) });
        }
        let group_key = key_bytes(group);
        let prefix = session_index_key(&group_key, i64::MIN, i64::MIN);
        let upper = session_index_key(&group_key, t.saturating_add(gap).saturating_add(1), i64::MIN);
        let mut merged: Option<Row> = None;
        let (mut start, mut end) = (t, t);
        let mut outputs = Vec::new();
        for (index_key, _) in state.range(index, &prefix[..prefix.len() - 16], Some(&upper))? {
            let Some((s, e)) = index_bounds(&index_key) else { continue };
            if e < t.saturating_sub(gap) {
                continue;
            }
            let primary = state_key(Some(Bounds { start: s, end: e }), group);
            if let Some(acc) = self.load(state, &primary)? {
                if self.emit == Emit::OnUpdate {
                    let mut retraction = result(&acc, measures, 0);
                    retraction.tombstone = true;
                    outputs.push(retraction);
                }
                merged = Some(match merged {
                    None => acc,
                    Some(previous) => merge_accumulators(previous, &acc, measures)?,
                });
            }
            start = start.min(s);
            end = end.max(e);
            state.delete(index, index_key)?;
            state.delete(&self.store, primary)?;
        }
        let bounds = Bounds { start, end };
        let mut acc = merged
            .unwrap_or_else(|| Row::new().with("group", group.clone()).with("measures", Value::Struct(Row::new())));
        acc.set("start", Value::Long(bounds.start));
        acc.set("end", Value::Long(bounds.end));
        let mut accumulators = acc.get("measures").and_then(Value::as_row).cloned().unwrap_or_default();
        for (name, measure) in measures {
            let current = accumulators.get(name).cloned().unwrap_or(Value::Null);
            accumulators.set(name.as_str(), update(measure, current, scope)?);
        }
        acc.set("measures", Value::Struct(accumulators));
        state.put(index, session_index_key(&group_key, bounds.start, bounds.end), Vec::new())?;
        state.put(&self.store, state_key(Some(bounds), group), encode_row(&acc))?;
        if self.emit == Emit::OnUpdate {
            // A retraction of the session being replaced by itself (same bounds) is not needed.
            let current = result(&acc, measures, 0);
            outputs.retain(|r| r.key != current.key);
            outputs.push(current);
        }
        Ok(outputs)
    }
}

fn index_bounds(index_key: &[u8]) -> Option<(i64, i64)> {
    let n = index_key.len();
    let start: [u8; 8] = index_key.get(n.checked_sub(16)?..n - 8)?.try_into().ok()?;
    let end: [u8; 8] = index_key.get(n - 8..)?.try_into().ok()?;
    Some((crate::record::encoding::from_ordered_i64(start), crate::record::encoding::from_ordered_i64(end)))
}

/// Combines two accumulators of the same measures (session merges).
fn merge_accumulators(mut into: Row, other: &Row, measures: &[(String, Measure)]) -> Result<Row, OperatorError> {
    let mine = into.get("measures").and_then(Value::as_row).cloned().unwrap_or_default();
    let theirs = other.get("measures").and_then(Value::as_row).cloned().unwrap_or_default();
    let mut combined = Row::new();
    for (name, measure) in measures {
        let a = mine.get(name).cloned().unwrap_or(Value::Null);
        let b = theirs.get(name).cloned().unwrap_or(Value::Null);
        combined.push(name.as_str(), merge(measure, a, b)?);
    }
    into.set("measures", Value::Struct(combined));
    Ok(into)
}

fn merge(measure: &Measure, a: Value, b: Value) -> Result<Value, OperatorError> {
    Ok(match measure {
        Measure::Count | Measure::Sum(_) => add(&a, &b)?,
        Measure::Min(_) | Measure::Max(_) => match (&a, &b) {
            (Value::Null, _) => b,
            (_, Value::Null) => a,
            _ => {
                let order = compare(&b, &a)
                    .ok_or_else(|| data(format!("cannot compare a {} with a {}", b.type_name(), a.type_name())))?;
                let take_b = if matches!(measure, Measure::Min(_)) {
                    order == Ordering::Less
                } else {
                    order == Ordering::Greater
                };
                if take_b { b } else { a }
            }
        },
        Measure::Avg(_) => {
            let part = |v: &Value| match v {
                Value::Struct(r) => {
                    (r.get("sum").cloned().unwrap_or(Value::Null), r.get("count").and_then(Value::as_i64).unwrap_or(0))
                }
                _ => (Value::Null, 0),
            };
            let ((sa, ca), (sb, cb)) = (part(&a), part(&b));
            if ca + cb == 0 {
                Value::Null
            } else {
                Value::Struct(Row::new().with("sum", add(&sa, &sb)?).with("count", Value::Long(ca + cb)))
            }
        }
        Measure::CountDistinct(_) => {
            let mut set = match a {
                Value::Array(items) => items,
                _ => Vec::new(),
            };
            if let Value::Array(items) = b {
                for item in items {
                    if let Err(at) = set.binary_search_by(|x| byte_order(x, &item)) {
                        set.insert(at, item);
                    }
                }
            }
            Value::Array(set)
        }
        Measure::TopN { .. } => {
            let mut entries = match a {
                Value::Array(items) => items,
                _ => Vec::new(),
            };
            if let Value::Array(items) = b {
                for item in items {
                    let id = item.as_row().and_then(|r| r.get("id")).cloned().unwrap_or(Value::Null);
                    match entries.binary_search_by(|x| {
                        byte_order(x.as_row().and_then(|r| r.get("id")).unwrap_or(&Value::Null), &id)
                    }) {
                        Ok(at) => {
                            if let (Some(Value::Struct(row)), Some(other)) = (entries.get_mut(at), item.as_row()) {
                                let total = add(
                                    row.get("score").unwrap_or(&Value::Null),
                                    other.get("score").unwrap_or(&Value::Null),
                                )?;
                                row.set("score", total);
                                let rows = row.get("rows").and_then(Value::as_i64).unwrap_or(1)
                                    + other.get("rows").and_then(Value::as_i64).unwrap_or(1);
                                row.set("rows", Value::Long(rows));
                            }
                        }
                        Err(at) => entries.insert(at, item),
                    }
                }
            }
            Value::Array(entries)
        }
    })
}
