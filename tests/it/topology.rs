//! Topology files: every file in `topologies/` validates and describes; bad files are rejected
//! with the file, line and node named.

use crate::cli::run;
use happystreams::topology::{self, Step, TopologyError, describe};
use std::path::{Path, PathBuf};

fn topology_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Parses YAML as if it were a file in `topologies/` (so `../schemas/...` resolves).
fn parse(yaml: &str) -> Result<topology::Plan, TopologyError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    topology::parse(yaml, Some(Path::new("test.yaml")), &dir)
}

const CLICKS: &str = "
name: t
sources:
  clicks:
    topic: happytimes.clicks
    format: avro
    schema: ../schemas/happytimes.clicks-value.avsc
    key: visitor_id
    timestamp: event_time
  visitors:
    topic: happytimes.public.visitors
    format: debezium-json-schema
    table: versioned
    schema: ../schemas/rows/visitors.avsc
    primary_key: visitor_id
";

fn with_nodes(nodes: &str) -> String {
    format!("{CLICKS}nodes:\n{nodes}")
}

#[test]
fn every_topology_file_validates_and_describes() {
    let files = topology_files();
    assert!(!files.is_empty());
    for file in files {
        let plan = topology::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let text = describe::text(&plan);
        assert!(text.contains(&format!("Topology: {}", plan.name)), "{text}");
        for node in &plan.nodes {
            assert!(text.contains(&format!("Processor: {}", node.name)), "{text}");
        }
        let dot = describe::dot(&plan);
        assert!(dot.starts_with("digraph") && dot.trim_end().ends_with('}'), "{dot}");
        let output = run(&["describe", file.to_str().unwrap()]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout), text);
        let output = run(&["describe", file.to_str().unwrap(), "--format", "dot"]);
        assert_eq!(String::from_utf8_lossy(&output.stdout), dot);
    }
}

#[test]
fn page_views_plan_has_the_expected_stores_and_repartition() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/page_views_by_source.yaml");
    let plan = topology::load(&file).unwrap();
    assert_eq!(
        plan.stores(),
        vec![
            "visitors-table".to_string(),
            "views_per_source-aggregate".to_string(),
            // Its count_distinct's members.
            "views_per_source-distinct".to_string()
        ]
    );
    assert_eq!(
        plan.repartition_topics(),
        vec!["page_views_by_source-views_per_source-repartition".to_string()],
        "grouping by source re-keys"
    );
    assert_eq!(plan.source("visitors").unwrap().history_ms, Some(30 * 86_400_000));
    assert_eq!(plan.subtopologies, 2, "clicks+visitors+join, then the aggregation behind its repartition topic");
}

#[test]
fn rekey_before_a_table_join_reads_through_a_repartition_topic() {
    let plan = parse(&with_nodes(
        "  - name: by_visitor\n    from: clicks\n    key: session_id\n  - name: joined\n    from: clicks\n    join: { table: visitors, on: visitor_id }\n",
    ))
    .unwrap();
    let joined = plan.node("joined").unwrap();
    assert!(
        matches!(&joined.steps[0], Step::Rekey { repartition: Some(t), .. } if t == "t-joined-repartition"),
        "{:?}",
        joined.steps
    );
    assert!(describe::text(&plan).contains("repartition topic t-joined-repartition"));
}

fn error(yaml: &str) -> TopologyError {
    parse(yaml).expect_err("the topology must be rejected")
}

#[test]
fn unknown_keys_are_rejected_with_their_line() {
    let e = error(&with_nodes("  - name: a\n    from: clicks\n    filtr: \"true\"\n"));
    assert_eq!(e.line, Some(19), "{e}");
    assert!(e.to_string().starts_with("test.yaml:19"), "{e}");
    assert!(e.message.contains("filtr"), "{e}");
}

