//! RocksDB backend: one RocksDB instance per task, one column family per store, plus a
//! `__checkpoint` column family; every commit is one `WriteBatch` (WAL on), so state and
//! checkpoint move together.
//!
//! Memory: all instances of a process share one [`StateMemory`] — an LRU block cache and a
//! write-buffer manager charged to that same cache — so the total stays under `memory_mb` no
//! matter how many tasks a rebalance assigns. Point lookups use bloom filters (10 bits/key) and
//! keep index and filter blocks in the cache.
//!
//! Why one instance per task (not one per process): a task's directory can be dropped or
//! restored alone when the task moves to another instance, and RocksDB's `LOCK` file stops two
//! processes from opening the same task.

use super::StateError;
use super::backend::{Checkpoint, StateBackend, WriteSet, in_range};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteBufferManager, WriteOptions,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

const CHECKPOINT_CF: &str = "__checkpoint";
const CHECKPOINT_KEY: &[u8] = b"checkpoint";

/// State settings (the `[state]` config section).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory holding one sub-directory per task.
    pub dir: PathBuf,
    /// Memory for all RocksDB instances together (block cache + memtables), in MiB.
    pub memory_mb: usize,
    /// Bloom filter bits per key (0 disables the filter).
    pub bloom_bits_per_key: u32,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { dir: PathBuf::from("state"), memory_mb: 256, bloom_bits_per_key: 10 }
    }
}

/// The memory budget shared by every RocksDB instance of a process.
#[derive(Clone)]
pub struct StateMemory {
    cache: Cache,
    write_buffers: WriteBufferManager,
    bloom_bits_per_key: u32,
}

impl std::fmt::Debug for StateMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMemory").field("cache_usage", &self.cache.get_usage()).finish()
    }
}

impl StateMemory {
    /// A budget of `config.memory_mb`: memtables may use up to half of it, and are charged to
    /// the block cache so both together stay within the budget.
    pub fn new(config: &StateConfig) -> Self {
        let bytes = config.memory_mb.max(8) << 20;
        let cache = Cache::new_lru_cache(bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(bytes / 2, false, cache.clone());
        StateMemory { cache, write_buffers, bloom_bits_per_key: config.bloom_bits_per_key }
    }

    /// Bytes currently held in the shared cache (memtable reservations included).
    pub fn usage(&self) -> usize {
        self.cache.get_usage()
    }

    fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        if self.bloom_bits_per_key > 0 {
            table.set_bloom_filter(f64::from(self.bloom_bits_per_key), false);
        }
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut options = Options::default();
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_manager(&self.write_buffers);
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options
    }
}

/// One task's stores in one RocksDB instance.
pub struct RocksDbBackend {
    /// Shared only with [`StateReader`]s, which hold it weakly: dropping the backend closes it.
    db: Arc<DB>,
    path: PathBuf,
    stores: Vec<String>,
}

impl std::fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbBackend").field("path", &self.path).field("stores", &self.stores).finish()
    }
}

fn classify(path: &Path, e: rocksdb::Error) -> StateError {
    let detail = e.to_string();
    let path = path.to_owned();
    // Corruption first: "block checksum mismatch" contains "lock". An I/O error naming the
    // CURRENT file (permissions, a full disk) is no corruption.
    if matches!(e.kind(), rocksdb::ErrorKind::Corruption) || detail.starts_with("Corruption") {
        StateError::Corrupt { path, detail }
    } else if detail.contains("lock") || detail.contains("LOCK") {
        StateError::Locked { path, detail }
    } else {
        StateError::Io { path, detail }
    }
}

impl RocksDbBackend {
    /// Opens (or creates) the task directory `path` with the named stores. Stores that exist on
    /// disk but are not named are kept (and ignored), so a topology change never drops data
    /// silently.
    pub fn open<S: AsRef<str>>(path: &Path, stores: &[S], memory: &StateMemory) -> Result<Self, StateError> {
        std::fs::create_dir_all(path).map_err(|e| StateError::Io { path: path.to_owned(), detail: e.to_string() })?;
        let options = memory.options();
        let mut families: Vec<String> = stores.iter().map(|s| s.as_ref().to_owned()).collect();
        if let Ok(existing) = DB::list_cf(&options, path) {
            for name in existing {
                if name != "default" && !families.contains(&name) {
                    families.push(name);
                }
            }
        }
        if !families.iter().any(|f| f == CHECKPOINT_CF) {
            families.push(CHECKPOINT_CF.to_owned());
        }
        let descriptors = families.iter().map(|name| ColumnFamilyDescriptor::new(name, memory.options()));
        let db = DB::open_cf_descriptors(&options, path, descriptors).map_err(|e| classify(path, e))?;
        Ok(RocksDbBackend {
            db: Arc::new(db),
            path: path.to_owned(),
            stores: stores.iter().map(|s| s.as_ref().to_owned()).collect(),
        })
    }

    fn cf(&self, store: &str) -> Result<&rocksdb::ColumnFamily, StateError> {
        if !self.stores.iter().any(|s| s == store) {
            return Err(StateError::UnknownStore(store.to_owned()));
        }
        self.db.cf_handle(store).ok_or_else(|| StateError::UnknownStore(store.to_owned()))
    }

