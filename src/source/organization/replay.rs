//! Replay of an organization source: a `processedAt` range read again from `events-stream`
//! (`from`/`to`), normalized as on its first read (same `event.id`: it comes from the
//! event's own id), tagged `confluence.audit.replayed: true` and queued for the chosen sinks
//! only. The stored position and its recent ids are not touched, so polling goes on as if
//! no replay had happened.
//!
//! Only a range behind the position is replayed (what lies ahead is still to be polled), and
//! never one older than the log's 180-day retention.

use std::collections::HashSet;
use std::sync::Arc;

use super::{RETENTION_MS, Request, page};
use crate::normalize::organization::OrgDocument;
use crate::source::paging::iso;
use crate::source::replay::{ReplayError, ReplayReport, ReplayTarget, tag_replayed};
use crate::source::{Source, SourceError, now_ms};
use crate::state::{NewEvent, blocking};

/// Ids of the events at the newest `processedAt` queued by this replay: a page asked
/// `from` that millisecond (inclusive) returns them again.
#[derive(Default)]
struct Newest {
    ms: i64,
    ids: HashSet<String>,
}

impl Newest {
    /// The events of `docs` inside `[from_ms, to_ms]` not queued yet, remembered.
    fn fresh<'d>(
        &mut self,
        docs: &'d [OrgDocument],
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<&'d OrgDocument> {
        let mut out = Vec::new();
        for d in docs {
            if d.processed_ms < from_ms || d.processed_ms > to_ms {
                continue;
            }
            if d.processed_ms > self.ms {
                self.ms = d.processed_ms;
                self.ids.clear();
            }
            if d.processed_ms == self.ms && !self.ids.insert(d.source_id.clone()) {
                continue;
            }
            out.push(d);
        }
        out
    }
}

impl Source {
    /// Read `[from_ms, to_ms]` (processing time) again and queue it for the target's sinks.
    pub(in crate::source) async fn replay_organization(
        &self,
        from_ms: i64,
        to_ms: i64,
        target: &Arc<ReplayTarget>,
    ) -> Result<ReplayReport, ReplayError> {
        self.check_org_range(from_ms, to_ms).await?;
        target.begin(from_ms, to_ms);
        let url = self.org_endpoint();
        let limit = self.cfg.page_size.max(1) as usize;
        let mut request = Request::From(from_ms);
        let mut newest = Newest::default();
        loop {
            let page = self
                .fetch_org_page(&url, &request, Some(to_ms))
                .await?
                .ok_or_else(|| {
                    SourceError::from(super::OrgError::Stuck {
                        url: url.clone(),
                        why: "the server refused the cursor it gave in this replay".into(),
                    })
                })?;
            let created = iso(now_ms());
            let docs =
                page::documents(&page, &created, &self.normalize, from_ms).map_err(|problem| {
                    SourceError::from(super::OrgError::Page {
                        url: url.clone(),
                        problem,
                    })
                })?;
            let fresh = newest.fresh(&docs, from_ms, to_ms);
            let events: Vec<NewEvent> = fresh
                .iter()
                .map(|d| NewEvent {
                    id: d.event_id.clone(),
                    doc: tag_replayed(&d.doc),
                })
                .collect();
            let queued = events.len() as u64;
            let sinks = target.sinks().to_vec();
            blocking(&self.store, move |s| s.enqueue_for(&sinks, &events)).await?;
            if queued > 0 {
                self.queued.notify_waiters();
            }
            let last = docs.last().map(|d| d.processed_ms);
            target.advance(docs.len() as u64, queued, last.map(|ms| ms.min(to_ms)));
            let past_end = last.is_some_and(|ms| ms > to_ms);
            let next = match (&page.next, last) {
                _ if docs.len() < limit || past_end => None,
                (Some(c), _) => Some(Request::Cursor(c.clone())),
                (None, Some(ms)) => Some(Request::From(ms)),
                (None, None) => None,
            };
            match next {
                None => break,
                Some(n) if n == request => {
                    return Err(SourceError::from(super::OrgError::Stuck {
                        url,
                        why: format!(
                            "a full page of {limit} answered {n:?} with the same request again"
                        ),
                    })
                    .into());
                }
                Some(n) => request = n,
            }
        }
        blocking(&self.store, |s| s.sync()).await?;
        Ok(target.report(Some("180 days".into())))
    }

    /// Refuse a range ahead of the stored position, before it exists, or beyond retention.
    async fn check_org_range(&self, from_ms: i64, to_ms: i64) -> Result<(), ReplayError> {
        let name = self.cfg.name.clone();
        let stored = blocking(&self.store, {
            let name = name.clone();
            move |s| s.org_position(&name)
        })
        .await?;
        let Some(position) = stored.filter(|p| !p.recent.is_empty() || p.cursor.is_some()) else {
            return Err(ReplayError::NotStarted { name });
        };
        if to_ms > position.processed_ms {
            return Err(ReplayError::AheadOfCursor {
                name,
                to: iso(to_ms),
                cursor: iso(position.processed_ms),
            });
        }
        let oldest_kept = now_ms() - RETENTION_MS;
        if from_ms < oldest_kept {
            return Err(ReplayError::BeyondRetention {
                name,
                from: iso(from_ms),
                retention: "180 days".into(),
                oldest_kept: iso(oldest_kept),
            });
        }
        Ok(())
    }
}
