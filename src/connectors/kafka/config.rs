//! Kafka client settings: `kafka.properties` for every client, `kafka.consumer.properties` and
//! `kafka.producer.properties` for one kind (like Kafka Streams' `consumer.` / `producer.`
//! prefixes). A property librdkafka defines only for consumers (or only for producers) goes only
//! to those clients even when set in `kafka.properties`, so no client warns about a property
//! that is not its own (`CONFWARN`).

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the Kafka cluster is and how to connect.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Any librdkafka property (`security.protocol`, `sasl.*`, `ssl.*`, ...), passed through to
    /// every client it applies to.
    pub properties: BTreeMap<String, String>,
    /// Properties for consumers only (`[kafka.consumer.properties]`), over `properties`.
    pub consumer: ClientProperties,
    /// Properties for producers only (`[kafka.producer.properties]`), over `properties`.
    pub producer: ClientProperties,
}

/// Properties for one kind of client.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientProperties {
    /// librdkafka properties.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            properties: BTreeMap::new(),
            consumer: ClientProperties::default(),
            producer: ClientProperties::default(),
        }
    }
}

/// The kind of librdkafka client a config is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A consumer.
    Consumer,
    /// A producer.
    Producer,
    /// An admin client (neither consumer nor producer properties).
    Admin,
}

/// librdkafka's consumer-only properties (`C` in its CONFIGURATION.md, v2.12).
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// librdkafka's producer-only properties (`P` in its CONFIGURATION.md, v2.12).
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

impl ClientKind {
    /// Whether a property set for every client applies to this kind.
    fn takes(self, property: &str) -> bool {
        let consumer_only = CONSUMER_ONLY.contains(&property);
        let producer_only = PRODUCER_ONLY.contains(&property);
        match self {
            ClientKind::Consumer => !producer_only,
            ClientKind::Producer => !consumer_only,
            ClientKind::Admin => !consumer_only && !producer_only,
        }
    }
}

/// True for property names whose values must never be printed: anything naming a password,
/// secret, token or credentials, private keys, and SASL settings that embed secrets
/// (`sasl.oauthbearer.config`, `sasl.jaas.config`).
pub fn is_secret(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    ["password", "secret", "token", "credential", "sasl.oauthbearer.config", "sasl.jaas.config"]
        .iter()
        .any(|word| p.contains(word))
        || p.ends_with(".key.pem")
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "<redacted>" } else { v.as_str() }))
            .collect();
        let redact = |properties: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            properties
                .iter()
                .map(|(k, v)| (k.clone(), if is_secret(k) { "<redacted>".to_owned() } else { v.clone() }))
                .collect()
        };
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &shown)
            .field("consumer", &redact(&self.consumer.properties))
            .field("producer", &redact(&self.producer.properties))
            .finish()
    }
}

impl KafkaConfig {
    /// A librdkafka config for a `kind` client: the bootstrap servers, the pass-through
    /// properties that apply to it, then its own section's.
    pub fn client_config(&self, kind: ClientKind) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in self.properties.iter().filter(|(key, _)| kind.takes(key)) {
            config.set(key, value);
        }
        let own = match kind {
            ClientKind::Consumer => &self.consumer.properties,
            ClientKind::Producer => &self.producer.properties,
            ClientKind::Admin => return config,
        };
        for (key, value) in own {
            config.set(key, value);
        }
        config
    }

    /// [`KafkaConfig::client_config`] over `defaults`: the application's own settings for a
    /// client, which the user's properties may override.
    pub fn client_config_over(&self, kind: ClientKind, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in self.client_config(kind).config_map() {
            config.set(key, value);
        }
        config
    }

    /// [`KafkaConfig::client_config`] for a consumer.
    pub fn consumer_config(&self) -> ClientConfig {
        self.client_config(ClientKind::Consumer)
    }

    /// [`KafkaConfig::client_config`] for a producer.
    pub fn producer_config(&self) -> ClientConfig {
        self.client_config(ClientKind::Producer)
    }

    /// [`KafkaConfig::client_config`] for an admin client.
    pub fn admin_config(&self) -> ClientConfig {
        self.client_config(ClientKind::Admin)
    }
}

