//! Sources: one task per Confluence instance, from HTTP pages to durably queued documents.
//!
//! A poll cycle reads the window `[cursor - overlap, now - lag]` ([`window`]), slice by
//! slice, oldest first ([`paging`] over [`client`]). Each slice is deduplicated against the
//! counts earlier windows saw, normalized, and committed by [`Store::commit_window`]: the
//! documents are queued for every sink and the cursor moves to the slice's end in one
//! transaction. A fault anywhere before that commit leaves the cursor where it was, so the
//! slice is read again; nothing is lost and the dedupe counts keep it from being doubled.

pub mod client;
pub mod paging;
pub mod window;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::config::{SourceConfig, StartAt};
use crate::lifecycle::RunMode;
use crate::metrics::{Metrics, SourceKindLabel};
use crate::normalize::{self, NormalizeOptions};
use crate::state::blocking;
use crate::state::{CursorState, NewEvent, StateError, Store, WindowCommit};
use client::{Client, FetchError, Transient};
use paging::{Fetched, Pager, SliceFetch};
use window::Window;

pub use crate::clock::now_ms;

/// Why a poll cycle stopped early. The cursor never moved past what was committed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl SourceError {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Fetch(e) => e.kind(),
            SourceError::State(_) => "state",
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

/// A slice deduplicated and normalized, waiting for its commit.
struct Prepared {
    commit: WindowCommit,
    records_read: u64,
    duplicates: u64,
    unknown: u64,
    rejected: u64,
    newest: Option<i64>,
}

impl Prepared {
    /// The cursor position its commit reaches, if it moves the cursor.
    fn completes(&self) -> Option<i64> {
        self.commit.cursor_ms
    }
}

