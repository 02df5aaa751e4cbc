//! The lineage of a HappyTimes end-to-end run, from the OpenLineage events the instances and
//! `lake-sink` appended to one file: each event valid for the OpenLineage client's model of the
//! spec, every run started and completed, and the graph CDC topics → the topology → fact and
//! funnel topics → lake-sink → lake tables; then `dbt-ol`'s: lake tables → dbt models → marts.

use super::harness::{FACTS, FUNNEL};
use crate::rig;
use happystreams::generate::{SOURCES, topic_of};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// A dataset: (namespace, name).
type Dataset = (String, String);

fn datasets(event: &Value, side: &str) -> BTreeSet<Dataset> {
    event[side]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| (d["namespace"].as_str().unwrap().to_owned(), d["name"].as_str().unwrap().to_owned()))
        .collect()
}

/// Every node reachable from `start` along `edges` (start included).
fn reachable<T: Ord + Clone>(edges: &[(T, T)], start: BTreeSet<T>) -> BTreeSet<T> {
    let mut reached = start;
    loop {
        let next: BTreeSet<T> = edges.iter().filter(|(i, _)| reached.contains(i)).map(|(_, o)| o.clone()).collect();
        if next.is_subset(&reached) {
            return reached;
        }
        reached.extend(next);
    }
}

/// Checks the events in `file`: `app` is the topology's application id, `instances` how many
/// `run` processes it had, `lake_sink_group` the lake sink's job, `lake` its lake directory.
pub fn check(file: &Path, app: &str, instances: usize, bootstrap: &str, lake_sink_group: &str, lake: &Path) {
    let python = rig::tool_binary("HAPPYSTREAMS_OPENLINEAGE_PYTHON", "openlineage.sh");
    let output = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/happytimes/lineage_check.py"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "lineage events not valid for the OpenLineage model:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<Value> =
        std::fs::read_to_string(file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    // Every run: START first, then COMPLETE (clean stops), the same datasets throughout.
    let mut runs: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for event in &events {
        let key =
            (event["job"]["name"].as_str().unwrap().to_owned(), event["run"]["runId"].as_str().unwrap().to_owned());
        runs.entry(key).or_default().push(event);
    }
    let runs_of = |job: &str| runs.iter().filter(|((j, _), _)| j == job).map(|(_, e)| e).collect::<Vec<_>>();
    assert_eq!(runs_of(app).len(), instances, "one run per `run` instance: {runs:#?}");
    assert_eq!(runs_of(lake_sink_group).len(), 1, "one lake-sink run");
    for ((job, run), events) in &runs {
        let kinds: Vec<&str> = events.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"START"), "{job} {run}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"COMPLETE"), "{job} {run}: {kinds:?}");
        assert!(kinds[1..kinds.len() - 1].iter().all(|k| *k == "RUNNING"), "{job} {run}: {kinds:?}");
    }

    // The topology reads every source topic (the CDC topics among them) and writes the facts
    // and funnel topics, named in the Kafka namespace of the cluster, with the Avro schemas.
    let kafka = format!("kafka://{}", bootstrap.split(',').next().unwrap());
    let topic = |name: &str| (kafka.clone(), name.to_owned());
    let run_start = runs_of(app)[0][0];
    let inputs = datasets(run_start, "inputs");
    for source in SOURCES {
        assert!(
            inputs.contains(&topic(topic_of(source))),
            "the topology's inputs lack {}: {inputs:?}",
            topic_of(source)
        );
    }
    let outputs = datasets(run_start, "outputs");
    let produced: Vec<String> = FACTS
        .iter()
        .map(|f| format!("happytimes.facts.{f}"))
        .chain(FUNNEL.iter().map(|f| format!("happytimes.funnel.{f}")))
        .collect();
    for name in &produced {
        assert!(outputs.contains(&topic(name)), "the topology's outputs lack {name}: {outputs:?}");
    }
    let with_schema =
        run_start["outputs"].as_array().unwrap().iter().filter(|d| d["facets"]["schema"].is_object()).count();
    assert_eq!(with_schema, produced.len(), "every Avro output carries its schema");

    // The lake sink reads the fact topics the topology writes (the same dataset names: that is
    // what joins the graph) and writes the lake's fact tables.
    let sink_start = runs_of(lake_sink_group)[0][0];
    let sink_inputs = datasets(sink_start, "inputs");
    let sink_outputs = datasets(sink_start, "outputs");
    let lake = std::path::absolute(lake).unwrap();
    for fact in FACTS {
        let fact_topic = topic(&format!("happytimes.facts.{fact}"));
        assert!(sink_inputs.contains(&fact_topic), "lake-sink does not read {fact_topic:?}");
        let table = ("file".to_owned(), lake.join("facts").join(fact).display().to_string());
        assert!(sink_outputs.contains(&table), "lake-sink does not write {table:?}: {sink_outputs:?}");
    }
    // Each CDC topic reaches a lake fact table through the graph.
    let edges: Vec<(Dataset, Dataset)> = events
        .iter()
        .filter(|e| e["eventType"] == "START")
        .flat_map(|e| {
            let outs = datasets(e, "outputs");
            datasets(e, "inputs").into_iter().flat_map(move |i| outs.clone().into_iter().map(move |o| (i.clone(), o)))
        })
        .collect();
    for table in ["visitors", "content", "ads", "subscriptions", "social_outlets"] {
        let reached = reachable(&edges, BTreeSet::from([topic(&format!("happytimes.public.{table}"))]));
        assert!(
            reached.iter().any(|(namespace, name)| namespace == "file" && name.contains("/facts/")),
            "happytimes.public.{table} reaches no lake table: {reached:?}"
        );
    }
}

