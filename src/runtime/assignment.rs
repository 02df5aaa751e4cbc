//! Task assignment: a newly assigned task waits for one of the instance's
//! `runtime.restore_threads` restore slots (shared by its stream threads), then restores (its changelog, then its tables) on a thread of its own while the others
//! go on; when done it starts running — its lead partition sought to the task's position and
//! resumed, its other inputs added to the side consumer.

use super::RuntimeError;
use super::commit::committed;
use super::deleted::{checked_resume, checked_start};
use super::group::{GroupContext, Slot, Tasks, lock};
use super::layout::TaskId;
use super::open::open_task;
use super::order::InputQueues;
use super::shared::Shared;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Newly assigned tasks wait for a restore slot; waiting tasks start restoring, each on its own
/// thread, while fewer than `runtime.restore_threads` restores run.
pub fn start_assigned(shared: &Arc<Shared>, group: &BaseConsumer<GroupContext>, tasks: &Tasks) {
    let assigned: Vec<TaskId> =
        group.context().assigned.lock().map(|mut a| std::mem::take(&mut *a)).unwrap_or_default();
    let Ok(mut tasks) = tasks.lock() else { return };
    for id in assigned {
        if tasks.contains_key(&id) {
            continue;
        }
        tracing::info!(task = %id, thread = shared.thread, "task assigned");
        metrics::gauge!("happystreams_task_running", "task" => id.to_string()).set(0.0);
        super::health::task_restoring(shared.thread, id);
        crate::query::local::assigned(shared.thread, id);
        tasks.insert(id, Slot::Restoring { cancel: Arc::default(), handle: None });
    }
    let mut waiting = 0;
    for (&id, slot) in tasks.iter_mut() {
        let Slot::Restoring { cancel, handle: handle @ None } = slot else { continue };
        let Some(slot) = RestoreSlot::take(shared) else {
            waiting += 1;
            continue;
        };
        let (thread_shared, thread_cancel) = (shared.clone(), cancel.clone());
        let spawned = std::thread::Builder::new().name(format!("restore-{id}")).spawn(move || {
            let opened = open_task(&thread_shared, id, &thread_cancel);
            tracing::info!(task = %id, ok = opened.is_ok(), "restore finished");
            drop(slot); // given back when the restore ends, however it ends
            opened
        });
        match spawned {
            Ok(spawned) => {
                tracing::info!(task = %id, "restore started");
                *handle = Some(spawned);
            }
            Err(e) => {
                // Tried again next round (the closure, and with it the slot, is dropped).
                tracing::error!(task = %id, error = %e, "cannot start a restore thread");
                waiting += 1;
            }
        }
    }
    metrics::gauge!("happystreams_restore_waiting_tasks", "thread" => shared.thread.to_string()).set(waiting as f64);
}

/// One of the instance's `runtime.restore_threads` restore slots, held by a restore thread.
struct RestoreSlot(Arc<AtomicUsize>);

impl RestoreSlot {
    /// A free slot, if any.
    fn take(shared: &Shared) -> Option<Self> {
        let max = shared.runtime.restore_threads.max(1);
        shared
            .restoring
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| RestoreSlot(shared.restoring.clone()))
    }
}

impl Drop for RestoreSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tasks whose restore finished start running: their lead partition is sought to the task's
/// position and resumed, their table partitions join the side consumer. True if the side
/// assignment changed.
pub fn finish_restores(
    shared: &Shared,
    group: &BaseConsumer<GroupContext>,
    tasks: &Tasks,
    side_assignment: &mut BTreeMap<(String, i32), i64>,
) -> Result<bool, RuntimeError> {
    let mut tasks = lock(tasks)?;
    let done: Vec<TaskId> = tasks
        .iter()
        .filter(|(_, slot)| matches!(slot, Slot::Restoring { handle: Some(h), .. } if h.is_finished()))
        .map(|(id, _)| *id)
        .collect();
    let mut changed = false;
    for id in done {
        let Some(Slot::Restoring { handle: Some(handle), .. }) = tasks.remove(&id) else { continue };
        let (mut task, _) = handle
            .join()
            .map_err(|_| RuntimeError::Internal(format!("task {id}: its restore panicked; please report this")))??;
        let sub = shared
            .layout
            .subtopology(id.subtopology)
            .ok_or_else(|| RuntimeError::Config(format!("no sub-topology {}", id.subtopology)))?;
        // A position whose records the broker no longer has fails or skips, loudly. A task with no
        // position resumes from the group's offset, or else starts at offset 0 like its other
        // inputs (the reset policy moves it to the earliest record when the log was truncated),
        // not at a ListOffsets answer.
        let offset = match checked_resume(shared, group, &mut task, &sub.lead, id.partition)? {
            Some(start) => start,
            None => match committed(group, &sub.lead, id.partition)? {
                Offset::Offset(next) => checked_start(shared, group, &sub.lead, id.partition, next)?,
                _ => 0,
            },
        };
        let offset = Offset::Offset(offset);
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition_offset(&sub.lead, id.partition, offset);
        // Where the group left off is where the task's state left off (not the committed offset).
        group
            .seek_partitions(tpl.clone(), Duration::from_secs(10))
            .map_err(|e| RuntimeError::Kafka(format!("seeking {} partition {}: {e}", sub.lead, id.partition)))?;
        group.resume(&tpl).map_err(|e| RuntimeError::Kafka(format!("resuming {}: {e}", sub.lead)))?;
        // Every other input (tables, other streams, repartition topics) is read by the side
        // consumer, from the task's position (or, for a task without one, the group's offset).
        for input in sub.inputs.iter().filter(|i| i.topic != sub.lead) {
            let next = match task.position(&input.topic, id.partition) {
                Some(next) => next,
                None if input.table => 0,
                None => match committed(group, &input.topic, id.partition)? {
                    Offset::Offset(next) => next,
                    _ => 0,
                },
            };
            // (A table's position was checked when it loaded, and it is now at the table's end.)
            let next = if input.table { next } else { checked_start(shared, group, &input.topic, id.partition, next)? };
            side_assignment.insert((input.topic.clone(), id.partition), next);
            changed = true;
        }
        task.queue = InputQueues::new(sub.inputs.iter().map(|i| (i.topic.as_str(), i.table)));
        shared.emitter.send_deferred(task.take_deferred())?;
        tracing::info!(task = %id, thread = shared.thread, lead = %sub.lead, ?offset, "task running");
        metrics::gauge!("happystreams_task_running", "task" => id.to_string()).set(1.0);
        super::health::task_running(shared.thread, id);
        crate::query::local::running(shared.thread, id);
        // Its partitions are read from now on: this instance's share of their topics grows.
        crate::observe::volume::assignment_changed();
        tasks.insert(id, Slot::Running(Box::new(task)));
    }
    Ok(changed)
}
