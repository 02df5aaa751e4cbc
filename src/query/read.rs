//! Reading one partition of a store from a snapshot of its committed state: key lookups, key
//! ranges and a key's windows, decoded to JSON as the store's node outputs them.
//!
//! Store layouts (see the operators): a table holds `key_bytes(key) → row`; a versioned table
//! `len ++ key_bytes(key) ++ valid_from → row or deletion`; an unwindowed aggregate
//! `key_bytes(group) → accumulator` (its TTL index under the prefix `0xFF`); a windowed or session
//! aggregate `end ++ start ++ key_bytes(group) → accumulator`. Times are big-endian with the sign
//! bit flipped, so they sort.

use super::catalog::{Catalog, StoreInfo, StoreKind};
use crate::operators::aggregate::result;
use crate::record::encoding::{decode, decode_row, from_ordered_i64, key_bytes, ordered_i64};
use crate::record::{Row, Value};
use crate::state::{Snapshot, StateError, VersionedStore};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::sync::Arc;

/// A query on one store.
#[derive(Debug, Clone)]
pub enum Query {
    /// One key (`as_of`: the row valid at that time, versioned tables).
    Key {
        /// The key.
        key: Value,
        /// Versioned tables: the row valid at this time (ms); the latest without.
        as_of: Option<i64>,
    },
    /// Keys from `from` to `to` (both included), in key order, at most `limit`.
    Range {
        /// First key (`None`: from the first).
        from: Option<Value>,
        /// Last key (`None`: to the last).
        to: Option<Value>,
        /// At most this many entries.
        limit: usize,
        /// Versioned tables: rows valid at this time.
        as_of: Option<i64>,
    },
    /// A key's windows (every key's without one) whose start is in `from..=to`, at most `limit`.
    Windows {
        /// The group (`None`: every group).
        key: Option<Value>,
        /// Earliest window start (ms).
        from: Option<i64>,
        /// Latest window start (ms).
        to: Option<i64>,
        /// At most this many windows.
        limit: usize,
    },
}

/// One answer entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The key, as the node outputs it.
    pub key: Json,
    /// The value, as the node outputs it.
    pub value: Json,
    /// Versioned tables: since when this row is valid (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<i64>,
    /// The stored key in hex (sorts like the bytes): entries of several partitions merge in
    /// store order by it.
    #[serde(default)]
    pub order: String,
}

/// Why a query cannot run (the caller's mistake: HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuery(pub String);

/// A failed read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The query does not fit the store.
    #[error(transparent)]
    Bad(#[from] BadQuery),
    /// The state could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// A stored value could not be turned into the node's output.
    #[error("{0}")]
    Decode(String),
}

const EXPIRY_PREFIX: u8 = 0xFF;

/// The answer to a query on an operator's working store.
pub fn not_queryable(catalog: &Catalog, store: &StoreInfo) -> BadQuery {
    let queryable = catalog.queryable().join(", ");
    BadQuery(format!("`{}` is an operator's working store, not queryable; queryable stores: {queryable}", store.name))
}

/// Parses a key given as JSON text for `store`: an aggregate's key is an object with its group
/// fields (any order) or, with one group field, that field's value; a table's key is its key's
/// JSON (`42`, `"a"`, or the key's object).
pub fn parse_key(store: &StoreInfo, text: &str) -> Result<Value, BadQuery> {
    let value = crate::codec::json::decode_plain(text.as_bytes()).map_err(|e| {
        BadQuery(format!(
            "the key `{text}` is not JSON ({e}); give it as JSON text, e.g. 42 or \"a\" or {{\"field\": 1}}"
        ))
    })?;
    if store.key_fields.len() < 2 {
        return Ok(value);
    }
    let fields = store.key_fields.join(", ");
    let Value::Struct(row) = value else {
        return Err(BadQuery(format!(
            "`{}` is keyed by {fields}: give the key as a JSON object with those fields",
            store.name
        )));
    };
    let mut ordered = Row::with_capacity(store.key_fields.len());
    for field in &store.key_fields {
        let value = row
            .get(field)
            .cloned()
            .ok_or_else(|| BadQuery(format!("the key lacks `{field}` (`{}` is keyed by {fields})", store.name)))?;
        ordered.push(Arc::from(field.as_str()), value);
    }
    if row.len() != store.key_fields.len() {
        return Err(BadQuery(format!("the key has fields other than {fields} (the key of `{}`)", store.name)));
    }
    Ok(Value::Struct(ordered))
}

