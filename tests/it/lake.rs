//! The lake on a local directory and on S3 (a moto server): atomic writes, listing, Parquet.

use crate::rig;
use bytes::Bytes;
use futures::StreamExt as _;
use happystreams::connectors::lake::parquet::{row_count, to_parquet};
use happystreams::connectors::lake::{Lake, LakeConfig, LakeError, S3Config, hive_partition};
use happystreams::record::{Decimal, Row, TimeUnit, Value};

async fn s3_lake(bucket: &str) -> Lake {
    let endpoint = rig::moto();
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.expect("moto reachable");
    assert!(created.status().is_success(), "creating bucket {bucket}: {}", created.status());
    Lake::open(&LakeConfig {
        url: format!("s3://{bucket}/lake"),
        s3: S3Config {
            endpoint: Some(endpoint.to_owned()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            allow_http: true,
            ..S3Config::default()
        },
    })
    .unwrap()
}

fn rows(n: i64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            Row::new()
                .with("event_id", Value::String(format!("e{i}")))
                .with("visitor_id", Value::Long(i % 7))
                .with("amount", Value::Decimal(Decimal::new(i * 125, 2)))
                .with("event_time", Value::Timestamp { value: 1_750_000_000_000 + i, unit: TimeUnit::Millis })
                .with("country", if i % 3 == 0 { Value::Null } else { Value::String("FR".into()) })
        })
        .collect()
}

/// A stream that yields `good` chunks of 1 MiB, then fails.
fn failing_stream(good: usize) -> impl futures::Stream<Item = Result<Bytes, String>> {
    futures::stream::iter(
        (0..good)
            .map(|_| Ok(Bytes::from(vec![7u8; 1 << 20])))
            .chain(std::iter::once(Err("connection reset".to_owned()))),
    )
}

async fn check_lake(lake: &Lake) {
    // Whole files and listing.
    let partition = hive_partition("clicks", 1_750_000_000_000);
    assert_eq!(partition, "clicks/date=2025-06-15/hour=15");
    let parquet = to_parquet(&rows(1_000), None).unwrap();
    let path = format!("{partition}/clicks-0-0-999.parquet");
    lake.put(&path, parquet.clone()).await.unwrap();
    lake.put(&path, parquet.clone()).await.unwrap(); // a retry replaces, never duplicates
    let listed = lake.list("clicks").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].path.as_str(), listed[0].size), (path.as_str(), parquet.len() as u64));
    assert_eq!(row_count(lake.get(&path).await.unwrap()).unwrap(), 1_000);

    // Streams: 12 MiB go up as one file (a multipart upload on S3).
    let chunks = (0..12).map(|_| Ok::<_, String>(Bytes::from(vec![1u8; 1 << 20])));
    let written = lake.put_stream("landing/big.bin", futures::stream::iter(chunks)).await.unwrap();
    assert_eq!(written, 12 << 20);
    assert_eq!(lake.size("landing/big.bin").await.unwrap(), Some(12 << 20));

    // A source failing half-way leaves nothing visible, and an older file stays as it was.
    let err = lake.put_stream("landing/broken.bin", failing_stream(11)).await.unwrap_err();
    assert!(matches!(err, LakeError::Source { .. }), "{err}");
    assert_eq!(lake.size("landing/broken.bin").await.unwrap(), None);
    lake.put_stream("landing/big.bin", failing_stream(6)).await.unwrap_err();
    assert_eq!(lake.size("landing/big.bin").await.unwrap(), Some(12 << 20));
    let landing: Vec<String> = lake.list("landing").await.unwrap().into_iter().map(|o| o.path).collect();
    assert_eq!(landing, vec!["landing/big.bin".to_owned()]);

    lake.delete("landing/big.bin").await.unwrap();
    lake.delete("landing/big.bin").await.unwrap();
    assert!(lake.list("landing").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_local_lake_writes_atomically_and_lists_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&LakeConfig { url: dir.path().display().to_string(), ..LakeConfig::default() }).unwrap();
    check_lake(&lake).await;
    // No staging files are left behind.
    let leftovers: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.contains('#')).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The files a reader that lists the folder takes for data: Spark, Hive and DuckDB's Hive reader
/// skip every name (file or folder) that starts with `.` or `_`.
fn visible(dir: &std::path::Path) -> Vec<(String, u64)> {
    walk(dir)
        .into_iter()
        .filter_map(|path| {
            let relative = std::path::Path::new(&path).strip_prefix(dir).ok()?.to_owned();
            let hidden =
                relative.iter().any(|part| part.to_str().is_some_and(|p| p.starts_with('.') || p.starts_with('_')));
            (!hidden).then(|| (relative.display().to_string(), std::fs::metadata(&path).map_or(0, |m| m.len())))
        })
        .collect()
}

