//! The state store contract, run against every backend (memory and RocksDB), plus the failure
//! cases only a durable backend has (reopen, crash, locked and corrupt directories).

use happystreams::state::{
    Changelog, MemoryBackend, MemoryChangelog, RocksDbBackend, StateBackend, StateConfig, StateError, StateMemory,
    TaskState, VersionedStore,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

const STORES: [&str; 2] = ["rows", "aggregates"];

/// How a backend under test is opened.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    RocksDb,
}

fn memory() -> &'static StateMemory {
    static MEMORY: OnceLock<StateMemory> = OnceLock::new();
    MEMORY.get_or_init(|| StateMemory::new(&StateConfig { memory_mb: 32, ..StateConfig::default() }))
}

fn open(kind: Kind, dir: &Path) -> Box<dyn StateBackend> {
    match kind {
        Kind::Memory => Box::new(MemoryBackend::new(&STORES)),
        Kind::RocksDb => Box::new(RocksDbBackend::open(dir, &STORES, memory()).expect("open RocksDB")),
    }
}

fn task(kind: Kind, dir: &Path) -> TaskState<Box<dyn StateBackend>> {
    TaskState::new(open(kind, dir)).unwrap()
}

fn inputs(offset: i64) -> BTreeMap<String, i64> {
    BTreeMap::from([("clicks:0".to_string(), offset)])
}

/// A changelog whose log the test can still read after handing it to the task.
#[derive(Clone, Default)]
struct SharedChangelog(Arc<Mutex<MemoryChangelog>>);

impl Changelog for SharedChangelog {
    fn send_writes(&mut self, writes: &happystreams::state::WriteSet) -> Result<(), StateError> {
        self.0.lock().unwrap().send_writes(writes)
    }
    fn send_marker(&mut self, checkpoint: &happystreams::state::Checkpoint) -> Result<(), StateError> {
        self.0.lock().unwrap().send_marker(checkpoint)
    }
    fn flush(&mut self) -> Result<(), StateError> {
        self.0.lock().unwrap().flush()
    }
    fn positions(&self) -> Result<BTreeMap<String, i64>, StateError> {
        self.0.lock().unwrap().positions()
    }
}

const KINDS: [Kind; 2] = [Kind::Memory, Kind::RocksDb];

#[test]
fn get_put_delete_and_range_follow_key_order() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let mut state = task(kind, dir.path());
        for key in [b"b".to_vec(), b"a".to_vec(), b"c".to_vec(), b"ab".to_vec()] {
            state.put("rows", key.clone(), [b"v-".as_slice(), &key].concat()).unwrap();
        }
        state.delete("rows", b"c".to_vec()).unwrap();
        assert_eq!(state.get("rows", b"a").unwrap(), Some(b"v-a".to_vec()), "{kind:?}");
        assert_eq!(state.get("rows", b"c").unwrap(), None, "{kind:?}");
        assert_eq!(state.get("aggregates", b"a").unwrap(), None, "{kind:?}: stores are separate");
        let keys = |range: Vec<(Vec<u8>, Vec<u8>)>| range.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(state.range("rows", b"a", Some(b"b")).unwrap()),
            vec![b"a".to_vec(), b"ab".to_vec()],
            "{kind:?}"
        );
        state.commit(inputs(4)).unwrap();
        assert_eq!(
            keys(state.range("rows", b"", None).unwrap()),
            vec![b"a".to_vec(), b"ab".to_vec(), b"b".to_vec()],
            "{kind:?}"
        );
        assert_eq!(
            keys(state.range("rows", b"ab", Some(b"ab")).unwrap()),
            Vec::<Vec<u8>>::new(),
            "{kind:?}: empty range"
        );
        // Deleting a committed key hides it before the next commit, too.
        state.delete("rows", b"a".to_vec()).unwrap();
        assert_eq!(keys(state.range("rows", b"", None).unwrap()), vec![b"ab".to_vec(), b"b".to_vec()], "{kind:?}");
    }
}

#[test]
fn uncommitted_writes_reach_the_backend_only_with_their_checkpoint() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let mut state = task(kind, dir.path());
        state.put("rows", b"k".to_vec(), b"1".to_vec()).unwrap();
        assert_eq!(state.backend().get("rows", b"k").unwrap(), None, "{kind:?}");
        assert_eq!(state.backend().checkpoint().unwrap(), None, "{kind:?}");
        state.commit(inputs(10)).unwrap();
        assert_eq!(state.backend().get("rows", b"k").unwrap(), Some(b"1".to_vec()), "{kind:?}");
        assert_eq!(state.backend().checkpoint().unwrap().unwrap().inputs, inputs(10), "{kind:?}");
        assert_eq!(state.pending_writes(), 0);
    }
}

