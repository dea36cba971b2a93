//! The `normalize` command's stream: records in (NDJSON, or whole API response pages), ECS
//! documents out, one record at a time.
//!
//! It exists so that the command works on input of any size and on input that never ends
//! (`tail -f audit.log | confluence-audit-forwarder normalize --api file`): memory holds one
//! record (at most the record limit, like the sources' `max_response_bytes`) plus fixed
//! buffers, never the input; output is buffered and flushed whenever input would block.
//!
//! - Every non-blank line is a record, except a line holding a whole page (a JSON object
//!   with a `results` or `entities` array), whose elements are the records.
//! - A page printed over several lines is read element by element (`page`) when it opens
//!   the input (or follows another page); in NDJSON a line that does not parse is an error
//!   for that record only, and the next line is read.
//! - A line longer than the limit is skipped without being held whole, and reported.
//!
//! Errors are reported per record (number and line) through a callback and counted; only
//! reading, writing, or a multi-line page that stops being JSON end the stream.

mod input;
mod page;
mod twins;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};

use self::input::{ElementTooLong, Input, Line, PageReader};
use self::page::PageSeed;
use super::{Api, NormalizeError, NormalizeOptions, parse_record, write_ecs};
pub use twins::REMEMBERED as TWINS_REMEMBERED;

/// Output is written once this much is buffered (and before every read of input).
const OUTPUT_BUFFER: usize = 64 << 10;

/// How the stream reads.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// The longest record (a line, or one element of a page), bytes.
    pub max_record_bytes: usize,
    /// Bytes asked of the reader at a time.
    pub read_chunk: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_record_bytes: crate::config::DEFAULT_MAX_RESPONSE_BYTES as usize,
            read_chunk: 64 << 10,
        }
    }
}

/// What a finished stream did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records read (lines and page elements).
    pub records: u64,
    /// Documents written.
    pub documents: u64,
    /// Records reported as errors.
    pub failures: u64,
}

/// Why one record gave no document.
#[derive(Debug, thiserror::Error)]
pub enum RecordProblem {
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
    #[error("not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    #[error("{bytes} bytes, longer than the {limit}-byte record limit: skipped unread")]
    TooLong { bytes: u64, limit: usize },
}

/// One record that gave no document: which, where, why.
#[derive(Debug, thiserror::Error)]
#[error("record {number} (line {line}) of the input: {problem}")]
pub struct RecordError {
    pub number: u64,
    pub line: u64,
    pub problem: RecordProblem,
}

/// What ends a stream early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading the input: {0}")]
    Read(io::Error),
    #[error("writing the output: {0}")]
    Write(io::Error),
    #[error(
        "record {number} of the input, in the page that starts on line {line}, is longer than the {limit}-byte record limit: the rest of the page was not read"
    )]
    PageRecordTooLong {
        number: u64,
        line: u64,
        limit: usize,
    },
    #[error("the page that starts on line {line} of the input: {source}")]
    Page {
        line: u64,
        source: serde_json::Error,
    },
    #[error(
        "the JSON value that starts on line {line} of the input spans lines but is not an API page with a `{key}` array: records must be one per line"
    )]
    NotAPage { line: u64, key: &'static str },
}

/// Normalize every record of `input` to one ECS document per line on `output`. `created`
/// is `event.created`; each record that gives no document goes to `on_error`.
pub fn run<R: Read, W: Write>(
    api: Api,
    opts: &NormalizeOptions,
    limits: &StreamLimits,
    created: &str,
    input: R,
    output: W,
    on_error: &mut dyn FnMut(&RecordError),
) -> Result<Summary, StreamError> {
    let output = RefCell::new(Output {
        buf: Vec::with_capacity(OUTPUT_BUFFER + (4 << 10)),
        inner: output,
        failed: None,
    });
    let mut flush = || output.borrow_mut().flush_before_read();
    let mut stream = Stream {
        api,
        opts,
        created,
        limit: limits.max_record_bytes,
        twins: twins::Twins::default(),
        summary: Summary::default(),
        line_records: 0,
        on_error,
    };
    let mut input = Input::new(input, limits.read_chunk, limits.max_record_bytes);
    loop {
        let line = match input.next_line(&mut flush) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => return Err(output.borrow_mut().read_error(e)),
        };
        match line {
            Line::TooLong { bytes } => {
                stream.line_records += 1;
                let problem = RecordProblem::TooLong {
                    bytes,
                    limit: stream.limit,
                };
                stream.report(input.line_number(), problem);
            }
            Line::Text(range) => {
                if let Err(e) = stream.line(&mut input, range, &output, &mut flush) {
                    return Err(match e {
                        StreamError::Read(e) => output.borrow_mut().read_error(e),
                        other => other,
                    });
                }
            }
        }
        if let Some(e) = output.borrow_mut().failed.take() {
            return Err(StreamError::Write(e));
        }
    }
    let mut out = output.into_inner();
    out.flush_buffer().map_err(StreamError::Write)?;
    Ok(stream.summary)
}

/// Could `line`, which does not end its JSON value, be the first line of a pretty-printed
/// page? Only `{` alone or a line naming the records array: a truncated record is not.
fn opens_page(line: &[u8], api: Api) -> bool {
    let line = line.trim_ascii();
    let key = format!("\"{}\"", page::records_key(api));
    line == b"{" || (line.starts_with(b"{") && memchr::memmem::find(line, key.as_bytes()).is_some())
}

/// Documents on their way out.
struct Output<W> {
    buf: Vec<u8>,
    inner: W,
    /// The first write that failed: the stream ends with it at the next chance.
    failed: Option<io::Error>,
}

