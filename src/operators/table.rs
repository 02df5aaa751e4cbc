//! Tables materialized from upserts or CDC changes, in a state store.
//!
//! - A plain table keeps the latest row per key.
//! - A versioned table keeps each key's row history ([`VersionedStore`]) so a lookup can ask
//!   for the row as of an event time; a delete is a version that says "gone from here on".
//! - A column the source did not capture (`Unavailable`) keeps the value of the row it replaces.
//! - Truncate removes every row (versioned: from the truncate's time on).
//!
//! Lookups go through a cache of decoded rows (per key: the latest row, or the key's versions):
//! a join then decodes a dimension row once, not once per event. The cache is LRU within the
//! process's row-cache budget ([`super::row_cache`]). Every write goes through [`Table::apply`],
//! which drops the key from the cache, and a restarted task builds new tables, so the cache never
//! disagrees with the store.

use super::row_cache::RowCache;
use super::{OperatorError, TableChange, TableUpdate};
use crate::record::encoding::{decode_row, encode_row, key_bytes};
use crate::record::{Row, Value};
use crate::state::{StateBackend, StateError, TaskState, VersionedStore};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Decoded versions of one key, oldest first (`None`: deleted from then on); for a plain table,
/// one entry with the current row.
type Versions = Arc<Vec<(i64, Option<Row>)>>;

/// A materialized table. Share it (`Arc<Table>`) between the writer and the joins that read it:
/// the cache lives in the value, so a copy would not see the writer's invalidations.
#[derive(Debug)]
pub struct Table {
    store: String,
    versioned: Option<VersionedStore>,
    cache: Mutex<RowCache<Versions>>,
    /// Bumped (under the cache's lock) by every invalidation: a row read from the store before
    /// an invalidation is not cached after it (a global table is read by several threads while
    /// the worker commits its updates).
    generation: AtomicU64,
}

fn decode(store: &str, bytes: &[u8]) -> Result<Row, OperatorError> {
    decode_row(bytes)
        .map_err(|e| OperatorError::State(StateError::Encoding { store: store.to_owned(), detail: e.to_string() }))
}

impl Table {
    /// Latest row per key, in `store`.
    pub fn plain(store: impl Into<String>) -> Self {
        Table { store: store.into(), versioned: None, cache: Mutex::default(), generation: AtomicU64::new(0) }
    }

    /// Row history per key for `retention_ms`, in `store`.
    pub fn versioned(store: impl Into<String>, retention_ms: i64) -> Self {
        let store = store.into();
        Table {
            versioned: Some(VersionedStore::new(store.clone(), retention_ms)),
            store,
            cache: Mutex::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// Applies a change to a plain table and returns what changed, row by row (old and new), for
    /// the nodes that read the table's changelog.
    pub fn apply_with_changes<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        update: TableUpdate,
        stream_time: i64,
    ) -> Result<Vec<TableChange>, OperatorError> {
        if self.versioned.is_some() {
            return Err(OperatorError::Unsupported(format!("the changelog of the versioned table `{}`", self.store)));
        }
        let mut changes = Vec::new();
        match &update {
            TableUpdate::Upsert { key, timestamp, .. } | TableUpdate::Delete { key, timestamp } => {
                let old = self.lookup(state, key, i64::MAX)?;
                changes.push(TableChange { key: key.clone(), old, new: None, timestamp: *timestamp });
            }
            TableUpdate::Truncate { timestamp } => {
                for (key, bytes) in state.range(&self.store, b"", None)? {
                    let key = crate::record::encoding::decode(&key).map_err(|e| {
                        OperatorError::State(StateError::Encoding { store: self.store.clone(), detail: e.to_string() })
                    })?;
                    changes.push(TableChange {
                        key,
                        old: Some(decode(&self.store, &bytes)?),
                        new: None,
                        timestamp: *timestamp,
                    });
                }
            }
        }
        // Only an upsert leaves a row behind (its unavailable columns filled from the old one).
        let upserted = matches!(update, TableUpdate::Upsert { .. });
        self.apply(state, update, stream_time)?;
        if upserted {
            for change in &mut changes {
                change.new = self.lookup(state, &change.key, i64::MAX)?;
            }
        }
        changes.retain(|c| c.old != c.new);
        Ok(changes)
    }

    /// Drops every cached row (after the state was rolled back under the cache).
    pub fn clear_cache(&self) {
        self.forget(None);
    }

    /// The store name.
    pub fn store(&self) -> &str {
        &self.store
    }

    fn forget(&self, key: Option<&[u8]>) {
        if let Ok(mut cache) = self.cache.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            match key {
                Some(k) => {
                    cache.remove(k);
                }
                None => cache.clear(),
            }
        }
    }

