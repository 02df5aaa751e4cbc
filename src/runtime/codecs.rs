//! Bytes in, bytes out for the runtime: source records decoded into what the pipeline takes
//! (stream events, table changes), outputs encoded for their sink topics, and the internal
//! format of repartition records.
//!
//! A record that cannot be decoded, or whose key or time expression fails, is a [`BadRecord`]:
//! the source's `on_error` policy decides what happens to it.

use super::prefetch::SchemaPrefetch;
use super::schema_watch::{Fingerprint, SchemaWatch, watched};
use crate::codec::access_log::AccessLogParser;
use crate::codec::avro::{AvroCodec, AvroSchema, split_wire};
use crate::codec::debezium::DebeziumDecoder;
use crate::codec::json::{self, JsonSchemaDecoder};
use crate::codec::{CodecError, CodecErrorKind};
use crate::error::ErrorClass;
use crate::operators::pipeline::Pipeline;
use crate::operators::{Event, TableUpdate};
use crate::record::{CdcEvent, Record, Row, Value, encoding};
use crate::topology::Plan;
use crate::topology::spec::{OnError, SinkFormat, SourceFormat};
use std::collections::HashMap;
use std::sync::Arc;

/// What a decoded input record is for the pipeline.
#[derive(Debug)]
pub enum Input {
    /// An event of the stream source `source`.
    Event {
        /// Source name.
        source: String,
        /// The event.
        event: Event,
    },
    /// A change of the table source `source` (`None`: nothing to apply, e.g. a transaction
    /// marker or the tombstone after a delete).
    Table {
        /// Source name.
        source: String,
        /// The change.
        update: Option<TableUpdate>,
    },
    /// A record read back from a repartition topic (named as in the plan).
    Repartitioned {
        /// Plan topic name.
        topic: String,
        /// The event.
        event: Event,
    },
}

/// An input record that cannot be processed: its class and why.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Who has to act.
    pub class: ErrorClass,
    /// What is wrong.
    pub message: String,
}

/// The most of an error message a dead-letter header or a log line carries: a message can
/// quote the bad input (a type name, a value), which may be megabytes long.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;

impl BadRecord {
    /// The message, cut to [`MAX_MESSAGE_BYTES`] (at a character boundary, marked with `…`).
    pub fn short_message(&self) -> std::borrow::Cow<'_, str> {
        if self.message.len() <= MAX_MESSAGE_BYTES {
            return std::borrow::Cow::Borrowed(&self.message);
        }
        let mut end = MAX_MESSAGE_BYTES;
        while !self.message.is_char_boundary(end) {
            end -= 1;
        }
        std::borrow::Cow::Owned(format!("{}… ({} bytes in all)", &self.message[..end], self.message.len()))
    }
}

impl From<CodecError> for BadRecord {
    fn from(e: CodecError) -> Self {
        BadRecord { class: e.class(), message: e.to_string() }
    }
}

enum TopicDecoder {
    Source {
        name: String,
        format: SourceFormat,
        on_error: OnError,
        table: bool,
        schema: Option<Arc<crate::codec::connect::ConnectSchema>>,
        debezium: Option<DebeziumDecoder>,
        access_log: Option<Arc<AccessLogParser>>,
    },
    Repartition {
        plan_topic: String,
    },
}

/// Decoders for every input topic of a topology.
pub struct Decoders {
    topics: HashMap<String, TopicDecoder>,
    avro: Arc<AvroCodec>,
    json_schema: JsonSchemaDecoder,
    runtime: tokio::runtime::Handle,
    prefetch: SchemaPrefetch,
    schemas: SchemaWatch,
}

impl std::fmt::Debug for Decoders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoders").field("topics", &self.topics.keys().collect::<Vec<_>>()).finish()
    }
}

