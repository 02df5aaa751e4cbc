//! OpenLineage run events: where each job's data came from and went to.
//!
//! `run`, `lake-sink` and `sftp-sync` each emit START when they begin, RUNNING every
//! `lineage.running_interval_secs` with their record counts, and COMPLETE or FAIL (with the
//! error) when they end. Datasets are named by the OpenLineage conventions: Kafka topics under
//! `kafka://<first bootstrap server>`, lake tables under `file` (the absolute path) or
//! `s3://<bucket>` (the key prefix), SFTP folders under `sftp://<host>:<port>`. Topics with a
//! known schema (a source's declared schema, an Avro sink's schema) carry a `schema` facet.
//!
//! Transports: `file` appends one JSON event per line; `http` POSTs each event to
//! `<url>/api/v1/lineage` (Marquez and other OpenLineage servers), with a bearer token when
//! `api_key` is set. A transport that fails logs a warning: lineage never stops a job.

use crate::codec::connect::ConnectSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The OpenLineage spec version the events follow.
const SPEC: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// Who produced the events (a URI, as the spec asks: a URN with the version).
const PRODUCER: &str = concat!("urn:happystreams:", env!("CARGO_PKG_VERSION"));

/// How events leave the process.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LineageTransport {
    /// No events (the default).
    #[default]
    None,
    /// Appended to `lineage.file`, one JSON event per line.
    File,
    /// POSTed to `lineage.url`.
    Http,
}

/// `[lineage]` settings.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LineageConfig {
    /// `none`, `file` or `http`.
    pub transport: LineageTransport,
    /// The file of the `file` transport.
    pub file: Option<PathBuf>,
    /// The server of the `http` transport (events go to `<url>/api/v1/lineage`).
    pub url: Option<String>,
    /// Bearer token for the `http` transport (never logged).
    pub api_key: Option<String>,
    /// Namespace of the jobs.
    pub namespace: String,
    /// Seconds between RUNNING events (0: none).
    pub running_interval_secs: u64,
}

impl Default for LineageConfig {
    fn default() -> Self {
        LineageConfig {
            transport: LineageTransport::None,
            file: None,
            url: None,
            api_key: None,
            namespace: "happystreams".into(),
            running_interval_secs: 60,
        }
    }
}

impl std::fmt::Debug for LineageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineageConfig")
            .field("transport", &self.transport)
            .field("file", &self.file)
            .field("url", &self.url.as_deref().map(without_credentials))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("namespace", &self.namespace)
            .field("running_interval_secs", &self.running_interval_secs)
            .finish()
    }
}

/// `url` without a user and password (`http://user:pass@host` → `http://host`), for logs.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A dataset as OpenLineage names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Where it lives (`kafka://host:port`, `s3://bucket`, `file`, `sftp://host:port`).
    pub namespace: String,
    /// Its name there (a topic, a path).
    pub name: String,
    /// Its fields (the schema facet's `fields`), when known.
    pub fields: Option<Vec<Value>>,
}

impl Dataset {
    /// A Kafka topic of the cluster at `bootstrap_servers` (named by its first server).
    pub fn kafka(bootstrap_servers: &str, topic: &str) -> Dataset {
        let first = bootstrap_servers.split(',').next().unwrap_or_default().trim();
        Dataset { namespace: format!("kafka://{first}"), name: topic.to_owned(), fields: None }
    }

    /// A table (folder) of the lake at `lake_url` (a local path, `s3://bucket/prefix`,
    /// `hdfs://host:port/path`).
    pub fn lake(lake_url: &str, table: &str) -> Dataset {
        let table = table.trim_matches('/');
        if let Some((scheme, rest)) = lake_url.split_once("://") {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let path = path.trim_matches('/');
            let name = if path.is_empty() { table.to_owned() } else { format!("{path}/{table}") };
            let name = if scheme == "s3" { name } else { format!("/{name}") };
            return Dataset { namespace: format!("{scheme}://{authority}"), name, fields: None };
        }
        let root = std::path::absolute(lake_url).unwrap_or_else(|_| PathBuf::from(lake_url));
        Dataset { namespace: "file".into(), name: root.join(table).display().to_string(), fields: None }
    }

