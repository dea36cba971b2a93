//! Reading complete lines of one file from a byte offset, in bounded slices.
//!
//! A line counts only once its `\n` is there: a half-written last line is left for the next
//! read (its start is where the next read begins). A line longer than the record limit is
//! never held: its first bytes are kept for the `pipeline_error` document and the rest is
//! skipped as it streams past. Memory per read: the lines handed out (at most `max_lines`,
//! and about `max_bytes` of them) plus one read buffer.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};

/// How much of an over-long line is kept for its error document.
pub const TOO_LONG_PREFIX: usize = 4096;

/// One complete line of a file (without its `\n`).
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(Vec<u8>),
    /// Longer than the limit: its first [`TOO_LONG_PREFIX`] bytes, and its full length.
    TooLong {
        prefix: Vec<u8>,
        bytes: u64,
    },
}

/// What one read of a file gave.
#[derive(Debug, Default)]
pub struct Lines {
    pub lines: Vec<Line>,
    /// The offset after the last complete line read: where the next read starts.
    pub next_offset: u64,
    /// Whether the read stopped at the end of the file (else at `max_lines`/`max_bytes`).
    pub at_end: bool,
    /// At the end: the bytes after the last newline (a line not finished yet, or never to be
    /// finished in a file left behind), and the file's end offset. Not in `lines`.
    pub unterminated: Option<(Line, u64)>,
}

/// Read the complete lines of `file` from `offset`: at most `max_lines`, stopping after the
/// line that passes `max_bytes`; lines longer than `max_line` are cut.
pub fn read_lines(
    file: &File,
    offset: u64,
    max_lines: usize,
    max_bytes: u64,
    max_line: usize,
) -> io::Result<Lines> {
    let mut reader = BufReader::with_capacity(64 << 10, file);
    reader.seek(SeekFrom::Start(offset))?;
    let mut out = Lines {
        next_offset: offset,
        ..Lines::default()
    };
    let mut pos = offset;
    let mut line: Vec<u8> = Vec::new();
    let mut line_bytes = 0u64;
    let mut read_bytes = 0u64;
    while out.lines.len() < max_lines && read_bytes < max_bytes {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            out.at_end = true;
            if line_bytes > 0 {
                let text = std::mem::take(&mut line);
                let last = if line_bytes as usize > max_line {
                    Line::TooLong {
                        prefix: text,
                        bytes: line_bytes,
                    }
                } else {
                    Line::Text(strip_cr(text))
                };
                out.unterminated = Some((last, pos));
            }
            break;
        }
        let (take, complete) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let body = if complete { &buf[..take - 1] } else { buf };
        line_bytes += body.len() as u64;
        let room = if line_bytes as usize > max_line {
            TOO_LONG_PREFIX.saturating_sub(line.len())
        } else {
            body.len()
        };
        if line_bytes as usize > max_line && line.len() > TOO_LONG_PREFIX {
            line.truncate(TOO_LONG_PREFIX);
            line.shrink_to_fit();
        }
        line.extend_from_slice(&body[..room.min(body.len())]);
        reader.consume(take);
        pos += take as u64;
        if complete {
            read_bytes += line_bytes + 1;
            let text = std::mem::take(&mut line);
            out.lines.push(if line_bytes as usize > max_line {
                Line::TooLong {
                    prefix: text,
                    bytes: line_bytes,
                }
            } else {
                Line::Text(strip_cr(text))
            });
            line_bytes = 0;
            out.next_offset = pos;
        }
    }
    Ok(out)
}

fn strip_cr(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let read = File::open(f.path()).unwrap();
        (f, read)
    }

    #[test]
    fn a_half_written_line_waits_for_its_newline() {
        let (mut w, r) = file_with(b"one\ntw");
        let got = read_lines(&r, 0, 10, u64::MAX, 100).unwrap();
        assert_eq!(got.lines, [Line::Text(b"one".to_vec())]);
        assert_eq!(got.next_offset, 4);
        assert!(got.at_end);
        w.write_all(b"o\r\nthree\n").unwrap();
        let got = read_lines(&r, got.next_offset, 10, u64::MAX, 100).unwrap();
        assert_eq!(
            got.lines,
            [Line::Text(b"two".to_vec()), Line::Text(b"three".to_vec())]
        );
        assert_eq!(got.next_offset, 15);
    }

    #[test]
    fn reads_stop_at_the_line_and_byte_bounds_on_a_line_boundary() {
        let (_w, r) = file_with(b"a\nbb\nccc\ndddd\n");
        let got = read_lines(&r, 0, 2, u64::MAX, 100).unwrap();
        assert_eq!(got.lines.len(), 2);
        assert_eq!(got.next_offset, 5);
        assert!(!got.at_end);
        let got = read_lines(&r, 5, 10, 3, 100).unwrap();
        assert_eq!(got.lines, [Line::Text(b"ccc".to_vec())]);
        assert_eq!(got.next_offset, 9);
    }

    #[test]
    fn an_over_long_line_is_cut_not_held_and_the_next_line_is_read() {
        let mut bytes = vec![b'x'; 20_000];
        bytes.extend_from_slice(b"\nok\n");
        let (_w, r) = file_with(&bytes);
        let got = read_lines(&r, 0, 10, u64::MAX, 10_000).unwrap();
        match &got.lines[0] {
            Line::TooLong { prefix, bytes } => {
                assert_eq!(*bytes, 20_000);
                assert_eq!(prefix.len(), TOO_LONG_PREFIX);
            }
            other => panic!("expected TooLong, got {other:?}"),
        }
        assert_eq!(got.lines[1], Line::Text(b"ok".to_vec()));
        assert_eq!(got.next_offset, 20_004);
    }
}
