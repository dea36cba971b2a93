//! The checkpoint rules: where reading a file resumes, and when a file is not the one a
//! checkpoint was taken of.
//!
//! A checkpoint names a file by device + inode and a fingerprint of its first bytes (up to
//! [`FINGERPRINT_BYTES`]), and holds the offset after the last complete line queued. Each
//! rule below states the invariant it keeps: every line of a file is queued once, from the
//! start of the file to its last complete line, in order.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::discover::Found;
use crate::normalize::ContentHash;
use crate::state::FileCheckpoint;

/// How many of a file's first bytes identify it beyond its inode. Audit lines sort their
/// keys, so the first few hundred bytes of two files often agree (same action, same
/// author); the time comes at the end of a line. 4 KiB holds the whole first line of
/// nearly every file, and with it the time of its first record.
pub const FINGERPRINT_BYTES: u64 = 4096;

/// Identical records this far (ms) behind the newest one of a file are no longer counted
/// as twins: a twin is written right after its first (see [`TwinCounts`]).
pub const TWIN_SPAN_MS: i64 = 2_000;

/// What a stored checkpoint says about a file found now.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// The same file: go on at the checkpoint.
    Continue,
    /// Shorter than the checkpoint: truncated, to be read again from its start.
    Truncated,
    /// Its first bytes changed: rewritten in place or a reused inode; read from its start.
    Replaced,
}

