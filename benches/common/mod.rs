//! What the end-to-end bench harnesses share: a Tansu broker from the test rig, client
//! settings, and `happystreams run` instances with their metrics endpoint.

#![allow(dead_code)] // each bench uses its part

use rdkafka::ClientConfig;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts a Tansu broker (tests/rig/tansu.sh) with its files under `dir`; returns host:port.
pub fn start_tansu(dir: &Path) -> String {
    let out =
        Command::new("bash").arg(root().join("tests/rig/tansu.sh")).arg("start").arg(dir).output().expect("tansu.sh");
    assert!(out.status.success(), "tests/rig/tansu.sh start failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Stops the broker started with `dir`.
pub fn stop_tansu(dir: &Path) {
    let _ = Command::new("bash").arg(root().join("tests/rig/tansu.sh")).arg("stop").arg(dir).status();
}

pub fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates topics with `partitions` partitions (replication 1).
pub fn create_topics(bootstrap: &str, names: &[String], partitions: i32) {
    use happystreams::connectors::kafka::{KafkaConfig, TopicSpec, create_missing_topics};
    let kafka = KafkaConfig { bootstrap_servers: bootstrap.to_owned(), ..KafkaConfig::default() };
    let specs: Vec<TopicSpec<'_>> =
        names.iter().map(|name| TopicSpec { name, partitions, replication: 1, config: &[] }).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create_missing_topics(&kafka, &specs)).unwrap();
}

/// A producer for loading input fast, partitioning like the Java client (murmur2).
pub fn bulk_producer(
    bootstrap: &str,
) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    config(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

pub struct Instance {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Instance {
    /// `registry`: the schema registry URL (topologies with Avro sinks).
    pub fn start(
        bootstrap: &str,
        registry: Option<&str>,
        topology: &Path,
        app: &str,
        state: &Path,
        log: PathBuf,
    ) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_happystreams"));
        if let Some(url) = registry {
            command.env("HAPPYSTREAMS_REGISTRY__URL", url);
        }
        let child = command
            .args(["run", "--topology"])
            .arg(topology)
            .args(["--bootstrap-servers", bootstrap, "--application-id", app, "--state-dir"])
            .arg(state)
            .args(["--metrics-address", &format!("127.0.0.1:{port}")])
            .env("HAPPYSTREAMS_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("RUST_LOG", "happystreams=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Instance { child, port, log }
    }

    pub fn metric(&self, name: &str, label: &str) -> f64 {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return 0.0 };
        let _ = write!(s, "GET /metrics HTTP/1.0\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.lines()
            .filter(|l| l.starts_with(name) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// `happystreams registry serve --in-memory` on a free loopback port; stopped on drop.
pub struct Registry {
    child: Child,
    pub url: String,
}

impl Registry {
    pub fn start() -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_happystreams"))
            .args(["registry", "serve", "--in-memory", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the registry did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Registry { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
