//! `happystreams decode`: print records as decoded JSON lines — the tool to reach for when a
//! record looks wrong.
//!
//! Input is one of: record files (`--file`, repeatable; a file named `NNN.<topic>.value.<ext>`
//! picks up its `NNN.<topic>.key.<ext>` and `NNN.<topic>.headers.json` siblings, and
//! `.value.TOMBSTONE` means a null value), a JSON-lines dump (`--jsonl`), or a topic range on a
//! broker (`--topic`, `--partition`, `--offset`, `--count`).
//!
//! Output is one JSON object per record on stdout: `topic`, `partition`, `offset`, and either
//! the decoded `key`/`value` (or, with `--debezium`, the change `event`), or an `error` with its
//! class and message. Decoding goes on after a bad record; the exit status is non-zero when any
//! record failed.

use crate::codec::avro::{AvroCodec, AvroSchema, split_wire};
use crate::codec::connect::ConnectSchema;
use crate::codec::debezium::DebeziumDecoder;
use crate::codec::json::{self, JsonSchemaDecoder};
use crate::codec::{CodecError, Format};
use crate::config::Config;
use crate::connectors::kafka;
use crate::connectors::registry::client::sr_settings;
use crate::record::{Header, Position, Record, Value};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value as Json, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Flags of `happystreams decode`.
#[derive(Debug, Clone, clap::Args)]
pub struct DecodeArgs {
    /// Record file(s) to decode (raw bytes of one record value each).
    #[arg(long = "file", value_name = "PATH", conflicts_with_all = ["jsonl", "topic"])]
    pub files: Vec<PathBuf>,
    /// A JSON-lines dump: one object per line with `key`/`value` (JSON, text, or
    /// `key_base64`/`value_base64`), optional `topic`, `partition`, `offset`, `headers`.
    #[arg(long, value_name = "PATH", conflicts_with = "topic")]
    pub jsonl: Option<PathBuf>,
    /// Topic to read from (uses `kafka.bootstrap_servers` / `--bootstrap-servers`).
    #[arg(long)]
    pub topic: Option<String>,
    /// Partition to read.
    #[arg(long, default_value_t = 0)]
    pub partition: i32,
    /// First offset to read.
    #[arg(long, default_value_t = 0)]
    pub offset: i64,
    /// How many records to read at most (stops earlier at the end of the partition).
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Kafka bootstrap servers (overrides the config).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_servers: Option<String>,
    /// Value format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Key format (default: same as `--format`).
    #[arg(long, value_enum)]
    pub key_format: Option<Format>,
    /// Decode Debezium change events into change records (key, value and headers together).
    #[arg(long)]
    pub debezium: bool,
    /// Avro writer schema of the values, for decoding without a registry.
    #[arg(long, value_name = "FILE.avsc")]
    pub schema: Option<PathBuf>,
    /// Avro writer schema of the keys, for decoding without a registry.
    #[arg(long, value_name = "FILE.avsc")]
    pub key_schema: Option<PathBuf>,
    /// Row schema (`.avsc`) giving plain-JSON Debezium `before`/`after` their real column types.
    #[arg(long, value_name = "FILE.avsc")]
    pub row_schema: Option<PathBuf>,
    /// Stop at the first record that fails to decode.
    #[arg(long)]
    pub fail_fast: bool,
}

/// What a decode run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeSummary {
    /// Records read.
    pub records: usize,
    /// Records that failed to decode.
    pub errors: usize,
}

/// A problem with the command's input (not with a record).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// An input file cannot be read or parsed.
    #[error("{path}: {detail}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Reading from Kafka failed.
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaReadError),
    /// The flags do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// A record failed and `--fail-fast` was given.
    #[error("stopped at the first bad record: {0}")]
    Record(CodecError),
    /// The output could not be written (closed pipe, full disk).
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

