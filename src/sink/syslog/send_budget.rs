//! A send budget per second for the syslog sink (`max_rate`): how long to wait before the
//! next message(s) so that, on average, no more than `max_rate` events per second go out.
//!
//! It exists because UDP has no flow control. A backfill sends as fast as the queue drains —
//! a hundred thousand datagrams a second — and a receiver's socket buffer (about 200 KiB by
//! default on Linux, a hundred or so messages) overflows in milliseconds; the kernel drops
//! what does not fit and nobody is told. Pacing the sender is the only remedy the sender has.
//!
//! The arithmetic is a token bucket that may go into debt: each message takes a token; tokens
//! come back at `rate` per second, up to `burst` saved; when the balance is negative the
//! sender waits until it is back at zero. Because the balance is recomputed from the clock on
//! every call, a sleep that overshoots (timers have a millisecond's grain) is credited, and
//! the average holds; `burst` bounds how many messages can leave back to back.

use std::time::{Duration, Instant};

/// A per-second send budget.
#[derive(Debug, Clone)]
pub struct SendBudget {
    rate: f64,
    burst: f64,
    /// Tokens available (negative: owed).
    balance: f64,
    last: Instant,
}

impl SendBudget {
    /// `rate` messages per second (more than zero), starting with a full burst at `now`.
    /// The burst is a millisecond's worth (a timer's grain), at least one message.
    pub fn new(rate: u32, now: Instant) -> SendBudget {
        let rate = f64::from(rate.max(1));
        let burst = (rate / 1000.0).ceil();
        SendBudget {
            rate,
            burst,
            balance: burst,
            last: now,
        }
    }

    /// Most messages that may leave back to back after one that waited.
    pub fn burst(&self) -> u32 {
        self.burst as u32
    }

    /// Spend `n` messages at `now`: how long to wait before sending them.
    pub fn spend(&mut self, n: u32, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.balance = (self.balance + elapsed * self.rate).min(self.burst);
        self.balance -= f64::from(n);
        if self.balance >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.balance / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Send `total` messages one at a time, sleeping as told (plus `oversleep` each time, as
    /// a coarse timer would): the simulated time taken.
    fn simulate(rate: u32, total: u32, oversleep: Duration) -> (Duration, u32) {
        let start = Instant::now();
        let mut now = start;
        let mut budget = SendBudget::new(rate, now);
        let mut longest_run = 0;
        let mut run = 0;
        for _ in 0..total {
            let wait = budget.spend(1, now);
            if wait.is_zero() {
                run += 1;
            } else {
                now += wait + oversleep;
                run = 1;
            }
            longest_run = longest_run.max(run);
        }
        (now - start, longest_run)
    }

    #[test]
    fn the_rate_holds_on_average() {
        // 10,000 messages at 1,000/s take ten seconds less the first burst.
        let (took, _) = simulate(1_000, 10_000, Duration::ZERO);
        let secs = took.as_secs_f64();
        assert!((9.98..=10.0).contains(&secs), "{secs}");
        // A timer that oversleeps by up to a millisecond every time does not slow it down:
        // the overshoot is credited (up to the burst, a millisecond's worth).
        let (took, _) = simulate(10_000, 100_000, Duration::from_micros(900));
        let secs = took.as_secs_f64();
        assert!((9.9..=10.1).contains(&secs), "{secs}");
    }

    #[test]
    fn no_more_than_a_burst_leaves_back_to_back() {
        let budget = SendBudget::new(10_000, Instant::now());
        assert_eq!(budget.burst(), 10);
        let (_, longest) = simulate(10_000, 50_000, Duration::from_millis(3));
        // The message that waited, then at most a full burst.
        assert!(longest <= 11, "{longest}");
        assert_eq!(SendBudget::new(1, Instant::now()).burst(), 1);
        assert_eq!(SendBudget::new(0, Instant::now()).burst(), 1);
    }

    #[test]
    fn a_batch_waits_for_its_share() {
        let ms = |d: Duration| (d.as_secs_f64() * 1000.0).round() as u64;
        let t0 = Instant::now();
        let mut budget = SendBudget::new(10_000, t0);
        // Ten saved, a thousand wanted: the 990 owed take 99 ms.
        assert_eq!(ms(budget.spend(1_000, t0)), 99);
        // Paid off after those 99 ms; a quiet second saves no more than the burst.
        let later = t0 + Duration::from_millis(1099);
        assert_eq!(budget.spend(10, later), Duration::ZERO);
        assert_eq!((budget.spend(1, later).as_secs_f64() * 1e6).round(), 100.0);
        // A clock that goes backwards (an earlier `now`) earns nothing.
        assert_eq!((budget.spend(1, t0).as_secs_f64() * 1e6).round(), 200.0);
    }
}
