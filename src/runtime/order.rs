//! Event-time order within a task.
//!
//! A task's input partitions (its lead partition, co-partitioned tables, other streams and
//! repartition topics) are fetched independently, so records arrive in no particular order
//! across them. Like Kafka Streams' partition group, a running task buffers what was fetched per
//! input and processes the record with the lowest timestamp first — a table change before an
//! event with the same timestamp — so a dimension change committed before an event is applied
//! before it, and a fast input does not make a slow one's records late.
//!
//! While an input has nothing buffered but more on the broker (its fetch position is below the
//! high watermark librdkafka last saw, or that is not known yet), the task waits for it, at most
//! `max_task_idle_ms`; then it goes on without it (counted in
//! `task_enforced_processing_total`). Buffered records are not processed, so they are not part
//! of any commit: a task closed with records buffered reads them again.

use crate::record::Record;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// The buffered records of one task, per input topic.
#[derive(Debug, Default)]
pub struct InputQueues {
    queues: BTreeMap<String, VecDeque<Record>>,
    tables: BTreeSet<String>,
    waiting_since: Option<Instant>,
}

impl InputQueues {
    /// Queues for a task's inputs: `(topic, is a table)`.
    pub fn new<'a>(inputs: impl IntoIterator<Item = (&'a str, bool)>) -> Self {
        let mut queues = InputQueues::default();
        for (topic, table) in inputs {
            queues.queues.insert(topic.to_owned(), VecDeque::new());
            if table {
                queues.tables.insert(topic.to_owned());
            }
        }
        queues
    }

    /// Buffers a fetched record of `topic`.
    pub fn push(&mut self, topic: &str, record: Record) {
        self.queues.entry(topic.to_owned()).or_default().push_back(record);
    }

    /// Records buffered for `topic`.
    pub fn queued(&self, topic: &str) -> usize {
        self.queues.get(topic).map_or(0, VecDeque::len)
    }

    /// Records buffered in all.
    pub fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.queues.values().all(VecDeque::is_empty)
    }

    /// The input topics.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.queues.keys().map(String::as_str)
    }

    /// The next record in event-time order, or `None`: nothing is buffered, or an input with
    /// nothing buffered still has records on the broker (`lagging`) and the task has not waited
    /// `max_idle` for it yet.
    pub fn next(&mut self, lagging: impl Fn(&str) -> bool, max_idle: Duration) -> Option<(String, Record)> {
        let topic = self
            .queues
            .iter()
            .filter_map(|(topic, queue)| {
                let head = queue.front()?;
                Some((head.timestamp_ms.unwrap_or(i64::MIN), !self.tables.contains(topic), topic))
            })
            .min()?
            .2
            .clone();
        let waiting = self.queues.iter().any(|(topic, queue)| queue.is_empty() && lagging(topic));
        if waiting {
            let since = *self.waiting_since.get_or_insert_with(Instant::now);
            if since.elapsed() < max_idle {
                return None;
            }
            metrics::counter!("task_enforced_processing_total").increment(1);
        } else {
            self.waiting_since = None;
        }
        let record = self.queues.get_mut(&topic)?.pop_front()?;
        Some((topic, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(timestamp: i64) -> Record {
        Record { timestamp_ms: Some(timestamp), ..Record::default() }
    }

    fn drain(queues: &mut InputQueues) -> Vec<(String, i64)> {
        std::iter::from_fn(|| queues.next(|_| false, Duration::ZERO))
            .map(|(t, r)| (t, r.timestamp_ms.unwrap_or_default()))
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
