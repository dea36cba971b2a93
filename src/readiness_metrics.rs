//! `/readyz`'s verdicts as metrics, so that an alert rule sees exactly what `/readyz` sees:
//! whether each source is up, how long each sink has failed, and the configured grace.
//!
//! They are computed from the same statuses at each scrape of `/metrics` (a gauge set by the
//! tasks could not say "failing for N seconds" between two attempts).

use crate::server::Health;

/// Set `caf_source_up`, `caf_sink_failing_seconds` and `caf_sink_failure_grace_seconds`.
pub fn export(h: &Health) {
    let m = &h.metrics;
    for (name, status, interval) in &h.sources {
        let up = h.source_unready(name, status, *interval).is_none();
        m.source_up
            .get_or_create(&m.source(name))
            .set(i64::from(up));
    }
    for (name, status) in &h.sinks {
        let failing = status
            .failing()
            .map_or(0.0, |(since, _)| since.elapsed().as_secs_f64());
        m.sink_failing_seconds
            .get_or_create(&m.sink(name))
            .set(failing);
    }
    m.sink_failure_grace.set(h.sink_failure_grace.as_secs_f64());
}
