//! Oracle tests: the incremental engine's output equals a from-scratch recomputation of the same
//! input, for shuffled and duplicated input.

use happystreams::record::{Row, Value};
use happystreams::testkit::TopologyTestDriver;
use happystreams::topology;
use proptest::prelude::*;
use serde_json::json;
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
        (0i64..4, 0i64..1_000, proptest::option::weighted(0.8, "[a-c]")).prop_map(|(visitor, valid_from, tier)| VisitorVersion { visitor, valid_from, tier }),
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
            let found = versions.iter().enumerate().filter(|(_, v)| v.visitor == *visitor && v.valid_from <= *t).max_by_key(|(i, v)| (v.valid_from, *i));
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