#[test]
fn unknown_store_is_a_config_error() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let mut state = task(kind, dir.path());
        let err = state.put("nope", b"k".to_vec(), b"v".to_vec()).unwrap_err();
        assert!(matches!(err, StateError::UnknownStore(ref s) if s == "nope"), "{kind:?}: {err}");
        assert_eq!(err.class(), happystreams::error::ErrorClass::Config);
    }
}

#[test]
fn failed_changelog_append_commits_nothing_and_can_be_retried() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedChangelog::default();
        let mut state = task(kind, dir.path()).with_changelog(Box::new(log.clone()));
        state.put("rows", b"k".to_vec(), b"1".to_vec()).unwrap();
        log.0.lock().unwrap().fail_appends = true;
        assert!(state.commit(inputs(1)).unwrap_err().retryable(), "{kind:?}");
        assert_eq!(state.backend().get("rows", b"k").unwrap(), None, "{kind:?}: nothing committed");
        assert_eq!(state.backend().checkpoint().unwrap(), None, "{kind:?}");
        log.0.lock().unwrap().fail_appends = false;
        let checkpoint = state.commit(inputs(1)).unwrap().clone();
        assert_eq!(checkpoint.changelogs.get("rows"), Some(&1), "{kind:?}: changelog position recorded");
        assert_eq!(state.backend().get("rows", b"k").unwrap(), Some(b"1".to_vec()));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Commit,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..16, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..16).prop_map(Op::Delete),
        1 => Just(Op::Commit),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of writes, commits and crashes: the backend holds exactly the committed
    /// model, the changelog replays to the same, and (RocksDB) a reopen sees it too.
    #[test]
    fn backend_matches_a_model_through_commits_and_crashes(ops in proptest::collection::vec(op(), 1..60)) {
        for kind in KINDS {
            let dir = tempfile::tempdir().unwrap();
            let log = SharedChangelog::default();
            let mut state = task(kind, dir.path()).with_changelog(Box::new(log.clone()));
            let mut committed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut working = committed.clone();
            let mut offset = 0;
            for op in &ops {
                match op {
                    Op::Put(k, v) => { state.put("rows", vec![*k], vec![*v]).unwrap(); working.insert(vec![*k], vec![*v]); }
                    Op::Delete(k) => { state.delete("rows", vec![*k]).unwrap(); working.remove(&vec![*k]); }
                    Op::Commit => { offset += 1; state.commit(inputs(offset)).unwrap(); committed = working.clone(); }
                    Op::Crash => { state.discard_pending(); working = committed.clone(); }
                }
                let visible: BTreeMap<_, _> = state.range("rows", b"", None).unwrap().into_iter().collect();
                prop_assert_eq!(&visible, &working, "{:?}", kind);
            }
            let in_backend: BTreeMap<_, _> = state.backend().range("rows", b"", None).unwrap().into_iter().collect();
            prop_assert_eq!(&in_backend, &committed, "{:?}", kind);
            prop_assert_eq!(&log.0.lock().unwrap().compacted("rows"), &committed, "{:?}: changelog replays to the state", kind);
            if let Kind::RocksDb = kind {
                drop(state);
                let reopened = task(kind, dir.path());
                let after: BTreeMap<_, _> = reopened.range("rows", b"", None).unwrap().into_iter().collect();
                prop_assert_eq!(&after, &committed);
                let expected_inputs = if offset == 0 { BTreeMap::new() } else { inputs(offset) };
                prop_assert_eq!(&reopened.checkpoint().inputs, &expected_inputs);
            }
        }
    }
}

#[test]
fn rocksdb_reopen_after_a_crash_keeps_the_last_commit_and_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut state = task(Kind::RocksDb, dir.path());
        state.put("rows", b"a".to_vec(), b"1".to_vec()).unwrap();
        state.commit(inputs(7)).unwrap();
        state.put("rows", b"a".to_vec(), b"2".to_vec()).unwrap();
        state.put("aggregates", b"x".to_vec(), b"9".to_vec()).unwrap();
        // Dropped without commit: the process died.
    }
    let state = task(Kind::RocksDb, dir.path());
    assert_eq!(state.get("rows", b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(state.get("aggregates", b"x").unwrap(), None);
    assert_eq!(state.checkpoint().inputs, inputs(7), "state and checkpoint moved together");
}

#[test]
fn rocksdb_directory_in_use_is_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RocksDbBackend::open(dir.path(), &STORES, memory()).unwrap();
    let err = RocksDbBackend::open(dir.path(), &STORES, memory()).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("own state directory"), "the message says what to do: {err}");
}

