//! Between happystreams values and CEL values. Only the names an expression reads are
//! converted (through a variable resolver), not the whole record.

use super::Scope;
use crate::record::{Row, Value};
use cel::common::value::CowVal;
use cel::context::VariableResolver;
use cel::objects::{Key, Map};
use std::collections::HashMap;
use std::sync::Arc;

struct Resolver<'a> {
    scope: Scope<'a>,
}

impl VariableResolver for Resolver<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value = to_cel(self.scope.resolve(variable)?);
        let boxed: Box<dyn cel::common::value::Val> = value.try_into().ok()?;
        Some(CowVal::Owned(boxed))
    }
}

/// The standard CEL environment, built once per process: building it per record would dominate
/// the cost of small expressions, and per thread it was rebuilt by every processing round's
/// short-lived threads.
fn env() -> Arc<cel::Env> {
    static ENV: std::sync::OnceLock<Arc<cel::Env>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib())).clone()
}

/// Evaluates a compiled program against a scope.
pub fn evaluate(program: &cel::Program, scope: &Scope<'_>) -> Result<Value, String> {
    let resolver = Resolver { scope: *scope };
    let mut context = cel::Context::with_env(env());
    context.set_variable_resolver(&resolver);
    let result = program.execute(&context).map_err(|e| e.to_string())?;
    from_cel(result)
}

fn row_to_map(row: &Row) -> cel::Value {
    let map: HashMap<Key, cel::Value> =
        row.iter().map(|(k, v)| (Key::String(Arc::new(k.to_owned())), to_cel(v))).collect();
    cel::Value::Map(Map { map: Arc::new(map) })
}

/// A happystreams value as CEL sees it.
pub fn to_cel(value: &Value) -> cel::Value {
    use cel::Value as C;
    match value {
        Value::Null | Value::Unavailable => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Int(i) => C::Int(i64::from(*i)),
        Value::Long(i) => C::Int(*i),
        Value::Float(f) => C::Float(f64::from(*f)),
        Value::Double(f) => C::Float(*f),
        Value::Decimal(d) => C::Float(d.to_f64()),
        Value::String(s) | Value::Json(s) => C::String(Arc::new(s.clone())),
        Value::Bytes(b) => C::Bytes(Arc::new(b.clone())),
        Value::Uuid(u) => C::String(Arc::new(u.to_string())),
        Value::Date(d) => C::Int(i64::from(*d)),
        Value::Time { value, unit } => C::Duration(chrono::Duration::nanoseconds(value.saturating_mul(unit.nanos()))),
        Value::Timestamp { value, unit } | Value::LocalTimestamp { value, unit } => {
            let nanos = i128::from(*value) * i128::from(unit.nanos());
            let secs = nanos.div_euclid(1_000_000_000) as i64;
            let sub = nanos.rem_euclid(1_000_000_000) as u32;
            match chrono::DateTime::from_timestamp(secs, sub) {
                Some(t) => C::Timestamp(t.fixed_offset()),
                None => C::Null,
            }
        }
        Value::Array(items) => C::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Map(entries) => {
            let map: HashMap<Key, cel::Value> =
                entries.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            C::Map(Map { map: Arc::new(map) })
        }
        Value::Struct(row) => row_to_map(row),
    }
}

/// A CEL result as a happystreams value.
pub fn from_cel(value: cel::Value) -> Result<Value, String> {
    use cel::Value as C;
    Ok(match value {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Int(i) => Value::Long(i),
        C::UInt(u) => i64::try_from(u).map(Value::Long).unwrap_or(Value::Double(u as f64)),
        C::Float(f) => Value::Double(f),
        C::String(s) => Value::String(Arc::unwrap_or_clone(s)),
        C::Bytes(b) => Value::Bytes(Arc::unwrap_or_clone(b)),
        C::Timestamp(t) => match t.timestamp_nanos_opt() {
            Some(n) if n % 1_000_000 == 0 => {
                Value::Timestamp { value: n / 1_000_000, unit: crate::record::TimeUnit::Millis }
            }
            Some(n) => Value::Timestamp { value: n, unit: crate::record::TimeUnit::Nanos },
            None => Value::Timestamp { value: t.timestamp_millis(), unit: crate::record::TimeUnit::Millis },
        },
        C::Duration(d) => Value::Long(d.num_milliseconds()),
        C::List(items) => Value::Array(items.iter().cloned().map(from_cel).collect::<Result<_, _>>()?),
        C::Map(map) => {
            let mut entries: Vec<(String, Value)> =
                map.map.iter().map(|(k, v)| Ok((key_text(k), from_cel(v.clone())?))).collect::<Result<_, String>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Struct(entries.into_iter().map(|(k, v)| (Arc::from(k.as_str()), v)).collect())
        }
        other => return Err(format!("the expression produced a CEL value happystreams cannot store: {other:?}")),
    })
}

fn key_text(key: &Key) -> String {
    match key {
        Key::String(s) => s.to_string(),
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
    }
}
