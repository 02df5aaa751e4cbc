//! What the HappyTimes end-to-end tests share: `happystreams run` instances on a real broker,
//! waiting until the group has processed everything, and the check against the batch oracle
//! (the stream's final funnel and facts read back from Kafka, the lake filled by `lake-sink`,
//! the dbt marts built from the lake, `tests/happytimes/compare.py`), and the lineage the
//! processes report.

use crate::rig;
use crate::runtime::Instance;
use happystreams::codec::avro::AvroCodec;
use happystreams::connectors::registry::{RegistryStore, RunningRegistry};
use happystreams::generate::{SOURCES, topic_of};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/topologies/happytimes.yaml");
pub const FUNNEL: [&str; 6] = ["awareness", "consideration", "consideration_top", "conversion", "loyalty", "advocacy"];
pub const FACTS: [&str; 4] = ["visitor_activity", "conversion", "retention", "social_sentiment"];

/// Two `happystreams run` instances of happytimes.yaml in one group, on `bootstrap` (a broker
/// of the test's own: the topology's topic names are fixed), with a schema registry for the
/// Avro facts and funnel topics.
pub struct Pipeline {
    pub bootstrap: String,
    pub registry: RunningRegistry,
    pub app: String,
    pub dir: tempfile::TempDir,
    pub instances: Vec<Instance>,
    /// Every topic the group reads (inputs but the global tables, and repartition topics).
    topics: Vec<String>,
}

impl Pipeline {
    /// Creates the input topics (4 partitions each) and starts two instances.
    pub async fn start(bootstrap: &str) -> Pipeline {
        Pipeline::start_with(bootstrap, &[]).await
    }

    /// [`Pipeline::start`] with extra environment variables for the instances.
    pub async fn start_with(bootstrap: &str, env: &[(&str, &str)]) -> Pipeline {
        let app = rig::unique_topic("happytimes").replace('-', "_");
        let mut dir = tempfile::tempdir().unwrap();
        // HAPPYTIMES_E2E_KEEP=1 keeps the instances' logs, the lake and the dbt target.
        if std::env::var_os("HAPPYTIMES_E2E_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        for source in SOURCES {
            rig::create_topic(bootstrap, topic_of(source), 4).await;
        }
        let plan = happystreams::topology::load(Path::new(TOPOLOGY)).unwrap();
        // Global tables (content, ads) are read outside the group.
        let mut topics: Vec<String> =
            SOURCES.iter().filter(|s| !["content", "ads"].contains(*s)).map(|s| topic_of(s).to_owned()).collect();
        topics
            .extend(plan.repartition_topics().iter().map(|t| format!("{app}-{}", t.trim_start_matches("happytimes-"))));
        let registry =
            RunningRegistry::start("127.0.0.1:0".parse().unwrap(), RegistryStore::in_memory()).await.unwrap();
        let instances =
            ["a", "b"].map(|name| start_instance(bootstrap, &registry.url, &app, dir.path(), name, env)).into();
        Pipeline { bootstrap: bootstrap.to_owned(), registry, app, dir, instances, topics }
    }

    /// Starts one more instance (`name` names its state directory and log).
    pub fn add_instance(&mut self, name: &str, env: &[(&str, &str)]) {
        let instance = start_instance(&self.bootstrap, &self.registry.url, &self.app, self.dir.path(), name, env);
        self.instances.push(instance);
    }

    /// The latest value of every key of an Avro output topic (key text → value JSON text).
    pub async fn latest(&self, topic: &str) -> BTreeMap<String, String> {
        let avro = AvroCodec::with_registry(SrSettings::new(self.registry.url.clone()));
        let mut latest = BTreeMap::new();
        for (key, value) in read_all(&self.bootstrap, topic) {
            match value {
                Some(bytes) => latest.insert(key, avro.decode(&bytes).await.unwrap().to_json().to_string()),
                None => latest.remove(&key),
            };
        }
        latest
    }