/// Runs `query` on one partition's snapshot.
pub fn read(
    catalog: &Catalog,
    store: &StoreInfo,
    snapshot: &Snapshot<'_>,
    query: &Query,
) -> Result<Vec<Entry>, ReadError> {
    let name = store.name.as_str();
    match (store.kind, query) {
        (StoreKind::Internal, _) => Err(not_queryable(catalog, store).into()),
        (StoreKind::WindowedAggregate | StoreKind::SessionAggregate, Query::Key { .. } | Query::Range { .. }) => {
            Err(BadQuery(format!("`{name}` is windowed: ask for a key's windows (/v1/stores/{name}/windows?key=...)"))
                .into())
        }
        (StoreKind::Table | StoreKind::VersionedTable | StoreKind::Aggregate, Query::Windows { .. }) => Err(BadQuery(
            format!("`{name}` has no windows: look keys up (/v1/stores/{name}/keys/<key>) or ask for a range"),
        )
        .into()),
        (_, Query::Key { as_of: Some(_), .. } | Query::Range { as_of: Some(_), .. })
            if store.kind != StoreKind::VersionedTable =>
        {
            Err(BadQuery(format!("`{name}` keeps no history: `as_of` is for versioned tables")).into())
        }
        (StoreKind::Table, Query::Key { key, .. }) => {
            let order = key_bytes(key);
            let row = snapshot.get(name, &order)?;
            Ok(row.map(|bytes| table_entry(name, order, &bytes, None)).transpose()?.into_iter().collect())
        }
        (StoreKind::Table, Query::Range { from, to, limit, .. }) => {
            let (lower, upper) = bounds(from.as_ref(), to.as_ref(), None);
            let rows = snapshot.range(name, &lower, upper.as_deref(), *limit)?;
            rows.into_iter().map(|(order, bytes)| table_entry(name, order, &bytes, None)).collect()
        }
        (StoreKind::VersionedTable, Query::Key { key, as_of }) => {
            within_history(store, snapshot, *as_of)?;
            let order = key_bytes(key);
            let (from, to) = VersionedStore::bounds(&order, *as_of);
            let versions = snapshot.range(name, &from, Some(&to), usize::MAX)?;
            let latest = versions.last().map(|(k, v)| VersionedStore::new(name, 0).decode(k, v)).transpose()?;
            match latest {
                Some(version) => match version.value {
                    Some(bytes) => Ok(vec![table_entry(name, order, &bytes, Some(version.valid_from))?]),
                    None => Ok(Vec::new()),
                },
                None => Ok(Vec::new()),
            }
        }
        (StoreKind::VersionedTable, Query::Range { from, to, limit, as_of }) => {
            within_history(store, snapshot, *as_of)?;
            versioned_range(name, snapshot, from.as_ref(), to.as_ref(), *limit, *as_of)
        }
        (StoreKind::Aggregate, Query::Key { key, .. }) => {
            let order = key_bytes(key);
            let acc = snapshot.get(name, &order)?;
            Ok(acc
                .map(|bytes| aggregate_entry(catalog, store, order, &bytes))
                .transpose()?
                .flatten()
                .into_iter()
                .collect())
        }
        (StoreKind::Aggregate, Query::Range { from, to, limit, .. }) => {
            let (lower, upper) = bounds(from.as_ref(), to.as_ref(), Some(EXPIRY_PREFIX));
            let mut entries = Vec::new();
            for (order, bytes) in snapshot.range(name, &lower, upper.as_deref(), *limit)? {
                entries.extend(aggregate_entry(catalog, store, order, &bytes)?);
            }
            Ok(entries)
        }
        (StoreKind::WindowedAggregate | StoreKind::SessionAggregate, Query::Windows { key, from, to, limit }) => {
            let group = key.as_ref().map(key_bytes);
            // Keys start with the window end, and a window ends after it starts.
            let lower = from.map(|f| ordered_i64(f).to_vec()).unwrap_or_default();
            let mut entries = Vec::new();
            for (order, bytes) in snapshot.range(name, &lower, None, usize::MAX)? {
                if order.len() < 16 || group.as_ref().is_some_and(|g| order[16..] != g[..]) {
                    continue;
                }
                let start = from_ordered_i64(order[8..16].try_into().unwrap_or_default());
                if from.is_some_and(|f| start < f) || to.is_some_and(|t| start > t) {
                    continue;
                }
                entries.extend(aggregate_entry(catalog, store, order, &bytes)?);
            }
            // In window order (the store sorts by end first): start, then end, then group.
            entries.sort_by(|a, b| window_order(a).cmp(&window_order(b)));
            entries.truncate(*limit);
            Ok(entries)
        }
    }
}

