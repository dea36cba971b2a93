//! The producer side: turn a batch into produce requests, wait for every delivery report,
//! and say per event whether the broker has it.
//!
//! An event counts as delivered only when its delivery report carries an offset — with
//! `acks=all`, once every in-sync replica has it. Everything librdkafka can retry it does
//! itself, for at most `delivery_timeout`; what is still undelivered then is handed back to
//! the worker as `Retry`, so it stays in the durable queue. Only what the broker can never
//! accept (too large, forbidden topic, invalid record) is `Rejected` to the dead-letter
//! queue. Because a broker may fail a whole produce request for one oversized message,
//! size rejections are confirmed by sending each suspect alone before dead-lettering it.

use std::time::Duration;

use futures_util::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::config::KafkaConfig;
use super::context::{AuthFailure, SinkContext};
use super::encoder::EventHeaders;
use crate::sink::{BatchOutcome, Delivery, QueuedEvent, Sink, SinkError};

/// Longest wait for the broker's metadata when opening.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KafkaSink {
    name: String,
    cfg: KafkaConfig,
    producer: Option<FutureProducer<SinkContext>>,
    auth: AuthFailure,
}

/// What one delivery report (or a refused enqueue) means for the event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Report {
    Delivered,
    /// Retriable; `kind` is the metrics label of the failure.
    Retry {
        kind: &'static str,
        reason: String,
    },
    /// The broker refused this message for its size: maybe for another one in the same
    /// produce request, so confirm alone before dead-lettering.
    TooLarge(String),
    Rejected(String),
}

impl KafkaSink {
    /// A sink for validated settings (see [`KafkaConfig::validate`]).
    pub fn new(name: String, cfg: KafkaConfig) -> Result<KafkaSink, (String, String)> {
        cfg.validate()?;
        Ok(KafkaSink {
            name,
            cfg,
            producer: None,
            auth: AuthFailure::default(),
        })
    }

    /// The producer, created on first use and again after librdkafka declared it dead
    /// (an idempotent producer can hit a fatal error, after which it refuses everything).
    fn producer(&mut self) -> Result<FutureProducer<SinkContext>, SinkError> {
        if let Some(p) = &self.producer {
            match p.client().fatal_error() {
                None => return Ok(p.clone()),
                Some((code, reason)) => {
                    tracing::warn!(?code, %reason, "producer hit a fatal error; creating a new one")
                }
            }
        }
        let client = self
            .cfg
            .client_config()
            .map_err(|(k, p)| SinkError::new("config", format!("{k}: {p}")))?;
        let producer: FutureProducer<SinkContext> = client
            .create_with_context(SinkContext::new(&self.name, self.auth.clone()))
            .map_err(|e| SinkError::new("config", format!("cannot create producer: {e}")))?;
        self.producer = Some(producer.clone());
        Ok(producer)
    }

    fn topics(&self) -> Vec<&str> {
        let mut t = vec![self.cfg.topic.as_str()];
        t.extend(self.cfg.alerts_topic.as_deref());
        t
    }

