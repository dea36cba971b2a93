//! Reading one response: the envelope's paging fields, and each record placed in time and
//! hashed for the dedupe.
//!
//! The hot path lets serde borrow each record as raw JSON from the body. Only when serde
//! rejects the body (one record that is not UTF-8 does that) is the page split byte-wise by
//! [`page_scan`]; each element is then decoded on its own, and one that cannot be is kept
//! with its exact bytes, to be forwarded as a `pipeline_error` rather than poison its page.

use base64::Engine;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::page_scan;
use crate::normalize::{self, Api, ContentHash};

/// One fetched record, before deduplication.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub ts_ms: i64,
    pub hash: ContentHash,
    /// The record's text (for an undecodable record: its bytes with invalid UTF-8 replaced).
    pub raw: Box<str>,
    /// Which listing of the slice returned it: one response, or the pages of one offset walk
    /// inside a millisecond or of one keyset walk. Identical records are twins only within
    /// one listing (see [`deduplicate`](super::window::deduplicate)).
    pub listing: u32,
    /// Set when the record cannot be decoded; it is forwarded as a `pipeline_error`.
    pub undecodable: Option<Box<Undecodable>>,
    /// An "Audit Log search performed" event: polling caused it.
    pub self_generated: bool,
}

/// Why a record could not be decoded, and its exact bytes when they are not text.
#[derive(Debug, Clone)]
pub struct Undecodable {
    pub error: String,
    /// The record's bytes, base64, when they are not valid UTF-8 (`raw` is then lossy).
    pub raw_base64: Option<String>,
}

#[derive(Deserialize)]
struct RecordPage<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
    #[serde(default)]
    start: Option<u64>,
    #[serde(default, rename = "_links")]
    links: Option<Links>,
}

/// A legacy/Cloud page's paging fields.
#[derive(Deserialize)]
struct RecordEnvelope {
    #[serde(default)]
    start: Option<u64>,
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

/// A DC page's paging fields.
#[derive(Deserialize)]
struct EntityEnvelope {
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

/// One response, parsed.
pub(super) struct Page {
    pub records: Vec<Fetched>,
    /// The server says more exists (`_links.next`, `lastPage:false`).
    pub more: bool,
    pub next_cursor: Option<String>,
    /// The offset the envelope says it starts at (legacy and Cloud).
    pub start: Option<u64>,
    /// What the page lists (each record's time and content hash, in order), to recognise a
    /// page seen before; `None` when that says nothing (fewer than two records, or all of
    /// them identical: a page of twins may legitimately follow another).
    pub listing_hash: Option<[u8; 16]>,
}

impl Page {
    /// Records the page held, before any was dropped as outside the request.
    pub fn received(&self) -> usize {
        self.records.len()
    }
}

/// Parse a legacy/Cloud page; records whose time is unknown are placed by their neighbours.
pub(super) fn record_page_body(
    api: Api,
    body: &[u8],
    to_ms: i64,
    listing: u32,
) -> Result<Page, String> {
    let (mut records, envelope) = match serde_json::from_slice::<RecordPage<'_>>(body) {
        Ok(page) => (
            page.results
                .iter()
                .map(|r| fetched(api, r.get(), listing))
                .collect(),
            RecordEnvelope {
                start: page.start,
                links: page.links,
            },
        ),
        Err(fast) => split_page(api, body, "results", listing, fast)?,
    };
    place_undated(&mut records, to_ms);
    Ok(Page {
        listing_hash: listing_hash(&records),
        records,
        more: envelope.links.is_some_and(|l| l.next.is_some()),
        next_cursor: None,
        start: envelope.start,
    })
}

/// Parse a DC page; records whose time is unknown are placed by their neighbours.
pub(super) fn entity_page_body(body: &[u8], to_ms: i64) -> Result<Page, String> {
    let api = Api::Auditing;
    let (mut records, envelope) = match serde_json::from_slice::<EntityPage<'_>>(body) {
        Ok(page) => (
            page.entities
                .iter()
                .map(|r| fetched(api, r.get(), 0))
                .collect(),
            EntityEnvelope {
                paging_info: page.paging_info,
            },
        ),
        Err(fast) => split_page(api, body, "entities", 0, fast)?,
    };
    place_undated(&mut records, to_ms);
    let info = envelope.paging_info;
    Ok(Page {
        listing_hash: listing_hash(&records),
        records,
        more: !info.last_page,
        next_cursor: info.next_page_cursor,
        start: None,
    })
}

/// The slow path, for a body serde rejected: split the records array byte-wise, decode each
/// element on its own, and read the paging fields from the rest of the body.
fn split_page<E: DeserializeOwned>(
    api: Api,
    body: &[u8],
    key: &str,
    listing: u32,
    fast: serde_json::Error,
) -> Result<(Vec<Fetched>, E), String> {
    let scanned = page_scan::scan(body, key).map_err(|e| format!("{fast} ({e})"))?;
    let envelope = serde_json::from_str(&String::from_utf8_lossy(&scanned.envelope))
        .map_err(|e| format!("{fast} ({e})"))?;
    let records = scanned
        .elements
        .iter()
        .map(|e| fetched_bytes(api, e, listing))
        .collect();
    Ok((records, envelope))
}

