//! Stream threads: an instance runs `runtime.num_threads` of them, each a consumer-group member
//! of its own running the tasks the group assigns it (Kafka Streams' `StreamThread`).
//!
//! Each thread polls its two consumers (the group consumer for its tasks' lead partitions, the
//! side consumer for their other inputs), processes what was polled task by task
//! ([`super::process`]) and commits its tasks when it is time ([`super::commit`]) through its own
//! producer — under exactly-once its own transaction. Threads share nothing they write but the
//! global tables: thread 0 also reads the global topics into the shared global store, committing
//! it at the end of each round, and every thread's tasks read that store. Each newly assigned
//! task restores on a thread of its own and joins its stream thread's loop when done
//! ([`super::assignment`]). Revocation happens inside the group consumer's rebalance callback,
//! on the stream thread, between two rounds of processing ([`super::group`]). A task moving
//! between two threads of one instance keeps its local state (the new owner waits for the old
//! one to close it).

use super::assignment::{finish_restores, start_assigned};
use super::changelog::reader;
use super::commit::commit_tasks;
use super::group::{GroupContext, Tasks, lock};
use super::layout::TaskId;
use super::open::open_global;
use super::process::{on_group_record, on_side_record, process_queued};
use super::shared::Shared;
use super::task::Task;
use super::{ProcessingGuarantee, RuntimeError};
use crate::connectors::kafka::{ClientKind, Reader};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Records taken from each consumer per round.
const POLL_BATCH: usize = 5_000;

/// How far apart the stream threads of an instance join the group.
const JOIN_STAGGER: Duration = Duration::from_millis(250);

/// Runs one stream thread per element of `streams` until `shutdown` is set or one of them fails
/// (then the others stop too, committing their own tasks). The first failure is the result.
pub fn run_threads(streams: Vec<Arc<Shared>>, shutdown: Arc<AtomicBool>) -> Result<(), RuntimeError> {
    let first = streams.first().ok_or_else(|| RuntimeError::Internal("an instance with no stream thread".into()))?;
    // Global tables are read to their end before any task starts.
    let mut global = open_global(first)?;
    if let Some(store) = &first.global {
        crate::query::local::set_global(crate::state::StateBackend::reader(store), true);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for shared in streams {
        let (global, shutdown, others) = (global.take(), shutdown.clone(), stop.clone());
        let name = format!("stream-{}", shared.thread);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            // However this thread ends (an error, a panic, a stop), the others stop too: an
            // instance never runs on with fewer threads (or without its global tables' reader).
            let _stop_all = StopOnExit(&others);
            run(shared, global, &shutdown, &others)
        });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                handles.into_iter().for_each(|h| drop(h.join()));
                return Err(RuntimeError::Internal(format!("cannot start a stream thread: {e}")));
            }
        }
    }
    let mut result = Ok(());
    for handle in handles {
        let joined = handle
            .join()
            .map_err(|_| RuntimeError::Internal("a stream thread panicked; please report this".into()))
            .and_then(|r| r);
        if result.is_ok() {
            result = joined;
        }
    }
    result
}

/// Sets its flag when dropped (also while unwinding from a panic).
struct StopOnExit<'a>(&'a AtomicBool);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        super::health::stopping();
    }
}

