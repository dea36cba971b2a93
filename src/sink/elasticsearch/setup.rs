//! `setup elasticsearch` (and `install_template = true`): put the index template, the ILM
//! policy and the Kibana saved objects in place.
//!
//! It exists because without a template Elasticsearch guesses: `source.ip` becomes text,
//! `confluence.audit.sys_admin` whatever the first document said, and the dashboards cannot
//! aggregate. The shipped JSON in `deploy/` is the single source: embedded here, readable
//! and importable by hand for those who manage templates with their own tooling.

use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::headers::HeaderMap;
use serde_json::Value;

pub use super::client::build_client;
use super::config::{DEFAULT_DATA_STREAM, ElasticsearchConfig, Target};

/// `deploy/elasticsearch/index-template.json`: ECS mappings for every field the normalizer
/// writes, `confluence.*` included; `dynamic: false`, so nothing is ever guessed.
pub const INDEX_TEMPLATE: &str = include_str!("../../../deploy/elasticsearch/index-template.json");
/// `deploy/elasticsearch/ilm-policy.json`.
pub const ILM_POLICY: &str = include_str!("../../../deploy/elasticsearch/ilm-policy.json");
/// `deploy/kibana/confluence-audit.ndjson`: data view, visualizations and two dashboards.
pub const KIBANA_OBJECTS: &str = include_str!("../../../deploy/kibana/confluence-audit.ndjson");

/// What went wrong, and at which step.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Config(String),
    #[error("{step}: cannot reach {url}: {reason}")]
    Unreachable {
        step: &'static str,
        url: String,
        reason: String,
    },
    #[error("{step}: {status}: {body}")]
    Refused {
        step: &'static str,
        status: u16,
        body: String,
    },
}

/// The index template body for `cfg`'s target, and the name to install it under.
///
/// Data stream names other than `logs-confluence.audit-*` get a template of their own
/// that matches exactly that name; an `index` target gets the mappings without the data
/// stream and without ILM (rollover needs an alias there, which is the operator's choice).
pub fn template_for(cfg: &ElasticsearchConfig) -> Result<(String, Value), SetupError> {
    let target = cfg
        .target()
        .map_err(|(k, p)| SetupError::Config(format!("{k}: {p}")))?;
    let mut t: Value = serde_json::from_str(INDEX_TEMPLATE).expect("shipped template is JSON");
    let shipped_prefix = DEFAULT_DATA_STREAM.trim_end_matches("default");
    t["template"]["settings"]["index.lifecycle.name"] = Value::String(cfg.ilm_policy.clone());
    let name = match &target {
        Target::DataStream(ds) if ds.starts_with(shipped_prefix) => {
            "logs-confluence.audit".to_owned()
        }
        Target::DataStream(ds) => {
            t["index_patterns"] = serde_json::json!([ds]);
            format!("confluence-audit-{ds}")
        }
        Target::Index(i) => {
            t["index_patterns"] = serde_json::json!([i]);
            let obj = t.as_object_mut().expect("template is an object");
            obj.remove("data_stream");
            t["template"]["settings"]
                .as_object_mut()
                .expect("settings")
                .remove("index.lifecycle.name");
            format!("confluence-audit-{i}")
        }
    };
    Ok((name, t))
}

/// Install the ILM policy and the index template (and the Kibana objects when `kibana` is
/// given). Returns one line per step for the log or the terminal.
pub async fn install(
    client: &Elasticsearch,
    cfg: &ElasticsearchConfig,
    kibana: Option<&KibanaTarget>,
) -> Result<Vec<String>, SetupError> {
    let mut report = Vec::new();
    let (name, mut template) = template_for(cfg)?;
    let uses_ilm = template["template"]["settings"]
        .get("index.lifecycle.name")
        .is_some();
    if uses_ilm {
        let policy: Value = serde_json::from_str(ILM_POLICY).expect("shipped policy is JSON");
        let path = format!("/_ilm/policy/{}", cfg.ilm_policy);
        match put(client, "ILM policy", &path, &policy).await {
            Ok(()) => report.push(format!("installed ILM policy {:?}", cfg.ilm_policy)),
            // Serverless and some managed offerings have no ILM: the template still works,
            // retention is then the data stream lifecycle's business.
            Err(SetupError::Refused { status, body, .. })
                if matches!(status, 400 | 404 | 410) && body.contains("ilm") =>
            {
                template["template"]["settings"]
                    .as_object_mut()
                    .expect("settings")
                    .remove("index.lifecycle.name");
                report.push(format!(
                    "ILM is not available on this cluster ({status}); template installed without a lifecycle policy"
                ));
            }
            Err(e) => return Err(e),
        }
    }
    put(
        client,
        "index template",
        &format!("/_index_template/{name}"),
        &template,
    )
    .await?;
    report.push(format!(
        "installed index template {name:?} for {}",
        template["index_patterns"]
    ));
    if let Target::DataStream(ds) = cfg.target().expect("checked above") {
        report.push(format!(
            "an existing data stream {ds:?} uses the new template from its next rollover (POST {ds}/_rollover to switch now)"
        ));
    }
    if let Some(k) = kibana {
        report.push(import_kibana(k).await?);
    }
    Ok(report)
}

