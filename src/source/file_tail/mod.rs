//! The `api = "file"` source: tails the Data Center audit log files
//! (`<local-home>/log/audit/YYYYMMDD-NNNNN.audit.log`, one JSON entity per line) of every
//! node it is given, exactly once into the sink queues.
//!
//! A poll cycle finds the files ([`discover`]), matches them with their checkpoints
//! ([`checkpoint`]: device + inode + a fingerprint of the first bytes, and the offset after
//! the last complete line queued) and reads them in order ([`tail`]) in slices of complete
//! lines ([`lines`]), each turned into documents by the `normalize --api file` normalizer
//! ([`documents`]). A slice's documents and the checkpoints it moves are committed in one
//! transaction ([`Store::commit_file_slice`]): killed anywhere, the forwarder reads again
//! exactly the lines that were not committed. A full sink queue pauses reading, like the
//! REST sources; a long backlog logs its progress ([`progress`]).
//!
//! [`Store::commit_file_slice`]: crate::state::Store::commit_file_slice

mod checkpoint;
mod discover;
mod documents;
mod lines;
mod progress;
mod tail;

use super::cursor::Cursor;
use super::paging::iso;
use super::{PollReport, Source, SourceError, now_ms};
use crate::config::StartAt;
use crate::metrics::CommittedCounts;
use crate::state::blocking;
use documents::DocumentRules;
pub use tail::TailError;
use tail::{Anomaly, Slice, Tail};

/// Bytes of lines read into one slice at most (besides `slice_max_records`).
const SLICE_MAX_BYTES: u64 = 16 << 20;

/// Run blocking file work off the async threads.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Source {
    /// One poll cycle of a file source: read every file to its last complete line,
    /// committing slice by slice.
    pub(super) async fn tail_files(&self) -> Result<PollReport, SourceError> {
        let name = self.cfg.name.clone();
        let cursor =
            Cursor::load_or_start(&self.store, &name, &self.cfg.start_at, now_ms()).await?;
        let at_end = self.cfg.start_at == StartAt::End;
        // "end" positions the files; a time (or "-24h") skips the records before it.
        let floor_ms = if at_end { i64::MIN } else { cursor.floor_ms() };
        let stored = blocking(&self.store, move |s| s.file_checkpoints(&name)).await?;
        let paths = self.cfg.paths.clone();
        let skip_existing = at_end && !cursor.started();
        let count = self.anomaly_counter();
        let mut tail = off_thread(move || Tail::open(&paths, stored, skip_existing, &count))
            .await
            .map_err(SourceError::from)?;
        let mut progress = progress::Progress::new(tail.backlog_bytes);
        let mut report = PollReport::default();
        let mut must_commit = !cursor.started();
        loop {
            self.wait_for_queue_room().await?;
            let (back, slice) = self.read_slice(tail, floor_ms).await;
            tail = back;
            let slice = slice?;
            if slice.is_empty() && !must_commit {
                break;
            }
            must_commit = false;
            let (lines, bytes) = (slice.counts.lines, slice.bytes);
            report.records_read += lines;
            report.events_new += self.commit_slice(slice).await?;
            report.slices += 1;
            self.status.ok();
            progress.committed(lines, bytes);
        }
        if !cursor.caught_up() {
            let name = self.cfg.name.clone();
            blocking(&self.store, move |s| s.mark_caught_up(&name)).await?;
        }
        Ok(report)
    }

    /// Counts a truncated or replaced file in `caf_source_errors_total{kind}`.
    fn anomaly_counter(&self) -> impl Fn(Anomaly) + Send + 'static {
        let metrics = self.metrics.clone();
        let source = self.cfg.name.clone();
        move |a: Anomaly| {
            let kind = match a {
                Anomaly::Truncated => "file_truncated",
                Anomaly::Replaced => "file_replaced",
            };
            metrics
                .source_errors
                .get_or_create(&crate::metrics::SourceKindLabel {
                    source: source.clone(),
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }

    /// Read one slice on a blocking thread; the tail comes back with it.
    async fn read_slice(
        &self,
        mut tail: Tail,
        floor_ms: i64,
    ) -> (Tail, Result<Slice, SourceError>) {
        let opts = self.normalize.clone();
        let forward_self_generated = self.cfg.forward_self_generated;
        let max_line = usize::try_from(self.cfg.max_response_bytes).unwrap_or(usize::MAX);
        let max_lines = self.cfg.slice_max_records.max(1);
        off_thread(move || {
            let created = iso(now_ms());
            let rules = DocumentRules {
                opts: &opts,
                created: &created,
                floor_ms,
                forward_self_generated,
                max_line,
            };
            let slice = tail
                .read_slice(&rules, max_lines, SLICE_MAX_BYTES)
                .map_err(SourceError::from);
            (tail, slice)
        })
        .await
    }
}

impl Source {
    /// Commit a slice (documents for every sink and the checkpoints it moved, in one
    /// transaction) and count it. Returns how many documents were queued.
    async fn commit_slice(&self, slice: Slice) -> Result<u64, SourceError> {
        let name = self.cfg.name.clone();
        let Slice { commit, counts, .. } = slice;
        let queued = blocking(&self.store, move |s| {
            s.commit_file_slice(&name, &commit)?;
            Ok(commit.events.len() as u64)
        })
        .await?;
        let label = self.metrics.source(&self.cfg.name);
        let m = &self.metrics;
        // Lines are never dropped as duplicates (the checkpoint is exact), and no line is
        // self-generated: this source does not query Confluence.
        m.count_committed(
            &label,
            CommittedCounts {
                read: counts.lines,
                queued,
                rejected: counts.rejected,
                unknown: counts.unknown,
                ..CommittedCounts::default()
            },
        );
        if let Some(t) = counts.newest_ms {
            let seconds = t as f64 / 1000.0;
            let newest = m.newest_record_timestamp.get_or_create(&label);
            if seconds > newest.get() {
                newest.set(seconds);
            }
            m.source_lag
                .get_or_create(&label)
                .set(now_ms() as f64 / 1000.0 - newest.get());
        }
        if queued > 0 {
            self.queued.notify_waiters();
        }
        Ok(queued)
    }
}
