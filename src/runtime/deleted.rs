//! Input records deleted before the application read them: by retention while the application was
//! down for longer than the topic keeps records, or by DeleteRecords. Skipping them silently (a
//! consumer's `auto.offset.reset = earliest`) would leave the state and the outputs without them
//! for good, so a task checks where it starts reading each input against the earliest offset
//! still on the broker; `runtime.on_deleted_input` decides what happens then.
//!
//! Not covered: a running task falling behind its input's retention. The consumers keep
//! `auto.offset.reset = earliest` there: with `error`, librdkafka leaves a newly assigned
//! partition without a committed offset stopped even after the seek to its task's position.

use super::shared::Shared;
use super::{OnDeletedInput, RuntimeError};
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
            metrics::counter!("deleted_input_records_total", "topic" => topic.to_owned())
                .increment((earliest - next) as u64);
            Ok(earliest)
        }
    }
}
