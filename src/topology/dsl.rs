//! The Rust DSL: build a topology in code, with the same model and the same validation as the
//! YAML files (a YAML file is just this model written down).
//!
//! ```no_run
//! use happystreams::topology::dsl::TopologyBuilder;
//! use happystreams::topology::spec::{JoinSpec, NodeSpec, SinkFormat, SourceFormat, SourceKind, SourceSpec};
//!
//! let plan = TopologyBuilder::new("enriched")
//!     .source("clicks", SourceSpec { key: Some("visitor_id".into()), timestamp: Some("event_time".into()), ..SourceSpec::new("happytimes.clicks", SourceFormat::Avro) })
//!     .source("visitors", SourceSpec { kind: SourceKind::Versioned, ..SourceSpec::new("happytimes.public.visitors", SourceFormat::DebeziumJson) })
//!     .node(NodeSpec { filter: Some("event_type == 'page_view'".into()), ..NodeSpec::new("views", "clicks") })
//!     .node(NodeSpec { join: Some(JoinSpec::table("visitors")), ..NodeSpec::new("enriched", "views") })
//!     .sink("enriched", "happytimes.facts.views", SinkFormat::Json)
//!     .build()
//!     .unwrap();
//! ```

use super::TopologyError;
use super::plan::Plan;
use super::spec::*;
use super::validate;
use indexmap::IndexMap;
use std::path::{Path, PathBuf};

impl SourceSpec {
    /// A stream source of `topic` in `format` (set the other fields with struct update syntax).
    pub fn new(topic: &str, format: SourceFormat) -> Self {
        SourceSpec { topic: topic.to_owned(), format, ..SourceSpec::default() }
    }
}

impl NodeSpec {
    /// A node named `name` reading `from` (set its steps with struct update syntax).
    pub fn new(name: &str, from: &str) -> Self {
        NodeSpec { name: name.to_owned(), from: Some(from.to_owned()), ..NodeSpec::default() }
    }
}

impl JoinSpec {
    /// A left join with the table `table`, keyed by the current key.
    pub fn table(table: &str) -> Self {
        JoinSpec { table: Some(table.to_owned()), ..JoinSpec::default() }
    }
}

/// Builds a topology in code.
#[derive(Debug)]
pub struct TopologyBuilder {
    spec: TopologySpec,
    base_dir: PathBuf,
}

impl TopologyBuilder {
    /// An empty topology.
    pub fn new(name: &str) -> Self {
        TopologyBuilder {
            spec: TopologySpec {
                name: name.to_owned(),
                description: None,
                sources: IndexMap::new(),
                nodes: Vec::new(),
                sinks: Vec::new(),
            },
            base_dir: PathBuf::from("."),
        }
    }

    /// Where relative `schema` paths start (default: the working directory).
    pub fn schemas_relative_to(mut self, dir: &Path) -> Self {
        self.base_dir = dir.to_owned();
        self
    }

    /// Adds a source.
    pub fn source(mut self, name: &str, source: SourceSpec) -> Self {
        self.spec.sources.insert(name.to_owned(), Located::new(source));
        self
    }

    /// Adds a node (after the nodes it reads).
    pub fn node(mut self, node: NodeSpec) -> Self {
        self.spec.nodes.push(Located::new(node));
        self
    }

    /// Writes a node's (or source's) records to a topic.
    pub fn sink(mut self, from: &str, topic: &str, format: SinkFormat) -> Self {
        self.spec.sinks.push(Located::new(SinkSpec {
            from: from.to_owned(),
            topic: topic.to_owned(),
            format,
            schema: None,
        }));
        self
    }

    /// Validates into a plan (same rules as a YAML file; errors name the node).
    pub fn build(self) -> Result<Plan, TopologyError> {
        validate::build(self.spec, None, &self.base_dir)
    }
}
