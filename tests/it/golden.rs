//! Golden topology tests: every `topologies/<name>.yaml` with a `topologies/<name>/` folder runs
//! its `input.jsonl` through the test driver and must write exactly `expected/<topic>.jsonl` —
//! straight through, with a restart in the middle, and on RocksDB with the state closed and
//! reopened from disk in the middle.

use happystreams::operators::pipeline::Output;
use happystreams::state::{RocksDbBackend, StateBackend, StateConfig, StateMemory};
use happystreams::testkit::TopologyTestDriver;
use happystreams::topology;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

struct Golden {
    topology: PathBuf,
    inputs: Vec<Json>,
    expected: BTreeMap<String, Vec<Json>>,
}

fn goldens() -> Vec<Golden> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for topology in files {
        let folder = topology.with_extension("");
        if !folder.join("input.jsonl").exists() {
            continue;
        }
        let lines = |path: &Path| -> Vec<Json> {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let inputs = lines(&folder.join("input.jsonl"));
        let mut expected = BTreeMap::new();
        for entry in std::fs::read_dir(folder.join("expected")).unwrap() {
            let path = entry.unwrap().path();
            let topic = path.file_stem().unwrap().to_string_lossy().into_owned();
            expected.insert(topic, lines(&path));
        }
        out.push(Golden { topology, inputs, expected });
    }
    out
}

fn render(output: Output) -> Json {
    json!({"key": output.key.to_json(), "timestamp": output.timestamp, "value": output.value.map(|r| r.to_json())})
}

fn drain(driver: &mut TopologyTestDriver, into: &mut BTreeMap<String, Vec<Json>>) {
    for topic in driver.output_topics() {
        into.entry(topic.clone()).or_default().extend(driver.read_output(&topic).into_iter().map(render));
    }
}

#[test]
fn every_topology_has_a_golden_folder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let yaml: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    let with_golden = goldens().len();
    assert!(with_golden >= 3);
    assert_eq!(
        with_golden,
        yaml.len(),
        "each topologies/<name>.yaml needs topologies/<name>/input.jsonl and expected/"
    );
}

#[test]
fn golden_outputs_straight_and_with_a_restart() {
    for golden in goldens() {
        for restart_at in [None, Some(golden.inputs.len() / 2)] {
            let mut driver = TopologyTestDriver::load(&golden.topology).unwrap();
            let mut outputs = BTreeMap::new();
            for (index, line) in golden.inputs.iter().enumerate() {
                if Some(index) == restart_at {
                    drain(&mut driver, &mut outputs);
                    driver.restart().unwrap();
                }
                driver
                    .pipe_json(line)
                    .unwrap_or_else(|e| panic!("{}: input line {}: {e}", golden.topology.display(), index + 1));
            }
            drain(&mut driver, &mut outputs);
            assert_eq!(outputs, golden.expected, "{} (restart at {restart_at:?})", golden.topology.display());
        }
    }
}

#[test]
fn golden_outputs_with_rocksdb_state_reopened_from_disk() {
    let memory = StateMemory::new(&StateConfig { memory_mb: 16, ..StateConfig::default() });
    for golden in goldens() {
        let dir = tempfile::tempdir().unwrap();
        let plan = || topology::load(&golden.topology).unwrap();
        let stores = happystreams::operators::pipeline::Pipeline::new(std::sync::Arc::new(plan())).unwrap().stores();
        let open =
            || -> Box<dyn StateBackend> { Box::new(RocksDbBackend::open(dir.path(), &stores, &memory).unwrap()) };
        let half = golden.inputs.len() / 2;
        let mut outputs = BTreeMap::new();
        {
            let mut driver = TopologyTestDriver::with_state(plan(), open()).unwrap();
            for line in &golden.inputs[..half] {
                driver.pipe_json(line).unwrap();
            }
            drain(&mut driver, &mut outputs);
            driver.commit().unwrap();
        }
        let mut driver = TopologyTestDriver::with_state(plan(), open()).unwrap();
        for line in &golden.inputs[half..] {
            driver.pipe_json(line).unwrap();
        }
        drain(&mut driver, &mut outputs);
        assert_eq!(outputs, golden.expected, "{} on RocksDB", golden.topology.display());
    }
}

