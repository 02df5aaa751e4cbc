//! Avro in the Confluent wire format, with schemas from a Schema Registry.
//!
//! Wire format: byte 0 is the magic byte `0`, bytes 1..5 the big-endian schema id, the rest the
//! Avro binary body written with that schema. [`AvroCodec`] fetches writer schemas by id through
//! `schema_registry_converter`'s REST calls, with the schemas they reference (inlined by
//! [`super::avro_references`]), maps each one
//! once onto a [`ConnectSchema`] (to keep `connect.name` semantics such as Debezium's
//! `MicroTimestamp`) and caches that too, so the hot path is: split header → cache hit → decode
//! body → convert.
//!
//! Encoding goes the other way, guided by the writer schema: [`to_avro`] picks union branches,
//! rescales decimals to the schema's scale (refusing lossy rescaling) and writes times in the
//! schema's unit.

use super::connect::{ConnectKind, ConnectSchema};
use super::error::{CodecError, CodecErrorKind, wrong_type};
use crate::record::{Decimal, Row, TimeUnit, Value};
use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value as AvroValue;
use num_bigint::BigInt;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_referenced_schema, get_schema_by_id};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RegisteredReference, SchemaType};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The Confluent wire format's magic byte.
pub const MAGIC_BYTE: u8 = 0;

/// Splits a Confluent-framed payload into schema id and Avro body.
pub fn split_wire(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match bytes {
        [] => Err(CodecErrorKind::WireFormat("empty payload".into()).into()),
        [magic, ..] if *magic != MAGIC_BYTE => {
            Err(CodecErrorKind::WireFormat(format!("magic byte is {magic:#04x}, expected 0x00")).into())
        }
        [_, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        short => {
            Err(CodecErrorKind::WireFormat(format!("{} bytes is too short for the 5-byte header", short.len())).into())
        }
    }
}

/// Prefixes an Avro body with the wire-format header.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A writer schema ready for decoding and encoding.
#[derive(Debug)]
pub struct AvroSchema {
    /// Registry id (0 when not registered).
    pub id: u32,
    /// The schema text.
    pub raw: String,
    /// The parsed Avro schema.
    pub avro: Schema,
    /// The same schema as Connect types (for semantic names).
    pub connect: Arc<ConnectSchema>,
    names: HashMap<Name, Schema>,
}

impl AvroSchema {
    /// Parses schema text.
    pub fn parse(id: u32, raw: &str) -> Result<Self, CodecError> {
        let unsupported = |e: String| CodecError::new(CodecErrorKind::UnsupportedSchema(e));
        let avro = Schema::parse_str(raw).map_err(|e| unsupported(format!("schema id {id}: {e}")))?;
        let json: serde_json::Value = serde_json::from_str(raw).map_err(|e| unsupported(e.to_string()))?;
        let connect = Arc::new(ConnectSchema::from_avro_json(&json)?);
        let names = ResolvedSchema::try_from(&avro)
            .map_err(|e| unsupported(e.to_string()))?
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        Ok(AvroSchema { id, raw: raw.to_owned(), avro, connect, names })
    }

    /// The same schema under a registry id (no second parse).
    pub fn with_id(&self, id: u32) -> AvroSchema {
        AvroSchema {
            id,
            raw: self.raw.clone(),
            avro: self.avro.clone(),
            connect: self.connect.clone(),
            names: self.names.clone(),
        }
    }

    /// Decodes an Avro body (no header) written with this schema.
    pub fn decode_body(&self, body: &[u8]) -> Result<Value, CodecError> {
        limit_allocations();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&self.avro)
            .build()
            .map_err(|e| CodecError::new(CodecErrorKind::Avro(e.to_string())))?;
        let mut input = EofGuard { rest: body, hit_eof: false };
        let avro = reader.read_value(&mut input).map_err(|e| CodecError::new(CodecErrorKind::Avro(e.to_string())))?;
        if input.hit_eof {
            // apache_avro reads a string cut short as null instead of failing; catch it here.
            return Err(CodecErrorKind::Avro(format!("body of {} bytes is truncated", body.len())).into());
        }
        if !input.rest.is_empty() {
            return Err(CodecErrorKind::Avro(format!("{} bytes left after the value", input.rest.len())).into());
        }
        from_avro(avro, &self.connect)
    }

    /// The Avro value for `value` under this schema (union branches chosen, decimals rescaled,
    /// times in the schema's unit).
    pub fn to_avro_value(&self, value: &Value) -> Result<AvroValue, CodecError> {
        to_avro(value, &self.avro, &self.names, Some(&self.connect))
    }

    /// Encodes a value with this schema (no header).
    pub fn encode_body(&self, value: &Value) -> Result<Vec<u8>, CodecError> {
        let avro = self.to_avro_value(value)?;
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&self.avro)
            .build()
            .map_err(|e| CodecError::new(CodecErrorKind::Avro(e.to_string())))?;
        writer.write_value_to_vec(avro).map_err(|e| CodecError::new(CodecErrorKind::Avro(e.to_string())))
    }

    /// Encodes a value in the wire format under this schema's id.
    pub fn encode(&self, value: &Value) -> Result<Vec<u8>, CodecError> {
        Ok(frame(self.id, &self.encode_body(value)?))
    }
}

