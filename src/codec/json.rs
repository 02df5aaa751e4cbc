//! JSON values, with or without a Kafka Connect schema envelope.
//!
//! - Plain JSON (`schemas.enable=false`): types are inferred (integers → `Long`, other numbers
//!   → `Double`, objects → `Struct`), or taken from a [`ConnectSchema`] the caller supplies
//!   (for example the table's `.avsc`), which restores decimals, dates and timestamps.
//! - JSON with schema (`schemas.enable=true`): `{"schema": {...}, "payload": ...}`. The schema
//!   is parsed once per distinct schema text and cached in [`JsonSchemaDecoder`].
//!
//! Encoding is the inverse: [`encode_plain`] writes the lossless human rendering
//! ([`Value::to_json`]); [`encode_with_schema`] writes exactly what Kafka Connect's
//! `JsonConverter` writes (decimals as base64 bytes, dates as day numbers, ...).

use super::connect::{ConnectKind, ConnectSchema, Logical, count_in, json_type, row_from_fields, unscaled_at};
use super::error::{CodecError, CodecErrorKind, wrong_type};
use crate::record::{Row, Value};
use base64::Engine as _;
use serde_json::Value as Json;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};

/// Parses bytes as JSON, classifying UTF-8 and syntax errors.
pub fn parse(bytes: &[u8]) -> Result<Json, CodecError> {
    std::str::from_utf8(bytes).map_err(|_| CodecError::new(CodecErrorKind::InvalidUtf8))?;
    serde_json::from_slice(bytes).map_err(|e| CodecError::new(CodecErrorKind::InvalidJson(e.to_string())))
}

/// Decodes plain JSON with inferred types, as [`infer`] types a parsed value, straight into a
/// [`Value`] (no intermediate JSON tree).
pub fn decode_plain(bytes: &[u8]) -> Result<Value, CodecError> {
    std::str::from_utf8(bytes).map_err(|_| CodecError::new(CodecErrorKind::InvalidUtf8))?;
    serde_json::from_slice::<Inferred>(bytes)
        .map(|inferred| inferred.0)
        .map_err(|e| CodecError::new(CodecErrorKind::InvalidJson(e.to_string())))
}

/// A JSON value decoded with [`infer`]'s types.
struct Inferred(Value);

impl<'de> serde::Deserialize<'de> for Inferred {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InferVisitor).map(Inferred)
    }
}

/// An object key as a field name.
struct FieldName(Arc<str>);

