//! The shipped index template against every document the normalizer emits for the shared
//! fixtures and for one synthetic record of every kind the simulator knows: each leaf field
//! has a mapping (nothing left to `dynamic: false` silence), of the ECS 9.4.0 type for ECS
//! fields and of a type that fits the value under `confluence.*`. Then the same documents go
//! through the sink into the test server with the template installed: none is rejected.

mod es_server;

use std::collections::BTreeSet;
use std::path::PathBuf;

use confluence_audit_forwarder::normalize::{
    self, Api, NormalizeOptions, parse_record, split_input,
};
use confluence_audit_forwarder::simulate::catalog::{self, KINDS};
use confluence_audit_forwarder::simulate::render;
use confluence_audit_forwarder::sink::elasticsearch::{ElasticsearchSink, setup};
use confluence_audit_forwarder::sink::{Delivery, QueuedEvent, Sink};
use serde_json::{Value, json};

fn shared(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(shared(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn normalize_with(api: Api, raw: &str, opts: &NormalizeOptions) -> Vec<u8> {
    let r = parse_record(api, raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    let mut out = Vec::new();
    normalize::write_ecs(&r, 0, "2026-11-25T00:00:00.000Z", opts, &mut out).unwrap();
    out
}

/// Every fixture record and one synthetic record per known kind in every shape, with and
/// without `event.original`, plus unknown and oddly-sourced records.
fn documents() -> Vec<Vec<u8>> {
    let plain = NormalizeOptions::default();
    let everything = NormalizeOptions {
        include_original: true,
        ..Default::default()
    };
    let mut docs = Vec::new();
    for (file, api) in [
        ("fixtures/api/cloud-audit-start0.json", Api::Cloud),
        ("fixtures/api/cloud-audit-start2.json", Api::Cloud),
        ("fixtures/api/cloud-records.ndjson", Api::Cloud),
        ("fixtures/api/dc-audit-file.audit.log", Api::File),
        ("fixtures/api/dc-audit-file-more.audit.log", Api::File),
        ("fixtures/api/dc-auditing-entities.ndjson", Api::Auditing),
        ("fixtures/api/dc-auditing-events-page1.json", Api::Auditing),
        (
            "fixtures/api/dc-auditing-events-page2-last.json",
            Api::Auditing,
        ),
    ] {
        for r in split_input(api, &read(file)).unwrap() {
            docs.push(normalize_with(api, &r, &plain));
            docs.push(normalize_with(api, &r, &everything));
        }
    }
    for entry in std::fs::read_dir(shared("fixtures/elastic-pipeline")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".input.json") else {
            continue;
        };
        let api = if stem.starts_with("cloud-api") {
            Api::Cloud
        } else if stem.starts_with("dc-file") {
            Api::File
        } else {
            Api::Auditing
        };
        let raw = read(&format!("fixtures/elastic-pipeline/{name}"));
        docs.push(normalize_with(api, &raw, &everything));
    }
    for (i, _) in KINDS.iter().enumerate() {
        let record = catalog::example(i);
        for api in [Api::Auditing, Api::File, Api::Legacy] {
            let mut raw = Vec::new();
            render::render(api, &record, "https://wiki.example.com", &mut raw);
            let raw = String::from_utf8(raw).unwrap();
            docs.push(normalize_with(api, &raw, &plain));
            docs.push(normalize_with(api, &raw, &everything));
        }
    }
    for raw in [
        r#"{"timestamp":"2025-11-25T04:00:00.123Z","type":{"action":"Whatever new","actionI18nKey":"some.new.key"},"source":"not-an-ip"}"#,
        r#"{"timestamp":"2025-11-25T04:00:00.123Z","source":"2001:db8::1, 10.0.0.1"}"#,
    ] {
        docs.push(normalize_with(Api::Auditing, raw, &plain));
    }
    // What `replay` queues: a document tagged `confluence.audit.replayed`.
    docs.push(confluence_audit_forwarder::source::replay::tag_replayed(
        &docs[0],
    ));
    docs
}

/// The mapping node of a dotted field path in the template, if mapped.
fn mapping<'a>(mappings: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = mappings;
    for part in path.split('.') {
        node = node.get("properties")?.get(part)?;
    }
    Some(node)
}

fn leaves(path: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(&p, child, out);
            }
        }
        Value::Array(a) => {
            for child in a {
                leaves(path, child, out);
            }
        }
        other => out.push((path.to_owned(), other.clone())),
    }
}

