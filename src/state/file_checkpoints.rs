//! Checkpoints of the files a file source tails, committed with the documents they produced.
//!
//! It exists for the file source's version of the invariant: a line is either after its
//! file's checkpoint (and will be read again) or queued for every sink, never both. So the
//! checkpoints a slice moves, the checkpoints it forgets (files gone) and the slice's
//! documents are written in one transaction by [`Store::commit_file_slice`], which mirrors
//! [`Store::commit_window`]. What a checkpoint means, and when it may move, is the source's
//! business (`source::file_tail::checkpoint`); here it is stored and loaded.

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{NewEvent, StateError, Store, encode_cursor, queue, stored_cursor};

/// (source, device, inode) → JSON [`FileCheckpoint`].
pub(super) const FILE_CHECKPOINTS: TableDefinition<(&str, u64, u64), &[u8]> =
    TableDefinition::new("file_checkpoints");

/// Where reading one file stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// The path it was last seen at (for logs; the identity is device + inode + fingerprint).
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    /// How many of the file's first bytes the fingerprint covers.
    pub fingerprint_len: u64,
    /// BLAKE3 of those bytes (first 16 bytes of it).
    pub fingerprint: [u8; 16],
    /// Every line before this byte offset is queued; the next line starts here.
    pub offset: u64,
    /// Identical records among the newest read so far — (record ms, content hash, how many)
    /// — the occurrence count a twin after this offset continues from.
    #[serde(default)]
    pub twins: Vec<(i64, [u8; 16], u32)>,
}

/// Everything one slice of a file source changes, committed atomically.
#[derive(Debug, Default)]
pub struct FileSliceCommit {
    /// Documents to enqueue for every sink, in file order.
    pub events: Vec<NewEvent>,
    /// Checkpoints moved (or created) by this slice.
    pub checkpoints: Vec<FileCheckpoint>,
    /// Files no longer there (device, inode): their checkpoints are dropped.
    pub forget: Vec<(u64, u64)>,
    /// The newest record time queued, for the source's cursor (status and metrics).
    pub newest_ms: Option<i64>,
}

impl Store {
    /// Every checkpoint of `source`'s files.
    pub fn file_checkpoints(&self, source: &str) -> Result<Vec<FileCheckpoint>, StateError> {
        let tx = self.inner.db.begin_read()?;
        let table = tx.open_table(FILE_CHECKPOINTS)?;
        let mut out = Vec::new();
        for row in table.range((source, 0, 0)..=(source, u64::MAX, u64::MAX))? {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice(v.value()).map_err(|e| StateError::Corrupt {
                    what: format!("file checkpoint of source {source:?}"),
                    problem: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    /// Enqueue `commit.events` for every sink, store the moved checkpoints, drop the
    /// forgotten ones and mark the source started, all in one transaction.
    pub fn commit_file_slice(
        &self,
        source: &str,
        commit: &FileSliceCommit,
    ) -> Result<(), StateError> {
        let (tx, grouped) = self.begin_grouped(false)?;
        {
            let mut table = tx.open_table(FILE_CHECKPOINTS)?;
            for (dev, ino) in &commit.forget {
                table.remove((source, *dev, *ino))?;
            }
            for c in &commit.checkpoints {
                let bytes = serde_json::to_vec(c).expect("a checkpoint serializes");
                table.insert((source, c.dev, c.ino), bytes.as_slice())?;
            }
            let mut cursors = tx.open_table(super::CURSORS)?;
            let mut state = stored_cursor(&cursors, source)?;
            state.started = true;
            if let Some(ms) = commit.newest_ms {
                state.cursor_ms = state.cursor_ms.max(ms);
            }
            cursors.insert(source, encode_cursor(&state).as_slice())?;
            queue::enqueue_all(&tx, &self.inner.sinks, &commit.events)?;
        }
        tx.commit()?;
        self.committed(grouped);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(ino: u64, offset: u64) -> FileCheckpoint {
        FileCheckpoint {
            path: format!("/logs/{ino}.audit.log"),
            dev: 7,
            ino,
            fingerprint_len: 3,
            fingerprint: [ino as u8; 16],
            offset,
            twins: vec![(5, [1; 16], 2)],
        }
    }

    #[test]
    fn a_file_slice_queues_for_every_sink_and_moves_its_checkpoints_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let sinks = ["a".to_owned(), "b".to_owned()];
        let store = Store::open(dir.path(), &sinks).unwrap();
        let event = |id: &str| NewEvent {
            id: id.to_owned(),
            doc: id.as_bytes().to_vec(),
        };
        let first = FileSliceCommit {
            events: vec![event("e1"), event("e2")],
            checkpoints: vec![checkpoint(1, 100), checkpoint(2, 0)],
            forget: vec![],
            newest_ms: Some(5),
        };
        store.commit_file_slice("node1", &first).unwrap();
        let second = FileSliceCommit {
            events: vec![event("e3")],
            checkpoints: vec![checkpoint(2, 40)],
            forget: vec![(7, 1)],
            newest_ms: Some(3),
        };
        store.commit_file_slice("node1", &second).unwrap();
        for sink in &sinks {
            let ids: Vec<_> = store
                .peek(sink, None, 10, 1 << 20)
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(ids, ["e1", "e2", "e3"]);
        }
        assert_eq!(
            store.file_checkpoints("node1").unwrap(),
            [checkpoint(2, 40)]
        );
        assert!(store.file_checkpoints("node2").unwrap().is_empty());
        let cursor = store.cursor("node1").unwrap().unwrap();
        assert!(cursor.started);
        assert_eq!(
            cursor.cursor_ms, 5,
            "the newest record time never goes back"
        );
        drop(store);
        let reopened = Store::open(dir.path(), &sinks).unwrap();
        assert_eq!(
            reopened.file_checkpoints("node1").unwrap(),
            [checkpoint(2, 40)]
        );
    }
}