#[tokio::test]
async fn a_write_killed_at_any_moment_leaves_nothing_a_reader_takes_for_data() {
    const CHUNK: usize = 4 << 20;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&LakeConfig { url: dir.path().display().to_string(), ..LakeConfig::default() }).unwrap();
    lake.put("landing/adnet/done.csv", Bytes::from_static(b"a,b\n")).await.unwrap();
    let before = visible(dir.path());
    assert_eq!(before, vec![("landing/adnet/done.csv".to_owned(), 4)]);
    // A large file whose writer stops for good after every chunk count from 0 to 5 (from 3 on
    // more than the writer buffers, so part of it is on disk), then is dropped.
    for written in 0..6 {
        let (lake_writing, chunks) = (lake.clone(), written);
        let writing = tokio::spawn(async move {
            let stream = futures::stream::iter((0..chunks).map(|_| Ok::<_, String>(Bytes::from(vec![7u8; CHUNK]))))
                .chain(futures::stream::pending::<Result<Bytes, String>>());
            lake_writing.put_stream("landing/adnet/big.csv", stream).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(visible(dir.path()), before, "mid-write after {written} chunks");
        if written >= 3 {
            // More than the writer buffers: the first part is on disk, under a hidden name.
            let staged = walk(dir.path()).into_iter().filter(|p| p.contains("/.big.csv.staging")).count();
            assert!(staged > 0, "{:?}", walk(dir.path()));
        }
        writing.abort();
        let _ = writing.await;
        assert_eq!(visible(dir.path()), before, "after a kill at {written} chunks");
        assert_eq!(
            lake.list("landing").await.unwrap().iter().map(|o| o.path.as_str()).collect::<Vec<_>>(),
            ["landing/adnet/done.csv"],
            "the lake lists no staging file"
        );
    }
    // The next write of the file sweeps what killed ones left (a SIGKILL leaves the staging file;
    // `tests/it/sftp.rs` kills a process) and lands it whole.
    let stream = futures::stream::iter((0..3).map(|_| Ok::<_, String>(Bytes::from(vec![7u8; CHUNK]))));
    assert_eq!(lake.put_stream("landing/adnet/big.csv", stream).await.unwrap(), 3 * CHUNK as u64);
    let mut after = before.clone();
    after.insert(0, ("landing/adnet/big.csv".to_owned(), 3 * CHUNK as u64));
    assert_eq!(visible(dir.path()), after);
    let leftovers: Vec<String> =
        walk(dir.path()).into_iter().filter(|p| p.contains("staging") || p.contains('#')).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn the_lake_refuses_paths_that_leave_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let lake = Lake::open(&LakeConfig { url: root.display().to_string(), ..LakeConfig::default() }).unwrap();
    for path in ["../escape.csv", "landing/../../escape.csv", "a/./b.csv", "a\\..\\b.csv", "bad\nname.csv"] {
        let err = lake.put(path, Bytes::from_static(b"x")).await.unwrap_err();
        assert!(matches!(err, LakeError::Path { .. }), "{path}: {err}");
        assert!(err.to_string().contains("is not a path inside the lake"), "{err}");
        assert!(matches!(lake.get(path).await.unwrap_err(), LakeError::Path { .. }), "{path}");
    }
    let stream = futures::stream::iter([Ok::<_, String>(Bytes::from_static(b"x"))]);
    assert!(matches!(lake.put_stream("../escape.csv", stream).await.unwrap_err(), LakeError::Path { .. }));
    assert_eq!(walk(dir.path()), Vec::<String>::new(), "nothing was written anywhere");
}

#[tokio::test]
async fn an_s3_lake_writes_atomically_and_lists_what_it_wrote() {
    let lake = s3_lake(&rig::unique_topic("lake").replace('_', "-")).await;
    check_lake(&lake).await;
}

#[test]
fn bad_lake_urls_and_mixed_columns_are_clear_errors() {
    let err = Lake::open(&LakeConfig { url: "hdfs://namenode/lake".into(), ..LakeConfig::default() }).unwrap_err();
    assert!(err.to_string().contains("no HDFS support"), "{err}");
    let err = Lake::open(&LakeConfig { url: "ftp://x/lake".into(), ..LakeConfig::default() }).unwrap_err();
    assert!(err.to_string().contains("unsupported lake URL"), "{err}");
    let err = Lake::open(&LakeConfig { url: "s3://".into(), ..LakeConfig::default() }).unwrap_err();
    assert!(err.to_string().contains("names no bucket"), "{err}");
    let mixed = vec![Row::new().with("n", Value::Long(1)), Row::new().with("n", Value::String("x".into()))];
    let err = to_parquet(&mixed, None).unwrap_err();
    assert!(err.to_string().contains("column `n` row 1"), "{err}");
    let secret = LakeConfig {
        url: "s3://b".into(),
        s3: S3Config { secret_access_key: Some("hunter2".into()), ..S3Config::default() },
    };
    assert!(!format!("{secret:?}").contains("hunter2"));
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// Every Parquet file under `dir/table`: path (relative to the table) → rows.
fn landed(dir: &std::path::Path, table: &str) -> std::collections::BTreeMap<String, i64> {
    let mut files = std::collections::BTreeMap::new();
    let root = dir.join(table);
    let mut pending = vec![root.clone()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let rows = row_count(Bytes::from(std::fs::read(&path).unwrap())).unwrap();
                files.insert(path.strip_prefix(&root).unwrap().display().to_string(), rows);
            }
        }
    }
    files
}

