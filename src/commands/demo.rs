//! `happystreams demo`: the HappyTimes pipeline on one machine, with no external service.
//!
//! 1. An in-process Schema Registry on loopback (in memory) with the project's event schemas
//!    registered, as producers would.
//! 2. Seeded HappyTimes traffic from [`crate::generate`]: Debezium change events of the five
//!    dimension tables, clicks, access-log lines and social mentions, in event-time order.
//! 3. `topologies/happytimes.yaml` run in process by the engine (state in RocksDB in a temporary
//!    directory), paced at `--rate` records per second.
//! 4. After the history, live traffic (`--live-days` more generated days, their event time
//!    running `--speed` times as fast as the clock) until Ctrl-C.
//! 5. The live funnel, reprinted as it updates and on the dashboard (`/dashboard`, with the
//!    query API, health checks and Prometheus metrics on one loopback HTTP server); the facts
//!    landed in a local lake as Parquet (`--lake`, like `happystreams lake-sink --avro`); Ctrl-C
//!    stops cleanly with a last summary.
//!
//! The topology is built into the binary; the Avro schemas it registers and the row schemas the
//! topology names are read from the checkout it was built from (`schemas/`), as
//! `./happystreams demo` runs it.

use crate::codec::avro::{AvroCodec, AvroSchema};
use crate::connectors::lake::sink::{RowFormat, Segment, SinkRecord, segment_of};
use crate::connectors::lake::{Lake, LakeConfig};
use crate::connectors::registry::client::{register, schema_files};
use crate::connectors::registry::{RegistryConfig, RegistryStore, RunningRegistry};
use crate::generate::{Options, generate};
use crate::operators::pipeline::Output;
use crate::record::{Row, Value};
use crate::state::{RocksDbBackend, StateConfig, StateMemory};
use crate::testkit::{DriverError, TopologyTestDriver};
use crate::topology::Plan;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Flags of `happystreams demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Visitors in the generated traffic.
    #[arg(long, default_value_t = 200)]
    pub visitors: u64,
    /// Days of generated activity.
    #[arg(long, default_value_t = 21)]
    pub days: u32,
    /// Seed for the generator (same seed, same traffic, same funnel).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Records per second of the history fed to the topology (0: as fast as possible).
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Days of live traffic after the history, until Ctrl-C (0: stop after the history).
    #[arg(long, default_value_t = 30)]
    pub live_days: u32,
    /// How much faster than the clock the live traffic's event time runs (60: an hour of
    /// traffic a minute).
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// How often the funnel is reprinted, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub refresh_ms: u64,
    /// The HTTP server: dashboard, query API, health checks, Prometheus metrics (loopback by
    /// default; empty to disable).
    #[arg(long, alias = "metrics-address", default_value = "127.0.0.1:9464")]
    pub http_address: String,
    /// Local lake directory the facts land in (`facts/<name>/date=…/hour=…/*.parquet`; its
    /// facts tables are replaced at start). Empty to land nothing.
    #[arg(long, default_value = "demo-lake")]
    pub lake: String,
}

/// The facts landed in a local lake as the Kafka path does it: each output encoded with its
/// sink's Avro schema, then written by the lake sink's segments (one partition per topic,
/// offsets counted here).
struct FactLake {
    lake: Lake,
    dir: String,
    /// Decodes the facts with their sink schemas (no registry needed).
    codec: AvroCodec,
    topics: BTreeMap<String, FactTable>,
    last_flush: Instant,
}

struct FactTable {
    table: String,
    schema: Arc<AvroSchema>,
    next_offset: i64,
    segment: Segment,
}

const SEGMENT_RECORDS: i64 = 10_000;

impl FactLake {
    fn open(dir: &str, plan: &Plan) -> anyhow::Result<FactLake> {
        anyhow::ensure!(
            !dir.contains("://") || dir.starts_with("file://"),
            "--lake {dir}: the demo's lake is a local directory (land facts on S3 with `happystreams lake-sink`)"
        );
        let dir = dir.strip_prefix("file://").unwrap_or(dir);
        let codec = AvroCodec::offline();
        let mut topics = BTreeMap::new();
        for sink in plan.sinks.iter().filter(|s| s.topic.starts_with("happytimes.facts.")) {
            let schema = sink.avro.as_ref().ok_or_else(|| anyhow::anyhow!("sink {} is not Avro", sink.topic))?;
            let schema = codec.add_schema(schema.with_id(topics.len() as u32 + 1));
            let table = format!("facts/{}", sink.topic.trim_start_matches("happytimes.facts."));
            // Files of an earlier run would mix with this run's: the tables start empty.
            let local = Path::new(dir).join(&table);
            if local.exists() {
                std::fs::remove_dir_all(&local)
                    .map_err(|e| anyhow::anyhow!("clearing {} for the demo: {e}", local.display()))?;
            }
            topics.insert(sink.topic.clone(), FactTable { table, schema, next_offset: 0, segment: Segment::new(0) });
        }
        let lake = Lake::open(&LakeConfig { url: dir.to_owned(), ..LakeConfig::default() })?;
        Ok(FactLake { lake, dir: dir.to_owned(), codec, topics, last_flush: Instant::now() })
    }

    /// Queues a fact record; a complete segment is written at once.
    async fn push(&mut self, output: &Output) -> anyhow::Result<()> {
        let (Some(fact), Some(row)) = (self.topics.get_mut(&output.topic), &output.value) else { return Ok(()) };
        let value = fact.schema.encode(&Value::Struct(row.clone()))?;
        let offset = fact.next_offset;
        fact.next_offset += 1;
        let start = segment_of(offset, SEGMENT_RECORDS);
        if fact.segment.start != start {
            fact.segment.write(&self.lake, &fact.table, RowFormat::Avro, &output.topic, 0, &self.codec).await?;
            fact.segment = Segment::new(start);
        }
        fact.segment.push(SinkRecord { offset, timestamp: output.timestamp, key: None, value: Some(value) });
        Ok(())
    }

    /// Writes the segments that changed since the last flush (a segment's files are all
    /// rewritten, so not on every refresh of the board).
    async fn flush(&mut self) -> anyhow::Result<()> {
        self.last_flush = Instant::now();
        for (topic, fact) in self.topics.iter_mut().filter(|(_, f)| f.segment.dirty) {
            fact.segment.write(&self.lake, &fact.table, RowFormat::Avro, topic, 0, &self.codec).await?;
            fact.segment.dirty = false;
        }
        Ok(())
    }

    fn landed(&self) -> i64 {
        self.topics.values().map(|f| f.next_offset).sum()
    }
}

const TOPOLOGY: &str = include_str!("../../topologies/happytimes.yaml");

/// The latest result per key of each output topic, and record counts.
#[derive(Default)]
struct Board {
    latest: BTreeMap<String, BTreeMap<String, Row>>,
    counts: BTreeMap<String, u64>,
    inputs: BTreeMap<&'static str, u64>,
    rejected: u64,
    event_time: i64,
}

impl Board {
    /// Takes the driver's new outputs into the board; returns them.
    fn collect(&mut self, driver: &mut TopologyTestDriver) -> Vec<Output> {
        let mut outputs = Vec::new();
        for topic in driver.output_topics() {
            for output in driver.read_output(&topic) {
                *self.counts.entry(topic.clone()).or_default() += 1;
                crate::runtime::emitter::RECORDS_OUT.add(&topic, 1);
                let table = self.latest.entry(topic.clone()).or_default();
                let key = output.key.to_json().to_string();
                match &output.value {
                    Some(row) => {
                        table.insert(key, row.clone());
                    }
                    None => {
                        table.remove(&key);
                    }
                }
                outputs.push(output);
            }
        }
        outputs
    }

    fn rows(&self, topic: &str) -> impl Iterator<Item = &Row> {
        self.latest.get(topic).into_iter().flat_map(|t| t.values())
    }

    fn print(&self, elapsed: Duration) {
        let total: u64 = self.inputs.values().sum();
        let time = chrono::DateTime::from_timestamp_millis(self.event_time)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        println!(
            "\n== HappyTimes live funnel · event time {time} UTC · {total} records in {:.1} s ({}) ==",
            elapsed.as_secs_f64(),
            self.inputs.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        );
        // Awareness and advocacy: the latest hour window.
        let latest_window =
            |topic: &str| self.rows(topic).filter_map(|r| r.get("window_start").and_then(Value::epoch_millis)).max();
        if let Some(window) = latest_window("happytimes.funnel.awareness") {
            let mut parts: Vec<String> = self
                .rows("happytimes.funnel.awareness")
                .filter(|r| r.get("window_start").and_then(Value::epoch_millis) == Some(window))
                .map(|r| format!("{} {}", text(r, "visitor_source"), text(r, "visitors")))
                .collect();
            parts.sort();
            println!("awareness      visitors per source, hour {}: {}", hour(window), parts.join(" · "));
        }
        if let Some(window) = latest_window("happytimes.funnel.consideration_top") {
            let top = self
                .rows("happytimes.funnel.consideration_top")
                .find(|r| r.get("window_start").and_then(Value::epoch_millis) == Some(window))
                .and_then(|r| r.get("top_content").cloned());
            let ranked = match top {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| match i {
                        Value::Struct(e) => format!("#{} ({})", text(e, "value"), text(e, "score")),
                        other => other.to_json().to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => "-".into(),
            };
            println!("consideration  top content viewed by subscribers, hour {}: {ranked}", hour(window));
        }
        let mut campaigns: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for row in self.rows("happytimes.funnel.conversion") {
            let entry = campaigns.entry(text(row, "campaign")).or_default();
            entry.0 += row.get("clicks").and_then(Value::as_i64).unwrap_or(0);
            entry.1 += row.get("conversions").and_then(Value::as_i64).unwrap_or(0);
        }
        let parts: Vec<String> = campaigns
            .iter()
            .map(|(c, (clicks, conv))| {
                let rate = if *clicks == 0 { 0.0 } else { 100.0 * *conv as f64 / *clicks as f64 };
                format!("{c} {conv}/{clicks} ({rate:.0}%)")
            })
            .collect();
        println!("conversion     conversions/clicks per campaign (7-day last click): {}", parts.join(" · "));
        let mut cohorts: Vec<String> = self
            .rows("happytimes.funnel.loyalty")
            .map(|r| {
                let week = r.get("cohort_week").and_then(Value::as_i64).unwrap_or(0);
                let rates = match r.get("retention_rate") {
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| match v {
                            Value::Double(d) => format!("{:.0}%", d * 100.0),
                            other => other.to_json().to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => "-".into(),
                };
                format!("{} ({}): {rates}", day(week), text(r, "cohort_size"))
            })
            .collect();
        cohorts.sort();
        println!("loyalty        cohort week (size): retention in weeks 0-3: {}", cohorts.join(" · "));
        if let Some(window) = latest_window("happytimes.funnel.advocacy") {
            let parts: Vec<String> = self
                .rows("happytimes.funnel.advocacy")
                .filter(|r| r.get("window_start").and_then(Value::epoch_millis) == Some(window))
                .map(|r| {
                    let avg = match r.get("avg_sentiment") {
                        Some(Value::Double(d)) => format!("{d:+.2}"),
                        _ => "-".into(),
                    };
                    format!("outlet {} {} ({avg})", text(r, "outlet_id"), text(r, "mentions"))
                })
                .collect();
            println!(
                "advocacy       mentions (avg sentiment) per outlet, hour {}: {}",
                hour(window),
                parts.join(" · ")
            );
        }
        let facts: Vec<String> = self
            .counts
            .iter()
            .filter(|(t, _)| t.starts_with("happytimes.facts."))
            .map(|(t, n)| format!("{} {n}", t.trim_start_matches("happytimes.facts.")))
            .collect();
        println!("facts          {} · rejected input records {}", facts.join(" · "), self.rejected);
    }
}

fn text(row: &Row, field: &str) -> String {
    match row.get(field) {
        Some(Value::String(s)) => s.to_string(),
        Some(v) => v.to_json().to_string(),
        None => "-".into(),
    }
}

fn hour(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%m-%d %H:00").to_string()).unwrap_or_default()
}

fn day(epoch_day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(epoch_day * 86_400_000)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Runs the demo, printing to stdout.
pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    // 1. The embedded registry, with the event schemas producers would register.
    let registry = RunningRegistry::start("127.0.0.1:0".parse()?, RegistryStore::in_memory()).await?;
    let config = RegistryConfig { url: registry.url.clone(), ..RegistryConfig::default() };
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut registered = Vec::new();
    for file in schema_files(&schemas)? {
        let id = register(&config, &file).await?;
        registered.push(format!("{} (id {id})", file.subject));
    }
    println!("schema registry (embedded, in memory) at {}: {}", registry.url, registered.join(", "));

    // 2-3. Traffic through the topology, state in RocksDB.
    let options =
        Options { seed: args.seed, visitors: args.visitors, days: args.days + args.live_days, ..Options::default() };
    let records = generate(&options);
    let history_end = options.start_ms + i64::from(args.days) * 86_400_000;
    let live_from = records.partition_point(|r| r.timestamp < history_end);
    let topologies = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let plan = crate::topology::parse(TOPOLOGY, None, &topologies)?;
    let state_dir = tempfile::tempdir()?;
    let stores = plan.stores();
    let memory = StateMemory::new(&StateConfig::default());
    let backend = RocksDbBackend::open(state_dir.path(), &stores, &memory)?;
    // The driver's state is one task's: queries read what it last committed.
    let reader = crate::state::StateBackend::reader(&backend);
    let mut lake = if args.lake.is_empty() { None } else { Some(FactLake::open(&args.lake, &plan)?) };
    let mut driver = TopologyTestDriver::with_state(plan, Box::new(backend))?;
    let catalog_plan = Arc::new(crate::topology::parse(TOPOLOGY, None, &topologies)?);
    serve(args, catalog_plan, reader).await?;
    println!(
        "{} records generated (seed {}, {} visitors, {} days of history, {} live); running topologies/happytimes.yaml at {} records/s, Ctrl-C to stop",
        records.len(),
        args.seed,
        args.visitors,
        args.days,
        args.live_days,
        if args.rate == 0 { "full speed".to_owned() } else { args.rate.to_string() }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        crate::commands::shutdown_signal().await;
        flag.store(true, Ordering::Relaxed);
    });
    let mut board = Board::default();
    let started = Instant::now();
    let mut last_print = Instant::now();
    let refresh = Duration::from_millis(args.refresh_ms.max(50));
    // The history at `--rate` records per second, then the live days at `--speed`.
    let mut live_started: Option<(Instant, i64)> = None;
    for (index, record) in records.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let due = if index < live_from {
            (args.rate > 0 && index % 100 == 0)
                .then(|| started + Duration::from_secs_f64(index as f64 / args.rate as f64))
        } else {
            let (wall, event) = *live_started.get_or_insert_with(|| {
                println!(
                    "\n== history processed in {:.1} s; live traffic now, its event time running {}x the clock (--speed); Ctrl-C to stop ==",
                    started.elapsed().as_secs_f64(),
                    args.speed
                );
                (Instant::now(), record.timestamp)
            });
            let ahead = (record.timestamp - event) as f64 / 1000.0 / args.speed.max(0.001);
            Some(wall + Duration::from_secs_f64(ahead.max(0.0)))
        };
        if let Some(wait) = due.and_then(|due| due.checked_duration_since(Instant::now())) {
            // Waiting live traffic still refreshes the board and stops on Ctrl-C.
            let until = tokio::time::Instant::now() + wait;
            while tokio::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(until.min(tokio::time::Instant::now() + refresh)).await;
                if last_print.elapsed() >= refresh {
                    publish(&mut board, &mut driver, lake.as_mut(), started).await?;
                    last_print = Instant::now();
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        metrics::counter!("happystreams_records_in_total", "topic" => record.topic).increment(1);
        match driver.pipe_json(&record.to_json_line()) {
            Ok(()) => {}
            // A malformed access-log line: the Kafka runtime dead-letters it (`on_error`).
            Err(DriverError::Input(_)) => {
                board.rejected += 1;
                metrics::counter!("happystreams_records_dead_lettered_total", "topic" => record.topic).increment(1);
            }
            Err(e) => anyhow::bail!("processing a {} record: {e}", record.source),
        }
        *board.inputs.entry(record.source).or_default() += 1;
        board.event_time = board.event_time.max(record.timestamp);
        if last_print.elapsed() >= refresh {
            publish(&mut board, &mut driver, lake.as_mut(), started).await?;
            last_print = Instant::now();
        }
    }
    driver.commit()?;
    land(board.collect(&mut driver), lake.as_mut(), true).await?;
    board.print(started.elapsed());
    let stopped = stop.load(Ordering::Relaxed);
    println!(
        "\n{} after {:.1} s: {} records in; windows still open stay as last printed.",
        if stopped { "stopped by signal" } else { "all generated traffic processed" },
        started.elapsed().as_secs_f64(),
        board.inputs.values().sum::<u64>()
    );
    if let Some(lake) = &lake {
        println!(
            "{} fact records landed as Parquet in {}/facts/ (try: duckdb -c \"select campaign, count(*) from '{}/facts/conversion/**/*.parquet' group by all\")",
            lake.landed(),
            lake.dir,
            lake.dir
        );
    }
    registry.shutdown().await?;
    Ok(())
}

