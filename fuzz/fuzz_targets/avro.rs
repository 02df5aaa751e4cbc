//! Confluent-framed Avro never panics: the wire header and the body under a real schema.
#![no_main]
use happystreams::codec::avro::{AvroCodec, AvroSchema, frame};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn codec() -> &'static AvroCodec {
    static CODEC: OnceLock<AvroCodec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let codec = AvroCodec::offline();
        let schema = include_str!("../../schemas/happytimes.clicks-value.avsc");
        codec.add_schema(AvroSchema::parse(1, schema).expect("bundled schema parses"));
        codec
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = codec().decode_cached(data);
    let _ = codec().decode_cached(&frame(1, data));
});
