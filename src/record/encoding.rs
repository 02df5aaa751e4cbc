//! The binary form of values in state stores and keys: compact, lossless, deterministic.
//!
//! Every [`Value`] variant has a tag byte followed by its payload (big-endian fixed-width
//! numbers, varint lengths). [`encode`] / [`decode`] round-trip every value exactly.
//!
//! [`key_bytes`] is the canonical form of a key: integers are widened to `Long`, and a
//! one-column key row (Debezium's `{"visitor_id": 3}`) is reduced to its column, so a stream
//! keyed by `visitor_id = 3` meets the table row whose primary key is `{visitor_id: 3}`.

use super::{Decimal, Row, TimeUnit, Value};
use num_bigint::BigInt;
use std::sync::Arc;

/// A stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored value is unreadable at byte {at}: {detail}")]
pub struct EncodingError {
    /// Byte offset.
    pub at: usize,
    /// What is wrong.
    pub detail: String,
}

const NULL: u8 = 0;
const UNAVAILABLE: u8 = 1;
const FALSE: u8 = 2;
const TRUE: u8 = 3;
const INT: u8 = 4;
const LONG: u8 = 5;
const FLOAT: u8 = 6;
const DOUBLE: u8 = 7;
const DECIMAL: u8 = 8;
const STRING: u8 = 9;
const BYTES: u8 = 10;
const UUID: u8 = 11;
const JSON: u8 = 12;
const DATE: u8 = 13;
const TIME: u8 = 14;
const TIMESTAMP: u8 = 15;
const LOCAL_TIMESTAMP: u8 = 16;
const ARRAY: u8 = 17;
const MAP: u8 = 18;
const STRUCT: u8 = 19;

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn unit_byte(unit: TimeUnit) -> u8 {
    match unit {
        TimeUnit::Millis => 0,
        TimeUnit::Micros => 1,
        TimeUnit::Nanos => 2,
    }
}

fn time(out: &mut Vec<u8>, tag: u8, value: i64, unit: TimeUnit) {
    out.push(tag);
    out.push(unit_byte(unit));
    out.extend_from_slice(&value.to_be_bytes());
}

