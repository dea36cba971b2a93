//! Paging: how to read every record of a time slice, exactly once per millisecond, from each
//! API despite its traps.
//!
//! - Legacy and Cloud (`start`/`limit` offsets, newest first, inclusive ms bounds). Offsets
//!   drift when records commit while we page, and the server may cap `limit` silently, so we
//!   page **by time**: ask for `[start, end]` from offset 0, keep the records newer than the
//!   page's oldest millisecond (those milliseconds are complete), and ask again with `end` =
//!   that oldest millisecond. Each millisecond's records thus come from one response, so a
//!   count of identical records is a true count. A page is the last only when it holds fewer
//!   records than a full page seen before — never from `size`, never from our own `limit`.
//!   A page that is one single millisecond is walked with offsets inside that millisecond,
//!   and a millisecond with more records than a slice may hold is returned in parts.
//! - DC advanced auditing: keyset paging with `pageCursor`; `from`/`to` re-applied on every
//!   request (the server's `nextPageLink` may drop them).
//!
//! Every page is parsed by [`page_parse`](super::page_parse) (one broken record does not
//! poison its page) and goes through a [`PageCheck`] (records outside the request, pages or
//! cursors seen before, runaway reads).

use super::SourceError;
use super::client::{Client, TransientHook};
use super::page_check::{OutOfWindowHook, PageCheck};
use super::page_parse::{Page, entity_page_body, record_page_body};
use crate::config::DateFormat;
use crate::normalize::Api;

pub use super::page_parse::{Fetched, Undecodable};

/// Where a slice read that stopped inside one millisecond goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The millisecond being walked: records of it read so far are queued, the rest not.
    pub ms: i64,
    pub at: ResumeAt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeAt {
    /// Legacy and Cloud: the offset inside the millisecond.
    Offset(usize),
    /// DC: the page cursor.
    Cursor(String),
}

/// What fetching a slice gave.
#[derive(Debug)]
pub enum SliceFetch {
    /// Every record of the slice (from where it resumed), in no particular order.
    Complete(Vec<Fetched>),
    /// More than the allowed number of records. `records` are all the records of
    /// `[covered_from_ms, end]` (complete milliseconds only); the older rest of the slice is
    /// still to be read.
    Partial {
        records: Vec<Fetched>,
        covered_from_ms: i64,
    },
    /// More than the allowed number of records in one millisecond: `records` are the part
    /// read so far (everything newer than `resume.ms`, and the first records of it); the
    /// read goes on from `resume`, continuing the same listing.
    Part {
        records: Vec<Fetched>,
        resume: Resume,
    },
}

/// Where and how to page.
pub struct Pager<'a> {
    pub client: &'a Client,
    pub base_url: &'a str,
    pub api: Api,
    pub page_size: u32,
    pub date_format: DateFormat,
    pub on_transient: TransientHook<'a>,
    pub on_out_of_window: OutOfWindowHook<'a>,
}

