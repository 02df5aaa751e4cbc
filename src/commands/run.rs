//! `happystreams run`: run a topology as a member of its application's consumer group.

use crate::config::Config;
use crate::runtime::ProcessingGuarantee;
use crate::runtime::instance::{self, Settings};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Flags of `happystreams run` (each overrides the config's `[runtime]` / `[kafka]` key).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The topology file (`topologies/*.yaml`).
    #[arg(long, value_name = "FILE")]
    pub topology: PathBuf,
    /// Kafka bootstrap servers (`kafka.bootstrap_servers`).
    #[arg(long, value_name = "HOST:PORT[,...]")]
    pub bootstrap_servers: Option<String>,
    /// Group id and internal-topic prefix (`runtime.application_id`; default: the topology name).
    #[arg(long)]
    pub application_id: Option<String>,
    /// Directory for task state (`runtime.state_dir`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The HTTP server's address (`runtime.http_address`): metrics, health checks, the query
    /// API and the dashboard; loopback by default, empty for none.
    #[arg(long, alias = "metrics-address", value_name = "HOST:PORT")]
    pub http_address: Option<String>,
    /// Schema Registry URL (`registry.url`).
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// Commit interval in ms (`runtime.commit_interval_ms`).
    #[arg(long, value_name = "MS")]
    pub commit_interval_ms: Option<u64>,
    /// Delivery guarantee (`runtime.processing_guarantee`).
    #[arg(long, value_enum)]
    pub processing_guarantee: Option<ProcessingGuarantee>,
    /// Threads processing tasks at once (`runtime.num_threads`; default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub num_threads: Option<u32>,
}

