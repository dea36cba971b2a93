//! Injected faults: what a real Confluence, its proxy or the network does to a poller —
//! rate limiting, overload, crashes, slowness and bodies cut short — switchable at runtime,
//! either for the next requests one by one or with a probability drawn from a seeded RNG of
//! its own (so faults never perturb the seeded data).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Faults to inject. `next` faults are served first, one per request (`vec![Fault::RateLimit;
/// 3]`: the next three requests); once `next` is empty, each request rolls the
/// probabilities (their sum should stay at or below 1).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Probability of a 429 with `Retry-After` and `X-RateLimit-*`.
    pub rate_limit: f64,
    /// Probability of a 503 with `Retry-After`.
    pub unavailable: f64,
    /// Probability of a 500.
    pub server_error: f64,
    /// Probability of a body cut short; half of these are [`Fault::Truncate`], half
    /// [`Fault::CutConnection`].
    pub truncate: f64,
    /// Probability of answering after `slow_by`.
    pub slow: f64,
    pub slow_by: Duration,
    /// `Retry-After` of 429 and 503, seconds.
    pub retry_after_secs: u64,
    pub next: Vec<Fault>,
    /// Answer 403 to everything (a user without the administrator permission).
    pub forbidden: bool,
}

impl Faults {
    /// `fault` for the next `n` requests, then none.
    pub fn next_n(fault: Fault, n: usize) -> Faults {
        Faults {
            next: vec![fault; n],
            ..Faults::default()
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After`.
    RateLimit,
    /// 503 with `Retry-After`.
    Unavailable,
    /// 500.
    ServerError,
    /// 200 whose body is the first half of the JSON, with a `Content-Length` matching that
    /// half: the HTTP exchange is clean, the JSON is not.
    Truncate,
    /// 200 announcing the full `Content-Length`, then the connection is dropped after half
    /// the body: the client sees an I/O error mid-body.
    CutConnection,
    /// Answer after `slow_by`.
    Slow,
}

/// The current faults and the RNG that rolls them.
pub(super) struct FaultState {
    pub faults: Faults,
    rng: StdRng,
}

impl FaultState {
    pub fn new(seed: u64) -> FaultState {
        FaultState {
            faults: Faults::default(),
            // A stream of its own: rolling faults must not change the generated data.
            rng: StdRng::seed_from_u64(seed ^ 0x6661_756c_7473_u64),
        }
    }

    /// The fault for this request, if any.
    pub fn pick(&mut self) -> Option<Fault> {
        if !self.faults.next.is_empty() {
            return Some(self.faults.next.remove(0));
        }
        let f = &self.faults;
        let total = f.rate_limit + f.unavailable + f.server_error + f.truncate + f.slow;
        if total <= 0.0 {
            return None;
        }
        let roll: f64 = self.rng.random();
        let mut acc = 0.0;
        for (p, fault) in [
            (f.rate_limit, Fault::RateLimit),
            (f.unavailable, Fault::Unavailable),
            (f.server_error, Fault::ServerError),
            (f.truncate, Fault::Truncate),
            (f.slow, Fault::Slow),
        ] {
            acc += p;
            if roll < acc {
                if fault == Fault::Truncate && self.rng.random_bool(0.5) {
                    return Some(Fault::CutConnection);
                }
                return Some(fault);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_faults_come_first_then_probabilities() {
        let mut s = FaultState::new(1);
        s.faults = Faults {
            next: vec![Fault::ServerError, Fault::RateLimit],
            rate_limit: 1.0,
            ..Faults::default()
        };
        assert_eq!(s.pick(), Some(Fault::ServerError));
        assert_eq!(s.pick(), Some(Fault::RateLimit));
        assert_eq!(s.pick(), Some(Fault::RateLimit));
        s.faults = Faults::default();
        assert_eq!(s.pick(), None);
    }

    #[test]
    fn probabilities_are_roughly_honoured_and_seeded() {
        let roll = |seed| {
            let mut s = FaultState::new(seed);
            s.faults.server_error = 0.25;
            (0..4000).map(|_| s.pick()).collect::<Vec<_>>()
        };
        let a = roll(7);
        assert_eq!(a, roll(7));
        let n = a.iter().filter(|f| f.is_some()).count();
        assert!((800..1200).contains(&n), "{n} of 4000 at p = 0.25");
    }
}
