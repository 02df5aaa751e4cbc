//! State store throughput (`cargo bench --bench state`): point reads of committed keys, writes
//! through the task cache with commits, and versioned as-of lookups, on the memory and RocksDB
//! backends. 100k keys of 16 bytes with 100-byte values.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use happystreams::state::{
    MemoryBackend, RocksDbBackend, StateBackend, StateConfig, StateMemory, TaskState, VersionedStore,
};
use std::collections::BTreeMap;
use std::hint::black_box;

const KEYS: u64 = 100_000;
const STORES: [&str; 1] = ["s"];

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:012}").into_bytes()
}

fn fill(state: &mut TaskState<Box<dyn StateBackend>>) {
    let value = vec![7u8; 100];
    for i in 0..KEYS {
        state.put("s", key(i), value.clone()).expect("put");
        if i % 10_000 == 9_999 {
            state.commit(BTreeMap::new()).expect("commit");
        }
    }
    state.commit(BTreeMap::new()).expect("commit");
}

fn backends(dir: &std::path::Path) -> Vec<(&'static str, TaskState<Box<dyn StateBackend>>)> {
    let memory = StateMemory::new(&StateConfig { memory_mb: 256, ..StateConfig::default() });
    let rocks: Box<dyn StateBackend> =
        Box::new(RocksDbBackend::open(&dir.join("rocks"), &STORES, &memory).expect("open"));
    let mem: Box<dyn StateBackend> = Box::new(MemoryBackend::new(&STORES));
    vec![("memory", TaskState::new(mem).expect("state")), ("rocksdb", TaskState::new(rocks).expect("state"))]
}

fn state(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("state");
    for (name, mut state) in backends(dir.path()) {
        fill(&mut state);
        let order: Vec<u64> = (0..10_000u64).map(|i| (i * 7_919) % KEYS).collect();
        group.throughput(Throughput::Elements(order.len() as u64));
        group.bench_function(BenchmarkId::new("get", name), |b| {
            b.iter(|| {
                for i in &order {
                    black_box(state.get("s", &key(*i)).expect("get"));
                }
            })
        });
        group.bench_function(BenchmarkId::new("put_commit_every_1000", name), |b| {
            let value = vec![9u8; 100];
            b.iter(|| {
                for (n, i) in order.iter().enumerate() {
                    state.put("s", key(*i), value.clone()).expect("put");
                    if n % 1_000 == 999 {
                        state.commit(BTreeMap::new()).expect("commit");
                    }
                }
            })
        });
        let versions = VersionedStore::new("s", 86_400_000);
        for i in 0..10_000u64 {
            for v in 0..4i64 {
                versions.put(&mut state, &key(i), v * 1_000, Some(&[v as u8; 100]), v * 1_000).expect("put version");
            }
        }
        state.commit(BTreeMap::new()).expect("commit");
        group.bench_function(BenchmarkId::new("versioned_get_as_of", name), |b| {
            b.iter(|| {
                for i in &order {
                    black_box(versions.get_as_of(&state, &key(i % 10_000), 2_500).expect("lookup"));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, state);
criterion_main!(benches);
