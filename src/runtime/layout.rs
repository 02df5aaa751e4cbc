//! Which tasks a topology runs as, and which topics it needs: source partition counts checked
//! for co-partitioning, internal topics (repartition, changelog, dead letters, late records)
//! named after the application and created with the right partition counts.

use crate::operators::pipeline::Pipeline;
use crate::topology::Plan;
use crate::topology::plan::Step;
use crate::topology::spec::{OnError, SourceKind};
use std::collections::BTreeMap;
use std::fmt;

/// A task: one partition of one sub-topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    /// Sub-topology.
    pub subtopology: usize,
    /// Partition.
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// What a task input topic is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    /// A source of the topology (its name).
    Source(String),
    /// A repartition topic (its name in the plan).
    Repartition(String),
}

/// One input topic of a sub-topology.
#[derive(Debug, Clone)]
pub struct Input {
    /// Physical topic.
    pub topic: String,
    /// What it is.
    pub kind: InputKind,
    /// A table: read to its end before the task processes streams.
    pub table: bool,
}

/// One sub-topology as tasks.
#[derive(Debug, Clone)]
pub struct SubtopologyLayout {
    /// Number.
    pub id: usize,
    /// Tasks (= partitions of every input).
    pub partitions: i32,
    /// The topic the consumer group assigns: its partition P is task `id_P`.
    pub lead: String,
    /// Every input topic, the lead included.
    pub inputs: Vec<Input>,
    /// Stores the tasks keep.
    pub stores: Vec<String>,
    /// Changelog topic (`None`: stateless).
    pub changelog: Option<String>,
}

/// An internal topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopic {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// How the broker removes its records.
    pub cleanup: Cleanup,
}

/// How the broker removes an internal topic's records (set when the application creates it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Log-compacted (changelogs): the latest record per key stays.
    Compact,
    /// Never by time (repartition topics, like Kafka Streams'): their records carry the events'
    /// own timestamps, so time retention would delete a backfill's records before they are read.
    /// The repartition purge removes what every task is past.
    Purged,
    /// The broker's defaults (dead letters, late records, outputs).
    BrokerDefault,
}

/// The whole layout.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Group id and internal topic prefix.
    pub application_id: String,
    /// Sub-topologies.
    pub subtopologies: Vec<SubtopologyLayout>,
    /// Global table sources: (source name, topic, partitions).
    pub globals: Vec<(String, String, i32)>,
    /// Internal topics.
    pub internal: Vec<InternalTopic>,
    /// Plan topic name → physical name (internal topics carry the application id).
    pub physical: BTreeMap<String, String>,
    /// Dead-letter topic per source with `on_error: dead_letter`.
    pub dead_letters: BTreeMap<String, String>,
    /// Sink topics, created with this many partitions when missing (existing ones are used as
    /// they are).
    pub sinks: Vec<InternalTopic>,
}

/// The layout cannot work with the cluster's topics.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

