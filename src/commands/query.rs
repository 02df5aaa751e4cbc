//! `happystreams query`: read the live funnel.
//!
//! - `--url URL` asks a running instance's query API (`docs/QUERIES.md`, [`super::query_api`]):
//!   its stores, a key, a key range or a key's windows.
//! - `--topic T` reads an output topic from the start to the end and prints the latest value of
//!   every key — how to read the funnel without the application running. `--follow` keeps
//!   reading and prints what changes.
//!
//! A null value (a tombstone) removes its key. Keys are compared by their decoded JSON text.
//! Output: `--format table` (a column per field of the values) or `--format json` (one object
//! per key: `key`, `value`, `partition`, `offset`, `timestamp`; with `--follow`, one per change).

use super::decode::{DecodeArgs, DecodeError, RecordDecoder};
use crate::codec::Format;
use crate::config::Config;
use crate::connectors::kafka::{KafkaConfig, Reader, ReaderContext, record_from};
use crate::record::Record;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the latest values are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// An aligned text table, a column per value field.
    Table,
    /// One JSON object per key.
    Json,
}

/// Flags of `happystreams query`.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// The topic to read (an output topic of a topology, or any keyed topic).
    #[arg(long, required_unless_present = "url", conflicts_with = "url")]
    pub topic: Option<String>,
    /// Ask a running instance instead (its HTTP server, e.g. http://127.0.0.1:9464): without
    /// `--store`, list its stores.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// With `--url`: the store to query (see the list).
    #[arg(long, requires = "url")]
    pub store: Option<String>,
    /// With `--store`: the key to look up, as JSON text (`42`, `'"ads"'`, `'{"campaign": "x", "click_day": 3}'`).
    #[arg(long, requires = "store")]
    pub key: Option<String>,
    /// With `--store` and no `--key`: the first key of a range (JSON text); with `--windows`:
    /// the earliest window start (ms since the epoch).
    #[arg(long, requires = "store")]
    pub from: Option<String>,
    /// The last key of a range (JSON text, included); with `--windows`: the latest window start (ms).
    #[arg(long, requires = "store")]
    pub to: Option<String>,
    /// A range's maximum number of entries.
    #[arg(long, requires = "store")]
    pub limit: Option<usize>,
    /// With `--key`: list the key's windows (windowed stores).
    #[arg(long, requires = "key")]
    pub windows: bool,
    /// Versioned tables: the row valid at this time (ms since the epoch).
    #[arg(long, requires = "store")]
    pub as_of: Option<i64>,
    /// Let a restoring partition answer when it is this many records or fewer from complete.
    #[arg(long, requires = "store")]
    pub max_lag: Option<u64>,
    /// The instance's bearer token (`runtime.http_token`); also read from `HAPPYSTREAMS_HTTP_TOKEN`.
    #[arg(long, env = "HAPPYSTREAMS_HTTP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Kafka bootstrap servers (overrides the config).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_servers: Option<String>,
    /// How the values are encoded.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub value_format: Format,
    /// How the keys are encoded (happystreams' sinks write JSON keys whatever the value format).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub key_format: Format,
    /// Output: `table` or `json`.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub format: Output,
    /// Keep reading: print each change (`json`) or the table again when it changed (`table`),
    /// until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
}

/// One key's latest record.
#[derive(Debug, Clone)]
pub(super) struct Latest {
    pub(super) key: Json,
    pub(super) value: Json,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) timestamp: Option<i64>,
}

impl Latest {
    fn to_json(&self) -> Json {
        json!({"key": self.key, "value": self.value, "partition": self.partition, "offset": self.offset, "timestamp": self.timestamp})
    }
}

/// How long reading may go without a record or an end of partition before it is an error.
const STALLED: Duration = Duration::from_secs(30);