/// Runs until SIGTERM / Ctrl-C (a graceful stop: commit, leave the group) or a failure.
pub async fn run(args: &RunArgs, config: &Config) -> anyhow::Result<()> {
    let plan = crate::topology::load(&args.topology)?;
    let base_dir = args.topology.parent().map(PathBuf::from).unwrap_or_default();
    let mut settings =
        Settings { kafka: config.kafka.clone(), registry: config.registry.clone(), runtime: config.runtime.clone() };
    if let Some(servers) = &args.bootstrap_servers {
        settings.kafka.bootstrap_servers = servers.clone();
    }
    if let Some(id) = &args.application_id {
        settings.runtime.application_id = Some(id.clone());
    }
    if let Some(dir) = &args.state_dir {
        settings.runtime.state_dir = dir.clone();
    }
    if let Some(address) = &args.http_address {
        settings.runtime.http_address = address.clone();
    }
    if let Some(url) = &args.registry {
        settings.registry.url = url.clone();
    }
    if let Some(ms) = args.commit_interval_ms {
        settings.runtime.commit_interval_ms = ms;
    }
    if let Some(guarantee) = args.processing_guarantee {
        settings.runtime.processing_guarantee = guarantee;
    }
    if let Some(n) = args.num_threads {
        settings.runtime.num_threads = n as usize;
    }
    if settings.runtime.num_threads == 0 {
        anyhow::bail!("runtime.num_threads is 0; set it to 1 or more (the default is the number of cores)");
    }
    if settings.runtime.restore_threads == 0 {
        anyhow::bail!("runtime.restore_threads is 0; set it to 1 or more (the default is 4)");
    }
    let handle = crate::observe::metrics::recorder().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    crate::observe::metrics::register_error_counters(&plan);
    if !settings.runtime.http_address.is_empty() {
        let tls = crate::http::TlsFiles::from_pair(
            settings.runtime.metrics_tls_cert.clone(),
            settings.runtime.metrics_tls_key.clone(),
            "runtime.metrics_tls_cert / runtime.metrics_tls_key",
        )
        .map_err(anyhow::Error::msg)?;
        // One HTTP server per instance: metrics, health checks, queries and the dashboard.
        let feed = crate::dashboard::Feed::new(&plan.name, crate::dashboard::feed::layout_of(&plan));
        let authorization = settings.runtime.http_token.as_ref().and_then(crate::http::Token::header);
        tokio::spawn(crate::dashboard::feed::follow_when_started(feed.clone(), authorization, Duration::from_secs(1)));
        let mut app = crate::observe::metrics::router(handle)
            .merge(crate::runtime::health::router())
            .merge(crate::query::http::router())
            .merge(crate::dashboard::router(feed));
        if settings.runtime.http_token.as_ref().is_some_and(crate::http::Token::is_empty) {
            anyhow::bail!(
                "runtime.http_token is empty, which would let every request through; set a token or unset it"
            );
        }
        if let Some(token) = settings.runtime.http_token.clone() {
            app = app.layer(axum::middleware::from_fn_with_state(token, crate::http::bearer::require));
        }
        let url = crate::observe::metrics::serve_router(&settings.runtime.http_address, app, tls.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let advertised = match &settings.runtime.advertised_http_address {
            Some(address) if address.contains("://") => address.clone(),
            Some(address) => format!("{}://{address}", if tls.is_some() { "https" } else { "http" }),
            None => crate::query::discovery::advertised_for(&url).await,
        };
        crate::query::discovery::set_own_url(advertised);
        tracing::info!(address = %settings.runtime.http_address, "metrics at {url}/metrics, health at {url}/health/ready, queries at {url}/v1/stores, dashboard at {url}/dashboard");
    }
    static ACTIVITIES: [&crate::observe::metrics::TopicActivity; 3] = [
        &crate::runtime::open::RECORDS_IN,
        &crate::runtime::open::REPARTITION_IN,
        &crate::runtime::emitter::RECORDS_OUT,
    ];
    tokio::spawn(crate::observe::metrics::keep_fresh(&ACTIVITIES));
    // Every sink's counter exists from the start (an output that never writes is visible).
    for sink in &plan.sinks {
        crate::runtime::emitter::RECORDS_OUT.add(&sink.topic, 0);
    }
    if settings.runtime.volume_window_secs > 0 {
        let window = std::time::Duration::from_secs(settings.runtime.volume_window_secs);
        let inputs = &crate::runtime::open::RECORDS_IN;
        tokio::spawn(crate::observe::volume::watch(inputs, window, settings.runtime.volume_baseline_windows));
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    tokio::spawn(async move {
        crate::commands::shutdown_signal().await;
        tracing::info!("signal received: finishing in-flight records, committing and leaving the group");
        crate::runtime::health::stopping();
        flag.store(true, Ordering::Relaxed);
    });
    let lineage = lineage_run(&plan, &settings, config)?;
    let runtime = tokio::runtime::Handle::current();
    let work = async move {
        tokio::task::spawn_blocking(move || instance::run(plan, &base_dir, &settings, shutdown, runtime)).await??;
        Ok(())
    };
    crate::observe::lineage::around(&config.lineage, lineage, record_counts, work).await
}

/// The run's lineage: the topology's source topics in, its sink topics out, with their schemas.
fn lineage_run(
    plan: &crate::topology::Plan,
    settings: &Settings,
    config: &Config,
) -> anyhow::Result<Option<crate::observe::lineage::Run>> {
    use crate::observe::lineage::{Dataset, Run};
    let servers = &settings.kafka.bootstrap_servers;
    let inputs = plan.sources.iter().map(|s| Dataset::kafka(servers, &s.topic).with_schema(s.schema.clone())).collect();
    let outputs = plan
        .sinks
        .iter()
        .map(|s| Dataset::kafka(servers, &s.topic).with_schema(s.avro.as_ref().map(|a| a.connect.clone())))
        .collect();
    let job = settings.runtime.application_id.clone().unwrap_or_else(|| plan.name.clone());
    Run::new(&config.lineage, &job, "TOPOLOGY", inputs, outputs).map_err(|e| anyhow::anyhow!(e))
}

/// Records read and written per topic so far (the lineage run's counts).
fn record_counts() -> serde_json::Value {
    let totals = |t: Vec<(String, u64)>| t.into_iter().map(|(k, v)| (k, v.into())).collect::<serde_json::Map<_, _>>();
    serde_json::json!({
        "records_in": totals(crate::runtime::open::RECORDS_IN.totals()),
        "records_out": totals(crate::runtime::emitter::RECORDS_OUT.totals()),
    })
}
