//! Checking every page against the request that asked for it.
//!
//! The pager trusts nothing a page says about itself: a server that ignores `startDate` /
//! `endDate` (a wrong `date_format`), `from`/`to`, the `start` offset or the `pageCursor`
//! would otherwise make a slice loop forever and turn a handful of records into thousands of
//! events. One [`PageCheck`] watches the pages of one slice read: records outside the
//! requested window are dropped and counted, and beyond [`WINDOW_TOLERANCE_MS`] fail the
//! slice; a cursor or a page seen before in the slice, an offset the server did not honour,
//! or more records than the slice can hold fail it too. Failing is the safe answer: the
//! cursor stays where it was, and the error says what the server did.

use std::collections::HashSet;

use super::paging::{Fetched, iso};
use crate::normalize::Api;

/// How far outside the requested window a record may lie and only be dropped (a server that
/// rounds its bounds to the second); further out, the slice fails.
pub const WINDOW_TOLERANCE_MS: i64 = 1000;

/// A page that does not answer its request.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(
        "{url}: paging does not progress ({why}) while reading {from} … {to}; the slice is stopped instead of being read again and again, and the cursor stays where it was"
    )]
    Paging {
        url: String,
        why: String,
        from: String,
        to: String,
    },
    #[error(
        "{url}: {count} record(s) outside the requested window {from} … {to} (one at {example}): {cause}; the slice is stopped and the cursor stays where it was"
    )]
    OutOfWindow {
        url: String,
        count: u64,
        example: String,
        from: String,
        to: String,
        cause: &'static str,
    },
}

impl PageError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PageError::Paging { .. } => "paging",
            PageError::OutOfWindow { .. } => "out_of_window",
        }
    }
}

/// Called with the number of out-of-window records a page held (metrics).
pub type OutOfWindowHook<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// Watches the pages of one slice read.
pub struct PageCheck<'a> {
    api: Api,
    url: &'a str,
    from_ms: i64,
    to_ms: i64,
    /// Records the read may receive in all, re-reads included, before it is runaway.
    budget: usize,
    received: usize,
    listings: HashSet<[u8; 16]>,
    cursors: HashSet<String>,
    on_out_of_window: OutOfWindowHook<'a>,
}

impl<'a> PageCheck<'a> {
    /// A check for reading `[from_ms, to_ms]` in parts of at most `max` records, pages of
    /// `page_size`. Paging by time re-reads each page's oldest millisecond, so an honest
    /// read receives at most about twice what it keeps: three times is runaway.
    pub fn new(
        api: Api,
        url: &'a str,
        (from_ms, to_ms): (i64, i64),
        max: usize,
        page_size: u32,
        on_out_of_window: OutOfWindowHook<'a>,
    ) -> Self {
        PageCheck {
            api,
            url,
            from_ms,
            to_ms,
            budget: 3 * max + 3 * page_size as usize,
            received: 0,
            listings: HashSet::new(),
            cursors: HashSet::new(),
            on_out_of_window,
        }
    }

    fn paging(&self, why: String) -> PageError {
        PageError::Paging {
            url: self.url.to_owned(),
            why,
            from: iso(self.from_ms),
            to: iso(self.to_ms),
        }
    }

    /// A page arrived: what it lists must differ from every earlier page of this read (see
    /// [`listing_hash`](super::page_parse::Page::listing_hash)), and the read must stay within
    /// what the slice can hold.
    pub fn page(
        &mut self,
        listing_hash: Option<[u8; 16]>,
        records: usize,
    ) -> Result<(), PageError> {
        if let Some(h) = listing_hash
            && !self.listings.insert(h)
        {
            return Err(self.paging(format!(
                "page {} lists the same records as an earlier one: the server ignores {}",
                self.listings.len() + 1,
                match self.api {
                    Api::Auditing | Api::File | Api::Organization => "`pageCursor`",
                    Api::Legacy | Api::Cloud => "`startDate`/`endDate` or `start`",
                }
            )));
        }
        self.received += records;
        if self.received > self.budget {
            return Err(self.paging(format!(
                "{} records received, more than this slice can hold ({} at most)",
                self.received, self.budget
            )));
        }
        Ok(())
    }

    /// The offset the envelope says the page starts at must be the one asked for.
    pub fn offset(&self, asked: usize, answered: Option<u64>) -> Result<(), PageError> {
        match answered {
            Some(a) if a != asked as u64 => Err(self.paging(format!(
                "asked for offset {asked}, the page says it starts at {a}: the server ignores `start`"
            ))),
            _ => Ok(()),
        }
    }

    /// A page asked for with DC cursor `at` (`<epochMillis>,<id>` of the last entity of the
    /// page before) lists only entities at or before that millisecond: a newer one means the
    /// server did not honour the cursor (a repeated first page, say).
    pub fn follows_cursor(&self, at: &str, records: &[Fetched]) -> Result<(), PageError> {
        let Some(ms) = at
            .split(',')
            .next()
            .and_then(|m| m.trim().parse::<i64>().ok())
        else {
            return Ok(()); // not a keyset cursor we can read: the other checks still hold
        };
        match records.iter().find(|r| r.ts_ms > ms) {
            Some(r) => Err(self.paging(format!(
                "the page after cursor {:?} lists a record of {}, newer than the cursor: the server ignores `pageCursor`",
                crate::logsafe::clean(at),
                iso(r.ts_ms)
            ))),
            None => Ok(()),
        }
    }

