//! Grouped, optionally windowed aggregation with emit-on-update or emit-final.
//!
//! State per (window, group) is one accumulator row in the node's store, under the key
//! `window end ++ window start ++ group key` (times big-endian with the sign bit flipped, so
//! keys sort by window end and closing windows is one range scan). Unwindowed aggregates use
//! the group key alone and never close.
//!
//! Per record: compute the group, find its open windows (a record whose windows are all closed
//! is late: counted, not applied), update each window's accumulator and, with emit-on-update,
//! emit the new result. When stream time passes `end + grace`, a window closes: emit-final
//! emits its result once, and its state is dropped either way.
//!
//! Measures are exact: sums of integers stay integers and of decimals stay decimals;
//! `count_distinct` keeps the set of distinct values (in canonical form: `3` as int or long,
//! `1.5` and `1.50`, are one value); `top_n` keeps every candidate's score.
//! Output: key = the group fields (+ `window_start`, `window_end`), value = the same fields plus
//! one field per measure; the output time is the window start (the record time when
//! unwindowed), so results do not depend on arrival order.

use super::window::{Bounds, is_closed, windows_for};
use super::{Event, OperatorError};
use crate::expression::{Expression, Scope};
use crate::record::encoding::{decode_row, encode_row, key_bytes, length_prefixed, ordered_i64};
use crate::record::{Decimal, Row, TimeUnit, Value};
use crate::state::{StateBackend, StateError, TaskState};
use crate::topology::plan::{Measure, Window};
use crate::topology::spec::{Emit, WindowType};
use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// An aggregation step.
#[derive(Debug)]
pub struct Aggregator {
    pub(super) node: String,
    pub(super) store: String,
    window: Option<Window>,
    pub(super) emit: Emit,
    ttl_ms: Option<i64>,
    /// Session windows: the store indexing each group's sessions by start; sliding windows: the
    /// store buffering each group's records.
    side_store: Option<String>,
    /// `count_distinct` members, one entry per (group and window, measure, value); the
    /// accumulator keeps only the count. `None`: sets are kept in the accumulator (session and
    /// sliding windows, whose merges need them).
    distinct_store: Option<String>,
    /// Records dropped because every window they belong to had closed.
    pub late_records: AtomicU64,
}

pub(super) fn state_key(bounds: Option<Bounds>, group: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(b) = bounds {
        out.extend_from_slice(&ordered_i64(b.end));
        out.extend_from_slice(&ordered_i64(b.start));
    }
    out.extend_from_slice(&key_bytes(group));
    out
}

const EXPIRY_PREFIX: u8 = 0xFF;

fn millis(ts: i64) -> Value {
    Value::Timestamp { value: ts, unit: TimeUnit::Millis }
}

pub(super) fn data(message: String) -> OperatorError {
    OperatorError::Data(message)
}

/// `a + b` keeping exact types (null is the neutral element).
pub(super) fn add(a: &Value, b: &Value) -> Result<Value, OperatorError> {
    use Value as V;
    Ok(match (a, b) {
        (V::Null, x) | (x, V::Null) => x.clone(),
        (V::Int(_) | V::Long(_), V::Int(_) | V::Long(_)) => {
            let (x, y) = (a.as_i64().unwrap_or(0), b.as_i64().unwrap_or(0));
            V::Long(x.checked_add(y).ok_or_else(|| data(format!("sum overflows: {x} + {y}")))?)
        }
        (V::Decimal(x), V::Decimal(y)) => {
            let scale = x.scale.max(y.scale);
            let (x, y) = (x.rescale(scale), y.rescale(scale));
            match (x, y) {
                (Some(x), Some(y)) => V::Decimal(Decimal { unscaled: x.unscaled + y.unscaled, scale }),
                _ => return Err(data("decimal scale out of range".into())),
            }
        }
        (V::Decimal(d), i @ (V::Int(_) | V::Long(_))) | (i @ (V::Int(_) | V::Long(_)), V::Decimal(d)) => {
            add(&V::Decimal(d.clone()), &V::Decimal(Decimal::new(i.as_i64().unwrap_or(0), 0)))?
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => V::Double(x + y),
            _ => return Err(data(format!("cannot add a {} and a {}", a.type_name(), b.type_name()))),
        },
    })
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(f64::from(*i)),
        Value::Long(i) => Some(*i as f64),
        Value::Float(f) => Some(f64::from(*f)),
        Value::Double(f) => Some(*f),
        Value::Decimal(d) => Some(d.to_f64()),
        _ => None,
    }
}

