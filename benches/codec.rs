//! Decode throughput (records/s) of the codecs on real Debezium records and generated clicks.
//!
//! `cargo bench --bench codec` (release profile). Inputs are the bundled captures in
//! `tests/fixtures/debezium`, so numbers are comparable across runs and machines.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use happystreams::codec::avro::{AvroCodec, AvroSchema, avro_schema_from_connect};
use happystreams::codec::debezium::DebeziumDecoder;
use happystreams::codec::json;
use happystreams::commands::decode::read_jsonl;
use happystreams::generate::ClickGenerator;
use happystreams::record::{CdcEvent, Record};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

fn capture(folder: &str) -> Vec<Record> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debezium").join(folder).join("records.jsonl");
    read_jsonl(&path).expect("fixture")
}

/// The change records of a capture (no transaction markers), for a realistic CDC topic mix.
fn change_records(folder: &str) -> Vec<Record> {
    let decoder = DebeziumDecoder::json(folder.starts_with("json-schemas"));
    capture(folder).into_iter().filter(|r| !matches!(decoder.decode_cached(r), Ok(CdcEvent::Transaction(_)))).collect()
}

fn debezium_json(c: &mut Criterion) {
    let mut group = c.benchmark_group("debezium_decode");
    for (folder, with_schemas) in [("json-schemas-precise", true), ("json-plain-precise", false)] {
        let records = change_records(folder);
        let decoder = DebeziumDecoder::json(with_schemas);
        group.throughput(Throughput::Elements(records.len() as u64));
        group.bench_function(BenchmarkId::new("json", folder), |b| {
            b.iter(|| {
                for r in &records {
                    black_box(decoder.decode_cached(r).ok());
                }
            })
        });
    }
    // The same changes as Confluent Avro (key + value), decoded from a warm schema cache.
    let json = json::JsonSchemaDecoder::new();
    let codec = Arc::new(AvroCodec::offline());
    let mut avro_records = Vec::new();
    let mut next_id = 1;
    for record in change_records("json-schemas-precise") {
        let mut out = record.clone();
        for part in [&mut out.key, &mut out.value] {
            let Some(bytes) = part.as_deref() else { continue };
            let (schema, value) = json.decode(bytes).expect("fixture");
            let avro_schema = avro_schema_from_connect(&schema).to_string();
            let writer = codec.add_schema(AvroSchema::parse(next_id, &avro_schema).expect("schema"));
            next_id += 1;
            *part = Some(writer.encode(&value).expect("encode").into());
        }
        avro_records.push(out);
    }
    let decoder = DebeziumDecoder::avro(codec);
    group.throughput(Throughput::Elements(avro_records.len() as u64));
    group.bench_function(BenchmarkId::new("avro", "json-schemas-precise"), |b| {
        b.iter(|| {
            for r in &avro_records {
                black_box(decoder.decode_cached(r).ok());
            }
        })
    });
    group.finish();
}

fn clicks(c: &mut Criterion) {
    let schema = AvroSchema::parse(1, include_str!("../schemas/happytimes.clicks-value.avsc")).expect("schema");
    let mut generator = ClickGenerator::new(1);
    let values: Vec<_> = (0..1000).map(|i| generator.click(i)).collect();
    let avro: Vec<Vec<u8>> = values.iter().map(|v| schema.encode(v).expect("encode")).collect();
    let plain: Vec<Vec<u8>> = values.iter().map(json::encode_plain).collect();
    let codec = AvroCodec::offline();
    codec.add_schema(AvroSchema::parse(1, include_str!("../schemas/happytimes.clicks-value.avsc")).expect("schema"));
    let mut group = c.benchmark_group("click_decode");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("avro", |b| {
        b.iter(|| {
            for bytes in &avro {
                black_box(codec.decode_cached(bytes).ok());
            }
        })
    });
    group.bench_function("json", |b| {
        b.iter(|| {
            for bytes in &plain {
                black_box(json::decode_plain(bytes).ok());
            }
        })
    });
    group.bench_function("avro_encode", |b| {
        b.iter(|| {
            for v in &values {
                black_box(schema.encode(v).ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, debezium_json, clicks);
criterion_main!(benches);
