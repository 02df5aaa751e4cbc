//! Cost of expressions per record: the field-path fast path versus CEL filters and computed
//! fields (`cargo bench --bench expression`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use happystreams::expression::{Expression, Scope};
use happystreams::generate::ClickGenerator;
use happystreams::record::Value;
use std::hint::black_box;

fn expressions(c: &mut Criterion) {
    let mut generator = ClickGenerator::new(5);
    let rows: Vec<_> = (0..1000)
        .map(|i| match generator.click(i) {
            Value::Struct(row) => row,
            _ => unreachable!("clicks are records"),
        })
        .collect();
    let mut group = c.benchmark_group("expression");
    group.throughput(Throughput::Elements(rows.len() as u64));
    for (name, text) in [
        ("field_path", "visitor_id"),
        ("nested_field_path", "geo.country"),
        ("cel_filter", "event_type == 'page_view' && visitor_id > 2"),
        ("cel_in_list", "event_type in ['ad_click', 'affiliate_click']"),
        ("cel_concat", "device_type + '/' + event_type"),
    ] {
        let expression = Expression::compile(text).expect("valid expression");
        group.bench_function(name, |b| {
            b.iter(|| {
                for row in &rows {
                    black_box(expression.evaluate(&Scope::of(row)).ok());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, expressions);
criterion_main!(benches);
