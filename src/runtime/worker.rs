//! One instance of an application: a consumer-group member running its assigned tasks.
//!
//! Threads: the worker thread polls both consumers and processes every running task in turn;
//! each newly assigned task restores (changelog, then its tables) on a thread of its own and
//! joins the worker's loop when done. Revocation happens inside the group consumer's rebalance
//! callback, on the worker thread: the revoked tasks flush, commit and close before their
//! partitions are given away.

use super::changelog::{RestoreReport, reader};
use super::codecs::Decoders;
use super::emitter::Emitter;
use super::global::SharedBackend;
use super::layout::{Layout, TaskId};
use super::open::{handle_record, open_global, open_task};
use super::order::InputQueues;
use super::task::Task;
use super::{ProcessingGuarantee, RuntimeConfig, RuntimeError};
use crate::connectors::kafka::KafkaConfig;
use crate::connectors::kafka::{cached_high_watermark, record_from};
use crate::operators::table::Table;
use crate::state::StateMemory;
use crate::topology::Plan;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, Statistics, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What every task of the instance shares.
pub struct Shared {
    /// The plan.
    pub plan: Arc<Plan>,
    /// Tasks and topics.
    pub layout: Layout,
    /// Kafka settings (for restore consumers).
    pub kafka: KafkaConfig,
    /// Runtime settings.
    pub runtime: RuntimeConfig,
    /// Input decoders.
    pub decoders: Decoders,
    /// Output writer.
    pub emitter: Emitter,
    /// RocksDB memory budget.
    pub memory: StateMemory,
    /// Global tables' store, if the topology has global tables.
    pub global: Option<SharedBackend>,
    /// Global tables' operators (shared by every task's pipeline).
    pub global_tables: BTreeMap<String, Arc<Table>>,
    /// Topic → sub-topology of non-lead inputs (tables), read by the side consumer.
    pub companions: HashMap<String, usize>,
}

impl Shared {
    /// A task's state directory.
    pub fn task_dir(&self, name: &str) -> PathBuf {
        self.runtime.state_dir.join(&self.layout.application_id).join(name)
    }
}

enum Slot {
    Restoring { cancel: Arc<AtomicBool>, handle: Option<JoinHandle<Result<(Task, RestoreReport), RuntimeError>>> },
    Running(Task),
}

