//! Debezium change-event envelopes → [`CdcEvent`]s.
//!
//! One decoder serves every converter setting Debezium is run with: JSON with schemas
//! (`schemas.enable=true`), plain JSON (`schemas.enable=false`, optionally with a row schema
//! supplied per topic so decimals and times keep their types) and Avro in the Confluent wire
//! format. Key and value are first decoded into [`Value`]s by the format's codec; from there one
//! function, [`event_from_values`], builds the event, so the envelope rules live in one place:
//!
//! 1. A null value is a tombstone for the key.
//! 2. A value without `op` but with `status` is a transaction BEGIN/END (the
//!    `<prefix>.transaction` topic).
//! 3. Otherwise `op` must be one of `c r u d t m`; `before`/`after`/`source`/`transaction`/
//!    `ts_ms`/`message` are taken as captured.
//! 4. A delete on a `REPLICA IDENTITY DEFAULT` table carries only the key: Debezium fills the
//!    other columns with null, or with the type's zero value (`""`, 0, false, ...) where the
//!    column is NOT NULL. Such a `before` is marked `before_key_only` and reduced to the key
//!    columns. With [`ReplicaIdentity::Auto`] (the default) a delete counts as key-only when every
//!    non-key column holds null or a zero value; a `FULL` row that really is all zeros is then
//!    treated the same (its values carried nothing beyond the key either). Declare the table's
//!    replica identity ([`DebeziumDecoder::with_replica_identity`]) to remove the guess.
//! 5. `__debezium.newkey` / `__debezium.oldkey` headers link the parts of a primary-key update.
//! 6. `__debezium_unavailable_value` anywhere becomes [`Value::Unavailable`]; a table keeps the
//!    last known value for it ([`Row::fill_unavailable_from`]).

use super::avro::{AvroCodec, split_wire};
use super::connect::ConnectSchema;
use super::error::{CodecError, CodecErrorKind, wrong_type};
use super::json::{self, JsonSchemaDecoder};
use crate::record::{
    CdcEvent, Change, KeyChange, LogicalMessage, Op, Record, Row, SourceInfo, TransactionBlock, TransactionEvent,
    TransactionStatus, Value,
};
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::Arc;

/// How the connector's key and value converters wrote the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EnvelopeFormat {
    /// `JsonConverter` with `schemas.enable=false`.
    Json,
    /// `JsonConverter` with `schemas.enable=true`.
    JsonSchema,
    /// Confluent `AvroConverter` (wire format + Schema Registry).
    Avro,
}

/// The PostgreSQL `REPLICA IDENTITY` of a table: what a delete's `before` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentity {
    /// Guess from the values (see the module docs, rule 4).
    #[default]
    Auto,
    /// `DEFAULT` (or `USING INDEX`): deletes carry the key only.
    Default,
    /// `FULL`: deletes carry the whole old row.
    Full,
}

/// Header naming the new key on the delete and tombstone of a primary-key update.
pub const NEW_KEY_HEADER: &str = "__debezium.newkey";
/// Header naming the old key on the create of a primary-key update.
pub const OLD_KEY_HEADER: &str = "__debezium.oldkey";

/// Decodes Debezium records of one format.
#[derive(Debug)]
pub struct DebeziumDecoder {
    format: EnvelopeFormat,
    json: JsonSchemaDecoder,
    avro: Option<Arc<AvroCodec>>,
    row_schemas: HashMap<String, ConnectSchema>,
    default_row_schema: Option<ConnectSchema>,
    replica_identity: HashMap<String, ReplicaIdentity>,
}

impl DebeziumDecoder {
    /// A decoder for JSON (with or without schemas).
    pub fn json(with_schemas: bool) -> Self {
        let format = if with_schemas { EnvelopeFormat::JsonSchema } else { EnvelopeFormat::Json };
        DebeziumDecoder {
            format,
            json: JsonSchemaDecoder::new(),
            avro: None,
            row_schemas: HashMap::new(),
            default_row_schema: None,
            replica_identity: HashMap::new(),
        }
    }