/// The most one Avro string, bytes, array or map of a record may claim. apache-avro allocates
/// what a length prefix claims before it reads the bytes (up to 512 MiB by default), so ten
/// bytes of hostile input could cost half a GiB; past this limit the record is refused as bad
/// data instead. Real records are far smaller (Kafka's default record limit is 1 MB).
pub const MAX_AVRO_ALLOCATION: usize = 128 << 20;

/// Sets apache-avro's allocation limit to [`MAX_AVRO_ALLOCATION`] (once per process; first
/// setter wins, so it runs before the first decode).
fn limit_allocations() {
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
}

/// A reader over a byte slice that remembers whether anyone read past its end.
struct EofGuard<'a> {
    rest: &'a [u8],
    hit_eof: bool,
}

impl std::io::Read for EofGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.rest.is_empty() && !buf.is_empty() {
            self.hit_eof = true;
        }
        self.rest.read(buf)
    }
}

/// Decoder for Confluent-framed Avro: writer schemas by id from a registry, cached. An id the
/// registry does not know is remembered for [`UNKNOWN_ID_TTL`], so a burst of records that name
/// it does not become a burst of registry requests.
pub struct AvroCodec {
    registry: Option<SrSettings>,
    cache: RwLock<HashMap<u32, Arc<AvroSchema>>>,
    unknown: RwLock<HashMap<u32, std::time::Instant>>,
}

/// At most this many unknown schema ids are remembered at once.
pub const MAX_UNKNOWN_IDS: usize = 10_000;

/// How long the registry's "no such schema id" is believed before asking again.
pub const UNKNOWN_ID_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec").field("registry", &self.registry.is_some()).finish()
    }
}

impl AvroCodec {
    /// A codec that fetches unknown schema ids from the registry.
    pub fn with_registry(settings: SrSettings) -> Self {
        AvroCodec { registry: Some(settings), cache: RwLock::default(), unknown: RwLock::default() }
    }

    /// A codec with only the schemas added by [`AvroCodec::add_schema`] (offline decoding).
    pub fn offline() -> Self {
        AvroCodec { registry: None, cache: RwLock::default(), unknown: RwLock::default() }
    }

