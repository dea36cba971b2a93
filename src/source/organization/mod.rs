//! The Atlassian organization audit log (`GET /admin/v1/orgs/{orgId}/events-stream`) as a
//! source: logins, exports, API-token use, page views — what the per-site log never shows.
//!
//! It is a [`Source`] like the others (same task, metrics, status and back-pressure); only
//! its poll cycle differs, because the stream is ordered by processing time and paged by an
//! opaque cursor rather than read in time windows:
//!
//! - Position ([`OrgPosition`], `state/organization.rs`): the API's cursor, the newest
//!   `processedAt` queued and the ids queued recently. Each page is committed with
//!   [`Store::commit_org_page`]: its new documents are queued for every sink and the
//!   position moves in one transaction.
//! - Resume: from the cursor when there is one (the API returns it on the last page too);
//!   otherwise, or when the server refuses it (400), from `from = processedAt - overlap`,
//!   never from "now". The inclusive bound and the overlap re-read events; their ids are
//!   recognised and dropped.
//! - Pace: at most `requests_per_minute` requests a minute ([`pacing`]); a 429 waits its
//!   `Retry-After` (the client).
//! - Pages: checked by [`page`] (envelope, ids, `processedAt` order), a cycle ends on a
//!   page shorter than `page_size`.

pub mod pacing;
pub mod page;
mod replay;

use std::collections::HashSet;

use super::client::{FetchError, Transient};
use super::{PollReport, Source, SourceError, now_ms};
use crate::config::StartAt;
use crate::metrics::{CommittedCounts, Metrics};
use crate::normalize::organization::OrgDocument;
use crate::state::{NewEvent, OrgPosition, blocking};
use page::{OrgPage, PageProblem};

/// How far back `start_at = "beginning"` reaches: the log's retention.
pub const RETENTION_MS: i64 = 180 * 86_400_000;

/// Why an organization poll cycle stopped; the position stays where it was.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error(
        "HTTP {status} from {url}: the API key is expired or lacks `read:events:admin` (organization API keys expire after at most a year: create a new one at admin.atlassian.com → Settings → API keys) ({body})"
    )]
    Auth {
        status: u16,
        url: String,
        body: String,
    },
    #[error("{url}: {problem}; the cycle is stopped and the position stays where it was")]
    Page { url: String, problem: PageProblem },
    #[error(
        "{url}: paging does not progress ({why}); the cycle is stopped instead of reading the same page again and again, and the position stays where it was"
    )]
    Stuck { url: String, why: String },
}

impl OrgError {
    pub fn kind(&self) -> &'static str {
        match self {
            OrgError::Auth { .. } => "auth",
            OrgError::Page { .. } => "malformed_event",
            OrgError::Stuck { .. } => "paging",
        }
    }
}

/// What the next request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Request {
    Cursor(String),
    From(i64),
}

/// The `events-stream` URL of an organization source: one API path for Atlassian's limit.
pub(super) fn events_stream_url(cfg: &crate::config::SourceConfig) -> String {
    format!(
        "{}/admin/v1/orgs/{}/events-stream",
        cfg.url.trim_end_matches('/'),
        cfg.org_id.as_deref().unwrap_or_default().trim()
    )
}

