//! Opening a task — local state, changelog restore from the local checkpoint, its tables read to
//! their end — and handling one input record. The restore threads and the worker loop
//! ([`super::worker`]) both use these.

use super::ProcessingGuarantee;
use super::RuntimeError;
use super::changelog::{KafkaChangelog, RestoreLimits, RestoreReport, reader, restore};
use super::codecs::BadRecord;
use super::deleted::checked_resume;
use super::emitter::Deferred;
use super::global::TaskBackend;
use super::layout::TaskId;
use super::shared::Shared;
use super::task::Task;
use crate::connectors::kafka::record_from;
use crate::error::ErrorClass;
use crate::observe::metrics::TopicActivity;
use crate::operators::OperatorError;
use crate::operators::pipeline::Pipeline;
use crate::record::Record;
use crate::state::{MemoryBackend, RocksDbBackend, StateBackend, StateError, TaskState};
use crate::topology::spec::OnError;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Records of repartition topics read (internal traffic, apart from the inputs).
pub static REPARTITION_IN: TopicActivity = TopicActivity::new(
    "happystreams_repartition_records_in_total",
    "happystreams_repartition_last_record_timestamp_seconds",
);

/// Records read per input topic (their volume is watched by [`crate::observe::volume`]).
pub static RECORDS_IN: TopicActivity =
    TopicActivity::new("happystreams_records_in_total", "happystreams_input_last_record_timestamp_seconds");

/// Handles one input record for `task`: decode, process, emit; a bad record follows its
/// source's `on_error` policy. The task's position moves past the record unless it fails.
pub fn handle_record(shared: &Shared, task: &mut Task, topic: &str, record: &Record) -> Result<(), RuntimeError> {
    let (partition, offset) = record.position.as_ref().map_or((-1, -1), |p| (p.partition, p.offset));
    let source_name = shared.decoders.source_of(topic);
    match source_name {
        Some(_) => RECORDS_IN.add(topic, 1),
        None => REPARTITION_IN.add(topic, 1),
    }
    let source = source_name.and_then(|s| shared.plan.source(s));
    let decoded = shared.decoders.decode(task.pipeline(), topic, record);
    let outcome = decoded.and_then(|input| {
        let mut out = Vec::new();
        match task.process(input, &mut out) {
            Ok(()) => Ok(out),
            Err(e @ (OperatorError::Expression(_) | OperatorError::Data(_))) => {
                Err(BadRecord { class: ErrorClass::Data, message: e.to_string() })
            }
            Err(e) => Err(BadRecord { class: e.class(), message: e.to_string() }),
        }
    });
    match outcome {
        Ok(out) => match task.cache.absorb(out, &shared.cached_topics, &shared.cache_budget) {
            out if out.is_empty() => {}
            out => match task.deferred() {
                Some(deferred) => deferred.push(Deferred::Outputs(out)),
                // On error the record's state writes stay in the task's write cache; the
                // instance stops without committing them (see `run`).
                None => shared.emitter.emit(out)?,
            },
        },
        Err(bad) => {
            let policy = match (source, bad.class) {
                (Some(source), ErrorClass::Data) => source.on_error,
                _ => OnError::Fail,
            };
            let name = source.map_or("-", |s| s.name.as_str());
            match policy {
                OnError::Fail => {
                    return Err(RuntimeError::Record {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                        class: bad.class,
                        message: bad.message,
                    });
                }
                OnError::Skip => {
                    tracing::warn!(topic, partition, offset, error = %bad.short_message(), "bad record skipped");
                    metrics::counter!("happystreams_records_skipped_total", "source" => name.to_owned()).increment(1);
                }
                OnError::DeadLetter => {
                    tracing::warn!(topic, partition, offset, error = %bad.short_message(), "bad record dead-lettered");
                    let dlq = shared
                        .layout
                        .dead_letters
                        .get(name)
                        .ok_or_else(|| RuntimeError::Config(format!("source `{name}` has no dead-letter topic")))?;
                    match task.deferred() {
                        Some(deferred) => {
                            deferred.push(Deferred::DeadLetter { dlq: dlq.clone(), record: record.clone(), bad })
                        }
                        None => shared.emitter.dead_letter(dlq, record, &bad)?,
                    }
                    metrics::counter!("happystreams_records_dead_lettered_total", "source" => name.to_owned())
                        .increment(1);
                }
            }
        }
    }
    task.advance(topic, partition, offset + 1);
    Ok(())
}

