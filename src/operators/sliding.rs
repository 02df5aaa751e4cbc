//! Sliding windows: for every record at time `r`, the window `[r − size, r]` over its group —
//! "the last `size` of event time before each record", as Kafka Streams' sliding windows.
//!
//! The group's records are buffered in the side store under `len(group) ++ group ++ time ++
//! sequence`; a window's result is a range scan of that buffer. A record at `t` opens its own
//! window and changes the windows of the group's records in `(t, t + size]`: with emit-on-update
//! every changed window is emitted again. A window closes when stream time passes `r + grace`
//! (emit-final emits it then, once per group and time). A record older than stream time − grace
//! is late: counted and dropped. Buffered records leave once no open window can contain them.
//!
//! Index entries in the side store: `0xFE ++ time ++ group` (windows to close) and `0xFD ++ time
//! ++ sequence` → buffer key (records to expire).

use super::aggregate::{Aggregator, result, update};
use super::{Event, OperatorError};
use crate::expression::Scope;
use crate::record::encoding::{
    decode, decode_row, encode, encode_row, from_ordered_i64, key_bytes, length_prefixed, ordered_i64,
};
use crate::record::{Row, Value};
use crate::state::{StateBackend, StateError, TaskState};
use crate::topology::plan::{Measure, Window};
use crate::topology::spec::Emit;
use std::sync::atomic::Ordering;

const CLOSE_INDEX: u8 = 0xFE;
const EXPIRY_INDEX: u8 = 0xFD;
const SEQUENCE_KEY: &[u8] = b"\xff\xffsequence";

fn group_prefix(group_key: &[u8]) -> Vec<u8> {
    length_prefixed(group_key, 16)
}

fn with_time(prefix: &[u8], t: i64) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(&ordered_i64(t));
    out
}

fn indexed(tag: u8, t: i64, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + rest.len());
    out.push(tag);
    out.extend_from_slice(&ordered_i64(t));
    out.extend_from_slice(rest);
    out
}

impl Aggregator {
    fn encoding_error(&self, store: &str, e: impl ToString) -> OperatorError {
        OperatorError::State(StateError::Encoding { store: store.to_owned(), detail: e.to_string() })
    }

    fn next_sequence<B: StateBackend>(&self, state: &mut TaskState<B>, side: &str) -> Result<u64, OperatorError> {
        let current = match state.get(side, SEQUENCE_KEY)? {
            Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| self.encoding_error(side, "sequence"))?),
            None => 0,
        };
        state.put(side, SEQUENCE_KEY.to_vec(), (current + 1).to_be_bytes().to_vec())?;
        Ok(current)
    }

    /// The result of the window ending at `end` for a group.
    #[allow(clippy::too_many_arguments)]
    fn sliding_window<B: StateBackend>(
        &self,
        state: &TaskState<B>,
        side: &str,
        window: &Window,
        group: &Value,
        prefix: &[u8],
        measures: &[(String, Measure)],
        end: i64,
    ) -> Result<Event, OperatorError> {
        let start = end.saturating_sub(window.size_ms);
        let mut accumulators = Row::new();
        for (_, bytes) in
            state.range(side, &with_time(prefix, start), Some(&with_time(prefix, end.saturating_add(1))))?
        {
            let stored = decode_row(&bytes).map_err(|e| self.encoding_error(side, e))?;
            let key = stored.get("key").cloned().unwrap_or(Value::Null);
            let row = stored.get("row").and_then(Value::as_row).cloned().unwrap_or_default();
            let named = [("key", &key)];
            let scope = Scope { record: Some(&row), named: &named };
            for (name, measure) in measures {
                let current = accumulators.get(name).cloned().unwrap_or(Value::Null);
                accumulators.set(name.as_str(), update(measure, current, &scope)?);
            }
        }
        let acc = Row::new()
            .with("group", group.clone())
            .with("start", Value::Long(start))
            .with("end", Value::Long(end))
            .with("measures", Value::Struct(accumulators));
        Ok(result(&acc, measures, 0))
    }

    /// Buffers a record and returns the windows it changed (emit-on-update).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_sliding_record<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        side: &str,
        window: &Window,
        group: &Value,
        measures: &[(String, Measure)],
        event: &Event,
        stream_time: i64,
    ) -> Result<Vec<Event>, OperatorError> {
        let t = event.timestamp;
        if t < stream_time.max(t).saturating_sub(window.grace_ms) {
            self.late_records.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("happystreams_aggregate_late_records_total", "node" => self.node.clone()).increment(1);
            return Err(OperatorError::Late { node: self.node.clone(), event: Box::new(event.clone()) });
        }
        let group_key = key_bytes(group);
        let prefix = group_prefix(&group_key);
        let sequence = self.next_sequence(state, side)?;
        let mut buffer_key = with_time(&prefix, t);
        buffer_key.extend_from_slice(&sequence.to_be_bytes());
        let stored = Row::new().with("key", event.key.clone()).with("row", Value::Struct(event.value.clone()));
        state.put(side, buffer_key.clone(), encode_row(&stored))?;
        state.put(side, indexed(EXPIRY_INDEX, t, &sequence.to_be_bytes()), buffer_key)?;
        state.put(side, indexed(CLOSE_INDEX, t, &group_key), encode(group))?;
        if self.emit != Emit::OnUpdate {
            return Ok(Vec::new());
        }
        // Its own window, then every later window of the group that now contains it.
        let mut ends = vec![t];
        for (later, _) in state.range(
            side,
            &with_time(&prefix, t.saturating_add(1)),
            Some(&with_time(&prefix, t.saturating_add(window.size_ms).saturating_add(1))),
        )? {
            let time: [u8; 8] = later
                .get(prefix.len()..prefix.len() + 8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| self.encoding_error(side, "buffer key"))?;
            let end = from_ordered_i64(time);
            if ends.last() != Some(&end) {
                ends.push(end);
            }
        }
        ends.iter().map(|end| self.sliding_window(state, side, window, group, &prefix, measures, *end)).collect()
    }

    /// Closes windows ending before stream time − grace (emit-final emits them) and drops
    /// buffered records no open window can contain.
    pub(super) fn close_sliding<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        side: &str,
        window: &Window,
        measures: &[(String, Measure)],
        stream_time: i64,
    ) -> Result<Vec<Event>, OperatorError> {
        let closed_before = stream_time.saturating_sub(window.grace_ms);
        let mut outputs = Vec::new();
        for (index, group_bytes) in
            state.range(side, &[CLOSE_INDEX], Some(&indexed(CLOSE_INDEX, closed_before, &[])))?
        {
            if self.emit == Emit::Final {
                let time: [u8; 8] = index
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| self.encoding_error(side, "close index"))?;
                let group = decode(&group_bytes).map_err(|e| self.encoding_error(side, e))?;
                let prefix = group_prefix(&index[9..]);
                outputs.push(self.sliding_window(
                    state,
                    side,
                    window,
                    &group,
                    &prefix,
                    measures,
                    from_ordered_i64(time),
                )?);
            }
            state.delete(side, index)?;
        }
        // A record at r is in the windows ending in [r, r + size]; all those are closed once
        // r + size < closed_before.
        let expired_before = closed_before.saturating_sub(window.size_ms);
        for (index, buffer_key) in
            state.range(side, &[EXPIRY_INDEX], Some(&indexed(EXPIRY_INDEX, expired_before, &[])))?
        {
            state.delete(side, buffer_key)?;
            state.delete(side, index)?;
        }
        Ok(outputs)
    }
}