/// The context of consumers that read to a partition's end (`enable.partition.eof`): librdkafka
/// may also report the end as a client-wide error, which is no error (the default context would
/// log it as one); every other client error is logged as a warning, as librdkafka retries it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_partition_eof(&error) {
            tracing::trace!(reason, "end of a partition");
        } else {
            tracing::warn!(error = %error, reason, "Kafka client error (retried by the client)");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// A consumer with [`ReaderContext`].
pub type Reader = BaseConsumer<ReaderContext>;

/// A client context that remembers the last authentication or TLS failure librdkafka reported,
/// so an operation that then times out ("broker transport failure", "all brokers down") can say
/// what actually went wrong. librdkafka's reasons name the mechanism and the broker's answer,
/// never the password.
#[derive(Debug, Default)]
pub struct ConnectContext {
    security_failure: std::sync::Mutex<Option<String>>,
}

impl ConnectContext {
    /// What the last authentication or TLS failure was, with what to check, if there was one.
    pub fn security_failure(&self) -> Option<String> {
        self.security_failure.lock().ok()?.clone()
    }
}

impl ClientContext for ConnectContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(failure) = security_failure(&error, reason)
            && let Ok(mut last) = self.security_failure.lock()
        {
            *last = Some(failure);
        }
        tracing::warn!(error = %error, reason, "Kafka client error (retried by the client)");
    }
}

impl ConsumerContext for ConnectContext {}

/// A failure to authenticate or to set up TLS, which librdkafka retries forever although no
/// retry can succeed until the settings change: what failed and which settings to check.
pub fn security_failure(error: &KafkaError, reason: &str) -> Option<String> {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => Some(format!(
            "Kafka authentication failed ({reason}); check kafka.properties security.protocol, sasl.mechanism, \
             sasl.username and sasl.password, and that the user exists on the broker"
        )),
        Some(RDKafkaErrorCode::SSL) => Some(format!(
            "Kafka TLS handshake failed ({reason}); check kafka.properties security.protocol and ssl.* \
             (ssl.ca.location for a private CA)"
        )),
        _ => None,
    }
}

/// Whether a client error is librdkafka reporting the end of a partition.
pub fn is_partition_eof(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KafkaConfig {
        let mut kafka = KafkaConfig::default();
        for (key, value) in [
            ("session.timeout.ms", "6000"),
            ("linger.ms", "7"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.password", "p"),
        ] {
            kafka.properties.insert(key.into(), value.into());
        }
        kafka.consumer.properties.insert("fetch.wait.max.ms".into(), "10".into());
        kafka.producer.properties.insert("linger.ms".into(), "20".into());
        kafka
    }

    #[test]
    fn each_client_gets_only_the_properties_it_has() {
        let kafka = config();
        let consumer = kafka.consumer_config();
        assert_eq!(consumer.get("session.timeout.ms"), Some("6000"));
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(consumer.get("linger.ms"), None);
        let producer = kafka.producer_config();
        assert_eq!(producer.get("linger.ms"), Some("20"), "the producer section wins");
        assert_eq!(producer.get("session.timeout.ms"), None);
        assert_eq!(producer.get("fetch.wait.max.ms"), None);
        let admin = kafka.admin_config();
        assert_eq!((admin.get("linger.ms"), admin.get("session.timeout.ms")), (None, None));
        for client in [consumer, producer, admin] {
            assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(client.get("sasl.password"), Some("p"));
            assert_eq!(client.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        }
    }

    #[test]
    fn debug_output_redacts_secrets_in_every_section() {
        let mut kafka = config();
        kafka.consumer.properties.insert("ssl.key.password".into(), "hunter2".into());
        let shown = format!("{kafka:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("\"p\""), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn secret_bearing_properties_are_known() {
        for property in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "SASL.OAUTHBEARER.CLIENT.SECRET",
            "ssl.key.pem",
            "sasl.aws.credentials",
            "sasl.oauthbearer.token.endpoint.url.token",
        ] {
            assert!(is_secret(property), "{property}");
        }
        for property in ["sasl.username", "security.protocol", "ssl.ca.location", "linger.ms", "sasl.mechanism"] {
            assert!(!is_secret(property), "{property}");
        }
    }

    #[test]
    fn the_end_of_a_partition_is_not_an_error() {
        assert!(is_partition_eof(&KafkaError::Global(RDKafkaErrorCode::PartitionEOF)));
        assert!(is_partition_eof(&KafkaError::PartitionEOF(3)));
        assert!(!is_partition_eof(&KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)));
    }
}