    /// The task directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a task's committed stores from another thread (`StateBackend::reader`).
#[derive(Clone)]
pub struct StateReader {
    db: Weak<DB>,
    path: PathBuf,
    stores: Arc<[String]>,
}

impl std::fmt::Debug for StateReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateReader").field("path", &self.path).finish()
    }
}

impl StateReader {
    /// Runs `read` on one consistent snapshot of the committed state (the checkpoint and every
    /// store as of one commit); `None` when the task's state was closed meanwhile.
    pub fn snapshot<R>(&self, read: impl FnOnce(&Snapshot<'_>) -> R) -> Option<R> {
        let db = self.db.upgrade()?;
        let snapshot = db.snapshot();
        Some(read(&Snapshot { db: &db, snapshot, path: &self.path, stores: &self.stores }))
    }
}

/// One consistent view of a task's committed state.
pub struct Snapshot<'a> {
    db: &'a DB,
    snapshot: rocksdb::SnapshotWithThreadMode<'a, DB>,
    path: &'a Path,
    stores: &'a [String],
}

impl Snapshot<'_> {
    fn cf(&self, store: &str) -> Result<&rocksdb::ColumnFamily, StateError> {
        let known = store == CHECKPOINT_CF || self.stores.iter().any(|s| s == store);
        known.then(|| self.db.cf_handle(store)).flatten().ok_or_else(|| StateError::UnknownStore(store.to_owned()))
    }

    /// The value of a key.
    pub fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self.cf(store)?;
        let value = self.snapshot.get_pinned_cf_opt(cf, key, ReadOptions::default());
        Ok(value.map_err(|e| classify(self.path, e))?.map(|v| v.to_vec()))
    }

    /// At most `limit` entries with `from <= key < to` (`to = None`: to the end), in key order.
    pub fn range(
        &self,
        store: &str,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        let cf = self.cf(store)?;
        let mut options = ReadOptions::default();
        if let Some(to) = to {
            options.set_iterate_upper_bound(to.to_vec());
        }
        let mut out = Vec::new();
        for item in self.snapshot.iterator_cf_opt(cf, options, IteratorMode::From(from, Direction::Forward)) {
            let (key, value) = item.map_err(|e| classify(self.path, e))?;
            if !in_range(&key, from, to) || out.len() >= limit {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// The checkpoint the state is at.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, StateError> {
        match self.get(CHECKPOINT_CF, CHECKPOINT_KEY)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::Encoding { store: CHECKPOINT_CF.into(), detail: e.to_string() }),
        }
    }
}

impl StateBackend for RocksDbBackend {
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self.cf(store)?;
        Ok(self.db.get_pinned_cf(cf, key).map_err(|e| classify(&self.path, e))?.map(|v| v.to_vec()))
    }

    fn range(&self, store: &str, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        let cf = self.cf(store)?;
        let mut out = Vec::new();
        // With an upper bound RocksDB stops at it instead of stepping over the deleted keys
        // after the range (closed windows, expired buffers) to find the next live one.
        let mut options = ReadOptions::default();
        if let Some(to) = to {
            options.set_iterate_upper_bound(to.to_vec());
        }
        for item in self.db.iterator_cf_opt(cf, options, IteratorMode::From(from, Direction::Forward)) {
            let (key, value) = item.map_err(|e| classify(&self.path, e))?;
            if !in_range(&key, from, to) {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    fn commit(&mut self, writes: &WriteSet, checkpoint: &Checkpoint) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for (store, entries) in writes {
            let cf = self.cf(store)?;
            for (key, value) in entries {
                match value {
                    Some(v) => batch.put_cf(cf, key, v),
                    None => batch.delete_cf(cf, key),
                }
            }
        }
        let encoded = serde_json::to_vec(checkpoint)
            .map_err(|e| StateError::Encoding { store: CHECKPOINT_CF.into(), detail: e.to_string() })?;
        let checkpoint_cf =
            self.db.cf_handle(CHECKPOINT_CF).ok_or_else(|| StateError::UnknownStore(CHECKPOINT_CF.into()))?;
        batch.put_cf(checkpoint_cf, CHECKPOINT_KEY, encoded);
        // The WAL makes the batch atomic across column families and durable against a process
        // crash; `sync` would add an fsync per commit (machine crash), which changelog restore
        // already covers.
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db.write_opt(batch, &options).map_err(|e| classify(&self.path, e))
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, StateError> {
        let cf = self.db.cf_handle(CHECKPOINT_CF).ok_or_else(|| StateError::UnknownStore(CHECKPOINT_CF.into()))?;
        match self.db.get_pinned_cf(cf, CHECKPOINT_KEY).map_err(|e| classify(&self.path, e))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::Encoding { store: CHECKPOINT_CF.into(), detail: e.to_string() }),
        }
    }

    fn stores(&self) -> Vec<String> {
        self.stores.clone()
    }

    fn size_bytes(&self, store: &str) -> Option<u64> {
        let cf = self.cf(store).ok()?;
        let property = |name: &str| self.db.property_int_value_cf(cf, name).ok().flatten().unwrap_or(0);
        Some(property("rocksdb.estimate-live-data-size") + property("rocksdb.cur-size-all-mem-tables"))
    }

    /// Holds the database weakly: once the backend is dropped, reads answer `None`.
    fn reader(&self) -> Option<StateReader> {
        Some(StateReader { db: Arc::downgrade(&self.db), path: self.path.clone(), stores: self.stores.clone().into() })
    }
}
