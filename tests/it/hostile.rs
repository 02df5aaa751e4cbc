//! Hostile input at volume, through every source format: per format, one `happystreams run`
//! instance on Tansu reads N records (20,000 here; `HAPPYSTREAMS_HOSTILE_RECORDS=1000000` by
//! hand), one in a hundred of them hostile — random bytes, truncated values (JSON cut short,
//! Avro whose length prefix promises more than follows), unknown schema ids, JSON (and Avro) of
//! the wrong shape, values of 10 MiB, JSON nested 10,000 deep, keys that are not UTF-8, null
//! values — through a source with `on_error: dead_letter` and a stateless path to an output
//! topic.
//!
//! It proves, per format: the instance never stops; the output holds exactly the records the
//! format accepts, each once; the dead-letter topic holds exactly the others, each once, with
//! its key, value, timestamp and headers byte for byte plus the headers saying why and where it
//! came from (`happystreams.error.class`, `.error.message`, `.source.topic`, `.source.partition`,
//! `.source.offset`, `.source.timestamp`); the instance's peak RSS stays under a bound that
//! keeping the 10 MiB values, or the input, would break ([`PEAK_RSS_MIB`]).
//!
//! What a format accepts is the product's contract, not this test's: a `text` line is any bytes
//! (read lossily), so random bytes, cut lines, JSON and 10 MiB lines there are processed, and a
//! plain source's record key is opaque (JSON, else text, else bytes), so a key that is not UTF-8
//! is no error there; a Debezium key is decoded as part of the change, so there it is. A null
//! value is a bad record on a stream source, and a tombstone (no hostile input) on a Debezium one.

use crate::rig::{self, create_topic, tansu};
use crate::runtime::{Instance, START, Setup};
use happystreams::codec::avro::{AvroSchema, avro_schema_from_connect, frame};
use happystreams::codec::json::JsonSchemaDecoder;
use happystreams::connectors::registry::client::sr_settings;
use happystreams::connectors::registry::{RegistryConfig, RegistryStore, RunningRegistry};
use happystreams::record::{Row, Value};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schema_registry_converter::async_impl::schema_registry::post_schema;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hasher};
use std::time::{Duration, Instant};

/// Records per format in CI (debug build); `HAPPYSTREAMS_HOSTILE_RECORDS` overrides it.
const CI_RECORDS: usize = 20_000;
/// One record in this many is hostile (1%).
const HOSTILE_EVERY: usize = 100;
/// Values of 10 MiB per format, spread over the run ("a handful", whatever the volume).
const HUGE_VALUES: usize = 6;
const HUGE_BYTES: usize = 10 << 20;
/// How deep the nested JSON goes.
const DEPTH: usize = 10_000;
/// What the length prefix of a truncated Avro string claims: 400 MB, under apache-avro's own
/// 512 MiB allocation limit, so only a decoder that checks it against the bytes left refuses it
/// before allocating it.
const CLAIMED_LENGTH: i64 = 400_000_000;
/// Schema ids no registry here knows start at this one.
const UNKNOWN_IDS: u32 = 1_000_000;
/// Partitions of the input and output topics.
const PARTITIONS: i32 = 2;
/// `message.max.bytes` of the `text` instance's producer: its 10 MiB lines are good records and
/// go to the output whole. The other formats run with librdkafka's default (1,000,000 bytes), as
/// users do: their 10 MiB values are bad, and the dead letter keeps the first bytes that fit,
/// with `happystreams.dead_letter.value_bytes` giving the full length. (Before that, the instance
/// stopped at the first such dead letter, "MessageSizeTooLarge", and again at every restart.)
/// Tansu itself takes records of 120 MB.
const MAX_RECORD_BYTES: &str = "64000000";
/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;
/// Bound on the instance's peak RSS (VmHWM), MiB, for the debug binary with one stream thread.
///
/// Measured by hand (2026-12, Tansu, records produced before the instance starts): 172–238 MiB
/// at 20,000 records with six 10 MiB values (the most for `text`, whose 10 MiB lines also go to
/// the output), and 209 MiB at 200,000 records of `json`, the same at ten times the volume. That
/// is the binary and its clients (~100 MiB), librdkafka's prefetch (`queued.max.messages.kbytes`,
/// 64 MiB) and the 10 MiB value at hand with its few copies (fetch buffer, record, dead-letter or
/// output copy, produce request). 320 MiB leaves a third more than the most measured.
///
/// It leaves no room for keeping the 10 MiB values: six of them, each kept with a copy or a
/// parsed form, are 120 MiB and more (a schema cache keeping the schemas of four 10 MiB
/// JSON-with-schema envelopes measured 397 MiB, of one 265 MiB); nor for a 10-byte record making
/// the decoder allocate and clear the 400 MB its length prefix claims (measured 472 MiB); nor for
/// the input buffered whole at the by-hand volume (1,000,000 records of 100 bytes and more,
/// several hundred MiB as records).
const PEAK_RSS_MIB: u64 = 320;
/// The bound at the by-hand volume (over 100,000 records), where the input no longer fits the
/// buffers and they fill up: librdkafka's queue (`queued.max.messages.kbytes`, 64 MiB), fetches
/// in flight (`fetch.max.bytes`, 50 MB) and the task's queues (16 MiB per input partition).
/// Measured at 1,000,000 records: 228–295 MiB, and 353 MiB for `debezium-json-schema`, whose
/// records (a schema in each, ~2.5 KB) fill the buffers with the most bytes.
const PEAK_RSS_MIB_AT_VOLUME: u64 = 420;
/// A header value that is not UTF-8, on every hostile record: dead letters keep it as it is.
const BINARY_HEADER: &[u8] = &[0xff, 0x00, 0xfe, 0x80];
/// Records produced between waits for their deliveries.
const CHUNK: usize = 5_000;

