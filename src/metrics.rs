//! Prometheus metrics: the numbers an operator watches to know events are flowing.
//!
//! One [`Metrics`] value is shared by every task; sources and sink workers update it, the
//! HTTP server renders it. Names are `caf_…`; the README's Operations section explains each.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceKindLabel {
    pub source: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkKindLabel {
    pub sink: String,
    pub kind: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub records_read: Family<SourceLabel, Counter>,
    pub events_new: Family<SourceLabel, Counter>,
    pub duplicates_dropped: Family<SourceLabel, Counter>,
    pub polls: Family<SourceLabel, Counter>,
    pub poll_duration: Family<SourceLabel, Histogram>,
    pub source_errors: Family<SourceKindLabel, Counter>,
    pub cursor_timestamp: Family<SourceLabel, FloatGauge>,
    pub source_lag: Family<SourceLabel, FloatGauge>,
    pub event_time_lag: Family<SourceLabel, FloatGauge>,
    pub newest_record_timestamp: Family<SourceLabel, FloatGauge>,
    pub gaps: Family<SourceLabel, Counter>,
    pub unknown_actions: Family<SourceLabel, Counter>,
    pub rejected_records: Family<SourceLabel, Counter>,
    pub out_of_window: Family<SourceLabel, Counter>,
    pub self_generated_read: Family<SourceLabel, Counter>,
    pub self_generated_queued: Family<SourceLabel, Counter>,
    pub sink_delivered: Family<SinkLabel, Counter>,
    pub sink_retries: Family<SinkLabel, Counter>,
    pub sink_failures: Family<SinkKindLabel, Counter>,
    pub sink_dead_lettered: Family<SinkLabel, Counter>,
    pub sink_truncated: Family<SinkLabel, Counter>,
    pub queue_events: Family<SinkLabel, Gauge>,
    pub queue_bytes: Family<SinkLabel, Gauge>,
    pub queue_oldest_age: Family<SinkLabel, FloatGauge>,
    pub dead_letters: Family<SinkLabel, Gauge>,
    /// SIGHUPs whose file did not check out (the running configuration was kept).
    pub config_reload_failures: Counter,
    /// `/readyz`'s verdicts, set at each scrape (`readiness_metrics`).
    pub source_up: Family<SourceLabel, Gauge>,
    pub sink_failing_seconds: Family<SinkLabel, FloatGauge>,
    pub sink_failure_grace: FloatGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What one commit of a source adds to its counters ([`Metrics::count_committed`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CommittedCounts {
    pub read: u64,
    pub queued: u64,
    pub duplicates: u64,
    pub unknown: u64,
    pub rejected: u64,
    /// Of `read`: records polling itself caused ("Audit Log search performed").
    pub self_generated_read: u64,
    /// Of `queued`: those of them that were new and forwarded.
    pub self_generated_queued: u64,
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("caf");
        let m = Metrics {
            records_read: Family::default(),
            events_new: Family::default(),
            duplicates_dropped: Family::default(),
            polls: Family::default(),
            poll_duration: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0])
            }),
            source_errors: Family::default(),
            cursor_timestamp: Family::default(),
            source_lag: Family::default(),
            event_time_lag: Family::default(),
            newest_record_timestamp: Family::default(),
            gaps: Family::default(),
            unknown_actions: Family::default(),
            rejected_records: Family::default(),
            out_of_window: Family::default(),
            self_generated_read: Family::default(),
            self_generated_queued: Family::default(),
            sink_delivered: Family::default(),
            sink_retries: Family::default(),
            sink_failures: Family::default(),
            sink_dead_lettered: Family::default(),
            sink_truncated: Family::default(),
            queue_events: Family::default(),
            queue_bytes: Family::default(),
            queue_oldest_age: Family::default(),
            dead_letters: Family::default(),
            config_reload_failures: Counter::default(),
            source_up: Family::default(),
            sink_failing_seconds: Family::default(),
            sink_failure_grace: FloatGauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "config_reload_failures",
            "SIGHUPs whose configuration file failed to load or build; the running configuration was kept",
            m.config_reload_failures.clone(),
        );
        r.register(
            "source_records_read",
            "Records fetched from Confluence, before deduplication",
            m.records_read.clone(),
        );
        r.register(
            "source_events",
            "New events queued for the sinks, after deduplication",
            m.events_new.clone(),
        );
        r.register(
            "source_duplicates_dropped",
            "Records fetched again (window overlap, retried pages) and dropped as duplicates",
            m.duplicates_dropped.clone(),
        );
        r.register(
            "source_self_generated_read",
            "Records read that polling itself caused (DC's \"Audit Log search performed\"), new or read again",
            m.self_generated_read.clone(),
        );
        r.register(
            "source_self_generated_queued",
            "New self-generated records queued (forward_self_generated = true)",
            m.self_generated_queued.clone(),
        );
        r.register("source_polls", "Completed poll cycles", m.polls.clone());
        r.register(
            "source_poll_duration_seconds",
            "Duration of a poll cycle",
            m.poll_duration.clone(),
        );
        r.register(
            "source_errors",
            "Source errors by kind (http_429, http_5xx, auth, timeout, connect, malformed, paging, out_of_window, state; file sources: file_read, file_truncated, file_replaced)",
            m.source_errors.clone(),
        );
        r.register(
            "source_cursor_timestamp_seconds",
            "The source cursor: every record up to this time is queued",
            m.cursor_timestamp.clone(),
        );
        r.register(
            "source_lag_seconds",
            "Now minus the time of the newest record queued for delivery",
            m.source_lag.clone(),
        );
        r.register(
            "source_event_time_lag_seconds",
            "Organization sources: now minus the event time (`time`) of the newest event queued; caf_source_lag_seconds is on `processedAt`, the gap between them is how late the log processed it",
            m.event_time_lag.clone(),
        );
        r.register(
            "source_newest_record_timestamp_seconds",
            "Time of the newest record queued for delivery",
            m.newest_record_timestamp.clone(),
        );
        r.register(
            "source_gaps",
            "Gaps detected: records that may be gone (cursor older than retention)",
            m.gaps.clone(),
        );
        r.register(
            "source_unknown_actions",
            "Events whose action is not in the mapping tables (forwarded generically)",
            m.unknown_actions.clone(),
        );
        r.register(
            "source_rejected_records",
            "Records that could not be parsed (forwarded as a parse-failure document)",
            m.rejected_records.clone(),
        );
        r.register(
            "source_out_of_window",
            "Records a page held outside the window that was asked for (dropped, not queued)",
            m.out_of_window.clone(),
        );
        r.register(
            "sink_delivered",
            "Events the sink acknowledged",
            m.sink_delivered.clone(),
        );
        r.register(
            "sink_retries",
            "Delivery attempts retried (whole batches or single events)",
            m.sink_retries.clone(),
        );
        r.register(
            "sink_failures",
            "Failed delivery attempts by kind",
            m.sink_failures.clone(),
        );
        r.register(
            "sink_dead_lettered",
            "Events moved to the dead-letter queue",
            m.sink_dead_lettered.clone(),
        );
        r.register(
            "sink_truncated",
            "Messages cut to the sink's size limit (syslog over UDP), delivered truncated",
            m.sink_truncated.clone(),
        );
        r.register(
            "sink_queue_events",
            "Events waiting in the sink's durable queue",
            m.queue_events.clone(),
        );
        r.register(
            "sink_queue_bytes",
            "Bytes waiting in the sink's durable queue",
            m.queue_bytes.clone(),
        );
        r.register(
            "sink_queue_oldest_age_seconds",
            "Age of the oldest event in the sink's queue",
            m.queue_oldest_age.clone(),
        );
        r.register(
            "sink_dead_letters",
            "Events in the sink's dead-letter queue",
            m.dead_letters.clone(),
        );
        r.register(
            "source_up",
            "1 when the source's last poll cycle succeeded, recently enough for /readyz; 0 otherwise",
            m.source_up.clone(),
        );
        r.register(
            "sink_failing_seconds",
            "How long every delivery attempt of the sink has failed (0 when it delivers)",
            m.sink_failing_seconds.clone(),
        );
        r.register(
            "sink_failure_grace_seconds",
            "server.sink_failure_grace: a sink failing for longer makes /readyz unready",
            m.sink_failure_grace.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn source(&self, name: &str) -> SourceLabel {
        SourceLabel {
            source: name.to_owned(),
        }
    }

    /// The counts of one committed slice or page of `source`: records read (`queued` +
    /// `duplicates`), new events queued, duplicates dropped, unknown actions, rejected records.
    pub fn count_committed(&self, source: &SourceLabel, counts: CommittedCounts) {
        let CommittedCounts {
            read,
            queued,
            duplicates,
            unknown,
            rejected,
            self_generated_read,
            self_generated_queued,
        } = counts;
        self.records_read.get_or_create(source).inc_by(read);
        self.events_new.get_or_create(source).inc_by(queued);
        self.duplicates_dropped
            .get_or_create(source)
            .inc_by(duplicates);
        self.unknown_actions.get_or_create(source).inc_by(unknown);
        self.rejected_records.get_or_create(source).inc_by(rejected);
        self.self_generated_read
            .get_or_create(source)
            .inc_by(self_generated_read);
        self.self_generated_queued
            .get_or_create(source)
            .inc_by(self_generated_queued);
    }

    pub fn sink(&self, name: &str) -> SinkLabel {
        SinkLabel {
            sink: name.to_owned(),
        }
    }
}