fn lake_sink(bootstrap: &str, lake: &std::path::Path, group: &str, facts: &str, raw: &str, extra: &[&str]) {
    let mut args = vec![
        "lake-sink".to_owned(),
        "--bootstrap-servers".into(),
        bootstrap.into(),
        "--lake".into(),
        lake.display().to_string(),
        "--group-id".into(),
        group.into(),
        "--json".into(),
        format!("{facts}=facts"),
        "--raw".into(),
        format!("{raw}=raw"),
        "--segment-records".into(),
        "64".into(),
        "--exit-at-end".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    // A short session: a rerun of the group does not wait for its previous member to expire.
    let output = crate::cli::happystreams()
        .args(&args)
        .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
        .output()
        .unwrap();
    assert!(output.status.success(), "lake-sink failed: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_sink_lands_each_record_once_across_reruns_and_replays() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let cluster = rig::mock_cluster();
    let bootstrap = cluster.bootstrap_servers();
    let (facts, raw) = (rig::unique_topic("facts"), rig::unique_topic("raw"));
    cluster.create_topic(&facts, 2, 1).unwrap();
    cluster.create_topic(&raw, 2, 1).unwrap();
    let producer: FutureProducer = rig::client_config(&bootstrap).create().unwrap();
    let start = 1_793_577_600_000i64;
    let produce = |from: i64, to: i64| {
        let producer = producer.clone();
        let (facts, raw) = (facts.clone(), raw.clone());
        async move {
            for i in from..to {
                let key = format!("k{}", i % 5);
                let at = start + i * 60_000; // a record a minute: 3 hours per 180
                let value = (i % 50 != 49).then(|| format!("{{\"n\": {i}, \"name\": \"fact {i}\"}}"));
                let mut record = FutureRecord::to(&facts).key(&key).timestamp(at);
                if let Some(v) = value.as_deref() {
                    record = record.payload(v);
                }
                producer.send(record, std::time::Duration::from_secs(5)).await.unwrap();
                let line = format!("line {i}");
                producer
                    .send(
                        FutureRecord::to(&raw).key(&key).payload(&line).timestamp(at),
                        std::time::Duration::from_secs(5),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    produce(0, 300).await;
    let lake = tempfile::tempdir().unwrap();
    lake_sink(&bootstrap, lake.path(), "g1", &facts, &raw, &[]);
    let first = landed(lake.path(), "facts");
    // 300 records, 6 of them tombstones (skipped in a json table); every raw record.
    assert_eq!(first.values().sum::<i64>(), 294, "{first:?}");
    assert_eq!(landed(lake.path(), "raw").values().sum::<i64>(), 300);
    assert!(first.keys().all(|p| p.starts_with("date=2026-11-0") && p.contains("/hour=")), "{first:?}");
    assert!(first.keys().any(|p| p.ends_with(&format!("{facts}+1+00000000000000000064.parquet"))), "{first:?}");

    // A full replay under another group, flushing constantly: the same files, nothing added.
    lake_sink(&bootstrap, lake.path(), "g2", &facts, &raw, &["--flush-interval-ms", "1"]);
    assert_eq!(landed(lake.path(), "facts"), first);

    // The first group goes on from its committed segment starts: only new records are added.
    produce(300, 400).await;
    lake_sink(&bootstrap, lake.path(), "g1", &facts, &raw, &[]);
    assert_eq!(landed(lake.path(), "facts").values().sum::<i64>(), 294 + 98);
    assert_eq!(landed(lake.path(), "raw").values().sum::<i64>(), 400);
}

#[test]
fn lake_sink_refuses_bad_table_names() {
    let output = crate::cli::run(&["lake-sink", "--json", "a=../b"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("without `..`"));
    let output = crate::cli::run(&["lake-sink"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("--json and/or --raw"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_sink_exits_at_end_with_empty_partitions() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let cluster = rig::mock_cluster();
    let bootstrap = cluster.bootstrap_servers();
    let (facts, raw) = (rig::unique_topic("facts"), rig::unique_topic("raw"));
    cluster.create_topic(&facts, 3, 1).unwrap();
    cluster.create_topic(&raw, 2, 1).unwrap();
    let producer: FutureProducer = rig::client_config(&bootstrap).create().unwrap();
    for i in 0..5 {
        let value = format!("{{\"n\": {i}}}");
        let record = FutureRecord::to(&facts).key("k").payload(&value).partition(1).timestamp(1_793_577_600_000);
        producer.send(record, std::time::Duration::from_secs(5)).await.unwrap();
    }
    // Two partitions of `facts` and all of `raw` are empty: nothing is read from them, and they
    // are at their end all the same.
    let lake = tempfile::tempdir().unwrap();
    let mut child = crate::cli::happystreams()
        .args(["lake-sink", "--bootstrap-servers", &bootstrap, "--group-id", "g", "--exit-at-end", "--lake"])
        .arg(lake.path())
        .args(["--json", &format!("{facts}=facts"), "--raw", &format!("{raw}=raw")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("lake-sink --exit-at-end did not stop within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success());
    assert_eq!(landed(lake.path(), "facts").values().sum::<i64>(), 5);
}
