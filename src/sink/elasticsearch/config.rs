//! The Elasticsearch sink's settings (`type = "elasticsearch"`) and their validation.
//!
//! Kept apart from the transport so that every mistake — two endpoints, an index name
//! Elasticsearch would refuse, a secret file that cannot be read — is found by
//! `check-config` and names its key, instead of surfacing later as failed deliveries (or,
//! worse, as every document dead-lettered for a reason that is not the document's fault).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::keys::Shape;
use crate::config::{Secret, de_duration, resolve_secret};

/// The data stream documents go to unless `data_stream` or `index` says otherwise: ECS
/// naming (`type-dataset-namespace`), matched by the shipped index template.
pub const DEFAULT_DATA_STREAM: &str = "logs-confluence.audit-default";

/// `[[sink]] type = "elasticsearch"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// One node (or a load balancer): `https://es.example.com:9200`.
    pub url: Option<String>,
    /// Several nodes, used round robin; a node that cannot be reached is skipped.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Elastic Cloud deployment id (`name:base64…`), instead of `url`/`urls`.
    pub cloud_id: Option<String>,
    /// Target data stream (default [`DEFAULT_DATA_STREAM`]).
    pub data_stream: Option<String>,
    /// Target index or alias instead of a data stream (OpenSearch, clusters before 7.9).
    pub index: Option<String>,
    #[serde(default)]
    pub auth: EsAuthConfig,
    #[serde(default)]
    pub tls: EsTlsConfig,
    /// Longest wait for one HTTP request, connection included.
    #[serde(
        default = "defaults::request_timeout",
        deserialize_with = "de_duration"
    )]
    pub request_timeout: Duration,
    /// Gzip request bodies (audit JSON shrinks about tenfold).
    #[serde(default = "defaults::yes")]
    pub gzip: bool,
    /// Bulk requests in flight at once: a batch is split into this many parts.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// Install the index template, ILM policy (and Kibana objects, with `kibana_url`) at
    /// start, like `setup elasticsearch`.
    #[serde(default)]
    pub install_template: bool,
    /// Kibana, for `setup elasticsearch` / `install_template` to import the dashboards.
    /// The sink's credentials and TLS settings are used for it too.
    pub kibana_url: Option<String>,
    /// Name of the ILM policy `setup` installs and the template refers to.
    #[serde(default = "defaults::ilm_policy")]
    pub ilm_policy: String,
}

/// `[sink.auth]`. Secrets come from the value itself, `*_env` or `*_file`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsAuthConfig {
    #[serde(rename = "type", default)]
    pub kind: EsAuthKind,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The encoded API key Kibana shows (base64 of `id:key`), or `id:key` itself.
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub token: Option<Secret>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EsAuthKind {
    #[default]
    None,
    Basic,
    ApiKey,
    Bearer,
}

/// `[sink.tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsTlsConfig {
    /// PEM CA certificate(s) to trust in addition to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mTLS / PKI realm); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. For tests only: it gives the credentials away to
    /// anyone in the middle.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Resolved credentials, ready for the `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsCredentials {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// Already encoded: base64 of `id:key`.
    ApiKey(Secret),
    Bearer(Secret),
}

impl EsCredentials {
    /// The `Authorization` header value, if any.
    pub fn header(&self) -> Option<Secret> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        match self {
            EsCredentials::None => None,
            EsCredentials::Basic { username, password } => Some(Secret::new(format!(
                "Basic {}",
                b64.encode(format!("{username}:{}", password.expose()))
            ))),
            EsCredentials::ApiKey(k) => Some(Secret::new(format!("ApiKey {}", k.expose()))),
            EsCredentials::Bearer(t) => Some(Secret::new(format!("Bearer {}", t.expose()))),
        }
    }
}

/// Where documents go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    DataStream(String),
    Index(String),
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::DataStream(n) | Target::Index(n) => n,
        }
    }
}

/// How to reach the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoints {
    Nodes(Vec<url::Url>),
    Cloud(String),
}

mod defaults {
    use std::time::Duration;
    pub fn request_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn yes() -> bool {
        true
    }
    pub fn concurrency() -> usize {
        1
    }
    pub fn ilm_policy() -> String {
        "confluence-audit".into()
    }
}

