//! The slice pipeline: one poll cycle, from the window to read to committed slices.
//!
//! Three stages. *Read* walks the window as a stretch, oldest slice first, each slice sized
//! by what the previous ones held (empty: four times as wide; dense: narrower) and fetched through
//! [`Pager`]. *Prepare* deduplicates and normalizes a slice ([`prepare`](super::prepare)).
//! *Commit* queues its documents for every sink and moves the cursor in one transaction.
//! Read and prepare run one slice ahead of commit (a one-slot channel): slice k+1 is fetched
//! while slice k commits. Commits stay one at a time and in order, and the committer stops at
//! the first failure, so no later slice is ever committed after a failed one and the cursor
//! never passes an uncommitted slice.
//!
//! A slice too large to hold is read newest first up to `slice_max_records`; those records
//! are queued at once without moving the cursor (the dedupe counts keep a re-read from
//! doubling them), the older rest is read as a stretch of its own, then the cursor jumps past
//! the part queued ahead. A single millisecond too large to hold is queued in parts the same
//! way, each part continuing the count of identical records where the previous one stopped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::cursor::Cursor;
use super::page_check::OutOfWindowHook;
use super::paging::{self, Pager, Resume, SliceFetch};
use super::prepare::{Carried, Prepared, carry};
use super::window::{self, Window};
use super::{PollReport, Source, SourceError, now_ms};
use crate::metrics::CommittedCounts;
use crate::state::blocking;

use super::client::Transient;

/// One step of reading a window; the steps left form a stack, the next to run on top.
enum Step {
    /// Read `[from_ms, to_ms]` oldest slice first, the first slice `width_ms` wide.
    Stretch {
        from_ms: i64,
        to_ms: i64,
        width_ms: i64,
    },
    /// Go on reading `slice` where a part stopped inside `resume.ms`.
    Resume {
        slice: Window,
        resume: Resume,
        carried: Carried,
    },
    /// Everything up to here is queued: move the cursor.
    Advance(i64),
}

/// What a reading step reads: the slice, where it resumes, the counts it carries, and the
/// rest of its stretch (read after it).
type Read = (Window, Option<Resume>, Carried, Option<(i64, i64)>);

impl Step {
    /// The read this step is, or (`Err`) the cursor position an `Advance` moves to.
    fn into_read(self) -> Result<Read, i64> {
        match self {
            Step::Advance(to_ms) => Err(to_ms),
            Step::Stretch {
                from_ms,
                to_ms,
                width_ms,
            } => {
                let slice = window::oldest_slice(from_ms, to_ms, width_ms);
                let rest = (slice.to_ms < to_ms).then_some((slice.to_ms + 1, to_ms));
                Ok((slice, None, Carried::new(), rest))
            }
            Step::Resume {
                slice,
                resume,
                carried,
            } => Ok((slice, Some(resume), carried, None)),
        }
    }
}

impl Source {
    /// One poll cycle: load the cursor, read its window, commit slice by slice.
    pub(super) async fn poll_window(&self) -> Result<PollReport, SourceError> {
        let name = self.cfg.name.clone();
        let cursor =
            Cursor::load_or_start(&self.store, &name, &self.cfg.start_at, now_ms()).await?;
        cursor.publish(&self.metrics, &name, now_ms());
        if self.client.server_skew_ms().is_none() {
            self.client.probe_clock(&self.cfg.url).await;
        }
        // Windows end by the server's clock (records are stamped with it), believed only
        // within max_clock_skew of ours.
        let server_now = self.client.server_now_ms();
        let Some(window) = cursor.next_window(
            self.cfg.overlap.as_millis() as i64,
            server_now,
            self.cfg.lag.as_millis() as i64,
        ) else {
            return Ok(PollReport::default());
        };
        let mut report = self
            .with_pager(async |pager| {
                if cursor.started() {
                    self.check_retention(pager, cursor.position_ms(), server_now)
                        .await;
                }
                self.read_and_commit(pager, window).await
            })
            .await?;
        report.window = Some((window.from_ms, window.to_ms));
        if !cursor.caught_up() {
            blocking(&self.store, move |s| s.mark_caught_up(&name)).await?;
        }
        Ok(report)
    }

    /// Run `f` with this source's [`Pager`], its faults counted in the source's metrics.
    pub(super) async fn with_pager<T>(&self, f: impl AsyncFnOnce(&Pager<'_>) -> T) -> T {
        let label = self.metrics.source(&self.cfg.name);
        let on_transient = |t: &Transient| self.count_error(t.kind);
        let on_out_of_window: OutOfWindowHook<'_> = &|n: u64| {
            self.metrics.out_of_window.get_or_create(&label).inc_by(n);
        };
        let pager = Pager {
            client: &self.client,
            base_url: &self.cfg.url,
            api: self.cfg.api,
            page_size: self.cfg.page_size,
            date_format: self.cfg.date_format,
            on_transient: &on_transient,
            on_out_of_window,
        };
        f(&pager).await
    }

