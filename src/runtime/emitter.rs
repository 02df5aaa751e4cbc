//! Where task outputs go: sink topics (encoded as the sink says), repartition topics (internal
//! encoding), late-record topics (JSON), dead-letter topics (the bad record unchanged, with
//! headers saying why). Every send is counted until [`Emitter::flush`] confirms it — step 1 of
//! the commit protocol ([`super::producer`]).

use super::RuntimeError;
use super::codecs::{BadRecord, Encoders, encode_repartitioned};
use super::producer::{Kind, OutputProducer};
use crate::codec::json;
use crate::observe::metrics::TopicActivity;
use crate::operators::pipeline::Output;
use crate::record::{Record, Value};
use crate::topology::spec::SinkFormat;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

/// Header names on dead-lettered records.
pub mod headers {
    /// Error class (`data`, `config`, ...).
    pub const ERROR_CLASS: &str = "happystreams.error.class";
    /// What was wrong.
    pub const ERROR_MESSAGE: &str = "happystreams.error.message";
    /// Topic the record was read from.
    pub const SOURCE_TOPIC: &str = "happystreams.source.topic";
    /// Its partition.
    pub const SOURCE_PARTITION: &str = "happystreams.source.partition";
    /// Its offset.
    pub const SOURCE_OFFSET: &str = "happystreams.source.offset";
    /// Its timestamp (ms), when it had one.
    pub const SOURCE_TIMESTAMP: &str = "happystreams.source.timestamp";
    /// The bad value's length, when the dead letter carries only its first bytes (it did not fit
    /// the producer's `message.max.bytes`).
    pub const VALUE_BYTES: &str = "happystreams.dead_letter.value_bytes";
    /// Likewise for the key.
    pub const KEY_BYTES: &str = "happystreams.dead_letter.key_bytes";
    /// How many of the record's own headers were left out (together over a quarter of
    /// `message.max.bytes`).
    pub const HEADERS_DROPPED: &str = "happystreams.dead_letter.headers_dropped";
}

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// What a record costs beyond its key, value and header bytes, with room to spare (librdkafka
/// counts key, value and headers against `message.max.bytes`; the batch framing is small).
const RECORD_OVERHEAD: usize = 1_024;

/// What a header costs beyond its key and value (varint lengths; generous).
const HEADER_OVERHEAD: usize = 16;

/// Records written per output topic.
pub static RECORDS_OUT: TopicActivity =
    TopicActivity::new("happystreams_records_out_total", "happystreams_output_last_record_timestamp_seconds");

/// Sends outputs and remembers them until flushed.
pub struct Emitter {
    producer: Arc<OutputProducer>,
    encoders: Encoders,
    /// Where each plan topic goes (one lookup per output).
    routes: HashMap<String, Route>,
    /// Sends hold it shared; a transaction commit holds it exclusively, so no record is sent
    /// between committing one transaction and beginning the next.
    gate: RwLock<()>,
    /// The largest record the producer sends (its `message.max.bytes`).
    max_record_bytes: usize,
}

/// How outputs to one plan topic are written.
struct Route {
    /// The topic's name on the broker (internal topics carry the application id).
    physical: String,
    kind: RouteKind,
}

enum RouteKind {
    /// A repartition topic: internal encoding.
    Repartition,
    /// A sink, with its end-to-end latency histogram (output time minus event time).
    Sink(SinkFormat, metrics::Histogram),
    /// Anything else (late-record topics): JSON.
    Json,
}

/// Writes held back while a task restores (under exactly-once they must go out inside the
/// transaction that commits the task's state, not whichever transaction is open meanwhile).
#[derive(Debug)]
pub enum Deferred {
    /// Outputs of one record.
    Outputs(Vec<Output>),
    /// A record for a dead-letter topic.
    DeadLetter {
        /// Topic.
        dlq: String,
        /// The bad record.
        record: Record,
        /// Why.
        bad: BadRecord,
    },
}

