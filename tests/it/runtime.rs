//! `happystreams run` on a real broker (Tansu): instances of the binary in one consumer group,
//! killed with SIGKILL and restarted, joining late; the outputs' compacted view must equal a
//! from-scratch recomputation (the oracle), and a restart must restore from its local checkpoint.

use crate::rig::{self, create_topic, tansu};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;
pub(crate) const VISITORS: i64 = 40;
const SOURCES: [&str; 4] = ["email", "social", "search", "direct"];
const MINUTE: i64 = 60_000;
pub(crate) const START: i64 = 1_750_000_000_000;

/// One test's topics, application id and temporary files.
pub(crate) struct Setup {
    pub(crate) bootstrap: String,
    pub(crate) prefix: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) topology: PathBuf,
    pub(crate) partitions: i32,
}

impl Setup {
    async fn new(name: &str) -> Setup {
        Setup::on(tansu(), name, "dead_letter", PARTITIONS).await
    }

    /// A setup on another broker, with the clicks source's `on_error` policy.
    pub(crate) async fn on(bootstrap: &str, name: &str, on_error: &str, partitions: i32) -> Setup {
        let bootstrap = bootstrap.to_owned();
        let prefix = rig::unique_topic(name).replace('-', "_");
        let dir = tempfile::tempdir().unwrap();
        let yaml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/topologies/views_by_source.yaml"
        ))
        .unwrap()
        .replace("rt.", &format!("{prefix}."))
        .replace("on_error: dead_letter", &format!("on_error: {on_error}"));
        let topology = dir.path().join("views_by_source.yaml");
        std::fs::write(&topology, yaml).unwrap();
        // The outputs too, before the instance creates them with the broker's time retention.
        for topic in ["clicks", "visitors", "facts", "views_per_source"] {
            create_topic(&bootstrap, &format!("{prefix}.{topic}"), partitions).await;
        }
        Setup { bootstrap, prefix, dir, topology, partitions }
    }

    /// Views counted per visitor (the key) instead of per source: one sub-topology, no
    /// repartition topic.
    pub(crate) fn group_by_key(&self) {
        let grouped_by_key = std::fs::read_to_string(&self.topology)
            .unwrap()
            .replace("group_by: { source: source }", "group_by: { visitor_id: visitor_id }");
        std::fs::write(&self.topology, grouped_by_key).unwrap();
    }

    pub(crate) fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// Starts `happystreams run` with its own state directory and metrics port.
    fn start(&self, instance: &str) -> Instance {
        self.start_with(instance, &[], &[])
    }

    /// [`Setup::start`] with extra flags and environment.
    pub(crate) fn start_with(&self, instance: &str, flags: &[&str], env: &[(&str, &str)]) -> Instance {
        let state = self.dir.path().join(instance);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(self.dir.path().join(format!("{instance}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_happystreams"))
            .args(["run", "--topology"])
            .arg(&self.topology)
            .args(["--bootstrap-servers", &self.bootstrap, "--application-id", &self.prefix, "--state-dir"])
            .arg(&state)
            .args(["--http-address", &format!("127.0.0.1:{port}")])
            .args(if flags.contains(&"--commit-interval-ms") { &[][..] } else { &["--commit-interval-ms", "200"][..] })
            // Every instance runs two stream threads unless a test says otherwise, except on
            // noida-db (its tests use the range assignor): it serves one member per group well.
            .args(if flags.contains(&"--num-threads") {
                &[][..]
            } else if env.iter().any(|(k, v)| k.ends_with("PARTITION_ASSIGNMENT_STRATEGY") && *v == "range") {
                &["--num-threads", "1"][..]
            } else {
                &["--num-threads", "2"][..]
            })
            .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            // Also the rebalance timeout: how long the coordinator waits for a member that does
            // not rejoin (librdkafka's 300 s would outlast every test's deadline).
            .env("HAPPYSTREAMS_KAFKA__CONSUMER__PROPERTIES__MAX_POLL_INTERVAL_MS", "20000")
            .args(flags)
            .env("RUST_LOG", "happystreams=info,librdkafka=warn,rdkafka=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start happystreams run");
        Instance { child, port, log: self.dir.path().join(format!("{instance}.log")) }
    }
}

pub(crate) struct Instance {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
}

