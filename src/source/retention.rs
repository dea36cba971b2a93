//! Retention: a cursor older than what Confluence still keeps means records may already be
//! gone. That cannot be repaired, only reported — loudly, and counted as a gap. `replay`
//! asks the same question before it re-reads a range ([`Source::retention`]).

use std::time::Duration;

use super::Source;
use super::client::Transient;
use super::paging::{Pager, iso};

/// What the server says it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// As the server states it, e.g. "3 YEARS".
    pub stated: String,
    /// Nothing older than this (epoch ms) is kept.
    pub oldest_kept_ms: i64,
}

impl Source {
    /// Warn and count a gap when the cursor is older than the server's audit retention
    /// (legacy and Cloud publish it). Best effort: no answer in ten seconds, no check.
    pub(super) async fn check_retention(&self, pager: &Pager<'_>, cursor_ms: i64, server_now: i64) {
        let Some(r) = self.retention(pager, server_now).await else {
            return;
        };
        if cursor_ms < r.oldest_kept_ms {
            self.metrics
                .gaps
                .get_or_create(&self.metrics.source(&self.cfg.name))
                .inc();
            tracing::error!(
                cursor = %iso(cursor_ms),
                retention = %r.stated,
                oldest_kept = %iso(r.oldest_kept_ms),
                "GAP: the cursor is older than Confluence's audit retention; records between them may have been deleted before they could be read"
            );
        }
    }

    /// The server's audit retention, when it publishes one (legacy and Cloud) and answers
    /// within ten seconds with units it names.
    pub(super) async fn retention(&self, pager: &Pager<'_>, server_now: i64) -> Option<Retention> {
        let url = pager.retention_url()?;
        #[derive(serde::Deserialize)]
        struct Stated {
            number: i64,
            units: String,
        }
        let quiet = |_: &Transient| {};
        let fetch = self.client.get(&url, &[], &quiet, |b| {
            serde_json::from_slice::<Stated>(b).map_err(|e| e.to_string())
        });
        let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(10), fetch).await else {
            return None;
        };
        let day = 86_400_000i64;
        let unit_ms = match r.units.to_ascii_uppercase().as_str() {
            "YEARS" => 365 * day,
            "MONTHS" => 30 * day,
            "WEEKS" => 7 * day,
            "DAYS" => day,
            "HOURS" => 3_600_000,
            _ => return None,
        };
        Some(Retention {
            stated: format!("{} {}", r.number, r.units),
            oldest_kept_ms: server_now.saturating_sub(r.number.saturating_mul(unit_ms)),
        })
    }
}
