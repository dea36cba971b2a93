//! Lifecycle: how the daemon tells its tasks to run, drain or stop, and the Unix signals that
//! ask it to. Sources and sink workers watch one [`RunMode`]; nothing else owns a stop signal.

use std::time::Duration;

use tokio::sync::watch;

/// What the daemon wants from its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Deliver forever.
    Run,
    /// Deliver until the queue is empty, then return (shutdown, `once`).
    Drain,
    /// Return as soon as possible; what is queued stays queued.
    Stop,
}

/// Sleep, unless told to stop first. True when stopping.
pub async fn sleep_or_stop(mode: &mut watch::Receiver<RunMode>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *mode.borrow() == RunMode::Stop,
        _ = wait_stop(mode) => true,
    }
}

pub async fn wait_stop(mode: &mut watch::Receiver<RunMode>) {
    loop {
        if *mode.borrow_and_update() == RunMode::Stop {
            return;
        }
        if mode.changed().await.is_err() {
            // The daemon is gone: nobody will ever say stop, so never resolve.
            std::future::pending::<()>().await;
        }
    }
}

/// Why `run` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT: exit.
    Stop,
    /// SIGHUP: reload the configuration and start again.
    Reload,
}

/// Wait for SIGTERM or SIGINT (SIGHUP is ignored here).
pub async fn wait_for_stop() {
    while signal().await != Exit::Stop {}
}

pub async fn signal() -> Exit {
    use tokio::signal::unix::{SignalKind, signal};
    let wait = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = wait(SignalKind::terminate()) => Exit::Stop,
        _ = wait(SignalKind::interrupt()) => Exit::Stop,
        _ = wait(SignalKind::hangup()) => Exit::Reload,
    }
}