#[test]
fn unknown_inputs_and_forward_references_are_rejected() {
    let e = error(&with_nodes("  - name: a\n    from: nowhere\n"));
    assert_eq!((e.node.as_deref(), e.line), (Some("a"), Some(17)), "{e}");
    assert!(e.message.contains("`nowhere` is not a source or an earlier node"), "{e}");
    // b reads c which comes later (a cycle would need exactly this).
    let e = error(&with_nodes("  - name: b\n    from: c\n  - name: c\n    from: b\n"));
    assert_eq!(e.node.as_deref(), Some("b"), "{e}");
    let e = error(&with_nodes("  - name: clicks\n    from: visitors\n"));
    assert!(e.message.contains("already used"), "{e}");
}

#[test]
fn join_key_type_mismatch_is_rejected() {
    let e = error(&with_nodes("  - name: j\n    from: clicks\n    join: { table: visitors, on: session_id }\n"));
    assert!(e.message.contains("join key types differ") && e.message.contains("session_id"), "{e}");
    parse(&with_nodes("  - name: j\n    from: clicks\n    join: { table: visitors, on: visitor_id }\n")).unwrap();
}

#[test]
fn joins_need_the_right_partner() {
    let e = error(&with_nodes("  - name: j\n    from: visitors\n    join: { table: clicks }\n"));
    assert!(e.message.contains("is a stream"), "{e}");
    let e = error(&with_nodes("  - name: j\n    from: clicks\n    join: { stream: clicks }\n"));
    assert!(e.message.contains("needs `within`"), "{e}");
    let global = CLICKS.replace("table: versioned", "table: global");
    let e = error(&format!("{global}nodes:\n  - name: j\n    from: clicks\n    join: {{ table: visitors }}\n"));
    assert!(e.message.contains("needs `on`"), "{e}");
}

#[test]
fn impossible_windows_and_measures_are_rejected() {
    let agg = |window: &str, measures: &str| {
        with_nodes(&format!(
            "  - name: w\n    from: clicks\n    aggregate:\n      group_by: {{ t: event_type }}\n      window: {window}\n      measures: {measures}\n"
        ))
    };
    let e = error(&agg("{ type: tumbling, size: 1h, grace: -5m }", "{ n: { count: {} } }"));
    assert!(e.message.contains("negative"), "{e}");
    let e = error(&agg("{ type: hopping, size: 1h, advance: 2h }", "{ n: { count: {} } }"));
    assert!(e.message.contains("must not exceed"), "{e}");
    let e = error(&agg("{ type: session }", "{ n: { count: {} } }"));
    assert!(e.message.contains("needs `gap`"), "{e}");
    let e = error(&agg("{ type: tumbling, size: 1h }", "{ n: { count: {}, sum: visitor_id } }"));
    assert!(e.message.contains("exactly one"), "{e}");
    let e = error(&with_nodes(
        "  - name: w\n    from: clicks\n    aggregate:\n      group_by: { t: event_type }\n      emit: final\n      measures: { n: { count: {} } }\n",
    ));
    assert!(e.message.contains("needs a window"), "{e}");
    let e = error(&with_nodes("  - name: w\n    from: clicks\n    filter: \"event_type ==\"\n"));
    assert!(e.message.contains("not a valid expression"), "{e}");
}

