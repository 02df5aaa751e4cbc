//! Change records: one change to one table row, as captured by CDC.
//!
//! [`CdcEvent`] is everything a Debezium-style CDC topic can carry: a [`Change`], a tombstone
//! (the null-value record that follows a delete so compaction can drop the key) or, on the
//! transaction metadata topic, a [`TransactionEvent`].
//!
//! Invariants the decoders guarantee:
//! - `op` is always set; `after` is `Some` for create/read/update and `None` for delete and
//!   truncate; `before` is whatever the source captured (often `None` on update for tables with
//!   PostgreSQL `REPLICA IDENTITY DEFAULT`).
//! - `before_key_only` is true when `before` carries only the primary key (a delete on a
//!   `REPLICA IDENTITY DEFAULT` table): its other columns are NOT real values and are removed.
//! - A primary-key update arrives as delete(old key) + tombstone(old key) + create(new key);
//!   `key_change` links them.

use super::value::{Row, Value};
use serde::Serialize;

/// Kind of change, following Debezium's `op` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `c`: a row was inserted.
    Create,
    /// `r`: a row was read by a snapshot.
    Read,
    /// `u`: a row was updated.
    Update,
    /// `d`: a row was deleted.
    Delete,
    /// `t`: the table was truncated (all rows removed).
    Truncate,
    /// `m`: a logical decoding message (not a row change).
    Message,
}

impl Op {
    /// Parses Debezium's one-letter code.
    pub fn from_code(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Create,
            "r" => Op::Read,
            "u" => Op::Update,
            "d" => Op::Delete,
            "t" => Op::Truncate,
            "m" => Op::Message,
            _ => return None,
        })
    }

    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Read => "r",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
            Op::Message => "m",
        }
    }

    /// True when the change leaves a row in place (`after` is the new row).
    pub fn is_upsert(self) -> bool {
        matches!(self, Op::Create | Op::Read | Op::Update)
    }
}

/// The connector's `source` block, kept whole; typed accessors for the common fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct SourceInfo(pub Row);

impl SourceInfo {
    fn text(&self, field: &str) -> Option<&str> {
        self.0.get(field).and_then(Value::as_str)
    }
    fn long(&self, field: &str) -> Option<i64> {
        self.0.get(field).and_then(Value::as_i64)
    }
    /// Connector type (`postgresql`, `mysql`, ...).
    pub fn connector(&self) -> Option<&str> {
        self.text("connector")
    }
    /// Database name.
    pub fn db(&self) -> Option<&str> {
        self.text("db")
    }
    /// Schema name (PostgreSQL), empty for logical messages.
    pub fn schema(&self) -> Option<&str> {
        self.text("schema")
    }
    /// Table name, empty for logical messages.
    pub fn table(&self) -> Option<&str> {
        self.text("table")
    }
    /// When the change was committed in the database (ms since the epoch): the event time.
    pub fn ts_ms(&self) -> Option<i64> {
        self.long("ts_ms")
    }
    /// The snapshot marker (`true`, `first`, `last`, `false`, ...).
    pub fn snapshot(&self) -> Option<&str> {
        self.text("snapshot")
    }
    /// PostgreSQL log sequence number of the change.
    pub fn lsn(&self) -> Option<i64> {
        self.long("lsn")
    }
    /// Database transaction id.
    pub fn tx_id(&self) -> Option<i64> {
        self.long("txId")
    }
}

/// The `transaction` block of a change event (when the connector provides transaction
/// metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionBlock {
    /// `"txId:lsn"`; group changes by [`TransactionBlock::tx`].
    pub id: String,
    /// Position of this event among all events of the transaction (1-based).
    pub total_order: i64,
    /// Position among the events of the same table in the transaction (1-based).
    pub data_collection_order: i64,
}

impl TransactionBlock {
    /// The transaction part of the id (before the `:`), stable across the transaction's events.
    pub fn tx(&self) -> &str {
        tx_part(&self.id)
    }
}

fn tx_part(id: &str) -> &str {
    id.split_once(':').map_or(id, |(tx, _)| tx)
}

/// Payload of an `op = m` logical decoding message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogicalMessage {
    /// The message prefix given to `pg_logical_emit_message`.
    pub prefix: Option<String>,
    /// Raw content bytes.
    #[serde(serialize_with = "serialize_base64")]
    pub content: Vec<u8>,
}

fn serialize_base64<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// How a record relates to a primary-key change (Debezium `__debezium.newkey` / `oldkey`
/// headers).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyChange {
    /// This delete/tombstone is the old key of a row that now lives under this new key.
    MovedTo(Row),
    /// This create is the new key of a row that used to live under this old key.
    MovedFrom(Row),
}

/// One change to one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// What happened.
    pub op: Op,
    /// The primary key (decoded record key), when the record has one.
    pub key: Option<Row>,
    /// Row before the change, as captured.
    pub before: Option<Row>,
    /// True when `before` holds only the key columns (see the module docs).
    pub before_key_only: bool,
    /// Row after the change.
    pub after: Option<Row>,
    /// Connector source metadata.
    pub source: SourceInfo,
    /// Transaction block, when transaction metadata is enabled.
    pub transaction: Option<TransactionBlock>,
    /// When the connector processed the change (ms since the epoch).
    pub ts_ms: Option<i64>,
    /// The logical message, for `op = m`.
    pub message: Option<LogicalMessage>,
    /// Primary-key change link, from headers.
    pub key_change: Option<KeyChange>,
}

impl Change {
    /// Event time: when the change was committed at the source, falling back to when the
    /// connector saw it.
    pub fn event_time_ms(&self) -> Option<i64> {
        self.source.ts_ms().or(self.ts_ms)
    }
}

/// Status of a transaction metadata event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionStatus {
    /// The transaction started.
    Begin,
    /// The transaction ended; `event_count` tells how many change events it produced.
    End,
}

/// An event from the transaction metadata topic (`<prefix>.transaction`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionEvent {
    /// BEGIN or END.
    pub status: TransactionStatus,
    /// `"txId:lsn"` (the lsn part differs between BEGIN and END).
    pub id: String,
    /// Events in the transaction (END only).
    pub event_count: Option<i64>,
    /// Events per table, `schema.table` → count (END only).
    pub data_collections: Vec<(String, i64)>,
    /// When the event was produced (ms since the epoch).
    pub ts_ms: i64,
}

impl TransactionEvent {
    /// The transaction part of the id, equal to [`TransactionBlock::tx`] of its changes.
    pub fn tx(&self) -> &str {
        tx_part(&self.id)
    }
}

/// Anything a CDC topic carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CdcEvent {
    /// A row change (or truncate, or logical message).
    Change(Box<Change>),
    /// A null-value record after a delete: the key may be compacted away.
    Tombstone {
        /// The deleted key.
        key: Option<Row>,
        /// Primary-key change link, from headers.
        key_change: Option<KeyChange>,
    },
    /// A transaction BEGIN/END marker.
    Transaction(TransactionEvent),
}
