//! Changelog topics: each task logs its committed state writes to its partition of
//! `<application_id>-<store>-changelog` (one topic per sub-topology, named after its first
//! store; every record's key says which store it belongs to), and a new owner of the task
//! rebuilds the state by replaying it.
//!
//! Each commit appends its writes (tagged with a batch id, header `happystreams.batch`, for
//! diagnosis), then a commit marker whose value holds the task's input positions and stream
//! time. A marker commits every write before it: restoring applies writes when a marker follows
//! them. Writes no marker follows (the task crashed mid-commit) are left out and reported, so the
//! next commit logs those keys' real values again — which is also why writes of a crashed commit
//! in the middle of the log are harmless: the next owner's first commit rewrote their keys.
//!
//! All markers of a partition share one key, so compaction keeps only the latest: a compacted
//! changelog is the latest value of every key, then one marker. The restore therefore never holds
//! more than [`RestoreLimits`] in memory: past it, the writes go to the store under the last
//! checkpoint, flagged `restoring` until the next marker (a task that finds the flag at open
//! crashed there, and rebuilds its store). If the writes past the last marker outgrew the limit
//! (a crashed commit bigger than it), the store holds writes no marker covers: the restore says
//! so ([`RestoreReport::dirty`]) and its caller wipes the store and restores again up to the
//! last marker.

use super::producer::{Kind, OutputProducer};
use crate::connectors::kafka::{KafkaConfig, Reader, ReaderContext, cached_high_watermark};
use crate::state::{Changelog, Checkpoint, StateBackend, StateError, WriteSet};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, Message as _, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BATCH_HEADER: &str = "happystreams.batch";
/// The key of commit markers (data records' keys start with the store name's length, a u16 that
/// is never 0xFFFF). Earlier versions appended the batch id; a restore reads both.
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

/// The value of the commit marker for `checkpoint`.
fn marker(checkpoint: &Checkpoint) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Marker { inputs: checkpoint.inputs.clone(), stream_time_ms: checkpoint.stream_time_ms })
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
        let value = marker(checkpoint).map_err(|e| self.failed(&e))?;
        let headers = OwnedHeaders::new().insert(KafkaHeader { key: BATCH_HEADER, value: Some(self.batch.as_bytes()) });
        let record = OutputProducer::record(&self.topic, Kind::Changelog)
            .partition(self.partition)
            .key(MARKER_KEY)
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
    /// Keys written after the last commit marker (no marker covers them).
    pub orphans: Vec<(String, Vec<u8>)>,
    /// Writes held in memory and written to the store before their marker arrived, in chunks.
    pub chunks: u64,
    /// Set when writes no marker covers reached the store (a crashed commit larger than the
    /// limits): the changelog offset after the last marker, up to which a restore into a wiped
    /// store must go.
    pub dirty: Option<i64>,
    /// How long it took.
    pub elapsed: Duration,
}

/// How much a restore holds in memory before it writes to the store.
#[derive(Debug, Clone, Copy)]
pub struct RestoreLimits {
    /// Written records (keys).
    pub records: usize,
    /// Bytes of keys and values.
    pub bytes: usize,
}

/// A consumer for partitions it is assigned by hand (no group membership; the group id only
/// names it), reading committed records from the start of a partition unless told otherwise,
/// reporting the end of a partition when `eof`.
pub fn reader(kafka: &KafkaConfig, group_id: &str, eof: bool) -> Result<Reader, KafkaError> {
    let mut config = kafka.consumer_config();
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
    config.create_with_context(ReaderContext)
}

