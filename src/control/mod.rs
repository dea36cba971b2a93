//! The control socket: how `status` and `replay` reach a running daemon, whose state store
//! is locked to everyone else.
//!
//! A Unix socket, `control.sock` in `state.dir`, mode 0600 and answering only peers of the
//! daemon's own user (and root) — never the HTTP listener, which may be exposed. One JSON request per
//! line, answered by JSON lines ([`protocol`]). The daemon binds it after it has the store's
//! exclusive lock, so a socket file found then is a dead daemon's leftover (a crash) and is
//! replaced; a second daemon on the same `state.dir` never gets that far (the store is
//! locked) and so never touches the first one's socket ([`server`]). Commands connect with
//! [`client`]: no socket, or nobody answering on it, means no daemon runs, and they read the
//! store themselves.

pub mod client;
pub mod protocol;
pub mod server;

use std::path::{Path, PathBuf};

/// The socket's file name inside `state.dir`.
pub const SOCKET_FILE: &str = "control.sock";

/// The control socket of the daemon using `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// A control socket failure, naming the socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket {path}: the daemon answered something unreadable ({problem})")]
    Protocol { path: PathBuf, problem: String },
    #[error("control socket {path}: the daemon closed the connection before answering")]
    Closed { path: PathBuf },
}