impl Decoders {
    /// Decoders for `plan`'s sources (by topic) and for its repartition topics (`physical`
    /// name → plan name). Avro schemas come from `avro` (a registry codec).
    pub fn new(
        plan: &Plan,
        repartitions: impl IntoIterator<Item = (String, String)>,
        avro: Arc<AvroCodec>,
        runtime: tokio::runtime::Handle,
    ) -> Decoders {
        let mut topics = HashMap::new();
        for source in &plan.sources {
            let debezium = match source.format {
                SourceFormat::DebeziumJson => Some(match &source.schema {
                    Some(schema) => DebeziumDecoder::json(false).with_default_row_schema((**schema).clone()),
                    None => DebeziumDecoder::json(false),
                }),
                SourceFormat::DebeziumJsonSchema => Some(DebeziumDecoder::json(true)),
                SourceFormat::DebeziumAvro => Some(DebeziumDecoder::avro(avro.clone())),
                _ => None,
            };
            topics.insert(
                source.topic.clone(),
                TopicDecoder::Source {
                    name: source.name.clone(),
                    format: source.format,
                    on_error: source.on_error,
                    table: source.kind.is_table(),
                    schema: source.schema.clone(),
                    debezium,
                    access_log: source.access_log.clone(),
                },
            );
        }
        for (physical, plan_topic) in repartitions {
            topics.insert(physical, TopicDecoder::Repartition { plan_topic });
        }
        let prefetch = SchemaPrefetch::new(avro.clone(), runtime.clone());
        let schemas = SchemaWatch::new(
            plan.sources.iter().filter(|s| watched(s.format, s.schema.is_some())).map(|s| s.topic.clone()),
        );
        Decoders { topics, avro, json_schema: JsonSchemaDecoder::new(), runtime, prefetch, schemas }
    }

    /// Whether a record of `topic` can be decoded without waiting for the Schema Registry; if
    /// not, the schemas it needs are being fetched ([`SchemaPrefetch`]) and its task waits.
    pub fn ready(&self, topic: &str, record: &Record) -> bool {
        let Some(TopicDecoder::Source { format, on_error, .. }) = self.topics.get(topic) else { return true };
        let ids = match format {
            SourceFormat::Avro => wire_ids([record.value.as_deref()]),
            SourceFormat::DebeziumAvro => wire_ids([record.key.as_deref(), record.value.as_deref()]),
            _ => return true,
        };
        // A source that fails on errors fails on a registry that stays away, too.
        let patience = (*on_error == OnError::Fail).then_some(REGISTRY_RETRY);
        self.prefetch.ready(ids, patience)
    }

    /// The source a topic feeds (`None` for repartition and unknown topics).
    pub fn source_of(&self, topic: &str) -> Option<&str> {
        match self.topics.get(topic) {
            Some(TopicDecoder::Source { name, .. }) => Some(name),
            _ => None,
        }
    }

