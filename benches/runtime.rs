//! End-to-end harness for `happystreams run` on a real broker (Tansu, started here), measured
//! against a ceiling in the same run: a raw librdkafka consume→produce pipe over the same clicks.
//! The workload is `tests/fixtures/topologies/views_by_source.yaml` (a Debezium table, a
//! stream-table join, a repartition and a windowed aggregate). Every configuration (1 and 2
//! instances, 1 and 2 processing threads each) reads the same input topics under its own
//! application id. Then a fresh instance restores the first run's state from its changelogs.
//!
//! Prints a table: clicks/s from the first record read to the last fact written, the ratio to
//! the raw pipe, instance CPU seconds per million clicks, peak RSS per instance; then where the
//! instances' time went (polling, processing, committing, from their own metrics). Instances
//! fetch with the harness's settings for Tansu (`common::fetch_wait_ms`,
//! `common::PARTITION_FETCH_BYTES`); one row uses librdkafka's defaults.
//!
//! `cargo bench --bench runtime` (release). Sizes: `HAPPYSTREAMS_BENCH_CLICKS` (default 1000000),
//! `HAPPYSTREAMS_BENCH_VISITORS` (default 100000); `HAPPYSTREAMS_BENCH_CONFIGS` picks rows. Writes
//! the throughput per configuration as an SVG plot (`common::plot`).

use rdkafka::producer::{BaseRecord, Producer};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Instance, bulk_producer, cpu_seconds, create_topics, peak_rss_mb, raw_pipe, root, start_tansu};