impl Emitter {
    /// An emitter writing through `producer`: `sinks` are the plan's sink topics and formats,
    /// `repartitions` its repartition topics, `physical` renames internal topics.
    pub fn new(
        producer: Arc<OutputProducer>,
        encoders: Encoders,
        sinks: HashMap<String, SinkFormat>,
        repartitions: HashSet<String>,
        physical: BTreeMap<String, String>,
    ) -> Self {
        let mut routes: HashMap<String, Route> = HashMap::new();
        let named = |topic: &str| physical.get(topic).cloned().unwrap_or_else(|| topic.to_owned());
        for (topic, format) in sinks {
            let latency = metrics::histogram!("happystreams_e2e_latency_seconds", "sink" => topic.clone());
            routes.insert(topic.clone(), Route { physical: named(&topic), kind: RouteKind::Sink(format, latency) });
        }
        for topic in repartitions {
            routes.insert(topic.clone(), Route { physical: named(&topic), kind: RouteKind::Repartition });
        }
        for topic in physical.keys().filter(|t| !routes.contains_key(*t)).cloned().collect::<Vec<_>>() {
            routes.insert(topic.clone(), Route { physical: named(&topic), kind: RouteKind::Json });
        }
        Emitter { producer, encoders, routes, gate: RwLock::default(), max_record_bytes: DEFAULT_MESSAGE_MAX_BYTES }
    }

    /// The same, for a producer whose `message.max.bytes` is `bytes`: a dead letter larger than
    /// that carries only the first bytes of its value (and key).
    pub fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// The producer (shared with changelogs).
    pub fn producer(&self) -> &Arc<OutputProducer> {
        &self.producer
    }

    /// Holds off every send until the guard drops.
    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends a task's outputs.
    pub fn emit(&self, outputs: Vec<Output>) -> Result<(), RuntimeError> {
        let _shared = self.gate.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now_ms = chrono::Utc::now().timestamp_millis();
        for output in outputs {
            let route = self.routes.get(&output.topic);
            let topic = route.map_or(output.topic.as_str(), |r| r.physical.as_str());
            let (key, value): (Option<Vec<u8>>, Option<Vec<u8>>) = match route.map(|r| &r.kind) {
                Some(RouteKind::Repartition) => {
                    let (key, value) = encode_repartitioned(&output.key, output.value.as_ref());
                    (Some(key), Some(value))
                }
                Some(RouteKind::Sink(format, latency)) => {
                    latency.record((now_ms - output.timestamp).max(0) as f64 / 1000.0);
                    self.encoders.encode(*format, &output.topic, &output.key, output.value).map_err(|e| {
                        RuntimeError::Output(format!(
                            "encoding a record for `{}`: {}; make the sink's schema fit what its node gives",
                            output.topic,
                            e.detail()
                        ))
                    })?
                }
                Some(RouteKind::Json) | None => {
                    // Late-record topics: JSON.
                    let key = (!output.key.is_null()).then(|| json::encode_plain(&output.key));
                    (key, output.value.map(|row| json::encode_plain(&Value::Struct(row))))
                }
            };
            let mut record = OutputProducer::record(topic, Kind::Output).timestamp(output.timestamp);
            if let Some(key) = &key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = &value {
                record = record.payload(value.as_slice());
            }
            self.producer.send(record).map_err(|e| RuntimeError::Output(format!("sending to {topic}: {e}")))?;
            RECORDS_OUT.add(topic, 1);
        }
        Ok(())
    }

