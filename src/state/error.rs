//! The state store's error type: what the store was doing, and which failures mean the
//! process must reopen it (I/O) or must not start (unreadable file, refused start).

use std::path::PathBuf;

use super::Refusal;

/// A state store error, with what the store was doing.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store: {0}")]
    Db(#[from] redb::Error),
    #[error("state store: corrupt {what}: {problem}")]
    Corrupt { what: String, problem: String },
    /// The file is not a usable store (random bytes, damaged beyond redb's repair).
    #[error("state store {path} cannot be read: {problem}; {advice}")]
    Unreadable {
        path: PathBuf,
        problem: String,
        advice: String,
    },
    /// A destination holds deliveries this store does not know of (see [`super::open_checked`]).
    #[error("{0}")]
    Refused(Box<Refusal>),
    /// A sink name that is not configured (`replay --sink`).
    #[error("no sink named {sink:?} (configured sinks: {known})")]
    UnknownSink { sink: String, known: String },
    #[error("claim file {path}: {source}")]
    Claim {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StateError {
    /// The store hit an I/O error (disk full, read-only, failing disk). redb refuses every
    /// later operation until the file is reopened, so the process must restart.
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            StateError::Db(redb::Error::Io(_) | redb::Error::PreviousIo)
                | StateError::Dir { .. }
                | StateError::Open { .. }
        )
    }
}

macro_rules! db_err_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self { StateError::Db(e.into()) }
        }
    )*};
}
db_err_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
