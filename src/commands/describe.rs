//! `happystreams describe FILE`: validate a topology and print its graph.

use crate::topology::{self, TopologyError, describe};
use std::path::PathBuf;

/// Output formats of `describe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DescribeFormat {
    /// Kafka-Streams-style text: sub-topologies, processors, stores, repartition topics.
    Text,
    /// Graphviz DOT (`happystreams describe t.yaml --format dot | dot -Tsvg > t.svg`).
    Dot,
}

/// Flags of `happystreams describe`.
#[derive(Debug, Clone, clap::Args)]
pub struct DescribeArgs {
    /// Topology file (`topologies/*.yaml`).
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DescribeFormat::Text)]
    pub format: DescribeFormat,
}

/// Validates the file and returns the description.
pub fn run(args: &DescribeArgs) -> Result<String, TopologyError> {
    let plan = topology::load(&args.file)?;
    Ok(match args.format {
        DescribeFormat::Text => describe::text(&plan),
        DescribeFormat::Dot => describe::dot(&plan),
    })
}
