//! Large-dimension harness: a Debezium table of `HAPPYSTREAMS_BENCH_ROWS` rows (default
//! 10,000,000) on a real broker (Tansu, started here), loaded by one `happystreams run` instance
//! on its first start (the table's first load, in chunks of `bootstrap_chunk_records`), then
//! rebuilt by a fresh instance from the table's changelog (a restore from scratch). The workload
//! is `tests/fixtures/topologies/views_by_source.yaml` with no clicks: the time is the table.
//!
//! Prints a table: rows, time from the instance's start until every task runs (including ~3 s
//! of joining the group on Tansu), rows/s, instance CPU seconds per million
//! rows and peak RSS (`VmHWM`), at `state_cache_mb = 256`.
//!
//! `cargo bench --bench table` (release).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{Instance, bulk_producer, cpu_seconds, create_topics, peak_rss_mb, root, start_tansu, stop_tansu};

const PARTITIONS: i32 = 4;
const START: i64 = 1_750_000_000_000;

fn produce(bootstrap: &str, rows: usize) -> Duration {
    let producer = bulk_producer(bootstrap);
    let started = Instant::now();
    let sources = ["email", "social", "search", "direct"];
    for v in 1..=rows {
        let key = format!(r#"{{"visitor_id":{v}}}"#);
        let value = format!(
            r#"{{"before":null,"after":{{"visitor_id":{v},"source":"{}","name":"visitor {v}","country":"FR","first_seen":"2024-01-15T08:30:00Z"}},"source":{{"connector":"postgresql","ts_ms":{START},"table":"visitors"}},"op":"r","ts_ms":{START}}}"#,
            sources[v % 4]
        );
        let mut record = BaseRecord::to("big.visitors").key(&key).payload(&value).timestamp(START);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            producer.poll(Duration::from_millis(2));
        }
    }
    producer.flush(Duration::from_secs(600)).unwrap();
    started.elapsed()
}

/// Reads every partition of `topic` to its end, one consumer per partition at once (fetching like
/// the restore: 10 ms waits); returns records and seconds.
fn raw_read(bootstrap: &str, topic: &str) -> (u64, f64) {
    let started = Instant::now();
    let readers: Vec<_> = (0..PARTITIONS)
        .map(|partition| {
            let consumer: BaseConsumer = common::config(bootstrap)
                .set("group.id", "bench-raw-read")
                .set("enable.partition.eof", "true")
                .set("fetch.wait.max.ms", "10")
                .create()
                .unwrap();
            let topic = topic.to_owned();
            std::thread::spawn(move || {
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&topic, partition, Offset::Offset(0)).unwrap();
                consumer.assign(&list).unwrap();
                let mut records = 0u64;
                loop {
                    match consumer.poll(Duration::from_millis(200)) {
                        Some(Ok(_)) => records += 1,
                        Some(Err(KafkaError::PartitionEOF(_))) => return records,
                        Some(Err(e)) => panic!("reading {topic}: {e}"),
                        None => {}
                    }
                }
            })
        })
        .collect();
    let records = readers.into_iter().map(|r| r.join().unwrap()).sum();
    (records, started.elapsed().as_secs_f64())
}

/// Starts an instance and waits until every task runs (its table loaded or restored).
fn until_running(bootstrap: &str, topology: &Path, dir: &Path, name: &str) -> (f64, f64, f64, Instance) {
    let instance = Instance::start_with_env(
        bootstrap,
        None,
        topology,
        "big",
        &dir.join(name),
        dir.join(format!("{name}.log")),
        &["--num-threads", "1"],
        &[("HAPPYSTREAMS_RUNTIME__STATE_CACHE_MB", "256")],
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(3600);
    let tasks = f64::from(2 * PARTITIONS);
    while instance.metric("task_running", "") < tasks {
        assert!(Instant::now() < deadline, "not running after an hour; log: {}", instance.log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    let seconds = started.elapsed().as_secs_f64();
    (seconds, cpu_seconds(instance.child.id()), peak_rss_mb(instance.child.id()), instance)
}

fn main() {
    common::raw_pipe_child();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows: usize = std::env::var("HAPPYSTREAMS_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = start_tansu(&dir.path().join("tansu"));
    create_topics(&bootstrap, &["big.clicks".to_owned(), "big.visitors".to_owned()], PARTITIONS);
    let produced = produce(&bootstrap, rows);
    let yaml = std::fs::read_to_string(root().join("tests/fixtures/topologies/views_by_source.yaml"))
        .unwrap()
        .replace("rt.", "big.");
    let topology = dir.path().join("big.yaml");
    std::fs::write(&topology, yaml).unwrap();
    let millions = rows as f64 / 1e6;
    let mut lines = vec![format!(
        "| produce the table (for scale) | {rows} rows | {:.1} s | {:.0} rows/s | | |",
        produced.as_secs_f64(),
        rows as f64 / produced.as_secs_f64()
    )];

    let (seconds, cpu, rss, first) = until_running(&bootstrap, &topology, dir.path(), "first");
    let loaded = first.metric("records_in_total", "big.visitors");
    assert_eq!(loaded as usize, rows, "every row read by the first load");
    let chunks = first.metric("bootstrap_chunks_total", "") as u64;
    lines.push(format!(
        "| first load ({chunks} chunks) | {rows} rows | {seconds:.1} s | {:.0} rows/s | {:.1} | {rss:.0} |",
        rows as f64 / seconds,
        cpu / millions
    ));
    // A graceful stop commits the loaded table to its changelog.
    let _ = std::process::Command::new("kill").args(["-TERM", &first.child.id().to_string()]).status();
    let mut first = first;
    assert!(first.child.wait().unwrap().success(), "the first instance stopped cleanly");

    let (seconds, cpu, rss, fresh) = until_running(&bootstrap, &topology, dir.path(), "fresh");
    let restored = fresh.metric("restore_records_total", "") as u64;
    lines.push(format!(
        "| restore from scratch (changelog) | {restored} records | {seconds:.1} s | {:.0} records/s | {:.1} | {rss:.0} |",
        restored as f64 / seconds,
        cpu / millions
    ));
    // The restore alone (the slowest task's, as the tasks restore in parallel), against the
    // ceiling: the same partitions read by as many raw librdkafka consumers at once.
    let log = std::fs::read_to_string(&fresh.log).unwrap_or_default();
    let slowest_ms = log
        .lines()
        .filter(|l| l.contains(" restored "))
        .filter_map(|l| l.split("elapsed_ms=").nth(1)?.split_whitespace().next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    let (raw_records, raw_seconds) = raw_read(&bootstrap, "big-visitors-table-changelog");
    let restore_rate = restored as f64 / (slowest_ms / 1000.0);
    let raw_rate = raw_records as f64 / raw_seconds;
    lines.push(format!(
        "| restore itself (slowest task) | {restored} records | {:.1} s | {restore_rate:.0} records/s ({:.2} of the raw read) | | |",
        slowest_ms / 1000.0,
        restore_rate / raw_rate
    ));
    lines.push(format!(
        "| raw librdkafka read of the changelog ({PARTITIONS} consumers at once; ceiling) | {raw_records} records | {raw_seconds:.1} s | {raw_rate:.0} records/s | | |"
    ));
    drop(fresh);
    stop_tansu(&dir.path().join("tansu"));
    common::print_table(&["what", "input", "time to running", "rate", "CPU s per M rows", "peak RSS MiB"], &lines);
}