/// The group consumer's context: closes revoked tasks inside the rebalance callback, pauses newly
/// assigned partitions until their task is restored, and turns statistics into lag gauges.
struct GroupContext {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<BTreeMap<TaskId, Slot>>>,
    assigned: Mutex<Vec<TaskId>>,
    revoked: Mutex<Vec<TaskId>>,
    failure: Mutex<Option<RuntimeError>>,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!("consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else { return };
        let ids: Vec<TaskId> = partitions
            .elements()
            .iter()
            .filter_map(|e| {
                self.shared.layout.by_lead(e.topic()).map(|s| TaskId { subtopology: s.id, partition: e.partition() })
            })
            .collect();
        // A task assigned and revoked before the worker saw the assignment never starts.
        if let Ok(mut assigned) = self.assigned.lock() {
            assigned.retain(|id| !ids.contains(id));
        }
        let closed = if consumer.assignment_lost() {
            // The group moved on without us (session or poll timeout): the tasks may already
            // run elsewhere, so nothing of theirs may be committed now.
            tracing::warn!(tasks = ids.len(), "assignment lost; dropping the tasks without committing");
            self.drop_tasks(&ids)
        } else {
            self.close(consumer, &ids)
        };
        if let Err(e) = closed {
            tracing::error!(error = %e, "closing revoked tasks failed; their last uncommitted records will be processed again by the next owner");
            if let Ok(mut failure) = self.failure.lock() {
                failure.get_or_insert(e);
            }
        }
        if let Ok(mut revoked) = self.revoked.lock() {
            revoked.extend(ids);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(partitions) = rebalance else { return };
        // Nothing is read from a task's partitions until its state is restored.
        if let Err(e) = consumer.pause(partitions) {
            tracing::warn!(error = %e, "pausing newly assigned partitions failed");
        }
        let elements = partitions.elements();
        let ids = elements.iter().filter_map(|e| {
            self.shared.layout.by_lead(e.topic()).map(|s| TaskId { subtopology: s.id, partition: e.partition() })
        });
        if let Ok(mut assigned) = self.assigned.lock() {
            assigned.extend(ids);
        }
    }
}

impl GroupContext {
    /// Drops tasks without committing (their uncommitted work is processed again by the next
    /// owner); under exactly-once the open transaction is aborted and a new one begun.
    fn drop_tasks(&self, ids: &[TaskId]) -> Result<(), RuntimeError> {
        let mut tasks = self.tasks.lock().map_err(|_| RuntimeError::Config("task lock poisoned".into()))?;
        for id in ids {
            if let Some(Slot::Restoring { cancel, handle }) = tasks.remove(id) {
                cancel.store(true, Ordering::Relaxed);
                if let Some(handle) = handle {
                    let _ = handle.join();
                }
            }
            metrics::gauge!("task_running", "task" => id.to_string()).set(0.0);
        }
        if self.shared.runtime.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            // Every task's uncommitted work is in the aborted transaction: all of them restart
            // from their committed state.
            let _exclusive = self.shared.emitter.exclusive();
            let producer = self.shared.emitter.producer();
            let kafka = |what: &str, e: KafkaError| RuntimeError::Kafka(format!("{what}: {e}"));
            producer.abort_transaction(Duration::from_secs(30)).map_err(|e| kafka("aborting the transaction", e))?;
            producer.begin_transaction().map_err(|e| kafka("beginning a transaction", e))?;
            return Err(RuntimeError::Kafka(
                "assignment lost under exactly-once: the open transaction was aborted; restarting the instance's tasks"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Commits every task (one transaction under exactly-once), then closes `ids` (revocation
    /// and shutdown).
    fn close(&self, consumer: &BaseConsumer<Self>, ids: &[TaskId]) -> Result<(), RuntimeError> {
        let mut tasks = self.tasks.lock().map_err(|_| RuntimeError::Config("task lock poisoned".into()))?;
        if !ids.iter().any(|id| tasks.contains_key(id)) {
            return Ok(());
        }
        let committed = commit_tasks(&self.shared, consumer, &mut tasks, CommitMode::Sync);
        for id in ids {
            match tasks.remove(id) {
                Some(Slot::Running(_)) => tracing::info!(task = %id, "task closed"),
                Some(Slot::Restoring { cancel, handle }) => {
                    cancel.store(true, Ordering::Relaxed);
                    if let Some(handle) = handle {
                        let _ = handle.join();
                    }
                    tracing::info!(task = %id, "task restore cancelled");
                }
                None => continue,
            }
            metrics::gauge!("task_running", "task" => id.to_string()).set(0.0);
        }
        committed
    }
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

/// Runs the instance until `shutdown` is set or a task fails.
pub fn run(shared: Arc<Shared>, shutdown: Arc<AtomicBool>) -> Result<(), RuntimeError> {
    let mut global = open_global(&shared)?;
    let tasks: Arc<Mutex<BTreeMap<TaskId, Slot>>> = Arc::default();
    let context = GroupContext {
        shared: shared.clone(),
        tasks: tasks.clone(),
        assigned: Mutex::default(),
        revoked: Mutex::default(),
        failure: Mutex::default(),
    };
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("group.id", &shared.layout.application_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        .set("isolation.level", "read_committed");
    for (key, value) in shared.kafka.client_config().config_map() {
        config.set(key, value);
    }
    let group: BaseConsumer<GroupContext> = config
        .create_with_context(context)
        .map_err(|e| RuntimeError::Kafka(format!("creating the group consumer: {e}")))?;
    let side = reader(&shared.kafka, &format!("{}-side", shared.layout.application_id), false)
        .map_err(|e| RuntimeError::Kafka(format!("creating the table consumer: {e}")))?;
    let leads: Vec<&str> = shared.layout.subtopologies.iter().map(|s| s.lead.as_str()).collect();
    group.subscribe(&leads).map_err(|e| RuntimeError::Kafka(format!("subscribing to {leads:?}: {e}")))?;
    tracing::info!(application = %shared.layout.application_id, topics = ?leads, "joined the group");

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

    // Fetched records of running tasks, processed in event-time order (`order`).
    let mut queues: BTreeMap<TaskId, InputQueues> = BTreeMap::new();
    let mut paused: BTreeSet<(String, i32)> = BTreeSet::new();
    let commit_interval = Duration::from_millis(shared.runtime.commit_interval_ms.max(1));
    let mut last_commit = Instant::now();
    let result = (|| -> Result<(), RuntimeError> {
        while !shutdown.load(Ordering::Relaxed) {
            if let Some(e) = group.context().failure.lock().ok().and_then(|mut f| f.take()) {
                return Err(e);
            }
            // Records of running tasks (lead partitions).
            for n in 0..1000 {
                match group.poll(Duration::from_millis(if n == 0 { 50 } else { 0 })) {
                    None => break,
                    Some(Ok(message)) => on_group_record(&shared, &tasks, &mut queues, &message)?,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        break;
                    }
                }
            }
            // Table and global-table records.
            let mut global_changed = false;
            for _ in 0..1000 {
                match side.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(message)) => {
                        global_changed |= on_side_record(
                            &shared,
                            &tasks,
                            &mut queues,
                            global.as_mut(),
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
            process_queued(&shared, &tasks, &mut queues, &group, &side, &side_assignment, &mut paused)?;
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
                let mut tasks = tasks.lock().map_err(|_| RuntimeError::Config("task lock poisoned".into()))?;
                commit_tasks(&shared, &group, &mut tasks, CommitMode::Async)?;
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
        let aborted = shared.emitter.producer().abort_transaction(Duration::from_secs(30));
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
    tracing::info!(tasks = ids.len(), "stopped");
    result.and(closed)
}

fn assign_side(side: &BaseConsumer, assignment: &BTreeMap<(String, i32), i64>) -> Result<(), RuntimeError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in assignment {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    side.assign(&tpl).map_err(|e| RuntimeError::Kafka(format!("assigning table partitions: {e}")))
}

fn on_group_record(
    shared: &Shared,
    tasks: &Mutex<BTreeMap<TaskId, Slot>>,
    queues: &mut BTreeMap<TaskId, InputQueues>,
    message: &BorrowedMessage<'_>,
) -> Result<(), RuntimeError> {
    let Some(sub) = shared.layout.by_lead(message.topic()) else { return Ok(()) };
    let id = TaskId { subtopology: sub.id, partition: message.partition() };
    let mut tasks = tasks.lock().map_err(|_| RuntimeError::Config("task lock poisoned".into()))?;
    let Some(Slot::Running(task)) = tasks.get_mut(&id) else { return Ok(()) };
    if task.position(message.topic(), message.partition()).is_some_and(|next| message.offset() < next) {
        return Ok(()); // fetched before the seek to the task's position
    }
    queue_of(shared, queues, id).push(message.topic(), record_from(message, Arc::from(message.topic())));
    Ok(())
}

/// The input buffer of a task (created on first use).
fn queue_of<'a>(shared: &Shared, queues: &'a mut BTreeMap<TaskId, InputQueues>, id: TaskId) -> &'a mut InputQueues {
    queues.entry(id).or_insert_with(|| {
        let inputs = shared.layout.subtopology(id.subtopology).map(|s| s.inputs.as_slice()).unwrap_or_default();
        InputQueues::new(inputs.iter().map(|i| (i.topic.as_str(), i.table)))
    })
}

/// A record of a table (a running task's) or of a global table; true if global state changed.
fn on_side_record(
    shared: &Shared,
    tasks: &Mutex<BTreeMap<TaskId, Slot>>,
    queues: &mut BTreeMap<TaskId, InputQueues>,
    global: Option<&mut Task>,
    assignment: &mut BTreeMap<(String, i32), i64>,
    message: &BorrowedMessage<'_>,
) -> Result<bool, RuntimeError> {
    let (topic, partition) = (message.topic(), message.partition());
    let Some(next) = assignment.get_mut(&(topic.to_owned(), partition)) else { return Ok(false) };
    if message.offset() < *next {
        return Ok(false);
    }
    *next = message.offset() + 1;
    let record = record_from(message, Arc::from(topic));
    if let Some(&sub) = shared.companions.get(topic) {
        let id = TaskId { subtopology: sub, partition };
        let tasks = tasks.lock().map_err(|_| RuntimeError::Config("task lock poisoned".into()))?;
        if let Some(Slot::Running(_)) = tasks.get(&id) {
            queue_of(shared, queues, id).push(topic, record);
        }
        return Ok(false);
    }
    match global {
        Some(task) => {
            handle_record(shared, task, topic, &record)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Buffered records per input partition above which its fetching pauses (and below which it
/// resumes).
const PAUSE_ABOVE: usize = 20_000;
const RESUME_BELOW: usize = 5_000;

/// Processes the running tasks' buffered records in event-time order, as far as their inputs
/// allow (see [`order`](super::order)); pauses inputs that have too much buffered.
fn process_queued(
    shared: &Shared,
    tasks: &Mutex<BTreeMap<TaskId, Slot>>,
    queues: &mut BTreeMap<TaskId, InputQueues>,
    group: &BaseConsumer<GroupContext>,
    side: &BaseConsumer,
    side_assignment: &BTreeMap<(String, i32), i64>,
    paused: &mut BTreeSet<(String, i32)>,
) -> Result<(), RuntimeError> {
    let max_idle = Duration::from_millis(shared.runtime.max_task_idle_ms);
    let mut tasks = tasks.lock().map_err(|_| RuntimeError::Config("task lock poisoned".into()))?;
    // Records of tasks that stopped running are read again by whoever runs them next.
    queues.retain(|id, _| matches!(tasks.get(id), Some(Slot::Running(_))));
    paused.retain(|(topic, partition)| {
        let owner = shared.layout.by_lead(topic).map(|s| s.id).or_else(|| shared.companions.get(topic).copied());
        owner.is_some_and(|sub| queues.contains_key(&TaskId { subtopology: sub, partition: *partition }))
    });
    for (id, queue) in queues.iter_mut() {
        let Some(Slot::Running(task)) = tasks.get_mut(id) else { continue };
        let lead = shared.layout.subtopology(id.subtopology).map(|s| s.lead.as_str()).unwrap_or_default();
        loop {
            let lagging = |topic: &str| {
                let (position, high) = if topic == lead {
                    (task.position(topic, id.partition).unwrap_or(0), cached_high_watermark(group, topic, id.partition))
                } else {
                    let position = side_assignment.get(&(topic.to_owned(), id.partition)).copied().unwrap_or(0);
                    (position, cached_high_watermark(side, topic, id.partition))
                };
                high.is_none_or(|high| position < high)
            };
            let Some((topic, record)) = queue.next(lagging, max_idle) else { break };
            handle_record(shared, task, &topic, &record)?;
        }
        // Back-pressure: an input far ahead of the others stops being fetched for a while.
        for topic in queue.topics() {
            let key = (topic.to_owned(), id.partition);
            let queued = queue.queued(topic);
            let consumer_pause = |pause: bool| {
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
            };
            if queued > PAUSE_ABOVE && !paused.contains(&key) {
                consumer_pause(true);
                paused.insert(key);
            } else if queued < RESUME_BELOW && paused.contains(&key) {
                consumer_pause(false);
                paused.remove(&key);
            }
        }
    }
    Ok(())
}

/// Starts restoring newly assigned tasks, each on its own thread.
fn start_assigned(shared: &Arc<Shared>, group: &BaseConsumer<GroupContext>, tasks: &Mutex<BTreeMap<TaskId, Slot>>) {
    let assigned: Vec<TaskId> =
        group.context().assigned.lock().map(|mut a| std::mem::take(&mut *a)).unwrap_or_default();
    let Ok(mut tasks) = tasks.lock() else { return };
    for id in assigned {
        if tasks.contains_key(&id) {
            continue;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (thread_shared, thread_cancel) = (shared.clone(), cancel.clone());
        let handle = std::thread::Builder::new()
            .name(format!("restore-{id}"))
            .spawn(move || open_task(&thread_shared, id, &thread_cancel));
        match handle {
            Ok(handle) => {
                tracing::info!(task = %id, "task assigned; restoring");
                metrics::gauge!("task_running", "task" => id.to_string()).set(0.0);
                tasks.insert(id, Slot::Restoring { cancel, handle: Some(handle) });
            }
            Err(e) => tracing::error!(task = %id, error = %e, "cannot start a restore thread"),
        }
    }
}

/// Tasks whose restore finished start running: their lead partition is sought to the task's
/// position and resumed, their table partitions join the side consumer. True if the side
/// assignment changed.
fn finish_restores(
    shared: &Shared,
    group: &BaseConsumer<GroupContext>,
    tasks: &Mutex<BTreeMap<TaskId, Slot>>,
    side_assignment: &mut BTreeMap<(String, i32), i64>,
) -> Result<bool, RuntimeError> {
    let mut tasks = tasks.lock().map_err(|_| RuntimeError::Config("task lock poisoned".into()))?;
    let done: Vec<TaskId> = tasks
        .iter()
        .filter(|(_, slot)| matches!(slot, Slot::Restoring { handle: Some(h), .. } if h.is_finished()))
        .map(|(id, _)| *id)
        .collect();
    let mut changed = false;
    for id in done {
        let Some(Slot::Restoring { handle: Some(handle), .. }) = tasks.remove(&id) else { continue };
        let (task, _) =
            handle.join().map_err(|_| RuntimeError::Config(format!("task {id}: restore thread panicked")))??;
        let sub = shared
            .layout
            .subtopology(id.subtopology)
            .ok_or_else(|| RuntimeError::Config(format!("no sub-topology {}", id.subtopology)))?;
        let offset = match task.position(&sub.lead, id.partition) {
            Some(next) => Offset::Offset(next),
            None => committed(group, &sub.lead, id.partition)?,
        };
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
            side_assignment.insert((input.topic.clone(), id.partition), next);
            changed = true;
        }
        let mut task = task;
        shared.emitter.send_deferred(task.take_deferred())?;
        tracing::info!(task = %id, lead = %sub.lead, ?offset, "task running");
        metrics::gauge!("task_running", "task" => id.to_string()).set(1.0);
        tasks.insert(id, Slot::Running(task));
    }
    Ok(changed)
}

/// The group's committed offset of a partition (the start when none was ever committed).
fn committed(group: &BaseConsumer<GroupContext>, topic: &str, partition: i32) -> Result<Offset, RuntimeError> {
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

/// The commit protocol (module docs of `runtime`) for every running task with work: outputs
/// flushed, each task's changelog then state committed, then the input offsets — to the group
/// (at least once), or inside the producer's transaction, which commits before any task's local
/// state does (exactly once).
fn commit_tasks(
    shared: &Shared,
    group: &BaseConsumer<GroupContext>,
    tasks: &mut BTreeMap<TaskId, Slot>,
    mode: CommitMode,
) -> Result<(), RuntimeError> {
    if !tasks.values().any(|slot| matches!(slot, Slot::Running(t) if t.needs_commit())) {
        return Ok(());
    }
    let started = Instant::now();
    let mut offsets = TopicPartitionList::new();
    if shared.runtime.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
        let _exclusive = shared.emitter.exclusive();
        let producer = shared.emitter.producer();
        let timeout = Duration::from_secs(30);
        let result = (|| -> Result<(), RuntimeError> {
            shared.emitter.flush()?;
            let mut committing = Vec::new();
            for task in with_work(tasks) {
                task.prepare_commit()?;
                add_offsets(&mut offsets, task);
                committing.push(task.id);
            }
            let metadata = group
                .group_metadata()
                .ok_or_else(|| RuntimeError::Kafka("the consumer has no group metadata for the transaction".into()))?;
            let kafka = |what: &str, e: KafkaError| RuntimeError::Kafka(format!("{what}: {e}"));
            producer
                .send_offsets_to_transaction(&offsets, &metadata, timeout)
                .map_err(|e| kafka("adding offsets to the transaction", e))?;
            producer.commit_transaction(timeout).map_err(|e| kafka("committing the transaction", e))?;
            for id in committing {
                if let Some(Slot::Running(task)) = tasks.get_mut(&id) {
                    task.finish_commit()?;
                }
            }
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
    } else {
        shared.emitter.flush()?;
        for task in with_work(tasks) {
            task.commit()?;
            add_offsets(&mut offsets, task);
        }
        if let Err(e) = group.commit(&offsets, mode) {
            tracing::warn!(error = %e, "committing group offsets failed (state positions are unaffected)");
        }
    }
    metrics::histogram!("commit_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Running tasks with something to commit.
fn with_work(tasks: &mut BTreeMap<TaskId, Slot>) -> impl Iterator<Item = &mut Task> {
    tasks.values_mut().filter_map(|slot| match slot {
        Slot::Running(task) if task.needs_commit() => Some(task),
        _ => None,
    })
}
