//! Which stores a topology has and how to read them: the query side's view of the plan.

use crate::operators::{Event, OperatorError, stateless};
use crate::runtime::layout::Layout;
use crate::topology::Plan;
use crate::topology::plan::{Measure, Step};
use crate::topology::spec::{SourceKind, WindowType};
use serde::Serialize;
use std::sync::Arc;

/// What a store holds, as queries see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The latest row per key (a table source or `to_table`).
    Table,
    /// A table with each key's row history: lookups may ask `as_of` a time.
    VersionedTable,
    /// An unwindowed aggregate: the current result per group.
    Aggregate,
    /// A tumbling, hopping or sliding aggregate: one result per group and window.
    WindowedAggregate,
    /// A session-window aggregate: one result per group and session.
    SessionAggregate,
    /// An operator's working store (join buffers, indexes, distinct sets): listed, not queried.
    Internal,
}

/// One store.
#[derive(Debug, Clone)]
pub struct StoreInfo {
    /// Store name (as in `describe` and the changelog topic).
    pub name: String,
    /// Kind.
    pub kind: StoreKind,
    /// The source or node that writes it.
    pub node: String,
    /// Read in full by every instance (global tables).
    pub global: bool,
    /// Sub-topology whose tasks hold it (`None` for global tables).
    pub subtopology: Option<usize>,
    /// Partitions (one per task); 1 for global tables.
    pub partitions: i32,
    /// Versioned tables: how much history is kept (ms before the stream time).
    pub history_ms: Option<i64>,
    /// Aggregates: the group fields, in order (a key is a JSON object with these fields, or the
    /// value alone when there is one).
    pub key_fields: Vec<String>,
    /// Aggregates: where the measures are in the plan (node index, step index).
    aggregate: Option<(usize, usize)>,
}

/// Every store of a running topology.
#[derive(Debug)]
pub struct Catalog {
    plan: Arc<Plan>,
    /// Stores in plan order.
    pub stores: Vec<StoreInfo>,
}

impl Catalog {
    /// The stores of `plan`, placed by `layout` (the global tables' stores in no sub-topology).
    pub fn new(plan: Arc<Plan>, layout: &Layout) -> Self {
        Catalog::placed(plan, |store| {
            layout.subtopologies.iter().find(|s| s.stores.iter().any(|n| n == store)).map(|s| (s.id, s.partitions))
        })
    }

    /// The stores of `plan` all in one task (sub-topology 0, partition 0), as the topology test
    /// driver (and `happystreams demo`) keeps them.
    pub fn single_task(plan: Arc<Plan>) -> Self {
        Catalog::placed(plan, |_| Some((0, 1)))
    }

    /// The stores of `plan`; `placed(store)` gives a store's sub-topology and partition count.
    fn placed(plan: Arc<Plan>, placed: impl Fn(&str) -> Option<(usize, i32)>) -> Self {
        let mut stores = Vec::new();
        let mut add = |name: &str, kind: StoreKind, node: &str, key_fields: Vec<String>, aggregate, history_ms| {
            let (subtopology, partitions) = match placed(name) {
                Some((sub, partitions)) => (Some(sub), partitions),
                None => (None, 1),
            };
            stores.push(StoreInfo {
                name: name.to_owned(),
                kind,
                node: node.to_owned(),
                global: subtopology.is_none(),
                subtopology,
                partitions,
                history_ms,
                key_fields,
                aggregate,
            });
        };
        for source in &plan.sources {
            let Some(store) = &source.store else { continue };
            let versioned = source.kind == SourceKind::Versioned || source.history_ms.is_some();
            let kind = if versioned { StoreKind::VersionedTable } else { StoreKind::Table };
            add(store, kind, &source.name, Vec::new(), None, source.history_ms);
        }
        for (n, node) in plan.nodes.iter().enumerate() {
            for (s, step) in node.steps.iter().enumerate() {
                match step {
                    Step::ToTable { store, history_ms } => {
                        let kind = if history_ms.is_some() { StoreKind::VersionedTable } else { StoreKind::Table };
                        add(store, kind, &node.name, Vec::new(), None, *history_ms);
                    }
                    Step::Aggregate { group_by, window, store, side_store, distinct_store, .. } => {
                        let kind = match window.as_ref().map(|w| w.window_type) {
                            None => StoreKind::Aggregate,
                            Some(WindowType::Session) => StoreKind::SessionAggregate,
                            Some(_) => StoreKind::WindowedAggregate,
                        };
                        let fields = group_by.iter().map(|(name, _)| name.clone()).collect();
                        add(store, kind, &node.name, fields, Some((n, s)), None);
                        for internal in side_store.iter().chain(distinct_store) {
                            add(internal, StoreKind::Internal, &node.name, Vec::new(), None, None);
                        }
                    }
                    Step::Join { stores: join_stores, .. } => {
                        for internal in join_stores {
                            add(internal, StoreKind::Internal, &node.name, Vec::new(), None, None);
                        }
                    }
                    _ => {}
                }
            }
        }
        Catalog { plan, stores }
    }

    /// A store by name.
    pub fn store(&self, name: &str) -> Option<&StoreInfo> {
        self.stores.iter().find(|s| s.name == name)
    }

    /// An aggregate store's measures.
    pub fn measures(&self, store: &StoreInfo) -> &[(String, Measure)] {
        let step = store.aggregate.and_then(|(n, s)| self.plan.nodes.get(n)?.steps.get(s));
        match step {
            Some(Step::Aggregate { measures, .. }) => measures,
            _ => &[],
        }
    }

    /// An aggregate's result as its node outputs it: the node's filters and projections after
    /// the aggregation applied (`None`: a filter drops it).
    pub fn finish(&self, store: &StoreInfo, event: Event) -> Result<Option<Event>, OperatorError> {
        let Some((n, s)) = store.aggregate else { return Ok(Some(event)) };
        let steps = self.plan.nodes.get(n).map_or(&[][..], |node| node.steps.get(s + 1..).unwrap_or_default());
        let mut event = event;
        for step in steps {
            event = match step {
                Step::Filter(predicate) => match stateless::filter(predicate, event)? {
                    Some(kept) => kept,
                    None => return Ok(None),
                },
                Step::Select(fields) => stateless::select(fields, event)?,
                _ => break,
            };
        }
        Ok(Some(event))
    }

    /// The queryable stores' names (for error messages).
    pub fn queryable(&self) -> Vec<&str> {
        self.stores.iter().filter(|s| s.kind != StoreKind::Internal).map(|s| s.name.as_str()).collect()
    }
}
