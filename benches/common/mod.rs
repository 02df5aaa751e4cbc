//! What the end-to-end bench harnesses share: a Tansu broker from the test rig, client
//! settings, and `happystreams run` instances with their metrics endpoint.

#![allow(dead_code)] // each bench uses its part

pub mod plot;

use rdkafka::ClientConfig;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts a Tansu broker (tests/rig/tansu.sh) with its files under `dir`; returns host:port.
pub fn start_tansu(dir: &Path) -> String {
    let out =
        Command::new("bash").arg(root().join("tests/rig/tansu.sh")).arg("start").arg(dir).output().expect("tansu.sh");
    assert!(out.status.success(), "tests/rig/tansu.sh start failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Stops the broker started with `dir`.
pub fn stop_tansu(dir: &Path) {
    let _ = Command::new("bash").arg(root().join("tests/rig/tansu.sh")).arg("stop").arg(dir).status();
}

pub fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates topics with `partitions` partitions (replication 1).
pub fn create_topics(bootstrap: &str, names: &[String], partitions: i32) {
    use happystreams::connectors::kafka::{KafkaConfig, TopicSpec, create_missing_topics};
    let kafka = KafkaConfig { bootstrap_servers: bootstrap.to_owned(), ..KafkaConfig::default() };
    let specs: Vec<TopicSpec<'_>> =
        names.iter().map(|name| TopicSpec { name, partitions, replication: 1, config: &[] }).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create_missing_topics(&kafka, &specs)).unwrap();
}

/// A producer for loading input fast, partitioning like the Java client (murmur2).
pub fn bulk_producer(
    bootstrap: &str,
) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    config(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

/// `fetch.wait.max.ms` of the instances' consumers: `HAPPYSTREAMS_BENCH_FETCH_WAIT_MS`, else 10.
///
/// Tansu holds a fetch that finds no new records for the full `fetch.wait.max.ms` even when
/// records arrive meanwhile (Kafka answers as soon as they do). An instance's one fetch in flight
/// per broker covers its input and its repartition topics, so with librdkafka's 500 ms the
/// instance measures the broker, not itself (`docs/PERFORMANCE.md` has both).
pub fn fetch_wait_ms() -> String {
    std::env::var("HAPPYSTREAMS_BENCH_FETCH_WAIT_MS").unwrap_or_else(|_| "10".into())
}

/// `max.partition.fetch.bytes` of the instances' consumers: 8 MiB (librdkafka: 1 MiB). Each
/// Tansu fetch costs a round trip the instance's one fetch in flight waits for; larger fetches
/// make fewer of them (`docs/PERFORMANCE.md` has both).
pub const PARTITION_FETCH_BYTES: &str = "8388608";

pub struct Instance {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Instance {
    /// `registry`: the schema registry URL (topologies with Avro sinks).
    pub fn start(
        bootstrap: &str,
        registry: Option<&str>,
        topology: &Path,
        app: &str,
        state: &Path,
        log: PathBuf,
    ) -> Instance {
        Instance::start_with(bootstrap, registry, topology, app, state, log, &[])
    }

    /// [`Instance::start`] with extra flags of `happystreams run`.
    pub fn start_with(
        bootstrap: &str,
        registry: Option<&str>,
        topology: &Path,
        app: &str,
        state: &Path,
        log: PathBuf,
        flags: &[&str],
    ) -> Instance {
        Instance::start_with_env(bootstrap, registry, topology, app, state, log, flags, &[])
    }

    /// [`Instance::start_with`] with extra environment variables (after the defaults).
    #[allow(clippy::too_many_arguments)]
    pub fn start_with_env(
        bootstrap: &str,
        registry: Option<&str>,
        topology: &Path,
        app: &str,
        state: &Path,
        log: PathBuf,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(binary());
        if let Some(url) = registry {
            command.env("HAPPYSTREAMS_REGISTRY__URL", url);
        }
        let child = command
            .args(["run", "--topology"])
            .arg(topology)
            .args(["--bootstrap-servers", bootstrap, "--application-id", app, "--state-dir"])
            .arg(state)
            .args(["--http-address", &format!("127.0.0.1:{port}")])
            .args(flags)
            .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("HAPPYSTREAMS_KAFKA__PROPERTIES__FETCH_WAIT_MAX_MS", fetch_wait_ms())
            .env("HAPPYSTREAMS_KAFKA__PROPERTIES__MAX_PARTITION_FETCH_BYTES", PARTITION_FETCH_BYTES)
            .env("RUST_LOG", "happystreams=info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Instance { child, port, log }
    }

    pub fn metric(&self, name: &str, label: &str) -> f64 {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return 0.0 };
        let _ = write!(s, "GET /metrics HTTP/1.0\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        // Metrics are named `happystreams_*`; a binary from before the prefix (HAPPYSTREAMS_BENCH_BIN)
        // writes the bare names.
        body.lines()
            .map(|l| l.strip_prefix("happystreams_").unwrap_or(l))
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// The `happystreams` binary under test: `HAPPYSTREAMS_BENCH_BIN` (a copy of an earlier build,
/// for before/after comparisons in one run of the harness), else the one cargo built.
///
/// Build the "before" binary with `git stash` or `git checkout`, never in a second worktree
/// sharing the target directory: cargo gives both worktrees the same artifact names and then
/// takes one tree's library for the other's (fresh by its own fingerprint).
pub fn binary() -> PathBuf {
    std::env::var_os("HAPPYSTREAMS_BENCH_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_happystreams")), PathBuf::from)
}

/// `happystreams registry serve --in-memory` on a free loopback port; stopped on drop.
pub struct Registry {
    child: Child,
    pub url: String,
}

impl Registry {
    pub fn start() -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary())
            .args(["registry", "serve", "--in-memory", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the registry did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Registry { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; clock ticks
    // are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of a process (MiB), from `/proc/<pid>/status` (VmHWM).
pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The ceiling: a raw librdkafka consume→produce pipe over `input` (comma-separated topics, every
/// partition, from the start) into `output`, in a child process (this bench binary with `--raw-pipe`), until
/// `records` were consumed and their copies acknowledged. Returns (seconds from the first record
/// read to the last acknowledged, CPU seconds, peak RSS MiB).
pub fn raw_pipe(bootstrap: &str, input: &str, output: &str, records: usize) -> (f64, f64, f64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--raw-pipe", bootstrap, input, output, &records.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("raw pipe");
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<f64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    assert!(out.status.success() && numbers.len() == 3, "raw pipe failed: {text}");
    (numbers[0], numbers[1], numbers[2])
}

/// The `--raw-pipe` child: prints "seconds cpu_seconds peak_rss_mb". Call first in `main`.
pub fn raw_pipe_child() {
    let args: Vec<String> = std::env::args().collect();
    let Some(at) = args.iter().position(|a| a == "--raw-pipe") else { return };
    let (bootstrap, input, output) = (&args[at + 1], &args[at + 2], &args[at + 3]);
    let records: usize = args[at + 4].parse().unwrap();
    use rdkafka::Message as _;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", format!("raw-pipe-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms())
        .create()
        .unwrap();
    // The same producer settings as `happystreams run`'s.
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = config(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    // Every partition by hand, from the start: no group join to wait for.
    let mut assignment = rdkafka::TopicPartitionList::new();
    for topic in input.split(',') {
        let metadata = consumer.fetch_metadata(Some(topic), std::time::Duration::from_secs(30)).unwrap();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            assignment.add_partition_offset(topic, partition.id(), rdkafka::Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let mut seen = 0;
    let mut first = None;
    while seen < records {
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(std::time::Instant::now);
                seen += 1;
                let mut record = BaseRecord::to(output).partition(message.partition());
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                if let Some(value) = message.payload() {
                    record = record.payload(value);
                }
                if let Some(ts) = message.timestamp().to_millis() {
                    record = record.timestamp(ts);
                }
                while let Err((_, back)) = producer.send(record) {
                    record = back;
                    producer.poll(std::time::Duration::from_millis(1));
                }
            }
            Some(Err(e)) => eprintln!("raw pipe: {e}"),
            None => {}
        }
    }
    producer.flush(std::time::Duration::from_secs(120)).unwrap();
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let pid = std::process::id();
    println!("{seconds} {} {}", cpu_seconds(pid), peak_rss_mb(pid));
    std::process::exit(0);
}

/// Prints a Markdown table: a blank line, the header of `columns`, then `rows` (each a
/// `| … |` line).
pub fn print_table(columns: &[&str], rows: &[String]) {
    println!("\n| {} |\n|{}", columns.join(" | "), "---|".repeat(columns.len()));
    for row in rows {
        println!("{row}");
    }
}
