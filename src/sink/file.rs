//! File sink: NDJSON, one document per line, exactly once across crashes.
//!
//! A batch is appended and fsynced, then acknowledged together with the file's new length
//! (the checkpoint). A crash between the two leaves a tail the state store never heard of;
//! on start that tail is cut, and the queue — which still holds those entries — writes them
//! again. So every document is in the file exactly once.
//!
//! The checkpoint names the file it measures (see [`encode_checkpoint`]): a checkpoint of
//! another path (the sink's `path` changed) never cuts this file. Which state store writes the
//! file is recorded next to it, in its claim (`crate::state::claim`).
//!
//! The file may be rotated by renaming it (logrotate's default) or truncated
//! (`copytruncate`): the sink notices a new inode or a shorter file, says so, and goes on
//! appending to whatever is at `path` now.
//!
//! While the daemon runs, the sink holds an exclusive lock (`flock`) on its file: a second
//! forwarder pointed at the same file refuses to start instead of interleaving lines and
//! cutting the first one's tail.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BatchOutcome, BuildError, Purpose, QueuedEvent, Sink, SinkError};

/// `[[sink]] type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The NDJSON file; its directory is created when missing.
    pub path: PathBuf,
}

impl FileConfig {
    /// The sink; for [`Purpose::Run`] with its file open and locked.
    pub fn build(&self, purpose: Purpose) -> Result<FileSink, BuildError> {
        let fail = |problem: String| BuildError {
            key: "path".into(),
            problem,
        };
        if self.path.as_os_str().is_empty() {
            return Err(fail("must not be empty".into()));
        }
        if self.path.is_dir() {
            return Err(fail(format!(
                "{} is a directory; give a file",
                self.path.display()
            )));
        }
        if let Some(parent) = existing_ancestor(&self.path)
            && !parent.is_dir()
        {
            return Err(fail(format!(
                "{} is not a directory, so {} cannot be created",
                parent.display(),
                self.path.display()
            )));
        }
        let mut sink = FileSink::new(self.path.clone());
        if purpose == Purpose::Run {
            sink.open_file().map_err(|e| fail(e.reason))?;
        }
        Ok(sink)
    }
}

/// The nearest ancestor of `path` that exists.
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors()
        .skip(1)
        .find(|a| !a.as_os_str().is_empty() && a.exists())
}

/// The checkpoint of the file at `path`, `len` bytes long: the length (8 bytes, little
/// endian) followed by the path's bytes.
pub fn encode_checkpoint(path: &Path, len: u64) -> Vec<u8> {
    let path = path.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(8 + path.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(path);
    out
}

/// The committed length a checkpoint holds for the file at `path`: `None` when it is not a
/// file sink checkpoint or measures another path. A bare length (8 bytes, written before
/// checkpoints named their file) is taken to measure `path`.
pub fn committed_len(checkpoint: &[u8], path: &Path) -> Option<u64> {
    let (len, named) = checkpoint.split_first_chunk::<8>()?;
    (named.is_empty() || named == path.as_os_str().as_bytes()).then(|| u64::from_le_bytes(*len))
}

pub struct FileSink {
    path: PathBuf,
    file: Option<File>,
    /// (device, inode) of the open file, to notice rotation.
    identity: (u64, u64),
    len: u64,
}

impl FileSink {
    pub fn new(path: PathBuf) -> Self {
        FileSink {
            path,
            file: None,
            identity: (0, 0),
            len: 0,
        }
    }

    fn io_err(&self, what: &str, e: std::io::Error) -> SinkError {
        SinkError::new("io", format!("{what} {}: {e}", self.path.display()))
    }

    fn open_file(&mut self) -> Result<(), SinkError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.io_err("create directory for", e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io_err("open", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(SinkError::new("locked", locked_by_other(&self.path, &file)));
            }
            Err(TryLockError::Error(e)) => return Err(self.io_err("lock", e)),
        }
        let meta = file.metadata().map_err(|e| self.io_err("stat", e))?;
        self.identity = (meta.dev(), meta.ino());
        self.len = meta.len();
        self.file = Some(file);
        Ok(())
    }

    /// Reopen when `path` is no longer the file we hold (rotated away).
    fn follow_rotation(&mut self) -> Result<(), SinkError> {
        let current = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if self.file.is_none() || current != Some(self.identity) {
            if self.file.is_some() {
                tracing::info!(path = %self.path.display(), "file was rotated; reopening");
            }
            self.open_file()?;
        }
        Ok(())
    }
}

