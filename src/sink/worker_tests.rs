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
    let settings = WorkerSettings {
        max_events: 10,
        max_bytes: 1 << 20,
        flush_interval: Duration::from_millis(10),
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    };
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
