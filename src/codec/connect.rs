//! The Kafka Connect type model, and the semantic types that keep values faithful.
//!
//! Debezium describes every column with a Kafka Connect schema: a primitive type plus an
//! optional semantic *name* (`org.apache.kafka.connect.data.Decimal`,
//! `io.debezium.time.MicroTimestamp`, ...). The JSON converter ships that schema next to the
//! payload; the Avro converter turns it into an Avro schema whose types carry `connect.name`
//! (and, for some, an Avro `logicalType`). Both are parsed into one [`ConnectSchema`] tree, and
//! the semantic name is resolved once, at schema-parse time, into a [`Logical`] that turns the
//! raw primitive into the right [`Value`].
//!
//! Resolution order for a type's meaning: `connect.name` first (it is the most specific), then
//! the Avro `logicalType`, then the primitive type.

use super::error::{CodecError, CodecErrorKind, wrong_type};
use crate::record::UNAVAILABLE_TEXT;
use crate::record::{Decimal, MAX_DECIMAL_SCALE, Row, TimeUnit, Value};
use num_bigint::BigInt;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A Kafka Connect primitive or container type.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectKind {
    /// Signed 8-bit integer.
    Int8,
    /// Signed 16-bit integer.
    Int16,
    /// Signed 32-bit integer.
    Int32,
    /// Signed 64-bit integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Boolean.
    Boolean,
    /// UTF-8 string.
    String,
    /// Bytes (base64 in JSON).
    Bytes,
    /// Array of one element type.
    Array(Box<ConnectSchema>),
    /// Map from key type to value type.
    Map(Box<ConnectSchema>, Box<ConnectSchema>),
    /// Struct with ordered fields.
    Struct(Vec<ConnectField>),
    /// An Avro union that is not just "optional": branches in Avro order.
    Union(Vec<ConnectSchema>),
    /// Avro `null` (only inside unions).
    Null,
}

/// One field of a struct.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectField {
    /// Field name, shared by every row decoded with this schema.
    pub name: Arc<str>,
    /// Field type.
    pub schema: ConnectSchema,
}

/// What a value means beyond its primitive type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logical {
    /// Nothing beyond the primitive.
    None,
    /// Fixed-scale decimal (`bytes` holding the unscaled two's-complement integer).
    Decimal {
        /// Digits after the point (negative: powers of ten before it).
        scale: i32,
    },
    /// Debezium `VariableScaleDecimal`: struct `{scale: int32, value: bytes}`.
    VariableScaleDecimal,
    /// Days since the epoch.
    Date,
    /// Time of day.
    Time(TimeUnit),
    /// Instant since the epoch.
    Timestamp(TimeUnit),
    /// Wall-clock date-time without a zone.
    LocalTimestamp(TimeUnit),
    /// ISO-8601 string with an offset (Debezium `ZonedTimestamp`), becomes an instant.
    ZonedTimestamp,
    /// UUID as a string.
    Uuid,
    /// JSON document as a string.
    Json,
}

impl Logical {
    /// Resolves a Kafka Connect / Debezium semantic type name (`Ok(None)` for names without a
    /// special meaning).
    pub fn from_connect_name(name: &str, parameters: &BTreeMap<String, String>) -> Result<Option<Logical>, CodecError> {
        Ok(Some(match name {
            "org.apache.kafka.connect.data.Decimal" => {
                Logical::Decimal { scale: decimal_scale(parameters.get("scale").map(String::as_str))? }
            }
            "io.debezium.data.VariableScaleDecimal" => Logical::VariableScaleDecimal,
            "org.apache.kafka.connect.data.Date" | "io.debezium.time.Date" => Logical::Date,
            "org.apache.kafka.connect.data.Time" | "io.debezium.time.Time" => Logical::Time(TimeUnit::Millis),
            "io.debezium.time.MicroTime" => Logical::Time(TimeUnit::Micros),
            "io.debezium.time.NanoTime" => Logical::Time(TimeUnit::Nanos),
            "org.apache.kafka.connect.data.Timestamp" | "io.debezium.time.Timestamp" => {
                Logical::LocalTimestamp(TimeUnit::Millis)
            }
            "io.debezium.time.MicroTimestamp" => Logical::LocalTimestamp(TimeUnit::Micros),
            "io.debezium.time.NanoTimestamp" => Logical::LocalTimestamp(TimeUnit::Nanos),
            "io.debezium.time.ZonedTimestamp" => Logical::ZonedTimestamp,
            "io.debezium.data.Uuid" => Logical::Uuid,
            "io.debezium.data.Json" => Logical::Json,
            _ => return Ok(None),
        }))
    }