impl<'de> serde::Deserialize<'de> for FieldName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl serde::de::Visitor<'_> for NameVisitor {
            type Value = FieldName;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FieldName, E> {
                Ok(FieldName(Arc::from(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// Objects with more fields than this find a repeated key through an index, not a scan.
const SCANNED_FIELDS: usize = 16;

struct InferVisitor;

impl<'de> serde::de::Visitor<'de> for InferVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Long(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Double(v as f64), Value::Long))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Double(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(if v == crate::record::UNAVAILABLE_TEXT { Value::Unavailable } else { Value::String(v.to_owned()) })
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(if v == crate::record::UNAVAILABLE_TEXT { Value::Unavailable } else { Value::String(v) })
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Inferred(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // A repeated key keeps its first place and takes the last value, as a parsed object does.
        let mut fields: Vec<(Arc<str>, Value)> = Vec::new();
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        while let Some(FieldName(name)) = map.next_key()? {
            let Inferred(value) = map.next_value()?;
            let found = if fields.len() < SCANNED_FIELDS {
                fields.iter().position(|(n, _)| *n == name)
            } else {
                if index.is_empty() {
                    index = fields.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
                }
                index.get(&name).copied()
            };
            match found {
                Some(at) => fields[at].1 = value,
                None => {
                    if !index.is_empty() {
                        index.insert(name.clone(), fields.len());
                    }
                    fields.push((name, value));
                }
            }
        }
        Ok(Value::Struct(fields.into_iter().collect()))
    }
}

/// Converts a JSON value with inferred types (no schema).
pub fn infer(json: &Json) -> Value {
    let value = match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Long(i),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(infer).collect()),
        Json::Object(map) => Value::Struct(map.iter().map(|(k, v)| (Arc::from(k.as_str()), infer(v))).collect()),
    };
    if super::connect::is_unavailable_placeholder(&value) { Value::Unavailable } else { value }
}

/// Converts a JSON payload guided by a Connect schema.
pub fn convert(json: &Json, schema: &ConnectSchema) -> Result<Value, CodecError> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    let raw = match &schema.kind {
        ConnectKind::Int8 | ConnectKind::Int16 | ConnectKind::Int32 => {
            match json.as_i64().and_then(|v| i32::try_from(v).ok()) {
                Some(v) => Value::Int(v),
                None => return placeholder_or(json, "a 32-bit integer"),
            }
        }
        ConnectKind::Int64 => match json.as_i64() {
            Some(v) => Value::Long(v),
            None => return placeholder_or(json, "a 64-bit integer"),
        },
        ConnectKind::Float32 => {
            Value::Float(json.as_f64().ok_or_else(|| wrong_type("a number", json_type(json)))? as f32)
        }
        ConnectKind::Float64 => Value::Double(json.as_f64().ok_or_else(|| wrong_type("a number", json_type(json)))?),
        ConnectKind::Boolean => Value::Bool(json.as_bool().ok_or_else(|| wrong_type("a boolean", json_type(json)))?),
        ConnectKind::String => {
            Value::String(json.as_str().ok_or_else(|| wrong_type("a string", json_type(json)))?.to_owned())
        }
        ConnectKind::Bytes => match json {
            Json::String(s) => match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => Value::Bytes(b),
                // Debezium writes the unavailable placeholder as text even in bytes columns
                // under some converters; keep it recognisable.
                Err(_) if s == crate::record::UNAVAILABLE_TEXT => Value::Unavailable,
                Err(e) => return Err(CodecError::new(CodecErrorKind::InvalidValue(format!("not base64: {e}")))),
            },
            // decimal.handling.mode=double/string shapes arriving under a Decimal name.
            Json::Number(_) if matches!(schema.logical, Logical::Decimal { .. }) => {
                return schema.logical.apply(Value::String(json.to_string()));
            }
            other => return Err(wrong_type("base64 bytes", json_type(other))),
        },
        ConnectKind::Array(items) => {
            let arr = json.as_array().ok_or_else(|| wrong_type("an array", json_type(json)))?;
            let mut out = Vec::with_capacity(arr.len());
            for (i, item) in arr.iter().enumerate() {
                out.push(convert(item, items).map_err(|e| e.in_field(&format!("[{i}]")))?);
            }
            Value::Array(out)
        }
        ConnectKind::Map(keys, values) => match json {
            Json::Object(map) => {
                let mut out = Vec::with_capacity(map.len());
                for (k, v) in map {
                    out.push((k.clone(), convert(v, values).map_err(|e| e.in_field(k))?));
                }
                Value::Map(out)
            }
            // Connect writes maps with non-string keys as [[k, v], ...].
            Json::Array(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    let (k, v) = match pair.as_array().map(Vec::as_slice) {
                        Some([k, v]) => (k, v),
                        _ => return Err(wrong_type("a [key, value] pair", json_type(pair))),
                    };
                    let key = convert(k, keys)?.to_json();
                    let key = key.as_str().map(str::to_owned).unwrap_or_else(|| key.to_string());
                    out.push((key, convert(v, values)?));
                }
                Value::Map(out)
            }
            other => return Err(wrong_type("an object", json_type(other))),
        },
        ConnectKind::Struct(fields) => {
            let obj = json.as_object().ok_or_else(|| wrong_type("an object", json_type(json)))?;
            Value::Struct(row_from_fields(fields, |f| match obj.get(&*f.name) {
                Some(v) => convert(v, &f.schema),
                None if f.schema.optional => Ok(Value::Null),
                None => Err(CodecError::new(CodecErrorKind::MissingField(f.name.to_string()))),
            })?)
        }
        ConnectKind::Union(branches) => return convert_union(json, branches),
        ConnectKind::Null => return Err(wrong_type("null", json_type(json))),
    };
    schema.logical.apply(raw)
}

