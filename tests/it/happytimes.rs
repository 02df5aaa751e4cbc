//! The HappyTimes topology (`topologies/happytimes.yaml`, definitions in docs/FUNNEL.md).
//!
//! - In process: generated traffic through the engine, straight and with restarts, must give the
//!   same final funnel.
//! - End to end on a real broker: the traffic produced day by day to Tansu, two
//!   `happystreams run` instances in one group, `happystreams lake-sink` landing the raw inputs
//!   and the facts, dbt building the marts from the lake. The stream's final funnel (the
//!   compacted funnel topics) must equal the dbt marts, and the lake's facts the Kafka facts.

use crate::rig::{self, create_topic, tansu};
use crate::runtime::Instance;
use happystreams::generate::{Generated, Options, SOURCES, generate, topic_of};
use happystreams::testkit::TopologyTestDriver;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/topologies/happytimes.yaml");
const FUNNEL: [&str; 6] = ["awareness", "consideration", "consideration_top", "conversion", "loyalty", "advocacy"];
const FACTS: [&str; 4] = ["visitor_activity", "conversion", "retention", "social_sentiment"];
const DAY: i64 = 86_400_000;

/// The last value per key of every output topic, after piping `records`; restarts the driver
/// (commit, close, reopen the state) every `restart_every` records when given.
fn final_outputs(records: &[Generated], restart_every: Option<usize>) -> BTreeMap<String, BTreeMap<String, String>> {
    let plan = happystreams::topology::load(Path::new(TOPOLOGY)).unwrap();
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    let mut latest: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        // The generator's rare malformed log lines are the only records the engine refuses.
        if let Err(e) = driver.pipe_json(&record.to_json_line()) {
            assert!(record.source == "weblogs", "{}: {e}", record.source);
        }
        for topic in driver.output_topics() {
            for output in driver.read_output(&topic) {
                let value = output.value.map(|v| happystreams::record::Value::Struct(v).to_json().to_string());
                latest
                    .entry(topic.clone())
                    .or_default()
                    .insert(output.key.to_json().to_string(), value.unwrap_or_default());
            }
        }
        if restart_every.is_some_and(|n| index % n == n - 1) {
            driver.restart().unwrap();
        }
    }
    latest
}

#[test]
fn the_funnel_is_the_same_with_restarts() {
    let records = generate(&Options { visitors: 60, days: 14, ..Options::default() });
    let straight = final_outputs(&records, None);
    for topic in FUNNEL {
        let rows = straight.get(&format!("happytimes.funnel.{topic}")).map_or(0, BTreeMap::len);
        assert!(rows > 0, "no {topic} rows");
    }
    assert_eq!(final_outputs(&records, Some(337)), straight);
}

/// Produces records in order and waits for every delivery.
async fn produce(producer: &FutureProducer, records: &[&Generated]) {
    let mut pending = Vec::new();
    for record in records {
        let key = record.key.to_string();
        let value = record.body.bytes();
        let mut message = FutureRecord::to(record.topic).key(&key).timestamp(record.timestamp);
        if let Some(v) = value.as_deref() {
            message = message.payload(v);
        }
        pending.push(producer.send_result(message).map_err(|(e, _)| e).unwrap());
    }
    for delivery in pending {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// Every record of `topic`, in partition and offset order: (key, value).
fn read_all(bootstrap: &str, topic: &str) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = rig::client_config(bootstrap)
        .set("group.id", "happytimes-e2e-reader")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let (mut records, mut ended) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ended < partitions && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => records.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().map(|p| String::from_utf8_lossy(p).into_owned()),
            )),
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            _ => {}
        }
    }
    assert_eq!(ended, partitions, "{topic}: not read to its end within 60 s");
    records
}

/// Sum over the application's group of (high watermark − committed offset) on `topics`.
fn group_lag(bootstrap: &str, group: &str, topics: &[String]) -> i64 {
    let consumer: BaseConsumer = rig::client_config(bootstrap).set("group.id", group).create().unwrap();
    let mut list = TopicPartitionList::new();
    for topic in topics {
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else { return i64::MAX };
        for p in 0..metadata.topics()[0].partitions().len() as i32 {
            list.add_partition(topic, p);
        }
    }
    let Ok(committed) = consumer.committed_offsets(list, Duration::from_secs(10)) else { return i64::MAX };
    let mut lag = 0;
    for e in committed.elements() {
        let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10)).unwrap();
        let position = match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        if high > position && std::env::var("HAPPYTIMES_E2E_DEBUG").is_ok() {
            eprintln!("lag {}[{}]: committed {position}, high {high}", e.topic(), e.partition());
        }
        lag += (high - position).max(0);
    }
    lag
}

/// Waits until the group has processed and committed everything on `topics` (twice in a row,
/// so records the last commits wrote to repartition topics are counted too).
fn wait_idle(bootstrap: &str, group: &str, topics: &[String], instances: &[&Instance]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut zero_in_a_row = 0;
    while zero_in_a_row < 2 {
        assert!(
            Instant::now() < deadline,
            "the pipeline did not catch up within 120 s (lag {}); logs:\n{}",
            group_lag(bootstrap, group, topics),
            instances.iter().map(|i| i.log_text()).collect::<Vec<_>>().join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(300));
        zero_in_a_row = if group_lag(bootstrap, group, topics) == 0 { zero_in_a_row + 1 } else { 0 };
    }
}

fn start_instance(bootstrap: &str, app: &str, dir: &Path, name: &str) -> Instance {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_happystreams"))
        .args(["run", "--topology", TOPOLOGY, "--bootstrap-servers", bootstrap, "--application-id", app])
        .arg("--state-dir")
        .arg(dir.join(name))
        .args(["--metrics-address", &format!("127.0.0.1:{port}"), "--commit-interval-ms", "200"])
        .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
        .env("RUST_LOG", "happystreams=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start happystreams run");
    Instance { child, port, log }
}

