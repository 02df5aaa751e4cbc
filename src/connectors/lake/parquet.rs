//! Rows ↔ Parquet for the lake. The Arrow schema comes from the rows: columns in first-seen
//! order, all nullable, each typed by the record schema when one is given (Avro records: a
//! column is typed even when all its values are null), else by its first non-null value.
//!
//! | value | Parquet / Arrow |
//! |---|---|
//! | bool, int, long, float, double | BOOLEAN, INT32, INT64, FLOAT, DOUBLE |
//! | decimal | DECIMAL(38, s), s = the column's first scale (others rescaled exactly, else an error) |
//! | text, uuid, json | UTF8 (uuid as its canonical text, json as its source text) |
//! | bytes | BINARY |
//! | date | DATE32 |
//! | time | TIME64(µs) |
//! | timestamp | TIMESTAMP(unit, UTC); local timestamp: TIMESTAMP(unit) without zone |
//! | struct, array, map | UTF8 holding the value's JSON |
//!
//! A column whose values are all null is UTF8.

use super::LakeError;
use crate::codec::connect::{ConnectSchema, unscaled_at};
use crate::record::{Row, TimeUnit, Value};
use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit as ArrowUnit};
use bytes::Bytes;
use num_bigint::BigInt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

fn unit(unit: TimeUnit) -> ArrowUnit {
    match unit {
        TimeUnit::Millis => ArrowUnit::Millisecond,
        TimeUnit::Micros => ArrowUnit::Microsecond,
        TimeUnit::Nanos => ArrowUnit::Nanosecond,
    }
}

fn data_type(value: &Value) -> DataType {
    match value {
        Value::Bool(_) => DataType::Boolean,
        Value::Int(_) => DataType::Int32,
        Value::Long(_) => DataType::Int64,
        Value::Float(_) => DataType::Float32,
        Value::Double(_) => DataType::Float64,
        Value::Decimal(d) => DataType::Decimal128(38, d.scale.min(38) as i8),
        Value::Bytes(_) => DataType::Binary,
        Value::Date(_) => DataType::Date32,
        Value::Time { .. } => DataType::Time64(ArrowUnit::Microsecond),
        Value::Timestamp { unit: u, .. } => DataType::Timestamp(unit(*u), Some("UTC".into())),
        Value::LocalTimestamp { unit: u, .. } => DataType::Timestamp(unit(*u), None),
        _ => DataType::Utf8,
    }
}

/// The column type a record field's schema gives, for the types the table above maps.
fn declared_type(schema: &ConnectSchema) -> Option<DataType> {
    use crate::codec::connect::{ConnectKind as K, Logical as L};
    Some(match (schema.logical, &schema.kind) {
        (L::Decimal { scale }, _) => DataType::Decimal128(38, scale.clamp(0, 38) as i8),
        (L::Date, _) => DataType::Date32,
        (L::Time(_), _) => DataType::Time64(ArrowUnit::Microsecond),
        (L::Timestamp(u), _) => DataType::Timestamp(unit(u), Some("UTC".into())),
        (L::LocalTimestamp(u), _) => DataType::Timestamp(unit(u), None),
        (L::Uuid | L::Json | L::ZonedTimestamp, _) => DataType::Utf8,
        (L::None, K::Boolean) => DataType::Boolean,
        (L::None, K::Int32) => DataType::Int32,
        (L::None, K::Int64) => DataType::Int64,
        (L::None, K::Float32) => DataType::Float32,
        (L::None, K::Float64) => DataType::Float64,
        (L::None, K::String | K::Array(_) | K::Map(..) | K::Struct(_)) => DataType::Utf8,
        (L::None, K::Bytes) => DataType::Binary,
        _ => return None,
    })
}

/// The Arrow schema of `rows` (`record`: their schema, which types its fields' columns).
pub fn schema_of(rows: &[Row], record: Option<&ConnectSchema>) -> Schema {
    let declared: Vec<(String, DataType)> = match record.map(|r| &r.kind) {
        Some(crate::codec::connect::ConnectKind::Struct(fields)) => {
            fields.iter().filter_map(|f| Some((f.name.to_string(), declared_type(&f.schema)?))).collect()
        }
        _ => Vec::new(),
    };
    let mut columns: Vec<(String, Option<DataType>)> = Vec::new();
    for row in rows {
        for (name, value) in row.iter() {
            let index = match columns.iter().position(|(n, _)| n.as_str() == name) {
                Some(i) => i,
                None => {
                    let declared = declared.iter().find(|(n, _)| n.as_str() == name).map(|(_, t)| t.clone());
                    columns.push((name.to_string(), declared));
                    columns.len() - 1
                }
            };
            if columns[index].1.is_none() && !matches!(value, Value::Null | Value::Unavailable) {
                columns[index].1 = Some(data_type(value));
            }
        }
    }
    Schema::new(
        columns.into_iter().map(|(name, t)| Field::new(name, t.unwrap_or(DataType::Utf8), true)).collect::<Vec<_>>(),
    )
}

fn mismatch(column: &str, row: usize, value: &Value, want: &DataType) -> LakeError {
    LakeError::Parquet(format!(
        "column `{column}` row {row}: a {} where the column is {want} (from its first value); write one type per column",
        value.type_name()
    ))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null | Value::Unavailable => None,
        Value::String(s) | Value::Json(s) => Some(s.clone()),
        Value::Uuid(u) => Some(u.to_string()),
        other => Some(other.to_json().to_string()),
    }
}