    /// A decoder for Avro records whose schemas come from `codec`.
    pub fn avro(codec: Arc<AvroCodec>) -> Self {
        DebeziumDecoder {
            format: EnvelopeFormat::Avro,
            json: JsonSchemaDecoder::new(),
            avro: Some(codec),
            row_schemas: HashMap::new(),
            default_row_schema: None,
            replica_identity: HashMap::new(),
        }
    }

    /// For plain JSON: the row schema of a topic's table, so `before`/`after` columns get their
    /// real types (decimal, date, timestamp, uuid, json) instead of inferred ones.
    pub fn with_row_schema(mut self, topic: impl Into<String>, schema: ConnectSchema) -> Self {
        self.row_schemas.insert(topic.into(), schema);
        self
    }

    /// For plain JSON: the row schema used for topics without their own
    /// ([`DebeziumDecoder::with_row_schema`]).
    pub fn with_default_row_schema(mut self, schema: ConnectSchema) -> Self {
        self.default_row_schema = Some(schema);
        self
    }

    /// Declares the replica identity of a topic's table (instead of guessing it per delete).
    pub fn with_replica_identity(mut self, topic: impl Into<String>, identity: ReplicaIdentity) -> Self {
        self.replica_identity.insert(topic.into(), identity);
        self
    }

    /// The format this decoder reads.
    pub fn format(&self) -> EnvelopeFormat {
        self.format
    }

    /// Decodes a record, fetching Avro schemas from the registry when not cached.
    pub async fn decode(&self, record: &Record) -> Result<CdcEvent, CodecError> {
        if let Some(avro) = &self.avro {
            for (part, bytes) in [("key", &record.key), ("value", &record.value)] {
                if let Some(Ok((id, _))) = bytes.as_deref().map(split_wire) {
                    avro.schema(id).await.map_err(|e| e.in_part(part).at(record.position.as_ref()))?;
                }
            }
        }
        self.decode_cached(record)
    }

    /// Decodes a record without I/O (JSON, or Avro whose schemas are cached).
    pub fn decode_cached(&self, record: &Record) -> Result<CdcEvent, CodecError> {
        self.decode_parts(record).map_err(|e| e.at(record.position.as_ref()))
    }

    fn decode_parts(&self, record: &Record) -> Result<CdcEvent, CodecError> {
        let topic = record.position.as_ref().map(|p| &*p.topic);
        let (key_schema, key) = match record.key.as_deref() {
            Some(bytes) => {
                let (schema, value) = self.decode_part(bytes, None).map_err(|e| e.in_part("key"))?;
                (schema, Some(value))
            }
            None => (None, None),
        };
        let row_schema = topic.and_then(|t| self.row_schemas.get(t)).or(self.default_row_schema.as_ref());
        let value = match record.value.as_deref() {
            Some(bytes) => Some(self.decode_part(bytes, row_schema).map_err(|e| e.in_part("value"))?.1),
            None => None,
        };
        let key_change = self.key_change(record, key_schema.as_deref())?;
        let identity = topic.and_then(|t| self.replica_identity.get(t)).copied().unwrap_or_default();
        event_from_values(key, value, key_change, identity).map_err(|e| e.in_part("value"))
    }

    /// Decodes one part; also returns its schema when the format carries one.
    fn decode_part(
        &self,
        bytes: &[u8],
        row_schema: Option<&ConnectSchema>,
    ) -> Result<(Option<Arc<ConnectSchema>>, Value), CodecError> {
        let untyped = |v| (None, v);
        match self.format {
            EnvelopeFormat::JsonSchema => self.json.decode(bytes).map(|(s, v)| (Some(s), v)),
            EnvelopeFormat::Json => {
                let parsed = json::parse(bytes)?;
                match (row_schema, parsed) {
                    (Some(schema), serde_json::Value::Object(mut obj)) => {
                        let mut row = Row::with_capacity(obj.len());
                        for field in ["before", "after"] {
                            if let Some(v) = obj.shift_remove(field) {
                                row.push(field, json::convert(&v, schema).map_err(|e| e.in_field(field))?);
                            }
                        }
                        for (k, v) in &obj {
                            row.push(k.as_str(), json::infer(v));
                        }
                        Ok(untyped(Value::Struct(row)))
                    }
                    (_, parsed) => Ok(untyped(json::infer(&parsed))),
                }
            }
            EnvelopeFormat::Avro => match &self.avro {
                Some(codec) => codec.decode_cached_with_schema(bytes).map(|(s, v)| (Some(s.connect.clone()), v)),
                None => Err(CodecErrorKind::UnsupportedSchema("Avro decoder without a schema source".into()).into()),
            },
        }
    }

