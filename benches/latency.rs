//! End-to-end latency of `happystreams run` at half load, on a real broker (Tansu, started here).
//!
//! The workload is `views_by_source` (tests/fixtures/topologies): clicks joined with a Debezium
//! visitors table, re-keyed and counted per window. First one instance drains a backlog of clicks
//! to measure its maximum rate; then, for at-least-once and exactly-once, a fresh instance
//! receives clicks produced live at half that rate, each stamped with its send time, and a
//! read-committed consumer of the facts topic takes `arrival time − input timestamp` for every
//! fact: the latency a downstream reader sees (input producer linger, broker, engine, output
//! producer, broker, fetch). The first seconds (warm-up) are left out.
//!
//! Then key lookups (the query API, `docs/QUERIES.md`): two instances of one application process
//! clicks live at the same rate while clients look visitors up through the first instance's
//! API: a key its own task holds (local) or the other instance's (forwarded). Against the HTTP
//! floor of the same server (`/health/live`) in the same run.
//!
//! Prints p50/p99/p999/max per guarantee, and p50/p99 and lookups/s for the lookups.
//! `cargo bench --bench latency` (release); `HAPPYSTREAMS_BENCH_ONLY=lookups` runs the lookups
//! alone, `HAPPYSTREAMS_BENCH_LOOKUP_CLIENTS` sets their concurrency (default 8). Sizes:
//! `HAPPYSTREAMS_BENCH_SECONDS` (live seconds per guarantee, default 20),
//! `HAPPYSTREAMS_BENCH_BOOTSTRAP` (a running broker instead of Tansu),
//! `HAPPYSTREAMS_BENCH_VISITORS` (default 10000), `HAPPYSTREAMS_BENCH_CLICKS` (backlog for the
//! maximum rate, default 300000), `HAPPYSTREAMS_BENCH_RATE` (clicks/s; skips the maximum-rate run),
//! `HAPPYSTREAMS_BENCH_BROKER_NAME` (the broker's name in the plot's title). Writes the latency
//! distributions as an SVG plot (`common::plot`).

use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{Instance, bulk_producer, config, create_topics, root, start_tansu, stop_tansu};

