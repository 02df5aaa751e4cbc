//! Repartition topics belong to the application: once a commit holds a record's effect (state
//! and positions), no task needs the record again. So the records before the positions every
//! running task's next owner resumes from are deleted (DeleteRecords), at most every
//! `runtime.repartition_purge_interval_ms`, like Kafka Streams' repartition purge — the topics
//! stay as small as the application's lag instead of growing to their retention.
//!
//! Repartition topics are created without time retention (their records carry the events' own
//! timestamps: retention would delete a backfill's records before they are read), so the purge
//! is what keeps them small.
//!
//! The requests go out on a thread of their own, so a slow broker never holds up processing. A
//! request that fails is tried again at the next interval; after five failures in a row (a
//! broker that refuses DeleteRecords or never answers it) the purge stops with a warning, and the
//! repartition topics grow until an operator sets a retention on them.

use crate::connectors::kafka::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Whole-request failures in a row (a broker without DeleteRecords; not a leader move) after
/// which the purge stops asking.
const GIVE_UP_AFTER: u32 = 5;

/// Sends purge requests to the purge thread.
pub struct Purger {
    requests: Option<SyncSender<BTreeMap<(String, i32), i64>>>,
    interval: Duration,
    last: Instant,
    /// The latest durable positions reported by any stream thread.
    latest: BTreeMap<(String, i32), i64>,
    /// The positions purged last (a partition is asked again only when its position moved).
    purged: BTreeMap<(String, i32), i64>,
}

impl Purger {
    /// A purger with its thread; off when `interval_ms` is 0 or the thread cannot start.
    pub fn new(kafka: &KafkaConfig, interval_ms: u64) -> Self {
        let interval = Duration::from_millis(interval_ms);
        let off =
            Purger { requests: None, interval, last: Instant::now(), latest: BTreeMap::new(), purged: BTreeMap::new() };
        if interval_ms == 0 {
            return off;
        }
        let admin: AdminClient<DefaultClientContext> = match kafka.admin_config().create() {
            Ok(admin) => admin,
            Err(e) => {
                tracing::warn!(error = %e, "repartition purge off: creating its admin client failed");
                return off;
            }
        };
        let (requests, received) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new().name("purge".into()).spawn(move || {
            let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
            let mut failures = 0;
            while let Ok(positions) = received.recv() {
                match delete(&admin, &options, &positions) {
                    Ok(()) => failures = 0,
                    Err(e) if failures + 1 < GIVE_UP_AFTER => {
                        failures += 1;
                        tracing::warn!(error = %e, failures, "repartition purge failed; trying again at the next interval");
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            "repartition purge off: the broker did not delete consumed repartition records {GIVE_UP_AFTER} times in a row; the repartition topics (created without time retention) grow until you set retention.ms on them or restart on a broker with DeleteRecords"
                        );
                        return;
                    }
                }
            }
        });
        match spawned {
            Ok(_) => Purger { requests: Some(requests), ..off },
            Err(e) => {
                tracing::warn!(error = %e, "repartition purge off: starting its thread failed");
                off
            }
        }
    }

    /// Whether the purge is on (worth collecting positions for).
    pub fn on(&self) -> bool {
        self.requests.is_some()
    }

    /// After a commit of any stream thread: `positions` are durable next offsets of repartition
    /// partitions. Once the interval has passed, sends those of every thread that moved since
    /// the last purge (never waits for the broker).
    pub fn committed(&mut self, positions: impl IntoIterator<Item = ((String, i32), i64)>) {
        for (partition, next) in positions {
            let latest = self.latest.entry(partition).or_insert(next);
            *latest = (*latest).max(next);
        }
        let Some(requests) = &self.requests else { return };
        if self.last.elapsed() < self.interval {
            return;
        }
        let moved: BTreeMap<(String, i32), i64> = self
            .latest
            .iter()
            .filter(|(partition, next)| self.purged.get(*partition) < Some(*next))
            .map(|(partition, next)| (partition.clone(), *next))
            .collect();
        if moved.is_empty() {
            return;
        }
        match requests.try_send(moved.clone()) {
            Ok(()) => {
                self.last = Instant::now();
                self.purged.extend(moved);
            }
            Err(TrySendError::Full(_)) => {} // the last request is still out: next time
            Err(TrySendError::Disconnected(_)) => self.requests = None,
        }
    }
}

/// One DeleteRecords request; an error when the broker refused it as a whole or for every
/// partition (a partition that just moved to another broker fails alone and is retried later).
fn delete(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    positions: &BTreeMap<(String, i32), i64>,
) -> Result<(), String> {
    let mut before = TopicPartitionList::new();
    for ((topic, partition), next) in positions {
        before.add_partition_offset(topic, *partition, Offset::Offset(*next)).map_err(|e| e.to_string())?;
    }
    let result = futures::executor::block_on(admin.delete_records(&before, options)).map_err(|e| e.to_string())?;
    let failed: Vec<String> = result
        .elements()
        .iter()
        .filter_map(|e| e.error().err().map(|err| format!("{} partition {}: {err}", e.topic(), e.partition())))
        .collect();
    let purged = result.count() - failed.len();
    metrics::counter!("happystreams_repartition_purges_total").increment(purged as u64);
    if !failed.is_empty() && purged == 0 {
        return Err(failed.join("; "));
    }
    for failure in failed {
        tracing::debug!(%failure, "repartition purge failed for a partition; retried at the next purge");
    }
    Ok(())
}