    /// Makes a schema known under an id without asking a registry.
    pub fn add_schema(&self, schema: AvroSchema) -> Arc<AvroSchema> {
        let schema = Arc::new(schema);
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(schema.id, schema.clone());
        }
        schema
    }

    /// Whether decoding a record with schema `id` needs no registry call: the schema is cached,
    /// or the registry said lately that it has no such id.
    pub fn knows(&self, id: u32) -> bool {
        self.cache.read().is_ok_and(|c| c.contains_key(&id))
            || self.unknown.read().is_ok_and(|u| u.get(&id).is_some_and(|since| since.elapsed() < UNKNOWN_ID_TTL))
    }

    /// The writer schema for an id (cache, then registry).
    pub async fn schema(&self, id: u32) -> Result<Arc<AvroSchema>, CodecError> {
        if let Some(hit) = self.cache.read().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(hit);
        }
        let registry = self.registry.as_ref().ok_or(CodecError::new(CodecErrorKind::UnknownSchemaId(id)))?;
        let known_unknown = self.unknown.read().ok().and_then(|u| u.get(&id).copied());
        if known_unknown.is_some_and(|since| since.elapsed() < UNKNOWN_ID_TTL) {
            return Err(CodecErrorKind::UnknownSchemaId(id).into());
        }
        let raw = match fetch_with_references(registry, id).await {
            Ok(raw) => raw,
            Err(error) => {
                if matches!(error.kind, CodecErrorKind::UnknownSchemaId(_)) {
                    self.remember_unknown(id);
                }
                return Err(error);
            }
        };
        Ok(self.add_schema(AvroSchema::parse(id, &raw)?))
    }

    /// Remembers that the registry has no schema `id`. Hostile input can name any of 2³² ids:
    /// past [`MAX_UNKNOWN_IDS`] the expired entries go, and if all are recent, all of them (a few
    /// more registry requests, never unbounded memory).
    fn remember_unknown(&self, id: u32) {
        let Ok(mut unknown) = self.unknown.write() else { return };
        if unknown.len() >= MAX_UNKNOWN_IDS {
            unknown.retain(|_, since| since.elapsed() < UNKNOWN_ID_TTL);
            if unknown.len() >= MAX_UNKNOWN_IDS {
                unknown.clear();
            }
        }
        unknown.insert(id, std::time::Instant::now());
    }

    /// Decodes a wire-format payload.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Value, CodecError> {
        let (id, body) = split_wire(bytes)?;
        self.schema(id).await?.decode_body(body)
    }

    /// Decodes a wire-format payload using only cached schemas (no await; for hot loops that
    /// warmed the cache with [`AvroCodec::schema`]).
    pub fn decode_cached(&self, bytes: &[u8]) -> Result<Value, CodecError> {
        self.decode_cached_with_schema(bytes).map(|(_, value)| value)
    }

    /// Like [`AvroCodec::decode_cached`], also returning the writer schema.
    pub fn decode_cached_with_schema(&self, bytes: &[u8]) -> Result<(Arc<AvroSchema>, Value), CodecError> {
        let (id, body) = split_wire(bytes)?;
        let schema = self.cache.read().ok().and_then(|c| c.get(&id).cloned());
        let schema = schema.ok_or(CodecError::new(CodecErrorKind::UnknownSchemaId(id)))?;
        let value = schema.decode_body(body)?;
        Ok((schema, value))
    }
}

/// Schema `id`'s text with every type it references (through the registry's `references`, to
/// any depth) inlined.
async fn fetch_with_references(registry: &SrSettings, id: u32) -> Result<String, CodecError> {
    let registered = get_schema_by_id(id, registry).await.map_err(|e| registry_error(id, &e))?;
    if registered.schema_type != SchemaType::Avro {
        let detail = format!("schema id {id} is {:?}, not AVRO", registered.schema_type);
        return Err(CodecErrorKind::Registry { detail, retryable: false }.into());
    }
    if registered.references.is_empty() {
        return Ok(registered.schema);
    }
    let invalid =
        |detail: String| CodecError::new(CodecErrorKind::UnsupportedSchema(format!("schema id {id}: {detail}")));
    let mut definitions = super::avro_references::Definitions::default();
    let mut pending: Vec<RegisteredReference> = registered.references;
    while let Some(reference) = pending.pop() {
        if !definitions.follow(&reference.subject, i64::from(reference.version)) {
            continue;
        }
        let child = get_referenced_schema(registry, &reference).await.map_err(|e| {
            let detail = format!(
                "schema id {id} references `{}` as subject {} version {}, which the registry did not give: {}",
                reference.name, reference.subject, reference.version, e.error
            );
            match &registry_error(id, &e).kind {
                // Gone from the registry: records written with this schema cannot be read.
                CodecErrorKind::UnknownSchemaId(_) => CodecError::new(CodecErrorKind::RecordSchema(detail)),
                CodecErrorKind::Registry { retryable, .. } => {
                    CodecError::new(CodecErrorKind::Registry { detail, retryable: *retryable })
                }
                _ => CodecError::new(CodecErrorKind::Registry { detail, retryable: false }),
            }
        })?;
        definitions.add(&reference.name, &child.schema).map_err(invalid)?;
        pending.extend(child.references);
    }
    definitions.inline_text(&registered.schema).map_err(invalid)
}

