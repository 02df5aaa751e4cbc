//! Typed values that keep SQL and Avro types faithfully.
//!
//! Invariants:
//! - Money and other exact numbers are [`Decimal`] (arbitrary-precision unscaled integer plus a
//!   scale); they are never converted to `f64`.
//! - Times keep the unit they were captured in ([`TimeUnit`]), so a microsecond timestamp read
//!   from Debezium is written back as microseconds.
//! - [`Value::Timestamp`] is an instant (UTC); [`Value::LocalTimestamp`] is a wall-clock
//!   reading with no zone (PostgreSQL `timestamp without time zone`, Debezium's
//!   `io.debezium.time.*Timestamp` and Kafka Connect's `Timestamp`).
//! - [`Value::Unavailable`] marks a column whose value the source did not capture (Debezium's
//!   `__debezium_unavailable_value` for an unchanged TOASTed column). It must never overwrite a
//!   known value: see [`Row::fill_unavailable_from`].
//!
//! The JSON rendering ([`Value::to_json`]) is lossless for exact types: decimals print as
//! strings (`"1234.50"`), times as ISO-8601 strings, bytes as base64.

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta};
use num_bigint::BigInt;
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;
use std::sync::Arc;

/// The unit a time or timestamp value is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeUnit {
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl TimeUnit {
    /// How many nanoseconds one unit is.
    pub fn nanos(self) -> i64 {
        match self {
            TimeUnit::Millis => 1_000_000,
            TimeUnit::Micros => 1_000,
            TimeUnit::Nanos => 1,
        }
    }
    /// `value` counted in `self` converted to `to`; `None` when that would lose precision or
    /// overflow.
    pub fn convert(self, value: i64, to: TimeUnit) -> Option<i64> {
        let (from_ns, to_ns) = (self.nanos(), to.nanos());
        if from_ns >= to_ns {
            value.checked_mul(from_ns / to_ns)
        } else {
            let factor = to_ns / from_ns;
            (value % factor == 0).then_some(value / factor)
        }
    }

    fn fraction_digits(self) -> usize {
        match self {
            TimeUnit::Millis => 3,
            TimeUnit::Micros => 6,
            TimeUnit::Nanos => 9,
        }
    }
}

/// An exact decimal number: `unscaled * 10^-scale`.
///
/// `1234.50` with scale 2 is `unscaled = 123450`. Equality is structural (the scale is part of
/// the value, as in SQL `numeric(p,s)`); use [`Decimal::numeric_eq`] to compare numbers only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// The unscaled integer.
    pub unscaled: BigInt,
    /// Digits after the decimal point.
    pub scale: u32,
}

/// The largest scale a decimal may have (PostgreSQL's limit). Larger scales in input are
/// rejected, so hostile input cannot make formatting or rescaling allocate without bound.
pub const MAX_DECIMAL_SCALE: u32 = 16_383;

impl Decimal {
    /// A decimal from its unscaled integer and a scale that may be negative (Oracle
    /// `NUMBER(p,-s)`: `unscaled * 10^-scale`); `None` when `|scale|` exceeds
    /// [`MAX_DECIMAL_SCALE`].
    pub fn from_scaled(unscaled: BigInt, scale: i64) -> Option<Decimal> {
        if scale.unsigned_abs() > u64::from(MAX_DECIMAL_SCALE) {
            return None;
        }
        if scale < 0 {
            let factor = BigInt::from(10u32).pow(scale.unsigned_abs() as u32);
            return Some(Decimal { unscaled: unscaled * factor, scale: 0 });
        }
        Some(Decimal { unscaled, scale: scale as u32 })
    }

    /// A decimal from its unscaled integer and scale.
    pub fn new(unscaled: impl Into<BigInt>, scale: u32) -> Self {
        Decimal { unscaled: unscaled.into(), scale }
    }

    /// From big-endian two's-complement bytes (Kafka Connect / Avro `decimal` encoding).
    pub fn from_be_bytes(bytes: &[u8], scale: u32) -> Self {
        Decimal { unscaled: BigInt::from_signed_bytes_be(bytes), scale }
    }