    /// Sends a bad record unchanged to `dlq`, with headers saying what was wrong and where it
    /// came from. A record too large for the producer (a bad record is often a huge one) keeps
    /// its first bytes, with headers giving the full lengths: a dead letter the producer refused
    /// would stop the instance at every restart, on the same record.
    pub fn dead_letter(&self, dlq: &str, record: &Record, bad: &BadRecord) -> Result<(), RuntimeError> {
        let _shared = self.gate.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (topic, partition, offset) =
            record.position.as_ref().map_or((String::new(), -1, -1), |p| (p.topic.to_string(), p.partition, p.offset));
        let (partition, offset) = (partition.to_string(), offset.to_string());
        let timestamp = record.timestamp_ms.map(|t| t.to_string());
        let message = bad.short_message();
        // The record's own headers go along unless they alone would not fit.
        let own_header_bytes: usize = record
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_deref().map_or(0, <[u8]>::len) + HEADER_OVERHEAD)
            .sum();
        let keep_headers = own_header_bytes <= self.max_record_bytes / 4;
        let mut kafka_headers = OwnedHeaders::new();
        if keep_headers {
            for header in &record.headers {
                kafka_headers = kafka_headers.insert(KafkaHeader { key: &header.key, value: header.value.as_deref() });
            }
        }
        let dropped = (!keep_headers).then(|| record.headers.len().to_string());
        let (key, value) = (record.key.as_deref(), record.value.as_deref());
        let ours = message.len() + topic.len() + 16 * HEADER_OVERHEAD + 128;
        let header_bytes = if keep_headers { own_header_bytes } else { 0 } + ours;
        let room = self.max_record_bytes.saturating_sub(header_bytes + RECORD_OVERHEAD);
        let (key_len, value_len) = (key.map_or(0, <[u8]>::len), value.map_or(0, <[u8]>::len));
        // When both do not fit, the key keeps at least half the room (or all it needs).
        let key_kept = key_len.min(room.saturating_sub(value_len).max(room / 2));
        let value_kept = value_len.min(room.saturating_sub(key_kept));
        let (key_bytes, value_bytes) = (key_len.to_string(), value_len.to_string());
        let (key_cut, value_cut) = (key_kept < key_len, value_kept < value_len);
        for (key, value) in [
            (headers::ERROR_CLASS, Some(bad.class.as_str())),
            (headers::ERROR_MESSAGE, Some(&*message)),
            (headers::SOURCE_TOPIC, Some(topic.as_str())),
            (headers::SOURCE_PARTITION, Some(partition.as_str())),
            (headers::SOURCE_OFFSET, Some(offset.as_str())),
            (headers::SOURCE_TIMESTAMP, timestamp.as_deref()),
            (headers::KEY_BYTES, key_cut.then_some(key_bytes.as_str())),
            (headers::VALUE_BYTES, value_cut.then_some(value_bytes.as_str())),
            (headers::HEADERS_DROPPED, dropped.as_deref()),
        ] {
            if let Some(value) = value {
                kafka_headers = kafka_headers.insert(KafkaHeader { key, value: Some(value.as_bytes()) });
            }
        }
        if key_cut || value_cut || !keep_headers {
            tracing::warn!(
                dlq,
                key_bytes = key_len,
                value_bytes = value_len,
                header_bytes = own_header_bytes,
                max_record_bytes = self.max_record_bytes,
                "a bad record is larger than the producer's message.max.bytes: its dead letter keeps the first bytes (and its headers only if they fit)"
            );
        }
        let mut out = OutputProducer::record(dlq, Kind::Output).headers(kafka_headers);
        if let Some(key) = key {
            out = out.key(&key[..key_kept]);
        }
        if let Some(value) = value {
            out = out.payload(&value[..value_kept]);
        }
        if let Some(ts) = record.timestamp_ms {
            out = out.timestamp(ts);
        }
        self.producer.send(out).map_err(|e| RuntimeError::Output(format!("sending to {dlq}: {e}")))
    }

    /// Sends writes held back during a restore.
    pub fn send_deferred(&self, deferred: Vec<Deferred>) -> Result<(), RuntimeError> {
        for item in deferred {
            match item {
                Deferred::Outputs(outputs) => self.emit(outputs)?,
                Deferred::DeadLetter { dlq, record, bad } => self.dead_letter(&dlq, &record, &bad)?,
            }
        }
        Ok(())
    }

    /// Waits until every record sent so far is acknowledged; the first failure is an error (the
    /// caller must not commit), and every later flush fails too: the lost records cannot be
    /// sent again from here, so only a restart (from the last commit) can produce them.
    pub fn flush(&self) -> Result<(), RuntimeError> {
        self.producer.flush().map_err(RuntimeError::Output)
    }
}
