//! librdkafka's own logs and client errors, forwarded to tracing without flooding it.
//!
//! While a broker is down librdkafka reports it on every reconnect attempt — several lines
//! every 100 ms at first, from each client — and rdkafka's default context logs each one at
//! ERROR. An operator needs the first report and to know it goes on, not thousands of copies:
//! the sink's own delivery errors and `caf_sink_failures_total` already say it every
//! attempt. So repeats of the same report are held back for [`REPEAT_EVERY`] and then logged
//! once with how many were held back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// How long an identical report stays quiet after it was logged.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// The last authentication failure a sink's clients reported, shared by the sink and the
/// contexts of its clients. Refused credentials reach librdkafka's client-level error
/// callback, never a message's delivery report (messages just time out), so without this a
/// wrong password would be reported as a timeout.
#[derive(Debug, Clone, Default)]
pub struct AuthFailure(Arc<Mutex<Option<String>>>);

impl AuthFailure {
    /// The broker's reason, if the last connection attempt was refused for credentials.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, reason: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    /// Something got through: the credentials are good (now).
    pub fn clear(&self) {
        self.set(None)
    }
}

/// The context of every librdkafka client a Kafka sink creates.
pub struct SinkContext {
    sink: String,
    repeats: Mutex<Repeats>,
    auth: AuthFailure,
}

impl SinkContext {
    pub fn new(sink: &str, auth: AuthFailure) -> SinkContext {
        SinkContext {
            sink: sink.to_owned(),
            repeats: Mutex::new(Repeats::new(REPEAT_EVERY)),
            auth,
        }
    }

    /// `Some(held back since the last time)` when this report is to be logged now.
    fn admit(&self, key: &str) -> Option<u64> {
        self.repeats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(key, Instant::now())
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let sink = self.sink.as_str();
        match level {
            // Only with a `debug` librdkafka setting, which asks for everything.
            RDKafkaLogLevel::Debug | RDKafkaLogLevel::Info | RDKafkaLogLevel::Notice => {
                tracing::debug!(target: "librdkafka", sink, fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                if let Some(held_back) = self.admit(&format!("log {fac}")) {
                    tracing::warn!(target: "librdkafka", sink, fac, held_back, "{message}")
                }
            }
            _ => {
                if let Some(held_back) = self.admit(&format!("log {fac}")) {
                    tracing::error!(target: "librdkafka", sink, fac, held_back, "{message}")
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        if matches!(
            error.rdkafka_error_code(),
            Some(C::Authentication | C::SaslAuthenticationFailed)
        ) {
            self.auth.set(Some(format!("{error}: {reason}")));
        }
        let key = match error.rdkafka_error_code() {
            Some(code) => format!("error {code:?}"),
            None => format!("error {error}"),
        };
        if let Some(held_back) = self.admit(&key) {
            // A client-level error is a connection problem the client retries by itself; what
            // it means for events is reported by the sink worker.
            tracing::warn!(target: "librdkafka", sink = %self.sink, held_back, "{error}: {reason}");
        }
    }
}

/// Which reports were logged when, and how many were held back since.
struct Repeats {
    every: Duration,
    seen: HashMap<String, (Instant, u64)>,
}

impl Repeats {
    fn new(every: Duration) -> Repeats {
        Repeats {
            every,
            seen: HashMap::new(),
        }
    }

    fn admit(&mut self, key: &str, now: Instant) -> Option<u64> {
        match self.seen.get_mut(key) {
            Some((logged, held_back)) if now.duration_since(*logged) < self.every => {
                *held_back += 1;
                None
            }
            Some((logged, held_back)) => {
                let n = *held_back;
                *logged = now;
                *held_back = 0;
                Some(n)
            }
            None => {
                // Keys are error codes and facilities: a handful, but bound it anyway.
                if self.seen.len() >= 256 {
                    self.seen.clear();
                }
                self.seen.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_held_back_counted_and_reported_after_the_interval() {
        let t0 = Instant::now();
        let mut r = Repeats::new(Duration::from_secs(60));
        assert_eq!(r.admit("error AllBrokersDown", t0), Some(0));
        for i in 1..=500u64 {
            assert_eq!(
                r.admit("error AllBrokersDown", t0 + Duration::from_millis(100 * i)),
                None
            );
        }
        // A different report is not held back by the first.
        assert_eq!(r.admit("log FAIL", t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(
            r.admit("error AllBrokersDown", t0 + Duration::from_secs(61)),
            Some(500)
        );
        assert_eq!(
            r.admit("error AllBrokersDown", t0 + Duration::from_secs(62)),
            None
        );
        assert_eq!(
            r.admit("error AllBrokersDown", t0 + Duration::from_secs(122)),
            Some(1)
        );
    }
}
