//! JSON with a Kafka Connect schema envelope never panics (schema and payload both fuzzed).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoder = happystreams::codec::json::JsonSchemaDecoder::new();
    let _ = decoder.decode(data);
});