#[test]
fn describe_cli_reports_errors_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "name: x\nsources: {}\nnodes:\n  - name: a\n    from: b\n").unwrap();
    let output = run(&["describe", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml:4") && stderr.contains("`a`"), "{stderr}");
}

#[test]
fn a_key_changed_in_an_earlier_node_is_repartitioned_before_state() {
    // Re-key in one node, group by that key in the next: the grouping must still repartition.
    let plan = parse(&with_nodes(
        "  - name: by_session\n    from: clicks\n    key: session_id\n  - name: per_session\n    from: by_session\n    aggregate:\n      group_by: { session_id: session_id }\n      measures: { n: { count: {} } }\n",
    ))
    .unwrap();
    assert_eq!(plan.repartition_topics(), vec!["t-per_session-repartition".to_string()]);
    assert_ne!(plan.node("per_session").unwrap().subtopology, plan.node("by_session").unwrap().subtopology);
    // Re-key in one node, join a co-partitioned table in the next.
    let plan = parse(&with_nodes(
        "  - name: by_uid\n    from: clicks\n    key: visitor_id * 1\n  - name: joined\n    from: by_uid\n    join: { table: visitors }\n",
    ))
    .unwrap();
    assert!(
        matches!(&plan.node("joined").unwrap().steps[0], Step::Repartition { topic } if topic == "t-joined-repartition")
    );
    // Grouping by the key the source is partitioned by needs no repartition.
    let plan = parse(&with_nodes("  - name: per_visitor\n    from: clicks\n    aggregate:\n      group_by: { visitor_id: visitor_id }\n      measures: { n: { count: {} } }\n")).unwrap();
    assert!(plan.repartition_topics().is_empty());
    // ...but not after a select redefined that field.
    let plan = parse(&with_nodes(
        "  - name: renamed\n    from: clicks\n    select: { visitor_id: session_id }\n  - name: per_visitor\n    from: renamed\n    aggregate:\n      group_by: { visitor_id: visitor_id }\n      measures: { n: { count: {} } }\n",
    ))
    .unwrap();
    assert_eq!(plan.repartition_topics().len(), 1);
}

#[test]
fn avro_sinks_need_a_schema_with_the_node_fields() {
    let sink = |node: &str, sink: &str| format!("{}sinks:\n  - {sink}\n", with_nodes(node));
    let select = "  - name: s\n    from: clicks\n    select: { event_id: event_id, visitor_id: visitor_id }\n";
    let e = error(&sink(select, "{ from: s, topic: out, format: avro }"));
    assert!(e.message.contains("needs `schema:`") && e.message.contains("out-value"), "{e}");
    let e = error(&sink(select, "{ from: s, topic: out, format: json, schema: ../schemas/x.avsc }"));
    assert!(e.message.contains("for Avro sinks"), "{e}");
    let e = error(&sink(select, "{ from: s, topic: out, format: avro, schema: ../schemas/missing.avsc }"));
    assert!(e.message.contains("missing.avsc"), "{e}");
    // The clicks schema has event_id and visitor_id; the social mentions one has neither.
    parse(&sink(select, "{ from: s, topic: out, format: avro, schema: ../schemas/happytimes.clicks-value.avsc }"))
        .unwrap();
    let wrong = "{ from: s, topic: out, format: avro, schema: ../schemas/happytimes.social_mentions-value.avsc }";
    let e = error(&sink(select, wrong));
    assert!(e.message.contains("gives field `event_id`") && e.message.contains("does not have"), "{e}");
}

#[test]
fn two_sources_on_one_topic_are_refused_with_both_named() {
    let yaml = CLICKS.replace("happytimes.public.visitors", "happytimes.clicks");
    let e = error(&yaml);
    assert_eq!(e.node.as_deref(), Some("visitors"), "{e}");
    assert!(e.message.contains("`clicks` and `visitors` both read topic `happytimes.clicks`"), "{e}");
}

#[test]
fn the_record_cache_is_switched_off_per_table_node_only() {
    let plan = parse(&with_nodes(
        "  - name: counts\n    from: clicks\n    cache: false\n    aggregate:\n      group_by: { visitor_id: visitor_id }\n      measures: { n: { count: {} } }\n  - name: cached\n    from: clicks\n    aggregate:\n      group_by: { visitor_id: visitor_id }\n      measures: { n: { count: {} } }\n",
    ))
    .unwrap();
    assert!(!plan.node("counts").unwrap().cache);
    assert!(plan.node("cached").unwrap().cache, "on by default");
    let e = error(&with_nodes("  - name: a\n    from: clicks\n    cache: false\n"));
    assert_eq!(e.node.as_deref(), Some("a"), "{e}");
    assert!(e.message.contains("gives a stream"), "{e}");
}
