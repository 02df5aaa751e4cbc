//! Every record of every real Debezium capture in `tests/fixtures/debezium` decodes, and decodes
//! to the values the scenario (`_sql/03_scenario.sql`) put in the database.
//!
//! Captures: five runs of the same scenario with different converter settings (JSON with and
//! without schemas; `decimal.handling.mode` precise/double; `time.precision.mode`
//! adaptive/connect; with and without transaction metadata).

use happystreams::codec::connect::ConnectSchema;
use happystreams::codec::debezium::DebeziumDecoder;
use happystreams::commands::decode::read_jsonl;
use happystreams::record::{CdcEvent, Change, Decimal, KeyChange, Op, Record, Row, TimeUnit, TransactionStatus, Value};
use std::path::PathBuf;

pub const FOLDERS: [&str; 5] = [
    "json-schemas-precise",
    "json-plain-precise",
    "json-schemas-double",
    "json-schemas-connecttime",
    "json-plain-defaults",
];

pub fn fixture_dir(folder: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debezium").join(folder)
}

pub fn records(folder: &str) -> Vec<Record> {
    read_jsonl(&fixture_dir(folder).join("records.jsonl")).expect("fixture records.jsonl")
}

pub fn decoder_for(folder: &str) -> DebeziumDecoder {
    DebeziumDecoder::json(folder.starts_with("json-schemas"))
}

/// Decodes every record of a capture; any error fails the test with the record's position.
pub fn decode_all(folder: &str) -> Vec<(Record, CdcEvent)> {
    let decoder = decoder_for(folder);
    records(folder)
        .into_iter()
        .map(|r| {
            let event = decoder.decode_cached(&r).unwrap_or_else(|e| panic!("{folder}: {e}"));
            (r, event)
        })
        .collect()
}

fn long_key(name: &str, id: i64) -> Row {
    Row::new().with(name, Value::Long(id))
}

/// The change on `table` with `op` whose key field equals `id`.
fn change<'a>(events: &'a [(Record, CdcEvent)], table: &str, op: Op, id: i64) -> &'a Change {
    events
        .iter()
        .find_map(|(_, e)| match e {
            CdcEvent::Change(c)
                if c.source.table() == Some(table)
                    && c.op == op
                    && c.key.as_ref().and_then(|k| k.iter().next()).and_then(|(_, v)| v.as_i64()) == Some(id) =>
            {
                Some(&**c)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {op:?} on {table} for key {id}"))
}

fn field<'a>(row: &'a Option<Row>, name: &str) -> &'a Value {
    row.as_ref().and_then(|r| r.get(name)).unwrap_or_else(|| panic!("field {name} missing in {row:?}"))
}

fn precise(folder: &str) -> bool {
    folder != "json-schemas-double"
}

fn typed(folder: &str) -> bool {
    folder.starts_with("json-schemas")
}

#[test]
fn every_fixture_record_decodes_to_the_kind_the_connector_wrote() {
    for folder in FOLDERS {
        let events = decode_all(folder);
        let expected = if folder == "json-plain-defaults" { 30 } else { 54 };
        assert_eq!(events.len(), expected, "{folder}");
        let lines = std::fs::read_to_string(fixture_dir(folder).join("records.jsonl")).unwrap();
        for ((_, event), line) in events.iter().zip(lines.lines()) {
            let raw: serde_json::Value = serde_json::from_str(line).unwrap();
            let value = &raw["value"];
            let payload = if value.get("payload").is_some() { &value["payload"] } else { value };
            match event {
                CdcEvent::Tombstone { .. } => assert!(value.is_null(), "{folder} seq {}", raw["seq"]),
                CdcEvent::Transaction(t) => {
                    assert_eq!(payload["status"], serde_json::json!(format!("{:?}", t.status).to_uppercase()))
                }
                CdcEvent::Change(c) => assert_eq!(payload["op"], c.op.code(), "{folder} seq {}", raw["seq"]),
            }
        }
    }
}