/// One step of reading a window.
enum Step {
    /// Fetch this slice and queue it.
    Read(Window),
    /// Everything up to here is queued: move the cursor.
    Advance(i64),
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
    }
    fn fail(&self, e: String) {
        self.inner.lock().expect("status lock").last_error = Some(e);
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
        Ok(Source {
            cfg,
            client,
            store,
            metrics,
            normalize,
            queued,
            max_queue_bytes,
            status: Arc::default(),
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
                    tracing::error!(error = %e, "poll cycle failed; the cursor stays where it was and the window is read again next cycle");
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
        let mut result = self.poll_inner().await;
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

    async fn poll_inner(&self) -> Result<PollReport, SourceError> {
        let name = self.cfg.name.clone();
        let cursor = match blocking(&self.store, {
            let name = name.clone();
            move |s| s.cursor(&name)
        })
        .await?
        {
            Some(c) => c,
            None => {
                let floor = match self.cfg.start_at {
                    StartAt::Beginning => 0,
                    StartAt::Time(t) => t,
                    StartAt::Ago(d) => now_ms() - d.as_millis() as i64,
                };
                let c = CursorState {
                    cursor_ms: floor,
                    floor_ms: floor,
                    started: false,
                    caught_up: false,
                };
                blocking(&self.store, {
                    let name = name.clone();
                    move |s| s.init_cursor(&name, c)
                })
                .await?;
                tracing::info!(start = %paging::iso(floor), "first run: starting from start_at");
                c
            }
        };
        if self.client.server_skew_ms().is_none() {
            self.client.probe_clock(&self.cfg.url).await;
        }
        // Windows end by the server's clock (records are stamped with it), believed only
        // within max_clock_skew of ours.
        let server_now = self.client.server_now_ms();
        let Some(window) = window::next_window(
            cursor.cursor_ms,
            cursor.floor_ms,
            cursor.started,
            self.cfg.overlap.as_millis() as i64,
            server_now,
            self.cfg.lag.as_millis() as i64,
        ) else {
            return Ok(PollReport::default());
        };
        let on_transient = |t: &Transient| self.count_error(t.kind);
        let pager = Pager {
            client: &self.client,
            base_url: &self.cfg.url,
            api: self.cfg.api,
            page_size: self.cfg.page_size,
            date_format: self.cfg.date_format,
            on_transient: &on_transient,
        };
        if cursor.started {
            self.check_retention(&pager, cursor.cursor_ms, server_now)
                .await;
        }

        let mut report = PollReport {
            window: Some((window.from_ms, window.to_ms)),
            ..Default::default()
        };
        let max = self.cfg.slice_max_records;
        // Oldest slice on top. A slice too large to hold is read newest first up to `max`
        // records, which are queued at once without moving the cursor (the dedupe counts
        // keep a re-read from doubling them); the older rest is cut by the density just seen
        // and read first, then the cursor jumps past the part already queued.
        let progress = Progress::new(window);
        // Two stages joined by a one-slot channel: the reader fetches, deduplicates and
        // normalizes slice k+1 while the committer commits slice k. Commits stay one at a
        // time and in order, and the committer stops at the first failure, so no later slice
        // is ever committed after a failed one and the cursor never passes an uncommitted
        // slice. Deduplicating ahead of the commit before it is sound because the slices of
        // one cycle cover disjoint time ranges: a commit only writes seen-counts of its own.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Prepared>(1);
        let read = async move {
            let tx = tx; // dropped on every return, which ends the committer
            let mut slices = vec![Step::Read(window)];
            while let Some(step) = slices.pop() {
                let slice = match step {
                    Step::Read(w) => w,
                    Step::Advance(to_ms) => {
                        let empty = Window {
                            from_ms: to_ms,
                            to_ms,
                        };
                        let p = self.prepare_slice(empty, Vec::new(), true).await?;
                        if tx.send(p).await.is_err() {
                            return Ok(()); // the committer failed: it reports why
                        }
                        continue;
                    }
                };
                self.wait_for_queue_room().await?;
                let limit = (slice.from_ms < slice.to_ms).then_some(max);
                let prepared = match pager.fetch_slice(slice.from_ms, slice.to_ms, limit).await? {
                    SliceFetch::Partial {
                        records,
                        covered_from_ms,
                    } => {
                        let covered = Window {
                            from_ms: covered_from_ms,
                            to_ms: slice.to_ms,
                        };
                        let count = records.len();
                        // Queued ahead of the cursor; the cursor jumps once the older part,
                        // cut by the density just seen, is queued too.
                        slices.push(Step::Advance(slice.to_ms));
                        let older = window::split(
                            slice.from_ms,
                            covered_from_ms - 1,
                            count,
                            slice.to_ms - covered_from_ms + 1,
                            max,
                        );
                        tracing::debug!(from = %paging::iso(slice.from_ms), to = %paging::iso(slice.to_ms), count, parts = older.len(), "large slice: newest part queued, older part split");
                        slices.extend(older.into_iter().rev().map(Step::Read));
                        self.prepare_slice(covered, records, false).await?
                    }
                    SliceFetch::Complete(records) => {
                        self.prepare_slice(slice, records, true).await?
                    }
                };
                if tx.send(prepared).await.is_err() {
                    return Ok(());
                }
            }
            Ok::<(), SourceError>(())
        };
        let commit = async {
            let mut done = PollReport::default();
            while let Some(p) = rx.recv().await {
                let records = p.records_read;
                let completes = p.completes();
                done.events_new += self.commit_prepared(p).await?;
                done.records_read += records;
                if let Some(to_ms) = completes {
                    done.slices += 1;
                    // A committed slice is progress: a long backfill is not "stuck".
                    self.status.ok();
                    progress.log(to_ms, done.events_new);
                }
            }
            Ok::<PollReport, SourceError>(done)
        };
        let (read, committed) = tokio::join!(read, commit);
        let committed = committed?;
        read?;
        report.records_read = committed.records_read;
        report.events_new = committed.events_new;
        report.slices = committed.slices;
        if !cursor.caught_up {
            blocking(&self.store, move |s| s.mark_caught_up(&name)).await?;
        }
        Ok(report)
    }

    /// Deduplicate and normalize one slice, ready to commit. `advance`: the commit moves the
    /// cursor to the slice's end (every older record is queued by then).
    async fn prepare_slice(
        &self,
        slice: Window,
        records: Vec<Fetched>,
        advance: bool,
    ) -> Result<Prepared, SourceError> {
        let name = self.cfg.name.clone();
        let opts = self.normalize.clone();
        let overlap_ms = self.cfg.overlap.as_millis() as i64;
        let forward_self = self.cfg.forward_self_generated;
        let api = self.cfg.api;
        let prepared = blocking(&self.store, move |store| {
            let seen = store.seen_counts(&name, slice.from_ms, slice.to_ms)?;
            let in_slice: Vec<Fetched> = records
                .into_iter()
                .filter(|r| r.ts_ms >= slice.from_ms && r.ts_ms <= slice.to_ms)
                .collect();
            let (fresh, counts) = window::deduplicate(&in_slice, &seen);
            let created = paging::iso(now_ms());
            let mut events = Vec::with_capacity(fresh.len());
            let mut newest = None;
            let mut unknown = 0u64;
            let mut rejected = 0u64;
            for f in &fresh {
                let id = normalize::event_id(&f.record.hash, f.occurrence);
                let mut doc = Vec::with_capacity(f.record.raw.len() + 512);
                match &f.record.parse_error {
                    None => {
                        let record = normalize::parse_record(api, &f.record.raw)
                            .expect("parsed once already");
                        if !forward_self && is_self_generated(&record) {
                            continue;
                        }
                        match normalize::write_ecs(&record, f.occurrence, &created, &opts, &mut doc)
                        {
                            Ok(meta) => {
                                if !meta.known_action {
                                    unknown += 1;
                                }
                            }
                            Err(e) => {
                                doc.clear();
                                rejected += 1;
                                write_error_doc(&mut doc, f.record, &id, &created, &e.to_string(), &opts);
                            }
                        }
                    }
                    Some(err) => {
                        rejected += 1;
                        tracing::error!(record = %crate::logsafe::clean(&f.record.raw), error = %crate::logsafe::clean(err), "record does not parse; forwarded as a pipeline_error document");
                        write_error_doc(&mut doc, f.record, &id, &created, err, &opts);
                    }
                }
                newest = newest.max(Some(f.record.ts_ms));
                events.push(NewEvent { id, doc });
            }
            let commit = WindowCommit {
                events,
                seen: counts,
                cursor_ms: advance.then_some(slice.to_ms),
                // Queued ahead of the cursor: the older part still needs every count.
                prune_seen_before_ms: if advance {
                    slice.to_ms - overlap_ms
                } else {
                    i64::MIN
                },
            };
            Ok(Prepared {
                commit,
                records_read: in_slice.len() as u64,
                duplicates: (in_slice.len() - fresh.len()) as u64,
                unknown,
                rejected,
                newest,
            })
        })
        .await?;
        Ok(prepared)
    }

    /// Commit a prepared slice: its documents are queued for every sink and (for a
    /// completed slice) the cursor moves, in one transaction. Returns how many were queued.
    async fn commit_prepared(&self, p: Prepared) -> Result<u64, SourceError> {
        let name = self.cfg.name.clone();
        let metrics = self.metrics.clone();
        let n = blocking(&self.store, move |store| {
            let label = metrics.source(&name);
            let Prepared {
                commit,
                records_read,
                duplicates,
                unknown,
                rejected,
                newest,
            } = p;
            store.commit_window(&name, &commit)?;
            let queued = commit.events.len() as u64;
            metrics
                .records_read
                .get_or_create(&label)
                .inc_by(records_read);
            metrics.events_new.get_or_create(&label).inc_by(queued);
            metrics
                .duplicates_dropped
                .get_or_create(&label)
                .inc_by(duplicates);
            metrics
                .unknown_actions
                .get_or_create(&label)
                .inc_by(unknown);
            metrics
                .rejected_records
                .get_or_create(&label)
                .inc_by(rejected);
            if let Some(cursor_ms) = commit.cursor_ms {
                metrics
                    .cursor_timestamp
                    .get_or_create(&label)
                    .set(cursor_ms as f64 / 1000.0);
            }
            if let Some(t) = newest {
                let g = metrics.newest_record_timestamp.get_or_create(&label);
                if t as f64 / 1000.0 > g.get() {
                    g.set(t as f64 / 1000.0);
                }
            }
            let newest_s = metrics.newest_record_timestamp.get_or_create(&label).get();
            if newest_s > 0.0 {
                metrics
                    .source_lag
                    .get_or_create(&label)
                    .set(now_ms() as f64 / 1000.0 - newest_s);
            }
            Ok(queued)
        })
        .await?;
        if n > 0 {
            self.queued.notify_waiters();
        }
        Ok(n)
    }

    /// A cursor older than the server's retention means records may be gone: say so.
    async fn check_retention(&self, pager: &Pager<'_>, cursor_ms: i64, server_now: i64) {
        let Some(url) = pager.retention_url() else {
            return;
        };
        #[derive(serde::Deserialize)]
        struct Retention {
            number: i64,
            units: String,
        }
        let quiet = |_: &Transient| {};
        let fetch = self.client.get(&url, &[], &quiet, |b| {
            serde_json::from_slice::<Retention>(b).map_err(|e| e.to_string())
        });
        let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(10), fetch).await else {
            return;
        };
        let day = 86_400_000i64;
        let unit_ms = match r.units.to_ascii_uppercase().as_str() {
            "YEARS" => 365 * day,
            "MONTHS" => 30 * day,
            "WEEKS" => 7 * day,
            "DAYS" => day,
            "HOURS" => 3_600_000,
            _ => return,
        };
        let oldest_kept = server_now - r.number * unit_ms;
        if cursor_ms < oldest_kept {
            self.metrics
                .gaps
                .get_or_create(&self.metrics.source(&self.cfg.name))
                .inc();
            tracing::error!(
                cursor = %paging::iso(cursor_ms),
                retention = %format!("{} {}", r.number, r.units),
                oldest_kept = %paging::iso(oldest_kept),
                "GAP: the cursor is older than Confluence's audit retention; records between them may have been deleted before they could be read"
            );
        }
    }

    /// Back-pressure: while a sink queue is over `state.max_queue_bytes`, do not poll.
    async fn wait_for_queue_room(&self) -> Result<(), SourceError> {
        let mut warned = false;
        loop {
            let biggest = blocking(&self.store, |s| s.max_queue_bytes()).await?;
            if biggest <= self.max_queue_bytes {
                return Ok(());
            }
            if !warned {
                tracing::warn!(
                    queue_bytes = biggest,
                    max = self.max_queue_bytes,
                    "a sink queue is full; polling paused until it drains (nothing is dropped)"
                );
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn is_self_generated(record: &normalize::Record<'_>) -> bool {
    record
        .raw()
        .contains("atlassian.audit.event.action.audit.search")
}

/// A record that cannot be normalized is still forwarded — raw, with the reason — so a
/// parsing bug never silently loses an audit event.
fn write_error_doc(
    out: &mut Vec<u8>,
    record: &Fetched,
    id: &str,
    created: &str,
    error: &str,
    opts: &NormalizeOptions,
) {
    let doc = serde_json::json!({
        "@timestamp": paging::iso(record.ts_ms),
        "ecs": {"version": "9.4.0"},
        "event": {
            "id": id,
            "kind": "pipeline_error",
            "created": created,
            "module": "confluence",
            "dataset": "confluence.audit",
            "original": &*record.raw,
        },
        "error": {"message": error, "type": "confluence_record_parse"},
        "tags": ["confluence_parse_failure"],
        "data_stream": {"type": "logs", "dataset": "confluence.audit", "namespace": opts.namespace},
    });
    serde_json::to_writer(out, &doc).expect("writing JSON to a Vec");
}

/// Progress of a long backfill, logged at most every few seconds.
struct Progress {
    window: Window,
    started: Instant,
    last: Mutex<Instant>,
}

impl Progress {
    fn new(window: Window) -> Self {
        Progress {
            window,
            started: Instant::now(),
            last: Mutex::new(Instant::now()),
        }
    }

    fn log(&self, done_to_ms: i64, events: u64) {
        let mut last = self.last.lock().expect("progress lock");
        if last.elapsed() < Duration::from_secs(5) {
            return;
        }
        *last = Instant::now();
        let total = (self.window.to_ms - self.window.from_ms).max(1) as f64;
        let done = ((done_to_ms - self.window.from_ms) as f64 / total).clamp(0.0, 1.0);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = events as f64 / elapsed.max(0.001);
        let left = if done > 0.0 {
            elapsed / done * (1.0 - done)
        } else {
            f64::NAN
        };
        tracing::info!(
            events,
            rate = format!("{rate:.0}/s"),
            done = format!("{:.1}%", done * 100.0),
            up_to = %paging::iso(done_to_ms),
            eta = format!("{left:.0}s"),
            "backfill progress"
        );
    }
}
