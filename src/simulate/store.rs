//! The simulator's event store: one vector of compact entries sorted by (time, insertion
//! id), so that a page of a million-record store costs two binary searches and a slice, not
//! a walk from the newest record.
//!
//! Why a sorted vector and not a `BTreeMap`: offset paging (`start=900000`) must find the
//! 900 000th newest record of a window without stepping over the others, which a vector
//! does by arithmetic on ranks. Inserts land at or near the end (arrivals are stamped "now",
//! late commits a few seconds back), so shifting the tail is cheap; bulk history is appended
//! and sorted once.

use std::sync::Arc;

use super::catalog::{Compact, Record};

/// What is stored per record: a few integers the catalog expands deterministically, or a
/// hand-made record (self-events, hostile text).
#[derive(Debug, Clone)]
pub(super) enum Stored {
    Compact(Compact),
    Full(Arc<Record>),
}

/// One stored record. `id` is the insertion order, and the DC `pageCursor` id.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub ts: i64,
    pub id: u64,
    pub ev: Stored,
}

impl Entry {
    fn key(&self) -> (i64, u64) {
        (self.ts, self.id)
    }
}

/// Entries sorted ascending by (ts, id); newest first is a reverse walk.
#[derive(Default)]
pub(super) struct Store {
    entries: Vec<Entry>,
    next_id: u64,
}

impl Store {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Store one record at `ts`; returns its id.
    pub fn insert(&mut self, ts: i64, ev: Stored) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        // The new id is the largest: the record goes after everything at or before `ts`.
        let pos = self.entries.partition_point(|e| e.ts <= ts);
        self.entries.insert(pos, Entry { ts, id, ev });
        id
    }

    /// Store many records at once (history): append, then one sort.
    pub fn extend(&mut self, batch: impl IntoIterator<Item = (i64, Stored)>) {
        let was_sorted_up_to = self.entries.len();
        for (ts, ev) in batch {
            self.next_id += 1;
            let id = self.next_id;
            self.entries.push(Entry { ts, id, ev });
        }
        if self.entries.len() > was_sorted_up_to {
            self.entries.sort_unstable_by_key(Entry::key);
        }
    }

    /// The records with `from <= ts <= to`, oldest first.
    pub fn window(&self, from: i64, to: i64) -> &[Entry] {
        if from > to {
            return &[];
        }
        let lo = self.entries.partition_point(|e| e.ts < from);
        let hi = self.entries.partition_point(|e| e.ts <= to);
        &self.entries[lo..hi.max(lo)]
    }

    /// The records with `from <= ts` and `(ts, id) < below` (the DC page cursor, exclusive)
    /// and `ts <= to`, oldest first.
    pub fn window_below(&self, from: i64, to: i64, below: (i64, u64)) -> &[Entry] {
        let w = self.window(from, to);
        let hi = w.partition_point(|e| e.key() < below);
        &w[..hi]
    }
}

/// Newest-first page `[skip, skip + limit)` of an oldest-first slice, as a slice still
/// oldest first (iterate it in reverse), plus whether older records remain after it.
pub(super) fn newest_page(w: &[Entry], skip: usize, limit: usize) -> (&[Entry], bool) {
    let end = w.len().saturating_sub(skip);
    let start = end.saturating_sub(limit);
    (&w[start..end], start > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(kind: u16) -> Stored {
        Stored::Compact(Compact {
            kind,
            user: 0,
            ip: 1,
            detail_seed: 0,
        })
    }

    fn keys(w: &[Entry]) -> Vec<(i64, u64)> {
        w.iter().map(Entry::key).collect()
    }

    #[test]
    fn windows_are_inclusive_and_ordered_by_time_then_insertion() {
        let mut s = Store::default();
        s.insert(20, c(0)); // id 1
        s.insert(10, c(0)); // id 2: a late commit
        s.insert(20, c(0)); // id 3: same ms
        s.extend([(15, c(0)), (30, c(0))]); // ids 4, 5
        assert_eq!(
            keys(s.window(i64::MIN, i64::MAX)),
            [(10, 2), (15, 4), (20, 1), (20, 3), (30, 5)]
        );
        assert_eq!(keys(s.window(15, 20)), [(15, 4), (20, 1), (20, 3)]);
        assert!(s.window(21, 29).is_empty());
        assert!(s.window(30, 10).is_empty());
        assert_eq!(
            keys(s.window_below(10, 30, (20, 3))),
            [(10, 2), (15, 4), (20, 1)]
        );
    }

    #[test]
    fn newest_pages_tile_the_window() {
        let mut s = Store::default();
        s.extend((0..10).map(|i| (i, c(0))));
        let w = s.window(0, 9);
        let (p, more) = newest_page(w, 0, 4);
        assert_eq!(keys(p), [(6, 7), (7, 8), (8, 9), (9, 10)]);
        assert!(more);
        let (p, more) = newest_page(w, 8, 4);
        assert_eq!(keys(p), [(0, 1), (1, 2)]);
        assert!(!more);
        let (p, more) = newest_page(w, 12, 4);
        assert!(p.is_empty() && !more);
    }
}