/// Orders two values of comparable types (numbers, text, times).
pub(super) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(_) | Value::Long(_), Value::Int(_) | Value::Long(_)) => Some(a.as_i64()?.cmp(&b.as_i64()?)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
        (Value::Decimal(x), Value::Decimal(y)) => {
            let scale = x.scale.max(y.scale);
            Some(x.rescale(scale)?.unscaled.cmp(&y.rescale(scale)?.unscaled))
        }
        (
            Value::Timestamp { .. } | Value::LocalTimestamp { .. },
            Value::Timestamp { .. } | Value::LocalTimestamp { .. },
        ) => Some(a.epoch_millis()?.cmp(&b.epoch_millis()?)),
        _ => number(a)?.partial_cmp(&number(b)?),
    }
}

impl Aggregator {
    /// An aggregator for a node.
    pub fn new(
        node: &str,
        store: &str,
        window: Option<Window>,
        emit: Emit,
        ttl_ms: Option<i64>,
        side_store: Option<String>,
    ) -> Self {
        Aggregator {
            node: node.to_owned(),
            store: store.to_owned(),
            window,
            emit,
            ttl_ms,
            side_store,
            distinct_store: None,
            late_records: AtomicU64::new(0),
        }
    }

    /// Keeps `count_distinct` members in `store` (see the field).
    pub fn with_distinct_store(mut self, store: Option<String>) -> Self {
        self.distinct_store = store;
        self
    }

    /// Where a group's (and window's) `count_distinct` members start in the distinct store.
    fn members_prefix(state_key: &[u8]) -> Vec<u8> {
        let mut out = (state_key.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(state_key);
        out
    }

    /// Counts `value` into measure `index` of the group at `state_key`; returns the new count.
    fn count_member<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        store: &str,
        state_key: &[u8],
        index: usize,
        value: &Value,
        count: i64,
    ) -> Result<i64, OperatorError> {
        if value.is_null() {
            return Ok(count);
        }
        let mut member = Self::members_prefix(state_key);
        member.extend_from_slice(&(index as u16).to_be_bytes());
        member.extend_from_slice(&key_bytes(value));
        if state.get(store, &member)?.is_some() {
            return Ok(count);
        }
        state.put(store, member, Vec::new())?;
        Ok(count + 1)
    }

    /// Drops the `count_distinct` members of the group at `state_key`.
    fn drop_members<B: StateBackend>(&self, state: &mut TaskState<B>, state_key: &[u8]) -> Result<(), OperatorError> {
        let Some(store) = &self.distinct_store else { return Ok(()) };
        let prefix = Self::members_prefix(state_key);
        let mut end = prefix.clone();
        // The prefix's successor: the length prefix makes it end in a byte below 0xFF.
        while let Some(last) = end.pop() {
            if last < 0xFF {
                end.push(last + 1);
                break;
            }
        }
        let end = (!end.is_empty()).then_some(end);
        for (member, _) in state.range(store, &prefix, end.as_deref())? {
            state.delete(store, member)?;
        }
        Ok(())
    }

