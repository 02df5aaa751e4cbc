//! Topologies: what a job computes, declared in `topologies/*.yaml` ([`spec`]) or built in Rust
//! ([`dsl`]), and validated ([`validate`]) into a [`Plan`] ([`plan`]) that `describe` prints
//! ([`describe`]) and the engine runs.
//!
//! Loading is strict: unknown keys, bad durations, unknown inputs, type-mismatched join keys
//! and impossible windows are errors that name the file, the line and the node.

pub mod describe;
pub mod dsl;
pub mod duration;
pub mod plan;
pub mod spec;
pub mod validate;

pub use plan::{Plan, Shape, Step};

use crate::error::ErrorClass;
use std::fmt;
use std::path::{Path, PathBuf};

/// A topology that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    /// The file, when loaded from one.
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: Option<u64>,
    /// 1-based column.
    pub column: Option<u64>,
    /// The source or node the problem is in.
    pub node: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl TopologyError {
    /// Always a configuration error.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
        } else {
            f.write_str("topology")?;
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(node) = &self.node {
            write!(f, "`{node}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for TopologyError {}

/// Parses and validates topology YAML. Relative schema paths start at `base_dir`.
pub fn parse(yaml: &str, file: Option<&Path>, base_dir: &Path) -> Result<Plan, TopologyError> {
    let spec: spec::TopologySpec = serde_saphyr::from_str(yaml).map_err(|e| {
        let location = e.location();
        TopologyError {
            file: file.map(Path::to_path_buf),
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
            node: None,
            message: first_line(&e.to_string()),
        }
    })?;
    validate::build(spec, file, base_dir)
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

/// Loads a topology file.
pub fn load(path: &Path) -> Result<Plan, TopologyError> {
    let yaml = std::fs::read_to_string(path).map_err(|e| TopologyError {
        file: Some(path.to_owned()),
        line: None,
        column: None,
        node: None,
        message: format!("cannot read the file: {e}"),
    })?;
    parse(&yaml, Some(path), path.parent().unwrap_or(Path::new(".")))
}
