//! Expressions in topologies: filters, projections, computed fields and keys.
//!
//! Written in CEL (the Common Expression Language, via the `cel` crate), compiled once when the
//! topology is built and evaluated per record. Two fast paths skip the interpreter, because
//! most expressions in a topology are one of them:
//! - a field path (`visitor_id`, `visitors.country`) copies the value itself, keeping its exact
//!   type (a decimal stays a decimal; CEL has no decimal type);
//! - a literal (`'unknown'`, `0`, `true`).
//!
//! Names resolve against a [`Scope`]: first the named rows (a join's table side, `key`), then
//! the fields of the current record. An unknown top-level name is an error; a nested column a
//! row lacks reads as null (rows from before a column was added, a left join's unknown member). Inside CEL, decimals are doubles and timestamps are CEL
//! timestamps; results come back as [`Value`]s.

mod cel_bridge;

use crate::error::ErrorClass;
use crate::record::{Row, Value};

/// A compiled expression.
#[derive(Debug)]
pub struct Expression {
    source: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Field(Vec<String>),
    Literal(Value),
    Cel(cel::Program),
}

/// An expression failed to compile or to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    /// The text is not a valid expression.
    #[error("`{text}` is not a valid expression: {detail}")]
    Syntax {
        /// The expression text.
        text: String,
        /// The parser's message.
        detail: String,
    },
    /// Evaluation failed for one record (missing field, wrong type, ...).
    #[error("`{text}` failed: {detail}")]
    Evaluation {
        /// The expression text.
        text: String,
        /// What went wrong.
        detail: String,
    },
}

impl ExpressionError {
    /// Syntax errors are config errors; evaluation errors are about one record's data.
    pub fn class(&self) -> ErrorClass {
        match self {
            ExpressionError::Syntax { .. } => ErrorClass::Config,
            ExpressionError::Evaluation { .. } => ErrorClass::Data,
        }
    }
}

/// What names resolve to while evaluating.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The current record's fields (names not found elsewhere resolve here).
    pub record: Option<&'a Row>,
    /// Named values: join sides (`visitors`), `key`, ...
    pub named: &'a [(&'a str, &'a Value)],
}

impl<'a> Scope<'a> {
    /// A scope over one record.
    pub fn of(record: &'a Row) -> Self {
        Scope { record: Some(record), named: &[] }
    }

    /// Resolves a top-level name.
    pub fn resolve(&self, name: &str) -> Option<&'a Value> {
        self.named.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).or_else(|| self.record.and_then(|r| r.get(name)))
    }
}

fn field_path(source: &str) -> Option<Vec<String>> {
    let is_ident = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = source.trim().split('.').collect();
    let reserved = ["true", "false", "null", "in"];
    (parts.iter().all(|p| is_ident(p)) && !reserved.contains(&parts[0]))
        .then(|| parts.into_iter().map(str::to_owned).collect())
}

fn literal(source: &str) -> Option<Value> {
    let s = source.trim();
    match s {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "null" => return Some(Value::Null),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Long(i));
    }
    let quoted = |q: char| s.len() >= 2 && s.starts_with(q) && s.ends_with(q) && !s[1..s.len() - 1].contains([q, '\\']);
    if quoted('\'') || quoted('"') {
        return Some(Value::String(s[1..s.len() - 1].to_owned()));
    }
    None
}

