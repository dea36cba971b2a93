//! The sink worker: drains one sink's durable queue, whatever the sink.
//!
//! Loop: take a batch from the queue head, deliver it, then in one state transaction delete
//! what was delivered, dead-letter what was rejected and store the sink's checkpoint. How long
//! to wait before the next attempt is [`RetryDelay`]'s decision: a batch that made progress
//! sends its retries again after a short pause; only attempts that got nothing accepted back
//! off exponentially with jitter (backon), waiting at least what the destination asked for
//! (`Retry-After`, up to `max_backoff`). Nothing is ever dropped: an entry leaves the queue
//! only as delivered or dead-lettered.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::retry_delay::{Attempt, RetryDelay, Wait};
use super::{Delivery, Sink, SinkError};
use crate::clock;
use crate::lifecycle::{RunMode, sleep_or_stop, wait_stop};
use crate::logsafe;
use crate::metrics::Metrics;
use crate::state::{Store, blocking};

/// Batching and retry settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub max_events: usize,
    pub max_bytes: usize,
    /// Longest idle wait before looking at the queue again.
    pub flush_interval: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// A sink's health, shared with `/readyz` and the shutdown report.
#[derive(Debug, Default)]
pub struct SinkStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default)]
struct StatusInner {
    failing_since: Option<Instant>,
    last_error: Option<String>,
    last_wait: Option<Duration>,
}

impl SinkStatus {
    /// Since when every attempt failed, and the last error, if it is failing now.
    pub fn failing(&self) -> Option<(Instant, String)> {
        let s = self.inner.lock().expect("status lock");
        s.failing_since
            .map(|t| (t, s.last_error.clone().unwrap_or_default()))
    }

    /// Record a failure. Its text may come from the destination: it is made safe here,
    /// before `/readyz` or `once`'s report shows it.
    fn fail(&self, error: String) {
        let mut s = self.inner.lock().expect("status lock");
        s.failing_since.get_or_insert_with(Instant::now);
        s.last_error = Some(logsafe::clean(&error));
    }

    fn ok(&self) {
        let mut s = self.inner.lock().expect("status lock");
        s.failing_since = None;
        s.last_error = None;
    }

    /// The wait the worker chose after its latest attempt (zero when it went straight on);
    /// `None` before the first delivery attempt.
    pub fn last_wait(&self) -> Option<Duration> {
        self.inner.lock().expect("status lock").last_wait
    }

    fn waited(&self, wait: Duration) {
        self.inner.lock().expect("status lock").last_wait = Some(wait);
    }
}

/// Everything a worker shares with the rest of the daemon.
#[derive(Clone)]
pub struct WorkerContext {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Signalled when a source queued new events.
    pub queued: Arc<Notify>,
    pub mode: watch::Receiver<RunMode>,
}

