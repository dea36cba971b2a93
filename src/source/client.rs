//! The HTTP side of a source: one reqwest client per Confluence instance, and the retry
//! policy every request goes through.
//!
//! Kept apart from paging because the fault rules are the same for all three APIs: 429/503
//! honour `Retry-After`, other transient failures (5xx, timeouts, connection errors, a
//! truncated or malformed body) back off exponentially with jitter, and 401/403 are
//! configuration errors reported loudly and not retried. None of them moves the cursor —
//! that is the caller's business, and it only moves on success.

use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::config::{Credentials, SourceConfig};

/// Why a request failed for good (after the retries that make sense for it).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "HTTP {status} from {url}: check the credentials and that the account is a Confluence administrator ({body})"
    )]
    Auth {
        status: u16,
        url: String,
        body: String,
    },
    #[error("HTTP {status} from {url}: {body}")]
    Client {
        status: u16,
        url: String,
        body: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
    #[error("stopped")]
    Stopped,
}

impl FetchError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Auth { .. } => "auth",
            FetchError::Client { .. } => "http_4xx",
            FetchError::Setup(_) => "setup",
            FetchError::Stopped => "stopped",
        }
    }
}

/// A transient failure, before retrying it.
#[derive(Debug)]
pub struct Transient {
    pub kind: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// Called for each transient failure (metrics, logs).
pub type TransientHook<'a> = &'a (dyn Fn(&Transient) + Send + Sync);

/// A Confluence HTTP client with the source's auth, TLS, timeouts and retry policy.
pub struct Client {
    http: reqwest::Client,
    credentials: Credentials,
    min_backoff: Duration,
    max_backoff: Duration,
    /// Server clock minus ours, from the last `Date` header (ms).
    skew_ms: Mutex<Option<i64>>,
}

impl Client {
    pub fn new(cfg: &SourceConfig) -> Result<Client, FetchError> {
        let credentials = cfg
            .credentials()
            .map_err(|(k, p)| FetchError::Setup(format!("auth.{k}: {p}")))?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "confluence-audit-forwarder/",
                env!("CARGO_PKG_VERSION"),
                " (+https://github.com/confluence-audit-forwarder)"
            ))
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)))
            .gzip(true)
            .danger_accept_invalid_certs(cfg.tls.insecure_skip_verify);
        if let Some(ca) = &cfg.tls.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| FetchError::Setup(format!("tls.ca_file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| FetchError::Setup(format!("tls.ca_file {}: {e}", ca.display())))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| FetchError::Setup(e.to_string()))?;
        Ok(Client {
            http,
            credentials,
            min_backoff: Duration::from_millis(200),
            max_backoff: cfg.max_backoff,
            skew_ms: Mutex::new(None),
        })
    }

    /// Override the shortest backoff (tests use a few milliseconds).
    pub fn with_min_backoff(mut self, d: Duration) -> Self {
        self.min_backoff = d;
        self
    }

    /// Server time minus local time as last seen in a `Date` header.
    pub fn server_skew_ms(&self) -> Option<i64> {
        *self.skew_ms.lock().expect("skew lock")
    }

    /// Learn the server's clock from the `Date` header of `GET {base}/status` (Confluence's
    /// health endpoint; any answer carries a `Date`). Without it a first window could end
    /// in the server's future.
    pub async fn probe_clock(&self, base_url: &str) {
        let url = format!("{}/status", base_url.trim_end_matches('/'));
        match self.http.get(&url).send().await {
            Ok(resp) => self.note_date(resp.headers()),
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "clock probe failed; using the local clock")
            }
        }
    }

    /// GET `url` with `query` and parse the body with `parse`, retrying transient failures
    /// (including a body `parse` rejects) until it works or a permanent error comes.
    pub async fn get<T>(
        &self,
        url: &str,
        query: &[(&str, String)],
        on_transient: TransientHook<'_>,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, FetchError> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let failure = match self.attempt(url, query).await {
                Ok(body) => match parse(&body) {
                    Ok(v) => return Ok(v),
                    Err(e) => Transient {
                        kind: "malformed",
                        message: format!(
                            "malformed or truncated response from {url} ({} bytes): {e}",
                            body.len()
                        ),
                        retry_after: None,
                    },
                },
                Err(Attempt::Permanent(e)) => return Err(e),
                Err(Attempt::Transient(t)) => t,
            };
            let backoff = delays.next().unwrap_or(self.max_backoff);
            let wait = failure.retry_after.map_or(backoff, |ra| ra.max(backoff));
            tracing::warn!(kind = failure.kind, error = %failure.message, retry_in = ?wait, "request failed; retrying the same page");
            on_transient(&failure);
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, url: &str, query: &[(&str, String)]) -> Result<Vec<u8>, Attempt> {
        let mut req = self
            .http
            .get(url)
            .query(query)
            .header(reqwest::header::ACCEPT, "application/json");
        req = match &self.credentials {
            Credentials::None => req,
            Credentials::Basic { username, password } => {
                req.basic_auth(username, Some(password.expose()))
            }
            Credentials::Bearer(token) => req.bearer_auth(token.expose()),
        };
        let resp = req.send().await.map_err(|e| {
            Attempt::Transient(Transient {
                kind: if e.is_timeout() { "timeout" } else { "connect" },
                message: format!("{url}: {}", error_chain(&e)),
                retry_after: None,
            })
        })?;
        self.note_date(resp.headers());
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        if status.is_success() {
            return resp.bytes().await.map(|b| b.to_vec()).map_err(|e| {
                Attempt::Transient(Transient {
                    kind: if e.is_timeout() {
                        "timeout"
                    } else {
                        "truncated"
                    },
                    message: format!("{url}: reading the body: {}", error_chain(&e)),
                    retry_after: None,
                })
            });
        }
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Attempt::Permanent(FetchError::Auth {
                    status: status.as_u16(),
                    url: url.to_owned(),
                    body,
                })
            }
            StatusCode::TOO_MANY_REQUESTS => Attempt::Transient(Transient {
                kind: "http_429",
                message: format!("{url}: HTTP 429 rate limited"),
                retry_after,
            }),
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                Attempt::Transient(Transient {
                    kind: "http_5xx",
                    message: format!("{url}: HTTP {s}: {body}"),
                    retry_after,
                })
            }
            s => Attempt::Permanent(FetchError::Client {
                status: s.as_u16(),
                url: url.to_owned(),
                body,
            }),
        })
    }

    fn note_date(&self, headers: &HeaderMap) {
        let Some(date) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        if let Ok(t) = httpdate::parse_http_date(date) {
            let server = t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            // The header has one-second resolution: round our clock the same way.
            let local = crate::source::now_ms() / 1000 * 1000;
            *self.skew_ms.lock().expect("skew lock") = Some(server - local);
        }
    }
}

enum Attempt {
    Permanent(FetchError),
    Transient(Transient),
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let t = httpdate::parse_http_date(v).ok()?;
    t.duration_since(std::time::SystemTime::now()).ok()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
