//! Whole topologies through the test driver (`cargo bench --bench topology`): events/s for the
//! enrichment topology (filter, versioned-table join, global-table join, select) and for the
//! windowed funnel topology (join, re-key, tumbling count + count-distinct), on memory state.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use happystreams::generate::ClickGenerator;
use happystreams::record::{Row, Value};
use happystreams::testkit::TopologyTestDriver;
use serde_json::json;
use std::path::Path;

// The allocator the `happystreams` binary uses, so the numbers are what users get.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLICKS: usize = 20_000;

fn driver(name: &str) -> TopologyTestDriver {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies").join(name);
    let mut driver = TopologyTestDriver::load(&path).expect("topology");
    for visitor in 1..=5 {
        let row = json!({"visitor_id": visitor, "visitor_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "name": "v", "source": "email",
            "is_returning": false, "first_seen": "2024-01-15T08:30:00.123456Z"});
        driver
            .pipe_json(&json!({"source": "visitors", "key": {"visitor_id": visitor}, "value": {"op": "r", "after": row, "source": {"ts_ms": 0}}}))
            .expect("visitor");
    }
    if driver.plan().source("content").is_some() {
        for content in 100..103 {
            driver
                .pipe_json(&json!({"source": "content", "key": {"content_id": content}, "value": {"op": "r", "after": {"content_id": content, "title": "t"}, "source": {"ts_ms": 0}}}))
                .expect("content");
        }
    }
    driver
}

fn clicks() -> Vec<Row> {
    let mut generator = ClickGenerator::new(11);
    (0..CLICKS)
        .map(|i| match generator.click(i) {
            Value::Struct(row) => row,
            _ => unreachable!("clicks are records"),
        })
        .collect()
}

fn topologies(c: &mut Criterion) {
    let clicks = clicks();
    let mut group = c.benchmark_group("topology");
    group.throughput(Throughput::Elements(clicks.len() as u64));
    group.sample_size(10);
    for name in ["enriched_clicks.yaml", "page_views_by_source.yaml"] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || driver(name),
                |mut driver| {
                    for row in &clicks {
                        driver.pipe("clicks", Value::Null, row.clone(), 0).expect("pipe");
                    }
                    for topic in driver.output_topics() {
                        std::hint::black_box(driver.read_output(&topic));
                    }
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// One aggregation node per window type (and a stream-stream join) over the same clicks.
fn operators(c: &mut Criterion) {
    let clicks = clicks();
    let base = "name: b\nsources:\n  clicks: { topic: c, format: json, key: visitor_id }\n  views: { topic: v, format: json, key: visitor_id }\nnodes:\n";
    let cases = [
        (
            "tumbling_count",
            "  - name: a\n    from: clicks\n    aggregate: { group_by: { t: event_type }, window: { type: tumbling, size: 1m, grace: 1m }, measures: { n: { count: {} }, v: { count_distinct: visitor_id } } }\n",
        ),
        (
            "hopping_count",
            "  - name: a\n    from: clicks\n    aggregate: { group_by: { t: event_type }, window: { type: hopping, size: 1m, advance: 20s, grace: 1m }, measures: { n: { count: {} }, v: { count_distinct: visitor_id } } }\n",
        ),
        (
            "session_count",
            "  - name: a\n    from: clicks\n    aggregate: { group_by: { s: session_id }, window: { type: session, gap: 30s, grace: 1m }, measures: { n: { count: {} } } }\n",
        ),
        (
            "unwindowed_top_n",
            "  - name: a\n    from: clicks\n    aggregate: { group_by: { t: event_type }, measures: { top: { top_n: { n: 3, of: device_type } } } }\n",
        ),
        ("stream_stream_join", "  - name: a\n    from: clicks\n    join: { stream: views, type: inner, within: 5s }\n"),
    ];
    let mut group = c.benchmark_group("operator");
    group.throughput(Throughput::Elements(clicks.len() as u64));
    group.sample_size(10);
    for (name, node) in cases {
        let yaml = format!("{base}{node}sinks:\n  - {{ from: a, topic: out, format: json }}\n");
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    TopologyTestDriver::new(
                        happystreams::topology::parse(&yaml, None, Path::new(".")).expect("topology"),
                    )
                    .expect("driver")
                },
                |mut driver| {
                    for (i, row) in clicks.iter().enumerate() {
                        let ts = i as i64 * 100;
                        let source = if name == "stream_stream_join" && i % 2 == 1 { "views" } else { "clicks" };
                        driver.pipe(source, Value::Null, row.clone(), ts).expect("pipe");
                    }
                    std::hint::black_box(driver.read_output("out"));
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// A stream-table join alone: clicks joined with a table of the visitors they name.
fn stream_table_join(c: &mut Criterion) {
    let clicks = clicks();
    let yaml = "name: j\nsources:\n  clicks: { topic: c, format: json, key: visitor_id }\n  visitors: { topic: v, format: json, table: table }\nnodes:\n  - name: a\n    from: clicks\n    join: { table: visitors, unknown: { source: unknown } }\n    select: { event_id: event_id, visitor_id: visitor_id, source: visitors.source }\nsinks:\n  - { from: a, topic: out, format: json }\n";
    let mut group = c.benchmark_group("operator");
    group.throughput(Throughput::Elements(clicks.len() as u64));
    group.sample_size(10);
    group.bench_function("stream_table_join", |b| {
        b.iter_batched(
            || {
                let mut driver = TopologyTestDriver::new(
                    happystreams::topology::parse(yaml, None, Path::new(".")).expect("topology"),
                )
                .expect("driver");
                for visitor in 0..10_000i64 {
                    let key = Value::Struct(Row::new().with("visitor_id", Value::Long(visitor)));
                    let row = Row::new()
                        .with("visitor_id", Value::Long(visitor))
                        .with("source", Value::String("email".into()));
                    driver.pipe("visitors", key, row, 0).expect("visitor");
                }
                driver
            },
            |mut driver| {
                for row in &clicks {
                    driver.pipe("clicks", Value::Null, row.clone(), 0).expect("pipe");
                }
                std::hint::black_box(driver.read_output("out"));
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, topologies, operators, stream_table_join);
criterion_main!(benches);