/// Checks the events `dbt-ol build` wrote to `file`: every model run completes, each raw lake
/// table lake-sink wrote (`<lake>/raw/<table>`) is read as the dbt source `lake_raw.<table>` (the
/// sources' `external_location` in dbt/models/sources.yml: the one link between the two graphs,
/// whose dataset names differ), and every funnel mart is reached from those sources.
pub fn check_dbt(file: &Path, lake: &Path) {
    let events: Vec<Value> = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("dbt-ol wrote no lineage to {}: {e}", file.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut last_state: BTreeMap<String, String> = BTreeMap::new();
    for event in &events {
        last_state
            .insert(event["job"]["name"].as_str().unwrap().to_owned(), event["eventType"].as_str().unwrap().to_owned());
    }
    let failed: Vec<_> = last_state.iter().filter(|(_, state)| *state != "COMPLETE").collect();
    assert!(failed.is_empty(), "dbt runs that did not complete: {failed:?}");

    let edges: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["eventType"] == "COMPLETE")
        .flat_map(|e| {
            let name = |d: Dataset| d.1;
            let outs: Vec<String> = datasets(e, "outputs").into_iter().map(name).collect();
            datasets(e, "inputs")
                .into_iter()
                .map(name)
                .flat_map(move |i| outs.clone().into_iter().map(move |o| (i.clone(), o)))
        })
        .collect();
    let lake = std::path::absolute(lake).unwrap();
    let mut sources = BTreeSet::new();
    for entry in std::fs::read_dir(lake.join("raw")).unwrap() {
        let table = entry.unwrap().file_name().to_string_lossy().into_owned();
        let source = format!("happytimes.lake_raw.{table}");
        assert!(
            edges.iter().any(|(i, _)| *i == source),
            "no dbt model reads {source} (the lake's raw/{table}): {edges:?}"
        );
        sources.insert(source);
    }
    let reached = reachable(&edges, sources);
    for mart in FUNNEL {
        let mart = format!("happytimes.main.funnel_{mart}");
        assert!(reached.contains(&mart), "{mart} is not reached from the lake's raw tables: {reached:?}");
    }
}