/// The keys of `type = "elasticsearch"` (see [`crate::config::keys`]).
pub fn shape() -> Shape {
    Shape::of::<ElasticsearchConfig>(vec![
        ("auth", Shape::of::<EsAuthConfig>(vec![])),
        ("tls", Shape::of::<EsTlsConfig>(vec![])),
    ])
}

/// Most bulk requests in flight for one sink.
pub const MAX_CONCURRENCY: usize = 16;

impl ElasticsearchConfig {
    /// Everything that can be checked without the network. Errors name the key relative to
    /// the sink (`url`, `auth.api_key_file`…) and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.endpoints()?;
        self.target()?;
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err((
                "concurrency".into(),
                format!("must be 1 to {MAX_CONCURRENCY}"),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(("request_timeout".into(), "must be more than zero".into()));
        }
        if let Some(k) = &self.kibana_url {
            parse_http_url(k).map_err(|p| ("kibana_url".to_owned(), p))?;
        }
        if self.ilm_policy.trim().is_empty() {
            return Err(("ilm_policy".into(), "must not be empty".into()));
        }
        self.credentials()
            .map_err(|(k, p)| (format!("auth.{k}"), p))?;
        let tls = &self.tls;
        match (&tls.cert_file, &tls.key_file) {
            (Some(_), None) => {
                return Err(("tls.key_file".into(), "required with tls.cert_file".into()));
            }
            (None, Some(_)) => {
                return Err(("tls.cert_file".into(), "required with tls.key_file".into()));
            }
            _ => {}
        }
        for (key, path) in [
            ("tls.ca_file", &tls.ca_file),
            ("tls.cert_file", &tls.cert_file),
            ("tls.key_file", &tls.key_file),
        ] {
            if let Some(p) = path {
                let text = std::fs::read(p)
                    .map_err(|e| (key.to_owned(), format!("cannot read {}: {e}", p.display())))?;
                if !text.windows(11).any(|w| w == b"-----BEGIN ") {
                    return Err((key.to_owned(), format!("{} is not PEM", p.display())));
                }
            }
        }
        Ok(())
    }

    /// The cluster's address(es), from exactly one of `url`, `urls` and `cloud_id`.
    pub fn endpoints(&self) -> Result<Endpoints, (String, String)> {
        let given = [
            self.url.is_some(),
            !self.urls.is_empty(),
            self.cloud_id.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => Err((
                "url".into(),
                "one of url, urls or cloud_id is required".into(),
            )),
            1 => {
                if let Some(u) = &self.url {
                    let url = parse_http_url(u).map_err(|p| ("url".to_owned(), p))?;
                    Ok(Endpoints::Nodes(vec![url]))
                } else if let Some(id) = &self.cloud_id {
                    elasticsearch::http::transport::CloudId::parse(id).map_err(|e| {
                        (
                            "cloud_id".to_owned(),
                            format!("not an Elastic Cloud id like \"name:base64…\" ({e})"),
                        )
                    })?;
                    Ok(Endpoints::Cloud(id.clone()))
                } else {
                    let mut out = Vec::new();
                    for (i, u) in self.urls.iter().enumerate() {
                        out.push(parse_http_url(u).map_err(|p| (format!("urls[{i}]"), p))?);
                    }
                    Ok(Endpoints::Nodes(out))
                }
            }
            _ => Err((
                "url".into(),
                "give only one of url, urls and cloud_id".into(),
            )),
        }
    }

    /// The data stream or index documents go to.
    pub fn target(&self) -> Result<Target, (String, String)> {
        match (&self.data_stream, &self.index) {
            (Some(_), Some(_)) => Err((
                "index".into(),
                "give either data_stream or index, not both".into(),
            )),
            (None, Some(i)) => {
                check_index_name(i).map_err(|p| ("index".to_owned(), p))?;
                Ok(Target::Index(i.clone()))
            }
            (ds, None) => {
                let name = ds.as_deref().unwrap_or(DEFAULT_DATA_STREAM);
                check_index_name(name).map_err(|p| ("data_stream".to_owned(), p))?;
                Ok(Target::DataStream(name.to_owned()))
            }
        }
    }

