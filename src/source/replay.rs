//! Replay: read a time range of a source again and queue it for chosen sinks, through the
//! same read and prepare stages as polling (paging, page checks, normalization), but with
//! its own commit: documents go to the chosen sinks only ([`Store::enqueue_for`]), one
//! transaction per slice, and neither the cursor nor the dedupe counts of normal polling are
//! touched. Records are numbered afresh, exactly as their first read numbered them, so each
//! carries the `event.id` it was first delivered with, and the document is tagged
//! `confluence.audit.replayed: true`.
//!
//! Only a range behind the cursor is replayed (what lies ahead is still to be polled), and
//! never one older than the server's published retention (those records are gone).
//!
//! An organization source replays through `organization/replay.rs`: same rules, its own
//! paging (`from`/`to` on processing time).
//!
//! [`Store::enqueue_for`]: crate::state::Store::enqueue_for

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::paging::iso;
use super::prepare::Prepared;
use super::window::Window;
use super::{Source, SourceError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::normalize::Api;
use crate::state::{NewEvent, StateError, Store, blocking};

/// Where a replay stands (sent to the `replay` command as it goes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayProgress {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Every record up to here is queued again (epoch ms); `from_ms - 1` before the first.
    pub done_to_ms: i64,
    pub records_read: u64,
    /// Documents queued, per chosen sink.
    pub queued: u64,
}

/// Called after every committed slice.
pub type ProgressHook = Box<dyn Fn(&ReplayProgress) + Send + Sync>;

/// What a replaying source commits to, and whom it tells.
pub struct ReplayTarget {
    sinks: Vec<String>,
    on_progress: ProgressHook,
    progress: Mutex<ReplayProgress>,
}

/// Why a replay was refused or stopped. Slices committed before a failure stay queued.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "source {name:?}: api {api:?} cannot be replayed (replay reads the APIs: legacy, cloud, auditing, organization)"
    )]
    Unsupported { name: String, api: &'static str },
    #[error("no source named {name:?} (configured sources: {known})")]
    UnknownSource { name: String, known: String },
    #[error("no sink named {name:?} (configured sinks: {known})")]
    UnknownSink { name: String, known: String },
    #[error("--from {from} is after --to {to}")]
    EmptyRange { from: String, to: String },
    #[error(
        "source {name:?} has not queued anything yet: nothing to replay (its first poll reads the range)"
    )]
    NotStarted { name: String },
    #[error(
        "source {name:?}: --to {to} is after its cursor {cursor}: records after the cursor are still to be polled; replay up to {cursor} at most"
    )]
    AheadOfCursor {
        name: String,
        to: String,
        cursor: String,
    },
    #[error(
        "source {name:?}: --from {from} is beyond the audit log's retention ({retention}: nothing before {oldest_kept} is kept); replay from {oldest_kept} or later"
    )]
    BeyondRetention {
        name: String,
        from: String,
        retention: String,
        oldest_kept: String,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl From<StateError> for ReplayError {
    fn from(e: StateError) -> Self {
        ReplayError::Source(e.into())
    }
}

/// What a finished replay did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayReport {
    pub progress: ReplayProgress,
    /// The server's retention, when it publishes one ("3 YEARS").
    pub retention: Option<String>,
    pub sinks: Vec<String>,
}

impl ReplayTarget {
    pub fn new(sinks: Vec<String>, on_progress: ProgressHook) -> Arc<ReplayTarget> {
        Arc::new(ReplayTarget {
            sinks,
            on_progress,
            progress: Mutex::default(),
        })
    }

    /// The sinks the replay queues for.
    pub(super) fn sinks(&self) -> &[String] {
        &self.sinks
    }

    /// A replay of `[from_ms, to_ms]` begins: nothing done yet.
    pub(super) fn begin(&self, from_ms: i64, to_ms: i64) {
        *self.progress.lock().expect("progress lock") = ReplayProgress {
            from_ms,
            to_ms,
            done_to_ms: from_ms - 1,
            ..Default::default()
        };
    }

    /// One slice committed: `read` records, `queued` documents, everything up to `done_to_ms`
    /// (when known) queued again. Tells the hook.
    pub(super) fn advance(&self, read: u64, queued: u64, done_to_ms: Option<i64>) {
        let progress = {
            let mut progress = self.progress.lock().expect("progress lock");
            progress.records_read += read;
            progress.queued += queued;
            if let Some(done) = done_to_ms {
                progress.done_to_ms = progress.done_to_ms.max(done);
            }
            *progress
        };
        (self.on_progress)(&progress);
    }

    /// What the replay did, with the retention the server states.
    pub(super) fn report(&self, retention: Option<String>) -> ReplayReport {
        ReplayReport {
            progress: *self.progress.lock().expect("progress lock"),
            retention,
            sinks: self.sinks.clone(),
        }
    }
}

