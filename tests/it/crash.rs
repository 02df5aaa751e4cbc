//! A crash at every step: for each fault point of the runtime (`runtime::fault::POINTS`) and
//! each processing guarantee, an instance is aborted at that point (SIGABRT), restarted, and
//! the input finished; then the outputs must equal the oracle: every fact there, every count
//! exact — except, under at least once, the count behind the repartition topic, which may only
//! run over (it reads the repartition records a crashed upstream task sends again). Facts may
//! repeat only under at least once. Repeats and double counts are printed.
//!
//! Each case runs the `views_by_source` topology (a table, a stream-table join, a repartition, a
//! windowed aggregate behind it) plus, at least once, views per visitor counted straight from the
//! joined clicks; some cases load tables and restore in chunks of 4 keys:
//!
//! 1. visitors and clicks 0..1000; instance A starts on a fresh state directory;
//! 2. once A committed state: the visitors again and clicks 1000..2000, and instance B starts on
//!    a fresh state directory, so it restores its tasks from the changelogs;
//! 3. the armed instance — B for the `restore.*` points, A for the others — must abort at the
//!    point; clicks 2000..3000 follow and it restarts on its state directory, unarmed;
//! 4. the outputs must reach the oracle of the 3,000 clicks.
//!
//! At least once runs on Tansu, B joining the group while A runs (so A revokes tasks: the
//! `rebalance.revok*` points). Exactly once runs on noida-db, which serves one member per group
//! and never expires a crashed one: there the instances share one static member id
//! (`group.instance.id`), B starts after A stopped (gracefully, or by the fault), and the
//! revocation points are not reached.

use crate::rig;
use crate::runtime::{
    Instance, Setup, latest_counts, oracle, outputs_at, produce_clicks, produce_visitors, views_per_visitor, wait_until,
};
use happystreams::runtime::fault::POINTS;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;
use std::time::Duration;

const CLICKS: i64 = 3_000;

/// The points a guarantee's scenario reaches, and whether tables load and restores write in
/// chunks of 4 keys there (else whole: a crashed commit's writes stay in memory until the end of
/// the restore, and a larger one makes the restore start over up to the last marker).
const AT_LEAST_ONCE: &[(&str, bool)] = &[
    ("commit.caches_sent", false),
    ("commit.outputs_acked", false),
    ("commit.changelog_written", false),
    ("commit.changelog_written", true),
    ("commit.markers_acked", false),
    ("commit.state_written", false),
    ("commit.offsets_committed", false),
    ("restore.chunk_written", true),
    ("restore.marker_applied", false),
    ("restore.done", false),
    ("bootstrap.chunk_committed", true),
    ("bootstrap.tables_loaded", false),
    ("rebalance.assigned", false),
    ("rebalance.revoking", false),
    ("rebalance.revoked", false),
];
const EXACTLY_ONCE: &[(&str, bool)] = &[
    ("commit.caches_sent", false),
    ("commit.outputs_acked", false),
    ("commit.changelog_written", false),
    ("commit.eos.offsets_sent", false),
    ("commit.eos.transaction_committed", false),
    ("commit.state_written", false),
    ("restore.chunk_written", true),
    ("restore.marker_applied", false),
    ("restore.done", false),
    ("bootstrap.tables_loaded", false),
    ("rebalance.assigned", false),
];

#[derive(Clone, Copy, PartialEq)]
enum Guarantee {
    AtLeastOnce,
    ExactlyOnce,
}

/// What one case saw.
struct Outcome {
    case: String,
    duplicates: usize,
    overcounted: i64,
}

#[test]
fn every_fault_point_is_crashed_at_under_some_guarantee() {
    for (point, _) in POINTS {
        assert!(
            AT_LEAST_ONCE.iter().chain(EXACTLY_ONCE).any(|(p, _)| p == point),
            "fault point {point} is crashed at by no case"
        );
    }
    for (point, _) in AT_LEAST_ONCE.iter().chain(EXACTLY_ONCE) {
        assert!(POINTS.iter().any(|(p, _)| p == point), "{point} is no fault point");
    }
}

