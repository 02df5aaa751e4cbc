//! Stream-stream join within a time window: two records with the same key join when their event
//! times are at most `within` apart, whichever arrives first. Inner, or left (a left record that
//! found no partner by the time none can come any more joins the unknown member).
//!
//! Each side buffers its records in its own store: under `key ++ time ++ sequence` (so a
//! record's partners are one range scan), plus a time index entry `0xFE ++ time ++ sequence`
//! (so expired records are one range scan too). A buffered value is `time ++ matched flag ++
//! row`.
//!
//! Time rules, with `horizon = stream time − within − grace`:
//! 1. A record older than `horizon` is late: counted and dropped.
//! 2. An accepted record pairs only with partners from `horizon − within` on, so buffered
//!    records older than that are expired by [`StreamStreamJoin::on_stream_time`]; a left
//!    record expiring unmatched is emitted then with the unknown member (left joins) — never
//!    earlier, so no result is emitted that a later partner would contradict.
//!
//! The joined record is the left record with the right one under the join's alias, stamped with
//! the later of the two event times; left-join misses keep the left record's time.

use super::{Event, OperatorError};
use crate::record::encoding::{decode_row, encode_row, key_bytes, length_prefixed, ordered_i64};
use crate::record::{Row, Value};
use crate::state::{StateBackend, StateError, TaskState};
use crate::topology::spec::JoinType;
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
    join_type: JoinType,
    unknown: Row,
    within_ms: i64,
    grace_ms: i64,
    /// Records dropped because they arrived after the join window and grace.
    pub late_records: AtomicU64,
    /// Joined records emitted (left-join misses included).
    pub joined: AtomicU64,
}

const SEQUENCE_KEY: &[u8] = b"\xff\xffsequence";
const TIME_INDEX: u8 = 0xFE;

fn prefix(key: &Value) -> Vec<u8> {
    length_prefixed(&key_bytes(key), 16)
}

fn at(prefix: &[u8], ts: i64) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(&ordered_i64(ts));
    out
}

fn index_key(ts: i64, sequence: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(TIME_INDEX);
    out.extend_from_slice(&ordered_i64(ts));
    out.extend_from_slice(&sequence.to_be_bytes());
    out
}

/// A buffered record: its time, whether it found a partner, its key and row.
struct Buffered {
    time: i64,
    matched: bool,
    key: Value,
    row: Row,
}

impl StreamStreamJoin {
    /// A join keeping each side in its own store; `unknown` is the left join's unknown member.
    pub fn new(
        node: &str,
        stores: &[String],
        alias: &str,
        join_type: JoinType,
        unknown: Row,
        within_ms: i64,
        grace_ms: i64,
    ) -> Result<Self, OperatorError> {
        let [left_store, right_store] = stores else {
            return Err(OperatorError::Config(format!("stream-stream join of `{node}` needs two stores")));
        };
        Ok(StreamStreamJoin {
            node: node.to_owned(),
            left_store: left_store.clone(),
            right_store: right_store.clone(),
            alias: Arc::from(alias),
            join_type,
            unknown,
            within_ms,
            grace_ms,
            late_records: AtomicU64::new(0),
            joined: AtomicU64::new(0),
        })
    }

    fn encoding(&self, store: &str, e: impl ToString) -> OperatorError {
        OperatorError::State(StateError::Encoding { store: store.to_owned(), detail: e.to_string() })
    }

    fn encode(time: i64, matched: bool, key: &Value, row: &Row) -> Vec<u8> {
        let mut out = time.to_be_bytes().to_vec();
        out.push(u8::from(matched));
        out.extend_from_slice(&encode_row(
            &Row::new().with("key", key.clone()).with("row", Value::Struct(row.clone())),
        ));
        out
    }

    fn decode(&self, store: &str, bytes: &[u8]) -> Result<Buffered, OperatorError> {
        let (head, body) =
            bytes.split_at_checked(9).ok_or_else(|| self.encoding(store, "buffered record too short"))?;
        let time = i64::from_be_bytes(head[..8].try_into().map_err(|_| self.encoding(store, "buffered time"))?);
        let wrapper = decode_row(body).map_err(|e| self.encoding(store, e))?;
        let row = match wrapper.get("row") {
            Some(Value::Struct(r)) => r.clone(),
            _ => return Err(self.encoding(store, "buffered row")),
        };
        let key = wrapper.get("key").cloned().unwrap_or(Value::Null);
        Ok(Buffered { time, matched: head[8] == 1, key, row })
    }

