//! Windows, slices and count-aware deduplication: the arithmetic behind "never twice, never
//! lost", kept free of I/O so it can be tested exhaustively.
//!
//! A poll reads the window `[cursor - overlap, now - lag]`, its end pinned for the whole run.
//! A large window is cut into slices, oldest first, each small enough to hold in memory; a
//! slice that turns out too large is split using the density seen so far. Records are
//! deduplicated against what earlier windows saw by (millisecond, content hash) *counts*:
//! two identical records in one millisecond are two events, and a third read of them is none.

use std::collections::HashMap;

use super::paging::Fetched;
use crate::normalize::ContentHash;

/// The window a poll reads: both ends inclusive, epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The window to read now, if any: from `cursor - overlap` (or the floor on a first run) to
/// `now - lag`.
pub fn next_window(
    cursor_ms: i64,
    floor_ms: i64,
    started: bool,
    overlap_ms: i64,
    server_now_ms: i64,
    lag_ms: i64,
) -> Option<Window> {
    let from_ms = if started {
        (cursor_ms - overlap_ms).max(floor_ms)
    } else {
        floor_ms
    };
    let to_ms = server_now_ms - lag_ms;
    (to_ms >= from_ms && (!started || to_ms > cursor_ms)).then_some(Window { from_ms, to_ms })
}

/// Cut `[from, to]` into slices expected to hold about half of `max` records each (1 to
/// 256 of them), given a density of `count` records per `per_ms` milliseconds measured on
/// newer records. Returned oldest first.
pub fn split(from_ms: i64, to_ms: i64, count: usize, per_ms: i64, max: usize) -> Vec<Window> {
    let span = to_ms - from_ms + 1;
    let estimate = count as f64 / per_ms.max(1) as f64 * span as f64;
    let parts = (estimate / (max as f64 / 2.0)).ceil().clamp(1.0, 256.0) as i64;
    let parts = parts.min(span).max(1);
    let width = span / parts;
    let mut out = Vec::with_capacity(parts as usize);
    let mut start = from_ms;
    for i in 0..parts {
        let end = if i == parts - 1 {
            to_ms
        } else {
            start + width - 1
        };
        out.push(Window {
            from_ms: start,
            to_ms: end,
        });
        start = end + 1;
    }
    out
}

/// One new event after deduplication: the record and its occurrence index.
#[derive(Debug)]
pub struct Fresh<'a> {
    pub record: &'a Fetched,
    pub occurrence: u32,
}

/// Compare the records of a slice with the counts earlier windows saw.
///
/// Returns the new events oldest first (stable within a millisecond) and the counts to store.
/// For each (ms, hash): `n` fetched and `k` seen before give occurrences `k..n` as new events;
/// the stored count becomes `max(k, n)`.
pub fn deduplicate<'a>(
    records: &'a [Fetched],
    seen: &HashMap<(i64, ContentHash), u32>,
) -> (Vec<Fresh<'a>>, HashMap<(i64, ContentHash), u32>) {
    // Oldest first; records arrive newest first, so reverse then sort stably by time.
    let mut order: Vec<&Fetched> = records.iter().rev().collect();
    order.sort_by_key(|r| r.ts_ms);
    let mut counts: HashMap<(i64, ContentHash), u32> = HashMap::with_capacity(records.len());
    let mut fresh = Vec::new();
    for r in order {
        let key = (r.ts_ms, r.hash);
        let n = counts.entry(key).or_insert(0);
        let occurrence = *n;
        *n += 1;
        if occurrence >= seen.get(&key).copied().unwrap_or(0) {
            fresh.push(Fresh {
                record: r,
                occurrence,
            });
        }
    }
    for (key, n) in counts.iter_mut() {
        *n = (*n).max(seen.get(key).copied().unwrap_or(0));
    }
    (fresh, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ts: i64, h: u8) -> Fetched {
        Fetched {
            ts_ms: ts,
            hash: ContentHash([h; 16]),
            raw: format!("{{\"t\":{ts},\"h\":{h}}}").into(),
            parse_error: None,
        }
    }

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
    fn twins_are_two_events_and_rereads_are_none() {
        let first = vec![rec(5, 1), rec(5, 1), rec(4, 2)];
        let (fresh, counts) = deduplicate(&first, &HashMap::new());
        assert_eq!(fresh.len(), 3);
        let occ: Vec<(i64, u32)> = fresh
            .iter()
            .map(|f| (f.record.ts_ms, f.occurrence))
            .collect();
        assert_eq!(occ, [(4, 0), (5, 0), (5, 1)]);
        assert_eq!(counts[&(5, ContentHash([1; 16]))], 2);

        // The overlap reads the same three again, plus a third twin committed late.
        let again = vec![rec(5, 1), rec(5, 1), rec(5, 1), rec(4, 2)];
        let (fresh, counts) = deduplicate(&again, &counts);
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].occurrence, 2);
        assert_eq!(counts[&(5, ContentHash([1; 16]))], 3);

        // A partial re-read (fewer than seen) neither emits nor lowers the count.
        let (fresh, counts) = deduplicate(&again[..1], &counts);
        assert!(fresh.is_empty());
        assert_eq!(counts[&(5, ContentHash([1; 16]))], 3);
    }

    #[test]
    fn split_covers_the_range_without_gaps_or_overlap() {
        for (from, to, count, per_ms, max) in [
            (0i64, 1_000_000i64, 100usize, 1000i64, 50usize),
            (0, 10, 1000, 1, 10),
            (0, 1, 5, 1, 2),
            (-5, 3_000_000_000_000, 60_000, 1_000_000, 50_000),
            (0, 1000, 1, 1_000_000, 5000),
        ] {
            let parts = split(from, to, count, per_ms, max);
            assert!(!parts.is_empty() && parts.len() <= 256, "{parts:?}");
            assert_eq!(parts[0].from_ms, from);
            assert_eq!(parts.last().unwrap().to_ms, to);
            for w in parts.windows(2) {
                assert_eq!(w[0].to_ms + 1, w[1].from_ms);
                assert!(w[0].from_ms <= w[0].to_ms);
            }
        }
    }

    #[test]
    fn slices_follow_the_density() {
        // 5000 records per second over a day: capped at 256 slices.
        assert_eq!(split(0, 86_400_000, 5000, 1000, 5000).len(), 256);
        // 5000 records per hour over a day: 24 h * 5000 / 2500 = 48 slices.
        assert_eq!(split(0, 86_400_000 - 1, 5000, 3_600_000, 5000).len(), 48);
        // Sparse: one slice.
        assert_eq!(split(0, 86_400_000, 10, 86_400_000, 5000).len(), 1);
    }
}