#[tokio::test(flavor = "multi_thread")]
async fn happytimes_on_tansu_with_two_instances_equals_the_dbt_marts() {
    let bootstrap = tansu();
    let app = rig::unique_topic("happytimes").replace('-', "_");
    let dir = tempfile::tempdir().unwrap();
    for source in SOURCES {
        create_topic(bootstrap, topic_of(source), 4).await;
    }
    let mut instances =
        [start_instance(bootstrap, &app, dir.path(), "a"), start_instance(bootstrap, &app, dir.path(), "b")];
    let records = generate(&Options { visitors: 120, days: 14, ..Options::default() });
    let producer: FutureProducer = rig::client_config(bootstrap).set("partitioner", "murmur2_random").create().unwrap();
    // Every input and internal topic the group reads (the lag check covers them).
    let plan = happystreams::topology::load(Path::new(TOPOLOGY)).unwrap();
    // (Global tables are read outside the group: content and ads.)
    let mut topics: Vec<String> =
        SOURCES.iter().filter(|s| !["content", "ads"].contains(*s)).map(|s| topic_of(s).to_owned()).collect();
    topics.extend(plan.repartition_topics().iter().map(|t| format!("{app}-{}", t.trim_start_matches("happytimes-"))));

    // Day by day, each day once the pipeline has processed the previous one: what happened on
    // different days is then processed in order whatever the pipeline's latency (the generator
    // changes a subscription on a day its visitor does not visit).
    let started = Instant::now();
    let first_day = records.first().unwrap().timestamp.div_euclid(DAY);
    let last_day = records.last().unwrap().timestamp.div_euclid(DAY);
    // Within a day, the day's dimension changes go first, as applications commit a row before
    // the events that mention it.
    let cdc = ["visitors", "content", "ads", "subscriptions", "social_outlets"];
    for day in first_day..=last_day {
        for changes in [true, false] {
            let batch: Vec<&Generated> = records
                .iter()
                .filter(|r| r.timestamp.div_euclid(DAY) == day && cdc.contains(&r.source) == changes)
                .collect();
            produce(&producer, &batch).await;
            let running: Vec<&Instance> = instances.iter().collect();
            wait_idle(bootstrap, &app, &topics, &running);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("{} records through two instances in {seconds:.1} s (paced day by day)", records.len());
    for instance in &mut instances {
        assert!(instance.terminate().success(), "{}", instance.log_text());
    }
    let late: f64 = instances.iter().map(|i| i.metric("aggregate_late_records_total")).sum();
    assert_eq!(late, 0.0, "late records make the stream differ from the batch models");

    // The stream's final funnel and facts, from Kafka.
    let stream_dir = dir.path().join("stream");
    std::fs::create_dir_all(&stream_dir).unwrap();
    for name in FUNNEL
        .iter()
        .map(|f| format!("happytimes.funnel.{f}"))
        .chain(FACTS.iter().map(|f| format!("happytimes.facts.{f}")))
    {
        let records = read_all(bootstrap, &name);
        let mut latest = BTreeMap::new();
        let mut all = String::new();
        for (key, value) in &records {
            match value {
                Some(v) => {
                    latest.insert(key.clone(), v.clone());
                    all.push_str(&format!("{v}\n"));
                }
                None => {
                    latest.remove(key);
                }
            }
        }
        let lines: String = latest
            .iter()
            .map(|(k, v)| format!("{{\"key\": {}, \"value\": {v}}}\n", serde_json::to_string(k).unwrap()))
            .collect();
        std::fs::write(stream_dir.join(format!("{name}.latest.jsonl")), lines).unwrap();
        std::fs::write(stream_dir.join(format!("{name}.jsonl")), all).unwrap();
    }

    // The lake: raw inputs and the facts.
    let lake = dir.path().join("lake");
    let raw: Vec<String> = SOURCES.iter().map(|s| format!("{}=raw/{s}", topic_of(s))).collect();
    let facts: Vec<String> = FACTS.iter().map(|f| format!("happytimes.facts.{f}=facts/{f}")).collect();
    let output = crate::cli::happystreams()
        .args(["lake-sink", "--bootstrap-servers", bootstrap, "--lake"])
        .arg(&lake)
        .args([
            "--group-id",
            &format!("{app}-lake"),
            "--exit-at-end",
            "--raw",
            &raw.join(","),
            "--json",
            &facts.join(","),
        ])
        .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
        .output()
        .unwrap();
    assert!(output.status.success(), "lake-sink: {}", String::from_utf8_lossy(&output.stderr));

    // dbt over the lake, then the comparison.
    let dbt = PathBuf::from(rig::tool_binary("HAPPYSTREAMS_DBT_BIN", "dbt.sh"));
    let target = dir.path().join("dbt");
    let output = Command::new(&dbt)
        .args(["build", "--exclude", "stg_partner_files", "--project-dir", "dbt", "--profiles-dir", "dbt"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HAPPYTIMES_LAKE_DIR", &lake)
        .env("DBT_TARGET_PATH", &target)
        .env("DBT_LOG_PATH", dir.path().join("dbt-logs"))
        .output()
        .unwrap();
    assert!(output.status.success(), "dbt build failed:\n{}", String::from_utf8_lossy(&output.stdout));
    let python = dbt.parent().unwrap().join("python");
    let output = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/happytimes/compare.py"))
        .arg(&stream_dir)
        .arg(target.join("happytimes.duckdb"))
        .arg(&lake)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "the stream differs from the dbt marts:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