/// Runs the command, writing to `out`.
pub async fn run(args: &QueryArgs, config: &Config, out: &mut impl Write) -> Result<(), DecodeError> {
    if let Some(url) = &args.url {
        return super::query_api::run(url, args, out).await;
    }
    let topic_name = args.topic.clone().unwrap_or_default();
    let mut kafka = config.kafka.clone();
    if let Some(servers) = &args.bootstrap_servers {
        kafka.bootstrap_servers = servers.clone();
    }
    let decoder = RecordDecoder::new(&decode_args(args), config)?;
    let consumer = reader(&kafka, &topic_name)?;
    let topic: Arc<str> = Arc::from(topic_name.as_str());
    let mut latest: BTreeMap<String, Latest> = BTreeMap::new();
    let mut changes = Vec::new();
    // Every partition to its end: each reports its end once it has been read that far.
    let partitions = consumer.assignment().map_or(0, |a| a.count());
    let mut ended = BTreeSet::new();
    let mut progress = Instant::now();
    while ended.len() < partitions {
        if progress.elapsed() > STALLED {
            return Err(DecodeError::Usage(format!(
                "reading `{}` stalled: no record and no end of partition for {} s ({} of {partitions} partitions read to their end); check the brokers",
                topic_name,
                STALLED.as_secs(),
                ended.len()
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
                progress = Instant::now();
            }
            Some(Err(e)) => return Err(DecodeError::Usage(format!("reading `{topic_name}`: {e}"))),
            Some(Ok(message)) => {
                progress = Instant::now();
                let record = record_from(&message, topic.clone());
                apply(&decoder, &record, &mut latest, &mut changes).await;
            }
        }
    }
    print(args.format, &latest, out)?;
    if !args.follow {
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    tokio::spawn(async move {
        crate::commands::shutdown_signal().await;
        stopping.store(true, Ordering::Relaxed);
    });
    changes.clear();
    let mut shown = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(DecodeError::Usage(format!("reading `{topic_name}`: {e}"))),
            Some(Ok(message)) => {
                let record = record_from(&message, topic.clone());
                apply(&decoder, &record, &mut latest, &mut changes).await;
            }
        }
        tokio::task::yield_now().await;
        if changes.is_empty() || (args.format == Output::Table && shown.elapsed() < Duration::from_secs(1)) {
            continue;
        }
        match args.format {
            Output::Json => {
                for change in &changes {
                    writeln!(out, "{}", change.to_json()).map_err(DecodeError::Output)?;
                }
                out.flush().map_err(DecodeError::Output)?;
            }
            Output::Table => {
                writeln!(out, "\n-- {} keys, {} changed", latest.len(), changes.len()).map_err(DecodeError::Output)?;
                print(Output::Table, &latest, out)?;
            }
        }
        changes.clear();
        shown = Instant::now();
    }
    Ok(())
}

fn decode_args(args: &QueryArgs) -> DecodeArgs {
    DecodeArgs {
        files: Vec::new(),
        jsonl: None,
        topic: args.topic.clone(),
        partition: 0,
        offset: 0,
        count: 0,
        bootstrap_servers: args.bootstrap_servers.clone(),
        format: args.value_format,
        key_format: Some(args.key_format),
        debezium: false,
        schema: None,
        key_schema: None,
        row_schema: None,
        fail_fast: false,
    }
}

/// A consumer assigned every partition of `topic` from its earliest record (older ones may have
/// been deleted by retention), reporting each partition's end; a clear error when the topic
/// does not exist.
fn reader(kafka: &KafkaConfig, topic: &str) -> Result<Reader, DecodeError> {
    let consumer: Reader = kafka
        .consumer_config()
        .set("group.id", "happystreams-query")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create_with_context(ReaderContext)
        .map_err(|e| DecodeError::Usage(format!("invalid Kafka client settings: {e}; check kafka.properties")))?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(15)).map_err(|e| {
        DecodeError::Usage(format!(
            "cannot read the metadata of `{topic}` from {}: {e}; check --bootstrap-servers and that the brokers are up",
            kafka.bootstrap_servers
        ))
    })?;
    let count = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
    if count == 0 {
        return Err(DecodeError::Usage(format!(
            "topic `{topic}` does not exist on {}; `happystreams run` creates a topology's output topics when it starts",
            kafka.bootstrap_servers
        )));
    }
    let mut assignment = TopicPartitionList::new();
    for partition in 0..count as i32 {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|e| DecodeError::Usage(e.to_string()))?;
    }
    consumer.assign(&assignment).map_err(|e| DecodeError::Usage(format!("assigning `{topic}`: {e}")))?;
    Ok(consumer)
}

