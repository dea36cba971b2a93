//! Durable state: the one place where "fetched" turns into "will be delivered".
//!
//! Everything the daemon must not forget lives in one redb file (`state.dir/state.redb`):
//! per source the cursor and the content hashes of recently seen records; per sink a queue of
//! documents, its dead letters and the sink's own checkpoint. The invariant the rest of the
//! program relies on is kept here, in [`Store::commit_window`]: a window's documents are
//! enqueued for every sink and the cursor moves past them in one ACID transaction. A crash
//! before that commit re-reads the window; after it, nothing needs the source again.
//!
//! The store knows itself: it has an identity created with it (`identity.rs`), and every
//! local destination records which store writes it (`claim.rs`), so a store that is missing,
//! emptied or replaced is noticed before it delivers again what a destination already holds,
//! and a store file deleted under a running daemon is noticed too ([`Store::check_file`]).
//!
//! A file source (`api = "file"`) keeps a checkpoint per file instead of a cursor window;
//! [`Store::commit_file_slice`] (`file_checkpoints.rs`) commits them with their documents.
//!
//! Sinks drain their own queue ([`Store::peek`] then [`Store::ack`]), so a slow or dead sink
//! only grows its own queue; [`Store::ack`] deletes delivered entries, moves rejected ones to
//! the dead-letter queue and stores the sink's checkpoint in one transaction too.
//!
//! Group commit: an fsync per transaction cost a quarter of a backfill's time, so the hot
//! transactions (window commits, acknowledgements) are made durable at most every
//! [`SYNC_EVERY`], and at once by [`Store::sync`] when a caller goes idle or stops. Each
//! transaction is still atomic, and redb persists them in order: after a crash (SIGKILL or
//! power loss) the store is exactly as it was after some earlier transaction. The invariant
//! above survives that: a lost window commit is read again, a lost acknowledgement is
//! delivered again (the file sink cuts its file back to the checkpoint that survived; the
//! others deduplicate on `event.id`). Nothing acknowledged to Confluence's side depends on it.

mod claim;
mod error;
mod file_checkpoints;
mod identity;
mod organization;
mod queue;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::normalize::ContentHash;

pub use claim::{Destination, NewState, Refusal, claim_path, open_checked};
pub use error::StateError;
pub use file_checkpoints::{FileCheckpoint, FileSliceCommit};
pub use identity::{FILE_CHECK_EVERY, FileWatch, Found, StoreIdentity, inspect};
pub use organization::{MAX_RECENT_IDS, OrgPosition};
pub use queue::{DeadLetter, QueueStats, QueuedEvent};

/// The store's file name inside `state.dir`.
pub const STORE_FILE: &str = "state.redb";

/// Longest time a committed transaction may stay non-durable while more are coming.
pub const SYNC_EVERY: Duration = Duration::from_millis(200);

/// source name → JSON [`CursorState`].
const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("cursors");
/// (source, record ms, content hash) → how many identical records were seen in that ms.
const SEEN: TableDefinition<(&str, i64, [u8; 16]), u32> = TableDefinition::new("seen");

/// Run a blocking store call off the async threads. Every async caller goes through here, so
/// an I/O failure of the store marks it failed (readiness) wherever it happens.
pub async fn blocking<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    let store = store.clone();
    let result = match tokio::task::spawn_blocking({
        let store = store.clone();
        move || f(&store)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if let Err(e) = &result
        && e.is_io()
    {
        store.mark_failed(e.to_string());
    }
    result
}

/// Where a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    /// Every record at or before this time (epoch ms) is queued, bar late commits that the
    /// overlap catches.
    pub cursor_ms: i64,
    /// Never read before this (the configured `start_at`).
    pub floor_ms: i64,
    /// Whether any window has been committed yet (the first one starts at `floor_ms`).
    pub started: bool,
    /// Whether a whole window was ever read to its end: from then on, a cursor older than
    /// Confluence's retention means records were lost while we were away (a gap).
    #[serde(default)]
    pub caught_up: bool,
}

/// A new event found in a window: its key for deduplication and its document.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub doc: Vec<u8>,
}

/// Everything one window (or one slice of a backfill) changes, committed atomically.
#[derive(Debug, Default)]
pub struct WindowCommit {
    /// Documents to enqueue for every sink, in delivery order (oldest first).
    pub events: Vec<NewEvent>,
    /// New seen-counts: (record ms, hash) → count observed in this window.
    pub seen: HashMap<(i64, ContentHash), u32>,
    /// The new cursor (inclusive end of the window; the cursor never moves back), or `None`
    /// to leave it: records queued ahead of the cursor (a large slice read newest first) are
    /// kept from doubling by their seen-counts when the window is read again.
    pub cursor_ms: Option<i64>,
    /// Seen-counts older than this can no longer be re-read and are dropped (`i64::MIN`:
    /// keep all; a commit that leaves the cursor must keep them).
    pub prune_seen_before_ms: i64,
}