impl Layout {
    /// Lays `plan` out over topics with the given partition counts (`topic → partitions`;
    /// missing topics are errors naming the source).
    pub fn new(
        plan: &Plan,
        pipeline: &Pipeline,
        application_id: &str,
        partitions: &BTreeMap<String, i32>,
    ) -> Result<Layout, LayoutError> {
        let prefix = format!("{}-", plan.name);
        let rename = |topic: &str| match topic.strip_prefix(&prefix) {
            Some(rest) => format!("{application_id}-{rest}"),
            None => topic.to_owned(),
        };
        let count = |source: &str, topic: &str| {
            partitions.get(topic).copied().ok_or_else(|| {
                LayoutError(format!(
                    "source `{source}` reads topic `{topic}`, which does not exist; create it (co-partitioned sources need the same partition count) or fix `topic:` in the topology"
                ))
            })
        };
        let mut globals = Vec::new();
        let mut external_max = 1;
        for source in &plan.sources {
            let n = count(&source.name, &source.topic)?;
            if source.kind == SourceKind::Global {
                globals.push((source.name.clone(), source.topic.clone(), n));
            } else {
                external_max = external_max.max(n);
            }
        }
        let readers = pipeline.repartition_readers();
        let store_owner = store_subtopologies(plan);
        let mut subtopologies = Vec::new();
        let mut internal = Vec::new();
        let mut physical = BTreeMap::new();
        for id in 0..plan.subtopologies {
            let mut inputs = Vec::new();
            let mut counts: Vec<(String, i32)> = Vec::new();
            for source in plan.sources.iter().filter(|s| s.subtopology == Some(id) && s.kind != SourceKind::Global) {
                counts.push((source.topic.clone(), count(&source.name, &source.topic)?));
                inputs.push(Input {
                    topic: source.topic.clone(),
                    kind: InputKind::Source(source.name.clone()),
                    table: source.kind.is_table(),
                });
            }
            if let Some((first, n)) = counts.first()
                && let Some((other, m)) = counts.iter().find(|(_, m)| m != n)
            {
                return Err(LayoutError(format!(
                    "sub-topology {id} joins topics that are not co-partitioned: `{first}` has {n} partitions but `{other}` has {m}; give them the same number of partitions (and the same key partitioning), or make the table `table: global`"
                )));
            }
            let partitions = counts.first().map_or(external_max, |(_, n)| *n);
            for (plan_topic, _) in readers.iter().filter(|(_, r)| **r == id) {
                let topic = rename(plan_topic);
                physical.insert(plan_topic.clone(), topic.clone());
                internal.push(InternalTopic { name: topic.clone(), partitions, cleanup: Cleanup::Purged });
                inputs.push(Input { topic, kind: InputKind::Repartition(plan_topic.clone()), table: false });
            }
            if inputs.is_empty() {
                continue;
            }
            let lead = inputs.iter().find(|i| !i.table).unwrap_or(&inputs[0]).topic.clone();
            let stores: Vec<String> =
                store_owner.iter().filter(|(_, s)| **s == id).map(|(store, _)| store.clone()).collect();
            let changelog = stores.first().map(|first| format!("{application_id}-{first}-changelog"));
            if let Some(name) = &changelog {
                internal.push(InternalTopic { name: name.clone(), partitions, cleanup: Cleanup::Compact });
            }
            subtopologies.push(SubtopologyLayout { id, partitions, lead, inputs, stores, changelog });
        }
        for node in &plan.nodes {
            if let Some(topic) = &node.late_topic {
                let name = rename(topic);
                physical.insert(topic.clone(), name.clone());
                internal.push(InternalTopic { name, partitions: external_max, cleanup: Cleanup::BrokerDefault });
            }
        }
        let mut dead_letters = BTreeMap::new();
        for source in plan.sources.iter().filter(|s| s.on_error == OnError::DeadLetter) {
            let name = format!("{application_id}-{}-dlq", source.name);
            internal.push(InternalTopic { name: name.clone(), partitions: 1, cleanup: Cleanup::BrokerDefault });
            dead_letters.insert(source.name.clone(), name);
        }
        let mut sinks: Vec<InternalTopic> = plan
            .sinks
            .iter()
            .map(|s| InternalTopic { name: s.topic.clone(), partitions: external_max, cleanup: Cleanup::BrokerDefault })
            .collect();
        sinks.dedup_by(|a, b| a.name == b.name);
        Ok(Layout {
            application_id: application_id.to_owned(),
            subtopologies,
            globals,
            internal,
            physical,
            dead_letters,
            sinks,
        })
    }

    /// The physical topic an output of the plan goes to.
    pub fn physical<'a>(&'a self, plan_topic: &'a str) -> &'a str {
        self.physical.get(plan_topic).map_or(plan_topic, String::as_str)
    }

    /// The sub-topology whose lead topic is `topic`.
    pub fn by_lead(&self, topic: &str) -> Option<&SubtopologyLayout> {
        self.subtopologies.iter().find(|s| s.lead == topic)
    }

    /// A sub-topology by number.
    pub fn subtopology(&self, id: usize) -> Option<&SubtopologyLayout> {
        self.subtopologies.iter().find(|s| s.id == id)
    }

    /// Stores of global tables (kept once per instance, not per task).
    pub fn global_stores(plan: &Plan) -> Vec<String> {
        plan.sources.iter().filter(|s| s.kind == SourceKind::Global).filter_map(|s| s.store.clone()).collect()
    }
}

/// Which sub-topology keeps each (non-global) store.
fn store_subtopologies(plan: &Plan) -> BTreeMap<String, usize> {
    let mut owner = BTreeMap::new();
    for source in &plan.sources {
        if let (Some(store), Some(sub)) = (&source.store, source.subtopology) {
            owner.insert(store.clone(), sub);
        }
    }
    for node in &plan.nodes {
        for step in &node.steps {
            let stores: Vec<&String> = match step {
                Step::Join { stores, .. } => stores.iter().collect(),
                Step::Aggregate { store, side_store, distinct_store, .. } => {
                    std::iter::once(store).chain(side_store.iter()).chain(distinct_store.iter()).collect()
                }
                Step::ToTable { store, .. } => vec![store],
                _ => Vec::new(),
            };
            for store in stores {
                owner.insert(store.clone(), node.subtopology);
            }
        }
    }
    owner
}

/// Refuses plans the runtime cannot split yet: a node that goes through two repartition topics.
pub fn check_supported(plan: &Plan) -> Result<(), LayoutError> {
    for node in &plan.nodes {
        let repartitions = node
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s,
                    Step::Rekey { repartition: Some(_), .. }
                        | Step::Repartition { .. }
                        | Step::Aggregate { repartition: Some(_), .. }
                )
            })
            .count();
        if repartitions > 1 {
            return Err(LayoutError(format!(
                "node `{}` (line {}) re-keys through {repartitions} repartition topics; split it into one node per re-key",
                node.name, node.line
            )));
        }
    }
    Ok(())
}
