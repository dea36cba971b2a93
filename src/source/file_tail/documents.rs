//! Lines into documents: each complete line of an audit log file becomes one ECS document,
//! through the same normalizer as `normalize --api file`.
//!
//! A line that is not UTF-8, not JSON or not an audit entity, and a line over the record
//! limit, becomes an `event.kind: pipeline_error` document with its raw bytes (the REST
//! sources' own, [`write_error_doc`]) and is counted: it never blocks its file. Lines older
//! than `start_at` and, with `forward_self_generated = false`, "Audit Log search performed"
//! events are read past without a document.

use super::checkpoint::TwinCounts;
use super::lines::Line;
use crate::normalize::{self, Api, NormalizeOptions};
use crate::source::page_parse::{UNDATED, fetched_bytes};
use crate::source::prepare::write_error_doc;
use crate::state::NewEvent;

/// What turning lines into documents needs to know.
pub struct DocumentRules<'a> {
    pub opts: &'a NormalizeOptions,
    /// `event.created`.
    pub created: &'a str,
    /// Records before this time (epoch ms) are skipped (`start_at`).
    pub floor_ms: i64,
    pub forward_self_generated: bool,
    /// The record limit, for the error of an over-long line.
    pub max_line: usize,
}

/// What a batch of lines gave, besides its documents.
#[derive(Debug, Default, Clone, Copy)]
pub struct LineCounts {
    pub lines: u64,
    /// Lines forwarded as `pipeline_error`.
    pub rejected: u64,
    /// Actions not in the mapping tables.
    pub unknown: u64,
    /// Lines read past without a document (before `start_at`, self-generated dropped).
    pub skipped: u64,
    pub newest_ms: Option<i64>,
}

impl DocumentRules<'_> {
    /// Append the documents of `lines` (one file's, in order) to `events`.
    pub fn documents(
        &self,
        lines: &[Line],
        twins: &mut TwinCounts,
        events: &mut Vec<NewEvent>,
        counts: &mut LineCounts,
    ) {
        for line in lines {
            counts.lines += 1;
            let (raw, too_long) = match line {
                Line::Text(raw) => (raw.as_slice(), None),
                Line::TooLong { prefix, bytes } => (prefix.as_slice(), Some(*bytes)),
            };
            if too_long.is_none()
                && let Ok(text) = std::str::from_utf8(raw)
                && let Ok(record) = normalize::parse_record(Api::File, text)
            {
                let ts = record.timestamp_ms();
                let occurrence = twins.occurrence(ts, record.content_hash());
                if ts < self.floor_ms
                    || (!self.forward_self_generated && record.is_self_generated())
                {
                    counts.skipped += 1;
                    continue;
                }
                let mut doc = Vec::with_capacity(raw.len() + 512);
                let id = normalize::event_id(&record.content_hash(), occurrence);
                match normalize::write_ecs(&record, occurrence, self.created, self.opts, &mut doc) {
                    Ok(meta) => counts.unknown += u64::from(!meta.known_action),
                    Err(e) => {
                        doc.clear();
                        counts.rejected += 1;
                        let id = self.error_doc(raw, Some(e.to_string()), twins, &mut doc);
                        events.push(NewEvent { id, doc });
                        continue;
                    }
                }
                counts.newest_ms = counts.newest_ms.max(Some(ts));
                events.push(NewEvent { id, doc });
                continue;
            }
            let error = too_long.map(|bytes| {
                format!(
                    "audit log line of {bytes} bytes, longer than the {}-byte record limit (max_response_bytes): cut to its first {} bytes",
                    self.max_line,
                    raw.len()
                )
            });
            let mut doc = Vec::with_capacity(raw.len() + 512);
            let id = self.error_doc(raw, error, twins, &mut doc);
            counts.rejected += 1;
            events.push(NewEvent { id, doc });
        }
    }

    /// The `pipeline_error` document of a line that gives no record; returns its id. `error`
    /// overrides the parser's own reason.
    fn error_doc(
        &self,
        raw: &[u8],
        error: Option<String>,
        twins: &mut TwinCounts,
        doc: &mut Vec<u8>,
    ) -> String {
        let mut fetched = fetched_bytes(Api::File, raw, 0);
        if fetched.ts_ms == UNDATED {
            // Placed at the newest record before it: where the file had it.
            fetched.ts_ms = twins.newest_ms().unwrap_or_else(crate::clock::now_ms);
        }
        let occurrence = twins.occurrence(fetched.ts_ms, fetched.hash);
        let id = normalize::event_id(&fetched.hash, occurrence);
        let reason = match (&error, &fetched.undecodable) {
            (Some(e), _) => e.clone(),
            (None, Some(u)) => u.error.clone(),
            (None, None) => "the record was refused by the normalizer".to_owned(),
        };
        tracing::error!(line = %crate::logsafe::clean(&fetched.raw), error = %crate::logsafe::clean(&reason), "audit log line cannot be decoded; forwarded as a pipeline_error document with its raw bytes");
        write_error_doc(doc, &fetched, &id, self.created, &reason, self.opts);
        id
    }
}

#[cfg(test)]
impl<'a> DocumentRules<'a> {
    /// Rules that skip nothing (tests).
    pub fn every_line(opts: &'a NormalizeOptions, max_line: usize) -> DocumentRules<'a> {
        DocumentRules {
            opts,
            created: "2026-01-01T00:00:00.000Z",
            floor_ms: i64::MIN,
            forward_self_generated: true,
            max_line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_and_over_long_lines_become_counted_pipeline_errors_with_their_bytes() {
        let opts = NormalizeOptions::default();
        let rules = DocumentRules::every_line(&opts, 1024);
        let lines = [
            Line::Text(b"not json".to_vec()),
            Line::Text(vec![b'{', 0xff, b'}']),
            Line::TooLong {
                prefix: b"{\"auditType\"".to_vec(),
                bytes: 5000,
            },
        ];
        let (mut events, mut counts) = (Vec::new(), LineCounts::default());
        rules.documents(&lines, &mut TwinCounts::default(), &mut events, &mut counts);
        assert_eq!((counts.lines, counts.rejected), (3, 3));
        let docs: Vec<serde_json::Value> = events
            .iter()
            .map(|e| serde_json::from_slice(&e.doc).unwrap())
            .collect();
        for (doc, event) in docs.iter().zip(&events) {
            assert_eq!(doc["event"]["kind"], "pipeline_error");
            assert_eq!(doc["event"]["id"], event.id.as_str());
        }
        assert_eq!(docs[0]["event"]["original"], "not json");
        assert_eq!(docs[1]["confluence"]["audit"]["original_base64"], "e/99");
        let cut = docs[2]["error"]["message"].as_str().unwrap();
        assert!(
            cut.contains("5000 bytes") && cut.contains("1024-byte"),
            "{cut}"
        );
    }
}