#[test]
fn snapshot_row_keeps_uuid_decimal_timestamp_date_and_json_types() {
    for folder in FOLDERS {
        let events = decode_all(folder);
        let alice = change(&events, "visitors", Op::Read, 1);
        assert_eq!(alice.key, Some(long_key("visitor_id", 1)), "{folder}");
        assert_eq!(field(&alice.after, "name"), &Value::String("Alice Martin".into()));
        assert_eq!(alice.source.snapshot(), Some("first_in_data_collection"), "{folder}");
        assert!(alice.source.ts_ms().is_some_and(|t| t > 1_700_000_000_000), "{folder}");
        if !typed(folder) {
            // Plain JSON carries no types: the decimal stays the connector's base64 text.
            assert_eq!(field(&alice.after, "lifetime_value"), &Value::String("AeI6".into()), "{folder}");
            assert_eq!(field(&alice.after, "birth_date"), &Value::Long(7441), "{folder}");
            continue;
        }
        assert_eq!(
            field(&alice.after, "visitor_uuid"),
            &Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap()),
            "{folder}"
        );
        assert_eq!(
            field(&alice.after, "first_seen"),
            &Value::Timestamp { value: 1_705_307_400_123_456, unit: TimeUnit::Micros },
            "{folder}: timestamptz keeps its microseconds"
        );
        assert_eq!(field(&alice.after, "birth_date"), &Value::Date(7441), "{folder}");
        assert_eq!(field(&alice.after, "birth_date").to_json(), "1990-05-17");
        assert_eq!(
            field(&alice.after, "attributes"),
            &Value::Json(r#"{"segments": ["sports", "tech"], "newsletter": true}"#.into())
        );
        let expected_ltv =
            if precise(folder) { Value::Decimal(Decimal::new(123_450, 2)) } else { Value::Double(1234.5) };
        assert_eq!(field(&alice.after, "lifetime_value"), &expected_ltv, "{folder}");
    }
}

#[test]
fn ads_keep_decimal_variable_scale_local_timestamp_and_time_per_mode() {
    for folder in ["json-schemas-precise", "json-schemas-double", "json-schemas-connecttime"] {
        let events = decode_all(folder);
        let ad = change(&events, "ads", Op::Read, 10);
        let (cpm, bid) = if precise(folder) {
            (Value::Decimal(Decimal::new(1234, 2)), Value::Decimal(Decimal::new(1_123_456_789, 9)))
        } else {
            (Value::Double(12.34), Value::Double(1.123456789))
        };
        assert_eq!(field(&ad.after, "cpm"), &cpm, "{folder}");
        assert_eq!(field(&ad.after, "bid_multiplier"), &bid, "{folder}");
        assert_eq!(field(&ad.after, "ctr"), &Value::Double(0.0315));
        let (created, daily) = if folder == "json-schemas-connecttime" {
            (
                Value::LocalTimestamp { value: 1_710_062_130_500, unit: TimeUnit::Millis },
                Value::Time { value: 21_600_000, unit: TimeUnit::Millis },
            )
        } else {
            (
                Value::LocalTimestamp { value: 1_710_062_130_500_000, unit: TimeUnit::Micros },
                Value::Time { value: 21_600_000_000, unit: TimeUnit::Micros },
            )
        };
        assert_eq!(field(&ad.after, "created_at"), &created, "{folder}");
        assert_eq!(field(&ad.after, "created_at").to_json().as_str().unwrap()[..23], *"2024-03-10T09:15:30.500");
        assert_eq!(field(&ad.after, "daily_start"), &daily, "{folder}");
        assert_eq!(field(&ad.after, "daily_start").to_json().as_str().unwrap()[..8], *"06:00:00");
    }
}

