//! Starting an instance: check the topology against the cluster's topics, create internal
//! topics, register sink schemas, build decoders, the producer and the global store, then hand
//! over to the [`super::worker`] loop.

use super::cache::CacheBudget;
use super::codecs::{Decoders, Encoders};
use super::emitter::Emitter;
use super::global::SharedBackend;
use super::layout::{Cleanup, InputKind, InternalTopic, Layout, check_supported};
use super::producer::OutputProducer;
use super::purge::Purger;
use super::shared::Shared;
use super::worker;
use super::{ProcessingGuarantee, RuntimeConfig, RuntimeError};
use crate::codec::avro::AvroCodec;
use crate::connectors::kafka::{ClientKind, ConnectContext, KafkaConfig, TopicSpec, create_missing_topics};
use crate::connectors::registry::RegistryConfig;
use crate::connectors::registry::client::{SchemaFile, register, sr_settings};
use crate::operators::pipeline::Pipeline;
use crate::state::{RocksDbBackend, StateConfig, StateMemory};
use crate::topology::Plan;
use crate::topology::spec::SourceKind;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Everything `happystreams run` needs besides the topology.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Kafka cluster.
    pub kafka: KafkaConfig,
    /// Schema Registry (Avro sources and sinks).
    pub registry: RegistryConfig,
    /// Runtime settings.
    pub runtime: RuntimeConfig,
}

