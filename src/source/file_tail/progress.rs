//! The backfill progress log of a file source: lines and bytes per second, share of the
//! backlog done, time left — like the REST sources' log, counted in bytes of files instead
//! of time.

use std::time::{Duration, Instant};

/// Progress through the bytes that were unread when a cycle began.
pub struct Progress {
    backlog_bytes: u64,
    started: Instant,
    last: Instant,
    lines: u64,
    bytes: u64,
}

impl Progress {
    pub fn new(backlog_bytes: u64) -> Progress {
        Progress {
            backlog_bytes,
            started: Instant::now(),
            last: Instant::now(),
            lines: 0,
            bytes: 0,
        }
    }

    /// Count a committed slice; logs at most every five seconds.
    pub fn committed(&mut self, lines: u64, bytes: u64) {
        self.lines += lines;
        self.bytes += bytes;
        if self.last.elapsed() < Duration::from_secs(5) {
            return;
        }
        self.last = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.bytes as f64 / elapsed;
        // Files grow while they are read: the backlog is at least what was read.
        let total = self.backlog_bytes.max(self.bytes);
        let left = (total - self.bytes) as f64 / rate.max(1.0);
        tracing::info!(
            lines = self.lines,
            rate = format!(
                "{:.0} lines/s, {:.1} MiB/s",
                self.lines as f64 / elapsed,
                rate / (1 << 20) as f64
            ),
            done = format!("{:.1}%", self.bytes as f64 * 100.0 / total.max(1) as f64),
            eta = format!("{left:.0}s"),
            "backfill progress"
        );
    }
}
