//! Syslog sink: every ECS event as one syslog message (RFC 5424 or RFC 3164) over UDP, TCP
//! or TLS, carrying the ECS JSON document, ArcSight CEF or QRadar LEEF 2.0.
//!
//! Why it exists: Splunk, QRadar, ArcSight, Sentinel and most SIEM appliances take syslog,
//! and common forwarders get it subtly wrong: TLS without RFC 5425 octet counting, CEF with
//! unescaped newlines, no LEEF at all. Audit records carry text any Confluence user controls,
//! so here every header field is reduced to its RFC alphabet and length and every payload is
//! escaped so that one event is always exactly one message ([`encoder`], [`payload`]).
//!
//! Delivery guarantees:
//! - TCP/TLS: a batch leaves the queue only after all of it was written to the socket and
//!   flushed. TCP has no application-level acknowledgement, so "written" means "in the
//!   kernel's send buffer": if the receiver dies with data in flight, up to a socket buffer
//!   of events can be lost (at most once for those); a connection the receiver closed
//!   between batches is noticed before writing and reopened. On any write error the whole
//!   batch is retried on a new connection, so events the receiver did get arrive again
//!   (at least once; deduplicate on `event.id`, which the RFC 5424 structured data carries).
//! - UDP: one datagram per event, never split; a datagram over `max_message_bytes` is
//!   truncated (see [`encoder`]) and counted in `caf_sink_truncated_total`. UDP cannot know
//!   whether anything arrived; a send error (e.g. ICMP port unreachable) retries the events
//!   not yet sent. Nothing tells a UDP sender that a receiver's socket buffer overflowed, so
//!   UDP is paced: at most `max_rate` events per second (default 2,000), in bursts of a
//!   thousandth of that ([`send_budget`]). `max_rate` paces TCP/TLS too when set.
//! - A document that is not a JSON object is dead-lettered.

pub mod config;
pub mod encoder;
pub mod event;
pub mod payload;
pub mod send_budget;
pub mod service;

pub use config::SyslogConfig;
pub use service::SyslogSink;

use std::sync::Arc;

use super::BuildError;
use config::Transport;

impl SyslogConfig {
    /// The sink: every setting checked and, for `tls://`, the certificates and key loaded.
    pub fn build(
        &self,
        name: &str,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<SyslogSink, BuildError> {
        self.validate()?;
        let endpoint = self.endpoint().map_err(|p| BuildError {
            key: "address".into(),
            problem: p,
        })?;
        if endpoint.transport == Transport::Tls {
            service::tls_client_config(&self.tls).map_err(|e| BuildError {
                key: format!("tls.{}", e.key),
                problem: e.problem,
            })?;
            service::server_name(&self.tls, &endpoint).map_err(|p| BuildError {
                key: "tls.server_name".into(),
                problem: p,
            })?;
        }
        SyslogSink::new(name.to_owned(), self.clone(), metrics).map_err(|p| BuildError {
            key: "address".into(),
            problem: p,
        })
    }
}
