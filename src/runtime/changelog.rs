//! Changelog topics: each task logs its committed state writes to its partition of
//! `<application_id>-<store>-changelog` (one topic per sub-topology, named after its first
//! store; every record's key says which store it belongs to), and a new owner of the task
//! rebuilds the state by replaying it.
//!
//! Each commit appends its writes, then a *commit marker* whose value holds the task's input
//! positions and stream time. Every marker of a partition has the same key, so compaction keeps
//! only the latest one and a restore from scratch stays as long as the live state. Restoring
//! applies every write that a marker follows; writes after the last marker (the task crashed
//! mid-commit) are skipped and reported, and the next commit logs those keys' real values again
//! before its own marker — so a write left without a marker in the middle of the log (or
//! one whose marker compaction removed) is always overwritten by a later committed one.

use super::producer::{Kind, OutputProducer};
use crate::connectors::kafka::{KafkaConfig, cached_high_watermark};
use crate::state::{Changelog, Checkpoint, StateBackend, StateError, WriteSet};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The key of every commit marker (data records' keys start with the store name's length, a
/// u16 that is never 0xFFFF). Markers written before markers shared one key had the batch id
/// appended: they are recognised by the prefix.
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

/// The key and value of the commit marker for `checkpoint`.
fn marker(checkpoint: &Checkpoint) -> Result<(Vec<u8>, Vec<u8>), serde_json::Error> {
    let value =
        serde_json::to_vec(&Marker { inputs: checkpoint.inputs.clone(), stream_time_ms: checkpoint.stream_time_ms })?;
    Ok((MARKER_KEY.to_vec(), value))
}

/// One task's changelog partition.
pub struct KafkaChangelog {
    producer: Arc<OutputProducer>,
    topic: String,
    partition: i32,
}

impl KafkaChangelog {
    /// The changelog of partition `partition` of `topic`, written through `producer`.
    pub fn new(producer: Arc<OutputProducer>, topic: &str, partition: i32) -> Self {
        KafkaChangelog { producer, topic: topic.to_owned(), partition }
    }

    fn failed(&self, e: &dyn std::fmt::Display) -> StateError {
        StateError::Changelog(format!("writing changelog {} partition {}: {e}", self.topic, self.partition))
    }
}

impl Changelog for KafkaChangelog {
    fn send_writes(&mut self, writes: &WriteSet) -> Result<(), StateError> {
        let mut key = Vec::new();
        for (store, entries) in writes {
            for (entry, value) in entries {
                entry_key_into(&mut key, store, entry);
                let mut record =
                    OutputProducer::record(&self.topic, Kind::Changelog).partition(self.partition).key(key.as_slice());
                if let Some(value) = value {
                    record = record.payload(value.as_slice());
                }
                self.producer.send(record).map_err(|e| self.failed(&e))?;
            }
        }
        Ok(())
    }

    fn send_marker(&mut self, checkpoint: &Checkpoint) -> Result<(), StateError> {
        let (key, value) = marker(checkpoint).map_err(|e| self.failed(&e))?;
        let record = OutputProducer::record(&self.topic, Kind::Changelog)
            .partition(self.partition)
            .key(key.as_slice())
            .payload(value.as_slice());
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
            Some(Ok(message)) => replay
                .apply(message.offset(), message.key().unwrap_or_default(), message.payload())
                .map_err(|e| match e {
                StateError::Changelog(detail) => failed(detail),
                other => other,
            })?,
        }
    }
    let mut report = replay.finish();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Applies changelog records in log order: writes wait for the next commit marker, which commits
/// them to the backend with the marker's checkpoint. Writes after the last marker are orphans.
struct Replay<'a> {
    topic: &'a str,
    backend: &'a mut dyn StateBackend,
    stores: Vec<String>,
    checkpoint: Checkpoint,
    writes: WriteSet,
    report: RestoreReport,
}

impl<'a> Replay<'a> {
    fn new(topic: &'a str, backend: &'a mut dyn StateBackend, checkpoint: Checkpoint, from: i64) -> Self {
        let stores = backend.stores();
        let report = RestoreReport { from, to: from, ..RestoreReport::default() };
        Replay { topic, backend, stores, checkpoint, writes: WriteSet::new(), report }
    }

