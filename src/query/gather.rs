//! One answer from every partition's: this instance reads its own partitions, asks every other
//! instance for theirs (the same request with `?scope=local`), and merges. A key found in a
//! partition that runs (or restores within `max_lag` records) is answered at once; otherwise
//! every partition must have answered — or the answer is "unavailable" with the reason, never
//! a value from a partition that is not complete.

use super::catalog::{Catalog, StoreInfo};
use super::local::{self, LocalTask, Phase};
use super::read::{self, BadQuery, Entry, Query, ReadError};
use axum::http::HeaderValue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One partition's part of an answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionAnswer {
    /// The partition (-1 for a global table: every instance holds it whole).
    pub partition: i32,
    /// The instance that answered (its advertised URL).
    pub instance: String,
    /// `running` or `restoring`.
    pub state: String,
    /// Whether its entries may be served (running, or restoring within `max_lag`).
    pub usable: bool,
    /// Next input offset per `topic:partition` the answer reflects (its last commit).
    pub position: BTreeMap<String, i64>,
    /// Records behind: the inputs' high watermarks minus the position (a running task), or the
    /// changelog records left to restore (a restoring one); `null` when unknown.
    pub lag: Option<u64>,
    /// Whether the read stopped at the query's limit.
    #[serde(default)]
    pub truncated: bool,
    /// Entries found.
    pub entries: Vec<Entry>,
}

/// A merged answer.
#[derive(Debug)]
pub enum Merged {
    /// A key's entry, and the partition that holds it.
    Found(Box<Entry>, PartitionAnswer),
    /// No such key: every partition answered.
    NotFound,
    /// Range and window entries in order (with their partitions), and every partition's answer.
    Entries {
        /// Entries with their partition.
        entries: Vec<(i32, Entry)>,
        /// More entries than the limit.
        truncated: bool,
        /// Each partition's answer (entries taken out).
        partitions: Vec<PartitionAnswer>,
    },
    /// Some partitions cannot answer now.
    Unavailable {
        /// `restoring`, `rebalancing` or `not_owner_yet`.
        reason: &'static str,
        /// The partitions that did not answer.
        missing: Vec<i32>,
    },
}

/// Why a local read failed.
#[derive(Debug)]
pub enum LocalError {
    /// The query does not fit the store (HTTP 400).
    Bad(BadQuery),
    /// The state could not be read (HTTP 500).
    Read(String),
}

/// One partition's position and entries; `None` when its state is closed or not open yet.
type PartitionRead = Option<Result<(BTreeMap<String, i64>, Vec<Entry>), ReadError>>;

/// This instance's partitions' answers.
pub fn local_answers(
    catalog: &Catalog,
    store: &StoreInfo,
    query: &Query,
    max_lag: Option<u64>,
) -> Result<Vec<PartitionAnswer>, LocalError> {
    let instance = super::discovery::own_url().unwrap_or_default();
    let read_one = |reader: &crate::state::StateReader| -> PartitionRead {
        reader.snapshot(|snapshot| {
            let position = snapshot.checkpoint()?.map(|c| c.inputs).unwrap_or_default();
            Ok((position, read::read(catalog, store, snapshot, query)?))
        })
    };
    let limit = match query {
        Query::Range { limit, .. } | Query::Windows { limit, .. } => *limit,
        Query::Key { .. } => usize::MAX,
    };
    let mut answers = Vec::new();
    let mut push = |partition: i32,
                    state: &str,
                    usable: bool,
                    restore_lag: Option<u64>,
                    read: PartitionRead|
     -> Result<(), LocalError> {
        let (position, entries, usable) = match read {
            Some(Ok((position, entries))) => (position, entries, usable),
            Some(Err(ReadError::Bad(e))) => return Err(LocalError::Bad(e)),
            Some(Err(e)) => return Err(LocalError::Read(e.to_string())),
            // Not opened yet, or closed meanwhile.
            None => (BTreeMap::new(), Vec::new(), false),
        };
        let lag = if state == "running" { local::lag(&position) } else { restore_lag };
        let truncated = entries.len() >= limit;
        answers.push(PartitionAnswer {
            partition,
            instance: instance.clone(),
            state: state.to_owned(),
            usable,
            position,
            lag,
            truncated,
            entries,
        });
        Ok(())
    };
    if store.global {
        if let Some(reader) = local::global() {
            push(-1, "running", true, None, read_one(&reader))?;
        }
        return Ok(answers);
    }
    let tasks: BTreeMap<i32, LocalTask> = store.subtopology.map(local::tasks).unwrap_or_default();
    for (partition, task) in tasks {
        let (state, usable, lag) = match task.phase {
            Phase::Running => ("running", true, None),
            Phase::Restoring { remaining } => {
                ("restoring", remaining.zip(max_lag).is_some_and(|(r, m)| r <= m), remaining)
            }
        };
        let read = match (&task.reader, usable) {
            (Some(reader), true) => read_one(reader),
            _ => None,
        };
        push(partition, state, usable, lag, read)?;
    }
    Ok(answers)
}

