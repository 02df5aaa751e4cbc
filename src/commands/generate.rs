//! `happystreams generate`: seeded HappyTimes traffic (see `crate::generate`) to a JSON-lines
//! file or to Kafka topics.

use crate::config::Config;
use crate::connectors::kafka::{KafkaConfig, TopicSpec, create_missing_topics};
use crate::generate::{Options, generate};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Flags of `happystreams generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Number of visitors (the run's size scales with it).
    #[arg(long, default_value_t = 200)]
    pub visitors: u64,
    /// Days of activity.
    #[arg(long, default_value_t = 21)]
    pub days: u32,
    /// First day of activity (UTC, YYYY-MM-DD).
    #[arg(long, default_value = "2026-11-02")]
    pub start: String,
    /// Social mentions per outlet and day.
    #[arg(long, default_value_t = 12)]
    pub mentions_per_day: u32,
    /// Seed (same seed and options, same records).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write JSON lines (`{"source","topic","key","value","timestamp"}`) to this file (`-`: stdout).
    #[arg(long, value_name = "FILE", conflicts_with = "bootstrap_servers")]
    pub output: Option<PathBuf>,
    /// Produce to the HappyTimes topics of this Kafka cluster (overrides `[kafka]`).
    #[arg(long, value_name = "HOST:PORT[,...]")]
    pub bootstrap_servers: Option<String>,
    /// Kafka: at most this many records per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Kafka: create missing HappyTimes topics with this many partitions first.
    #[arg(long, value_name = "N")]
    pub partitions: Option<i32>,
    /// Only these sources (comma-separated: clicks, weblogs, social_mentions, visitors,
    /// content, ads, subscriptions, social_outlets); default all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

impl GenerateArgs {
    /// The generator options these flags ask for.
    pub fn options(&self) -> anyhow::Result<Options> {
        let day = chrono::NaiveDate::parse_from_str(&self.start, "%Y-%m-%d")
            .map_err(|_| anyhow::anyhow!("--start `{}` is not a date like 2026-11-02", self.start))?;
        let start_ms = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or_default();
        anyhow::ensure!(self.visitors > 0, "--visitors must be at least 1");
        anyhow::ensure!(self.days > 0, "--days must be at least 1");
        Ok(Options {
            seed: self.seed,
            visitors: self.visitors,
            days: self.days,
            start_ms,
            mentions_per_day: self.mentions_per_day,
        })
    }
}

/// Runs the command.
pub async fn run(args: &GenerateArgs, config: &Config) -> anyhow::Result<()> {
    let mut records = generate(&args.options()?);
    if !args.only.is_empty() {
        for name in &args.only {
            anyhow::ensure!(
                crate::generate::SOURCES.contains(&name.as_str()),
                "--only `{name}` is not a source; the sources are {}",
                crate::generate::SOURCES.join(", ")
            );
        }
        records.retain(|r| args.only.iter().any(|o| o == r.source));
    }
    if let Some(path) = &args.output {
        let mut out: Box<dyn Write> = if path.as_os_str() == "-" {
            Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
        } else {
            let file =
                std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            Box::new(std::io::BufWriter::new(file))
        };
        for record in &records {
            writeln!(out, "{}", record.to_json_line())?;
        }
        out.flush()?;
        eprintln!("{} records written", records.len());
        return Ok(());
    }
    let mut kafka = config.kafka.clone();
    if let Some(servers) = &args.bootstrap_servers {
        kafka.bootstrap_servers = servers.clone();
    }
    // Kafka Connect and Debezium partition by murmur2 of the key bytes, like the Java client.
    let producer: FutureProducer = kafka
        .producer_config()
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .map_err(|e| anyhow::anyhow!("Kafka producer for {}: {e}", kafka.bootstrap_servers))?;
    if let Some(partitions) = args.partitions {
        create_topics(&kafka, partitions).await?;
    }
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for (index, record) in records.iter().enumerate() {
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(index as f64 / args.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let key = record.key.to_string();
        let value = record.body.bytes();
        let mut message = FutureRecord::to(record.topic).key(key.as_bytes()).timestamp(record.timestamp);
        if let Some(value) = value.as_deref() {
            message = message.payload(value);
        }
        let delivery =
            producer.send_result(message).map_err(|(e, _)| anyhow::anyhow!("producing to {}: {e}", record.topic))?;
        pending.push_back(delivery);
        if pending.len() >= 10_000
            && let Some(oldest) = pending.pop_front()
        {
            check(oldest.await)?;
        }
    }
    for delivery in pending {
        check(delivery.await)?;
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| anyhow::anyhow!("flush: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} records produced to {} in {seconds:.2} s ({:.0} records/s)",
        records.len(),
        kafka.bootstrap_servers,
        records.len() as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Creates the HappyTimes topics that do not exist yet.
async fn create_topics(kafka: &KafkaConfig, partitions: i32) -> anyhow::Result<()> {
    anyhow::ensure!(partitions > 0, "--partitions must be at least 1");
    let specs: Vec<TopicSpec<'_>> = crate::generate::SOURCES
        .iter()
        .map(|s| TopicSpec { name: crate::generate::topic_of(s), partitions, replication: 1, config: &[] })
        .collect();
    for name in create_missing_topics(kafka, &specs).await.map_err(|e| anyhow::anyhow!(e))? {
        eprintln!("created topic {name} ({partitions} partitions)");
    }
    Ok(())
}

fn check(
    result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
) -> anyhow::Result<()> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(anyhow::anyhow!("a record was not delivered: {e}")),
        Err(_) => Err(anyhow::anyhow!("the producer stopped before delivering every record")),
    }
}
