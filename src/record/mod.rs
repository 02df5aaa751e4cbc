//! The record model every other module speaks: raw Kafka-shaped records, typed values and
//! change records.
//!
//! - [`Record`] is what a source hands over: optional key and value bytes, headers, a timestamp
//!   and where it came from ([`Position`]). No decoding has happened yet.
//! - [`Value`] and [`Row`] are decoded data. They keep SQL/Avro types faithfully: a
//!   `numeric(10,2)` stays an exact [`Decimal`], a `timestamp` keeps its unit, a `uuid` is a
//!   [`uuid::Uuid`]. Nothing is widened to a lossy float.
//! - [`Change`] is one change to one table row (from Debezium or any CDC source); every table
//!   operator consumes it.
//!
//! This module does no I/O.

mod change;
pub mod encoding;
mod value;

pub use change::{
    CdcEvent, Change, KeyChange, LogicalMessage, Op, SourceInfo, TransactionBlock, TransactionEvent, TransactionStatus,
};
pub use value::{
    Decimal, MAX_DECIMAL_SCALE, Row, TimeUnit, UNAVAILABLE_TEXT, Value, format_date, format_time, format_timestamp,
};

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// Where a record was read from: enough for a user to find it again (`kcat -t T -p P -o O`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// Topic name (or, for file input, the file path).
    pub topic: Arc<str>,
    /// Partition number; `-1` when not known (file input).
    pub partition: i32,
    /// Offset within the partition (or line/record number within a file).
    pub offset: i64,
}

impl Position {
    /// A position on a topic partition.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64) -> Self {
        Position { topic: topic.into(), partition, offset }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.partition < 0 {
            write!(f, "{} record {}", self.topic, self.offset)
        } else {
            write!(f, "topic {} partition {} offset {}", self.topic, self.partition, self.offset)
        }
    }
}

/// One Kafka header. A header value may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value bytes, `None` for a null header.
    pub value: Option<Bytes>,
}

/// A raw record as a source delivers it, before decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Key bytes (`None` = null key).
    pub key: Option<Bytes>,
    /// Value bytes (`None` = null value, a tombstone on a compacted topic).
    pub value: Option<Bytes>,
    /// Headers in wire order (keys may repeat).
    pub headers: Vec<Header>,
    /// Record timestamp in milliseconds since the epoch, when the source has one.
    pub timestamp_ms: Option<i64>,
    /// Where the record was read from, when known.
    pub position: Option<Position>,
}

impl Record {
    /// The last header with this key (Kafka semantics: a later header overrides).
    pub fn header(&self, key: &str) -> Option<&Header> {
        self.headers.iter().rev().find(|h| h.key == key)
    }
}
