//! Request pacing for the organization audit log: Atlassian allows 50 requests a minute per
//! API path, and a backfill of 180 days is thousands of pages, so requests are spaced
//! evenly at `requests_per_minute` (default 45) instead of being sent as fast as answers
//! come and then throttled. A 429 is still honoured (`Retry-After`, in the client); pacing
//! is what keeps a steady poll or a backfill from meeting one.
//!
//! Hand-written rather than a rate-limiting crate: it is one "next slot" instant, and it
//! must stay in step with the client's own `Retry-After` sleeps (a request retried after a
//! 429 takes the next slot too, see [`Pacer::wait`]).
//!
//! The limit is Atlassian's per API path, not per client, so [`Pacer::for_path`] gives every
//! reader of one `events-stream` path in this process the same pacer: a source's polls and a
//! replay of it in the running daemon (or two sources on one organization) share the rate
//! instead of each taking all of it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Hands out request slots at most `per_minute` a minute.
///
/// Invariant: two slots handed out are at least `gap = 60 s / per_minute` apart, so any
/// 60-second span holds at most `per_minute` requests.
#[derive(Debug)]
pub struct Pacer {
    gap: Duration,
    next: Mutex<Option<Instant>>,
}

/// Pacers by (API path, requests a minute). Weak: a pacer lives as long as its readers.
type Pacers = HashMap<(String, u32), Weak<Pacer>>;

/// The pacers in use.
static BY_PATH: LazyLock<std::sync::Mutex<Pacers>> = LazyLock::new(Default::default);

impl Pacer {
    /// The pacer for requests to `path` at `per_minute`, shared with every other holder of
    /// the same path and rate in this process. (Two rates for one path, as during a reload
    /// that changes `requests_per_minute`, get two pacers until the old readers are gone.)
    pub fn for_path(path: &str, per_minute: u32) -> Arc<Pacer> {
        let mut by_path = BY_PATH
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        by_path.retain(|_, pacer| pacer.strong_count() > 0);
        let key = (path.to_owned(), per_minute);
        if let Some(shared) = by_path.get(&key).and_then(Weak::upgrade) {
            return shared;
        }
        let pacer = Arc::new(Pacer::per_minute(per_minute));
        by_path.insert(key, Arc::downgrade(&pacer));
        pacer
    }

    pub fn per_minute(per_minute: u32) -> Pacer {
        Pacer {
            gap: Duration::from_secs(60) / per_minute.max(1),
            next: Mutex::new(None),
        }
    }

    /// The time between two requests.
    pub fn gap(&self) -> Duration {
        self.gap
    }

    /// Wait for the next slot, and take it.
    pub async fn wait(&self) {
        let mut next = self.next.lock().await;
        let at = take_slot(&mut next, Instant::now(), self.gap);
        tokio::time::sleep_until(at).await;
    }
}

/// The slot a request made at `now` gets (now, or the reserved next one if later), and
/// the next slot reserved a `gap` after it.
fn take_slot(next: &mut Option<Instant>, now: Instant, gap: Duration) -> Instant {
    let at = next.map_or(now, |n| n.max(now));
    *next = Some(at + gap);
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_of_one_path_share_a_pacer_while_they_live() {
        let path = "https://api.test/admin/v1/orgs/o1/events-stream";
        let poller = Pacer::for_path(path, 45);
        let replay = Pacer::for_path(path, 45);
        assert!(Arc::ptr_eq(&poller, &replay), "one path, one pacer");
        let other_org = Pacer::for_path("https://api.test/admin/v1/orgs/o2/events-stream", 45);
        assert!(!Arc::ptr_eq(&poller, &other_org));
        let other_rate = Pacer::for_path(path, 30);
        assert!(!Arc::ptr_eq(&poller, &other_rate));
        drop((poller, replay));
        // Nobody holds it any more: the next reader starts afresh, with no slot reserved.
        let fresh = Pacer::for_path(path, 45);
        assert_eq!(Arc::strong_count(&fresh), 1);
        assert!(fresh.next.try_lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_slot_taken_by_one_reader_is_taken_for_the_other() {
        let path = "https://api.test/admin/v1/orgs/turns/events-stream";
        let (poller, replay) = (Pacer::for_path(path, 60), Pacer::for_path(path, 60));
        let t0 = Instant::now();
        poller.wait().await;
        let reserved = replay.next.try_lock().unwrap().expect("a slot is reserved");
        assert!(
            reserved >= t0 + Duration::from_secs(1),
            "the replay's next request waits"
        );
    }

    #[test]
    fn slots_are_a_gap_apart_and_idle_time_is_not_saved_up() {
        let pacer = Pacer::per_minute(45);
        let gap = pacer.gap();
        assert_eq!(gap, Duration::from_secs(60) / 45);
        let t0 = Instant::now();
        let mut next = None;
        // A burst of 46 requests at t0: the 46th is a full minute after the first.
        let slots: Vec<Instant> = (0..46).map(|_| take_slot(&mut next, t0, gap)).collect();
        assert_eq!(slots[0], t0);
        assert!(slots.windows(2).all(|w| w[1] - w[0] == gap));
        assert_eq!(slots[45] - slots[0], gap * 45);
        // After a long idle stretch the next request goes at once, and only one does.
        let later = slots[45] + Duration::from_secs(600);
        assert_eq!(take_slot(&mut next, later, gap), later);
        assert_eq!(take_slot(&mut next, later, gap), later + gap);
    }
}
