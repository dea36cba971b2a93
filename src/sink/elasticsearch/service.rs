//! The Elasticsearch [`Sink`] implementation: check the cluster at `open`, send `_bulk` requests and turn their
//! answers into [`Delivery`]s or a [`SinkError`].

use std::time::Duration;

use bytes::Bytes;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::response::Response;
use elasticsearch::http::{Method, StatusCode};
use elasticsearch::{BulkParts, Elasticsearch};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::client::build_client;
use super::config::{ElasticsearchConfig, Target};
use super::encoder::{self, ItemError};
use crate::logsafe;
use crate::sink::{BatchOutcome, BuildError, Delivery, QueuedEvent, Sink, SinkError};

/// Fewest documents worth a bulk request of their own when a batch is split for
/// `concurrency`: below this the request overhead dominates.
const MIN_PART: usize = 50;

/// `[[sink]] type = "elasticsearch"`.
pub struct ElasticsearchSink {
    name: String,
    cfg: ElasticsearchConfig,
    client: Elasticsearch,
    target: Target,
    /// Connection errors are retried on the next node right away, up to once per node.
    nodes: usize,
}

impl ElasticsearchSink {
    pub fn new(name: String, cfg: ElasticsearchConfig) -> Result<Self, BuildError> {
        let target = cfg
            .target()
            .map_err(|(key, problem)| BuildError { key, problem })?;
        let (client, nodes) = build_client(&cfg)?;
        Ok(ElasticsearchSink {
            name,
            cfg,
            client,
            target,
            nodes,
        })
    }

