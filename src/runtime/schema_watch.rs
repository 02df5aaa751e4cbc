//! New input schemas: a record of a schema-carrying input whose schema was never seen on its
//! topic before is logged, counted (`happystreams_input_schema_changes_total{topic}`) and
//! reported as a lineage event with the new fields ([`crate::observe::lineage`]).
//!
//! A schema is known by a fingerprint: the Schema Registry id for Avro and Debezium Avro, the
//! field names of the row for JSON with schemas and Debezium JSON (a Debezium row has every
//! column, null or not, so its names change only when the table does). Plain JSON, text and
//! access logs carry no schema (a missing optional field is not a schema change) and are not
//! watched. The first schema of a topic after a start is recorded silently; records going back
//! and forth between two known schemas (producers mid-rollout) report nothing more.

use crate::record::Row;
#[cfg(test)]
use crate::record::Value;
use crate::topology::spec::SourceFormat;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The fingerprint of an input record's schema, if its format has one.
pub enum Fingerprint<'a> {
    /// A Schema Registry id.
    SchemaId(u32),
    /// A row's field names.
    Fields(&'a Row),
}

impl Fingerprint<'_> {
    fn value(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        match self {
            Fingerprint::SchemaId(id) => (0u8, id).hash(&mut hasher),
            Fingerprint::Fields(row) => {
                1u8.hash(&mut hasher);
                row.names().for_each(|n| n.hash(&mut hasher));
            }
        }
        // 0 means "nothing seen yet".
        hasher.finish().max(1)
    }
}

/// Whether records of a source of `format` carry a schema worth watching (`declared`: the
/// source declares its row schema, which Debezium JSON rows are decoded to: their new columns
/// never show, so they are not watched).
pub fn watched(format: SourceFormat, declared: bool) -> bool {
    match format {
        SourceFormat::Avro
        | SourceFormat::JsonSchema
        | SourceFormat::DebeziumAvro
        | SourceFormat::DebeziumJsonSchema => true,
        SourceFormat::DebeziumJson => !declared,
        _ => false,
    }
}

#[derive(Default)]
struct Topic {
    /// The last fingerprint seen (the fast path: most records repeat it).
    last: AtomicU64,
    /// Every fingerprint seen since the start.
    seen: Mutex<HashSet<u64>>,
}

/// The schemas seen per input topic.
#[derive(Default)]
pub struct SchemaWatch {
    topics: HashMap<String, Topic>,
}

impl SchemaWatch {
    /// Watches `topics`.
    pub fn new(topics: impl IntoIterator<Item = String>) -> Self {
        SchemaWatch { topics: topics.into_iter().map(|t| (t, Topic::default())).collect() }
    }

    /// Notes a record of `topic` with schema `fingerprint` and decoded `row` (whose values give
    /// the reported field types, `null` where the record has none); returns true when the schema
    /// is new on the topic (and has been reported).
    pub fn observe(&self, topic: &str, fingerprint: Fingerprint<'_>, row: Option<&Row>) -> bool {
        let Some(watched) = self.topics.get(topic) else { return false };
        let value = fingerprint.value();
        // A load first: the common case writes nothing to the line the threads share.
        if watched.last.load(Ordering::Relaxed) == value {
            return false;
        }
        watched.last.store(value, Ordering::Relaxed);
        let mut seen = watched.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = seen.is_empty();
        if !seen.insert(value) || first {
            return false;
        }
        drop(seen);
        let fields: Vec<(String, String)> = row
            .map(|r| r.iter().map(|(name, value)| (name.to_owned(), value.type_name().to_owned())).collect())
            .unwrap_or_default();
        let described = match fingerprint {
            Fingerprint::SchemaId(id) => format!("schema id {id}"),
            Fingerprint::Fields(_) => "new fields".to_owned(),
        };
        tracing::info!(topic, schema = %described, fields = ?fields.iter().map(|f| &f.0).collect::<Vec<_>>(), "input schema changed");
        metrics::counter!("happystreams_input_schema_changes_total", "topic" => topic.to_owned()).increment(1);
        crate::observe::lineage::report_schema_change(topic, fields);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(names: &[&str]) -> Row {
        names.iter().fold(Row::new(), |row, name| row.with(*name, Value::Int(1)))
    }

    #[test]
    fn the_first_schema_is_silent_a_new_one_is_reported_once_and_known_ones_never() {
        let watch = SchemaWatch::new(["t".to_owned()]);
        assert!(!watch.observe("t", Fingerprint::SchemaId(1), None));
        assert!(!watch.observe("t", Fingerprint::SchemaId(1), None));
        assert!(watch.observe("t", Fingerprint::SchemaId(2), None), "a new schema id is a change");
        assert!(!watch.observe("t", Fingerprint::SchemaId(2), None));
        // Producers mid-rollout: back and forth between known schemas.
        assert!(!watch.observe("t", Fingerprint::SchemaId(1), None));
        assert!(!watch.observe("t", Fingerprint::SchemaId(2), None));
        assert!(!watch.observe("other", Fingerprint::SchemaId(3), None), "unwatched topics are ignored");
    }

    #[test]
    fn a_new_column_is_a_change_and_values_are_not() {
        let watch = SchemaWatch::new(["cdc".to_owned()]);
        let before = row(&["id", "name"]);
        assert!(!watch.observe("cdc", Fingerprint::Fields(&before), Some(&before)));
        let other_values = Row::new().with("id", Value::Long(7)).with("name", Value::Null);
        assert!(!watch.observe("cdc", Fingerprint::Fields(&other_values), Some(&other_values)));
        let added = row(&["id", "name", "email"]);
        assert!(watch.observe("cdc", Fingerprint::Fields(&added), Some(&added)));
        let changes = crate::observe::lineage::take_schema_changes();
        assert!(changes.iter().any(|(topic, fields)| topic == "cdc" && fields.len() == 3), "{changes:?}");
    }
}
