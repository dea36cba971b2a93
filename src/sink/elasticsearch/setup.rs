//! `setup elasticsearch` / `setup opensearch` (and `install_template = true`): put the index
//! template, the lifecycle policy (ILM, or ISM on OpenSearch) and the Kibana saved objects in
//! place.
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
use super::config::{DEFAULT_DATA_STREAM, ElasticsearchConfig, Flavor, Target};

/// `deploy/elasticsearch/index-template.json`: ECS mappings for every field the normalizer
/// writes, `confluence.*` included; `dynamic: false`, so nothing is ever guessed.
pub const INDEX_TEMPLATE: &str = include_str!("../../../deploy/elasticsearch/index-template.json");
/// `deploy/elasticsearch/ilm-policy.json`.
pub const ILM_POLICY: &str = include_str!("../../../deploy/elasticsearch/ilm-policy.json");
/// `deploy/opensearch/index-template.json`: the same mappings in what OpenSearch 2.x accepts
/// (`data_stream.*` are `keyword`: its `constant_keyword` needs a fixed value) and no ILM
/// setting.
pub const OPENSEARCH_TEMPLATE: &str =
    include_str!("../../../deploy/opensearch/index-template.json");
/// `deploy/opensearch/ism-policy.json`: the ILM policy's phases as ISM states; its
/// `ism_template` attaches it to the data stream's backing indices.
pub const ISM_POLICY: &str = include_str!("../../../deploy/opensearch/ism-policy.json");
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
    let opensearch = cfg.flavor == Flavor::OpenSearch;
    let shipped = if opensearch {
        OPENSEARCH_TEMPLATE
    } else {
        INDEX_TEMPLATE
    };
    let mut t: Value = serde_json::from_str(shipped).expect("shipped template is JSON");
    let shipped_prefix = DEFAULT_DATA_STREAM.trim_end_matches("default");
    if !opensearch {
        t["template"]["settings"]["index.lifecycle.name"] = Value::String(cfg.ilm_policy.clone());
    }
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
    if cfg.flavor == Flavor::OpenSearch
        && let Target::DataStream(_) = cfg.target().expect("checked by template_for")
    {
        report.push(install_ism(client, cfg, &template["index_patterns"]).await?);
    }
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

/// OpenSearch: the ISM policy, attached through its `ism_template` to whatever the index
/// template matches. An existing policy is updated in place (ISM wants its sequence number).
/// A cluster without the ISM plugin (the minimal distribution) gets the template alone.
async fn install_ism(
    client: &Elasticsearch,
    cfg: &ElasticsearchConfig,
    patterns: &Value,
) -> Result<String, SetupError> {
    let mut policy: Value = serde_json::from_str(ISM_POLICY).expect("shipped policy is JSON");
    policy["policy"]["ism_template"][0]["index_patterns"] = patterns.clone();
    let path = format!("/_plugins/_ism/policies/{}", cfg.ilm_policy);
    match put(client, "ISM policy", &path, &policy).await {
        Ok(()) => Ok(format!("installed ISM policy {:?}", cfg.ilm_policy)),
        Err(SetupError::Refused { status, body, .. })
            if status == 400 && body.contains("no handler found") =>
        {
            Ok(format!(
                "ISM is not installed on this cluster (no {path}); template installed without a lifecycle policy"
            ))
        }
        Err(SetupError::Refused { status: 409, .. }) => {
            let (status, current) = get(client, "ISM policy", &path).await?;
            let (Some(seq), Some(term)) = (
                current["_seq_no"].as_u64(),
                current["_primary_term"].as_u64(),
            ) else {
                return Err(SetupError::Refused {
                    step: "ISM policy",
                    status,
                    body: current.to_string().chars().take(1000).collect(),
                });
            };
            put(
                client,
                "ISM policy",
                &format!("{path}?if_seq_no={seq}&if_primary_term={term}"),
                &policy,
            )
            .await?;
            Ok(format!("updated ISM policy {:?}", cfg.ilm_policy))
        }
        Err(e) => Err(e),
    }
}

/// One request to the cluster: its status and body. Only an unreachable cluster is an error.
async fn send(
    client: &Elasticsearch,
    step: &'static str,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<(u16, String), SetupError> {
    let resp = client
        .send(method, path, HeaderMap::new(), None::<&()>, body, None)
        .await
        .map_err(|e| SetupError::Unreachable {
            step,
            url: path.to_owned(),
            reason: e.to_string(),
        })?;
    let status = resp.status_code().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

async fn get(
    client: &Elasticsearch,
    step: &'static str,
    path: &str,
) -> Result<(u16, Value), SetupError> {
    let (status, text) = send(client, step, Method::Get, path, None).await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn put(
    client: &Elasticsearch,
    step: &'static str,
    path: &str,
    body: &Value,
) -> Result<(), SetupError> {
    let (status, text) = send(client, step, Method::Put, path, Some(body.to_string())).await?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(SetupError::Refused {
        step,
        status,
        body: text.chars().take(1000).collect(),
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
        let ism: Value = serde_json::from_str(ISM_POLICY).unwrap();
        assert_eq!(ism["policy"]["default_state"], "hot");
        assert_eq!(
            ism["policy"]["ism_template"][0]["index_patterns"][0],
            "logs-confluence.audit-*"
        );
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

    /// The OpenSearch template is the Elasticsearch one, but for what OpenSearch lacks: a
    /// mapping added to one and not the other fails here.
    #[test]
    fn the_opensearch_template_differs_only_where_opensearch_must() {
        let mut es: Value = serde_json::from_str(INDEX_TEMPLATE).unwrap();
        let os: Value = serde_json::from_str(OPENSEARCH_TEMPLATE).unwrap();
        let keyword = serde_json::json!({"type": "keyword", "ignore_above": 1024});
        for k in ["type", "dataset", "namespace"] {
            es["template"]["mappings"]["properties"]["data_stream"]["properties"][k] =
                keyword.clone();
        }
        es["template"]["settings"]
            .as_object_mut()
            .unwrap()
            .remove("index.lifecycle.name");
        assert_eq!(es["template"], os["template"]);
        assert_eq!(es["index_patterns"], os["index_patterns"]);
        assert!(!OPENSEARCH_TEMPLATE.contains("constant_keyword"));
        assert!(!OPENSEARCH_TEMPLATE.contains("lifecycle"));
    }
}