/// Runs `plan` (loaded from a file in `base_dir`, against which sink schema paths resolve) until
/// `shutdown` is set or a task fails. Blocking: call from a thread that may block, with a handle
/// to the tokio runtime (for registry calls).
pub fn run(
    plan: Plan,
    base_dir: &Path,
    settings: &Settings,
    shutdown: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
) -> Result<(), RuntimeError> {
    check_supported(&plan).map_err(|e| RuntimeError::Config(e.to_string()))?;
    let application_id = settings.runtime.application_id.clone().unwrap_or_else(|| plan.name.clone());
    if application_id.is_empty() || !application_id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(RuntimeError::Config(format!(
            "application id `{application_id}` must be non-empty ASCII letters, digits, `.`, `_` or `-` (it names the group and internal topics)"
        )));
    }
    let plan = Arc::new(plan);
    let reference = Pipeline::new(plan.clone()).map_err(|e| RuntimeError::Config(e.to_string()))?;
    let kafka = &settings.kafka;
    let partitions = topic_partitions(kafka)?;
    let layout = Layout::new(&plan, &reference, &application_id, &partitions).map_err(|e| RuntimeError::Config(e.0))?;
    // An instance serving HTTP announces itself to the others (the query API) in one more topic.
    let serving = crate::query::discovery::own_url().is_some();
    let mut internal = layout.internal.clone();
    if serving {
        let name = crate::query::discovery::topic(&application_id);
        internal.push(InternalTopic { name, partitions: 1, cleanup: Cleanup::Compact });
    }
    create_topics(kafka, &internal, settings.runtime.replication_factor, &partitions, true, &runtime)?;
    create_topics(kafka, &layout.sinks, settings.runtime.replication_factor, &partitions, false, &runtime)?;
    crate::query::local::set_catalog(crate::query::catalog::Catalog::new(plan.clone(), &layout));
    let _announced = match serving {
        false => None,
        true => {
            let id = instance_id(&settings.runtime.state_dir.join(&application_id))?;
            crate::query::discovery::start(kafka, &application_id, &id).map_err(RuntimeError::Kafka)?
        }
    };

    let avro = Arc::new(AvroCodec::with_registry(
        sr_settings(&settings.registry).map_err(|e| RuntimeError::Config(e.to_string()))?,
    ));
    let mut sink_schemas = HashMap::new();
    let mut sinks = HashMap::new();
    for sink in &plan.sinks {
        sinks.insert(sink.topic.clone(), sink.format);
        let Some(avro) = &sink.avro else { continue };
        let path = base_dir.join(sink.schema.as_deref().unwrap_or_default());
        let file =
            SchemaFile { path: path.clone(), subject: format!("{}-value", sink.topic), schema: avro.raw.clone() };
        let id = runtime
            .block_on(register(&settings.registry, &file))
            .map_err(|e| RuntimeError::Config(format!("registering the schema of sink `{}`: {e}", sink.topic)))?;
        let schema = avro.with_id(id);
        sink_schemas.insert(sink.topic.clone(), Arc::new(schema));
    }

    let repartitions: HashSet<String> = plan.repartition_topics().into_iter().collect();
    let encoders = Encoders::new(sink_schemas);

    // `state_cache_mb` covers RocksDB (block cache and memtables) and the tables' decoded rows:
    // a quarter for the rows.
    let row_cache_mb = settings.runtime.state_cache_mb / 4;
    crate::operators::row_cache::set_budget(row_cache_mb << 20);
    let memory = StateMemory::new(&StateConfig {
        dir: settings.runtime.state_dir.clone(),
        memory_mb: settings.runtime.state_cache_mb - row_cache_mb,
        ..StateConfig::default()
    });
    let global_stores = Layout::global_stores(&plan);
    let global = if global_stores.is_empty() {
        None
    } else {
        let dir = settings.runtime.state_dir.join(&application_id).join("global");
        Some(SharedBackend::new(Box::new(RocksDbBackend::open(&dir, &global_stores, &memory)?)))
    };
    crate::query::local::set_global(global.as_ref().and_then(crate::state::StateBackend::reader), false);
    let global_tables: BTreeMap<String, Arc<crate::operators::table::Table>> = reference
        .tables()
        .iter()
        .filter(|(name, _)| plan.source(name).is_some_and(|s| s.kind == SourceKind::Global))
        .map(|(name, table)| (name.clone(), table.clone()))
        .collect();
    let mut companions = HashMap::new();
    for sub in &layout.subtopologies {
        for input in sub.inputs.iter().filter(|i| i.topic != sub.lead) {
            companions.insert(input.topic.clone(), sub.id);
        }
    }
    let repartition_names: Vec<(String, String)> =
        layout.physical.iter().map(|(plan_topic, physical)| (physical.clone(), plan_topic.clone())).collect();
    let decoders = Decoders::new(&plan, repartition_names, avro, runtime);
    tracing::info!(
        application = %application_id,
        subtopologies = layout.subtopologies.len(),
        tasks = layout.subtopologies.iter().map(|s| s.partitions).sum::<i32>(),
        global_tables = layout.globals.len(),
        "starting"
    );
    let cached_topics = if settings.runtime.record_cache_mb == 0 { HashSet::new() } else { cached_topics(&plan) };
    let repartitioned =
        layout.subtopologies.iter().flat_map(|s| &s.inputs).any(|i| matches!(i.kind, InputKind::Repartition(_)));
    let purge_interval = if repartitioned { settings.runtime.repartition_purge_interval_ms } else { 0 };
    let purger = Purger::new(kafka, purge_interval);
    let threads = settings.runtime.num_threads.max(1);
    super::health::started(threads);
    let max_record_bytes = kafka
        .producer_config()
        .get("message.max.bytes")
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(crate::runtime::emitter::DEFAULT_MESSAGE_MAX_BYTES);
    let (layout, decoders, companions) = (Arc::new(layout), Arc::new(decoders), Arc::new(companions));
    let (cached_topics, purger) = (Arc::new(cached_topics), Arc::new(Mutex::new(purger)));
    let cache_budget = Arc::new(CacheBudget::new(settings.runtime.record_cache_mb));
    let restoring = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::with_capacity(threads);
    for thread in 0..threads {
        let producer = producer(settings, &application_id, thread)?;
        let emitter =
            Emitter::new(producer, encoders.clone(), sinks.clone(), repartitions.clone(), layout.physical.clone())
                .with_max_record_bytes(max_record_bytes);
        streams.push(Arc::new(Shared {
            thread,
            plan: plan.clone(),
            layout: layout.clone(),
            kafka: kafka.clone(),
            runtime: settings.runtime.clone(),
            decoders: decoders.clone(),
            emitter,
            memory: memory.clone(),
            global: global.clone(),
            global_tables: global_tables.clone(),
            companions: companions.clone(),
            cached_topics: cached_topics.clone(),
            cache_budget: cache_budget.clone(),
            purger: purger.clone(),
            restoring: restoring.clone(),
        }));
    }
    worker::run_threads(streams, shutdown)
}

/// The output producer of stream thread `thread`. Under exactly-once it is transactional, with an
/// id kept in the state directory (`<application_id>-<instance id>-<thread>`), so a restarted
/// instance fences its crashed predecessor's thread and aborts its open transaction.
fn producer(settings: &Settings, application_id: &str, thread: usize) -> Result<Arc<OutputProducer>, RuntimeError> {
    let mut config = settings.kafka.client_config_over(
        ClientKind::Producer,
        &[
            ("enable.idempotence", "true"),
            // The partitioner of the Java client: repartitioned keys land where a Java producer
            // (Debezium, Kafka Connect) would put the same key bytes.
            ("partitioner", "murmur2_random"),
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
        ],
    );
    // Per thread, after the user's properties (one transactional id per producer).
    config.set("client.id", format!("{application_id}-{thread}-producer"));
    let exactly_once = settings.runtime.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
    if exactly_once {
        let id = instance_id(&settings.runtime.state_dir.join(application_id))?;
        config.set("transactional.id", format!("{application_id}-{id}-{thread}"));
    } else {
        config.remove("transactional.id");
    }
    let producer =
        OutputProducer::create(&config).map_err(|e| RuntimeError::Kafka(format!("creating the producer: {e}")))?;
    if exactly_once {
        use rdkafka::producer::Producer as _;
        let timeout = Duration::from_secs(30);
        producer.kafka().init_transactions(timeout).map_err(|e| {
            RuntimeError::Kafka(format!("initialising transactions (does the broker support them?): {e}"))
        })?;
        producer
            .kafka()
            .begin_transaction()
            .map_err(|e| RuntimeError::Kafka(format!("beginning a transaction: {e}")))?;
    }
    Ok(Arc::new(producer))
}

