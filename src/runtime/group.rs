//! The group consumer's context: what happens inside librdkafka's rebalance callbacks (on the
//! worker thread, during a poll, while no task is being processed). Revoked tasks flush, commit
//! and close before their partitions are given away; newly assigned partitions stay paused until
//! their task is restored; a lost assignment drops tasks without committing anything.

use super::commit::commit_tasks;
use super::fault;
use super::layout::TaskId;
use super::shared::Shared;
use super::task::Task;
use super::{ProcessingGuarantee, RuntimeError};
use crate::runtime::changelog::RestoreReport;
use rdkafka::Statistics;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// A task of this instance: restoring on a thread of the restore pool, or running.
pub enum Slot {
    /// Restoring; `cancel` stops the restore.
    Restoring {
        /// Set to stop the restore (the task was revoked).
        cancel: Arc<AtomicBool>,
        /// The restore's thread.
        handle: Option<JoinHandle<Result<(Task, RestoreReport), RuntimeError>>>,
    },
    /// Processing records.
    Running(Box<Task>),
}

/// Every task of the instance.
pub type Tasks = Arc<Mutex<BTreeMap<TaskId, Slot>>>;

/// Locks the task map; a poisoned lock (a panic while holding it) is an internal error.
pub fn lock(tasks: &Mutex<BTreeMap<TaskId, Slot>>) -> Result<MutexGuard<'_, BTreeMap<TaskId, Slot>>, RuntimeError> {
    tasks.lock().map_err(|_| RuntimeError::Internal("the task map's lock was poisoned by a panic".into()))
}

