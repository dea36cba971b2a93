//! The configuration file: what a user writes, how it is read, and what is wrong with it.
//!
//! It exists so that every other module gets a validated, typed value and never has to
//! report a config mistake itself. Reading goes: TOML file (via the `config` crate) →
//! `CAF__…` environment overrides → typed structs → validation that names the file, the key
//! and the problem → secrets resolved from `*_env` / `*_file` keys.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::normalize::{Api, NormalizeOptions};

/// Default location for `run`, `once` and `check-config`.
pub const DEFAULT_PATH: &str = "/etc/confluence-audit-forwarder/config.toml";

/// Default `state.max_queue_bytes`: 1 GiB.
pub const DEFAULT_MAX_QUEUE_BYTES: u64 = 1 << 30;

/// Default `source.max_response_bytes`: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// The longest duration any key accepts (100 years): longer ones are typos, and would
/// overflow the millisecond arithmetic of windows and cursors.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
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
    pub url: String,
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
        if let Some(ago) = s.strip_prefix('-') {
            return parse_duration(ago).map(StartAt::Ago);
        }
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                format!(
                    "{s:?} is not \"beginning\", an RFC 3339 time or a negative duration like \"-24h\" ({e})"
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
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(rename = "type", default)]
    pub kind: AuthKind,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl fmt::Debug for AuthConfig {
    // Secrets never reach logs, even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("type", &self.kind)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    #[default]
    None,
    Basic,
    Bearer,
}

/// A secret value that prints as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
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

/// One sink: its name, its kind-specific settings and the batching/retry settings every
/// sink shares.
#[derive(Debug, Clone, Deserialize)]
pub struct SinkConfig {
    pub name: String,
    #[serde(flatten)]
    pub kind: SinkKind,
    #[serde(default = "defaults::batch_max_events")]
    pub batch_max_events: usize,
    #[serde(default = "defaults::batch_max_bytes")]
    pub batch_max_bytes: usize,
    #[serde(default = "defaults::flush_interval", deserialize_with = "de_duration")]
    pub flush_interval: Duration,
    /// Longest wait between delivery retries.
    #[serde(default = "defaults::max_backoff", deserialize_with = "de_duration")]
    pub max_backoff: Duration,
}

/// Sink kinds, by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// NDJSON file, exactly once across crashes.
    File { path: PathBuf },
    /// NDJSON on standard output, for piping.
    Stdout,
    /// Syslog over UDP, TCP or TLS (RFC 5424/3164; JSON, CEF or LEEF payloads).
    Syslog(Box<crate::sink::syslog::SyslogConfig>),
    /// Kafka topic, at least once, keyed by `event.id`.
    Kafka(Box<crate::sink::kafka::KafkaConfig>),
    /// Elasticsearch `_bulk` into a data stream or index, exactly once by `_id`.
    Elasticsearch(Box<crate::sink::elasticsearch::ElasticsearchConfig>),
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File { .. } => "file",
            SinkKind::Stdout => "stdout",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::Elasticsearch(_) => "elasticsearch",
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
    pub fn batch_max_events() -> usize {
        1000
    }
    pub fn batch_max_bytes() -> usize {
        4 << 20
    }
    pub fn flush_interval() -> Duration {
        Duration::from_secs(1)
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

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

impl Config {
    /// Read, override from the environment, validate. Secrets are checked here too, so a
    /// missing secret file is a config error, not a runtime surprise.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &vars)
    }

    /// [`Config::load`] with explicit environment variables (tests).
    pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let err = |key: &str, problem: String| ConfigError {
            file: file.clone(),
            key: key.to_owned(),
            problem,
        };
        if !path.exists() {
            return Err(err("-", "file not found".into()));
        }
        let mut builder = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml));
        for (name, value) in env {
            if let Some(key) = env_override_key(name) {
                builder = builder
                    .set_override(key.as_str(), value.as_str())
                    .map_err(|e| err(&key, format!("from environment variable {name}: {e}")))?;
            }
        }
        let raw = builder.build().map_err(|e| err("-", e.to_string()))?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| split_config_error(&file, e))?;
        cfg.validate(&file)?;
        for (i, s) in cfg.source.iter().enumerate() {
            s.credentials()
                .map_err(|(k, p)| err(&format!("source[{i}].auth.{k}"), p))?;
        }
        Ok(cfg)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: String, problem: &str| ConfigError {
            file: file.to_owned(),
            key,
            problem: problem.to_owned(),
        };
        if self.source.is_empty() {
            return Err(err("source".into(), "at least one [[source]] is required"));
        }
        if self.sink.is_empty() {
            return Err(err("sink".into(), "at least one [[sink]] is required"));
        }
        let mut names = HashSet::new();
        for (i, s) in self.source.iter().enumerate() {
            let key = |k: &str| format!("source[{i}].{k}");
            if s.name.trim().is_empty() {
                return Err(err(key("name"), "must not be empty"));
            }
            if !names.insert(s.name.as_str()) {
                return Err(err(
                    key("name"),
                    &format!("duplicate source name {:?}", s.name),
                ));
            }
            match url::Url::parse(&s.url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                Ok(_) => return Err(err(key("url"), "must be an http:// or https:// URL")),
                Err(e) => return Err(err(key("url"), &format!("{:?} is not a URL ({e})", s.url))),
            }
            if s.api == Api::File {
                return Err(err(
                    key("api"),
                    "\"file\" is a record shape for `normalize`, not a polled API: use legacy, cloud or auditing",
                ));
            }
            if s.page_size == 0 {
                return Err(err(key("page_size"), "must be at least 1"));
            }
            if s.slice_max_records < s.page_size as usize {
                return Err(err(key("slice_max_records"), "must be at least page_size"));
            }
            if s.poll_interval.is_zero() {
                return Err(err(key("poll_interval"), "must be more than zero"));
            }
            if s.max_response_bytes < 1024 {
                return Err(err(key("max_response_bytes"), "must be at least 1024"));
            }
        }
        let mut names = HashSet::new();
        for (i, s) in self.sink.iter().enumerate() {
            let key = |k: &str| format!("sink[{i}].{k}");
            if s.name.trim().is_empty() {
                return Err(err(key("name"), "must not be empty"));
            }
            if !names.insert(s.name.as_str()) {
                return Err(err(
                    key("name"),
                    &format!("duplicate sink name {:?}", s.name),
                ));
            }
            if s.batch_max_events == 0 {
                return Err(err(key("batch_max_events"), "must be at least 1"));
            }
            if let SinkKind::Syslog(syslog) = &s.kind {
                syslog.validate().map_err(|(k, p)| err(key(&k), &p))?;
            }
            if let SinkKind::Kafka(kafka) = &s.kind {
                kafka.validate().map_err(|(k, p)| err(key(&k), &p))?;
            }
            if let SinkKind::Elasticsearch(es) = &s.kind {
                es.validate().map_err(|(k, p)| err(key(&k), &p))?;
            }
        }
        Ok(())
    }
}

