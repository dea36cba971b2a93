//! Wiring: one state store, one task per source, one worker per sink, and the rules for
//! starting and stopping them together (`run` and `once`).
//!
//! Shutdown order matters for the invariant: sources stop first (an unfinished window is
//! simply not committed), then sinks drain for a bounded time, then whatever is left stays
//! queued on disk for the next start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::Config;
use crate::lifecycle::{Exit, RunMode, signal};
use crate::metrics::Metrics;
use crate::normalize::NormalizeOptions;
use crate::server::Health;
use crate::sink::worker::{SinkStatus, WorkerContext};
use crate::sink::{BuildContext, Purpose, SinkKind, WorkerRun};
use crate::source::{Source, SourceStatus};
use crate::state::{Destination, FILE_CHECK_EVERY, NewState, Store, blocking, open_checked};

/// Everything a running daemon shares between its tasks.
pub struct Daemon {
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    queued: Arc<Notify>,
    mode_tx: watch::Sender<RunMode>,
    pub sources: Vec<(String, Arc<SourceStatus>)>,
    pub sinks: Vec<(String, Arc<SinkStatus>)>,
    /// Shortest backoff for sink retries (tests shorten it).
    pub sink_min_backoff: Duration,
}

impl Daemon {
    /// Open the state store and get ready; starts nothing yet. Refuses to start when a
    /// destination holds deliveries the store does not know of (see [`open_checked`]).
    pub fn open(config: Config) -> anyhow::Result<Daemon> {
        Self::open_with(config, NewState::Refuse)
    }

    /// [`Daemon::open`], saying what to do with a store that is new to a destination
    /// (`--accept-new-state`: [`NewState::Accept`]).
    pub fn open_with(config: Config, new_state: NewState) -> anyhow::Result<Daemon> {
        let sink_names: Vec<String> = config.sink.iter().map(|s| s.name.clone()).collect();
        let store = open_checked(
            &config.state.dir,
            &sink_names,
            &local_destinations(&config),
            new_state,
        )
        .with_context(|| format!("opening state in {}", config.state.dir.display()))?;
        for orphan in store.known_sinks()? {
            if !sink_names.contains(&orphan) {
                let st = store.queue_stats(&orphan)?;
                if st.events > 0 || st.dead_letters > 0 {
                    tracing::warn!(sink = %orphan, queued = st.events, dead_letters = st.dead_letters,
                        "state holds a queue for a sink that is no longer configured; it is kept, not delivered");
                }
            }
        }
        let (mode_tx, _) = watch::channel(RunMode::Run);
        Ok(Daemon {
            sinks: config
                .sink
                .iter()
                .map(|s| (s.name.clone(), Arc::default()))
                .collect(),
            sources: Vec::new(),
            config,
            store,
            metrics: Arc::new(Metrics::new()),
            queued: Arc::new(Notify::new()),
            mode_tx,
            sink_min_backoff: Duration::from_millis(100),
        })
    }

    fn build_sources(&mut self) -> anyhow::Result<Vec<Source>> {
        let normalize: Arc<NormalizeOptions> = Arc::new(self.config.normalize.clone());
        let mut out = Vec::new();
        self.sources.clear();
        for cfg in &self.config.source {
            let source = Source::new(
                cfg.clone(),
                self.store.clone(),
                self.metrics.clone(),
                normalize.clone(),
                self.queued.clone(),
                self.config.state.max_queue_bytes,
            )
            .with_context(|| format!("source {:?}", cfg.name))?;
            self.sources.push((cfg.name.clone(), source.status.clone()));
            out.push(source);
        }
        Ok(out)
    }

    /// Build every sink (the file sink takes its lock here), then start a worker for each.
    /// Nothing starts unless every sink was built.
    fn spawn_sinks(&self, set: &mut JoinSet<()>) -> anyhow::Result<()> {
        let build = BuildContext {
            purpose: Purpose::Run,
            metrics: self.metrics.clone(),
        };
        let mut built = Vec::new();
        for (i, cfg) in self.config.sink.iter().enumerate() {
            let sink = cfg.kind.build(&cfg.name, &build).map_err(|e| {
                anyhow::anyhow!(
                    "{}: sink[{i}].{}: {} (sink {:?})",
                    self.config.path.display(),
                    e.key,
                    e.problem,
                    cfg.name
                )
            })?;
            built.push(sink);
        }
        let ctx = WorkerContext {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            queued: self.queued.clone(),
            mode: self.mode_tx.subscribe(),
        };
        for ((sink, cfg), (_, status)) in built.into_iter().zip(&self.config.sink).zip(&self.sinks)
        {
            let span = tracing::info_span!("sink", sink = %cfg.name);
            let worker = sink.into_worker(WorkerRun {
                name: cfg.name.clone(),
                settings: cfg.worker_settings(self.sink_min_backoff),
                ctx: ctx.clone(),
                status: status.clone(),
            });
            set.spawn(worker.instrument(span));
        }
        Ok(())
    }