impl Source {
    /// One poll cycle of an organization source: page after page until one is short.
    pub(super) async fn poll_organization(&self) -> Result<PollReport, SourceError> {
        let mut pos = self.org_position().await?;
        let overlap_ms = self.cfg.overlap.as_millis() as i64;
        let url = self.org_endpoint();
        let limit = self.cfg.page_size.max(1) as usize;
        let mut request = match &pos.cursor {
            Some(c) => Request::Cursor(c.clone()),
            None => Request::From(pos.processed_ms.saturating_sub(overlap_ms)),
        };
        // Where a refused cursor falls back to: the overlap before the stored position, then
        // the last `processedAt` read in this cycle (inclusive; re-reads are known by id).
        let mut fallback_ms = pos.processed_ms.saturating_sub(overlap_ms);
        // The last event of the previous full page: a page ending there again is no progress.
        let mut previous_end: Option<(i64, String)> = None;
        let mut report = PollReport::default();
        loop {
            self.wait_for_queue_room().await?;
            let Some(page) = self.fetch_org_page(&url, &request, None).await? else {
                tracing::warn!(
                    from = %super::paging::iso(fallback_ms),
                    "the server refused the stored cursor (400): continuing from the last processedAt seen (minus the overlap at the start of a cycle), duplicates dropped by id"
                );
                self.count_error("stale_cursor");
                request = Request::From(fallback_ms);
                continue;
            };
            let full = page.data.len() >= limit;
            let created = super::paging::iso(now_ms());
            let docs = page::documents(&page, &created, &self.normalize, pos.processed_ms)
                .map_err(|problem| OrgError::Page {
                    url: url.clone(),
                    problem,
                })?;
            let last_processed = docs.last().map(|d| d.processed_ms);
            let end = docs.last().map(|d| (d.processed_ms, d.source_id.clone()));
            if full && end.is_some() && end == previous_end {
                return Err(OrgError::Stuck {
                    url,
                    why: format!("two full pages of {limit} ended at the same event"),
                }
                .into());
            }
            previous_end = end;
            fallback_ms = fallback_ms.max(last_processed.unwrap_or(i64::MIN));
            let next = next_request(&request, &page, last_processed, full);
            report.records_read += docs.len() as u64;
            report.events_new += self.commit_org_docs(&mut pos, docs, page.next).await?;
            report.slices += 1;
            self.status.ok();
            match next {
                None => return Ok(report),
                Some(n) if n == request => {
                    return Err(OrgError::Stuck {
                        url,
                        why: format!(
                            "a full page of {limit} answered {n:?} with the same request again"
                        ),
                    }
                    .into());
                }
                Some(n) => request = n,
            }
        }
    }

    /// The stored position, or a new one at `start_at` (stored at once, so that a first
    /// cycle that finds nothing does not move the start on with the clock).
    async fn org_position(&self) -> Result<OrgPosition, SourceError> {
        let name = self.cfg.name.clone();
        let stored = blocking(&self.store, move |s| s.org_position(&name)).await?;
        if let Some(pos) = stored {
            return Ok(pos);
        }
        let now = now_ms();
        let start = match &self.cfg.start_at {
            StartAt::Beginning => now - RETENTION_MS,
            StartAt::Time(t) => (*t).max(now - RETENTION_MS),
            StartAt::Ago(d) => now - (d.as_millis() as i64).min(RETENTION_MS),
            StartAt::End => now,
        };
        let pos = OrgPosition::starting_at(start);
        let (name, stored) = (self.cfg.name.clone(), pos.clone());
        blocking(&self.store, move |s| s.commit_org_page(&name, &[], &stored)).await?;
        Ok(pos)
    }

    fn org_endpoint(&self) -> String {
        events_stream_url(&self.cfg)
    }

