//! Brokers for tests.
//!
//! - [`mock_cluster`]: librdkafka's in-process mock cluster (fast; no Admin API, topics via
//!   `create_topic`; keeps only the newest 5 MiB per partition).
//! - [`tansu`]: one real Tansu broker for the whole test binary, started on a free loopback
//!   port from `HAPPYSTREAMS_TANSU_BIN` (set by `tests/run.sh`) or the rig's own install
//!   (`tests/rig/tansu.sh bin`). A watchdog stops it when the test process exits.
//!
//! Topic names are unique per call ([`unique_topic`]) so tests never see each other's data.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A fresh in-process mock cluster.
pub fn mock_cluster() -> MockCluster<'static, DefaultProducerContext> {
    MockCluster::new(1).expect("librdkafka mock cluster")
}

/// Client settings for group tests: a short session timeout so rebalances are quick (Tansu
/// answers JoinGroup only after about half of it).
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("session.timeout.ms", "6000");
    config
}

/// A real Tansu broker shared by the test binary; returns its bootstrap address.
pub fn tansu() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER.get_or_init(start_tansu)
}

/// A tool binary: `$env_var` when set (tests/run.sh sets it), else `tests/rig/<script> bin`
/// (which installs the tool first if needed).
pub fn tool_binary(env_var: &str, script: &str) -> String {
    if let Ok(bin) = std::env::var(env_var) {
        return bin;
    }
    let path = format!("{}/tests/rig/{script}", env!("CARGO_MANIFEST_DIR"));
    let output =
        Command::new("bash").arg(&path).arg("bin").stderr(Stdio::inherit()).output().expect("run a rig script");
    assert!(
        output.status.success(),
        "tests/rig/{script} bin failed: install it with `tests/rig/{script} install` or run the suite with tests/run.sh"
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Starts `command` (a shell command line that serves on `port`) with a watchdog shell that ends
/// it (and runs `cleanup`) when this test process is gone; waits until the port accepts. If the
/// service exits first, the panic says so and shows `log` (where the command writes) when given.
// The watchdog lives as long as the test binary (it ends the service when the binary is gone),
// so it is never waited for once the service listens.
#[allow(clippy::zombie_processes)]
fn start_service(
    name: &str,
    command: &str,
    port: u16,
    cleanup: &str,
    log: Option<&std::path::Path>,
) -> std::process::Child {
    let mut watchdog = spawn_watched(name, command, cleanup);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let output = || log.map(|l| std::fs::read_to_string(l).unwrap_or_default()).unwrap_or_default();
        if watchdog.try_wait().ok().flatten().is_some() {
            panic!("{name} ({command}) exited before listening on port {port}:\n{}", output());
        }
        assert!(
            Instant::now() < deadline,
            "{name} ({command}) did not listen on port {port} within 60 s:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    watchdog
}

/// Starts `command` (a shell command line, output redirected by the caller) with a watchdog
/// shell that ends it (SIGTERM, waits for it, then runs `cleanup`) when this test process is
/// gone or the watchdog gets SIGTERM ([`Watched`]); when the command ends, the watchdog exits too.
pub fn spawn_watched(name: &str, command: &str, cleanup: &str) -> std::process::Child {
    let script = format!(
        "{command} & b=$!; \
         trap 'kill $b 2>/dev/null; wait $b 2>/dev/null; {cleanup}' EXIT; trap 'exit 0' TERM INT; \
         while kill -0 {parent} 2>/dev/null && kill -0 $b 2>/dev/null; do sleep 0.5; done",
        parent = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

/// A watched command ([`spawn_watched`]) stopped when this is dropped.
pub struct Watched(pub std::process::Child);

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// A Tansu broker of its own, for tests whose topic names are fixed (a topology's inputs).
pub fn start_tansu() -> String {
    let (bootstrap, broker) = start_tansu_with("");
    std::mem::forget(broker); // it serves until this test process ends
    bootstrap
}

/// [`start_tansu`] with extra broker flags (e.g. `--authentication`); the broker stops when the
/// returned watchdog is dropped or this test process ends.
pub fn start_tansu_with(flags: &str) -> (String, Watched) {
    let (port, bin) = (free_port(), tool_binary("HAPPYSTREAMS_TANSU_BIN", "tansu.sh"));
    let listener = format!("tcp://127.0.0.1:{port}");
    let command = format!(
        "'{bin}' broker --listener-url {listener} --advertised-listener-url {listener} --storage-engine memory://tansu/ {flags}"
    );
    let watchdog = start_service("Tansu", &format!("{command} >/dev/null 2>&1"), port, "", None);
    (format!("127.0.0.1:{port}"), Watched(watchdog))
}

/// A noida-db broker of the calling test's own (transactions with read_committed isolation,
/// DeleteRecords), from `HAPPYSTREAMS_NOIDA_BIN` (set by `tests/run.sh`) or
/// `tests/rig/noida.sh bin`; stopped when dropped, one test at a time.
///
/// noida-db keeps state that breaks later applications on the same broker: once a transaction
/// ran, it answers a topic's earliest offset with its end. It also serves a partition's last
/// produce request only once another one follows (see INFRA.md).
pub fn noida() -> Noida {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (port, bin) = (free_port(), tool_binary("HAPPYSTREAMS_NOIDA_BIN", "noida.sh"));
    let data = std::env::temp_dir().join(format!(
        "happystreams-noida-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let command =
        format!("'{bin}' start --only kafka --kafka-port {port} --host 127.0.0.1 --data-dir '{}'", data.display());
    let watchdog = start_service(
        "noida-db",
        &format!("{command} >/dev/null 2>&1"),
        port,
        // The server outlives the launcher the watchdog started: end it by its data dir.
        // (Double quotes: the cleanup runs inside the watchdog's single-quoted trap.)
        &format!("pkill -f \"^[^ ]*noida-db start .*{0}\"; rm -rf \"{0}\"", data.display()),
        None,
    );
    Noida { bootstrap: format!("127.0.0.1:{port}"), _broker: Watched(watchdog), _turn: turn }
}

/// A test's own noida-db broker ([`noida`]).
pub struct Noida {
    /// The broker's bootstrap address.
    pub bootstrap: String,
    _broker: Watched,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// A moto S3 server shared by the test binary (in memory, any credentials, path-style), from
/// `HAPPYSTREAMS_MOTO_BIN` (set by `tests/run.sh`) or `tests/rig/moto.sh bin`; returns its URL.
pub fn moto() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (port, bin) = (free_port(), tool_binary("HAPPYSTREAMS_MOTO_BIN", "moto.sh"));
        start_service("moto_server", &format!("'{bin}' -H 127.0.0.1 -p {port} >/dev/null 2>&1"), port, "", None);
        format!("http://127.0.0.1:{port}")
    })
}

/// PostgreSQL 15 with logical decoding and the HappyTimes schema (`tests/rig/postgres.sh`),
/// shared by the test binary: role `dbz` (password `dbz`), database `happytimes`.
pub struct Postgres {
    pub port: u16,
    /// The server's bin directory (psql is there).
    pub bin: String,
}

pub fn postgres() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        let script = format!("{}/tests/rig/postgres.sh", env!("CARGO_MANIFEST_DIR"));
        let output =
            Command::new("bash").args([&script, "install"]).stderr(Stdio::inherit()).output().expect("postgres.sh");
        assert!(output.status.success(), "tests/rig/postgres.sh install failed");
        let bin = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let port = free_port();
        // In /tmp itself (not $TMPDIR, nor the test's temp dirs): the server runs as `postgres`
        // when the tests run as root, and must reach its directory.
        let dir = Path::new("/tmp").join(format!("happystreams-pg-{}", std::process::id()));
        // The log is kept until the server listens, for the panic message of a failed start.
        let log = Path::new("/tmp").join(format!("happystreams-pg-{}.log", std::process::id()));
        let command = format!("bash '{script}' serve '{}' {port} >'{}' 2>&1", dir.display(), log.display());
        start_service("PostgreSQL", &command, port, &format!("rm -rf '{}'", dir.display()), Some(&log));
        // The port opens before the server accepts sessions ("the database system is starting
        // up"); the script says so once `pg_ctl start -w` returned.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("PostgreSQL serving") {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL not ready within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(&log);
        Postgres { port, bin }
    })
}

impl Postgres {
    /// Runs SQL statements in database `happytimes` as `dbz`, one transaction per statement.
    pub fn execute(&self, statements: &[&str]) {
        let mut command = Command::new(format!("{}/psql", self.bin));
        command
            .args(["-q", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "dbz", "-d", "happytimes"])
            .args(["-p", &self.port.to_string()])
            .env("PGPASSWORD", "dbz");
        for statement in statements {
            command.args(["-c", statement]);
        }
        let output = command.output().expect("run psql");
        assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
    }
}

/// An Admin API client (real brokers).
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("admin client")
}

/// Creates a topic through the Admin API (real brokers), with time retention off: test records
/// carry event timestamps from 2025, which a broker that enforces `retention.ms` (noida-db)
/// deletes within seconds, as Kafka would once a segment closes.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin = admin(bootstrap);
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1");
    let results = admin.create_topics(&[new], &AdminOptions::new()).await.expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// One record to produce: key, value (None = tombstone), headers.
pub struct Produce<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
}

/// Produces records in order to partition 0 and waits for every delivery.
pub async fn produce(bootstrap: &str, topic: &str, records: &[Produce<'_>]) {
    let producer: FutureProducer = client_config(bootstrap).set("linger.ms", "0").create().expect("producer");
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header { key: k, value: Some(*v) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(0).headers(headers);
        if let Some(k) = r.key {
            record = record.key(k);
        }
        if let Some(v) = r.value {
            record = record.payload(v);
        }
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("delivery");
    }
}

/// Every record of a topic's partitions, from offset 0 to the end, at an isolation level
/// (`read_committed` / `read_uncommitted`), handed to `each` as it is read (a long topic need
/// not be kept whole). Offset 0, not the beginning: noida-db answers a transactionally written
/// topic's earliest offset with its end (no topic read here ever has records deleted). Gives up
/// after 20 s without a record.
pub fn read_each(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "happystreams-test-reader")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    for partition in 0..partitions {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(0)).unwrap();
        consumer.assign(&tpl).unwrap();
        let mut deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "reading {topic} partition {partition} timed out");
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    deadline = Instant::now() + Duration::from_secs(20);
                    each(&m);
                }
            }
        }
    }
}