    /// Resolves an Avro `logicalType` attribute (`Ok(None)` for unknown logical types, which
    /// Avro says to ignore).
    pub fn from_avro_logical_type(logical_type: &str, schema: &Json) -> Result<Option<Logical>, CodecError> {
        Ok(Some(match logical_type {
            "decimal" => Logical::Decimal {
                scale: match schema.get("scale") {
                    None => 0,
                    Some(s) => decimal_scale(Some(&s.to_string()))?,
                },
            },
            "date" => Logical::Date,
            "time-millis" => Logical::Time(TimeUnit::Millis),
            "time-micros" => Logical::Time(TimeUnit::Micros),
            "timestamp-millis" => Logical::Timestamp(TimeUnit::Millis),
            "timestamp-micros" => Logical::Timestamp(TimeUnit::Micros),
            "timestamp-nanos" => Logical::Timestamp(TimeUnit::Nanos),
            "local-timestamp-millis" => Logical::LocalTimestamp(TimeUnit::Millis),
            "local-timestamp-micros" => Logical::LocalTimestamp(TimeUnit::Micros),
            "local-timestamp-nanos" => Logical::LocalTimestamp(TimeUnit::Nanos),
            "uuid" => Logical::Uuid,
            _ => return Ok(None),
        }))
    }

    /// Turns a primitive value into the semantic value. Values that already have the semantic
    /// type (Avro decoders produce some directly) pass through.
    pub fn apply(self, raw: Value) -> Result<Value, CodecError> {
        use Value as V;
        if is_unavailable_placeholder(&raw) {
            return Ok(V::Unavailable);
        }
        Ok(match (self, raw) {
            (_, V::Null) => V::Null,
            (Logical::None, v) => v,
            (Logical::Decimal { scale }, V::Bytes(b)) => {
                V::Decimal(scaled(BigInt::from_signed_bytes_be(&b), i64::from(scale))?)
            }
            (Logical::Decimal { scale }, V::Decimal(d)) => V::Decimal(scaled(d.unscaled, i64::from(scale))?),
            (Logical::Decimal { scale }, V::String(s)) => match Decimal::parse(&s) {
                Some(d) => V::Decimal(u32::try_from(scale).ok().and_then(|s| d.rescale(s)).unwrap_or(d)),
                None => return Err(invalid(format!("`{s}` is not a decimal number"))),
            },
            (Logical::VariableScaleDecimal, V::Struct(row)) => {
                let scale = row.get("scale").and_then(Value::as_i64);
                match (scale, row.get("value")) {
                    (Some(scale), Some(V::Bytes(b))) => V::Decimal(scaled(BigInt::from_signed_bytes_be(b), scale)?),
                    _ => return Err(wrong_type("struct {scale: int, value: bytes}", "other struct")),
                }
            }
            (Logical::Date, V::Int(d)) => V::Date(d),
            (Logical::Date, V::Long(d)) => {
                V::Date(i32::try_from(d).map_err(|_| invalid(format!("date {d} out of range")))?)
            }
            (Logical::Date, v @ V::Date(_)) => v,
            (Logical::Time(unit), V::Int(t)) => V::Time { value: i64::from(t), unit },
            (Logical::Time(unit), V::Long(t)) => V::Time { value: t, unit },
            (Logical::Time(_), v @ V::Time { .. }) => v,
            (Logical::Timestamp(unit), V::Long(t)) => V::Timestamp { value: t, unit },
            (Logical::Timestamp(_), v @ V::Timestamp { .. }) => v,
            (Logical::LocalTimestamp(unit), V::Long(t)) => V::LocalTimestamp { value: t, unit },
            (Logical::LocalTimestamp(unit), V::Int(t)) => V::LocalTimestamp { value: i64::from(t), unit },
            (Logical::LocalTimestamp(_), v @ V::LocalTimestamp { .. }) => v,
            // Kafka Connect's Timestamp travels as Avro `timestamp-millis` but carries no zone.
            (Logical::LocalTimestamp(_), V::Timestamp { value, unit }) => V::LocalTimestamp { value, unit },
            (Logical::ZonedTimestamp, V::String(s)) => parse_zoned_timestamp(&s)?,
            (Logical::Uuid, V::String(s)) => {
                V::Uuid(uuid::Uuid::parse_str(&s).map_err(|e| invalid(format!("`{s}` is not a UUID: {e}")))?)
            }
            (Logical::Uuid, v @ V::Uuid(_)) => v,
            (Logical::Json, V::String(s)) => V::Json(s),
            (logical, v) => return Err(wrong_type(format!("a value for {logical:?}"), v.type_name())),
        })
    }
}