/// The durable store. Cheap to clone; all methods block (call them from `spawn_blocking`).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    identity: StoreIdentity,
    /// The file the store was opened from, to notice it being deleted or replaced.
    file: identity::FileId,
    sinks: Vec<String>,
    /// Set once an I/O error broke the store; see [`Store::failed`].
    failed: std::sync::Mutex<Option<String>>,
    /// Set once the store file left its path; see [`Store::check_file`].
    file_watch: Arc<FileWatch>,
    failed_notify: tokio::sync::Notify,
    sync: Mutex<SyncState>,
}

/// Group-commit bookkeeping. Counted, not flagged: each number is taken while holding redb's
/// write lock, so a durable commit covers exactly the non-durable ones begun before it, even
/// when another writer commits between its commit and its bookkeeping.
struct SyncState {
    last_durable: Instant,
    /// Non-durable transactions begun so far.
    nondurable: u64,
    /// How many of them a durable commit has persisted.
    durable_upto: u64,
}

impl SyncState {
    /// A non-durable transaction may not be on disk yet.
    fn pending(&self) -> bool {
        self.nondurable > self.durable_upto
    }

    fn made_durable(&mut self, covers: u64) {
        self.durable_upto = self.durable_upto.max(covers);
        self.last_durable = Instant::now();
    }
}

/// How a write transaction takes part in the group commit: durable (persisting the first
/// `covers` non-durable ones) or not.
struct Grouped {
    durable: bool,
    covers: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let pending = self.sync.get_mut().map(|s| s.pending()).unwrap_or(true);
        if pending && let Ok(tx) = self.db.begin_write() {
            let _ = tx.commit();
        }
    }
}

impl Store {
    /// Open (or create) the store in `dir` for the configured sinks. A file that is not a
    /// store is [`StateError::Unreadable`]; [`open_checked`] also checks the destinations.
    pub fn open(dir: &Path, sinks: &[String]) -> Result<Store, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(STORE_FILE);
        let db = identity::open_database(&path)?;
        let file = identity::FileId::of(&path).map_err(|source| StateError::Dir {
            path: path.clone(),
            source,
        })?;
        let identity = init_tables(&db)?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                path,
                identity,
                file,
                sinks: sinks.to_vec(),
                failed: std::sync::Mutex::new(None),
                file_watch: Arc::default(),
                failed_notify: tokio::sync::Notify::new(),
                sync: Mutex::new(SyncState {
                    last_durable: Instant::now(),
                    nondurable: 0,
                    durable_upto: 0,
                }),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Record that an I/O error broke the store (the first reason wins).
    pub fn mark_failed(&self, reason: String) {
        let mut failed = self.inner.failed.lock().expect("failed lock");
        if failed.is_none() {
            *failed = Some(reason);
            self.inner.failed_notify.notify_waiters();
        }
    }

    /// Resolves with the reason once an I/O error broke the store.
    pub async fn failed(&self) -> String {
        loop {
            let notified = self.inner.failed_notify.notified();
            if let Some(r) = self.inner.failed.lock().expect("failed lock").clone() {
                return r;
            }
            notified.await;
        }
    }

    /// The sinks this store fans out to.
    pub fn sinks(&self) -> &[String] {
        &self.inner.sinks
    }

    /// Make every committed transaction durable now (one fsync if any is pending). Called
    /// when a caller goes idle or stops, so a quiet store is always a durable one.
    pub fn sync(&self) -> Result<(), StateError> {
        if !self.lock_sync().pending() {
            return Ok(());
        }
        let (tx, grouped) = self.begin_grouped(true)?;
        tx.commit()?;
        self.committed(grouped);
        Ok(())
    }

    fn lock_sync(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.inner.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A write transaction on the group-commit schedule: durable when the last durable one
    /// is [`SYNC_EVERY`] old (or `force`), otherwise persisted by a later durable one.
    fn begin_grouped(&self, force: bool) -> Result<(redb::WriteTransaction, Grouped), StateError> {
        let mut tx = self.inner.db.begin_write()?;
        // Decided and counted while holding redb's write lock: no other writer in between.
        let grouped = {
            let mut s = self.lock_sync();
            let durable = force || s.last_durable.elapsed() >= SYNC_EVERY;
            if !durable {
                // Counted before the commit: one that then fails only costs a spare sync.
                s.nondurable += 1;
            }
            Grouped {
                durable,
                covers: s.nondurable,
            }
        };
        if !grouped.durable {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| StateError::Db(e.into()))?;
        }
        Ok((tx, grouped))
    }

