//! Processing fetched records: a stream thread routes each polled record to its task's input
//! queue, then its running tasks process their queues in event-time order ([`super::order`]),
//! then inputs far ahead of the others are paused. librdkafka fetches in its own threads
//! meanwhile, so polling only hands over records already in memory.

use super::RuntimeError;
use super::deleted::check_gap;
use super::group::{GroupContext, Slot, Tasks, lock};
use super::layout::TaskId;
use super::open::handle_record;
use super::shared::Shared;
use super::task::Task;
use crate::connectors::kafka::{Reader, cached_high_watermark, record_from};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buffered records per input partition above which its fetching pauses (and below which it
/// resumes).
const PAUSE_ABOVE: usize = 20_000;
const RESUME_BELOW: usize = 5_000;

/// The same in bytes (keys, values, headers): 20,000 records of 1 MB would be 20 GB.
const PAUSE_ABOVE_BYTES: usize = 16 << 20;
const RESUME_BELOW_BYTES: usize = 4 << 20;

/// A record of a lead partition: to its running task's queue (after a check that the records
/// since the last one were not deleted, [`check_gap`]).
pub fn on_group_record(
    shared: &Shared,
    tasks: &mut BTreeMap<TaskId, Slot>,
    group: &BaseConsumer<GroupContext>,
    message: &BorrowedMessage<'_>,
) -> Result<(), RuntimeError> {
    let Some(sub) = shared.layout.by_lead(message.topic()) else { return Ok(()) };
    let id = TaskId { subtopology: sub.id, partition: message.partition() };
    let Some(Slot::Running(task)) = tasks.get_mut(&id) else { return Ok(()) };
    let expected =
        task.queue.next_offset(message.topic()).or_else(|| task.position(message.topic(), message.partition()));
    if let Some(expected) = expected {
        if message.offset() < expected {
            return Ok(()); // fetched before the seek to the task's position
        }
        check_gap(shared, group, message.topic(), message.partition(), expected, message.offset())?;
    }
    let topic = task.queue.topic(message.topic());
    task.queue.push(message.topic(), record_from(message, topic));
    Ok(())
}

/// A record of a table or stream input read by the side consumer (a running task's), or of a
/// global table; true if global state changed. Checked for deleted records before it like a
/// lead record.
pub fn on_side_record(
    shared: &Shared,
    tasks: &mut BTreeMap<TaskId, Slot>,
    global: Option<&mut Task>,
    side: &Reader,
    assignment: &mut BTreeMap<(String, i32), i64>,
    message: &BorrowedMessage<'_>,
) -> Result<bool, RuntimeError> {
    let (topic, partition) = (message.topic(), message.partition());
    let Some(next) = assignment.get_mut(&(topic.to_owned(), partition)) else { return Ok(false) };
    if message.offset() < *next {
        return Ok(false);
    }
    check_gap(shared, side, topic, partition, *next, message.offset())?;
    *next = message.offset() + 1;
    if let Some(&sub) = shared.companions.get(topic) {
        let id = TaskId { subtopology: sub, partition };
        if let Some(Slot::Running(task)) = tasks.get_mut(&id) {
            let name = task.queue.topic(topic);
            task.queue.push(topic, record_from(message, name));
        }
        return Ok(false);
    }
    match global {
        Some(task) => {
            handle_record(shared, task, topic, &record_from(message, Arc::from(topic)))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Input partitions of running tasks with records on the broker that were not polled yet: the
/// consumer's position (past transaction markers, unlike the last record's offset) is below the
/// high watermark librdkafka last saw, or either is unknown.
fn lagging_inputs(
    shared: &Shared,
    tasks: &BTreeMap<TaskId, Slot>,
    group: &BaseConsumer<GroupContext>,
    side: &Reader,
    side_assignment: &BTreeMap<(String, i32), i64>,
) -> HashMap<TaskId, Vec<String>> {
    let positions = |consumer_positions: Option<TopicPartitionList>| -> HashMap<(String, i32), i64> {
        consumer_positions
            .map(|list| {
                list.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let group_positions = positions(group.position().ok());
    let side_positions = positions(side.position().ok());
    let mut lagging: HashMap<TaskId, Vec<String>> = HashMap::new();
    for (id, slot) in tasks {
        let Slot::Running(task) = slot else { continue };
        let Some(sub) = shared.layout.subtopology(id.subtopology) else { continue };
        for topic in task.queue.topics() {
            let key = (topic.to_owned(), id.partition);
            let (position, high) = if topic == sub.lead {
                let fallback = task.position(topic, id.partition).unwrap_or(0);
                let position = group_positions.get(&key).copied().unwrap_or(fallback);
                (position, cached_high_watermark(group, topic, id.partition))
            } else {
                let fallback = side_assignment.get(&key).copied().unwrap_or(0);
                let position = side_positions.get(&key).copied().unwrap_or(fallback);
                (position, cached_high_watermark(side, topic, id.partition))
            };
            if high.is_none_or(|high| position < high) {
                lagging.entry(*id).or_default().push(key.0);
            }
        }
    }
    lagging
}

/// Processes the running tasks' buffered records in event-time order, as far as their inputs
/// allow; then pauses inputs that have too much buffered and resumes those that drained.
pub fn process_queued(
    shared: &Shared,
    tasks: &Tasks,
    group: &BaseConsumer<GroupContext>,
    side: &Reader,
    side_assignment: &BTreeMap<(String, i32), i64>,
    paused: &mut BTreeSet<(String, i32)>,
) -> Result<(), RuntimeError> {
    let mut tasks = lock(tasks)?;
    if !tasks.values().any(|slot| matches!(slot, Slot::Running(task) if !task.queue.is_empty())) {
        pause_or_resume(shared, &tasks, group, side, paused);
        return Ok(());
    }
    let lagging = lagging_inputs(shared, &tasks, group, side, side_assignment);
    let busy = tasks.values_mut().filter_map(|slot| match slot {
        Slot::Running(task) if !task.queue.is_empty() => Some(task.as_mut()),
        _ => None,
    });
    process_tasks(shared, busy, &lagging)?;
    pause_or_resume(shared, &tasks, group, side, paused);
    Ok(())
}

/// Processes tasks' queues as far as event-time order allows.
fn process_tasks<'a>(
    shared: &Shared,
    tasks: impl Iterator<Item = &'a mut Task>,
    lagging: &HashMap<TaskId, Vec<String>>,
) -> Result<(), RuntimeError> {
    let started = Instant::now();
    let max_idle = Duration::from_millis(shared.runtime.max_task_idle_ms);
    let mut records = 0u64;
    let mut result = Ok(());
    for task in tasks {
        let behind = lagging.get(&task.id).map(Vec::as_slice).unwrap_or_default();
        let is_lagging = |topic: &str| behind.iter().any(|t| t == topic);
        while let Some((topic, record)) = task.queue.next(is_lagging, max_idle) {
            if !shared.decoders.ready(&topic, &record) {
                // Its schema is being fetched: the task waits, the thread goes on.
                task.queue.unpop(&topic, record);
                break;
            }
            records += 1;
            if let Err(e) = handle_record(shared, task, &topic, &record) {
                result = Err(e);
                break;
            }
        }
        if result.is_err() {
            break;
        }
    }
    let thread = shared.thread.to_string();
    metrics::counter!("happystreams_thread_records_processed_total", "thread" => thread.clone()).increment(records);
    // Its sum over time is the thread's busy time: rate(thread_busy_seconds_sum) is the busy ratio.
    metrics::histogram!("happystreams_thread_busy_seconds", "thread" => thread).record(started.elapsed().as_secs_f64());
    result
}

/// Back-pressure: an input far ahead of the others stops being fetched for a while.
fn pause_or_resume(
    shared: &Shared,
    tasks: &BTreeMap<TaskId, Slot>,
    group: &BaseConsumer<GroupContext>,
    side: &Reader,
    paused: &mut BTreeSet<(String, i32)>,
) {
    // Inputs of tasks that stopped running are read again by whoever runs them next.
    paused.retain(|(topic, partition)| {
        let owner = shared.layout.by_lead(topic).map(|s| s.id).or_else(|| shared.companions.get(topic).copied());
        owner.is_some_and(|sub| {
            matches!(tasks.get(&TaskId { subtopology: sub, partition: *partition }), Some(Slot::Running(_)))
        })
    });
    for (id, slot) in tasks {
        let Slot::Running(task) = slot else { continue };
        let lead = shared.layout.subtopology(id.subtopology).map(|s| s.lead.as_str()).unwrap_or_default();
        for topic in task.queue.topics() {
            let key = (topic.to_owned(), id.partition);
            let (queued, bytes) = (task.queue.queued(topic), task.queue.queued_bytes(topic));
            let pause = if (queued > PAUSE_ABOVE || bytes > PAUSE_ABOVE_BYTES) && !paused.contains(&key) {
                true
            } else if queued < RESUME_BELOW && bytes < RESUME_BELOW_BYTES && paused.contains(&key) {
                false
            } else {
                continue;
            };
            let mut list = TopicPartitionList::new();
            list.add_partition(topic, id.partition);
            let result = match (topic == lead, pause) {
                (true, true) => group.pause(&list),
                (true, false) => group.resume(&list),
                (false, true) => side.pause(&list),
                (false, false) => side.resume(&list),
            };
            if let Err(e) = result {
                tracing::warn!(topic, partition = id.partition, error = %e, "pausing/resuming an input failed");
            }
            if pause {
                paused.insert(key);
            } else {
                paused.remove(&key);
            }
        }
    }
}
