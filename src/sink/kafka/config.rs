//! The Kafka sink's settings (`type = "kafka"`) and their validation.
//!
//! Kept apart from the producer so that a config mistake — an unknown librdkafka property,
//! a setting that would weaken the delivery guarantee, an unreadable SASL password file — is
//! found by `check-config`, names its key, and never surfaces later as a delivery error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Deserializer};

use crate::config::keys::Shape;
use crate::config::{Secret, de_duration, resolve_secret};

/// `[[sink]] type = "kafka"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port,host:port`.
    pub brokers: String,
    pub topic: String,
    /// Events with `event.kind: alert` (Soteri findings) go here instead of `topic`.
    pub alerts_topic: Option<String>,
    #[serde(default)]
    pub compression: Compression,
    /// Create `topic` (and `alerts_topic`) at start when missing.
    #[serde(default)]
    pub create_topic: bool,
    /// Partitions of a created topic.
    #[serde(default = "defaults::partitions")]
    pub partitions: i32,
    /// Replication factor of a created topic.
    #[serde(default = "defaults::replication_factor")]
    pub replication_factor: i32,
    /// How long librdkafka keeps trying one message (`message.timeout.ms`) before the sink
    /// reports it for retry: bounds how long a dead broker can hold a batch.
    #[serde(
        default = "defaults::delivery_timeout",
        deserialize_with = "de_duration"
    )]
    pub delivery_timeout: Duration,
    /// SASL user name (`sasl.username`).
    pub sasl_username: Option<String>,
    /// SASL password (`sasl.password`): prefer `sasl_password_env` or `sasl_password_file`.
    pub sasl_password: Option<Secret>,
    pub sasl_password_env: Option<String>,
    pub sasl_password_file: Option<PathBuf>,
    /// Password of the TLS client key (`ssl.key.password`), for `ssl.key.location`.
    pub ssl_key_password: Option<Secret>,
    pub ssl_key_password_env: Option<String>,
    pub ssl_key_password_file: Option<PathBuf>,
    /// Any librdkafka property, passed through as is.
    #[serde(default, deserialize_with = "de_properties")]
    pub librdkafka: BTreeMap<String, String>,
}

/// `compression`: librdkafka's `compression.type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Properties the sink sets itself: overriding them would break the delivery guarantee
/// (idempotence, acks) or duplicate a named key of this section.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    (
        "enable.idempotence",
        "always true: the sink relies on the idempotent producer",
    ),
    (
        "acks",
        "always \"all\": an event is acknowledged only once every in-sync replica has it",
    ),
    ("request.required.acks", "always \"all\" (alias of acks)"),
    ("bootstrap.servers", "use `brokers`"),
    ("metadata.broker.list", "use `brokers`"),
    ("compression.type", "use `compression`"),
    ("compression.codec", "use `compression`"),
    ("message.timeout.ms", "use `delivery_timeout`"),
    (
        "sasl.password",
        "use `sasl_password` (or its _env / _file form)",
    ),
    (
        "ssl.key.password",
        "use `ssl_key_password` (or its _env / _file form)",
    ),
    ("delivery.timeout.ms", "use `delivery_timeout`"),
];