    fn committed(&self, grouped: Grouped) {
        if grouped.durable {
            self.lock_sync().made_durable(grouped.covers);
        }
    }

    /// The source's cursor, if it ever committed one.
    pub fn cursor(&self, source: &str) -> Result<Option<CursorState>, StateError> {
        let tx = self.inner.db.begin_read()?;
        let table = tx.open_table(CURSORS)?;
        let Some(v) = table.get(source)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                what: format!("cursor of source {source:?}"),
                problem: e.to_string(),
            })
    }

    /// Set a cursor without queueing anything (first start, `start_at`).
    pub fn init_cursor(&self, source: &str, state: CursorState) -> Result<(), StateError> {
        let tx = self.inner.db.begin_write()?;
        {
            let mut table = tx.open_table(CURSORS)?;
            table.insert(source, encode_cursor(&state).as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Record that a whole window was read (see [`CursorState::caught_up`]).
    pub fn mark_caught_up(&self, source: &str) -> Result<(), StateError> {
        let tx = self.inner.db.begin_write()?;
        {
            let mut table = tx.open_table(CURSORS)?;
            let current = table
                .get(source)?
                .map(|v| serde_json::from_slice::<CursorState>(v.value()));
            if let Some(Ok(mut state)) = current
                && !state.caught_up
            {
                state.caught_up = true;
                table.insert(source, encode_cursor(&state).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Seen-counts of records in `[from_ms, to_ms]`.
    pub fn seen_counts(
        &self,
        source: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<HashMap<(i64, ContentHash), u32>, StateError> {
        let tx = self.inner.db.begin_read()?;
        let table = tx.open_table(SEEN)?;
        let mut out = HashMap::new();
        for row in table.range((source, from_ms, [0u8; 16])..=(source, to_ms, [0xffu8; 16]))? {
            let (k, v) = row?;
            let (_, ms, hash) = k.value();
            out.insert((ms, ContentHash(hash)), v.value());
        }
        Ok(out)
    }

    /// Seen-counts of exactly these keys (a point lookup each): for a millisecond queued in
    /// parts, where the range of one millisecond may hold far more rows than the part.
    pub fn seen_counts_of(
        &self,
        source: &str,
        keys: impl IntoIterator<Item = (i64, ContentHash)>,
    ) -> Result<HashMap<(i64, ContentHash), u32>, StateError> {
        let tx = self.inner.db.begin_read()?;
        let table = tx.open_table(SEEN)?;
        let mut out = HashMap::new();
        for (ms, hash) in keys {
            if let Some(v) = table.get((source, ms, hash.0))? {
                out.insert((ms, hash), v.value());
            }
        }
        Ok(out)
    }

    /// The heart of the invariant: enqueue `commit.events` for every sink, record the seen
    /// counts and move the cursor, all in one transaction.
    pub fn commit_window(&self, source: &str, commit: &WindowCommit) -> Result<(), StateError> {
        let (tx, grouped) = self.begin_grouped(false)?;
        {
            let mut cursors = tx.open_table(CURSORS)?;
            let mut state = stored_cursor(&cursors, source)?;
            if let Some(c) = commit.cursor_ms {
                // Never back: a window starts `overlap` before the cursor, and its first
                // slices end before it. Moving the cursor back to them would make the next
                // window start where the seen-counts were already pruned, and records there
                // would be queued twice.
                state.cursor_ms = state.cursor_ms.max(c);
                state.started = true;
                cursors.insert(source, encode_cursor(&state).as_slice())?;
            }
            let prune_before = commit.prune_seen_before_ms;

            let mut seen = tx.open_table(SEEN)?;
            for ((ms, hash), count) in &commit.seen {
                seen.insert((source, *ms, hash.0), *count)?;
            }
            if prune_before > i64::MIN {
                seen.retain_in(
                    (source, i64::MIN, [0u8; 16])..(source, prune_before, [0u8; 16]),
                    |_, _| false,
                )?;
            }

            queue::enqueue_all(&tx, &self.inner.sinks, &commit.events)?;
        }
        tx.commit()?;
        self.committed(grouped);
        Ok(())
    }

    /// Queue `events` for the named sinks only, in one transaction, leaving the cursor and the
    /// seen-counts alone (`replay`: the range is already behind the cursor). Every name must
    /// be a configured sink.
    pub fn enqueue_for(&self, sinks: &[String], events: &[NewEvent]) -> Result<(), StateError> {
        if let Some(unknown) = sinks.iter().find(|s| !self.inner.sinks.contains(s)) {
            return Err(StateError::UnknownSink {
                sink: unknown.clone(),
                known: self.inner.sinks.join(", "),
            });
        }
        let (tx, grouped) = self.begin_grouped(false)?;
        queue::enqueue_all(&tx, sinks, events)?;
        tx.commit()?;
        self.committed(grouped);
        Ok(())
    }

    /// Queue depth of one sink.
    pub fn queue_stats(&self, sink: &str) -> Result<QueueStats, StateError> {
        let tx = self.inner.db.begin_read()?;
        queue::stats(&tx, sink)
    }

    /// The largest queue, in bytes (back-pressure on the sources).
    pub fn max_queue_bytes(&self) -> Result<u64, StateError> {
        let tx = self.inner.db.begin_read()?;
        let mut max = 0;
        for sink in &self.inner.sinks {
            max = max.max(queue::stats(&tx, sink)?.bytes);
        }
        Ok(max)
    }

    /// Up to `max_events` / `max_bytes` (at least one entry) of the sink's queue, oldest first,
    /// starting after `after_seq`.
    pub fn peek(
        &self,
        sink: &str,
        after_seq: Option<u64>,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedEvent>, StateError> {
        let tx = self.inner.db.begin_read()?;
        queue::peek(&tx, sink, after_seq, max_events, max_bytes)
    }

    /// Record a delivery attempt: delete `delivered`, dead-letter `rejected` (with reasons),
    /// and store the sink's checkpoint, in one transaction.
    pub fn ack(
        &self,
        sink: &str,
        delivered: &[u64],
        rejected: &[(u64, String)],
        checkpoint: Option<&[u8]>,
    ) -> Result<(), StateError> {
        // A checkpoint alone is a sink's starting point (the file sink's length before its
        // first write): it must be on disk before anything is written after it.
        let force = delivered.is_empty() && rejected.is_empty();
        let (tx, grouped) = self.begin_grouped(force)?;
        queue::ack(&tx, sink, delivered, rejected, checkpoint)?;
        tx.commit()?;
        self.committed(grouped);
        Ok(())
    }

    /// The checkpoint the sink stored with its last acknowledgement.
    pub fn checkpoint(&self, sink: &str) -> Result<Option<Vec<u8>>, StateError> {
        let tx = self.inner.db.begin_read()?;
        queue::checkpoint(&tx, sink)
    }

    /// The sink's dead letters, oldest first.
    pub fn dead_letters(&self, sink: &str) -> Result<Vec<DeadLetter>, StateError> {
        let tx = self.inner.db.begin_read()?;
        queue::dead_letters(&tx, sink)
    }

    /// Move every dead letter of `sink` back to the end of its queue; returns how many.
    pub fn replay_dead_letters(&self, sink: &str) -> Result<usize, StateError> {
        let tx = self.inner.db.begin_write()?;
        let n = queue::replay_dead_letters(&tx, sink)?;
        tx.commit()?;
        Ok(n)
    }

    /// Sinks that have a queue or dead letters in the store (configured or not).
    pub fn known_sinks(&self) -> Result<Vec<String>, StateError> {
        let tx = self.inner.db.begin_read()?;
        queue::known_sinks(&tx)
    }
}

/// Create the tables a new store lacks and its identity; returns the identity.
fn init_tables(db: &Database) -> Result<StoreIdentity, StateError> {
    let tx = db.begin_write()?;
    tx.open_table(CURSORS)?;
    tx.open_table(SEEN)?;
    tx.open_table(file_checkpoints::FILE_CHECKPOINTS)?;
    queue::init_tables(&tx)?;
    let (identity, created) = identity::ensure_identity(&tx)?;
    tx.commit()?;
    if created {
        tracing::debug!(%identity, "state store identity created");
    }
    Ok(identity)
}

/// The cursor `table` holds for `source`, or a new one (not started) when it holds none.
fn stored_cursor(
    table: &redb::Table<'_, &str, &[u8]>,
    source: &str,
) -> Result<CursorState, StateError> {
    Ok(match table.get(source)? {
        Some(v) => serde_json::from_slice(v.value()).map_err(|e| StateError::Corrupt {
            what: format!("cursor of source {source:?}"),
            problem: e.to_string(),
        })?,
        None => CursorState {
            cursor_ms: 0,
            floor_ms: 0,
            started: false,
            caught_up: false,
        },
    })
}

fn encode_cursor(state: &CursorState) -> Vec<u8> {
    serde_json::to_vec(state).expect("cursor state serializes")
}

#[cfg(test)]
mod enqueue_for_tests;
#[cfg(test)]
mod tests;
