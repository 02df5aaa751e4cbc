//! Changelog topics: each task logs its committed state writes to its partition of
//! `<application_id>-<store>-changelog` (one topic per sub-topology, named after its first
//! store; every record's key says which store it belongs to), and a new owner of the task
//! rebuilds the state by replaying it.
//!
//! Each commit appends its writes tagged with a batch id (header `happystreams.batch`), then a
//! commit marker for that batch whose value holds the task's input positions and stream time.
//! Restoring applies a batch only when its marker follows; writes of a batch that never got its
//! marker (the task crashed mid-commit) are skipped and reported, so the next commit can log
//! those keys' real values again.

use super::producer::{Kind, OutputProducer};
use crate::connectors::kafka::{KafkaConfig, cached_high_watermark};
use crate::state::{Changelog, Checkpoint, StateBackend, StateError, WriteSet};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, Headers as _, Message as _, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BATCH_HEADER: &str = "happystreams.batch";
/// Keys of data records start with the store name's length (u16), which is never 0xFFFF.
const MARKER_KEY: &[u8] = b"\xff\xffhappystreams.commit";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    inputs: BTreeMap<String, i64>,
    stream_time_ms: Option<i64>,
}

/// Writes the changelog key of `key` in `store` into `out` (reused across records).
fn entry_key_into(out: &mut Vec<u8>, store: &str, key: &[u8]) {
    out.clear();
    out.extend_from_slice(&(store.len() as u16).to_be_bytes());
    out.extend_from_slice(store.as_bytes());
    out.extend_from_slice(key);
}

fn parse_entry_key(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let len = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
    let store = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
    Some((store.to_owned(), bytes[2 + len..].to_vec()))
}

/// A batch id unique across processes and restarts.
fn batch_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}-{:x}", nanos, std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// One task's changelog partition.
pub struct KafkaChangelog {
    producer: Arc<OutputProducer>,
    topic: String,
    partition: i32,
    /// The batch of the writes sent last (its marker goes out next).
    batch: String,
}

impl KafkaChangelog {
    /// The changelog of partition `partition` of `topic`, written through `producer`.
    pub fn new(producer: Arc<OutputProducer>, topic: &str, partition: i32) -> Self {
        KafkaChangelog { producer, topic: topic.to_owned(), partition, batch: String::new() }
    }

    fn failed(&self, e: &dyn std::fmt::Display) -> StateError {
        StateError::Changelog(format!("writing changelog {} partition {}: {e}", self.topic, self.partition))
    }
}

impl Changelog for KafkaChangelog {
    fn send_writes(&mut self, writes: &WriteSet) -> Result<(), StateError> {
        self.batch = batch_id();
        let headers = OwnedHeaders::new().insert(KafkaHeader { key: BATCH_HEADER, value: Some(self.batch.as_bytes()) });
        let mut key = Vec::new();
        for (store, entries) in writes {
            for (entry, value) in entries {
                entry_key_into(&mut key, store, entry);
                let mut record = OutputProducer::record(&self.topic, Kind::Changelog)
                    .partition(self.partition)
                    .key(key.as_slice())
                    .headers(headers.clone());
                if let Some(value) = value {
                    record = record.payload(value.as_slice());
                }
                self.producer.send(record).map_err(|e| self.failed(&e))?;
            }
        }
        Ok(())
    }

    fn send_marker(&mut self, checkpoint: &Checkpoint) -> Result<(), StateError> {
        let marker = serde_json::to_vec(&Marker {
            inputs: checkpoint.inputs.clone(),
            stream_time_ms: checkpoint.stream_time_ms,
        })
        .map_err(|e| self.failed(&e))?;
        let mut marker_key = MARKER_KEY.to_vec();
        marker_key.extend_from_slice(self.batch.as_bytes());
        let headers = OwnedHeaders::new().insert(KafkaHeader { key: BATCH_HEADER, value: Some(self.batch.as_bytes()) });
        let record = OutputProducer::record(&self.topic, Kind::Changelog)
            .partition(self.partition)
            .key(marker_key.as_slice())
            .payload(marker.as_slice())
            .headers(headers);
        self.producer.send(record).map_err(|e| self.failed(&e))
    }

    fn flush(&mut self) -> Result<(), StateError> {
        self.producer.flush().map_err(|e| self.failed(&e))
    }

