//! Oracle tests: the incremental engine's output equals a from-scratch recomputation of the same
//! input, for shuffled and duplicated input.

use happystreams::operators::pipeline::Output;
use happystreams::record::{Row, Value};
use happystreams::testkit::TopologyTestDriver;
use happystreams::topology;
use proptest::prelude::*;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::path::Path;

const TOPOLOGY: &str = "
name: oracle_join
sources:
  clicks: { topic: clicks, format: json, key: visitor_id, timestamp: t }
  visitors: { topic: visitors, format: debezium-json, table: versioned, history: 365d }
nodes:
  - name: joined
    from: clicks
    join: { table: visitors, type: left, unknown: { tier: unknown } }
    select: { click: id, tier: visitors.tier }
sinks:
  - { from: joined, topic: out, format: json }
";

#[derive(Debug, Clone)]
struct VisitorVersion {
    visitor: i64,
    valid_from: i64,
    tier: Option<String>,
}

fn versions() -> impl Strategy<Value = Vec<VisitorVersion>> {
    proptest::collection::vec(
        (0i64..4, 0i64..1_000, proptest::option::weighted(0.8, "[a-c]"))
            .prop_map(|(visitor, valid_from, tier)| VisitorVersion { visitor, valid_from, tier }),
        0..20,
    )
}

fn clicks() -> impl Strategy<Value = Vec<(i64, i64)>> {
    proptest::collection::vec((0i64..5, 0i64..1_200), 1..30)
}