impl KafkaConfig {
    /// Check everything that can be checked without a broker. Errors give the key
    /// (relative to the sink) and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |k: &str, p: String| Err((k.to_owned(), p));
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return fail("brokers", "must name at least one host:port".into());
        }
        if self.brokers.contains('@') {
            return fail(
                "brokers",
                "holds credentials: give host:port only, and the credentials in sasl_username and sasl_password".into(),
            );
        }
        check_topic("topic", &self.topic)?;
        if let Some(t) = &self.alerts_topic {
            check_topic("alerts_topic", t)?;
        }
        if self.partitions < 1 {
            return fail("partitions", "must be at least 1".into());
        }
        if self.replication_factor < 1 {
            return fail("replication_factor", "must be at least 1".into());
        }
        if self.delivery_timeout < Duration::from_millis(1) {
            return fail("delivery_timeout", "must be at least 1ms".into());
        }
        for (key, why) in OWNED_PROPERTIES {
            if self.librdkafka.contains_key(*key) {
                return fail(
                    &format!("librdkafka.\"{key}\""),
                    format!("not settable: {why}"),
                );
            }
        }
        // librdkafka itself knows its properties and their values; this only parses them,
        // it does not connect.
        let client = self.client_config()?;
        if let Err(e) = client.create_native_config() {
            let key = self
                .librdkafka
                .keys()
                .find(|k| e.to_string().contains(k.as_str()))
                .map(|k| format!("librdkafka.\"{k}\""))
                .unwrap_or_else(|| "librdkafka".to_owned());
            return fail(&key, redact_error(&e.to_string(), self));
        }
        Ok(())
    }

    /// The SASL password, from its value, `sasl_password_env` or `sasl_password_file`.
    pub fn sasl_password(&self) -> Result<Option<Secret>, (String, String)> {
        resolve_secret(
            "sasl_password",
            &self.sasl_password,
            &self.sasl_password_env,
            &self.sasl_password_file,
        )
        .transpose()
    }

    /// The TLS client key's password, from its value, `ssl_key_password_env` or `_file`.
    pub fn ssl_key_password(&self) -> Result<Option<Secret>, (String, String)> {
        resolve_secret(
            "ssl_key_password",
            &self.ssl_key_password,
            &self.ssl_key_password_env,
            &self.ssl_key_password_file,
        )
        .transpose()
    }

    /// The producer's librdkafka configuration: the user's properties, then the ones the
    /// delivery guarantee depends on.
    pub fn client_config(&self) -> Result<ClientConfig, (String, String)> {
        let mut c = ClientConfig::new();
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        if let Some(user) = &self.sasl_username {
            c.set("sasl.username", user);
        }
        if let Some(password) = self.sasl_password()? {
            crate::logsafe::register_credential(password.expose());
            c.set("sasl.password", password.expose());
        }
        if let Some(password) = self.ssl_key_password()? {
            c.set("ssl.key.password", password.expose());
        }
        let timeout_ms = self.delivery_timeout.as_millis().min(i32::MAX as u128);
        c.set("bootstrap.servers", self.brokers.trim())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", self.compression.as_str())
            .set("message.timeout.ms", timeout_ms.to_string());
        // A request must time out before its message does, or librdkafka never retries it.
        if !self.librdkafka.contains_key("request.timeout.ms") {
            c.set(
                "request.timeout.ms",
                (timeout_ms / 2).clamp(1, 30_000).to_string(),
            );
        }
        Ok(c)
    }

    /// The topic `kind` (`event.kind`) goes to.
    pub fn topic_for(&self, kind: Option<&str>) -> &str {
        match (&self.alerts_topic, kind) {
            (Some(alerts), Some("alert")) => alerts,
            _ => &self.topic,
        }
    }
}

/// Is `key` a librdkafka property that holds a secret?
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "key.pem", "sasl.jaas", "token"]
        .iter()
        .any(|s| k.contains(s))
        || k.ends_with(".key")
}

/// librdkafka quotes property values in some errors ("Invalid value \"…\" for configuration
/// property …"): no value is echoed, whatever its key (a mistyped secret property is not
/// recognisably secret).
fn redact_error(msg: &str, cfg: &KafkaConfig) -> String {
    let mut out = msg.to_owned();
    let mut values: Vec<String> = cfg.librdkafka.values().cloned().collect();
    for secret in [cfg.sasl_password(), cfg.ssl_key_password()] {
        if let Ok(Some(p)) = secret {
            values.push(p.expose().to_owned());
        }
    }
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values.iter().filter(|v| !v.is_empty()) {
        out = out.replace(&format!("\"{v}\""), "\"<value not shown>\"");
        if v.len() >= 4 {
            out = out.replace(v.as_str(), "<value not shown>");
        }
    }
    out
}

fn check_topic(key: &str, t: &str) -> Result<(), (String, String)> {
    // Kafka's own rule: 1-249 of [a-zA-Z0-9._-], and not "." or "..".
    let ok = !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err((
            key.to_owned(),
            format!("{t:?} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
        ))
    }
}

impl fmt::Debug for KafkaConfig {
    // Secrets never reach logs, even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let librdkafka: BTreeMap<&str, &str> = self
            .librdkafka
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("alerts_topic", &self.alerts_topic)
            .field("compression", &self.compression)
            .field("create_topic", &self.create_topic)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password)
            .field("sasl_password_env", &self.sasl_password_env)
            .field("sasl_password_file", &self.sasl_password_file)
            .field("ssl_key_password", &self.ssl_key_password)
            .field("ssl_key_password_env", &self.ssl_key_password_env)
            .field("ssl_key_password_file", &self.ssl_key_password_file)
            .field("librdkafka", &librdkafka)
            .finish()
    }
}

mod defaults {
    use std::time::Duration;
    pub fn partitions() -> i32 {
        1
    }
    pub fn replication_factor() -> i32 {
        1
    }
    pub fn delivery_timeout() -> Duration {
        Duration::from_secs(30)
    }
}

/// The keys of `type = "kafka"`; `librdkafka` holds librdkafka's own properties.
pub fn shape() -> Shape {
    Shape::of::<KafkaConfig>(vec![("librdkafka", Shape::Open)])
}

/// A property value as TOML (or the `config` crate) may hand it over.
#[derive(Deserialize)]
#[serde(untagged)]
enum PropertyValue {
    Text(String),
    Flag(bool),
    Integer(i64),
    Float(f64),
    /// `"a.b" = 1` may arrive split at its dots (`{a = {b = 1}}`): joined again below.
    Nested(BTreeMap<String, PropertyValue>),
}

