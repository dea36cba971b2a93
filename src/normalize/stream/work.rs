//! What one line of input becomes, apart from the order it is settled in.
//!
//! A record's document does not depend on the records before it, except for its `event.id`:
//! the n-th identical record in one millisecond gets occurrence n. So [`Work`] writes every
//! document as a first occurrence and says where its id lies ([`Item::Document`]), and
//! [`Tally`] settles the items strictly in input order: counts the twins, patches the ids
//! of the later ones, numbers the records and reports the failures. The work can then run
//! on several threads (`parallel`) and the output is still byte for byte the one-thread
//! output.

use std::cell::Cell;

use super::page::{self, PageSeed};
use super::twins::Twins;
use super::{RecordError, RecordProblem, Summary};
use crate::normalize::{
    Api, ContentHash, NormalizeOptions, parse_record, patch_event_id, write_ecs_first,
};

/// One record of input, in input order.
#[derive(Debug)]
pub(super) enum Item {
    /// Its document was written (a line ending it included) as a first occurrence; the
    /// 32 hex digits of its id start at `id_at` in the output buffer.
    Document {
        ts_ms: i64,
        hash: ContentHash,
        id_at: usize,
    },
    /// It gave no document.
    Problem { line: u64, problem: RecordProblem },
}

/// What a line was.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LineKind {
    /// A record (normalized or failed): the input is NDJSON.
    Record,
    /// A whole page on one line; its records are the items.
    Page,
    /// Not a record, and the start of a JSON value that goes on over the next lines: maybe a
    /// page printed over several lines. Nothing was added for it.
    OpensValue,
}

/// The pure part of a stream: records to documents. Shared by every worker thread.
pub(super) struct Work<'a> {
    pub(super) api: Api,
    pub(super) opts: &'a NormalizeOptions,
    pub(super) created: &'a str,
}

impl Work<'_> {
    /// Normalize one record, appending its document and a newline to `out`.
    pub(super) fn record(&self, raw: &[u8], out: &mut Vec<u8>) -> Result<Item, RecordProblem> {
        // SIMD validation (std's was 3 % of the command); std's again only to say why not.
        let text = simdutf8::basic::from_utf8(raw).or_else(|_| std::str::from_utf8(raw))?;
        let record = parse_record(self.api, text)?;
        let start = out.len();
        match write_ecs_first(&record, self.created, self.opts, out) {
            Ok(id_at) => {
                out.push(b'\n');
                Ok(Item::Document {
                    ts_ms: record.timestamp_ms(),
                    hash: record.content_hash(),
                    id_at,
                })
            }
            Err(e) => {
                out.truncate(start);
                Err(e.into())
            }
        }
    }

    /// One non-blank line (number `line`): a record, or a page on one line. `may_open`:
    /// whether a line that starts a multi-line value should be said to ([`LineKind::
    /// OpensValue`]) rather than fail as a record (only the start of the input can be a
    /// pretty-printed page).
    pub(super) fn line(
        &self,
        text: &[u8],
        line: u64,
        may_open: bool,
        out: &mut Vec<u8>,
        items: &mut Vec<Item>,
    ) -> LineKind {
        let problem = match self.record(text, out) {
            Ok(item) => {
                items.push(item);
                return LineKind::Record;
            }
            Err(problem) => problem,
        };
        let opens_object = text.trim_ascii_start().starts_with(b"{");
        match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
            Ok(_) if opens_object => {
                let mut de = serde_json::Deserializer::from_slice(text);
                let mut on_record = |raw: &str| {
                    items.push(
                        self.record(raw.as_bytes(), out)
                            .unwrap_or_else(|problem| Item::Problem { line, problem }),
                    );
                };
                let seed = PageSeed {
                    key: page::records_key(self.api),
                    on_record: &mut on_record,
                    element_bytes: &Cell::new(0),
                };
                if serde::de::DeserializeSeed::deserialize(seed, &mut de).unwrap_or(false) {
                    return LineKind::Page;
                }
            }
            Err(e) if e.is_eof() && may_open && opens_page(text, self.api) => {
                return LineKind::OpensValue;
            }
            _ => {}
        }
        items.push(Item::Problem { line, problem });
        LineKind::Record
    }
}

/// Could `line`, which does not end its JSON value, be the first line of a pretty-printed
/// page? Only `{` alone or a line naming the records array: a truncated record is not.
fn opens_page(line: &[u8], api: Api) -> bool {
    let line = line.trim_ascii();
    let key = format!("\"{}\"", page::records_key(api));
    line == b"{" || (line.starts_with(b"{") && memchr::memmem::find(line, key.as_bytes()).is_some())
}

/// The ordered part of a stream: twins, record numbers, counts, error reports.
pub(super) struct Tally<'a> {
    twins: Twins,
    pub(super) summary: Summary,
    on_error: &'a mut dyn FnMut(&RecordError),
}

impl<'a> Tally<'a> {
    pub(super) fn new(on_error: &'a mut dyn FnMut(&RecordError)) -> Self {
        Tally {
            twins: Twins::default(),
            summary: Summary::default(),
            on_error,
        }
    }

    /// Settle `items`, the next records of the input, whose documents are in `out`.
    pub(super) fn settle(&mut self, items: impl IntoIterator<Item = Item>, out: &mut [u8]) {
        for item in items {
            match item {
                Item::Document { ts_ms, hash, id_at } => {
                    let occurrence = self.twins.occurrence(ts_ms, hash);
                    patch_event_id(out, id_at, &hash, occurrence);
                    self.summary.records += 1;
                    self.summary.documents += 1;
                }
                Item::Problem { line, problem } => self.report(line, problem),
            }
        }
    }

    /// The next record of the input gave no document.
    pub(super) fn report(&mut self, line: u64, problem: RecordProblem) {
        self.summary.records += 1;
        self.summary.failures += 1;
        (self.on_error)(&RecordError {
            number: self.summary.records,
            line,
            problem,
        });
    }
}