    /// Decodes one record of `topic`.
    pub fn decode(&self, pipeline: &Pipeline, topic: &str, record: &Record) -> Result<Input, BadRecord> {
        let decoder = self.topics.get(topic).ok_or_else(|| BadRecord {
            class: ErrorClass::Internal,
            message: format!("no decoder for topic `{topic}`"),
        })?;
        let timestamp = record.timestamp_ms.unwrap_or(0);
        match decoder {
            TopicDecoder::Repartition { plan_topic } => {
                let event = decode_repartitioned(record, timestamp)?;
                Ok(Input::Repartitioned { topic: plan_topic.clone(), event })
            }
            TopicDecoder::Source { name, debezium: Some(debezium), table, format, .. } => {
                let change = match debezium.decode_cached(record) {
                    Err(e) if matches!(e.kind, CodecErrorKind::UnknownSchemaId(_)) => {
                        let ids = wire_ids([record.key.as_deref(), record.value.as_deref()]);
                        self.fetching(ids, || self.runtime.block_on(debezium.decode(record)))?
                    }
                    other => other?,
                };
                if let CdcEvent::Change(change) = &change {
                    // A whole row: the one after the change, or before a delete (unless the
                    // table logs only its key columns then).
                    let before = change.before.as_ref().filter(|_| !change.before_key_only);
                    let row = change.after.as_ref().or(before);
                    let id = record.value.as_deref().and_then(|v| split_wire(v).ok()).map(|(id, _)| id);
                    match (format, id, row) {
                        (SourceFormat::DebeziumAvro, Some(id), _) => {
                            self.schemas.observe(topic, Fingerprint::SchemaId(id), row)
                        }
                        (SourceFormat::DebeziumAvro, None, _) | (_, _, None) => false,
                        (_, _, Some(row)) => self.schemas.observe(topic, Fingerprint::Fields(row), Some(row)),
                    };
                }
                if *table {
                    return Ok(Input::Table { source: name.clone(), update: Pipeline::update_for_change(&change) });
                }
                // A change stream read as events: each row change is an event.
                match Pipeline::event_row_for_change(&change) {
                    Some((key, row, timestamp)) => {
                        let event = pipeline.event_for(name, key, row, timestamp).map_err(operator_error)?;
                        Ok(Input::Event { source: name.clone(), event })
                    }
                    None => Ok(Input::Table { source: name.clone(), update: None }),
                }
            }
            TopicDecoder::Source { name, format, table, schema, access_log, .. } => {
                let key = match record.key.as_deref() {
                    Some(bytes) => decode_key(bytes),
                    None => Value::Null,
                };
                let Some(bytes) = record.value.as_deref() else {
                    if *table {
                        return Ok(Input::Table {
                            source: name.clone(),
                            update: Some(TableUpdate::Delete { key, timestamp }),
                        });
                    }
                    return Err(BadRecord {
                        class: ErrorClass::Data,
                        message: "null value on a stream source (only tables take tombstones)".into(),
                    });
                };
                let value = match format {
                    SourceFormat::Json => match schema {
                        Some(schema) => json::decode_plain_with_schema(bytes, schema)?,
                        None => json::decode_plain(bytes)?,
                    },
                    SourceFormat::JsonSchema => {
                        let value = self.json_schema.decode(bytes)?.1;
                        if let Value::Struct(row) = &value {
                            self.schemas.observe(topic, Fingerprint::Fields(row), Some(row));
                        }
                        value
                    }
                    SourceFormat::Avro => {
                        let value = match self.avro.decode_cached(bytes) {
                            Err(e) if matches!(e.kind, CodecErrorKind::UnknownSchemaId(_)) => self
                                .fetching(wire_ids([Some(bytes)]), || self.runtime.block_on(self.avro.decode(bytes)))?,
                            other => other?,
                        };
                        if let Ok((id, _)) = split_wire(bytes) {
                            let row = match &value {
                                Value::Struct(row) => Some(row),
                                _ => None,
                            };
                            self.schemas.observe(topic, Fingerprint::SchemaId(id), row);
                        }
                        value
                    }
                    SourceFormat::Text => Value::String(String::from_utf8_lossy(bytes).trim_end().into()),
                    SourceFormat::AccessLog => match access_log {
                        Some(parser) => Value::Struct(parser.parse(bytes)?),
                        None => {
                            return Err(BadRecord {
                                class: ErrorClass::Internal,
                                message: format!("source `{name}`: no access-log parser; please report this"),
                            });
                        }
                    },
                    cdc => {
                        // `Decoders::new` gives every Debezium format a decoder (the arm above).
                        return Err(BadRecord {
                            class: ErrorClass::Internal,
                            message: format!("source `{name}`: no decoder for {cdc:?}; please report this"),
                        });
                    }
                };
                let row = match (value, format) {
                    (Value::Struct(row), _) => row,
                    (line, SourceFormat::Text) => Row::new().with("line", line),
                    (other, _) => Row::new().with("value", other),
                };
                if *table {
                    return Ok(Input::Table {
                        source: name.clone(),
                        update: Some(TableUpdate::Upsert { key, row, timestamp }),
                    });
                }
                let event = pipeline.event_for(name, key, row, timestamp).map_err(operator_error)?;
                Ok(Input::Event { source: name.clone(), event })
            }
        }
    }
}