/// Runs the command, writing JSON lines to `out`.
pub async fn run(args: &DecodeArgs, config: &Config, out: &mut impl Write) -> Result<DecodeSummary, DecodeError> {
    let records = read_input(args, config).await?;
    let decoder = RecordDecoder::new(args, config)?;
    let mut summary = DecodeSummary::default();
    for record in &records {
        summary.records += 1;
        let mut line = match &record.position {
            Some(p) => json!({"topic": &*p.topic, "partition": p.partition, "offset": p.offset}),
            None => json!({}),
        };
        if let Some(ts) = record.timestamp_ms {
            line["timestamp"] = json!(ts);
        }
        match decoder.decode(record).await {
            Ok(fields) => {
                for (k, v) in fields {
                    line[k] = v;
                }
            }
            Err(error) => {
                summary.errors += 1;
                tracing::warn!(%error, "record failed to decode");
                if args.fail_fast {
                    return Err(DecodeError::Record(error));
                }
                line["error"] = json!({"class": error.class(), "message": error.to_string()});
            }
        }
        writeln!(out, "{line}").map_err(DecodeError::Output)?;
    }
    out.flush().map_err(DecodeError::Output)?;
    Ok(summary)
}

pub(crate) struct RecordDecoder {
    args: DecodeArgs,
    avro: Option<Arc<AvroCodec>>,
    /// Writer schemas from `--schema` / `--key-schema`, registered under whatever id a record
    /// names (offline decoding).
    offline_value: Option<String>,
    offline_key: Option<String>,
    json_schema: JsonSchemaDecoder,
    row_schema: Option<ConnectSchema>,
    debezium: Option<DebeziumDecoder>,
}

fn read_schema_file(path: &Path) -> Result<String, DecodeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DecodeError::Input { path: path.to_owned(), detail: e.to_string() })?;
    AvroSchema::parse(0, &text)
        .map_err(|e| DecodeError::Input { path: path.to_owned(), detail: format!("not a usable Avro schema: {e}") })?;
    Ok(text)
}

impl RecordDecoder {
    pub(crate) fn new(args: &DecodeArgs, config: &Config) -> Result<Self, DecodeError> {
        let uses_avro = args.format == Format::Avro || args.key_format == Some(Format::Avro);
        if args.debezium && args.key_format.is_some_and(|k| k != args.format) {
            return Err(DecodeError::Usage("--debezium decodes key and value with the same converter; drop --key-format or make it equal to --format".into()));
        }
        let offline_value = args.schema.as_deref().map(read_schema_file).transpose()?;
        let offline_key = args.key_schema.as_deref().map(read_schema_file).transpose()?;
        let avro = uses_avro.then(|| {
            Ok::<_, DecodeError>(Arc::new(match (&offline_value, &offline_key) {
                (None, None) => AvroCodec::with_registry(
                    sr_settings(&config.registry).map_err(|e| DecodeError::Usage(e.to_string()))?,
                ),
                _ => AvroCodec::offline(),
            }))
        });
        let avro = avro.transpose()?;
        let row_schema = match &args.row_schema {
            Some(path) => {
                let text = read_schema_file(path)?;
                let json: Json = serde_json::from_str(&text)
                    .map_err(|e| DecodeError::Input { path: path.clone(), detail: e.to_string() })?;
                Some(
                    ConnectSchema::from_avro_json(&json)
                        .map_err(|e| DecodeError::Input { path: path.clone(), detail: e.to_string() })?,
                )
            }
            None => None,
        };
        let debezium = args.debezium.then(|| {
            let decoder = match (args.format, &avro) {
                (Format::Avro, Some(codec)) => DebeziumDecoder::avro(codec.clone()),
                (Format::JsonSchema, _) => DebeziumDecoder::json(true),
                (Format::Json, _) => DebeziumDecoder::json(false),
                (other, _) => {
                    return Err(DecodeError::Usage(format!(
                        "--debezium needs --format json, json-schema or avro, not {other:?}"
                    )));
                }
            };
            Ok(match &row_schema {
                Some(schema) => decoder.with_default_row_schema(schema.clone()),
                None => decoder,
            })
        });
        Ok(RecordDecoder {
            args: args.clone(),
            avro,
            offline_value,
            offline_key,
            json_schema: JsonSchemaDecoder::new(),
            row_schema,
            debezium: debezium.transpose()?,
        })
    }

    /// Offline mode: makes the part's `--schema`/`--key-schema` known under the id it names.
    async fn ensure_offline_schema(&self, bytes: Option<&[u8]>, is_value: bool) -> Result<(), CodecError> {
        let text = if is_value { &self.offline_value } else { &self.offline_key };
        let (Some(codec), Some(bytes)) = (&self.avro, bytes) else { return Ok(()) };
        if self.offline_value.is_none() && self.offline_key.is_none() {
            return Ok(());
        }
        let (id, _) = split_wire(bytes)?;
        if codec.schema(id).await.is_ok() {
            return Ok(());
        }
        match text {
            Some(text) => {
                codec.add_schema(AvroSchema::parse(id, text)?);
                Ok(())
            }
            None => Err(crate::codec::CodecErrorKind::UnsupportedSchema(format!(
                "no writer schema for the {} (schema id {id}); give --{}",
                if is_value { "value" } else { "key" },
                if is_value { "schema" } else { "key-schema" }
            ))
            .into()),
        }
    }

