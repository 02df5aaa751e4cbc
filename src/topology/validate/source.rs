//! Sources: their schema, key, history, access-log rules and the fields later expressions see.

use super::{Builder, FieldType, Known, type_of};
use crate::codec::access_log::{AccessLogParser, PathRule};
use crate::codec::connect::{ConnectKind, ConnectSchema, Logical};
use crate::topology::TopologyError;
use crate::topology::plan::{PlannedSource, Shape};
use crate::topology::spec::{SourceFormat, SourceKind, SourceSpec};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Validates one source and records what later nodes know of it.
pub(super) fn build_source(
    b: &mut Builder<'_>,
    name: String,
    source: SourceSpec,
    line: u64,
) -> Result<PlannedSource, TopologyError> {
    let (schema, fields) = match &source.schema {
        Some(file) => {
            let (schema, fields) = b.load_schema(file, line, &name)?;
            (Some(schema), Some(fields))
        }
        None => (None, None),
    };
    let key = source.key.as_deref().map(|k| b.expr(k, line, &name)).transpose()?;
    if key.is_some() && source.kind.is_table() {
        return Err(b.error(
            Some(line),
            Some(&name),
            "a table is keyed by its record key; `key` is for streams (use `primary_key` to name the key column)",
        ));
    }
    let history_ms = source.history.as_deref().map(|h| b.duration(h, line, &name, "history")).transpose()?;
    if history_ms.is_some() && !matches!(source.kind, SourceKind::Versioned | SourceKind::Global) {
        return Err(b.error(Some(line), Some(&name), "`history` needs `table: versioned` (or `global`)"));
    }
    let key_type = match (&source.primary_key, &fields) {
        (Some(pk), Some(f)) => Some(*f.get(pk).ok_or_else(|| {
            b.error(Some(line), Some(&name), format!("primary_key `{pk}` is not a field of the schema"))
        })?),
        (None, _) => key.as_ref().and_then(|k| type_of(k, &fields)),
        _ => None,
    };
    let group = (source.kind != SourceKind::Global).then(|| b.new_group());
    let access_log = match (source.format, source.actions.is_empty()) {
        (SourceFormat::AccessLog, _) => {
            let rules = source
                .actions
                .iter()
                .map(|a| PathRule::new(&a.path, &a.event_type))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| b.error(Some(line), Some(&name), format!("actions: {e}")))?;
            Some(Arc::new(AccessLogParser::new(rules)))
        }
        (_, true) => None,
        (_, false) => {
            return Err(b.error(Some(line), Some(&name), "`actions` are path rules for `format: access-log`"));
        }
    };
    let fields = match &access_log {
        Some(parser) => Some(access_log_fields(parser)),
        None => fields,
    };
    // A change stream's events carry the change kind (`Pipeline::event_row_for_change`).
    let fields = match fields {
        Some(mut fields) if source.format.is_cdc() && !source.kind.is_table() => {
            fields.insert("__op".into(), FieldType::String);
            fields.insert("__deleted".into(), FieldType::Bool);
            fields.insert("__source_ts_ms".into(), FieldType::Time);
            Some(fields)
        }
        other => other,
    };
    let shape = if source.kind.is_table() { Shape::Table } else { Shape::Stream };
    b.known.insert(
        name.clone(),
        // A source's `key` states how its topic is partitioned, so it is not dirty.
        Known {
            shape,
            kind: source.kind,
            key_source: source.key.clone().or(source.primary_key.clone()),
            key_dirty: false,
            key_type,
            fields,
            group,
        },
    );
    Ok(PlannedSource {
        store: source.kind.is_table().then(|| format!("{name}-table")),
        timestamp: source.timestamp.as_deref().map(|t| b.expr(t, line, &name)).transpose()?,
        name,
        topic: source.topic,
        format: source.format,
        kind: source.kind,
        key,
        history_ms: history_ms.or((source.kind == SourceKind::Versioned).then_some(86_400_000)),
        on_error: source.on_error,
        subtopology: group,
        schema,
        access_log,
    })
}

/// The fields of an access-log row (`codec::access_log`), captures included.
fn access_log_fields(parser: &AccessLogParser) -> BTreeMap<String, FieldType> {
    let mut known: BTreeMap<String, FieldType> = [
        ("remote_addr", FieldType::String),
        ("remote_user", FieldType::String),
        ("event_time", FieldType::Time),
        ("method", FieldType::String),
        ("url", FieldType::String),
        ("path", FieldType::String),
        ("protocol", FieldType::String),
        ("status", FieldType::Integer),
        ("bytes", FieldType::Integer),
        ("referrer", FieldType::String),
        ("user_agent", FieldType::String),
        ("visitor_id", FieldType::Other),
        ("event_type", FieldType::String),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_owned(), t))
    .collect();
    for captured in parser.captured_fields() {
        known.insert(captured.to_owned(), FieldType::Other);
    }
    known
}

impl Builder<'_> {
    fn load_schema(
        &self,
        schema_file: &str,
        line: u64,
        node: &str,
    ) -> Result<(Arc<ConnectSchema>, BTreeMap<String, FieldType>), TopologyError> {
        let path = self.base_dir.join(schema_file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.error(Some(line), Some(node), format!("schema {}: {e}", path.display())))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| self.error(Some(line), Some(node), format!("schema {}: not JSON: {e}", path.display())))?;
        let schema = ConnectSchema::from_avro_json(&json)
            .map_err(|e| self.error(Some(line), Some(node), format!("schema {}: {e}", path.display())))?;
        let fields = schema
            .fields()
            .ok_or_else(|| self.error(Some(line), Some(node), format!("schema {} is not a record", path.display())))?;
        let types = fields.iter().map(|f| (f.name.to_string(), field_type(&f.schema))).collect();
        Ok((Arc::new(schema), types))
    }
}

fn field_type(schema: &ConnectSchema) -> FieldType {
    match (schema.logical, &schema.kind) {
        (Logical::Decimal { .. } | Logical::VariableScaleDecimal, _) => FieldType::Decimal,
        (Logical::Uuid, _) => FieldType::Uuid,
        (
            Logical::Date
            | Logical::Time(_)
            | Logical::Timestamp(_)
            | Logical::LocalTimestamp(_)
            | Logical::ZonedTimestamp,
            _,
        ) => FieldType::Time,
        (_, ConnectKind::Int8 | ConnectKind::Int16 | ConnectKind::Int32 | ConnectKind::Int64) => FieldType::Integer,
        (_, ConnectKind::Float32 | ConnectKind::Float64) => FieldType::Float,
        (_, ConnectKind::String | ConnectKind::Null) => FieldType::String,
        (_, ConnectKind::Boolean) => FieldType::Bool,
        _ => FieldType::Other,
    }
}
