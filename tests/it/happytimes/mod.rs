//! The HappyTimes topology (`topologies/happytimes.yaml`, definitions in docs/FUNNEL.md).
//!
//! - In process: generated traffic through the engine, straight and with restarts, must give the
//!   same final funnel.
//! - End to end on a real broker: the traffic produced day by day to Tansu, two
//!   `happystreams run` instances in one group, `happystreams lake-sink` landing the raw inputs
//!   and the facts, dbt building the marts from the lake. The stream's final funnel (the
//!   compacted funnel topics) must equal the dbt marts, and the lake's facts the Kafka facts;
//!   the OpenLineage events of the run form the graph from CDC topics to lake tables ([`lineage`]).
//! - The same with the real Debezium connector capturing PostgreSQL ([`debezium`]).
//! - The shipped Prometheus config, alert rules and Grafana dashboards against two instances
//!   ([`monitoring`]).

mod debezium;
mod harness;
mod lineage;
mod monitoring;
mod queries;

use crate::rig;
use happystreams::generate::{Generated, Options, generate};
use happystreams::testkit::TopologyTestDriver;
use harness::{FUNNEL, Pipeline, TOPOLOGY};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

const DAY: i64 = 86_400_000;

/// The last value per key of every output topic, after piping `records`; restarts the driver
/// (commit, close, reopen the state) every `restart_every` records when given.
fn final_outputs(records: &[Generated], restart_every: Option<usize>) -> BTreeMap<String, BTreeMap<String, String>> {
    let plan = happystreams::topology::load(Path::new(TOPOLOGY)).unwrap();
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    let mut latest: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        // The generator's rare malformed log lines are the only records the engine refuses.
        if let Err(e) = driver.pipe_json(&record.to_json_line()) {
            let bad_line = matches!(e, happystreams::testkit::DriverError::Input(_)) && record.source == "weblogs";
            assert!(bad_line, "{}: {e}", record.source);
        }
        for topic in driver.output_topics() {
            for output in driver.read_output(&topic) {
                let value = output.value.map(|v| happystreams::record::Value::Struct(v).to_json().to_string());
                latest
                    .entry(topic.clone())
                    .or_default()
                    .insert(output.key.to_json().to_string(), value.unwrap_or_default());
            }
        }
        if restart_every.is_some_and(|n| index % n == n - 1) {
            driver.restart().unwrap();
        }
    }
    latest
}

#[test]
fn the_funnel_is_the_same_with_restarts() {
    let records = generate(&Options { visitors: 60, days: 14, ..Options::default() });
    let straight = final_outputs(&records, None);
    for topic in FUNNEL {
        let rows = straight.get(&format!("happytimes.funnel.{topic}")).map_or(0, BTreeMap::len);
        assert!(rows > 0, "no {topic} rows");
    }
    assert_eq!(final_outputs(&records, Some(337)), straight);
}

/// Produces records in order and waits for every delivery.
async fn produce(producer: &FutureProducer, records: &[&Generated]) {
    let mut pending = Vec::new();
    for record in records {
        let key = record.key.to_string();
        let value = record.body.bytes();
        let mut message = FutureRecord::to(record.topic).key(&key).timestamp(record.timestamp);
        if let Some(v) = value.as_deref() {
            message = message.payload(v);
        }
        pending.push(producer.send_result(message).map_err(|(e, _)| e).unwrap());
    }
    for delivery in pending {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn happytimes_on_tansu_with_two_instances_equals_the_dbt_marts() {
    let pipeline = Pipeline::start(&rig::start_tansu()).await;
    let records = generate(&Options { visitors: 120, days: 14, ..Options::default() });
    let started = Instant::now();
    produce_by_day(&pipeline, &records).await;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("{} records through two instances in {seconds:.1} s (paced day by day)", records.len());
    pipeline.finish_and_compare_with_dbt().await;
}

/// Produces `records` day by day, each day once the pipeline has processed the previous one:
/// what happened on different days is then processed in order whatever the pipeline's latency
/// (the generator changes a subscription on a day its visitor does not visit). Within a day,
/// the day's dimension changes go first, as applications commit a row before the events that
/// mention it.
async fn produce_by_day(pipeline: &Pipeline, records: &[Generated]) {
    let producer: FutureProducer =
        rig::client_config(&pipeline.bootstrap).set("partitioner", "murmur2_random").create().unwrap();
    let first_day = records.first().unwrap().timestamp.div_euclid(DAY);
    let last_day = records.last().unwrap().timestamp.div_euclid(DAY);
    let cdc = ["visitors", "content", "ads", "subscriptions", "social_outlets"];
    for day in first_day..=last_day {
        for changes in [true, false] {
            let batch: Vec<&Generated> = records
                .iter()
                .filter(|r| r.timestamp.div_euclid(DAY) == day && cdc.contains(&r.source) == changes)
                .collect();
            produce(&producer, &batch).await;
            pipeline.wait_idle();
        }
    }
}