/// Sink topics whose every writer is a table-shaped node with the record cache on (a topic that
/// also takes a stream's records is never merged per key).
fn cached_topics(plan: &Plan) -> HashSet<String> {
    let table_node = |name: &str| {
        plan.nodes.iter().any(|n| n.name == name && n.shape == crate::topology::plan::Shape::Table && n.cache)
    };
    let mut cached: HashSet<String> =
        plan.sinks.iter().filter(|s| table_node(&s.from)).map(|s| s.topic.clone()).collect();
    for sink in plan.sinks.iter().filter(|s| !table_node(&s.from)) {
        cached.remove(&sink.topic);
    }
    cached
}

/// The instance's id, kept in `dir/instance.id` (created on first use).
fn instance_id(dir: &Path) -> Result<String, RuntimeError> {
    let path = dir.join("instance.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_owned());
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let id = format!("{:x}-{:x}", std::process::id(), nanos);
    let io = |e: std::io::Error| {
        RuntimeError::Config(format!("cannot write {}: {e}; check runtime.state_dir", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(&path, &id).map_err(io)?;
    Ok(id)
}

/// Partition counts of every topic in the cluster.
fn topic_partitions(kafka: &KafkaConfig) -> Result<BTreeMap<String, i32>, RuntimeError> {
    let consumer: BaseConsumer<ConnectContext> = kafka
        .consumer_config()
        .create_with_context(ConnectContext::default())
        .map_err(|e| RuntimeError::Config(format!("invalid Kafka client settings: {e}; check kafka.properties")))?;
    // Asked for 1 s, then 2, 4, 8 (a slow cluster still answers): a login or TLS failure
    // (served to the context by a poll) ends the wait at once, as no retry can succeed until
    // the settings change.
    let servers = &kafka.bootstrap_servers;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut attempt = Duration::from_secs(1);
    let metadata = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now()).max(Duration::from_millis(100));
        let wait = attempt.min(left);
        attempt *= 2;
        match consumer.fetch_metadata(None, wait) {
            Ok(metadata) => break metadata,
            Err(e) => {
                let _ = consumer.poll(Duration::from_millis(50));
                if let Some(failure) = consumer.context().security_failure() {
                    return Err(RuntimeError::Kafka(format!("cannot connect to {servers}: {failure}")));
                }
                if std::time::Instant::now() >= deadline {
                    return Err(RuntimeError::Kafka(format!(
                        "cannot read topic metadata from {servers}: {e}; check kafka.bootstrap_servers and that the brokers are up"
                    )));
                }
            }
        }
    };
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect())
}

/// Creates missing topics; existing internal ones (`exact`) must have the partition count the
/// layout needs.
fn create_topics(
    kafka: &KafkaConfig,
    topics: &[InternalTopic],
    replication: i32,
    existing: &BTreeMap<String, i32>,
    exact: bool,
    runtime: &tokio::runtime::Handle,
) -> Result<(), RuntimeError> {
    let mut missing = Vec::new();
    for topic in topics {
        match existing.get(&topic.name) {
            Some(&n) if exact && n != topic.partitions => {
                return Err(RuntimeError::Config(format!(
                    "internal topic `{}` has {n} partitions but the topology needs {} (its input partition count); delete it (and the application's state directory) to reset, or restore the inputs' partition count",
                    topic.name, topic.partitions
                )));
            }
            Some(_) => {}
            None => missing.push(topic),
        }
    }
    // Compaction never reaches the last hour: records of a commit cut short by a crash stay out
    // of its way until the task's next owner rewrote their keys.
    const COMPACTED: &[(&str, &str)] = &[("cleanup.policy", "compact"), ("min.compaction.lag.ms", "3600000")];
    const PURGED: &[(&str, &str)] = &[("cleanup.policy", "delete"), ("retention.ms", "-1")];
    let specs: Vec<TopicSpec<'_>> = missing
        .iter()
        .map(|t| TopicSpec {
            name: &t.name,
            partitions: t.partitions,
            replication,
            config: match t.cleanup {
                Cleanup::Compact => COMPACTED,
                Cleanup::Purged => PURGED,
                Cleanup::BrokerDefault => &[],
            },
        })
        .collect();
    let created = runtime.block_on(create_missing_topics(kafka, &specs)).map_err(RuntimeError::Kafka)?;
    for name in created {
        tracing::info!(topic = %name, "created topic");
    }
    Ok(())
}