    /// One page, paced. `Ok(None)`: the server refused the cursor (400).
    /// `to_ms`: the window's end (`to`, processing time), for a replay.
    async fn fetch_org_page(
        &self,
        url: &str,
        request: &Request,
        to_ms: Option<i64>,
    ) -> Result<Option<OrgPage>, SourceError> {
        let limit = self.cfg.page_size.max(1).to_string();
        let mut query: Vec<(&str, String)> = match request {
            Request::Cursor(c) => vec![("cursor", c.clone()), ("limit", limit)],
            Request::From(ms) => vec![
                ("from", ms.to_string()),
                ("sortOrder", "asc".into()),
                ("limit", limit),
            ],
        };
        if let (Request::From(_), Some(to)) = (request, to_ms) {
            query.push(("to", to.to_string()));
        }
        self.org_pacer.wait().await;
        let on_transient = |t: &Transient| self.count_error(t.kind);
        match self
            .client
            .get(url, &query, &on_transient, page::parse)
            .await
        {
            Ok(page) => Ok(Some(page)),
            Err(FetchError::Client { status: 400, .. })
                if matches!(request, Request::Cursor(_)) =>
            {
                Ok(None)
            }
            Err(FetchError::Auth { status, url, body }) => {
                Err(OrgError::Auth { status, url, body }.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Say loudly which events of a page became `pipeline_error` documents (they are queued
    /// all the same: nothing is lost, and the source goes on).
    /// Returns how many there were.
    fn report_broken_events(&self, docs: &[&OrgDocument]) -> u64 {
        let mut broken = 0;
        for d in docs {
            if let Some(error) = &d.error {
                tracing::error!(source = %self.cfg.name, event = %crate::logsafe::clean(&d.source_id), error = %crate::logsafe::clean(error), "organization event cannot be normalized; forwarded as a pipeline_error document with the event as sent");
                broken += 1;
            }
        }
        broken
    }

    /// Queue the documents not seen before and move the position, in one transaction.
    async fn commit_org_docs(
        &self,
        pos: &mut OrgPosition,
        docs: Vec<OrgDocument>,
        cursor: Option<String>,
    ) -> Result<u64, SourceError> {
        let seen: HashSet<&str> = pos.recent.iter().map(|(id, _)| id.as_str()).collect();
        let mut fresh = Vec::with_capacity(docs.len());
        let mut taken = HashSet::new();
        for d in &docs {
            if !seen.contains(d.source_id.as_str()) && taken.insert(d.source_id.as_str()) {
                fresh.push(d);
            }
        }
        let rejected = self.report_broken_events(&fresh);
        let duplicates = (docs.len() - fresh.len()) as u64;
        let unknown = fresh.iter().filter(|d| !d.known_action).count() as u64;
        let events: Vec<NewEvent> = fresh
            .iter()
            .map(|d| NewEvent {
                id: d.event_id.clone(),
                doc: d.doc.clone(),
            })
            .collect();
        let newest = fresh.last().map(|d| (d.processed_ms, d.time_ms));
        let mut next = pos.clone();
        for d in &fresh {
            next.remember(d.source_id.clone(), d.processed_ms);
        }
        next.cursor = cursor;
        next.prune(self.cfg.overlap.as_millis() as i64);
        let (name, stored) = (self.cfg.name.clone(), next.clone());
        let n = events.len() as u64;
        blocking(&self.store, move |s| {
            s.commit_org_page(&name, &events, &stored)
        })
        .await?;
        *pos = next;
        publish(
            &self.metrics,
            &self.cfg.name,
            pos,
            newest,
            (n, duplicates, unknown, rejected),
        );
        if n > 0 {
            self.queued.notify_waiters();
        }
        Ok(n)
    }
}

/// The request after `page`, or `None` when the cycle is done (a short page).
///
/// With a cursor the stream continues from it. Without one, a full page continues from its
/// last `processedAt` (inclusive: its events come again and are recognised by id); a page
/// whose events all share one millisecond then asks the same again, which the caller
/// refuses as stuck instead of looping.
fn next_request(
    request: &Request,
    page: &OrgPage,
    last_processed: Option<i64>,
    full: bool,
) -> Option<Request> {
    if !full {
        return None;
    }
    match (&page.next, last_processed, request) {
        (Some(c), _, _) => Some(Request::Cursor(c.clone())),
        (None, Some(ms), _) => Some(Request::From(ms)),
        (None, None, r) => Some(r.clone()),
    }
}

/// The `caf_source_*` metrics of one committed page: counts, the position (`processedAt`)
/// and both lags, on `processedAt` and on `time`.
fn publish(
    metrics: &Metrics,
    source: &str,
    pos: &OrgPosition,
    newest: Option<(i64, i64)>,
    (queued, duplicates, unknown, rejected): (u64, u64, u64, u64),
) {
    let label = metrics.source(source);
    metrics.count_committed(
        &label,
        CommittedCounts {
            read: queued + duplicates,
            queued,
            duplicates,
            unknown,
            rejected,
            ..CommittedCounts::default()
        },
    );
    metrics
        .cursor_timestamp
        .get_or_create(&label)
        .set(pos.processed_ms as f64 / 1000.0);
    let now_s = now_ms() as f64 / 1000.0;
    if let Some((processed_ms, time_ms)) = newest {
        metrics
            .newest_record_timestamp
            .get_or_create(&label)
            .set(processed_ms as f64 / 1000.0);
        metrics
            .event_time_lag
            .get_or_create(&label)
            .set((now_s - time_ms as f64 / 1000.0).max(0.0));
    }
    let newest_s = metrics.newest_record_timestamp.get_or_create(&label).get();
    let since_s = if newest_s > 0.0 {
        newest_s
    } else {
        pos.processed_ms as f64 / 1000.0
    };
    metrics
        .source_lag
        .get_or_create(&label)
        .set((now_s - since_s).max(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: usize, next: Option<&str>) -> OrgPage {
        OrgPage {
            data: vec![serde_json::Value::Null; n],
            next: next.map(str::to_owned),
        }
    }

    #[test]
    fn a_short_page_ends_the_cycle_and_a_full_one_continues() {
        let r = Request::From(5);
        assert_eq!(next_request(&r, &page(3, Some("c")), Some(9), false), None);
        assert_eq!(
            next_request(&r, &page(3, Some("c")), Some(9), true),
            Some(Request::Cursor("c".into()))
        );
        assert_eq!(
            next_request(&r, &page(3, None), Some(9), true),
            Some(Request::From(9)),
            "without a cursor: from the last processedAt, never from now"
        );
    }
}
