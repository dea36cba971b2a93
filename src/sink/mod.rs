//! Sinks: where documents go, and the worker that drains a sink's durable queue.
//!
//! Every sink kind implements [`Sink`]: deliver a batch, say per document whether it was
//! delivered, should be retried or can never be accepted. Everything else — batching from
//! the queue, backoff and `Retry-After`, deleting what was delivered, dead-lettering what was
//! rejected, draining on shutdown, metrics — is the same for every kind and lives in
//! [`worker`] (its pacing in [`retry_delay`]), so a new sink is only its own protocol. One folder (or file) per kind.

pub mod elasticsearch;
pub mod file;
pub mod kafka;
pub mod retry_delay;
pub mod stdout;
pub mod syslog;
pub mod worker;

use std::future::Future;
use std::time::Duration;

pub use crate::state::QueuedEvent;

/// What became of one document of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The destination has it (or already had it: a duplicate counts as delivered).
    Delivered,
    /// Not this time (overload, a transient error): keep it queued and retry.
    Retry(String),
    /// Never: a permanent rejection. It goes to the dead-letter queue with this reason.
    Rejected(String),
}

/// The result of delivering a batch: one [`Delivery`] per document, in batch order, and the
/// sink's checkpoint to store with the acknowledgement (e.g. the file sink's length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub results: Vec<Delivery>,
    pub checkpoint: Option<Vec<u8>>,
}

impl BatchOutcome {
    /// Every document delivered.
    pub fn all_delivered(n: usize) -> Self {
        BatchOutcome {
            results: vec![Delivery::Delivered; n],
            checkpoint: None,
        }
    }
}

/// The whole batch failed: nothing is acknowledged, all of it is retried after a backoff.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct SinkError {
    /// A short, stable label for metrics: "connect", "timeout", "http_429", "io", "auth"…
    pub kind: &'static str,
    pub reason: String,
    /// The destination asked us to wait this long (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl SinkError {
    pub fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        SinkError {
            kind,
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// A destination for ECS documents.
///
/// Futures must be `Send`: each sink runs in its own task.
pub trait Sink: Send + 'static {
    /// Get ready (connect, check credentials, repair a torn file). `checkpoint` is what
    /// this sink returned with its last acknowledged batch. A returned checkpoint is stored
    /// before the first delivery (the file sink records where its file started).
    fn open(
        &mut self,
        checkpoint: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, SinkError>> + Send;

    /// Deliver `batch` (oldest first). `Ok` must hold one [`Delivery`] per document.
    fn deliver(
        &mut self,
        batch: &[QueuedEvent],
    ) -> impl Future<Output = Result<BatchOutcome, SinkError>> + Send;
}

#[cfg(test)]
mod worker_tests;