    /// A folder of an SFTP server.
    pub fn sftp(host: &str, port: u16, path: &str) -> Dataset {
        Dataset { namespace: format!("sftp://{host}:{port}"), name: path.to_owned(), fields: None }
    }

    /// With a schema facet from `schema` (a struct's fields).
    pub fn with_schema(mut self, schema: Option<Arc<ConnectSchema>>) -> Dataset {
        self.fields = schema
            .as_ref()
            .and_then(|s| s.fields())
            .map(|fields| fields.iter().map(|f| field_json(&f.name, &f.schema)).collect());
        self
    }

    /// With a schema facet of `(name, type)` fields.
    pub fn with_fields(mut self, fields: &[(String, String)]) -> Dataset {
        self.fields = Some(fields.iter().map(|(name, kind)| json!({"name": name, "type": kind})).collect());
        self
    }

    fn to_json(&self) -> Value {
        let mut facets = serde_json::Map::new();
        if let Some(fields) = &self.fields {
            facets.insert(
                "schema".into(),
                json!({
                    "_producer": PRODUCER,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
                    "fields": fields,
                }),
            );
        }
        json!({"namespace": self.namespace, "name": self.name, "facets": facets})
    }
}

fn field_json(name: &str, schema: &ConnectSchema) -> Value {
    // A semantic name (`io.debezium.time.Timestamp`, an enum's name) says more than the type.
    let kind = schema.name.as_deref().filter(|_| schema.fields().is_none()).unwrap_or(schema.kind.name());
    let mut field = json!({"name": name, "type": kind});
    if let Some(fields) = schema.fields() {
        field["fields"] = fields.iter().map(|f| field_json(&f.name, &f.schema)).collect();
    }
    field
}

/// Where events go.
#[derive(Clone)]
enum Sink {
    File(Arc<Mutex<PathBuf>>),
    Http { url: String, api_key: Option<String>, client: reqwest::Client },
}

/// One run of a job: emits its events.
#[derive(Clone)]
pub struct Run {
    sink: Sink,
    run_id: uuid::Uuid,
    namespace: String,
    job: String,
    job_type: &'static str,
    /// The inputs, with the schemas they had last (updated when an input's schema changes).
    inputs: Arc<Mutex<Vec<Dataset>>>,
    outputs: Vec<Dataset>,
}

/// A lineage event's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The run began.
    Start,
    /// The run goes on (with its counts so far).
    Running,
    /// The run ended successfully.
    Complete,
    /// The run failed.
    Fail,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Running => "RUNNING",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
        }
    }
}

impl Run {
    /// A run of `job` (kind `job_type`: `TOPOLOGY`, `LAKE_SINK`, `SFTP_SYNC`) reading `inputs`
    /// and writing `outputs`; `None` when lineage is off. A transport without its setting is a
    /// configuration error.
    pub fn new(
        config: &LineageConfig,
        job: &str,
        job_type: &'static str,
        inputs: Vec<Dataset>,
        outputs: Vec<Dataset>,
    ) -> Result<Option<Run>, String> {
        let sink = match config.transport {
            LineageTransport::None => return Ok(None),
            LineageTransport::File => {
                let file = config.file.clone().ok_or(
                    "lineage.transport is file but lineage.file is not set; set it (HAPPYSTREAMS_LINEAGE__FILE) to the file to append events to",
                )?;
                Sink::File(Arc::new(Mutex::new(file)))
            }
            LineageTransport::Http => {
                let url = config.url.clone().ok_or(
                    "lineage.transport is http but lineage.url is not set; set it (HAPPYSTREAMS_LINEAGE__URL) to the OpenLineage server, e.g. http://marquez:5000",
                )?;
                let client =
                    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
                Sink::Http {
                    url: format!("{}/api/v1/lineage", url.trim_end_matches('/')),
                    api_key: config.api_key.clone(),
                    client,
                }
            }
        };
        Ok(Some(Run {
            sink,
            run_id: uuid::Uuid::now_v7(),
            namespace: config.namespace.clone(),
            job: job.to_owned(),
            job_type,
            inputs: Arc::new(Mutex::new(inputs)),
            outputs,
        }))
    }