    /// SIGHUP: is the file now on disk one that would start? If not, say why, count it,
    /// and keep running as we are.
    fn reload_checks_out(&self) -> bool {
        match Config::load(&self.config.path) {
            Ok(_) => true,
            Err(e) => {
                self.metrics.config_reload_failures.inc();
                tracing::error!(error = %e, "SIGHUP: the configuration file does not check out; keeping the running configuration");
                false
            }
        }
    }

    /// The daemon: poll and deliver until SIGTERM/SIGINT (or SIGHUP: reload), then drain
    /// for at most `drain_timeout` and return which signal it was.
    pub async fn run(mut self, drain_timeout: Duration) -> anyhow::Result<Exit> {
        let sources = self.build_sources()?;
        let server = self.start_server().await?;
        let mut sinks = JoinSet::new();
        if let Err(e) = self.spawn_sinks(&mut sinks) {
            if let Some(task) = server {
                task.abort();
            }
            return Err(e);
        }
        let control = self.start_control();
        let mut polling = JoinSet::new();
        for s in sources {
            let span = tracing::info_span!("source", source = %s.name());
            polling.spawn(s.run(self.mode_tx.subscribe()).instrument(span));
        }
        tracing::info!(
            sources = self.config.source.len(),
            sinks = self.config.sink.len(),
            state = %self.store.path().display(),
            "running"
        );
        let watchdog = systemd_ready();
        let store_check = tokio::spawn(check_store_file(self.store.clone()));
        let exit = loop {
            tokio::select! {
            exit = signal() => {
                if exit == Exit::Stop || self.reload_checks_out() {
                    break exit;
                }
            }
            reason = self.store.failed() => {
                // No drain: nothing can be acknowledged any more. What was queued stays
                // queued on disk; the service manager restarts us once the disk is fixed.
                self.mode_tx.send_replace(RunMode::Stop);
                while polling.join_next().await.is_some() {}
                while sinks.join_next().await.is_some() {}
                if let Some(task) = server {
                    task.abort();
                }
                if let Some(task) = control {
                    task.abort();
                }
                anyhow::bail!(
                    "the state store in {} failed: {reason}; stopping so that it is reopened cleanly (nothing was lost: un-acknowledged events stay queued, unread windows are read again)",
                    self.config.state.dir.display()
                );
            }
            }
        };
        let _ = sd_notify::notify(&[if exit == Exit::Reload {
            sd_notify::NotifyState::Reloading
        } else {
            sd_notify::NotifyState::Stopping
        }]);
        if let Some(w) = watchdog {
            w.abort();
        }
        // Its store handle must be gone before a reload opens the store again.
        store_check.abort();
        let _ = store_check.await;
        tracing::info!(
            ?exit,
            ?drain_timeout,
            "stopping: polling stopped, sinks draining"
        );
        self.mode_tx.send_replace(RunMode::Drain);
        while polling.join_next().await.is_some() {}
        self.finish(sinks, drain_timeout).await;
        if let Some(task) = server {
            task.abort();
        }
        // Awaited: its socket file is gone before a reload binds a new one.
        if let Some(task) = control {
            task.abort();
            let _ = task.await;
        }
        for (name, _) in &self.sinks {
            let st = self.store.queue_stats(name)?;
            if st.events > 0 {
                tracing::info!(sink = %name, queued = st.events, "left queued for the next start");
            }
        }
        Ok(exit)
    }

    /// The control socket in `state.dir` (`status`, `replay`), bound once the store is ours.
    /// Without it (a `state.dir` path too long for a socket) the daemon still runs: an error
    /// says `status` and `replay` cannot reach it.
    fn start_control(&self) -> Option<tokio::task::JoinHandle<()>> {
        let ctx = crate::control::server::ControlContext {
            config: self.config.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            sources: self.sources.clone(),
            sinks: self.sinks.clone(),
            queued: self.queued.clone(),
            today: crate::status::today::Today::new(crate::clock::now_ms()),
            mode: self.mode_tx.subscribe(),
        };
        match crate::control::server::serve(Arc::new(ctx)) {
            Ok((path, task)) => {
                tracing::info!(socket = %path.display(), "control socket ready (status, replay)");
                Some(task)
            }
            Err(e) => {
                tracing::error!(error = %e, "no control socket: `status` and `replay` cannot reach this daemon (it runs and delivers as usual)");
                None
            }
        }
    }

