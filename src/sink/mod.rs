//! Sinks: where documents go, and the worker that drains a sink's durable queue.
//!
//! Every sink kind implements [`Sink`]: deliver a batch, say per document whether it was
//! delivered, should be retried or can never be accepted. Everything else — batching from
//! the queue, backoff and `Retry-After`, deleting what was delivered, dead-lettering what was
//! rejected, draining on shutdown, metrics — is the same for every kind and lives in
//! [`worker`] (its pacing in [`retry_delay`]), so a new sink is only its own protocol. One folder (or file) per kind, each with
//! the same roles: `config` (its settings and their checks), its `build` (settings → sink, the
//! only way to construct one, called by `check-config`, a SIGHUP and the daemon alike), the
//! encoder, the service (the [`Sink`] itself) and tests.
//!
//! This file is the registry: [`SinkKind`] lists every kind, and adding one is a variant and
//! an arm in each exhaustive `match` of its `impl`.

pub mod elasticsearch;
pub mod file;
pub mod kafka;
pub mod retry_delay;
pub mod stdout;
pub mod syslog;
pub mod worker;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::de_duration;
use crate::config::keys::Shape;
use crate::metrics::Metrics;
pub use crate::state::QueuedEvent;
use worker::{SinkStatus, WorkerContext, WorkerSettings};

/// One `[[sink]]`: its name, its kind-specific settings and the batching/retry settings
/// every sink shares.
#[derive(Debug, Clone, Deserialize)]
pub struct SinkConfig {
    pub name: String,
    #[serde(flatten)]
    pub kind: SinkKind,
    #[serde(default = "defaults::batch_max_events")]
    pub batch_max_events: usize,
    #[serde(default = "defaults::batch_max_bytes")]
    pub batch_max_bytes: usize,
    #[serde(default = "defaults::flush_interval", deserialize_with = "de_duration")]
    pub flush_interval: Duration,
    /// Longest wait between delivery retries.
    #[serde(default = "defaults::max_backoff", deserialize_with = "de_duration")]
    pub max_backoff: Duration,
}

impl SinkConfig {
    /// The keys every sink has, beside those of its kind (keep in step with the fields
    /// above: `#[serde(flatten)]` hides them from the key check's field probe).
    pub const COMMON_KEYS: &'static [&'static str] = &[
        "name",
        "type",
        "batch_max_events",
        "batch_max_bytes",
        "flush_interval",
        "max_backoff",
    ];

    /// The worker's batching and retry settings.
    pub fn worker_settings(&self, min_backoff: Duration) -> WorkerSettings {
        WorkerSettings {
            max_events: self.batch_max_events,
            max_bytes: self.batch_max_bytes,
            flush_interval: self.flush_interval,
            min_backoff,
            max_backoff: self.max_backoff,
        }
    }
}

mod defaults {
    use std::time::Duration;
    pub fn batch_max_events() -> usize {
        1000
    }
    pub fn batch_max_bytes() -> usize {
        4 << 20
    }
    pub fn flush_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn max_backoff() -> Duration {
        Duration::from_secs(60)
    }
}

/// The sink registry: every kind, by `type`. Adding a kind is a variant here and an arm in
/// each `match` below; the compiler finds every place.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// NDJSON file, exactly once across crashes.
    File(file::FileConfig),
    /// NDJSON on standard output, for piping.
    Stdout(stdout::StdoutConfig),
    /// Syslog over UDP, TCP or TLS (RFC 5424/3164; JSON, CEF or LEEF payloads).
    Syslog(Box<syslog::SyslogConfig>),
    /// Kafka topic, at least once, keyed by `event.id`.
    Kafka(Box<kafka::KafkaConfig>),
    /// Elasticsearch `_bulk` into a data stream or index, exactly once by `_id`.
    Elasticsearch(Box<elasticsearch::ElasticsearchConfig>),
    /// OpenSearch: the Elasticsearch sink with OpenSearch's template, ISM policy and checks.
    Opensearch(Box<elasticsearch::ElasticsearchConfig>),
}

/// Why a sink could not be built: the key at fault (relative to the sink) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct BuildError {
    pub key: String,
    pub problem: String,
}

impl From<(String, String)> for BuildError {
    fn from((key, problem): (String, String)) -> Self {
        BuildError { key, problem }
    }
}

/// Why a sink is being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `check-config` and a SIGHUP's new file: everything is read, parsed and loaded, but
    /// nothing is claimed (the running daemon may hold it).
    Check,
    /// The daemon: also claim what the sink must own alone (the file sink's lock).
    Run,
}

