//! Kafka topics into the lake as Parquet, exactly once per record (`happystreams lake-sink`).
//!
//! Each partition's offsets are cut into fixed **segments** of `segment_records` offsets
//! (`[k·N, (k+1)·N)`). A segment's records are kept in memory until the segment is complete and
//! written as one file per Hive partition they fall in (`<table>/date=YYYY-MM-DD/hour=HH/`, by
//! record timestamp, UTC), named `<topic>+<partition>+<segment start>.parquet`. Until then a
//! periodic flush rewrites the segment's files with everything read so far, so data is fresh.
//! The group's offset is committed only at segment starts. So every run — a restart after a
//! crash, a rebalance, a full replay under a new group — builds each segment from its first
//! offset and writes files with the same names and the same records: a replay rewrites files,
//! never adds duplicates. Files become visible only when complete (see [`super::Lake`]).
//!
//! Three row formats: `avro` (Confluent-framed Avro, writer schemas from the registry: each
//! field a column typed by the schema; the facts), `json` (a JSON object per record: its fields
//! become columns typed by their values) and `raw` (`key`, `value` as text; the raw inputs,
//! lossless for text). All add `_topic`, `_partition`, `_offset` and `_timestamp`. Null values
//! (tombstones) are skipped in `avro` and `json` tables and kept (value null) in `raw` ones.

use super::{Lake, LakeError, hive_partition, parquet::to_parquet};
use crate::codec::avro::{AvroCodec, AvroSchema};
use crate::codec::json;
use crate::record::{Row, TimeUnit, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a topic's records become rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// Confluent-framed Avro records; their fields become columns typed by the writer schema.
    Avro,
    /// A JSON object per record; its fields become columns.
    Json,
    /// The record's key and value as text.
    Raw,
}

/// One record read from a topic partition.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// Offset in its partition.
    pub offset: i64,
    /// Record timestamp (ms); it picks the Hive partition.
    pub timestamp: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
}

/// A file a flush writes: its lake path and rows.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    /// Path under the lake root.
    pub path: String,
    /// Its rows, in offset order.
    pub rows: Vec<Row>,
    /// The writer schema of its last Avro record: it types the columns.
    pub schema: Option<Arc<AvroSchema>>,
}

/// A record's row and, for Avro records, its writer schema.
pub type SchemaRow = (Row, Option<Arc<AvroSchema>>);

/// The row of one record, with its Avro writer schema; the error names the record. Avro
/// records decode with the schemas `avro` holds (fetch them with [`AvroCodec::schema`] first).
pub fn row_of(
    topic: &str,
    partition: i32,
    record: &SinkRecord,
    format: RowFormat,
    avro: &AvroCodec,
) -> Result<Option<SchemaRow>, LakeError> {
    let text = |bytes: &Option<Vec<u8>>| match bytes {
        Some(b) => Value::String(String::from_utf8_lossy(b).into()),
        None => Value::Null,
    };
    let bad = |detail: String| {
        LakeError::Data(format!("{topic}[{partition}]@{}: {detail} (land the topic as raw)", record.offset))
    };
    let (decoded, schema) = match format {
        RowFormat::Raw => {
            (Ok(Value::Struct(Row::new().with("key", text(&record.key)).with("value", text(&record.value)))), None)
        }
        RowFormat::Json => {
            let Some(bytes) = &record.value else { return Ok(None) };
            (json::decode_plain(bytes).map_err(|e| bad(e.to_string())), None)
        }
        RowFormat::Avro => {
            let Some(bytes) = &record.value else { return Ok(None) };
            let (schema, value) = avro.decode_cached_with_schema(bytes).map_err(|e| bad(e.to_string()))?;
            (Ok(value), Some(schema))
        }
    };
    let mut row = match decoded? {
        Value::Struct(row) => row,
        other => return Err(bad(format!("a lake table takes records, got a {}", other.type_name()))),
    };
    row.push("_topic", Value::String(topic.into()));
    row.push("_partition", Value::Int(partition));
    row.push("_offset", Value::Long(record.offset));
    row.push("_timestamp", Value::Timestamp { value: record.timestamp, unit: TimeUnit::Millis });
    Ok(Some((row, schema)))
}

/// The segment (its first offset) an offset belongs to.
pub fn segment_of(offset: i64, segment_records: i64) -> i64 {
    offset.div_euclid(segment_records.max(1)) * segment_records.max(1)
}

/// The files of one segment's records (in offset order), named after the segment's start.
pub fn plan_files(
    table: &str,
    topic: &str,
    partition: i32,
    segment_start: i64,
    records: &[SinkRecord],
    format: RowFormat,
    avro: &AvroCodec,
) -> Result<Vec<PlannedFile>, LakeError> {
    let mut files: BTreeMap<String, PlannedFile> = BTreeMap::new();
    for record in records {
        let Some((row, schema)) = row_of(topic, partition, record, format, avro)? else { continue };
        let dir = hive_partition(table, record.timestamp);
        let file = files.entry(dir.clone()).or_insert_with(|| PlannedFile {
            path: format!("{dir}/{topic}+{partition}+{segment_start:020}.parquet"),
            rows: Vec::new(),
            schema: None,
        });
        file.rows.push(row);
        if schema.is_some() {
            file.schema = schema;
        }
    }
    Ok(files.into_values().collect())
}

