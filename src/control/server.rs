//! The daemon side of the control socket: bind it privately, answer `status` from the
//! daemon's memory and store, run `replay` inside the daemon (whose store is locked to
//! everyone else) and stream its progress back.
//!
//! Binding: the socket is created under a temporary name, given mode 0600, then renamed
//! over `control.sock`, so no other user ever finds it open, even for a moment; a leftover
//! from a crashed daemon is replaced by that rename. Each connection's peer must run as the
//! daemon's user (or root). The file is removed when the server stops — unless another daemon (after
//! a reload) has replaced it meanwhile.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::protocol::{Reply, Request};
use super::{ControlError, socket_path};
use crate::clock::now_ms;
use crate::config::Config;
use crate::lifecycle::RunMode;
use crate::metrics::Metrics;
use crate::sink::worker::SinkStatus;
use crate::source::SourceStatus;
use crate::source::replay::{ReplayDeps, replaying_source};
use crate::state::{Store, blocking};
use crate::status::today::{Counts, Today};
use crate::status::{self, DaemonState, Live, LiveSink, LiveSource};

/// The longest request line read.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// What the control server needs of the running daemon.
pub struct ControlContext {
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub sources: Vec<(String, Arc<SourceStatus>)>,
    pub sinks: Vec<(String, Arc<SinkStatus>)>,
    /// Wakes the sink workers when a replay queued something.
    pub queued: Arc<Notify>,
    pub today: Today,
    /// Whether the daemon runs, drains or stops.
    pub mode: watch::Receiver<RunMode>,
}

impl ControlContext {
    fn stopping(&self) -> bool {
        *self.mode.borrow() != RunMode::Run
    }
}

/// Bind the control socket in `state.dir` and answer on it until the task is aborted.
pub fn serve(ctx: Arc<ControlContext>) -> Result<(PathBuf, JoinHandle<()>), ControlError> {
    let path = socket_path(&ctx.config.state.dir);
    let (listener, file) = bind_private(&path)?;
    let task = tokio::spawn(accept_loop(listener, file, ctx));
    Ok((path, task))
}

/// The socket file this server created (device and inode), removed when it stops.
struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn bind_private(path: &Path) -> Result<(tokio::net::UnixListener, SocketFile), ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_file_name(format!(".control.{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp).map_err(io)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| std::fs::metadata(path));
    let meta = match placed {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
    };
    let file = SocketFile {
        path: path.to_owned(),
        id: (meta.dev(), meta.ino()),
    };
    listener.set_nonblocking(true).map_err(io)?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(io)?;
    Ok((listener, file))
}

async fn accept_loop(
    listener: tokio::net::UnixListener,
    file: SocketFile,
    ctx: Arc<ControlContext>,
) {
    let _file = file;
    let mut connections = JoinSet::new();
    let mut day_check = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if trusted_peer(&stream) => {
                    connections.spawn(answer(stream, ctx.clone()));
                }
                Ok(_) => tracing::warn!("control socket: refused a connection from another user"),
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = day_check.tick() => ctx.today.roll(now_ms(), ctx.counts()),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The peer runs as the daemon's user, or as root (who could open the store anyway). The
/// socket's mode already keeps others out; this holds even if the mode were changed.
fn trusted_peer(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == me || c.uid() == 0)
}

async fn answer(stream: UnixStream, ctx: Arc<ControlContext>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    if reader.read_line(&mut line).await.is_err() || line.is_empty() {
        return;
    }
    let request = match serde_json::from_str::<Request>(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = send(
                &mut write,
                &Reply::Error(format!("unreadable request: {e}")),
            )
            .await;
            return;
        }
    };
    let reply = match request {
        Request::Status => status_reply(&ctx).await,
        Request::Replay {
            source,
            from_ms,
            to_ms,
            sinks,
        } => match replay(&ctx, &source, (from_ms, to_ms), &sinks, &mut write).await {
            Some(reply) => reply,
            None => return, // the command went away
        },
    };
    let _ = send(&mut write, &reply).await;
}

async fn send(write: &mut OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).expect("a reply serializes");
    line.push(b'\n');
    write.write_all(&line).await
}

