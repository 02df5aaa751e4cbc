//! The commit protocol (module docs of `runtime`), for every running task with work at once:
//!
//! 1. each task's record cache is sent, then ONE wait: every output of the processed input is
//!    acknowledged;
//! 2. every task sends its changelog writes, ONE wait; every task sends its commit marker, ONE
//!    wait (a marker never goes out before its batch is durable);
//! 3. each task writes its state and checkpoint to RocksDB in one atomic batch;
//! 4. the input offsets go to the group (at least once), or into the producer's transaction,
//!    which commits between 2 and 3 (exactly once).
//!
//! So a commit costs three round trips to the brokers whatever the number of tasks. Its
//! duration is the `commit_seconds` histogram; failures count in `commit_failures_total`, and
//! task commits that wrote state to a changelog in `task_state_commits_total`.

use super::fault;
use super::group::{GroupContext, Slot};
use super::layout::{InputKind, TaskId};
use super::shared::Shared;
use super::task::Task;
use super::{ProcessingGuarantee, RuntimeError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Commits every running task with work; see the module docs.
pub fn commit_tasks(
    shared: &Shared,
    group: &BaseConsumer<GroupContext>,
    tasks: &mut BTreeMap<TaskId, Slot>,
    mode: CommitMode,
) -> Result<(), RuntimeError> {
    if !tasks.values().any(|slot| matches!(slot, Slot::Running(t) if t.needs_commit())) {
        return Ok(());
    }
    let started = Instant::now();
    // Before the exactly-once path holds the send gate: the caches go out like any output.
    let result = send_caches(shared, tasks).and_then(|()| {
        fault::point("commit.caches_sent");
        if shared.runtime.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            commit_transaction(shared, group, tasks)
        } else {
            commit_at_least_once(shared, group, tasks, mode)
        }
    });
    match &result {
        Ok(()) => {
            metrics::histogram!("happystreams_commit_seconds").record(started.elapsed().as_secs_f64());
            metrics::gauge!("happystreams_row_cache_bytes").set(crate::operators::row_cache::PROCESS.used() as f64);
            report_state_sizes(shared, tasks);
            purge_repartitions(shared, tasks)?;
        }
        Err(_) => metrics::counter!("happystreams_commit_failures_total").increment(1),
    }
    result
}

/// Store-size and RocksDB memory gauges, refreshed at every commit.
fn report_state_sizes(shared: &Shared, tasks: &BTreeMap<TaskId, Slot>) {
    metrics::gauge!("happystreams_rocksdb_memory_bytes").set(shared.memory.usage() as f64);
    for slot in tasks.values() {
        if let Slot::Running(task) = slot {
            task.report_store_sizes(false);
        }
    }
}

/// The records of repartition topics before every running task's durable positions can go: a
/// next owner of the task, restoring from its changelog, resumes past them.
fn purge_repartitions(shared: &Shared, tasks: &BTreeMap<TaskId, Slot>) -> Result<(), RuntimeError> {
    let mut purger =
        shared.purger.lock().map_err(|_| RuntimeError::Internal("the purger's lock was poisoned by a panic".into()))?;
    let exactly_once = shared.runtime.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
    if !purger.on() {
        return Ok(());
    }
    let mut positions = Vec::new();
    for (id, slot) in tasks {
        let (Slot::Running(task), Some(sub)) = (slot, shared.layout.subtopology(id.subtopology)) else { continue };
        for input in sub.inputs.iter().filter(|i| matches!(i.kind, InputKind::Repartition(_))) {
            if let Some(next) = task.durable_position(&input.topic, id.partition, exactly_once) {
                positions.push(((input.topic.clone(), id.partition), next));
            }
        }
    }
    purger.committed(positions);
    Ok(())
}

/// Step 1's first half: every task's record cache is sent.
fn send_caches(shared: &Shared, tasks: &mut BTreeMap<TaskId, Slot>) -> Result<(), RuntimeError> {
    with_work(tasks).try_for_each(|task| send_cache(shared, task))
}

/// Sends what a task's record cache holds.
pub fn send_cache(shared: &Shared, task: &mut Task) -> Result<(), RuntimeError> {
    let cached = task.cache.drain(&shared.cache_budget);
    if cached.is_empty() { Ok(()) } else { shared.emitter.emit(cached) }
}

/// Steps 1-2 for every task with work (caches already sent); returns their ids and how many
/// logged state.
fn log_all(shared: &Shared, tasks: &mut BTreeMap<TaskId, Slot>) -> Result<(Vec<TaskId>, u64), RuntimeError> {
    shared.emitter.flush()?;
    fault::point("commit.outputs_acked");
    let mut committing = Vec::new();
    let mut logged = 0;
    for task in with_work(tasks) {
        logged += u64::from(task.log_writes()?);
        committing.push(task.id);
    }
    shared.emitter.flush()?;
    fault::point("commit.changelog_written");
    for task in with_work(tasks) {
        task.log_marker()?;
    }
    Ok((committing, logged))
}