fn registry_error(id: u32, e: &SRCError) -> CodecError {
    let detail = match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    };
    if detail.contains("status 404") || detail.contains("40403") {
        return CodecErrorKind::UnknownSchemaId(id).into();
    }
    // A refused connection, a timeout or a 5xx answer may pass; anything else (a 4xx, a schema
    // of another type or one that does not parse) is the registry's last word.
    let retryable = e.retriable || detail.contains("with status 5");
    CodecErrorKind::Registry { detail, retryable }.into()
}

/// The Avro schema Confluent's `AvroConverter` (`AvroData`) writes for a Kafka Connect schema:
/// optional types become `["null", T]` unions with a `null` default, semantic types keep
/// `connect.name` / `connect.parameters` (plus an Avro `logicalType` where Connect defines one:
/// decimal, date, time-millis, timestamp-millis), `int8`/`int16` become `int` with
/// `connect.type`, and a record name met a second time is written as a reference.
pub fn avro_schema_from_connect(schema: &ConnectSchema) -> serde_json::Value {
    let mut defined = std::collections::HashSet::new();
    let avro = connect_to_avro(schema, &mut defined);
    // A top-level schema is never a union; optionality belongs to the field that holds it.
    match avro {
        serde_json::Value::Array(mut union) if union.len() == 2 => union.remove(1),
        other => other,
    }
}

fn connect_to_avro(schema: &ConnectSchema, defined: &mut std::collections::HashSet<String>) -> serde_json::Value {
    use serde_json::json;
    let mut avro = match &schema.kind {
        ConnectKind::Struct(fields) => {
            let name = schema.name.clone().unwrap_or_else(|| "ConnectDefault".into());
            if !defined.insert(name.clone()) {
                return optional(json!(name), schema.optional);
            }
            let fields: Vec<serde_json::Value> = fields
                .iter()
                .map(|f| {
                    let mut field = json!({"name": &*f.name, "type": connect_to_avro(&f.schema, defined)});
                    if f.schema.optional {
                        field["default"] = serde_json::Value::Null;
                    }
                    field
                })
                .collect();
            json!({"type": "record", "name": name, "fields": fields})
        }
        ConnectKind::Array(items) => json!({"type": "array", "items": connect_to_avro(items, defined)}),
        ConnectKind::Map(keys, values) if keys.kind == ConnectKind::String => {
            json!({"type": "map", "values": connect_to_avro(values, defined)})
        }
        ConnectKind::Map(keys, values) => {
            let entry = json!({"type": "record", "name": "MapEntry", "namespace": "io.confluent.connect.avro",
                "fields": [{"name": "key", "type": connect_to_avro(keys, defined)}, {"name": "value", "type": connect_to_avro(values, defined)}]});
            json!({"type": "array", "items": entry})
        }
        ConnectKind::Union(branches) => {
            return serde_json::Value::Array(branches.iter().map(|b| connect_to_avro(b, defined)).collect());
        }
        kind => {
            let (primitive, connect_type) = match kind {
                ConnectKind::Int8 => ("int", Some("int8")),
                ConnectKind::Int16 => ("int", Some("int16")),
                ConnectKind::Int32 => ("int", None),
                ConnectKind::Int64 => ("long", None),
                ConnectKind::Float32 => ("float", None),
                ConnectKind::Float64 => ("double", None),
                ConnectKind::Boolean => ("boolean", None),
                ConnectKind::Bytes => ("bytes", None),
                ConnectKind::Null => ("null", None),
                _ => ("string", None),
            };
            let mut out = json!({"type": primitive});
            if let Some(t) = connect_type {
                out["connect.type"] = json!(t);
            }
            out
        }
    };
    if let (Some(name), Some(obj)) = (&schema.name, avro.as_object_mut()) {
        obj.insert("connect.name".into(), json!(name));
        if !schema.parameters.is_empty() {
            obj.insert("connect.parameters".into(), json!(schema.parameters));
        }
        let logical_type = match (name.as_str(), schema.logical) {
            (_, super::connect::Logical::Decimal { scale }) => {
                obj.insert("scale".into(), json!(scale));
                let precision: u32 =
                    schema.parameters.get("connect.decimal.precision").and_then(|p| p.parse().ok()).unwrap_or(64);
                obj.insert("precision".into(), json!(precision));
                Some("decimal")
            }
            ("org.apache.kafka.connect.data.Date", _) => Some("date"),
            ("org.apache.kafka.connect.data.Time", _) => Some("time-millis"),
            ("org.apache.kafka.connect.data.Timestamp", _) => Some("timestamp-millis"),
            _ => None,
        };
        if let Some(lt) = logical_type {
            obj.insert("logicalType".into(), json!(lt));
        }
    }
    optional(avro, schema.optional)
}

