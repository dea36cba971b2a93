//! The HTTP side of a source: one reqwest client per Confluence instance, and the rules
//! every response goes through before a page parser sees it.
//!
//! Kept apart from paging because these rules are the same for all three APIs and are about
//! how an answer *arrives*, not what it says:
//!
//! - 429/503 honour `Retry-After` up to `max_backoff` (a longer ask is cut and logged); other
//!   transient failures (5xx, timeouts, connection errors, a truncated or malformed body)
//!   back off exponentially with jitter and retry the same request.
//! - 401/403 (`auth`), a refused certificate (`tls`), a redirect to another origin
//!   (`redirect`) and a body over `max_response_bytes` (`too_large`) fail the request for
//!   good, with an error that says what to do: retrying cannot fix them.
//! - A body is read as a stream (decompressed as it comes) and abandoned at the cap, so
//!   memory is bounded whatever the server sends.
//! - The server's `Date` is believed only within `max_clock_skew` ([`ServerClock`]).
//! - Server text reaching an error or a log goes through [`logsafe::clean`]; every
//!   credential this client sends is registered with [`logsafe`] so it is never shown.
//!
//! None of this moves the cursor — that is the caller's business, and it only moves on
//! success.

mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use prometheus_client::metrics::counter::Counter;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::clock::{self, DateSeen, ServerClock};
use crate::config::{Credentials, SourceConfig};
use crate::logsafe;

/// The most of an error body kept for a message (the rest is not read).
const ERROR_BODY_BYTES: usize = 4096;

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
    #[error("TLS with {url} failed: {problem}")]
    Tls { url: String, problem: String },
    #[error("{url}: {problem}")]
    Redirect { url: String, problem: String },
    #[error(
        "the response from {url} is {size}, over source.max_response_bytes ({limit} bytes): it was not read further (raise max_response_bytes or lower page_size if the server is right)"
    )]
    TooLarge {
        url: String,
        size: String,
        limit: u64,
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
            FetchError::Tls { .. } => "tls",
            FetchError::Redirect { .. } => "redirect",
            FetchError::TooLarge { .. } => "too_large",
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

/// A Confluence HTTP client with the source's auth, TLS, timeouts, limits and retry policy.
pub struct Client {
    http: reqwest::Client,
    credentials: Credentials,
    min_backoff: Duration,
    max_backoff: Duration,
    max_response_bytes: u64,
    clock: ServerClock,
    /// Counts `Date` headers refused as too far from the local clock.
    rejected_dates: Counter,
    warned_about_date: AtomicBool,
}

impl Client {
    pub fn new(cfg: &SourceConfig) -> Result<Client, FetchError> {
        let credentials = cfg
            .credentials()
            .map_err(|(k, p)| FetchError::Setup(format!("auth.{k}: {p}")))?;
        match &credentials {
            Credentials::None => {}
            Credentials::Basic { username, password } => {
                logsafe::register_basic_auth(username, password.expose())
            }
            Credentials::Bearer(token) => logsafe::register_bearer(token.expose()),
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "confluence-audit-forwarder/",
                env!("CARGO_PKG_VERSION"),
                " (+https://github.com/confluence-audit-forwarder)"
            ))
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)))
            .gzip(true)
            .redirect(same_origin_redirects());
        if cfg.tls.insecure_skip_verify {
            tracing::warn!(
                url = %cfg.url,
                "tls.insecure_skip_verify = true: the server's certificate is NOT checked; anyone on the network path can read the credentials and forge audit events (use tls.ca_file instead)"
            );
            builder = builder.danger_accept_invalid_certs(true);
        } else if let Some(ca) = &cfg.tls.ca_file {
            builder =
                builder.use_preconfigured_tls(tls::client_config(ca).map_err(FetchError::Setup)?);
        }
        let http = builder
            .build()
            .map_err(|e| FetchError::Setup(e.to_string()))?;
        Ok(Client {
            http,
            credentials,
            min_backoff: Duration::from_millis(200),
            max_backoff: cfg.max_backoff,
            max_response_bytes: cfg.max_response_bytes,
            clock: ServerClock::new(cfg.max_clock_skew),
            rejected_dates: Counter::default(),
            warned_about_date: AtomicBool::new(false),
        })
    }

    /// Override the shortest backoff (tests use a few milliseconds).
    pub fn with_min_backoff(mut self, d: Duration) -> Self {
        self.min_backoff = d;
        self
    }

    /// Count refused `Date` headers on `counter` (a source's `kind="clock_skew"` errors).
    pub fn counting_rejected_dates(mut self, counter: Counter) -> Self {
        self.rejected_dates = counter;
        self
    }

    /// Server time minus local time as last believed from a `Date` header.
    pub fn server_skew_ms(&self) -> Option<i64> {
        self.clock.skew_ms()
    }

    /// The server's "now", never further than `max_clock_skew` from the local clock.
    pub fn server_now_ms(&self) -> i64 {
        self.clock.now_ms()
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
                            "malformed or truncated response from {url} ({} bytes): {}",
                            body.len(),
                            logsafe::clean(&e)
                        ),
                        retry_after: None,
                    },
                },
                Err(Attempt::Permanent(e)) => return Err(e),
                Err(Attempt::Transient(t)) => t,
            };
            let backoff = delays.next().unwrap_or(self.max_backoff);
            let (wait, cut) = clock::retry_wait(backoff, failure.retry_after, self.max_backoff);
            if let Some(asked) = cut {
                tracing::warn!(url, asked = ?asked, waiting = ?wait, "the server asked to wait longer than max_backoff; waiting max_backoff instead");
            }
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
        let resp = req.send().await.map_err(|e| send_failure(url, &e))?;
        self.note_date(resp.headers());
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(clock::parse_retry_after);
        if status.is_success() {
            return self.read_body(url, resp).await;
        }
        let body = logsafe::clean_bytes(&read_prefix(resp, ERROR_BODY_BYTES).await);
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

    /// The whole body, as a stream (decompressed as it arrives), abandoned as soon as it
    /// passes `max_response_bytes`: memory never holds more than the cap.
    async fn read_body(&self, url: &str, mut resp: reqwest::Response) -> Result<Vec<u8>, Attempt> {
        let limit = self.max_response_bytes;
        let too_large = |size: String| {
            Attempt::Permanent(FetchError::TooLarge {
                url: url.to_owned(),
                size,
                limit,
            })
        };
        if let Some(declared) = resp.content_length().filter(|n| *n > limit) {
            return Err(too_large(format!("{declared} bytes (Content-Length)")));
        }
        let mut body = Vec::new();
        loop {
            let chunk = resp.chunk().await.map_err(|e| {
                Attempt::Transient(Transient {
                    kind: if e.is_timeout() {
                        "timeout"
                    } else {
                        "truncated"
                    },
                    message: format!("{url}: reading the body: {}", error_chain(&e)),
                    retry_after: None,
                })
            })?;
            let Some(chunk) = chunk else {
                return Ok(body);
            };
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large(format!(
                    "more than {limit} bytes (counted after decompression)"
                )));
            }
            body.extend_from_slice(&chunk);
        }
    }

    fn note_date(&self, headers: &HeaderMap) {
        let Some(date) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        if let DateSeen::Rejected { skew_ms } = self.clock.observe(date, clock::now_ms()) {
            self.rejected_dates.inc();
            if !self.warned_about_date.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    date = %logsafe::clean(date),
                    skew_seconds = skew_ms / 1000,
                    "the server's Date header is further from the local clock than max_clock_skew: it is ignored and the local clock is used (fix the clock of the server or of a proxy in front of it; counted as caf_source_errors_total{{kind=\"clock_skew\"}}, warned once)"
                );
            }
        }
    }
}

