//! The `_bulk` wire format both ways: queued documents → NDJSON request body, and the
//! response → one [`Delivery`] per document.
//!
//! Kept free of I/O so that the rules that decide whether an event is delivered, retried or
//! dead-lettered can be tested item by item. Those rules:
//!
//! - every action is `create` with `_id` = `event.id`: a retry of something Elasticsearch
//!   already has answers 409 `version_conflict_engine_exception`, which means "delivered";
//! - 429 and 5xx items are retried (overload, a shard relocating);
//! - 401/403/404/408 items are retried too: credentials, privileges, a deleted data stream or
//!   a `read_only` block are the cluster's problem, not the document's, and must not
//!   dead-letter everything while an operator fixes them;
//! - any other 4xx (mapping and parsing errors above all) can never succeed: the document is
//!   rejected with Elasticsearch's error type and reason, and goes to the dead-letter queue.

use serde::Deserialize;

use crate::sink::{Delivery, QueuedEvent};

/// Append the `_bulk` body for `events` to `out`: an action line and the document, each
/// ending in a newline (Elasticsearch requires the final one).
///
/// A document that is not one line of JSON would corrupt the stream for every document after
/// it; the normalizer never writes one, but the caller must [`check_document`] first.
pub fn encode_bulk(events: &[&QueuedEvent], out: &mut Vec<u8>) {
    for e in events {
        out.extend_from_slice(b"{\"create\":{\"_id\":");
        // `event.id` is hex today; escape it anyway so no id can break the action line.
        serde_json::to_writer(&mut *out, &e.id).expect("writing to a Vec cannot fail");
        out.extend_from_slice(b"}}\n");
        out.extend_from_slice(&e.doc);
        out.push(b'\n');
    }
}

/// Why a document cannot be sent in a `_bulk` body at all (it is rejected, not retried).
pub fn check_document(e: &QueuedEvent) -> Option<String> {
    if e.id.is_empty() || e.id.len() > 512 {
        return Some(format!(
            "event.id {:?} cannot be an Elasticsearch _id (1 to 512 bytes)",
            e.id
        ));
    }
    let first = e.doc.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Some("document is not a JSON object".into());
    }
    if e.doc.contains(&b'\n') || e.doc.contains(&b'\r') {
        return Some("document spans several lines; _bulk needs one line of JSON".into());
    }
    None
}

#[derive(Debug, Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Debug, Deserialize)]
struct BulkItem {
    #[serde(rename = "_id")]
    id: Option<String>,
    status: u16,
    error: Option<ItemError>,
}

/// Elasticsearch's error object: `{"type", "reason", "caused_by": {…}}`.
#[derive(Debug, Deserialize)]
pub struct ItemError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub caused_by: Option<Box<ItemError>>,
}

impl ItemError {
    /// `type: reason (caused by type: reason)`, the chain flattened to one line.
    pub fn describe(&self) -> String {
        let mut s = self.kind.clone();
        if let Some(r) = &self.reason {
            s.push_str(": ");
            s.push_str(r);
        }
        let mut cause = self.caused_by.as_deref();
        // Bounded: a pathological response must not make an unbounded message.
        for _ in 0..4 {
            let Some(c) = cause else { break };
            s.push_str(" (caused by ");
            s.push_str(&c.kind);
            if let Some(r) = &c.reason {
                s.push_str(": ");
                s.push_str(r);
            }
            s.push(')');
            cause = c.caused_by.as_deref();
        }
        s
    }
}

/// What a whole `_bulk` response said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BulkSummary {
    pub results: Vec<Delivery>,
    /// Items answered 409: already indexed by an earlier attempt.
    pub already_present: usize,
}

/// Read a 200 `_bulk` response for `events` (in request order). `Err` when the response does
/// not account for every document exactly: then nothing can be acknowledged.
pub fn parse_bulk_response(body: &[u8], events: &[&QueuedEvent]) -> Result<BulkSummary, String> {
    let resp: BulkResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable _bulk response ({e})"))?;
    if resp.items.len() != events.len() {
        return Err(format!(
            "_bulk response has {} items for {} documents",
            resp.items.len(),
            events.len()
        ));
    }
    let mut summary = BulkSummary::default();
    let mut any_error = false;
    for (i, (item, event)) in resp.items.into_iter().zip(events).enumerate() {
        let Some((action, item)) = item.into_iter().next() else {
            return Err(format!("_bulk response item {i} is empty"));
        };
        if action != "create" {
            return Err(format!(
                "_bulk response item {i} is {action:?}, not the \"create\" that was sent"
            ));
        }
        if let Some(id) = &item.id
            && id != &event.id
        {
            return Err(format!(
                "_bulk response item {i} is for _id {id:?}, not {:?}",
                event.id
            ));
        }
        let delivery = item_delivery(item.status, item.error.as_ref());
        any_error |= !matches!(delivery, Delivery::Delivered) || item.status == 409;
        if item.status == 409 {
            summary.already_present += 1;
        }
        summary.results.push(delivery);
    }
    if any_error && !resp.errors {
        // Elasticsearch sets `errors` whenever an item failed; trust the items, but a
        // response that contradicts itself is worth a line in the log.
        tracing::debug!("_bulk response says errors: false but has failed items");
    }
    Ok(summary)
}

