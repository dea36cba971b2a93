//! Preparing a slice for its commit: deduplicate it against what earlier windows saw, drop
//! what the user chose not to forward, and normalize the rest into ECS documents.
//!
//! Nothing here drops a record silently: a record that cannot be decoded (not UTF-8, not an
//! object, a field of the wrong type) or normalized becomes an `event.kind: pipeline_error`
//! document carrying its raw bytes, and is counted; only the self-generated "Audit Log search
//! performed" events are dropped, and only when `forward_self_generated = false`.

use std::collections::HashMap;

use super::paging::{self, Fetched};
use super::window::{self, Window};
use super::{Source, SourceError, now_ms};
use crate::normalize::{self, ContentHash, NormalizeOptions};
use crate::state::{NewEvent, WindowCommit, blocking};

/// Counts a part of a millisecond queued earlier carries into the next part.
pub(super) type Carried = HashMap<(i64, ContentHash), u32>;

/// A slice deduplicated and normalized, waiting for its commit.
pub(super) struct Prepared {
    pub commit: WindowCommit,
    pub records_read: u64,
    pub duplicates: u64,
    pub unknown: u64,
    pub rejected: u64,
    /// Of the records read, those polling caused, and those of them queued.
    pub self_generated: (u64, u64),
    pub newest: Option<i64>,
}

impl Prepared {
    /// The cursor position its commit reaches, if it moves the cursor.
    pub fn completes(&self) -> Option<i64> {
        self.commit.cursor_ms
    }
}

impl Source {
    /// Deduplicate and normalize one slice, ready to commit. `advance`: the commit moves the
    /// cursor to the slice's end (every older record is queued by then). `carried`: counts
    /// of the millisecond an earlier part of this slice stopped in.
    pub(super) async fn prepare_slice(
        &self,
        slice: Window,
        records: Vec<Fetched>,
        advance: bool,
        carried: Carried,
    ) -> Result<Prepared, SourceError> {
        let name = self.cfg.name.clone();
        let opts = self.normalize.clone();
        let overlap_ms = self.cfg.overlap.as_millis() as i64;
        let forward_self = self.cfg.forward_self_generated;
        let api = self.cfg.api;
        let replaying = self.replay.is_some();
        let prepared = blocking(&self.store, move |store| {
            let in_slice: Vec<Fetched> = records
                .into_iter()
                .filter(|r| r.ts_ms >= slice.from_ms && r.ts_ms <= slice.to_ms)
                .collect();
            // A later part of a crowded millisecond looks its keys up one by one: the range
            // of that millisecond holds every earlier part's rows.
            // A replay numbers every record afresh, as the first read of it did: the same
            // `event.id`s, none dropped for having been seen.
            let seen = if replaying {
                HashMap::new()
            } else if carried.is_empty() {
                store.seen_counts(&name, slice.from_ms, slice.to_ms)?
            } else {
                store.seen_counts_of(&name, in_slice.iter().map(|r| (r.ts_ms, r.hash)))?
            };
            let (fresh, counts) = window::deduplicate(&in_slice, &seen, &carried);
            let created = paging::iso(now_ms());
            let mut events = Vec::with_capacity(fresh.len());
            let mut newest = None;
            let (mut unknown, mut rejected, mut self_queued) = (0u64, 0u64, 0u64);
            for f in &fresh {
                let id = normalize::event_id(&f.record.hash, f.occurrence);
                let mut doc = Vec::with_capacity(f.record.raw.len() + 512);
                match &f.record.undecodable {
                    None => {
                        let record = normalize::parse_record(api, &f.record.raw)
                            .expect("parsed once already");
                        if f.record.self_generated {
                            if !forward_self {
                                continue;
                            }
                            self_queued += 1;
                        }
                        match normalize::write_ecs(&record, f.occurrence, &created, &opts, &mut doc)
                        {
                            Ok(meta) => unknown += u64::from(!meta.known_action),
                            Err(e) => {
                                doc.clear();
                                rejected += 1;
                                let e = e.to_string();
                                write_error_doc(&mut doc, f.record, &id, &created, &e, &opts);
                            }
                        }
                    }
                    Some(bad) => {
                        rejected += 1;
                        tracing::error!(record = %crate::logsafe::clean(&f.record.raw), error = %crate::logsafe::clean(&bad.error), "record cannot be decoded; forwarded as a pipeline_error document with its raw bytes");
                        write_error_doc(&mut doc, f.record, &id, &created, &bad.error, &opts);
                    }
                }
                newest = newest.max(Some(f.record.ts_ms));
                events.push(NewEvent { id, doc });
            }
            let commit = WindowCommit {
                events,
                seen: counts,
                cursor_ms: advance.then_some(slice.to_ms),
                // Queued ahead of the cursor: the older part still needs every count.
                prune_seen_before_ms: if advance {
                    slice.to_ms - overlap_ms
                } else {
                    i64::MIN
                },
            };
            Ok(Prepared {
                commit,
                records_read: in_slice.len() as u64,
                duplicates: (in_slice.len() - fresh.len()) as u64,
                unknown,
                rejected,
                self_generated: (
                    in_slice.iter().filter(|r| r.self_generated).count() as u64,
                    self_queued,
                ),
                newest,
            })
        })
        .await?;
        Ok(prepared)
    }
}

/// The counts to carry into the part after one that stopped inside `ms`: what earlier parts
/// carried for `ms`, plus what this part read of it.
pub(super) fn carry(carried: &Carried, part: &[Fetched], ms: i64) -> Carried {
    let mut next: Carried = carried
        .iter()
        .filter(|((t, _), _)| *t == ms)
        .map(|(k, n)| (*k, *n))
        .collect();
    for r in part.iter().filter(|r| r.ts_ms == ms) {
        *next.entry((ms, r.hash)).or_insert(0) += 1;
    }
    next
}

/// A record that cannot be normalized is still forwarded — raw, with the reason — so a
/// parsing bug or a broken record never silently loses an audit event. Its exact bytes are
/// in `event.original` (text) and, when they are not UTF-8, in
/// `confluence.audit.original_base64`.
pub(super) fn write_error_doc(
    out: &mut Vec<u8>,
    record: &Fetched,
    id: &str,
    created: &str,
    error: &str,
    opts: &NormalizeOptions,
) {
    let base64 = record
        .undecodable
        .as_ref()
        .and_then(|u| u.raw_base64.clone());
    let mut doc = serde_json::json!({
        "@timestamp": paging::iso(record.ts_ms),
        "ecs": {"version": "9.4.0"},
        "event": {
            "id": id,
            "kind": "pipeline_error",
            "created": created,
            "module": "confluence",
            "dataset": "confluence.audit",
            "original": &*record.raw,
        },
        "error": {"message": error, "type": "confluence_record_parse"},
        "tags": ["confluence_parse_failure"],
        "data_stream": {"type": "logs", "dataset": "confluence.audit", "namespace": opts.namespace},
    });
    if let Some(b) = base64 {
        doc["confluence"] = serde_json::json!({"audit": {"original_base64": b}});
    }
    serde_json::to_writer(out, &doc).expect("writing JSON to a Vec");
}