/// The records read so far of one partition's current segment.
#[derive(Debug)]
pub struct Segment {
    /// Its first offset.
    pub start: i64,
    /// Its records, in offset order.
    pub records: Vec<SinkRecord>,
    /// Records arrived since its files were last written.
    pub dirty: bool,
}

impl Segment {
    /// An empty segment starting at `start`.
    pub fn new(start: i64) -> Segment {
        Segment { start, records: Vec::new(), dirty: false }
    }

    /// Adds the next record (in offset order); its files are now out of date.
    pub fn push(&mut self, record: SinkRecord) {
        self.records.push(record);
        self.dirty = true;
    }

    /// Writes (or rewrites) the segment's files in `table`; returns the rows written.
    pub async fn write(
        &self,
        lake: &Lake,
        table: &str,
        format: RowFormat,
        topic: &str,
        partition: i32,
        avro: &AvroCodec,
    ) -> Result<usize, LakeError> {
        write_files(lake, plan_files(table, topic, partition, self.start, &self.records, format, avro)?).await
    }
}

/// Writes planned files (each atomically); returns how many rows were written.
pub async fn write_files(lake: &Lake, files: Vec<PlannedFile>) -> Result<usize, LakeError> {
    let mut rows = 0;
    for file in files {
        let bytes = to_parquet(&file.rows, file.schema.as_ref().map(|s| s.connect.as_ref()))?;
        lake.put(&file.path, bytes).await?;
        rows += file.rows.len();
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn record(offset: i64, hour: i64) -> SinkRecord {
        SinkRecord {
            offset,
            timestamp: 1_793_577_600_000 + hour * HOUR,
            key: Some(b"{\"id\":1}".to_vec()),
            value: Some(format!("{{\"n\":{offset}}}").into_bytes()),
        }
    }

    fn offsets(files: &[PlannedFile]) -> BTreeMap<String, Vec<i64>> {
        files
            .iter()
            .map(|f| (f.path.clone(), f.rows.iter().filter_map(|r| r.get("_offset")?.as_i64()).collect()))
            .collect()
    }

    #[test]
    fn files_are_per_hive_partition_and_named_by_segment() {
        let records = [record(10, 0), record(11, 1), record(12, 0)];
        assert_eq!(segment_of(12, 10), 10);
        assert_eq!(segment_of(9, 10), 0);
        let files = plan_files("t", "topic", 3, 10, &records, RowFormat::Json, &AvroCodec::offline()).unwrap();
        let got = offsets(&files);
        assert_eq!(got.get("t/date=2026-11-02/hour=00/topic+3+00000000000000000010.parquet"), Some(&vec![10, 12]));
        assert_eq!(got.get("t/date=2026-11-02/hour=01/topic+3+00000000000000000010.parquet"), Some(&vec![11]));
    }

    #[test]
    fn json_tables_skip_tombstones_and_name_bad_records() {
        let mut tombstone = record(1, 0);
        tombstone.value = None;
        assert!(
            plan_files("t", "x", 0, 0, &[tombstone.clone()], RowFormat::Json, &AvroCodec::offline())
                .unwrap()
                .is_empty()
        );
        let raw = plan_files("t", "x", 0, 0, &[tombstone], RowFormat::Raw, &AvroCodec::offline()).unwrap();
        assert_eq!(raw[0].rows[0].get("value"), Some(&Value::Null));
        let mut bad = record(7, 0);
        bad.value = Some(b"not json".to_vec());
        let message =
            plan_files("t", "x", 2, 0, &[bad], RowFormat::Json, &AvroCodec::offline()).unwrap_err().to_string();
        assert!(message.contains("x[2]@7") && message.contains("raw"), "{message}");
    }

    #[test]
    fn avro_tables_decode_with_the_writer_schema_and_type_columns_by_it() {
        let raw = r#"{"type": "record", "name": "Fact", "fields": [
            {"name": "id", "type": "long"},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "ended", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null}]}"#;
        let codec = AvroCodec::offline();
        let schema = codec.add_schema(AvroSchema::parse(7, raw).unwrap());
        let value = Value::Struct(
            Row::new()
                .with("id", Value::Long(5))
                .with("at", Value::Timestamp { value: 1_793_577_600_000, unit: TimeUnit::Millis })
                .with("ended", Value::Null),
        );
        let mut fact = record(3, 0);
        fact.value = Some(schema.encode(&value).unwrap());
        let files = plan_files("t", "x", 0, 0, &[fact], RowFormat::Avro, &codec).unwrap();
        assert_eq!(files[0].rows[0].get("id"), Some(&Value::Long(5)));
        // `ended` is null in every row: the schema still types its column.
        let columns = super::super::parquet::schema_of(&files[0].rows, Some(&schema.connect));
        let ended = columns.field_with_name("ended").unwrap().data_type().clone();
        assert_eq!(ended, arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, Some("UTC".into())));
        // A newer writer schema widened `id` to long: the older int rows fit its column.
        let old =
            Row::new().with("id", Value::Int(4)).with("at", Value::Timestamp { value: 0, unit: TimeUnit::Millis });
        let mut rows = vec![old];
        rows.extend(files[0].rows.iter().cloned());
        assert!(to_parquet(&rows, Some(&schema.connect)).is_ok());
        // Not Avro (no magic byte): the error names the record and the way out.
        let message = plan_files("t", "x", 0, 0, &[record(4, 0)], RowFormat::Avro, &codec).unwrap_err().to_string();
        assert!(message.contains("x[0]@4") && message.contains("raw"), "{message}");
    }
}
