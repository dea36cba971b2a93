//! Occurrence counting for `event.id` over an endless stream, in bounded memory.
//!
//! Identical records in one millisecond are distinct events (count-aware ids): the n-th
//! twin gets occurrence n. The poller counts within a window; a stream has no windows, so
//! the count covers the last [`REMEMBERED`] distinct records at least (two generations of a
//! map: a key not seen for a whole generation is forgotten). Twins are written together, so
//! in any real log they are far closer than that.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::normalize::ContentHash;

/// Distinct (millisecond, content hash) keys a generation holds.
pub const REMEMBERED: usize = 16_384;

type Key = (i64, ContentHash);

/// The key is a BLAKE3 hash already: folding its bytes is a good enough bucket, and much
/// cheaper than SipHash on every record.
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Counts = HashMap<Key, u32, BuildHasherDefault<FoldHasher>>;

/// How many times each recent record has been seen.
#[derive(Default)]
pub(super) struct Twins {
    current: Counts,
    previous: Counts,
}

impl Twins {
    /// The occurrence index of this record: 0 the first time, then 1, 2, …
    pub(super) fn occurrence(&mut self, ts_ms: i64, hash: ContentHash) -> u32 {
        let key = (ts_ms, hash);
        if let Some(seen) = self.current.get_mut(&key) {
            let n = *seen;
            *seen += 1;
            return n;
        }
        let n = self.previous.remove(&key).unwrap_or(0);
        if self.current.len() >= REMEMBERED {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(key, n + 1);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u64) -> ContentHash {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&i.to_le_bytes());
        ContentHash(b)
    }

    #[test]
    fn twins_count_up_and_distinct_records_start_at_zero() {
        let mut t = Twins::default();
        assert_eq!(t.occurrence(1, hash(1)), 0);
        assert_eq!(t.occurrence(1, hash(1)), 1);
        assert_eq!(t.occurrence(2, hash(1)), 0, "another millisecond");
        assert_eq!(t.occurrence(1, hash(2)), 0, "another record");
        assert_eq!(t.occurrence(1, hash(1)), 2);
    }

    #[test]
    fn a_twin_within_the_remembered_span_is_still_counted() {
        let mut t = Twins::default();
        assert_eq!(t.occurrence(0, hash(0)), 0);
        for i in 1..REMEMBERED as u64 * 3 / 2 {
            t.occurrence(0, hash(i));
        }
        assert_eq!(
            t.occurrence(0, hash(0)),
            1,
            "remembered after 1.5 generations"
        );
        for i in 1..=REMEMBERED as u64 * 2 {
            t.occurrence(1, hash(i));
        }
        assert_eq!(
            t.occurrence(0, hash(0)),
            0,
            "forgotten after two generations unseen"
        );
        assert_eq!(t.occurrence(0, hash(5)), 0);
        for i in 0..REMEMBERED as u64 {
            t.occurrence(7, hash(i));
        }
        assert_eq!(
            t.occurrence(0, hash(5)),
            1,
            "remembered across a generation switch"
        );
    }
}