fn column(name: &str, data_type: &DataType, rows: &[Row]) -> Result<ArrayRef, LakeError> {
    let values = rows.iter().map(|r| r.get(name).unwrap_or(&Value::Null));
    macro_rules! build {
        ($builder:expr, $($pattern:pat => $out:expr),+) => {{
            let mut builder = $builder;
            for (i, value) in values.enumerate() {
                match value {
                    Value::Null | Value::Unavailable => builder.append_null(),
                    $($pattern => builder.append_value($out),)+
                    other => return Err(mismatch(name, i, other, data_type)),
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    Ok(match data_type {
        DataType::Boolean => build!(BooleanBuilder::new(), Value::Bool(b) => *b),
        DataType::Int32 => build!(Int32Builder::new(), Value::Int(v) => *v),
        // Wider columns take narrower values: a file typed by a newer writer schema (int →
        // long, float → double, as registries allow) still holds the older rows.
        DataType::Int64 => build!(Int64Builder::new(), Value::Long(v) => *v, Value::Int(v) => i64::from(*v)),
        DataType::Float32 => build!(Float32Builder::new(), Value::Float(v) => *v),
        DataType::Float64 => build!(Float64Builder::new(), Value::Double(v) => *v, Value::Float(v) => f64::from(*v)),
        DataType::Binary => build!(BinaryBuilder::new(), Value::Bytes(b) => b),
        DataType::Date32 => build!(Date32Builder::new(), Value::Date(d) => *d),
        DataType::Time64(_) => {
            build!(Time64MicrosecondBuilder::new(), Value::Time { value, unit } => micros(*value, *unit))
        }
        DataType::Timestamp(u, zone) => {
            let want = *u;
            let mut out: Vec<Option<i64>> = Vec::with_capacity(rows.len());
            for (i, value) in values.enumerate() {
                match (value, zone.is_some()) {
                    (Value::Null | Value::Unavailable, _) => out.push(None),
                    (Value::Timestamp { value, unit: u }, true) | (Value::LocalTimestamp { value, unit: u }, false)
                        if unit(*u) == want =>
                    {
                        out.push(Some(*value))
                    }
                    (other, _) => return Err(mismatch(name, i, other, data_type)),
                }
            }
            match want {
                ArrowUnit::Millisecond => {
                    Arc::new(arrow_array::TimestampMillisecondArray::from(out).with_timezone_opt(zone.clone()))
                        as ArrayRef
                }
                ArrowUnit::Microsecond => {
                    Arc::new(arrow_array::TimestampMicrosecondArray::from(out).with_timezone_opt(zone.clone()))
                }
                _ => Arc::new(arrow_array::TimestampNanosecondArray::from(out).with_timezone_opt(zone.clone())),
            }
        }
        DataType::Decimal128(precision, scale) => {
            let mut builder = Decimal128Builder::new();
            for (i, value) in values.enumerate() {
                match value {
                    Value::Null | Value::Unavailable => builder.append_null(),
                    Value::Decimal(d) => {
                        let unscaled = unscaled_at(d, i32::from(*scale))
                            .and_then(|u: BigInt| i128::try_from(u).ok())
                            .ok_or_else(|| {
                            LakeError::Parquet(format!(
                                "column `{name}` row {i}: {d} does not fit DECIMAL(38, {scale}) exactly"
                            ))
                        })?;
                        builder.append_value(unscaled);
                    }
                    other => return Err(mismatch(name, i, other, data_type)),
                }
            }
            Arc::new(
                builder
                    .finish()
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|e| LakeError::Parquet(e.to_string()))?,
            )
        }
        _ => {
            let mut builder = StringBuilder::new();
            for value in values {
                match text(value) {
                    Some(t) => builder.append_value(t),
                    None => builder.append_null(),
                }
            }
            Arc::new(builder.finish())
        }
    })
}

fn micros(value: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Millis => value * 1_000,
        TimeUnit::Micros => value,
        TimeUnit::Nanos => value / 1_000,
    }
}

/// One Parquet file (zstd) holding `rows` (`record`: their schema, see [`schema_of`]).
pub fn to_parquet(rows: &[Row], record: Option<&ConnectSchema>) -> Result<Bytes, LakeError> {
    let schema = Arc::new(schema_of(rows, record));
    let columns =
        schema.fields().iter().map(|f| column(f.name(), f.data_type(), rows)).collect::<Result<Vec<_>, _>>()?;
    let batch = if columns.is_empty() {
        RecordBatch::new_empty(schema.clone())
    } else {
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| LakeError::Parquet(e.to_string()))?
    };
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| LakeError::Parquet(e.to_string()))?))
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema, Some(properties)).map_err(|e| LakeError::Parquet(e.to_string()))?;
    writer.write(&batch).map_err(|e| LakeError::Parquet(e.to_string()))?;
    writer.close().map_err(|e| LakeError::Parquet(e.to_string()))?;
    Ok(Bytes::from(out))
}

/// The number of rows of a Parquet file (from its footer).
pub fn row_count(bytes: Bytes) -> Result<i64, LakeError> {
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes)
        .map_err(|e| LakeError::Parquet(e.to_string()))?;
    Ok(parquet::file::reader::FileReader::metadata(&reader).file_metadata().num_rows())
}