    /// The client, for `setup` and tests.
    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    /// Cluster reachable, credentials valid, target writable. Every failure says which.
    async fn health_check(&self) -> Result<(), SinkError> {
        let info = self.request(Method::Get, "/", None).await?;
        let (status, body) = read(info).await?;
        if !status.is_success() {
            return Err(status_error(status, &body, None, "GET /"));
        }
        let version = body["version"]["number"].as_str().unwrap_or("?").to_owned();
        let flavor = body["version"]["distribution"]
            .as_str()
            .unwrap_or("elasticsearch")
            .to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if let Target::DataStream(ds) = &self.target
            && flavor == "elasticsearch"
            && major > 0
            && major < 8
            && !version.starts_with("7.1")
            && !version.starts_with("7.9")
        {
            return Err(SinkError::new(
                "config",
                format!(
                    "Elasticsearch {version} has no data streams (7.9+): set index instead of data_stream {ds:?}"
                ),
            ));
        }
        tracing::info!(
            cluster = body["cluster_name"].as_str().unwrap_or("?"),
            %version,
            %flavor,
            target = self.target.name(),
            "Elasticsearch reachable, credentials accepted"
        );

        if self.cfg.install_template {
            let report = super::setup::install(&self.client, &self.cfg, None)
                .await
                .map_err(|e| SinkError::new("setup", e.to_string()))?;
            for line in report {
                tracing::info!("{line}");
            }
        }

        // Does the data stream exist, and may these credentials write (and create) it?
        let mut privileges = vec!["create_doc"];
        if let Target::DataStream(ds) = &self.target {
            let r = self
                .request(Method::Get, &format!("/_data_stream/{ds}"), None)
                .await?;
            let (status, body) = read(r).await?;
            match status.as_u16() {
                200 => {
                    let health = body["data_streams"][0]["status"].as_str().unwrap_or("?");
                    tracing::info!(data_stream = %ds, %health, "data stream exists");
                }
                404 => {
                    privileges.push("auto_configure");
                    tracing::info!(data_stream = %ds,
                        "data stream does not exist yet: Elasticsearch creates it on the first write from the matching index template (run `setup elasticsearch` to install ours)");
                }
                401 | 403 => return Err(status_error(status, &body, None, "GET _data_stream")),
                _ => tracing::debug!(%status, "cannot look up the data stream; going on"),
            }
        }
        let check = json!({"index": [{"names": [self.target.name()], "privileges": privileges}]});
        let r = self
            .request(
                Method::Post,
                "/_security/user/_has_privileges",
                Some(check.to_string()),
            )
            .await?;
        let (status, body) = read(r).await?;
        match status.as_u16() {
            200 if body["has_all_requested"] == Value::Bool(false) => {
                let missing: Vec<String> = body["index"][self.target.name()]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(_, v)| **v == Value::Bool(false))
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                return Err(SinkError::new(
                    "auth",
                    format!(
                        "user {:?} may not write to {:?}: missing index privilege(s) {}",
                        body["username"].as_str().unwrap_or("?"),
                        self.target.name(),
                        missing.join(", ")
                    ),
                ));
            }
            200 => tracing::info!(
                target = self.target.name(),
                "credentials may write to the target"
            ),
            401 => return Err(status_error(status, &body, None, "_has_privileges")),
            // Security disabled (or an API that is not there): nothing to check.
            _ => tracing::debug!(%status, "privileges not checked"),
        }
        Ok(())
    }

    /// One request with the client, trying the next node on connection errors.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Response, SinkError> {
        let mut last = None;
        for _ in 0..self.nodes {
            let r = self
                .client
                .send(
                    method,
                    path,
                    HeaderMap::new(),
                    None::<&()>,
                    body.clone().map(Bytes::from),
                    None,
                )
                .await;
            match r {
                Ok(r) => return Ok(r),
                Err(e) if is_connect(&e) => last = Some(e),
                Err(e) => return Err(transport_error(&e)),
            }
        }
        Err(transport_error(&last.expect("at least one node")))
    }

    /// POST one `_bulk` body. Connection errors move on to the next node.
    async fn post_bulk(&self, body: Bytes) -> Result<Response, SinkError> {
        let mut last = None;
        for _ in 0..self.nodes {
            let r = self
                .client
                .bulk(BulkParts::Index(self.target.name()))
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-ndjson"),
                )
                .body(vec![body.clone()])
                .send()
                .await;
            match r {
                Ok(r) => return Ok(r),
                Err(e) if is_connect(&e) => last = Some(e),
                Err(e) => return Err(transport_error(&e)),
            }
        }
        Err(transport_error(&last.expect("at least one node")))
    }

    /// Send `events` as one bulk request; halve it when the cluster (or a proxy) says the
    /// request is too large, down to a single document, which is then rejected for good.
    fn send_part<'a>(
        &'a self,
        events: &'a [&'a QueuedEvent],
    ) -> BoxFuture<'a, Result<Vec<Delivery>, SinkError>> {
        Box::pin(async move {
            let mut body = Vec::with_capacity(events.iter().map(|e| e.doc.len() + 64).sum());
            encoder::encode_bulk(events, &mut body);
            let size = body.len();
            let resp = self.post_bulk(Bytes::from(body)).await?;
            let status = resp.status_code();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                if events.len() == 1 {
                    return Ok(vec![Delivery::Rejected(format!(
                        "elasticsearch rejected it: 413 request of {size} bytes for this one document is over the cluster's (or a proxy's) limit (http.max_content_length)"
                    ))]);
                }
                tracing::warn!(
                    bytes = size,
                    events = events.len(),
                    "bulk request too large (413); splitting it (lower batch_max_bytes)"
                );
                let (a, b) = events.split_at(events.len() / 2);
                let mut out = self.send_part(a).await?;
                out.extend(self.send_part(b).await?);
                return Ok(out);
            }
            let retry_after = retry_after(resp.headers());
            let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
            if status != StatusCode::OK {
                let body: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(excerpt(&bytes)));
                return Err(status_error(status, &body, retry_after, "_bulk"));
            }
            let summary = encoder::parse_bulk_response(&bytes, events)
                .map_err(|e| SinkError::new("protocol", e))?;
            if summary.already_present > 0 {
                tracing::info!(
                    events = summary.already_present,
                    "already indexed by an earlier attempt (409 on create); counted as delivered"
                );
            }
            Ok(summary.results)
        })
    }
}