async fn put(
    client: &Elasticsearch,
    step: &'static str,
    path: &str,
    body: &Value,
) -> Result<(), SetupError> {
    let resp = client
        .send(
            Method::Put,
            path,
            HeaderMap::new(),
            None::<&()>,
            Some(body.to_string()),
            None,
        )
        .await
        .map_err(|e| SetupError::Unreachable {
            step,
            url: path.to_owned(),
            reason: e.to_string(),
        })?;
    let status = resp.status_code().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(SetupError::Refused {
        step,
        status,
        body: body.chars().take(1000).collect(),
    })
}

/// Where the dashboards go: Kibana's URL, with the sink's credentials and TLS settings.
pub struct KibanaTarget {
    pub url: url::Url,
    pub client: reqwest::Client,
}

impl KibanaTarget {
    pub fn from_config(cfg: &ElasticsearchConfig) -> Result<Option<KibanaTarget>, SetupError> {
        let Some(raw) = &cfg.kibana_url else {
            return Ok(None);
        };
        let url = super::config::parse_http_url(raw)
            .map_err(|p| SetupError::Config(format!("kibana_url: {p}")))?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(h) = cfg
            .credentials()
            .map_err(|(k, p)| SetupError::Config(format!("auth.{k}: {p}")))?
            .header()
        {
            let mut v = reqwest::header::HeaderValue::from_str(h.expose())
                .map_err(|_| SetupError::Config("auth: not a valid header value".into()))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        // Kibana refuses API writes without it (CSRF protection).
        headers.insert(
            "kbn-xsrf",
            reqwest::header::HeaderValue::from_static("true"),
        );
        let mut b = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.request_timeout);
        if cfg.tls.insecure_skip_verify {
            b = b.danger_accept_invalid_certs(true);
        } else if let Some(ca) = &cfg.tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                SetupError::Config(format!("tls.ca_file: cannot read {}: {e}", ca.display()))
            })?;
            for c in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| SetupError::Config(format!("tls.ca_file: {e}")))?
            {
                b = b.add_root_certificate(c);
            }
        }
        let client = b
            .build()
            .map_err(|e| SetupError::Config(format!("kibana client: {e}")))?;
        Ok(Some(KibanaTarget { url, client }))
    }
}

/// `POST /api/saved_objects/_import?overwrite=true` with the NDJSON as a multipart file.
pub async fn import_kibana(k: &KibanaTarget) -> Result<String, SetupError> {
    let url = k
        .url
        .join("api/saved_objects/_import?overwrite=true")
        .expect("static path");
    let boundary = format!("caf-{:016x}", rand::random::<u64>());
    let mut body = Vec::with_capacity(KIBANA_OBJECTS.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"confluence-audit.ndjson\"\r\nContent-Type: application/ndjson\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(KIBANA_OBJECTS.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let resp = k
        .client
        .post(url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| SetupError::Unreachable {
            step: "Kibana import",
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(SetupError::Refused {
            step: "Kibana import",
            status,
            body: text.chars().take(1000).collect(),
        });
    }
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if v["success"] != Value::Bool(true) {
        return Err(SetupError::Refused {
            step: "Kibana import",
            status,
            body: format!("import reported errors: {}", v["errors"]),
        });
    }
    Ok(format!(
        "imported {} Kibana saved objects (dashboards \"Soteri findings\" and \"Confluence admin activity\")",
        v["successCount"]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_assets_are_valid_json() {
        let t: Value = serde_json::from_str(INDEX_TEMPLATE).unwrap();
        assert_eq!(t["index_patterns"][0], "logs-confluence.audit-*");
        assert_eq!(t["template"]["mappings"]["dynamic"], false);
        assert_eq!(
            t["template"]["mappings"]["properties"]["event"]["properties"]["original"]["index"],
            false
        );
        let p: Value = serde_json::from_str(ILM_POLICY).unwrap();
        assert!(p["policy"]["phases"]["hot"]["actions"]["rollover"].is_object());
        let mut types = std::collections::BTreeMap::new();
        let mut ids = std::collections::HashSet::new();
        for line in KIBANA_OBJECTS.lines() {
            let o: Value = serde_json::from_str(line).unwrap();
            for k in ["type", "id", "attributes", "references"] {
                assert!(o.get(k).is_some(), "{k} missing in {line}");
            }
            assert!(ids.insert(o["id"].as_str().unwrap().to_owned()));
            *types
                .entry(o["type"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
        assert_eq!(types["index-pattern"], 1);
        assert_eq!(types["dashboard"], 2);
    }
}