    /// The event of `kind`: `counts` become the run's `happystreams_counts` facet; `error` the
    /// `errorMessage` facet of a FAIL.
    pub fn event(&self, kind: EventType, counts: Option<Value>, error: Option<&str>) -> Value {
        let mut run_facets = json!({
            "processing_engine": {
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
                "version": env!("CARGO_PKG_VERSION"),
                "name": "happystreams",
                "openlineageAdapterVersion": env!("CARGO_PKG_VERSION"),
            }
        });
        if let Some(counts) = counts {
            run_facets["happystreams_counts"] = json!({
                "_producer": PRODUCER,
                "_schemaURL": "urn:happystreams:facets:HappystreamsCountsRunFacet",
                "counts": counts,
            });
        }
        if let Some(message) = error {
            run_facets["errorMessage"] = json!({
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                "message": message,
                "programmingLanguage": "Rust",
            });
        }
        json!({
            "eventType": kind.as_str(),
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "run": {"runId": self.run_id.to_string(), "facets": run_facets},
            "job": {
                "namespace": self.namespace,
                "name": self.job,
                "facets": {
                    "jobType": {
                        "_producer": PRODUCER,
                        "_schemaURL": "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                        "processingType": if self.job_type == "TOPOLOGY" { "STREAMING" } else { "BATCH" },
                        "integration": "HAPPYSTREAMS",
                        "jobType": self.job_type,
                    }
                }
            },
            "inputs": self.inputs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(Dataset::to_json).collect::<Vec<_>>(),
            "outputs": self.outputs.iter().map(Dataset::to_json).collect::<Vec<_>>(),
            "producer": PRODUCER,
            "schemaURL": SPEC,
        })
    }

    /// Gives the inputs named in `changes` their new fields; returns whether any changed.
    fn note_schema_changes(&self, changes: Vec<SchemaChange>) -> bool {
        let mut inputs = self.inputs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changed = false;
        for (topic, fields) in changes {
            for input in inputs.iter_mut().filter(|d| d.name == topic) {
                *input = input.clone().with_fields(&fields);
                changed = true;
            }
        }
        changed
    }

