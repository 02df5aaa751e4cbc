//! The HappyTimes topology (`topologies/happytimes.yaml`) over generated traffic.

use happystreams::generate::{Options, generate};
use happystreams::testkit::TopologyTestDriver;
use std::collections::BTreeMap;

fn driver() -> TopologyTestDriver {
    let plan = happystreams::topology::load(std::path::Path::new("topologies/happytimes.yaml")).unwrap();
    TopologyTestDriver::new(plan).unwrap()
}

#[test]
fn happytimes_runs_over_generated_traffic() {
    let mut driver = driver();
    let mut errors = Vec::new();
    for record in generate(&Options::default()) {
        if let Err(e) = driver.pipe_json(&record.to_json_line()) {
            errors.push(format!("{}: {e}", record.source));
        }
    }
    let mut counts = BTreeMap::new();
    for topic in driver.output_topics() {
        let outputs = driver.read_output(&topic);
        println!(
            "{topic}: {} e.g. {:?}",
            outputs.len(),
            outputs.last().and_then(|o| o.value.as_ref()).map(|r| r.to_json())
        );
        counts.insert(topic, outputs.len());
    }
    println!("{} errors, first: {:?}", errors.len(), errors.iter().take(5).collect::<Vec<_>>());
    let unexpected: Vec<_> = errors.iter().filter(|e| !e.contains("access-log")).take(3).collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
}