    async fn start_server(&self) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        let Some(addr) = self
            .config
            .server
            .listen_addr()
            .map_err(|p| anyhow::anyhow!("server.listen: {p}"))?
        else {
            return Ok(None);
        };
        let health = Arc::new(Health {
            metrics: self.metrics.clone(),
            sources: self
                .sources
                .iter()
                .zip(&self.config.source)
                .map(|((n, s), c)| (n.clone(), s.clone(), c.poll_interval))
                .collect(),
            sinks: self.sinks.clone(),
            sink_failure_grace: self.config.server.sink_failure_grace,
            store_file: self.store.file_watch(),
            started: std::time::Instant::now(),
        });
        let (local, task) = crate::server::serve(addr, health)
            .await
            .with_context(|| format!("server.listen: cannot listen on {addr}"))?;
        tracing::info!(%local, "serving /metrics, /healthz, /readyz");
        Ok(Some(task))
    }

    /// One full poll cycle of every source — stopped when `timeout` runs out — then drain
    /// every sink for at most `drain_timeout`. Errors name each source and sink that did not
    /// finish; anything not delivered stays queued, and a stopped poll cycle has committed
    /// only whole slices (the cursor never passes what is queued).
    pub async fn once(
        mut self,
        timeout: Duration,
        drain_timeout: Duration,
    ) -> anyhow::Result<OnceReport> {
        let sources = self.build_sources()?;
        let mut sinks = JoinSet::new();
        self.spawn_sinks(&mut sinks)?;
        let mut report = OnceReport::default();
        let deadline = tokio::time::Instant::now() + timeout;
        let polls = futures_util::future::join_all(sources.iter().map(|s| {
            let span = tracing::info_span!("source", source = %s.name());
            async move {
                let polled = tokio::time::timeout_at(deadline, s.poll_once()).await;
                (s.name().to_owned(), s.status.get().1, polled)
            }
            .instrument(span)
        }))
        .await;
        for (name, last_error, polled) in polls {
            match polled {
                Ok(Ok(p)) => {
                    report.records_read += p.records_read;
                    report.events_queued += p.events_new;
                }
                Ok(Err(e)) => report.source_errors.push(format!("source {name:?}: {e}")),
                Err(_) => {
                    let why = last_error
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default();
                    tracing::error!(source = %name, ?timeout, "once --timeout ran out: polling stopped");
                    report.source_errors.push(format!(
                        "source {name:?}: did not finish within --timeout {}{why}; what it queued stays queued, the rest is read on the next run (see the log for its errors)",
                        humantime::format_duration(timeout)
                    ));
                }
            }
        }
        self.mode_tx.send_replace(RunMode::Drain);
        self.finish(sinks, drain_timeout).await;
        for (name, status) in &self.sinks {
            let st = self.store.queue_stats(name)?;
            if st.events > 0 {
                let why = status
                    .failing()
                    .map(|(_, e)| format!(": {e}"))
                    .unwrap_or_default();
                report.undelivered.push(format!(
                    "sink {name:?}: {} events still queued{why}",
                    st.events
                ));
            }
            report.dead_letters += st.dead_letters;
        }
        Ok(report)
    }

    async fn finish(&self, mut sinks: JoinSet<()>, drain_timeout: Duration) {
        let drained = tokio::select! {
            d = tokio::time::timeout(drain_timeout, async {
                while sinks.join_next().await.is_some() {}
            }) => d,
            reason = self.store.failed() => {
                tracing::error!(%reason, "state store failed; not draining");
                Ok(())
            }
        };
        if drained.is_err() {
            tracing::warn!(
                "drain timeout reached; undelivered events stay queued for the next start"
            );
            self.mode_tx.send_replace(RunMode::Stop);
            while sinks.join_next().await.is_some() {}
        }
        self.mode_tx.send_replace(RunMode::Stop);
        // Whatever the group commit still holds goes to disk before the process ends.
        if let Err(e) = blocking(&self.store, |s| s.sync()).await {
            tracing::error!(error = %e, "cannot sync the state store on stop");
        }
    }
}

/// What `once` did.
#[derive(Debug, Default)]
pub struct OnceReport {
    pub records_read: u64,
    pub events_queued: u64,
    pub dead_letters: u64,
    pub source_errors: Vec<String>,
    pub undelivered: Vec<String>,
}

/// The files sinks append to on this machine: they carry the store's claim.
fn local_destinations(config: &Config) -> Vec<Destination> {
    config
        .sink
        .iter()
        .filter_map(|s| match &s.kind {
            SinkKind::File(file) => Some(Destination {
                sink: s.name.clone(),
                path: file.path.clone(),
                checkpoint_covers: |c, p| crate::sink::file::committed_len(c, p).is_some(),
            }),
            _ => None,
        })
        .collect()
}

/// Notice the store file being deleted or replaced under the running daemon (readiness).
async fn check_store_file(store: Store) {
    let mut tick = tokio::time::interval(FILE_CHECK_EVERY);
    loop {
        tick.tick().await;
        store.check_file();
    }
}

/// Tell systemd (`Type=notify`) we are up, and keep its watchdog fed while the runtime
/// answers. Outside systemd both are no-ops.
fn systemd_ready() -> Option<tokio::task::JoinHandle<()>> {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let period = sd_notify::watchdog_enabled()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period / 2);
        loop {
            tick.tick().await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }))
}