impl Instance {
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "instance did not stop within 30 s of SIGTERM; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the instance to exit on its own; fails with `why` and its log after `timeout`.
    pub(crate) fn exit_within(&mut self, timeout: Duration, why: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{why}\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sum of a metric's samples (all label sets) on the instance's endpoint; 0 when absent.
    pub(crate) fn metric(&self, name: &str) -> f64 {
        self.samples(name).iter().sum()
    }

    /// Sum of a metric's samples whose labels contain `label` (`topic="t"`).
    pub(crate) fn metric_labelled(&self, name: &str, label: &str) -> f64 {
        self.lines(name)
            .iter()
            .filter(|l| l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Every sample of a metric on the instance's endpoint.
    fn samples(&self, name: &str) -> Vec<f64> {
        self.lines(name).iter().filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).collect()
    }

    /// The endpoint's lines of a metric (`name` without the `happystreams_` prefix).
    fn lines(&self, name: &str) -> Vec<String> {
        let name = format!("happystreams_{name}");
        let name = name.as_str();
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return Vec::new() };
        use std::io::{Read, Write};
        let _ = write!(stream, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut body = String::new();
        let _ = stream.read_to_string(&mut body);
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn producer(bootstrap: &str) -> FutureProducer {
    rig::client_config(bootstrap).set("linger.ms", "5").set("partitioner", "murmur2_random").create().unwrap()
}

pub(crate) fn visitor_source(visitor: i64, version: i64) -> &'static str {
    SOURCES[((visitor + version) % SOURCES.len() as i64) as usize]
}

/// Debezium change events for every visitor (JSON without schemas, as the connector writes them).
pub(crate) async fn produce_visitors(setup: &Setup, version: i64) {
    let producer = producer(&setup.bootstrap);
    let topic = setup.topic("visitors");
    for visitor in 1..=VISITORS {
        let key = json!({"visitor_id": visitor}).to_string();
        let value = json!({
            "before": null,
            "after": {"visitor_id": visitor, "source": visitor_source(visitor, version)},
            "source": {"connector": "postgresql", "ts_ms": START, "schema": "public", "table": "visitors"},
            "op": if version == 0 { "r" } else { "u" },
            "ts_ms": START,
        })
        .to_string();
        let record = FutureRecord::to(&topic).key(key.as_bytes()).payload(value.as_bytes());
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
}

/// Clicks `from..to`: one every 100 ms of event time, visitors round-robin.
pub(crate) async fn produce_clicks(setup: &Setup, range: std::ops::Range<i64>) {
    let producer = producer(&setup.bootstrap);
    let topic = setup.topic("clicks");
    let mut deliveries = Vec::new();
    for i in range {
        let (key, value) = click(i);
        let record = FutureRecord::to(&topic).key(key.as_bytes()).payload(value.as_bytes()).timestamp(START + i * 100);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// One click that is not JSON (after a batch of clicks on noida-db, which serves a partition's
/// last produce request only once another one follows).
async fn produce_bad_click(setup: &Setup) {
    let topic = setup.topic("clicks");
    let bad = FutureRecord::to(&topic).key("{\"visitor_id\": 1}".as_bytes()).payload("not json".as_bytes());
    producer(&setup.bootstrap).send(bad, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
}

fn click(i: i64) -> (String, String) {
    let visitor = 1 + i % VISITORS;
    let key = json!({"visitor_id": visitor}).to_string();
    let value = json!({"event_id": format!("e{i}"), "visitor_id": visitor, "event_time": START + i * 100}).to_string();
    (key, value)
}

type Read = Vec<(Option<String>, Option<Json>, Vec<String>)>;

/// Every record of a topic, read to the end of each partition (the Fetch high watermark).
fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Read {
    read_isolated(bootstrap, topic, partitions, "read_uncommitted")
}

/// [`read_all`] at an isolation level.
fn read_isolated(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Read {
    let mut out = Vec::new();
    rig::read_each(bootstrap, topic, partitions, isolation, |m| {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| format!("{}={}", h.key, String::from_utf8_lossy(h.value.unwrap_or_default())))
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            m.payload().map(|v| serde_json::from_slice(v).unwrap_or(Json::Null)),
            headers,
        ));
    });
    out
}

/// Every record of a partition, raw: (key, value).
fn read_raw(bootstrap: &str, topic: &str, partition: i32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let consumer: BaseConsumer = rig::client_config(bootstrap)
        .set("group.id", "happystreams-test-reader")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(0)).unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "reading {topic} partition {partition} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push((m.key().unwrap_or_default().to_vec(), m.payload().map(<[u8]>::to_vec))),
        }
    }
}

/// The oracle: the facts and the per-minute, per-source view counts recomputed from scratch
/// (every click joined with the visitor's source as of the run's table version).
pub(crate) fn oracle(clicks: i64, version: i64) -> (BTreeSet<(String, i64, String)>, BTreeMap<(i64, String), i64>) {
    let mut facts = BTreeSet::new();
    let mut counts = BTreeMap::new();
    for i in 0..clicks {
        let visitor = 1 + i % VISITORS;
        let source = visitor_source(visitor, version).to_owned();
        let time = START + i * 100;
        *counts.entry((time - time.rem_euclid(MINUTE), source.clone())).or_insert(0) += 1;
        facts.insert((format!("e{i}"), visitor, source));
    }
    (facts, counts)
}

/// The oracle of the views per minute and visitor (the topology grouped by the key).
pub(crate) fn views_per_visitor(clicks: i64) -> BTreeMap<(i64, String), i64> {
    let mut counts = BTreeMap::new();
    for i in 0..clicks {
        let time = START + i * 100;
        *counts.entry((time - time.rem_euclid(MINUTE), (1 + i % VISITORS).to_string())).or_insert(0) += 1;
    }
    counts
}

pub(crate) type Outputs = (BTreeSet<(String, i64, String)>, BTreeMap<(i64, String), i64>, usize);

/// The facts (distinct), the compacted view of the counts written so far, and the number of
/// fact records.
pub(crate) fn outputs(setup: &Setup) -> Outputs {
    outputs_at(setup, "read_uncommitted")
}

/// [`outputs`] at an isolation level.
pub(crate) fn outputs_at(setup: &Setup, isolation: &str) -> Outputs {
    let facts_records = read_isolated(&setup.bootstrap, &setup.topic("facts"), setup.partitions, isolation);
    let total = facts_records.len();
    let facts = facts_records
        .into_iter()
        .filter_map(|(_, v, _)| {
            let v = v?;
            Some((v["event_id"].as_str()?.to_owned(), v["visitor_id"].as_i64()?, v["source"].as_str()?.to_owned()))
        })
        .collect();
    (facts, latest_counts(setup, "views_per_source", isolation), total)
}

/// The compacted view of an aggregate output: ((window start, group), views).
pub(crate) fn latest_counts(setup: &Setup, output: &str, isolation: &str) -> BTreeMap<(i64, String), i64> {
    let mut latest: BTreeMap<String, Json> = BTreeMap::new();
    for (key, value, _) in read_isolated(&setup.bootstrap, &setup.topic(output), setup.partitions, isolation) {
        if let (Some(key), Some(value)) = (key, value) {
            latest.insert(key, value);
        }
    }
    latest.values().filter_map(window_count).collect()
}

/// ((window start, source), views) of an aggregate output.
pub(crate) fn window_count(v: &Json) -> Option<((i64, String), i64)> {
    let start = match &v["window_start"] {
        Json::Number(n) => n.as_i64()?,
        Json::String(s) => chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp_millis(),
        _ => return None,
    };
    let group = match (&v["source"], &v["visitor_id"]) {
        (Json::String(source), _) => source.clone(),
        (_, Json::Number(visitor)) => visitor.to_string(),
        _ => return None,
    };
    Some(((start, group), v["views"].as_i64()?))
}

/// Waits until the outputs equal the oracle; panics with the difference and the logs if not.
fn await_oracle(setup: &Setup, clicks: i64, instances: &[&Instance]) {
    let (want_facts, want_counts) = oracle(clicks, 0);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (facts, counts, _) = outputs(setup);
        if facts == want_facts && counts == want_counts {
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = want_facts.difference(&facts).take(5).collect();
            let extra: Vec<_> = facts.difference(&want_facts).take(5).collect();
            let wrong: Vec<_> = want_counts.iter().filter(|(k, v)| counts.get(*k) != Some(*v)).take(5).collect();
            let logs: Vec<String> = instances.iter().map(|i| i.log_text()).collect();
            panic!(
                "outputs differ from the oracle after 90 s: {} of {} facts, missing {missing:?}, unexpected {extra:?}; counts wrong (want) {wrong:?}\nlogs:\n{}",
                facts.len(),
                want_facts.len(),
                logs.join("\n-----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_killed_restarted_and_joined_late_matches_the_oracle() {
    let setup = Setup::new("rt_group").await;
    produce_visitors(&setup, 0).await;
    let mut first = setup.start("first");
    let second = setup.start("second");
    produce_clicks(&setup, 0..3_000).await;
    // Kill one instance mid-stream, once a commit of it wrote state (so its successor restores
    // real state, not an empty changelog).
    wait_until("the first instance to commit state", Duration::from_secs(60), || {
        first.metric("task_state_commits_total") > 0.0
    });
    first.kill();
    produce_clicks(&setup, 3_000..6_000).await;
    let third = setup.start("third"); // joins late
    produce_clicks(&setup, 6_000..8_000).await;
    let restarted = setup.start("first"); // same state directory
    produce_clicks(&setup, 8_000..10_000).await;
    await_oracle(&setup, 10_000, &[&second, &third, &restarted]);
    drop((second, third, restarted));
}

/// A normal start, some work and a graceful stop log no ERROR and no WARN, librdkafka's own
/// messages included: reaching the end of a partition (table loads, restores) is no error, and no
/// client is handed a property that is not its own (a consumer property set for all clients in
/// `kafka.properties` would make every producer warn `CONFWARN`, and the other way round).
#[tokio::test(flavor = "multi_thread")]
async fn a_normal_run_logs_no_warning_and_no_error() {
    // A producer property next to the harness's consumer one.
    let log = log_of_a_whole_run(
        "rt_quiet",
        500,
        &[("RUST_LOG", "info"), ("HAPPYSTREAMS_KAFKA__PROPERTIES__LINGER_MS", "5")],
    )
    .await;
    assert!(log.contains("task running") && log.contains("table read to its end"), "{log}");
    let noisy: Vec<&str> = log.lines().filter(|line| line.contains(" WARN ") || line.contains(" ERROR ")).collect();
    assert!(noisy.is_empty(), "warnings or errors in a normal run:\n{}", noisy.join("\n"));
}

/// A new column on a CDC input (its table altered upstream) is logged, counted and reported as
/// a lineage event with the new fields; the same schema again reports nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_column_on_a_cdc_input_is_logged_counted_and_reported_as_lineage() {
    let setup = Setup::new("rt_schema").await;
    produce_visitors(&setup, 0).await;
    let lineage = setup.dir.path().join("lineage.jsonl");
    let lineage_file = lineage.display().to_string();
    let env = [("HAPPYSTREAMS_LINEAGE__TRANSPORT", "file"), ("HAPPYSTREAMS_LINEAGE__FILE", lineage_file.as_str())];
    let mut instance = setup.start_with("only", &[], &env);
    let topic = setup.topic("visitors");
    let label = format!("topic=\"{topic}\"");
    wait_until("the visitors read", Duration::from_secs(60), || {
        instance.metric_labelled("records_in_total", &label) >= VISITORS as f64
    });
    assert_eq!(instance.metric_labelled("input_schema_changes_total", &label), 0.0, "{}", instance.log_text());
    // `ALTER TABLE visitors ADD COLUMN email`, then two updates with the column.
    let producer = producer(&setup.bootstrap);
    for visitor in [1, 2] {
        let key = json!({"visitor_id": visitor}).to_string();
        let value = json!({
            "before": null,
            "after": {"visitor_id": visitor, "source": "email", "email": format!("v{visitor}@example.com")},
            "source": {"connector": "postgresql", "ts_ms": START, "schema": "public", "table": "visitors"},
            "op": "u",
            "ts_ms": START,
        })
        .to_string();
        let record = FutureRecord::to(&topic).key(key.as_bytes()).payload(value.as_bytes());
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
    wait_until("the schema change counted", Duration::from_secs(30), || {
        instance.metric_labelled("input_schema_changes_total", &label) >= 1.0
    });
    // The visitors input with the new column, in an event (RUNNING within a second, and every
    // event after it).
    let has_email = |event: &serde_json::Value| {
        event["inputs"].as_array().is_some_and(|inputs| {
            inputs.iter().any(|input| {
                input["name"] == topic.as_str()
                    && input["facets"]["schema"]["fields"]
                        .as_array()
                        .is_some_and(|fields| fields.iter().any(|f| f["name"] == "email"))
            })
        })
    };
    let events = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&lineage)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    wait_until("a RUNNING event with the new column", Duration::from_secs(30), || {
        events().iter().any(|e| e["eventType"] == "RUNNING" && has_email(e))
    });
    assert!(instance.terminate().success(), "{}", instance.log_text());
    let log = instance.log_text();
    assert!(log.contains("input schema changed"), "{log}");
    assert_eq!(instance_schema_changes(&log), 1, "the second record with the column is no new schema:\n{log}");
    let events = events();
    let kinds: Vec<&str> = events.iter().map(|e| e["eventType"].as_str().unwrap_or_default()).collect();
    assert_eq!((kinds.first(), kinds.last()), (Some(&"START"), Some(&"COMPLETE")), "{kinds:?}");
    assert!(!has_email(&events[0]), "the column is new: START does not have it");
    assert!(has_email(events.last().unwrap()), "COMPLETE names the input with its new column");
}

fn instance_schema_changes(log: &str) -> usize {
    log.lines().filter(|l| l.contains("input schema changed")).count()
}

/// Secret-bearing Kafka properties set for an instance never reach its log, at the most verbose
/// level, through a start, some work and a stop.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_given_to_the_kafka_clients_never_reach_the_log() {
    // Ignored on a plaintext listener, but handed to librdkafka like any property.
    let secrets = [
        ("HAPPYSTREAMS_KAFKA__PROPERTIES__SASL_PASSWORD", "pw-9f1c0e"),
        ("HAPPYSTREAMS_KAFKA__PROPERTIES__SSL_KEY_PASSWORD", "key-5b7a2d"),
        ("HAPPYSTREAMS_KAFKA__PROPERTIES__SASL_OAUTHBEARER_CONFIG", "principal=svc secret=oauth-3e8d41"),
        ("HAPPYSTREAMS_KAFKA__PRODUCER__PROPERTIES__SSL_KEYSTORE_PASSWORD", "store-77c2aa"),
    ];
    let mut env = secrets.to_vec();
    env.push(("RUST_LOG", "debug"));
    let log = log_of_a_whole_run("rt_secrets", 100, &env).await;
    assert!(log.contains("DEBUG"), "the log is verbose: {} bytes", log.len());
    for (_, secret) in secrets {
        let value = secret.rsplit('=').next().unwrap_or(secret);
        let leaked: Vec<&str> = log.lines().filter(|line| line.contains(value)).collect();
        assert!(leaked.is_empty(), "`{value}` is in the log:\n{}", leaked.join("\n"));
    }
}

/// The log of one instance (with `env`) through a start, `clicks` clicks joined to their facts and
/// a graceful stop. One sub-topology (no repartition topic, whose purge Tansu refuses with a
/// warning).
async fn log_of_a_whole_run(name: &str, clicks: i64, env: &[(&str, &str)]) -> String {
    let setup = Setup::new(name).await;
    setup.group_by_key();
    produce_visitors(&setup, 0).await;
    produce_clicks(&setup, 0..clicks).await;
    let mut instance = setup.start_with("only", &[], env);
    let (want_facts, _) = oracle(clicks, 0);
    let deadline = Instant::now() + Duration::from_secs(90);
    while outputs(&setup).0 != want_facts {
        let log = instance.log_text();
        let tail: Vec<&str> = log.lines().rev().take(25).collect();
        assert!(Instant::now() < deadline, "no facts; the log's last lines, newest first:\n{}", tail.join("\n"));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(instance.terminate().success(), "{}", instance.log_text());
    instance.log_text()
}

/// A task directory RocksDB finds corrupt (a damaged CURRENT file), or whose checkpoint cannot
/// be read, is moved aside and the task restored from its changelog: the instance neither stops nor fails
/// the same way at every restart.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_local_state_is_moved_aside_and_restored_from_the_changelog() {
    let setup = Setup::new("rt_corrupt").await;
    produce_visitors(&setup, 0).await;
    let one = ["--num-threads", "1"];
    let mut instance = setup.start_with("only", &one, &[]);
    produce_clicks(&setup, 0..2_000).await;
    await_oracle(&setup, 2_000, &[&instance]);
    assert!(instance.terminate().success(), "{}", instance.log_text());
    let app = setup.dir.path().join("only").join(&setup.prefix);
    let mut tasks: Vec<PathBuf> =
        std::fs::read_dir(&app).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("CURRENT").exists()).collect();
    tasks.sort();
    assert!(tasks.len() >= 2, "stateful task directories in {}: {tasks:?}", app.display());
    std::fs::write(tasks[0].join("CURRENT"), b"\x00\xffnot a manifest name").unwrap();
    // A checkpoint that is no checkpoint.
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &tasks[1]).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &tasks[1], &families).unwrap();
    db.put_cf(db.cf_handle("__checkpoint").unwrap(), b"checkpoint", b"{\"inputs\": 7").unwrap();
    drop(db);

