//! The instance's one producer, shared by every task and worker thread: outputs, repartition
//! and dead-letter records, changelog batches and commit markers all go through it.
//!
//! Deliveries are tracked per batch, not per record: each send counts one record in flight and
//! librdkafka's delivery report counts it done (a counter and a callback, no future per record).
//! [`OutputProducer::flush`] waits until every record sent so far is done — step 1 of the commit
//! protocol, and the one wait between a commit's changelog batches and its markers. The first
//! failed delivery poisons the producer: the lost record cannot be sent again from here, so no
//! later commit may claim the inputs behind it.
//!
//! Changelog records are sent with a tag; their delivery reports keep the highest offset written
//! per changelog partition, which is the next restore position after a commit.

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a record is, for its delivery report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Kind {
    /// Outputs, repartition, late and dead-letter records.
    Output = 1,
    /// Changelog records and commit markers: their offsets are remembered.
    Changelog = 2,
}

/// Counts deliveries and keeps the first failure and the changelog ends.
#[derive(Debug, Default)]
pub struct Deliveries {
    sent: AtomicU64,
    done: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    /// Offset after the last changelog record delivered, per (topic, partition).
    ends: Mutex<HashMap<(String, i32), i64>>,
    /// Flushes wait on it; a delivery report wakes them when one is waiting.
    reported: Condvar,
    waiting: Mutex<()>,
    /// Flushes waiting now (delivery reports take the lock only then).
    waiters: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, kind: usize) {
        match result {
            Ok(message) => {
                if kind == Kind::Changelog as usize {
                    let mut ends = self.ends.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let end = ends.entry((message.topic().to_owned(), message.partition())).or_insert(0);
                    *end = (*end).max(message.offset() + 1);
                }
            }
            Err((e, message)) => {
                self.failed.store(true, Ordering::Release);
                let mut failure = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                failure.get_or_insert_with(|| {
                    format!("a record for {} partition {} was not delivered: {e}", message.topic(), message.partition())
                });
            }
        }
        self.done.fetch_add(1, Ordering::AcqRel);
        if self.waiters.load(Ordering::Acquire) > 0 {
            // Taking the lock orders this wake-up after a flush's check of the counter.
            drop(self.waiting.lock());
            self.reported.notify_all();
        }
    }
}

/// The shared producer.
pub struct OutputProducer {
    producer: ThreadedProducer<Deliveries>,
}

impl std::fmt::Debug for OutputProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.deliveries();
        f.debug_struct("OutputProducer")
            .field("sent", &d.sent.load(Ordering::Relaxed))
            .field("done", &d.done.load(Ordering::Relaxed))
            .finish()
    }
}

impl OutputProducer {
    /// A producer with `config`.
    pub fn create(config: &ClientConfig) -> KafkaResult<Self> {
        Ok(OutputProducer { producer: config.create_with_context(Deliveries::default())? })
    }

    fn deliveries(&self) -> &Deliveries {
        self.producer.context()
    }

    /// The librdkafka producer (transactions).
    pub fn kafka(&self) -> &ThreadedProducer<Deliveries> {
        &self.producer
    }

    /// Sends one record, waiting while librdkafka's queue is full. An error here means the record
    /// was not queued (it is not in flight).
    pub fn send(&self, mut record: BaseRecord<'_, [u8], [u8], usize>) -> Result<(), KafkaError> {
        let deliveries = self.deliveries();
        deliveries.sent.fetch_add(1, Ordering::AcqRel);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    deliveries.sent.fetch_sub(1, Ordering::AcqRel);
                    return Err(e);
                }
            }
        }
    }

    /// A record of `kind` to `topic`.
    pub fn record<'a>(topic: &'a str, kind: Kind) -> BaseRecord<'a, [u8], [u8], usize> {
        BaseRecord::with_opaque_to(topic, kind as usize)
    }

    /// Waits until every record sent so far is delivered. The first failed delivery is an error
    /// now and at every later flush (see the module docs).
    pub fn flush(&self) -> Result<(), String> {
        let deliveries = self.deliveries();
        // librdkafka's own timeout (message.timeout.ms, 300 s by default) fails a record long
        // before this.
        let deadline = Instant::now() + Duration::from_secs(600);
        let target = deliveries.sent.load(Ordering::Acquire);
        if deliveries.done.load(Ordering::Acquire) < target {
            // Sends what lingers at once (a zero timeout does not wait).
            let _ = self.producer.flush(Duration::ZERO);
        }
        deliveries.waiters.fetch_add(1, Ordering::AcqRel);
        let mut guard = deliveries.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while deliveries.done.load(Ordering::Acquire) < target && !deliveries.failed.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                deliveries.waiters.fetch_sub(1, Ordering::AcqRel);
                return Err("records were not acknowledged within 600 s".into());
            }
            // The delivery reports come on the producer's polling thread.
            guard = deliveries
                .reported
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        drop(guard);
        deliveries.waiters.fetch_sub(1, Ordering::AcqRel);
        if deliveries.failed.load(Ordering::Acquire) {
            let failure = deliveries.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            return Err(format!(
                "{}; restart to process those records again",
                failure.as_deref().unwrap_or("an earlier delivery failed")
            ));
        }
        Ok(())
    }

    /// The offset after the last changelog record delivered to `topic` `partition` (after a
    /// [`OutputProducer::flush`]).
    pub fn changelog_end(&self, topic: &str, partition: i32) -> Option<i64> {
        let ends = self.deliveries().ends.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ends.get(&(topic.to_owned(), partition)).copied()
    }
}