/// The naive answer: for each click, the newest version of its visitor valid at its time.
fn oracle(versions: &[VisitorVersion], clicks: &[(usize, i64, i64)]) -> BTreeMap<usize, String> {
    clicks
        .iter()
        .map(|(id, visitor, t)| {
            // Among versions at the same valid_from, the one applied last wins (the store keeps
            // one version per key and time).
            let found = versions
                .iter()
                .enumerate()
                .filter(|(_, v)| v.visitor == *visitor && v.valid_from <= *t)
                .max_by_key(|(i, v)| (v.valid_from, *i));
            let tier = match found {
                Some((_, v)) => v.tier.clone().unwrap_or_else(|| "unknown".into()),
                None => "unknown".into(),
            };
            (*id, tier)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Dimension versions arrive in any order (and some twice); clicks in any order. Each click
    /// joins the version valid at its event time, exactly as a batch recomputation says.
    #[test]
    fn versioned_join_equals_batch_recomputation(versions in versions(), clicks in clicks(), shuffle in any::<u64>(), restart in any::<bool>()) {
        let plan = topology::parse(TOPOLOGY, None, Path::new(".")).unwrap();
        let mut driver = TopologyTestDriver::new(plan).unwrap();
        let mut applied = versions.clone();
        // A deterministic shuffle of the versions, with the first one repeated at the end.
        let n = applied.len();
        for i in (1..n).rev() {
            let j = (shuffle.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
            applied.swap(i, j);
        }
        if let Some(first) = applied.first().cloned() {
            applied.push(first);
        }
        for v in &applied {
            let value = match &v.tier {
                Some(tier) => json!({"op": "u", "after": {"visitor_id": v.visitor, "tier": tier}, "source": {"ts_ms": v.valid_from}}),
                None => json!({"op": "d", "before": {"visitor_id": v.visitor}, "after": null, "source": {"ts_ms": v.valid_from}}),
            };
            driver.pipe_json(&json!({"source": "visitors", "key": {"visitor_id": v.visitor}, "value": value})).unwrap();
        }
        if restart {
            driver.restart().unwrap();
        }
        let numbered: Vec<(usize, i64, i64)> = clicks.iter().enumerate().map(|(i, (v, t))| (i, *v, *t)).collect();
        for (id, visitor, t) in numbered.iter().rev() {
            let value = Row::new().with("id", Value::Long(*id as i64)).with("visitor_id", Value::Long(*visitor)).with("t", Value::Long(*t));
            driver.pipe("clicks", Value::Null, value, 0).unwrap();
        }
        let got: BTreeMap<usize, String> = driver
            .read_output("out")
            .into_iter()
            .map(|o| {
                let row = o.value.unwrap();
                let id = row.get("click").and_then(Value::as_i64).unwrap() as usize;
                (id, row.get("tier").and_then(Value::as_str).unwrap_or("null").to_owned())
            })
            .collect();
        prop_assert_eq!(got, oracle(&applied, &numbered));
    }
}

/// The aggregation every window oracle runs: six measures per group `g` over `window`.
fn windowed_topology(window: &str, emit_final: bool) -> String {
    let emit = if emit_final { "final" } else { "on_update" };
    format!(
        "
name: oracle_windows
sources:
  events: {{ topic: e, format: json, key: g, timestamp: t }}
nodes:
  - name: agg
    from: events
    aggregate:
      group_by: {{ g: g }}
      window: {window}
      emit: {emit}
      measures:
        n: {{ count: {{}} }}
        total: {{ sum: v }}
        lo: {{ min: v }}
        hi: {{ max: v }}
        users: {{ count_distinct: u }}
        top: {{ top_n: {{ n: 2, of: u }} }}
sinks:
  - {{ from: agg, topic: out, format: json }}
"
    )
}

/// Pipes `(g, t, v, u)` events through `yaml` (restarting before event `restart_at`), then
/// closes every window; returns what reached `out`.
fn run_windowed(yaml: &str, events: &[(i64, i64, i64, i64)], restart_at: Option<usize>) -> Vec<Output> {
    let plan = topology::parse(yaml, None, Path::new(".")).unwrap();
    let mut driver = TopologyTestDriver::new(plan).unwrap();
    for (i, (g, t, v, u)) in events.iter().enumerate() {
        if restart_at == Some(i) {
            driver.restart().unwrap();
        }
        let value = Row::new()
            .with("g", Value::Long(*g))
            .with("t", Value::Long(*t))
            .with("v", Value::Long(*v))
            .with("u", Value::Long(*u));
        driver.pipe("events", Value::Null, value, 0).unwrap();
    }
    driver.advance_stream_time(1_000_000).unwrap();
    driver.read_output("out")
}

/// The `(t, v, u)` records of each group that were within `grace` of stream time on arrival.
fn accepted_by_group(events: &[(i64, i64, i64, i64)], grace: i64) -> BTreeMap<i64, Vec<(i64, i64, i64)>> {
    let mut accepted: BTreeMap<i64, Vec<(i64, i64, i64)>> = BTreeMap::new();
    let mut stream_time = i64::MIN;
    for (g, t, v, u) in events {
        let now = stream_time.max(*t);
        if *t >= now - grace {
            accepted.entry(*g).or_default().push((*t, *v, *u));
        }
        stream_time = now;
    }
    accepted
}

/// One window's naive aggregate: count, sum, min, max, distinct users, top-2 users by count.
type Expected = (i64, i64, i64, i64, i64, Vec<(i64, i64)>);

/// The measures of one window over its `(v, u)` records.
fn summarize(rows: &[(i64, i64)]) -> Expected {
    let values: Vec<i64> = rows.iter().map(|(v, _)| *v).collect();
    let mut per_user: BTreeMap<i64, i64> = BTreeMap::new();
    for (_, u) in rows {
        *per_user.entry(*u).or_default() += 1;
    }
    let mut top: Vec<(i64, i64)> = per_user.iter().map(|(u, c)| (*u, *c)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(2);
    (
        rows.len() as i64,
        values.iter().sum(),
        *values.iter().min().unwrap_or(&0),
        *values.iter().max().unwrap_or(&0),
        per_user.len() as i64,
        top,
    )
}

fn naive(events: &[(i64, i64, i64, i64)], size: i64, advance: i64, grace: i64) -> BTreeMap<(i64, i64), Expected> {
    let mut accepted: BTreeMap<(i64, i64), Vec<(i64, i64)>> = BTreeMap::new();
    let mut stream_time = i64::MIN;
    for (g, t, v, u) in events {
        let now = stream_time.max(*t);
        // Every window start s with s <= t < s + size, aligned to the advance.
        let first = (t - size + 1).div_euclid(advance) * advance;
        let mut s = first;
        while s <= *t {
            if s + size > *t && s.rem_euclid(advance) == 0 && s + size + grace > now {
                accepted.entry((*g, s)).or_default().push((*v, *u));
            }
            s += advance;
        }
        stream_time = now;
    }
    accepted.into_iter().map(|(window, rows)| (window, summarize(&rows))).collect()
}

fn observed(row: &Row) -> ((i64, i64), Expected) {
    let long = |name: &str| row.get(name).and_then(Value::as_i64).unwrap_or_else(|| panic!("{name} in {row:?}"));
    let start = row.get("window_start").and_then(Value::epoch_millis).unwrap();
    let top = match row.get("top") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                let r = i.as_row().unwrap();
                (r.get("value").and_then(Value::as_i64).unwrap(), r.get("score").and_then(Value::as_i64).unwrap())
            })
            .collect(),
        other => panic!("top: {other:?}"),
    };
    ((long("g"), start), (long("n"), long("total"), long("lo"), long("hi"), long("users"), top))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Tumbling and hopping windows with grace, emit-final and emit-on-update, over shuffled
    /// input with late records: the final result per window equals a batch recomputation over
    /// the records that were not late when they arrived.
    #[test]
    fn windowed_aggregation_equals_batch_recomputation(
        events in proptest::collection::vec((0i64..3, 0i64..600, -50i64..50, 0i64..5), 1..60),
        hopping in any::<bool>(),
        emit_final in any::<bool>(),
        restart_at in proptest::option::of(0usize..60),
    ) {
        let advance = if hopping { 40 } else { 100 };
        let window = if hopping {
            "{ type: hopping, size: 100ms, advance: 40ms, grace: 30ms }"
        } else {
            "{ type: tumbling, size: 100ms, grace: 30ms }"
        };
        let yaml = windowed_topology(window, emit_final);
        let outputs = run_windowed(&yaml, &events, restart_at);
        let mut got: BTreeMap<(i64, i64), Expected> = BTreeMap::new();
        let mut emitted_per_window: BTreeMap<(i64, i64), usize> = BTreeMap::new();
        for output in outputs {
            let (window, result) = observed(&output.value.unwrap());
            *emitted_per_window.entry(window).or_default() += 1;
            got.insert(window, result);
        }
        if emit_final {
            prop_assert!(emitted_per_window.values().all(|n| *n == 1), "emit-final emits each window once: {:?}", emitted_per_window);
        }
        prop_assert_eq!(got, naive(&events, 100, advance, 30));
    }
}

const STREAM_JOIN: &str = "
name: oracle_stream_join
sources:
  views: { topic: v, format: json, key: k, timestamp: t }
  clicks: { topic: c, format: json, key: k, timestamp: t }
nodes:
  - name: joined
    from: views
    join: { stream: clicks, type: JOIN_TYPE, within: 20ms, grace: 10ms, as: click }
    select: { view: id, click: click.id }
sinks:
  - { from: joined, topic: out, format: json }
";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Two streams joined within 20 ms (grace 10 ms), records arriving in any order: the joined
    /// pairs are exactly the same-key pairs at most 20 ms apart among the records that were not
    /// late when they arrived; a left join adds each accepted left record without a partner once.
    #[test]
    fn stream_stream_join_equals_batch_recomputation(
        events in proptest::collection::vec((any::<bool>(), 0i64..3, 0i64..200), 1..50),
        restart_at in proptest::option::of(0usize..50),
        left in any::<bool>(),
    ) {
        let yaml = STREAM_JOIN.replace("JOIN_TYPE", if left { "left" } else { "inner" });
        let plan = topology::parse(&yaml, None, Path::new(".")).unwrap();
        let mut driver = TopologyTestDriver::new(plan).unwrap();
        let (within, grace) = (20, 10);
        let mut stream_time = i64::MIN;
        let mut accepted: Vec<(bool, i64, i64, usize)> = Vec::new();
        for (id, (is_view, k, t)) in events.iter().enumerate() {
            if restart_at == Some(id) {
                driver.restart().unwrap();
            }
            let now = stream_time.max(*t);
            if *t >= now - within - grace {
                accepted.push((*is_view, *k, *t, id));
            }
            stream_time = now;
            let row = Row::new().with("id", Value::Long(id as i64)).with("k", Value::Long(*k)).with("t", Value::Long(*t));
            driver.pipe(if *is_view { "views" } else { "clicks" }, Value::Null, row, 0).unwrap();
        }
        driver.advance_stream_time(1_000_000).unwrap();
        let mut expected: Vec<(i64, Option<i64>)> = Vec::new();
        for (is_view, k, t, id) in &accepted {
            if !is_view {
                continue;
            }
            let before = expected.len();
            for (other_is_view, k2, t2, id2) in &accepted {
                if !other_is_view && k == k2 && (t - t2).abs() <= within {
                    expected.push((*id as i64, Some(*id2 as i64)));
                }
            }
            if left && expected.len() == before {
                expected.push((*id as i64, None));
            }
        }
        expected.sort();
        let mut got: Vec<(i64, Option<i64>)> = driver
            .read_output("out")
            .into_iter()
            .map(|o| {
                let row = o.value.unwrap();
                (row.get("view").and_then(Value::as_i64).unwrap(), row.get("click").and_then(Value::as_i64))
            })
            .collect();
        got.sort();
        prop_assert_eq!(got, expected);
    }
}