const PARTITIONS: i32 = 4;
const START: i64 = 1_750_000_000_000;
const INPUT: &str = "bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn produce(bootstrap: &str, visitors: usize, clicks: usize) -> Duration {
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
    let visitors_topic = format!("{INPUT}.visitors");
    for v in 1..=visitors {
        let value = format!(
            r#"{{"before":null,"after":{{"visitor_id":{v},"source":"{}"}},"source":{{"ts_ms":{START}}},"op":"r","ts_ms":{START}}}"#,
            sources[v % 4]
        );
        send(&visitors_topic, &format!(r#"{{"visitor_id":{v}}}"#), &value, START);
    }
    let clicks_topic = format!("{INPUT}.clicks");
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
    producer.flush(Duration::from_secs(300)).unwrap();
    started.elapsed()
}

/// The topology reading the shared input and writing `app`'s own output topics.
fn topology(dir: &Path, app: &str) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string(root().join("tests/fixtures/topologies/views_by_source.yaml"))
        .unwrap()
        .replace("rt.clicks", &format!("{INPUT}.clicks"))
        .replace("rt.visitors", &format!("{INPUT}.visitors"))
        .replace("rt.", &format!("{app}."));
    let path = dir.join(format!("{app}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// One configuration: `HAPPYSTREAMS_BENCH_CONFIGS=1x1,2x2,1x1@default` runs those (instances x
/// threads; `@default`: librdkafka's fetch settings instead of the harness's, see `common`).
struct Config {
    instances: usize,
    threads: usize,
    librdkafka_defaults: bool,
}

impl Config {
    fn parse(text: &str) -> Option<Config> {
        let (shape, librdkafka_defaults) = match text.trim().split_once('@') {
            Some((shape, "default")) => (shape, true),
            Some(_) => return None,
            None => (text.trim(), false),
        };
        let (instances, threads) = shape.split_once('x')?;
        Some(Config { instances: instances.parse().ok()?, threads: threads.parse().ok()?, librdkafka_defaults })
    }
}

struct Run {
    seconds: f64,
    cpu: f64,
    rss: f64,
    /// Seconds the instances' worker threads spent polling, processing (every processing
    /// thread's busy time) and committing, summed over the instances.
    poll: f64,
    busy: f64,
    commit: f64,
    commits: f64,
    instances: Vec<Instance>,
}

/// Runs `config.instances` instances with `config.threads` processing threads each until every click reached the
/// facts topic.
fn run(bootstrap: &str, dir: &Path, app: &str, config: &Config, clicks: usize) -> Run {
    let topology = topology(dir, app);
    let threads = config.threads.to_string();
    let env: &[(&str, &str)] = if config.librdkafka_defaults {
        &[
            ("HAPPYSTREAMS_KAFKA__PROPERTIES__FETCH_WAIT_MAX_MS", "500"),
            ("HAPPYSTREAMS_KAFKA__PROPERTIES__MAX_PARTITION_FETCH_BYTES", "1048576"),
        ]
    } else {
        &[]
    };
    let instances: Vec<Instance> = (0..config.instances)
        .map(|i| {
            Instance::start_with_env(
                bootstrap,
                None,
                &topology,
                app,
                &dir.join(format!("{app}-{i}")),
                dir.join(format!("{app}-{i}.log")),
                &["--num-threads", &threads],
                env,
            )
        })
        .collect();
    let facts = format!("topic=\"{app}.facts\"");
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if first.is_none() && instances.iter().map(|i| i.metric("records_in_total", "")).sum::<f64>() > 0.0 {
            first = Some(Instant::now());
        }
        let out: f64 = instances.iter().map(|i| i.metric("records_out_total", &facts)).sum();
        if out >= clicks as f64 {
            let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            let cpu = instances.iter().map(|i| cpu_seconds(i.child.id())).sum();
            let rss = instances.iter().map(|i| peak_rss_mb(i.child.id())).fold(0.0, f64::max);
            let sum = |name: &str| instances.iter().map(|i| i.metric(name, "")).sum::<f64>();
            return Run {
                seconds,
                cpu,
                rss,
                poll: sum("poll_seconds_sum"),
                busy: sum("thread_busy_seconds_sum"),
                commit: sum("commit_seconds_sum"),
                commits: sum("commit_seconds_count"),
                instances,
            };
        }
        assert!(Instant::now() < deadline, "no completion after 1800 s ({out} of {clicks} facts)");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    common::raw_pipe_child();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clicks = env_usize("HAPPYSTREAMS_BENCH_CLICKS", 1_000_000);
    let visitors = env_usize("HAPPYSTREAMS_BENCH_VISITORS", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = start_tansu(&dir.path().join("tansu"));
    create_topics(&bootstrap, &[format!("{INPUT}.clicks"), format!("{INPUT}.visitors")], PARTITIONS);
    create_topics(&bootstrap, &["pipe.out".to_owned()], PARTITIONS);
    let produced = produce(&bootstrap, visitors, clicks);
    let mut rows = vec![format!(
        "| produce the input (for scale) | {} records | {:.1} s | {:.0} records/s | | | |",
        clicks + visitors,
        produced.as_secs_f64(),
        (clicks + visitors) as f64 / produced.as_secs_f64()
    )];
    let (pipe_seconds, pipe_cpu, pipe_rss) = raw_pipe(&bootstrap, &format!("{INPUT}.clicks"), "pipe.out", clicks);
    let pipe_rate = clicks as f64 / pipe_seconds;
    let millions = clicks as f64 / 1e6;
    rows.push(format!(
        "| raw librdkafka pipe (ceiling) | {clicks} clicks | {pipe_seconds:.1} s | {pipe_rate:.0} clicks/s | 1.00 | {:.1} | {pipe_rss:.0} |",
        pipe_cpu / millions
    ));
    let mut plotted = vec![("raw librdkafka pipe".to_owned(), pipe_rate)];
    let mut first_app = None;
    let mut breakdown = Vec::new();
    let configs = std::env::var("HAPPYSTREAMS_BENCH_CONFIGS").unwrap_or_else(|_| "1x1,1x2,2x1,2x2,1x1@default".into());
    for config in configs.split(',').filter_map(Config::parse) {
        let (count, threads) = (config.instances, config.threads);
        let app = format!("run{count}x{threads}{}", if config.librdkafka_defaults { "d" } else { "" });
        let run = run(&bootstrap, dir.path(), &app, &config, clicks);
        let count =
            if config.librdkafka_defaults { format!("{count} (librdkafka fetch defaults)") } else { count.to_string() };
        let rate = clicks as f64 / run.seconds;
        plotted.push((format!("{count} instance(s) × {threads} thread(s)"), rate));
        rows.push(format!(
            "| {count} instance(s) × {threads} thread(s) | {clicks} clicks + {visitors} visitors | {:.1} s | {rate:.0} clicks/s | {:.2} | {:.1} | {:.0} |",
            run.seconds,
            rate / pipe_rate,
            run.cpu / millions,
            run.rss
        ));
        breakdown.push(format!(
            "| {count} × {threads} | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {:.0} |",
            run.seconds * config.instances as f64,
            run.poll,
            run.busy,
            run.commit,
            run.commits
        ));
        drop(run.instances);
        first_app.get_or_insert(app);
    }

    // A fresh instance rebuilds the first run's state from its changelogs.
    let app = first_app.unwrap_or_default();
    let fresh = Instance::start(
        &bootstrap,
        None,
        &topology(dir.path(), &app),
        &app,
        &dir.path().join("fresh"),
        dir.path().join("fresh.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(900);
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
        "| restore from changelogs ({tasks} tasks in parallel) | {records} records | {:.2} s | {:.0} records/s | | | {:.0} |",
        slowest as f64 / 1000.0,
        records as f64 / (slowest.max(1) as f64 / 1000.0),
        peak_rss_mb(fresh.child.id())
    ));
    drop(fresh);
    let _ =
        Command::new("bash").arg(root().join("tests/rig/tansu.sh")).arg("stop").arg(dir.path().join("tansu")).status();
    common::print_table(
        &["what", "input", "time", "rate", "ratio to the pipe", "CPU s per M clicks", "peak RSS MiB"],
        &rows,
    );
    println!("\nWhere the time went (sums over instances; busy sums every processing thread)");
    common::print_table(
        &["instances × threads", "wall × instances", "polling", "processing (busy)", "committing", "commits"],
        &breakdown,
    );
    common::plot::bars(
        "runtime-throughput.svg",
        &format!("views_by_source: {clicks} clicks + {visitors} visitors, Tansu, 2 cores"),
        "clicks/s",
        &plotted,
    );
}
