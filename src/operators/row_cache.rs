//! Decoded rows of tables, kept for the joins that read them: least recently used first out,
//! every table of the process within one byte budget. The runtime carves the budget out of
//! `runtime.state_cache_mb` ([`set_budget`]); elsewhere (the test driver, `replay`) it is
//! [`DEFAULT_BUDGET`].
//!
//! A cache that inserts while the caches together are over the budget evicts its own least
//! recently used rows — instead of a cache cleared whole when full (every key decoded again after
//! each clear). It never evicts another table's rows: a table that filled the budget first keeps
//! its rows until it inserts again, and a table inserting later keeps at least its newest row, so
//! the total can pass the budget by about one row per table. A shared LRU across tables would
//! balance them; this keeps each table's lock its own.

use lru::LruCache;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The budget when nobody set one: 32 MiB.
pub const DEFAULT_BUDGET: usize = 32 << 20;

/// Bytes that several caches share.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        Budget { used: AtomicUsize::new(0), limit: AtomicUsize::new(limit) }
    }

    /// Bytes the caches hold together (estimated).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit.load(Ordering::Relaxed)
    }
}

/// The budget of every table's row cache in the process.
pub static PROCESS: Budget = Budget::new(DEFAULT_BUDGET);

/// Sets the bytes every row cache of the process may hold together.
pub fn set_budget(bytes: usize) {
    PROCESS.limit.store(bytes, Ordering::Relaxed);
}

/// One table's cached values per key, least recently used first out.
#[derive(Debug)]
pub struct RowCache<V> {
    entries: LruCache<Vec<u8>, (V, usize)>,
    bytes: usize,
    budget: &'static Budget,
}

impl<V> Default for RowCache<V> {
    fn default() -> Self {
        RowCache::within(&PROCESS)
    }
}

impl<V> RowCache<V> {
    /// An empty cache within `budget`.
    pub fn within(budget: &'static Budget) -> Self {
        RowCache { entries: LruCache::unbounded(), bytes: 0, budget }
    }
}

impl<V: Clone> RowCache<V> {
    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &[u8]) -> Option<V> {
        self.entries.get(key).map(|(value, _)| value.clone())
    }

    /// Keeps `value` (of about `size` bytes), evicting this cache's least recently used values
    /// while the caches together are over the budget.
    pub fn insert(&mut self, key: Vec<u8>, value: V, size: usize) {
        self.add(size);
        if let Some((_, old)) = self.entries.put(key, (value, size)) {
            self.sub(old);
        }
        while self.budget.over() && self.entries.len() > 1 {
            match self.entries.pop_lru() {
                Some((_, (_, evicted))) => {
                    self.sub(evicted);
                    metrics::counter!("happystreams_row_cache_evictions_total").increment(1);
                }
                None => break,
            }
        }
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &[u8]) {
        if let Some((_, size)) = self.entries.pop(key) {
            self.sub(size);
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        let bytes = self.bytes;
        self.sub(bytes);
    }

    /// Keys cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn add(&mut self, size: usize) {
        self.bytes += size;
        self.budget.used.fetch_add(size, Ordering::Relaxed);
    }

    fn sub(&mut self, size: usize) {
        self.bytes -= size;
        self.budget.used.fetch_sub(size, Ordering::Relaxed);
    }
}

impl<V> Drop for RowCache<V> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_budget_the_least_recently_used_rows_go_first() {
        static BUDGET: Budget = Budget::new(300);
        let mut cache: RowCache<u32> = RowCache::within(&BUDGET);
        for key in 0..3u8 {
            cache.insert(vec![key], u32::from(key), 100);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&[0]), Some(0), "key 0 is now the most recently used");
        cache.insert(vec![3], 3, 100);
        assert_eq!(cache.get(&[1]), None, "key 1 was the least recently used");
        assert_eq!((cache.get(&[0]), cache.get(&[2]), cache.get(&[3])), (Some(0), Some(2), Some(3)));
        // A second cache within the same budget evicts its own rows, not the first cache's.
        let mut other: RowCache<u32> = RowCache::within(&BUDGET);
        other.insert(vec![9], 9, 100);
        other.insert(vec![8], 8, 100);
        assert_eq!((other.len(), cache.len()), (1, 3));
        cache.remove(&[0]);
        assert_eq!(BUDGET.used(), 300);
        drop((cache, other));
        assert_eq!(BUDGET.used(), 0, "every byte given back");
    }
}