const STRING_TYPES: &[&str] = &[
    "keyword",
    "constant_keyword",
    "wildcard",
    "match_only_text",
    "text",
    "date",
    "ip",
];

#[test]
fn the_index_template_maps_every_field_the_normalizer_emits_with_the_right_type() {
    let template: Value = serde_json::from_str(setup::INDEX_TEMPLATE).unwrap();
    let mappings = &template["template"]["mappings"];
    assert_eq!(
        mappings["dynamic"], false,
        "nothing is guessed: every field is mapped on purpose"
    );
    let ecs: Value =
        serde_json::from_str(&read("spec/ecs-9.4.0-fields.json")).expect("ECS field list");
    let ecs = &ecs["fields"];
    let docs = documents();
    assert!(docs.len() > 300, "{}", docs.len());
    let mut problems = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for doc in &docs {
        let v: Value = serde_json::from_slice(doc).unwrap();
        let mut fields = Vec::new();
        leaves("", &v, &mut fields);
        for (path, value) in fields {
            seen.insert(path.clone());
            let Some(m) = mapping(mappings, &path) else {
                problems.insert(format!("{path}: not mapped"));
                continue;
            };
            let ty = m["type"].as_str().unwrap_or("object");
            if let Some(spec) = ecs.get(&path) {
                let want = spec["type"].as_str().unwrap();
                if ty != want {
                    problems.insert(format!("{path}: mapped as {ty}, ECS says {want}"));
                }
                for multi in spec["multi_fields"].as_array().into_iter().flatten() {
                    let sub = multi.as_str().unwrap().rsplit('.').next().unwrap();
                    if m["fields"].get(sub).is_none() {
                        problems.insert(format!("{path}: ECS multi-field .{sub} missing"));
                    }
                }
            } else if !path.starts_with("confluence.") {
                problems.insert(format!("{path}: neither ECS nor under confluence."));
            }
            let fits = match &value {
                Value::String(s) => match ty {
                    "ip" => s.parse::<std::net::IpAddr>().is_ok(),
                    "date" => time::OffsetDateTime::parse(
                        s,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .is_ok(),
                    t => STRING_TYPES.contains(&t),
                },
                Value::Bool(_) => ty == "boolean",
                Value::Number(n) => match ty {
                    "long" => n.is_i64() || n.is_u64(),
                    "double" | "float" | "scaled_float" | "date" => true,
                    _ => false,
                },
                _ => true,
            };
            if !fits {
                problems.insert(format!("{path}: value {value} does not fit type {ty}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // event.original is kept but neither indexed nor aggregatable, as ECS says.
    let original = mapping(mappings, "event.original").unwrap();
    assert_eq!(original["index"], false);
    assert_eq!(original["doc_values"], false);
    assert!(seen.contains("event.original"));
    assert!(seen.contains("rule.name"), "Soteri fields were exercised");
    assert!(seen.contains("confluence.audit.changed_values.to"));
}

#[tokio::test]
async fn every_normalizer_document_is_indexed_under_the_installed_template() {
    let server = es_server::EsServer::start(es_server::EsOptions::default());
    let cfg: confluence_audit_forwarder::sink::elasticsearch::ElasticsearchConfig =
        serde_json::from_value(json!({"url": server.url, "install_template": true})).unwrap();
    let mut sink = ElasticsearchSink::new("es".into(), cfg).unwrap();
    sink.open(None).await.unwrap();
    let mut batch = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, doc) in documents().into_iter().enumerate() {
        // Identical records appear with and without event.original: one id per document here.
        let id = format!("doc-{i}");
        ids.insert(id.clone());
        batch.push(QueuedEvent {
            seq: i as u64,
            enqueued_ms: 0,
            id,
            doc,
        });
    }
    let out = sink.deliver(&batch).await.unwrap();
    let failed: Vec<String> = out
        .results
        .iter()
        .zip(&batch)
        .filter(|(d, _)| **d != Delivery::Delivered)
        .map(|(d, e)| format!("{d:?}: {}", String::from_utf8_lossy(&e.doc)))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(
        server
            .stream_template("logs-confluence.audit-default")
            .as_deref(),
        Some("logs-confluence.audit")
    );
    let got: BTreeSet<String> = server
        .ids("logs-confluence.audit-default")
        .into_keys()
        .collect();
    assert_eq!(got, ids);
}