/// Naive sessions: the accepted records of each group sorted by time, split where two
/// neighbours are more than `gap` apart.
fn naive_sessions(events: &[(i64, i64, i64, i64)], gap: i64, grace: i64) -> BTreeMap<(i64, i64), Expected> {
    let accepted = accepted_by_group(events, grace);
    let mut out = BTreeMap::new();
    for (g, mut rows) in accepted {
        rows.sort();
        let mut sessions: Vec<Vec<(i64, i64, i64)>> = Vec::new();
        for row in rows {
            match sessions.last_mut() {
                Some(current) if row.0 - current.last().map_or(row.0, |r| r.0) <= gap => current.push(row),
                _ => sessions.push(vec![row]),
            }
        }
        for session in sessions {
            let rows: Vec<(i64, i64)> = session.iter().map(|r| (r.1, r.2)).collect();
            out.insert((g, session[0].0), summarize(&rows));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Session windows (gap 30 ms, grace 20 ms) over shuffled input with late records: emit-final
    /// writes each session once and emit-on-update's compacted view (merged-away sessions
    /// deleted) ends equal to the sessions a batch recomputation finds.
    #[test]
    fn session_windows_equal_batch_recomputation(
        events in proptest::collection::vec((0i64..3, 0i64..400, -50i64..50, 0i64..5), 1..50),
        emit_final in any::<bool>(),
        restart_at in proptest::option::of(0usize..50),
    ) {
        let yaml = windowed_topology("{ type: session, gap: 30ms, grace: 20ms }", emit_final);
        let outputs = run_windowed(&yaml, &events, restart_at);
        let mut view: BTreeMap<String, Expected> = BTreeMap::new();
        let mut by_window: BTreeMap<(i64, i64), Expected> = BTreeMap::new();
        let mut emitted: BTreeMap<String, usize> = BTreeMap::new();
        for output in outputs {
            let key = output.key.to_json().to_string();
            match output.value {
                None => {
                    prop_assert!(!emit_final, "emit-final never retracts");
                    view.remove(&key);
                }
                Some(row) => {
                    *emitted.entry(key.clone()).or_default() += 1;
                    view.insert(key, observed(&row).1);
                }
            }
        }
        if emit_final {
            prop_assert!(emitted.values().all(|n| *n == 1), "each session emitted once: {:?}", emitted);
        }
        for (key, result) in view {
            let json: Json = serde_json::from_str(&key).unwrap();
            let g = json["g"].as_i64().unwrap();
            let start_text = json["window_start"].as_str().unwrap().to_owned();
            let start_ms = chrono::DateTime::parse_from_rfc3339(&start_text).unwrap().timestamp_millis();
            by_window.insert((g, start_ms), result);
        }
        prop_assert_eq!(by_window, naive_sessions(&events, 30, 20));
    }
}

/// Naive sliding windows: for every accepted record time r of a group, the records of the group
/// in [r - size, r].
fn naive_sliding(events: &[(i64, i64, i64, i64)], size: i64, grace: i64) -> BTreeMap<(i64, i64), Expected> {
    let accepted = accepted_by_group(events, grace);
    let mut out = BTreeMap::new();
    for (g, rows) in &accepted {
        for (r, _, _) in rows {
            let inside: Vec<(i64, i64)> =
                rows.iter().filter(|(t, _, _)| *t >= r - size && t <= r).map(|(_, v, u)| (*v, *u)).collect();
            out.insert((*g, r - size), summarize(&inside));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Sliding windows (size 50 ms, grace 20 ms) over shuffled input with late records: each
    /// window's final result (emit-final: emitted once; on-update: the last update) equals a
    /// batch recomputation over the records that were not late when they arrived.
    #[test]
    fn sliding_windows_equal_batch_recomputation(
        events in proptest::collection::vec((0i64..3, 0i64..300, -50i64..50, 0i64..5), 1..40),
        emit_final in any::<bool>(),
        restart_at in proptest::option::of(0usize..40),
    ) {
        let yaml = windowed_topology("{ type: sliding, size: 50ms, grace: 20ms }", emit_final);
        let outputs = run_windowed(&yaml, &events, restart_at);
        let mut got: BTreeMap<(i64, i64), Expected> = BTreeMap::new();
        let mut emitted: BTreeMap<(i64, i64), usize> = BTreeMap::new();
        for output in outputs {
            let (window, result) = observed(&output.value.unwrap());
            *emitted.entry(window).or_default() += 1;
            got.insert(window, result);
        }
        if emit_final {
            prop_assert!(emitted.values().all(|n| *n == 1), "emit-final emits each window once: {:?}", emitted);
        }
        prop_assert_eq!(got, naive_sliding(&events, 50, 20));
    }
}

const TABLE_AGGREGATE: &str = "
name: oracle_table_aggregate
sources:
  rows: { topic: r, format: json, table: table }
nodes:
  - name: kept
    from: rows
    filter: \"v >= 0\"
  - name: per_group
    from: kept
    aggregate:
      group_by: { g: g }
      measures: { n: { count: {} }, total: { sum: v } }
sinks:
  - { from: per_group, topic: out, format: json }
";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Upserts and deletes on a table, aggregated by a column of its rows: the compacted output
    /// (deleted groups removed) equals a batch aggregation of the table's final rows.
    #[test]
    fn table_changelog_aggregation_equals_batch_recomputation(
        ops in proptest::collection::vec((0i64..6, proptest::option::weighted(0.8, (0i64..3, -5i64..20))), 1..60),
        restart_at in proptest::option::of(0usize..60),
    ) {
        let plan = topology::parse(TABLE_AGGREGATE, None, Path::new(".")).unwrap();
        let mut driver = TopologyTestDriver::new(plan).unwrap();
        let mut table: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (i, (id, row)) in ops.iter().enumerate() {
            if restart_at == Some(i) {
                driver.restart().unwrap();
            }
            let value = match row {
                Some((g, v)) => {
                    table.insert(*id, (*g, *v));
                    json!({"g": g, "v": v})
                }
                None => {
                    table.remove(id);
                    Json::Null
                }
            };
            driver.pipe_json(&json!({"source": "rows", "key": id, "value": value, "timestamp": i})).unwrap();
        }
        let mut view: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for output in driver.read_output("out") {
            let group = output.key.as_row().and_then(|k| k.get("g")).and_then(Value::as_i64).unwrap();
            match output.value {
                Some(row) => {
                    view.insert(group, (row.get("n").and_then(Value::as_i64).unwrap(), row.get("total").and_then(Value::as_i64).unwrap()));
                }
                None => {
                    view.remove(&group);
                }
            }
        }
        let mut expected: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (g, v) in table.values().filter(|(_, v)| *v >= 0) {
            let entry = expected.entry(*g).or_default();
            entry.0 += 1;
            entry.1 += v;
        }
        prop_assert_eq!(view, expected);
    }
}

const TABLE_JOIN: &str = "
name: oracle_table_join
sources:
  subscriptions: { topic: s, format: json, table: table }
  visitors: { topic: v, format: json, table: table }
nodes:
  - name: enriched
    from: subscriptions
    join: { table: visitors, on: visitor_id, type: JOIN_TYPE, unknown: { source: unknown } }
    select: { visitor: visitor_id, source: visitors.source }
sinks:
  - { from: enriched, topic: out, format: json }
";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Upserts and deletes on both sides of a foreign-key table join: the compacted output
    /// equals a batch join of the two tables' final contents.
    #[test]
    fn table_table_join_equals_batch_recomputation(
        ops in proptest::collection::vec((any::<bool>(), 0i64..5, proptest::option::weighted(0.8, 0i64..4)), 1..60),
        left in any::<bool>(),
        restart_at in proptest::option::of(0usize..60),
    ) {
        let yaml = TABLE_JOIN.replace("JOIN_TYPE", if left { "left" } else { "inner" });
        let plan = topology::parse(&yaml, None, Path::new(".")).unwrap();
        let mut driver = TopologyTestDriver::new(plan).unwrap();
        let mut subscriptions: BTreeMap<i64, i64> = BTreeMap::new();
        let mut visitors: BTreeMap<i64, i64> = BTreeMap::new();
        for (i, (is_subscription, id, value)) in ops.iter().enumerate() {
            if restart_at == Some(i) {
                driver.restart().unwrap();
            }
            let (source, row) = match (is_subscription, value) {
                (true, Some(v)) => { subscriptions.insert(*id, *v); ("subscriptions", json!({"visitor_id": v})) }
                (false, Some(v)) => { visitors.insert(*id, *v); ("visitors", json!({"source": format!("s{v}")})) }
                (true, None) => { subscriptions.remove(id); ("subscriptions", Json::Null) }
                (false, None) => { visitors.remove(id); ("visitors", Json::Null) }
            };
            driver.pipe_json(&json!({"source": source, "key": id, "value": row, "timestamp": i})).unwrap();
        }
        let mut view: BTreeMap<i64, (i64, String)> = BTreeMap::new();
        for output in driver.read_output("out") {
            let key = output.key.as_i64().unwrap();
            match output.value {
                Some(row) => {
                    view.insert(key, (row.get("visitor").and_then(Value::as_i64).unwrap(), row.get("source").and_then(Value::as_str).unwrap().to_owned()));
                }
                None => {
                    view.remove(&key);
                }
            }
        }
        let expected: BTreeMap<i64, (i64, String)> = subscriptions
            .iter()
            .filter_map(|(id, visitor)| match visitors.get(visitor) {
                Some(v) => Some((*id, (*visitor, format!("s{v}")))),
                None if left => Some((*id, (*visitor, "unknown".to_owned()))),
                None => None,
            })
            .collect();
        prop_assert_eq!(view, expected);
    }
}