    /// Big-endian two's-complement bytes of the unscaled integer (minimal length).
    pub fn to_be_bytes(&self) -> Vec<u8> {
        self.unscaled.to_signed_bytes_be()
    }

    /// Parses `"-12.340"` (scale 3), `"7"` (scale 0) or `"1e3"`-free plain notation.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (int_part, frac_part) = match text.split_once('.') {
            Some((i, f)) => (i, f),
            None => (text, ""),
        };
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let unsigned_int = int_part.strip_prefix(['-', '+']).unwrap_or(int_part);
        if !digits_ok(unsigned_int)
            || !digits_ok(frac_part)
            || (unsigned_int.is_empty() && frac_part.is_empty())
            || frac_part.len() > MAX_DECIMAL_SCALE as usize
        {
            return None;
        }
        let negative = int_part.starts_with('-');
        let mut joined = String::with_capacity(text.len() + 1);
        joined.push_str(if negative { "-" } else { "" });
        joined.push_str(unsigned_int);
        joined.push_str(frac_part);
        let unscaled: BigInt = joined.parse().ok()?;
        Some(Decimal { unscaled, scale: u32::try_from(frac_part.len()).ok()? })
    }

    /// The same number with `scale` digits, if that loses nothing.
    pub fn rescale(&self, scale: u32) -> Option<Decimal> {
        use num_bigint::Sign;
        if scale > MAX_DECIMAL_SCALE {
            return None;
        }
        if scale >= self.scale {
            let factor = BigInt::from(10u32).pow(scale - self.scale);
            return Some(Decimal { unscaled: &self.unscaled * factor, scale });
        }
        let factor = BigInt::from(10u32).pow(self.scale - scale);
        let remainder = &self.unscaled % &factor;
        (remainder.sign() == Sign::NoSign).then(|| Decimal { unscaled: &self.unscaled / factor, scale })
    }

    /// Numeric equality regardless of scale (`1.5 == 1.50`).
    pub fn numeric_eq(&self, other: &Decimal) -> bool {
        let scale = self.scale.max(other.scale);
        self.rescale(scale) == other.rescale(scale)
    }

    /// Nearest `f64` (for display and statistics only, never for storage).
    pub fn to_f64(&self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.magnitude().to_string();
        let sign = if self.unscaled.sign() == num_bigint::Sign::Minus { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded =
            if digits.len() <= scale { format!("{}{}", "0".repeat(scale - digits.len() + 1), digits) } else { digits };
        let (int_part, frac_part) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int_part}.{frac_part}")
    }
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL / JSON null / Avro null.
    Null,
    /// The source did not capture this value (e.g. an unchanged TOASTed column in Debezium).
    Unavailable,
    /// Boolean.
    Bool(bool),
    /// 32-bit integer (also Connect int8/int16).
    Int(i32),
    /// 64-bit integer.
    Long(i64),
    /// 32-bit float.
    Float(f32),
    /// 64-bit float.
    Double(f64),
    /// Exact decimal.
    Decimal(Decimal),
    /// UTF-8 text.
    String(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// UUID.
    Uuid(uuid::Uuid),
    /// JSON document kept as its source text (PostgreSQL `json`/`jsonb`).
    Json(String),
    /// Calendar date as days since 1970-01-01.
    Date(i32),
    /// Time of day since midnight.
    Time {
        /// Count of `unit`s since midnight.
        value: i64,
        /// Unit of `value`.
        unit: TimeUnit,
    },
    /// Instant: count of `unit`s since 1970-01-01T00:00:00Z.
    Timestamp {
        /// Count of `unit`s since the epoch.
        value: i64,
        /// Unit of `value`.
        unit: TimeUnit,
    },
    /// Wall-clock date-time without a zone, counted as if it were UTC.
    LocalTimestamp {
        /// Count of `unit`s since 1970-01-01T00:00:00 (no zone).
        value: i64,
        /// Unit of `value`.
        unit: TimeUnit,
    },
    /// Array of values.
    Array(Vec<Value>),
    /// Map with string keys, in source order.
    Map(Vec<(String, Value)>),
    /// Nested record.
    Struct(Row),
}

