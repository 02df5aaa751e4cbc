//! Prometheus metrics: one recorder per process, rendered at `GET /metrics` by a small HTTP
//! server bound to loopback unless configured otherwise.
//!
//! Runtime metrics (all labelled): `records_in_total{topic}`, `records_out_total{topic}`,
//! `records_skipped_total{source}`, `records_dead_lettered_total{source}`,
//! `consumer_lag{topic,partition}`, `restore_records_total{task}`,
//! `restore_remaining_records{task}`, `task_running{task}`, `commit_seconds` (histogram); and
//! the engine's `aggregate_late_records_total{node}`, `table_null_keys_total{node}`.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn recorder() -> Result<PrometheusHandle, String> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| e.to_string())?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Serves `GET /metrics` on `address` until the process ends; returns the bound address.
pub async fn serve(address: &str, handle: PrometheusHandle) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        format!("cannot listen on {address} for metrics: {e}; set runtime.metrics_address to a free address")
    })?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || std::future::ready(handle.render())));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

/// Counters labelled by one value (a topic, a source), resolved once per label value instead of
/// once per record.
pub struct LabelledCounters {
    name: &'static str,
    label: &'static str,
    counters: std::sync::RwLock<std::collections::BTreeMap<String, metrics::Counter>>,
}

impl LabelledCounters {
    /// Counters `name{label=...}`.
    pub const fn new(name: &'static str, label: &'static str) -> Self {
        LabelledCounters { name, label, counters: std::sync::RwLock::new(std::collections::BTreeMap::new()) }
    }

    /// Adds `n` to the counter for `value`.
    pub fn add(&self, value: &str, n: u64) {
        if let Some(counter) = self.counters.read().ok().and_then(|c| c.get(value).cloned()) {
            counter.increment(n);
            return;
        }
        let counter = metrics::counter!(self.name, self.label => value.to_owned());
        counter.increment(n);
        if let Ok(mut counters) = self.counters.write() {
            counters.insert(value.to_owned(), counter);
        }
    }
}