fn placeholder_or(json: &Json, expected: &str) -> Result<Value, CodecError> {
    match json.as_str() {
        Some(crate::record::UNAVAILABLE_TEXT) => Ok(Value::Unavailable),
        _ => Err(wrong_type(expected, json_type(json))),
    }
}

fn convert_union(json: &Json, branches: &[ConnectSchema]) -> Result<Value, CodecError> {
    // Avro's JSON encoding of a union is {"type name": value}; accept that and bare values.
    if let Some((type_name, inner)) = json.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next())
        && let Some(branch) = branches
            .iter()
            .find(|b| b.name.as_deref().is_some_and(|n| n == type_name || n.ends_with(&format!(".{type_name}"))))
    {
        return convert(inner, branch);
    }
    branches
        .iter()
        .filter(|b| b.kind != ConnectKind::Null)
        .find_map(|b| convert(json, b).ok())
        .ok_or_else(|| wrong_type("a value of one of the union's types", json_type(json)))
}

/// Decodes plain JSON whose shape is given by `schema` (e.g. the table's `.avsc` mapped to
/// Connect types).
pub fn decode_plain_with_schema(bytes: &[u8], schema: &ConnectSchema) -> Result<Value, CodecError> {
    convert(&parse(bytes)?, schema)
}

const MAX_CACHED_SCHEMAS: usize = 1024;

/// Schema text the cache holds at most, in all: a flood of large distinct schemas (hostile or
/// broken input) costs a parse each, not memory.
const MAX_CACHED_SCHEMA_BYTES: usize = 8 << 20;

/// The largest schema a record may carry. Debezium's envelope for a table of a thousand columns
/// is a few hundred KiB; parsing a 10 MiB one costs ~250 MiB of memory.
pub const MAX_RECORD_SCHEMA_BYTES: usize = 1 << 20;

/// Parsed schemas by the hash of their text, with the text held by all of them.
type SchemaCache = HashMap<u64, (Box<str>, Arc<ConnectSchema>)>;

/// Decoder for JSON with a schema envelope; caches parsed schemas by their text.
#[derive(Debug, Default)]
pub struct JsonSchemaDecoder {
    cache: RwLock<(SchemaCache, usize)>,
}

#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    schema: Option<&'a RawValue>,
    payload: Option<Json>,
}