enum Attempt {
    Permanent(FetchError),
    Transient(Transient),
}

/// Follow redirects within the origin the request went to (credentials kept); refuse any to
/// another scheme, host or port, which could be another server and would get the
/// credentials or serve other data.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let from = attempt.previous().first().cloned();
        match from {
            Some(from) if from.origin() != attempt.url().origin() => {
                let problem = format!(
                    "refused a redirect to another origin ({}); if Confluence moved, set url to its new address",
                    logsafe::clean(attempt.url().as_str())
                );
                attempt.error(problem)
            }
            _ if attempt.previous().len() > 10 => attempt.error("more than 10 redirects"),
            _ => attempt.follow(),
        }
    })
}

/// A request that got no answer: a refused redirect or certificate fails for good, the
/// rest is transient.
fn send_failure(url: &str, e: &reqwest::Error) -> Attempt {
    if e.is_redirect() {
        return Attempt::Permanent(FetchError::Redirect {
            url: url.to_owned(),
            problem: error_chain(e),
        });
    }
    if let Some(problem) = tls::explain(e) {
        return Attempt::Permanent(FetchError::Tls {
            url: url.to_owned(),
            problem: logsafe::clean(&problem),
        });
    }
    Attempt::Transient(Transient {
        kind: if e.is_timeout() { "timeout" } else { "connect" },
        message: format!("{url}: {}", error_chain(e)),
        retry_after: None,
    })
}

/// At most `max` bytes of an (error) body; the rest is never read.
async fn read_prefix(mut resp: reqwest::Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < max {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c[..c.len().min(max - out.len())]),
            _ => break,
        }
    }
    out
}

/// An error and its causes on one line, safe to log.
fn error_chain(e: &dyn std::error::Error) -> String {
    logsafe::clean(&chain_text(e))
}

/// An error and its causes on one line, as they say it.
fn chain_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