/// Runs one stream thread (with the global task on thread 0) until `shutdown` or `stop` is set
/// or a task fails.
fn run(
    shared: Arc<Shared>,
    mut global: Option<Task>,
    shutdown: &AtomicBool,
    stop: &AtomicBool,
) -> Result<(), RuntimeError> {
    let tasks: Tasks = Arc::default();
    let context = GroupContext {
        shared: shared.clone(),
        tasks: tasks.clone(),
        assigned: Mutex::default(),
        revoked: Mutex::default(),
        failure: Mutex::default(),
        lag_reported: Mutex::default(),
    };
    let mut config = shared.kafka.client_config_over(
        ClientKind::Consumer,
        &[
            ("group.id", &shared.layout.application_id),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", "5000"),
            ("isolation.level", "read_committed"),
        ],
    );
    // Per thread, after the user's properties: each thread is a member of its own.
    config.set("client.id", format!("{}-{}-consumer", shared.layout.application_id, shared.thread));
    if let Some(static_id) = config.get("group.instance.id").map(str::to_owned) {
        config.set("group.instance.id", format!("{static_id}-{}", shared.thread));
    }
    let group: BaseConsumer<GroupContext> = config
        .create_with_context(context)
        .map_err(|e| RuntimeError::Kafka(format!("creating the group consumer: {e}")))?;
    let side = reader(&shared.kafka, &format!("{}-side", shared.layout.application_id), false)
        .map_err(|e| RuntimeError::Kafka(format!("creating the table consumer: {e}")))?;
    let leads: Vec<&str> = shared.layout.subtopologies.iter().map(|s| s.lead.as_str()).collect();
    // Threads join a little apart (thread N after N × JOIN_STAGGER), so a starting instance never
    // sends all its first JoinGroup requests at the same instant, yet all of them reach the
    // group's first rebalance (a broker holds a join for a while to collect the others).
    let waiting = Instant::now();
    while waiting.elapsed() < JOIN_STAGGER * shared.thread as u32
        && !shutdown.load(Ordering::Relaxed)
        && !stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    group.subscribe(&leads).map_err(|e| RuntimeError::Kafka(format!("subscribing to {leads:?}: {e}")))?;
    tracing::info!(application = %shared.layout.application_id, thread = shared.thread, topics = ?leads, "joined the group");

    // Side assignment: global partitions at the global task's positions, plus the table
    // partitions of running tasks.
    let mut side_assignment: BTreeMap<(String, i32), i64> = BTreeMap::new();
    if let Some(task) = &global {
        for (_, topic, partitions) in &shared.layout.globals {
            for partition in 0..*partitions {
                side_assignment.insert((topic.clone(), partition), task.position(topic, partition).unwrap_or(0));
            }
        }
    }
    assign_side(&side, &side_assignment)?;

    let mut paused: BTreeSet<(String, i32)> = BTreeSet::new();
    let commit_interval = Duration::from_millis(shared.runtime.commit_interval_ms.max(1));
    let mut last_commit = Instant::now();
    let result = (|| -> Result<(), RuntimeError> {
        while !shutdown.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
            if let Some(e) = group.context().failure.lock().ok().and_then(|mut f| f.take()) {
                return Err(e);
            }
            // Records of running tasks (lead partitions), then table, stream and global-table
            // records of the side consumer. Rebalance callbacks run inside the group poll, with
            // the task map unlocked.
            let polled = Instant::now();
            for n in 0..POLL_BATCH {
                match group.poll(Duration::from_millis(if n == 0 { 50 } else { 0 })) {
                    None => break,
                    Some(Ok(message)) => on_group_record(&shared, &mut *lock(&tasks)?, &group, &message)?,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        break;
                    }
                }
            }
            let mut global_changed = false;
            {
                let mut tasks = lock(&tasks)?;
                for _ in 0..POLL_BATCH {
                    match side.poll(Duration::ZERO) {
                        None => break,
                        Some(Ok(message)) => {
                            global_changed |= on_side_record(
                                &shared,
                                &mut tasks,
                                global.as_mut(),
                                &side,
                                &mut side_assignment,
                                &message,
                            )?;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "table consumer error");
                            break;
                        }
                    }
                }
            }
            metrics::histogram!("happystreams_poll_seconds", "thread" => shared.thread.to_string())
                .record(polled.elapsed().as_secs_f64());
            process_queued(&shared, &tasks, &group, &side, &side_assignment, &mut paused)?;
            if global_changed && let Some(task) = &mut global {
                // Committed before any task reads the new rows (tasks read the store, not the
                // global task's write cache).
                task.commit()?;
                for table in shared.global_tables.values() {
                    table.clear_cache();
                }
            }
            let revoked: Vec<TaskId> =
                group.context().revoked.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
            if !revoked.is_empty() {
                for id in &revoked {
                    if let Some(sub) = shared.layout.subtopology(id.subtopology) {
                        for input in sub.inputs.iter().filter(|i| i.topic != sub.lead) {
                            side_assignment.remove(&(input.topic.clone(), id.partition));
                        }
                    }
                }
                assign_side(&side, &side_assignment)?;
            }
            start_assigned(&shared, &group, &tasks);
            if finish_restores(&shared, &group, &tasks, &mut side_assignment)? {
                assign_side(&side, &side_assignment)?;
            }
            if last_commit.elapsed() >= commit_interval {
                commit_tasks(&shared, &group, &mut *lock(&tasks)?, CommitMode::Async)?;
                last_commit = Instant::now();
            }
        }
        Ok(())
    })();
    if let Err(e) = &result {
        tracing::error!(error = %e, "stopping: {}", e.class());
    }
    let ids: Vec<TaskId> = tasks.lock().map(|t| t.keys().copied().collect()).unwrap_or_default();
    let exactly_once = shared.runtime.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
    // Commit on the way out only when nothing was lost: after a failed record (rolled back,
    // `on_error: fail`) the other records' work is kept; after an output, Kafka or state error
    // the write cache may hold work whose outputs were not delivered, so nothing is committed.
    let clean = matches!(result, Ok(()) | Err(RuntimeError::Record { .. }));
    let closed = if !clean && !exactly_once {
        if let Ok(mut tasks) = tasks.lock() {
            tasks.clear();
        }
        Ok(())
    } else if result.is_err() && exactly_once {
        // The open transaction holds the failed record's batch: abort it, so nothing of it is
        // ever visible, and close the tasks without committing (a restart processes it again).
        let _exclusive = shared.emitter.exclusive();
        let aborted = shared.emitter.producer().kafka().abort_transaction(Duration::from_secs(30));
        if let Ok(mut tasks) = tasks.lock() {
            tasks.clear();
        }
        aborted.map_err(|e| RuntimeError::Kafka(format!("aborting the transaction: {e}")))
    } else {
        // Graceful stop (at least once, also after a failed record: the others' work is kept):
        // commit every task and leave the group.
        group.context().close(&group, &ids)
    };
    group.unsubscribe();
    if let Some(task) = &mut global {
        task.commit()?;
    }
    tracing::info!(thread = shared.thread, tasks = ids.len(), "stopped");
    result.and(closed)
}

fn assign_side(side: &Reader, assignment: &BTreeMap<(String, i32), i64>) -> Result<(), RuntimeError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in assignment {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    side.assign(&tpl).map_err(|e| RuntimeError::Kafka(format!("assigning table partitions: {e}")))
}