#[test]
fn a_crash_at_every_commit_restore_and_rebalance_step_loses_nothing_at_least_once() {
    let outcomes = run_cases(AT_LEAST_ONCE, 4, |point, chunks| {
        runtime().block_on(case(rig::tansu(), Guarantee::AtLeastOnce, point, chunks))
    });
    report("at least once", &outcomes);
}

#[test]
fn a_crash_at_every_commit_restore_and_rebalance_step_loses_nothing_exactly_once() {
    let noida = rig::noida();
    let outcomes = run_cases(EXACTLY_ONCE, 2, |point, chunks| {
        runtime().block_on(case(&noida.bootstrap, Guarantee::ExactlyOnce, point, chunks))
    });
    report("exactly once", &outcomes);
    assert!(outcomes.iter().all(|o| o.duplicates == 0 && o.overcounted == 0), "exactly once repeated something");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Runs `case` for every point (or those `HAPPYSTREAMS_CRASH_POINTS` lists, comma-separated),
/// `parallel` at a time; fails with every failed point's message.
fn run_cases(
    points: &[(&'static str, bool)],
    parallel: usize,
    case: impl Fn(&'static str, bool) -> Outcome + Sync,
) -> Vec<Outcome> {
    let only = std::env::var("HAPPYSTREAMS_CRASH_POINTS").unwrap_or_default();
    let points: Vec<(&'static str, bool)> =
        points.iter().copied().filter(|(p, _)| only.is_empty() || only.split(',').any(|o| o == *p)).collect();
    let queue = Mutex::new(points.clone());
    let outcomes = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                loop {
                    // (Not `while let`: its guard would hold the queue through the whole case.)
                    let next = queue.lock().unwrap().pop();
                    let Some((point, chunks)) = next else { break };
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(point, chunks))) {
                        Ok(outcome) => outcomes.lock().unwrap().push(outcome),
                        Err(panic) => {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_default();
                            failures.lock().unwrap().push(format!("== {}: {message}", label(point, chunks)));
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
    let mut lines: Vec<String> = outcomes
        .iter()
        .map(|o| {
            format!("  {:44} {:>5} duplicate facts, {:>5} views counted twice", o.case, o.duplicates, o.overcounted)
        })
        .collect();
    lines.sort();
    println!("crash at every step, {guarantee}: {} points, lost 0\n{}", outcomes.len(), lines.join("\n"));
}

/// One crash: see the module docs.
async fn case(bootstrap: &str, guarantee: Guarantee, point: &'static str, chunks: bool) -> Outcome {
    let exactly_once = guarantee == Guarantee::ExactlyOnce;
    let case = label(point, chunks);
    let name = format!("crash_{}_{}", if exactly_once { "eos" } else { "alo" }, case.replace(['.', ' ', ','], "_"));
    // noida-db: one partition, one sub-topology (views per visitor), one member (see INFRA.md).
    let setup = Setup::on(bootstrap, &name, "dead_letter", if exactly_once { 1 } else { 2 }).await;
    if exactly_once {
        setup.group_by_key();
    } else {
        count_per_visitor_too(&setup);
    }
    let mut flags = vec!["--num-threads", "1"];
    let mut env = Vec::new();
    if chunks {
        env.push(("HAPPYSTREAMS_RUNTIME__BOOTSTRAP_CHUNK_RECORDS", "4"));
    }
    if exactly_once {
        flags.extend(["--processing-guarantee", "exactly-once"]);
        env.push(("HAPPYSTREAMS_KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY", "range"));
        // One static member: noida-db does not expire a crashed member, but a restarted one
        // with its group.instance.id takes its place.
        env.push(("HAPPYSTREAMS_KAFKA__CONSUMER__PROPERTIES__GROUP_INSTANCE_ID", "crash"));
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
    let (duplicates, overcounted) = await_exact(&setup, exactly_once, &running);
    Outcome { case, duplicates, overcounted }
}

fn label(point: &str, chunks: bool) -> String {
    if chunks { format!("{point}, chunks of 4") } else { point.to_owned() }
}

/// Adds views per minute and visitor, counted in the join's sub-topology straight from the
/// clicks (the views per source are counted behind a repartition topic).
pub(crate) fn count_per_visitor_too(setup: &Setup) {
    let yaml = std::fs::read_to_string(&setup.topology).unwrap();
    let node = "  - name: views_per_visitor\n    from: views\n    aggregate:\n      group_by: { visitor_id: visitor_id }\n      window: { type: tumbling, size: 1m, grace: 1d }\n      emit: on_update\n      measures:\n        views: { count: {} }\n";
    let sink =
        format!("  - {{ from: views_per_visitor, topic: {}, format: json }}\n", setup.topic("views_per_visitor"));
    let yaml = yaml.replace("sinks:\n", &format!("{node}sinks:\n{sink}"));
    std::fs::write(&setup.topology, yaml).unwrap();
}

/// Waits for the instance to abort at `point` (SIGABRT, after naming the point).
fn crashed(instance: &mut Instance, point: &str) {
    let status = instance.exit_within(Duration::from_secs(90), &format!("the instance never reached {point}"));
    let log = instance.log_text();
    assert_eq!(status.signal(), Some(6), "aborted (SIGABRT), not {status}\n{log}");
    assert!(log.contains(&format!("fault point {point} reached")), "aborted at {point}\n{log}");
}

/// Waits until the outputs equal the oracle (under exactly once, as read_committed consumers
/// see them); returns how many facts repeat and how many views the count behind the
/// repartition topic counted twice. Under at least once that count may only run over: a crashed
/// upstream task sends its repartition records again, and its readers apply what they read
/// (`docs/RUNTIME.md`, *Commit protocol*); the count straight from the clicks must be exact.
fn await_exact(setup: &Setup, exactly_once: bool, instances: &[&Instance]) -> (usize, i64) {
    let isolation = if exactly_once { "read_committed" } else { "read_uncommitted" };
    let (want_facts, mut want_counts) = oracle(CLICKS, 0);
    if exactly_once {
        want_counts = views_per_visitor(CLICKS);
    }
    let want_per_visitor = views_per_visitor(CLICKS);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (facts, counts, total) = outputs_at(setup, isolation);
        let per_visitor =
            if exactly_once { BTreeMap::new() } else { latest_counts(setup, "views_per_visitor", isolation) };
        let behind_ok = if exactly_once {
            counts == want_counts
        } else {
            counts.len() == want_counts.len() && want_counts.iter().all(|(k, v)| counts.get(k).is_some_and(|c| c >= v))
        };
        if facts == want_facts && behind_ok && (exactly_once || per_visitor == want_per_visitor) {
            let over: i64 = want_counts.iter().map(|(k, v)| counts[k] - v).sum();
            return (total - facts.len(), over);
        }
        if std::time::Instant::now() > deadline {
            let missing = want_facts.difference(&facts).count();
            let mut wrong: Vec<_> = want_counts.iter().filter(|(k, v)| counts.get(*k) != Some(*v)).take(5).collect();
            let mut got: Vec<_> = wrong.iter().map(|(k, _)| counts.get(*k)).collect();
            if !exactly_once {
                let more = want_per_visitor.iter().filter(|(k, v)| per_visitor.get(*k) != Some(*v)).take(5);
                wrong.extend(more);
                got = wrong.iter().map(|(k, _)| counts.get(*k).or(per_visitor.get(*k))).collect();
            }
            let logs: Vec<String> = instances.iter().map(|i| i.log_text()).collect();
            panic!(
                "outputs differ from the oracle after 120 s: {missing} facts missing; counts (want) {wrong:?}, got {got:?}\nlogs:\n{}",
                logs.join("\n-----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