#[test]
fn unknown_members_and_filtered_records_are_counted_not_lost() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/enriched_clicks.yaml");
    let golden = goldens().into_iter().find(|g| g.topology == file).expect("enriched_clicks golden");
    let mut driver = TopologyTestDriver::load(&file).unwrap();
    for line in &golden.inputs {
        driver.pipe_json(line).unwrap();
    }
    // 7 clicks, 1 login filtered out: 6 joined with visitors, of which 2 got the unknown member
    // (visitor 9 never existed; visitor 1 was deleted before the 3100 click).
    assert_eq!(driver.join_counts("clicks_with_visitor"), Some((4, 2, 0)));
    // Content: 100 found 4 times; 101 missing and the ad click has no content id.
    assert_eq!(driver.join_counts("enriched"), Some((4, 2, 0)));
}

#[test]
fn plans_with_steps_the_engine_cannot_run_yet_are_refused_up_front() {
    let yaml = "name: s\nsources:\n  t: { topic: t, format: json, table: versioned }\nnodes:\n  - name: changes\n    from: t\n    select: { k: k }\n";
    let plan = topology::parse(yaml, None, Path::new(".")).unwrap();
    let err = TopologyTestDriver::new(plan).unwrap_err();
    assert!(err.to_string().contains("node `changes` (line 5): reading the changelog of `t`"), "{err}");
}

#[test]
fn late_page_views_are_counted_and_still_land_in_the_facts() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/page_views_by_source.yaml");
    let golden = goldens().into_iter().find(|g| g.topology == file).expect("page_views_by_source golden");
    let mut driver = TopologyTestDriver::load(&file).unwrap();
    for line in &golden.inputs {
        driver.pipe_json(line).unwrap();
    }
    // The 1000 ms view arrived when stream time (5 000 000) had passed hour 0's end + 10m grace.
    assert_eq!(driver.late_records("views_per_source"), Some(1));
}