fn optional(avro: serde_json::Value, optional: bool) -> serde_json::Value {
    if optional { serde_json::json!(["null", avro]) } else { avro }
}

/// Converts a decoded Avro value, guided by the Connect view of its schema.
pub fn from_avro(value: AvroValue, schema: &ConnectSchema) -> Result<Value, CodecError> {
    let raw = match value {
        AvroValue::Null => return Ok(Value::Null),
        AvroValue::Union(index, inner) => {
            return match &schema.kind {
                ConnectKind::Union(branches) => match branches.get(index as usize) {
                    Some(branch) => from_avro(*inner, branch),
                    None => Err(CodecErrorKind::Avro(format!("union branch {index} out of range")).into()),
                },
                _ => from_avro(*inner, schema),
            };
        }
        AvroValue::Boolean(b) => Value::Bool(b),
        AvroValue::Int(v) => Value::Int(v),
        AvroValue::Long(v) => Value::Long(v),
        AvroValue::Float(v) => Value::Float(v),
        AvroValue::Double(v) => Value::Double(v),
        AvroValue::Bytes(b) | AvroValue::Fixed(_, b) => Value::Bytes(b),
        AvroValue::String(s) | AvroValue::Enum(_, s) => Value::String(s),
        AvroValue::Array(items) => {
            let item_schema = match &schema.kind {
                ConnectKind::Array(s) => s.as_ref(),
                _ => return Err(wrong_type("array schema", format!("{:?}", schema.kind))),
            };
            Value::Array(items.into_iter().map(|v| from_avro(v, item_schema)).collect::<Result<_, _>>()?)
        }
        AvroValue::Map(entries) => {
            let value_schema = match &schema.kind {
                ConnectKind::Map(_, v) => v.as_ref(),
                _ => return Err(wrong_type("map schema", format!("{:?}", schema.kind))),
            };
            let mut out: Vec<(String, Value)> = entries
                .into_iter()
                .map(|(k, v)| Ok((k.clone(), from_avro(v, value_schema).map_err(|e| e.in_field(&k))?)))
                .collect::<Result<_, CodecError>>()?;
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(out)
        }
        AvroValue::Record(fields) => {
            let field_schemas =
                schema.fields().ok_or_else(|| wrong_type("record schema", format!("{:?}", schema.kind)))?;
            let mut row = Row::with_capacity(fields.len());
            for ((name, v), field) in fields.into_iter().zip(field_schemas) {
                let converted = from_avro(v, &field.schema).map_err(|e| e.in_field(&name))?;
                row.push(field.name.clone(), converted);
            }
            Value::Struct(row)
        }
        AvroValue::Date(d) => Value::Date(d),
        AvroValue::Decimal(d) => Value::Decimal(Decimal::new(BigInt::from(d), 0)),
        AvroValue::BigDecimal(d) => match Decimal::parse(&d.to_string()) {
            Some(parsed) => Value::Decimal(parsed),
            None => return Err(CodecErrorKind::InvalidValue(format!("big-decimal {d}")).into()),
        },
        AvroValue::TimeMillis(t) => Value::Time { value: i64::from(t), unit: TimeUnit::Millis },
        AvroValue::TimeMicros(t) => Value::Time { value: t, unit: TimeUnit::Micros },
        AvroValue::TimestampMillis(t) => Value::Timestamp { value: t, unit: TimeUnit::Millis },
        AvroValue::TimestampMicros(t) => Value::Timestamp { value: t, unit: TimeUnit::Micros },
        AvroValue::TimestampNanos(t) => Value::Timestamp { value: t, unit: TimeUnit::Nanos },
        AvroValue::LocalTimestampMillis(t) => Value::LocalTimestamp { value: t, unit: TimeUnit::Millis },
        AvroValue::LocalTimestampMicros(t) => Value::LocalTimestamp { value: t, unit: TimeUnit::Micros },
        AvroValue::LocalTimestampNanos(t) => Value::LocalTimestamp { value: t, unit: TimeUnit::Nanos },
        AvroValue::Uuid(u) => Value::Uuid(u),
        AvroValue::Duration(d) => Value::Bytes(<[u8; 12]>::from(d).to_vec()),
    };
    schema.logical.apply(raw)
}