    /// The expiry-index entry of an unwindowed group: `0xFF ++ expiry time ++ group key`
    /// (group keys start with a value tag below 0xFF, so index entries never mix with them).
    fn expiry_key(expires_at: i64, group_key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + group_key.len());
        out.push(EXPIRY_PREFIX);
        out.extend_from_slice(&ordered_i64(expires_at));
        out.extend_from_slice(group_key);
        out
    }

    pub(super) fn load<B: StateBackend>(&self, state: &TaskState<B>, key: &[u8]) -> Result<Option<Row>, OperatorError> {
        state
            .get(&self.store, key)?
            .map(|b| {
                decode_row(&b).map_err(|e| {
                    OperatorError::State(StateError::Encoding { store: self.store.clone(), detail: e.to_string() })
                })
            })
            .transpose()
    }

    /// Applies one event; returns the updated results (emit-on-update) or nothing (emit-final).
    pub fn on_record<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        group_by: &[(String, Expression)],
        measures: &[(String, Measure)],
        event: &Event,
        stream_time: i64,
    ) -> Result<Vec<Event>, OperatorError> {
        let named = [("key", &event.key)];
        let scope = Scope { record: Some(&event.value), named: &named };
        let group = group_in(group_by, &scope)?;
        if let (Some(side), Some(window)) = (&self.side_store, &self.window) {
            return match window.window_type {
                WindowType::Sliding => {
                    self.on_sliding_record(state, side, window, &group, measures, event, stream_time)
                }
                _ => self.on_session_record(state, side, window, &group, measures, &scope, event, stream_time),
            };
        }
        let windows: Vec<Option<Bounds>> = match &self.window {
            None => vec![None],
            Some(w) => {
                let now = stream_time.max(event.timestamp);
                let open: Vec<Option<Bounds>> = windows_for(w, event.timestamp)
                    .into_iter()
                    .filter(|b| !is_closed(*b, w.grace_ms, now))
                    .map(Some)
                    .collect();
                if open.is_empty() {
                    self.late_records.fetch_add(1, AtomicOrdering::Relaxed);
                    metrics::counter!("happystreams_aggregate_late_records_total", "node" => self.node.clone())
                        .increment(1);
                    return Err(OperatorError::Late { node: self.node.clone(), event: Box::new(event.clone()) });
                }
                open
            }
        };
        let mut outputs = Vec::new();
        for bounds in windows {
            let key = state_key(bounds, &group);
            let loaded = match (self.load(state, &key)?, self.ttl_ms) {
                // A group idle past its ttl starts afresh, even if the record that notices it is
                // the one moving stream time.
                (Some(row), Some(_))
                    if row
                        .get("expires")
                        .and_then(Value::as_i64)
                        .is_some_and(|e| e <= stream_time.max(event.timestamp)) =>
                {
                    if let Some(old) = row.get("expires").and_then(Value::as_i64) {
                        state.delete(&self.store, Self::expiry_key(old, &key))?;
                    }
                    self.drop_members(state, &key)?;
                    None
                }
                (loaded, _) => loaded,
            };
            let mut acc = match loaded {
                Some(row) => row,
                None => {
                    let mut fresh = Row::new().with("group", group.clone());
                    if let Some(b) = bounds {
                        fresh = fresh.with("start", Value::Long(b.start)).with("end", Value::Long(b.end));
                    }
                    fresh.with("measures", Value::Struct(Row::new()))
                }
            };
            let mut accumulators = match acc.get("measures") {
                Some(Value::Struct(row)) => row.clone(),
                _ => Row::new(),
            };
            for (index, (name, measure)) in measures.iter().enumerate() {
                let current = accumulators.get(name).cloned().unwrap_or(Value::Null);
                let next = match (measure, &self.distinct_store) {
                    // Members in their own entries; the accumulator is the count. (A set kept by
                    // an earlier version stays a set.)
                    (Measure::CountDistinct(e), Some(store)) if !matches!(current, Value::Array(_)) => {
                        let value = e.evaluate(&scope)?;
                        let count = current.as_i64().unwrap_or(0);
                        Value::Long(self.count_member(state, store, &key, index, &value, count)?)
                    }
                    _ => update(measure, current, &scope)?,
                };
                accumulators.set(name.as_str(), next);
            }
            acc.set("measures", Value::Struct(accumulators));
            if let (Some(ttl), None) = (self.ttl_ms, bounds) {
                // Move the group's expiry: drop the old index entry, add the new one.
                if let Some(old) = acc.get("expires").and_then(Value::as_i64) {
                    state.delete(&self.store, Self::expiry_key(old, &key))?;
                }
                let expires = stream_time.max(event.timestamp).saturating_add(ttl);
                acc.set("expires", Value::Long(expires));
                state.put(&self.store, Self::expiry_key(expires, &key), Vec::new())?;
            }
            state.put(&self.store, key, encode_row(&acc))?;
            if self.emit == Emit::OnUpdate {
                outputs.push(result(&acc, measures, event.timestamp));
            }
        }
        Ok(outputs)
    }

    /// Closes every window whose end + grace is at or before `stream_time`; returns the final
    /// results (emit-final) and drops the windows' state.
    pub fn on_stream_time<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        measures: &[(String, Measure)],
        stream_time: i64,
    ) -> Result<Vec<Event>, OperatorError> {
        let Some(window) = &self.window else {
            self.expire_groups(state, stream_time)?;
            return Ok(Vec::new());
        };
        if let (WindowType::Sliding, Some(side)) = (window.window_type, &self.side_store) {
            return self.close_sliding(state, side, window, measures, stream_time);
        }
        // Windows with end <= stream_time - grace: keys below ordered_i64(that + 1). Sessions
        // close once no acceptable record can extend them: end + gap + grace < stream_time.
        let cutoff = match &self.side_store {
            Some(_) => stream_time.saturating_sub(window.size_ms).saturating_sub(window.grace_ms),
            None => stream_time.saturating_sub(window.grace_ms).saturating_add(1),
        };
        let mut outputs = Vec::new();
        for (key, bytes) in state.range(&self.store, &[], Some(&ordered_i64(cutoff)))? {
            let acc = decode_row(&bytes).map_err(|e| {
                OperatorError::State(StateError::Encoding { store: self.store.clone(), detail: e.to_string() })
            })?;
            if self.emit == Emit::Final {
                outputs.push(result(&acc, measures, 0));
            }
            if let Some(index) = &self.side_store
                && let Some((start, end)) = bounds_of(&acc)
            {
                state.delete(index, session_index_key(&key[16..], start, end))?;
            }
            self.drop_members(state, &key)?;
            state.delete(&self.store, key)?;
        }
        Ok(outputs)
    }
}