/// The unscaled integer that writes `d` exactly at `scale` (which may be negative); `None` when
/// `d` has more digits than the scale keeps.
pub fn unscaled_at(d: &Decimal, scale: i32) -> Option<BigInt> {
    if scale >= 0 {
        return d.rescale(scale as u32).map(|r| r.unscaled);
    }
    let whole = d.rescale(0)?.unscaled;
    let factor = BigInt::from(10u32).pow(scale.unsigned_abs().min(MAX_DECIMAL_SCALE));
    let remainder = &whole % &factor;
    (remainder == BigInt::from(0)).then(|| whole / factor)
}

impl Logical {
    /// The time unit this logical type counts in, for encoders.
    pub fn time_unit(self) -> Option<TimeUnit> {
        match self {
            Logical::Time(u) | Logical::Timestamp(u) | Logical::LocalTimestamp(u) => Some(u),
            _ => None,
        }
    }
}

/// A time count in the unit `logical` declares (unchanged when it declares none).
pub fn count_in(value: i64, unit: TimeUnit, logical: Logical) -> Result<i64, CodecError> {
    match logical.time_unit() {
        Some(to) if to != unit => unit
            .convert(value, to)
            .ok_or_else(|| invalid(format!("{value} {unit:?} cannot be written as {to:?} without losing precision"))),
        _ => Ok(value),
    }
}

fn scaled(unscaled: BigInt, scale: i64) -> Result<Decimal, CodecError> {
    Decimal::from_scaled(unscaled, scale)
        .ok_or_else(|| invalid(format!("decimal scale {scale} is outside ±{MAX_DECIMAL_SCALE}")))
}

/// Parses a decimal scale parameter; missing or out-of-range scales are schema errors.
fn decimal_scale(text: Option<&str>) -> Result<i32, CodecError> {
    let unsupported = |what: String| CodecError::new(CodecErrorKind::UnsupportedSchema(what));
    let text = text.ok_or_else(|| unsupported("decimal type without a `scale` parameter".into()))?;
    match text.trim_matches('"').parse::<i32>() {
        Ok(scale) if scale.unsigned_abs() <= MAX_DECIMAL_SCALE => Ok(scale),
        _ => Err(unsupported(format!("decimal scale `{text}` is not an integer within ±{MAX_DECIMAL_SCALE}"))),
    }
}

fn invalid(detail: String) -> CodecError {
    CodecError::new(CodecErrorKind::InvalidValue(detail))
}

/// True for Debezium's "value not captured" placeholder, as text or as bytes.
pub fn is_unavailable_placeholder(value: &Value) -> bool {
    match value {
        Value::String(s) => s == UNAVAILABLE_TEXT,
        Value::Bytes(b) => b == UNAVAILABLE_TEXT.as_bytes(),
        _ => false,
    }
}