/// The rows of the Avro formats (and the `.avsc` plain JSON is read with).
const ITEM_AVSC: &str = r#"{"type": "record", "name": "Item", "namespace": "hostile", "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"}]}"#;
/// A registered schema of another shape.
const OTHER_AVSC: &str =
    r#"{"type": "record", "name": "Other", "namespace": "hostile", "fields": [{"name": "flag", "type": "boolean"}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn hostile_json_at_volume() {
    hostile_input_through(Format::Json).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_json_with_schema_at_volume() {
    hostile_input_through(Format::JsonSchema).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_avro_at_volume() {
    hostile_input_through(Format::Avro).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_debezium_json_at_volume() {
    hostile_input_through(Format::DebeziumJson).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_debezium_json_with_schema_at_volume() {
    hostile_input_through(Format::DebeziumJsonSchema).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_debezium_avro_at_volume() {
    hostile_input_through(Format::DebeziumAvro).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_text_at_volume() {
    hostile_input_through(Format::Text).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_access_log_at_volume() {
    hostile_input_through(Format::AccessLog).await;
}

/// The source formats, as the product names them.
use happystreams::topology::spec::SourceFormat as Format;

/// What the test needs to know of a format.
trait FormatTraits: Copy {
    fn name(self) -> &'static str;
    fn cdc(self) -> bool;
    fn avro(self) -> bool;
    fn kinds(self) -> Vec<Kind>;
    fn dead_lettered(self, kind: Kind) -> bool;
}

impl FormatTraits for Format {
    /// The topology's `format:`.
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::JsonSchema => "json-schema",
            Format::Avro => "avro",
            Format::DebeziumJson => "debezium-json",
            Format::DebeziumJsonSchema => "debezium-json-schema",
            Format::DebeziumAvro => "debezium-avro",
            Format::Text => "text",
            Format::AccessLog => "access-log",
        }
    }

    fn cdc(self) -> bool {
        matches!(self, Format::DebeziumJson | Format::DebeziumJsonSchema | Format::DebeziumAvro)
    }

    fn avro(self) -> bool {
        matches!(self, Format::Avro | Format::DebeziumAvro)
    }

    /// The hostile kinds that apply, but the 10 MiB values (placed apart, see [`plan`]).
    fn kinds(self) -> Vec<Kind> {
        let mut kinds = vec![Kind::RandomBytes, Kind::Truncated, Kind::WrongShape, Kind::DeepNesting, Kind::KeyNotUtf8];
        if self.avro() {
            kinds.push(Kind::UnknownSchemaId);
        }
        if !self.cdc() {
            kinds.push(Kind::NullValue);
        }
        kinds
    }

    /// Whether a record of `kind` must go to the dead-letter topic (else to the output).
    fn dead_lettered(self, kind: Kind) -> bool {
        match (self, kind) {
            (_, Kind::NullValue) => true,
            (Format::Text, _) => false,
            (format, Kind::KeyNotUtf8) => format.cdc(),
            _ => true,
        }
    }
}

/// What is hostile about a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    RandomBytes,
    Truncated,
    UnknownSchemaId,
    WrongShape,
    Huge,
    DeepNesting,
    KeyNotUtf8,
    NullValue,
}

/// One format's run: topics, topology, records, the instance, and every check.
async fn hostile_input_through(format: Format) {
    let count = records_per_format();
    let bootstrap = tansu();
    let prefix = rig::unique_topic(&format!("hostile_{}", format.name())).replace('-', "_");
    let (topic, output, dlq) = (format!("{prefix}.items"), format!("{prefix}.out"), format!("{prefix}-items-dlq"));
    // Every topic before the instance would create one with the broker's time retention: the
    // records carry event times from 2025.
    create_topic(bootstrap, &topic, PARTITIONS).await;
    create_topic(bootstrap, &output, PARTITIONS).await;
    create_topic(bootstrap, &dlq, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let item_avsc = dir.path().join("item.avsc");
    std::fs::write(&item_avsc, ITEM_AVSC).unwrap();
    let topology = dir.path().join("hostile.yaml");
    std::fs::write(&topology, topology_yaml(format, &prefix, &item_avsc)).unwrap();
    let setup =
        Setup { bootstrap: bootstrap.to_owned(), prefix: prefix.clone(), dir, topology, partitions: PARTITIONS };

    let mut records = Records::new(format);
    let registry = if format.avro() { Some(records.register(&topic).await) } else { None };
    let expected = produce(&setup, &mut records, count).await;
    for kind in format.kinds() {
        let n = expected.kinds.get(&kind).copied().unwrap_or_default();
        assert!(n >= 3, "{n} records of {kind:?} in {count}: HAPPYSTREAMS_HOSTILE_RECORDS must be 10,000 or more");
    }
    assert_eq!(expected.kinds.get(&Kind::Huge).copied(), Some(HUGE_VALUES), "10 MiB values in {count} records");
    let want_out: usize = expected.output.values().sum();

    // One stream thread: one member in the group, no rebalance, so no record is processed twice
    // (at least once allows that after a rebalance) and the counts below are exact.
    let url = registry.as_ref().map(|r| r.url.clone()).unwrap_or_default();
    let raised = format == Format::Text;
    let mut env = Vec::new();
    if raised {
        env.push(("HAPPYSTREAMS_KAFKA__PRODUCER__PROPERTIES__MESSAGE_MAX_BYTES", MAX_RECORD_BYTES));
    }
    if registry.is_some() {
        env.push(("HAPPYSTREAMS_REGISTRY__URL", url.as_str()));
    }
    let mut instance = setup.start_with("only", &["--num-threads", "1"], &env);
    let stopped = |instance: &mut Instance| {
        if let Some(status) = instance.child.try_wait().unwrap() {
            panic!("{format:?}: the instance stopped ({status}); its log ends:\n{}", tail(&instance.log_text(), 25));
        }
    };

    // Until every record is read and went where it must.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120 + count as u64 / 500);
    let (read_label, out_label) = (format!("topic=\"{topic}\""), format!("topic=\"{output}\""));
    let mut first_read = None;
    loop {
        stopped(&mut instance);
        let read = instance.metric_labelled("records_in_total", &read_label);
        if read > 0.0 && first_read.is_none() {
            first_read = Some(Instant::now());
        }
        let dead = instance.metric_labelled("records_dead_lettered_total", "source=\"items\"");
        let out = instance.metric_labelled("records_out_total", &out_label);
        if read >= count as f64 && dead >= expected.dead.len() as f64 && out >= want_out as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{format:?}: {read} of {count} records read, {dead} of {} dead-lettered, {out} of {want_out} out; log:\n{}",
            expected.dead.len(),
            tail(&instance.log_text(), 25)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = first_read.map_or_else(|| started.elapsed(), |at| at.elapsed());
    // ...and delivered: counted by reading the topics (Tansu's ListOffsets answers are wrong,
    // INFRA.md, so no watermarks).
    let records_in = |topic: &str, partitions: i32| {
        let mut n = 0usize;
        read_topic(bootstrap, topic, partitions, |_| n += 1);
        n
    };
    while records_in(output.as_str(), PARTITIONS) < want_out || records_in(dlq.as_str(), 1) < expected.dead.len() {
        stopped(&mut instance);
        assert!(Instant::now() < deadline, "{format:?}: the outputs and dead letters were never all delivered");
        std::thread::sleep(Duration::from_millis(500));
    }
    let peak = peak_rss_mib(instance.child.id());
    let bound = if count > 100_000 { PEAK_RSS_MIB_AT_VOLUME } else { PEAK_RSS_MIB };
    let huge_dead = expected.dead.values().filter(|d| d.kind == Kind::Huge).count();
    println!(
        "hostile {}: {count} records in {:.1} s, {:.0} records/s; {} dead-lettered ({huge_dead} of 10 MiB), {want_out} out; peak RSS {peak} MiB",
        format.name(),
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64().max(0.001),
        expected.dead.len(),
    );

    // The output: exactly the records the format accepts, each once.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut unreadable: Vec<String> = Vec::new();
    read_topic(bootstrap, &output, PARTITIONS, |m| {
        let value: Option<Json> = m.payload().and_then(|v| serde_json::from_slice(v).ok());
        match value.as_ref().and_then(|v| output_identity(format, v)) {
            Some(identity) => *seen.entry(identity).or_default() += 1,
            None => {
                unreadable.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).chars().take(200).collect())
            }
        }
    });
    assert!(unreadable.is_empty(), "{format:?}: outputs that are not what the topology writes: {unreadable:?}");
    if seen != expected.output {
        let count_of = |map: &HashMap<u64, usize>, id: &u64| map.get(id).copied().unwrap_or_default();
        let missing: Vec<_> = expected.output.iter().filter(|(id, n)| count_of(&seen, *id) < **n).take(10).collect();
        let extra: Vec<_> = seen.iter().filter(|(id, n)| count_of(&expected.output, *id) < **n).take(10).collect();
        panic!(
            "{format:?}: {} outputs, want {want_out}; missing (identity, times) {missing:?}; extra {extra:?}",
            seen.values().sum::<usize>()
        );
    }

    // The dead letters: exactly the others, each once, as they were, saying why and from where.
    let mut problems = Vec::new();
    let mut letters: BTreeMap<usize, usize> = BTreeMap::new();
    read_topic(bootstrap, &dlq, 1, |m| {
        let headers: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        let header = |name: &str| headers.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref());
        let text = |name: &str| header(name).map(|v| String::from_utf8_lossy(v).into_owned());
        let Some(seq) = text("hostile.seq").and_then(|s| s.parse::<usize>().ok()) else {
            problems.push(format!("a dead letter without the record's own header hostile.seq: {headers:?}"));
            return;
        };
        *letters.entry(seq).or_default() += 1;
        let Some(want) = expected.dead.get(&seq) else {
            problems.push(format!(
                "record {seq} is no bad record but was dead-lettered: {:?}",
                text("happystreams.error.message")
            ));
            return;
        };
        let mut wrong = Vec::new();
        if m.key() != Some(want.key.as_slice()) {
            wrong.push("key".to_owned());
        }
        let cut = text("happystreams.dead_letter.value_bytes");
        match want.value {
            // Too large for the producer: the first bytes, and the full length in a header.
            Some((len, _)) if !raised && len > DEFAULT_MAX_RECORD_BYTES => {
                let kept = m.payload().map_or(0, <[u8]>::len);
                if cut != Some(len.to_string()) || kept == 0 || kept >= DEFAULT_MAX_RECORD_BYTES {
                    wrong.push(format!("a cut value of {kept} bytes with value_bytes {cut:?}, want {len}"));
                }
            }
            _ if m.payload().map(|v| (v.len(), digest(v))) != want.value || cut.is_some() => {
                wrong.push(format!(
                    "value ({:?} bytes, want {:?})",
                    m.payload().map(<[u8]>::len),
                    want.value.map(|v| v.0)
                ));
            }
            _ => {}
        }
        if m.timestamp().to_millis() != Some(START + seq as i64) {
            wrong.push(format!("timestamp {:?}", m.timestamp()));
        }
        let kind = format!("{:?}", want.kind);
        for (name, value) in [
            ("happystreams.error.class", "data".to_owned()),
            ("happystreams.source.topic", topic.clone()),
            ("happystreams.source.partition", want.partition.to_string()),
            ("happystreams.source.offset", want.offset.to_string()),
            ("happystreams.source.timestamp", (START + seq as i64).to_string()),
            ("hostile.kind", kind),
        ] {
            if text(name).as_deref() != Some(value.as_str()) {
                wrong.push(format!("{name} {:?}, want {value:?}", text(name)));
            }
        }
        if text("happystreams.error.message").is_none_or(|message| message.trim().is_empty()) {
            wrong.push("no happystreams.error.message".to_owned());
        }
        if header("hostile.bytes") != Some(BINARY_HEADER) {
            wrong.push(format!("hostile.bytes {:?}", header("hostile.bytes")));
        }
        if !wrong.is_empty() {
            problems.push(format!("the dead letter of record {seq} ({:?}): {}", want.kind, wrong.join("; ")));
        }
    });
    let missing: Vec<String> = expected
        .dead
        .iter()
        .filter(|(seq, _)| !letters.contains_key(*seq))
        .map(|(seq, d)| format!("{seq} ({:?})", d.kind))
        .collect();
    let repeated: Vec<_> = letters.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        problems.is_empty() && missing.is_empty() && repeated.is_empty(),
        "{format:?}: {} dead letters, want {}; not dead-lettered: {missing:?}; more than once: {repeated:?}; wrong: {:#?}",
        letters.values().sum::<usize>(),
        expected.dead.len(),
        &problems[..problems.len().min(10)]
    );

    assert!(
        peak < bound,
        "{format:?}: peak RSS {peak} MiB, bound {bound} MiB (see PEAK_RSS_MIB); log:\n{}",
        tail(&instance.log_text(), 10)
    );
    stopped(&mut instance);
    let status = instance.terminate();
    assert!(
        status.success(),
        "{format:?}: SIGTERM must stop the instance cleanly: {status}\n{}",
        tail(&instance.log_text(), 25)
    );
    if let Some(registry) = registry {
        registry.shutdown().await.unwrap();
    }
}

fn records_per_format() -> usize {
    match std::env::var("HAPPYSTREAMS_HOSTILE_RECORDS") {
        Ok(n) => {
            n.replace(['_', ','], "").parse().unwrap_or_else(|_| panic!("HAPPYSTREAMS_HOSTILE_RECORDS={n} is no count"))
        }
        Err(_) => CI_RECORDS,
    }
}

/// A source of `format` with `on_error: dead_letter` and a stateless path (a `select`) to a JSON
/// output topic.
fn topology_yaml(format: Format, prefix: &str, item_avsc: &std::path::Path) -> String {
    let declared = match format {
        // Plain JSON against the `.avsc` of its rows, as `topologies/happytimes.yaml` reads clicks.
        Format::Json => format!("\n    schema: {}", item_avsc.display()),
        Format::AccessLog => "\n    actions:\n      - { path: \"/item/{id}\", event_type: item }".to_owned(),
        _ => String::new(),
    };
    let select = match format {
        Format::Text => "{ line: line }",
        _ => "{ id: id }",
    };
    format!(
        r#"name: hostile
sources:
  items:
    topic: {prefix}.items
    format: {format}{declared}
    on_error: dead_letter
nodes:
  - name: picked
    from: items
    select: {select}
sinks:
  - {{ from: picked, topic: {prefix}.out, format: json }}
"#,
        format = format.name(),
    )
}

/// What the test expects of the records it produced.
#[derive(Default)]
struct Expected {
    /// Identity (see [`output_identity`]) → how many times it must be on the output.
    output: HashMap<u64, usize>,
    /// Record number → the dead letter it must become.
    dead: BTreeMap<usize, Dead>,
    /// Hostile records per kind.
    kinds: BTreeMap<Kind, usize>,
}

/// A record that must be dead-lettered, and where it was written.
struct Dead {
    kind: Kind,
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    /// Length and digest of the value (`None`: a null value).
    value: Option<(usize, u64)>,
}

/// Produces `count` records of `records`' format (each with its number in header `hostile.seq`,
/// timestamp `START + number`), and says where each must end up.
async fn produce(setup: &Setup, records: &mut Records, count: usize) -> Expected {
    let producer: FutureProducer = rig::client_config(&setup.bootstrap)
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set("message.max.bytes", MAX_RECORD_BYTES)
        // Tansu keeps every record in memory for the whole test binary.
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    let topic = setup.topic("items");
    let kinds_at = plan(count, records.format, &mut records.rng);
    let mut expected = Expected::default();
    let mut huge = 0;
    for from in (0..count).step_by(CHUNK) {
        let mut pending = Vec::new();
        for i in from..(from + CHUNK).min(count) {
            let kind = kinds_at.get(&i).copied();
            let (key, value) = match kind {
                None => {
                    let (key, value) = records.good(i);
                    (key, Some(value))
                }
                Some(kind) => {
                    huge += usize::from(kind == Kind::Huge);
                    records.hostile(i, kind, huge)
                }
            };
            let seq = i.to_string();
            let mut headers = OwnedHeaders::new().insert(Header { key: "hostile.seq", value: Some(seq.as_bytes()) });
            if let Some(kind) = kind {
                let name = format!("{kind:?}");
                headers = headers
                    .insert(Header { key: "hostile.kind", value: Some(name.as_bytes()) })
                    .insert(Header { key: "hostile.bytes", value: Some(BINARY_HEADER) });
                *expected.kinds.entry(kind).or_default() += 1;
            }
            let mut record =
                FutureRecord::<[u8], [u8]>::to(&topic).key(key.as_slice()).headers(headers).timestamp(START + i as i64);
            if let Some(value) = &value {
                record = record.payload(value.as_slice());
            }
            let delivery = producer.send_result(record).map_err(|(e, _)| e).unwrap();
            let dead = match kind {
                Some(kind) if records.format.dead_lettered(kind) => {
                    Some((kind, key, value.as_deref().map(|v| (v.len(), digest(v)))))
                }
                _ => {
                    *expected.output.entry(records.identity(i, value.as_deref())).or_default() += 1;
                    None
                }
            };
            pending.push((i, dead, delivery));
        }
        for (i, dead, delivery) in pending {
            let delivered = delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
            if let Some((kind, key, value)) = dead {
                let (partition, offset) = (delivered.partition, delivered.offset);
                expected.dead.insert(i, Dead { kind, partition, offset, key, value });
            }
        }
    }
    expected
}

/// Where the hostile records go: one in each block of [`HOSTILE_EVERY`] records, at a random
/// place in it; [`HUGE_VALUES`] of them, spread over the run, are 10 MiB values, the others take
/// the format's kinds in turn.
fn plan(count: usize, format: Format, rng: &mut Rng) -> BTreeMap<usize, Kind> {
    let slots = count / HOSTILE_EVERY;
    let kinds = format.kinds();
    let huge: Vec<usize> = (0..HUGE_VALUES).map(|k| (2 * k + 1) * slots / (2 * HUGE_VALUES)).collect();
    let mut plan = BTreeMap::new();
    let mut next = 0;
    for slot in 0..slots {
        let kind = if huge.contains(&slot) {
            Kind::Huge
        } else {
            next += 1;
            kinds[(next - 1) % kinds.len()]
        };
        plan.insert(slot * HOSTILE_EVERY + rng.below(HOSTILE_EVERY), kind);
    }
    plan
}

/// What identifies an output record: the `id` it carries, or for `text` the digest of its line.
fn output_identity(format: Format, value: &Json) -> Option<u64> {
    match format {
        Format::Text => Some(digest(value["line"].as_str()?.as_bytes())),
        _ => value["id"].as_u64(),
    }
}

/// Records of one format, good and hostile, the same for the same format every run.
struct Records {
    format: Format,
    rng: Rng,
    /// Connect schemas (JSON text) of the JSON-with-schema formats.
    item_schema: String,
    key_schema: String,
    envelope_schema: String,
    /// Writer schemas of the Avro formats, once registered.
    avro: Option<AvroSchemas>,
    /// Reads the JSON-with-schema twins of Debezium Avro records (as `avro_registry` does).
    json: JsonSchemaDecoder,
}

/// The registered writer schemas of an Avro format.
struct AvroSchemas {
    /// `Item`, or the Debezium envelope.
    value: AvroSchema,
    /// The Debezium key.
    key: Option<AvroSchema>,
    /// A schema of another shape: `Other` for `avro`, `Item` for `debezium-avro`.
    other: AvroSchema,
}

impl Records {
    fn new(format: Format) -> Records {
        let fields = json!([
            {"type": "int64", "optional": false, "field": "id"},
            {"type": "string", "optional": false, "field": "name"},
        ]);
        let item = json!({"type": "struct", "name": "hostile.Item", "optional": false, "fields": fields});
        let value = "hostile.public.items.Value";
        let row =
            |field: &str| json!({"type": "struct", "name": value, "optional": true, "field": field, "fields": fields});
        let mut source: Vec<Json> = ["version", "connector", "name", "db", "schema", "table"]
            .iter()
            .map(|field| json!({"type": "string", "optional": false, "field": field}))
            .collect();
        source.push(json!({"type": "int64", "optional": false, "field": "ts_ms"}));
        let envelope = json!({"type": "struct", "name": "hostile.public.items.Envelope", "optional": false, "fields": [
            row("before"),
            row("after"),
            {"type": "struct", "name": "io.debezium.connector.postgresql.Source", "optional": false,
                "field": "source", "fields": source},
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"},
        ]});
        let key = json!({"type": "struct", "name": "hostile.public.items.Key", "optional": false, "fields": [
            {"type": "int64", "optional": false, "field": "id"},
        ]});
        Records {
            format,
            rng: Rng::new(0x5eed_0000 + format as u64),
            item_schema: item.to_string(),
            key_schema: key.to_string(),
            envelope_schema: envelope.to_string(),
            avro: None,
            json: JsonSchemaDecoder::new(),
        }
    }

    /// Starts a Schema Registry with this (Avro) format's schemas.
    async fn register(&mut self, topic: &str) -> RunningRegistry {
        let registry =
            RunningRegistry::start("127.0.0.1:0".parse().unwrap(), RegistryStore::in_memory()).await.unwrap();
        let config = RegistryConfig { url: registry.url.clone(), ..RegistryConfig::default() };
        let schemas = match self.format {
            Format::Avro => AvroSchemas {
                value: register_schema(&config, format!("{topic}-value"), ITEM_AVSC).await,
                key: None,
                other: register_schema(&config, format!("{topic}.other-value"), OTHER_AVSC).await,
            },
            _ => {
                // The Avro schemas Confluent's AvroConverter writes for the Connect schemas.
                let avsc = |envelope: String| {
                    let (connect, _) = self.json.decode(envelope.as_bytes()).unwrap();
                    avro_schema_from_connect(&connect).to_string()
                };
                let key = avsc(with_schema(&self.key_schema, &json!({"id": 0})));
                let value = avsc(with_schema(&self.envelope_schema, &change(0, "r0")));
                AvroSchemas {
                    value: register_schema(&config, format!("{topic}-value"), &value).await,
                    key: Some(register_schema(&config, format!("{topic}-key"), &key).await),
                    other: register_schema(&config, format!("{topic}.other-value"), ITEM_AVSC).await,
                }
            }
        };
        self.avro = Some(schemas);
        registry
    }

    fn schemas(&self) -> &AvroSchemas {
        self.avro.as_ref().expect("the Avro schemas are registered first")
    }

    /// Key and value of good record `i`.
    fn good(&mut self, i: usize) -> (Vec<u8>, Vec<u8>) {
        // About 100 bytes a record: the input held whole shows at volume.
        let name = format!("r{i}-{}", String::from_utf8(self.rng.pick(WORD, 48)).unwrap());
        let key = json!({"id": i}).to_string().into_bytes();
        let value = match self.format {
            Format::Json => json!({"id": i, "name": name}).to_string().into_bytes(),
            Format::JsonSchema => with_schema(&self.item_schema, &json!({"id": i, "name": name})).into_bytes(),
            Format::Avro => self.schemas().value.encode(&item(i, name)).unwrap(),
            Format::Text => format!("good {i} {name}").into_bytes(),
            Format::AccessLog => format!(
                r#"203.0.113.{} - - [25/Nov/2026:10:00:00 +0000] "GET /item/{i}?name={name} HTTP/1.1" 200 512 "-" "hostile/1.0" "{}""#,
                i % 250,
                i % 97
            )
            .into_bytes(),
            Format::DebeziumJson => change(i, &name).to_string().into_bytes(),
            Format::DebeziumJsonSchema | Format::DebeziumAvro => {
                let key = with_schema(&self.key_schema, &json!({"id": i}));
                let value = with_schema(&self.envelope_schema, &change(i, &name));
                if self.format == Format::DebeziumJsonSchema {
                    return (key.into_bytes(), value.into_bytes());
                }
                let schemas = self.schemas();
                let encode = |schema: &AvroSchema, text: &str| {
                    let (_, value) = self.json.decode(text.as_bytes()).unwrap();
                    schema.encode(&value).unwrap()
                };
                return (encode(schemas.key.as_ref().unwrap(), key.as_str()), encode(&schemas.value, value.as_str()));
            }
        };
        (key, value)
    }

    /// Key and value (`None`: null) of hostile record `i`; `huge` counts the 10 MiB values so far.
    fn hostile(&mut self, i: usize, kind: Kind, huge: usize) -> (Vec<u8>, Option<Vec<u8>>) {
        let (key, good) = self.good(i);
        let value = match kind {
            Kind::RandomBytes => {
                let len = 1 + self.rng.below(512);
                self.rng.garbage(len)
            }
            Kind::Truncated => self.truncated(i, good),
            Kind::UnknownSchemaId => frame(UNKNOWN_IDS + self.rng.below(1_000_000) as u32, &good[5..]),
            Kind::WrongShape => self.wrong_shape(i),
            Kind::Huge => self.huge(i, huge, good),
            Kind::DeepNesting => self.deep(),
            Kind::KeyNotUtf8 => return (not_utf8(&mut self.rng), Some(good)),
            Kind::NullValue => return (key, None),
        };
        // One in four also has a key that is not UTF-8: its dead letter keeps it.
        let key = if self.rng.below(4) == 0 { not_utf8(&mut self.rng) } else { key };
        (key, Some(value))
    }

    /// A good value cut short; for Avro, one in three instead keeps its bytes and claims a
    /// 400 MB string where 3 bytes follow.
    fn truncated(&mut self, i: usize, good: Vec<u8>) -> Vec<u8> {
        if self.format.avro() && self.rng.below(3) == 0 {
            // Debezium: `before` null (union branch 0), `after` a row (branch 1); then the row's
            // `id` and the length of its `name`.
            let mut body = if self.format == Format::DebeziumAvro { vec![0, 2] } else { Vec::new() };
            body.extend(zigzag(i as i64));
            body.extend(zigzag(CLAIMED_LENGTH));
            body.extend_from_slice(b"abc");
            return frame(self.schemas().value.id, &body);
        }
        let cut = self.rng.below(good.len());
        good[..cut].to_vec()
    }

    /// Well-formed JSON (or Avro) that is not what the format carries.
    fn wrong_shape(&mut self, i: usize) -> Vec<u8> {
        let json = |value: Json| value.to_string().into_bytes();
        let item_schema = &self.item_schema;
        let mut choices: Vec<Vec<u8>> = match self.format {
            Format::Json | Format::Text => vec![
                json(json!({"id": "seven", "name": 3})),
                json(json!({"name": "no id"})),
                json(json!([1, 2, 3])),
                json(json!("a string")),
            ],
            Format::JsonSchema => vec![
                json(json!({"id": i, "name": "no envelope"})),
                with_schema(item_schema, &json!({"id": "seven", "name": "x"})).into_bytes(),
                with_schema(item_schema, &json!({"id": i})).into_bytes(),
            ],
            Format::Avro | Format::DebeziumAvro => vec![json(json!({"id": i, "name": "JSON, not Avro"}))],
            Format::DebeziumJson => vec![
                json(json!({"op": "z", "source": source(i), "after": {"id": i, "name": "x"}})),
                json(json!({"before": null, "after": {"id": i, "name": "no op"}, "source": source(i)})),
                json(json!([1, 2, 3])),
                json(json!({"op": "c", "source": source(i), "after": null})),
            ],
            Format::DebeziumJsonSchema => vec![
                json(change(i, "no envelope")),
                with_schema(item_schema, &json!({"id": i, "name": "no change"})).into_bytes(),
            ],
            Format::AccessLog => vec![
                json(json!({"id": i})),
                br#"203.0.113.9 - - [25/Nov/2026:10:00:00 +0000] "GET /item/1 HTTP/1.1" 200 512 "-" "ua""#.to_vec(),
                br#"203.0.113.9 - - [yesterday] "GET /item/1 HTTP/1.1" 200 512 "-" "hostile/1.0" "7""#.to_vec(),
            ],
        };
        match self.format {
            // A schema naming a type Connect does not have.
            Format::JsonSchema | Format::DebeziumJsonSchema => {
                choices.push(json(json!({"schema": {"type": "decimal128", "optional": false}, "payload": 1})));
            }
            // Avro of a registered schema that is not the topic's.
            Format::Avro => {
                let other = Value::Struct(Row::new().with("flag", Value::Bool(true)));
                choices.push(self.schemas().other.encode(&other).unwrap());
            }
            Format::DebeziumAvro => choices.push(self.schemas().other.encode(&item(i, "not a change".into())).unwrap()),
            _ => {}
        }
        let at = self.rng.below(choices.len());
        choices.swap_remove(at)
    }

    /// JSON nested [`DEPTH`] deep: alone, or inside an envelope that is otherwise right.
    fn deep(&mut self) -> Vec<u8> {
        let nested = match self.rng.below(2) {
            0 => format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH)),
            _ => format!("{}1{}", r#"{"a":"#.repeat(DEPTH), "}".repeat(DEPTH)),
        };
        let text = match self.format {
            Format::JsonSchema => with_schema(&self.item_schema, &RawJson(&nested)),
            Format::DebeziumJson => format!(r#"{{"op":"c","source":{},"after":{nested}}}"#, source(0)),
            Format::DebeziumJsonSchema => format!(r#"{{"schema":{nested},"payload":{{}}}}"#),
            _ => nested,
        };
        text.into_bytes()
    }

    /// A value of 10 MiB: random bytes (one in three), or one the format can parse but must
    /// refuse — for the JSON-with-schema formats an envelope whose schema alone is 10 MiB,
    /// another one every time; for `text`, a 10 MiB line.
    fn huge(&mut self, i: usize, n: usize, good: Vec<u8>) -> Vec<u8> {
        if self.format == Format::Text {
            return self.rng.pick(LINE, HUGE_BYTES);
        }
        if n % 3 == 0 {
            return self.rng.garbage(HUGE_BYTES);
        }
        let filler = || "x".repeat(HUGE_BYTES);
        match self.format {
            Format::JsonSchema | Format::DebeziumJsonSchema => huge_schema(i),
            Format::Json => json!({"id": filler(), "name": "x"}).to_string().into_bytes(),
            Format::DebeziumJson => json!({"op": "c", "source": source(i), "after": filler()}).to_string().into_bytes(),
            // 10 MiB left after the value.
            Format::Avro | Format::DebeziumAvro => [good, self.rng.garbage(HUGE_BYTES)].concat(),
            Format::AccessLog => [&good[..40], &self.rng.pick(LINE, HUGE_BYTES)[..]].concat(),
            Format::Text => unreachable!(),
        }
    }

    /// What identifies good record `i` on the output (see [`output_identity`]).
    fn identity(&self, i: usize, value: Option<&[u8]>) -> u64 {
        match self.format {
            Format::Text => digest(String::from_utf8_lossy(value.unwrap_or_default()).trim_end().as_bytes()),
            _ => i as u64,
        }
    }
}

/// Registers an Avro schema under `subject`; the writer schema with its id.
async fn register_schema(config: &RegistryConfig, subject: String, schema: &str) -> AvroSchema {
    let settings = sr_settings(config).unwrap();
    let registered =
        post_schema(&settings, subject.clone(), SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("registering {subject}: {e}\n{schema}"));
    AvroSchema::parse(registered.id, schema).unwrap()
}

/// An `Item` row.
fn item(i: usize, name: String) -> Value {
    Value::Struct(Row::new().with("id", Value::Long(i as i64)).with("name", Value::String(name)))
}

/// A Debezium `source` block.
fn source(i: usize) -> Json {
    json!({"version": "3.0.0.Final", "connector": "postgresql", "name": "hostile", "db": "hostile",
        "schema": "public", "table": "items", "ts_ms": START + i as i64})
}

/// The Debezium change creating row `i`.
fn change(i: usize, name: &str) -> Json {
    json!({"before": null, "after": {"id": i, "name": name}, "source": source(i), "op": "c", "ts_ms": START + i as i64})
}

/// A Kafka Connect `{"schema": ..., "payload": ...}` envelope.
fn with_schema(schema: &str, payload: &dyn std::fmt::Display) -> String {
    format!(r#"{{"schema":{schema},"payload":{payload}}}"#)
}

/// JSON text written as it is.
struct RawJson<'a>(&'a str);

impl std::fmt::Display for RawJson<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A JSON-with-schema envelope of ~10 MiB: a struct of ~200,000 optional fields, named after the
/// record (so no two are the same schema), and a payload that is not a struct.
fn huge_schema(i: usize) -> Vec<u8> {
    let mut fields = String::with_capacity(HUGE_BYTES + 1024);
    let mut k = 0;
    while fields.len() < HUGE_BYTES {
        if k > 0 {
            fields.push(',');
        }
        fields.push_str(&format!(r#"{{"type":"int64","optional":true,"field":"f{i}_{k}"}}"#));
        k += 1;
    }
    let schema = format!(r#"{{"type":"struct","optional":false,"fields":[{fields}]}}"#);
    with_schema(&schema, &json!("not a struct")).into_bytes()
}

/// A key that is not UTF-8 (nor JSON, nor the Confluent wire format).
fn not_utf8(rng: &mut Rng) -> Vec<u8> {
    let mut key = vec![0xff, 0xfe];
    key.extend(rng.garbage(8));
    key
}

/// Avro's zig-zag varint.
fn zigzag(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    while z >= 0x80 {
        out.push(z as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

fn digest(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

const WORD: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const LINE: &[u8] = b"abcdefghijklmnopqrstuvwxyz ";

/// xorshift64*: the same records for the same seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random bytes, the first one 0x80 or more: never the start of JSON, of an access-log
    /// line, nor of the Confluent wire format (magic byte 0).
    fn garbage(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        if let Some(first) = out.first_mut() {
            *first |= 0x80;
        }
        out
    }

    /// `len` random characters of `alphabet`.
    fn pick(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
        self.garbage(len).into_iter().map(|b| alphabet[b as usize % alphabet.len()]).collect()
    }
}

/// Every record of a topic's partitions, from offset 0 to the end, handed to `each` as it is
/// read (the output of a 1,000,000-record run is not kept whole).
fn read_topic(bootstrap: &str, topic: &str, partitions: i32, each: impl FnMut(&BorrowedMessage<'_>)) {
    rig::read_each(bootstrap, topic, partitions, "read_uncommitted", each);
}

/// The peak resident set size of process `pid`, MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    kib / 1024
}

/// The last `lines` lines of a log.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
