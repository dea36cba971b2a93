//! "Today" for `status`: events queued and delivered since midnight UTC, from the daemon's
//! own counters (`caf_source_events_total`, `caf_sink_delivered_total`) minus what they
//! read when the day began. The baseline is taken when the day is first seen to have
//! changed (the control server looks every minute), and the report says from when it counts:
//! a daemon started at 14:00 counts from 14:00, and nothing is estimated.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::metrics::Metrics;

const DAY_MS: i64 = 86_400_000;

/// Counter readings by source (events queued) and by sink (documents delivered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub sources: HashMap<String, u64>,
    pub sinks: HashMap<String, u64>,
}

impl Counts {
    /// The daemon's counters now, for these sources and sinks.
    pub fn read(metrics: &Metrics, sources: &[String], sinks: &[String]) -> Counts {
        Counts {
            sources: sources
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        metrics.events_new.get_or_create(&metrics.source(s)).get(),
                    )
                })
                .collect(),
            sinks: sinks
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        metrics.sink_delivered.get_or_create(&metrics.sink(s)).get(),
                    )
                })
                .collect(),
        }
    }

    fn minus(&self, base: &Counts) -> Counts {
        let sub = |now: &HashMap<String, u64>, base: &HashMap<String, u64>| {
            now.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.saturating_sub(base.get(k).copied().unwrap_or(0)),
                    )
                })
                .collect()
        };
        Counts {
            sources: sub(&self.sources, &base.sources),
            sinks: sub(&self.sinks, &base.sinks),
        }
    }
}

/// The baseline "today" counts from.
#[derive(Debug)]
pub struct Today {
    inner: Mutex<Baseline>,
}

#[derive(Debug)]
struct Baseline {
    day: i64,
    since_ms: i64,
    counts: Counts,
}

impl Today {
    /// Counting from the daemon's start, when every counter is zero.
    pub fn new(started_ms: i64) -> Today {
        Today {
            inner: Mutex::new(Baseline {
                day: started_ms.div_euclid(DAY_MS),
                since_ms: started_ms,
                counts: Counts::default(),
            }),
        }
    }

    /// Start a new day's count when `now_ms` is in a later day than the baseline.
    pub fn roll(&self, now_ms: i64, current: Counts) {
        let mut b = self.inner.lock().expect("today lock");
        let day = now_ms.div_euclid(DAY_MS);
        if day != b.day {
            *b = Baseline {
                day,
                since_ms: now_ms,
                counts: current,
            };
        }
    }

    /// Since when it counts, and the counts since then.
    pub fn counted(&self, now_ms: i64, current: Counts) -> (i64, Counts) {
        self.roll(now_ms, current.clone());
        let b = self.inner.lock().expect("today lock");
        (b.since_ms, current.minus(&b.counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(source: u64, sink: u64) -> Counts {
        Counts {
            sources: [("s".to_owned(), source)].into(),
            sinks: [("k".to_owned(), sink)].into(),
        }
    }

    #[test]
    fn counts_from_the_start_then_from_the_first_look_after_midnight() {
        let start = 10 * DAY_MS + 14 * 3_600_000;
        let today = Today::new(start);
        let (since, c) = today.counted(start + 1000, counts(5, 3));
        assert_eq!(since, start);
        assert_eq!(c, counts(5, 3));
        // The next day, first seen one minute after midnight.
        let next = 11 * DAY_MS + 60_000;
        today.roll(next, counts(7, 4));
        let (since, c) = today.counted(next + 5000, counts(10, 4));
        assert_eq!(since, next);
        assert_eq!(c, counts(3, 0));
    }
}