/// Parses an ISO-8601 date-time with offset into an instant, keeping the fraction's precision
/// as the unit (3 digits → ms, 6 → µs, 9 → ns).
pub fn parse_zoned_timestamp(text: &str) -> Result<Value, CodecError> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| invalid(format!("`{text}` is not an ISO-8601 timestamp with offset: {e}")))?;
    let fraction_digits =
        text.split_once('.').map(|(_, rest)| rest.bytes().take_while(u8::is_ascii_digit).count()).unwrap_or(0);
    let utc = parsed.to_utc();
    let (value, unit) = match fraction_digits {
        0..=3 => (Some(utc.timestamp_millis()), TimeUnit::Millis),
        4..=6 => (Some(utc.timestamp_micros()), TimeUnit::Micros),
        _ => (utc.timestamp_nanos_opt(), TimeUnit::Nanos),
    };
    let value = value.ok_or_else(|| invalid(format!("`{text}` is out of the nanosecond range")))?;
    Ok(Value::Timestamp { value, unit })
}

/// A Kafka Connect schema (also what an Avro schema is mapped onto).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectSchema {
    /// The type.
    pub kind: ConnectKind,
    /// Whether null is allowed.
    pub optional: bool,
    /// Semantic / record name (`io.debezium.time.Date`, `happytimes.public.ads.Value`).
    pub name: Option<String>,
    /// Connect schema parameters (decimal scale, enum values, ...).
    pub parameters: BTreeMap<String, String>,
    /// The meaning resolved from `name` / `logicalType`.
    pub logical: Logical,
}

impl ConnectKind {
    /// The Connect name of the type (`int64`, `double`, `struct`, ...); `union` and `null`, which
    /// Connect has no name for, by their Avro names.
    pub fn name(&self) -> &'static str {
        match self {
            ConnectKind::Int8 => "int8",
            ConnectKind::Int16 => "int16",
            ConnectKind::Int32 => "int32",
            ConnectKind::Int64 => "int64",
            ConnectKind::Float32 => "float",
            ConnectKind::Float64 => "double",
            ConnectKind::Boolean => "boolean",
            ConnectKind::String => "string",
            ConnectKind::Bytes => "bytes",
            ConnectKind::Array(_) => "array",
            ConnectKind::Map(..) => "map",
            ConnectKind::Struct(_) => "struct",
            ConnectKind::Union(_) => "union",
            ConnectKind::Null => "null",
        }
    }
}

impl ConnectSchema {
    /// A schema of a kind with no name.
    pub fn of(kind: ConnectKind) -> Self {
        ConnectSchema { kind, optional: false, name: None, parameters: BTreeMap::new(), logical: Logical::None }
    }

    /// The field list of a struct schema.
    pub fn fields(&self) -> Option<&[ConnectField]> {
        match &self.kind {
            ConnectKind::Struct(fields) => Some(fields),
            _ => None,
        }
    }

    /// A struct field's schema by name.
    pub fn field(&self, name: &str) -> Option<&ConnectSchema> {
        self.fields()?.iter().find(|f| &*f.name == name).map(|f| &f.schema)
    }

