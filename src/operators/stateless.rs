//! Stateless steps: each takes one event and returns zero, one or many.

use super::{Event, OperatorError};
use crate::expression::{Expression, Scope};
use crate::record::{Row, Value};
use std::sync::Arc;

/// The scope an expression sees for an event: its fields, plus `key`.
pub fn scope<'a>(event: &'a Event, named: &'a [(&'a str, &'a Value)]) -> Scope<'a> {
    Scope { record: Some(&event.value), named }
}

fn key_binding(event: &Event) -> [(&str, &Value); 1] {
    [("key", &event.key)]
}

/// Keeps the event when `predicate` is true.
pub fn filter(predicate: &Expression, event: Event) -> Result<Option<Event>, OperatorError> {
    let named = key_binding(&event);
    let keep = predicate.test(&scope(&event, &named))?;
    Ok(keep.then_some(event))
}

/// Replaces the key.
pub fn rekey(key: &Expression, mut event: Event) -> Result<Event, OperatorError> {
    let named = key_binding(&event);
    let new_key = key.evaluate(&scope(&event, &named))?;
    event.key = new_key;
    Ok(event)
}

/// Builds the output row from expressions (in order).
pub fn select(fields: &[(String, Expression)], mut event: Event) -> Result<Event, OperatorError> {
    let named = key_binding(&event);
    let mut row = Row::with_capacity(fields.len());
    {
        let scope = scope(&event, &named);
        for (name, expression) in fields {
            row.push(Arc::from(name.as_str()), expression.evaluate(&scope)?);
        }
    }
    event.value = row;
    Ok(event)
}

/// One event per element of the list `expression` yields. A struct element becomes the row;
/// any other element becomes `{value: element}`. Null yields nothing.
pub fn flat_map(expression: &Expression, event: Event) -> Result<Vec<Event>, OperatorError> {
    let named = key_binding(&event);
    let items = match expression.evaluate(&scope(&event, &named))? {
        Value::Array(items) => items,
        Value::Null => return Ok(Vec::new()),
        other => {
            return Err(OperatorError::Data(format!(
                "flat_map `{}` must yield a list, got a {}",
                expression.source(),
                other.type_name()
            )));
        }
    };
    Ok(items
        .into_iter()
        .map(|item| {
            let value = match item {
                Value::Struct(row) => row,
                other => Row::new().with("value", other),
            };
            Event::new(event.key.clone(), value, event.timestamp)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::new(
            Value::Long(1),
            Row::new()
                .with("n", Value::Long(3))
                .with("tags", Value::Array(vec![Value::String("a".into()), Value::String("b".into())])),
            10,
        )
    }

    #[test]
    fn filter_rekey_select_and_flat_map() {
        assert!(filter(&Expression::compile("n > 2").unwrap(), event()).unwrap().is_some());
        assert!(filter(&Expression::compile("n > 3").unwrap(), event()).unwrap().is_none());
        assert!(filter(&Expression::compile("key == 1").unwrap(), event()).unwrap().is_some(), "the key is in scope");
        assert_eq!(rekey(&Expression::compile("n * 10").unwrap(), event()).unwrap().key, Value::Long(30));
        let selected = select(&[("double".into(), Expression::compile("n * 2").unwrap())], event()).unwrap();
        assert_eq!(selected.value, Row::new().with("double", Value::Long(6)));
        let many = flat_map(&Expression::compile("tags").unwrap(), event()).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[1].value, Row::new().with("value", Value::String("b".into())));
        assert!(flat_map(&Expression::compile("n").unwrap(), event()).is_err());
    }
}
