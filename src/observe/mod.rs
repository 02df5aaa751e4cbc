//! Observability: logs, Prometheus metrics and the data checks made from the stream itself
//! (input volume anomalies).

mod logging;
pub mod metrics;
pub mod volume;

pub use logging::init_logging;
