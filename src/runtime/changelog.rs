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
//!
//! Markers are keyed by their batch, so compaction keeps them all: one small record per commit
//! that wrote state. Keying them per task instead (compaction would keep only the latest) needs a
//! restore that no longer holds everything between two markers in memory — after compaction
//! that would be the whole store — so it waits for a restore that writes in bounded chunks.

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
/// Commit markers' keys start with this, then the batch id (data records' keys start with the
/// store name's length, a u16 that is never 0xFFFF).
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

/// The key and value of the commit marker of `batch` for `checkpoint`.
fn marker(batch: &str, checkpoint: &Checkpoint) -> Result<(Vec<u8>, Vec<u8>), serde_json::Error> {
    let value =
        serde_json::to_vec(&Marker { inputs: checkpoint.inputs.clone(), stream_time_ms: checkpoint.stream_time_ms })?;
    let mut key = MARKER_KEY.to_vec();
    key.extend_from_slice(batch.as_bytes());
    Ok((key, value))
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
        let (key, value) = marker(&self.batch, checkpoint).map_err(|e| self.failed(&e))?;
        let headers = OwnedHeaders::new().insert(KafkaHeader { key: BATCH_HEADER, value: Some(self.batch.as_bytes()) });
        let record = OutputProducer::record(&self.topic, Kind::Changelog)
            .partition(self.partition)
            .key(key.as_slice())
            .payload(value.as_slice())
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
    let checkpoint = backend.checkpoint()?.unwrap_or_default();
    let from = checkpoint.changelogs.get(topic).copied().unwrap_or(0);
    let consumer = reader(kafka, "happystreams-restore", true).map_err(|e| failed(e.to_string()))?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(from)).map_err(|e| failed(e.to_string()))?;
    consumer.assign(&assignment).map_err(|e| failed(e.to_string()))?;
    let mut replay = Replay::new(topic, backend, checkpoint, from);
    let mut last_progress = Instant::now();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(failed("cancelled (the task was revoked)".into()));
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let total = cached_high_watermark(&consumer, topic, partition).map(|hw| hw - from);
            progress(replay.report.records, total);
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => tracing::warn!(topic, partition, error = %e, "changelog read error; retrying"),
            Some(Ok(message)) => {
                let batch =
                    message.headers().and_then(|h| h.iter().find(|h| h.key == BATCH_HEADER).and_then(|h| h.value));
                let key = message.key().unwrap_or_default();
                replay.apply(message.offset(), key, message.payload(), batch).map_err(|e| match e {
                    StateError::Changelog(detail) => failed(detail),
                    other => other,
                })?
            }
        }
    }
    let mut report = replay.finish();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Applies changelog records in log order: a batch's writes wait for its commit marker, which
/// commits them to the backend with the marker's checkpoint. Writes of a batch no marker of its
/// own follows are orphans.
struct Replay<'a> {
    topic: &'a str,
    backend: &'a mut dyn StateBackend,
    stores: Vec<String>,
    checkpoint: Checkpoint,
    writes: WriteSet,
    /// The batch `writes` belong to.
    batch: Option<Vec<u8>>,
    report: RestoreReport,
}

impl<'a> Replay<'a> {
    fn new(topic: &'a str, backend: &'a mut dyn StateBackend, checkpoint: Checkpoint, from: i64) -> Self {
        let stores = backend.stores();
        let report = RestoreReport { from, to: from, ..RestoreReport::default() };
        Replay { topic, backend, stores, checkpoint, writes: WriteSet::new(), batch: None, report }
    }

    fn apply(&mut self, offset: i64, key: &[u8], value: Option<&[u8]>, batch: Option<&[u8]>) -> Result<(), StateError> {
        self.report.records += 1;
        self.report.to = offset + 1;
        if key.starts_with(MARKER_KEY) {
            let marker: Marker = serde_json::from_slice(value.unwrap_or_default())
                .map_err(|e| StateError::Changelog(format!("bad commit marker at offset {offset}: {e}")))?;
            if self.batch.is_some() && self.batch.as_deref() != batch {
                self.orphan();
            }
            self.batch = None;
            self.checkpoint.inputs = marker.inputs;
            self.checkpoint.stream_time_ms = marker.stream_time_ms;
            self.checkpoint.changelogs.insert(self.topic.to_owned(), offset + 1);
            self.backend.commit(&self.writes, &self.checkpoint)?;
            self.writes.clear();
            self.report.batches += 1;
            return Ok(());
        }
        if self.batch.as_deref() != batch {
            self.orphan();
            self.batch = batch.map(<[u8]>::to_vec);
        }
        let Some((store, key)) = parse_entry_key(key) else {
            return Err(StateError::Changelog(format!("record at offset {offset} has no store key")));
        };
        if self.stores.contains(&store) {
            // (Records of a store the topology no longer has are skipped.)
            self.writes.entry(store).or_default().insert(key, value.map(<[u8]>::to_vec));
        }
        Ok(())
    }

    /// The writes held so far never got their marker.
    fn orphan(&mut self) {
        for (store, keys) in std::mem::take(&mut self.writes) {
            self.report.orphans.extend(keys.into_keys().map(|k| (store.clone(), k)));
        }
    }

