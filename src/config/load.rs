//! Reading the file: TOML syntax, `CAF__…` environment overrides, unknown keys, typed
//! values, validation — and what an error may show.
//!
//! It exists so that every config error says where (file, line, column, key) and what, but
//! never the value of a secret: a TOML syntax error is reported without the text of its
//! line (the line may hold a password), and every message is scrubbed of the secret values
//! the file and the environment hold before it leaves this module.

use std::collections::HashMap;
use std::path::Path;

use super::keys::{self, Shape};
use super::{
    AuthConfig, Config, ConfigError, LogConfig, ServerConfig, SourceConfig, StateConfig, TlsConfig,
};
use crate::normalize::NormalizeOptions;

impl Config {
    /// Read, override from the environment, check every key, validate. Secrets are resolved
    /// here too, so a missing secret file is a config error, not a runtime surprise.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &vars)
    }

    /// [`Config::load`] with explicit environment variables (tests).
    pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let problem = match e.kind() {
                std::io::ErrorKind::NotFound => "file not found".to_owned(),
                _ => format!("cannot read: {e}"),
            };
            ConfigError::new(&file, "-", problem)
        })?;
        check_syntax(&file, &text)?;
        let positions = keys::positions(&text);
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml));
        for (name, value) in env {
            if let Some(key) = env_override_key(name) {
                builder = builder
                    .set_override(key.as_str(), value.as_str())
                    .map_err(|_| {
                        ConfigError::new(
                            &file,
                            &key,
                            format!("environment variable {name}: not a key"),
                        )
                    })?;
            }
        }
        // Until the tree is read, the secrets are those the environment overrides hold.
        let from_env: Vec<String> = env
            .iter()
            .filter(|(name, _)| {
                env_override_key(name)
                    .is_some_and(|k| is_secret_key(k.rsplit('.').next().unwrap_or(&k)))
            })
            .map(|(_, v)| v.clone())
            .collect();
        let raw = builder
            .build()
            .map_err(|e| ConfigError::new(&file, "-", e.to_string()).scrubbed(&from_env))?;
        let tree: serde_json::Value = raw
            .clone()
            .try_deserialize()
            .map_err(|e| split_config_error(&file, e).scrubbed(&from_env))?;
        let mut secrets = secret_values(&tree);
        secrets.extend(from_env);
        let read = || {
            keys::check(&tree, &schema())
                .map_err(|u| ConfigError::new(&file, &u.path, u.problem))?;
            super::file_source::check_keys(&tree)
                .map_err(|(k, p)| ConfigError::new(&file, &k, p))?;
            let mut cfg: Config = raw
                .try_deserialize()
                .map_err(|e| locate_in_sink(split_config_error(&file, e), &tree))?;
            cfg.path = path.to_owned();
            super::organization::apply_defaults(&mut cfg, &tree);
            cfg.validate(&file)?;
            Ok(cfg)
        };
        read().map_err(|e: ConfigError| e.scrubbed(&secrets).located(&positions))
    }
}

/// The keys the file may hold: the field lists of the structs it is read into.
fn schema() -> Shape {
    let source = Shape::of::<SourceConfig>(vec![
        ("auth", Shape::of::<AuthConfig>(vec![])),
        ("tls", Shape::of::<TlsConfig>(vec![])),
    ]);
    Shape::of::<Config>(vec![
        ("source", Shape::Tables(Box::new(source))),
        ("state", Shape::of::<StateConfig>(vec![])),
        ("sink", Shape::Sinks),
        ("normalize", Shape::of::<NormalizeOptions>(vec![])),
        ("server", Shape::of::<ServerConfig>(vec![])),
        ("log", Shape::of::<LogConfig>(vec![])),
    ])
}

/// A TOML syntax error with its line, column and the key it is in — but not the text of
/// the line, which the TOML parser would quote and which may hold a secret.
fn check_syntax(file: &str, text: &str) -> Result<(), ConfigError> {
    let (_, errors) = toml::de::DeTable::parse_recoverable(text);
    let Some(e) = errors.first() else {
        return Ok(());
    };
    let at = e.span().map(|s| keys::position_of(text, s.start));
    let key = at
        .and_then(|(line, _)| {
            keys::positions(text)
                .into_iter()
                .filter(|(_, (l, _))| *l <= line)
                .max_by_key(|(_, pos)| *pos)
                .map(|(k, _)| k)
        })
        .unwrap_or_else(|| "-".to_owned());
    let mut err = ConfigError::new(
        file,
        &key,
        format!("TOML syntax error: {}", e.message().trim()),
    );
    err.at = at;
    Err(err)
}