#[test]
fn rocksdb_corrupt_directory_is_reported_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut state = task(Kind::RocksDb, dir.path());
        state.put("rows", b"a".to_vec(), b"1".to_vec()).unwrap();
        state.commit(inputs(1)).unwrap();
    }
    std::fs::write(dir.path().join("CURRENT"), b"MANIFEST-garbage").unwrap();
    let err = RocksDbBackend::open(dir.path(), &STORES, memory()).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("restores it from its changelog"), "{err}");
}

#[test]
fn rocksdb_keeps_stores_a_new_topology_no_longer_names() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut state = task(Kind::RocksDb, dir.path());
        state.put("aggregates", b"x".to_vec(), b"9".to_vec()).unwrap();
        state.commit(inputs(1)).unwrap();
    }
    {
        let only_rows = RocksDbBackend::open(dir.path(), &["rows"], memory()).unwrap();
        assert!(only_rows.get("aggregates", b"x").is_err(), "not part of this topology");
    }
    let again = task(Kind::RocksDb, dir.path());
    assert_eq!(again.get("aggregates", b"x").unwrap(), Some(b"9".to_vec()), "data survived the narrower open");
}

#[test]
fn versioned_store_answers_as_of_event_time_in_any_arrival_order() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let mut state = task(kind, dir.path());
        let versions = VersionedStore::new("rows", 1_000);
        // Arrival order differs from validity order.
        versions.put(&mut state, b"v1", 200, Some(b"gold"), 200).unwrap();
        versions.put(&mut state, b"v1", 100, Some(b"silver"), 200).unwrap();
        versions.put(&mut state, b"v1", 300, None, 300).unwrap();
        let at = |state: &TaskState<Box<dyn StateBackend>>, ts| {
            versions.get_as_of(state, b"v1", ts).unwrap().and_then(|v| v.value)
        };
        assert_eq!(at(&state, 99), None, "{kind:?}: before the first version");
        assert_eq!(at(&state, 100), Some(b"silver".to_vec()), "{kind:?}");
        assert_eq!(at(&state, 250), Some(b"gold".to_vec()), "{kind:?}");
        assert_eq!(at(&state, 300), None, "{kind:?}: deleted at 300");
        assert_eq!(versions.latest(&state, b"v1").unwrap(), None);
        versions.put(&mut state, b"v1", 400, Some(b"bronze"), 400).unwrap();
        assert_eq!(versions.latest(&state, b"v1").unwrap().unwrap().value, Some(b"bronze".to_vec()));
        // Keys that are prefixes of each other do not mix.
        versions.put(&mut state, b"v", 50, Some(b"other"), 400).unwrap();
        assert_eq!(at(&state, 150), Some(b"silver".to_vec()), "{kind:?}");
        assert_eq!(
            versions.get_as_of(&state, b"v", 150).unwrap().and_then(|v| v.value),
            Some(b"other".to_vec()),
            "{kind:?}"
        );
        assert_eq!(versions.latest(&state, b"v").unwrap().and_then(|v| v.value), Some(b"other".to_vec()), "{kind:?}");
        state.commit(inputs(1)).unwrap();
        assert_eq!(at(&state, 250), Some(b"gold".to_vec()), "{kind:?}: same after commit");
    }
}

#[test]
fn versioned_store_trims_history_but_keeps_the_version_valid_at_the_cutoff() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let mut state = task(kind, dir.path());
        let versions = VersionedStore::new("rows", 100);
        for (ts, value) in [(0, b"a"), (50, b"b"), (120, b"c"), (300, b"d")] {
            versions.put(&mut state, b"k", ts, Some(value), ts).unwrap();
        }
        // Stream time 300, retention 100: cutoff 200. Version "c" (valid 120..300) is valid at
        // the cutoff and kept; "a" and "b" are gone.
        let at = |ts| versions.get_as_of(&state, b"k", ts).unwrap().and_then(|v| v.value);
        assert_eq!(at(200), Some(b"c".to_vec()), "{kind:?}");
        assert_eq!(at(299), Some(b"c".to_vec()), "{kind:?}");
        assert_eq!(at(60), None, "{kind:?}: older than the retention");
        assert_eq!(state.range("rows", b"", None).unwrap().len(), 2, "{kind:?}: two versions stored");
    }
}
