//! Reading a bounded range of records from one partition (for `happystreams decode` and tests).
//!
//! The end of the partition is detected from the high watermark that Fetch responses carry
//! (`enable.partition.eof`), not from a ListOffsets request, which some Kafka-protocol brokers
//! answer wrongly.

use super::{KafkaConfig, Reader, ReaderContext};
use crate::error::ErrorClass;
use crate::record::{Header, Position, Record};
use bytes::Bytes;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reading from Kafka failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaReadError {
    /// The client could not be created (bad property).
    #[error("invalid Kafka client settings: {0}; check kafka.properties")]
    Settings(String),
    /// The broker reported an error.
    #[error(
        "reading {topic} partition {partition} failed: {detail}; check that the topic exists and the broker at {bootstrap} is reachable"
    )]
    Broker {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Bootstrap servers.
        bootstrap: String,
        /// librdkafka's message.
        detail: String,
    },
}

impl KafkaReadError {
    /// Who has to act.
    pub fn class(&self) -> ErrorClass {
        match self {
            KafkaReadError::Settings(_) => ErrorClass::Config,
            KafkaReadError::Broker { .. } => ErrorClass::External,
        }
    }
}

/// Reads up to `count` records from `topic`/`partition` starting at `offset`, stopping early at
/// the end of the partition or when nothing arrives for `idle`.
pub fn read_range(
    config: &KafkaConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    count: usize,
    idle: Duration,
) -> Result<Vec<Record>, KafkaReadError> {
    let broker_error = |detail: String| KafkaReadError::Broker {
        topic: topic.to_owned(),
        partition,
        bootstrap: config.bootstrap_servers.clone(),
        detail,
    };
    let consumer: Reader = config
        .consumer_config()
        .set("group.id", "happystreams-decode")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // The end is learnt from an empty fetch, held by the broker for up to this long.
        .set("fetch.wait.max.ms", "10")
        // An offset outside the partition is an error to report, not a reason to jump.
        .set("auto.offset.reset", "error")
        .create_with_context(ReaderContext)
        .map_err(|e| KafkaReadError::Settings(e.to_string()))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(|e| broker_error(e.to_string()))?;
    consumer.assign(&assignment).map_err(|e| broker_error(e.to_string()))?;
    let topic_name: Arc<str> = Arc::from(topic);
    let mut records = Vec::new();
    let mut last_progress = Instant::now();
    while records.len() < count && last_progress.elapsed() < idle {
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(broker_error(e.to_string())),
            Some(Ok(message)) => {
                last_progress = Instant::now();
                records.push(record_from(&message, topic_name.clone()));
            }
        }
    }
    Ok(records)
}

/// A consumed message as a [`Record`] (`topic` is the message's topic, shared).
pub fn record_from(message: &BorrowedMessage<'_>, topic: Arc<str>) -> Record {
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter().map(|h| Header { key: h.key.to_owned(), value: h.value.map(Bytes::copy_from_slice) }).collect()
        })
        .unwrap_or_default();
    Record {
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
        position: Some(Position::new(topic, message.partition(), message.offset())),
    }
}

/// The low and high watermarks librdkafka last saw in Fetch responses for a partition (no request).
pub fn cached_watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the call only reads offsets
    // librdkafka cached from Fetch responses into the two i64 out-parameters.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
}

/// The high watermark librdkafka last saw in a Fetch response for a partition (no request).
pub fn cached_high_watermark<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    cached_watermarks(consumer, topic, partition).map(|(_, high)| high)
}
