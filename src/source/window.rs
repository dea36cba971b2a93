//! Windows, slices and count-aware deduplication: the arithmetic behind "never twice, never
//! lost", kept free of I/O so it can be tested exhaustively.
//!
//! A poll reads the window `[cursor - overlap, now - lag]`, its end pinned for the whole run.
//! The window is read as a *stretch*, oldest slice first, each slice small enough to hold in
//! memory: a slice that came back empty makes the next one four times as wide (56 empty years
//! cost a dozen requests, not thousands), one that held records sizes the next by the density
//! it showed. Records are deduplicated against what earlier windows saw by (millisecond,
//! content hash) *counts*: two identical records one response returns side by side are two
//! events, the same record read again (another window, another page) is none.

use std::collections::HashMap;

use super::paging::Fetched;
use crate::normalize::ContentHash;

/// The window a poll reads: both ends inclusive, epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// How wide the next slice of a stretch read oldest first should be, after a slice `width`
/// ms wide held `count` records: about half of `max` records are aimed at. A slice that
/// came back empty makes the next one four times as wide, so an empty stretch costs requests
/// logarithmic in its length (overshooting into dense data is cheap: that slice is read up to
/// `max` and the rest re-planned); one that held records is scaled by the density it showed
/// (at most doubling, so one sparse slice does not make the next one huge).
pub fn next_width(width: i64, count: usize, max: usize) -> i64 {
    let width = width.max(1);
    if count == 0 {
        return width.saturating_mul(4);
    }
    let target = (max as f64 / 2.0).max(1.0);
    let scaled = width as f64 * target / count as f64;
    (scaled.min(width.saturating_mul(2) as f64) as i64).max(1)
}

/// The width expected to hold about half of `max` records, given `count` records seen over
/// `per_ms` milliseconds (newer records of the same read).
pub fn width_for_density(count: usize, per_ms: i64, max: usize) -> i64 {
    if count == 0 {
        return i64::MAX / 4;
    }
    let target = (max as f64 / 2.0).max(1.0);
    (target * per_ms.max(1) as f64 / count as f64).clamp(1.0, (i64::MAX / 4) as f64) as i64
}

