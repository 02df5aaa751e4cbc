//! A crash at every step: for each fault point of the runtime (`runtime::fault::POINTS`) and
//! each processing guarantee, an instance is aborted at that point (SIGABRT), restarted, and
//! the input finished; then the outputs must equal the oracle — the aggregate's compacted view
//! exact (every click counted once in the state), every fact there — and facts may repeat only
//! under at least once (the repeats are counted and printed).
//!
//! Each case runs the `views_by_source` topology (a table, a stream-table join, a repartition, a
//! windowed aggregate) with tables loaded and restores written in chunks of 4 keys:
//!
//! 1. visitors and clicks 0..1000; instance A starts on a fresh state directory;
//! 2. once A committed state: the visitors again and clicks 1000..2000, and instance B starts on
//!    a fresh state directory, so it restores its tasks from the changelogs;
//! 3. the armed instance — B for the `restore.*` points, A for the others — must abort at the
//!    point; clicks 2000..3000 follow and it restarts on its state directory, unarmed;
//! 4. the outputs must reach the oracle of the 3,000 clicks.
//!
//! At least once runs on Tansu, B joining the group while A runs (so A revokes tasks: the
//! `rebalance.revok*` points). Exactly once runs on noida-db, which serves one member per group:
//! there B starts after A stopped (gracefully, or by the fault), and the revocation points
//! are not reached.

use crate::rig;
use crate::runtime::{
    Instance, Setup, oracle, outputs_at, produce_clicks, produce_visitors, views_per_visitor, wait_until,
};
use happystreams::runtime::fault::POINTS;
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;
use std::time::Duration;

const CLICKS: i64 = 3_000;

/// The points a guarantee's scenario reaches.
const AT_LEAST_ONCE: &[&str] = &[
    "commit.caches_sent",
    "commit.outputs_acked",
    "commit.changelog_written",
    "commit.markers_acked",
    "commit.state_written",
    "commit.offsets_committed",
    "restore.chunk_written",
    "restore.marker_applied",
    "restore.done",
    "bootstrap.chunk_committed",
    "bootstrap.tables_loaded",
    "rebalance.assigned",
    "rebalance.revoking",
    "rebalance.revoked",
];
const EXACTLY_ONCE: &[&str] = &[
    "commit.caches_sent",
    "commit.outputs_acked",
    "commit.changelog_written",
    "commit.eos.offsets_sent",
    "commit.eos.transaction_committed",
    "commit.state_written",
    "restore.chunk_written",
    "restore.marker_applied",
    "restore.done",
    "bootstrap.tables_loaded",
    "rebalance.assigned",
];

#[derive(Clone, Copy, PartialEq)]
enum Guarantee {
    AtLeastOnce,
    ExactlyOnce,
}

/// What one case saw.
struct Outcome {
    point: &'static str,
    duplicates: usize,
}

#[test]
fn every_fault_point_is_crashed_at_under_some_guarantee() {
    for (point, _) in POINTS {
        assert!(
            AT_LEAST_ONCE.contains(point) || EXACTLY_ONCE.contains(point),
            "fault point {point} is crashed at by no case"
        );
    }
    for point in AT_LEAST_ONCE.iter().chain(EXACTLY_ONCE) {
        assert!(POINTS.iter().any(|(p, _)| p == point), "{point} is no fault point");
    }
}

#[test]
fn a_crash_at_every_commit_restore_and_rebalance_step_loses_nothing_at_least_once() {
    let outcomes =
        run_cases(AT_LEAST_ONCE, 4, |point| runtime().block_on(case(rig::tansu(), Guarantee::AtLeastOnce, point)));
    report("at least once", &outcomes);
}

#[test]
fn a_crash_at_every_commit_restore_and_rebalance_step_loses_nothing_exactly_once() {
    let noida = rig::noida();
    let outcomes =
        run_cases(EXACTLY_ONCE, 2, |point| runtime().block_on(case(&noida.bootstrap, Guarantee::ExactlyOnce, point)));
    report("exactly once", &outcomes);
    assert!(outcomes.iter().all(|o| o.duplicates == 0), "exactly once repeated facts");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Runs `case` for every point (or those `HAPPYSTREAMS_CRASH_POINTS` lists, comma-separated),
/// `parallel` at a time; fails with every failed point's message.
fn run_cases(points: &[&'static str], parallel: usize, case: impl Fn(&'static str) -> Outcome + Sync) -> Vec<Outcome> {
    let only = std::env::var("HAPPYSTREAMS_CRASH_POINTS").unwrap_or_default();
    let points: Vec<&'static str> =
        points.iter().copied().filter(|p| only.is_empty() || only.split(',').any(|o| o == *p)).collect();
    let queue = Mutex::new(points.clone());
    let outcomes = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                while let Some(point) = queue.lock().unwrap().pop() {
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(point))) {
                        Ok(outcome) => outcomes.lock().unwrap().push(outcome),
                        Err(panic) => {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_default();
                            failures.lock().unwrap().push(format!("== {point}: {message}"));
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), points.len(), failures.join("\n\n"));
    outcomes.into_inner().unwrap()
}