impl<W: Write> Output<W> {
    fn flush_buffer(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.inner.flush()
    }

    /// Flush, remembering a failure; fails itself (stopping the read) once output has.
    fn flush_before_read(&mut self) -> io::Result<()> {
        if self.failed.is_none()
            && let Err(e) = self.flush_buffer()
        {
            self.failed = Some(e);
        }
        match self.failed {
            Some(_) => Err(io::Error::other("the output failed")),
            None => Ok(()),
        }
    }

    /// Queue a document: `write` appends it (and is undone if it fails).
    fn document<E>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let start = self.buf.len();
        if let Err(e) = write(&mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        self.buf.push(b'\n');
        if self.buf.len() >= OUTPUT_BUFFER
            && self.failed.is_none()
            && let Err(e) = self.flush_buffer()
        {
            self.failed = Some(e);
        }
        Ok(())
    }

    /// A read error, unless it was the output failing first.
    fn read_error(&mut self, e: io::Error) -> StreamError {
        match self.failed.take() {
            Some(write) => StreamError::Write(write),
            None => StreamError::Read(e),
        }
    }
}

/// The state of one stream between records.
struct Stream<'a> {
    api: Api,
    opts: &'a NormalizeOptions,
    created: &'a str,
    limit: usize,
    twins: twins::Twins,
    summary: Summary,
    /// Records read as lines (not page elements): once there are some, the input is NDJSON.
    line_records: u64,
    on_error: &'a mut dyn FnMut(&RecordError),
}

impl Stream<'_> {
    fn report(&mut self, line: u64, problem: RecordProblem) {
        self.summary.records += 1;
        self.summary.failures += 1;
        (self.on_error)(&RecordError {
            number: self.summary.records,
            line,
            problem,
        });
    }

    /// One non-blank line: a record, or a page (on one line, or opening several).
    fn line<R: Read, W: Write>(
        &mut self,
        input: &mut Input<R>,
        range: std::ops::Range<usize>,
        output: &RefCell<Output<W>>,
        flush: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<(), StreamError> {
        let line = input.line_number();
        let text = input.bytes(range.clone());
        let problem = match self.record(text, output) {
            Ok(()) => {
                self.line_records += 1;
                self.summary.records += 1;
                return Ok(());
            }
            Err(problem) => problem,
        };
        let opens_object = text.trim_ascii_start().starts_with(b"{");
        match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
            Ok(_) if opens_object => {
                let mut de = serde_json::Deserializer::from_slice(text);
                let page = self.with_page_seed(output, line, &Cell::new(0), |seed| {
                    serde::de::DeserializeSeed::deserialize(seed, &mut de)
                });
                if page.unwrap_or(false) {
                    return Ok(());
                }
            }
            Err(e) if e.is_eof() && self.line_records == 0 && opens_page(text, self.api) => {
                input.rewind_to(&range);
                return self.multi_line_page(input, output, flush, line);
            }
            _ => {}
        }
        self.line_records += 1;
        self.report(line, problem);
        Ok(())
    }

    /// A page printed over several lines, read from where `input` stands.
    fn multi_line_page<R: Read, W: Write>(
        &mut self,
        input: &mut Input<R>,
        output: &RefCell<Output<W>>,
        flush: &mut dyn FnMut() -> io::Result<()>,
        line: u64,
    ) -> Result<(), StreamError> {
        let key = page::records_key(self.api);
        let element_bytes = Cell::new(0);
        let reader = PageReader {
            input,
            before_read: flush,
            element_bytes: &element_bytes,
        };
        let mut de = serde_json::Deserializer::from_reader(reader);
        let page = self.with_page_seed(output, line, &element_bytes, |seed| {
            serde::de::DeserializeSeed::deserialize(seed, &mut de)
        });
        match page {
            Ok(true) => Ok(()),
            Ok(false) => Err(StreamError::NotAPage { line, key }),
            Err(e) if e.is_io() => {
                let io = io::Error::from(e);
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<ElementTooLong>())
                {
                    Err(StreamError::PageRecordTooLong {
                        number: self.summary.records + 1,
                        line,
                        limit: self.limit,
                    })
                } else {
                    Err(StreamError::Read(io))
                }
            }
            Err(source) => Err(StreamError::Page { line, source }),
        }
    }

    /// Run `read` with a [`PageSeed`] whose records go through [`Stream::record`].
    fn with_page_seed<W: Write, T>(
        &mut self,
        output: &RefCell<Output<W>>,
        line: u64,
        element_bytes: &Cell<usize>,
        read: impl FnOnce(PageSeed<'_>) -> T,
    ) -> T {
        let key = page::records_key(self.api);
        let mut on_record = |raw: &str| match self.record(raw.as_bytes(), output) {
            Ok(()) => self.summary.records += 1,
            Err(problem) => self.report(line, problem),
        };
        read(PageSeed {
            key,
            on_record: &mut on_record,
            element_bytes,
        })
    }

    /// Normalize one record and queue its document. The caller counts it.
    fn record<W: Write>(
        &mut self,
        raw: &[u8],
        output: &RefCell<Output<W>>,
    ) -> Result<(), RecordProblem> {
        let text = std::str::from_utf8(raw)?;
        let record = parse_record(self.api, text)?;
        let occurrence = self
            .twins
            .occurrence(record.timestamp_ms(), record.content_hash());
        output.borrow_mut().document(|buf| {
            write_ecs(&record, occurrence, self.created, self.opts, buf).map(drop)
        })?;
        self.summary.documents += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