    /// Waits until the group has processed and committed everything it reads (twice in a row,
    /// so records the last commits wrote to repartition topics are counted too).
    pub fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut zero_in_a_row = 0;
        while zero_in_a_row < 2 {
            assert!(
                Instant::now() < deadline,
                "the pipeline did not catch up within 120 s (lag {}); logs:\n{}",
                self.lag(),
                self.instances.iter().map(|i| i.log_text()).collect::<Vec<_>>().join("\n----\n")
            );
            std::thread::sleep(Duration::from_millis(300));
            zero_in_a_row = if self.lag() == 0 { zero_in_a_row + 1 } else { 0 };
        }
    }

    /// Records after the group's committed offsets, counted by reading them (Fetch), not from
    /// ListOffsets: Tansu 0.6's in-memory engine answers ListOffsets(latest) with the last
    /// batch's base offset + 1, short of the end when a batch holds several records.
    fn lag(&self) -> usize {
        let committed_by: BaseConsumer =
            rig::client_config(&self.bootstrap).set("group.id", &self.app).create().unwrap();
        let mut list = TopicPartitionList::new();
        for topic in &self.topics {
            let Ok(metadata) = committed_by.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
                return usize::MAX;
            };
            for p in 0..metadata.topics()[0].partitions().len() as i32 {
                list.add_partition(topic, p);
            }
        }
        let Ok(committed) = committed_by.committed_offsets(list, Duration::from_secs(10)) else { return usize::MAX };
        // ListOffsets may be short but is never past the end: records it shows are lag for sure.
        let mut surely = 0;
        for e in committed.elements() {
            let position = if let Offset::Offset(o) = e.offset() { o } else { 0 };
            if let Ok((_, high)) = committed_by.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10)) {
                surely += (high - position).max(0) as usize;
            }
        }
        if surely > 0 {
            return surely;
        }
        let mut from = TopicPartitionList::new();
        for e in committed.elements() {
            let offset = if let Offset::Offset(o) = e.offset() { Offset::Offset(o) } else { Offset::Beginning };
            from.add_partition_offset(e.topic(), e.partition(), offset).unwrap();
        }
        let records = read_to_end(&self.bootstrap, from);
        if !records.is_empty() && std::env::var("HAPPYTIMES_E2E_DEBUG").is_ok() {
            eprintln!("lag: {} records, first on {}", records.len(), records[0].0);
        }
        records.len()
    }

    /// Stops the instances (they must exit cleanly, with no late records), then checks the
    /// stream against the batch oracle: the lake gets the raw inputs and the facts, dbt builds
    /// the marts from it, and the final funnel (last value per key of each funnel topic) must
    /// equal the marts, and the lake's facts the Kafka facts. Returns the facts read back.
    pub async fn finish_and_compare_with_dbt(mut self) -> BTreeMap<String, Vec<serde_json::Value>> {
        for instance in &mut self.instances {
            assert!(instance.terminate().success(), "{}", instance.log_text());
        }
        let late: f64 = self.instances.iter().map(|i| i.metric("aggregate_late_records_total")).sum();
        assert_eq!(late, 0.0, "late records make the stream differ from the batch models");
        let dir = self.dir.path();
        let bootstrap = self.bootstrap.as_str();

        // The stream's final funnel and facts, from Kafka (Avro, decoded to JSON).
        let avro = AvroCodec::with_registry(SrSettings::new(self.registry.url.clone()));
        let stream_dir = dir.join("stream");
        std::fs::create_dir_all(&stream_dir).unwrap();
        let mut facts = BTreeMap::new();
        for name in FUNNEL
            .iter()
            .map(|f| format!("happytimes.funnel.{f}"))
            .chain(FACTS.iter().map(|f| format!("happytimes.facts.{f}")))
        {
            let mut records = Vec::new();
            for (key, value) in read_all(bootstrap, &name) {
                let value = match value {
                    Some(bytes) => Some(avro.decode(&bytes).await.unwrap().to_json().to_string()),
                    None => None,
                };
                records.push((key, value));
            }
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
            if let Some(fact) = name.strip_prefix("happytimes.facts.") {
                let values = records.iter().filter_map(|(_, v)| v.as_deref()).map(|v| serde_json::from_str(v).unwrap());
                facts.insert(fact.to_owned(), values.collect());
            }
        }

        // The lake: raw inputs and the facts.
        let lake = dir.join("lake");
        let raw: Vec<String> = SOURCES.iter().map(|s| format!("{}=raw/{s}", topic_of(s))).collect();
        let fact_tables: Vec<String> = FACTS.iter().map(|f| format!("happytimes.facts.{f}=facts/{f}")).collect();
        let registry = self.registry.url.clone();
        let output = crate::cli::happystreams()
            .args(["lake-sink", "--bootstrap-servers", bootstrap, "--lake"])
            .arg(&lake)
            .args(["--group-id", &format!("{}-lake", self.app), "--exit-at-end"])
            .args(["--raw", &raw.join(","), "--avro", &fact_tables.join(",")])
            .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("HAPPYSTREAMS_REGISTRY__URL", &registry)
            .envs(lineage_env(dir))
            .output()
            .unwrap();
        assert!(output.status.success(), "lake-sink: {}", String::from_utf8_lossy(&output.stderr));
        let lake_sink_group = format!("{}-lake", self.app);
        super::lineage::check(
            &dir.join("lineage.jsonl"),
            &self.app,
            self.instances.len(),
            bootstrap,
            &lake_sink_group,
            &lake,
        );

        // dbt over the lake, then the comparison.
        // Through `dbt-ol` (the OpenLineage dbt integration beside dbt): the models' lineage too.
        let dbt = PathBuf::from(rig::tool_binary("HAPPYSTREAMS_DBT_BIN", "dbt.sh"));
        let venv_bin = dbt.parent().unwrap();
        let path = format!("{}:{}", venv_bin.display(), std::env::var("PATH").unwrap_or_default());
        let target = dir.join("dbt");
        let output = Command::new(venv_bin.join("dbt-ol"))
            .args(["build", "--exclude", "stg_partner_files", "--project-dir", "dbt", "--profiles-dir", "dbt"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", path)
            .env("OPENLINEAGE__TRANSPORT__TYPE", "file")
            .env("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", dir.join("lineage-dbt.jsonl"))
            .env("OPENLINEAGE__TRANSPORT__APPEND", "true")
            .env("OPENLINEAGE_NAMESPACE", "happystreams")
            .env("HAPPYTIMES_LAKE_DIR", &lake)
            .env("DBT_TARGET_PATH", &target)
            .env("DBT_LOG_PATH", dir.join("dbt-logs"))
            .output()
            .unwrap();
        assert!(output.status.success(), "dbt build failed:\n{}", String::from_utf8_lossy(&output.stdout));
        super::lineage::check_dbt(&dir.join("lineage-dbt.jsonl"), &lake);
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
        facts
    }
}

/// Every record of `topic`, in partition and offset order: (key, value).
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<(String, Option<Vec<u8>>)> {
    let consumer: BaseConsumer = rig::client_config(bootstrap).create().unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut from = TopicPartitionList::new();
    for p in 0..metadata.topics()[0].partitions().len() as i32 {
        from.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    read_to_end(bootstrap, from).into_iter().map(|(_, key, value)| (key, value)).collect()
}

/// The records from the given positions to the end of each partition: (topic, key, value).
fn read_to_end(bootstrap: &str, from: TopicPartitionList) -> Vec<(String, String, Option<Vec<u8>>)> {
    let partitions = from.count();
    if partitions == 0 {
        return Vec::new();
    }
    let consumer: BaseConsumer = rig::client_config(bootstrap)
        .set("group.id", "happytimes-e2e-reader")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.assign(&from).unwrap();
    let (mut records, mut ended) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ended < partitions && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => records.push((
                m.topic().to_owned(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().map(<[u8]>::to_vec),
            )),
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            _ => {}
        }
    }
    assert_eq!(ended, partitions, "not read to the end of {partitions} partitions within 60 s");
    records
}

/// Lineage events of every process of the test, appended to one file of its directory.
fn lineage_env(dir: &Path) -> [(&'static str, String); 3] {
    [
        ("HAPPYSTREAMS_LINEAGE__TRANSPORT", "file".into()),
        ("HAPPYSTREAMS_LINEAGE__FILE", dir.join("lineage.jsonl").display().to_string()),
        ("HAPPYSTREAMS_LINEAGE__RUNNING_INTERVAL_SECS", "5".into()),
    ]
}

fn start_instance(
    bootstrap: &str,
    registry: &str,
    app: &str,
    dir: &Path,
    name: &str,
    env: &[(&str, &str)],
) -> Instance {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_happystreams"))
        .args(["run", "--topology", TOPOLOGY, "--bootstrap-servers", bootstrap, "--application-id", app])
        .arg("--state-dir")
        .arg(dir.join(name))
        .args(["--http-address", &format!("127.0.0.1:{port}"), "--commit-interval-ms", "200"])
        .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
        .env("HAPPYSTREAMS_REGISTRY__URL", registry)
        .env("RUST_LOG", "happystreams=info")
        .envs(lineage_env(dir))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start happystreams run");
    Instance { child, port, log }
}
