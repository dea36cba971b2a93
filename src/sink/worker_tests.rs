//! The worker against a scripted sink: what it acknowledges, retries and dead-letters.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::worker::{self, SinkStatus, WorkerContext, WorkerSettings};
use super::{BatchOutcome, Delivery, QueuedEvent, Sink, SinkError};
use crate::lifecycle::RunMode;
use crate::metrics::Metrics;
use crate::state::{NewEvent, Store, WindowCommit};

/// Answers each `deliver` with the next scripted result and records what it was given.
struct ScriptedSink {
    script: VecDeque<Result<Vec<Delivery>, SinkError>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Sink for ScriptedSink {
    async fn open(&mut self, _: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, SinkError> {
        Ok(None)
    }
    async fn deliver(&mut self, batch: &[QueuedEvent]) -> Result<BatchOutcome, SinkError> {
        self.seen
            .lock()
            .unwrap()
            .extend(batch.iter().map(|e| e.id.clone()));
        match self.script.pop_front() {
            Some(Ok(results)) => Ok(BatchOutcome {
                results: results.into_iter().take(batch.len()).collect(),
                checkpoint: None,
            }),
            Some(Err(e)) => Err(e),
            None => Ok(BatchOutcome::all_delivered(batch.len())),
        }
    }
}

/// Small batches and millisecond backoffs (at most 5 ms).
fn quick_settings() -> WorkerSettings {
    WorkerSettings {
        max_events: 10,
        max_bytes: 1 << 20,
        flush_interval: Duration::from_millis(10),
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    }
}

#[tokio::test]
async fn retries_rejects_and_delivers_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &["s".to_owned()]).unwrap();
    store
        .commit_window(
            "src",
            &WindowCommit {
                events: (0..3)
                    .map(|i| NewEvent {
                        id: format!("e{i}"),
                        doc: b"{}".to_vec(),
                    })
                    .collect(),
                cursor_ms: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = ScriptedSink {
        script: VecDeque::from([
            // The whole batch fails first, with a Retry-After.
            Err(SinkError {
                kind: "http_429",
                reason: "slow down".into(),
                retry_after: Some(Duration::from_millis(20)),
            }),
            // Then e0 arrives, e1 is rejected for good, e2 must be retried.
            Ok(vec![
                Delivery::Delivered,
                Delivery::Rejected("mapping error".into()),
                Delivery::Retry("429".into()),
            ]),
        ]),
        seen: seen.clone(),
    };
    let (mode_tx, mode_rx) = watch::channel(RunMode::Drain);
    let metrics = Arc::new(Metrics::new());
    let ctx = WorkerContext {
        store: store.clone(),
        metrics: metrics.clone(),
        queued: Arc::new(Notify::new()),
        mode: mode_rx,
    };
    let settings = quick_settings();
    let status = Arc::new(SinkStatus::default());
    tokio::time::timeout(
        Duration::from_secs(10),
        worker::run("s".into(), sink, settings, ctx, status.clone()),
    )
    .await
    .expect("draining worker returns once the queue is empty");
    drop(mode_tx);

    // Attempts: all three, all three again, then e2 alone.
    assert_eq!(
        *seen.lock().unwrap(),
        ["e0", "e1", "e2", "e0", "e1", "e2", "e2"]
    );
    let stats = store.queue_stats("s").unwrap();
    assert_eq!((stats.events, stats.dead_letters), (0, 1));
    let dead = store.dead_letters("s").unwrap();
    assert_eq!(
        (dead[0].id.as_str(), dead[0].reason.as_str()),
        ("e1", "mapping error")
    );
    assert!(status.failing().is_none());
    let text = metrics.render();
    assert!(
        text.contains("caf_sink_delivered_total{sink=\"s\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("caf_sink_dead_lettered_total{sink=\"s\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("caf_sink_failures_total{sink=\"s\",kind=\"http_429\"} 1"),
        "{text}"
    );
}

/// Fails twice as a hostile destination would — an error echoing the credentials, with a
/// line break and an escape sequence, asking to wait three years — then delivers, and
/// rejects one event with the same kind of text. Records what `/readyz` would show.
struct EchoingSink {
    calls: usize,
    status: Arc<SinkStatus>,
    shown: Arc<Mutex<Vec<String>>>,
}

const ECHO: &str = "denied for Bearer tok-worker-canary-4242\nFAKE LOG LINE\x1b[31m";

impl Sink for EchoingSink {
    async fn open(&mut self, _: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, SinkError> {
        Ok(None)
    }
    async fn deliver(&mut self, batch: &[QueuedEvent]) -> Result<BatchOutcome, SinkError> {
        if let Some((_, shown)) = self.status.failing() {
            self.shown.lock().unwrap().push(shown);
        }
        self.calls += 1;
        if self.calls <= 2 {
            return Err(SinkError {
                kind: "auth",
                reason: ECHO.into(),
                retry_after: Some(Duration::from_secs(99_999_999)),
            });
        }
        let mut results = vec![Delivery::Delivered; batch.len()];
        results[0] = Delivery::Rejected(ECHO.into());
        Ok(BatchOutcome {
            results,
            checkpoint: None,
        })
    }
}

#[tokio::test]
async fn destination_text_is_made_safe_and_its_waits_are_capped() {
    crate::logsafe::register_bearer("tok-worker-canary-4242");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &["s".to_owned()]).unwrap();
    let events = (0..2)
        .map(|i| NewEvent {
            id: format!("e{i}"),
            doc: b"{}".to_vec(),
        })
        .collect();
    let commit = WindowCommit {
        events,
        cursor_ms: Some(1),
        ..Default::default()
    };
    store.commit_window("src", &commit).unwrap();
    let status = Arc::new(SinkStatus::default());
    let shown = Arc::new(Mutex::new(Vec::new()));
    let sink = EchoingSink {
        calls: 0,
        status: status.clone(),
        shown: shown.clone(),
    };
    let (_mode_tx, mode_rx) = watch::channel(RunMode::Drain);
    let ctx = WorkerContext {
        store: store.clone(),
        metrics: Arc::new(Metrics::new()),
        queued: Arc::new(Notify::new()),
        mode: mode_rx,
    };
    let settings = quick_settings();
    // A three-year Retry-After is cut to max_backoff: the worker finishes.
    tokio::time::timeout(
        Duration::from_secs(10),
        worker::run("s".into(), sink, settings, ctx, status),
    )
    .await
    .expect("the destination's wait is capped at max_backoff");
    let dead = store.dead_letters("s").unwrap();
    let shown = shown.lock().unwrap();
    assert_eq!((shown.len(), dead.len()), (2, 1));
    for text in shown.iter().chain([&dead[0].reason]) {
        assert!(!text.contains("tok-worker-canary-4242"), "{text}");
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(
            text.contains("<redacted>") && text.contains("\\nFAKE LOG LINE\\u{1b}[31m"),
            "{text}"
        );
    }
}