    /// The primary-key change link from the headers, typed like the record's own key: a header
    /// written by `JsonConverter` with schemas carries its schema; a plain one takes the key's.
    fn key_change(&self, record: &Record, key_schema: Option<&ConnectSchema>) -> Result<Option<KeyChange>, CodecError> {
        let parse = |name: &str| -> Result<Option<Row>, CodecError> {
            let Some(bytes) = record.header(name).and_then(|h| h.value.as_deref()) else { return Ok(None) };
            let parsed = json::parse(bytes).map_err(|e| e.in_part(name))?;
            let is_envelope = parsed
                .as_object()
                .is_some_and(|o| o.len() == 2 && o.contains_key("schema") && o.contains_key("payload"));
            let value = match (is_envelope, key_schema) {
                (true, _) => self.json.decode(bytes).map(|(_, v)| v),
                (false, Some(schema)) => json::convert(&parsed, schema),
                (false, None) => Ok(json::infer(&parsed)),
            }
            .map_err(|e| e.in_part(name))?;
            match value {
                Value::Struct(row) => Ok(Some(row)),
                other => Err(wrong_type("a key object", other.type_name()).in_part(name)),
            }
        };
        Ok(match (parse(NEW_KEY_HEADER)?, parse(OLD_KEY_HEADER)?) {
            (Some(new_key), _) => Some(KeyChange::MovedTo(new_key)),
            (None, Some(old_key)) => Some(KeyChange::MovedFrom(old_key)),
            (None, None) => None,
        })
    }
}

fn missing(field: &str) -> CodecError {
    CodecError::new(CodecErrorKind::MissingField(field.to_owned()))
}

fn optional_row(envelope: &Row, field: &str) -> Result<Option<Row>, CodecError> {
    match envelope.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Struct(row)) => Ok(Some(row.clone())),
        Some(other) => Err(wrong_type("a row object or null", other.type_name()).in_field(field)),
    }
}

fn text(row: &Row, field: &str) -> Result<String, CodecError> {
    match row.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(wrong_type("a string", other.type_name()).in_field(field)),
        None => Err(missing(field)),
    }
}

fn long(row: &Row, field: &str) -> Result<Option<i64>, CodecError> {
    match row.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| wrong_type("an integer", v.type_name()).in_field(field)),
    }
}