    fn next_sequence<B: StateBackend>(&self, state: &mut TaskState<B>) -> Result<u64, OperatorError> {
        let current = match state.get(&self.left_store, SEQUENCE_KEY)? {
            Some(bytes) => u64::from_be_bytes(
                bytes.as_slice().try_into().map_err(|_| self.encoding(&self.left_store, "sequence"))?,
            ),
            None => 0,
        };
        state.put(&self.left_store, SEQUENCE_KEY.to_vec(), (current + 1).to_be_bytes().to_vec())?;
        Ok(current)
    }

    fn joined_event(&self, key: &Value, mut left: Row, right: Option<Row>, time: i64) -> Event {
        left.set(self.alias.clone(), Value::Struct(right.unwrap_or_else(|| self.unknown.clone())));
        Event::new(key.clone(), left, time)
    }

    /// Buffers `event` on `side` and returns its joins with the other side's buffered records.
    pub fn on_record<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        side: Side,
        event: Event,
        stream_time: i64,
    ) -> Result<Vec<Event>, OperatorError> {
        if event.key.is_null() {
            // As in Kafka Streams: a record without a key cannot join.
            metrics::counter!("happystreams_join_null_keys_total", "node" => self.node.clone()).increment(1);
            return Ok(Vec::new());
        }
        let now = stream_time.max(event.timestamp);
        let horizon = now.saturating_sub(self.within_ms).saturating_sub(self.grace_ms);
        if event.timestamp < horizon {
            self.late_records.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("happystreams_join_late_records_total", "node" => self.node.clone()).increment(1);
            return Err(OperatorError::Late { node: self.node.clone(), event: Box::new(event.clone()) });
        }
        let (mine, theirs) = match side {
            Side::Left => (&self.left_store, &self.right_store),
            Side::Right => (&self.right_store, &self.left_store),
        };
        let key_prefix = prefix(&event.key);
        let from = at(&key_prefix, event.timestamp.saturating_sub(self.within_ms));
        let to = at(&key_prefix, event.timestamp.saturating_add(self.within_ms).saturating_add(1));
        let mut joined = Vec::new();
        for (partner_key, bytes) in state.range(theirs, &from, Some(&to))? {
            let partner = self.decode(theirs, &bytes)?;
            let time = event.timestamp.max(partner.time);
            joined.push(match side {
                Side::Left => self.joined_event(&event.key, event.value.clone(), Some(partner.row.clone()), time),
                Side::Right => self.joined_event(&event.key, partner.row.clone(), Some(event.value.clone()), time),
            });
            if side == Side::Right && !partner.matched {
                // The left record has a partner now: a left join will not emit its miss.
                state.put(theirs, partner_key, Self::encode(partner.time, true, &partner.key, &partner.row))?;
            }
        }
        self.joined.fetch_add(joined.len() as u64, Ordering::Relaxed);
        let sequence = self.next_sequence(state)?;
        let mut buffer_key = at(&key_prefix, event.timestamp);
        buffer_key.extend_from_slice(&sequence.to_be_bytes());
        state.put(mine, index_key(event.timestamp, sequence), buffer_key.clone())?;
        state.put(mine, buffer_key, Self::encode(event.timestamp, !joined.is_empty(), &event.key, &event.value))?;
        Ok(joined)
    }

    /// Expires buffered records no accepted record can pair with any more; returns the misses of
    /// a left join (each left record that never found a partner), oldest first.
    pub fn on_stream_time<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        stream_time: i64,
    ) -> Result<Vec<Event>, OperatorError> {
        let horizon = stream_time.saturating_sub(self.within_ms).saturating_sub(self.grace_ms);
        let expired_before = horizon.saturating_sub(self.within_ms);
        let mut misses = Vec::new();
        for store in [&self.left_store, &self.right_store] {
            let upper = {
                let mut k = vec![TIME_INDEX];
                k.extend_from_slice(&ordered_i64(expired_before));
                k
            };
            for (index, buffer_key) in state.range(store, &[TIME_INDEX], Some(&upper))? {
                if let Some(bytes) = state.get(store, &buffer_key)? {
                    let record = self.decode(store, &bytes)?;
                    if store == &self.left_store && self.join_type == JoinType::Left && !record.matched {
                        misses.push(self.joined_event(&record.key, record.row, None, record.time));
                    }
                }
                state.delete(store, buffer_key)?;
                state.delete(store, index)?;
            }
        }
        misses.sort_by_key(|e| e.timestamp);
        self.joined.fetch_add(misses.len() as u64, Ordering::Relaxed);
        Ok(misses)
    }
}