pub(super) fn bounds_of(acc: &Row) -> Option<(i64, i64)> {
    Some((acc.get("start").and_then(Value::as_i64)?, acc.get("end").and_then(Value::as_i64)?))
}

/// Session index key: `len(group) ++ group ++ start ++ end`.
pub(super) fn session_index_key(group_key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut out = length_prefixed(group_key, 16);
    out.extend_from_slice(&ordered_i64(start));
    out.extend_from_slice(&ordered_i64(end));
    out
}

impl Aggregator {
    /// Unwindowed aggregates with a `ttl`: drops the groups whose last update is `ttl` older
    /// than stream time (their next record starts them afresh). Nothing is emitted.
    fn expire_groups<B: StateBackend>(&self, state: &mut TaskState<B>, stream_time: i64) -> Result<(), OperatorError> {
        if self.ttl_ms.is_none() {
            return Ok(());
        }
        let from = [EXPIRY_PREFIX];
        let to = Self::expiry_key(stream_time.saturating_add(1), &[]);
        for (index_key, _) in state.range(&self.store, &from, Some(&to))? {
            self.drop_members(state, &index_key[9..])?;
            state.delete(&self.store, index_key[9..].to_vec())?;
            state.delete(&self.store, index_key)?;
            metrics::counter!("happystreams_aggregate_expired_groups_total", "node" => self.node.clone()).increment(1);
        }
        Ok(())
    }
}

pub(super) fn update(measure: &Measure, current: Value, scope: &Scope<'_>) -> Result<Value, OperatorError> {
    Ok(match measure {
        Measure::Count => Value::Long(current.as_i64().unwrap_or(0) + 1),
        Measure::Sum(e) => add(&current, &e.evaluate(scope)?)?,
        Measure::Min(e) | Measure::Max(e) => {
            let v = e.evaluate(scope)?;
            let keep_new = match (&current, &v) {
                (_, Value::Null) => false,
                (Value::Null, _) => true,
                (c, n) => {
                    let order = compare(n, c)
                        .ok_or_else(|| data(format!("cannot compare a {} with a {}", n.type_name(), c.type_name())))?;
                    if matches!(measure, Measure::Min(_)) {
                        order == Ordering::Less
                    } else {
                        order == Ordering::Greater
                    }
                }
            };
            if keep_new { v } else { current }
        }
        Measure::Avg(e) => {
            let v = e.evaluate(scope)?;
            let (sum, count) = match &current {
                Value::Struct(r) => {
                    (r.get("sum").cloned().unwrap_or(Value::Null), r.get("count").and_then(Value::as_i64).unwrap_or(0))
                }
                _ => (Value::Null, 0),
            };
            if v.is_null() {
                current
            } else {
                Value::Struct(Row::new().with("sum", add(&sum, &v)?).with("count", Value::Long(count + 1)))
            }
        }
        Measure::CountDistinct(e) => {
            let v = e.evaluate(scope)?;
            let mut set = match current {
                Value::Array(items) => items,
                _ => Vec::new(),
            };
            if !v.is_null() {
                let item = Value::Bytes(key_bytes(&v));
                if let Err(at) = set.binary_search_by(|x| byte_order(x, &item)) {
                    set.insert(at, item);
                }
            }
            Value::Array(set)
        }
        Measure::TopN { of, by, .. } => {
            let TopNInput { candidate, id, weight, mut entries, position } =
                top_n_input(of, by.as_ref(), scope, current)?;
            match position {
                Ok(at) => {
                    if let Some(Value::Struct(row)) = entries.get_mut(at) {
                        let score = add(row.get("score").unwrap_or(&Value::Null), &weight)?;
                        row.set("score", score);
                        // How many records name the candidate: it leaves a changelog aggregate
                        // when the last one is taken back, whatever its score.
                        let rows = row.get("rows").and_then(Value::as_i64).unwrap_or(1) + 1;
                        row.set("rows", Value::Long(rows));
                    }
                }
                Err(at) => entries.insert(
                    at,
                    Value::Struct(
                        Row::new()
                            .with("id", id)
                            .with("value", candidate)
                            .with("score", weight)
                            .with("rows", Value::Long(1)),
                    ),
                ),
            }
            Value::Array(entries)
        }
    })
}