fn resolve<'a>(schema: &'a Schema, names: &'a HashMap<Name, Schema>) -> Result<&'a Schema, CodecError> {
    match schema {
        Schema::Ref { name } => names
            .get(name)
            .ok_or_else(|| CodecErrorKind::UnsupportedSchema(format!("unresolved reference {name}")).into()),
        other => Ok(other),
    }
}

fn in_unit(value: i64, from: TimeUnit, to: TimeUnit) -> Result<i64, CodecError> {
    from.convert(value, to).ok_or_else(|| {
        CodecErrorKind::InvalidValue(format!("{value} {from:?} cannot be written as {to:?} without losing precision"))
            .into()
    })
}

/// Converts a value into an Avro value for `schema` (see the module docs). `connect` is the
/// Connect view of the same schema, walked in parallel: it supplies what plain Avro types do not
/// say (the unit of a `long` that Debezium marks `MicroTimestamp`, a decimal's scale).
fn to_avro(
    value: &Value,
    schema: &Schema,
    names: &HashMap<Name, Schema>,
    connect: Option<&ConnectSchema>,
) -> Result<AvroValue, CodecError> {
    use Value as V;
    let schema = resolve(schema, names)?;
    let logical = connect.map_or(super::connect::Logical::None, |c| c.logical);
    let mismatch = || wrong_type(schema_label(schema), value.type_name());
    Ok(match (schema, value) {
        (Schema::Union(union), v) => {
            let variants = union.variants();
            if matches!(v, V::Null) {
                let index = variants.iter().position(|s| matches!(s, Schema::Null)).ok_or_else(mismatch)?;
                return Ok(AvroValue::Union(index as u32, Box::new(AvroValue::Null)));
            }
            for (index, variant) in variants.iter().enumerate() {
                if matches!(variant, Schema::Null) {
                    continue;
                }
                let branch = match connect.map(|c| &c.kind) {
                    Some(ConnectKind::Union(branches)) => branches.get(index),
                    _ => connect,
                };
                if let Ok(converted) = to_avro(v, variant, names, branch) {
                    return Ok(AvroValue::Union(index as u32, Box::new(converted)));
                }
            }
            return Err(mismatch());
        }
        (Schema::Null, V::Null) => AvroValue::Null,
        (Schema::Boolean, V::Bool(b)) => AvroValue::Boolean(*b),
        (Schema::Int, V::Int(i)) => AvroValue::Int(*i),
        (Schema::Int, V::Long(i)) => AvroValue::Int(i32::try_from(*i).map_err(|_| mismatch())?),
        (Schema::Int, V::Date(d)) => AvroValue::Int(*d),
        // A plain `int` holds only a millisecond time of day (Kafka Connect `Time`).
        (Schema::Int, V::Time { value, unit }) => {
            AvroValue::Int(i32::try_from(in_unit(*value, *unit, TimeUnit::Millis)?).map_err(|_| mismatch())?)
        }
        (Schema::Long, V::Long(i)) => AvroValue::Long(*i),
        (Schema::Long, V::Int(i)) => AvroValue::Long(i64::from(*i)),
        (Schema::Long, V::Time { value, unit } | V::Timestamp { value, unit } | V::LocalTimestamp { value, unit }) => {
            AvroValue::Long(super::connect::count_in(*value, *unit, logical)?)
        }
        (Schema::Float, V::Float(f)) => AvroValue::Float(*f),
        (Schema::Double, V::Double(f)) => AvroValue::Double(*f),
        (Schema::Double, V::Float(f)) => AvroValue::Double(f64::from(*f)),
        (Schema::Double, V::Int(i)) => AvroValue::Double(f64::from(*i)),
        (Schema::Double, V::Long(i)) => AvroValue::Double(*i as f64),
        (Schema::Double, V::Decimal(d)) => AvroValue::Double(d.to_f64()),
        (Schema::String, V::Unavailable) => AvroValue::String(crate::record::UNAVAILABLE_TEXT.into()),
        (Schema::Bytes, V::Unavailable) => AvroValue::Bytes(crate::record::UNAVAILABLE_TEXT.as_bytes().to_vec()),
        (Schema::String, V::String(s) | V::Json(s)) => AvroValue::String(s.clone()),
        (Schema::String, V::Uuid(_) | V::Decimal(_) | V::Timestamp { .. }) => {
            AvroValue::String(value.to_json().as_str().unwrap_or_default().to_owned())
        }
        (Schema::Bytes, V::Bytes(b)) => AvroValue::Bytes(b.clone()),
        (Schema::Bytes, V::Decimal(d)) => match logical {
            super::connect::Logical::Decimal { scale } => AvroValue::Bytes(
                super::connect::unscaled_at(d, scale)
                    .ok_or_else(|| {
                        CodecError::new(CodecErrorKind::InvalidValue(format!("{d} does not fit scale {scale}")))
                    })?
                    .to_signed_bytes_be(),
            ),
            _ => AvroValue::Bytes(d.to_be_bytes()),
        },
        (Schema::Fixed(f), V::Bytes(b)) if b.len() == f.size => AvroValue::Fixed(f.size, b.clone()),
        (Schema::Enum(e), V::String(s)) => {
            let index = e.symbols.iter().position(|sym| sym == s).ok_or_else(|| {
                CodecError::new(CodecErrorKind::InvalidValue(format!("`{s}` is not a symbol of enum {}", e.name)))
            })?;
            AvroValue::Enum(index as u32, s.clone())
        }
        (Schema::Decimal(d), V::Decimal(v)) => {
            let scale = d.scale as u32;
            let rescaled = v.rescale(scale).ok_or_else(|| {
                CodecError::new(CodecErrorKind::InvalidValue(format!("{v} does not fit the schema's scale {scale}")))
            })?;
            let bytes = rescaled.to_be_bytes();
            match &d.inner {
                apache_avro::schema::InnerDecimalSchema::Fixed(fixed) => {
                    if bytes.len() > fixed.size {
                        return Err(
                            CodecErrorKind::InvalidValue(format!("{v} does not fit in {} bytes", fixed.size)).into()
                        );
                    }
                    let sign = if rescaled.unscaled.sign() == num_bigint::Sign::Minus { 0xff } else { 0 };
                    let mut padded = vec![sign; fixed.size - bytes.len()];
                    padded.extend_from_slice(&bytes);
                    AvroValue::Decimal(apache_avro::Decimal::from(padded))
                }
                _ => AvroValue::Decimal(apache_avro::Decimal::from(bytes)),
            }
        }
        (Schema::Uuid(_), V::Uuid(u)) => AvroValue::Uuid(*u),
        (Schema::Uuid(_), V::String(s)) => AvroValue::Uuid(uuid::Uuid::parse_str(s).map_err(|_| mismatch())?),
        (Schema::Date, V::Date(d)) => AvroValue::Date(*d),
        (Schema::TimeMillis, V::Time { value, unit }) => {
            AvroValue::TimeMillis(i32::try_from(in_unit(*value, *unit, TimeUnit::Millis)?).map_err(|_| mismatch())?)
        }
        (Schema::TimeMicros, V::Time { value, unit }) => {
            AvroValue::TimeMicros(in_unit(*value, *unit, TimeUnit::Micros)?)
        }
        // Kafka Connect writes its zone-less Timestamp as Avro `timestamp-*`.
        (Schema::TimestampMillis, V::Timestamp { value, unit } | V::LocalTimestamp { value, unit }) => {
            AvroValue::TimestampMillis(in_unit(*value, *unit, TimeUnit::Millis)?)
        }
        (Schema::TimestampMicros, V::Timestamp { value, unit } | V::LocalTimestamp { value, unit }) => {
            AvroValue::TimestampMicros(in_unit(*value, *unit, TimeUnit::Micros)?)
        }
        (Schema::TimestampNanos, V::Timestamp { value, unit } | V::LocalTimestamp { value, unit }) => {
            AvroValue::TimestampNanos(in_unit(*value, *unit, TimeUnit::Nanos)?)
        }
        (Schema::LocalTimestampMillis, V::LocalTimestamp { value, unit }) => {
            AvroValue::LocalTimestampMillis(in_unit(*value, *unit, TimeUnit::Millis)?)
        }
        (Schema::LocalTimestampMicros, V::LocalTimestamp { value, unit }) => {
            AvroValue::LocalTimestampMicros(in_unit(*value, *unit, TimeUnit::Micros)?)
        }
        (Schema::LocalTimestampNanos, V::LocalTimestamp { value, unit }) => {
            AvroValue::LocalTimestampNanos(in_unit(*value, *unit, TimeUnit::Nanos)?)
        }
        (Schema::Array(array), V::Array(items)) => AvroValue::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let items = match connect.map(|c| &c.kind) {
                        Some(ConnectKind::Array(items)) => Some(items.as_ref()),
                        _ => None,
                    };
                    to_avro(v, &array.items, names, items).map_err(|e| e.in_field(&format!("[{i}]")))
                })
                .collect::<Result<_, _>>()?,
        ),
        (Schema::Map(map), V::Map(entries)) => AvroValue::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    let values = match connect.map(|c| &c.kind) {
                        Some(ConnectKind::Map(_, values)) => Some(values.as_ref()),
                        _ => None,
                    };
                    Ok((k.clone(), to_avro(v, &map.types, names, values).map_err(|e| e.in_field(k))?))
                })
                .collect::<Result<_, CodecError>>()?,
        ),
        // Debezium's VariableScaleDecimal is a {scale, value} record.
        (Schema::Record(record), V::Decimal(d))
            if record.fields.iter().map(|f| f.name.as_str()).eq(["scale", "value"]) =>
        {
            let scale = i32::try_from(d.scale).map_err(|_| mismatch())?;
            AvroValue::Record(vec![
                ("scale".into(), AvroValue::Int(scale)),
                ("value".into(), AvroValue::Bytes(d.to_be_bytes())),
            ])
        }
        (Schema::Record(record), V::Struct(row)) => {
            let mut fields = Vec::with_capacity(record.fields.len());
            for field in &record.fields {
                let field_connect = connect.and_then(|c| c.field(&field.name));
                let converted = match (row.get(&field.name), &field.default) {
                    // An absent field takes the schema's default; an explicit null does not.
                    (None, Some(default)) => AvroValue::try_from(default.clone())
                        .and_then(|v| v.resolve(&field.schema))
                        .map_err(|e| CodecError::new(CodecErrorKind::Avro(e.to_string())).in_field(&field.name))?,
                    (v, _) => to_avro(v.unwrap_or(&V::Null), &field.schema, names, field_connect)
                        .map_err(|e| e.in_field(&field.name))?,
                };
                fields.push((field.name.clone(), converted));
            }
            AvroValue::Record(fields)
        }
        _ => return Err(mismatch()),
    })
}

fn schema_label(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("record {}", r.name),
        Schema::Enum(e) => format!("enum {}", e.name),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

#[cfg(test)]
#[path = "avro_tests.rs"]
mod tests;