/// Who holds `file`'s lock, as far as `/proc/locks` tells.
fn locked_by_other(path: &Path, file: &File) -> String {
    let holder = file
        .metadata()
        .ok()
        .and_then(|m| lock_holder(m.ino()))
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default();
            format!(" by process {pid} ({cmd})")
        })
        .unwrap_or_default();
    format!(
        "{} is locked{holder}: another forwarder writes it; two writers of one file lose and duplicate events, so give each its own file",
        path.display()
    )
}

/// The process holding an `flock` on the file with inode `ino`.
fn lock_holder(ino: u64) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let suffix = format!(":{ino}");
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
        (fields.get(1) == Some(&"FLOCK") && fields.get(5)?.ends_with(&suffix))
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

impl Sink for FileSink {
    async fn open(&mut self, checkpoint: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, SinkError> {
        self.follow_rotation()?;
        let committed = checkpoint
            .as_deref()
            .and_then(|c| committed_len(c, &self.path));
        if checkpoint.is_some() && committed.is_none() {
            tracing::info!(
                path = %self.path.display(),
                "the stored checkpoint measures another file (the sink's path changed); starting at the end of this one"
            );
        }
        match committed {
            Some(c) if self.len > c => {
                tracing::warn!(
                    path = %self.path.display(),
                    bytes = self.len - c,
                    "cutting a tail written before a crash; its events are still queued and will be written again"
                );
                let file = self.file.as_ref().expect("opened above");
                file.set_len(c).map_err(|e| self.io_err("truncate", e))?;
                file.sync_all().map_err(|e| self.io_err("fsync", e))?;
                self.len = c;
            }
            Some(c) if self.len < c => {
                tracing::warn!(
                    path = %self.path.display(),
                    committed = c,
                    now = self.len,
                    "file is shorter than what was written to it (rotated or truncated); appending"
                );
            }
            Some(_) => {}
            // First start: record where the file begins, before anything is written, so
            // that a crash before the first acknowledgement can be cut back to it.
            None => return Ok(Some(encode_checkpoint(&self.path, self.len))),
        }
        Ok(None)
    }

    async fn deliver(&mut self, batch: &[QueuedEvent]) -> Result<BatchOutcome, SinkError> {
        self.follow_rotation()?;
        let mut buf = Vec::with_capacity(batch.iter().map(|e| e.doc.len() + 1).sum());
        for e in batch {
            buf.extend_from_slice(&e.doc);
            buf.push(b'\n');
        }
        let mut file = self.file.take().expect("opened");
        let written = tokio::task::spawn_blocking(move || {
            let r = file.write_all(&buf).and_then(|_| file.sync_data());
            (file, r.map(|_| buf.len() as u64))
        })
        .await
        .map_err(|e| SinkError::new("io", format!("writer task: {e}")))?;
        let (file, result) = written;
        match result {
            Ok(n) => {
                self.file = Some(file);
                self.len += n;
                Ok(BatchOutcome {
                    checkpoint: Some(encode_checkpoint(&self.path, self.len)),
                    ..BatchOutcome::all_delivered(batch.len())
                })
            }
            Err(e) => {
                // A partial write may have reached the file: cut back to what is committed
                // so that the retry does not leave half a line behind.
                let _ = file.set_len(self.len);
                self.file = Some(file);
                Err(self.io_err("write", e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, doc: &str) -> QueuedEvent {
        QueuedEvent {
            seq,
            enqueued_ms: 0,
            id: format!("id{seq}"),
            doc: doc.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_locked_file_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileConfig {
            path: dir.path().join("out/events.ndjson"),
        };
        let _held = cfg.build(Purpose::Run).unwrap();
        // Checking does not lock, so check-config works beside a running daemon.
        cfg.build(Purpose::Check).unwrap();
        let err = cfg
            .build(Purpose::Run)
            .err()
            .expect("second writer refused");
        assert_eq!(err.key, "path");
        assert!(err.problem.contains("events.ndjson is locked"), "{err}");
        assert!(
            err.problem
                .contains(&format!("by process {}", std::process::id())),
            "{err}"
        );
    }

    #[test]
    fn a_directory_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileConfig {
            path: dir.path().to_owned(),
        };
        assert!(cfg.build(Purpose::Check).is_err());
    }

    #[tokio::test]
    async fn uncommitted_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/events.ndjson");
        let mut sink = FileSink::new(path.clone());
        sink.open(None).await.unwrap();
        let out = sink
            .deliver(&[ev(1, "{\"a\":1}"), ev(2, "{\"a\":2}")])
            .await
            .unwrap();
        let committed = out.checkpoint.clone().unwrap();
        assert_eq!(committed_len(&committed, &path), Some(16));
        // A batch written but never acknowledged (the process died before the state commit).
        sink.deliver(&[ev(3, "{\"a\":3}")]).await.unwrap();
        drop(sink);
        let mut restarted = FileSink::new(path.clone());
        restarted.open(Some(committed)).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        // The queue still holds entry 3: written again, exactly once.
        restarted.deliver(&[ev(3, "{\"a\":3}")]).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
    }

    #[tokio::test]
    async fn crash_before_the_first_acknowledgement_is_cut_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        std::fs::write(&path, "old\n").unwrap();
        let mut sink = FileSink::new(path.clone());
        let initial = sink.open(None).await.unwrap().expect("a starting point");
        sink.deliver(&[ev(1, "new")]).await.unwrap();
        drop(sink); // killed before the acknowledgement
        let mut restarted = FileSink::new(path.clone());
        assert_eq!(restarted.open(Some(initial)).await.unwrap(), None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
    }

    #[tokio::test]
    async fn follows_rotation_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let mut sink = FileSink::new(path.clone());
        sink.open(None).await.unwrap();
        sink.deliver(&[ev(1, "one")]).await.unwrap();
        std::fs::rename(&path, dir.path().join("events.ndjson.1")).unwrap();
        let out = sink.deliver(&[ev(2, "two")]).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(out.checkpoint.unwrap(), encode_checkpoint(&path, 4));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("events.ndjson.1")).unwrap(),
            "one\n"
        );
    }

    #[tokio::test]
    async fn shorter_file_than_committed_is_appended_to_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        std::fs::write(&path, "x\n").unwrap();
        let mut sink = FileSink::new(path.clone());
        sink.open(Some(100u64.to_le_bytes().to_vec()))
            .await
            .unwrap();
        sink.deliver(&[ev(1, "y")]).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x\ny\n");
    }

    #[tokio::test]
    async fn a_checkpoint_of_another_path_never_cuts_this_file() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.ndjson");
        let path = dir.path().join("events.ndjson");
        std::fs::write(&path, "kept\nkept too\n").unwrap();
        let mut sink = FileSink::new(path.clone());
        let start = sink.open(Some(encode_checkpoint(&old, 3))).await.unwrap();
        assert_eq!(start, Some(encode_checkpoint(&path, 14)));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept\nkept too\n");
        assert_eq!(committed_len(&encode_checkpoint(&old, 3), &old), Some(3));
        assert_eq!(committed_len(&3u64.to_le_bytes(), &old), Some(3));
        assert_eq!(committed_len(b"short", &old), None);
    }
}