/// Reads partitions of `topic` from the task's positions (the start without one) to their end,
/// all at once, processing every record: how tables bootstrap before the streams that join them.
///
/// With `chunked`, the task commits whenever its uncommitted writes reach
/// `runtime.bootstrap_chunk_records` keys or `bootstrap_chunk_mb`, so a large table is never
/// held whole in memory (nor logged as one changelog batch). A crash between chunks resumes from
/// the last chunk's positions like after any commit.
fn catch_up(
    shared: &Shared,
    task: &mut Task,
    topic: &str,
    partitions: &[i32],
    cancel: &AtomicBool,
    chunked: bool,
) -> Result<u64, RuntimeError> {
    let max_keys = shared.runtime.bootstrap_chunk_records.max(1);
    let max_bytes = shared.runtime.bootstrap_chunk_mb.max(1) << 20;
    let consumer = reader(&shared.kafka, &format!("{}-bootstrap", shared.layout.application_id), true)
        .map_err(|e| RuntimeError::Kafka(format!("creating a consumer: {e}")))?;
    let mut assignment = TopicPartitionList::new();
    for &partition in partitions {
        // A table whose records after the task's position were deleted fails or skips, loudly.
        let from = match checked_resume(shared, &consumer, task, topic, partition)? {
            Some(start) => Offset::Offset(start),
            None => Offset::Beginning,
        };
        let _ = assignment.add_partition_offset(topic, partition, from);
    }
    consumer.assign(&assignment).map_err(|e| RuntimeError::Kafka(format!("reading {topic}: {e}")))?;
    let name: Arc<str> = Arc::from(topic);
    let mut records = 0;
    let mut at_end = std::collections::BTreeSet::new();
    while at_end.len() < partitions.len() {
        if cancel.load(Ordering::Relaxed) {
            return Err(RuntimeError::Kafka(format!("reading {topic} cancelled (task revoked)")));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(e)) => tracing::warn!(topic, error = %e, "read error; retrying"),
            Some(Ok(message)) => {
                records += 1;
                handle_record(shared, task, topic, &record_from(&message, name.clone()))?;
                let (keys, bytes) = task.pending();
                if chunked && (keys >= max_keys || bytes >= max_bytes) {
                    commit_chunk(shared, task)?;
                }
            }
        }
    }
    Ok(records)
}

/// Commits a bootstrap chunk by the commit protocol: the outputs so far (held back or cached)
/// are sent and acknowledged first.
fn commit_chunk(shared: &Shared, task: &mut Task) -> Result<(), RuntimeError> {
    let deferring = task.deferred().is_some();
    shared.emitter.send_deferred(task.take_deferred())?;
    super::commit::send_cache(shared, task)?;
    shared.emitter.flush()?;
    task.commit()?;
    if deferring {
        task.defer();
    }
    metrics::counter!("happystreams_bootstrap_chunks_total").increment(1);
    super::fault::point("bootstrap.chunk_committed");
    Ok(())
}

/// Where a task directory goes while it is deleted.
fn wiping(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".wiping");
    PathBuf::from(name)
}

fn remove_dir(dir: &Path) -> Result<(), RuntimeError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(RuntimeError::State(StateError::Io { path: dir.to_owned(), detail: format!("deleting it: {e}") }))
        }
        _ => Ok(()),
    }
}

/// Empties a task's state directory (moved aside first, so a crash never leaves half a
/// RocksDB behind) and opens it anew.
fn wipe(
    shared: &Shared,
    dir: &Path,
    stores: &[String],
    cancel: &AtomicBool,
) -> Result<Box<dyn StateBackend>, RuntimeError> {
    let aside = wiping(dir);
    std::fs::rename(dir, &aside).map_err(|e| {
        RuntimeError::State(StateError::Io { path: dir.to_owned(), detail: format!("moving it aside: {e}") })
    })?;
    remove_dir(&aside)?;
    Ok(Box::new(open_unlocked(shared, dir, stores, cancel)?))
}

/// How long a task waits for its state directory to be closed by its last owner in this process
/// (another stream thread that has not finished closing it).
const LOCKED_WAIT: Duration = Duration::from_secs(60);

