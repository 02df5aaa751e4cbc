//! Avro through the embedded registry, interoperating with `schema_registry_converter` (the
//! client every Rust producer uses), and Debezium envelopes in Avro decoded exactly like their
//! JSON twins.

use crate::debezium_fixtures::{decode_all, records};
use happystreams::codec::avro::{AvroCodec, AvroSchema, avro_schema_from_connect, frame, split_wire};
use happystreams::codec::debezium::DebeziumDecoder;
use happystreams::codec::json::JsonSchemaDecoder;
use happystreams::connectors::registry::client::sr_settings;
use happystreams::connectors::registry::{RegistryConfig, RegistryStore, RunningRegistry};
use happystreams::generate::ClickGenerator;
use happystreams::record::Record;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{get_all_subjects, get_all_versions, post_schema};
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedReference, SuppliedSchema,
};
use std::sync::Arc;

const CLICK_SCHEMA: &str = include_str!("../../schemas/happytimes.clicks-value.avsc");

async fn registry() -> (RunningRegistry, RegistryConfig) {
    let running = RunningRegistry::start("127.0.0.1:0".parse().unwrap(), RegistryStore::in_memory()).await.unwrap();
    let config = RegistryConfig { url: running.url.clone(), ..RegistryConfig::default() };
    (running, config)
}

#[tokio::test]
async fn clicks_round_trip_between_schema_registry_converter_and_happystreams() {
    let (running, config) = registry().await;
    let settings = sr_settings(&config).unwrap();
    let writer = AvroSchema::parse(0, CLICK_SCHEMA).unwrap();
    let encoder = AvroEncoder::new(settings.clone());
    let their_decoder = AvroDecoder::new(settings.clone());
    let codec = AvroCodec::with_registry(settings.clone());
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        "happytimes.clicks".into(),
        false,
        SuppliedSchema::new(None, SchemaType::Avro, CLICK_SCHEMA.into()),
    );
    let mut generator = ClickGenerator::new(7);
    for index in 0..50 {
        let click = generator.click(index);
        let avro = writer.to_avro_value(&click).unwrap();
        // Their encoder registers the schema with our registry and frames the body.
        let bytes = encoder.encode_value(avro.clone(), &strategy).await.unwrap();
        let (id, _) = split_wire(&bytes).unwrap();
        assert_eq!(codec.decode(&bytes).await.unwrap(), click, "click {index}");
        // Our encoder under the registered id is readable by their decoder.
        let ours = AvroSchema::parse(id, CLICK_SCHEMA).unwrap().encode(&click).unwrap();
        assert_eq!(ours, bytes, "both encoders write the same bytes");
        assert_eq!(their_decoder.decode(Some(&ours)).await.unwrap().value, avro);
    }
    assert_eq!(get_all_subjects(&settings).await.unwrap(), vec!["happytimes.clicks-value".to_string()]);
    assert_eq!(get_all_versions(&settings, "happytimes.clicks-value".into()).await.unwrap(), vec![1]);
    running.shutdown().await.unwrap();
}