    /// Parses the `schema` part of a Kafka Connect JSON envelope.
    pub fn from_connect_json(json: &Json) -> Result<ConnectSchema, CodecError> {
        let obj = json.as_object().ok_or_else(|| wrong_type("a Connect schema object", json_type(json)))?;
        let type_name = obj
            .get("type")
            .and_then(Json::as_str)
            .ok_or_else(|| CodecError::new(CodecErrorKind::MissingField("type".into())))?;
        let kind = match type_name {
            "int8" => ConnectKind::Int8,
            "int16" => ConnectKind::Int16,
            "int32" => ConnectKind::Int32,
            "int64" => ConnectKind::Int64,
            "float" | "float32" => ConnectKind::Float32,
            "double" | "float64" => ConnectKind::Float64,
            "boolean" => ConnectKind::Boolean,
            "string" => ConnectKind::String,
            "bytes" => ConnectKind::Bytes,
            "array" => ConnectKind::Array(Box::new(Self::from_connect_json(
                obj.get("items").ok_or_else(|| CodecError::new(CodecErrorKind::MissingField("items".into())))?,
            )?)),
            "map" => ConnectKind::Map(
                Box::new(Self::from_connect_json(obj.get("keys").unwrap_or(&Json::Null))?),
                Box::new(Self::from_connect_json(obj.get("values").unwrap_or(&Json::Null))?),
            ),
            "struct" => {
                let fields = obj.get("fields").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
                let mut out = Vec::with_capacity(fields.len());
                for field in fields {
                    let name = field.get("field").and_then(Json::as_str).ok_or_else(|| {
                        CodecError::new(CodecErrorKind::MissingField("field".into())).in_field("fields")
                    })?;
                    let schema = Self::from_connect_json(field).map_err(|e| e.in_field(name))?;
                    out.push(ConnectField { name: Arc::from(name), schema });
                }
                ConnectKind::Struct(out)
            }
            other => return Err(CodecError::new(CodecErrorKind::UnsupportedSchema(format!("Connect type `{other}`")))),
        };
        let name = obj.get("name").and_then(Json::as_str).map(str::to_owned);
        let parameters = string_map(obj.get("parameters"));
        let logical = match name.as_deref() {
            Some(n) => Logical::from_connect_name(n, &parameters)?.unwrap_or(Logical::None),
            None => Logical::None,
        };
        Ok(ConnectSchema {
            kind,
            optional: obj.get("optional").and_then(Json::as_bool).unwrap_or(false),
            name,
            parameters,
            logical,
        })
    }

    /// Maps an Avro schema (as JSON text from a registry or `.avsc` file) onto Connect types,
    /// keeping `connect.name` / `connect.parameters` / `logicalType` semantics.
    pub fn from_avro_json(schema: &Json) -> Result<ConnectSchema, CodecError> {
        let mut names = HashMap::new();
        avro_to_connect(schema, None, &mut names)
    }
}

fn string_map(json: Option<&Json>) -> BTreeMap<String, String> {
    json.and_then(Json::as_object)
        .map(|m| {
            m.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect()
        })
        .unwrap_or_default()
}