impl SourceConfig {
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

/// A secret from its value, `<name>_env` or `<name>_file`. `None` when none is set;
/// `Some(Err((key, problem)))` when one is set but cannot be read.
pub fn resolve_secret(
    name: &str,
    value: &Option<String>,
    env: &Option<String>,
    file: &Option<PathBuf>,
) -> Option<Result<Secret, (String, String)>> {
    if let Some(v) = value {
        return Some(Ok(Secret::new(v.clone())));
    }
    if let Some(var) = env {
        return Some(match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err((
                format!("{name}_env"),
                format!("environment variable {var} is not set or empty"),
            )),
        });
    }
    if let Some(path) = file {
        return Some(match std::fs::read_to_string(path) {
            // Secret files conventionally end with a newline that is not part of the secret.
            Ok(v) => Ok(Secret::new(v.trim_end_matches(['\r', '\n']).to_owned())),
            Err(e) => Err((
                format!("{name}_file"),
                format!("cannot read {}: {e}", path.display()),
            )),
        });
    }
    None
}

/// `CAF__SOURCE__0__AUTH__USERNAME` → `source[0].auth.username`.
fn env_override_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix("CAF__")?;
    let mut key = String::new();
    for part in rest.split("__") {
        if part.is_empty() {
            return None;
        }
        if part.bytes().all(|b| b.is_ascii_digit()) {
            if key.is_empty() {
                return None;
            }
            key.push('[');
            key.push_str(part);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(&part.to_ascii_lowercase());
        }
    }
    Some(key)
}