/// BLAKE3 of the first `len` bytes of `file` (fewer when it is shorter), and how many.
/// Positional reads: the file's own position is left alone.
pub fn fingerprint(file: &File, len: u64) -> io::Result<(u64, [u8; 16])> {
    let mut bytes = vec![0u8; len as usize];
    let mut got = 0;
    while got < bytes.len() {
        match file.read_at(&mut bytes[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(&bytes[..got]).as_bytes()[..16]);
    Ok((got as u64, out))
}

impl FileCheckpoint {
    /// A checkpoint of a file seen for the first time, at `offset`.
    ///
    /// Invariant: `offset` is 0 or the end of a complete line (`start_at = "end"`): a line
    /// is never entered in its middle. (Later, an offset may also be the end of a file left
    /// behind whose last line never got its newline: see `tail::left_behind`.)
    pub fn first(found: &Found, file: &File, offset: u64) -> io::Result<FileCheckpoint> {
        let (fingerprint_len, fingerprint) = fingerprint(file, FINGERPRINT_BYTES)?;
        Ok(FileCheckpoint {
            path: found.path.display().to_string(),
            dev: found.dev,
            ino: found.ino,
            fingerprint_len,
            fingerprint,
            offset,
            twins: Vec::new(),
        })
    }

    /// Is `found` (same device and inode) still the file this checkpoint was taken of?
    ///
    /// Invariant: `Continue` only when the file is at least as long as the offset and its
    /// first bytes are those fingerprinted, so the bytes before the offset are the ones
    /// already queued (a file is only appended to). Anything else reads the file again
    /// from its start: a line may then be queued twice (when a file is rewritten with the
    /// same lines), never skipped.
    pub fn resume(&self, found: &Found, file: &File) -> io::Result<Resume> {
        if found.size < self.offset {
            return Ok(Resume::Truncated);
        }
        let (len, print) = fingerprint(file, self.fingerprint_len)?;
        if len != self.fingerprint_len || print != self.fingerprint {
            return Ok(Resume::Replaced);
        }
        Ok(Resume::Continue)
    }

    /// Start this file over from its start (after [`Resume::Truncated`] or `Replaced`).
    pub fn restart(&mut self, file: &File) -> io::Result<()> {
        let (len, print) = fingerprint(file, FINGERPRINT_BYTES)?;
        self.fingerprint_len = len;
        self.fingerprint = print;
        self.offset = 0;
        self.twins.clear();
        Ok(())
    }

    /// Cover more of the file's first bytes once it has them. Returns whether it changed.
    ///
    /// Invariant: only called after `resume` answered `Continue`, so the bytes already
    /// fingerprinted are unchanged and the longer fingerprint describes the same file.
    pub fn grow_fingerprint(&mut self, file: &File, size: u64) -> io::Result<bool> {
        if self.fingerprint_len >= FINGERPRINT_BYTES || size <= self.fingerprint_len {
            return Ok(false);
        }
        let (len, print) = fingerprint(file, FINGERPRINT_BYTES)?;
        self.fingerprint_len = len;
        self.fingerprint = print;
        Ok(true)
    }
}

/// The offset just after the last `\n` of `file` (of its first `size` bytes): where
/// `start_at = "end"` starts a file, so a half-written last line is read once complete.
pub fn end_of_last_line(file: &File, size: u64) -> io::Result<u64> {
    let mut end = size;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Occurrence counts of identical records of one file, for `event.id`.
///
/// Invariant: the occurrence given to a line depends only on the lines before it in the
/// file, never on where slices or restarts fell: the counts are stored with the checkpoint,
/// and an entry more than [`TWIN_SPAN_MS`] older than the newest record is ignored whether
/// or not it has been pruned yet.
#[derive(Debug, Default)]
pub struct TwinCounts {
    newest_ms: i64,
    counts: std::collections::HashMap<(i64, ContentHash), u32>,
}

impl TwinCounts {
    pub fn load(stored: &[(i64, [u8; 16], u32)]) -> TwinCounts {
        let counts: std::collections::HashMap<_, _> = stored
            .iter()
            .map(|(ms, h, n)| ((*ms, ContentHash(*h)), *n))
            .collect();
        let newest_ms = counts.keys().map(|(ms, _)| *ms).max().unwrap_or(i64::MIN);
        TwinCounts { newest_ms, counts }
    }

    /// The newest record time counted, if any.
    pub fn newest_ms(&self) -> Option<i64> {
        (self.newest_ms != i64::MIN).then_some(self.newest_ms)
    }

    /// The occurrence index of this record: 0 the first time, then 1, 2, …
    pub fn occurrence(&mut self, ts_ms: i64, hash: ContentHash) -> u32 {
        self.newest_ms = self.newest_ms.max(ts_ms);
        if ts_ms < self.newest_ms.saturating_sub(TWIN_SPAN_MS) {
            return 0;
        }
        let n = self.counts.entry((ts_ms, hash)).or_insert(0);
        *n += 1;
        *n - 1
    }

    /// The counts still in the span, to store with the checkpoint.
    pub fn store(&mut self) -> Vec<(i64, [u8; 16], u32)> {
        let floor = self.newest_ms.saturating_sub(TWIN_SPAN_MS);
        self.counts.retain(|(ms, _), _| *ms >= floor);
        let mut out: Vec<_> = self
            .counts
            .iter()
            .map(|((ms, h), n)| (*ms, h.0, *n))
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn found(path: &std::path::Path) -> Found {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).unwrap();
        Found {
            path: path.to_owned(),
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
        }
    }

    #[test]
    fn appended_continues_truncated_and_rewritten_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.audit.log");
        std::fs::write(&path, b"first line\n").unwrap();
        let file = File::open(&path).unwrap();
        let mut cp = FileCheckpoint::first(&found(&path), &file, 11).unwrap();
        assert_eq!(cp.fingerprint_len, 11);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"second\n")
            .unwrap();
        assert_eq!(cp.resume(&found(&path), &file).unwrap(), Resume::Continue);
        assert!(cp.grow_fingerprint(&file, 18).unwrap());
        assert_eq!(cp.fingerprint_len, 18);
        // Truncated (in place: same inode).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(5)
            .unwrap();
        assert_eq!(cp.resume(&found(&path), &file).unwrap(), Resume::Truncated);
        // Rewritten in place, as long as before but other bytes.
        std::fs::write(&path, b"other line\nsecond\n").unwrap();
        assert_eq!(cp.resume(&found(&path), &file).unwrap(), Resume::Replaced);
        cp.restart(&file).unwrap();
        assert_eq!((cp.offset, cp.fingerprint_len), (0, 18));
    }

    #[test]
    fn start_at_end_starts_after_the_last_complete_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let mut long = vec![b'x'; 100_000];
        long.extend_from_slice(b"\nhalf");
        std::fs::write(&path, &long).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(end_of_last_line(&file, long.len() as u64).unwrap(), 100_001);
        std::fs::write(&path, b"no newline").unwrap();
        assert_eq!(end_of_last_line(&file, 10).unwrap(), 0);
    }

    #[test]
    fn twin_counts_do_not_depend_on_where_they_were_stored() {
        let h = ContentHash([1; 16]);
        let mut whole = TwinCounts::default();
        let seq = [
            (1000, h),
            (1000, h),
            (1500, h),
            (1000, h),
            (5000, h),
            (1000, h),
        ];
        let all: Vec<u32> = seq.iter().map(|(t, h)| whole.occurrence(*t, *h)).collect();
        assert_eq!(all, [0, 1, 0, 2, 0, 0]);
        for cut in 0..seq.len() {
            let mut first = TwinCounts::default();
            let mut got: Vec<u32> = seq[..cut]
                .iter()
                .map(|(t, h)| first.occurrence(*t, *h))
                .collect();
            let mut second = TwinCounts::load(&first.store());
            got.extend(seq[cut..].iter().map(|(t, h)| second.occurrence(*t, *h)));
            assert_eq!(got, all, "stored after {cut} records");
        }
    }
}