impl Expression {
    /// Compiles an expression.
    pub fn compile(source: &str) -> Result<Expression, ExpressionError> {
        let kind = if let Some(path) = field_path(source) {
            Kind::Field(path)
        } else if let Some(value) = literal(source) {
            Kind::Literal(value)
        } else {
            Kind::Cel(
                cel::Program::compile(source)
                    .map_err(|e| ExpressionError::Syntax { text: source.to_owned(), detail: e.to_string() })?,
            )
        };
        Ok(Expression { source: source.to_owned(), kind })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The field path, when the expression is just one.
    pub fn as_field(&self) -> Option<&[String]> {
        match &self.kind {
            Kind::Field(path) => Some(path),
            _ => None,
        }
    }

    /// Top-level names the expression reads.
    pub fn references(&self) -> Vec<String> {
        match &self.kind {
            Kind::Field(path) => vec![path[0].clone()],
            Kind::Literal(_) => Vec::new(),
            Kind::Cel(program) => {
                let refs = program.references();
                let mut names: Vec<String> = refs.variables().into_iter().map(str::to_owned).collect();
                names.sort();
                names
            }
        }
    }

    /// Evaluates against a scope.
    pub fn evaluate(&self, scope: &Scope<'_>) -> Result<Value, ExpressionError> {
        let fail = |detail: String| ExpressionError::Evaluation { text: self.source.clone(), detail };
        match &self.kind {
            Kind::Literal(v) => Ok(v.clone()),
            Kind::Field(path) => {
                let mut current =
                    scope.resolve(&path[0]).ok_or_else(|| fail(format!("no field or name `{}`", path[0])))?;
                for part in &path[1..] {
                    current = match current {
                        // A nested column a row does not have reads as null: rows written before a
                        // column was added, or the unknown member of a left join.
                        Value::Struct(row) => match row.get(part) {
                            Some(v) => v,
                            None => return Ok(Value::Null),
                        },
                        Value::Null => return Ok(Value::Null),
                        other => return Err(fail(format!("`{part}` read from a {}", other.type_name()))),
                    };
                }
                Ok(current.clone())
            }
            Kind::Cel(program) => cel_bridge::evaluate(program, scope).map_err(fail),
        }
    }

    /// Evaluates a filter: true keeps the record. Null counts as false.
    pub fn test(&self, scope: &Scope<'_>) -> Result<bool, ExpressionError> {
        match self.evaluate(scope)? {
            Value::Bool(b) => Ok(b),
            Value::Null => Ok(false),
            other => Err(ExpressionError::Evaluation {
                text: self.source.clone(),
                detail: format!("a filter must be true or false, got a {}", other.type_name()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Decimal, TimeUnit};

    fn click() -> Row {
        Row::new()
            .with("event_type", Value::String("page_view".into()))
            .with("visitor_id", Value::Long(7))
            .with("price", Value::Decimal(Decimal::new(1999, 2)))
            .with("event_time", Value::Timestamp { value: 1_719_792_000_000, unit: TimeUnit::Millis })
            .with("geo", Value::Struct(Row::new().with("country", Value::String("FR".into()))))
    }

    #[test]
    fn field_paths_copy_values_with_their_exact_type() {
        let row = click();
        let e = Expression::compile("price").unwrap();
        assert!(e.as_field().is_some());
        assert_eq!(e.evaluate(&Scope::of(&row)).unwrap(), Value::Decimal(Decimal::new(1999, 2)));
        assert_eq!(
            Expression::compile("geo.country").unwrap().evaluate(&Scope::of(&row)).unwrap(),
            Value::String("FR".into())
        );
        let missing = Expression::compile("nope").unwrap().evaluate(&Scope::of(&row)).unwrap_err();
        assert_eq!(missing.class(), ErrorClass::Data);
    }

    #[test]
    fn named_rows_shadow_record_fields_and_null_rows_read_as_null() {
        let row = click();
        let visitor = Value::Struct(Row::new().with("source", Value::String("email".into())));
        let named = [("visitors", &visitor)];
        let scope = Scope { record: Some(&row), named: &named };
        assert_eq!(
            Expression::compile("visitors.source").unwrap().evaluate(&scope).unwrap(),
            Value::String("email".into())
        );
        let nothing = Value::Null;
        let named = [("visitors", &nothing)];
        let scope = Scope { record: Some(&row), named: &named };
        assert_eq!(Expression::compile("visitors.source").unwrap().evaluate(&scope).unwrap(), Value::Null);
    }

    #[test]
    fn cel_filters_and_computed_fields() {
        let row = click();
        let scope = Scope::of(&row);
        assert!(Expression::compile("event_type == 'page_view' && visitor_id > 3").unwrap().test(&scope).unwrap());
        assert!(!Expression::compile("event_type in ['ad_click', 'affiliate_click']").unwrap().test(&scope).unwrap());
        assert_eq!(Expression::compile("visitor_id * 2 + 1").unwrap().evaluate(&scope).unwrap(), Value::Long(15));
        assert_eq!(Expression::compile("price > 10.0").unwrap().evaluate(&scope).unwrap(), Value::Bool(true));
        assert_eq!(
            Expression::compile("geo.country + '-' + event_type").unwrap().evaluate(&scope).unwrap(),
            Value::String("FR-page_view".into())
        );
        assert_eq!(
            Expression::compile("event_time > timestamp('2024-06-30T00:00:00Z')").unwrap().evaluate(&scope).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            Expression::compile("'unknown'").unwrap().evaluate(&scope).unwrap(),
            Value::String("unknown".into())
        );
    }

    #[test]
    fn syntax_errors_name_the_expression() {
        let err = Expression::compile("event_type ==").unwrap_err();
        assert_eq!(err.class(), ErrorClass::Config);
        assert!(err.to_string().contains("event_type =="), "{err}");
        let refs = Expression::compile("a.b > c && size(d) > 0").unwrap().references();
        assert_eq!(refs, vec!["a".to_string(), "c".to_string(), "d".to_string()]);
    }
}
