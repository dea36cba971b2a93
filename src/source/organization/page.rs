//! One `events-stream` answer read and checked: the JSON:API envelope (`data`, `meta.next`,
//! `links.next`), every event's id and `processedAt`, and the order of the stream.
//!
//! A body that is not the envelope is `Err(String)`: the client treats it as malformed and
//! retries the same request (a truncated or proxy-mangled answer). A well-formed page that
//! breaks the API's promises (an event without id or `processedAt`, events out of
//! `processedAt` order) is a [`PageProblem`]: retrying cannot fix it, the cycle stops loudly
//! and the cursor stays where it was.

use serde_json::Value;

use crate::normalize::NormalizeOptions;
use crate::normalize::organization::{self, OrgDocument};

/// A page as sent: its events (raw) and the cursor to continue from.
#[derive(Debug)]
pub struct OrgPage {
    pub data: Vec<Value>,
    /// `meta.next`, else the `cursor` of `links.next`; `None` when the page has neither.
    pub next: Option<String>,
}

/// A page that breaks the API's promises.
#[derive(Debug, thiserror::Error)]
pub enum PageProblem {
    #[error(
        "event {index} of the page (id {id:?}) was processed at {at}, before the event ahead of it: the server does not order by processedAt"
    )]
    Order {
        index: usize,
        id: String,
        at: String,
    },
}

/// Read the envelope. The error says what is wrong with it.
pub fn parse(body: &[u8]) -> Result<OrgPage, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut map) = v else {
        return Err("not a JSON object".into());
    };
    let data = match map.remove("data") {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("`data` is not a list but {}", kind(&other))),
        None => return Err("no `data` member: not an events-stream page".into()),
    };
    let next = match map.get("meta").and_then(|m| m.get("next")) {
        Some(Value::String(c)) if !c.is_empty() => Some(c.clone()),
        Some(Value::Null) | None => map
            .get("links")
            .and_then(|l| l.get("next"))
            .and_then(Value::as_str)
            .and_then(cursor_of_link),
        Some(Value::String(_)) => None,
        Some(other) => return Err(format!("`meta.next` is {}, not a cursor", kind(other))),
    };
    Ok(OrgPage { data, next })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The `cursor` query parameter of a `links.next` URL.
fn cursor_of_link(link: &str) -> Option<String> {
    let url = url::Url::parse(link)
        .or_else(|_| url::Url::parse("http://relative.invalid").and_then(|b| b.join(link)))
        .ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .filter(|c| !c.is_empty())
}

/// Normalize every event of the page, checking the stream's order as it goes. An event
/// that cannot be normalized becomes a `pipeline_error` document in its place
/// ([`organization::normalize_or_error`]); `floor_ms` is the position before the page.
pub fn documents(
    page: &OrgPage,
    created: &str,
    opts: &NormalizeOptions,
    floor_ms: i64,
) -> Result<Vec<OrgDocument>, PageProblem> {
    let mut out: Vec<OrgDocument> = Vec::with_capacity(page.data.len());
    for (index, raw) in page.data.iter().enumerate() {
        let floor = out.last().map_or(floor_ms, |d| d.processed_ms);
        let doc = organization::normalize_or_error(raw, created, opts, floor);
        if let Some(prev) = out.last()
            && doc.processed_ms < prev.processed_ms
        {
            return Err(PageProblem::Order {
                index,
                id: doc.source_id,
                at: crate::source::paging::iso(doc.processed_ms),
            });
        }
        out.push(doc);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_comes_from_meta_or_from_the_next_link() {
        let p = parse(br#"{"data":[],"meta":{"next":"abc"}}"#).unwrap();
        assert_eq!(p.next.as_deref(), Some("abc"));
        let p = parse(br#"{"data":[],"meta":{"next":null},"links":{"next":"https://x/y?cursor=c%2B1&limit=5"}}"#).unwrap();
        assert_eq!(p.next.as_deref(), Some("c+1"));
        let p = parse(br#"{"data":[],"meta":{"next":null}}"#).unwrap();
        assert_eq!(p.next, None);
    }

    #[test]
    fn what_is_not_a_page_says_why() {
        assert!(parse(b"<html>").unwrap_err().contains("not JSON"));
        assert!(parse(br#"{"results":[]}"#).unwrap_err().contains("`data`"));
        assert!(parse(br#"{"data":{}}"#).unwrap_err().contains("not a list"));
        assert!(
            parse(br#"{"data":[],"meta":{"next":5}}"#)
                .unwrap_err()
                .contains("meta.next")
        );
    }

    #[test]
    fn events_out_of_processing_order_are_refused() {
        let ev = |id: &str, at: &str| serde_json::json!({"id": id, "attributes": {"processedAt": at, "action": "page_viewed"}});
        let page = OrgPage {
            data: vec![
                ev("a", "2026-11-20T09:14:05.020Z"),
                ev("b", "2026-11-20T09:14:04.000Z"),
            ],
            next: None,
        };
        let e = documents(
            &page,
            "2026-11-20T10:00:00.000Z",
            &NormalizeOptions::default(),
            0,
        )
        .unwrap_err();
        assert!(matches!(e, PageProblem::Order { index: 1, .. }), "{e}");
    }
}