    /// Sends an event; a failure is logged, never returned.
    pub async fn emit(&self, kind: EventType, counts: Option<Value>, error: Option<&str>) {
        let event = self.event(kind, counts, error);
        let sent = match &self.sink {
            Sink::File(path) => {
                let path = path.clone();
                let line = format!("{event}\n");
                tokio::task::spawn_blocking(move || {
                    let path = path.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&*path)?;
                    // One write per event: appends of whole lines from several processes do not mix.
                    file.write_all(line.as_bytes())
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Sink::Http { url, api_key, client } => {
                let mut request = client.post(url).json(&event);
                if let Some(key) = api_key {
                    request = request.bearer_auth(key);
                }
                match request.send().await {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(format!("{} answered {}", without_credentials(url), response.status())),
                    Err(e) => Err(e.without_url().to_string()),
                }
            }
        };
        if let Err(e) = sent {
            tracing::warn!(job = %self.job, event = kind.as_str(), error = %e, "lineage event not sent");
        }
    }
}

/// An input topic whose schema changed, with its new fields (name, type).
pub type SchemaChange = (String, Vec<(String, String)>);

/// Input schema changes not yet reported, while a lineage run listens for them.
static SCHEMA_CHANGES: Mutex<Vec<SchemaChange>> = Mutex::new(Vec::new());
static LISTENING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reports that `topic` has a new schema with `fields` (name, type): the running lineage run
/// emits a RUNNING event with them. Nothing is kept when no run listens.
pub fn report_schema_change(topic: &str, fields: Vec<(String, String)>) {
    if cfg!(test) || LISTENING.load(std::sync::atomic::Ordering::Relaxed) {
        SCHEMA_CHANGES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((topic.to_owned(), fields));
    }
}

/// The schema changes reported since the last call.
pub fn take_schema_changes() -> Vec<SchemaChange> {
    std::mem::take(&mut *SCHEMA_CHANGES.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// Runs `work` as one lineage run: START, RUNNING every `config.running_interval_secs` with
/// `counts()` (and within a second of an input's schema change, every event from then on naming
/// the input's new fields), then COMPLETE or FAIL (with the error). With lineage off, just runs
/// `work`.
pub async fn around<T>(
    config: &LineageConfig,
    run: Option<Run>,
    counts: impl Fn() -> Value + Send + Sync + 'static,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let Some(run) = run else { return work.await };
    let counts = Arc::new(counts);
    run.emit(EventType::Start, None, None).await;
    LISTENING.store(true, std::sync::atomic::Ordering::Relaxed);
    // One task sends every event after START, in order; it stops between sends when asked, and
    // the final event goes out only once it has.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let background = {
        let (run, counts) = (run.clone(), counts.clone());
        let every = (config.running_interval_secs > 0).then(|| Duration::from_secs(config.running_interval_secs));
        tokio::spawn(async move {
            let mut next = every.map(|e| tokio::time::Instant::now() + e);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopped.changed() => return,
                }
                let changed = run.note_schema_changes(take_schema_changes());
                let due = next.is_some_and(|n| tokio::time::Instant::now() >= n);
                if changed || due {
                    run.emit(EventType::Running, Some(counts()), None).await;
                    next = every.map(|e| tokio::time::Instant::now() + e);
                }
            }
        })
    };
    let result = work.await;
    let _ = stop.send(true);
    let _ = background.await;
    run.note_schema_changes(take_schema_changes());
    match &result {
        Ok(_) => run.emit(EventType::Complete, Some(counts()), None).await,
        Err(e) => run.emit(EventType::Fail, Some(counts()), Some(&format!("{e:#}"))).await,
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_named_by_the_openlineage_conventions() {
        let topic = Dataset::kafka("broker-1:9092, broker-2:9092", "happytimes.clicks");
        assert_eq!((topic.namespace.as_str(), topic.name.as_str()), ("kafka://broker-1:9092", "happytimes.clicks"));
        let s3 = Dataset::lake("s3://lake-bucket/happytimes/", "facts/conversion");
        assert_eq!((s3.namespace.as_str(), s3.name.as_str()), ("s3://lake-bucket", "happytimes/facts/conversion"));
        let bucket_root = Dataset::lake("s3://lake-bucket", "raw/clicks");
        assert_eq!(bucket_root.name, "raw/clicks");
        let hdfs = Dataset::lake("hdfs://namenode:8020/lake", "raw/clicks");
        assert_eq!((hdfs.namespace.as_str(), hdfs.name.as_str()), ("hdfs://namenode:8020", "/lake/raw/clicks"));
        let local = Dataset::lake("/data/lake", "raw/clicks");
        assert_eq!((local.namespace.as_str(), local.name.as_str()), ("file", "/data/lake/raw/clicks"));
        let sftp = Dataset::sftp("partner.example", 22, "/upload");
        assert_eq!(sftp.namespace, "sftp://partner.example:22");
    }

    #[test]
    fn a_file_transport_without_a_file_is_a_clear_error() {
        let config = LineageConfig { transport: LineageTransport::File, ..LineageConfig::default() };
        let error = Run::new(&config, "job", "TOPOLOGY", vec![], vec![]).err().unwrap();
        assert!(error.contains("HAPPYSTREAMS_LINEAGE__FILE"), "{error}");
        assert!(Run::new(&LineageConfig::default(), "job", "TOPOLOGY", vec![], vec![]).unwrap().is_none());
    }

    #[test]
    fn the_api_key_and_url_credentials_never_show_in_debug_output() {
        let config = LineageConfig {
            api_key: Some("s3cr3t-token".into()),
            url: Some("http://svc:pa55w0rd@marquez:5000".into()),
            ..LineageConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t-token") && !debug.contains("pa55w0rd"), "{debug}");
        assert!(debug.contains("marquez:5000"), "{debug}");
    }
}