/// [`local_answers`] where it does not hold up the async threads that serve health checks and
/// other queries: a range or windows scan on a blocking thread; a key lookup (a few point reads,
/// microseconds, bloom-filtered) in place, which saves the hand-over.
pub async fn local_answers_async(
    catalog: Arc<Catalog>,
    store: StoreInfo,
    query: Query,
    max_lag: Option<u64>,
) -> Result<Vec<PartitionAnswer>, LocalError> {
    if let Query::Key { .. } = query {
        return local_answers(&catalog, &store, &query, max_lag);
    }
    tokio::task::spawn_blocking(move || local_answers(&catalog, &store, &query, max_lag))
        .await
        .unwrap_or_else(|e| Err(LocalError::Read(format!("the read stopped: {e}"))))
}

/// Asks every other instance for its partitions' answers to `path_and_query` (a local query
/// path, `scope=local` added); an instance that does not answer contributes nothing.
pub async fn ask_peers<T: serde::de::DeserializeOwned + Default>(
    path_and_query: &str,
    authorization: Option<&HeaderValue>,
) -> Vec<T> {
    let separator = if path_and_query.contains('?') { '&' } else { '?' };
    let requests = super::discovery::peers().into_iter().map(|peer| {
        let url = format!("{peer}{path_and_query}{separator}scope=local");
        let authorization = authorization.cloned();
        async move {
            let mut request = super::discovery::client().get(&url);
            if let Some(value) = authorization {
                request = request.header(axum::http::header::AUTHORIZATION, value);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    super::discovery::answered(&peer);
                    response.json::<T>().await.ok()
                }
                // Refused (a different token, topology or version): this query is the caller's
                // to retry, the instance is up.
                Ok(response) => {
                    tracing::warn!(%url, status = %response.status(), "an instance refused a query");
                    None
                }
                Err(e) => {
                    super::discovery::failed(&peer, &e.to_string());
                    None
                }
            }
        }
    });
    futures::future::join_all(requests).await.into_iter().flatten().collect()
}

/// Answers `query` from every partition: local first, then the other instances unless a key
/// was found here. `path_and_query` is the query's API path for the other instances.
pub async fn gather(
    catalog: &Arc<Catalog>,
    store: &StoreInfo,
    query: &Query,
    max_lag: Option<u64>,
    path_and_query: &str,
    authorization: Option<&HeaderValue>,
) -> Result<Merged, LocalError> {
    let mut answers = local_answers_async(catalog.clone(), store.clone(), query.clone(), max_lag).await?;
    let found_here = matches!(query, Query::Key { .. }) && answers.iter().any(|a| a.usable && !a.entries.is_empty());
    if !store.global && !found_here {
        for peer in ask_peers::<Vec<PartitionAnswer>>(path_and_query, authorization).await {
            answers.extend(peer);
        }
    }
    Ok(merge(store, query, answers))
}