/// The fate of one item, from its status and error.
pub fn item_delivery(status: u16, error: Option<&ItemError>) -> Delivery {
    let why = || {
        error
            .map(ItemError::describe)
            .unwrap_or_else(|| "no error details".into())
    };
    match status {
        200..=299 => Delivery::Delivered,
        // `create` of an `_id` that exists: a retry of something already indexed.
        409 => Delivery::Delivered,
        401 | 403 | 404 | 408 | 429 => Delivery::Retry(format!("{status} {}", why())),
        400..=499 => Delivery::Rejected(format!("elasticsearch rejected it: {status} {}", why())),
        _ => Delivery::Retry(format!("{status} {}", why())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, doc: &str) -> QueuedEvent {
        QueuedEvent {
            seq: 1,
            enqueued_ms: 0,
            id: id.into(),
            doc: doc.as_bytes().to_vec(),
        }
    }

    #[test]
    fn body_is_create_actions_with_ids_and_a_final_newline() {
        let a = ev("abc", r#"{"message":"one"}"#);
        let b = ev("we\"ird", r#"{"message":"two"}"#);
        let mut out = Vec::new();
        encode_bulk(&[&a, &b], &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"create\":{\"_id\":\"abc\"}}\n{\"message\":\"one\"}\n{\"create\":{\"_id\":\"we\\\"ird\"}}\n{\"message\":\"two\"}\n"
        );
    }

    #[test]
    fn documents_that_would_break_the_stream_are_caught() {
        assert_eq!(check_document(&ev("a", r#"{"a":1}"#)), None);
        assert!(check_document(&ev("a", "{\"a\":\n1}")).is_some());
        assert!(check_document(&ev("a", "[1]")).is_some());
        assert!(check_document(&ev("", "{}")).is_some());
    }

    #[test]
    fn items_map_to_deliveries() {
        let events = [
            ev("a", "{}"),
            ev("b", "{}"),
            ev("c", "{}"),
            ev("d", "{}"),
            ev("e", "{}"),
            ev("f", "{}"),
        ];
        let refs: Vec<&QueuedEvent> = events.iter().collect();
        let body = r#"{"took":3,"errors":true,"items":[
 {"create":{"_index":".ds-logs-confluence.audit-default-2025.11.25-000001","_id":"a","_version":1,"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}},
 {"create":{"_index":".ds-x","_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[b]: version conflict, document already exists (current version [1])","index_uuid":"u","shard":"0","index":".ds-x"}}},
 {"create":{"_index":".ds-x","_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}},
 {"create":{"_index":".ds-x","_id":"d","status":400,"error":{"type":"document_parsing_exception","reason":"[1:120] failed to parse field [source.ip] of type [ip] in document with id 'd'. Preview of field's value: 'nope'","caused_by":{"type":"illegal_argument_exception","reason":"'nope' is not an IP string literal."}}}},
 {"create":{"_index":".ds-x","_id":"e","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
 {"create":{"_index":".ds-x","_id":"f","status":403,"error":{"type":"cluster_block_exception","reason":"index [.ds-x] blocked by: [FORBIDDEN/8/index write (api)];"}}}
]}"#;
        let s = parse_bulk_response(body.as_bytes(), &refs).unwrap();
        assert_eq!(s.already_present, 1);
        assert_eq!(s.results[0], Delivery::Delivered);
        assert_eq!(s.results[1], Delivery::Delivered);
        assert!(
            matches!(&s.results[2], Delivery::Retry(r) if r.contains("es_rejected_execution_exception"))
        );
        match &s.results[3] {
            Delivery::Rejected(r) => {
                assert!(r.contains("400 document_parsing_exception"), "{r}");
                assert!(r.contains("[source.ip] of type [ip]"), "{r}");
                assert!(r.contains("caused by illegal_argument_exception"), "{r}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&s.results[4], Delivery::Retry(r) if r.starts_with("503")));
        assert!(
            matches!(&s.results[5], Delivery::Retry(r) if r.contains("cluster_block_exception"))
        );
    }

    #[test]
    fn responses_that_do_not_account_for_every_document_are_errors() {
        let events = [ev("a", "{}"), ev("b", "{}")];
        let refs: Vec<&QueuedEvent> = events.iter().collect();
        let one = r#"{"errors":false,"items":[{"create":{"_id":"a","status":201}}]}"#;
        assert!(parse_bulk_response(one.as_bytes(), &refs).is_err());
        let swapped = r#"{"errors":false,"items":[{"create":{"_id":"b","status":201}},{"create":{"_id":"a","status":201}}]}"#;
        assert!(parse_bulk_response(swapped.as_bytes(), &refs).is_err());
        let index = r#"{"errors":false,"items":[{"index":{"_id":"a","status":201}},{"create":{"_id":"b","status":201}}]}"#;
        assert!(parse_bulk_response(index.as_bytes(), &refs).is_err());
        assert!(parse_bulk_response(b"<html>", &refs).is_err());
    }
}