fn report(guarantee: &str, outcomes: &[Outcome]) {
    let mut lines: Vec<String> =
        outcomes.iter().map(|o| format!("  {:34} {:>5} duplicate facts", o.point, o.duplicates)).collect();
    lines.sort();
    println!("crash at every step, {guarantee}: {} points, lost 0\n{}", outcomes.len(), lines.join("\n"));
}

/// One crash: see the module docs.
async fn case(bootstrap: &str, guarantee: Guarantee, point: &'static str) -> Outcome {
    let exactly_once = guarantee == Guarantee::ExactlyOnce;
    let name = format!("crash_{}_{}", if exactly_once { "eos" } else { "alo" }, point.replace('.', "_"));
    // noida-db: one partition, one sub-topology (views per visitor), one member (see INFRA.md).
    let setup = Setup::on(bootstrap, &name, "dead_letter", if exactly_once { 1 } else { 2 }).await;
    if exactly_once {
        setup.group_by_key();
    }
    let mut flags = vec!["--num-threads", "1"];
    let mut env = vec![("HAPPYSTREAMS_RUNTIME__BOOTSTRAP_CHUNK_RECORDS", "4")];
    if exactly_once {
        flags.extend(["--processing-guarantee", "exactly-once"]);
        env.push(("HAPPYSTREAMS_KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY", "range"));
    }
    // Commit points crash at their second time, with committed state behind them.
    let fault = if point.starts_with("commit.") { format!("{point}@2") } else { point.to_owned() };
    let armed_env = |armed: bool| {
        let mut env = env.clone();
        if armed {
            env.push(("HAPPYSTREAMS_FAULT", fault.as_str()));
        }
        env
    };
    let b_armed = point.starts_with("restore.");

    produce_visitors(&setup, 0).await;
    produce_clicks(&setup, 0..1_000).await;
    let mut a = setup.start_with("a", &flags, &armed_env(!b_armed));
    wait_until("A to commit state or crash", Duration::from_secs(90), || {
        a.child.try_wait().unwrap().is_some() || a.metric("task_state_commits_total") > 0.0
    });
    if exactly_once {
        // One member at a time: A crashes, or stops before B starts.
        if b_armed {
            assert!(a.terminate().success(), "A stops gracefully\n{}", a.log_text());
        } else {
            crashed(&mut a, point);
        }
    }
    produce_visitors(&setup, 0).await;
    produce_clicks(&setup, 1_000..2_000).await;
    let mut b = (!exactly_once || b_armed).then(|| setup.start_with("b", &flags, &armed_env(b_armed)));
    if let (true, Some(b)) = (b_armed, &mut b) {
        crashed(b, point);
    } else if !exactly_once {
        crashed(&mut a, point);
    }
    produce_clicks(&setup, 2_000..CLICKS).await;
    let restarted = if b_armed { "b" } else { "a" };
    let restarted = setup.start_with(restarted, &flags, &env);
    let running: Vec<&Instance> = if exactly_once {
        vec![&restarted]
    } else if b_armed {
        vec![&a, &restarted]
    } else {
        vec![b.as_ref().unwrap(), &restarted]
    };
    let duplicates = await_exact(&setup, exactly_once, &running);
    Outcome { point, duplicates }
}

/// Waits for the instance to abort at `point` (SIGABRT, after naming the point).
fn crashed(instance: &mut Instance, point: &str) {
    let status = instance.exit_within(Duration::from_secs(90), &format!("the instance never reached {point}"));
    let log = instance.log_text();
    assert_eq!(status.signal(), Some(6), "aborted (SIGABRT), not {status}\n{log}");
    assert!(log.contains(&format!("fault point {point} reached")), "aborted at {point}\n{log}");
}

/// Waits until the outputs equal the oracle (under exactly once, as read_committed consumers
/// see them); returns how many facts repeat.
fn await_exact(setup: &Setup, exactly_once: bool, instances: &[&Instance]) -> usize {
    let isolation = if exactly_once { "read_committed" } else { "read_uncommitted" };
    let (want_facts, mut want_counts) = oracle(CLICKS, 0);
    if exactly_once {
        want_counts = views_per_visitor(CLICKS);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (facts, counts, total) = outputs_at(setup, isolation);
        if facts == want_facts && counts == want_counts {
            return total - facts.len();
        }
        if std::time::Instant::now() > deadline {
            let missing = want_facts.difference(&facts).count();
            let wrong: Vec<_> = want_counts.iter().filter(|(k, v)| counts.get(*k) != Some(*v)).take(5).collect();
            let got: Vec<_> = wrong.iter().map(|(k, _)| counts.get(*k)).collect();
            let logs: Vec<String> = instances.iter().map(|i| i.log_text()).collect();
            panic!(
                "outputs differ from the oracle after 120 s: {missing} facts missing; counts (want) {wrong:?}, got {got:?}\nlogs:\n{}",
                logs.join("\n-----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
