//! The shipped monitoring against the real thing: a Prometheus running `deploy/prometheus/`
//! scrapes two `happystreams run` instances of happytimes.yaml on Tansu. Every Grafana panel's
//! query returns data (no dead panel), every metric an alert uses exists, and alerts provoked on
//! purpose — bad records, an instance killed — fire.

use super::harness::Pipeline;
use super::{DAY, produce};
use crate::deploy::{Prometheus, alert_names, dashboard_queries, deploy_file};
use crate::rig;
use happystreams::generate::{Options, generate};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Polls `check` every half second until it gives `Some`, or panics after `limit`.
async fn eventually<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {} s", limit.as_secs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A dashboard query with Grafana's variables as the test's Prometheus needs them, and without
/// a trailing `or vector(0)` (which answers even when the metric does not exist).
fn as_prometheus_query(expr: &str) -> String {
    let expr = expr.trim();
    let expr = expr.strip_suffix("or on() vector(0)").or_else(|| expr.strip_suffix("or vector(0)")).unwrap_or(expr);
    expr.trim()
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "5s")
        .replace("$__range", "5m")
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
}

/// Metric names an alert expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("happystreams_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    if expr.contains("up{") {
        names.push("up".into());
    }
    names
}

/// The alert rules of `deploy/prometheus/alerts.yml`: (name, expression).
fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy_file("prometheus/alerts.yml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    let names = alert_names(&text);
    let mut out = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            out.push((rule["alert"].as_str().unwrap().to_owned(), rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(out.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), names);
    out
}

fn active(alerts: &[Value], name: &str, label: (&str, &str), state: &str) -> bool {
    alerts.iter().any(|a| a["labels"]["alertname"] == name && a["labels"][label.0] == label.1 && a["state"] == state)
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_with_the_shipped_config_sees_every_panel_and_alert_metric_and_fires_alerts() {
    // One-second volume windows, so the volume scores exist within the test.
    let pipeline =
        Pipeline::start_with(&rig::start_tansu(), &[("HAPPYSTREAMS_RUNTIME__VOLUME_WINDOW_SECS", "1")]).await;
    let targets: Vec<String> = pipeline.instances.iter().map(|i| format!("127.0.0.1:{}", i.port)).collect();
    let prometheus = Prometheus::start(&targets);
    let records = generate(&Options { visitors: 60, days: 3, ..Options::default() });
    let producer: FutureProducer =
        rig::client_config(&pipeline.bootstrap).set("partitioner", "murmur2_random").create().unwrap();
    // Day by day (see the end-to-end test), and the volume baselines fill meanwhile.
    let first_day = records.first().unwrap().timestamp.div_euclid(DAY);
    let last_day = records.last().unwrap().timestamp.div_euclid(DAY);
    for day in first_day..=last_day {
        let batch: Vec<_> = records.iter().filter(|r| r.timestamp.div_euclid(DAY) == day).collect();
        produce(&producer, &batch).await;
        pipeline.wait_idle();
    }
    let logs = || pipeline.instances.iter().map(|i| i.log_text()).collect::<Vec<_>>().join("\n----\n");
    eventually("both instances scraped", Duration::from_secs(30), async || {
        let up = prometheus.query("up{job=\"happystreams\"} == 1").await.ok()?;
        (up.len() == 2).then_some(())
    })
    .await;
    // The volume score needs 20 windows of baseline after an input's first window.
    eventually("input volume scores", Duration::from_secs(60), async || {
        (!prometheus.series("happystreams_input_volume_zscore").await.is_empty()).then_some(())
    })
    .await;

    // No dead panel: every query of every dashboard returns data.
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "the dashboards have {} queries", queries.len());
    let mut dead = Vec::new();
    for (file, panel, expr) in &queries {
        match prometheus.query(&as_prometheus_query(expr)).await {
            Ok(result) if !result.is_empty() => {}
            Ok(_) => dead.push(format!("{file} / {panel}: no data for {expr}")),
            Err(e) => dead.push(format!("{file} / {panel}: {e} in {expr}")),
        }
    }
    assert!(dead.is_empty(), "dead panels:\n{}\n\nlogs:\n{}", dead.join("\n"), logs());

    // Every alert expression is valid here, and every metric it reads exists.
    let rules = alert_rules();
    for (name, expr) in &rules {
        prometheus.query(expr).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        for metric in metric_names(expr) {
            let series = prometheus.series(&metric).await;
            assert!(!series.is_empty(), "{name} reads {metric}, which the instances do not export");
        }
    }

    // Provoked: bad clicks go to the dead-letter topic...
    let alerts = prometheus.alerts().await;
    assert!(!active(&alerts, "HappystreamsDeadLetters", ("source", "clicks"), "firing"), "{alerts:?}");
    for i in 0..5 {
        let record =
            FutureRecord::to("happytimes.clicks").key("bad").payload("not json").timestamp(1_700_000_000_000 + i);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
    eventually("HappystreamsDeadLetters firing for clicks", Duration::from_secs(60), async || {
        active(&prometheus.alerts().await, "HappystreamsDeadLetters", ("source", "clicks"), "firing").then_some(())
    })
    .await;
    // ...and an instance killed is down (the rule waits a minute before it fires).
    let mut instances = pipeline.instances;
    let killed = targets[1].clone();
    let _ = instances[1].child.kill();
    let _ = instances[1].child.wait();
    eventually("HappystreamsInstanceDown firing", Duration::from_secs(120), async || {
        let alerts = prometheus.alerts().await;
        assert!(!active(&alerts, "HappystreamsInstanceDown", ("instance", &targets[0]), "pending"), "{alerts:?}");
        active(&alerts, "HappystreamsInstanceDown", ("instance", &killed), "firing").then_some(())
    })
    .await;
    assert!(instances[0].terminate().success(), "{}", instances[0].log_text());
}
