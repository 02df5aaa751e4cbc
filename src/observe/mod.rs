//! Observability: logs and Prometheus metrics.

mod logging;
pub mod metrics;

pub use logging::init_logging;