    fn finish(mut self) -> RestoreReport {
        self.orphan();
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryBackend;

    /// Changelog records: key, value, batch.
    type Log = Vec<(Vec<u8>, Option<Vec<u8>>, Vec<u8>)>;

    fn write(log: &mut Log, entries: &[(&str, Option<&str>)], batch: &str) {
        for (key, value) in entries {
            let mut entry = Vec::new();
            entry_key_into(&mut entry, "s", key.as_bytes());
            log.push((entry, value.map(|v| v.as_bytes().to_vec()), batch.as_bytes().to_vec()));
        }
    }

    fn commit(log: &mut Log, entries: &[(&str, Option<&str>)], batch: &str, input: i64) {
        write(log, entries, batch);
        let checkpoint = Checkpoint { inputs: BTreeMap::from([("in:0".into(), input)]), ..Checkpoint::default() };
        let (key, value) = marker(batch, &checkpoint).unwrap();
        log.push((key, Some(value), batch.as_bytes().to_vec()));
    }

    /// Kafka compaction of the closed segments (everything up to the last marker here; the tail
    /// after it is the active segment): the latest record per key, at its own offset; tombstones
    /// kept or, after `delete.retention.ms`, dropped.
    fn compact(log: &Log, drop_tombstones: bool) -> Vec<(i64, &Log, usize)> {
        let closed = log.iter().rposition(|(k, _, _)| k.starts_with(MARKER_KEY)).map_or(0, |i| i + 1);
        let latest: BTreeMap<&[u8], usize> =
            log[..closed].iter().enumerate().map(|(i, (k, _, _))| (k.as_slice(), i)).collect();
        log.iter()
            .enumerate()
            .filter(|(i, (k, v, _))| *i >= closed || (latest[k.as_slice()] == *i && (v.is_some() || !drop_tombstones)))
            .map(|(i, _)| (i as i64, log, i))
            .collect()
    }

    fn replay<'a>(records: impl IntoIterator<Item = (i64, &'a Log, usize)>) -> (MemoryBackend, RestoreReport) {
        let mut backend = MemoryBackend::new(&["s"]);
        let mut replay = Replay::new("log", &mut backend, Checkpoint::default(), 0);
        for (offset, log, i) in records {
            let (key, value, batch) = &log[i];
            replay.apply(offset, key, value.as_deref(), Some(batch)).unwrap();
        }
        let report = replay.finish();
        (backend, report)
    }

    fn whole(log: &Log) -> impl Iterator<Item = (i64, &Log, usize)> {
        (0..log.len()).map(move |i| (i as i64, log, i))
    }

    #[test]
    fn entry_keys_round_trip_and_never_look_like_markers() {
        let mut key = Vec::new();
        entry_key_into(&mut key, "visitors-table", b"\x01\x02");
        assert_eq!(parse_entry_key(&key), Some(("visitors-table".to_owned(), vec![1, 2])));
        assert!(!key.starts_with(MARKER_KEY));
        assert_ne!(batch_id(), batch_id());
    }

    /// The log of a task that crashed mid-commit twice: once followed by a new owner's restore
    /// and commit (which rewrites the keys left without a marker), once at the end.
    fn crashed_twice() -> Log {
        let mut log = Log::new();
        commit(&mut log, &[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))], "b1", 10);
        commit(&mut log, &[("a", Some("2")), ("b", None)], "b2", 20);
        write(&mut log, &[("a", Some("lost")), ("d", Some("lost"))], "x");
        commit(&mut log, &[("a", Some("2")), ("d", None), ("c", Some("3"))], "b3", 30);
        write(&mut log, &[("c", Some("lost")), ("e", Some("lost"))], "y");
        log
    }

    #[test]
    fn restore_applies_only_batches_their_marker_follows() {
        let log = crashed_twice();
        let (backend, report) = replay(whole(&log));
        let state = backend.range("s", b"", None).unwrap();
        assert_eq!(state, vec![(b"a".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
        let orphans: Vec<&[u8]> = report.orphans.iter().map(|(_, k)| k.as_slice()).collect();
        assert_eq!(orphans, [b"a".as_slice(), b"d", b"c", b"e"]);
        let checkpoint = backend.checkpoint().unwrap().unwrap();
        assert_eq!(checkpoint.inputs["in:0"], 30);
        assert_eq!(checkpoint.changelogs["log"], log.len() as i64 - 2);
        assert_eq!(report.batches, 3);
    }

    #[test]
    fn compaction_keeps_every_marker_and_the_same_restored_state() {
        let log = crashed_twice();
        let (full, _) = replay(whole(&log));
        for drop_tombstones in [false, true] {
            let compacted = compact(&log, drop_tombstones);
            let markers = compacted.iter().filter(|(_, log, i)| log[*i].0.starts_with(MARKER_KEY)).count();
            assert_eq!(markers, 3, "markers have their batch's key: compaction keeps them all");
            let (restored, report) = replay(compacted);
            assert_eq!(restored.range("s", b"", None).unwrap(), full.range("s", b"", None).unwrap());
            assert_eq!(restored.checkpoint().unwrap(), full.checkpoint().unwrap());
            assert_eq!(report.orphans.len(), 2, "the crashed batch in the middle was compacted away");
        }
    }
}