    pub(crate) async fn decode(&self, record: &Record) -> Result<Vec<(&'static str, Json)>, CodecError> {
        if let Some(debezium) = &self.debezium {
            if self.args.format == Format::Avro {
                for (bytes, is_value, part) in
                    [(record.key.as_deref(), false, "key"), (record.value.as_deref(), true, "value")]
                {
                    self.ensure_offline_schema(bytes, is_value)
                        .await
                        .map_err(|e| e.in_part(part).at(record.position.as_ref()))?;
                }
            }
            let event = debezium.decode(record).await?;
            return Ok(vec![("event", serde_json::to_value(&event).unwrap_or_default())]);
        }
        let key_format = self.args.key_format.unwrap_or(self.args.format);
        let key = self
            .decode_part(record.key.as_deref(), key_format, false)
            .await
            .map_err(|e| e.in_part("key").at(record.position.as_ref()))?;
        let value = self
            .decode_part(record.value.as_deref(), self.args.format, true)
            .await
            .map_err(|e| e.in_part("value").at(record.position.as_ref()))?;
        let headers: serde_json::Map<String, Json> = record
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.as_deref().map(raw_json).unwrap_or(Json::Null)))
            .collect();
        let mut fields = vec![("key", key.to_json()), ("value", value.to_json())];
        if !headers.is_empty() {
            fields.push(("headers", Json::Object(headers)));
        }
        Ok(fields)
    }

    async fn decode_part(&self, bytes: Option<&[u8]>, format: Format, is_value: bool) -> Result<Value, CodecError> {
        let Some(bytes) = bytes else { return Ok(Value::Null) };
        match format {
            Format::Json => match (&self.row_schema, is_value) {
                (Some(schema), true) => json::decode_plain_with_schema(bytes, schema),
                _ => json::decode_plain(bytes),
            },
            Format::JsonSchema => self.json_schema.decode(bytes).map(|(_, v)| v),
            Format::Avro => match &self.avro {
                Some(codec) => {
                    self.ensure_offline_schema(Some(bytes), is_value).await?;
                    codec.decode(bytes).await
                }
                None => Err(crate::codec::CodecErrorKind::UnsupportedSchema("no Avro schema source".into()).into()),
            },
            Format::Raw => Ok(raw_value(bytes)),
        }
    }
}

fn raw_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => Value::Bytes(bytes.to_vec()),
    }
}

fn raw_json(bytes: &[u8]) -> Json {
    raw_value(bytes).to_json()
}

async fn read_input(args: &DecodeArgs, config: &Config) -> Result<Vec<Record>, DecodeError> {
    if let Some(topic) = &args.topic {
        let mut kafka = config.kafka.clone();
        if let Some(servers) = &args.bootstrap_servers {
            kafka.bootstrap_servers = servers.clone();
        }
        let (topic, partition, offset, count) = (topic.clone(), args.partition, args.offset, args.count);
        let read = tokio::task::spawn_blocking(move || {
            kafka::read_range(&kafka, &topic, partition, offset, count, Duration::from_secs(10))
        });
        return Ok(read.await.map_err(|e| DecodeError::Usage(e.to_string()))??);
    }
    if let Some(path) = &args.jsonl {
        return read_jsonl(path);
    }
    if args.files.is_empty() {
        return Err(DecodeError::Usage("nothing to decode: give --file, --jsonl or --topic".into()));
    }
    args.files.iter().map(|p| read_record_file(p)).collect()
}

fn input_error(path: &Path, detail: impl Into<String>) -> DecodeError {
    DecodeError::Input { path: path.to_owned(), detail: detail.into() }
}