impl JsonSchemaDecoder {
    /// A decoder with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `{"schema": ..., "payload": ...}` into the schema and the typed payload.
    pub fn decode(&self, bytes: &[u8]) -> Result<(Arc<ConnectSchema>, Value), CodecError> {
        std::str::from_utf8(bytes).map_err(|_| CodecError::new(CodecErrorKind::InvalidUtf8))?;
        let envelope: Envelope<'_> = serde_json::from_slice(bytes).map_err(|e| {
            CodecError::new(CodecErrorKind::InvalidJson(format!(
                "{e} (expected a {{\"schema\", \"payload\"}} envelope)"
            )))
        })?;
        let schema_text =
            envelope.schema.ok_or_else(|| CodecError::new(CodecErrorKind::MissingField("schema".into())))?;
        let schema = self.schema(schema_text.get())?;
        let payload =
            envelope.payload.ok_or_else(|| CodecError::new(CodecErrorKind::MissingField("payload".into())))?;
        let value = convert(&payload, &schema).map_err(|e| e.in_field("payload"))?;
        Ok((schema, value))
    }

    fn schema(&self, text: &str) -> Result<Arc<ConnectSchema>, CodecError> {
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        let key = hasher.finish();
        if let Some((cached_text, schema)) = self.cache.read().ok().and_then(|c| c.0.get(&key).cloned())
            && &*cached_text == text
        {
            return Ok(schema);
        }
        if text.len() > MAX_RECORD_SCHEMA_BYTES {
            let detail = format!("{} bytes, over the {MAX_RECORD_SCHEMA_BYTES}-byte limit", text.len());
            return Err(CodecError::new(CodecErrorKind::RecordSchema(detail)).in_field("schema"));
        }
        let json: Json =
            serde_json::from_str(text).map_err(|e| CodecError::new(CodecErrorKind::InvalidJson(e.to_string())))?;
        let schema = ConnectSchema::from_connect_json(&json).map_err(|e| {
            // The record's own schema: a bad record, whatever the reason.
            if let CodecErrorKind::UnsupportedSchema(detail) = &e.kind {
                CodecError::new(CodecErrorKind::RecordSchema(detail.clone()))
            } else {
                e
            }
        });
        let schema = Arc::new(schema.map_err(|e| e.in_field("schema"))?);
        if let Ok(mut cache) = self.cache.write() {
            // A topic has a handful of schema versions; a flood of distinct schemas (hostile or
            // broken input) must not grow memory without bound.
            let (schemas, bytes) = &mut *cache;
            if schemas.len() >= MAX_CACHED_SCHEMAS || *bytes + text.len() > MAX_CACHED_SCHEMA_BYTES {
                schemas.clear();
                *bytes = 0;
            }
            *bytes += text.len();
            schemas.insert(key, (Box::from(text), schema.clone()));
        }
        Ok(schema)
    }
}

/// Encodes a value as plain JSON (the lossless human rendering).
pub fn encode_plain(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&value.to_json()).unwrap_or_default()
}

