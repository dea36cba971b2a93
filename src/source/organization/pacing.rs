//! Request pacing for the organization audit log: Atlassian allows 50 requests a minute per
//! API path, and a backfill of 180 days is thousands of pages, so requests are spaced
//! evenly at `requests_per_minute` (default 45) instead of being sent as fast as answers
//! come and then throttled. A 429 is still honoured (`Retry-After`, in the client); pacing
//! is what keeps a steady poll or a backfill from meeting one.
//!
//! Hand-written rather than a rate-limiting crate: it is one "next slot" instant, and it
//! must stay in step with the client's own `Retry-After` sleeps (a request retried after a
//! 429 takes the next slot too, see [`Pacer::wait`]).

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

impl Pacer {
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
