//! Debezium envelopes in Avro never panic: arbitrary bodies under a Debezium envelope schema.
#![no_main]
use happystreams::codec::avro::{AvroCodec, AvroSchema, frame};
use happystreams::codec::debezium::DebeziumDecoder;
use happystreams::record::Record;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

const ENVELOPE: &str = r#"{"type":"record","name":"Envelope","namespace":"happytimes.public.ads","fields":[
  {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
    {"name":"ad_id","type":"int"},
    {"name":"cpm","type":["null",{"type":"bytes","logicalType":"decimal","precision":10,"scale":2,"connect.name":"org.apache.kafka.connect.data.Decimal"}],"default":null},
    {"name":"created_at","type":["null",{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}],"default":null}]}],"default":null},
  {"name":"after","type":["null","Value"],"default":null},
  {"name":"source","type":{"type":"record","name":"Source","fields":[{"name":"ts_ms","type":"long"},{"name":"table","type":"string"}]}},
  {"name":"op","type":"string"},
  {"name":"ts_ms","type":["null","long"],"default":null}]}"#;

fn decoder() -> &'static DebeziumDecoder {
    static DECODER: OnceLock<DebeziumDecoder> = OnceLock::new();
    DECODER.get_or_init(|| {
        let codec = AvroCodec::offline();
        codec.add_schema(AvroSchema::parse(1, ENVELOPE).expect("envelope schema parses"));
        DebeziumDecoder::avro(Arc::new(codec))
    })
}

fuzz_target!(|data: &[u8]| {
    let record = Record { value: Some(frame(1, data).into()), ..Record::default() };
    let _ = decoder().decode_cached(&record);
});
