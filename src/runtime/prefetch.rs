//! Schema Registry lookups off the stream threads.
//!
//! Before a stream thread hands a record to its task, it asks whether the Avro schemas the
//! record names (its value's id; a Debezium record's key and value ids) are at hand. If one is
//! not, its fetch starts on the async runtime — once per id, however many records name it — and
//! the task waits: the record goes back to the head of its queue, the thread goes on with its
//! other tasks and keeps polling, and the task tries again next round. So a registry round trip,
//! or a registry outage, holds up only the tasks whose records need the missing schema, never
//! the thread (nor its heartbeats to the group).
//!
//! A fetch that fails because the registry cannot be reached is retried with backoff (100 ms
//! doubling to 5 s; `registry_retries_total`) for as long as it takes: a registry outage is not
//! the record's fault, so it is neither skipped nor dead-lettered, and nothing is lost. Only a
//! source with `on_error: fail` gives up, after `patience`: the record then goes through the
//! decode path, which tries once more (its retries count from the prefetch's first request) and
//! stops the instance with the registry's error. A fetch
//! the registry answers for good (an id it does not know, a schema that does not parse) ends the
//! wait at once: the decode path reports the record as bad data for its source's `on_error`.

use crate::codec::avro::{AvroCodec, UNKNOWN_ID_TTL};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Fetches missing schemas in the background; see the module docs.
pub struct SchemaPrefetch {
    avro: Arc<AvroCodec>,
    runtime: tokio::runtime::Handle,
    /// Ids being fetched, and since when.
    fetching: Arc<Mutex<HashMap<u32, Instant>>>,
    /// Ids whose fetch ended without a schema (a final answer), and when: the decode path
    /// reports them for a while instead of fetching again.
    settled: Arc<Mutex<HashMap<u32, Instant>>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SchemaPrefetch {
    /// Prefetching into `avro`'s cache on `runtime`.
    pub fn new(avro: Arc<AvroCodec>, runtime: tokio::runtime::Handle) -> Self {
        SchemaPrefetch { avro, runtime, fetching: Arc::default(), settled: Arc::default() }
    }

    /// Whether a record naming schema `ids` can be decoded now without waiting for the registry;
    /// starts fetching the ids that are missing. With `patience`, an id fetched for longer than
    /// that counts as ready (the decode path then fails it).
    pub fn ready(&self, ids: impl IntoIterator<Item = u32>, patience: Option<Duration>) -> bool {
        let mut ready = true;
        for id in ids {
            if self.avro.knows(id) || locked(&self.settled).get(&id).is_some_and(|at| at.elapsed() < UNKNOWN_ID_TTL) {
                continue;
            }
            let since = self.start(id);
            if patience.is_none_or(|patience| since.elapsed() < patience) {
                ready = false;
            }
        }
        ready
    }

    /// Since when the earliest of `ids` still being fetched has been asked for.
    pub fn asking_since(&self, ids: impl IntoIterator<Item = u32>) -> Option<Instant> {
        let fetching = locked(&self.fetching);
        ids.into_iter().filter_map(|id| fetching.get(&id).copied()).min()
    }

    /// Starts fetching `id` unless that already runs; when it started.
    fn start(&self, id: u32) -> Instant {
        let mut fetching = locked(&self.fetching);
        if let Some(since) = fetching.get(&id) {
            return *since;
        }
        let since = Instant::now();
        fetching.insert(id, since);
        metrics::gauge!("happystreams_registry_fetches_in_flight").set(fetching.len() as f64);
        let (avro, fetching_now, settled) = (self.avro.clone(), self.fetching.clone(), self.settled.clone());
        self.runtime.spawn(async move {
            let mut wait = Duration::from_millis(100);
            loop {
                match avro.schema(id).await {
                    Ok(_) => break,
                    Err(e) if e.retryable() => {
                        metrics::counter!("happystreams_registry_retries_total").increment(1);
                        tracing::warn!(schema_id = id, error = %e, retry_in_ms = wait.as_millis() as u64, "schema registry unavailable; the records that need this schema wait");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        tracing::debug!(schema_id = id, error = %e, "schema fetch answered for good");
                        let mut settled = locked(&settled);
                        // Only recent answers count: forget the older ones (hostile input can name
                        // any number of ids).
                        settled.retain(|_, at| at.elapsed() < UNKNOWN_ID_TTL);
                        settled.insert(id, Instant::now());
                        break;
                    }
                }
            }
            let mut fetching = locked(&fetching_now);
            fetching.remove(&id);
            metrics::gauge!("happystreams_registry_fetches_in_flight").set(fetching.len() as f64);
        });
        since
    }
}
