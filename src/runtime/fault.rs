//! Fault points: named steps of the commit, restore, bootstrap and rebalance paths where a test
//! crashes the process on purpose, to prove that a crash at that step loses nothing
//! (`tests/it/crash.rs`, `docs/RELIABILITY.md`).
//!
//! `HAPPYSTREAMS_FAULT=<point>` aborts the process (SIGABRT: no destructor runs, nothing is
//! flushed, no group is left) the first time it reaches `<point>`; `<point>@<n>` the n-th time.
//! `HAPPYSTREAMS_FAULT_PAUSE=<point>:<ms>` sleeps that long at every pass instead: a slow step
//! whose intermediate state a test can watch (a restore applying its commits one by one).
//! Fault points exist in debug builds only — the test suite's. In a release build [`point`] is
//! empty and the variable is not read.

/// Every fault point: its name and the step it stands after.
pub const POINTS: &[(&str, &str)] = &[
    ("commit.caches_sent", "every task's record cache was handed to the producer"),
    ("commit.outputs_acked", "every output of the processed input is acknowledged"),
    ("commit.changelog_written", "every task's changelog writes are acknowledged, no marker sent yet"),
    ("commit.markers_acked", "every commit marker is acknowledged (at least once), no local state written"),
    ("commit.eos.offsets_sent", "the input offsets joined the transaction, which is not committed yet"),
    ("commit.eos.transaction_committed", "the transaction committed, no local state written"),
    ("commit.state_written", "one task's state and checkpoint were written to RocksDB, maybe not the others'"),
    ("commit.offsets_committed", "the group offsets were committed (at least once)"),
    ("restore.chunk_written", "a restore wrote writes past its memory limit to the store, before their marker"),
    ("restore.marker_applied", "a restore applied a commit marker's writes and checkpoint"),
    ("restore.done", "a task's changelog restore finished, its tables not read to their end yet"),
    ("bootstrap.chunk_committed", "a table's first load committed a chunk"),
    ("bootstrap.tables_loaded", "a task's tables were read to their end, the task not running yet"),
    ("rebalance.assigned", "the group assigned partitions, their tasks not opened yet"),
    ("rebalance.revoking", "the group revokes partitions, their tasks not committed yet"),
    ("rebalance.revoked", "revoked tasks were committed and closed"),
];

/// Aborts the process here when `HAPPYSTREAMS_FAULT` names `name` (debug builds only).
#[inline(always)]
pub fn point(name: &'static str) {
    #[cfg(debug_assertions)]
    armed::reach(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Armed {
        point: String,
        at: u64,
        seen: AtomicU64,
    }

    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    static PAUSE: OnceLock<Option<(String, u64)>> = OnceLock::new();

    pub fn reach(name: &'static str) {
        debug_assert!(super::POINTS.iter().any(|(p, _)| *p == name), "fault point {name} is not in POINTS");
        let pause = PAUSE.get_or_init(|| {
            let spec = std::env::var("HAPPYSTREAMS_FAULT_PAUSE").ok()?;
            let (point, ms) = spec.split_once(':')?;
            Some((point.to_owned(), ms.parse().ok()?))
        });
        if let Some((point, ms)) = pause
            && point == name
        {
            std::thread::sleep(std::time::Duration::from_millis(*ms));
        }
        let Some(armed) = ARMED.get_or_init(from_env) else { return };
        if armed.point == name && armed.seen.fetch_add(1, Ordering::SeqCst) + 1 == armed.at {
            eprintln!("fault point {name} reached (time {}): aborting", armed.at);
            std::process::abort();
        }
    }

    /// The point `HAPPYSTREAMS_FAULT` names. A name that is no point is a test's mistake, which
    /// must not pass as "never reached": it aborts at once.
    fn from_env() -> Option<Armed> {
        let spec = std::env::var("HAPPYSTREAMS_FAULT").ok().filter(|s| !s.is_empty())?;
        let (point, at) = match spec.split_once('@') {
            Some((point, at)) => (point, at.parse::<u64>().ok().filter(|&n| n > 0)),
            None => (spec.as_str(), Some(1)),
        };
        let known = super::POINTS.iter().any(|(p, _)| *p == point);
        let Some(at) = at.filter(|_| known) else {
            let names: Vec<&str> = super::POINTS.iter().map(|(p, _)| *p).collect();
            eprintln!("HAPPYSTREAMS_FAULT={spec}: expected <point>[@<n>] with n >= 1, a point one of {names:?}");
            std::process::abort();
        };
        Some(Armed { point: point.to_owned(), at, seen: AtomicU64::new(0) })
    }
}