    /// Applies one change. `stream_time` (the highest event time seen) drives history expiry.
    pub fn apply<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        update: TableUpdate,
        stream_time: i64,
    ) -> Result<(), OperatorError> {
        let key = match &update {
            TableUpdate::Upsert { key, .. } | TableUpdate::Delete { key, .. } => Some(key_bytes(key)),
            TableUpdate::Truncate { .. } => None,
        };
        let result = self.write(state, key.as_deref(), update, stream_time);
        // After the write: reading the previous row (to fill unavailable columns) cached it.
        self.forget(key.as_deref());
        result
    }

    fn write<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        key: Option<&[u8]>,
        update: TableUpdate,
        stream_time: i64,
    ) -> Result<(), OperatorError> {
        match update {
            TableUpdate::Upsert { mut row, timestamp, .. } => {
                let key = key.unwrap_or_default().to_vec();
                if row.has_unavailable()
                    && let Some(previous) = self.row_at(state, &key, timestamp)?
                {
                    row.fill_unavailable_from(&previous);
                }
                let bytes = encode_row(&row);
                match &self.versioned {
                    Some(v) => v.put(state, &key, timestamp, Some(&bytes), stream_time)?,
                    None => state.put(&self.store, key, bytes)?,
                }
            }
            TableUpdate::Delete { timestamp, .. } => {
                let key = key.unwrap_or_default().to_vec();
                match &self.versioned {
                    Some(v) => v.put(state, &key, timestamp, None, stream_time)?,
                    None => state.delete(&self.store, key)?,
                }
            }
            TableUpdate::Truncate { timestamp } => match &self.versioned {
                Some(v) => {
                    for key in v.keys(state)? {
                        v.put(state, &key, timestamp, None, stream_time)?;
                    }
                }
                None => {
                    for (key, _) in state.range(&self.store, b"", None)? {
                        state.delete(&self.store, key)?;
                    }
                }
            },
        }
        Ok(())
    }

    fn versions<B: StateBackend>(&self, state: &TaskState<B>, key: &[u8]) -> Result<Versions, OperatorError> {
        if let Some(hit) = self.cache.lock().ok().and_then(|mut c| c.get(key)) {
            return Ok(hit);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let versions: Vec<(i64, Option<Row>)> = match &self.versioned {
            Some(v) => v
                .all_versions(state, key)?
                .into_iter()
                .map(|version| Ok((version.valid_from, version.value.map(|b| decode(&self.store, &b)).transpose()?)))
                .collect::<Result<_, OperatorError>>()?,
            None => vec![(i64::MIN, state.get(&self.store, key)?.map(|b| decode(&self.store, &b)).transpose()?)],
        };
        let versions = Arc::new(versions);
        if let Ok(mut cache) = self.cache.lock()
            && self.generation.load(Ordering::Acquire) == generation
        {
            let size = 64
                + key.len()
                + versions.iter().map(|(_, row)| 16 + row.as_ref().map_or(0, Row::approx_bytes)).sum::<usize>();
            cache.insert(key.to_vec(), versions.clone(), size);
        }
        Ok(versions)
    }

    fn row_at<B: StateBackend>(&self, state: &TaskState<B>, key: &[u8], at: i64) -> Result<Option<Row>, OperatorError> {
        let versions = self.versions(state, key)?;
        // The newest version valid at `at` (plain tables have one, valid forever).
        let index = versions.partition_point(|(valid_from, _)| *valid_from <= at);
        Ok(index.checked_sub(1).and_then(|i| versions[i].1.clone()))
    }

    /// The row for `key` (as of `at` for versioned tables; the latest otherwise).
    pub fn lookup<B: StateBackend>(
        &self,
        state: &TaskState<B>,
        key: &Value,
        at: i64,
    ) -> Result<Option<Row>, OperatorError> {
        self.row_at(state, &key_bytes(key), at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryBackend;

    fn upsert(id: i64, name: &str, ts: i64) -> TableUpdate {
        TableUpdate::Upsert {
            key: Value::Struct(Row::new().with("id", Value::Long(id))),
            row: Row::new()
                .with("id", Value::Long(id))
                .with("name", Value::String(name.into()))
                .with("body", Value::String("long text".into())),
            timestamp: ts,
        }
    }

    #[test]
    fn versioned_table_answers_as_of_and_keeps_unavailable_columns() {
        let mut state = TaskState::new(MemoryBackend::new(&["t"])).unwrap();
        let table = Table::versioned("t", 1_000_000);
        table.apply(&mut state, upsert(1, "a", 100), 100).unwrap();
        let update = Row::new()
            .with("id", Value::Long(1))
            .with("name", Value::String("b".into()))
            .with("body", Value::Unavailable);
        table.apply(&mut state, TableUpdate::Upsert { key: Value::Long(1), row: update, timestamp: 200 }, 200).unwrap();
        let at = |state: &TaskState<MemoryBackend>, ts| table.lookup(state, &Value::Long(1), ts).unwrap();
        assert_eq!(at(&state, 150).unwrap().get("name"), Some(&Value::String("a".into())));
        let later = at(&state, 250).unwrap();
        assert_eq!(later.get("name"), Some(&Value::String("b".into())));
        assert_eq!(
            later.get("body"),
            Some(&Value::String("long text".into())),
            "unavailable keeps the last known value"
        );
        table.apply(&mut state, TableUpdate::Delete { key: Value::Int(1), timestamp: 300 }, 300).unwrap();
        assert_eq!(at(&state, 350), None);
        assert!(at(&state, 250).is_some(), "history before the delete stays");
    }

    #[test]
    fn plain_table_keeps_latest_and_truncate_clears() {
        let mut state = TaskState::new(MemoryBackend::new(&["t"])).unwrap();
        let table = Table::plain("t");
        table.apply(&mut state, upsert(1, "a", 1), 1).unwrap();
        table.apply(&mut state, upsert(2, "b", 2), 2).unwrap();
        table.apply(&mut state, upsert(1, "c", 3), 3).unwrap();
        assert_eq!(
            table.lookup(&state, &Value::Long(1), 0).unwrap().unwrap().get("name"),
            Some(&Value::String("c".into()))
        );
        table.apply(&mut state, TableUpdate::Truncate { timestamp: 4 }, 4).unwrap();
        assert_eq!(table.lookup(&state, &Value::Long(2), 9).unwrap(), None);
    }
}