    fn positions(&self) -> Result<BTreeMap<String, i64>, StateError> {
        let end = self
            .producer
            .changelog_end(&self.topic, self.partition)
            .ok_or_else(|| self.failed(&"no record of the commit was acknowledged"))?;
        Ok(BTreeMap::from([(self.topic.clone(), end)]))
    }
}

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    /// Changelog offset it started at.
    pub from: i64,
    /// Offset after the last record read.
    pub to: i64,
    /// Records read.
    pub records: u64,
    /// Batches applied.
    pub batches: u64,
    /// Keys written by batches that never got their commit marker.
    pub orphans: Vec<(String, Vec<u8>)>,
    /// How long it took.
    pub elapsed: Duration,
}

/// A consumer for partitions it is assigned by hand (no group membership; the group id only
/// names it), reading committed records from the start of a partition unless told otherwise,
/// reporting the end of a partition when `eof`.
pub fn reader(kafka: &KafkaConfig, group_id: &str, eof: bool) -> Result<BaseConsumer, KafkaError> {
    let mut config = kafka.client_config();
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", if eof { "true" } else { "false" })
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    if eof {
        // The end of a partition is learnt from an empty fetch, which the broker holds for up
        // to this long: a reader to the end must not wait librdkafka's 500 ms per partition.
        config.set("fetch.wait.max.ms", "10");
    }
    config.create()
}

/// Replays partition `partition` of `topic` into `backend`, from the backend's checkpointed
/// changelog position (0 without one) to the end of the partition. `progress(read, total)` is
/// called about once a second. Stops early (with an error) when `cancel` is set.
pub fn restore(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    backend: &mut dyn StateBackend,
    cancel: &AtomicBool,
    mut progress: impl FnMut(u64, Option<i64>),
) -> Result<RestoreReport, StateError> {
    let started = Instant::now();
    let failed =
        |detail: String| StateError::Changelog(format!("restoring from {topic} partition {partition}: {detail}"));
    let mut checkpoint = backend.checkpoint()?.unwrap_or_default();
    let from = checkpoint.changelogs.get(topic).copied().unwrap_or(0);
    let consumer = reader(kafka, "happystreams-restore", true).map_err(|e| failed(e.to_string()))?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(from)).map_err(|e| failed(e.to_string()))?;
    consumer.assign(&assignment).map_err(|e| failed(e.to_string()))?;
    let mut report = RestoreReport { from, to: from, ..RestoreReport::default() };
    let stores = backend.stores();
    let mut batch: Option<String> = None;
    let mut writes = WriteSet::new();
    let mut last_progress = Instant::now();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(failed("cancelled (the task was revoked)".into()));
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let total = cached_high_watermark(&consumer, topic, partition).map(|hw| hw - from);
            progress(report.records, total);
        }
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => {
                tracing::warn!(topic, partition, error = %e, "changelog read error; retrying");
                continue;
            }
            Some(Ok(message)) => message,
        };
        report.records += 1;
        report.to = message.offset() + 1;
        let id = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == BATCH_HEADER).and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let key = message.key().unwrap_or_default();
        if key.starts_with(MARKER_KEY) {
            let marker: Marker = serde_json::from_slice(message.payload().unwrap_or_default())
                .map_err(|e| failed(format!("bad commit marker at offset {}: {e}", message.offset())))?;
            if batch.is_some() && batch != id {
                orphan(&mut report, std::mem::take(&mut writes));
            }
            checkpoint.inputs = marker.inputs;
            checkpoint.stream_time_ms = marker.stream_time_ms;
            checkpoint.changelogs.insert(topic.to_owned(), message.offset() + 1);
            backend.commit(&writes, &checkpoint)?;
            writes.clear();
            batch = None;
            report.batches += 1;
            continue;
        }
        if batch != id {
            orphan(&mut report, std::mem::take(&mut writes));
            batch = id;
        }
        let Some((store, key)) = parse_entry_key(key) else {
            return Err(failed(format!("record at offset {} has no store key", message.offset())));
        };
        if !stores.contains(&store) {
            // A store the topology no longer has.
            continue;
        }
        writes.entry(store).or_default().insert(key, message.payload().map(<[u8]>::to_vec));
    }
    orphan(&mut report, writes);
    report.elapsed = started.elapsed();
    Ok(report)
}

fn orphan(report: &mut RestoreReport, writes: WriteSet) {
    for (store, keys) in writes {
        report.orphans.extend(keys.into_keys().map(|k| (store.clone(), k)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_round_trip_and_never_look_like_markers() {
        let mut key = Vec::new();
        entry_key_into(&mut key, "visitors-table", b"\x01\x02");
        assert_eq!(parse_entry_key(&key), Some(("visitors-table".to_owned(), vec![1, 2])));
        assert!(!key.starts_with(MARKER_KEY));
        assert_ne!(batch_id(), batch_id());
    }
}