/// What a sink's `build` may need from the daemon.
#[derive(Clone)]
pub struct BuildContext {
    pub purpose: Purpose,
    pub metrics: Arc<Metrics>,
}

/// A built sink, ready to be driven by a [`worker`].
pub struct BuiltSink(Box<dyn FnOnce(WorkerRun) -> WorkerFuture + Send>);

/// A running worker.
pub type WorkerFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a worker runs with, besides its sink.
pub struct WorkerRun {
    pub name: String,
    pub settings: WorkerSettings,
    pub ctx: WorkerContext,
    pub status: Arc<SinkStatus>,
}

impl BuiltSink {
    fn new<S: Sink>(sink: S) -> Self {
        BuiltSink(Box::new(move |w: WorkerRun| {
            Box::pin(worker::run(w.name, sink, w.settings, w.ctx, w.status))
        }))
    }

    /// The worker that drains this sink's queue into it.
    pub fn into_worker(self, run: WorkerRun) -> WorkerFuture {
        (self.0)(run)
    }
}

impl SinkKind {
    /// Every `type`, as written in the file.
    pub const TYPES: &'static [&'static str] = &[
        "file",
        "stdout",
        "syslog",
        "kafka",
        "elasticsearch",
        "opensearch",
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File(_) => "file",
            SinkKind::Stdout(_) => "stdout",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::Elasticsearch(_) => "elasticsearch",
            SinkKind::Opensearch(_) => "opensearch",
        }
    }

    /// The keys of a `type` (see [`crate::config::keys`]); `None` for an unknown type.
    pub fn shape_of(type_name: &str) -> Option<Shape> {
        Some(match type_name {
            "file" => Shape::of::<file::FileConfig>(vec![]),
            "stdout" => Shape::of::<stdout::StdoutConfig>(vec![]),
            "syslog" => syslog::config::shape(),
            "kafka" => kafka::config::shape(),
            "elasticsearch" | "opensearch" => elasticsearch::config::shape(),
            _ => return None,
        })
    }

    /// The key path of the first value of a sink of `type_name` that does not read, for
    /// errors: serde cannot name it through `#[serde(flatten)]`.
    pub fn failing_key(type_name: &str, table: serde_json::Value) -> Option<String> {
        fn path<T: serde::de::DeserializeOwned>(table: serde_json::Value) -> Option<String> {
            serde_path_to_error::deserialize::<_, T>(table)
                .err()
                .map(|e| e.path().to_string())
                .filter(|p| p != ".")
        }
        match type_name {
            "file" => path::<file::FileConfig>(table),
            "stdout" => path::<stdout::StdoutConfig>(table),
            "syslog" => path::<syslog::SyslogConfig>(table),
            "kafka" => path::<kafka::KafkaConfig>(table),
            "elasticsearch" | "opensearch" => path::<elasticsearch::ElasticsearchConfig>(table),
            _ => None,
        }
    }

    /// The one way to construct a sink: `check-config`, a SIGHUP and the daemon all come
    /// here, so a file that passes `check-config` builds the same sinks at start.
    pub fn build(&self, name: &str, ctx: &BuildContext) -> Result<BuiltSink, BuildError> {
        Ok(match self {
            SinkKind::File(c) => BuiltSink::new(c.build(ctx.purpose)?),
            SinkKind::Stdout(c) => BuiltSink::new(c.build()),
            SinkKind::Syslog(c) => BuiltSink::new(c.build(name, ctx.metrics.clone())?),
            SinkKind::Kafka(c) => BuiltSink::new(c.build(name)?),
            SinkKind::Elasticsearch(c) => BuiltSink::new(c.build(name)?),
            SinkKind::Opensearch(c) => BuiltSink::new(c.for_opensearch().build(name)?),
        })
    }
}

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

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn the_type_list_is_the_enum_and_every_type_has_its_keys() {
        let err = serde_json::from_value::<SinkKind>(serde_json::json!({"type": "nope"}))
            .unwrap_err()
            .to_string();
        // "unknown variant `nope`, expected one of `file`, `stdout`, …"
        let listed: Vec<&str> = err.split('`').skip(3).step_by(2).collect();
        assert_eq!(listed, SinkKind::TYPES, "{err}");
        for t in SinkKind::TYPES {
            assert!(SinkKind::shape_of(t).is_some(), "{t}");
        }
    }
}