#[test]
fn the_rust_dsl_builds_the_same_topology_as_the_yaml() {
    use happystreams::topology::dsl::TopologyBuilder;
    use happystreams::topology::spec::{JoinSpec, NodeSpec, OnError, SinkFormat, SourceFormat, SourceKind, SourceSpec};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let unknown = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let plan = TopologyBuilder::new("enriched_clicks")
        .schemas_relative_to(&dir)
        .source(
            "clicks",
            SourceSpec {
                schema: Some("../schemas/happytimes.clicks-value.avsc".into()),
                key: Some("visitor_id".into()),
                timestamp: Some("event_time".into()),
                on_error: OnError::DeadLetter,
                ..SourceSpec::new("happytimes.clicks", SourceFormat::Avro)
            },
        )
        .source(
            "visitors",
            SourceSpec {
                kind: SourceKind::Versioned,
                history: Some("30d".into()),
                schema: Some("../schemas/rows/visitors.avsc".into()),
                primary_key: Some("visitor_id".into()),
                ..SourceSpec::new("happytimes.public.visitors", SourceFormat::DebeziumJson)
            },
        )
        .source(
            "content",
            SourceSpec {
                kind: SourceKind::Global,
                ..SourceSpec::new("happytimes.public.content", SourceFormat::DebeziumJson)
            },
        )
        .node(NodeSpec {
            filter: Some("event_type != 'login'".into()),
            join: Some(JoinSpec {
                unknown: unknown(&[("source", "unknown"), ("country", "unknown")]),
                ..JoinSpec::table("visitors")
            }),
            ..NodeSpec::new("clicks_with_visitor", "clicks")
        })
        .node(NodeSpec {
            join: Some(JoinSpec {
                on: Some("content_id".into()),
                unknown: unknown(&[("title", "unknown")]),
                ..JoinSpec::table("content")
            }),
            select: Some(
                [
                    ("event_id", "event_id"),
                    ("visitor_id", "visitor_id"),
                    ("event_type", "event_type"),
                    ("content_id", "content_id"),
                    ("visitor_source", "visitors.source"),
                    ("visitor_country", "visitors.country"),
                    ("content_title", "content.title"),
                    ("event_time", "event_time"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..NodeSpec::new("enriched", "clicks_with_visitor")
        })
        .sink("enriched", "happytimes.facts.enriched_clicks", SinkFormat::Json)
        .build()
        .unwrap();
    let file = dir.join("enriched_clicks.yaml");
    let from_yaml = describe_without_lines(&happystreams::topology::describe::text(&topology::load(&file).unwrap()));
    assert_eq!(describe_without_lines(&happystreams::topology::describe::text(&plan)), from_yaml);
    let golden = goldens().into_iter().find(|g| g.topology == file).unwrap();
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    let mut outputs = BTreeMap::new();
    for line in &golden.inputs {
        driver.pipe_json(line).unwrap();
    }
    drain(&mut driver, &mut outputs);
    assert_eq!(outputs, golden.expected);
}

fn describe_without_lines(text: &str) -> String {
    text.lines().map(|l| l.split(", line ").next().unwrap_or(l).to_owned()).collect::<Vec<_>>().join("\n")
}

#[test]
fn to_table_versioned_lets_later_nodes_join_a_stream_as_of_event_time() {
    let yaml = "
name: last_click
sources:
  clicks: { topic: c, format: json, key: visitor_id, timestamp: t }
  subscriptions: { topic: s, format: json, key: visitor_id, timestamp: t }
nodes:
  - name: ad_clicks
    from: clicks
    filter: \"event_type == 'ad_click'\"
    to_table: versioned
    history: 7d
  - name: attributed
    from: subscriptions
    join: { table: ad_clicks, type: left, as: click, unknown: { ad_id: 0 } }
    select: { visitor_id: visitor_id, ad_id: click.ad_id }
sinks:
  - { from: attributed, topic: out, format: json }
";
    let plan = topology::parse(yaml, None, Path::new(".")).unwrap();
    assert!(
        happystreams::topology::describe::text(&plan).contains("versioned-table join"),
        "a versioned node table joins as of event time"
    );
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    let pipe = |driver: &mut TopologyTestDriver, source: &str, value: Json| {
        driver.pipe_json(&json!({"source": source, "value": value})).unwrap()
    };
    pipe(&mut driver, "clicks", json!({"visitor_id": 1, "event_type": "ad_click", "ad_id": 10, "t": 100}));
    pipe(&mut driver, "clicks", json!({"visitor_id": 1, "event_type": "page_view", "ad_id": null, "t": 150}));
    pipe(&mut driver, "clicks", json!({"visitor_id": 1, "event_type": "ad_click", "ad_id": 11, "t": 300}));
    pipe(&mut driver, "subscriptions", json!({"visitor_id": 1, "t": 200}));
    pipe(&mut driver, "subscriptions", json!({"visitor_id": 1, "t": 400}));
    pipe(&mut driver, "subscriptions", json!({"visitor_id": 2, "t": 500}));
    let ads: Vec<Json> =
        driver.read_output("out").into_iter().map(|o| o.value.unwrap().get("ad_id").unwrap().to_json()).collect();
    assert_eq!(
        ads,
        vec![json!(10), json!(11), json!(0)],
        "the click valid at each subscription's time, else the unknown member"
    );
}

#[test]
fn a_record_that_fails_half_way_leaves_no_trace() {
    // `e` feeds a count (applied first) and a projection that fails for records where `y` is
    // not a struct: the failed record must not stay counted.
    let yaml = "
name: atomic
sources:
  e: { topic: e, format: json, key: k }
nodes:
  - name: counts
    from: e
    aggregate: { group_by: { k: k }, measures: { n: { count: {} } } }
  - name: projected
    from: e
    select: { z: \"y.z + 1\" }
sinks:
  - { from: counts, topic: counts, format: json }
";
    let plan = topology::parse(yaml, None, Path::new(".")).unwrap();
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    let good = json!({"source": "e", "value": {"k": 1, "y": {"z": 1}}});
    let bad = json!({"source": "e", "value": {"k": 1, "y": "not a struct"}});
    driver.pipe_json(&good).unwrap();
    assert!(driver.pipe_json(&bad).is_err());
    driver.pipe_json(&good).unwrap();
    let counts: Vec<Json> =
        driver.read_output("counts").into_iter().map(|o| o.value.unwrap().get("n").unwrap().to_json()).collect();
    assert_eq!(counts, vec![json!(1), json!(2)], "the failed record was not counted");
}

#[test]
fn unwindowed_aggregates_drop_groups_idle_longer_than_their_ttl() {
    let yaml = "
name: ttl
sources:
  e: { topic: e, format: json, key: k, timestamp: t }
nodes:
  - name: counts
    from: e
    aggregate: { group_by: { k: k }, measures: { n: { count: {} }, u: { count_distinct: v } }, ttl: 100ms }
sinks:
  - { from: counts, topic: counts, format: json }
";
    let plan = topology::parse(yaml, None, Path::new(".")).unwrap();
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    let inputs = [(1, 0, "x"), (1, 50, "x"), (2, 140, "x"), (2, 300, "x"), (1, 310, "x"), (2, 320, "y")];
    for (k, t, v) in inputs {
        driver.pipe_json(&json!({"source": "e", "value": {"k": k, "t": t, "v": v}})).unwrap();
        if t == 140 {
            driver.restart().unwrap();
        }
    }
    let outputs: Vec<_> = driver.read_output("counts").into_iter().map(|o| o.value.unwrap()).collect();
    // A group started afresh forgets its distinct values too.
    let distinct: Vec<Json> = outputs.iter().map(|v| v.get("u").unwrap().to_json()).collect();
    assert_eq!(distinct, vec![json!(1), json!(1), json!(1), json!(1), json!(1), json!(2)]);
    let counts: Vec<(Json, Json)> =
        outputs.iter().map(|v| (v.get("k").unwrap().to_json(), v.get("n").unwrap().to_json())).collect();
    // Group 1 was last updated at 50 and group 2 at 140: both idled for more than 100 ms before
    // their next records (310 and 300), which start them afresh; 320 continues group 2.
    assert_eq!(
        counts,
        vec![
            (json!(1), json!(1)),
            (json!(1), json!(2)),
            (json!(2), json!(1)),
            (json!(2), json!(1)),
            (json!(1), json!(1)),
            (json!(2), json!(2))
        ]
    );
    let windowed_ttl = "name: x\nsources:\n  e: { topic: e, format: json }\nnodes:\n  - name: w\n    from: e\n    aggregate: { group_by: { k: k }, window: { type: tumbling, size: 1m }, measures: { n: { count: {} } }, ttl: 1h }\n";
    let err = topology::parse(windowed_ttl, None, Path::new(".")).unwrap_err();
    assert!(err.message.contains("`ttl` is for unwindowed aggregates"), "{err}");
}

#[test]
fn a_stream_joins_an_unwindowed_aggregate_by_its_group_key() {
    // First visit per visitor (a cohort's basis), joined back onto every visit.
    let yaml = "
name: cohorts
sources:
  visits: { topic: v, format: json, key: visitor_id, timestamp: t }
nodes:
  - name: first_visit
    from: visits
    aggregate: { group_by: { visitor_id: visitor_id }, measures: { first: { min: t } } }
  - name: with_first_visit
    from: visits
    join: { table: first_visit, as: fv }
    select: { visitor_id: visitor_id, t: t, first: fv.first }
sinks:
  - { from: with_first_visit, topic: out, format: json }
";
    let plan = topology::parse(yaml, None, Path::new(".")).unwrap();
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    for (visitor, t) in [(1, 100), (1, 50), (2, 200), (1, 300)] {
        driver.pipe_json(&json!({"source": "visits", "value": {"visitor_id": visitor, "t": t}})).unwrap();
    }
    let rows: Vec<Json> = driver.read_output("out").into_iter().map(|o| o.value.unwrap().to_json()).collect();
    assert_eq!(
        rows,
        vec![
            json!({"visitor_id": 1, "t": 100, "first": 100}),
            json!({"visitor_id": 1, "t": 50, "first": 50}),
            json!({"visitor_id": 2, "t": 200, "first": 200}),
            json!({"visitor_id": 1, "t": 300, "first": 50}),
        ],
        "each visit sees the aggregate after its own update (nodes run in file order)"
    );
}

#[test]
fn aggregating_a_tables_changelog_moves_rows_between_groups() {
    // Active subscriptions per type: an update moves a row from one group to another, a delete
    // or a row no longer passing the filter takes it out, an emptied group is deleted.
    let yaml = "
name: subscriptions_per_type
sources:
  subscriptions: { topic: s, format: json, table: table }
nodes:
  - name: active
    from: subscriptions
    filter: \"active\"
  - name: per_type
    from: active
    aggregate:
      group_by: { type: type }
      measures: { n: { count: {} }, revenue: { sum: price }, top: { top_n: { n: 1, of: visitor } } }
sinks:
  - { from: per_type, topic: out, format: json }
";
    let plan = topology::parse(yaml, None, Path::new(".")).unwrap();
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    let upsert = |driver: &mut TopologyTestDriver, id: i64, value: Json| {
        driver.pipe_json(&json!({"source": "subscriptions", "key": id, "value": value, "timestamp": id})).unwrap();
    };
    upsert(&mut driver, 1, json!({"type": "monthly", "price": 10, "active": true, "visitor": "a"}));
    upsert(&mut driver, 2, json!({"type": "monthly", "price": 10, "active": true, "visitor": "b"}));
    upsert(&mut driver, 1, json!({"type": "yearly", "price": 100, "active": true, "visitor": "a"}));
    upsert(&mut driver, 2, json!({"type": "monthly", "price": 10, "active": false, "visitor": "b"}));
    driver.pipe_json(&json!({"source": "subscriptions", "key": 1, "value": null})).unwrap();
    let outputs: Vec<Json> = driver
        .read_output("out")
        .into_iter()
        .map(|o| match o.value {
            Some(v) => json!([
                v.get("type").unwrap().to_json(),
                v.get("n").unwrap().to_json(),
                v.get("revenue").unwrap().to_json()
            ]),
            None => json!(["deleted", o.key.to_json()]),
        })
        .collect();
    assert_eq!(
        outputs,
        vec![
            json!(["monthly", 1, 10]),
            json!(["monthly", 2, 20]),
            json!(["monthly", 1, 10]),               // subscription 1 leaves monthly...
            json!(["yearly", 1, 100]),               // ...and joins yearly
            json!(["deleted", {"type": "monthly"}]), // subscription 2 no longer active: monthly is empty
            json!(["deleted", {"type": "yearly"}]),  // subscription 1 deleted
        ]
    );
}

#[test]
fn changelog_aggregates_refuse_measures_that_cannot_be_taken_back() {
    let yaml = "name: m\nsources:\n  t: { topic: t, format: json, table: table }\nnodes:\n  - name: lo\n    from: t\n    aggregate: { group_by: { k: k }, measures: { low: { min: v } } }\n";
    let err = TopologyTestDriver::new(topology::parse(yaml, None, Path::new(".")).unwrap()).unwrap_err();
    assert!(err.to_string().contains("measure `low` over a table's changelog"), "{err}");
}

#[test]
fn late_records_are_dead_lettered_when_the_node_says_so() {
    let yaml = "
name: late
sources:
  e: { topic: e, format: json, key: k, timestamp: t }
nodes:
  - name: w
    from: e
    late: dead_letter
    aggregate:
      group_by: { k: k }
      window: { type: tumbling, size: 100ms, grace: 10ms }
      measures: { n: { count: {} } }
sinks:
  - { from: w, topic: counts, format: json }
";
    let plan = topology::parse(yaml, None, Path::new(".")).unwrap();
    assert!(happystreams::topology::describe::text(&plan).contains("late records --> late-w-late"));
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    for t in [10, 500, 20] {
        driver.pipe_json(&json!({"source": "e", "value": {"k": 1, "t": t}})).unwrap();
    }
    let late: Vec<Json> = driver.read_output("late-w-late").into_iter().map(|o| o.value.unwrap().to_json()).collect();
    assert_eq!(late, vec![json!({"k": 1, "t": 20})], "the record for the closed window, unchanged");
    assert_eq!(driver.late_records("w"), Some(1));
    assert_eq!(driver.read_output("counts").len(), 2, "the two on-time records were counted");
}
