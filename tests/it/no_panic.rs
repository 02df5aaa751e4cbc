//! Arbitrary bytes into every decoder: a classified error or a value, never a panic.

use crate::debezium_fixtures::records;
use happystreams::codec::avro::{AvroCodec, AvroSchema, frame};
use happystreams::codec::debezium::DebeziumDecoder;
use happystreams::codec::json::{self, JsonSchemaDecoder};
use happystreams::record::Record;
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

const CLICK_SCHEMA: &str = include_str!("../../schemas/happytimes.clicks-value.avsc");

struct Decoders {
    json_schema: JsonSchemaDecoder,
    debezium_plain: DebeziumDecoder,
    debezium_schema: DebeziumDecoder,
    debezium_avro: DebeziumDecoder,
    avro: Arc<AvroCodec>,
    fixture_values: Vec<Vec<u8>>,
}

fn decoders() -> &'static Decoders {
    static DECODERS: OnceLock<Decoders> = OnceLock::new();
    DECODERS.get_or_init(|| {
        let avro = Arc::new(AvroCodec::offline());
        avro.add_schema(AvroSchema::parse(1, CLICK_SCHEMA).unwrap());
        Decoders {
            json_schema: JsonSchemaDecoder::new(),
            debezium_plain: DebeziumDecoder::json(false),
            debezium_schema: DebeziumDecoder::json(true),
            debezium_avro: DebeziumDecoder::avro(avro.clone()),
            avro,
            fixture_values: records("json-schemas-precise")
                .into_iter()
                .filter_map(|r| r.value.map(|v| v.to_vec()))
                .collect(),
        }
    })
}

fn feed(bytes: &[u8]) {
    let d = decoders();
    let _ = json::decode_plain(bytes);
    let _ = d.json_schema.decode(bytes);
    let _ = d.avro.decode_cached(bytes);
    let _ = d.avro.decode_cached(&frame(1, bytes));
    let record = Record { key: Some(bytes.to_vec().into()), value: Some(bytes.to_vec().into()), ..Record::default() };
    for decoder in [&d.debezium_plain, &d.debezium_schema, &d.debezium_avro] {
        let _ = decoder.decode_cached(&record);
    }
    let framed = Record { value: Some(frame(1, bytes).into()), ..Record::default() };
    let _ = d.debezium_avro.decode_cached(&framed);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        feed(&bytes);
    }

    #[test]
    fn mutated_real_records_never_panic(index in 0usize..48, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let d = decoders();
        let mut bytes = d.fixture_values[index % d.fixture_values.len()].clone();
        for (at, byte) in flips {
            let len = bytes.len();
            bytes[at % len] = byte;
        }
        feed(&bytes);
        feed(&bytes[..cut % (bytes.len() + 1)]);
    }
}