impl Pager<'_> {
    fn endpoint(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.api {
            Api::Legacy => format!("{base}/rest/api/audit"),
            Api::Cloud => {
                if base.ends_with("/wiki") {
                    format!("{base}/rest/api/audit")
                } else {
                    format!("{base}/wiki/rest/api/audit")
                }
            }
            Api::Auditing | Api::File => format!("{base}/rest/auditing/1.0/events"),
            // Read by source::organization, which has its own endpoint.
            Api::Organization => base.to_owned(),
        }
    }

    /// The audit retention endpoint (legacy and Cloud only).
    pub fn retention_url(&self) -> Option<String> {
        match self.api {
            Api::Legacy | Api::Cloud => Some(format!("{}/retention", self.endpoint())),
            _ => None,
        }
    }

    /// Every record in `[from_ms, to_ms]` (from `resume` on, when a part was queued
    /// already), or `Partial`/`Part` once `max` were read.
    pub async fn fetch_slice(
        &self,
        from_ms: i64,
        to_ms: i64,
        max: usize,
        resume: Option<Resume>,
    ) -> Result<SliceFetch, SourceError> {
        let url = self.endpoint();
        let max = max.max(1);
        let mut check = PageCheck::new(
            self.api,
            &url,
            (from_ms, to_ms),
            max,
            self.page_size,
            self.on_out_of_window,
        );
        match self.api {
            Api::Auditing => {
                self.fetch_keyset(&mut check, (from_ms, to_ms), max, resume)
                    .await
            }
            _ => {
                self.fetch_by_time(&mut check, (from_ms, to_ms), max, resume)
                    .await
            }
        }
    }

    async fn fetch_by_time(
        &self,
        check: &mut PageCheck<'_>,
        (from_ms, to_ms): (i64, i64),
        max: usize,
        resume: Option<Resume>,
    ) -> Result<SliceFetch, SourceError> {
        let mut out = Vec::new();
        let mut end = to_ms;
        let mut full_len = 0usize;
        let mut listing = 0u32;
        if let Some(Resume {
            ms,
            at: ResumeAt::Offset(offset),
        }) = resume
        {
            let walk = MsWalk {
                ms,
                offset,
                listing,
            };
            if let Some(part) = self
                .walk_ms(check, walk, &mut out, &mut full_len, max)
                .await?
            {
                return Ok(part);
            }
            listing += 1;
            end = ms - 1;
        }
        while end >= from_ms {
            // `out` holds exactly the records of [end + 1, to_ms].
            if out.len() >= max {
                return Ok(SliceFetch::Partial {
                    records: out,
                    covered_from_ms: end + 1,
                });
            }
            let page = self.record_page((from_ms, end), 0, listing).await?;
            listing += 1;
            let n = page.received();
            let mut records = page.records;
            check.window(&mut records, from_ms, end)?;
            check.page(page.listing_hash, n)?;
            if records.is_empty() {
                break;
            }
            // A page shorter than a full one seen before is the last one.
            let last = n < full_len && !page.more;
            full_len = full_len.max(n);
            if last {
                out.extend(records);
                break;
            }
            let oldest = records.iter().map(|r| r.ts_ms).min().expect("non-empty");
            let newest = records.iter().map(|r| r.ts_ms).max().expect("non-empty");
            if oldest == newest {
                // One millisecond fills the page: walk it by offset.
                out.extend(records);
                let walk = MsWalk {
                    ms: oldest,
                    offset: n,
                    listing: listing - 1,
                };
                if let Some(part) = self
                    .walk_ms(check, walk, &mut out, &mut full_len, max)
                    .await?
                {
                    return Ok(part);
                }
                end = oldest - 1;
            } else {
                out.extend(records.into_iter().filter(|r| r.ts_ms > oldest));
                end = oldest;
            }
        }
        Ok(SliceFetch::Complete(out))
    }

    /// Walk one millisecond by offset, appending its records to `out`. Returns the part to
    /// queue when `out` reaches `max` before the millisecond ends.
    async fn walk_ms(
        &self,
        check: &mut PageCheck<'_>,
        walk: MsWalk,
        out: &mut Vec<Fetched>,
        full_len: &mut usize,
        max: usize,
    ) -> Result<Option<SliceFetch>, SourceError> {
        let MsWalk {
            ms,
            mut offset,
            listing,
        } = walk;
        loop {
            if out.len() >= max {
                return Ok(Some(SliceFetch::Part {
                    records: std::mem::take(out),
                    resume: Resume {
                        ms,
                        at: ResumeAt::Offset(offset),
                    },
                }));
            }
            let page = self.record_page((ms, ms), offset, listing).await?;
            check.offset(offset, page.start)?;
            let m = page.received();
            offset += m;
            let done = m == 0 || (m < *full_len && !page.more);
            *full_len = (*full_len).max(m);
            let mut records = page.records;
            check.window(&mut records, ms, ms)?;
            check.page(page.listing_hash, m)?;
            out.extend(records);
            if done {
                return Ok(None);
            }
        }
    }

    async fn record_page(
        &self,
        (from_ms, to_ms): (i64, i64),
        start: usize,
        listing: u32,
    ) -> Result<Page, SourceError> {
        let date = |ms: i64| match self.date_format {
            DateFormat::Millis => ms.to_string(),
            DateFormat::Iso8601 => iso(ms),
        };
        let query = [
            ("startDate", date(from_ms)),
            ("endDate", date(to_ms)),
            ("start", start.to_string()),
            ("limit", self.page_size.to_string()),
        ];
        let api = self.api;
        let url = self.endpoint();
        let page = self
            .client
            .get(&url, &query, self.on_transient, |body| {
                record_page_body(api, body, to_ms, listing)
            })
            .await?;
        Ok(page)
    }

    async fn fetch_keyset(
        &self,
        check: &mut PageCheck<'_>,
        (from_ms, to_ms): (i64, i64),
        max: usize,
        resume: Option<Resume>,
    ) -> Result<SliceFetch, SourceError> {
        let url = self.endpoint();
        let mut out: Vec<Fetched> = Vec::new();
        let (mut cursor, mut oldest) = match resume {
            Some(Resume {
                ms,
                at: ResumeAt::Cursor(c),
            }) => (Some(c), ms),
            _ => (None, to_ms + 1),
        };
        loop {
            if out.len() >= max
                && let Some(c) = &cursor
            {
                // The oldest millisecond read so far may continue on the next page: only
                // the newer ones are complete. If there are none, queue what was read of
                // it and go on from the cursor.
                if oldest > from_ms && out.iter().any(|r| r.ts_ms > oldest) {
                    out.retain(|r| r.ts_ms > oldest);
                    return Ok(SliceFetch::Partial {
                        records: out,
                        covered_from_ms: oldest + 1,
                    });
                }
                return Ok(SliceFetch::Part {
                    records: out,
                    resume: Resume {
                        ms: oldest,
                        at: ResumeAt::Cursor(c.clone()),
                    },
                });
            }
            let mut query = vec![
                ("from", iso(from_ms)),
                ("to", iso(to_ms)),
                ("limit", self.page_size.to_string()),
            ];
            if let Some(c) = &cursor {
                query.push(("pageCursor", c.clone()));
            }
            let page = self
                .client
                .get(&url, &query, self.on_transient, |body| {
                    entity_page_body(body, to_ms)
                })
                .await?;
            let n = page.received();
            let mut records = page.records;
            let past_from = check.window(&mut records, from_ms, to_ms)? > 0;
            if let Some(at) = &cursor {
                check.follows_cursor(at, &records)?;
            }
            check.page(page.listing_hash, n)?;
            for r in records {
                oldest = oldest.min(r.ts_ms);
                out.push(r);
            }
            match page.next_cursor {
                Some(next) if page.more && n > 0 && !past_from => {
                    check.cursor(&next)?;
                    cursor = Some(next);
                }
                _ => break,
            }
        }
        Ok(SliceFetch::Complete(out))
    }
}

/// A walk through one millisecond by offset.
struct MsWalk {
    ms: i64,
    offset: usize,
    listing: u32,
}

/// Epoch ms → `2025-11-23T00:44:58.940Z`.
pub fn iso(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}