/// Turn the `config` crate's message into file/key/problem.
fn split_config_error(file: &str, e: config::ConfigError) -> ConfigError {
    let msg = e.to_string();
    // "missing configuration field \"source[0]url\"" names its key differently.
    if let Some(rest) = msg.strip_prefix("missing configuration field \"") {
        let key = rest.trim_end_matches('"');
        return ConfigError {
            file: file.to_owned(),
            key: dotted(key),
            problem: "missing (required)".into(),
        };
    }
    // The crate writes "… for key `source[0].api` in …" when it knows the key.
    let key = msg
        .split("for key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(dotted)
        .unwrap_or_else(|| "-".into());
    let problem = msg
        .split(" for key `")
        .next()
        .unwrap_or(&msg)
        .trim()
        .to_owned();
    ConfigError {
        file: file.to_owned(),
        key,
        problem,
    }
}

/// The crate writes `source[0]url`; users read `source[0].url`.
fn dotted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut prev = ' ';
    for c in key.chars() {
        if prev == ']' && c != '.' && c != '[' {
            out.push('.');
        }
        out.push(c);
        prev = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_config_paths() {
        assert_eq!(
            env_override_key("CAF__SOURCE__0__AUTH__USERNAME").as_deref(),
            Some("source[0].auth.username")
        );
        assert_eq!(
            env_override_key("CAF__STATE__DIR").as_deref(),
            Some("state.dir")
        );
        assert_eq!(env_override_key("CAF__0__X"), None);
        assert_eq!(env_override_key("OTHER"), None);
    }

    #[test]
    fn start_at_forms() {
        assert_eq!("beginning".parse::<StartAt>(), Ok(StartAt::Beginning));
        assert_eq!(
            "-24h".parse::<StartAt>(),
            Ok(StartAt::Ago(Duration::from_secs(86400)))
        );
        assert_eq!(
            "2025-11-25T00:00:00Z".parse::<StartAt>(),
            Ok(StartAt::Time(1_764_028_800_000))
        );
        assert!("yesterday".parse::<StartAt>().is_err());
        assert!("-99999999999999h".parse::<StartAt>().is_err());
    }

    #[test]
    fn durations_that_would_overflow_are_errors() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        let e = parse_duration("99999999999999h").unwrap_err();
        assert!(
            e.contains("99999999999999h") && e.contains("100 years"),
            "{e}"
        );
        assert!(parse_duration("99999999999999999999999h").is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("token");
        std::fs::write(&secret_file, "file-secret-4711\n").unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[[source]]
name = "a"
url = "https://wiki.example.com"
api = "legacy"
[source.auth]
type = "basic"
username = "svc"
password = "inline-secret-0815"
[[source]]
name = "b"
url = "https://wiki2.example.com"
api = "cloud"
[source.auth]
type = "bearer"
token_file = "{}"
[[sink]]
name = "out"
type = "stdout"
"#,
                secret_file.display()
            ),
        )
        .unwrap();
        let cfg = Config::load_with_env(&path, &[]).unwrap();
        let creds: Vec<Credentials> = cfg
            .source
            .iter()
            .map(|s| s.credentials().unwrap())
            .collect();
        assert_eq!(
            creds[1],
            Credentials::Bearer(Secret::new("file-secret-4711"))
        );
        let shown = format!("{cfg:?} {creds:?}");
        assert!(!shown.contains("inline-secret-0815"), "{shown}");
        assert!(!shown.contains("file-secret-4711"), "{shown}");
        // An environment override of a secret is not echoed in errors either.
        let err = Config::load_with_env(
            &path,
            &[("CAF__SOURCE__0__PAGE_SIZE".into(), "not-a-number".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("page_size"), "{err}");
        assert!(!err.contains("inline-secret-0815"), "{err}");
    }

    #[test]
    fn check_config_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#"
[[source]]
name = "wiki"
url = "https://wiki.example.com"
api = "auditing"
[[sink]]
name = "out"
type = "file"
path = "/tmp/x"
"#;
        let cases: &[(&str, &str, &str)] = &[
            ("url = \"https://wiki.example.com\"\n", "", "source[0].url"),
            ("api = \"auditing\"", "api = \"jira\"", "source[0].api"),
            (
                "api = \"auditing\"",
                "api = \"auditing\"\nlag = \"soon\"",
                "source[0].lag",
            ),
            (
                "path = \"/tmp/x\"",
                "path = \"/tmp/x\"\n[[sink]]\nname = \"out\"\ntype = \"stdout\"",
                "sink[1].name",
            ),
            (
                "api = \"auditing\"",
                "api = \"auditing\"\n[source.auth]\ntype = \"basic\"\nusername = \"u\"\npassword_file = \"/nonexistent/secret\"",
                "source[0].auth.password_file",
            ),
        ];
        for (from, to, key) in cases {
            let text = base.replacen(from, to, 1);
            let path = dir.path().join("c.toml");
            std::fs::write(&path, &text).unwrap();
            let err = Config::load_with_env(&path, &[]).unwrap_err();
            assert_eq!(err.key, *key, "{err} for\n{text}");
            assert!(err.file.ends_with("c.toml"));
        }
        // Duplicate source names.
        let dup = format!(
            "{base}\n[[source]]\nname = \"wiki\"\nurl = \"https://x.example.com\"\napi = \"legacy\"\n"
        );
        let path = dir.path().join("d.toml");
        std::fs::write(&path, dup).unwrap();
        let err = Config::load_with_env(&path, &[]).unwrap_err();
        assert_eq!(err.key, "source[1].name", "{err}");
        assert!(err.problem.contains("duplicate"), "{err}");
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let a = AuthConfig {
            kind: AuthKind::Basic,
            password: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