/// Drain `name`'s queue into `sink` until the mode says stop (or, draining, the queue is empty).
/// Spawn it inside a span that names the sink (see [`crate::daemon`]).
pub async fn run<S: Sink>(
    name: String,
    mut sink: S,
    settings: WorkerSettings,
    ctx: WorkerContext,
    status: Arc<SinkStatus>,
) {
    let label = ctx.metrics.sink(&name);
    let mut mode = ctx.mode.clone();
    let new_delays = || RetryDelay::new(settings.min_backoff, settings.max_backoff);

    // Open, retrying: a destination that is down at start must not lose anything either.
    let mut delays = new_delays();
    loop {
        if *mode.borrow() == RunMode::Stop {
            return;
        }
        // The queue grows while the sink is not ready: show it.
        update_queue_metrics(&ctx, &name).await;
        let checkpoint = match blocking(&ctx.store, {
            let name = name.clone();
            move |s| s.checkpoint(&name)
        })
        .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read sink checkpoint");
                status.fail(e.to_string());
                if sleep_or_stop(&mut mode, delays.after_local_failure()).await {
                    return;
                }
                continue;
            }
        };
        match sink.open(checkpoint).await.map_err(made_safe) {
            Ok(initial) => {
                if let Some(cp) = initial {
                    let stored = blocking(&ctx.store, {
                        let name = name.clone();
                        move |s| s.ack(&name, &[], &[], Some(&cp))
                    })
                    .await;
                    if let Err(e) = stored {
                        tracing::error!(error = %e, "cannot store the sink's starting point");
                        status.fail(e.to_string());
                        if sleep_or_stop(&mut mode, delays.after_local_failure()).await {
                            return;
                        }
                        continue;
                    }
                }
                tracing::info!("sink ready");
                break;
            }
            Err(e) => {
                ctx.metrics
                    .sink_failures
                    .get_or_create(&crate::metrics::SinkKindLabel {
                        sink: name.clone(),
                        kind: e.kind.to_owned(),
                    })
                    .inc();
                let wait = wait_for(&e, &mut delays);
                tracing::warn!(error = %e, retry_in = ?wait, "sink not ready; events stay queued");
                status.fail(e.to_string());
                if sleep_or_stop(&mut mode, wait).await {
                    return;
                }
            }
        }
    }

    let mut delays = new_delays();
    loop {
        let current = *mode.borrow();
        if current == RunMode::Stop {
            return;
        }
        update_queue_metrics(&ctx, &name).await;
        let batch = match blocking(&ctx.store, {
            let name = name.clone();
            let (n, b) = (settings.max_events, settings.max_bytes);
            move |s| s.peek(&name, None, n, b)
        })
        .await
        {
            Ok(b) => b,
            Err(e) if e.is_io() => {
                tracing::error!(error = %e, "state store failed; sink stops");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read sink queue");
                status.fail(e.to_string());
                if sleep_or_stop(&mut mode, delays.after_local_failure()).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            // Idle: make the last acknowledgements durable now rather than with the next
            // group commit (see `state`).
            if let Err(e) = blocking(&ctx.store, |s| s.sync()).await {
                tracing::error!(error = %e, "cannot sync the state store");
                if e.is_io() {
                    return;
                }
            }
            if current == RunMode::Drain {
                return;
            }
            tokio::select! {
                _ = ctx.queued.notified() => {}
                _ = tokio::time::sleep(settings.flush_interval) => {}
                _ = mode.changed() => {}
            }
            continue;
        }

        let outcome = tokio::select! {
            r = sink.deliver(&batch) => r,
            _ = wait_stop(&mut mode) => return,
        };
        match outcome.map_err(made_safe) {
            Ok(outcome) => {
                let mut delivered = Vec::new();
                let mut rejected = Vec::new();
                let mut retry: Option<String> = None;
                for (entry, result) in batch.iter().zip(outcome.results) {
                    match result {
                        Delivery::Delivered => delivered.push(entry.seq),
                        Delivery::Rejected(reason) => {
                            let reason = logsafe::clean(&reason);
                            tracing::warn!(event.id = %entry.id, %reason, "event rejected for good; moved to the dead-letter queue");
                            rejected.push((entry.seq, reason));
                        }
                        Delivery::Retry(reason) => {
                            retry.get_or_insert_with(|| logsafe::clean(&reason));
                        }
                    }
                }
                let (nd, nr) = (delivered.len(), rejected.len());
                let acked = blocking(&ctx.store, {
                    let name = name.clone();
                    move |s| s.ack(&name, &delivered, &rejected, outcome.checkpoint.as_deref())
                })
                .await;
                if let Err(e) = &acked
                    && e.is_io()
                {
                    tracing::error!(error = %e, "state store failed; sink stops (the batch is delivered again after restart)");
                    return;
                }
                if let Err(e) = acked {
                    // Delivered but not acknowledged: it will be delivered again, and the
                    // destination deduplicates on event.id.
                    tracing::error!(error = %e, "cannot acknowledge delivered events");
                    status.fail(e.to_string());
                    if sleep_or_stop(&mut mode, delays.after_local_failure()).await {
                        return;
                    }
                    continue;
                }
                ctx.metrics
                    .sink_delivered
                    .get_or_create(&label)
                    .inc_by(nd as u64);
                ctx.metrics
                    .sink_dead_lettered
                    .get_or_create(&label)
                    .inc_by(nr as u64);
                if retry.is_some() {
                    ctx.metrics.sink_retries.get_or_create(&label).inc();
                }
                let wait = pace_after_batch(&mut delays, &status, batch.len(), nd + nr, retry);
                if !wait.is_zero() && sleep_or_stop(&mut mode, wait).await {
                    return;
                }
            }
            Err(e) => {
                ctx.metrics
                    .sink_failures
                    .get_or_create(&crate::metrics::SinkKindLabel {
                        sink: name.clone(),
                        kind: e.kind.to_owned(),
                    })
                    .inc();
                ctx.metrics.sink_retries.get_or_create(&label).inc();
                let wait = wait_for(&e, &mut delays);
                status.waited(wait);
                tracing::warn!(error = %e, events = batch.len(), retry_in = ?wait, "delivery failed; events stay queued");
                status.fail(e.to_string());
                if sleep_or_stop(&mut mode, wait).await {
                    return;
                }
            }
        }
    }
}