    /// Resolve the credentials. Errors give the key (relative to `auth`) and the problem.
    pub fn credentials(&self) -> Result<EsCredentials, (String, String)> {
        let a = &self.auth;
        match a.kind {
            EsAuthKind::None => Ok(EsCredentials::None),
            EsAuthKind::Basic => {
                let username = a
                    .username
                    .clone()
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| ("username".to_owned(), "required for basic auth".to_owned()))?;
                let password =
                    resolve_secret("password", &a.password, &a.password_env, &a.password_file)
                        .ok_or_else(|| {
                        (
                            "password".to_owned(),
                            "basic auth needs password, password_env or password_file".to_owned(),
                        )
                    })??;
                Ok(EsCredentials::Basic { username, password })
            }
            EsAuthKind::ApiKey => {
                let key = resolve_secret("api_key", &a.api_key, &a.api_key_env, &a.api_key_file)
                    .ok_or_else(|| {
                    (
                        "api_key".to_owned(),
                        "api_key auth needs api_key, api_key_env or api_key_file".to_owned(),
                    )
                })??;
                Ok(EsCredentials::ApiKey(
                    encode_api_key(&key).map_err(|p| ("api_key".to_owned(), p))?,
                ))
            }
            EsAuthKind::Bearer => {
                let token = resolve_secret("token", &a.token, &a.token_env, &a.token_file)
                    .ok_or_else(|| {
                        (
                            "token".to_owned(),
                            "bearer auth needs token, token_env or token_file".to_owned(),
                        )
                    })??;
                Ok(EsCredentials::Bearer(token))
            }
        }
    }
}

/// Kibana shows the encoded form; `POST _security/api_key` answers `id` and `api_key`
/// separately, which users paste as `id:key`. Accept both. Problems never quote the key.
fn encode_api_key(key: &Secret) -> Result<Secret, String> {
    use base64::Engine;
    let k = key.expose().trim();
    if k.is_empty() {
        return Err("is empty".into());
    }
    if k.chars().any(char::is_whitespace) {
        return Err("contains whitespace; give the encoded key or id:key".into());
    }
    if k.contains(':') {
        return Ok(Secret::new(
            base64::engine::general_purpose::STANDARD.encode(k),
        ));
    }
    Ok(Secret::new(k.to_owned()))
}