/// The JSON type name of a value, for error messages.
pub fn json_type(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn avro_to_connect(
    schema: &Json,
    namespace: Option<&str>,
    names: &mut HashMap<String, ConnectSchema>,
) -> Result<ConnectSchema, CodecError> {
    let unsupported = |what: String| CodecError::new(CodecErrorKind::UnsupportedSchema(what));
    match schema {
        Json::String(type_name) => match primitive(type_name) {
            Some(kind) => Ok(ConnectSchema::of(kind)),
            None => names
                .get(&full_name(type_name, namespace))
                .or_else(|| names.get(type_name.as_str()))
                .or_else(|| {
                    names.values().find(|s| s.name.as_deref().is_some_and(|n| n.rsplit('.').next() == Some(type_name)))
                })
                .cloned()
                .ok_or_else(|| unsupported(format!("Avro type `{type_name}` is not defined before use"))),
        },
        Json::Array(branches) => {
            let non_null: Vec<&Json> = branches.iter().filter(|b| b.as_str() != Some("null")).collect();
            if non_null.len() == 1 && branches.len() == 2 {
                let mut inner = avro_to_connect(non_null[0], namespace, names)?;
                inner.optional = true;
                return Ok(inner);
            }
            let mut out = Vec::with_capacity(branches.len());
            for b in branches {
                out.push(avro_to_connect(b, namespace, names)?);
            }
            let optional = out.iter().any(|s| s.kind == ConnectKind::Null);
            Ok(ConnectSchema { optional, ..ConnectSchema::of(ConnectKind::Union(out)) })
        }
        Json::Object(obj) => {
            let type_json = obj.get("type").ok_or_else(|| unsupported("Avro schema object without `type`".into()))?;
            let type_name = type_json.as_str();
            let own_namespace = obj.get("namespace").and_then(Json::as_str).or(namespace);
            let record_name = obj.get("name").and_then(Json::as_str).map(|n| full_name(n, own_namespace));
            let child_namespace = record_name
                .as_deref()
                .and_then(|n| n.rsplit_once('.').map(|(ns, _)| ns))
                .or(own_namespace)
                .map(str::to_owned);
            let mut result = match type_name {
                Some("record") | Some("error") => {
                    let fields = obj.get("fields").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
                    let mut out = Vec::with_capacity(fields.len());
                    for field in fields {
                        let name = field
                            .get("name")
                            .and_then(Json::as_str)
                            .ok_or_else(|| unsupported("record field without name".into()))?;
                        let field_type =
                            field.get("type").ok_or_else(|| unsupported(format!("field `{name}` without type")))?;
                        let schema = avro_to_connect(field_type, child_namespace.as_deref(), names)
                            .map_err(|e| e.in_field(name))?;
                        out.push(ConnectField { name: Arc::from(name), schema });
                    }
                    ConnectSchema { name: record_name.clone(), ..ConnectSchema::of(ConnectKind::Struct(out)) }
                }
                Some("enum") => ConnectSchema { name: record_name.clone(), ..ConnectSchema::of(ConnectKind::String) },
                Some("fixed") => ConnectSchema { name: record_name.clone(), ..ConnectSchema::of(ConnectKind::Bytes) },
                Some("array") => ConnectSchema::of(ConnectKind::Array(Box::new(avro_to_connect(
                    obj.get("items").unwrap_or(&Json::Null),
                    namespace,
                    names,
                )?))),
                Some("map") => ConnectSchema::of(ConnectKind::Map(
                    Box::new(ConnectSchema::of(ConnectKind::String)),
                    Box::new(avro_to_connect(obj.get("values").unwrap_or(&Json::Null), namespace, names)?),
                )),
                Some(t) => match primitive(t) {
                    Some(kind) => ConnectSchema::of(kind),
                    None => avro_to_connect(type_json, namespace, names)?,
                },
                None => avro_to_connect(type_json, namespace, names)?,
            };
            if let Some(connect_name) = obj.get("connect.name").and_then(Json::as_str) {
                result.name = Some(connect_name.to_owned());
            }
            let connect_params = string_map(obj.get("connect.parameters"));
            if !connect_params.is_empty() {
                result.parameters = connect_params;
            }
            let from_name = match result.name.as_deref() {
                Some(n) => Logical::from_connect_name(n, &result.parameters)?,
                None => None,
            };
            let from_logical_type = match obj.get("logicalType").and_then(Json::as_str) {
                Some(lt) => Logical::from_avro_logical_type(lt, schema)?,
                None => None,
            };
            if let Some(logical) = from_name.or(from_logical_type) {
                result.logical = logical;
            }
            if let (Some(name), true) = (&record_name, matches!(type_name, Some("record" | "error" | "enum" | "fixed")))
            {
                names.insert(name.clone(), result.clone());
            }
            Ok(result)
        }
        other => Err(unsupported(format!("Avro schema cannot be a JSON {}", json_type(other)))),
    }
}

fn primitive(type_name: &str) -> Option<ConnectKind> {
    Some(match type_name {
        "null" => ConnectKind::Null,
        "boolean" => ConnectKind::Boolean,
        "int" => ConnectKind::Int32,
        "long" => ConnectKind::Int64,
        "float" => ConnectKind::Float32,
        "double" => ConnectKind::Float64,
        "bytes" => ConnectKind::Bytes,
        "string" => ConnectKind::String,
        _ => return None,
    })
}

/// Builds a [`Row`] from already-converted field values in schema order.
pub fn row_from_fields(
    fields: &[ConnectField],
    mut value_of: impl FnMut(&ConnectField) -> Result<Value, CodecError>,
) -> Result<Row, CodecError> {
    let mut row = Row::with_capacity(fields.len());
    for field in fields {
        let value = value_of(field).map_err(|e| e.in_field(&field.name))?;
        row.push(field.name.clone(), value);
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connect_decimal_name_resolves_scale_from_parameters() {
        let schema = ConnectSchema::from_connect_json(&json!({
            "type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "2", "connect.decimal.precision": "10"}
        }))
        .unwrap();
        assert_eq!(schema.logical, Logical::Decimal { scale: 2 });
        assert!(schema.optional);
    }

    #[test]
    fn hostile_or_missing_decimal_scales_are_rejected_not_allocated() {
        let schema = |params: serde_json::Value| {
            ConnectSchema::from_connect_json(
                &json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": params}),
            )
        };
        assert!(matches!(schema(json!({})).unwrap_err().kind, CodecErrorKind::UnsupportedSchema(_)));
        assert!(matches!(
            schema(json!({"scale": "4294967295"})).unwrap_err().kind,
            CodecErrorKind::UnsupportedSchema(_)
        ));
        assert_eq!(schema(json!({"scale": "-2"})).unwrap().logical, Logical::Decimal { scale: -2 });
        assert_eq!(
            Logical::Decimal { scale: -2 }.apply(Value::Bytes(vec![12])).unwrap(),
            Value::Decimal(Decimal::new(1200, 0))
        );
        let huge = Value::Struct(Row::new().with("scale", Value::Int(i32::MAX)).with("value", Value::Bytes(vec![1])));
        assert!(matches!(Logical::VariableScaleDecimal.apply(huge).unwrap_err().kind, CodecErrorKind::InvalidValue(_)));
        let negative = Value::Struct(Row::new().with("scale", Value::Int(-3)).with("value", Value::Bytes(vec![2])));
        assert_eq!(Logical::VariableScaleDecimal.apply(negative).unwrap(), Value::Decimal(Decimal::new(2000, 0)));
    }

    #[test]
    fn avro_connect_name_wins_over_logical_type() {
        let schema = ConnectSchema::from_avro_json(&json!({
            "type": "long", "connect.name": "io.debezium.time.MicroTimestamp", "logicalType": "timestamp-micros"
        }))
        .unwrap();
        assert_eq!(schema.logical, Logical::LocalTimestamp(TimeUnit::Micros));
    }

    #[test]
    fn avro_named_type_reference_resolves_to_earlier_definition() {
        let schema = ConnectSchema::from_avro_json(&json!({
            "type": "record", "name": "Envelope", "namespace": "db.public.t",
            "fields": [
                {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [{"name": "id", "type": "int"}]}]},
                {"name": "after", "type": ["null", "Value"]}
            ]
        }))
        .unwrap();
        let after = schema.field("after").unwrap();
        assert!(after.optional);
        assert_eq!(after.name.as_deref(), Some("db.public.t.Value"));
        assert_eq!(after.fields().unwrap()[0].schema.kind, ConnectKind::Int32);
    }

    #[test]
    fn zoned_timestamp_keeps_fraction_precision() {
        assert_eq!(
            parse_zoned_timestamp("2024-01-15T08:30:00.123456Z").unwrap(),
            Value::Timestamp { value: 1_705_307_400_123_456, unit: TimeUnit::Micros }
        );
        assert_eq!(
            parse_zoned_timestamp("2024-01-15T09:30:00+01:00").unwrap(),
            Value::Timestamp { value: 1_705_307_400_000, unit: TimeUnit::Millis }
        );
        assert!(parse_zoned_timestamp("yesterday").is_err());
    }

    #[test]
    fn placeholder_becomes_unavailable_for_any_logical_type() {
        let text = Value::String(UNAVAILABLE_TEXT.into());
        assert_eq!(Logical::Json.apply(text).unwrap(), Value::Unavailable);
        let bytes = Value::Bytes(UNAVAILABLE_TEXT.as_bytes().to_vec());
        assert_eq!(Logical::Decimal { scale: 2 }.apply(bytes).unwrap(), Value::Unavailable);
    }
}
