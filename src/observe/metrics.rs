//! Prometheus metrics: one recorder per process, rendered at `GET /metrics` by a small HTTP
//! server bound to loopback unless configured otherwise.
//!
//! Every metric is named `happystreams_*`; `docs/OPERATIONS.md` lists them all with their
//! labels and what to watch for.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
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

/// Refreshes the last-record times of `activities` every second, until the process ends.
pub async fn keep_fresh(activities: &'static [&'static TopicActivity]) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        activities.iter().for_each(|a| a.refresh(now));
    }
}

/// Registers the error and rare-event counters at 0 (each source's skipped and dead-lettered
/// records, each join's misses and late records, each window's late records, commit failures,
/// lost assignments, registry retries, cache evictions, state moved aside), so an alert or panel over them sees a
/// series from the start instead of nothing until the first one.
pub fn register_error_counters(plan: &crate::topology::Plan) {
    for source in &plan.sources {
        metrics::counter!("happystreams_records_skipped_total", "source" => source.name.clone()).increment(0);
        metrics::counter!("happystreams_records_dead_lettered_total", "source" => source.name.clone()).increment(0);
    }
    use crate::topology::Step;
    for node in &plan.nodes {
        let name = || node.name.clone();
        for step in &node.steps {
            match step {
                Step::Join { window: None, .. } => {
                    metrics::counter!("happystreams_join_unknown_members_total", "node" => name()).increment(0);
                    metrics::counter!("happystreams_join_inner_misses_total", "node" => name()).increment(0);
                }
                Step::Join { window: Some(_), .. } => {
                    metrics::counter!("happystreams_join_late_records_total", "node" => name()).increment(0);
                }
                Step::Aggregate { window: Some(_), .. } => {
                    metrics::counter!("happystreams_aggregate_late_records_total", "node" => name()).increment(0);
                }
                _ => {}
            }
        }
    }
    for counter in [
        "happystreams_commit_failures_total",
        "happystreams_assignments_lost_total",
        "happystreams_registry_retries_total",
        "happystreams_record_cache_evictions_total",
        "happystreams_row_cache_evictions_total",
        "happystreams_state_quarantined_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
}

/// `GET /metrics`: the Prometheus text of `handle`.
pub fn router(handle: PrometheusHandle) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(move || std::future::ready(handle.render())))
}

/// Serves `GET /metrics` on `address` (over HTTPS with `tls`) until the process ends; returns
/// the endpoint's URL.
pub async fn serve(
    address: &str,
    handle: PrometheusHandle,
    tls: Option<&crate::http::TlsFiles>,
) -> Result<String, String> {
    serve_router(address, router(handle), tls).await.map(|base| format!("{base}/metrics"))
}

/// Serves `app` on `address` (over HTTPS with `tls`) until the process ends; returns its base
/// URL.
pub async fn serve_router(
    address: &str,
    app: axum::Router,
    tls: Option<&crate::http::TlsFiles>,
) -> Result<String, String> {
    let invalid =
        |e: String| format!("cannot serve HTTP on {address}: {e}; set runtime.http_address to a free address");
    let addr = tokio::net::lookup_host(address)
        .await
        .map_err(|e| invalid(e.to_string()))?
        .next()
        .ok_or_else(|| invalid("the address resolves to nothing".into()))?;
    let (bound, task) = crate::http::serve(addr, app, tls, std::future::pending()).await.map_err(|e| {
        if tls.is_some() && e.kind() == std::io::ErrorKind::InvalidInput {
            format!("{e}; check runtime.metrics_tls_cert and runtime.metrics_tls_key")
        } else {
            invalid(e.to_string())
        }
    })?;
    tokio::spawn(async move {
        if let Ok(Err(e)) = task.await {
            tracing::error!(error = %e, "the HTTP endpoint stopped");
        }
    });
    Ok(bound.url())
}

/// Record counters per topic, with the wall-clock time of each topic's last record (the
/// freshness of an input or output). Counting is two atomic adds per call on an entry resolved
/// once per topic; the time is set by [`TopicActivity::refresh`] (every second, from
/// [`keep_fresh`]) for topics whose count moved, so no record reads the clock.
pub struct TopicActivity {
    counter: &'static str,
    last_seen: &'static str,
    topics: std::sync::RwLock<std::collections::BTreeMap<String, Activity>>,
}

/// One topic's counter, last-record gauge, running total (the counter cannot be read) and the
/// total at the last refresh.
struct Activity {
    counter: metrics::Counter,
    last_seen: metrics::Gauge,
    total: std::sync::atomic::AtomicU64,
    refreshed: std::sync::atomic::AtomicU64,
}

impl TopicActivity {
    /// Counters `counter{topic=...}` and gauges `last_seen{topic=...}` (Unix seconds).
    pub const fn new(counter: &'static str, last_seen: &'static str) -> Self {
        TopicActivity { counter, last_seen, topics: std::sync::RwLock::new(std::collections::BTreeMap::new()) }
    }

    /// Counts `n` records of `topic` (0 registers the counter).
    pub fn add(&self, topic: &str, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(activity) = self.topics.read().ok().as_ref().and_then(|t| t.get(topic)) {
            activity.counter.increment(n);
            activity.total.fetch_add(n, Relaxed);
            return;
        }
        let Ok(mut topics) = self.topics.write() else { return };
        let activity = topics.entry(topic.to_owned()).or_insert_with(|| Activity {
            counter: metrics::counter!(self.counter, "topic" => topic.to_owned()),
            last_seen: metrics::gauge!(self.last_seen, "topic" => topic.to_owned()),
            total: Default::default(),
            refreshed: Default::default(),
        });
        activity.counter.increment(n);
        activity.total.fetch_add(n, Relaxed);
    }

    /// Sets the last-record time of every topic counted since the last refresh to `now`.
    pub fn refresh(&self, now: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let topics = self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        for activity in topics.values() {
            let total = activity.total.load(Relaxed);
            if activity.refreshed.swap(total, Relaxed) != total {
                activity.last_seen.set(now);
            }
        }
    }

    /// Each topic's records so far.
    pub fn totals(&self) -> Vec<(String, u64)> {
        let topics = self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        topics.iter().map(|(t, a)| (t.clone(), a.total.load(std::sync::atomic::Ordering::Relaxed))).collect()
    }
}