/// An http(s) base URL; its path gets a trailing slash so that API paths are joined below
/// it (a cluster behind a reverse proxy at `/es/`).
pub fn parse_http_url(s: &str) -> Result<url::Url, String> {
    let mut url = crate::config::check_http_url(s, "[sink.auth]")?;
    if url.query().is_some() {
        return Err(format!(
            "{:?}: no query in the URL",
            crate::config::redact_url(s)
        ));
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// Elasticsearch's rules for index and data stream names, so that a bad name is a config
/// error rather than every document dead-lettered with `invalid_index_name_exception`.
pub fn check_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 255 {
        return Err("is longer than 255 bytes".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not allowed"));
    }
    if name.starts_with(['-', '_', '+']) {
        return Err(format!("{name:?} must not start with '-', '_' or '+'"));
    }
    if let Some(c) = name.chars().find(|c| {
        c.is_uppercase()
            || c.is_whitespace()
            || matches!(
                c,
                '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':'
            )
    }) {
        return Err(format!(
            "{name:?} contains {c:?}: names are lowercase, without spaces or \\ / * ? \" < > | , # :"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> ElasticsearchConfig {
        let v: toml_value::Table = toml_value::from_str(toml_text);
        serde_json::from_value(v).unwrap()
    }

    // A tiny TOML → JSON bridge through the `config` crate, so these tests read like the
    // user's file without pulling in another TOML parser.
    mod toml_value {
        pub type Table = serde_json::Value;
        pub fn from_str(s: &str) -> Table {
            config::Config::builder()
                .add_source(config::File::from_str(s, config::FileFormat::Toml))
                .build()
                .unwrap()
                .try_deserialize()
                .unwrap()
        }
    }

    #[test]
    fn defaults_and_target() {
        let c = parse("url = \"https://es.example.com:9200\"");
        c.validate().unwrap();
        assert_eq!(
            c.target().unwrap(),
            Target::DataStream(DEFAULT_DATA_STREAM.into())
        );
        assert!(c.gzip);
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(
            c.endpoints().unwrap(),
            Endpoints::Nodes(vec!["https://es.example.com:9200/".parse().unwrap()])
        );
        let behind_proxy = parse("url = \"https://proxy.example.com/es\"");
        let Endpoints::Nodes(u) = behind_proxy.endpoints().unwrap() else {
            panic!()
        };
        assert_eq!(
            u[0].join("_bulk").unwrap().as_str(),
            "https://proxy.example.com/es/_bulk"
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("data_stream = \"x\"", "url"),
            (
                "url = \"https://a:9200\"\nurls = [\"https://b:9200\"]",
                "url",
            ),
            ("urls = [\"https://a:9200\", \"ftp://b\"]", "urls[1]"),
            ("cloud_id = \"nonsense\"", "cloud_id"),
            (
                "url = \"https://a\"\ndata_stream = \"Logs-X\"",
                "data_stream",
            ),
            ("url = \"https://a\"\nindex = \"a b\"", "index"),
            (
                "url = \"https://a\"\nindex = \"a\"\ndata_stream = \"b\"",
                "index",
            ),
            ("url = \"https://a\"\nconcurrency = 0", "concurrency"),
            ("url = \"https://user:pw@a\"", "url"),
            (
                "url = \"https://a\"\n[auth]\ntype = \"basic\"\npassword = \"x\"",
                "auth.username",
            ),
            (
                "url = \"https://a\"\n[auth]\ntype = \"api_key\"",
                "auth.api_key",
            ),
            (
                "url = \"https://a\"\n[auth]\ntype = \"api_key\"\napi_key_file = \"/nonexistent/k\"",
                "auth.api_key_file",
            ),
            (
                "url = \"https://a\"\n[tls]\ncert_file = \"/etc/hostname\"",
                "tls.key_file",
            ),
            (
                "url = \"https://a\"\n[tls]\nca_file = \"/nonexistent/ca.pem\"",
                "tls.ca_file",
            ),
            (
                "url = \"https://a\"\nkibana_url = \"kibana:5601\"",
                "kibana_url",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).validate().unwrap_err();
            assert_eq!(err.0, *key, "{err:?} for {text}");
        }
    }

    #[test]
    fn api_keys_in_both_forms_and_never_printed() {
        let encoded = parse(
            "url = \"https://a\"\n[auth]\ntype = \"api_key\"\napi_key = \"VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\"",
        );
        assert_eq!(
            encoded.credentials().unwrap().header().unwrap().expose(),
            "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
        );
        let pair = parse(
            "url = \"https://a\"\n[auth]\ntype = \"api_key\"\napi_key = \"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw\"",
        );
        assert_eq!(
            pair.credentials().unwrap(),
            encoded.credentials().unwrap(),
            "id:key is encoded like Kibana does"
        );
        let shown = format!("{pair:?} {:?}", pair.credentials().unwrap());
        assert!(!shown.contains("ui2lp2axTNmsyakw9tvNnw"), "{shown}");
        assert!(!shown.contains("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6"), "{shown}");
        let basic = parse(
            "url = \"https://a\"\n[auth]\ntype = \"basic\"\nusername = \"elastic\"\npassword = \"changeme\"",
        );
        assert_eq!(
            basic.credentials().unwrap().header().unwrap().expose(),
            "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="
        );
        assert!(!format!("{basic:?}").contains("changeme"));
    }

    #[test]
    fn index_names_follow_elasticsearch_rules() {
        for ok in [DEFAULT_DATA_STREAM, "audit", "logs-confluence.audit-prod_1"] {
            check_index_name(ok).unwrap();
        }
        for bad in ["", "_x", "-x", "A", "a*b", "a,b", "a:b", "..", "a b"] {
            assert!(check_index_name(bad).is_err(), "{bad:?}");
        }
    }
}
