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
//!   A page that is one single millisecond is walked with offsets inside that millisecond.
//! - DC advanced auditing: keyset paging with `pageCursor`; `from`/`to` re-applied on every
//!   request (the server's `nextPageLink` may drop them) and records outside the slice dropped.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::client::{Client, FetchError, TransientHook};
use crate::config::DateFormat;
use crate::normalize::{self, Api, ContentHash};

/// One fetched record, before deduplication.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub ts_ms: i64,
    pub hash: ContentHash,
    pub raw: Box<str>,
    /// Set when the record could not be parsed; `ts_ms` is then the slice end.
    pub parse_error: Option<String>,
}

/// What fetching a slice gave.
#[derive(Debug)]
pub enum SliceFetch {
    /// Every record of the slice, in no particular order.
    Complete(Vec<Fetched>),
    /// More than the allowed number of records. `records` are all the records of
    /// `[covered_from_ms, end]` (complete milliseconds only); the older rest of the slice is
    /// still to be read.
    Partial {
        records: Vec<Fetched>,
        covered_from_ms: i64,
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
}

#[derive(Deserialize)]
struct RecordPage<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default, rename = "_links")]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct EntityPage<'a> {
    #[serde(borrow)]
    entities: Vec<&'a RawValue>,
    #[serde(rename = "pagingInfo")]
    paging_info: PagingInfo,
}

#[derive(Deserialize)]
struct PagingInfo {
    #[serde(rename = "lastPage", default)]
    last_page: bool,
    #[serde(rename = "nextPageCursor", default)]
    next_page_cursor: Option<String>,
}

struct Page {
    records: Vec<Fetched>,
    /// The server says more exists (`_links.next`, `lastPage:false`).
    more: bool,
    next_cursor: Option<String>,
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
        }
    }

    /// The audit retention endpoint (legacy and Cloud only).
    pub fn retention_url(&self) -> Option<String> {
        match self.api {
            Api::Legacy | Api::Cloud => Some(format!("{}/retention", self.endpoint())),
            _ => None,
        }
    }

    /// Every record in `[from_ms, to_ms]`, or `Partial` once more than `max` were read.
    pub async fn fetch_slice(
        &self,
        from_ms: i64,
        to_ms: i64,
        max: Option<usize>,
    ) -> Result<SliceFetch, FetchError> {
        match self.api {
            Api::Auditing => self.fetch_keyset(from_ms, to_ms, max).await,
            _ => self.fetch_by_time(from_ms, to_ms, max).await,
        }
    }

    async fn fetch_by_time(
        &self,
        from_ms: i64,
        to_ms: i64,
        max: Option<usize>,
    ) -> Result<SliceFetch, FetchError> {
        let mut out = Vec::new();
        let mut end = to_ms;
        let mut full_len = 0usize;
        while end >= from_ms {
            // `out` holds exactly the records of [end + 1, to_ms].
            if let Some(max) = max
                && out.len() >= max
            {
                return Ok(SliceFetch::Partial {
                    records: out,
                    covered_from_ms: end + 1,
                });
            }
            let page = self.record_page(from_ms, end, 0).await?;
            let n = page.records.len();
            if n == 0 {
                break;
            }
            // A page shorter than a full one seen before is the last one.
            let last = n < full_len && !page.more;
            full_len = full_len.max(n);
            if last {
                out.extend(page.records);
                break;
            }
            let oldest = page
                .records
                .iter()
                .map(|r| r.ts_ms)
                .min()
                .expect("non-empty");
            let newest = page
                .records
                .iter()
                .map(|r| r.ts_ms)
                .max()
                .expect("non-empty");
            if oldest == newest {
                // One millisecond fills the page: walk it by offset.
                let mut offset = n;
                let mut records = page.records;
                loop {
                    let more = self.record_page(oldest, oldest, offset).await?;
                    let m = more.records.len();
                    offset += m;
                    let done = m < full_len && !more.more || m == 0;
                    full_len = full_len.max(m);
                    records.extend(more.records.into_iter().filter(|r| r.ts_ms == oldest));
                    if done {
                        break;
                    }
                }
                out.extend(records);
                end = oldest - 1;
            } else {
                out.extend(page.records.into_iter().filter(|r| r.ts_ms > oldest));
                end = oldest;
            }
        }
        Ok(SliceFetch::Complete(out))
    }

    async fn record_page(
        &self,
        from_ms: i64,
        to_ms: i64,
        start: usize,
    ) -> Result<Page, FetchError> {
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
        self.client
            .get(&url, &query, self.on_transient, |body| {
                let page: RecordPage<'_> =
                    serde_json::from_slice(body).map_err(|e| e.to_string())?;
                let _ = page.limit;
                let more = page.links.is_some_and(|l| l.next.is_some());
                let records = page
                    .results
                    .iter()
                    .map(|r| fetched(api, r.get(), to_ms))
                    .collect();
                Ok(Page {
                    records,
                    more,
                    next_cursor: None,
                })
            })
            .await
    }

    async fn fetch_keyset(
        &self,
        from_ms: i64,
        to_ms: i64,
        max: Option<usize>,
    ) -> Result<SliceFetch, FetchError> {
        let url = self.endpoint();
        let mut out: Vec<Fetched> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut oldest = to_ms + 1;
        loop {
            // The oldest millisecond read so far may continue on the next page: only the
            // newer ones are complete.
            if let Some(max) = max
                && out.len() >= max
                && oldest > from_ms
                && out.iter().any(|r| r.ts_ms > oldest)
            {
                out.retain(|r| r.ts_ms > oldest);
                return Ok(SliceFetch::Partial {
                    records: out,
                    covered_from_ms: oldest + 1,
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
                    let page: EntityPage<'_> =
                        serde_json::from_slice(body).map_err(|e| e.to_string())?;
                    Ok(Page {
                        records: page
                            .entities
                            .iter()
                            .map(|r| fetched(Api::Auditing, r.get(), to_ms))
                            .collect(),
                        more: !page.paging_info.last_page,
                        next_cursor: page.paging_info.next_page_cursor,
                    })
                })
                .await?;
            let n = page.records.len();
            let mut past_from = false;
            for r in page.records {
                if r.ts_ms < from_ms {
                    past_from = true;
                } else if r.ts_ms <= to_ms {
                    oldest = oldest.min(r.ts_ms);
                    out.push(r);
                }
            }
            match page.next_cursor {
                Some(next) if page.more && n > 0 && !past_from => {
                    if cursor.as_deref() == Some(next.as_str()) {
                        tracing::warn!(cursor = %next, "server returned the same page cursor twice; stopping this slice");
                        break;
                    }
                    cursor = Some(next);
                }
                _ => break,
            }
        }
        Ok(SliceFetch::Complete(out))
    }
}

/// Parse enough of a record to place it in time and deduplicate it. A record that does not
/// parse is kept (with its error) so that it is forwarded, not lost.
fn fetched(api: Api, raw: &str, fallback_ms: i64) -> Fetched {
    match normalize::parse_record(api, raw) {
        Ok(r) => Fetched {
            ts_ms: r.timestamp_ms(),
            hash: r.content_hash(),
            raw: raw.into(),
            parse_error: None,
        },
        Err(e) => {
            let mut hash = [0u8; 16];
            hash.copy_from_slice(&blake3::hash(raw.as_bytes()).as_bytes()[..16]);
            Fetched {
                ts_ms: fallback_ms,
                hash: ContentHash(hash),
                raw: raw.into(),
                parse_error: Some(e.to_string()),
            }
        }
    }
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