/// A schema that references a type of another subject, registered by their encoder (which
/// registers the referenced schema first): happystreams fetches the reference and decodes, and
/// writes the same bytes back. (The type is used once: the client's own inlining defines it at
/// every use, which Avro refuses; happystreams' inlining is tested with repeated uses in
/// `codec::avro_references`.)
#[tokio::test]
async fn records_whose_schema_references_another_subject_decode() {
    let (running, config) = registry().await;
    let settings = sr_settings(&config).unwrap();
    let address = r#"{"type":"record","name":"Address","namespace":"acme","fields":[{"name":"city","type":"string"}]}"#;
    let order = r#"{"type":"record","name":"Order","namespace":"acme","fields":[
        {"name":"id","type":"long"},{"name":"ship_to","type":"Address"},{"name":"note","type":["null","string"]}]}"#;
    let reference = SuppliedReference::new("Address".into(), "acme.address".into(), address.into());
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        "acme.orders".into(),
        false,
        SuppliedSchema::new(None, SchemaType::Avro, order.into()).with_references(vec![reference]),
    );
    let city = |name: &str| apache_avro::types::Value::Record(vec![("city".into(), name.into())]);
    let value = apache_avro::types::Value::Record(vec![
        ("id".into(), apache_avro::types::Value::Long(7)),
        ("ship_to".into(), city("Utrecht")),
        ("note".into(), apache_avro::types::Value::Union(1, Box::new("Gouda".into()))),
    ]);
    let bytes = AvroEncoder::new(settings.clone()).encode_value(value.clone(), &strategy).await.unwrap();
    let codec = AvroCodec::with_registry(settings.clone());
    let decoded = codec.decode(&bytes).await.unwrap();
    let shown = format!("{decoded:?}");
    assert!(shown.contains("Utrecht") && shown.contains("Gouda"), "{shown}");
    let (id, _) = split_wire(&bytes).unwrap();
    assert_eq!(codec.schema(id).await.unwrap().encode(&decoded).unwrap(), bytes, "the same bytes back");
    assert_eq!(AvroDecoder::new(settings.clone()).decode(Some(&bytes)).await.unwrap().value, value);
    assert_eq!(
        get_all_subjects(&settings).await.unwrap(),
        vec!["acme.address".to_string(), "acme.orders-value".to_string()]
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_schema_id_and_wrong_magic_are_classified() {
    let (running, config) = registry().await;
    let codec = AvroCodec::with_registry(sr_settings(&config).unwrap());
    let err = codec.decode(&frame(999, &[2, 4])).await.unwrap_err();
    assert_eq!(err.kind, happystreams::codec::CodecErrorKind::UnknownSchemaId(999), "{err}");
    let err = codec.decode(b"{\"json\": true}").await.unwrap_err();
    assert!(matches!(err.kind, happystreams::codec::CodecErrorKind::WireFormat(_)), "{err}");
    running.shutdown().await.unwrap();
    // A registry that is down is an external, retryable error.
    let err = codec.decode(&frame(1000, &[2])).await.unwrap_err();
    assert!(err.retryable(), "{err}");
    assert_eq!(err.class(), happystreams::error::ErrorClass::External);
}

/// Re-encodes a JSON-with-schemas Debezium record as Confluent Avro, registering its key and
/// value schemas under TopicNameStrategy subjects.
async fn to_avro_record(record: &Record, config: &RegistryConfig, json: &JsonSchemaDecoder) -> Record {
    let settings = sr_settings(config).unwrap();
    let topic = record.position.as_ref().unwrap().topic.to_string();
    let mut out = record.clone();
    for (part, suffix) in [(&mut out.key, "key"), (&mut out.value, "value")] {
        let Some(bytes) = part.as_deref() else { continue };
        let (schema, value) = json.decode(bytes).unwrap();
        let text = avro_schema_from_connect(&schema).to_string();
        let registered = post_schema(
            &settings,
            format!("{topic}-{suffix}"),
            SuppliedSchema::new(None, SchemaType::Avro, text.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("registering {topic}-{suffix}: {e}\n{text}"));
        let writer = AvroSchema::parse(registered.id, &text).unwrap();
        *part = Some(writer.encode(&value).unwrap_or_else(|e| panic!("{topic} {suffix}: {e}")).into());
    }
    out
}

#[tokio::test]
async fn debezium_avro_envelopes_decode_like_their_json_twins() {
    for folder in ["json-schemas-precise", "json-schemas-double", "json-schemas-connecttime"] {
        let (running, config) = registry().await;
        let json = JsonSchemaDecoder::new();
        let expected = decode_all(folder);
        let decoder = DebeziumDecoder::avro(Arc::new(AvroCodec::with_registry(sr_settings(&config).unwrap())));
        for (index, record) in records(folder).iter().enumerate() {
            let avro_record = to_avro_record(record, &config, &json).await;
            let event =
                decoder.decode(&avro_record).await.unwrap_or_else(|e| panic!("{folder} seq {}: {e}", index + 1));
            assert_eq!(event, expected[index].1, "{folder} seq {}", index + 1);
        }
        running.shutdown().await.unwrap();
    }
}
