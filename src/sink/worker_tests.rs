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

/// A store with `n` events `e0`, `e1`… queued for sink "s".
fn store_with_events(n: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &["s".to_owned()]).unwrap();
    let events = (0..n)
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
    (dir, store)
}

/// A context whose worker drains the queue and returns (keep the sender alive meanwhile).
fn draining_context(store: &Store) -> (watch::Sender<RunMode>, WorkerContext) {
    let (mode_tx, mode_rx) = watch::channel(RunMode::Drain);
    let ctx = WorkerContext {
        store: store.clone(),
        metrics: Arc::new(Metrics::new()),
        queued: Arc::new(Notify::new()),
        mode: mode_rx,
    };
    (mode_tx, ctx)
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
    let (_dir, store) = store_with_events(2);
    let status = Arc::new(SinkStatus::default());
    let shown = Arc::new(Mutex::new(Vec::new()));
    let sink = EchoingSink {
        calls: 0,
        status: status.clone(),
        shown: shown.clone(),
    };
    let (_mode_tx, ctx) = draining_context(&store);
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

/// Per call: its number, and the wait the worker chose before it.
type RecordedWaits = Arc<Mutex<Vec<(usize, Option<Duration>)>>>;

/// Accepts 90% of every batch of ten or more (the last tenth is to be retried), all of a
/// smaller one; records the wait the worker chose before each call.
struct MostlyAcceptingSink {
    calls: usize,
    status: Arc<SinkStatus>,
    waits: RecordedWaits,
}

impl Sink for MostlyAcceptingSink {
    async fn open(&mut self, _: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, SinkError> {
        Ok(None)
    }
    async fn deliver(&mut self, batch: &[QueuedEvent]) -> Result<BatchOutcome, SinkError> {
        self.waits
            .lock()
            .unwrap()
            .push((self.calls, self.status.last_wait()));
        self.calls += 1;
        let retried = batch.len() / 10;
        let mut results = vec![Delivery::Delivered; batch.len()];
        for r in &mut results[batch.len() - retried..] {
            *r = Delivery::Retry("429 es_rejected_execution_exception".into());
        }
        Ok(BatchOutcome {
            results,
            checkpoint: None,
        })
    }
}

#[tokio::test]
async fn a_partly_accepted_batch_never_grows_the_backoff() {
    let (_dir, store) = store_with_events(200);
    let status = Arc::new(SinkStatus::default());
    let waits = Arc::new(Mutex::new(Vec::new()));
    let sink = MostlyAcceptingSink {
        calls: 0,
        status: status.clone(),
        waits: waits.clone(),
    };
    let (_mode_tx, ctx) = draining_context(&store);
    // A minimum of 2 ms, a maximum of an hour: had the backoff doubled per batch, the
    // waits recorded below would show it.
    let settings = WorkerSettings {
        max_events: 10,
        min_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_secs(3600),
        ..quick_settings()
    };
    worker::run("s".into(), sink, settings.clone(), ctx, status.clone()).await;

    let waits = waits.lock().unwrap();
    // 200 events, 9 of every 10 accepted per batch: 20 batches and the retries' batches.
    assert!(waits.len() > 20, "{} batches", waits.len());
    assert_eq!(waits[0], (0, None), "no wait before the first attempt");
    for &(call, wait) in &waits[1..] {
        let wait = wait.expect("a wait was chosen after every attempt");
        assert!(
            wait <= settings.min_backoff,
            "call {call}: waited {wait:?} after a batch that made progress"
        );
    }
    // Progress is not failure: the sink never showed as failing.
    assert!(status.failing().is_none());
    assert_eq!(store.queue_stats("s").unwrap().events, 0);
}