    /// The next page cursor must be new in this read (`A→B→A` or a cursor the server
    /// ignores would loop forever).
    pub fn cursor(&mut self, next: &str) -> Result<(), PageError> {
        if !self.cursors.insert(next.to_owned()) {
            return Err(self.paging(format!(
                "the server returned page cursor {:?} a second time: it ignores `pageCursor` or its cursors cycle",
                crate::logsafe::clean(next)
            )));
        }
        Ok(())
    }

    /// Drop the records outside the request `[from_ms, to_ms]` and count them; any further
    /// out than [`WINDOW_TOLERANCE_MS`] fails the slice. Returns how many were older than
    /// `from_ms` (a keyset read that reached them is past its window).
    pub fn window(
        &self,
        records: &mut Vec<Fetched>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<usize, PageError> {
        let outside = |r: &Fetched| r.ts_ms < from_ms || r.ts_ms > to_ms;
        let count = records.iter().filter(|r| outside(r)).count();
        if count == 0 {
            return Ok(0);
        }
        (self.on_out_of_window)(count as u64);
        let distance = |r: &Fetched| (from_ms - r.ts_ms).max(r.ts_ms - to_ms);
        let furthest = records
            .iter()
            .filter(|r| outside(r))
            .max_by_key(|r| distance(r))
            .map(|r| r.ts_ms)
            .expect("count > 0");
        if (from_ms - furthest).max(furthest - to_ms) > WINDOW_TOLERANCE_MS {
            return Err(PageError::OutOfWindow {
                url: self.url.to_owned(),
                count: count as u64,
                example: iso(furthest),
                from: iso(from_ms),
                to: iso(to_ms),
                cause: match self.api {
                    Api::Legacy => {
                        "the server ignores startDate/endDate — check `date_format` (`millis` or `iso8601`)"
                    }
                    Api::Cloud => "the server ignores startDate/endDate",
                    Api::Auditing | Api::File | Api::Organization => {
                        "the server ignores `from`/`to`"
                    }
                },
            });
        }
        let older = records.iter().filter(|r| r.ts_ms < from_ms).count();
        records.retain(|r| !outside(r));
        tracing::warn!(
            count,
            from = %iso(from_ms),
            to = %iso(to_ms),
            "records just outside the requested window dropped (the server rounds its bounds?)"
        );
        Ok(older)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::ContentHash;

    fn rec(ts_ms: i64) -> Fetched {
        Fetched {
            ts_ms,
            hash: ContentHash([0; 16]),
            raw: "{}".into(),
            listing: 0,
            undecodable: None,
            self_generated: false,
        }
    }

    fn check<'a>(api: Api, counted: &'a (dyn Fn(u64) + Send + Sync)) -> PageCheck<'a> {
        PageCheck::new(
            api,
            "http://wiki/rest/api/audit",
            (10_000, 20_000),
            10,
            5,
            counted,
        )
    }

    #[test]
    fn records_just_outside_are_dropped_further_out_fail_the_slice() {
        let seen = std::sync::atomic::AtomicU64::new(0);
        let count = |n: u64| {
            seen.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        };
        let c = check(Api::Legacy, &count);
        let mut records = vec![rec(20_500), rec(15_000), rec(9_990)];
        assert_eq!(c.window(&mut records, 10_000, 20_000).unwrap(), 1);
        assert_eq!(records.len(), 1);
        let mut records = vec![rec(15_000), rec(25_000)];
        let e = c.window(&mut records, 10_000, 20_000).unwrap_err();
        assert_eq!(e.kind(), "out_of_window");
        assert!(e.to_string().contains("check `date_format`"), "{e}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn paging_that_does_not_progress_fails_the_slice() {
        let quiet = |_: u64| {};
        let mut c = check(Api::Auditing, &quiet);
        c.cursor("a").unwrap();
        c.cursor("b").unwrap();
        assert_eq!(c.cursor("a").unwrap_err().kind(), "paging");
        c.page(Some([1; 16]), 5).unwrap();
        let e = c.page(Some([1; 16]), 5).unwrap_err();
        assert!(e.to_string().contains("same records"), "{e}");
        // Pages of twins say nothing: one may follow another.
        c.page(None, 0).unwrap();
        // 3 × 10 + 3 × 5 records at most, re-reads included.
        for i in 2..10u8 {
            c.page(Some([i; 16]), 5).unwrap();
        }
        assert!(
            c.page(Some([10; 16]), 5)
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
        c.follows_cursor("15000,7", &[rec(15_000), rec(12_000)])
            .unwrap();
        let e = c.follows_cursor("15000,7", &[rec(15_001)]).unwrap_err();
        assert!(e.to_string().contains("ignores `pageCursor`"), "{e}");
        let c = check(Api::Legacy, &quiet);
        c.offset(100, Some(100)).unwrap();
        c.offset(100, None).unwrap();
        assert!(
            c.offset(100, Some(0))
                .unwrap_err()
                .to_string()
                .contains("ignores `start`")
        );
    }
}