/// How long a decode that needs the schema registry retries while the registry cannot be reached
/// (a restart, a network blip) before the record fails as an external error.
const REGISTRY_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl Decoders {
    /// Runs a decode that fetches the schemas `ids`, retrying with backoff while the registry is
    /// unreachable (100 ms doubling to 5 s, for [`REGISTRY_RETRY`] in all, counted from when
    /// the prefetch began asking for them). An unknown id is not retried (the codec remembers
    /// it): the record is bad data for its source's `on_error`.
    fn fetching<T>(&self, ids: Vec<u32>, mut decode: impl FnMut() -> Result<T, CodecError>) -> Result<T, CodecError> {
        let started = self.prefetch.asking_since(ids).unwrap_or_else(std::time::Instant::now);
        let mut wait = std::time::Duration::from_millis(100);
        loop {
            match decode() {
                Err(e) if e.kind.retryable() && started.elapsed() < REGISTRY_RETRY => {
                    metrics::counter!("happystreams_registry_retries_total").increment(1);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "schema registry unavailable; retrying");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(std::time::Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}

/// The schema ids of the parts in the registry's wire format.
fn wire_ids<const N: usize>(parts: [Option<&[u8]>; N]) -> Vec<u32> {
    parts.into_iter().flatten().filter_map(|bytes| split_wire(bytes).ok().map(|(id, _)| id)).collect()
}

fn operator_error(e: crate::operators::OperatorError) -> BadRecord {
    BadRecord { class: e.class(), message: e.to_string() }
}

/// A record key: JSON when it parses as JSON, else the UTF-8 text (else the bytes).
fn decode_key(bytes: &[u8]) -> Value {
    match json::decode_plain(bytes) {
        Ok(value) => value,
        Err(_) => match std::str::from_utf8(bytes) {
            Ok(text) => Value::String(text.into()),
            Err(_) => Value::Bytes(bytes.to_vec()),
        },
    }
}

/// Repartition records: the Kafka key is the canonical key bytes (so equal keys land on the same
/// partition whatever their original form); the value is `[flag][key length u32][key][row]`
/// in happystreams' lossless encoding (flag 1: a tombstone, no row).
pub fn encode_repartitioned(key: &Value, value: Option<&Row>) -> (Vec<u8>, Vec<u8>) {
    let key_bytes = encoding::key_bytes(key);
    let full_key = encoding::encode(key);
    let mut out = Vec::with_capacity(5 + full_key.len() + 64);
    out.push(u8::from(value.is_none()));
    out.extend_from_slice(&(full_key.len() as u32).to_be_bytes());
    out.extend_from_slice(&full_key);
    if let Some(row) = value {
        out.extend_from_slice(&encoding::encode_row(row));
    }
    (key_bytes, out)
}

fn decode_repartitioned(record: &Record, timestamp: i64) -> Result<Event, BadRecord> {
    let bad = |detail: &str| BadRecord {
        class: ErrorClass::Internal,
        message: format!("repartition record is corrupt: {detail} (was it written by this version?)"),
    };
    let bytes = record.value.as_deref().ok_or_else(|| bad("null value"))?;
    if bytes.len() < 5 {
        return Err(bad("too short"));
    }
    let tombstone = bytes[0] == 1;
    let key_len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    let key_end = 5usize.checked_add(key_len).filter(|end| *end <= bytes.len()).ok_or_else(|| bad("key length"))?;
    let key = encoding::decode(&bytes[5..key_end]).map_err(|e| bad(&e.to_string()))?;
    let value = if tombstone {
        Row::new()
    } else {
        encoding::decode_row(&bytes[key_end..]).map_err(|e| bad(&e.to_string()))?
    };
    Ok(Event { key, value, timestamp, tombstone })
}

/// Encoders of a topology's sink topics.
#[derive(Debug, Default, Clone)]
pub struct Encoders {
    avro: HashMap<String, Arc<AvroSchema>>,
}

impl Encoders {
    /// Encoders; Avro sinks use the registered schema given per plan topic.
    pub fn new(avro: HashMap<String, Arc<AvroSchema>>) -> Self {
        Encoders { avro }
    }

    /// Key and value bytes of an output to a sink (`format`) topic `topic`. Keys are JSON. The
    /// row is taken, not copied.
    pub fn encode(
        &self,
        format: SinkFormat,
        topic: &str,
        key: &Value,
        row: Option<Row>,
    ) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), CodecError> {
        let key = (!key.is_null()).then(|| json::encode_plain(key));
        let value = match (row, format) {
            (None, _) => None,
            (Some(row), SinkFormat::Json) => Some(json::encode_plain(&Value::Struct(row))),
            (Some(row), SinkFormat::Avro) => {
                let schema = self.avro.get(topic).ok_or_else(|| {
                    CodecError::new(CodecErrorKind::UnsupportedSchema(format!(
                        "sink `{topic}` has no registered Avro schema"
                    )))
                })?;
                Some(schema.encode(&Value::Struct(row))?)
            }
        };
        Ok((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_error_message_is_cut_at_a_character_boundary_for_headers_and_logs() {
        let short = BadRecord { class: ErrorClass::Data, message: "bad".into() };
        assert_eq!(short.short_message(), "bad");
        let long = BadRecord { class: ErrorClass::Data, message: format!("Connect type `{}`", "é".repeat(600_000)) };
        let cut = long.short_message();
        assert!(cut.len() < MAX_MESSAGE_BYTES + 64, "{} bytes", cut.len());
        assert!(cut.ends_with(&format!("({} bytes in all)", long.message.len())), "{}", &cut[cut.len() - 40..]);
    }
}