const PARTITIONS: i32 = 4;
const WARM_UP: Duration = Duration::from_secs(5);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The topology reading `input.clicks` and `visitors`, writing `app`'s own outputs.
fn topology(dir: &Path, input: &str, app: &str) -> PathBuf {
    let yaml = std::fs::read_to_string(root().join("tests/fixtures/topologies/views_by_source.yaml"))
        .unwrap()
        .replace("rt.clicks", &format!("{input}.clicks"))
        .replace("rt.visitors", "bench.visitors")
        .replace("rt.", &format!("{app}."));
    let path = dir.join(format!("{app}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

fn click(i: usize, visitors: usize, ts: i64) -> (String, String) {
    let v = 1 + i % visitors;
    (format!(r#"{{"visitor_id":{v}}}"#), format!(r#"{{"event_id":"e{i}","visitor_id":{v},"event_time":{ts}}}"#))
}

fn produce_visitors(bootstrap: &str, visitors: usize) {
    let producer = bulk_producer(bootstrap);
    let sources = ["email", "social", "search", "direct"];
    let ts = now_ms();
    for v in 1..=visitors {
        let value = format!(
            r#"{{"before":null,"after":{{"visitor_id":{v},"source":"{}"}},"source":{{"ts_ms":{ts}}},"op":"r","ts_ms":{ts}}}"#,
            sources[v % 4]
        );
        let key = format!(r#"{{"visitor_id":{v}}}"#);
        let mut record = BaseRecord::to("bench.visitors").key(&key).payload(&value).timestamp(ts);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

fn start(bootstrap: &str, dir: &Path, input: &str, app: &str, flags: &[&str]) -> Instance {
    let instance = Instance::start_with(
        bootstrap,
        None,
        &topology(dir, input, app),
        app,
        &dir.join(app),
        dir.join(format!("{app}.log")),
        flags,
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while instance.metric("task_running", "") < f64::from(2 * PARTITIONS) {
        assert!(Instant::now() < deadline, "{app} did not start; see {}", instance.log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    instance
}

/// Clicks/s one instance reaches on a backlog of `clicks`.
fn maximum_rate(bootstrap: &str, dir: &Path, clicks: usize, visitors: usize) -> f64 {
    let producer = bulk_producer(bootstrap);
    let ts = now_ms();
    for i in 0..clicks {
        let (key, value) = click(i, visitors, ts);
        let mut record = BaseRecord::to("backlog.clicks").key(&key).payload(&value).timestamp(ts);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let instance = start(bootstrap, dir, "backlog", "max", &[]);
    let started = Instant::now();
    let facts = "topic=\"max.facts\"";
    while instance.metric("records_out_total", facts) < clicks as f64 {
        assert!(started.elapsed() < Duration::from_secs(900), "the backlog was not drained");
        std::thread::sleep(Duration::from_millis(20));
    }
    clicks as f64 / started.elapsed().as_secs_f64()
}

struct Latencies {
    sent: usize,
    received: usize,
    /// Milliseconds, sorted, after the warm-up.
    sorted: Vec<i64>,
}

impl Latencies {
    fn row(&self, what: &str, rate: f64) -> String {
        format!(
            "| {what} | {rate:.0} | {} | {} | {} | {} | {} | {} |",
            self.sent,
            self.received,
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(0.999),
            self.sorted.last().copied().unwrap_or(-1),
        )
    }

    fn quantile(&self, q: f64) -> i64 {
        if self.sorted.is_empty() {
            return -1;
        }
        let at = ((self.sorted.len() as f64 * q).ceil() as usize).clamp(1, self.sorted.len()) - 1;
        self.sorted[at]
    }
}

/// Produces clicks to `input.clicks` at `rate`/s for `seconds` while a consumer of `output`
/// records each output record's latency.
fn live(bootstrap: &str, input: &str, output: &str, rate: f64, seconds: u64, visitors: usize) -> Latencies {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", format!("{output}-latency-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "1")
        .create()
        .unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition_offset(output, partition, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&partitions).unwrap();
    // Until every sent click's fact arrived (or nothing arrived for 10 s).
    let expected = Arc::new(AtomicUsize::new(usize::MAX));
    let reader = {
        let expected = expected.clone();
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            let mut last = Instant::now();
            loop {
                let expected = expected.load(Ordering::Relaxed);
                if latencies.len() >= expected || (expected != usize::MAX && last.elapsed() > Duration::from_secs(10)) {
                    break;
                }
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    let arrived = now_ms();
                    last = Instant::now();
                    let ts = message.timestamp().to_millis().unwrap_or(arrived);
                    latencies.push((ts, arrived - ts));
                }
            }
            latencies
        })
    };
    // The input producer as a live application would set it: sends within a millisecond.
    let producer: rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> = config(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", std::env::var("HAPPYSTREAMS_BENCH_LINGER_MS").unwrap_or_else(|_| "5".into()))
        .create()
        .unwrap();
    let topic = format!("{input}.clicks");
    let started = Instant::now();
    let warm_from = now_ms() + WARM_UP.as_millis() as i64;
    let total = (rate * seconds as f64) as usize;
    let mut sent = 0;
    while sent < total {
        // Catch up with the schedule, then sleep a millisecond.
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(total);
        while sent < due {
            let ts = now_ms();
            let (key, value) = click(sent, visitors, ts);
            let mut record = BaseRecord::to(&topic).key(&key).payload(&value).timestamp(ts);
            while let Err((_, back)) = producer.send(record) {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    expected.store(sent, Ordering::Relaxed);
    let latencies = reader.join().unwrap();
    let received = latencies.len();
    let mut sorted: Vec<i64> = latencies.into_iter().filter(|(ts, _)| *ts >= warm_from).map(|(_, l)| l).collect();
    sorted.sort_unstable();
    Latencies { sent, received, sorted }
}

fn main() {
    common::raw_pipe_child();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = env_usize("HAPPYSTREAMS_BENCH_SECONDS", 20) as u64;
    let visitors = env_usize("HAPPYSTREAMS_BENCH_VISITORS", 10_000);
    let clicks = env_usize("HAPPYSTREAMS_BENCH_CLICKS", 300_000);
    let dir = tempfile::tempdir().unwrap();
    // `HAPPYSTREAMS_BENCH_BOOTSTRAP`: a running broker instead of a Tansu started here.
    let external = std::env::var("HAPPYSTREAMS_BENCH_BOOTSTRAP").ok();
    let bootstrap = external.clone().unwrap_or_else(|| start_tansu(&dir.path().join("tansu")));
    let topics: Vec<String> =
        ["bench.visitors", "backlog.clicks", "alos.clicks", "eos.clicks", "iq.clicks", "pipe.clicks", "pipe.out"]
            .iter()
            .map(|t| t.to_string())
            .collect();
    create_topics(&bootstrap, &topics, PARTITIONS);
    produce_visitors(&bootstrap, visitors);
    let (rate, measured) = match std::env::var("HAPPYSTREAMS_BENCH_RATE").ok().and_then(|r| r.parse::<f64>().ok()) {
        Some(rate) => (rate, None),
        None => {
            let max = maximum_rate(&bootstrap, dir.path(), clicks, visitors);
            (max / 2.0, Some(max))
        }
    };
    let only = std::env::var("HAPPYSTREAMS_BENCH_ONLY").unwrap_or_default();
    if only != "lookups" {
        end_to_end(&bootstrap, dir.path(), rate, seconds, visitors, external.is_some());
    }
    lookups(&bootstrap, dir.path(), rate, seconds, visitors);
    if external.is_none() {
        stop_tansu(&dir.path().join("tansu"));
    }
    if let Some(max) = measured {
        println!("\nmaximum rate of one instance on a backlog of {clicks} clicks: {max:.0} clicks/s");
    }
}

/// The end-to-end latency rows: the raw pipe, then each guarantee.
fn end_to_end(bootstrap: &str, dir: &Path, rate: f64, seconds: u64, visitors: usize, external: bool) {
    let mut rows = Vec::new();
    // The ceiling: a raw librdkafka pipe from `pipe.clicks` to `pipe.out` over the same broker.
    let pipe = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--raw-pipe", bootstrap, "pipe.clicks", "pipe.out", &((rate * seconds as f64) as usize).to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2)); // its start
    let latencies = live(bootstrap, "pipe", "pipe.out", rate, seconds, visitors);
    drop(pipe);
    rows.push(latencies.row("raw librdkafka pipe (ceiling)", rate));
    let mut plotted = vec![("raw librdkafka pipe".to_owned(), latencies.sorted)];
    for (input, guarantee, flags) in [
        ("alos", "at-least-once (commit 1000 ms)", vec!["--processing-guarantee", "at-least-once"]),
        (
            "eos",
            "exactly-once (commit 100 ms)",
            vec!["--processing-guarantee", "exactly-once", "--commit-interval-ms", "100"],
        ),
    ] {
        let instance = start(bootstrap, dir, input, input, &flags);
        let latencies = live(bootstrap, input, &format!("{input}.facts"), rate, seconds, visitors);
        drop(instance);
        rows.push(latencies.row(guarantee, rate));
        plotted.push((guarantee.to_owned(), latencies.sorted));
    }
    common::print_table(
        &["what", "input clicks/s", "sent", "facts read", "p50 ms", "p99 ms", "p999 ms", "max ms"],
        &rows,
    );
    let broker = std::env::var("HAPPYSTREAMS_BENCH_BROKER_NAME")
        .unwrap_or_else(|_| if external { "an external broker".into() } else { "Tansu".into() });
    common::plot::cdf(
        "latency-cdf.svg",
        &format!("views_by_source end-to-end latency at {rate:.0} clicks/s, one instance, {broker}"),
        &plotted,
    );
}

/// Lookup latencies (microseconds) and how many per second.
struct Lookups {
    micros: Vec<u64>,
    seconds: f64,
}

impl Lookups {
    fn row(&mut self, what: &str) -> String {
        self.micros.sort_unstable();
        let quantile = |q: f64| {
            let n = self.micros.len();
            if n == 0 { -1.0 } else { self.micros[((n as f64 * q).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0 }
        };
        format!(
            "| {what} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            self.micros.len(),
            self.micros.len() as f64 / self.seconds,
            quantile(0.5),
            quantile(0.99),
            self.micros.last().map_or(-1.0, |m| *m as f64 / 1000.0),
        )
    }
}

/// `clients` concurrent clients GET `path(i)` on `base` for `seconds`; each answer is sorted
/// into a group by `group(body)` (which must be 200).
fn hammer(
    base: &str,
    clients: usize,
    seconds: f64,
    path: impl Fn(u64) -> String + Send + Sync + 'static,
    group: impl Fn(&serde_json::Value) -> usize + Send + Sync + 'static,
) -> Vec<Lookups> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
    let (path, group) = (std::sync::Arc::new(path), std::sync::Arc::new(group));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..clients as u64)
        .map(|c| {
            let (client, base, path, group) = (client.clone(), base.to_owned(), path.clone(), group.clone());
            runtime.spawn(async move {
                let mut seen: Vec<Vec<u64>> = vec![Vec::new(); 2];
                let mut i = c.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                while Instant::now() < deadline {
                    i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    let started = Instant::now();
                    let response = client.get(format!("{base}{}", path(i >> 33))).send().await.unwrap();
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    let took = started.elapsed().as_micros() as u64;
                    assert!(status.is_success(), "{status}: {body}");
                    seen[group(&body)].push(took);
                }
                seen
            })
        })
        .collect();
    let mut groups = vec![Vec::new(); 2];
    for task in tasks {
        for (all, some) in groups.iter_mut().zip(runtime.block_on(task).unwrap()) {
            all.extend(some);
        }
    }
    groups.into_iter().map(|micros| Lookups { micros, seconds }).collect()
}

/// Key lookups on the visitors table through one of two instances processing clicks at `rate`.
fn lookups(bootstrap: &str, dir: &Path, rate: f64, seconds: u64, visitors: usize) {
    let clients = env_usize("HAPPYSTREAMS_BENCH_LOOKUP_CLIENTS", 8);
    let topology = topology(dir, "iq", "iq");
    let instances: Vec<Instance> = ["a", "b"]
        .iter()
        .map(|name| {
            Instance::start_with(
                bootstrap,
                None,
                &topology,
                "iq",
                &dir.join(format!("iq-{name}")),
                dir.join(format!("iq-{name}.log")),
                &[],
            )
        })
        .collect();
    let base = format!("http://127.0.0.1:{}", instances[0].port);
    let deadline = Instant::now() + Duration::from_secs(300);
    let ready = |instance: &Instance| {
        std::net::TcpStream::connect(("127.0.0.1", instance.port)).is_ok() && instance.metric("task_running", "") > 0.0
    };
    while !instances.iter().all(ready)
        || instances.iter().map(|i| i.metric("task_running", "")).sum::<f64>() < f64::from(2 * PARTITIONS)
    {
        assert!(Instant::now() < deadline, "the lookup instances did not start; see {}", dir.display());
        std::thread::sleep(Duration::from_millis(200));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let get = |path: String| {
        runtime.block_on(async {
            let response = reqwest::get(format!("{base}{path}")).await.ok()?;
            let status = response.status().as_u16();
            Some((status, response.json::<serde_json::Value>().await.ok()?))
        })
    };
    let listed = get("/v1/stores".into()).map(|(_, body)| body).unwrap_or_default();
    let stores = listed["stores"].as_array().cloned().unwrap_or_default();
    let table = stores.iter().find(|s| s["node"] == "visitors").unwrap_or_else(|| panic!("{listed}"));
    let store = table["name"].as_str().unwrap().to_owned();
    // Wait until every visitor is in the table (the last one answers).
    while get(format!("/v1/stores/{store}/keys/{visitors}")).is_none_or(|(status, _)| status != 200) {
        assert!(Instant::now() < deadline, "visitor {visitors} never appeared in {store}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(runtime);
    let floor = hammer(&base, clients, 5.0, |_| "/health/live".to_owned(), |_| 0).swap_remove(0);
    let producing = {
        let bootstrap = bootstrap.to_owned();
        std::thread::spawn(move || live(&bootstrap, "iq", "iq.facts", rate, seconds, visitors))
    };
    let own = base.clone();
    let store_idle = store.clone();
    let mut served = hammer(
        &base,
        clients,
        seconds as f64,
        move |i| format!("/v1/stores/{store}/keys/{}", 1 + i % visitors as u64),
        move |body| usize::from(body["instance"].as_str() != Some(own.as_str())),
    );
    let facts = producing.join().unwrap();
    // The same once the clicks are processed: what a lookup costs without the processing.
    let own = base.clone();
    let mut idle = hammer(
        &base,
        clients,
        5.0,
        move |i| format!("/v1/stores/{store_idle}/keys/{}", 1 + i % visitors as u64),
        move |body| usize::from(body["instance"].as_str() != Some(own.as_str())),
    );
    let mut floor = floor;
    let rows = vec![
        floor.row("HTTP floor: GET /health/live (no processing)"),
        served[0].row("key lookup, local, while processing"),
        served[1].row("key lookup, forwarded, while processing"),
        idle[0].row("key lookup, local, no processing"),
        idle[1].row("key lookup, forwarded, no processing"),
    ];
    println!(
        "\nkey lookups through one of two instances while they process {rate:.0} clicks/s ({} sent, {} facts read); {clients} clients",
        facts.sent, facts.received
    );
    common::print_table(&["what", "lookups", "lookups/s", "p50 ms", "p99 ms", "max ms"], &rows);
    drop(instances);
}
