//! How long a sink worker waits before its next attempt, decided from what the last one
//! achieved — a pure function of the outcomes, so the rule can be tested without a clock.
//!
//! It exists because progress is not failure. A busy Elasticsearch answers some items of a
//! bulk request 429 inside an otherwise successful response; treating that batch as a failure
//! doubled the backoff on every batch until a 920-of-1,000 stream ran at a trickle. The rule:
//!
//! - **Everything accepted** (delivered or dead-lettered): no wait, and the backoff resets.
//! - **Progress** (some accepted, some to retry): the backoff resets, and the retries go out
//!   again after a short pause *proportional to the share that must be retried*:
//!   `min_backoff × retried / attempted` — never more than `min_backoff`, however long the
//!   streak. A destination shedding 8% of items gets 8% of the minimum backoff.
//! - **No progress** (a whole request rejected, a connection refused, every item to retry):
//!   the exponential backoff (backon, with jitter) grows, and a `Retry-After` is honoured up to
//!   `max_backoff` through [`clock::retry_wait`]. This is what slows a sink down. It starts at
//!   a tenth of `min_backoff` — about one bulk request's time — because a cluster that refuses
//!   one request in five between accepted ones is busy, not down: starting at `min_backoff`
//!   spent a third of such a run waiting (35% of fault-free throughput against 66–84%). While
//!   nothing is accepted it doubles on: past `min_backoff` after four attempts, at
//!   `max_backoff` (60 s) after about thirteen.
//!
//! "Accepted" counts dead-lettered items too: a permanent rejection is an answer, and a
//! destination that answers is not a destination to back away from.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::clock;

/// The backoff after an attempt without progress starts at `min_backoff / FIRST_STEP_DIVISOR`.
const FIRST_STEP_DIVISOR: u32 = 10;

/// What one attempt achieved, as far as pacing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Nothing left to retry.
    AllAccepted,
    /// Some items accepted (delivered or dead-lettered), `retried` of `attempted` to retry.
    Progress { retried: usize, attempted: usize },
    /// Nothing accepted: a whole-batch error or every item to retry. `retry_after` is what
    /// the destination asked for, if anything.
    NoProgress { retry_after: Option<Duration> },
}

/// The wait before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub delay: Duration,
    /// The destination asked for longer than `max_backoff`: what it asked (it was cut).
    pub cut_from: Option<Duration>,
}

/// The worker's retry pacing: an exponential backoff that only failures advance.
#[derive(Debug)]
pub struct RetryDelay {
    min: Duration,
    max: Duration,
    backoff: ExponentialBackoff,
}

impl RetryDelay {
    pub fn new(min: Duration, max: Duration) -> RetryDelay {
        RetryDelay {
            min,
            max,
            backoff: Self::fresh(min, max),
        }
    }

    fn fresh(min: Duration, max: Duration) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(min / FIRST_STEP_DIVISOR)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// The wait after `attempt`, advancing the backoff only when nothing was accepted.
    pub fn after(&mut self, attempt: Attempt) -> Wait {
        match attempt {
            Attempt::AllAccepted => {
                self.reset();
                Wait {
                    delay: Duration::ZERO,
                    cut_from: None,
                }
            }
            Attempt::Progress { retried, attempted } => {
                self.reset();
                let share = retried.min(attempted) as f64 / attempted.max(1) as f64;
                Wait {
                    delay: self.min.mul_f64(share),
                    cut_from: None,
                }
            }
            Attempt::NoProgress { retry_after } => {
                let backoff = self.backoff.next().unwrap_or(self.max);
                let (delay, cut_from) = clock::retry_wait(backoff, retry_after, self.max);
                Wait { delay, cut_from }
            }
        }
    }

    /// A failure that is ours rather than the destination's (the state store): back off.
    pub fn after_local_failure(&mut self) -> Duration {
        self.backoff.next().unwrap_or(self.max).min(self.max)
    }

    fn reset(&mut self) {
        self.backoff = Self::fresh(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(60);

    #[test]
    fn steady_partial_acceptance_never_waits_longer_than_min_backoff() {
        let mut d = RetryDelay::new(MIN, MAX);
        // A whole-request rejection now and then, between batches of which 90% is accepted.
        for round in 0..200 {
            if round % 5 == 4 {
                let w = d.after(Attempt::NoProgress { retry_after: None });
                assert!(w.delay >= MIN / 10 && w.delay < MIN / 5, "{w:?}");
                continue;
            }
            let w = d.after(Attempt::Progress {
                retried: 100,
                attempted: 1000,
            });
            assert_eq!(w.delay, MIN / 10, "round {round}");
        }
    }

    #[test]
    fn only_attempts_without_progress_grow_the_backoff() {
        let mut d = RetryDelay::new(MIN, MAX);
        let failed = |d: &mut RetryDelay| d.after(Attempt::NoProgress { retry_after: None }).delay;
        let first = failed(&mut d);
        let second = failed(&mut d);
        let third = failed(&mut d);
        let fifth = (0..2).map(|_| failed(&mut d)).last().unwrap();
        // Jitter adds up to 100%: the bases are 10, 20, 40 and (fifth) 160 ms.
        assert!(first < MIN / 5 && second >= MIN / 5 && third >= 2 * MIN / 5);
        assert!(fifth >= MIN * 8 / 5, "{fifth:?}");
        // A batch that made progress (even 1 of 1,000) resets the growth.
        let w = d.after(Attempt::Progress {
            retried: 999,
            attempted: 1000,
        });
        assert!(w.delay <= MIN);
        assert!(failed(&mut d) < MIN / 5);
        // As does one with nothing to retry, and it waits for nothing.
        failed(&mut d);
        assert_eq!(d.after(Attempt::AllAccepted).delay, Duration::ZERO);
        assert!(failed(&mut d) < MIN / 5);
    }

    #[test]
    fn retry_after_slows_down_up_to_max_backoff() {
        let mut d = RetryDelay::new(MIN, MAX);
        let w = d.after(Attempt::NoProgress {
            retry_after: Some(Duration::from_secs(7)),
        });
        assert_eq!(
            w,
            Wait {
                delay: Duration::from_secs(7),
                cut_from: None
            }
        );
        let w = d.after(Attempt::NoProgress {
            retry_after: Some(Duration::from_secs(3 * 365 * 86_400)),
        });
        assert_eq!(
            (w.delay, w.cut_from),
            (MAX, Some(Duration::from_secs(3 * 365 * 86_400)))
        );
        // Many failures: the backoff stops at max_backoff (jitter included).
        for _ in 0..40 {
            assert!(d.after(Attempt::NoProgress { retry_after: None }).delay <= MAX);
        }
    }

    #[test]
    fn the_pause_after_progress_is_the_share_retried() {
        let mut d = RetryDelay::new(MIN, MAX);
        let p = |d: &mut RetryDelay, retried, attempted| {
            d.after(Attempt::Progress { retried, attempted }).delay
        };
        assert_eq!(p(&mut d, 80, 1000), Duration::from_millis(8));
        assert_eq!(p(&mut d, 500, 1000), Duration::from_millis(50));
        assert_eq!(p(&mut d, 1000, 1000), MIN);
        // Nonsense counts cannot push it past min_backoff.
        assert!(p(&mut d, 5, 0) <= MIN);
        assert_eq!(p(&mut d, 9, 3), MIN);
    }
}