/// Replays partition `partition` of `topic` into `backend`, from the backend's checkpointed
/// changelog position (0 without one) to the end of the partition, holding at most `limits` in
/// memory. With `until`, only records before that offset are applied (the rest are reported as
/// orphans): the second pass after a [`RestoreReport::dirty`] one, into a wiped store.
/// `progress(read, total)` is called about once a second. Stops early (with an error) when
/// `cancel` is set.
#[allow(clippy::too_many_arguments)]
pub fn restore(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    backend: &mut dyn StateBackend,
    limits: RestoreLimits,
    until: Option<i64>,
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
    let mut replay = Replay::new(topic, backend, checkpoint, from, limits, until);
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
                let key = message.key().unwrap_or_default();
                replay.apply(message.offset(), key, message.payload()).map_err(|e| match e {
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

/// Applies changelog records in log order: writes wait for a commit marker, which commits them
/// to the backend with its checkpoint. Writes beyond the limits go to the backend early, under
/// the last checkpoint; writes no marker follows are orphans.
struct Replay<'a> {
    topic: &'a str,
    backend: &'a mut dyn StateBackend,
    stores: Vec<String>,
    /// The checkpoint of the last marker (the backend's).
    checkpoint: Checkpoint,
    writes: WriteSet,
    held: RestoreLimits,
    limits: RestoreLimits,
    /// Writes reached the backend since the last marker.
    flushed: bool,
    /// The offset after the last marker (where `checkpoint` stands).
    marked: i64,
    until: Option<i64>,
    report: RestoreReport,
}

impl<'a> Replay<'a> {
    fn new(
        topic: &'a str,
        backend: &'a mut dyn StateBackend,
        checkpoint: Checkpoint,
        from: i64,
        limits: RestoreLimits,
        until: Option<i64>,
    ) -> Self {
        let stores = backend.stores();
        let report = RestoreReport { from, to: from, ..RestoreReport::default() };
        let held = RestoreLimits { records: 0, bytes: 0 };
        let writes = WriteSet::new();
        Replay { topic, backend, stores, checkpoint, writes, held, limits, flushed: false, marked: from, until, report }
    }

    fn apply(&mut self, offset: i64, key: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
        self.report.records += 1;
        self.report.to = offset + 1;
        let marker = key.starts_with(MARKER_KEY);
        if self.until.is_some_and(|until| offset >= until) {
            if !marker && let Some(entry) = parse_entry_key(key) {
                self.report.orphans.push(entry);
            }
            return Ok(());
        }
        if marker {
            let marker: Marker = serde_json::from_slice(value.unwrap_or_default())
                .map_err(|e| StateError::Changelog(format!("bad commit marker at offset {offset}: {e}")))?;
            self.checkpoint.inputs = marker.inputs;
            self.checkpoint.stream_time_ms = marker.stream_time_ms;
            self.checkpoint.changelogs.insert(self.topic.to_owned(), offset + 1);
            self.checkpoint.restoring = false;
            self.backend.commit(&self.writes, &self.checkpoint)?;
            self.clear();
            self.flushed = false;
            self.marked = offset + 1;
            self.report.batches += 1;
            super::fault::point("restore.marker_applied");
            return Ok(());
        }
        let Some((store, key)) = parse_entry_key(key) else {
            return Err(StateError::Changelog(format!("record at offset {offset} has no store key")));
        };
        if !self.stores.contains(&store) {
            return Ok(()); // a store the topology no longer has
        }
        self.held.records += 1;
        self.held.bytes += key.len() + value.map_or(0, <[u8]>::len);
        self.writes.entry(store).or_default().insert(key, value.map(<[u8]>::to_vec));
        if self.held.records >= self.limits.records || self.held.bytes >= self.limits.bytes {
            // Under the last marker's positions, flagged: until the next marker the store may
            // hold writes no marker will cover, and a task that finds the flag at open (a crash
            // before that marker) rebuilds its store.
            self.checkpoint.restoring = true;
            self.backend.commit(&self.writes, &self.checkpoint)?;
            self.clear();
            self.flushed = true;
            self.report.chunks += 1;
            super::fault::point("restore.chunk_written");
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.writes.clear();
        self.held = RestoreLimits { records: 0, bytes: 0 };
    }

    /// The writes after the last marker are orphans; if some reached the backend, it is dirty.
    fn finish(mut self) -> RestoreReport {
        for (store, keys) in std::mem::take(&mut self.writes) {
            self.report.orphans.extend(keys.into_keys().map(|k| (store.clone(), k)));
        }
        if self.flushed {
            self.report.dirty = Some(self.marked);
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryBackend;

    /// Changelog records: key, value.
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
        log.push((MARKER_KEY.to_vec(), Some(marker(&checkpoint).unwrap())));
    }

    /// Kafka compaction of the closed segments (everything up to the last marker here; the tail
    /// after it is the active segment): the latest record per key, at its own offset; tombstones
    /// kept or, after `delete.retention.ms`, dropped.
    fn compact(log: &Log, drop_tombstones: bool) -> Vec<(i64, &Log, usize)> {
        let closed = log.iter().rposition(|(k, _)| k.starts_with(MARKER_KEY)).map_or(0, |i| i + 1);
        let latest: BTreeMap<&[u8], usize> =
            log[..closed].iter().enumerate().map(|(i, (k, _))| (k.as_slice(), i)).collect();
        log.iter()
            .enumerate()
            .filter(|(i, (k, v))| *i >= closed || (latest[k.as_slice()] == *i && (v.is_some() || !drop_tombstones)))
            .map(|(i, _)| (i as i64, log, i))
            .collect()
    }

    const UNLIMITED: RestoreLimits = RestoreLimits { records: usize::MAX, bytes: usize::MAX };

    /// Replays `records` into `backend` (as `restore` does with a partition's records).
    fn replay_into<'a>(
        backend: &mut MemoryBackend,
        records: impl IntoIterator<Item = (i64, &'a Log, usize)>,
        limits: RestoreLimits,
        until: Option<i64>,
    ) -> RestoreReport {
        let checkpoint = backend.checkpoint().unwrap().unwrap_or_default();
        let from = checkpoint.changelogs.get("log").copied().unwrap_or(0);
        let mut replay = Replay::new("log", backend, checkpoint, from, limits, until);
        for (offset, log, i) in records {
            let (key, value) = &log[i];
            replay.apply(offset, key, value.as_deref()).unwrap();
        }
        replay.finish()
    }

    fn replay<'a>(records: impl IntoIterator<Item = (i64, &'a Log, usize)>) -> (MemoryBackend, RestoreReport) {
        let mut backend = MemoryBackend::new(&["s"]);
        let report = replay_into(&mut backend, records, UNLIMITED, None);
        (backend, report)
    }

    fn whole(log: &Log) -> impl Iterator<Item = (i64, &Log, usize)> {
        (0..log.len()).map(move |i| (i as i64, log, i))
    }

    fn state(backend: &MemoryBackend) -> Vec<(Vec<u8>, Vec<u8>)> {
        backend.range("s", b"", None).unwrap()
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
        commit(&mut log, &[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))], 10);
        commit(&mut log, &[("a", Some("2")), ("b", None)], 20);
        write(&mut log, &[("a", Some("lost")), ("d", Some("lost"))]);
        commit(&mut log, &[("a", Some("2")), ("d", None), ("c", Some("3"))], 30);
        write(&mut log, &[("c", Some("lost")), ("e", Some("lost"))]);
        log
    }

    fn expected_state() -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![(b"a".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"3".to_vec())]
    }

    #[test]
    fn restore_applies_writes_a_marker_follows() {
        let log = crashed_twice();
        let (backend, report) = replay(whole(&log));
        assert_eq!(state(&backend), expected_state());
        let orphans: Vec<&[u8]> = report.orphans.iter().map(|(_, k)| k.as_slice()).collect();
        assert_eq!(orphans, [b"c".as_slice(), b"e"], "the writes after the last marker");
        let checkpoint = backend.checkpoint().unwrap().unwrap();
        assert_eq!(checkpoint.inputs["in:0"], 30);
        assert_eq!(checkpoint.changelogs["log"], log.len() as i64 - 2);
        assert_eq!((report.batches, report.dirty), (3, None));
    }

    #[test]
    fn compaction_keeps_only_the_latest_marker_and_the_same_restored_state() {
        let log = crashed_twice();
        let (full, _) = replay(whole(&log));
        for drop_tombstones in [false, true] {
            let compacted = compact(&log, drop_tombstones);
            let markers = compacted.iter().filter(|(_, log, i)| log[*i].0.starts_with(MARKER_KEY)).count();
            assert_eq!(markers, 1, "markers share one key");
            let (restored, report) = replay(compacted);
            assert_eq!(state(&restored), state(&full));
            assert_eq!(restored.checkpoint().unwrap(), full.checkpoint().unwrap());
            assert_eq!(report.orphans.len(), 2);
        }
    }

    #[test]
    fn a_bounded_restore_holds_at_most_its_limit_and_restores_the_same_state() {
        // A compacted changelog of a large store: every key, then one marker.
        let mut log = Log::new();
        for round in 0..3 {
            let entries: Vec<(String, Option<String>)> =
                (0..50).map(|k| (format!("k{k:02}"), Some(format!("{round}")))).collect();
            let entries: Vec<(&str, Option<&str>)> = entries.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
            commit(&mut log, &entries, round);
        }
        let compacted = compact(&log, true);
        let (full, _) = replay(compacted.clone());
        let mut bounded = MemoryBackend::new(&["s"]);
        let report = replay_into(&mut bounded, compacted, RestoreLimits { records: 7, bytes: usize::MAX }, None);
        assert_eq!(state(&bounded), state(&full));
        assert_eq!(bounded.checkpoint().unwrap(), full.checkpoint().unwrap());
        assert_eq!((report.chunks, report.dirty), (50 / 7, None), "written in chunks of 7 keys");
        assert!(!bounded.checkpoint().unwrap().unwrap().restoring, "the marker after the chunks clears the flag");
        // By bytes too.
        let mut bounded = MemoryBackend::new(&["s"]);
        let report = replay_into(&mut bounded, whole(&log), RestoreLimits { records: usize::MAX, bytes: 40 }, None);
        assert_eq!(state(&bounded), state(&full));
        assert!(report.chunks >= 10, "{report:?}");
    }

    #[test]
    fn writes_no_marker_covers_that_reached_the_store_make_it_dirty_and_a_second_pass_fixes_it() {
        let log = crashed_twice();
        let limits = RestoreLimits { records: 2, bytes: usize::MAX };
        let mut first = MemoryBackend::new(&["s"]);
        let report = replay_into(&mut first, whole(&log), limits, None);
        let marked = log.len() as i64 - 2;
        assert_eq!(report.dirty, Some(marked), "the trailing crashed commit reached the store");
        assert!(first.checkpoint().unwrap().unwrap().restoring, "flagged for a task that crashes before the wipe");
        assert_ne!(state(&first), expected_state());
        // The caller wipes the store and restores up to the last marker.
        let mut wiped = MemoryBackend::new(&["s"]);
        let report = replay_into(&mut wiped, whole(&log), limits, Some(marked));
        assert_eq!(state(&wiped), expected_state());
        assert_eq!(report.dirty, None);
        let orphans: Vec<&[u8]> = report.orphans.iter().map(|(_, k)| k.as_slice()).collect();
        assert_eq!(orphans, [b"c".as_slice(), b"e"]);
        assert_eq!(wiped.checkpoint().unwrap().unwrap().changelogs["log"], marked);
        assert!(!wiped.checkpoint().unwrap().unwrap().restoring);
    }

    #[test]
    fn a_restore_from_a_checkpoint_reads_markers_of_earlier_versions_too() {
        // Markers keyed by batch (earlier versions) commit like the shared key.
        let mut log = Log::new();
        commit(&mut log, &[("a", Some("1"))], 10);
        let (key, value) = log.pop().unwrap();
        let mut old_key = key.clone();
        old_key.extend_from_slice(b"b1");
        log.push((old_key, value));
        commit(&mut log, &[("b", Some("2"))], 20);
        let (backend, report) = replay(whole(&log));
        assert_eq!(state(&backend), vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
        assert_eq!(report.batches, 2);
        // Restarting from the local checkpoint after the first marker reads on from there.
        let mut from_checkpoint = MemoryBackend::new(&["s"]);
        replay_into(&mut from_checkpoint, whole(&log).take(2), UNLIMITED, None);
        let report = replay_into(&mut from_checkpoint, whole(&log).skip(2), UNLIMITED, None);
        assert_eq!(state(&from_checkpoint), state(&backend));
        assert_eq!((report.from, report.batches), (2, 1));
    }
}
