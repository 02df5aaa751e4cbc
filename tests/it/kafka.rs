//! Reading records back from a broker: the in-process MockCluster and a real Tansu broker.

use crate::cli::{json_lines, run};
use crate::debezium_fixtures::{decoder_for, records};
use crate::rig::{Produce, create_topic, mock_cluster, produce, tansu, unique_topic};
use happystreams::connectors::kafka::{KafkaConfig, read_range};
use std::time::Duration;

fn kafka(bootstrap: &str) -> KafkaConfig {
    KafkaConfig { bootstrap_servers: bootstrap.to_owned(), ..KafkaConfig::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_range_returns_keys_values_headers_and_tombstones_from_mock_cluster() {
    let cluster = mock_cluster();
    let bootstrap = cluster.bootstrap_servers();
    let topic = unique_topic("read-range");
    cluster.create_topic(&topic, 1, 1).unwrap();
    let records = [
        Produce { key: Some(b"k1"), value: Some(b"v1"), headers: vec![("h", b"x")] },
        Produce { key: Some(b"k2"), value: Some(b"v2"), headers: vec![] },
        Produce { key: Some(b"k1"), value: None, headers: vec![] },
    ];
    produce(&bootstrap, &topic, &records).await;
    let config = kafka(&bootstrap);
    let read = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || read_range(&config, &topic, 0, 0, 10, Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(read.len(), 3, "stops at the end of the partition");
    assert_eq!(read[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(read[0].value.as_deref(), Some(&b"v1"[..]));
    assert_eq!(read[0].header("h").and_then(|h| h.value.as_deref()), Some(&b"x"[..]));
    assert_eq!(read[2].value, None, "tombstones stay null");
    assert_eq!(read.iter().map(|r| r.position.as_ref().unwrap().offset).collect::<Vec<_>>(), vec![0, 1, 2]);
    let config = kafka(&bootstrap);
    let tail = tokio::task::spawn_blocking(move || read_range(&config, &topic, 0, 2, 10, Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tail.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn decode_reads_a_debezium_topic_from_a_real_broker() {
    let bootstrap = tansu();
    let topic = unique_topic("happytimes.cdc");
    create_topic(bootstrap, &topic, 1).await;
    let fixture = records("json-schemas-precise");
    let header_values: Vec<Vec<(String, Vec<u8>)>> = fixture
        .iter()
        .map(|r| r.headers.iter().map(|h| (h.key.clone(), h.value.as_deref().unwrap_or_default().to_vec())).collect())
        .collect();
    let to_send: Vec<Produce<'_>> = fixture
        .iter()
        .zip(&header_values)
        .map(|(r, hs)| Produce {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: hs.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect(),
        })
        .collect();
    produce(bootstrap, &topic, &to_send).await;

    let output = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || {
            run(&[
                "decode",
                "--topic",
                &topic,
                "--bootstrap-servers",
                bootstrap,
                "--count",
                "100",
                "--debezium",
                "--format",
                "json-schema",
            ])
        }
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), fixture.len(), "every record produced is read back once");
    let decoder = decoder_for("json-schemas-precise");
    for (line, record) in lines.iter().zip(&fixture) {
        let expected = serde_json::to_value(decoder.decode_cached(record).unwrap()).unwrap();
        assert_eq!(line["event"], expected, "offset {}", line["offset"]);
        assert_eq!(line["topic"], topic.as_str());
    }
}
