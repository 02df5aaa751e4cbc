//! Event-time order within a task.
//!
//! A task's input partitions (its lead partition, co-partitioned tables, other streams and
//! repartition topics) are fetched independently, so records arrive in no particular order
//! across them. Like Kafka Streams' partition group, a running task buffers what was fetched per
//! input and processes the record with the lowest timestamp first — a table change before an
//! event with the same timestamp — so a dimension change committed before an event is applied
//! before it, and a fast input does not make a slow one's records late.
//!
//! While an input has nothing buffered but more on the broker (the consumer's position is below
//! the high watermark librdkafka last saw, or that is not known yet), the task waits for it, at most
//! `max_task_idle_ms`; then it goes on without it (counted in
//! `task_enforced_processing_total`). Buffered records are not processed, so they are not part
//! of any commit: a task closed with records buffered reads them again.

use crate::record::Record;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Input {
    topic: Arc<str>,
    table: bool,
    queue: VecDeque<Record>,
    /// Key, value and header bytes of the queued records.
    bytes: usize,
}

/// What a record holds in memory, roughly: its key, value and header bytes.
fn size(record: &Record) -> usize {
    let header_bytes: usize =
        record.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len())).sum();
    record.key.as_ref().map_or(0, |k| k.len()) + record.value.as_ref().map_or(0, |v| v.len()) + header_bytes
}

/// The buffered records of one task, per input topic.
#[derive(Debug, Default)]
pub struct InputQueues {
    inputs: Vec<Input>,
    waiting_since: Option<Instant>,
}

impl InputQueues {
    /// Queues for a task's inputs: `(topic, is a table)`.
    pub fn new<'a>(inputs: impl IntoIterator<Item = (&'a str, bool)>) -> Self {
        let inputs = inputs.into_iter().map(|(topic, table)| Input {
            topic: topic.into(),
            table,
            queue: VecDeque::new(),
            bytes: 0,
        });
        InputQueues { inputs: inputs.collect(), waiting_since: None }
    }

    fn input(&self, topic: &str) -> Option<&Input> {
        self.inputs.iter().find(|i| &*i.topic == topic)
    }

    /// The shared name of an input topic (records carry it without a copy per record).
    pub fn topic(&self, topic: &str) -> Arc<str> {
        self.input(topic).map_or_else(|| Arc::from(topic), |i| i.topic.clone())
    }

    /// Buffers a fetched record of `topic`.
    pub fn push(&mut self, topic: &str, record: Record) {
        let bytes = size(&record);
        match self.inputs.iter_mut().find(|i| &*i.topic == topic) {
            Some(input) => {
                input.bytes += bytes;
                input.queue.push_back(record);
            }
            None => {
                self.inputs.push(Input { topic: topic.into(), table: false, queue: VecDeque::from([record]), bytes })
            }
        }
    }

    /// The offset after the last record buffered for `topic`, when one is buffered.
    pub fn next_offset(&self, topic: &str) -> Option<i64> {
        Some(self.input(topic)?.queue.back()?.position.as_ref()?.offset + 1)
    }

    /// Records buffered for `topic`.
    pub fn queued(&self, topic: &str) -> usize {
        self.input(topic).map_or(0, |i| i.queue.len())
    }

    /// Key, value and header bytes buffered for `topic`.
    pub fn queued_bytes(&self, topic: &str) -> usize {
        self.input(topic).map_or(0, |i| i.bytes)
    }

    /// Records buffered in all.
    pub fn len(&self) -> usize {
        self.inputs.iter().map(|i| i.queue.len()).sum()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.inputs.iter().all(|i| i.queue.is_empty())
    }

    /// The input topics.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| &*i.topic)
    }

    /// Puts a record [`InputQueues::next`] gave back at the head of its input (its task cannot
    /// process it yet).
    pub fn unpop(&mut self, topic: &str, record: Record) {
        match self.inputs.iter_mut().find(|input| &*input.topic == topic) {
            Some(input) => {
                input.bytes += size(&record);
                input.queue.push_front(record);
            }
            None => self.push(topic, record),
        }
    }

    /// The next record in event-time order, or `None`: nothing is buffered, or an input with
    /// nothing buffered still has records on the broker (`lagging`) and the task has not waited
    /// `max_idle` for it yet.
    pub fn next(&mut self, lagging: impl Fn(&str) -> bool, max_idle: Duration) -> Option<(Arc<str>, Record)> {
        let index = self
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(index, input)| {
                let head = input.queue.front()?;
                Some((head.timestamp_ms.unwrap_or(i64::MIN), !input.table, index))
            })
            .min()?
            .2;
        let waiting = self.inputs.iter().any(|input| input.queue.is_empty() && lagging(&input.topic));
        if waiting {
            let since = *self.waiting_since.get_or_insert_with(Instant::now);
            if since.elapsed() < max_idle {
                return None;
            }
            metrics::counter!("happystreams_task_enforced_processing_total").increment(1);
        } else {
            self.waiting_since = None;
        }
        let input = &mut self.inputs[index];
        let record = input.queue.pop_front()?;
        input.bytes = input.bytes.saturating_sub(size(&record));
        Some((input.topic.clone(), record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(timestamp: i64) -> Record {
        Record { timestamp_ms: Some(timestamp), ..Record::default() }
    }

    #[test]
    fn buffered_bytes_follow_pushes_pops_and_unpops() {
        let mut queues = InputQueues::new([("a", false)]);
        let big = Record { value: Some(vec![0u8; 1000].into()), key: Some(b"k".to_vec().into()), ..record(1) };
        queues.push("a", big.clone());
        queues.push("a", record(2));
        assert_eq!(queues.queued_bytes("a"), 1001);
        let (_, first) = queues.next(|_| false, Duration::ZERO).unwrap();
        assert_eq!(queues.queued_bytes("a"), 0);
        queues.unpop("a", first);
        assert_eq!((queues.queued("a"), queues.queued_bytes("a")), (2, 1001));
    }

    fn drain(queues: &mut InputQueues) -> Vec<(String, i64)> {
        std::iter::from_fn(|| queues.next(|_| false, Duration::ZERO))
            .map(|(t, r)| (t.to_string(), r.timestamp_ms.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn lowest_timestamp_first_and_tables_first_on_ties() {
        let mut queues = InputQueues::new([("clicks", false), ("visitors", true), ("logs", false)]);
        for t in [10, 30, 50] {
            queues.push("clicks", record(t));
        }
        for t in [30, 40] {
            queues.push("visitors", record(t));
        }
        queues.push("logs", record(5));
        let order = drain(&mut queues);
        assert_eq!(
            order,
            vec![
                ("logs".into(), 5),
                ("clicks".into(), 10),
                ("visitors".into(), 30),
                ("clicks".into(), 30),
                ("visitors".into(), 40),
                ("clicks".into(), 50)
            ]
        );
        assert!(queues.is_empty());
    }

    #[test]
    fn waits_for_a_lagging_input_then_goes_on_after_the_idle_time() {
        let mut queues = InputQueues::new([("clicks", false), ("visitors", true)]);
        queues.push("clicks", record(100));
        // visitors has nothing buffered but more on the broker: wait.
        assert!(queues.next(|t| t == "visitors", Duration::from_secs(60)).is_none());
        assert_eq!(queues.len(), 1);
        // Not lagging (caught up): go on.
        assert!(queues.next(|_| false, Duration::from_secs(60)).is_some());
        // Lagging past the idle time: go on anyway.
        queues.push("clicks", record(200));
        assert!(queues.next(|t| t == "visitors", Duration::ZERO).is_some());
    }
}
