//! Observability: logs, Prometheus metrics, the data checks made from the stream itself (input
//! volume anomalies) and OpenLineage events.

pub mod lineage;
mod logging;
pub mod metrics;
pub mod volume;

pub use logging::init_logging;