#[test]
fn unchanged_toasted_column_is_unavailable_and_filled_from_the_last_known_row() {
    for folder in FOLDERS {
        let events = decode_all(folder);
        let inserted = change(&events, "content", Op::Create, 101);
        let updated = change(&events, "content", Op::Update, 101);
        assert_eq!(updated.before, None, "{folder}: REPLICA IDENTITY DEFAULT update has no before");
        assert_eq!(field(&updated.after, "body"), &Value::Unavailable, "{folder}");
        assert_eq!(field(&updated.after, "title"), &Value::String("Happy Cats (Remastered)".into()));
        let body = field(&inserted.after, "body").as_str().expect("body text").to_owned();
        assert!(body.len() > 12_000, "{folder}: the TOASTed body is ~12.8 kB");
        let mut row = updated.after.clone().unwrap();
        assert!(row.fill_unavailable_from(inserted.after.as_ref().unwrap()).is_empty());
        assert_eq!(row.get("body").and_then(Value::as_str), Some(body.as_str()), "{folder}");
    }
}

#[test]
fn replica_identity_default_delete_carries_only_the_key() {
    for folder in FOLDERS {
        let events = decode_all(folder);
        let ad_delete = change(&events, "ads", Op::Delete, 10);
        assert!(ad_delete.before_key_only, "{folder}");
        assert_eq!(ad_delete.before.as_ref().map(|r| r.names().collect::<Vec<_>>()), Some(vec!["ad_id"]));
        assert_eq!(ad_delete.after, None);
        // REPLICA IDENTITY FULL deletes keep the whole row.
        let visitor_delete = change(&events, "visitors", Op::Delete, 2);
        assert!(!visitor_delete.before_key_only, "{folder}");
        assert_eq!(field(&visitor_delete.before, "name"), &Value::String("Bob Smith".into()));
    }
}

#[test]
fn primary_key_update_is_delete_tombstone_create_linked_by_headers() {
    for folder in FOLDERS {
        let events = decode_all(folder);
        let delete = change(&events, "content", Op::Delete, 101);
        let create = change(&events, "content", Op::Create, 102);
        // The header keys are typed exactly like the record keys they point to.
        assert_eq!(delete.key_change, Some(KeyChange::MovedTo(create.key.clone().unwrap())), "{folder}");
        assert_eq!(create.key_change, Some(KeyChange::MovedFrom(delete.key.clone().unwrap())), "{folder}");
        let tombstone = events.iter().find_map(|(_, e)| match e {
            CdcEvent::Tombstone { key: Some(k), key_change }
                if k.get("content_id").and_then(Value::as_i64) == Some(101) =>
            {
                Some(key_change.clone())
            }
            _ => None,
        });
        assert_eq!(tombstone, Some(delete.key_change.clone()), "{folder}");
        // Subscriptions (REPLICA IDENTITY FULL): the delete half keeps the full old row.
        let sub_delete = change(&events, "subscriptions", Op::Delete, 1000);
        assert!(!sub_delete.before_key_only);
        if typed(folder) && precise(folder) {
            assert_eq!(field(&sub_delete.before, "price"), &Value::Decimal(Decimal::new(999, 2)), "{folder}");
        }
        let sub_create = change(&events, "subscriptions", Op::Create, 1001);
        assert_eq!(sub_delete.key_change, Some(KeyChange::MovedTo(sub_create.key.clone().unwrap())), "{folder}");
    }
}

#[test]
fn column_added_mid_stream_appears_in_later_rows_only() {
    for folder in FOLDERS {
        let events = decode_all(folder);
        let eve = change(&events, "visitors", Op::Create, 5);
        assert_eq!(field(&eve.after, "referrer"), &Value::String("newsletter-42".into()), "{folder}");
        let carol = change(&events, "visitors", Op::Create, 3);
        assert_eq!(
            carol.after.as_ref().unwrap().get("referrer"),
            None,
            "{folder}: rows before ALTER TABLE have no referrer"
        );
    }
}