/// See the module docs.
pub fn merge(store: &StoreInfo, query: &Query, answers: Vec<PartitionAnswer>) -> Merged {
    // Per partition, a usable answer first.
    let mut by_partition: BTreeMap<i32, PartitionAnswer> = BTreeMap::new();
    for answer in answers {
        if by_partition.get(&answer.partition).is_none_or(|a| !a.usable && answer.usable) {
            by_partition.insert(answer.partition, answer);
        }
    }
    if let Query::Key { .. } = query
        && let Some(found) = by_partition.values_mut().find(|a| a.usable && !a.entries.is_empty())
    {
        let entry = found.entries.swap_remove(0);
        found.entries.clear();
        return Merged::Found(Box::new(entry), found.clone());
    }
    let expected: Vec<i32> = if store.global { vec![-1] } else { (0..store.partitions).collect() };
    let missing: Vec<i32> =
        expected.iter().copied().filter(|p| !by_partition.get(p).is_some_and(|a| a.usable)).collect();
    if !missing.is_empty() {
        let restoring = missing.iter().any(|p| by_partition.contains_key(p));
        let readiness = crate::runtime::health::readiness().reason;
        let reason = if restoring || store.global {
            "restoring"
        } else if matches!(readiness, Some("rebalancing" | "joining")) {
            "rebalancing"
        } else {
            "not_owner_yet"
        };
        return Merged::Unavailable { reason, missing };
    }
    let limit = match query {
        Query::Key { .. } => return Merged::NotFound,
        Query::Range { limit, .. } | Query::Windows { limit, .. } => *limit,
    };
    let mut truncated = false;
    let mut entries: Vec<(i32, Entry)> = Vec::new();
    let mut partitions = Vec::new();
    for mut answer in by_partition.into_values() {
        truncated |= answer.truncated;
        entries.extend(answer.entries.drain(..).map(|e| (answer.partition, e)));
        partitions.push(answer);
    }
    match query {
        Query::Windows { .. } => entries.sort_by(|(_, a), (_, b)| read::window_order(a).cmp(&read::window_order(b))),
        _ => entries.sort_by(|(_, a), (_, b)| a.order.cmp(&b.order)),
    }
    truncated |= entries.len() > limit;
    entries.truncate(limit);
    Merged::Entries { entries, truncated, partitions }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;
    use crate::runtime::layout::TaskId;

    #[test]
    fn a_restoring_partition_answers_only_within_max_lag_and_never_as_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let (_driver, reader, catalog) = super::super::read::tests::setup(dir.path());
        let store = catalog.stores.iter().find(|s| s.node == "per_source").unwrap().clone();
        let query = Query::Key { key: Value::String("ads".into()), as_of: None };
        let (thread, id) = (70, TaskId { subtopology: 0, partition: 0 });
        local::opened(thread, id, Some(reader));
        local::restoring(thread, id, Some(50));
        let answers = |max_lag| local_answers(&catalog, &store, &query, max_lag).unwrap();
        let restoring = answers(None);
        assert!(!restoring[0].usable && restoring[0].entries.is_empty(), "{restoring:?}");
        assert!(matches!(merge(&store, &query, restoring), Merged::Unavailable { reason: "restoring", .. }));
        assert!(!answers(Some(10))[0].usable, "50 records left is more than 10");
        let within = answers(Some(100));
        assert_eq!((within[0].usable, within[0].lag, within[0].state.as_str()), (true, Some(50), "restoring"));
        assert!(matches!(merge(&store, &query, within), Merged::Found(..)));
        // A key no partition holds: not found only once every partition answered.
        let missing = Query::Key { key: Value::String("tv".into()), as_of: None };
        local::running(thread, id);
        let ran = local_answers(&catalog, &store, &missing, None).unwrap();
        assert!(matches!(merge(&store, &missing, ran), Merged::NotFound));
        let nobody = merge(&store, &missing, Vec::new());
        assert!(matches!(nobody, Merged::Unavailable { reason: "not_owner_yet" | "rebalancing", .. }), "{nobody:?}");
        local::gone(thread, id);
        assert!(local_answers(&catalog, &store, &missing, None).unwrap().is_empty());
    }
}
