//! The stream on the reading thread alone: every input form, including a page printed over
//! several lines, which only the start of the input can be and which has to be read where
//! the input stands (element by element, through [`PageReader`]).

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::ops::Range;

use super::input::{ElementTooLong, Input, Line, PageReader};
use super::page::{self, PageSeed};
use super::work::{Item, LineKind, Tally, Work};
use super::{Output, RecordProblem, StreamError};

/// Lines read and normalized one at a time.
pub(super) struct Serial<'w, 'a> {
    work: &'w Work<'a>,
    limit: usize,
    /// Records read as lines (not page elements): once there are some, the input is NDJSON.
    line_records: u64,
    items: Vec<Item>,
}

impl<'w, 'a> Serial<'w, 'a> {
    pub(super) fn new(work: &'w Work<'a>, limit: usize) -> Self {
        Serial {
            work,
            limit,
            line_records: 0,
            items: Vec::new(),
        }
    }

    /// Read and normalize lines until the input ends (`true`) or, with `hand_over`, until
    /// a line was a record, so that the input is NDJSON from there on (`false`).
    pub(super) fn run<R: Read, W: Write>(
        &mut self,
        input: &mut Input<R>,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
        hand_over: bool,
    ) -> Result<bool, StreamError> {
        let mut flush = || output.borrow_mut().flush_before_read();
        loop {
            if hand_over && self.line_records > 0 {
                return Ok(false);
            }
            let line = match input.next_line(&mut flush) {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(true),
                Err(e) => return Err(output.borrow_mut().read_error(e)),
            };
            match line {
                Line::TooLong { bytes } => {
                    self.line_records += 1;
                    let problem = RecordProblem::TooLong {
                        bytes,
                        limit: self.limit,
                    };
                    tally.report(input.line_number(), problem);
                }
                Line::Text(range) => {
                    if let Err(e) = self.line(input, range, output, tally, &mut flush) {
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
    }

    /// One non-blank line: a record, or a page (on one line, or opening several).
    fn line<R: Read, W: Write>(
        &mut self,
        input: &mut Input<R>,
        range: Range<usize>,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
        flush: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<(), StreamError> {
        let line = input.line_number();
        let kind = {
            let mut out = output.borrow_mut();
            let text = input.bytes(range.clone());
            let may_open = self.line_records == 0;
            let kind = self
                .work
                .line(text, line, may_open, &mut out.buf, &mut self.items);
            tally.settle(self.items.drain(..), &mut out.buf);
            out.appended();
            kind
        };
        match kind {
            LineKind::Record => self.line_records += 1,
            LineKind::Page => {}
            LineKind::OpensValue => {
                input.rewind_to(&range);
                return self.multi_line_page(input, output, tally, flush, line);
            }
        }
        Ok(())
    }

    /// A page printed over several lines, read from where `input` stands.
    fn multi_line_page<R: Read, W: Write>(
        &mut self,
        input: &mut Input<R>,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
        flush: &mut dyn FnMut() -> io::Result<()>,
        line: u64,
    ) -> Result<(), StreamError> {
        let key = page::records_key(self.work.api);
        let element_bytes = Cell::new(0);
        let reader = PageReader {
            input,
            before_read: flush,
            element_bytes: &element_bytes,
        };
        let mut de = serde_json::Deserializer::from_reader(reader);
        let work = self.work;
        let mut on_record = |raw: &str| {
            let mut out = output.borrow_mut();
            let item = work
                .record(raw.as_bytes(), &mut out.buf)
                .unwrap_or_else(|problem| Item::Problem { line, problem });
            tally.settle([item], &mut out.buf);
            out.appended();
        };
        let seed = PageSeed {
            key,
            on_record: &mut on_record,
            element_bytes: &element_bytes,
        };
        match serde::de::DeserializeSeed::deserialize(seed, &mut de) {
            Ok(true) => Ok(()),
            Ok(false) => Err(StreamError::NotAPage { line, key }),
            Err(e) if e.is_io() => {
                let io = io::Error::from(e);
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<ElementTooLong>())
                {
                    Err(StreamError::PageRecordTooLong {
                        number: tally.summary.records + 1,
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
}
