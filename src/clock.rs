//! Time, in one place: the local clock, how long a server may make us wait, and how far a
//! server's clock is believed.
//!
//! It exists because every one of these was written twice before (sources and sinks each
//! had a `Retry-After` parser, with different caps), and because a server's clock is input
//! like any other: one `Date: Fri, 31 Dec 9999` header must not move a cursor to year 9999.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current time, epoch milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A `Retry-After` value — delay-seconds or an HTTP date — as a wait from now. A number too
/// large for any clock is the longest wait there is (the caller caps it); a date in the past
/// is no wait; anything else is `None`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// How long to wait before a retry: the backoff, or what the server asked for when that is
/// longer — but never longer than `max`. The second value is the ask, when it was cut.
pub fn retry_wait(
    backoff: Duration,
    asked: Option<Duration>,
    max: Duration,
) -> (Duration, Option<Duration>) {
    let backoff = backoff.min(max);
    match asked {
        Some(a) if a > max => (max, Some(a)),
        Some(a) => (a.max(backoff), None),
        None => (backoff, None),
    }
}

/// What one `Date` header told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSeen {
    /// Within the allowed skew: now in use.
    Trusted { skew_ms: i64 },
    /// Further from our clock than allowed: ignored, local time is used.
    Rejected { skew_ms: i64 },
    /// Not an HTTP date.
    Unreadable,
}

/// A server's clock as its `Date` headers tell it, believed only within `max_skew` of ours.
///
/// Invariant: [`ServerClock::now_ms`] is always within `max_skew` of the local clock,
/// whatever the server sent, so a window that ends at it never ends further in the future
/// than that (nor in the past).
#[derive(Debug)]
pub struct ServerClock {
    max_skew_ms: i64,
    /// Server clock minus ours, from the last trusted `Date` (ms); `None` before one.
    skew_ms: Mutex<Option<i64>>,
}

impl ServerClock {
    pub fn new(max_skew: Duration) -> ServerClock {
        ServerClock {
            max_skew_ms: i64::try_from(max_skew.as_millis()).unwrap_or(i64::MAX),
            skew_ms: Mutex::new(None),
        }
    }

    /// Learn from a `Date` header received at `local_ms`. A date beyond the allowed skew
    /// resets the skew to zero: the local clock is used until a sane `Date` comes.
    pub fn observe(&self, date: &str, local_ms: i64) -> DateSeen {
        let Ok(t) = httpdate::parse_http_date(date.trim()) else {
            return DateSeen::Unreadable;
        };
        let server_ms = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        // The header has one-second resolution: round our clock the same way.
        let skew_ms = server_ms.saturating_sub(local_ms / 1000 * 1000);
        let mut skew = self.skew_ms.lock().unwrap_or_else(|p| p.into_inner());
        if skew_ms.saturating_abs() > self.max_skew_ms {
            *skew = Some(0);
            DateSeen::Rejected { skew_ms }
        } else {
            *skew = Some(skew_ms);
            DateSeen::Trusted { skew_ms }
        }
    }

    /// Server clock minus ours, once a `Date` was seen (zero after a rejected one).
    pub fn skew_ms(&self) -> Option<i64> {
        *self.skew_ms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server's "now": the local clock corrected by the trusted skew.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.skew_ms().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_as_a_date_or_absurdly_large() {
        assert_eq!(parse_retry_after("12"), Some(Duration::from_secs(12)));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        let later = SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
    }

    #[test]
    fn a_wait_is_never_longer_than_max_backoff() {
        let s = Duration::from_secs;
        assert_eq!(retry_wait(s(1), None, s(60)), (s(1), None));
        assert_eq!(retry_wait(s(1), Some(s(30)), s(60)), (s(30), None));
        assert_eq!(retry_wait(s(5), Some(s(2)), s(60)), (s(5), None));
        assert_eq!(
            retry_wait(s(1), Some(s(99_999_999)), s(60)),
            (s(60), Some(s(99_999_999)))
        );
        assert_eq!(retry_wait(s(120), None, s(60)), (s(60), None));
    }

    #[test]
    fn a_server_clock_is_believed_only_within_the_allowed_skew() {
        let clock = ServerClock::new(Duration::from_secs(600));
        let local = 1_764_028_800_000; // 2025-11-25T00:00:00Z
        assert_eq!(clock.skew_ms(), None);
        assert_eq!(
            clock.observe("Tue, 25 Nov 2025 00:01:00 GMT", local),
            DateSeen::Trusted { skew_ms: 60_000 }
        );
        assert_eq!(clock.skew_ms(), Some(60_000));
        assert!(matches!(
            clock.observe("Fri, 31 Dec 9999 23:59:59 GMT", local),
            DateSeen::Rejected { skew_ms } if skew_ms > 0
        ));
        assert_eq!(clock.skew_ms(), Some(0));
        assert!(matches!(
            clock.observe("Thu, 01 Jan 1970 00:00:00 GMT", local),
            DateSeen::Rejected { skew_ms } if skew_ms < 0
        ));
        assert_eq!(clock.observe("yesterday", local), DateSeen::Unreadable);
        let drift = (clock.now_ms() - now_ms()).abs();
        assert!(drift <= 600_000, "{drift}");
    }
}