/// Takes the driver's new outputs to the lake and the board, commits its state (what queries
/// and the dashboard read) and prints the board.
async fn publish(
    board: &mut Board,
    driver: &mut TopologyTestDriver,
    lake: Option<&mut FactLake>,
    started: Instant,
) -> anyhow::Result<()> {
    land(board.collect(driver), lake, false).await?;
    driver.commit()?;
    board.print(started.elapsed());
    Ok(())
}

/// The HTTP server (`--http-address`): the dashboard, the query API over the driver's state
/// (one task holding every store), health checks and metrics.
async fn serve(args: &DemoArgs, plan: Arc<Plan>, reader: Option<crate::state::StateReader>) -> anyhow::Result<()> {
    use crate::runtime::health;
    use crate::runtime::layout::TaskId;
    let handle = crate::observe::metrics::recorder().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let task = TaskId { subtopology: 0, partition: 0 };
    crate::query::local::set_catalog(crate::query::catalog::Catalog::single_task(plan.clone()));
    crate::query::local::opened(0, task, reader);
    crate::query::local::running(0, task);
    health::started(1);
    health::thread_assigned(0);
    health::task_running(0, task);
    if args.http_address.is_empty() {
        return Ok(());
    }
    let feed = crate::dashboard::Feed::new(&plan.name, crate::dashboard::feed::layout_of(&plan));
    let app = crate::observe::metrics::router(handle)
        .merge(health::router())
        .merge(crate::query::http::router())
        .merge(crate::dashboard::router(feed.clone()));
    let url = crate::observe::metrics::serve_router(&args.http_address, app, None).await.map_err(|e| {
        anyhow::anyhow!("{e} (pick another port with --http-address, or disable it with --http-address '')")
    })?;
    crate::query::discovery::set_own_url(url.clone());
    tokio::spawn(crate::dashboard::feed::follow_when_started(feed, None, Duration::from_secs(1)));
    println!("live dashboard at {url}/dashboard · query API at {url}/v1/stores · Prometheus metrics at {url}/metrics");
    Ok(())
}

/// Lands the fact outputs in the lake (when there is one); writes what changed every 10 s, and
/// at the end.
async fn land(outputs: Vec<Output>, lake: Option<&mut FactLake>, end: bool) -> anyhow::Result<()> {
    let Some(lake) = lake else { return Ok(()) };
    for output in &outputs {
        lake.push(output).await?;
    }
    if end || lake.last_flush.elapsed() >= Duration::from_secs(10) {
        lake.flush().await?;
    }
    Ok(())
}