fn commit_at_least_once(
    shared: &Shared,
    group: &BaseConsumer<GroupContext>,
    tasks: &mut BTreeMap<TaskId, Slot>,
    mode: CommitMode,
) -> Result<(), RuntimeError> {
    let (committing, logged) = log_all(shared, tasks)?;
    shared.emitter.flush()?;
    fault::point("commit.markers_acked");
    let mut offsets = TopicPartitionList::new();
    for id in committing {
        if let Some(Slot::Running(task)) = tasks.get_mut(&id) {
            task.finish_commit()?;
            fault::point("commit.state_written");
            add_offsets(&mut offsets, task);
        }
    }
    metrics::counter!("happystreams_task_state_commits_total").increment(logged);
    if let Err(e) = group.commit(&offsets, mode) {
        tracing::warn!(error = %e, "committing group offsets failed (state positions are unaffected)");
    }
    fault::point("commit.offsets_committed");
    Ok(())
}

fn commit_transaction(
    shared: &Shared,
    group: &BaseConsumer<GroupContext>,
    tasks: &mut BTreeMap<TaskId, Slot>,
) -> Result<(), RuntimeError> {
    let _exclusive = shared.emitter.exclusive();
    let producer = shared.emitter.producer().kafka();
    let timeout = Duration::from_secs(30);
    let kafka = |what: &str, e: KafkaError| RuntimeError::Kafka(format!("{what}: {e}"));
    let result = (|| -> Result<(), RuntimeError> {
        let (committing, logged) = log_all(shared, tasks)?;
        let mut offsets = TopicPartitionList::new();
        for id in &committing {
            if let Some(Slot::Running(task)) = tasks.get(id) {
                add_offsets(&mut offsets, task);
            }
        }
        let metadata = group
            .group_metadata()
            .ok_or_else(|| RuntimeError::Kafka("the consumer has no group metadata for the transaction".into()))?;
        producer
            .send_offsets_to_transaction(&offsets, &metadata, timeout)
            .map_err(|e| kafka("adding offsets to the transaction", e))?;
        fault::point("commit.eos.offsets_sent");
        producer.commit_transaction(timeout).map_err(|e| kafka("committing the transaction", e))?;
        fault::point("commit.eos.transaction_committed");
        // The transaction committed, so every marker is durable.
        shared.emitter.flush()?;
        for id in committing {
            if let Some(Slot::Running(task)) = tasks.get_mut(&id) {
                task.finish_commit()?;
                fault::point("commit.state_written");
            }
        }
        metrics::counter!("happystreams_task_state_commits_total").increment(logged);
        producer.begin_transaction().map_err(|e| kafka("beginning a transaction", e))
    })();
    if let Err(e) = result {
        // Outputs and changelog records since the last commit are aborted: read_committed
        // consumers never see them, and the inputs are processed again after a restart.
        if let Err(abort) = producer.abort_transaction(timeout) {
            tracing::error!(error = %abort, "aborting the transaction failed");
        }
        return Err(e);
    }
    Ok(())
}

/// Running tasks with something to commit.
fn with_work(tasks: &mut BTreeMap<TaskId, Slot>) -> impl Iterator<Item = &mut Task> {
    tasks.values_mut().filter_map(|slot| match slot {
        Slot::Running(task) if task.needs_commit() => Some(task.as_mut()),
        _ => None,
    })
}

fn add_offsets(offsets: &mut TopicPartitionList, task: &Task) {
    for (key, next) in task.positions() {
        if let Some((topic, partition)) = key.rsplit_once(':')
            && let Ok(partition) = partition.parse::<i32>()
        {
            let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(*next));
        }
    }
}

/// The group's committed offset of a partition (the start when none was ever committed).
pub fn committed(group: &BaseConsumer<GroupContext>, topic: &str, partition: i32) -> Result<Offset, RuntimeError> {
    let mut last = None;
    for attempt in 0..5 {
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition(topic, partition);
        match group.committed_offsets(tpl, Duration::from_secs(10)) {
            Ok(list) => {
                return Ok(match list.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Offset::Offset(o),
                    _ => Offset::Beginning,
                });
            }
            Err(e) => {
                tracing::warn!(topic, partition, attempt, error = %e, "reading the committed offset failed; retrying");
                last = Some(e);
                std::thread::sleep(Duration::from_millis(500 << attempt));
            }
        }
    }
    Err(RuntimeError::Kafka(format!(
        "reading the committed offset of {topic} partition {partition}: {}; is the group coordinator reachable?",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}