/// Values that must never appear in an error: those of secret keys, of every librdkafka
/// property (a mistyped secret property is not recognisably secret), and the password of
/// a URL that carries one.
fn secret_values(tree: &serde_json::Value) -> Vec<String> {
    fn walk(key: &str, in_librdkafka: bool, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    walk(k, in_librdkafka || key == "librdkafka", v, out);
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    walk(key, in_librdkafka, v, out);
                }
            }
            other => {
                let text = match other {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                if in_librdkafka && text.len() >= 4 || is_secret_key(key) {
                    out.push(text.clone());
                }
                if let Some(pw) = url_password(&text) {
                    out.push(pw);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", false, tree, &mut out);
    out.retain(|s| !s.is_empty());
    // Longest first, so that a secret containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// serde cannot say which key of a sink failed to read (its kind is flattened into the
/// `[[sink]]` table): read that sink's kind alone to find out.
fn locate_in_sink(mut err: ConfigError, tree: &serde_json::Value) -> ConfigError {
    let Some(i) = err
        .key
        .strip_prefix("sink[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return err;
    };
    let Some(table) = tree.get("sink").and_then(|s| s.get(i)) else {
        return err;
    };
    let kind = table
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let mut rest = table.clone();
    if let Some(map) = rest.as_object_mut() {
        map.retain(|k, _| !crate::sink::SinkConfig::COMMON_KEYS.contains(&k.as_str()));
    }
    if let Some(key) = crate::sink::SinkKind::failing_key(kind, rest) {
        err.key = format!("sink[{i}].{key}");
    }
    err
}

/// Keys whose value is a secret, in any section.
pub fn is_secret_key(key: &str) -> bool {
    // `password_file` and `password_env` name where a secret is, not the secret.
    let names_a_place = key.ends_with("_file") || key.ends_with("_env");
    !names_a_place
        && (matches!(
            key,
            "password" | "token" | "api_key" | "sasl_password" | "ssl_key_password"
        ) || crate::sink::kafka::config::is_secret_property(key))
}

/// The `user:password` of `scheme://user:password@host…`, if there is one.
fn url_password(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    Some(userinfo.to_owned())
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
        return ConfigError::new(file, &dotted(key), "missing (required)");
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
    ConfigError::new(file, &key, problem)
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

impl ConfigError {
    pub fn new(file: &str, key: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
            at: None,
        }
    }

    /// The same error with every secret value replaced.
    fn scrubbed(mut self, secrets: &[String]) -> Self {
        for s in secrets {
            self.problem = self.problem.replace(s.as_str(), "<redacted>");
            self.key = self.key.replace(s.as_str(), "<redacted>");
        }
        self
    }

    /// The same error with the line and column of its key, when the file has that key.
    fn located(mut self, positions: &HashMap<String, (usize, usize)>) -> Self {
        if self.at.is_none() {
            self.at = positions.get(&self.key).copied();
        }
        self
    }
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
    fn an_unknown_key_from_the_environment_is_an_error_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[source]]\nname = \"w\"\nurl = \"https://w.example.com\"\napi = \"cloud\"\n[[sink]]\nname = \"o\"\ntype = \"stdout\"\n",
        )
        .unwrap();
        Config::load_with_env(&path, &[]).unwrap();
        let err = Config::load_with_env(
            &path,
            &[("CAF__SINK__0__BATCH_MAX_EVENT".into(), "5".into())],
        )
        .unwrap_err();
        assert_eq!(err.key, "sink[0].batch_max_event", "{err}");
        assert!(err.problem.contains("batch_max_events"), "{err}");
        // An override of a known key still reads, numbers from text included.
        let cfg = Config::load_with_env(
            &path,
            &[("CAF__SINK__0__BATCH_MAX_EVENTS".into(), "5".into())],
        )
        .unwrap();
        assert_eq!(cfg.sink[0].batch_max_events, 5);
    }

    #[test]
    fn secret_keys_but_not_the_keys_saying_where_a_secret_is() {
        for k in [
            "password",
            "token",
            "api_key",
            "sasl_password",
            "ssl.key.password",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "password_file",
            "token_env",
            "sasl_password_file",
            "username",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn a_secret_from_the_environment_is_not_shown_either() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[source]]\nname = \"w\"\nurl = \"https://w.example.com\"\napi = \"cloud\"\n[source.auth]\ntype = \"basic\"\n[[sink]]\nname = \"o\"\ntype = \"stdout\"\n",
        )
        .unwrap();
        let err = Config::load_with_env(
            &path,
            &[(
                "CAF__SOURCE__0__AUTH__PASSWORD".into(),
                "env-secret-0815".into(),
            )],
        )
        .unwrap_err();
        assert_eq!(err.key, "source[0].auth.username", "{err}");
        assert!(!err.to_string().contains("env-secret-0815"), "{err}");
    }

    #[test]
    fn url_passwords_are_found() {
        assert_eq!(
            url_password("https://svc:pw@wiki.example.com/x").as_deref(),
            Some("svc:pw")
        );
        assert_eq!(url_password("https://wiki.example.com/a@b"), None);
    }
}
