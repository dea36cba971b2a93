//! The files of one poll cycle: found, matched with their checkpoints, read slice by slice.
//!
//! [`Tail::open`] applies the checkpoint rules to what the globs find now: a known file goes
//! on at its checkpoint (or from its start when truncated or replaced, logged); a new file
//! starts at 0 (at its last complete line on the first start with `start_at = "end"`); a
//! checkpoint whose file is gone (the 100-file retention) is forgotten. [`Tail::read_slice`]
//! then reads files in order, each to its current end before the next, so a rotated file is
//! finished before its successor and a node's events keep their order.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use super::checkpoint::{Resume, TwinCounts, end_of_last_line};
use super::discover::{Found, discover};
use super::documents::{DocumentRules, LineCounts};
use super::lines::read_lines;
use crate::state::{FileCheckpoint, FileSliceCommit};

/// A file could not be read: the cycle stops there (later files wait, keeping the order).
#[derive(Debug, thiserror::Error)]
#[error("audit log file {path}: {source}")]
pub struct TailError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// What happened to a file that the checkpoints did not expect, for the log and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    Truncated,
    Replaced,
}

/// One file being read.
struct Tracked {
    found: Found,
    checkpoint: FileCheckpoint,
    twins: TwinCounts,
    /// The checkpoint changed since it was last committed.
    dirty: bool,
}

/// The files of one cycle and where each stands.
pub struct Tail {
    files: Vec<Tracked>,
    /// Checkpoints of files gone, dropped with the next commit.
    forget: Vec<(u64, u64)>,
    /// The first file not yet read to its end in this cycle.
    next: usize,
    /// Bytes after the checkpoints when the cycle began (progress).
    pub backlog_bytes: u64,
}

/// One slice read: its commit and what it held.
pub struct Slice {
    pub commit: FileSliceCommit,
    pub counts: LineCounts,
    pub bytes: u64,
}

impl Slice {
    /// Nothing to commit: no line read, no checkpoint moved or forgotten.
    pub fn is_empty(&self) -> bool {
        self.counts.lines == 0
            && self.commit.checkpoints.is_empty()
            && self.commit.forget.is_empty()
    }
}

/// Is `file` still the one `t`'s checkpoint describes, after a read? (See
/// [`FileCheckpoint::resume`].)
fn still_the_same(t: &Tracked, file: &File) -> io::Result<bool> {
    let now = Found {
        size: file.metadata()?.len(),
        ..t.found.clone()
    };
    Ok(t.checkpoint.resume(&now, file)? == Resume::Continue)
}

/// How long a file must have gone unwritten, with a newer one in its directory, before a
/// line it ends without a newline is taken as never to be finished.
const LEFT_BEHIND_AFTER: Duration = Duration::from_secs(30);

/// Is `files[i]` left behind — a newer file (later in read order) in its directory, and
/// not written for [`LEFT_BEHIND_AFTER`]? Confluence writes one file per node at a time
/// and whole lines, so its last line will not be finished: a crash cut it.
fn left_behind(files: &[Tracked], i: usize, file: &File) -> bool {
    let dir = files[i].found.path.parent();
    let newer = files[i + 1..].iter().any(|t| t.found.path.parent() == dir);
    let idle = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age >= LEFT_BEHIND_AFTER);
    newer && idle
}