/// Builds a CDC event from a decoded key and value (see the module docs for the rules).
pub fn event_from_values(
    key: Option<Value>,
    value: Option<Value>,
    key_change: Option<KeyChange>,
    replica_identity: ReplicaIdentity,
) -> Result<CdcEvent, CodecError> {
    let key = match key {
        None | Some(Value::Null) => None,
        Some(Value::Struct(row)) => Some(row),
        // A primitive key (rare: a custom key converter) becomes a one-column row.
        Some(other) => Some(Row::new().with("key", other)),
    };
    let envelope = match value {
        None | Some(Value::Null) => return Ok(CdcEvent::Tombstone { key, key_change }),
        Some(Value::Struct(row)) => row,
        Some(other) => return Err(wrong_type("a Debezium envelope object", other.type_name())),
    };
    let op_code = match envelope.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(other) => return Err(wrong_type("a string", other.type_name()).in_field("op")),
        None if envelope.get("status").is_some() => return transaction_event(&envelope).map(CdcEvent::Transaction),
        None => return Err(missing("op")),
    };
    let op = Op::from_code(&op_code)
        .ok_or_else(|| CodecError::new(CodecErrorKind::UnknownOp(op_code.clone())).in_field("op"))?;
    let source = match envelope.get("source") {
        Some(Value::Struct(row)) => SourceInfo(row.clone()),
        Some(other) => return Err(wrong_type("a source object", other.type_name()).in_field("source")),
        None => return Err(missing("source")),
    };
    let mut before = optional_row(&envelope, "before")?;
    let after = optional_row(&envelope, "after")?;
    if op.is_upsert() && after.is_none() {
        return Err(missing("after"));
    }
    let mut before_key_only = false;
    if let (Op::Delete, Some(row), Some(key_row)) = (op, before.as_ref(), key.as_ref()) {
        let key_only = match replica_identity {
            ReplicaIdentity::Auto => is_key_only(row, key_row),
            ReplicaIdentity::Default => true,
            ReplicaIdentity::Full => false,
        };
        if key_only {
            before_key_only = true;
            before = Some(
                row.iter().filter(|(n, _)| key_row.get(n).is_some()).map(|(n, v)| (Arc::from(n), v.clone())).collect(),
            );
        }
    }
    let transaction = match envelope.get("transaction") {
        None | Some(Value::Null) => None,
        Some(Value::Struct(block)) => Some(TransactionBlock {
            id: text(block, "id").map_err(|e| e.in_field("transaction"))?,
            total_order: long(block, "total_order").map_err(|e| e.in_field("transaction"))?.unwrap_or(0),
            data_collection_order: long(block, "data_collection_order")
                .map_err(|e| e.in_field("transaction"))?
                .unwrap_or(0),
        }),
        Some(other) => return Err(wrong_type("a transaction object", other.type_name()).in_field("transaction")),
    };
    let message = match (op, envelope.get("message")) {
        (Op::Message, Some(Value::Struct(m))) => Some(LogicalMessage {
            prefix: m.get("prefix").and_then(Value::as_str).map(str::to_owned),
            content: match m.get("content") {
                Some(Value::Bytes(b)) => b.clone(),
                // Plain JSON carries bytes as base64 text.
                Some(Value::String(s)) => base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| {
                    CodecError::new(CodecErrorKind::InvalidValue(format!("not base64: {e}")))
                        .in_field("message.content")
                })?,
                _ => Vec::new(),
            },
        }),
        (Op::Message, _) => return Err(missing("message")),
        _ => None,
    };
    Ok(CdcEvent::Change(Box::new(Change {
        op,
        key,
        before,
        before_key_only,
        after,
        source,
        transaction,
        ts_ms: long(&envelope, "ts_ms")?,
        message,
        key_change,
    })))
}

fn is_key_only(before: &Row, key: &Row) -> bool {
    let mut non_key = before.iter().filter(|(name, _)| key.get(name).is_none()).peekable();
    non_key.peek().is_some() && non_key.all(|(_, v)| is_zero_value(v))
}

