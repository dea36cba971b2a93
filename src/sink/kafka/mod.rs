//! Kafka sink: at-least-once into a Kafka topic, deduplicable by key.
//!
//! Many SOCs put Kafka between their sources and their SIEM. This sink produces each event
//! with the idempotent producer and `acks=all`, keyed by `event.id`, the ECS JSON as value
//! and `event.kind` / `event.action` / `event.dataset` as headers; alerts (`event.kind:
//! alert`) may go to a topic of their own.
//!
//! Guarantees: a queue entry is deleted only after its delivery report says the broker has
//! it. While the broker is down, events wait in this sink's durable queue (the other sinks
//! go on), and each attempt is bounded by `delivery_timeout`. A crash between the broker's
//! acknowledgement and ours sends an event again: duplicates carry the same key, so a
//! consumer (or a compacted topic) keeps one. Messages the broker can never accept — too
//! large, topic authorization failed, invalid — go to the dead-letter queue with the reason.

pub mod config;
pub mod context;
pub mod encoder;
pub mod service;

pub use config::KafkaConfig;
pub use service::KafkaSink;

use super::BuildError;

impl KafkaConfig {
    /// The sink: every setting checked, librdkafka's properties parsed by librdkafka itself
    /// (the producer connects on first use).
    pub fn build(&self, name: &str) -> Result<KafkaSink, BuildError> {
        Ok(KafkaSink::new(name.to_owned(), self.clone())?)
    }
}
