//! The configuration file: what a user writes, how it is read, and what is wrong with it.
//!
//! It exists so that every other module gets a validated, typed value and never has to
//! report a config mistake itself. Reading goes: TOML file (via the `config` crate) →
//! `CAF__…` environment overrides → typed structs → validation that names the file, the key
//! and the problem → secrets resolved from `*_env` / `*_file` keys.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::normalize::{Api, NormalizeOptions};

mod file_source;
pub mod keys;
mod load;
pub mod organization;
mod secret;
mod urls;
mod writers;

pub use crate::sink::{SinkConfig, SinkKind};
pub use file_source::running_user;
pub use secret::{Secret, resolve_secret};
pub use urls::{check_http_url, redact_url};

/// Default location for `run`, `once` and `check-config`.
pub const DEFAULT_PATH: &str = "/etc/confluence-audit-forwarder/config.toml";

/// Default `state.max_queue_bytes`: 1 GiB.
pub const DEFAULT_MAX_QUEUE_BYTES: u64 = 1 << 30;

/// Default `source.max_response_bytes`: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// The longest duration any key accepts (100 years): longer ones are typos, and would
/// overflow the millisecond arithmetic of windows and cursors.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A configuration error: which file, where in it, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
    /// Line and column of the key (or of a syntax error), both from 1, when known.
    pub at: Option<(usize, usize)>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{}:{line}:{col}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file this was read from.
    #[serde(skip)]
    pub path: PathBuf,
    #[serde(default)]
    pub source: Vec<SourceConfig>,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub sink: Vec<SinkConfig>,
    /// How records become documents (namespace, masking, `event.original`).
    #[serde(default)]
    pub normalize: NormalizeOptions,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// One Confluence instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    /// Required by the Confluence REST APIs; an organization source defaults it
    /// (`config/organization.rs`), a file source has none.
    #[serde(default)]
    pub url: String,
    /// `api = "file"`: the audit log files to tail, as globs.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(deserialize_with = "de_api")]
    pub api: Api,
    #[serde(default = "defaults::poll_interval", deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    #[serde(default = "defaults::lag", deserialize_with = "de_duration")]
    pub lag: Duration,
    #[serde(default = "defaults::overlap", deserialize_with = "de_duration")]
    pub overlap: Duration,
    #[serde(default = "defaults::start_at")]
    pub start_at: StartAt,
    #[serde(default = "defaults::page_size")]
    pub page_size: u32,
    /// Records held in memory for one time slice before it is split (backfills).
    #[serde(default = "defaults::slice_max_records")]
    pub slice_max_records: usize,
    /// Legacy API only: how `startDate`/`endDate` are written (the real format is unverified).
    #[serde(default)]
    pub date_format: DateFormat,
    #[serde(
        default = "defaults::request_timeout",
        deserialize_with = "de_duration"
    )]
    pub request_timeout: Duration,
    /// Longest wait between retries of one request.
    #[serde(default = "defaults::max_backoff", deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// How far the server's `Date` may be from the local clock and still be believed.
    #[serde(default = "defaults::max_clock_skew", deserialize_with = "de_duration")]
    pub max_clock_skew: Duration,
    /// Largest response body read, compressed or not; a larger one fails the request.
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: u64,
    /// Forward the "Audit Log search performed" events the poller itself causes.
    #[serde(default = "defaults::yes")]
    pub forward_self_generated: bool,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// `api = "organization"` only: the organization whose audit log is read.
    pub org_id: Option<String>,
    /// `api = "organization"` only: requests per minute (Atlassian allows 50; default 45).
    pub requests_per_minute: Option<u32>,
}

/// Where a source's first run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record Confluence still has.
    Beginning,
    /// A fixed time, epoch milliseconds.
    Time(i64),
    /// This long before the first start.
    Ago(Duration),
    /// Only what is written after the first start.
    End,
}