    /// The read/prepare stage and the commit stage, joined by a one-slot channel.
    pub(super) async fn read_and_commit(
        &self,
        pager: &Pager<'_>,
        window: Window,
    ) -> Result<PollReport, SourceError> {
        let progress = Progress::new(window);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Prepared>(1);
        let read = async move {
            let tx = tx; // dropped on every return, which ends the committer
            let mut steps = vec![Step::Stretch {
                from_ms: window.from_ms,
                to_ms: window.to_ms,
                width_ms: window
                    .to_ms
                    .saturating_sub(window.from_ms)
                    .saturating_add(1),
            }];
            while let Some(step) = steps.pop() {
                let prepared = self.read_step(pager, step, &mut steps).await?;
                if tx.send(prepared).await.is_err() {
                    return Ok(()); // the committer failed: it reports why
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
        Ok(committed)
    }

    /// Run one step: fetch and prepare what it reads, and push the steps it leaves.
    async fn read_step(
        &self,
        pager: &Pager<'_>,
        step: Step,
        steps: &mut Vec<Step>,
    ) -> Result<Prepared, SourceError> {
        let max = self.cfg.slice_max_records.max(1);
        let (slice, resume, carried, rest) = match step.into_read() {
            Ok(read) => read,
            Err(to_ms) => {
                let empty = Window {
                    from_ms: to_ms,
                    to_ms,
                };
                return self
                    .prepare_slice(empty, Vec::new(), true, Carried::new())
                    .await;
            }
        };
        let width_ms = slice.to_ms - slice.from_ms + 1;
        // The rest of the stretch, read after this slice and what it leaves.
        let push_rest = |steps: &mut Vec<Step>, width_ms: i64| {
            if let Some((from_ms, to_ms)) = rest {
                steps.push(Step::Stretch {
                    from_ms,
                    to_ms,
                    width_ms,
                });
            }
        };
        self.wait_for_queue_room().await?;
        match pager
            .fetch_slice(slice.from_ms, slice.to_ms, max, resume)
            .await?
        {
            SliceFetch::Complete(records) => {
                push_rest(steps, window::next_width(width_ms, records.len(), max));
                self.prepare_slice(slice, records, true, carried).await
            }
            SliceFetch::Partial {
                records,
                covered_from_ms,
            } => {
                let count = records.len();
                let per_ms = slice.to_ms - covered_from_ms + 1;
                let dense = window::width_for_density(count, per_ms, max);
                push_rest(steps, dense);
                // Queued ahead of the cursor; the cursor jumps once the older part, read
                // by the density just seen, is queued too.
                steps.push(Step::Advance(slice.to_ms));
                steps.push(Step::Stretch {
                    from_ms: slice.from_ms,
                    to_ms: covered_from_ms - 1,
                    width_ms: dense,
                });
                tracing::debug!(from = %paging::iso(slice.from_ms), to = %paging::iso(slice.to_ms), count, "large slice: newest part queued, the older part read next");
                let covered = Window {
                    from_ms: covered_from_ms,
                    to_ms: slice.to_ms,
                };
                self.prepare_slice(covered, records, false, carried).await
            }
            SliceFetch::Part { records, resume } => {
                push_rest(steps, width_ms);
                tracing::debug!(ms = %paging::iso(resume.ms), count = records.len(), "a millisecond too large to hold: part queued, the rest read next");
                steps.push(Step::Resume {
                    slice,
                    resume: resume.clone(),
                    carried: carry(&carried, &records, resume.ms),
                });
                self.prepare_slice(slice, records, false, carried).await
            }
        }
    }

    /// Commit a prepared slice: its documents are queued for every sink and (for a
    /// completed slice) the cursor moves, in one transaction. Returns how many were queued.
    async fn commit_prepared(&self, p: Prepared) -> Result<u64, SourceError> {
        if let Some(target) = &self.replay {
            return self.commit_replayed(p, target).await;
        }
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
                self_generated: (self_generated_read, self_generated_queued),
                newest,
            } = p;
            store.commit_window(&name, &commit)?;
            let queued = commit.events.len() as u64;
            metrics.count_committed(
                &label,
                CommittedCounts {
                    read: records_read,
                    queued,
                    duplicates,
                    unknown,
                    rejected,
                    self_generated_read,
                    self_generated_queued,
                },
            );
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

    /// Back-pressure: while a sink queue is over `state.max_queue_bytes`, do not poll.
    pub(super) async fn wait_for_queue_room(&self) -> Result<(), SourceError> {
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