/// The wait after a delivered batch: none when nothing is left to retry; a short pause when
/// some of it was accepted (delivered or dead-lettered); the growing backoff when nothing was.
fn pace_after_batch(
    delays: &mut RetryDelay,
    status: &SinkStatus,
    attempted: usize,
    accepted: usize,
    retry: Option<String>,
) -> Duration {
    let Some(reason) = retry else {
        status.ok();
        let wait = delays.after(Attempt::AllAccepted).delay;
        status.waited(wait);
        return wait;
    };
    let retried = attempted - accepted;
    let wait = if accepted == 0 {
        let wait = delays
            .after(Attempt::NoProgress { retry_after: None })
            .delay;
        tracing::warn!(%reason, events = retried, retry_in = ?wait, "no event accepted; backing off");
        status.fail(reason);
        wait
    } else {
        // Progress: the retries go out again shortly, and the backoff does not grow.
        let wait = delays.after(Attempt::Progress { retried, attempted }).delay;
        tracing::debug!(%reason, accepted, retried, retry_in = ?wait, "some events must be retried");
        status.ok();
        wait
    };
    status.waited(wait);
    wait
}

/// The wait after a whole-batch failure: the growing backoff, or what the destination asked
/// for when that is longer — but never longer than `max_backoff` (a longer ask is cut, and
/// logged).
fn wait_for(e: &SinkError, delays: &mut RetryDelay) -> Duration {
    let Wait { delay, cut_from } = delays.after(Attempt::NoProgress {
        retry_after: e.retry_after,
    });
    if let Some(asked) = cut_from {
        tracing::warn!(asked = ?asked, waiting = ?delay, "the destination asked to wait longer than max_backoff; waiting max_backoff instead");
    }
    delay
}

/// A sink error's text may come from the destination (an error body): escape it, bound
/// it and redact every credential before it is logged or shown.
fn made_safe(mut e: SinkError) -> SinkError {
    e.reason = logsafe::clean(&e.reason);
    e
}

async fn update_queue_metrics(ctx: &WorkerContext, name: &str) {
    let stats = blocking(&ctx.store, {
        let name = name.to_owned();
        move |s| s.queue_stats(&name)
    })
    .await;
    if let Ok(st) = stats {
        let label = ctx.metrics.sink(name);
        ctx.metrics
            .queue_events
            .get_or_create(&label)
            .set(st.events as i64);
        ctx.metrics
            .queue_bytes
            .get_or_create(&label)
            .set(st.bytes as i64);
        ctx.metrics
            .dead_letters
            .get_or_create(&label)
            .set(st.dead_letters as i64);
        let age = st
            .oldest_enqueued_ms
            .map_or(0.0, |t| ((clock::now_ms() - t).max(0)) as f64 / 1000.0);
        ctx.metrics.queue_oldest_age.get_or_create(&label).set(age);
    }
}