impl Sink for ElasticsearchSink {
    async fn open(&mut self, _checkpoint: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, SinkError> {
        self.health_check().await.inspect_err(|e| {
            tracing::warn!(sink = %self.name, error = %e, "Elasticsearch health check failed");
        })?;
        Ok(None)
    }

    async fn deliver(&mut self, batch: &[QueuedEvent]) -> Result<BatchOutcome, SinkError> {
        let mut results: Vec<Option<Delivery>> = vec![None; batch.len()];
        let mut sendable = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        for (i, e) in batch.iter().enumerate() {
            match encoder::check_document(e) {
                Some(problem) => results[i] = Some(Delivery::Rejected(problem)),
                None => {
                    sendable.push(e);
                    positions.push(i);
                }
            }
        }
        if !sendable.is_empty() {
            let parts = self
                .cfg
                .concurrency
                .min(sendable.len().div_ceil(MIN_PART))
                .max(1);
            let size = sendable.len().div_ceil(parts);
            let chunks: Vec<&[&QueuedEvent]> = sendable.chunks(size).collect();
            let outcomes =
                futures_util::future::join_all(chunks.iter().map(|c| self.send_part(c))).await;
            if outcomes.iter().all(Result::is_err) {
                // Nothing got through: the whole batch waits, as long as the longest
                // Retry-After any part was given.
                let mut err: Option<SinkError> = None;
                for e in outcomes.into_iter().filter_map(Result::err) {
                    err = Some(match err {
                        None => e,
                        Some(mut first) => {
                            first.retry_after = first.retry_after.max(e.retry_after);
                            first
                        }
                    });
                }
                return Err(err.expect("at least one part"));
            }
            let mut next = positions.into_iter();
            for (chunk, outcome) in chunks.iter().zip(outcomes) {
                let deliveries = match outcome {
                    Ok(d) => d,
                    Err(e) => vec![Delivery::Retry(e.to_string()); chunk.len()],
                };
                for d in deliveries {
                    results[next.next().expect("one position per document")] = Some(d);
                }
            }
        }
        Ok(BatchOutcome {
            results: results
                .into_iter()
                .map(|r| r.expect("every document has a result"))
                .collect(),
            checkpoint: None,
        })
    }
}

/// Did the request never reach a node (so another node may be tried at once)?
fn is_connect(e: &elasticsearch::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<reqwest::Error>() {
            return r.is_connect();
        }
        source = s.source();
    }
    false
}

/// A request that got no HTTP answer.
fn transport_error(e: &elasticsearch::Error) -> SinkError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if is_connect(e) {
        "connect"
    } else {
        "http"
    };
    // The full chain: "error sending request" alone says nothing about why.
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !reason.contains(&s_text) {
            reason.push_str(": ");
            reason.push_str(&s_text);
        }
        source = s.source();
    }
    SinkError::new(kind, format!("Elasticsearch request failed: {reason}"))
}

async fn read(resp: Response) -> Result<(StatusCode, Value), SinkError> {
    let status = resp.status_code();
    let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(excerpt(&bytes)));
    Ok((status, body))
}

/// The start of a non-JSON body (a proxy's HTML page), safe for error messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = logsafe::clean_bytes(bytes);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An HTTP error answer for a whole request, as a [`SinkError`] with a stable kind.
pub fn status_error(
    status: StatusCode,
    body: &Value,
    retry_after: Option<Duration>,
    what: &str,
) -> SinkError {
    let detail = match body.get("error") {
        Some(e) if e.is_object() => serde_json::from_value::<ItemError>(e.clone())
            .map(|e| e.describe())
            .unwrap_or_else(|_| e.to_string()),
        Some(Value::String(s)) => s.clone(),
        _ => match body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    };
    let detail = logsafe::clean(&detail);
    let code = status.as_u16();
    let (kind, reason) = match code {
        401 => (
            "auth",
            format!(
                "Elasticsearch rejected the credentials (401 on {what}): {detail}; check [sink.auth]"
            ),
        ),
        403 => (
            "auth",
            format!("the credentials are not allowed to do this (403 on {what}): {detail}"),
        ),
        429 => (
            "http_429",
            format!("Elasticsearch is overloaded (429 on {what}): {detail}"),
        ),
        500..=599 => (
            "http_5xx",
            format!("Elasticsearch failed ({code} on {what}): {detail}"),
        ),
        _ => ("http", format!("{code} on {what}: {detail}")),
    };
    SinkError {
        kind,
        reason,
        retry_after,
    }
}

/// `Retry-After`, by the one parser sources use too (the worker caps it at `max_backoff`).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?;
    crate::clock::parse_retry_after(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_request_errors_have_stable_kinds_and_say_why() {
        let body = json!({"error":{"root_cause":[],"type":"security_exception","reason":"unable to authenticate with provided credentials and anonymous access is not allowed for this request"},"status":401});
        let e = status_error(StatusCode::UNAUTHORIZED, &body, None, "_bulk");
        assert_eq!(e.kind, "auth");
        assert!(e.reason.contains("security_exception"), "{e}");
        let e = status_error(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error":{"type":"es_rejected_execution_exception","reason":"rejected"},"status":429}),
            Some(Duration::from_secs(7)),
            "_bulk",
        );
        assert_eq!(
            (e.kind, e.retry_after),
            ("http_429", Some(Duration::from_secs(7)))
        );
        let e = status_error(
            StatusCode::BAD_GATEWAY,
            &Value::String("<html>bad gateway</html>".into()),
            None,
            "_bulk",
        );
        assert_eq!(e.kind, "http_5xx");
        assert!(e.reason.contains("bad gateway"));
    }
}
