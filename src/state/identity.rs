//! What the state store is: an identity created with it, the file it lives in, how that file
//! was found at open, and whether it is still there while the daemon runs.
//!
//! Without an identity a missing, emptied or replaced store is indistinguishable from a first
//! start, and a first start delivers everything from `start_at` again: duplicates in every
//! destination, silently. With one, a destination that records which store wrote it (see
//! [`super::claim`]) can tell "first start" from "this store forgot what it delivered".
//!
//! The store file is opened defensively: redb trusts a file it did not write and may panic on
//! one corrupted outside it, so the magic number is checked first and a panic while opening is
//! turned into [`StateError::Unreadable`], naming the file and how to recover.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{StateError, Store};

/// key → value: store-wide facts (`"identity"` → JSON [`StoreIdentity`]).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("store_meta");
const IDENTITY_KEY: &str = "identity";

/// What every redb file starts with.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// How often a running daemon checks that its store file is still at its path.
pub const FILE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Who a store is: a random id and when it was created. Created once, with the store, and
/// never changed; a copy of the file is the same store, a new file is another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    /// 32 hex digits.
    pub id: String,
    /// RFC 3339, UTC.
    pub created: String,
}

impl StoreIdentity {
    fn generate() -> StoreIdentity {
        let bytes: [u8; 16] = rand::random();
        StoreIdentity {
            id: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            created: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for StoreIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (created {})", self.id, self.created)
    }
}

/// How the store file was found before opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No file: a first start, or the store was deleted.
    Missing,
    /// A file of 0 bytes: emptied (or a crash before redb wrote its header).
    Empty,
    /// A redb file (its magic number checked; the rest is checked by opening it).
    Present,
}

impl Found {
    /// What this means for a destination that holds earlier deliveries, in words.
    pub fn describe(self, path: &Path) -> String {
        match self {
            Found::Missing => format!("the state store {} does not exist", path.display()),
            Found::Empty => format!("the state store {} is empty (0 bytes)", path.display()),
            Found::Present => format!("the state store {}", path.display()),
        }
    }
}

/// Look at the store file without changing it. A file that is not a redb file is
/// [`StateError::Unreadable`].
pub fn inspect(path: &Path) -> Result<Found, StateError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(source) => {
            return Err(StateError::Dir {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    (&mut file)
        .take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|source| StateError::Dir {
            path: path.to_owned(),
            source,
        })?;
    if head.is_empty() {
        Ok(Found::Empty)
    } else if head != REDB_MAGIC {
        Err(StateError::unreadable(
            path,
            "it is not a redb database file",
        ))
    } else {
        Ok(Found::Present)
    }
}

/// Open (or create) the redb file at `path`. A panic inside redb (a file corrupted outside
/// it) becomes [`StateError::Unreadable`]; the panic message is kept out of the output.
pub(super) fn open_database(path: &Path) -> Result<Database, StateError> {
    // The lock may be held for a moment: by `status`, `replay` or `dlq` reading a stopped
    // daemon's store, or, on a reload, by a store call of the previous daemon still finishing.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match open_database_once(path) {
            Err(StateError::Open {
                source: redb::DatabaseError::DatabaseAlreadyOpen,
                ..
            }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            opened => return opened,
        }
    }
}

/// How long opening waits for a store locked by someone else before it gives up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn open_database_once(path: &Path) -> Result<Database, StateError> {
    if inspect(path)? == Found::Present {
        let opened = without_panic_output(|| {
            std::panic::catch_unwind(|| open_and_read(path, false)).map_err(panic_text)
        });
        match opened {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(e)) if !is_corruption(&e) => return Err(e),
            // Corrupt, or redb panicked: let redb's own check try to repair it, or say why not.
            Ok(Err(_)) | Err(_) => {
                let checked = without_panic_output(|| {
                    std::panic::catch_unwind(|| open_and_read(path, true)).map_err(panic_text)
                });
                return match checked {
                    Ok(Ok(db)) => {
                        tracing::warn!(path = %path.display(), "the state store was damaged and has been repaired by redb's integrity check");
                        Ok(db)
                    }
                    Ok(Err(e)) if !is_corruption(&e) => Err(e),
                    Ok(Err(e)) => Err(StateError::unreadable(path, &redb_text(&e))),
                    Err(panic) => Err(StateError::unreadable(path, &panic)),
                };
            }
        }
    }
    open_and_read(path, false)
}

/// redb open plus a read of its table directory, so that a damaged header or root fails
/// here rather than in the first transaction.
fn open_and_read(path: &Path, check_integrity: bool) -> Result<Database, StateError> {
    // redb caches up to 1 GiB by default; the hot data (queue heads, recent counts) is
    // small, and the process must stay small.
    let db = redb::Builder::new()
        .set_cache_size(8 << 20)
        .set_check_integrity_on_open(check_integrity)
        .create(path)
        .map_err(|source| StateError::Open {
            path: path.to_owned(),
            source,
        })?;
    {
        use redb::ReadableDatabase;
        let tx = db.begin_read()?;
        let _ = tx.list_tables()?.count();
    }
    Ok(db)
}

