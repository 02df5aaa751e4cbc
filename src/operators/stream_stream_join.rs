//! Stream-stream join within a time window (inner): two records with the same key join when
//! their event times are at most `within` apart, whichever arrives first.
//!
//! Each side buffers its records in its own store under `key ++ event time ++ sequence`, so the
//! partners of a record are one range scan. A record older than `stream time - within - grace`
//! is late: counted and dropped. Buffered records of a key that no acceptable record can pair
//! with any more are removed when the key is seen again (records of keys never seen again stay
//! until a later version adds a time-ordered sweep).
//! The joined record is the left record with the right one under the join's alias, stamped with
//! the later of the two event times.

use super::{Event, OperatorError};
use crate::record::encoding::{decode_row, encode_row, key_bytes, ordered_i64};
use crate::record::Value;
use crate::state::{StateBackend, StateError, TaskState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which input a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The node's own input (`from`).
    Left,
    /// The joined stream (`join: {stream: ...}`).
    Right,
}

/// One stream-stream join step.
#[derive(Debug)]
pub struct StreamStreamJoin {
    node: String,
    left_store: String,
    right_store: String,
    alias: Arc<str>,
    within_ms: i64,
    grace_ms: i64,
    /// Records dropped because they arrived after the join window and grace.
    pub late_records: AtomicU64,
    /// Joined records emitted.
    pub joined: AtomicU64,
}

const SEQUENCE_KEY: &[u8] = b"\xff\xffsequence";


fn prefix(key: &Value) -> Vec<u8> {
    let k = key_bytes(key);
    let mut out = Vec::with_capacity(4 + k.len() + 16);
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(&k);
    out
}

fn at(prefix: &[u8], ts: i64) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(&ordered_i64(ts));
    out
}

impl StreamStreamJoin {
    /// A join keeping each side in its own store.
    pub fn new(node: &str, stores: &[String], alias: &str, within_ms: i64, grace_ms: i64) -> Result<Self, OperatorError> {
        let [left_store, right_store] = stores else {
            return Err(OperatorError::Config(format!("stream-stream join of `{node}` needs two stores")));
        };
        Ok(StreamStreamJoin {
            node: node.to_owned(),
            left_store: left_store.clone(),
            right_store: right_store.clone(),
            alias: Arc::from(alias),
            within_ms,
            grace_ms,
            late_records: AtomicU64::new(0),
            joined: AtomicU64::new(0),
        })
    }

    fn encoding(&self, store: &str, e: impl ToString) -> OperatorError {
        OperatorError::State(StateError::Encoding { store: store.to_owned(), detail: e.to_string() })
    }

    fn next_sequence<B: StateBackend>(&self, state: &mut TaskState<B>) -> Result<u64, OperatorError> {
        let current = match state.get(&self.left_store, SEQUENCE_KEY)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| self.encoding(&self.left_store, "sequence"))?),
            None => 0,
        };
        state.put(&self.left_store, SEQUENCE_KEY.to_vec(), (current + 1).to_be_bytes().to_vec())?;
        Ok(current)
    }

    /// Buffers `event` on `side` and returns its joins with the other side's buffered records.
    pub fn on_record<B: StateBackend>(&self, state: &mut TaskState<B>, side: Side, event: Event, stream_time: i64) -> Result<Vec<Event>, OperatorError> {
        if event.key.is_null() {
            // As in Kafka Streams: a record without a key cannot join.
            metrics::counter!("join_null_keys_total", "node" => self.node.clone()).increment(1);
            return Ok(Vec::new());
        }
        let now = stream_time.max(event.timestamp);
        let horizon = now.saturating_sub(self.within_ms).saturating_sub(self.grace_ms);
        if event.timestamp < horizon {
            self.late_records.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("join_late_records_total", "node" => self.node.clone()).increment(1);
            return Ok(Vec::new());
        }
        let (mine, theirs) = match side {
            Side::Left => (&self.left_store, &self.right_store),
            Side::Right => (&self.right_store, &self.left_store),
        };
        let key_prefix = prefix(&event.key);
        // Forget this key's records that nothing can join any more: a record accepted from now
        // on has a time of at least `horizon`, so it pairs only with times from `horizon - within`.
        let forgotten = horizon.saturating_sub(self.within_ms);
        for store in [mine, theirs] {
            for (stale, _) in state.range(store, &at(&key_prefix, i64::MIN), Some(&at(&key_prefix, forgotten)))? {
                state.delete(store, stale)?;
            }
        }
        let from = at(&key_prefix, event.timestamp.saturating_sub(self.within_ms));
        let to = at(&key_prefix, event.timestamp.saturating_add(self.within_ms).saturating_add(1));
        let mut joined = Vec::new();
        for (_, bytes) in state.range(theirs, &from, Some(&to))? {
            // Stored value: the event time (8 bytes, big-endian) then the row.
            let (stamp, row) = bytes.split_at_checked(8).ok_or_else(|| self.encoding(theirs, "buffered record too short"))?;
            let partner_ts = i64::from_be_bytes(stamp.try_into().map_err(|_| self.encoding(theirs, "buffered time"))?);
            let partner_row = decode_row(row).map_err(|e| self.encoding(theirs, e))?;
            let (mut left, right) = match side {
                Side::Left => (event.value.clone(), partner_row),
                Side::Right => (partner_row, event.value.clone()),
            };
            left.set(self.alias.clone(), Value::Struct(right));
            joined.push(Event::new(event.key.clone(), left, event.timestamp.max(partner_ts)));
        }
        self.joined.fetch_add(joined.len() as u64, Ordering::Relaxed);
        let sequence = self.next_sequence(state)?;
        let mut buffer_key = at(&key_prefix, event.timestamp);
        buffer_key.extend_from_slice(&sequence.to_be_bytes());
        let mut stored = event.timestamp.to_be_bytes().to_vec();
        stored.extend_from_slice(&encode_row(&event.value));
        state.put(mine, buffer_key, stored)?;
        Ok(joined)
    }
}