/// The oldest slice of `[from_ms, to_ms]` that is `width` ms wide (or all of it).
pub fn oldest_slice(from_ms: i64, to_ms: i64, width: i64) -> Window {
    let end = from_ms.saturating_add(width.max(1) - 1).min(to_ms);
    Window {
        from_ms,
        to_ms: end,
    }
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
/// Identical records count as twins only when one listing returned them side by side (see
/// [`Fetched::listing`]): for each (ms, hash), the true count is the largest count any one
/// listing of this slice returned, never a sum over listings, so a record that paging made
/// the server send twice is one event. With `n` that count and `k` seen before, occurrences
/// `k..n` are new events; the stored count becomes `max(k, n)`.
///
/// `carried`: counts the same listing already returned in earlier parts of this slice (a
/// millisecond too large to hold, queued in parts); that listing's occurrences continue from
/// them.
pub fn deduplicate<'a>(
    records: &'a [Fetched],
    seen: &HashMap<(i64, ContentHash), u32>,
    carried: &HashMap<(i64, ContentHash), u32>,
) -> (Vec<Fresh<'a>>, HashMap<(i64, ContentHash), u32>) {
    /// One (ms, hash): the listing being counted, its count so far, the best other listing.
    struct Tally {
        listing: u32,
        run: u32,
        best: u32,
    }
    // Oldest first; records arrive newest first, so reverse then sort stably by time, and
    // group each millisecond's records by listing.
    let mut order: Vec<&Fetched> = records.iter().rev().collect();
    order.sort_by_key(|r| (r.ts_ms, r.listing));
    let mut tallies: HashMap<(i64, ContentHash), Tally> = HashMap::with_capacity(records.len());
    let mut fresh = Vec::new();
    for r in order {
        let key = (r.ts_ms, r.hash);
        let t = tallies.entry(key).or_insert_with(|| Tally {
            listing: r.listing,
            run: carried.get(&key).copied().unwrap_or(0),
            best: 0,
        });
        if t.listing != r.listing {
            t.best = t.best.max(t.run);
            t.run = 0;
            t.listing = r.listing;
        }
        let occurrence = t.run;
        t.run += 1;
        let before = seen.get(&key).copied().unwrap_or(0).max(t.best);
        if occurrence >= before {
            fresh.push(Fresh {
                record: r,
                occurrence,
            });
        }
    }
    let counts = tallies
        .into_iter()
        .map(|(key, t)| {
            let n = t.run.max(t.best).max(seen.get(&key).copied().unwrap_or(0));
            (key, n)
        })
        .collect();
    (fresh, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ts: i64, h: u8) -> Fetched {
        rec_in(ts, h, 0)
    }

    fn rec_in(ts: i64, h: u8, listing: u32) -> Fetched {
        Fetched {
            ts_ms: ts,
            hash: ContentHash([h; 16]),
            raw: format!("{{\"t\":{ts},\"h\":{h}}}").into(),
            listing,
            undecodable: None,
            self_generated: false,
        }
    }

    #[test]
    fn twins_are_two_events_and_rereads_are_none() {
        let none = HashMap::new();
        let first = vec![rec(5, 1), rec(5, 1), rec(4, 2)];
        let (fresh, counts) = deduplicate(&first, &HashMap::new(), &none);
        assert_eq!(fresh.len(), 3);
        let occ: Vec<(i64, u32)> = fresh
            .iter()
            .map(|f| (f.record.ts_ms, f.occurrence))
            .collect();
        assert_eq!(occ, [(4, 0), (5, 0), (5, 1)]);
        assert_eq!(counts[&(5, ContentHash([1; 16]))], 2);

        // The overlap reads the same three again, plus a third twin committed late.
        let again = vec![rec(5, 1), rec(5, 1), rec(5, 1), rec(4, 2)];
        let (fresh, counts) = deduplicate(&again, &counts, &none);
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].occurrence, 2);
        assert_eq!(counts[&(5, ContentHash([1; 16]))], 3);

        // A partial re-read (fewer than seen) neither emits nor lowers the count.
        let (fresh, counts) = deduplicate(&again[..1], &counts, &none);
        assert!(fresh.is_empty());
        assert_eq!(counts[&(5, ContentHash([1; 16]))], 3);
    }

    #[test]
    fn a_record_two_listings_returned_is_one_event() {
        let none = HashMap::new();
        // Listing 0 returned the record once, listing 1 (a later page that re-read the same
        // millisecond) returned it again: one event, not twins.
        let records = vec![rec_in(7, 1, 0), rec_in(7, 1, 1), rec_in(6, 2, 1)];
        let (fresh, counts) = deduplicate(&records, &HashMap::new(), &none);
        let occ: Vec<(i64, u32)> = fresh
            .iter()
            .map(|f| (f.record.ts_ms, f.occurrence))
            .collect();
        assert_eq!(occ, [(6, 0), (7, 0)]);
        assert_eq!(counts[&(7, ContentHash([1; 16]))], 1);
        // Twins one listing returned side by side stay twins, whatever the others said.
        let records = vec![
            rec_in(7, 1, 0),
            rec_in(7, 1, 1),
            rec_in(7, 1, 1),
            rec_in(7, 1, 2),
        ];
        let (fresh, counts) = deduplicate(&records, &HashMap::new(), &none);
        assert_eq!(fresh.len(), 2);
        assert_eq!(counts[&(7, ContentHash([1; 16]))], 2);
    }

    #[test]
    fn a_millisecond_queued_in_parts_continues_its_count() {
        // Part one returned the record twice and is committed; part two returns it once
        // more: the third twin, not a re-read.
        let part_one = vec![rec(9, 1), rec(9, 1)];
        let (fresh, seen) = deduplicate(&part_one, &HashMap::new(), &HashMap::new());
        assert_eq!(fresh.len(), 2);
        let carried = seen.clone();
        let part_two = vec![rec(9, 1)];
        let (fresh, counts) = deduplicate(&part_two, &seen, &carried);
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].occurrence, 2);
        assert_eq!(counts[&(9, ContentHash([1; 16]))], 3);
        // Read again in parts by a later window: nothing new.
        let (fresh, _) = deduplicate(&part_one, &counts, &HashMap::new());
        assert!(fresh.is_empty());
        let (fresh, _) = deduplicate(&part_two, &counts, &seen);
        assert!(fresh.is_empty());
    }

    #[test]
    fn empty_stretches_cost_logarithmic_requests() {
        // 56 empty years read from a one-hour first slice, growing while empty.
        let (from, to) = (0i64, 56 * 365 * 86_400_000i64);
        let mut width = 3_600_000;
        let mut at = from;
        let mut requests = 0;
        while at <= to {
            let slice = oldest_slice(at, to, width);
            requests += 1;
            width = next_width(width, 0, 1000);
            at = slice.to_ms + 1;
        }
        assert!(requests <= 12, "{requests} requests");
    }

    #[test]
    fn widths_follow_the_density() {
        // Twice the target: half the width. Never more than double.
        assert_eq!(next_width(1000, 1000, 1000), 500);
        assert_eq!(next_width(1000, 1, 1000), 2000);
        assert_eq!(next_width(1000, 0, 1000), 4000);
        assert_eq!(next_width(1, 5000, 1000), 1);
        // 5000 records per hour, 1000 max: about 6 minutes for 500.
        assert_eq!(width_for_density(5000, 3_600_000, 1000), 360_000);
        assert!(width_for_density(0, 10, 1000) > 1 << 60);
        // Slices never run past the stretch.
        assert_eq!(
            oldest_slice(10, 20, i64::MAX / 4),
            Window {
                from_ms: 10,
                to_ms: 20
            }
        );
    }
}