fn is_corruption(e: &StateError) -> bool {
    matches!(
        e,
        StateError::Open {
            source: redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)),
            ..
        } | StateError::Db(redb::Error::Corrupted(_))
    )
}

/// redb's own words, without the path the caller names anyway.
fn redb_text(e: &StateError) -> String {
    match e {
        StateError::Open { source, .. } => source.to_string(),
        StateError::Db(e) => e.to_string(),
        other => other.to_string(),
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    format!("redb failed reading it ({what})")
}

/// Run `f` with the panic hook silenced: a corrupted store is reported as an error, not as a
/// panic message (the hook is process-wide; the store is opened before any other task runs).
fn without_panic_output<T>(f: impl FnOnce() -> T) -> T {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = f();
    std::panic::set_hook(previous);
    out
}

/// The store's identity, created in `tx` if the store has none yet (a new store, or one
/// written before identities existed). Returns it and whether it was created now.
pub(super) fn ensure_identity(tx: &WriteTransaction) -> Result<(StoreIdentity, bool), StateError> {
    let mut meta = tx.open_table(META)?;
    if let Some(v) = meta.get(IDENTITY_KEY)? {
        let identity = serde_json::from_slice(v.value()).map_err(|e| StateError::Corrupt {
            what: "store identity".into(),
            problem: e.to_string(),
        })?;
        return Ok((identity, false));
    }
    let identity = StoreIdentity::generate();
    let json = serde_json::to_vec(&identity).expect("identity serializes");
    meta.insert(IDENTITY_KEY, json.as_slice())?;
    Ok((identity, true))
}

/// Whether the store file is still at its path, as last checked.
#[derive(Debug, Default)]
pub struct FileWatch {
    lost: Mutex<Option<String>>,
}

impl FileWatch {
    /// Why the store file is no longer at its path, once [`Store::check_file`] noticed.
    pub fn lost(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which file a path names (device, inode), to notice it being deleted or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(super) fn of(path: &Path) -> std::io::Result<FileId> {
        std::fs::metadata(path).map(|m| FileId::from(&m))
    }
}

impl From<&std::fs::Metadata> for FileId {
    fn from(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Whether the file the store was opened from is still at its path, and not emptied (redb
/// never leaves its file empty): `Err` says what happened to it. The open store keeps working
/// on a deleted file, but nothing it holds survives the process.
pub(super) fn check_still_there(path: &Path, opened: FileId) -> Result<(), String> {
    let happened = match std::fs::metadata(path) {
        Ok(m) if FileId::from(&m) != opened => "was replaced by another file",
        Ok(m) if m.len() == 0 => "was emptied (0 bytes)",
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted",
        // Cannot tell (permissions, a transient error): no alarm on a guess.
        Err(_) => return Ok(()),
    };
    Err(format!(
        "{} {happened} while the daemon runs",
        path.display()
    ))
}

/// The recovery steps for an unreadable store, for error messages.
pub(super) fn unreadable_advice(path: &Path) -> String {
    let p = path.display();
    format!(
        "nothing was changed. To recover: stop every process using it, move {p} aside (keep it \
         for analysis), then either restore state.redb from a backup, or start without it: the \
         daemon then creates a new store and, if a sink's destination already holds deliveries, \
         refuses until you confirm with --accept-new-state"
    )
}

impl StateError {
    pub(super) fn unreadable(path: &Path, problem: &str) -> StateError {
        StateError::Unreadable {
            path: PathBuf::from(path),
            problem: problem.to_owned(),
            advice: unreadable_advice(path),
        }
    }
}

impl Store {
    /// Who this store is (created with it, never changed).
    pub fn identity(&self) -> &StoreIdentity {
        &self.inner.identity
    }

    /// Check that the store file is still at its path. If it was deleted or replaced, the
    /// open store goes on working but nothing it holds survives the process: the first time,
    /// log an error; from then on [`FileWatch::lost`] says why (readiness fails).
    pub fn check_file(&self) {
        if let Err(reason) = check_still_there(&self.inner.path, self.inner.file) {
            let mut lost = self.inner.file_watch.lock();
            if lost.is_none() {
                tracing::error!(%reason, "the state store file is gone: delivery goes on, but cursors, queues and checkpoints are lost when the daemon stops, and the next start refuses (restore state.redb from a backup, or start over with --accept-new-state)");
                *lost = Some(reason);
            }
        }
    }

    /// What [`Store::check_file`] found, for `/readyz`; holding it does not hold the store
    /// open (a reload reopens the store while the old server may still be finishing).
    pub fn file_watch(&self) -> Arc<FileWatch> {
        self.inner.file_watch.clone()
    }
}
