//! Elasticsearch sink: every event into a data stream (or an index) with `_bulk`, exactly
//! once, every rejection explained.
//!
//! Why it exists: the ELK stack is where most users read these events, and Elastic's own
//! Confluence integration neither sets a deterministic `_id` nor says why a document was
//! dropped. Here every document is a `create` with `_id` = `event.id`, so a retry — after a
//! timeout, a lost response, a SIGKILL before the acknowledgement — can never index it twice.
//!
//! Delivery guarantees:
//! - An event leaves the queue only when Elasticsearch answered 201 for it, or 409
//!   `version_conflict_engine_exception` (it already had it: an earlier attempt got through).
//! - Items answered 429/5xx — and 401/403/404, a cluster problem rather than the document's —
//!   stay queued and are retried with backoff; so is the whole batch when the request fails
//!   (connection, timeout, 429/5xx honouring `Retry-After`, 401/403 with an "auth" error).
//! - Items rejected for good (400 mapping/parsing errors and other 4xx) go to the dead-letter
//!   queue with Elasticsearch's error type and reason (`dlq list`, `dlq replay`).
//! - Caveat: `_id` uniqueness holds within one backing index. A retry that straddles a data
//!   stream rollover (seconds, against a rollover per month) could index a document twice;
//!   `event.id` still identifies it.
//!
//! [`config`] holds the settings, [`client`] the official client built from them, [`encoder`]
//! the `_bulk` wire format and per-item rules, [`service`] the sink and the health check, [`setup`] the index template, ILM policy
//! and Kibana objects shipped in `deploy/`.

pub mod client;
pub mod config;
pub mod encoder;
pub mod service;
pub mod setup;

pub use config::ElasticsearchConfig;
pub use service::ElasticsearchSink;

use super::BuildError;

impl ElasticsearchConfig {
    /// The sink: every setting checked, secrets resolved, PEM files loaded, client built.
    pub fn build(&self, name: &str) -> Result<ElasticsearchSink, BuildError> {
        self.validate()?;
        ElasticsearchSink::new(name.to_owned(), self.clone())
    }
}
