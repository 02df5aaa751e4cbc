//! Creating topics through the Admin API.

use super::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec<'a> {
    /// Name.
    pub name: &'a str,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication: i32,
    /// Topic configuration (`cleanup.policy`, ...).
    pub config: &'a [(&'a str, &'a str)],
}

/// Creates the topics that do not exist yet (an existing one is left as it is); returns the
/// names it created. New topics take a moment to have leaders, so it waits briefly after
/// creating any.
pub async fn create_missing_topics(kafka: &KafkaConfig, topics: &[TopicSpec<'_>]) -> Result<Vec<String>, String> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> =
        kafka.admin_config().create().map_err(|e| format!("invalid Kafka client settings: {e}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(t.name, t.partitions, TopicReplication::Fixed(t.replication));
            t.config.iter().fold(topic, |topic, (key, value)| topic.set(key, value))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new, &options).await.map_err(|e| format!("creating topics: {e}"))?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("creating topic `{name}`: {code}")),
        }
    }
    if !created.is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(created)
}