/// The pieces of a daemon a replay works with.
pub struct ReplayDeps {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Wakes the sink workers (a running daemon's; a fresh one when it is stopped).
    pub queued: Arc<Notify>,
}

/// The source `name` of `cfg`, set to replay into `sinks` (empty: every configured sink).
/// Unknown names are refused, naming the configured ones.
pub fn replaying_source(
    cfg: &Config,
    name: &str,
    sinks: &[String],
    deps: ReplayDeps,
    on_progress: ProgressHook,
) -> Result<Source, ReplayError> {
    let known = |names: &mut dyn Iterator<Item = &String>| {
        names.map(String::as_str).collect::<Vec<_>>().join(", ")
    };
    let Some(source_cfg) = cfg.source.iter().find(|s| s.name == name) else {
        return Err(ReplayError::UnknownSource {
            name: name.to_owned(),
            known: known(&mut cfg.source.iter().map(|s| &s.name)),
        });
    };
    let configured: Vec<String> = cfg.sink.iter().map(|s| s.name.clone()).collect();
    if let Some(unknown) = sinks.iter().find(|s| !configured.contains(s)) {
        return Err(ReplayError::UnknownSink {
            name: unknown.clone(),
            known: known(&mut configured.iter()),
        });
    }
    let chosen = if sinks.is_empty() {
        configured
    } else {
        sinks.to_vec()
    };
    let source = Source::new(
        source_cfg.clone(),
        deps.store,
        deps.metrics,
        Arc::new(cfg.normalize.clone()),
        deps.queued,
        cfg.state.max_queue_bytes,
    )
    .map_err(SourceError::from)?;
    Ok(source.replaying(ReplayTarget::new(chosen, on_progress)))
}

impl Source {
    /// This source, replaying into `target` instead of polling.
    fn replaying(mut self, target: Arc<ReplayTarget>) -> Source {
        self.replay = Some(target);
        self
    }

    /// Read `[from_ms, to_ms]` again and queue it for the target's sinks.
    pub async fn replay_range(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<ReplayReport, ReplayError> {
        let name = self.cfg.name.clone();
        let target = self
            .replay
            .clone()
            .expect("replay_range on a replaying source");
        if from_ms > to_ms {
            return Err(ReplayError::EmptyRange {
                from: iso(from_ms),
                to: iso(to_ms),
            });
        }
        match self.cfg.api {
            Api::Legacy | Api::Cloud | Api::Auditing => {}
            Api::Organization => {
                return self.replay_organization(from_ms, to_ms, &target).await;
            }
            Api::File => {
                return Err(ReplayError::Unsupported {
                    name,
                    api: self.cfg.api.as_str(),
                });
            }
        }
        let cursor = blocking(&self.store, {
            let name = name.clone();
            move |s| s.cursor(&name)
        })
        .await?;
        let cursor = match cursor {
            Some(c) if c.started => c.cursor_ms,
            _ => return Err(ReplayError::NotStarted { name }),
        };
        if to_ms > cursor {
            return Err(ReplayError::AheadOfCursor {
                name,
                to: iso(to_ms),
                cursor: iso(cursor),
            });
        }
        target.begin(from_ms, to_ms);
        if self.client.server_skew_ms().is_none() {
            self.client.probe_clock(&self.cfg.url).await;
        }
        let server_now = self.client.server_now_ms();
        let retention = self
            .with_pager(async |pager| {
                let retention = self.retention(pager, server_now).await;
                if let Some(r) = &retention
                    && from_ms < r.oldest_kept_ms
                {
                    return Err(ReplayError::BeyondRetention {
                        name: name.clone(),
                        from: iso(from_ms),
                        retention: r.stated.clone(),
                        oldest_kept: iso(r.oldest_kept_ms),
                    });
                }
                let window = Window { from_ms, to_ms };
                self.read_and_commit(pager, window).await?;
                Ok(retention)
            })
            .await?;
        blocking(&self.store, |s| s.sync()).await?;
        Ok(target.report(retention.map(|r| r.stated)))
    }

    /// The replay's commit: the slice's documents, tagged, for the chosen sinks only.
    pub(super) async fn commit_replayed(
        &self,
        p: Prepared,
        target: &Arc<ReplayTarget>,
    ) -> Result<u64, SourceError> {
        let events: Vec<NewEvent> = p
            .commit
            .events
            .into_iter()
            .map(|e| NewEvent {
                doc: tag_replayed(&e.doc),
                id: e.id,
            })
            .collect();
        let queued = events.len() as u64;
        let sinks = target.sinks.clone();
        blocking(&self.store, move |s| s.enqueue_for(&sinks, &events)).await?;
        if queued > 0 {
            self.queued.notify_waiters();
        }
        target.advance(p.records_read, queued, p.commit.cursor_ms);
        Ok(queued)
    }
}

/// The document with `confluence.audit.replayed: true` added.
pub fn tag_replayed(doc: &[u8]) -> Vec<u8> {
    let mut value: serde_json::Value =
        serde_json::from_slice(doc).expect("documents the forwarder wrote are JSON");
    let confluence = value
        .as_object_mut()
        .expect("a document is a JSON object")
        .entry("confluence")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(c) = confluence.as_object_mut() {
        let audit = c.entry("audit").or_insert_with(|| serde_json::json!({}));
        if let Some(a) = audit.as_object_mut() {
            a.insert("replayed".into(), serde_json::Value::Bool(true));
        }
    }
    serde_json::to_vec(&value).expect("writing JSON to a Vec")
}

#[cfg(test)]
mod tests {
    use super::tag_replayed;

    #[test]
    fn tagging_keeps_the_document_and_adds_the_flag() {
        let doc = br#"{"event":{"id":"abc"},"confluence":{"audit":{"category":"Spaces"}}}"#;
        let tagged: serde_json::Value = serde_json::from_slice(&tag_replayed(doc)).unwrap();
        assert_eq!(tagged["event"]["id"], "abc");
        assert_eq!(tagged["confluence"]["audit"]["category"], "Spaces");
        assert_eq!(tagged["confluence"]["audit"]["replayed"], true);
        let bare: serde_json::Value =
            serde_json::from_slice(&tag_replayed(br#"{"event":{"kind":"pipeline_error"}}"#))
                .unwrap();
        assert_eq!(bare["confluence"]["audit"]["replayed"], true);
    }
}
