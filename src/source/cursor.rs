//! The cursor: how far a source has durably queued, and the rules that keep it honest.
//!
//! The cursor is the one number that decides what is still to be read, so every rule about
//! it lives here, each stated as the invariant it keeps. It only ever moves inside
//! [`Store::commit_window`](crate::state::Store::commit_window), in the same transaction that
//! queues the records it passes; this module decides where it starts and which window the
//! next poll reads from it.

use crate::config::StartAt;
use crate::metrics::Metrics;
use crate::state::{CursorState, StateError, Store, blocking};

use super::paging::iso;
use super::window::Window;

/// A source's cursor as loaded at the start of a poll cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    state: CursorState,
}

impl Cursor {
    /// The cursor as stored, or — on the very first run — a new one at `start_at`.
    ///
    /// Invariant: a new cursor sits at its floor and is not `started`, so the first window
    /// reads from the floor itself (nothing before `start_at` is ever asked for, nothing
    /// after it skipped). It is stored before any window is read, so a restart during the
    /// first backfill resolves `start_at = "…ago"` against the first start, not a later one.
    pub async fn load_or_start(
        store: &Store,
        source: &str,
        start_at: &StartAt,
        now_ms: i64,
    ) -> Result<Cursor, StateError> {
        let name = source.to_owned();
        if let Some(state) = blocking(store, move |s| s.cursor(&name)).await? {
            return Ok(Cursor { state });
        }
        let floor = Self::start_position(start_at, now_ms);
        let state = CursorState {
            cursor_ms: floor,
            floor_ms: floor,
            started: false,
            caught_up: false,
        };
        let name = source.to_owned();
        blocking(store, move |s| s.init_cursor(&name, state)).await?;
        tracing::info!(start = %iso(floor), "first run: starting from start_at");
        Ok(Cursor { state })
    }

    /// Where a new cursor starts: `start_at` resolved against `now_ms` (never before 1970).
    pub fn start_position(start_at: &StartAt, now_ms: i64) -> i64 {
        match *start_at {
            StartAt::Beginning => 0,
            StartAt::Time(t) => t,
            StartAt::End => now_ms,
            StartAt::Ago(d) => {
                now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
        }
        .max(0)
    }

    /// Every record at or before this time (epoch ms) is queued for every sink.
    pub fn position_ms(&self) -> i64 {
        self.state.cursor_ms
    }

    /// Never read before this (the configured `start_at`, resolved at the first start).
    pub fn floor_ms(&self) -> i64 {
        self.state.floor_ms
    }

    /// Whether the source has read up to the present at least once (a retention check
    /// before that would only repeat what `start_at` already chose).
    pub fn started(&self) -> bool {
        self.state.started
    }

    /// Whether a poll cycle has completed since the cursor was created.
    pub fn caught_up(&self) -> bool {
        self.state.caught_up
    }

    /// The window the next poll reads: from `position - overlap` (never below the floor;
    /// the floor itself on a first run) to `server_now - lag`, both inclusive.
    ///
    /// Invariant: the window always starts at or before the position, so a record committed
    /// late just behind the cursor is read again (the dedupe counts keep the re-read from
    /// doubling anything), and it is `None` rather than a window that would not move the
    /// cursor forward.
    pub fn next_window(&self, overlap_ms: i64, server_now_ms: i64, lag_ms: i64) -> Option<Window> {
        next_window(
            self.state.cursor_ms,
            self.state.floor_ms,
            self.state.started,
            overlap_ms,
            server_now_ms,
            lag_ms,
        )
    }

    /// Publish the position to the source gauges, so that they exist from the first poll
    /// (before any slice commits) and say where the source stands.
    ///
    /// Invariant: `caf_source_cursor_timestamp_seconds` is the committed position; the lag
    /// counts from the newest queued record, or from the position while there is none yet.
    pub fn publish(&self, metrics: &Metrics, source: &str, now_ms: i64) {
        let label = metrics.source(source);
        let position_s = self.state.cursor_ms as f64 / 1000.0;
        metrics
            .cursor_timestamp
            .get_or_create(&label)
            .set(position_s);
        let newest_s = metrics.newest_record_timestamp.get_or_create(&label).get();
        let since_s = if newest_s > 0.0 { newest_s } else { position_s };
        metrics
            .source_lag
            .get_or_create(&label)
            .set((now_ms as f64 / 1000.0 - since_s).max(0.0));
    }
}

/// [`Cursor::next_window`] on plain numbers (kept free of the store for tests).
pub fn next_window(
    cursor_ms: i64,
    floor_ms: i64,
    started: bool,
    overlap_ms: i64,
    server_now_ms: i64,
    lag_ms: i64,
) -> Option<Window> {
    let from_ms = if started {
        cursor_ms.saturating_sub(overlap_ms).max(floor_ms)
    } else {
        floor_ms
    };
    let to_ms = server_now_ms.saturating_sub(lag_ms);
    (to_ms >= from_ms && (!started || to_ms > cursor_ms)).then_some(Window { from_ms, to_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_window_starts_at_floor_then_overlaps() {
        assert_eq!(
            next_window(0, 1000, false, 300, 10_000, 60),
            Some(Window {
                from_ms: 1000,
                to_ms: 9940
            })
        );
        assert_eq!(
            next_window(9940, 1000, true, 300, 20_000, 60),
            Some(Window {
                from_ms: 9640,
                to_ms: 19_940
            })
        );
        // Overlap never reaches before the floor.
        assert_eq!(
            next_window(1100, 1000, true, 300, 20_000, 60)
                .unwrap()
                .from_ms,
            1000
        );
        // Nothing new yet: no window.
        assert_eq!(next_window(9940, 0, true, 300, 10_000, 60), None);
    }

    #[test]
    fn start_position_never_precedes_1970() {
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(Cursor::start_position(&StartAt::Beginning, 5), 0);
        assert_eq!(Cursor::start_position(&StartAt::Ago(day), 1000), 0);
        assert_eq!(
            Cursor::start_position(&StartAt::Ago(day), 200_000_000),
            200_000_000 - 86_400_000
        );
    }
}
