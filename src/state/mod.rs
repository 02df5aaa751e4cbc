//! State: what operators remember between records, kept so that a crash loses nothing and
//! applies nothing twice.
//!
//! Layers, innermost first (as in Kafka Streams' store stack):
//! - [`StateBackend`]: one task's named byte stores plus its checkpoint, committed atomically.
//!   [`MemoryBackend`] (tests, small jobs) and [`RocksDbBackend`] (one RocksDB instance per task,
//!   one column family per store, all instances sharing one memory budget: [`StateMemory`]).
//! - [`TaskState`]: the write cache in front of a backend. Writes stay in memory until
//!   [`TaskState::commit`]; reads see them first. It is also where the changelog hook sits.
//! - Typed layers over a store: [`VersionedStore`] (row history for event-time lookups).
//!
//! # Commit protocol (this layer's part)
//!
//! 1. Operators write through [`TaskState`]; nothing reaches the backend yet.
//! 2. `commit(checkpoint)` first appends every pending write to the [`Changelog`] (if any) and
//!    flushes it, so a replica can always rebuild what the backend is about to hold.
//! 3. Then the pending writes AND the checkpoint (input positions, changelog positions) go to the
//!    backend in ONE atomic write (a RocksDB `WriteBatch` with the WAL on).
//! 4. Only after that may the runtime commit input offsets to Kafka. A crash before step 3 leaves
//!    the old state and old checkpoint together; a crash after it leaves the new ones together;
//!    so on restart the checkpoint says exactly which input the state already contains.

mod backend;
mod changelog;
mod error;
mod memory;
mod rocksdb;
mod task_state;
mod versioned;

pub use backend::{Checkpoint, StateBackend, WriteSet};
pub use changelog::{Changelog, ChangelogEntry, MemoryChangelog};
pub use error::StateError;
pub use memory::MemoryBackend;
pub use rocksdb::{RocksDbBackend, Snapshot, StateConfig, StateMemory, StateReader};
pub use task_state::TaskState;
pub use versioned::{Version, VersionedStore};
