//! Observability: logs now; metrics, health and lineage join as the runtime grows.

mod logging;

pub use logging::init_logging;