/// Encodes a value exactly as Kafka Connect's `JsonConverter` with `schemas.enable=true`.
pub fn encode_with_schema(schema: &ConnectSchema, value: &Value) -> Result<Vec<u8>, CodecError> {
    let envelope = serde_json::json!({ "schema": schema_to_json(schema), "payload": to_payload(value, schema)? });
    Ok(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// The Connect JSON form of a schema.
pub fn schema_to_json(schema: &ConnectSchema) -> Json {
    let mut obj = serde_json::Map::new();
    match &schema.kind {
        ConnectKind::Array(items) => {
            obj.insert("items".into(), schema_to_json(items));
        }
        ConnectKind::Map(k, v) => {
            obj.insert("keys".into(), schema_to_json(k));
            obj.insert("values".into(), schema_to_json(v));
        }
        ConnectKind::Struct(fields) => {
            let fields = fields
                .iter()
                .map(|f| {
                    let mut field = schema_to_json(&f.schema);
                    if let Some(o) = field.as_object_mut() {
                        o.insert("field".into(), Json::String(f.name.to_string()));
                    }
                    field
                })
                .collect();
            obj.insert("fields".into(), Json::Array(fields));
        }
        // Connect has no unions; write the first non-null branch's type.
        ConnectKind::Union(branches) => {
            return branches.iter().find(|b| b.kind != ConnectKind::Null).map(schema_to_json).unwrap_or(Json::Null);
        }
        _ => {}
    }
    // Connect has no null type either.
    let type_name = if schema.kind == ConnectKind::Null { "string" } else { schema.kind.name() };
    obj.insert("type".into(), Json::String(type_name.into()));
    obj.insert("optional".into(), Json::Bool(schema.optional));
    if let Some(name) = &schema.name {
        obj.insert("name".into(), Json::String(name.clone()));
    }
    if !schema.parameters.is_empty() {
        obj.insert("parameters".into(), serde_json::to_value(&schema.parameters).unwrap_or(Json::Null));
    }
    Json::Object(obj)
}

/// The Connect JSON payload form of a value under `schema`.
pub fn to_payload(value: &Value, schema: &ConnectSchema) -> Result<Json, CodecError> {
    let b64 = |b: &[u8]| Json::String(base64::engine::general_purpose::STANDARD.encode(b));
    Ok(match (value, &schema.kind) {
        (Value::Null, _) => Json::Null,
        (Value::Unavailable, ConnectKind::Bytes) => b64(crate::record::UNAVAILABLE_TEXT.as_bytes()),
        (Value::Unavailable, _) => Json::String(crate::record::UNAVAILABLE_TEXT.into()),
        (Value::Decimal(d), ConnectKind::Struct(_)) => {
            serde_json::json!({"scale": d.scale, "value": b64(&d.to_be_bytes())})
        }
        (Value::Decimal(d), ConnectKind::Bytes) => match schema.logical {
            Logical::Decimal { scale } => b64(&unscaled_at(d, scale)
                .ok_or_else(|| {
                    CodecError::new(CodecErrorKind::InvalidValue(format!("{d} does not fit scale {scale}")))
                })?
                .to_signed_bytes_be()),
            _ => b64(&d.to_be_bytes()),
        },
        (Value::Decimal(d), ConnectKind::Float64 | ConnectKind::Float32) => Json::from(d.to_f64()),
        (Value::Decimal(d), ConnectKind::String) => Json::String(d.to_string()),
        (Value::Bytes(b), _) => b64(b),
        (Value::Date(d), _) => Json::from(*d),
        (Value::Timestamp { .. }, ConnectKind::String) => value.to_json(),
        (Value::Time { value, unit } | Value::Timestamp { value, unit } | Value::LocalTimestamp { value, unit }, _) => {
            Json::from(count_in(*value, *unit, schema.logical)?)
        }
        (Value::Struct(row), ConnectKind::Struct(fields)) => {
            let mut obj = serde_json::Map::with_capacity(fields.len());
            for f in fields {
                let v = row.get(&f.name).unwrap_or(&Value::Null);
                obj.insert(f.name.to_string(), to_payload(v, &f.schema).map_err(|e| e.in_field(&f.name))?);
            }
            Json::Object(obj)
        }
        (Value::Array(items), ConnectKind::Array(item_schema)) => {
            Json::Array(items.iter().map(|v| to_payload(v, item_schema)).collect::<Result<_, _>>()?)
        }
        (Value::Map(entries), ConnectKind::Map(_, value_schema)) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_payload(v, value_schema)?)))
                .collect::<Result<_, CodecError>>()?,
        ),
        (Value::Struct(_) | Value::Array(_) | Value::Map(_), _) => {
            return Err(wrong_type(format!("{:?}", schema.kind), value.type_name()));
        }
        (other, _) => other.to_json(),
    })
}

