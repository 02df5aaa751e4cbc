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

/// A broker that requires SASL: Tansu with `--authentication` runs the SCRAM exchange but (0.6.0,
/// memory and S3 storage) keeps no users, so every login fails with `unknown-user`. `run` must stop
/// with an error that names authentication and the settings to check (not "transport failure,
/// check that the brokers are up"), and the password must appear nowhere in its output.
#[test]
fn a_failed_sasl_login_is_reported_as_such_without_the_password() {
    let (bootstrap, _broker) = crate::rig::start_tansu_with("--authentication");
    let dir = tempfile::tempdir().unwrap();
    let topology = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/topologies/views_by_source.yaml");
    let state = dir.path().join("state");
    let output = crate::cli::happystreams()
        .args(["run", "--topology", topology, "--bootstrap-servers", &bootstrap, "--application-id", "sasl_t"])
        .args(["--http-address", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SASL_MECHANISM", "SCRAM-SHA-512")
        .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SASL_USERNAME", "svc-happystreams")
        .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SASL_PASSWORD", "pw-41d7e2c9")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "{text}");
    let last = text.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line:\n{text}"));
    assert!(last.contains("Kafka authentication failed") && last.contains("sasl.username"), "{last}");
    assert!(last.contains("SCRAM"), "the broker's answer is kept: {last}");
    assert!(!text.contains("pw-41d7e2c9"), "the password is in the output:\n{text}");
}