#[test]
fn truncate_message_and_transaction_metadata_decode() {
    for folder in FOLDERS {
        let events = decode_all(folder);
        let truncate = events
            .iter()
            .find_map(|(_, e)| match e {
                CdcEvent::Change(c) if c.op == Op::Truncate => Some(c),
                _ => None,
            })
            .expect("truncate");
        assert_eq!(truncate.key, None);
        assert_eq!(truncate.source.table(), Some("social_outlets"));
        let message = events
            .iter()
            .find_map(|(_, e)| match e {
                CdcEvent::Change(c) if c.op == Op::Message => c.message.clone(),
                _ => None,
            })
            .expect("logical message");
        assert_eq!(message.prefix.as_deref(), Some("happytimes"));
        assert_eq!(message.content, br#"{"kind":"marker","n":1}"#.to_vec(), "{folder}");

        let transactions: Vec<_> = events
            .iter()
            .filter_map(|(_, e)| match e {
                CdcEvent::Transaction(t) => Some(t),
                _ => None,
            })
            .collect();
        if folder == "json-plain-defaults" {
            assert!(transactions.is_empty(), "transaction metadata is off in this run");
            continue;
        }
        assert_eq!(transactions.len(), 24, "{folder}: 12 transactions, BEGIN + END each");
        // The multi-row transaction: 5 changes on 4 tables, and every change carries the tx id.
        let end = transactions
            .iter()
            .find(|t| t.status == TransactionStatus::End && t.event_count == Some(5))
            .expect("5-event tx");
        let mut tables: Vec<_> = end.data_collections.iter().map(|(t, _)| t.as_str()).collect();
        tables.sort_unstable();
        assert_eq!(tables, ["public.content", "public.social_outlets", "public.subscriptions", "public.visitors"]);
        let in_tx = events
            .iter()
            .filter(
                |(_, e)| matches!(e, CdcEvent::Change(c) if c.transaction.as_ref().is_some_and(|b| b.tx() == end.tx())),
            )
            .count();
        assert_eq!(in_tx, 5, "{folder}");
    }
}

/// The per-record row schema of the schemas-on capture (same scenario order), so the plain
/// capture can be decoded with real types.
fn row_schemas_by_seq() -> Vec<Option<ConnectSchema>> {
    let text = std::fs::read_to_string(fixture_dir("json-schemas-precise").join("records.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let raw: serde_json::Value = serde_json::from_str(line).unwrap();
            let schema = raw["value"].get("schema")?;
            ConnectSchema::from_connect_json(schema).ok()?.field("after").cloned()
        })
        .collect()
}

/// Values that differ between two captures of the same scenario (see the fixtures README).
fn normalize(row: &Option<Row>) -> Option<Vec<(String, Value)>> {
    row.as_ref().map(|r| {
        r.iter()
            .filter(|(name, _)| !matches!(*name, "outlet_uuid" | "updated_at"))
            .map(|(n, v)| (n.to_owned(), v.clone()))
            .collect()
    })
}

#[test]
fn plain_json_with_row_schema_equals_json_with_schemas() {
    let schemas = row_schemas_by_seq();
    let typed_events = decode_all("json-schemas-precise");
    let plain = records("json-plain-precise");
    assert_eq!(plain.len(), typed_events.len());
    for (index, record) in plain.iter().enumerate() {
        let decoder = match &schemas[index] {
            Some(schema) => DebeziumDecoder::json(false).with_default_row_schema(schema.clone()),
            None => DebeziumDecoder::json(false),
        };
        let plain_event = decoder.decode_cached(record).unwrap();
        match (&plain_event, &typed_events[index].1) {
            (CdcEvent::Change(p), CdcEvent::Change(t)) => {
                assert_eq!((p.op, p.before_key_only), (t.op, t.before_key_only), "seq {}", index + 1);
                assert_eq!(normalize(&p.before), normalize(&t.before), "seq {}", index + 1);
                assert_eq!(normalize(&p.after), normalize(&t.after), "seq {}", index + 1);
                assert_eq!(p.key_change.is_some(), t.key_change.is_some());
            }
            (CdcEvent::Tombstone { .. }, CdcEvent::Tombstone { .. })
            | (CdcEvent::Transaction(_), CdcEvent::Transaction(_)) => {}
            (p, t) => panic!("seq {}: {p:?} vs {t:?}", index + 1),
        }
    }
}