/// Appends the binary form of `value`.
pub fn encode_into(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(NULL),
        Value::Unavailable => out.push(UNAVAILABLE),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Int(v) => {
            out.push(INT);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::Long(v) => {
            out.push(LONG);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::Float(v) => {
            out.push(FLOAT);
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        Value::Double(v) => {
            out.push(DOUBLE);
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        Value::Decimal(d) => {
            out.push(DECIMAL);
            varint(out, u64::from(d.scale));
            bytes(out, &d.to_be_bytes());
        }
        Value::String(s) => {
            out.push(STRING);
            bytes(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(BYTES);
            bytes(out, b);
        }
        Value::Uuid(u) => {
            out.push(UUID);
            out.extend_from_slice(u.as_bytes());
        }
        Value::Json(s) => {
            out.push(JSON);
            bytes(out, s.as_bytes());
        }
        Value::Date(d) => {
            out.push(DATE);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::Time { value, unit } => time(out, TIME, *value, *unit),
        Value::Timestamp { value, unit } => time(out, TIMESTAMP, *value, *unit),
        Value::LocalTimestamp { value, unit } => time(out, LOCAL_TIMESTAMP, *value, *unit),
        Value::Array(items) => {
            out.push(ARRAY);
            varint(out, items.len() as u64);
            for item in items {
                encode_into(out, item);
            }
        }
        Value::Map(entries) => {
            out.push(MAP);
            varint(out, entries.len() as u64);
            for (k, v) in entries {
                bytes(out, k.as_bytes());
                encode_into(out, v);
            }
        }
        Value::Struct(row) => {
            out.push(STRUCT);
            varint(out, row.len() as u64);
            for (k, v) in row.iter() {
                bytes(out, k.as_bytes());
                encode_into(out, v);
            }
        }
    }
}

/// A time (or any i64) as 8 bytes whose byte order is numeric order (big-endian with the sign
/// bit flipped): the building block of time-ordered state keys.
pub fn ordered_i64(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

/// `bytes` behind its length (u32, big-endian): a key prefix that no longer key can extend, so
/// a range scan over it never mixes keys where one is a prefix of another.
pub fn length_prefixed(bytes: &[u8], room: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + bytes.len() + room);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The inverse of [`ordered_i64`].
pub fn from_ordered_i64(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The binary form of a value.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_into(&mut out, value);
    out
}

/// The binary form of a row (as a struct value).
pub fn encode_row(row: &Row) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * row.len() + 8);
    out.push(STRUCT);
    varint(&mut out, row.len() as u64);
    for (k, v) in row.iter() {
        bytes(&mut out, k.as_bytes());
        encode_into(&mut out, v);
    }
    out
}

/// The canonical key form (see the module docs).
pub fn key_bytes(key: &Value) -> Vec<u8> {
    encode(&canonical_key(key))
}

fn canonical_key(key: &Value) -> Value {
    match key {
        Value::Int(i) => Value::Long(i64::from(*i)),
        // 1.5 and 1.50 are one number: drop trailing zeros.
        Value::Decimal(d) => {
            let mut scale = d.scale;
            while scale > 0 && d.rescale(scale - 1).is_some() {
                scale -= 1;
            }
            Value::Decimal(d.rescale(scale).unwrap_or_else(|| d.clone()))
        }
        Value::Struct(row) if row.len() == 1 => row.iter().next().map(|(_, v)| canonical_key(v)).unwrap_or(Value::Null),
        Value::Struct(row) => Value::Struct(row.iter().map(|(k, v)| (Arc::from(k), canonical_key(v))).collect()),
        other => other.clone(),
    }
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, detail: &str) -> Result<T, EncodingError> {
        Err(EncodingError { at: self.at, detail: detail.to_owned() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EncodingError> {
        match self.input.get(self.at..self.at.saturating_add(n)) {
            Some(slice) => {
                self.at += n;
                Ok(slice)
            }
            None => self.fail("truncated"),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EncodingError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, EncodingError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        self.fail("varint too long")
    }

    fn len(&mut self) -> Result<usize, EncodingError> {
        let n = self.varint()?;
        if n > (self.input.len() - self.at) as u64 {
            return self.fail("length beyond the end");
        }
        Ok(n as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], EncodingError> {
        let n = self.len()?;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, EncodingError> {
        let raw = self.bytes()?;
        String::from_utf8(raw.to_vec()).or_else(|_| self.fail("invalid UTF-8"))
    }

    fn unit(&mut self) -> Result<TimeUnit, EncodingError> {
        match self.take(1)?[0] {
            0 => Ok(TimeUnit::Millis),
            1 => Ok(TimeUnit::Micros),
            2 => Ok(TimeUnit::Nanos),
            _ => self.fail("unknown time unit"),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, EncodingError> {
        if depth > 64 {
            return self.fail("nested too deeply");
        }
        let tag = self.take(1)?[0];
        Ok(match tag {
            NULL => Value::Null,
            UNAVAILABLE => Value::Unavailable,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            INT => Value::Int(i32::from_be_bytes(self.array()?)),
            LONG => Value::Long(i64::from_be_bytes(self.array()?)),
            FLOAT => Value::Float(f32::from_bits(u32::from_be_bytes(self.array()?))),
            DOUBLE => Value::Double(f64::from_bits(u64::from_be_bytes(self.array()?))),
            DECIMAL => {
                let scale = u32::try_from(self.varint()?).or_else(|_| self.fail("decimal scale"))?;
                Value::Decimal(Decimal { unscaled: BigInt::from_signed_bytes_be(self.bytes()?), scale })
            }
            STRING => Value::String(self.text()?),
            BYTES => Value::Bytes(self.bytes()?.to_vec()),
            UUID => Value::Uuid(uuid::Uuid::from_bytes(self.array()?)),
            JSON => Value::Json(self.text()?),
            DATE => Value::Date(i32::from_be_bytes(self.array()?)),
            TIME | TIMESTAMP | LOCAL_TIMESTAMP => {
                let unit = self.unit()?;
                let value = i64::from_be_bytes(self.array()?);
                match tag {
                    TIME => Value::Time { value, unit },
                    TIMESTAMP => Value::Timestamp { value, unit },
                    _ => Value::LocalTimestamp { value, unit },
                }
            }
            ARRAY => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            MAP => {
                let n = self.len()?;
                let mut entries = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let k = self.text()?;
                    entries.push((k, self.value(depth + 1)?));
                }
                Value::Map(entries)
            }
            STRUCT => {
                let n = self.len()?;
                let mut row = Row::with_capacity(n.min(1024));
                for _ in 0..n {
                    let k = self.text()?;
                    let v = self.value(depth + 1)?;
                    row.push(k, v);
                }
                Value::Struct(row)
            }
            _ => return self.fail("unknown tag"),
        })
    }
}

/// Decodes what [`encode`] wrote.
pub fn decode(input: &[u8]) -> Result<Value, EncodingError> {
    let mut reader = Reader { input, at: 0 };
    let value = reader.value(0)?;
    if reader.at != input.len() {
        return reader.fail("trailing bytes");
    }
    Ok(value)
}

/// Decodes what [`encode_row`] wrote.
pub fn decode_row(input: &[u8]) -> Result<Row, EncodingError> {
    match decode(input)? {
        Value::Struct(row) => Ok(row),
        _ => Err(EncodingError { at: 0, detail: "not a row".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            Just(Value::Unavailable),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::Int),
            any::<i64>().prop_map(Value::Long),
            any::<f64>().prop_filter("NaN != NaN", |f| !f.is_nan()).prop_map(Value::Double),
            (any::<i64>(), 0u32..20).prop_map(|(u, s)| Value::Decimal(Decimal::new(u, s))),
            ".*".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
            any::<[u8; 16]>().prop_map(|b| Value::Uuid(uuid::Uuid::from_bytes(b))),
            any::<i32>().prop_map(Value::Date),
            (any::<i64>(), 0u8..3).prop_map(|(v, u)| Value::Timestamp {
                value: v,
                unit: [TimeUnit::Millis, TimeUnit::Micros, TimeUnit::Nanos][u as usize]
            }),
            any::<i64>().prop_map(|v| Value::LocalTimestamp { value: v, unit: TimeUnit::Micros }),
            any::<i64>().prop_map(|v| Value::Time { value: v, unit: TimeUnit::Nanos }),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(("[a-z]{1,4}", inner.clone()), 0..4).prop_map(Value::Map),
                proptest::collection::vec(("[a-z]{1,4}", inner), 0..4).prop_map(|fields| Value::Struct(
                    fields.into_iter().map(|(k, v)| (Arc::from(k.as_str()), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn every_value_round_trips(v in value()) {
            prop_assert_eq!(decode(&encode(&v)).unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_decode_to_an_error_or_a_value(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn keys_normalise_integer_width_and_one_column_rows() {
        let from_stream = Value::Long(3);
        let from_debezium = Value::Struct(Row::new().with("visitor_id", Value::Int(3)));
        assert_eq!(key_bytes(&from_stream), key_bytes(&from_debezium));
        assert_ne!(key_bytes(&Value::Long(3)), key_bytes(&Value::String("3".into())));
        assert_eq!(key_bytes(&Value::Decimal(Decimal::new(150, 2))), key_bytes(&Value::Decimal(Decimal::new(15, 1))));
    }
}