impl Value {
    /// A cheap estimate of the memory the value holds (for cache budgets).
    pub fn approx_bytes(&self) -> usize {
        32 + match self {
            Value::String(s) | Value::Json(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Array(items) => items.iter().map(Value::approx_bytes).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| k.len() + v.approx_bytes()).sum(),
            Value::Struct(row) => row.approx_bytes(),
            _ => 0,
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The text of a string-like value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::Json(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value widened to `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(i64::from(*v)),
            Value::Long(v) => Some(*v),
            _ => None,
        }
    }

    /// The nested row of a struct value.
    pub fn as_row(&self) -> Option<&Row> {
        match self {
            Value::Struct(r) => Some(r),
            _ => None,
        }
    }

    /// A short type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Unavailable => "unavailable",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "int",
            Value::Long(_) => "long",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::Decimal(_) => "decimal",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "json",
            Value::Date(_) => "date",
            Value::Time { .. } => "time",
            Value::Timestamp { .. } => "timestamp",
            Value::LocalTimestamp { .. } => "local-timestamp",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Struct(_) => "struct",
        }
    }

    /// Milliseconds since the epoch for timestamp-like values (event time extraction).
    pub fn epoch_millis(&self) -> Option<i64> {
        match self {
            Value::Timestamp { value, unit } | Value::LocalTimestamp { value, unit } => Some(to_millis(*value, *unit)),
            Value::Long(v) => Some(*v),
            Value::Date(d) => Some(i64::from(*d) * 86_400_000),
            _ => None,
        }
    }

    /// Lossless JSON rendering (see the module docs).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Unavailable => J::String(UNAVAILABLE_TEXT.to_owned()),
            Value::Bool(b) => J::Bool(*b),
            Value::Int(v) => J::from(*v),
            Value::Long(v) => J::from(*v),
            Value::Float(v) => float_json(f64::from(*v)),
            Value::Double(v) => float_json(*v),
            Value::Decimal(d) => J::String(d.to_string()),
            Value::String(s) | Value::Json(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Uuid(u) => J::String(u.to_string()),
            Value::Date(d) => J::String(format_date(*d)),
            Value::Time { value, unit } => J::String(format_time(*value, *unit)),
            Value::Timestamp { value, unit } => J::String(format_timestamp(*value, *unit, true)),
            Value::LocalTimestamp { value, unit } => J::String(format_timestamp(*value, *unit, false)),
            Value::Array(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Value::Struct(row) => row.to_json(),
        }
    }
}

/// The text Debezium puts in place of a value it did not capture.
pub const UNAVAILABLE_TEXT: &str = "__debezium_unavailable_value";

fn to_millis(value: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Millis => value,
        TimeUnit::Micros => value.div_euclid(1_000),
        TimeUnit::Nanos => value.div_euclid(1_000_000),
    }
}

fn float_json(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|| serde_json::Value::String(v.to_string()))
}

/// `YYYY-MM-DD` for days since the epoch.
pub fn format_date(days: i32) -> String {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(TimeDelta::days(i64::from(days))))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("{days} days since 1970-01-01"))
}

fn split(value: i64, unit: TimeUnit) -> (i64, u32) {
    let per_second = 1_000_000_000 / unit.nanos();
    let secs = value.div_euclid(per_second);
    let nanos = (value.rem_euclid(per_second) * unit.nanos()) as u32;
    (secs, nanos)
}

fn fraction(nanos: u32, unit: TimeUnit) -> String {
    let digits = format!("{nanos:09}");
    digits[..unit.fraction_digits()].to_owned()
}

/// `HH:MM:SS.ffffff` (fraction digits by unit).
pub fn format_time(value: i64, unit: TimeUnit) -> String {
    let (secs, nanos) = split(value, unit);
    match NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, 0) {
        Some(t) if (0..86_400).contains(&secs) => {
            format!("{}.{}", t.format("%H:%M:%S"), fraction(nanos, unit))
        }
        _ => format!("{value} {unit:?} since midnight"),
    }
}

/// ISO-8601 date-time (fraction digits by unit), with `Z` when `utc`. Written field by field
/// (no format-string parsing): outputs format a timestamp per record.
pub fn format_timestamp(value: i64, unit: TimeUnit, utc: bool) -> String {
    use chrono::{Datelike as _, Timelike as _};
    use std::fmt::Write as _;
    let (secs, nanos) = split(value, unit);
    let Some(t) = DateTime::from_timestamp(secs, 0) else {
        return format!("{value} {unit:?} since the epoch");
    };
    let t = t.naive_utc();
    let mut out = String::with_capacity(32);
    if (0..=9999).contains(&t.year()) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
    } else {
        let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S"));
    }
    let digits = unit.fraction_digits();
    let _ = write!(out, ".{:0digits$}", nanos / 10u32.pow(9 - digits as u32));
    if utc {
        out.push('Z');
    }
    out
}

/// Writes exactly what [`Value::to_json`] builds, without building it.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Unavailable => serializer.serialize_str(UNAVAILABLE_TEXT),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(v) => serializer.serialize_i64(i64::from(*v)),
            Value::Long(v) => serializer.serialize_i64(*v),
            Value::Float(v) => serialize_float(f64::from(*v), serializer),
            Value::Double(v) => serialize_float(*v, serializer),
            Value::Decimal(d) => serializer.collect_str(d),
            Value::String(s) | Value::Json(s) => serializer.serialize_str(s),
            Value::Bytes(b) => serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Uuid(u) => serializer.collect_str(u),
            Value::Date(d) => serializer.serialize_str(&format_date(*d)),
            Value::Time { value, unit } => serializer.serialize_str(&format_time(*value, *unit)),
            Value::Timestamp { value, unit } => serializer.serialize_str(&format_timestamp(*value, *unit, true)),
            Value::LocalTimestamp { value, unit } => serializer.serialize_str(&format_timestamp(*value, *unit, false)),
            Value::Array(items) => serializer.collect_seq(items),
            Value::Map(entries) => serializer.collect_map(entries.iter().map(|(k, v)| (k, v))),
            Value::Struct(row) => row.serialize(serializer),
        }
    }
}

/// A finite float as a JSON number, anything else as its text (JSON has no NaN or infinity).
fn serialize_float<S: Serializer>(v: f64, serializer: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() { serializer.serialize_f64(v) } else { serializer.collect_str(&v) }
}

/// An ordered record of named values (a table row, a key, a nested struct).
///
/// Field names are `Arc<str>` so rows decoded with one schema share their names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    fields: Vec<(Arc<str>, Value)>,
}

impl Row {
    /// A cheap estimate of the memory the row holds (for cache budgets).
    pub fn approx_bytes(&self) -> usize {
        self.iter().map(|(name, value)| 16 + name.len() + value.approx_bytes()).sum()
    }

    /// An empty row.
    pub fn new() -> Self {
        Row::default()
    }

    /// An empty row with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Row { fields: Vec::with_capacity(n) }
    }

    /// Appends a field (no check for duplicates: decoders append each field once).
    pub fn push(&mut self, name: impl Into<Arc<str>>, value: Value) {
        self.fields.push((name.into(), value));
    }

    /// Builder-style [`Row::push`].
    pub fn with(mut self, name: impl Into<Arc<str>>, value: Value) -> Self {
        self.push(name, value);
        self
    }

    /// The value of a field.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| &**n == name).map(|(_, v)| v)
    }

    /// Sets a field, replacing an existing one of the same name.
    pub fn set(&mut self, name: impl Into<Arc<str>>, value: Value) {
        let name = name.into();
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.fields.push((name, value)),
        }
    }

    /// Fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(n, v)| (&**n, v))
    }

    /// Field names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| &**n)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the row has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// True when any field (at any depth) is [`Value::Unavailable`].
    pub fn has_unavailable(&self) -> bool {
        self.fields.iter().any(|(_, v)| match v {
            Value::Unavailable => true,
            Value::Struct(r) => r.has_unavailable(),
            _ => false,
        })
    }

    /// Replaces every [`Value::Unavailable`] field with the value of the same field in
    /// `previous` (the last known version of the row). Returns the names of fields that stay
    /// unavailable because `previous` does not know them either.
    pub fn fill_unavailable_from(&mut self, previous: &Row) -> Vec<Arc<str>> {
        let mut unknown = Vec::new();
        for (name, value) in &mut self.fields {
            if matches!(value, Value::Unavailable) {
                match previous.get(name) {
                    Some(known) if !matches!(known, Value::Unavailable) => *value = known.clone(),
                    _ => unknown.push(name.clone()),
                }
            }
        }
        unknown
    }

    /// JSON object rendering (field order kept).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.fields.iter().map(|(n, v)| (n.to_string(), v.to_json())).collect())
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (name, value) in &self.fields {
            map.serialize_entry(&**name, value)?;
        }
        map.end()
    }
}

impl FromIterator<(Arc<str>, Value)> for Row {
    fn from_iter<T: IntoIterator<Item = (Arc<str>, Value)>>(iter: T) -> Self {
        Row { fields: iter.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializing_writes_what_to_json_builds() {
        let row = Row::new()
            .with("n", Value::Null)
            .with("u", Value::Unavailable)
            .with("b", Value::Bool(true))
            .with("i", Value::Int(-7))
            .with("l", Value::Long(i64::MAX))
            .with("f", Value::Float(0.1))
            .with("d", Value::Double(1.5e300))
            .with("nan", Value::Double(f64::NAN))
            .with("inf", Value::Float(f32::NEG_INFINITY))
            .with("dec", Value::Decimal(Decimal::new(-12345, 2)))
            .with("s", Value::String("a \"quoted\" é\n".into()))
            .with("j", Value::Json("{\"x\":1}".into()))
            .with("bytes", Value::Bytes(vec![0, 255, 7]))
            .with("date", Value::Date(19_000))
            .with("time", Value::Time { value: 3_600_000_001, unit: TimeUnit::Micros })
            .with("ts", Value::Timestamp { value: 1_700_000_000_123, unit: TimeUnit::Millis })
            .with("lts", Value::LocalTimestamp { value: 1_700_000_000_123_456, unit: TimeUnit::Micros })
            .with("arr", Value::Array(vec![Value::Long(1), Value::Null, Value::String("x".into())]))
            .with("map", Value::Map(vec![("k".into(), Value::Double(2.0)), ("z".into(), Value::Array(vec![]))]));
        let value = Value::Struct(row.clone().with("nested", Value::Struct(row)));
        let direct = serde_json::to_string(&value).unwrap();
        let via_tree = serde_json::to_string(&value.to_json()).unwrap();
        assert_eq!(direct, via_tree);
    }

    #[test]
    fn decimal_displays_with_scale_when_unscaled_is_short() {
        assert_eq!(Decimal::new(123450, 2).to_string(), "1234.50");
        assert_eq!(Decimal::new(5, 3).to_string(), "0.005");
        assert_eq!(Decimal::new(-5, 3).to_string(), "-0.005");
        assert_eq!(Decimal::new(-123, 0).to_string(), "-123");
    }

    #[test]
    fn decimal_parses_what_it_displays() {
        for text in ["1234.50", "0.005", "-0.005", "-123", "99999999999999999999999999999.1"] {
            assert_eq!(Decimal::parse(text).map(|d| d.to_string()).as_deref(), Some(text));
        }
        assert_eq!(Decimal::parse(".5"), Some(Decimal::new(5, 1)));
        assert_eq!(Decimal::parse("-.5"), Some(Decimal::new(-5, 1)));
        assert_eq!(Decimal::parse("+7"), Some(Decimal::new(7, 0)));
        assert_eq!(Decimal::parse("1.2.3"), None);
        assert_eq!(Decimal::parse("abc"), None);
        assert_eq!(Decimal::parse("-"), None);
    }

    #[test]
    fn decimal_scale_is_bounded_and_may_be_negative() {
        assert_eq!(Decimal::from_scaled(BigInt::from(12), -2), Some(Decimal::new(1200, 0)));
        assert_eq!(Decimal::from_scaled(BigInt::from(12), i64::from(MAX_DECIMAL_SCALE) + 1), None);
        assert_eq!(Decimal::from_scaled(BigInt::from(12), i64::from(i32::MIN)), None);
        assert_eq!(Decimal::new(1, 0).rescale(u32::MAX), None);
        assert_eq!(Decimal::parse(&format!("0.{}", "1".repeat(20_000))), None);
    }

    #[test]
    fn decimal_round_trips_big_endian_bytes() {
        // "AeI6" in the Debezium fixtures = 0x01E23A = 123450 -> 1234.50
        let d = Decimal::from_be_bytes(&[0x01, 0xE2, 0x3A], 2);
        assert_eq!(d.to_string(), "1234.50");
        assert_eq!(d.to_be_bytes(), vec![0x01, 0xE2, 0x3A]);
        assert!(d.numeric_eq(&Decimal::new(1234500, 3)));
        assert_eq!(Decimal::new(1234500, 3).rescale(2), Some(d));
        assert_eq!(Decimal::new(1234501, 3).rescale(2), None);
    }

    #[test]
    fn time_unit_conversion_refuses_to_lose_precision() {
        assert_eq!(TimeUnit::Millis.convert(5, TimeUnit::Micros), Some(5_000));
        assert_eq!(TimeUnit::Micros.convert(5_000, TimeUnit::Millis), Some(5));
        assert_eq!(TimeUnit::Micros.convert(5_001, TimeUnit::Millis), None);
        assert_eq!(TimeUnit::Millis.convert(i64::MAX, TimeUnit::Nanos), None);
    }

    #[test]
    fn timestamps_render_with_their_unit() {
        let micros = Value::Timestamp { value: 1_705_307_400_123_456, unit: TimeUnit::Micros };
        assert_eq!(micros.to_json(), "2024-01-15T08:30:00.123456Z");
        let local = Value::LocalTimestamp { value: 1_705_307_400_123, unit: TimeUnit::Millis };
        assert_eq!(local.to_json(), "2024-01-15T08:30:00.123");
        let before_epoch = Value::Timestamp { value: -1, unit: TimeUnit::Millis };
        assert_eq!(before_epoch.to_json(), "1969-12-31T23:59:59.999Z");
        assert_eq!(Value::Date(19737).to_json(), "2024-01-15");
        let time = Value::Time { value: 30_600_000_000, unit: TimeUnit::Micros };
        assert_eq!(time.to_json(), "08:30:00.000000");
        assert_eq!(micros.epoch_millis(), Some(1_705_307_400_123));
    }

    #[test]
    fn fill_unavailable_keeps_last_known_value() {
        let previous = Row::new().with("id", Value::Int(1)).with("body", Value::String("long".into()));
        let mut next = Row::new().with("id", Value::Int(1)).with("body", Value::Unavailable);
        assert!(next.has_unavailable());
        assert!(next.fill_unavailable_from(&previous).is_empty());
        assert_eq!(next.get("body"), Some(&Value::String("long".into())));

        let mut orphan = Row::new().with("body", Value::Unavailable);
        let unknown = orphan.fill_unavailable_from(&Row::new());
        assert_eq!(unknown.len(), 1);
        assert_eq!(orphan.get("body"), Some(&Value::Unavailable));
    }
}

#[cfg(test)]
mod timestamp_format_tests {
    use super::*;

    #[test]
    fn timestamps_format_like_chrono_in_every_unit() {
        for (value, unit) in [
            (1_750_000_000_123, TimeUnit::Millis),
            (-1, TimeUnit::Millis),
            (1_750_000_000_123_456, TimeUnit::Micros),
            (1_750_000_000_123_456_789, TimeUnit::Nanos),
            (0, TimeUnit::Micros),
        ] {
            let (secs, nanos) = split(value, unit);
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            let pattern = match unit {
                TimeUnit::Millis => "%Y-%m-%dT%H:%M:%S%.3fZ",
                TimeUnit::Micros => "%Y-%m-%dT%H:%M:%S%.6fZ",
                TimeUnit::Nanos => "%Y-%m-%dT%H:%M:%S%.9fZ",
            };
            assert_eq!(
                format_timestamp(value, unit, true),
                t.naive_utc().format(pattern).to_string(),
                "{value} {unit:?}"
            );
        }
        assert_eq!(format_timestamp(1_750_000_000_120, TimeUnit::Millis, false), "2025-06-15T15:06:40.120");
    }
}
