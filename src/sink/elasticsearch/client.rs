//! The official Elasticsearch client, configured from a sink's settings: nodes or cloud id,
//! credentials, CA and client certificates, timeouts, compression.
//!
//! Shared by the sink's [`super::service`] and by `setup elasticsearch` ([`super::setup`]),
//! so that both talk to the cluster the same way.

use elasticsearch::Elasticsearch;
use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{AUTHORIZATION, HeaderValue};
use elasticsearch::http::transport::{
    CloudConnectionPool, MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};

use super::config::{ElasticsearchConfig, Endpoints, EsCredentials};
use crate::logsafe;
use crate::sink::BuildError;

/// The official client, configured from the sink's settings (shared by `setup`).
pub fn build_client(cfg: &ElasticsearchConfig) -> Result<(Elasticsearch, usize), BuildError> {
    let fail = |(key, problem): (String, String)| BuildError { key, problem };
    let (builder, nodes) = match cfg.endpoints().map_err(fail)? {
        Endpoints::Nodes(mut urls) if urls.len() == 1 => (
            TransportBuilder::new(SingleNodeConnectionPool::new(urls.remove(0))),
            1,
        ),
        Endpoints::Nodes(urls) => {
            let n = urls.len();
            // No sniffing: the nodes given are the nodes used (they may sit behind NAT).
            (
                TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None)),
                n,
            )
        }
        Endpoints::Cloud(id) => {
            let pool = CloudConnectionPool::new(&id).map_err(|e| BuildError {
                key: "cloud_id".into(),
                problem: e.to_string(),
            })?;
            (TransportBuilder::new(pool), 1)
        }
    };
    let mut builder = builder
        .timeout(cfg.request_timeout)
        .request_body_compression(cfg.gzip)
        .enable_meta_header(false);
    // Credentials go in a default header rather than the client's `auth`, which holds only
    // one thing and is needed for the client certificate when there is one.
    let credentials = cfg
        .credentials()
        .map_err(|(k, p)| fail((format!("auth.{k}"), p)))?;
    register_credentials(&credentials);
    if let Some(h) = credentials.header() {
        let mut value = HeaderValue::from_str(h.expose()).map_err(|_| BuildError {
            key: "auth".into(),
            problem: "credentials contain characters not allowed in an HTTP header".into(),
        })?;
        value.set_sensitive(true);
        builder = builder.header(AUTHORIZATION, value);
    }
    let read = |key: &str, p: &std::path::Path| {
        std::fs::read(p).map_err(|e| BuildError {
            key: key.into(),
            problem: format!("cannot read {}: {e}", p.display()),
        })
    };
    if let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
        let mut pem = read("tls.cert_file", cert)?;
        pem.push(b'\n');
        pem.extend(read("tls.key_file", key)?);
        builder = builder.auth(Credentials::Certificate(ClientCertificate::Pem(pem)));
    }
    if cfg.tls.insecure_skip_verify {
        builder = builder.cert_validation(CertificateValidation::None);
    } else if let Some(ca) = &cfg.tls.ca_file {
        let pem = read("tls.ca_file", ca)?;
        let cert = Certificate::from_pem(&pem).map_err(|e| BuildError {
            key: "tls.ca_file".into(),
            problem: format!("{}: {e}", ca.display()),
        })?;
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = builder.build().map_err(|e| BuildError {
        key: "tls".into(),
        problem: format!("cannot build the HTTP client: {e}"),
    })?;
    Ok((Elasticsearch::new(transport), nodes))
}

/// Every credential this sink sends is text that must never be logged or served back.
fn register_credentials(credentials: &EsCredentials) {
    match credentials {
        EsCredentials::None => {}
        EsCredentials::Basic { username, password } => {
            logsafe::register_basic_auth(username, password.expose())
        }
        EsCredentials::ApiKey(key) => {
            logsafe::register_credential(key.expose());
            logsafe::register_credential(&format!("ApiKey {}", key.expose()));
        }
        EsCredentials::Bearer(token) => logsafe::register_bearer(token.expose()),
    }
}
