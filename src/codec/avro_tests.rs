//! Unit tests of [`super`] (the Avro codec), kept apart so the codec reads in one sitting.

use super::*;

#[test]
fn unknown_schema_ids_from_hostile_input_stay_bounded() {
    let codec = AvroCodec::offline();
    for id in 0..(3 * MAX_UNKNOWN_IDS as u32) {
        codec.remember_unknown(id);
    }
    let remembered = codec.unknown.read().unwrap().len();
    assert!(remembered <= MAX_UNKNOWN_IDS, "{remembered} ids remembered");
    assert!(codec.knows(3 * MAX_UNKNOWN_IDS as u32 - 1), "the latest is remembered");
}

#[test]
fn split_wire_rejects_wrong_magic_and_short_input() {
    assert!(matches!(split_wire(&[]).unwrap_err().kind, CodecErrorKind::WireFormat(_)));
    assert!(matches!(split_wire(&[1, 0, 0, 0, 1]).unwrap_err().kind, CodecErrorKind::WireFormat(_)));
    assert!(matches!(split_wire(&[0, 0, 0]).unwrap_err().kind, CodecErrorKind::WireFormat(_)));
    assert_eq!(split_wire(&[0, 0, 0, 1, 2, 9]).unwrap(), (258, &[9u8][..]));
    assert_eq!(frame(258, &[9]), vec![0, 0, 0, 1, 2, 9]);
}

#[test]
fn body_round_trips_decimals_timestamps_and_unions() {
    let schema = AvroSchema::parse(
        7,
        r#"{"type":"record","name":"Sale","namespace":"t","fields":[
            {"name":"id","type":"long"},
            {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
            {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
            {"name":"seen","type":["null",{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}],"default":null},
            {"name":"note","type":["null","string"],"default":null}]}"#,
    )
    .unwrap();
    let value = Value::Struct(
        Row::new()
            .with("id", Value::Long(1))
            .with("price", Value::Decimal(Decimal::new(123450, 2)))
            .with("at", Value::Timestamp { value: 1_705_307_400_123_456, unit: TimeUnit::Micros })
            .with("seen", Value::LocalTimestamp { value: 5, unit: TimeUnit::Micros })
            .with("note", Value::Null),
    );
    let bytes = schema.encode(&value).unwrap();
    let (id, body) = split_wire(&bytes).unwrap();
    assert_eq!(id, 7);
    assert_eq!(schema.decode_body(body).unwrap(), value);
}

#[test]
fn encode_writes_times_in_the_unit_the_schema_declares() {
    let schema = AvroSchema::parse(1, r#"{"type":"record","name":"R","fields":[
        {"name":"t","type":["null",{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}],"default":null}]}"#).unwrap();
    let millis = Value::Struct(Row::new().with("t", Value::LocalTimestamp { value: 1_500, unit: TimeUnit::Millis }));
    let decoded = schema.decode_body(&schema.encode_body(&millis).unwrap()).unwrap();
    assert_eq!(
        decoded,
        Value::Struct(Row::new().with("t", Value::LocalTimestamp { value: 1_500_000, unit: TimeUnit::Micros }))
    );
}

#[test]
fn explicit_null_in_a_required_field_is_an_error_even_with_a_default() {
    let schema =
        AvroSchema::parse(1, r#"{"type":"record","name":"R","fields":[{"name":"n","type":"int","default":7}]}"#)
            .unwrap();
    assert!(schema.encode_body(&Value::Struct(Row::new().with("n", Value::Null))).is_err());
    let absent = schema.encode_body(&Value::Struct(Row::new())).unwrap();
    assert_eq!(schema.decode_body(&absent).unwrap(), Value::Struct(Row::new().with("n", Value::Int(7))));
}

#[test]
fn encode_refuses_lossy_decimal_rescale() {
    let schema = AvroSchema::parse(1, r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#).unwrap();
    let err = schema.encode(&Value::Decimal(Decimal::new(12345, 3))).unwrap_err();
    assert!(matches!(err.kind, CodecErrorKind::InvalidValue(_)), "{err}");
}

#[test]
fn only_unreachable_or_failing_registries_are_retried() {
    let answer = |status: &str, retriable: bool| {
        let error = format!("HTTP request to schema registry failed with status {status}");
        registry_error(7, &SRCError::new(&error, Some("error_code: 0, message: x".into()), retriable)).kind.clone()
    };
    assert_eq!(answer("404 Not Found", false), CodecErrorKind::UnknownSchemaId(7));
    assert!(answer("503 Service Unavailable", true).retryable());
    assert!(answer("500 Internal Server Error", false).retryable());
    assert!(!answer("401 Unauthorized", false).retryable());
    assert!(!answer("422 Unprocessable Entity", false).retryable());
    let refused = SRCError::new("http call to schema registry failed", Some("connection refused".into()), true);
    assert!(registry_error(7, &refused).retryable());
    let protobuf = SRCError::new("type PROTOBUF, is not supported", None, false);
    assert!(!registry_error(7, &protobuf).retryable(), "a schema of another type never becomes usable");
}

#[test]
fn truncated_body_is_a_classified_error() {
    let schema =
        AvroSchema::parse(1, r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#).unwrap();
    let full = schema.encode_body(&Value::Struct(Row::new().with("s", Value::String("hello".into())))).unwrap();
    let err = schema.decode_body(&full[..3]).unwrap_err();
    assert!(matches!(err.kind, CodecErrorKind::Avro(_)), "{err}");
    assert_eq!(err.class(), crate::error::ErrorClass::Data);
}

#[test]
fn a_length_prefix_claiming_more_than_the_limit_is_refused_before_allocating() {
    let schema =
        AvroSchema::parse(1, r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#).unwrap();
    // Zig-zag varint of 400,000,000 followed by three bytes: a 400 MB string in ten bytes.
    let mut body = Vec::new();
    let mut n = 400_000_000u64 << 1;
    while n >= 0x80 {
        body.push((n as u8) | 0x80);
        n >>= 7;
    }
    body.push(n as u8);
    body.extend_from_slice(b"abc");
    let error = schema.decode_body(&body).unwrap_err();
    assert!(matches!(error.kind, CodecErrorKind::Avro(_)), "{error}");
    assert_eq!(apache_avro::util::max_allocation_bytes(0), MAX_AVRO_ALLOCATION);
}