/// Null, or the value Debezium puts in a NOT NULL column it has no value for.
fn is_zero_value(value: &Value) -> bool {
    use num_bigint::Sign;
    match value {
        Value::Null => true,
        Value::String(s) | Value::Json(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Int(v) => *v == 0,
        Value::Long(v) => *v == 0,
        Value::Float(v) => *v == 0.0,
        Value::Double(v) => *v == 0.0,
        Value::Decimal(d) => d.unscaled.sign() == Sign::NoSign,
        Value::Bytes(b) => b.is_empty(),
        Value::Date(d) => *d == 0,
        Value::Time { value, .. } | Value::Timestamp { value, .. } | Value::LocalTimestamp { value, .. } => *value == 0,
        Value::Uuid(u) => u.is_nil(),
        Value::Unavailable | Value::Array(_) | Value::Map(_) | Value::Struct(_) => false,
    }
}

fn transaction_event(envelope: &Row) -> Result<TransactionEvent, CodecError> {
    let status = match text(envelope, "status")?.as_str() {
        "BEGIN" => TransactionStatus::Begin,
        "END" => TransactionStatus::End,
        other => {
            return Err(CodecError::new(CodecErrorKind::InvalidValue(format!("transaction status `{other}`")))
                .in_field("status"));
        }
    };
    let data_collections = match envelope.get("data_collections") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_row)
            .map(|r| Ok((text(r, "data_collection")?, long(r, "event_count")?.unwrap_or(0))))
            .collect::<Result<_, CodecError>>()
            .map_err(|e| e.in_field("data_collections"))?,
        _ => Vec::new(),
    };
    Ok(TransactionEvent {
        status,
        id: text(envelope, "id")?,
        event_count: long(envelope, "event_count")?,
        data_collections,
        ts_ms: long(envelope, "ts_ms")?.ok_or_else(|| missing("ts_ms"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(key: &str, value: Option<&str>) -> Record {
        Record {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            ..Record::default()
        }
    }

    #[test]
    fn envelope_without_op_is_a_missing_field_error() {
        let err =
            DebeziumDecoder::json(false).decode_cached(&record(r#"{"id":1}"#, Some(r#"{"before":null}"#))).unwrap_err();
        assert_eq!(err.kind, CodecErrorKind::MissingField("op".into()));
        assert_eq!(err.part.as_deref(), Some("value"));
    }

    #[test]
    fn unknown_op_is_reported_with_its_code() {
        let err = DebeziumDecoder::json(false)
            .decode_cached(&record(r#"{"id":1}"#, Some(r#"{"op":"x","source":{}}"#)))
            .unwrap_err();
        assert_eq!(err.kind, CodecErrorKind::UnknownOp("x".into()));
    }

    #[test]
    fn null_value_is_a_tombstone_for_the_key() {
        let event = DebeziumDecoder::json(false).decode_cached(&record(r#"{"id":1}"#, None)).unwrap();
        assert_eq!(event, CdcEvent::Tombstone { key: Some(Row::new().with("id", Value::Long(1))), key_change: None });
    }

    #[test]
    fn key_only_delete_recognises_zero_values_of_not_null_columns() {
        let delete =
            r#"{"op":"d","before":{"id":1,"title":"","views":0,"premium":false,"note":null},"after":null,"source":{}}"#;
        let event = DebeziumDecoder::json(false).decode_cached(&record(r#"{"id":1}"#, Some(delete))).unwrap();
        let CdcEvent::Change(change) = event else { panic!("expected a change") };
        assert!(change.before_key_only);
        // A declared FULL table keeps the row as captured.
        let mut full = record(r#"{"id":1}"#, Some(delete));
        full.position = Some(crate::record::Position::new("t", 0, 0));
        let event = DebeziumDecoder::json(false)
            .with_replica_identity("t", ReplicaIdentity::Full)
            .decode_cached(&full)
            .unwrap();
        let CdcEvent::Change(change) = event else { panic!("expected a change") };
        assert!(!change.before_key_only);
        assert_eq!(change.before.map(|r| r.len()), Some(5));
        // A real value in any non-key column means the row is whole.
        let real = r#"{"op":"d","before":{"id":1,"title":"","views":3},"after":null,"source":{}}"#;
        let CdcEvent::Change(change) =
            DebeziumDecoder::json(false).decode_cached(&record(r#"{"id":1}"#, Some(real))).unwrap()
        else {
            panic!("expected a change")
        };
        assert!(!change.before_key_only);
    }

    #[test]
    fn key_only_delete_drops_placeholder_columns() {
        let event = DebeziumDecoder::json(false)
            .decode_cached(&record(
                r#"{"id":1}"#,
                Some(r#"{"op":"d","before":{"id":1,"title":"","author":null},"after":null,"source":{"ts_ms":5}}"#),
            ))
            .unwrap();
        let CdcEvent::Change(change) = event else { panic!("expected a change") };
        assert!(change.before_key_only);
        assert_eq!(change.before, Some(Row::new().with("id", Value::Long(1))));
        assert_eq!(change.event_time_ms(), Some(5));
    }
}
