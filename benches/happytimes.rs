//! End-to-end harness for `topologies/happytimes.yaml` on a real broker (Tansu, started here):
//! generated HappyTimes traffic produced up front, then one and then two `happystreams run`
//! instances consuming all of it, measured against a ceiling in the same run: a raw librdkafka
//! consume→produce pipe over the same input topics. Prints a table: input records per second
//! from the first record read to the last visitor-activity fact written, the ratio to the pipe,
//! instance CPU seconds per million input records and peak RSS.
//!
//! `cargo bench --bench happytimes` (release). Size: `HAPPYSTREAMS_BENCH_VISITORS` (default
//! 20000 visitors over 21 days).

use happystreams::generate::{Body, Options, SOURCES, generate, topic_of};
use rdkafka::producer::{BaseRecord, Producer};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{
    Instance, Registry, bulk_producer, cpu_seconds, create_topics, peak_rss_mb, raw_pipe, start_tansu, stop_tansu,
};

const TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/topologies/happytimes.yaml");

fn main() {
    common::raw_pipe_child();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let visitors = std::env::var("HAPPYSTREAMS_BENCH_VISITORS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let records = generate(&Options { visitors, days: 21, mentions_per_day: 200, ..Options::default() });
    // The activity facts to expect: every click, and the access-log lines that are activity.
    let plan = happystreams::topology::load(Path::new(TOPOLOGY)).unwrap();
    let parser = plan.source("weblogs").and_then(|s| s.access_log.clone()).unwrap();
    let activity = records
        .iter()
        .filter(|r| match (&r.body, r.source) {
            (_, "clicks") => true,
            (Body::Line(line), "weblogs") => parser.parse(line.as_bytes()).is_ok_and(|row| {
                let text = |f: &str| row.get(f).map(|v| v.to_json().to_string()).unwrap_or_default();
                row.get("visitor_id").is_some_and(|v| !v.is_null())
                    && row.get("status").and_then(|v| v.as_i64()).is_some_and(|s| s < 400)
                    && !["\"other\"", "\"asset\""].contains(&text("event_type").as_str())
            }),
            _ => false,
        })
        .count();

    let dir = tempfile::tempdir().unwrap();
    let bootstrap = start_tansu(&dir.path().join("tansu"));
    // The facts and funnel topics are Avro: their schemas are registered at start-up.
    let registry = Registry::start();
    let topics: Vec<String> = SOURCES.iter().map(|s| topic_of(s).to_owned()).collect();
    create_topics(&bootstrap, &topics, 4);
    let producer = bulk_producer(&bootstrap);
    let started = Instant::now();
    for record in &records {
        let key = record.key.to_string();
        let value = record.body.bytes();
        let mut message = BaseRecord::to(record.topic).key(&key).timestamp(record.timestamp);
        if let Some(v) = value.as_deref() {
            message = message.payload(v);
        }
        while let Err((e, m)) = producer.send(message) {
            assert!(matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
            message = m;
            producer.poll(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let produced = started.elapsed().as_secs_f64();

    let mut rows = vec![format!(
        "| produce (input, for scale) | {} records | {produced:.1} s | {:.0} records/s | | | |",
        records.len(),
        records.len() as f64 / produced
    )];
    create_topics(&bootstrap, &["pipe.out".to_owned()], 4);
    let (pipe_seconds, pipe_cpu, pipe_rss) = raw_pipe(&bootstrap, &topics.join(","), "pipe.out", records.len());
    let pipe_rate = records.len() as f64 / pipe_seconds;
    let millions = records.len() as f64 / 1e6;
    rows.push(format!(
        "| raw librdkafka pipe (ceiling) | {} records | {pipe_seconds:.1} s | {pipe_rate:.0} records/s | 1.00 | {:.1} | {pipe_rss:.0} |",
        records.len(),
        pipe_cpu / millions
    ));
    for (count, threads) in [(1usize, 1usize), (1, 2), (2, 2)] {
        let app = format!("bench{count}x{threads}");
        let threads = threads.to_string();
        let mut instances: Vec<Instance> = (0..count)
            .map(|i| {
                Instance::start_with(
                    &bootstrap,
                    Some(&registry.url),
                    Path::new(TOPOLOGY),
                    &app,
                    &dir.path().join(format!("{app}-{i}")),
                    dir.path().join(format!("{app}-{i}.log")),
                    &["--num-threads", &threads],
                )
            })
            .collect();
        let mut first: Option<Instant> = None;
        let deadline = Instant::now() + Duration::from_secs(1800);
        let seconds = loop {
            let read: f64 = instances.iter().map(|i| i.metric("records_in_total", "")).sum();
            if first.is_none() && read > 0.0 {
                first = Some(Instant::now());
            }
            let facts: f64 =
                instances.iter().map(|i| i.metric("records_out_total", "happytimes.facts.visitor_activity")).sum();
            if facts >= activity as f64 {
                break first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            }
            assert!(Instant::now() < deadline, "no completion after 1800 s ({facts} of {activity} facts)");
            for instance in &mut instances {
                if let Ok(Some(status)) = instance.child.try_wait() {
                    let log = std::fs::read_to_string(&instance.log).unwrap_or_default();
                    panic!("an instance exited ({status}) before the end:\n{log}");
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let cpu: f64 = instances.iter().map(|i| cpu_seconds(i.child.id())).sum();
        let rss = instances.iter().map(|i| peak_rss_mb(i.child.id())).fold(0.0, f64::max);
        let rate = records.len() as f64 / seconds;
        rows.push(format!(
            "| happytimes.yaml, {count} instance(s) × {threads} thread(s) | {} records ({activity} activity events) | {seconds:.1} s | {rate:.0} records/s | {:.2} | {:.1} | {rss:.0} |",
            records.len(),
            rate / pipe_rate,
            cpu / millions
        ));
        drop(instances);
    }
    stop_tansu(&dir.path().join("tansu"));
    common::print_table(
        &["what", "input", "time", "rate", "ratio to the pipe", "CPU s per M records", "peak RSS MiB"],
        &rows,
    );
}