/// The group consumer's context: closes revoked tasks inside the rebalance callback, pauses newly
/// assigned partitions until their task is restored, and turns statistics into lag gauges.
pub struct GroupContext {
    /// The instance.
    pub shared: Arc<Shared>,
    /// Its tasks.
    pub tasks: Tasks,
    /// Tasks assigned since the worker last looked.
    pub assigned: Mutex<Vec<TaskId>>,
    /// Tasks revoked since the worker last looked.
    pub revoked: Mutex<Vec<TaskId>>,
    /// The first error inside a callback (the worker stops with it).
    pub failure: Mutex<Option<RuntimeError>>,
    /// Partitions whose lag gauge this member has set (zeroed when revoked, so a sum over
    /// instances counts each partition once).
    pub lag_reported: Mutex<std::collections::HashSet<(String, i32)>>,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let Ok(mut reported) = self.lag_reported.lock() else { return };
        for (topic, t) in &statistics.topics {
            // A partition whose lag is unknown (-1: paused before its first fetch while its task
            // restores) keeps its last value; a revoked one is zeroed in `pre_rebalance`.
            for (partition, p) in t.partitions.iter().filter(|(n, p)| **n >= 0 && p.hi_offset >= 0) {
                crate::query::local::set_watermark(topic, *partition, p.hi_offset);
            }
            for (partition, p) in t.partitions.iter().filter(|(n, p)| **n >= 0 && p.consumer_lag >= 0) {
                reported.insert((topic.clone(), *partition));
                metrics::gauge!("happystreams_consumer_lag_records", "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else { return };
        self.count_rebalance("revoke", partitions);
        if let Ok(mut reported) = self.lag_reported.lock() {
            // The next owner reports these: a sum over instances counts each partition once.
            for e in partitions.elements() {
                if reported.remove(&(e.topic().to_owned(), e.partition())) {
                    metrics::gauge!("happystreams_consumer_lag_records", "topic" => e.topic().to_owned(), "partition" => e.partition().to_string())
                        .set(0.0);
                }
            }
        }
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
        let revoking = !ids.is_empty();
        if revoking {
            super::health::thread_revoked(self.shared.thread);
            fault::point("rebalance.revoking");
        }
        let closed = if consumer.assignment_lost() {
            // The group moved on without us (session or poll timeout): the tasks may already
            // run elsewhere, so nothing of theirs may be committed now.
            tracing::warn!(tasks = ids.len(), "assignment lost; dropping the tasks without committing");
            metrics::counter!("happystreams_assignments_lost_total").increment(1);
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
        if revoking {
            fault::point("rebalance.revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(partitions) = rebalance else { return };
        self.count_rebalance("assign", partitions);
        // Nothing is read from a task's partitions until its state is restored.
        if let Err(e) = consumer.pause(partitions) {
            tracing::warn!(error = %e, "pausing newly assigned partitions failed");
        }
        let elements = partitions.elements();
        let ids = elements.iter().filter_map(|e| {
            self.shared.layout.by_lead(e.topic()).map(|s| TaskId { subtopology: s.id, partition: e.partition() })
        });
        super::health::thread_assigned(self.shared.thread);
        if let Ok(mut assigned) = self.assigned.lock() {
            assigned.extend(ids);
        }
        if !elements.is_empty() {
            fault::point("rebalance.assigned");
        }
    }
}

impl GroupContext {
    /// Counts a rebalance that moved partitions to or from this thread (cooperative rebalances
    /// also call back with none), and restarts the volume baselines.
    fn count_rebalance(&self, kind: &'static str, partitions: &rdkafka::TopicPartitionList) {
        if partitions.count() == 0 {
            return;
        }
        let thread = self.shared.thread.to_string();
        metrics::counter!("happystreams_rebalances_total", "thread" => thread, "kind" => kind).increment(1);
        crate::observe::volume::assignment_changed();
    }

    /// Drops tasks without committing (their uncommitted work is processed again by the next
    /// owner); under exactly-once the open transaction is aborted and a new one begun.
    pub fn drop_tasks(&self, ids: &[TaskId]) -> Result<(), RuntimeError> {
        let mut tasks = lock(&self.tasks)?;
        for id in ids {
            match tasks.remove(id) {
                Some(Slot::Restoring { cancel, handle }) => {
                    cancel.store(true, Ordering::Relaxed);
                    if let Some(handle) = handle {
                        let _ = handle.join();
                    }
                }
                Some(Slot::Running(mut task)) => {
                    task.report_store_sizes(true);
                    task.cache.discard(&self.shared.cache_budget);
                }
                None => {}
            }
            metrics::gauge!("happystreams_task_running", "task" => id.to_string()).set(0.0);
            super::health::task_gone(self.shared.thread, *id);
            crate::query::local::gone(self.shared.thread, *id);
        }
        if self.shared.runtime.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            // Every task's uncommitted work is in the aborted transaction: all of them restart
            // from their committed state.
            let _exclusive = self.shared.emitter.exclusive();
            let producer = self.shared.emitter.producer().kafka();
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
    pub fn close(&self, consumer: &BaseConsumer<Self>, ids: &[TaskId]) -> Result<(), RuntimeError> {
        let mut tasks = lock(&self.tasks)?;
        if !ids.iter().any(|id| tasks.contains_key(id)) {
            return Ok(());
        }
        let committed = commit_tasks(&self.shared, consumer, &mut tasks, CommitMode::Sync);
        for id in ids {
            match tasks.remove(id) {
                Some(Slot::Running(task)) => {
                    task.report_store_sizes(true);
                    tracing::info!(task = %id, thread = self.shared.thread, "task closed");
                }
                Some(Slot::Restoring { cancel, handle }) => {
                    cancel.store(true, Ordering::Relaxed);
                    if let Some(handle) = handle {
                        let _ = handle.join();
                    }
                    tracing::info!(task = %id, "task restore cancelled");
                }
                None => continue,
            }
            metrics::gauge!("happystreams_task_running", "task" => id.to_string()).set(0.0);
            super::health::task_gone(self.shared.thread, *id);
            crate::query::local::gone(self.shared.thread, *id);
        }
        committed
    }
}