async fn apply(
    decoder: &RecordDecoder,
    record: &Record,
    latest: &mut BTreeMap<String, Latest>,
    changes: &mut Vec<Latest>,
) {
    let fields = match decoder.decode(record).await {
        Ok(fields) => fields,
        Err(error) => {
            eprintln!("skipped a record that does not decode: {error}");
            return;
        }
    };
    let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()).unwrap_or(Json::Null);
    let (key, value) = (field("key"), field("value"));
    let entry = Latest {
        key: key.clone(),
        value: value.clone(),
        partition: record.position.as_ref().map_or(-1, |p| p.partition),
        offset: record.position.as_ref().map_or(-1, |p| p.offset),
        timestamp: record.timestamp_ms,
    };
    let text = key.to_string();
    if value.is_null() {
        latest.remove(&text);
    } else {
        latest.insert(text, entry.clone());
    }
    changes.push(entry);
}

pub(super) fn print(
    format: Output,
    latest: &BTreeMap<String, Latest>,
    out: &mut impl Write,
) -> Result<(), DecodeError> {
    let write = |out: &mut dyn Write, text: String| writeln!(out, "{text}").map_err(DecodeError::Output);
    match format {
        Output::Json => {
            for entry in latest.values() {
                write(out, entry.to_json().to_string())?;
            }
        }
        Output::Table => {
            for line in table(latest) {
                write(out, line)?;
            }
        }
    }
    out.flush().map_err(DecodeError::Output)
}

/// The latest values as aligned text: a `key` column, then one per field of the values (in
/// the order first seen), or a `value` column for values that are not objects.
fn table(latest: &BTreeMap<String, Latest>) -> Vec<String> {
    let mut columns: Vec<String> = vec!["key".into()];
    for entry in latest.values() {
        match &entry.value {
            Json::Object(fields) => {
                for name in fields.keys() {
                    if !columns.contains(name) {
                        columns.push(name.clone());
                    }
                }
            }
            _ if !columns.iter().any(|c| c == "value") => columns.push("value".into()),
            _ => {}
        }
    }
    let cell = |value: Option<&Json>| match value {
        None | Some(Json::Null) => String::new(),
        // Control characters escaped: topic data must not break the table or drive the terminal.
        Some(Json::String(text)) => {
            text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
        }
        Some(other) => other.to_string(),
    };
    let rows: Vec<Vec<String>> = latest
        .values()
        .map(|entry| {
            columns
                .iter()
                .map(|column| match (column.as_str(), &entry.value) {
                    ("key", _) => cell(Some(&entry.key)),
                    (name, Json::Object(fields)) => cell(fields.get(name)),
                    ("value", other) => cell(Some(other)),
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([columns[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    let mut lines = vec![line(&columns), widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ")];
    lines.extend(rows.iter().map(|r| line(r)));
    lines.push(format!("({} keys)", rows.len()));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(entries: &[(Json, Json)]) -> BTreeMap<String, Latest> {
        entries
            .iter()
            .map(|(k, v)| {
                (k.to_string(), Latest { key: k.clone(), value: v.clone(), partition: 0, offset: 0, timestamp: None })
            })
            .collect()
    }

    #[test]
    fn the_table_has_a_column_per_value_field_in_the_order_first_seen() {
        let lines = table(&latest(&[
            (json!("a"), json!({"source": "ads", "views": 3})),
            (json!("b"), json!({"source": "search", "views": 12, "extra": true})),
        ]));
        assert_eq!(lines[0], "key  source  views  extra");
        assert_eq!(lines[2], "a    ads     3");
        assert_eq!(lines[3], "b    search  12     true");
        assert_eq!(lines.last().unwrap(), "(2 keys)");
    }
}