/// A versioned table keeps `history_ms` before its stream time: an `as_of` earlier than that
/// would find the oldest row kept, not the row of that time.
fn within_history(store: &StoreInfo, snapshot: &Snapshot<'_>, as_of: Option<i64>) -> Result<(), ReadError> {
    let (Some(as_of), Some(history)) = (as_of, store.history_ms) else { return Ok(()) };
    let Some(now) = snapshot.checkpoint()?.and_then(|c| c.stream_time_ms) else { return Ok(()) };
    if as_of < now.saturating_sub(history) {
        return Err(BadQuery(format!(
            "as_of {as_of} is older than `{}` keeps: its history goes back {history} ms from its stream time {now}, to {}",
            store.name,
            now.saturating_sub(history)
        ))
        .into());
    }
    Ok(())
}

/// Store bounds for keys `from..=to`: a key's encoding delimits itself, so the first stored key
/// after `to` is at least `to ++ 0`. `stop` bounds an open range (the aggregates' TTL index).
fn bounds(from: Option<&Value>, to: Option<&Value>, stop: Option<u8>) -> (Vec<u8>, Option<Vec<u8>>) {
    let lower = from.map(key_bytes).unwrap_or_default();
    let upper = match to {
        Some(to) => {
            let mut upper = key_bytes(to);
            upper.push(0);
            Some(upper)
        }
        None => stop.map(|b| vec![b]),
    };
    (lower, upper)
}

