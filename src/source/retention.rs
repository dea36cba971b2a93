//! Retention: a cursor older than what Confluence still keeps means records may already be
//! gone. That cannot be repaired, only reported — loudly, and counted as a gap.

use std::time::Duration;

use super::Source;
use super::client::Transient;
use super::paging::{Pager, iso};

impl Source {
    /// Warn and count a gap when the cursor is older than the server's audit retention
    /// (legacy and Cloud publish it). Best effort: no answer in ten seconds, no check.
    pub(super) async fn check_retention(&self, pager: &Pager<'_>, cursor_ms: i64, server_now: i64) {
        let Some(url) = pager.retention_url() else {
            return;
        };
        #[derive(serde::Deserialize)]
        struct Retention {
            number: i64,
            units: String,
        }
        let quiet = |_: &Transient| {};
        let fetch = self.client.get(&url, &[], &quiet, |b| {
            serde_json::from_slice::<Retention>(b).map_err(|e| e.to_string())
        });
        let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(10), fetch).await else {
            return;
        };
        let day = 86_400_000i64;
        let unit_ms = match r.units.to_ascii_uppercase().as_str() {
            "YEARS" => 365 * day,
            "MONTHS" => 30 * day,
            "WEEKS" => 7 * day,
            "DAYS" => day,
            "HOURS" => 3_600_000,
            _ => return,
        };
        let oldest_kept = server_now.saturating_sub(r.number.saturating_mul(unit_ms));
        if cursor_ms < oldest_kept {
            self.metrics
                .gaps
                .get_or_create(&self.metrics.source(&self.cfg.name))
                .inc();
            tracing::error!(
                cursor = %iso(cursor_ms),
                retention = %format!("{} {}", r.number, r.units),
                oldest_kept = %iso(oldest_kept),
                "GAP: the cursor is older than Confluence's audit retention; records between them may have been deleted before they could be read"
            );
        }
    }
}
