//! The operator's window: `/metrics` (Prometheus text), `/healthz` (is the process working
//! at all) and `/readyz` (is it doing its job), each answering with a short reason.
//!
//! Liveness and readiness are kept deliberately different: a Confluence outage or a dead SIEM
//! makes the forwarder *unready* (alert, investigate) but never *dead* (a restart would not
//! help and would only re-read windows).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::metrics::Metrics;
use crate::sink::worker::SinkStatus;
use crate::source::SourceStatus;
use crate::state::FileWatch;

/// What the endpoints look at.
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// (name, status, poll interval)
    pub sources: Vec<(String, Arc<SourceStatus>, Duration)>,
    pub sinks: Vec<(String, Arc<SinkStatus>)>,
    /// A sink failing for longer than this makes the daemon unready.
    pub sink_failure_grace: Duration,
    /// A store whose file was deleted or replaced makes the daemon unready.
    pub store_file: Arc<FileWatch>,
    pub started: Instant,
}

impl Health {
    /// Ready when every source's last poll cycle succeeded, within three poll intervals
    /// (plus a minute for slow answers; at start, within that long of starting), and no sink
    /// fails for longer than the grace, and the state store file is still in place. Returns
    /// the reasons it is not.
    pub fn unready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(lost) = self.store_file.lost() {
            reasons.push(format!(
                "state store: {lost}; everything it holds is lost when the daemon stops"
            ));
        }
        for (name, status, interval) in &self.sources {
            reasons.extend(self.source_unready(name, status, *interval));
        }
        for (name, status) in &self.sinks {
            if let Some((since, err)) = status.failing()
                && since.elapsed() > self.sink_failure_grace
            {
                reasons.push(format!(
                    "sink {name:?}: failing for {}s: {err}",
                    since.elapsed().as_secs()
                ));
            }
        }
        reasons
    }

    /// Why the source is not ready, if it is not: its last poll cycle failed, or none
    /// succeeded within three poll intervals plus a minute.
    pub fn source_unready(
        &self,
        name: &str,
        status: &SourceStatus,
        interval: Duration,
    ) -> Option<String> {
        let bound = interval * 3 + Duration::from_secs(60);
        let (last_ok, last_err) = status.get();
        let since = last_ok.unwrap_or(self.started);
        if let Some(e) = last_err {
            Some(format!("source {name:?}: last poll failed: {e}"))
        } else if since.elapsed() > bound {
            Some(format!(
                "source {name:?}: no successful poll for {}s",
                since.elapsed().as_secs()
            ))
        } else {
            None
        }
    }
}

/// Serve until the returned handle is aborted.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok((local, task))
}

async fn metrics(State(h): State<Arc<Health>>) -> Response {
    crate::readiness_metrics::export(&h);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(h): State<Arc<Health>>) -> Response {
    // Answering at all proves the runtime is alive; the uptime tells restarts apart.
    (
        StatusCode::OK,
        axum::Json(json!({"status": "ok", "uptime_seconds": h.started.elapsed().as_secs()})),
    )
        .into_response()
}

async fn readyz(State(h): State<Arc<Health>>) -> Response {
    let reasons = h.unready_reasons();
    if reasons.is_empty() {
        (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unready", "reasons": reasons})),
        )
            .into_response()
    }
}