/// See [`Page::listing_hash`].
fn listing_hash(records: &[Fetched]) -> Option<[u8; 16]> {
    let first = records.first()?;
    if records
        .iter()
        .all(|r| r.ts_ms == first.ts_ms && r.hash == first.hash)
    {
        return None;
    }
    let mut h = blake3::Hasher::new();
    for r in records {
        h.update(&r.ts_ms.to_le_bytes());
        h.update(&r.hash.0);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    Some(out)
}

fn hash16(bytes: &[u8]) -> [u8; 16] {
    let mut h = [0u8; 16];
    h.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
    h
}

/// A record whose time could not be read is placed at the time of its newer neighbour in
/// the page (pages are newest first), else its older one, else the request's end: close to
/// where the server listed it, and the same place when the same page is read again.
pub(super) const UNDATED: i64 = i64::MIN;

fn place_undated(records: &mut [Fetched], to_ms: i64) {
    if records.iter().all(|r| r.ts_ms != UNDATED) {
        return;
    }
    let first_dated = records.iter().map(|r| r.ts_ms).find(|&t| t != UNDATED);
    let mut newer = first_dated.unwrap_or(to_ms);
    for r in records.iter_mut() {
        if r.ts_ms == UNDATED {
            r.ts_ms = newer;
        } else {
            newer = r.ts_ms;
        }
    }
}

/// Parse enough of a record to place it in time and deduplicate it. A record that does not
/// parse is kept (with its error) so that it is forwarded, not lost.
fn fetched(api: Api, raw: &str, listing: u32) -> Fetched {
    match normalize::parse_record(api, raw) {
        Ok(r) => Fetched {
            ts_ms: r.timestamp_ms(),
            hash: r.content_hash(),
            raw: raw.into(),
            listing,
            undecodable: None,
            self_generated: r.is_self_generated(),
        },
        Err(e) => Fetched {
            ts_ms: recover_time(api, raw).unwrap_or(UNDATED),
            hash: ContentHash(hash16(raw.as_bytes())),
            raw: raw.into(),
            listing,
            undecodable: Some(Box::new(Undecodable {
                error: e.to_string(),
                raw_base64: None,
            })),
            self_generated: false,
        },
    }
}

/// [`fetched`] for an element that may not be UTF-8: then it is undecodable, kept whole
/// (base64) and forwarded.
pub(super) fn fetched_bytes(api: Api, raw: &[u8], listing: u32) -> Fetched {
    match std::str::from_utf8(raw) {
        Ok(text) => fetched(api, text, listing),
        Err(e) => {
            let lossy = String::from_utf8_lossy(raw);
            Fetched {
                ts_ms: recover_time(api, &lossy).unwrap_or(UNDATED),
                hash: ContentHash(hash16(raw)),
                raw: lossy.as_ref().into(),
                listing,
                undecodable: Some(Box::new(Undecodable {
                    error: format!("{} record is not valid UTF-8: {e}", api.as_str()),
                    raw_base64: Some(base64::engine::general_purpose::STANDARD.encode(raw)),
                })),
                self_generated: false,
            }
        }
    }
}

/// The time of a record that does not parse as a whole, when its time field is readable.
fn recover_time(api: Api, text: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    match api {
        Api::Legacy | Api::Cloud => v.get("creationDate")?.as_i64(),
        Api::Auditing | Api::File => {
            let t = v.get("timestamp")?.as_str()?;
            let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .ok()?;
            Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
        }
        Api::Organization => None, // read by source::organization, never here
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_that_is_not_utf8_does_not_poison_its_page() {
        let good = r#"{"creationDate":1700000000002,"summary":"Page created","category":"Pages"}"#;
        let mut body = br#"{"results":["#.to_vec();
        body.extend_from_slice(good.as_bytes());
        body.extend_from_slice(b",{\"creationDate\":1700000000001,\"summary\":\"bad \xff\xfe\"},");
        body.extend_from_slice(br#"7],"start":0,"limit":3,"size":3}"#);
        let page = record_page_body(Api::Legacy, &body, 1700000000009, 4).unwrap();
        assert_eq!(page.records.len(), 3);
        assert_eq!(page.start, Some(0));
        assert!(page.records[0].undecodable.is_none());
        let bad = page.records[1].undecodable.as_ref().expect("undecodable");
        assert_eq!(page.records[1].ts_ms, 1700000000001);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(bad.raw_base64.as_ref().expect("base64"))
            .unwrap();
        assert_eq!(
            bytes,
            b"{\"creationDate\":1700000000001,\"summary\":\"bad \xff\xfe\"}"
        );
        // Not an object: forwarded as an error, placed by its newer neighbour.
        assert!(page.records[2].undecodable.is_some());
        assert_eq!(page.records[2].ts_ms, 1700000000001);
        assert!(page.records.iter().all(|r| r.listing == 4));
    }

    #[test]
    fn a_body_that_is_not_a_page_is_rejected() {
        assert!(record_page_body(Api::Legacy, b"<html>oops</html>", 0, 0).is_err());
        assert!(entity_page_body(b"{\"entities\":[{}", 0).is_err());
    }
}
