//! End-to-end harness for `happystreams run` on a real broker (Tansu, started here): end-to-end
//! throughput of `tests/fixtures/topologies/views_by_source.yaml` (a table, a join, a
//! repartition and a windowed aggregate) with one and two instances, and the restore rate of a
//! fresh instance rebuilding its state from the changelogs. Prints a table.
//!
//! `cargo bench --bench runtime` (release). Sizes: `HAPPYSTREAMS_BENCH_CLICKS` (default 300000),
//! `HAPPYSTREAMS_BENCH_VISITORS` (default 100000).

use rdkafka::producer::{BaseRecord, Producer};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Instance, bulk_producer, create_topics, root, start_tansu};

const PARTITIONS: i32 = 4;
const START: i64 = 1_750_000_000_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn produce(bootstrap: &str, prefix: &str, visitors: usize, clicks: usize) -> Duration {
    let producer = bulk_producer(bootstrap);
    let started = Instant::now();
    let sources = ["email", "social", "search", "direct"];
    let send = |topic: &str, key: &str, value: &str, ts: i64| {
        let mut record = BaseRecord::to(topic).key(key).payload(value).timestamp(ts);
        loop {
            match producer.send(record) {
                Ok(()) => return,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    };
    let visitors_topic = format!("{prefix}.visitors");
    for v in 1..=visitors {
        let value = format!(
            r#"{{"before":null,"after":{{"visitor_id":{v},"source":"{}"}},"source":{{"ts_ms":{START}}},"op":"r","ts_ms":{START}}}"#,
            sources[v % 4]
        );
        send(&visitors_topic, &format!(r#"{{"visitor_id":{v}}}"#), &value, START);
    }
    let clicks_topic = format!("{prefix}.clicks");
    for i in 0..clicks {
        let v = 1 + i % visitors;
        let t = START + i as i64 * 10;
        send(
            &clicks_topic,
            &format!(r#"{{"visitor_id":{v}}}"#),
            &format!(r#"{{"event_id":"e{i}","visitor_id":{v},"event_time":{t}}}"#),
            t,
        );
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    started.elapsed()
}

/// Runs `count` instances until every click reached the facts topic; returns seconds from the
/// first record read to the last fact written.
fn run(bootstrap: &str, topology: &Path, app: &str, dir: &Path, count: usize, clicks: usize) -> (f64, Vec<Instance>) {
    let instances: Vec<Instance> = (0..count)
        .map(|i| {
            Instance::start(
                bootstrap,
                None,
                topology,
                app,
                &dir.join(format!("{app}-{i}")),
                dir.join(format!("{app}-{i}.log")),
            )
        })
        .collect();
    let facts = format!("topic=\"{}.facts\"", app.split('_').next().unwrap_or(app));
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let read: f64 = instances.iter().map(|i| i.metric("records_in_total", "")).sum();
        if first.is_none() && read > 0.0 {
            first = Some(Instant::now());
        }
        let out: f64 = instances.iter().map(|i| i.metric("records_out_total", &facts)).sum();
        if out >= clicks as f64 {
            return (first.map_or(0.0, |f| f.elapsed().as_secs_f64()), instances);
        }
        assert!(Instant::now() < deadline, "no completion after 900 s ({out} of {clicks} facts)");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clicks = env_usize("HAPPYSTREAMS_BENCH_CLICKS", 300_000);
    let visitors = env_usize("HAPPYSTREAMS_BENCH_VISITORS", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = start_tansu(&dir.path().join("tansu"));
    let mut rows = Vec::new();
    for count in [1usize, 2] {
        let prefix = format!("bench{count}");
        create_topics(&bootstrap, &[format!("{prefix}.clicks"), format!("{prefix}.visitors")], PARTITIONS);
        let produced = produce(&bootstrap, &prefix, visitors, clicks);
        let yaml = std::fs::read_to_string(root().join("tests/fixtures/topologies/views_by_source.yaml"))
            .unwrap()
            .replace("rt.", &format!("{prefix}."));
        let topology = dir.path().join(format!("{prefix}.yaml"));
        std::fs::write(&topology, yaml).unwrap();
        let (seconds, instances) = run(&bootstrap, &topology, &prefix, dir.path(), count, clicks);
        rows.push(format!(
            "| end to end, {count} instance(s) | {} clicks + {visitors} visitors | {seconds:.1} s | {:.0} clicks/s |",
            clicks,
            clicks as f64 / seconds
        ));
        if count == 1 {
            rows.push(format!(
                "| produce (input, for scale) | {} records | {:.1} s | {:.0} records/s |",
                clicks + visitors,
                produced.as_secs_f64(),
                (clicks + visitors) as f64 / produced.as_secs_f64()
            ));
            drop(instances);
            // A fresh instance rebuilds everything from the changelogs.
            let fresh = Instance::start(
                &bootstrap,
                None,
                &topology,
                &prefix,
                &dir.path().join("fresh"),
                dir.path().join("fresh.log"),
            );
            let deadline = Instant::now() + Duration::from_secs(600);
            let tasks = f64::from(2 * PARTITIONS);
            while fresh.metric("task_running", "") < tasks {
                assert!(Instant::now() < deadline, "restore did not finish");
                std::thread::sleep(Duration::from_millis(100));
            }
            let log = std::fs::read_to_string(&fresh.log).unwrap_or_default();
            let (mut records, mut slowest) = (0u64, 0u64);
            for line in log.lines().filter(|l| l.contains(" restored ")) {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(&format!("{name}=")))
                        .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse::<u64>().ok())
                        .unwrap_or(0)
                };
                records += field("records");
                slowest = slowest.max(field("elapsed_ms"));
            }
            rows.push(format!(
                "| restore from changelogs ({} tasks in parallel) | {records} records | {:.2} s | {:.0} records/s |",
                tasks,
                slowest as f64 / 1000.0,
                records as f64 / (slowest.max(1) as f64 / 1000.0)
            ));
        }
    }
    let _ =
        Command::new("bash").arg(root().join("tests/rig/tansu.sh")).arg("stop").arg(dir.path().join("tansu")).status();
    println!("\n| what | input | time | rate |\n|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