/// Reads one record file (see the module docs for the sibling-file convention).
pub fn read_record_file(path: &Path) -> Result<Record, DecodeError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some((stem, _)) = name.split_once(".value.") else {
        let value = std::fs::read(path).map_err(|e| input_error(path, e.to_string()))?;
        return Ok(Record {
            value: Some(Bytes::from(value)),
            position: Some(Position::new(path.display().to_string(), -1, 0)),
            ..Record::default()
        });
    };
    let value = if name.ends_with(".TOMBSTONE") {
        None
    } else {
        Some(Bytes::from(std::fs::read(path).map_err(|e| input_error(path, e.to_string()))?))
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let key_path =
        ["json", "avro", "bin", "txt"].iter().map(|ext| dir.join(format!("{stem}.key.{ext}"))).find(|p| p.exists());
    let key = match key_path {
        Some(p) => Some(Bytes::from(std::fs::read(&p).map_err(|e| input_error(&p, e.to_string()))?)),
        None => None,
    };
    let headers_path = dir.join(format!("{stem}.headers.json"));
    let headers = if headers_path.exists() { read_headers(&headers_path)? } else { Vec::new() };
    let (offset, topic) = match stem.split_once('.') {
        Some((seq, topic)) if seq.bytes().all(|b| b.is_ascii_digit()) => (seq.parse().unwrap_or(0), topic.to_owned()),
        _ => (0, stem.to_owned()),
    };
    Ok(Record { key, value, headers, timestamp_ms: None, position: Some(Position::new(topic, -1, offset)) })
}

fn header_value(entry: &Json) -> Option<Bytes> {
    let text = |v: &Json| v.as_str().map(|s| Bytes::copy_from_slice(s.as_bytes()));
    entry
        .get("value_base64")
        .and_then(Json::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(Bytes::from)
        .or_else(|| entry.get("value").and_then(text))
        // Captured Kafka Connect headers: the value as Connect's default SimpleHeaderConverter writes it.
        .or_else(|| entry.get("SimpleHeaderConverter").and_then(text))
}

fn headers_from(json: &Json) -> Vec<Header> {
    match json {
        Json::Array(items) => items
            .iter()
            .filter_map(|h| Some(Header { key: h.get("key")?.as_str()?.to_owned(), value: header_value(h) }))
            .collect(),
        Json::Object(map) => map
            .iter()
            .map(|(k, v)| Header { key: k.clone(), value: v.as_str().map(|s| Bytes::copy_from_slice(s.as_bytes())) })
            .collect(),
        _ => Vec::new(),
    }
}

fn read_headers(path: &Path) -> Result<Vec<Header>, DecodeError> {
    let text = std::fs::read(path).map_err(|e| input_error(path, e.to_string()))?;
    let json: Json = serde_json::from_slice(&text).map_err(|e| input_error(path, format!("not JSON: {e}")))?;
    Ok(headers_from(&json))
}

fn part_bytes(line: &Json, name: &str) -> Result<Option<Bytes>, String> {
    if let Some(b64) = line.get(format!("{name}_base64")).and_then(Json::as_str) {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| format!("`{name}_base64` is not base64: {e}"));
    }
    let field = if name == "value" && line.get("value").is_none() { "payload" } else { name };
    Ok(match line.get(field) {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(Bytes::copy_from_slice(s.as_bytes())),
        Some(other) => Some(Bytes::from(other.to_string())),
    })
}

/// Reads a JSON-lines dump (see [`DecodeArgs::jsonl`]).
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>, DecodeError> {
    let text = std::fs::read_to_string(path).map_err(|e| input_error(path, e.to_string()))?;
    parse_jsonl(&text, &path.display().to_string())
}

/// Parses JSON-lines dump text; `source` names it in errors.
pub fn parse_jsonl(text: &str, source: &str) -> Result<Vec<Record>, DecodeError> {
    let path = Path::new(source);
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |detail: String| input_error(path, format!("line {}: {detail}", index + 1));
        let json: Json = serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
        let topic = json.get("topic").and_then(Json::as_str).unwrap_or("jsonl").to_owned();
        let offset = json.get("offset").or_else(|| json.get("seq")).and_then(Json::as_i64).unwrap_or(index as i64);
        let partition = json.get("partition").and_then(Json::as_i64).map_or(-1, |p| p as i32);
        let headers = json.get("headers").or_else(|| json.get("connect_headers")).map(headers_from).unwrap_or_default();
        records.push(Record {
            key: part_bytes(&json, "key").map_err(at)?,
            value: part_bytes(&json, "value").map_err(at)?,
            headers,
            timestamp_ms: json.get("timestamp").or_else(|| json.get("ts")).and_then(Json::as_i64),
            position: Some(Position::new(topic, partition, offset)),
        });
    }
    Ok(records)
}