impl<'de> Deserialize<'de> for StartAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for StartAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "beginning" {
            return Ok(StartAt::Beginning);
        }
        if s == "end" {
            return Ok(StartAt::End);
        }
        if let Some(ago) = s.strip_prefix('-') {
            return parse_duration(ago).map(StartAt::Ago);
        }
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                format!(
                    "{s:?} is not \"beginning\", \"end\", an RFC 3339 time or a negative duration like \"-24h\" ({e})"
                )
            })?;
        Ok(StartAt::Time((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

/// Legacy `startDate`/`endDate` format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateFormat {
    #[default]
    Millis,
    Iso8601,
}

/// Credentials for Confluence. Secrets come from the value itself, `*_env` or `*_file`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(rename = "type", default)]
    pub kind: AuthKind,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token: Option<Secret>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    #[default]
    None,
    Basic,
    Bearer,
}

/// Resolved credentials, ready for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default = "defaults::state_dir")]
    pub dir: PathBuf,
    #[serde(default = "defaults::max_queue_bytes")]
    pub max_queue_bytes: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: defaults::state_dir(),
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `/metrics`, `/healthz`, `/readyz`; empty string disables the listener.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// `/readyz` turns unready when a sink has failed for longer than this.
    #[serde(
        default = "defaults::sink_failure_grace",
        deserialize_with = "de_duration"
    )]
    pub sink_failure_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            sink_failure_grace: defaults::sink_failure_grace(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "defaults::log_format")]
    pub format: LogFormat,
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: defaults::log_format(),
            level: defaults::log_level(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

mod defaults {
    use super::*;
    pub fn poll_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub fn lag() -> Duration {
        Duration::from_secs(60)
    }
    pub fn overlap() -> Duration {
        Duration::from_secs(300)
    }
    pub fn start_at() -> StartAt {
        StartAt::Ago(Duration::from_secs(24 * 3600))
    }
    pub fn page_size() -> u32 {
        1000
    }
    pub fn slice_max_records() -> usize {
        2_000
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_backoff() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_clock_skew() -> Duration {
        Duration::from_secs(600)
    }
    pub fn max_response_bytes() -> u64 {
        DEFAULT_MAX_RESPONSE_BYTES
    }
    pub fn yes() -> bool {
        true
    }
    pub fn state_dir() -> PathBuf {
        PathBuf::from("/var/lib/confluence-audit-forwarder")
    }
    pub fn max_queue_bytes() -> u64 {
        DEFAULT_MAX_QUEUE_BYTES
    }
    pub fn listen() -> String {
        "127.0.0.1:9464".into()
    }
    pub fn sink_failure_grace() -> Duration {
        Duration::from_secs(300)
    }
    pub fn log_format() -> LogFormat {
        LogFormat::Text
    }
    pub fn log_level() -> String {
        "info".into()
    }
}

/// Parse `"30s"`, `"5m"`, `"1h 30m"`, `"250ms"`; at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like \"30s\", \"5m\" or \"1h\" ({e})"))?;
    if d > MAX_DURATION {
        return Err(format!("{s:?} is longer than 100 years"));
    }
    Ok(d)
}

fn de_api<'de, D: Deserializer<'de>>(d: D) -> Result<Api, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// A duration written like `"30s"`: the one reader every section's durations use.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

impl Config {
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: String, problem: &str| ConfigError::new(file, &key, problem);
        if self.source.is_empty() {
            return Err(err("source".into(), "at least one [[source]] is required"));
        }
        if self.sink.is_empty() {
            return Err(err("sink".into(), "at least one [[sink]] is required"));
        }
        let mut names = HashMap::new();
        for (i, s) in self.source.iter().enumerate() {
            let key = |k: &str| format!("source[{i}].{k}");
            if s.name.trim().is_empty() {
                return Err(err(key("name"), "must not be empty"));
            }
            if let Some(first) = names.insert(s.name.trim(), i) {
                return Err(err(
                    key("name"),
                    &format!(
                        "duplicate source name {:?}: source[{first}].name has it too (the name identifies the cursor)",
                        s.name
                    ),
                ));
            }
            s.validate().map_err(|(k, p)| err(key(&k), &p))?;
        }
        let mut names = HashMap::new();
        for (i, s) in self.sink.iter().enumerate() {
            let key = |k: &str| format!("sink[{i}].{k}");
            if s.name.trim().is_empty() {
                return Err(err(key("name"), "must not be empty"));
            }
            if let Some(first) = names.insert(s.name.trim(), i) {
                return Err(err(
                    key("name"),
                    &format!(
                        "duplicate sink name {:?}: sink[{first}].name has it too (the name identifies the sink's queue and dead-letter queue)",
                        s.name
                    ),
                ));
            }
            if s.batch_max_events == 0 {
                return Err(err(key("batch_max_events"), "must be at least 1"));
            }
            if s.batch_max_bytes == 0 {
                return Err(err(key("batch_max_bytes"), "must be at least 1"));
            }
        }
        self.server
            .listen_addr()
            .map_err(|p| err("server.listen".into(), &p))?;
        writers::check(self).map_err(|(k, p)| err(k, &p))?;
        self.build_check(file)
    }

    /// Build every source's client and every sink the way the daemon will (reading every
    /// file they need, parsing every address), without claiming anything.
    fn build_check(&self, file: &str) -> Result<(), ConfigError> {
        for (i, s) in self.source.iter().enumerate() {
            crate::source::client::Client::new(s).map_err(|e| {
                let msg = e.to_string();
                let detail = msg
                    .strip_prefix("cannot build the HTTP client: ")
                    .unwrap_or(&msg);
                let key = ["tls.ca_file", "auth.", "tls"]
                    .iter()
                    .find(|k| detail.starts_with(*k))
                    .map(|k| detail.split([' ', ':']).next().unwrap_or(k))
                    .map(|k| format!("source[{i}].{k}"))
                    .unwrap_or_else(|| format!("source[{i}]"));
                ConfigError::new(file, &key, detail)
            })?;
        }
        let ctx = crate::sink::BuildContext {
            purpose: crate::sink::Purpose::Check,
            metrics: std::sync::Arc::new(crate::metrics::Metrics::new()),
        };
        for (i, s) in self.sink.iter().enumerate() {
            s.kind
                .build(&s.name, &ctx)
                .map_err(|e| ConfigError::new(file, &format!("sink[{i}].{}", e.key), e.problem))?;
        }
        Ok(())
    }
}