/// One record's say in a `top_n`: the candidate it names, the candidate's id (its canonical
/// key bytes), the record's weight, the current candidates (sorted by id) and where the
/// candidate's entry is (`Err`: where it would go).
pub(super) struct TopNInput {
    pub candidate: Value,
    pub id: Value,
    pub weight: Value,
    pub entries: Vec<Value>,
    pub position: Result<usize, usize>,
}

pub(super) fn top_n_input(
    of: &Expression,
    by: Option<&Expression>,
    scope: &Scope<'_>,
    current: Value,
) -> Result<TopNInput, OperatorError> {
    let candidate = of.evaluate(scope)?;
    let weight = match by {
        Some(b) => b.evaluate(scope)?,
        None => Value::Long(1),
    };
    let entries = match current {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    let id = Value::Bytes(key_bytes(&candidate));
    let position =
        entries.binary_search_by(|x| byte_order(x.as_row().and_then(|r| r.get("id")).unwrap_or(&Value::Null), &id));
    Ok(TopNInput { candidate, id, weight, entries, position })
}

pub(super) fn byte_order(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

fn finish(measure: &Measure, acc: &Value) -> Value {
    match measure {
        Measure::Count => Value::Long(acc.as_i64().unwrap_or(0)),
        Measure::Sum(_) | Measure::Min(_) | Measure::Max(_) => acc.clone(),
        Measure::Avg(_) => match acc {
            Value::Struct(r) => match (r.get("sum").and_then(number), r.get("count").and_then(Value::as_i64)) {
                (Some(sum), Some(count)) if count > 0 => Value::Double(sum / count as f64),
                _ => Value::Null,
            },
            _ => Value::Null,
        },
        Measure::CountDistinct(_) => Value::Long(match acc {
            Value::Array(items) => items.len() as i64,
            Value::Long(count) => *count,
            _ => 0,
        }),
        Measure::TopN { n, .. } => {
            let mut entries: Vec<&Row> = match acc {
                Value::Array(items) => items.iter().filter_map(Value::as_row).collect(),
                _ => Vec::new(),
            };
            entries.sort_by(|a, b| {
                let by_score = compare(b.get("score").unwrap_or(&Value::Null), a.get("score").unwrap_or(&Value::Null))
                    .unwrap_or(Ordering::Equal);
                by_score
                    .then_with(|| byte_order(a.get("id").unwrap_or(&Value::Null), b.get("id").unwrap_or(&Value::Null)))
            });
            Value::Array(
                entries
                    .into_iter()
                    .take(*n)
                    .map(|r| {
                        Value::Struct(
                            Row::new()
                                .with("value", r.get("value").cloned().unwrap_or(Value::Null))
                                .with("score", r.get("score").cloned().unwrap_or(Value::Null)),
                        )
                    })
                    .collect(),
            )
        }
    }
}

/// The current result of an unwindowed aggregate for a group key (a join's lookup of an
/// aggregate node's table).
pub fn lookup_result<B: StateBackend>(
    state: &TaskState<B>,
    store: &str,
    group_key: &Value,
    measures: &[(String, Measure)],
) -> Result<Option<Row>, OperatorError> {
    let Some(bytes) = state.get(store, &key_bytes(group_key))? else { return Ok(None) };
    let acc = decode_row(&bytes)
        .map_err(|e| OperatorError::State(StateError::Encoding { store: store.to_owned(), detail: e.to_string() }))?;
    Ok(Some(result(&acc, measures, 0).value))
}

/// The output event for an accumulator.
pub fn result(acc: &Row, measures: &[(String, Measure)], record_time: i64) -> Event {
    let group = acc.get("group").and_then(Value::as_row).cloned().unwrap_or_default();
    let window = match (acc.get("start").and_then(Value::as_i64), acc.get("end").and_then(Value::as_i64)) {
        (Some(start), Some(end)) => Some((start, end)),
        _ => None,
    };
    let mut key = group.clone();
    let mut value = group;
    if let Some((start, end)) = window {
        for row in [&mut key, &mut value] {
            row.push("window_start", millis(start));
            row.push("window_end", millis(end));
        }
    }
    let accumulators = acc.get("measures").and_then(Value::as_row);
    for (name, measure) in measures {
        let current = accumulators.and_then(|a| a.get(name)).unwrap_or(&Value::Null);
        value.push(Arc::from(name.as_str()), finish(measure, current));
    }
    Event::new(Value::Struct(key), value, window.map_or(record_time, |(start, _)| start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_stay_exact_and_overflow_is_an_error() {
        assert_eq!(add(&Value::Long(2), &Value::Int(3)).unwrap(), Value::Long(5));
        assert_eq!(
            add(&Value::Decimal(Decimal::new(150, 2)), &Value::Decimal(Decimal::new(1, 1))).unwrap(),
            Value::Decimal(Decimal::new(160, 2)),
            "1.50 + 0.1 = 1.60 at the larger scale"
        );
        assert_eq!(
            add(&Value::Decimal(Decimal::new(5, 1)), &Value::Long(2)).unwrap(),
            Value::Decimal(Decimal::new(25, 1))
        );
        assert_eq!(add(&Value::Null, &Value::Long(7)).unwrap(), Value::Long(7));
        assert!(add(&Value::Long(i64::MAX), &Value::Long(1)).is_err());
        assert!(add(&Value::String("a".into()), &Value::Long(1)).is_err());
    }

    #[test]
    fn comparisons_are_exact_for_integers_decimals_and_times() {
        assert_eq!(
            compare(&Value::Long(9_007_199_254_740_993), &Value::Long(9_007_199_254_740_992)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare(&Value::Decimal(Decimal::new(150, 2)), &Value::Decimal(Decimal::new(15, 1))),
            Some(Ordering::Equal)
        );
        let t = |ms| Value::Timestamp { value: ms, unit: crate::record::TimeUnit::Millis };
        assert_eq!(compare(&t(1), &t(2)), Some(Ordering::Less));
        assert_eq!(compare(&Value::String("a".into()), &Value::Long(1)), None);
    }

    #[test]
    fn top_n_ranks_by_score_then_value_and_keeps_n() {
        let of = Expression::compile("u").unwrap();
        let measure = Measure::TopN { n: 2, of, by: None };
        let mut acc = Value::Null;
        for u in ["b", "a", "b", "c", "a", "c"] {
            let row = Row::new().with("u", Value::String(u.into()));
            acc = update(&measure, acc, &Scope::of(&row)).unwrap();
        }
        let top = finish(&measure, &acc);
        let names: Vec<String> = match top {
            Value::Array(items) => {
                items.iter().map(|i| i.as_row().unwrap().get("value").unwrap().as_str().unwrap().to_owned()).collect()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(names, vec!["a", "b"], "three tied at 2: the first two values win");
    }
}

fn group_in(group_by: &[(String, Expression)], scope: &Scope<'_>) -> Result<Value, OperatorError> {
    let mut group = Row::with_capacity(group_by.len());
    for (name, expression) in group_by {
        group.push(Arc::from(name.as_str()), expression.evaluate(scope)?);
    }
    Ok(Value::Struct(group))
}

/// The group an event belongs to: the key its aggregate state (and repartition record) has.
pub fn group_of(group_by: &[(String, Expression)], event: &Event) -> Result<Value, OperatorError> {
    let named = [("key", &event.key)];
    group_in(group_by, &Scope { record: Some(&event.value), named: &named })
}