/// Rows decoded from plain JSON objects, for convenience in tests and tools.
pub fn row_of(value: Value) -> Option<Row> {
    match value {
        Value::Struct(row) => Some(row),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use crate::record::{Decimal, TimeUnit};

    #[test]
    fn a_record_whose_own_schema_is_unusable_or_huge_is_bad_data() {
        let decoder = JsonSchemaDecoder::new();
        let unknown = br#"{"schema": {"type": "decimal128"}, "payload": 1}"#;
        let error = decoder.decode(unknown).unwrap_err();
        assert!(matches!(error.kind, CodecErrorKind::RecordSchema(_)), "{error}");
        assert_eq!(error.kind.class(), ErrorClass::Data, "on_error applies: {error}");
        let name = "x".repeat(MAX_RECORD_SCHEMA_BYTES);
        let huge = format!(r#"{{"schema": {{"type": "string", "name": "{name}"}}, "payload": "a"}}"#);
        let error = decoder.decode(huge.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("limit"), "{}", &error.to_string()[..200]);
        assert_eq!(decoder.cache.read().unwrap().1, 0, "nothing cached");
    }

    #[test]
    fn parse_classifies_invalid_utf8_and_syntax() {
        assert_eq!(parse(&[0xff, 0xfe]).unwrap_err().kind, CodecErrorKind::InvalidUtf8);
        assert!(matches!(parse(b"{\"a\":").unwrap_err().kind, CodecErrorKind::InvalidJson(_)));
    }

    #[test]
    fn decoding_plain_json_types_values_as_infer_does() {
        let many: Vec<String> = (0..40).map(|i| format!("\"f{}\":{i}", i % 25)).collect();
        let documents = [
            r#"{"a":1,"b":-2.5,"c":"x","d":null,"e":true,"f":[1,"y",{"g":[]}],"h":{}}"#.to_owned(),
            r#"{"big":18446744073709551615,"max":9223372036854775807,"exp":1e300,"tiny":-0.0}"#.to_owned(),
            r#"{"k":1,"j":2,"k":3}"#.to_owned(),
            format!("{{{}}}", many.join(",")),
            format!(r#"{{"u":"{}","s":"é\n\u0041"}}"#, crate::record::UNAVAILABLE_TEXT),
            r#"[1,[2,[3]]]"#.to_owned(),
            r#""plain""#.to_owned(),
        ];
        for text in documents {
            let direct = decode_plain(text.as_bytes());
            let via_tree = parse(text.as_bytes()).map(|json| infer(&json)).unwrap();
            assert_eq!(direct.unwrap(), via_tree, "{text}");
        }
        assert_eq!(decode_plain(&[0xff]).unwrap_err().kind, CodecErrorKind::InvalidUtf8);
        assert!(matches!(decode_plain(b"{\"a\":").unwrap_err().kind, CodecErrorKind::InvalidJson(_)));
    }

    #[test]
    fn schema_envelope_round_trips_through_encode_with_schema() {
        let text = br#"{"schema":{"type":"struct","optional":false,"fields":[
            {"field":"id","type":"int64","optional":false},
            {"field":"price","type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}},
            {"field":"day","type":"int32","optional":true,"name":"io.debezium.time.Date"},
            {"field":"at","type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp"},
            {"field":"seen","type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp"}]},
            "payload":{"id":7,"price":"AeI6","day":19737,"at":"2024-01-15T08:30:00.123456Z","seen":1705307400123456}}"#;
        let decoder = JsonSchemaDecoder::new();
        let (schema, value) = decoder.decode(text).unwrap();
        let row = value.as_row().unwrap();
        assert_eq!(row.get("price"), Some(&Value::Decimal(Decimal::new(123450, 2))));
        assert_eq!(row.get("day"), Some(&Value::Date(19737)));
        assert_eq!(row.get("at"), Some(&Value::Timestamp { value: 1_705_307_400_123_456, unit: TimeUnit::Micros }));
        assert_eq!(
            row.get("seen"),
            Some(&Value::LocalTimestamp { value: 1_705_307_400_123_456, unit: TimeUnit::Micros })
        );
        let encoded = encode_with_schema(&schema, &value).unwrap();
        let (_, again) = decoder.decode(&encoded).unwrap();
        assert_eq!(again, value);
    }

    #[test]
    fn encode_with_schema_converts_time_units_to_the_schema_unit() {
        let schema = ConnectSchema::from_connect_json(&serde_json::json!(
            {"type": "int64", "name": "io.debezium.time.MicroTimestamp"}
        ))
        .unwrap();
        let millis = Value::LocalTimestamp { value: 1_705_307_400_123, unit: TimeUnit::Millis };
        assert_eq!(to_payload(&millis, &schema).unwrap(), serde_json::json!(1_705_307_400_123_000i64));
        let nanos = Value::LocalTimestamp { value: 1, unit: TimeUnit::Nanos };
        assert!(to_payload(&nanos, &schema).is_err(), "nanoseconds do not fit microseconds exactly");
    }

    #[test]
    fn schema_envelope_names_the_failing_field() {
        let text = br#"{"schema":{"type":"struct","fields":[{"field":"n","type":"int32","optional":false}]},"payload":{"n":"x"}}"#;
        let err = JsonSchemaDecoder::new().decode(text).unwrap_err();
        assert_eq!(err.path, vec!["payload".to_string(), "n".to_string()]);
        assert!(err.to_string().contains("field `payload.n`"), "{err}");
    }
}
