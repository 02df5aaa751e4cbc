//! The record cache (Kafka Streams' `statestore.cache.max.bytes`): between two commits, the
//! outputs of a table-shaped node (an aggregate, a `to_table`, a table's changelog) to a sink
//! are merged per key in memory, so the sink sees the latest value per key per commit instead
//! of one record per input. A tumbling count over a million clicks then writes one update per
//! window and group each commit, not a million.
//!
//! Each task keeps its own cache; all of an instance's caches share one byte budget
//! (`runtime.record_cache_mb`). A task whose insert takes the total over the budget sends its
//! whole cache at once (the sink still sees only latest values). Every commit sends the caches
//! first, so the commit's outputs are delivered before its state is — the commit protocol is
//! unchanged. A crash loses a cache together with the uncommitted state behind it; the inputs are
//! processed again. The compacted view of each sink is the same with or without the cache; only
//! the number of intermediate updates differs. A node with `cache: false` sends every update as
//! it happens (emit-on-update per record).

use crate::operators::pipeline::Output;
use crate::record::Row;
use crate::record::encoding::key_bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The byte budget all record caches of an instance share.
#[derive(Debug)]
pub struct CacheBudget {
    used: AtomicUsize,
    limit: usize,
}

impl CacheBudget {
    /// A budget of `mb` MiB (0: no caching).
    pub fn new(mb: usize) -> Self {
        CacheBudget { used: AtomicUsize::new(0), limit: mb << 20 }
    }

    /// Bytes held by every cache together (estimated).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// One task's cached outputs, latest per (topic, key).
#[derive(Debug, Default)]
pub struct RecordCache {
    entries: HashMap<(String, Vec<u8>), (Output, usize)>,
    bytes: usize,
    merged: u64,
}

impl RecordCache {
    /// Keeps the outputs to `topics` (latest per key) and returns the others, to be sent now. If
    /// the caches are over `budget`, this cache's entries are returned too.
    pub fn absorb(&mut self, outputs: Vec<Output>, topics: &HashSet<String>, budget: &CacheBudget) -> Vec<Output> {
        if topics.is_empty() || budget.limit == 0 {
            return outputs;
        }
        let mut now = Vec::new();
        for output in outputs {
            if !topics.contains(&output.topic) {
                now.push(output);
                continue;
            }
            let size = approx_size(&output);
            let key = (output.topic.clone(), key_bytes(&output.key));
            match self.entries.insert(key, (output, size)) {
                Some((_, old)) => {
                    self.merged += 1;
                    self.bytes = self.bytes + size - old;
                    if size >= old {
                        budget.used.fetch_add(size - old, Ordering::Relaxed);
                    } else {
                        budget.used.fetch_sub(old - size, Ordering::Relaxed);
                    }
                }
                None => {
                    self.bytes += size;
                    budget.used.fetch_add(size, Ordering::Relaxed);
                }
            }
        }
        if budget.used() > budget.limit {
            metrics::counter!("happystreams_record_cache_evictions_total").increment(1);
            now.extend(self.drain(budget));
        }
        now
    }

    /// Everything cached, emptied (at commit, or when over budget).
    pub fn drain(&mut self, budget: &CacheBudget) -> Vec<Output> {
        if self.merged > 0 {
            metrics::counter!("happystreams_record_cache_merged_total").increment(self.merged);
            self.merged = 0;
        }
        budget.used.fetch_sub(self.bytes.min(budget.used()), Ordering::Relaxed);
        self.bytes = 0;
        self.entries.drain().map(|(_, (output, _))| output).collect()
    }

    /// Drops everything cached (the task closes without committing).
    pub fn discard(&mut self, budget: &CacheBudget) {
        drop(self.drain(budget));
    }

    /// Nothing cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A cheap estimate of an output's memory.
fn approx_size(output: &Output) -> usize {
    96 + output.topic.len() + output.key.approx_bytes() + output.value.as_ref().map_or(0, Row::approx_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;

    fn output(topic: &str, key: i64, count: i64) -> Output {
        Output {
            topic: topic.into(),
            key: Value::Long(key),
            value: Some(Row::new().with("count", Value::Long(count))),
            timestamp: count,
        }
    }

    #[test]
    fn keeps_the_latest_per_key_of_cached_topics_only() {
        let topics = HashSet::from(["counts".to_owned()]);
        let budget = CacheBudget::new(1);
        let mut cache = RecordCache::default();
        let now = cache.absorb(
            vec![output("counts", 1, 1), output("facts", 1, 1), output("counts", 1, 2), output("counts", 2, 1)],
            &topics,
            &budget,
        );
        assert_eq!(now.len(), 1, "the stream output goes out at once");
        assert!(budget.used() > 0);
        let mut cached = cache.drain(&budget);
        cached.sort_by_key(|o| o.timestamp);
        let latest: Vec<(Value, i64)> = cached.iter().map(|o| (o.key.clone(), o.timestamp)).collect();
        assert_eq!(latest, vec![(Value::Long(2), 1), (Value::Long(1), 2)]);
        assert_eq!(budget.used(), 0);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_cache_over_the_budget_sends_everything() {
        let topics = HashSet::from(["counts".to_owned()]);
        let budget = CacheBudget { used: AtomicUsize::new(0), limit: 1_000 };
        let mut cache = RecordCache::default();
        let mut sent = 0;
        for key in 0..100 {
            sent += cache.absorb(vec![output("counts", key, 1)], &topics, &budget).len();
        }
        assert!(sent > 0, "evicted when over budget");
        assert!(budget.used() <= 1_000);
        assert_eq!(sent + cache.drain(&budget).len(), 100, "every key once");
    }
}
