//! Debezium envelopes in JSON (with and without schemas) never panic; the input is split into
//! key, value and one header.
#![no_main]
use happystreams::codec::debezium::DebeziumDecoder;
use happystreams::record::{Header, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let (key, value, header) = (parts.next(), parts.next(), parts.next());
    let record = Record {
        key: key.map(|k| k.to_vec().into()),
        value: value.map(|v| v.to_vec().into()),
        headers: header
            .map(|h| vec![Header { key: "__debezium.newkey".into(), value: Some(h.to_vec().into()) }])
            .unwrap_or_default(),
        ..Record::default()
    };
    for with_schemas in [false, true] {
        let _ = DebeziumDecoder::json(with_schemas).decode_cached(&record);
    }
});