impl Tail {
    /// Find the files and match them with `stored`. `skip_existing`: the first start with
    /// `start_at = "end"`, where files already there start at their last complete line.
    pub fn open(
        paths: &[String],
        stored: Vec<FileCheckpoint>,
        skip_existing: bool,
        on_anomaly: &dyn Fn(Anomaly),
    ) -> Result<Tail, TailError> {
        let found = discover(paths);
        let mut tail = Tail {
            files: Vec::with_capacity(found.len()),
            forget: Vec::new(),
            next: 0,
            backlog_bytes: 0,
        };
        for c in &stored {
            if !found.iter().any(|f| (f.dev, f.ino) == (c.dev, c.ino)) {
                tracing::info!(path = %c.path, offset = c.offset, "audit log file gone (retention or moved away): its checkpoint is forgotten");
                tail.forget.push((c.dev, c.ino));
            }
        }
        for f in found {
            let file = match File::open(&f.path) {
                Ok(file) => file,
                // Deleted between the glob and now: forgotten next cycle.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(TailError {
                        path: f.path,
                        source,
                    });
                }
            };
            let known = stored.iter().find(|c| (c.dev, c.ino) == (f.dev, f.ino));
            let path = f.path.clone();
            let tracked = Self::track(f, &file, known, &stored, skip_existing, on_anomaly)
                .map_err(|source| TailError { path, source })?;
            tail.backlog_bytes += tracked.found.size.saturating_sub(tracked.checkpoint.offset);
            tail.files.push(tracked);
        }
        Ok(tail)
    }

    /// A found file with the checkpoint the rules give it.
    fn track(
        found: Found,
        file: &File,
        known: Option<&FileCheckpoint>,
        stored: &[FileCheckpoint],
        skip_existing: bool,
        on_anomaly: &dyn Fn(Anomaly),
    ) -> io::Result<Tracked> {
        let path = found.path.display().to_string();
        let Some(known) = known else {
            let offset = if skip_existing {
                end_of_last_line(file, found.size)?
            } else {
                0
            };
            if stored.iter().any(|c| c.path == path) {
                tracing::warn!(path = %path, "audit log file replaced under the same name (a new inode): read from its start");
                on_anomaly(Anomaly::Replaced);
            }
            let checkpoint = FileCheckpoint::first(&found, file, offset)?;
            return Ok(Tracked {
                found,
                checkpoint,
                twins: TwinCounts::default(),
                dirty: true,
            });
        };
        let mut checkpoint = known.clone();
        checkpoint.path = path.clone();
        let mut dirty = checkpoint.path != known.path;
        match checkpoint.resume(&found, file)? {
            Resume::Continue => dirty |= checkpoint.grow_fingerprint(file, found.size)?,
            why => {
                let anomaly = if why == Resume::Truncated {
                    tracing::warn!(path = %path, size = found.size, offset = known.offset, "audit log file truncated: read again from its start");
                    Anomaly::Truncated
                } else {
                    tracing::warn!(path = %path, "audit log file rewritten or its inode reused (its first bytes changed): read from its start");
                    Anomaly::Replaced
                };
                on_anomaly(anomaly);
                checkpoint.restart(file)?;
                dirty = true;
            }
        }
        let twins = TwinCounts::load(&checkpoint.twins);
        Ok(Tracked {
            found,
            checkpoint,
            twins,
            dirty,
        })
    }

    /// Read the next slice: complete lines of the files in order, each to its end before
    /// the next, up to `max_lines` lines and about `max_bytes` bytes.
    pub fn read_slice(
        &mut self,
        rules: &DocumentRules<'_>,
        max_lines: usize,
        max_bytes: u64,
    ) -> Result<Slice, TailError> {
        let mut slice = Slice {
            commit: FileSliceCommit {
                forget: std::mem::take(&mut self.forget),
                ..FileSliceCommit::default()
            },
            counts: LineCounts::default(),
            bytes: 0,
        };
        while self.next < self.files.len() {
            let lines_left = max_lines.saturating_sub(slice.counts.lines as usize);
            if lines_left == 0 || slice.bytes >= max_bytes {
                break;
            }
            let t = &mut self.files[self.next];
            let file = match File::open(&t.found.path) {
                Ok(file) => file,
                // Deleted since it was found: the next cycle forgets it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.next += 1;
                    continue;
                }
                Err(source) => {
                    return Err(TailError {
                        path: t.found.path.clone(),
                        source,
                    });
                }
            };
            let same = file
                .metadata()
                .is_ok_and(|m| (m.dev(), m.ino()) == (t.found.dev, t.found.ino));
            if !same {
                // Replaced since it was found: the next cycle sees the new file.
                self.next += 1;
                continue;
            }
            let read = read_lines(
                &file,
                t.checkpoint.offset,
                lines_left,
                max_bytes - slice.bytes,
                rules.max_line,
            )
            .map_err(|source| TailError {
                path: t.found.path.clone(),
                source,
            })?;
            if !still_the_same(t, &file).map_err(|source| TailError {
                path: t.found.path.clone(),
                source,
            })? {
                // Truncated or rewritten while it was read: what was read may be neither
                // file's lines. Dropped; the next cycle reads the file from its start.
                self.next += 1;
                continue;
            }
            let mut read = read;
            if let Some((last, end)) = read.unterminated.take()
                && left_behind(&self.files, self.next, &file)
            {
                let t = &self.files[self.next];
                tracing::warn!(path = %t.found.path.display(), bytes = end - read.next_offset, "audit log file left behind (a newer one is written in its directory) ends without a newline: its last line is forwarded as it is — a pipeline_error document unless it is a whole record");
                read.lines.push(last);
                read.next_offset = end;
            }
            let t = &mut self.files[self.next];
            slice.bytes += read.next_offset - t.checkpoint.offset;
            rules.documents(
                &read.lines,
                &mut t.twins,
                &mut slice.commit.events,
                &mut slice.counts,
            );
            if read.next_offset != t.checkpoint.offset {
                t.checkpoint.offset = read.next_offset;
                t.checkpoint.twins = t.twins.store();
                t.dirty = true;
            }
            if read.at_end {
                self.next += 1;
            }
        }
        for t in self.files.iter_mut().filter(|t| t.dirty) {
            t.dirty = false;
            slice.commit.checkpoints.push(t.checkpoint.clone());
        }
        slice.commit.newest_ms = slice.counts.newest_ms;
        Ok(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::NormalizeOptions;
    use std::io::Write;

    fn line(n: i64) -> String {
        format!(
            "{{\"auditType\":{{\"action\":\"User created\",\"category\":\"Users and groups\"}},\"author\":{{\"id\":\"u{n}\",\"name\":\"a\",\"type\":\"user\"}},\"timestamp\":{{\"epochSecond\":{},\"nano\":0}},\"version\":\"1.0\"}}\n",
            1_700_000_000 + n
        )
    }

    fn read_all(tail: &mut Tail) -> (Vec<FileSliceCommit>, u64) {
        let opts = NormalizeOptions::default();
        let rules = DocumentRules::every_line(&opts, 1 << 20);
        let (mut commits, mut lines) = (Vec::new(), 0);
        loop {
            let slice = tail.read_slice(&rules, 2, u64::MAX).unwrap();
            if slice.is_empty() {
                return (commits, lines);
            }
            lines += slice.counts.lines;
            commits.push(slice.commit);
        }
    }

    #[test]
    fn files_are_read_in_order_each_to_its_end_and_gone_ones_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let glob = vec![format!("{}/*.audit.log", dir.path().display())];
        let (old, new) = (
            dir.path().join("20240101-00000.audit.log"),
            dir.path().join("20240102-00000.audit.log"),
        );
        std::fs::write(&new, line(3)).unwrap();
        std::fs::write(&old, [line(1), line(2), line(0)[..20].to_owned()].concat()).unwrap();
        let mut tail = Tail::open(&glob, Vec::new(), false, &|_| {}).unwrap();
        let (commits, lines) = read_all(&mut tail);
        assert_eq!(lines, 3);
        let first: Vec<_> = commits[0].events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(first.len(), 2, "the old file's two complete lines first");
        let stored: Vec<FileCheckpoint> =
            commits
                .iter()
                .flat_map(|c| c.checkpoints.clone())
                .fold(Vec::new(), |mut acc, c| {
                    acc.retain(|x: &FileCheckpoint| x.ino != c.ino);
                    acc.push(c);
                    acc
                });
        let old_cp = stored
            .iter()
            .find(|c| c.path.ends_with("20240101-00000.audit.log"));
        assert_eq!(
            old_cp.unwrap().offset,
            (line(1).len() + line(2).len()) as u64
        );
        std::fs::remove_file(&old).unwrap();
        let mut tail = Tail::open(&glob, stored, false, &|_| {}).unwrap();
        let (commits, lines) = read_all(&mut tail);
        assert_eq!(lines, 0);
        assert_eq!(commits.len(), 1, "one commit forgets the deleted file");
        assert_eq!(commits[0].forget.len(), 1);
    }

    #[test]
    fn a_last_line_without_newline_in_a_file_left_behind_is_forwarded_once() {
        let dir = tempfile::tempdir().unwrap();
        let glob = vec![format!("{}/*.audit.log", dir.path().display())];
        let (old, new) = (
            dir.path().join("20240101-00000.audit.log"),
            dir.path().join("20240102-00000.audit.log"),
        );
        let cut = line(0)[..20].to_owned();
        std::fs::write(&new, line(3)).unwrap();
        std::fs::write(&old, [line(1), line(2), cut.clone()].concat()).unwrap();
        let minutes_ago = std::time::SystemTime::now() - Duration::from_secs(120);
        let f = std::fs::OpenOptions::new().write(true).open(&old).unwrap();
        f.set_modified(minutes_ago).unwrap();
        let mut tail = Tail::open(&glob, Vec::new(), false, &|_| {}).unwrap();
        let (commits, lines) = read_all(&mut tail);
        assert_eq!(lines, 4, "the cut line too");
        let docs: Vec<serde_json::Value> = commits
            .iter()
            .flat_map(|c| &c.events)
            .map(|e| serde_json::from_slice(&e.doc).unwrap())
            .collect();
        let errors: Vec<_> = docs
            .iter()
            .filter(|d| d["event"]["kind"] == "pipeline_error")
            .collect();
        assert_eq!(errors.len(), 1, "{docs:?}");
        assert_eq!(errors[0]["event"]["original"], cut.as_str());
        let old_cp = commits
            .iter()
            .flat_map(|c| c.checkpoints.iter())
            .rfind(|c| c.path.ends_with("20240101-00000.audit.log"))
            .unwrap();
        assert_eq!(old_cp.offset, std::fs::metadata(&old).unwrap().len());
        let stored: Vec<FileCheckpoint> = commits
            .iter()
            .flat_map(|c| c.checkpoints.clone())
            .rev()
            .fold(Vec::new(), |mut acc, c| {
                if !acc.iter().any(|x: &FileCheckpoint| x.ino == c.ino) {
                    acc.push(c);
                }
                acc
            });
        let mut tail = Tail::open(&glob, stored, false, &|_| {}).unwrap();
        assert_eq!(read_all(&mut tail).1, 0, "nothing twice");

        // The newest file of its directory: its unfinished line waits, however old.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&new)
            .unwrap()
            .write_all(cut.as_bytes())
            .unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&new).unwrap();
        f.set_modified(minutes_ago).unwrap();
        let mut tail = Tail::open(&glob, Vec::new(), false, &|_| {}).unwrap();
        assert_eq!(
            read_all(&mut tail).1,
            4,
            "old file's 3 lines and the new file's 1"
        );
    }

    #[test]
    fn start_at_end_skips_what_is_there_at_the_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let glob = vec![format!("{}/*.audit.log", dir.path().display())];
        let path = dir.path().join("20240101-00000.audit.log");
        std::fs::write(&path, [line(1), line(2)].concat()).unwrap();
        let mut tail = Tail::open(&glob, Vec::new(), true, &|_| {}).unwrap();
        let (commits, lines) = read_all(&mut tail);
        assert_eq!(lines, 0);
        let stored = commits[0].checkpoints.clone();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(line(3).as_bytes())
            .unwrap();
        let mut tail = Tail::open(&glob, stored, false, &|_| {}).unwrap();
        assert_eq!(
            read_all(&mut tail).1,
            1,
            "only the line written after the start"
        );
    }
}