impl ServerConfig {
    /// The address to serve `/metrics` on; `None` when the listener is disabled.
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            format!("{listen:?} is not an address like \"127.0.0.1:9464\" (or \"\" to disable)")
        })
    }
}

impl SourceConfig {
    /// The checks of one source's values: the key (relative to the source) and the problem.
    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |k: &str, p: &str| Err((k.to_owned(), p.to_owned()));
        organization::validate(self)?;
        if self.api == Api::File {
            return file_source::validate(self);
        }
        if self.url.trim().is_empty() {
            return fail(
                "url",
                "missing field `url`: the Confluence base URL (required unless api = \"file\")",
            );
        }
        check_http_url(&self.url, "[source.auth]").map_err(|p| ("url".to_owned(), p))?;
        if self.page_size == 0 {
            return fail("page_size", "must be at least 1");
        }
        if self.slice_max_records < self.page_size as usize {
            return fail("slice_max_records", "must be at least page_size");
        }
        if self.poll_interval.is_zero() {
            return fail("poll_interval", "must be more than zero");
        }
        if self.max_response_bytes < 1024 {
            return fail("max_response_bytes", "must be at least 1024");
        }
        if let Some(ca) = &self.tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                (
                    "tls.ca_file".to_owned(),
                    format!("cannot read {}: {e}", ca.display()),
                )
            })?;
            if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
                return Err((
                    "tls.ca_file".to_owned(),
                    format!("{} is not PEM", ca.display()),
                ));
            }
        }
        self.credentials()
            .map_err(|(k, p)| (format!("auth.{k}"), p))?;
        Ok(())
    }

    /// Resolve the credentials. Errors give the key (relative to `auth`) and the problem.
    pub fn credentials(&self) -> Result<Credentials, (String, String)> {
        let a = &self.auth;
        match a.kind {
            AuthKind::None => Ok(Credentials::None),
            AuthKind::Basic => {
                let username = a
                    .username
                    .clone()
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| ("username".to_owned(), "required for basic auth".to_owned()))?;
                let password =
                    resolve_secret("password", &a.password, &a.password_env, &a.password_file)
                        .or_else(|| resolve_secret("token", &a.token, &a.token_env, &a.token_file))
                        .ok_or_else(|| {
                            (
                                "password".to_owned(),
                                "basic auth needs password, password_env or password_file"
                                    .to_owned(),
                            )
                        })??;
                Ok(Credentials::Basic { username, password })
            }
            AuthKind::Bearer => {
                let token = resolve_secret("token", &a.token, &a.token_env, &a.token_file)
                    .or_else(|| {
                        resolve_secret("password", &a.password, &a.password_env, &a.password_file)
                    })
                    .ok_or_else(|| {
                        (
                            "token".to_owned(),
                            "bearer auth needs one of token, token_env, token_file".to_owned(),
                        )
                    })??;
                Ok(Credentials::Bearer(token))
            }
        }
    }
}

#[cfg(test)]
mod tests;
