//! `happystreams lake-sink`: land Kafka topics in the lake as Parquet, exactly once per record
//! (see `connectors::lake::sink` for the file names and why a replay duplicates nothing). A
//! member of a consumer group: run several to share the partitions.

use crate::codec::avro::{AvroCodec, split_wire};
use crate::config::Config;
use crate::connectors::kafka::cached_watermarks;
use crate::connectors::lake::Lake;
use crate::connectors::lake::sink::{RowFormat, Segment, SinkRecord, segment_of};
use crate::connectors::registry::client::sr_settings;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Flags of `happystreams lake-sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct LakeSinkArgs {
    /// Topics of Confluent-framed Avro records landed as columns typed by their writer schemas
    /// (from the `[registry]`; `TOPIC` or `TOPIC=TABLE`). Repeat or separate with commas.
    #[arg(long, value_delimiter = ',', value_name = "TOPIC[=TABLE]")]
    pub avro: Vec<String>,
    /// Topics landed as columns from their JSON objects (`TOPIC` or `TOPIC=TABLE`;
    /// the table defaults to the topic name). Repeat or separate with commas.
    #[arg(long, value_delimiter = ',', value_name = "TOPIC[=TABLE]")]
    pub json: Vec<String>,
    /// Topics landed raw: key and value as text (`TOPIC` or `TOPIC=TABLE`).
    #[arg(long, value_delimiter = ',', value_name = "TOPIC[=TABLE]")]
    pub raw: Vec<String>,
    /// Consumer group (instances with the same group share the partitions).
    #[arg(long, default_value = "happystreams-lake-sink")]
    pub group_id: String,
    /// Kafka bootstrap servers (overrides `[kafka]`).
    #[arg(long, value_name = "HOST:PORT[,...]")]
    pub bootstrap_servers: Option<String>,
    /// Lake URL (overrides `[lake] url`): a directory or s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
    /// Offsets per segment: each partition's segment `[k·N, (k+1)·N)` becomes one file per
    /// Hive partition, and is held in memory until complete.
    #[arg(long, default_value_t = 10_000)]
    pub segment_records: i64,
    /// Rewrite incomplete segments' files at least this often (milliseconds), so the lake is
    /// fresh before a segment completes.
    #[arg(long, default_value_t = 10_000)]
    pub flush_interval_ms: u64,
    /// Stop once every assigned partition is read to its end and flushed (batch runs).
    #[arg(long)]
    pub exit_at_end: bool,
}

/// Partitions revoked by a rebalance: their buffered records are dropped (the next owner
/// replays them from the committed offset).
#[derive(Default)]
struct SinkContext {
    revoked: Mutex<Vec<(String, i32)>>,
    assigned: AtomicBool,
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // Reaching the end of a partition is how `--exit-at-end` knows it is done.
        if !crate::connectors::kafka::is_partition_eof(&error) {
            tracing::warn!(error = %error, reason, "Kafka client error (retried by the client)");
        }
    }
}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance
            && let Ok(mut revoked) = self.revoked.lock()
        {
            revoked.extend(partitions.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.assigned.store(true, Ordering::Relaxed);
        }
    }
}

fn tables(args: &LakeSinkArgs) -> anyhow::Result<BTreeMap<String, (String, RowFormat)>> {
    let mut tables = BTreeMap::new();
    for (specs, format) in [(&args.avro, RowFormat::Avro), (&args.json, RowFormat::Json), (&args.raw, RowFormat::Raw)] {
        for spec in specs.iter().filter(|s| !s.is_empty()) {
            let (topic, table) = spec.split_once('=').unwrap_or((spec, spec));
            anyhow::ensure!(
                !table.is_empty() && !table.starts_with('/') && !table.contains(".."),
                "lake table `{table}` (from `{spec}`) must be a relative path without `..`"
            );
            anyhow::ensure!(
                tables.insert(topic.to_owned(), (table.to_owned(), format)).is_none(),
                "topic `{topic}` is named twice"
            );
        }
    }
    anyhow::ensure!(!tables.is_empty(), "name the topics to land with --avro, --json and/or --raw");
    Ok(tables)
}

/// Rows of complete segments written to the lake by this process (the lineage run's count;
/// incomplete segments are written again at every flush and by the next run).
static ROWS_LANDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs the command, as one lineage run: the topics in, the lake tables out.
pub async fn run(args: &LakeSinkArgs, config: &Config) -> anyhow::Result<()> {
    use crate::observe::lineage::{Dataset, Run, around};
    let tables = tables(args)?;
    let lake_url = args.lake.clone().unwrap_or_else(|| config.lake.url.clone());
    let servers = args.bootstrap_servers.clone().unwrap_or_else(|| config.kafka.bootstrap_servers.clone());
    let inputs = tables.keys().map(|topic| Dataset::kafka(&servers, topic)).collect();
    let outputs = tables.values().map(|(table, _)| Dataset::lake(&lake_url, table)).collect();
    let lineage =
        Run::new(&config.lineage, &args.group_id, "LAKE_SINK", inputs, outputs).map_err(|e| anyhow::anyhow!(e))?;
    let counts = || serde_json::json!({"rows_landed": ROWS_LANDED.load(Ordering::Relaxed)});
    around(&config.lineage, lineage, counts, land(args, config, tables)).await
}

async fn land(
    args: &LakeSinkArgs,
    config: &Config,
    tables: BTreeMap<String, (String, RowFormat)>,
) -> anyhow::Result<()> {
    let mut lake_config = config.lake.clone();
    if let Some(url) = &args.lake {
        lake_config.url = url.clone();
    }
    let lake = Lake::open(&lake_config)?;
    // Writer schemas of Avro tables, fetched from the registry once per schema id.
    let avro = AvroCodec::with_registry(sr_settings(&config.registry)?);
    let mut kafka = config.kafka.clone();
    if let Some(servers) = &args.bootstrap_servers {
        kafka.bootstrap_servers = servers.clone();
    }
    let context = SinkContext::default();
    let consumer: BaseConsumer<SinkContext> = kafka
        .consumer_config()
        .set("group.id", &args.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .create_with_context(context)
        .map_err(|e| anyhow::anyhow!("Kafka consumer for {}: {e}", kafka.bootstrap_servers))?;
    let topics: Vec<&str> = tables.keys().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| anyhow::anyhow!("subscribing to {topics:?}: {e}"))?;
    tracing::info!(topics = ?topics, lake = %lake_config.url, group = %args.group_id, "lake sink started");

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        crate::commands::shutdown_signal().await;
        flag.store(true, Ordering::Relaxed);
    });
    let mut segments: BTreeMap<(String, i32), Segment> = BTreeMap::new();
    let mut at_end: BTreeSet<(String, i32)> = BTreeSet::new();
    // Committed offsets of partitions nothing was read from yet (see `mark_ends`).
    let mut committed: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
    let mut last_flush = Instant::now();
    let mut landed = 0usize;
    anyhow::ensure!(args.segment_records > 0, "--segment-records must be at least 1");
    loop {
        let message = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(200)));
        if let Ok(mut revoked) = consumer.context().revoked.lock() {
            for partition in revoked.drain(..) {
                // The next owner rebuilds the segment from its start (the committed offset).
                segments.remove(&partition);
                at_end.remove(&partition);
                committed.remove(&partition);
            }
        }
        match message {
            Some(Ok(m)) => {
                let partition = (m.topic().to_owned(), m.partition());
                if tables.get(&partition.0).is_some_and(|(_, format)| *format == RowFormat::Avro)
                    && let Some(Ok((id, _))) = m.payload().map(split_wire)
                {
                    avro.schema(id).await.map_err(|e| {
                        anyhow::anyhow!(
                            "{}[{}]@{}: the writer schema {id} from the registry at {}: {e}",
                            partition.0,
                            partition.1,
                            m.offset(),
                            config.registry.url
                        )
                    })?;
                }
                at_end.remove(&partition);
                let start = segment_of(m.offset(), args.segment_records);
                if let Some(done) = segments.get(&partition).filter(|s| s.start != start) {
                    // The segment is complete: its final files, then the group moves past it.
                    let rows = write_segment(done, &lake, &tables, &partition, &avro).await?;
                    landed += rows;
                    ROWS_LANDED.fetch_add(rows as u64, Ordering::Relaxed);
                    let mut offsets = TopicPartitionList::new();
                    offsets.add_partition_offset(&partition.0, partition.1, Offset::Offset(start))?;
                    tokio::task::block_in_place(|| consumer.commit(&offsets, CommitMode::Sync)).map_err(|e| {
                        anyhow::anyhow!(
                            "committing {}[{}] at {start}: {e} (the segment is rewritten on replay)",
                            partition.0,
                            partition.1
                        )
                    })?;
                    segments.remove(&partition);
                }
                let segment = segments.entry(partition).or_insert_with(|| Segment::new(start));
                segment.push(SinkRecord {
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis().unwrap_or(0),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                });
            }
            Some(Err(KafkaError::PartitionEOF(_))) => mark_ends(&consumer, &mut at_end, &mut committed),
            Some(Err(e)) => tracing::warn!(error = %e, "Kafka consumer error (retried by the client)"),
            None => {}
        }
        let stopping = stop.load(Ordering::Relaxed);
        let all_at_end =
            args.exit_at_end && !at_end.is_empty() && consumer.context().assigned.load(Ordering::Relaxed) && {
                let assignment = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                assignment > 0 && at_end.len() == assignment
            };
        if stopping || all_at_end || last_flush.elapsed() >= Duration::from_millis(args.flush_interval_ms) {
            // Incomplete segments: rewrite their files with what was read so far.
            for (partition, segment) in segments.iter_mut().filter(|(_, s)| s.dirty) {
                landed += write_segment(segment, &lake, &tables, partition, &avro).await?;
                segment.dirty = false;
            }
            last_flush = Instant::now();
        }
        if stopping || all_at_end {
            break;
        }
    }
    // Leave the group now, so the partitions move to other members without a session timeout.
    tokio::task::block_in_place(|| {
        consumer.unsubscribe();
        drop(consumer);
    });
    let records: usize = segments.values().map(|s| s.records.len()).sum();
    eprintln!(
        "lake sink stopped: {landed} rows written to {} ({records} records of incomplete segments are rewritten by the next run)",
        lake_config.url
    );
    Ok(())
}

/// Writes a segment's files if its topic is landed; returns the rows written.
async fn write_segment(
    segment: &Segment,
    lake: &Lake,
    tables: &BTreeMap<String, (String, RowFormat)>,
    (topic, partition): &(String, i32),
    avro: &AvroCodec,
) -> anyhow::Result<usize> {
    let Some((table, format)) = tables.get(topic) else { return Ok(0) };
    let rows = segment.write(lake, table, *format, topic, *partition, avro).await?;
    tracing::debug!(topic, partition, segment = segment.start, rows, "segment files written");
    Ok(rows)
}

/// Partitions whose position reached the high watermark of their last fetch (the end-of-partition
/// event names the partition but not its topic). A partition nothing was read from yet has no
/// position: reading starts at its committed offset, or at its low watermark when there is no
/// commit or the commit is below it (retention). It is at its end when that start is its high
/// watermark (empty, or nothing new since the last run); a commit past the end (a re-created
/// topic) is reset by the client, so it is not the end.
fn mark_ends(
    consumer: &BaseConsumer<SinkContext>,
    at_end: &mut BTreeSet<(String, i32)>,
    committed: &mut BTreeMap<(String, i32), Option<i64>>,
) {
    let Ok(positions) = consumer.position() else { return };
    let unread: Vec<(String, i32)> = positions
        .elements()
        .iter()
        .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
        .map(|e| (e.topic().to_owned(), e.partition()))
        .filter(|p| !committed.contains_key(p))
        .collect();
    if !unread.is_empty() {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in &unread {
            list.add_partition(topic, *partition);
        }
        let offsets = tokio::task::block_in_place(|| consumer.committed_offsets(list, Duration::from_secs(10)));
        for e in offsets.as_ref().map(TopicPartitionList::elements).unwrap_or_default() {
            let offset = if let Offset::Offset(offset) = e.offset() { Some(offset) } else { None };
            committed.insert((e.topic().to_owned(), e.partition()), offset);
        }
    }
    for e in positions.elements() {
        let key = (e.topic().to_owned(), e.partition());
        let Some((low, high)) = cached_watermarks(consumer, e.topic(), e.partition()) else { continue };
        let ended = match e.offset() {
            Offset::Offset(position) => position >= high,
            // The low watermark is -1 when the broker did not give the log start.
            _ => committed.get(&key).is_some_and(|c| c.unwrap_or(0).max(low) == high),
        };
        if ended {
            at_end.insert(key);
        }
    }
}
