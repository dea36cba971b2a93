//! Sources: one task per Confluence instance, from HTTP pages to durably queued documents.
//!
//! A poll cycle reads the window `[cursor - overlap, now - lag]` ([`cursor`]), slice by
//! slice, oldest first ([`pipeline`]: read, prepare, commit). A slice is read page by page
//! ([`paging`] over [`client`]), every page checked against the request that asked for it
//! ([`page_check`]) and split into raw records even when one of them is broken
//! ([`page_parse`], [`page_scan`]). Each slice is deduplicated against the counts earlier windows saw
//! ([`window`]), normalized ([`prepare`]), and committed by [`Store::commit_window`]: the
//! documents are queued for every sink and the cursor moves to the slice's end in one
//! transaction. A fault anywhere before that commit leaves the cursor where it was, so the
//! slice is read again; nothing is lost and the dedupe counts keep it from being doubled. A
//! server that answers something the forwarder cannot make sense of fails the slice loudly
//! (an error, `caf_source_errors_total{kind}`, `/readyz` unready) instead of guessing.
//! [`retention`] warns when the cursor is older than what the server still keeps.
//! `api = "file"` sources tail the DC audit log files instead (`file_tail`).
//!
//! [`Store::commit_window`]: crate::state::Store::commit_window

pub mod client;
pub mod cursor;
mod file_tail;
pub mod organization;
pub mod page_check;
pub mod page_parse;
pub mod page_scan;
pub mod paging;
mod pipeline;
mod prepare;
pub mod replay;
mod retention;
pub mod window;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, watch};

use crate::config::SourceConfig;
use crate::lifecycle::RunMode;
use crate::metrics::{Metrics, SourceKindLabel};
use crate::normalize::NormalizeOptions;
use crate::state::{StateError, Store, blocking};
use client::{Client, FetchError};
use page_check::PageError;

pub use crate::clock::now_ms;

/// Why a poll cycle stopped early. The cursor never moved past what was committed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Page(#[from] PageError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Tail(#[from] file_tail::TailError),
    #[error(transparent)]
    Organization(#[from] organization::OrgError),
}

impl SourceError {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Fetch(e) => e.kind(),
            SourceError::Page(e) => e.kind(),
            SourceError::State(_) => "state",
            SourceError::Tail(_) => "file_read",
            SourceError::Organization(e) => e.kind(),
        }
    }
}

/// What one poll cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub window: Option<(i64, i64)>,
    pub records_read: u64,
    pub events_new: u64,
    /// Commits that moved the cursor (completed slices, and the jumps past a part queued
    /// ahead of it).
    pub slices: u64,
}

/// A source's health, shared with `/readyz`.
#[derive(Debug, Default)]
pub struct SourceStatus {
    inner: Mutex<SourceStatusInner>,
}

#[derive(Debug, Default)]
struct SourceStatusInner {
    last_success: Option<Instant>,
    last_error: Option<String>,
    /// When the first error since the last success happened (`status`).
    failing_since: Option<Instant>,
}

impl SourceStatus {
    /// When the last poll cycle succeeded, and the last error since then.
    pub fn get(&self) -> (Option<Instant>, Option<String>) {
        let s = self.inner.lock().expect("status lock");
        (s.last_success, s.last_error.clone())
    }
    fn ok(&self) {
        let mut s = self.inner.lock().expect("status lock");
        s.last_success = Some(Instant::now());
        s.last_error = None;
        s.failing_since = None;
    }
    fn fail(&self, e: String) {
        let mut s = self.inner.lock().expect("status lock");
        s.last_error = Some(e);
        s.failing_since.get_or_insert_with(Instant::now);
    }
    /// Since when every poll cycle failed, if the last one did.
    pub fn failing_since(&self) -> Option<Instant> {
        self.inner.lock().expect("status lock").failing_since
    }
}

/// One Confluence instance being polled.
pub struct Source {
    cfg: SourceConfig,
    client: Client,
    store: Store,
    metrics: Arc<Metrics>,
    normalize: Arc<NormalizeOptions>,
    queued: Arc<Notify>,
    max_queue_bytes: u64,
    pub status: Arc<SourceStatus>,
    /// Set when this source replays a range instead of polling ([`replay`]).
    replay: Option<Arc<replay::ReplayTarget>>,
    /// Spaces the requests of an organization source (unused by the others); shared with
    /// every reader of the same `events-stream` path in this process.
    org_pacer: Arc<organization::pacing::Pacer>,
}

impl Source {
    pub fn new(
        cfg: SourceConfig,
        store: Store,
        metrics: Arc<Metrics>,
        normalize: Arc<NormalizeOptions>,
        queued: Arc<Notify>,
        max_queue_bytes: u64,
    ) -> Result<Source, FetchError> {
        let rejected_dates = metrics
            .source_errors
            .get_or_create(&SourceKindLabel {
                source: cfg.name.clone(),
                kind: "clock_skew".to_owned(),
            })
            .clone();
        let client = Client::new(&cfg)?.counting_rejected_dates(rejected_dates);
        let org_pacer = organization::pacing::Pacer::for_path(
            &organization::events_stream_url(&cfg),
            cfg.requests_per_minute(),
        );
        Ok(Source {
            cfg,
            client,
            store,
            metrics,
            normalize,
            queued,
            max_queue_bytes,
            status: Arc::default(),
            replay: None,
            org_pacer,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Poll every `poll_interval` until told to stop. Errors are logged, counted and retried
    /// next cycle; the cursor only ever moves on a committed slice.
    pub async fn run(self, mut mode: watch::Receiver<RunMode>) {
        loop {
            if *mode.borrow() != RunMode::Run {
                return;
            }
            let cycle = tokio::select! {
                r = self.poll_once() => Some(r),
                _ = mode.changed() => None,
            };
            match cycle {
                None => return,
                Some(Ok(report)) => {
                    tracing::debug!(?report, "poll cycle done");
                }
                Some(Err(e)) => {
                    tracing::error!(kind = e.kind(), error = %e, "poll cycle failed; the cursor stays where it was and the window is read again next cycle");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = mode.changed() => {}
            }
        }
    }

    /// One full poll cycle: read the current window completely and queue what is new.
    pub async fn poll_once(&self) -> Result<PollReport, SourceError> {
        let started = Instant::now();
        let label = self.metrics.source(&self.cfg.name);
        let mut result = match self.cfg.api {
            crate::normalize::Api::File => self.tail_files().await,
            crate::normalize::Api::Organization => self.poll_organization().await,
            _ => self.poll_window().await,
        };
        // The cycle's commits are durable before the source sleeps (see `state`).
        let synced = blocking(&self.store, |s| s.sync()).await;
        if let (Ok(_), Err(e)) = (&result, synced) {
            result = Err(e.into());
        }
        self.metrics
            .poll_duration
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => {
                self.metrics.polls.get_or_create(&label).inc();
                self.status.ok();
            }
            Err(e) => {
                self.count_error(e.kind());
                self.status.fail(e.to_string());
            }
        }
        result
    }

    fn count_error(&self, kind: &str) {
        self.metrics
            .source_errors
            .get_or_create(&SourceKindLabel {
                source: self.cfg.name.clone(),
                kind: kind.to_owned(),
            })
            .inc();
    }
}