/// A window entry's place: its start, end and group (the stored key is `end ++ start ++ group`,
/// in hex).
pub fn window_order(entry: &Entry) -> (&str, &str, &str) {
    let at = |range: std::ops::Range<usize>| entry.order.get(range).unwrap_or_default();
    (at(16..32), at(0..16), entry.order.get(32..).unwrap_or_default())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_error(store: &str, e: impl std::fmt::Display) -> ReadError {
    ReadError::Decode(format!("a stored entry of `{store}` is unreadable: {e}"))
}

fn table_entry(store: &str, order: Vec<u8>, bytes: &[u8], valid_from: Option<i64>) -> Result<Entry, ReadError> {
    let key = decode(&order).map_err(|e| decode_error(store, e))?;
    let row = decode_row(bytes).map_err(|e| decode_error(store, e))?;
    Ok(Entry { key: key.to_json(), value: Value::Struct(row).to_json(), valid_from, order: hex(&order) })
}

fn aggregate_entry(
    catalog: &Catalog,
    store: &StoreInfo,
    order: Vec<u8>,
    bytes: &[u8],
) -> Result<Option<Entry>, ReadError> {
    let acc = decode_row(bytes).map_err(|e| decode_error(&store.name, e))?;
    let event = result(&acc, catalog.measures(store), 0);
    let Some(event) = catalog
        .finish(store, event)
        .map_err(|e| ReadError::Decode(format!("computing `{}`'s output: {e}", store.node)))?
    else {
        return Ok(None);
    };
    Ok(Some(Entry {
        key: event.key.to_json(),
        value: Value::Struct(event.value).to_json(),
        valid_from: None,
        order: hex(&order),
    }))
}

/// A versioned table's keys `from..=to`, each with its row valid at `as_of` (the latest without).
/// Stored keys sort by length first, so the partition is read whole and the keys in range kept.
fn versioned_range(
    store: &str,
    snapshot: &Snapshot<'_>,
    from: Option<&Value>,
    to: Option<&Value>,
    limit: usize,
    as_of: Option<i64>,
) -> Result<Vec<Entry>, ReadError> {
    let (from, to) = (from.map(key_bytes), to.map(key_bytes));
    let in_range = |key: &[u8]| from.as_deref().is_none_or(|f| key >= f) && to.as_deref().is_none_or(|t| key <= t);
    let versioned = VersionedStore::new(store, 0);
    // Per key (its versions are adjacent, oldest first): the version valid at `as_of`.
    let mut latest: Vec<(Vec<u8>, Option<(i64, Vec<u8>)>)> = Vec::new();
    for (stored, bytes) in snapshot.range(store, b"", None, usize::MAX)? {
        let key = VersionedStore::key_of(&stored).ok_or_else(|| decode_error(store, "versioned key header"))?;
        if !in_range(key) {
            continue;
        }
        if latest.last().is_none_or(|(k, _)| k.as_slice() != key) {
            latest.push((key.to_vec(), None));
        }
        let version = versioned.decode(&stored, &bytes)?;
        if as_of.is_none_or(|t| version.valid_from <= t)
            && let Some((_, current)) = latest.last_mut()
        {
            *current = version.value.map(|v| (version.valid_from, v));
        }
    }
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries = Vec::new();
    for (key, row) in latest {
        if entries.len() >= limit {
            break;
        }
        if let Some((valid_from, bytes)) = row {
            entries.push(table_entry(store, key, &bytes, Some(valid_from))?);
        }
    }
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    //! Reads of every store kind, through the test driver's RocksDB state, against what the
    //! topology outputs.
    use super::*;
    use crate::state::{RocksDbBackend, StateBackend, StateConfig, StateMemory};
    use crate::testkit::TopologyTestDriver;
    use serde_json::json;

    const TOPOLOGY: &str = r#"
name: reads
sources:
  clicks: { topic: r.clicks, format: json, key: visitor_id, timestamp: event_time }
  visitors: { topic: r.visitors, format: debezium-json, table: versioned, history: 30d }
nodes:
  - name: views
    from: clicks
    join: { table: visitors, unknown: { source: unknown } }
    select: { visitor_id: visitor_id, source: visitors.source, event_time: event_time }
  - name: per_source
    from: views
    aggregate: { group_by: { source: source }, measures: { views: { count: {} } } }
    select: { source: source, views: views, double: "views * 2" }
  - name: per_source_day
    from: views
    aggregate:
      group_by: { source: source, visitor_id: visitor_id }
      window: { type: tumbling, size: 1h, grace: 1d }
      measures: { views: { count: {} } }
sinks:
  - { from: per_source, topic: r.per_source, format: json }
"#;
    const HOUR: i64 = 3_600_000;

    fn visitor(id: i64, source: &str, ts: i64) -> serde_json::Value {
        json!({"source": "visitors", "key": {"visitor_id": id}, "value": {"before": null,
            "after": {"visitor_id": id, "source": source}, "source": {"ts_ms": ts}, "op": "c", "ts_ms": ts}})
    }

    fn click(id: i64, ts: i64) -> serde_json::Value {
        json!({"source": "clicks", "key": {"visitor_id": id}, "value": {"visitor_id": id, "event_time": ts}, "timestamp": ts})
    }

    /// The driver after some traffic, its committed state's reader and the catalog.
    pub(crate) fn setup(dir: &std::path::Path) -> (TopologyTestDriver, crate::state::StateReader, Catalog) {
        let plan = crate::topology::parse(TOPOLOGY, None, dir).unwrap();
        let memory = StateMemory::new(&StateConfig::default());
        let backend = RocksDbBackend::open(dir, &plan.stores(), &memory).unwrap();
        let reader = backend.reader().unwrap();
        let mut driver = TopologyTestDriver::with_state(plan, Box::new(backend)).unwrap();
        for line in [visitor(1, "ads", 0), visitor(2, "search", 0), visitor(1, "email", 5 * HOUR)] {
            driver.pipe_json(&line).unwrap();
        }
        for (id, ts) in [(1, HOUR), (2, HOUR), (1, 2 * HOUR), (1, 6 * HOUR), (3, 6 * HOUR)] {
            driver.pipe_json(&click(id, ts)).unwrap();
        }
        driver.commit().unwrap();
        let catalog = Catalog::single_task(Arc::new(crate::topology::parse(TOPOLOGY, None, dir).unwrap()));
        (driver, reader, catalog)
    }

    fn run(
        catalog: &Catalog,
        reader: &crate::state::StateReader,
        node: &str,
        query: Query,
    ) -> Result<Vec<Entry>, String> {
        let store = catalog.stores.iter().find(|s| s.node == node && s.kind != StoreKind::Internal).unwrap();
        reader.snapshot(|snapshot| read(catalog, store, snapshot, &query).map_err(|e| e.to_string())).unwrap()
    }

    fn key(catalog: &Catalog, node: &str, text: &str) -> Value {
        let store = catalog.stores.iter().find(|s| s.node == node && s.kind != StoreKind::Internal).unwrap();
        parse_key(store, text).unwrap()
    }

    #[test]
    fn aggregates_answer_as_their_node_outputs_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut driver, reader, catalog) = setup(dir.path());
        let mut latest = std::collections::BTreeMap::new();
        for output in driver.read_output("r.per_source") {
            latest.insert(output.key.to_json().to_string(), output.value.map(|v| Value::Struct(v).to_json()));
        }
        // Every key equals the sink's latest value, `select` applied (`double`).
        for (k, v) in &latest {
            let found = run(
                &catalog,
                &reader,
                "per_source",
                Query::Key { key: key(&catalog, "per_source", &k.to_string()), as_of: None },
            );
            assert_eq!(found.unwrap()[0].value, v.clone().unwrap(), "{k}");
        }
        let email = run(
            &catalog,
            &reader,
            "per_source",
            Query::Key { key: key(&catalog, "per_source", r#""email""#), as_of: None },
        )
        .unwrap();
        assert_eq!(email[0].value, json!({"source": "email", "views": 1, "double": 2}));
        let none = run(&catalog, &reader, "per_source", Query::Key { key: Value::String("tv".into()), as_of: None });
        assert!(none.unwrap().is_empty());
        // A range, both ends included, in store order; the TTL index is never read as keys.
        let all = run(&catalog, &reader, "per_source", Query::Range { from: None, to: None, limit: 100, as_of: None })
            .unwrap();
        assert_eq!(all.len(), latest.len());
        let from_to = Query::Range {
            from: Some(Value::String("email".into())),
            to: Some(Value::String("search".into())),
            limit: 100,
            as_of: None,
        };
        let sources: Vec<_> =
            run(&catalog, &reader, "per_source", from_to).unwrap().iter().map(|e| e.key.clone()).collect();
        assert_eq!(sources, vec![json!({"source": "email"}), json!({"source": "search"})]);
        let limited =
            run(&catalog, &reader, "per_source", Query::Range { from: None, to: None, limit: 1, as_of: None });
        assert_eq!(limited.unwrap().len(), 1);
    }

    #[test]
    fn a_groups_windows_come_in_window_order_and_keys_take_fields_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let (_driver, reader, catalog) = setup(dir.path());
        let group = key(&catalog, "per_source_day", r#"{"visitor_id": 1, "source": "ads"}"#);
        assert_eq!(group, key(&catalog, "per_source_day", r#"{"source": "ads", "visitor_id": 1}"#));
        let windows = run(
            &catalog,
            &reader,
            "per_source_day",
            Query::Windows { key: Some(group.clone()), from: None, to: None, limit: 100 },
        )
        .unwrap();
        let counts: Vec<_> =
            windows.iter().map(|w| (w.value["window_start"].clone(), w.value["views"].clone())).collect();
        assert_eq!(counts.len(), 2, "hours 1 and 2 as ads (hour 6 is email): {windows:?}");
        assert_eq!(counts[0].1, json!(1));
        let later = run(
            &catalog,
            &reader,
            "per_source_day",
            Query::Windows { key: Some(group), from: Some(2 * HOUR), to: None, limit: 100 },
        )
        .unwrap();
        assert_eq!(later.len(), 1);
        let every =
            run(&catalog, &reader, "per_source_day", Query::Windows { key: None, from: None, to: None, limit: 100 })
                .unwrap();
        assert_eq!(every.len(), 5, "{every:?}");
        let store =
            catalog.stores.iter().find(|s| s.node == "per_source_day" && s.kind != StoreKind::Internal).unwrap();
        let missing = parse_key(store, r#"{"source": "ads"}"#).unwrap_err();
        assert!(missing.0.contains("lacks `visitor_id`"), "{missing}");
        let extra = parse_key(store, r#"{"source": "ads", "visitor_id": 1, "x": 2}"#).unwrap_err();
        assert!(extra.0.contains("other than"), "{extra}");
        assert!(parse_key(store, "{oops").unwrap_err().0.contains("not JSON"));
        let wrong = run(&catalog, &reader, "per_source_day", Query::Key { key: Value::Long(1), as_of: None });
        assert!(wrong.unwrap_err().contains("windowed"));
    }

    #[test]
    fn versioned_tables_answer_as_of_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (_driver, reader, catalog) = setup(dir.path());
        let at = |as_of| run(&catalog, &reader, "visitors", Query::Key { key: Value::Long(1), as_of }).unwrap();
        assert_eq!(at(None)[0].value["source"], json!("email"));
        assert_eq!(at(Some(HOUR))[0].value["source"], json!("ads"));
        assert_eq!(at(Some(HOUR))[0].valid_from, Some(0));
        // A one-field key object is the same key as its value.
        let by_object = run(
            &catalog,
            &reader,
            "visitors",
            Query::Key { key: key(&catalog, "visitors", r#"{"visitor_id": 1}"#), as_of: None },
        );
        assert_eq!(by_object.unwrap()[0].value["source"], json!("email"));
        let range = run(
            &catalog,
            &reader,
            "visitors",
            Query::Range { from: Some(Value::Long(2)), to: None, limit: 10, as_of: Some(HOUR) },
        )
        .unwrap();
        assert_eq!(range.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), vec![json!(2)]);
        // Older than the history kept (30 days before the stream time): refused, not the oldest row.
        let too_old =
            run(&catalog, &reader, "visitors", Query::Key { key: Value::Long(1), as_of: Some(-31 * 24 * HOUR) });
        assert!(too_old.unwrap_err().contains("older than"));
        let no_history =
            run(&catalog, &reader, "per_source", Query::Key { key: Value::String("ads".into()), as_of: Some(1) });
        assert!(no_history.unwrap_err().contains("as_of"));
    }
}