async fn status_reply(ctx: &Arc<ControlContext>) -> Reply {
    let live = ctx.live();
    let ctx2 = ctx.clone();
    match blocking(&ctx.store, move |s| {
        status::report(&ctx2.config, s, Some(&live))
    })
    .await
    {
        Ok(mut report) => {
            if ctx.stopping() {
                report.daemon = DaemonState::Stopping;
            }
            Reply::Status(report)
        }
        Err(e) => Reply::Error(e.to_string()),
    }
}

/// Run a replay, sending its progress as it goes; `None` when the command hung up (the
/// replay stops: what it committed stays queued).
async fn replay(
    ctx: &ControlContext,
    source: &str,
    (from_ms, to_ms): (i64, i64),
    sinks: &[String],
    write: &mut OwnedWriteHalf,
) -> Option<Reply> {
    if ctx.stopping() {
        return Some(Reply::Error(
            "the daemon is stopping; replay once it runs again (or once it has stopped)".into(),
        ));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let deps = ReplayDeps {
        store: ctx.store.clone(),
        metrics: ctx.metrics.clone(),
        queued: ctx.queued.clone(),
    };
    let hook = Box::new(move |p: &_| {
        let _ = tx.send(*p);
    });
    let replaying = match replaying_source(&ctx.config, source, sinks, deps, hook) {
        Ok(s) => s,
        Err(e) => return Some(Reply::Error(e.to_string())),
    };
    tracing::info!(
        source,
        from_ms,
        to_ms,
        ?sinks,
        "replay requested on the control socket"
    );
    let run = async move { replaying.replay_range(from_ms, to_ms).await };
    tokio::pin!(run);
    let result = loop {
        tokio::select! {
            biased;
            Some(p) = rx.recv() => {
                if send(write, &Reply::Progress(p)).await.is_err() {
                    tracing::warn!(source, "replay: the command went away; replay stopped (what it queued stays queued)");
                    return None;
                }
            }
            result = &mut run => break result,
        }
    };
    Some(match result {
        Ok(report) => {
            tracing::info!(source, queued = report.progress.queued, "replay done");
            Reply::Replayed(report)
        }
        Err(e) => {
            tracing::error!(source, error = %e, "replay failed");
            Reply::Error(e.to_string())
        }
    })
}

impl ControlContext {
    fn counts(&self) -> Counts {
        let sources: Vec<String> = self.sources.iter().map(|(n, _)| n.clone()).collect();
        let sinks: Vec<String> = self.sinks.iter().map(|(n, _)| n.clone()).collect();
        Counts::read(&self.metrics, &sources, &sinks)
    }

    /// What the daemon knows in memory, for `status`.
    fn live(&self) -> Live {
        let secs = |t: std::time::Instant| t.elapsed().as_secs_f64();
        let (since_ms, today) = self.today.counted(now_ms(), self.counts());
        let sources = self
            .sources
            .iter()
            .zip(&self.config.source)
            .map(|((name, st), cfg)| {
                let (last_success, last_error) = st.get();
                let gaps = self
                    .metrics
                    .gaps
                    .get_or_create(&self.metrics.source(name))
                    .get();
                let live = LiveSource {
                    last_success_age_s: last_success.map(secs),
                    last_error,
                    failing_for_s: st.failing_since().map(secs),
                    events_today: today.sources.get(name).copied().unwrap_or(0),
                    gaps,
                    behind_after_s: (cfg.lag + cfg.poll_interval * 3).as_secs_f64() + 60.0,
                };
                (name.clone(), live)
            })
            .collect();
        let sinks = self
            .sinks
            .iter()
            .map(|(name, st)| {
                let failing = st.failing();
                let live = LiveSink {
                    failing_for_s: failing.as_ref().map(|(t, _)| secs(*t)),
                    last_error: failing.map(|(_, e)| e),
                    delivered_today: today.sinks.get(name).copied().unwrap_or(0),
                };
                (name.clone(), live)
            })
            .collect();
        Live {
            counted_since_ms: since_ms,
            sources,
            sinks,
        }
    }
}
