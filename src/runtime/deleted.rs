//! Input records deleted before the application read them: by retention while the application was
//! down or behind for longer than the topic keeps records, or by DeleteRecords. Skipping them
//! silently would leave the state and the outputs without them for good; `runtime.on_deleted_input`
//! decides what happens instead (stop, or go on and count them).
//!
//! Two moments catch them:
//! - **A task starts**: where it starts reading each input is checked against the earliest offset
//!   on the broker ([`checked_start`]).
//! - **A task runs**: a consumer asked for records the broker no longer has moves to the earliest
//!   one (`auto.offset.reset = earliest`; `error` would leave a newly assigned partition stopped in
//!   librdkafka even after the seek to its task's position). So a fetched record past the offset
//!   the task expected is a gap, and a gap whose start lies before the log start offset of the
//!   Fetch responses is a deletion ([`check_gap`]). Other gaps (transaction markers, aborted
//!   records, compaction) leave the log start where it was; they cost one comparison per record.

use super::shared::Shared;
use super::task::Task;
use super::{OnDeletedInput, RuntimeError};
use crate::connectors::kafka::cached_watermarks;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use std::time::Duration;

/// Where a task starts reading `topic` partition `partition`, whose next record it needs is
/// `next`: `next` itself while it is on the broker; otherwise an error, or (with `skip`) the
/// earliest offset still there.
pub fn checked_start<C: ConsumerContext>(
    shared: &Shared,
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    next: i64,
) -> Result<i64, RuntimeError> {
    if next <= 0 {
        return Ok(next);
    }
    let (earliest, _) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).map_err(|e| {
        RuntimeError::Kafka(format!("reading the earliest offset of {topic} partition {partition}: {e}"))
    })?;
    if next >= earliest {
        return Ok(next);
    }
    deleted(shared, topic, partition, next, earliest)?;
    Ok(earliest)
}

/// Where a task resumes reading `topic` partition `partition` from its own position: the
/// [`checked_start`] of it, with the position moved past records skipped, so a gap is counted
/// once (also when nothing follows it yet). `None` when the task has no position there.
pub fn checked_resume<C: ConsumerContext>(
    shared: &Shared,
    consumer: &BaseConsumer<C>,
    task: &mut Task,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, RuntimeError> {
    let Some(next) = task.position(topic, partition) else { return Ok(None) };
    let start = checked_start(shared, consumer, topic, partition, next)?;
    if start > next {
        task.advance(topic, partition, start);
    }
    Ok(Some(start))
}

/// A record of `topic` partition `partition` fetched at `offset` by a running task that expected
/// `expected` next: an error (or, with `skip`, a warning and a count) when the records between
/// were deleted from the broker.
pub fn check_gap<C: ConsumerContext>(
    shared: &Shared,
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    expected: i64,
    offset: i64,
) -> Result<(), RuntimeError> {
    // Nothing read yet (expected 0): a fresh start reads from the earliest record, as at start.
    if expected <= 0 || offset <= expected {
        return Ok(());
    }
    match cached_watermarks(consumer, topic, partition) {
        Some((log_start, _)) if log_start > expected => {
            deleted(shared, topic, partition, expected, log_start.min(offset))
        }
        _ => Ok(()),
    }
}

/// Records `next..earliest` are gone: the policy's answer.
fn deleted(shared: &Shared, topic: &str, partition: i32, next: i64, earliest: i64) -> Result<(), RuntimeError> {
    match shared.runtime.on_deleted_input {
        OnDeletedInput::Fail => Err(RuntimeError::InputDeleted { topic: topic.to_owned(), partition, next, earliest }),
        OnDeletedInput::Skip => {
            tracing::warn!(
                topic,
                partition,
                next,
                earliest,
                lost = earliest - next,
                "records deleted from the broker before they were read; going on without them (runtime.on_deleted_input = skip)"
            );
            metrics::counter!("happystreams_deleted_input_records_total", "topic" => topic.to_owned())
                .increment((earliest - next) as u64);
            Ok(())
        }
    }
}