    async fn create_topics(&self) -> Result<(), SinkError> {
        let client = self
            .cfg
            .client_config()
            .map_err(|(k, p)| SinkError::new("config", format!("{k}: {p}")))?;
        let admin: AdminClient<SinkContext> = client
            .create_with_context(SinkContext::new(&self.name, self.auth.clone()))
            .map_err(|e| SinkError::new("config", format!("cannot create admin client: {e}")))?;
        let new: Vec<NewTopic> = self
            .topics()
            .into_iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    self.cfg.partitions,
                    TopicReplication::Fixed(self.cfg.replication_factor),
                )
            })
            .collect();
        let opts = AdminOptions::new().request_timeout(Some(OPEN_TIMEOUT));
        let results = admin
            .create_topics(&new, &opts)
            .await
            .map_err(|e| SinkError::new("connect", format!("cannot create topics: {e}")))?;
        for r in results {
            match r {
                Ok(topic) => tracing::info!(%topic, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(SinkError::new(
                        "topic",
                        format!("cannot create topic {topic:?}: {code}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Hand every event to librdkafka, then wait for all their delivery reports.
    async fn produce(
        &self,
        producer: &FutureProducer<SinkContext>,
        batch: &[&QueuedEvent],
    ) -> Vec<Report> {
        let mut pending: Vec<Result<DeliveryFuture, Report>> = Vec::with_capacity(batch.len());
        for ev in batch {
            let fields = EventHeaders::of(&ev.doc);
            let mut headers = OwnedHeaders::new_with_capacity(3);
            for (key, value) in fields.pairs() {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            let record = FutureRecord::to(self.cfg.topic_for(fields.kind.as_deref()))
                .key(ev.id.as_str())
                .payload(ev.doc.as_slice())
                .headers(headers);
            pending.push(producer.send_result(record).map_err(|(e, _)| classify(&e)));
        }
        join_all(pending.into_iter().map(|p| async move {
            match p {
                Err(report) => report,
                Ok(future) => match future.await {
                    Ok(Ok(_)) => Report::Delivered,
                    Ok(Err((e, _))) => classify(&e),
                    // The producer went away with the message (it is being replaced).
                    Err(_) => Report::Retry {
                        kind: "producer",
                        reason: "producer closed before reporting".into(),
                    },
                },
            }
        }))
        .await
    }
}

/// Metrics label of the failures after which the producer is replaced.
const FENCED: &str = "producer_fenced";

/// Sort a librdkafka error into what the worker should do with the event.
fn classify(e: &KafkaError) -> Report {
    use RDKafkaErrorCode as C;
    let Some(code) = e.rdkafka_error_code() else {
        return Report::Retry {
            kind: "producer",
            reason: e.to_string(),
        };
    };
    let reason = e.to_string();
    match code {
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => {
            Report::TooLarge(reason)
        }
        C::TopicAuthorizationFailed
        | C::InvalidRecord
        | C::InvalidTopic
        | C::PolicyViolation
        | C::BadMessage => Report::Rejected(reason),
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut => Report::Retry {
            kind: "timeout",
            reason,
        },
        C::QueueFull => Report::Retry {
            kind: "queue_full",
            reason,
        },
        C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve | C::NetworkException => {
            Report::Retry {
                kind: "connect",
                reason,
            }
        }
        // The broker no longer accepts this producer's identity (it lost or expired its
        // state, or another producer took over): only a new producer gets a new one.
        C::ProducerFenced
        | C::UnknownProducerId
        | C::InvalidProducerEpoch
        | C::InvalidProducerIdMapping
        | C::OutOfOrderSequenceNumber
        | C::Fatal => Report::Retry {
            kind: FENCED,
            reason,
        },
        C::Authentication | C::SaslAuthenticationFailed | C::ClusterAuthorizationFailed => {
            Report::Retry {
                kind: "auth",
                reason,
            }
        }
        _ => Report::Retry {
            kind: "broker",
            reason,
        },
    }
}

impl Sink for KafkaSink {
    async fn open(&mut self, _checkpoint: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, SinkError> {
        let producer = self.producer()?;
        // Ask for metadata so that a broker that is down, unreachable or refusing our
        // credentials is reported at start, not as a batch of timeouts.
        let timeout = OPEN_TIMEOUT.min(self.cfg.delivery_timeout.max(Duration::from_secs(1)));
        let topics = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|md| {
                md.topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| t.name().to_owned())
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|e| SinkError::new("connect", format!("metadata task: {e}")))?
        .map_err(|e| match self.auth.get() {
            Some(reason) => SinkError::new(
                "auth",
                format!(
                    "brokers {} refused the credentials: {reason}",
                    self.cfg.brokers
                ),
            ),
            None => SinkError::new(
                "connect",
                format!("cannot reach brokers {}: {e}", self.cfg.brokers),
            ),
        })?;
        if self.cfg.create_topic {
            self.create_topics().await?;
        } else {
            for t in self.topics() {
                if !topics.iter().any(|have| have == t) {
                    tracing::warn!(
                        sink = %self.name,
                        topic = t,
                        "topic does not exist (yet): deliveries fail and stay queued unless the broker creates topics on demand; set create_topic = true to create it"
                    );
                }
            }
        }
        Ok(None)
    }

    async fn deliver(&mut self, batch: &[QueuedEvent]) -> Result<BatchOutcome, SinkError> {
        let producer = self.producer()?;
        let all: Vec<&QueuedEvent> = batch.iter().collect();
        let mut reports = self.produce(&producer, &all).await;

        // A size refusal may be for a neighbour in the same produce request: send each
        // suspect alone; what is refused alone is too large for good.
        let suspects: Vec<usize> = (0..reports.len())
            .filter(|&i| matches!(reports[i], Report::TooLarge(_)))
            .collect();
        if suspects.len() > 1 {
            for i in suspects {
                let alone = self.produce(&producer, &[&batch[i]]).await;
                reports[i] = alone.into_iter().next().expect("one report for one event");
            }
        }

        if reports
            .iter()
            .any(|r| matches!(r, Report::Retry { kind: FENCED, .. }))
        {
            tracing::warn!(sink = %self.name, "the broker refused the producer's identity; the next attempt uses a new producer");
            self.producer = None;
        }

        let delivered = reports
            .iter()
            .filter(|r| !matches!(r, Report::Retry { .. }))
            .count();
        if reports.contains(&Report::Delivered) {
            self.auth.clear();
        }
        // Nothing got through and nothing was refused: the broker (or the way to it) is
        // the problem, not the events. Say so as a batch failure, labelled for metrics;
        // refused credentials as such, not as the timeouts they end in.
        if delivered == 0
            && let Some(Report::Retry { kind, reason }) = reports.first()
        {
            return Err(match self.auth.get() {
                Some(auth) if matches!(*kind, "timeout" | "connect" | "broker") => {
                    SinkError::new("auth", format!("{auth} (then: {reason})"))
                }
                _ => SinkError::new(kind, reason.clone()),
            });
        }
        let results = reports
            .into_iter()
            .map(|r| match r {
                Report::Delivered => Delivery::Delivered,
                Report::Retry { reason, .. } => Delivery::Retry(reason),
                Report::TooLarge(reason) | Report::Rejected(reason) => Delivery::Rejected(reason),
            })
            .collect();
        Ok(BatchOutcome {
            results,
            checkpoint: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_sorted_into_retry_and_reject() {
        let p = |c| classify(&KafkaError::MessageProduction(c));
        assert!(matches!(
            p(RDKafkaErrorCode::MessageTimedOut),
            Report::Retry {
                kind: "timeout",
                ..
            }
        ));
        assert!(matches!(
            p(RDKafkaErrorCode::QueueFull),
            Report::Retry {
                kind: "queue_full",
                ..
            }
        ));
        assert!(matches!(
            p(RDKafkaErrorCode::AllBrokersDown),
            Report::Retry {
                kind: "connect",
                ..
            }
        ));
        assert!(matches!(
            p(RDKafkaErrorCode::NotLeaderForPartition),
            Report::Retry { kind: "broker", .. }
        ));
        assert!(matches!(
            p(RDKafkaErrorCode::MessageSizeTooLarge),
            Report::TooLarge(_)
        ));
        assert!(matches!(
            p(RDKafkaErrorCode::TopicAuthorizationFailed),
            Report::Rejected(_)
        ));
        assert!(matches!(
            p(RDKafkaErrorCode::InvalidRecord),
            Report::Rejected(_)
        ));
    }
}