    fn apply(&mut self, offset: i64, key: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
        self.report.records += 1;
        self.report.to = offset + 1;
        if key.starts_with(MARKER_KEY) {
            let marker: Marker = serde_json::from_slice(value.unwrap_or_default())
                .map_err(|e| StateError::Changelog(format!("bad commit marker at offset {offset}: {e}")))?;
            self.checkpoint.inputs = marker.inputs;
            self.checkpoint.stream_time_ms = marker.stream_time_ms;
            self.checkpoint.changelogs.insert(self.topic.to_owned(), offset + 1);
            self.backend.commit(&self.writes, &self.checkpoint)?;
            self.writes.clear();
            self.report.batches += 1;
            return Ok(());
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

    fn finish(mut self) -> RestoreReport {
        for (store, keys) in std::mem::take(&mut self.writes) {
            self.report.orphans.extend(keys.into_keys().map(|k| (store.clone(), k)));
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryBackend;

    type Log = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    fn write(log: &mut Log, entries: &[(&str, Option<&str>)]) {
        for (key, value) in entries {
            let mut entry = Vec::new();
            entry_key_into(&mut entry, "s", key.as_bytes());
            log.push((entry, value.map(|v| v.as_bytes().to_vec())));
        }
    }

    fn commit(log: &mut Log, entries: &[(&str, Option<&str>)], input: i64) {
        write(log, entries);
        let checkpoint = Checkpoint { inputs: BTreeMap::from([("in:0".into(), input)]), ..Checkpoint::default() };
        let (key, value) = marker(&checkpoint).unwrap();
        log.push((key, Some(value)));
    }

    /// Kafka compaction of the closed segments (everything up to the last marker here; the tail
    /// after it is the active segment): the latest record per key, at its own offset; tombstones
    /// kept or, after `delete.retention.ms`, dropped.
    fn compact(log: &Log, drop_tombstones: bool) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
        let closed = log.iter().rposition(|(k, _)| k.starts_with(MARKER_KEY)).map_or(0, |i| i + 1);
        let latest: BTreeMap<&[u8], usize> =
            log[..closed].iter().enumerate().map(|(i, (k, _))| (k.as_slice(), i)).collect();
        log.iter()
            .enumerate()
            .filter(|(i, (k, v))| *i >= closed || (latest[k.as_slice()] == *i && (v.is_some() || !drop_tombstones)))
            .map(|(i, (k, v))| (i as i64, k.clone(), v.clone()))
            .collect()
    }

    fn replay(records: impl IntoIterator<Item = (i64, Vec<u8>, Option<Vec<u8>>)>) -> (MemoryBackend, RestoreReport) {
        let mut backend = MemoryBackend::new(&["s"]);
        let mut replay = Replay::new("log", &mut backend, Checkpoint::default(), 0);
        for (offset, key, value) in records {
            replay.apply(offset, &key, value.as_deref()).unwrap();
        }
        let report = replay.finish();
        (backend, report)
    }

    #[test]
    fn entry_keys_round_trip_and_never_look_like_markers() {
        let mut key = Vec::new();
        entry_key_into(&mut key, "visitors-table", b"\x01\x02");
        assert_eq!(parse_entry_key(&key), Some(("visitors-table".to_owned(), vec![1, 2])));
        assert!(!key.starts_with(MARKER_KEY));
    }

    /// The log of a task that crashed mid-commit twice: once followed by a new owner's restore
    /// and commit (which rewrites the keys left without a marker), once at the end.
    fn crashed_twice() -> Log {
        let mut log = Log::new();
        commit(&mut log, &[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))], 10);
        commit(&mut log, &[("a", Some("2")), ("b", None)], 20);
        write(&mut log, &[("a", Some("lost")), ("d", Some("lost"))]);
        commit(&mut log, &[("a", Some("2")), ("d", None), ("c", Some("3"))], 30);
        write(&mut log, &[("c", Some("lost")), ("e", Some("lost"))]);
        log
    }

    #[test]
    fn restore_applies_what_a_marker_follows_and_reports_the_tail_after_the_last_one() {
        let log = crashed_twice();
        let (backend, report) = replay(log.iter().enumerate().map(|(i, (k, v))| (i as i64, k.clone(), v.clone())));
        let state = backend.range("s", b"", None).unwrap();
        assert_eq!(state, vec![(b"a".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
        let orphans: Vec<&[u8]> = report.orphans.iter().map(|(_, k)| k.as_slice()).collect();
        assert_eq!(orphans, [b"c".as_slice(), b"e"]);
        let checkpoint = backend.checkpoint().unwrap().unwrap();
        assert_eq!(checkpoint.inputs["in:0"], 30);
        assert_eq!(checkpoint.changelogs["log"], log.len() as i64 - 2);
        assert_eq!(report.batches, 3);
    }

    #[test]
    fn compaction_keeps_one_marker_and_the_same_restored_state() {
        let log = crashed_twice();
        let (full, _) = replay(log.iter().enumerate().map(|(i, (k, v))| (i as i64, k.clone(), v.clone())));
        for drop_tombstones in [false, true] {
            let compacted = compact(&log, drop_tombstones);
            let markers = compacted.iter().filter(|(_, k, _)| k.starts_with(MARKER_KEY)).count();
            assert_eq!(markers, 1, "compaction keeps only the latest marker of a task");
            let (restored, report) = replay(compacted);
            assert_eq!(restored.range("s", b"", None).unwrap(), full.range("s", b"", None).unwrap());
            assert_eq!(restored.checkpoint().unwrap(), full.checkpoint().unwrap());
            assert_eq!(report.orphans.len(), 2);
        }
    }
}