    let restarted = setup.start_with("only", &one, &[]);
    produce_clicks(&setup, 2_000..3_000).await;
    await_oracle(&setup, 3_000, &[&restarted]);
    let log = restarted.log_text();
    assert_eq!(log.matches("moved it aside").count(), 2, "{log}");
    assert_eq!(restarted.metric("state_quarantined_total"), 2.0, "{log}");
    for task in &tasks[..2] {
        let name = task.file_name().unwrap().to_string_lossy().into_owned();
        let aside = std::fs::read_dir(&app)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(&format!("{name}.corrupt-")))
            .count();
        assert_eq!(aside, 1, "{name} kept aside for inspection");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_restores_from_the_local_checkpoint_not_the_whole_changelog() {
    let setup = Setup::new("rt_restore").await;
    produce_visitors(&setup, 0).await;
    // One stream thread: in clean-clone CI runs on Tansu, a two-thread instance started right
    // after the previous one stopped got no assignment for 90 s, three times, in this test only
    // (docs/RUNTIME.md, Threads). This test is about restores; the others run two threads.
    let one = ["--num-threads", "1"];
    let mut instance = setup.start_with("only", &one, &[]);
    produce_clicks(&setup, 0..4_000).await;
    await_oracle(&setup, 4_000, &[&instance]);
    let status = instance.terminate();
    assert!(status.success(), "SIGTERM must stop the instance cleanly: {status}\n{}", instance.log_text());
    let changelog_records = || -> usize {
        ["visitors-table", "views_per_source-aggregate"]
            .iter()
            .map(|store| read_all(&setup.bootstrap, &format!("{}-{store}-changelog", setup.prefix), PARTITIONS).len())
            .sum()
    };
    let logged = changelog_records();
    assert!(logged >= VISITORS as usize, "the changelogs hold the state: {logged} records");

    // After a graceful stop the local checkpoints are at the changelogs' ends: nothing to replay.
    let mut restarted = setup.start_with("only", &one, &[]);
    produce_clicks(&setup, 4_000..5_000).await;
    await_oracle(&setup, 5_000, &[&restarted]);
    let restored = restarted.samples("restore_records_total");
    assert_eq!(restored.len(), 2 * PARTITIONS as usize, "one restore per stateful task: {restored:?}");
    assert_eq!(restored.iter().sum::<f64>(), 0.0, "{}", restarted.log_text());

    // After SIGKILL at most the last commit's records are replayed.
    restarted.kill();
    let logged = changelog_records();
    let mut again = setup.start_with("only", &one, &[]);
    produce_clicks(&setup, 5_000..5_500).await;
    await_oracle(&setup, 5_500, &[&again]);
    let replayed = again.metric("restore_records_total");
    assert!(
        replayed < logged as f64 / 2.0,
        "a restart with intact local state replays only what its checkpoint lacks: {replayed} of {logged} changelog records\n{}",
        again.log_text()
    );
    // A graceful stop: every count is in the changelog, so the tombstones below hit the window
    // the next clicks fall in.
    assert!(again.terminate().success(), "{}", again.log_text());

    // A crashed commit larger than the restore's limit at the end of every aggregate changelog
    // partition: a tombstone for every key, and no marker after them. The counts of the window
    // the next clicks fall in start again from 0 if a restore applies them.
    let aggregate = format!("{}-views_per_source-aggregate-changelog", setup.prefix);
    let producer = producer(&setup.bootstrap);
    let mut stale = Vec::new();
    for partition in 0..PARTITIONS {
        let mut keys: BTreeSet<Vec<u8>> = BTreeSet::new();
        for (key, _) in read_raw(&setup.bootstrap, &aggregate, partition) {
            if !key.starts_with(b"\xff\xff") {
                keys.insert(key);
            }
        }
        // Twice: the restore holds the last few back, and those must not be the only ones.
        for key in keys.iter().chain(&keys) {
            let record = FutureRecord::<[u8], [u8]>::to(&aggregate).partition(partition).key(key.as_slice());
            producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
        }
        stale.push(keys.len());
    }
    assert!(stale.iter().any(|&n| n > 3), "more unfinished writes than the restore holds: {stale:?}");

    // A fresh state directory restores the whole changelog in chunks of 3 keys and gives the
    // same results, one task at a time with one restore thread; the unfinished tails make it wipe
    // and restore up to the last marker.
    let logged = changelog_records();
    let env = [
        ("HAPPYSTREAMS_RUNTIME__RESTORE_THREADS", "1"),
        ("HAPPYSTREAMS_RUNTIME__BOOTSTRAP_CHUNK_RECORDS", "3"),
        ("RUST_LOG", "happystreams=info,librdkafka=info,rdkafka=info"),
    ];
    let mut fresh = setup.start_with("fresh", &one, &env);
    produce_clicks(&setup, 5_500..6_000).await;
    await_oracle(&setup, 6_000, &[&fresh]);
    assert!(fresh.metric("restore_records_total") >= logged as f64, "{}", fresh.log_text());
    let log = fresh.log_text();
    assert!(log.contains("wiping it and restoring again"), "{log}");
    assert!(log.lines().any(|l| l.contains(" restored ") && !l.contains("chunks=0")), "restored in chunks\n{log}");
    let (mut open, mut restored) = (0, BTreeSet::new());
    for line in log.lines() {
        if line.contains("restore started") {
            open += 1;
            assert!(open <= 1, "two restores at once with restore_threads = 1:\n{log}");
        } else if line.contains("restore finished") {
            open -= 1;
            restored.extend(line.split_whitespace().find(|w| w.starts_with("task=")).map(str::to_owned));
        }
    }
    // (Distinct tasks: with several stream threads a task may restore twice, moving between them.)
    assert_eq!(restored.len(), 2 * PARTITIONS as usize, "every task restored:\n{log}");
    fresh.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_loaded_in_chunks_and_killed_mid_load_restarts_to_the_oracle() {
    let setup = Setup::new("rt_chunks").await;
    produce_visitors(&setup, 0).await;
    // 3,000 more visitors no click refers to: a table far larger than one chunk (one row here).
    const EXTRA: i64 = 3_000;
    let producer = producer(&setup.bootstrap);
    let topic = setup.topic("visitors");
    for visitor in VISITORS + 1..=VISITORS + EXTRA {
        let key = json!({"visitor_id": visitor}).to_string();
        let value = json!({"before": null, "after": {"visitor_id": visitor, "source": "direct"},
            "source": {"ts_ms": START}, "op": "r", "ts_ms": START})
        .to_string();
        producer
            .send_result(FutureRecord::to(&topic).key(key.as_bytes()).payload(value.as_bytes()))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
    produce_clicks(&setup, 0..2_000).await;
    let chunks = [("HAPPYSTREAMS_RUNTIME__BOOTSTRAP_CHUNK_RECORDS", "1")];
    let mut first = setup.start_with("first", &[], &chunks);
    wait_until("the first chunks of the table", Duration::from_secs(60), || {
        first.metric("bootstrap_chunks_total") >= 5.0
    });
    let loading = first.metric("task_running") < f64::from(2 * PARTITIONS);
    first.kill();
    assert!(loading, "killed while the table was still loading\n{}", first.log_text());
    let restarted = setup.start_with("first", &[], &chunks);
    await_oracle(&setup, 2_000, &[&restarted]);
    assert!(restarted.metric("bootstrap_chunks_total") > 0.0, "the restart went on loading in chunks");
    // The table's changelog: one batch per chunk, each with one row and its marker (plus, after
    // the kill, the rewrite of the row the killed instance left without a marker). The load never
    // held more than that in memory, and every row got in.
    let changelog = read_all(&setup.bootstrap, &format!("{}-visitors-table-changelog", setup.prefix), PARTITIONS);
    let mut batches: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, headers) in &changelog {
        if let Some(batch) = headers.iter().find_map(|h| h.strip_prefix("happystreams.batch=")) {
            *batches.entry(batch.to_owned()).or_default() += 1;
        }
    }
    let largest = batches.values().copied().max().unwrap_or_default();
    assert!(largest <= 3, "a chunk of {largest} records");
    assert!(batches.len() >= (VISITORS + EXTRA) as usize, "{} chunks for {} rows", batches.len(), VISITORS + EXTRA);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_go_to_the_dead_letter_topic_with_headers_and_the_rest_is_processed() {
    let setup = Setup::new("rt_dlq").await;
    produce_visitors(&setup, 0).await;
    let producer = producer(&setup.bootstrap);
    let topic = setup.topic("clicks");
    for i in 0..300 {
        let (key, mut value) = click(i);
        if i % 100 == 50 {
            value = format!("not json {i}");
        }
        let record = FutureRecord::to(&topic).key(key.as_bytes()).payload(value.as_bytes()).timestamp(START + i * 100);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
    let instance = setup.start("only");
    let good: BTreeSet<String> = (0..300).filter(|i| i % 100 != 50).map(|i| format!("e{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (facts, _, _) = outputs(&setup);
        let seen: BTreeSet<String> = facts.into_iter().map(|(e, _, _)| e).collect();
        if seen == good {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} good clicks processed\n{}",
            seen.len(),
            good.len(),
            instance.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let dead = read_all(&setup.bootstrap, &format!("{}-clicks-dlq", setup.prefix), 1);
    assert_eq!(dead.len(), 3, "{dead:?}");
    for (_, _, headers) in &dead {
        let header = |name: &str| {
            headers
                .iter()
                .find_map(|h| h.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        };
        assert_eq!(header("happystreams.error.class"), "data");
        assert!(header("happystreams.error.message").contains("JSON"), "{headers:?}");
        assert_eq!(header("happystreams.source.topic"), topic);
        let offset: i64 = header("happystreams.source.offset").parse().unwrap();
        let partition: i32 = header("happystreams.source.partition").parse().unwrap();
        assert!(offset >= 0 && (0..PARTITIONS).contains(&partition));
        assert!(header("happystreams.source.timestamp").parse::<i64>().unwrap() >= START);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_aborts_a_failed_batch_and_never_shows_it_to_read_committed_consumers() {
    let noida = rig::noida();
    let broker = noida.bootstrap.as_str();
    // noida-db: one member, range assignor (see INFRA.md).
    let eos = ["--processing-guarantee", "exactly-once"];
    let env = [("HAPPYSTREAMS_KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY", "range")];
    // One partition per topic and one sub-topology (views grouped by the key, no repartition
    // topic): noida-db serves a fetch of several partitions badly, so each consumer reads one.
    let failing = Setup::on(broker, "rt_eos", "fail", 1).await;
    failing.group_by_key();
    produce_visitors(&failing, 0).await;
    produce_clicks(&failing, 0..300).await;
    let producer = producer(broker);
    let clicks = failing.topic("clicks");
    let bad = FutureRecord::to(&clicks).key("{\"visitor_id\": 1}".as_bytes()).payload("not json".as_bytes());
    producer.send(bad, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();

    // A commit interval longer than the test: the failure hits an open transaction.
    let mut flags = eos.to_vec();
    flags.extend(["--commit-interval-ms", "600000"]);
    let mut first = failing.start_with("only", &flags, &env);
    let status = first.exit_within(Duration::from_secs(90), "the bad record must stop the instance");
    assert!(!status.success(), "on_error: fail must exit non-zero");
    assert!(first.log_text().contains("offset"), "the error names the record\n{}", first.log_text());
    let facts = failing.topic("facts");
    let uncommitted = read_isolated(broker, &facts, failing.partitions, "read_uncommitted").len();
    let committed = read_isolated(broker, &facts, failing.partitions, "read_committed").len();
    assert!(uncommitted > 0, "the aborted batch's facts were written: {uncommitted}\n{}", first.log_text());
    assert_eq!(committed, 0, "aborted output is never visible to read_committed consumers");

    // The same application with bad records skipped: every good click exactly once.
    std::fs::write(
        &failing.topology,
        std::fs::read_to_string(&failing.topology).unwrap().replace("on_error: fail", "on_error: skip"),
    )
    .unwrap();
    let mut second = failing.start_with("only", &eos, &env);
    let (want_facts, _) = oracle(300, 0);
    // The topology here groups by the key (see `Setup::on`).
    let want_counts = views_per_visitor(300);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (facts, counts, _) = outputs_at(&failing, "read_committed");
        if facts == want_facts && counts == want_counts {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 300 facts committed; counts {counts:?}, want {want_counts:?}\n{}",
            facts.len(),
            second.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(second.terminate().success(), "{}", second.log_text());
    let (facts, counts, total) = outputs_at(&failing, "read_committed");
    assert_eq!((facts, counts), (want_facts, want_counts));
    assert_eq!(total, 300, "exactly once: no duplicate facts in the committed view");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_written_in_transactions_never_holds_up_its_task() {
    // Debezium with exactly-once sources (and our own outputs under exactly-once) write in
    // transactions: the commit marker after the last record is an offset the consumer never
    // returns, so a task that compared the last record's offset with the high watermark would
    // think the table always behind and wait `max_task_idle_ms` for it again and again.
    // Tansu writes transaction markers (it does not hide aborted records, which this test does not
    // need); noida-db answers the clicks' earliest offset with their end once a transaction ran.
    let broker = rig::tansu();
    let setup = Setup::on(broker, "rt_txn_table", "skip", 1).await;
    setup.group_by_key();
    produce_clicks(&setup, 0..300).await;
    let transactional: FutureProducer = rig::client_config(broker)
        .set("transactional.id", format!("{}-debezium", setup.prefix))
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    {
        use rdkafka::producer::Producer as _;
        transactional.init_transactions(Duration::from_secs(30)).unwrap();
        transactional.begin_transaction().unwrap();
        let topic = setup.topic("visitors");
        for visitor in 1..=VISITORS {
            let key = json!({"visitor_id": visitor}).to_string();
            let value = json!({"before": null, "after": {"visitor_id": visitor, "source": visitor_source(visitor, 0)},
                "source": {"ts_ms": START}, "op": "r", "ts_ms": START})
            .to_string();
            let record = FutureRecord::to(&topic).key(key.as_bytes()).payload(value.as_bytes());
            transactional.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
        }
        transactional.commit_transaction(Duration::from_secs(30)).unwrap();
    }
    // One wait for the table (max_task_idle_ms) would show in the metric.
    let instance = setup.start("only");
    let (want_facts, _) = oracle(300, 0);
    let deadline = Instant::now() + Duration::from_secs(90);
    while outputs(&setup).0 != want_facts {
        assert!(
            Instant::now() < deadline,
            "{} of {} facts after 90 s; records in {}, waits {}\n{}",
            outputs(&setup).0.len(),
            want_facts.len(),
            instance.metric("records_in_total"),
            instance.metric("task_enforced_processing_total"),
            instance.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        instance.metric("task_enforced_processing_total"),
        0.0,
        "no record waited for the transactional table\n{}",
        instance.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_errors_and_a_broker_outage_lose_nothing_on_the_mock_cluster() {
    use happystreams::runtime::instance::{self, Settings};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mock = rig::mock_cluster();
    let bootstrap = mock.bootstrap_servers();
    let prefix = rig::unique_topic("rt_mock").replace('-', "_");
    let partitions = 2;
    for (topic, n) in [
        (format!("{prefix}.clicks"), partitions),
        (format!("{prefix}.visitors"), partitions),
        (format!("{prefix}.facts"), partitions),
        (format!("{prefix}.views_per_source"), partitions),
        // The mock cluster has no Admin API: internal topics are made here.
        (format!("{prefix}-views_per_source-repartition"), partitions),
        (format!("{prefix}-visitors-table-changelog"), partitions),
        (format!("{prefix}-views_per_source-aggregate-changelog"), partitions),
        (format!("{prefix}-clicks-dlq"), 1),
    ] {
        mock.create_topic(&topic, n, 1).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/topologies/views_by_source.yaml"))
            .unwrap()
            .replace("rt.", &format!("{prefix}."));
    let topology = dir.path().join("views_by_source.yaml");
    std::fs::write(&topology, yaml).unwrap();
    let setup = Setup { bootstrap: bootstrap.clone(), prefix: prefix.clone(), dir, topology, partitions };
    produce_visitors(&setup, 0).await;
    produce_clicks(&setup, 0..1_000).await;

    let mut settings = Settings {
        kafka: happystreams::connectors::kafka::KafkaConfig {
            bootstrap_servers: bootstrap.clone(),
            ..Default::default()
        },
        registry: Default::default(),
        runtime: happystreams::runtime::RuntimeConfig {
            application_id: Some(prefix.clone()),
            state_dir: setup.dir.path().join("state"),
            commit_interval_ms: 200,
            http_address: String::new(),
            ..Default::default()
        },
    };
    settings.kafka.properties.insert("session.timeout.ms".into(), "6000".into());
    let plan = happystreams::topology::load(&setup.topology).unwrap();
    let shutdown = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, base, handle) = (shutdown.clone(), setup.dir.path().to_owned(), tokio::runtime::Handle::current());
    let worker = tokio::task::spawn_blocking(move || instance::run(plan, &base, &settings, flag, handle));

    // Failing produce, fetch and offset-commit requests (retried by the client)...
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3];
    mock.request_errors(RDKafkaApiKey::Produce, &errors);
    mock.request_errors(RDKafkaApiKey::Fetch, &errors);
    mock.request_errors(RDKafkaApiKey::OffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 2]);
    produce_clicks(&setup, 1_000..2_000).await;
    // ...then the broker goes down for a while, mid-stream, and comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    mock.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    mock.broker_up(1).unwrap();
    produce_clicks(&setup, 2_000..3_000).await;

    let (want_facts, want_counts) = oracle(3_000, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (facts, counts, _) = outputs(&setup);
        if facts == want_facts && counts == want_counts {
            break;
        }
        assert!(!worker.is_finished(), "the instance stopped: {:?}", worker.await);
        assert!(Instant::now() < deadline, "{} of {} facts after the outage", facts.len(), want_facts.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shutdown.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.await.unwrap().expect("a clean stop");
}

/// A Schema Registry down for a few seconds while records with a schema id the instance has not
/// seen yet arrive: the instance retries (counted) instead of failing or dead-lettering them, and
/// every record is processed once the registry is back. Meanwhile the same stream thread goes on
/// with a task that needs no schema (the fetch runs off the thread).
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_down_while_new_schema_ids_arrive_loses_nothing() {
    const CLICKS: usize = 200;
    let bootstrap = tansu();
    let prefix = rig::unique_topic("registry_outage").replace('-', "_");
    let dir = tempfile::tempdir().unwrap();
    create_topic(bootstrap, &format!("{prefix}.clicks"), 2).await;
    create_topic(bootstrap, &format!("{prefix}.pings"), 2).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = dir.path().join("registry");
    let (registry, url) = crate::cli::serve_on(&data, port);

    // Two versions of the clicks schema (the second adds an optional field), registered as a
    // producer's deployment would.
    let click_schema = include_str!("../../schemas/happytimes.clicks-value.avsc");
    let mut evolved: Json = serde_json::from_str(click_schema).unwrap();
    evolved["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "campaign", "type": ["null", "string"], "default": null}));
    let schemas = dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    let register = |text: &str| -> u32 {
        std::fs::write(schemas.join(format!("{prefix}.clicks-value.avsc")), text).unwrap();
        let out = crate::cli::happystreams()
            .args(["schemas", "register", "--dir", schemas.to_str().unwrap(), "--registry", &url])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
            .split("\tid ")
            .nth(1)
            .and_then(|rest| rest.split('\t').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no id in {stdout}"))
    };
    let (first, second) = (register(click_schema), register(&evolved.to_string()));
    assert_ne!(first, second);

    let yaml = format!(
        r#"name: registry_outage
sources:
  clicks:
    topic: {prefix}.clicks
    format: avro
    schema: {schema}
    key: visitor_id
    timestamp: event_time
    on_error: dead_letter
  pings:
    topic: {prefix}.pings
    format: json
nodes:
  - name: ids
    from: clicks
    select: {{ event_id: event_id, visitor_id: visitor_id }}
  - name: pongs
    from: pings
    select: {{ n: n }}
sinks:
  - {{ from: ids, topic: {prefix}.out, format: json }}
  - {{ from: pongs, topic: {prefix}.pongs, format: json }}
"#,
        schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/happytimes.clicks-value.avsc"),
    );
    let topology = dir.path().join("registry_outage.yaml");
    std::fs::write(&topology, yaml).unwrap();
    let setup = Setup { bootstrap: bootstrap.to_owned(), prefix: prefix.clone(), dir, topology, partitions: 2 };

    let mut generator = happystreams::generate::ClickGenerator::new(11);
    let mut expected = BTreeSet::new();
    let producer = producer(bootstrap);
    let mut produce = async |schema: &str, id: u32, range: std::ops::Range<usize>| {
        let writer = happystreams::codec::avro::AvroSchema::parse(id, schema).unwrap();
        let topic = setup.topic("clicks");
        for index in range {
            let click = generator.click(index);
            expected.insert(click.to_json()["event_id"].as_str().unwrap().to_owned());
            let bytes = writer.encode(&click).unwrap();
            let record = FutureRecord::<[u8], [u8]>::to(&topic).payload(&bytes);
            producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
        }
    };
    produce(click_schema, first, 0..CLICKS).await;
    // One stream thread: the pings' tasks share it with the clicks' tasks.
    let instance = setup.start_with("a", &["--num-threads", "1"], &[("HAPPYSTREAMS_REGISTRY__URL", &url)]);
    let out = format!("topic=\"{prefix}.out\"");
    wait_until("the first version's clicks", Duration::from_secs(60), || {
        instance.metric_labelled("records_out_total", &out) >= CLICKS as f64
    });

    // The registry goes away; clicks written with the second version's id arrive.
    drop(registry);
    produce(&evolved.to_string(), second, CLICKS..2 * CLICKS).await;
    wait_until("a registry retry", Duration::from_secs(30), || instance.metric("registry_retries_total") > 0.0);
    let pings = setup.topic("pings");
    for n in 0..50 {
        let ping = format!("{{\"n\": {n}}}");
        let record = FutureRecord::<[u8], [u8]>::to(&pings).payload(ping.as_bytes());
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
    let pongs = format!("topic=\"{prefix}.pongs\"");
    wait_until("the pings while the registry is down", Duration::from_secs(30), || {
        instance.metric_labelled("records_out_total", &pongs) >= 50.0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        instance.metric_labelled("records_out_total", &out),
        CLICKS as f64,
        "nothing of the second version can be decoded while the registry is down"
    );
    let (_registry, _) = crate::cli::serve_on(&data, port);
    wait_until("every click after the registry came back", Duration::from_secs(60), || {
        instance.metric_labelled("records_out_total", &out) >= 2.0 * CLICKS as f64
    });
    assert_eq!(instance.metric("records_dead_lettered_total"), 0.0, "log:\n{}", instance.log_text());
    let ids: BTreeSet<String> = read_all(bootstrap, &setup.topic("out"), 2)
        .into_iter()
        .filter_map(|(_, value, _)| Some(value?["event_id"].as_str()?.to_owned()))
        .collect();
    assert_eq!(ids, expected, "every click reached the output once the registry was back");
}

#[tokio::test(flavor = "multi_thread")]
async fn inputs_deleted_before_they_were_read_stop_the_instance_unless_told_to_skip_them() {
    // noida-db deletes records (DeleteRecords) and reports the earliest offset; one member, range
    // assignor, one partition and one sub-topology (see the exactly-once test). Exactly-once: its
    // commit markers follow every output (noida-db serves a partition's last produce request
    // only once another one follows).
    let noida = rig::noida();
    let broker = noida.bootstrap.as_str();
    let env = [("HAPPYSTREAMS_KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY", "range")];
    const EOS: [&str; 2] = ["--processing-guarantee", "exactly-once"];
    let setup = Setup::on(broker, "rt_deleted", "skip", 1).await;
    setup.group_by_key();
    produce_visitors(&setup, 0).await;
    let clicks = setup.topic("clicks");
    // Each batch of clicks is followed by a bad record (skipped by `on_error: skip`), for the
    // same reason.
    produce_clicks(&setup, 0..300).await;
    produce_bad_click(&setup).await;
    let event_ids = |setup: &Setup| -> BTreeSet<i64> {
        outputs_at(setup, "read_committed").0.into_iter().map(|(e, _, _)| e[1..].parse().unwrap()).collect()
    };
    let mut first = setup.start_with("only", &EOS, &env);
    let deadline = Instant::now() + Duration::from_secs(90);
    while event_ids(&setup).len() < 300 {
        assert!(
            Instant::now() < deadline,
            "the first 300 clicks not processed: {} in, {} out\n{}",
            first.metric("records_in_total"),
            first.metric("records_out_total"),
            first.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(first.terminate().success(), "{}", first.log_text());

    // While no instance runs, 300 more clicks arrive (offsets 301..601) and the first 150 of them
    // are deleted (retention would do the same): the clicks' partition now starts at offset 451.
    produce_clicks(&setup, 300..600).await;
    produce_bad_click(&setup).await;
    let admin = rig::admin(broker);
    let mut before = TopicPartitionList::new();
    before.add_partition_offset(&clicks, 0, Offset::Offset(451)).unwrap();
    let deleted = admin.delete_records(&before, &rdkafka::admin::AdminOptions::new()).await.unwrap();
    assert_eq!(deleted.elements()[0].offset(), Offset::Offset(451), "{deleted:?}");

    let mut second = setup.start_with("only", &EOS, &env);
    let status =
        second.exit_within(Duration::from_secs(60), "records deleted before they were read must stop the instance");
    let log = second.log_text();
    assert!(!status.success(), "{log}");
    assert!(log.contains(&format!("{} partition 0: records 301..451 were deleted", clicks)), "{log}");
    assert!(log.contains("on_deleted_input = skip"), "the error says how to go on\n{log}");
    assert_eq!(event_ids(&setup).len(), 300, "nothing processed past the gap");

    // Told to skip them: the instance goes on from offset 451, says how many it lost, and counts them.
    let skip = [env[0], ("HAPPYSTREAMS_RUNTIME__ON_DELETED_INPUT", "skip")];
    let mut third = setup.start_with("only", &EOS, &skip);
    let want: BTreeSet<i64> = (0..300).chain(450..600).collect();
    wait_until("the clicks after the gap processed", Duration::from_secs(90), || event_ids(&setup) == want);
    assert_eq!(third.metric("deleted_input_records_total"), 150.0, "{}", third.log_text());
    assert!(third.log_text().contains("lost=150"), "{}", third.log_text());
    assert!(third.terminate().success(), "{}", third.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn inputs_deleted_while_a_task_runs_behind_stop_the_instance_unless_told_to_skip_them() {
    // A running task whose next records go (retention or DeleteRecords) while it is behind: its
    // consumer moves to the earliest record (auto.offset.reset); the gap must not pass silently.
    // The instance is frozen (SIGSTOP) while clicks arrive and the older ones are deleted, so
    // its consumer is behind them when it thaws. One partition, at-least-once (see the purge test).
    let noida = rig::noida();
    let broker = noida.bootstrap.as_str();
    let setup = Setup::on(broker, "rt_behind", "skip", 1).await;
    setup.group_by_key();
    produce_visitors(&setup, 0).await;
    let clicks = setup.topic("clicks");
    let reader: BaseConsumer = rig::client_config(broker).create().unwrap();
    let admin = rig::admin(broker);
    let facts = |setup: &Setup| -> BTreeSet<i64> {
        outputs(setup).0.into_iter().map(|(e, _, _)| e[1..].parse().unwrap()).collect()
    };
    // Freezes `instance`, adds clicks `range` (the first alone, so the fetch the instance left
    // waiting is answered with at most a few records), deletes all but the last 150 of them,
    // thaws it; returns the deleted clicks (offset = click + offset of click 0).
    let fall_behind = |instance: &Instance, range: std::ops::Range<i64>| {
        let pid = instance.child.id().to_string();
        let (setup, reader, admin, clicks) = (&setup, &reader, &admin, &clicks);
        async move {
            assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
            let (_, first) = reader.fetch_watermarks(clicks, 0, Duration::from_secs(10)).unwrap();
            produce_clicks(setup, range.start..range.start + 1).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            produce_clicks(setup, range.start + 1..range.end).await;
            produce_bad_click(setup).await;
            let keep_from = first + (range.end - range.start) - 150;
            let mut before = TopicPartitionList::new();
            before.add_partition_offset(clicks, 0, Offset::Offset(keep_from)).unwrap();
            admin.delete_records(&before, &rdkafka::admin::AdminOptions::new()).await.unwrap();
            assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
            range.start..range.end - 150
        }
    };
    // A session longer than any freeze: the task must be caught running, not reassigned.
    let env = [
        ("HAPPYSTREAMS_KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY", "range"),
        ("HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "20000"),
    ];
    produce_clicks(&setup, 0..300).await;
    produce_bad_click(&setup).await;
    let mut failing = setup.start_with("failing", &[], &env);
    wait_until("the first 300 clicks processed", Duration::from_secs(90), || facts(&setup).len() >= 300);
    let gone = fall_behind(&failing, 300..600).await;
    let status = failing.exit_within(Duration::from_secs(60), "a running task's deleted input must stop the instance");
    let log = failing.log_text();
    assert!(!status.success(), "{log}");
    assert!(log.contains(&format!("{clicks} partition 0: records ")) && log.contains("were deleted"), "{log}");
    assert_eq!(log.matches("task running").count(), 1, "caught while running, not at a new start\n{log}");
    let processed = facts(&setup);
    assert!(processed.iter().all(|c| !(450..600).contains(c)), "nothing processed past the gap: {processed:?}");

    // Told to skip: the restart goes on from the earliest record (caught as it starts), then
    // falls behind while running and goes on again, counting every deleted click it never read.
    let skip = [env[0], env[1], ("HAPPYSTREAMS_RUNTIME__ON_DELETED_INPUT", "skip")];
    let mut skipping = setup.start_with("skipping", &[], &skip);
    wait_until("the clicks after the first gap processed", Duration::from_secs(90), || {
        (450..600).all(|c| facts(&setup).contains(&c))
    });
    let started_lost = skipping.metric("deleted_input_records_total");
    let gone_again = fall_behind(&skipping, 600..900).await;
    wait_until("the clicks after the second gap processed", Duration::from_secs(90), || {
        (750..900).all(|c| facts(&setup).contains(&c))
    });
    assert_eq!(skipping.log_text().matches("task running").count(), 1, "{}", skipping.log_text());
    let processed = facts(&setup);
    let never_read = |gone: std::ops::Range<i64>| gone.filter(|c| !processed.contains(c)).count() as f64;
    // At the start, the deleted clicks the failed instance read but never committed count too.
    assert!(started_lost >= never_read(gone) && started_lost > 0.0, "{}", skipping.log_text());
    let lost_running = skipping.metric("deleted_input_records_total") - started_lost;
    assert!(lost_running > 0.0, "the gap while running was counted\n{}", skipping.log_text());
    assert_eq!(
        lost_running,
        never_read(gone_again),
        "every deleted click it never read is counted, and nothing else\n{}",
        skipping.log_text()
    );
    assert!(skipping.terminate().success(), "{}", skipping.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn consumed_repartition_records_are_deleted_after_commits() {
    // noida-db deletes records; one partition, at-least-once: no transaction ever runs on this
    // broker (after one, noida-db answers earliest offsets with the end).
    let noida = rig::noida();
    let broker = noida.bootstrap.as_str();
    let setup = Setup::on(broker, "rt_purge", "skip", 1).await;
    produce_visitors(&setup, 0).await;
    produce_clicks(&setup, 0..300).await;
    produce_bad_click(&setup).await;
    let env = [
        ("HAPPYSTREAMS_KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY", "range"),
        ("HAPPYSTREAMS_RUNTIME__REPARTITION_PURGE_INTERVAL_MS", "100"),
    ];
    let mut instance = setup.start_with("only", &[], &env);
    let (want_facts, want_counts) = oracle(300, 0);
    let repartition = format!("{}-views_per_source-repartition", setup.prefix);
    let reader: BaseConsumer = rig::client_config(broker).create().unwrap();
    wait_until("the 300 clicks' facts written", Duration::from_secs(90), || {
        instance.metric_labelled("records_out_total", &format!("{}.facts", setup.prefix)) >= 300.0
    });
    // noida-db serves a partition's last produce request only once another one follows: one more
    // click, an hour later in event time, makes the instance write again behind the first 300's
    // outputs (its own outputs are left out of the comparison).
    produce_clicks(&setup, 36_000..36_001).await;
    produce_bad_click(&setup).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (facts, counts, _) = outputs(&setup);
        let facts: BTreeSet<_> = facts.into_iter().filter(|f| want_facts.contains(f)).collect();
        let counts: BTreeMap<_, _> = counts.into_iter().filter(|(k, _)| want_counts.contains_key(k)).collect();
        let (earliest, end) = reader.fetch_watermarks(&repartition, 0, Duration::from_secs(10)).unwrap();
        // Every click's re-keyed record was read and committed, so every one of them can go.
        if facts == want_facts && counts == want_counts && earliest >= 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 300 facts; counts {counts:?}, want {want_counts:?}; repartition topic from {earliest} to {end}; purges {}\n{}",
            facts.len(),
            instance.metric("repartition_purges_total"),
            instance.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(instance.metric("repartition_purges_total") > 0.0);
    assert!(instance.terminate().success(), "{}", instance.log_text());
    // The purge, not time retention, removed them: the clicks' event times are from 2025.
    let admin = rig::admin(broker);
    let described = admin
        .describe_configs(
            &[rdkafka::admin::ResourceSpecifier::Topic(&repartition)],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    let config = described[0].as_ref().unwrap();
    assert_eq!(
        config.get("retention.ms").and_then(|e| e.value.as_deref()),
        Some("-1"),
        "repartition topics are created without time retention"
    );
}

/// `happystreams query --topic`: the latest value per key of an output topic, read with no
/// application running, equals the oracle (JSON), and the table shows a column per field.
#[tokio::test(flavor = "multi_thread")]
async fn query_topic_prints_the_latest_value_per_key_equal_to_the_oracle() {
    let setup = Setup::new("rt_query").await;
    produce_visitors(&setup, 0).await;
    let mut instance = setup.start_with("only", &["--num-threads", "1"], &[]);
    produce_clicks(&setup, 0..1_500).await;
    await_oracle(&setup, 1_500, &[&instance]);
    assert!(instance.terminate().success(), "{}", instance.log_text());

    let topic = setup.topic("views_per_source");
    let query = |format: &str| {
        let output = crate::cli::happystreams()
            .args(["query", "--topic", &topic, "--bootstrap-servers", &setup.bootstrap, "--format", format])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let json = query("json");
    let lines: Vec<Json> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let counts: BTreeMap<(i64, String), i64> = lines.iter().filter_map(|l| window_count(&l["value"])).collect();
    let (_, want) = oracle(1_500, 0);
    assert_eq!(counts, want, "the latest count per (window, source)");
    assert_eq!(lines.len(), want.len(), "one line per key");
    assert!(lines.iter().all(|l| l["partition"].is_i64() && l["offset"].is_i64()), "{}", lines[0]);

    // A tombstone removes its key.
    let gone = &lines[0];
    let partition = gone["partition"].as_i64().unwrap() as i32;
    let key = gone["key"].to_string();
    producer(&setup.bootstrap)
        .send(
            rdkafka::producer::FutureRecord::<String, [u8]>::to(&topic).key(&key).partition(partition),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let after: Vec<Json> = query("json").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(after.len(), want.len() - 1, "the tombstoned key is gone");
    assert!(after.iter().all(|l| l["key"] != gone["key"]), "{key} still listed");

    let table = query("table");
    let header = table.lines().next().unwrap_or_default();
    assert!(header.starts_with("key") && header.contains("source") && header.contains("views"), "{table}");
    assert!(table.trim_end().ends_with(&format!("({} keys)", want.len() - 1)), "{table}");

    let missing = crate::cli::happystreams()
        .args(["query", "--topic", "no_such_topic_q", "--bootstrap-servers", &setup.bootstrap])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && stderr.contains("does not exist"), "{stderr}");
}
