//! The input side of a `normalize` stream: lines read through one reusable buffer, so
//! memory holds one record (bounded by the record limit) and one read chunk, never the
//! input. Before every read that may block, the caller's hook runs (the stream flushes its
//! output there), which is what makes `tail -f … | normalize` print line by line.
//!
//! [`PageReader`] lends the same buffer to serde for a page that spans lines, byte by byte,
//! counting each element's bytes against the record limit.

use std::cell::Cell;
use std::io::{self, Read};
use std::ops::Range;

/// Above this, a buffer grown for one long line is given back once that line is done.
const KEEP_AT_MOST: usize = 1 << 20;

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// Its bytes in the buffer (without `\n` or `\r\n`), valid until the next read.
    Text(Range<usize>),
    /// Longer than the limit: skipped, and never held whole. `bytes` is its length.
    TooLong { bytes: u64 },
}

/// Buffered lines of a reader.
pub(super) struct Input<R> {
    reader: R,
    buf: Vec<u8>,
    /// Bytes before `keep` may be dropped at the next read.
    keep: usize,
    /// Next byte to hand out.
    pos: usize,
    /// End of the bytes read.
    end: usize,
    eof: bool,
    chunk: usize,
    max_record: usize,
    /// Lines handed out (and newlines read through [`PageReader`]).
    line: u64,
}

impl<R: Read> Input<R> {
    /// Reads `chunk` bytes at a time; a line longer than `max_record` is skipped.
    pub(super) fn new(reader: R, chunk: usize, max_record: usize) -> Self {
        let chunk = chunk.max(1);
        Input {
            reader,
            buf: vec![0; chunk],
            keep: 0,
            pos: 0,
            end: 0,
            eof: false,
            chunk,
            max_record,
            line: 0,
        }
    }

    /// The line number of the last line handed out (1-based).
    pub(super) fn line_number(&self) -> u64 {
        self.line
    }

    pub(super) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Hand out `range` (from [`Line::Text`]) again: the next read starts there.
    pub(super) fn rewind_to(&mut self, range: &Range<usize>) {
        self.pos = range.start;
        self.keep = range.start;
        self.line -= 1;
    }

    /// The next non-blank line, `None` at the end of input. `before_read` runs before every
    /// read of the underlying reader.
    pub(super) fn next_line(
        &mut self,
        before_read: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<Option<Line>> {
        loop {
            self.keep = self.pos;
            // Bytes of this line already dropped (too long), and how far it was searched.
            let mut dropped = 0u64;
            let mut searched = self.pos;
            let newline = loop {
                if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..self.end]) {
                    break Some(searched + i);
                }
                searched = self.end;
                if self.end - self.keep > self.max_record {
                    dropped += (self.end - self.keep) as u64;
                    self.keep = self.end;
                }
                if self.eof {
                    break None;
                }
                let shift = self.fill(before_read)?;
                searched -= shift;
            };
            let stop = newline.unwrap_or(self.end);
            if newline.is_none() && stop == self.keep && dropped == 0 {
                return Ok(None);
            }
            self.pos = newline.map_or(stop, |n| n + 1);
            self.line += 1;
            let start = self.keep;
            if dropped > 0 || stop - start > self.max_record {
                return Ok(Some(Line::TooLong {
                    bytes: dropped + (stop - start) as u64,
                }));
            }
            let text = trim_cr(&self.buf[start..stop]);
            if !text.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(Line::Text(start..start + text.len())));
            }
        }
    }

    /// Read more: drop what is not kept, grow if full, read one chunk. Returns how far the
    /// kept bytes moved towards the start.
    fn fill(&mut self, before_read: &mut dyn FnMut() -> io::Result<()>) -> io::Result<usize> {
        let shift = self.keep;
        if shift > 0 {
            self.buf.copy_within(shift..self.end, 0);
            self.end -= shift;
            self.pos = self.pos.saturating_sub(shift);
            self.keep = 0;
        }
        let wanted = self.end + self.chunk;
        if self.buf.len() > KEEP_AT_MOST && wanted <= KEEP_AT_MOST {
            self.buf.truncate(wanted);
            self.buf.shrink_to_fit();
        } else if self.buf.len() < wanted {
            self.buf.resize(
                wanted
                    .max(self.buf.len() * 2)
                    .min(self.max_record + 2 * self.chunk),
                0,
            );
            if self.buf.len() < wanted {
                self.buf.resize(wanted, 0);
            }
        }
        before_read()?;
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            return Ok(shift);
        }
    }
}

/// Drop one trailing `\r` (CRLF input).
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The input as a [`Read`] for serde, from the current position, with the bytes since
/// `element_bytes` was last reset counted against the record limit.
pub(super) struct PageReader<'a, R> {
    pub(super) input: &'a mut Input<R>,
    pub(super) before_read: &'a mut dyn FnMut() -> io::Result<()>,
    /// Bytes read since the current page element began.
    pub(super) element_bytes: &'a Cell<usize>,
}

/// Why a page stopped being read: one element passed the record limit.
#[derive(Debug, thiserror::Error)]
#[error("a record of the page is longer than {limit} bytes")]
pub(super) struct ElementTooLong {
    pub(super) limit: usize,
}

impl<R: Read> Read for PageReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let input = &mut *self.input;
        if input.pos == input.end && !input.eof {
            input.keep = input.pos;
            input.fill(self.before_read)?;
        }
        let n = out.len().min(input.end - input.pos);
        let bytes = &input.buf[input.pos..input.pos + n];
        out[..n].copy_from_slice(bytes);
        input.line += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        input.pos += n;
        let seen = self.element_bytes.get() + n;
        self.element_bytes.set(seen);
        if seen > input.max_record {
            return Err(io::Error::other(ElementTooLong {
                limit: input.max_record,
            }));
        }
        Ok(n)
    }
}
