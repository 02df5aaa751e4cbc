//! Prometheus metrics: one recorder per process, rendered at `GET /metrics` by a small HTTP
//! server bound to loopback unless configured otherwise.
//!
//! Every metric is named `happystreams_*`; `docs/OPERATIONS.md` lists them all with their
//! labels and what to watch for.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Histogram buckets of every `_seconds` metric: 0.5 ms to 5 min.
const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn recorder() -> Result<PrometheusHandle, String> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    // Durations are histograms (not summaries), so quantiles can be taken across instances.
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    metrics::gauge!("happystreams_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Registers the error counters at 0 (each source's skipped and dead-lettered records, each
/// join's unknown members, commit failures, lost assignments), so an alert or panel over them
/// sees a series from the start instead of nothing until the first error.
pub fn register_error_counters(plan: &crate::topology::Plan) {
    for source in &plan.sources {
        metrics::counter!("happystreams_records_skipped_total", "source" => source.name.clone()).increment(0);
        metrics::counter!("happystreams_records_dead_lettered_total", "source" => source.name.clone()).increment(0);
    }
    for node in &plan.nodes {
        let joins = node.steps.iter().any(|s| matches!(s, crate::topology::Step::Join { window: None, .. }));
        if joins {
            metrics::counter!("happystreams_join_unknown_members_total", "node" => node.name.clone()).increment(0);
        }
    }
    metrics::counter!("happystreams_commit_failures_total").increment(0);
    metrics::counter!("happystreams_assignments_lost_total").increment(0);
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

/// Record counters per topic, with the wall-clock time of each topic's last record (the
/// freshness of an input or output), resolved once per topic instead of once per record.
pub struct TopicActivity {
    counter: &'static str,
    last_seen: &'static str,
    topics: std::sync::RwLock<std::collections::BTreeMap<String, Activity>>,
}

/// One topic's counter and last-record gauge, and its running total (the counter cannot be read).
#[derive(Clone)]
struct Activity {
    counter: metrics::Counter,
    last_seen: metrics::Gauge,
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl TopicActivity {
    /// Counters `counter{topic=...}` and gauges `last_seen{topic=...}` (Unix seconds).
    pub const fn new(counter: &'static str, last_seen: &'static str) -> Self {
        TopicActivity { counter, last_seen, topics: std::sync::RwLock::new(std::collections::BTreeMap::new()) }
    }

    /// Counts `n` records of `topic`, seen now.
    pub fn add(&self, topic: &str, n: u64) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let found = self.topics.read().ok().and_then(|t| t.get(topic).cloned());
        let activity = found.unwrap_or_else(|| {
            let activity = Activity {
                counter: metrics::counter!(self.counter, "topic" => topic.to_owned()),
                last_seen: metrics::gauge!(self.last_seen, "topic" => topic.to_owned()),
                total: Default::default(),
            };
            if let Ok(mut topics) = self.topics.write() {
                topics.entry(topic.to_owned()).or_insert(activity).clone()
            } else {
                activity
            }
        });
        activity.counter.increment(n);
        activity.last_seen.set(now);
        activity.total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Each topic's records so far.
    pub fn totals(&self) -> Vec<(String, u64)> {
        let topics = self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        topics.iter().map(|(t, a)| (t.clone(), a.total.load(std::sync::atomic::Ordering::Relaxed))).collect()
    }
}
