//! Claims: a destination on this machine records which state store writes it, so that a
//! store that lost its memory is noticed before it delivers everything again.
//!
//! The store knows what each sink was given (its queue and checkpoint); a destination knows
//! what it holds. When the store is missing, emptied or replaced, only the destination can say
//! "you wrote here before". A file sink's claim is a small JSON file next to its output,
//! `<path>.caf-state`, holding the store's identity; it is written (atomically, fsynced)
//! before the sink writes anything, so it survives any crash after that. Opening the store
//! with [`open_checked`] compares every claim with the store and refuses to start on a
//! mismatch unless told to start over ([`NewState::Accept`], `--accept-new-state`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::identity::{self, Found, StoreIdentity};
use super::{STORE_FILE, StateError, Store};

/// A file on this machine that a sink appends to.
#[derive(Debug, Clone)]
pub struct Destination {
    pub sink: String,
    pub path: PathBuf,
    /// Whether the sink's stored checkpoint measures the file at `path` (the sink owns the
    /// checkpoint's format; a checkpoint of another path vouches for nothing here).
    pub checkpoint_covers: fn(checkpoint: &[u8], path: &Path) -> bool,
}

/// What to do when a destination holds deliveries the store does not know of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NewState {
    /// Refuse to start ([`StateError::Refused`]).
    #[default]
    Refuse,
    /// Start over deliberately: warn, re-claim the destinations, go on.
    Accept,
}

/// The contents of a claim file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    store_id: String,
    store_created: String,
    /// Where that store lived, to help the operator find it.
    store_path: PathBuf,
    sink: String,
}

/// The claim file next to a destination.
pub fn claim_path(destination: &Path) -> PathBuf {
    let mut name = destination.as_os_str().to_owned();
    name.push(".caf-state");
    PathBuf::from(name)
}

/// Why the daemon refuses to start: the store and the destinations disagree.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// What the store is (missing, empty, or which one).
    pub store: String,
    pub store_dir: PathBuf,
    /// One line per destination that holds deliveries the store does not know of.
    pub conflicts: Vec<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "refusing to start: {}, but sink destinations hold deliveries it has no record of:",
            self.store
        )?;
        for c in &self.conflicts {
            writeln!(f, "  - {c}")?;
        }
        write!(
            f,
            "Starting like this would fetch and deliver again everything from `start_at`: \
             duplicates. To continue where the forwarder left off, put its state.redb back into \
             {} (from a backup; a file tail written after that backup is cut and written again). \
             To start over deliberately, run again with --accept-new-state: the destinations \
             keep what they hold and new deliveries are appended to them (move a file away \
             first if it must not hold events twice).",
            self.store_dir.display()
        )
    }
}

/// Open (or create) the store in `dir`, first checking that no destination holds deliveries
/// the store does not know of.
///
/// Invariant: a store that is new to a destination (missing, emptied, or another store than
/// the one whose claim the destination carries) never delivers to it unless the operator said
/// [`NewState::Accept`]; a refusal leaves a missing or empty store as it is (nothing is
/// created) and writes no claim.
/// On success every destination carries this store's claim.
pub fn open_checked(
    dir: &Path,
    sinks: &[String],
    destinations: &[Destination],
    new_state: NewState,
) -> Result<Store, StateError> {
    let path = dir.join(STORE_FILE);
    let found = identity::inspect(&path)?;
    let existing = match found {
        Found::Present => Some(Store::open(dir, sinks)?),
        Found::Missing | Found::Empty => None,
    };
    // A destination another process holds locked is that writer's: the sink's own lock check
    // refuses it, naming the holder. Its claim is neither judged nor taken over.
    let destinations: Vec<&Destination> = destinations
        .iter()
        .filter(|d| !locked_elsewhere(&d.path))
        .collect();
    let mut conflicts = Vec::new();
    for d in &destinations {
        conflicts.extend(examine(d, existing.as_ref())?);
    }
    if !conflicts.is_empty() {
        let store = match &existing {
            Some(s) => format!("{} is store {}", found.describe(&path), s.identity()),
            None => found.describe(&path),
        };
        let refusal = Refusal {
            store,
            store_dir: dir.to_owned(),
            conflicts,
        };
        match new_state {
            NewState::Refuse => return Err(StateError::Refused(Box::new(refusal))),
            NewState::Accept => {
                tracing::warn!(conflicts = ?refusal.conflicts, "--accept-new-state: starting over with this state store; the destinations keep what they hold and new deliveries are appended")
            }
        }
    }
    let store = match existing {
        Some(s) => s,
        None => {
            if found == Found::Empty {
                tracing::warn!(path = %path.display(), "the state store was empty (0 bytes); starting a new one");
            }
            Store::open(dir, sinks)?
        }
    };
    for d in destinations {
        write_claim(d, &store)?;
    }
    Ok(store)
}

/// Whether another open file holds a lock on `path` (a running forwarder's file sink does).
fn locked_elsewhere(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

/// What `destination` shows that `store` (`None`: no store yet) does not know, if anything.
fn examine(destination: &Destination, store: Option<&Store>) -> Result<Option<String>, StateError> {
    let sink = &destination.sink;
    let path = &destination.path;
    if let Some(claim) = read_claim(path)? {
        if store.is_some_and(|s| s.identity().id == claim.store_id) {
            return Ok(None);
        }
        return Ok(Some(format!(
            "sink {sink:?}: {} was written by state store {} (created {}, at {})",
            path.display(),
            claim.store_id,
            claim.store_created,
            claim.store_path.display()
        )));
    }
    let checkpoint = match store {
        Some(s) => s.checkpoint(sink)?,
        None => None,
    };
    // Unclaimed but checkpointed: written by a version from before claims. Claimed from now.
    if checkpoint.is_some_and(|c| (destination.checkpoint_covers)(&c, path)) {
        return Ok(None);
    }
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(source) => {
            return Err(StateError::Claim {
                path: path.clone(),
                source,
            });
        }
    };
    Ok((len > 0).then(|| {
        format!(
            "sink {sink:?}: {} holds {len} bytes and no state store ever checkpointed it",
            path.display()
        )
    }))
}

fn read_claim(destination: &Path) -> Result<Option<Claim>, StateError> {
    let path = claim_path(destination);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Claim { path, source }),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| StateError::Claim {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
}

/// Make `destination` carry `store`'s claim: written to a temporary file, fsynced, renamed
/// over the old claim and the directory fsynced, so a crash leaves the old claim or the new.
fn write_claim(destination: &Destination, store: &Store) -> Result<(), StateError> {
    let identity: &StoreIdentity = store.identity();
    if read_claim(&destination.path)?.is_some_and(|c| c.store_id == identity.id) {
        return Ok(());
    }
    let claim = Claim {
        store_id: identity.id.clone(),
        store_created: identity.created.clone(),
        store_path: std::path::absolute(store.path()).unwrap_or_else(|_| store.path().to_owned()),
        sink: destination.sink.clone(),
    };
    let path = claim_path(&destination.path);
    let err = |source| StateError::Claim {
        path: path.clone(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut json = serde_json::to_vec_pretty(&claim).expect("claim serializes");
    json.push(b'\n');
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(&json)
        .and_then(|_| file.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}