fn flatten(prefix: &str, v: PropertyValue, out: &mut BTreeMap<String, String>) {
    let text = match v {
        PropertyValue::Text(s) => s,
        PropertyValue::Flag(b) => b.to_string(),
        PropertyValue::Integer(i) => i.to_string(),
        PropertyValue::Float(f) => f.to_string(),
        PropertyValue::Nested(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
            return;
        }
    };
    out.insert(prefix.to_owned(), text);
}

fn de_properties<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, PropertyValue>::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        flatten(&k, v, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "confluence-audit".into(),
            alerts_topic: Some("confluence-audit-alerts".into()),
            compression: Compression::Zstd,
            create_topic: false,
            partitions: 1,
            replication_factor: 1,
            delivery_timeout: Duration::from_secs(30),
            sasl_username: None,
            sasl_password: None,
            sasl_password_env: None,
            sasl_password_file: None,
            ssl_key_password: None,
            ssl_key_password_env: None,
            ssl_key_password_file: None,
            librdkafka: BTreeMap::new(),
        }
    }

    #[test]
    fn secrets_have_keys_of_their_own_not_passthrough_properties() {
        let mut c = base();
        c.librdkafka
            .insert("ssl.key.password".into(), "hunter2".into());
        let (key, problem) = c.validate().unwrap_err();
        assert_eq!(key, "librdkafka.\"ssl.key.password\"");
        assert!(problem.contains("ssl_key_password"), "{problem}");
        assert!(!problem.contains("hunter2"), "{problem}");
        c.librdkafka.clear();
        c.ssl_key_password = Some(Secret::new("hunter2"));
        assert_eq!(
            c.client_config().unwrap().get("ssl.key.password"),
            Some("hunter2")
        );
    }

    #[test]
    fn owned_properties_are_refused_by_key() {
        let mut c = base();
        c.librdkafka.insert("acks".into(), "1".into());
        let (key, problem) = c.validate().unwrap_err();
        assert_eq!(key, "librdkafka.\"acks\"");
        assert!(problem.contains("all"), "{problem}");
    }

    #[test]
    fn unknown_librdkafka_property_names_its_key() {
        let mut c = base();
        c.librdkafka.insert("no.such.property".into(), "1".into());
        let (key, problem) = c.validate().unwrap_err();
        assert_eq!(key, "librdkafka.\"no.such.property\"", "{problem}");
    }

    #[test]
    fn bad_topic_names_its_key() {
        let mut c = base();
        c.alerts_topic = Some("has space".into());
        assert_eq!(c.validate().unwrap_err().0, "alerts_topic");
    }

    #[test]
    fn valid_config_passes() {
        let mut c = base();
        c.librdkafka.insert("linger.ms".into(), "20".into());
        c.validate().unwrap();
    }

    #[test]
    fn alerts_are_routed_only_when_an_alerts_topic_is_set() {
        let mut c = base();
        assert_eq!(c.topic_for(Some("alert")), "confluence-audit-alerts");
        assert_eq!(c.topic_for(Some("event")), "confluence-audit");
        assert_eq!(c.topic_for(None), "confluence-audit");
        c.alerts_topic = None;
        assert_eq!(c.topic_for(Some("alert")), "confluence-audit");
    }

    #[test]
    fn debug_redacts_every_secret() {
        let mut c = base();
        c.sasl_password = Some(Secret::new("hunter2-inline"));
        c.ssl_key_password = Some(Secret::new("hunter2-key"));
        c.librdkafka.insert(
            "sasl.oauthbearer.client.secret".into(),
            "hunter2-oauth".into(),
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn sasl_password_comes_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let mut c = base();
        c.sasl_password_file = Some(path);
        assert_eq!(c.sasl_password().unwrap().unwrap().expose(), "s3cret");
        let client = c.client_config().unwrap();
        assert_eq!(client.get("sasl.password"), Some("s3cret"));
        c.sasl_password_file = Some(dir.path().join("missing"));
        assert_eq!(c.validate().unwrap_err().0, "sasl_password_file");
    }

    #[test]
    fn guarantee_properties_are_always_set() {
        let c = base();
        let client = c.client_config().unwrap();
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("compression.type"), Some("zstd"));
        assert_eq!(client.get("message.timeout.ms"), Some("30000"));
    }

    #[test]
    fn dotted_property_names_survive_being_split() {
        let nested: BTreeMap<String, PropertyValue> = serde_json::from_str(
            r#"{"security": {"protocol": "SASL_SSL"}, "linger.ms": 5, "socket.keepalive.enable": true}"#,
        )
        .unwrap();
        let mut out = BTreeMap::new();
        for (k, v) in nested {
            flatten(&k, v, &mut out);
        }
        assert_eq!(out["security.protocol"], "SASL_SSL");
        assert_eq!(out["linger.ms"], "5");
        assert_eq!(out["socket.keepalive.enable"], "true");
    }
}