/// Opens a task's RocksDB, waiting while something else in this instance still holds it: another
/// stream thread (a task moving between threads: the old owner closes it in its rebalance
/// callback, which may still run when a lost assignment or an eager assignor hands the task
/// over), or a query reading a snapshot of the state just closed.
fn open_unlocked(
    shared: &Shared,
    dir: &Path,
    stores: &[String],
    cancel: &AtomicBool,
) -> Result<RocksDbBackend, RuntimeError> {
    let started = Instant::now();
    loop {
        match RocksDbBackend::open(dir, stores, &shared.memory) {
            Err(crate::state::StateError::Locked { detail, .. }) if detail.contains("current process") => {
                if started.elapsed() >= LOCKED_WAIT || cancel.load(Ordering::Relaxed) {
                    return Err(RuntimeError::Internal(format!(
                        "{} is still open in another stream thread of this instance after {} s; please report this",
                        dir.display(),
                        LOCKED_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            opened => return Ok(opened?),
        }
    }
}

/// Opens a task's RocksDB and reads its checkpoint. State RocksDB finds corrupt, or a checkpoint
/// it cannot decode (a half-written or damaged directory), is moved aside to
/// `<dir>.corrupt-<unix milliseconds>` for inspection, and the task starts empty and restores from
/// its changelog — instead of failing the same way at every restart.
fn open_readable(
    shared: &Shared,
    id: TaskId,
    dir: &Path,
    stores: &[String],
    cancel: &AtomicBool,
) -> Result<RocksDbBackend, RuntimeError> {
    let opened = open_unlocked(shared, dir, stores, cancel).and_then(|db| {
        db.checkpoint()?;
        Ok(db)
    });
    let e = match opened {
        Err(RuntimeError::State(e @ (StateError::Corrupt { .. } | StateError::Encoding { .. }))) => e,
        other => return other,
    };
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut aside = dir.as_os_str().to_owned();
    aside.push(format!(".corrupt-{millis}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(dir, &aside)
        .map_err(|io| StateError::Io { path: dir.to_owned(), detail: format!("{e}; moving it aside failed: {io}") })?;
    tracing::error!(task = %id, error = %e, moved_to = %aside.display(), "the task's local state is unreadable: moved it aside (inspect or delete it); restoring the task from its changelog");
    metrics::counter!("happystreams_state_quarantined_total").increment(1);
    open_unlocked(shared, dir, stores, cancel)
}

/// Opens a task: local state, changelog restore from the local checkpoint, then its tables read
/// to their end. Runs on its own thread.
pub fn open_task(shared: &Shared, id: TaskId, cancel: &AtomicBool) -> Result<(Task, RestoreReport), RuntimeError> {
    let sub = shared
        .layout
        .subtopology(id.subtopology)
        .ok_or_else(|| RuntimeError::Config(format!("no sub-topology {}", id.subtopology)))?;
    let dir = shared.task_dir(&id.to_string());
    let mut local: Box<dyn StateBackend> = if sub.stores.is_empty() {
        Box::new(MemoryBackend::new(&[] as &[String]))
    } else {
        let local = open_readable(shared, id, &dir, &sub.stores, cancel)?;
        // A wipe cut short by a crash (removed holding the lock: no other thread is wiping).
        remove_dir(&wiping(&dir))?;
        Box::new(local)
    };
    if local.checkpoint()?.is_some_and(|c| c.restoring) {
        // A restore crashed before a marker covered what it wrote: rebuild the store.
        tracing::warn!(task = %id, "the last restore stopped before its end; wiping the state and restoring again");
        drop(local);
        local = wipe(shared, &dir, &sub.stores, cancel)?;
    }
    crate::query::local::opened(shared.thread, id, local.reader());
    let mut report = RestoreReport::default();
    if let Some(changelog) = &sub.changelog {
        let task = id.to_string();
        // However the restore ends (done, cancelled by a revocation, failed), nothing of it
        // remains to restore here: a stale remainder would look like a stalled restore.
        let _remaining = ResetOnDrop(metrics::gauge!("happystreams_restore_remaining_records", "task" => task.clone()));
        let started = Instant::now();
        let limits = RestoreLimits {
            records: shared.runtime.bootstrap_chunk_records.max(1),
            bytes: shared.runtime.bootstrap_chunk_mb.max(1) << 20,
        };
        let progress = |read: u64, total: Option<i64>| {
            let rate = read as f64 / started.elapsed().as_secs_f64().max(0.001);
            let remaining = total.map(|t| (t - read as i64).max(0));
            let eta = remaining.map(|r| r as f64 / rate.max(1.0));
            metrics::gauge!("happystreams_restore_remaining_records", "task" => task.clone())
                .set(remaining.unwrap_or(0) as f64);
            crate::query::local::restoring(shared.thread, id, remaining.map(|r| r as u64));
            tracing::info!(task = %task, records = read, total, rate = rate as u64, eta_s = eta.map(|e| e.round() as u64), "restoring");
        };
        report = restore(&shared.kafka, changelog, id.partition, local.as_mut(), limits, None, cancel, &progress)?;
        if let Some(marked) = report.dirty {
            // A crashed commit larger than the limits reached the store: wipe it and restore again
            // up to the last marker (a crash meanwhile ends up here again).
            tracing::warn!(task = %id, marked, "the restore wrote an unfinished commit to the store; wiping it and restoring again up to the last commit");
            drop(local);
            local = wipe(shared, &dir, &sub.stores, cancel)?;
            crate::query::local::opened(shared.thread, id, local.reader());
            report = restore(
                &shared.kafka,
                changelog,
                id.partition,
                local.as_mut(),
                limits,
                Some(marked),
                cancel,
                &progress,
            )?;
        }
        metrics::counter!("happystreams_restore_records_total", "task" => id.to_string()).increment(report.records);
        let rate = report.records as f64 / report.elapsed.as_secs_f64().max(0.001);
        tracing::info!(
            task = %id, from = report.from, to = report.to, records = report.records, batches = report.batches, chunks = report.chunks,
            uncommitted_keys = report.orphans.len(), rate = rate as u64, elapsed_ms = report.elapsed.as_millis() as u64,
            "restored"
        );
        super::fault::point("restore.done");
        // The changelog is done; the tables are read next (how far they are is unknown).
        crate::query::local::restoring(shared.thread, id, None);
    }
    let mut state = TaskState::new(Box::new(TaskBackend::new(local, shared.global.clone())) as Box<dyn StateBackend>)?;
    if let Some(changelog) = &sub.changelog {
        state = state.with_changelog(Box::new(KafkaChangelog::new(
            shared.emitter.producer().clone(),
            changelog,
            id.partition,
        )));
        // Commits that only moved the input positions are logged too (a marker without writes),
        // under both guarantees: the next owner of the task resumes where its last commit left
        // off. Without them it resumed at the last commit that changed state and processed
        // again every input after it — a join's outputs, re-keyed, counted twice downstream.
        state = state.log_positions();
    }
    let pipeline = Pipeline::with_tables(shared.plan.clone(), &shared.global_tables)
        .map_err(|e| RuntimeError::Config(e.to_string()))?
        .split(id.subtopology);
    let mut task = Task::new(id, pipeline, state);
    task.rewrite(&report.orphans)?;
    task.defer();
    // Under exactly-once a restoring task's changelog records would join the instance's open
    // transaction while its local state moved on alone: its table loads in one piece, committed
    // by the worker inside the transaction.
    let chunked = shared.runtime.processing_guarantee == ProcessingGuarantee::AtLeastOnce;
    for input in sub.inputs.iter().filter(|i| i.table) {
        let records = catch_up(shared, &mut task, &input.topic, &[id.partition], cancel, chunked)?;
        tracing::info!(task = %id, topic = %input.topic, records, "table read to its end");
    }
    super::fault::point("bootstrap.tables_loaded");
    // Committed by the worker with the others (inside its transaction under exactly-once).
    Ok((task, report))
}

/// The global tables: one task over every partition of every global topic.
pub fn open_global(shared: &Shared) -> Result<Option<Task>, RuntimeError> {
    let Some(global) = &shared.global else { return Ok(None) };
    let state = TaskState::new(Box::new(global.clone()) as Box<dyn StateBackend>)?;
    let pipeline = Pipeline::with_tables(shared.plan.clone(), &shared.global_tables)
        .map_err(|e| RuntimeError::Config(e.to_string()))?;
    let mut task = Task::new(TaskId { subtopology: usize::MAX, partition: -1 }, pipeline, state);
    let never = AtomicBool::new(false);
    for (_, topic, partitions) in &shared.layout.globals {
        let all: Vec<i32> = (0..*partitions).collect();
        // The global store has no changelog (its topics are its log): chunks commit locally.
        let records = catch_up(shared, &mut task, topic, &all, &never, true)?;
        tracing::info!(topic, partitions, records, "global table read to its end");
    }
    shared.emitter.flush()?;
    task.commit()?;
    Ok(Some(task))
}

/// Sets a gauge to 0 when dropped.
struct ResetOnDrop(metrics::Gauge);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        self.0.set(0.0);
    }
}
