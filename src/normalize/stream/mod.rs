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
//!
//! [`serial`] reads until the input is known to be NDJSON (a first line that is a record);
//! from there [`parallel`] normalizes batches of lines on worker threads when
//! [`StreamLimits::workers`] allows, and [`work::Tally`] settles them in input order, so
//! the output is the same as on one thread, `event.id` included.

mod input;
mod page;
mod parallel;
mod serial;
mod twins;
mod work;

use std::cell::RefCell;
use std::io::{self, Read, Write};

use self::input::Input;
use self::work::{Tally, Work};
use super::{Api, NormalizeError, NormalizeOptions};
pub use twins::REMEMBERED as TWINS_REMEMBERED;

/// Output is written once this much is buffered (and before every read of input).
const OUTPUT_BUFFER: usize = 64 << 10;

/// How the stream reads and works.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// The longest record (a line, or one element of a page), bytes.
    pub max_record_bytes: usize,
    /// Bytes asked of the reader at a time.
    pub read_chunk: usize,
    /// Threads that normalize records once the input is known to be NDJSON; 1: the reading
    /// thread does everything. The output is the same either way.
    pub workers: usize,
    /// Would the next read of the input return at once (data, or its end, waiting)? Output
    /// is flushed before every read that would block; without this probe, before every read.
    pub input_ready: Option<fn() -> bool>,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_record_bytes: crate::config::DEFAULT_MAX_RESPONSE_BYTES as usize,
            read_chunk: 64 << 10,
            workers: 1,
            input_ready: None,
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
    #[error("a thread normalizing records stopped unexpectedly (a bug: please report it)")]
    Worker,
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
    let work = Work { api, opts, created };
    let mut tally = Tally::new(on_error);
    let mut input = Input::new(input, limits.read_chunk, limits.max_record_bytes);
    let mut serial = serial::Serial::new(&work, limits.max_record_bytes);
    let ended = serial.run(&mut input, &output, &mut tally, limits.workers > 1)?;
    if !ended {
        std::thread::scope(|scope| {
            parallel::run(scope, &work, limits, &mut input, &output, &mut tally)
        })?;
    }
    let mut out = output.into_inner();
    out.flush_buffer().map_err(StreamError::Write)?;
    Ok(tally.summary)
}

/// [`StreamLimits::input_ready`] for the process's standard input: would a read return at
/// once? (`poll` without waiting; a failed poll says yes, and the read reports the error.)
pub fn stdin_ready() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call, and no wait.
    unsafe { libc::poll(&mut fd, 1, 0) != 0 }
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

    /// Documents were appended to `buf`: write them out once enough is buffered.
    fn appended(&mut self) {
        if self.buf.len() >= OUTPUT_BUFFER
            && self.failed.is_none()
            && let Err(e) = self.flush_buffer()
        {
            self.failed = Some(e);
        }
    }

    /// Settled documents from elsewhere (a worker's batch).
    fn append(&mut self, documents: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.buf.len() + documents.len() < OUTPUT_BUFFER {
            self.buf.extend_from_slice(documents);
            return;
        }
        let written = if self.buf.is_empty() {
            Ok(())
        } else {
            let w = self.inner.write_all(&self.buf);
            self.buf.clear();
            w
        };
        if let Err(e) = written.and_then(|()| self.inner.write_all(documents)) {
            self.failed = Some(e);
        }
    }

    /// A read error, unless it was the output failing first.
    fn read_error(&mut self, e: io::Error) -> StreamError {
        match self.failed.take() {
            Some(write) => StreamError::Write(write),
            None => StreamError::Read(e),
        }
    }
}

#[cfg(test)]
mod tests;
